-- Tests of confit.bench: generic JSONL / JSON-array loading, error messages that name the file
-- and line, and the six benchmarks of ../shared/data/benchmarks (skipped when absent).
local H = dofile("tests/lua/harness.lua")
local bench = require "confit.bench"

local function write_tmp(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

H.case("JSONL with custom field names", function()
  local p = write_tmp('{"q": "1+1?", "a": 2}\n\n{"q": "2+2?", "a": "4", "id": "x7"}\n')
  local items = assert(bench.load(p, {question = "q", answer = "a"}))
  os.remove(p)
  H.eq(#items, 2)
  H.eq(items[1].question, "1+1?"); H.eq(items[1].answer, "2"); H.eq(items[1].id, 1)
  H.eq(items[2].answer, "4"); H.eq(items[2].id, "x7")
  H.eq(items[2].record.q, "2+2?")
end)

H.case("JSON array with default field names and limit", function()
  local p = write_tmp('  [{"question": "a", "answer": 27.0}, {"question": "b", "answer": 0.25},\n'
                      .. '{"question": "c", "answer": "x"}]')
  local items = assert(bench.load(p, {limit = 2}))
  os.remove(p)
  H.eq(#items, 2)
  H.eq(items[1].answer, "27"); H.eq(items[2].answer, "0.25")
end)

H.case("malformed JSON names file and line", function()
  local p = write_tmp('{"question": "a", "answer": "1"}\n{"question": "b", "answer": }\n')
  H.raises(function() bench.load(p) end, p .. ":2", "malformed JSON")
  os.remove(p)
end)

H.case("missing fields name file, line and field", function()
  local p = write_tmp('{"question": "a", "answer": "1"}\n{"question": "b"}\n')
  H.raises(function() bench.load(p) end, p .. ":2", "missing answer", "'answer'")
  os.remove(p)
  p = write_tmp('{"question": null, "answer": "1"}\n')
  H.raises(function() bench.load(p) end, p .. ":1", "question field 'question' is null, expected a string")
  os.remove(p)
  -- a field of the wrong type is named so (it was "missing"), an empty answer refused (every
  -- problem graded wrong against it)
  for _, c in ipairs({{'{"question": ["a"], "answer": "1"}', "question field 'question' is a JSON array or object"},
                      {'{"question": "a", "answer": {"x": 1}}', "the answer is a JSON array or object, not text or a number"},
                      {'{"question": "a", "answer": true}', "the answer is a boolean"},
                      {'{"question": "a", "answer": null}', "the answer is null"},
                      {'{"question": "a", "answer": " "}', "empty answer (field 'answer')"}}) do
    p = write_tmp(c[1] .. "\n")
    H.raises(function() bench.load(p) end, p .. ":1", c[2])
    os.remove(p)
  end
  p = write_tmp('[{"question": "a", "answer": "1"}, 5]')
  H.raises(function() bench.load(p) end, "element 2", "expected a JSON object")
  os.remove(p)
end)

H.case("missing file comes back as nil, message", function()
  local items, err = bench.load("/nonexistent/dir/file.jsonl")
  H.eq(items, nil)
  H.ok(err:find("/nonexistent/dir/file.jsonl", 1, true), err)
  items, err = bench.load("math500", {dir = "/nonexistent"})
  H.eq(items, nil)
  H.ok(err:find("/nonexistent/math500.jsonl", 1, true), err)
end)

H.case("a byte order mark is skipped; items say where they come from", function()
  local p = write_tmp('\239\187\191{"question": "1+1?", "answer": 2}\n\n{"question": "2+2?", "answer": "4"}\n')
  local items = assert(bench.load(p))
  H.eq(#items, 2)
  H.eq(items[1].answer, "2")
  H.eq(items[1].where, p .. ":1")
  H.eq(items[2].where, p .. ":3")
  os.remove(p)
  p = write_tmp('\239\187\191[{"question": "a", "answer": 1}]')
  items = assert(bench.load(p))
  H.eq(items[1].where, p .. ": element 1")
  os.remove(p)
  -- two files joined with cat: the second one's mark is inside the file
  p = write_tmp('{"question": "a", "answer": 1}\n\239\187\191{"question": "b", "answer": 2}\n')
  local ok, err = pcall(bench.load, p)
  H.ok(not ok and err:find(p .. ":2: a byte order mark inside the file", 1, true), tostring(err))
  os.remove(p)
end)

H.case("null records, NaN and a folder are named", function()
  local p = write_tmp('{"question": "1+1?", "answer": 2}\nnull\n')
  local ok, err = pcall(bench.load, p)
  H.ok(not ok and err:find(p .. ":2: expected a JSON object, got null", 1, true), tostring(err))
  os.remove(p)
  p = write_tmp('{"question": "1+1?", "answer": NaN}\n')
  ok, err = pcall(bench.load, p)
  H.ok(not ok and err:find(p .. ":1: malformed JSON", 1, true) and err:find("NaN", 1, true), tostring(err))
  os.remove(p)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  local items, derr = bench.load(dir)
  H.ok(items == nil and derr:find("cannot read '" .. dir .. "': not a regular file (a folder)", 1, true), tostring(derr))
  os.execute("rmdir " .. dir)
end)

-- (twenty-eighth session) bench.load opened its file with io.open: a FIFO blocked until a writer
-- came (a folder failed only at the read). Refused before any open, a link judged by its target;
-- run in a child under `timeout`, so that a regression fails here instead of hanging the suite.
H.case("a FIFO (or a link to one) is refused without being opened, a link to a file still read", function()
  local d = H.tmpdir()
  local q = require("confit.cli").shell_quote
  H.mkfifo(d .. "/b.jsonl")
  H.write(d .. "/ok.jsonl", '{"question": "1+1?", "answer": 2}\n')
  assert(os.execute("ln -s b.jsonl " .. q(d .. "/to-fifo.jsonl") .. " && ln -s ok.jsonl " .. q(d .. "/to-file.jsonl")
                    .. " && ln -s . " .. q(d .. "/to-dir")))
  local script = ([[
    local bench = require "confit.bench"
    for _, name in ipairs({"b.jsonl", "to-fifo.jsonl", "to-dir", "to-file.jsonl"}) do
      local items, err = bench.load(%q .. "/" .. name)
      io.write(name, " ", items and ("ITEMS " .. #items) or ("ERR " .. tostring(err)), "\n")
    end
  ]]):format(d)
  local out, _, rc = H.run_limited(script, 20)
  H.eq(rc, 0, "bench.load returned (124: blocked on the FIFO): " .. out)
  for _, want in ipairs({"b.jsonl ERR bench.load: cannot read '" .. d .. "/b.jsonl': not a regular file (a FIFO, socket or device)",
                         "to-fifo.jsonl ERR bench.load: cannot read '" .. d .. "/to-fifo.jsonl': not a regular file (a FIFO",
                         "to-dir ERR bench.load: cannot read '" .. d .. "/to-dir': not a regular file (a folder)",
                         "to-file.jsonl ITEMS 1"}) do
    H.ok(out:find(want, 1, true), "output lacks " .. want .. ": " .. out)
  end
  local items, err = bench.load(d .. "/missing.jsonl")
  H.ok(items == nil and err:find("cannot open '" .. d .. "/missing.jsonl': ", 1, true), tostring(err))
end)

-- (twenty-eighth session) bench kept its own copy of jsonio.read_jsonl's loop and its byte order
-- mark check; it reads JSON lines through jsonio.decode_jsonl now, wording its own messages
H.case("JSON lines are read by jsonio.decode_jsonl; a JSON array is not", function()
  local jsonio = require "confit.jsonio"
  local real, calls = jsonio.decode_jsonl, 0
  jsonio.decode_jsonl = function(...) calls = calls + 1; return real(...) end
  local p = write_tmp('{"question": "a", "answer": 1}\n')
  local ok, items = pcall(bench.load, p)
  local q = write_tmp('\239\187\191[{"question": "a", "answer": 1}]')
  local ok2, items2 = pcall(bench.load, q)
  local ok3, recs = pcall(bench.records, p)
  jsonio.decode_jsonl = real
  os.remove(p); os.remove(q)
  H.ok(ok and ok2 and ok3, tostring(ok and (ok2 and recs or items2) or items))
  H.eq(calls, 2, "bench.load and bench.records of the JSON-lines file, not the array")
  H.eq(items[1].where, p .. ":1"); H.eq(items2[1].where, q .. ": element 1"); H.eq(recs[1][2], p .. ":1")
end)

-- (twenty-ninth session, mutation testing) one record of each benchmark in its real layout
-- (../shared/data/README.md), read without the data: the question from its own field (aime24 and
-- amc23 also carry a "question" field), the reference answer, and the id an integer where the file
-- has a whole number (resumed runs match records by id; 60.0 is not 60 once written)
H.case("each benchmark's layout: its question field, reference answer and id", function()
  local d = H.tmpdir()
  local RECS = {
    aime24 = {'{"id": 60, "problem": "P aime", "solution": "s", "answer": "025", "url": "u", "question": "Q aime"}',
              "P aime", "025", 60},
    amc23 = {'{"id": 0, "problem": "P amc", "answer": 27.0, "url": "u", "question": "Q amc"}', "P amc", "27", 0},
    math500 = {'{"problem": "P math", "solution": "So $\\\\boxed{2}$, then $\\\\boxed{\\\\frac{1}{2}}$.", '
               .. '"answer": "\\\\frac12", "subject": "Algebra", "level": 2, "unique_id": "test/algebra/1.json"}',
               "P math", "\\frac{1}{2}", "test/algebra/1.json"},
    minerva_math = {'{"problem": "P minerva", "solution": "$\\\\boxed{1.6}$ arcsec", "type": "t", "idx": 3}',
                    "P minerva", "1.6", 3},
    olympiadbench = {'{"id": 1606, "subfield": "c", "context": null, "question": "Q oly", "solution": ["s"], '
                     .. '"final_answer": ["$x=3$", "$4$"], "is_multiple_answer": true, "unit": null}', "Q oly", "x=3", 1606},
    gsm8k = {'{"question": "Q gsm", "answer": "16 - 3 = <<16-3=13>>13\\n#### 18", "idx": 0}', "Q gsm", "18", 0},
  }
  for _, name in ipairs(bench.names) do
    local r = RECS[name]
    H.write(d .. "/" .. name .. ".jsonl", r[1] .. "\n")
    local items = assert(bench.load(name, {dir = d}))
    H.eq(#items, 1, name)
    H.eq(items[1].question, r[2], name .. " question")
    H.eq(items[1].answer, r[3], name .. " reference")
    H.eq(items[1].id, r[4], name .. " id")
    H.eq(math.type(items[1].id), math.type(r[4]), name .. " id kind")
    H.eq(items[1].where, d .. "/" .. name .. ".jsonl:1", name .. " where")
  end
  H.eq(#assert(bench.load("gsm8k", {dir = d, limit = 0})), 0, "limit 0: no items")
end)

-- (twenty-ninth session) the messages whole: the file and line lead, no place inside the library
-- ahead of them; a missing path is not sent to the default folder; argument errors name the caller
H.case("messages: whole text, and argument errors point at the caller", function()
  local d = H.tmpdir()
  local function load_err(text)
    local p = d .. "/f.jsonl"
    H.write(p, text)
    local ok, err = pcall(bench.load, p)
    H.ok(not ok, "refused: " .. text)
    return tostring(err), p
  end
  local err, p = load_err('{"question": "a", "answer": "1"}\n{"question": "b", "answer": }\n')
  H.eq(err:sub(1, #("bench.load: " .. p .. ":2: malformed JSON: ")), "bench.load: " .. p .. ":2: malformed JSON: ", err)
  err, p = load_err('{"question": "a", "answer": "1"}\nnull\n')
  H.eq(err, "bench.load: " .. p .. ":2: expected a JSON object, got null")
  err, p = load_err('{"problem": "a", "answer": "1"}\n')
  H.eq(err, "bench.load: " .. p .. ":1: missing question field 'question'")
  -- (numbers past 2^63 have no integer form for "%d")
  -- (a fractional id is kept as it is)
  H.write(d .. "/big.json", '[{"question": "a", "answer": 1e20, "id": 2.5}]')
  local big = assert(bench.load(d .. "/big.json"))[1]
  H.eq(big.answer, "1e+20"); H.eq(big.id, 2.5)
  local missing = d .. "/none.jsonl"
  local want = "bench.load: cannot open '" .. missing .. "': " .. missing .. ": No such file or directory"
  local items, lerr = bench.load(missing)
  H.eq(items, nil); H.eq(lerr, want)
  local recs, rerr = bench.records(missing)
  H.eq(recs, nil); H.eq(rerr, want)
  -- (called from here, under pcall: a level too far names no place at all)
  local function call(f, ...) local r = f(...); return r end
  local here = debug.getinfo(1, "S").short_src   -- as error() names this file (ctest gives a full path)
  for _, c in ipairs({{{bench.load, "gsm8k", {limt = 3}}, "bench.load: unknown option limt"},
                      {{bench.load, "gsm8k", {limit = -1}}, "bench.load: opts.limit must be an integer >= 0, got -1"},
                      {{bench.named_after, 5}, "bench.named_after: expected a path, got number"}}) do
    local ok, e = pcall(call, table.unpack(c[1]))
    e = tostring(e)
    H.ok(not ok and e:sub(1, #here + 1) == here .. ":" and e:match("^:%d+: ", #here + 1) and e:find(c[2], 1, true), e)
  end
end)

H.case("bad argument raises", function()
  H.raises(function() bench.load(nil) end, "bench.load", "name or a path")
end)

local ROWS = {aime24 = 30, amc23 = 40, math500 = 500, minerva_math = 272, olympiadbench = 675,
              gsm8k = 1319}
if not H.shared("benchmarks/math500.jsonl") then
  H.skip("benchmark files", "../shared/data/benchmarks is absent")
else
  for _, name in ipairs(bench.names) do
    H.case("benchmark " .. name, function()
      local items = assert(bench.load(name))
      H.eq(#items, ROWS[name], "rows")
      for i, it in ipairs(items) do
        H.ok(type(it.question) == "string" and #it.question > 10, name .. " question " .. i)
        H.ok(type(it.answer) == "string" and it.answer ~= "", name .. " answer " .. i)
        H.ok(it.id ~= nil, name .. " id " .. i)
      end
    end)
  end
  H.case("benchmark reference spot checks", function()
    H.eq(bench.load("aime24")[8].answer, "025")
    H.eq(bench.load("amc23")[1].answer, "27")
    H.eq(bench.load("gsm8k")[1].answer, "18")
    H.eq(bench.load("math500")[1].answer, "\\left( 3, \\frac{\\pi}{2} \\right)")
    H.eq(bench.load("minerva_math")[1].answer, "1.6")
    H.eq(bench.load("olympiadbench")[2].answer, "\\frac{1}{2 n+2}")
    for _, it in ipairs(bench.load("math500")) do
      H.eq(it.answer, it.record.answer, "math500 last box equals the answer field")
    end
  end)
end

-- (h24 walkthrough) bench.load("gsm8k") worked only from the project root: the default folder
-- was ../shared/data/benchmarks from the current folder
H.case("the default folder is beside the project, from any current folder; its error names {dir=}", function()
  local confit = require "confit"
  local d = bench.default_dir
  H.ok(d:sub(1, 1) == "/" and d:find("/../shared/data/benchmarks", 1, true), d)
  H.eq(confit.realpath(d:gsub("/%.%./shared/data/benchmarks$", "")), confit.realpath("."), "the project root")
  local exe = arg[-1]:sub(1, 1) == "/" and arg[-1] or (io.popen("pwd"):read("l") .. "/" .. arg[-1])
  local p = io.popen(("cd / && '%s' -e 'print(require(\"confit.bench\").default_dir)'"):format(exe))
  local from_root = p:read("l"); p:close()
  H.eq(from_root, d, "the same from /")
  -- a copy of lua/ elsewhere has no shared data beside it: the message names the option
  local tmp = os.tmpname(); os.remove(tmp)
  assert(os.execute(("mkdir -p '%s/p' && cp -r lua '%s/p/lua'"):format(tmp, tmp)))   -- no TMP/shared
  p = io.popen(("cd / && CONFIT_LUA_DIR='%s/p/lua' '%s' -e 'print(select(2, require(\"confit.bench\").load(\"gsm8k\")))'"):format(tmp, exe))
  local msg = p:read("a"); p:close()
  os.execute(("rm -rf '%s'"):format(tmp))
  H.ok(msg:find(tmp .. "/p/../shared/data/benchmarks/gsm8k.jsonl", 1, true), msg)
  H.ok(msg:find("{dir = DIR}", 1, true), msg)
  H.raises(function() bench.load("gsm8k", {limt = 3}) end, "unknown option limt (options: answer, dir, limit, question)")
  H.raises(function() bench.load("gsm8k", 5) end, "opts must be a table")
  H.raises(function() bench.load("gsm8k", {limit = "5"}) end, 'limit must be an integer >= 0, got "5"')
end)

H.finish()
