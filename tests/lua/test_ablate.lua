-- Tests of recipes/ablate.lua: grid expansion and directory names, flags, skipping finished
-- runs, failures, results.csv / results.md with mean ± sample std over seeds (hand-computed),
-- the subprocess runner against a stand-in recipe, the command line, and (when the toy model
-- and recipes/rlsc.lua are there) one tiny real RLSC run.
local H = dofile("tests/lua/harness.lua")
local ablate = dofile("recipes/ablate.lua")
local jsonio = require "confit.jsonio"

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "'"))
local EXE = arg and arg[-1] or "confit"

local read, write = H.read, H.write

local function quiet() end

-- Lines of a CSV text split into fields (no quoted commas in these tests).
local function csv_rows(text)
  local rows = {}
  for line in text:gmatch("[^\n]+") do
    local r = {}
    for f in (line .. ","):gmatch("([^,]*),") do r[#r + 1] = f end
    rows[#rows + 1] = r
  end
  local head = rows[1]
  local out = {}
  for i = 2, #rows do
    local o = {}
    for j, h in ipairs(head) do o[h] = rows[i][j] end
    out[#out + 1] = o
  end
  return out, head
end

H.case("grid expansion, directory names, groups and flags", function()
  local spec = ablate.check({
    base = {steps = 2, questions_per_step = 4, verbose = true, quiet = false},
    grid = {method = {"l1", "l2"}, alpha = {0, 0.1}, seed = {1, 2, 3}, lr = {1e-5}},
    out = TMP .. "/g1"})
  local runs, names = ablate.expand(spec)
  H.eq(#runs, 12, "2 x 2 x 3 x 1 runs")
  H.eq(table.concat(names, " "), "alpha lr method seed", "axes in byte order")
  H.eq(runs[1].dir, "alpha=0,lr=1e-05,method=l1,seed=1")
  H.eq(runs[2].dir, "alpha=0,lr=1e-05,method=l1,seed=2", "the last axis varies fastest")
  H.eq(runs[12].dir, "alpha=0.1,lr=1e-05,method=l2,seed=3")
  H.eq(runs[12].group, "alpha=0.1,lr=1e-05,method=l2", "group drops the seed")
  local dirs = {}
  for _, r in ipairs(runs) do
    H.ok(not dirs[r.dir], "unique dir " .. r.dir); dirs[r.dir] = true
    H.ok(not r.dir:find("/"), "no slash")
  end
  local argv = ablate.flags(spec, runs[7], "OUT/x")
  H.eq(table.concat(argv, " "), "--out OUT/x --alpha 0.1 --lr 1e-05 --method l1 "
       .. "--questions-per-step 4 --seed 1 --steps 2 --verbose",
       "sorted flags, true is bare, false omitted")
  H.eq(ablate.format_value(0.1), "0.1"); H.eq(ablate.format_value(3e-5), "3e-05")
  H.eq(ablate.format_value(2), "2"); H.eq(ablate.format_value(2.0), "2")
  H.eq(ablate.format_value(1 / 3), "0.3333333333333333")
  -- a scalar axis is one value
  local s2 = ablate.check({grid = {n = 8, seed = {1, 2}}})
  H.eq(#ablate.expand(s2), 2)
end)

H.case("grid checks are user errors", function()
  local function err(spec) local _, e = pcall(ablate.check, spec); return tostring(e) end
  H.ok(err({grid = {}}):find("non%-empty"), "empty grid")
  H.ok(err({grid = {alpha = {}}}):find("no values"), "empty axis")
  H.ok(err({grid = {model = {"a/b"}}}):find("directory name"), "slash in a value")
  H.ok(err({grid = {alpha = {0, 0}}}):find("repeats"), "repeated value")
  H.ok(err({grid = {alpha = {{}}}}):find("strings, numbers or booleans"), "table value")
  H.ok(err(7):find("must return a table"), "not a table")
  -- (sixteenth session) a hole ran only the values before it; a misspelt key was ignored
  H.ok(err({grid = {seed = {1, nil, 3}}}):find("axis seed has a hole"), "a nil in an axis")
  H.ok(err({grid = {seed = {1}}, metric = {"acc"}}):find("unknown key metric"), "a misspelt key")
  H.ok(err({grid = {seed = {1}}, out = 5}):find("out must be a folder path"), "out not a string")
  H.ok(err({grid = {seed = {1, 2, x = 3}}}):find("must be a list of values, got the key x"), "a keyed axis")
  local ok, e = pcall(ablate.check, {grid = {alpha = {}}})
  H.ok(not ok and getmetatable(e) == ablate.UserError, "raised as a user error")
end)

-- A fake runner writing summary.json from the parameters:
--   after.acc = 0.5 + alpha + 0.1 [l2] + 0.01 seed, before.acc = 0.5
--   after.mean_length = 100 + 10 seed, before.mean_length = 100
local function fake_runner(calls, fail_dir)
  return function(run)
    calls[#calls + 1] = run.dir
    if run.dir == fail_dir then return nil, "boom" end
    local p = run.params
    local acc = 0.5 + p.alpha + (p.method == "l2" and 0.1 or 0) + 0.01 * p.seed
    jsonio.write_json_atomic(run.path .. "/summary.json", {
      before = {acc = 0.5, mean_length = 100, n = 30},
      after = {acc = acc, acc_ci95 = {acc - 0.1, acc + 0.1}, mean_length = 100 + 10 * p.seed,
               n = 30, ["pass@1"] = acc / 2},
      config = {alpha = p.alpha}})
    return true
  end
end

H.case("running a grid: skip finished, failures, results with mean ± sample std", function()
  local out = TMP .. "/g2"
  local spec = ablate.check({grid = {method = {"l1", "l2"}, alpha = {0, 0.1}, seed = {1, 2, 3}},
                             out = out})
  local calls = {}
  local fail_dir = "alpha=0,method=l2,seed=3"
  local res = ablate.run_grid(spec, {runner = fake_runner(calls, fail_dir), say = quiet})
  H.eq(#calls, 12); H.eq(res.ran, 11); H.eq(res.skipped, 0); H.eq(#res.failed, 1)
  H.eq(res.failed[1].dir, fail_dir); H.eq(res.failed[1].why, "boom")
  local grid = assert(jsonio.read_json(out .. "/grid.json"))
  H.eq(#grid.runs, 12); H.eq(grid.runs[1].dir, "alpha=0,method=l1,seed=1")
  H.eq(#grid.axes.seed, 3); H.eq(grid.runs[4].params.alpha, 0)
  ablate.write_results(spec, res.runs, out, res.failed)
  local rows, head = csv_rows(assert(read(out .. "/results.csv")))
  H.eq(table.concat(head, ","), "alpha,method,benchmark,runs,planned,acc_mean,acc_std,acc_delta_mean,"
       .. "acc_delta_std,pass@1_mean,pass@1_std,pass@1_delta_mean,pass@1_delta_std,mean_length_mean,"
       .. "mean_length_std,mean_length_delta_mean,mean_length_delta_std", "CSV header")
  H.eq(#rows, 4, "one row per grid point without the seed")
  local r = rows[3]       -- alpha=0.1, method=l1: acc 0.61, 0.62, 0.63
  H.eq(r.alpha, "0.1"); H.eq(r.method, "l1"); H.eq(r.benchmark, "all"); H.eq(r.runs, "3")
  H.near(tonumber(r.acc_mean), 0.62, 1e-9); H.near(tonumber(r.acc_std), 0.01, 1e-9, "sample std")
  H.near(tonumber(r.acc_delta_mean), 0.12, 1e-9); H.near(tonumber(r.acc_delta_std), 0.01, 1e-9)
  H.near(tonumber(r.mean_length_mean), 120, 1e-9); H.near(tonumber(r.mean_length_std), 10, 1e-9)
  H.near(tonumber(r.mean_length_delta_mean), 20, 1e-9)
  H.eq(r["pass@1_delta_mean"], "", "no before value, no delta")
  local f = rows[2]       -- alpha=0, method=l2: seed 3 failed; acc 0.61, 0.62
  H.eq(f.runs, "2"); H.eq(f.planned, "3")
  H.near(tonumber(f.acc_mean), 0.615, 1e-9)
  H.near(tonumber(f.acc_std), math.sqrt(2 * 0.005 ^ 2), 1e-9, "sample std of two")
  local md = assert(read(out .. "/results.md"))
  H.ok(md:find("| 0.1 | l1 | all | 3 | 0.620 ± 0.010 (Δ +0.120 ± 0.010) |", 1, true), md)
  H.ok(md:find("120.0 ± 10.0 (Δ +20.0 ± 10.0)", 1, true), "length cell")
  -- (twenty-second session, a review's finding) the sampled completions' length had 3 decimals
  H.eq(ablate.cell("sample_mean_length", {mean = 57.25, std = 1.5}), "57.2 ± 1.5", "a sampled length")
  H.eq(ablate.cell("sample_box_rate", {mean = 0.25}), "0.250", "a rate")
  H.ok(md:find("| 0 | l2 | all | 2 of 3 | 0.615 ± 0.007 (Δ +0.115 ± 0.007) |", 1, true), "partial row")
  H.ok(md:find("sample standard deviation (n − 1 denominator)", 1, true), "says which spread")
  H.ok(md:find("`" .. fail_dir .. "`: boom", 1, true), "lists the failed run")
  -- second invocation: only the failed run is tried again; it left a checkpoint, so --resume
  os.execute(("mkdir -p %q"):format(out .. "/" .. fail_dir .. "/checkpoint-1"))
  jsonio.write_json_atomic(out .. "/" .. fail_dir .. "/checkpoint-1/trainer_state.json", {step = 1})
  calls = {}
  local argv
  local inner = fake_runner(calls)
  res = ablate.run_grid(spec, {runner = function(r, ctx) argv = r.argv; return inner(r, ctx) end, say = quiet})
  H.eq(#calls, 1); H.eq(calls[1], fail_dir); H.eq(res.skipped, 11); H.eq(res.ran, 1)
  H.eq(argv[#argv], "--resume", "a run that left checkpoints resumes")
  ablate.write_results(spec, res.runs, out, res.failed)
  rows = csv_rows(assert(read(out .. "/results.csv")))
  H.eq(rows[2].runs, "3")
  H.ok(not read(out .. "/results.md"):find("Failed", 1, true), "no failures listed now")
  -- a wrapper of rlsc (its own file name) resumes too: it failed at that point on every rerun,
  -- told to pass --resume, which ablate gave no way to do
  local wrapper = TMP .. "/mine.lua"
  H.write(wrapper, 'return require("confit.cli").main("mine", dofile("recipes/rlsc.lua"))\n')
  local specw = ablate.check({recipe = wrapper, grid = {alpha = {0}, seed = {1}}, out = TMP .. "/gw"})
  os.execute(("mkdir -p %q"):format(TMP .. "/gw/alpha=0,seed=1/checkpoint-2"))
  jsonio.write_json_atomic(TMP .. "/gw/alpha=0,seed=1/checkpoint-2/trainer_state.json", {step = 2})
  argv = nil
  ablate.run_grid(specw, {runner = function(r, ctx) argv = r.argv; return fake_runner({})(r, ctx) end, say = quiet})
  H.eq(argv and argv[#argv], "--resume", "a wrapper's run that left checkpoints resumes")
  -- a runner that returns success without writing summary.json counts as failed
  local spec3 = ablate.check({grid = {alpha = {1}}, out = TMP .. "/g3"})
  local r3 = ablate.run_grid(spec3, {runner = function() return true end, say = quiet})
  H.eq(#r3.failed, 1); H.ok(r3.failed[1].why:find("summary.json", 1, true), r3.failed[1].why)
end)

H.case("a method of one's own's option set for every run (base, --set method_opt=K=V); not an axis", function()
  -- (twenty-fourth session) --method-opt KEY=VALUE reaches a method of one's own through rlsc
  local wrapper = TMP .. "/thr.lua"
  H.write(wrapper, 'local rl = require "confit.rl"\n'
          .. 'rl.register_weighted("thr24", function(lpv, _, o) local w = {} for i = 1, #lpv do w[i] = o.t end return w end)\n'
          .. 'return require("confit.cli").main("thr", dofile("recipes/rlsc.lua"))\n')
  local spec = ablate.check({recipe = wrapper, base = {method = "thr24", method_opt = "t=3"}, grid = {seed = {1, 2}},
                             out = TMP .. "/gmo"})
  local runs = ablate.expand(spec)
  H.eq(table.concat(ablate.flags(spec, runs[2], "D"), " "), "--out D --method thr24 --method-opt t=3 --seed 2")
  local set = ablate.apply_sets({recipe = wrapper, base = {method = "thr24"}, grid = {seed = {1}}}, {"method_opt=t=2"}, "g.lua")
  H.eq(#set.base.method_opt, 1, "--set method_opt=t=2: a repeatable flag's list"); H.eq(set.base.method_opt[1], "t=2")
  -- the recipe's check runs on every point first: a built-in method takes none
  H.ok(pcall(ablate.check_recipe, spec, "g.lua"), "the wrapper's method takes it")
  local bad = ablate.check({recipe = wrapper, base = {method_opt = "t=1"}, grid = {seed = {1}}, out = TMP .. "/gmo2"})
  local ok, e = pcall(ablate.check_recipe, bad, "g.lua")
  H.ok(not ok and tostring(require("confit.cli").message(e)):find("--method l2 is built in", 1, true), tostring(e))
  -- an axis's values name directories, which hold no "=": one ablate per value (--set, --out)
  ok, e = pcall(ablate.check, {recipe = wrapper, base = {method = "thr24"}, grid = {method_opt = {"t=1", "t=3"}}})
  H.ok(not ok and tostring(require("confit.cli").message(e)):find('value "t=1" of axis method_opt cannot be part of a directory name', 1, true),
       tostring(e))
end)

-- (audit_f) a killed ablate's rlsc child may still write its grid point; a rerun must not start a
-- second writer there: the point fails, naming the holder, and its folder is not written.
-- A second ablate on one grid folder is refused; a dead writer's temporary files are removed.
H.case("locks: a grid point in use fails untouched; a grid folder in use is refused; stale temps go", function()
  local confit = require "confit"
  local out = TMP .. "/glock"
  local spec = ablate.check({grid = {alpha = {0, 0.1}, seed = {1}}, out = out})
  local busy = out .. "/alpha=0,seed=1"
  assert(os.execute("mkdir -p '" .. busy .. "' '" .. out .. "/alpha=0.1,seed=1'"))
  write(out .. "/alpha=0.1,seed=1/ablate.json.tmp-999999-1-1", "{")
  write(out .. "/grid.json.tmp-999999-1-2", "{")
  local me = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
  local h = assert(confit.lock(busy .. "/.lock"))
  local calls = {}
  local res = ablate.run_grid(spec, {runner = fake_runner(calls), say = quiet})
  H.eq(table.concat(calls, " "), "alpha=0.1,seed=1", "only the free point ran")
  H.eq(#res.failed, 1, "one failure")
  H.ok(res.failed[1] and res.failed[1].why:find("in use by another confit process (PID " .. me .. ")", 1, true),
       tostring(res.failed[1] and res.failed[1].why))
  H.eq(io.open(busy .. "/ablate.json"), nil, "nothing written into the point in use")
  H.eq(io.open(out .. "/alpha=0.1,seed=1/ablate.json.tmp-999999-1-1"), nil, "the point's stale temporary file")
  H.eq(io.open(out .. "/grid.json.tmp-999999-1-2"), nil, "the grid folder's stale temporary file")
  h:close()
  local g = assert(confit.lock(out .. "/.lock"))
  local ok, e = pcall(ablate.run_grid, spec, {runner = fake_runner({}), say = quiet})
  H.ok(not ok and tostring(type(e) == "table" and e.msg or e):find("is in use by another confit process (PID " .. me .. ")", 1, true),
       tostring(type(e) == "table" and e.msg or e))
  g:close()
  res = ablate.run_grid(spec, {runner = fake_runner({}), say = quiet})
  H.eq(#res.failed, 0, "runs once free")
  H.eq(io.open(out .. "/.lock"), nil, "the grid lock is removed when run_grid returns")
end)

H.case("one seed: no spread; several benchmarks: one row each", function()
  local out = TMP .. "/g4"
  local spec = ablate.check({grid = {alpha = {0, 1}}, out = out})
  ablate.run_grid(spec, {say = quiet, runner = function(run)
    local a = run.params.alpha
    jsonio.write_json_atomic(run.path .. "/summary.json", {benchmarks = {
      math500 = {before = {acc = 0.4}, after = {acc = 0.4 + a / 10, ["maj@16"] = 0.5}},
      aime24 = {before = {acc = 0.1}, after = {acc = 0.1 + a / 20}}}})
    return true
  end})
  local rows = ablate.write_results(spec, ablate.expand(spec), out, {})
  H.eq(#rows, 4)
  local csv = csv_rows(read(out .. "/results.csv"))
  H.eq(csv[1].benchmark, "aime24"); H.eq(csv[2].benchmark, "math500")
  H.eq(csv[4].acc_mean, "0.5"); H.eq(csv[4].acc_std, "", "one seed: no std")
  H.near(tonumber(csv[4].acc_delta_mean), 0.1, 1e-12)
  H.eq(csv[1]["maj@16_mean"], "", "aime24 has no maj@16")
  local md = read(out .. "/results.md")
  H.ok(md:find("| 1 | math500 | 1 | 0.500 (Δ +0.100) | 0.500 |", 1, true), md)
end)

H.case("a summary.json that is not an object is a listed problem; a huge metric prints short", function()
  local out = TMP .. "/g10"
  local spec = ablate.check({grid = {seed = {1, 2}}, out = out})
  ablate.run_grid(spec, {say = quiet, runner = function(run)
    if run.params.seed == 1 then H.write(run.path .. "/summary.json", "[1, 2]\n")
    else jsonio.write_json_atomic(run.path .. "/summary.json", {before = {acc = 0.5}, after = {acc = 1e300}}) end
    return true
  end})
  local _, _, problems = ablate.collect(spec, ablate.expand(spec), out)
  H.eq(#problems, 1, "the array summary is a problem (it was skipped silently)")
  H.ok(problems[1].why:find("not a JSON object", 1, true), problems[1].why)
  ablate.write_results(spec, ablate.expand(spec), out, {})
  local md = read(out .. "/results.md")
  H.ok(md:find("1e+300", 1, true) and not md:find(("0"):rep(40), 1, true), md)
end)

H.case("metrics: any numeric after-key but settings and bookkeeping; explicit list wins", function()
  local out = TMP .. "/g9"
  local spec = ablate.check({grid = {seed = {1, 2}}, out = out})
  ablate.run_grid(spec, {say = quiet, runner = function(run)
    local sd = run.params.seed
    jsonio.write_json_atomic(run.path .. "/summary.json", {
      before = {greedy_acc = 0.3, pass1_t05 = 0.2},
      after = {greedy_acc = 0.3 + sd / 10, pass1_t05 = 0.25, maj16 = 0.5, wall_s = 12.5, n = 100,
               temperature = 0.5, mean_confidence = 0.01 * sd}})
    return true
  end})
  local _, mlist = ablate.write_results(spec, ablate.expand(spec), out, {})
  H.eq(table.concat(mlist, ","), "greedy_acc,maj16,mean_confidence,pass1_t05")
  local csv = csv_rows(read(out .. "/results.csv"))
  H.eq(#csv, 1, "no axis but the seed: one row")
  H.near(tonumber(csv[1].greedy_acc_mean), 0.45, 1e-12)
  H.near(tonumber(csv[1].greedy_acc_std), math.sqrt(0.005), 1e-9)
  H.near(tonumber(csv[1].pass1_t05_delta_mean), 0.05, 1e-12)
  H.eq(csv[1].pass1_t05_std, "0", "equal values: spread 0")
  local spec2 = ablate.check({grid = {seed = {1, 2}}, out = out, metrics = {"pass1_t05", "greedy_acc"}})
  local _, m2 = ablate.write_results(spec2, ablate.expand(spec2), out, {})
  H.eq(table.concat(m2, ","), "pass1_t05,greedy_acc")
  H.ok(read(out .. "/results.md"):find("| seeds | pass1_t05 | greedy_acc |", 1, true), "md header")
end)

-- A stand-in for recipes/rlsc.lua: checks its flags and writes summary.json; --fail exits 3.
local FAKE_RECIPE = [[
local jsonio = require "confit.jsonio"
local a = {...}
local o, i = {}, 1
while i <= #a do
  local k = a[i]:match("^%-%-(.+)$")
  assert(k, "bad argument " .. a[i])
  if a[i + 1] and not a[i + 1]:match("^%-%-") then o[k] = a[i + 1]; i = i + 2 else o[k] = true; i = i + 1 end
end
print("fake rlsc: out " .. o.out .. " alpha " .. tostring(o.alpha))
if o.fail then io.stderr:write("fake rlsc: asked to fail\n"); os.exit(3) end
assert(o.tag == "it's a \"tag\"", "tag mangled: " .. tostring(o.tag))
local alpha = tonumber(o.alpha)
jsonio.write_json_atomic(o.out .. "/summary.json", {before = {acc = 0.25},
  after = {acc = 0.25 + alpha, mean_length = 10 * tonumber(o.seed)}, config = {tag = o.tag}})
]]

H.case("subprocess runner: real processes, quoting, log.txt, exit status", function()
  local recipe = TMP .. "/fake_rlsc.lua"
  write(recipe, FAKE_RECIPE)
  local out = TMP .. "/g5 with space"
  local spec = ablate.check({base = {tag = "it's a \"tag\""}, grid = {alpha = {0, 0.5}, seed = {1, 2}},
                             out = out, recipe = recipe})
  local lines = {}
  local res = ablate.run_grid(spec, {say = function(s) lines[#lines + 1] = s end})
  H.eq(res.ran, 4, table.concat(lines, "\n")); H.eq(#res.failed, 0)
  local log = read(out .. "/alpha=0.5,seed=2/log.txt")
  H.ok(log and log:find("fake rlsc: out " .. out .. "/alpha=0.5,seed=2 alpha 0.5", 1, true), tostring(log))
  ablate.write_results(spec, res.runs, out, res.failed)
  local rows = csv_rows(read(out .. "/results.csv"))
  H.near(tonumber(rows[2].acc_mean), 0.75, 1e-12)
  H.near(tonumber(rows[2].mean_length_std), math.sqrt(50), 1e-9)
  -- a failing run: exit status and the log's tail in the reason
  local spec2 = ablate.check({base = {tag = "it's a \"tag\""}, grid = {alpha = {0}, seed = {1}, fail = {false, true}},
                              out = TMP .. "/g6", recipe = recipe})
  local res2 = ablate.run_grid(spec2, {say = quiet})
  H.eq(#res2.failed, 1)
  H.eq(res2.failed[1].dir, "alpha=0,fail=true,seed=1")
  H.ok(res2.failed[1].why:find("exit status 3", 1, true), res2.failed[1].why)
  H.ok(res2.failed[1].why:find("asked to fail", 1, true), "log tail in the reason")
  -- results.md keeps the reason on one line: the log tail's last line, not a dangling "log.txt:"
  -- (twenty-first session)
  ablate.write_results(spec2, res2.runs, TMP .. "/g6", res2.failed)
  local line = (read(TMP .. "/g6/results.md") or ""):match("\n(%- `alpha=0,fail=true,seed=1`[^\n]*)")
  H.ok(line and line:find("exit status 3", 1, true) and line:find("asked to fail", 1, true) and not line:find(":$"),
       tostring(line))
end)

local function run_cmd(args)
  local outf = TMP .. "/cmd.out"
  local ok, _, code = os.execute(string.format("CONFIT_EXE='%s' '%s' recipes/ablate.lua %s > '%s' 2>&1",
                                               EXE, EXE, args, outf))
  return ok and 0 or code, read(outf) or ""
end

H.case("command line: dry run, report only, user errors", function()
  local recipe = TMP .. "/fake_rlsc.lua"
  write(recipe, FAKE_RECIPE)
  local gridf = TMP .. "/grid.lua"
  write(gridf, string.format([[return {base = {tag = "it's a \"tag\""}, grid = {alpha = {0, 0.25}, seed = {1, 2}},
    out = %q, recipe = %q}]], TMP .. "/g7", recipe))
  local code, text = run_cmd("'" .. gridf .. "' --dry-run")
  H.eq(code, 0, text)
  H.ok(text:find("[1/4] alpha=0,seed=1: ", 1, true) and text:find("--alpha 0.25 --seed 1 --tag 'it'\\''s a \"tag\"'", 1, true), text)
  H.ok(not read(TMP .. "/g7/grid.json"), "dry run writes nothing")
  code, text = run_cmd("'" .. gridf .. "'")
  H.eq(code, 0, text)
  H.ok(text:find("4 runs (4 ran, 0 skipped, 0 failed)", 1, true), text)
  H.ok(read(TMP .. "/g7/results.md"):find("0.25", 1, true))
  code, text = run_cmd("'" .. gridf .. "'")
  H.ok(text:find("(0 ran, 4 skipped", 1, true), text)
  code, text = run_cmd("'" .. gridf .. "' --report-only --out " .. TMP .. "/g7")
  H.eq(code, 0, text)
  H.ok(text:find("ablate: 4 runs, 2 rows from the finished ones", 1, true), text)
  -- a point without its summary is listed by --report-only too (it listed none before the
  -- twenty-first session)
  local sj = TMP .. "/g7/alpha=0.25,seed=2/summary.json"
  local keep = read(sj)
  os.remove(sj)
  code, text = run_cmd("'" .. gridf .. "' --report-only --out " .. TMP .. "/g7")
  H.eq(code, 0, text)
  H.ok((read(TMP .. "/g7/results.md") or ""):find("- `alpha=0.25,seed=2`: no summary.json: not run, failed or cut short; log ", 1, true),
       read(TMP .. "/g7/results.md"))
  write(sj, keep)
  -- (seventeenth session) --report-only wrote results.* into any folder, and beside a live ablate
  os.execute("mkdir -p '" .. TMP .. "/g7other' && echo mine > '" .. TMP .. "/g7other/results.md'")
  code, text = run_cmd("'" .. gridf .. "' --report-only --out " .. TMP .. "/g7other")
  H.eq(code, 1, text); H.ok(text:find("holds results.md", 1, false) or text:find("grid.json", 1, true), text)
  H.eq(read(TMP .. "/g7other/results.md"), "mine\n", "a user's results.md is left alone")
  os.execute("mkdir -p '" .. TMP .. "/g7empty'")
  code, text = run_cmd("'" .. gridf .. "' --report-only --out " .. TMP .. "/g7empty")
  H.eq(code, 1, text); H.ok(text:find("holds no grid.json", 1, true), text)
  H.eq(read(TMP .. "/g7empty/results.md"), nil, "nothing written")
  os.execute("mkdir -p '" .. TMP .. "/g7tc' && echo '{\"axes\": {\"method\": [\"l2\"]}, \"runs\": []}' > '" .. TMP .. "/g7tc/grid.json'")
  code, text = run_cmd("'" .. gridf .. "' --report-only --out " .. TMP .. "/g7tc")
  H.eq(code, 1, text); H.ok(text:find("is not an ablate grid's", 1, true), "toy_compare's grid: " .. text)
  H.eq(read(TMP .. "/g7tc/results.md"), nil, "nothing written into toy_compare's grid")
  local held = assert(require("confit").lock(TMP .. "/g7/.lock"))
  code, text = run_cmd("'" .. gridf .. "' --report-only --out " .. TMP .. "/g7")
  held:close()
  H.eq(code, 1, text); H.ok(text:find("is in use by another confit process", 1, true), text)
  -- errors: one line, status 1
  code, text = run_cmd("'" .. TMP .. "/nope.lua'")
  H.eq(code, 1, text); H.ok(text:find("^ablate: cannot read grid file"), text)
  H.eq(select(2, text:gsub("\n", "")), 1, "one line: " .. text)
  write(TMP .. "/bad.lua", "return {grid = {alpha = {}}}")
  code, text = run_cmd("'" .. TMP .. "/bad.lua'")
  H.eq(code, 1, text); H.ok(text:find("axis alpha has no values", 1, true), text)
  code, text = run_cmd("'" .. gridf .. "' --bogus")
  H.eq(code, 1, text); H.ok(text:find("unknown option --bogus", 1, true), text)
  -- failing runs make the exit status 1
  write(TMP .. "/failing.lua", string.format([[return {base = {fail = true}, grid = {alpha = {0}},
    out = %q, recipe = %q}]], TMP .. "/g8", recipe))
  code, text = run_cmd("'" .. TMP .. "/failing.lua'")
  H.eq(code, 1, text); H.ok(text:find("1 failed", 1, true), text)
end)

H.case("grid value errors name the grid file and the axis or base setting", function()
  local function err(spec) local _, e = pcall(ablate.check, spec, "g.lua"); return tostring(e) end
  H.eq(err({grid = {alpha = {0, 0 / 0}}}), "ablate: g.lua: axis alpha: value NaN is not finite")
  H.eq(err({grid = {alpha = {-math.huge}}}), "ablate: g.lua: axis alpha: value -inf is not finite")
  H.eq(err({grid = {alpha = {{}}}}), "ablate: g.lua: axis alpha: values must be strings, numbers or booleans, got table")
  H.eq(err({base = {lr = 1 / 0}, grid = {alpha = {0}}}), "ablate: g.lua: base setting lr: value inf is not finite")
  H.eq(err({base = {steps = {}}, grid = {alpha = {0}}}),
       'ablate: g.lua: base setting steps: a list of values {"a", "b"} (for a repeatable flag), got a table that is not one')
  H.eq(err({base = {steps = {1, {}}}, grid = {alpha = {0}}}),
       "ablate: g.lua: base setting steps[2]: values must be strings, numbers or booleans, got table")
end)

H.case("a finished run made with other settings than the grid now gives is refused", function()
  local out = TMP .. "/g10"
  local function spec_of(base, alphas, recipe)
    return ablate.check({base = base, grid = {alpha = alphas, method = {"l1"}, seed = {1}}, out = out,
                         recipe = recipe})
  end
  local calls = {}
  local res = ablate.run_grid(spec_of({steps = 1}, {0, 0.1}), {runner = fake_runner(calls), say = quiet})
  H.eq(res.ran, 2)
  local rec = assert(jsonio.read_json(out .. "/alpha=0,method=l1,seed=1/ablate.json"))
  H.eq(rec.settings.steps, "1"); H.eq(rec.recipe, "recipes/rlsc.lua")
  local grid_before = read(out .. "/grid.json")
  -- base changed: refused before anything runs or is written, naming the run and the settings
  local changed = spec_of({steps = 2, lr = 0.5}, {0, 0.1})
  for _, dry in ipairs({false, true}) do
    calls = {}
    local ok, e = pcall(ablate.run_grid, changed, {runner = fake_runner(calls), say = quiet, dry_run = dry})
    H.ok(not ok and getmetatable(e) == ablate.UserError, "a user error: " .. tostring(e))
    H.eq(tostring(e), "ablate: run " .. out .. "/alpha=0,method=l1,seed=1 finished with no --lr and "
         .. "--steps 1, but the grid now gives it --lr 0.5 and --steps 2: remove that run directory "
         .. "to run it again, or give another --out")
    H.eq(#calls, 0, "nothing ran")
    H.eq(read(out .. "/grid.json"), grid_before, "grid.json untouched")
  end
  -- a bare flag that was not there, and another recipe
  local _, e = pcall(ablate.run_grid, spec_of({steps = 1, verbose = true}, {0}), {say = quiet})
  H.ok(tostring(e):find("finished with no --verbose, but the grid now gives it --verbose:", 1, true), tostring(e))
  _, e = pcall(ablate.run_grid, spec_of({steps = 1}, {0}, "recipes/other.lua"), {say = quiet})
  H.ok(tostring(e):find("finished with recipe recipes/rlsc.lua, but the grid now names recipes/other.lua", 1, true),
       tostring(e))
  -- same settings (false is no flag; 1.0 is 1): skipped; a new axis value runs
  calls = {}
  res = ablate.run_grid(spec_of({steps = 1.0, verbose = false}, {0, 0.1, 0.2}), {runner = fake_runner(calls), say = quiet})
  H.eq(res.skipped, 2); H.eq(res.ran, 1); H.eq(calls[1], "alpha=0.2,method=l1,seed=1")
  -- runs finished before ablate.json existed are checked against grid.json
  for _, a in ipairs({"0", "0.1", "0.2"}) do os.remove(out .. "/alpha=" .. a .. ",method=l1,seed=1/ablate.json") end
  _, e = pcall(ablate.run_grid, spec_of({steps = 3}, {0, 0.1, 0.2}), {say = quiet})
  H.ok(tostring(e):find("alpha=0,method=l1,seed=1 finished with --steps 1, but the grid now gives it --steps 3",
                        1, true), tostring(e))
  -- and --report-only refuses too (its table would be labelled with the new settings)
  local gridf = TMP .. "/g10.lua"
  write(gridf, ("return {base = {steps = 3}, grid = {alpha = {0}, method = {'l1'}, seed = {1}}, out = %q}"):format(out))
  local code, text = run_cmd("'" .. gridf .. "' --report-only")
  H.eq(code, 1, text)
  H.ok(text:find("^ablate: run .-alpha=0,method=l1,seed=1 finished with %-%-steps 1"), text)
  -- its advice is to give the settings of then, not to remove the run (nothing would be reported)
  H.ok(text:find("--report-only reports a grid with the settings its runs had (the grid file and --set flags they ran with)",
                 1, true) and not text:find("remove that run directory", 1, true), text)
end)

H.case("one tiny real RLSC run through recipes/rlsc.lua", function()
  -- both are in the repository: their absence is a failure, not a reason to skip
  H.ok(read("recipes/rlsc.lua"), "recipes/rlsc.lua is missing")
  H.ok(read("examples/toy/model/config.json"), "examples/toy/model/config.json is missing")
  local out = TMP .. "/real"
  local spec = ablate.check({base = {model = "examples/toy/model", questions_per_step = 2,
                                     eval_questions = 4, n = 2},
                             grid = {steps = {1}, seed = {1}}, out = out})
  local res = ablate.run_grid(spec, {say = quiet})
  H.eq(#res.failed, 0, "failed runs (" .. tostring(res.failed[1] and res.failed[1].why) .. ")")
  H.eq(res.ran, 1, "runs made")
  local rows = ablate.write_results(spec, res.runs, out, res.failed)
  H.eq(#rows, 1); H.eq(rows[1].runs, 1)
  H.ok(rows[1].stats.acc or rows[1].stats["pass@1"], "an accuracy metric from rlsc's summary")
  H.eq(rows[1].benchmark, "toy-mixed", "named as the report and the eval records name it")
end)

H.case("results: a number a summary holds under two names is one column, RUNDIR.md's", function()
  local out = TMP .. "/g11"
  local spec = ablate.check({grid = {seed = {1, 2}}, out = out})
  ablate.run_grid(spec, {say = quiet, runner = function(run)
    local sd = run.params.seed
    -- as rlsc writes a toy run with --eval-n 4 (toy_eval.rundir), and confit.evaluate's avg@n
    local function toy(x)
      return {greedy_acc = x, acc = x, pass1_t05 = x / 2, ["pass@1"] = x / 2, pass2 = 0.6, ["pass@2"] = 0.6,
              pass4 = 0.7, ["pass@4"] = 0.7, maj4 = 0.4 + x, ["maj@4"] = 0.4 + x, pass1_t10 = 0.3,
              direct_share = 0.5, n = 10, samples = 4}
    end
    jsonio.write_json_atomic(run.path .. "/summary.json", {benchmarks = {
      toy = {before = toy(0.2), after = toy(0.2 + sd / 10)},
      data = {before = {acc = 0.1, ["pass@1"] = 0.2, ["avg@4"] = 0.2},
              after = {acc = 0.3, ["pass@1"] = 0.25, ["avg@4"] = 0.25}},
      -- a second name whose number differs is a metric of its own, and kept
      odd = {after = {acc = 0.5, greedy_acc = 0.25}}}})
    return true
  end})
  local _, mlist = ablate.write_results(spec, ablate.expand(spec), out, {})
  H.eq(table.concat(mlist, ","), "acc,greedy_acc,pass@1,pass@2,pass@4,maj@4,direct_share,pass1_t10",
       "each number once (greedy_acc only where it differs from acc)")
  local md = read(out .. "/results.md")
  H.ok(md:find("| benchmark | seeds | acc | greedy_acc | pass@1 | pass@2 | pass@4 | maj@4 | direct_share | pass1_t10 |",
               1, true), md)
  H.ok(md:find("| toy | 2 | 0.350 ± 0.071 (Δ +0.150 ± 0.071) | – | 0.175", 1, true), md)
  -- an explicit list still names what it asks for
  local spec2 = ablate.check({grid = {seed = {1, 2}}, out = out, metrics = {"maj4", "avg@4"}})
  local _, m2 = ablate.write_results(spec2, ablate.expand(spec2), out, {})
  H.eq(table.concat(m2, ","), "maj4,avg@4")
end)

-- A recipe of one's own: registers a method and runs rlsc's main as its own (the pattern of
-- ablate's --help), run by ablate as a subprocess with tiny settings
local WRAPPER = [[
local cli = require "confit.cli"
local rl = require "confit.rl"
rl.register_weighted("sq_test", function(lpv)
  local w = {}
  for i, lp in ipairs(lpv) do w[i] = math.exp(lp) ^ 2 end
  return w
end)
return cli.main("sq", dofile("recipes/rlsc.lua"))
]]

H.case("a wrapper recipe (cli.main of dofile'd rlsc) runs under ablate; a silent one is named", function()
  local recipe = TMP .. "/wrap dir/w.lua"
  assert(os.execute("mkdir -p '" .. TMP .. "/wrap dir'"))
  write(recipe, WRAPPER)
  local out = TMP .. "/g12"
  local spec = ablate.check({base = {method = "sq_test", questions_per_step = 1, n = 2, eval_questions = 2,
                                     eval_n = 2, max_new_tokens = 16},
                             grid = {steps = {1}, seed = {1}}, out = out, recipe = recipe})
  local lines = {}
  local res = ablate.run_grid(spec, {say = function(s) lines[#lines + 1] = s end})
  H.eq(#res.failed, 0, table.concat(lines, "\n"))
  H.eq(res.ran, 1, "runs made")
  local s = assert(jsonio.read_json(out .. "/seed=1,steps=1/summary.json"))
  H.eq(s.config.method, "sq_test", "the wrapper's method trained")
  H.ok(read(out .. "/seed=1,steps=1/log.txt"):find("method sq_test", 1, true), "rlsc's banner in log.txt")
  -- loaded by dofile from this test, the wrapper only returns rlsc's main
  H.eq(type(dofile(recipe)), "function", "dofile of the wrapper returns main, runs nothing")
  local _, mlist = ablate.write_results(spec, res.runs, out, res.failed)
  local seen = {}
  for _, m in ipairs(mlist) do seen[m] = true end
  H.ok(seen.acc and seen["pass@1"] and seen["maj@2"] and seen["pass@2"], table.concat(mlist, ","))
  for _, m in ipairs({"greedy_acc", "pass1_t05", "maj2", "pass2", "maj16", "pass16"}) do
    H.ok(not seen[m], m .. " is a second name (or not there): " .. table.concat(mlist, ","))
  end
  -- a recipe that neither prints nor writes anything: the reason says so
  local silent = TMP .. "/silent.lua"
  write(silent, "local function main() print('never') end\nreturn main\n")
  local spec2 = ablate.check({grid = {seed = {1}}, out = TMP .. "/g13", recipe = silent})
  local r2 = ablate.run_grid(spec2, {say = quiet})
  H.eq(#r2.failed, 1)
  H.ok(r2.failed[1].why:find("summary.json", 1, true) and r2.failed[1].why:find("log.txt is empty", 1, true)
       and r2.failed[1].why:find("did it run main", 1, true), r2.failed[1].why)
end)

-- >>> the audit's fixes: a resumed grid point's log.txt keeps the earlier attempt's output
-- (appended after a line naming the invocation); a single-benchmark summary that names its
-- benchmark gets a row of that name, not "all"
H.case("B7: a grid point run again appends to its log.txt, after a line naming the invocation", function()
  local recipe = TMP .. "/fake_rlsc_b7.lua"
  write(recipe, FAKE_RECIPE)
  local out = TMP .. "/g_b7"
  local spec = ablate.check({base = {tag = "it's a \"tag\""}, grid = {alpha = {0}, seed = {1}, fail = {true}},
                             out = out, recipe = recipe})
  local log = out .. "/alpha=0,fail=true,seed=1/log.txt"
  local r1 = ablate.run_grid(spec, {say = quiet})
  H.eq(#r1.failed, 1)
  -- the second attempt continues from a checkpoint the first left
  os.execute(("mkdir -p %q"):format(out .. "/alpha=0,fail=true,seed=1/checkpoint-1"))
  write(out .. "/alpha=0,fail=true,seed=1/checkpoint-1/trainer_state.json", '{"step": 1}\n')
  local recipe_rlsc = TMP .. "/b7/rlsc.lua"      -- named rlsc.lua, so ablate adds --resume
  assert(os.execute(("mkdir -p %q"):format(TMP .. "/b7")))
  write(recipe_rlsc, FAKE_RECIPE)
  spec.recipe = recipe_rlsc
  local r2 = ablate.run_grid(spec, {say = quiet})
  H.eq(#r2.failed, 1)
  local text = assert(read(log))
  local n = 0
  for _ in text:gmatch("fake rlsc: out ") do n = n + 1 end
  H.eq(n, 2, "both attempts' output is in log.txt:\n" .. text)
  local seps = {}
  for line in text:gmatch("[^\n]+") do if line:find("^=+ ablate ") then seps[#seps + 1] = line end end
  H.eq(#seps, 2, "a separator line per attempt:\n" .. text)
  H.ok(seps[1]:find(recipe, 1, true) and seps[2]:find(recipe_rlsc, 1, true), "names the invocation:\n" .. text)
  H.ok(seps[2]:find("--resume", 1, true) and seps[2]:find("resuming from its checkpoints", 1, true),
       "the resumed one says so: " .. seps[2])
  H.ok(not seps[1]:find("resuming", 1, true), seps[1])
  -- the failure's log tail is this attempt's
  H.ok(r2.failed[1].why:find("asked to fail", 1, true), r2.failed[1].why)
end)

H.case("D6: a single-benchmark summary that names its benchmark (rlsc --data) is a row of that name", function()
  local out = TMP .. "/g_d6"
  local spec = ablate.check({grid = {alpha = {0, 0.1}}, out = out})
  local res = ablate.run_grid(spec, {say = quiet, runner = function(run)
    local named = run.params.alpha == 0
    jsonio.write_json_atomic(run.path .. "/summary.json", {
      before = {acc = 0.2, n = 2, benchmark = named and "gsm8k" or nil},
      after = {acc = 0.5, n = 2, benchmark = named and "gsm8k" or nil},
      config = {recipe = "rlsc"}})
    return true
  end})
  H.eq(#res.failed, 0)
  local rows = ablate.write_results(spec, res.runs, out, res.failed)
  H.eq(rows[1].benchmark, "gsm8k", "the summary's benchmark")
  H.eq(rows[2].benchmark, "all", "a summary that names none")
  local csv = csv_rows(assert(read(out .. "/results.csv")))
  H.eq(csv[1].benchmark, "gsm8k")
  H.ok(read(out .. "/results.md"):find("| 0 | gsm8k | 1 |", 1, true), read(out .. "/results.md"))
end)


-- >>> (audit_w) stopping a grid, keys given twice, its file's optional keys, the default recipe
-- from another folder, the benchmark name of a toy rlsc run

-- A stand-in recipe: --seed S equal to --stop-at ends the run as a Ctrl-C or a kill does (--how
-- int: exit status 130, rlsc's after a Ctrl-C; term: killed by SIGTERM); --ready FILE: creates
-- FILE, then works for a second; else writes summary.json.
local STOP_RECIPE = [[
local jsonio = require "confit.jsonio"
local a, o = {...}, {}
for i = 1, #a, 2 do o[a[i]:match("^%-%-(.+)$")] = a[i + 1] end
if o.seed == o["stop-at"] then
  if o.how == "int" then io.stderr:write("rlsc: interrupted\n"); os.exit(130) end
  local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
  os.execute("kill -TERM " .. pid)
end
if o.ready then io.open(o.ready, "w"):close(); os.execute("sleep 1") end
jsonio.write_json_atomic(o.out .. "/summary.json", {before = {acc = 0.25}, after = {acc = 0.5}})
]]

H.case("B1: a run ended by SIGINT / SIGTERM (or status 130) stops the grid; results so far are written", function()
  local recipe = TMP .. "/stop_rlsc.lua"
  write(recipe, STOP_RECIPE)
  for _, how in ipairs({"int", "term"}) do
    local out = TMP .. "/g_stop_" .. how
    local spec = ablate.check({base = {["stop-at"] = 2, how = how}, grid = {seed = {1, 2, 3}},
                               out = out, recipe = recipe})
    local res = ablate.run_grid(spec, {say = quiet})
    H.ok(res.stopped, how .. ": the grid stops")
    H.eq(res.stopped and res.stopped.dir, "seed=2", how .. ": at the second run")
    H.eq(res.ran, 1, how); H.eq(#res.failed, 0, how .. ": a stop is not a failed run")
    H.eq(io.open(out .. "/seed=3/log.txt"), nil, how .. ": the third run never started")
  end
  -- the command line: results of the finished run, one line saying why, status 130 / 143
  for how, want in pairs({int = 130, term = 143}) do
    local gridf = TMP .. "/g_stop_cmd_" .. how .. ".lua"
    write(gridf, ("return {base = {['stop-at'] = 2, how = %q}, grid = {seed = {1, 2, 3}}, out = %q, recipe = %q}")
                 :format(how, TMP .. "/g_stop_cmd_" .. how, recipe))
    local code, text = run_cmd("'" .. gridf .. "'")
    H.eq(code, want, text)
    H.ok(text:find("ablate: [2/3] seed=2: stopped", 1, true) and text:find("run the same command again", 1, true), text)
    H.ok(not text:find("[3/3]", 1, true), "no third run: " .. text)
    H.ok((read(TMP .. "/g_stop_cmd_" .. how .. "/results.md") or ""):find("| 1 of 3 |", 1, true), "results so far")
  end
end)

H.case("B1: Ctrl-C (SIGINT) to ablate alone stops the grid after the running run", function()
  local recipe = TMP .. "/stop_rlsc.lua"
  write(recipe, STOP_RECIPE)
  local out, ready, outf = TMP .. "/g_ctrlc", TMP .. "/g_ctrlc.ready", TMP .. "/g_ctrlc.txt"
  local gridf = TMP .. "/g_ctrlc.lua"
  write(gridf, ("return {base = {ready = %q}, grid = {seed = {1, 2}}, out = %q, recipe = %q}"):format(ready, out, recipe))
  local sh = table.concat({
    "CONFIT_EXE='%s' '%s' recipes/ablate.lua '%s' > '%s' 2>&1 & pid=$!",
    -- (generous limits: under a loaded machine the run may take many seconds to start; they
    -- cost nothing when it is quick)
    "(sleep 120; kill -KILL $pid) >/dev/null 2>&1 & wd=$!",
    "i=0; while [ ! -e '%s' ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done",
    "kill -INT $pid; wait $pid; st=$?; kill $wd 2>/dev/null; echo $st"}, "\n")
  local p = assert(io.popen("sh -c '" .. sh:format(EXE, EXE, gridf, outf, ready):gsub("'", "'\\''") .. "'"))
  local st = tonumber(p:read("a"):match("%d+"))
  p:close()
  local text = read(outf) or ""
  H.eq(st, 130, text)
  H.ok(text:find("interrupted", 1, true), text)
  H.ok(read(out .. "/seed=1/summary.json"), "the running run finished")
  H.eq(io.open(out .. "/seed=2/log.txt"), nil, "the next one never started: " .. text)
  H.ok(read(out .. "/results.md"), "results so far")
end)

H.case("B2: a key given twice (base and grid, or both spellings) is refused; a dashed axis is one flag", function()
  local function err(spec) local _, e = pcall(ablate.check, spec, "g.lua"); return tostring(e) end
  H.ok(err({base = {eval_n = 2}, grid = {["eval-n"] = {2, 4}}}):find("eval-n", 1, true)
       and err({base = {eval_n = 2}, grid = {["eval-n"] = {2, 4}}}):find("twice", 1, true),
       err({base = {eval_n = 2}, grid = {["eval-n"] = {2, 4}}}))
  H.ok(err({base = {alpha = 5}, grid = {alpha = {0}}}):find("twice", 1, true), "base and grid")
  H.ok(err({base = {eval_n = 1, ["eval-n"] = 2}, grid = {seed = {1}}}):find("twice", 1, true), "two spellings in base")
  H.ok(err({grid = {eval_n = {1}, ["eval-n"] = {2}}}):find("twice", 1, true), "two spellings in grid")
  local spec = ablate.check({base = {steps = 1}, grid = {["eval-n"] = {2, 4}}})
  local runs = ablate.expand(spec)
  H.eq(runs[2].dir, "eval-n=4", "the directory keeps the axis as written")
  H.eq(table.concat(ablate.flags(spec, runs[2], "D"), " "), "--out D --eval-n 4 --steps 1")
  -- (seventeenth session) out in base or as an axis was dropped without a word
  H.ok(err({base = {out = "/x"}, grid = {seed = {1}}}):find("base out: each run's --out is its grid point's folder", 1, true),
       err({base = {out = "/x"}, grid = {seed = {1}}}))
  H.ok(err({grid = {out = {"a", "b"}}}):find("axis out", 1, true), err({grid = {out = {"a", "b"}}}))
end)

H.case("U3: a seed_key that is not an axis is refused, naming the axes", function()
  local _, e = pcall(ablate.check, {grid = {alpha = {0}, seed = {1, 2}}, seed_key = "sed"}, "g.lua")
  e = tostring(e)
  H.ok(e:find("seed_key", 1, true) and e:find("sed", 1, true) and e:find("alpha, seed", 1, true), e)
  H.ok(pcall(ablate.check, {grid = {alpha = {0}}}), "the default seed_key needs no seed axis")
end)

H.case("U1: a wrapper recipe's grid is checked with rlsc's flags and the wrapper's own methods", function()
  local recipe = TMP .. "/wrap_check.lua"
  write(recipe, (WRAPPER:gsub('cli%.main%(', 'require("confit.cli").main(')))
  local gridf = TMP .. "/g_wrap_check.lua"
  local function grid(method, key)
    write(gridf, ("return {base = {%s = 1}, grid = {method = {%q}, seed = {1}}, out = %q, recipe = %q}")
                 :format(key, method, TMP .. "/g_wrap_check", recipe))
    return run_cmd("'" .. gridf .. "' --dry-run")
  end
  local code, text = grid("sq_test", "steps")
  H.eq(code, 0, text)
  code, text = grid("sq_tset", "steps")
  H.eq(code, 1, text); H.ok(text:find("unknown method 'sq_tset'", 1, true) and text:find("sq_test", 1, true), text)
  code, text = grid("sq_test", "stpes")
  H.eq(code, 1, text); H.ok(text:find("stpes is not a flag of", 1, true), text)
end)

-- (twenty-fourth session, a user walkthrough) docs/TOY.md's "Your own loss" script, named as a
-- grid's recipe, failed every run ("--method is given twice": it put --method sq in front of the
-- flags), and a dry run of a recipe not ending in cli.main said nothing of its flags going unchecked
H.case("docs/TOY.md's \"Your own loss\" script is a grid recipe; an unchecked recipe is named", function()
  local f = assert(io.open("docs/TOY.md", "rb"))
  local code = f:read("a"):match("### Your own loss.-```lua\n(.-)```")
  f:close()
  H.ok(code, "docs/TOY.md has a lua block under \"### Your own loss\"")
  local recipe = TMP .. "/my_loss.lua"
  write(recipe, code)
  local gridf = TMP .. "/g_my_loss.lua"
  local function grid(methods, rec)
    write(gridf, ("return {base = {steps = 1}, grid = {method = {%s}, seed = {1}}, out = %q, recipe = %q}")
                 :format(methods, TMP .. "/g_my_loss", rec or recipe))
    return run_cmd("'" .. gridf .. "' --dry-run")
  end
  local code_, text = grid('"l2", "sq"')
  H.eq(code_, 0, text)
  H.ok(text:find("--method sq", 1, true) and not text:find("not checked", 1, true), text)
  code_, text = grid('"l2", "sqq"')
  H.eq(code_, 1, text); H.ok(text:find("unknown method 'sqq'", 1, true), text)
  -- a script that runs rlsc through cli.run (no cli.main): the dry run says it checked nothing
  local plain = TMP .. "/plain_recipe.lua"
  write(plain, 'require("confit.cli").run("rlsc", dofile("recipes/rlsc.lua"), arg)\n')
  code_, text = grid('"l2", "sqq"', plain)
  H.eq(code_, 0, text)
  H.ok(text:find("does not end in cli.main", 1, true) and text:find("not checked", 1, true), text)
end)

H.case("a repeatable flag takes a list in base and a repeated --set (method_opt)", function()
  -- (twenty-fourth session) base = {method_opt = {"a=1", "b=2"}} was refused as a table, and a
  -- second --set method_opt=... as "set twice": one method option per grid
  local recipe = TMP .. "/wrap_list.lua"
  write(recipe, (WRAPPER:gsub('cli%.main%(', 'require("confit.cli").main(')))
  local gridf = TMP .. "/g_list.lua"
  write(gridf, ("return {base = {method = \"sq_test\", steps = 1, method_opt = {\"a=1\", \"b=x\"}}, grid = {seed = {1}}, "
                .. "out = %q, recipe = %q}"):format(TMP .. "/g_list", recipe))
  local code, text = run_cmd("'" .. gridf .. "' --dry-run")
  H.eq(code, 0, text)
  H.ok(text:find("--method-opt a=1 --method-opt b=x", 1, true), text)
  code, text = run_cmd("'" .. gridf .. "' --dry-run --set method_opt=c=3 --set method_opt=d=4")
  H.eq(code, 0, text)
  H.ok(text:find("--method-opt c=3 --method-opt d=4", 1, true) and not text:find("a=1", 1, true), text)
  -- a list for a flag that takes one value
  write(gridf, ("return {base = {steps = {1, 2}}, grid = {seed = {1}}, out = %q, recipe = %q}"):format(TMP .. "/g_list", recipe))
  code, text = run_cmd("'" .. gridf .. "' --dry-run")
  H.eq(code, 1, text); H.ok(text:find("base setting steps is a list, but --steps takes one value", 1, true), text)
  code, text = run_cmd("'" .. gridf .. "' --dry-run --set steps=2 --set steps=3")
  H.eq(code, 1, text); H.ok(text:find("steps is set twice", 1, true), text)
end)

H.case("a grid on a GPU this machine lacks is refused once, before any run", function()
  local confit = require "confit"
  if confit.cuda and confit.cuda.available() then return end   -- a GPU machine runs such grids
  local gridf = TMP .. "/g_cuda.lua"
  write(gridf, ("return {base = {device = \"cuda\", steps = 1}, grid = {seed = {1, 2}}, out = %q}"):format(TMP .. "/g_cuda"))
  local code, text = run_cmd("'" .. gridf .. "'")
  H.eq(code, 1, text)
  H.ok(text:find("run seed=1: --device cuda: no usable GPU (", 1, true), text)
  H.ok(not read(TMP .. "/g_cuda/grid.json"), "nothing written")
end)

H.case("U2: run from another folder, the default recipe is found; a missing recipe is refused", function()
  local here = io.popen("pwd"):read("l")
  local exe = EXE:sub(1, 1) == "/" and EXE or (here .. "/" .. EXE)
  local gridf = TMP .. "/g_cwd.lua"
  -- (the model by its absolute path: rlsc's default, a path from the current folder, is not
  -- there, which the dry run refuses since the twenty-third session)
  write(gridf, ("return {base = {steps = 1, model = %q}, grid = {seed = {1}}, out = 'g_cwd'}"):format(here .. "/examples/toy/model"))
  local function from_tmp(args)
    local p = io.popen(("cd '%s' && CONFIT_EXE='%s' '%s' '%s/recipes/ablate.lua' %s 2>&1; echo rc=$?")
                       :format(TMP, exe, exe, here, args))
    local text = p:read("a")
    p:close()
    return text
  end
  local text = from_tmp("'" .. gridf .. "' --dry-run")
  H.ok(text:find("rc=0", 1, true), text)
  local recipe = text:match("%[1/1%] seed=1: %S+ (%S+) %-%-out")
  H.ok(recipe and recipe:find("rlsc%.lua$"), text)
  H.ok(recipe and io.open(recipe:sub(1, 1) == "/" and recipe or (TMP .. "/" .. recipe)), "readable from there: " .. text)
  write(gridf, "return {grid = {seed = {1}}, out = 'g_cwd', recipe = 'nope/mine.lua'}")
  text = from_tmp("'" .. gridf .. "' --dry-run")
  H.ok(text:find("rc=1", 1, true) and text:find("^ablate: .*nope/mine%.lua"), text)
end)

os.execute("rm -rf '" .. TMP .. "'")
-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, A04, A07, A10)
do
local ablate = dofile("recipes/ablate.lua")
local jsonio = require "confit.jsonio"
local metrics = require "confit.metrics"

H.case("collect: delta_std is the spread of the per-run changes, not of the values", function()
  local out = H.tmpdir() .. "/g"
  local spec = ablate.check({grid = {seed = {1, 2, 3}}, out = out})
  local runs = ablate.expand(spec)
  local after = {0.5, 0.6, 0.9}
  local before = {0.1, 0.3, 0.5}
  for i, r in ipairs(runs) do
    os.execute("mkdir -p '" .. out .. "/" .. r.dir .. "'")
    assert(jsonio.write_json_atomic(out .. "/" .. r.dir .. "/summary.json",
      {before = {acc = before[i], ["pass@2"] = 0.1, ["pass@16"] = 0.2},
       after = {acc = after[i], ["pass@2"] = 0.3, ["pass@16"] = 0.4}}))
  end
  local rows, mlist = ablate.collect(spec, runs, out)
  local st = rows[1].stats.acc
  H.near(st.std, metrics.std(after), 1e-12, "std of the values")
  H.near(st.delta_std, metrics.std({0.4, 0.3, 0.4}), 1e-12, "std of the changes")
  -- pass@k columns by k (docs: pass@k by k), not by the text of the name
  H.eq(table.concat(mlist, ","), "acc,pass@2,pass@16")
end)

H.case("csv: a field holding a double quote is quoted, its quotes doubled (RFC 4180)", function()
  local rows = {{params = {tag = 'a"b'}, benchmark = "x", runs = 1, planned = 1, stats = {}}}
  local text = ablate.csv(rows, {}, {"tag"})
  local line = text:match("\n([^\n]*)")
  H.eq(line, '"a""b",x,1,1')
end)
end

-- (twenty-sixth session, mutation testing of ablate: cases that fail on mutants the suite let through)
do
local ablate = dofile("recipes/ablate.lua")
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

-- The message of the user error fn raises (a failure when it raises none, or another error).
local function user_error(fn)
  local ok, e = pcall(fn)
  H.ok(not ok and getmetatable(e) == ablate.UserError, "a user error: " .. tostring(e))
  return tostring(e)
end

H.case("grid values and checks: integers past 1e15 stay integers; base and metrics of the wrong kind", function()
  H.eq(ablate.format_value(10000000000000000), "10000000000000000", "an integer is not 1e+16")
  H.eq(ablate.format_value(1 << 60), "1152921504606846976", "nor rounded to a double")
  for _, base in ipairs({5, "steps=2"}) do
    H.eq(user_error(function() ablate.check({base = base, grid = {seed = {1}}}, "g.lua") end),
         "ablate: g.lua: base must be a table of flags")
  end
  H.eq(user_error(function() ablate.check({grid = {seed = {1}}, metrics = {"acc", 5}}, "g.lua") end),
       "ablate: g.lua: metrics must be a list of names, got a number")
end)

H.case("the default recipe is recipes/rlsc.lua from the current folder, however ablate.lua was named", function()
  -- (ablate.json and grid.json record it: an absolute spelling would refuse the runs a relative one made)
  local here = io.popen("pwd"):read("l")
  local abs = dofile(here .. "/recipes/ablate.lua")
  H.eq(abs.default_recipe(), "recipes/rlsc.lua")
  H.eq(abs.check({grid = {seed = {1}}}).recipe, "recipes/rlsc.lua")
end)

H.case("check_recipe: an axis of a switch takes true / false, an axis of a value flag no true", function()
  H.eq(user_error(function() ablate.check_recipe(ablate.check({grid = {quiet = {1, 2}}}), "g.lua", {report_only = true}) end),
       "ablate: g.lua: quiet = 1: --quiet is a switch: give true (on) or false (off)")
  H.eq(user_error(function() ablate.check_recipe(ablate.check({grid = {steps = {2, true}}}), "g.lua", {report_only = true}) end),
       "ablate: g.lua: steps = true: --steps takes an int value (false leaves it out)")
  H.ok(ablate.check_recipe(ablate.check({grid = {quiet = {true, false}}}), "g.lua", {report_only = true}), "booleans pass")
end)

H.case("a finished run's list setting: the same list is skipped, another refused, with or without grid.json", function()
  local out = H.tmpdir() .. "/g"
  local function spec_of(opts)
    return ablate.check({base = {method_opt = opts}, grid = {alpha = {0}, method = {"l1"}, seed = {1}}, out = out})
  end
  H.eq(ablate.run_grid(spec_of({"a=1", "b=2"}), {runner = fake_runner({}), say = quiet}).ran, 1)
  local res = ablate.run_grid(spec_of({"a=1", "b=2"}), {runner = fake_runner({}), say = quiet})
  H.eq(res.skipped, 1, "the same list: finished before, skipped"); H.eq(#res.failed, 0)
  local want = "ablate: run " .. out .. "/alpha=0,method=l1,seed=1 finished with --method-opt a=1 --method-opt b=2, "
               .. "but the grid now gives it --method-opt a=1 --method-opt b=3: remove that run directory to run it "
               .. "again, or give another --out"
  H.eq(user_error(function() ablate.run_grid(spec_of({"a=1", "b=3"}), {runner = fake_runner({}), say = quiet}) end), want)
  -- grid.json removed by hand: the run's own ablate.json still says how it was made
  os.remove(out .. "/grid.json")
  H.eq(user_error(function() ablate.run_grid(spec_of({"a=1", "b=3"}), {runner = fake_runner({}), say = quiet}) end), want)
end)

H.case("results: an rlsc --data summary is named after its config's eval.benchmark", function()
  local out = H.tmpdir() .. "/g"
  local spec = ablate.check({grid = {seed = {1}}, out = out})
  ablate.run_grid(spec, {say = quiet, runner = function(run)
    assert(jsonio.write_json_atomic(run.path .. "/summary.json", {before = {acc = 0.25}, after = {acc = 0.5},
      config = {recipe = "rlsc", data = "train.jsonl", eval = {benchmark = "gsm8k"}}}))
    return true
  end})
  local rows = ablate.collect(spec, ablate.expand(spec), out)
  H.eq(#rows, 1); H.eq(rows[1].benchmark, "gsm8k")
end)

-- (twenty-eighth session, mutation testing of the recipes' command lines)
H.case("results: a toy rlsc summary made before summaries named their benchmark is a toy-<task> row", function()
  local out = H.tmpdir() .. "/g"
  local spec = ablate.check({grid = {seed = {1}}, out = out})
  ablate.run_grid(spec, {say = quiet, runner = function(run)
    assert(jsonio.write_json_atomic(run.path .. "/summary.json", {before = {acc = 0.25}, after = {acc = 0.5},
      config = {recipe = "rlsc", task = "pure"}}))
    return true
  end})
  local rows = ablate.collect(spec, ablate.expand(spec), out)
  H.eq(#rows, 1); H.eq(rows[1].benchmark, "toy-pure", "as its eval records and the report name it")
end)

H.case("a grid value holding a control character (a tab, a newline) is no folder name", function()
  for _, v in ipairs({"a\tb", "x\ny"}) do
    local ok, e = pcall(ablate.check, {grid = {name = {v}}})
    H.ok(not ok and tostring(e):find("cannot be part of a directory name", 1, true), tostring(e))
  end
end)

H.case("command line: --out without a folder, or no out anywhere, is refused", function()
  local dir = H.tmpdir()
  local g = dir .. "/g.lua"
  H.write(g, ("return {grid = {seed = {1}}, out = %q}"):format(dir .. "/from-file"))
  for _, argv in ipairs({{g, "--dry-run", "--out"}, {g, "--dry-run", "--out="}}) do
    H.eq(user_error(function() ablate.main(argv) end), "ablate: --out needs a directory", table.concat(argv, " "))
  end
  H.write(g, "return {grid = {seed = {1}}}")
  for _, flag in ipairs({"--dry-run", "--report-only"}) do
    H.eq(user_error(function() ablate.main({g, flag}) end),
         "ablate: no output directory: set out in " .. g .. " or give --out", flag)
  end
end)

H.case("a grid file that raises a table or a number is said so", function()
  local dir = H.tmpdir()
  H.write(dir .. "/t.lua", "error({})\n")
  H.eq(user_error(function() ablate.load(dir .. "/t.lua") end),
       "ablate: grid file " .. dir .. "/t.lua failed: it raised a table, not a message")
  H.write(dir .. "/n.lua", "error(5)\n")
  H.eq(user_error(function() ablate.load(dir .. "/n.lua") end), "ablate: grid file " .. dir .. "/n.lua failed: 5")
end)

H.case("run_grid: no out is refused; an --out holding a plain folder or a file with '=' is refused", function()
  H.eq(user_error(function() ablate.run_grid(ablate.check({grid = {seed = {1}}}), {say = quiet}) end),
       "ablate: no output directory: set out in the grid file or give --out")
  for _, what in ipairs({"model/", "x=1"}) do
    local out = H.tmpdir() .. "/g"
    if what:sub(-1) == "/" then assert(os.execute("mkdir -p '" .. out .. "/" .. what .. "'"))
    else assert(os.execute("mkdir -p '" .. out .. "'")); H.write(out .. "/" .. what, "x") end
    local e = user_error(function() ablate.run_grid(ablate.check({grid = {seed = {1}}, out = out}), {say = quiet, dry_run = true}) end)
    H.ok(e:find("holds " .. what:gsub("/$", "") .. ", which ablate does not write", 1, true), e)
  end
end)

H.case("results: the title names the grid, a benchmarks list of one names the row, axes left-aligned; done in whole seconds", function()
  local out = H.tmpdir() .. "/g"
  local spec = ablate.check({grid = {alpha = {0}, seed = {1}}, out = out})
  local times, i, lines = {100, 102.4}, 0, {}
  ablate.run_grid(spec, {say = function(s) lines[#lines + 1] = s end, clock = function() i = i + 1; return times[i] end,
    runner = function(run)
      assert(jsonio.write_json_atomic(run.path .. "/summary.json", {before = {acc = 0.25}, after = {acc = 0.5},
        config = {benchmarks = {"gsm8k"}}}))
      return true
    end})
  H.eq(lines[#lines], "ablate: [1/1] alpha=0,seed=1: done in 2s")
  local rows = ablate.write_results(spec, ablate.expand(spec), out, {})
  H.eq(rows[1].benchmark, "gsm8k")
  local md = H.read(out .. "/results.md")
  H.eq(md:match("^[^\n]*"), "# Ablation results: " .. out)
  H.ok(md:find("\n| alpha | benchmark | seeds | acc |\n|---|---|---:|---:|\n| 0 | gsm8k | 1 | 0.500 (Δ +0.250) |\n", 1, true), md)
end)

H.case("run as `confit -- recipes/ablate.lua`, the runs' program is still confit", function()
  local dir = H.tmpdir()
  local g = dir .. "/g.lua"
  H.write(g, ("return {base = {steps = 1}, grid = {seed = {1}}, out = %q}"):format(dir .. "/g"))
  local p = io.popen(("env -u CONFIT_EXE '%s' -- recipes/ablate.lua '%s' --dry-run 2>&1; echo rc=$?"):format(EXE, g))
  local text = p:read("a")
  p:close()
  H.ok(text:find("rc=0", 1, true), text)
  H.ok(text:find("[1/1] seed=1: " .. cli.shell_quote(EXE) .. " recipes/rlsc.lua --out", 1, true), text)
end)

H.case("--report-only: its lock is released when it returns; no metrics yet is said so", function()
  local dir = H.tmpdir()
  local out, g = dir .. "/g", dir .. "/g.lua"
  H.write(g, ("return {grid = {seed = {1}}, out = %q}"):format(out))
  local res = ablate.run_grid(ablate.load(g), {runner = function() return nil, "boom" end, say = quiet})
  H.eq(#res.failed, 1)
  local lines, print0 = {}, print
  print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
  collectgarbage("stop")   -- (a lock left to the collector would be released by chance)
  local ok, code = pcall(ablate.main, {g, "--report-only"})
  local lock_file = io.open(out .. "/.lock", "rb")
  local h = require("confit").lock(out .. "/.lock")
  collectgarbage("restart")
  print = print0
  if lock_file then lock_file:close() end
  if h then h:close() end
  H.ok(ok and code == 0, tostring(code))
  H.eq(lock_file, nil, "the lock file is removed"); H.ok(h, "the folder is free")
  H.eq(lines[1], "ablate: 1 run, 1 row from the finished ones (1 without a summary), metrics: none yet")
end)
end

H.finish()
