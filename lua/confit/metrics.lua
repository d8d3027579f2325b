-- confit.metrics: the evaluation metrics of ../shared/docs/EVAL.md and the summaries the eval
-- loops print.
--
--   pass_at_k(n, c, k)        unbiased pass@k = 1 - C(n-c, k) / C(n, k), as the product
--                             prod_{i=n-c+1}^{n} (1 - k/i): no huge binomials, no cancellation.
--   majority(answers, opts)   the most frequent answer and its count. nil entries (no answer
--                             extracted) are skipped and never win; ties go to the answer seen
--                             first. Answers are grouped by opts.key(a) (default: the answer
--                             itself; pass grade.normalize to merge "1/2" and "\frac{1}{2}"),
--                             then, with opts.equal(a, b), each group joins the first earlier
--                             group whose first answer it equals ("0.5" and "\frac{1}{2}"; one
--                             call per pair of distinct keys). Returns nil, 0 when every answer
--                             is nil. Takes answers.n as the length when set, so lists with nil
--                             holes work.
--   vote_groups(answers, opts) the groups majority counts, in first-seen order: {answer = the
--                             first answer, count = n, members = {indices into answers}}.
--   maj_at_n(answers, ref, opts)  1 when the majority answer equals ref (opts.equal, default
--                             confit.grade.equal in opts.mode; the vote merges by it too), else 0
--                             (also when all are nil).
--   mean(xs), std(xs)         std is the sample standard deviation (n-1 denominator; 0 for n<2).
--   proportion_ci(k, n)       95% Wilson score interval for k successes out of n.
--   mean_ci(xs, lo, hi)       95% interval for a mean: mean -/+ t(0.975, n-1) * std / sqrt(n)
--                             (Student t; for binary outcomes prefer proportion_ci), clipped to
--                             [lo, hi] when given (shares: 0, 1; 3 problems at 1/4, 2/4, 3/4
--                             correct give -0.12..1.12 unclipped).
--   summarize(problems, opts) one table of summary numbers for a list of per-problem records
--                             (pass@k for opts.k, default 1, 2, 4, 8, 16 up to the samples drawn).
local metrics = {}

-- v for a message: a string quoted (n = "2" is no number 2), a NaN "nan", anything else as tostring
local show = require("confit.cli").show

-- v as an integer when it is a non-negative whole number below 2^53, else an error naming it
local function check_count(name, v, what)
  local i = type(v) == "number" and v >= 0 and v < 2^53 and math.tointeger(v) or nil
  if not i then
    error(string.format("metrics.%s: %s must be a non-negative integer, got %s", name, what,
                        show(v)), 3)
  end
  return i
end

function metrics.pass_at_k(n, c, k)
  n = check_count("pass_at_k", n, "n")
  c = check_count("pass_at_k", c, "c")
  k = check_count("pass_at_k", k, "k")
  if c > n then error(string.format("metrics.pass_at_k: c=%d exceeds n=%d", c, n), 2) end
  if k < 1 or k > n then
    error(string.format("metrics.pass_at_k: k=%d must lie in [1, n=%d]", k, n), 2)
  end
  if n - c < k then return 1.0 end
  local miss = 1.0                  -- C(n-c, k) / C(n, k), as a product of min(c, k) factors
  if c <= k then
    for i = n - c + 1, n do miss = miss * (1 - k / i) end
  else
    for j = 0, k - 1 do miss = miss * ((n - c - j) / (n - j)) end
  end
  return 1.0 - miss
end

local function length_of(t) return t.n or #t end

-- (the errors name `name` and point at the caller of its caller: majority's, vote_groups')
local function vote(name, answers, opts)
  if type(answers) ~= "table" then error("metrics." .. name .. ": answers must be a list, got " .. type(answers), 3) end
  if opts ~= nil and type(opts) ~= "table" then error("metrics." .. name .. ": opts must be a table such as {key = fn}, got " .. type(opts), 3) end
  for _, f in ipairs({"key", "equal"}) do
    if opts and opts[f] ~= nil and type(opts[f]) ~= "function" then
      error(("metrics." .. name .. ": opts.%s must be a function, got %s"):format(f, type(opts[f])), 3)
    end
  end
  local key = (opts and opts.key) or function(a) return a end
  local equal = opts and opts.equal
  local group_of, groups = {}, {}  -- key -> its group; groups in first-seen order
  for i = 1, length_of(answers) do
    local a = answers[i]
    if a ~= nil then
      local kk = key(a)
      if kk == nil then error(string.format("metrics.%s: the key of answer %d (%s) is nil", name, i, tostring(a)), 3) end
      local g = group_of[kk]
      if g == nil then
        if equal then           -- a new spelling: the first earlier group it equals, if any
          for _, h in ipairs(groups) do
            if equal(a, h.answer) then g = h; break end
          end
        end
        if g == nil then g = {answer = a, count = 0, members = {}}; groups[#groups + 1] = g end
        group_of[kk] = g
      end
      g.count = g.count + 1
      g.members[#g.members + 1] = i
    end
  end
  return groups
end

function metrics.vote_groups(answers, opts)
  local groups = vote("vote_groups", answers, opts)  -- not a tail call: the errors' level 3
  return groups
end

function metrics.majority(answers, opts)
  local best = nil
  for _, g in ipairs(vote("majority", answers, opts)) do  -- strict ">": ties to the earlier
    if best == nil or g.count > best.count then best = g end
  end
  if best == nil then return nil, 0 end
  return best.answer, best.count
end

function metrics.maj_at_n(answers, ref, opts)
  opts = opts or {}
  local equal = opts.equal
  if not equal then
    local grade = require "confit.grade"
    equal = function(a, b) return grade.equal(a, b, {mode = opts.mode}) end
  end
  local winner = metrics.majority(answers, {key = opts.key, equal = equal})
  if winner == nil then return 0 end
  return equal(winner, ref) and 1 or 0
end

function metrics.mean(xs)
  local n = #xs
  if n == 0 then return 0 / 0 end
  local s = 0
  for i = 1, n do s = s + xs[i] end
  return s / n
end

function metrics.std(xs)
  local n = #xs
  if n < 2 then return 0 end
  local m, s = metrics.mean(xs), 0
  for i = 1, n do s = s + (xs[i] - m) ^ 2 end
  return math.sqrt(s / (n - 1))
end

local Z95 = 1.959963984540054

function metrics.proportion_ci(k, n)
  check_count("proportion_ci", k, "k")
  check_count("proportion_ci", n, "n")
  if k > n then error(string.format("metrics.proportion_ci: k=%d exceeds n=%d", k, n), 2) end
  if n == 0 then return 0, 1 end
  local p, z2 = k / n, Z95 * Z95
  local centre = (p + z2 / (2 * n)) / (1 + z2 / n)
  local half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
  local lo, hi = math.max(0, centre - half), math.min(1, centre + half)
  if k == 0 then lo = 0 end          -- exact ends (rounding leaves 1 - 1e-16 otherwise)
  if k == n then hi = 1 end
  return lo, hi
end

-- t(0.975, df) for df = 1..30 (to 6 decimals, tests/fixtures/make_t975.py); beyond, the
-- Cornish-Fisher expansion of the t quantile around z in four powers of 1/df (Abramowitz and
-- Stegun 26.7.5; error below 3e-8 from df = 31 on).
local T975 = {12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
  2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816,
  2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529,
  2.051831, 2.048407, 2.045230, 2.042272}

function metrics.t975(df)
  if df <= 30 then return T975[df] end
  local z = Z95
  local g1 = (z ^ 3 + z) / 4
  local g2 = (5 * z ^ 5 + 16 * z ^ 3 + 3 * z) / 96
  local g3 = (3 * z ^ 7 + 19 * z ^ 5 + 17 * z ^ 3 - 15 * z) / 384
  local g4 = (79 * z ^ 9 + 776 * z ^ 7 + 1482 * z ^ 5 - 1920 * z ^ 3 - 945 * z) / 92160
  return z + g1 / df + g2 / df ^ 2 + g3 / df ^ 3 + g4 / df ^ 4
end

function metrics.mean_ci(xs, lo, hi)
  local n, m = #xs, metrics.mean(xs)
  if n < 2 then return m, m end
  local half = metrics.t975(n - 1) * metrics.std(xs) / math.sqrt(n)
  local a, b = m - half, m + half
  if lo then a = math.max(lo, a) end
  if hi then b = math.min(hi, b) end
  return a, b
end

-- problems[i] fields (all optional but the first that applies):
--   correct  boolean (greedy accuracy) or a number in [0, 1] (avg@n of one problem)
--   n, c     samples drawn and correct ones (for pass@k; a problem with n = 0 has no accuracy,
--            not 0)
--   maj      0/1 or boolean: majority vote correct
--   length   completion length in tokens;  boxed  boolean: the completion contains a box
-- opts.k: the k of pass@k, positive integers (default: those of confit.evaluate.KS, 1, 2, 4, 8,
-- 16, that every problem with samples drew, as evaluate.summarize takes them); a k given that
-- a problem with samples did not draw is refused (pass@k over some of the problems would be
-- another set's). The only option.
-- Result: {problems, acc, acc_lo, acc_hi, interval = "wilson95" | "t95", ks, pass_at, maj,
-- mean_length, box_rate}: ks lists the k computed, in opts.k's order (empty without samples), and
-- pass_at[k] is pass@k for each of them. acc uses the Wilson interval when every `correct` is
-- boolean, else the Student-t interval of the per-problem means (clipped to [0, 1]).
-- A non-empty list where no problem has any of these fields is refused (evaluation records
-- such as eval_before.jsonl's lines are summarised by confit.evaluate.summarize instead).
local FIELDS = {"correct", "n", "c", "maj", "length", "boxed"}
local DEFAULT_KS = {1, 2, 4, 8, 16}   -- confit.evaluate.KS

function metrics.summarize(problems, opts)
  opts = opts or {}
  if type(problems) ~= "table" then error("metrics.summarize: problems must be a list, got " .. type(problems), 2) end
  if type(opts) ~= "table" then error("metrics.summarize: opts must be a table such as {k = {1, 8}}, got " .. type(opts), 2) end
  for key in pairs(opts) do
    if key ~= "k" then error(("metrics.summarize: unknown option %s (options: k)"):format(tostring(key)), 2) end
  end
  if opts.k ~= nil and type(opts.k) ~= "table" then
    error("metrics.summarize: opts.k must be a list of k values such as {1, 8}, got " .. show(opts.k), 2)
  end
  for i, k in ipairs(opts.k or {}) do
    if math.type(k) ~= "integer" or k < 1 then
      error(("metrics.summarize: opts.k[%d] must be an integer >= 1, got %s"):format(i, show(k)), 2)
    end
  end
  local out = {problems = #problems, pass_at = {}, ks = {}}
  local vals, all_bool, lengths, boxes, maj = {}, true, {}, {}, {}
  local known = false
  local fewest, fewest_at          -- the fewest samples a problem with samples drew, and where
  for i, p in ipairs(problems) do
    if type(p) ~= "table" then error(string.format("metrics.summarize: problem %d must be a table, got %s", i, type(p)), 2) end
    for _, k in ipairs(FIELDS) do known = known or p[k] ~= nil end
    if p.n ~= nil or p.c ~= nil then
      if type(p.n) ~= "number" or type(p.c) ~= "number" then
        error(("metrics.summarize: problem %d: n and c must both be numbers, got n = %s, c = %s"):format(i, show(p.n), show(p.c)), 2)
      end
      check_count("summarize", p.n, ("problem %d: n"):format(i))
      check_count("summarize", p.c, ("problem %d: c"):format(i))
      if p.c > p.n then error(("metrics.summarize: problem %d: c=%d exceeds n=%d"):format(i, p.c, p.n), 2) end
      if p.n > 0 and (fewest == nil or p.n < fewest) then fewest, fewest_at = p.n, i end
    end
    local c = p.correct
    if c == nil and p.n and p.c and p.n > 0 then c = p.c / p.n end
    if type(c) == "boolean" then vals[#vals + 1] = c and 1 or 0
    elseif type(c) == "number" and c >= 0 and c <= 1 then vals[#vals + 1] = c; all_bool = false
    elseif c ~= nil then
      error(string.format("metrics.summarize: problem %d: 'correct' must be a boolean or a share in [0, 1], got %s",
                          i, show(c)), 2)
    end
    if p.length then lengths[#lengths + 1] = p.length end
    if p.boxed ~= nil then boxes[#boxes + 1] = p.boxed and 1 or 0 end
    if p.maj ~= nil then
      if p.maj ~= true and p.maj ~= false and p.maj ~= 0 and p.maj ~= 1 then
        error(string.format("metrics.summarize: problem %d: 'maj' must be a boolean, 0 or 1, got %s", i, show(p.maj)), 2)
      end
      maj[#maj + 1] = (p.maj == true or p.maj == 1) and 1 or 0
    end
  end
  if #problems > 0 and not known then
    error(string.format("metrics.summarize: none of the %d problems has a field it reads (%s; per problem, "
                        .. "not per completion: for evaluate.run's records use confit.evaluate.summarize)",
                        #problems, table.concat(FIELDS, ", ")), 2)
  end
  if fewest then
    for _, k in ipairs(opts.k or DEFAULT_KS) do
      if k > fewest then
        if opts.k then
          error(("metrics.summarize: pass@%d needs %d samples per problem, problem %d drew %d "
                 .. "(pass@k over some of the problems would be another set's)"):format(k, k, fewest_at, fewest), 2)
        end
      elseif out.pass_at[k] == nil then
        local xs = {}
        for _, p in ipairs(problems) do
          if p.n and p.n > 0 then xs[#xs + 1] = metrics.pass_at_k(p.n, p.c, k) end
        end
        out.ks[#out.ks + 1] = k
        out.pass_at[k] = metrics.mean(xs)
      end
    end
  end
  if #vals > 0 then
    out.acc = metrics.mean(vals)
    if all_bool then
      local k = 0
      for _, v in ipairs(vals) do k = k + v end
      out.acc_lo, out.acc_hi = metrics.proportion_ci(k, #vals)
      out.interval = "wilson95"
    else
      out.acc_lo, out.acc_hi = metrics.mean_ci(vals, 0, 1)
      out.interval = "t95"
    end
  end
  if #maj > 0 then out.maj = metrics.mean(maj) end
  if #lengths > 0 then out.mean_length = metrics.mean(lengths) end
  if #boxes > 0 then out.box_rate = metrics.mean(boxes) end
  return out
end

return metrics
