-- GPU generation (kernels/generate.cu) against the CPU sampler (core/nn/generate.c) on the tiny
-- fixture models. f32 weights on the GPU must reproduce the CPU: greedy tokens exactly, sampled
-- tokens (same Philox keying, same index-order walk) exactly on these tiny vocabularies, and
-- log-probs to 1e-4. bf16 weights are checked for self-consistency: the GPU's log-probs of its own
-- completions against the CPU scoring the same tokens with the same (bf16-rounded) weights.
-- Skips (exit 77) without a GPU.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

local FIX = {"tests/fixtures/tiny_qwen2", "tests/fixtures/tiny_llama", "tests/fixtures/tiny_llama31"}

local function load(dir) return assert(confit.model_load(dir)) end

do
  local probe = load(FIX[1])
  local ok, msg = probe:to_device("cuda", "f32")
  if not ok then H.skip_all("no GPU: " .. tostring(msg)) end
  probe:free()
end

local function same_tokens(a, b, msg)
  H.eq(#a, #b, msg .. ": length")
  for i = 1, #a do H.eq(a[i], b[i], msg .. ": token " .. i) end
end

local function prompts_for(vocab)
  -- three prompts of different lengths, deterministic
  local ps = {}
  local lens = {3, 9, 5}
  local x = 7
  for p = 1, #lens do
    local t = {}
    for i = 1, lens[p] do x = (x * 1103515245 + 12345) % 2147483648; t[i] = x % vocab end
    ps[p] = t
  end
  return ps
end

-- CPU sum of completion log-probs of prompt .. completion at temperature T.
local function cpu_score(model, prompt, tokens, T)
  local ids = {}
  for _, v in ipairs(prompt) do ids[#ids + 1] = v end
  for _, v in ipairs(tokens) do ids[#ids + 1] = v end
  local t = confit.tensor({ids}, {dtype = "i64"})
  return model:logprobs(t, {#prompt}, T):totable()[1]
end

for _, dir in ipairs(FIX) do
  local name = dir:match("[^/]+$")
  local cpu = load(dir)
  local gpu = load(dir)
  assert(gpu:to_device("cuda", "f32"))
  local cfg = cpu:config()
  local ps = prompts_for(cfg.vocab_size)

  H.case(name .. ": device and dtype", function()
    local d, dt = gpu:device()
    H.eq(d, "cuda"); H.eq(dt, "f32")
  end)

  H.case(name .. ": greedy f32 equals CPU (batched prompts, n = 2)", function()
    local o = {max_new_tokens = 12, temperature = 0, n = 2, ignore_eos = true}
    local a, b = cpu:generate(ps, o), gpu:generate(ps, o)
    H.eq(#b, #a, "sample count")
    for i = 1, #a do
      H.eq(b[i].prompt, a[i].prompt, "prompt index")
      same_tokens(b[i].tokens, a[i].tokens, "sample " .. i)
      for t = 1, #a[i].tokens do H.near(b[i].logprobs[t], a[i].logprobs[t], 1e-4, "logprob " .. t) end
      H.near(b[i].logprob, a[i].logprob, 1e-4, "logprob sum")
      H.eq(b[i].finish, a[i].finish, "finish")
    end
  end)

  H.case(name .. ": greedy matches the PyTorch reference", function()
    local ref = assert(confit.load_safetensors(dir .. "/reference.safetensors"))
    local prompt = ref.greedy_prompt:totable()
    local want = ref.greedy_tokens:totable()
    local r = gpu:generate({prompt}, {max_new_tokens = #want, temperature = 0, ignore_eos = true})
    same_tokens(r[1].tokens, want, "greedy")
  end)

  H.case(name .. ": sampling f32 equals CPU (same Philox keying)", function()
    local o = {max_new_tokens = 10, temperature = 0.9, n = 3, seed = 1234, ignore_eos = true}
    local a, b = cpu:generate(ps, o), gpu:generate(ps, o)
    for i = 1, #a do
      same_tokens(b[i].tokens, a[i].tokens, "sample " .. i)
      H.near(b[i].logprob, a[i].logprob, 1e-4, "logprob sum " .. i)
    end
  end)

  -- score_temperature (k_score after each sampler: the prefill's first token through lrow, the
  -- decode steps' through k_sample_split untruncated, k_sample with top-k, and greedy): each
  -- sample's score_logprob as the CPU's, which equals teacher forcing (test_model.lua). Written in
  -- the twenty-first session after its GPU time: not yet run on a GPU.
  H.case(name .. ": score_temperature f32 equals CPU", function()
    for _, o in ipairs({{temperature = 0.6, score_temperature = 1}, {temperature = 1, top_k = 5, score_temperature = 0.5},
                        {temperature = 0, score_temperature = 2}}) do
      o.max_new_tokens, o.n, o.seed, o.ignore_eos = 10, 3, 77, true
      local a, b = cpu:generate(ps, o), gpu:generate(ps, o)
      H.eq(#b, #a, "sample count")
      for i = 1, #a do
        same_tokens(b[i].tokens, a[i].tokens, "sample " .. i)
        H.ok(type(b[i].score_logprob) == "number", "sample " .. i .. ": a score")
        H.near_abs(b[i].score_logprob or 0 / 0, a[i].score_logprob, 1e-4,
                   string.format("sample %d: score at T = %g", i, o.score_temperature))
      end
    end
    H.eq(gpu:generate(ps, {max_new_tokens = 2})[1].score_logprob, nil, "not asked: no score")
    H.raises(function() gpu:generate(ps, {max_new_tokens = 2, score_temperature = 1e-50}) end,
             "score_temperature 1e-50", "outside the GPU's float range")
  end)

  H.case(name .. ": seeded sampling with top-k/top-p is reproducible", function()
    local o = {max_new_tokens = 16, temperature = 1.1, top_k = 7, top_p = 0.9, n = 4, seed = 99, ignore_eos = true}
    local a, b = gpu:generate(ps, o), gpu:generate(ps, o)
    for i = 1, #a do same_tokens(b[i].tokens, a[i].tokens, "rerun " .. i) end
    o.seed = 100
    local c = gpu:generate(ps, o)
    local differ = false
    for i = 1, #a do
      for t = 1, #a[i].tokens do if a[i].tokens[t] ~= c[i].tokens[t] then differ = true end end
    end
    H.ok(differ, "another seed should give other samples")
    -- the n samples of a prompt differ from each other (distinct Philox streams)
    local s1, s2 = a[1].tokens, a[2].tokens
    local d = false
    for t = 1, #s1 do if s1[t] ~= s2[t] then d = true end end
    H.ok(d, "samples 1 and 2 of prompt 1 should differ")
  end)

  H.case(name .. ": top_k = 1 and a tiny top_p sample the greedy tokens", function()
    local g = gpu:generate(ps, {max_new_tokens = 8, temperature = 0, ignore_eos = true})
    local k1 = gpu:generate(ps, {max_new_tokens = 8, temperature = 1.3, top_k = 1, seed = 5, ignore_eos = true})
    local p0 = gpu:generate(ps, {max_new_tokens = 8, temperature = 0.7, top_p = 1e-6, seed = 6, ignore_eos = true})
    for i = 1, #g do
      same_tokens(k1[i].tokens, g[i].tokens, "top_k=1 " .. i)
      same_tokens(p0[i].tokens, g[i].tokens, "top_p=1e-6 " .. i)
    end
  end)

  H.case(name .. ": truncated sampling f32 equals CPU", function()
    -- top-k/top-p keep the same candidates (by logit, ties by id) and both draw from them in id
    -- order with the same Philox stream, so the tokens agree (except where f32 rounding moves a
    -- boundary, as untruncated); the log-probs score as the CPU's forward does
    local o = {max_new_tokens = 12, temperature = 0.8, top_k = 5, top_p = 0.8, n = 2, seed = 3, ignore_eos = true}
    local a, b = cpu:generate(ps, o), gpu:generate(ps, o)
    for i = 1, #b do
      same_tokens(b[i].tokens, a[i].tokens, "sample " .. i)
      H.near(b[i].logprob, a[i].logprob, 1e-4, "logprob sum " .. i)
      H.near(b[i].logprob, cpu_score(cpu, ps[b[i].prompt], b[i].tokens, 0.8), 1e-3, "scored " .. i)
    end
  end)

  H.case(name .. ": n samples share the prompt's prefill", function()
    local one = gpu:generate(ps, {max_new_tokens = 10, temperature = 0, n = 1, ignore_eos = true})
    local four = gpu:generate(ps, {max_new_tokens = 10, temperature = 0, n = 4, ignore_eos = true})
    H.eq(#four, 4 * #ps)
    for i = 1, #four do
      H.eq(four[i].prompt, (i - 1) // 4 + 1, "prompt order")
      same_tokens(four[i].tokens, one[four[i].prompt].tokens, "sample " .. i)
    end
    -- a prompt alone gives what it gives in a batch
    local alone = gpu:generate({ps[2]}, {max_new_tokens = 10, temperature = 0, ignore_eos = true})
    same_tokens(alone[1].tokens, one[2].tokens, "alone vs batched")
  end)

  H.case(name .. ": stop tokens and EOS", function()
    local g = gpu:generate({ps[1]}, {max_new_tokens = 12, temperature = 0, ignore_eos = true})[1].tokens
    local stop = g[4]
    local first
    for t = 1, #g do if g[t] == stop then first = t; break end end
    local r = gpu:generate({ps[1]}, {max_new_tokens = 12, temperature = 0, ignore_eos = true, stop = {stop}})[1]
    H.eq(r.finish, "stop")
    H.eq(#r.tokens, first, "ends at the first stop token, included")
    H.eq(r.tokens[#r.tokens], stop)
    -- with EOS active the GPU stops exactly where the CPU does
    local o = {max_new_tokens = 30, temperature = 1.0, seed = 11, n = 3}
    local a, b = cpu:generate(ps, o), gpu:generate(ps, o)
    for i = 1, #a do
      same_tokens(b[i].tokens, a[i].tokens, "eos " .. i)
      H.eq(b[i].finish, a[i].finish, "finish " .. i)
    end
  end)

  H.case(name .. ": max_new_tokens", function()
    for _, k in ipairs({0, 1, 2, 9, 17}) do
      local r = gpu:generate(ps, {max_new_tokens = k, temperature = 0, ignore_eos = true, n = 2})
      H.eq(#r, 2 * #ps)
      for i = 1, #r do
        H.eq(#r[i].tokens, k, "length for max_new_tokens " .. k)
        H.eq(r[i].finish, "length")
      end
    end
  end)

  H.case(name .. ": more samples than a decode step holds: a clear error", function()
    H.raises(function() gpu:generate({ps[1]}, {max_new_tokens = 2, n = 65473}) end, "65473 samples", "several calls")
  end)

  H.case(name .. ": many samples (several buckets as samples stop)", function()
    local o = {max_new_tokens = 40, temperature = 1.0, seed = 21, n = 33}
    local a, b = cpu:generate(ps, o), gpu:generate(ps, o)
    for i = 1, #a do
      same_tokens(b[i].tokens, a[i].tokens, "sample " .. i)
      H.eq(b[i].finish, a[i].finish, "finish " .. i)
    end
  end)

  H.case(name .. ": bf16 weights: log-probs agree with the CPU on the same tokens", function()
    local gb = load(dir)
    assert(gb:to_device("cuda", "bf16"))
    local _, dt = gb:device()
    H.eq(dt, "bf16")
    local cb = load(dir)
    assert(cb:to_device("cuda", "bf16")); assert(cb:to_device("cpu")) -- bf16-rounded weights in f32
    for _, T in ipairs({0, 0.7}) do
      local o = {max_new_tokens = 12, temperature = T, seed = 8, n = 2, ignore_eos = true}
      local b = gb:generate(ps, o)
      for i = 1, #b do
        local want = cpu_score(cb, ps[b[i].prompt], b[i].tokens, T > 0 and T or 1)
        -- 0.03 nats per token, absolute (H.near would scale it by the sum's size)
        H.near_abs(b[i].logprob, want, 0.03 * #b[i].tokens, "bf16 T=" .. T .. " sample " .. i)
      end
    end
    -- greedy bf16 equals greedy of the CPU on the bf16-rounded weights for the first token
    local a1 = cb:generate(ps, {max_new_tokens = 1, temperature = 0})
    local b1 = gb:generate(ps, {max_new_tokens = 1, temperature = 0})
    local agree = 0
    for i = 1, #a1 do if a1[i].tokens[1] == b1[i].tokens[1] then agree = agree + 1 end end
    H.ok(agree >= #a1 - 1, "first greedy tokens agree (" .. agree .. "/" .. #a1 .. ")")
    gb:free(); cb:free()
  end)

  H.case(name .. ": to_device round trip keeps the values (f32)", function()
    local m = load(dir)
    assert(m:to_device("cuda", "f32")); assert(m:to_device("cpu"))
    local a, b = cpu:parameters(), m:parameters()
    for k, t in pairs(a) do
      local d = (t - b[k]):abs():max():item()
      H.ok(d == 0, k .. " changed by " .. d)
    end
    m:free()
  end)

  cpu:free(); gpu:free()
end

-- Long sequences and other head shapes: the fixtures above generate a few tokens, so their decode
-- attention runs one split of one tile. Here prompts of 200 and 37 tokens get 150 new tokens in
-- 32 rows (n = 16): several splits per row, several 64-position tiles per split, the split
-- combine, head_dim on the vector path (16, 256) and the element path (8, 24), a kv group wider
-- than one pass of the kernel (12 heads on one kv head). Every completion token's log-prob on the
-- GPU (f32) must match the CPU forward of the same sequence (tolerance 2e-3: the CPU's own KV
-- sampler differs from its forward by 3e-4 here; a wrong attention is off by far more).
local function long_config(hidden, heads, kv, hd)
  return {model_type = "qwen2", hidden_size = hidden, intermediate_size = 64, num_hidden_layers = 2,
          num_attention_heads = heads, num_key_value_heads = kv, head_dim = hd, vocab_size = 97,
          max_position_embeddings = 1024, rms_norm_eps = 1e-6, rope_theta = 10000, tie_word_embeddings = true}
end

-- prompts of the given lengths (random tokens below vocab, from seed x)
local function lcg_prompts(lens, vocab, x)
  local ps = {}
  for p, len in ipairs(lens) do
    local t = {}
    for i = 1, len do x = (x * 1103515245 + 12345) % 2147483648; t[i] = x % vocab end
    ps[p] = t
  end
  return ps
end

-- |GPU log-prob - CPU forward log-prob| over every completion token of r: worst and mean
local function forward_gap(ref, ps, r)
  local worst, sum, count = 0, 0, 0
  for _, smp in ipairs(r) do
    local ids = {}
    for _, v in ipairs(ps[smp.prompt]) do ids[#ids + 1] = v end
    for _, v in ipairs(smp.tokens) do ids[#ids + 1] = v end
    local lp = ref:forward(confit.tensor({ids}, {dtype = "i64"})):log_softmax(-1):totable()[1]
    local np = #ps[smp.prompt]
    for k, tok in ipairs(smp.tokens) do
      local d = math.abs(lp[np + k - 1][tok + 1] - smp.logprobs[k])
      worst, sum, count = math.max(worst, d), sum + d, count + 1
    end
  end
  return worst, sum / math.max(count, 1)
end

local LONG = {
  {"head_dim 16, 8 heads on 4 kv heads", long_config(128, 8, 4, 16)},
  {"head_dim 256, 2 heads on 1 kv head", long_config(64, 2, 1, 256)},
  {"head_dim 8, 12 heads on 1 kv head", long_config(96, 12, 1, 8)},
  {"head_dim 24, 4 heads on 2 kv heads", long_config(96, 4, 2, 24)},
}
for _, L in ipairs(LONG) do
  H.case("long sequences, " .. L[1] .. ": GPU log-probs match the CPU forward", function()
    local ref = confit.model.new(L[2], {seed = 5, std = 0.3})
    local gpu = confit.model.new(L[2], {seed = 5, std = 0.3}):to("cuda", "f32")
    local ps = lcg_prompts({200, 37}, 97, 3)
    local r = gpu:generate(ps, {max_new_tokens = 150, temperature = 1, n = 16, seed = 9, ignore_eos = true})
    H.eq(#r, 32, "samples")
    for _, smp in ipairs(r) do H.eq(#smp.tokens, 150, "length") end
    local worst = forward_gap(ref, ps, r)
    H.ok(worst <= 2e-3, string.format("worst log-prob difference %.3g", worst))
    gpu:free(); ref:free()
  end)
end

-- bf16 weights in decode batches of 16 rows with every GEMM shape a multiple of 32 / 8: the
-- shapes kernels/skinny.cu takes when CONFIT_GEN_MMA=1 (tests/gpu/run.sh runs this file so too;
-- otherwise cuBLAS runs them). The GPU keeps GEMM inputs and the KV cache in bf16, the CPU forward
-- on the same bf16-rounded weights does not, so the bound is loose; a wrong GEMM is off by far more.
-- Weights of std 0.1: on the CPU, scaling every bf16-rounded weight by a random 1 + u 2^-8
-- (|u| <= 1/2, one bf16 rounding) moves these log-probs by 0.005 on average (worst 0.03). At
-- std 0.3 the same perturbation moved them by 0.05 (worst 0.53): attention scores of std ~40
-- make such a model chaotic, and this case failed there on an H200 with a correct GEMM.
H.case("bf16, 16-row decode batches: GPU log-probs match the CPU forward", function()
  local cfg = {model_type = "qwen2", hidden_size = 128, intermediate_size = 64, num_hidden_layers = 2,
               num_attention_heads = 8, num_key_value_heads = 4, head_dim = 16, vocab_size = 104,
               max_position_embeddings = 512, rms_norm_eps = 1e-6, rope_theta = 10000, tie_word_embeddings = true}
  local gpu = confit.model.new(cfg, {seed = 6, std = 0.1}):to("cuda", "bf16")
  local ref = confit.model.new(cfg, {seed = 6, std = 0.1}):to("cuda", "bf16"):to("cpu")
  local ps = lcg_prompts({40, 23}, 104, 7)
  local r = gpu:generate(ps, {max_new_tokens = 60, temperature = 1, n = 8, seed = 4, ignore_eos = true})
  H.eq(#r, 16, "samples")
  local worst, mean = forward_gap(ref, ps, r)
  H.ok(mean <= 0.03 and worst <= 0.3,
       string.format("log-prob difference: mean %.3g (bound 0.03), worst %.3g (bound 0.3)", mean, worst))
  gpu:free(); ref:free()
end)

-- Runs code (one line of Lua, no double quotes) in a child confit with the environment settings
-- env (the decode switches are read when generation starts); returns its output.
local function child_confit(env, code)
  local exe = arg and arg[-1] or "confit"
  local p = assert(io.popen(("env %s '%s' -e \"%s\" 2>&1"):format(env, exe, (code:gsub("\n", " ")))))
  local out = p:read("a")
  p:close()
  return out
end

-- The 1.5B model's attention shape (head_dim 128, 6 query heads per kv head) in bf16, where the
-- decode attention runs on the tensor cores by default (k_attn_tc2; CONFIT_GEN_ATT_TC=1 k_attn_tc,
-- =0 k_attn_qp on the CUDA cores).
-- 1. Long sequences (several splits of several tiles) against the CPU forward, as the bf16 case
--    above. An H200 (2026-11-27) saw mean 0.0037, worst 0.019 (k_attn_tc2, k_attn_qp); under
--    CONFIT_GEN_FUSE_ROPE=0 (k_rope_kv, then the attention over rotated queries; not the default)
--    mean 0.0295, worst 0.55, which these bounds refuse: not yet understood (docs/HACKING.md).
-- 2. The three attentions against one another. Their generations part after a few dozen tokens
--    (on an H200 sample 1 of 4 at token 15): they sum in different orders, about 1e-6 relative,
--    and a bf16 rounding that flips moves the logits by about 1e-3 and, now and then, a sampled
--    token. So each runs (in a child confit, the switch read from the environment) on prompts
--    of many lengths (partial and whole 64-position tiles, several splits) for 6 new tokens: the
--    first comes from the prefill (no decode attention), the rest from decode steps. Each against
--    the CPU forward as in 1 (an H200: mean 0.004, worst 0.014); and along each sample, up to
--    where its tokens part from k_attn_qp's, the log-probs agree within 0.02 (an H200: 0.005
--    with =1, 0.009 with =2, every token compared); most tokens are compared.
local HD128 = "{model_type = 'qwen2', hidden_size = 128, intermediate_size = 64, num_hidden_layers = 2, " ..
  "num_attention_heads = 12, num_key_value_heads = 2, head_dim = 128, vocab_size = 97, " ..
  "max_position_embeddings = 1024, rms_norm_eps = 1e-6, rope_theta = 10000, tie_word_embeddings = true}"
H.case("bf16, head_dim 128, 6 heads per kv head: log-probs match the CPU forward, the three attentions one another", function()
  local cfg = assert(_G.load("return " .. HD128))()
  local gpu = confit.model.new(cfg, {seed = 5, std = 0.1}):to("cuda", "bf16")
  local ref = confit.model.new(cfg, {seed = 5, std = 0.1}):to("cuda", "bf16"):to("cpu")
  local ps = lcg_prompts({200, 37}, 97, 3)
  local r = gpu:generate(ps, {max_new_tokens = 150, temperature = 1, n = 4, seed = 9, ignore_eos = true})
  H.eq(#r, 8, "samples")
  local worst, mean = forward_gap(ref, ps, r)
  print(string.format("  default attention, long sequences against the CPU forward: mean %.3g, worst %.3g", mean, worst))
  H.ok(mean <= 0.015 and worst <= 0.15,
       string.format("log-prob difference: mean %.3g (bound 0.015), worst %.3g (bound 0.15)", mean, worst))
  gpu:free()
  local lens = {1, 2, 17, 62, 63, 64, 65, 127, 128, 129, 200, 255, 300, 383, 450, 511}
  local sp = lcg_prompts(lens, 97, 11)
  local gen = "{max_new_tokens = 6, temperature = 1, n = 2, seed = 9, ignore_eos = true}"
  local pl = {}
  for i, p in ipairs(sp) do pl[i] = "{" .. table.concat(p, ",") .. "}" end
  local code = ("local confit = require('confit'); " ..
    "local m = confit.model.new(%s, {seed = 5, std = 0.1}):to('cuda', 'bf16'); " ..
    "for _, s in ipairs(m:generate({%s}, %s)) do io.write(s.prompt, '|', table.concat(s.tokens, ' '), '|') " ..
    "for _, l in ipairs(s.logprobs) do io.write(string.format('%%.9g ', l)) end io.write('\\n') end")
    :format(HD128, table.concat(pl, ","), gen)
  -- the three levels, then the default's tiles in at most 2 splits per row (CONFIT_GEN_ATT_SPLITS:
  -- up to 5 tiles a block; not yet run on a GPU)
  local envs = {"CONFIT_GEN_ATT_TC=0", "CONFIT_GEN_ATT_TC=1", "CONFIT_GEN_ATT_TC=2", "CONFIT_GEN_ATT_SPLITS=2"}
  local runs = {}
  for i, env in ipairs(envs) do
    local out, rows = child_confit(env, code), {}
    for line in out:gmatch("[^\n]+") do
      local pi, toks, lps = line:match("^(%d+)|([%d ]*)|(.*)$")
      H.ok(pi, env .. ": child output line " .. (#rows + 1) .. ": " .. line)
      if not pi then break end
      local smp = {prompt = tonumber(pi), tokens = {}, logprobs = {}}
      for t in toks:gmatch("%d+") do smp.tokens[#smp.tokens + 1] = tonumber(t) end
      for v in lps:gmatch("%S+") do smp.logprobs[#smp.logprobs + 1] = tonumber(v) end
      H.eq(#smp.tokens, 6, env .. ": sample " .. (#rows + 1) .. " tokens")
      H.eq(#smp.logprobs, 6, env .. ": sample " .. (#rows + 1) .. " log-probs")
      rows[#rows + 1] = smp
    end
    H.eq(#rows, 2 * #lens, env .. ": samples: " .. out:sub(1, 300))
    local w, m = forward_gap(ref, sp, rows)
    print(string.format("  %s against the CPU forward: mean %.3g, worst %.3g", env, m, w))
    H.ok(m <= 0.015 and w <= 0.15,
         string.format("%s: log-prob difference: mean %.3g (bound 0.015), worst %.3g (bound 0.15)", env, m, w))
    runs[i] = rows
  end
  for i = 2, #envs do
    local env, compared, total, gap = envs[i], 0, 0, 0
    for k, smp in ipairs(runs[i]) do
      local base = runs[1][k]
      H.eq(smp.prompt, base.prompt, "sample " .. k .. " prompt")
      H.eq(smp.tokens[1], base.tokens[1], env .. ": sample " .. k .. ": the prefill's token")
      for t = 1, #base.tokens do
        total = total + 1
        if smp.tokens[t] ~= base.tokens[t] then break end
        compared = compared + 1
        gap = math.max(gap, math.abs(smp.logprobs[t] - base.logprobs[t]))
      end
    end
    print(string.format("  %s against CONFIT_GEN_ATT_TC=0: %d of %d tokens compared, log-probs within %.3g",
                        env, compared, total, gap))
    H.ok(compared >= 0.8 * total, string.format("%s: only %d of %d tokens before the samples part", env, compared, total))
    H.ok(gap <= 2e-2, string.format("%s: log-probs differ from CONFIT_GEN_ATT_TC=0 by up to %.3g", env, gap))
  end
  ref:free()
end)

-- Logits that cannot be sampled raise an error naming the token, the sample and the prompt, as
-- the CPU's do (its wording for the cause differs: the GPU does not name the id). The final norm
-- NaN: every logit NaN at token 1 (the prefill's sampler, k_sample); every embedding row but the
-- prompt's NaN: token 2's logits NaN (the decode step's samplers: k_sample_split untruncated and
-- greedy, k_sample with top-k / top-p); the CPU fails at the same token (checked there too).
H.case("NaN logits: a clear error at the token they appear, on the GPU as on the CPU", function()
  local opts = {{temperature = 0}, {temperature = 1}, {temperature = 1, top_k = 3}, {temperature = 0.7, top_p = 0.9}}
  for _, where in ipairs{"norm", "embedding"} do
    local prompt = {1, 2, 3}
    local models = {cpu = load(FIX[2]), cuda = load(FIX[2])}
    assert(models.cuda:to_device("cuda", "f32"))
    for dev, m in pairs(models) do
      local p = m:parameters()
      confit.no_grad(function()
        if where == "norm" then p["model.norm.weight"]:fill_(0 / 0)
        else
          for id = 0, m:config().vocab_size - 1 do
            if id < 1 or id > 3 then p["model.embed_tokens.weight"]:narrow(1, id + 1, 1):fill_(0 / 0) end
          end
        end
      end)
      local at = where == "norm" and "token 1 of sample 1 (prompt 1)" or "token 2 of sample 1 (prompt 1)"
      for _, o in ipairs(opts) do
        o.max_new_tokens, o.seed, o.n = 8, 5, 2
        local err = H.raises(function() m:generate({prompt}, o) end, "generate", "non-finite logits", at)
        H.ok(not err:find("\n", 1, true), dev .. " " .. where .. ": one line: " .. err)
      end
      m:free()
    end
  end
end)

-- Temperatures at the ends of a float's range: the GPU samplers work in z = (logit - max) / T, as
-- the CPU does where logit / T would overflow, so at T = 1e-40 (a subnormal float) every sampling
-- path decodes greedily like the CPU, log-probs 0 (no tied maxima here); at T = 1e30 (a float)
-- the draw is near uniform and each log-prob -log(vocab) within float rounding, as on the CPU. A temperature no
-- float holds above 0 (1e-50) or below inf (1e39) is refused, naming it; the CPU takes it.
H.case("temperatures at the ends of a float's range: tiny decodes greedily as on the CPU, huge near uniform", function()
  local cpu, gpu = load(FIX[1]), load(FIX[1])
  assert(gpu:to_device("cuda", "f32"))
  local g = cpu:generate({{1, 2, 3}}, {temperature = 0, max_new_tokens = 6, n = 2})
  local V = cpu:config().vocab_size
  for _, o in ipairs({{temperature = 1e-40}, {temperature = 1e-40, top_k = 3}, {temperature = 1e-40, top_p = 0.9}}) do
    o.max_new_tokens, o.seed, o.n = 6, 5, 2
    local r, c = gpu:generate({{1, 2, 3}}, o), cpu:generate({{1, 2, 3}}, o)
    same_tokens(r[1].tokens, g[1].tokens, "GPU at T = 1e-40 decodes greedily")
    same_tokens(c[1].tokens, g[1].tokens, "CPU at T = 1e-40 decodes greedily")
    for t = 1, #r[1].tokens do H.near(r[1].logprobs[t], 0, 1e-6, "T = 1e-40: log-prob of token " .. t) end
  end
  for _, o in ipairs({{temperature = 1e30}, {temperature = 1e30, top_k = 5}}) do
    o.max_new_tokens, o.seed, o.n = 6, 5, 2
    local r = gpu:generate({{1, 2, 3}}, o)
    -- log-probs are under the full log_softmax(logits / T), truncated or not
    for t = 1, #r[1].tokens do
      H.near(r[1].logprobs[t], -math.log(V), 1e-4, "T = 1e30: log-prob of token " .. t)
    end
  end
  for _, T in ipairs({1e-50, 1e39}) do
    H.raises(function() gpu:generate({{1, 2, 3}}, {temperature = T, max_new_tokens = 2}) end,
             "temperature " .. string.format("%g", T), "outside the GPU sampler's float range")
    H.eq(#cpu:generate({{1, 2, 3}}, {temperature = T, max_new_tokens = 2, ignore_eos = true})[1].tokens, 2, "CPU at T = " .. T)
  end
  cpu:free(); gpu:free()
end)

-- The decode switches are read from the environment when generation starts: a value out of range
-- is an error that names it, returned to the caller like any other (the process goes on). Each
-- setting runs in a child confit that catches the error and prints it.
H.case("decode switches: a bad value is an error naming the switch", function()
  local code = ([[local m = assert(require('confit').model_load('%s')); assert(m:to_device('cuda', 'bf16'));
    local ok, e = pcall(m.generate, m, {{1, 2, 3}}, {max_new_tokens = 2}); print(ok and 'ran' or e)]]):format(FIX[1])
  local function child(env) return child_confit(env, code) end
  local bad = {
    {"CONFIT_GEN_ATT_GS=0", "CONFIT_GEN_ATT_GS must be an integer from 1 to 64"},
    {"CONFIT_GEN_ATT_QPAIR=x", "CONFIT_GEN_ATT_QPAIR must be an integer from 0 to 1"},
    {"CONFIT_GEN_ATT_TC=3", "CONFIT_GEN_ATT_TC must be an integer from 0 to 2"},
    {"CONFIT_GEN_ATT_SPLITS=65", "CONFIT_GEN_ATT_SPLITS must be an integer from 0 to 64"},
    {"CONFIT_GEN_MMA_NT=3", "CONFIT_GEN_MMA_NT must be 1, 2 or 4"},
  }
  for _, b in ipairs(bad) do
    local out = child(b[1])
    H.ok(out:find(b[2], 1, true), b[1] .. ": " .. out)
  end
  local out = child("CONFIT_GEN_ATT_GS=2")
  H.ok(out:find("^ran"), "CONFIT_GEN_ATT_GS=2 runs: " .. out)
end)

H.case("init_random_cuda: a random model generates", function()
  local m = load(FIX[1])
  assert(m:init_random_cuda(42, 0.5))
  local d, dt = m:device()
  H.eq(d, "cuda"); H.eq(dt, "bf16")
  local r = m:generate({{1, 2, 3}}, {max_new_tokens = 5, temperature = 1, seed = 1, ignore_eos = true})
  H.eq(#r[1].tokens, 5)
  assert(m:to_device("cpu"))
  local p = m:parameters()
  local w = p["model.layers.0.self_attn.q_proj.weight"]
  local sd = (w * w):mean():item() ^ 0.5
  H.near(sd, 0.5, 0.1, "std of a matrix")
  H.near(p["model.norm.weight"]:mean():item(), 1, 1e-6, "norms are one")
  H.eq(p["model.layers.0.self_attn.q_proj.bias"]:abs():max():item(), 0, "biases are zero")
  m:free()
end)

H.finish()
