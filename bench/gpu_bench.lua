-- gpu_bench.lua - GPU throughput of confit on random-weight models of the Qwen2.5-Math shapes
-- (JSON lines; every line names the card).
--
--   build/confit bench/gpu_bench.lua [--only decode|train|rlsc|all] [--shape 1.5B|7B|all] [--budget 600]
--                                    [--new 512] [--prompt 128] [--train_dtype bf16|f32]
--                                    [--state_dtype f32|bf16] [--quick] [--profile] [--recompute]
--                                    [--micro_batch K]
--
-- --quick: decode at batch 16 only, 32 new tokens unless --new is given, one timed train step,
-- no 7B training. --shape: only that model shape. CONFIT_GEN_KNOCKOUT (environment) leaves decode
-- stages out to time them inside the CUDA graph (kernels/generate.cu, bench/README.md).
--
-- Lines:
--   {"bench":"decode","shape":"1.5B","batch":16,...}  generate() of `batch` prompts of --prompt
--       random tokens, --new new tokens each, ignore_eos, temperature 1 (sampling, no top-k/p);
--       parameters bf16 on the GPU drawn by model:init_random_cuda (std 0.02).
--       decode_tok_s = batch * (new - 1) / (time(new) - time(1)): the decode steps only;
--       ms_step = that time per step; tok_s = batch * new / time(new) (prefill included).
--       Best of 2 after a warm-up (which captures the CUDA graph of the batch).
--   {"bench":"train","shape":"1.5B",...}  one RL step: 16 rows of 640 tokens (128 prompt + 512
--       completion), sum of completion log-probs (model:logprobs), backward, AdamW step (lr 1e-6;
--       bf16 weights get f32 master copies; moments in --state_dtype); the 7B shape the same on
--       4 rows of 384 tokens (128 + 256) with bf16 moments, GPU.md's 7B baseline;
--       tok_s = rows * tokens / step time, tflops = 6 * params * tokens / step time, peak_gb = the
--       allocator's peak. Mean of 3 steps after one warm-up step, then one more step timed by
--       phase with confit.cuda.synchronize() between them: fwd_s (logprobs and the loss),
--       driver_mallocs_per_step / cache_flushes_per_step / malloc_ms_per_step: the caching
--       allocator's trips to the driver during the timed steps (confit.cuda.allocator_stats),
--       bwd_s (backward), opt_s (the AdamW step). --recompute: activation recomputation per
--       layer (m:set_recompute), for the memory it saves and the time it costs.
--   {"bench":"rlsc","shape":"1.5B","micro_batch":4,...}  one RLSC step at the paper's scale: one
--       question (128 random prompt tokens) with 16 completions of 256 .. 3072 tokens (spread
--       evenly, as sampled completions spread), rl.backward("l2") in micro-batches of 4 sequences
--       (--micro_batch) and in one pass, then AdamW (bf16 weights, f32 masters, --state_dtype
--       moments): step_s, tok_s (scored tokens, prompts included, per second), peak_gb. One pass
--       may run out of memory: then an error line, and the run goes on. 1.5B shape only.
--   {"bench":"profile","what":"decode 1.5B b16",...}  with --profile: after each measurement, one
--       more run under confit.profiler (decode: --profile_new new tokens, eager, no CUDA graph;
--       train: one step), a line per region, largest first (phase, name, calls, device_ms, host_ms,
--       share of the summed device time), then {"bench":"profile_total",...} with the summed
--       device and host time (decode: also per decode step). Device times come from CUDA events
--       around each region; in the eager decode run they include the launch gaps that the graph
--       removes, so compare profile_total's device_ms_step with the graph's ms_step.
--   {"bench":"error",...} when a stage fails (e.g. an op without a CUDA kernel): the message,
--       and the run goes on with the next stage.
-- Shapes: 1.5B = hidden 1536, 28 layers, 12/2 heads, FFN 8960, vocab 151936, tied;
--         7B = 3584, 28 layers, 28/4 heads, FFN 18944, vocab 152064, untied.
-- --budget (seconds) skips stages that would start after it has passed.
-- The flags are checked first (a mistake: one line, exit status 1); then, without a usable GPU,
-- one line {"bench":"skip","reason":...} and exit status 77 (tests/gpu/run.sh runs this script
-- only where its probe found a GPU). Times are wall time (confit.clock, which synchronizes the
-- GPU first); every line ends with the card and then the machine's fields (bench/common.lua).
local common = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local confit = require "confit"

local opt = common.parse(arg, {
  only = {"string", "all", choices = {"decode", "train", "rlsc", "all"}},
  shape = {"string", "all", choices = {"1.5B", "7B", "all"}},
  budget = {"number", 600, min = 0, help = "seconds; stages that would start after it are skipped"},
  new = {"int", 512, min = 2, max = 16384, shown = "512 (32 with --quick)", help = "decode: new tokens"},
  prompt = {"int", 128, min = 1, max = 16384, help = "decode: prompt tokens"},
  train_dtype = {"string", "bf16", choices = {"bf16", "f32"}},
  state_dtype = {"string", "f32", choices = {"f32", "bf16"}, help = "AdamW moments"},
  quick = {"flag", false, help = "decode at batch 16 only, 32 new tokens unless --new is given, "
                                 .. "one timed train step, no 7B training"},
  profile = {"flag", false}, recompute = {"flag", false},
  profile_new = {"int", 32, min = 2, max = 16384, help = "--profile: new tokens of the profiled decode"},
  profile_top = {"int", 40, min = 1, help = "--profile: regions printed per measurement"},
  micro_batch = {"int", 4, min = 1, help = "rlsc: sequences per micro-batch (one pass runs too)"},
})
if opt.quick and not opt.given.new then opt.new = 32 end

local T0 = confit.clock()
local card = "none"

-- every line names the card (before the machine's fields: tests/gpu/run.sh's sed matches a
-- line's start)
local function emit(fields)
  fields[#fields + 1] = {"card", card}
  common.emit(fields, {float = "%.6g"})
end
local function jstr(s) return require("confit.jsonio").encode(tostring(s)) end

local no_gpu = require("confit.cli").gpu_problem()
if no_gpu then common.skip("no usable GPU (" .. no_gpu .. ")", {{"card", card}}) end
card = confit.cuda.device_name() or "?"

local SHAPES = {
  ["1.5B"] = {model_type = "qwen2", hidden_size = 1536, intermediate_size = 8960, num_hidden_layers = 28,
              num_attention_heads = 12, num_key_value_heads = 2, vocab_size = 151936,
              max_position_embeddings = 32768, rms_norm_eps = 1e-6, rope_theta = 10000,
              tie_word_embeddings = true},
  ["7B"] = {model_type = "qwen2", hidden_size = 3584, intermediate_size = 18944, num_hidden_layers = 28,
            num_attention_heads = 28, num_key_value_heads = 4, vocab_size = 152064,
            max_position_embeddings = 32768, rms_norm_eps = 1e-6, rope_theta = 10000,
            tie_word_embeddings = false},
}

local function config_json(c)
  local keys = {}
  for k in pairs(c) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = c[k]
    parts[#parts + 1] = jstr(k) .. ":" .. (type(v) == "string" and jstr(v) or tostring(v))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function over_budget(stage)
  local el = confit.clock() - T0
  if el > opt.budget then
    emit({{"bench", "skipped"}, {"stage", stage}, {"reason", string.format("budget %gs spent (%.0fs)", opt.budget, el)}})
    return true
  end
  return false
end

local function gib(b) return b / 2 ^ 30 end

local function new_model(shape, seed, dtype)
  local m = confit.model_new(config_json(SHAPES[shape]))
  local ok, msg = m:init_random_cuda(seed, 0.02, dtype or "bf16")
  if not ok then error(msg, 0) end
  local n = 0
  for _, t in pairs(m:parameters()) do n = n + t:numel() end
  return m, n
end

local function random_prompts(B, len, vocab, seed)
  local ps, x = {}, seed
  for b = 1, B do
    local p = {}
    for t = 1, len do x = (x * 6364136223846793005 + 1442695040888963407); p[t] = (x >> 33) % vocab end
    ps[b] = p
  end
  return ps
end

local function stage(name, fn)
  local t = confit.clock()
  local ok, err = xpcall(fn, debug.traceback)
  if not ok then
    emit({{"bench", "error"}, {"stage", name}, {"message", (tostring(err):gsub("\n.*", ""))},
          {"seconds", confit.clock() - t}})
    io.stderr:write("gpu_bench: ", name, ": ", tostring(err), "\n")
  end
  collectgarbage("collect")
  if confit.empty_cache then pcall(confit.empty_cache) end
end

-- One JSON line per profiled region (the largest opt.profile_top), then the totals.
local function emit_profile(what, rows, steps)
  local tot = confit.profiler.total(rows)
  local dev = tot.device_s or 0
  for i = 1, math.min(opt.profile_top, #rows) do
    local r = rows[i]
    emit({{"bench", "profile"}, {"what", what}, {"phase", r.phase}, {"name", r.name}, {"calls", r.calls},
          {"device_ms", r.device_s and 1e3 * r.device_s or -1}, {"host_ms", 1e3 * r.host_s},
          {"share", dev > 0 and (r.device_s or 0) / dev or 0}})
  end
  local fields = {{"bench", "profile_total"}, {"what", what}, {"rows", #rows}, {"calls", tot.calls},
                  {"device_ms", 1e3 * dev}, {"host_ms", 1e3 * tot.host_s}}
  if steps then
    local d = 0
    for _, r in ipairs(rows) do
      if r.phase == "gen.decode" and r.name ~= "host_wait" then d = d + (r.device_s or 0) end
    end
    fields[#fields + 1] = {"decode_steps", steps}
    fields[#fields + 1] = {"device_ms_step", 1e3 * d / steps}
  end
  emit(fields)
end

-- Decode -------------------------------------------------------------------------------------
local function decode(shape, batches)
  if over_budget("decode " .. shape) then return end
  local t_init = confit.clock()
  local m, nparams = new_model(shape, 1)
  t_init = confit.clock() - t_init
  local ok, err = pcall(function()
    local vocab = SHAPES[shape].vocab_size
    for _, B in ipairs(batches) do
      if over_budget("decode " .. shape .. " batch " .. B) then break end
      local ps = random_prompts(B, opt.prompt, vocab, 17 + B)
      local function run(new)
        local t = confit.clock()
        local r = m:generate(ps, {max_new_tokens = new, temperature = 1.0, seed = 3, ignore_eos = true})
        local dt = confit.clock() - t
        assert(#r == B and #r[1].tokens == new, "generate returned the wrong shape")
        return dt
      end
      run(8) -- warm-up: graph capture for this batch, cuBLAS heuristics
      local t1, tn = math.huge, math.huge
      for _ = 1, 2 do
        t1 = math.min(t1, run(1))
        tn = math.min(tn, run(opt.new))
      end
      local dec = tn - t1
      emit({{"bench", "decode"}, {"shape", shape}, {"batch", B}, {"prompt", opt.prompt}, {"new", opt.new},
            {"params", nparams}, {"decode_tok_s", B * (opt.new - 1) / dec}, {"ms_step", 1000 * dec / (opt.new - 1)},
            {"tok_s", B * opt.new / tn}, {"prefill_s", t1}, {"total_s", tn}, {"init_s", t_init}})
      if opt.profile then
        local rows = confit.profile(function()
          return m:generate(ps, {max_new_tokens = opt.profile_new, temperature = 1.0, seed = 3, ignore_eos = true})
        end)
        emit_profile(string.format("decode %s b%d", shape, B), rows, opt.profile_new - 1)
      end
    end
  end)
  m:free()
  if not ok then error(err, 0) end
end

-- Train --------------------------------------------------------------------------------------
local function train(shape, B, P, N, state_dtype)
  if over_budget("train " .. shape) then return end
  state_dtype = state_dtype or opt.state_dtype
  local m, nparams = new_model(shape, 2, opt.train_dtype)
  m:set_recompute(opt.recompute)
  local ok, err = pcall(function()
    local params = m:parameters()
    local list = {}
    for _, name in ipairs(m:param_names()) do
      local t = params[name]
      if t then t:requires_grad_(true); list[#list + 1] = t end
    end
    local o = confit.optim.adamw(list, {lr = 1e-6, weight_decay = 0.0, state_dtype = state_dtype})
    local vocab = SHAPES[shape].vocab_size
    local rows = random_prompts(B, P + N, vocab, 99)
    local ids = confit.tensor(rows, {dtype = "i64"}):to("cuda")
    local plens = {}
    for b = 1, B do plens[b] = P end
    local function step()
      local lp = m:logprobs(ids, plens, 1.0)
      local loss = -(lp:sum())
      loss:backward()
      o:step()
      o:zero_grad()
      local v = loss:item()
      lp:free(); loss:free()
      return v
    end
    local v0 = step() -- warm-up
    assert(v0 == v0, "loss is NaN")
    local steps = opt.quick and 1 or 3
    local a0 = confit.cuda.allocator_stats()
    local t = confit.clock()
    for _ = 1, steps do step() end
    local dt = (confit.clock() - t) / steps
    local a1 = confit.cuda.allocator_stats()
    -- one more step, timed by phase
    confit.cuda.synchronize()
    local t0 = confit.clock()
    local lp = m:logprobs(ids, plens, 1.0)
    local loss = -(lp:sum())
    confit.cuda.synchronize()
    local t1 = confit.clock()
    loss:backward()
    confit.cuda.synchronize()
    local t2 = confit.clock()
    o:step()
    confit.cuda.synchronize()
    local t3 = confit.clock()
    o:zero_grad()
    lp:free(); loss:free()
    local tokens = B * (P + N)
    local _, _, peak = confit.cuda.memory()
    emit({{"bench", "train"}, {"shape", shape}, {"dtype", opt.train_dtype}, {"state_dtype", state_dtype},
          {"recompute", opt.recompute},
          {"rows", B}, {"tokens_per_row", P + N}, {"params", nparams}, {"step_s", dt}, {"tok_s", tokens / dt},
          {"tflops", 6 * nparams * tokens / dt / 1e12}, {"fwd_s", t1 - t0}, {"bwd_s", t2 - t1}, {"opt_s", t3 - t2},
          {"peak_gb", gib(peak)}, {"loss", v0},
          -- the allocator's driver traffic per timed step (0 when the cache serves every request)
          {"driver_mallocs_per_step", (a1.driver_mallocs - a0.driver_mallocs) / steps},
          {"cache_flushes_per_step", (a1.cache_flushes - a0.cache_flushes) / steps},
          {"malloc_ms_per_step", 1e3 * (a1.driver_malloc_seconds - a0.driver_malloc_seconds) / steps}})
    if opt.profile then
      confit.cuda.synchronize()
      local rows = confit.profile(step)
      emit_profile(string.format("train %s %dx%d", shape, B, P + N), rows)
    end
    o:free()
  end)
  m:free()
  if not ok then error(err, 0) end
end

-- RLSC at the paper's scale ------------------------------------------------------------------
local function rlsc(shape)
  if over_budget("rlsc " .. shape) then return end
  local rl = require "confit.rl"
  local m = new_model(shape, 3, opt.train_dtype)
  m:set_recompute(opt.recompute)
  local ok, err = pcall(function()
    local lm = require("confit.model").from_core(m)
    local params = require("confit.train").trainable(lm)
    local o = confit.optim.adamw(params, {lr = 1e-6, weight_decay = 0.0, state_dtype = opt.state_dtype})
    local vocab = SHAPES[shape].vocab_size
    local prompt = random_prompts(1, 128, vocab, 5)[1]
    local samples = {}
    for j = 1, 16 do
      samples[j] = {tokens = random_prompts(1, 256 + (3072 - 256) * (j - 1) // 15, vocab, 100 + j)[1], text = ""}
    end
    local batch = rl.batch(lm, {prompt}, samples, {n = 16})
    local tokens = 0
    for _, L in ipairs(batch.lens) do tokens = tokens + L end
    for _, K in ipairs({math.tointeger(opt.micro_batch) or 4, 0}) do   -- one pass last: it may not fit
      local function step()
        o:zero_grad()
        rl.backward("l2", batch, {alpha = 0.1, temperature = 0.5, micro_batch = K})
        o:step()
      end
      local ok2, e2 = pcall(function()
        step() -- warm-up (the optimizer state appears)
        confit.cuda.synchronize()
        confit.reset_peak_memory()
        local t = confit.clock()
        step()
        local dt = confit.clock() - t
        local _, _, peak = confit.cuda.memory()
        emit({{"bench", "rlsc"}, {"shape", shape}, {"micro_batch", K}, {"samples", 16}, {"tokens", tokens},
              {"step_s", dt}, {"tok_s", tokens / dt}, {"peak_gb", gib(peak)}, {"recompute", opt.recompute},
              {"state_dtype", opt.state_dtype}})
      end)
      if not ok2 then emit({{"bench", "error"}, {"stage", "rlsc " .. shape .. " micro_batch " .. K}, {"message", tostring(e2)}}) end
      o:zero_grad()
      collectgarbage(); collectgarbage()
      confit.empty_cache()
    end
    o:free()
  end)
  m:free()
  if not ok then error(err, 0) end
end

emit({{"bench", "start"}, {"budget_s", opt.budget}, {"only", opt.only}, {"new", opt.new}, {"prompt", opt.prompt}})
local function want(shape) return opt.shape == "all" or opt.shape == shape end
if opt.only == "all" or opt.only == "decode" then
  if want("1.5B") then stage("decode 1.5B", function() decode("1.5B", opt.quick and {16} or {16, 64}) end) end
  if want("7B") then stage("decode 7B", function() decode("7B", {16}) end) end
end
if opt.only == "all" or opt.only == "train" then
  if want("1.5B") then stage("train 1.5B", function() train("1.5B", 16, 128, 512) end) end
  -- GPU.md's 7B baseline: 4 x 384 tokens, bf16 optimizer state (ours keeps fp32 masters too)
  if not opt.quick and want("7B") then stage("train 7B", function() train("7B", 4, 128, 256, "bf16") end) end
end
if (opt.only == "all" or opt.only == "rlsc") and want("1.5B") then
  stage("rlsc 1.5B", function() rlsc("1.5B") end)
end
emit({{"bench", "end"}, {"seconds", confit.clock() - T0}})
