-- Tests of confit.jsonio: deterministic encoding, full-precision numbers, round trips, errors
-- that name the file and line or the key path, atomic writes.
local H = dofile("tests/lua/harness.lua")
local jsonio = require "confit.jsonio"
local cjson = require "cjson"

local tmpdir = H.tmpdir

local slurp, spit = H.read, H.write

local function deep_eq(a, b, path)
  path = path or "value"
  if type(a) ~= "table" or type(b) ~= "table" then
    H.eq(a, b, path)
    if type(a) == "number" then H.eq(math.type(a), math.type(b), path .. " number subtype") end
    return
  end
  for k, v in pairs(a) do deep_eq(v, b[k], path .. "." .. tostring(k)) end
  for k in pairs(b) do H.ok(a[k] ~= nil, path .. "." .. tostring(k) .. " missing") end
end

H.case("encode: sorted keys, integers, exact floats, escapes", function()
  H.eq(jsonio.encode({b = 1, a = {3, 2, 1}, c = "x"}), '{"a":[3,2,1],"b":1,"c":"x"}', "sorted")
  H.eq(jsonio.encode(0.1), "0.1", "shortest round-trip digits")
  H.eq(jsonio.encode(1 / 3), "0.3333333333333333", "16 digits")
  H.eq(jsonio.encode(2.0), "2.0", "integral float keeps .0")
  H.eq(jsonio.encode(-0.0), "-0.0", "negative zero")
  H.eq(jsonio.encode(1e300), "1e+300", "exponent")
  H.eq(jsonio.encode(math.maxinteger), "9223372036854775807", "big integer")
  H.eq(jsonio.encode("a\"b\\c\n\t\1"), '"a\\"b\\\\c\\n\\t\\u0001"', "escapes")
  H.eq(jsonio.encode({}), "[]", "empty table is an array")
  H.eq(jsonio.encode(jsonio.object()), "{}", "marked empty object")
  H.eq(jsonio.encode({x = cjson.null, y = false}), '{"x":null,"y":false}', "null and false")
  H.eq(jsonio.encode("caf\195\169 \226\136\145"), '"caf\195\169 \226\136\145"', "UTF-8 kept")
  H.eq(jsonio.encode("ab\255c\226\136"), '"ab\239\191\189c\239\191\189\239\191\189"',
       "invalid UTF-8 bytes replaced by U+FFFD")
  H.eq(jsonio.encode({a = {b = 1}}, {indent = 2}), '{\n  "a": {\n    "b": 1\n  }\n}', "indent")
  -- every double survives a text round trip exactly (the reason for this module)
  local x = 0.123456789012345678
  for _ = 1, 2000 do
    x = (x * 1103515245.123 + 0.7) % 1e3 - 500
    local back = cjson.decode("[" .. jsonio.encode(x) .. "]")[1]
    H.eq(back, x, "round trip of " .. string.format("%.17g", x))
  end
  H.ok(#cjson.encode(1 / 3) < #jsonio.encode(1 / 3), "cjson alone writes fewer digits")
end)

H.case("encode: NaN/Inf, bad keys, sparse arrays, cycles raise with a key path", function()
  H.raises(function() jsonio.encode({steps = {{loss = 1}, {loss = 0 / 0}}}) end,
           "value.steps[2].loss", "NaN")
  H.raises(function() jsonio.encode({a = {["odd key"] = math.huge}}) end,
           'value.a["odd key"]', "Inf")
  H.raises(function() jsonio.encode({x = -math.huge}) end, "value.x")
  H.raises(function() jsonio.encode({[1] = 1, [3] = 3}) end, "sparse")
  H.raises(function() jsonio.encode({1, x = 2}) end, "mixes key types")
  H.raises(function() jsonio.encode({[2.5] = 1}) end, "mixes key types")
  H.raises(function() jsonio.encode({f = print}) end, "value.f is a function")
  local t = {}; t.self = t
  H.raises(function() jsonio.encode(t) end, "cycle")
  -- a table used twice (not a cycle) is fine
  local s = {1}
  H.eq(jsonio.encode({a = s, b = s}), '{"a":[1],"b":[1]}', "shared subtable")
end)

H.case("encode: a Ctrl-C or an error object raised while encoding goes on unchanged", function()
  -- ("interrupted (writing ...)" no longer read as a Ctrl-C: the recipe printed a traceback, exit
  -- 1, not "interrupted", 130; an error object met a string concatenation)
  local function raising(e) return setmetatable({}, {__pairs = function() error(e, 0) end}) end
  local ok, err = pcall(jsonio.encode, raising("interrupted"), {what = "writing x"})
  H.eq(err, "interrupted", "a bare interrupt")
  ok, err = pcall(jsonio.write_json_atomic, os.tmpname(), {a = raising("x.lua:3: interrupted")})
  H.eq(err, "x.lua:3: interrupted", "a positioned interrupt")
  H.ok(require("confit.cli").is_interrupt(err), "still a Ctrl-C")
  local obj = setmetatable({msg = "m"}, require("confit.cli").UserError)
  ok, err = pcall(jsonio.encode, raising(obj), {what = "w"})
  H.ok(not ok and err == obj, "the object itself: " .. tostring(err))
end)

H.case("write_json_atomic / read_json round trip", function()
  local d = tmpdir()
  local v = {config = {lr = 1e-5, alpha = 0.1, steps = 20, name = "rlsc", flags = {true, false}},
             before = {acc = 0.134, n = 30}, weird = {["a b"] = "x"}, list = {1.5, 2, "3"}}
  local p = d .. "/summary.json"
  assert(jsonio.write_json_atomic(p, v))
  local back = assert(jsonio.read_json(p))
  deep_eq(back, v)
  local text = slurp(p)
  H.ok(text:find('\n  "before": {', 1, true), "pretty printed with sorted keys")
  H.eq(text, jsonio.encode(v, {indent = 2}) .. "\n", "file is the encoded text")
  -- rewriting replaces the file whole and leaves no temporary behind
  assert(jsonio.write_json_atomic(p, {x = 1}))
  deep_eq(assert(jsonio.read_json(p)), {x = 1})
  H.eq(io.open(p .. ".tmp", "rb"), nil, "no .tmp left")
  for _, name in ipairs(require("confit.cli").list_dir(d) or {}) do
    H.ok(not name:find("tmp", 1, true), "temporary left behind: " .. name)
  end
  -- a value JSON cannot hold raises before touching the existing file
  H.raises(function() jsonio.write_json_atomic(p, {y = 0 / 0}) end, "value.y", p)
  deep_eq(assert(jsonio.read_json(p)), {x = 1})
  -- a failed write (missing directory) returns nil, message and creates nothing
  local ok, err = jsonio.write_json_atomic(d .. "/nodir/x.json", {1})
  H.eq(ok, nil, "failed write"); H.ok(err and err:find("nodir", 1, true), tostring(err))
  os.remove(p); os.remove(d)
end)

-- (fix_report) the temporary file has a fresh, unique name: a file or a symlink at the old
-- fixed name OUT.tmp is neither clobbered nor followed.
H.case("write_text_atomic: a unique temporary file, never OUT.tmp", function()
  local d = tmpdir()
  local p, victim = d .. "/out.html", d .. "/victim.txt"
  spit(p .. ".tmp", "someone else's file")
  spit(victim, "precious")
  assert(jsonio.write_text_atomic(p, "one"))
  H.eq(slurp(p .. ".tmp"), "someone else's file", "existing OUT.tmp untouched")
  os.remove(p .. ".tmp")
  assert(os.execute("ln -s victim.txt '" .. p .. ".tmp'"))
  assert(jsonio.write_text_atomic(p, "two"))
  H.eq(slurp(victim), "precious", "symlink at OUT.tmp not followed")
  H.eq(slurp(p), "two", "written")
  local names = require("confit.cli").list_dir(d) or {}
  table.sort(names)
  H.eq(table.concat(names, " "), "out.html out.html.tmp victim.txt", "no temporary left behind")
  os.execute("rm -rf '" .. d .. "'")
end)

H.case("confit.fsync; write_text_atomic syncs the temporary file, then the directory", function()
  local core = require "confit.core"
  local d = tmpdir()
  local p = d .. "/state.json"
  spit(p, "old")
  H.eq(core.fsync(p), true, "a file")
  H.eq(core.fsync(d), true, "a directory")
  local r, err = core.fsync(d .. "/missing")
  H.ok(r == nil and tostring(err):find("missing: open failed: No such file", 1, true), "nil, message: " .. tostring(err))
  local real, calls = core.fsync, {}
  core.fsync = function(path) calls[#calls + 1] = path; return real(path) end
  local ok, werr = pcall(jsonio.write_text_atomic, p, "new")
  core.fsync = real
  H.ok(ok and werr == true, "written: " .. tostring(werr))
  H.eq(#calls, 2, "two syncs")
  H.ok(calls[1] and calls[1]:find("^" .. d:gsub("%p", "%%%0") .. "/state%.json%.tmp%-"), "first the temporary file: " .. tostring(calls[1]))
  H.eq(calls[2], d, "then the directory")
  core.fsync = function() return nil, "disk on fire" end
  local ok2, r2, e2 = pcall(jsonio.write_text_atomic, p, "newer")
  core.fsync = real
  H.ok(ok2 and r2 == nil and tostring(e2):find("disk on fire", 1, true), "a failed sync is an error: " .. tostring(e2))
  H.eq(slurp(p), "new", "the file keeps its content")
  H.eq(#(require("confit.cli").list_dir(d) or {}), 1, "no temporary left behind")
  os.execute("rm -rf '" .. d .. "'")
end)

-- (Lua API audit) a full disk: the error shows at the flush, not the write; it must not be lost
H.case("append_jsonl on a full device returns nil, message", function()
  local f = io.open("/dev/full", "ab")
  if not f then H.skip("/dev/full", "no /dev/full here"); return end
  f:close()
  local ok, err = jsonio.append_jsonl("/dev/full", {a = 1})
  H.eq(ok, nil, "not reported as written")
  H.ok(tostring(err):find("No space left", 1, true), "the reason: " .. tostring(err))
end)

H.case("writers refuse a path that is no string and a list with holes", function()
  local d = tmpdir()
  H.raises(function() jsonio.write_text_atomic(nil, "x") end, "the path must be a non-empty string")
  H.raises(function() jsonio.write_jsonl_atomic(d .. "/r.jsonl", {{a = 1}, nil, {b = 2}}) end, "record 2 of 3 is nil")
  H.eq(#(require("confit.cli").list_dir(d) or {}), 0, "nothing written")
  os.execute("rm -rf '" .. d .. "'")
end)

H.case("read errors name the file and line", function()
  local d = tmpdir()
  local p = d .. "/bad.json"
  spit(p, '{\n  "a": 1,\n  "b": oops\n}\n')
  local v, err = jsonio.read_json(p)
  H.eq(v, nil, "bad json"); H.ok(err:find(p .. ":3:", 1, true), err)
  v, err = jsonio.read_json(d .. "/missing.json")
  H.eq(v, nil, "missing"); H.ok(err:find("missing.json", 1, true), err)
  local q = d .. "/steps.jsonl"
  spit(q, '{"step":1}\n\n{"step":2}\n{"step":3,\n{"step":4}\n')
  v, err = jsonio.read_jsonl(q)
  H.eq(v, nil, "bad jsonl"); H.ok(err:find(q .. ":4:", 1, true), err)
  v, err = jsonio.read_jsonl(d .. "/nope.jsonl")
  H.eq(v, nil, "missing jsonl"); H.ok(err:find("nope.jsonl", 1, true), err)
  H.raises(function() jsonio.read_jsonl(nil) end, "jsonio: the path must be a non-empty string, got nil")
  -- every reader and writer names a path that is not one (write_json_atomic concatenated it first)
  for _, f in ipairs({jsonio.read_json, jsonio.write_json_atomic, jsonio.append_jsonl, jsonio.write_jsonl_atomic,
                      jsonio.write_text_atomic}) do
    H.raises(function() f(true, {}) end, "jsonio: the path must be a non-empty string, got true")
  end
  H.raises(function() jsonio.read_jsonl(q, 1) end, "jsonio.read_jsonl: opts must be a table", "number")
  os.remove(p); os.remove(q); os.remove(d)
end)

H.case("append_jsonl / read_jsonl, partial tail, write_jsonl_atomic", function()
  local d = tmpdir()
  local q = d .. "/steps.jsonl"
  for i = 1, 50 do
    assert(jsonio.append_jsonl(q, {step = i, loss = 1 / i, mean_logp = -i * 0.37, tag = "s" .. i}))
  end
  local rows = assert(jsonio.read_jsonl(q))
  H.eq(#rows, 50, "rows")
  for i, r in ipairs(rows) do
    H.eq(r.step, i, "step"); H.eq(math.type(r.step), "integer", "step stays an integer")
    H.eq(r.loss, 1 / i, "loss exact"); H.eq(r.mean_logp, -i * 0.37, "logp exact")
  end
  local text = slurp(q)
  H.eq(select(2, text:gsub("\n", "")), 50, "one line per record")
  -- a writer caught mid-append: strict reading fails, partial_tail drops the torn line
  spit(q, text .. '{"step":51,"lo')
  local v, err = jsonio.read_jsonl(q)
  H.eq(v, nil, "torn tail is an error by default"); H.ok(err:find(":51:", 1, true), err)
  rows = assert(jsonio.read_jsonl(q, {partial_tail = true}))
  H.eq(#rows, 50, "torn tail dropped")
  -- a bad line in the middle is an error even with partial_tail
  spit(q, '{"a":1}\n{bad}\n{"a":2}\n')
  v, err = jsonio.read_jsonl(q, {partial_tail = true})
  H.eq(v, nil, "middle error"); H.ok(err:find(":2:", 1, true), err)
  H.raises(function() jsonio.append_jsonl(q, {loss = 0 / 0}) end, "value.loss", q)
  local e = d .. "/eval.jsonl"
  assert(jsonio.write_jsonl_atomic(e, {{id = 1, samples = {{completion = "x", correct = true}}},
                                       {id = 2, samples = {}}}))
  rows = assert(jsonio.read_jsonl(e))
  H.eq(#rows, 2, "eval rows"); H.eq(rows[1].samples[1].correct, true, "nested")
  H.eq(#rows[2].samples, 0, "empty list")
  os.remove(q); os.remove(e); os.remove(d)
end)

H.case("read: a leading BOM is skipped; null records and non-finite numbers are errors", function()
  local d = tmpdir()
  local p, q = d .. "/a.json", d .. "/a.jsonl"
  spit(p, '\239\187\191{"a": 1}\n')
  deep_eq(assert(jsonio.read_json(p)), {a = 1})
  spit(q, '\239\187\191{"a": 1}\n{"a": 2}\n')
  H.eq(#assert(jsonio.read_jsonl(q)), 2, "BOM before the first record")
  spit(q, '{"a": 1}\n\239\187\191{"a": 2}\n')
  local v0, err0 = jsonio.read_jsonl(q)
  H.eq(v0, nil, "a BOM on a later line (two files joined with cat) is refused")
  H.ok(err0 and err0:find(q .. ":2: a byte order mark", 1, true), tostring(err0))
  deep_eq(assert(jsonio.decode('\239\187\191[1]')), {1})
  spit(p, '\239\187\191{"a": 1,\n "b": oops}\n')
  local v, err = jsonio.read_json(p)
  H.eq(v, nil); H.ok(err:find(p .. ":2:", 1, true), "line counted after the BOM: " .. err)
  spit(q, '{"a": 1}\nnull\n')
  v, err = jsonio.read_jsonl(q)
  H.eq(v, nil, "null record"); H.ok(err:find(q .. ":2: a record is null", 1, true), tostring(err))
  for _, bad in ipairs({"NaN", "-Infinity", "Infinity", "0x10", "1e999", "[1e999]"}) do
    spit(q, '{"a": 1}\n{"a": ' .. bad .. '}\n')
    v, err = jsonio.read_jsonl(q)
    H.eq(v, nil, bad); H.ok(err and err:find(q .. ":2: a number", 1, true), tostring(err))
  end
  spit(p, '{"a": 1,\n "b": NaN}\n')
  v, err = jsonio.read_json(p)
  H.eq(v, nil); H.ok(err:find(p .. ":2: a number JSON does not have", 1, true), tostring(err))
  spit(p, '{"a": 1,\n "b": -1e999}\n')
  v, err = jsonio.read_json(p)
  H.eq(v, nil); H.ok(err:find(p .. ": a number that is not finite", 1, true), tostring(err))
  H.eq(jsonio.decode("NaN"), nil, "decode refuses NaN")
  H.eq(cjson.decode('{"a": NaN}').a ~= cjson.decode('{"a": NaN}').a, true, "cjson's own settings kept")
  os.remove(p); os.remove(q); os.remove(d)
end)

H.case("is_temp_name / remove_stale_temps: dead writers' temporary files go, the rest stays", function()
  H.eq(jsonio.is_temp_name("config.json.tmp-12-1700000000-3"), "config.json", "a temporary name")
  H.eq(select(2, jsonio.is_temp_name("a/steps.jsonl.tmp-12-1700000000-3")), 12, "its PID")
  for _, name in ipairs({"config.json", "config.json.tmp", "x.tmp-12-1", "x.tmp-a-1-2", ".tmp-1-2-3", ".lock"}) do
    H.eq(jsonio.is_temp_name(name), nil, name)
  end
  local d = tmpdir()
  local me = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
  local dead, live, mine = "config.json.tmp-999999-1-1", "summary.json.tmp-1-2-3", "grid.json.tmp-" .. me .. "-5-6"
  for _, name in ipairs({dead, live, mine, "config.json", "steps.jsonl", "notes.tmp-999999-x", ".lock"}) do
    spit(d .. "/" .. name, "x")
  end
  local removed = jsonio.remove_stale_temps(d)
  H.eq(table.concat(removed, " "), table.concat({dead, mine}, " "), "removed")
  H.eq(io.open(d .. "/" .. dead), nil, "a dead PID's temporary file is gone")
  H.eq(io.open(d .. "/" .. mine), nil, "this process's (not writing now) is gone")
  for _, name in ipairs({live, "config.json", "steps.jsonl", "notes.tmp-999999-x", ".lock"}) do
    H.ok(H.read(d .. "/" .. name) == "x", name .. " kept")
    os.remove(d .. "/" .. name)
  end
  H.eq(#jsonio.remove_stale_temps(d .. "/missing"), 0, "a missing folder: nothing")
  os.remove(d)
end)

H.case("confit.lock: one holder per lock file; released on close and garbage collection", function()
  local confit = require "confit"
  local d = tmpdir()
  local path = d .. "/.lock"
  local h = assert(confit.lock(path))
  local me = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
  H.eq(H.read(path), me .. "\n", "the holder's PID is in the file")
  local none, msg, pid = confit.lock(path)   -- flock: a second open file description is refused
  H.eq(none, nil, "a second lock is refused")
  H.eq(pid, math.tointeger(tonumber(me)), "the holder's PID")
  H.ok(tostring(msg):find("PID " .. me, 1, true), tostring(msg))
  h:close()
  H.eq(io.open(path), nil, "close removes the lock file")
  h:close()   -- idempotent
  local h2 = assert(confit.lock(path), "free again after close")
  h2 = nil
  collectgarbage(); collectgarbage()
  local h3 = confit.lock(path)
  H.ok(h3 ~= nil, "free again after the handle is collected")
  do local h4 <close> = h3 end
  spit(path, "123\n")   -- left by a killed holder: the kernel released its lock
  local h5 = confit.lock(path)
  H.ok(h5 ~= nil, "a lock file with no holder is taken")
  if h5 then H.eq(H.read(path), me .. "\n", "and holds the new PID"); h5:close() end
  local bad, berr = confit.lock(d .. "/no/such/.lock")
  H.eq(bad, nil); H.ok(tostring(berr):find("cannot open the lock file", 1, true), tostring(berr))
  os.remove(d)
end)

H.case("seventeenth session: read_jsonl and read_json refuse bytes that are not UTF-8, naming the line", function()
  local p = os.tmpname()
  H.write(p, '{"a": 1}\n{"b": "caf\xe9"}\n')
  local v, err = jsonio.read_jsonl(p)
  H.eq(v, nil); H.ok(err and err:find(p .. ":2: not UTF-8 text", 1, true), tostring(err))
  H.write(p, '{\n"b": "\xff"}\n')
  v, err = jsonio.read_json(p)
  H.eq(v, nil); H.ok(err and err:find(p .. ":2: not UTF-8 text", 1, true), tostring(err))
  H.write(p, '{"b": "caf\xc3\xa9"}\n')
  H.eq(jsonio.read_json(p).b, "caf\xc3\xa9", "UTF-8 reads")
  os.remove(p)
end)

-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, J10)
do
local jsonio = require "confit.jsonio"

H.case("write_dir_atomic replaces a folder that holds exactly one replaceable file", function()
  local dir = H.tmpdir() .. "/ckpt"
  os.execute("mkdir -p '" .. dir .. "'")
  H.write(dir .. "/model.safetensors", "old")
  local ok, err = jsonio.write_dir_atomic(dir, function(tmp) H.write(tmp .. "/model.safetensors", "new") end,
                                          {replaceable = function(name) return name == "model.safetensors" end})
  H.ok(ok, "one old entry is replaced: " .. tostring(err))
  H.eq(H.read(dir .. "/model.safetensors"), "new")
end)
end

-- (nineteenth session, mutation testing: path_kind following links passed the suite)
do
local confit = require "confit"
local cli = require "confit.cli"

local base = os.tmpname()
os.remove(base)
assert(os.execute(("mkdir -p %q"):format(base)))

H.case("path_kind: a symbolic link is \"link\" (lstat), dangling or not; cli.exists sees a dangling one", function()
  H.write(base .. "/f", "x")
  assert(os.execute(("mkdir %q && ln -s f %q && ln -s d %q && ln -s nowhere %q"):format(
    base .. "/d", base .. "/lf", base .. "/ld", base .. "/dangling")))
  H.eq(confit.path_kind(base .. "/f"), "file", "a file")
  H.eq(confit.path_kind(base .. "/d"), "dir", "a folder")
  H.eq(confit.path_kind(base .. "/lf"), "link", "a link to a file is not followed")
  H.eq(confit.path_kind(base .. "/ld"), "link", "a link to a folder is not followed")
  H.eq(confit.path_kind(base .. "/dangling"), "link", "a dangling link is a link")
  -- never write over what may exist: a dangling link is there (cli.exists, jsonio.replace_problem)
  H.eq(cli.exists(base .. "/dangling"), true, "cli.exists(dangling link)")
  local kind, msg, code = confit.path_kind(base .. "/missing")
  H.eq(kind, nil, "missing: nil")
  H.eq(code, 2, "missing: ENOENT")
  H.ok(msg:find("missing", 1, true), "the message names the path")
end)

os.execute(("rm -rf %q"):format(base))
end

-- (twenty-sixth session, mutation testing of the input layer: cases that fail on mutants the
-- suite let through)
do
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

H.case("read_jsonl: opts.lines gives each record's text, where.linenos its line; blank lines skipped", function()
  local d = H.tmpdir()
  local q = d .. "/r.jsonl"
  -- blank and white-space lines between records; a last line of one character and no newline
  H.write(q, '{"a": 1.0}\n\n   \n\t\n{"b":[1,2]}\n7')
  local recs, lines, where = jsonio.read_jsonl(q, {lines = true})
  H.eq(#recs, 3, "records")
  H.eq(recs[1].a, 1, "a"); H.eq(math.type(recs[1].a), "integer", "1.0 read as an integer")
  H.eq(recs[2].b[2], 2, "b"); H.eq(recs[3], 7, "a last line of one character without a newline")
  H.eq(type(lines), "table", "lines")
  H.eq(table.concat(lines, "|"), '{"a": 1.0}|{"b":[1,2]}|7', "the lines as written (1.0 kept)")
  H.eq(table.concat(where.linenos, ","), "1,5,6", "each record's line")
  H.eq(where.dropped, nil, "nothing dropped")
  -- without opts.lines: no list of lines
  local recs2, lines2 = jsonio.read_jsonl(q)
  H.eq(#recs2, 3, "records without opts"); H.eq(lines2, nil, "no lines unless asked")
  -- a torn last line dropped by partial_tail: its line number
  H.write(q, '{"a":1}\n\n{"a":')
  local r3, l3, w3 = jsonio.read_jsonl(q, {partial_tail = true, lines = true})
  H.eq(#r3, 1, "one record"); H.eq(#l3, 1, "one line"); H.eq(w3.dropped, 3, "the torn line's number")
  -- a blank line counts for the line numbers of errors
  H.write(q, '{"a":1}\n\n\n{"a":}\n')
  local v, err = jsonio.read_jsonl(q)
  H.eq(v, nil); H.ok(tostring(err):find(q .. ":4: ", 1, true), tostring(err))
  -- only white space: no records, no error
  H.write(q, "\n \n")
  H.eq(#assert(jsonio.read_jsonl(q)), 0, "blank file")
  -- trailing data after a value: an error at its line, for a record and for a whole JSON file
  H.write(q, '{"a":1}\n{"a":2} x\n')
  v, err = jsonio.read_jsonl(q)
  H.eq(v, nil); H.ok(tostring(err):find(q .. ":2: Expected the end", 1, true), tostring(err))
  local p = d .. "/two.json"
  H.write(p, '{"a": 1}\n\n{"b": 2}\n')
  v, err = jsonio.read_json(p)
  H.eq(v, nil); H.ok(tostring(err):find(p .. ":3: Expected the end", 1, true), tostring(err))
  -- CRLF line ends: the records read, the lines keep their "\r"
  H.write(q, '{"a":1}\r\n{"a":2}\r\n')
  local r4, l4 = jsonio.read_jsonl(q, {lines = true})
  H.eq(#r4, 2, "CRLF records"); H.eq(l4[2], '{"a":2}\r', "the line as written")
  os.execute("rm -rf '" .. d .. "'")
end)

H.case("decode: integral numbers up to 2^53 in size are integers, at the top and inside", function()
  for _, c in ipairs({{"2", 2}, {"-7", -7}, {"9007199254740992", 2^53}, {"-9007199254740992", -2^53},
                      {"-6755399441055744", -6755399441055744}}) do
    local v = jsonio.decode(c[1])
    H.eq(v, c[2], c[1]); H.eq(math.type(v), "integer", c[1] .. " at the top")
    local t = jsonio.decode("[" .. c[1] .. "]")
    H.eq(math.type(t[1]), "integer", c[1] .. " in a list")
  end
  H.eq(math.type(jsonio.decode("[18014398509481984]")[1]), "float", "2^54: a float")
  H.eq(math.type(jsonio.decode("2.5")), "float", "2.5")
end)

H.case("is_temp_name: the whole name must be NAME.tmp-PID-TIME-SERIAL", function()
  for _, name in ipairs({"config.json.tmp-12-1700000000-3.bak", "config.json.tmp--1700000000-3",
                         "config.json.tmp-12-1700000000-3x", "config.json.tmp-12-1700000000-"}) do
    H.eq(jsonio.is_temp_name(name), nil, name)
  end
  -- remove_stale_temps leaves such a file alone
  local d = H.tmpdir()
  H.write(d .. "/a.json.tmp-999999-1-1.bak", "mine")
  H.eq(#jsonio.remove_stale_temps(d), 0, "nothing removed")
  H.eq(H.read(d .. "/a.json.tmp-999999-1-1.bak"), "mine", "kept")
  os.execute("rm -rf '" .. d .. "'")
end)

H.case("encode with indent: nested lists and objects indented level by level", function()
  H.eq(jsonio.encode({a = {{1, 2}, {}}, b = {c = {d = true}}}, {indent = 2}),
       '{\n  "a": [\n    [\n      1,\n      2\n    ],\n    []\n  ],\n  "b": {\n    "c": {\n      "d": true\n    }\n  }\n}',
       "two-space levels")
end)

H.case("writers: a folder that is not there, a non-list, no free temporary name: nil, message or an error", function()
  local d = H.tmpdir()
  local ok, err = jsonio.append_jsonl(d .. "/no/such/x.jsonl", {a = 1})
  H.eq(ok, nil, "append into a missing folder"); H.ok(tostring(err):find("no/such/x.jsonl", 1, true), tostring(err))
  H.raises(function() jsonio.write_jsonl_atomic(d .. "/r.jsonl", {a = 1}) end,
           "the records must be a list, got the key a")
  H.raises(function() jsonio.write_jsonl_atomic(d .. "/r.jsonl", {[0] = {}}) end, "got the key 0")
  H.eq(cli.exists(d .. "/r.jsonl"), false, "nothing written")
  -- every temporary name taken (cli.exists says so for each): nil and a message, nothing written
  local real = cli.exists
  cli.exists = function(p) return p:find("%.tmp%-") ~= nil or real(p) end
  local ok1, e1 = jsonio.write_text_atomic(d .. "/t.txt", "x")
  local ok2, e2 = pcall(jsonio.write_dir_atomic, d .. "/sub", function() end)
  cli.exists = real
  H.eq(ok1, nil, "write_text_atomic"); H.ok(tostring(e1):find("no free temporary name", 1, true), tostring(e1))
  H.ok(ok2 and e2 == nil, "write_dir_atomic returns nil, message: " .. tostring(e2))
  H.eq(#(cli.list_dir(d) or {}), 0, "nothing written")
  os.execute("rm -rf '" .. d .. "'")
end)

H.case("replace_problem names what is in the way: a file, a dangling link, a FIFO", function()
  local d = H.tmpdir()
  H.write(d .. "/f", "x")
  assert(os.execute("ln -s nowhere '" .. d .. "/l' && mkfifo '" .. d .. "/p'"))
  H.ok(tostring(jsonio.replace_problem(d .. "/f")):find("(a file is in the way)", 1, true), "file")
  H.ok(tostring(jsonio.replace_problem(d .. "/l")):find("(a link to no folder is in the way)", 1, true), "link")
  H.ok(tostring(jsonio.replace_problem(d .. "/p")):find("(something that is no folder is in the way)", 1, true), "fifo")
  H.eq(jsonio.replace_problem(d .. "/missing"), nil, "nothing there")
  os.execute("rm -rf '" .. d .. "'")
end)
end

-- (twenty-eighth session) bench.load read JSON lines with its own copy of read_jsonl's loop (the
-- byte order mark check twice); the text reader both now use
H.case("decode_jsonl: read_jsonl over text; nulls kept on request; a failure says its line", function()
  local p = "/data/x.jsonl"                                 -- only named in the messages
  local recs, lines, where = jsonio.decode_jsonl('\239\187\191{"a": 1}\n\n{"a": 2}\n', p, {lines = true})
  H.eq(#recs, 2); H.eq(recs[2].a, 2); H.eq(lines[2], '{"a": 2}'); H.eq(where.linenos[2], 3, "the blank line counted")
  local v, err, w = jsonio.decode_jsonl('{"a": 1}\nnull\n', p)
  H.eq(v, nil); H.eq(err, p .. ":2: a record is null"); H.eq(w.lineno, 2); H.eq(w.decode, nil)
  recs, _, where = jsonio.decode_jsonl('{"a": 1}\nnull\n', p, {nulls = true})
  H.eq(recs[2], jsonio.null, "a null line kept as jsonio.null"); H.eq(where.linenos[2], 2)
  v, err, w = jsonio.decode_jsonl('{"a": 1}\n\n{"a": }\n', p)
  H.eq(v, nil); H.ok(err:find(p .. ":3: Expected value", 1, true), err)
  H.eq(w.lineno, 3); H.ok(w.decode and err == p .. ":3: " .. w.decode, tostring(w.decode))
  v, err, w = jsonio.decode_jsonl('{"a": 1}\n\239\187\191{"a": 2}\n', p)
  H.eq(v, nil); H.ok(err:find(p .. ":2: a byte order mark inside the file", 1, true), err); H.eq(w.decode, nil)
  recs, _, where = jsonio.decode_jsonl('{"a": 1}\n{"a": ', p, {partial_tail = true})
  H.eq(#recs, 1); H.eq(where.dropped, 2)
  H.raises(function() jsonio.decode_jsonl(nil, p) end, "jsonio.decode_jsonl: text must be a string, got nil")
  H.raises(function() jsonio.decode_jsonl("", p, true) end, "jsonio.decode_jsonl: opts must be a table, got boolean")
  H.raises(function() jsonio.decode_jsonl("", "") end, "jsonio: the path must be a non-empty string")
end)

-- (twenty-eighth session) cli.can_read (the recipes' file_exists) opened its path: a FIFO blocked
-- it until a writer came; jsonio's readers asked an lstat, so a link to a FIFO blocked read_json.
-- One check (cli.not_regular) judges a link by its target, before any open. Run in a child under
-- `timeout`, so that a regression fails here instead of hanging the suite.
H.case("can_read, read_json, read_jsonl: a FIFO or a link to one is refused without being opened", function()
  local d = H.tmpdir()
  local q = require("confit.cli").shell_quote
  H.mkfifo(d .. "/p")
  H.write(d .. "/ok.jsonl", '{"a": 1}\n')
  assert(os.execute("ln -s p " .. q(d .. "/to-p") .. " && ln -s ok.jsonl " .. q(d .. "/to-ok") .. " && mkdir " .. q(d .. "/dir")))
  local script = ([[
    local cli, jsonio = require "confit.cli", require "confit.jsonio"
    for _, name in ipairs({"p", "to-p", "to-ok", "dir"}) do
      local path = %q .. "/" .. name
      local ok, why = cli.can_read(path)
      local recs, err = jsonio.read_jsonl(path)
      local v, jerr = jsonio.read_json(path)
      io.write(name, " can_read=", tostring(ok), " (", tostring(why), ") jsonl=",
               recs and #recs or tostring(err), " json=", v and "ok" or tostring(jerr), "\n")
    end
  ]]):format(d)
  local out, _, rc = H.run_limited(script, 20)
  H.eq(rc, 0, "the readers returned (124: blocked on the FIFO): " .. out)
  local fifo = "(not a regular file (a FIFO, socket or device))"
  for _, want in ipairs({
      ("p can_read=false %s jsonl=%s/p: not a regular file json=%s/p: not a regular file"):format(fifo, d, d),
      ("to-p can_read=false %s jsonl=%s/to-p: not a regular file json=%s/to-p: not a regular file"):format(fifo, d, d),
      "to-ok can_read=true (nil) jsonl=1 json=ok",
      -- a folder opens on Linux: can_read says so (its readers refuse it by name)
      ("dir can_read=true (nil) jsonl=%s/dir: not a regular file json=%s/dir: not a regular file"):format(d, d)}) do
    H.ok(out:find(want, 1, true), "output lacks " .. want .. ": " .. out)
  end
end)

H.finish()
