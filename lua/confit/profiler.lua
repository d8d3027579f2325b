-- confit.profiler: formatting of the rows of confit.profiler.stop() (lua/l_profile.c) and
-- confit.profile(fn, ...), which profiles one call.
--
--   local rows, result = confit.profile(function() return step() end)
--   print(confit.profiler.report(rows, {top = 15}))
local M = {}

local function core() return require("confit.core").profiler end

-- The seconds a row is ranked by: device time when it has any larger than its host time.
function M.seconds(r)
  if r.device_s and r.device_s > r.host_s then return r.device_s end
  return r.host_s
end

-- Runs fn(...) under the profiler and returns rows, fn's results. The profiler is stopped even
-- when fn raises (the error is raised again, unchanged). fn may not yield (profiler.pcall has no
-- continuation): a yield out of it, to a coroutine that might never resume it, left the profiler
-- on for the rest of the process. A phase fn sets (profiler.phase) ends with it: the phase it
-- found is set again when fn returns or raises, so the next profile is not labelled with it.
function M.run(fn, ...)
  if type(fn) ~= "function" then error("confit.profile: expected a function, got " .. type(fn), 2) end
  local p = core()
  local saved = p.phase("fwd")   -- (phase sets and returns the previous: read, then set back)
  p.phase(saved)
  p.start()
  local res = table.pack(p.pcall(fn, ...))
  p.phase(saved)
  if not res[1] and type(res[2]) == "string" and res[2]:find("attempt to yield across a C-call boundary", 1, true) then
    res[2] = "confit.profile: the profiled function yielded; profile a call that runs to its end"
  end
  local ok_stop, rows = pcall(p.stop)
  if not res[1] then error(res[2], 0) end
  if not ok_stop then error(rows, 0) end
  return rows, table.unpack(res, 2, res.n)
end

-- Sums of rows: {host_s, device_s (nil when no row has device time), calls}.
function M.total(rows)
  local t = {host_s = 0, calls = 0}
  for _, r in ipairs(rows) do
    t.host_s = t.host_s + r.host_s
    t.calls = t.calls + r.calls
    if r.device_s then t.device_s = (t.device_s or 0) + r.device_s end
  end
  return t
end

-- A text table of the largest rows: opts.top (default 25) rows, opts.phase to keep one phase.
function M.report(rows, opts)
  opts = opts or {}
  if type(rows) ~= "table" then error("profiler.report: expected the rows of confit.profiler.stop()", 2) end
  if type(opts) ~= "table" then error("profiler.report: opts must be a table such as {top = 10}, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if k ~= "top" and k ~= "phase" then error(("profiler.report: unknown option %s (options: phase, top)"):format(tostring(k)), 2) end
  end
  for i, r in ipairs(rows) do
    if type(r) ~= "table" or type(r.host_s) ~= "number" or type(r.calls) ~= "number" then
      error(("profiler.report: row %d is not a row of confit.profiler.stop() (phase, name, host_s, calls)"):format(i), 2)
    end
  end
  local top = opts.top or 25
  -- (NaN passed the old "number >= 1" check and printed no rows; 1.5 passed too)
  if type(top) ~= "number" or not math.tointeger(top) or top < 1 then
    error("profiler.report: top must be an integer >= 1 (the rows shown), got " .. require("confit.cli").show(top), 2)
  end
  top = math.tointeger(top)
  local kept = {}
  for _, r in ipairs(rows) do
    if not opts.phase or r.phase == opts.phase then kept[#kept + 1] = r end
  end
  local tot = M.total(kept)
  local out = {string.format("%10s %10s %8s %6s  %-12s %s", "device_ms", "host_ms", "calls", "share", "phase", "name")}
  local all = math.max(tot.device_s or 0, tot.host_s)
  for i = 1, math.min(top, #kept) do
    local r = kept[i]
    out[#out + 1] = string.format("%10s %10.3f %8d %5.1f%%  %-12s %s",
      r.device_s and string.format("%.3f", r.device_s * 1e3) or "-", r.host_s * 1e3, r.calls,
      all > 0 and 100 * M.seconds(r) / all or 0, r.phase, r.name)
  end
  if #kept > top then out[#out + 1] = string.format("(%d more rows)", #kept - top) end
  out[#out + 1] = string.format("%10s %10.3f %8d %6s  %-12s %s",
    tot.device_s and string.format("%.3f", tot.device_s * 1e3) or "-", tot.host_s * 1e3, tot.calls, "", "", "total")
  return table.concat(out, "\n")
end

return M
