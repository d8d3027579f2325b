-- recipes/toy_compare.lua: RLSC (L1, L2) against the peers on the toy world, under several
-- seeds, as a Markdown table of mean +- spread.
--
--   confit recipes/toy_compare.lua [--methods temp_only,l1,l2,self_sft,em_ft,grpo_ttrl]
--       [--seeds 1,2,3] [--steps 20] [--questions-per-step 4] [--n 16] [--lr 1e-4]
--       [--eval-questions 100] [--eval-n 16] [--model examples/toy/model] [--task mixed]
--       [--out runs/toy_compare] [--md runs/toy_compare.md]
--
-- Every method runs from the same checkpoint with the same settings as the main job (alpha 0.1,
-- N = 16, T = 0.5, AdamW lr 1e-4, 4 questions per step) on the same training questions for a
-- given seed, and is evaluated on the same held-out questions with the same sampling seeds.
-- "before" is evaluated once per seed (it does not depend on the method). Methods:
--   temp_only  no training; "after" samples at half the temperature (T = 0.25 / 0.5)
--   l1, l2     RLSC
--   self_sft   every weight 1 (self-training on own samples)
--   em_ft      token-entropy minimisation
--   grpo_ttrl  majority-vote self-training, TTRL-style (GRPO with the majority-vote reward)
-- (any confit.rl method name works). The grid is written as an ablation grid of docs/RUNDIR.md
-- (OUT/grid.json, OUT/method=<m>,seed=<s>/...), the table to --md. Spread = sample standard
-- deviation over the seeds (n - 1 denominator).
local confit = require "confit"
local model = require "confit.model"
local toy = require "confit.toy"
local rl = require "confit.rl"
local train = require "confit.train"
local toy_eval = require "confit.toy_eval"
local jsonio = require "confit.jsonio"
local metrics = require "confit.metrics"
local cli = require "confit.cli"

-- Mistakes in the command line: one line "toy_compare: ..." and exit status 1 (confit.cli).
local die = cli.die_for("toy_compare")

local TASKS = {}
for k in pairs(toy.presets) do TASKS[#TASKS + 1] = k end
table.sort(TASKS)

local SPEC = {
  methods = {"string", "temp_only,l1,l2,self_sft,em_ft,grpo_ttrl"},
  seeds = {"string", "1,2,3"},
  steps = {"int", 20, min = 1},
  questions_per_step = {"int", 4, min = 1},
  n = {"int", 16, min = 1},
  alpha = {"number", 0.1, min = 0},
  temperature = {"number", 0.5, above = 0},
  lr = {"number", 1e-4, min = 0},
  temperature_scale = {"number", 0.5, above = 0},
  max_new_tokens = {"int", 64, min = 1},
  eval_questions = {"int", 100, min = 1},
  eval_n = {"int", 16, min = 1},
  eval_seed = {"int", 1},
  model = {"string", "examples/toy/model"},
  task = {"string", "mixed", choices = TASKS},
  out = {"string", "runs/toy_compare"},
  md = {"string", "runs/toy_compare.md"},
  quiet = {"flag", false},
}

local COLS = {{"greedy_acc", "greedy"}, {"pass1_t05", "pass@1 T=.5"}, {"pass1_t10", "pass@1 T=1"},
              {"maj16", "maj@16"}, {"pass16", "pass@16"}, {"direct_share", "direct"},
              {"distinct_answers", "distinct"}, {"mean_length", "length"},
              {"mean_confidence", "confidence"}}

local function split(s)
  local out = {}
  for x in s:gmatch("[^,%s]+") do out[#out + 1] = x end
  return out
end

local function cell(xs, key)
  local v = {}
  for i, s in ipairs(xs) do v[i] = s[key] end
  local digits = (key == "mean_length" or key == "distinct_answers") and 1 or 3
  local m = metrics.mean(v)
  if #v < 2 then return (("%%.%df"):format(digits)):format(m), m end   -- one seed: no spread
  return (("%%.%df ± %%.%df"):format(digits, digits)):format(m, metrics.std(v)), m
end

local function load_model(dir)
  local m, err = model.load(dir)
  if not m then die("cannot load --model '%s': %s", dir, tostring(err)) end
  return m
end

local function main(argv)
  local o = train.parse_args(argv or {}, SPEC, "recipes/toy_compare.lua")
  local say = o.quiet and function() end or print
  local methods, seeds = split(o.methods), {}
  if #methods == 0 then die("--methods is empty (give names such as l1,l2)") end
  local seen = {}
  for i, mth in ipairs(methods) do
    local canon, merr = rl.resolve(mth)
    if not canon then die("--methods: %s", merr) end
    if seen[canon] then die("--methods names %s twice", canon) end
    seen[canon] = true
    methods[i] = canon
  end
  seen = {}
  for _, s in ipairs(split(o.seeds)) do
    local v = math.tointeger(tonumber(s))
    if not v then die("--seeds expects integers separated by commas, got '%s' in '%s'", s, o.seeds) end
    if seen[v] then die("--seeds names %d twice", v) end
    seen[v] = true
    seeds[#seeds + 1] = v
  end
  if #seeds == 0 then die("--seeds is empty (give integers such as 1,2,3)") end
  cli.check_model_dir("toy_compare", o.model, "--model")
  local world = toy.world(o.task)
  local heldout = world:questions("heldout", o.eval_questions, o.eval_seed)
  do -- every prompt must leave room for --max-new-tokens in the model's context
    local ctx = cli.model_context("toy_compare", o.model, "--model")
    local longest = 0
    for _, q in ipairs(heldout) do longest = math.max(longest, #toy.encode(q.prompt)) end
    for _, seed in ipairs(seeds) do
      for _, q in ipairs(world:questions("train", o.steps * o.questions_per_step, seed)) do
        longest = math.max(longest, #toy.encode(q.prompt))
      end
    end
    cli.check_context("toy_compare", ctx, longest, o.max_new_tokens, "toy prompt")
  end
  if cli.is_dir(o.md) then die("--md '%s' is a directory (give the Markdown file to write)", o.md) end
  cli.mkdir_p("toy_compare", o.out, "--out")
  local md_dir = o.md:match("^(.*)/[^/]*$")
  if md_dir and md_dir ~= "" then cli.mkdir_p("toy_compare", md_dir, "--md") end
  do -- the table is written at the end (through --md.tmp): make sure that can work first
    local f, err = io.open(o.md .. ".tmp", "wb")
    if not f then die("cannot write --md '%s': %s", o.md, tostring(err)) end
    f:close()
    os.remove(o.md .. ".tmp")
  end
  local t_all = confit.clock()
  local before, after = {}, {}
  local grid = {axes = {method = methods, seed = seeds}, runs = {}}
  for _, seed in ipairs(seeds) do
    local ev = {n = o.eval_n, seed = seed, max_new_tokens = o.max_new_tokens,
                benchmark = "toy-" .. o.task}
    local m0 = load_model(o.model)
    local t0 = confit.clock()
    local b, rec_b = toy_eval.run(m0, heldout, ev)
    m0:free()
    before[seed] = b
    say(("seed %d before: greedy %.3f pass1_t05 %.3f maj16 %.3f (%.1fs)")
        :format(seed, b.greedy_acc, b.pass1_t05, b.maj16, confit.clock() - t0))
    local trainq = world:questions("train", o.steps * o.questions_per_step, seed)
    for _, mth in ipairs(methods) do
      local name = ("method=%s,seed=%d"):format(mth, seed)
      local dir = o.out .. "/" .. name
      os.execute(("rm -rf -- %s && mkdir -p -- %s"):format(cli.shell_quote(dir), cli.shell_quote(dir)))
      local cfg = {recipe = "rlsc", name = name, seed = seed, model = o.model, method = mth,
                   alpha = o.alpha, samples_per_question = o.n, temperature = o.temperature,
                   loss_temperature = o.temperature, max_new_tokens = o.max_new_tokens,
                   steps = o.steps, questions_per_step = o.questions_per_step,
                   optim = {name = "adamw", lr = o.lr, weight_decay = 0.01}, task = o.task,
                   eval = {questions = #heldout, n = o.eval_n, seed = seed}}
      if not rl.trains(mth) then cfg.temperature_scale = o.temperature_scale end
      assert(jsonio.write_json_atomic(dir .. "/config.json", cfg))
      assert(jsonio.write_jsonl_atomic(dir .. "/eval_before.jsonl", rec_b))
      local m = load_model(o.model)
      local t1 = confit.clock()
      local steps = train.run({
        model = m, questions = trainq, method = mth, alpha = o.alpha, n = o.n,
        temperature = o.temperature, max_new_tokens = o.max_new_tokens, steps = o.steps,
        questions_per_step = o.questions_per_step, lr = o.lr, seed = seed, out = dir,
        extract = toy.extract_boxed, answer_key = toy_eval.answer_key,
        grade = function(text, answer) return (toy.grade(text, answer)) end,
        log = function() end,
      })
      local t_train = confit.clock() - t1
      local ao = {}
      for k, v in pairs(ev) do ao[k] = v end
      if not rl.trains(mth) then ao.temperature_scale = o.temperature_scale end
      local a, rec_a = toy_eval.run(m, heldout, ao)
      m:free()
      assert(jsonio.write_jsonl_atomic(dir .. "/eval_after.jsonl", rec_a))
      assert(jsonio.write_json_atomic(dir .. "/summary.json", {config = cfg, before = b, after = a,
                                                               train_s = t_train}))
      after[mth] = after[mth] or {}
      table.insert(after[mth], a)
      grid.runs[#grid.runs + 1] = {dir = name, params = {method = mth, seed = seed}}
      local last = steps[#steps]
      say(("  %-10s greedy %.3f -> %.3f  pass1_t05 %.3f -> %.3f  direct %.2f  len %.1f  (%s%.1fs)")
          :format(mth, b.greedy_acc, a.greedy_acc, b.pass1_t05, a.pass1_t05, a.direct_share,
                  a.mean_length, last and ("w>1e-6 %.2f, "):format(last.weight_share) or "",
                  confit.clock() - t1))
    end
  end
  assert(jsonio.write_json_atomic(o.out .. "/grid.json", grid))

  -- the table
  local lines = {}
  local head, rule = {"method"}, {"---"}
  -- maj and pass count over min(16, --eval-n) samples (toy_eval): the headers say so
  local k = math.min(16, o.eval_n)
  for _, c in ipairs(COLS) do
    head[#head + 1] = (c[2]:gsub("@16$", "@" .. (c[1] == "maj16" and o.eval_n or k)))
    rule[#rule + 1] = "---:"
  end
  lines[1] = "| " .. table.concat(head, " | ") .. " |"
  lines[2] = "| " .. table.concat(rule, " | ") .. " |"
  local blist = {}
  for _, s in ipairs(seeds) do blist[#blist + 1] = before[s] end
  local has_temp_only = false
  for _, mth in ipairs(methods) do has_temp_only = has_temp_only or mth == "temp_only" end
  local function row(label, xs)
    local r = {label}
    for _, c in ipairs(COLS) do r[#r + 1] = (cell(xs, c[1])) end
    lines[#lines + 1] = "| " .. table.concat(r, " | ") .. " |"
  end
  row("before (shipped model)", blist)
  for _, mth in ipairs(methods) do row(mth, after[mth]) end
  local total = confit.clock() - t_all
  local md = {
    ("Toy world `%s`, model `%s`: %d held-out questions, %d samples per question for the sampled " ..
     "metrics; training %d steps x %d questions x N = %d at T = %g, AdamW lr %g, alpha %g; seeds %s%s.%s " ..
     "%.0f s on this machine.")
      :format(o.task, o.model, #heldout, o.eval_n, o.steps, o.questions_per_step, o.n,
              o.temperature, o.lr, o.alpha, table.concat(seeds, ","),
              #seeds > 1 and " (mean ± sample std over seeds)" or " (one seed: no spread)",
              has_temp_only and (" temp_only: no training, sampled at %g x the temperature (its greedy " ..
                                 "equals before by construction)."):format(o.temperature_scale) or "",
              total),
    "",
    table.concat(lines, "\n"),
    "",
  }
  local text = table.concat(md, "\n")
  assert(jsonio.write_text_atomic(o.md, text))
  say("")
  say(text)
  return {before = before, after = after, markdown = text}
end

-- Run as a script (mistakes print one line and exit 1, confit.cli) or loaded by a test (dofile
-- returns main).
return cli.main("toy_compare", main)
