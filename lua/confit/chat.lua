-- confit.chat: chat templates as plain Lua functions, producing the prompt STRING.
--
--   chat.apply(name, messages_or_question [, opts]) -> string
--
-- `messages_or_question` is either a question string (one user turn) or a list of
-- {role = "system"|"user"|"assistant"|..., content = string}. opts (each template takes only the
-- ones it uses; another, or a value of the wrong type, is an error naming the template):
--   system                 system message (chatml, strict, llama3, llama31): a string, or false
--                          for no system turn (llama31: no system message; its date lines stay);
--                          a string beside a system message in the list is an error
--   date                   llama31's "Today Date" (llama31, llama31-math-cot, strict-llama31)
--   add_generation_prompt  append the opening of the assistant turn (boolean, default true;
--                          every template but plain)
--
-- Templates:
--   chatml           ChatML, `<|im_start|>role\ncontent<|im_end|>\n` per turn, as Qwen2.5(-Math)'s
--                    template writes it (a run of tool messages as one user turn of
--                    `<tool_response>` blocks; no Qwen3 `<think>` block in assistant turns); when
--                    the messages hold no system turn, Qwen2.5-Math's default system message
--                    is used. Roles: system, user, assistant, tool; another ("bot", "developer")
--                    is an error, where Qwen's templates drop the message without a word
--   qwen25-math-cot  the byte-exact prompt of the Qwen2.5-Math evaluation harness (EVAL.md
--                    "qwen" mode): ChatML with the default system message and one user turn
--   strict           EVAL.md "strict" mode: the user turn is
--                    `Problem: {question}\nMark your solution with \boxed\nAnswer:` in ChatML
--   llama3           Llama 3's format: `<|begin_of_text|>`, then per turn
--                    `<|start_header_id|>role<|end_header_id|>\n\n` content (trimmed, as its
--                    template trims) `<|eot_id|>`; a system turn only when given (opts.system or
--                    a system message). This is Llama 3.0's template.
--   llama31          Llama 3.1's (also 3.2's and 3.3's): llama3, but the system turn is always
--                    there and starts `Cutting Knowledge Date: December 2023\nToday Date: DATE\n\n`
--                    before the (trimmed, possibly empty) system message. DATE is opts.date, by
--                    default "26 Jul 2024", the templates' own default; 3.2's template would put
--                    today's date there when rendered by transformers (strftime_now), which would
--                    make the same prompt differ from day to day: pass opts.date for that.
--   llama3-math-cot  the "qwen" mode prompt for a Llama 3 model: llama3 with the Qwen2.5-Math
--                    chain-of-thought instruction as the system turn and one user turn
--   llama31-math-cot the same in llama31 (the instruction after the date lines)
--   strict-llama3    the "strict" mode user turn in llama3 (no system turn)
--   strict-llama31   the same in llama31 (the system turn holds the date lines only)
--   plain            the question as is
--
--   chat.family(dir) -> "chatml" | "llama3" | "llama31" | nil, why, broken
--     which format a model folder's chat template (dir/tokenizer_config.json, chat_template) uses;
--     nil with the reason when the file or the template is missing or of another kind (broken:
--     true when the file is there but cannot be read as a JSON object). "llama31"
--     when the Llama 3 template writes the "Cutting Knowledge Date" system turn (3.1, 3.2, 3.3).
--     A family is also the name of its general template (chat.apply(chat.family(dir), msgs)).
--   chat.markers(name) -> list of the special tokens template `name` writes ({} for plain)
--   chat.missing_marker(name, tok) -> the first of them tokenizer tok lacks as special, or nil
--   chat.default_template(mode, family) -> name
--     the template EVAL.md's mode ("qwen" | "strict") uses for a model of that family: the
--     question goes in "the model's chat template" (ChatML when the family is unknown).
local M = {}

M.QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

local function fail(msg) error("confit.chat: " .. msg, 3) end

-- inside a template: an error that chat.apply reports with the template's name, at its caller
local BAD = {}
local function bad(msg) error(setmetatable({msg = msg}, BAD), 0) end

-- Normalise the input to a list of messages, checking every field.
local function messages_of(x)
  if type(x) == "string" then return {{role = "user", content = x}} end
  if type(x) ~= "table" then bad("expected a question string or a list of messages, got " .. type(x)) end
  if #x == 0 and (x.role ~= nil or x.content ~= nil) then
    bad("got one message, not a list of messages: wrap it in { }")
  end
  if #x == 0 then bad("the message list is empty") end
  local last = 0           -- ipairs stops at a gap: the messages after it were dropped unseen
  for k in pairs(x) do
    if math.type(k) ~= "integer" or k < 1 then
      bad(("the message list has a key %s: a list 1..n of messages is expected"):format(tostring(k)))
    end
    if k > last then last = k end
  end
  for i = 1, last do
    if x[i] == nil then bad(("message %d is nil, and message %d after a gap would be dropped"):format(i, last)) end
  end
  for i, m in ipairs(x) do
    if type(m) ~= "table" then bad(string.format("message %d is a %s, not a table", i, type(m))) end
    if type(m.role) ~= "string" or m.role == "" then
      bad(string.format("message %d has no role (a non-empty string)", i))
    end
    -- the role goes into the turn's header as it is: a line break or a marker there would start
    -- turns of its own
    if m.role:find("[%c<>|]") then
      bad(string.format("message %d's role %q holds a control character or one of < > | (a role is a word "
                        .. "such as user)", i, m.role))
    end
    if type(m.content) ~= "string" then
      bad(string.format("message %d (%s) has no content string", i, m.role))
    end
  end
  return x
end

-- The single question of a one-turn input (a string, or one user message).
local function question_of(x, name)
  local msgs = messages_of(x)
  if #msgs ~= 1 then bad(string.format("takes a question or one user message, got %d messages", #msgs)) end
  if msgs[1].role ~= "user" then
    bad(string.format("takes a question or one user message, got one %s message", msgs[1].role))
  end
  return msgs[1].content
end

-- opts.system (a string) and a system message of the list both: which one was meant is unknown
local function one_system(msgs, opts)
  if type(opts.system) == "string" and msgs[1].role == "system" then
    bad("opts.system and a system message (message 1) are both given: pass one of them")
  end
end

-- The roles Qwen's ChatML templates (Qwen2.5, Qwen2.5-Math, Qwen3) write; they drop a message of
-- any other role without a word, so such a message is refused rather than written or dropped.
local CHATML_ROLES = {system = true, user = true, assistant = true, tool = true}

local function chatml(msgs, opts)
  one_system(msgs, opts)
  for i, m in ipairs(msgs) do
    if not CHATML_ROLES[m.role] then
      bad(string.format("message %d's role %q is none of ChatML's: system, user, assistant, tool (Qwen's "
                        .. "template would drop the message)", i, m.role))
    end
  end
  local out = {}
  local system = opts.system
  if system == nil then system = M.QWEN_MATH_SYSTEM end
  if system ~= false and msgs[1].role ~= "system" then
    out[#out + 1] = "<|im_start|>system\n" .. system .. "<|im_end|>\n"
  end
  for i, m in ipairs(msgs) do
    if m.role == "tool" then
      -- Qwen2.5's template: a run of tool results is one user turn of <tool_response> blocks
      if i == 1 or msgs[i - 1].role ~= "tool" then out[#out + 1] = "<|im_start|>user" end
      out[#out + 1] = "\n<tool_response>\n" .. m.content .. "\n</tool_response>"
      if i == #msgs or msgs[i + 1].role ~= "tool" then out[#out + 1] = "<|im_end|>\n" end
    else
      out[#out + 1] = "<|im_start|>" .. m.role .. "\n" .. m.content .. "<|im_end|>\n"
    end
  end
  if opts.add_generation_prompt ~= false then out[#out + 1] = "<|im_start|>assistant\n" end
  return table.concat(out)
end

-- Jinja's trim (Python's str.strip): the whitespace code points Python knows, in UTF-8
local SPACE = {}
for _, c in ipairs({0x9, 0xA, 0xB, 0xC, 0xD, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029,
                    0x202F, 0x205F, 0x3000}) do SPACE[c] = true end
for c = 0x2000, 0x200A do SPACE[c] = true end

local function code_at(text, i) -- code point at byte i and its length, or nil (invalid UTF-8)
  local ok, c = pcall(utf8.codepoint, text, i)
  if not ok then return nil end
  return c, #utf8.char(c)
end

local function trim(text)
  local i, j = 1, #text
  while i <= j do
    local c, n = code_at(text, i)
    if not c or not SPACE[c] then break end
    i = i + n
  end
  while j >= i do
    local k = j
    while k > i and text:byte(k) >= 0x80 and text:byte(k) < 0xC0 do k = k - 1 end -- the last char's start
    local c, n = code_at(text, k)
    if not c or k + n - 1 ~= j or not SPACE[c] then break end
    j = k - 1
  end
  return text:sub(i, j)
end

M.LLAMA31_DATE = "26 Jul 2024"

-- dated: Llama 3.1's form, whose system turn (always there) opens with the date lines
local function llama3(msgs, opts, dated)
  one_system(msgs, opts)
  local out = {"<|begin_of_text|>"}
  local system = opts.system
  local first = 1
  if dated then
    local date = opts.date
    if date == nil then date = M.LLAMA31_DATE end
    if msgs[1].role == "system" then system, first = msgs[1].content, 2 end
    out[#out + 1] = "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n" ..
      "Today Date: " .. date .. "\n\n" .. trim(system or "") .. "<|eot_id|>"
  elseif system ~= nil and system ~= false and msgs[1].role ~= "system" then
    out[#out + 1] = "<|start_header_id|>system<|end_header_id|>\n\n" .. trim(system) .. "<|eot_id|>"
  end
  for i = first, #msgs do
    local m = msgs[i]
    out[#out + 1] = "<|start_header_id|>" .. m.role .. "<|end_header_id|>\n\n" .. trim(m.content) ..
      "<|eot_id|>"
  end
  if opts.add_generation_prompt ~= false then out[#out + 1] = "<|start_header_id|>assistant<|end_header_id|>\n\n" end
  return table.concat(out)
end

local function strict_text(q) return "Problem: " .. q .. "\nMark your solution with \\boxed\nAnswer:" end

M.templates = {
  chatml = function(x, opts)
    return chatml(messages_of(x), opts)
  end,
  ["qwen25-math-cot"] = function(x, opts)
    local q = question_of(x, "qwen25-math-cot")
    return "<|im_start|>system\n" .. M.QWEN_MATH_SYSTEM .. "<|im_end|>\n<|im_start|>user\n" .. q ..
      "<|im_end|>\n" .. (opts.add_generation_prompt == false and "" or "<|im_start|>assistant\n")
  end,
  strict = function(x, opts)
    local q = question_of(x, "strict")
    return chatml({{role = "user", content = strict_text(q)}}, opts)
  end,
  llama3 = function(x, opts)
    return llama3(messages_of(x), opts)
  end,
  ["llama3-math-cot"] = function(x, opts)
    local q = question_of(x, "llama3-math-cot")
    return llama3({{role = "user", content = q}},
                  {system = M.QWEN_MATH_SYSTEM, add_generation_prompt = opts.add_generation_prompt})
  end,
  ["strict-llama3"] = function(x, opts)
    local q = question_of(x, "strict-llama3")
    return llama3({{role = "user", content = strict_text(q)}}, {add_generation_prompt = opts.add_generation_prompt})
  end,
  llama31 = function(x, opts)
    return llama3(messages_of(x), opts, true)
  end,
  ["llama31-math-cot"] = function(x, opts)
    local q = question_of(x, "llama31-math-cot")
    return llama3({{role = "user", content = q}},
                  {system = M.QWEN_MATH_SYSTEM, date = opts.date, add_generation_prompt = opts.add_generation_prompt},
                  true)
  end,
  ["strict-llama31"] = function(x, opts)
    local q = question_of(x, "strict-llama31")
    return llama3({{role = "user", content = strict_text(q)}},
                  {date = opts.date, add_generation_prompt = opts.add_generation_prompt}, true)
  end,
  plain = function(x)
    return question_of(x, "plain")
  end,
}

-- the options each template takes, and what each must be
local TAKES = {
  chatml = {system = true, add_generation_prompt = true},
  ["qwen25-math-cot"] = {add_generation_prompt = true},
  strict = {system = true, add_generation_prompt = true},
  llama3 = {system = true, add_generation_prompt = true},
  ["llama3-math-cot"] = {add_generation_prompt = true},
  ["strict-llama3"] = {add_generation_prompt = true},
  llama31 = {system = true, date = true, add_generation_prompt = true},
  ["llama31-math-cot"] = {date = true, add_generation_prompt = true},
  ["strict-llama31"] = {date = true, add_generation_prompt = true},
  plain = {},
}
local OPTION_TYPE = {
  system = function(v) return type(v) == "string" or v == false, "a string or false" end,
  date = function(v) return type(v) == "string", 'a string (like "26 Jul 2024")' end,
  add_generation_prompt = function(v) return type(v) == "boolean", "true or false" end,
}

-- chat.apply's work; errors are raised at `level` (the caller's caller of apply or tok:chat)
function M._apply(name, x, opts, level)
  if type(name) ~= "string" then error("confit.chat: template name must be a string, got " .. type(name), level) end
  local f = M.templates[name]
  if not f then
    local names = {}
    for k in pairs(M.templates) do names[#names + 1] = k end
    table.sort(names)
    error(string.format("confit.chat: unknown template %q (known: %s)", name, table.concat(names, ", ")), level)
  end
  if opts ~= nil and type(opts) ~= "table" then error("confit.chat: opts must be a table, got " .. type(opts), level) end
  opts = opts or {}
  local takes = TAKES[name] or {}
  for k, v in pairs(opts) do
    if not takes[k] then
      local known = {}
      for o in pairs(takes) do known[#known + 1] = o end
      table.sort(known)
      error(string.format("confit.chat: template %q takes no option %s (it takes: %s)", name, tostring(k),
                          #known > 0 and table.concat(known, ", ") or "none"), level)
    end
    local check = OPTION_TYPE[k]
    local ok, want = check(v)
    if not ok then
      error(string.format("confit.chat: template %q: opts.%s must be %s, got %s", name, k, want, type(v)), level)
    end
  end
  local ok, res = pcall(f, x, opts)
  if not ok then
    if getmetatable(res) == BAD then error(string.format("confit.chat: template %q: %s", name, res.msg), level) end
    error(res, 0)
  end
  return res
end

function M.apply(name, x, opts)
  local s = M._apply(name, x, opts, 3)
  return s
end

-- The chat format of a model folder, from its tokenizer_config.json's chat_template (a string, or
-- a list of {name, template} of which "default" or the first counts).
function M.family(dir)
  if type(dir) ~= "string" then fail("family: dir must be a string, got " .. type(dir)) end
  local path = dir .. "/tokenizer_config.json"
  local cfg, err = require("confit.jsonio").read_json(path)
  -- a third result, true: the file is there but broken (callers refuse rather than fall back)
  if cfg == nil then return nil, tostring(err), require("confit.cli").exists(path) end
  if type(cfg) ~= "table" then return nil, path .. ": not a JSON object", true end
  local t = cfg.chat_template
  if type(t) == "table" then
    local pick = t[1]
    for _, e in ipairs(t) do if type(e) == "table" and e.name == "default" then pick = e end end
    t = type(pick) == "table" and pick.template or nil
  end
  if type(t) ~= "string" then return nil, path .. " has no chat_template" end
  if t:find("<|im_start|>", 1, true) then return "chatml" end
  if t:find("<|start_header_id|>", 1, true) then
    return t:find("Cutting Knowledge Date", 1, true) and "llama31" or "llama3"
  end
  return nil, path .. ": chat_template is neither ChatML nor Llama 3's"
end

-- The special tokens a template writes (a tokenizer must have them as special tokens).
local CHATML_MARKS = {"<|im_start|>", "<|im_end|>"}
local LLAMA_MARKS = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
local MARKS = {chatml = CHATML_MARKS, ["qwen25-math-cot"] = CHATML_MARKS, strict = CHATML_MARKS,
               llama3 = LLAMA_MARKS, ["llama3-math-cot"] = LLAMA_MARKS, ["strict-llama3"] = LLAMA_MARKS,
               llama31 = LLAMA_MARKS, ["llama31-math-cot"] = LLAMA_MARKS, ["strict-llama31"] = LLAMA_MARKS}
function M.markers(name) return MARKS[name] or {} end

-- The first marker template `name` writes that tokenizer tok lacks as a special token (it would be
-- spelled out in ordinary tokens), or nil. tok.special: content -> id (confit.tokenizer's).
function M.missing_marker(name, tok)
  local special = type(tok) == "table" and tok.special
  if type(special) ~= "table" then return nil end
  for _, mark in ipairs(MARKS[name] or {}) do
    if not special[mark] then return mark end
  end
  return nil
end

local DEFAULTS = {chatml = {qwen = "qwen25-math-cot", strict = "strict"},
                  llama3 = {qwen = "llama3-math-cot", strict = "strict-llama3"},
                  llama31 = {qwen = "llama31-math-cot", strict = "strict-llama31"}}

function M.default_template(mode, family)
  if mode ~= "qwen" and mode ~= "strict" then
    fail(string.format("default_template: mode must be \"qwen\" or \"strict\", got %s", tostring(mode)))
  end
  return (DEFAULTS[family] or DEFAULTS.chatml)[mode]
end

return M
