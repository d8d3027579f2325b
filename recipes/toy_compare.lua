-- recipes/toy_compare.lua: RLSC (L1, L2) against the peers on the toy world, under several
-- seeds, as a Markdown table of mean +- spread.
--
--   confit recipes/toy_compare.lua [--methods temp_only,l1,l2,self_sft,em_ft,grpo_ttrl]
--       [--seeds 1,2,3] [--steps 20] [--questions-per-step 4] [--n 16] [--lr 1e-4]
--       [--eval-questions 100] [--eval-n 16] [--eval-seed 1] [--model examples/toy/model]
--       [--task mixed] [--out runs/toy_compare] [--md runs/toy_compare.md]
--
-- --eval-seed draws the held-out questions (recorded as eval.question_seed, as rlsc records it).
-- rlsc's bounds apply: --temperature >= 5.6e-309 (the CPU losses' 1 / T), --questions-per-step
-- <= 4096 and at most 100,000 training questions (--steps x --questions-per-step) per seed.
-- --md is checked writable before --out is made.
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
-- (OUT/grid.json, OUT/method=<m>,seed=<s>/...), the table to --md (and printed). --out must be
-- new, empty or an earlier toy_compare grid: anything else in it is refused before any work, and
-- only run folders toy_compare wrote are replaced; one toy_compare at a time holds it (OUT/.lock,
-- a second is refused naming the first's PID). summary.json carries docs/RUNDIR.md's acc,
-- pass@1, pass@k, maj@K and n beside the toy's metric names (toy_eval.rundir), as rlsc writes
-- them; K = --eval-n, and the table's maj@K and pass@K columns are named after it. Spread =
-- sample standard deviation over the seeds (n - 1 denominator).
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

-- rlsc's bounds (confit.cli): the generator's samples per prompt, the CPU losses' smallest
-- temperature (1 / T a finite double), the toy world's distinct training questions per seed
local MAX_SAMPLES, MIN_TEMPERATURE, TOY_MAX_QUESTIONS = cli.MAX_SAMPLES, cli.MIN_TEMPERATURE, cli.TOY_MAX_QUESTIONS

local SPEC = {
  methods = {"string", "temp_only,l1,l2,self_sft,em_ft,grpo_ttrl",
    help = "the methods compared, comma-separated (rlsc --method names)"},
  seeds = {"string", "1,2,3",
    help = "the seeds, comma-separated: each method runs once per seed"},
  steps = {"int", 20, min = 1, max = 1000000,
    help = "training steps per run"},
  questions_per_step = {"int", 4, min = 1, max = 4096,
    help = "training questions per step"},
  n = {"int", 16, min = 1, max = MAX_SAMPLES,
    help = "samples per training question"},
  alpha = {"number", 0.1, min = 0,
    help = "l2 and ours_*: each sample's weight is its probability plus alpha"},
  temperature = {"number", 0.5, min = MIN_TEMPERATURE,
    help = "sampling temperature of the training samples and of the loss"},
  lr = {"number", 1e-4, min = 0,
    help = "AdamW learning rate"},
  temperature_scale = {"number", 0.5, above = 0,
    help = "temp_only: samples at this times the evaluation's temperatures"},
  max_new_tokens = {"int", 64, min = 1,
    help = "longest completion, in tokens"},
  eval_questions = {"int", 100, min = 1, max = 10000,
    help = "held-out questions of the evaluations"},   -- rlsc's and eval's bound
  eval_n = {"int", 16, min = 1, max = MAX_SAMPLES,
    help = "samples per question in the evaluations (the table's maj@K, pass@K)"},
  eval_seed = {"int", 1,
    help = "seed that draws the held-out questions"},
  model = {"string", "examples/toy/model",
    help = "the toy model folder (the default, the shipped one, is found from any current folder)"},
  task = {"string", "mixed", choices = cli.sorted_keys(toy.presets),
    help = "the toy world's task"},
  out = {"string", "runs/toy_compare",
    help = "the folder of the runs (one rlsc run directory per method and seed)"},
  md = {"string", "runs/toy_compare.md",
    help = "the Markdown file the table goes to"},
  quiet = {"flag", false,
    help = "print no progress lines; the table still prints"},
}

-- the table's columns for K samples per question: {summary key, header}; pass@K only for K > 1
-- (pass@1 is the T = .5 column)
local function columns(k)
  local cols = {{"greedy_acc", "greedy"}, {"pass1_t05", "pass@1 T=.5"}, {"pass1_t10", "pass@1 T=1"},
                {"maj" .. k, "maj@" .. k}}
  if k > 1 then cols[#cols + 1] = {"pass" .. k, "pass@" .. k} end
  for _, c in ipairs({{"direct_share", "direct"}, {"distinct_answers", "distinct"},
                      {"mean_length", "length"}, {"mean_confidence", "confidence"}}) do
    cols[#cols + 1] = c
  end
  return cols
end

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

-- What toy_compare writes under --out, and so all it ever replaces: grid.json (with method and
-- seed axes) and run folders method=<m>,seed=<s> holding only the files below (or their atomic
-- .tmp), with a config.json of recipe rlsc named after the folder. Anything else is someone
-- else's and makes --out refused before any work; only folders that pass are ever removed.
local RUN_FILES = {["config.json"] = true, ["eval_before.jsonl"] = true, ["eval_after.jsonl"] = true,
                   ["steps.jsonl"] = true, ["summary.json"] = true}
local RUN_NAME = "^method=[^,/]+,seed=%-?%d+$"

-- the file an atomic write of name leaves behind when interrupted: name.tmp or name.tmp-<...>
local function tmp_of(name)
  return name:match("^(.*)%.tmp$") or name:match("^(.*)%.tmp%-[^/]*$")
end

-- .lock: rlsc's lock on its run folder (confit.lock), left unlocked by a run that was killed
local function run_file(name)
  return name == ".lock" or RUN_FILES[name] or RUN_FILES[tmp_of(name) or ""] or false
end

-- nil when folder dir (named name under --out) is one toy_compare wrote, else why not
local function foreign_run(dir, name)
  if not cli.is_dir(dir) then return "is not a folder" end
  local names = cli.list_dir(dir)
  if not names then return "cannot be listed" end
  local only_tmp = true
  for _, f in ipairs(names) do
    if not run_file(f) then return ("holds '%s'"):format(f) end
    only_tmp = only_tmp and (tmp_of(f) ~= nil or f == ".lock")
  end
  if only_tmp then return nil end   -- empty, or interrupted while writing its config.json
  local cfg = jsonio.read_json(dir .. "/config.json")
  if type(cfg) ~= "table" or cfg.recipe ~= "rlsc" or cfg.name ~= name then
    return ("has no config.json of a toy_compare run (recipe rlsc, name %s)"):format(name)
  end
  return nil
end

local function is_own_grid(path)
  local g = jsonio.read_json(path)
  if type(g) ~= "table" or type(g.axes) ~= "table" or type(g.runs) ~= "table" then return false end
  for k in pairs(g.axes) do if k ~= "method" and k ~= "seed" then return false end end
  return true
end

local norm = cli.tidy_path -- to compare --md with --out
local MD_HEAD = "Toy world " -- how the table's file starts (an existing --md is replaced only then)

-- a name beside path that nothing uses (temporary files never clobber one that is there)
local function unique_tmp(path)
  for _ = 1, 100 do
    local t = ("%s.tmp-tc-%06d"):format(path, math.random(0, 999999))
    if not cli.exists(t) then return t end
  end
  die("cannot find a free temporary name beside '%s'", path)
end

local function main(argv)
  local o = cli.parse_args(argv or {}, SPEC, "recipes/toy_compare.lua")
  local say = o.quiet and function() end or print
  local methods, seeds = split(o.methods), {}
  if #methods == 0 then die("--methods is empty (give names such as l1,l2)") end
  local seen = {}
  for i, mth in ipairs(methods) do
    local canon, merr = rl.resolve(mth)
    if not canon then die("--methods: %s", merr) end
    if seen[canon] then die("--methods names %s twice", canon) end
    if rl.grpo_reward[canon] and o.n < 2 then
      die("--methods %s needs --n >= 2: its advantages are rewards relative to the other samples of a question (got --n %d)", canon, o.n)
    end
    seen[canon] = true
    methods[i] = canon
  end
  seen = {}
  for _, s in ipairs(split(o.seeds)) do
    -- decimal integers only (not 0x10, 1e0, 1.0)
    local v = s:match("^[+-]?%d+$") and math.tointeger(tonumber(s))
    if not v then die("--seeds expects integers separated by commas, got '%s' in '%s'", s, o.seeds) end
    if seen[v] then die("--seeds names %d twice", v) end
    seen[v] = true
    seeds[#seeds + 1] = v
  end
  if #seeds == 0 then die("--seeds is empty (give integers such as 1,2,3)") end
  if o.steps * o.questions_per_step > TOY_MAX_QUESTIONS then
    die("--steps %d x --questions-per-step %d asks the toy world for %d distinct training questions; at most %d",
        o.steps, o.questions_per_step, o.steps * o.questions_per_step, TOY_MAX_QUESTIONS)
  end
  cli.project_default(o, "model")   -- the shipped toy model, from any current folder
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
  -- --md: a file, not --out or anything toy_compare writes under it
  if o.md == "" then die("--md needs the Markdown file to write (got an empty name)") end
  local out_n, md_n = norm(o.out), norm(o.md)
  local md_dir, md_base = md_n:match("^(.*)/([^/]*)$")
  if not md_dir then md_dir, md_base = nil, md_n end
  if md_n == out_n or md_base == "" or md_base == "." or md_base == ".." or o.md:match("/$")
     or cli.is_dir(o.md) then
    die("--md '%s' is a directory (give the Markdown file to write)", o.md)
  end
  -- a file there already is replaced only when it is a table of toy_compare's (a typo in --md
  -- replaced a data file with the table, before the twenty-second session)
  if cli.exists(o.md) and not cli.is_dir(o.md) then
    local f = io.open(o.md, "rb")
    local head = f and f:read(#MD_HEAD)
    if f then f:close() end
    if head ~= nil and head ~= MD_HEAD then   -- (an empty file holds nothing to lose)
      die("--md '%s' is a file toy_compare did not write (its tables start \"%s\"): not replaced; give another --md",
          o.md, MD_HEAD)
    end
  end
  local md_in_out = md_dir == out_n
  if md_n:sub(1, #out_n + 1) == out_n .. "/" then
    local rest = md_n:sub(#out_n + 2)
    if rest == "grid.json" or rest:match("^grid%.json%.") or rest:match("^method=[^/]*,seed=") then
      die("--md '%s' is where toy_compare writes its grid in --out '%s'; give another --md", o.md, o.out)
    end
  end
  -- --out: empty, new, or an earlier toy_compare grid; nothing else in it is touched
  if cli.exists(o.out) and cli.is_dir(o.out) then
    local names = cli.list_dir(o.out)
    if not names then die("cannot list --out '%s'", o.out) end
    for _, name in ipairs(names) do
      local p = o.out .. "/" .. name
      local why
      if name == "grid.json" then
        if not is_own_grid(p) then why = "grid.json is not one of toy_compare's (method and seed axes)" end
      elseif name:match(RUN_NAME) then
        local w = foreign_run(p, name)
        if w then why = ("'%s' %s"):format(name, w) end
      elseif name == ".lock" or tmp_of(name) == "grid.json" or (md_in_out and (name == md_base or tmp_of(name) == md_base)) then
        why = nil   -- a leftover temporary file of toy_compare's, or the table of an earlier run
      else
        why = ("'%s' is not something toy_compare writes"):format(name)
      end
      if why then
        die("--out '%s' holds data toy_compare did not write (%s); use another --out", o.out, why)
      end
    end
  end
  -- the table is written at the end: a file must be writable beside --md, checked before --out
  -- is made (a refusal left an empty --out): a probe file when its folder is there, else its
  -- nearest folder that is, which mkdir -p will create it in
  local md_parent = md_dir and md_dir ~= "" and md_dir or (md_dir and "/" or ".")
  if cli.exists(md_parent) then
    if not cli.is_dir(md_parent) then die("cannot write --md '%s': '%s' is not a folder", o.md, md_parent) end
    local tmp = unique_tmp(o.md)
    local f, err = io.open(tmp, "wb")
    if not f then die("cannot write --md '%s': %s", o.md, tostring(err)) end
    f:close()
    os.remove(tmp)
  else
    local up = md_parent
    repeat up = up:match("^(.*)/[^/]*$") or "." until up == "" or cli.exists(up)
    if up == "" then up = "/" end
    if not cli.is_dir(up) then die("cannot write --md '%s': '%s' is not a folder", o.md, up) end
    if not os.execute(("test -w %s && test -x %s"):format(cli.shell_quote(up), cli.shell_quote(up))) then
      die("cannot write --md '%s': its folder cannot be made in '%s' (no permission, or a read-only file system)", o.md, up)
    end
  end
  cli.mkdir_p("toy_compare", o.out, "--out")
  -- one toy_compare per --out (OUT/.lock, held until the process ends): a second one took the
  -- first's live run folders for its own, removed them, and both appended to one steps.jsonl
  local lock <close>, lerr, lpid = confit.lock(o.out .. "/.lock")
  if not lock then die("--out %s", cli.lock_refusal(o.out, lerr, lpid)) end
  if md_dir and md_dir ~= "" then cli.mkdir_p("toy_compare", md_dir, "--md") end
  if cli.is_dir(o.md) then die("--md '%s' is a directory (give the Markdown file to write)", o.md) end
  local t_all = confit.clock()
  local before, after = {}, {}
  -- grid.json lists the finished runs: rewritten (atomically) at the start and after each run,
  -- so it never names a folder that is being replaced or half written
  local grid = {axes = {method = methods, seed = seeds}, runs = {}}
  assert(jsonio.write_json_atomic(o.out .. "/grid.json", grid))
  for _, seed in ipairs(seeds) do
    local ev = {n = o.eval_n, seed = seed, max_new_tokens = o.max_new_tokens,
                benchmark = "toy-" .. o.task}
    local m0 = load_model(o.model)
    local t0 = confit.clock()
    local b, rec_b = toy_eval.run(m0, heldout, ev)
    m0:free()
    before[seed] = b
    say(("seed %d before: greedy %.3f pass1_t05 %.3f maj%d %.3f (%.1fs)")
        :format(seed, b.greedy_acc, b.pass1_t05, o.eval_n, b["maj" .. o.eval_n], confit.clock() - t0))
    local trainq = world:questions("train", o.steps * o.questions_per_step, seed)
    for _, mth in ipairs(methods) do
      local name = ("method=%s,seed=%d"):format(mth, seed)
      local dir = o.out .. "/" .. name
      if cli.exists(dir) then -- only a run folder of an earlier toy_compare is replaced
        local why = foreign_run(dir, name)
        if why then die("--out '%s': '%s' %s; not removed (use another --out)", o.out, name, why) end
        local ok = os.execute("rm -rf -- " .. cli.shell_quote(dir))
        if not ok or cli.exists(dir) then die("cannot remove the earlier run folder '%s'", dir) end
      end
      cli.mkdir_p("toy_compare", dir, "run folder")
      local cfg = {recipe = "rlsc", name = name, seed = seed, model = o.model, method = mth,
                   alpha = o.alpha, samples_per_question = o.n, temperature = o.temperature,
                   loss_temperature = o.temperature, max_new_tokens = o.max_new_tokens,
                   steps = o.steps, questions_per_step = o.questions_per_step,
                   optim = {name = "adamw", lr = o.lr, weight_decay = 0.01}, task = o.task,
                   eval = {questions = #heldout, n = o.eval_n, seed = seed, question_seed = o.eval_seed}}
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
      assert(jsonio.write_json_atomic(dir .. "/summary.json", {
        config = cfg, before = toy_eval.rundir(b, #heldout),
        after = toy_eval.rundir(a, #heldout), train_s = t_train}))
      after[mth] = after[mth] or {}
      table.insert(after[mth], a)
      grid.runs[#grid.runs + 1] = {dir = name, params = {method = mth, seed = seed}}
      assert(jsonio.write_json_atomic(o.out .. "/grid.json", grid))
      local last = steps[#steps]
      say(("  %-10s greedy %.3f -> %.3f  pass1_t05 %.3f -> %.3f  direct %.2f  len %.1f  (%s%.1fs)")
          :format(mth, b.greedy_acc, a.greedy_acc, b.pass1_t05, a.pass1_t05, a.direct_share,
                  a.mean_length, last and ("p>1e-6 %.2f, "):format(last.weight_share) or "",
                  confit.clock() - t1))
    end
  end

  -- the table
  local lines = {}
  local head, rule = {"method"}, {"---"}
  -- maj and pass count over --eval-n samples (toy_eval): the keys and headers say so
  local COLS = columns(o.eval_n)
  for _, c in ipairs(COLS) do
    head[#head + 1] = c[2]
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
    (MD_HEAD .. "`%s`, model `%s`: %d held-out questions (drawn with seed %d), %d samples per question for the sampled " ..
     "metrics; training %d steps x %d questions x N = %d at T = %g, AdamW lr %g, alpha %g; seeds %s%s.%s " ..
     "%.0f s on this machine.")
      :format(o.task, o.model, #heldout, o.eval_seed, o.eval_n, o.steps, o.questions_per_step, o.n,
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
  say("")
  -- first: the table is on the screen even when --md cannot be written; --quiet too prints it
  -- (the result; it printed nothing at all before the twenty-third session)
  print(text)
  local ok, err = jsonio.write_text_atomic(o.md, text)
  if not ok then die("cannot write --md '%s': %s (the table is printed above)", o.md, tostring(err)) end
  return {before = before, after = after, markdown = text}
end

-- Run as a script (mistakes print one line and exit 1, confit.cli) or loaded by a test (dofile
-- returns main).
return cli.main("toy_compare", main)
