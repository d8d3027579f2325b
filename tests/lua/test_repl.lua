-- test_repl.lua: the `confit` executable as a user drives it. Sessions are fed through a pipe
-- (plain-stdin REPL: no prompts, no timing) and, when util-linux `script` is present, through a
-- real pseudo-terminal (libedit: prompts, Tab completion, history). Ctrl-C is sent with kill
-- once the running code has announced itself through a file, so no step depends on timing.
local H = dofile("tests/lua/harness.lua")

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

-- The executable: $CONFIT_BUILD_DIR/confit (set by ctest), else the interpreter running this
-- file, else build/confit.
local exe
local bdir = os.getenv("CONFIT_BUILD_DIR")
if bdir and exists(bdir .. "/confit") then exe = bdir .. "/confit"
elseif arg and arg[-1] and arg[-1]:match("confit$") and exists(arg[-1]) then exe = arg[-1]
elseif exists("build/confit") then exe = "build/confit" end
if not exe then H.skip_all("confit executable not found (set CONFIT_BUILD_DIR)") end

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local tmpbase = os.tmpname()
local created = {tmpbase}
local function tmp(suffix)
  local p = tmpbase .. suffix
  created[#created + 1] = p
  return p
end

local write = H.write
local function slurp(path) return H.read(path) or "" end

-- Runs `confit <args>` with `input` on stdin; returns stdout, stderr, exit status.
local function run(args, input)
  local inp, err = tmp(".in"), tmp(".err")
  write(inp, input or "")
  local cmd = string.format("CONFIT_HISTORY= %s %s < %s 2> %s", q(exe), args or "", q(inp), q(err))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  H.eq(how, "exit", "confit ended by a signal: " .. cmd)
  return out, slurp(err), code
end

local function has(s, frag, what)
  if not s:find(frag, 1, true) then
    error(string.format("%s: %q lacks %q", what or "output", s, frag), 2)
  end
end

local function lacks(s, frag, what)
  if s:find(frag, 1, true) then
    error(string.format("%s: %q should not contain %q", what or "output", s, frag), 2)
  end
end

local repl_docs = dofile("lua/confit/repl_help.lua")
-- what :help finds: repl_help first, then the bindings' confit.doc
local binding_docs = require("confit").doc
local docs = setmetatable({}, {__index = function(_, k) return repl_docs[k] or binding_docs[k] end})

-- ------------------------------------------------------------------ the REPL through a pipe

-- Each process start costs a noticeable fraction of a second (the CUDA and BLAS libraries
-- load), so the piped-REPL cases share one session: each case contributes lines, a marker line
-- separates them on stdout and on stderr, and the case checks its own slices.
local segments, seg_names = {}, {}
local function segment(name, input)
  seg_names[#seg_names + 1] = name
  segments[#segments + 1] = string.format("print(%q); io.stderr:write(%q)\n%s", "--8<-- " .. name,
    "--8<-- " .. name .. "\n", input)
end

segment("expr", '1+2\n"a".."b"\nreturn 1, nil, "z"\nnil\n')
segment("semicolon", "n = 0\nfunction f() n = n + 1 return n end\nf();\nf()\nx = 5\n")
segment("tostring", 'setmetatable({}, {__tostring = function() return "<T 2x3>" end})\n')
segment("multiline", "for i=1,3 do\nprint(i)\nend\n(\n1 +\n2)\ns = [[a\nb]]\ns\n")
segment("runtime", 'error("boom")\nprint("after")\nlocal t = nil; t.x = 1\n"still"\n'
  .. "error({})\nerror(setmetatable({}, {__tostring = function() return 'custom msg' end}))\n")
segment("syntax", "x = = 1\nprint('ok')\n")
segment("help", ":help confit.tensor\n?t:matmul\n:help x:softmax\n:help no_such_name\n")
segment("help_binding", 'confit.doc = {fancy_op = "fancy_op(x) -> y: test doc", bare = "no name"}\n'
  .. ":help t:fancy_op\n:help bare\n")
segment("help_overview", ":help\n")
segment("preload", "type(confit)\n")
segment("timing", "1\n:time\n2\n:time\n3\n")
segment("complete", table.concat({
  "a = setmetatable({x = 1}, {__index = setmetatable({foo = 1, fn = print}, {__index = {bar = 2}})})",
  ":complete a.",
  ":complete a:",
  ":complete io.stdout:se", -- userdata: methods in the metatable's __index table
  "mt = {matmul = print}; mt.__index = function(t, k) return mt[k] end",
  "u = setmetatable({}, mt)",
  ":complete u:ma",          -- __index function: the metatable's own keys
  ":complete pri",
  ":complete wh",
  ":complete nope.x",
  ":complete ('s'):",
  ""}, "\n"))
segment("tables", table.concat({
  "confit.zeros({2, 3}):shape()",
  "{{1, 2}, {3}}",
  '{b = 1, a = "x\\ny", [3] = true, ["end"] = 0, [1.5] = {}}',
  "c = {1}; c.me = c",
  "c",
  'setmetatable({}, {__tostring = function() return "<T>" end})',
  "return 1, {2}, 's'",
  "l = {}; for i = 1, 60 do l[i] = i end",
  "l",
  "{loss = 0.25, entropy = 1.5, mean_logp = -3.5, mean_length = 12, weight_share = 0.5, n = 8}",
  "T, S = table, string; table = nil; string = nil",
  '{"globals gone", n = 1}',
  "table, string = T, S",
  ""}, "\n"))
segment("tensor_complete", 't = confit.tensor({1, 2})\nprint(type(t))\n:complete t:ma\n')
-- (twenty-ninth session) lines longer than the reader's first buffer (256 bytes) and keys that
-- are no identifier or are hidden (__name) in completions
segment("long_line", "x = " .. ("1 + "):rep(200) .. "1\nx\n")
segment("complete_keys", 'b = {["1st"] = 1, __secret = 2, ok = 3, _x = 4}\n:complete b.\n:complete b.__\n')
segment("eof", "print('a')\nfor i=1,2 do\n") -- must stay last: input ends inside the loop

local session_out, session_err, session_code = run("", table.concat(segments))

local function split(text)
  local parts, name, start = {}, nil, 1
  for pos, n, after in text:gmatch("()%-%-8<%-%- ([%w_]+)\n()") do
    if name then parts[name] = text:sub(start, pos - 1) end
    name, start = n, after
  end
  if name then parts[name] = text:sub(start) end
  return parts
end
local OUT, ERR = split(session_out), split(session_err)
local function seg(name)
  return OUT[name] or error("segment " .. name .. " missing from stdout"),
         ERR[name] or error("segment " .. name .. " missing from stderr")
end

H.case("the piped session ran every segment; its failed chunks make the exit status 1", function()
  H.eq(session_code, 1, "status")
  for _, n in ipairs(seg_names) do seg(n) end
  local out, err, code = run("", "x = 1\nx + 1\n")
  H.eq(out, "2\n")
  H.eq(err, "")
  H.eq(code, 0, "a session without errors exits 0")
  local _, err2, code2 = run("", "1 +\n")
  H.eq(code2, 1, "input ending inside an expression")
  has(err2, "<eof>", "the message says the input ended")
end)

H.case("expressions print their values", function()
  local out, err = seg("expr")
  H.eq(out, "3\nab\n1\tnil\tz\nnil\n", "stdout")
  H.eq(err, "", "stderr")
end)

H.case("statements print nothing; a trailing ; suppresses printing", function()
  H.eq(seg("semicolon"), "2\n", "only the unsuppressed call prints, and the suppressed one ran")
end)

H.case("tostring goes through __tostring", function()
  H.eq(seg("tostring"), "<T 2x3>\n")
end)

H.case("multi-line statements and expressions", function()
  local out, err = seg("multiline")
  H.eq(out, "1\n2\n3\n3\na\nb\n", "stdout")
  H.eq(err, "", "stderr")
end)

H.case("a runtime error prints message and traceback, and the session goes on", function()
  local out, err = seg("runtime")
  has(err, "boom", "stderr")
  has(err, "stack traceback", "stderr")
  has(err, "attempt to index", "stderr")
  has(err, "error object is a table value", "stderr")
  has(err, "custom msg", "stderr")
  H.eq(out, "after\nstill\n", "stdout")
end)

H.case("a syntax error is reported and the session goes on", function()
  local out, err = seg("syntax")
  has(err, "unexpected symbol", "stderr")
  H.eq(out, "ok\n", "stdout")
end)

H.case("input ending inside a statement is reported", function()
  local out, err = seg("eof")
  H.eq(out, "a\n", "stdout")
  has(err, "<eof>", "stderr")
end)

H.case(":help prints the one-line doc of an API name", function()
  local lines = {}
  for l in seg("help"):gmatch("[^\n]+") do lines[#lines + 1] = l end
  H.eq(lines[1], docs["confit.tensor"], ":help confit.tensor")
  H.eq(lines[2], docs["t:matmul"], "?t:matmul")
  -- by its last part: the binding's doc.softmax when it has one, else repl_help's t:softmax
  H.ok(lines[3] and lines[3]:find("softmax", 1, true), "x:softmax: " .. tostring(lines[3]))
  has(lines[4] or "", "no help for 'no_such_name'")
end)

-- (twentieth session) a bare name or a module path without "confit." found nothing although the
-- full name is documented (:help adamw, :help trainable, :help optim.adamw)
H.case(":help finds a name documented only qualified, or lists the names", function()
  local out = run("", ":help adamw\n:help optim.adamw\n:help trainable\n:help run\n:help confit.bench.records\n")
  H.eq(out, docs["confit.optim.adamw"] .. "\n" .. docs["confit.optim.adamw"] .. "\n" .. docs["train.trainable"]
            .. "\n'run' is documented as evaluate.run, toy_eval.run, train.run (:help one of them)\n" .. docs["bench.records"] .. "\n")
end)

-- (twenty-first session) the modules the README names: confit.chat showed tok:chat's doc, the
-- others "no help"
H.case(":help of a confit Lua module names how to require it", function()
  local out = run("", ":help confit.chat\n:help confit.rl\n:help confit.evaluate\n:help confit.train\n")
  H.eq(out, docs["confit.chat"] .. "\n" .. docs["confit.rl"] .. "\n" .. docs["confit.evaluate"] .. "\n"
            .. docs["confit.train"] .. "\n")
  for _, mod in ipairs({"chat", "rl", "evaluate", "train"}) do
    has(docs["confit." .. mod], 'require "confit.' .. mod .. '"')
  end
end)

-- a bare name several objects document (the README's opt:zero_grad showed t:zero_grad's doc)
H.case(":help of a method several objects have lists them", function()
  local out = run("", ":help zero_grad\n:help encode\n:help step\n")
  H.eq(out, "'zero_grad' is documented as t:zero_grad, opt:zero_grad (:help one of them)\n"
            .. "'encode' is documented as m:encode, tok:encode (:help one of them)\n" .. docs["opt:step"] .. "\n")
end)

-- (twenty-ninth session) a function of a confit module without a doc: where it is defined and
-- the comment above it, so that `:help train.prune_checkpoints` says more than "no help"
H.case(":help of an undocumented module function shows its definition's place and comment", function()
  local out = run("", ":help train.prune_checkpoints\n:help confit.cli.exists\n:help train.STANDARD\n")
  local defined = "no help for 'train.prune_checkpoints' (not in the documented API); it is defined at "
  H.eq(out:sub(1, #defined), defined, out)
  local path, line = out:match("^[^\n]* at ([^\n]*lua/confit/train%.lua):(%d+)\n")
  H.ok(path, "the place: " .. out)
  local src = H.read(path)
  local n, def, above = 0, nil, nil
  for l in (src .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if n == tonumber(line) - 1 then above = l end
    if n == tonumber(line) then def = l end
  end
  H.eq(def, "function M.prune_checkpoints(out, keep)", "the line named is the definition")
  H.ok(out:find("\n  Remove all but the newest `keep` complete checkpoint folders of run directory out (a\n", 1, true),
       "the comment's first line, indented, without its dashes: " .. out)
  local last = "\n  " .. above:gsub("^%-%-%- ?", "") .. "\nno help for 'confit.cli.exists' (not in the documented API); it is defined at "
  H.ok(above:find("^%-%-%-") and out:find(last, 1, true), "the comment's last line, then the next name's: " .. out)
  H.ok(out:find("\n  True when path names an existing directory entry", 1, true), "cli.exists' comment")
  -- a field that is no function (or no field at all) has no definition to show
  H.ok(out:find("\nno help for 'train.STANDARD'\n$"), out)
end)

H.case("pretty.source_doc: nil for what has no Lua definition, never an error", function()
  local sd = require("confit.pretty").source_doc
  local core_fn
  for k, v in pairs(require("confit.core")) do if type(v) == "function" then core_fn = "core." .. k; break end end
  for _, n in ipairs({"rl.methods", "rl.nope", "nope.x", "confit.zeros", "train", "train.run.x", "1.x", core_fn}) do
    H.eq(sd(n), nil, n)
  end
  for _, v in ipairs({false, 7, {}, print}) do H.eq(sd(v), nil, type(v)) end
  -- a module named with "confit." in front
  local place = sd("confit.toy.encode")
  H.ok(place and place:find("lua/confit/toy%.lua:%d+\n  Token ids of a string"), tostring(place))
end)

-- a user's global named table broke :help (it sorted with the global table.sort)
H.case(":help works after the user sets a global named table", function()
  local out = run("", "table = {1, 2, 3}\nio = nil\n:help run\n:help confit.tensor\n:help cli.exists\n:help\n")
  H.ok(out:find("'run' is documented as evaluate.run, toy_eval.run, train.run", 1, true), out)
  H.ok(out:find("no help for 'cli.exists' (not in the documented API); it is defined at", 1, true)
       and out:find("\n  True when path names an existing directory entry", 1, true), "its definition, io and table gone: " .. out)
  H.ok(out:find(docs["confit.tensor"], 1, true), out)
  H.ok(out:find("confit.optim.adamw", 1, true), "the bare :help lists the names: " .. out:sub(1, 300))
end)

-- a field's doc opens with its name and a colon: it was printed after the name again
H.case(":help of a field shows its doc once (t.grad: t.grad: ...)", function()
  local out = run("", ":help t.grad\n:help t.requires_grad\n")
  H.eq(out, docs["t.grad"] .. "\n" .. docs["t.requires_grad"] .. "\n")
  H.ok(docs["t.grad"]:find("^t%.grad: "), "the doc opens with its name")
end)

H.case(":help of a name of Lua's own libraries says so (math.max found t:max's doc)", function()
  local out = run("", ":help math.max\n:help os.clock\n:help string.format\n")
  H.eq(out, "no help for 'math.max': it is Lua's own (the Lua 5.4 manual, section 6)\n"
            .. "no help for 'os.clock': it is Lua's own (the Lua 5.4 manual, section 6)\n"
            .. "no help for 'string.format': it is Lua's own (the Lua 5.4 manual, section 6)\n")
end)

-- (h24 walkthrough) names the docs use (EVALUATION.md's bench.load, metrics.summarize's error's
-- evaluate.summarize) and Tab offers (m:save_into, tok:added_tokens) had no help
H.case(":help knows bench.load, evaluate.summarize, m:save_into, tok:added_tokens", function()
  local names = {"bench.load", "evaluate.summarize", "m:save_into", "tok:added_tokens"}
  local input = {}
  for i, n in ipairs(names) do input[i] = ":help " .. n end
  local out = run("", table.concat(input, "\n") .. "\n")
  local want = {}
  for i, n in ipairs(names) do want[i] = repl_docs[n] or ("(none for " .. n .. ")") end
  H.eq(out, table.concat(want, "\n") .. "\n")
end)

-- A name of a confit Lua module or object without an entry was looked up by its last part:
-- bench.load showed confit.load's doc, toy.encode m:encode's, metrics.mean t:mean's, tok:pad m:pad's.
H.case(":help of an undocumented name of confit's modules and objects says so, not another name's doc", function()
  local names = {"bench.named_after", "toy.encode", "metrics.mean", "tok:pad", "opt:sum", "m:matmul", "rl.nope.sum"}
  local input = {}
  for i, n in ipairs(names) do input[i] = ":help " .. n end
  local out = run("", table.concat(input, "\n") .. "\n:help x:softmax\n:help m:pad\n:help confit.model.pad\n")
  local lines = {}
  for l in out:gmatch("[^\n]+") do
    -- (a module's function also says where it is defined, and its comment indented: next case)
    if not l:find("^  ") then lines[#lines + 1] = l:gsub(" %(not in the documented API%); it is defined at .*$", "") end
  end
  for i, n in ipairs(names) do H.eq(lines[i], "no help for '" .. n .. "'") end
  -- a name of no module keeps the lookup by its last part; documented names are found
  H.ok(lines[#names + 1] and lines[#names + 1]:find("softmax", 1, true), "x:softmax: " .. tostring(lines[#names + 1]))
  H.eq(lines[#names + 2], repl_docs["m:pad"])
  H.eq(lines[#names + 3], repl_docs["m:pad"], "confit.model.pad by its last part")
end)

-- docs/TOY.md's "Your own loss" builds with these; :help said "no help" for most of them
H.case(":help knows the pieces of a method of one's own and train.trainable", function()
  local names = {"rl.register_weighted", "rl.token_view", "rl.seq_logprobs", "rl.like", "rl.fill_metrics",
                 "rl.base_metrics", "rl.per_question", "rl.methods", "train.trainable"}
  local input = {}
  for i, n in ipairs(names) do input[i] = ":help " .. n end
  local out = run("", table.concat(input, "\n") .. "\n")
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  for i, n in ipairs(names) do
    H.ok(repl_docs[n], n .. " has an entry")
    H.eq(lines[i], repl_docs[n], ":help " .. n)
  end
  H.ok(repl_docs["m:parameters"]:find("train.trainable", 1, true), "m:parameters points to train.trainable")
  H.ok(repl_docs["metrics.summarize"]:find("correct", 1, true) and repl_docs["metrics.summarize"]:find("boxed", 1, true),
       "metrics.summarize names the fields it reads")
end)

H.case(":help reads the binding's confit.doc table too", function()
  local out, err = seg("help_binding")
  H.eq(err, "", "stderr (is require 'confit' broken?)")
  H.eq(out, "fancy_op(x) -> y: test doc\nbare: no name\n")
end)

H.case(":help alone lists the commands and the documented names", function()
  local out = seg("help_overview")
  has(out, ":time")
  has(out, ":quit")
  has(out, "confit.save_safetensors")
end)

H.case("the confit module is preloaded as a global", function()
  local out, err = seg("preload")
  H.eq(out, "table\n")
  H.eq(err, "")
end)

H.case(":time toggles timing (off when stdin is not a terminal)", function()
  local out = seg("timing")
  H.ok(out:match("^1\ntiming on\n2\n%[[%d.]+ m?s%]\ntiming off\n3\n$"), string.format("got %q", out))
end)

H.case("a piped line longer than the read buffer is read whole", function()
  local out, err = seg("long_line")
  H.eq(out, "201\n", "stdout")
  H.eq(err, "", "stderr")
end)

H.case(":complete offers identifiers only, and __ names only after __", function()
  H.eq(seg("complete_keys"), "b._x\nb.ok\nb.__secret\n")
end)

H.case(":complete lists Tab completions, walking __index chains", function()
  H.eq(seg("complete"), table.concat({"a.bar", "a.fn", "a.foo", "a.x", "a:fn", "io.stdout:seek",
    "io.stdout:setvbuf", "u:matmul", "print", "while", ""}, "\n"))
end)

-- (twenty-fourth session) a table result printed as its address: x:shape(), t:totable() and
-- rl.loss's metrics all read "table: 0x561fe3861c20"
H.case("a table result prints its contents (confit.pretty.format); __tostring still wins", function()
  local out, err = seg("tables")
  H.eq(err, "", "stderr")
  local fifty = {}
  for i = 1, 50 do fifty[i] = tostring(i) end
  H.eq(out, table.concat({
    "{2, 3}",
    "{{1, 2}, {3}}",
    '{[1.5] = {}, [3] = true, a = "x\\ny", b = 1, ["end"] = 0}',
    "{1, me = <cycle>}",
    "<T>",
    "1\t{2}\ts",
    "{" .. table.concat(fifty, ", ") .. ", ... (60 entries)}",
    "{\n  entropy = 1.5,\n  loss = 0.25,\n  mean_length = 12,\n  mean_logp = -3.5,\n  n = 8,\n  weight_share = 0.5\n}",
    '{"globals gone", n = 1}',
    ""}, "\n"))
end)

H.case("pretty.format: depth, budget, tensors inside, no metamethod runs", function()
  local pretty = require "confit.pretty"
  local confit = require "confit"
  H.eq(pretty.format({{{{{1}}}}}), "{{{{...}}}}", "three levels below the top, then {...}")
  H.eq(pretty.format({{}, {a = {}}}), "{{}, {a = {}}}", "empty tables")
  H.eq(pretty.format("s"), "s", "a string alone is as tostring gives it")
  H.eq(pretty.format({"s", 1.5, true, false}), '{"s", 1.5, true, false}')
  H.eq(pretty.format({x = confit.tensor({1.5, 2}):sum()}), "{x = tensor[] f32 cpu 3.5}", "a tensor on one line")
  -- (twenty-fourth session) a long tensor was cut inside a number ("... -0.1..."), which reads as
  -- a value: the cut falls between two words
  local long = pretty.format({w = confit.arange(400):view({20, 20}):add(1000.123456)})
  H.ok(long:find(" ...}", 1, true) and not long:find("%d%.%.%."), long)
  for num in long:gmatch("[%d%.%-]+") do
    if num ~= "..." and num:find("%d") then H.ok(num:match("^%-?%d+%.?%d*$"), "a whole number: " .. num .. " in " .. long) end
  end
  local touched = false
  local proxy = setmetatable({1}, {__index = function() touched = true end, __pairs = function() touched = true end,
                                   __len = function() touched = true; return 9 end, __metatable = "locked"})
  H.eq(pretty.format(proxy), "{1}")
  H.ok(not touched, "no __index, __pairs or __len ran")
  local big = {}
  for i = 1, 100 do big[i] = {} for j = 1, 100 do big[i][j] = j end end
  local text = pretty.format(big)
  H.ok(#text < 8000, "a 100 x 100 table is cut short: " .. #text .. " characters")
  H.ok(text:find("... (100 entries)", 1, true), "it says how many entries there were")
  local cyc = {}
  cyc[1] = {cyc}
  H.eq(pretty.format(cyc), "{{<cycle>}}")
  local shared = {1}
  H.eq(pretty.format({shared, shared}), "{{1}, {1}}", "a table met twice but not inside itself prints twice")
end)

-- (twenty-ninth session, mutation testing of confit.pretty: cases no other test caught)
H.case("pretty.format: key order, two long entries a line each, the cut of a long value", function()
  local pretty = require "confit.pretty"
  -- number keys in numeric order (9 before 10), then strings, then false before true
  H.eq(pretty.format({[10] = "b", [9] = "a", [2.5] = "c"}), '{[2.5] = "c", [9] = "a", [10] = "b"}')
  H.eq(pretty.format({[true] = 2, [false] = 1, a = 1, b = 2}), "{a = 1, b = 2, [false] = 1, [true] = 2}")
  -- two entries that do not fit in 80 characters: one a line (one entry alone stays one line)
  local a, b = string.rep("x", 40), string.rep("y", 40)
  H.eq(pretty.format({a = a, b = b}), '{\n  a = "' .. a .. '",\n  b = "' .. b .. '"\n}')
  H.eq(pretty.format({a = a .. b}), '{a = "' .. a .. b .. '"}')
  -- a value whose text spans lines is cut only past 60 characters
  local function shown(text) return setmetatable({}, {__tostring = function() return text end}) end
  local sixty = "T\n" .. string.rep("b", 58)      -- "T bbb...": 60 characters on one line
  H.eq(pretty.format({shown(sixty)}), "{T " .. string.rep("b", 58) .. "}")
  H.eq(pretty.format({shown(sixty .. "b")}), "{T ...}", "61: cut between two words")
end)

H.case("tensor methods complete through the binding's metatable", function()
  local out, err = seg("tensor_complete")
  H.eq(err, "", "confit.tensor and the completion raise nothing")
  H.ok(out:match("^userdata\n"), string.format("confit.tensor makes a tensor: %q", out))
  has(out, "\nt:matmul\n")
  has(out, "\nt:max\n")
  lacks(out, "t:sum", "only names starting with ma")
end)

H.case(":quit ends the session", function()
  local out, _, code = run("", "1\n:quit\n2\n")
  H.eq(out, "1\n")
  H.eq(code, 0)
end)

H.case("every name repl_help documents exists", function()
  local confit = require "confit"
  local m = assert(confit.load("examples/toy/model"))
  local opt = confit.optim.adamw({confit.zeros({2}, {requires_grad = true})}, {lr = 1e-3})
  local owners = {confit = confit, t = confit.zeros({2}), m = m, tok = m.tokenizer, opt = opt}
  for _, mod in ipairs({"rl", "train", "evaluate", "grade", "metrics", "toy", "chat", "jsonio", "report", "bench",
                       "cli", "toy_eval", "pretty"}) do
    owners[mod] = require("confit." .. mod)
  end
  local n = 0
  for name in pairs(repl_docs) do
    local head, rest = name:match("^([%w_]+)[%.:](.+)$")
    local v = head and owners[head]
    -- (h24) a module's own entry (confit.evaluate) is a field too: it was nil, only require found it
    if head == "confit" and repl_docs[name]:find(name .. ': require "' .. name .. '"', 1, true) == 1 then
      H.eq(v[rest], require("confit." .. rest), name .. " is the module")
    end
    H.ok(v ~= nil, "unknown prefix in " .. name)
    for part in (rest or ""):gmatch("[^%.:]+") do
      if v ~= nil then v = v[part] end
    end
    H.ok(v ~= nil, name .. " is documented but does not exist")
    n = n + 1
  end
  H.ok(n > 40, "repl_help has " .. n .. " entries")
  m:free()
end)

H.case("a freed tokenizer says so", function()
  local tok = assert(require("confit").load("examples/toy/model")).tokenizer
  H.ok(tostring(tok):find("ids)", 1, true), tostring(tok))
  tok:free()
  H.ok(tostring(tok):find("freed", 1, true), tostring(tok))
end)

H.case("the fixed API names are documented (repl_help or the bindings), one line each", function()
  local names = {"confit.tensor", "confit.randn", "confit.zeros", "confit.ones", "t:totable",
    "t:item", "t:shape", "t:numel", "t:backward", "t:detach", "t.grad", "t:matmul", "t:transpose",
    "t:sum", "t:mean", "t:exp", "t:log", "t:silu", "t:tanh", "t:softmax", "t:log_softmax",
    "t:logsumexp", "confit.optim.adamw", "confit.clock", "confit.no_grad", "confit.load",
    "m:forward", "m:parameters", "m:logprobs", "m:generate", "confit.load_safetensors",
    "confit.save_safetensors", "confit.tokenizer", "confit.cuda.available", "confit.memory",
    "confit.empty_cache"}
  for _, n in ipairs(names) do
    local d = docs[n]
    H.ok(type(d) == "string" and #d > 10, "no doc for " .. n)
    H.ok(not d:find("\n"), "doc of " .. n .. " spans lines")
    local last = n:match("[%.:]([%w_]+)$")
    H.ok(d:find(last, 1, true), "doc of " .. n .. " does not name it")
  end
end)

-- ------------------------------------------------------------------ options and scripts

H.case("a script gets arg and ...; -e chunks run first, in order", function()
  local script = tmp(".lua")
  write(script, string.format("print(arg[0] == %q, arg[1], arg[2], #arg, select('#', ...), ...)\n"
    .. "print(arg[-1], arg[-2])\n", script))
  local out, err, code = run(q(script) .. " a 'b c'")
  H.eq(out, "true\ta\tb c\t2\t2\ta\tb c\n" .. exe .. "\tnil\n")
  H.eq(err, "")
  H.eq(code, 0)
  out, err, code = run("-e 'x = 2' -e 'print(x * 21)' " .. q(script))
  H.eq(out, "42\ntrue\tnil\tnil\t0\t0\nprint(x * 21)\t-e\n")
  H.eq(err, "")
  H.eq(code, 0)
end)

-- (twenty-ninth session) a script's arguments go on the Lua stack (room is made for them: 300
-- overran it), and the state is closed at the end, so finalizers run as in the stock lua
H.case("a script with many arguments gets them all; its finalizers run at exit", function()
  local script = tmp("_many.lua")
  write(script, "print(select('#', ...), #arg, (select(300, ...)), arg[300])\n"
    .. "setmetatable({}, {__gc = function() print('finalized') end})\n")
  local args = {}
  for i = 1, 300 do args[i] = "a" .. i end
  local out, err, code = run(q(script) .. " " .. table.concat(args, " "))
  H.eq(out, "300\t300\ta300\ta300\nfinalized\n", "stdout")
  H.eq(err, "")
  H.eq(code, 0)
end)

-- (twenty-ninth session) what follows -- is the script and its arguments, never options
H.case("-- ends the options: the next argument is the script, the rest are its arguments", function()
  local script = tmp("_dd.lua")
  write(script, "print(...)\n")
  local out, err, code = run("-- " .. q(script) .. " -e x", "print('REPL')\n")
  H.eq(out, "-e\tx\n", "stdout")
  H.eq(err, "")
  H.eq(code, 0)
  -- -- at the end: the -e chunks run, no script, no REPL (stdin unread)
  out, err, code = run("-e 'print(1)' --", "print('stdin read')\n")
  H.eq(out, "1\n", "stdout")
  H.eq(code, 0)
end)

H.case("errors give status 1 and a traceback", function()
  local script = tmp(".lua")
  write(script, "local function inner() error('deep failure') end\ninner()\n")
  local out, err, code = run(q(script))
  H.eq(code, 1, "failing script")
  has(err, "deep failure", "stderr")
  has(err, "stack traceback", "stderr")
  has(err, "inner", "stderr")
  H.eq(out, "")
  _, err, code = run(q(tmpbase .. ".does_not_exist.lua"))
  H.eq(code, 1, "missing script")
  has(err, "cannot open")
  _, err, code = run("-e 'x = = 1'")
  H.eq(code, 1, "syntax error")
  has(err, "unexpected symbol")
  _, err, code = run("--no-such-option")
  H.eq(code, 1, "unknown option")
  has(err, "usage:")
end)

H.case("- runs a script from stdin", function()
  local out, _, code = run("- x y", "print('stdin', ...)\n")
  H.eq(out, "stdin\tx\ty\n")
  H.eq(code, 0)
end)

H.case("-i runs the script, then the REPL sees its globals", function()
  local script = tmp(".lua")
  write(script, "g = 40 + 2\nprint('ran')\n")
  local out, _, code = run("-i " .. q(script), "g\ng + 1\n")
  H.eq(out, "ran\n42\n43\n")
  H.eq(code, 0)
  write(script, "g = 1\nerror('half way')\n")
  local err
  out, err, code = run("-i " .. q(script), "g\n")
  has(err, "half way")
  H.eq(out, "1\n", "-i enters the REPL even after an error")
  -- (seventeenth session) fed from a pipe, the failed script still makes the status 1 (it was 0)
  H.eq(code, 1, "a failed script before the piped REPL")
  out, err, code = run("-e " .. q("error('q')") .. " -i", "1+1\n")
  has(err, "q"); H.eq(out, "2\n"); H.eq(code, 1, "a failed -e chunk before the piped REPL")
end)

H.case("-v and -h", function()
  local out, _, code = run("-v")
  H.ok(out:match("^confit %S+ %(Lua 5%.4"), "version line: " .. out)
  H.eq(code, 0)
  out, _, code = run("-h")
  has(out, "usage:")
  has(out, "-e code")
  H.eq(code, 0)
end)

-- ------------------------------------------------------------------ Ctrl-C

-- Starts confit in the background, waits for the file `ready` that its Lua code creates, sends
-- SIGINT, and returns stdout, stderr, status. A watchdog kills it after 10 s so a failure to
-- interrupt fails the case instead of hanging the suite.
local function run_interrupted(args, input, ready)
  local inp, out, err = tmp(".in"), tmp(".out"), tmp(".err")
  write(inp, input)
  local sh = table.concat({
    "%s %s < %s > %s 2> %s & pid=$!",
    "(sleep 10; kill -KILL $pid) >/dev/null 2>&1 & wd=$!",
    "i=0; while [ ! -e %s ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done",
    "kill -INT $pid; wait $pid; st=$?; kill $wd 2>/dev/null; echo $st"}, "\n")
  local cmd = string.format(sh, q(exe), args, q(inp), q(out), q(err), q(ready))
  local p = assert(io.popen("CONFIT_HISTORY= sh -c " .. q(cmd), "r"))
  local st = tonumber(p:read("a"):match("%d+"))
  p:close()
  return slurp(out), slurp(err), st
end

H.case("Ctrl-C interrupts a running script: message, status 1", function()
  local ready = tmp(".ready")
  local code = string.format("io.open(%q, 'w'):close() while true do end", ready)
  local _, err, st = run_interrupted("-e " .. q(code), "", ready)
  has(err, "interrupted", "stderr")
  has(err, "stack traceback", "stderr")
  H.eq(st, 1, "status")
  os.remove(ready)
end)

-- (twenty-ninth session, mutation testing of main.c) the script's status, as test_recipes_cli's U5
-- checks it for a recipe, here beside the other Ctrl-C cases
H.case("Ctrl-C ends a script with one line and status 130; an error that only reads so keeps its traceback", function()
  local ready, script = tmp(".ready_s"), tmp("_int.lua")
  write(script, string.format("io.open(%q, 'w'):close()\nwhile true do end\n", ready))
  local out, err, st = run_interrupted(q(script), "", ready)
  H.eq(err, "confit: interrupted\n", "stderr")
  H.eq(out, "")
  H.eq(st, 130, "status")
  os.remove(ready)
  -- with -i the REPL follows, and the status is the session's: the piped input is a script, and
  -- what ran before it failed (1), not the interrupt's 130
  out, err, st = run_interrupted("-i " .. q(script), "print('after')\n", ready)
  H.eq(err, "confit: interrupted\n", "stderr, -i")
  H.eq(out, "after\n", "stdout, -i")
  H.eq(st, 1, "status, -i")
  os.remove(ready)
  -- a Ctrl-C caught, then an error of the script's own that starts with the word
  write(script, string.format("pcall(function() io.open(%q, 'w'):close() while true do end end)\n"
    .. "error('interrupted twice', 0)\n", ready))
  _, err, st = run_interrupted(q(script), "", ready)
  has(err, "confit: interrupted twice\nstack traceback", "stderr")
  H.eq(st, 1, "status")
  os.remove(ready)
  -- the same words with no Ctrl-C at all
  write(script, "error('interrupted', 0)\n")
  _, err, st = run(q(script))
  has(err, "confit: interrupted\nstack traceback", "stderr")
  H.eq(st, 1, "status")
end)

H.case("Ctrl-C in the REPL stops the command and the session goes on", function()
  local ready = tmp(".ready2")
  local input = string.format("io.open(%q, 'w'):close() while true do end\nprint('alive')\n", ready)
  local out, err, st = run_interrupted("", input, ready)
  has(err, "interrupted", "stderr")
  H.eq(out, "alive\n", "stdout")
  H.eq(st, 1, "status: piped input is a script, and one of its chunks was interrupted")
  os.remove(ready)
end)

-- (twenty-ninth session) piped input too: a Ctrl-C while the REPL waits for the rest of a chunk
-- drops the chunk, and the session reads on (the pipe stays open: its writer sleeps)
-- Also: what a chunk wrote is flushed before the REPL waits for input (a program driving the REPL
-- through a pipe waits for it), here io.write's line, read while the REPL waits.
H.case("Ctrl-C while the REPL waits for input drops the pending chunk; the session goes on", function()
  local ready, out, err, early, go = tmp(".ready4"), tmp(".out4"), tmp(".err4"), tmp(".early4"), tmp(".go4")
  -- the writer sends the last line only once the Ctrl-C has been given and had half a second
  -- (a fixed sleep of the writer's raced confit's start on a busy machine)
  local sh = table.concat({
    "{ printf '%%s\\n' %s; echo 'for i = 1, 2 do'; j=0; while [ ! -e %s ] && [ $j -lt 1500 ]; do sleep 0.02; j=$((j+1)); done;",
    "  echo \"print('after')\"; } | CONFIT_HISTORY= %s > %s 2> %s & pid=$!",
    "(sleep 60; kill -KILL $pid) >/dev/null 2>&1 & wd=$!",
    "i=0; while [ ! -e %s ] && [ $i -lt 1500 ]; do sleep 0.02; i=$((i+1)); done",
    "sleep 0.5; cp %s %s; kill -INT $pid; sleep 0.5; : > %s; wait $pid; st=$?; kill $wd 2>/dev/null; echo $st"}, "\n")
  local cmd = string.format(sh, q(string.format("io.write('hello\\n') io.open(%q, 'w'):close();", ready)), q(go),
    q(exe), q(out), q(err), q(ready), q(out), q(early), q(go))
  local p = assert(io.popen("sh -c " .. q(cmd), "r"))
  local st = tonumber(p:read("a"):match("%d+"))
  p:close()
  H.eq(slurp(early), "hello\n", "stdout while the REPL waits")
  H.eq(slurp(out), "hello\nafter\n", "stdout (stderr: " .. slurp(err) .. ")")
  H.eq(st, 0, "status")
  os.remove(ready)
end)

H.case("a Ctrl-C caught by pcall is spent: the next generation runs whole", function()
  local ready = tmp(".ready3")
  local code = string.format([[
    local m = assert(require("confit").load("examples/toy/model"))
    local ok, e = pcall(function() io.open(%q, "w"):close() while true do end end)
    local s = m:generate({"3+4="}, {n = 1, max_new_tokens = 8, ignore_eos = true})[1]
    print(ok, e, #s.tokens, s.finish)]], ready)
  local out, err, st = run_interrupted("-e " .. q(code), "", ready)
  H.eq(out, "false\tinterrupted\t8\tlength\n", "stdout (stderr: " .. err .. ")")
  H.eq(st, 0, "status")
  os.remove(ready)
end)

-- (twenty-ninth session) the handler also raises the core's flag, so a generation (C, no Lua
-- instruction for the hook to stop at) ends at its next step, not after its last token; the
-- profiler counts the steps that ran
H.case("Ctrl-C stops a generation between steps", function()
  local ready = tmp(".ready5")
  local code = string.format([[
    local confit = require("confit")
    local m = assert(confit.load("examples/toy/model"))
    local P = confit.profiler
    P.start()
    local ok, e = pcall(function()
      io.open(%q, "w"):close()
      return m:generate({"3+4="}, {n = 128, max_new_tokens = 120, ignore_eos = true})
    end)
    local steps = 0
    for _, r in ipairs(P.stop()) do if r.phase == "gen.decode" and r.name == "sample" then steps = r.calls end end
    print(ok, e, steps < 119)]], ready)
  local out, err, st = run_interrupted("-e " .. q(code), "", ready)
  H.eq(out, "false\tinterrupted\ttrue\n", "stdout (stderr: " .. err .. ")")
  H.eq(st, 0, "status")
  os.remove(ready)
end)

H.case("output that cannot be written (a full disk) is a failure, named", function()
  if not io.open("/dev/full", "w") then return H.skip("stdout to /dev/full", "no /dev/full") end
  local err = tmp(".err")
  local p = assert(io.popen(("%s -e 'print(1)' > /dev/full 2> %s; echo $?"):format(q(exe), q(err)), "r"))
  local st = tonumber(p:read("a"):match("%d+"))
  p:close()
  H.eq(st, 1, "status")
  has(slurp(err), "cannot write the standard output", "stderr")
end)

-- ------------------------------------------------------------------ a real terminal

local function have(tool)
  local p = io.popen("command -v " .. tool .. " 2>/dev/null")
  local found = p:read("a") ~= ""
  p:close()
  return found
end
local have_script = have("script") and have("timeout")
if have_script then
  H.case("terminal: prompts, Tab completion, multi-line, history file", function()
    local inp, hist = tmp(".tty"), tmp(".hist")
    -- The pty queues all lines at once; libedit reads them as typed-ahead keys.
    write(inp, 'x = "s"\nx:up\t()\nfor i=1,2 do\nprint(i * 10) end\n:quit\n')
    local cmd = string.format("CONFIT_HISTORY=%s timeout 10 script -qec %s /dev/null < %s", q(hist), q(exe), q(inp))
    local p = assert(io.popen(cmd, "r"))
    -- drop CRs, the bell and cursor moves of libedit's redisplay
    local out = p:read("a"):gsub("\r", ""):gsub("\7", ""):gsub("\27%[%d*%a", "")
    p:close()
    has(out, "> ", "prompt")
    has(out, "x:upper()", "completed line")
    has(out, "\nS\n", "result of the completed call")
    has(out, ">> ", "continuation prompt")
    has(out, "\n10\n20\n", "loop output")
    local h = slurp(hist)
    has(h, "x:upper()", "history file")
    lacks(out, "stack traceback", "terminal session")
  end)
else
  H.skip("terminal session", "util-linux `script` not found")
end

-- (twenty-second session) libgomp's default spin of idle threads made the main job 3 to 20 times
-- slower on a machine with one other busy process; confit starts itself with a short spin unless
-- the user chose one
H.case("GOMP_SPINCOUNT is 1000 unless GOMP_SPINCOUNT or OMP_WAIT_POLICY is given, or OpenMP runs one thread", function()
  local function spin(env, pre)
    local p = assert(io.popen(("%s env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY -u OMP_NUM_THREADS %s %s -e 'io.write(tostring(os.getenv(\"GOMP_SPINCOUNT\")))' 2>&1")
                              :format(pre or "", env, q(exe))))
    local out = p:read("a")
    p:close()
    return out
  end
  local np = io.popen("nproc 2>/dev/null"):read("l")
  if tonumber(np) and tonumber(np) > 1 then
    H.eq(spin(""), "1000", "neither given")
  else
    print("  (one CPU to run on: the restart with a spin count is not made; case skipped)")
  end
  H.eq(spin("GOMP_SPINCOUNT=5"), "5", "the user's spin count")
  H.eq(spin("OMP_WAIT_POLICY=passive"), "nil", "the user's wait policy")
  -- (twenty-third session) one OpenMP thread spins nothing: no restart
  H.eq(spin("OMP_NUM_THREADS=1"), "nil", "one thread asked for")
  if os.execute("command -v taskset >/dev/null 2>&1") then
    H.eq(spin("", "taskset -c 0"), "nil", "one CPU to run on")
  end
  -- the script's arguments and standard input reach the program run again
  local script = tmp(".lua")
  write(script, 'io.write(#arg, " ", arg[1], " ", arg[2], " ", io.read("a"))')
  local p = assert(io.popen(("printf 'in' | env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY %s %s 'a b' c"):format(q(exe), q(script))))
  H.eq(p:read("a"), "2 a b c in", "arguments and stdin")
  p:close()
end)

-- (twenty-second session, a review's finding) a script file may start with a byte order mark;
-- piped input that did was a syntax error
H.case("piped input starting with a UTF-8 byte order mark runs", function()
  local out, err, code = run("", "\239\187\191print(1)\nprint(2)\n")
  H.eq(out, "1\n2\n", "stdout: " .. err)
end)

for _, p in ipairs(created) do os.remove(p) end
-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, repl_help)
do

local exe = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
if arg and arg[-1] and arg[-1]:match("confit$") then exe = arg[-1] end
local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

H.case("every function of require('confit') has a :help line (mutant h02)", function()
  local confit = require "confit"
  local names = {}
  for k, v in pairs(confit) do if type(v) == "function" then names[#names + 1] = "confit." .. k end end
  table.sort(names)
  H.ok(#names >= 2, "confit's own functions (the core's are documented by the bindings)")
  local inp = os.tmpname()
  local lines = {}
  for i, n in ipairs(names) do lines[i] = ":help " .. n end
  H.write(inp, table.concat(lines, "\n") .. "\n")
  local p = assert(io.popen(("CONFIT_HISTORY= %s < %s 2>&1"):format(q(exe), q(inp))))
  local out = p:read("a")
  p:close()
  os.remove(inp)
  local missing = {}
  for n in out:gmatch("no help for '([^']+)'") do missing[#missing + 1] = n end
  H.eq(#missing, 0, "no help for: " .. table.concat(missing, ", "))
  H.ok(out:find("confit.profile(fn, ...)", 1, true), "confit.profile's line")
end)
end

-- (nineteenth session, mutation testing: "confit -e" without its chunk exited 0)
do

local function exists(p) local f = io.open(p, "rb"); if f then f:close() return true end return false end
local exe
local bdir = os.getenv("CONFIT_BUILD_DIR")
if bdir and exists(bdir .. "/confit") then exe = bdir .. "/confit"
elseif arg and arg[-1] and arg[-1]:match("confit$") and exists(arg[-1]) then exe = arg[-1]
elseif exists("build/confit") then exe = "build/confit" end
local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function run(args)
  local err = os.tmpname()
  local p = assert(io.popen(("CONFIT_HISTORY= %s %s < /dev/null 2> %s"):format(q(exe), args, q(err)), "r"))
  local out = p:read("a")
  local _, how, code = p:close()
  local e = H.read(err) or ""
  os.remove(err)
  return out, e, how, code
end

if not exe then H.skip("usage errors exit 1", "confit executable not found (set CONFIT_BUILD_DIR)") else
H.case("usage errors exit 1: '-e' without its chunk, an unknown option; -h exits 0", function()
  local out, err, how, code = run("-e")
  H.eq(how, "exit", "not a signal")
  H.eq(code, 1, "confit -e: exit status")
  H.ok(err:find("'-e' needs an argument", 1, true), "the message: " .. err)
  H.eq(out, "", "nothing on stdout")
  _, err, how, code = run("-e 'x = 1' -e")
  H.eq(code, 1, "a trailing -e: exit status")
  _, err, how, code = run("--no-such-option")
  H.eq(code, 1, "unknown option: exit status")
  H.ok(err:find("unrecognized option", 1, true), "unknown option message")
  _, _, how, code = run("-h")
  H.eq(code, 0, "-h exits 0")
end)
end
end

-- (twenty-fourth session) :help tok:chat said the default was "the tokenizer folder's format"
-- and the README said nothing, while a Qwen folder's chatml adds Qwen2.5-Math's system prompt
H.case(":help tok:chat and the README say what the default template writes and how to leave it out", function()
  local chat = require "confit.chat"
  local readme = H.read("README.md")
  for where, text in pairs({[":help tok:chat"] = docs["tok:chat"], README = readme}) do
    H.ok(text:find(chat.QWEN_MATH_SYSTEM, 1, true), where .. " quotes the system message")
    H.ok(text:find("{system = false}", 1, true), where .. " names {system = false}")
  end
  -- what they say is what chatml writes
  H.ok(chat.apply("chatml", "1+1"):find("<|im_start|>system\n" .. chat.QWEN_MATH_SYSTEM .. "<|im_end|>\n", 1, true) == 1)
  H.eq(chat.apply("chatml", "1+1", {system = false}), "<|im_start|>user\n1+1<|im_end|>\n<|im_start|>assistant\n")
  H.ok(docs["confit.tokenizer"]:find("folder", 1, true), ":help confit.tokenizer names the folder form")
end)

-- (twenty-fourth session) a doc edit wrote "\tan" and "\boxed" as a TAB and a backspace: the
-- docs hold printable text, newlines and nothing else of the control characters
H.case("README.md and docs/*.md hold no control characters", function()
  local files = {"README.md"}
  local p = io.popen("ls docs/*.md")
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  H.ok(#files > 3, "docs found")
  for _, f in ipairs(files) do
    local h = assert(io.open(f, "rb"))
    local text = h:read("a")
    h:close()
    local line = 1
    for i = 1, #text do
      local b = text:byte(i)
      if b == 10 then line = line + 1
      elseif b < 32 or b == 127 then error(("%s:%d: control character %d"):format(f, line, b), 0) end
    end
  end
end)

-- (twenty-ninth session) ctest runs each Lua test through tests/lua_test.sh: exit 0 without the
-- harness's summary fails (a confit that ran no script passed every test), as does a status that
-- is not 0 after a clean summary (a sanitizer's report: LeakSanitizer exits 23); 77 is a skip
H.case("tests/lua_test.sh asks both the exit status and the harness's summary", function()
  local cases = {   -- {script, exit status lua_test.sh gives}
    {"print('nothing run')", 1},
    {"print('3 passed, 0 failed, 0 skipped'); os.exit(23)", 23},
    {"print('3 passed, 1 failed, 0 skipped')", 1},
    {"os.exit(77)", 77},
    {"print('3 passed, 0 failed, 0 skipped')", 0},
  }
  for _, c in ipairs(cases) do
    local script = tmp(".lua")
    write(script, c[1] .. "\n")
    local p = io.popen(("sh tests/lua_test.sh %s %s 2>&1"):format(q(exe), q(script)))
    local out = p:read("a")
    local _, _, rc = p:close()
    H.eq(rc, c[2], c[1] .. ": " .. out)
    if c[2] == 1 and c[1]:find("nothing", 1, true) then
      H.ok(out:find("without the harness's summary", 1, true), out)
    end
  end
end)

H.finish()
