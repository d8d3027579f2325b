-- The "real model" path of the main recipe, run as a user runs it:
--   confit recipes/rlsc.lua --model DIR --data FILE.jsonl ...
-- with the real Qwen tokenizer (../shared/data/tokenizer/qwen) and the first three MATH-500
-- problems (../shared/data/benchmarks/math500.jsonl). No real checkpoint exists where confit is
-- tested, so the model is a tiny random-weight Qwen2 (hidden 32, one layer) over Qwen's full
-- vocabulary (151936 rows, eos 151643 and 151645 as Qwen2.5-Math's generation config), built
-- and saved through confit's API into a temporary folder.
--
-- Into the random weights one greedy path is planted, so that the run's answers are known: a
-- bigram chain in the tied embedding and the final norm makes the model answer "\boxed{p-q}"
-- and then <|im_end|> whenever the last prompt token is the "\n" that closes the chat
-- template's "<|im_start|>assistant\n". The layers stay random (their output is ~1% of the
-- residual). So the recipe must apply the template, encode with the real tokenizer, stop on
-- <|im_end|>, decode, extract and normalise the answer: MATH-500 problem 2 ("p - q") is then
-- right and problems 1 and 3 wrong, before and after one RLSC step.
local H = dofile("tests/lua/harness.lua")

local TOKDIR = "tokenizer/qwen"
local tok_json = H.shared(TOKDIR .. "/tokenizer.json")
if not tok_json then
  H.skip_all("no Qwen tokenizer at ../shared/data/" .. TOKDIR .. "/tokenizer.json (shared data absent)")
end
local bench_file = H.shared("benchmarks/math500.jsonl")
if not bench_file then
  H.skip_all("no ../shared/data/benchmarks/math500.jsonl (shared data absent)")
end

local confit = require "confit"
local model = require "confit.model"
local jsonio = require "confit.jsonio"
local grade = require "confit.grade"
local chat = require "confit.chat"

local exe = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
local clock = confit.clock
local T_START = clock()

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute(("mkdir -p %q"):format(TMP)))
local function rm_rf(d) os.execute(("rm -rf %q"):format(d)) end

local IM_START, IM_END, ENDOFTEXT = 151644, 151645, 151643
local TEMPLATE = "qwen25-math-cot"
local ANSWER = "\\boxed{p-q}"          -- what the planted chain writes
local MAX_NEW = 8

-- The benchmark's first three lines, and the fields they use -------------------------------------

local rows, lines = {}, {}
do
  local f = assert(io.open(bench_file, "rb"))
  for line in f:lines() do
    if line:find("%S") then
      lines[#lines + 1] = line
      rows[#rows + 1] = assert(jsonio.decode(line))
      if #rows == 3 then break end
    end
  end
  f:close()
end

local tok = assert(require("confit.tokenizer").new(tok_json))

-- Model --------------------------------------------------------------------------------------

-- A Qwen2 config with Qwen2.5-Math-1.5B's vocabulary and eos ids, everything else tiny.
local CFG = {model_type = "qwen2", vocab_size = 151936, hidden_size = 32, intermediate_size = 64,
             num_hidden_layers = 1, num_attention_heads = 4, num_key_value_heads = 2,
             max_position_embeddings = 512, rms_norm_eps = 1e-6, rope_theta = 10000.0,
             tie_word_embeddings = true, eos_token_id = {ENDOFTEXT, IM_END}, hidden_act = "silu"}

-- Plant the greedy chain ids[1] -> ids[2] -> ... -> ids[#ids]. Edge e (ids[e] -> ids[e+1]) owns
-- hidden dims 2e-1 and 2e (1-based); with x = embedding rows and g = final norm weight, the
-- logit of b after a is sum_d g_d x_a[d] x_b[d] / rms(x_a), and
--   x[ids[e]][2e-1] = 1, x[ids[e+1]][2e-1] = 1, g[2e-1] =  c_e / 2
--   x[ids[e]][2e]   = 1, x[ids[e+1]][2e]   = -1, g[2e]   = -c_e / 2
-- score c_e for the next token, 0 for staying, c_(e-1) for going back, ~0 for the random rows;
-- c_e grows along the chain so every step's winner is the next token, by ~11 nats.
local function plant(m, ids)
  local H_ = CFG.hidden_size
  assert(2 * (#ids - 1) <= H_, "chain too long for the hidden size")
  local rows_, g = {}, {}
  for i = 1, #ids do rows_[i] = {}; for d = 1, H_ do rows_[i][d] = 0 end end
  for d = 1, H_ do g[d] = 1 end
  for e = 1, #ids - 1 do
    local c = 12 + 4 * e
    rows_[e][2 * e - 1], rows_[e + 1][2 * e - 1], g[2 * e - 1] = 1, 1, c / 2
    rows_[e][2 * e], rows_[e + 1][2 * e], g[2 * e] = 1, -1, -c / 2
  end
  -- the embedding with those rows replaced: slices of the random table around them
  local order = {}
  for i = 1, #ids do order[i] = i end
  table.sort(order, function(a, b) return ids[a] < ids[b] end)
  local E = m:parameters()["model.embed_tokens.weight"]
  local parts, next_row = {}, 0      -- next_row: 0-based first row not yet copied
  for _, i in ipairs(order) do
    local id = ids[i]
    if id > next_row then parts[#parts + 1] = E:narrow(1, next_row + 1, id - next_row) end
    parts[#parts + 1] = confit.tensor({rows_[i]})
    next_row = id + 1
  end
  if next_row < CFG.vocab_size then parts[#parts + 1] = E:narrow(1, next_row + 1, CFG.vocab_size - next_row) end
  m:set_param("model.embed_tokens.weight", confit.cat(parts, 1):contiguous())
  m:set_param("model.norm.weight", confit.tensor(g))
  m.core:tie()
end

local prompt_ids = {}                 -- per problem: the template's prompt, encoded
for i, r in ipairs(rows) do prompt_ids[i] = tok:encode(chat.apply(TEMPLATE, r.problem)) end
local answer_ids = tok:encode(ANSWER)
local NL = prompt_ids[1][#prompt_ids[1]]          -- the "\n" closing "<|im_start|>assistant\n"
local CHAIN = {NL}
for _, id in ipairs(answer_ids) do CHAIN[#CHAIN + 1] = id end
CHAIN[#CHAIN + 1] = IM_END
local GEN_LEN = #answer_ids + 1                   -- generated tokens, <|im_end|> included

local MODEL = TMP .. "/model"
local t_model = clock()
do
  local m = model.new(CFG, {tokenizer = tok_json, seed = 11})
  plant(m, CHAIN)
  m:save(MODEL)           -- config.json, generation_config.json, model.safetensors, tokenizer files
  m:free()
end
t_model = clock() - t_model

H.case("the data: MATH-500's fields and reference answers", function()
  H.eq(#rows, 3, "three problems")
  for i, r in ipairs(rows) do
    H.eq(type(r.problem), "string", "problem " .. i .. " has a 'problem' field (--question-field)")
    H.eq(type(r.answer), "string", "problem " .. i .. " has an 'answer' field (--answer-field)")
    H.eq(r.question, nil, "no 'question' field: the flag is needed")
    -- the answer field the recipe reads agrees with confit.grade's math500 reference
    local ref = grade.reference("math500", r)
    H.ok(grade.equal(r.answer, ref), ("problem %d: answer %q vs reference %q"):format(i, r.answer, ref))
  end
  H.eq(rows[2].answer, "p - q", "problem 2's reference (the planted answer is its unspaced form)")
  H.eq(grade.normalize("p-q"), grade.normalize(rows[2].answer), "normalisation drops the spaces")
  for _, i in ipairs({1, 3}) do H.ok(not grade.equal("p-q", rows[i].answer), "p-q is wrong for " .. i) end
end)

H.case("the chain and the chat template on the real tokenizer", function()
  H.eq(tok:token_to_id("<|im_start|>"), IM_START); H.eq(tok:token_to_id("<|im_end|>"), IM_END)
  H.eq(tok:token_to_id("<|endoftext|>"), ENDOFTEXT)
  H.eq(tok:decode(answer_ids), ANSWER, "the answer round-trips")
  local seen = {}
  for _, id in ipairs(CHAIN) do H.ok(not seen[id], "chain ids distinct"); seen[id] = true end
  H.ok(#CHAIN - 1 <= MAX_NEW, "the answer fits --max-new-tokens")
  for i, r in ipairs(rows) do
    local p = chat.apply(TEMPLATE, r.problem)
    H.eq(p, "<|im_start|>system\nPlease reason step by step, and put your final answer within "
         .. "\\boxed{}.<|im_end|>\n<|im_start|>user\n" .. r.problem .. "<|im_end|>\n"
         .. "<|im_start|>assistant\n", "template, problem " .. i)
    local ids = prompt_ids[i]
    H.eq(ids[1], IM_START, "<|im_start|> is one special token")
    H.eq(ids[#ids - 2], IM_START); H.eq(tok:decode({ids[#ids - 1]}), "assistant")
    H.eq(ids[#ids], NL); H.eq(tok:decode({NL}), "\n")
    -- without the template the prompt would not end in that "\n": the planted answer then
    -- proves the recipe used the template
    local plain = tok:encode(r.problem)
    H.ok(plain[#plain] ~= NL, "a bare question does not end in the template's newline")
    H.ok(#ids + MAX_NEW <= CFG.max_position_embeddings, "prompt + new tokens fit the context")
  end
end)

H.case("the saved model: Qwen vocabulary, eos ids, tokenizer, the planted answer", function()
  for _, f in ipairs({"config.json", "generation_config.json", "model.safetensors",
                      "tokenizer.json", "tokenizer_config.json"}) do
    H.ok(io.open(MODEL .. "/" .. f, "rb"), "model folder has " .. f)
  end
  local gc = assert(jsonio.read_json(MODEL .. "/generation_config.json"))
  H.eq(jsonio.encode(gc.eos_token_id), "[151643,151645]", "generation_config eos ids")
  local m = assert(confit.load(MODEL))
  H.eq(m.config.vocab_size, 151936); H.eq(m.config.tie_word_embeddings, true)
  H.eq(m.tokenizer.vocab_size, 151669, "the real tokenizer")
  -- greedy and sampled at T = 0.5, as the recipe does: the chain, stopped by the model's eos
  local out = m:generate({prompt_ids[2]}, {n = 1, temperature = 0, max_new_tokens = MAX_NEW})
  H.eq(out[1].text, ANSWER, "greedy text"); H.eq(out[1].finish, "stop")
  H.eq(#out[1].tokens, GEN_LEN); H.eq(out[1].tokens[GEN_LEN], IM_END)
  local s = m:generate({prompt_ids[1]}, {n = 2, temperature = 0.5, max_new_tokens = MAX_NEW, seed = 3})
  for _, x in ipairs(s) do H.eq(x.text, ANSWER, "sampled text") end
  m:free()
end)

-- The recipe ---------------------------------------------------------------------------------

local DATA = TMP .. "/math500-3.jsonl"
do
  local f = assert(io.open(DATA, "wb"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end

local function run(extra, out)
  extra = extra or ""
  local max_new = extra:find("--max-new-tokens", 1, true) and "" or ("--max-new-tokens %d"):format(MAX_NEW)
  local cmd = ("%q recipes/rlsc.lua --model %q --data %q --question-field problem --answer-field answer "
               .. "--steps 1 --n 2 %s --questions-per-step 1 --out %q %s 2>&1")
              :format(exe, MODEL, DATA, max_new, out, extra)
  local t0 = clock()
  local p = assert(io.popen(cmd))
  local text = p:read("a")
  local ok, how, code = p:close()
  local last
  for line in text:gmatch("[^\n]+") do last = line end
  return {ok = ok, code = code, how = how, text = text, last = last, dt = clock() - t0}
end

local function finite(x) return type(x) == "number" and x == x and x > -math.huge and x < math.huge end

-- Everything a plain and a --recompute --state-dtype bf16 run must both satisfy; returns the
-- last line's JSON and the run directory's files.
local function check_run(r, out, label)
  H.ok(r.ok and r.code == 0, ("%s: exit %s %s\n%s"):format(label, tostring(r.how), tostring(r.code), r.text))
  local j = jsonio.decode(r.last or "")
  H.ok(type(j) == "table" and j.before and j.after and j.config, label .. ": last line " .. tostring(r.last))
  H.ok(r.text:find("step   1  loss", 1, true), label .. ": the step is logged\n" .. r.text)
  for _, stage in ipairs({"before", "after"}) do
    local s = j[stage]
    H.eq(s.n, 3, stage .. ".n"); H.eq(s.mode, "qwen"); H.eq(s.grader, "qwen"); H.eq(s.template, TEMPLATE)
    H.eq(s.correct, 1, stage .. ": problem 2 right"); H.near(s.acc, 1 / 3, 1e-12, stage .. ".acc")
    H.eq(s.box_rate, 1.0, stage .. ".box_rate"); H.eq(s.truncated_rate, 0.0, stage .. ": all stopped")
    H.eq(s.mean_length, GEN_LEN, stage .. ".mean_length (tokens with <|im_end|>)")
    H.eq(s.generated_tokens, 3 * GEN_LEN, stage .. ".generated_tokens")
    H.eq(s.samples, nil, "eval_n defaults to 0 with --data (greedy only)")
  end
  -- config.json
  local cfg = assert(jsonio.read_json(out .. "/config.json"))
  H.eq(cfg.recipe, "rlsc"); H.eq(cfg.template, TEMPLATE); H.eq(cfg.data, DATA); H.eq(cfg.model, MODEL)
  H.eq(cfg.method, "l2"); H.eq(cfg.steps, 1); H.eq(cfg.samples_per_question, 2)
  H.eq(cfg.questions_per_step, 1); H.eq(cfg.max_new_tokens, MAX_NEW)
  H.eq(cfg.optim.lr, 1e-5, "the paper's lr applies to --data runs")
  H.eq(cfg.eval.mode, "qwen"); H.eq(cfg.eval.template, TEMPLATE); H.eq(cfg.device, "cpu")
  -- everything needed to rerun (RUNDIR.md): how the data was read, the evaluation's settings
  H.eq(cfg.question_field, "problem"); H.eq(cfg.answer_field, "answer"); H.eq(cfg.answer_reference, nil)
  H.eq(cfg.eval.data, DATA, "the evaluation's data, also when it defaults to --data")
  H.eq(cfg.eval.n, 0); H.eq(cfg.eval.greedy, true); H.eq(cfg.eval.max_new_tokens, MAX_NEW)
  H.eq(cfg.eval.seed, 1, "the evaluation's seed: --seed unless --eval-seed")
  H.eq(cfg.eval.questions, 3, "all of the evaluation's problems"); H.near(cfg.eval.top_p, 0.95, 1e-12)
  H.eq(jsonio.encode(j.config), jsonio.encode(cfg), "last line's config = config.json")
  -- steps.jsonl: one step on problem 1 (answer "\left( 3, \frac{\pi}{2} \right)")
  local steps = assert(jsonio.read_jsonl(out .. "/steps.jsonl"))
  H.eq(#steps, 1, "steps.jsonl lines")
  local st = steps[1]
  H.eq(st.step, 1); H.eq(st.n_samples, 2)
  for _, k in ipairs({"loss", "mean_logp", "weight_share", "mean_confidence", "mean_length",
                      "box_rate", "grad_norm", "tokens_per_s", "step_s", "gen_s", "lr", "train_acc"}) do
    H.ok(finite(st[k]), label .. ": steps.jsonl " .. k .. " = " .. tostring(st[k]))
  end
  H.ok(st.mean_logp <= 0 and st.mean_logp > -1, "the planted samples are near certain: " .. st.mean_logp)
  H.ok(st.mean_confidence > 0.5 and st.weight_share == 1, "confident samples carry weight")
  H.eq(st.mean_length, GEN_LEN); H.eq(st.box_rate, 1.0); H.eq(st.train_acc, 0.0, "p-q is wrong for problem 1")
  H.ok(st.grad_norm > 0, "a gradient")
  -- eval records
  local evals = {}
  for _, stage in ipairs({"before", "after"}) do
    local recs = assert(jsonio.read_jsonl(out .. "/eval_" .. stage .. ".jsonl"))
    H.eq(#recs, 3, stage .. " records")
    for i, rec in ipairs(recs) do
      local src = rows[i]
      H.eq(rec.id, i); H.eq(rec.question, src.problem, "question text"); H.eq(rec.answer, src.answer)
      H.eq(rec.mode, "qwen"); H.eq(rec.benchmark, "math500-3", "named as recipes/eval.lua names --data")
      local g = rec.greedy
      H.eq(type(g.completion), "string", "completion decoded to a string")
      H.eq(g.completion, ANSWER, ("%s %d: the real tokenizer's decoding, <|im_end|> cut"):format(stage, i))
      -- graded by confit.grade (qwen mode): raw extraction, equality after normalisation
      H.eq(g.extracted, grade.extract(g.completion, {mode = "qwen"}))
      H.eq(g.extracted, "p-q")
      H.eq(g.correct, grade.equal(g.extracted, src.answer, {mode = "qwen"}), "correct as confit.grade says")
      H.eq(g.correct, i == 2, stage .. " " .. i .. " correct")
      H.eq(g.boxed, true); H.eq(g.finished, true); H.eq(g.length, GEN_LEN)
      H.ok(finite(g.logprob) and g.logprob <= 0, "greedy logprob")
      H.eq(#rec.samples, 0)
    end
    evals[stage] = recs
  end
  local summary = assert(jsonio.read_json(out .. "/summary.json"))
  H.eq(summary.before.acc, j.before.acc, "summary.json = last line")
  H.eq(summary.after.correct, j.after.correct)
  return j, steps, evals
end

local first
H.case("rlsc --model --data on the real tokenizer: exit 0, run directory, graded answers", function()
  local out = TMP .. "/run1"
  local r = run(nil, out)
  local j, steps, evals = check_run(r, out, "plain")
  H.eq(j.config.recompute, false); H.eq(j.config.optim.state_dtype, "f32")
  H.eq(j.config.micro_batch, 4, "--data runs default to micro-batches of 4")
  -- the after evaluation sees the trained weights (one AdamW step at the paper's lr 1e-5 on a
  -- near-certain model moves the log-probs only slightly, but it moves them)
  local moved = 0
  for i = 1, 3 do
    if evals.after[i].greedy.logprob ~= evals.before[i].greedy.logprob then moved = moved + 1 end
  end
  H.eq(moved, 3, "greedy log-probs changed by the training step")
  first = {j = j, steps = steps, evals = evals, dt = r.dt}
end)

H.case("the same run again: bit for bit", function()
  H.ok(first, "needs the first run")
  local out = TMP .. "/run1b"
  local r = run(nil, out)
  local j, steps, evals = check_run(r, out, "repeat")
  for _, k in ipairs({"loss", "mean_logp", "grad_norm", "mean_confidence"}) do
    H.eq(steps[1][k], first.steps[1][k], "steps." .. k)
  end
  for _, stage in ipairs({"before", "after"}) do
    for i = 1, 3 do
      H.eq(evals[stage][i].greedy.logprob, first.evals[stage][i].greedy.logprob, stage .. " logprob " .. i)
    end
  end
end)

H.case("--micro-batch 1: the same step in one-sequence passes", function()
  H.ok(first, "needs the first run")
  local out = TMP .. "/run_mb"
  local r = run("--micro-batch 1", out)
  local j, steps = check_run(r, out, "micro-batch 1")
  H.eq(j.config.micro_batch, 1, "config records --micro-batch")
  for _, k in ipairs({"loss", "mean_logp", "grad_norm", "mean_confidence", "weight_share"}) do
    H.near(steps[1][k], first.steps[1][k], 1e-4, "steps." .. k)
  end
end)

H.case("--recompute --state-dtype bf16: succeeds, same step, same answers", function()
  H.ok(first, "needs the first run")
  local out = TMP .. "/run2"
  local r = run("--recompute --state-dtype bf16", out)
  local j, steps, evals = check_run(r, out, "recompute+bf16")
  H.eq(j.config.recompute, true, "config records --recompute")
  H.eq(j.config.optim.state_dtype, "bf16", "config records --state-dtype")
  -- the step's loss and gradient come before the optimizer (whose state is the only
  -- difference), and recomputed layers give the same gradients: equal bit for bit
  for _, k in ipairs({"loss", "mean_logp", "grad_norm", "mean_confidence", "weight_share"}) do
    H.eq(steps[1][k], first.steps[1][k], "steps." .. k)
  end
  -- before: the same weights; after: bf16 moments move the weights a little differently
  for _, k in ipairs({"acc", "correct", "box_rate", "mean_length", "truncated_rate"}) do
    H.eq(j.after[k], first.j.after[k], "after." .. k)
  end
  for i = 1, 3 do
    H.eq(evals.before[i].greedy.logprob, first.evals.before[i].greedy.logprob, "before logprob " .. i)
    H.near(evals.after[i].greedy.logprob, first.evals.after[i].greedy.logprob, 1e-3, "after logprob " .. i)
  end
end)

H.case("--method temp_only: no step; sampled evaluation at 0.6 before, 0.6 x scale after", function()
  local out = TMP .. "/run_temp"
  local r = run("--method temp_only --temperature-scale 0.5 --eval-n 3", out)
  H.ok(r.ok and r.code == 0, r.text)
  local j = assert(jsonio.decode(r.last))
  H.eq(j.config.eval.n, 3)
  H.near(j.config.eval.temperature, 0.6, 1e-12); H.near(j.config.eval.after_temperature, 0.3, 1e-12)
  H.near(j.before.temperature, 0.6, 1e-12, "before: the evaluation's temperature")
  H.near(j.after.temperature, 0.3, 1e-12, "after: scaled")
  H.eq(j.before.samples, 3); H.eq(j.after.samples, 3)
  local steps = jsonio.read_jsonl(out .. "/steps.jsonl") or {}
  H.eq(#steps, 0, "no training step")
  -- unless --eval-n is given, temp_only samples 16 per problem (1 new token: a quick run)
  local d = run("--method temp_only --max-new-tokens 1", TMP .. "/run_temp16")
  H.ok(d.ok and d.code == 0, d.text)
  H.eq(assert(jsonio.decode(d.last)).config.eval.n, 16, "temp_only's default --eval-n")
  local bad = run("--method temp_only --eval-n 0", TMP .. "/run_temp0")
  H.eq(bad.code, 1, "--eval-n 0 with temp_only is refused")
  H.ok(bad.text:find("--eval-n must be >= 1", 1, true), bad.text)
end)

H.case("--eval-mode strict: the evaluation takes the strict prompt of the model's format", function()
  local r = run("--method temp_only --max-new-tokens 1 --eval-n 1 --eval-mode strict", TMP .. "/run_strict")
  H.ok(r.ok and r.code == 0, r.text)
  local j = assert(jsonio.decode(r.last))
  H.eq(j.config.template, TEMPLATE, "the training prompt")
  H.eq(j.config.eval.template, "strict"); H.eq(j.before.template, "strict"); H.eq(j.before.mode, "strict")
  -- a --template given serves both
  local g = run("--method temp_only --max-new-tokens 1 --eval-n 1 --eval-mode strict --template chatml",
                TMP .. "/run_strict2")
  H.ok(g.ok and g.code == 0, g.text)
  H.eq(assert(jsonio.decode(g.last)).before.template, "chatml")
end)

H.case("--eval-data FILE with the --data fields, --quiet prints only the JSON line", function()
  local EVAL = TMP .. "/math500-2-3.jsonl"
  local f = assert(io.open(EVAL, "wb"))
  f:write(lines[2], "\n", lines[3], "\n")
  f:close()
  local out = TMP .. "/run3"
  local r = run(("--eval-data %q --quiet"):format(EVAL), out)
  H.ok(r.ok, r.text)
  local n = 0
  for _ in r.text:gmatch("[^\n]+") do n = n + 1 end
  H.eq(n, 1, "--quiet: one line (no progress lines either):\n" .. r.text)
  local j = assert(jsonio.decode(r.last))
  H.eq(j.before.n, 2); H.eq(j.before.correct, 1); H.near(j.after.acc, 0.5, 1e-12)
  H.eq(j.before.benchmark, "math500-2-3"); H.eq(j.config.eval.data, EVAL)
  local recs = assert(jsonio.read_jsonl(out .. "/eval_before.jsonl"))
  H.eq(recs[1].question, rows[2].problem, "read with --question-field problem")
  H.eq(recs[1].answer, rows[2].answer); H.eq(recs[1].greedy.correct, true)
end)

H.case("data mistakes: one line, exit 1, nothing written", function()
  -- a JSON array, as eval.lua reads it (once "no string field" for the whole array on line 1)
  local NESTED = TMP .. "/nested-array.json"
  H.write(NESTED, '[{"problem": "1+1?", "answer": "2"}, [1, 2]]\n')
  local NULLLINE = TMP .. "/null-line.jsonl"
  H.write(NULLLINE, '{"problem": "1+1?", "answer": "2"}\nnull\n')
  local LATIN1 = TMP .. "/latin1.jsonl"
  H.write(LATIN1, '{"problem": "1+1?", "answer": "2"}\n{"problem": "caf\xe9 + 1?", "answer": "2"}\n')
  local cases = {
    {"--data", NESTED, "nested-array.json: element 2: expected a JSON object, got an array"},
    {"--data", NULLLINE, "null-line.jsonl:2: expected a JSON object, got null"},  -- it said "userdata"
    {"--data", LATIN1, "latin1.jsonl:2: not UTF-8 text"},   -- the bytes became U+FFFD in the records
  }
  for k, c in ipairs(cases) do
    local out = TMP .. "/bad" .. k
    local cmd = ("%q recipes/rlsc.lua --model %q %s --question-field problem --steps 1 --n 2 "
                 .. "--max-new-tokens 8 --out %q 2>&1"):format(exe, MODEL,
                 c[1] == "--data" and ("--data %q"):format(c[2])
                   or ("--data %q --eval-data %q"):format(DATA, c[2]), out)
    local p = assert(io.popen(cmd))
    local text = p:read("a")
    local _, _, code = p:close()
    H.eq(code, 1, c[1] .. ": exit status\n" .. text)
    H.ok(text:find(c[3], 1, true), c[1] .. ": message\n" .. text)
    H.ok(not text:find("traceback", 1, true), c[1] .. ": no traceback\n" .. text)
    H.ok(not io.open(out .. "/config.json", "rb"), c[1] .. ": nothing written")
  end
  -- and a well-formed JSON array trains as its JSON lines would
  local GOOD = TMP .. "/good-array.json"
  H.write(GOOD, '[{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": "4"}]\n')
  local out = TMP .. "/good-array"
  local p = assert(io.popen(("%q recipes/rlsc.lua --model %q --data %q --question-field problem --steps 1 --n 2 "
                             .. "--max-new-tokens 8 --no-eval --quiet --out %q 2>&1"):format(exe, MODEL, GOOD, out)))
  local text = p:read("a")
  local _, _, code = p:close()
  H.eq(code, 0, "a JSON array trains\n" .. text)
  H.eq(#assert(jsonio.read_jsonl(out .. "/steps.jsonl")), 1, "one step")
end)

H.case("--resume on other training questions is refused before anything is written", function()
  -- (seventeenth session) another --data, its fields or --template resumed and mixed two
  -- training sets in one run; the run's questions_digest decides
  local out = TMP .. "/resume-data"
  rm_rf(out)
  local base = ("%q recipes/rlsc.lua --model %q --question-field problem --steps %%d --n 2 --max-new-tokens 8 "
                .. "--checkpoint-every 1 --no-eval --quiet --out %q"):format(exe, MODEL, out)
  local function go(args)
    local p = assert(io.popen(args .. " 2>&1"))
    local text = p:read("a")
    local _, _, code = p:close()
    return code, text
  end
  local OTHER = TMP .. "/other.jsonl"
  H.write(OTHER, '{"problem": "3+3?", "answer": "6"}\n{"problem": "5+5?", "answer": "10"}\n')
  local code, text = go(base:format(1) .. (" --data %q"):format(DATA))
  H.eq(code, 0, text)
  local before = H.read(out .. "/config.json")
  code, text = go(base:format(2) .. (" --data %q --resume"):format(OTHER))
  H.eq(code, 1, text); H.ok(text:find("trained on other questions", 1, true), text)
  code, text = go(base:format(2) .. (" --data %q --template plain --resume"):format(DATA))
  H.eq(code, 1, text); H.ok(text:find("trained on other questions", 1, true), "another --template: " .. text)
  H.eq(H.read(out .. "/config.json"), before, "config.json untouched")
  code, text = go(base:format(2) .. (" --data %q --resume"):format(DATA))
  H.eq(code, 0, "the same data resumes\n" .. text)
  rm_rf(out)
end)

-- The audit's fixes (real-data path) ---------------------------------------------------------

-- rlsc with the given flags only (no --question-field / --answer-field added)
local function rlsc(args)
  local p = assert(io.popen(("%q recipes/rlsc.lua --model %q %s 2>&1"):format(exe, MODEL, args)))
  local text = p:read("a")
  local ok, how, code = p:close()
  local last
  for line in text:gmatch("[^\n]+") do last = line end
  return {ok = ok, code = code, text = text, last = last}
end
local function count(text, frag)
  local n, i = 0, 1
  while true do
    local a, b = text:find(frag, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end
local function first_lines(name, k)
  local f = assert(io.open(H.shared("benchmarks/" .. name .. ".jsonl"), "rb"))
  local ls, rs = {}, {}
  for line in f:lines() do
    if line:find("%S") then ls[#ls + 1] = line; rs[#rs + 1] = assert(jsonio.decode(line)) end
    if #ls == k then break end
  end
  f:close()
  return ls, rs
end

H.case("ids that repeat: --data and --eval-data are numbered by line, as eval.lua numbers them, with its note", function()
  -- (twenty-fourth session) rlsc refused such a file, in two wordings, where eval numbers it
  local DUP = TMP .. "/dup.jsonl"
  H.write(DUP, '{"id": 7, "problem": "1+1?", "answer": "2"}\n{"id": 7, "problem": "2+2?", "answer": "4"}\n')
  local ARR = TMP .. "/dup-array.json"
  H.write(ARR, '[{"id": 7, "problem": "1+1?", "answer": "2"}, {"id": 7, "problem": "2+2?", "answer": "4"}]\n')
  for k, c in ipairs({{"--data %q", DUP}, {"--data %q", ARR}, {"--data %q --eval-data %q", DATA, DUP}}) do
    local out = TMP .. "/dup" .. k
    local r = rlsc(("%s --question-field problem --steps 1 --n 2 --max-new-tokens %d --out %q")
                   :format(c[1]:format(c[2], c[3]), MAX_NEW, out))
    H.ok(r.ok and r.code == 0, r.text)
    local file = c[3] or c[2]
    H.eq(count(r.text, "rlsc: ids in " .. file .. " repeat; using line positions as ids"), 1, "the note, once:\n" .. r.text)
    local recs = assert(jsonio.read_jsonl(out .. "/eval_before.jsonl"))
    H.eq(#recs, 2); H.eq(recs[1].id, 1); H.eq(recs[2].id, 2)
  end
end)

H.case("B2: --data named after a benchmark (gsm8k, olympiadbench, minerva_math) is read with its fields and reference answers", function()
  local dir = TMP .. "/bench2"
  os.execute(("mkdir -p %q"):format(dir))
  for _, c in ipairs({{"gsm8k", "question", "idx"}, {"olympiadbench", "question", "id"}, {"minerva_math", "problem", "idx"}}) do
    local name, qf, idf = c[1], c[2], c[3]
    if not H.shared("benchmarks/" .. name .. ".jsonl") then
      H.skip(name, "no ../shared/data/benchmarks/" .. name .. ".jsonl")
    else
      local ls, rs = first_lines(name, 2)
      local file = dir .. "/" .. name .. ".jsonl"
      H.write(file, table.concat(ls, "\n") .. "\n")
      local out = TMP .. "/b2-" .. name
      local r = rlsc(("--data %q --steps 1 --n 2 --max-new-tokens %d --out %q"):format(file, MAX_NEW, out))
      H.ok(r.ok and r.code == 0, name .. ": " .. r.text)
      local j = assert(jsonio.decode(r.last or ""), name .. ": " .. r.text)
      H.eq(j.config.question_field, qf, name .. ": the benchmark's question field")
      H.eq(j.config.answer_reference, name, name .. ": its reference rule"); H.eq(j.config.answer_field, nil)
      H.eq(j.config.eval.data, file); H.eq(j.config.eval.answer_reference, name)
      H.eq(j.before and j.before.n, 2, name .. ": both problems evaluated")
      local recs = assert(jsonio.read_jsonl(out .. "/eval_before.jsonl"))
      H.eq(#recs, 2, name .. " records")
      for i, rec in ipairs(recs) do
        H.eq(rec.benchmark, name)
        H.eq(rec.answer, grade.reference(name, rs[i]), name .. " " .. i .. ": the reference answer")
        H.eq(rec.question, rs[i][qf], name .. " " .. i .. ": the question")
        H.eq(rec.id, rs[i][idf], name .. " " .. i .. ": the benchmark's id")
      end
      if name == "gsm8k" then
        H.eq(recs[1].answer, "18", "not the worked solution")
        -- --answer-field given: a plain file, as before
        local r2 = rlsc(("--data %q --answer-field answer --steps 1 --n 2 --max-new-tokens %d --out %q")
                        :format(file, MAX_NEW, out .. "-plain"))
        H.ok(r2.ok and r2.code == 0, r2.text)
        local p = assert(jsonio.read_jsonl(out .. "-plain/eval_before.jsonl"))
        H.eq(p[1].answer, rs[1].answer, "--answer-field answer: the field as it is")
        H.eq(jsonio.decode(r2.last).config.answer_field, "answer")
      end
    end
  end
end)

H.case("B3: --eval-questions and --eval-seed act on a --data run's evaluation", function()
  local out = TMP .. "/b3"
  local r = run("--eval-questions 2 --eval-seed 5 --eval-n 1", out)
  H.ok(r.ok and r.code == 0, r.text)
  local j = assert(jsonio.decode(r.last))
  H.eq(j.before.n, 2, "the first two problems"); H.eq(j.after.n, 2)
  H.eq(#assert(jsonio.read_jsonl(out .. "/eval_before.jsonl")), 2, "eval_before records")
  H.eq(#assert(jsonio.read_jsonl(out .. "/eval_after.jsonl")), 2, "eval_after records")
  H.eq(assert(jsonio.read_json(out .. "/eval_before.settings.json")).seed, 5, "the evaluation's seed")
  H.eq(j.config.eval.seed, 5); H.eq(j.config.eval.questions, 2); H.eq(j.config.seed, 1, "training's seed")
  -- the evaluation's seed defaults to --seed
  -- (and --eval-temperature / --eval-top-p set its sampling: 0.6 / 0.95 could not be changed)
  local d = run("--seed 4 --eval-n 1 --eval-temperature 0.5 --eval-top-p 0.9", out .. "-seed4")
  H.ok(d.ok and d.code == 0, d.text)
  local es = assert(jsonio.read_json(out .. "-seed4/eval_before.settings.json"))
  H.eq(es.seed, 4, "--seed 4"); H.eq(es.temperature, 0.5); H.eq(es.top_p, 0.9)
  local dc = assert(jsonio.decode(d.last)).config.eval
  H.eq(dc.temperature, 0.5, "config.json"); H.eq(dc.top_p, 0.9)
  H.eq(j.config.eval.temperature, 0.6, "the default"); H.eq(j.config.eval.top_p, 0.95)
  H.eq(assert(jsonio.decode(d.last)).config.eval.questions, 3, "all problems by default")
  -- --help says what each does in each mode
  local h = rlsc("--help")
  H.ok(h.text:find("--eval-questions N: toy", 1, true) and h.text:find("--eval-seed S: toy", 1, true), h.text)
end)

H.case("B5 / D3: --resume continues a before evaluation that was cut short; a finished one is kept", function()
  local out = TMP .. "/b5"
  local r = run("--eval-n 1", out)
  H.ok(r.ok and r.code == 0, r.text)
  local path = out .. "/eval_before.jsonl"
  local recs = assert(jsonio.read_jsonl(path))
  H.eq(#recs, 3)
  -- killed during the before evaluation: one record written (marked, so a regenerated one shows)
  recs[1].greedy.completion = recs[1].greedy.completion .. " "
  assert(jsonio.write_jsonl_atomic(path, {recs[1]}))
  for _, f in ipairs({"steps.jsonl", "eval_after.jsonl", "eval_after.settings.json", "summary.json"}) do
    os.remove(out .. "/" .. f)
  end
  r = run("--eval-n 1 --resume", out)
  H.ok(r.ok and r.code == 0, r.text)
  local j = assert(jsonio.decode(r.last))
  H.eq(j.before.resumed, 1, "one problem resumed"); H.eq(j.before.n, 3)
  H.ok(r.text:find("resumed 1 of 3", 1, true), "the log says so:\n" .. r.text)
  local now = assert(jsonio.read_jsonl(path))
  H.eq(#now, 3, "the missing problems generated")
  H.eq(now[1].greedy.completion, ANSWER .. " ", "the kept record was not generated again")
  H.eq(assert(jsonio.read_json(out .. "/summary.json")).before.resumed, 1, "summary.json")
  -- killed after the before evaluation: every record kept, none generated
  for _, f in ipairs({"steps.jsonl", "eval_after.jsonl", "eval_after.settings.json", "summary.json"}) do
    os.remove(out .. "/" .. f)
  end
  r = run("--eval-n 1 --resume", out)
  H.ok(r.ok and r.code == 0, r.text)
  H.eq(assert(jsonio.decode(r.last)).before.resumed, 3)
  H.ok(r.text:find("eval before kept", 1, true) and not r.text:find("eval before 0.0s", 1, true), r.text)
  -- other evaluation settings: evaluated again, and the log says why
  os.remove(out .. "/summary.json")
  r = run("--eval-n 2 --resume", out)
  H.ok(r.ok and r.code == 0, r.text)
  H.eq(assert(jsonio.decode(r.last)).before.resumed, 0, "evaluated again")
  H.ok(r.text:find("other settings", 1, true), "says why:\n" .. r.text)
end)

H.case("--resume continues an after evaluation cut short when the last step's checkpoint holds its model", function()
  -- (twenty-fourth session) it was generated again whole, hours for a real model
  local out = TMP .. "/after-resume"
  local r = run("--eval-n 1 --checkpoint-every 1", out)
  H.ok(r.ok and r.code == 0, r.text)
  local path = out .. "/eval_after.jsonl"
  local recs = assert(jsonio.read_jsonl(path))
  H.eq(#recs, 3)
  -- killed during the after evaluation: one record written (marked), no summary
  recs[1].greedy.completion = recs[1].greedy.completion .. " "
  assert(jsonio.write_jsonl_atomic(path, {recs[1]}))
  os.remove(out .. "/summary.json")
  r = run("--eval-n 1 --checkpoint-every 1 --resume", out)
  H.ok(r.ok and r.code == 0, r.text)
  local j = assert(jsonio.decode(r.last))
  H.eq(j.after.resumed, 1, "one problem resumed"); H.eq(j.after.n, 3)
  H.ok(r.text:find("the evaluation after training resumed 1 of 3", 1, true), "the log says so:\n" .. r.text)
  H.ok(r.text:find("eval after ", 1, true) and r.text:find("(resumed 1 of 3)", 1, true), r.text)
  local now = assert(jsonio.read_jsonl(path))
  H.eq(#now, 3, "the missing problems generated")
  H.eq(now[1].greedy.completion, ANSWER .. " ", "the kept record was not generated again")
  -- a resume that trains (its latest checkpoint is not the last step's) evaluates after again
  local out2 = TMP .. "/after-resume-2"
  local base = ("--data %q --question-field problem --answer-field answer --n 2 --max-new-tokens %d "
                .. "--questions-per-step 1 --eval-n 1 --checkpoint-every 1 --out %q"):format(DATA, MAX_NEW, out2)
  r = rlsc(base .. " --steps 1")
  H.ok(r.ok and r.code == 0, r.text)
  local path2 = out2 .. "/eval_after.jsonl"
  local recs2 = assert(jsonio.read_jsonl(path2))
  recs2[1].greedy.completion = recs2[1].greedy.completion .. " "
  assert(jsonio.write_jsonl_atomic(path2, {recs2[1]}))
  os.remove(out2 .. "/summary.json")
  r = rlsc(base .. " --steps 2 --resume")
  H.ok(r.ok and r.code == 0, r.text)
  H.eq(assert(jsonio.decode(r.last)).after.resumed, 0, "trained on: the after evaluation is new")
  local again = assert(jsonio.read_jsonl(path2))
  H.eq(#again, 3)
  H.ok(not again[1].greedy.completion:find(" $"), "the marked record is gone")
end)

H.case("D4: a --data file without answers: one line says why nothing is evaluated and how to get an evaluation", function()
  local file = TMP .. "/noanswers.jsonl"
  local f = assert(io.open(file, "wb"))
  for _, r in ipairs(rows) do f:write(jsonio.encode({problem = r.problem}), "\n") end
  f:close()
  local r = rlsc(("--data %q --question-field problem --steps 1 --n 2 --max-new-tokens %d --out %q")
                 :format(file, MAX_NEW, TMP .. "/d4"))
  H.ok(r.ok and r.code == 0, r.text)
  H.eq(count(r.text, "no answers"), 1, "said once:\n" .. r.text)
  H.ok(r.text:find("noanswers.jsonl:1", 1, true) and r.text:find("--eval-data", 1, true)
       and r.text:find("math500", 1, true), "the reason and the way out:\n" .. r.text)
  H.eq(assert(jsonio.decode(r.last)).config.eval, false)
end)

H.case("D7: every weight underflowed with alpha = 0: one warning per run", function()
  -- at T = 50 the samples leave the planted chain: 16 near-uniform tokens of 151936, log p ~ -190
  local base = ("--steps 2 --n 2 --temperature 50 --max-new-tokens 16 --no-eval --question-field problem --data %q")
               :format(DATA)
  local r = rlsc(base .. (" --alpha 0 --out %q"):format(TMP .. "/d7"))
  H.ok(r.ok and r.code == 0, r.text)
  local steps = assert(jsonio.read_jsonl(TMP .. "/d7/steps.jsonl"))
  H.eq(#steps, 2)
  for s = 1, 2 do H.eq(steps[s].weight_share, 0, "step " .. s .. " weight_share") end
  H.eq(count(r.text, "underflowed"), 1, "warned once:\n" .. r.text)
  H.ok(r.text:find("step 1: every sample's weight", 1, true) and r.text:find("alpha = 0", 1, true)
       and r.text:find("RLSC.md", 1, true), r.text)
  -- with alpha > 0 the samples still train: no warning
  local a = rlsc(base .. (" --alpha 0.1 --out %q"):format(TMP .. "/d7a"))
  H.ok(a.ok and a.code == 0, a.text)
  H.eq(count(a.text, "underflowed"), 0, a.text)
end)

local total = clock() - T_START
print(("timing: model %.2fs, plain run %.2fs, total %.1fs"):format(t_model, first and first.dt or -1, total))
rm_rf(TMP)
H.finish()
