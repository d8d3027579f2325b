-- Tests of confit.metrics: pass@k and maj@n against hand-computed values, intervals, summaries.
local H = dofile("tests/lua/harness.lua")
local metrics = require "confit.metrics"

local function choose(n, k)
  local r = 1
  for i = 1, k do r = r * (n - k + i) / i end
  return r
end

H.case("pass@k hand-computed values", function()
  -- n=2, c=1, k=1: 1 - C(1,1)/C(2,1) = 1/2
  H.near(metrics.pass_at_k(2, 1, 1), 0.5, 1e-15)
  -- n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
  H.near(metrics.pass_at_k(5, 2, 2), 0.7, 1e-15)
  -- n=10, c=3, k=1: c/n
  H.near(metrics.pass_at_k(10, 3, 1), 0.3, 1e-15)
  -- n=4, c=1, k=3: 1 - C(3,3)/C(4,3) = 3/4
  H.near(metrics.pass_at_k(4, 1, 3), 0.75, 1e-15)
  -- n=16, c=4, k=8: 1 - C(12,8)/C(16,8) = 1 - 495/12870
  H.near(metrics.pass_at_k(16, 4, 8), 1 - 495 / 12870, 1e-14)
end)

H.case("pass@k edge cases: c=0, n=c, k=n, n-c<k", function()
  H.eq(metrics.pass_at_k(8, 0, 1), 0.0)
  H.eq(metrics.pass_at_k(8, 0, 8), 0.0)
  H.eq(metrics.pass_at_k(8, 8, 1), 1.0)
  H.eq(metrics.pass_at_k(8, 8, 8), 1.0)
  H.eq(metrics.pass_at_k(8, 1, 8), 1.0)           -- k=n: any correct sample is drawn
  H.eq(metrics.pass_at_k(8, 3, 6), 1.0)           -- n-c=5 < k=6
  H.near(metrics.pass_at_k(1, 1, 1), 1.0, 0)
  H.near(metrics.pass_at_k(1, 0, 1), 0.0, 0)
end)

H.case("pass@k product form matches binomials and is stable for large n", function()
  for _, t in ipairs({{20, 5, 4}, {30, 7, 10}, {50, 1, 25}, {64, 10, 16}}) do
    local n, c, k = t[1], t[2], t[3]
    H.near(metrics.pass_at_k(n, c, k), 1 - choose(n - c, k) / choose(n, k), 1e-12,
           string.format("n=%d c=%d k=%d", n, c, k))
  end
  local v = metrics.pass_at_k(10000, 3, 5000)     -- C(10000, 5000) overflows doubles
  H.ok(v > 0.87 and v < 0.88, "pass@5000 of 3/10000: " .. v)    -- 1 - (1/2)^3 approx
  H.near(metrics.pass_at_k(1000, 500, 1), 0.5, 1e-12)
  -- both product forms (c <= k, c > k) against the binomials, every c and k of n = 16
  for c = 0, 16 do
    for k = 1, 16 do
      local want = 16 - c < k and 1.0 or 1 - choose(16 - c, k) / choose(16, k)
      H.near(metrics.pass_at_k(16, c, k), want, 1e-13, string.format("n=16 c=%d k=%d", c, k))
    end
  end
  -- huge counts finish (a loop over c terms of 2^53 - 1 never ended)
  H.near(metrics.pass_at_k(1e15, 1e15 - 1, 3), 1.0, 1e-12, "1e15 samples")
  H.near(metrics.pass_at_k(2 ^ 53 - 1, 3, 2), 0, 1e-12, "3 of 2^53 - 1")
  -- (mutation testing) fewer wrong samples than k: 1 at once, not after a product of 2^51 factors
  H.eq(metrics.pass_at_k(2 ^ 52, 2 ^ 51, 2 ^ 52), 1.0, "2^51 of 2^52, k = 2^52")
end)

H.case("pass@k argument errors", function()
  H.raises(function() metrics.pass_at_k(4, 5, 1) end, "c=5", "n=4")
  H.raises(function() metrics.pass_at_k(4, 1, 0) end, "k=0")
  H.raises(function() metrics.pass_at_k(4, 1, 5) end, "k=5")
  H.raises(function() metrics.pass_at_k(4, 1.5, 1) end, "c must be")
  H.raises(function() metrics.pass_at_k(math.huge, 1, 1) end, "n must be", "inf")
  H.raises(function() metrics.pass_at_k(2 ^ 60, 1, 1) end, "n must be")
  H.raises(function() metrics.pass_at_k(0 / 0, 1, 1) end, "n must be")
end)

H.case("summarize and majority refuse values they would miscount", function()
  H.raises(function() metrics.summarize({{correct = 1.5}}) end, "problem 1", "share in [0, 1]", "1.5")
  H.raises(function() metrics.summarize({{correct = true}, {correct = -1}}) end, "problem 2", "-1")
  H.raises(function() metrics.summarize({{maj = "yes"}}) end, "'maj' must be a boolean, 0 or 1")
  H.raises(function() metrics.summarize({}, {k = 2}) end, "opts.k must be a list")
  H.raises(function() metrics.majority({"a"}, {key = function() return nil end}) end, "key of answer 1")
  -- (public API audit) arguments of the wrong kind are named, not "attempt to index"
  H.raises(function() metrics.summarize(-1) end, "problems must be a list", "number")
  H.raises(function() metrics.summarize({{correct = true}, 3}) end, "problem 2 must be a table", "number")
  H.raises(function() metrics.summarize({}, true) end, "opts must be a table", "boolean")
  H.raises(function() metrics.majority(nil) end, "answers must be a list", "nil")
  H.raises(function() metrics.majority({"a"}, print) end, "opts must be a table", "function")
  H.raises(function() metrics.majority({"a"}, {key = 1}) end, "opts.key must be a function", "number")
  H.near(metrics.summarize({{correct = 0.25}, {correct = true}}).acc, 0.625, 1e-15, "shares and booleans still mix")
end)

H.case("majority: plain, ties to first seen, nil ignored", function()
  local a, n = metrics.majority({"1", "2", "2", "3"})
  H.eq(a, "2"); H.eq(n, 2)
  a, n = metrics.majority({"3", "1", "1", "3"})
  H.eq(a, "3", "tie goes to first seen"); H.eq(n, 2)
  a, n = metrics.majority({"5", "4"})
  H.eq(a, "5"); H.eq(n, 1)
  a, n = metrics.majority({n = 5, nil, "7", nil, nil, "8"})
  H.eq(a, "7"); H.eq(n, 1)
  a, n = metrics.majority({n = 3})
  H.eq(a, nil); H.eq(n, 0)
  a, n = metrics.majority({})
  H.eq(a, nil); H.eq(n, 0)
end)

H.case("majority with a key merges equivalent spellings", function()
  local grade = require "confit.grade"
  local answers = {"\\frac{1}{2}", "3", "1/2", "3", "\\dfrac12"}
  local a, n = metrics.majority(answers)
  H.eq(a, "3"); H.eq(n, 2)
  a, n = metrics.majority(answers, {key = grade.normalize})
  H.eq(a, "\\frac{1}{2}", "first spelling is returned"); H.eq(n, 3)
end)

H.case("majority with equal merges the spellings a key keeps apart, one call per pair of keys", function()
  local grade = require "confit.grade"
  local calls = 0
  local function equal(a, b) calls = calls + 1; return grade.equal(a, b) end
  -- keys: "0.5" (1), "7" (2), "\frac{1}{2}" (2: "\frac{1}{2}" and "1/2"); 0.5 equals 1/2
  local answers = {"0.5", "7", "\\frac{1}{2}", "7", "1/2"}
  local a, n = metrics.majority(answers, {key = grade.normalize})
  H.eq(a, "7", "by key alone 7 and 1/2 tie at 2, 7 seen first"); H.eq(n, 2)
  a, n = metrics.majority(answers, {key = grade.normalize, equal = equal})
  H.eq(a, "0.5", "0.5 and its fraction spellings are one group, first spelling returned"); H.eq(n, 3)
  H.eq(calls, 2, "7 against 0.5, then \\frac{1}{2} against 0.5: repeats of a key ask nothing")
  local groups = metrics.vote_groups({n = 6, "2", nil, "\\sqrt{8}", "x", "2\\sqrt{2}", "2.0"},
                                     {key = grade.normalize, equal = grade.equal})
  H.eq(#groups, 3, "2 and 2.0; sqrt 8 and 2 sqrt 2; x")
  H.eq(groups[1].answer, "2"); H.eq(groups[1].count, 2); H.eq(table.concat(groups[1].members, ","), "1,6")
  H.eq(groups[2].answer, "\\sqrt{8}"); H.eq(table.concat(groups[2].members, ","), "3,5")
  H.eq(groups[3].answer, "x"); H.eq(table.concat(groups[3].members, ","), "4")
  H.eq(#metrics.vote_groups({n = 2}), 0)
  H.raises(function() metrics.majority({"a"}, {equal = "yes"}) end, "metrics.majority: opts.equal must be a function", "string")
  H.raises(function() metrics.vote_groups(7) end, "metrics.vote_groups: answers must be a list", "number")
  local ok, err = pcall(function() metrics.vote_groups({"a"}, {key = function() return nil end}) end)
  H.ok(not ok and err:find("test_metrics.lua", 1, true), "the error points at the caller: " .. tostring(err))
end)

H.case("maj@n", function()
  H.eq(metrics.maj_at_n({"2", "2", "3"}, "2"), 1)
  H.eq(metrics.maj_at_n({"2", "3", "3"}, "2"), 0)
  H.eq(metrics.maj_at_n({"3", "2"}, "2"), 0, "tie to first seen (3)")
  H.eq(metrics.maj_at_n({"0.5", "1/2", "7"}, "\\frac{1}{2}"), 1, "0.5 wins and grades equal")
  H.eq(metrics.maj_at_n({n = 2}, "1"), 0)
  H.eq(metrics.maj_at_n({"a", "A"}, "B", {equal = function(x, y) return x == y end}), 0)
  H.eq(metrics.maj_at_n({"0.5"}, "\\frac{1}{2}", {mode = "strict"}), 0)
  -- the vote merges what the grader calls equal: 0.5, 1/2 and \frac{1}{2} (3) beat 7 (2)
  H.eq(metrics.maj_at_n({"0.5", "7", "\\frac{1}{2}", "7", "1/2"}, "1/2"), 1, "equal answers vote together")
end)

H.case("mean and std", function()
  H.near(metrics.mean({1, 2, 3, 4}), 2.5, 1e-15)
  H.near(metrics.std({2, 4, 4, 4, 5, 5, 7, 9}), math.sqrt(32 / 7), 1e-12)
  H.eq(metrics.std({3}), 0)
  H.ok(metrics.mean({}) ~= metrics.mean({}), "mean of nothing is nan")
end)

H.case("Wilson interval", function()
  -- 8/10: centre (0.8 + 1.92/10)/(1 + 3.84/10), hand value [0.4902, 0.9433]
  local lo, hi = metrics.proportion_ci(8, 10)
  H.near(lo, 0.4902, 1e-3); H.near(hi, 0.9433, 1e-3)
  lo, hi = metrics.proportion_ci(0, 30)
  H.eq(lo, 0); H.near(hi, 0.1135, 1e-3)
  lo, hi = metrics.proportion_ci(30, 30)
  H.near(lo, 0.8865, 1e-3); H.eq(hi, 1)
  lo, hi = metrics.proportion_ci(0, 0)
  H.eq(lo, 0); H.eq(hi, 1)
  H.raises(function() metrics.proportion_ci(3, 2) end, "k=3", "n=2")
end)

-- (mutation testing) n = 1: one success or one failure, by the formula of the header:
-- (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), which at p = 1, n = 1 is
-- [1 / (1 + z^2), 1] and at p = 0 is [0, z^2 / (1 + z^2)]
H.case("Wilson interval of one trial", function()
  local z2 = 1.959963984540054 ^ 2
  local lo, hi = metrics.proportion_ci(1, 1)
  H.near(lo, 1 / (1 + z2), 1e-12, "1/1 lo"); H.eq(hi, 1, "1/1 hi")
  lo, hi = metrics.proportion_ci(0, 1)
  H.eq(lo, 0, "0/1 lo"); H.near(hi, z2 / (1 + z2), 1e-12, "0/1 hi")
  -- 1 of 2: centre 1/2, half z sqrt(1/8 + z^2/16) / (1 + z^2/2)
  lo, hi = metrics.proportion_ci(1, 2)
  local half = math.sqrt(z2) * math.sqrt(1 / 8 + z2 / 16) / (1 + z2 / 2)
  H.near(lo, 0.5 - half, 1e-12, "1/2 lo"); H.near(hi, 0.5 + half, 1e-12, "1/2 hi")
end)

H.case("mean interval uses Student t", function()
  local lo, hi = metrics.mean_ci({1, 2, 3})
  local half = 4.302653 * 1 / math.sqrt(3)
  H.near(lo, 2 - half, 1e-9); H.near(hi, 2 + half, 1e-9)
end)

-- t(0.975, df) against a numerical inversion of the t distribution (Simpson's rule on the density,
-- bisection: tests/fixtures/make_t975.py): the table's 6 decimals and the expansion past it agree
-- within 1e-6 (the table had 3 decimals and the expansion two terms before the twenty-seventh
-- session: 5e-4 and 9e-5 off); two values make the smallest interval
H.case("t975 within 1e-6 of the t distribution's quantile; mean interval of two values", function()
  for _, c in ipairs({{1, 12.7062047}, {2, 4.3026527}, {5, 2.5705818}, {10, 2.2281389}, {29, 2.0452296},
                      {30, 2.0422725}, {31, 2.0395134}, {32, 2.0369333}, {40, 2.0210754}, {60, 2.0002978},
                      {120, 1.9799304}, {1000, 1.9623391}}) do
    H.near_abs(metrics.t975(c[1]), c[2], 1e-6, "t975(" .. c[1] .. ")")
  end
  -- the table decreases towards z = 1.96, and the expansion takes over below its last entry
  for df = 2, 40 do
    H.ok(metrics.t975(df) < metrics.t975(df - 1), "t975 decreases at df = " .. df)
  end
  H.ok(metrics.t975(10 ^ 6) > 1.959963984540054, "above z")
  local lo, hi = metrics.mean_ci({0, 1})
  local half = 12.706205 * math.sqrt(0.5) / math.sqrt(2)
  H.near(lo, 0.5 - half, 1e-12, "n = 2 lo"); H.near(hi, 0.5 + half, 1e-12, "n = 2 hi")
  lo, hi = metrics.mean_ci({0.25})
  H.eq(lo, 0.25, "n = 1: the mean alone"); H.eq(hi, 0.25)
end)

-- (audit) 3 problems at n = 4 with 1, 2 and 3 correct: 50.0 [-12.1, 112.1] unclipped. Shares
-- stay in [0, 1]: mean_ci clips to the bounds it is given, summarize to [0, 1].
H.case("mean interval of shares is clipped to [0, 1]", function()
  local lo, hi = metrics.mean_ci({0.25, 0.5, 0.75})
  H.ok(lo < 0 and hi > 1, "unbounded: the t interval itself")
  lo, hi = metrics.mean_ci({0.25, 0.5, 0.75}, 0, 1)
  H.eq(lo, 0, "clipped lo"); H.eq(hi, 1, "clipped hi")
  lo, hi = metrics.mean_ci({0.5, 0.75, 1}, 0, 1)
  H.near(lo, 0.75 - 4.302653 * 0.25 / math.sqrt(3), 1e-9, "inside: untouched"); H.eq(hi, 1, "hi clipped")
  local s = metrics.summarize({{n = 4, c = 1}, {n = 4, c = 2}, {n = 4, c = 3}})
  H.eq(s.interval, "t95"); H.near(s.acc, 0.5, 1e-15)
  H.eq(s.acc_lo, 0, "summarize lo"); H.eq(s.acc_hi, 1, "summarize hi")
end)

H.case("summarize", function()
  local probs = {
    {correct = true, length = 100, boxed = true, n = 4, c = 2, maj = true},
    {correct = false, length = 300, boxed = false, n = 4, c = 0, maj = false},
    {correct = true, length = 200, boxed = true, n = 4, c = 4, maj = 1},
  }
  local s = metrics.summarize(probs, {k = {1, 2}})
  H.eq(s.problems, 3)
  H.near(s.acc, 2 / 3, 1e-15)
  H.eq(s.interval, "wilson95")
  local lo, hi = metrics.proportion_ci(2, 3)
  H.near(s.acc_lo, lo, 1e-15); H.near(s.acc_hi, hi, 1e-15)
  H.near(s.pass_at[1], (0.5 + 0 + 1) / 3, 1e-15)
  H.near(s.pass_at[2], ((1 - 1 / 6) + 0 + 1) / 3, 1e-15)
  H.near(s.maj, 2 / 3, 1e-15)
  H.near(s.mean_length, 200, 1e-12)
  H.near(s.box_rate, 2 / 3, 1e-15)
  local avg = metrics.summarize({{n = 4, c = 1}, {n = 4, c = 3}})
  H.near(avg.acc, 0.5, 1e-15)
  H.eq(avg.interval, "t95")
  H.raises(function() metrics.summarize({{correct = "yes"}}) end, "problem 1", "correct")
  -- pass@k over only the problems that drew k would be another set's; n = 0 has no accuracy
  local mixed = metrics.summarize({{n = 4, c = 2}, {n = 2, c = 1}}, {k = {1, 2}})
  H.near(mixed.pass_at[2], ((1 - 1 / 6) + 1) / 2, 1e-15)
  H.raises(function() metrics.summarize({{n = 4, c = 2}, {n = 2, c = 1}}, {k = {1, 2, 4}}) end,
           "pass@4 needs 4 samples per problem, problem 2 drew 2")
  local none = metrics.summarize({{n = 0, c = 0}, {n = 2, c = 1}}, {k = {1}})
  H.near(none.acc, 0.5, 1e-15)
  H.near(none.pass_at[1], 0.5, 1e-15)
end)

-- (h24 walkthrough) pass@k came only with opts.k (pass_at = {} though :help lists pass@k), a k
-- above the samples drawn was dropped without a word, {k = {"1"}} crashed comparing a string
-- with a number, and a misspelt option ({kk = {1}}) was ignored
H.case("summarize: pass@k by default, k checked, ks in order, unknown options refused", function()
  local probs = {{n = 4, c = 1}, {n = 4, c = 4}, {n = 8, c = 0}}
  local s = metrics.summarize(probs)
  H.eq(table.concat(s.ks, ","), "1,2,4", "evaluate.KS up to the fewest samples drawn")
  for _, k in ipairs(s.ks) do
    H.near(s.pass_at[k], (metrics.pass_at_k(4, 1, k) + 1 + 0) / 3, 1e-15, "pass@" .. k)
  end
  H.eq(#metrics.summarize({{correct = true}}).ks, 0, "no samples, no pass@k")
  local e = metrics.summarize(probs, {k = {4, 1, 4}})
  H.eq(table.concat(e.ks, ","), "4,1", "the order given, once each")
  H.raises(function() metrics.summarize(probs, {k = {1, 8}}) end, "pass@8 needs 8 samples", "problem 1 drew 4")
  H.raises(function() metrics.summarize(probs, {k = {"1"}}) end, 'opts.k[1] must be an integer >= 1, got "1"')
  H.raises(function() metrics.summarize(probs, {k = {0}}) end, "opts.k[1] must be an integer >= 1, got 0")
  H.raises(function() metrics.summarize(probs, {kk = {1}}) end, "unknown option kk (options: k)")
  H.raises(function() metrics.summarize({{n = 2, c = 3}}) end, "problem 1: c=3 exceeds n=2")
  H.raises(function() metrics.summarize({{n = "4", c = 1}}) end, 'n = "4"')
  -- a string shown as a string: "got 16" for "16" contradicted itself
  H.raises(function() metrics.pass_at_k("16", 4, 2) end, 'n must be a non-negative integer, got "16"')
  H.raises(function() metrics.summarize({{correct = "0.5"}}) end, 'got "0.5"')
end)

-- Records of another shape (evaluate.run's eval_before.jsonl lines: greedy and samples per
-- problem) gave {problems = 40, pass_at = {}}, as if nothing had been measured.
H.case("summarize refuses problems none of which has a field it reads, naming the fields", function()
  local recs = {}
  for i = 1, 40 do
    recs[i] = {id = i, question = "q", answer = "1", mode = "qwen", has_box = true,
               greedy = {completion = "\\boxed{1}", correct = true, length = 5, boxed = true},
               samples = {{completion = "1", correct = false, length = 1, boxed = false}}}
  end
  local err = H.raises(function() metrics.summarize(recs, {k = {1}}) end, "metrics.summarize",
                       "none of the 40 problems", "correct, n, c, maj, length, boxed", "evaluate.summarize")
  H.ok(not err:find("\n", 1, true), "one line: " .. err)
  H.raises(function() metrics.summarize({{}, {foo = 1}}) end, "none of the 2 problems")
  -- one recognised field anywhere is enough; an empty list is no mistake
  H.eq(metrics.summarize({{}, {length = 7}}).mean_length, 7)
  H.eq(metrics.summarize({{boxed = false}}).box_rate, 0)
  H.eq(metrics.summarize({}).problems, 0)
end)

-- (mutation testing) every rate is over the problems that have its field: a problem without
-- `boxed` is no unboxed one, and a summary without lengths or votes has no mean_length or maj
-- (not nan); the errors point at the caller
H.case("summarize: each rate over the problems that have its field; errors at the caller", function()
  local s = metrics.summarize({{boxed = true, length = 10}, {correct = true}, {boxed = false, maj = 1}, {maj = false}})
  H.near(s.box_rate, 1 / 2, 1e-15, "box_rate over the two with boxed")
  H.eq(s.mean_length, 10, "mean_length over the one with a length")
  H.near(s.maj, 1 / 2, 1e-15, "maj over the two with maj")
  H.eq(s.acc, 1, "acc over the one with correct")
  local t = metrics.summarize({{correct = false}})
  H.eq(t.mean_length, nil, "no lengths"); H.eq(t.box_rate, nil, "no boxes"); H.eq(t.maj, nil, "no votes")
  H.eq(t.acc, 0); H.eq(t.interval, "wilson95")
  local u = metrics.summarize({{length = 3}})
  H.eq(u.acc, nil, "no correct, no acc"); H.eq(u.acc_lo, nil); H.eq(u.interval, nil)
  local here = "test_metrics.lua:"
  for _, f in ipairs({
    function() metrics.summarize({}, {k = 2}) end,
    function() metrics.summarize({{n = 2, c = 3}}) end,
    function() metrics.summarize({{n = 4, c = 2}, {n = 2, c = 1}}, {k = {4}}) end,
    function() metrics.summarize({{correct = 2}}) end,
    function() metrics.summarize({{maj = 2}}) end,
    function() metrics.summarize({{}}) end,
    function() metrics.summarize({}, {k = {0}}) end,
    function() metrics.pass_at_k(2, 3, 1) end,
    function() metrics.pass_at_k(2, 1, 3) end,
    function() metrics.pass_at_k(-1, 0, 1) end,
    function() metrics.proportion_ci(3, 2) end,
    function() metrics.proportion_ci(-1, 2) end,
    function() metrics.majority({"a"}, {key = function() end}) end,
  }) do
    local ok, err = pcall(f)
    H.ok(not ok and tostring(err):find(here, 1, true), "the error names the caller's line: " .. tostring(err))
  end
end)

H.finish()
