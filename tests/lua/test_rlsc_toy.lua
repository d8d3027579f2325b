-- The main job (recipes/rlsc.lua) on a reduced size, run as a user runs it: it prints as its
-- last line one JSON object whose before/after hold every metric,
-- writes the run directory of docs/RUNDIR.md, and gives the same numbers bit for bit when run
-- twice with the same seed. Also the temperature-only baseline's "after" (no training).
local H = dofile("tests/lua/harness.lua")
local jsonio = require "confit.jsonio"
local toy_eval = require "confit.toy_eval"

local MODEL = "examples/toy/model"
do
  local f = io.open(MODEL .. "/model.safetensors", "rb")
  if not f then H.skip_all("no shipped toy checkpoint at " .. MODEL .. " (make it with recipes/pretrain_toy.lua)") end
  f:close()
end

local exe = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
local clock = require("confit").clock

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function run(args, out)
  local cmd = ("%q recipes/rlsc.lua %s --out %q 2>&1"):format(exe, args, out)
  local t0 = clock()
  local p = assert(io.popen(cmd))
  local text = p:read("a")
  local ok = p:close()
  local dt = clock() - t0
  local last
  for line in text:gmatch("[^\n]+") do last = line end
  return ok, text, last, dt
end

local REDUCED = "--steps 2 --questions-per-step 2 --n 8 --eval-questions 12 --eval-n 8 --seed 3"

local first
H.case("reduced main job: last line holds every metric", function()
  local out = tmpdir()
  local ok, text, last = run(REDUCED, out)
  H.ok(ok, "the recipe failed:\n" .. text)
  local j = jsonio.decode(last)
  H.ok(type(j) == "table" and j.before and j.after and j.config, "last line: " .. tostring(last))
  for _, k in ipairs(toy_eval.keys(8)) do   -- named after --eval-n 8: maj8, pass2, pass4, pass8
    H.ok(type(j.before[k]) == "number", "before." .. k)
    H.ok(type(j.after[k]) == "number", "after." .. k)
  end
  for _, k in ipairs({"greedy_acc", "pass1_t05", "pass1_t10", "maj8", "pass8", "direct_share",
                      "mean_confidence", "weight_share"}) do
    H.ok(j.before[k] >= 0 and j.before[k] <= 1, k .. " is a fraction")
  end
  H.eq(j.config.method, "l2")
  H.eq(j.config.alpha, 0.1)
  H.eq(j.config.steps, 2)
  -- the run directory
  local cfg = assert(jsonio.read_json(out .. "/config.json"))
  H.eq(cfg.recipe, "rlsc")
  local steps = assert(jsonio.read_jsonl(out .. "/steps.jsonl"))
  H.eq(#steps, 2, "steps.jsonl lines")
  for _, k in ipairs({"step", "loss", "mean_logp", "weight_share", "mean_confidence", "mean_length",
                      "box_rate", "tokens_per_s", "step_s", "train_acc"}) do
    H.ok(steps[1][k] ~= nil, "steps.jsonl has " .. k)
  end
  local eb = assert(jsonio.read_jsonl(out .. "/eval_before.jsonl"))
  local ea = assert(jsonio.read_jsonl(out .. "/eval_after.jsonl"))
  H.eq(#eb, 12); H.eq(#ea, 12)
  H.eq(#eb[1].samples, 8, "samples per question")
  for _, k in ipairs({"completion", "correct", "length", "logprob"}) do
    H.ok(eb[1].samples[1][k] ~= nil, "sample record has " .. k)
  end
  H.ok(eb[1].greedy and eb[1].answer and eb[1].question, "greedy/answer/question")
  local summary = assert(jsonio.read_json(out .. "/summary.json"))
  H.eq(summary.before.greedy_acc, j.before.greedy_acc, "summary.json = last line")
  -- RUNDIR.md's names carry the eval's sample count (--eval-n 8), not a fixed 16
  H.eq(summary.after["maj@8"], summary.after.maj8, "maj@8")
  H.eq(summary.after["pass@8"], summary.after.pass8, "pass@8")
  H.eq(j.after.maj16, nil, "no maj16 from 8 samples"); H.eq(j.after.pass16, nil, "no pass16 from 8 samples")
  H.eq(summary.after["maj@16"], nil, "no maj@16 from 8 samples")
  H.eq(summary.after["pass@16"], nil, "no pass@16 from 8 samples")
  -- (twenty-eighth session) the evaluation before training is toy_eval's on the --eval-seed (1)
  -- questions, sampled with --seed (3), as the header says: the same numbers in-process
  local m = assert(require("confit.model").load(MODEL))
  local qs = require("confit.toy").world("mixed"):questions("heldout", 12, 1)
  local want = toy_eval.run(m, qs, {n = 8, seed = 3, max_new_tokens = 64, benchmark = "toy-mixed"})
  m:free()
  for _, k in ipairs({"pass1_t05", "pass1_t10", "mean_confidence", "mean_length"}) do
    H.eq(j.before[k], want[k], "before." .. k .. " as toy_eval.run gives it")
  end
  first = j
  os.execute(("rm -rf %q"):format(out))
end)

H.case("same seed, same metrics bit for bit", function()
  H.ok(first, "needs the first run")
  local out = tmpdir()
  local ok, text, last = run(REDUCED, out)
  H.ok(ok, text)
  local j = jsonio.decode(last)
  H.eq(jsonio.encode(j.before), jsonio.encode(first.before), "before")
  H.eq(jsonio.encode(j.after), jsonio.encode(first.after), "after")
  os.execute(("rm -rf %q"):format(out))
end)

H.case("--recompute: the same run bit for bit (recomputed layers give the same gradients)", function()
  H.ok(first, "needs the first run")
  local out = tmpdir()
  local ok, text, last = run(REDUCED .. " --recompute", out)
  H.ok(ok, text)
  local j = jsonio.decode(last)
  H.eq(j.config.recompute, true, "config records it")
  H.eq(jsonio.encode(j.after), jsonio.encode(first.after), "after")
  os.execute(("rm -rf %q"):format(out))
end)

H.case("temp_only: no training, greedy unchanged, colder sampling after", function()
  local out = tmpdir()
  local ok, text, last = run("--method temp_only --eval-questions 12 --eval-n 8 --seed 3", out)
  H.ok(ok, text)
  local j = jsonio.decode(last)
  H.eq(j.after.greedy_acc, j.before.greedy_acc, "greedy cannot change without training")
  H.ok(j.after.mean_confidence > j.before.mean_confidence, "colder samples are more confident")
  H.eq(j.config.temperature_scale, 0.5)
  -- (twenty-eighth session) config.json says at which temperatures the after evaluation sampled
  local at = j.config.eval.after_temperatures
  H.ok(type(at) == "table" and at[1] == 0.25 and at[2] == 0.5, "eval.after_temperatures 0.25, 0.5")
  H.ok(not io.open(out .. "/steps.jsonl", "rb"), "no training steps written")
  os.execute(("rm -rf %q"):format(out))
end)

H.case("an --out with checkpoints: --resume with other settings or a fresh run is refused before any write", function()
  local out = tmpdir()
  local ok, text = run(REDUCED .. " --checkpoint-every 1", out)
  H.ok(ok, text)
  local function slurp(f) local h = assert(io.open(out .. "/" .. f, "rb")); local t = h:read("a"); h:close(); return t end
  local cfg, ev = slurp("config.json"), slurp("eval_before.jsonl")
  ok, text = run(REDUCED .. " --checkpoint-every 1 --resume --lr 0.001", out)
  H.ok(not ok and text:find("was made with lr 0.0001, this run 0.001", 1, true), text)
  H.ok(not text:find("traceback", 1, true), "one line, no traceback: " .. text)
  ok, text = run(REDUCED .. " --checkpoint-every 1", out)
  H.ok(not ok and text:find("holds checkpoint-2 of an earlier run", 1, true), text)
  H.eq(slurp("config.json"), cfg, "config.json untouched")
  H.eq(slurp("eval_before.jsonl"), ev, "eval_before.jsonl untouched")
  os.execute(("rm -rf %q"):format(out))
end)

H.case("bad flags fail with a message", function()
  local out = tmpdir()
  local ok, text = run("--method nope", out)
  H.ok(not ok, "must fail")
  H.ok(text:find("unknown method 'nope'", 1, true), text)
  ok, text = run("--data x.jsonl", out)
  H.ok(not ok and text:find("--model", 1, true), text)
  os.execute(("rm -rf %q"):format(out))
end)

-- >>> resumes from a damaged run directory, and a diverging run (added with the fix_rlsc fixes):
-- one line naming the file, the line or the checkpoint, and nothing rewritten ------------------
local TINY = "--checkpoint-every 1 --no-eval --questions-per-step 1 --n 2"

local slurp, spit = H.read, H.write

-- a 3-step run with a checkpoint per step, interrupted before its summary
local base = tmpdir()
local base_ok = false
H.case("a tiny run with a checkpoint per step (the next cases damage copies of it)", function()
  local ok, text = run(TINY .. " --steps 3", base)
  H.ok(ok, text)
  os.remove(base .. "/summary.json")
  base_ok = true
end)

H.case("--keep-checkpoints N keeps the newest N checkpoint folders; --resume continues from the newest", function()
  -- (twenty-fourth session) every checkpoint was kept: tens of GB each for a 7B model
  local d = tmpdir()
  local ok, text, last = run(TINY .. " --steps 4 --keep-checkpoints 2", d)
  H.ok(ok, text)
  H.eq(jsonio.decode(last).config.keep_checkpoints, 2, "recorded in config.json")
  local function present() local t = {}; for s = 1, 5 do t[s] = io.open(("%s/checkpoint-%d/trainer_state.json"):format(d, s), "rb") ~= nil end; return t end
  local p = present()
  H.ok(not p[1] and not p[2] and p[3] and p[4], "checkpoints 3 and 4 kept, 1 and 2 removed")
  for _, name in ipairs(require("confit.cli").list_dir(d)) do H.ok(not name:find("tmp", 1, true), "a leftover " .. name) end
  os.remove(d .. "/summary.json")
  ok, text = run(TINY .. " --steps 5 --keep-checkpoints 2 --resume", d)
  H.ok(ok and text:find("resum", 1, true), text)
  p = present()
  H.ok(not p[3] and p[4] and p[5], "after the resume: 4 and 5")
  H.eq(#assert(jsonio.read_jsonl(d .. "/steps.jsonl")), 5, "continued from step 4")
  os.execute(("rm -rf %q"):format(d))
end)

local function copy_of_base()
  H.ok(base_ok, "needs the tiny run")
  local d = tmpdir()
  os.execute(("cp -r %q %q"):format(base, d))
  return d
end

-- the recipe failed with exactly one line holding every fragment, and no traceback
local function one_line_failure(ok, text, ...)
  H.ok(not ok, "must fail: " .. text)
  H.ok(not text:find("traceback", 1, true), "a traceback: " .. text)
  H.eq(select(2, text:gsub("\n", "")), 1, "lines of output: " .. text)
  H.ok(text:sub(1, 6) == "rlsc: ", "not prefixed: " .. text)
  for _, f in ipairs({...}) do H.ok(text:find(f, 1, true), ("lacks %q: %s"):format(f, text)) end
end

-- --resume of the damaged copy d fails with one line holding every fragment, and leaves its
-- steps.jsonl and config.json as they were; d is removed
local function refused_untouched(d, ...)
  local steps, cfg, summary = slurp(d .. "/steps.jsonl"), slurp(d .. "/config.json"), slurp(d .. "/summary.json")
  local ok, text = run(TINY .. " --steps 4 --resume", d)
  one_line_failure(ok, text, ...)
  H.eq(slurp(d .. "/steps.jsonl"), steps, "steps.jsonl untouched")
  H.eq(slurp(d .. "/config.json"), cfg, "config.json untouched")
  H.eq(slurp(d .. "/summary.json"), summary, "summary.json (a finished run's) untouched")
  os.execute(("rm -rf %q"):format(d))
end

H.case("--resume: a malformed steps.jsonl line, or a record without its step, is one line; nothing rewritten", function()
  for _, c in ipairs({{'{"step": 2, oops', "/steps.jsonl:2: "}, {'{"loss": 1.5}', '/steps.jsonl: record 2 has no numeric "step"'}}) do
    local d = copy_of_base()
    local lines = {}
    for line in slurp(d .. "/steps.jsonl"):gmatch("[^\n]+") do lines[#lines + 1] = line end
    lines[2] = c[1]
    spit(d .. "/steps.jsonl", table.concat(lines, "\n") .. "\n")
    refused_untouched(d, d .. c[2])
  end
end)

H.case("--resume: a cut checkpoint is one line naming it and the earlier one; nothing rewritten", function()
  local d = copy_of_base()
  local ck = d .. "/checkpoint-3"
  local w = slurp(ck .. "/model.safetensors")
  spit(ck .. "/model.safetensors", w:sub(1, #w - 100))
  local cfg = slurp(d .. "/config.json")
  local ok, text = run(TINY .. " --steps 4 --resume", d)
  one_line_failure(ok, text, ck, "model.safetensors", "truncated", "checkpoint-2")
  H.eq(slurp(d .. "/config.json"), cfg, "config.json untouched")
  -- the optimizer state cut to nothing, and no earlier checkpoint to suggest
  spit(ck .. "/model.safetensors", w)
  spit(ck .. "/optimizer.safetensors", "")
  os.execute(("rm -rf %q %q"):format(d .. "/checkpoint-1", d .. "/checkpoint-2"))
  ok, text = run(TINY .. " --steps 4 --resume", d)
  one_line_failure(ok, text, ck, "optimizer.safetensors")
  H.ok(not text:find("earlier", 1, true), "no earlier checkpoint to suggest: " .. text)
  H.eq(slurp(d .. "/config.json"), cfg, "config.json untouched")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("--resume: a trainer_state.json with a field of the wrong kind is one line naming it; nothing rewritten", function()
  -- (a corrupted per-parameter step counter resumed silently, skewing AdamW's bias correction;
  -- an optimizer that was not an object, or of another kind, ended in a traceback)
  local cases = {
    {function(st) st.optimizer["step.3"] = -1 end, "optimizer.step.3 must be an integer in [0, steps = 3], got -1"},
    {function(st) st.optimizer["step.3"] = "x" end, "optimizer.step.3 must be an integer"},
    {function(st) st.optimizer["step.3"] = nil end, "step counters (step.<i>) for nparams"},
    {function(st) st.optimizer = 5 end, "optimizer must be an object, got 5"},
    {function(st) st.settings = "x" end, "settings must be an object"},
    {function(st) st.step = 7 end, "step is 7, the folder's name says 3"},
    -- a JSON null is named so ("got a userdata" before)
    {function(st) st.optimizer = jsonio.null end, "optimizer must be an object, got null"},
    -- a setting of the wrong type is damage, not another setting ("lr x, this run 0.0001")
    {function(st) st.optimizer.lr = "x" end, 'optimizer.lr must be a number, got "x"'},
    {function(st) st.settings.alpha = {} end, "settings.alpha must be a number, got a table"},
  }
  for _, c in ipairs(cases) do
    local d = copy_of_base()
    local path = d .. "/checkpoint-3/trainer_state.json"
    local st = assert(jsonio.read_json(path))
    c[1](st)
    assert(jsonio.write_json_atomic(path, st))
    refused_untouched(d, d .. "/checkpoint-3", "trainer_state.json", c[2], "checkpoint-2")
  end
end)

H.case("--resume: an optimizer state missing a moment, of the wrong shape or holding NaN is one line; a finished run keeps its summary", function()
  -- (a missing moment restarted at zero; a NaN one turned its parameter into NaN at the first step,
  -- and once found only when the state was loaded, after the resume of a finished run had deleted
  -- its summary.json: now checked with the other inputs, before anything is written)
  local confit = require "confit"
  for _, c in ipairs({{function(t) t["exp_avg.5"] = nil end, "has no exp_avg.5, of a parameter after 3 updates"},
                      {function(t) t["exp_avg_sq.2"] = t["exp_avg_sq.2"] * (0 / 0) end, "exp_avg_sq.2 holds NaN or inf"},
                      {function(t) t["exp_avg.1"] = confit.zeros({3}) end, "exp_avg.1 is [3], its parameter"}}) do
    local d = copy_of_base()
    spit(d .. "/summary.json", '{"finished": true}\n')
    local path = d .. "/checkpoint-3/optimizer.safetensors"
    local t = assert(confit.load_safetensors(path))
    c[1](t)
    assert(confit.save_safetensors(path, t))
    refused_untouched(d, d .. "/checkpoint-3", c[2], "checkpoint-2")
  end
  -- and a weight holding NaN (the first step's logits were not finite, after the deletions)
  local d = copy_of_base()
  spit(d .. "/summary.json", '{"finished": true}\n')
  local path = d .. "/checkpoint-3/model.safetensors"
  local w = assert(confit.load_safetensors(path))
  w["model.norm.weight"] = w["model.norm.weight"] * (0 / 0)
  assert(confit.save_safetensors(path, w))
  refused_untouched(d, d .. "/checkpoint-3", "model.safetensors: model.norm.weight holds NaN or inf")
end)

-- (twenty-first session) a FIFO in a checkpoint hung the resume in its open; a header length
-- damaged to gigabytes was read whole (memory the size of the file) before it was refused
H.case("--resume: a FIFO in a checkpoint, or a header length past 100 MB, is one line naming it", function()
  for _, name in ipairs({"trainer_state.json", "optimizer.safetensors"}) do
    local d = copy_of_base()
    local path = d .. "/checkpoint-3/" .. name
    os.remove(path)
    H.mkfifo(path)
    refused_untouched(d, path .. ": not a regular file", "checkpoint-2")
  end
  local d = copy_of_base()
  local path = d .. "/checkpoint-3/optimizer.safetensors"
  local bytes = slurp(path)
  spit(path, string.pack("<i8", 3000000000) .. bytes:sub(9))
  refused_untouched(d, path .. ": header length 3000000000 exceeds the 100 MB limit", "checkpoint-2")
end)

-- (twenty-eighth session) the checkpoint checks asked an lstat: a link to a FIFO (a Hugging Face
-- cache holds links) was taken as a file and its open blocked. Run under `timeout`.
H.case("--resume: a link to a FIFO in a checkpoint is one line naming it, never opened", function()
  for _, name in ipairs({"trainer_state.json", "optimizer.safetensors"}) do
    local d = copy_of_base()
    local path = d .. "/checkpoint-3/" .. name
    os.remove(path)
    assert(os.execute(("mkfifo %q && ln -s ../fifo %q"):format(d .. "/fifo", path)))
    local p = assert(io.popen(("timeout 20 %q recipes/rlsc.lua %s --steps 4 --resume --out %q 2>&1; echo \"rc=$?\"")
                              :format(exe, TINY, d)))
    local text = p:read("a")
    p:close()
    local rc = text:match("rc=(%d+)%s*$")
    H.eq(rc, "1", name .. ": rlsc ended with 1 (124: blocked on the FIFO): " .. text)
    text = text:gsub("rc=%d+%s*$", "")
    one_line_failure(false, text, path .. ": not a regular file", "checkpoint-2")
    os.execute(("rm -rf %q"):format(d))
  end
end)

-- (twenty-first session) a finished --save-model run resumed without it lost model/ without a word
H.case("--resume of a --save-model run without --save-model is refused; config.json records it", function()
  local d = tmpdir()
  local ok, text = run(TINY .. " --steps 2 --save-model", d)
  H.ok(ok, text)
  H.eq(assert(require("confit.jsonio").read_json(d .. "/config.json")).save_model, true, "config.json save_model")
  ok, text = run(TINY .. " --steps 3 --resume", d)
  one_line_failure(ok, text, "--resume:", "was run with --save-model; give --save-model again")
  H.ok(require("confit.cli").exists(d .. "/model/config.json"), "model/ kept")
  ok, text = run(TINY .. " --steps 3 --resume --save-model", d)
  H.ok(ok, text)
  os.execute(("rm -rf %q"):format(d))
end)

-- (twenty-first session) --eval-mode set the training's answer extraction too (grpo_ttrl's vote,
-- train_acc): with the same seed, step 1's reward was 1.0 in qwen mode and 0.375 in strict
H.case("--eval-mode leaves training alone: the same steps under qwen and strict", function()
  local data = os.tmpname()
  local lines = {}
  for i = 1, 6 do lines[i] = ('{"question": "%d+%d+%d=", "answer": "%d"}'):format(i, i + 1, 2, 2 * i + 3) end
  spit(data, table.concat(lines, "\n") .. "\n")
  local steps = {}
  for _, mode in ipairs({"qwen", "strict"}) do
    local d = tmpdir()
    local ok, text = run(("--model examples/toy/model --data %q --template plain --method grpo_ttrl --steps 2 --n 4 "
                          .. "--max-new-tokens 32 --eval-questions 2 --eval-n 0 --eval-mode %s --lr 1e-3 --quiet")
                         :format(data, mode), d)
    H.ok(ok, text)
    local recs = assert(require("confit.jsonio").read_jsonl(d .. "/steps.jsonl"))
    local keep = {}
    for i, r in ipairs(recs) do keep[i] = ("%s %s %s"):format(r.loss, r.mean_reward, r.train_acc) end
    steps[mode] = table.concat(keep, "|")
    os.execute(("rm -rf %q"):format(d))
  end
  H.eq(steps.strict, steps.qwen, "the training's losses, rewards and train_acc")
  os.remove(data)
end)

H.case("a diverging run (--lr 1e30): one error line, true to what was saved", function()
  local d = tmpdir()
  local ok, text = run("--no-eval --questions-per-step 1 --n 2 --steps 3 --lr 1e30", d)
  H.ok(not ok, "must fail: " .. text)
  H.ok(not text:find("traceback", 1, true), "a traceback: " .. text)
  local last = text:match("([^\n]*)\n?$")
  -- the loss (or first a gradient) is not finite
  H.ok(last:find("^rlsc: train: step %d+: the ") and last:find("neither applied nor saved", 1, true), last)
  local step = tonumber(last:match("step (%d+)"))
  H.eq(#assert(jsonio.read_jsonl(d .. "/steps.jsonl")), step - 1, "steps.jsonl holds the steps before")
  H.ok(not slurp(d .. "/summary.json"), "no summary.json")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("--resume: a checkpoint without a readable config.json, or one of no architecture, is damaged; nothing rewritten", function()
  -- (it resumed without the architecture check)
  for _, c in ipairs({{nil, "config.json: "}, {"{}\n", "config.json: no hidden_size or num_hidden_layers"},
                      {'{"hidden_size": "128", "num_hidden_layers": 3}\n', 'config.json: hidden_size must be an integer, got "128"'},
                      {"[1]\n", "config.json: no hidden_size or num_hidden_layers"}}) do
    local d = copy_of_base()
    if c[1] then spit(d .. "/checkpoint-3/config.json", c[1]) else os.remove(d .. "/checkpoint-3/config.json") end
    refused_untouched(d, d .. "/checkpoint-3 is damaged (" .. c[2], "remove it to resume from the earlier checkpoint-2")
  end
end)

H.case("--resume with --steps below the latest checkpoint is refused in one line; a finished run's summary kept", function()
  -- (it evaluated the step-3 model and wrote a summary of a 2-step run over the finished one's)
  local d = copy_of_base()
  spit(d .. "/summary.json", '{"finished": true}\n')
  local steps, cfg = slurp(d .. "/steps.jsonl"), slurp(d .. "/config.json")
  local ok, text = run(TINY .. " --steps 2 --resume", d)
  one_line_failure(ok, text, d .. "/checkpoint-3 is at step 3, past --steps 2", "--steps 3 or more")
  H.eq(slurp(d .. "/summary.json"), '{"finished": true}\n', "summary.json kept")
  H.eq(slurp(d .. "/steps.jsonl"), steps, "steps.jsonl untouched")
  H.eq(slurp(d .. "/config.json"), cfg, "config.json untouched")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("an update that diverges with a finite gradient (--lr 1e308): one line, no checkpoint or model saved; huge weights stop the evaluation in one line", function()
  -- (the NaN weights were saved as checkpoint-1 and by --save-model, and the evaluation after
  -- training stopped with a traceback: "non-finite logits")
  local d = tmpdir()
  local ok, text = run("--no-eval --questions-per-step 1 --n 2 --steps 3 --checkpoint-every 1 --save-model --lr 1e308", d)
  H.ok(not ok and not text:find("traceback", 1, true), text)
  local last = text:match("([^\n]*)\n?$")
  H.ok(last:find("^rlsc: train: step 1: the update made ") and last:find("NaN or inf (it diverged", 1, true)
       and last:find("nothing of step 1 is saved", 1, true), last)
  H.ok(not slurp(d .. "/checkpoint-1/trainer_state.json") and not slurp(d .. "/model/config.json"), "nothing saved")
  os.execute(("rm -rf %q"):format(d))
  -- finite weights whose logits overflow: the evaluation after training says so in one line
  d = tmpdir()
  ok, text = run("--steps 1 --questions-per-step 1 --eval-questions 2 --eval-n 2 --lr 1e20", d)
  H.ok(not ok and not text:find("traceback", 1, true), text)
  H.ok(text:find("rlsc: evaluation: the model's logits are not finite", 1, true), text)
  H.ok(not slurp(d .. "/summary.json"), "no summary.json")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("--out: an unfinished run starts over without the earlier files; a finished one resumes from its checkpoint", function()
  local d = copy_of_base()
  spit(d .. "/eval_after.jsonl", '{"id": 1}\n')
  spit(d .. "/eval_before.jsonl", '{"id": 1}\n')
  os.execute(("rm -rf %q/checkpoint-*"):format(d))
  local ok, text = run("--no-eval --questions-per-step 1 --n 2 --steps 1", d)
  H.ok(ok, text)
  H.ok(not slurp(d .. "/eval_after.jsonl") and not slurp(d .. "/eval_before.jsonl"), "the earlier evaluations are gone")
  H.eq(#assert(jsonio.read_jsonl(d .. "/steps.jsonl")), 1, "steps.jsonl of this run")
  os.execute(("rm -rf %q"):format(d))
  d = copy_of_base()
  spit(d .. "/summary.json", "{}\n")
  ok, text = run(TINY .. " --steps 4 --resume", d)
  H.ok(ok and text:find("resumed from " .. d .. "/checkpoint-3", 1, true), text)
  H.eq(assert(jsonio.read_json(d .. "/summary.json")).config.steps, 4, "the resumed run's summary")
  H.eq(#assert(jsonio.read_jsonl(d .. "/steps.jsonl")), 4, "steps.jsonl")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("--resume of a finished run that stops on the way: its results wait in superseded/ until the resumed run's summary", function()
  -- (they were deleted before training: a resume that then failed lost them)
  local d = copy_of_base()
  spit(d .. "/summary.json", '{"finished": true}\n')
  spit(d .. "/eval_after.jsonl", '{"id": 7}\n')
  spit(d .. "/profile.json", '[]\n')
  os.execute(("mkdir -p %q/model && echo w > %q/model/weights"):format(d, d))
  local steps, cfg = slurp(d .. "/steps.jsonl"), slurp(d .. "/config.json")
  -- the resumed run stops in training (in-process, train.run replaced by a failure)
  local train = require "confit.train"
  local real_run = train.run
  local main = dofile("recipes/rlsc.lua")
  -- a --resume of d to `steps` whose training fails with `why`
  local function resume_stopped(steps, why)
    train.run = function() error(why, 0) end
    local ok, err = pcall(main, {"--checkpoint-every", "1", "--no-eval", "--questions-per-step", "1", "--n", "2",
                                 "--steps", tostring(steps), "--resume", "--out", d, "--quiet"})
    train.run = real_run
    H.ok(not ok and tostring(err):find(why, 1, true), tostring(err))
  end
  resume_stopped(4, "stopped on the way")
  local s = d .. "/superseded"
  H.eq(slurp(s .. "/summary.json"), '{"finished": true}\n', "superseded/summary.json")
  H.eq(slurp(s .. "/eval_after.jsonl"), '{"id": 7}\n', "superseded/eval_after.jsonl")
  H.eq(slurp(s .. "/profile.json"), '[]\n', "superseded/profile.json")
  H.eq(slurp(s .. "/model/weights"), "w\n", "superseded/model")
  H.eq(slurp(s .. "/steps.jsonl"), steps, "superseded/steps.jsonl (a copy)")
  H.eq(slurp(s .. "/config.json"), cfg, "superseded/config.json (a copy)")
  H.ok(not slurp(d .. "/summary.json") and not slurp(d .. "/eval_after.jsonl"), "nothing stale at the top")
  -- resumed again, to the end: its own summary, and superseded/ gone
  local ok2, text = run(TINY .. " --steps 4 --resume", d)
  H.ok(ok2, text)
  H.eq(assert(jsonio.read_json(d .. "/summary.json")).config.steps, 4, "the resumed run's summary")
  H.ok(not require("confit.cli").exists(s), "superseded/ removed once the run finished")
  -- a finished run resumed when an older superseded/ is left over: the older one is replaced
  spit(d .. "/summary.json", '{"second": true}\n')
  os.execute(("mkdir -p %q && echo old > %q/summary.json && echo x > %q/stray"):format(s, s, s))
  resume_stopped(5, "stopped again")
  H.eq(slurp(s .. "/summary.json"), '{"second": true}\n', "the newest finished run's summary kept")
  H.ok(not slurp(s .. "/stray"), "the older superseded/ replaced")
  H.ok(not slurp(s .. "/.moving"), "the move's marker gone once every file moved")
  -- (twenty-first session) a resume stopped among the moves: eval_after.jsonl in superseded/,
  -- summary.json still at the top; the next resume took the top for a finished run's and
  -- deleted superseded/, eval_after.jsonl with it. The marker makes it finish the moves.
  os.execute(("rm -rf %q"):format(s))
  os.execute(("mkdir -p %q"):format(s))
  spit(s .. "/.moving", '{"moving": ["eval_after.jsonl", "summary.json"]}\n')
  spit(s .. "/eval_after.jsonl", '{"id": 9}\n')
  spit(d .. "/summary.json", '{"third": true}\n')
  resume_stopped(6, "stopped a third time")
  H.eq(slurp(s .. "/eval_after.jsonl"), '{"id": 9}\n', "what had moved is kept")
  H.eq(slurp(s .. "/summary.json"), '{"third": true}\n', "and the rest moved after it")
  H.ok(not slurp(d .. "/summary.json") and not slurp(s .. "/.moving"), "nothing left at the top; marker gone")
  os.execute(("rm -rf %q"):format(d))
end)

-- >>> the fix_rlsc2 fixes: a resume must continue from --model's checkpoints, a fresh start in
-- a reused folder keeps none of the earlier attempt's files, an ablate grid point is an --out,
-- messages name --out, a resumed --data run keeps its evaluation before training
H.case("--resume with another --model: one line naming the run's model or the size that differs; nothing rewritten", function()
  local d = copy_of_base()
  spit(d .. "/eval_before.jsonl", '{"id": 1}\n')
  spit(d .. "/eval_after.jsonl", '{"id": 2}\n')
  local kept = {"config.json", "steps.jsonl", "eval_before.jsonl", "eval_after.jsonl"}
  local function snapshot()
    local t = {}
    for _, f in ipairs(kept) do t[f] = slurp(d .. "/" .. f) end
    return t
  end
  local function unchanged(was)
    for _, f in ipairs(kept) do H.eq(slurp(d .. "/" .. f), was[f], f .. " untouched") end
  end
  -- the same model in another folder (same shapes: it would have resumed silently)
  local other = tmpdir()
  os.execute(("cp -r %q %q"):format(MODEL, other))
  local was = snapshot()
  local ok, text = run(TINY .. " --steps 4 --resume --model " .. other, d)
  one_line_failure(ok, text, "--out '" .. d .. "' is a run of --model '" .. MODEL .. "', not '" .. other .. "'")
  unchanged(was)
  -- the run's own model folder, replaced since by a model of other shapes (hidden size 4)
  os.execute(("rm -rf %q"):format(other))
  local p = assert(io.popen(("%q recipes/pretrain_toy.lua --steps 1 --batch 1 --eval-every 0 --eval-questions 1 "
    .. "--layers 1 --hidden 4 --heads 1 --ffn 2 --out %q 2>&1"):format(exe, other)))
  local made = p:read("a")
  H.ok(p:close(), made)
  local run_cfg = slurp(d .. "/config.json")
  spit(d .. "/config.json", (run_cfg:gsub('"model":%s*"[^"]*"', '"model": "' .. other .. '"')))
  was = snapshot()
  ok, text = run(TINY .. " --steps 4 --resume --model " .. other, d)
  one_line_failure(ok, text, d .. "/checkpoint-3", "hidden_size 128, the model to train 4", "--model")
  unchanged(was)
  -- the run's model written another way resumes
  spit(d .. "/config.json", run_cfg)
  ok, text = run(TINY .. " --steps 4 --resume --model ./" .. MODEL .. "/", d)
  H.ok(ok and text:find("resumed from " .. d .. "/checkpoint-3", 1, true), text)
  os.execute(("rm -rf %q %q"):format(d, other))
end)

-- (twenty-eighth session, mutation testing) a toy run resumed on another --task trained on two worlds
H.case("--resume with another --task: one line naming the run's task; nothing rewritten", function()
  local d = copy_of_base()
  local cfg, steps = slurp(d .. "/config.json"), slurp(d .. "/steps.jsonl")
  local ok, text = run(TINY .. " --steps 4 --resume --task pure", d)
  one_line_failure(ok, text, "--out '" .. d .. "' trained on the toy task mixed, not the toy task pure")
  H.eq(slurp(d .. "/config.json"), cfg, "config.json untouched")
  H.eq(slurp(d .. "/steps.jsonl"), steps, "steps.jsonl untouched")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("a fresh start in a reused folder removes the earlier steps.jsonl and model/ (temp_only writes neither)", function()
  local d = copy_of_base()
  os.execute(("rm -rf %q/checkpoint-*"):format(d))
  os.execute(("mkdir -p %q"):format(d .. "/model"))
  spit(d .. "/model/config.json", "{}\n")
  local ok, text = run("--method temp_only --eval-questions 2 --eval-n 1", d)
  H.ok(ok, text)
  H.ok(not slurp(d .. "/steps.jsonl"), "the earlier steps.jsonl is gone")
  H.ok(not io.open(d .. "/model/config.json", "rb"), "the earlier model/ is gone")
  H.ok(slurp(d .. "/summary.json"), "this run's summary.json")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("--out: a folder holding only ablate.json and log.txt (an ablate grid point) is used", function()
  local d = tmpdir()
  os.execute(("mkdir -p %q"):format(d))
  spit(d .. "/ablate.json", '{"recipe": "recipes/rlsc.lua"}\n')
  spit(d .. "/log.txt", "")
  local ok, text = run("--no-eval --questions-per-step 1 --n 2 --steps 1", d)
  H.ok(ok, text)
  H.eq(assert(jsonio.read_json(d .. "/config.json")).recipe, "rlsc", "the run's config.json")
  H.eq(slurp(d .. "/ablate.json"), '{"recipe": "recipes/rlsc.lua"}\n', "ablate.json kept")
  os.execute(("rm -rf %q"):format(d))
end)

H.case("an --out with checkpoints: the refusals name --out, as rlsc's other messages do", function()
  local d = copy_of_base()
  local ok, text = run(TINY .. " --steps 4", d)
  one_line_failure(ok, text, "rlsc: --out '" .. d .. "' holds checkpoint-3 of an earlier run: resume it (--resume) or use another --out")
  ok, text = run(TINY .. " --steps 4 --resume --lr 0.5", d)
  one_line_failure(ok, text, "was made with lr 0.0001, this run 0.5; resume with the run's settings or use another --out")
  H.ok(not text:find("run directory", 1, true), text)
  os.execute(("rm -rf %q"):format(d))
end)

H.case("a resumed --data run keeps its evaluation before training (unless made with other settings)", function()
  local data = os.tmpname()
  spit(data, '{"question": "2+3=", "answer": "5"}\n{"question": "4+4=", "answer": "8"}\n')
  local d = tmpdir()
  local args = "--model " .. MODEL .. " --data " .. data .. " --template plain --max-new-tokens 8 --steps 2 --n 2 --checkpoint-every 1 --quiet"
    .. " --seed 3"
  local ok, text, last = run(args, d)
  H.ok(ok, text)
  local first = assert(jsonio.decode(last))
  H.eq(first.before.resumed, 0, "the first run evaluates")
  -- (twenty-eighth session) a --data run's evaluation samples with --seed unless --eval-seed is given
  H.eq(first.config.eval.seed, 3, "the evaluation's seed is --seed")
  local ev = slurp(d .. "/eval_before.jsonl")
  os.remove(d .. "/summary.json")
  ok, text, last = run(args:gsub(" %-%-quiet", "") .. " --resume", d)   -- (its log checked below)
  H.ok(ok, text)
  local j = assert(jsonio.decode(last))
  H.eq(j.before.resumed, 2, "the kept records stand for both problems")
  -- (twenty-eighth session) the log says nothing was evaluated before training: kept, not timed
  H.ok(text:find("resumed 2 of 2 problems from " .. d .. "/eval_before.jsonl (kept; nothing generated)", 1, true), text)
  H.ok(text:find("\ntime: eval before kept, training ", 1, true), text)
  H.eq(j.before.acc, first.before.acc, "before: the first run's accuracy")
  H.eq(assert(jsonio.read_json(d .. "/summary.json")).before.resumed, 2, "summary.json's before")
  H.eq(slurp(d .. "/eval_before.jsonl"), ev, "eval_before.jsonl kept")
  -- other evaluation settings: evaluated again
  os.remove(d .. "/summary.json")
  ok, text, last = run(args .. " --resume --eval-n 1", d)
  H.ok(ok, text)
  j = assert(jsonio.decode(last))
  H.eq(j.before.resumed, 0, "evaluated again")
  H.eq(#assert(jsonio.read_jsonl(d .. "/eval_before.jsonl"))[1].samples, 1, "with --eval-n 1")
  os.execute(("rm -rf %q %q"):format(d, data))
end)
-- <<< end of the fix_rlsc2 block

os.execute(("rm -rf %q"):format(base))
-- <<< end of the fix_rlsc block

-- >>> the audit's fixes: a method of one's own through train.run, several updates per batch, and
-- docs/TOY.md's "Your own loss" example -------------------------------------------------------
H.case("train.run on the toy model: a method of one's own returning loss, {} (or no metrics) logs the standard metrics", function()
  local model = require "confit.model"
  local rl = require "confit.rl"
  local train = require "confit.train"
  local toy = require "confit.toy"
  -- self_sft's loss, without its metrics
  rl.methods.toy_bare = function(batch, o) return -rl.seq_logprobs(batch, o.temperature):sum(), {} end
  rl.methods.toy_none = function(batch, o) return -rl.seq_logprobs(batch, o.temperature):sum() end
  local qs = toy.world("mixed"):questions("train", 2, 3)
  local function go(method, mb)
    local m = assert(model.load(MODEL))
    local lines = {}
    local recs = train.run({model = m, questions = qs, method = method, n = 4, steps = 2,
                            questions_per_step = 1, seed = 3, micro_batch = mb,
                            extract = toy.extract_boxed, answer_key = toy_eval.answer_key,
                            grade = function(t, a) return (toy.grade(t, a)) end,
                            log = function(l) lines[#lines + 1] = l end})
    return recs, lines
  end
  local ref = go("self_sft", 0)
  for _, c in ipairs({{"toy_bare", 0}, {"toy_none", 0}, {"toy_bare", 3}}) do
    local recs, lines = go(c[1], c[2])
    local what = ("%s, micro_batch %d"):format(c[1], c[2])
    H.eq(#recs, 2, what .. ": two steps")
    for s = 1, 2 do
      for _, k in ipairs({"loss", "mean_logp", "mean_confidence", "weight_share", "mean_length", "entropy",
                          "box_rate", "answer_diversity", "n_samples", "train_acc", "grad_norm"}) do
        H.ok(type(recs[s][k]) == "number", ("%s: step %d has %s"):format(what, s, k))
        H.near(recs[s][k], ref[s][k], 1e-4 * math.max(1, math.abs(ref[s][k])), ("%s: step %d %s = self_sft's"):format(what, s, k))
      end
      H.ok(lines[s]:find("^step +" .. s .. "  loss ") and lines[s]:find("len ", 1, true), what .. ": the step line: " .. lines[s])
    end
  end
end)

H.case("--updates-per-batch 2: two optimizer steps per sampled batch, one steps.jsonl record each", function()
  local d = tmpdir()
  local ok, text = run("--no-eval --questions-per-step 1 --n 4 --steps 2 --method grpo_prob --updates-per-batch 2 "
                       .. "--clip-eps 0.05 --lr 0.01 --checkpoint-every 2", d)
  H.ok(ok, text)
  local steps = assert(jsonio.read_jsonl(d .. "/steps.jsonl"))
  H.eq(#steps, 4, "records")
  for i, r in ipairs(steps) do
    H.eq(r.step, i, "step"); H.eq(r.batch, (i + 1) // 2, "batch"); H.eq(r.update, (i - 1) % 2 + 1, "update")
    H.ok(type(r.clip_frac) == "number", "clip_frac")
  end
  H.ok(text:find("upd 2/2", 1, true), "the step line names the update: " .. text)
  H.ok(io.open(d .. "/checkpoint-2/trainer_state.json", "rb"), "checkpoint-<batch>")
  ok, text = run("--no-eval --questions-per-step 1 --n 4 --steps 3 --method grpo_prob --updates-per-batch 3 "
                 .. "--clip-eps 0.05 --lr 0.01 --checkpoint-every 2 --resume", d)
  H.ok(not ok and text:find("updates_per_batch 2, this run 3", 1, true), text)
  H.ok(not text:find("traceback", 1, true), "one line: " .. text)
  ok, text = run("--updates-per-batch 0", d)
  H.ok(not ok and text:find("--updates-per-batch must be >= 1", 1, true), text)
  os.execute(("rm -rf %q"):format(d))
end)

H.case("docs/TOY.md's \"Your own loss\" example runs (reduced)", function()
  local doc = assert(slurp("docs/TOY.md"))
  local code = doc:match("### Your own loss.-```lua\n(.-)```")
  H.ok(code, "docs/TOY.md has a lua block under \"### Your own loss\"")
  local f = os.tmpname() .. ".lua"
  spit(f, code)
  local d = tmpdir()
  local p = assert(io.popen(("%q %q --method sq --no-eval --steps 1 --questions-per-step 1 --n 4 --out %q 2>&1"):format(exe, f, d)))
  local text = p:read("a")
  H.ok(p:close(), text)
  local last
  for line in text:gmatch("[^\n]+") do last = line end
  local j = jsonio.decode(last or "")
  H.ok(type(j) == "table" and j.config and j.config.method == "sq", "the run used the registered method: " .. tostring(last))
  H.eq(#assert(jsonio.read_jsonl(d .. "/steps.jsonl")), 1, "steps.jsonl")
  os.execute(("rm -rf %q %q"):format(d, f))
end)
-- <<< end of the audit block

-- A checkpoint's weights (f32 on the CPU) go into the model in its own parameters' device and
-- dtype: a bf16 file into this f32 CPU model exercises the conversion a GPU model needs.
H.case("load_checkpoint converts the file's tensors to the parameters' dtype", function()
  local confit = require "confit"
  local train = require "confit.train"
  local m = assert(confit.load(MODEL))
  local dir = tmpdir()
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local w = {}
  for name, p in pairs(m:parameters()) do w[name] = (p * 0.5):to("bf16") end
  assert(confit.save_safetensors(dir .. "/model.safetensors", w))
  spit(dir .. "/trainer_state.json", '{"step": 3, "optimizer": {}}\n')
  local before = m:parameters()
  local st = train.load_checkpoint(dir, m, nil)
  H.eq(st.step, 3)
  for name, p in pairs(m:parameters()) do
    H.eq(p:dtype(), "f32", name .. " stays f32")
    H.ok(p == before[name], name .. ": the same tensor, written in place (layouts kept)")
    H.eq((p - w[name]:to("f32")):abs():max():item(), 0, name .. " loaded")
  end
  m:free()
  os.execute("rm -rf '" .. dir .. "'")
end)

H.case("rlsc --model --data takes the paper's setting (RLSC.md) for every flag not given", function()
  -- (nineteenth session) only lr, micro_batch and eval_n were checked: the rest could drift
  local cli = require "confit.cli"
  local main = dofile("recipes/rlsc.lua")
  local flags, check = cli.flags_of(main), cli.check_of(main)
  local function checked(argv)
    local o = cli.parse_args(argv, flags, "recipes/rlsc.lua")
    check(o)
    return o
  end
  local o = checked({"--model", MODEL, "--data", "x.jsonl"})
  local want = {method = "l2", alpha = 0.1, n = 16, temperature = 0.5, top_p = 1, max_new_tokens = 3072,
                steps = 10, questions_per_step = 1, lr = 1e-5, weight_decay = 0.01, kl_coef = 0, grad_clip = 0,
                loss_temperature = nil}
  for k, v in pairs(want) do H.eq(o[k], v, "--" .. k) end
  -- a flag given wins over the paper's value
  o = checked({"--model", MODEL, "--data", "x.jsonl", "--n", "4", "--lr", "2e-6"})
  H.eq(o.n, 4, "--n given"); H.eq(o.lr, 2e-6, "--lr given"); H.eq(o.steps, 10, "--steps still the paper's")
  -- the toy world keeps its own defaults
  o = checked({})
  H.ok(o.lr ~= 1e-5 and o.max_new_tokens ~= 3072, "the toy run is not the paper's setting")
end)

-- (nineteenth session, mutation testing) dropping --loss-temperature on its way to train.run
-- passed the suite: only its parsing and its config.json entry were checked
H.case("rlsc --loss-temperature reaches the loss", function()
  local function step1(extra)
    local d = tmpdir()
    local ok, text = run("--steps 1 --n 2 --questions-per-step 1 --no-eval --max-new-tokens 6 --quiet " .. extra, d)
    H.ok(ok, text)
    local rec = assert(jsonio.read_jsonl(d .. "/steps.jsonl"))[1]
    os.execute(("rm -rf %q"):format(d))
    return rec
  end
  local a, b = step1(""), step1("--loss-temperature 1.0")
  H.ok(a.mean_logp ~= b.mean_logp, ("mean_logp at T = 0.5 (%s) and at T = 1 (%s)"):format(a.mean_logp, b.mean_logp))
end)

-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, rlsc)
do
local jsonio = require "confit.jsonio"
local report = require "confit.report"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local root = os.tmpname(); os.remove(root)

local main = dofile("recipes/rlsc.lua")
local out = root .. "/run"
local real_print = print
print = function() end   -- the run's last line (its JSON object) is printed even with --quiet
local r = main({"--steps", "1", "--questions-per-step", "1", "--n", "2", "--eval-questions", "2",
                "--eval-n", "2", "--max-new-tokens", "8", "--quiet", "--out", out})
print = real_print

H.case("a toy run's summary.json names its benchmark in before and after (RUNDIR.md) (mutant s02)", function()
  local s = assert(jsonio.read_json(out .. "/summary.json"))
  H.eq(s.before.benchmark, "toy-mixed", "before.benchmark")
  H.eq(s.after.benchmark, "toy-mixed", "after.benchmark")
  -- so the report names the run's row after it even without the eval files
  os.remove(out .. "/eval_before.jsonl"); os.remove(out .. "/eval_after.jsonl")
  H.eq(report.load_run(out).summary_name, "toy-mixed", "the report's benchmark name")
end)

H.case("a --data run's before/after table has one pass@1 row (mutant s05)", function()
  local data = root .. "/short.jsonl"
  H.write(data, '{"question": "1+2=", "answer": "3"}\n{"question": "4+4-1=", "answer": "7"}\n')
  local lines = {}
  local real = print
  print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
  local ok, err = pcall(main, {"--steps", "1", "--questions-per-step", "1", "--n", "2", "--max-new-tokens", "8",
                               "--model", "examples/toy/model", "--template", "plain", "--eval-n", "2",
                               "--eval-questions", "1", "--data", data, "--out", root .. "/data"})
  print = real
  H.ok(ok, tostring(err))
  -- (twenty-eighth session) --eval-questions 1: the evaluations take the first problem alone
  local sm = jsonio.read_json(root .. "/data/summary.json")
  H.eq(sm and sm.before.n, 1, "before: one problem"); H.eq(sm and sm.after.n, 1, "after: one problem")
  H.eq(sm and sm.config.eval.questions, 1, "config.json's eval.questions")
  local text = table.concat(lines, "\n")
  H.ok(text:find("metric%s+before%s+after%s+change"), "the table:\n" .. text)
  local rows = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^pass@1%s") then rows = rows + 1 end
  end
  H.eq(rows, 1, "pass@1 rows in\n" .. text)
end)

os.execute("rm -rf " .. q(root))
end

H.finish()
