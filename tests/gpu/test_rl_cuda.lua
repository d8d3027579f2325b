-- The RL losses on the GPU: every training method of confit.rl (rl.backward, in one pass and in
-- micro-batches of 3 sequences) on a tiny random model in f32 and bf16 on the GPU against the same
-- weights on the CPU: loss, a weight's gradient, and the logged metrics (mean_logp, entropy). This
-- runs the token view (one gather of the hidden rows), head_logprob (f32 log-probs for bf16
-- models), head_entropy (EM-FT's loss, RENT's reward, the logged entropy) and Intuitor's chunked
-- logits on the device. Skips (exit 77) without a GPU.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"
local model = require "confit.model"
local toy = require "confit.toy"
local rl = require "confit.rl"
local train = require "confit.train"

if not (confit.cuda and confit.cuda.available()) then H.skip_all("no GPU: confit.cuda.available() is false") end

local CFG = {model_type = "qwen2", hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2,
             num_attention_heads = 4, num_key_value_heads = 2, vocab_size = 257,
             max_position_embeddings = 64, tie_word_embeddings = true, eos_token_id = 256,
             rms_norm_eps = 1e-6, rope_theta = 10000.0}
local PNAME = "model.layers.1.mlp.up_proj.weight"
local PROMPTS = {toy.encode("1+2="), toy.encode("3+4-1="), toy.encode("9-5=")}

-- the same weights on both devices: the GPU copy in dt, the CPU one holding its rounded values
local function pair(seed, dt)
  local mc = model.new(CFG, {seed = seed, std = 0.6})
  local mg = model.new(CFG, {seed = seed, std = 0.6})
  mg:to("cuda", dt)
  for name, t in pairs(mg:parameters()) do mc:set_param(name, t:to("cpu", "f32")) end
  train.trainable(mc)
  train.trainable(mg)
  return mc, mg
end

local function grad_of(m)
  local g = m:parameters()[PNAME].grad
  assert(g, "no gradient on " .. PNAME)
  return g:to("cpu", "f32"):contiguous():view({-1}):totable()
end

local function zero(m) for _, p in pairs(m:parameters()) do p.grad = nil end end

local function rel_err(a, b)
  local d, s = 0, 0
  for i = 1, #b do
    d = math.max(d, math.abs(a[i] - b[i]))
    s = math.max(s, math.abs(b[i]))
  end
  return d / math.max(s, 1e-12)
end

local METHODS = {}
for name in pairs(rl.methods) do if rl.trains(name) then METHODS[#METHODS + 1] = name end end
table.sort(METHODS)

for _, dt in ipairs({"f32", "bf16"}) do
  local mc, mg = pair(3, dt)
  local rc, rg = pair(4, dt)          -- GRPO's reference models (KL)
  -- ragged samples from the CPU model, scored by both
  local samples = mc:generate(PROMPTS, {n = 4, temperature = 1.0, max_new_tokens = 6, seed = 21})
  for i, s in ipairs(samples) do s.tokens = table.move(s.tokens, 1, 1 + (i * 7) % 6, 1, {}) end
  local bc = rl.batch(mc, PROMPTS, samples, {n = 4, extract = toy.extract_boxed})
  local bg = rl.batch(mg, PROMPTS, samples, {n = 4, extract = toy.extract_boxed})
  -- f32: the devices differ in summation order only; bf16: activations rounded on the GPU
  local tol_loss, tol_grad, tol_met = 1e-4, 2e-3, 1e-4
  if dt == "bf16" then tol_loss, tol_grad, tol_met = 3e-2, 0.12, 3e-2 end
  for _, name in ipairs(METHODS) do
    H.case(("%s %s: GPU loss, gradient and metrics equal the CPU's"):format(dt, name), function()
      -- (a built-in method takes only the options it reads: rl.reads)
      local opts = {alpha = rl.reads(name, "alpha") and 0.1 or nil, temperature = 0.7}
      if name:find("^grpo") then opts.kl_coef = 0.05; bc.ref_model, bg.ref_model = rc, rg end
      zero(mc)
      local lc, metc = rl.backward(name, bc, opts)
      local gc = grad_of(mc)
      zero(mc)
      for _, K in ipairs({0, 3}) do
        opts.micro_batch = K
        zero(mg)
        local lg, metg = rl.backward(name, bg, opts)
        local gg = grad_of(mg)
        zero(mg)
        local what = ("%s %s K=%d"):format(dt, name, K)
        -- GRPO's loss is a sum of terms that cancel (advantages sum to 0 per question): compare it
        -- on the scale of its gradient instead
        if not name:find("^grpo") then H.near(lg, lc, tol_loss, what .. " loss") end
        local err = rel_err(gg, gc)
        H.ok(err < tol_grad, ("%s: gradient relative error %g"):format(what, err))
        for _, k in ipairs({"mean_logp", "mean_confidence", "entropy"}) do
          H.ok(metg[k] ~= nil, what .. " logs " .. k)
          H.near(metg[k], metc[k], tol_met, what .. " " .. k)
        end
      end
    end)
  end
  H.case(dt .. ": log-probs of a bf16 or f32 model come out in f32", function()
    local lp = rl.seq_logprobs(bg, 1.0)
    H.eq(lp:dtype(), "f32")
    H.eq(bg.model:logprobs(bg.ids, bg.prompt_lens, {lens = bg.lens}):dtype(), "f32")
  end)
end

H.finish()
