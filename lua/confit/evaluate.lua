-- confit.evaluate: the evaluation loop of ../shared/docs/EVAL.md over a list of problems.
--
--   local evaluate = require "confit.evaluate"
--   local summary, records = evaluate.run(model, bench.load("aime24"), {
--     mode = "qwen",            -- "qwen" | "strict": default template and grader (EVAL.md)
--     n = 16, temperature = 0.6, top_p = 0.95,   -- sampled decoding (n = 0: none)
--     greedy = true,            -- one greedy completion per problem (acc)
--     out_dir = "runs/eval-aime24", benchmark = "aime24"})
--   print(evaluate.format_table({summary}))
--
-- problems[i] = {id, question, answer} (bench.load's items), or a toy question {prompt, answer}
-- (world:questions), read as {id = i (unless it has an id), question = prompt, answer =
-- tostring(answer)}, its other fields kept (what a template function sees). Options:
--   mode            "qwen" (default) or "strict"
--   template        chat template name (confit.chat) or function(question, problem) -> prompt;
--                   default evaluate.default_template(mode, model): the mode's prompt in the
--                   model folder's chat format ("qwen25-math-cot" / "strict" for ChatML models
--                   and when the format is unknown, "llama3-math-cot" / "strict-llama3" for
--                   Llama 3.0, "llama31-math-cot" / "strict-llama31" for Llama 3.1 and later)
--   grader          "qwen" | "strict" | "toy" or a table {name, extract(text) -> answer|nil,
--                   equal(pred, ref) -> bool, key(answer) -> string}; default: the mode's. A
--                   table's name and the digest of its functions' code are kept for resume;
--                   a table without a name grades a fresh run only (its records are not resumed)
--   greedy          run greedy decoding (default true)
--   n               samples per problem (default 0); temperature (0.6), top_p (0.95), top_k (0)
--   max_new_tokens  default 3072
--   stop            stop token ids; default the tokenizer's end-of-turn and end-of-text special
--                   tokens (tok.eos_ids: <|im_end|> and <|endoftext|>, ids 151645 and 151643
--                   for Qwen; <|eot_id|> and <|end_of_text|> for Llama 3), besides the config's
--                   eos_token_id
--   seed            default 0; batch_size problems per generate call (default 8)
--   benchmark       name written into every record and the summary (default "custom")
--   out_dir         write <out_dir>/eval_<stage>.jsonl (one record per problem, docs/RUNDIR.md),
--                   eval_<stage>.settings.json, and merge the summary into summary.json
--   stage           "before" (default) or "after": which eval file and summary slot
--   summary_file    false: do not touch summary.json (a recipe that writes its own)
--   resume          default true: problems already in the eval file are not generated again
--                   (refused when the eval file's settings file is missing or unreadable, when
--                   the settings or the model differ, when a record's question or answer is
--                   not the data's now, when its prompt_digest is not the digest of the prompt
--                   the template gives now, or with a grader table without a name)
--   generate        function(prompts, gen_opts) -> samples, replacing model:generate (tests,
--                   servers); model may then be nil
--   model_dir       the model folder whose chat format picks the default template and whose
--                   identity (absolute path; size and modification time of config.json and
--                   *.safetensors) is kept with the records for resume (default model.dir)
--   device, dtype   where and in which precision the model computes, kept for resume likewise
--                   (default model:device(); dtype is "f32" on the CPU whatever is given)
--   rescore         sampled completions' logprob at temperature 1 (RUNDIR.md): default true
--                   when sampling at T ~= 1 with a real model (on the CPU from the sampler's
--                   own logits, score_temperature; on the GPU one extra forward pass)
--   progress        options for confit.progress (e.g. {mode = "off"}); false = none
--   config          with out_dir and a summary file: the run's config, kept in summary.json
-- Any other option is refused, naming it and the options.
--
-- Invariants:
--  * Sampled decoding draws from seed * 1000003 + (position of the batch's first problem in
--    the full list), and batches are fixed slices of the list (batch_size is part of what a
--    resume must share). A batch that lacks any record is generated again whole, and only its
--    missing records are appended, so a resumed run gets the samples (and the greedy results,
--    whose float sums depend on the batch's make-up) of an uninterrupted one.
--  * Records are appended batch by batch; on resume a torn last line is dropped (the file is
--    cut short in place before anything is appended), and a file written with different
--    decoding settings or by another model, device or dtype (or whose settings file is lost, or
--    does not name the model) is refused rather than mixed, as is a record whose question or
--    answer the data file has changed since, or whose prompt_digest (the FNV-1a digest of its
--    templated prompt) is not the prompt's the template gives now (a template function is kept
--    as "custom": its prompts show whether it changed).
--  * Summaries are computed from the records alone (resumed and new alike), so re-running on a
--    finished directory reproduces the same summary without generating anything.
local chat = require "confit.chat"
local grade = require "confit.grade"
local jsonio = require "confit.jsonio"
local metrics = require "confit.metrics"

local evaluate = {}

evaluate.KS = {1, 2, 4, 8, 16}
evaluate.STOP_TOKENS = {"<|im_end|>", "<|endoftext|>"}

-- The mode's template for a model (a confit.model with .dir, or a folder path): the prompt in
-- the model's chat format (confit.chat.family), ChatML when that is unknown or there is no model.
-- (the name, or nil and why none can be chosen; evaluate.settings raises it at its caller's caller)
local function default_template(mode, model)
  local dir = type(model) == "string" and model or (type(model) == "table" and model.dir) or nil
  local family, why, broken
  if dir then family, why, broken = chat.family(dir) end
  -- a broken tokenizer_config.json is no reason to take ChatML for a Llama folder without a word
  if broken then return nil, "cannot choose the model's chat template: " .. tostring(why) end
  return chat.default_template(mode, family)
end

function evaluate.default_template(mode, model)
  local t, why = default_template(mode, model)
  if not t then error("evaluate: " .. why, 2) end
  return t
end

local NULL = jsonio.null

local function fail(msg, level) error("evaluate: " .. msg, (level or 1) + 1) end

local function is_null(v) return v == nil or v == NULL end

-- v for a message: a string quoted (n = "2" is no number 2), a NaN "nan", anything else as tostring
local show = require("confit.cli").show

-- problems as the loop reads them: a toy question {prompt, answer} (world:questions) becomes
-- {id = i, question = prompt, answer = tostring(answer)} (the other fields copied), anything
-- else stays as it is
local function as_problems(problems)
  local out = {}
  for i, p in ipairs(problems) do
    if type(p) == "table" and p.question == nil and type(p.prompt) == "string" then
      local q = {}
      for k, v in pairs(p) do q[k] = v end
      q.question = p.prompt
      if q.id == nil then q.id = i end
      if type(q.answer) == "number" then q.answer = tostring(q.answer) end
      p = q
    end
    out[i] = p
  end
  return out
end

-- What is wrong with a list of problems, as evaluate.run would say it, or nil and the list with
-- toy questions read as problems (as_problems).
local function list_problem(problems)
  local count = 0
  for k in pairs(problems) do
    if math.type(k) ~= "integer" or k < 1 then return "problems must be a list (keys 1..n), got the key " .. tostring(k) end
    count = math.max(count, k)
  end
  for i = 1, count do
    if problems[i] == nil then return string.format("problems has a hole: no problem %d (of %d)", i, count) end
  end
  -- an empty list gave a summary with n = 0 and no acc, read as a result
  if count == 0 then return "problems is empty: nothing to evaluate" end
  problems = as_problems(problems)
  local keys = {}
  for i, p in ipairs(problems) do
    if type(p) ~= "table" then
      return string.format("problem %d must be a table {id=, question=, answer=}, got %s", i, type(p))
    end
    if p.question == nil and p.prompt ~= nil then   -- a toy question whose prompt is not text
      return string.format("problem %d: a toy question's prompt must be text (evaluate builds each prompt from a "
                           .. "template around it), got %s", i, type(p.prompt) == "table"
                           and ("a table of %d values (token ids? give the text)"):format(#p.prompt) or type(p.prompt))
    end
    if type(p.question) ~= "string" then
      return string.format("problem %d needs a question string (the field question, or a toy question's prompt), got question = %s",
                           i, p.question == nil and "nil" or type(p.question))
    end
    if p.answer == nil then return string.format("problem %d has no answer (the field answer)", i) end
    -- (as bench.load) a boolean answer was the text "false" to the toy grader and no answer to
    -- the others
    if type(p.answer) ~= "string" and type(p.answer) ~= "number" then
      return string.format("problem %d: the answer must be text or a number, got %s", i, type(p.answer))
    end
    if p.id == nil then return string.format("problem %d has no id (the field id)", i) end
    -- ids are written to the records and read back on resume: a string or a finite number
    if type(p.id) ~= "string" and not (type(p.id) == "number" and p.id == p.id and math.abs(p.id) < math.huge) then
      return string.format("problem %d: the id must be a string or a finite number, got %s", i, show(p.id))
    end
    if not p.question:find("%S") then return string.format("problem %d (id %s): the question is empty", i, tostring(p.id)) end
    local k = tostring(p.id)
    if keys[k] then return string.format("problems %d and %d share the id %s", keys[k], i, k) end
    keys[k] = i
  end
  return nil, problems
end

-- Graders ---------------------------------------------------------------------------------------

local function math_grader(mode)
  local o = {mode = mode}
  return {
    name = mode,
    extract = function(text) return grade.extract(text, o) end,
    equal = function(p, r) return grade.equal(p, r, o) end,
    key = function(a) return grade.normalize(a, o) end,
  }
end

local function toy_int(s)
  if type(s) == "number" then return math.tointeger(s) end
  if type(s) ~= "string" then return nil end
  local t = s:match("^%s*([%+%-]?%d+)%s*$")
  return t and math.tointeger(tonumber(t))
end

evaluate.graders = {
  qwen = math_grader("qwen"),
  strict = math_grader("strict"),
  -- the toy world (confit.toy.grade): the last \boxed{}, integers compared as integers
  toy = {
    name = "toy",
    extract = function(text) return require("confit.toy").extract_boxed(text) end,
    equal = function(p, r)
      local a, b = toy_int(p), toy_int(r)
      if a ~= nil and b ~= nil then return a == b end
      return p == tostring(r)
    end,
    key = function(a) local v = toy_int(a); return v and tostring(v) or a end,
  },
}

-- FNV-1a (64 bits) of the string s as 16 hex digits: a fingerprint that resume compares (a
-- changed prompt or grader code), not a cryptographic hash
local function digest(s)
  local h = 0xcbf29ce484222325
  for i = 1, #s do h = (h ~ s:byte(i)) * 0x100000001b3 end
  return string.format("%016x", h)
end

-- The text of Lua function f's definition (its lines in the file or the chunk it came from), or
-- nil: where it stands in the file does not count (string.dump's bytecode held the line numbers,
-- so a comment added above an unchanged grader refused its resume)
local function source_text(f)
  local info = debug.getinfo(f, "S")
  if not info or info.what ~= "Lua" or info.linedefined < 1 then return nil end
  local src = info.source
  local text
  if src:sub(1, 1) == "@" then
    local h = io.open(src:sub(2), "rb")
    if not h then return nil end
    text = h:read("a")
    h:close()
  elseif src:sub(1, 1) ~= "=" then
    text = src
  end
  if not text then return nil end
  local lines, n = {}, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if n >= info.linedefined then lines[#lines + 1] = line end
    if n >= info.lastlinedefined then break end
  end
  return table.concat(lines, "\n")
end

-- The fingerprint of a grader table's code: the text of its functions' definitions, else their
-- bytecode (string.dump, stripped). A C function, or what a function reads through its upvalues,
-- does not show in it: the grader's name stands for those.
local function code_digest(g)
  local parts = {}
  for i, k in ipairs({"extract", "equal", "key"}) do
    local f = g[k]
    local ok, code = pcall(string.dump, f, true)
    parts[i] = f == nil and "-" or (type(f) == "function" and source_text(f)) or ok and code or "C"
  end
  return digest(table.concat(parts, "\0"))
end

local function resolve_grader(g, mode)
  if g == nil then return evaluate.graders[mode] end
  if type(g) == "string" then
    local r = evaluate.graders[g]
    if not r then fail(string.format("unknown grader %q (known: qwen, strict, toy)", g), 4) end
    return r
  end
  for _, r in pairs(evaluate.graders) do if g == r then return r end end
  if type(g) ~= "table" or type(g.extract) ~= "function" or type(g.equal) ~= "function" then
    fail("grader must be a name or a table with extract and equal functions", 4)
  end
  if g.key ~= nil and type(g.key) ~= "function" then fail("grader.key must be a function, got " .. type(g.key), 4) end
  if g.name ~= nil and (type(g.name) ~= "string" or g.name == "") then
    fail("grader.name must be a non-empty string, got " .. show(g.name), 4)
  end
  return {name = g.name or "custom", named = g.name ~= nil, code = code_digest(g), extract = g.extract,
          equal = g.equal, key = g.key or function(a) return a end}
end

-- Whether a completion contains a box (EVAL.md's "box rate").
function evaluate.has_box(text) return text:find("\\boxed", 1, true) ~= nil end

-- Grade one completion: {completion, extracted, correct, boxed}.
function evaluate.grade_completion(grader, text, answer)
  local extracted = grader.extract(text)
  local correct = extracted ~= nil and grader.equal(extracted, answer) == true
  return {completion = text, extracted = extracted == nil and NULL or extracted,
          correct = correct, boxed = evaluate.has_box(text)}
end

-- Answer diversity of one problem's samples (collapse shows as fewer distinct answers): the
-- number of distinct extracted answers, grouped as maj@n groups them (grader.key, then the keys
-- whose answers grader.equal calls equal: "0.5" and "\\frac{1}{2}" are one), and the
-- share of the samples giving the most frequent one. Samples without an answer are no answer
-- (counted in the share's denominator only). Returns distinct, modal_share (0, 0 when none).
function evaluate.answer_spread(samples, grader)
  local key = grader and grader.key or function(a) return a end
  local answers = {n = #samples}
  for i, x in ipairs(samples) do
    local a = type(x) == "table" and x.extracted
    if a ~= nil and a ~= false and not is_null(a) then answers[i] = a end
  end
  local groups = metrics.vote_groups(answers, {key = function(a) local k = key(a); if k == nil then k = a end; return k end,
                                               equal = grader and grader.equal})
  local top = 0
  for _, g in ipairs(groups) do if g.count > top then top = g.count end end
  return #groups, #samples > 0 and top / #samples or 0
end

-- nil, or why template t (a name) cannot be written with tokenizer tok: a marker of it that is
-- no special token of tok (it would be spelled out in ordinary tokens)
local function marker_problem(t, tok)
  local mark = type(t) == "string" and chat.missing_marker(t, tok)
  if not mark then return nil end
  return ("template %q writes %s, which is no special token of the model's tokenizer (%s): pass a template "
          .. "of the model's chat format (confit.chat), or plain"):format(t, mark, tostring(tok.path))
end

-- Options ---------------------------------------------------------------------------------------

local function check_int(v, name, lo)
  if math.type(v) ~= "integer" or v < lo then
    fail(string.format("%s must be an integer >= %d, got %s", name, lo, show(v)), 4)
  end
end

-- (without hi: a finite number >= lo, generate's rule for the temperature; "a number in [0, inf]"
-- let inf pass here, for generate to refuse it after the checks)
local function check_num(v, name, lo, hi)
  if type(v) ~= "number" or v ~= v or v < lo or (hi and v > hi) or (not hi and v == math.huge) then
    if not hi then fail(string.format("%s must be a finite number >= %s, got %s", name, tostring(lo), show(v)), 4) end
    fail(string.format("%s must be a number in [%s, %s], got %s", name, tostring(lo), tostring(hi), show(v)), 4)
  end
end

-- Options with defaults applied and checked; model (optional): whose folder's chat format picks
-- the default template when opts gives neither template nor model_dir. Its errors name the line
-- that called evaluate.run, check_resume or check_prompts (fail(..., 3); check_int and check_num
-- one level deeper), not a line of this file.
-- the options evaluate.run, check_resume and check_prompts read (the header lists them); another
-- key is refused: a misspelt one (max_new_token) was dropped without a word before the
-- twenty-second session
local OPTION_NAMES = {"mode", "template", "grader", "greedy", "n", "temperature", "top_p", "top_k", "max_new_tokens",
                      "stop", "seed", "batch_size", "benchmark", "out_dir", "stage", "summary_file", "resume",
                      "generate", "model_dir", "device", "dtype", "rescore", "progress", "config"}
local KNOWN_OPTION = {}
for _, k in ipairs(OPTION_NAMES) do KNOWN_OPTION[k] = true end

-- (its errors name the line that called its caller: evaluate.run's, or evaluate.settings')
local function settings(opts, model)
  opts = opts or {}
  if type(opts) ~= "table" then fail("opts must be a table", 3) end
  for k in pairs(opts) do
    if not KNOWN_OPTION[k] then
      local names = {table.unpack(OPTION_NAMES)}
      table.sort(names)
      fail(("unknown option %s (options: %s)"):format(tostring(k), table.concat(names, ", ")), 3)
    end
  end
  local s = {}
  s.mode = opts.mode or "qwen"
  if s.mode ~= "qwen" and s.mode ~= "strict" then
    fail(string.format("mode must be \"qwen\" or \"strict\", got %q", tostring(s.mode)), 3)
  end
  s.greedy = opts.greedy ~= false
  s.n = opts.n or 0
  s.temperature = opts.temperature or 0.6
  s.top_p = opts.top_p or 0.95
  s.top_k = opts.top_k or 0
  s.max_new_tokens = opts.max_new_tokens or 3072
  s.seed = opts.seed or 0
  s.batch_size = opts.batch_size or 8
  s.stage = opts.stage or "before"
  s.benchmark = opts.benchmark or "custom"
  check_int(s.n, "n", 0)
  check_num(s.temperature, "temperature", 0)
  check_num(s.top_p, "top_p", 0, 1)
  check_int(s.top_k, "top_k", 0)
  check_int(s.max_new_tokens, "max_new_tokens", 1)
  check_int(s.seed, "seed", 0)
  check_int(s.batch_size, "batch_size", 1)
  if s.n > 0 and s.temperature == 0 then
    fail("sampled decoding (n > 0) needs temperature > 0; greedy is the separate greedy option", 3)
  end
  if s.n == 0 and not s.greedy then fail("nothing to do: greedy is off and n = 0", 3) end
  if s.stage ~= "before" and s.stage ~= "after" then
    fail("stage must be \"before\" or \"after\", got " .. tostring(s.stage), 3)
  end
  if type(s.benchmark) ~= "string" or s.benchmark == "" then fail("benchmark must be a name", 3) end
  local t = opts.template
  if not t then
    local why
    t, why = default_template(s.mode, opts.model_dir or model)
    if not t then fail(why, 3) end
  end
  if type(t) == "string" then
    if not chat.templates[t] then
      local names = {}
      for k in pairs(chat.templates) do names[#names + 1] = k end
      table.sort(names)
      fail(string.format("unknown template %q (known: %s)", t, table.concat(names, ", ")), 3)
    end
    -- a template whose markers the model's tokenizer lacks as special tokens would spell
    -- <|im_start|> out in ordinary tokens: every prompt wrong, without a word
    local bad = marker_problem(t, type(model) == "table" and model.tokenizer or nil)
    if bad then fail(bad, 3) end
    s.template = t
    s.apply_template = function(q) return chat.apply(t, q) end
  elseif type(t) == "function" then
    s.template = "custom"
    s.apply_template = t
  else
    fail("template must be a name or a function", 3)
  end
  s.grader = resolve_grader(opts.grader, s.mode)
  s.out_dir = opts.out_dir
  s.summary_file = opts.summary_file
  if s.summary_file == nil then s.summary_file = "summary.json" end
  s.resume = opts.resume ~= false
  s.stop = opts.stop
  s.rescore = opts.rescore
  s.progress = opts.progress
  s.model_dir = opts.model_dir or (type(model) == "table" and model.dir) or nil
  s.device = opts.device
  if s.device == nil and type(model) == "table" and type(model.device) == "function" then
    s.device = model:device()
  end
  s.dtype = s.device == "cpu" and "f32" or opts.dtype     -- the CPU computes in f32
  return s
end

-- Not a tail call: the wrapper is the frame evaluate.run is for the internal calls, so an error
-- names the line that called evaluate.settings.
function evaluate.settings(opts, model)
  local s = settings(opts, model)
  return s
end

-- Filesystem ------------------------------------------------------------------------------------

local shell_quote = require("confit.cli").shell_quote

--- The identity of model folder dir: its absolute path (symbolic links resolved; dir itself when
--- it cannot be entered) and "name size mtime" of its config.json and *.safetensors (links
--- followed), which change when the weights are rewritten without reading them.
function evaluate.model_identity(dir)
  local p = io.popen("cd -- " .. shell_quote(dir) .. " 2>/dev/null && pwd -P && "
                     .. "stat -L -c '%n %s %.9Y' -- config.json *.safetensors 2>/dev/null")
  local lines = {}
  if p then
    for line in p:lines() do lines[#lines + 1] = line end
    p:close()
  end
  local path = table.remove(lines, 1) or dir
  return path, table.concat(lines, ", ")
end

-- The settings that must agree for resumed records to be mixed with new ones.
local function identity(s)
  local id = {benchmark = s.benchmark, mode = s.mode, grader = s.grader.name, grader_code = s.grader.code,
              template = s.template, greedy = s.greedy, n = s.n,
              max_new_tokens = s.max_new_tokens, seed = s.seed, device = s.device, dtype = s.dtype,
              batch_size = s.batch_size}
  if s.n > 0 then id.temperature, id.top_p, id.top_k = s.temperature, s.top_p, s.top_k end
  -- with both, top_p counts among the top_k ids since the eighteenth session (the whole
  -- vocabulary before): records sampled the old way lack the key, and are not mixed in
  if s.n > 0 and s.top_k > 0 and s.top_p < 1 then id.top_p_among_top_k = true end
  if s.model_dir then id.model, id.model_files = evaluate.model_identity(s.model_dir) end
  return id
end

local file_exists = require("confit.cli").can_read

-- true, or nil and a one-line message when dir cannot be made
evaluate.mkdir_p = require("confit.cli").make_dir

local START_OVER = "use another output directory, or start over (eval.lua --no-resume; opts.resume = false)"

-- nil, or why the records in path (written with the settings in settings_path) cannot be
-- resumed with the settings ident under grader. Records whose settings file is missing or
-- unreadable are not resumed: nothing would say how they were made; nor are records graded by a
-- grader table without a name: its code does not show everything it depends on.
local function resume_conflict(path, ident, settings_path, grader)
  if not jsonio.has_content(path) then return nil end
  if grader.code and not grader.named then
    return string.format("cannot resume %s with a grader table that has no name: resume compares a grader's "
                         .. "name and the code of its functions, which does not show a C function or what "
                         .. "they read through upvalues; give it a name (grader.name, a new one whenever it "
                         .. "grades otherwise) and %s", path, START_OVER)
  end
  -- (a FIFO there is no missing file: read_json refuses it by name without opening it)
  local prev, err
  local there = require("confit.cli").exists(settings_path)
  if there then prev, err = jsonio.read_json(settings_path) end
  if type(prev) ~= "table" then
    local why = not there and "is missing"
      or ("cannot be read (" .. tostring(err or "not a JSON object") .. ")")
    return string.format("cannot resume %s: its settings file %s %s; %s", path, settings_path,
                         why, START_OVER)
  end
  if ident.model ~= nil and prev.model == nil then
    return string.format("cannot resume %s: its settings file %s does not name the model that "
                         .. "wrote it (written by an older confit); %s", path, settings_path, START_OVER)
  end
  local diffs = {}
  local keys = {}
  for k in pairs(ident) do keys[#keys + 1] = k end
  for k in pairs(prev) do if ident[k] == nil then keys[#keys + 1] = k end end
  table.sort(keys)
  local seen = {}
  for _, k in ipairs(keys) do
    if not seen[k] and prev[k] ~= ident[k] then
      local function shown(v) if v == nil then return "not set" end return tostring(v) end
      diffs[#diffs + 1] = string.format("%s: %s then, %s now", k, shown(prev[k]), shown(ident[k]))
    end
    seen[k] = true
  end
  if #diffs == 0 then return nil end
  return string.format("%s was written with other settings (%s); %s", path,
                        table.concat(diffs, "; "), START_OVER)
end

-- JSON text as written back (invalid UTF-8 repaired, as confit.jsonio writes it).
local function as_written(v)
  v = tostring(v)
  return utf8.len(v) and v or jsonio.fix_utf8(v)
end

-- nil, or what is wrong with one completion of a record (what: "greedy", "samples[2]") as
-- completion_record writes it and summarize reads it
local function completion_problem(x, what)
  if type(x) ~= "table" then return what .. " must be an object, got " .. type(x) end
  local function kind(v) return v == nil and "nothing" or is_null(v) and "null" or type(v) end
  if type(x.completion) ~= "string" then return what .. ".completion must be a string, got " .. kind(x.completion) end
  if not (is_null(x.extracted) or type(x.extracted) == "string") then
    return what .. ".extracted must be a string or null, got " .. kind(x.extracted)
  end
  for _, k in ipairs({"correct", "boxed"}) do
    if type(x[k]) ~= "boolean" then return ("%s.%s must be a boolean, got %s"):format(what, k, kind(x[k])) end
  end
  if x.finished ~= nil and type(x.finished) ~= "boolean" then
    return what .. ".finished must be a boolean, got " .. kind(x.finished)
  end
  if not (type(x.length) == "number" and math.tointeger(x.length) and x.length >= 0) then
    return what .. ".length must be an integer >= 0, got " .. show(x.length)
  end
  if not (is_null(x.logprob) or type(x.logprob) == "number") then
    return what .. ".logprob must be a number or null, got " .. kind(x.logprob)
  end
end

-- nil, or what is wrong with a record resumed under settings s: the greedy completion when s
-- asks for one, exactly s.n samples, each as completion_problem wants it
local function record_problem(r, s)
  if s.greedy then
    local why = completion_problem(r.greedy, "greedy")
    if why then return why end
  end
  local smp = r.samples
  local n = type(smp) == "table" and #smp or nil
  if s.n > 0 and n ~= s.n then
    return ("samples must be a list of %d completions, got %s"):format(s.n, n and n .. " entries" or type(smp))
  end
  for j = 1, s.n do
    local why = completion_problem(smp[j], ("samples[%d]"):format(j))
    if why then return why end
  end
end

-- nil, or why a record r of problem p was written from another prompt than settings s give now:
-- its prompt_digest against the template's prompt (a template function that changed). A record
-- without one (written before confit recorded it) stands only under a template name.
local function prompt_problem(r, p, s)
  local text = s.apply_template(p.question, p)
  if type(text) ~= "string" then return nil end   -- run_batch names a template that gives no string
  local now = digest(text)
  if r.prompt_digest == now then return nil end
  if r.prompt_digest == nil then
    if s.template ~= "custom" then return nil end
    return "has no prompt_digest (written before confit recorded it), so nothing shows that the template "
           .. "function gives its prompt now"
  end
  return ("was written from another prompt than %s gives now (prompt_digest %s then, %s now)")
         :format(s.template == "custom" and "the template function" or "template " .. s.template,
                 tostring(r.prompt_digest), now)
end

-- nil, or why the records of path (recs) cannot stand for problems: a record is resumed only
-- when its question and answer are the data's now (an edited data file is not graded with the
-- old answers) and, with settings s, when its prompt is the template's now (prompt_problem) and
-- it is whole (record_problem)
local function data_conflict(path, recs, problems, s)
  local by_id = {}
  for _, r in ipairs(recs) do
    if type(r) == "table" and r.id ~= nil then by_id[tostring(r.id)] = r end
  end
  for _, p in ipairs(problems) do
    local r = by_id[tostring(p.id)]
    if r then
      local what = r.question ~= as_written(p.question) and "question"
        or r.answer ~= as_written(p.answer) and "answer" or nil
      if what then
        return string.format("%s holds problem %s with another %s than the data now; %s", path,
                             tostring(p.id), what, START_OVER)
      end
      local why = s and prompt_problem(r, p, s)
      if why then
        return string.format("%s holds problem %s, which %s; %s", path, tostring(p.id), why, START_OVER)
      end
      why = s and record_problem(r, s)
      if why then
        return string.format("%s holds a damaged record of problem %s (%s): remove its line to evaluate it again; %s",
                             path, tostring(p.id), why, START_OVER)
      end
    end
  end
end

--- Before anything is written: nil, or why evaluate.run(model, problems, opts) would refuse to
--- resume what opts.out_dir holds (records written with other settings, or without a readable
--- settings file; with problems given, also records whose question or answer the data changed).
-- after a records file's unreadable line: what to do (a damaged record's message says as much)
local UNREADABLE_WAY_OUT = " (remove that line to evaluate its problem again, or give --no-resume or another --out)"
-- the message for records file path that read_jsonl could not read (err): the way out above when
-- err names a line of it, else the file's own (a folder in its place, no permission: "remove that
-- line" fitted nothing, before the twenty-second session)
local function unreadable(path, err)
  local e = tostring(err)
  local names_line = e:sub(1, #path + 1) == path .. ":" and e:sub(#path + 2):match("^%d+:") ~= nil
  return "cannot resume from " .. e .. (names_line and UNREADABLE_WAY_OUT or " (give --no-resume or another --out)")
end

function evaluate.check_resume(opts, problems)
  local s = settings(opts)
  if not s.out_dir or not s.resume then return nil end
  local path = s.out_dir .. "/eval_" .. s.stage .. ".jsonl"
  local conflict = resume_conflict(path, identity(s),
                                   s.out_dir .. "/eval_" .. s.stage .. ".settings.json", s.grader)
  if conflict or not problems or not file_exists(path) then return conflict end
  local recs, err = jsonio.read_jsonl(path, {partial_tail = true})
  if not recs then return unreadable(path, err) end
  return data_conflict(path, recs, problems, s)
end

-- Resume: the records already in path (keyed by tostring(id)), after dropping a torn tail.
local function load_done(path, ident, settings_path, problems, s)
  local done = {}
  if not file_exists(path) then return done end
  local conflict = resume_conflict(path, ident, settings_path, s.grader)
  if conflict then fail(conflict, 3) end
  local recs, err = jsonio.read_jsonl(path, {partial_tail = true})
  if not recs then fail(unreadable(path, err), 3) end
  conflict = data_conflict(path, recs, problems, s)
  if conflict then fail(conflict, 3) end
  local f = io.open(path, "rb")
  local text = f:read("a")
  f:close()
  local lines = 0
  for line in text:gmatch("[^\n]+") do if line:find("%S") then lines = lines + 1 end end
  if lines ~= #recs then
    -- a torn last line (read_jsonl drops one only after the last newline) is cut off in place:
    -- no copy of the file, so no free space is needed
    local ok, terr = require("confit").truncate(path, (text:match(".*\n()") or 1) - 1)
    if not ok then fail("cannot cut the torn last line off " .. path .. ": " .. tostring(terr), 3) end
  elseif #text > 0 and text:sub(-1) ~= "\n" then
    -- a whole last record without its newline gets it before the next one is appended
    local f, werr = io.open(path, "ab")
    local ok = false
    if f then
      ok, werr = f:write("\n")
      local closed, cerr = f:close()
      if ok then ok, werr = closed, cerr end
    end
    if ok then ok, werr = jsonio.sync(path) end
    if not ok then fail("cannot end the last line of " .. path .. ": " .. tostring(werr), 3) end
  end
  for _, r in ipairs(recs) do
    if type(r) == "table" and r.id ~= nil then done[tostring(r.id)] = r end
  end
  return done
end

-- Generation ------------------------------------------------------------------------------------

local function stop_ids(model, s)
  if s.stop then return s.stop end
  local ids = {}
  local tok = model and model.tokenizer
  if tok and type(tok.eos_ids) == "table" and #tok.eos_ids > 0 then
    for i, id in ipairs(tok.eos_ids) do ids[i] = id end
  elseif tok and tok.token_to_id then
    for _, name in ipairs(evaluate.STOP_TOKENS) do
      local id = tok:token_to_id(name)
      if id then ids[#ids + 1] = id end
    end
  end
  return ids
end

-- Ids the tokenizer can decode. A model's embedding table is often padded past the
-- tokenizer's vocabulary (the toy model: 264 rows for 257 tokens; Qwen: 151936 for 151669), and
-- a sampled padding id must not stop an evaluation: such ids decode to nothing.
local function decodable(tok, cache, id)
  local v = cache[id]
  if v == nil then
    v = tok:id_to_token(id) ~= nil
    cache[id] = v
  end
  return v
end

local function completion_text(model, smp, injected, cache)
  local tok = not injected and model and model.tokenizer
  if tok and smp.tokens then
    local toks, n = {}, #smp.tokens
    if smp.finish == "stop" and n > 0 then n = n - 1 end
    for i = 1, n do
      local id = smp.tokens[i]
      if decodable(tok, cache, id) then toks[#toks + 1] = id end
    end
    return tok:decode(toks, {skip_special = true})
  end
  if type(smp.text) ~= "string" then fail("generate returned a sample without text", 5) end
  return smp.text
end

local function sample_length(smp)
  if type(smp.tokens) == "table" then return #smp.tokens end
  if math.type(smp.length) == "integer" then return smp.length end
  fail("generate returned a sample without tokens or length", 5)
end

-- Log-probs at temperature 1 of completions sampled at another temperature (RUNDIR.md).
-- items[k] = {prompt ids, completion ids}; rows are scored `batch` at a time, in order of
-- length (prompt + completion; ties in item order), so that each call pads its rows to about
-- their own length instead of to the longest sample beside them. A row's log-prob is the same up
-- to float rounding (the last bits of the BLAS products depend on the call's shape, in any
-- order); the order depends only on the items, so a resumed batch is scored as an uninterrupted
-- one was.
local function rescore(model, items, batch)
  local confit = require "confit"
  local mpad = require("confit.model").pad
  local order = {}
  for k = 1, #items do order[k] = k end
  local function len(k) return #items[k][1] + #items[k][2] end
  table.sort(order, function(a, b)
    local la, lb = len(a), len(b)
    if la ~= lb then return la < lb end
    return a < b
  end)
  local out = {}
  for i = 1, #order, batch do
    local seqs, plens = {}, {}
    for j = i, math.min(#order, i + batch - 1) do
      local p, c = items[order[j]][1], items[order[j]][2]
      local seq = table.move(p, 1, #p, 1, {})
      table.move(c, 1, #c, #seq + 1, seq)
      seqs[#seqs + 1] = seq
      plens[#plens + 1] = #p
    end
    local ids, lens = mpad(seqs, 0)
    local lp = confit.no_grad(function()
      return model:logprobs(ids, plens, {temperature = 1, lens = lens})
    end)
    for k, v in ipairs(lp:totable()) do out[order[i + k - 1]] = v end
    if lp.free then lp:free() end
    if ids.free then ids:free() end
  end
  return out
end

local function completion_record(s, model, smp, answer, injected, logprob, cache)
  local text = completion_text(model, smp, injected, cache)
  local c = evaluate.grade_completion(s.grader, text, answer)
  c.length = sample_length(smp)
  local lp = logprob or smp.logprob
  c.logprob = (type(lp) == "number" and lp == lp and lp > -math.huge) and lp or NULL
  if smp.finish ~= nil then c.finished = smp.finish == "stop" end
  return c
end

--- For a prompt longer than the model's context: nil, or a hint naming the template (a name of
--- confit.chat.templates other than "plain") that wraps each question in text of its own, and
--- the way without it. Recipes that check prompt lengths themselves can append it too.
function evaluate.context_hint(template)
  if type(template) ~= "string" or template == "plain" or not chat.templates[template] then return nil end
  return string.format("template %s wraps the question in text of its own; --template plain "
                       .. "sends the question alone", template)
end

-- The message for a prompt of n tokens that leaves no room in a context of ctx positions.
local function too_long(s, id, n, ctx)
  local hint = evaluate.context_hint(s.template)
  return string.format("problem %s: the prompt has %d tokens, the model's context is %d positions%s",
                       tostring(id), n, ctx, hint and (" (" .. hint .. ")") or "")
end

--- Before a model is loaded: nil, or the message evaluate.run would fail with: the list is
--- empty or has a malformed problem, the template's
--- markers are no special tokens of tokenizer, or the first problem whose prompt (opts' template,
--- encoded with tokenizer) has no room for one new token in a context of ctx positions
--- (config.json's max_position_embeddings; nil: no length check).
function evaluate.check_prompts(problems, opts, tokenizer, ctx)
  if type(problems) ~= "table" then fail("check_prompts: problems must be a list, got " .. type(problems), 2) end
  if ctx ~= nil and math.type(ctx) ~= "integer" then
    fail("check_prompts: ctx must be an integer (max_position_embeddings) or nil, got " .. show(ctx), 2)
  end
  if ctx and not (type(tokenizer) == "userdata" or type(tokenizer) == "table") then
    fail("check_prompts: tokenizer must be a tokenizer (confit.tokenizer), got " .. type(tokenizer), 2)
  end
  local s = settings(opts, nil)
  local bad, list = list_problem(problems)
  if bad then return bad end
  bad = marker_problem(s.template, tokenizer)
  if bad then return bad end
  if not ctx then return nil end
  for i, p in ipairs(list) do
    local text = s.apply_template(p.question, p)
    if type(text) == "string" then
      local n = #tokenizer:encode(text)
      if n >= ctx then return too_long(s, p.id ~= nil and p.id or i, n, ctx) end
    end
  end
  return nil
end

-- Generate and grade one batch of problems (all at positions first..). Returns records and the
-- number of generated tokens.
local function run_batch(model, s, gen, injected, batch, first_pos)
  local prompts = {}
  for i, p in ipairs(batch) do
    local text = s.apply_template(p.question, p)
    if type(text) ~= "string" then fail("the template returned " .. type(text) .. ", not a string", 3) end
    prompts[i] = text
  end
  local inputs, prompt_ids = prompts, nil
  if not injected and model and model.tokenizer then
    prompt_ids = {}
    for i, text in ipairs(prompts) do prompt_ids[i] = model.tokenizer:encode(text) end
    inputs = prompt_ids
  end
  local stop = stop_ids(model, s)
  -- Per prompt, the new-token budget that fits the model's context (max_position_embeddings):
  -- like vLLM's max_model_len, a long prompt gets fewer new tokens instead of an error.
  -- Prompts with the same budget are generated together.
  local caps, groups, order = {}, {}, {}
  local ctx = not injected and model and model.config and model.config.max_position_embeddings
  for i = 1, #batch do
    local cap = s.max_new_tokens
    if ctx and prompt_ids then
      cap = math.min(cap, ctx - #prompt_ids[i])
      if cap < 1 then fail(too_long(s, batch[i].id, #prompt_ids[i], ctx), 3) end
    end
    caps[i] = cap
    if not groups[cap] then groups[cap] = {}; order[#order + 1] = cap end
    table.insert(groups[cap], i)
  end
  -- run generate over each group; out[i] (greedy) or out[(i-1)*n + j] in batch order
  local function generate_all(n, temperature, seed, score)
    local out = {}
    for gi, cap in ipairs(order) do
      local idx = groups[cap]
      local sub = {}
      for k, i in ipairs(idx) do sub[k] = inputs[i] end
      local go = {n = n, temperature = temperature, max_new_tokens = cap, stop = stop,
                  seed = seed + (gi - 1) * 7919}
      if temperature > 0 then go.top_p, go.top_k = s.top_p, s.top_k end
      if score then go.score_temperature = 1 end
      local res = gen(sub, go)
      if type(res) ~= "table" or #res ~= #sub * n then
        fail(string.format("generate returned %s samples for %d prompts x n=%d",
                           type(res) == "table" and #res or type(res), #sub, n), 4)
      end
      for k, i in ipairs(idx) do
        for j = 1, n do out[(i - 1) * n + j] = res[(k - 1) * n + j] end
      end
    end
    return out
  end
  local tokens = 0
  local greedy_out, sample_out
  if s.greedy then greedy_out = generate_all(1, 0, s.seed) end
  local rescored
  if s.n > 0 then
    local want = s.rescore
    if want == nil then want = s.temperature ~= 1 end
    want = want and not injected and prompt_ids and model.logprobs
    -- the CPU generator scores its samples at T = 1 from the logits it samples from (the same
    -- model, so within float rounding of a teacher-forced pass, at no extra forward); the GPU's
    -- samples are rescored
    local by_sampler = want and type(model.device) == "function" and model:device() == "cpu"
    sample_out = generate_all(s.n, s.temperature, s.seed * 1000003 + first_pos, by_sampler)
    if by_sampler then   -- every sample's score, or none (a model object that drops the option)
      rescored = {}
      for k, smp in ipairs(sample_out) do
        if type(smp.score_logprob) ~= "number" then rescored = nil; break end
        rescored[k] = smp.score_logprob
      end
    end
    if want and not rescored then
      local pairs_ = {}
      for i = 1, #batch do
        for j = 1, s.n do pairs_[#pairs_ + 1] = {prompt_ids[i], sample_out[(i - 1) * s.n + j].tokens} end
      end
      rescored = rescore(model, pairs_, 8)
    end
  end
  local records, cache = {}, {}
  for i, p in ipairs(batch) do
    local r = {benchmark = s.benchmark, id = p.id, question = p.question,
               answer = tostring(p.answer), mode = s.mode, prompt_digest = digest(prompts[i]),
               samples = jsonio.array()}
    if greedy_out then
      local g = greedy_out[i]
      r.greedy = completion_record(s, model, g, p.answer, injected, nil, cache)
      tokens = tokens + r.greedy.length
    end
    for j = 1, s.n do
      local k = (i - 1) * s.n + j
      local c = completion_record(s, model, sample_out[k], p.answer, injected,
                                  rescored and rescored[k], cache)
      r.samples[j] = c
      tokens = tokens + c.length
    end
    if s.n > 1 then
      r.distinct_answers, r.modal_share = evaluate.answer_spread(r.samples, s.grader)
    end
    if r.greedy then r.has_box = r.greedy.boxed
    else
      r.has_box = false
      for _, c in ipairs(r.samples) do if c.boxed then r.has_box = true end end
    end
    records[i] = r
  end
  return records, tokens
end

-- Summaries -------------------------------------------------------------------------------------

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

local function ci(lo, hi) return {lo, hi} end

-- Summary of per-problem records (as written by run). grader: evaluate.graders entry used
-- for maj@n and answer diversity; opts.ks: pass@k values (default evaluate.KS, those <= n).
-- With n > 1 samples: distinct_answers and modal_share, means over problems of
-- evaluate.answer_spread (recomputed from the samples, not read from the records). Intervals
-- of shares lie in [0, 1].
function evaluate.summarize(records, s)
  s = s or {}
  if type(records) ~= "table" then fail("summarize: records must be a list (evaluate.run's), got " .. type(records), 2) end
  if type(s) ~= "table" then fail("summarize: opts must be a table such as {mode = \"qwen\"}, got " .. type(s), 2) end
  for i, r in ipairs(records) do
    if type(r) ~= "table" then fail(("summarize: record %d must be a table, got %s"):format(i, type(r)), 2) end
    if r.samples ~= nil and type(r.samples) ~= "table" then
      fail(("summarize: record %d: samples must be a list, got %s"):format(i, type(r.samples)), 2)
    end
    for j, x in ipairs(type(r.samples) == "table" and r.samples or {}) do
      if type(x) ~= "table" then fail(("summarize: record %d: sample %d must be a table, got %s"):format(i, j, type(x)), 2) end
    end
  end
  if s.grader ~= nil and type(s.grader) ~= "table" then
    fail("summarize: opts.grader must be a grader table (evaluate.graders.qwen, ...), got " .. type(s.grader), 2)
  end
  if s.mode ~= nil and s.mode ~= "qwen" and s.mode ~= "strict" then
    fail(("summarize: opts.mode must be \"qwen\" or \"strict\", got %s"):format(show(s.mode)), 2)
  end
  if s.ks ~= nil and type(s.ks) ~= "table" then fail("summarize: opts.ks must be a list of k such as {1, 8}, got " .. type(s.ks), 2) end
  for i, k in ipairs(s.ks or {}) do
    if math.type(k) ~= "integer" or k < 1 then fail(("summarize: opts.ks[%d] must be an integer >= 1, got %s"):format(i, show(k)), 2) end
  end
  local grader = s.grader or evaluate.graders[s.mode or "qwen"]
  local out = {n = #records, benchmark = s.benchmark, mode = s.mode,
               grader = grader and grader.name, template = s.template}
  local greedy_ok, greedy_len, greedy_box, greedy_trunc = {}, {}, {}, {}
  local per_avg, sample_len, sample_box, sample_trunc, majs = {}, {}, {}, {}, {}
  local distinct, modal = {}, {}
  local nsamp
  local pass = {}
  for _, r in ipairs(records) do
    local g = r.greedy
    if type(g) == "table" then
      greedy_ok[#greedy_ok + 1] = g.correct == true and 1 or 0
      if g.length then greedy_len[#greedy_len + 1] = g.length end
      greedy_box[#greedy_box + 1] = g.boxed and 1 or 0
      if g.finished ~= nil then greedy_trunc[#greedy_trunc + 1] = g.finished and 0 or 1 end
    end
    local smp = type(r.samples) == "table" and r.samples or {}
    if #smp > 0 then
      nsamp = nsamp or #smp
      if #smp ~= nsamp then
        fail(string.format("problem %s has %d samples, others %d", tostring(r.id), #smp, nsamp), 2)
      end
      local c, answers = 0, {n = #smp}
      for j, x in ipairs(smp) do
        if x.correct == true then c = c + 1 end
        if not is_null(x.extracted) then answers[j] = x.extracted end
        if x.length then sample_len[#sample_len + 1] = x.length end
        sample_box[#sample_box + 1] = x.boxed and 1 or 0
        if x.finished ~= nil then sample_trunc[#sample_trunc + 1] = x.finished and 0 or 1 end
      end
      per_avg[#per_avg + 1] = c / #smp
      for _, k in ipairs(s.ks or evaluate.KS) do
        if k <= #smp then
          pass[k] = pass[k] or {}
          table.insert(pass[k], metrics.pass_at_k(#smp, c, k))
        end
      end
      if #smp > 1 then
        local d, ms = evaluate.answer_spread(smp, grader)
        distinct[#distinct + 1], modal[#modal + 1] = d, ms
      end
      local winner = metrics.majority(answers, {key = grader.key, equal = grader.equal})
      majs[#majs + 1] = (winner ~= nil and grader.equal(winner, r.answer)) and 1 or 0
    end
  end
  local function sum(xs) local t = 0; for _, x in ipairs(xs) do t = t + x end; return t end
  if #greedy_ok > 0 then
    out.acc = metrics.mean(greedy_ok)
    out.acc_ci95 = ci(metrics.proportion_ci(math.tointeger(sum(greedy_ok)), #greedy_ok))
    out.correct = math.tointeger(sum(greedy_ok))
  end
  if #per_avg > 0 then
    out.samples = nsamp
    out.temperature, out.top_p = s.temperature, s.top_p
    local avg = metrics.mean(per_avg)
    out["avg@" .. nsamp] = avg
    out["pass@1"] = avg
    out["pass@1_ci95"] = ci(metrics.mean_ci(per_avg, 0, 1))
    for _, k in ipairs(s.ks or evaluate.KS) do
      if pass[k] and k > 1 then out["pass@" .. k] = metrics.mean(pass[k]) end
    end
    local m = "maj@" .. nsamp
    out[m] = metrics.mean(majs)
    out[m .. "_ci95"] = ci(metrics.proportion_ci(math.tointeger(sum(majs)), #majs))
    if #distinct > 0 then
      out.distinct_answers = metrics.mean(distinct)
      out.modal_share = metrics.mean(modal)
    end
  end
  local lens = #greedy_len > 0 and greedy_len or sample_len
  local boxes = #greedy_box > 0 and greedy_box or sample_box
  local truncs = #greedy_box > 0 and greedy_trunc or sample_trunc
  if #lens > 0 then out.mean_length = metrics.mean(lens) end
  if #boxes > 0 then out.box_rate = metrics.mean(boxes) end
  if #truncs > 0 then out.truncated_rate = metrics.mean(truncs) end
  if #greedy_box > 0 and #sample_box > 0 then
    if #sample_len > 0 then out.sample_mean_length = metrics.mean(sample_len) end
    out.sample_box_rate = metrics.mean(sample_box)
  end
  for k, v in pairs(out) do
    if type(v) == "number" and not finite(v) then out[k] = nil end
    if type(v) == "table" and not (finite(v[1]) and finite(v[2])) then out[k] = nil end
  end
  return out
end

-- A plain-text table of summaries (one row each), percentages for rates.
function evaluate.format_table(summaries)
  if type(summaries) ~= "table" then fail("format_table: expected a list of summaries, got " .. type(summaries), 2) end
  for i, s in ipairs(summaries) do
    if type(s) ~= "table" then fail(("format_table: summary %d must be a table, got %s"):format(i, type(s)), 2) end
  end
  -- text columns (left-aligned): the benchmark, its mode (as records and summary name it) and,
  -- when some benchmark is graded by another rule than its mode's (toy, a grader of one's own), the grader
  local cols = {{"benchmark", function(s) return s.benchmark or "" end},
                {"mode", function(s) return s.mode or "" end}}
  local function any(pred) for _, s in ipairs(summaries) do if pred(s) then return true end end end
  if any(function(s) return s.grader and s.grader ~= s.mode end) then
    cols[#cols + 1] = {"grader", function(s) return s.grader or "" end}
  end
  local ntext = #cols
  cols[#cols + 1] = {"n", function(s) return tostring(s.n) end}
  local function pct(x) return x and string.format("%.1f", 100 * x) or "-" end
  local function with_ci(key)
    return function(s)
      if s[key] == nil then return "-" end
      local c = s[key .. "_ci95"]
      if c then return string.format("%s [%s, %s]", pct(s[key]), pct(c[1]), pct(c[2])) end
      return pct(s[key])
    end
  end
  if any(function(s) return s.acc end) then cols[#cols + 1] = {"acc % [95% CI]", with_ci("acc")} end
  local samp = {}
  for _, s in ipairs(summaries) do if s.samples then samp[s.samples] = true end end
  if next(samp) then
    cols[#cols + 1] = {"avg@n % [95% CI]", with_ci("pass@1")}
    for _, k in ipairs(evaluate.KS) do
      if k > 1 and any(function(s) return s["pass@" .. k] end) then
        cols[#cols + 1] = {"pass@" .. k, function(s) return pct(s["pass@" .. k]) end}
      end
    end
    cols[#cols + 1] = {"maj@n", function(s) return s.samples and pct(s["maj@" .. s.samples]) or "-" end}
    cols[#cols + 1] = {"n samples", function(s) return s.samples and tostring(s.samples) or "-" end}
    if any(function(s) return s.distinct_answers end) then
      cols[#cols + 1] = {"distinct", function(s)
        return s.distinct_answers and string.format("%.2f", s.distinct_answers) or "-" end}
    end
  end
  cols[#cols + 1] = {"mean len", function(s) return s.mean_length and string.format("%.1f", s.mean_length) or "-" end}
  cols[#cols + 1] = {"box %", function(s) return pct(s.box_rate) end}
  cols[#cols + 1] = {"trunc %", function(s) return pct(s.truncated_rate) end}
  local rows, widths = {}, {}
  for j, c in ipairs(cols) do widths[j] = #c[1] end
  for i, s in ipairs(summaries) do
    rows[i] = {}
    for j, c in ipairs(cols) do
      rows[i][j] = c[2](s)
      widths[j] = math.max(widths[j], #rows[i][j])
    end
  end
  local function line(cells)
    local parts = {}
    for j, v in ipairs(cells) do
      parts[j] = j <= ntext and (v .. string.rep(" ", widths[j] - #v)) or (string.rep(" ", widths[j] - #v) .. v)
    end
    return table.concat(parts, "  ")
  end
  local head = {}
  for j, c in ipairs(cols) do head[j] = c[1] end
  local out = {line(head)}
  local rule = {}
  for j = 1, #cols do rule[j] = string.rep("-", widths[j]) end
  out[#out + 1] = table.concat(rule, "  ")
  for _, r in ipairs(rows) do out[#out + 1] = line(r) end
  return table.concat(out, "\n")
end

-- The summary object as written to summary.json (only JSON-safe fields).
local function summary_json(summary)
  local o = {}
  for k, v in pairs(summary) do
    if type(v) ~= "function" then o[k] = v end
  end
  return o
end

-- Merge one benchmark's summary into <dir>/<file> ({"config", "benchmarks": {name: {stage}}}).
function evaluate.write_summary(dir, file, benchmark, stage, summary, config)
  local path = dir .. "/" .. file
  local doc = file_exists(path) and jsonio.read_json(path) or nil
  if type(doc) ~= "table" then doc = {} end
  if type(doc.benchmarks) ~= "table" then doc.benchmarks = {} end
  if config ~= nil then doc.config = config end
  local b = doc.benchmarks[benchmark]
  if type(b) ~= "table" then b = {}; doc.benchmarks[benchmark] = b end
  b[stage] = summary_json(summary)
  return jsonio.write_json_atomic(path, doc)
end

-- The loop --------------------------------------------------------------------------------------

local function clock()
  local ok, core = pcall(require, "confit.core")
  if ok and type(core) == "table" and core.clock then return core.clock() end
  return os.time()
end

function evaluate.run(model, problems, opts)
  opts = opts or {}
  local s = settings(opts, model)
  if type(problems) ~= "table" then fail("problems must be a list", 2) end
  local injected = opts.generate ~= nil
  if injected and type(opts.generate) ~= "function" then fail("opts.generate must be a function", 2) end
  if not injected and (type(model) ~= "table" or model.generate == nil) then
    fail("need a model with :generate (or opts.generate), got " .. (model == nil and "none" or type(model)), 2)
  end
  -- The C generate directly when there is one (token ids in, token ids out; we decode),
  -- else the model's own generate.
  local gen = opts.generate or function(prompts, go)
    local ok, out
    if model.core and model.core.generate and type(prompts[1]) == "table" then
      ok, out = pcall(model.core.generate, model.core, prompts, go)
    else
      ok, out = pcall(model.generate, model, prompts, go)
    end
    if not ok then require("confit.cli").raise_generate_error(out, "evaluation") end
    return out
  end
  local bad
  bad, problems = list_problem(problems)
  if bad then fail(bad, 2) end

  local path, settings_path
  local done = {}
  if s.out_dir then
    local ident = identity(s)
    local ok, err = evaluate.mkdir_p(s.out_dir)
    if not ok then fail(err, 2) end
    path = s.out_dir .. "/eval_" .. s.stage .. ".jsonl"
    settings_path = s.out_dir .. "/eval_" .. s.stage .. ".settings.json"
    if s.resume then
      done = load_done(path, ident, settings_path, problems, s)
    elseif file_exists(path) then
      os.remove(path)
    end
    local wok, werr = jsonio.write_json_atomic(settings_path, ident)
    if not wok then fail("cannot write " .. settings_path .. ": " .. tostring(werr), 2) end
  end

  local pending = 0
  for _, p in ipairs(problems) do if not done[tostring(p.id)] then pending = pending + 1 end end
  local bar
  if s.progress ~= false and pending > 0 then
    local popts = {total = pending, label = "eval " .. s.benchmark, unit = "q"}
    for k, v in pairs(type(s.progress) == "table" and s.progress or {}) do popts[k] = v end
    bar = require("confit.progress").new(popts)
  end

  local t0 = clock()
  local tokens, new_correct, new_graded = 0, 0, 0
  local by_key = {}
  for start = 1, #problems, s.batch_size do
    local batch, missing = {}, 0
    for i = start, math.min(#problems, start + s.batch_size - 1) do
      local p = problems[i]
      local prev = done[tostring(p.id)]
      batch[#batch + 1] = p
      if prev then by_key[tostring(p.id)] = prev else missing = missing + 1 end
    end
    if missing > 0 then
      -- the whole batch, its finished problems too: what a batch draws depends on all of it
      local recs, ntok = run_batch(model, s, gen, injected, batch, start)
      tokens = tokens + ntok
      for _, r in ipairs(recs) do
        if done[tostring(r.id)] then goto kept end
        by_key[tostring(r.id)] = r
        if path then
          local ok, err = jsonio.append_jsonl(path, r)
          if not ok then fail("cannot append to " .. path .. ": " .. tostring(err), 2) end
        end
        if r.greedy then
          new_graded = new_graded + 1
          if r.greedy.correct then new_correct = new_correct + 1 end
        end
        ::kept::
      end
      if bar then
        local dt = clock() - t0
        local extra = dt > 0 and string.format("%.0f tok/s", tokens / dt) or ""
        if new_graded > 0 then extra = extra .. string.format("  acc %.3f", new_correct / new_graded) end
        bar:step(missing, extra)
      end
    end
  end
  if bar then bar:finish() end
  local wall = clock() - t0

  local records = {}
  for i, p in ipairs(problems) do records[i] = by_key[tostring(p.id)] end
  local summary = evaluate.summarize(records, s)
  summary.resumed = #problems - pending
  summary.generated_tokens = tokens
  summary.wall_s = wall
  if pending > 0 and wall > 0 then summary.tokens_per_s = tokens / wall end
  if s.out_dir and s.summary_file then
    -- the records on the disk before the (synced) summary that describes them: appends only
    -- flush, and after a power loss the summary spoke for records that were gone
    if pending > 0 and path then
      local sok, serr = jsonio.sync(path)
      if not sok then fail("cannot sync " .. path .. ": " .. tostring(serr), 2) end
    end
    local ok, err = evaluate.write_summary(s.out_dir, s.summary_file, s.benchmark, s.stage,
                                           summary, opts.config)
    if not ok then fail("cannot write summary: " .. tostring(err), 2) end
  end
  return summary, records
end

return evaluate
