-- confit's RL losses against an independent float64 PyTorch reference: every built-in method (and
-- non-default options: alpha, the loss temperature, clip_max, GRPO's clip range against a snapshot
-- policy that differs from the model, a KL term to a reference model that differs) on tiny_qwen2
-- and a fixed batch of 2 questions x 3 samples. The fixture, tests/fixtures/rl_reference/
-- reference.safetensors, was written by tests/fixtures/make_rl_reference.py (see
-- tests/fixtures/README.md); no torch is needed here. The batch goes through the public API
-- (rl.batch with samples built by hand, rl.snapshot_policy, rl.loss + backward, rl.backward with
-- micro-batches) and the loss, the gradients of four parameters and the method's metrics are
-- compared; a last case shows that each comparison fails when an option is changed.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"
local rl = require "confit.rl"
local train = require "confit.train"
local cjson = require "cjson"

local MODEL = "tests/fixtures/tiny_qwen2"
local REF = "tests/fixtures/rl_reference/reference.safetensors"

local ref, meta = confit.load_safetensors(REF)
assert(ref, "cannot read " .. REF .. ": " .. tostring(meta))
local BATCH = cjson.decode(meta.batch)
BATCH.n = math.tointeger(BATCH.n)   -- (cjson gives floats)
local CASES = cjson.decode(meta.cases)
local PARAMS = cjson.decode(meta.grad_params)

-- Tolerances (confit computes in f32, the reference in f64 from the same f32 weights): the loss
-- to LOSS_TOL * max(1, |loss|); a gradient to GRAD_TOL * max |reference gradient| entry by entry;
-- metrics to METRIC_TOL relative. The largest errors seen (Release, CPU): loss 6e-7, gradients
-- 2.7e-6, kl 3.6e-6, the other metrics below 3e-7.
local LOSS_TOL, GRAD_TOL, METRIC_TOL = 1e-5, 5e-5, 5e-5

local function load_with(prefix)
  local m = assert(confit.load(MODEL))
  if prefix then
    local n = 0
    confit.no_grad(function()
      for name, t in pairs(ref) do
        local pn = name:match("^" .. prefix:gsub("%p", "%%%0") .. "%.(.+)$")
        if pn then
          local p = assert(m:parameters()[pn], "no parameter " .. pn)
          p:copy_(t)
          n = n + 1
        end
      end
    end)
    assert(n > 0, "the fixture holds no " .. prefix .. ".* tensors")
  end
  return m
end

local m = load_with(nil)
train.trainable(m)
local snap = load_with("snapshot")     -- the policy that drew the samples (GRPO's p_old, rewards)
local kl_ref = load_with("kl_ref")     -- the KL term's reference model

local function extract(text) return text:match("%d+") end

-- fresh sample tables (rl.snapshot_policy writes old_logprobs into them)
local function samples()
  local out = {}
  for i, c in ipairs(BATCH.completions) do
    out[i] = {tokens = table.move(c, 1, #c, 1, {}), text = BATCH.texts[i]}
  end
  return out
end

local function batch_of(model, smp)
  return rl.batch(model, BATCH.prompts, smp, {n = BATCH.n, extract = extract, temperature = BATCH.temperature})
end

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

local function zero_grads()
  for _, p in pairs(m:parameters()) do p:zero_grad() end
end

-- One case through the public API: mode "loss" (rl.loss, then backward) or an integer K
-- (rl.backward with micro_batch = K). Returns the loss value, the gradients {param -> flat list},
-- the metrics and the batch. change(opts): a mutation of the options (the fail check).
local function run(c, mode, change)
  local opts = copy(c.opts)
  if change then change(opts) end
  local smp = samples()
  local b
  if c.snapshot then
    -- the samples' policy first: old_logprobs and rewards under the snapshot model, as train.run's
    -- updates_per_batch does before the model moves away from it
    local sb = batch_of(snap, smp)
    if (opts.kl_coef or 0) > 0 then sb.ref_model = kl_ref end
    rl.snapshot_policy(c.method, sb, opts)
    b = batch_of(m, smp)
    b.rewards = sb.rewards
  else
    b = batch_of(m, smp)
  end
  if (opts.kl_coef or 0) > 0 then b.ref_model = kl_ref end
  zero_grads()
  local lv, met
  if mode == "loss" then
    local loss
    loss, met = rl.loss(c.method, b, opts)
    lv = loss:item()
    loss:backward()
  else
    opts.micro_batch = mode
    lv, met = rl.backward(c.method, b, opts)
  end
  local grads = {}
  for _, pn in ipairs(PARAMS) do
    local g = m:parameters()[pn].grad
    assert(g, "no gradient on " .. pn)
    grads[pn] = g:contiguous():view({-1}):totable()
  end
  zero_grads()
  return lv, grads, met, b
end

local function mean(xs)
  local s = 0
  for _, x in ipairs(xs) do s = s + x end
  return s / #xs
end

-- The comparisons of one run with its case: a list of {what, err, tol} (err <= tol passes).
local function compare(c, lv, grads, met, b)
  local out = {}
  local function add(what, err, tol) out[#out + 1] = {what = what, err = err, tol = tol} end
  add("loss", math.abs(lv - c.loss) / math.max(1, math.abs(c.loss)), LOSS_TOL)
  for _, pn in ipairs(PARAMS) do
    local want = H.flat(ref[c.name .. "." .. pn])
    local got = grads[pn]
    assert(#got == #want, pn .. ": " .. #got .. " gradient entries, the fixture has " .. #want)
    local d, s = 0, 0
    for i = 1, #want do
      d = math.max(d, math.abs(got[i] - want[i]))
      s = math.max(s, math.abs(want[i]))
    end
    add("grad " .. pn, d / s, GRAD_TOL)
  end
  local function rel(a, w) return math.abs(a - w) / math.max(1e-12, math.abs(w)) end
  if c.weights then add("mean_weight", rel(met.mean_weight, mean(c.weights)), METRIC_TOL) end
  if c.rewards then
    add("mean_reward", math.abs(met.mean_reward - mean(c.rewards)) / math.max(1, math.abs(mean(c.rewards))), METRIC_TOL)
    if b.rewards then   -- the snapshot's rewards, sample by sample
      local d = 0
      for i, r in ipairs(c.rewards) do d = math.max(d, math.abs(b.rewards[i] - r) / math.max(1, math.abs(r))) end
      add("snapshot rewards", d, METRIC_TOL)
    end
    add("clip_frac", math.abs(met.clip_frac - c.clip_frac), 1e-9)
  end
  if c.kl then add("kl", met.kl and rel(met.kl, c.kl) or math.huge, METRIC_TOL) end
  if c.logp then add("mean_logp", math.abs(met.mean_logp - mean(c.logp)) / math.max(1, math.abs(mean(c.logp))), METRIC_TOL) end
  return out
end

local function failures(checks)
  local bad = {}
  for _, k in ipairs(checks) do
    if not (k.err <= k.tol) then bad[#bad + 1] = ("%s: error %.3g > %g"):format(k.what, k.err, k.tol) end
  end
  return bad
end

-- every built-in method that trains has a reference case
H.case("the fixture covers every built-in method", function()
  local covered = {}
  for _, c in ipairs(CASES) do covered[c.method] = true end
  for name in pairs(rl.methods) do
    if rl.builtin(name) and rl.trains(name) then
      H.ok(covered[name], "no reference case for built-in method " .. name)
    end
  end
  H.eq(#CASES, 16, "cases in the fixture")
  -- temp_only trains nothing: there is no loss to compare
  H.ok(not rl.trains("temp_only"), "temp_only trains")
  H.raises(function() rl.loss("temp_only", batch_of(m, samples()), {}) end, "does not train")
end)

local worst = {}
for _, c in ipairs(CASES) do
  for _, mode in ipairs({"loss", 2}) do
    local label = ("%s (%s)"):format(c.name, mode == "loss" and "rl.loss" or "rl.backward, micro_batch = " .. mode)
    H.case(label .. ": loss, gradients and metrics equal the PyTorch reference", function()
      local checks = compare(c, run(c, mode))
      for _, k in ipairs(checks) do
        local key = k.what:match("^grad") and "grad" or k.what
        worst[key] = math.max(worst[key] or 0, k.err)
      end
      local bad = failures(checks)
      H.ok(#bad == 0, table.concat(bad, "; "))
    end)
  end
end

-- Each comparison can fail: a changed option (or loss temperature) must show in at least one
-- gradient of its case (CONFIT_RLREF_VERBOSE=1 prints every comparison that fails: together the
-- mutations below fail each kind of comparison, the loss, the four gradients and the metrics).
local MUTATIONS = {
  {"l2", "alpha 0.1 -> 0.11", function(o) o.alpha = 0.11 end},
  {"l2_a03_t1", "loss temperature 1 -> 0.99", function(o) o.temperature = 0.99 end},
  {"ours_lennorm", "alpha 0.1 -> 0.12", function(o) o.alpha = 0.12 end},
  {"ours_softmax_a025", "alpha 0.25 -> 0.26", function(o) o.alpha = 0.26 end},
  {"ours_clip", "clip_max 0.5 -> 0.45", function(o) o.clip_max = 0.45 end},
  {"ours_clip_c02_t1", "clip_max 0.2 -> 0.25", function(o) o.clip_max = 0.25 end},
  {"l1", "loss temperature 0.5 -> 0.505", function(o) o.temperature = 0.505 end},
  {"self_sft", "loss temperature 0.5 -> 0.505", function(o) o.temperature = 0.505 end},
  {"em_ft", "loss temperature 0.5 -> 0.505", function(o) o.temperature = 0.505 end},
  {"grpo_ttrl", "loss temperature 0.5 -> 0.505", function(o) o.temperature = 0.505 end},
  {"grpo_rent_t1", "loss temperature 1 -> 0.99", function(o) o.temperature = 0.99 end},
  {"grpo_ttrl_snap", "clip_eps 0.2 -> 0.25", function(o) o.clip_eps = 0.25 end},
  {"grpo_prob_snap_eps01_kl", "kl_coef 0.05 -> 0.055", function(o) o.kl_coef = 0.055 end},
  {"grpo_prob_snap_eps01_kl", "kl_coef 0.05 -> 0 (no KL term)", function(o) o.kl_coef = nil end},
  {"grpo_rent_snap_kl_t1", "loss temperature 1 -> 0.99", function(o) o.temperature = 0.99 end},
  -- (0.3 -> 0.25 changes the loss only: the tokens it touches are clipped either way, gradient 0)
  {"grpo_intuitor_snap_eps03", "clip_eps 0.3 -> 0.15", function(o) o.clip_eps = 0.15 end},
}
H.case("every comparison fails when an option is changed", function()
  local by_name = {}
  for _, c in ipairs(CASES) do by_name[c.name] = c end
  local kinds, failed = {}, {}   -- every kind of comparison made, and those some mutation failed
  for _, mu in ipairs(MUTATIONS) do
    local c = assert(by_name[mu[1]], mu[1])
    local checks = compare(c, run(c, "loss", mu[3]))
    local bad = failures(checks)
    local grad_bad = 0
    for _, k in ipairs(checks) do
      kinds[k.what] = true
      if not (k.err <= k.tol) then failed[k.what] = true end
      if k.what:match("^grad") and not (k.err <= k.tol) then grad_bad = grad_bad + 1 end
    end
    H.ok(grad_bad >= 1, ("%s with %s: no gradient comparison failed (%s)"):format(c.name, mu[2], table.concat(bad, "; ")))
    if os.getenv("CONFIT_RLREF_VERBOSE") then
      print(("mutation %s, %s: %d checks fail: %s"):format(c.name, mu[2], #bad, table.concat(bad, "; ")))
    end
  end
  -- each kind of comparison (the loss, each gradient, each metric) fails under some mutation:
  -- none can pass whatever confit computes
  for what in pairs(kinds) do H.ok(failed[what], what .. ": no mutation made this comparison fail") end
end)

local keys = {}
for k in pairs(worst) do keys[#keys + 1] = k end
table.sort(keys)
local parts = {}
for _, k in ipairs(keys) do parts[#parts + 1] = ("%s %.2g"):format(k, worst[k]) end
print("largest relative errors: " .. table.concat(parts, ", "))

snap:free(); kl_ref:free(); m:free()
H.finish()
