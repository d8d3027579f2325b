-- confit.toy: the toy world. A seeded generator of chain-arithmetic tasks written out step by
-- step with the answer in a box, plus the byte-level tokenizer files a toy model is trained with.
--
--   prompt      "37+48-19+25="
--   completion  "37+48=85;85-19=66;66+25=91;\boxed{91}"     (stepwise)
--               "\boxed{91}"                                (DIRECT, only in pretraining data)
--
-- Invariants:
--  * Determinism: every draw comes from a private splitmix64 stream seeded by (seed, split);
--    math.random is never touched. Same world options + split + n + seed => the same list.
--  * Disjoint splits by construction: a prompt belongs to the held-out split iff
--    fnv1a64(prompt) mod 10 == 0; each split's generator rejects prompts of the other split.
--  * Operations are evaluated left to right, which is also how the chain is written out, so
--    only '+' and '-' are offered (with '*', the prompt's precedence would disagree).
--  * Unless allow_negative, every intermediate value is >= 0: a step whose result would be
--    negative is re-drawn (op and operand together), and a chain that cannot continue restarts.
--
-- Tokenizer: 256 byte tokens (ids = byte values, GPT-2 bytes_to_unicode strings) and
-- "<|endoftext|>" = 256, the EOS. No merges: one token per byte. Vocabulary size 257.
local M = {}

M.EOS = "<|endoftext|>"
M.EOS_ID = 256
M.VOCAB_SIZE = 257

M.presets = {
  -- 4-step chains of one-digit operands; 60% of pretraining examples answer directly.
  mixed = {steps = 4, lo = 0, hi = 9, ops = "+-", direct_share = 0.6, allow_negative = false},
  -- 3-step chains of two-digit operands; always stepwise.
  pure = {steps = 3, lo = 10, hi = 99, ops = "+-", direct_share = 0.0, allow_negative = false},
}

local SPLITS = {train = "train", heldout = "heldout", test = "heldout"}

-- PRNG: splitmix64 on Lua's 64-bit wrapping integers ------------------------------------------

local function splitmix(state)
  state = state + 0x9E3779B97F4A7C15
  local z = state
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return state, z ~ (z >> 31)
end

local Rng = {}
Rng.__index = Rng

local function new_rng(seed, stream)
  assert(math.type(seed) == "integer", "toy: seed must be an integer")
  local r = setmetatable({s = 0}, Rng)
  local _, a = splitmix(seed)
  local _, b = splitmix(a ~ stream)
  r.s = b
  return r
end

-- uniform float in [0, 1) with 53 random bits
function Rng:float()
  local z
  self.s, z = splitmix(self.s)
  return (z >> 11) * (1.0 / 9007199254740992.0)
end

-- uniform integer in [lo, hi] (range < 2^53, negligible modulo bias for small ranges)
function Rng:int(lo, hi)
  local z
  self.s, z = splitmix(self.s)
  return lo + (z >> 11) % (hi - lo + 1)
end

M.new_rng = new_rng

-- FNV-1a 64-bit hash of a string; the split of a prompt is fixed by it --------------------------

local function fnv1a64(s)
  local h = 0xCBF29CE484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 0x100000001B3
  end
  return h
end

M.fnv1a64 = fnv1a64

-- "train" or "heldout" for a prompt string.
function M.split_of(prompt)
  local h = fnv1a64(prompt) & 0x7FFFFFFFFFFFFFFF
  return (h % 10 == 0) and "heldout" or "train"
end

-- Chains ---------------------------------------------------------------------------------------

-- Parse a prompt "a+b-c=" into operands and ops; nil, message if it is not one.
function M.parse_prompt(prompt)
  local body = prompt:match("^(.-)=$")
  if not body then return nil, "toy: prompt must end with '='" end
  local first, rest = body:match("^(%d+)(.*)$")
  if not first then return nil, "toy: prompt must start with a number" end
  local nums, ops = {tonumber(first)}, {}
  local pos = 1
  while pos <= #rest do
    local op, num, nxt = rest:match("^([%+%-])(%d+)()", pos)
    if not op then return nil, "toy: bad chain at '" .. rest:sub(pos) .. "'" end
    ops[#ops + 1] = op
    nums[#nums + 1] = tonumber(num)
    pos = nxt
  end
  if #ops == 0 then return nil, "toy: a chain needs at least one operation" end
  return nums, ops
end

local function apply(a, op, b)
  if op == "+" then return a + b end
  return a - b
end

-- The stepwise completion and the answer of a prompt ("37+48=85;85-19=66;\boxed{66}", 66).
function M.solve(prompt)
  local nums, ops = M.parse_prompt(prompt)
  if not nums then return nil, ops end
  local parts, acc = {}, nums[1]
  for i, op in ipairs(ops) do
    local r = apply(acc, op, nums[i + 1])
    parts[#parts + 1] = string.format("%d%s%d=%d;", acc, op, nums[i + 1], r)
    acc = r
  end
  parts[#parts + 1] = string.format("\\boxed{%d}", acc)
  return table.concat(parts), acc
end

-- Grading --------------------------------------------------------------------------------------

-- Content of the last \boxed{...} (brace-balanced, nested braces kept), or nil (also for an
-- empty box).
function M.extract_boxed(s)
  local last
  local init = 1
  while true do
    local a, b = s:find("\\boxed{", init, true)
    if not a then break end
    last, init = b, b + 1
  end
  if not last then return nil end
  local depth = 1
  for i = last + 1, #s do
    local c = s:byte(i)
    if c == 123 then depth = depth + 1
    elseif c == 125 then
      depth = depth - 1
      if depth == 0 then
        local content = s:sub(last + 1, i - 1)
        -- an empty box is no answer (as "" it voted, in maj@n and in TTRL's majority reward)
        if not content:find("%S") then return nil end
        return content
      end
    end
  end
  return nil -- unterminated box
end

local function to_int(s)
  if type(s) == "number" then return math.tointeger(s) end
  if type(s) ~= "string" then return nil end
  s = s:match("^%s*(.-)%s*$")
  if not s:match("^[%+%-]?%d+$") then return nil end
  return math.tointeger(tonumber(s))
end

-- Stepwise or direct: true when the completion has a box and no '=' before its first box.
function M.is_direct(completion)
  local a = completion:find("\\boxed{", 1, true)
  if not a then return false end
  local eq = completion:find("=", 1, true)
  return eq == nil or eq > a
end

-- correct (bool), extracted (string or nil). The reference is a number or a string: integers
-- compare as integers, anything else as text; a reference of another kind (a missing one, a
-- boolean) is an error, not the text "nil" or "false" a box could hold.
function M.grade(completion, answer)
  if type(answer) ~= "number" and type(answer) ~= "string" then
    error("toy.grade: answer must be a number or a string, got " .. type(answer), 2)
  end
  local got = M.extract_boxed(completion)
  if got == nil then return false, nil end
  local a, b = to_int(got), to_int(answer)
  if a ~= nil and b ~= nil then return a == b, got end
  return got == tostring(answer), got
end

-- Worlds ---------------------------------------------------------------------------------------

local World = {}
World.__index = World

local function check_opts(o)
  local function need(cond, msg) if not cond then error("toy.world: " .. msg, 3) end end
  need(math.type(o.steps) == "integer" and o.steps >= 1, "steps must be an integer >= 1")
  need(math.type(o.lo) == "integer" and math.type(o.hi) == "integer",
       "lo and hi must be integers")
  need(o.lo >= 0 and o.lo <= o.hi, string.format("need 0 <= lo <= hi, got lo=%d hi=%d", o.lo, o.hi))
  -- sums of steps + 1 operands stay exact integers, and the draws need a range below 2^53
  need(o.hi <= 10 ^ 12 and o.steps <= 1000, string.format("need hi <= 10^12 and steps <= 1000, got hi=%d steps=%d", o.hi, o.steps))
  need(type(o.ops) == "string" and #o.ops > 0 and not o.ops:find("[^%+%-]"),
       "ops must be a non-empty string of '+' and '-' (got " .. tostring(o.ops) .. ")")
  need(type(o.direct_share) == "number" and o.direct_share >= 0 and o.direct_share <= 1,
       "direct_share must be in [0, 1]")
  need(type(o.allow_negative) == "boolean", "allow_negative must be a boolean")
end

-- toy.world("mixed" | "pure" | {preset=, steps=, lo=, hi=, ops=, direct_share=, allow_negative=})
function M.world(spec)
  spec = spec or "mixed"
  if type(spec) ~= "string" and type(spec) ~= "table" then
    error("toy.world: expected a preset name or a table of options, got " .. type(spec), 2)
  end
  local opts = {}
  local base_name = type(spec) == "string" and spec or spec.preset or "mixed"
  local base = M.presets[base_name]
  if not base then error("toy.world: unknown preset '" .. tostring(base_name) .. "'", 2) end
  for k, v in pairs(base) do opts[k] = v end
  if type(spec) == "table" then
    for k, v in pairs(spec) do
      if k ~= "preset" then
        if base[k] == nil then error("toy.world: unknown option '" .. tostring(k) .. "'", 2) end
        opts[k] = v
      end
    end
  end
  check_opts(opts)
  local w = setmetatable({opts = opts, preset = base_name}, World)
  w.ops = {}
  for c in opts.ops:gmatch(".") do w.ops[#w.ops + 1] = c end
  return w
end

-- One chain (prompt, stepwise completion, answer) from rng, whatever its split.
function World:_chain(rng)
  local o = self.opts
  for _ = 1, 1000 do
    local acc = rng:int(o.lo, o.hi)
    local prompt, steps = {tostring(acc)}, {}
    local ok = true
    for _ = 1, o.steps do
      local placed = false
      for _ = 1, 64 do
        local op = self.ops[rng:int(1, #self.ops)]
        local b = rng:int(o.lo, o.hi)
        local r = apply(acc, op, b)
        if o.allow_negative or r >= 0 then
          prompt[#prompt + 1] = op .. b
          steps[#steps + 1] = string.format("%d%s%d=%d;", acc, op, b, r)
          acc, placed = r, true
          break
        end
      end
      if not placed then ok = false; break end
    end
    if ok then
      prompt[#prompt + 1] = "="
      steps[#steps + 1] = string.format("\\boxed{%d}", acc)
      return table.concat(prompt), table.concat(steps), acc
    end
  end
  error("toy: cannot draw a chain with non-negative intermediates; allow_negative or widen ops", 3)
end

local function split_name(split)
  local s = SPLITS[split]
  if not s then
    error("toy: split must be 'train' or 'heldout' (alias 'test'), got " .. tostring(split), 3)
  end
  return s
end

local function check_n_seed(n, seed)
  if math.type(n) ~= "integer" or n < 0 then error("toy: n must be an integer >= 0", 3) end
  if math.type(seed) ~= "integer" then error("toy: seed must be an integer", 3) end
end

-- Next chain of the given split from rng (rejects prompts of the other split).
function World:_draw(rng, split)
  for _ = 1, 100000 do
    local prompt, completion, answer = self:_chain(rng)
    if M.split_of(prompt) == split then return prompt, completion, answer end
  end
  error("toy: no prompt of split '" .. split .. "' found in 100000 draws", 3)
end

-- n examples {prompt, completion, answer, direct} of a split; DIRECT ones with probability
-- direct_share (opts.direct_share overrides the world's). Duplicates may occur.
function World:sample(split, n, seed, opts)
  split = split_name(split)
  check_n_seed(n, seed)
  local share = (opts and opts.direct_share) or self.opts.direct_share
  local rng = new_rng(seed, split == "train" and 0x7261696E or 0x68656C64)
  local out = {}
  for i = 1, n do
    local prompt, completion, answer = self:_draw(rng, split)
    local direct = rng:float() < share
    if direct then completion = string.format("\\boxed{%d}", answer) end
    out[i] = {prompt = prompt, completion = completion, answer = answer, direct = direct}
  end
  return out
end

-- n distinct questions {prompt, answer} of a split (for evaluation and RL prompts).
-- Raises when the split holds fewer than n distinct prompts reachable in a bounded search.
function World:questions(split, n, seed)
  split = split_name(split)
  check_n_seed(n, seed)
  local rng = new_rng(seed, split == "train" and 0x71747261 or 0x7168656C)
  local out, seen = {}, {}
  local misses = 0
  while #out < n do
    local prompt, _, answer = self:_draw(rng, split)
    if seen[prompt] then
      misses = misses + 1
      if misses > 20 * n + 10000 then
        error(string.format("toy: only %d distinct %s questions found, %d asked", #out, split, n), 2)
      end
    else
      seen[prompt] = true
      out[#out + 1] = {prompt = prompt, answer = answer}
    end
  end
  return out
end

function World:grade(completion, answer) return M.grade(completion, answer) end
function World:is_direct(completion) return M.is_direct(completion) end
function World:split_of(prompt) return M.split_of(prompt) end

-- Byte-level tokenizer -------------------------------------------------------------------------

-- GPT-2's bytes_to_unicode: byte value -> code point. Printable bytes map to themselves, the
-- rest to 256, 257, ... in byte order.
function M.bytes_to_unicode()
  local map, n = {}, 0
  for b = 0, 255 do
    if (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or (b >= 174 and b <= 255) then
      map[b] = b
    else
      map[b] = 256 + n
      n = n + 1
    end
  end
  return map
end

-- Token ids of a string (one per byte; EOS appended when add_eos).
function M.encode(s, add_eos)
  local ids = {s:byte(1, -1)}
  if add_eos then ids[#ids + 1] = M.EOS_ID end
  return ids
end

-- String of token ids; the EOS (and any id >= 256) is dropped unless keep_special.
function M.decode(ids, keep_special)
  local parts = {}
  for i, id in ipairs(ids) do
    if id < 256 then parts[i] = string.char(id)
    elseif keep_special and id == M.EOS_ID then parts[i] = M.EOS
    else parts[i] = "" end
  end
  return table.concat(parts)
end

local function json_str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local ADDED = '{"id": 256, "content": "<|endoftext|>", "single_word": false, "lstrip": false, '
  .. '"rstrip": false, "normalized": false, "special": true}'
local BYTELEVEL = '{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, '
  .. '"use_regex": false}'

-- The text of tokenizer.json (deterministic; keys in a fixed order, vocab in id order).
function M.tokenizer_json()
  local map = M.bytes_to_unicode()
  local vocab = {}
  for b = 0, 255 do
    vocab[#vocab + 1] = string.format("      %s: %d", json_str(utf8.char(map[b])), b)
  end
  return table.concat({
    '{',
    '  "version": "1.0",',
    '  "truncation": null,',
    '  "padding": null,',
    '  "added_tokens": [',
    '    ' .. ADDED,
    '  ],',
    '  "normalizer": null,',
    '  "pre_tokenizer": ' .. BYTELEVEL .. ',',
    '  "post_processor": null,',
    '  "decoder": ' .. BYTELEVEL .. ',',
    '  "model": {',
    '    "type": "BPE",',
    '    "dropout": null,',
    '    "unk_token": null,',
    '    "continuing_subword_prefix": null,',
    '    "end_of_word_suffix": null,',
    '    "fuse_unk": false,',
    '    "byte_fallback": false,',
    '    "ignore_merges": false,',
    '    "vocab": {',
    table.concat(vocab, ",\n"),
    '    },',
    '    "merges": []',
    '  }',
    '}',
    '',
  }, "\n")
end

function M.tokenizer_config_json()
  return table.concat({
    '{',
    '  "add_bos_token": false,',
    '  "add_prefix_space": false,',
    '  "added_tokens_decoder": {',
    '    "256": {"content": "<|endoftext|>", "lstrip": false, "normalized": false, '
      .. '"rstrip": false, "single_word": false, "special": true}',
    '  },',
    '  "bos_token": null,',
    '  "clean_up_tokenization_spaces": false,',
    '  "eos_token": "<|endoftext|>",',
    '  "errors": "replace",',
    '  "model_max_length": 1024,',
    '  "pad_token": "<|endoftext|>",',
    '  "tokenizer_class": "PreTrainedTokenizerFast",',
    '  "unk_token": null',
    '}',
    '',
  }, "\n")
end

-- path written as every file of a model folder is: a fresh temporary file, synced, renamed
local function write_file(path, text)
  local ok, err = require("confit.jsonio").write_text_atomic(path, text)
  if not ok then return nil, "toy.write_tokenizer: " .. tostring(err) end
  return true
end

-- Write dir/tokenizer.json and dir/tokenizer_config.json (dir must exist).
-- Returns true, or nil and a message.
function M.write_tokenizer(dir)
  local ok, err = write_file(dir .. "/tokenizer.json", M.tokenizer_json())
  if not ok then return nil, err end
  return write_file(dir .. "/tokenizer_config.json", M.tokenizer_config_json())
end

return M
