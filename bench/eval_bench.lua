-- bench/eval_bench.lua: end-to-end evaluation throughput on the toy world. Evaluates the toy
-- model (examples/toy/model) on held-out toy questions with confit.evaluate (template "plain",
-- toy grader, greedy; optionally sampled) and prints one JSON line per configuration: wall
-- time, generated tokens per second, questions per second, accuracy, and which model it was.
-- Without examples/toy/model it uses a randomly initialised model of the same architecture as
-- recipes/pretrain_toy.lua's (3 layers, d=128, 2 heads, FFN 336, 257 ids, 128 positions) with
-- the toy tokenizer, and says so ("model": "random ..."); a random model rarely stops early, so
-- it generates more tokens per question than a trained one.
-- Run from the project root:
--   build/confit bench/eval_bench.lua [--questions 500] [--n 0] [--batch-size 8,32]
--       [--max-new-tokens 64] [--model DIR]
require("confit.cli").header_help(arg)
local evaluate = require "confit.evaluate"
local jsonio = require "confit.jsonio"
local toy = require "confit.toy"
local core = require "confit.core"

local o = {questions = 500, n = 0, ["batch-size"] = "8,32", ["max-new-tokens"] = 64}
local argv = {...}
local i = 1
while i <= #argv do
  local k = argv[i]:match("^%-%-(.+)$")
  if not k or o[k] == nil and k ~= "model" then
    io.stderr:write("eval_bench: unknown argument ", argv[i], "\n")
    os.exit(2)
  end
  o[k] = argv[i + 1]
  i = i + 2
end

local function read(cmd, is_cmd)
  local f = is_cmd and io.popen(cmd) or io.open(cmd, "r")
  if not f then return "" end
  local d = f:read("a") or ""
  f:close()
  return d
end

local model_dir = o.model or "examples/toy/model"
local m, what
if io.open(model_dir .. "/config.json") then
  m = assert(require("confit.model").load(model_dir))
  what = model_dir
else
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p -- " .. require("confit.cli").shell_quote(dir))
  assert(toy.write_tokenizer(dir))
  m = require("confit.model").new({
    architectures = {"Qwen2ForCausalLM"}, model_type = "qwen2", hidden_size = 128,
    intermediate_size = 336, num_hidden_layers = 3, num_attention_heads = 2,
    num_key_value_heads = 2, vocab_size = toy.VOCAB_SIZE, max_position_embeddings = 128,
    rms_norm_eps = 1e-6, rope_theta = 10000.0, tie_word_embeddings = true,
    bos_token_id = toy.EOS_ID, eos_token_id = toy.EOS_ID, hidden_act = "silu"},
    {tokenizer = dir .. "/tokenizer.json", seed = 1})
  os.execute("rm -rf -- " .. require("confit.cli").shell_quote(dir))
  what = "random (toy architecture; examples/toy/model absent)"
end

local nq, n = math.tointeger(tonumber(o.questions)), math.tointeger(tonumber(o.n))
local qs = toy.world("mixed"):questions("heldout", nq, 1)
local problems = {}
for k, q in ipairs(qs) do problems[k] = {id = k, question = q.prompt, answer = tostring(q.answer)} end

local machine = {host = (read("uname -n", true):gsub("%s+$", "")),
                 cpu = read("/proc/cpuinfo"):match("model name%s*:%s*([^\n]+)") or "?",
                 cores = math.tointeger(tonumber((read("nproc --all", true):gsub("%s+$", "")))),
                 omp_num_threads = os.getenv("OMP_NUM_THREADS") or "unset",
                 omp_wait_policy = os.getenv("OMP_WAIT_POLICY") or "unset",
                 load1 = tonumber(read("/proc/loadavg"):match("^(%S+)"))}

for bs in tostring(o["batch-size"]):gmatch("%d+") do
  local t0 = core.clock()
  local s = evaluate.run(m, problems, {grader = "toy", template = "plain", greedy = true, n = n,
                                      temperature = 1.0, max_new_tokens = math.tointeger(tonumber(o["max-new-tokens"])),
                                      batch_size = math.tointeger(tonumber(bs)), benchmark = "toy-mixed",
                                      progress = {mode = "off"}})
  local wall = core.clock() - t0
  local rec = {bench = "eval", model = what, world = "mixed", questions = nq, greedy = true, n = n,
               batch_size = math.tointeger(tonumber(bs)), max_new_tokens = math.tointeger(tonumber(o["max-new-tokens"])),
               generated_tokens = s.generated_tokens, wall_s = wall,
               tokens_per_s = s.generated_tokens / wall, questions_per_s = nq / wall,
               acc = s.acc, mean_length = s.mean_length, truncated_rate = s.truncated_rate}
  if n > 0 then rec["pass@1"] = s["pass@1"] end
  for k, v in pairs(machine) do rec[k] = v end
  print(jsonio.encode(rec))
end
