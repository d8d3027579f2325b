-- Activation recomputation (m:set_recompute, core/nn/qwen2.c + custom autograd nodes): the same
-- log-probs and gradients as the plain training forward, less memory held between forward and
-- backward, and correct behaviour with partial requires_grad, retain_graph and a freed model.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

local FIX = {"tests/fixtures/tiny_qwen2", "tests/fixtures/tiny_llama", "tests/fixtures/tiny_llama31"}

local function ids_for(m, B, T, seed)
  local v, x, rows = m.config.vocab_size, seed, {}
  for b = 1, B do
    local r = {}
    for t = 1, T do x = (x * 1103515245 + 12345) % 2147483648; r[t] = x % v end
    rows[b] = r
  end
  return confit.tensor(rows, {dtype = "i64"})
end

-- loss and a copy of every parameter gradient (nil where none)
local function run(m, ids, plens, recompute, opts)
  opts = opts or {}
  m:set_recompute(recompute)
  local params = m:parameters()
  for _, t in pairs(params) do t.grad = nil end
  local lp = m:logprobs(ids, plens)
  local loss = lp:sum()
  loss:backward(nil, {retain_graph = opts.retain or false})
  if opts.retain then loss:backward() end
  local g = {}
  for k, t in pairs(params) do g[k] = t.grad and t.grad:clone() or false end
  m:set_recompute(false)
  return lp:totable(), g
end

local function same_grads(a, b, tol, what)
  local n = 0
  for k, ga in pairs(a) do
    local gb = b[k]
    if ga == false or gb == false then
      H.eq(ga == false, gb == false, what .. ": gradient presence of " .. k)
    else
      local scale = math.max(1e-30, ga:abs():max():item())
      local d = (ga - gb):abs():max():item() / scale
      H.ok(d <= tol, string.format("%s: %s differs by %.3g (rel)", what, k, d))
      n = n + 1
    end
  end
  return n
end

for _, dir in ipairs(FIX) do
  local name = dir:match("[^/]+$")

  H.case(name .. ": same log-probs and gradients with recomputation", function()
    local m = confit.load(dir)
    for _, t in pairs(m:parameters()) do t:requires_grad_(true) end
    local ids = ids_for(m, 3, 9, 11)
    local la, ga = run(m, ids, {2, 4, 8}, false)
    local lb, gb = run(m, ids, {2, 4, 8}, true)
    H.same_list(lb, la, 0, "log-probs")
    local n = same_grads(ga, gb, 1e-6, "all parameters")
    H.ok(n == #m:param_names(), "every parameter got a gradient")
  end)

  H.case(name .. ": only some weights train; retain_graph and two backwards", function()
    local m = confit.load(dir)
    local names = m:param_names()
    local params = m:parameters()
    for _, k in ipairs(names) do
      params[k]:requires_grad_(k:find("layers%.1%.") ~= nil or k:find("norm") ~= nil)
    end
    local ids = ids_for(m, 2, 7, 5)
    local _, ga = run(m, ids, {3, 5}, false, {retain = true})
    local _, gb = run(m, ids, {3, 5}, true, {retain = true})
    same_grads(ga, gb, 1e-6, "partial")
    H.ok(gb[names[1]] == false or names[1]:find("norm"), "frozen weights get no gradient")
  end)
end

H.case("recomputation holds less memory between forward and backward", function()
  local m = confit.load("tests/fixtures/tiny_qwen2")
  for _, t in pairs(m:parameters()) do t:requires_grad_(true) end
  local ids = ids_for(m, 8, 64, 3)
  local function held(recompute)
    m:set_recompute(recompute)
    collectgarbage("collect")
    local before = confit.memory().cpu_bytes
    local lp = m:logprobs(ids, {1, 1, 1, 1, 1, 1, 1, 1})
    collectgarbage("collect")
    local after = confit.memory().cpu_bytes
    lp:sum():backward()
    lp = nil
    for _, t in pairs(m:parameters()) do t.grad = nil end
    collectgarbage("collect")
    return after - before
  end
  local plain, rec = held(false), held(true)
  H.ok(plain > 0 and rec > 0, "both hold something")
  H.ok(rec < 0.5 * plain, string.format("recompute holds %d bytes, plain %d", rec, plain))
  print(string.format("held between forward and backward: plain %d bytes, recompute %d bytes", plain, rec))
end)

H.case("no effect without gradients; the model may be freed before backward", function()
  local m = confit.load("tests/fixtures/tiny_qwen2")
  m:set_recompute(true)
  local ids = ids_for(m, 2, 6, 9)
  local lp = m:logprobs(ids, {2, 2})
  H.eq(lp.requires_grad, false, "no parameter requires grad: no graph")
  local params = m:parameters()
  for _, t in pairs(params) do t:requires_grad_(true) end
  local ref_lp, ref_g = run(m, ids, {2, 2}, false)
  m:set_recompute(true)
  for _, t in pairs(params) do t.grad = nil end
  local loss = m:logprobs(ids, {2, 2}):sum()
  m:free()
  collectgarbage("collect")
  loss:backward()
  local g = {}
  for k, t in pairs(params) do g[k] = t.grad and t.grad:clone() or false end
  same_grads(ref_g, g, 1e-6, "after m:free()")
  H.ok(ref_lp[1] < 0, "reference log-prob")
  H.raises(function() m:set_recompute(true) end, "model was freed")
  local m2 = confit.load("tests/fixtures/tiny_qwen2")
  H.raises(function() m2:set_recompute("yes") end, "set_recompute: argument #1 (on): expected a boolean, got string")
  H.eq(m2:set_recompute(true), false, "returns the previous setting")
  H.eq(m2:set_recompute(false), true, "returns the previous setting")
end)

H.finish()
