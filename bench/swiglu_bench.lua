-- swiglu_bench.lua - the CPU cost of the SwiGLU op, forward and backward (JSON lines).
--
--   OMP_NUM_THREADS=1 build/confit bench/swiglu_bench.lua [--reps 5]
--
-- At the toy world's training shape: gate and up [5120, 336] f32 (micro-batches of 5120 token
-- rows through FFN 336), the op's forward swiglu(gate, up) and the backward of its sum weighted
-- by a fixed random tensor (gradients of both inputs). One line per phase:
--   {"bench":"swiglu","phase":"fwd"|"fwd+bwd","shape":[5120,336],"ms":best of reps,
--    "checksum":.. (the same inputs give the same value before and after a change, to ~1e-6)}
-- Times are wall time (confit.clock); every line ends with the machine's fields
-- (bench/common.lua).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local o = B.parse(arg, {reps = {"int", 5, min = 1, max = 1000, help = "best of this many runs"}})
local confit = require "confit"

local reps = o.reps

local R, C = 5120, 336
local g0 = confit.randn({R, C}, {seed = 1}) * 2
local u0 = confit.randn({R, C}, {seed = 2})
local w = confit.randn({R, C}, {seed = 3})

local best, sum = math.huge, 0
for _ = 1, reps do
  local t0 = confit.clock()
  local y = g0:swiglu(u0)
  best = math.min(best, confit.clock() - t0)
  sum = y:sum():item()
end
B.emit({bench = "swiglu", phase = "fwd", shape = {R, C}, ms = best * 1e3, checksum = sum})

best = math.huge
for _ = 1, reps do
  local g, u = g0:clone(), u0:clone()
  g.requires_grad, u.requires_grad = true, true
  local t0 = confit.clock()
  local loss = (g:swiglu(u) * w):sum()
  loss:backward()
  best = math.min(best, confit.clock() - t0)
  sum = g.grad:sum():item() + u.grad:sum():item()
end
B.emit({bench = "swiglu", phase = "fwd+bwd", shape = {R, C}, ms = best * 1e3, checksum = sum})
