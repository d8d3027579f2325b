-- bench/toy_bench.lua: the toy world's costs, in seconds, confit beside PyTorch (JSON lines).
--
--   confit bench/toy_bench.lua [--model examples/toy/model] [--reps 2] [--questions 200]
--                              [--no-torch] [--seed 1]
--
-- rlsc_step      one RLSC L2 step on one question x 16 samples at T = 0.5 (max 64 new tokens):
--                generation (KV cache), teacher-forced log-probs, backward, AdamW
-- eval_pass      16 samples at T = 0.5 of each of --questions held-out questions (generation
--                and grading, no rescoring), 32 questions per generate call
-- pretrain_step  one supervised step of recipes/pretrain_toy.lua (64 rows, backward, AdamW)
-- Then runs bench/torch_toy_rlsc.py (/usr/bin/python3) on the same model folder and the same
-- prompts with as many threads as confit runs with (torch.set_num_threads: the line's
-- "threads", the machine's OpenMP count), and passes its lines on (impl = "torch", with its own
-- "threads"); its stderr goes to ours. The last line is a summary with the best (minimum)
-- seconds of each, the ratio torch / confit (> 1: confit is faster) and both thread counts
-- (confit_threads, torch_threads). The two implementations sample different tokens (different
-- RNGs), so the lengths of the samples are printed beside the times. Times are wall time
-- (confit.clock, time.perf_counter); every line ends with the machine's fields
-- (bench/common.lua).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local cli = require "confit.cli"
local o = B.parse(arg, {
  model = {"string", "examples/toy/model"}, reps = {"int", 2, min = 1, max = 1000},
  questions = {"int", 200, min = 1, max = 10000, help = "held-out questions of the eval pass"},
  no_torch = {"flag", false, help = "confit only"}, seed = {"int", 1},
  n = {"int", 16, min = 1, max = 1024, help = "samples per question"},
})
if not cli.exists(o.model) then B.die("--model '%s': no such directory%s", o.model, cli.from_here(o.model)) end
if not cli.exists(o.model .. "/config.json") then B.die("--model '%s' is not a model folder (no config.json there)", o.model) end
local confit = require "confit"
local model = require "confit.model"
local toy = require "confit.toy"
local rl = require "confit.rl"
local train = require "confit.train"
local jsonio = require "confit.jsonio"

local function emit(t) B.emit(t) end

local m, merr = model.load(o.model)
if not m then B.die("--model '%s': %s", o.model, tostring(merr)) end
if not m.tokenizer then B.die("--model '%s' has no tokenizer.json", o.model) end
local params = train.trainable(m)
local opt = confit.optim.adamw(params, {lr = 1e-4, weight_decay = 0.01})
local world = toy.world("mixed")
local q = world:questions("train", 1, o.seed)[1]
local prompt = toy.encode(q.prompt)
local best = {}
local function note(impl, bench, s)
  local k = impl .. "." .. bench
  if not best[k] or s < best[k] then best[k] = s end
end

for r = 1, o.reps do
  local t0 = confit.clock()
  local samples = m:generate({prompt}, {n = o.n, temperature = 0.5, max_new_tokens = 64, seed = r})
  local t_gen = confit.clock() - t0
  local b = rl.batch(m, {prompt}, samples, {n = o.n, extract = toy.extract_boxed})
  opt:zero_grad()
  local loss = rl.loss("l2", b, {alpha = 0.1, temperature = 0.5})
  loss:backward()
  opt:step()
  local dt = confit.clock() - t0
  local ntok = 0
  for _, s in ipairs(samples) do ntok = ntok + #s.tokens end
  note("confit", "rlsc_step", dt)
  emit({impl = "confit", bench = "rlsc_step", rep = r, seconds = dt, gen_seconds = t_gen,
        samples = #samples, tokens = ntok, mean_length = ntok / #samples})
end

local qs = world:questions("heldout", o.questions, o.seed)
local eval_prompts = {}
for i, qq in ipairs(qs) do eval_prompts[i] = toy.encode(qq.prompt) end
for r = 1, o.reps do
  local t0 = confit.clock()
  local ntok, correct = 0, 0
  for first = 1, #qs, 32 do
    local last = math.min(#qs, first + 31)
    local out = m:generate(table.move(eval_prompts, first, last, 1, {}),
                           {n = o.n, temperature = 0.5, max_new_tokens = 64, seed = first})
    for j, s in ipairs(out) do
      ntok = ntok + #s.tokens
      if toy.grade(s.text, qs[first + (j - 1) // o.n].answer) then correct = correct + 1 end
    end
  end
  local dt = confit.clock() - t0
  note("confit", "eval_pass", dt)
  emit({impl = "confit", bench = "eval_pass", rep = r, seconds = dt, questions = #qs,
        samples = #qs * o.n, tokens = ntok, tokens_per_s = ntok / dt,
        pass1 = correct / (#qs * o.n)})
end

local batch = world:sample("train", 64, o.seed)
local seqs, plens = {}, {}
for i, ex in ipairs(batch) do
  local ids = toy.encode(ex.prompt)
  plens[i] = #ids
  for _, t in ipairs(toy.encode(ex.completion, true)) do ids[#ids + 1] = t end
  seqs[i] = ids
end
local popt = confit.optim.adamw(params, {lr = 1e-3, weight_decay = 0.01})
for r = 1, o.reps do
  local t0 = confit.clock()
  local ids, lens = model.pad(seqs, toy.EOS_ID)
  local ntok = 0
  for i = 1, #seqs do ntok = ntok + lens[i] - plens[i] end
  popt:zero_grad()
  local loss = -m:logprobs(ids, plens, {temperature = 1.0, lens = lens}):sum() / ntok
  loss:backward()
  popt:step()
  local dt = confit.clock() - t0
  note("confit", "pretrain_step", dt)
  emit({impl = "confit", bench = "pretrain_step", rep = r, seconds = dt, rows = #seqs})
end

local torch_threads
if not o.no_torch then
  local job = os.tmpname()
  local padded = {}
  local lens = {}
  local maxlen = 0
  for i, s in ipairs(seqs) do lens[i] = #s; if #s > maxlen then maxlen = #s end end
  for i, s in ipairs(seqs) do
    local row = table.move(s, 1, #s, 1, {})
    for t = #s + 1, maxlen do row[t] = toy.EOS_ID end
    padded[i] = row
  end
  assert(jsonio.write_json_atomic(job, {rlsc_prompt = prompt, eval_prompts = eval_prompts,
    n = o.n, temperature = 0.5, max_new_tokens = 64, eos = toy.EOS_ID,
    pretrain = {ids = padded, prompt_lens = plens, lens = lens}}))
  local sq = cli.shell_quote
  local script = (debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "torch_toy_rlsc.py"
  local p = io.popen(("/usr/bin/python3 %s %s %s --reps %d --threads %d")
                     :format(sq(script), sq(o.model), sq(job), o.reps, B.threads() or 2))
  for line in p:lines() do
    local t = jsonio.decode(line)
    if type(t) == "table" and t.impl == "torch" then
      note("torch", t.bench, t.seconds)
      torch_threads = torch_threads or t.threads
      emit(t)
    else
      io.stderr:write(line, "\n")   -- not a measurement: a warning, say
    end
  end
  if not p:close() then io.stderr:write("toy_bench: bench/torch_toy_rlsc.py failed; no PyTorch figures\n") end
  os.remove(job)
end

local summary = {impl = "summary", reps = o.reps, confit_threads = B.threads(), torch_threads = torch_threads}
for _, b in ipairs({"rlsc_step", "eval_pass", "pretrain_step"}) do
  summary[b .. "_confit_s"] = best["confit." .. b]
  summary[b .. "_torch_s"] = best["torch." .. b]
  if best["confit." .. b] and best["torch." .. b] then
    summary[b .. "_torch_over_confit"] = best["torch." .. b] / best["confit." .. b]
  end
end
emit(summary)
