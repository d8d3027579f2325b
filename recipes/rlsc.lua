-- recipes/rlsc.lua: RLSC (reinforcement learning via self-confidence) end to end. With no
-- arguments this is THE MAIN JOB: the shipped toy model (examples/toy/model) is evaluated on
-- held-out toy questions, fine-tuned with RLSC (L2, alpha = 0.1, N = 16, T = 0.5, 4 questions per
-- step, AdamW lr 1e-4, 20 steps) on unlabeled training questions, and evaluated again; a
-- before/after table is printed, and the LAST line of output is one JSON object
-- {"before": {...}, "after": {...}, "config": {...}} with the metric keys of confit.toy_eval,
-- named after --eval-n (n = 16: greedy_acc, pass1_t05, pass1_t10, maj16, pass2, pass4, pass8,
-- pass16, distinct_answers, direct_share, mean_length, sample_mean_length, mean_confidence,
-- weight_share; n = 4:
-- maj4, pass2, pass4). --data runs print the same kind of before/after table of
-- confit.evaluate's metrics (acc, pass@1, pass@k, maj@n, answer diversity, lengths, box and
-- truncation rates).
--
--   confit recipes/rlsc.lua [--method l2] [--alpha 0.1] [--n 16] [--steps 20]
--       [--questions-per-step 4] [--lr 1e-4] [--temperature 0.5] [--loss-temperature T]
--       [--eval-questions N] [--eval-seed S] [--seed 1] [--model examples/toy/model] [--task mixed]
--       [--out DIR] [--checkpoint-every K] [--resume] [--device cpu|cuda] [--dtype bf16|f32]
--       [--recompute] [--micro-batch K] [--state-dtype f32|bf16] [--profile]
--       ...      (--help lists every flag)
--
-- Methods: every name of confit.rl (l1, l2, ours_lennorm, ours_softmax, ours_clip, self_sft,
-- em_ft, grpo_ttrl, grpo_intuitor, grpo_rent, grpo_prob, temp_only). temp_only trains nothing:
-- its "after" evaluation samples at the eval temperatures times --temperature-scale (a flag
-- refused with a method that trains, as --task is with --data and the --data flags --template,
-- --eval-mode, --question-field and --answer-field are in the toy world; 0.5:
-- T = 0.25 and 0.5, reported under the pass1_t05 / pass1_t10 keys; greedy cannot change). With
-- --data the evaluation samples --eval-n (16 for temp_only unless given) completions at
-- --eval-temperature (0.6) before and at that x --temperature-scale after.
--
-- Real data: --model DIR --data FILE (JSONL, one object per line with a --question-field,
-- default "question"; an --answer-field, default "answer", is optional and only used for
-- logging train_acc and for evaluation). Prompts use the --template of confit.chat (default
-- "auto": "qwen25-math-cot", or "llama3-math-cot" / "llama31-math-cot" when the model's
-- tokenizer_config.json has a Llama 3.0 / 3.1+ chat template; with --eval-mode strict and
-- "auto", the evaluation uses the strict prompt of the same format), generation stops on the
-- tokenizer's end-of-turn / end-of-text tokens (<|im_end|> / <|endoftext|> for Qwen) and the
-- config's eos_token_id, answers are extracted with confit.grade (qwen mode). Unless given, the paper's settings apply: N = 16, T = 0.5,
-- max_new_tokens 3072, 10 steps, 1 question per step, lr 1e-5, weight decay 0.01 (and
-- --micro-batch 4: the same gradient in four passes, which bounds memory). Evaluation
-- before and after uses confit.evaluate (greedy, plus --eval-n samples) on --eval-data (a file,
-- read with the same --question-field / --answer-field, or a benchmark name of confit.bench;
-- default: the training file when it has answers): its first --eval-questions problems (default
-- all), sampled with seed --eval-seed (default --seed). A --data or --eval-data file named after
-- a benchmark of confit.bench (gsm8k.jsonl, olympiadbench.jsonl, ...) is read, unless
-- --answer-field is given, as --eval-data NAME reads the benchmark: its question field (unless
-- --question-field is given), its reference answers (confit.grade.reference: gsm8k's number after
-- "####", not the worked solution) and its ids. Ids: an "id" field, else the line's position
-- (a benchmark's: id, idx or unique_id); a file whose ids repeat is numbered by position, as
-- recipes/eval.lua numbers one (with its note), and a benchmark name's must be unique. The
-- training questions are taken in file order, --questions-per-step at a time, starting over after
-- the last (--seed draws the samples only); --questions-per-step may not exceed the file's count.
-- The evaluation samples at --eval-temperature (0.6) with --eval-top-p (0.95). The toy world's
-- --eval-questions (200) held-out questions are drawn with --eval-seed (1).
--
-- Run directory (docs/RUNDIR.md): --out, default runs/rlsc-<UTC timestamp> (-2, -3, ... when that
-- name is there): config.json,
-- steps.jsonl, eval_before.jsonl, eval_after.jsonl, summary.json, checkpoint-<step>/ when
-- --checkpoint-every > 0 (only the newest --keep-checkpoints K of them when K > 0), and model/ (the final weights) with --save-model. --out is a new or
-- empty folder, an rlsc run directory (config.json with recipe "rlsc") that holds no model, or an
-- ablate grid point rlsc has not written to yet (only ablate.json and log.txt); anything else is
-- refused. An unfinished rlsc run there without checkpoints is started over (its files removed);
-- one with checkpoints is continued from the latest with --resume (same settings, same --model)
-- and otherwise refused; a finished one
-- (summary.json) is only resumed (its results wait in superseded/ until the resumed run's
-- summary.json is written). A --data run with --resume keeps its evaluation before training
-- when it was made with the same settings and data, and continues one that was cut short (also
-- without a checkpoint): only the problems eval_before.jsonl lacks are generated (records made
-- otherwise are evaluated again, and the log says why); its evaluation after training likewise
-- when the latest checkpoint is the last step's (the resume trains nothing, so the checkpoint
-- holds the model that wrote eval_after.jsonl). Every input (flags, files, the model,
-- the checkpoint to resume) is checked before anything is printed or written.
--
-- Called from Lua (tests): local main = dofile("recipes/rlsc.lua"); main({"--steps", "2"})
-- returns {before, after, config, steps, timing, out}.
local confit = require "confit"
local model = require "confit.model"
local toy = require "confit.toy"
local rl = require "confit.rl"
local train = require "confit.train"
local toy_eval = require "confit.toy_eval"
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

-- Mistakes in the command line or the data: one line "rlsc: ..." and exit status 1 (confit.cli).
local die = cli.die_for("rlsc")

local sorted_names = cli.sorted_keys

local MAX_SAMPLES, MIN_TEMPERATURE, TOY_MAX_QUESTIONS = cli.MAX_SAMPLES, cli.MIN_TEMPERATURE, cli.TOY_MAX_QUESTIONS

local SPEC = {
  method = {"string", "l2",
    help = "the training method (list below; temp_only trains nothing and only samples colder)"},
  alpha = {"number", 0.1, min = 0,
    help = "l2 and ours_*: each sample's weight is its probability plus alpha"},
  n = {"int", 16, min = 1, max = MAX_SAMPLES,
    help = "samples per training question"},
  steps = {"int", 20, min = 1, max = 1000000,
    help = "training steps (sampled batches)"},
  questions_per_step = {"int", 4, min = 1, max = 4096,
    help = "training questions per step"},
  lr = {"number", 1e-4, min = 0,
    help = "AdamW learning rate"},
  weight_decay = {"number", 0.01, min = 0,
    help = "AdamW weight decay"},
  grad_clip = {"number", 0, min = 0,
    help = "clip the gradient's global norm to this (0: no clipping)"},
  temperature = {"number", 0.5, min = MIN_TEMPERATURE,
    help = "sampling temperature of the training samples (and of the loss unless --loss-temperature)"},
  loss_temperature = {"number", nil, min = MIN_TEMPERATURE,
    help = "the loss's temperature: log_softmax(logits / T) (default: --temperature)"},
  top_p = {"number", 1.0, above = 0, max = 1,
    help = "nucleus sampling of the training samples (1: off)"},
  max_new_tokens = {"int", 64, min = 1,
    help = "longest completion, in tokens"},
  clip_eps = {"number", 0.2, min = 0,
    help = "GRPO: the PPO ratio clip (binds with --updates-per-batch > 1)"},
  kl_coef = {"number", 0, min = 0,
    help = "GRPO: weight of the KL term to the starting model (0: none, no reference model loaded)"},
  clip_max = {"number", 0.5, min = 0,
    help = "ours_clip: the cap on each sample's probability weight"},
  method_opt = {"list", nil, shown = "none",
    help = "KEY=VALUE, repeatable: an option of a method of one's own (its loss gets opts.KEY; VALUE a "
           .. "number, true / false, else the text; recorded in config.json)"},
  temperature_scale = {"number", 0.5, above = 0,
    help = "temp_only: the evaluation samples at this times its temperature"},
  -- nil: resolved per mode in check (toy: 200 questions, seed 1; --data: every problem, --seed)
  eval_questions = {"int", nil, min = 1, max = 10000,
    help = "questions of the evaluations before and after training (see below)"},
  eval_n = {"int", 16, min = 0, max = MAX_SAMPLES,
    help = "samples per question in the evaluations (pass@k, maj@k); 0: greedy only"},
  eval_seed = {"int", nil,
    help = "seed of the evaluations (see below)"},
  eval_temperature = {"number", 0.6, above = 0,
    help = "--data: the sampling temperature of the evaluations' --eval-n samples (see below)"},
  eval_top_p = {"number", 0.95, above = 0, max = 1,
    help = "--data: nucleus sampling of the evaluations' --eval-n samples (1: off)"},
  no_eval = {"flag", false,
    help = "skip the evaluations before and after training"},
  seed = {"int", 1, min = 0,
    help = "seed of the training samples (and of the toy world's training questions; --data: file order, below)"},
  model = {"string", "examples/toy/model",
    help = "the model folder (Hugging Face: config.json, *.safetensors, tokenizer.json); the default, the shipped toy model, is found from any current folder"},
  task = {"string", "mixed", choices = sorted_names(toy.presets),
    help = "the toy world's task"},
  out = {"string", nil, shown = "runs/rlsc-<UTC time>",
    help = "the run directory (docs/RUNDIR.md)"},
  name = {"string", nil,
    help = "the run's name in reports (default: the --out folder's name)"},
  data = {"string", nil,
    help = "train on this file's questions (JSONL or a JSON array; their answers are never used)"},
  question_field = {"string", "question",
    help = "--data's question field"},
  answer_field = {"string", "answer",
    help = "--data's reference answer field: the evaluations and the log's accuracy read it, the loss never"},
  template = {"string", "auto", choices = (function()
    local t = sorted_names(require("confit.chat").templates)
    table.insert(t, 1, "auto")
    return t
  end)(),
    help = "the prompt template (auto: the evaluation mode's, in the model's chat format)"},
  eval_data = {"string", nil,
    help = "evaluate on this file or benchmark name (default: --data)"},
  eval_mode = {"string", "qwen", choices = {"qwen", "strict"},
    help = "how answers are extracted and judged (docs/EVALUATION.md)"},
  checkpoint_every = {"int", 0, min = 0,
    help = "save a checkpoint every this many steps (0: none)"},
  keep_checkpoints = {"int", 0, min = 0,
    help = "keep only the newest K checkpoint folders, removing older ones (0: keep all)"},
  resume = {"flag", false,
    help = "continue the run in --out from its latest checkpoint"},
  save_model = {"flag", false,
    help = "save the trained model as OUT/model"},
  quiet = {"flag", false,
    help = "print no progress lines; the result (the last JSON line) still prints"},
  device = {"string", "cpu", choices = confit.devices,
    help = "where the model computes"},
  dtype = {"string", "bf16", choices = {"bf16", "f32"}, shown = "bf16 on cuda, f32 on the CPU",
    help = "the weights' dtype on cuda (the CPU computes in f32: --dtype bf16 without --device cuda is refused)"},
  recompute = {"flag", false,
    help = "recompute each layer's activations in the backward pass (less memory)"},    -- activation recomputation per layer (m:set_recompute)
  micro_batch = {"int", 0, min = 0,
    help = "sequences per forward/backward (0: the whole step); the same gradient"}, -- sequences per forward/backward (0 = the whole step; rl.backward)
  updates_per_batch = {"int", 1, min = 1, max = 1000,
    help = "optimizer steps on each sampled batch (GRPO's mu)"}, -- optimizer steps per sampled batch (GRPO's mu; train.run)
  profile = {"flag", false,
    help = "time every op and generation stage: OUT/profile.json and a table"},      -- time every op and generation stage: OUT/profile.json + a table
  state_dtype = {"string", "f32", choices = {"f32", "bf16"},
    help = "dtype of AdamW's moments (bf16: a 7B full fine-tune fits one H200)"}, -- AdamW moments (bf16: 7B on one H200)
}

-- the paper's settings, applied for --data runs to every flag not given
local PAPER = {n = 16, temperature = 0.5, max_new_tokens = 3072, steps = 10,
               questions_per_step = 1, lr = 1e-5, weight_decay = 0.01, eval_n = 0,
               micro_batch = 4}   -- not the paper's: 4 sequences per forward/backward, same gradient

local function git_commit()
  local p = io.popen("git rev-parse HEAD 2>/dev/null")
  local c = p and p:read("l")
  if p then p:close() end
  return c
end

-- A new folder: a name that is there in any form (a run's, or a folder of other files that an
-- --out of it would refuse) is passed over for -2, -3, ... (until the twenty-eighth session only
-- a config.json made it taken: a folder of the user's, or a run of the same second that had not
-- written its config.json yet, was written into)
local function default_out()
  local base = "runs/rlsc-" .. os.date("!%Y%m%d-%H%M%S")
  local out, k = base, 1
  while cli.exists(out) do k = k + 1; out = base .. "-" .. k end
  return out
end

-- the metrics of a toy evaluation, named after its sample count (toy_eval.keys)
local function metric_line(s)
  local t = {}
  for _, k in ipairs(toy_eval.keys(s.samples)) do t[k] = s[k] end
  return t
end

-- the rows of the before/after table of a --data run: confit.evaluate's metrics that either
-- summary has (avg@n is pass@1 again, so it is left out)
local function data_keys(before, after)
  local keys, ks, seen = {"acc", "pass@1"}, {}, {}
  for _, s in ipairs({before, after}) do
    for k in pairs(s) do
      local n = tonumber(k:match("^pass@(%d+)$"))
      if n and n > 1 and not seen[n] then seen[n] = true; ks[#ks + 1] = n end
    end
  end
  table.sort(ks)
  for _, n in ipairs(ks) do keys[#keys + 1] = "pass@" .. n end
  local ns = {}
  for _, s in ipairs({before, after}) do
    if s.samples and not ns[s.samples] then ns[s.samples] = true; keys[#keys + 1] = "maj@" .. s.samples end
  end
  for _, k in ipairs({"distinct_answers", "modal_share", "mean_length", "box_rate", "truncated_rate",
                      "sample_mean_length", "sample_box_rate"}) do
    keys[#keys + 1] = k
  end
  return keys
end

-- the benchmark name of a --data / --eval-data file (as recipes/eval.lua names one: the file's
-- base name without .jsonl / .json), or the name of a benchmark of confit.bench as it is
local function bench_name(path)
  local base = path:gsub("/+$", "")
  base = base:match("([^/]+)$") or base
  return (base:gsub("%.jsonl?$", ""))
end

-- The benchmark of confit.bench a --data / --eval-data FILE is, or nil: a file named
-- <name>.jsonl after one (math500.jsonl, gsm8k.jsonl, ...) when --answer-field is not given.
-- Such a file is read as `--eval-data NAME` reads the benchmark (bench.load(name, {dir =
-- the file's folder})): its question field (unless --question-field is given), its reference
-- answers (confit.grade.reference: gsm8k's text after "####", olympiadbench's final_answer,
-- minerva_math's last \boxed{} of the solution) and its ids (id, idx or unique_id).
local function known_benchmark(o, path)
  if o.given.answer_field then return nil end
  return require("confit.bench").named_after(path)
end

-- A benchmark file's items (known_benchmark) through confit.bench; what: the flag, for messages.
local function load_known(o, name, dir, what)
  local bench = require "confit.bench"
  local qf = o.given.question_field and o.question_field or nil
  local ok, items, err = pcall(bench.load, name, {dir = dir, question = qf})
  local msg = not ok and cli.message(items) or not items and tostring(err) or nil
  if msg then
    die("%s %s (a file named %s.jsonl is read as the benchmark %s: give --answer-field FIELD to read it as a plain file)",
        what, (msg:gsub("^bench%.load: ", "")), name, name)
  end
  return items
end

-- The field a benchmark file's question was read from (for config.json): --question-field when
-- given, else the benchmark's (confit.bench.question_field)
local function question_field_of(o, name)
  if o.given.question_field then return o.question_field end
  return require("confit.bench").question_field(name)
end

-- Toy world ------------------------------------------------------------------------------------

-- Load the model and move it to --device (cuda: weights in --dtype, fp32 masters in AdamW).
local function load_model(o)
  local m, err = model.load(o.model)
  if not m then die("cannot load --model '%s': %s", o.model, tostring(err)) end
  if o.device == "cuda" then
    local ok, moved, err = pcall(m.to, m, "cuda", o.dtype)
    if not (ok and moved) then m:free(); die("%s", tostring(ok and err or moved)) end
  end
  if o.recompute then m:set_recompute(true) end
  return m
end

-- The options of train.run, the same for the toy world and --data: the flags, the model, the
-- training questions and the log; `checks` adds how a completion's answer is found and graded
-- (extract, answer_key, grade) and, for --data, the stop tokens.
local function train_opts(o, m, questions, say, checks)
  local t = {
    model = m, questions = questions, method = o.method, alpha = o.alpha, n = o.n,
    temperature = o.temperature, loss_temperature = o.loss_temperature, top_p = o.top_p,
    max_new_tokens = o.max_new_tokens, steps = o.steps, questions_per_step = o.questions_per_step,
    lr = o.lr, weight_decay = o.weight_decay, grad_clip = o.grad_clip, seed = o.seed, state_dtype = o.state_dtype,
    micro_batch = o.micro_batch, updates_per_batch = o.updates_per_batch,
    clip_eps = o.clip_eps, kl_coef = o.kl_coef, clip_max = o.clip_max, method_opts = o.method_opts,
    ref_model = o.kl_coef > 0 and load_model(o) or nil,
    out = o.out, checkpoint_every = o.checkpoint_every, keep_checkpoints = o.keep_checkpoints, resume = o.resume,
    log = say,
  }
  for k, v in pairs(checks) do t[k] = v end
  return t
end

local function run_toy(o, m, say)
  local world = toy.world(o.task)
  local bench_name = "toy-" .. o.task
  local heldout = world:questions("heldout", o.eval_questions, o.eval_seed)
  local trainq = world:questions("train", o.steps * o.questions_per_step, o.seed)
  local eval_opts = {n = o.eval_n, seed = o.seed, max_new_tokens = o.max_new_tokens,
                     benchmark = bench_name}
  local timing = {}
  local before, rec_before
  if not o.no_eval then
    local t0 = confit.clock()
    before, rec_before = toy_eval.run(m, heldout, eval_opts)
    timing.eval_before_s = confit.clock() - t0
    assert(jsonio.write_jsonl_atomic(o.out .. "/eval_before.jsonl", rec_before))
    say(("evaluated before: greedy %.3f  pass1_t05 %.3f  maj%d %.3f  (%d questions, %.1fs)")
        :format(before.greedy_acc, before.pass1_t05, o.eval_n, before["maj" .. o.eval_n], #heldout,
                timing.eval_before_s))
  end
  local t1 = confit.clock()
  local steps = train.run(train_opts(o, m, trainq, say, {
    extract = toy.extract_boxed, answer_key = toy_eval.answer_key,
    grade = function(text, answer) return (toy.grade(text, answer)) end,
  }))
  timing.train_s = confit.clock() - t1
  local after
  if not o.no_eval then
    local t2 = confit.clock()
    local ao = {}
    for k, v in pairs(eval_opts) do ao[k] = v end
    if not rl.trains(o.method) then ao.temperature_scale = o.temperature_scale end
    local rec_after
    after, rec_after = toy_eval.run(m, heldout, ao)
    timing.eval_after_s = confit.clock() - t2
    assert(jsonio.write_jsonl_atomic(o.out .. "/eval_after.jsonl", rec_after))
  end
  if o.save_model then m:save(o.out .. "/model") end
  return before, after, steps, timing, #heldout
end

-- Real data ------------------------------------------------------------------------------------

-- A --data / --eval-data file whose ids repeat is numbered by position, as eval.lua numbers
-- one (confit.bench.number_repeated); its note waits in o.notes until every check has passed.
local function number_repeated(o, items, path)
  local numbered, note = require("confit.bench").number_repeated(items, path)
  if not numbered then return end
  o.notes = o.notes or {}
  for _, n in ipairs(o.notes) do if n == note then return end end   -- --eval-data the --data file
  o.notes[#o.notes + 1] = note
end

-- The training questions of --data (read before anything runs, so a bad file stops the run at
-- once): the list of {id, question, answer, prompt} and whether every row has an answer.
local function read_questions(o)
  local chat = require "confit.chat"
  cli.check_file("rlsc", o.data, "--data")
  local name, dir = known_benchmark(o, o.data)
  if name then
    -- a benchmark's file: its fields, reference answers and ids (every problem has an answer)
    local items = load_known(o, name, dir, "--data")
    if #items == 0 then die("--data %s holds no questions", o.data) end
    local questions = {}
    for i, it in ipairs(items) do
      if not it.question:find("%S") then die("--data %s: empty question", it.where) end
      questions[i] = {id = it.id, question = it.question, answer = it.answer,
                      prompt = chat.apply(o.template, it.question)}
    end
    number_repeated(o, questions, o.data)
    o.data_reference, o.data_question_field = name, question_field_of(o, name)
    return questions, true
  end
  -- the records and where each is ("file:line", or "file: element N" of a JSON array, as eval reads)
  local recs, rerr = require("confit.bench").records(o.data)
  if not recs then die("--data %s", rerr) end
  local questions, labelled = {}, true
  for _, rw in ipairs(recs) do
    local r, where = rw[1], rw[2]
    do
      if type(r) ~= "table" or r[1] ~= nil then
        die("--data %s: expected a JSON object, got %s", where, r == jsonio.null and "null"
            or type(r) == "table" and "an array" or type(r))
      end
      local q = r[o.question_field]
      if type(q) ~= "string" then
        die("--data %s: no string field '%s' (--question-field)", where, o.question_field)
      end
      if not q:find("%S") then die("--data %s: empty question", where) end
      local a = r[o.answer_field]
      if a == nil or a == jsonio.null then
        labelled = false; a = nil
        o.unlabelled_where = o.unlabelled_where or where  -- the first, named when nothing is evaluated
      elseif type(a) ~= "string" and type(a) ~= "number" then
        die("--data %s: field '%s' (--answer-field) must be a string or a number", where, o.answer_field)
      elseif not tostring(a):find("%S") then   -- as bench.load (--eval-data, eval.lua) refuses it
        die("--data %s: empty answer (field '%s'): every problem would be graded wrong against it", where, o.answer_field)
      end
      local i = #questions + 1
      local id = r.id
      if id == nil or id == jsonio.null then id = i
      elseif type(id) ~= "string" and type(id) ~= "number" then
        die("--data %s: field 'id' must be a string or a number", where)
      end
      questions[i] = {id = id, question = q, answer = a ~= nil and tostring(a) or nil,
                      prompt = chat.apply(o.template, q)}
    end
  end
  if #questions == 0 then die("--data %s holds no questions", o.data) end
  number_repeated(o, questions, o.data)
  o.data_question_field, o.data_answer_field = o.question_field, o.answer_field
  return questions, labelled
end

-- The --eval-data problems (a file or a benchmark name of confit.bench), or nil.
local function read_eval_data(o)
  if not o.eval_data then return nil end
  local bench = require "confit.bench"
  -- a file is read with the --question-field / --answer-field of --data; a benchmark name
  -- with its own fields and reference answers
  local named = false
  for _, name in ipairs(bench.names) do if name == o.eval_data then named = true end end
  -- a file named after a benchmark is read as the benchmark (unless --answer-field is given)
  local kname, kdir = nil, nil
  if not named then kname, kdir = known_benchmark(o, o.eval_data) end
  local items
  if kname then
    items = load_known(o, kname, kdir, "--eval-data")
    o.eval_reference, o.eval_question_field = kname, question_field_of(o, kname)
  else
    local lopts = not named and {question = o.question_field, answer = o.answer_field} or nil
    local ok, got, err = pcall(bench.load, o.eval_data, lopts)
    if not ok then die("--eval-data: %s", (cli.message(got):gsub("^bench%.load: ", ""))) end
    if not got then die("--eval-data: %s", (tostring(err):gsub("^bench%.load: ", ""))) end
    items = got
    if named then o.eval_reference = o.eval_data
    else o.eval_question_field, o.eval_answer_field = o.question_field, o.answer_field end
  end
  if #items == 0 then die("--eval-data %s holds no problems", o.eval_data) end
  if named then
    -- a benchmark's ids must be unique, as eval.lua's --bench NAME requires
    local i, j = bench.repeated_id(items)
    if i then
      die("--eval-data %s: %s and %s share the id %s (ids must be unique)", o.eval_data, items[i].where,
          items[j].where, tostring(items[j].id))
    end
  else
    number_repeated(o, items, o.eval_data)
  end
  return items
end

-- The options of confit.evaluate for the evaluation of a --data run at stage "before" or
-- "after" into --out; resume: the "before" stage of a resumed run that keeps its records (check).
local function eval_opts(o, stage)
  -- temp_only: the "after" evaluation samples at the evaluation's temperature scaled
  local temperature = o.eval_temperature
  if stage == "after" and not rl.trains(o.method) then temperature = o.eval_temperature * o.temperature_scale end
  local progress = nil                 -- evaluate's progress lines (stderr); --quiet: none
  if o.quiet then progress = false end
  return {mode = o.eval_mode, template = o.eval_template, greedy = true, n = o.eval_n,
          max_new_tokens = o.max_new_tokens, seed = o.eval_seed, temperature = temperature, top_p = o.eval_top_p,
          out_dir = o.out, stage = stage, summary_file = false,
          resume = (stage == "before" and o.keep_before == true) or (stage == "after" and o.keep_after == true),
          benchmark = bench_name(o.eval_data or o.data),
          -- the model as recorded with the records (evaluate.check_resume sees no model object)
          model_dir = o.model, device = o.device, dtype = o.device == "cuda" and o.dtype or "f32",
          progress = progress}
end

local function run_real(o, m, say)
  local grade = require "confit.grade"
  local questions, labelled = o.questions, o.labelled
  local stop = {} -- the tokenizer's end-of-turn and end-of-text special tokens (tokenizer.lua)
  for i, id in ipairs(m.tokenizer.eos_ids or {}) do stop[i] = id end
  -- training extracts and grades answers in qwen mode, as the header says (grpo_ttrl's vote,
  -- answer_diversity, train_acc); --eval-mode is the evaluation's alone (it set these too until
  -- the twenty-first session, so a resume with another one mixed two rewards)
  local gopts = {mode = "qwen"}
  local extract = function(text) return grade.extract(text, gopts) end
  local evaluate = require "confit.evaluate"
  local problems = o.eval_problems
  local function do_eval(stage)
    if o.no_eval or not problems then return nil end
    return (evaluate.run(m, problems, eval_opts(o, stage)))
  end
  if not o.no_eval and not problems then
    -- said once, with the reason and the way to an evaluation
    say(("rlsc: no answers to evaluate against: %s has no field '%s' (--answer-field), so there is no "
         .. "evaluation before or after training; give --eval-data NAME (a benchmark: %s) or --eval-data FILE, "
         .. "or --answer-field FIELD"):format(o.unlabelled_where or o.data, o.answer_field,
                                             table.concat(require("confit.bench").names, ", ")))
  end
  if o.before_redo then say("rlsc: --resume: " .. o.before_redo .. "; evaluating again before training") end
  local timing = {}
  -- an evaluation, its time and what it resumed in timing (eval_<stage>_s, eval_<stage>_resumed)
  local function timed_eval(stage)
    local t0 = confit.clock()
    local r = do_eval(stage)
    if not r then return nil end
    timing["eval_" .. stage .. "_s"] = confit.clock() - t0
    if (r.resumed or 0) > 0 then
      timing["eval_" .. stage .. "_resumed"] = r.resumed
      say(("rlsc: the evaluation %s training resumed %d of %d problems from %s/eval_%s.jsonl%s"):format(stage,
          r.resumed, r.n, o.out, stage, r.resumed == r.n and " (kept; nothing generated)" or ""))
    end
    return r
  end
  local before = timed_eval("before")
  local t1 = confit.clock()
  local steps = train.run(train_opts(o, m, questions, say, {
    stop = stop, extract = extract, answer_key = function(a) return grade.normalize(a, gopts) end,
    answer_equal = function(a, b) return grade.equal(a, b, gopts) end,
    grade = labelled and function(text, answer)
      local p = extract(text)
      return p ~= nil and grade.equal(p, answer, gopts)
    end or nil,
  }))
  timing.train_s = confit.clock() - t1
  local after = timed_eval("after")
  if o.save_model then m:save(o.out .. "/model") end
  return before, after, steps, timing, problems and #problems or 0
end

-- Main -----------------------------------------------------------------------------------------

-- the files ablate (recipes/ablate.lua) writes into a grid point's folder before it runs rlsc there
local ABLATE_FILES = {["ablate.json"] = true, ["log.txt"] = true}

local tidy_path = cli.tidy_path

-- true when the folder paths a and b are written alike or lead to the same folder
local function same_folder(a, b)
  if tidy_path(a) == tidy_path(b) then return true end
  local function physical(d)
    local p = io.popen("cd -- " .. cli.shell_quote(d) .. " 2>/dev/null && pwd -P")
    local r = p and p:read("l")
    if p then p:close() end
    return r
  end
  local pa = physical(a)
  return pa ~= nil and pa == physical(b)
end

-- Lock the run directory o.out (OUT/.lock, held in o.lock until the run ends or main returns):
-- a second confit process on one run directory is refused in one line.
local function take_lock(o)
  if o.lock then return end
  local h, err, pid = confit.lock(o.out .. "/.lock")
  if not h then die("--out %s", cli.lock_refusal(o.out, err, pid)) end
  o.lock = h
end

-- A fingerprint of the training questions as train.run gets them (prompt after --template, answer,
-- in order): FNV-1a over their bytes, as 16 hex digits. A resume compares it with the run's, so
-- another --data, its fields, --template or the file edited since are refused (they mixed two
-- training sets in one run).
local function questions_digest(qs)
  local h = -3750763034362895579   -- FNV-1a 64 offset basis 0xcbf29ce484222325 (integers wrap)
  local function eat(s)
    for i = 1, #s do h = (h ~ s:byte(i)) * 1099511628211 end
    h = (h ~ 0xff) * 1099511628211    -- a separator no UTF-8 text holds
  end
  for _, q in ipairs(qs) do
    eat(type(q.prompt) == "table" and table.concat(q.prompt, ",") or tostring(q.prompt))
    eat(q.answer == nil and "" or tostring(q.answer))
  end
  return ("%016x"):format(h)
end

-- --out: a new or empty folder, an rlsc run directory (its config.json has recipe "rlsc") that
-- holds no model, or an ablate grid point that rlsc has not written to yet (only ablate.json
-- and log.txt). A fresh run starts an unfinished rlsc run over, --resume continues it from its
-- latest checkpoint (with the same settings and model); a finished run (summary.json) is only
-- resumed from a checkpoint. No --out: a new folder. Sets o.resumed (a checkpoint is continued).
local function check_out_dir(o)
  if not o.out then
    if o.resume then die("--resume needs --out (the run directory to continue)") end
    return
  end
  if o.out == "" then die("--out needs a folder (got an empty name)") end
  if not cli.exists(o.out) then return end
  if not cli.is_dir(o.out) then die("--out '%s' is %s", o.out, cli.not_a_folder(o.out)) end
  local names = cli.list_dir(o.out)
  if not names then die("--out '%s': cannot list the folder", o.out) end
  table.sort(names)
  local run
  if cli.exists(o.out .. "/config.json") then
    run = jsonio.read_json(o.out .. "/config.json")
    if type(run) ~= "table" or run.recipe ~= "rlsc" then
      die("--out '%s' holds a config.json that is not an rlsc run's (a model folder?); use another --out", o.out)
    end
  end
  for _, name in ipairs(names) do
    if name:match("%.safetensors$") then die("--out '%s' holds a model (%s); use another --out", o.out, name) end
  end
  if not run then
    for _, name in ipairs(names) do
      -- the run lock and jsonio's temporary files (a write cut short) are never data
      if not ABLATE_FILES[name] and name ~= ".lock" and not jsonio.is_temp_name(name) then
        die("--out '%s' holds %s and no rlsc run (config.json): rlsc writes only into a new or empty folder, "
            .. "an rlsc run directory or an ablate grid point; use another --out", o.out, name)
      end
    end
  end
  local ckpt = train.latest_checkpoint(o.out)
  o.resumed = o.resume and ckpt ~= nil
  -- a live run's checkpoints are its own: a run without --resume that finds one asks its lock
  -- first (the advice to --resume them ended at that lock anyway)
  if ckpt and not o.resume then
    local h, err, pid = confit.lock(o.out .. "/.lock")
    if not h then die("--out %s", cli.lock_refusal(o.out, err, pid)) end
    h:close()
  end
  -- the checkpoint continued must come from --model: the run's recorded folder, then (in
  -- train.check_out) the architecture of --model's config.json against the checkpoint's
  if o.resumed and run and type(run.model) == "string" and not same_folder(run.model, o.model) then
    die("--resume: --out '%s' is a run of --model '%s', not '%s'; resume with its --model or use another --out",
        o.out, run.model, o.model)
  end
  -- and on the same training questions (a run of an earlier confit has no digest: not compared)
  if o.resumed and run and o.data and type(run.questions_digest) == "string"
     and run.questions_digest ~= questions_digest(o.questions) then
    die("--resume: --out '%s' trained on other questions (--data %s%s): --data, its fields, --template or the "
        .. "file changed; resume with the run's or use another --out", o.out, tostring(run.data),
        run.template and (", --template " .. tostring(run.template)) or "")
  end
  if o.resumed and run and not o.data and (run.data ~= nil or (run.task ~= nil and run.task ~= o.task)) then
    die("--resume: --out '%s' trained on %s, not the toy task %s; resume with the run's or use another --out",
        o.out, run.data and ("--data " .. tostring(run.data)) or ("the toy task " .. tostring(run.task)), o.task)
  end
  if o.resumed and run and o.data and run.data == nil and run.task ~= nil then
    die("--resume: --out '%s' trained on the toy task %s, not --data %s; resume with the run's or use another --out",
        o.out, tostring(run.task), o.data)
  end
  -- and on its device and dtype: a checkpoint of bf16 weights on the GPU holds f32 master copies
  -- that f32 parameters cannot take, and one of f32 weights would lose them in bf16
  local dtype = o.device == "cpu" and "f32" or o.dtype
  if o.resumed and run and run.device ~= nil and (run.device ~= o.device or run.dtype ~= dtype) then
    die("--resume: --out '%s' is a run on --device %s --dtype %s, not --device %s (%s); resume with its --device "
        .. "and --dtype or use another --out", o.out, tostring(run.device), tostring(run.dtype), o.device, dtype)
  end
  -- a finished run's model/ moves to superseded/ and goes with it: resumed without --save-model,
  -- the run ended with no weights and no word (twenty-first session)
  if o.resumed and run and run.save_model == true and not o.save_model then
    die("--resume: --out '%s' was run with --save-model; give --save-model again (its model/ is replaced by "
        .. "this run's), or use another --out", o.out)
  end
  local bad = train.check_out(o.out, {
    method = o.method, resume = o.resume, seed = o.seed, alpha = o.alpha, n = o.n, steps = o.steps,
    temperature = o.temperature, loss_temperature = o.loss_temperature, top_p = o.top_p,
    max_new_tokens = o.max_new_tokens, questions_per_step = o.questions_per_step,
    clip_eps = o.clip_eps, kl_coef = o.kl_coef, clip_max = o.clip_max, grad_clip = o.grad_clip,
    updates_per_batch = o.updates_per_batch, method_opts = o.method_opts,
    lr = o.lr, weight_decay = o.weight_decay, state_dtype = o.state_dtype,
    model_config = jsonio.read_json(o.model .. "/config.json")})
  if bad then die("%s", bad) end
  if cli.exists(o.out .. "/summary.json") and not o.resumed then
    die("--out '%s' holds a finished run (summary.json)%s; use another --out", o.out,
        o.resume and " and no checkpoint to resume from" or "")
  end
  -- the folder is rlsc's to use: no other process may write it from here to the run's end
  take_lock(o)
end

local remove_tree = cli.remove_tree

-- A finished run resumed from a checkpoint keeps its results here until the resumed run has
-- written its own summary.json (docs/RUNDIR.md)
local SUPERSEDED = "superseded"

-- What an earlier attempt in this run directory wrote (check_out_dir accepted the folder): the
-- evaluations, summary, profile and final weights, which this run writes anew or not at all (a
-- resumed --data run keeps eval_before, see check), and on a fresh start the step log (a
-- resumed run's train.run cuts it back to the checkpoint). An unfinished attempt's are removed.
-- A finished run's (summary.json: check_out_dir lets only a resume from a checkpoint use it)
-- move into superseded/, with copies of its config.json and steps.jsonl, so a resumed run that
-- stops on the way loses none of them; that folder goes when this run writes its summary.json.
local function clear_earlier(o)
  local stale = {"summary.json", "profile.json", "model"}
  if not o.keep_after then
    stale[#stale + 1] = "eval_after.jsonl"; stale[#stale + 1] = "eval_after.settings.json"
  end
  if not o.keep_before then
    stale[#stale + 1] = "eval_before.jsonl"; stale[#stale + 1] = "eval_before.settings.json"
  end
  if not o.resumed then stale[#stale + 1] = "steps.jsonl" end
  local keep = o.out .. "/" .. SUPERSEDED
  -- superseded/.moving stands while the files move: a resume stopped among the moves (some in
  -- superseded/, summary.json perhaps still at the top) finishes them instead of taking the top
  -- for an older run's and deleting what had moved
  local marker = keep .. "/.moving"
  local function move_stale()
    for _, f in ipairs(stale) do
      if cli.exists(o.out .. "/" .. f) then
        local moved, merr = os.rename(o.out .. "/" .. f, keep .. "/" .. f)
        if not moved then die("--out '%s': cannot move the finished run's %s into %s/: %s", o.out, f, SUPERSEDED, tostring(merr)) end
      end
    end
    os.remove(marker)
  end
  if cli.exists(marker) then move_stale(); return end
  if not cli.exists(o.out .. "/summary.json") then
    for _, f in ipairs(stale) do remove_tree(o.out .. "/" .. f) end
    return
  end
  remove_tree(keep)   -- an older finished run's, which the one at the top superseded
  local ok, err = cli.make_dir(keep)
  if not ok then die("--out '%s': %s", o.out, err) end
  for _, f in ipairs({"config.json", "steps.jsonl"}) do
    if cli.exists(o.out .. "/" .. f) then
      local copied, cerr = jsonio.copy_file(o.out .. "/" .. f, keep .. "/" .. f)
      if not copied then die("--out '%s': cannot keep the finished run's %s: %s", o.out, f, tostring(cerr)) end
    end
  end
  local marked, merr = jsonio.write_json_atomic(marker, {moving = stale})
  if not marked then die("--out '%s': %s", o.out, tostring(merr)) end
  move_stale()
end

-- The checks of flags that parse but do not go together (no file read: ablate runs them on each
-- point of a grid before it runs any, cli.declare_flags).
local function check_flags(o)
  if o.no_eval then
    for _, k in ipairs({"eval_n", "eval_questions", "eval_seed", "eval_data", "eval_mode", "eval_temperature", "eval_top_p"}) do
      if o.given[k] then die("--no-eval runs no evaluation, so --%s has nothing to set; drop one of them", (k:gsub("_", "-"))) end
    end
  end
  local method, merr = rl.resolve(o.method)
  if not method then die("--method: %s", merr) end
  o.method = method
  -- flags that would do nothing here are refused, not ignored; temp_only without its evaluation
  -- would do nothing at all (the toy world ran it before the twenty-second session)
  -- (twenty-fifth session) --dtype bf16 on the CPU was ignored: the CPU holds the weights in f32 (its matmul has
  -- no bf16 kernel, m:to("cpu", "bf16") is refused); --dtype f32 there says what happens
  if o.given.dtype and o.device == "cpu" and o.dtype ~= "f32" then
    die("--dtype %s applies to --device cuda: the CPU holds the weights in f32 (drop --dtype, or add --device cuda)",
        o.dtype)
  end
  if method == "temp_only" and o.no_eval then
    die("--method temp_only trains nothing: it is only an evaluation (drop --no-eval)")
  end
  if o.given.temperature_scale and rl.trains(method) then
    die("--temperature-scale sets --method temp_only's colder evaluation; --method %s trains and does not use it", method)
  end
  -- --method-opt KEY=VALUE: train.run's method_opts (a method of one's own)
  local mo = {}
  for _, s in ipairs(o.method_opt or {}) do
    local k, v = s:match("^([^=]*)=(.*)$")
    if not k then die("--method-opt %s: give KEY=VALUE, an option's name and its value (--method-opt my_thresh=3)", s) end
    if not k:match(train.OPTION_NAME) then
      die("--method-opt %s: the key %q must be a plain name (letters, digits and _, not starting with a digit)", s, k)
    end
    -- ' 3' read as the number 3 until the twenty-fourth session: a value is taken as written
    if v:match("^%s") or v:match("%s$") then
      die("--method-opt %s: the value %q begins or ends with white space (write %s=VALUE, no space around '=')", s, v, k)
    end
    if mo[k] ~= nil then die("--method-opt %s: %s is given twice (give each option once)", s, k) end
    local n = v:match("^[%d%.eE+-]+$") and tonumber(v)
    if v == "true" or v == "false" then mo[k] = v == "true"
    elseif n then mo[k] = math.tointeger(n) or n
    else mo[k] = v end
    if rl.builtin(method) then
      die("--method-opt %s: --method %s is built in and reads no option of its own (--method-opt is for a method of "
          .. "one's own, docs/TOY.md)", s, method)
    end
    if SPEC[k] or train.DEFAULTS[k] then die("--method-opt %s: %s is a setting of its own (--%s)", s, k, (k:gsub("_", "-"))) end
    local bad = train.method_opts_problem(mo, method)
    if bad then die("--method-opt %s: %s", s, bad) end
  end
  o.method_opts = next(mo) and mo or nil
  if o.given.keep_checkpoints and o.checkpoint_every == 0 then
    die("--keep-checkpoints %d: no checkpoints are written without --checkpoint-every K (give one, or drop "
        .. "--keep-checkpoints)", o.keep_checkpoints)
  end
  if o.kl_coef > 0 and not train.method_reads("kl_coef", method) then
    die("--kl-coef %g: --method %s has no KL term (the GRPO methods have one), and the run would load a reference "
        .. "model for nothing (drop --kl-coef)", o.kl_coef, method)
  end
  if o.data then
    if o.given.task then die("--task picks the toy world's task; a --data run trains on --data %s (drop --task)", o.data) end
  else
    for _, k in ipairs({"eval_mode", "template", "question_field", "answer_field"}) do
      if o.given[k] then
        die("--%s applies to --data runs; the toy world has its own prompts and grader (drop --%s, or give --data FILE)",
            (k:gsub("_", "-")), (k:gsub("_", "-")))
      end
    end
    for _, k in ipairs({"eval_temperature", "eval_top_p"}) do
      if o.given[k] then
        die("--%s applies to --data runs; the toy evaluation samples at T = 0.5 and 1.0 without nucleus sampling "
            .. "(drop --%s, or give --data FILE)", (k:gsub("_", "-")), (k:gsub("_", "-")))
      end
    end
  end
  -- the GPU's tempered losses scale by 1 / T in float: refused past its range before any work
  local T_loss = o.loss_temperature or o.temperature
  if o.device == "cuda" and rl.trains(method) and (T_loss < 3e-39 or T_loss > 1e45) then
    die("--%s %g is outside the GPU losses' range (3e-39 to 1e45: their float 1 / T overflows or is 0)",
        o.loss_temperature and "loss-temperature" or "temperature", T_loss)
  end
  if rl.grpo_reward[method] and o.n < 2 then
    die("--method %s needs --n >= 2: its advantages are rewards relative to the other samples of a question (got --n %d)", method, o.n)
  end
  if o.data then
    if not o.given.model then die("--data needs --model DIR (a Hugging Face folder)") end
    for k, v in pairs(PAPER) do if not o.given[k] then o[k] = v end end
    -- temp_only is judged on sampled decoding before and after (greedy cannot change)
    if method == "temp_only" then
      if not o.given.eval_n then o.eval_n = 16 end
      if o.eval_n < 1 then
        die("--method temp_only compares sampled decoding before and after; --eval-n must be >= 1, got %d", o.eval_n)
      end
    end
    -- the evaluation's sampling settings act on its --eval-n samples only
    for _, k in ipairs({"eval_temperature", "eval_top_p"}) do
      if o.given[k] and not o.no_eval and o.eval_n == 0 then
        die("--%s sets the evaluation's sampling, and --eval-n is 0 (greedy only%s): give --eval-n N, or drop --%s",
            (k:gsub("_", "-")), o.given.eval_n and "" or ", the --data default", (k:gsub("_", "-")))
      end
    end
  elseif o.given.eval_data then
    die("--eval-data needs --data FILE (the toy world evaluates on its held-out questions)")
  elseif not o.no_eval and o.eval_n < 1 then
    die("--eval-n must be >= 1 for the toy evaluation, got %d (or give --no-eval)", o.eval_n)
  end
  -- a method of one's own split by --micro-batch between questions it does not declare a sum over
  if rl.trains(method) then
    local split = rl.micro_batch_problem(method, o.micro_batch, o.n * o.questions_per_step, o.questions_per_step)
    if split then die("--micro-batch %d: %s", o.micro_batch, split) end
  end
end

-- Every check of the command line and the input files, before anything is printed or written.
local function check(o)
  check_flags(o)
  -- --eval-questions / --eval-seed: the toy's held-out questions (200, drawn with seed 1), or
  -- the first N problems of a --data run's evaluation (all) and its sampling seed (--seed)
  if o.data then
    if o.eval_seed == nil then o.eval_seed = o.seed end
    -- (--seed is >= 0, so only a given --eval-seed can be negative)
    if o.eval_seed < 0 then die("--eval-seed must be >= 0 with --data (the evaluation's seed), got %d", o.eval_seed) end
  else
    if o.eval_questions == nil then o.eval_questions = 200 end
    if o.eval_seed == nil then o.eval_seed = 1 end
  end
  cli.project_default(o, "model")   -- the shipped toy model, from any current folder
  cli.check_model_dir("rlsc", o.model, "--model")
  -- a tokenizer that is not the model's (ids past its vocab_size) stops the run at the load:
  -- said first, before the context checks send the user to edit config.json for nothing
  local tok
  if cli.exists(o.model .. "/tokenizer.json") then
    local terr
    tok, terr = require("confit.tokenizer").new(o.model .. "/tokenizer.json")
    if not tok then die("--model '%s': cannot read tokenizer.json: %s", o.model, tostring(terr)) end
    local mcfg = jsonio.read_json(o.model .. "/config.json")   -- (unreadable: model_context says so below)
    local bad = type(mcfg) == "table" and model.vocab_mismatch(mcfg.vocab_size, tok)
    if bad then die("cannot load --model '%s': %s", o.model, bad) end
  end
  if o.data then
    local evaluate = require "confit.evaluate"
    -- the training prompt; the evaluation's is --eval-mode's prompt in the same format, unless a
    -- --template was given (then both use it)
    o.eval_template = o.template
    if o.template == "auto" then
      o.template_auto = true
      -- (a broken tokenizer_config.json: a user error naming it, not a traceback)
      local chosen, t_or_err = pcall(evaluate.default_template, "qwen", o.model)
      if not chosen then die("--template auto: %s", (tostring(t_or_err):gsub("^.-evaluate: ", ""))) end
      o.template = t_or_err
      o.eval_template = evaluate.default_template(o.eval_mode, o.model)
    end
    o.questions, o.labelled = read_questions(o)
    -- train.run takes --data's questions in file order, --questions-per-step at a time (wrapping
    -- around at the end); more per step than the file holds would repeat one within a step
    if o.questions_per_step > #o.questions then
      die("--questions-per-step %d is more than the %d training questions of --data %s: a step takes them in "
          .. "file order, so some would repeat within the step (give at most %d)", o.questions_per_step,
          #o.questions, o.data, #o.questions)
    end
    -- evaluated on --eval-data, else on the training file when it has answers (read alike)
    o.eval_problems = read_eval_data(o)
    if not o.eval_problems and o.labelled then
      o.eval_problems = o.questions
      o.eval_reference, o.eval_question_field, o.eval_answer_field =
        o.data_reference, o.data_question_field, o.data_answer_field
    end
    -- --eval-questions N: the first N problems
    if o.eval_problems and o.eval_questions and o.eval_questions < #o.eval_problems then
      o.eval_problems = table.move(o.eval_problems, 1, o.eval_questions, 1, {})
    end
  end
  -- --max-new-tokens must fit the model's context after the longest prompt (the --data prompts
  -- measured with the model folder's tokenizer.json, the toy prompts with the toy's bytes)
  o.context = cli.model_context("rlsc", o.model, "--model")
  local mnt_default = not o.given.max_new_tokens
  cli.check_context("rlsc", o.context, 0, o.max_new_tokens, nil, nil, mnt_default)
  if not o.data then
    if o.steps * o.questions_per_step > TOY_MAX_QUESTIONS then
      die("--steps %d x --questions-per-step %d asks the toy world for %d distinct training questions; at most %d",
          o.steps, o.questions_per_step, o.steps * o.questions_per_step, TOY_MAX_QUESTIONS)
    end
    local world, longest = toy.world(o.task), 0
    local qs = world:questions("train", o.steps * o.questions_per_step, o.seed)
    if not o.no_eval then
      for _, q in ipairs(world:questions("heldout", o.eval_questions, o.eval_seed)) do qs[#qs + 1] = q end
    end
    for _, q in ipairs(qs) do longest = math.max(longest, #toy.encode(q.prompt)) end
    cli.check_context("rlsc", o.context, longest, o.max_new_tokens, "toy prompt", nil, mnt_default)
  end
  if not cli.exists(o.model .. "/tokenizer.json") then
    die("--model '%s' has no tokenizer.json (rlsc reads its prompts and samples with it)", o.model)
  end
  if o.data then
    local chat = require "confit.chat"
    -- the longest prompt of a list and its question's id; an empty prompt cannot be sampled
    local function longest_prompt(list, prompt_of, what)
      local longest, where = 0, nil
      for _, q in ipairs(list) do
        local n = #tok:encode(prompt_of(q))
        if n == 0 then die("%s, question %s: the prompt is empty", what, tostring(q.id)) end
        if n > longest then longest, where = n, q.id end
      end
      return longest, where
    end
    -- a template whose markers are no special tokens of the model's tokenizer spells them out in
    -- ordinary tokens: every prompt wrong (training went on without a word; the evaluation
    -- refused it with a traceback, after config.json was written)
    local auto = o.template_auto and " (--template auto's choice)" or ""
    for _, t in ipairs({{o.template, "the training template"}, {not o.no_eval and o.eval_problems and o.eval_template,
                                                                "the evaluation's template"}}) do
      local mark = t[1] and chat.missing_marker(t[1], tok)
      if mark then
        die("%s %s%s writes %s, which is no special token of --model '%s''s tokenizer: give --template of its "
            .. "chat format (%s), or --template plain", t[2], t[1], auto, mark, o.model,
            chat.family(o.model) or "its folder has no chat template")
      end
    end
    local longest, where = longest_prompt(o.questions, function(q) return q.prompt end, "--data " .. o.data)
    local hint = require("confit.evaluate").context_hint
    cli.check_context("rlsc", o.context, longest, o.max_new_tokens,
                      ("prompt (--data %s, question %s)"):format(o.data, tostring(where)), hint(o.template), mnt_default)
    -- confit.evaluate gives a long prompt fewer new tokens (like vLLM): it only needs room for one
    if o.eval_problems and not o.no_eval then
      local what = "--eval-data " .. (o.eval_data or o.data)
      longest, where = longest_prompt(o.eval_problems, function(q) return chat.apply(o.eval_template, q.question) end, what)
      cli.check_context("rlsc", o.context, longest, 1, ("evaluation prompt (%s, question %s)"):format(what, tostring(where)),
                        hint(o.eval_template))
    end
  end
  if tok then tok:free() end
  if o.device == "cuda" then
    local why = cli.gpu_problem()
    if why then die("--device cuda: no usable GPU (%s)", why) end
  end
  check_out_dir(o)
  -- --resume keeps the evaluation before training of the run it continues, also one cut short
  -- (a run stopped before its first checkpoint, or during that evaluation): confit.evaluate
  -- resumes eval_before.jsonl, generating only the problems it lacks. Records it would refuse
  -- to resume (other settings, model or data, or a settings file missing or unreadable) and
  -- records of problems this evaluation does not ask for are evaluated again, and the log says
  -- why (check_resume: decided here, so evaluate.run never refuses after files were written).
  -- The toy evaluation is quick and always runs again.
  if o.data and o.resume and not o.no_eval and o.eval_problems
     and cli.exists(o.out .. "/eval_before.jsonl") then
    local path = o.out .. "/eval_before.jsonl"
    local eo = eval_opts(o, "before")
    eo.resume = true
    local why = require("confit.evaluate").check_resume(eo, o.eval_problems)
    if why then
      why = why:gsub(";%s*use another output directory, or start over.*$", "")
    else
      local recs = jsonio.read_jsonl(path, {partial_tail = true}) or {}
      local want = {}
      for _, q in ipairs(o.eval_problems) do want[tostring(q.id)] = true end
      for _, r in ipairs(recs) do
        if type(r) == "table" and not want[tostring(r.id)] then
          why = ("%s holds problem %s, which this evaluation does not ask for (--eval-data or --eval-questions changed)")
                :format(path, tostring(r.id))
          break
        end
      end
    end
    o.keep_before = why == nil
    o.before_redo = why
  end
  -- The evaluation after training is kept likewise, but only when the resume trains nothing: the
  -- latest checkpoint is the last step's, so the model that wrote eval_after.jsonl is the one the
  -- checkpoint holds (a run stopped during that evaluation; before the twenty-fourth session it
  -- was generated again whole, hours for a real model)
  local _, ckpt_step = train.latest_checkpoint(o.out)
  if o.data and o.resumed and ckpt_step == o.steps and not o.no_eval and o.eval_problems
     and cli.exists(o.out .. "/eval_after.jsonl") then
    local eo = eval_opts(o, "after")
    eo.resume = true
    local why = require("confit.evaluate").check_resume(eo, o.eval_problems)
    if not why then
      local want = {}
      for _, q in ipairs(o.eval_problems) do want[tostring(q.id)] = true end
      for _, r in ipairs(jsonio.read_jsonl(o.out .. "/eval_after.jsonl", {partial_tail = true}) or {}) do
        if type(r) == "table" and not want[tostring(r.id)] then why = "a problem it does not ask for"; break end
      end
    end
    o.keep_after = why == nil
  end
end

-- printed after the flags by --help
local function help_notes()
  local methods = {}
  for name in pairs(rl.methods) do methods[#methods + 1] = name end
  table.sort(methods)
  return "methods: " .. table.concat(methods, ", ") .. "; aliases: " .. table.concat(rl.aliases(), ", ") .. ".\n" ..
    "The defaults above are the toy world's. With --data, flags not given take the paper's settings:\n" ..
    "  --n 16 --temperature 0.5 --max-new-tokens 3072 --steps 10 --questions-per-step 1 --lr 1e-5\n" ..
    "  --weight-decay 0.01 --eval-n 0 (temp_only: 16) --micro-batch 4; --model is then required.\n" ..
    "--eval-questions N: toy: N held-out questions (default 200); --data: the first N problems of the\n" ..
    "  evaluation's data (default: all of them).\n" ..
    "--eval-seed S: toy: the seed that draws the held-out questions (default 1; sampling uses --seed);\n" ..
    "  --data: the seed of the evaluation's sampling (default: --seed).\n" ..
    "--eval-temperature T / --eval-top-p P (--data, with --eval-n > 0): how the evaluations sample their\n" ..
    "  --eval-n completions (default 0.6 / 0.95; temp_only's after evaluation at T x --temperature-scale).\n" ..
    "  The toy evaluation samples at T = 0.5 and 1.0 without nucleus sampling: refused without --data.\n" ..
    "--seed S: the training samples' seed; the toy world also draws its training questions with it. With\n" ..
    "  --data the questions are taken in file order, --questions-per-step at a time, starting over at the\n" ..
    "  file's start after its last (--steps x --questions-per-step may exceed the file); a\n" ..
    "  --questions-per-step above the file's count is refused (a question would repeat within a step).\n" ..
    "--data / --eval-data FILE named after a benchmark (gsm8k.jsonl, math500.jsonl, olympiadbench.jsonl, ...)\n" ..
    "  without --answer-field: read as --eval-data NAME reads that benchmark (its question field unless\n" ..
    "  --question-field is given, its reference answers, its ids); with --answer-field: a plain file.\n" ..
    "--dtype applies to --device cuda (the CPU computes in f32). Flags that would do nothing are refused:\n" ..
    "  --dtype bf16 without --device cuda; --task with --data; --template, --eval-mode, --question-field,\n" ..
    "  --answer-field without --data (the toy world has its own prompts and grader); --temperature-scale\n" ..
    "  with a method that trains; --kl-coef > 0 with a method that has no KL term (all but the GRPO\n" ..
    "  methods; a method registered with rl.register_weighted has none either); --method-opt with a\n" ..
    "  built-in method. --alpha (l2, ours_*), --clip-eps\n" ..
    "  (GRPO) and --clip-max (ours_clip) are recorded whatever the method, as an ablate grid crosses them\n" ..
    "  with methods; the other methods do not read them (train.run passes each method only the\n" ..
    "  options it reads, rl.reads).\n" ..
    "--method-opt KEY=VALUE (repeatable): an option of a method of one's own, given to its loss as\n" ..
    "  opts.KEY (KEY: letters, digits and _, not starting with a digit; VALUE, no space around '=': a\n" ..
    "  number when it reads as one, true / false, else the text); recorded in\n" ..
    "  config.json (method_opts) and compared on --resume (docs/TOY.md, \"Your own loss\").\n" ..
    "--temperature / --loss-temperature: the loss's temperature T needs 1 / T finite: >= 5.6e-309 on the\n" ..
    "  CPU, 3e-39 to 1e45 with --device cuda (its losses scale in float).\n" ..
    "--updates-per-batch MU: MU optimizer steps on each sampled batch (GRPO's mu), the loss computed\n" ..
    "  anew each time; --steps, --checkpoint-every and checkpoint-<K> count sampled batches, steps.jsonl\n" ..
    "  and the log have one line per optimizer step (step = (batch - 1) * MU + update, with batch and\n" ..
    "  update keys when MU > 1). --clip-eps (GRPO's PPO clip) binds only with MU > 1: from the second\n" ..
    "  update the ratio is taken against the sampling policy (its rewards kept; clip_frac logged); with\n" ..
    "  MU = 1 the one update is on-policy, the ratio is 1. RLSC's p_old is the current model's each update.\n" ..
    "--checkpoint-every K writes OUT/checkpoint-<step> every K steps, each a whole model and its AdamW\n" ..
    "  state; --keep-checkpoints N keeps the newest N of them (an older one is removed only after a newer\n" ..
    "  one is written whole; --resume continues from the newest); 0 or absent keeps all.\n" ..
    "--out: a new or empty folder, an rlsc run directory or an ablate grid point; never a model folder\n" ..
    "  or a folder of other files. An unfinished run without checkpoints there starts over; one with\n" ..
    "  checkpoints needs --resume (same settings, same --model), which continues from the latest; a\n" ..
    "  finished run (summary.json) is kept unless resumed from a checkpoint (its results then wait in\n" ..
    "  OUT/superseded/ until the resumed run writes its summary.json). --resume needs --out.\n" ..
    "  With --data, --resume also continues the evaluation before training where it stopped (a run cut\n" ..
    "  short before its first checkpoint included); records made with other settings are evaluated again."
end

local function main(argv)
  local o = cli.parse_args(argv or {}, SPEC, "recipes/rlsc.lua", help_notes())
  -- the run directory's lock (take_lock) is released however main ends
  local _ <close> = setmetatable({}, {__close = function() if o.lock then o.lock:close(); o.lock = nil end end})
  local say = o.quiet and function() end or print
  check(o)
  local m = load_model(o)   -- the last check: a model that does not load stops the run here
  for _, note in ipairs(o.notes or {}) do io.stderr:write("rlsc: ", note, "\n") end
  local method = o.method
  o.out = o.out or default_out()
  cli.mkdir_p("rlsc", o.out, "--out")
  take_lock(o)   -- a new folder (an existing one was locked by check_out_dir)
  -- temporary files of atomic writes that a killed run left behind
  jsonio.remove_stale_temps(o.out)
  clear_earlier(o)
  local cfg = {
    recipe = "rlsc", name = o.name or o.out:match("([^/]+)/*$"), seed = o.seed, model = o.model,
    method = method, loss = method, alpha = o.alpha, samples_per_question = o.n,
    temperature = o.temperature, loss_temperature = o.loss_temperature or o.temperature,
    top_p = o.top_p, max_new_tokens = o.max_new_tokens, steps = o.steps,
    questions_per_step = o.questions_per_step,
    optim = {name = "adamw", lr = o.lr, weight_decay = o.weight_decay, betas = {0.9, 0.999},
             eps = 1e-8, grad_clip = o.grad_clip, state_dtype = o.state_dtype},
    recompute = o.recompute, micro_batch = o.micro_batch, updates_per_batch = o.updates_per_batch,
    clip_eps = o.clip_eps, kl_coef = o.kl_coef, clip_max = o.clip_max, method_opts = o.method_opts,
    task = not o.data and o.task or nil, data = o.data, template = o.data and o.template or nil,
    questions_digest = o.data and questions_digest(o.questions) or nil,
    -- how --data was read: its fields, or a benchmark's fields and reference answers
    question_field = o.data_question_field, answer_field = o.data_answer_field,
    answer_reference = o.data_reference,
    checkpoint_every = o.checkpoint_every, keep_checkpoints = o.keep_checkpoints, save_model = o.save_model,
    started_at = os.date("!%Y-%m-%dT%H:%M:%SZ"), git = git_commit(), device = o.device, dtype = o.device ~= "cpu" and o.dtype or "f32",
    steps_logprob_temperature = o.loss_temperature or o.temperature,
  }
  if not rl.trains(method) then cfg.temperature_scale = o.temperature_scale end
  if o.no_eval or (o.data and not o.eval_problems) then
    cfg.eval = false   -- no evaluation: --no-eval, or a --data file without answers and no --eval-data
  elseif o.data then
    -- confit.evaluate's settings as it applies them (top_p, greedy, seed, ...)
    local es = require("confit.evaluate").settings(eval_opts(o, "before"))
    cfg.eval = {mode = o.eval_mode, template = es.template, data = o.eval_data or o.data, n = es.n,
                greedy = es.greedy, temperature = es.temperature, top_p = es.top_p, top_k = es.top_k,
                max_new_tokens = es.max_new_tokens, seed = es.seed, questions = #o.eval_problems,
                benchmark = es.benchmark, answer_reference = o.eval_reference,
                question_field = o.eval_question_field, answer_field = o.eval_answer_field}
    if not rl.trains(method) then cfg.eval.after_temperature = o.eval_temperature * o.temperature_scale end
  else
    cfg.eval = {questions = o.eval_questions, n = o.eval_n, seed = o.seed, question_seed = o.eval_seed,
                temperatures = {0.5, 1.0}, greedy = true, max_new_tokens = o.max_new_tokens,
                logprob_temperature = "weights and mean_confidence at 0.5; records at 1"}
    if not rl.trains(method) then
      cfg.eval.after_temperatures = {0.5 * o.temperature_scale, 1.0 * o.temperature_scale}
    end
  end
  local ok, err = jsonio.write_json_atomic(o.out .. "/config.json", cfg)
  if not ok then die("cannot write --out '%s': %s", o.out, tostring(err)) end
  if rl.trains(method) then
    say(("rlsc: %s on %s, method %s, alpha %g, N %d, T %g, %d steps x %d questions, lr %g, seed %d -> %s")
        :format(o.model, o.data or ("toy " .. o.task), method, o.alpha, o.n, o.temperature, o.steps,
                o.questions_per_step, o.lr, o.seed, o.out))
  else
    say(("rlsc: %s on %s, method temp_only: no training; the after evaluation samples %g x colder, seed %d -> %s")
        :format(o.model, o.data or ("toy " .. o.task), 1 / o.temperature_scale, o.seed, o.out))
  end
  local t0 = confit.clock()
  local before, after, steps, timing, nq
  if o.profile then confit.profiler.start() end
  if o.data then
    before, after, steps, timing, nq = run_real(o, m, say)
  else
    before, after, steps, timing, nq = run_toy(o, m, say)
  end
  timing.total_s = confit.clock() - t0
  if o.profile then
    local rows = confit.profiler.stop()
    assert(jsonio.write_json_atomic(o.out .. "/profile.json", rows))
    say("")
    say("profile (" .. o.out .. "/profile.json):")
    say(confit.profiler.report(rows, {top = 15}))
  end
  local summary = {config = cfg, timing = timing}
  if before then summary.before = o.data and before or toy_eval.rundir(before, nq) end
  if after then summary.after = o.data and after or toy_eval.rundir(after, nq) end
  -- a toy run's benchmark is named as its eval records name it (a --data run's summaries have it)
  if not o.data then
    for _, s in pairs({summary.before, summary.after}) do s.benchmark = "toy-" .. o.task end
  end
  assert(jsonio.write_json_atomic(o.out .. "/summary.json", summary))
  -- this run is finished: the results it resumed over are superseded now
  remove_tree(o.out .. "/" .. SUPERSEDED)
  if before and after then
    say("")
    say(toy_eval.format_table({{"before", before}, {"after", after}},
                              {change = true, keys = o.data and data_keys(before, after) or nil}))
  end
  -- the times of what ran (no evaluation: no "eval before 0.0s")
  local times = {}
  local function eval_time(stage, r)
    local kept = timing["eval_" .. stage .. "_resumed"]
    if kept and r and kept == r.n then
      times[#times + 1] = "eval " .. stage .. " kept"   -- every record resumed: nothing was evaluated
    elseif timing["eval_" .. stage .. "_s"] then
      times[#times + 1] = ("eval %s %.1fs"):format(stage, timing["eval_" .. stage .. "_s"])
      if kept then times[#times] = times[#times] .. (" (resumed %d of %d)"):format(kept, r.n) end
    end
  end
  eval_time("before", before)
  if timing.train_s then times[#times + 1] = ("training %.1fs"):format(timing.train_s) end
  eval_time("after", after)
  times[#times + 1] = ("total %.1fs"):format(timing.total_s)
  say("time: " .. table.concat(times, ", "))
  local last = {config = cfg}
  if before then last.before = o.data and before or metric_line(before) end
  if after then last.after = o.data and after or metric_line(after) end
  print(jsonio.encode(last))
  return {before = before, after = after, config = cfg, steps = steps, timing = timing, out = o.out}
end

-- Run as a script: mistakes in the command line or the data print one line "rlsc: ..." and exit
-- 1, anything else keeps its traceback (confit.cli). Loaded with dofile: returns main, whose
-- flags cli.flags_of(main) gives (ablate checks a grid against them).
return cli.main("rlsc", cli.declare_flags(main, SPEC, check_flags))
