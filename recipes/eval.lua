-- recipes/eval.lua: evaluate a model folder on math benchmarks, the toy world, or any JSONL /
-- JSON-array file, in one of the two modes of ../shared/docs/EVAL.md.
--
--   confit recipes/eval.lua --model DIR --bench aime24,math500 [--mode qwen|strict]
--       [--data-dir ../shared/data/benchmarks] [--n 16 --temperature 0.6 --top-p 0.95]
--       [--limit K] [--out DIR] [--max-new-tokens N] [--template NAME] [--batch-size B]
--       [--seed S] [--no-greedy] [--no-resume] [--device cpu|cuda] [--dtype bf16|f32]
--   confit recipes/eval.lua --model DIR --data FILE --question-field F --answer-field F [--name N]
--       (--bench and --data together: the benchmarks, then the file; a --data file named after a
--       benchmark, e.g. a copy of gsm8k.jsonl, is read as that benchmark unless --answer-field is
--       given, as rlsc reads it)
--   confit recipes/eval.lua --model examples/toy/model --bench toy      (toy-mixed, toy-pure)
--
-- Writes OUT/<benchmark>/{config.json, eval_before.jsonl, eval_before.settings.json, summary.json}
-- per docs/RUNDIR.md,
-- and OUT/summary.json with every benchmark of this invocation; prints the summary table.
-- Re-running with the same OUT resumes: finished problems are not generated again (--no-resume
-- starts over, keeping the earlier results in OUT/superseded/<benchmark> until it finishes). A
-- resume is refused (one line; --no-resume starts over) when the records' settings file is missing or
-- unreadable, the settings changed, another model (folder or weights), device or dtype wrote them,
-- or a finished problem's question or answer changed in the data.
-- OUT defaults to runs/eval-<model folder name>-<mode> (a folder named model or checkpoint-N
-- with its parent's name before it: runs/eval-toy-model-qwen, from examples/toy/model as from
-- ./model in examples/toy, or from . in the model folder); eval refuses an OUT holding another
-- recipe's run (its config.json or summary.json, an ablate grid's grid.json or results.csv, a
-- training run's steps.jsonl), never writing into it.
--
-- User errors (missing model, unknown benchmark, bad flags, unreadable data) print one line
-- "eval: ..." and exit with status 1; anything else is a bug and keeps its traceback (confit.cli).
local evaluate = require "confit.evaluate"
local bench = require "confit.bench"
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

local USAGE = [[
usage: confit recipes/eval.lua --model DIR [--bench NAMES] [--data FILE] [options]
  --bench a,b,...        aime24 amc23 math500 minerva_math olympiadbench gsm8k toy toy-mixed toy-pure
  --data FILE            any JSONL or JSON array; --question-field F (question) --answer-field F
                         (answer) --name NAME (default: the file's base name); a file named after a
                         benchmark (gsm8k.jsonl, ...) without --answer-field is read as that
                         benchmark (its question field, its reference answers)
                         (one of them at least; --bench and --data together evaluate the
                         benchmarks, then the file, each in its own OUT/<name>/)
  --data-dir DIR         benchmark files (default ../shared/data/benchmarks beside the project, from any folder)
  --mode qwen|strict     prompt and grading of EVAL.md (default qwen)
  --template NAME        chatml, qwen25-math-cot, strict, llama3, llama3-math-cot, strict-llama3,
                         llama31, llama31-math-cot, strict-llama31, plain (default: the mode's
                         prompt in the model's chat format, read from its tokenizer_config.json:
                         Llama 3.0, Llama 3.1+ or else ChatML)
  --n N                  samples per problem (default 0: greedy only); --temperature T (0.6)
                         --top-p P (0.95) --top-k K (0)
  --no-greedy            skip the greedy completion (then n > 0 is needed)
  --max-new-tokens N     default 3072 (64 for the toy world)
  --limit K              first K problems of each benchmark (toy: K questions)
  --toy-questions N      held-out toy questions (default 500, at most 10000); --toy-seed S (default 1)
  --batch-size B         problems per generate call (default 8); --seed S (default 0)
  --out DIR              default runs/eval-<model>-<mode> (<model>: the folder's name, after
                         its parent's when it is model or checkpoint-N; ".", ".." and a path
                         without a parent read from the folder's real path, so --model
                         ./model names the folder as its full path does); a new or empty folder,
                         or one of eval's (its summary.json or benchmark folders of earlier
                         evals); not a folder holding other things and no eval run, nor another
                         recipe's run (config.json or summary.json that eval did not write, an
                         ablate grid's grid.json or results.csv, a training run's steps.jsonl)
  --no-resume            start over; by default a rerun with the same OUT keeps the finished
                         problems, and stops when their settings file is missing or unreadable,
                         the decoding settings, the model (folder or weights), device or dtype
                         changed, or the data file changed a question or answer of a kept problem.
                         The earlier results wait in OUT/superseded/<benchmark> until the
                         restart finishes (a restart stopped on the way loses none of them)
  --device cpu|cuda      default cpu; --dtype bf16|f32 applies to cuda (default bf16; the CPU
                         computes in f32: --dtype bf16 without --device cuda is refused)
  --progress bar|plain|off
  (an option takes _ for -, --top_p as --top-p; a value starting with -- only as --name=VALUE)]]

local TOY = {toy = "mixed", ["toy-mixed"] = "mixed", ["toy-pure"] = "pure"}

local M = {}

-- A user error: printed as one line by confit.cli, no traceback.
local die = cli.die_for("eval")

local SPEC = {
  model = "string", bench = "string", data = "string", ["question-field"] = "string",
  ["answer-field"] = "string", name = "string", ["data-dir"] = "string", mode = "string",
  template = "string", n = "int", temperature = "number", ["top-p"] = "number", ["top-k"] = "int",
  ["no-greedy"] = "flag", ["max-new-tokens"] = "int", limit = "int", ["toy-questions"] = "int",
  ["toy-seed"] = "int", ["batch-size"] = "int", seed = "int", out = "string",
  ["no-resume"] = "flag", device = "string", dtype = "string", progress = "string", help = "flag",
}

-- Largest values (the generator's limits: lua/l_model.c).
local MAX = {n = cli.MAX_SAMPLES, ["top-k"] = 1 << 30}
-- held-out toy questions at most (rlsc's --eval-questions bound; the split holds some 80,000
-- distinct ones, and drawing near all of them takes minutes)
local TOY_MAX = 10000

-- Parse "--key value", "--key=value" and flags into a table keyed by the option name (--top_p
-- is --top-p, as confit.cli reads the other recipes' flags); an option given twice, in either
-- spelling, is refused (no value silently wins), and so is a value left out before the next
-- option (a value starting with -- is given as --key=value).
function M.parse_args(argv)
  local o, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    if a == "-h" then a = "--help" end
    local key, val = a:match("^%-%-([%w_%-]+)=(.*)$")
    if not key then key = a:match("^%-%-([%w_%-]+)$") end
    if not key then die("unexpected argument '%s' (options start with --; see --help)", a) end
    local flag = key
    key = key:gsub("_", "-")
    local ty = SPEC[key]
    if not ty then die("unknown option --%s (see --help)", flag) end
    if o[key] ~= nil then die("--%s is given twice (give each option once)", flag) end
    if ty == "flag" then
      if val ~= nil then die("--%s takes no value", key) end
      o[key] = true
    else
      if val == nil then
        i = i + 1
        val = argv[i]
        if val == nil or val:match("^%-%-") or val == "-h" then
          die("--%s needs a value%s", flag, val and (" (got the option %s; a value starting with -- is given as --%s=VALUE)")
                                                      :format(val, flag) or "")
        end
      end
      -- decimal only: tonumber reads "0x10" as 16
      if (ty == "int" or ty == "number") and val:find("[xX]") then
        die("--%s expects a decimal number, got '%s'", key, val)
      end
      if ty == "int" then
        local v = math.tointeger(tonumber(val))
        if not v or v < 0 then die("--%s expects an integer >= 0, got '%s'", key, val) end
        if MAX[key] and v > MAX[key] then die("--%s must be <= %d, got %d", key, MAX[key], v) end
        val = v
      elseif ty == "number" then
        local v = tonumber(val)
        if not v or v ~= v or v < 0 or v == math.huge then
          die("--%s expects a finite number >= 0, got '%s'", key, val)
        end
        val = v
      end
      o[key] = val
    end
    i = i + 1
  end
  -- (seventeenth session) --limit 0 said "benchmark ... has no problems"; --name without --data
  -- did nothing (a --bench set is named after its benchmark)
  if o.limit == 0 then die("--limit must be >= 1 (the first K problems of each benchmark), got 0") end
  if o.name ~= nil and o.data == nil then
    die("--name names the --data set; a --bench benchmark is named after itself (give --data, or no --name)")
  end
  -- (twenty-second session, a review's findings) flags that did nothing, or read from "/"
  local toy_given = false
  for name in (o.bench or ""):gmatch("[^,%s]+") do toy_given = toy_given or TOY[name] ~= nil end
  if not toy_given then
    for _, k in ipairs({"toy-questions", "toy-seed"}) do
      if o[k] ~= nil then die("--%s applies to the toy benchmark (--bench toy); none is evaluated here (drop --%s)", k, k) end
    end
  end
  if o["data-dir"] == "" then die("--data-dir needs a folder (got an empty name)") end
  return o
end

local file_exists = require("confit.cli").can_read

-- A restart (--no-resume) keeps a benchmark's earlier results, OUT/<name> whole, in
-- OUT/superseded/<name> until it has written its own summary (docs/RUNDIR.md): one rename, so a
-- restart stopped at any moment loses none of them. A restart stopped on the way leaves records
-- of its own and no summary.json beside superseded/<name>: the next restart drops those and
-- keeps the superseded results; finished results (summary.json) take the older ones' place.
local SUPERSEDED = "superseded"

local function basename(p)
  p = p:gsub("/+$", "")
  return p:match("([^/]+)$") or p
end

-- The model's name in the default OUT: its folder's name, and its parent folder's before it when
-- that name says nothing of which model it is ("model", "checkpoint-20": every rlsc --save-model
-- and the toy model were all runs/eval-model-<mode>, so a second model's eval met the first's
-- records). A name the given path does not spell ("." or ".." as the folder or its parent, no
-- parent at all: --model ., ./model, ../model, model) comes from the folder's real path
-- (twenty-eighth session: those were all runs/eval-model-<mode>, "." runs/eval-.-<mode>), so every
-- spelling of one folder gives one name; a name the path spells is kept (a link named for its
-- model is not renamed after its target).
local function model_label(dir)
  local function named(s) return s ~= "" and s ~= "." and s ~= ".." end
  local name, parent = basename(dir), (dir:gsub("/+$", "")):match("^(.*)/[^/]*$")
  if not named(name) then
    local real = require("confit").realpath(dir)
    if real then name, parent = basename(real), nil end
  end
  if name == "model" or name:match("^checkpoint%-%d+$") then
    parent = parent and basename(parent) or ""
    if not named(parent) then parent = basename(require("confit").realpath(dir .. "/..") or "") end
    if named(parent) then name = parent .. "-" .. name end
  end
  return name
end

-- bench.load's error message without its "bench.load: " prefix (it names the file and line).
local function load_error(e) return (cli.message(e):gsub("^bench%.load: ", "")) end

-- The benchmarks of this invocation: {name, problems, toy} in the order given.
function M.problem_sets(o)
  local sets = {}
  local names = {}
  if o.bench then
    for name in o.bench:gmatch("[^,]+") do
      name = name:match("^%s*(.-)%s*$")
      if name ~= "" then names[#names + 1] = name end
    end
    if #names == 0 then die("--bench is empty") end
  end
  local known = {}
  for _, n in ipairs(bench.names) do known[n] = true end
  for _, name in ipairs(names) do
    if TOY[name] then
      local toy = require "confit.toy"
      local count = o.limit or o["toy-questions"] or 500
      if (o["toy-questions"] or 0) > TOY_MAX then  -- also beside --limit, which replaces it
        die("--toy-questions: the toy world's held-out split is evaluated on at most %d questions, got %d",
            TOY_MAX, o["toy-questions"])
      end
      if count > TOY_MAX then
        die("--%s: the toy world's held-out split is evaluated on at most %d questions, got %d",
            o.limit and "limit" or "toy-questions", TOY_MAX, count)
      end
      local qs = toy.world(TOY[name]):questions("heldout", count, o["toy-seed"] or 1)
      local probs = {}
      for i, q in ipairs(qs) do probs[i] = {id = i, question = q.prompt, answer = tostring(q.answer)} end
      sets[#sets + 1] = {name = "toy-" .. TOY[name], problems = probs, toy = true,
                         source = string.format("toy world %s, held-out split, seed %d", TOY[name],
                                                o["toy-seed"] or 1)}
    elseif known[name] then
      local ok, items, err = pcall(bench.load, name, {dir = o["data-dir"], limit = o.limit})
      if not ok then die("%s", load_error(items)) end
      if not items then
        die("cannot read benchmark %s: %s%s", name, load_error(err or "read error"), o["data-dir"] and ""
            or (" (the default --data-dir, %s; give --data-dir DIR)"):format(bench.default_dir))
      end
      -- a benchmark's ids must be unique (its records are resumed by id): refused here, before the
      -- model is loaded and anything is written (evaluate.run refused it after config.json)
      local i, j = bench.repeated_id(items)
      if i then
        die("%s: %s and %s share the id %s (ids must be unique)", name, items[i].where, items[j].where, tostring(items[j].id))
      end
      sets[#sets + 1] = {name = name, problems = items,
                         source = (o["data-dir"] or bench.default_dir) .. "/" .. name .. ".jsonl"}
    else
      local all = {}
      for _, n in ipairs(bench.names) do all[#all + 1] = n end
      for _, n in ipairs({"toy", "toy-mixed", "toy-pure"}) do all[#all + 1] = n end
      die("unknown benchmark '%s' (known: %s; use --data FILE for other files)", name,
          table.concat(all, ", "))
    end
  end
  if o.data then
    cli.check_file("eval", o.data, "--data")
    -- a file named after a benchmark (a copy of gsm8k.jsonl) is that benchmark, as rlsc reads
    -- it, unless --answer-field says which field holds the answer (gsm8k's whole worked solution
    -- was the reference)
    local as_bench, bdir = nil, nil
    if not o["answer-field"] then as_bench, bdir = bench.named_after(o.data) end
    -- the whole file is read first: whether its ids repeat (then positions stand for them) must
    -- not depend on --limit, or a larger limit renamed the finished problems and did them again
    local ok, items, err
    if as_bench then
      ok, items, err = pcall(bench.load, as_bench, {dir = bdir, question = o["question-field"]})
    else
      ok, items, err = pcall(bench.load, o.data, {question = o["question-field"], answer = o["answer-field"]})
    end
    local hint = as_bench and (" (a file named %s.jsonl is read as the benchmark %s: give --answer-field FIELD to "
                               .. "read it as a plain file)"):format(as_bench, as_bench) or ""
    if not ok then die("%s%s", load_error(items), hint) end
    if not items then die("cannot read --data %s: %s%s", o.data, load_error(err or "read error"), hint) end
    -- ids must be unique for resume; fall back to positions when the file's are not
    local numbered, note = bench.number_repeated(items, o.data)
    if numbered then io.stderr:write("eval: ", note, "\n") end
    if o.limit then for i = #items, o.limit + 1, -1 do items[i] = nil end end
    local name = o.name or basename(o.data):gsub("%.jsonl?$", "")
    -- the benchmark's folder is OUT/<name>: a name, not a path, nor a file eval writes in OUT
    if name == "" or name == "." or name == ".." or name:find("/", 1, true) then
      die("%s '%s' names the benchmark's folder inside --out: give a name without '/' that is not '', '.' or '..'",
          o.name and "--name" or "--data's base name", name)
    end
    if name == "summary.json" or name == ".lock" or name == SUPERSEDED or jsonio.is_temp_name(name) then
      die("%s '%s' names the benchmark's folder inside --out, where eval keeps its own %s: give another name",
          o.name and "--name" or "--data's base name", name,
          name == ".lock" and "lock" or name == SUPERSEDED and "restarts' earlier results" or "files")
    end
    sets[#sets + 1] = {name = name, problems = items, source = o.data}
  end
  if #sets == 0 then die("nothing to evaluate: give --bench NAMES or --data FILE (see --help)") end
  local names_seen = {}
  for _, s in ipairs(sets) do
    if names_seen[s.name] then die("benchmark '%s' is given twice", s.name) end
    names_seen[s.name] = true
    if #s.problems == 0 then die("benchmark '%s' has no problems", s.name) end
    for i, p in ipairs(s.problems) do
      if not p.question:find("%S") then die("%s: empty question", p.where or (s.name .. ": problem " .. i)) end
    end
  end
  return sets
end

-- nil, or why eval must not write into OUT: eval writes OUT/summary.json and, per benchmark,
-- OUT/<name>/{config.json, summary.json}; a file there that another recipe wrote (a training
-- run's summary, a model's config.json) is not overwritten. The second result is "foreign" when
-- OUT holds something that is no run's (a file of the user's, a folder not eval's).
function M.foreign_out(out, names)
  -- key: where the file keeps its config (nil: it is one); any: no such file is eval's
  local damaged
  local function check(path, key, any)
    if not file_exists(path) then return nil end
    local cfg, err = jsonio.read_json(path)
    -- a file that does not parse is no proof of another recipe's run: said as what it is
    if cfg == nil then
      local e = tostring(err)
      damaged = damaged or (e:find(path, 1, true) and e or (path .. ": " .. e))
    end
    if key and type(cfg) == "table" then cfg = cfg[key] end
    local r = type(cfg) == "table" and cfg.recipe
    if r == "eval" and not any then return nil end
    if type(r) == "string" then return string.format("%s, written by %s", path, r) end
    return string.format("%s, not written by eval", path)
  end
  -- files only other recipes write: an ablate grid's, a training run's (eval's summary.json there
  -- hid the grid from the report, and ablate then refused its own folder)
  for _, f in ipairs({{"grid.json", "ablate's grid"}, {"results.csv", "ablate's results"},
                      {"steps.jsonl", "a training run's steps"}}) do
    if file_exists(out .. "/" .. f[1]) then return ("%s/%s, %s"):format(out, f[1], f[2]) end
  end
  local why = check(out .. "/config.json", nil, true) or check(out .. "/summary.json", "config")
  for _, name in ipairs(names) do
    why = why or check(out .. "/" .. name .. "/config.json")
      or check(out .. "/" .. name .. "/summary.json", "config")
  end
  if damaged then return damaged, "damaged" end
  if why then return why end
  -- a folder of other things and no eval run is refused, as rlsc refuses one: eval wrote beside
  -- anything before the twenty-second session (--out / or --out $HOME scattered records there).
  -- Beside an eval run (its summary.json, a benchmark folder with eval's config.json) other files
  -- may stand (a report.html of it)
  local own = {[".lock"] = true, ["summary.json"] = true, [SUPERSEDED] = true}
  for _, name in ipairs(names) do own[name] = true end
  local list = cli.is_dir(out) and cli.list_dir(out) or {}
  table.sort(list)
  local has_run, stranger = file_exists(out .. "/summary.json"), nil
  for _, name in ipairs(list) do
    local path = out .. "/" .. name
    if file_exists(path .. "/config.json") and check(path .. "/config.json") == nil then has_run = true
    elseif not (own[name] or jsonio.is_temp_name(name)) then
      local inside = cli.is_dir(path) and cli.list_dir(path)
      if not (inside and #inside == 0) then stranger = stranger or name end
    end
  end
  if stranger and not has_run then
    return ("%s holds %s and no eval run (summary.json, a benchmark folder): eval writes into a new or empty "
            .. "folder or one of its own"):format(out, stranger), "foreign"
  end
  return nil
end

local function iso_now() return os.date("!%Y-%m-%dT%H:%M:%SZ") end

local function set_aside(out, name, dir)
  local kept = out .. "/" .. SUPERSEDED .. "/" .. name
  local finished = file_exists(dir .. "/summary.json")
  if not (finished or file_exists(dir .. "/eval_before.jsonl")) then return nil end
  if cli.exists(kept) and not finished then
    os.remove(dir .. "/eval_before.jsonl")     -- an unfinished restart's: the superseded results stay
    return nil
  end
  cli.remove_tree(kept)
  local ok, err = cli.make_dir(out .. "/" .. SUPERSEDED)
  if not ok then die("--out %s: %s", out, err) end
  local moved, merr = os.rename(dir, kept)
  if not moved then die("--out %s: cannot move %s's earlier results into %s/: %s", out, name, SUPERSEDED, tostring(merr)) end
  local confit = require "confit"
  confit.fsync(out .. "/" .. SUPERSEDED); confit.fsync(out)
  ok, err = cli.make_dir(dir)
  if not ok then die("--out %s: %s", out, err) end
  return kept
end

function M.main(argv)
  local o = M.parse_args(argv)
  if o.help then print(USAGE); return 0 end
  if not o.model then die("--model DIR is required (see --help)") end
  local mode = o.mode or "qwen"
  if mode ~= "qwen" and mode ~= "strict" then die("--mode must be qwen or strict, got '%s'", mode) end
  if o.template and not require("confit.chat").templates[o.template] then
    local names = {}
    for k in pairs(require("confit.chat").templates) do names[#names + 1] = k end
    table.sort(names)
    die("unknown template '%s' (known: %s)", o.template, table.concat(names, ", "))
  end
  if o["top-p"] and (o["top-p"] <= 0 or o["top-p"] > 1) then die("--top-p must be in (0, 1]") end
  local n = o.n or 0
  if n > 0 and o.temperature == 0 then die("--n %d needs --temperature > 0", n) end
  if n == 0 and o["no-greedy"] then die("--no-greedy needs --n > 0 (nothing to do otherwise)") end
  if o["batch-size"] == 0 then die("--batch-size must be >= 1") end
  if o["max-new-tokens"] == 0 then die("--max-new-tokens must be >= 1") end
  local device = o.device or "cpu"
  -- the device names every device argument takes (confit.devices, from the C core's one list)
  local devices, known = require("confit").devices, false
  for _, d in ipairs(devices) do known = known or d == device end
  if not known then die("--device must be %s, got '%s'", table.concat(devices, " or "), device) end
  if o.dtype and o.dtype ~= "bf16" and o.dtype ~= "f32" then die("--dtype must be bf16 or f32, got '%s'", o.dtype) end
  -- (twenty-fifth session) --dtype bf16 on the CPU was taken and ignored (rlsc refuses it too): the CPU holds the
  -- weights in f32; --dtype f32 there says what happens
  if o.dtype == "bf16" and device == "cpu" then
    die("--dtype bf16 applies to --device cuda: the CPU holds the weights in f32 (drop --dtype, or add --device cuda)")
  end
  if o.progress and o.progress ~= "bar" and o.progress ~= "plain" and o.progress ~= "off" then
    die("--progress must be bar, plain or off")
  end
  local has_config, config_why = file_exists(o.model .. "/config.json")
  if not has_config then
    if config_why then die("model folder '%s': cannot read config.json (%s)", o.model, config_why) end
    die("no model at '%s' (no config.json there)", o.model)
  end
  local sets = M.problem_sets(o)
  -- a template from the folder's chat format: a broken tokenizer_config.json is a user error
  -- naming it (evaluate.default_template raises), before anything is written
  if not o.template then
    for _, set in ipairs(sets) do
      if not set.toy then
        local ok, err = pcall(evaluate.default_template, mode, o.model)
        if not ok then die("%s (or give --template)", (tostring(err):gsub("^.-evaluate: ", ""))) end
        break
      end
    end
  end

  -- no usable GPU before what --out holds: records of a CPU run in --out would otherwise be
  -- refused as "other settings (device: cpu then, cuda now)", sending the user to --no-resume
  if device == "cuda" then
    local why = cli.gpu_problem()
    if why then die("--device cuda: no usable GPU (%s)", why) end
  end
  -- --dtype applies to cuda; the CPU computes in f32
  local dtype = device == "cuda" and (o.dtype or "bf16") or "f32"
  local out = o.out or ("runs/eval-" .. model_label(o.model) .. "-" .. mode)
  if out == "" then die("--out needs a folder (got an empty name)") end
  if cli.exists(out) and not cli.is_dir(out) then die("--out '%s' is %s", out, cli.not_a_folder(out)) end
  local names = {}
  for i, set in ipairs(sets) do names[i] = set.name end
  local foreign, kind = M.foreign_out(out, names)
  if kind == "foreign" then die("--out %s; give another --out", foreign) end
  if kind == "damaged" then die("--out %s: %s: remove or repair it, or give another --out", out, foreign) end
  if foreign then die("--out %s is another run's folder (%s); give another --out", out, foreign) end

  -- every benchmark's config and options; what OUT holds is checked for all of them before
  -- the model is loaded and anything is written
  local plans = {}
  for _, set in ipairs(sets) do
    local dir = out .. "/" .. set.name
    local cfg = {
      recipe = "eval", name = set.name, model = o.model, benchmark = set.name, mode = mode,
      template = o.template or (set.toy and "plain" or evaluate.default_template(mode, o.model)),
      grader = set.toy and "toy" or mode, greedy = not o["no-greedy"], n = n,
      temperature = o.temperature or 0.6, top_p = o["top-p"] or 0.95, top_k = o["top-k"] or 0,
      max_new_tokens = o["max-new-tokens"] or (set.toy and 64 or 3072),
      seed = o.seed or 0, batch_size = o["batch-size"] or 8, limit = o.limit,
      data = set.source,
      device = device, dtype = dtype,
      logprob_temperature = 1,
    }
    if set.toy then cfg.toy_seed = o["toy-seed"] or 1 end
    local eopts = {
      mode = mode, template = cfg.template, grader = cfg.grader, greedy = cfg.greedy, n = n,
      temperature = cfg.temperature, top_p = cfg.top_p, top_k = cfg.top_k,
      max_new_tokens = cfg.max_new_tokens, seed = cfg.seed, batch_size = cfg.batch_size,
      benchmark = set.name, out_dir = dir, resume = not o["no-resume"], config = cfg,
      progress = o.progress and {mode = o.progress} or nil,
      model_dir = o.model, device = device, dtype = dtype,
    }
    -- records of other settings or other data in OUT: refused before config.json is rewritten
    local conflict = evaluate.check_resume(eopts, set.problems)
    if conflict then die("%s: %s", set.name, conflict) end
    plans[#plans + 1] = {set = set, dir = dir, cfg = cfg, eopts = eopts}
  end
  -- every prompt must leave room for a new token: checked with the folder's tokenizer alone
  if not file_exists(o.model .. "/tokenizer.json") then
    -- there but unreadable (no permission) is said as such, not as missing
    if cli.exists(o.model .. "/tokenizer.json") then
      -- a FIFO (or a link to one) is said without opening it: the open would block
      local rerr = cli.not_regular(o.model .. "/tokenizer.json")
      if not rerr then
        local f
        f, rerr = io.open(o.model .. "/tokenizer.json", "rb")
        if f then f:close(); rerr = "not a regular file" end
      end
      die("model folder '%s': cannot read tokenizer.json (%s)", o.model, tostring(rerr):match(":%s*([^:]+)$") or tostring(rerr))
    end
    die("model folder '%s' has no tokenizer.json", o.model)
  end
  local tok, terr = require("confit.tokenizer").new(o.model .. "/tokenizer.json")
  if not tok then die("model folder '%s': %s", o.model, tostring(terr)) end
  local ctx = cli.model_context("eval", o.model)
  for _, plan in ipairs(plans) do
    local long = evaluate.check_prompts(plan.set.problems, plan.eopts, tok, ctx)
    if long then tok:free(); die("%s: %s", plan.set.name, long) end
  end
  tok:free()
  local common = plans[1] and plans[1].cfg

  -- the folders are made before the model is loaded; a failure from here on removes those made
  -- (and OUT/.lock, the lock this run holds on OUT until main ends, however it ends)
  local made, lock = {}, nil
  local _ <close> = setmetatable({}, {__close = function() if lock then lock:close(); lock = nil end end})
  local function give_up(fmt, ...)
    if lock then lock:close(); lock = nil end
    for i = #made, 1, -1 do os.remove(made[i]) end
    die(fmt, ...)
  end
  local dirs = {out}
  for _, plan in ipairs(plans) do dirs[#dirs + 1] = plan.dir end
  for i, dir in ipairs(dirs) do
    local fresh = not cli.exists(dir)
    local ok, merr = evaluate.mkdir_p(dir)
    if not ok then give_up("--out: %s", merr) end
    if fresh then made[#made + 1] = dir end
    if i == 1 then
      -- one eval process per OUT: a second one would write the same records
      local h, err, pid = require("confit").lock(out .. "/.lock")
      if not h then give_up("--out %s", cli.lock_refusal(out, err, pid)) end
      lock = h
    end
  end
  -- temporary files of atomic writes that a killed eval left behind
  for _, dir in ipairs(dirs) do jsonio.remove_stale_temps(dir) end
  jsonio.remove_stale_temps(out .. "/" .. SUPERSEDED)   -- a removal of superseded results cut short (cli.remove_tree)
  local model, err = require("confit.model").load(o.model)
  if not model then give_up("cannot load model '%s': %s", o.model, tostring(err)) end
  if not model.tokenizer then give_up("model folder '%s' has no tokenizer.json", o.model) end
  if device == "cuda" then
    local ok, moved, merr = pcall(model.to, model, "cuda", dtype)
    if not (ok and moved) then
      local terr = tostring(ok and merr or moved)
      if not terr:find("cannot move the model", 1, true) then terr = "cannot move the model to cuda: " .. terr end
      give_up("%s", terr)
    end
  end

  -- OUT/summary.json is rewritten whole when this run ends; until then the old one would speak for
  -- records being redone
  os.remove(out .. "/summary.json")
  local summaries, bench_summaries = {}, {}
  for _, plan in ipairs(plans) do
    local set, dir, cfg = plan.set, plan.dir, plan.cfg
    cfg.started_at = iso_now()
    if not plan.eopts.resume then
      local kept = set_aside(out, set.name, dir)
      if kept then print(("eval: %s: --no-resume: the earlier results wait in %s until this run finishes"):format(set.name, kept)) end
    end
    local wok, werr = jsonio.write_json_atomic(dir .. "/config.json", cfg)
    if not wok then die("cannot write %s/config.json: %s", dir, tostring(werr)) end
    -- a resume keeps the summary of the finished records it extends until evaluate.run writes
    -- this run's: it is what tells a restart (set_aside) that they are finished results (a resume
    -- stopped on the way left finished records without it, and a restart then dropped them for
    -- the older superseded ones); a restart's folder is a new one, without a summary
    local rok, summary = pcall(evaluate.run, model, set.problems, plan.eopts)
    if not rok then
      -- evaluate's own checks (changed settings, prompts longer than the context, ...) are
      -- conditions of the input; Lua runtime errors stay bugs with their traceback
      local msg = tostring(summary)
      local own = msg:match("evaluate: (.*)$")
      if own and not msg:find("stack traceback", 1, true) then die("%s: %s", set.name, own) end
      error(summary, 0)
    end
    summaries[#summaries + 1] = summary
    bench_summaries[set.name] = {before = summary}
    -- this benchmark's results are whole again: the ones a restart set aside go
    cli.remove_tree(out .. "/" .. SUPERSEDED .. "/" .. set.name)
  end
  os.remove(out .. "/" .. SUPERSEDED)   -- when empty
  local top = {recipe = "eval", name = basename(out), model = o.model, mode = mode,
               benchmarks = {}, n = n, greedy = not o["no-greedy"], device = device}
  for _, set in ipairs(sets) do top.benchmarks[#top.benchmarks + 1] = set.name end
  local wok, werr = jsonio.write_json_atomic(out .. "/summary.json",
                                             {config = top, benchmarks = bench_summaries})
  if not wok then die("cannot write %s/summary.json: %s", out, tostring(werr)) end
  -- what was graded how (the toy world has its own prompt and grader; --template overrides)
  local how = mode == "qwen" and "qwen (Qwen2.5-Math harness: answer fallbacks, numeric and symbolic equivalence)"
    or "strict (Evalchemy: last \\boxed{} only, string equality after normalisation)"
  local per, all_toy = {}, true
  for _, set in ipairs(sets) do
    all_toy = all_toy and set.toy
    local cfg = set.toy and {grader = "toy", template = o.template or "plain"}
                or {grader = mode, template = o.template or evaluate.default_template(mode, o.model)}
    per[#per + 1] = string.format("%s: %s grader, %s prompt", set.name, cfg.grader, cfg.template)
  end
  if all_toy then print(string.format("eval: %s  %s", o.model, table.concat(per, "; ")))
  else print(string.format("eval: %s  mode %s; %s", o.model, how, table.concat(per, "; "))) end
  if common then
    print(string.format("eval: greedy %s, samples %d%s, max new tokens %s",
      tostring(common.greedy), n, n > 0 and string.format(" at T=%g top_p=%g", common.temperature, common.top_p) or "",
      tostring(common.max_new_tokens)))
  end
  print(evaluate.format_table(summaries))
  -- a resume says what it kept (a rerun of a finished output printed the table alone, as if it
  -- had evaluated again)
  for i, set in ipairs(sets) do
    local r, total = summaries[i].resumed or 0, summaries[i].n or #set.problems
    if r > 0 then
      print(("eval: %s: resumed %d of %d problems from %s/%s/eval_before.jsonl%s"):format(set.name, r, total, out,
        set.name, r == total and " (kept; nothing generated)" or ""))
    end
  end
  print("eval: results in " .. out)
  return 0
end

-- Run as a script (confit recipes/eval.lua ...: exit status = M.main's, user errors one line and
-- 1, confit.cli); loaded with dofile it only returns M.
return cli.main("eval", M.main, M)
