-- sample_bench.lua - the CPU sampler's cost at Qwen's vocabulary (JSON lines).
--
--   build/confit bench/sample_bench.lua [--reps 3]
--
-- A random one-layer Qwen2 of hidden 32 with Qwen's 151,936-row vocabulary, so the per-token cost
-- is the sampler's (softmax over the vocabulary, top-p / top-k truncation, the draw), not the
-- transformer's. 8 prompts x 2 samples x 16 new tokens at T = 0.6 (ignore_eos), with the weights
-- drawn at std 0.3 (nearly flat next-token distributions: the nucleus is most of the vocabulary)
-- and at std 1.0 (peaked, as a trained model's: a small nucleus), each with top_p 0.95, top_k 40
-- and untruncated. One line per setting:
--   {"bench":"sample","std":..,"top_p":..,"top_k":..,"s":best of reps,"ms_per_token":..,
--    "mean_logprob":.. (the same samples give the same value before and after a change)}
-- Times are wall time (confit.clock); every line ends with the machine's fields
-- (bench/common.lua).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local o = B.parse(arg, {reps = {"int", 3, min = 1, max = 1000, help = "best of this many runs"}})
local confit = require "confit"

local reps = o.reps

local cfg = {model_type = "qwen2", hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1,
             num_attention_heads = 4, num_key_value_heads = 2, vocab_size = 151936,
             max_position_embeddings = 4096, rms_norm_eps = 1e-6, rope_theta = 10000.0,
             tie_word_embeddings = true, eos_token_id = {151643, 151645}}
local prompts = {}
for i = 1, 8 do prompts[i] = {1000 + i, 2000 + i, 3000 + i} end
local NEW = 16

for _, std in ipairs({0.3, 1.0}) do
  local m = confit.model.new(cfg, {seed = 1, std = std})
  for _, cut in ipairs({{top_p = 0.95, top_k = 0}, {top_p = 1.0, top_k = 40}, {top_p = 1.0, top_k = 0}}) do
    local best, lp = math.huge, 0
    for _ = 1, reps do
      local t0 = confit.clock()
      local out = m:generate(prompts, {n = 2, temperature = 0.6, top_p = cut.top_p, top_k = cut.top_k,
                                       max_new_tokens = NEW, seed = 1, ignore_eos = true})
      best = math.min(best, confit.clock() - t0)
      lp = 0
      for _, s in ipairs(out) do lp = lp + s.logprob end
      lp = lp / (#out * NEW)
    end
    B.emit({{"bench", "sample"}, {"std", std, "%.1f"}, {"top_p", cut.top_p, "%.2f"}, {"top_k", cut.top_k},
            {"s", best, "%.4f"}, {"ms_per_token", best * 1e3 / (#prompts * 2 * NEW), "%.4f"},
            {"mean_logprob", lp, "%.6f"}})
  end
  m:free()
end
