-- confit: the user-facing module, built on the C module confit.core.
--
-- Everything of confit.core is reachable through this table (__index): tensor constructors
-- (confit.tensor, zeros, ones, full, randn, rand, arange, from_bytes, manual_seed), every op of
-- core/ops.def as a module function and a tensor method (confit.ops lists them; confit.cat,
-- confit.stack, confit.where take lists/conditions first), autograd switches (no_grad,
-- grad_enabled, set_grad_enabled), confit.optim (adamw, sgd, clip_grad_norm), confit.clock,
-- confit.memory, confit.profiler (start, stop, active, phase; report and confit.profile(fn, ...) are
-- in lua/confit/profiler.lua) and confit.doc (name -> one-line doc, shown by the REPL's :help).
-- Dtypes default to f32 everywhere unless opts.dtype says otherwise, also for integer data.
--
-- The Lua modules :help lists as confit.<name> (rl, train, evaluate, chat, bench, grade,
-- metrics) are fields too, each required on first use: confit.evaluate is
-- require("confit.evaluate"). (Not at load time: they require "confit" themselves.)
local core = require "confit.core"
local MODULES = {"rl", "train", "evaluate", "chat", "bench", "grade", "metrics"}
local is_module = {}
-- the REPL's Tab completion cannot enumerate an __index function: it offers __methods' keys
local names = {}
for k, v in pairs(core) do names[k] = v end
for _, n in ipairs(MODULES) do is_module[n] = true; names[n] = true end
local confit = setmetatable({}, {
  __index = function(t, k)
    local v = core[k]
    if v == nil and is_module[k] then
      v = require("confit." .. k)
      rawset(t, k, v)
    end
    return v
  end,
  __methods = names,
})
confit.tokenizer = function(path) return require("confit.tokenizer").new(path) end
-- Models: Hugging Face folders in and out (lua/confit/model.lua).
confit.load = function(dir) return require("confit.model").load(dir) end
confit.model = setmetatable({}, {__index = function(_, k) return require("confit.model")[k] end})
-- Profiling: confit.profile(fn, ...) -> rows, fn's results; confit.profiler.report(rows [, opts]).
confit.profile = function(...) return require("confit.profiler").run(...) end
core.profiler.report = function(...) return require("confit.profiler").report(...) end
core.profiler.total = function(...) return require("confit.profiler").total(...) end
return confit
