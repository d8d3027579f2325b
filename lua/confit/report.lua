-- confit.report: one self-contained HTML report (inline CSS and SVG; no scripts, no external
-- URLs) for one or more run directories in the format of docs/RUNDIR.md.
--
--   local report = require "confit.report"
--   assert(report.write("report.html", {"runs/a", "runs/grid"}))
--
-- A directory that recipes/eval.lua --out wrote stands for its benchmark folders OUT/<bench>/;
-- a single-benchmark summary.json is named after its eval records' benchmark (docs/RUNDIR.md).
--
-- Sections: runs (files found, problems met), per-step training curves (one line per run),
-- accuracy before/after per benchmark with 95% intervals, response-length and sequence
-- log-probability histograms before/after (the paper's Figure 1b), summary metrics, and a
-- config table per run. A missing or unreadable file never stops the report: the section says
-- "no data" and the runs table says why.
--
-- Invariants: the output depends only on the input files (no timestamps, sorted keys), every
-- piece of text from the files is HTML-escaped, and every number drawn is finite.
local jsonio = require "confit.jsonio"

local M = {}

local fmt = string.format

-- Tableau 10: distinguishable, print-safe run colors.
M.palette = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
             "#ff9da7", "#9c755f", "#bab0ac"}
local BEFORE, AFTER = "#8c8c8c", "#e15759"

-- Small helpers --------------------------------------------------------------------------------

-- Control characters other than tab, newline and carriage return (C0 and DEL) become U+FFFD
-- in HTML: they are parse errors there and make an SVG cut out of the page ill-formed.
local function no_controls(c)
  if c == "\t" or c == "\n" or c == "\r" then return c end
  return "\239\191\189"
end

local function esc(s)
  s = tostring(s)
  if not utf8.len(s) then s = jsonio.fix_utf8(s) end
  s = s:gsub("%c", no_controls)
  return (s:gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                        ['"'] = "&quot;", ["'"] = "&#39;"}))
end
M.escape = esc

-- Text for a terminal line: control characters (newlines included) shown as \xNN, so a file or
-- directory name cannot move the cursor or send escape sequences.
function M.terminal_safe(s)
  return (tostring(s):gsub("%c", function(c) return fmt("\\x%02X", c:byte()) end))
end

local function finite(x)
  return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge
end

-- Largest magnitude kept on an axis, so that padding a range never overflows to inf.
local BIG = 1e307
local function clampbig(x) return math.max(-BIG, math.min(BIG, x)) end

-- A drawn coordinate: always finite (far-off values are pinned well outside the plot).
local function coord(v)
  if v ~= v then return 0 end
  return math.max(-1e5, math.min(1e5, v))
end

-- lo, hi widened so that hi - lo is a usable, finite width: a constant range, or one only a
-- few ulps wide (which float steps cannot walk), gets a band around it.
local function spread(lo, hi, d0)
  lo, hi = clampbig(lo), clampbig(hi)
  local scale = math.max(math.abs(lo), math.abs(hi))
  if not (hi - lo > 1e-12 * scale) then
    local d = math.max(scale * 0.1, d0 or 0.5)
    return clampbig(lo - d), clampbig(lo + d)
  end
  return lo, hi
end

local function basename(p)
  p = p:gsub("/+$", "")
  return p:match("([^/]+)$") or p
end

-- s cut to at most n characters (code points when s is valid UTF-8), with an ellipsis.
local function trunc(s, n)
  local len = utf8.len(s)
  if not len then return #s > n and (s:sub(1, n - 1) .. "…") or s end
  if len <= n then return s end
  return s:sub(1, utf8.offset(s, n) - 1) .. "…"
end

local file_exists = require("confit.cli").can_read
local show = require("confit.cli").show

-- Longest run or benchmark name shown (in code points); longer ones end in an ellipsis.
local NAME_MAX = 200

-- Short human form of a number for tables and labels.
local function num(x, digits)
  if type(x) ~= "number" then return tostring(x) end
  if math.type(x) == "integer" then return tostring(x) end
  if not finite(x) then return show(x) end   -- NaN as "nan" whatever its sign, as every message
  if x == math.floor(x) and math.abs(x) < 1e15 then return fmt("%d", math.tointeger(x)) end
  local s = fmt("%." .. (digits or 4) .. "g", x)
  return s
end

local function pct(x) return finite(x) and fmt("%.1f", 100 * x) or "–" end

-- Statistics -----------------------------------------------------------------------------------

-- Wilson score interval of k successes in n trials (z = 1.96 for 95%).
function M.wilson(k, n, z)
  z = z or 1.959963984540054
  if n <= 0 then return nil end
  local p = k / n
  local d = 1 + z * z / n
  local c = (p + z * z / (2 * n)) / d
  local h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
  return math.max(0, c - h), math.min(1, c + h)
end

-- Mean and 95% interval of per-question scores in [0, 1]: Wilson for 0/1 scores, else a
-- normal approximation over the scores (clipped to [0, 1]).
function M.score_interval(scores)
  local n = #scores
  if n == 0 then return nil end
  local sum, binary = 0, true
  for _, s in ipairs(scores) do
    sum = sum + s
    if s ~= 0 and s ~= 1 then binary = false end
  end
  local mean = sum / n
  if binary then
    local lo, hi = M.wilson(sum, n)
    return mean, lo, hi
  end
  local ss = 0
  for _, s in ipairs(scores) do ss = ss + (s - mean) ^ 2 end
  local sd = n > 1 and math.sqrt(ss / (n - 1)) or 0
  local h = 1.959963984540054 * sd / math.sqrt(n)
  return mean, math.max(0, mean - h), math.min(1, mean + h)
end

-- Per-benchmark accuracy of eval records: {name = {acc, lo, hi, n, kind}} where kind says
-- whether greedy correctness or the mean over samples (pass@1) was used.
function M.eval_accuracy(records)
  local by = {}
  local order = {}
  for _, r in ipairs(records or {}) do
    local b = tostring(r.benchmark or "all")
    local score, kind
    if type(r.greedy) == "table" and r.greedy.correct ~= nil then
      score, kind = r.greedy.correct == true and 1 or 0, "acc"
    elseif type(r.samples) == "table" and #r.samples > 0 then
      local c = 0
      for _, s in ipairs(r.samples) do if type(s) == "table" and s.correct == true then c = c + 1 end end
      score, kind = c / #r.samples, "pass@1"
    end
    if score then
      if not by[b] then by[b] = {scores = {}, kinds = {}}; order[#order + 1] = b end
      table.insert(by[b].scores, score)
      by[b].kinds[kind] = true
    end
  end
  local out = {}
  for _, b in ipairs(order) do
    local mean, lo, hi = M.score_interval(by[b].scores)
    out[b] = {acc = mean, lo = lo, hi = hi, n = #by[b].scores,
              kind = by[b].kinds.acc and (by[b].kinds["pass@1"] and "mixed" or "acc") or "pass@1"}
  end
  return out
end

-- summary.json in either accepted shape -> {benchmark = {before = {...}, after = {...}}}; the
-- single-benchmark shape ({"before", "after"} at the top) is named `name` (default "all").
function M.summary_benchmarks(summary, name)
  if type(summary) ~= "table" then return {} end
  if type(summary.benchmarks) == "table" then return summary.benchmarks end
  if type(summary.before) == "table" or type(summary.after) == "table" then
    return {[name or "all"] = {before = summary.before, after = summary.after}}
  end
  return {}
end

-- The docs/RUNDIR.md name of which metric k is a second name, or nil: rlsc's toy summaries hold
-- greedy_acc = acc, pass1_t05 = pass@1, pass<k> = pass@k and maj<n> = maj@n, confit.evaluate's
-- avg@n = pass@1.
function M.rundir_name(k)
  if k == "greedy_acc" then return "acc" end
  if k == "pass1_t05" or k:match("^avg@%d+$") then return "pass@1" end
  local kind, n = k:match("^(%a+)(%d+)$")
  if kind == "pass" or kind == "maj" then return kind .. "@" .. n end
  return nil
end

--- True when after[k] repeats a number after holds under its RUNDIR.md name too, and before
--- likewise (tables, {} when missing): that number is shown once, under RUNDIR.md's name (here
--- and in recipes/ablate.lua's results).
function M.second_name(k, after, before)
  local r = M.rundir_name(k)
  return r ~= nil and after[r] == after[k] and before[r] == before[k]
end

-- Numbers in a summary stage that are settings or bookkeeping, not outcomes (and the *_ci95
-- intervals of outcomes): the report's summary table and recipes/ablate.lua's results leave them
-- out of the metrics alike.
local NOT_METRICS = {n = true, correct = true, samples = true, resumed = true,
  generated_tokens = true, wall_s = true, tokens_per_s = true, temperature = true, top_p = true,
  top_k = true, seed = true, max_new_tokens = true, questions = true, step = true, steps = true}

--- Whether summary key k is an outcome (acc, pass@k, lengths, ...), not a setting, a count or a
--- timing of the stage (n, wall_s, temperature, resumed, ...) or an interval (*_ci95).
function M.is_metric(k)
  return type(k) == "string" and not NOT_METRICS[k] and not k:match("_ci95$")
end

-- A run's summary by benchmark, its single-benchmark summary named as load_run found.
local function run_summary(run)
  return M.summary_benchmarks(run.summary, run.summary_name)
end

-- The name of a single-benchmark summary: the benchmark its eval records all name (before and
-- after), else the one its before / after name (rlsc's), else the config's (`benchmark`, or a
-- `benchmarks` list of one), else "all". So a toy rlsc run is one row "toy-mixed", not "all"
-- beside the same numbers as "toy-mixed" (and ablate's results name it so too).
local function single_summary_name(run)
  local names, n = {}, 0
  for _, recs in ipairs({run.before or {}, run.after or {}}) do
    for _, rec in ipairs(recs) do
      local b = tostring(rec.benchmark or "all")
      if not names[b] then names[b] = true; n = n + 1 end
    end
  end
  if n == 0 and type(run.summary) == "table" then
    for _, stage in ipairs({"before", "after"}) do
      local s = run.summary[stage]
      local b = type(s) == "table" and s.benchmark
      if type(b) == "string" and b ~= "" and not names[b] then names[b] = true; n = n + 1 end
    end
  end
  if n == 1 then return (next(names)) end
  if n > 1 then return "all" end -- the summary aggregates several benchmarks
  local cfg = type(run.config) == "table" and run.config or {}
  local b = cfg.benchmark
  if type(b) ~= "string" and type(cfg.benchmarks) == "table" and #cfg.benchmarks == 1 then
    b = cfg.benchmarks[1]
  end
  if (type(b) == "string" and b ~= "") or math.type(b) == "integer" then return tostring(b) end
  return "all"
end

local function share(x) return finite(x) and x >= 0 and x <= 1 end

-- Accuracy of one run, phase ("before"/"after") and benchmark: {acc, lo, hi, n, source,
-- metric} or nil. metric is "acc" (greedy) or "pass@1" ("mixed" for eval files holding both);
-- want, when given, asks for that metric only. A summary value outside [0, 1] is not used:
-- problem(text) is told.
local function accuracy(run, phase, bench, want, problem)
  local sb = run_summary(run)[bench]
  local m = sb and sb[phase]
  local ev = run.acc[phase] and run.acc[phase][bench]
  if ev and want and ev.kind ~= want then ev = nil end
  if type(m) == "table" then
    local key
    for _, k in ipairs(want and {want} or {"acc", "pass@1"}) do
      if finite(m[k]) and not share(m[k]) and problem then
        problem(fmt("%s: summary.json %s.%s.%s = %s is outside [0, 1]; not used", run.name,
                    tostring(bench), phase, k, num(m[k])))
      end
      if not key and share(m[k]) then key = k end
    end
    if key then
      local r = {acc = m[key], n = finite(m.n) and m.n or nil, source = "summary " .. key, metric = key}
      local ci = m[key .. "_ci95"]
      -- (a zero-width one, a Student t interval of equal scores, says nothing: Wilson instead)
      if type(ci) == "table" and finite(ci[1]) and finite(ci[2]) and ci[1] <= r.acc
         and r.acc <= ci[2] and ci[1] < ci[2] then
        -- a share's interval ends in [0, 1] (an unclipped Student t interval may not)
        r.lo, r.hi = math.max(0, ci[1]), math.min(1, ci[2])
      elseif ev and ev.kind == key and math.abs(ev.acc - r.acc) < 1e-9 then
        r.lo, r.hi = ev.lo, ev.hi
      elseif math.type(m.n) == "integer" and m.n > 0 then
        r.lo, r.hi = M.wilson(math.floor(r.acc * m.n + 0.5), m.n)
      end
      return r
    end
  end
  if ev then
    return {acc = ev.acc, lo = ev.lo, hi = ev.hi, n = ev.n, source = "eval " .. ev.kind, metric = ev.kind}
  end
  return nil
end

-- Loading --------------------------------------------------------------------------------------

local function list_subdirs(dir)
  local out = {}
  for _, name in ipairs(require("confit.cli").list_dir(dir) or {}) do
    if name:sub(1, 1) ~= "." then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function is_run_dir(d)
  -- a run file there but not readable (a FIFO) still makes d a run directory: load_run says why
  local function there(p) local ok, why = file_exists(p); return ok or why ~= nil end
  return there(d .. "/config.json") or there(d .. "/steps.jsonl")
      or there(d .. "/eval_before.jsonl") or there(d .. "/summary.json")
end

-- A folder that recipes/eval.lua --out wrote: OUT/summary.json (every benchmark) and one run
-- folder OUT/<bench>/ per benchmark (a config.json of recipe "eval", or, with no config.json,
-- eval_<stage>.settings.json). Returns those folders (summary.json's config.benchmarks order,
-- then by name), or nil when d holds run files of its own (config.json, steps.jsonl, eval files),
-- is an ablate grid (grid.json: its points, rlsc --data runs, write eval settings files too; a
-- grid of them was read as an eval output before the twenty-fourth session), or has no such folder.
local function eval_output_runs(d)
  for _, f in ipairs({"config.json", "steps.jsonl", "eval_before.jsonl", "eval_after.jsonl", "grid.json"}) do
    if file_exists(d .. "/" .. f) then return nil end
  end
  local function is_eval_run(p)
    if file_exists(p .. "/config.json") then
      local cfg = jsonio.read_json(p .. "/config.json")
      return type(cfg) == "table" and cfg.recipe == "eval"
    end
    return file_exists(p .. "/eval_before.settings.json") or file_exists(p .. "/eval_after.settings.json")
  end
  local found = {}
  for _, name in ipairs(list_subdirs(d)) do
    if is_eval_run(d .. "/" .. name) then found[name] = true end
  end
  if next(found) == nil then return nil end
  local out, taken = {}, {}
  local top = jsonio.read_json(d .. "/summary.json")
  local order = type(top) == "table" and type(top.config) == "table" and top.config.benchmarks
  for _, name in ipairs(type(order) == "table" and order or {}) do
    if type(name) == "string" and found[name] and not taken[name] then
      out[#out + 1] = d .. "/" .. name; taken[name] = true
    end
  end
  for _, name in ipairs(list_subdirs(d)) do
    if found[name] and not taken[name] then out[#out + 1] = d .. "/" .. name end
  end
  return out
end

-- A grid's run "dir" must name a folder inside the grid: relative, no ".." component.
local function inside_grid(sub)
  if sub == "" or sub:sub(1, 1) == "/" then return false end
  for part in sub:gmatch("[^/]+") do if part == ".." then return false end end
  return sub:find("[^/.]") ~= nil -- not "." or "./"
end

-- What tells two spellings of one folder apart from two folders: its real path (links, "." and
-- ".." resolved), or the path tidied where it cannot be resolved (it does not exist).
local function folder_key(d)
  local real = require("confit").realpath(d)
  return real or "?" .. require("confit.cli").tidy_path(d)
end

-- Run directories named by a list of paths: a grid directory expands to its runs (grid.json's
-- order, else subdirectories holding run files, by name); anything else is taken as a run.
-- Second result: problems met in grid.json files (unreadable, wrong shape, a "dir" outside
-- the grid), as text lines. Third: the grid directories (those with a grid.json: ablate's).
-- Fourth: one line for each path given twice and each run reached twice (alone and inside its
-- grid, or by two spellings of one folder): counted once, where it came first.
function M.expand(dirs)
  local out, notes, grids, repeats = {}, {}, {}, {}
  local given, seen, told = {}, {}, {}
  local function add(run)
    local key = folder_key(run)
    if not seen[key] then
      seen[key] = run
      out[#out + 1] = run
    elseif not told[key] then
      told[key] = true
      local first = seen[key] ~= run and fmt(" (also as %s)", seen[key]) or ""
      repeats[#repeats + 1] = fmt("run %s given twice%s, counted once", run, first)
    end
  end
  for _, d in ipairs(dirs) do
    d = d:gsub("/+$", "")
    if d == "" then d = "/" end
    local key = folder_key(d)
    if given[key] then
      if not told[key] then
        local first = given[key] ~= d and fmt(" (also as %s)", given[key]) or ""
        repeats[#repeats + 1] = fmt("%s given twice%s, counted once", d, first)
        told[key] = true
      end
      goto next_dir
    end
    given[key] = d
    local evals = eval_output_runs(d)
    if evals then
      for _, e in ipairs(evals) do add(e) end
    elseif is_run_dir(d) then
      add(d)
    else
      local gpath = d .. "/grid.json"
      local grid, gerr
      if file_exists(gpath) then
        grids[#grids + 1] = d
        grid, gerr = jsonio.read_json(gpath)
        if grid == nil then
          notes[#notes + 1] = tostring(gerr) .. "; runs found by their folders instead"
        elseif type(grid) ~= "table" or type(grid.runs) ~= "table" then
          notes[#notes + 1] = gpath .. ": no \"runs\" list; runs found by their folders instead"
          grid = nil
        end
      end
      local found = false
      if grid then
        for i, r in ipairs(grid.runs) do
          local sub = type(r) == "table" and r.dir or r
          if type(sub) ~= "string" then
            notes[#notes + 1] = fmt("%s: runs[%d] has no \"dir\" string; skipped", gpath, i)
          elseif not inside_grid(sub) then
            notes[#notes + 1] = fmt("%s: runs[%d].dir '%s' is outside the grid; refused", gpath, i, sub)
          else
            add(d .. "/" .. sub); found = true
          end
        end
      end
      if not found then
        for _, name in ipairs(list_subdirs(d)) do
          if is_run_dir(d .. "/" .. name) then add(d .. "/" .. name); found = true end
        end
      end
      if not found then add(d) end -- shown as a run with no data
    end
    ::next_dir::
  end
  return out, notes, grids, repeats
end

-- Where an ablation grid's table of mean ± SD over seeds is (recipes/ablate.lua writes it).
local function grids_section(grids)
  local s = {}
  for _, g in ipairs(grids) do
    local there = file_exists(g .. "/results.md")
    -- ablate's grid.json names its recipe; toy_compare's holds axes and runs only, and its table
    -- goes to its --md file (the ablate advice was wrong for it)
    local gj = jsonio.read_json(g .. "/grid.json")
    local by_ablate = type(gj) == "table" and gj.recipe ~= nil
    if there or by_ablate then
      s[#s + 1] = fmt('<p>Ablation grid %s: the mean ± sample standard deviation over seeds per grid '
                      .. "point and benchmark is in %s/results.md and %s/results.csv%s.</p>", esc(g), esc(g), esc(g),
                      there and "" or " (not written yet: confit recipes/ablate.lua GRID.lua --report-only writes them)")
    else
      s[#s + 1] = fmt("<p>Grid %s: its table over seeds is where its maker wrote it (recipes/toy_compare.lua: "
                      .. "its --md file).</p>", esc(g))
    end
  end
  return table.concat(s, "\n")
end

-- The records of JSONL file path that are objects; each other one is noted with its line
-- (linenos: each record's, as jsonio.read_jsonl gives them); line[rec] = its line, for later notes.
local function objects_only(recs, linenos, path, note, line)
  if not recs then return nil end
  local keep = {}
  for i, r in ipairs(recs) do
    if type(r) == "table" and r[1] == nil then -- an object (a JSON array decodes to a list)
      keep[#keep + 1] = r
      line[r] = linenos[i]
    else
      note(fmt("%s:%s: not a JSON object; skipped", path, tostring(linenos[i] or "?")))
    end
  end
  return keep
end

-- Why eval record rec cannot be scored as it is, or nil: correct must be true or false (a 1 or
-- "yes" from another writer scored 0 without a word), each sample an object
local function eval_record_problem(rec)
  if type(rec.greedy) == "table" and rec.greedy.correct ~= nil and type(rec.greedy.correct) ~= "boolean" then
    return "greedy.correct is " .. tostring(rec.greedy.correct) .. ", not true or false"
  end
  if type(rec.samples) == "table" then
    for j, smp in ipairs(rec.samples) do
      if type(smp) ~= "table" then return fmt("samples[%d] is not an object", j) end
      if type(smp.correct) ~= "boolean" then
        return fmt("samples[%d].correct is %s, not true or false", j, tostring(smp.correct))
      end
    end
  end
  return nil
end

-- Read one run directory. Never raises for missing or malformed files: run.notes says why.
function M.load_run(dir)
  local run = {dir = dir, notes = {}, files = {}, acc = {}}
  local function note(s) run.notes[#run.notes + 1] = s end
  if not require("confit.cli").exists(dir) then note(dir .. ": no such directory") end
  local function load(file, reader, opts)
    local p = dir .. "/" .. file
    local there, why = file_exists(p)
    if not there and why then -- a FIFO, socket or device: never opened (the read would block)
      run.files[file] = "unreadable"; note(p .. ": " .. why); return nil
    end
    if not there then run.files[file] = "missing"; return nil end
    local v, err, where = reader(p, opts)
    if v == nil then run.files[file] = "unreadable"; note(err); return nil end
    run.files[file] = "ok"
    return v, where
  end
  run.config = load("config.json", jsonio.read_json)
  run.summary = load("summary.json", jsonio.read_json)
  -- a folder without any of a run's files (a typo'd path, a model folder): said, not a silent
  -- "no data" row (twenty-first session)
  if require("confit.cli").exists(dir) and not is_run_dir(dir) then
    note(dir .. ": holds none of a run's files (config.json, steps.jsonl, eval_*.jsonl, summary.json): "
         .. "a run not started yet, or not a run directory?")
  end
  local line = setmetatable({}, {__mode = "k"}) -- record -> its line in its file
  for _, k in ipairs({"steps", "before", "after"}) do
    local file = k == "steps" and "steps.jsonl" or ("eval_" .. k .. ".jsonl")
    -- a last line cut short (a writer still appending, or stopped by a full disk) is dropped, not
    -- the whole file; in an eval file (written whole, then renamed) that is damage: noted
    local recs, where = load(file, jsonio.read_jsonl, {partial_tail = true})
    if where and where.dropped and k ~= "steps" then
      note(fmt("%s/%s:%d: the last line is cut short; dropped (%d records kept)", dir, file, where.dropped, #recs))
    end
    run[k] = objects_only(recs, where and where.linenos or {}, dir .. "/" .. file, note, line)
  end
  local function is_object(v) return type(v) == "table" and v[1] == nil end
  -- before/after of one summary entry must be objects (an array's numbers are no metrics)
  local function check_phases(t, where)
    for _, phase in ipairs({"before", "after"}) do
      local v = t[phase]
      if v ~= nil and v ~= jsonio.null and not is_object(v) then
        note(fmt("%s/summary.json: %s%s is not an object; skipped", dir, where, phase))
        t[phase] = nil
      end
    end
  end
  if run.summary ~= nil and not is_object(run.summary) then
    -- ([1, 2, 3], a number, a string: "ok" in the runs table beside "no data: no summary.json")
    note(fmt("%s/summary.json: not a JSON object; skipped", dir))
    run.summary = nil
    run.files["summary.json"] = "unreadable"
  end
  local sb = type(run.summary) == "table" and run.summary.benchmarks
  if type(sb) == "table" and not is_object(sb) then
    note(fmt("%s/summary.json: benchmarks is not an object; skipped", dir))
    run.summary.benchmarks = nil
  elseif type(sb) == "table" then
    local names = {}
    for b in pairs(sb) do names[#names + 1] = b end
    table.sort(names, function(x, y) return tostring(x) < tostring(y) end)
    for _, b in ipairs(names) do
      if type(sb[b]) ~= "table" then
        note(fmt("%s/summary.json: benchmarks.%s is not an object; skipped", dir, tostring(b)))
        sb[b] = nil
      else
        check_phases(sb[b], "benchmarks." .. tostring(b) .. ".")
      end
    end
  elseif type(run.summary) == "table" then
    check_phases(run.summary, "")
  end
  -- a benchmark name must be a string (or a number); an object would show as a table address
  for _, k in ipairs({"before", "after"}) do
    if run[k] then
      local keep = {}
      for _, rec in ipairs(run[k]) do
        local b = rec.benchmark
        local why = not (b == nil or type(b) == "string" or type(b) == "number") and "benchmark is not a string"
                    or eval_record_problem(rec)
        if not why then keep[#keep + 1] = rec
        else
          note(fmt("%s/eval_%s.jsonl:%s: %s; record skipped", dir, k, tostring(line[rec] or "?"), why))
        end
      end
      run[k] = keep
    end
  end
  if type(run.config) ~= "table" and type(run.summary) == "table"
     and type(run.summary.config) == "table" then
    run.config = run.summary.config
  end
  if run.config ~= nil and type(run.config) ~= "table" then
    note("config.json: not an object"); run.config = nil
  end
  local name = type(run.config) == "table" and run.config.name
  run.name = trunc(type(name) == "string" and name ~= "" and name or basename(dir), NAME_MAX)
  run.acc.before = M.eval_accuracy(run.before)
  run.acc.after = M.eval_accuracy(run.after)
  if type(run.summary) == "table" and type(run.summary.benchmarks) ~= "table" then
    run.summary_name = single_summary_name(run)
  end
  return run
end

-- SVG plotting ---------------------------------------------------------------------------------

-- Round tick positions covering [lo, hi], about n of them, and the step between them.
-- Never more than MAX_TICKS: ranges a few ulps wide are widened first (spread), and ticks are
-- first + i * step, so a step below an ulp cannot stall the loop.
local MAX_TICKS = 50
function M.nice_ticks(lo, hi, n)
  n = n or 5
  if not finite(lo) then lo = 0 end
  if not finite(hi) then hi = lo end
  lo, hi = spread(lo, hi)
  local raw = (hi / n) - (lo / n) -- no overflow for lo, hi of opposite signs near the limit
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local f = raw / mag
  local step = (f < 1.5 and 1 or f < 3 and 2 or f < 7 and 5 or 10) * mag
  local ticks = {}
  if not (finite(step) and step > 0) then return {lo, hi}, hi - lo end
  local first = math.ceil(lo / step - 1e-9) * step
  for i = 0, MAX_TICKS - 1 do
    local t = first + i * step
    if not (finite(t) and t <= hi + step * 1e-9) then break end
    ticks[#ticks + 1] = math.abs(t) < step * 1e-9 and 0 or t
  end
  return ticks, step
end

local function tick_label(v, step)
  if v == 0 then return "0" end
  local a = math.abs(v)
  if a >= 1e5 or (a < 1e-3) then return (fmt("%.2g", v):gsub("e%+?(%-?)0*(%d)", "e%1%2")) end
  local d = math.max(0, -math.floor(math.log(step, 10) + 1e-9))
  return fmt("%." .. d .. "f", v)
end

-- y range of values, padded; a constant series gets a visible band around it.
local function padded_range(lo, hi, include_zero)
  if include_zero then lo, hi = math.min(lo, 0), math.max(hi, 0) end
  lo, hi = clampbig(lo), clampbig(hi)
  if hi - lo < 1e-12 * math.max(1, math.abs(lo), math.abs(hi)) then
    local d = math.abs(hi) > 0 and math.abs(hi) * 0.1 or 1
    return clampbig(lo - d), clampbig(hi + d)
  end
  local pad = (hi * 0.5 - lo * 0.5) * 0.12
  return clampbig(lo - pad), clampbig(hi + pad)
end

local function svg_open(w, h, label)
  return fmt('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d"'
             .. ' role="img" aria-label="%s" font-family="Helvetica, Arial, sans-serif"'
             .. ' font-size="11">', w, h, w, h, esc(label))
end

-- Axes, grid and tick labels; returns the SVG text and the x/y mapping functions.
local function axes(o)
  local L, R, T, B = o.left or 58, o.right or 12, o.top or 28, o.bottom or 40
  local pw, ph = o.w - L - R, o.h - T - B
  local xlo, xhi = spread(o.xlo, o.xhi)
  local ylo, yhi = spread(o.ylo, o.yhi)
  -- halves keep x - lo and hi - lo finite for any finite values; coord() pins the result
  local function X(x) return coord(L + (x * 0.5 - xlo * 0.5) / (xhi * 0.5 - xlo * 0.5) * pw) end
  local function Y(y) return coord(T + ph - (y * 0.5 - ylo * 0.5) / (yhi * 0.5 - ylo * 0.5) * ph) end
  local s = {}
  s[#s + 1] = fmt('<text x="%d" y="16" font-size="13" font-weight="bold" fill="#222">%s</text>',
                  L, esc(o.title))
  local yt, ystep = M.nice_ticks(ylo, yhi, 5)
  for _, v in ipairs(yt) do
    local y = Y(v)
    s[#s + 1] = fmt('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>', L, y, L + pw, y)
    s[#s + 1] = fmt('<text x="%.1f" y="%.1f" text-anchor="end" fill="#444">%s</text>', L - 5, y + 4,
                    tick_label(v, ystep))
  end
  local xt, xstep
  if o.integer_x then
    xt, xstep = M.nice_ticks(xlo, xhi, 6)
    if xstep < 1 then xt, xstep = {}, 1; for v = math.ceil(xlo), math.floor(xhi) do xt[#xt + 1] = v end end
  else
    xt, xstep = M.nice_ticks(xlo, xhi, 6)
  end
  for _, v in ipairs(xt) do
    local x = X(v)
    s[#s + 1] = fmt('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#666"/>', x, T + ph, x, T + ph + 4)
    s[#s + 1] = fmt('<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>', x, T + ph + 16,
                    tick_label(v, xstep))
  end
  s[#s + 1] = fmt('<path d="M%.1f %.1fV%.1fH%.1f" fill="none" stroke="#666"/>', L, T, T + ph, L + pw)
  if o.xlabel then
    s[#s + 1] = fmt('<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>',
                    L + pw / 2, o.h - 6, esc(o.xlabel))
  end
  if o.ylabel then
    s[#s + 1] = fmt('<text transform="translate(13 %.1f) rotate(-90)" text-anchor="middle" fill="#444">%s</text>',
                    T + ph / 2, esc(o.ylabel))
  end
  return table.concat(s, "\n"), X, Y, {L = L, T = T, pw = pw, ph = ph}
end

-- Legend rows under a plot: items {label, color} laid out left to right, wrapping at width.
-- Returns a function drawing it at a given y, and the height it takes.
local function legend_below(items, x0, width)
  local placed, x, row = {}, x0, 0
  for _, it in ipairs(items) do
    local label = trunc(it.label, 48)
    local iw = 28 + (utf8.len(label) or #label) * 6.1 + 14
    if x > x0 and x + iw > x0 + width then x, row = x0, row + 1 end
    placed[#placed + 1] = {x = x, row = row, label = label, color = it.color}
    x = x + iw
  end
  local lh = 15
  local height = #items > 0 and (row + 1) * lh + 6 or 0
  local function draw(y)
    local s = {}
    for _, p in ipairs(placed) do
      local yy = y + 4 + (p.row + 0.5) * lh
      s[#s + 1] = fmt('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>',
                      p.x, yy, p.x + 20, yy, p.color)
      s[#s + 1] = fmt('<text x="%.1f" y="%.1f" fill="#222">%s</text>', p.x + 25, yy + 4, esc(p.label))
    end
    return table.concat(s, "\n")
  end
  return draw, height
end

local function no_data_svg(w, h, title, why)
  return svg_open(w, h, title) .. "\n"
    .. fmt('<text x="58" y="16" font-size="13" font-weight="bold" fill="#222">%s</text>', esc(title))
    .. fmt('<rect x="58" y="28" width="%d" height="%d" fill="#fafafa" stroke="#ddd"/>', w - 70, h - 68)
    .. fmt('<text x="%d" y="%d" text-anchor="middle" fill="#999" font-size="13">no data%s</text>',
           (w - 12 + 58) // 2, h // 2, why and (" (" .. esc(why) .. ")") or "")
    .. "\n</svg>"
end

-- An axes chart (a: the options of axes()) with the legend rows of items {label, color} under
-- its plot area. Returns the SVG parts so far (the opening tag and the axes) for the caller to
-- add its marks to, the x/y mappings, and finish(), which adds the legend and the closing tag
-- and returns the SVG text.
local function legend_chart(a, items)
  local draw_legend, lh = legend_below(items, 58, a.w - 70)   -- axes()' default left and right
  local s = {svg_open(a.w, a.h + lh, a.title)}
  local ax, X, Y = axes(a)
  s[#s + 1] = ax
  local function finish()
    s[#s + 1] = draw_legend(a.h)
    s[#s + 1] = "</svg>"
    return table.concat(s, "\n")
  end
  return s, X, Y, finish
end

-- Line plot of series {name, color, xs, ys}; points with a non-finite y break the line.
function M.line_plot(o)
  local w, h = o.width or 350, o.height or 230
  local xlo, xhi, ylo, yhi = math.huge, -math.huge, math.huge, -math.huge
  local npts = 0
  for _, se in ipairs(o.series) do
    for i, x in ipairs(se.xs) do
      local y = se.ys[i]
      if finite(x) and finite(y) then
        npts = npts + 1
        xlo, xhi = math.min(xlo, x), math.max(xhi, x)
        ylo, yhi = math.min(ylo, y), math.max(yhi, y)
      end
    end
  end
  if npts == 0 then return no_data_svg(w, h, o.title, o.no_data) end
  xlo, xhi = spread(xlo, xhi, 1)
  ylo, yhi = padded_range(ylo, yhi, o.include_zero)
  -- the natural limits (0 and 1 for shares) trim the padding, unless values lie beyond them
  local clo = o.ymin and math.max(ylo, o.ymin) or ylo
  local chi = o.ymax and math.min(yhi, o.ymax) or yhi
  if chi - clo > 1e-12 * math.max(1, math.abs(clo), math.abs(chi)) then ylo, yhi = clo, chi end
  -- legend: the series that have data, under the axes
  local items = {}
  for _, se in ipairs(o.series) do
    for i, x in ipairs(se.xs) do
      if finite(x) and finite(se.ys[i]) then
        items[#items + 1] = {label = se.name, color = se.color}; break
      end
    end
  end
  local s, X, Y, finish = legend_chart({w = w, h = h, xlo = xlo, xhi = xhi, ylo = ylo, yhi = yhi,
                                        title = o.title, xlabel = o.xlabel, ylabel = o.ylabel,
                                        integer_x = o.integer_x},
                                       o.legend == false and {} or items)
  for _, se in ipairs(o.series) do
    local segs, cur, pts = {}, {}, {}
    for i, x in ipairs(se.xs) do
      local y = se.ys[i]
      if finite(x) and finite(y) then
        cur[#cur + 1] = fmt("%.1f,%.1f", X(x), Y(y))
        pts[#pts + 1] = {X(x), Y(y)}
      elseif #cur > 0 then segs[#segs + 1] = cur; cur = {} end
    end
    if #cur > 0 then segs[#segs + 1] = cur end
    for _, seg in ipairs(segs) do
      if #seg > 1 then
        s[#s + 1] = fmt('<polyline points="%s" fill="none" stroke="%s" stroke-width="1.8" stroke-linejoin="round"/>',
                        table.concat(seg, " "), se.color)
      end
    end
    if #pts <= 40 then
      for _, p in ipairs(pts) do
        s[#s + 1] = fmt('<circle cx="%.1f" cy="%.1f" r="2.4" fill="%s"/>', p[1], p[2], se.color)
      end
    end
  end
  return finish()
end

-- Histogram of several value lists on shared bins, each normalised to shares (outlined steps
-- with a light fill). series {name, color, values}.
function M.histogram(o)
  local w, h = o.width or 350, o.height or 230
  local lo, hi, n = math.huge, -math.huge, 0
  for _, se in ipairs(o.series) do
    for _, v in ipairs(se.values) do
      if finite(v) then n = n + 1; lo, hi = math.min(lo, v), math.max(hi, v) end
    end
  end
  if n == 0 then return no_data_svg(w, h, o.title, o.no_data) end
  local nb = o.bins or 20
  local bw
  if o.integer and math.abs(lo) < 2 ^ 50 and math.abs(hi) < 2 ^ 50 then
    -- whole-number bins centred on integers, so no bin holds more integers than another
    lo, hi = math.floor(lo), math.floor(hi)
    bw = math.max(1, math.ceil((hi - lo + 1) / nb))
    nb = math.tointeger(math.ceil((hi - lo + 1) / bw))
    lo = lo - 0.5
    hi = lo + nb * bw
  else
    -- (integers too large to count one by one are binned like reals)
    lo, hi = spread(lo, hi)
    bw = hi / nb - lo / nb
  end
  local hists, ymax = {}, 0
  for k, se in ipairs(o.series) do
    local counts, m = {}, 0
    for b = 1, nb do counts[b] = 0 end
    for _, v in ipairs(se.values) do
      if finite(v) then
        local b = math.max(1, math.min(nb, math.floor((v * 0.5 - lo * 0.5) / (bw * 0.5)) + 1))
        counts[b] = counts[b] + 1
        m = m + 1
      end
    end
    for b = 1, nb do
      counts[b] = m > 0 and counts[b] / m or 0
      ymax = math.max(ymax, counts[b])
    end
    hists[k] = {counts = counts, m = m}
  end
  local items = {}
  for k, se in ipairs(o.series) do
    local hh, mean = hists[k], 0
    for _, v in ipairs(se.values) do if finite(v) then mean = mean + v end end
    items[k] = {color = se.color,
                label = hh.m > 0 and fmt("%s (n=%d, mean %s)", se.name, hh.m, num(mean / hh.m, 3))
                        or fmt("%s (no data)", se.name)}
  end
  local s, X, Y, finish = legend_chart({w = w, h = h, xlo = lo, xhi = hi, ylo = 0, yhi = ymax * 1.12,
                                        title = o.title, xlabel = o.xlabel, ylabel = "share"}, items)
  for k, se in ipairs(o.series) do
    local hh = hists[k]
    if hh.m > 0 then
      local d = {fmt("M%.1f %.1f", X(lo), Y(0))}
      for b = 1, nb do
        d[#d + 1] = fmt("V%.1fH%.1f", Y(hh.counts[b]), X(lo + b * bw))
      end
      d[#d + 1] = fmt("V%.1fZ", Y(0))
      s[#s + 1] = fmt('<path d="%s" fill="%s" fill-opacity="0.18" stroke="%s" stroke-width="1.6"/>',
                      table.concat(d), se.color, se.color)
    end
  end
  return finish()
end

-- Dot-and-whisker chart of accuracy before (hollow) and after (filled) per run, 0-100%.
-- rows: {name, color, before = {acc, lo, hi}|nil, after = ...}
function M.accuracy_plot(o)
  local rows = o.rows
  local w = o.width or 560
  local rh = 34
  local label_w = 150
  local h = 44 + rh * #rows + 40
  local s = {svg_open(w, h, o.title)}
  local L, R, T = label_w, 20, 44
  local pw = w - L - R
  -- accuracies are shares; anything outside [0, 1] is pinned to the edge (the table flags it)
  local function X(v) return L + math.max(0, math.min(1, v)) * pw end
  s[#s + 1] = fmt('<text x="10" y="16" font-size="13" font-weight="bold" fill="#222">%s</text>', esc(o.title))
  s[#s + 1] = fmt('<circle cx="%d" cy="31" r="4.5" fill="#fff" stroke="#555" stroke-width="1.8"/>'
                  .. '<text x="%d" y="35" fill="#222">before</text>'
                  .. '<circle cx="%d" cy="31" r="4.5" fill="#555"/><text x="%d" y="35" fill="#222">after</text>'
                  .. '<text x="%d" y="35" fill="#666">whiskers: 95%% interval</text>',
                  L + 6, L + 15, L + 70, L + 79, L + 130)
  local bottom = T + rh * #rows
  for _, v in ipairs({0, 0.2, 0.4, 0.6, 0.8, 1.0}) do
    local x = X(v)
    s[#s + 1] = fmt('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e4e4e4"/>', x, T, x, bottom)
    s[#s + 1] = fmt('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%d%%</text>', x, bottom + 16,
                    math.floor(v * 100 + 0.5))
  end
  s[#s + 1] = fmt('<path d="M%d %dH%d" stroke="#666"/>', L, bottom, L + pw)
  s[#s + 1] = fmt('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">accuracy</text>', L + pw / 2, bottom + 32)
  for i, r in ipairs(rows) do
    local yc = T + (i - 0.5) * rh
    local name = trunc(r.name, 22)
    s[#s + 1] = fmt('<text x="%d" y="%.1f" text-anchor="end" fill="#222">%s</text>', L - 8, yc + 4, esc(name))
    local function mark(m, dy, hollow)
      if not (m and finite(m.acc)) then return end
      local y = yc + dy
      if finite(m.lo) and finite(m.hi) then
        s[#s + 1] = fmt('<path d="M%.1f %.1fH%.1fM%.1f %.1fV%.1fM%.1f %.1fV%.1f" stroke="%s" stroke-width="1.5"/>',
                        X(m.lo), y, X(m.hi), X(m.lo), y - 4, y + 4, X(m.hi), y - 4, y + 4, r.color)
      end
      if hollow then
        s[#s + 1] = fmt('<circle cx="%.1f" cy="%.1f" r="4.5" fill="#fff" stroke="%s" stroke-width="1.8"/>',
                        X(m.acc), y, r.color)
      else
        s[#s + 1] = fmt('<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s"/>', X(m.acc), y, r.color)
      end
    end
    if not r.before and not r.after then
      s[#s + 1] = fmt('<text x="%d" y="%.1f" fill="#999">no data</text>', L + 6, yc + 4)
    end
    mark(r.before, -6, true)
    mark(r.after, 6, false)
  end
  s[#s + 1] = "</svg>"
  return table.concat(s, "\n")
end

-- HTML sections --------------------------------------------------------------------------------

local CSS = [[
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1600px;line-height:1.4}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}
.grid{display:flex;flex-wrap:wrap;gap:14px}.grid>div{border:1px solid #eee;padding:6px;background:#fff}
table{border-collapse:collapse;font-size:12px;margin:4px 0 10px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.nodata{color:#999;font-style:italic}.warn{color:#b00}.diff td{background:#fff7e0}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.legend span{margin-right:16px;white-space:nowrap}.muted{color:#777;font-size:12px}
code{font-size:12px}
]]

local function legend_html(runs)
  local s = {'<p class="legend">'}
  for _, r in ipairs(runs) do
    s[#s + 1] = fmt('<span><i class="sw" style="background:%s"></i>%s</span>', r.color, esc(r.name))
  end
  s[#s + 1] = "</p>"
  return table.concat(s)
end

local function runs_section(runs)
  local s = {"<h2>Runs</h2>", "<table><tr><th>run</th><th>directory</th><th>config</th><th>steps</th>"
             .. "<th>eval before</th><th>eval after</th><th>summary</th><th>problems</th></tr>"}
  local function cell(r, file, count)
    local st = r.files[file]
    if st == "ok" then return count and fmt('<td class="n">%d</td>', count) or "<td>ok</td>" end
    if st == "unreadable" then return '<td class="warn">unreadable</td>' end
    return '<td class="nodata">missing</td>'
  end
  for _, r in ipairs(runs) do
    local probs = {}
    for _, n in ipairs(r.notes) do probs[#probs + 1] = esc(n) end
    s[#s + 1] = fmt('<tr><td><i class="sw" style="background:%s"></i>%s</td><td><code>%s</code></td>%s%s%s%s%s<td class="warn">%s</td></tr>',
                    r.color, esc(r.name), esc(r.dir), cell(r, "config.json"),
                    cell(r, "steps.jsonl", r.steps and #r.steps), cell(r, "eval_before.jsonl", r.before and #r.before),
                    cell(r, "eval_after.jsonl", r.after and #r.after), cell(r, "summary.json"),
                    table.concat(probs, "<br>"))
  end
  s[#s + 1] = "</table>"
  return table.concat(s, "\n")
end

local CURVES = {
  {key = "loss", title = "loss"},
  {key = "mean_confidence", title = "mean confidence p(y|x)"},
  {key = "entropy", title = "mean token entropy (nats)"},
  {key = "mean_length", title = "mean completion length (tokens)"},
  {key = "train_acc", title = "train accuracy (labels not used)", optional = true, ymin = 0, ymax = 1},
  {key = "weight_share", title = "share of weights > 1e-6", ymin = 0, ymax = 1},
  {key = "mean_logp", title = "mean sequence log p (nats)"},
  {key = "box_rate", title = "box rate", ymin = 0, ymax = 1},
  {key = "answer_diversity", title = "answer diversity (distinct answers / samples)", optional = true,
   ymin = 0, ymax = 1},
  {key = "tokens_per_s", title = "generated tokens / s", include_zero = true},
}

local function curves_section(runs)
  local s = {"<h2>Training curves</h2>"}
  local any = false
  for _, r in ipairs(runs) do if r.steps and #r.steps > 0 then any = true end end
  if not any then
    s[#s + 1] = '<p class="nodata">no data: no run has steps.jsonl</p>'
    return table.concat(s, "\n")
  end
  s[#s + 1] = legend_html(runs)
  s[#s + 1] = '<div class="grid">'
  for _, c in ipairs(CURVES) do
    local series, has = {}, false
    for _, r in ipairs(runs) do
      local xs, ys = {}, {}
      for i, st in ipairs(r.steps or {}) do
        xs[i] = finite(st.step) and st.step or i
        ys[i] = finite(st[c.key]) and st[c.key] or (0 / 0)
        if finite(st[c.key]) then has = true end
      end
      series[#series + 1] = {name = r.name, color = r.color, xs = xs, ys = ys}
    end
    if has or not c.optional then
      s[#s + 1] = "<div>" .. M.line_plot({title = c.title, series = series, xlabel = "step",
                                          integer_x = true, ymin = c.ymin, ymax = c.ymax,
                                          include_zero = c.include_zero,
                                          no_data = "no '" .. c.key .. "' in steps.jsonl"}) .. "</div>"
    end
  end
  s[#s + 1] = "</div>"
  return table.concat(s, "\n")
end

-- Benchmarks named anywhere in the runs, in first-seen order (summary first, then eval files).
local function benchmark_names(runs)
  local seen, order = {}, {}
  local function add(b) if not seen[b] then seen[b] = true; order[#order + 1] = b end end
  for _, r in ipairs(runs) do
    local sb = run_summary(r)
    local names = {}
    for b in pairs(sb) do names[#names + 1] = b end
    table.sort(names, function(x, y) return tostring(x) < tostring(y) end)
    for _, b in ipairs(names) do add(b) end
    for _, recs in ipairs({r.before or {}, r.after or {}}) do
      for _, rec in ipairs(recs) do add(tostring(rec.benchmark or "all")) end
    end
  end
  return order
end

local function accuracy_section(runs)
  local s = {"<h2>Accuracy before and after</h2>"}
  local benches = benchmark_names(runs)
  if #benches == 0 then
    s[#s + 1] = '<p class="nodata">no data: no summary.json or eval files</p>'
    return table.concat(s, "\n")
  end
  s[#s + 1] = '<div class="grid">'
  local table_rows, problems, seen_problem = {}, {}, {}
  local function problem(text)
    if not seen_problem[text] then seen_problem[text] = true; problems[#problems + 1] = esc(text) end
  end
  for _, b in ipairs(benches) do
    local rows = {}
    for _, r in ipairs(runs) do
      local before, after = accuracy(r, "before", b, nil, problem), accuracy(r, "after", b, nil, problem)
      -- one row compares one metric: when the phases' first choices differ, look for the
      -- other phase's metric on each side; failing that, no change is given
      local same = not (before and after) or before.metric == after.metric
      if not same then
        local a2 = accuracy(r, "after", b, before.metric)
        local b2 = not a2 and accuracy(r, "before", b, after.metric)
        if a2 then after, same = a2, true elseif b2 then before, same = b2, true end
      end
      if not same then
        problem(fmt("%s, %s: before is %s and after is %s; not compared", r.name, tostring(b),
                    before.source, after.source))
      end
      rows[#rows + 1] = {name = r.name, color = r.color, before = before, after = after}
      if before or after then
        local function ci(m)
          return (m and finite(m.lo)) and fmt("[%s, %s]", pct(m.lo), pct(m.hi)) or ""
        end
        local delta = (before and after and same) and fmt("%+.1f", 100 * (after.acc - before.acc)) or "–"
        local source = (after or before).source
        if before and after and before.source ~= after.source then
          source = "before: " .. before.source .. "; after: " .. after.source
        end
        table_rows[#table_rows + 1] = fmt(
          '<tr><td>%s</td><td><i class="sw" style="background:%s"></i>%s</td><td class="n">%s</td><td class="n">%s</td>'
          .. '<td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td>%s</td></tr>',
          esc(trunc(tostring(b), NAME_MAX)), r.color, esc(r.name), before and pct(before.acc) or "–", ci(before),
          after and pct(after.acc) or "–", ci(after), delta,
          num((after and after.n) or (before and before.n) or "–"),
          esc(source))
      end
    end
    s[#s + 1] = "<div>" .. M.accuracy_plot({title = trunc(tostring(b), NAME_MAX), rows = rows}) .. "</div>"
  end
  s[#s + 1] = "</div>"
  s[#s + 1] = "<table><tr><th>benchmark</th><th>run</th><th>before %</th><th>95% interval</th><th>after %</th>"
              .. "<th>95% interval</th><th>change (points)</th><th>n</th><th>source</th></tr>"
  s[#s + 1] = table.concat(table_rows, "\n") .. "</table>"
  if #problems > 0 then s[#s + 1] = '<p class="warn">' .. table.concat(problems, "<br>") .. "</p>" end
  return table.concat(s, "\n")
end

-- Other summary metrics (pass@k, maj@n, lengths, box rate) as one table; a number a summary holds
-- under two names (toy rlsc: maj4 and maj@4) once, under RUNDIR.md's (M.second_name). Settings
-- and bookkeeping (M.is_metric false: n, wall_s, resumed, temperature, ...) go to a second table:
-- beside the outcomes a resumed stage's "generated_tokens 0 -> 128" read like a change
-- (twenty-fourth session).
local function metrics_section(runs)
  local rows, brows = {}, {}
  for _, r in ipairs(runs) do
    local sb = run_summary(r)
    local names = {}
    for b in pairs(sb) do names[#names + 1] = b end
    table.sort(names, function(x, y) return tostring(x) < tostring(y) end)
    for _, b in ipairs(names) do
      local keys, seen = {}, {}
      for _, phase in ipairs({"before", "after"}) do
        if type(sb[b][phase]) == "table" then
          for k, v in pairs(sb[b][phase]) do
            if finite(v) and not seen[k] then seen[k] = true; keys[#keys + 1] = k end
          end
        end
      end
      table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
      local before = type(sb[b].before) == "table" and sb[b].before or {}
      local after = type(sb[b].after) == "table" and sb[b].after or {}
      for _, k in ipairs(keys) do
        local bv, av = before[k], after[k]
        if type(k) == "string" and M.second_name(k, after, before) then goto next end
        local list = M.is_metric(k) and rows or brows
        list[#list + 1] = fmt('<tr><td><i class="sw" style="background:%s"></i>%s</td><td>%s</td><td>%s</td>'
                              .. '<td class="n">%s</td><td class="n">%s</td></tr>',
                              r.color, esc(r.name), esc(trunc(tostring(b), NAME_MAX)), esc(k),
                              finite(bv) and num(bv) or "–",
                              finite(av) and num(av) or "–")
        ::next::
      end
    end
  end
  if #rows + #brows == 0 then return "<h2>Summary metrics</h2>\n<p class=\"nodata\">no data: no summary.json</p>" end
  local head = "<table><tr><th>run</th><th>benchmark</th><th>%s</th><th>before</th><th>after</th></tr>\n"
  local out = {"<h2>Summary metrics</h2>"}
  out[#out + 1] = #rows > 0 and (fmt(head, "metric") .. table.concat(rows, "\n") .. "</table>")
                  or '<p class="nodata">no outcome metrics</p>'
  if #brows > 0 then
    out[#out + 1] = "<h3>Settings and bookkeeping of each stage</h3>\n<p>Counts, timings and settings of the "
                    .. "invocation that made the stage (a resumed stage counts only what it generated itself), "
                    .. "and intervals: not changes made by training.</p>"
    out[#out + 1] = fmt(head, "key") .. table.concat(brows, "\n") .. "</table>"
  end
  return table.concat(out, "\n")
end

-- Values of one completion field over a run's eval records: sampled completions, or the
-- greedy ones where nothing was sampled.
local function eval_values(records, field)
  local out = {}
  for _, rec in ipairs(records or {}) do
    local samples = type(rec.samples) == "table" and #rec.samples > 0 and rec.samples
    if samples then
      for _, c in ipairs(samples) do
        if type(c) == "table" and finite(c[field]) then out[#out + 1] = c[field] end
      end
    elseif type(rec.greedy) == "table" and finite(rec.greedy[field]) then
      out[#out + 1] = rec.greedy[field]
    end
  end
  return out
end

local function histogram_section(runs, title, field, xlabel, note, opts)
  local s = {"<h2>" .. esc(title) .. "</h2>", '<p class="muted">' .. note .. "</p>"}
  local any = false
  for _, r in ipairs(runs) do if r.before or r.after then any = true end end
  if not any then
    s[#s + 1] = '<p class="nodata">no data: no eval_before.jsonl or eval_after.jsonl</p>'
    return table.concat(s, "\n")
  end
  s[#s + 1] = '<div class="grid">'
  local without = {}
  for _, r in ipairs(runs) do
    if not (r.before or r.after) then without[#without + 1] = esc(r.name) end
  end
  for _, r in ipairs(runs) do
    if r.before or r.after then
      local series = {{name = "before", color = BEFORE, values = eval_values(r.before, field)},
                      {name = "after", color = AFTER, values = eval_values(r.after, field)}}
      s[#s + 1] = "<div>" .. M.histogram({title = r.name, xlabel = xlabel, bins = opts.bins,
                                          integer = opts.integer, series = series,
                                          no_data = "no '" .. field .. "' in the eval files"})
                  .. "</div>"
    end
  end
  s[#s + 1] = "</div>"
  if #without > 0 then
    s[#s + 1] = '<p class="nodata">no data (no eval files): ' .. table.concat(without, ", ") .. "</p>"
  end
  return table.concat(s, "\n")
end

local function scalar_text(x)
  if type(x) == "number" then return num(x, 6) end
  if x == jsonio.null then return "null" end
  return tostring(x)
end

-- Keys in a fixed order (numbers first, then strings), so flattening never depends on pairs().
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y)
    local tx, ty = type(x) == "number", type(y) == "number"
    if tx ~= ty then return tx end
    if tx then return x < y end
    return tostring(x) < tostring(y)
  end)
  return keys
end

-- Config as dotted key -> text. Two paths giving one dotted key ({"a.b":1} and {"a":{"b":2}})
-- keep the first in key order and list the rest as "KEY (2)", ...; dups collects those keys.
local function flatten(t, prefix, out, dups)
  out, dups = out or {}, dups or {}
  local function put(key, text)
    if out[key] == nil then out[key] = text; return end
    local i = 2
    while out[key .. " (" .. i .. ")"] ~= nil do i = i + 1 end
    out[key .. " (" .. i .. ")"] = text
    dups[#dups + 1] = key
  end
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    local key = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
    if type(v) == "table" and next(v) ~= nil then
      local is_list = #v > 0
      local all_scalar = true
      for _, x in pairs(v) do if type(x) == "table" then all_scalar = false end end
      if is_list and all_scalar then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = scalar_text(x) end
        put(key, "[" .. table.concat(parts, ", ") .. "]")
      else
        flatten(v, key, out, dups)
      end
    elseif type(v) == "table" then put(key, "[]")
    else put(key, scalar_text(v)) end
  end
  return out, dups
end
M.flatten = flatten

local function config_section(runs)
  local s = {"<h2>Configuration</h2>"}
  local flats, dups = {}, {}
  for i, r in ipairs(runs) do
    if type(r.config) == "table" then flats[i], dups[i] = flatten(r.config) end
  end
  if #runs > 1 then
    s[#s + 1] = '<p class="muted">Highlighted rows differ between the runs that have a config.</p>'
  end
  s[#s + 1] = '<div class="grid">'
  for i, r in ipairs(runs) do
    s[#s + 1] = fmt('<div><h3><i class="sw" style="background:%s"></i>%s</h3>', r.color, esc(r.name))
    local f = flats[i]
    if not f then
      s[#s + 1] = '<p class="nodata">no data: no config.json</p></div>'
    else
      local keys = {}
      for k in pairs(f) do keys[#keys + 1] = k end
      table.sort(keys)
      s[#s + 1] = "<table><tr><th>key</th><th>value</th></tr>"
      for _, k in ipairs(keys) do
        local differs = false
        for j = 1, #runs do
          if j ~= i and flats[j] and flats[j][k] ~= f[k] then differs = true end
        end
        local v = f[k]
        v = trunc(v, 120)
        s[#s + 1] = fmt('<tr%s><td><code>%s</code></td><td>%s</td></tr>', differs and ' class="diff"' or "",
                        esc(k), esc(v))
      end
      s[#s + 1] = "</table>"
      if #dups[i] > 0 then
        s[#s + 1] = '<p class="warn">keys that collide once flattened (shown as KEY (2), ...): '
                    .. esc(table.concat(dups[i], ", ")) .. "</p>"
      end
      s[#s + 1] = "</div>"
    end
  end
  s[#s + 1] = "</div>"
  return table.concat(s, "\n")
end

-- Rendering ------------------------------------------------------------------------------------

-- HTML text for run directories (paths; grid directories expand) or already loaded runs.
-- opts.title sets the page title; opts.grids names grid directories (M.expand's third result)
-- whose runs came loaded, to point to their results.md.
function M.render(dirs_or_runs, opts)
  opts = opts or {}
  if type(dirs_or_runs) == "string" then dirs_or_runs = {dirs_or_runs} end   -- one folder
  if type(dirs_or_runs) ~= "table" then
    error("report: expected a list of run folders (or one folder), got " .. tostring(dirs_or_runs), 2)
  end
  local runs = {}
  local dirs = {}
  for i, x in ipairs(dirs_or_runs) do
    if type(x) == "table" then
      if type(x.dir) ~= "string" or type(x.notes) ~= "table" or type(x.files) ~= "table" then
        error(("report: entry %d is a table but not a run of report.load_run (dir, notes, files)"):format(i), 2)
      end
      runs[#runs + 1] = x
    elseif type(x) == "string" then dirs[#dirs + 1] = x
    else error(("report: entry %d must be a run folder (a string), got %s"):format(i, type(x)), 2) end
  end
  local expanded, grid_notes, grids = M.expand(dirs)
  for _, d in ipairs(opts.grids or {}) do grids[#grids + 1] = d end
  for _, d in ipairs(expanded) do runs[#runs + 1] = M.load_run(d) end
  if #runs == 0 then error("report: no run directories given", 2) end
  local notes = {}
  for _, n in ipairs(grid_notes) do notes[#notes + 1] = esc(n) end
  for _, n in ipairs(opts.notes or {}) do notes[#notes + 1] = esc(n) end
  local names = {}
  for i, r in ipairs(runs) do
    r.color = M.palette[(i - 1) % #M.palette + 1]
    r.name = trunc(tostring(r.name), NAME_MAX)
    if names[r.name] then r.name = r.name .. " (" .. trunc(r.dir, NAME_MAX) .. ")" end
    names[r.name] = true
  end
  local title = opts.title or (#runs == 1 and ("confit report: " .. runs[1].name)
                               or fmt("confit report: %d runs", #runs))
  local body = {
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    "<title>" .. esc(title) .. "</title>",
    "<style>" .. CSS .. "</style></head><body>",
    "<h1>" .. esc(title) .. "</h1>",
    '<p class="muted">Run directories as in docs/RUNDIR.md. Intervals are 95% (Wilson for '
      .. "0/1 outcomes, normal approximation over per-question means otherwise).</p>",
    runs_section(runs),
    grids_section(grids),
    #notes > 0 and ('<p class="warn">' .. table.concat(notes, "<br>") .. "</p>") or "",
    curves_section(runs),
    accuracy_section(runs),
    metrics_section(runs),
    histogram_section(runs, "Response length", "length", "completion length (tokens)",
                      "Share of sampled completions (greedy where none were sampled) per length bin.",
                      {bins = 24, integer = true}),
    histogram_section(runs, "Sequence log-probability", "logprob", "log p(y|x) (nats, temperature 1)",
                      "Distribution of the summed completion log-probability before and after "
                      .. "training (the paper's Figure 1b): confidence sharpening moves mass to the right.",
                      {bins = 24}),
    config_section(runs),
    "</body></html>",
    "",
  }
  return table.concat(body, "\n")
end

-- Render and write atomically. true, or nil and a message.
function M.write(out_path, dirs_or_runs, opts)
  local html = M.render(dirs_or_runs, opts)
  return jsonio.write_text_atomic(out_path, html)
end

return M
