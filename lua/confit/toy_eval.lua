-- confit.toy_eval: evaluation of a model on toy-world questions (lua/confit/toy.lua).
--
--   local summary, records = toy_eval.run(m, questions, opts)
--
-- questions: list of {prompt, answer} (world:questions("heldout", n, seed)). For each question
-- it decodes greedily once, samples opts.n (16) completions at T = 0.5 and opts.n at T = 1.0,
-- and returns the summary: the metric keys M.keys(n) (fractions in [0, 1] but distinct_answers and
-- the lengths), named after the real sample count n = opts.n, plus samples = n:
--
--   greedy_acc        share of questions whose greedy completion is correct
--   pass1_t05         mean over questions of the share of correct samples at T = 0.5 (avg@n,
--                     the unbiased pass@1)
--   pass1_t10         the same at T = 1.0
--   maj<n>            share of questions whose majority answer (all n T = 0.5 samples) is
--                     correct: maj16 at the default n = 16, maj4 with n = 4
--   pass<k>           unbiased pass@k over the T = 0.5 samples (metrics.pass_at_k), for k =
--                     2, 4, 8, ... below n and k = n (M.pass_ks(n)): pass2 .. pass16 at n = 16
--   distinct_answers  mean over questions of the number of distinct extracted answers (T = 0.5)
--   direct_share      share of T = 0.5 samples that answer directly (a box before any '=')
--   mean_length       mean length in tokens (EOS included) of the greedy completions, else
--                     (greedy = false) of the T = 0.5 samples: docs/EVALUATION.md's definition
--   sample_mean_length  with greedy completions, the mean length of the T = 0.5 samples
--   mean_confidence   mean over T = 0.5 samples of exp(log p(y|x)), log p at T = 0.5 (the
--                     RLSC weight p_old), exponentiated in f64
--   weight_share      share of T = 0.5 samples whose exp(log p) exceeds 1e-6
--
-- M.rundir(summary, questions) adds docs/RUNDIR.md's names for the run directory's summary.json
-- (acc, pass@1, pass@k, maj@n, n); M.format_table prints summaries side by side.
--
-- records: one per question in the eval_*.jsonl format of docs/RUNDIR.md: samples = the T = 0.5
-- samples, samples_t10 = the T = 1.0 samples (an extra key), greedy = the greedy completion. Each
-- completion's `logprob` is at temperature 1, as RUNDIR.md asks (for the T = 0.5 samples the CPU
-- generator's score_temperature = 1, other models' samples rescored by teacher forcing);
-- `logprob_t` is the log-prob under the sampling temperature.
--
-- opts: n (16), seed (1: the sampling seeds; the same seed gives the same draws before and
-- after training, so the comparison is paired), max_new_tokens (64), temperature_scale (1:
-- multiplies both sampling temperatures; the temperature-only sharpening baseline evaluates
-- with 0.5, i.e. T = 0.25 and 0.5, under the same keys), greedy (true), pass1_t10 (true; false
-- skips the T = 1.0 pass and leaves pass1_t10 = nil), rescore (true: T = 1 log-probs for the
-- records), chunk (32 questions per generate call), rescore_batch (256 rows per rescoring
-- forward), benchmark ("toy"). Any other option is refused, naming these (the temperatures
-- are not options: 0.5 and 1.0 name the keys; temperature_scale scales both).
-- Answers are compared as integers (toy.grade); majority votes group answers by integer value.
local confit = require "confit"
local toy = require "confit.toy"
local metrics = require "confit.metrics"

local M = {}

--- The k of the pass@k keys for n samples: 2, 4, 8, ... below n, then n itself ({} for n = 1:
--- pass@1 is pass1_t05).
function M.pass_ks(n)
  local ks, k = {}, 2
  while k < n and k < 2 ^ 53 do ks[#ks + 1] = k; k = k * 2 end   -- (an integer k would wrap past 2^62)
  if n >= 2 then ks[#ks + 1] = n end
  return ks
end

--- The metric keys of a summary of n samples per question (default 16), in table order.
function M.keys(n)
  n = n or 16
  local keys = {"greedy_acc", "pass1_t05", "pass1_t10", "maj" .. n}
  for _, k in ipairs(M.pass_ks(n)) do keys[#keys + 1] = "pass" .. k end
  for _, k in ipairs({"distinct_answers", "direct_share", "mean_length", "sample_mean_length",
                      "mean_confidence", "weight_share"}) do
    keys[#keys + 1] = k
  end
  return keys
end

-- the keys at the default n = 16 (greedy_acc, pass1_t05, pass1_t10, maj16, pass2, pass4, pass8,
-- pass16, distinct_answers, ...); a summary of other n has M.keys(summary.samples)
M.KEYS = M.keys(16)

local WEIGHT_MIN = 1e-6

-- the key answers are grouped by: the integer value when there is one, else the string
local function answer_key(a)
  local n = a and a:match("^%s*([%+%-]?%d+)%s*$")
  if n then return tostring(math.tointeger(tonumber(n)) or n) end
  return a
end
M.answer_key = answer_key

-- Generate for every question, chunk by chunk; returns per question a list of samples.
local function sample_all(m, prompts, gen, chunk)
  local per_q = {}
  for first = 1, #prompts, chunk do
    local last = math.min(#prompts, first + chunk - 1)
    local ps = table.move(prompts, first, last, 1, {})
    local o = {}
    for k, v in pairs(gen) do o[k] = v end
    -- generate keys sample j of the p-th prompt of a call by (seed, p, j); the seed of a call
    -- is derived from its first question, so draws depend on opts.chunk (keep it fixed)
    o.seed = gen.seed * 1000003 + first
    local gok, out = pcall(m.generate, m, ps, o)
    if not gok then require("confit.cli").raise_generate_error(out, "evaluation") end
    local n = gen.n or 1
    for i = first, last do
      local list = {}
      for j = 1, n do list[j] = out[(i - first) * n + j] end
      per_q[i] = list
    end
  end
  return per_q
end

-- Teacher-forced log-probs at temperature 1 for a list of (prompt ids, sample) pairs; fills
-- sample.logprob_t1. Rows are batched by `batch`, in order of length (prompt + completion; ties
-- in list order), so that a batch pads its rows to about their own length rather than to the
-- longest sample of 16 questions (about half the work was padding). A row's log-prob is the same
-- up to float rounding: the last bits of the BLAS products depend on the batch's shape, in any
-- order.
local function rescore(m, items, batch)
  local model = require "confit.model"
  local function len(it) return #it.prompt + #it.sample.tokens end
  local sorted = {}
  for i, it in ipairs(items) do sorted[i] = {it, len(it), i} end
  table.sort(sorted, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[3] < b[3] end)
  for i, e in ipairs(sorted) do sorted[i] = e[1] end
  items = sorted
  confit.no_grad(function()
    for first = 1, #items, batch do
      local last = math.min(#items, first + batch - 1)
      local seqs, plens = {}, {}
      for i = first, last do
        local it = items[i]
        local s = table.move(it.prompt, 1, #it.prompt, 1, {})
        table.move(it.sample.tokens, 1, #it.sample.tokens, #s + 1, s)
        seqs[#seqs + 1] = s
        plens[#plens + 1] = #it.prompt
      end
      local ids, lens = model.pad(seqs, toy.EOS_ID)
      local lp = m:logprobs(ids, plens, {temperature = 1.0, lens = lens}):totable()
      for i = first, last do items[i].sample.logprob_t1 = lp[i - first + 1] end
    end
  end)
end

local function completion_record(s, answer, temperature)
  local text = s.text or toy.decode(s.tokens)
  local correct, extracted = toy.grade(text, answer)
  return {
    completion = text,
    extracted = extracted,
    correct = correct,
    length = #s.tokens,
    logprob = s.logprob_t1 or s.logprob,
    logprob_t = s.logprob,
    temperature = temperature,
    boxed = extracted ~= nil,
    direct = toy.is_direct(text),
    finished = s.finish == "stop",
  }
end

-- the options M.run reads (the header lists them); another key is refused, naming these
local OPTION_NAMES = {"benchmark", "chunk", "greedy", "max_new_tokens", "n", "pass1_t10", "rescore",
                      "rescore_batch", "seed", "temperature_scale"}
local KNOWN_OPTION = {}
for _, k in ipairs(OPTION_NAMES) do KNOWN_OPTION[k] = true end

-- v for a message: a string quoted (n = "2" is no number 2), a NaN "nan", anything else as tostring
local show = require("confit.cli").show

--- Evaluate m on questions; returns summary (the keys M.keys(opts.n), plus samples), records
--- (per question).
function M.run(m, questions, opts)
  if opts ~= nil and type(opts) ~= "table" then error("toy_eval.run: opts must be a table, got " .. type(opts), 2) end
  for k in pairs(opts or {}) do
    if not KNOWN_OPTION[k] then
      -- the sampling temperatures are fixed (0.5 and 1.0, the keys' names); temperature_scale
      -- multiplies both
      local hint = (k == "temperature" or k == "temp") and
        "; the samples are drawn at T = 0.5 and T = 1.0, temperature_scale multiplies both" or ""
      error(("toy_eval.run: unknown option %s (options: %s)%s"):format(tostring(k), table.concat(OPTION_NAMES, ", "), hint), 2)
    end
  end
  if type(m) ~= "table" or type(m.generate) ~= "function" then
    error("toy_eval.run: m must be a model (confit.load), got " .. type(m), 2)
  end
  opts = opts or {}
  local n = opts.n or 16
  local seed = opts.seed or 1
  local scale = opts.temperature_scale or 1.0
  local max_new = opts.max_new_tokens or 64
  local chunk = opts.chunk or 32
  local do_t10 = opts.pass1_t10 ~= false
  local function count(v, what, lo)
    if math.type(v) ~= "integer" or v < lo then
      error(("toy_eval.run: %s must be an integer >= %d, got %s"):format(what, lo, show(v)), 3)
    end
  end
  count(n, "n", 1); count(max_new, "max_new_tokens", 1); count(chunk, "chunk", 1)
  count(opts.rescore_batch or 256, "rescore_batch", 1)
  if type(questions) ~= "table" or #questions == 0 then
    error("toy_eval.run: questions must be a non-empty list", 2)
  end
  if not (type(scale) == "number" and scale > 0 and scale < math.huge) then
    error("toy_eval.run: temperature_scale must be a finite number > 0, got " .. show(scale), 2)
  end
  local prompts = {}
  for i, q in ipairs(questions) do
    if type(q) ~= "table" then
      error(("toy_eval.run: question %d must be a table {prompt=, answer=} (world:questions gives them), got %s")
            :format(i, type(q)), 2)
    end
    if type(q.prompt) ~= "string" then
      local also = type(q.question) == "string" and " (it has question: toy_eval reads prompt)" or ""
      error(("toy_eval.run: question %d needs a prompt string (world:questions gives them), got prompt = %s%s")
            :format(i, q.prompt == nil and "nil" or type(q.prompt), also), 2)
    end
    -- graded by toy.grade, which refuses it after the generation: say so before
    if type(q.answer) ~= "number" and type(q.answer) ~= "string" then
      error(("toy_eval.run: question %d needs an answer, a number or a string (world:questions gives them), got %s")
            :format(i, type(q.answer)), 2)
    end
    prompts[i] = toy.encode(q.prompt)
  end

  local greedy
  if opts.greedy ~= false then
    greedy = sample_all(m, prompts, {n = 1, temperature = 0, max_new_tokens = max_new,
                                     seed = seed}, chunk)
  end
  -- the records' T = 1 log-probs: the CPU generator scores its samples from the logits it
  -- samples from (within float rounding of a teacher-forced pass, which cost a third of the main
  -- job); other models' samples (the GPU's, a test's fake) are rescored
  local score = opts.rescore ~= false and type(m.device) == "function" and m:device() == "cpu" and 1.0 or nil
  local t05 = 0.5 * scale
  local s05 = sample_all(m, prompts, {n = n, temperature = t05, max_new_tokens = max_new,
                                      seed = seed + 1, score_temperature = score}, chunk)
  local t10, s10 = 1.0 * scale, nil
  if do_t10 then
    s10 = sample_all(m, prompts, {n = n, temperature = t10, max_new_tokens = max_new,
                                  seed = seed + 2, score_temperature = t10 ~= 1.0 and score or nil}, chunk)
  end
  if opts.rescore ~= false then
    local items = {}
    local function add(i, s)
      if s.score_logprob then s.logprob_t1 = s.score_logprob
      else items[#items + 1] = {prompt = prompts[i], sample = s} end
    end
    for i = 1, #questions do
      for _, s in ipairs(s05[i]) do add(i, s) end
      if s10 and t10 ~= 1.0 then
        for _, s in ipairs(s10[i]) do add(i, s) end
      end
    end
    if #items > 0 then rescore(m, items, opts.rescore_batch or 256) end
  end

  local ks = M.pass_ks(n)
  local acc_g, p05, p10, maj, pk, distinct = {}, {}, {}, {}, {}, {}
  for _, k in ipairs(ks) do pk[k] = {} end
  local n_direct, n_samp, len_sum, conf_sum, n_weight, greedy_len = 0, 0, 0, 0, 0, {}
  local records = {}
  for i, q in ipairs(questions) do
    local rec = {benchmark = opts.benchmark or "toy", id = i, question = q.prompt,
                 answer = tostring(q.answer), samples = {}}
    if greedy then
      rec.greedy = completion_record(greedy[i][1], q.answer, 0)
      acc_g[#acc_g + 1] = rec.greedy.correct and 1 or 0
      greedy_len[#greedy_len + 1] = rec.greedy.length
    end
    local c, answers, seen, nd = 0, {n = #s05[i]}, {}, 0
    for j, s in ipairs(s05[i]) do
      local r = completion_record(s, q.answer, t05)
      rec.samples[j] = r
      if r.correct then c = c + 1 end
      answers[j] = r.extracted
      if r.extracted ~= nil then
        local kk = answer_key(r.extracted)
        if not seen[kk] then seen[kk] = true; nd = nd + 1 end
      end
      n_samp = n_samp + 1
      if r.direct then n_direct = n_direct + 1 end
      len_sum = len_sum + r.length
      local w = math.exp(s.logprob)            -- f64
      conf_sum = conf_sum + w
      if w > WEIGHT_MIN then n_weight = n_weight + 1 end
    end
    p05[#p05 + 1] = c / #s05[i]
    for _, k in ipairs(ks) do table.insert(pk[k], metrics.pass_at_k(#s05[i], c, k)) end
    distinct[#distinct + 1] = nd
    local winner = metrics.majority(answers, {key = answer_key})
    maj[#maj + 1] = (winner ~= nil and answer_key(winner) == answer_key(tostring(q.answer))) and 1 or 0
    if s10 then
      rec.samples_t10 = {}
      local c10 = 0
      for j, s in ipairs(s10[i]) do
        local r = completion_record(s, q.answer, t10)
        rec.samples_t10[j] = r
        if r.correct then c10 = c10 + 1 end
      end
      p10[#p10 + 1] = c10 / #s10[i]
    end
    records[i] = rec
  end
  local summary = {
    greedy_acc = greedy and metrics.mean(acc_g) or nil,
    pass1_t05 = metrics.mean(p05),
    pass1_t10 = s10 and metrics.mean(p10) or nil,
    distinct_answers = metrics.mean(distinct),
    direct_share = n_direct / n_samp,
    -- EVALUATION.md's mean_length: over the greedy completions when there are any, the samples'
    -- beside it as sample_mean_length (a table comparing runs compares one thing under one name)
    mean_length = greedy and metrics.mean(greedy_len) or len_sum / n_samp,
    sample_mean_length = greedy and len_sum / n_samp or nil,
    mean_confidence = conf_sum / n_samp,
    weight_share = n_weight / n_samp,
    samples = n,
  }
  summary["maj" .. n] = metrics.mean(maj)
  for _, k in ipairs(ks) do summary["pass" .. k] = metrics.mean(pk[k]) end
  return summary, records
end

--- The summary with docs/RUNDIR.md's names beside the toy's, for a run directory's summary.json:
--- acc (= greedy_acc), pass@1 (= pass1_t05), pass@k (= pass<k>), maj@n (= maj<n>), and n = nq
--- questions (samples = n samples per question is already there).
function M.rundir(s, nq)
  local t = {}
  for k, v in pairs(s) do t[k] = v end
  local n = s.samples or 16
  t.acc, t["pass@1"], t.n = s.greedy_acc, s.pass1_t05, nq
  t["maj@" .. n] = s["maj" .. n]
  for _, k in ipairs(M.pass_ks(n)) do t["pass@" .. k] = s["pass" .. k] end
  return t
end

--- A text table of summaries side by side: cols = {name = summary} or a list of {name, summary}.
--- opts.keys: the rows (default: the metric keys M.keys of the summaries' sample counts); a
--- row no summary has a number for is left out. opts.change: with two columns, a third,
--- "change" = the second minus the first.
function M.format_table(cols, opts)
  if type(cols) ~= "table" then error("toy_eval.format_table: cols must be a table of summaries, got " .. type(cols), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("toy_eval.format_table: opts must be a table, got " .. type(opts), 2) end
  opts = opts or {}
  local list = {}
  if #cols > 0 then list = cols
  else
    local names = {}
    for name in pairs(cols) do names[#names + 1] = name end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, name in ipairs(names) do list[#list + 1] = {name, cols[name]} end
  end
  for i, c in ipairs(list) do
    if type(c) ~= "table" or type(c[2]) ~= "table" then
      error(("toy_eval.format_table: column %d must be {name, summary} (a summary table), got %s"):format(i, type(c)), 2)
    end
    c[1] = tostring(c[1])
  end
  if opts.keys ~= nil and type(opts.keys) ~= "table" then
    error("toy_eval.format_table: opts.keys must be a list of metric names, got " .. type(opts.keys), 2)
  end
  local keys = opts.keys
  if not keys then
    keys = {}
    local seen = {}
    for _, c in ipairs(list) do
      for _, k in ipairs(M.keys(c[2].samples)) do
        if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
      end
    end
  end
  local change = opts.change and #list == 2
  local width = 18
  for _, k in ipairs(keys) do width = math.max(width, #k + 2) end
  local name_fmt = "%-" .. width .. "s"
  local lines = {}
  local head = name_fmt:format("metric")
  for _, c in ipairs(list) do head = head .. ("%12s"):format(c[1]) end
  if change then head = head .. ("%12s"):format("change") end
  lines[1] = head
  for _, key in ipairs(keys) do
    local line, any = name_fmt:format(key), false
    for _, c in ipairs(list) do
      local v = c[2][key]
      if type(v) == "number" then any = true end
      line = line .. (type(v) ~= "number" and ("%12s"):format("-") or ("%12.4f"):format(v))
    end
    if change then
      local a, b = list[1][2][key], list[2][2][key]
      line = line .. ((type(a) == "number" and type(b) == "number") and ("%+12.4f"):format(b - a)
                      or ("%12s"):format("-"))
    end
    if any then lines[#lines + 1] = line end
  end
  return table.concat(lines, "\n")
end

return M
