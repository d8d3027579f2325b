-- Tiny test harness shared by the Lua tests: named cases, expectations with messages,
-- a closing "N passed, N failed, N skipped" line and an exit status (0 ok, 1 failed, 77 skipped).
local H = {}
local passed, failed, skipped = 0, 0, 0
local current = "?"

-- Every name os.tmpname hands out while a test file runs (its own and those of the library code
-- it calls) is removed, with what was put there, when the file ends through H.finish or
-- H.skip_all: the suite leaves the temporary folder as it found it. CONFIT_KEEP_TMP=1 keeps them
-- (to look at after a run); a file that dies on an error keeps them too.
local temp_names, system_tmpname = {}, os.tmpname
function os.tmpname()
  local name = system_tmpname()
  temp_names[#temp_names + 1] = name
  return name
end
local function remove_temp_names()
  if os.getenv("CONFIT_KEEP_TMP") == "1" or #temp_names == 0 then return end
  local quoted = {}
  for i, name in ipairs(temp_names) do quoted[i] = "'" .. name:gsub("'", "'\\''") .. "'" end
  os.execute("rm -rf -- " .. table.concat(quoted, " ") .. " 2>/dev/null")
  temp_names = {}
end

function H.case(name, fn)
  current = name
  local ok, err = xpcall(fn, debug.traceback)
  if ok then passed = passed + 1
  else failed = failed + 1; io.stderr:write("FAIL ", name, ": ", tostring(err), "\n") end
end

function H.skip(name, why)
  skipped = skipped + 1
  print("SKIP " .. name .. ": " .. why)
end

-- Skip the whole file (exit 77, which ctest reports as skipped).
function H.skip_all(why)
  print("SKIP: " .. why)
  remove_temp_names()
  os.exit(77)
end

function H.ok(cond, msg)
  if not cond then error((msg or "expectation failed"), 2) end
end

function H.eq(a, b, msg)
  if a ~= b then
    error(string.format("%s: expected %s, got %s", msg or "eq", tostring(b), tostring(a)), 2)
  end
end

function H.near(a, b, tol, msg)
  tol = tol or 1e-6
  if not (math.abs(a - b) <= tol * math.max(1, math.abs(b))) then
    error(string.format("%s: expected %.9g, got %.9g (tol %g)", msg or "near", b, a, tol), 2)
  end
end

-- |a - b| <= tol, whatever the size of b (H.near's tolerance grows with |b|).
function H.near_abs(a, b, tol, msg)
  if not (math.abs(a - b) <= tol) then
    error(string.format("%s: expected %.9g, got %.9g (absolute tol %g)", msg or "near_abs", b, a, tol), 2)
  end
end

-- Expect fn to raise an error whose message contains every given fragment (plain find).
function H.raises(fn, ...)
  local ok, err = pcall(fn)
  if ok then error("expected an error, none raised", 2) end
  err = tostring(err)
  for _, frag in ipairs({...}) do
    if not err:find(frag, 1, true) then
      error(string.format("error %q lacks %q", err, frag), 2)
    end
  end
  return err
end

-- The elements of a tensor (any shape) as a flat Lua list, row-major.
function H.flat(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then for _, x in ipairs(v) do walk(x) end else out[#out + 1] = v end
  end
  walk(t:totable())
  return out
end

-- Two lists of numbers agree entry by entry (relative tolerance tol, default 1e-6).
function H.same_list(a, b, tol, msg)
  H.eq(#a, #b, (msg or "list") .. " length")
  for i = 1, #a do H.near(a[i], b[i], tol or 1e-6, (msg or "list") .. " entry " .. i) end
end

-- The path of ../shared/data relative to the project root (tests run from the root).
function H.shared(rel)
  local p = "../shared/data/" .. rel
  local f = io.open(p, "rb")
  if f then f:close(); return p end
  return nil
end

-- The bytes of the file at path, or nil when it cannot be opened.
function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The highest confit CPU bytes in use, over what was in use before, while make() runs n times
-- with Lua's automatic collector stopped (each result dropped at once): what the binding's own
-- allocation pressure (a full GC once new tensor bytes pass max(256 MiB, live bytes)) allows.
function H.peak_without_lua_gc(n, make)
  local confit = require "confit"
  collectgarbage()
  local before, peak = confit.memory().cpu_bytes, 0
  collectgarbage("stop")
  for _ = 1, n do
    local r = make() -- alive while the bytes are read, unreachable after
    peak = math.max(peak, confit.memory().cpu_bytes)
  end
  collectgarbage("restart")
  collectgarbage()
  return peak - before
end

-- A new empty folder under the system's temporary directory (the caller removes it).
function H.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p '" .. d .. "'"))
  return d
end

-- Runs script (Lua text) in a fresh confit process (CONFIT_BUILD_DIR's, else build/confit) under a
-- time limit of `seconds`; returns its output (stdout and stderr), whether it ended by itself (a
-- blocked open, say on a FIFO, shows as a timeout: 124 or 137, not as a stalled suite) and its
-- exit status. The script's file is a temporary name, removed at H.finish.
function H.run_limited(script, seconds)
  local path = os.tmpname()
  H.write(path, script)
  local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
  local exe = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
  local p = assert(io.popen(("timeout %d %s %s 2>&1; echo \"rc=$?\""):format(seconds, q(exe), q(path))))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return (out:gsub("rc=%d+%s*$", "")), rc ~= 124 and rc ~= 137, rc
end

-- Make a FIFO at each path given (mkfifo, coreutils; raises when one cannot be made). The cases
-- that read one run their readers under H.run_limited: an open of a FIFO blocks.
function H.mkfifo(...)
  for _, path in ipairs({...}) do
    local ok = os.execute("mkfifo -- '" .. path:gsub("'", "'\\''") .. "'")
    if not ok then error("mkfifo " .. path .. " failed", 2) end
  end
end

-- Write text to the file at path (raises when it cannot).
function H.write(path, text)
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  f:close()
end

function H.finish()
  print(string.format("%d passed, %d failed, %d skipped", passed, failed, skipped))
  remove_temp_names()
  os.exit(failed == 0 and 0 or 1)
end

return H
