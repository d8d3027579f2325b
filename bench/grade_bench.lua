-- bench/grade_bench.lua: grading throughput of confit.grade over the reference answers of the
-- six benchmarks in ../shared/data/benchmarks. Each reference is wrapped in a completion
-- ("... The final answer is $\boxed{REF}$"), extracted and judged against itself, and against a
-- reformatted spelling (\dfrac, spaces), in both modes. Prints one JSON line per benchmark and
-- mode plus a total, each with the machine's fields (bench/common.lua). Each repeat starts with
-- normalize's memo empty (grade.forget): a reference is normalized once per repeat and reused
-- for its second spelling, as evaluation reuses it for a problem's samples.
-- Times are wall time (confit.clock; the figures bench/README.md quotes from before the machine
-- fields were added are CPU time, os.clock: the same on a quiet machine, this code being
-- single-threaded). Without the benchmark files: a line {"bench":"skip",...}, exit status 77.
-- Run from the project root: build/confit bench/grade_bench.lua [--repeats 3]   (or [repeats])
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local o = B.parse(arg, {repeats = {"int", 3, min = 1, max = 1000, help = "passes over every answer"}},
                  {positional = {"repeats"}})
local grade = require "confit.grade"
local bench = require "confit.bench"
local clock = require("confit.core").clock

local repeats = o.repeats

local function reformat(r)
  local s = r:gsub("\\frac", "\\dfrac"):gsub(",", ", "):gsub("%+", " + ")
  return s
end

-- Grade every reference `repeats` times; returns answers graded, correct, seconds.
local function run(items, mode)
  local opts = {mode = mode}
  local n, ok = 0, 0
  local t0 = clock()
  for _ = 1, repeats do
    grade.forget()               -- every repeat from cold: normalize's memo would answer it
    for _, it in ipairs(items) do
      local r = it.answer
      for _, text in ipairs({"The final answer is $\\boxed{" .. r .. "}$",
                             "So \\boxed{" .. reformat(r) .. "}."}) do
        local a = grade.extract(text, opts)
        n = n + 1
        if grade.equal(a, r, opts) then ok = ok + 1 end
      end
    end
  end
  return n, ok, clock() - t0
end

local function line(dataset, mode, n, ok, secs)
  B.emit({{"bench", "grade"}, {"dataset", dataset}, {"mode", mode}, {"answers", n}, {"judged_equal", ok},
          {"seconds", secs, "%.4f"}, {"answers_per_s", n / math.max(secs, 1e-9), "%.1f"}})
end

local sets = {}
for i, name in ipairs(bench.names) do
  local items, err = bench.load(name)
  if not items then B.skip(err) end
  sets[i] = items
end
local all = {}
for i, name in ipairs(bench.names) do
  for _, mode in ipairs({"qwen", "strict"}) do
    local n, ok, secs = run(sets[i], mode)
    local t = all[mode] or {n = 0, ok = 0, secs = 0}
    t.n, t.ok, t.secs = t.n + n, t.ok + ok, t.secs + secs
    all[mode] = t
    line(name, mode, n, ok, secs)
  end
end
-- The slow path: every reference against "\frac{2(REF)}{2}", which no string or number rule
-- settles, so each pair goes through the LaTeX parser and the random-point evaluation.
local n, ok, secs = 0, 0, 0
for i in ipairs(bench.names) do
  grade.forget()
  local t0 = clock()
  for _, it in ipairs(sets[i]) do
    local twice = "\\frac{2(" .. grade.normalize(it.answer) .. ")}{2}"
    n = n + 1
    if grade.equal(twice, it.answer) then ok = ok + 1 end
  end
  secs = secs + clock() - t0
end
line("all", "qwen-symbolic", n, ok, secs)
for _, mode in ipairs({"qwen", "strict"}) do
  local t = all[mode]
  line("all", mode, t.n, t.ok, t.secs)
end
