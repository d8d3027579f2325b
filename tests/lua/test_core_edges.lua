-- Edges of the core that the other tests did not reach (twenty-seventh session, mutation testing
-- of core/tensor.c, core/ops.c and core/optim.c): gradient clipping of bf16 and non-contiguous
-- gradients and the version bump it makes, masked_fill with size-1 mask dims, rmsnorm's eps
-- range, entropy of a 0-d tensor, copy_ between views that overlap through a stride, arange's
-- count for a fractional span and its i32 range, view/reshape's -1, squeeze() of size-0 dims,
-- to_dtype to the same dtype, the broadcast error's dim, AdamW's per-parameter step count in
-- the batched update; cumsum along a dim not the last, NaN in argmax/argmin/logsumexp, min of an
-- empty dim, bf16 matmul on the CPU (twenty-eighth session). Expectations are computed by hand or by naive loops here.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

local flat, same_list = H.flat, H.same_list

H.case("clip_grad_norm over bf16 gradients: the norm of the values, every element scaled", function()
  local a = confit.tensor({1, 1, 1}, {dtype = "bf16", requires_grad = true})
  local b = confit.tensor({1}, {requires_grad = true})
  a.grad = confit.tensor({-3, 4, 0.5}, {dtype = "bf16"})   -- exact in bf16
  b.grad = confit.tensor({-2})
  local want = math.sqrt(9 + 16 + 0.25 + 4)
  H.near(confit.optim.clip_grad_norm({a, b}, 100), want, 1e-12, "below max_norm: the norm")
  same_list(flat(a.grad), {-3, 4, 0.5}, 0, "below max_norm: untouched")
  H.near(confit.optim.clip_grad_norm({a, b}, 1), want, 1e-12, "the norm before clipping")
  local k = 1 / (want + 1e-6)
  local g = flat(a.grad)
  for i, v in ipairs({-3, 4, 0.5}) do
    H.near(g[i], v * k, 2 ^ -8, "bf16 gradient entry " .. i .. " scaled (to bf16 rounding)")
  end
  H.near(flat(b.grad)[1], -2 * k, 1e-6, "the f32 gradient beside it scaled by the same factor")
  H.eq(a.grad:dtype(), "bf16", "the gradient stays bf16")
end)

H.case("clip_grad_norm of a non-contiguous gradient reads and scales its own elements", function()
  local a = confit.tensor({{1, 1}, {1, 1}}, {requires_grad = true})
  local base = confit.tensor({{3, 0, 100}, {0, 4, 100}})
  a.grad = base:narrow(2, 1, 2)                             -- {{3, 0}, {0, 4}}, row stride 3
  H.ok(not a.grad:is_contiguous(), "the gradient is a strided view")
  H.near(confit.optim.clip_grad_norm({a}, 1), 5, 1e-12, "the norm of the view's elements")
  local k = 1 / (5 + 1e-6)
  same_list(flat(a.grad), {3 * k, 0, 0, 4 * k}, 1e-6, "the view's elements scaled")
end)

-- (twenty-eighth session) a strided gradient was replaced by a scaled contiguous copy: the user's
-- view and its base kept the old values, where PyTorch's clip_grad_norm_ scales in place
H.case("clip_grad_norm scales a strided gradient where it lies: its base sees it, a graph that saved it refuses backward", function()
  local a = confit.tensor({{1, 1}, {1, 1}}, {requires_grad = true})
  local base = confit.tensor({{3, 0, 100}, {0, 4, 100}})
  local view = base:narrow(2, 1, 2)
  a.grad = view
  local x = confit.tensor({{1, 1, 1}, {1, 1, 1}}, {requires_grad = true})
  local y = (x * base):sum()                                -- mul saves base for x's gradient
  H.near(confit.optim.clip_grad_norm({a}, 1), 5, 1e-12)
  local k = 1 / (5 + 1e-6)
  same_list(flat(base), {3 * k, 0, 100, 0, 4 * k, 100}, 1e-6, "the base: the view's elements scaled, the rest untouched")
  same_list(flat(view), {3 * k, 0, 0, 4 * k}, 1e-6, "the user's view")
  H.ok(not a.grad:is_contiguous(), "the gradient is still the strided view")
  base:set(1, 1, 7)
  H.eq(a.grad:get(1, 1), 7, "a.grad still shares the base's storage")
  H.raises(function() y:backward() end, "backward", "modified in place")
end)

H.case("clip_grad_norm writes the gradient in place: a graph that saved it refuses backward", function()
  local a = confit.tensor({1, 1}, {requires_grad = true})
  a.grad = confit.tensor({3, 4})
  local x = confit.tensor({1, 2}, {requires_grad = true})
  local y = (x * a.grad):sum()                              -- mul saves a.grad for x's gradient
  confit.optim.clip_grad_norm({a}, 100)                     -- nothing clipped: nothing written
  local z = (x * a.grad):sum()
  confit.optim.clip_grad_norm({a}, 1)
  H.raises(function() y:backward() end, "backward", "modified in place")
  H.raises(function() z:backward() end, "backward", "modified in place")
  -- a graph built after the clipping uses the clipped values
  local w = (x * a.grad):sum()
  w:backward()
  same_list(flat(x.grad), flat(a.grad), 0, "the gradient through the clipped values")
end)

H.case("masked_fill: a mask with size-1 dims broadcasts over them", function()
  local t = confit.tensor({{1, 2, 3}, {4, 5, 6}})
  local function ref(mask, mr, mc, v)
    local out = {}
    for i = 1, 2 do
      for j = 1, 3 do
        local m = mask[mr == 1 and 1 or i][mc == 1 and 1 or j]
        out[#out + 1] = m ~= 0 and v or (i - 1) * 3 + j
      end
    end
    return out
  end
  local m13, m21, m11 = {{1, 0, 1}}, {{0}, {1}}, {{1}}
  same_list(flat(t:masked_fill(confit.tensor(m13), -7)), ref(m13, 1, 3, -7), 0, "mask [1 x 3]")
  same_list(flat(t:masked_fill(confit.tensor(m21), -7)), ref(m21, 2, 1, -7), 0, "mask [2 x 1]")
  same_list(flat(t:masked_fill(confit.tensor(m11), -7)), ref(m11, 1, 1, -7), 0, "mask [1 x 1]")
  H.raises(function() t:masked_fill(confit.ones(2, 2), 0) end, "masked_fill", "does not broadcast", "[2 x 2]", "[2 x 3]")
  H.raises(function() confit.zeros(3):masked_fill(confit.ones(2, 3), 0) end, "masked_fill: mask [2 x 3] does not broadcast to the tensor [3]")
end)

H.case("a broadcast error names the 1-based dim and both sizes", function()
  H.raises(function() return confit.zeros(2, 3) + confit.zeros(2, 4) end,
           "add: shapes [2 x 3] and [2 x 4] do not broadcast (dim 2: 3 vs 4)")
  H.raises(function() return confit.zeros(5, 1, 3) * confit.zeros(4, 2) end, "(dim 3: 3 vs 2)")
end)

H.case("rmsnorm refuses an infinite eps (it would zero every row)", function()
  local x, w = confit.ones(2, 3), confit.ones(3)
  H.raises(function() x:rmsnorm(w, math.huge) end, "rmsnorm", "eps must be finite and >= 0", "inf")
  H.near(flat(x:rmsnorm(w, 1e-6))[1], 1 / math.sqrt(1 + 1e-6), 1e-6, "a finite eps")
end)

H.case("entropy of a 0-d tensor names the missing dim", function()
  H.raises(function() confit.tensor(2):entropy() end, "entropy: needs at least 1 dim, got a 0-d tensor")
end)

H.case("copy_ between views of one storage that overlap through a stride", function()
  for _, dt in ipairs({"f32", "f64", "bf16"}) do
    local a = confit.arange(6, {dtype = dt})
    local src = a:view(3, 2):select(2, 1)                   -- elements 1, 3, 5 (0, 2, 4)
    local dst = a:narrow(1, 4, 3)                           -- elements 4, 5, 6
    dst:copy_(src)
    same_list(flat(a), {0, 1, 2, 0, 2, 4}, 0, dt .. ": the values src held before the copy")
  end
end)

H.case("arange: a fractional span keeps its last value (count = ceil((stop - start) / step))", function()
  same_list(flat(confit.arange(0, 2.5)), {0, 1, 2}, 0, "arange(0, 2.5)")
  same_list(flat(confit.arange(0, 1, 0.3, {dtype = "f64"})), {0, 0.3, 0.6, 0.9}, 1e-12, "arange(0, 1, 0.3)")
  same_list(flat(confit.arange(1, -1.5, -1)), {1, 0, -1}, 0, "arange(1, -1.5, -1)")
  H.raises(function() confit.arange(0, math.huge) end, "arange: invalid range start=0 end=inf step=1")
  H.raises(function() confit.arange(0, 0 / 0, 1) end, "arange: invalid range")
end)

H.case("squeeze() keeps size-0 dims (torch.zeros(2, 0, 1).squeeze() is [2, 0])", function()
  local t = confit.zeros(2, 0, 1)
  local s = t:squeeze()
  H.eq(s:dim(), 2, "two dims left")
  H.eq(s:size(1), 2)
  H.eq(s:size(2), 0)
  H.eq(confit.zeros(1, 0):squeeze():dim(), 1, "[1 x 0] squeezes to [0]")
end)

H.case("view and reshape: one -1 at most, and it must divide the element count", function()
  local a = confit.arange(6)
  for _, op in ipairs({"view", "reshape"}) do
    H.raises(function() return a[op](a, -1, -1) end, op .. ": more than one -1 in the new shape")
    H.raises(function() return a[op](a, -1, 4) end, op .. ": cannot view [6] (6 elements) with 2 dims totalling 4")
    local v = a[op](a, -1, 3)
    H.eq(v:size(1), 2, op .. " {-1, 3}")
    same_list(flat(v), {0, 1, 2, 3, 4, 5}, 0, op .. " values")
  end
end)

H.case("to_dtype to the tensor's own dtype is no copy (ops.def: a copy unless already that dtype)", function()
  local a = confit.tensor({1, 2, 3})
  local b = a:to_dtype("f32")
  b:set(2, 9)
  same_list(flat(a), {1, 9, 3}, 0, "a write through the result reaches the tensor")
  local c = a:to_dtype("f64")
  c:set(1, -1)
  same_list(flat(a), {1, 9, 3}, 0, "another dtype: a copy")
end)

H.case("arange into i32 refuses a last value past the range, not only a first one", function()
  H.raises(function() confit.arange(2147483646, 2147483650, {dtype = "i32"}) end, "arange", "2147483649", "does not fit in i32")
  H.raises(function() confit.arange(-2147483647, -2147483652, -2, {dtype = "i32"}) end, "arange", "-2147483651", "i32")
  same_list(flat(confit.arange(2147483645, 2147483648, {dtype = "i32"})), {2147483645, 2147483646, 2147483647}, 0, "up to INT32_MAX")
end)

-- AdamW updates all of a device's parameters in one batched call; each parameter's own count
-- gives its bias correction (optim.h), also when an earlier parameter had no gradient
H.case("AdamW: a parameter stepped alone counts its own steps for the bias correction", function()
  local h = {lr = 0.1, weight_decay = 0.0, betas = {0.5, 0.9}, eps = 1e-8}
  local p = confit.tensor({1.0, 2.0}, {dtype = "f64", requires_grad = true})
  local q = confit.tensor({-1.0, 0.5}, {dtype = "f64", requires_grad = true})
  local opt = confit.optim.adamw({p, q}, h)
  local ref, m, v = {-1.0, 0.5}, {0, 0}, {0, 0}
  local gs = {{0.3, -0.6}, {-0.9, 0.1}, {0.2, 0.2}}
  for t, g in ipairs(gs) do
    q.grad = confit.tensor(g, {dtype = "f64"})
    opt:step()
    for i = 1, 2 do                                     -- PyTorch's AdamW by hand, wd 0
      m[i] = 0.5 * m[i] + 0.5 * g[i]
      v[i] = 0.9 * v[i] + 0.1 * g[i] * g[i]
      local denom = math.sqrt(v[i]) / math.sqrt(1 - 0.9 ^ t) + 1e-8
      ref[i] = ref[i] - 0.1 / (1 - 0.5 ^ t) * m[i] / denom
    end
    same_list(flat(q), ref, 1e-12, "q after step " .. t)
  end
  local st = opt:state()
  H.eq(st["step.1"], 0, "p never stepped")
  H.eq(st["step.2"], 3, "q stepped 3 times")
  same_list(flat(p), {1.0, 2.0}, 0, "p untouched")
end)

-- (twenty-eighth session, mutation testing of core/cpu/reduce.c and core/cpu/linalg.c)
H.case("cumsum along a dim that is not the last (the op test's random cases missed it)", function()
  -- x [3 x 4] non-contiguous (a transposed [4 x 3]); naive running sums along dim 1 and 2
  local base = confit.tensor({{1, -2, 3}, {4, 0.5, -6}, {7, 8, -9}, {10, 11, 12}}, "f64")
  local x = base:transpose(1, 2)
  local v = x:totable()
  for _, rev in ipairs({false, true}) do
    local got = x:cumsum(1, rev):totable()
    for j = 1, 4 do
      local acc = 0
      for k = 1, 3 do
        local i = rev and 4 - k or k
        acc = acc + v[i][j]
        H.near(got[i][j], acc, 1e-12, ("cumsum dim 1 reverse=%s [%d][%d]"):format(tostring(rev), i, j))
      end
    end
  end
  -- its gradient along dim 1: d sum(cumsum(x) * R) / dx[i][j] = sum of R[k][j] over k >= i
  local xg = confit.tensor(v, {dtype = "f64", requires_grad = true})
  local R = confit.tensor({{1, 2, 3, 4}, {-1, 0.5, 2, 0}, {3, -2, 1, 5}}, "f64")
  ;(xg:cumsum(1) * R):sum():backward()
  local g, r = xg.grad:totable(), R:totable()
  for i = 1, 3 do
    for j = 1, 4 do
      local want = 0
      for k = i, 3 do want = want + r[k][j] end
      H.near(g[i][j], want, 1e-12, ("cumsum gradient [%d][%d]"):format(i, j))
    end
  end
end)

H.case("argmax/argmin with a NaN first and another later point at the first; logsumexp of NaN beside an infinity is NaN", function()
  local nan, inf = 0 / 0, 1 / 0
  local t = confit.tensor({nan, 2, nan, 1})
  H.eq(t:argmax(1):item(), 0, "argmax: the first NaN")
  H.eq(t:argmin(1):item(), 0, "argmin: the first NaN")
  for _, row in ipairs({{nan, inf}, {inf, nan}, {nan, -inf}, {-inf, nan}}) do
    local l = confit.tensor({row}, "f64"):logsumexp(2):item()
    H.ok(l ~= l, ("logsumexp{%s, %s} is NaN, got %s"):format(tostring(row[1]), tostring(row[2]), tostring(l)))
  end
end)

H.case("min and argmin over an empty dim are refused as max and argmax are", function()
  local e = confit.zeros{0, 3}
  for _, op in ipairs({"min", "argmin", "max", "argmax"}) do
    H.raises(function() return e[op](e, 1) end, op .. ": reduction over an empty dim of [0 x 3]")
  end
end)

H.case("matmul of bf16 tensors on the CPU is refused (no bf16 GEMM there), not computed as f32 bytes", function()
  local a = confit.ones({2, 2}, {dtype = "bf16"})
  H.raises(function() return a:matmul(a) end, "matmul: CPU computes in f32 or f64, got bf16")
end)

H.finish()
