-- load_mem.lua - peak memory of loading a model folder (JSON lines; not a test).
--
--   build/confit bench/load_mem.lua                 write a random ~39M-parameter Qwen2 (the
--                                                   gen_bench.lua config) as f32 and as bf16
--                                                   folders under a temporary directory, then
--                                                   measure each in a fresh process
--   build/confit bench/load_mem.lua --load DIR      the measuring child: one JSON line
--
-- The child reads VmRSS / VmHWM from /proc/self/status before confit.load(DIR), after it, and
-- after one forward pass (which touches every weight). It reports
--   peak_over_baseline = VmHWM at the end - VmRSS before loading
-- beside the weights' f32 byte size; target for either file: peak_over_baseline <= weights + a
-- small constant (one copy of the weights, never two: the loader reads the tensors into the
-- model's parameters, a bf16 file widened through a 4 MB buffer).
-- Times are wall time (confit.clock); every line ends with the machine's fields
-- (bench/common.lua).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local o = B.parse(arg, {load = {"string", nil, help = "measure this model folder (the child's part)"}})
local confit = require "confit"

local function status()
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("a")
  f:close()
  local function kb(key) return tonumber(s:match(key .. ":%s+(%d+) kB")) * 1024 end
  return {rss = kb("VmRSS"), hwm = kb("VmHWM")}
end

local function emit(fields) B.emit(fields, {float = "%.6g"}) end

if o.load then
  local dir = o.load
  local cli = require "confit.cli"
  if not cli.exists(dir .. "/model.safetensors") then B.die("--load '%s': no model.safetensors there", dir) end
  collectgarbage()
  local before = status()
  local t0 = confit.clock()
  local m, err = confit.load(dir)
  if not m then B.die("--load '%s': %s", dir, tostring(err)) end
  local load_s = confit.clock() - t0
  local after_load = status()
  local weights = 0
  for _, t in pairs(m:parameters()) do weights = weights + t:numel() * 4 end
  local lg = m:forward({{1, 2, 3, 4}})
  lg:free()
  local after_fwd = status()
  local f = assert(io.open(dir .. "/model.safetensors", "rb"))
  local file_bytes = f:seek("end")
  f:close()
  local peak = after_fwd.hwm - before.rss
  emit({{"bench", "load_mem"}, {"dir", dir}, {"file_bytes", file_bytes},
        {"weights_f32_bytes", weights}, {"load_s", load_s},
        {"rss_before", before.rss}, {"rss_after_load", after_load.rss},
        {"rss_after_forward", after_fwd.rss}, {"hwm_after_forward", after_fwd.hwm},
        {"peak_over_baseline", peak}, {"peak_minus_weights", peak - weights},
        {"peak_over_weights_ratio", peak / weights}})
  m:free()
  os.exit(0)
end

local model = require "confit.model"
local config = {
  model_type = "qwen2", hidden_size = 512, intermediate_size = 1408, num_hidden_layers = 8,
  num_attention_heads = 8, num_key_value_heads = 2, head_dim = 64, vocab_size = 32000,
  max_position_embeddings = 4096, rms_norm_eps = 1e-6, rope_theta = 1000000.0,
  tie_word_embeddings = true, eos_token_id = 0,
}
local root = os.tmpname()
os.remove(root)
local sq = require("confit.cli").shell_quote
assert(os.execute("mkdir -p -- " .. sq(root .. "/f32")))
assert(os.execute("mkdir -p -- " .. sq(root .. "/bf16")))
do
  local m = model.new(config, {seed = 1, std = 0.02})
  m:save(root .. "/f32")
  m:free()
  -- the same weights stored as bf16 (config.json copied as is)
  local w = assert(confit.load_safetensors(root .. "/f32/model.safetensors"))
  local half = {}
  for k, t in pairs(w) do half[k] = t:to_dtype("bf16") end
  w = nil
  assert(confit.save_safetensors(root .. "/bf16/model.safetensors", half, {format = "pt"}))
  half = nil
  local src = assert(io.open(root .. "/f32/config.json", "rb"))
  local dst = assert(io.open(root .. "/bf16/config.json", "wb"))
  dst:write(src:read("a"))
  src:close(); dst:close()
  collectgarbage()
end
local exe = arg[-1] or "confit"
local script = arg[0]
for _, kind in ipairs({"f32", "bf16"}) do
  local p = assert(io.popen(("%s %s --load %s"):format(sq(exe), sq(script), sq(root .. "/" .. kind))))
  local line = p:read("a")
  if not p:close() or not line:match("^{") then
    os.execute("rm -rf -- " .. sq(root))
    B.die("the child measuring the %s folder failed", kind)
  end
  io.write((line:gsub('^{', '{"file_dtype":"' .. kind .. '",')))
  io.stdout:flush()
end
os.execute("rm -rf -- " .. sq(root))
