-- resume_mem.lua - time and peak memory of resuming an rlsc run from a checkpoint (JSON lines;
-- not a test).
--
--   build/confit bench/resume_mem.lua [--layers 8]   write a random Qwen2 (hidden 1024, 8 heads,
--                                                    FFN 4096, the toy vocabulary: ~134M
--                                                    parameters at 8 layers) with the toy
--                                                    tokenizer, run 1 rlsc step with a checkpoint
--                                                    (f32 weights and AdamW moments), then measure
--                                                    each stage in a fresh process
--   build/confit bench/resume_mem.lua --check OUT    the measuring child of train.check_out
--
-- Lines: `checkpoint` (the file sizes), `check_out` (train.check_out on the run directory as
-- rlsc calls it before writing anything: the checkpoint's headers, shapes and every value read
-- for NaN and inf) and `resume` (the whole `rlsc --resume`: the checks, loading the weights and
-- the optimizer state, no step left to run, the summary written): wall seconds and the peak
-- resident set (VmHWM, /usr/bin/time's %M where the child is rlsc). Pages of the checkpoint
-- files that a process maps count in its resident set while mapped; copies count beside them.
-- Every line ends with the machine's fields (bench/common.lua).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local o = B.parse(arg, {
  layers = {"int", 8, min = 1, max = 64},
  check = {"string", nil, help = "the measuring child of train.check_out: this run folder"},
})
local confit = require "confit"
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"
local sq = cli.shell_quote

local function emit(t) B.emit(t) end

if o.check then
  local out = o.check
  if not cli.exists(out .. "/checkpoint-1/config.json") then B.die("--check '%s': no checkpoint-1 there", out) end
  local train = require "confit.train"
  local t0 = confit.clock()
  local bad = train.check_out(out, {resume = true, n = 2, max_new_tokens = 8, questions_per_step = 1,
                                    model_config = jsonio.read_json(out .. "/checkpoint-1/config.json")})
  local dt = confit.clock() - t0
  local f = assert(io.open("/proc/self/status", "r"))
  local hwm = tonumber(f:read("a"):match("VmHWM:%s+(%d+) kB")) * 1024
  f:close()
  emit({bench = "check_out", seconds = dt, peak_rss_bytes = hwm, refused = bad or false})
  os.exit(0)
end

local layers = o.layers
local TOY = "examples/toy/model"
if not cli.exists(TOY .. "/config.json") then B.die("%s is absent (run from the project root)", TOY) end
local exe, script = arg[-1] or "confit", arg[0]
local root = os.tmpname()
os.remove(root)
local cfg = assert(jsonio.read_json(TOY .. "/config.json"))
cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = 1024, 4096, layers
cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim = 8, 8, 128
local m = require("confit.model").new(cfg, {seed = 1, tokenizer = "examples/toy/model/tokenizer.json"})
local params = 0
for _, t in pairs(m:parameters()) do params = params + t:numel() end
m:save(root .. "/model")
m:free()
assert(os.execute(("cp examples/toy/model/tokenizer_config.json %s/"):format(sq(root .. "/model"))))
local rlsc = ("%s recipes/rlsc.lua --model %s --steps 1 --questions-per-step 1 --n 2 --max-new-tokens 8 "
              .. "--no-eval --checkpoint-every 1 --quiet --out %s"):format(sq(exe), sq(root .. "/model"), sq(root .. "/run"))
assert(os.execute(rlsc .. " > /dev/null"), "resume_mem: the 1-step run failed")
local function size(p)
  local f = assert(io.open(p, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end
local ck = root .. "/run/checkpoint-1"
emit({bench = "checkpoint", parameters = params, model_bytes = size(ck .. "/model.safetensors"),
      optimizer_bytes = size(ck .. "/optimizer.safetensors")})
local p = assert(io.popen(("%s %s --check %s"):format(sq(exe), sq(script), sq(root .. "/run"))))
io.write(p:read("a"))
p:close()
local t0 = confit.clock()
assert(os.execute(("/usr/bin/time -o %s -f %%M %s --resume > /dev/null"):format(sq(root .. "/time"), rlsc)),
       "resume_mem: the resume failed")
local dt = confit.clock() - t0
local f = assert(io.open(root .. "/time", "r"))
local kb = tonumber(f:read("a"):match("(%d+)%s*$"))
f:close()
emit({bench = "resume", seconds = dt, peak_rss_bytes = kb * 1024})
os.execute("rm -rf -- " .. sq(root))
