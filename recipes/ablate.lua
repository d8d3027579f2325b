-- recipes/ablate.lua: run an ablation grid of RLSC runs and tabulate the results.
--
--   confit recipes/ablate.lua GRID.lua [--out DIR] [--set KEY=VALUE ...] [--dry-run] [--report-only]
--
-- --set KEY=VALUE (repeatable) sets or replaces a base setting of every run before the grid is
-- checked (read as the recipe's flag takes it: a number, true / false for a switch, else the
-- text as given); a key that is an axis is refused. rlsc's --method-opt (an option of a method of
-- one's own) is set so for every run, --set method_opt=my_thresh=3 (or base = {method_opt =
-- "my_thresh=3"}); a repeatable flag takes a list in base ({method_opt = {"a=1", "b=2"}}) and a
-- repeated --set (each adds one; they replace the file's). Never an axis, whose values name
-- folders and hold no "=": sweep it with one ablate per value (--set and --out).
--
-- GRID.lua returns a table:
--   return {
--     base = {model = "examples/toy/model", steps = 20, questions_per_step = 8},  -- flags of every run
--     grid = {method = {"l2", "ours_lennorm"}, alpha = {0, 0.1}, n = {8, 16}, seed = {1, 2, 3}},
--     out = "runs/ablate-x",             -- the grid directory (--out overrides): new, empty or an
--                                        -- earlier grid's (only grid.json, results.*, key=value/)
--     recipe = "recipes/rlsc.lua",       -- optional: the recipe each run calls (default)
--     seed_key = "seed",                 -- optional: the axis results are averaged over
--     metrics = {"acc", "pass@1"},       -- optional: which after-metrics to tabulate
--   }
-- The default recipe is recipes/rlsc.lua from the current folder, else the rlsc.lua beside this
-- file; a recipe given is a path from the current folder. A seed_key given must be an axis.
--
-- Every grid point is one run directory OUT/<key=value,...> (keys in byte order, docs/RUNDIR.md's
-- grid layout), run as a subprocess `<confit> <recipe> --out DIR --key value ...` with its output
-- appended to DIR/log.txt after a line "==== ablate <UTC time>: <command>" (a point run again,
-- after a failure or resumed from its checkpoints, keeps the earlier attempts' output). Keys become
-- flags with "_" turned into "-" (questions_per_step -> --questions-per-step); true is a bare flag,
-- false leaves the flag out. Each setting is given once: a key both in base and in grid, or in two
-- spellings (eval_n and eval-n), is refused. A run whose DIR/summary.json exists
-- is finished and skipped, so re-running the same command continues an interrupted grid (a run
-- of rlsc, or of a wrapper of it, that left checkpoints gets --resume); a failed run is reported
-- and the grid goes on. A run
-- that ends by a Ctrl-C or a kill (SIGINT / SIGTERM, or exit status 130 / 143) stops the grid, and
-- so does a Ctrl-C of ablate itself (after the run going on): the results so far are written and
-- the exit status is 130 (143 for SIGTERM). A kill -9 of ablate leaves its running run going on
-- (nothing can stop it); it holds DIR/.lock until it ends, and a rerun meanwhile fails that point
-- (naming the PID) without writing into it. Before a
-- run starts, its settings (the flags but --out, and the recipe) are recorded in DIR/ablate.json;
-- when a finished run's recorded settings (or, for a run finished before that record existed,
-- OUT/grid.json's) differ from what the grid file gives it now (base or recipe changed), ablate
-- refuses before running or writing anything, naming the run and the setting: remove that run
-- directory to rerun it, or give another --out.
-- The confit executable is $CONFIT_EXE, else arg[-1] (the program that runs this script).
-- Before anything runs (a dry run too), a recipe of confit.cli that declares its flags (rlsc, or
-- a wrapper ending `return cli.main(name, dofile("recipes/rlsc.lua"))`: loaded, it returns
-- rlsc's main and runs nothing) is asked for them: every key must be one of its flags, every
-- run's flags must parse, every --method must be a method of confit.rl, every --model (the
-- recipe's default too) a model folder, and the metrics list
-- must name metrics rlsc's summaries hold. Other recipes are not loaded, nor checked.
--
-- Results: OUT/grid.json (axes and runs), OUT/results.csv and OUT/results.md with one row per grid
-- point without the seed axis and per benchmark (a single-benchmark summary is named after the
-- benchmark its before/after or its config name, a toy rlsc run "toy-<task>" as its eval records
-- and the report name it, else "all"): for each metric of
-- summary.json's "after", the mean over seeds and the sample standard deviation (n - 1
-- denominator), and the same for the change from "before" (after - before, per run, then averaged).
-- Every numeric key of "after" is a metric except settings and bookkeeping (n, wall_s, temperature,
-- ..., *_ci95) and a second name of a number the summary holds under docs/RUNDIR.md's name too
-- (rlsc's toy runs: greedy_acc = acc, pass1_t05 = pass@1, pass<k> = pass@k, maj<n> = maj@n;
-- confit.evaluate: avg@n = pass@1): the column keeps RUNDIR.md's name. The grid file's metrics list
-- picks and orders them explicitly (second names included).
--
-- recipe: any script taking rlsc's flags and writing summary.json; the confit executable runs
-- it as `<confit> <recipe> --out DIR ...`. A recipe of one's own that wraps rlsc (a method of
-- one's own registered with confit.rl first) loads rlsc and runs it under its own name:
--   local rl, cli = require "confit.rl", require "confit.cli"
--   rl.register_weighted("sq", function(lpv) ... end)
--   return cli.main("sq", dofile("recipes/rlsc.lua"))   -- dofile returns rlsc's main
-- (cli.main runs main when the chunk calling it is the script being run; cli.run("sq", main,
-- arg) runs it unconditionally). A run that ends without summary.json and an empty log.txt
-- is reported as such: the recipe never ran its main.
local jsonio = require "confit.jsonio"
local metrics = require "confit.metrics"
local cli = require "confit.cli"
local report = require "confit.report"

local M = {}

-- User errors (bad flags, a missing or broken grid file): one line "ablate: ..." and exit status
-- 1, no traceback (confit.cli).
local die = cli.die_for("ablate")
M.UserError = cli.UserError

local shell_quote = cli.shell_quote

local file_exists = require("confit.cli").can_read

local mkdir_p = cli.make_dir

-- Text of a grid value, used in directory names and on command lines: integers as integers,
-- floats with the fewest digits that read back the same (0.1, 1e-05, 3), strings as they are.
-- A value that cannot be one is a user error "<where>: ..." (where: e.g. "g.lua: axis alpha").
function M.format_value(v, where)
  local ty = type(v)
  if ty == "boolean" then return tostring(v) end
  if ty == "string" then return v end
  if math.type(v) == "integer" then return string.format("%d", v) end
  if ty == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      die("%s: value %s is not finite", where or "grid", v ~= v and "NaN" or tostring(v))
    end
    for _, fmt in ipairs({"%.15g", "%.16g", "%.17g"}) do
      local s = string.format(fmt, v)
      if tonumber(s) == v then return s end
    end
  end
  die("%s: values must be strings, numbers or booleans, got %s", where or "grid", ty)
end

-- The axis names of a grid in directory-name order (byte order).
local axis_names = cli.sorted_keys

-- The setting a key names: eval-n and eval_n are one (--eval-n).
local function flag_key(k) return (k:gsub("%-", "_")) end

-- The folder of this file, to find rlsc.lua beside it from any current folder.
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

--- The recipe of a grid that names none: recipes/rlsc.lua from the current folder, else the one
--- beside this file.
function M.default_recipe()
  if file_exists("recipes/rlsc.lua") then return "recipes/rlsc.lua" end
  return cli.tidy_path(HERE .. "/rlsc.lua")
end

-- Check a grid spec (from a file or a table) and fill in defaults. Raises user errors.
function M.check(spec, where)
  where = where or "grid"
  if type(spec) ~= "table" then die("%s must return a table, got %s", where, type(spec)) end
  -- a misspelt key (metric = ..., seeds = ...) would be ignored without a word
  local KEYS = {base = true, grid = true, out = true, recipe = true, seed_key = true, metrics = true}
  for k in pairs(spec) do
    if not KEYS[k] then
      die("%s: unknown key %s (a grid file returns base, grid, out, recipe, seed_key, metrics)", where, tostring(k))
    end
  end
  if spec.recipe ~= nil and (type(spec.recipe) ~= "string" or spec.recipe == "") then
    die("%s: recipe must be a script's path (a string), got %s", where, type(spec.recipe) == "string" and "''" or type(spec.recipe))
  end
  if spec.out ~= nil and (type(spec.out) ~= "string" or spec.out == "") then
    die("%s: out must be a folder path (a string), got %s", where, tostring(spec.out))
  end
  local base = spec.base or {}
  if type(base) ~= "table" then die("%s: base must be a table of flags", where) end
  local grid = spec.grid
  if type(grid) ~= "table" or next(grid) == nil then
    die("%s: grid must be a non-empty table such as {alpha = {0, 0.1}, seed = {1, 2}}", where)
  end
  local axes = {}
  for k, vals in pairs(grid) do
    if type(k) ~= "string" or not k:match("^[%w_][%w_%.%-]*$") then
      die("%s: axis name %s must be a word (letters, digits, _ . -)", where, tostring(k))
    end
    if type(vals) ~= "table" then vals = {vals} end
    if #vals == 0 then die("%s: axis %s has no values", where, k) end
    -- {1, nil, 3}: # and ipairs stop at the hole (only seed 1 ran)
    local count = 0
    for key in pairs(vals) do
      if math.type(key) ~= "integer" or key < 1 then
        die("%s: axis %s must be a list of values, got the key %s", where, k, tostring(key))
      end
      count = count + 1
    end
    if count ~= #vals then die("%s: axis %s has a hole (a nil value) in its list", where, k) end
    local seen = {}
    for i, v in ipairs(vals) do
      local s = M.format_value(v, ("%s: axis %s"):format(where, k))
      if s:find("[/,=]") or s == "" or s:find("%c") then
        die("%s: value %q of axis %s cannot be part of a directory name (no / , = or control characters)",
            where, s, k)
      end
      if seen[s] then die("%s: axis %s repeats the value %s", where, k, s) end
      seen[s] = true
      vals[i] = v
    end
    axes[k] = vals
  end
  for k, v in pairs(base) do
    if type(k) ~= "string" then die("%s: base keys must be flag names", where) end
    if type(v) == "table" then   -- a repeatable flag's values (method_opt = {"a=1", "b=2"})
      local count = 0
      for _ in pairs(v) do count = count + 1 end
      if #v == 0 or count ~= #v then
        die("%s: base setting %s: a list of values {\"a\", \"b\"} (for a repeatable flag), got a table that is not one",
            where, k)
      end
      for i, x in ipairs(v) do M.format_value(x, ("%s: base setting %s[%d]"):format(where, k, i)) end
    else
      M.format_value(v, ("%s: base setting %s"):format(where, k))
    end
  end
  -- each setting once: not in base and grid, nor in two spellings
  local given = {}
  local function once(k, what)
    local f = flag_key(k)
    if given[f] then
      die("%s: --%s is given twice (%s and %s): give each setting once, in base or as an axis",
          where, (f:gsub("_", "-")), given[f], what)
    end
    given[f] = what
  end
  for _, k in ipairs(axis_names(base)) do once(k, "base " .. k) end
  for _, k in ipairs(axis_names(axes)) do once(k, "axis " .. k) end
  -- every run's --out is its grid point's folder: an out in base or as an axis was dropped without
  -- a word (an axis out = {"a", "b"} made two identical runs)
  if given.out then
    die("%s: %s: each run's --out is its grid point's folder under the grid's out; set the grid's folder with "
        .. "the top-level out (or --out)", where, given.out)
  end
  if spec.seed_key ~= nil and axes[spec.seed_key] == nil then
    die("%s: seed_key %s is not an axis of the grid (axes: %s)", where, tostring(spec.seed_key),
        table.concat(axis_names(axes), ", "))
  end
  local s = {base = base, grid = axes, out = spec.out, recipe = spec.recipe or M.default_recipe(),
             seed_key = spec.seed_key or "seed", metrics = spec.metrics}
  if s.metrics ~= nil then
    if type(s.metrics) ~= "table" then die("%s: metrics must be a list of names", where) end
    for _, m in ipairs(s.metrics) do
      if type(m) ~= "string" then die("%s: metrics must be a list of names, got a %s", where, type(m)) end
    end
  end
  return s
end

local recipe_flags   -- (below)

-- The value of a --set KEY=VALUE for a flag of type ty (the recipe's declared flags; nil when
-- they are not known): a switch's true / false, a number flag's number (an integer when it reads
-- as one), a string flag's text as given (--set name=007 stays 007); with ty unknown, true /
-- false, then a number, else the text.
local function set_value(text, ty)
  if (ty == nil or ty == "flag") and (text == "true" or text == "false") then return text == "true" end
  if ty == nil or ty == "number" or ty == "int" then
    local n = tonumber(text)
    if n and text:match("^[%s%d%.eE+-]+$") then return math.tointeger(n) or n end
  end
  return text
end

--- Apply the command line's --set KEY=VALUE overrides (a list of strings) to a grid file's spec
--- before it is checked: each sets (or replaces) a base setting of every run; a key that is an
--- axis of the grid, a word without "=", or a key set twice is refused.
function M.apply_sets(spec, sets, where)
  if #sets == 0 or type(spec) ~= "table" then return spec end
  if spec.base ~= nil and type(spec.base) ~= "table" then return spec end   -- M.check says why
  local base, seen = spec.base or {}, {}
  local recipe = spec.recipe == nil and M.default_recipe() or spec.recipe
  local flags = type(recipe) == "string" and recipe_flags(recipe) or {}   -- (M.check refuses another)
  for _, s in ipairs(sets) do
    local k, v = s:match("^([^=]+)=(.*)$")
    if not k or not k:match("^[%w_][%w_%-]*$") then
      die("--set %s: give KEY=VALUE, a flag's name and its value (--set steps=2)", s)
    end
    local f = flag_key(k)
    local list = type(flags[f]) == "table" and flags[f][1] == "list"
    if seen[f] and not list then die("--set %s: %s is set twice (give each --set once)", s, k) end
    for axis in pairs(type(spec.grid) == "table" and spec.grid or {}) do
      if type(axis) == "string" and flag_key(axis) == f then
        die("--set %s: %s is an axis of %s; --set replaces a setting of every run (edit the grid's values in the file)",
            s, axis, where)
      end
    end
    if list then   -- a repeatable flag: each --set adds a value (the file's own are replaced)
      if not seen[f] then
        for old in pairs(base) do
          if type(old) == "string" and flag_key(old) == f then base[old] = nil end
        end
        base[k] = {}
      end
      local into = base[seen[f] or k]
      into[#into + 1] = v
      seen[f] = seen[f] or k
    else
      seen[f] = true
      for old in pairs(base) do
        if type(old) == "string" and flag_key(old) == f then base[old] = nil end
      end
      base[k] = set_value(v, type(flags[f]) == "table" and flags[f][1] or nil)
    end
  end
  spec.base = base
  return spec
end

-- Load a grid file: a Lua chunk returning the spec; sets: the command line's --set overrides.
function M.load(path, sets)
  local chunk, err = loadfile(path, "t")
  if not chunk then die("cannot read grid file: %s", tostring(err)) end
  local ok, spec = pcall(chunk)
  if not ok then
    -- error({}) has no message: say what it raised, not a table's address
    local why = type(spec) == "string" and spec or cli.message(spec)
    if type(spec) == "table" and getmetatable(spec) == nil then why = "it raised a table, not a message" end
    die("grid file %s failed: %s", path, why)
  end
  return M.check(M.apply_sets(spec, sets or {}, path), path)
end

-- Directory name of a parameter set: key=value joined by commas, keys in byte order.
function M.dir_name(params, keys)
  keys = keys or axis_names(params)
  local parts = {}
  for _, k in ipairs(keys) do
    if params[k] ~= nil then parts[#parts + 1] = k .. "=" .. M.format_value(params[k]) end
  end
  return table.concat(parts, ",")
end

-- Every grid point in order (the last axis in byte order varies fastest):
-- {{dir = "alpha=0,seed=1", params = {alpha = 0, seed = 1}, group = "alpha=0"}, ...}
function M.expand(spec)
  local names = axis_names(spec.grid)
  local group_keys = {}
  for _, k in ipairs(names) do if k ~= spec.seed_key then group_keys[#group_keys + 1] = k end end
  local runs = {}
  local function rec(i, params)
    if i > #names then
      local p = {}
      for k, v in pairs(params) do p[k] = v end
      runs[#runs + 1] = {dir = M.dir_name(p, names), params = p, group = M.dir_name(p, group_keys)}
      return
    end
    for _, v in ipairs(spec.grid[names[i]]) do
      params[names[i]] = v
      rec(i + 1, params)
    end
    params[names[i]] = nil
  end
  rec(1, {})
  return runs, names
end

-- The settings of one run: base merged with the run's parameters (keys spelled with "_"), without
-- out; each value as its text, true kept (a bare flag), false left out (no flag).
function M.settings(spec, run)
  local all = {}
  for k, v in pairs(spec.base) do all[flag_key(k)] = v end
  for k, v in pairs(run.params) do all[flag_key(k)] = v end
  all.out = nil
  for k, v in pairs(all) do
    if v == false then all[k] = nil
    elseif type(v) == "table" then   -- a repeatable flag: its values' texts, in order
      local t = {}
      for i, x in ipairs(v) do t[i] = M.format_value(x) end
      all[k] = t
    elseif v ~= true then all[k] = M.format_value(v) end
  end
  return all
end

-- The flags of one run: --out, then its settings in byte order.
function M.flags(spec, run, dir)
  local all = M.settings(spec, run)
  local argv = {"--out", dir}
  for _, k in ipairs(axis_names(all)) do
    local values = type(all[k]) == "table" and all[k] or {all[k]}
    for _, v in ipairs(values) do
      argv[#argv + 1] = "--" .. k:gsub("_", "-")
      if v ~= true then argv[#argv + 1] = v end
    end
  end
  return argv
end

local function flag_text(k, v)
  local flag = "--" .. k:gsub("_", "-")
  if v == nil then return "no " .. flag end
  if type(v) == "table" then   -- a repeatable flag's values
    local parts = {}
    for i, x in ipairs(v) do parts[i] = flag .. " " .. tostring(x) end
    return table.concat(parts, " ")
  end
  return v == true and flag or (flag .. " " .. tostring(v))
end

-- Whether two settings (texts, true, or lists of texts) are the same.
local function same_setting(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- The flags a recipe declared (confit.cli.declare_flags: rlsc, or a wrapper ending
-- `return cli.main(name, dofile("recipes/rlsc.lua"))`), or nil. Only a file that ends in cli.main
-- is loaded: loaded with dofile, it returns its main and runs nothing (a wrapper registers its
-- methods with confit.rl, which the method check then knows).
-- (a file is loaded once for its text: --set asks before the grid is checked, check_recipe after)
local loaded_recipes = {}
function recipe_flags(recipe)
  local f = io.open(recipe, "rb")
  local text = f and f:read("a")
  if f then f:close() end
  if not (text and text:find("cli\"?%)?%.main%s*%(")) then return nil end   -- cli.main( or cli").main(
  local key = recipe .. "\0" .. text
  if not loaded_recipes[key] then
    local ok, main = pcall(dofile, recipe)
    if not ok then return nil end
    loaded_recipes[key] = {flags = cli.flags_of(main), check = cli.check_of(main)}
  end
  return loaded_recipes[key].flags, loaded_recipes[key].check
end

-- The metric names of rlsc's summaries (confit.toy_eval's and their docs/RUNDIR.md names,
-- confit.evaluate's), and the numbered ones: a metrics list naming another is a typo.
local RLSC_METRICS = {"acc", "pass@1", "greedy_acc", "pass1_t05", "pass1_t10", "distinct_answers",
  "modal_share", "direct_share", "mean_length", "mean_confidence", "weight_share", "box_rate",
  "truncated_rate", "sample_mean_length", "sample_box_rate"}
local RLSC_NUMBERED = {"^pass@%d+$", "^maj@%d+$", "^avg@%d+$", "^pass%d+$", "^maj%d+$"}

local function rlsc_metric(m)
  for _, k in ipairs(RLSC_METRICS) do if k == m then return true end end
  for _, p in ipairs(RLSC_NUMBERED) do if m:match(p) then return true end end
  return false
end

--- Check a grid against its recipe's flags when the recipe declared them (recipe_flags): every
--- key a flag, every run's flags as the recipe parses them and checks them together (its declared
--- check: rlsc refuses, say, --temperature-scale with a method that trains), every --method one of confit.rl's,
--- the metrics list rlsc's names, and the model folder of every run that will start (opts.out:
--- the grid folder, whose finished runs are left out; opts.report_only: no run starts, so none).
--- Raises user errors "<where>: ..."; true when checked.
function M.check_recipe(spec, where, opts)
  opts = opts or {}
  local flags, check = recipe_flags(spec.recipe)
  if not flags then return false end
  local keys = axis_names(spec.base)
  for _, k in ipairs(axis_names(spec.grid)) do keys[#keys + 1] = k end
  for _, k in ipairs(keys) do
    if not flags[flag_key(k)] then
      die("%s: %s is not a flag of %s (see confit %s --help)", where, k, spec.recipe, spec.recipe)
    end
    -- a value of the wrong kind said as such (a boolean for a string flag read "--method needs a
    -- value (got the flag --seed)", a string for a switch "unexpected argument", before the
    -- twenty-second session)
    local kind = flags[flag_key(k)][1]
    if type(spec.base[k]) == "table" and kind ~= "list" then
      die("%s: base setting %s is a list, but --%s takes one value (only a repeatable flag takes a list)", where, k,
          (flag_key(k):gsub("_", "-")))
    end
    local values = type(spec.grid[k]) == "table" and spec.grid[k]
                   or (type(spec.base[k]) == "table" and spec.base[k]) or {spec.base[k]}
    local switch = kind == "flag"
    for _, v in ipairs(values) do
      if switch and type(v) ~= "boolean" then
        die("%s: %s = %s: --%s is a switch: give true (on) or false (off)", where, k, M.format_value(v),
            (flag_key(k):gsub("_", "-")))
      elseif not switch and v == true then
        local kind_name = flags[flag_key(k)][1]
        die("%s: %s = true: --%s takes %s %s value (false leaves it out)", where, k, (flag_key(k):gsub("_", "-")),
            kind_name:match("^[aeiou]") and "an" or "a", kind_name)
      end
    end
  end
  local rl = require "confit.rl"
  local models = {}
  for _, r in ipairs((M.expand(spec))) do
    local argv = M.flags(spec, r, "x")
    table.remove(argv, 1); table.remove(argv, 1)   -- --out x
    local ok, e = pcall(cli.parse_args, argv, flags, spec.recipe)
    local o = ok and e
    -- and the flags that parse but do not go together (the recipe's declared check)
    if ok and check then ok, e = pcall(check, o) end
    if not ok then die("%s: run %s: %s", where, r.dir, (cli.message(e):gsub("^[^:]*: ", ""))) end
    -- the model folder each run would load (its default too): every run failed on a missing
    -- one, each after the other, before the twenty-third session
    local model = flags.model and o.model
    local starts = not opts.report_only
                   and not (opts.out and file_exists(opts.out .. "/" .. r.dir .. "/summary.json"))
    if starts and type(model) == "string" and not models[model] then
      models[model] = true
      if not cli.exists(model) then
        die("%s: run %s: --model '%s': no such directory%s", where, r.dir, model, cli.from_here(model))
      elseif not cli.exists(model .. "/config.json") then
        die("%s: run %s: --model '%s' is not a model folder (no config.json there)", where, r.dir, model)
      end
    end
    -- a run on a GPU this machine lacks: refused once, here (every point started and failed
    -- alike, leaving a folder each, before the twenty-fourth session)
    if starts and flags.device and o.device == "cuda" then
      local why = cli.gpu_problem()
      if why then die("%s: run %s: --device cuda: no usable GPU (%s)", where, r.dir, why) end
    end
    local method = M.settings(spec, r).method
    if method and flags.method then
      local _, merr = rl.resolve(method)
      if merr then die("%s: run %s: --method: %s", where, r.dir, merr) end
    end
  end
  for _, m in ipairs(spec.metrics or {}) do
    if not rlsc_metric(m) then
      die("%s: metrics: %s is not a metric of rlsc's summaries (they hold %s, pass@k, maj@n, avg@n, "
          .. "pass<k>, maj<n>; k and n numbers)", where, m, table.concat(RLSC_METRICS, ", "))
    end
  end
  return true
end

-- Refuse (a user error) when a finished run of the grid in out was made with other settings
-- than the grid gives it now: those recorded in its ablate.json, else in out/grid.json.
-- report_only: the way out offered is the grid's settings of then (--report-only runs nothing).
function M.check_finished(spec, runs, out, report_only)
  local old = file_exists(out .. "/grid.json") and jsonio.read_json(out .. "/grid.json")
  local old_runs = {}
  if type(old) == "table" and type(old.runs) == "table" then
    for _, r in ipairs(old.runs) do
      if type(r) == "table" and type(r.dir) == "string" then old_runs[r.dir] = r end
    end
  end
  for _, r in ipairs(runs) do
    local path = out .. "/" .. r.dir
    if file_exists(path .. "/summary.json") then
      local rec = jsonio.read_json(path .. "/ablate.json")
      local was, recipe
      if type(rec) == "table" and type(rec.settings) == "table" then
        was, recipe = {}, rec.recipe
        for k, v in pairs(rec.settings) do was[flag_key(k)] = v end
      elseif old_runs[r.dir] and type(old.base) == "table" and type(old_runs[r.dir].params) == "table" then
        was, recipe = M.settings({base = old.base}, {params = old_runs[r.dir].params}), old.recipe
      end
      if was then
        local why
        if recipe ~= spec.recipe then
          why = ("recipe %s, but the grid now names %s"):format(tostring(recipe), spec.recipe)
        else
          local now = M.settings(spec, r)
          local keys = {}
          for k in pairs(now) do keys[#keys + 1] = k end
          for k in pairs(was) do if now[k] == nil then keys[#keys + 1] = k end end
          table.sort(keys)
          local a, b = {}, {}
          for _, k in ipairs(keys) do
            if not same_setting(was[k], now[k]) then a[#a + 1] = flag_text(k, was[k]); b[#b + 1] = flag_text(k, now[k]) end
          end
          if #a > 0 then
            why = ("%s, but the grid now gives it %s"):format(table.concat(a, " and "), table.concat(b, " and "))
          end
        end
        if why and report_only then
          die("run %s finished with %s: --report-only reports a grid with the settings its runs had "
              .. "(the grid file and --set flags they ran with)", path, why)
        elseif why then
          die("run %s finished with %s: remove that run directory to run it again, or give another --out",
              path, why)
        end
      end
    end
  end
end

-- The confit executable for subprocesses.
function M.executable()
  local e = os.getenv("CONFIT_EXE")
  if e and e ~= "" then return e end
  if arg and arg[-1] then
    local i = -1
    while arg[i - 1] do i = i - 1 end  -- the program is the lowest index (options sit above it)
    return arg[i]
  end
  return "confit"
end

-- The last n lines of the file at path from byte offset from (default 0: the whole file).
local function tail(path, n, from)
  local f = io.open(path, "rb")
  if not f then return "" end
  if from then f:seek("set", from) end
  local lines = {}
  for line in f:lines() do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  f:close()
  return table.concat(lines, "\n")
end

-- The size of the file at path in bytes (0 when it is not there).
local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n or 0
end

-- Run one grid point as a subprocess; true, or nil, a reason and, when it ended by a Ctrl-C or a
-- kill (SIGINT / SIGTERM, or exit status 130 / 143), the exit status that stops the grid. Its
-- output is appended to DIR/log.txt after a line naming this invocation (time and command), so a
-- grid point run again (after a failure, or resumed from its checkpoints) keeps the earlier
-- attempts' output; run.log_from is where this attempt's output starts.
function M.subprocess_runner(run, ctx)
  local argv = {ctx.exe, ctx.recipe}
  for _, a in ipairs(run.argv) do argv[#argv + 1] = a end
  local parts = {}
  for i, a in ipairs(argv) do parts[i] = shell_quote(a) end
  local log = run.path .. "/log.txt"
  local f = io.open(log, "ab")
  if not f then return nil, "cannot write " .. log end
  f:write(("==== ablate %s: %s%s\n"):format(os.date("!%Y-%m-%dT%H:%M:%SZ"), table.concat(parts, " "),
                                          run.resumed and "  (resuming from its checkpoints)" or ""))
  f:close()
  run.log_from = file_size(log)
  local cmd = table.concat(parts, " ") .. " >> " .. shell_quote(log) .. " 2>&1"
  -- not os.execute: system() ignores SIGINT while it waits, so a Ctrl-C of ablate alone was lost
  local p, perr = io.popen(cmd, "r")
  if not p then return nil, "cannot start " .. ctx.recipe .. ": " .. tostring(perr) end
  local ok, how, code = p:close()   -- waits for the run (its output goes to log.txt)
  if ok then return true end
  local ended = string.format("%s %s", how == "signal" and "killed by signal" or "exit status", tostring(code))
  if (how == "signal" and (code == 2 or code == 15)) or (how == "exit" and (code == 130 or code == 143)) then
    return nil, ended .. "; log " .. log, how == "signal" and 128 + code or code
  end
  local t = tail(log, 5, run.log_from)
  return nil, string.format("%s; log %s%s", ended, log, t ~= "" and (":\n    " .. t:gsub("\n", "\n    ")) or "")
end

-- What ablate writes into a grid folder: grid.json, the results, its lock, the temporary files of
-- its atomic writes and one folder per grid point ("key=value,..."). An --out holding anything
-- else (a finished rlsc run, a model, notes) is refused before anything is written: the grid's
-- grid.json and results would overwrite files of the same name there.
local GRID_FILES = {["grid.json"] = true, ["results.csv"] = true, ["results.md"] = true, [".lock"] = true}
local function check_grid_folder(out)
  if not cli.exists(out) then return end
  if not cli.is_dir(out) then die("--out %s is %s", out, cli.not_a_folder(out)) end
  local names = cli.list_dir(out)
  if not names then die("--out %s: cannot list the folder", out) end
  table.sort(names)
  for _, name in ipairs(names) do
    local point = name:find("=", 1, true) and cli.is_dir(out .. "/" .. name)
    if not (GRID_FILES[name] or point or jsonio.is_temp_name(name)) then
      die("--out %s holds %s, which ablate does not write (an ablate grid folder holds grid.json, results.* "
          .. "and its runs' key=value folders): give a new or empty folder, or an earlier grid's", out, name)
    end
  end
end

-- Run every unfinished grid point. opts: runner(run, ctx) -> true | nil, why, stop (default
-- subprocess_runner; stop: an exit status, the run was interrupted), out, dry_run, say
-- (print-like), clock. A run that returns stop, or a Ctrl-C of this process while a run goes on,
-- stops the grid. Returns {ran, skipped, failed = {{dir, why}}, runs, stopped = nil | {dir, why,
-- status}}.
function M.run_grid(spec, opts)
  opts = opts or {}
  local out = opts.out or spec.out
  if type(out) ~= "string" or out == "" then die("no output directory: set out in the grid file or give --out") end
  local say = opts.say or print
  local runs, names = M.expand(spec)
  local runner = opts.runner or M.subprocess_runner
  local ctx = {exe = opts.exe or M.executable(), recipe = spec.recipe, out = out}
  -- a recipe with a --resume flag (rlsc, or a wrapper of it) continues a run from its checkpoints
  local flags = recipe_flags(spec.recipe)
  ctx.resumable = spec.recipe:match("rlsc%.lua$") ~= nil or (flags ~= nil and flags.resume ~= nil)
  check_grid_folder(out)
  M.check_finished(spec, runs, out)
  -- one ablate per grid folder, held until run_grid returns (however it ends)
  local grid_lock = {}
  local _ <close> = setmetatable({}, {__close = function() if grid_lock.h then grid_lock.h:close() end end})
  if not opts.dry_run then
    local made, merr = mkdir_p(out)
    if not made then die("%s", merr) end
    local h, err, pid = require("confit").lock(out .. "/.lock")
    if not h then die("--out %s", cli.lock_refusal(out, err, pid)) end
    grid_lock.h = h
    jsonio.remove_stale_temps(out)   -- what a killed ablate left half written (grid.json, results)
    local axes = {}
    for _, k in ipairs(names) do axes[k] = spec.grid[k] end
    local list = {}
    for i, r in ipairs(runs) do list[i] = {dir = r.dir, params = r.params} end
    local ok, err = jsonio.write_json_atomic(out .. "/grid.json",
      {axes = axes, runs = list, base = jsonio.object(spec.base), recipe = spec.recipe})
    if not ok then die("cannot write %s/grid.json: %s", out, tostring(err)) end
  end
  local res = {ran = 0, skipped = 0, failed = {}, runs = runs}
  local clock = opts.clock or os.time
  for i, r in ipairs(runs) do
    r.path = out .. "/" .. r.dir
    r.argv = M.flags(spec, r, r.path)
    local label = string.format("[%d/%d] %s", i, #runs, r.dir)
    if file_exists(r.path .. "/summary.json") then
      res.skipped = res.skipped + 1
      say("ablate: " .. label .. ": finished before, skipped")
    elseif opts.dry_run then
      local parts = {shell_quote(ctx.exe), shell_quote(ctx.recipe)}
      for _, a in ipairs(r.argv) do parts[#parts + 1] = shell_quote(a) end
      say("ablate: " .. label .. ": " .. table.concat(parts, " "))
    else
      local made, merr = mkdir_p(r.path)
      if not made then die("%s", merr) end
      -- a grid point another process still writes (the rlsc child of a killed ablate) is left
      -- alone: the point fails with that reason and nothing is written into its folder
      local busy
      do
        local h, lerr, pid = require("confit").lock(r.path .. "/.lock")
        if h then
          jsonio.remove_stale_temps(r.path)   -- ablate.json (or the run's files) cut short by a kill
          local wok, werr = jsonio.write_json_atomic(r.path .. "/ablate.json",
            {recipe = spec.recipe, settings = jsonio.object(M.settings(spec, r))})
          h:close()   -- the recipe run there takes its own lock
          if not wok then die("cannot write %s/ablate.json: %s", r.path, tostring(werr)) end
        else
          busy = cli.lock_refusal(r.path, lerr, pid, "wait for it and run ablate again", "ablate cannot write there")
        end
      end
      -- an unfinished RL run that left checkpoints continues from them (rlsc refuses a fresh
      -- start over them; a wrapper of rlsc was left failing there until the eighteenth session)
      local resumed = ""
      if ctx.resumable and require("confit.train").latest_checkpoint(r.path) then
        local has = false
        for _, a in ipairs(r.argv) do has = has or a == "--resume" end
        if not has then r.argv[#r.argv + 1] = "--resume" end
        resumed = " (resuming from its checkpoints)"
        r.resumed = true
      end
      local t0 = clock()
      local ok, why, stop
      if busy then
        ok, why = nil, busy
      else
        say("ablate: " .. label .. ": running" .. resumed)
        -- a Ctrl-C of ablate raises "interrupted" once the run has ended (lua/main.c)
        local rok, a, b, c = pcall(runner, r, ctx)
        if rok then ok, why, stop = a, b, c
        elseif cli.is_interrupt(a) then   -- the run has ended: finished, or interrupted too
          ok, why, stop = file_exists(r.path .. "/summary.json"), "interrupted by Ctrl-C", 130
        else error(a, 0) end
      end
      local again = "run the same command again to continue"
      if stop and not ok then
        res.stopped = {dir = r.dir, why = tostring(why), status = stop}
        say(("ablate: %s: stopped (%s); the grid stops here: %s"):format(label, tostring(why), again))
        break
      end
      if ok and not file_exists(r.path .. "/summary.json") then
        ok, why = nil, "finished without writing summary.json"
        local log = r.path .. "/log.txt"
        if file_exists(log) and file_size(log) <= (r.log_from or 0) then
          why = why .. "; the recipe wrote nothing (log.txt is empty after this run's header line): did it run "
            .. "main? A wrapper recipe ends `return cli.main(\"name\", dofile(\"recipes/rlsc.lua\"))` (see --help)"
        end
      end
      if ok then
        res.ran = res.ran + 1
        say(string.format("ablate: %s: done in %ds", label, math.floor(clock() - t0 + 0.5)))
      else
        res.failed[#res.failed + 1] = {dir = r.dir, why = tostring(why)}
        say("ablate: " .. label .. ": FAILED (" .. tostring(why) .. ")")
      end
      if stop then
        res.stopped = {why = tostring(why), status = stop}
        say(("ablate: %s; the grid stops after %s: %s"):format(why, label, again))
        break
      end
    end
  end
  return res
end

-- Results ---------------------------------------------------------------------------------------

local METRIC_ORDER = {"acc", "greedy_acc", "pass@1"}

-- Numbers in a summary that are settings or bookkeeping, not outcomes (shared with the report).
local is_metric = report.is_metric

-- True when after[k] repeats a number after holds under its docs/RUNDIR.md name too (and before
-- likewise, so that the change is the same as well): confit.report.second_name, which the
-- report's summary table uses alike.
local second_name = report.second_name

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

-- Metric order: acc, pass@1, then pass@k by k, maj@n, avg@n, then the rest by name.
local function metric_rank(k)
  for i, m in ipairs(METRIC_ORDER) do if k == m then return i, 0, k end end
  local kind, num = k:match("^(%a+)@(%d+)$")
  if kind == "pass" then return 10, tonumber(num), k end
  if kind == "maj" then return 20, tonumber(num), k end
  if kind == "avg" then return 30, tonumber(num), k end
  return 40, 0, k
end

local function sort_metrics(list)
  table.sort(list, function(a, b)
    local ra, na, ka = metric_rank(a)
    local rb, nb, kb = metric_rank(b)
    if ra ~= rb then return ra < rb end
    if na ~= nb then return na < nb end
    return ka < kb
  end)
  return list
end

-- The name of a single-benchmark summary (like the report's, lua/confit/report.lua, but without
-- reading the eval records): the benchmark its before / after name when they name one (an rlsc
-- run's), else the config's (`benchmark`, a `benchmarks` list of one, or rlsc's
-- `eval.benchmark`; a toy rlsc run's, made before its summary named it, "toy-<task>" as its eval
-- records name it), else "all".
local function single_name(summary)
  local names, n = {}, 0
  for _, stage in ipairs({"before", "after"}) do
    local s = summary[stage]
    local b = type(s) == "table" and s.benchmark
    if type(b) == "string" and b ~= "" and not names[b] then names[b] = true; n = n + 1 end
  end
  if n == 1 then return (next(names)) end
  if n > 1 then return "all" end
  local cfg = type(summary.config) == "table" and summary.config or {}
  local b = cfg.benchmark
  if type(b) ~= "string" and type(cfg.benchmarks) == "table" and #cfg.benchmarks == 1 then b = cfg.benchmarks[1] end
  if type(b) ~= "string" and type(cfg.eval) == "table" then b = cfg.eval.benchmark end
  if type(b) ~= "string" and cfg.recipe == "rlsc" and cfg.data == nil and type(cfg.task) == "string" then
    b = "toy-" .. cfg.task
  end
  if type(b) == "string" and b ~= "" then return b end
  return "all"
end

-- summary.json in either shape -> {benchmark = {before, after}}
local function benchmarks_of(summary)
  if type(summary) ~= "table" then return {} end
  if type(summary.benchmarks) == "table" then return summary.benchmarks end
  if type(summary.before) == "table" or type(summary.after) == "table" then
    return {[single_name(summary)] = {before = summary.before, after = summary.after}}
  end
  return {}
end

-- Aggregate finished runs: rows = {{group, params, benchmark, planned, runs, stats = {metric =
-- {mean, std, delta_mean, delta_std, n}}}}, metric list, problems (unreadable summaries).
function M.collect(spec, runs, out)
  local groups, order = {}, {}
  local problems = {}
  local metric_set = {}
  for _, r in ipairs(runs) do
    local g = groups[r.group]
    if not g then
      local params = {}
      for k, v in pairs(r.params) do if k ~= spec.seed_key then params[k] = v end end
      g = {group = r.group, params = params, planned = 0, benches = {}, bench_order = {}}
      groups[r.group] = g
      order[#order + 1] = r.group
    end
    g.planned = g.planned + 1
    local path = out .. "/" .. r.dir .. "/summary.json"
    if file_exists(path) then
      local summary, err = jsonio.read_json(path)
      if not summary then
        problems[#problems + 1] = {dir = r.dir, why = tostring(err)}
      elseif type(summary) ~= "table" or summary[1] ~= nil then
        -- ([1, 2]: no metrics, and the run was counted neither done nor failed)
        problems[#problems + 1] = {dir = r.dir, why = path .. ": not a JSON object"}
      else
        for bname, b in pairs(benchmarks_of(summary)) do
          local after = type(b) == "table" and b.after
          if type(after) == "table" then
            local before = type(b.before) == "table" and b.before or {}
            local gb = g.benches[bname]
            if not gb then
              gb = {runs = 0, vals = {}, deltas = {}}
              g.benches[bname] = gb
              g.bench_order[#g.bench_order + 1] = bname
            end
            gb.runs = gb.runs + 1
            for k, v in pairs(after) do
              if finite(v) and spec.metrics == nil and is_metric(k) and not second_name(k, after, before) then
                metric_set[k] = true
              end
            end
            for _, k in ipairs(spec.metrics or {}) do metric_set[k] = true end
            for k, v in pairs(after) do
              -- a second name's column, asked for explicitly only, gets its values
              if finite(v) and (spec.metrics ~= nil or not second_name(k, after, before)) then
                gb.vals[k] = gb.vals[k] or {}
                table.insert(gb.vals[k], v)
                if finite(before[k]) then
                  gb.deltas[k] = gb.deltas[k] or {}
                  table.insert(gb.deltas[k], v - before[k])
                end
              end
            end
          end
        end
      end
    end
  end
  local mlist = {}
  if spec.metrics then
    for _, k in ipairs(spec.metrics) do mlist[#mlist + 1] = k end
  else
    for k in pairs(metric_set) do mlist[#mlist + 1] = k end
    sort_metrics(mlist)
  end
  local rows = {}
  for _, name in ipairs(order) do
    local g = groups[name]
    table.sort(g.bench_order)
    if #g.bench_order == 0 then
      rows[#rows + 1] = {group = name, params = g.params, planned = g.planned, runs = 0, stats = {}}
    end
    for _, bname in ipairs(g.bench_order) do
      local gb = g.benches[bname]
      local stats = {}
      for _, k in ipairs(mlist) do
        local xs, ds = gb.vals[k], gb.deltas[k]
        if xs and #xs > 0 then
          stats[k] = {mean = metrics.mean(xs), std = #xs > 1 and metrics.std(xs) or nil, n = #xs}
          if ds and #ds > 0 then
            stats[k].delta_mean = metrics.mean(ds)
            stats[k].delta_std = #ds > 1 and metrics.std(ds) or nil
          end
        end
      end
      rows[#rows + 1] = {group = name, params = g.params, benchmark = bname, planned = g.planned,
                         runs = gb.runs, stats = stats}
    end
  end
  return rows, mlist, problems
end

local function num(x)
  if x == nil then return "" end
  return string.format("%.10g", x)
end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\n\r]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- results.csv text.
function M.csv(rows, mlist, axes)
  local head = {}
  for _, a in ipairs(axes) do head[#head + 1] = a end
  for _, h in ipairs({"benchmark", "runs", "planned"}) do head[#head + 1] = h end
  for _, m in ipairs(mlist) do
    for _, suf in ipairs({"_mean", "_std", "_delta_mean", "_delta_std"}) do head[#head + 1] = m .. suf end
  end
  local lines = {}
  local cells = {}
  for i, h in ipairs(head) do cells[i] = csv_field(h) end
  lines[1] = table.concat(cells, ",")
  for _, r in ipairs(rows) do
    cells = {}
    for _, a in ipairs(axes) do
      cells[#cells + 1] = csv_field(r.params[a] ~= nil and M.format_value(r.params[a]) or "")
    end
    cells[#cells + 1] = csv_field(r.benchmark or "")
    cells[#cells + 1] = tostring(r.runs)
    cells[#cells + 1] = tostring(r.planned)
    for _, m in ipairs(mlist) do
      local s = r.stats[m] or {}
      cells[#cells + 1] = num(s.mean)
      cells[#cells + 1] = num(s.std)
      cells[#cells + 1] = num(s.delta_mean)
      cells[#cells + 1] = num(s.delta_std)
    end
    lines[#lines + 1] = table.concat(cells, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

local function fmt_metric(m, x, signed)
  local f = m:find("length$") and "%.1f" or "%.3f"   -- token counts (mean_length, sample_mean_length)
  if math.abs(x) >= 1e6 then f = "%.4g" end   -- (1e300 in "%.3f" is 301 digits)
  if signed then f = f:gsub("%%", "%%+") end
  return string.format(f, x)
end

-- "0.512 ± 0.013 (Δ +0.101 ± 0.020)"; no "±" with a single seed.
function M.cell(m, s)
  if not s or s.mean == nil then return "–" end
  local t = fmt_metric(m, s.mean)
  if s.std then t = t .. " ± " .. fmt_metric(m, s.std) end
  if s.delta_mean then
    t = t .. " (Δ " .. fmt_metric(m, s.delta_mean, true)
    if s.delta_std then t = t .. " ± " .. fmt_metric(m, s.delta_std) end
    t = t .. ")"
  end
  return t
end

local function md_escape(s) return (tostring(s):gsub("|", "\\|")) end

-- results.md text.
function M.markdown(rows, mlist, axes, info)
  local out = {}
  out[#out + 1] = "# Ablation results" .. (info.out and (": " .. md_escape(info.out)) or "")
  out[#out + 1] = ""
  out[#out + 1] = "Each cell: mean ± sample standard deviation (n − 1 denominator) over seeds ("
    .. md_escape(info.seed_key) .. ") of the metric after training; in parentheses Δ = after − "
    .. "before, computed per run, then its mean ± sample standard deviation. No ± with one seed. "
    .. "Rates are fractions in [0, 1]; lengths in tokens."
  out[#out + 1] = ""
  local head = {}
  for _, a in ipairs(axes) do head[#head + 1] = md_escape(a) end
  head[#head + 1] = "benchmark"
  head[#head + 1] = "seeds"
  for _, m in ipairs(mlist) do head[#head + 1] = md_escape(m) end
  out[#out + 1] = "| " .. table.concat(head, " | ") .. " |"
  local rule = {}
  for i = 1, #head do rule[i] = i <= #axes + 1 and "---" or "---:" end
  out[#out + 1] = "|" .. table.concat(rule, "|") .. "|"
  for _, r in ipairs(rows) do
    local cells = {}
    for _, a in ipairs(axes) do
      cells[#cells + 1] = md_escape(r.params[a] ~= nil and M.format_value(r.params[a]) or "")
    end
    cells[#cells + 1] = md_escape(r.benchmark or "–")
    cells[#cells + 1] = r.runs == r.planned and tostring(r.runs) or (r.runs .. " of " .. r.planned)
    for _, m in ipairs(mlist) do cells[#cells + 1] = M.cell(m, r.stats[m]) end
    out[#out + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
  if info.failed and #info.failed > 0 then
    out[#out + 1] = ""
    out[#out + 1] = "Failed or unfinished runs:"
    out[#out + 1] = ""
    for _, f in ipairs(info.failed) do
      -- one line: the first of why, and the last non-empty line of a log tail after it (the
      -- error, where the tail ends; alone the first line ended in "log.txt:")
      local first, rest = f.why:match("^([^\n]*)\n?(.*)$")
      local last
      for l in rest:gmatch("[^\n]+") do if l:find("%S") then last = l:match("^%s*(.-)%s*$") end end
      local why = last and (first .. " " .. last) or (first:gsub(":$", ""))
      out[#out + 1] = "- `" .. f.dir .. "`: " .. md_escape(why)
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- Collect and write results.csv and results.md; returns rows, metric list, and the finished runs
-- whose summary.json could not be read ({dir, why}: why names the file and line).
function M.write_results(spec, runs, out, failed)
  local rows, mlist, problems = M.collect(spec, runs, out)
  local names = axis_names(spec.grid)
  local axes = {}
  for _, k in ipairs(names) do if k ~= spec.seed_key then axes[#axes + 1] = k end end
  local all_failed = {}
  for _, f in ipairs(failed or {}) do all_failed[#all_failed + 1] = f end
  for _, p in ipairs(problems) do all_failed[#all_failed + 1] = p end
  local ok, err = jsonio.write_text_atomic(out .. "/results.csv", M.csv(rows, mlist, axes))
  if not ok then die("cannot write %s/results.csv: %s", out, tostring(err)) end
  ok, err = jsonio.write_text_atomic(out .. "/results.md", M.markdown(rows, mlist, axes,
    {out = out, seed_key = spec.seed_key, failed = all_failed}))
  if not ok then die("cannot write %s/results.md: %s", out, tostring(err)) end
  return rows, mlist, problems
end

local USAGE = [[
usage: confit recipes/ablate.lua GRID.lua [--out DIR] [--set KEY=VALUE ...] [--dry-run] [--report-only]
  GRID.lua returns {base = {flags...}, grid = {axis = {values...}, ...}, out = "runs/x"}
    optional: recipe = "recipes/rlsc.lua", seed_key = "seed", metrics = {"acc", "pass@1"}
  A recipe of one's own wrapping rlsc (e.g. to register a method with confit.rl) ends with
    return require("confit.cli").main("mine", dofile("recipes/rlsc.lua"))
  so that rlsc's main runs when the wrapper is the script run (a run that writes nothing to its
  log.txt never ran its main).
  --set K=V      set (or replace) base setting K of every run, e.g. --set steps=2 --set
                 eval_questions=20 for a quick trial (true / false for a switch; not an axis)
  --dry-run      print the command of every unfinished run, run nothing
  --report-only  only (re)write results.csv and results.md from finished runs, listing the
                 points without a summary; exit status 0
  Keys are rlsc's flags (eval_n or eval-n: --eval-n), each given once (in base or as an axis);
  with rlsc (or a wrapper of it) they, the methods and the metrics are checked before anything
  runs. A run ended by Ctrl-C or SIGTERM, or a Ctrl-C of ablate, stops the grid (status 130 /
  143) after writing the results so far; the same command continues it.
  A finished run (DIR/summary.json) is skipped. Its settings are recorded in DIR/ablate.json:
  when the grid file now gives it others (base or recipe changed), ablate refuses, naming the
  run and the setting; remove that run directory to run it again, or give another --out.]]

function M.main(argv)
  local path, o, sets = nil, {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "-h" or a == "--help" then print(USAGE); return 0
    elseif a == "--set" or a:match("^%-%-set=") then
      local s
      if a == "--set" then i = i + 1; s = argv[i] else s = a:sub(7) end
      if not s or s:match("^%-%-") then die("--set needs KEY=VALUE (--set steps=2)") end
      sets[#sets + 1] = s
    elseif a == "--dry-run" or a == "--report-only" then   -- once each, as every recipe's flags
      local k = a == "--dry-run" and "dry_run" or "report_only"
      if o[k] then die("%s is given twice (give it once)", a) end
      o[k] = true
    elseif a == "--out" or a:match("^%-%-out=") then
      if o.out then die("--out is given twice (give it once)") end
      if a == "--out" then
        i = i + 1
        o.out = argv[i]
        -- an option in its place: the folder was left out (--out --dry-run ran the grid in "./--dry-run")
        if o.out and (o.out:match("^%-%-") or o.out == "-h") then
          die("--out needs a directory (got the option %s; a folder starting with -- is given as --out=DIR)", o.out)
        end
      else
        o.out = a:sub(7)
      end
      if not o.out or o.out == "" then die("--out needs a directory") end
    elseif a:match("^%-") then die("unknown option %s (see --help)", a)
    elseif path then die("one grid file only (got %s and %s)", path, a)
    else path = a end
    i = i + 1
  end
  if not path then die("give a grid file (see --help)") end
  if o.dry_run and o.report_only then
    die("--dry-run and --report-only exclude each other (--dry-run shows the runs to make, "
        .. "--report-only writes the results of those made)")
  end
  if not cli.exists(path) then die("cannot read grid file '%s': no such file", path) end
  if cli.is_dir(path) then die("cannot read grid file '%s': it is a directory", path) end
  local spec = M.load(path, sets)
  local out = o.out or spec.out
  if not out then die("no output directory: set out in %s or give --out", path) end
  if not o.report_only and (not file_exists(spec.recipe) or cli.is_dir(spec.recipe)) then
    die("%s: recipe %s: no such file (a relative path is from the current folder)", path, spec.recipe)
  end
  if not M.check_recipe(spec, path, {out = out, report_only = o.report_only}) and not o.report_only then
    -- a recipe that does not end in cli.main declares no flags: say so, not a silent "all well"
    io.stderr:write(("ablate: %s does not end in cli.main(...), so its flags and values are not checked "
      .. "before the runs start (a wrapper of rlsc: `return require(\"confit.cli\").main(\"mine\", "
      .. "dofile(\"recipes/rlsc.lua\"))`)\n"):format(spec.recipe))
  end
  local res
  -- --report-only: an ablate grid folder, and no ablate at work in it (its lock, held until main
  -- returns): results.* were written into any folder (an rlsc run's, a user's results.md) until
  -- the seventeenth session
  local function report_lock()
    if not cli.is_dir(out) then die("--report-only: no grid directory '%s' (nothing has run yet)", out) end
    check_grid_folder(out)
    if not file_exists(out .. "/grid.json") then
      die("--report-only: '%s' holds no grid.json: no ablate grid has run there yet", out)
    end
    -- ablate's grid.json names its recipe; toy_compare's does not (and refuses files it did not
    -- write, so results.* written there locked toy_compare out of its own folder)
    local gj = jsonio.read_json(out .. "/grid.json")
    if type(gj) ~= "table" or gj.recipe == nil then
      die("--report-only: '%s/grid.json' is not an ablate grid's (toy_compare's? it writes its table to its --md)", out)
    end
    local h, err, pid = require("confit").lock(out .. "/.lock")
    if not h then
      die("--out %s", cli.lock_refusal(out, err, pid, "wait for it (it writes the results when it ends)",
                                       "--report-only needs to write results.csv and results.md there"))
    end
    return h
  end
  local held <close> = o.report_only and report_lock() or nil
  if o.report_only then
    res = {failed = {}, runs = (M.expand(spec))}
    M.check_finished(spec, res.runs, out, true)
    -- the points without a summary (not run yet, failed, or cut short) are listed as such
    for _, r in ipairs(res.runs) do
      if not file_exists(out .. "/" .. r.dir .. "/summary.json") then
        local log = out .. "/" .. r.dir .. "/log.txt"
        res.failed[#res.failed + 1] = {dir = r.dir, why = "no summary.json: not run, failed or cut short"
          .. (file_exists(log) and ("; log " .. log) or "; never started")}
      end
    end
  else
    res = M.run_grid(spec, {out = out, dry_run = o.dry_run})
    if o.dry_run then return 0 end
  end
  -- results.md lists the failed runs and the one a stop cut short
  local unfinished = table.move(res.failed, 1, #res.failed, 1, {})
  local stop = res.stopped
  if stop and stop.dir then unfinished[#unfinished + 1] = {dir = stop.dir, why = "stopped: " .. stop.why} end
  local rows, mlist, problems = M.write_results(spec, res.runs, out, unfinished)
  for _, p in ipairs(problems or {}) do
    io.stderr:write("ablate: warning: ", p.dir, ": unreadable summary.json: ", p.why, "\n")
  end
  if o.report_only then   -- nothing ran or was skipped: say what was found (status 0 either way)
    print(string.format("ablate: %d run%s, %d row%s from the finished ones%s, metrics: %s", #res.runs,
      #res.runs == 1 and "" or "s", #rows, #rows == 1 and "" or "s",
      #res.failed > 0 and string.format(" (%d without a summary)", #res.failed) or "",
      #mlist > 0 and table.concat(mlist, ", ") or "none yet"))
    print("ablate: results in " .. out .. "/results.md and results.csv")
    return 0
  else
    print(string.format("ablate: %d runs (%s ran, %s skipped, %d failed); %d rows, metrics: %s",
      #res.runs, tostring(res.ran or 0), tostring(res.skipped or 0), #res.failed, #rows,
      #mlist > 0 and table.concat(mlist, ", ") or "none yet"))
  end
  print("ablate: results in " .. out .. "/results.md and results.csv")
  if stop then return stop.status end
  return #res.failed == 0 and 0 or 1
end

-- Run as a script: exit status = M.main's (1 when a run failed, 130 / 143 when the grid was
-- stopped), user errors one line and 1 (confit.cli). Loaded with dofile it only returns M.
return cli.main("ablate", M.main, M)
