-- Tokenizer throughput: encode every MATH-500 problem and solution with the Qwen tokenizer on
-- one core and print one JSON line. Two passes over the same text: "cold" on a freshly loaded
-- tokenizer (empty word cache, what a first epoch sees) and "warm" (cache filled).
--   build/confit bench/tokenizer_bench.lua [--tokenizer tokenizer.json] [--data math500.jsonl]
--   build/confit bench/tokenizer_bench.lua [tokenizer.json] [math500.jsonl]      (the same)
-- Without the default files (../shared/data): a line {"bench":"skip",...} and exit status 77; a
-- file given that is not there: one line, exit status 1. Times are wall time (confit.clock; CPU
-- time, os.clock, before the machine fields were added: the same for this single-threaded
-- code on a quiet machine); the line ends with the machine's fields (bench/common.lua).
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local o = B.parse(arg, {
  tokenizer = {"string", "../shared/data/tokenizer/qwen/tokenizer.json"},
  data = {"string", "../shared/data/benchmarks/math500.jsonl", help = "JSON lines with problem and solution"},
}, {positional = {"tokenizer", "data"}})
local tokenizer = require "confit.tokenizer"
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"
local clock = require("confit.core").clock

local tok_path, data_path = o.tokenizer, o.data
for _, f in ipairs({{"tokenizer", tok_path}, {"data", data_path}}) do
  if not cli.exists(f[2]) then
    if not o.given[f[1]] then B.skip(f[2] .. " is absent") end
    B.die("--%s '%s': no such file", f[1], f[2])
  end
  if cli.is_dir(f[2]) then B.die("--%s '%s' is a folder, not a file", f[1], f[2]) end
end
local f, ferr = io.open(data_path, "rb")
if not f then B.die("--data '%s': %s", data_path, tostring(ferr)) end
local texts, bytes = {}, 0
local lineno = 0
for line in f:lines() do
  lineno = lineno + 1
  if line:find("%S") then
    local r, err = jsonio.decode(line)
    if type(r) ~= "table" then B.die("%s:%d: %s", data_path, lineno, err or "not a JSON object") end
    for _, k in ipairs({"problem", "solution"}) do
      if type(r[k]) ~= "string" then B.die("%s:%d: no text in field '%s'", data_path, lineno, k) end
      texts[#texts + 1] = r[k]
      bytes = bytes + #r[k]
    end
  end
end
f:close()

local t0 = clock()
local tok, terr = tokenizer.new(tok_path)
if not tok then B.die("--tokenizer '%s': %s", tok_path, tostring(terr)) end
local load_s = clock() - t0

local function pass()
  local t, ntok = clock(), 0
  for i = 1, #texts do ntok = ntok + #tok:encode(texts[i]) end
  return clock() - t, ntok
end
local cold_s, ntok = pass()
local warm_s = math.huge
for _ = 1, 3 do warm_s = math.min(warm_s, (pass())) end

-- decode throughput on the same token streams
local all = {}
for i = 1, #texts do all[i] = tok:encode(texts[i]) end
local t = clock()
local dbytes = 0
for i = 1, #all do dbytes = dbytes + #tok:decode(all[i]) end
local decode_s = clock() - t
assert(dbytes == bytes, "decode did not give the text back")

B.emit({{"bench", "tokenizer_encode"}, {"texts", #texts}, {"bytes", bytes}, {"tokens", ntok},
        {"load_s", load_s, "%.3f"}, {"cold_s", cold_s, "%.4f"}, {"cold_mb_per_s", bytes / cold_s / 1e6, "%.2f"},
        {"cold_tokens_per_s", ntok / cold_s, "%.0f"}, {"warm_s", warm_s, "%.4f"},
        {"warm_mb_per_s", bytes / warm_s / 1e6, "%.2f"}, {"warm_tokens_per_s", ntok / warm_s, "%.0f"},
        {"decode_mb_per_s", bytes / decode_s / 1e6, "%.2f"}})
