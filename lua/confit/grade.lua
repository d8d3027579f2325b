-- confit.grade: math answer extraction, normalisation and equivalence, as specified in
-- ../shared/docs/EVAL.md. Two modes:
--
--   "qwen"   (default) the Qwen2.5-Math evaluation harness: extraction with its fallbacks
--            (Minerva phrasing, last "boxed", "the answer is", last number), normalisation,
--            then equivalence by string, number (rel tol 1e-4, reference x100 / /100 accepted),
--            tuples / intervals / matrices elementwise, equations as lhs-(rhs), and symbolic
--            equivalence by evaluating both sides at seeded pseudo-random points.
--   "strict" what RLSC used (Evalchemy / MATH): the last \boxed{} only, then string equality
--            after the same normalisation, without numeric or symbolic steps.
--
-- API: grade.extract(text, opts) -> string or nil; grade.normalize(s, opts) -> string;
-- grade.equal(pred, ref, opts) -> boolean; grade.reference(dataset, record) -> string or nil;
-- grade.forget() empties normalize's memo (benchmarks time grading from cold).
-- opts.mode is "qwen" or "strict". extract returns the cleaned raw answer (not normalised);
-- an answer that is empty, or normalises to nothing ("$$", "\boxed{\text{}}"), counts as none (nil). normalize currently does the same in both modes.
--
-- Bounded time: answers longer than MAX_LEN characters are not normalised and compare only as
-- exact strings; nesting deeper than MAX_DEPTH skips structural and symbolic comparison; every
-- comparison has an evaluation-step budget and a CPU-time budget (os.clock), and a comparison
-- that runs out counts as wrong. The LaTeX grammar (LPeg) is written so that its alternatives
-- start with distinct tokens: a failed alternative never re-parses a long prefix, so parsing is
-- linear in practice; LPeg's own stack limit turns pathological nesting into a caught error.
--
-- Where we deliberately differ from the Qwen harness:
--   * we do not delete single-letter unit words nor every "and" substring (harness bugs that
--     turn e.g. "band" into "b" and "5 m" into "5");
--   * a trailing unit is a \text / \mathrm / ... command, or several joined by "/", "\cdot" or
--     nothing ("5 \text{m}/\text{s}", "5\,\mathrm{m}\,\mathrm{s}^{-1}"), removed whole;
--   * "x=", "y=", "z=" and "x\in" style prefixes are removed only at the start of the answer,
--     not everywhere (the harness turns "(x=1,y=2x)" into "(1,22)"); the EVAL.md rule "left
--     side of at most 2 characters" still applies, so "2x=4" becomes "4" as in the harness;
--   * the "left side of at most 2 characters" never ends in "<", ">" or "!": "x>=3" is not "3";
--   * "\left"/"\right" are removed only as delimiters, so "\rightarrow" survives; a matrix in
--     brackets is the matrix ("\left(\begin{array}...\end{array}\right)" is its pmatrix);
--   * "+\infty" where a term starts is "\infty" ("(3,+\infty)" = "(3,\infty)"), and
--     "\geqslant" / "\leqslant" are "\ge" / "\le";
--   * two words of two or more letters ("east", "Evelyn") compare as text, case-insensitively:
--     as products of one-letter variables "north" and "thorn" were equal;
--   * a comma counts as a thousands separator only in groups of three digits ("1,000",
--     "1{,}000"); "1,2" is a two-element list, not the number 12;
--   * "\sqrt2x" is sqrt(2)*x as in LaTeX (one token under the root), like "\frac12" (the
--     harness's \w+ makes "\sqrt13" sqrt(13)); a token is a character or a command word:
--     "\frac\pi2" is \frac{\pi}{2}, "\sqrt\pi" \sqrt{\pi}, "\binom52" \binom{5}{2};
--   * TeX's infix "\choose" and "\over" take the group they stand in (or the whole answer):
--     "{n \choose k}" is \binom{n}{k}, "{1 \over 2}" \frac{1}{2};
--   * a trailing "\mathrm{i}" / "\text{e}" (one letter i or e) is the constant, not a unit;
--     "\sin^{-1}" is arcsin as in latex2sympy; "I(0)", "f(x)" (a letter before a parenthesised
--     number or variable) are function values, not products; U+2212 is a minus;
--   * a whole answer "137 \frac{1}{2}" (an integer, then a fraction below 1) is the mixed number
--     137.5, not the product (MATH-500 writes two answers so);
--   * a function without parentheses takes the implicit product that follows, up to the next
--     operator or function: "\sin 2x" is sin(2x) as latex2sympy reads it, "\sin x\cos x"
--     sin(x)cos(x); an explicit operator ends it ("\sin x/2" is sin(x)/2, where sympy's grammar
--     reads sin(x/2)); "\sin(x)^2" is sin(x)^2;
--   * a one-character subscript loses its braces ("52_{8}" is "52_8", the same LaTeX); a
--     variable's subscript of several digits is all of them ("a_10" is a_{10}, as "2^10" is 2^{10});
--   * "\," "\;" "\:" "\ " "~" "\quad" are spaces, and "\displaystyle", "\big" etc. are dropped;
--   * symbolic equivalence is numeric evaluation at random points (positive values in
--     [0.35, 2.65], so sqrt(x^2) = x; where an absolute value "|x|", "\lvert x\rvert" is, also
--     points of either sign: |x| is not x), not sympy simplification; a bar that pairs with no
--     other in its brackets is no absolute value ("{x|x>0}" stays text); "\log" is the
--     natural log, "i" is an ordinary variable (so 2i+1 = 1+2i, but no complex arithmetic);
--     values agree within the relative tolerance below, or within the rounding a cancellation
--     leaves (1e-12 times the largest operand of a sum), so tiny constants keep their digits;
--   * kept from the harness on purpose: numbers compare with relative tolerance 1e-4, so
--     "70001" equals "70000", and a prediction equal to the reference x100 or /100 counts;
--   * rule 1's answer (Minerva phrasing) loses the \boxed{} it is written in ("$\boxed{42}$.
--     I hope" gives 42, as strict mode does), so the records' extracted answer is the answer;
--     grading is the same either way, normalisation removes the box;
--   * strict mode shares this normalisation (EVAL.md: "the subset above"), zero-padded
--     integers included, and compares exactly (case-sensitive).
local lpeg = require "lpeg"

local grade = {}

local MAX_LEN = 2000          -- longer answers: no normalisation, exact comparison only
local MAX_DEPTH = 24          -- deeper bracket nesting: no structural / symbolic comparison
                              -- (LPeg's capture nesting gives out at about 28 nested \frac)
local BUDGET_S = 0.25         -- CPU seconds per comparison
local EVAL_STEPS = 200000     -- expression-node evaluations per comparison
local NPOINTS = 6             -- random points for symbolic comparison
local REL_TOL = 1e-4

grade.limits = {max_len = MAX_LEN, max_depth = MAX_DEPTH, budget_s = BUDGET_S,
                eval_steps = EVAL_STEPS, points = NPOINTS, rel_tol = REL_TOL}

-- ---------------------------------------------------------------- small string helpers

-- Linear-time trims (a pattern such as "%s+$" backtracks quadratically on long blank runs).
local function rstrip(s, chars)
  local j = #s
  while j > 0 and chars[s:byte(j)] do j = j - 1 end
  return s:sub(1, j)
end

local BLANK = {[9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true}

local function trim(s)
  local i = s:find("%S")
  if not i then return "" end
  return rstrip(s:sub(i), BLANK)
end

local function escape(p) return (p:gsub("%p", "%%%0")) end

-- Replace every plain occurrence of `a` by `b`.
local function replace(s, a, b)
  return (s:gsub(escape(a), (b:gsub("%%", "%%%%"))))
end

local function starts(s, p) return s:sub(1, #p) == p end
local function ends(s, p) return #p == 0 or s:sub(-#p) == p end

-- Position of the last plain occurrence of p in s, or nil.
local function find_last(s, p)
  local last, pos = nil, 1
  while true do
    local i = s:find(p, pos, true)
    if not i then return last end
    last, pos = i, i + 1
  end
end

-- s:sub(i, i) is "{": the brace-balanced content and the position of the closing brace;
-- when unbalanced, everything after the "{" and nil.
local function brace_content(s, i)
  local depth, pos = 0, i
  while true do
    local j = s:find("[{}]", pos)
    if not j then return s:sub(i + 1), nil end
    if s:byte(j) == 123 then depth = depth + 1
    else
      depth = depth - 1
      if depth == 0 then return s:sub(i + 1, j - 1), j end
    end
    pos = j + 1
  end
end

-- Replace every "\name{X}" by X (keep) or by "" (drop); unbalanced tails are left alone.
local function unwrap(s, name, keep)
  local key = "\\" .. name .. "{"
  local out, pos = {}, 1
  while true do
    local i = s:find(key, pos, true)
    if not i then break end
    local content, close = brace_content(s, i + #key - 1)
    if not close then break end
    out[#out + 1] = s:sub(pos, i - 1)
    if keep then out[#out + 1] = content end
    pos = close + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

local OPEN = {[40] = true, [91] = true, [123] = true}    -- ( [ {
local CLOSE = {[41] = true, [93] = true, [125] = true}   -- ) ] }

-- Maximum bracket nesting depth (all bracket kinds alike).
local function max_depth(s)
  local d, m = 0, 0
  for i = 1, #s do
    local b = s:byte(i)
    if OPEN[b] then d = d + 1; if d > m then m = d end
    elseif CLOSE[b] then d = d - 1 end
  end
  return m
end

-- Split s at occurrences of the plain separator sep that lie outside any bracket.
local function split_top(s, sep)
  local parts, d, start, i, n, first = {}, 0, 1, 1, #s, sep:byte(1)
  while i <= n do
    local b = s:byte(i)
    if OPEN[b] then d = d + 1
    elseif CLOSE[b] then d = d - 1
    elseif d == 0 and b == first and s:sub(i, i + #sep - 1) == sep then
      parts[#parts + 1] = s:sub(start, i - 1)
      start = i + #sep
      i = i + #sep - 1
    end
    i = i + 1
  end
  parts[#parts + 1] = s:sub(start)
  return parts
end

-- Does the bracket opening at position 1 close exactly at the last character?
local function wrapped(s)
  if not OPEN[s:byte(1) or 0] or not CLOSE[s:byte(#s) or 0] then return false end
  local d = 0
  for i = 1, #s do
    local b = s:byte(i)
    if OPEN[b] then d = d + 1
    elseif CLOSE[b] then
      d = d - 1
      if d == 0 then return i == #s end
    end
  end
  return false
end

local function mode_of(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("grade: opts must be a table such as {mode = \"strict\"}, got %s %s"):format(type(opts), tostring(opts)), 3)
  end
  for k in pairs(opts or {}) do
    -- a misspelt {mod = "strict"} graded in qwen mode without a word
    if k ~= "mode" then error(("grade: unknown option %s (options: mode)"):format(tostring(k)), 3) end
  end
  local m = (opts and opts.mode) or "qwen"
  if m ~= "qwen" and m ~= "strict" then
    error("grade: unknown mode '" .. tostring(m) .. "' (expected \"qwen\" or \"strict\")", 3)
  end
  return m
end

-- A number as answer text: integral floats print without ".0" (amc23's 27.0 -> "27").
local function number_text(x)
  if math.type(x) == "float" and x == math.floor(x) and math.abs(x) < 2^53 then
    return string.format("%d", x)
  end
  return tostring(x)
end

-- ---------------------------------------------------------------- extraction

-- Final clean-up shared by the qwen rules: newlines dropped, one leading ":", one trailing "."
-- and one trailing "/".
local function clean(a)
  a = trim(a:gsub("\n%s*", ""))
  if starts(a, ":") then a = a:sub(2) end
  if ends(a, ".") then a = a:sub(1, -2) end
  if ends(a, "/") then a = a:sub(1, -2) end
  a = trim(a)
  if a == "" then return nil end
  return a
end

local function extract_minerva(text)
  local a = text:find("final answer is $", 1, true)
  if not a then return nil end
  local b = text:find("$. I hope", a + 17, true)
  if not b then return nil end
  return trim(text:sub(a + 17, b - 1))
end

-- After the last "boxed": brace-balanced content, or the text up to the next "$".
local function extract_boxed(text)
  local i = find_last(text, "boxed")
  if not i then return nil end
  local rest = text:sub(i + 5)
  if rest:sub(1, 1) == "{" then return (brace_content(rest, 1)) end
  return trim(rest:match("^[^$]*"))
end

local function extract_answer_is(text)
  for _, key in ipairs({"he answer is", "final answer is"}) do
    local i = find_last(text, key)
    if i then return trim(text:sub(i + #key)) end
  end
  return nil
end

local UMINUS = "\226\136\146"   -- U+2212, the minus sign: "-" to every rule here

local function extract_last_number(text)
  local last
  for m in text:gsub(",", ""):gsub(UMINUS, "-"):gmatch("%-?%d*%.?%d+") do last = m end
  return last
end

local function extract_qwen(text)
  -- Minerva's "$\boxed{42}$" gives "\boxed{42}": the box goes (normalisation drops it anyway;
  -- the records' extracted answer showed it, where strict mode's showed 42)
  local a = extract_minerva(text)
  if a then a = unwrap(a, "boxed", true) end
  a = a or extract_boxed(text) or extract_answer_is(text) or extract_last_number(text)
  if a == nil then return nil end
  return clean(a)
end

-- Strict: the last "\boxed{...}" (balanced) or "\boxed X$" (MATH's form), nothing else.
local function extract_strict(text)
  local i = find_last(text, "\\boxed")
  if not i then return nil end
  local rest = text:sub(i + 6)
  local a
  if rest:sub(1, 1) == "{" then
    local content, close = brace_content(rest, 1)
    if not close then return nil end
    a = content
  elseif rest:sub(1, 1) == " " then
    a = rest:match("^ ([^$]*)")
  else
    return nil
  end
  a = trim(a)
  if a == "" then return nil end
  return a
end

function grade.extract(text, opts)
  local mode = mode_of(opts)
  if type(text) ~= "string" then
    error("grade.extract: text must be a string, got " .. type(text), 2)
  end
  local a
  if mode == "strict" then a = extract_strict(text) else a = extract_qwen(text) end
  -- an answer that normalises to nothing ("$$", "\boxed{\text{}}") is none: as "" it voted in
  -- maj@n and counted as a distinct answer
  -- (only answers without a digit are normalised here: a digit survives normalisation but for a
  -- unit's exponent, and normalising every answer cost strict grading 30 % of its speed:
  -- bench/grade_bench.lua, 19,600 -> 13,200 answers/s on the dev VM)
  if a ~= nil and not a:find("%d") and grade.normalize(a, opts) == "" then return nil end
  return a
end

-- ---------------------------------------------------------------- normalisation

local TEXT_CMDS = {"text", "textbf", "textrm", "textit", "mbox", "mathrm", "mathbf", "mathit",
                   "operatorname", "boldsymbol"}
local UNIT_CMDS = {"text", "textrm", "mbox", "mathrm"}

-- Where the unit command ending s ("\text{ cm}", "\mathrm{s}^{-1}", "\text{m}^2") starts, or nil.
-- "\mathrm{i}", "\text{e}": the constants i and e, typeset upright, are no units ("6-5\mathrm{i}"
-- lost its i and equalled 1 before the twenty-fourth session).
-- The "{" that opens the group whose "}" is at s:byte(close), or nil.
local function open_of(s, close)
  local d = 0
  for i = close, 1, -1 do
    local b = s:byte(i)
    if b == 125 then d = d + 1
    elseif b == 123 then
      d = d - 1
      if d == 0 then return i end
    end
  end
  return nil
end

local unit_at_end

-- s is nothing but units: one or more unit commands joined by "/", "\cdot" or nothing.
local function all_units(s)
  s = trim(s)
  if s == "" then return false end
  while s ~= "" do
    local start = unit_at_end(s)
    if not start then return false end
    s = rstrip(s:sub(1, start - 1), BLANK)
    if ends(s, "/") then s = rstrip(s:sub(1, -2), BLANK)
    elseif ends(s, "\\cdot") then s = rstrip(s:sub(1, -6), BLANK) end
  end
  return true
end

function unit_at_end(s)
  -- (the exponent's braces are a pair: "}?" alone ate the brace of "\text{ cm^2}")
  local body = s:gsub("%^{[+-]?%d+}$", "")
  if body == s then body = s:gsub("%^%d$", "") end
  if not ends(body, "}") then return nil end
  local open = open_of(body, #body)
  if not open then return nil end
  -- a fraction of units: "5\frac{\text{m}}{\text{s}}" (not "\frac{m}{s}": bare letters may be
  -- variables)
  local open2 = body:byte(open - 1) == 125 and open_of(body, open - 1)
  if open2 and ends(body:sub(1, open2 - 1), "\\frac") and all_units(body:sub(open2 + 1, open - 2))
     and all_units(body:sub(open + 1, -2)) then
    return open2 - 5
  end
  local content = trim(body:sub(open + 1, -2))
  if content:match("^[ie]$") then return nil end
  -- a value or a choice typeset as text is no unit: "\text{12}\text{ cm}" is 12,
  -- "\text{(B)}\text{ m}" is (B) (the chain of units in drop_trailing_unit stops there)
  if content:match("^[%d.+-]") or content:find("(", 1, true) then return nil end
  local head = body:sub(1, open - 1)
  for _, cmd in ipairs(UNIT_CMDS) do
    if ends(head, "\\" .. cmd) then return #head - #cmd end
  end
  return nil
end

-- A trailing unit is removed when something is left before it: "10\text{ cm}^2" -> "10", but
-- "\text{(B)}" stays, and so does the text after an "=" or ":" ("x=\text{Evelyn}": the answer,
-- not a unit). A compound unit goes whole: unit commands joined by "/", "\cdot" or nothing
-- ("5 \text{m}/\text{s}", "5\,\mathrm{kg}\,\mathrm{m}^{2}", "\text{ m}\cdot\text{s}^{-1}"; the
-- last alone left "5m/"), and with nothing before them they are the answer ("\text{m}/\text{s}").
-- Bare letters are never units ("5m/s" stays): they may be variables.
local function drop_trailing_unit(s)
  local start = unit_at_end(s)
  if not start then return s end
  while true do
    local head = rstrip(s:sub(1, start - 1), BLANK)
    if ends(head, "/") then head = rstrip(head:sub(1, -2), BLANK)
    elseif ends(head, "\\cdot") then head = rstrip(head:sub(1, -6), BLANK) end
    local prev = unit_at_end(head)
    if not prev then break end
    start = prev
  end
  local before = trim(s:sub(1, start - 1))
  if before ~= "" and not before:find("[=:]$") then return before end
  return s
end

-- "\frac12" -> "\frac{1}{2}", "\frac1{2}", "\frac{1}2", "\frac\pi2" -> "\frac{\pi}{2}", and
-- "\binom52" the same way: an argument is a group, a command word or one character, blanks
-- before it skipped (as TeX reads them: "\frac\alpha b" is \frac{\alpha}{b}, so this runs
-- before blanks go, which would make "\alphab" of it).
local function fix_args(s, cmd)
  local out, pos = {}, 1
  while true do
    local i = s:find(cmd, pos, true)
    if not i then break end
    out[#out + 1] = s:sub(pos, i + #cmd - 1)
    local j, args = i + #cmd, {}
    for k = 1, 2 do
      j = s:find("%S", j) or #s + 1
      local c = s:sub(j, j)
      if c == "{" then
        local content, close = brace_content(s, j)
        if not close then args = nil; break end
        args[k] = content; j = close + 1
      elseif c == "\\" then
        local word = s:match("^\\%a+", j)
        if not word then args = nil; break end
        args[k] = word; j = j + #word
      elseif c ~= "" and c ~= "}" then
        args[k] = c; j = j + 1
      else
        args = nil; break
      end
    end
    if args then
      out[#out + 1] = "{" .. args[1] .. "}{" .. args[2] .. "}"
      pos = j
    else
      pos = i + #cmd
    end
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

-- "\sqrt2", "\sqrt 2", "\sqrt\pi" -> "\sqrt{2}", "\sqrt{\pi}" (one token under the root, as
-- LaTeX reads it).
local function fix_sqrt(s)
  s = s:gsub("\\sqrt%s*(\\%a+)", "\\sqrt{%1}")
  return (s:gsub("\\sqrt%s*([^{%[\\%s])", "\\sqrt{%1}"))
end

-- TeX's infix "\choose" and "\over" take the whole group they stand in: "{n \choose k}" is
-- \binom{n}{k}, "{1 \over 2}" \frac{1}{2}; outside any braces, the whole answer. Inner ones
-- first: "{{a \choose b} \choose c}" is \binom{\binom{a}{b}}{c}.
local INFIX = {{"\\choose", "\\binom"}, {"\\over", "\\frac"}}

-- Bytes that mark a \left ... \right group (brace_left_right) for fix_infix, which removes them.
local GROUP_OPEN, GROUP_CLOSE = "\1", "\2"
local OPENS, CLOSES = {[123] = true, [1] = true}, {[125] = true, [2] = true}

-- The brace of the group around position `from`, walking by step: its "{" for -1, its "}" for 1
-- (or a \left ... \right group's mark); nil when no group is open there.
local function group_brace(s, from, step)
  local want, other = step < 0 and OPENS or CLOSES, step < 0 and CLOSES or OPENS
  local d = 0
  for k = from, step < 0 and 1 or #s, step do
    local b = s:byte(k)
    if other[b] then d = d + 1
    elseif want[b] then
      if d == 0 then return k end
      d = d - 1
    end
  end
  return nil
end

local function fix_infix(s, marked)
  if not (s:find("\\choose", 1, true) or s:find("\\over", 1, true)) then return s end
  while true do
    local i, j, cmd
    for _, f in ipairs(INFIX) do
      local a, b = s:find(escape(f[1]) .. "%f[%A]")     -- not "\overline"
      if a and (not i or a < i) then i, j, cmd = a, b, f[2] end
    end
    if not i then break end
    local lo, hi = group_brace(s, i - 1, -1), group_brace(s, j + 1, 1)   -- or the ends
    if (lo == nil) ~= (hi == nil) then break end        -- unbalanced braces: left as written
    lo, hi = lo or 0, hi or #s + 1
    s = (lo > 0 and s:sub(1, lo - 1) or "") .. cmd .. "{" .. trim(s:sub(lo + 1, i - 1)) .. "}{"
        .. trim(s:sub(j + 1, hi - 1)) .. "}" .. s:sub(hi + 1)
  end
  return marked and (s:gsub("[\1\2]", "")) or s
end

local function fix_infinity(s)
  s = s:gsub("%f[%a]infinity%f[%A]", "\\infty")
  if not s:find("\\infty", 1, true) then s = s:gsub("%f[%a]inf%f[%A]", "\\infty") end
  -- "+\infty" where a term starts (the answer, an interval end): "(3,+\infty)" is "(3,\infty)"
  s = s:gsub("^%+\\infty", "\\infty"):gsub("([%(%[,])%+\\infty", "%1\\infty")
  return s
end

local SPACES = {"\\qquad", "\\quad", "\\,", "\\;", "\\:", "\\ ", "~"}
local DROPS = {"\\displaystyle", "\\Bigl", "\\Bigr", "\\bigl", "\\bigr", "\\Big", "\\big",
               "\\!"}

-- f applied to the text between the row breaks "\\" of s: a break followed by a space or a
-- comma is not the start of "\ " or "\," (which ate a backslash of every "\\ " in a matrix)
local function between_breaks(s, f)
  local out, pos = {}, 1
  while true do
    local i = s:find("\\\\", pos, true)
    if not i then break end
    out[#out + 1] = f(s:sub(pos, i - 1))
    out[#out + 1] = "\\\\"
    pos = i + 2
  end
  out[#out + 1] = f(s:sub(pos))
  return table.concat(out)
end

-- "\left( n \choose k \right)": \left ... \right is a group in TeX, so an infix command between
-- them takes what they enclose. The group is marked by GROUP_OPEN / GROUP_CLOSE, which fix_infix
-- reads as braces and then removes (only where an infix stands, the pairs are balanced and the
-- text holds no such byte already); the second result says whether it marked.
local function brace_left_right(s)
  if not (s:find("\\choose", 1, true) or s:find("\\over", 1, true)) or s:find("[\1\2]") then
    return s, false
  end
  local _, nl = s:gsub("\\left%f[%A]", "")
  local _, nr = s:gsub("\\right%f[%A]", "")
  if nl == 0 or nl ~= nr then return s, false end
  local out, pos = {}, 1
  while true do
    local _, b = s:find("\\left%f[%A]%s*", pos)
    if not b then break end
    -- the delimiter: a command word ("\langle"), an escaped character ("\{") or one character
    local d = s:match("^\\%a+", b + 1) or s:match("^\\.", b + 1) or s:sub(b + 1, b + 1)
    out[#out + 1] = s:sub(pos, b) .. d .. GROUP_OPEN
    pos = b + 1 + #d
  end
  out[#out + 1] = s:sub(pos)
  return (table.concat(out):gsub("\\right%f[%A]", GROUP_CLOSE .. "\\right")), true
end

local function normalize_latex(s)
  s = rstrip(trim(s:gsub("\n", ""):gsub(UMINUS, "-")), {[46] = true})
  for _ = 1, 8 do                                        -- an answer passed with its box(es)
    local u = unwrap(unwrap(s, "boxed", true), "fbox", true)
    if u == s then break end
    s = u
  end
  s = between_breaks(s, function(p)
    for _, d in ipairs(DROPS) do p = replace(p, d, "") end
    for _, sp in ipairs(SPACES) do p = replace(p, sp, " ") end
    return p
  end)
  s = s:gsub("(\\%a+)%s+{", "%1{")                       -- "\text {x}" -> "\text{x}"
  -- matrices: array / bmatrix -> pmatrix
  s = s:gsub("\\begin{array}{[^}]*}", "\\begin{pmatrix}")
  s = replace(s, "\\end{array}", "\\end{pmatrix}")
  s = replace(s, "bmatrix", "pmatrix")
  s = replace(s, "tfrac", "frac")
  s = replace(s, "dfrac", "frac")
  s = replace(s, "dbinom", "binom")
  s = replace(s, "tbinom", "binom")
  s = s:gsub("\\neq%f[%A]", "\\ne"):gsub("\\leq%f[%A]", "\\le"):gsub("\\geq%f[%A]", "\\ge")
  s = s:gsub("\\leqslant%f[%A]", "\\le"):gsub("\\geqslant%f[%A]", "\\ge")
  local marked
  s, marked = brace_left_right(s)
  s = s:gsub("\\left%.", ""):gsub("\\right%.", "")
  s = s:gsub("\\left%f[%A]", ""):gsub("\\right%f[%A]", "")
  s = s:gsub("\\[lr]?vert%f[%A]", "|")                  -- "\lvert x \rvert" is "|x|" ("\Vert" stays)
  -- a matrix in brackets is the matrix ("\left(\begin{array}...\end{array}\right)" = pmatrix)
  local inner = trim(s):match("^%((%s*\\begin{pmatrix}.*\\end{pmatrix}%s*)%)$")
                or trim(s):match("^%[(%s*\\begin{pmatrix}.*\\end{pmatrix}%s*)%]$")
  if inner and not inner:find("\\end{pmatrix}.*\\begin{pmatrix}") then s = trim(inner) end
  s = replace(s, "\\{", "{")
  s = replace(s, "\\}", "}")
  s = replace(s, "\\$", "")                              -- math delimiters first, so that a unit
  s = replace(s, "$", "")                                -- inside them is trailing: "$5 \text{ cm}$"
  s = replace(s, "\\(", "")
  s = replace(s, "\\)", "")
  s = fix_infix(s, marked)                               -- before blanks go: "\\choosek"
  s = drop_trailing_unit(trim(s))
  s = replace(s, "^{\\circ}", "")
  s = replace(s, "^\\circ", "")
  s = replace(s, "\194\176", "")                          -- the degree sign
  for _, cmd in ipairs(TEXT_CMDS) do s = unwrap(s, cmd, true) end
  s = trim(s)
  local rest = s:match("^[xyz]%s*=(.*)$") or s:match("^[xyz]%s*\\in%f[%A](.*)$")
               or s:match("^[xyz]%s*\\to%f[%A](.*)$")
  if rest and trim(rest) ~= "" then s = trim(rest) end
  s = replace(s, "\\emptyset", "{}")
  s = replace(s, "\\varnothing", "{}")
  s = replace(s, "\\%", "")
  s = replace(s, "%", "")
  return s
end

local function normalize_tail(s)
  local parts = split_top(s, "=")
  -- "x = 3" -> "3"; not the "x>" of "x>=3", "x<=3", "x!=3"
  if #parts == 2 and #trim(parts[1]) <= 2 and not trim(parts[1]):find("[<>!]$") and trim(parts[2]) ~= "" then
    s = parts[2]
  end
  s = fix_sqrt(s)
  s = fix_args(fix_args(s, "\\frac"), "\\binom")
  s = s:gsub("%s+", "")
  s = s:gsub("_{(%w)}", "_%1")                           -- "52_{8}" -> "52_8"
  s = replace(s, "{,}", ",")
  s = s:gsub("%f[%d](%d+)%.0*(%D)", "%1%2")              -- "27.0" -> "27" before a/b: "-1./3" is -1/3
  s = s:gsub("^(%-?)(%d+)/(%d+)$", "%1\\frac{%2}{%3}")
  s = s:gsub("^%.(%d)", "0.%1"):gsub("([{(%[,=+%-*/])%.(%d)", "%10.%2")
  s = rstrip(s, {[92] = true, [44] = true, [46] = true})    -- trailing "\", ",", "."
  s = fix_infinity(s)
  s = replace(s, "(-\\infty,\\infty)", "\\mathbb{R}")
  s = s:gsub("%f[%d](%d+)%.0*(%D)", "%1%2"):gsub("%f[%d](%d+)%.0*$", "%1")
  if s:match("^%-?%d+$") then s = s:gsub("^(%-?)0+(%d)", "%1%2") end
  return s
end

-- normalize is a pure function of its string, asked again and again of the same few (a
-- reference once per sample, a vote's first answers once per new spelling): up to NORM_KEEP
-- results are kept, and the memo is emptied when full. 17 us -> 0.1 us for "7" on the dev VM.
local NORM_KEEP = 4096
local norm_memo, norm_n = {}, 0

function grade.normalize(s, opts)
  mode_of(opts)
  if type(s) == "number" then s = number_text(s) end
  if type(s) ~= "string" then
    error("grade.normalize: expected a string, got " .. type(s), 2)
  end
  if #s > MAX_LEN then return trim(s) end
  local r = norm_memo[s]
  if r then return r end
  r = normalize_tail(normalize_latex(s))
  if norm_n >= NORM_KEEP then norm_memo, norm_n = {}, 0 end
  norm_memo[s], norm_n = r, norm_n + 1
  return r
end

-- Empty normalize's memo (bench/grade_bench.lua times grading from cold with it).
function grade.forget() norm_memo, norm_n = {}, 0 end

-- ---------------------------------------------------------------- numbers

-- A plain decimal literal with optional exponent; LPeg repetitions do not backtrack, so this
-- is linear where the equivalent Lua patterns are quadratic on long digit runs.
local DECIMAL = (function()
  local d = lpeg.R"09"
  return lpeg.S"+-"^-1 * (d^1 * (lpeg.P"." * d^0)^-1 + lpeg.P"." * d^1)
         * (lpeg.S"eE" * lpeg.S"+-"^-1 * d^1)^-1 * -1
end)()

local function parse_number(s)
  -- a mixed number: "137\frac{1}{2}" (MATH-500's "137 \frac{1}{2}") is 137.5, not 137 / 2
  local sign, whole, num, den = s:match("^([+-]?)(%d+)\\frac{(%d+)}{(%d+)}$")
  if whole and tonumber(num) < tonumber(den) then
    local x = tonumber(whole) + tonumber(num) / tonumber(den)
    return sign == "-" and -x or x
  end
  local pct = false
  if ends(s, "%") then pct, s = true, s:sub(1, -2) end
  s = replace(s, "{,}", ",")
  if s:find(",", 1, true) then
    local sign, head, groups, frac = s:match("^([+-]?)(%d%d?%d?)(,[%d,]*)(.*)$")
    if not groups or groups:gsub(",%d%d%d", "") ~= "" then return nil end
    s = sign .. head .. groups:gsub(",", "") .. frac
  end
  if not lpeg.match(DECIMAL, s) then return nil end
  local x = tonumber(s)
  if x and pct then x = x / 100 end
  if x and (x ~= x or math.abs(x) == math.huge) then return nil end   -- 1e400: not a number we can compare
  return x
end

local function close(a, b, abs_tol)
  if a == b then return true end
  if a ~= a or b ~= b or math.abs(a) == math.huge or math.abs(b) == math.huge then return false end
  local d = math.abs(a - b)
  return d <= REL_TOL * math.max(math.abs(a), math.abs(b)) or d <= (abs_tol or 0)
end

local function numbers_equal(p, r)
  return close(p, r) or close(p, r * 100) or close(p, r / 100)
end

-- ---------------------------------------------------------------- LaTeX expressions (LPeg)
-- AST nodes are arrays {op, ...}: {"num", x} {"var", name} {"neg", a} {"add"|"sub"|"mul"|
-- "div"|"pow", a, b} {"fn", name, a} {"fact", a} {"binom", n, k} {"root", n, a}
-- {"apply", letter, a} (an unknown function's value: "I(0)").

local P, R, S, V, C, Ct, Cc = lpeg.P, lpeg.R, lpeg.S, lpeg.V, lpeg.C, lpeg.Ct, lpeg.Cc

local GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta",
  "theta", "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau",
  "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi",
  "Pi", "Sigma", "Phi", "Psi", "Omega", "hbar", "ell"}
local FUNCS = {"arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos", "tan", "sec",
  "csc", "cot", "exp", "ln", "log"}
local INVERSE = {sin = "arcsin", cos = "arccos", tan = "arctan"}

-- Longest names first, so "\sinh" is not read as "\sin" "h".
local function command_choice(names)
  table.sort(names, function(a, b) return #a > #b or (#a == #b and a < b) end)
  local p = P(false)
  for _, n in ipairs(names) do p = p + P("\\" .. n) end
  return p
end

local function fold_left(t)
  local acc = t[1]
  for i = 2, #t, 2 do acc = {t[i], acc, t[i + 1]} end
  return acc
end

local function make_pow(base, ...)
  local n = select("#", ...)
  if n == 0 then return base end
  return {"pow", base, (...)}
end

local function make_fact(a, ...)
  for _ = 1, select("#", ...) do a = {"fact", a} end
  return a
end

-- floats, so that products and factorials past 2^63 do not wrap around
local function num(s) return {"num", tonumber((s:gsub("{,}", ""))) + 0.0} end

local digit, letter = R"09", R("az", "AZ")
local brace = P{ "{" * ((1 - S"{}") + V(1))^0 * "}" }
-- a subscript of digits is all of them, as a power's ("a_10" is a_{10}, as latex2sympy reads it;
-- it was a_1 * 0 = 0 before the twenty-ninth session); of letters, one ("x_ab" is x_a * b)
local subscript = P"_" * (brace + P"\\" * letter^1 + R("az", "AZ") + digit^1)
local number = (digit^1 * (P"{,}" * digit * digit * digit)^0 * (P"." * digit^0)^-1
               + P"." * digit^1) * (S"eE" * S"+-"^-1 * digit^1)^-1
local mulop = P"*" * Cc"mul" + P"\\cdot" * Cc"mul" + P"\\times" * Cc"mul"
              + P"/" * Cc"div" + P"\\div" * Cc"div"
local greek = command_choice(GREEK)
local fname = command_choice(FUNCS)

local function var_name(s) return {"var", (s:gsub("[{}]", ""))} end

local expr = P{ "Top",
  Top = V"Sum" * -1,
  Sum = Ct(V"Term" * (C(S"+-") / {["+"] = "add", ["-"] = "sub"} * V"Term")^0) / fold_left,
  Term = Ct(V"Unary" * (mulop * V"Unary" + Cc"mul" * V"Power")^0) / fold_left,
  Unary = P"-" * V"Unary" / function(a) return {"neg", a} end
        + P"+" * V"Unary"
        + V"Power",
  Power = V"Postfix" * (P"^" * V"Exponent")^-1 / make_pow,
  Exponent = P"-" * V"Exponent" / function(a) return {"neg", a} end
           + P"+" * V"Exponent"
           + V"Power",
  Postfix = V"Atom" * C"!"^0 / make_fact,
  Atom = C(number) / num
       + P"(" * V"Sum" * P")" + P"{" * V"Sum" * P"}" + P"[" * V"Sum" * P"]"
       + V"Frac" + V"Sqrt" + V"Binom" + V"Floor" + V"Abs" + V"Func" + V"Apply" + V"Const" + V"Var",
  Arg = P"{" * V"Sum" * P"}" + C(digit) / num + C(letter) / var_name,
  Frac = P"\\frac" * V"Arg" * V"Arg" / function(a, b) return {"div", a, b} end,
  Sqrt = P"\\sqrt" * (P"[" * V"Sum" * P"]" + Cc(false)) * V"Arg"
         / function(n, a) return n and {"root", n, a} or {"pow", a, {"num", 0.5}} end,
  Binom = P"\\binom" * V"Arg" * V"Arg" / function(n, k) return {"binom", n, k} end,
  Abs = P"\\lvert" * V"Sum" * P"\\rvert" / function(a) return {"fn", "abs", a} end,   -- mark_bars
  Floor = P"\\lfloor" * V"Sum" * P"\\rfloor" / function(a) return {"fn", "floor", a} end
        + P"\\lceil" * V"Sum" * P"\\rceil" / function(a) return {"fn", "ceil", a} end,
  Func = C(fname) * (P"_" * V"Arg" + Cc(false)) * (P"^" * V"Exponent" + Cc(false)) * V"FuncArg"
         / function(name, base, power, arg)
             local fn = name:sub(2)
             -- "\sin^{-1} x" is arcsin x, as latex2sympy reads it (not 1 / sin x)
             if power and INVERSE[fn] and power[1] == "neg" and power[2][1] == "num" and power[2][2] == 1 then
               fn, power = INVERSE[fn], false
             end
             local f = {"fn", fn, arg}
             if base then f = {"div", {"fn", "ln", arg}, {"fn", "ln", base}} end   -- \log_b x
             if power then f = {"pow", f, power} end                             -- \sin^2 x
             return f
           end,
  -- "(...)" alone (a power after it is the function's: "\sin(x)^2" is sin(x)^2); else the
  -- implicit product up to an operator or the next function: "\sin 2x" is sin(2x),
  -- "\sin x\cos x" sin(x) cos(x)
  FuncArg = #P"(" * V"Postfix" + Ct(V"Power" * (Cc"mul" * -fname * V"Power")^0) / fold_left,
  -- "I(0)", "f(x)", "V(t_0)": a letter (not e) applied to one number or variable is a function's
  -- value, as latex2sympy reads a letter before "(" (it gave I * 0 = 0 before the twenty-fourth
  -- session, so a minerva reference "I(0) e^{-t/RC}" equalled "0"); a sum in the parentheses
  -- stays a product: "x(x+1)", "n(n-1)"
  Apply = C(letter - P"e") * P"(" * (C(P"-"^-1 * number) / num + V"Var") * P")"
          / function(name, a) return {"apply", name, a} end,
  Const = P"\\pi" * Cc"pi" / function() return {"num", math.pi} end
        + P"\\infty" / function() return {"num", math.huge} end
        + P"e" / function() return {"num", math.exp(1)} end,
  Var = C((letter + greek) * subscript^-1) / var_name,
}

-- Bars "|" of an absolute value, as "\lvert" and "\rvert" for the grammar, or nil when they do
-- not pair. A bar opens where a term starts (at the start, after an operator, an opening
-- bracket or an opening bar) or where no bar of its bracket depth is open; else it closes the
-- open one: "2|1-x|", "||x|-5|", "|x||y|". A bar left open when its brackets close or the
-- answer ends pairs with none: set-builder "{x|x>0}" and "3|12" are no expressions. "\|" (a
-- norm) is none either.
local TERM_CMDS = {cdot = true, times = true, div = true, pm = true, mp = true}

local function mark_bars(s)
  if not s:find("|", 1, true) then return s end
  if s:find("\\|", 1, true) then return nil end
  local out, open, depth, pos, opened = {}, {}, 0, 1, nil   -- open: the depths of open bars
  for i = 1, #s do
    local b = s:byte(i)
    if OPEN[b] then depth = depth + 1
    elseif CLOSE[b] then
      if open[#open] == depth then return nil end
      depth = depth - 1
    elseif b == 124 then
      local starts_term = i == 1 or opened == i - 1 or s:sub(i - 1, i - 1):find("[-+*/^_,=<>]")
      if not starts_term then                          -- after "\cdot", "\times", ...
        local k = i - 1
        while k > 0 and s:sub(k, k):find("%a") do k = k - 1 end
        starts_term = k < i - 1 and s:byte(k) == 92 and TERM_CMDS[s:sub(k + 1, i - 1)]
      end
      out[#out + 1] = s:sub(pos, i - 1)
      if starts_term or open[#open] ~= depth then
        open[#open + 1], opened = depth, i
        out[#out + 1] = "\\lvert"
      else
        open[#open] = nil
        out[#out + 1] = "\\rvert"
      end
      pos = i + 1
    end
  end
  if #open > 0 then return nil end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

local function parse_expr(s)
  if s == "" or #s > MAX_LEN then return nil end
  s = mark_bars(s)
  if not s then return nil end
  local ok, tree = pcall(lpeg.match, expr, s)
  if ok then return tree end
  return nil
end

-- ---------------------------------------------------------------- evaluation

local BUDGET = {}   -- error sentinel: the comparison ran out of steps or time

local LANCZOS = {0.99999999999980993, 676.5203681218851, -1259.1392167224028,
  771.32342877765313, -176.61503916999185, 12.507343278686905, -0.13857109526572012,
  9.9843695780195716e-6, 1.5056327351493116e-7}

local function gamma(x)
  if x < 0.5 then return math.pi / (math.sin(math.pi * x) * gamma(1 - x)) end
  if x > 171.7 then return math.huge end
  x = x - 1
  local a, t = LANCZOS[1], x + 7.5
  for i = 1, 8 do a = a + LANCZOS[i + 1] / (x + i) end
  return math.sqrt(2 * math.pi) * t ^ (x + 0.5) * math.exp(-t) * a
end

local function factorial(x)
  if x == math.floor(x) and x >= 0 and x <= 170 then
    local r = 1.0
    for i = 2, x do r = r * i end
    return r
  end
  return gamma(x + 1)
end

local FN = {
  sin = math.sin, cos = math.cos, tan = math.tan, exp = math.exp, ln = math.log,
  log = math.log, floor = math.floor, ceil = math.ceil, abs = math.abs,
  arcsin = math.asin, arccos = math.acos, arctan = math.atan,
  sec = function(x) return 1 / math.cos(x) end,
  csc = function(x) return 1 / math.sin(x) end,
  cot = function(x) return math.cos(x) / math.sin(x) end,
  sinh = function(x) return (math.exp(x) - math.exp(-x)) / 2 end,
  cosh = function(x) return (math.exp(x) + math.exp(-x)) / 2 end,
  tanh = function(x) local a, b = math.exp(x), math.exp(-x); return (a - b) / (a + b) end,
}

-- The value of variable `name` at point k: a hash of the name and k (FNV-1a), mixed by
-- murmur3's finalizer, so every comparison sees the same values (deterministic), distinct per
-- name and per point. The mixing is not affine: an LCG over (hash + k c) gave two variables the
-- same difference at every point (x - y was 1.19477 at all six), so sqrt(x - a) and
-- sqrt(-a + x) were never defined and x equalled y + 1.1948 (twenty-second session).
local function var_value(name, k)
  local h = 2166136261
  local key = name .. "\0" .. k
  for i = 1, #key do h = ((h ~ key:byte(i)) * 16777619) & 0xffffffff end
  local x = h ~ (h >> 16)
  x = (x * 0x85ebca6b) & 0xffffffff
  x = x ~ (x >> 13)
  x = (x * 0xc2b2ae35) & 0xffffffff
  x = x ~ (x >> 16)
  local u = x / 4294967296
  if k <= NPOINTS then return 0.35 + 2.3 * u end
  if k <= 2 * NPOINTS then return 10 ^ (4 * u - 2) end   -- extra points: log-uniform in [0.01, 100]
  -- points for |x| (trees_equal): [0.35, 2.65] of either sign (the hash's low bit), all negative
  -- at the first, so that |x| is not x nor |x||y| xy
  if k == 2 * NPOINTS + 1 or x & 1 == 1 then return -(0.35 + 2.3 * u) end
  return 0.35 + 2.3 * u
end

local function evaluate(node, k, ctx)
  ctx.steps = ctx.steps - 1
  if ctx.steps <= 0 then error(BUDGET) end
  if ctx.steps % 2048 == 0 and os.clock() > ctx.deadline then error(BUDGET) end
  local op = node[1]
  if op == "num" then return node[2] end
  if op == "var" then
    local key = node[2] .. "\0" .. k
    local v = ctx.vars[key]
    if not v then v = var_value(node[2], k); ctx.vars[key] = v end
    return v
  end
  if op == "neg" then return -evaluate(node[2], k, ctx) end
  if op == "fn" then return FN[node[2]](evaluate(node[3], k, ctx)) end
  if op == "apply" then   -- an unknown function: a variable per argument value ("f(2)" is f(1+1)'s)
    return var_value(("%s(%.12g)"):format(node[2], evaluate(node[3], k, ctx)), k)
  end
  if op == "fact" then return factorial(evaluate(node[2], k, ctx)) end
  local a, b = evaluate(node[2], k, ctx), evaluate(node[3], k, ctx)
  if op == "add" or op == "sub" then
    -- the largest finite operand of a sum: what its rounding error scales with (trees_equal)
    local m = math.max(math.abs(a), math.abs(b))
    if m > ctx.scale and m < math.huge then ctx.scale = m end
    if op == "add" then return a + b end
    return a - b
  elseif op == "mul" then return a * b
  elseif op == "div" then return a / b
  elseif op == "pow" then return a ^ b
  elseif op == "binom" then return factorial(a) / (factorial(b) * factorial(a - b))
  elseif op == "root" then                      -- node = {"root", index, radicand}
    if b < 0 and a == math.floor(a) and a % 2 == 1 then return -((-b) ^ (1 / a)) end
    return b ^ (1 / a)
  end
  error("grade: unknown expression node " .. tostring(op))
end

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

-- Whether a tree holds one of the functions `names`. A step function (floor, ceil): two such
-- expressions can agree everywhere in [0.35, 2.65] and differ beyond (floor(log_2 n) and
-- floor(log_5 n) are both 0 on [1, 2)); abs: |x| and x agree at every positive point.
local STEP, ABS = {floor = true, ceil = true}, {abs = true}

local function has_fn(node, names)
  if node[1] == "fn" and names[node[2]] then return true end
  for i = 2, #node do
    if type(node[i]) == "table" and has_fn(node[i], names) then return true end
  end
  return false
end

-- Compare two expression trees at up to 2*NPOINTS points, stopping after NPOINTS points where
-- both are defined (with a step function on either side: at every point; with an absolute
-- value, then at 2*NPOINTS more where variables take either sign, var_value). sign_free: also
-- accept a = -b (equations). Points where both sides are undefined (a root of a negative,
-- arcsin out of range) are skipped; the first NPOINTS points draw variables from [0.35, 2.65],
-- the rest log-uniformly from [0.01, 100] so that expressions with small domains still get
-- defined points; at least one must be defined.
-- Values agree within the relative tolerance, or within 1e-12 times the largest operand of an
-- addition or subtraction on either side at that point: the rounding left by a cancellation
-- (sin^2 x + cos^2 x - 1 against 0). Sides without one compare relatively only, so tiny
-- constants keep their digits (2.9 x 10^-19 is not 2.88 x 10^-19, nor is 0).
local function trees_equal(ta, tb, ctx, sign_free)
  local same, flipped, defined = true, sign_free, 0
  local enough = (has_fn(ta, STEP) or has_fn(tb, STEP)) and 2 * NPOINTS or NPOINTS
  local function agree(a, b)
    local tol = 1e-12 * ctx.scale
    same = same and close(a, b, tol)
    flipped = flipped and close(a, -b, tol)
    return same or flipped
  end
  for k = 1, 2 * NPOINTS do
    if defined >= enough then break end
    ctx.scale = 0
    local a = evaluate(ta, k, ctx)
    local b = evaluate(tb, k, ctx)
    local fa, fb = finite(a), finite(b)
    if fa ~= fb then return false end
    if fa then
      defined = defined + 1
      if not agree(a, b) then return false end
    end
  end
  if defined == 0 then return false end
  if not (has_fn(ta, ABS) or has_fn(tb, ABS)) then return true end
  -- with |...| on either side, also 2*NPOINTS points where variables take either sign, under
  -- the same rules: "\ln|x|" is no "\ln x", defined where that is not
  for k = 2 * NPOINTS + 1, 4 * NPOINTS do
    ctx.scale = 0
    local a = evaluate(ta, k, ctx)
    local b = evaluate(tb, k, ctx)
    local fa, fb = finite(a), finite(b)
    if fa ~= fb then return false end
    if fa and not agree(a, b) then return false end
  end
  return true
end

-- ---------------------------------------------------------------- equivalence

local function lower(s) return s:lower() end

-- Structure of an answer: a matrix, a union of sets, a bracketed tuple / interval / set, or a
-- bare comma list. Returns kind, parts (a list; for a matrix, a list of rows), or nil. A number
-- ("2,251,252" reads as one with thousands separators) has none unless list_too.
local function structure(s, list_too)
  if not list_too and parse_number(s) then return nil end
  local inner = s:match("^\\begin{pmatrix}(.*)\\end{pmatrix}$")
  if inner then
    local rows = split_top(inner, "\\\\")
    if rows[#rows] == "" then rows[#rows] = nil end
    for i, row in ipairs(rows) do rows[i] = split_top(row, "&") end
    return "matrix", rows
  end
  local u = split_top(s, "\\cup")
  if #u > 1 then return "union", u end
  if wrapped(s) then
    local parts = split_top(s:sub(2, -2), ",")
    if #parts >= 2 then return "seq", parts end
    return nil
  end
  local parts = split_top(s, ",")
  if #parts >= 2 then return "seq", parts end
  return nil
end

local equiv

local function lists_equal(a, b, ctx)
  if #a ~= #b then return false end
  for i = 1, #a do
    if not equiv(grade.normalize(a[i]), grade.normalize(b[i]), ctx) then return false end
  end
  return true
end

local function structures_equal(ka, pa, kb, pb, ctx)
  if ka ~= kb then return false end
  if ka ~= "matrix" then return lists_equal(pa, pb, ctx) end
  if #pa ~= #pb then return false end
  for i = 1, #pa do
    if not lists_equal(pa[i], pb[i], ctx) then return false end
  end
  return true
end

local function equation_sides(s)
  local parts = split_top(s, "=")
  if #parts ~= 2 or parts[1] == "" or parts[2] == "" then return nil end
  local l, r = parse_expr(parts[1]), parse_expr(parts[2])
  if not (l and r) then return nil end
  return {"sub", l, r}
end

-- p and r are normalised. Steps of EVAL.md, first that decides.
function equiv(p, r, ctx)
  if p == r or lower(p) == lower(r) then return true end
  -- two words ("east", "Evelyn", "SRMC") are text, not products of one-letter variables (as
  -- products "north" and "thorn" were equal)
  if p:match("^%a%a+$") and r:match("^%a%a+$") then return false end
  if max_depth(p) > MAX_DEPTH or max_depth(r) > MAX_DEPTH then return false end
  local np, nr = parse_number(p), parse_number(r)
  if np and nr then return numbers_equal(np, nr) end
  local kp, pp = structure(p)
  local kr, pr = structure(r)
  -- against a tuple, "2,251,252" is the list it also reads as (EVAL.md's numeric step is for
  -- two numbers), element by element as text (of the normalised wholes, not normalised again:
  -- that reads "000" as 0): "1,000" is no (1,0), "5,600" no (5,6)
  if (kr and not kp and np) or (kp and not kr and nr) then
    if (kp or kr) ~= "seq" then return false end           -- a number is no matrix or union
    local _, lp = structure(p, true)
    local _, lr = structure(r, true)
    if not (lp and lr) or #lp ~= #lr then return false end
    for i = 1, #lp do
      if lp[i] ~= lr[i] then return false end
    end
    return true
  end
  if kp or kr then
    if not (kp and kr) then return false end
    return structures_equal(kp, pp, kr, pr, ctx)
  end
  local ep, er = equation_sides(p), equation_sides(r)
  if ep and er then return trees_equal(ep, er, ctx, true) end
  if ep or er then return false end
  -- a side that is a number is that number: "10,080" (thousands separators) has no expression
  -- parse, and 1.008 \times 10^{4} is it
  local tp, tr = np and {"num", np} or parse_expr(p), nr and {"num", nr} or parse_expr(r)
  if not (tp and tr) then return false end
  return trees_equal(tp, tr, ctx, false)
end

local function as_answer(x)
  if type(x) == "number" then
    if x ~= x or math.abs(x) == math.huge then return nil end   -- NaN and inf are no answers
    return number_text(x)
  end
  if type(x) == "string" then return x end
  return nil
end

function grade.equal(pred, ref, opts)
  local mode = mode_of(opts)
  pred, ref = as_answer(pred), as_answer(ref)
  if not (pred and ref) then return false end
  local p, r = grade.normalize(pred), grade.normalize(ref)
  if mode == "strict" then return p == r end
  if #p > MAX_LEN or #r > MAX_LEN then return p == r end
  local ctx = {steps = EVAL_STEPS, deadline = os.clock() + BUDGET_S, vars = {}}
  local ok, res = pcall(equiv, p, r, ctx)
  if ok then return res end
  if res == BUDGET then return false end
  error(res, 0)
end

-- ---------------------------------------------------------------- reference answers

local function last_boxed(text)
  if type(text) ~= "string" then return nil end
  return extract_strict(text)
end

local function field(record, name)
  local v = record[name]
  if type(v) == "number" then return number_text(v) end
  if type(v) == "string" then return v end
  return nil
end

local REFERENCE = {
  math500 = function(rec) return last_boxed(rec.solution) or field(rec, "answer") end,
  minerva_math = function(rec) return last_boxed(rec.solution) end,
  gsm8k = function(rec)
    local a = field(rec, "answer")
    local i = a and find_last(a, "####")
    return i and trim(a:sub(i + 4)) or nil
  end,
  olympiadbench = function(rec)
    local fa = rec.final_answer
    local a = type(fa) == "table" and fa[1] or fa
    if type(a) ~= "string" then return nil end
    return trim(replace(a, "$", ""))
  end,
  aime24 = function(rec) return field(rec, "answer") end,
  amc23 = function(rec) return field(rec, "answer") end,
}
grade.datasets = {"aime24", "amc23", "math500", "minerva_math", "olympiadbench", "gsm8k"}

-- The reference answer of one benchmark record (../shared/data/README.md), or nil when the
-- record lacks it.
function grade.reference(dataset, record)
  local f = REFERENCE[dataset]
  if not f then
    error("grade.reference: unknown dataset '" .. tostring(dataset) .. "' (known: "
          .. table.concat(grade.datasets, ", ") .. ")", 2)
  end
  if type(record) ~= "table" then
    error("grade.reference: record must be a table, got " .. type(record), 2)
  end
  return f(record)
end

return grade
