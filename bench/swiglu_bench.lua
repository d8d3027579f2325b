-- swiglu_bench.lua - the CPU cost of the SwiGLU op, forward and backward (JSON lines).
--
--   OMP_NUM_THREADS=1 build/confit bench/swiglu_bench.lua [--reps 5]
--
-- At the toy world's training shape: gate and up [5120, 336] f32 (micro-batches of 5120 token
-- rows through FFN 336), the op's forward swiglu(gate, up) and the backward of its sum weighted
-- by a fixed random tensor (gradients of both inputs). One line per phase:
--   {"bench":"swiglu","phase":"fwd"|"fwd+bwd","shape":[5120,336],"ms":best of reps,
--    "checksum":.. (the same inputs give the same value before and after a change, to ~1e-6)}
local confit = require "confit"
require("confit.cli").header_help(arg)

local reps = 5
for i = 1, #arg do
  if arg[i] == "--reps" then reps = assert(math.tointeger(tonumber(arg[i + 1])), "--reps N") end
end

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
local encode = require("confit.jsonio").encode
print(encode({bench = "swiglu", phase = "fwd", shape = {R, C}, ms = best * 1e3, checksum = sum}))

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
print(encode({bench = "swiglu", phase = "fwd+bwd", shape = {R, C}, ms = best * 1e3, checksum = sum}))
