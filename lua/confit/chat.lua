-- confit.chat: chat templates as plain Lua functions, producing the prompt STRING.
--
--   chat.apply(name, messages_or_question [, opts]) -> string
--
-- `messages_or_question` is either a question string (one user turn) or a list of
-- {role = "system"|"user"|"assistant"|..., content = string}. opts:
--   system                 system message for templates that use one; false = no system turn
--   add_generation_prompt  append the opening of the assistant turn (default true)
--
-- Templates:
--   chatml           ChatML, `<|im_start|>role\ncontent<|im_end|>\n` per turn; when the messages
--                    hold no system turn, Qwen2.5-Math's default system message is used
--   qwen25-math-cot  the byte-exact prompt of the Qwen2.5-Math evaluation harness (EVAL.md
--                    "qwen" mode): ChatML with the default system message and one user turn
--   strict           EVAL.md "strict" mode: the user turn is
--                    `Problem: {question}\nMark your solution with \boxed\nAnswer:` in ChatML
--   plain            the question as is
local M = {}

M.QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

local function fail(msg) error("confit.chat: " .. msg, 3) end

-- Normalise the input to a list of messages, checking every field.
local function messages_of(x)
  if type(x) == "string" then return {{role = "user", content = x}} end
  if type(x) ~= "table" then fail("expected a question string or a list of messages, got " .. type(x)) end
  if #x == 0 then fail("the message list is empty") end
  for i, m in ipairs(x) do
    if type(m) ~= "table" then fail(string.format("message %d is a %s, not a table", i, type(m))) end
    if type(m.role) ~= "string" or m.role == "" then
      fail(string.format("message %d has no role (a non-empty string)", i))
    end
    if type(m.content) ~= "string" then
      fail(string.format("message %d (%s) has no content string", i, m.role))
    end
  end
  return x
end

-- The single question of a one-turn input (a string, or one user message).
local function question_of(x, name)
  local msgs = messages_of(x)
  if #msgs ~= 1 or msgs[1].role ~= "user" then
    fail(string.format("template %q takes a question or one user message, got %d messages", name, #msgs))
  end
  return msgs[1].content
end

local function chatml(msgs, opts)
  local out = {}
  local system = opts.system
  if system == nil then system = M.QWEN_MATH_SYSTEM end
  if system ~= false and msgs[1].role ~= "system" then
    if type(system) ~= "string" then fail("opts.system must be a string or false") end
    out[#out + 1] = "<|im_start|>system\n" .. system .. "<|im_end|>\n"
  end
  for _, m in ipairs(msgs) do
    out[#out + 1] = "<|im_start|>" .. m.role .. "\n" .. m.content .. "<|im_end|>\n"
  end
  if opts.add_generation_prompt ~= false then out[#out + 1] = "<|im_start|>assistant\n" end
  return table.concat(out)
end

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
    return chatml({{role = "user", content = "Problem: " .. q .. "\nMark your solution with \\boxed\nAnswer:"}}, opts)
  end,
  plain = function(x)
    return question_of(x, "plain")
  end,
}

function M.apply(name, x, opts)
  if type(name) ~= "string" then fail("template name must be a string, got " .. type(name)) end
  local f = M.templates[name]
  if not f then
    local names = {}
    for k in pairs(M.templates) do names[#names + 1] = k end
    table.sort(names)
    fail(string.format("unknown template %q (known: %s)", name, table.concat(names, ", ")))
  end
  if opts ~= nil and type(opts) ~= "table" then fail("opts must be a table, got " .. type(opts)) end
  return f(x, opts or {})
end

return M
