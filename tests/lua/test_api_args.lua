-- test_api_args.lua - the documented Lua API (confit.repl_help's names) called with arguments of
-- every wrong kind, drawn from a fixed seed: each call returns or raises an error that says what
-- is wrong, never a Lua runtime error from inside the library ("attempt to index a number value
-- (local 'opts')") or a binding's check that names no function ("bad argument #2 to '?'"), and
-- the process survives. Functions that write files, free objects or train
-- are left out; every other documented name is called. Such calls found the checks the fifteenth
-- session added (m:pad, m:init_random, metrics.summarize, profiler.report, ...).
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"

local tok = assert(confit.tokenizer("examples/toy/model/tokenizer.json"))
local m = assert(confit.load("examples/toy/model"))
local R = function(n) return require("confit." .. n) end

local FUNCS = {
  {"chat.apply", R"chat".apply}, {"confit.load", confit.load}, {"confit.load_safetensors", confit.load_safetensors},
  {"confit.safetensors_nonfinite", confit.safetensors_nonfinite}, {"confit.path_kind", confit.path_kind},
  {"confit.realpath", confit.realpath},
  {"grade.forget", R"grade".forget}, {"chat.markers", R"chat".markers}, {"chat.missing_marker", R"chat".missing_marker},
  {"confit.model.new", confit.model.new}, {"confit.profiler.report", confit.profiler.report},
  {"confit.tokenizer", confit.tokenizer}, {"evaluate.format_table", R"evaluate".format_table},
  {"grade.equal", R"grade".equal}, {"grade.extract", R"grade".extract}, {"grade.normalize", R"grade".normalize},
  {"grade.reference", R"grade".reference}, {"jsonio.read_jsonl", R"jsonio".read_jsonl},
  {"metrics.majority", R"metrics".majority}, {"metrics.vote_groups", R"metrics".vote_groups},
  {"metrics.pass_at_k", R"metrics".pass_at_k},
  {"metrics.summarize", R"metrics".summarize}, {"rl.base_metrics", R"rl".base_metrics}, {"rl.batch", R"rl".batch},
  {"rl.loss", R"rl".loss}, {"rl.backward", R"rl".backward}, {"toy.world", R"toy".world},
  {"rl.seq_logprobs", R"rl".seq_logprobs}, {"rl.token_view", R"rl".token_view}, {"rl.like", R"rl".like},
  {"rl.fill_metrics", R"rl".fill_metrics}, {"train.trainable", R"train".trainable},
  {"evaluate.run", R"evaluate".run},
  {"evaluate.context_hint", R"evaluate".context_hint}, {"evaluate.check_prompts", R"evaluate".check_prompts},
  {"chat.family", R"chat".family}, {"jsonio.sync", R"jsonio".sync}, {"jsonio.is_temp_name", R"jsonio".is_temp_name},
  {"bench.records", R"bench".records}, {"bench.load", R"bench".load}, {"evaluate.summarize", R"evaluate".summarize}, {"rl.snapshot_policy", R"rl".snapshot_policy}, {"rl.aliases", R"rl".aliases},
  {"rl.segment_sums", R"rl".segment_sums}, {"rl.view_entropy", R"rl".view_entropy}, {"rl.advantages", R"rl".advantages},
  {"rl.reads", R"rl".reads}, {"rl.resolve", R"rl".resolve}, {"rl.trains", R"rl".trains}, {"rl.builtin", R"rl".builtin},
  {"train.latest_checkpoint", R"train".latest_checkpoint},
  -- (they write and load, but VALUES below hold no model or optimizer: their checks refuse every
  -- call before anything is read or written)
  {"train.save_checkpoint", R"train".save_checkpoint}, {"train.load_checkpoint", R"train".load_checkpoint}, {"toy_eval.run", R"toy_eval".run}, {"toy_eval.format_table", R"toy_eval".format_table},
  {"pretty.format", R"pretty".format},
}
for _, n in ipairs({"device", "dtype", "encode", "forward", "generate", "hidden", "init_random", "logprobs", "pad",
                    "param_names", "parameters", "prompt_ids", "set_param", "set_recompute", "to"}) do
  FUNCS[#FUNCS + 1] = {"m:" .. n, function(...) return m[n](m, ...) end}
end
for _, n in ipairs({"added_tokens", "chat", "decode", "encode", "encode_chat", "id_to_token", "token_to_id"}) do
  FUNCS[#FUNCS + 1] = {"tok:" .. n, function(...) return tok[n](tok, ...) end}
end
for _, n in ipairs({"exp", "log", "log_softmax", "logsumexp", "matmul", "mean", "silu", "softmax", "sum", "tanh",
                    "transpose"}) do
  FUNCS[#FUNCS + 1] = {"t:" .. n, function(...) return confit.randn({2, 3}, {seed = 1})[n](confit.randn({2, 3}, {seed = 1}), ...) end}
end

H.case("every documented name is called", function()
  local help = require "confit.repl_help"
  local have = {}
  for _, f in ipairs(FUNCS) do have[f[1]] = true end
  local left_out = {["confit.fsync"] = "writes", ["confit.truncate"] = "writes", ["confit.rename_exchange"] = "renames files", ["confit.lock"] = "locks a file", ["confit.save_safetensors"] = "writes",
                    ["confit.profile"] = "runs its argument", ["jsonio.write_json_atomic"] = "writes",
                    ["jsonio.remove_stale_temps"] = "removes files", ["report.write"] = "writes", ["m:save"] = "writes", ["m:save_into"] = "writes",
                    ["m:free"] = "frees the model", ["m:init_random_cuda"] = "needs a GPU", ["tok:free"] = "frees the tokenizer", ["train.run"] = "trains",
                    ["m.config"] = "a table", ["m.tokenizer"] = "a table", ["rl.methods"] = "a table", ["rl.weights"] = "a table",
                    ["rl.per_question"] = "a table", ["rl.register_weighted"] = "registers a method",
                    ["jsonio.append_jsonl"] = "writes", ["jsonio.write_dir_atomic"] = "writes",
                    ["cli.main"] = "runs its argument"}
  for _, mod in ipairs({"rl", "train", "evaluate", "chat", "bench", "grade", "metrics"}) do
    left_out["confit." .. mod] = "a module (a table; test_repl.lua checks it is a field of confit)"
  end
  for name in pairs(help) do
    H.ok(have[name] or left_out[name], name .. " is documented but neither called here nor left out with a reason")
  end
end)

-- (twenty-fourth session) m.generate(prompts) with '.' took the prompts for the model: a false
-- "this model has no tokenizer" (m.encode), "attempt to index a nil value" (m.free, m.forward).
-- Every model method now says how to call it, at the caller's line, whatever it got.
H.case("every model method called with '.' says to call it with ':'", function()
  local help = require "confit.repl_help"
  local names = {}
  for name in pairs(help) do names[#names + 1] = name:match("^m:(.+)$") end
  for name, f in pairs(require("confit.model").Model) do   -- and the undocumented (save_into)
    if type(f) == "function" and name:sub(1, 2) ~= "__" then names[#names + 1] = name end
  end
  for _, meth in ipairs(names) do
    local name = "m:" .. meth
    H.eq(type(m[meth]), "function", name .. " is a method")
    for _, self in ipairs({"abc", {{1}}, confit.tensor({1, 2}), {}, 0}) do
      local ok, err = pcall(function() local r = m[meth](self, {1}); return r end)
      H.ok(not ok and err:find("test_api_args.lua:%d+: model:" .. meth .. ": call it with ':' on a model"),
           name .. " called with '.' on a " .. type(self) .. ": " .. tostring(err))
    end
    local ok, err = pcall(function() local r = m[meth](); return r end)
    H.ok(not ok and err:find("model:" .. meth .. ": call it with ':'", 1, true), name .. "(): " .. tostring(err))
  end
  H.ok(#names >= 36, "the model's methods, documented and not: " .. #names)
  -- a table over a model (a wrapper overriding some methods, as tests and evaluate's callers make)
  -- is a model
  local over = setmetatable({logprobs = function() return "mine" end}, {__index = m})
  H.eq(over:device(), "cpu", "through __index")
  H.eq(over:logprobs(), "mine")
end)

local VALUES = {0, -1, 1, 2, 0.5, 1e300, 0 / 0, 1 / 0, "", "x", "\\boxed{3}", true, false, {}, {1, 2}, {{1}},
                {"a", "b"}, {a = 1}, {n = 2, temperature = 0.5}, print, confit.randn({2}, {seed = 1}), tok,
                "/nonexistent/x.json", {{role = "user", content = "hi"}}, {{role = 1}}, {model = 1}, {samples = {}},
                {{1, 2}, {3}}, "examples/toy/model"}
local function value()
  local v = VALUES[math.random(#VALUES)]
  if type(v) == "table" and getmetatable(v) == nil then   -- a fresh copy: a call may change its argument
    local c = {}
    for k, x in pairs(v) do c[k] = x end
    return c
  end
  return v
end

H.case("2,000 calls with arguments of every kind: no Lua runtime error from inside the library", function()
  math.randomseed(20261127)
  local bad = {}
  for i = 1, 2000 do
    local f = FUNCS[math.random(#FUNCS)]
    local args = {}
    local nargs = math.random(0, 4)
    for j = 1, nargs do args[j] = value() end
    local ok, err = pcall(f[2], table.unpack(args, 1, nargs))
    local msg = not ok and tostring(err) or ""
    -- "bad argument #2 to '?'": a binding's own check under the library's pcall, naming no function
    if not ok and (msg == "" or msg:find("attempt to", 1, true) or msg:find("to '?'", 1, true)) then
      local shown = {}
      for j = 1, nargs do shown[j] = type(args[j]) == "string" and ("%q"):format(args[j]) or type(args[j]) end
      bad[#bad + 1] = ("%s(%s): %s"):format(f[1], table.concat(shown, ", "), msg)
      if #bad >= 10 then break end
    end
  end
  H.ok(#bad == 0, #bad .. " calls failed inside the library:\n" .. table.concat(bad, "\n"))
end)

m:free()
tok:free()
H.finish()
