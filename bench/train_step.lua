-- train_step.lua - forward + backward of one training step on the CPU (JSON line): a random
-- Qwen2 of 4 layers, hidden 512 (8/2 heads, FFN 1408, vocab 8000, tied; 15.4M parameters) scoring
-- 4 rows of 128 tokens (prompt 16) with model:logprobs, then backward. Median and best of --reps
-- steps after one warm-up. For before/after comparisons of core changes: build both trees and run
-- them back to back on the same machine (see bench/README.md).
--
--   build/confit bench/train_step.lua [--reps 7] [--recompute] [--profile]
--
-- Times are wall time (confit.clock); the line ends with the machine's fields (bench/common.lua).
-- --profile's table goes to stderr, so the standard output stays JSON.
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local opt = B.parse(arg, {
  reps = {"int", 7, min = 1, max = 1000, help = "timed steps after the warm-up"},
  recompute = {"flag", false, help = "activation recomputation"},
  profile = {"flag", false, help = "the profiler's table of one more step, on stderr"},
})
local confit = require "confit"

local cfg = [[{"model_type":"qwen2","hidden_size":512,"intermediate_size":1408,"num_hidden_layers":4,
  "num_attention_heads":8,"num_key_value_heads":2,"vocab_size":8000,"max_position_embeddings":4096,
  "rms_norm_eps":1e-6,"rope_theta":10000,"tie_word_embeddings":true}]]
local m = confit.model_new(cfg)
for _, t in pairs(m:parameters()) do t:copy_(confit.randn(t:shape(), {seed = 1}) * 0.02); t:requires_grad_(true) end
if m.set_recompute then m:set_recompute(opt.recompute) end
local ROWS, T = 4, 128
local rows = {}
for b = 1, ROWS do
  local r = {}
  for t = 1, T do r[t] = (b * 131 + t * 7) % 8000 end
  rows[b] = r
end
local ids = confit.tensor(rows, {dtype = "i64"})
local plens = {16, 16, 16, 16}
local function step()
  for _, t in pairs(m:parameters()) do t.grad = nil end
  local lp = m:logprobs(ids, plens, 1.0)
  lp:sum():neg():backward()
end
step()
local ts = {}
for i = 1, opt.reps do
  local t0 = confit.clock()
  step()
  ts[i] = confit.clock() - t0
end
table.sort(ts)
local nparams = 0
for _, t in pairs(m:parameters()) do nparams = nparams + t:numel() end
B.emit({{"bench", "train_step_cpu"}, {"params", nparams}, {"tokens", ROWS * T}, {"recompute", opt.recompute},
        {"median_ms", 1e3 * ts[(#ts + 1) // 2], "%.1f"}, {"best_ms", 1e3 * ts[1], "%.1f"}, {"reps", opt.reps}})
if opt.profile and confit.profile then
  local prows = confit.profile(step)
  io.stderr:write(confit.profiler.report(prows, {top = 15}), "\n")
end
