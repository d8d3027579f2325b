-- test_cuda_ops.lua - every op of confit.ops on the GPU against the CPU, forward and backward,
-- on the same seeded random inputs, plus the CUDA runtime (allocator, memory(), OOM, t:to,
-- optimizer kernels). Skips (exit 77) when confit.cuda.available() is false.
--
-- For each op (iterating confit.ops) and each of its variants: f32 and bf16, contiguous and
-- non-contiguous inputs, odd sizes (17, 33, 129). bf16 runs feed both sides the same
-- bf16-rounded values (the CPU computes in f32 on them). The backward check seeds
-- loss = sum(out * R) with a random R and compares the gradients of every float input.
-- Tolerances: |gpu - cpu| <= atol + rtol |cpu| elementwise with
--   f32:  rtol 1e-5, atol 1e-6 + 2e-5 max|cpu|
--   bf16: rtol 0.08, atol 1e-4 + 0.02 max|cpu|   (llm.c's 1e-4 + 8% plus a scale term for
--         gradients that went through bf16 cancellations)
-- Timings (attention, matmul) are printed for information only.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

if not confit.cuda.available() then
  local _, why = confit.cuda.device_name()
  H.skip_all("no usable GPU: confit.cuda.available() is false (" .. tostring(why) .. ")")
end
print("device: " .. confit.cuda.device_name())

-- ---------------------------------------------------------------- helpers

local function rn(shape, seed, scale)
  local t = confit.randn(shape, {seed = seed})
  if scale then t = t * scale end
  return t
end
local function ru(shape, seed, lo, hi) return confit.rand(shape, {seed = seed}) * (hi - lo) + lo end
local function ints(n, lo, hi, seed, shape, neg_every)
  math.randomseed(seed)
  local v = {}
  for i = 1, n do
    v[i] = math.random(lo, hi)
    if neg_every and i % neg_every == 0 then v[i] = -1 end
  end
  local t = confit.tensor(v, {dtype = "i64"})
  if shape then t = t:view(shape) end
  return t
end
local function mask01(shape, seed)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return ints(n, 0, 1, seed, shape):to_dtype("i32")
end

local function is_float(t) local d = t:dtype(); return d == "f32" or d == "bf16" or d == "f64" end

-- the same values with transposed strides (last two dims), as a fresh leaf
local function noncontig(t)
  if t:dim() < 2 then return t end
  return t:transpose(-1, -2):contiguous():transpose(-1, -2)
end

local function fmt_shape(t) return "[" .. table.concat(t:shape(), " x ") .. "]" end

-- elementwise |got - ref| <= atol + rtol |ref| (got on any device/dtype, ref CPU f32)
local function check_close(what, got, ref, dt)
  H.ok(got ~= nil, what .. ": missing on the GPU side")
  got = got:cpu()
  if not is_float(ref) then
    H.eq(fmt_shape(got), fmt_shape(ref), what .. " shape")
    if ref:numel() == 0 then return end
    local d = (got:to_dtype("f64") - ref:to_dtype("f64")):abs():max():item()
    H.ok(d == 0, string.format("%s: integer outputs differ (max |diff| %g)", what, d))
    return
  end
  got = got:to("f32")
  ref = ref:to("f32")
  H.eq(fmt_shape(got), fmt_shape(ref), what .. " shape")
  if ref:numel() == 0 then return end
  local maxabs = ref:abs():max():item()
  local rtol, atol
  if dt == "f32" then rtol, atol = 1e-5, 1e-6 + 2e-5 * maxabs
  else rtol, atol = 0.08, 1e-4 + 0.02 * maxabs end
  local diff = (got - ref):abs()
  local excess = (diff - ref:abs() * rtol - atol):max():item()
  if not (excess <= 0) then
    error(string.format("%s (%s): max |gpu - cpu| = %.3g, max |cpu| = %.3g, tolerance exceeded by %.3g",
      what, dt, diff:max():item(), maxabs, excess), 0)
  end
end

-- ---------------------------------------------------------------- op cases
-- Each case: make() -> inputs (CPU; float ones f32), extra args; list = true when the inputs go
-- in as one table (cat, stack); call(ins, args) when the spec mixes them (gather); nc(t) makes a non-contiguous copy (default: transposed strides);
-- nograd = true for ops without gradients.

local cases = {}
local function add(name, c) cases[name] = cases[name] or {}; table.insert(cases[name], c) end

for _, op in ipairs({"add", "sub", "mul", "div", "maximum", "minimum", "swiglu"}) do
  add(op, {make = function() return {rn({17, 33}, 1), rn({33}, 2)}, {} end})
  add(op, {make = function() return {rn({3, 17, 33}, 3), rn({17, 1}, 4)}, {} end})
end
add("div", {make = function() return {rn({17, 33}, 5), ru({17, 33}, 6, 0.5, 2)}, {} end})
add("pow", {make = function() return {ru({17, 33}, 7, 0.5, 2), rn({33}, 8)}, {} end})
add("where", {make = function() return {mask01({17, 33}, 9), rn({17, 33}, 10), rn({1, 33}, 11)}, {} end})
add("masked_fill", {make = function() return {rn({17, 33}, 12), mask01({33}, 13)}, {0.5} end})
for _, op in ipairs({"neg", "exp", "abs", "silu", "sigmoid", "tanh", "gelu", "relu"}) do
  add(op, {make = function() return {rn({17, 129}, 14)}, {} end})
end
for _, op in ipairs({"expm1", "sin", "cos"}) do
  add(op, {make = function() return {rn({17, 129}, 204)}, {} end})
end
add("sign", {nograd = true, make = function() local x = rn({17, 129}, 205); return {x - x:clamp(-0.3, 0.3)}, {} end})
add("log1p", {make = function() return {ru({17, 129}, 206, -0.5, 3)}, {} end})
-- comparisons: ties (x against its clamp), broadcasting, integer ids against a number and
-- against floats (any dtypes meet as numbers)
for _, op in ipairs({"eq", "ne", "lt", "le", "gt", "ge"}) do
  add(op, {nograd = true, make = function() local x = rn({17, 33}, 200); return {x, x:clamp(-0.5, 0.5)}, {} end})
  add(op, {nograd = true, make = function() return {rn({3, 17, 33}, 201), rn({17, 1}, 202)}, {} end})
  add(op, {nograd = true, out_dtype = "f32", make = function() return {ints(51, 0, 9, 203, {3, 17})}, {4} end})
  add(op, {nograd = true, out_dtype = "f32", make = function() return {ints(51, 0, 3, 207, {3, 17}), ru({17}, 208, 0, 3)}, {} end})
end
for _, op in ipairs({"log", "sqrt", "rsqrt"}) do
  add(op, {make = function() return {ru({17, 129}, 15, 0.2, 3)}, {} end})
end
-- bounds exactly representable in bf16: the shared backward rule passes the gradient where
-- out == x, so a bound that rounds in bf16 flips the decision for inputs within half an ulp of it
add("clamp", {make = function() return {rn({17, 129}, 16)}, {-0.5, 0.625} end})
add("clamp", {make = function() return {rn({33, 17}, 17)}, table.pack(nil, 0.3125) end})

for _, op in ipairs({"sum", "mean", "max", "var"}) do
  add(op, {make = function() return {rn({17, 33, 5}, 18)}, {} end})
  add(op, {make = function() return {rn({17, 33, 5}, 19)}, {2, true} end})
  add(op, {make = function() return {rn({17, 129}, 20)}, {-1} end})
end
-- long columns (the tiled column sum of reduce.cu: n >= 256, inner > 1), as a bias gradient is
for _, op in ipairs({"sum", "mean"}) do
  add(op, {make = function() return {rn({3, 700, 33}, 186)}, {2} end})
  add(op, {make = function() return {rn({1300, 40}, 187)}, {1, true} end})
end
add("add", {make = function() return {rn({1300, 40}, 188), rn({40}, 189)}, {} end})
-- the elementwise fast paths: a repeated row as the first operand, dense operands with a tail
add("sub", {make = function() return {rn({40}, 190), rn({1300, 40}, 191)}, {} end})
add("swiglu", {make = function() return {rn({17, 129}, 192), rn({17, 129}, 193)}, {} end})
add("argmax", {nograd = true, make = function() return {rn({17, 33, 5}, 21)}, {2} end})
add("argmax", {nograd = true, make = function() return {rn({17, 129}, 22)}, {} end})
for _, op in ipairs({"min", "argmin"}) do
  local ng = op == "argmin" or nil
  add(op, {nograd = ng, make = function() return {rn({17, 33, 5}, 210)}, {2} end})
  add(op, {nograd = ng, make = function() return {rn({17, 129}, 211)}, {} end})
  add(op, {nograd = ng, make = function() return {rn({17, 33, 5}, 212)}, {3, true} end})
end
-- sort runs on a host copy: values and indices as the CPU's, the gradient through argsort + gather
for _, op in ipairs({"sort", "argsort"}) do
  local ng = op == "argsort" or nil
  add(op, {nograd = ng, make = function() return {rn({17, 33, 5}, 216)}, {2} end})
  add(op, {nograd = ng, make = function() return {rn({17, 129}, 217)}, {-1, true} end})
end
add("cumsum", {make = function() return {rn({17, 33, 5}, 213)}, {2} end})
add("cumsum", {make = function() return {rn({17, 129}, 214)}, {-1, true} end})
add("cumsum", {make = function() return {rn({5, 300}, 215)}, {1} end})
add("logsumexp", {make = function() return {rn({17, 33, 5}, 23)}, {2, true} end})
add("logsumexp", {make = function() return {rn({17, 129}, 24)}, {-1} end})
for _, op in ipairs({"softmax", "log_softmax"}) do
  add(op, {make = function() return {rn({17, 33, 5}, 25)}, {2} end})
  add(op, {make = function() return {rn({17, 129}, 26, 3)}, {-1} end})
end

add("matmul", {make = function() return {rn({3, 17, 33}, 27), rn({33, 129}, 28)}, {} end})
add("matmul", {make = function() return {rn({2, 3, 17, 33}, 29), rn({2, 1, 33, 5}, 30)}, {} end})
add("matmul", {make = function() return {rn({17, 33}, 31), rn({129, 33}, 32):transpose(1, 2):contiguous()}, {} end,
               nc = function(t) return t:dim() == 2 and t:transpose(1, 2):contiguous():transpose(1, 2) or t end})
add("embedding", {make = function() return {rn({129, 33}, 33), ints(51, 0, 128, 34, {3, 17})}, {} end})
add("embedding", {make = function() return {rn({17, 64}, 35), ints(40, 0, 16, 36, {40})}, {} end})
local function gather_call(ins, args) return confit.gather(ins[1], args[1], ins[2]) end  -- "T d I"
add("gather", {call = gather_call, make = function() return {rn({17, 33}, 37), ints(85, 0, 32, 38, {17, 5})}, {2} end})
add("gather", {call = gather_call, make = function() return {rn({17, 33}, 39), ints(99, 0, 16, 40, {3, 33})}, {1} end})
add("cat", {list = true, make = function() return {rn({17, 5}, 41), rn({17, 3}, 42), rn({17, 33}, 43)}, {2} end})
add("cat", {list = true, make = function() return {rn({5, 17}, 44), rn({3, 17}, 45)}, {1} end})
add("stack", {list = true, make = function() return {rn({17, 33}, 46), rn({17, 33}, 47)}, {1} end})
add("stack", {list = true, make = function() return {rn({17, 33}, 48), rn({17, 33}, 49)}, {3} end})
add("rmsnorm", {make = function() return {rn({3, 17, 129}, 50), ru({129}, 51, 0.5, 1.5)}, {1e-6} end})
add("rmsnorm", {make = function() return {rn({129, 33}, 52), ru({33}, 53, 0.5, 1.5)}, {1e-5} end})
add("rope", {make = function() return {rn({2, 3, 17, 64}, 54), ints(17, 0, 4000, 55)}, {10000} end})
add("rope", {make = function() return {rn({2, 3, 17, 32}, 56), ints(34, 0, 100, 57, {2, 17})}, {1000000} end})
-- Llama 3.1's rope scaling (factor 8, low 1, high 4, original 8192): at head_dim 128 and theta 5e5
-- the pairs fall in all three bands
add("rope", {make = function() return {rn({2, 3, 17, 128}, 58), ints(17, 0, 20000, 59)}, {500000, 8, 1, 4, 8192} end})

local function attn_nc(t)  -- [B,H,T,D] with the strides of a [B,T,H,D] tensor (the model's layout)
  if t:dim() ~= 4 then return t end
  return t:transpose(2, 3):contiguous():transpose(2, 3)
end
add("attention", {nc = attn_nc, make = function()
  return {rn({2, 4, 17, 64}, 58), rn({2, 2, 33, 64}, 59), rn({2, 2, 33, 32}, 60)}, {} end})
add("attention", {nc = attn_nc, make = function()
  return {rn({1, 4, 129, 128}, 61), rn({1, 4, 129, 128}, 62), rn({1, 4, 129, 128}, 63)}, {} end})
add("attention", {nc = attn_nc, make = function()   -- mask, not causal, explicit scale
  return {rn({2, 2, 17, 32}, 64), rn({2, 1, 33, 32}, 65), rn({2, 1, 33, 32}, 66), mask01({17, 33}, 67)},
         {0.3, false} end})
add("attention", {nc = attn_nc, make = function()   -- mask and causal; some rows fully masked
  local m = mask01({2, 1, 17, 17}, 68)
  return {rn({2, 2, 17, 16}, 69), rn({2, 2, 17, 16}, 70), rn({2, 2, 17, 16}, 71), m}, table.pack(nil, true) end})
add("cross_entropy", {make = function() return {rn({33, 129}, 72, 2), ints(33, 0, 128, 73, nil, 5)}, {} end})
add("cross_entropy", {make = function() return {rn({3, 17, 33}, 74), ints(51, 0, 32, 75, {3, 17})}, {} end})
add("token_logprob", {make = function() return {rn({3, 17, 129}, 76, 2), ints(51, 0, 128, 77, {3, 17}, 7)}, {0.7} end})
add("token_logprob", {make = function() return {rn({33, 65}, 78), ints(33, 0, 64, 79)}, {} end})
-- log-probs come out in f32 for bf16 inputs too (out_dtype)
add("head_logprob", {out_dtype = "f32", make = function() return {rn({33, 64}, 80), rn({129, 64}, 81, 0.3), ints(33, 0, 128, 82, nil, 6)}, {1.3} end})
add("head_logprob", {out_dtype = "f32", make = function() return {rn({17, 33}, 83), rn({65, 33}, 84, 0.5), ints(17, 0, 64, 85)}, {} end})
add("head_entropy", {out_dtype = "f32", make = function() return {rn({33, 64}, 86), rn({129, 64}, 87, 0.3)}, {0.7} end})
add("head_entropy", {out_dtype = "f32", make = function() return {rn({17, 33}, 88), rn({65, 33}, 89, 0.5)}, {} end})
add("entropy", {make = function() return {rn({17, 129}, 86, 2)}, {0.9} end})
add("entropy", {make = function() return {rn({3, 5, 33}, 87)}, {} end})

add("narrow", {make = function() return {rn({17, 33}, 88)}, {2, 4, 9} end})
add("select", {make = function() return {rn({17, 33, 5}, 89)}, {2, -3} end})
add("transpose", {make = function() return {rn({17, 33, 5}, 90)}, {1, 3} end})
add("permute", {make = function() return {rn({17, 33, 5}, 91)}, {{3, 1, 2}} end})
add("view", {make = function() return {rn({17, 33}, 92)}, {{33, 17}} end, nc = function(t) return t end})
add("reshape", {make = function() return {rn({17, 33}, 93)}, {{3, 11, 17}} end})
add("expand", {make = function() return {rn({17, 1}, 94)}, {{5, 17, 33}} end})
add("squeeze", {make = function() return {rn({17, 1, 33}, 95)}, {2} end})
add("squeeze", {make = function() return {rn({17, 1, 33, 1}, 218)}, {} end})   -- every size-1 dim
add("unsqueeze", {make = function() return {rn({17, 33}, 96)}, {2} end})
add("contiguous", {make = function() return {rn({17, 33}, 97)}, {} end})
add("to_dtype", {to_dtype = true, make = function() return {rn({17, 33}, 98)}, {} end})

-- Ops that cannot be covered here, with the reason (none today).
local not_covered = {}

-- ---------------------------------------------------------------- the runner

-- Builds the inputs of case c for one side: dev "cpu" | "cuda", compute dtype dt.
local function inputs(c, dev, dt, nc)
  local ins, args = c.make()
  local out, leaves = {}, {}
  for i, t in ipairs(ins) do
    local u = t
    if is_float(t) then
      if dt == "bf16" then u = u:to("bf16") end
      u = dev == "cpu" and u:to("f32") or u:to("cuda")
      if nc then u = (c.nc or noncontig)(u) end
      if not c.nograd then u:requires_grad_(); leaves[i] = u end
    else
      if dev == "cuda" then u = u:to("cuda") end
    end
    out[i] = u
  end
  if c.to_dtype then  -- the target dtype differs from the compute dtype on both sides
    args = {dt == "f32" and "bf16" or "f32"}
  end
  return out, args, leaves
end

local function call(name, c, ins, args)
  if c.call then return c.call(ins, args) end
  local a = {}
  if c.list then a[1] = ins else for i, t in ipairs(ins) do a[i] = t end end
  local n, na = #a, args.n or #args   -- args with nil holes come from table.pack
  for i = 1, na do a[n + i] = args[i] end
  return confit[name](table.unpack(a, 1, n + na))
end

local function run_case(name, c, dt, nc, label)
  local cin, cargs, cleaves = inputs(c, "cpu", dt, nc)
  local gin, gargs, gleaves = inputs(c, "cuda", dt, nc)
  local ref = call(name, c, cin, cargs)
  local got = call(name, c, gin, gargs)
  H.eq(got:device(), "cuda", label .. " output device")
  local odt = c.out_dtype or dt   -- the dtype a float output has on the GPU
  if not c.to_dtype then H.eq(got:dtype(), is_float(ref) and odt or ref:dtype(), label .. " output dtype") end
  check_close(label .. " forward", got, ref, dt)
  if c.nograd or not is_float(ref) then return end
  -- backward of sum(out * R)
  local function loss(out, dev)
    local o = out
    if dev == "cpu" and o:dtype() ~= "f32" then o = o:to_dtype("f32") end
    if dev == "cuda" and o:dtype() ~= odt then o = o:to_dtype(odt) end
    if o:dim() == 0 then return o * 0.7 end
    local R = rn(o:shape(), 1000)
    if dt == "bf16" then R = R:to("bf16"):to("f32") end
    if dev == "cuda" then R = R:to("cuda", odt) end
    return (o * R):sum()
  end
  loss(ref, "cpu"):backward()
  loss(got, "cuda"):backward()
  for i, leaf in pairs(cleaves) do
    local gref, ggot = leaf.grad, gleaves[i].grad
    if gref == nil then
      H.ok(ggot == nil, label .. ": input " .. i .. " has a GPU gradient but no CPU one")
    else
      H.ok(ggot ~= nil, label .. ": input " .. i .. " has no GPU gradient")
      H.eq(ggot:device(), "cuda", label .. " grad device")
      check_close(label .. " grad of input " .. i, ggot, gref, dt)
    end
  end
end

local covered = 0
for _, name in ipairs(confit.ops) do
  local list = cases[name]
  if not list then
    if not_covered[name] then H.skip("op " .. name, not_covered[name])
    else H.case("op " .. name .. " has a test case", function() error("no CUDA test case for op " .. name) end) end
  else
    covered = covered + 1
    for vi, c in ipairs(list) do
      for _, dt in ipairs({"f32", "bf16"}) do
        for _, nc in ipairs({false, true}) do
          local label = string.format("%s #%d %s %s", name, vi, dt, nc and "strided" or "contiguous")
          H.case(label, function() run_case(name, c, dt, nc, label) end)
        end
      end
    end
  end
end
print(string.format("ops covered: %d of %d", covered, #confit.ops))

-- ---------------------------------------------------------------- runtime

H.case("memory() fields, allocator reuse, empty_cache", function()
  collectgarbage("collect")
  collectgarbage("stop")   -- no finalizer may free device tensors while we count bytes
  confit.cuda.synchronize()
  confit.empty_cache()
  local m0 = confit.memory()
  for _, k in ipairs({"cpu_bytes", "cuda_bytes", "cuda_cached_bytes", "cuda_peak_bytes"}) do
    H.ok(type(m0[k]) == "number", "memory() lacks " .. k)
  end
  H.eq(m0.cuda_cached_bytes, 0, "cached after empty_cache")
  local a = confit.zeros({1024, 1024}, {device = "cuda"})
  local m1 = confit.memory()
  H.ok(m1.cuda_bytes >= m0.cuda_bytes + 4 * 1024 * 1024, "in_use grows by the tensor's bytes")
  H.ok(m1.cuda_peak_bytes >= m1.cuda_bytes, "peak >= in_use")
  a:free()
  local m2 = confit.memory()
  H.eq(m2.cuda_bytes, m0.cuda_bytes, "in_use back after free")
  H.ok(m2.cuda_cached_bytes >= 4 * 1024 * 1024, "the freed block is cached")
  local b = confit.zeros({1024, 1024}, {device = "cuda"})
  local m3 = confit.memory()
  H.eq(m3.cuda_cached_bytes, m2.cuda_cached_bytes - (m3.cuda_bytes - m2.cuda_bytes), "the cached block is reused")
  H.eq(b:sum():item(), 0, "a reused block is zero-filled")
  b:free()
  confit.empty_cache()
  H.eq(confit.memory().cuda_cached_bytes, 0, "empty_cache releases the cache")
  collectgarbage("restart")
  local i, c, p = confit.cuda.memory()
  H.ok(type(i) == "number" and type(c) == "number" and type(p) == "number", "confit.cuda.memory()")
end)

H.case("out-of-memory is an error with sizes, not a crash", function()
  -- 2.5e14 f32 elements = 1e15 bytes allocated directly on the device (expand, then a copy)
  local one = confit.zeros({1}, {device = "cuda"})
  local err = H.raises(function() return one:expand({250000000000000}):contiguous() end, "out of memory")
  H.ok(err:find("1000000000000000 bytes", 1, true), "the message names the bytes asked for: " .. err)
  H.ok(err:find("holds", 1, true) and err:find("cached", 1, true), "the message names held and cached bytes: " .. err)
  local t = confit.randn({4}):cuda()     -- the device still works
  H.near((t * 2):sum():item(), (t:cpu() * 2):sum():item(), 1e-6, "after OOM")
end)

H.case("t:to round trips", function()
  local x = rn({17, 33}, 500)
  local y = x:to("cuda")
  H.eq(y:device(), "cuda")
  H.eq(y:dtype(), "f32")
  H.eq((y:to("cpu") - x):abs():max():item(), 0, "f32 round trip is exact")
  H.eq((x:cuda():cpu() - x):abs():max():item(), 0, "cuda()/cpu()")
  local b = x:to("cuda", "bf16")
  H.eq(b:dtype(), "bf16")
  H.eq((b:to("cpu", "f32") - x:to("bf16"):to("f32")):abs():max():item(), 0, "bf16 rounding matches the CPU's")
  local big = confit.tensor({2 ^ 40 + 3, -7, 123456789012}, {dtype = "i64"})
  local back = big:cuda():cpu()
  H.eq(back:get(1), 2 ^ 40 + 3, "i64 exact")
  H.eq(back:get(3), 123456789012, "i64 exact")
  local nc = x:transpose(1, 2)
  H.eq((nc:cuda():cpu() - nc):abs():max():item(), 0, "non-contiguous CPU source")
  H.eq((y:transpose(1, 2):contiguous():cpu() - nc):abs():max():item(), 0, "device strided copy")
  H.eq((y:to("bf16"):to("f32"):cpu() - x:to("bf16"):to("f32")):abs():max():item(), 0, "device dtype conversion")
  H.ok(y:to("cuda") == y, "to() the same device returns the same tensor")
  local w = rn({3}, 501):requires_grad_()
  local wc = w:cuda()
  H.ok(wc.requires_grad, "a leaf's requires_grad carries over")
  H.raises(function() return x:to("tpu") end, "neither a device")
end)

H.case("embedding backward is deterministic", function()
  local w = rn({64, 129}, 600):cuda():requires_grad_()
  local ids = ints(4000, 0, 7, 601, {4000}):cuda()
  local function g()
    w.grad = nil
    confit.embedding(w, ids):sum():backward()
    return w.grad:cpu()
  end
  H.eq((g() - g()):abs():max():item(), 0, "two runs differ")
end)

H.case("id range errors name the id", function()
  local w = rn({10, 4}, 602):cuda()
  H.raises(function() return confit.embedding(w, confit.tensor({1, 10}, {dtype = "i64"}):cuda()) end, "id 10 out of range")
  H.raises(function() return rn({3, 10}, 603):cuda():cross_entropy(confit.tensor({1, 2, 12}, {dtype = "i64"}):cuda()) end,
           "target 12 out of range")
end)

-- The GPU's vocabulary losses scale by 1 / T in float: a temperature whose reciprocal passes
-- FLT_MAX, or rounds to 0, is refused (the CPU, in double, takes it), never turned into inf and NaN
H.case("tempered losses: a temperature too small for a float 1 / T is refused", function()
  local z, t0 = rn({2, 5}, 604), confit.tensor({1, 2}, {dtype = "i64"})
  local h, w = rn({2, 4}, 605), rn({5, 4}, 606)
  for _, T in ipairs({1e-39, 1e-310}) do
    H.raises(function() return z:cuda():token_logprob(t0:cuda(), T) end, "token_logprob", "too small")
    H.raises(function() return z:cuda():entropy(T) end, "entropy", "too small")
    H.raises(function() return h:cuda():head_logprob(w:cuda(), t0:cuda(), T) end, "head_logprob", "too small")
    H.raises(function() return h:cuda():head_entropy(w:cuda(), T) end, "head_entropy", "too small")
  end
  H.ok(pcall(z.token_logprob, z, t0, 1e-39), "the CPU takes 1e-39")
  -- past ~7e45 the float 1 / T is 0 (a -inf logit would give NaN): refused too
  H.raises(function() return z:cuda():token_logprob(t0:cuda(), 1e50) end, "token_logprob", "too large")
  H.raises(function() return h:cuda():head_entropy(w:cuda(), 1e50) end, "head_entropy", "too large")
  H.ok(pcall(z.token_logprob, z, t0, 1e50), "the CPU takes 1e50")
  H.raises(function() return z:cuda():token_logprob(t0:cuda(), -1) end, "token_logprob", "must be > 0")
end)

-- (twenty-fourth session) token_logprob of a row of only -inf is -inf, as log_softmax gives (it was NaN)
H.case("token_logprob: a row of only -inf is -inf, as on the CPU", function()
  local inf = math.huge
  for _, dt in ipairs({"f32", "bf16"}) do
    local z = confit.tensor({{-inf, -inf, -inf}, {-inf, 0, 1}, {-inf, -inf, -inf}}):to(dt)
    local t = confit.tensor({1, 0, -1}, {dtype = "i64"})
    local got = z:cuda():token_logprob(t:cuda()):to("cpu", "f32"):totable()
    H.eq(got[1], -inf, dt .. " the row of only -inf")
    H.eq(got[2], -inf, dt .. " a -inf logit")
    H.eq(got[3], 0, dt .. " an ignored target")
  end
end)

-- (twenty-sixth session) a row of only -inf has p = 0: token_logprob, cross_entropy and entropy
-- and their gradients take the formulas' values with p = 0 (they were NaN), as on the CPU
H.case("a row of only -inf: losses and gradients as on the CPU", function()
  local inf, nan = math.huge, 0 / 0
  local rows = {{-inf, -inf, -inf}, {-inf, 0, 1}, {0.5, -1, 2}, {-inf, nan, -inf}}
  local tg = confit.tensor({1, 2, 0, 0}, {dtype = "i64"})
  local function run(dev, dt, f)
    local z = confit.tensor(rows):to(dt):to(dev)
    z.requires_grad = true
    local y = f(z, tg:to(dev))
    y:sum():backward()
    return H.flat(y:to("cpu", "f32")), H.flat(z.grad:to("cpu", "f32"))
  end
  local cases = {
    {"token_logprob", function(z, t) return z:token_logprob(t, 0.5) end},
    {"cross_entropy", function(z, t) return z:narrow(1, 1, 3):cross_entropy(t:narrow(1, 1, 3)) end},
    {"entropy", function(z) return z:entropy(0.5) end},
  }
  for _, dt in ipairs({"f32", "bf16"}) do
    for _, c in ipairs(cases) do
      local yc, gc = run("cpu", "f32", c[2])
      local yg, gg = run("cuda", dt, c[2])
      for i = 1, #yc do
        if yc[i] ~= yc[i] then H.ok(yg[i] ~= yg[i], dt .. " " .. c[1] .. " value " .. i .. " NaN")
        elseif math.abs(yc[i]) == inf then H.eq(yg[i], yc[i], dt .. " " .. c[1] .. " value " .. i)
        else H.near(yg[i], yc[i], 2e-2, dt .. " " .. c[1] .. " value " .. i) end
      end
      for i = 1, 9 do H.near(gg[i], gc[i], 2e-2, dt .. " " .. c[1] .. " gradient " .. i) end
    end
  end
end)

H.case("optimizer kernels (AdamW, SGD, clip_grad_norm) match the CPU", function()
  for _, dt in ipairs({"f32", "bf16"}) do
    local p0 = rn({33, 17}, 700)
    if dt == "bf16" then p0 = p0:to("bf16"):to("f32") end
    local g0 = rn({33, 17}, 701)
    if dt == "bf16" then g0 = g0:to("bf16"):to("f32") end
    local pc = p0:clone():requires_grad_()
    local pg = p0:to("cuda", dt):requires_grad_()
    local oc = confit.optim.adamw({pc}, {lr = 1e-2, weight_decay = 0.1})
    local og = confit.optim.adamw({pg}, {lr = 1e-2, weight_decay = 0.1})
    for _ = 1, 3 do
      pc.grad = g0:clone()
      pg.grad = g0:to("cuda", dt)
      local nc = confit.optim.clip_grad_norm({pc}, 5.0)
      local ng = confit.optim.clip_grad_norm({pg}, 5.0)
      H.near(ng, nc, dt == "f32" and 1e-5 or 1e-2, "clip_grad_norm " .. dt)
      oc:step(); og:step()
    end
    check_close("adamw " .. dt, pg, pc:detach(), dt)
    local sc, sg = p0:clone():requires_grad_(), p0:to("cuda", dt):requires_grad_()
    local o1 = confit.optim.sgd({sc}, {lr = 0.1, momentum = 0.9, weight_decay = 0.01, nesterov = true})
    local o2 = confit.optim.sgd({sg}, {lr = 0.1, momentum = 0.9, weight_decay = 0.01, nesterov = true})
    for _ = 1, 2 do
      sc.grad = g0:clone(); sg.grad = g0:to("cuda", dt)
      o1:step(); o2:step()
    end
    check_close("sgd " .. dt, sg, sc:detach(), dt)
  end
end)

-- The batched AdamW (kernels/elementwise.cu, cu_adamw_many: packs of up to 40 parameters per
-- launch, grouped by dtype) against one optimizer per parameter: 53 tensors of mixed dtypes and
-- sizes (1 element to several chunks), one of them without a gradient in step 2 so its bias
-- correction differs, bf16 and f32 state. Every element's update is the same function, so the
-- results are bit for bit equal; a packing mistake (wrong tensor, offset or chunk) is not.
H.case("batched AdamW over many parameters equals per-parameter optimizers bit for bit", function()
  for _, sd in ipairs({"f32", "bf16"}) do
    local sizes = {}
    for i = 1, 53 do sizes[i] = ({1, 7, 2048, 2049, 5000, 33 * 17, 70001})[i % 7 + 1] end
    local batched, single, opts = {}, {}, {}
    for i, n in ipairs(sizes) do
      local dt = i % 3 == 0 and "f32" or "bf16"
      local p0 = rn({n}, 800 + i)
      batched[i] = p0:to("cuda", dt):requires_grad_()
      single[i] = p0:to("cuda", dt):requires_grad_()
    end
    local h = {lr = 1e-2, weight_decay = 0.05, state_dtype = sd}
    local ob = confit.optim.adamw(batched, h)
    for i = 1, #sizes do opts[i] = confit.optim.adamw({single[i]}, h) end
    for step = 1, 3 do
      for i, n in ipairs(sizes) do
        local g = nil
        if not (step == 2 and i == 5) then g = rn({n}, 900 + 10 * i + step):to("cuda", batched[i]:dtype()) end
        batched[i].grad = g
        single[i].grad = g and g:clone() or nil
      end
      ob:step()
      for i = 1, #sizes do opts[i]:step() end
    end
    local st = ob:state()
    for i = 1, #sizes do
      local what = string.format("state %s, parameter %d (%d elements, %s)", sd, i, sizes[i], batched[i]:dtype())
      H.eq((batched[i]:cpu():to("f32") - single[i]:cpu():to("f32")):abs():max():item(), 0, what)
      H.eq((st["exp_avg_sq." .. i]:cpu():to("f32") - opts[i]:state()["exp_avg_sq.1"]:cpu():to("f32")):abs():max():item(), 0,
           what .. ": second moment")
    end
    H.eq(st["step.5"], 2, "the parameter without a gradient in step 2 counted 2 updates")
  end
end)

-- bf16 parameters go through f32 masters on both devices (the CPU kernels compute the same f32
-- master math, in double rounded to f32 per element): the masters agree to f32 rounding (a few
-- ulps over the steps), the GPU parameter is exactly bf16(its master) and within one bf16 ulp of
-- the CPU's. bf16 state: the moments may round differently at a tie, so the masters get a term
-- of a few bf16 ulps of the update (steps * lr * 2^-6).
H.case("bf16 parameters: CUDA AdamW/SGD with f32 masters and bf16 state match the CPU", function()
  local p0 = rn({33, 17}, 710):to("bf16")
  local g0 = rn({33, 17}, 711)
  local p0f = p0:to("f32")
  local function list(t) local out = {}; for _, r in ipairs(t:cpu():to("f32"):totable()) do for _, x in ipairs(r) do out[#out + 1] = x end end; return out end
  local function compare(what, oc, og, pc, pg, lr, sd, steps)
    local mc, mg = oc:state()["master.1"], og:state()["master.1"]
    H.ok(mc ~= nil and mg ~= nil, what .. ": masters exist")
    H.eq(mg:dtype(), "f32", what .. ": master f32")
    H.eq(mg:device(), "cuda", what .. ": master on the GPU")
    local a, b, pcs, pgs, p0s = list(mg), list(mc), list(pc), list(pg), list(p0f)
    local bm = list(mg:cpu():to("bf16"))
    local atol = sd == "bf16" and steps * lr * 2 ^ -6 or steps * lr * 1e-5
    local moved = 0
    for i = 1, #a do
      local tol = 1e-6 * math.abs(b[i]) + atol
      if not (math.abs(a[i] - b[i]) <= tol) then
        error(string.format("%s: master entry %d: gpu %.9g, cpu %.9g (tol %.3g)", what, i, a[i], b[i], tol), 0)
      end
      if a[i] ~= p0s[i] then moved = moved + 1 end
      H.eq(pgs[i], bm[i], what .. ": the GPU parameter is bf16(master), entry " .. i)
      if not (math.abs(pgs[i] - pcs[i]) <= 2 ^ -7 * math.abs(pcs[i]) + 1e-30) then
        error(string.format("%s: bf16 parameter entry %d: gpu %.9g, cpu %.9g", what, i, pgs[i], pcs[i]), 0)
      end
    end
    H.eq(moved, #a, what .. ": every master entry moved")
  end
  for _, sd in ipairs({"f32", "bf16"}) do
    for _, lr in ipairs({1e-2, 1e-6}) do
      local what = string.format("adamw lr %g state %s", lr, sd)
      local pc, pg = p0:clone():requires_grad_(), p0:to("cuda"):requires_grad_()
      local h = {lr = lr, weight_decay = 0.1, state_dtype = sd}
      local oc, og = confit.optim.adamw({pc}, h), confit.optim.adamw({pg}, h)
      for s = 1, 3 do
        local g = (g0 * (0.5 * s)):to("bf16")
        pc.grad = g
        pg.grad = g:to("cuda")
        oc:step(); og:step()
      end
      H.eq(og:state()["exp_avg.1"]:dtype(), sd, what .. ": state dtype")
      compare(what, oc, og, pc, pg, lr, sd, 3)
      if lr == 1e-6 then
        local same = 0
        local pgs, p0s = list(pg), list(p0f)
        for i = 1, #pgs do if pgs[i] == p0s[i] then same = same + 1 end end
        H.ok(same > #pgs / 2, what .. ": most bf16 values cannot resolve 3e-6 (" .. same .. " unchanged)")
      end
      -- the saved state comes back exactly on the GPU
      local pr = pg:clone():requires_grad_()
      local orr = confit.optim.adamw({pr}, {})
      orr:load_state(og:state())
      pg.grad = g0:to("cuda", "bf16"); pr.grad = g0:to("cuda", "bf16")
      og:step(); orr:step()
      H.eq((pr:cpu():to("f32") - pg:cpu():to("f32")):abs():max():item(), 0, what .. ": restored run")
      H.eq((orr:state()["master.1"] - og:state()["master.1"]):abs():max():item(), 0, what .. ": restored master")
    end
    local what = "sgd state " .. sd
    local h = {lr = 1e-3, momentum = 0.9, weight_decay = 0.01, nesterov = true, state_dtype = sd}
    local pc, pg = p0:clone():requires_grad_(), p0:to("cuda"):requires_grad_()
    local oc, og = confit.optim.sgd({pc}, h), confit.optim.sgd({pg}, h)
    for _ = 1, 3 do
      pc.grad = g0:to("bf16"); pg.grad = g0:to("cuda", "bf16")
      oc:step(); og:step()
    end
    H.eq(og:state()["momentum_buffer.1"]:dtype(), sd, what .. ": state dtype")
    compare(what, oc, og, pc, pg, 4 * h.lr, sd, 3)
  end
end)

H.case("set_tf32 toggles and f32 matmul stays close", function()
  local a, b = rn({129, 257}, 800), rn({257, 65}, 801)
  local ref = a:matmul(b)
  local old = confit.cuda.set_tf32(true)
  local got = a:cuda():matmul(b:cuda()):cpu()
  confit.cuda.set_tf32(old)
  local err = (got - ref):abs():max():item() / ref:abs():max():item()
  H.ok(err < 5e-3, "tf32 relative error " .. err)
end)

-- ---------------------------------------------------------------- timings (information only)

local function time_it(fn, reps)
  fn()
  confit.cuda.synchronize()
  local t0 = confit.clock()
  for _ = 1, reps do fn() end
  confit.cuda.synchronize()
  return (confit.clock() - t0) / reps
end

H.case("entropy over a row holding -inf: terms of probability 0 add nothing (the CPU's values)", function()
  for _, dev in ipairs({"cpu", "cuda"}) do
    local z = confit.tensor({{-math.huge, 0, 1}, {2, -math.huge, -math.huge}}):to(dev)
    z.requires_grad = true
    local e = z:entropy()
    e:sum():backward()
    local v, g = e:cpu():totable(), z.grad:cpu():totable()
    H.near(v[1], 0.58220, 1e-4, dev .. " entropy row 1 (torch: 0.5822)")
    H.near(v[2], 0, 1e-6, dev .. " entropy row 2 (one class left)")
    H.near(g[1][1], 0, 0, dev .. " grad at -inf"); H.near(g[1][2], 0.19661, 1e-4, dev .. " grad")
    H.near(g[1][3], -0.19661, 1e-4, dev .. " grad")
  end
end)

-- Vocabulary rows keep the maximum m apart from lsum = log sum exp((z - m) / T), as the CPU does
-- (log p = (z - m) / T - lsum): a tie at 3e38, a tie at 1e9 (where the float m + lsum of before
-- lost lsum = log 2), a tiny temperature (z / T would overflow a float) all give the CPU's values
H.case("vocabulary losses: huge logits and tiny temperatures (the CPU's values)", function()
  local log2 = math.log(2)
  for _, dev in ipairs({"cpu", "cuda"}) do
    for _, big in ipairs({3e38, 1e9}) do
      local t0 = confit.tensor({0}, {dtype = "i64"}):to(dev)
      local z = confit.tensor({{big, big, 0}}):to(dev)
      z.requires_grad = true
      local lp = z:token_logprob(t0)
      lp:sum():backward()
      H.near(lp:cpu():item(), -log2, 1e-6, dev .. " token_logprob of a tie at " .. big)
      H.same_list(H.flat(z.grad:cpu()), {0.5, -0.5, 0}, 1e-6, dev .. " its gradient")
      z.grad = nil
      local ce = z:cross_entropy(t0)
      ce:backward()
      H.near(ce:cpu():item(), log2, 1e-6, dev .. " cross_entropy of a tie at " .. big)
      H.same_list(H.flat(z.grad:cpu()), {-0.5, 0.5, 0}, 1e-6, dev .. " its gradient")
      z.grad = nil
      local e = z:entropy()
      e:sum():backward()
      H.near(e:cpu():item(), log2, 1e-6, dev .. " entropy of a tie at " .. big)
      H.same_list(H.flat(z.grad:cpu()), {0, 0, 0}, 1e-6, dev .. " its gradient")
    end
    local h, w = confit.tensor({{1e9}}):to(dev), confit.tensor({{1}, {1}, {0}}):to(dev)
    H.near(h:head_entropy(w):cpu():item(), log2, 1e-6, dev .. " head_entropy of a tie at 1e9")
    H.near(h:head_logprob(w, confit.tensor({1}, {dtype = "i64"}):to(dev)):cpu():item(), -log2, 1e-6,
           dev .. " head_logprob of a tie at 1e9")
    local zt = confit.tensor({{30, 30, 29}}):to(dev)
    H.near(zt:token_logprob(confit.tensor({0}, {dtype = "i64"}):to(dev), 1e-38):cpu():item(), -log2, 1e-6,
           dev .. " token_logprob at T = 1e-38 (z / T past FLT_MAX)")
  end
end)

H.case("timings", function()
  local B, Hq, Hkv, T, D = 4, 12, 2, 512, 128
  local q = rn({B, Hq, T, D}, 900):to("cuda", "bf16")
  local k = rn({B, Hkv, T, D}, 901):to("cuda", "bf16")
  local v = rn({B, Hkv, T, D}, 902):to("cuda", "bf16")
  local flops = 4 * B * Hq * T * T * D / 2
  local tf = confit.no_grad(function() return time_it(function() return q:attention(k, v) end, 5) end)
  print(string.format("timing: attention fwd bf16 B%d Hq%d Hkv%d T%d D%d causal: %.3f ms (%.1f TFLOP/s)",
    B, Hq, Hkv, T, D, tf * 1e3, flops / tf / 1e12))
  q:requires_grad_(); k:requires_grad_(); v:requires_grad_()
  local tb = time_it(function()
    q.grad, k.grad, v.grad = nil, nil, nil
    q:attention(k, v):sum():backward()
  end, 3)
  print(string.format("timing: attention fwd+bwd bf16: %.3f ms", tb * 1e3))
  local n = 4096
  local a, b = rn({n, n}, 903):to("cuda", "bf16"), rn({n, n}, 904):to("cuda", "bf16")
  local tm = confit.no_grad(function() return time_it(function() return a:matmul(b) end, 10) end)
  print(string.format("timing: matmul bf16 %d^3: %.3f ms (%.0f TFLOP/s)", n, tm * 1e3, 2 * n ^ 3 / tm / 1e12))
  local m = confit.memory()
  print(string.format("memory: cuda_bytes %d cached %d peak %d", m.cuda_bytes, m.cuda_cached_bytes, m.cuda_peak_bytes))
end)

H.finish()
