-- confit.tokenizer: a byte-level BPE tokenizer (Hugging Face tokenizer.json) with chat templates.
--
--   local tok = assert(require("confit.tokenizer").new("path/tokenizer.json"))   -- or "path"
--   tok:encode(text)              -> {ids...}   0-based ids; "<|im_end|>" etc. in the text are
--                                               matched as added tokens; no BOS is added
--   tok:decode(ids [, {skip_special = true, strict = true, lossy = true}]) -> string: the
--                                 tokens' bytes as they are, so ids that stop inside a multi-byte
--                                 character give its first bytes (decode(a) .. decode(b) ==
--                                 decode(a then b)), where Hugging Face's decode writes U+FFFD;
--                                 lossy = true gives Hugging Face's text: each ill-formed
--                                 stretch one U+FFFD (Rust's String::from_utf8_lossy). ids is a
--                                 list 1..n of integers (3.0 counts as 3). An id >= 0 that is no
--                                 token (a model's embedding rows past the tokenizer's) is
--                                 skipped, as Hugging Face's decode skips it; strict = true
--                                 makes it an error.
--   tok:chat(messages_or_question [, {template = ..., system = ..., date = ..., add_generation_prompt = true}])
--                                 -> prompt string (see confit.chat for the templates). The
--                                 default template is the tokenizer folder's chat format
--                                 (chat.family of its tokenizer_config.json: chatml, llama3 or
--                                 llama31), else "chatml". chatml (a Qwen folder's) adds Qwen2.5-
--                                 Math's system turn (chat.QWEN_MATH_SYSTEM, "Please reason step
--                                 by step, ...") when the messages have none; {system = false}
--                                 gives plain ChatML without a system turn. A template whose
--                                 markers (<|im_start|>, <|start_header_id|>, ...) are no special
--                                 tokens of this tokenizer is refused.
--   tok:encode_chat(...)          -> ids of tok:chat(...)
--   tok:token_to_id(s), tok:id_to_token(id), tok:added_tokens(), tok:free()
--   fields: tok.vocab_size, tok.eos_ids (list, primary first), tok.eos_id, tok.special
--           (content -> id of every special added token), tok.path
--
-- new(path): path is a tokenizer.json, or a folder holding one (a model folder); tok.path is the
-- file's path. It returns nil, message when the file is missing, corrupt or of an unsupported kind;
-- wrong argument types raise errors. The BPE itself runs in C (core/text/bpe.c).
local core = require "confit.core"
local chat = require "confit.chat"

local M = {}
local Tokenizer = {}
Tokenizer.__index = Tokenizer
Tokenizer.__name = "confit.tokenizer"

-- End-of-sequence tokens recognised by name among the special tokens, in order of preference:
-- ChatML's end of turn first (what an instruct model emits), then the end-of-text markers.
local EOS_NAMES = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>"}

function M.new(path)
  if type(path) ~= "string" then
    error("confit.tokenizer.new: path must be a string, got " .. type(path), 2)
  end
  -- "" is a folder to the file system's eye ("" .. "/." is "/."): said as the empty path it is
  if path == "" then
    return nil, "tokenizer: the path is empty: give a tokenizer.json or a model folder holding one"
  end
  -- a folder (a model's, as confit.load takes): the tokenizer.json in it
  if require("confit.cli").is_dir(path) then
    local dir = path
    path = (path:gsub("/+$", "")) .. "/tokenizer.json"
    if not require("confit.cli").exists(path) then
      return nil, ("tokenizer: %s is a folder without a tokenizer.json"):format(dir)
    end
  end
  local bpe, err = core.bpe_load(path)
  if not bpe then return nil, err end
  local self = setmetatable({bpe = bpe, path = path, special = {}, eos_ids = {}}, Tokenizer)
  self.vocab_size = bpe:vocab_size()
  for _, a in ipairs(bpe:added_tokens()) do
    if a.special then self.special[a.content] = a.id end
  end
  -- only special (added) tokens count: in Qwen's vocabulary "</s>" is ordinary text (id 128247)
  for _, name in ipairs(EOS_NAMES) do
    local id = self.special[name]
    if id then self.eos_ids[#self.eos_ids + 1] = id end
  end
  self.eos_id = self.eos_ids[1]
  return self
end

local function check_self(self, method)
  if getmetatable(self) ~= Tokenizer then
    error("confit.tokenizer:" .. method .. ": call it with ':' on a tokenizer", 3)
  end
end

-- An error of the C tokenizer (confit.bpe) as tokenizer:METHOD's, at the caller's caller: without
-- the C file's position and without a second method prefix
local function rethrow(method, msg)
  msg = tostring(msg):gsub("^[^:]*%.c:%d+: ", ""):gsub("^confit%.bpe: ", "")
  if msg:sub(1, #method + 2) == method .. ": " then msg = msg:sub(#method + 3) end
  msg = msg:gsub("^[^:]*%.c:%d+: ", "")
  error("tokenizer:" .. method .. ": " .. msg, 3)
end

function Tokenizer:encode(text)
  check_self(self, "encode")
  if type(text) ~= "string" then
    error("tokenizer:encode: text must be a string, got " .. type(text), 2)
  end
  local ok, ids = pcall(self.bpe.encode, self.bpe, text)
  if not ok then rethrow("encode", ids) end
  return ids
end

-- s with each ill-formed stretch of UTF-8 replaced by one U+FFFD: the maximal subparts of
-- Unicode's recommended practice, as Rust's String::from_utf8_lossy (so Hugging Face's decode)
-- and WHATWG's decoder replace them.
local function lossy(s)
  if utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local b = s:byte(i)
    local need, lo, hi = 0, 0x80, 0xBF -- continuation bytes, and the range of the first
    if b >= 0xC2 and b <= 0xDF then need = 1
    elseif b >= 0xE0 and b <= 0xEF then
      need = 2
      if b == 0xE0 then lo = 0xA0 elseif b == 0xED then hi = 0x9F end -- overlong; surrogates
    elseif b >= 0xF0 and b <= 0xF4 then
      need = 3
      if b == 0xF0 then lo = 0x90 elseif b == 0xF4 then hi = 0x8F end -- overlong; past U+10FFFF
    elseif b >= 0x80 then need = -1 end
    local k = 1
    while k <= need do
      local c = s:byte(i + k)
      if not c or c < lo or c > hi then break end
      k, lo, hi = k + 1, 0x80, 0xBF
    end
    out[#out + 1] = need >= 0 and k > need and s:sub(i, i + need) or "\u{FFFD}"
    i = i + k
  end
  return table.concat(out)
end

function Tokenizer:decode(ids, opts)
  check_self(self, "decode")
  if type(ids) ~= "table" then
    error("tokenizer:decode: ids must be a table of token ids, got " .. type(ids), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("tokenizer:decode: opts must be a table such as {skip_special = true}, got " .. type(opts), 2)
  end
  for k, v in pairs(opts or {}) do   -- a misspelt option ("skip_specials") did nothing without a word
    if k ~= "skip_special" and k ~= "strict" and k ~= "lossy" then
      error(("tokenizer:decode: unknown option %s (options: skip_special, strict, lossy)"):format(tostring(k)), 2)
    end
    if type(v) ~= "boolean" then   -- {lossy = "no"} was taken as true
      error(("tokenizer:decode: option %s must be true or false, got %s"):format(k, type(v)), 2)
    end
  end
  -- a list 1..n: the ids after a gap were dropped unseen, and {x = 1} decoded to ""
  local count, last = 0, 0
  for k in pairs(ids) do
    if math.type(k) ~= "integer" or k < 1 then
      error(("tokenizer:decode: ids has the key %s: a list 1..n of token ids is expected"):format(
            type(k) == "string" and ("%q"):format(k) or tostring(k)), 2)
    end
    count, last = count + 1, math.max(last, k)
  end
  if count ~= last then
    local i = 1
    while ids[i] ~= nil do i = i + 1 end
    error(("tokenizer:decode: ids[%d] is nil, and the ids after the gap (up to ids[%d]) would be dropped")
          :format(i, last), 2)
  end
  local ok, text = pcall(self.bpe.decode, self.bpe, ids, opts and opts.skip_special or false, opts and opts.strict or false)
  if not ok then rethrow("decode", text) end
  if opts and opts.lossy then text = lossy(text) end
  return text
end

-- The chat format of the tokenizer's folder (chat.family), once; false when unknown.
local function family(self)
  if self.family == nil then
    local dir = self.path:match("^(.*)/[^/]*$") or "."
    local f, why, broken = chat.family(dir)
    if broken then
      error(("tokenizer:chat: %s (give opts.template to choose one)"):format(tostring(why)), 3)
    end
    self.family = f or false
  end
  return self.family
end

function Tokenizer:chat(messages, opts)
  check_self(self, "chat")
  if opts ~= nil and type(opts) ~= "table" then
    error("tokenizer:chat: opts must be a table, got " .. type(opts), 2)
  end
  local rest = {} -- the template's own options (chat.apply checks them)
  for k, v in pairs(opts or {}) do if k ~= "template" then rest[k] = v end end
  local name = opts and opts.template or family(self) or "chatml"
  local s = chat._apply(name, messages, rest, 3)
  local mark = chat.missing_marker(name, self)
  if mark then
    local known, fam = pcall(family, self)   -- (a broken tokenizer_config.json: no suggestion)
    error(("tokenizer:chat: template %q writes %s, which is no special token of %s: the prompt would spell it "
           .. "out in ordinary tokens (a template of this tokenizer's format: %s)")
          :format(name, mark, self.path, known and fam or "plain, or see confit.chat"), 2)
  end
  return s
end

function Tokenizer:encode_chat(messages, opts)
  check_self(self, "encode_chat")
  local ok, s = pcall(self.chat, self, messages, opts)
  if not ok then error((tostring(s):gsub("^[^\n]-:%d+: ", "")), 2) end
  return self:encode(s)
end

function Tokenizer:token_to_id(s)
  check_self(self, "token_to_id")
  if type(s) ~= "string" then error("tokenizer:token_to_id: expected a string, got " .. type(s), 2) end
  return self.bpe:token_to_id(s)
end

function Tokenizer:id_to_token(id)
  check_self(self, "id_to_token")
  -- an integral float (3.0, from a JSON library) is an id, as decode and the model's calls take it
  local i = type(id) == "number" and math.tointeger(id)
  if not i then
    error("tokenizer:id_to_token: expected an integer id, got " .. (type(id) == "number" and require("confit.cli").show(id) or type(id)), 2)
  end
  return self.bpe:id_to_token(i)
end

function Tokenizer:added_tokens()
  check_self(self, "added_tokens")
  return self.bpe:added_tokens()
end

function Tokenizer:free()
  self.bpe:free()
  self.freed = true
end

function Tokenizer:__tostring()
  if self.freed then return string.format("confit.tokenizer(%s, freed)", self.path) end
  return string.format("confit.tokenizer(%s, %d ids)", self.path, self.vocab_size)
end

Tokenizer.__close = Tokenizer.free

M.Tokenizer = Tokenizer
return M
