-- Activation recomputation on the GPU: the tiny fixtures in f32 and bf16 give the same log-probs
-- and gradients with m:set_recompute(true) as without. Skips (exit 77) without a GPU.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

if not (confit.cuda and confit.cuda.available()) then H.skip_all("no GPU: confit.cuda.available() is false") end

local function ids_for(vocab, B, T, seed)
  local x, rows = seed, {}
  for b = 1, B do
    local r = {}
    for t = 1, T do x = (x * 1103515245 + 12345) % 2147483648; r[t] = x % vocab end
    rows[b] = r
  end
  return confit.tensor(rows, {dtype = "i64"}):cuda()
end

local function run(m, ids, plens, recompute)
  m:set_recompute(recompute)
  local params = m:parameters()
  for _, t in pairs(params) do t.grad = nil end
  local lp = m:logprobs(ids, plens)
  lp:sum():backward()
  local g = {}
  for k, t in pairs(params) do g[k] = t.grad and t.grad:to("cpu", "f32") end
  return lp:to("cpu", "f32"):totable(), g
end

for _, dir in ipairs({"tests/fixtures/tiny_qwen2", "tests/fixtures/tiny_llama", "tests/fixtures/tiny_llama31"}) do
  for _, dt in ipairs({"f32", "bf16"}) do
    H.case(dir:match("[^/]+$") .. " " .. dt .. ": recomputation gives the same gradients", function()
      local m = confit.load(dir)
      m:to("cuda", dt)
      for _, t in pairs(m:parameters()) do t:requires_grad_(true) end
      local ids = ids_for(m.config.vocab_size, 3, 9, 11)
      local la, ga = run(m, ids, {2, 4, 8}, false)
      local lb, gb = run(m, ids, {2, 4, 8}, true)
      -- the recomputed layer runs the same kernels on the same inputs: equal up to the order of
      -- gradient accumulation (tight in f32; bf16 rounds each accumulation)
      local tol = dt == "f32" and 1e-5 or 2e-2
      H.same_list(lb, la, tol, "log-probs")
      for k, a in pairs(ga) do
        local b = gb[k]
        H.ok(b, "gradient of " .. k)
        local d = (a - b):abs():max():item() / math.max(1e-30, a:abs():max():item())
        H.ok(d <= tol, string.format("%s: rel diff %.3g", k, d))
      end
      m:free()
    end)
  end
end

H.finish()
