-- Tests of confit.evaluate: metrics through evaluate.run with a scripted fake generate
-- (hand-computed acc, avg@n, unbiased pass@k, maj@n with ties, box rate, mean length),
-- per-problem JSONL fields, resume (generate calls counted, torn last line, changed settings),
-- qwen vs strict mode, the real benchmark loaders, one end-to-end run with a tiny random model,
-- and recipes/eval.lua's command line (errors are one line with exit status 1).
local H = dofile("tests/lua/harness.lua")
local evaluate = require "confit.evaluate"
local jsonio = require "confit.jsonio"
local bench = require "confit.bench"
local toy = require "confit.toy"

local EXE = arg and arg[-1] or "confit"
local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "'"))

local function rm_rf(d) os.execute("rm -rf '" .. d .. "'") end

-- A fake generate: script[question] = {greedy = text, samples = {texts}}. Each sample's tokens
-- are one per byte of its text; logprob = -0.1 per token. Counts calls and prompts seen.
local function fake(script)
  local f = {calls = 0, prompts = {}, opts = {}}
  function f.generate(prompts, o)
    f.calls = f.calls + 1
    f.opts[#f.opts + 1] = o
    local out = {}
    for pi, p in ipairs(prompts) do
      f.prompts[#f.prompts + 1] = p
      local entry
      for q, e in pairs(script) do
        if p:find(q, 1, true) then entry = e end
      end
      assert(entry, "fake generate: no script entry for prompt " .. p)
      local texts = o.temperature == 0 and {entry.greedy} or entry.samples
      assert(#texts == o.n, "fake generate: scripted " .. #texts .. " samples, asked " .. o.n)
      for _, t in ipairs(texts) do
        local toks = {}
        for i = 1, #t do toks[i] = t:byte(i) end
        out[#out + 1] = {prompt = pi, text = t, tokens = toks, logprob = -0.1 * #t,
                         finish = "stop"}
      end
    end
    return out
  end
  return f
end

local PROBLEMS = {
  {id = 1, question = "Q-one: what is 2+3?", answer = "5"},
  {id = "two", question = "Q-two: pick seven", answer = "7"},
  {id = 3, question = "Q-three: half", answer = "\\frac{1}{2}"},
}

local SCRIPT = {
  ["Q-one"] = {greedy = "so \\boxed{5}",
               samples = {"\\boxed{5}", "no idea", "\\boxed{5}", "\\boxed{5.0}"}},
  ["Q-two"] = {greedy = "The answer is 8",
               samples = {"\\boxed{3}", "\\boxed{7}", "\\boxed{7}", "\\boxed{3}"}},
  ["Q-three"] = {greedy = "\\boxed{0.5}",
                 samples = {"\\boxed{1/2}", "\\boxed{2}", "\\boxed{2}", "\\boxed{\\frac12}"}},
}

local QUIET = {mode = "off"}

H.case("metrics through evaluate.run match hand-computed values (qwen mode)", function()
  local f = fake(SCRIPT)
  local s, recs = evaluate.run(nil, PROBLEMS, {generate = f.generate, n = 4, temperature = 0.7,
                                               batch_size = 2, progress = QUIET})
  -- correct samples per problem: 3 (one without an answer), 2, 2 (1/2 and \frac12 match)
  -- greedy: 5 ok, 8 wrong, 0.5 = 1/2 numerically ok
  H.near(s.acc, 2 / 3, 1e-12, "acc")
  H.eq(s.correct, 2, "correct")
  H.near(s["avg@4"], (3 / 4 + 2 / 4 + 2 / 4) / 3, 1e-12, "avg@4")
  H.near(s["pass@1"], 1.75 / 3, 1e-12, "pass@1 = avg@4")
  -- pass@2: c=3 -> 1; c=2 -> 1 - C(2,2)/C(4,2) = 5/6
  H.near(s["pass@2"], (1 + 5 / 6 + 5 / 6) / 3, 1e-12, "pass@2 unbiased")
  H.near(s["pass@4"], 1.0, 1e-12, "pass@4")
  H.eq(s["pass@8"], nil, "no pass@8 with n = 4")
  -- maj@4: {5, -, 5, 5.0} -> 5 ok; {3, 7, 7, 3} tie -> 3 (first seen) wrong;
  -- {1/2, 2, 2, \frac12} tie after normalisation -> 1/2 (first seen) ok
  H.near(s["maj@4"], 2 / 3, 1e-12, "maj@4")
  H.near(s.box_rate, 2 / 3, 1e-12, "box rate (greedy)")
  H.near(s.mean_length, (#"so \\boxed{5}" + #"The answer is 8" + #"\\boxed{0.5}") / 3, 1e-12,
         "mean length (greedy tokens)")
  H.near(s.sample_box_rate, 11 / 12, 1e-12, "sample box rate")
  H.eq(s.n, 3); H.eq(s.samples, 4)
  -- Wilson interval of 2/3
  local lo, hi = require("confit.metrics").proportion_ci(2, 3)
  H.near(s.acc_ci95[1], lo, 1e-12); H.near(s.acc_ci95[2], hi, 1e-12)
  H.ok(s.acc_ci95[1] < s.acc and s.acc < s.acc_ci95[2], "acc inside its interval")
  H.ok(s["pass@1_ci95"][1] < s["pass@1"], "pass@1 interval")
  -- batching: 2 batches x (greedy + sampled) = 4 calls; sampled seeds differ per batch
  H.eq(f.calls, 4, "generate calls")
  H.eq(f.opts[1].temperature, 0); H.eq(f.opts[2].temperature, 0.7); H.eq(f.opts[2].n, 4)
  H.eq(f.opts[2].top_p, 0.95, "default top_p")
  H.eq(f.opts[2].seed, 1, "seed of the first batch"); H.eq(f.opts[4].seed, 3, "second batch")
  H.eq(f.opts[1].max_new_tokens, 3072, "default max_new_tokens")
  -- records in problem order with graded fields
  H.eq(#recs, 3)
  H.eq(recs[2].id, "two")
  H.eq(recs[2].greedy.extracted, "8"); H.eq(recs[2].greedy.correct, false)
  H.eq(recs[1].samples[2].extracted, jsonio.null, "no answer -> null")
  H.eq(recs[3].samples[4].correct, true, "\\frac12 equals \\frac{1}{2}")
  H.eq(recs[2].has_box, false); H.eq(recs[1].has_box, true)
  -- the qwen prompt, byte-exact
  H.eq(f.prompts[1], "<|im_start|>system\nPlease reason step by step, and put your final answer "
       .. "within \\boxed{}.<|im_end|>\n<|im_start|>user\nQ-one: what is 2+3?<|im_end|>\n"
       .. "<|im_start|>assistant\n")
end)

H.case("greedy only and samples only", function()
  local f = fake(SCRIPT)
  local s = evaluate.run(nil, PROBLEMS, {generate = f.generate, progress = QUIET})
  H.near(s.acc, 2 / 3, 1e-12)
  H.eq(s["pass@1"], nil); H.eq(s.samples, nil)
  H.eq(f.calls, 1, "one greedy call for 3 problems at batch size 8")
  f = fake(SCRIPT)
  s = evaluate.run(nil, PROBLEMS, {generate = f.generate, greedy = false, n = 4, progress = QUIET})
  H.eq(s.acc, nil)
  H.near(s["pass@1"], 1.75 / 3, 1e-12)
  H.near(s.box_rate, 11 / 12, 1e-12, "box rate over samples without greedy")
  H.near(s.mean_length, (9 + 7 + 9 + 11 + 9 * 4 + 11 + 9 + 9 + 15) / 12, 1e-12)
end)

H.case("strict vs qwen: answers only the qwen fallbacks recover", function()
  local probs = {{id = 1, question = "Q-a", answer = "7"}, {id = 2, question = "Q-b", answer = "12"},
                 {id = 3, question = "Q-c", answer = "\\frac{1}{2}"}}
  local script = {
    ["Q-a"] = {greedy = "Adding up, the answer is 7."},        -- "he answer is" fallback
    ["Q-b"] = {greedy = "3 times 4 gives 12"},                 -- last-number fallback
    ["Q-c"] = {greedy = "\\boxed{0.5}"},                       -- numeric equivalence
  }
  local fq, fs = fake(script), fake(script)
  local q = evaluate.run(nil, probs, {generate = fq.generate, mode = "qwen", progress = QUIET})
  local s, recs = evaluate.run(nil, probs, {generate = fs.generate, mode = "strict", progress = QUIET})
  H.near(q.acc, 1.0, 0, "qwen recovers all three")
  H.raises(function() evaluate.run(5, probs, {progress = QUIET}) end, "need a model with :generate", "got number")
  H.raises(function() evaluate.format_table({q, 3}) end, "format_table: summary 2 must be a table")
  H.raises(function() evaluate.format_table() end, "format_table: expected a list of summaries")
  H.near(s.acc, 0.0, 0, "strict recovers none")
  H.eq(recs[1].greedy.extracted, jsonio.null, "strict: no box, no answer")
  H.eq(recs[3].greedy.extracted, "0.5", "strict extracts the box but compares strings")
  H.eq(s.mode, "strict")
  H.eq(fs.prompts[1], "<|im_start|>system\nPlease reason step by step, and put your final answer "
       .. "within \\boxed{}.<|im_end|>\n<|im_start|>user\nProblem: Q-a\nMark your solution with "
       .. "\\boxed\nAnswer:<|im_end|>\n<|im_start|>assistant\n", "strict prompt")
  -- template and grader overrides
  local fp = fake(script)
  local _, r2 = evaluate.run(nil, probs, {generate = fp.generate, template = function(q) return "<<" .. q .. ">>" end,
                                          progress = QUIET})
  H.eq(fp.prompts[1], "<<Q-a>>", "template function")
  H.eq(r2[1].greedy.correct, true)
  local fp2 = fake(script)
  evaluate.run(nil, probs, {generate = fp2.generate, template = "plain", progress = QUIET})
  H.eq(fp2.prompts[2], "Q-b", "template by name")
end)

H.case("per-problem JSONL fields, summary.json and settings file", function()
  local dir = TMP .. "/fields"
  local f = fake(SCRIPT)
  local s = evaluate.run(nil, PROBLEMS, {generate = f.generate, n = 4, out_dir = dir,
                                         benchmark = "unit", progress = QUIET})
  local recs = assert(jsonio.read_jsonl(dir .. "/eval_before.jsonl"))
  H.eq(#recs, 3)
  for i, r in ipairs(recs) do
    H.eq(r.benchmark, "unit"); H.eq(r.id, PROBLEMS[i].id); H.eq(r.question, PROBLEMS[i].question)
    H.eq(r.answer, PROBLEMS[i].answer); H.eq(r.mode, "qwen"); H.eq(type(r.has_box), "boolean")
    for _, c in ipairs({r.greedy, table.unpack(r.samples)}) do
      H.eq(type(c.completion), "string"); H.eq(type(c.correct), "boolean")
      H.eq(math.type(c.length), "integer"); H.eq(type(c.logprob), "number")
      H.ok(c.extracted == jsonio.null or type(c.extracted) == "string", "extracted")
      H.eq(type(c.boxed), "boolean"); H.eq(c.finished, true)
    end
    H.eq(#r.samples, 4)
  end
  H.eq(recs[1].greedy.length, #"so \\boxed{5}")
  H.near(recs[1].greedy.logprob, -0.1 * #"so \\boxed{5}", 1e-12)
  local sj = assert(jsonio.read_json(dir .. "/summary.json"))
  H.near(sj.benchmarks.unit.before.acc, s.acc, 0, "summary.json acc")
  H.near(sj.benchmarks.unit.before["maj@4"], 2 / 3, 1e-15)
  H.eq(#sj.benchmarks.unit.before.acc_ci95, 2)
  local st = assert(jsonio.read_json(dir .. "/eval_before.settings.json"))
  H.eq(st.n, 4); H.eq(st.mode, "qwen"); H.eq(st.template, "qwen25-math-cot")
  -- an "after" stage lands beside "before" in the same summary.json
  evaluate.run(nil, PROBLEMS, {generate = fake(SCRIPT).generate, out_dir = dir, stage = "after",
                               benchmark = "unit", progress = QUIET})
  sj = assert(jsonio.read_json(dir .. "/summary.json"))
  H.ok(sj.benchmarks.unit.before and sj.benchmarks.unit.after, "before and after")
  H.ok(io.open(dir .. "/eval_after.jsonl"), "eval_after.jsonl")
end)

-- (audit) Collapse visibility: how many distinct answers the n samples of a problem give and
-- how many of them give the most frequent one, per record and as means in the summary.
H.case("answer diversity per problem and in the summary (hand-made records)", function()
  local function smp(extracted, correct)
    return {completion = "x", extracted = extracted, correct = correct, length = 3, boxed = true}
  end
  local null = jsonio.null
  local recs = {
    {id = 1, answer = "1", samples = {smp("1", true), smp("1", true), smp("2", false), smp("1", true)}},
    -- no answer does not count as one; "03" is 3 to the toy grader
    {id = 2, answer = "4", samples = {smp("3", false), smp(null, false), smp("3", false), smp("03", false)}},
    {id = 3, answer = "5", samples = {smp("5", true), smp("6", false), smp("7", false), smp("8", false)}},
  }
  local d, m = evaluate.answer_spread(recs[2].samples, evaluate.graders.toy)
  H.eq(d, 1, "distinct answers of problem 2"); H.near(m, 3 / 4, 1e-15, "modal share of problem 2")
  -- the qwen grader: 0.5 and \frac{1}{2} are one answer (grade.equal), 3 another
  d, m = evaluate.answer_spread({smp("0.5", true), smp("\\frac{1}{2}", true), smp("3", false)}, evaluate.graders.qwen)
  H.eq(d, 2, "0.5 and 1/2 are one distinct answer"); H.near(m, 2 / 3, 1e-15)
  local s2 = evaluate.summarize({{id = 1, answer = "1/2", samples = {smp("0.5", true), smp("7", false),
                                   smp("\\frac{1}{2}", true), smp("7", false), smp("1/2", true)}}},
                                 {grader = evaluate.graders.qwen})
  H.eq(s2["maj@5"], 1, "maj@5: 0.5, \\frac{1}{2} and 1/2 vote together against 7, 7")
  d, m = evaluate.answer_spread({smp(null, false), smp(null, false)}, evaluate.graders.toy)
  H.eq(d, 0, "no answers: none distinct"); H.eq(m, 0, "no answers: no modal share")
  local s = evaluate.summarize(recs, {grader = evaluate.graders.toy})
  H.near(s.distinct_answers, (2 + 1 + 4) / 3, 1e-15, "mean distinct answers")
  H.near(s.modal_share, (3 / 4 + 3 / 4 + 1 / 4) / 3, 1e-15, "mean modal share")
  -- per-problem means 3/4, 0, 1/4: the t interval (-0.62..1.28) is clipped to [0, 1]
  H.near(s["pass@1"], 1 / 3, 1e-15)
  H.eq(s["pass@1_ci95"][1], 0, "pass@1 interval clipped below"); H.eq(s["pass@1_ci95"][2], 1, "and above")
  H.ok(evaluate.format_table({s}):find("distinct", 1, true), "a column in the table")
  -- one sample per problem says nothing about diversity
  local one = {{id = 1, answer = "1", samples = {smp("1", true)}}, {id = 2, answer = "1", samples = {smp("2", false)}}}
  s = evaluate.summarize(one, {grader = evaluate.graders.toy})
  H.eq(s.distinct_answers, nil, "n = 1: no distinct_answers"); H.eq(s.modal_share, nil, "nor modal_share")
  H.ok(not evaluate.format_table({s}):find("distinct", 1, true), "no column")
  -- evaluate.run writes the per-problem values into each record (SCRIPT, qwen grader: 5 and
  -- 5.0 are one answer, 1/2 and \frac12 too)
  local _, rr = evaluate.run(nil, PROBLEMS, {generate = fake(SCRIPT).generate, n = 4, progress = QUIET})
  H.eq(rr[1].distinct_answers, 1); H.near(rr[1].modal_share, 3 / 4, 1e-15)
  H.eq(rr[2].distinct_answers, 2); H.near(rr[2].modal_share, 2 / 4, 1e-15)
  H.eq(rr[3].distinct_answers, 2); H.near(rr[3].modal_share, 2 / 4, 1e-15)
  _, rr = evaluate.run(nil, PROBLEMS, {generate = fake(SCRIPT).generate, progress = QUIET})
  H.eq(rr[1].distinct_answers, nil, "greedy only: no diversity fields")
end)

-- (mutation testing) evaluate.summarize field by field on hand-made records: two problems, a
-- greedy completion and three samples each. Problem 1: greedy right (4 tokens, boxed, finished);
-- samples 1 (right, 2 tokens), 2 (6, cut at the limit), none (8, no box, cut). Problem 2: greedy
-- wrong (8 tokens, no box, cut); samples 5, 5 (right, 3 tokens each), 4 (5 tokens).
H.case("evaluate.summarize: every field by hand, with and without greedy completions", function()
  local metrics = require "confit.metrics"
  local function c(extracted, correct, length, boxed, finished)
    return {completion = "x", extracted = extracted, correct = correct, length = length, boxed = boxed,
            finished = finished}
  end
  local null = jsonio.null
  local recs = {
    {id = 1, answer = "1", greedy = c("1", true, 4, true, true),
     samples = {c("1", true, 2, true, true), c("2", false, 6, true, false), c(null, false, 8, false, false)}},
    {id = 2, answer = "5", greedy = c("3", false, 8, false, false),
     samples = {c("5", true, 3, true, true), c("5", true, 3, true, true), c("4", false, 5, true, true)}},
  }
  local s = evaluate.summarize(recs, {grader = evaluate.graders.toy, benchmark = "b", mode = "qwen"})
  H.eq(s.n, 2); H.eq(s.benchmark, "b"); H.eq(s.grader, "toy"); H.eq(s.samples, 3)
  H.eq(s.acc, 0.5); H.eq(s.correct, 1)
  local lo, hi = metrics.proportion_ci(1, 2)
  H.eq(s.acc_ci95[1], lo); H.eq(s.acc_ci95[2], hi)
  H.near(s["avg@3"], 0.5, 1e-15); H.near(s["pass@1"], 0.5, 1e-15)
  lo, hi = metrics.mean_ci({1 / 3, 2 / 3}, 0, 1)
  H.eq(s["pass@1_ci95"][1], lo); H.eq(s["pass@1_ci95"][2], hi)
  -- pass@2 = 1 - C(3-c, 2)/C(3, 2): c = 1 -> 2/3, c = 2 -> 1; no pass@4 from 3 samples
  H.near(s["pass@2"], (2 / 3 + 1) / 2, 1e-15, "pass@2"); H.eq(s["pass@4"], nil)
  -- votes: 1 and 2 tie, 1 first (right); 5 (right)
  H.eq(s["maj@3"], 1, "maj@3")
  lo, hi = metrics.proportion_ci(2, 2)
  H.eq(s["maj@3_ci95"][1], lo); H.eq(s["maj@3_ci95"][2], hi)
  H.eq(s.distinct_answers, 2); H.near(s.modal_share, (1 / 3 + 2 / 3) / 2, 1e-15)
  -- with greedy completions the headline length, box and truncation rates are theirs
  H.eq(s.mean_length, 6, "greedy mean length"); H.eq(s.box_rate, 0.5); H.eq(s.truncated_rate, 0.5)
  H.near(s.sample_mean_length, 27 / 6, 1e-15); H.near(s.sample_box_rate, 5 / 6, 1e-15)
  -- the table: every column of the row, in percent (Wilson 1 of 2: 9.5..90.5)
  local tab = evaluate.format_table({s})
  local rows = {}
  for line in tab:gmatch("[^\n]+") do rows[#rows + 1] = line end
  H.eq(#rows, 3, "header, rule, one row: " .. tab)
  local function cells(line)
    local t = {}
    for cell in (line .. "  "):gmatch("(%S.-)%s%s+") do t[#t + 1] = cell end
    return table.concat(t, "|")
  end
  H.eq(cells(rows[1]), "benchmark|mode|grader|n|acc % [95% CI]|avg@n % [95% CI]|pass@2|maj@n|n samples|distinct|"
       .. "mean len|box %|trunc %", "header")
  H.eq(cells(rows[3]), "b|qwen|toy|2|50.0 [9.5, 90.5]|50.0 [0.0, 100.0]|83.3|100.0|3|2.00|6.0|50.0|50.0", "row")
  -- opts.ks picks the k: pass@3 only (pass@1 is avg@n whatever ks says)
  local s3 = evaluate.summarize(recs, {grader = evaluate.graders.toy, ks = {1, 3}})
  H.eq(s3["pass@3"], 1); H.eq(s3["pass@2"], nil); H.near(s3["pass@1"], 0.5, 1e-15)
  -- without greedy completions: the samples' rates under the headline names, no sample_* ones
  for _, r in ipairs(recs) do r.greedy = nil end
  local t = evaluate.summarize(recs, {grader = evaluate.graders.toy})
  H.eq(t.acc, nil); H.eq(t.correct, nil); H.eq(t.acc_ci95, nil)
  H.near(t.mean_length, 27 / 6, 1e-15); H.near(t.box_rate, 5 / 6, 1e-15)
  H.near(t.truncated_rate, 2 / 6, 1e-15, "samples cut at the limit")
  H.eq(t.sample_mean_length, nil); H.eq(t.sample_box_rate, nil)
  -- records without `finished` (written before it was kept) have no truncation rate
  for _, r in ipairs(recs) do for _, x in ipairs(r.samples) do x.finished = nil end end
  H.eq(evaluate.summarize(recs, {grader = evaluate.graders.toy}).truncated_rate, nil)
  -- a sampled run without greedy: has_box says whether any sample has a box
  local script = {["Q-x"] = {samples = {"7", "8"}}, ["Q-y"] = {samples = {"7", "\\boxed{8}"}}}
  local _, rr = evaluate.run(nil, {{id = 1, question = "Q-x", answer = "7"}, {id = 2, question = "Q-y", answer = "8"}},
                             {generate = fake(script).generate, greedy = false, n = 2, progress = QUIET})
  H.eq(rr[1].has_box, false); H.eq(rr[2].has_box, true)
end)

H.case("resume skips finished problems, tolerates a torn last line, refuses other settings", function()
  local dir = TMP .. "/resume"
  local opts = function(f) return {generate = f.generate, n = 4, out_dir = dir, batch_size = 1,
                                   progress = QUIET, benchmark = "unit"} end
  local f1 = fake(SCRIPT)
  local s1 = evaluate.run(nil, PROBLEMS, opts(f1))
  H.eq(f1.calls, 6, "3 batches x (greedy + samples)")
  local f2 = fake(SCRIPT)
  local s2, r2 = evaluate.run(nil, PROBLEMS, opts(f2))
  H.eq(f2.calls, 0, "finished directory: nothing generated")
  H.eq(s2.resumed, 3)
  H.near(s2.acc, s1.acc, 0); H.near(s2["maj@4"], s1["maj@4"], 0); H.near(s2["pass@2"], s1["pass@2"], 0)
  H.eq(#r2, 3)
  -- tear the last line in half, as a killed writer would leave it
  local path = dir .. "/eval_before.jsonl"
  local fh = assert(io.open(path, "rb")); local text = fh:read("a"); fh:close()
  local last_start = text:sub(1, -2):match(".*()\n") + 1
  local torn = text:sub(1, last_start + 40)
  fh = assert(io.open(path, "wb")); fh:write(torn); fh:close()
  local function inode() local p = io.popen("stat -c %i '" .. path .. "'"); local i = p:read("a"); p:close(); return i end
  local torn_inode = inode()
  local f3 = fake(SCRIPT)
  local s3 = evaluate.run(nil, PROBLEMS, opts(f3))
  H.eq(f3.calls, 2, "only the torn problem is regenerated (greedy + samples)")
  H.eq(s3.resumed, 2)
  H.near(s3.acc, s1.acc, 0)
  local recs = assert(jsonio.read_jsonl(path))
  H.eq(#recs, 3, "three complete lines, no torn one left")
  H.eq(recs[3].id, 3)
  -- (twenty-third session) the torn line is cut off in place: the whole lines stay byte for
  -- byte (they were written again from their decoded records before)
  H.eq(H.read(path):sub(1, last_start - 1), text:sub(1, last_start - 1), "the kept lines as they were")
  H.eq(inode(), torn_inode, "the same file, cut, not a copy")
  -- a last record whole but for its newline keeps it and gets the newline
  local whole = H.read(path)
  fh = assert(io.open(path, "wb")); fh:write(whole:sub(1, -2)); fh:close()
  local f3b = fake(SCRIPT)
  local s3b = evaluate.run(nil, PROBLEMS, opts(f3b))
  H.eq(f3b.calls, 0, "nothing generated"); H.eq(s3b.resumed, 3)
  H.eq(H.read(path), whole, "the newline back, nothing else changed")
  -- more problems than before: only the new one is generated
  local more = {PROBLEMS[1], PROBLEMS[2], PROBLEMS[3],
                {id = 4, question = "Q-one: again", answer = "5"}}
  local f4 = fake(SCRIPT)
  local s4 = evaluate.run(nil, more, opts(f4))
  H.eq(f4.calls, 2); H.eq(s4.n, 4); H.eq(s4.resumed, 3)
  -- other decoding settings: refused with the difference named
  local o = opts(fake(SCRIPT)); o.n = 2
  H.raises(function() evaluate.run(nil, PROBLEMS, o) end, "other settings", "n: 4 then, 2 now")
  -- the same verdict before anything runs or is written (recipes check first)
  local why = evaluate.check_resume(o)
  H.ok(why and why:find("n: 4 then, 2 now", 1, true) and why:find("--no-resume", 1, true), tostring(why))
  H.eq(evaluate.check_resume(opts(fake(SCRIPT))), nil, "the same settings resume")
  -- resume = false starts over
  local f5 = fake(SCRIPT)
  local o5 = opts(f5); o5.resume = false
  evaluate.run(nil, PROBLEMS, o5)
  H.eq(f5.calls, 6)
  H.eq(#assert(jsonio.read_jsonl(path)), 3)
  -- top_k with top_p: records sampled before top_p counted among the top_k ids (their settings
  -- file lacks top_p_among_top_k) are not mixed with new ones
  local o6 = opts(fake(SCRIPT)); o6.top_k, o6.top_p, o6.resume = 5, 0.9, false
  evaluate.run(nil, PROBLEMS, o6)
  o6.resume = true
  H.eq(evaluate.check_resume(o6), nil, "the same settings resume")
  local spath = dir .. "/eval_before.settings.json"
  local st = assert(jsonio.read_json(spath))
  H.eq(st.top_p_among_top_k, true)
  st.top_p_among_top_k = nil
  assert(jsonio.write_json_atomic(spath, st))
  H.raises(function() evaluate.run(nil, PROBLEMS, o6) end, "other settings", "top_p_among_top_k")
  -- top_p = 1 keeps every top_k id either way: nothing to tell apart
  o6.top_p, o6.resume = 1, false
  evaluate.run(nil, PROBLEMS, o6)
  H.eq(assert(jsonio.read_json(spath)).top_p_among_top_k, nil, "top_p = 1")
end)

-- (mutation testing) the progress lines count the problems generated: none for a finished
-- directory (it printed a bar of 0 problems)
H.case("progress: lines while generating, none when everything is resumed", function()
  local dir = TMP .. "/progress"
  local lines = {}
  local stream = {write = function(self, ...) for _, x in ipairs({...}) do lines[#lines + 1] = x end; return self end,
                  flush = function(self) return self end}
  local o = {generate = fake(SCRIPT).generate, out_dir = dir, progress = {mode = "plain", stream = stream}}
  evaluate.run(nil, PROBLEMS, o)
  local text = table.concat(lines)
  H.ok(text:find("3/3", 1, true), "the problems counted: " .. text)
  lines = {}
  local s = evaluate.run(nil, PROBLEMS, o)
  H.eq(s.resumed, 3)
  H.eq(table.concat(lines), "", "nothing to generate, nothing printed")
end)

-- A template function or a grader table of one's own changed between runs: resume compared only
-- "custom" with "custom" and mixed the records (8 problems of template A resumed under template B).
H.case("resume refuses records of another template function or grader table", function()
  local dir = TMP .. "/resume-custom"
  local function opts(template, grader)
    return {generate = fake(SCRIPT).generate, out_dir = dir, progress = QUIET, benchmark = "unit",
            template = template, grader = grader}
  end
  local A = function(q) return "A: " .. q end
  local B = function(q) return "B: " .. q end
  evaluate.run(nil, {PROBLEMS[1], PROBLEMS[2]}, opts(A))
  local recs = assert(jsonio.read_jsonl(dir .. "/eval_before.jsonl"))
  H.eq(type(recs[1].prompt_digest), "string", "each record keeps its prompt's digest")
  H.raises(function() evaluate.run(nil, PROBLEMS, opts(B)) end, "holds problem 1",
           "another prompt than the template function gives now", "--no-resume")
  local why = evaluate.check_resume(opts(B), PROBLEMS)
  H.ok(why and why:find("another prompt", 1, true), "check_resume says so first: " .. tostring(why))
  H.eq(#assert(jsonio.read_jsonl(dir .. "/eval_before.jsonl")), 2, "nothing appended")
  -- another function that gives the same prompts resumes, and new problems are generated
  local A2 = function(q) return "A: " .. q end
  local s = evaluate.run(nil, PROBLEMS, opts(A2))
  H.eq(s.resumed, 2); H.eq(s.n, 3)
  -- a record without a digest (an older confit) stands under a template name only
  local path = dir .. "/eval_before.jsonl"
  recs = assert(jsonio.read_jsonl(path))
  for _, r in ipairs(recs) do r.prompt_digest = nil end
  assert(jsonio.write_jsonl_atomic(path, recs))
  H.raises(function() evaluate.run(nil, PROBLEMS, opts(A)) end, "holds problem 1", "has no prompt_digest")
  -- graders: a named table resumes under the same name and code, not under other code
  local g1 = {name = "mine", extract = function(t) return t:match("boxed{(.-)}") end,
              equal = function(p, r) return p == r end}
  local g2 = {name = "mine", extract = g1.extract, equal = function() return true end}
  evaluate.run(nil, {PROBLEMS[1], PROBLEMS[2]}, (function() local o = opts(A, g1); o.resume = false; return o end)())
  H.eq(evaluate.run(nil, {PROBLEMS[1], PROBLEMS[2]}, opts(A, g1)).resumed, 2, "the same grader resumes")
  H.raises(function() evaluate.run(nil, PROBLEMS, opts(A, g2)) end, "other settings", "grader_code:")
  -- where the functions stand in their file does not count (the bytecode held line numbers)
  local src = 'return {name = "moved", extract = function(t) return t:match("boxed{(.-)}") end,\n'
              .. '  equal = function(p, r) return p == r end}'
  local ga, gb = load(src)(), load("\n\n-- a comment added above\n" .. src)()
  local o1 = opts(A, ga); o1.resume = false
  evaluate.run(nil, {PROBLEMS[1], PROBLEMS[2]}, o1)
  H.eq(evaluate.run(nil, {PROBLEMS[1], PROBLEMS[2]}, opts(A, gb)).resumed, 2, "the same code three lines lower resumes")
  -- a table without a name: its code does not show everything it depends on, so no resume
  local anon = {extract = g1.extract, equal = g1.equal}
  H.raises(function() evaluate.run(nil, PROBLEMS, opts(A, anon)) end, "grader table that has no name",
           "grader.name")
  H.ok(evaluate.check_resume(opts(A, anon)), "check_resume refuses it too")
  local o = opts(A, anon); o.resume = false
  H.eq(evaluate.run(nil, PROBLEMS, o).n, 3, "a fresh run with it is fine")
  -- confit's own grader tables passed as tables are the named graders
  local ot = opts("plain", evaluate.graders.toy); ot.resume = false
  evaluate.run(nil, PROBLEMS, ot)
  H.eq(evaluate.run(nil, PROBLEMS, opts("plain", "toy")).resumed, 3, "evaluate.graders.toy = \"toy\"")
end)

-- (fix_eval) Resume refuses what it cannot vouch for: records without a readable settings
-- file, and records whose question or answer the data has changed since.
H.case("resume refuses records whose settings file is missing or unreadable", function()
  local dir = TMP .. "/resume-settings"
  local opts = {generate = fake(SCRIPT).generate, out_dir = dir, progress = QUIET, benchmark = "unit"}
  evaluate.run(nil, PROBLEMS, opts)
  local settings = dir .. "/eval_before.settings.json"
  local fh = assert(io.open(settings, "wb")); fh:write("{\n"); fh:close()
  local o2 = {generate = fake(SCRIPT).generate, out_dir = dir, progress = QUIET, benchmark = "unit",
              n = 4, max_new_tokens = 8}
  H.raises(function() evaluate.run(nil, PROBLEMS, o2) end, "cannot resume", settings, "cannot be read")
  local why = evaluate.check_resume(o2)
  H.ok(why and why:find(settings, 1, true) and why:find("--no-resume", 1, true), tostring(why))
  fh = assert(io.open(settings, "rb")); H.eq(fh:read("a"), "{\n", "settings file left alone"); fh:close()
  os.remove(settings)
  H.raises(function() evaluate.run(nil, PROBLEMS, opts) end, "cannot resume", settings, "is missing")
  H.ok(evaluate.check_resume(opts), "check_resume says so too")
  -- (twenty-eighth session) a FIFO there is no missing file: named as unreadable, never opened
  -- (a child under `timeout`: a regression blocks there, not here)
  H.mkfifo(settings)
  local out, _, rc = H.run_limited(("io.write(tostring(require('confit.evaluate').check_resume({out_dir = %q, benchmark = 'unit'})))")
                                    :format(dir), 20)
  os.remove(settings)
  H.ok(out:find("its settings file " .. settings .. " cannot be read (" .. settings .. ": not a regular file)", 1, true)
       and rc == 0, out)
  -- an empty eval file holds nothing to resume: no settings needed; nor does one of blank lines
  -- (nineteenth session: read_jsonl found no records in it, yet the resume asked for settings)
  for _, text in ipairs({"", "\n\n"}) do
    os.remove(settings)
    fh = assert(io.open(dir .. "/eval_before.jsonl", "wb")); fh:write(text); fh:close()
    local f = fake(SCRIPT)
    evaluate.run(nil, PROBLEMS, {generate = f.generate, out_dir = dir, progress = QUIET, benchmark = "unit"})
    H.eq(f.calls, 1, "generated afresh over " .. #text .. " bytes")
  end
end)

H.case("resume refuses records whose question or answer the data changed", function()
  local dir = TMP .. "/resume-data"
  local function opts(f) return {generate = f.generate, out_dir = dir, progress = QUIET, benchmark = "unit"} end
  evaluate.run(nil, PROBLEMS, opts(fake(SCRIPT)))
  local function with(i, field, value)
    local probs = {}
    for k, p in ipairs(PROBLEMS) do probs[k] = {id = p.id, question = p.question, answer = p.answer} end
    probs[i][field] = value
    return probs
  end
  local path = dir .. "/eval_before.jsonl"
  local fixed = with(2, "answer", "8")
  H.raises(function() evaluate.run(nil, fixed, opts(fake(SCRIPT))) end, path, "problem two", "another answer")
  local why = evaluate.check_resume(opts(fake(SCRIPT)), fixed)
  H.ok(why and why:find("problem two", 1, true) and why:find("--no-resume", 1, true), tostring(why))
  H.raises(function() evaluate.run(nil, with(3, "question", "Q-three: a half"), opts(fake(SCRIPT))) end,
           "problem 3", "another question")
  -- the same data (answers given as numbers or strings alike) resumes without generating
  local f = fake(SCRIPT)
  local s = evaluate.run(nil, with(1, "answer", 5), opts(f))
  H.eq(f.calls, 0, "nothing generated"); H.eq(s.resumed, 3)
  H.eq(evaluate.check_resume(opts(f), PROBLEMS), nil, "unchanged data resumes")
  -- starting over takes the new answer
  local o = opts(fake(SCRIPT)); o.resume = false
  local s2, r2 = evaluate.run(nil, fixed, o)
  H.eq(r2[2].answer, "8"); H.eq(r2[2].greedy.correct, true, "graded with the new answer")
  H.near(s2.acc, 3 / 3, 0)
end)

H.case("resume refuses a damaged record, naming the problem and the field", function()
  -- (a record whose greedy completion was not an object, or whose samples were cut, was resumed
  -- as it was: the summary silently left it out of acc, or counted fewer samples)
  local dir = TMP .. "/resume-damaged"
  local function opts(f) return {generate = f.generate, out_dir = dir, progress = QUIET, benchmark = "unit", n = 4} end
  evaluate.run(nil, PROBLEMS, opts(fake(SCRIPT)))
  local path = dir .. "/eval_before.jsonl"
  local good = assert(jsonio.read_jsonl(path))
  for _, c in ipairs({{function(r) r.greedy = 1e300 end, "greedy must be an object"},
                      {function(r) r.greedy.correct = "x" end, "greedy.correct must be a boolean, got string"},
                      {function(r) r.samples[4] = nil end, "samples must be a list of 4 completions, got 3 entries"},
                      {function(r) r.samples[1].length = -3 end, "samples[1].length must be an integer >= 0"},
                      {function(r) r.samples[2].extracted = 7 end, "samples[2].extracted must be a string or null"}}) do
    local recs = assert(jsonio.read_jsonl(path))
    c[1](recs[2])
    assert(jsonio.write_jsonl_atomic(path, recs))
    local why = evaluate.check_resume(opts(fake(SCRIPT)), PROBLEMS)
    H.ok(why and why:find("damaged record of problem two", 1, true) and why:find(c[2], 1, true)
         and why:find("remove its line", 1, true), tostring(why))
    H.raises(function() evaluate.run(nil, PROBLEMS, opts(fake(SCRIPT))) end, path, "problem two", c[2])
    assert(jsonio.write_jsonl_atomic(path, good))
  end
  local f = fake(SCRIPT)
  H.eq(evaluate.run(nil, PROBLEMS, opts(f)).resumed, 3, "the intact records resume")
  H.eq(f.calls, 0, "nothing generated")
end)

-- (fix_eval2) Records say which model wrote them: another folder, rewritten weights, another
-- device or dtype are refused like other settings, and so are records that do not say.
H.case("resume refuses records of another model folder, other weights, device or dtype", function()
  local dir = TMP .. "/resume-model"
  local ma, mb = TMP .. "/model-a", TMP .. "/model-b"
  for _, m in ipairs({ma, mb}) do
    assert(os.execute("mkdir -p '" .. m .. "'"))
    H.write(m .. "/config.json", '{"model_type": "qwen2"}\n')
    H.write(m .. "/model.safetensors", "weights")
  end
  local function opts(mdir, f, extra)
    local o = {generate = (f or fake(SCRIPT)).generate, out_dir = dir, progress = QUIET,
               benchmark = "unit", model_dir = mdir, device = "cpu"}
    for k, v in pairs(extra or {}) do o[k] = v end
    return o
  end
  evaluate.run(nil, PROBLEMS, opts(ma))
  local settings = dir .. "/eval_before.settings.json"
  local st = assert(jsonio.read_json(settings))
  local abs_a = st.model
  H.ok(abs_a:sub(1, 1) == "/" and abs_a:find("/model%-a$"), "absolute path: " .. abs_a)
  H.ok(st.model_files:find("config.json 24 ", 1, true) and st.model_files:find("model.safetensors 7 ", 1, true),
       st.model_files)
  H.eq(st.device, "cpu"); H.eq(st.dtype, "f32", "the CPU computes in f32")
  H.eq(evaluate.check_resume(opts(ma, nil, {dtype = "bf16"})), nil, "whatever dtype is asked for")
  -- the same folder, however spelled, resumes
  local f = fake(SCRIPT)
  evaluate.run(nil, PROBLEMS, opts(ma .. "/", f))
  H.eq(f.calls, 0, "nothing generated")
  -- another folder with the same files
  local why = evaluate.check_resume(opts(mb))
  H.ok(why and why:find("model: " .. abs_a .. " then, ", 1, true) and why:find("/model-b now", 1, true)
       and why:find("--no-resume", 1, true), tostring(why))
  H.raises(function() evaluate.run(nil, PROBLEMS, opts(mb)) end, "other settings", "model: " .. abs_a .. " then")
  -- another device and dtype
  H.raises(function() evaluate.run(nil, PROBLEMS, opts(ma, nil, {device = "cuda", dtype = "bf16"})) end,
           "device: cpu then, cuda now", "dtype: f32 then, bf16 now")
  -- rewritten weights: another size, or the same size written later
  H.write(ma .. "/model.safetensors", "new weights")
  H.raises(function() evaluate.run(nil, PROBLEMS, opts(ma)) end, "model_files: ",
           "model.safetensors 7 ", "model.safetensors 11 ")
  H.write(ma .. "/model.safetensors", "weights")
  assert(os.execute("touch -d '2001-02-03 04:05:06' '" .. ma .. "/model.safetensors'"))
  why = evaluate.check_resume(opts(ma))
  H.ok(why and why:find("model_files: ", 1, true), tostring(why))
  -- records written before the settings named the model: refused, not guessed
  local old = assert(jsonio.read_json(settings))
  old.model, old.model_files, old.device, old.dtype = nil, nil, nil, nil
  assert(jsonio.write_json_atomic(settings, old))
  local o = opts(ma)
  H.raises(function() evaluate.run(nil, PROBLEMS, o) end, "cannot resume", settings,
           "does not name the model", "--no-resume")
  why = evaluate.check_resume(o)
  H.ok(why and why:find("does not name the model", 1, true), tostring(why))
  -- ... unless the caller names no model either (records of an injected generate)
  local f2 = fake(SCRIPT)
  evaluate.run(nil, PROBLEMS, {generate = f2.generate, out_dir = dir, progress = QUIET, benchmark = "unit"})
  H.eq(f2.calls, 0, "nothing generated")
  -- starting over records the model
  f2 = fake(SCRIPT)
  evaluate.run(nil, PROBLEMS, opts(ma, f2, {resume = false}))
  H.eq(f2.calls, 1, "generated afresh")
  H.eq(assert(jsonio.read_json(settings)).model, abs_a)
  H.eq(evaluate.check_resume(opts(ma)), nil, "and resumes with it")
end)

H.case("mkdir_p makes a folder whose name starts with a dash", function()
  local exe = EXE
  if exe:sub(1, 1) ~= "/" then
    local p = assert(io.popen("pwd")); exe = p:read("l") .. "/" .. EXE; p:close()
  end
  local code = 'local ok, err = require("confit.evaluate").mkdir_p("-x/y"); print(ok, err)'
  local p = assert(io.popen(("cd '%s' && '%s' -e '%s' 2>&1"):format(TMP, exe, code)))
  local said = p:read("a"); p:close()
  H.ok(said:find("^true"), said)
  H.ok(require("confit.cli").is_dir(TMP .. "/-x/y"), "folder made")
end)

H.case("argument checks", function()
  local g = fake(SCRIPT).generate
  H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, mode = "loose"}) end,
           'evaluate: mode must be "qwen" or "strict", got "loose"')
  H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, n = 2, temperature = 0}) end, "temperature > 0")
  H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, greedy = false}) end, "nothing to do")
  H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, template = "nope"}) end, "unknown template")
  H.raises(function() evaluate.run(nil, {PROBLEMS[1], PROBLEMS[1]}, {generate = g}) end, "share the id 1")
  -- (Lua API audit) ids that cannot come back from the records, holes, empty questions
  H.raises(function() evaluate.run(nil, {{id = {}, question = "1+1=", answer = "2"}}, {generate = g}) end,
           "problem 1: the id must be a string or a finite number")
  H.raises(function() evaluate.run(nil, {{id = 0 / 0, question = "1+1=", answer = "2"}}, {generate = g}) end,
           "problem 1: the id must be")
  H.raises(function() evaluate.run(nil, {PROBLEMS[1], nil, PROBLEMS[2]}, {generate = g}) end, "problems has a hole")
  H.raises(function() evaluate.run(nil, {{id = "q7", question = "  ", answer = "2"}}, {generate = g}) end,
           "problem 1 (id q7): the question is empty")
  H.raises(function() evaluate.run(nil, PROBLEMS, {}) end, "need a model")
  -- (h24 walkthrough) a string is shown as one: "got 2" for "2" contradicted itself
  H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, n = "2"}) end, 'n must be an integer >= 0, got "2"')
  H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, top_p = "1"}) end, 'got "1"')
  -- (twenty-second session, a review's finding) a misspelt option was dropped without a word
  local err = H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, max_new_token = 4}) end,
                       "evaluate: unknown option max_new_token (options: ", "max_new_tokens")
  H.ok(err:find("test_evaluate.lua", 1, true), "at the caller: " .. err)
  H.raises(function() evaluate.check_resume({out_dir = TMP, benchmark = "x", tempreature = 1}, PROBLEMS) end,
           "unknown option tempreature")
  H.raises(function() evaluate.run(nil, PROBLEMS, {generate = function() return {} end, progress = QUIET}) end,
           "0 samples for 3 prompts x n=1")
end)

-- (mutation testing) a hole at the first place, a toy question without an answer, the default
-- batch size (8 problems a call), and the errors of the options at the caller's line
H.case("argument checks: first-place holes, toy answers, default batch size, errors at the caller", function()
  local g = fake(SCRIPT).generate
  H.raises(function() evaluate.run(nil, {[2] = PROBLEMS[1]}, {generate = g}) end, "problems has a hole: no problem 1 (of 2)")
  H.raises(function() evaluate.run(nil, {{prompt = "1+1="}}, {generate = g}) end, "problem 1 has no answer")
  -- (twenty-seventh session) a boolean answer was the text "false" to the toy grader ("\boxed{false}"
  -- right) and no answer to the others, as bench.load refuses it in a file
  for _, grader in ipairs({"toy", "qwen"}) do
    H.raises(function() evaluate.run(nil, {{prompt = "1+1=", answer = false}}, {generate = g, grader = grader}) end,
             "problem 1: the answer must be text or a number, got boolean")
    H.raises(function() evaluate.run(nil, {{id = 1, question = "q", answer = {}}}, {generate = g, grader = grader}) end,
             "problem 1: the answer must be text or a number, got table")
  end
  local script, probs = {}, {}
  for i = 1, 9 do
    local q = "item-" .. string.char(96 + i)
    script[q] = {greedy = "\\boxed{" .. i .. "}"}
    probs[i] = {id = i, question = q, answer = tostring(i)}
  end
  local f = fake(script)
  local s = evaluate.run(nil, probs, {generate = f.generate, template = "plain", progress = QUIET})
  H.eq(f.calls, 2, "9 problems at the default batch size 8: two calls")
  H.eq(#f.prompts, 9); H.eq(s.acc, 1)
  f = fake(script)
  evaluate.run(nil, {table.unpack(probs, 1, 8)}, {generate = f.generate, template = "plain", progress = QUIET})
  H.eq(f.calls, 1, "8 problems: one call")
  -- a sample must say its length: its tokens, or an integer length
  for _, smp in ipairs({{text = "\\boxed{5}"}, {text = "\\boxed{5}", length = 2.5}, {text = "x", length = "3"},
                        {tokens = {1, 2}}}) do
    local function gen(ps) local o = {}; for i in ipairs(ps) do o[i] = smp end; return o end
    local err = H.raises(function() evaluate.run(nil, PROBLEMS, {generate = gen, progress = QUIET}) end,
                         smp.text and "generate returned a sample without tokens or length"
                         or "generate returned a sample without text")
    H.ok(err:find("^[^:]*tests/lua/test_evaluate%.lua:%d+: "), "at the caller of evaluate.run: " .. err)
  end
  -- a records file that cannot be appended to (a folder in its place)
  local adir = TMP .. "/append-fails"
  assert(os.execute("mkdir -p '" .. adir .. "/eval_before.jsonl/x'"))
  local aerr = H.raises(function() evaluate.run(nil, PROBLEMS, {generate = g, out_dir = adir, resume = false, progress = QUIET}) end,
                        "cannot append to " .. adir .. "/eval_before.jsonl")
  H.ok(aerr:find("^[^:]*tests/lua/test_evaluate%.lua:%d+: "), "at the caller: " .. aerr)
  local dir = TMP .. "/broken-tc"
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local fh = assert(io.open(dir .. "/tokenizer_config.json", "wb")); fh:write("{"); fh:close()
  for _, call in ipairs({
    function() evaluate.run(nil, PROBLEMS, {generate = g, n = 2, temperature = 0}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, greedy = false}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, template = 5}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, stage = "during"}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, top_p = 2}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, batch_size = 0}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, grader = "loose"}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, grader = {extract = print}}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, model_dir = dir}) end,
    function() evaluate.check_resume({mode = "loose"}) end,
    function() evaluate.check_prompts(PROBLEMS, {stage = "during"}) end,
    function() evaluate.run(nil, PROBLEMS, {}) end,
    function() evaluate.run(nil, {}, {generate = g}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = function() return {} end, progress = QUIET}) end,
    function() evaluate.run(nil, PROBLEMS, {generate = g, template = function() return 1 end, progress = QUIET}) end,
    function() evaluate.default_template("qwen", dir) end,
    function() evaluate.settings({mode = "loose"}) end,
    function() evaluate.settings({greedy = false}) end,
    function() evaluate.settings({seed = -1}) end,
    function() evaluate.summarize({{samples = 3}}) end,
    function() evaluate.summarize({}, {ks = {0}}) end,
  }) do
    local ok, err = pcall(call)
    H.ok(not ok and tostring(err):find("^[^:]*tests/lua/test_evaluate%.lua:%d+: "), "the error names the caller's line: " .. tostring(err))
  end
end)

H.case("bench.load: a misspelt name lists the benchmarks; limit must be a count", function()
  local bench = require "confit.bench"
  local items, err = bench.load("aime2024")
  H.eq(items, nil)
  H.ok(tostring(err):find("nor a benchmark: aime24, amc23", 1, true), tostring(err))
  H.ok(not tostring(err):find("toy world", 1, true), tostring(err))
  -- (twenty-third session) eval.lua's --bench toy is no file: bench.load says where it comes from
  local _, errt = bench.load("toy")
  H.ok(tostring(errt):find('require("confit.toy").world(task):questions', 1, true), tostring(errt))
  local _, err2 = bench.load(TMP .. "/no-such.jsonl")
  H.ok(not tostring(err2):find("nor a benchmark", 1, true), "a path is not taken for a name: " .. tostring(err2))
  H.raises(function() bench.load("aime24", {limit = -1}) end, "opts.limit must be an integer >= 0")
  H.raises(function() bench.load("aime24", {limit = 1.5}) end, "opts.limit")
  H.eq(bench.question_field("gsm8k"), "question"); H.eq(bench.question_field("math500"), "problem")
  H.eq(bench.question_field("nope"), nil)
end)

H.case("the default template follows the model folder's chat format; stop ids are the tokenizer's", function()
  local dir = TMP .. "/llama-folder"
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local f = assert(io.open(dir .. "/tokenizer_config.json", "wb"))
  f:write('{"chat_template": "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}' ..
          '<|end_header_id|>{% endfor %}"}')
  f:close()
  H.eq(evaluate.settings({}).template, "qwen25-math-cot", "no model: ChatML")
  H.eq(evaluate.settings({model_dir = dir}).template, "llama3-math-cot")
  H.eq(evaluate.settings({model_dir = dir, mode = "strict"}).template, "strict-llama3")
  H.eq(evaluate.settings({model_dir = dir, template = "plain"}).template, "plain", "an explicit template wins")
  H.eq(evaluate.default_template("strict", TMP .. "/no-such-folder"), "strict", "unreadable folder: ChatML")
  local dir31 = TMP .. "/llama31-folder"
  assert(os.execute("mkdir -p '" .. dir31 .. "'"))
  f = assert(io.open(dir31 .. "/tokenizer_config.json", "wb"))
  f:write('{"chat_template": "{{ bos_token }}<|start_header_id|>system<|end_header_id|>\\n\\n' ..
          'Cutting Knowledge Date: December 2023\\n"}')
  f:close()
  H.eq(evaluate.settings({model_dir = dir31}).template, "llama31-math-cot", "Llama 3.1's format")
  H.eq(evaluate.settings({model_dir = dir31, mode = "strict"}).template, "strict-llama31")
  local seen, stop = {}, nil
  local function gen(prompts, go)
    stop = go.stop
    local out = {}
    for i, p in ipairs(prompts) do
      seen[#seen + 1] = p
      out[i] = {prompt = i, text = "\\boxed{3}", length = 3, logprob = -1, finish = "stop"}
    end
    return out
  end
  local model = {dir = dir, tokenizer = {eos_ids = {128009, 128001}}}
  evaluate.run(model, {PROBLEMS[1]}, {generate = gen, progress = QUIET})
  H.ok(seen[1]:find("^<|begin_of_text|><|start_header_id|>system<|end_header_id|>"), "prompt: " .. seen[1])
  H.eq(stop and #stop, 2, "stop ids")
  H.eq(stop[1], 128009); H.eq(stop[2], 128001)
  seen = {}
  evaluate.run(model, {PROBLEMS[1]}, {generate = gen, progress = QUIET, mode = "strict"})
  H.ok(seen[1]:find("Problem: ", 1, true) and seen[1]:find("^<|begin_of_text|>"), "strict prompt: " .. seen[1])
end)

H.case("toy grader and the summary table", function()
  local probs = {{id = 1, question = "1+2=", answer = 3}, {id = 2, question = "4+4=", answer = 8}}
  local script = {["1+2="] = {greedy = "1+2=3;\\boxed{3}"}, ["4+4="] = {greedy = "4+4=8;\\boxed{08}"}}
  local s = evaluate.run(nil, probs, {generate = fake(script).generate, grader = "toy",
                                      template = "plain", progress = QUIET, benchmark = "toy-mixed"})
  H.near(s.acc, 1.0, 0, "toy grader compares integers")
  local t = evaluate.format_table({s})
  -- the mode column says what the records and the summary say (it printed the grader "toy");
  -- the grader has a column of its own when it is not the mode's
  H.eq(s.mode, "qwen"); H.eq(s.grader, "toy")
  H.ok(t:find("^benchmark%s+mode%s+grader%s+n%s"), "header: " .. t)
  H.ok(t:find("toy%-mixed%s+qwen%s+toy%s+2%s"), "benchmark, mode and grader columns: " .. t)
  local q = evaluate.run(nil, probs, {generate = fake(script).generate, template = "plain", progress = QUIET})
  H.ok(not evaluate.format_table({q}):find("grader", 1, true), "no grader column when it is the mode's")
  H.ok(t:find("100.0 [", 1, true), "acc with interval in percent: " .. t)
end)

-- (h24 walkthrough) the header promised toy questions; evaluate.run refused them ("needs a
-- question string", then "has no id") and recipes/eval.lua converted them by hand
H.case("toy questions are problems: prompt as the question, id the place, answer as text", function()
  local qs = toy.world("mixed"):questions("heldout", 3, 1)
  local script = {}
  for _, q in ipairs(qs) do script[q.prompt] = {greedy = "\\boxed{" .. q.answer .. "}"} end
  local seen = {}
  local s, recs = evaluate.run(nil, qs, {generate = fake(script).generate, grader = "toy", template =
    function(question, p) seen[#seen + 1] = p; return question end, progress = QUIET})
  H.near(s.acc, 1.0, 0, "graded")
  for i, q in ipairs(qs) do
    H.eq(recs[i].id, i); H.eq(recs[i].question, q.prompt); H.eq(recs[i].answer, tostring(q.answer))
  end
  H.eq(seen[1].prompt, qs[1].prompt, "the template sees the toy question's fields")
  H.eq(qs[1].question, nil, "the caller's list is left alone")
  local m = assert(require("confit").load("examples/toy/model"))
  local s2 = evaluate.run(m, toy.world("mixed"):questions("heldout", 2, 1),
                          {progress = false, template = "plain", grader = "toy", max_new_tokens = 4})
  H.eq(s2.problems or s2.n, 2, "a real model")
  H.eq(evaluate.check_prompts(qs, {template = "plain", grader = "toy"}, m.tokenizer, 128), nil, "check_prompts too")
  -- (twenty-fifth session) check_prompts passed an empty list and a problem without an answer,
  -- which evaluate.run then refused after the model was loaded
  local function says(msg, want, what) H.ok(tostring(msg):find(want, 1, true), what .. ": " .. tostring(msg)) end
  says(evaluate.check_prompts({}, {template = "plain", grader = "toy"}, m.tokenizer, 128),
       "problems is empty", "check_prompts: the empty list")
  says(evaluate.check_prompts({{id = 1, question = "1+1="}}, {template = "plain"}, m.tokenizer),
       "problem 1 has no answer", "check_prompts: a missing answer, without ctx too")
  says(evaluate.check_prompts({{id = 1, question = "a", answer = "1"}, {id = 1, question = "b", answer = "2"}},
                              {template = "plain"}, m.tokenizer, 128),
       "problems 1 and 2 share the id 1", "check_prompts: a repeated id")
  H.raises(function() evaluate.run(m, {}, {template = "plain"}) end, "problems is empty")
  -- the messages name the field that is missing
  H.raises(function() evaluate.run(nil, {{id = 1, answer = "2"}}, {generate = fake(script).generate}) end,
           "problem 1 needs a question string", "question = nil")
  H.raises(function() evaluate.run(nil, {{id = 1, question = "1+1="}}, {generate = fake(script).generate}) end,
           "problem 1 has no answer")
  -- (twenty-fourth session) a toy prompt of token ids was "needs a question string ... question =
  -- nil"; an empty list gave a summary with n = 0 and no acc
  H.raises(function() evaluate.run(m, {{prompt = {51}, answer = "7"}}, {template = "plain"}) end,
           "problem 1: a toy question's prompt must be text", "template", "got a table of 1 values (token ids?")
  H.raises(function() evaluate.run(nil, {{prompt = 51, answer = "7"}}, {generate = fake(script).generate}) end,
           "prompt must be text", "got number")
  H.raises(function() evaluate.run(m, {}, {template = "plain"}) end, "evaluate: problems is empty: nothing to evaluate")
  H.raises(function() evaluate.run(nil, {{question = "1+1=", answer = "2"}}, {generate = fake(script).generate}) end,
           "problem 1 has no id (the field id)")
end)

H.case("benchmark loaders on the real data, graded against their own references", function()
  if not H.shared("benchmarks/aime24.jsonl") then
    H.skip("real benchmarks", "../shared/data/benchmarks absent"); return
  end
  local sizes = {aime24 = 30, amc23 = 40, math500 = 500, minerva_math = 272,
                 olympiadbench = 675, gsm8k = 1319}
  for _, name in ipairs(bench.names) do
    local items = assert(bench.load(name))
    H.eq(#items, sizes[name], name .. " rows")
    local by_prompt = {}
    for _, it in ipairs(items) do
      for _, t in ipairs({"qwen25-math-cot", "strict"}) do
        by_prompt[require("confit.chat").apply(t, it.question)] = it
      end
    end
    local echo = function(prompts, o)
      local out = {}
      for pi, p in ipairs(prompts) do
        local item = assert(by_prompt[p], "unexpected prompt")
        out[pi] = {prompt = pi, text = "Thus \\boxed{" .. item.answer .. "}", length = 5,
                   logprob = -1.0, finish = "stop"}
      end
      assert(o.n == 1)
      return out
    end
    local sub = {}
    for i = 1, math.min(#items, 120) do sub[i] = items[i] end
    for _, mode in ipairs({"qwen", "strict"}) do
      local s = evaluate.run(nil, sub, {generate = echo, mode = mode, benchmark = name,
                                        batch_size = 32, progress = QUIET})
      H.near(s.acc, 1.0, 0, name .. " " .. mode .. " boxed reference graded correct")
      H.near(s.box_rate, 1.0, 0)
    end
  end
  -- aime24's zero-padded answers: a model writing "25" for "025" is right in qwen mode
  local a = assert(bench.load("aime24"))
  local padded
  for _, it in ipairs(a) do
    H.ok(it.answer:match("^%d%d%d$"), "aime24 answer " .. it.answer)
    if it.answer:sub(1, 1) == "0" then padded = it end
  end
  H.ok(padded, "aime24 has a zero-padded answer")
  local unpadded = tostring(math.tointeger(tonumber(padded.answer)))
  local s = evaluate.run(nil, {padded}, {generate = function(p)
    return {{prompt = 1, text = "\\boxed{" .. unpadded .. "}", length = 3, logprob = -1, finish = "stop"}}
  end, progress = QUIET})
  H.near(s.acc, 1.0, 0, "unpadded " .. unpadded .. " = " .. padded.answer)
  local amc = assert(bench.load("amc23"))
  H.ok(not amc[1].answer:find("%.0$"), "amc23 float answers become integers: " .. amc[1].answer)
end)

-- A tiny random Qwen2 with the toy byte tokenizer: garbage completions, real plumbing. Every
-- build can make one, so a failure here is an error, never a skip.
local function tiny_model()
  local model = require "confit.model"
  local tokdir = TMP .. "/tok"
  os.execute("mkdir -p '" .. tokdir .. "'")
  assert(toy.write_tokenizer(tokdir))
  local cfg = {model_type = "qwen2", vocab_size = 264, hidden_size = 32, intermediate_size = 64,
               num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2,
               max_position_embeddings = 128, rms_norm_eps = 1e-6, rope_theta = 10000.0,
               tie_word_embeddings = true, eos_token_id = toy.EOS_ID, hidden_act = "silu"}
  return model.new(cfg, {tokenizer = tokdir .. "/tokenizer.json", seed = 7})
end

H.case("a model whose logits are not finite: a user error naming the evaluation, no traceback", function()
  local m = tiny_model()
  local p = m:parameters()["model.norm.weight"]
  require("confit").no_grad(function() p:fill_(0 / 0) end)
  local qs = toy.world("mixed"):questions("heldout", 2, 1)
  local probs = {}
  for i, q in ipairs(qs) do probs[i] = {id = i, question = q.prompt, answer = q.answer} end
  local ok, err = pcall(evaluate.run, m, probs, {n = 0, max_new_tokens = 4, template = "plain", progress = false})
  local cli = require "confit.cli"
  H.ok(not ok and cli.is_user_error(err), tostring(err))
  H.ok(cli.message(err):find("^evaluation: the model's logits are not finite"), cli.message(err))
  ok, err = pcall(require("confit.toy_eval").run, m, qs, {n = 2, max_new_tokens = 4})
  H.ok(not ok and cli.is_user_error(err) and cli.message(err):find("^evaluation: the model's logits"), tostring(err))
end)

H.case("end to end with a tiny random model: records, counts, resume, rescoring", function()
  local m = tiny_model()
  local qs = toy.world("mixed"):questions("heldout", 6, 1)
  local probs = {}
  for i, q in ipairs(qs) do probs[i] = {id = i, question = q.prompt, answer = q.answer} end
  -- count generate calls through a proxy of the C model
  local calls = 0
  local real = m.core
  m.core = setmetatable({generate = function(_, ...) calls = calls + 1; return real:generate(...) end},
                        {__index = function(_, k)
                          local f = real[k]
                          return function(_, ...) return f(real, ...) end
                        end})
  local dir = TMP .. "/tiny"
  local opts = {grader = "toy", template = "plain", n = 2, temperature = 0.7, max_new_tokens = 8,
                batch_size = 4, out_dir = dir, benchmark = "toy-mixed", progress = QUIET, seed = 5}
  local s, recs = evaluate.run(m, probs, opts)
  H.eq(calls, 4, "2 batches x (greedy + sampled)")
  H.eq(s.n, 6); H.eq(#recs, 6); H.eq(s.samples, 2)
  H.ok(s.acc >= 0 and s.acc <= 1, "acc in [0, 1]")
  H.ok(s.generated_tokens > 0 and s.generated_tokens <= 6 * 3 * 8, "token count " .. s.generated_tokens)
  for _, r in ipairs(recs) do
    H.eq(#r.samples, 2)
    for _, c in ipairs({r.greedy, r.samples[1], r.samples[2]}) do
      H.ok(c.length >= 1 and c.length <= 8, "length within max_new_tokens")
      H.ok(type(c.logprob) == "number" and c.logprob < 0, "finite negative logprob")
      H.eq(type(c.completion), "string")
    end
  end
  local lines = assert(jsonio.read_jsonl(dir .. "/eval_before.jsonl"))
  H.eq(#lines, 6)
  calls = 0
  local s2 = evaluate.run(m, probs, opts)
  H.eq(calls, 0, "resume: nothing generated"); H.eq(s2.resumed, 6)
  H.near(s2.mean_length, s.mean_length, 0)
  -- (kill -9 audit) a run killed in the middle of a batch (2 of its 4 records written): the
  -- resume generates that batch whole again and appends only what is missing, so every record
  -- equals the uninterrupted run's (a batch of the missing problems alone drew other samples)
  local text = H.read(dir .. "/eval_before.jsonl")
  local first_two = text:match("^([^\n]*\n[^\n]*\n)")
  H.write(dir .. "/eval_before.jsonl", first_two)
  calls = 0
  local s3, recs3 = evaluate.run(m, probs, opts)
  H.eq(calls, 4, "both batches generated again (the first whole)"); H.eq(s3.resumed, 2)
  for i = 1, 6 do
    H.eq(jsonio.encode(recs3[i].samples), jsonio.encode(recs[i].samples), "samples of problem " .. i)
    H.eq(jsonio.encode(recs3[i].greedy), jsonio.encode(recs[i].greedy), "greedy of problem " .. i)
  end
  H.eq(#assert(jsonio.read_jsonl(dir .. "/eval_before.jsonl")), 6, "six records, none twice")
  -- another batch size is another run: refused, not mixed
  local o4 = {}
  for k, v in pairs(opts) do o4[k] = v end
  o4.batch_size = 3
  H.raises(function() evaluate.run(m, probs, o4) end, "batch_size: 4 then, 3 now")
  -- a setting the earlier run's file lacks reads "not set" (it read "nil")
  local sp = dir .. "/eval_before.settings.json"
  local keep_settings = H.read(sp)
  local st = assert(jsonio.read_json(sp))
  st.batch_size = nil
  assert(jsonio.write_json_atomic(sp, st))
  H.raises(function() evaluate.run(m, probs, opts) end, "batch_size: not set then, 4 now")
  H.write(sp, keep_settings)
  -- same seed, same samples: greedy identical across batch sizes
  local o3 = {grader = "toy", template = "plain", max_new_tokens = 8, batch_size = 1,
              progress = QUIET}
  local _, r3 = evaluate.run(m, probs, o3)
  for i = 1, 6 do H.eq(r3[i].greedy.completion, recs[i].greedy.completion, "greedy independent of batching") end
  -- rescoring at temperature 1 reproduces generate's own temperature-1 log-probs
  local base = {grader = "toy", template = "plain", n = 2, temperature = 1.0, max_new_tokens = 8,
                greedy = false, progress = QUIET, seed = 9}
  -- two runs' records: the same samples, log-probs within tol
  local function same_samples(ra, rb, tol, what)
    for i = 1, 6 do
      for j = 1, 2 do
        H.eq(rb[i].samples[j].completion, ra[i].samples[j].completion, "same samples")
        H.near(rb[i].samples[j].logprob, ra[i].samples[j].logprob, tol, what)
      end
    end
  end
  local _, ra = evaluate.run(m, probs, base)
  base.rescore = true
  local _, rb = evaluate.run(m, probs, base)
  same_samples(ra, rb, 1e-3, "rescored logprob")
  -- at T = 0.5 the CPU generator scores its samples at T = 1 itself (score_temperature); a model
  -- elsewhere (here the same model said to be on "cuda") is rescored by a teacher-forced pass:
  -- the same samples, log-probs equal within float rounding, and not the T = 0.5 ones
  m.core = real
  base.temperature, base.rescore = 0.5, nil
  local scored, scored_lens = 0, {}
  local function count(_, ids, plens, o)
    scored = scored + 1
    for _, l in ipairs(o.lens) do scored_lens[#scored_lens + 1] = l end
    return m:logprobs(ids, plens, o)
  end
  local here = setmetatable({logprobs = count}, {__index = m})
  local elsewhere = setmetatable({device = function() return "cuda" end, logprobs = count}, {__index = m})
  local _, rs = evaluate.run(here, probs, base)
  H.eq(scored, 0, "no teacher-forced pass on the CPU")
  local _, rt = evaluate.run(elsewhere, probs, base)
  H.ok(scored > 0, "a teacher-forced pass elsewhere")
  -- (mutation testing) the rows go in order of length (prompt + completion), shortest first
  H.eq(#scored_lens, 12, "6 problems x 2 samples")
  for i = 2, #scored_lens do H.ok(scored_lens[i - 1] <= scored_lens[i], "rows in order of length") end
  H.ok(scored_lens[1] < scored_lens[12], "lengths differ: " .. table.concat(scored_lens, " "))
  base.rescore = false
  local _, rn = evaluate.run(m, probs, base)
  same_samples(rs, rt, 1e-4, "sampler's T = 1 score vs teacher forcing")
  local differs = false
  for i = 1, 6 do
    for j = 1, 2 do
      if math.abs(rs[i].samples[j].logprob - rn[i].samples[j].logprob) > 1e-3 then differs = true end
    end
  end
  H.ok(differs, "the records' logprob is at T = 1, not the sampling temperature's")
  -- a CPU model object of one's own whose generate gives no score for some samples (here each
  -- call's first): the samples are rescored, not recorded at the sampling temperature (such a
  -- sample once slipped through a length check of a table with a hole)
  scored = 0
  local dropping = setmetatable({logprobs = count, core = false, device = function() return "cpu" end,
                                 generate = function(_, prompts, go)
    local out = m:generate(prompts, go)
    out[1].score_logprob = nil
    return out
  end}, {__index = m})
  base.rescore = nil
  local _, rd = evaluate.run(dropping, probs, base)
  H.ok(scored > 0, "rescored")
  same_samples(rs, rd, 1e-4, "T = 1, not the sampling temperature's")
  -- (mutation testing) sampled at T = 1, the samples' own log-probs are the records': no extra pass
  scored = 0
  base.temperature = 1.0
  evaluate.run(elsewhere, probs, base)
  H.eq(scored, 0, "T = 1: nothing rescored")
  m.core = real
  -- prompts near the context (128 positions) get fewer new tokens; too long ones are refused
  local long = string.rep("1+", 61) .. "1="                 -- 124 tokens: 4 new ones fit
  local _, rc = evaluate.run(m, {{id = "long", question = long, answer = "62"}, probs[1]},
                             {grader = "toy", template = "plain", max_new_tokens = 10,
                              progress = QUIET, n = 2, temperature = 0.9})
  H.ok(rc[1].greedy.length <= 4 and rc[1].samples[2].length <= 4, "capped at the context")
  H.ok(rc[2].greedy.length <= 10, "short prompt keeps its budget")
  H.raises(function()
    evaluate.run(m, {{id = "huge", question = string.rep("1+", 64) .. "1=", answer = "1"}},
                 {grader = "toy", template = "plain", progress = QUIET})
  end, "problem huge", "130 tokens", "128 positions")
  -- (mutation testing) a prompt that fills the context exactly leaves no room for one new token
  H.raises(function()
    evaluate.run(m, {{id = "full", question = string.rep("1+", 63) .. "1=", answer = "1"}},
                 {grader = "toy", template = "plain", progress = QUIET})
  end, "problem full", "128 tokens", "128 positions")
  -- (seventeenth session) a template whose markers the tokenizer lacks (the toy's has
  -- <|endoftext|> alone) is refused before anything runs: <|im_start|> was spelled out in bytes
  local ok, err = pcall(evaluate.run, m, {{id = "q", question = "1+1=", answer = "2"}},
                        {grader = "toy", template = "chatml", progress = QUIET})
  H.ok(not ok and tostring(err):find('template "chatml" writes <|im_start|>', 1, true)
       and tostring(err):find("or plain", 1, true), "refused: " .. tostring(err))
  -- (audit) a prompt past the context: plain gives no hint (context_hint names the template for others)
  ok, err = pcall(evaluate.run, m, {{id = "huge", question = string.rep("1+", 64) .. "1=", answer = "1"}},
                  {grader = "toy", template = "plain", progress = QUIET})
  H.ok(not ok and not tostring(err):find("--template", 1, true), "no hint for plain: " .. tostring(err))
  H.eq(evaluate.context_hint("plain"), nil); H.eq(evaluate.context_hint("custom"), nil)
  H.ok(evaluate.context_hint("qwen25-math-cot"):find("--template plain", 1, true), "hint for a named template")
end)

-- recipes/eval.lua as a user runs it.
local function run_cmd(args)
  local out = TMP .. "/cmd.out"
  local cmd = string.format("'%s' recipes/eval.lua %s > '%s' 2>&1", EXE, args, out)
  local ok, how, code = os.execute(cmd)
  local fh = io.open(out, "rb"); local text = fh and fh:read("a") or ""; if fh then fh:close() end
  return (ok and 0 or code), text
end

H.case("recipes/eval.lua: the default --out names a model folder called model after its parent", function()
  -- (twenty-third session, a review's finding) the toy model and every rlsc --save-model folder
  -- all defaulted to runs/eval-model-qwen, so the second model's eval met the first's records
  local dir = TMP .. "/default-out"
  os.execute(("mkdir -p '%s'"):format(dir))
  local abs = io.popen("pwd"):read("l")
  local exe = EXE:sub(1, 1) == "/" and EXE or (abs .. "/" .. EXE)
  local outf = TMP .. "/default-out.txt"
  -- (twenty-eighth session) an empty folder there (made ahead for logs) is no other run's data
  os.execute(("mkdir -p '%s/runs/eval-toy-model-qwen/logs'"):format(dir))
  local ok = os.execute(("cd '%s' && '%s' '%s/recipes/eval.lua' --model '%s/examples/toy/model' --bench toy --limit 1 "
                         .. "--n 1 --progress off > '%s' 2>&1"):format(dir, exe, abs, abs, outf))
  H.ok(ok, H.read(outf))
  H.ok(io.open(dir .. "/runs/eval-toy-model-qwen/summary.json", "rb"), "runs/eval-toy-model-qwen: " .. H.read(outf))
  -- the toy world's default --max-new-tokens (64, not the math benchmarks' 3072)
  local cfg = jsonio.read_json(dir .. "/runs/eval-toy-model-qwen/toy-mixed/config.json")
  H.eq(type(cfg) == "table" and cfg.max_new_tokens, 64, "the toy's default --max-new-tokens")
  H.ok(H.read(outf):find("max new tokens 64\n", 1, true), H.read(outf))
end)

H.case("recipes/eval.lua refuses an ablate grid folder or a training run as --out, writing nothing", function()
  -- (seventeenth session) eval wrote its summary.json into an ablate grid: the report then showed
  -- the eval run alone, and ablate refused to continue its own folder
  for _, f in ipairs({{"grid.json", "ablate's grid"}, {"steps.jsonl", "a training run's steps"}}) do
    local out = TMP .. "/foreign-" .. f[1]
    os.execute(("mkdir -p '%s'"):format(out))
    H.write(out .. "/" .. f[1], "{}\n")
    local code, text = run_cmd("--model examples/toy/model --bench toy --limit 2 --out " .. out)
    H.eq(code, 1, text)
    H.ok(text:find(f[1] .. ", " .. f[2], 1, true) and text:find("another run's folder", 1, true), text)
    H.eq(io.open(out .. "/summary.json", "rb"), nil, "no summary.json written")
  end
end)

-- (twenty-first session, a review's findings) duplicate ids in a --bench file were refused after
-- the model had loaded and config.json was written; --data's fallback to positions was decided
-- after --limit, so a larger limit renamed the finished problems and did them again; a
-- --no-resume run stopped on the way left the old summaries beside its new records
H.case("recipes/eval.lua: ids checked on the whole file before anything is written; a restart drops the old summaries", function()
  local bdir = TMP .. "/dupbench"
  os.execute(("mkdir -p '%s'"):format(bdir))
  H.write(bdir .. "/math500.jsonl", '{"problem": "1+1=", "answer": "2", "unique_id": "a"}\n'
          .. '{"problem": "2+2=", "answer": "4", "unique_id": "b"}\n{"problem": "3+3=", "answer": "6", "unique_id": "a"}\n')
  local out = TMP .. "/dupbench-out"
  local code, text = run_cmd("--model examples/toy/model --bench math500 --data-dir " .. bdir
                             .. " --template plain --max-new-tokens 4 --out " .. out)
  H.eq(code, 1, text)
  H.ok(text:find("math500.jsonl:1 and " .. bdir .. "/math500.jsonl:3 share the id a", 1, true), text)
  H.eq(io.open(out .. "/math500/config.json", "rb"), nil, "nothing written")
  local data = TMP .. "/dupdata.jsonl"
  H.write(data, '{"question": "1+1=", "answer": "2", "id": "q1"}\n{"question": "2+2=", "answer": "4", "id": "q2"}\n'
          .. '{"question": "3+3=", "answer": "6", "id": "q1"}\n')
  local dout = TMP .. "/dupdata-out"
  code, text = run_cmd("--model examples/toy/model --data " .. data .. " --template plain --max-new-tokens 4 --limit 2 --out " .. dout)
  H.eq(code, 0, text)
  H.ok(text:find("repeat; using line positions as ids", 1, true), "positions under --limit 2 too: " .. text)
  code, text = run_cmd("--model examples/toy/model --data " .. data .. " --template plain --max-new-tokens 4 --limit 3 --out " .. dout)
  H.eq(code, 0, text)
  H.eq(#assert(jsonio.read_jsonl(dout .. "/dupdata/eval_before.jsonl")), 3, "3 records for 3 problems, none twice")
  -- a restart (--no-resume) removes the old summaries before it writes any record
  H.ok(io.open(dout .. "/dupdata/summary.json", "rb") and io.open(dout .. "/summary.json", "rb"), "summaries there")
  -- (in-process: evaluate.run stands in for a run stopped on the way, after `first` problems
  -- when given, and says what it found)
  local evaluate = require "confit.evaluate"
  local real_run, found = evaluate.run, nil
  local rp = dout .. "/dupdata/eval_before.jsonl"
  local kept_rp = dout .. "/superseded/dupdata/eval_before.jsonl"
  local function restart_stopped(first, plain)   -- plain: a resume, not a restart
    found = nil
    evaluate.run = function(m, problems, opts)
      found = {bench = io.open(dout .. "/dupdata/summary.json", "rb") ~= nil, top = io.open(dout .. "/summary.json", "rb") ~= nil}
      if first then
        local o = {}
        for k, v in pairs(opts) do o[k] = v end
        o.summary_file = false
        real_run(m, table.move(problems, 1, first, 1, {}), o)
      end
      error("evaluate: stopped on the way", 0)
    end
    local argv = {"--model", "examples/toy/model", "--data", data, "--template", "plain",
                  "--max-new-tokens", "4", "--limit", "3", "--n", "2", "--out", dout}
    if not plain then argv[#argv + 1] = "--no-resume" end
    local ok = pcall(dofile("recipes/eval.lua").main, argv)
    evaluate.run = real_run
    H.ok(not ok and found, "the stand-in ran")
  end
  local finished = H.read(rp)
  restart_stopped(1)
  H.eq(found and found.bench, false, "the benchmark's old summary.json gone before its records are redone")
  H.eq(found and found.top, false, "OUT/summary.json gone too")
  -- (twenty-third session) the finished results wait in OUT/superseded/<name> until the restart
  -- finishes: a restart stopped on the way lost them before
  H.eq(H.read(kept_rp), finished, "the finished records kept whole")
  H.ok(io.open(dout .. "/superseded/dupdata/summary.json", "rb") and io.open(dout .. "/superseded/dupdata/config.json", "rb"),
       "with their summary and config")
  H.eq(#assert(jsonio.read_jsonl(rp)), 1, "the stopped restart's own record")
  -- a second restart stopped on the way keeps the finished results, not the first one's record
  restart_stopped(nil)
  H.eq(H.read(kept_rp), finished, "still the finished records")
  H.eq(io.open(rp, "rb"), nil, "the unfinished restart's records dropped")
  -- a resume of the stopped restart that finishes: the superseded results go
  code, text = run_cmd("--model examples/toy/model --data " .. data .. " --template plain --max-new-tokens 4 --limit 3 --n 2 --out " .. dout)
  H.eq(code, 0, text)
  H.eq(#assert(jsonio.read_jsonl(rp)), 3, "all three records")
  H.eq(io.open(dout .. "/superseded", "rb"), nil, "superseded/ gone with what it held")
  -- a finished run beside an older superseded folder (its removal was cut short) takes its place
  os.execute(("mkdir -p '%s/superseded/dupdata' && echo old > '%s/superseded/dupdata/eval_before.jsonl'"):format(dout, dout))
  finished = H.read(rp)
  restart_stopped(nil)
  H.eq(H.read(kept_rp), finished, "the newer finished records kept")
  code, text = run_cmd("--model examples/toy/model --data " .. data .. " --template plain --max-new-tokens 4 --limit 3 --out " .. dout)
  H.eq(code, 0, text)
  H.eq(io.open(dout .. "/superseded", "rb"), nil, "superseded/ gone once a run finished")
  -- (a review's kill harness) a resume stopped on the way over finished records removed their
  -- summary.json, and a restart beside an older superseded folder then took the finished records
  -- for a stopped restart's: they were dropped and the older ones kept
  code, text = run_cmd("--model examples/toy/model --data " .. data .. " --template plain --max-new-tokens 4 --limit 3 --n 2 --no-resume --out " .. dout)
  H.eq(code, 0, text)
  os.execute(("mkdir -p '%s/superseded/dupdata' && echo old > '%s/superseded/dupdata/eval_before.jsonl'"):format(dout, dout))
  finished = H.read(rp)
  restart_stopped(nil, true)
  H.eq(found and found.bench, true, "a resume keeps the summary of the records it extends")
  restart_stopped(nil)
  H.eq(H.read(kept_rp), finished, "the finished records kept, not the older ones")
  code, text = run_cmd("--model examples/toy/model --data " .. data .. " --template plain --max-new-tokens 4 --limit 3 --n 2 --out " .. dout)
  H.eq(code, 0, text)
  H.eq(H.read(rp), finished, "the same records again")
  H.eq(io.open(dout .. "/superseded", "rb"), nil, "superseded/ gone")
  -- an unreadable records line names the way out, as a damaged record's does
  local lines = {}
  for l in H.read(rp):gmatch("[^\n]+") do lines[#lines + 1] = l end
  lines[2] = lines[2]:sub(1, 20)
  H.write(rp, table.concat(lines, "\n") .. "\n")
  code, text = run_cmd("--model examples/toy/model --data " .. data .. " --template plain --max-new-tokens 4 --limit 3 --n 2 --out " .. dout)
  H.eq(code, 1, text)
  H.ok(text:find("eval_before.jsonl:2:", 1, true) and text:find("remove that line to evaluate its problem again", 1, true), text)
end)

-- (mutation testing) the settings eval.lua keeps in config.json and summary.json, and its
-- settings line, by default and with sampling, greedy off and a restart
H.case("recipes/eval.lua: config.json, summary.json and the settings line say what ran", function()
  local out = TMP .. "/eval-config"
  local base = "--model examples/toy/model --bench toy --limit 2 --max-new-tokens 2 --progress off --out '" .. out .. "'"
  local code, text = run_cmd(base .. " --no-resume")
  H.eq(code, 0, text)
  local cfg = assert(jsonio.read_json(out .. "/toy-mixed/config.json"))
  H.eq(cfg.batch_size, 8, "batch_size"); H.eq(cfg.device, "cpu"); H.eq(cfg.dtype, "f32", "the CPU computes in f32")
  H.eq(cfg.logprob_temperature, 1); H.eq(cfg.greedy, true); H.eq(cfg.n, 0); H.eq(cfg.seed, 0)
  H.eq(cfg.temperature, 0.6); H.eq(cfg.top_p, 0.95); H.eq(cfg.top_k, 0); H.eq(cfg.max_new_tokens, 2)
  H.eq(cfg.grader, "toy"); H.eq(cfg.template, "plain"); H.eq(cfg.toy_seed, 1); H.eq(cfg.mode, "qwen")
  local top = assert(jsonio.read_json(out .. "/summary.json"))
  H.eq(top.config.greedy, true); H.eq(top.config.n, 0); H.eq(top.config.device, "cpu")
  H.eq(top.benchmarks["toy-mixed"].before.n, 2)
  H.ok(text:find("eval: greedy true, samples 0, max new tokens 2\n", 1, true), text)
  H.ok(not text:find("wait in", 1, true), "nothing set aside, nothing said: " .. text)
  code, text = run_cmd(base .. " --n 2 --no-greedy --no-resume --temperature 0.7 --batch-size 3")
  H.eq(code, 0, text)
  H.ok(text:find("eval: greedy false, samples 2 at T=0.7 top_p=0.95, max new tokens 2\n", 1, true), text)
  H.ok(text:find("eval: toy-mixed: --no-resume: the earlier results wait in " .. out .. "/superseded", 1, true), text)
  top = assert(jsonio.read_json(out .. "/summary.json"))
  H.eq(top.config.greedy, false); H.eq(top.config.n, 2)
  cfg = assert(jsonio.read_json(out .. "/toy-mixed/config.json"))
  H.eq(cfg.greedy, false); H.eq(cfg.n, 2); H.eq(cfg.temperature, 0.7); H.eq(cfg.batch_size, 3)
end)

H.case("recipes/eval.lua: user errors are one line with exit status 1", function()
  local code, text = run_cmd("--model " .. TMP .. "/no-such-model --bench aime24")
  H.eq(code, 1, text); H.ok(text:find("no%-such%-model"), text)
  H.ok(not text:find("traceback"), "no traceback: " .. text)
  H.eq(select(2, text:gsub("\n", "")), 1, "one line: " .. text)
  local m = tiny_model()
  local mdir = TMP .. "/tinymodel"
  m:save(mdir)
  local c2, t2 = run_cmd("--model " .. mdir .. " --bench nosuchbench")
  H.eq(c2, 1, t2); H.ok(t2:find("unknown benchmark", 1, true) and t2:find("nosuchbench", 1, true), t2)
  local c3, t3 = run_cmd("--model " .. mdir .. " --bench toy --frobnicate 3")
  H.eq(c3, 1, t3); H.ok(t3:find("--frobnicate", 1, true), t3)
  local c4, t4 = run_cmd("--model " .. mdir .. " --bench toy --n x")
  H.eq(c4, 1, t4); H.ok(t4:find("--n", 1, true), t4)
  local c5, t5 = run_cmd("--model " .. mdir .. " --bench toy --mode loose")
  H.eq(c5, 1, t5); H.ok(t5:find("qwen", 1, true), t5)
  -- a real run on the toy world and on a generic JSONL file
  local out = TMP .. "/recipe-run"
  local c6, t6 = run_cmd("--model " .. mdir .. " --bench toy --limit 5 --max-new-tokens 6 --n 2 "
                         .. "--temperature 0.8 --out " .. out)
  H.eq(c6, 0, t6)
  H.ok(t6:find("toy-mixed", 1, true) and t6:find("mode", 1, true), t6)
  local recs = assert(jsonio.read_jsonl(out .. "/toy-mixed/eval_before.jsonl"))
  H.eq(#recs, 5)
  local sj = assert(jsonio.read_json(out .. "/summary.json"))
  H.eq(sj.benchmarks["toy-mixed"].before.n, 5)
  local cfg = assert(jsonio.read_json(out .. "/toy-mixed/config.json"))
  H.eq(cfg.recipe, "eval"); H.eq(cfg.n, 2)
  -- the same OUT with other settings: refused before config.json is rewritten
  local c8, t8 = run_cmd("--model " .. mdir .. " --bench toy --limit 5 --max-new-tokens 6 --n 4 "
                         .. "--temperature 0.8 --out " .. out)
  H.eq(c8, 1, t8); H.ok(t8:find("n: 2 then, 4 now", 1, true) and t8:find("--no-resume", 1, true), t8)
  H.eq(assert(jsonio.read_json(out .. "/toy-mixed/config.json")).n, 2, "config.json untouched")
  local data = TMP .. "/custom.jsonl"
  local fh = assert(io.open(data, "wb"))
  fh:write('{"q": "1+1=", "a": 2}\n{"q": "2+5=", "a": 7}\n')
  fh:close()
  local c7, t7 = run_cmd("--model " .. mdir .. " --data " .. data .. " --question-field q "
                         .. "--answer-field a --template plain --max-new-tokens 4 --out " .. out)
  H.eq(c7, 0, t7)
  recs = assert(jsonio.read_jsonl(out .. "/custom/eval_before.jsonl"))
  H.eq(#recs, 2); H.eq(recs[2].answer, "7"); H.eq(recs[1].question, "1+1=")
  -- a prompt with no room in the context: refused with the template's hint before the model is
  -- loaded and anything is written (the second benchmark's folder included)
  local longdata = TMP .. "/long.jsonl"
  fh = assert(io.open(longdata, "wb"))
  fh:write('{"q": "1+1=", "a": 2}\n{"q": "' .. string.rep("1+", 64) .. '1=", "a": 65}\n')
  fh:close()
  local out2 = TMP .. "/never-made"
  local c9, t9 = run_cmd("--model " .. mdir .. " --data " .. longdata .. " --question-field q "
                         .. "--answer-field a --template plain --out " .. out2)
  H.eq(c9, 1, t9)
  H.ok(t9:find("long: problem 2: the prompt has 130 tokens", 1, true), t9)
  H.ok(not t9:find("--template", 1, true), "no hint for plain: " .. t9)
  H.eq(select(2, t9:gsub("\n", "")), 1, "one line: " .. t9)
  H.ok(not io.open(out2, "rb"), "--out not created")
  -- chatml on the toy's tokenizer (no <|im_start|>): refused before the model loads, nothing made
  -- (seventeenth session: the check ran inside evaluate.run, after config.json was written)
  local c10, t10 = run_cmd("--model " .. mdir .. " --data " .. longdata .. " --question-field q "
                           .. "--answer-field a --template chatml --out " .. out2)
  H.eq(c10, 1, t10)
  H.ok(t10:find('template "chatml" writes <|im_start|>', 1, true) and t10:find("or plain", 1, true), t10)
  H.ok(not io.open(out2, "rb"), "--out not created")
  H.eq(evaluate.check_prompts({{id = "a", question = "1+1=", answer = "2"}}, {template = "plain", grader = "toy"},
                              m.tokenizer, 128), nil, "a short prompt passes")
  H.eq(evaluate.check_prompts({{id = "a", question = string.rep("1+", 64), answer = "2"}}, {template = "plain", grader = "toy"},
                              m.tokenizer, nil), nil, "no context: no check")
end)

rm_rf(TMP)
-- (nineteenth session, mutation testing) the default rescoring was only checked at T = 1, where
-- keeping the sampling temperature's log-prob gives the same number
H.case("sampled records keep the log-prob at temperature 1 by default (RUNDIR.md), sampling at 0.7", function()
  local m = require("confit.model").load("examples/toy/model")
  local probs = {}
  for i, q in ipairs(toy.world("mixed"):questions("heldout", 2, 1)) do
    probs[i] = {id = i, question = q.prompt, answer = q.answer}
  end
  local base = {grader = "toy", template = "plain", n = 2, temperature = 0.7, max_new_tokens = 8, greedy = false,
                progress = QUIET, seed = 9}
  local _, ra = evaluate.run(m, probs, base)
  base.rescore = true
  local _, rb = evaluate.run(m, probs, base)
  for i = 1, #probs do
    for j = 1, 2 do
      H.near(ra[i].samples[j].logprob, rb[i].samples[j].logprob, 1e-9, ("problem %d sample %d"):format(i, j))
    end
  end
  m:free()
end)

-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, V02, V03, V04, V05, V06)
do
local eval = dofile("recipes/eval.lua")

H.case("eval.parse_args: integers are >= 0 and --n, --top-k at most their limit", function()
  H.raises(function() eval.parse_args({"--n", "-1"}) end, "--n expects an integer >= 0")
  H.raises(function() eval.parse_args({"--limit", "-3"}) end, "--limit expects an integer >= 0")
  H.eq(eval.parse_args({"--n", tostring(1 << 20)}).n, 1 << 20, "the limit itself")
  H.raises(function() eval.parse_args({"--n", tostring((1 << 20) + 1)}) end, "--n must be <= 1048576")
  H.raises(function() eval.parse_args({"--top-k", tostring((1 << 30) + 1)}) end, "--top-k must be <= 1073741824")
end)

H.case("eval.problem_sets: the toy split is bounded at 10000 questions, exactly", function()
  H.raises(function() eval.problem_sets({bench = "toy", ["toy-questions"] = 10001}) end, "at most 10000")
  H.raises(function() eval.problem_sets({bench = "toy", limit = 10001}) end, "--limit", "at most 10000")
end)

-- (twenty-eighth session, mutation testing of the recipes' command lines)
H.case("eval.problem_sets: --bench toy is 500 held-out questions drawn with seed 1; --limit cuts --data; a set named twice", function()
  local sets = eval.problem_sets({bench = "toy"})
  H.eq(#sets, 1); H.eq(sets[1].name, "toy-mixed")
  local want = toy.world("mixed"):questions("heldout", 500, 1)
  H.eq(#sets[1].problems, 500, "the documented default of --toy-questions")
  H.eq(sets[1].problems[1].question, want[1].prompt, "the first question of seed 1")
  H.eq(sets[1].problems[500].question, want[500].prompt, "the last question of seed 1")
  H.ok(sets[1].source:find("seed 1", 1, true), sets[1].source)
  local dir = H.tmpdir()
  local data = dir .. "/three.jsonl"
  H.write(data, '{"question": "a?", "answer": "1"}\n{"question": "b?", "answer": "2"}\n{"question": "c?", "answer": "3"}\n')
  local cut = eval.problem_sets({data = data, limit = 2})
  H.eq(#cut[1].problems, 2, "--limit 2: the first two problems")
  H.eq(cut[1].problems[2].question, "b?")
  H.raises(function() eval.problem_sets({bench = "toy,toy-mixed"}) end, "benchmark 'toy-mixed' is given twice")
end)

H.case("eval.problem_sets: repeated ids in --data fall back to line positions; --name .. is refused", function()
  local dir = H.tmpdir()
  local data = dir .. "/set.jsonl"
  H.write(data, '{"id": 1, "question": "a?", "answer": "1"}\n{"id": 1, "question": "b?", "answer": "2"}\n')
  local sets = eval.problem_sets({data = data})
  H.eq(sets[1].problems[1].id, 1); H.eq(sets[1].problems[2].id, 2, "the second problem's id is its line")
  H.raises(function() eval.problem_sets({data = data, name = ".."}) end, "'..'", "names the benchmark's folder")
  H.raises(function() eval.problem_sets({data = data, name = "."}) end, "names the benchmark's folder")
end)
end

-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, EV2, EV5)
do
local evaluate = require "confit.evaluate"
local jsonio = require "confit.jsonio"

-- fake() is the file's own; PROBLEMS and SCRIPT below are this block's
local PROBLEMS = {{id = 1, question = "Q-one: 2+3?", answer = "5"}, {id = 2, question = "Q-two: 7", answer = "7"},
                  {id = 3, question = "Q-three: 4", answer = "4"}}
local SCRIPT = {["Q-one"] = {greedy = "\\boxed{5}", samples = {"\\boxed{5}", "\\boxed{4}"}},
                ["Q-two"] = {greedy = "\\boxed{7}", samples = {"\\boxed{7}", "\\boxed{7}"}},
                ["Q-three"] = {greedy = "\\boxed{1}", samples = {"\\boxed{4}", "\\boxed{1}"}}}

H.case("resume: a last record without its newline is completed before new records are appended", function()
  local dir = H.tmpdir() .. "/nl"
  local opts = function(f) return {generate = f.generate, n = 2, out_dir = dir, batch_size = 1, progress = QUIET,
                                   benchmark = "unit"} end
  evaluate.run(nil, PROBLEMS, opts(fake(SCRIPT)))
  local path = dir .. "/eval_before.jsonl"
  local lines = {}
  for l in io.lines(path) do lines[#lines + 1] = l end
  H.eq(#lines, 3)
  -- drop the last record, and the newline after the second (a copy or an editor that strips it)
  H.write(path, lines[1] .. "\n" .. lines[2])
  local f = fake(SCRIPT)
  local s = evaluate.run(nil, PROBLEMS, opts(f))
  H.eq(f.calls, 2, "only problem 3 is generated")
  H.eq(s.resumed, 2)
  local recs, err = jsonio.read_jsonl(path)
  H.ok(recs, "the file stays JSON lines: " .. tostring(err))
  H.eq(#recs, 3)
end)

H.case("resume: a setting the earlier records name and this run lacks (the model) is a difference", function()
  local dir = H.tmpdir() .. "/model-gone"
  local opts = function(f) return {generate = f.generate, n = 2, out_dir = dir, batch_size = 1, progress = QUIET,
                                   benchmark = "unit"} end
  evaluate.run(nil, PROBLEMS, opts(fake(SCRIPT)))
  local sp = dir .. "/eval_before.settings.json"
  local st = assert(jsonio.read_json(sp))
  H.eq(st.model, nil, "no model folder named by a generate function")
  st.model = "/models/other"          -- as eval.lua with --model writes it
  assert(jsonio.write_json_atomic(sp, st))
  local why = evaluate.check_resume(opts(fake(SCRIPT)))
  H.ok(why and why:find("model: /models/other then, not set now", 1, true), tostring(why))
end)
end

-- (twenty-eighth session) temperature was checked as "a number in [0, inf]": inf passed, and
-- generate refused it after the checks ("finite number >= 0"); now refused first, in its words
H.case("a temperature that is not a finite number >= 0 is refused before any generation", function()
  local function gen() error("generate ran") end
  for _, T in ipairs({math.huge, -math.huge, 0 / 0, -1}) do
    local err = H.raises(function() evaluate.run(nil, PROBLEMS, {generate = gen, n = 2, temperature = T}) end,
                         "evaluate: temperature must be a finite number >= 0, got " .. require("confit.cli").show(T))
    H.ok(err:find("^[^:]*tests/lua/test_evaluate%.lua:%d+: "), "at the caller: " .. err)
    H.raises(function() evaluate.settings({temperature = T}) end, "temperature must be a finite number >= 0")
  end
  H.eq(evaluate.settings({temperature = 1e300}).temperature, 1e300, "a large finite one passes")
  -- toy_eval and train refused it already (temperature_scale; temperature, loss_temperature)
  H.raises(function() require("confit.toy_eval").run({generate = gen}, {{prompt = "1+1=", answer = 2}},
                                                     {temperature_scale = math.huge}) end,
           "temperature_scale must be a finite number > 0, got inf")
end)

H.finish()
