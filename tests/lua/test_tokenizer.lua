-- Tokenizer and chat template tests.
--  * a tiny byte-level tokenizer.json written here (the toy world's format): always runs
--  * the real Qwen tokenizer against ../shared/data/tokenizer/qwen-vectors.jsonl and against
--    edge cases whose ids come from an independent reference (Python `regex` + a plain BPE
--    over the same tokenizer.json); skipped with a message when ../shared is absent
--  * chat templates, byte-exact
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"
local tokenizer = require "confit.tokenizer"
local chat = require "confit.chat"
local cjson = require "cjson"

local function ids_eq(got, want, msg)
  local ok = #got == #want
  for i = 1, math.min(#got, #want) do ok = ok and got[i] == want[i] end
  if not ok then
    error(string.format("%s:\n  got  {%s}\n  want {%s}", msg or "ids", table.concat(got, ","),
      table.concat(want, ",")), 2)
  end
end

local function write_tmp(text)
  local p = os.tmpname()
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
  return p
end

-- GPT-2 bytes_to_unicode: byte -> the character standing for it.
local function byte_chars()
  local map, n = {}, 0
  for b = 0, 255 do
    local printable = (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or (b >= 174)
    if printable then map[b] = utf8.char(b) else map[b] = utf8.char(256 + n); n = n + 1 end
  end
  return map
end

-- The toy world's tokenizer: 256 byte tokens (id = byte value), no merges, plain ByteLevel
-- without regex, no normalizer, "<|endoftext|>" = 256.
local function toy_json(extra)
  local bc = byte_chars()
  local v = {}
  for b = 0, 255 do v[#v + 1] = cjson.encode(bc[b]) .. ":" .. b end
  return [==[{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[{"id":256,"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
"normalizer":null,
"pre_tokenizer":]==] .. (extra and extra.pre or
    [[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]]) .. [[,
"post_processor":null,
"decoder":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,"byte_fallback":false,
"vocab":{]] .. table.concat(v, ",") .. [[},"merges":]] .. (extra and extra.merges or "[]") .. "}}"
end

local toy_path = write_tmp(toy_json())

H.case("toy byte-level tokenizer: encode, decode, added token", function()
  local tok = assert(confit.tokenizer(toy_path))
  H.eq(tok.vocab_size, 257, "vocab size")
  ids_eq(tok:encode("hello"), {104, 101, 108, 108, 111}, "hello")
  ids_eq(tok:encode("a b\n"), {97, 32, 98, 10}, "spaces and newline")
  ids_eq(tok:encode("hi<|endoftext|>"), {104, 105, 256}, "added token")
  ids_eq(tok:encode("<|endoftext|><|endoftext|>x"), {256, 256, 120}, "adjacent added tokens")
  ids_eq(tok:encode("<|endoftext|"), {60, 124, 101, 110, 100, 111, 102, 116, 101, 120, 116, 124}, "partial")
  ids_eq(tok:encode(""), {}, "empty")
  H.eq(tok.eos_id, 256, "eos id")
  H.eq(tok.special["<|endoftext|>"], 256, "special map")
  H.eq(tok:decode({104, 105, 256}), "hi<|endoftext|>", "decode")
  H.eq(tok:decode({104, 105, 256}, {skip_special = true}), "hi", "decode skip special")
  H.eq(tok:token_to_id("Ġ"), 32, "token_to_id of the space byte")
  H.eq(tok:id_to_token(10), "Ċ", "id_to_token of the newline byte")
  H.eq(tok:id_to_token(256), "<|endoftext|>", "id_to_token of the added token")
  H.eq(tok:id_to_token(257), nil, "id_to_token out of range")
  H.eq(tok:token_to_id("nope"), nil, "token_to_id absent")
  tok:free()
  tok:free() -- idempotent
end)

H.case("toy tokenizer: every byte value round-trips, one id per byte", function()
  local tok = assert(tokenizer.new(toy_path))
  local bytes = {}
  for b = 0, 255 do bytes[#bytes + 1] = string.char(b) end
  local s = table.concat(bytes)
  local ids = tok:encode(s)
  H.eq(#ids, 256, "one id per byte")
  for b = 0, 255 do H.eq(ids[b + 1], b, "byte " .. b) end
  H.eq(tok:decode(ids), s, "round trip")
  -- NUL bytes inside the text are text, not terminators
  ids_eq(tok:encode("a\0b"), {97, 0, 98}, "embedded NUL")
end)

-- (twenty-fifth session) decode keeps a cut character's bytes; lossy = true writes U+FFFD as
-- Hugging Face's decode does. Each expected text is HF's decode of the bytes' tokens (Qwen's
-- tokenizer, tokenizers 0.23.2), one U+FFFD per maximal ill-formed part.
H.case("decode: partial UTF-8 kept as bytes; lossy = true gives Hugging Face's U+FFFD", function()
  local tok = assert(tokenizer.new(toy_path))
  local R = "\u{FFFD}"
  local cases = {
    {"\xe4\xb8", R}, {"\xe4\xb8A", R .. "A"}, {"\xf0\x9f\x98", R}, {"\xc0\xaf", R .. R},
    {"\xed\xa0\x80", R .. R .. R}, {"\xe0\x80", R .. R}, {"\xf4\x90", R .. R}, {"\xff", R},
    {"\x80\x80", R .. R}, {"A\xe4\xb8\xad\xe4\xb8", "A中" .. R}, {"\xf4\x90\x80\x80", R:rep(4)},
    {"\xf0\x9f\x98\x80", "😀"}, {"\xe0\xa0\x80", "\u{800}"}, {"\xc2", R}, {"\xdf\xc0", R .. R},
    {"\xf8\x88\x80\x80", R:rep(4)}, {"\xed\x9f\xbf", "\u{D7FF}"}, {"\xee\xb0", R},
  }
  for _, c in ipairs(cases) do
    local ids = {c[1]:byte(1, -1)}   -- the toy's ids are the byte values
    H.eq(tok:decode(ids), c[1], ("raw %q"):format(c[1]))
    H.eq(tok:decode(ids, {lossy = true}), c[2], ("lossy %q"):format(c[1]))
  end
  H.eq(tok:decode({104, 256}, {lossy = true}), "h<|endoftext|>", "valid text unchanged")
  H.eq(tok:decode({0xe4, 256, 0xb8}, {lossy = true, skip_special = true}), "\u{FFFD}", "after skip_special")
  tok:free()
end)

H.case("toy tokenizer with merges, GPT-2 regex and prefix space", function()
  -- merges "Ġ h" -> "Ġh" needs the merged token in the vocab: build a variant with two extra ids
  local j = toy_json({
    pre = [[{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}]],
    merges = [=[["h i", ["Ġ", "hi"]]]=],
  })
  j = j:gsub('"vocab":{', '"vocab":{"hi":300,"Ġhi":301,', 1)
  local p = write_tmp(j)
  local tok = assert(tokenizer.new(p))
  ids_eq(tok:encode("hi hi"), {301, 301}, "prefix space + merges")
  ids_eq(tok:encode("hih"), {301, 104}, "merges by rank: h+i first, then Ġ+hi")
  ids_eq(tok:encode("x hi"), {32, 120, 301}, "prefix space only at the start")
  H.eq(tok:decode({301, 301}), " hi hi", "decode keeps the prefix space")
  os.remove(p)
end)

H.case("toy tokenizer: ignore_merges takes a whole word found in the vocabulary", function()
  local out = {}
  for _, ignore in ipairs({false, true}) do
    local j = toy_json({merges = '["a b"]'})
    j = j:gsub('"vocab":{', '"vocab":{"ab":300,"abc":301,', 1)
    j = j:gsub('"byte_fallback":false,', '"byte_fallback":false,"ignore_merges":' .. tostring(ignore) .. ',', 1)
    local p = write_tmp(j)
    local tok = assert(tokenizer.new(p))
    out[ignore] = tok:encode("abc")
    tok:free()
    os.remove(p)
  end
  ids_eq(out[false], {300, 99}, "merges only")
  ids_eq(out[true], {301}, "whole word")
end)

H.case("toy tokenizer with the Qwen2 and Llama-3 split regexes: digit grouping", function()
  local function split(re)
    return [[{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":]] .. cjson.encode(re) ..
      [[},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]}]]
  end
  local qwen_re = [[(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+]]
  local llama_re = qwen_re:gsub("\\p{N}|", "\\p{N}{1,3}|", 1)
  local results = {}
  for name, re in pairs({qwen = qwen_re, llama = llama_re}) do
    local j = toy_json({pre = split(re), merges = '["1 2", "12 3"]'})
    j = j:gsub('"vocab":{', '"vocab":{"12":300,"123":301,', 1)
    local p = write_tmp(j)
    local tok = assert(tokenizer.new(p))
    results[name] = tok:encode("12345")
    tok:free()
    os.remove(p)
  end
  ids_eq(results.qwen, {49, 50, 51, 52, 53}, "Qwen2: one digit per piece")
  ids_eq(results.llama, {301, 52, 53}, "Llama-3: digits in groups of three")
end)

H.case("load failures come back as nil, message", function()
  local t, err = tokenizer.new("/nonexistent/tokenizer.json")
  H.eq(t, nil, "missing file")
  H.ok(err:find("/nonexistent/tokenizer.json", 1, true), "message names the file: " .. err)
  local p = write_tmp('{"model": {"vocab": {"a": 0}, "merges": [')
  t, err = tokenizer.new(p)
  H.eq(t, nil, "corrupt JSON")
  H.ok(err:find("corrupt JSON", 1, true), err)
  os.remove(p)
  -- one value and nothing after it but whitespace (Hugging Face's reader refuses the rest too)
  local whole = toy_json({})
  p = write_tmp(whole .. "\n{}")
  t, err = tokenizer.new(p)
  H.eq(t, nil, "a second value after the tokenizer")
  H.ok(err and err:find("corrupt JSON: trailing bytes after the top-level value at byte " .. (#whole + 1), 1, true), tostring(err))
  os.remove(p)
  p = write_tmp(whole .. "\n \t\r\n")
  H.ok(tokenizer.new(p), "whitespace after it is fine")
  os.remove(p)
  local bad_re = [[{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+|[^\\w\\s]+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]}]]
  p = write_tmp(toy_json({pre = bad_re}))
  t, err = tokenizer.new(p)
  H.eq(t, nil, "unknown regex")
  H.ok(err:find("unknown regex \\w+|[^\\w\\s]+", 1, true), err)
  os.remove(p)
  p = write_tmp(toy_json({merges = '["x yz"]'}))
  t, err = tokenizer.new(p)
  H.eq(t, nil, "merge of unknown tokens")
  H.ok(err:find("not in the vocabulary", 1, true), err)
  H.ok(err:find("merge 1 ", 1, true), "merges count from 1: " .. err)
  os.remove(p)
  -- (twenty-fifth session) no "merges" loaded as none, and encoded byte by byte; Hugging Face
  -- refuses it ("Missing vocab/merges")
  p = write_tmp((toy_json():gsub(',"merges":%[%]', "")))
  t, err = tokenizer.new(p)
  H.eq(t, nil, "no merges")
  H.ok(err and err:find(p, 1, true) and err:find('no "merges" array', 1, true), tostring(err))
  os.remove(p)
  -- (twenty-fifth session) a token holding a NUL read as the text before it: "a" appears twice
  p = write_tmp((toy_json():gsub('"vocab":{', '"vocab":{"a\\u0000b":300,', 1)))
  t, err = tokenizer.new(p)
  H.eq(t, nil, "NUL in a token")
  H.ok(err and err:find('the string "a\\u0000b"', 1, true) and err:find("NUL", 1, true)
       and not err:find("twice", 1, true), tostring(err))
  os.remove(p)
  local t2, err2 = confit.tokenizer("/nonexistent.json")
  H.ok(t2 == nil and err2, "confit.tokenizer forwards nil, message")
end)

H.case("bad arguments raise clear errors", function()
  local tok = assert(tokenizer.new(toy_path))
  H.raises(function() tok:encode(42) end, "encode", "string")
  H.raises(function() tok:decode("abc") end, "decode", "table")
  H.raises(function() tok:decode({1, "x"}) end, "ids[2]")
  H.raises(function() tok:decode({1, 2.5}) end, "ids[2]")
  -- (seventeenth session) an id >= 0 that is no token is skipped, as Hugging Face's decode skips
  -- it (a model's rows past the tokenizer's); strict = true keeps the error. Negative: an error.
  H.eq(tok:decode({72, 999, 105}), "Hi", "unknown id skipped")
  H.raises(function() tok:decode({999}, {strict = true}) end, "id 999")
  H.raises(function() tok:decode({-1}) end, "id -1")
  H.raises(function() tok:decode({72}, {skip_specials = true}) end, "unknown option skip_specials")
  -- (twenty-fifth session) {lossy = "no"} was taken as true
  H.raises(function() tok:decode({72}, {lossy = "no"}) end, "option lossy must be true or false, got string")
  H.raises(function() tok:decode({72}, {strict = 1}) end, "option strict must be true or false, got number")
  H.eq(tok:decode({72}, {skip_special = false, lossy = false}), tok:decode({72}))
  H.raises(function() tok:decode({"72"}) end, "ids[1]", "not an integer token id")
  H.raises(function() tok:decode({1 << 40}) end, "tokenizer:decode: ids[1] is 1099511627776, outside the token id range")
  H.eq(tok:decode({72.0}), "H", "an integral float (ids read by a JSON library) is an id")
  -- (twenty-fifth session) a list 1..n only: the ids after a gap were dropped, {x = 1} gave ""
  H.raises(function() tok:decode({[1] = 72, [3] = 105}) end, "ids[2] is nil", "up to ids[3]")
  H.raises(function() tok:decode({x = 1}) end, 'ids has the key "x"', "a list 1..n")
  H.raises(function() tok:decode({72, [0] = 1}) end, "ids has the key 0")
  H.eq(tok:decode({}), "", "no ids")
  -- and id_to_token takes an integral float as decode does (it refused 10.0)
  H.eq(tok:id_to_token(10.0), "Ċ", "id_to_token(10.0)")
  H.raises(function() tok:id_to_token(2.5) end, "expected an integer id, got 2.5")
  H.raises(function() tok:id_to_token("10") end, "expected an integer id, got string")
  local ok, err = pcall(function() local s = tok:decode({-1}); return s end)
  H.ok(not ok and err:find("test_tokenizer.lua:%d+: tokenizer:decode: id %-1"), "at the caller's line: " .. tostring(err))
  H.raises(function() tok.encode_chat("x") end, "encode_chat", "call it with ':'")
  -- a template whose markers are no special tokens of this tokenizer (toy: <|endoftext|> only)
  H.raises(function() tok:chat("1+1") end, 'template "chatml" writes <|im_start|>', "no special token")
  H.raises(function() tok:encode_chat("1+1", {template = "llama3"}) end, "writes <|begin_of_text|>")
  H.eq(tok:chat("1+1", {template = "plain"}), "1+1", "plain writes no marker")
  H.raises(function() tok.encode("x") end, "tokenizer")
  H.raises(function() tokenizer.new(nil) end, "path must be a string")
  tok:free()
  -- one method prefix, no C file position (twenty-first session: "tokenizer:confit.bpe: ...")
  for _, f in ipairs({function() tok:encode("x") end, function() tok:decode({1}) end}) do
    local ok2, e = pcall(f)
    H.ok(not ok2 and e:find("tokenizer:%a+: the tokenizer has been freed$") and not e:find("%.c:%d"), tostring(e))
  end
end)

-- ---------------------------------------------------------------- chat templates

local SYS = "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"

H.case("chat templates are byte-exact", function()
  local q = "What is $1+1$?"
  H.eq(chat.apply("qwen25-math-cot", q),
    SYS .. "<|im_start|>user\nWhat is $1+1$?<|im_end|>\n<|im_start|>assistant\n", "qwen25-math-cot")
  H.eq(chat.apply("chatml", q), chat.apply("qwen25-math-cot", q), "chatml default system")
  H.eq(chat.apply("chatml", {{role = "system", content = "S"}, {role = "user", content = "U"},
    {role = "assistant", content = "A"}, {role = "user", content = "V"}}),
    "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n" ..
    "<|im_start|>user\nV<|im_end|>\n<|im_start|>assistant\n", "chatml multi-turn with own system")
  H.eq(chat.apply("chatml", q, {system = false, add_generation_prompt = false}),
    "<|im_start|>user\nWhat is $1+1$?<|im_end|>\n", "chatml without system or generation prompt")
  H.eq(chat.apply("strict", q),
    SYS .. "<|im_start|>user\nProblem: What is $1+1$?\nMark your solution with \\boxed\nAnswer:<|im_end|>\n" ..
    "<|im_start|>assistant\n", "strict")
  H.eq(chat.apply("plain", q), q, "plain")
  H.eq(chat.apply("plain", {{role = "user", content = q}}), q, "plain from one user message")
end)

H.case("chat template errors", function()
  -- (twenty-fifth session) ChatML writes Qwen's roles only: its template drops a "bot" or
  -- "developer" message, where confit wrote <|im_start|>bot
  for _, msgs in ipairs({{{role = "bot", content = "x"}},
                         {{role = "user", content = "q"}, {role = "developer", content = "d"}}}) do
    H.raises(function() chat.apply("chatml", msgs) end, ("message %d's role %q is none of ChatML's"):format(
             #msgs, msgs[#msgs].role), "system, user, assistant, tool")
  end
  H.ok(chat.apply("llama3", {{role = "ipython", content = "x"}}):find("<|start_header_id|>ipython", 1, true),
       "Llama 3's template writes any role")
  H.raises(function() chat.apply("nope", "q") end, "unknown template", "chatml")
  H.raises(function() chat.apply("chatml", 3) end, "question string or a list of messages")
  H.raises(function() chat.apply("chatml", {}) end, "empty")
  H.raises(function() chat.apply("chatml", {{role = "user"}}) end, "content")
  H.raises(function() chat.apply("qwen25-math-cot", {{role = "user", content = "a"}, {role = "user", content = "b"}}) end,
    "one user message")
  local tok = assert(tokenizer.new(toy_path))
  H.raises(function() tok:chat("q", 5) end, "opts must be a table")
  H.eq(tok:chat("q", {template = "plain"}), "q", "tok:chat picks the template")
  -- (twenty-first session) opts.system beside a system message was dropped without a word
  local two = {{role = "system", content = "S"}, {role = "user", content = "q"}}
  for _, name in ipairs({"chatml", "llama3", "llama31"}) do
    H.raises(function() chat.apply(name, two, {system = "O"}) end, name, "opts.system and a system message")
  end
  H.eq(chat.apply("chatml", two, {system = false}), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n" ..
       "<|im_start|>assistant\n", "system = false beside a system message: the message's turn")
end)

-- Tool results in ChatML as Qwen2.5's template writes them: a run of them is one user turn of
-- <tool_response> blocks (twenty-first session; before, a "tool" turn of its own)
H.case("chatml: tool messages as Qwen2.5's template writes them", function()
  local msgs = {{role = "user", content = "q"}, {role = "assistant", content = "call"}, {role = "tool", content = "1"},
                {role = "tool", content = "2"}, {role = "assistant", content = "a"}, {role = "tool", content = "3"}}
  H.eq(chat.apply("chatml", msgs, {system = false, add_generation_prompt = false}),
       "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\ncall<|im_end|>\n" ..
       "<|im_start|>user\n<tool_response>\n1\n</tool_response>\n<tool_response>\n2\n</tool_response><|im_end|>\n" ..
       "<|im_start|>assistant\na<|im_end|>\n<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>\n")
end)

-- Llama 3's format, written out from its chat template (a BOS, then per message the role in
-- header tokens, two newlines, the trimmed content, <|eot_id|>)
local L3_USER = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
local L3_GEN = "<|start_header_id|>assistant<|end_header_id|>\n\n"

H.case("llama3 templates are byte-exact", function()
  local q = "What is $1+1$?"
  H.eq(chat.apply("llama3", q), L3_USER .. "What is $1+1$?<|eot_id|>" .. L3_GEN, "llama3, no system by default")
  H.eq(chat.apply("llama3", {{role = "system", content = "S"}, {role = "user", content = "  U \n"},
    {role = "assistant", content = "A"}, {role = "user", content = "V"}}, {add_generation_prompt = false}),
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>" ..
    "<|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA" ..
    "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nV<|eot_id|>", "llama3 multi-turn, content trimmed")
  H.eq(chat.apply("llama3", q, {system = "Be brief."}),
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>" ..
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is $1+1$?<|eot_id|>" .. L3_GEN, "llama3 with opts.system")
  H.eq(chat.apply("llama3-math-cot", q),
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nPlease reason step by step, and put your " ..
    "final answer within \\boxed{}.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is $1+1$?<|eot_id|>" ..
    L3_GEN, "llama3-math-cot")
  H.eq(chat.apply("strict-llama3", q),
    L3_USER .. "Problem: What is $1+1$?\nMark your solution with \\boxed\nAnswer:<|eot_id|>" .. L3_GEN,
    "strict-llama3")
  H.raises(function() chat.apply("strict-llama3", {{role = "user", content = "a"}, {role = "user", content = "b"}}) end,
    "one user message")
  H.raises(function() chat.apply("llama3", q, {system = 3}) end, "opts.system")
end)

-- Llama 3.1's format, from its chat template: the system turn is always written, opening with the
-- knowledge-cutoff and date lines (date_string defaults to "26 Jul 2024"), then the trimmed system
-- message ("" without one)
local L31_SYS = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n" ..
  "Today Date: 26 Jul 2024\n\n"
local L31_USER = "<|start_header_id|>user<|end_header_id|>\n\n"

H.case("llama31 templates are byte-exact", function()
  local q = "What is $1+1$?"
  H.eq(chat.apply("llama31", q), L31_SYS .. "<|eot_id|>" .. L31_USER .. "What is $1+1$?<|eot_id|>" .. L3_GEN,
    "llama31: the date lines and an empty system message")
  H.eq(chat.apply("llama31", {{role = "system", content = " S \n"}, {role = "user", content = "U"},
    {role = "assistant", content = "A"}}, {add_generation_prompt = false}),
    L31_SYS .. "S<|eot_id|>" .. L31_USER .. "U<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>",
    "llama31: a system message goes after the date lines, trimmed, and is not repeated")
  H.eq(chat.apply("llama31", q, {system = "Be brief.", date = "01 Jan 2026"}),
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n" ..
    "Today Date: 01 Jan 2026\n\nBe brief.<|eot_id|>" .. L31_USER .. "What is $1+1$?<|eot_id|>" .. L3_GEN,
    "llama31 with opts.system and opts.date")
  H.eq(chat.apply("llama31", q, {system = false}), chat.apply("llama31", q), "system = false: the date lines stay")
  H.eq(chat.apply("llama31-math-cot", q),
    L31_SYS .. "Please reason step by step, and put your final answer within \\boxed{}.<|eot_id|>" .. L31_USER ..
    "What is $1+1$?<|eot_id|>" .. L3_GEN, "llama31-math-cot")
  H.eq(chat.apply("strict-llama31", q, {date = "02 Feb 2025"}),
    L31_SYS:gsub("26 Jul 2024", "02 Feb 2025") .. "<|eot_id|>" .. L31_USER ..
    "Problem: What is $1+1$?\nMark your solution with \\boxed\nAnswer:<|eot_id|>" .. L3_GEN, "strict-llama31")
  H.raises(function() chat.apply("llama31", q, {date = 2024}) end, 'template "llama31": opts.date must be a string')
  H.raises(function() chat.apply("llama31-math-cot", {{role = "system", content = "s"}, {role = "user", content = "u"}}) end,
    "one user message")
end)

H.case("chat options: each template takes its own, of the right type; errors name the template and the caller", function()
  local q = "What is $1+1$?"
  -- Jinja's trim strips Unicode whitespace too (no-break space, ideographic space)
  H.eq(chat.apply("llama3", "\u{A0}\u{3000} Q \u{2009}\n"), L3_USER .. "Q<|eot_id|>" .. L3_GEN, "trim as Python's strip")
  H.eq(chat.apply("llama3", "\u{200B}Q"), L3_USER .. "\u{200B}Q<|eot_id|>" .. L3_GEN, "a zero-width space is not whitespace")
  for _, c in ipairs({
    {"llama31-math-cot", q, {system = "S"}, 'template "llama31-math-cot" takes no option system'},
    {"chatml", q, {date = "1 Jan 2025"}, 'template "chatml" takes no option date'},
    {"plain", q, {add_generation_prompt = false}, 'template "plain" takes no option add_generation_prompt (it takes: none)'},
    {"chatml", q, {templ = "llama31"}, "takes no option templ"},
    {"chatml", q, {add_generation_prompt = "no"}, "opts.add_generation_prompt must be true or false, got string"},
    {"llama3", q, {system = 3}, 'template "llama3": opts.system must be a string or false'},
    {"llama31", {{role = "user"}}, nil, 'template "llama31": message 1 (user) has no content string'},
    {"strict-llama31", {{role = "user", content = "a"}, {role = "user", content = "b"}}, nil,
     'template "strict-llama31": takes a question or one user message, got 2 messages'},
  }) do
    local ok, err = pcall(chat.apply, c[1], c[2], c[3])
    H.ok(not ok and tostring(err):find(c[4], 1, true), "want " .. c[4] .. ", got " .. tostring(err))
  end
  -- the position is the caller's line, for chat.apply and tok:chat alike (not a tail call)
  local ok, err = pcall(function() local s = chat.apply("llama31", q, {date = 5}); return s end)
  H.ok(not ok and err:find("test_tokenizer.lua:%d+: confit.chat") ~= nil, "position: " .. tostring(err))
  local tok = assert(tokenizer.new(toy_path))
  ok, err = pcall(function() local s = tok:chat(q, {template = "llama31", date = 5}); return s end)
  H.ok(not ok and err:find("test_tokenizer.lua:%d+: confit.chat") ~= nil, "tok:chat position: " .. tostring(err))
  tok:free()
end)

H.case("chat.family reads the model folder's chat format; default_template follows it", function()
  local base = os.tmpname()
  os.remove(base)
  local function folder(name, text)
    local d = base .. "-" .. name
    assert(os.execute("mkdir -p '" .. d .. "'"))
    if text then
      local f = assert(io.open(d .. "/tokenizer_config.json", "wb"))
      f:write(text)
      f:close()
    end
    return d
  end
  local chatml = folder("chatml", '{"chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\\n{% endfor %}"}')
  local llama = folder("llama", '{"chat_template": "{{ bos_token }}<|start_header_id|>{{ m.role }}<|end_header_id|>"}')
  local llama31 = folder("llama31", '{"chat_template": "{{- bos_token }}{%- if not date_string is defined %}' ..
    '{%- set date_string = \\"26 Jul 2024\\" %}{%- endif %}{{- \\"<|start_header_id|>system<|end_header_id|>\\\\n\\\\n\\" }}' ..
    '{{- \\"Cutting Knowledge Date: December 2023\\\\n\\" }}"}')
  local listed = folder("listed", '{"chat_template": [{"name": "tool_use", "template": "<|im_start|>"}, ' ..
    '{"name": "default", "template": "<|start_header_id|>"}]}')
  local none = folder("none", '{"model_max_length": 10}')
  local other = folder("other", '{"chat_template": "[INST] {{ m.content }} [/INST]"}')
  local broken = folder("broken", '{"chat_template": ')
  local missing = folder("missing", nil)
  H.eq(chat.family(chatml), "chatml")
  H.eq(chat.family(llama), "llama3")
  H.eq(chat.family(listed), "llama3", "a list of templates: the one named default")
  H.eq(chat.family(llama31), "llama31", "the date system turn: Llama 3.1's format")
  H.eq(chat.apply(chat.family(llama31), "q"), chat.apply("llama31", "q"), "a family names its general template")
  for _, c in ipairs({{none, "no chat_template"}, {other, "neither ChatML nor Llama 3"},
                      {broken, "tokenizer_config.json"}, {missing, "tokenizer_config.json"}}) do
    local f, why = chat.family(c[1])
    H.eq(f, nil, c[1])
    H.ok(why and why:find(c[2], 1, true), "why: " .. tostring(why))
  end
  H.eq(chat.default_template("qwen", "chatml"), "qwen25-math-cot")
  H.eq(chat.default_template("strict", "chatml"), "strict")
  H.eq(chat.default_template("qwen", "llama3"), "llama3-math-cot")
  H.eq(chat.default_template("strict", "llama3"), "strict-llama3")
  H.eq(chat.default_template("qwen", "llama31"), "llama31-math-cot")
  H.eq(chat.default_template("strict", "llama31"), "strict-llama31")
  H.eq(chat.default_template("strict", nil), "strict", "unknown format: ChatML")
  H.raises(function() chat.default_template("loose", "chatml") end, "mode")
  H.raises(function() chat.family(5) end, "dir must be a string")
  os.execute("rm -rf '" .. base .. "'-*")
end)

-- (twenty-sixth session, mutation testing of the input layer: cases that fail on mutants the
-- suite let through)
do
local chat = require "confit.chat"
local tokenizer = require "confit.tokenizer"
local L3_U = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
local L3_G = "<|start_header_id|>assistant<|end_header_id|>\n\n"

H.case("llama3 trim: a stray continuation byte after a no-break space is no white space; both stay", function()
  H.eq(chat.apply("llama3", "Q\u{A0}\x80"), L3_U .. "Q\u{A0}\x80<|eot_id|>" .. L3_G, "kept")
  H.eq(chat.apply("llama3", "Q\u{A0}"), L3_U .. "Q<|eot_id|>" .. L3_G, "a no-break space alone is trimmed")
end)

H.case("chat: an option a template does not take is named with the ones it takes", function()
  local ok, err = pcall(chat.apply, "chatml", "q", {date = "1 Jan 2025"})
  H.ok(not ok and err:find('template "chatml" takes no option date (it takes: add_generation_prompt, system)', 1, true),
       tostring(err))
  ok, err = pcall(chat.apply, "plain", "q", {system = "S"})
  H.ok(not ok and err:find('template "plain" takes no option system (it takes: none)', 1, true), tostring(err))
end)

H.case("chat.markers lists the special tokens each template writes", function()
  H.eq(table.concat(chat.markers("chatml"), " "), "<|im_start|> <|im_end|>", "chatml")
  H.eq(table.concat(chat.markers("qwen25-math-cot"), " "), "<|im_start|> <|im_end|>", "qwen25-math-cot")
  H.eq(table.concat(chat.markers("strict-llama31"), " "),
       "<|begin_of_text|> <|start_header_id|> <|end_header_id|> <|eot_id|>", "strict-llama31")
  H.eq(#chat.markers("plain"), 0, "plain writes none")
  H.eq(#chat.markers("nope"), 0, "an unknown name: none")
end)

H.case("decode: lossy keeps a valid two-byte character led by 0xDF; its errors name the caller's line", function()
  local tok = assert(tokenizer.new(toy_path))
  -- U+07FF is DF BF, the last two-byte character; FF is never UTF-8
  H.eq(tok:decode({0xDF, 0xBF, 0xFF}, {lossy = true}), "\u{7FF}\u{FFFD}", "U+07FF then one U+FFFD")
  H.eq(tok:decode({0xC2, 0x80, 0xFF}, {lossy = true}), "\u{80}\u{FFFD}", "U+0080 then one U+FFFD")
  local ok, err = pcall(function() local s = tok:decode({1, nil, 3}); return s end)
  H.ok(not ok and err:find("test_tokenizer%.lua:%d+: tokenizer:decode: ids%[2%] is nil") ~= nil, tostring(err))
  tok:free()
end)
end

-- ---------------------------------------------------------------- the real Qwen tokenizer

local qwen_path = H.shared("tokenizer/qwen/tokenizer.json")
local vectors_path = H.shared("tokenizer/qwen-vectors.jsonl")
if not (qwen_path and vectors_path) then
  H.skip("qwen tokenizer", "../shared/data/tokenizer is absent")
  os.remove(toy_path)
  H.finish()
end

H.case("qwen: the folder's chat template is ChatML", function()
  H.eq(chat.family((qwen_path:gsub("/tokenizer%.json$", ""))), "chatml")
end)

local qwen = assert(tokenizer.new(qwen_path))

H.case("qwen: tok:chat passes the template's options; the default is the folder's format; bad lists named", function()
  local q = "What is 1+1?"
  H.eq(qwen:chat(q, {template = "chatml", system = "S"}), chat.apply("chatml", q, {system = "S"}),
       "tok:chat passes the template's options")
  H.eq(qwen:chat(q), chat.apply("chatml", q), "the default: the folder's ChatML")
  -- (seventeenth session) messages after a gap were dropped; one message alone was "empty"
  H.raises(function() qwen:chat({{role = "user", content = "a"}, nil, {role = "user", content = "c"}}) end,
           "message 3 after a gap")
  H.raises(function() qwen:chat({role = "user", content = "hi"}) end, "one message, not a list", "wrap it")
  H.raises(function() qwen:chat({{role = "user\n<|im_start|>system", content = "x"}}) end, "message 1's role")
  H.raises(function() qwen:chat({{role = "assistant", content = "q"}}, {template = "qwen25-math-cot"}) end,
           "got one assistant message")
end)

H.case("qwen: known sizes and special ids", function()
  H.eq(qwen.vocab_size, 151669, "vocab size (model + added)")
  H.eq(qwen.eos_ids[1], 151645, "<|im_end|> first")
  H.eq(qwen.eos_ids[2], 151643, "<|endoftext|> second")
  H.eq(#qwen.eos_ids, 2, "only special tokens end a sequence (\"</s>\" is ordinary text in Qwen's vocabulary)")
  H.eq(qwen.special["<|im_start|>"], 151644, "im_start")
  H.eq(qwen.special["<think>"], nil, "<think> is not special")
  H.eq(qwen:token_to_id("<think>"), 151667, "<think> is an added token")
  H.eq(qwen:token_to_id("Ġthe"), 279, "Ġthe")
  H.eq(qwen:id_to_token(279), "Ġthe", "id 279")
  H.eq(#qwen:added_tokens(), 26, "added tokens")
end)

H.case("qwen: every vector encodes exactly and decodes back", function()
  local n = 0
  for line in io.lines(vectors_path) do
    local r = cjson.decode(line)
    ids_eq(qwen:encode(r.text), r.ids, r.source)
    H.eq(qwen:decode(r.ids), r.text, "decode " .. r.source)
    n = n + 1
  end
  H.eq(n, 87, "vector count")
end)

H.case("qwen: the cot template reproduces the vectors' prompts byte for byte", function()
  local problems, prompts = {}, {}
  for line in io.lines(vectors_path) do
    local r = cjson.decode(line)
    local i = r.source:match("^math500%[(%d+)%]%.problem$")
    if i then problems[tonumber(i)] = r.text end
    i = r.source:match("^qwen25%-math%-cot prompt for math500%[(%d+)%]$")
    if i then prompts[tonumber(i)] = r end
  end
  local n = 0
  for i, r in pairs(prompts) do
    H.eq(chat.apply("qwen25-math-cot", problems[i]), r.text, "prompt " .. i)
    ids_eq(qwen:encode_chat(problems[i], {template = "qwen25-math-cot"}), r.ids, "prompt ids " .. i)
    n = n + 1
  end
  H.ok(n >= 10, "found prompts: " .. n)
end)

-- ids from the independent reference (see the file header)
local EDGE = {
  {"", {}},
  {" ", {220}},
  {"   ", {262}},
  {"a   b", {64, 256, 293}},
  {"\n\n\n", {1406}},
  {"  \n  x", {2303, 220, 856}},
  {"x  ", {87, 256}},
  {"12345678901234567890", {16, 17, 18, 19, 20, 21, 22, 23, 24, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 15}},
  {"😀🚀👍🏽", {141334, 145836, 144349, 145375}},
  {"中文数学：求解的", {104811, 104552, 5122, 30918, 49238, 9370}},
  {"I'm can't they'LL we've he'd she's you're 'tis",
    {40, 2776, 646, 944, 807, 6, 4086, 582, 3003, 566, 4172, 1340, 594, 498, 2299, 364, 83, 285}},
  {"a\r\nb\r\n\r\n", {64, 319, 65, 871}},
  {"<|im_start|>user\nWhat is 2+2?<|im_end|>\n", {151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198}},
  {"café", {924, 58858}},
  {"cafe\u{301}", {924, 58858}}, -- NFC composes e + combining acute
  {"\t\tx = y;\n", {197, 10225, 284, 379, 280}},
  {"x²+ⅫⅣ", {87, 29456, 10, 70467, 104, 70467, 96}},
  {"hello<|endoftext|>world<|im_end|><|im_end|>", {14990, 151643, 14615, 151645, 151645}},
  {"<|im_start", {27, 91, 318, 4906}},
  {"\u{a0}\u{3000}x", {4102, 22441, 87}},
}

H.case("qwen: edge cases", function()
  for _, c in ipairs(EDGE) do
    ids_eq(qwen:encode(c[1]), c[2], string.format("%q", c[1]))
    H.eq(qwen:decode(c[2]), c[1]:find("\u{301}", 1, true) and "café" or c[1], string.format("decode %q", c[1]))
  end
  H.eq(qwen:decode({151644, 872, 198, 3838, 151645}, {skip_special = true}), "user\nWhat", "skip special")
  H.eq(qwen:decode({151667, 151645}, {skip_special = true}), "<think>", "non-special added token kept")
end)

-- (twenty-fifth session) Hugging Face's NFC treats the combining marks Unicode 10 to 15 added as
-- starters; utf8proc moved them among the marks beside them and composed across them.
H.case("qwen: NFC as Hugging Face's: the marks its tables lack stay put (tests/fixtures/hf_nfc_ids.json)", function()
  local f = assert(io.open("tests/fixtures/hf_nfc_ids.json", "rb"))
  local fx = cjson.decode(f:read("a"))
  f:close()
  local bad = {}
  for _, c in ipairs(fx.cases) do
    local want = {}
    for i, id in ipairs(c.ids) do want[i] = math.tointeger(id) end
    local got = qwen:encode(c.text)
    if table.concat(got, ",") ~= table.concat(want, ",") then
      local cps = {}
      for _, cp in utf8.codes(c.text) do cps[#cps + 1] = string.format("U+%04X", cp) end
      bad[#bad + 1] = string.format("%s: got {%s} want {%s}", table.concat(cps, " "),
                                    table.concat(got, ","), table.concat(want, ","))
    end
  end
  H.ok(#fx.cases >= 40, "fixture cases: " .. #fx.cases)
  H.eq(#bad, 0, "strings whose ids differ from Hugging Face's:\n  " .. table.concat(bad, "\n  "))
end)

H.case("qwen: invalid UTF-8 is encoded byte by byte and decodes back", function()
  for _, s in ipairs({"\xff", "abc\xfe\xff def", "\xc3", "x\xc3(", "\xe2\x82", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                      "\xc0\xaf <|im_end|>\xff", ("\x80"):rep(1000)}) do
    local ids = qwen:encode(s)
    H.ok(#ids > 0, "some ids")
    H.eq(qwen:decode(ids), s, string.format("round trip %q", s))
  end
  ids_eq(qwen:encode("\xff"), {qwen:token_to_id("ÿ")}, "a lone 0xff is its byte token")
  -- a decode of a partial multi-byte character returns the raw bytes
  local ids = qwen:encode("中")
  H.eq(#ids, 1, "one token for 中")
  local parts = qwen:encode("\xe4\xb8")
  H.eq(qwen:decode(parts), "\xe4\xb8", "partial character decodes to its bytes")
  -- ids past the tokenizer's 151,669 but inside Qwen's 151,936 embedding rows, as a sampler may draw
  H.eq(qwen:decode({9707, 151700, 151935}), qwen:decode({9707}), "the model's extra rows decode to nothing")
end)

-- A quadratic merge would take minutes here: ctest's timeout catches that, no clock needed.
H.case("qwen: long inputs round-trip", function()
  local s = ("a"):rep(200000)
  local ids = qwen:encode(s)
  H.eq(qwen:decode(ids), s, "round trip of a 200 kB word")
  local w = (" "):rep(100000) .. "x"
  H.eq(qwen:decode(qwen:encode(w)), w, "round trip of a 100 kB space run")
  local d = ("7"):rep(50000)
  H.eq(#qwen:encode(d), 50000, "one token per digit")
end)

qwen:free()
os.remove(toy_path)
-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, H09, H10, H12, T02)
do
local chat = require "confit.chat"
local tokenizer = require "confit.tokenizer"

H.case("chat.missing_marker names each Llama 3 marker a tokenizer lacks, <|eot_id|> too", function()
  local all = {["<|begin_of_text|>"] = 1, ["<|start_header_id|>"] = 2, ["<|end_header_id|>"] = 3, ["<|eot_id|>"] = 4}
  H.eq(chat.missing_marker("llama3", {special = all}), nil, "all there")
  for mark in pairs(all) do
    local some = {}
    for k, v in pairs(all) do if k ~= mark then some[k] = v end end
    H.eq(chat.missing_marker("llama3", {special = some}), mark, "without " .. mark)
    H.eq(chat.missing_marker("strict-llama31", {special = some}), mark, "strict-llama31 without " .. mark)
  end
end)

H.case("chat: a role holding < > or | is refused (it would write a marker of its own)", function()
  for _, role in ipairs({"user<|im_end|>", "a|b", "<x>"}) do
    H.raises(function() chat.apply("chatml", {{role = role, content = "hi"}}) end, "role", "< > |")
    H.raises(function() chat.apply("llama3", {{role = role, content = "hi"}}) end, "role", "< > |")
  end
end)

H.case("the *-math-cot and strict-* Llama templates honour add_generation_prompt = false", function()
  for _, name in ipairs({"llama3-math-cot", "llama31-math-cot", "strict-llama3", "strict-llama31"}) do
    local with = chat.apply(name, "1+1?")
    local without = chat.apply(name, "1+1?", {add_generation_prompt = false})
    H.eq(with, without .. "<|start_header_id|>assistant<|end_header_id|>\n\n", name)
    H.ok(without:sub(-10) == "<|eot_id|>", name .. " ends with the user turn: " .. without)
  end
end)

H.case("tokenizer:chat with no template uses the folder's chat format (chat.family)", function()
  local base = H.tmpdir()
  local dir = base .. "/llama-tok"
  os.execute("mkdir -p '" .. dir .. "' && cp examples/toy/model/tokenizer.json '" .. dir .. "/'")
  H.write(dir .. "/tokenizer_config.json",
          '{"chat_template": "{{ \'<|start_header_id|>\' + m.role + \'<|end_header_id|>\' }}"}')
  local tok = tokenizer.new(dir .. "/tokenizer.json")
  -- the toy tokenizer has no Llama 3 special tokens: the refusal names the template it chose
  H.raises(function() tok:chat("hi") end, 'template "llama3"', "<|begin_of_text|>")
  tok:free()
  -- (twenty-first session) a broken tokenizer_config.json fell back to ChatML without a word:
  -- refused, naming the file, where a template must be chosen from it
  H.write(dir .. "/tokenizer_config.json", '{bad')
  local _, why, broken = chat.family(dir)
  H.ok(broken and why:find(dir .. "/tokenizer_config.json:1:", 1, true), "broken: " .. tostring(why))
  tok = tokenizer.new(dir .. "/tokenizer.json")
  H.raises(function() tok:chat("hi") end, "tokenizer:chat:", dir .. "/tokenizer_config.json:1:", "give opts.template")
  H.eq(tok:chat("hi", {template = "plain"}), "hi", "a template given: the file is not asked")
  tok:free()
  H.raises(function() require("confit.evaluate").default_template("qwen", dir) end,
           "cannot choose the model's chat template", "tokenizer_config.json")
  os.remove(dir .. "/tokenizer_config.json")
  H.eq(select(3, chat.family(dir)), false, "no file: not broken")
  H.eq(require("confit.evaluate").default_template("qwen", dir), "qwen25-math-cot", "no file: ChatML's")
  os.remove(dir .. "/tokenizer.json")
  os.remove(dir)
  os.remove(base)
end)
end

-- (nineteenth session, mutation testing) added tokens' lstrip / rstrip and longest match, a token
-- both in the vocabulary and added, byte_fallback and Split behaviours refused at load
do
-- (ids_eq, write_tmp and toy_json are the file's own)

-- toy_json with more added tokens after <|endoftext|> (a list of JSON objects as text)
local function with_added(objs, extra)
  local j = toy_json(extra)
  return (j:gsub('"special":true}%]', '"special":true},' .. table.concat(objs, ",") .. "]", 1))
end
local function added(id, content, lstrip, rstrip)
  return string.format('{"id":%d,"content":%s,"single_word":false,"lstrip":%s,"rstrip":%s,"normalized":false,"special":true}',
    id, cjson.encode(content), tostring(lstrip), tostring(rstrip))
end

H.case("added tokens: lstrip and rstrip take the whitespace beside them, as Hugging Face does", function()
  local p = write_tmp(with_added({added(257, "<L>", true, false), added(258, "<R>", false, true)}))
  local tok = assert(tokenizer.new(p))
  ids_eq(tok:encode("a \t<L>b"), {97, 257, 98}, "lstrip: the spaces before <L> go")
  ids_eq(tok:encode("a<R> \n b"), {97, 258, 98}, "rstrip: the spaces after <R> go")
  ids_eq(tok:encode("a <R> b"), {97, 32, 258, 98}, "rstrip keeps the space before")
  ids_eq(tok:encode("a <L> b"), {97, 257, 32, 98}, "lstrip keeps the space after")
  tok:free()
  os.remove(p)
end)

H.case("added tokens: the longest match wins where one is a prefix of another", function()
  local p = write_tmp(with_added({added(257, "<x>", false, false), added(258, "<x>y", false, false)}))
  local tok = assert(tokenizer.new(p))
  ids_eq(tok:encode("<x>y<x>z"), {258, 257, 122}, "leftmost-longest")
  tok:free()
  os.remove(p)
end)

H.case("a token that is both in the vocabulary and added decodes to its content", function()
  -- byte 0xE9's character is "é" (U+00E9): as a vocabulary token it stands for the single byte 0xE9,
  -- as an added token with the same id for its content, UTF-8 "é" (bpe.c's design note)
  local p = write_tmp(with_added({added(233, "é", false, false)}))
  local tok = assert(tokenizer.new(p))
  ids_eq(tok:encode("é"), {233}, "the added token matches")
  H.eq(tok:decode({233}), "é", "decodes to the content, not to byte 0xE9")
  H.eq(tok:decode(tok:encode("caf\u{e9}")), "café", "round trip")
  tok:free()
  os.remove(p)
end)

H.case("what bpe.c does not implement is refused at load, named", function()
  local j = toy_json():gsub('"byte_fallback":false', '"byte_fallback":true', 1)
  local p = write_tmp(j)
  local t, err = tokenizer.new(p)
  H.eq(t, nil, "byte_fallback")
  H.ok(err and err:find("byte_fallback", 1, true), tostring(err))
  os.remove(p)
  local qwen_re = [[(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+]]
  for _, beh in ipairs({"Removed", "MergedWithPrevious", "Contiguous"}) do
    local pre = [[{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":]] .. cjson.encode(qwen_re) ..
      [[},"behavior":"]] .. beh .. [[","invert":false},{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]}]]
    p = write_tmp(toy_json({pre = pre}))
    t, err = tokenizer.new(p)
    H.eq(t, nil, "behavior " .. beh)
    H.ok(err and err:find("behavior " .. beh, 1, true), tostring(err))
    os.remove(p)
  end
  -- (twenty-first session) the post_processor: TemplateProcessing (Llama 3's BOS) and a Sequence
  -- with ByteLevel are taken and never applied (encode adds no special token); another kind is
  -- refused by name, as is a decoder given as null; a non-object added token is named by index
  local tp = [["post_processor":{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":false,]] ..
    [["trim_offsets":false,"use_regex":false},{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<|endoftext|>",]] ..
    [["type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{"<|endoftext|>":{"id":"<|endoftext|>",]] ..
    [["ids":[256],"tokens":["<|endoftext|>"]}}}]}]]
  p = write_tmp((toy_json():gsub('"post_processor":null', function() return tp end)))
  t, err = tokenizer.new(p)
  H.ok(t, "TemplateProcessing taken: " .. tostring(err))
  if t then ids_eq(t:encode("hi"), {104, 105}, "no BOS added") end
  os.remove(p)
  for _, case in ipairs({
      {'"post_processor":{"type":"RobertaProcessing","sep":["</s>",2],"cls":["<s>",0]}', 'post_processor "RobertaProcessing"'},
      {'"post_processor":{"type":"Sequence","processors":[{"type":"BertProcessing"}]}', 'post_processor "BertProcessing"'}}) do
    p = write_tmp((toy_json():gsub('"post_processor":null', function() return case[1] end)))
    t, err = tokenizer.new(p)
    H.eq(t, nil, case[2])
    H.ok(err and err:find(case[2], 1, true) and err:find("encode adds no special tokens", 1, true), tostring(err))
    os.remove(p)
  end
  p = write_tmp((toy_json():gsub('"decoder":%b{}', '"decoder":null', 1)))
  t, err = tokenizer.new(p)
  H.ok(t == nil and err:find('decoder "null" is not supported', 1, true), tostring(err))
  os.remove(p)
  p = write_tmp((toy_json():gsub('"added_tokens":%[', '"added_tokens":["hi",', 1)))
  t, err = tokenizer.new(p)
  H.ok(t == nil and err:find("added_tokens element 1 is not an object", 1, true), tostring(err))
  os.remove(p)
end)
end

-- (nineteenth session, mutation testing: ids wrapping around 32 bits passed the suite)
do
local confit = require "confit"

-- a 3-token byte-level vocabulary is enough: "a" = 0, "b" = 1, "c" = 2
local path = os.tmpname()
H.write(path, [[{"version":"1.0","added_tokens":[],"normalizer":null,
"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
"post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"",
"fuse_unk":false,"byte_fallback":false,"vocab":{"a":0,"b":1,"c":2},"merges":[]}}]])

H.case("id_to_token: ids outside [0, vocab) give nil, none wraps around 32 bits", function()
  local tok = assert(confit.tokenizer(path))
  H.eq(tok:id_to_token(1), "b", "a valid id")
  H.eq(tok:id_to_token(-1), nil, "-1")
  H.eq(tok:id_to_token(3), nil, "past the vocabulary")
  H.eq(tok:id_to_token(-(1 << 32) + 1), nil, "-2^32 + 1 is no id (it is 1 mod 2^32)")
  H.eq(tok:id_to_token((1 << 32) + 1), nil, "2^32 + 1 is no id")
  H.eq(tok:id_to_token(math.mininteger + 2), nil, "mininteger + 2")
  tok:free()
end)

os.remove(path)
end

-- (twenty-fourth session) a model folder where tokenizer.json belongs said "not a regular file (a
-- folder)", and tokenizer_config.json given by mistake "pre_tokenizer is null; only byte-level
-- BPE tokenizers are supported"; decode's unknown id was at "position 0"
H.case("a folder holding tokenizer.json loads; tokenizer_config.json is named as the wrong file", function()
  local tok = assert(confit.tokenizer("examples/toy/model"))
  H.eq(tok.path, "examples/toy/model/tokenizer.json")
  local file = assert(confit.tokenizer("examples/toy/model/tokenizer.json"))
  ids_eq(tok:encode("1+1=2;"), file:encode("1+1=2;"), "same tokenizer")
  H.eq(assert(tokenizer.new("examples/toy/model/")).path, "examples/toy/model/tokenizer.json", "trailing slash")
  local t, err = confit.tokenizer("tests")
  H.ok(t == nil and err == "tokenizer: tests is a folder without a tokenizer.json", tostring(err))
  -- (twenty-fourth session) "" was "a folder without a tokenizer.json" (cli.is_dir("") is true)
  t, err = confit.tokenizer("")
  H.ok(t == nil and err:find("^tokenizer: the path is empty"), tostring(err))
  t, err = confit.tokenizer("examples/toy/model/tokenizer_config.json")
  H.ok(t == nil and err:find("not a Hugging Face tokenizer.json (a tokenizer_config.json? give the tokenizer.json beside it)",
                             1, true), tostring(err))
  local p = write_tmp(toy_json({pre = '{"type":"Sequence","pretokenizers":[{"type":"Whitespace"}]}'}))
  t, err = tokenizer.new(p)
  os.remove(p)
  H.ok(t == nil and err:find('element 1 of type "Whitespace"', 1, true), "counted from 1: " .. tostring(err))
  H.raises(function() tok:decode({72, 300}, {strict = true}) end, "id 300 (position 2)")
  H.raises(function() tok:decode({-1}) end, "id -1 (position 1)")
  tok:free(); file:free()
end)

-- (twenty-seventh session, mutation testing of core/text/bpe.c: each case fails with the check it
-- names weakened; the suite passed them before)
do
local edge = cjson.decode(assert(H.read("tests/fixtures/hf_edge_cases.json")))

H.case("small tokenizer.json files: Hugging Face's ids (hf_edge_cases.json), and what it refuses", function()
  H.ok(#edge.bpe >= 6, "bpe cases in the fixture")
  for _, c in ipairs(edge.bpe) do
    local p = write_tmp(c.tokenizer)
    local tok, err = tokenizer.new(p)
    os.remove(p)
    if c.refused then
      H.eq(tok, nil, c.name .. ": Hugging Face refuses it; loaded")
      H.ok(err and #err > 0, c.name .. ": a message")
    else
      H.ok(tok, c.name .. ": " .. tostring(err))
      for _, case in ipairs(tok and c.cases or {}) do
        ids_eq(tok:encode(case.text), case.ids, ("%s: %q"):format(c.name, case.text))
      end
      if tok then tok:free() end
    end
  end
end)

H.case("what bpe.c does not implement or cannot read is refused at load, named (more cases)", function()
  local function refused(json, want, what)
    local p = write_tmp(json)
    local t, err = tokenizer.new(p)
    os.remove(p)
    H.eq(t, nil, what .. ": loaded")
    H.ok(err and err:find(want, 1, true), what .. ": " .. tostring(err))
  end
  local j = toy_json()
  -- a fractional id (Hugging Face: "expected u32"), and one at the limit 2^26
  refused((j:gsub('"a":97,', '"a":97.5,', 1)), 'vocab entry "a": id is not an integer in [0, 67108864)', "fractional id")
  refused((j:gsub('"a":97,', '"a":67108864,', 1)), 'vocab entry "a": id is not an integer in [0, 67108864)', "id 2^26")
  refused((j:gsub('"id":256,', '"id":-1,', 1)), 'added_tokens element 1: id is not an integer in [0, 67108864)',
    "negative added token id")
  -- the same token string twice in the vocabulary (cJSON keeps both keys)
  refused((j:gsub('"a":97,', '"a":97,"a":300,', 1)), 'vocab: token "a" appears twice', "duplicate token")
  -- a merge line of three parts (Hugging Face: "Merges text file invalid")
  refused(toy_json({merges = '["a b c"]'}), 'merge 1 "a b c" is not "a b"', "three-part merge")
  -- BPE dropout samples merges at random (Hugging Face applies it in encode): any positive value
  refused((j:gsub('"dropout":null', '"dropout":0.1', 1)), "BPE dropout is not supported", "dropout 0.1")
  refused((j:gsub('"continuing_subword_prefix":""', '"continuing_subword_prefix":"##"', 1)),
    'continuing_subword_prefix "##" is not supported', "continuing_subword_prefix")
  refused((j:gsub('"end_of_word_suffix":""', '"end_of_word_suffix":"</w>"', 1)),
    'end_of_word_suffix "</w>" is not supported', "end_of_word_suffix")
  refused((j:gsub('"single_word":false', '"single_word":true', 1)), 'added token "<|endoftext|>": single_word is not supported',
    "single_word")
  refused((j:gsub('"normalizer":null', '"normalizer":{"type":"NFKC"}', 1)), 'normalizer "NFKC" is not supported', "NFKC")
  local qwen_re = [[(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+]]
  local split = [[{"type":"Split","pattern":{"Regex":]] .. cjson.encode(qwen_re) .. [[},"behavior":"Isolated","invert":%s}]]
  local bl = [[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]]
  refused(toy_json({pre = '{"type":"Sequence","pretokenizers":[' .. split:format("true") .. "," .. bl .. "]}"}),
    "Split: invert is not supported", "invert")
  refused(toy_json({pre = '{"type":"Sequence","pretokenizers":[' .. split:format("false") .. "," .. split:format("false") ..
    "," .. bl .. "]}"}), 'element 1 of type "Split" is not supported', "two Splits")
end)

H.case("encode: 70,000 distinct words (the word cache empties when half full, never fills)", function()
  local gpt2 = toy_json({pre = [[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":true}]]})
  local p = write_tmp(gpt2)
  local tok = assert(tokenizer.new(p))
  os.remove(p)
  local words = {}
  for i = 1, 70000 do
    local w, n = {}, i
    repeat w[#w + 1] = string.char(97 + n % 26); n = n // 26 until n == 0
    words[i] = table.concat(w)
  end
  local text = table.concat(words, " ")
  local ids = tok:encode(text) -- a full cache made this loop forever (ctest's timeout)
  H.eq(#ids, #text, "one id per byte")
  local same = true
  for i = 1, #text do same = same and ids[i] == text:byte(i) end
  H.ok(same, "ids are the bytes")
  ids_eq(tok:encode(text), ids, "again, from the cache")
  tok:free()
end)

H.case("decode: the id just past the vocabulary is unknown (skipped, or named when strict)", function()
  local p = write_tmp(toy_json())
  local tok = assert(tokenizer.new(p))
  os.remove(p)
  H.eq(tok.vocab_size, 257)
  H.eq(tok:decode({104, 257, 105}), "hi", "skipped")
  H.raises(function() tok:decode({104, 257}, {strict = true}) end, "id 257 (position 2)")
  tok:free()
end)
end

H.finish()
