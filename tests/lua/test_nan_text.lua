-- test_nan_text.lua - a NaN option value reads "nan" in every message, whatever its sign
-- (twenty-eighth session). Lua and printf write 0/0 as "-nan" on x86 (its sign bit is set) and
-- -(0/0) as "nan", so a user who passed the same mistake twice saw two spellings: the core
-- formats through cf_msgnum (core/error.h), the bindings through cf_lua_shown (lconfit.h), the
-- Lua modules through cli.show. Each case calls a documented function with a NaN of each sign.
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

local m = assert(confit.load("examples/toy/model"))
local q = {{question = "1+1?", answer = "2"}}

-- name, function of the NaN, a piece of the message that says what was refused
local CASES = {
  {"clip_grad_norm max_norm", function(N)
     local w = confit.tensor({1, 2}, {requires_grad = true}); w.grad = confit.tensor({3, 4})
     confit.optim.clip_grad_norm({w}, N) end, "max_norm must be >= 0, got nan"},
  {"adamw lr", function(N) confit.optim.adamw({confit.zeros(2)}, {lr = N}) end, "lr must be >= 0, got nan"},
  {"adamw betas", function(N) confit.optim.adamw({confit.zeros(2)}, {betas = {0.9, N}}) end, "got {0.9, nan}"},
  {"sgd momentum", function(N) confit.optim.sgd({confit.zeros(2)}, {momentum = N}) end, "momentum must be >= 0, got nan"},
  {"generate temperature", function(N) m:generate({{1, 2}}, {temperature = N, max_new_tokens = 1}) end,
   "temperature must be a finite number >= 0 (got nan)"},
  {"generate top_p", function(N) m:generate({{1, 2}}, {top_p = N, max_new_tokens = 1}) end, "top_p must be in (0, 1] (got nan)"},
  {"generate score_temperature", function(N) m:generate({{1, 2}}, {score_temperature = N, max_new_tokens = 1}) end,
   "score_temperature must be a finite number > 0 (got nan)"},
  {"generate n", function(N) m:generate({{1, 2}}, {n = N}) end, "option n must be an integer (got nan)"},
  {"logprobs temperature", function(N) m:logprobs({{1, 2, 3}}, {1}, {temperature = N}) end, "temperature must be > 0 (got nan)"},
  {"rmsnorm eps", function(N) confit.ones(2, 2):rmsnorm(confit.ones(2), N) end, "eps must be finite and >= 0, got nan"},
  {"arange", function(N) confit.arange(0, N) end, "end=nan"},
  {"zeros size", function(N) confit.zeros(N) end, "expected an integer, got nan"},
  {"tensor i32 element", function(N) confit.tensor({N}, {dtype = "i32"}) end, "= nan is not an integer"},
  {"tensor index", function(N) return confit.zeros(2)[N] end, "tensor index nan is not an integer"},
  {"decode id", function(N) m.tokenizer:decode({N}) end, "ids[1] is nan"},
  {"init_random std", function(N) confit.model.new(m.config):init_random(1, N) end, "std must be a finite number >= 0, got nan"},
  {"train.run temperature", function(N) require("confit.train").run({model = m, method = "em_ft", questions = q, temperature = N}) end,
   "temperature must be a finite number > 0, got nan"},
  {"evaluate.run top_p", function(N) require("confit.evaluate").run(m, q, {top_p = N}) end, "top_p must be a number in [0, 1], got nan"},
  {"toy_eval.run temperature_scale", function(N) require("confit.toy_eval").run(m, q, {temperature_scale = N}) end,
   "temperature_scale must be a finite number > 0, got nan"},
  {"metrics.pass_at_k", function(N) require("confit.metrics").pass_at_k(N, 1, 1) end, "n must be a non-negative integer, got nan"},
  {"bench.load limit", function(N) require("confit.bench").load("gsm8k", {limit = N}) end, "limit must be an integer >= 0, got nan"},
}

-- (where both signs print "nan" the cases below check nothing new; said so)
if tostring(0 / 0) == tostring(-(0 / 0)) then H.skip("NaN of either sign", "this platform writes both as " .. tostring(0 / 0)) end

for _, c in ipairs(CASES) do
  H.case(c[1] .. ": a NaN of either sign is 'nan'", function()
    for _, N in ipairs({0 / 0, -(0 / 0)}) do
      local ok, err = pcall(c[2], N)
      err = tostring(err)
      H.ok(not ok, c[1] .. " refused " .. tostring(N))
      H.ok(err:find(c[3], 1, true), ("%s (%s): expected %q in: %s"):format(c[1], tostring(N), c[3], err))
      H.ok(not err:find("-nan", 1, true), c[1] .. ": no '-nan' in: " .. err)
    end
  end)
end

H.case("cli.show and rl.show: nan for either sign, the rest as before", function()
  local cli, rl = require "confit.cli", require "confit.rl"
  for _, show in ipairs({cli.show, rl.show}) do
    H.eq(show(0 / 0), "nan"); H.eq(show(-(0 / 0)), "nan")
    H.eq(show(1.5), "1.5"); H.eq(show(2), "2"); H.eq(show(-math.huge), "-inf"); H.eq(show("2"), '"2"')
  end
  H.eq(cli.show(nil), "nil"); H.eq(cli.show(true), "true")
end)

H.finish()
