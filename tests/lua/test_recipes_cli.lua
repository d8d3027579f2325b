-- Every recipe meets command-line and input-file mistakes the same way (confit.cli): ONE line
-- "<recipe>: <what and where>" on stderr, exit status 1, no traceback; --help prints usage and
-- exits 0. Each case runs the recipe as a user does (a subprocess of the confit executable);
-- the cases run side by side in one shell so the whole file takes a few seconds. Nothing trains:
-- every failing case stops in the checks before any work (and writes only under a temp folder).
local H = dofile("tests/lua/harness.lua")
local cli = require "confit.cli"

local EXE = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. q(TMP)))

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Inputs: a folder that passes for a model (config.json only, with the toy's 128 positions: the
-- checks stop before loading),
-- JSONL files with a malformed line and without the question field, grid files, a run directory.
local MODEL = TMP .. "/model"
assert(os.execute("mkdir -p " .. q(MODEL)))
write(MODEL .. "/config.json", '{"max_position_embeddings": 128}\n')
local BADMODEL = TMP .. "/badmodel"
assert(os.execute("mkdir -p " .. q(BADMODEL)))
write(BADMODEL .. "/config.json", '{"max_position_embeddings": 128,\n "hidden_size": }\n')
local BAD = TMP .. "/bad.jsonl"
write(BAD, '{"question": "1+1=", "answer": "2"}\n{"question": oops}\n')
local NOQ = TMP .. "/noq.jsonl"
write(NOQ, '{"problem": "1+1=", "answer": "2"}\n')
local MISSING = TMP .. "/no-such-file.jsonl"
local GOOD = TMP .. "/good.jsonl"
write(GOOD, '{"question": "1+1=", "answer": "2"}\n')
-- a model folder with the toy's byte-level tokenizer (its ChatML prompt is 158 tokens > 128)
local TOKMODEL = TMP .. "/tokmodel"
assert(os.execute("mkdir -p " .. q(TOKMODEL)))
write(TOKMODEL .. "/config.json", '{"max_position_embeddings": 128}\n')
write(TOKMODEL .. "/tokenizer.json", read("examples/toy/model/tokenizer.json"))
local GRID_SYNTAX = TMP .. "/broken_grid.lua"
write(GRID_SYNTAX, "return {grid = {alpha = {0, 0.1}}\n")
local GRID_EMPTY = TMP .. "/empty_axis.lua"
write(GRID_EMPTY, 'return {grid = {alpha = {}}, out = "x"}\n')
local GRID_OK = TMP .. "/grid.lua"
write(GRID_OK, ('return {grid = {alpha = {0}}, out = %q}\n'):format(TMP .. "/never-ran"))
local RUN = TMP .. "/run1"
assert(os.execute("mkdir -p " .. q(RUN)))
write(RUN .. "/config.json", '{"recipe": "rlsc", "name": "r1"}\n')
write(RUN .. "/steps.jsonl", '{"step": 1, "loss": 0.5}\n{"step": 2, loss}\n')
local OUT = TMP .. "/out"   -- every recipe that writes gets an --out here, never the defaults

-- {recipe, args, expected exit status, fragments the output must hold}
local R_OUT = "--out " .. q(OUT .. "/rlsc")
local P_OUT = "--out " .. q(OUT .. "/pretrain")
local C_OUT = "--out " .. q(OUT .. "/cmp") .. " --md " .. q(OUT .. "/cmp.md")
local CASES = {
  -- rlsc
  {"rlsc", "--bogus " .. R_OUT, 1, {"--bogus"}},
  {"rlsc", "--steps x " .. R_OUT, 1, {"--steps", "'x'"}},
  {"rlsc", "--steps -1 " .. R_OUT, 1, {"--steps", "-1"}},
  {"rlsc", "--n 0 " .. R_OUT, 1, {"--n", ">= 1"}},
  {"rlsc", "--top-p 2 " .. R_OUT, 1, {"--top-p", "2"}},
  {"rlsc", "--task bogus " .. R_OUT, 1, {"--task", "bogus", "mixed"}},
  {"rlsc", "--method nope " .. R_OUT, 1, {"--method", "nope"}},
  {"rlsc", "--device tpu " .. R_OUT, 1, {"--device", "tpu"}},
  {"rlsc", "stray " .. R_OUT, 1, {"stray"}},
  {"rlsc", "--model " .. q(TMP .. "/no-model") .. " " .. R_OUT, 1, {"--model", TMP .. "/no-model"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(MISSING) .. " " .. R_OUT, 1, {"--data", MISSING}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(BAD) .. " " .. R_OUT, 1, {BAD .. ":2"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(NOQ) .. " " .. R_OUT, 1,
   {NOQ .. ":1", "--question-field"}},
  {"rlsc", "--model " .. q(BADMODEL) .. " " .. R_OUT, 1, {BADMODEL .. "/config.json:2"}},
  {"rlsc", "--model " .. q(MODEL) .. " --max-new-tokens 500 " .. R_OUT, 1, {"--max-new-tokens 500", "128"}},
  {"rlsc", "--model " .. q(MODEL) .. " --max-new-tokens 125 " .. R_OUT, 1, {"--max-new-tokens 125", "toy prompt"}},
  -- --data prompts are measured before the banner and the run directory (checked at the end)
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --max-new-tokens 16 " .. R_OUT, 1,
   {"tokenizer.json"}},
  {"rlsc", "--model " .. q(TOKMODEL) .. " --data " .. q(GOOD) .. " --max-new-tokens 16 " .. R_OUT, 1,
   {"longest prompt", GOOD, "128"}},
  {"rlsc", "--help", 0, {"usage", "--steps"}},
  -- eval
  {"eval", "--bogus", 1, {"--bogus"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --n x", 1, {"--n", "'x'"}},
  {"eval", "--model " .. q(TMP .. "/no-model") .. " --bench toy", 1, {TMP .. "/no-model"}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(MISSING), 1, {MISSING}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(BAD), 1, {BAD .. ":2"}},
  {"eval", "--model examples/toy/model --bench toy --out " .. q(BAD .. "/x"), 1, {BAD .. "/x"}},
  {"eval", "--help", 0, {"usage"}},
  -- pretrain_toy
  {"pretrain_toy", "--bogus " .. P_OUT, 1, {"--bogus"}},
  {"pretrain_toy", "--steps -5 " .. P_OUT, 1, {"--steps", "-5"}},
  {"pretrain_toy", "--batch many " .. P_OUT, 1, {"--batch", "'many'"}},
  {"pretrain_toy", "--loss-on foo " .. P_OUT, 1, {"--loss-on", "foo"}},
  {"pretrain_toy", "--hidden 130 --heads 4 " .. P_OUT, 1, {"--hidden", "--heads"}},
  {"pretrain_toy", "--out " .. q(BAD .. "/model"), 1, {"--out", BAD .. "/model"}},
  {"pretrain_toy", "--help", 0, {"usage", "--steps"}},
  -- toy_compare
  {"toy_compare", "--bogus " .. C_OUT, 1, {"--bogus"}},
  {"toy_compare", "--seeds 1,x " .. C_OUT, 1, {"--seeds", "'x'"}},
  {"toy_compare", "--methods l2,nope " .. C_OUT, 1, {"--methods", "nope"}},
  {"toy_compare", "--steps -1 " .. C_OUT, 1, {"--steps", "-1"}},
  {"toy_compare", "--model " .. q(TMP .. "/no-model") .. " " .. C_OUT, 1, {"--model", TMP .. "/no-model"}},
  {"toy_compare", "--model " .. q(MODEL) .. " --max-new-tokens 125 " .. C_OUT, 1, {"--max-new-tokens 125"}},
  {"toy_compare", "--help", 0, {"usage", "--seeds"}},
  -- ablate
  {"ablate", "--bogus", 1, {"--bogus"}},
  {"ablate", "", 1, {"grid file"}},
  {"ablate", q(MISSING), 1, {MISSING}},
  {"ablate", q(GRID_SYNTAX), 1, {GRID_SYNTAX .. ":2"}},
  {"ablate", q(GRID_EMPTY), 1, {GRID_EMPTY, "alpha"}},
  {"ablate", q(GRID_OK) .. " --report-only", 1, {"--report-only", TMP .. "/never-ran"}},
  {"ablate", q(GRID_OK) .. " --out " .. q(BAD), 1, {BAD}},
  {"ablate", "--help", 0, {"usage"}},
  -- report
  {"report", "", 1, {"output file", "run directory"}},
  {"report", "--bogus", 1, {"--bogus"}},
  {"report", q(TMP .. "/r.txt") .. " " .. q(RUN), 1, {".html", TMP .. "/r.txt"}},
  {"report", q(TMP .. "/r.html") .. " " .. q(TMP .. "/no-run"), 1, {TMP .. "/no-run"}},
  {"report", q(TMP .. "/no-dir/r.html") .. " " .. q(RUN), 1, {TMP .. "/no-dir"}},
  {"report", "--help", 0, {"usage"}},
}

-- Run every case side by side: output (stdout and stderr together) to TMP/case<i>.out, exit
-- status to TMP/case<i>.rc. `timeout` guards against a case that would start real work.
local has_timeout = os.execute("command -v timeout >/dev/null 2>&1")
local lines = {}
for i, c in ipairs(CASES) do
  local cmd = ("%s%s recipes/%s.lua %s"):format(has_timeout and "timeout 60 " or "", q(EXE), c[1], c[2])
  lines[#lines + 1] = ("( %s > %s 2>&1; echo $? > %s ) &"):format(cmd, q(("%s/case%d.out"):format(TMP, i)),
                                                              q(("%s/case%d.rc"):format(TMP, i)))
end
lines[#lines + 1] = "wait"
local script = TMP .. "/cases.sh"
write(script, table.concat(lines, "\n") .. "\n")
local t0 = require("confit").clock()
local p = assert(io.popen("sh " .. q(script) .. " 2>&1"))
p:read("a")
p:close()
local wall = require("confit").clock() - t0

for i, c in ipairs(CASES) do
  local name, args, want_rc, frags = c[1], c[2], c[3], c[4]
  H.case(("%s %s"):format(name, args), function()
    local text = read(("%s/case%d.out"):format(TMP, i)) or ""
    local rc = tonumber((read(("%s/case%d.rc"):format(TMP, i)) or ""):match("%d+"))
    local shown = ("recipes/%s.lua %s -> rc %s:\n%s"):format(name, args, tostring(rc), text)
    H.eq(rc, want_rc, "exit status of " .. shown)
    H.ok(not text:find("stack traceback", 1, true), "a traceback: " .. shown)
    for _, f in ipairs(frags) do
      H.ok(text:find(f, 1, true), ("output lacks %q: %s"):format(f, shown))
    end
    if want_rc == 1 then
      local body = text:gsub("\n$", "")
      H.ok(body ~= "" and not body:find("\n"), "not exactly one line: " .. shown)
      H.ok(body:sub(1, #name + 2) == name .. ": ", "not prefixed with '" .. name .. ": ': " .. shown)
    end
  end)
end

H.case("report: a malformed JSONL line is a warning naming file and line; the page is written", function()
  local out = TMP .. "/ok.html"
  local cmd = ("%s recipes/report.lua %s %s 2>&1; echo rc=$?"):format(q(EXE), q(out), q(RUN))
  local pp = assert(io.popen(cmd))
  local text = pp:read("a")
  pp:close()
  H.ok(text:find("rc=0", 1, true), text)
  H.ok(text:find("report: warning: " .. RUN .. "/steps.jsonl:2:", 1, true), text)
  H.ok(not text:find("stack traceback", 1, true), text)
  H.ok(read(out) and read(out):find("steps.jsonl:2:", 1, true), "the page names the line")
end)

H.case("nothing was written outside the temp folder, and the cases ran in parallel", function()
  H.ok(not read(OUT .. "/rlsc/config.json"), "rlsc wrote a run directory")
  H.ok(not read(OUT .. "/pretrain/config.json"), "pretrain_toy wrote a model")
  print(("%d recipe invocations in %.1fs"):format(#CASES, wall))
end)

-- The shared parser, in process.
H.case("cli.parse_args: ranges, choices, flags, user errors", function()
  local spec = {steps = {"int", 2, min = 1}, t = {"number", 0.5, above = 0, max = 2},
                mode = {"string", "a", choices = {"a", "b"}}, quiet = {"flag", false}}
  local o = cli.parse_args({"--steps=3", "--t", "2", "--mode", "b", "--quiet"}, spec, "recipes/x.lua")
  H.eq(o.steps, 3); H.eq(o.t, 2); H.eq(o.mode, "b"); H.eq(o.quiet, true); H.ok(o.given.steps)
  H.eq(cli.parse_args({"--quiet=false"}, spec, "x").quiet, false)
  local e = H.raises(function() cli.parse_args({"--steps", "0"}, spec, "recipes/x.lua") end,
                     "x: --steps must be >= 1, got 0")
  H.raises(function() cli.parse_args({"--t", "0"}, spec, "x") end, "--t must be > 0 and <= 2, got 0")
  H.raises(function() cli.parse_args({"--t", "nan"}, spec, "x") end, "--t expects a number")
  H.raises(function() cli.parse_args({"--t", "1e999"}, spec, "x") end, "--t expects a number")
  H.raises(function() cli.parse_args({"--mode", "c"}, spec, "x") end, "--mode must be one of a, b, got 'c'")
  H.raises(function() cli.parse_args({"--quiet=maybe"}, spec, "x") end, "--quiet is a flag")
  H.raises(function() cli.parse_args({"pos"}, spec, "x") end, "unexpected argument 'pos'")
  local ok, err = pcall(cli.parse_args, {"--nope"}, spec, "x")
  H.ok(not ok and cli.is_user_error(err), "a user error object")
  H.eq(tostring(err), "x: unknown flag --nope (see --help)")
  H.ok(e:find("^x: "), e)
  H.ok(cli.is_user_error("rlsc: bad", "rlsc"), "rlsc's string convention")
  H.ok(not cli.is_user_error("recipes/rlsc.lua:12: attempt to index a nil value", "rlsc"), "a bug")
  H.eq(cli.name_of("recipes/toy_compare.lua"), "toy_compare")
end)

os.execute("rm -rf " .. q(TMP))
H.finish()
