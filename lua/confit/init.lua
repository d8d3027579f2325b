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
local core = require "confit.core"
local confit = setmetatable({}, {__index = core})
confit.tokenizer = function(path) return require("confit.tokenizer").new(path) end
-- Models: Hugging Face folders in and out (lua/confit/model.lua).
confit.load = function(dir) return require("confit.model").load(dir) end
confit.model = setmetatable({}, {__index = function(_, k) return require("confit.model")[k] end})
-- Profiling: confit.profile(fn, ...) -> rows, fn's results; confit.profiler.report(rows [, opts]).
confit.profile = function(...) return require("confit.profiler").run(...) end
core.profiler.report = function(...) return require("confit.profiler").report(...) end
core.profiler.total = function(...) return require("confit.profiler").total(...) end
return confit
