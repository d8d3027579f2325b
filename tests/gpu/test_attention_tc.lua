-- test_attention_tc.lua - the tensor-core attention path (kernels/attention_tc.cu) against the CPU
-- f32 reference, forward and backward, then timings of both GPU paths. Skips (exit 77) without a GPU.
--
-- The path is forced on with confit.cuda.set_attention_tc(true) (it is on by default;
-- CONFIT_ATTN_TC=0 turns it off) and restored at the end. Inputs are bf16-rounded random values fed to both
-- sides; the backward seeds loss = sum(out * R). Checks per output and gradient:
--   elementwise |gpu - cpu| <= 1e-4 + 0.02 max|cpu| + 0.08 |cpu|   (test_cuda_ops.lua's bf16 rule:
--     P and dS are rounded to bf16 before their products, as in FlashAttention-2, so entries
--     near zero carry an absolute error on the scale of the largest ones)
--   relative L2 error ||gpu - cpu|| / ||cpu|| < 2e-2
-- and the forward must differ somewhere from the CUDA-core kernel's (else the path was not taken).
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

if not confit.cuda.available() then
  local _, why = confit.cuda.device_name()
  H.skip_all("no usable GPU: confit.cuda.available() is false (" .. tostring(why) .. ")")
end
print("device: " .. confit.cuda.device_name())

local function rn(shape, seed, scale)
  local t = confit.randn(shape, {seed = seed})
  if scale then t = t * scale end
  return t
end
-- bf16-rounded values as CPU f32
local function rb(shape, seed, scale) return rn(shape, seed, scale):to("bf16"):to("f32") end
-- [B,H,T,D] with the strides of a [B,T,H,D] tensor (the model's layout)
local function bthd(t) return t:transpose(2, 3):contiguous():transpose(2, 3) end

local function check(what, got, ref)
  got = got:cpu():to("f32")
  ref = ref:to("f32")
  H.eq(table.concat(got:shape(), "x"), table.concat(ref:shape(), "x"), what .. " shape")
  local maxabs = ref:abs():max():item()
  local diff = (got - ref):abs()
  local excess = (diff - ref:abs() * 0.08 - (1e-4 + 0.02 * maxabs)):max():item()
  local num, den = (diff * diff):sum():item(), (ref * ref):sum():item()
  local rel = math.sqrt(num / (den > 0 and den or 1))
  print(string.format("  %-5s max|diff| %.3g  max|ref| %.3g  rel L2 %.3g", what, diff:max():item(), maxabs, rel))
  if not (excess <= 0) then
    error(string.format("%s: max |gpu - cpu| = %.3g (max |cpu| %.3g): tolerance exceeded by %.3g",
      what, diff:max():item(), maxabs, excess), 0)
  end
  if not (rel < 2e-2) then error(string.format("%s: relative L2 error %.3g >= 2e-2", what, rel), 0) end
end

local old = confit.cuda.set_attention_tc(true)

-- B, Hq, Hkv, T, S, D, causal, layout
local cases = {
  {2, 4, 2, 33, 33, 64, true, "contiguous"},
  {2, 4, 2, 33, 33, 64, true, "bthd"},
  {1, 12, 2, 640, 640, 128, true, "bthd"},
  {2, 8, 8, 129, 129, 128, true, "contiguous"},
  {2, 8, 8, 129, 129, 128, true, "bthd"},
  {1, 4, 1, 17, 50, 64, true, "contiguous"},   -- causal with an offset: query t sees keys <= t + 33
  {1, 2, 2, 50, 17, 64, true, "contiguous"},   -- T > S: the first 33 query rows see no key
  {2, 4, 4, 100, 100, 128, false, "contiguous"},
  {1, 3, 1, 70, 70, 64, false, "bthd"},
}

for ci, c in ipairs(cases) do
  local B, Hq, Hkv, T, S, D, causal, layout = table.unpack(c)
  local label = string.format("tc attention B%d Hq%d Hkv%d T%d S%d D%d %s %s", B, Hq, Hkv, T, S, D,
    causal and "causal" or "full", layout)
  H.case(label, function()
    print(label)
    local seed = 100 * ci
    local q, k, v = rb({B, Hq, T, D}, seed, 1.5), rb({B, Hkv, S, D}, seed + 1, 1.5), rb({B, Hkv, S, D}, seed + 2)
    local R = rb({B, Hq, T, D}, seed + 3)
    -- CPU reference (f32)
    local qc, kc, vc = q:clone():requires_grad_(), k:clone():requires_grad_(), v:clone():requires_grad_()
    local oc = qc:attention(kc, vc, nil, nil, causal)
    ;(oc * R):sum():backward()
    -- GPU, tensor-core path
    local function dev(t)
      local u = t:to("cuda", "bf16")
      if layout == "bthd" then u = bthd(u) end
      return u:requires_grad_()
    end
    local qg, kg, vg = dev(q), dev(k), dev(v)
    local og = qg:attention(kg, vg, nil, nil, causal)
    H.eq(og:dtype(), "bf16", "output dtype")
    ;(og * R:to("cuda", "bf16")):sum():backward()
    check("out", og, oc)
    check("dq", qg.grad, qc.grad)
    check("dk", kg.grad, kc.grad)
    check("dv", vg.grad, vc.grad)
    -- the CUDA-core kernel on the same inputs: close to it, but not bit-identical
    confit.cuda.set_attention_tc(false)
    local ofb = confit.no_grad(function() return qg:attention(kg, vg, nil, nil, causal) end)
    confit.cuda.set_attention_tc(true)
    local d = (og:to("f32") - ofb:to("f32")):abs():max():item()
    H.ok(d > 0, "tensor-core and CUDA-core outputs are bit-identical: was the tensor-core path taken?")
  end)
end

H.case("cases the tensor-core path does not take fall back (D = 32, f32, mask)", function()
  local q, k, v = rb({1, 2, 20, 32}, 7), rb({1, 1, 20, 32}, 8), rb({1, 1, 20, 32}, 9)
  local ref = q:attention(k, v)
  check("D32", q:to("cuda", "bf16"):attention(k:to("cuda", "bf16"), v:to("cuda", "bf16")), ref)
  local q2, k2, v2 = rb({1, 2, 20, 64}, 10), rb({1, 1, 20, 64}, 11), rb({1, 1, 20, 64}, 12)
  check("f32", q2:cuda():attention(k2:cuda(), v2:cuda()), q2:attention(k2, v2))
  local m = confit.tensor({1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1}, {dtype = "i32"})
  check("mask", q2:to("cuda", "bf16"):attention(k2:to("cuda", "bf16"), v2:to("cuda", "bf16"), m:cuda(), nil, false),
    q2:attention(k2, v2, m, nil, false))
end)

-- (twentieth session, written without a GPU: tests/c/test_attention_emu.cpp checks the same on the
-- CPU emulation) a NaN in a query or a key makes the rows it reaches NaN, forward and backward,
-- on both paths, as on the CPU; before, a NaN query's row came out zeros on the CUDA cores and the
-- backward of rows that see a NaN key was zeros on both. Compared: the NaN patterns of out and dv,
-- the NaN query's dq row (dq and dk elsewhere may differ: the CPU's dense products make 0 * NaN
-- NaN where the kernels skip masked keys), and the kv head no NaN reaches, which still agrees.
H.case("NaN in a query and in a key: NaN rows as on the CPU, on both paths", function()
  local B, Hq, Hkv, T, S, D = 2, 4, 2, 20, 20, 64
  local q, k, v = rb({B, Hq, T, D}, 501, 1.5), rb({B, Hkv, S, D}, 502, 1.5), rb({B, Hkv, S, D}, 503)
  q:set(2, 2, 6, 4, 0 / 0)    -- batch 2, query head 2 (kv head 1), position 6
  k:set(1, 1, 11, 3, 0 / 0)   -- batch 1, kv head 1, key 11
  local R = rb({B, Hq, T, D}, 504)
  local qc, kc, vc = q:clone():requires_grad_(), k:clone():requires_grad_(), v:clone():requires_grad_()
  local oc = qc:attention(kc, vc, nil, nil, true)
  ;(oc * R):sum():backward()
  local function nan_list(t)
    local out = {}
    for i, x in ipairs(H.flat(t:cpu():to("f32"))) do out[i] = x ~= x end
    return out
  end
  local function same_nan(what, got, ref)
    local g, r, bad = nan_list(got), nan_list(ref), 0
    for i = 1, #r do if g[i] ~= r[i] then bad = bad + 1 end end
    H.eq(bad, 0, what .. ": elements NaN on one side only")
  end
  for _, path in ipairs({{"tensor cores", true, "bf16"}, {"CUDA cores", false, "f32"}}) do
    confit.cuda.set_attention_tc(path[2])
    local function dev(t) return t:to("cuda", path[3]):requires_grad_() end
    local qg, kg, vg = dev(q), dev(k), dev(v)
    local og = qg:attention(kg, vg, nil, nil, true)
    ;(og * R:to("cuda", path[3])):sum():backward()
    same_nan(path[1] .. " out", og, oc)
    same_nan(path[1] .. " dv", vg.grad, vc.grad)
    local row = nan_list(qg.grad:cpu():select(1, 2):select(1, 2):select(1, 6))
    for e = 1, D do H.ok(row[e], path[1] .. " dq: the NaN query's row is NaN") end
    -- kv head 2 (query heads 3 and 4) sees no NaN: its outputs and gradients as the CPU's
    check(path[1] .. " out, heads 3-4", og:narrow(2, 3, 2), oc:narrow(2, 3, 2))
    check(path[1] .. " dq, heads 3-4", qg.grad:narrow(2, 3, 2), qc.grad:narrow(2, 3, 2))
    check(path[1] .. " dk, kv head 2", kg.grad:narrow(2, 2, 1), kc.grad:narrow(2, 2, 1))
    check(path[1] .. " dv, kv head 2", vg.grad:narrow(2, 2, 1), vc.grad:narrow(2, 2, 1))
  end
  confit.cuda.set_attention_tc(true)
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

H.case("timings", function()
  local B, Hq, Hkv, T, D = 4, 12, 2, 640, 128
  local flops = 4 * B * Hq * T * T * D / 2   -- causal forward
  for _, layout in ipairs({"contiguous", "bthd"}) do
    local function mk(shape, seed)
      local t = rn(shape, seed):to("cuda", "bf16")
      if layout == "bthd" then t = bthd(t) end
      return t
    end
    local q, k, v = mk({B, Hq, T, D}, 900), mk({B, Hkv, T, D}, 901), mk({B, Hkv, T, D}, 902)
    for _, tc in ipairs({false, true}) do
      confit.cuda.set_attention_tc(tc)
      q.grad, k.grad, v.grad = nil, nil, nil
      q:requires_grad_(false); k:requires_grad_(false); v:requires_grad_(false)
      local tf = confit.no_grad(function() return time_it(function() return q:attention(k, v) end, 10) end)
      q:requires_grad_(); k:requires_grad_(); v:requires_grad_()
      local tb = time_it(function()
        q.grad, k.grad, v.grad = nil, nil, nil
        q:attention(k, v):sum():backward()
      end, 5)
      print(string.format("timing: attention %s bf16 B%d Hq%d Hkv%d T%d D%d causal %s: fwd %.3f ms (%.1f TFLOP/s), "
        .. "fwd+bwd %.3f ms", tc and "tensor-core" or "cuda-core  ", B, Hq, Hkv, T, D, layout, tf * 1e3,
        flops / tf / 1e12, tb * 1e3))
    end
  end
  confit.cuda.set_attention_tc(true)
end)

confit.cuda.set_attention_tc(old)
H.finish()
