-- confit.pretty: a Lua value as readable text, for the REPL (which prints a table result through
-- pretty.format; a tensor or a table with __tostring keeps its own).
--
--   pretty.format({2, 3})                    --> {2, 3}
--   pretty.format({loss = 0.5, tag = "a"})   --> {loss = 0.5, tag = "a"}
--
-- A list prints its items in order, then the other keys sorted (numbers, then strings, then the
-- rest) as `key = value` or `[key] = value`; strings inside a table are quoted. Bounds keep the
-- text small: nested tables to DEPTH levels (deeper ones print `{...}`), LIMIT entries a table
-- and BUDGET entries in all (then `... (N entries)`, N the table's count); a table inside itself
-- prints `<cycle>`. A value whose tostring spans lines (a tensor) is one line inside a table, cut
-- at VALUE_MAX characters. One line when it fits in WIDTH characters or is a list of plain
-- values, else one top-level entry a line. Entries are read with next and rawget: no __index,
-- __pairs or __len runs.
local M = {}

-- local references: a REPL user may set a global named table or string
local sort, concat, insert, fmt = table.sort, table.concat, table.insert, string.format
local open, getinfo = io.open, debug and debug.getinfo
local pcall, require = pcall, require
local type, tostring, next, rawget = type, tostring, next, rawget
local getmetatable = debug and debug.getmetatable or getmetatable -- past a __metatable field
local math_type = math.type

local DEPTH, LIMIT, BUDGET, WIDTH, VALUE_MAX = 3, 50, 1000, 80, 60

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat "
          .. "return then true until while"):gmatch("%a+") do KEYWORDS[w] = true end

local RANK = {number = 1, string = 2, boolean = 3}

local function key_before(a, b)
  local ta, tb = type(a), type(b)
  local ra, rb = RANK[ta] or 4, RANK[tb] or 4
  if ra ~= rb then return ra < rb end
  if ta == "number" or ta == "string" then return a < b end
  if ta == "boolean" then return not a and b end
  return tostring(a) < tostring(b)
end

local function quote(s) return (fmt("%q", s):gsub("\\\n", "\\n")) end

local function scalar(v)
  if type(v) == "string" then return quote(v) end
  local s = tostring(v)
  if s:find("\n", 1, true) then -- a tensor: its lines as one, cut short between two words
    s = s:gsub("%s+", " ")
    if #s > VALUE_MAX then
      local cut = s:sub(1, VALUE_MAX - 4):match("^(.*%S) ") or s:sub(1, VALUE_MAX - 4)
      s = cut:find("%.%.%.$") and cut or cut .. " ..."
    end
  end
  return s
end

local function key_text(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  return "[" .. (type(k) == "string" and quote(k) or tostring(k)) .. "]"
end

local value

-- The entries of table t as a list of strings, its count of entries and its list length.
local function entries(t, depth, state)
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = {}
  for k in next, t do
    if not (math_type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  sort(keys, key_before)
  local total, out = n + #keys, {}
  state.path[t] = true
  for i = 1, total do
    if i > LIMIT or state.left <= 0 then
      out[#out + 1] = fmt("... (%d entries)", total)
      break
    end
    state.left = state.left - 1
    if i <= n then out[#out + 1] = value(rawget(t, i), depth + 1, state)
    else
      local k = keys[i - n]
      out[#out + 1] = key_text(k) .. " = " .. value(rawget(t, k), depth + 1, state)
    end
  end
  state.path[t] = nil
  return out, total, n
end

local function plain_table(v)
  local mt = type(v) == "table" and getmetatable(v)
  return type(v) == "table" and not (mt and rawget(mt, "__tostring") ~= nil)
end

function value(v, depth, state)
  if not plain_table(v) then return scalar(v) end
  if next(v) == nil then return "{}" end
  if state.path[v] then return "<cycle>" end
  if depth > DEPTH then return "{...}" end
  return "{" .. concat((entries(v, depth, state)), ", ") .. "}"
end

--- pretty.format(v) -> string: a table without __tostring as readable text (see the top of this
--- file), anything else as tostring(v). The table is only read: no code of its metatables runs
--- but a nested value's __tostring.
function M.format(v)
  if not plain_table(v) then return tostring(v) end
  local state = {path = {}, left = BUDGET}
  local line = value(v, 1, state)
  if #line <= WIDTH then return line end
  state = {path = {}, left = BUDGET}
  local items, total, n = entries(v, 1, state)
  local flat = total == n -- a list of numbers and strings stays one line
  for i = 1, n < LIMIT and n or LIMIT do flat = flat and not plain_table(rawget(v, i)) end
  if total < 2 or flat then return line end
  return "{\n  " .. concat(items, ",\n  ") .. "\n}"
end

--- pretty.source_doc(name) -> string | nil: for a function of a confit Lua module that has no
--- one-line doc ("train.prune_checkpoints", "confit.cli.exists"), where it is defined
--- ("/.../lua/confit/train.lua:275") and then the comment right above its definition, one line
--- each without the "--" marks (none when there is no such comment); nil for any other name, a C
--- function or a file that cannot be read. The REPL's `:help` shows it after "no help for ...".
--- Reads the module's file; never raises.
function M.source_doc(name)
  if type(name) ~= "string" then return nil end
  local mod, field = name:gsub("^confit%.", ""):match("^([%a_][%w_]*)%.([%a_][%w_]*)$")
  if not mod then return nil end
  local ok, t = pcall(require, "confit." .. mod)
  local f = ok and type(t) == "table" and rawget(t, field)
  if type(f) ~= "function" or not getinfo then return nil end
  local info = getinfo(f, "S")
  local path = info.source:match("^@(.+)$")
  if info.what ~= "Lua" or not path or info.linedefined < 1 then return nil end
  local file = open(path, "r")
  if not file then return nil end
  local lines, n = {}, 0
  for l in file:lines() do
    n = n + 1
    if n >= info.linedefined then break end
    lines[n] = l
  end
  file:close()
  local doc = {}
  for i = info.linedefined - 1, 1, -1 do
    local text = lines[i] and lines[i]:match("^%s*%-%-+ ?(.*)$")
    if not text or lines[i]:match("^%s*%-%-%[") then break end -- a block comment ends the search
    insert(doc, 1, "  " .. text)
  end
  return fmt("%s:%d", path, info.linedefined) .. (#doc > 0 and "\n" .. concat(doc, "\n") or "")
end

return M
