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

H.finish()
