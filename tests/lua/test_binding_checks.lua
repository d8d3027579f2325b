-- test_binding_checks.lua - the argument checks of the C bindings (lua/l_tensor.c, l_model.c,
-- l_optim.c, l_io.c, l_text.c) that no other test exercised: each case here was written against a
-- mutant of the binding (a check dropped, a bound moved by one, a default changed) that every
-- other test let through (twenty-seventh session). Each asserts what a user sees: the error names
-- the function, the argument or option, and what was wrong; or the documented default holds.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

local flat = H.flat

-- ---------------------------------------------------------------- factories (l_tensor.c)

H.case("factories: integer arguments refuse fractions, naming the argument", function()
  H.raises(function() confit.manual_seed(1.5) end, "manual_seed: argument #1 (seed): expected an integer, got 1.5")
  H.raises(function() confit.zeros(2.5, 3) end, "zeros: argument #1 (size): expected an integer, got 2.5")
  H.raises(function() confit.ones(2, 0.5) end, "ones: argument #2 (size): expected an integer, got 0.5")
  local t = confit.zeros(2, 2)
  H.raises(function() t:get(1, 1.5) end, "get: argument #2 (index): expected an integer, got 1.5")
  H.raises(function() t:set(1.5, 1, 3) end, "set: argument #1 (index): expected an integer, got 1.5")
  H.same_list(flat(t), {0, 0, 0, 0}, 0, "nothing written")
end)

H.case("factories: a seed option that is no integer is named as the option", function()
  -- it read "argument #4 (seed)": the position of a scratch value on the stack, no argument at all
  local err = H.raises(function() confit.randn({2}, {seed = 0.5}) end, "randn: option seed: expected an integer, got 0.5")
  H.ok(not err:find("argument #", 1, true), "no argument number: " .. err)
  H.raises(function() confit.rand(3, {seed = "7"}) end, "rand: option seed: expected an integer, got string")
  -- an integral seed still works, and gives the same draw each time
  H.same_list(flat(confit.randn({3}, {seed = 7})), flat(confit.randn({3}, {seed = 7.0})), 0, "seed 7 and 7.0")
end)

H.case("factories: options must be a table or a dtype name", function()
  H.raises(function() confit.zeros({2}, true) end, "zeros: argument #2 (options): expected a table, got boolean")
  H.raises(function() confit.ones({2}, 5) end, "ones: argument #2 (options): expected a table, got number")
  H.raises(function() confit.tensor({1, 2}, function() end) end, "tensor: argument #2 (options): expected a table, got function")
  H.raises(function() confit.zeros({2}, {dtype = true}) end, "zeros: option dtype must be a name such as \"f32\"")
  H.raises(function() confit.zeros({2}, {dtype = {}}) end, "zeros: option dtype must be a name")
end)

H.case("factories: shapes past 8 dims or with negative sizes are refused", function()
  H.raises(function() confit.zeros({1, 1, 1, 1, 1, 1, 1, 1, 1}) end, "zeros: shape has 9 dims, at most 8")
  H.raises(function() confit.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end, "zeros: more than 8 sizes")
  H.eq(confit.zeros(1, 1, 1, 1, 1, 1, 1, 1):dim(), 8, "8 sizes are fine")
  H.eq(confit.zeros({1, 1, 1, 1, 1, 1, 1, 1}):dim(), 8, "a shape of 8 is fine")
  H.raises(function() confit.zeros(-1) end, "zeros: size 1 is -1, expected >= 0")
  H.raises(function() confit.ones(3, -1) end, "ones: size 2 is -1, expected >= 0")
  H.raises(function() confit.tensor{{{{{{{{{1}}}}}}}}} end, "tensor: nested deeper than 8 levels")
  H.eq(confit.tensor{{{{{{{{1}}}}}}}}:dim(), 8, "8 levels are fine")
end)

H.case("full: the shape and the value are checked", function()
  H.raises(function() confit.full() end, "full: expected a shape and a value")
  H.raises(function() confit.full("x", 1) end, "full: expected a shape and a value")
  H.raises(function() confit.full({2}, "x") end, "full: argument #2 (value): expected a number, got string")
  H.raises(function() confit.full({2}) end, "full: argument #2 (value): expected a number, got no value")
end)

H.case("randn, rand, arange, from_bytes: wrong kinds of arguments", function()
  H.raises(function() confit.randn({2}, {dtype = "i32"}) end, "randn: dtype i32 is not a floating type")
  H.raises(function() confit.rand(2, "i64") end, "rand: dtype i64 is not a floating type")
  H.raises(function() confit.arange() end, "arange: expected numbers ([start,] stop [, step])")
  H.raises(function() confit.arange("5") end, "arange: expected numbers")
  H.raises(function() confit.from_bytes("abcd", 1) end, "from_bytes: argument #2 (shape): expected a table")
end)

-- ---------------------------------------------------------------- op arguments (l_tensor.c do_op)

H.case("ops: a dim or permutation entry one past either end is refused", function()
  local t = confit.zeros(2, 3)
  H.raises(function() return t:sum(3) end, "sum: argument #1 (dim): 3 is out of range for a 2-d tensor [2 x 3] (valid: 1..2 or -2..-1)")
  H.raises(function() return t:sum(-3) end, "sum: argument #1 (dim): -3 is out of range for a 2-d tensor [2 x 3]")
  H.eq(t:sum(-2):shape()[1], 3, "-2 is dim 1")
  H.raises(function() return t:unsqueeze(-4) end, "unsqueeze: argument #1 (dim): -4 is out of range for insertion into a 2-d tensor")
  H.raises(function() return t:permute({1, 3}) end, "permute: permutation entry 2 is 3, out of range for a 2-d tensor [2 x 3]")
  H.raises(function() return t:permute({-3, 1}) end, "permute: permutation entry 1 is -3, out of range")
  H.raises(function() return t:permute({2, 1, 1, 1, 1, 1, 1, 1, 1}) end, "permute: permutation has 9 entries, at most 8")
  H.raises(function() return t:reshape({1, 1, 1, 1, 1, 1, 1, 1, 6}) end, "reshape: shape has 9 entries, at most 8")
  H.raises(function() return t:reshape(1, 1, 1, 1, 1, 1, 1, 1, 6) end, "reshape: shape has 9 entries, at most 8")
  H.raises(function() return t:reshape({2, "3"}) end, "reshape: shape entry 2 is not an integer, got string")
  H.raises(function() return t:reshape({3, 2.5}) end, "reshape: shape entry 2 is not an integer, got 2.5")
end)

H.case("ops: indices, counts and optional numbers", function()
  local t = confit.arange(6):reshape(2, 3)
  H.raises(function() return t:select(2, 4) end, "select: argument #2 (index): 4 is out of range for dim 2 of size 3 in [2 x 3]")
  H.raises(function() return t:select(2, 0) end, "select: argument #2 (index): 0 is out of range for dim 2 of size 3")
  H.raises(function() return t:select(2, -4) end, "select: argument #2 (index): -4 is out of range")
  H.eq(t:select(2, -3):totable()[2], 3, "-3 is the first column")
  H.raises(function() return t:narrow(2, 5, 0) end, "narrow: argument #2 (index): 5 is out of range for dim 2 of size 3")
  H.eq(t:narrow(2, 4, 0):shape()[2], 0, "narrow may start one past the end with length 0")
  H.raises(function() return t:narrow(2, 0, 0) end, "narrow: argument #2 (index): 0 is out of range for dim 2 of size 3")
  H.raises(function() return t:narrow(2, 1, -1) end, "narrow: argument #3 (count): expected an integer >= 0, got -1")
  H.raises(function() return t:clamp(0 / 0) end, "clamp: argument #1 (number): expected a number or nil (nil for the default), got nan")
  H.raises(function() return t:clamp(0, 1, 2) end, "clamp: too many arguments (3 given; t:clamp(lo, hi))")
  H.raises(function() return t:add(t, t) end, "add: too many arguments (2 given, at most 1)")
  H.raises(function() return confit.cat({t, 5}, 1) end, "cat: entry 2 of the tensor list is not a tensor")
  H.raises(function() return confit.cat({}, 1) end, "cat: the tensor list is empty")
  H.raises(function() return t:sort(1, "yes") end, "sort: argument #2 (descending): expected a boolean, got string")
end)

-- ---------------------------------------------------------------- elements, autograd, metamethods

H.case("item, get, set, t[i], #t: counts and ranges", function()
  local t = confit.arange(6):reshape(2, 3)
  H.raises(function() return confit.zeros(2, 2):item() end, "item: tensor [2 x 2] has 4 elements, expected exactly one")
  H.raises(function() return confit.zeros(0):item() end, "item: tensor [0] has 0 elements, expected exactly one")
  H.raises(function() return t:get(1, 1, 1) end, "get: 3 indices given for a 2-d tensor [2 x 3]")
  H.raises(function() return t:get(1, 4) end, "get: index 4 is out of range for dim 2 of size 3 in [2 x 3]")
  H.raises(function() return t:get(-3, 1) end, "get: index -3 is out of range for dim 1 of size 2")
  H.raises(function() return t:set(1, 4, 9) end, "set: index 4 is out of range for dim 2 of size 3 in [2 x 3]")
  H.raises(function() return t:set(1, 1, 1, 9) end, "set: 3 indices given for a 2-d tensor [2 x 3]")
  H.raises(function() return t:set() end, "set: expected indices and a value")
  H.raises(function() return t:set(5) end, "set: 0 indices given for a 2-d tensor [2 x 3]")
  H.same_list(flat(t), {0, 1, 2, 3, 4, 5}, 0, "no refused write landed")
  H.raises(function() return t[-3] end, "t[-3]: index out of range for dim 1 of size 2 in [2 x 3]")
  H.raises(function() return t[3] end, "t[3]: index out of range for dim 1 of size 2", "ipairs")
  H.eq(t[-2]:totable()[1], 0, "t[-2] is the first row")
  H.raises(function() return #confit.tensor(1) end, "#t: a 0-d tensor has no length (use t:item())")
end)

H.case("autograd switches: leaves, dtypes, seeds, grads and options", function()
  local x = confit.ones(2):requires_grad_()
  H.eq(confit.zeros(2):requires_grad_().requires_grad, true, "requires_grad_() means on")
  H.eq(confit.zeros(2):requires_grad_(false).requires_grad, false, "requires_grad_(false) means off")
  local y = x * 2
  H.raises(function() y.requires_grad = false end, "requires_grad can only be set on leaf tensors; this one was computed by mul")
  H.raises(function() y:requires_grad_() end, "requires_grad can only be set on leaf tensors")
  local ids = confit.zeros(2, {dtype = "i64"})
  H.raises(function() ids:requires_grad_() end, "requires_grad needs a floating tensor, not i64")
  H.eq(ids.requires_grad, false, "the integer tensor still needs no gradient")
  H.raises(function() (x * 2):sum():backward({retain = true}) end, "backward: unknown option 'retain' (the only option is retain_graph)")
  H.raises(function() (x * 2):backward("1") end, "backward: the seed must be a tensor or a number, got string")
  H.eq(x.grad, nil, "no refused backward left a gradient")
  H.raises(function() x.grad = confit.zeros(2, {dtype = "f64"}) end, "grad: must match the tensor: [2] f64 given for [2] f32")
  H.raises(function() x.grad = confit.zeros(3) end, "grad: must match the tensor: [3] f32 given for [2] f32")
  H.eq(x.grad, nil, "no refused gradient was kept")
end)

H.case("in-place writes: copy_ refusals and set's version bump", function()
  local x = confit.ones(2):requires_grad_()
  H.raises(function() confit.zeros(2, 2):expand(3, 2, 2):copy_(confit.zeros(3, 2, 2)) end,
           "copy_: the destination [3 x 2 x 2] repeats its elements along dim 1 (an expanded view)")
  H.raises(function() confit.zeros(2):copy_(x) end, "copy_: src needs a gradient")
  confit.no_grad(function() H.eq(confit.zeros(2):copy_(x):totable()[1], 1, "copy_ under no_grad") end)
  -- t:set is an in-place write: a backward that needs the old value refuses
  local w = confit.ones(2):requires_grad_()
  local z = w * w
  w:set(1, 5)
  H.raises(function() z:sum():backward() end, "backward: input 1 [2] f32 of mul was modified in place")
end)

H.case("no_grad: restores the tape after an error, refuses what it cannot call", function()
  H.eq(confit.grad_enabled(), true, "recording to begin with")
  local ok = pcall(confit.no_grad, function() error("boom") end)
  H.eq(ok, false, "the error came through")
  H.eq(confit.grad_enabled(), true, "recording again after the error")
  H.raises(function() confit.no_grad(5) end, "no_grad: argument #1: expected a function to run without the tape, got number")
  H.raises(function() confit.no_grad({}) end, "no_grad: argument #1: expected a function to run without the tape, got table")
  local callable = setmetatable({}, {__call = function(_, a) return a + 1 end})
  H.eq(confit.no_grad(callable, 1), 2, "a callable table runs")
  H.same_list(flat(-confit.tensor{1, 2}), {-1, -2}, 0, "unary minus")
end)

-- ---------------------------------------------------------------- the model (l_model.c)

local m = assert(confit.load("examples/toy/model"))

H.case("m:logprobs: lists, dims and temperature", function()
  local ids = confit.tensor({{1, 2, 3}}, {dtype = "i64"})
  H.raises(function() m:logprobs(ids, {1, 2}) end, "logprobs: prompt_lens has 2 entries, the batch has 1 rows")
  H.raises(function() m:logprobs(ids, {1.5}) end, "logprobs: prompt_lens[1] is not an integer")
  H.raises(function() m:logprobs(ids, {1}, {temperature = 0}) end, "logprobs: temperature must be > 0 (got 0.0)")
  H.raises(function() m:logprobs(ids, {1}, {temperature = -1}) end, "logprobs: temperature must be > 0")
  -- the binding itself: ids must be [B, T]; the temperature defaults to 1
  H.raises(function() m.core:logprobs(confit.tensor({1, 2, 3}, {dtype = "i64"}), {1}, 1.0) end,
           "logprobs: ids must be [B, T], got 1 dims")
  H.eq(m.core:logprobs(ids, {1}):item(), m.core:logprobs(ids, {1}, 1.0):item(), "default temperature 1")
  H.ok(m.core:logprobs(ids, {1}):item() ~= m.core:logprobs(ids, {1}, 2.0):item(), "the temperature matters")
end)

H.case("m:generate: options and prompts are checked before anything is generated", function()
  H.raises(function() m:generate({{1, 2}}, {bogus = 1}) end, "generate: unknown option bogus")
  H.raises(function() m:generate({{1, 2}}, {n = 0}) end, "generate: n must be in [1, 2^20] (got 0)")
  H.raises(function() m:generate({{1, 2}}, {top_k = -1}) end, "generate: top_k must be >= 0 (got -1)")
  H.raises(function() m:generate({{1, 2}}, {score_temperature = math.huge}) end,
           "generate: score_temperature must be a finite number > 0 (got inf)")
  H.raises(function() m:generate({{1, 2}}, {ignore_eos = "no"}) end, "generate: option ignore_eos must be true or false (got string)")
  H.raises(function() m:generate({{1, 2}}, {stop = {257}}) end, "generate: stop[1] = 257 is outside the vocabulary [0, 257)")
  H.raises(function() m:generate({{1, 2}}, {stop = {-1}}) end, "generate: stop[1] = -1 is outside the vocabulary")
  H.raises(function() m:generate({{1, 2.5}}, {max_new_tokens = 1}) end, "generate: prompt 1 token 2 is not an integer")
  H.raises(function() m:generate({{1, 2}}, {temperature = "0.5"}) end, "generate: option temperature must be a number (got string)")
  H.raises(function() m:generate({{1, 2}}, {max_new_tokens = 2 ^ 25}) end, "generate: max_new_tokens must be in [0, 2^24]")
  local long = {}
  for i = 1, m.config.max_position_embeddings do long[i] = 1 end
  H.raises(function() m:generate({long}, {}) end, "generate: prompt 1 has 128 tokens, and the model's context",
           "leaves no position to generate into")
  long[#long] = nil
  H.eq(#m:generate({long}, {seed = 1})[1].tokens, 1, "one position left: one token")
end)

-- (twenty-eighth session) the lists' lengths came from luaL_len: a __len of -1 asked for an
-- allocation of 2^64 - 8 bytes ("not enough memory"), one of 2^32 + 1 wrapped to 1 prompt
H.case("m.core:generate and logprobs: a list length (#, through __len) that is no count is refused", function()
  local function len_of(n) return setmetatable({}, {__len = function() return n end}) end
  local BAD = "must be an integer in [0, 2147483647], got "
  H.raises(function() m.core:generate(len_of(-1), {}) end, "generate: the length (#) of the list of prompts " .. BAD .. "-1")
  H.raises(function() m.core:generate(len_of(2 ^ 32 + 1), {}) end, "the list of prompts " .. BAD .. "4294967297")
  H.raises(function() m.core:generate(len_of(1.5), {}) end, "the list of prompts " .. BAD .. "1.5")
  H.raises(function() m.core:generate(len_of(0 / 0), {}) end, "the list of prompts " .. BAD .. "nan")
  H.raises(function() m.core:generate(len_of({}), {}) end, "the list of prompts " .. BAD .. "table")
  H.raises(function() m.core:generate({{1}, len_of(-2)}, {}) end, "generate: the length (#) of prompt 2 " .. BAD .. "-2")
  H.raises(function() m.core:generate({{1}}, {stop = len_of(-1)}) end, "generate: the length (#) of option stop " .. BAD .. "-1")
  local ids = confit.tensor({{1, 2, 3}}, {dtype = "i64"})
  H.raises(function() m.core:logprobs(ids, len_of(-1)) end, "logprobs: the length (#) of prompt_lens " .. BAD .. "-1")
  -- a __len that gives a count is still honoured (the entries read through __index)
  local p = setmetatable({}, {__len = function() return 1 end, __index = function(_, i) return i == 1 and {1, 2} or nil end})
  H.eq(#m.core:generate(p, {max_new_tokens = 1, seed = 1}), 1, "one prompt, one sample")
end)

H.case("m:set_param and m:set_recompute: names and kinds", function()
  H.raises(function() m:set_param("nope", confit.zeros(1)) end, "set_param: the model has no parameter \"nope\"")
  -- luaL_checktype's "bad argument #1 to 'set_recompute'" named the wrapper's line in model.lua
  local err = H.raises(function() m:set_recompute("yes") end, "set_recompute: argument #1 (on): expected a boolean, got string")
  H.ok(err:find("^[^\n]*test_binding_checks%.lua:%d+: set_recompute"), "the caller's line: " .. err)
  H.raises(function() m:set_recompute(1) end, "set_recompute: argument #1 (on): expected a boolean, got number")
  H.eq(m:set_recompute(true), false, "previous setting")
  H.eq(m:set_recompute(false), true, "previous setting")
end)

-- ---------------------------------------------------------------- optimizers (l_optim.c)

H.case("optimizers: parameters and options", function()
  local w = confit.zeros(2, 2):requires_grad_()
  local O = confit.optim
  H.raises(function() O.adamw({w, b = w}) end, "adamw: the parameter table mixes a list with other keys")
  H.raises(function() O.adamw({w, 5}) end, "adamw: entry 2 of the parameter list is a number, not a tensor")
  H.raises(function() O.sgd({a = w, b = 5}) end, "sgd: parameter 'b' is a number, not a tensor")
  H.raises(function() O.adamw({w}, {lr = "0.1"}) end, "adamw: lr must be a number, got string")
  H.raises(function() O.adamw({w}, {betas = {0.9}}) end, "adamw: betas must be a table of two numbers {beta1, beta2}")
  H.raises(function() O.adamw({w}, {betas = {0.9, 0.99, 0.5}}) end, "adamw: betas must be a table of two numbers")
  H.raises(function() O.sgd({w}, {nesterov = 1}) end, "sgd: nesterov must be a boolean")
  H.raises(function() O.adamw({w}, {state_dtype = "f16"}) end, "adamw: state_dtype must be \"f32\" or \"bf16\", got \"f16\"")
  H.raises(function() O.adamw({w}, {state_dtype = 5}) end, "adamw: state_dtype must be \"f32\" or \"bf16\", got a number")
  H.raises(function() O.adamw({w}, {momentum = 0.9}) end, "adamw: unknown option 'momentum'")
  H.raises(function() O.adamw({w}, {lr = -1}) end, "adamw: lr must be >= 0, got -1")
  local opt = O.adamw({w}, {lr = 0.5})
  H.raises(function() opt.lr = -1 end, "lr must be >= 0, got -1")
  H.eq(opt.lr, 0.5, "the refused lr was not kept")
  opt:free()
end)

H.case("clip_grad_norm: its option", function()
  local w = confit.zeros(2):requires_grad_()
  w.grad = confit.full({2}, 0 / 0)
  H.raises(function() confit.optim.clip_grad_norm({w}, 1, {strict = true}) end,
           "clip_grad_norm: unknown option 'strict' (expected error_if_nonfinite)")
  H.raises(function() confit.optim.clip_grad_norm({w}, 1, {error_if_nonfinite = true}) end,
           "clip_grad_norm: the gradients' total norm is nan")
  local n = confit.optim.clip_grad_norm({w}, 1)
  H.ok(n ~= n, "without the option: the NaN norm is returned")
end)

H.case("opt:load_state: every refusal, and the hyperparameters it restores", function()
  local w = confit.zeros(2, 2):requires_grad_()
  local a = confit.optim.adamw({w}, {lr = 0.5})
  local sgd = confit.optim.sgd({w})
  H.raises(function() a:load_state(sgd:state()) end, "load_state: the state is of a sgd optimizer, this one is adamw")
  local st = a:state(); st.nparams = 0
  H.raises(function() a:load_state(st) end, "load_state: the state has 0 parameters, this optimizer 1")
  st = a:state(); st.steps = -1
  H.raises(function() a:load_state(st) end, "load_state: steps must be an integer in [0, 2^53], got -1")
  st = a:state(); st["step.1"] = 3
  H.raises(function() a:load_state(st) end, "load_state: step.1 must be an integer in [0, steps = 0], got 3")
  w.grad = confit.ones(2, 2)
  a:step()
  st = a:state(); st["exp_avg.1"] = confit.zeros(3)
  H.raises(function() a:load_state(st) end, "load_state: state of parameter 1 is [3], the parameter is [2 x 2]")
  st = a:state(); st["exp_avg_sq.1"] = confit.full({2, 2}, 0 / 0)
  H.raises(function() a:load_state(st) end, "load_state: exp_avg_sq.1 holds NaN or inf")
  st = a:state(); st["master.1"] = confit.zeros(2, 2)
  H.raises(function() a:load_state(st) end, "load_state: the state has a master copy of parameter 1 (trained as bf16)")
  st = a:state(); st["exp_avg.1"] = 5
  H.raises(function() a:load_state(st) end, "load_state: exp_avg.1 is a number, not a tensor")
  -- the saved hyperparameters replace the optimizer's own
  st = a:state(); st.lr = 0.25; st.weight_decay = 0.5
  a.lr = 1
  a:load_state(st)
  H.eq(a.lr, 0.25, "lr from the state")
  H.eq(a.weight_decay, 0.5, "weight_decay from the state")
  a:free(); sgd:free()
end)

-- ---------------------------------------------------------------- safetensors (l_io.c)

H.case("save_safetensors: names, values and metadata are checked before writing", function()
  local path = os.tmpname()
  local one = confit.zeros(1)
  H.raises(function() confit.save_safetensors(path, {[1] = one}) end, "save_safetensors: tensor names must be strings")
  H.raises(function() confit.save_safetensors(path, {["a\0b"] = one}) end, "save_safetensors: the tensor name \"a...\" holds a NUL byte")
  H.raises(function() confit.save_safetensors(path, {a = 5}) end, "save_safetensors: tensors.a is a number, not a tensor")
  H.raises(function() confit.save_safetensors(path, {a = one}, {k = 5}) end, "save_safetensors: metadata must map strings to strings")
  H.raises(function() confit.save_safetensors(path, {a = one}, {[1] = "x"}) end, "save_safetensors: metadata must map strings to strings")
  H.raises(function() confit.save_safetensors(path, {a = one}, {k = "x\0y"}) end, "save_safetensors: metadata \"k\" holds a NUL byte")
  local f = assert(io.open(path, "rb"))
  H.eq(f:read("a"), "", "nothing was written over the file")
  f:close()
  -- the first tensor in the file's order that holds a NaN or an infinity
  assert(confit.save_safetensors(path, {b = confit.full({2}, 1 / 0), c = confit.full({2}, 0 / 0), a = confit.zeros(2)}))
  H.eq(confit.safetensors_nonfinite(path), "b", "b comes first (laid out by name)")
  assert(confit.save_safetensors(path, {a = confit.zeros(2)}))
  H.eq(confit.safetensors_nonfinite(path), false, "a finite file")
  H.raises(function() confit.truncate(path, -1) end, "truncate", "size must be >= 0")
  os.remove(path)
end)

H.case("load_safetensors: an F16 tensor widens to f32", function()
  local path = os.tmpname()
  local header = '{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}'
  local f = assert(io.open(path, "wb"))
  f:write(string.pack("<I8", #header), header, string.pack("<I2I2", 0x3C00, 0xC000)) -- 1.0, -2.0
  f:close()
  local t, err = confit.load_safetensors(path)
  os.remove(path)
  H.ok(t, err)
  H.eq(t.h:dtype(), "f32")
  H.same_list(flat(t.h), {1, -2}, 0, "F16 values")
end)

-- ---------------------------------------------------------------- the tokenizer (l_text.c)

H.case("tokenizer: ids out of range and the decode defaults", function()
  local tok = assert(confit.tokenizer("examples/toy/model/tokenizer.json"))
  H.eq(tok:id_to_token(-1), nil, "a negative id is no token")
  H.eq(tok:id_to_token(math.tointeger(2 ^ 32)), nil, "an id past 32 bits is no token (not id 0)")
  H.eq(tok.bpe:id_to_token(-1), nil, "the binding: a negative id")
  H.eq(tok.bpe:id_to_token(math.tointeger(2 ^ 32)), nil, "the binding: an id past 32 bits")
  H.eq(tok:id_to_token(72), "H", "an id in range")
  H.raises(function() tok:decode({1.5}) end, "decode: ids[1] is 1.5, not an integer token id")
  H.raises(function() tok:decode({72, math.tointeger(2 ^ 32) + 72}) end, "decode: ids[2] is 4294967368, outside the token id range")
  local eot = tok:token_to_id("<|endoftext|>")
  -- defaults: special tokens kept, unknown ids skipped
  H.eq(tok:decode({eot, 72}), "<|endoftext|>H", "special tokens kept by default")
  H.eq(tok:decode({eot, 72}, {skip_special = true}), "H", "skip_special drops them")
  H.eq(tok:decode({72, 1000}), "H", "an unknown id is skipped by default")
  H.raises(function() tok:decode({72, 1000}, {strict = true}) end, "id 1000 (position 2) is not a token of this vocabulary")
  tok:free()
end)

H.finish()
