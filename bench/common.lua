-- bench/common.lua: what the benchmark scripts share (bench/*.lua; not part of the library).
--
--   local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
--   local o = B.parse(arg, SPEC)                -- SPEC as confit.cli.parse_args takes it
--   B.die("--model '%s': no config.json", dir)  -- one line "<script>: ..." on stderr, exit 1
--   B.int_list(o.ks, "--ks", 0, 64)             -- "0,2,4" -> {0, 2, 4}, else B.die naming --ks
--   B.skip("../shared/data is absent")          -- a JSON line {"bench":"skip",...}, exit 77
--   B.emit({{"bench", "gen"}, {"tok_s", x, "%.1f"}})   -- one JSON line, the machine appended
--
-- Flags (B.parse): confit.cli.parse_args, the recipes' parser: types, min / max / above ranges,
-- choices, --name value or --name=value, --some-name = --some_name, a flag given twice refused.
-- A mistake is one line "<script>: ..." on stderr and exit status 1, before the script has done
-- anything (no traceback). --help or -h anywhere prints the script's leading comment block, then
-- the flags with their defaults and ranges, and exits 0. opts.positional names flags that may
-- also be given as leading bare words, as some scripts took them before (grade_bench.lua 5 is
-- grade_bench.lua --repeats 5).
--
-- Output (B.emit): one JSON object per line, flushed at once. A record is a list of {key, value
-- [, format]} (printed in that order; format: a string.format pattern for that number) or a
-- table (keys sorted). Floats are written in full unless opts.float (e.g. "%.6g") or the field
-- says otherwise, integers as integers; a number that is not finite is written null (JSON has
-- no inf or NaN). Every line ends with the fields of B.machine(), the machine it ran on:
--   host             uname -n
--   cpu              the model name in /proc/cpuinfo
--   cores            the machine's CPUs (nproc --all)
--   threads          the OpenMP threads confit's CPU code runs with: nproc, which counts as
--                    libgomp does (OMP_NUM_THREADS, else the CPUs this process may run on)
--   omp_wait_policy, gomp_spincount   as the environment sets them ("unset" when absent;
--                    confit itself sets GOMP_SPINCOUNT=1000 when neither is given, lua/main.c)
--   load1            the 1-minute load average when the line was printed
-- A record that has one of these keys keeps its own value (the PyTorch lines that
-- toy_bench.lua passes on carry PyTorch's thread count).
local cli = require "confit.cli"
local jsonio = require "confit.jsonio"

local B = {name = "bench"}

local function slurp(path_or_cmd, is_cmd)
  local f = is_cmd and io.popen(path_or_cmd .. " 2>/dev/null") or io.open(path_or_cmd, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function trimmed(s) return s and (s:gsub("^%s+", ""):gsub("%s+$", "")) or nil end

local static   -- the fields that do not change during a run, read once

--- The machine's fields, a list of {key, value} in the order B.emit appends them.
function B.machine()
  if not static then
    local cpu = (slurp("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)")
    static = {
      {"host", trimmed(slurp("uname -n", true)) or "?"},
      {"cpu", cpu or "?"},
      {"cores", math.tointeger(tonumber(trimmed(slurp("nproc --all", true))))},
      {"threads", math.tointeger(tonumber(trimmed(slurp("nproc", true))))},
      {"omp_wait_policy", os.getenv("OMP_WAIT_POLICY") or "unset"},
      {"gomp_spincount", os.getenv("GOMP_SPINCOUNT") or "unset"},
    }
  end
  local out = table.move(static, 1, #static, 1, {})
  out[#out + 1] = {"load1", tonumber((slurp("/proc/loadavg") or ""):match("^(%S+)"))}
  return out
end

--- The OpenMP thread count of B.machine() (nil when nproc could not say).
function B.threads()
  for _, kv in ipairs(B.machine()) do if kv[1] == "threads" then return kv[2] end end
end

local function value_text(v, fmt)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if fmt then return string.format(fmt, v) end
    return jsonio.write_number(v)
  end
  return jsonio.encode(v)
end

--- Print record rec (see the header) as one JSON line with the machine's fields.
function B.emit(rec, opts)
  local fields = {}
  if rec[1] ~= nil then
    fields = rec
  else
    for _, k in ipairs(cli.sorted_keys(rec)) do fields[#fields + 1] = {k, rec[k]} end
  end
  local parts, seen = {}, {}
  local function add(kv)
    local k, v = kv[1], kv[2]
    local fmt = type(kv[3]) == "string" and kv[3] or (math.type(v) == "float" and opts and opts.float) or nil
    parts[#parts + 1] = jsonio.encode(k) .. ":" .. value_text(v, fmt)
    seen[k] = true
  end
  for _, kv in ipairs(fields) do add(kv) end
  for _, kv in ipairs(B.machine()) do if not seen[kv[1]] then add(kv) end end
  print("{" .. table.concat(parts, ",") .. "}")
  io.stdout:flush()
end

--- End the script with one line "<script>: <fmt formatted>" on stderr and exit status 1.
function B.die(fmt, ...)
  io.stdout:flush()
  io.stderr:write(B.name, ": ", string.format(fmt, ...), "\n")
  os.exit(1)
end

--- The whole numbers in min .. max of a comma-separated flag value ("8,32" -> {8, 32}); anything
--- else ends the script with one line naming flag ("--ks").
function B.int_list(text, flag, min, max)
  local out = {}
  for item in (text .. ","):gmatch("([^,]*),") do
    local v = math.tointeger(tonumber(item))
    if not v or v < min or v > max then
      B.die("%s wants whole numbers in %d .. %d separated by commas, got '%s'", flag, min, max, text)
    end
    out[#out + 1] = v
  end
  return out
end

--- End the script with a line {"bench":"skip","script":...,"reason":...} and exit status 77
--- (the tests' "skipped"): what it measures is not here (a data file, a GPU).
function B.skip(reason, extra)
  local rec = {{"bench", "skip"}, {"script", B.name}, {"reason", reason}}
  for _, kv in ipairs(extra or {}) do rec[#rec + 1] = kv end
  B.emit(rec)
  os.exit(77)
end

--- The flags of argv after spec (confit.cli.parse_args); see the header. Returns the options
--- table (o.given: the flags given).
function B.parse(argv, spec, opts)
  local src = debug.getinfo(2, "S").source
  local path = src:sub(1, 1) == "@" and src:sub(2) or "bench/script.lua"
  local prog = path:match("(bench/[^/]+%.lua)$") or path
  B.name = cli.name_of(prog)
  local positional = opts and opts.positional or {}
  for _, a in ipairs(argv) do
    if a == "--help" or a == "-h" then
      if cli.print_header(path) then print() end
      local notes
      if #positional > 0 then
        notes = ("  (leading words without -- are, in order: --%s)"):format(table.concat(positional, ", --"))
      end
      cli.parse_args({"--help"}, spec, prog, notes)   -- prints the flags, exits
    end
  end
  local args, i = {}, 1
  while i <= #positional and argv[i] ~= nil and argv[i]:sub(1, 1) ~= "-" do
    args[i] = "--" .. positional[i] .. "=" .. argv[i]
    i = i + 1
  end
  table.move(argv, i, #argv, #args + 1, args)
  B.machine()   -- read before the script allocates (a fork of a large process costs)
  local ok, o = pcall(cli.parse_args, args, spec, prog)
  if not ok then
    if cli.is_user_error(o, B.name) then
      io.stdout:flush()
      io.stderr:write(cli.message(o), "\n")
      os.exit(1)
    end
    error(o, 0)
  end
  return o
end

return B
