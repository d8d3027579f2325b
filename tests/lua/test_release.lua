-- Explicit frees run by code a binding calls (lconfit.h, cf_lua_release): a finalizer that an
-- allocation inside a binding runs, or an __index of a table the binding reads, may call
-- t:free() / opt:free() on an object the binding holds. The box reads as freed at once; the
-- object itself is released once no binding is running below (until the eighteenth session it
-- was released at once, and the binding went on reading freed memory: ASan saw it).
-- The finalizer cases run in a fresh process with the collector stopped: new tensor bytes brought
-- to the allocation "pressure" allowance (l_tensor.c) make the next boxed tensor run a full
-- collection, in the middle of the call under test.
-- Also: a parameter table that mixes a list with names is refused (it trained the list alone),
-- and confit.profile refuses a function that yields (the profiler stayed on for good).
-- confit.no_grad and the profiler's pcall only run Lua: frees under them are not deferred.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"
local cli = require "confit.cli"

local EXE = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
local dir = H.tmpdir()

-- Runs a script in a fresh process; returns its output (stdout and stderr) and whether it exited 0.
local function run(name, src)
  local path = dir .. "/" .. name .. ".lua"
  H.write(path, src)
  local p = assert(io.popen(cli.shell_quote(EXE) .. " " .. cli.shell_quote(path) .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

local PRELUDE = [[
local confit = require "confit"
collectgarbage("stop") -- nothing collects but the pressure collection
-- New tensor bytes brought to the allowance, so that the next new tensor collects: a tensor past
-- 256 MiB collects at once and the allowance becomes the live bytes then, measured right after
local function brink()
  local reset = confit.zeros{(268435456 + 4) // 4}
  local live = confit.memory().cpu_bytes
  reset:free()
  return confit.zeros{live // 4}
end
local function freed(obj, method) local ok, err = pcall(obj[method], obj) return not ok and err end
]]

H.case("a finalizer frees an op's input while the op runs: the op finishes, the input is freed after", function()
  local out, ok = run("op_input", PRELUDE .. [[
local a = confit.zeros{10}
local filler = brink()
local ran = false
setmetatable({}, {__gc = function() ran = true; a:free() end})
local r = a:add(1)  -- boxing the number 1 collects: the finalizer frees a, then the kernel reads it
print("ran", ran, "sum", r:sum():item(), "freed", freed(a, "numel"))
-- a's 40 bytes are released at the next explicit free made outside any binding
local before = confit.memory().cpu_bytes
local z = confit.zeros{1}; z:free()
print("released", before - confit.memory().cpu_bytes)
]])
  H.ok(ok, "the script failed:\n" .. out)
  H.ok(out:find("ran\ttrue\tsum\t10.0\tfreed\t[^\n]*tensor was freed"), out)
  H.ok(out:find("released\t40\n"), out)
end)

H.case("a finalizer frees an op's input from a coroutine it resumes: still released after the op", function()
  -- (nineteenth session) the coroutine's own stack holds no binding, so the free was not deferred
  local out, ok = run("op_input_coroutine", PRELUDE .. [[
local a = confit.zeros{10}
local filler = brink()
local ran = false
setmetatable({}, {__gc = function() coroutine.wrap(function() ran = true; a:free() end)() end})
local r = a:add(1)
print("ran", ran, "sum", r:sum():item(), "freed", freed(a, "numel"))
local before = confit.memory().cpu_bytes
local z = confit.zeros{1}; z:free()
print("released", before - confit.memory().cpu_bytes)
-- outside any binding a coroutine's free is immediate
local b = confit.zeros{5}
before = confit.memory().cpu_bytes
coroutine.wrap(function() b:free() end)()
print("at once", before - confit.memory().cpu_bytes)
]])
  H.ok(ok, "the script failed:\n" .. out)
  H.ok(out:find("ran\ttrue\tsum\t10.0\tfreed\t[^\n]*tensor was freed"), out)
  H.ok(out:find("released\t40\n"), out)
  H.ok(out:find("at once\t20\n"), out)
end)

H.case("a finalizer frees the optimizer while opt:state() copies its tensors", function()
  local out, ok = run("optim_state", PRELUDE .. [[
local w, v = confit.zeros({3}, {requires_grad = true}), confit.zeros({2}, {requires_grad = true})
local opt = confit.optim.adamw({w, v}, {lr = 0.1})
local loss = w:sum() + v:sum()
loss:backward(); opt:step() -- the state tensors exist now
local filler = brink()
local ran = false
setmetatable({}, {__gc = function() ran = true; opt:free() end})
local s = opt:state()
print("ran", ran, "nparams", s.nparams, "lr", s.lr, "exp_avg.2", s["exp_avg.2"] and #s["exp_avg.2"], "freed", freed(opt, "params"))
]])
  H.ok(ok, "the script failed:\n" .. out)
  H.ok(out:find("ran\ttrue\tnparams\t2\tlr\t0.1\texp_avg.2\t2\tfreed\t[^\n]*optimizer was freed"), out)
end)

H.case("opt:load_state: an __index of the state that frees the optimizer is refused, not used", function()
  local w = confit.randn({4}, {requires_grad = true})
  local opt = confit.optim.adamw({w})
  local s = opt:state()
  s.nparams = nil
  setmetatable(s, {__index = function(_, k) if k == "nparams" then opt:free() return 1 end end})
  H.raises(function() opt:load_state(s) end, "optimizer was freed")
end)

H.case("a parameter table mixing a list with names is refused (the named tensors were dropped)", function()
  local w = confit.randn({3}, {requires_grad = true})
  local v = confit.randn({2}, {requires_grad = true})
  H.raises(function() confit.optim.adamw({w, bias = v}) end, "mixes a list with other keys")
  H.raises(function() confit.optim.clip_grad_norm({w, bias = v}, 1) end, "mixes a list with other keys")
  H.eq(#confit.optim.adamw({w, v}):params(), 2)
end)

H.case("frees under confit.no_grad and confit.profile are at once (they only run Lua: no binding holds them)", function()
  -- (the first version of the deferral counted no_grad as a binding: its frees waited for it)
  local function freed_bytes()
    local t = confit.zeros{1 << 18}
    local before = confit.memory().cpu_bytes
    t:free()
    return before - confit.memory().cpu_bytes
  end
  H.eq(confit.no_grad(freed_bytes), 1 << 20, "under no_grad")
  H.eq(select(2, confit.profile(freed_bytes)), 1 << 20, "under profile")
end)

H.case("confit.profile: a function that yields is refused, and the profiler is off after", function()
  local co = coroutine.create(function()
    return confit.profile(function() coroutine.yield(1); return 2 end)
  end)
  local ok, err = coroutine.resume(co)
  H.ok(not ok and tostring(err):find("yielded"), "resume: " .. tostring(ok) .. " " .. tostring(err))
  H.eq(confit.profiler.active(), false, "the profiler is off")
  local rows, r = confit.profile(function() return (confit.ones{2} + 1):sum():item() end)
  H.eq(r, 4.0)
  H.ok(#rows > 0, "rows of the next profile")
  -- fn runs on the caller's thread (a coroutine of its own missed main.c's Ctrl-C hook)
  H.eq(select(2, confit.profile(function() return coroutine.running() end)), coroutine.running())
end)

H.finish()
