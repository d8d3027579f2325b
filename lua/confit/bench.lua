-- confit.bench: loaders for the math benchmarks (aime24, amc23, math500, minerva_math,
-- olympiadbench, gsm8k) and for any JSONL or JSON-array file of questions and answers.
--
--   local bench = require "confit.bench"
--   local items = bench.load("math500")                       -- ../shared/data/benchmarks/
--   local items = bench.load("math500", {dir = "/data/bench", limit = 50})
--   local items = bench.load("my.jsonl", {question = "q", answer = "a"})
--   -- items[i] = {id = ..., question = "...", answer = "...", record = <decoded JSON object>}
--
-- A known name reads <dir>/<name>.jsonl (dir defaults to bench.default_dir, the folder
-- ../shared/data/benchmarks beside the project: found from this file's place, lua/confit/, so
-- from any current folder; the project ships no benchmark data) and
-- takes the question field and reference answer of ../shared/data/README.md (the reference via
-- confit.grade.reference). Anything else is a path: a file whose first non-blank character is
-- "[" is a JSON array of objects, otherwise one JSON object per line (blank lines skipped);
-- opts.question / opts.answer name the fields (defaults "question" and "answer"), numbers in
-- the answer field become text ("27.0" -> "27").
--
-- Errors follow DESIGN.md: a file that cannot be opened is an environmental failure and comes
-- back as nil, message; malformed JSON, a record that is not an object, and a question or answer
-- that is missing, of the wrong type or (the answer) empty are data errors and raise, naming the file and the line (JSONL) or the element
-- (JSON array).
local jsonio = require "confit.jsonio"
local grade = require "confit.grade"

local bench = {}

bench.default_dir = require("confit.cli").project_root() .. "/../shared/data/benchmarks"

-- name -> question field; the reference answer comes from grade.reference(name, record).
local KNOWN = {
  aime24 = "problem", amc23 = "problem", math500 = "problem", minerva_math = "problem",
  olympiadbench = "question", gsm8k = "question",
}
bench.names = {"aime24", "amc23", "math500", "minerva_math", "olympiadbench", "gsm8k"}

--- The field a benchmark's records hold the question in ("problem", "question"), or nil for a
--- name that is not one of bench.names.
function bench.question_field(name) return KNOWN[name] end

--- The benchmark a file is named after ("data/gsm8k.jsonl": "gsm8k") and its folder ("data"),
--- or nil: the recipes read such a file as that benchmark (its question field, its reference
--- answers: gsm8k's number after "####", not the worked solution) unless told its answer field.
function bench.named_after(path)
  if type(path) ~= "string" then error("bench.named_after: expected a path, got " .. type(path), 2) end
  local name = (path:match("([^/]+)$") or ""):match("^(.+)%.jsonl$")
  if not (name and KNOWN[name]) then return nil end
  return name, path:match("^(.*)/[^/]*$") or "."
end

local function text_of(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
    return tostring(v)
  end
  return nil
end

-- A whole-number id is an integer (jsonio decodes one so; math.tointeger keeps that true of a
-- float), any other number or a string is kept as it is.
local function id_of(rec, fallback)
  for _, k in ipairs({"id", "idx", "unique_id"}) do
    local v = rec[k]
    if type(v) == "number" then return math.tointeger(v) or v end
    if type(v) == "string" then return v end
  end
  return fallback
end

-- A FIFO, a folder (or a link to one) is refused before any open: cli.not_regular.
local not_regular = require("confit.cli").not_regular

local function read_all(path)
  local why = not_regular(path)
  if why then return nil, "bench.load: cannot read '" .. path .. "': " .. why end
  local f, err = io.open(path, "rb")
  if not f then return nil, "bench.load: cannot open '" .. path .. "': " .. tostring(err) end
  local data, rerr = f:read("a")
  f:close()
  if not data then return nil, "bench.load: cannot read '" .. path .. "': " .. tostring(rerr) end
  return data
end

-- Decoded records with their locations: {rec, where} where where is "file:line" or
-- "file: element N". Raises "file:line: malformed JSON: ..." (level 0). JSON lines are read by
-- jsonio.decode_jsonl (its byte order mark and UTF-8 rules), null lines kept for item_from to name.
local function decode_records(path, data)
  local out = {}
  local uerr = jsonio.utf8_problem(data, path)
  if uerr then error(uerr, 0) end
  if data:gsub("^\239\187\191", ""):match("^%s*%[") then -- (a UTF-8 byte order mark is not part of the JSON)
    local arr, err = jsonio.decode(data)
    if arr == nil then error(string.format("%s: malformed JSON array: %s", path, (err:gsub("^jsonio: ", ""))), 0) end
    for i, rec in ipairs(arr) do out[#out + 1] = {rec, string.format("%s: element %d", path, i)} end
    return out
  end
  local recs, err, where = jsonio.decode_jsonl(data, path, {nulls = true})
  if not recs then
    if where and where.decode then error(string.format("%s:%d: malformed JSON: %s", path, where.lineno, where.decode), 0) end
    error(err, 0)
  end
  for i, rec in ipairs(recs) do out[i] = {rec, string.format("%s:%d", path, where.linenos[i])} end
  return out
end

--- The records of a JSON-lines file or of a JSON array (of objects, as bench.load reads them),
--- each {rec, where} (where: "file:line" or "file: element N"), or nil and a message: the file
--- cannot be read, or "file:line: malformed JSON: ...".
function bench.records(path)
  local data, err = read_all(path)
  if not data then return nil, err end
  local ok, recs = pcall(decode_records, path, data)
  if not ok then return nil, recs end
  return recs
end

-- where each benchmark's reference answer is read (grade.reference), for the message of a record
-- without one (a gsm8k answer of 18, not "... #### 18", said only "missing answer" before the
-- twenty-second session)
local REFERENCE_FROM = {
  gsm8k = "the text after the last '####' of field 'answer'",
  math500 = "the last \\boxed{} of field 'solution', else field 'answer'",
  minerva_math = "the last \\boxed{} of field 'solution'",
  olympiadbench = "field 'final_answer' (a string or a list of them)",
  aime24 = "field 'answer'", amc23 = "field 'answer'",
}

local function item_from(rec, where, n, qfield, answer_of, afield)
  -- (an array decodes to a table too: it was "missing question field" before the twenty-second
  -- session, where rlsc's reader says what it is)
  if type(rec) ~= "table" or rec[1] ~= nil then
    error(string.format("bench.load: %s: expected a JSON object, got %s", where,
                        rec == jsonio.null and "null" or type(rec) == "table" and "an array" or type(rec)), 0)
  end
  local q = rec[qfield]
  if q == nil then
    error(string.format("bench.load: %s: missing question field '%s'", where, qfield), 0)
  elseif type(q) ~= "string" then
    error(string.format("bench.load: %s: question field '%s' is %s, expected a string", where, qfield,
                        q == jsonio.null and "null" or ("a JSON " .. (type(q) == "table" and "array or object" or type(q)))), 0)
  end
  -- a blank question: evaluate.run refused it later, after the caller had written its files
  if not q:find("%S") then
    error(string.format("bench.load: %s: empty question (%s)", where, qfield), 0)
  end
  local a, kind = answer_of(rec)
  if a == nil then
    error(string.format("bench.load: %s: %s (%s)", where, kind and ("the answer is " .. kind .. ", not text or a number")
                        or "missing answer", afield), 0)
  end
  -- every problem would be graded wrong against an empty reference
  if not a:find("%S") then
    error(string.format("bench.load: %s: empty answer (%s)", where, afield), 0)
  end
  return {id = id_of(rec, n), question = q, answer = a, record = rec, where = where}
end

--- The first repeated id of a list of items (bench.load's): the positions i < j of the first
--- item whose id an earlier one has and of that earlier one (i, j), or nil when the ids are unique.
function bench.repeated_id(items)
  local first = {}
  for j, it in ipairs(items) do
    local k = tostring(it.id)
    if first[k] then return first[k], j end
    first[k] = j
  end
  return nil
end

--- A data file's items whose ids repeat are numbered by position (1, 2, ... over the whole file):
--- returns true when it did so, with the note the recipes print (eval.lua and rlsc.lua read a
--- --data file so: records are resumed by id, docs/EVALUATION.md); false when the ids are unique.
function bench.number_repeated(items, path)
  if not bench.repeated_id(items) then return false end
  for i, it in ipairs(items) do it.id = i end
  return true, ("ids in %s repeat; using line positions as ids"):format(path)
end

-- Load a benchmark by name or a file by path. Returns the list of items, or nil, message when
-- the file cannot be opened or is no regular file (a folder, a FIFO: refused before any open).
local OPTIONS = {answer = true, dir = true, limit = true, question = true}

function bench.load(name_or_path, opts)
  opts = opts or {}
  if type(name_or_path) ~= "string" then
    error("bench.load: expected a benchmark name or a path, got " .. type(name_or_path), 2)
  end
  if type(opts) ~= "table" then error("bench.load: opts must be a table such as {dir = DIR, limit = 50}, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(("bench.load: unknown option %s (options: answer, dir, limit, question)"):format(tostring(k)), 2) end
  end
  for _, k in ipairs({"dir", "question", "answer"}) do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      error(("bench.load: opts.%s must be a string, got %s"):format(k, type(opts[k])), 2)
    end
  end
  local path, qfield, answer_of, afield
  local known = KNOWN[name_or_path]
  if known then
    path = (opts.dir or bench.default_dir) .. "/" .. name_or_path .. ".jsonl"
    qfield = opts.question or known
    answer_of = function(rec) return grade.reference(name_or_path, rec) end
    afield = "reference of " .. name_or_path .. ": " .. (REFERENCE_FROM[name_or_path] or "its reference field")
  else
    path = name_or_path
    qfield = opts.question or "question"
    local af = opts.answer or "answer"
    answer_of = function(rec)
      local v = rec[af]
      if v == nil then return nil end
      if v == jsonio.null then return nil, "null" end
      return text_of(v), type(v) == "table" and "a JSON array or object" or ("a " .. type(v))
    end
    afield = "field '" .. af .. "'"
  end
  if opts.limit ~= nil and (math.type(opts.limit) ~= "integer" or opts.limit < 0) then
    local v = opts.limit
    error("bench.load: opts.limit must be an integer >= 0, got " .. require("confit.cli").show(v), 2)
  end
  local data, err = read_all(path)
  if not data then
    -- a bare word that is no file: most likely a misspelt benchmark name
    if not known and not path:find("[/.]") then
      err = err .. " (not a file, nor a benchmark: " .. table.concat(bench.names, ", ") .. ")"
      -- eval.lua's --bench toy is the toy world, which is no file
      if path:match("^toy") then
        err = err .. "; the toy world's questions come from require(\"confit.toy\").world(task):questions(split, n, seed)"
      end
    end
    if known and not opts.dir then err = err .. " (the default folder; give another as bench.load(name, {dir = DIR}))" end
    return nil, err
  end
  local ok, recs = pcall(decode_records, path, data)
  if not ok then error("bench.load: " .. recs, 0) end
  local items = {}
  for n, r in ipairs(recs) do
    if opts.limit and #items >= opts.limit then break end
    items[#items + 1] = item_from(r[1], r[2], n, qfield, answer_of, afield)
  end
  return items
end

return bench
