-- confit.progress: progress of a long loop (sampling, evaluation, training steps).
--
-- On a terminal: one bar redrawn in place with count, percent, rate and ETA.
-- Otherwise (logs, CI, pipes): plain lines, one each time another `every` fraction of the
-- total is done (default 10%) or `interval_s` seconds have passed (default 30), plus a final
-- line. Nothing is printed to stdout; the default stream is stderr.
--
--   local progress = require "confit.progress"
--   local p = progress.new{total = #questions, label = "eval"}
--   for i, q in ipairs(questions) do ...; p:step(1, "acc 0.41") end
--   p:finish()
--
-- Terminal detection: TERM set and not "dumb", and `test -t 2` (stderr is a tty) succeeds; the
-- answer is computed once per process. CONFIT_PROGRESS=bar|plain|off overrides it.
-- Time: a wall clock in seconds; confit.core.clock() (monotonic) when the C module provides one, else
-- os.time() (1 s resolution, enough for rates over long loops). opts.clock replaces it.
local M = {}

local tty_cache

-- Whether stderr is an interactive terminal (cached).
function M.is_tty()
  if tty_cache == nil then
    local term = os.getenv("TERM")
    tty_cache = term ~= nil and term ~= "" and term ~= "dumb" and os.execute("test -t 2") == true
  end
  return tty_cache
end

local function default_clock()
  local ok, core = pcall(require, "confit.core")
  if ok and type(core) == "table" and type(core.clock) == "function" then return core.clock end
  return os.time
end

-- "1:02:03", "2:03", "5s"
function M.format_duration(s)
  if s == nil or s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s < 60 then return string.format("%ds", s) end
  local h, m = s // 3600, (s % 3600) // 60
  if h > 0 then return string.format("%d:%02d:%02d", h, m, s % 60) end
  return string.format("%d:%02d", m, s % 60)
end

local function format_rate(r, unit)
  if r == nil or r ~= r or r == math.huge then return "? " .. unit .. "/s" end
  if r >= 100 then return string.format("%.0f %s/s", r, unit) end
  if r >= 1 then return string.format("%.2f %s/s", r, unit) end
  if r > 0 then return string.format("%.1f s/%s", 1 / r, unit) end
  return "0 " .. unit .. "/s"
end

local Progress = {}
Progress.__index = Progress
Progress.__name = "confit.progress"

-- opts: total (nil = unknown), label, unit ("it"), stream (io.stderr; anything with :write),
-- mode ("bar" | "plain" | "off"; default from the terminal test), every (0.1), interval_s (30),
-- width (bar characters, 30), clock (function returning seconds).
function M.new(opts)
  opts = opts or {}
  local mode = opts.mode or os.getenv("CONFIT_PROGRESS")
  if mode == nil or mode == "" then mode = M.is_tty() and "bar" or "plain" end
  if mode ~= "bar" and mode ~= "plain" and mode ~= "off" then
    error("progress: mode must be 'bar', 'plain' or 'off', got " .. tostring(mode), 2)
  end
  if opts.total ~= nil and (type(opts.total) ~= "number" or opts.total < 0) then
    error("progress: total must be a number >= 0 or nil", 2)
  end
  local clock = opts.clock or default_clock()
  local p = setmetatable({
    total = opts.total, label = opts.label or "progress", unit = opts.unit or "it",
    stream = opts.stream or io.stderr, mode = mode, every = opts.every or 0.1,
    interval_s = opts.interval_s or 30, width = opts.width or 30, clock = clock,
    done = 0, t0 = clock(), last_line_t = nil, next_frac = opts.every or 0.1,
    last_draw = nil, finished = false, extra = nil,
  }, Progress)
  p.last_line_t = p.t0
  return p
end

-- Items per second so far, and seconds left (nil when unknown).
function Progress:rate_eta()
  local dt = self.clock() - self.t0
  local rate = dt > 0 and self.done / dt or nil
  local eta
  if self.total and rate and rate > 0 then eta = math.max(0, self.total - self.done) / rate end
  return rate, eta, dt
end

function Progress:_text(final)
  local rate, eta, dt = self:rate_eta()
  local parts = {self.label}
  if self.mode == "bar" and self.total and self.total > 0 then
    local frac = math.min(1, self.done / self.total)
    local full = math.floor(frac * self.width + 0.5)
    parts[#parts + 1] = "[" .. string.rep("#", full) .. string.rep(".", self.width - full) .. "]"
  end
  if self.total then
    local pct = self.total > 0 and 100 * self.done / self.total or 100
    parts[#parts + 1] = string.format("%d/%d (%3.0f%%)", self.done, self.total, pct)
  else
    parts[#parts + 1] = string.format("%d", self.done)
  end
  parts[#parts + 1] = format_rate(rate, self.unit)
  if final then parts[#parts + 1] = "in " .. M.format_duration(dt)
  elseif self.total then parts[#parts + 1] = "ETA " .. M.format_duration(eta) end
  if self.extra and self.extra ~= "" then parts[#parts + 1] = self.extra end
  return table.concat(parts, "  ")
end

function Progress:_emit(final)
  if self.mode == "off" then return end
  if self.mode == "bar" then
    self.stream:write("\r", self:_text(final), "\27[K", final and "\n" or "")
  else
    self.stream:write(self:_text(final), "\n")
  end
  if self.stream.flush then self.stream:flush() end
end

-- Set the number of items done (and an optional text shown after the numbers).
function Progress:update(done, extra)
  if self.finished then return end
  self.done = done
  if extra ~= nil then self.extra = extra end
  if self.mode == "bar" then
    local now = self.clock()
    -- redraw at most ~10 times a second when the clock can tell, always on coarse clocks
    if self.last_draw == nil or now - self.last_draw >= 0.1 or now == math.floor(now) then
      self.last_draw = now
      self:_emit(false)
    end
  elseif self.mode == "plain" then
    local now = self.clock()
    local due = now - self.last_line_t >= self.interval_s
    if self.total and self.total > 0 and done / self.total >= self.next_frac - 1e-12 then
      due = true
      while self.next_frac <= done / self.total + 1e-12 do
        self.next_frac = self.next_frac + self.every
      end
    end
    if due and not (self.total and done >= self.total) then
      self.last_line_t = now
      self:_emit(false)
    end
  end
end

-- Advance by k items (default 1).
function Progress:step(k, extra)
  self:update(self.done + (k or 1), extra)
end

-- Print the final line (count, rate, total time). Idempotent.
function Progress:finish(extra)
  if self.finished then return end
  if extra ~= nil then self.extra = extra end
  self:_emit(true)
  self.finished = true
end

return M
