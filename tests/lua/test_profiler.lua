-- The region profiler (core/profile.c, lua/l_profile.c, lua/confit/profiler.lua): which regions
-- it records, that nested ops are not counted twice, phases, error paths, generation stages.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"
local P = confit.profiler

-- rows indexed by "phase/name"
local function by_key(rows)
  local t = {}
  for _, r in ipairs(rows) do
    local k = r.phase .. "/" .. r.name
    H.ok(not t[k], "one row per (phase, name): " .. k .. " twice")
    t[k] = r
  end
  return t
end

local cuda_used = confit.cuda and confit.cuda.available and confit.cuda.available()

H.case("forward, backward and optimizer regions, each op once", function()
  local w = confit.randn({16, 32}); w.requires_grad = true
  local x = confit.randn({4, 16})
  local opt = confit.optim.adamw({w}, {lr = 1e-3})
  local t0 = confit.clock()
  local rows = confit.profile(function()
    local y = x:matmul(w):relu():sum()
    y:backward()
    opt:step()
  end)
  local wall = confit.clock() - t0
  local k = by_key(rows)
  for _, key in ipairs({"fwd/matmul", "fwd/relu", "fwd/sum", "bwd/matmul", "bwd/relu", "bwd/sum", "opt/adamw"}) do
    H.ok(k[key], "a row for " .. key)
    H.eq(k[key].calls, 1, key .. " calls")
  end
  -- matmul's backward rule calls matmul twice (core/grad_nn.c): nested, so still one fwd call
  H.eq(k["bwd/accumulate"].calls, 3, "one gradient accumulation per node")
  local sum = 0
  for _, r in ipairs(rows) do
    H.ok(r.host_s >= 0, r.name .. " host_s >= 0")
    sum = sum + r.host_s
    if not cuda_used then H.eq(r.device_s, nil, r.name .. ": no device time on the CPU") end
  end
  H.ok(sum <= wall + 1e-3, string.format("regions (%.6f s) fit in the wall time (%.6f s)", sum, wall))
  H.eq(P.active(), false, "stopped after confit.profile")
end)

H.case("a broadcast input's gradient is reduced in its own region (sum_to)", function()
  local b = confit.randn({32}); b.requires_grad = true
  local x = confit.randn({64, 32}); x.requires_grad = true
  local rows = confit.profile(function() (x + b):sum():backward() end)
  local k = by_key(rows)
  H.ok(k["bwd/sum_to"], "a row for bwd/sum_to")
  H.eq(k["bwd/sum_to"].calls, 1, "one reduction: only b was broadcast")
  H.eq(k["bwd/accumulate"].calls, 2, "one accumulation per node (sum, add)")
  H.near(b.grad:sum():item(), 64 * 32, 1e-9, "b's gradient summed over the 64 rows")
end)

H.case("rows are sorted, largest first, and the report shows them", function()
  local a, b = confit.randn({256, 256}), confit.randn({4})
  b:neg()
  -- (twenty-ninth session) the cheap neg enters first: rows left in the order they were met
  -- (no sort) put it on top
  local wall
  local rows = confit.profile(function()
    b:neg()
    local t0 = confit.clock()
    for _ = 1, 3 do a:matmul(a) end
    wall = confit.clock() - t0
  end)
  local sec = require("confit.profiler").seconds
  for i = 2, #rows do H.ok(sec(rows[i - 1]) >= sec(rows[i]), "sorted at row " .. i) end
  -- the matmuls are nearly all of the loop around them: their host seconds add up to most of its
  -- wall time (a clock that read nanoseconds as 1e-10 s gave a tenth; the bound leaves room for
  -- a busy machine stalling the loop between two matmuls)
  local mm = by_key(rows)["fwd/matmul"].host_s
  H.ok(mm >= 0.25 * wall and mm <= wall + 1e-6, string.format("matmuls %.6f s of a %.6f s loop", mm, wall))
  H.eq(by_key(rows)["fwd/matmul"].calls, 3, "three matmuls")
  -- which row is on top is the clock's call (a busy machine can stall the one neg past three
  -- matmuls): the report shows whichever it is, and not the other
  H.eq(#rows, 2, "two rows (matmul, neg)")
  local text = P.report(rows, {top = 1})
  H.ok(text:find(rows[1].name, 1, true), "report names the top row")
  H.ok(not text:find(rows[2].name, 1, true), "report leaves out the second row")
  H.ok(text:find("1 more rows", 1, true), "report says how many rows it left out")
  H.ok(text:find("total", 1, true), "report has a total line")
  H.eq(P.total(rows).calls, 4, "total calls")
  H.raises(function() P.report(rows, {top = 0}) end, "top must be")
  -- (twenty-fourth session) NaN (no rows printed) and 1.5 were taken
  H.raises(function() P.report(rows, {top = 0 / 0}) end, "profiler.report: top must be an integer >= 1", "nan")
  H.raises(function() P.report(rows, {top = 1.5}) end, "profiler.report: top must be an integer >= 1", "1.5")
  H.ok(P.report(rows, {top = 1.0}):find("total"), "an integral float is an integer")
  H.raises(function() P.report(rows, 5) end, "opts must be a table", "number")
  -- (h24 walkthrough) {tops = 3} printed 25 rows without a word
  H.raises(function() P.report(rows, {tops = 3}) end, "unknown option tops (options: phase, top)")
  H.raises(function() P.report({rows[1], {name = "x"}}) end, "row 2 is not a row")
  -- a mistake in the options names the caller's line, not profiler.lua's
  local ok, e = pcall(function() local text = P.report(rows, {tops = 3}); return text end)
  H.ok(not ok and e:find("test_profiler%.lua:%d+: profiler%.report: unknown option tops"), tostring(e))
end)

H.case("phases label regions; backward and optimizer keep their own", function()
  local w = confit.randn({8, 8}); w.requires_grad = true
  local rows = confit.profile(function()
    local old = P.phase("loss")
    local y = w:mul(w):sum()
    P.phase(old)
    y:backward()
    w:add(w)
  end)
  local k = by_key(rows)
  H.ok(k["loss/mul"] and k["loss/sum"], "ops under the label")
  H.ok(k["bwd/mul"], "backward under bwd")
  H.ok(k["fwd/add"], "label restored afterwards")
  H.raises(function() P.phase("") end, "bad argument #1 to 'phase' (an empty phase label)")
end)

-- (twenty-ninth session) every backward and optimizer step sets its phase and sets the previous
-- one back: the labels are interned once each, not once a step (64 steps later every region was
-- "other"), and a label set back is the same row's
H.case("a long profile of many steps keeps its phases: no \"other\", one row per (phase, name)", function()
  local w = confit.randn({4, 4}); w.requires_grad = true
  local rows = confit.profile(function()
    for _ = 1, 40 do
      w.grad = nil
      w:neg():sum():backward()
    end
  end)
  local k = by_key(rows)
  H.eq(k["fwd/neg"].calls, 40, "fwd/neg")
  H.eq(k["bwd/neg"].calls, 40, "bwd/neg")
  for _, r in ipairs(rows) do H.ok(r.phase == "fwd" or r.phase == "bwd", "phase " .. r.phase .. " of " .. r.name) end
end)

-- (twenty-ninth session) the first phase was the literal "fwd", not the interned one a backward
-- sets back: a profile started before any phase was set showed fwd/neg twice, each with some calls
H.case("a profile started at once keeps one fwd row per op across a backward", function()
  local out, ended, rc = H.run_limited([[
    local confit = require "confit"
    local P = confit.profiler
    local w = confit.randn({4, 4}); w.requires_grad = true
    io.write(select("#", P.start()), "\n")   -- start returns nothing (the REPL prints no value)
    w:neg():sum():backward()
    w:neg()
    for _, r in ipairs(P.stop()) do io.write(r.phase, "/", r.name, " ", r.calls, "\n") end]], 60)
  H.ok(ended and rc == 0, out)
  H.ok(out:match("^0\n"), "start returned no value: " .. out)
  local _, n = out:gsub("fwd/neg ", "")
  H.eq(n, 1, "rows for fwd/neg:\n" .. out)
  H.ok(out:find("fwd/neg 2\n", 1, true), out)
end)

-- (twenty-fourth session) a phase set inside confit.profile(fn) stayed set: the next profile's
-- ops were labelled with it ("leak/matmul"); phase("name", fn) ignored fn without a word
H.case("a phase set inside confit.profile ends with it, on return and on error", function()
  local a = confit.randn({4, 4})
  confit.profile(function() P.phase("leak") end)
  local k = by_key(confit.profile(function() a:matmul(a) end))
  H.ok(k["fwd/matmul"] and not k["leak/matmul"], "the next profile under fwd")
  H.raises(function() confit.profile(function() P.phase("leak"); error("boom") end) end, "boom")
  k = by_key(confit.profile(function() a:matmul(a) end))
  H.ok(k["fwd/matmul"] and not k["leak/matmul"], "after an error too")
  -- a phase set before the profile is kept through it
  local old = P.phase("outer")
  k = by_key(confit.profile(function() P.phase("inner"); a:matmul(a) end))
  H.ok(k["inner/matmul"], "inside: its own")
  H.eq(P.phase(old), "outer", "the caller's phase set again")
  H.raises(function() P.phase("name", function() end) end, "confit.profiler.phase: takes one label, got 2 arguments")
end)

H.case("start/stop misuse is an error; errors inside leave it usable", function()
  H.raises(function() P.stop() end, "not running")
  P.start()
  H.raises(function() P.start() end, "already running")
  local a, b = confit.randn({3, 4}), confit.randn({5, 6})
  local ok = pcall(function() return a:matmul(b) end)
  H.ok(not ok, "the bad matmul raised")
  a:relu()
  local k = by_key(P.stop())
  H.eq(k["fwd/matmul"].calls, 1, "the failed op is timed")
  H.eq(k["fwd/relu"].calls, 1, "an op after the failure is still an outermost region")
  H.raises(function() confit.profile(function() error("boom") end) end, "boom")
  H.eq(P.active(), false, "stopped after fn raised")
  H.raises(function() confit.profile(42) end, "expected a function")
end)

H.case("many regions: the pending list is folded without loss", function()
  local a = confit.randn({4})
  local rows = confit.profile(function() for _ = 1, 10000 do a:neg() end end)
  H.eq(by_key(rows)["fwd/neg"].calls, 10000, "every call counted")
end)

H.case("CPU generation stages", function()
  local m = confit.load("examples/toy/model")
  local L = m.config.num_hidden_layers
  local new, n = 5, 2
  local rows = confit.profile(function()
    return m:generate({{1, 2, 3, 4}, {5, 6}}, {max_new_tokens = new, n = n, ignore_eos = true, temperature = 0.7})
  end)
  local k = by_key(rows)
  H.eq(k["gen.prefill/qkv"].calls, L, "one prefill pass over the layers")
  H.eq(k["gen.prefill/sample"].calls, 1, "first tokens drawn once")
  H.eq(k["gen.decode/qkv"].calls, L * (new - 1), "decode steps x layers")
  H.eq(k["gen.decode/rmsnorm"].calls, 2 * L * (new - 1), "two norms per layer")
  for _, s in ipairs({"embed", "rope_kv", "attention", "o_proj", "gate_up", "swiglu", "down", "final_norm", "lm_head", "sample"}) do
    H.ok(k["gen.decode/" .. s], "decode stage " .. s)
  end
  H.eq(k["gen.decode/sample"].calls, new - 1, "one sampling pass per step")
  -- the phase is restored after generation
  local r2 = confit.profile(function() confit.randn({2}):neg() end)
  H.ok(by_key(r2)["fwd/neg"], "phase back to fwd")
end)

-- (twenty-ninth session) :help confit.profiler.start and the others read the binding's docs
H.case("the profiler's functions are documented under their names", function()
  for _, n in ipairs({"start", "stop", "active", "phase"}) do
    local d = confit.doc["confit.profiler." .. n]
    H.ok(type(d) == "string" and d:find("confit.profiler." .. n .. "(", 1, true), "doc of confit.profiler." .. n .. ": " .. tostring(d))
  end
end)

-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, profiler)
do
local prof = require "confit.profiler"

local ROWS = {
  {phase = "forward", name = "matmul", host_s = 0.001, device_s = 0.009, calls = 3},
  {phase = "backward", name = "matmul_bwd", host_s = 0.002, device_s = 0.0005, calls = 3},
  {phase = "optimizer", name = "adamw", host_s = 0.0005, calls = 1},
}

H.case("seconds: device time when larger than host time, else host time (mutant p01)", function()
  H.eq(prof.seconds(ROWS[1]), 0.009, "device-bound row")
  H.eq(prof.seconds(ROWS[2]), 0.002, "host-bound row")
  H.eq(prof.seconds(ROWS[3]), 0.0005, "no device time")
end)

H.case("report: a row's share is of the larger of the device and host totals (mutants p01, p04)", function()
  local text = prof.report(ROWS)
  -- totals: device 9.5 ms, host 3.5 ms: shares of 9.5 ms
  local line = text:match("[^\n]*matmul\n") or text:match("[^\n]* matmul[^\n]*")
  H.ok(line and line:find(("%.1f%%"):format(100 * 0.009 / 0.0095), 1, true), "matmul's share 94.7%: " .. tostring(line))
  for pctv in text:gmatch("(%d+%.%d)%%") do
    H.ok(tonumber(pctv) <= 100, "no share above 100%: " .. text)
  end
end)

H.case("report: opts.phase keeps one phase's rows and totals (mutant p02)", function()
  local text = prof.report(ROWS, {phase = "backward"})
  H.ok(text:find("matmul_bwd", 1, true), "the backward row")
  H.ok(not text:find(" matmul\n", 1, true) and not text:find("adamw", 1, true), "no other phase's rows:\n" .. text)
  local total = text:match("[^\n]*total$")
  H.ok(total and total:find("2.000", 1, true) and total:find("0.500", 1, true), "totals of the phase: " .. tostring(total))
end)
end

H.finish()
