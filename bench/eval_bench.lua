-- bench/eval_bench.lua: end-to-end evaluation throughput on the toy world. Evaluates the toy
-- model (examples/toy/model) on held-out toy questions with confit.evaluate (template "plain",
-- toy grader, greedy; optionally sampled) and prints one JSON line per configuration: wall
-- time, generated tokens per second, questions per second, accuracy, and which model it was.
-- Without --model, and without examples/toy/model, it uses a randomly initialised model of the
-- same architecture as recipes/pretrain_toy.lua's (3 layers, d=128, 2 heads, FFN 336, 257 ids,
-- 128 positions) with the toy tokenizer, and says so ("model": "random ..."); a random model
-- rarely stops early, so it generates more tokens per question than a trained one. A --model
-- that is not there or does not load is refused (one line, exit status 1). wall_s is wall time
-- (confit.clock); every line ends with the machine's fields (bench/common.lua).
-- Run from the project root:
--   build/confit bench/eval_bench.lua [--questions 500] [--n 0] [--batch-size 8,32]
--       [--max-new-tokens 64] [--model DIR]
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local cli = require "confit.cli"
local o = B.parse(arg, {
  questions = {"int", 500, min = 1, max = 10000, help = "held-out toy questions"},
  n = {"int", 0, min = 0, max = cli.MAX_SAMPLES, help = "0: greedy only; N: also N samples per question (pass@1)"},
  batch_size = {"string", "8,32", help = "batch sizes, comma-separated: one line each"},
  max_new_tokens = {"int", 64, min = 1},
  model = {"string", nil, shown = "examples/toy/model, else a random model",
           help = "the model folder; when given, it must load"},
})
local sizes = B.int_list(o.batch_size, "--batch-size", 1, 1000000)

local evaluate = require "confit.evaluate"
local toy = require "confit.toy"
local core = require "confit.core"

local DEFAULT = "examples/toy/model"
local m, what
if o.model or cli.exists(DEFAULT .. "/config.json") then
  local dir = o.model or DEFAULT
  local flag = o.model and "--model" or "the default model"
  if not cli.exists(dir) then B.die("%s '%s': no such directory%s", flag, dir, cli.from_here(dir)) end
  if not cli.is_dir(dir) then B.die("%s '%s' is not a directory (a model folder is expected)", flag, dir) end
  if not cli.exists(dir .. "/config.json") then B.die("%s '%s' is not a model folder (no config.json there)", flag, dir) end
  local err
  m, err = require("confit.model").load(dir)
  if not m then B.die("%s '%s': %s", flag, dir, tostring(err)) end
  if not m.tokenizer then B.die("%s '%s' has no tokenizer.json", flag, dir) end
  what = dir
else
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p -- " .. cli.shell_quote(dir))
  assert(toy.write_tokenizer(dir))
  m = require("confit.model").new({
    architectures = {"Qwen2ForCausalLM"}, model_type = "qwen2", hidden_size = 128,
    intermediate_size = 336, num_hidden_layers = 3, num_attention_heads = 2,
    num_key_value_heads = 2, vocab_size = toy.VOCAB_SIZE, max_position_embeddings = 128,
    rms_norm_eps = 1e-6, rope_theta = 10000.0, tie_word_embeddings = true,
    bos_token_id = toy.EOS_ID, eos_token_id = toy.EOS_ID, hidden_act = "silu"},
    {tokenizer = dir .. "/tokenizer.json", seed = 1})
  os.execute("rm -rf -- " .. cli.shell_quote(dir))
  what = "random (toy architecture; no --model, and " .. DEFAULT .. " absent)"
end

local nq, n = o.questions, o.n
local qs = toy.world("mixed"):questions("heldout", nq, 1)
local problems = {}
for k, q in ipairs(qs) do problems[k] = {id = k, question = q.prompt, answer = tostring(q.answer)} end

for _, bs in ipairs(sizes) do
  local t0 = core.clock()
  local s = evaluate.run(m, problems, {grader = "toy", template = "plain", greedy = true, n = n,
                                       temperature = 1.0, max_new_tokens = o.max_new_tokens,
                                       batch_size = bs, benchmark = "toy-mixed", progress = {mode = "off"}})
  local wall = core.clock() - t0
  local rec = {bench = "eval", model = what, world = "mixed", questions = nq, greedy = true, n = n,
               batch_size = bs, max_new_tokens = o.max_new_tokens,
               generated_tokens = s.generated_tokens, wall_s = wall,
               tokens_per_s = s.generated_tokens / wall, questions_per_s = nq / wall,
               acc = s.acc, mean_length = s.mean_length, truncated_rate = s.truncated_rate}
  if n > 0 then rec["pass@1"] = s["pass@1"] end
  B.emit(rec)
end
