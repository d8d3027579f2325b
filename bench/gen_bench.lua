-- gen_bench.lua - CPU generation throughput of a random Qwen2 of 38.9M parameters (JSON lines).
--
--   build/confit bench/gen_bench.lua [--new 128] [--prompt 32] [--batch 16] [--reps 3] [--quick]
--                                    [--membw path/to/membw]
--   bench/run_gen_bench.sh [build-dir]     (compiles bench/membw.c and passes --membw)
--
-- --quick: --new 16 and --reps 1 unless they are given (in any order). Times are wall time
-- (confit.clock). Every line ends with the machine's fields (bench/common.lua: host, cpu, cores,
-- threads, ...).
-- Prints one JSON object per line:
--   {"bench":"membw", ...}       memory bandwidth measured in this run: through confit, a 256 MiB
--                                f32 tensor copied into a preallocated one (dst:copy_(src);
--                                2 x 256 MiB moved) and summed (t:sum(); 256 MiB read); with
--                                --membw, also the C read/copy figures of bench/membw.c (one
--                                thread and all threads). "bandwidth_gbs" is the largest of them:
--                                the highest bound, the strictest target.
--   {"bench":"model", ...}       the config, the exact parameter count and the weight bytes one
--                                decode step reads (every parameter once; tied head = embedding).
--   {"bench":"gen", "batch":B}   greedy generation, ignore_eos, prompts of --prompt random tokens,
--                                --new new tokens per sample. tok_s: B x new / wall time of the
--                                whole generate call (prefill included); decode_tok_s: the decode
--                                steps only (time of a --new run minus a 1-token run, over B x
--                                (new - 1) tokens). Best of --reps.
--   batch 1 also gets bound_tok_s = bandwidth / weight bytes per token and share = decode_tok_s
--   / bound_tok_s (target >= 0.5: at batch 1 a decode step is a matrix-vector product per
--   weight, so it cannot beat streaming the weights from memory once).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local confit = require "confit"
local model = require "confit.model"

local MAX_POSITIONS = 4096   -- the model's max_position_embeddings (below)
local opt = B.parse(arg, {
  new = {"int", 128, min = 2, help = "new tokens per sample (16 with --quick)"},
  prompt = {"int", 32, min = 1, help = "prompt tokens"},
  batch = {"int", 16, min = 1, help = "the second batch size (batch 1 always runs)"},
  reps = {"int", 3, min = 1, help = "best of this many runs (1 with --quick)"},
  quick = {"flag", false, help = "--new 16 and --reps 1 unless they are given"},
  membw = {"string", nil, help = "bench/membw.c built: its figures join the membw line"},
})
if opt.quick then
  if not opt.given.new then opt.new = 16 end
  if not opt.given.reps then opt.reps = 1 end
end
if opt.prompt + opt.new > MAX_POSITIONS then
  B.die("--prompt %d + --new %d is more than the model's %d positions", opt.prompt, opt.new, MAX_POSITIONS)
end
if opt.membw then
  local cli = require("confit.cli")
  local ok, why = cli.can_read(opt.membw)
  if not ok then
    B.die("--membw '%s': %s", opt.membw, why or (cli.exists(opt.membw) and "cannot be read" or "no such file"))
  end
end

local function emit(fields) B.emit(fields, {float = "%.6g"}) end

local function best_of(n, fn)
  local best = math.huge
  for _ = 1, n do
    local t0 = confit.clock()
    fn()
    local dt = confit.clock() - t0
    if dt < best then best = dt end
  end
  return best
end

-- Memory bandwidth ---------------------------------------------------------------------------
local N = 64 * 1024 * 1024                 -- 64 Mi f32 = 256 MiB
local bytes = N * 4
local src = confit.rand({N}, {seed = 1})
local dst = confit.zeros({N})
dst:copy_(src)                             -- touch every page of both before timing
local copy_s = best_of(opt.reps + 1, function() dst:copy_(src) end)
local sum_s = best_of(opt.reps + 1, function() local s = src:sum(); s:free() end)
local copy_gbs, read_gbs = 2 * bytes / copy_s / 1e9, bytes / sum_s / 1e9
src:free(); dst:free()
collectgarbage()
local bw, source = math.max(copy_gbs, read_gbs), "confit"
local c = {}
if opt.membw then
  local p = assert(io.popen(require("confit.cli").shell_quote(opt.membw), "r"))
  local line = p:read("l")
  p:close()
  local d = require("confit.jsonio").decode(line or "")
  if type(d) ~= "table" then B.die("--membw %s printed %s, not a JSON object", opt.membw, tostring(line)) end
  c = d
  for _, k in ipairs({"read_1t_gbs", "read_gbs", "copy_gbs"}) do
    if c[k] and c[k] > bw then bw, source = c[k], "membw_c." .. k end
  end
end
emit({{"bench", "membw"}, {"bytes", bytes}, {"confit_copy_gbs", copy_gbs},
      {"confit_sum_gbs", read_gbs}, {"c_read_1t_gbs", c.read_1t_gbs or "n/a"},
      {"c_read_gbs", c.read_gbs or "n/a"}, {"c_copy_gbs", c.copy_gbs or "n/a"},
      {"bandwidth_gbs", bw}, {"source", source}})

-- The model ----------------------------------------------------------------------------------
local config = {
  model_type = "qwen2", hidden_size = 512, intermediate_size = 1408, num_hidden_layers = 8,
  num_attention_heads = 8, num_key_value_heads = 2, head_dim = 64, vocab_size = 32000,
  max_position_embeddings = 4096, rms_norm_eps = 1e-6, rope_theta = 1000000.0,
  tie_word_embeddings = true, eos_token_id = 0,
}
local t0 = confit.clock()
local m = model.new(config, {seed = 1, std = 0.02})
local init_s = confit.clock() - t0
local params, nparams = m:parameters(), 0
for _, t in pairs(params) do nparams = nparams + t:numel() end
-- A decode step reads every parameter once (the tied head is the embedding matrix, counted once)
-- plus one embedding row per token (within the same matrix; counted apart for honesty).
local step_bytes = nparams * 4 + config.hidden_size * 4
emit({{"bench", "model"}, {"params", nparams}, {"weight_bytes", nparams * 4},
      {"bytes_per_token", step_bytes}, {"hidden", config.hidden_size},
      {"layers", config.num_hidden_layers}, {"heads", config.num_attention_heads},
      {"kv_heads", config.num_key_value_heads}, {"head_dim", config.head_dim},
      {"ffn", config.intermediate_size}, {"vocab", config.vocab_size}, {"tied", true},
      {"init_s", init_s}})
params = nil

-- Deterministic prompts of random ids (a 64-bit LCG; math.random is left alone).
local state = 12345
local function prompt_ids(len)
  local p = {}
  for i = 1, len do
    state = (state * 6364136223846793005 + 1442695040888963407)
    p[i] = ((state >> 33) % (config.vocab_size - 1)) + 1
  end
  return p
end

local function run(batch)
  local prompts = {}
  for b = 1, batch do prompts[b] = prompt_ids(opt.prompt) end
  local full = {temperature = 0, max_new_tokens = opt.new, ignore_eos = true}
  local one = {temperature = 0, max_new_tokens = 1, ignore_eos = true}
  local out = m:generate(prompts, one)            -- warm-up (allocations, thread pools)
  local t_one = best_of(opt.reps, function() out = m:generate(prompts, one) end)
  local t_full = best_of(opt.reps, function() out = m:generate(prompts, full) end)
  local ntok = 0
  for _, s in ipairs(out) do ntok = ntok + #s.tokens end
  assert(ntok == batch * opt.new, "gen_bench: expected " .. batch * opt.new .. " tokens")
  local decode_s = t_full - t_one
  local fields = {{"bench", "gen"}, {"batch", batch}, {"prompt_tokens", opt.prompt},
                  {"new_tokens", opt.new}, {"wall_s", t_full}, {"first_token_s", t_one},
                  {"tok_s", ntok / t_full},
                  {"decode_tok_s", batch * (opt.new - 1) / decode_s}}
  -- a checksum of the greedy tokens, to compare runs before/after a change in generate.c
  local h = 0
  for _, s in ipairs(out) do for _, tk in ipairs(s.tokens) do h = (h * 31 + tk) % 1000000007 end end
  fields[#fields + 1] = {"tokens_hash", h}
  return fields, batch * (opt.new - 1) / decode_s
end

local f1, dec1 = run(1)
local bound = bw * 1e9 / step_bytes
f1[#f1 + 1] = {"bound_tok_s", bound}
f1[#f1 + 1] = {"share", dec1 / bound}
f1[#f1 + 1] = {"target_met", dec1 / bound >= 0.5}
emit(f1)
if opt.batch > 1 then emit((run(opt.batch))) end
m:free()
