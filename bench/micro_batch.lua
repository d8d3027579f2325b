-- micro_batch.lua - one RL gradient (rl.backward; --method, default RLSC L2, alpha 0.1, T 0.5) over a batch of ragged
-- samples, in one pass and in micro-batches of K sequences (JSON lines): time, the peak of tensor
-- memory during the call above what was live before it, and the gradient's largest difference
-- from the one-pass gradient (relative to its largest element).
-- The model is bench/train_step.lua's random Qwen2 (4 layers, hidden 512, 15.4M parameters); the
-- batch is --questions prompts of 32 tokens with --n completions each, of lengths spread evenly
-- over 8 .. --max-len tokens (the spread of real RLSC samples: some stop early, some run long).
--
--   build/confit bench/micro_batch.lua [--ks 0,2,4,8] [--n 16] [--questions 1] [--max-len 256]
--                                      [--device cpu|cuda] [--method l2]
--
-- step_s is wall time (confit.clock); every line ends with the machine's fields (bench/common.lua).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local confit = require "confit"
local rl = require "confit.rl"
local model = require "confit.model"
local train = require "confit.train"

local MAX_POSITIONS, PROMPT = 4096, 32   -- the model's context, the prompts' length
local o = B.parse(arg, {
  ks = {"string", "0,2,4,8", help = "micro-batch sizes, comma-separated (0: one pass)"},
  n = {"int", 16, min = 1, max = 4096, help = "completions per question"},
  questions = {"int", 1, min = 1, max = 4096},
  max_len = {"int", 256, min = 8, max = MAX_POSITIONS - PROMPT, help = "the longest completion"},
  device = {"string", "cpu", choices = confit.devices},
  method = {"string", "l2"},
})
local method, merr = rl.resolve(o.method)
if not method or not rl.trains(method) then B.die("--method: %s", merr or (o.method .. " does not train")) end
local ks = B.int_list(o.ks, "--ks", 0, 1 << 20)
local no_gpu = o.device == "cuda" and require("confit.cli").gpu_problem()
if no_gpu then B.die("--device cuda: no usable GPU (%s)", no_gpu) end

local VOCAB = 8000
local m = model.new({model_type = "qwen2", hidden_size = 512, intermediate_size = 1408,
                     num_hidden_layers = 4, num_attention_heads = 8, num_key_value_heads = 2,
                     vocab_size = VOCAB, max_position_embeddings = 4096, rms_norm_eps = 1e-6,
                     rope_theta = 10000, tie_word_embeddings = true}, {seed = 1, std = 0.02})
if o.device == "cuda" then assert(m:to("cuda", "bf16")) end
train.trainable(m)

local prompts, samples, total = {}, {}, 0
for q = 1, o.questions do
  local p = {}
  for t = 1, PROMPT do p[t] = (q * 977 + t * 31) % VOCAB end
  prompts[q] = p
  for j = 1, o.n do
    local L = 8 + ((o.max_len - 8) * (j - 1)) // math.max(1, o.n - 1)
    local toks = {}
    for t = 1, L do toks[t] = (q * 131 + j * 17 + t * 7) % VOCAB end
    samples[#samples + 1] = {tokens = toks, text = tostring(j % 3)}   -- the "answer" TTRL votes on
    total = total + PROMPT + L
  end
end
-- extract: TTRL votes on extracted answers (here the text itself, three answers per question)
local batch = rl.batch(m, prompts, samples, {n = o.n, extract = function(text) return text end})

local function peak_key()
  return o.device == "cuda" and "cuda_peak_bytes" or "cpu_peak_bytes"
end
local function live_key()
  return o.device == "cuda" and "cuda_bytes" or "cpu_bytes"
end

local function grads()
  local out, ps = {}, m:parameters()
  for _, name in ipairs(m:param_names()) do
    local g = ps[name].grad
    if g then for _, x in ipairs(g:to("cpu"):to_dtype("f32"):contiguous():view({-1}):totable()) do out[#out + 1] = x end end
  end
  return out
end

local function zero()
  for _, p in pairs(m:parameters()) do p.grad = nil end
  collectgarbage(); collectgarbage()
end

local ref
local maxlen = 0
for _, L in ipairs(batch.lens) do if L > maxlen then maxlen = L end end
for _, K in ipairs(ks) do
  zero()
  rl.backward(method, batch, {alpha = rl.reads(method, "alpha") and 0.1 or nil, temperature = 0.5, micro_batch = K})   -- warm-up
  zero()
  local before = confit.memory()[live_key()]
  confit.reset_peak_memory()
  local t0 = confit.clock()
  local lv = rl.backward(method, batch, {alpha = rl.reads(method, "alpha") and 0.1 or nil, temperature = 0.5, micro_batch = K})
  local dt = confit.clock() - t0
  local peak = confit.memory()[peak_key()] - before
  local g = grads()
  local diff, scale = 0, 0
  if not ref then ref = g end
  for i = 1, #ref do
    diff = math.max(diff, math.abs(g[i] - ref[i]))
    scale = math.max(scale, math.abs(ref[i]))
  end
  local chunks = K > 0 and #rl.chunks(batch, K, true) or 1
  B.emit({{"bench", "micro_batch"}, {"method", method}, {"device", o.device}, {"micro_batch", K}, {"chunks", chunks},
          {"samples", #samples}, {"tokens", total}, {"padded_tokens_one_pass", #samples * maxlen},
          {"loss", lv, "%.6g"}, {"step_s", dt, "%.3f"}, {"peak_mb", peak / 2 ^ 20, "%.1f"},
          {"grad_rel_diff", diff / math.max(scale, 1e-30), "%.3g"}})
end
