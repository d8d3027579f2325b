-- bench/grade_bench.lua: grading throughput of confit.grade over the reference answers of the
-- six benchmarks in ../shared/data/benchmarks. Each reference is wrapped in a completion
-- ("... The final answer is $\boxed{REF}$"), extracted and judged against itself, and against a
-- reformatted spelling (\dfrac, spaces), in both modes. Prints one JSON line per benchmark and
-- mode plus a total, with the machine's host name and CPU model. Each repeat starts with
-- normalize's memo empty (grade.forget): a reference is normalized once per repeat and reused
-- for its second spelling, as evaluation reuses it for a problem's samples.
-- Run from the project root: build/confit bench/grade_bench.lua [repeats]
require("confit.cli").header_help(arg)
local grade = require "confit.grade"
local bench = require "confit.bench"

local repeats = tonumber(arg and arg[1]) or 3

local function read_first_line(cmd_or_path, is_cmd)
  local f = is_cmd and io.popen(cmd_or_path) or io.open(cmd_or_path, "r")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function host() return (read_first_line("uname -n", true) or "?"):gsub("%s+$", "") end

local function cpu_model()
  local info = read_first_line("/proc/cpuinfo", false) or ""
  return info:match("model name%s*:%s*([^\n]+)") or "?"
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function reformat(r)
  local s = r:gsub("\\frac", "\\dfrac"):gsub(",", ", "):gsub("%+", " + ")
  return s
end

-- Grade every reference `repeats` times; returns answers graded, correct, CPU seconds.
local function run(items, mode)
  local opts = {mode = mode}
  local n, ok = 0, 0
  local t0 = os.clock()
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
  return n, ok, os.clock() - t0
end

local machine = string.format('"host": %s, "cpu": %s', json_string(host()), json_string(cpu_model()))
local all = {}
for _, name in ipairs(bench.names) do
  local items, err = bench.load(name)
  if not items then
    io.stderr:write("grade_bench: ", err, "\n")
    os.exit(77)
  end
  for _, mode in ipairs({"qwen", "strict"}) do
    local n, ok, secs = run(items, mode)
    local t = all[mode] or {n = 0, ok = 0, secs = 0}
    t.n, t.ok, t.secs = t.n + n, t.ok + ok, t.secs + secs
    all[mode] = t
    print(string.format('{"bench": "grade", "dataset": "%s", "mode": "%s", "answers": %d, '
      .. '"judged_equal": %d, "seconds": %.4f, "answers_per_s": %.1f, %s}',
      name, mode, n, ok, secs, n / math.max(secs, 1e-9), machine))
  end
end
-- The slow path: every reference against "\frac{2(REF)}{2}", which no string or number rule
-- settles, so each pair goes through the LaTeX parser and the random-point evaluation.
local n, ok, secs = 0, 0, 0
for _, name in ipairs(bench.names) do
  local items = bench.load(name)
  grade.forget()
  local t0 = os.clock()
  for _, it in ipairs(items) do
    local twice = "\\frac{2(" .. grade.normalize(it.answer) .. ")}{2}"
    n = n + 1
    if grade.equal(twice, it.answer) then ok = ok + 1 end
  end
  secs = secs + os.clock() - t0
end
print(string.format('{"bench": "grade", "dataset": "all", "mode": "qwen-symbolic", "answers": %d, '
  .. '"judged_equal": %d, "seconds": %.4f, "answers_per_s": %.1f, %s}',
  n, ok, secs, n / math.max(secs, 1e-9), machine))
for _, mode in ipairs({"qwen", "strict"}) do
  local t = all[mode]
  print(string.format('{"bench": "grade", "dataset": "all", "mode": "%s", "answers": %d, '
    .. '"judged_equal": %d, "seconds": %.4f, "answers_per_s": %.1f, %s}',
    mode, t.n, t.ok, t.secs, t.n / math.max(t.secs, 1e-9), machine))
end
