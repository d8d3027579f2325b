-- Tokenizer throughput: encode every MATH-500 problem and solution with the Qwen tokenizer on
-- one core and print one JSON line. Two passes over the same text: "cold" on a freshly loaded
-- tokenizer (empty word cache, what a first epoch sees) and "warm" (cache filled).
--   build/confit bench/tokenizer_bench.lua [tokenizer.json] [math500.jsonl]
require("confit.cli").header_help(arg)
local tokenizer = require "confit.tokenizer"
local cjson = require "cjson"

local tok_path = arg[1] or "../shared/data/tokenizer/qwen/tokenizer.json"
local data_path = arg[2] or "../shared/data/benchmarks/math500.jsonl"
local f = io.open(data_path, "rb")
if not f then
  print("SKIP: " .. data_path .. " is absent")
  os.exit(77)
end
local texts, bytes = {}, 0
for line in f:lines() do
  local r = cjson.decode(line)
  for _, k in ipairs({"problem", "solution"}) do
    texts[#texts + 1] = r[k]
    bytes = bytes + #r[k]
  end
end
f:close()

local t0 = os.clock()
local tok = assert(tokenizer.new(tok_path))
local load_s = os.clock() - t0

local function pass()
  local t, ntok = os.clock(), 0
  for i = 1, #texts do ntok = ntok + #tok:encode(texts[i]) end
  return os.clock() - t, ntok
end
local cold_s, ntok = pass()
local warm_s = math.huge
for _ = 1, 3 do warm_s = math.min(warm_s, (pass())) end

-- decode throughput on the same token streams
local all = {}
for i = 1, #texts do all[i] = tok:encode(texts[i]) end
local t = os.clock()
local dbytes = 0
for i = 1, #all do dbytes = dbytes + #tok:decode(all[i]) end
local decode_s = os.clock() - t
assert(dbytes == bytes, "decode did not give the text back")

print(string.format('{"bench":"tokenizer_encode","texts":%d,"bytes":%d,"tokens":%d,"load_s":%.3f,' ..
  '"cold_s":%.4f,"cold_mb_per_s":%.2f,"cold_tokens_per_s":%.0f,' ..
  '"warm_s":%.4f,"warm_mb_per_s":%.2f,"warm_tokens_per_s":%.0f,"decode_mb_per_s":%.2f}',
  #texts, bytes, ntok, load_s, cold_s, bytes / cold_s / 1e6, ntok / cold_s,
  warm_s, bytes / warm_s / 1e6, ntok / warm_s, bytes / decode_s / 1e6))
