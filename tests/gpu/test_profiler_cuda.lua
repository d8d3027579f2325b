-- The profiler on the GPU: CUDA ops and backward rules get device times from CUDA events, and
-- generation under the profiler (eager replay of the step, one region per stage) gives the same
-- tokens as the graph path. Skips (exit 77) without a GPU.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

if not (confit.cuda and confit.cuda.available()) then H.skip_all("no GPU: confit.cuda.available() is false") end

local function by_key(rows)
  local t = {}
  for _, r in ipairs(rows) do t[r.phase .. "/" .. r.name] = r end
  return t
end

H.case("CUDA ops and backward rules have device times", function()
  local a = confit.randn({512, 512}, {seed = 1}):cuda()
  local w = confit.randn({512, 512}, {seed = 2}):cuda()
  w:requires_grad_(true)
  confit.cuda.synchronize()
  local rows = confit.profile(function()
    for _ = 1, 3 do a:matmul(a) end
    a:matmul(w):relu():sum():backward()
  end)
  local k = by_key(rows)
  H.eq(k["fwd/matmul"].calls, 4, "four matmuls")
  H.ok(k["fwd/matmul"].device_s and k["fwd/matmul"].device_s > 0, "matmul device time")
  H.ok(k["bwd/matmul"] and k["bwd/matmul"].device_s, "backward matmul device time")
  H.ok(k["bwd/accumulate"], "gradient accumulation region")
end)

H.case("generation under the profiler equals the graph path; stages have device times", function()
  local m = assert(confit.model_load("tests/fixtures/tiny_qwen2"))
  assert(m:to_device("cuda", "f32"))
  local L = m:config().num_hidden_layers
  local ps = {{1, 2, 3}, {4, 5, 6, 7, 8}}
  local o = {max_new_tokens = 12, temperature = 0.9, n = 2, seed = 7, ignore_eos = true}
  local want = m:generate(ps, o)
  local rows, got = confit.profile(function() return m:generate(ps, o) end)
  local again = m:generate(ps, o)
  for i = 1, #want do
    for t = 1, #want[i].tokens do
      H.eq(got[i].tokens[t], want[i].tokens[t], "profiled sample " .. i .. " token " .. t)
      H.eq(again[i].tokens[t], want[i].tokens[t], "graph after profiling, sample " .. i .. " token " .. t)
    end
  end
  local k = by_key(rows)
  H.eq(k["gen.decode/qkv"].calls, L * 11, "11 decode steps x layers")
  H.eq(k["gen.decode/sample"].calls, 11, "one sampler launch per step")
  for _, s in ipairs({"embed", "rmsnorm", "qkv", "rope_kv", "attention", "attn_combine", "o_proj", "gate_up",
                      "swiglu", "down", "final_norm", "lm_head", "sample"}) do
    local r = k["gen.decode/" .. s]
    H.ok(r and r.device_s and r.device_s >= 0, "decode stage " .. s .. " with a device time")
  end
  H.ok(k["gen.prefill/qkv"], "prefill stages")
  m:free()
end)

H.finish()
