-- Tests of confit.report (HTML report of run directories), recipes/report.lua and
-- confit.progress. Builds synthetic run directories with confit.jsonio in a temporary
-- directory; when /usr/bin/chromium exists, renders the report headless and checks for console
-- errors and a non-blank screenshot (skipped with a message otherwise).
-- CONFIT_REPORT_KEEP=DIR keeps the HTML and the screenshot there for a look.
local H = dofile("tests/lua/harness.lua")
local jsonio = require "confit.jsonio"
local report = require "confit.report"
local progress = require "confit.progress"
local toy = require "confit.toy"

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. sh_quote(d)))
  return d
end

-- Write files {name = text, or a Lua value (JSON), or a list of records (JSONL: a name ending
-- .jsonl)} into dir (made when missing); returns dir.
local function put_tree(dir, files)
  assert(os.execute("mkdir -p " .. sh_quote(dir)))
  for name, v in pairs(files) do
    if type(v) == "string" then
      local f = assert(io.open(dir .. "/" .. name, "wb")); f:write(v); f:close()
    elseif name:match("%.jsonl$") then assert(jsonio.write_jsonl_atomic(dir .. "/" .. name, v))
    else assert(jsonio.write_json_atomic(dir .. "/" .. name, v)) end
  end
  return dir
end

local slurp = H.read

local function count(s, pat)
  return select(2, s:gsub(pat, ""))
end

-- Synthetic runs -------------------------------------------------------------------------------

local function normal(rng)
  local u1, u2 = math.max(rng:float(), 1e-12), rng:float()
  return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
end

-- Eval records for a toy benchmark; `skill` sets the share of right answers, `sharp` moves
-- log-probs up and lengths down (what RLSC is expected to do).
local function eval_records(rng, bench, n, skill, sharp, with_greedy, nsamples)
  local w = toy.world(bench == "toy-pure" and "pure" or "mixed")
  local out = {}
  for i, q in ipairs(w:questions("heldout", n, 17)) do
    local full = toy.solve(q.prompt)
    local function completion()
      local right = rng:float() < skill
      local text = right and full or full:gsub("{%-?%d+}$", "{" .. (q.answer + 1) .. "}")
      local ok, extracted = w:grade(text, q.answer)
      return {completion = text, extracted = extracted, correct = ok,
              length = #text + math.floor(6 * (1 - sharp) * math.abs(normal(rng))),
              logprob = -math.abs(8 * (1 - sharp) + 2 + 2 * normal(rng))}
    end
    local rec = {benchmark = bench, id = i, question = q.prompt, answer = tostring(q.answer),
                 samples = {}}
    for k = 1, nsamples do rec.samples[k] = completion() end
    if with_greedy then rec.greedy = completion() end
    out[i] = rec
  end
  return out
end

local function make_run(dir, o)
  assert(os.execute("mkdir -p " .. sh_quote(dir)))
  local rng = toy.new_rng(o.seed, 1)
  assert(jsonio.write_json_atomic(dir .. "/config.json", o.config))
  for s = 1, o.steps do
    local t = s / o.steps
    local rec = {step = s, loss = 2.5 * math.exp(-3 * t) + 0.05 * normal(rng),
                 mean_logp = -12 * (1 - 0.8 * t), weight_share = math.min(1, 0.2 + t),
                 mean_confidence = math.exp(-12 * (1 - 0.8 * t)) * 1000 / 1000,
                 entropy = 1.2 * (1 - 0.7 * t), mean_length = 40 - 15 * t + normal(rng),
                 box_rate = math.min(1, 0.6 + 0.4 * t), tokens_per_s = 1500 + 20 * normal(rng),
                 step_s = 2.1}
    if o.train_acc then rec.train_acc = 0.3 + 0.5 * t end
    assert(jsonio.append_jsonl(dir .. "/steps.jsonl", rec))
  end
  local before, after = {}, {}
  for _, b in ipairs(o.benches) do
    for _, r in ipairs(eval_records(rng, b, 40, 0.35, 0.0, o.greedy, o.nsamples)) do before[#before + 1] = r end
    for _, r in ipairs(eval_records(rng, b, 40, 0.7, 0.6, o.greedy, o.nsamples)) do after[#after + 1] = r end
  end
  assert(jsonio.write_jsonl_atomic(dir .. "/eval_before.jsonl", before))
  assert(jsonio.write_jsonl_atomic(dir .. "/eval_after.jsonl", after))
  if o.summary then assert(jsonio.write_json_atomic(dir .. "/summary.json", o.summary)) end
end

-- A minimal XML well-formedness check of each <svg>...</svg> block: tags nest and close.
local function check_svg_wellformed(html)
  local n = 0
  for svg in html:gmatch("<svg.-</svg>") do
    n = n + 1
    local stack = {}
    for slash, name, rest in svg:gmatch("<(/?)([%w:%-]+)([^>]*)>") do
      if slash == "/" then
        local top = table.remove(stack)
        H.eq(top, name, "svg " .. n .. ": closing tag")
      elseif not rest:match("/%s*$") then
        stack[#stack + 1] = name
      end
      H.ok(not rest:find("[<&]%s"), "svg " .. n .. ": raw < or & in a tag")
    end
    H.eq(#stack, 0, "svg " .. n .. ": unclosed tags")
  end
  return n
end

local root = tmpdir()
local dir_a, dir_b = root .. "/rlsc-a", root .. "/grid/alpha=0.1,lr=1e-05"
local dir_empty, dir_bad = root .. "/empty", root .. "/bad"

make_run(dir_a, {seed = 1, steps = 20, benches = {"toy-mixed", "toy-pure"}, greedy = true,
                 nsamples = 4, config = {recipe = "rlsc", name = "rlsc <A> & \"B\"", seed = 1,
                 optim = {lr = 1e-5, weight_decay = 0.01}, alpha = 0.1, samples = 16,
                 temperature = 0.5, benchmarks = {"toy-mixed", "toy-pure"}},
                 summary = {config = {recipe = "rlsc"}, benchmarks = {
                   ["toy-mixed"] = {before = {acc = 0.125, n = 40, ["pass@4"] = 0.5},
                                    after = {acc = 0.75, acc_ci95 = {0.6, 0.86}, n = 40}}}}})
make_run(dir_b, {seed = 2, steps = 12, benches = {"toy-mixed"}, greedy = false, nsamples = 8,
                 train_acc = true, config = {recipe = "rlsc", seed = 2, alpha = 0.1,
                 optim = {lr = 3e-5, weight_decay = 0.01}, samples = 8, temperature = 0.5}})
assert(jsonio.write_json_atomic(root .. "/grid/grid.json", {axes = {alpha = {0.1}, lr = {1e-5}},
  runs = {{dir = "alpha=0.1,lr=1e-05", params = {alpha = 0.1, lr = 1e-5}}}, recipe = "recipes/rlsc.lua"}))
assert(os.execute("mkdir -p " .. sh_quote(dir_empty) .. " " .. sh_quote(dir_bad)))
do
  local f = assert(io.open(dir_bad .. "/steps.jsonl", "wb"))
  f:write('{"step":1,"loss":1}\n{"step":2,"loss":oops}\n{"step":3,"loss":0.5}\n'); f:close()
  f = assert(io.open(dir_bad .. "/config.json", "wb")); f:write('{"name": "bad run"}'); f:close()
end

H.case("statistics: Wilson interval, score intervals, eval accuracy", function()
  local lo, hi = report.wilson(12, 30)
  H.near(lo, 0.245906, 1e-5, "wilson lo"); H.near(hi, 0.576796, 1e-5, "wilson hi")
  lo, hi = report.wilson(0, 30)
  H.eq(lo, 0, "wilson lo at 0"); H.near(hi, 0.11351, 1e-4, "wilson hi at 0")
  local m, l2, h2 = report.score_interval({0.5, 0.5, 0.5, 0.5})
  H.eq(m, 0.5, "mean"); H.eq(l2, 0.5, "no spread, no width"); H.eq(h2, 0.5, "hi")
  m, l2, h2 = report.score_interval({0, 0.25, 0.5, 1})
  local sd = math.sqrt(((0 - 0.4375) ^ 2 + (0.25 - 0.4375) ^ 2 + (0.5 - 0.4375) ^ 2 + (1 - 0.4375) ^ 2) / 3)
  H.near(m, 0.4375, 1e-12, "mean"); H.near(l2, 0.4375 - 1.96 * sd / 2, 1e-3, "normal lo")
  local acc = report.eval_accuracy({
    {benchmark = "x", greedy = {correct = true}}, {benchmark = "x", greedy = {correct = false}},
    {benchmark = "y", samples = {{correct = true}, {correct = false}, {correct = false}, {correct = false}}},
    {benchmark = "y", samples = {{correct = true}, {correct = true}, {correct = true}, {correct = false}}}})
  H.eq(acc.x.acc, 0.5, "greedy acc"); H.eq(acc.x.kind, "acc", "greedy kind"); H.eq(acc.x.n, 2, "n")
  H.eq(acc.y.acc, 0.5, "pass@1"); H.eq(acc.y.kind, "pass@1", "sample kind")
  local ticks, step = report.nice_ticks(0, 1, 5)
  H.eq(step, 0.2, "tick step"); H.eq(#ticks, 6, "ticks 0..1")
  -- integer data get whole-number bins: 0..47 once each in 24 bins is 2 per bin, a flat top
  local vals = {}
  for v = 0, 47 do vals[#vals + 1] = v end
  local svg = report.histogram({title = "h", integer = true, bins = 24,
                                series = {{name = "x", color = "#000", values = vals}}})
  local d = assert(svg:match('<path d="(M[^"]*Z)"'), "histogram path")
  local heights = {}
  for y in d:gmatch("V([%d%.]+)H") do heights[y] = true end
  local nh = 0
  for _ in pairs(heights) do nh = nh + 1 end
  H.eq(nh, 1, "equal bars for uniform integers: " .. d)
  H.ok(svg:find("no data", 1, true) == nil, "has data")
  H.ok(report.histogram({title = "e", series = {{name = "x", color = "#000", values = {}}}})
       :find("no data", 1, true), "empty histogram says no data")
  ticks, step = report.nice_ticks(-37.2, 3.1, 5)
  H.eq(step, 10, "tick step 10"); H.eq(ticks[1], -30, "first tick"); H.eq(ticks[#ticks], 0, "last tick")
end)

H.case("expand: grid directories become their runs", function()
  local dirs = report.expand({dir_a, root .. "/grid", dir_empty})
  H.eq(#dirs, 3, "three runs"); H.eq(dirs[2], dir_b, "grid.json run")
  -- without grid.json, subdirectories holding run files, by name
  local g2 = root .. "/grid2"
  assert(os.execute("mkdir -p " .. sh_quote(g2 .. "/b") .. " " .. sh_quote(g2 .. "/a") .. " "
                    .. sh_quote(g2 .. "/junk")))
  assert(jsonio.write_json_atomic(g2 .. "/b/config.json", {name = "b"}))
  assert(jsonio.write_json_atomic(g2 .. "/a/config.json", {name = "a"}))
  dirs = report.expand({g2 .. "/"})
  H.eq(#dirs, 2, "two runs"); H.eq(dirs[1], g2 .. "/a", "sorted a"); H.eq(dirs[2], g2 .. "/b", "b")
end)

H.case("load_run: files, names, problems", function()
  local a = report.load_run(dir_a)
  H.eq(a.name, 'rlsc <A> & "B"', "name from config"); H.eq(#a.steps, 20, "steps")
  H.eq(#a.before, 80, "before records"); H.eq(a.files["summary.json"], "ok", "summary")
  local bad = report.load_run(dir_bad)
  H.eq(bad.files["steps.jsonl"], "unreadable", "bad steps"); H.eq(bad.steps, nil, "no steps")
  H.ok(bad.notes[1] and bad.notes[1]:find("steps.jsonl:2:", 1, true), tostring(bad.notes[1]))
  local e = report.load_run(dir_empty)
  H.eq(e.name, "empty", "basename"); H.eq(e.files["config.json"], "missing", "missing")
  -- (twenty-first session) said once, as a note: a typo'd path or a model folder showed as a
  -- silent "no data" row
  H.eq(#e.notes, 1, "an empty directory: one note")
  H.ok(e.notes[1]:find("holds none of a run's files", 1, true), e.notes[1])
  -- a FIFO (or device) in a run's place is never opened (the read would block): unreadable and
  -- why, not "missing", and the folder still counts as a run (twenty-ninth session)
  local fifo = root .. "/fifo"
  assert(os.execute("mkdir -p " .. sh_quote(fifo)))
  H.mkfifo(fifo .. "/config.json", fifo .. "/steps.jsonl")
  local f = report.load_run(fifo)
  H.eq(f.files["config.json"], "unreadable", "FIFO config.json")
  H.eq(f.files["steps.jsonl"], "unreadable", "FIFO steps.jsonl")
  H.eq(f.files["summary.json"], "missing", "no summary.json")
  H.eq(#f.notes, 2, "one note per FIFO: " .. table.concat(f.notes, " | "))
  H.eq(f.notes[1], fifo .. "/config.json: not a regular file (a FIFO, socket or device)", "config note")
  H.eq(f.notes[2], fifo .. "/steps.jsonl: not a regular file (a FIFO, socket or device)", "steps note")
  local gone = report.load_run(root .. "/gone")
  H.ok(gone.notes[1] and gone.notes[1]:find("no such directory", 1, true), "missing directory noted")
  -- a run still being written: a torn last line is dropped
  local live = root .. "/live"
  assert(os.execute("mkdir -p " .. sh_quote(live)))
  local f = assert(io.open(live .. "/steps.jsonl", "wb"))
  f:write('{"step":1,"loss":1.5}\n{"step":2,"lo'); f:close()
  local l = report.load_run(live)
  H.eq(#l.steps, 1, "torn line dropped"); H.eq(#l.notes, 0, "no problem noted")
end)

local html
H.case("render: sections, SVGs, escaping, no external resources, deterministic", function()
  html = report.render({dir_a, root .. "/grid", dir_empty, dir_bad})
  H.eq(report.render({dir_a, root .. "/grid", dir_empty, dir_bad}), html, "deterministic")
  for _, sec in ipairs({"<h2>Runs</h2>", "<h2>Training curves</h2>", "<h2>Accuracy before and after</h2>",
                        "<h2>Summary metrics</h2>", "<h2>Response length</h2>",
                        "<h2>Sequence log-probability</h2>", "<h2>Configuration</h2>"}) do
    H.ok(html:find(sec, 1, true), "section " .. sec)
  end
  local nsvg = check_svg_wellformed(html)
  -- 9 curve panels (train_acc present in run B), 2 accuracy charts, 2 + 2 histograms (the
  -- runs without eval files are listed under "no data" instead)
  H.eq(nsvg, 9 + 2 + 2 + 2, "number of SVG plots")
  H.eq(count(html, "no data %(no eval files%): empty, bad run"), 2, "runs without eval files named")
  for _, t in ipairs({"loss", "mean confidence p(y|x)", "mean token entropy (nats)",
                      "mean completion length (tokens)", "train accuracy (labels not used)"}) do
    H.ok(html:find('aria-label="' .. report.escape(t) .. '"', 1, true), "curve " .. t)
  end
  H.eq(count(html, "<polyline"), 2 * 8 + 1, "one line per run with steps in each curve panel")
  H.ok(html:find('aria-label="toy-mixed"', 1, true) and html:find('aria-label="toy-pure"', 1, true),
       "one accuracy chart per benchmark")
  -- escaping: the run name with markup characters never appears raw
  H.ok(not html:find('rlsc <A> & "B"', 1, true), "raw name leaked")
  H.ok(html:find("rlsc &lt;A&gt; &amp; &quot;B&quot;", 1, true), "escaped name")
  -- self-contained: no scripts, no external resources (the SVG namespace is not a fetch)
  H.ok(not html:lower():find("<script", 1, true), "no script")
  local stripped = html:gsub('xmlns="http://www%.w3%.org/2000/svg"', "")
  H.ok(not stripped:find("https?://"), "no URLs"); H.ok(not stripped:find("url%("), "no css url()")
  H.ok(not stripped:find("<link", 1, true) and not stripped:find("<img", 1, true), "no links/images")
  -- accuracy numbers: summary value with its interval; an eval-computed one for run B
  H.ok(html:find("<td>toy-mixed</td><td><i class=\"sw\" style=\"background:#4e79a7\"></i>rlsc &lt;A&gt; &amp; &quot;B&quot;</td>"
                 .. "<td class=\"n\">12.5</td>", 1, true), "summary before acc 12.5")
  H.ok(html:find("[60.0, 86.0]", 1, true), "summary ci95 used")
  local b = report.load_run(dir_b)
  local ev = b.acc.after["toy-mixed"]
  H.eq(ev.kind, "pass@1", "run B has samples only")
  H.ok(html:find(string.format("%.1f</td><td class=\"n\">[%.1f, %.1f]", 100 * ev.acc, 100 * ev.lo, 100 * ev.hi),
                 1, true), "run B after accuracy and interval from eval files")
  -- missing data says so
  H.ok(html:find("no data: no config.json", 1, true), "config no data")
  H.ok(html:find('class="warn">unreadable', 1, true), "unreadable steps shown")
  H.ok(html:find("bad.-steps%.jsonl:2:"), "problem line shown")
  -- config table: flattened keys, differing rows highlighted
  H.ok(html:find('<tr class="diff"><td><code>optim.lr</code></td><td>1e-05</td>', 1, true), "optim.lr differs")
  H.ok(html:find('<tr class="diff"><td><code>optim.weight_decay</code>', 1, true), "absent in 'bad run'")
  local two = report.render({dir_a, dir_b})
  H.ok(two:find('<tr><td><code>optim.weight_decay</code>', 1, true), "same value: not highlighted")
  H.ok(two:find('<tr class="diff"><td><code>seed</code>', 1, true), "seed differs")
end)

H.case("render: a lone empty run directory says no data everywhere", function()
  local h = report.render({dir_empty})
  H.eq(count(h, "no data"), 6, "no-data notes")
  H.eq(check_svg_wellformed(h), 0, "no plots")
  H.raises(function() report.render({}) end, "no run directories")
  -- (Lua API audit) one folder as a string is that folder; nil is named
  H.eq(report.render(dir_empty), h, "a string is one folder")
  H.raises(function() report.render(nil) end, "expected a list of run folders")
  -- entries: folders or runs of report.load_run (an empty table was "attempt to index a nil value")
  H.raises(function() report.render({{}}) end, "entry 1 is a table but not a run of report.load_run")
  H.raises(function() report.render({5}) end, "entry 1 must be a run folder (a string), got number")
  -- names that are not valid UTF-8 (odd directory names) still give a valid UTF-8 page
  local r = report.load_run(dir_empty)
  r.name = "odd\255name \206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177\206\177"
  h = report.render({r})
  H.ok(utf8.len(h) ~= nil, "page is valid UTF-8")
  H.ok(h:find("odd\239\191\189name", 1, true), "bad byte shown as U+FFFD")
end)

H.case("recipes/report.lua writes the file", function()
  local out = root .. "/report.html"
  local main = dofile("recipes/report.lua")
  H.eq(main({out, dir_a, root .. "/grid"}), 0, "exit status")
  local text = slurp(out)
  H.ok(text and text:find("<h2>Training curves</h2>", 1, true), "written")
  H.eq(text, report.render({dir_a, root .. "/grid"}), "same as render")
end)

H.case("progress: plain lines every 10%, rate and ETA; bar on a terminal", function()
  local lines = {}
  local sink = {write = function(_, ...) for _, s in ipairs({...}) do lines[#lines + 1] = s end end}
  local t = 0
  local p = progress.new({total = 100, label = "eval", mode = "plain", stream = sink,
                          clock = function() return t end, interval_s = 1000})
  for _ = 1, 100 do t = t + 0.5; p:step(1, "acc 0.5") end
  p:finish()
  local text = table.concat(lines)
  H.eq(count(text, "\n"), 10, "9 lines at 10%..90% and a final one")
  H.ok(text:find("eval  50/100 ( 50%)  2.00 it/s  ETA 25s  acc 0.5\n", 1, true), text)
  H.ok(text:find("eval  100/100 (100%)  2.00 it/s  in 50s  acc 0.5\n", 1, true), text)
  -- unknown total: a line every interval_s seconds
  lines, t = {}, 0
  p = progress.new({label = "gen", mode = "plain", stream = sink, clock = function() return t end,
                    interval_s = 10})
  for _ = 1, 35 do t = t + 1; p:step() end
  H.eq(count(table.concat(lines), "\n"), 3, "lines at 10, 20, 30 s")
  -- bar mode redraws in place
  lines, t = {}, 0
  p = progress.new({total = 4, mode = "bar", stream = sink, width = 8, clock = function() return t end})
  for _ = 1, 4 do t = t + 1; p:step() end
  p:finish()
  text = table.concat(lines)
  H.ok(text:find("\r", 1, true) and text:find("[####....]", 1, true), "bar drawn: " .. text)
  H.eq(text:sub(-1), "\n", "final newline")
  H.eq(progress.format_duration(3725), "1:02:05", "h:mm:ss")
  H.raises(function() progress.new({mode = "fancy"}) end, "mode must be")
  H.eq(type(progress.is_tty()), "boolean", "tty test answers")
end)

-- (fix_eval) Records and summary entries of the wrong JSON type are skipped with a note naming
-- the file and line (or key), never a traceback.
H.case("load_run and render skip records and summary entries that are not objects", function()
  local d = root .. "/wrong-types"
  assert(os.execute("mkdir -p " .. sh_quote(d)))
  local function put(name, text)
    local f = assert(io.open(d .. "/" .. name, "wb")); f:write(text); f:close()
  end
  put("eval_before.jsonl", '{"benchmark":"x","id":1,"greedy":{"correct":true}}\n\n5\n'
      .. '{"benchmark":"x","id":2,"samples":[7,{"correct":true}]}\n')
  put("eval_after.jsonl", '"text"\n{"benchmark":"x","id":1,"greedy":{"correct":false}}\n')
  put("steps.jsonl", '[1,2]\n{"step":1,"loss":0.5}\ntrue\n')
  put("summary.json", '{"benchmarks":{"x":5,"y":{"before":{"acc":0.5,"n":"<b>"}}}}')
  local r = report.load_run(d)
  local notes = table.concat(r.notes, "\n")
  for _, want in ipairs({d .. "/eval_before.jsonl:3:", d .. "/eval_after.jsonl:1:",
                         d .. "/eval_before.jsonl:4: samples[1] is not an object; record skipped",
                         d .. "/steps.jsonl:1:", d .. "/steps.jsonl:3:", d .. "/summary.json: benchmarks.x"}) do
    H.ok(notes:find(want, 1, true), "note " .. want .. " in:\n" .. notes)
  end
  -- (a record with a sample that is no object was scored, that sample as wrong, before the
  -- twenty-first session)
  H.eq(#r.before, 1, "objects kept"); H.eq(#r.after, 1); H.eq(#r.steps, 1, "the array record skipped")
  local html = report.render({r})
  H.ok(html:find("eval_before.jsonl:3:", 1, true), "the page names the line")
  H.ok(not html:find("<b>", 1, true), "summary text escaped or dropped")
  local out = root .. "/wrong-types.html"
  local main = dofile("recipes/report.lua")
  H.eq(main({out, d}), 0, "recipes/report.lua carries on")
  -- a summary.json that is no object at all: a note, and the runs table does not say "ok"
  for _, text in ipairs({"[1,2,3]", "5", '"x"'}) do
    put("summary.json", text)
    r = report.load_run(d)
    H.ok(table.concat(r.notes, "\n"):find(d .. "/summary.json: not a JSON object; skipped", 1, true), text)
    H.eq(r.files["summary.json"], "unreadable", text)
    H.eq(r.summary, nil, text)
  end
  -- an eval file whose last line was cut short (a full disk stopped the append) keeps its whole
  -- records (the file was dropped whole: "no data")
  put("eval_before.jsonl", '{"benchmark":"x","id":1,"greedy":{"correct":true}}\n{"benchmark":"x","id":2,"gre')
  r = report.load_run(d)
  H.eq(#r.before, 1, "the whole record kept")
  -- and says so (an eval file is written whole and renamed: a cut line is damage, twenty-first
  -- session), where a live steps.jsonl's is not
  H.ok(table.concat(r.notes, "\n"):find(d .. "/eval_before.jsonl:2: the last line is cut short; dropped (1 records kept)",
                                        1, true), table.concat(r.notes, "\n"))
  put("steps.jsonl", '{"step":1,"loss":0.5}\n{"step":2,"lo')
  r = report.load_run(d)
  H.eq(#r.steps, 1, "a live steps.jsonl's whole records")
  H.ok(not table.concat(r.notes, "\n"):find("steps.jsonl:2", 1, true), "no note for a live steps.jsonl")
  -- correct written as 1 / "yes" by another writer: the record is skipped with a note naming the
  -- line, not scored as wrong (the report showed 0 % without a word)
  put("eval_before.jsonl", '{"benchmark":"x","id":1,"greedy":{"correct":true}}\n'
      .. '{"benchmark":"x","id":2,"greedy":{"correct":1}}\n{"benchmark":"x","id":3,"samples":[{"correct":"yes"}]}\n'
      .. '{"benchmark":"x","id":4,"samples":[{"text":"no grade"}]}\n')
  r = report.load_run(d)
  notes = table.concat(r.notes, "\n")
  for _, want in ipairs({":2: greedy.correct is 1, not true or false; record skipped",
                         ":3: samples[1].correct is yes, not true or false", ":4: samples[1].correct is nil"}) do
    H.ok(notes:find(d .. "/eval_before.jsonl" .. want, 1, true), want .. " in:\n" .. notes)
  end
  H.eq(#r.before, 1, "the one well-formed record")
  H.eq(report.eval_accuracy(r.before).x.acc, 1, "scored from it alone")
  -- a run folder named "DIR/." is there
  H.ok(not table.concat(report.load_run(d .. "/.").notes, "\n"):find("no such directory", 1, true), "DIR/.")
end)

-- (fix_report) Hostile but parseable numbers: no hang, no traceback, every drawn coordinate
-- finite; mismatched metrics are not compared; config flattening is deterministic.
local function put_files(d, files)
  assert(os.execute("mkdir -p " .. sh_quote(d)))
  for name, text in pairs(files) do
    local f = assert(io.open(d .. "/" .. name, "wb")); f:write(text); f:close()
  end
end

local function eval_line(len, lp)
  return string.format('{"benchmark":"b","id":1,"greedy":{"correct":true,"length":%s,"logprob":%s}}\n',
                       len, lp)
end

-- attribute values of the SVGs that are not finite numbers
local function bad_coords(html)
  local bad = {}
  for attr, v in html:gmatch('%s([%w%-]+)="([^"]*)"') do
    if attr ~= "aria-label" and (v:lower():find("nan", 1, true) or v:lower():find("inf", 1, true)) then
      bad[#bad + 1] = attr .. "=" .. v
    end
  end
  return bad
end

H.case("nice_ticks: ranges a few ulps wide and huge ranges end with few ticks", function()
  for _, r in ipairs({{-1.0000000000000002, -1.0}, {1e17, 1e17 + 16}, {5, 5}, {-1e308, 1e308},
                      {0, 1e-300}, {1e300, 1e300}}) do
    local ticks, step = report.nice_ticks(r[1], r[2], 5)
    H.ok(#ticks >= 1 and #ticks <= 50, string.format("%d ticks for %.17g..%.17g", #ticks, r[1], r[2]))
    for _, t in ipairs(ticks) do H.ok(t == t and t > -math.huge and t < math.huge, "finite tick") end
    H.ok(step > 0 and step < math.huge, "finite step")
  end
end)

H.case("render: hostile numbers give a page with finite coordinates and notes", function()
  local base = root .. "/hostile"
  put_files(base .. "/ulp", {["eval_before.jsonl"] = eval_line(3, "-1.0"),
                             ["eval_after.jsonl"] = eval_line(3, "-1.0000000000000002")})
  put_files(base .. "/steps", {["steps.jsonl"] = '{"step":1e17,"loss":1}\n{"step":100000000000000016,"loss":2}\n'})
  put_files(base .. "/lens", {["eval_before.jsonl"] = eval_line("1e17", -1),
                              ["eval_after.jsonl"] = eval_line("100000000000000016", -2)})
  put_files(base .. "/wide", {["eval_before.jsonl"] = eval_line("-1e308", "-1e308"),
                              ["eval_after.jsonl"] = eval_line("1e308", "1e308")})
  put_files(base .. "/one", {["eval_before.jsonl"] = eval_line("1e300", -1)})
  put_files(base .. "/loss", {["steps.jsonl"] = '{"step":1,"loss":-1e308,"box_rate":1.06}\n'
                                                .. '{"step":2,"loss":1e308,"box_rate":2.06}\n'})
  put_files(base .. "/acc", {["summary.json"] =
    '{"benchmarks":{"b":{"before":{"acc":1e308,"acc_ci95":[-1e308,1e308],"n":3},"after":{"acc":0.5,"n":3}}}}'})
  put_files(base .. "/arr", {["summary.json"] =
    '{"benchmarks":{"b":{"before":{"acc":0.5,"n":3},"after":[0.7,0.8]}}}'})
  for _, name in ipairs({"ulp", "steps", "lens", "wide", "one", "loss", "acc", "arr"}) do
    local ok, h = pcall(report.render, {base .. "/" .. name})
    H.ok(ok, name .. ": " .. tostring(h))
    if ok then
      local bad = bad_coords(h)
      H.eq(#bad, 0, name .. ": non-finite attributes: " .. table.concat(bad, " ", 1, math.min(#bad, 5)))
      H.eq(check_svg_wellformed(h) > 0, true, name .. ": plots drawn")
      H.ok(not h:find(">%-?inf<") and not h:find("[%-?inf", 1, true), name .. ": inf in a table")
    end
  end
  local h = report.render({base .. "/acc"})
  H.ok(h:find("outside [0, 1]", 1, true), "out-of-range accuracy flagged")
  h = report.render({base .. "/arr"})
  H.ok(h:find("benchmarks.b.after is not an object", 1, true), "array phase noted")
end)

H.case("render: one accuracy row compares one metric", function()
  local d = root .. "/mixed-metrics"
  put_files(d, {["summary.json"] = '{"benchmarks":{"b":{"before":{"pass@1":0.8,"n":3},"after":{"acc":0.0,"n":3}}}}'})
  local h = report.render({d})
  H.ok(not h:find("-80.0", 1, true), "no change across two metrics")
  H.ok(h:find("before: summary pass@1; after: summary acc", 1, true), "both sources named")
  -- when the after side also has pass@1, that one is compared
  put_files(d, {["summary.json"] = '{"benchmarks":{"b":{"before":{"pass@1":0.8,"n":3},'
                                   .. '"after":{"acc":0.0,"pass@1":0.9,"n":3}}}}'})
  h = report.render({d})
  H.ok(h:find(">+10.0<", 1, true), "pass@1 against pass@1")
end)

H.case("config flattening is deterministic; null and object benchmarks", function()
  local d = root .. "/flat"
  put_files(d, {["config.json"] = '{"name":"flat","a.b":"flat","a":{"b":"nested"},"l":[1,null,"x"]}',
                ["eval_before.jsonl"] = '{"benchmark":{"a":1},"id":1,"greedy":{"correct":true}}\n'
                                        .. '{"benchmark":"ok","id":2,"greedy":{"correct":true}}\n'})
  local h = report.render({d})
  H.ok(h:find("<code>a.b</code></td><td>nested</td>", 1, true), "first in key order kept")
  H.ok(h:find("<code>a.b (2)</code></td><td>flat</td>", 1, true), "the colliding key kept too")
  H.ok(h:find("collide once flattened", 1, true), "collision reported")
  H.ok(h:find("[1, null, x]", 1, true), "null in a list")
  H.ok(not h:find("userdata", 1, true) and not h:find("table: ", 1, true), "no Lua addresses")
  H.ok(h:find("benchmark is not a string", 1, true), "object benchmark noted")
  local flat = report.flatten({["a.b"] = 1, a = {b = 2}, z = {y = 1, x = 2}})
  H.eq(flat["a.b"], "2", "nested a.b first"); H.eq(flat["a.b (2)"], "1", "flat a.b second")
end)

-- (twenty-eighth session) tostring wrote a NaN set in a loaded run's config as "-nan" (0/0 on x86)
-- or "nan" (-(0/0)); every message says "nan" (cli.show)
H.case("a non-finite config value of a loaded run is shown as nan / inf / -inf", function()
  local d = root .. "/nonfinite"
  put_files(d, {["config.json"] = '{"name":"nonfinite","lr":0.001}'})
  local run = report.load_run(d)
  run.config.a, run.config.b, run.config.c, run.config.d = 0 / 0, -(0 / 0), 1 / 0, -1 / 0
  run.config.l = {0 / 0, 1}
  local h = report.render({run})
  for k, v in pairs({a = "nan", b = "nan", c = "inf", d = "-inf", l = "[nan, 1]"}) do
    H.ok(h:find("<code>" .. k .. "</code></td><td>" .. v .. "</td>", 1, true), k .. " shown as " .. v)
  end
  H.ok(not h:find("-nan", 1, true), "no -nan")
end)

H.case("control characters never reach the page or the terminal raw", function()
  local e = report.escape("a\0b\1c\7d\27[31me\127f\tg")
  H.ok(not e:find("[%z\1-\8\11\12\14-\31\127]"), "no control characters: " .. e)
  H.ok(e:find("a\239\191\189b", 1, true), "replaced by U+FFFD")
  H.ok(e:find("\tg", 1, true), "tab kept")
  local t = report.terminal_safe("dir\1name\27[2J\n")
  H.eq(t, "dir\\x01name\\x1B[2J\\x0A", "terminal text")
  local d = root .. "/ctl\1dir"
  put_files(d, {["config.json"] = '{"name":"n\\u0000a\\u0007m\\u001be","k":"v\\u0001"}'})
  local h = report.render({d})
  H.ok(not h:find("[%z\1-\8\11\12\14-\31\127]"), "page has no control characters")
end)

H.case("grids: malformed grid.json and a dir outside the grid are noted; long names cut", function()
  local g = root .. "/badgrid"
  put_files(g .. "/r1", {["config.json"] = '{"name":"r1"}'})
  put_files(g, {["grid.json"] = '{"runs": [oops]}'})
  local dirs, notes = report.expand({g})
  H.eq(dirs[1], g .. "/r1", "folders used instead")
  H.ok(notes and notes[1] and notes[1]:find("grid.json", 1, true), "malformed grid.json noted")
  H.ok(report.render({g}):find("runs found by their folders instead", 1, true), "on the page")
  local g2 = root .. "/escgrid"
  put_files(g2 .. "/ok", {["config.json"] = '{"name":"ok"}'})
  put_files(g2, {["grid.json"] = '{"runs":[{"dir":"ok"},{"dir":"../rlsc-a"},{"dir":"/etc"},{"dir":"a/../../x"}]}'})
  dirs, notes = report.expand({g2})
  H.eq(#dirs, 1, "only the run inside the grid"); H.eq(dirs[1], g2 .. "/ok", "ok")
  H.eq(#(notes or {}), 3, "three refused")
  H.ok(notes and notes[1]:find("outside the grid; refused", 1, true), tostring(notes and notes[1]))
  local long = root .. "/longname"
  put_files(long, {["config.json"] = '{"name":"' .. string.rep("n", 300) .. '"}',
                   ["summary.json"] = '{"benchmarks":{"' .. string.rep("b", 300) .. '":{"after":{"acc":0.5}}}}'})
  local h = report.render({long})
  H.ok(not h:find(string.rep("n", 201), 1, true), "run name cut")
  H.ok(h:find(string.rep("n", 199) .. "…", 1, true), "with an ellipsis")
  H.ok(not h:find(string.rep("b", 201), 1, true), "benchmark name cut")
end)

-- (audit) A single-benchmark summary (rlsc on the toy world writes {"before", "after",
-- "config"}) names no benchmark; its eval records do. One run, benchmark and metric is one row
-- and one chart, under the records' name, not once as "all" and once as "toy-mixed".
H.case("single-benchmark summary takes the eval records' benchmark name: one row", function()
  local d = root .. "/rlsc-single"
  local rec_b = '{"benchmark":"toy-mixed","id":%d,"greedy":{"correct":%s,"length":5,"logprob":-1},'
                .. '"samples":[{"correct":true,"extracted":"1","length":4,"logprob":-2}]}\n'
  put_files(d, {["config.json"] = '{"recipe":"rlsc","name":"single","task":"mixed"}',
                ["summary.json"] = '{"before":{"acc":0.5,"n":2,"distinct_answers":1.5},'
                                   .. '"after":{"acc":1.0,"n":2},"config":{"recipe":"rlsc"}}',
                ["eval_before.jsonl"] = rec_b:format(1, "true") .. rec_b:format(2, "false"),
                ["eval_after.jsonl"] = rec_b:format(1, "true") .. rec_b:format(2, "true")})
  local h = report.render({d})
  H.eq(count(h, "<tr><td>toy%-mixed</td>"), 1, "one accuracy row")
  H.ok(not h:find("<tr><td>all</td>", 1, true), "no row named all")
  H.eq(count(h, 'aria%-label="toy%-mixed"'), 1, "one accuracy chart")
  H.ok(not h:find('aria-label="all"', 1, true), "no chart named all")
  H.ok(h:find("<td>toy-mixed</td><td>distinct_answers</td>", 1, true), "summary metrics under the name")
  -- records of two benchmarks: the summary stays "all" (it is their aggregate); the config
  -- names the benchmark when the records do not
  local d2 = root .. "/single-config"
  put_files(d2, {["config.json"] = '{"recipe":"eval","name":"x","benchmark":"gsm8k"}',
                 ["summary.json"] = '{"before":{"acc":0.5,"n":2}}'})
  h = report.render({d2})
  H.eq(count(h, "<tr><td>gsm8k</td>"), 1, "named by config.benchmark"); H.ok(not h:find("<tr><td>all</td>", 1, true))
  local d3 = root .. "/single-two"
  put_files(d3, {["summary.json"] = '{"before":{"acc":0.5,"n":2}}',
                 ["eval_before.jsonl"] = '{"benchmark":"a","id":1,"greedy":{"correct":true}}\n'
                                         .. '{"benchmark":"b","id":1,"greedy":{"correct":false}}\n'})
  h = report.render({d3})
  H.eq(count(h, "<tr><td>all</td>"), 1, "aggregate kept as all")
  H.eq(count(h, "<tr><td>a</td>"), 1); H.eq(count(h, "<tr><td>b</td>"), 1)
end)

-- (audit) answer diversity over steps (collapse) is a training curve when logged.
H.case("answer_diversity is a training curve", function()
  local d = root .. "/diversity"
  put_files(d, {["steps.jsonl"] = '{"step":1,"loss":1,"answer_diversity":0.5}\n'
                                  .. '{"step":2,"loss":0.5,"answer_diversity":0.25}\n'})
  local h = report.render({d})
  H.ok(h:find('aria-label="answer diversity (distinct answers / samples)"', 1, true), "curve drawn")
  local d2 = root .. "/no-diversity"
  put_files(d2, {["steps.jsonl"] = '{"step":1,"loss":1}\n'})
  H.ok(not report.render({d2}):find("answer diversity", 1, true), "optional: absent without data")
end)

-- (audit) An interval in summary.json that leaves [0, 1] (written before evaluate clipped its
-- Student t interval) is shown clipped, not replaced by another method's.
H.case("summary intervals are clipped to [0, 1]", function()
  local d = root .. "/ci-clip"
  put_files(d, {["summary.json"] = '{"benchmarks":{"b":{"before":{"pass@1":0.5,"pass@1_ci95":[-0.121,1.121],"n":3}}}}'})
  local h = report.render({d})
  H.ok(h:find("<td class=\"n\">50.0</td><td class=\"n\">[0.0, 100.0]</td>", 1, true), "clipped interval")
  -- a zero-width one (a Student t interval of six problems all at 0) gives way to Wilson's
  -- (twenty-first session: "[0.0, 0.0]" was shown)
  put_files(d, {["summary.json"] = '{"benchmarks":{"b":{"before":{"pass@1":0,"pass@1_ci95":[0,0],"n":6}}}}'})
  local lo, hi = report.wilson(0, 6)
  h = report.render({d})
  H.ok(h:find(string.format("<td class=\"n\">0.0</td><td class=\"n\">[%.1f, %.1f]</td>", 100 * lo, 100 * hi), 1, true)
       and hi > 0.3, "Wilson interval of 0 of 6")
end)

-- (audit) recipes/eval.lua --out OUT writes OUT/summary.json and OUT/<bench>/ per benchmark:
-- the report shows the benchmark folders, not OUT as a run without config or eval files.
H.case("an eval.lua output folder expands to its benchmark folders", function()
  local out = root .. "/eval-out"
  local rec = '{"benchmark":"%s","id":1,"greedy":{"correct":true,"length":7,"logprob":-3}}\n'
  put_files(out, {["summary.json"] = '{"config":{"recipe":"eval","benchmarks":["zeta","alpha"]},'
                  .. '"benchmarks":{"zeta":{"before":{"acc":1,"n":1}},"alpha":{"before":{"acc":1,"n":1}}}}'})
  for _, b in ipairs({"zeta", "alpha"}) do
    put_files(out .. "/" .. b, {["config.json"] = '{"recipe":"eval","name":"' .. b .. '","benchmark":"' .. b .. '"}',
                                ["eval_before.jsonl"] = rec:format(b),
                                ["eval_before.settings.json"] = '{"benchmark":"' .. b .. '"}',
                                ["summary.json"] = '{"benchmarks":{"' .. b .. '":{"before":{"acc":1,"n":1}}}}'})
  end
  local dirs = report.expand({out})
  H.eq(#dirs, 2, "two benchmark folders"); H.eq(dirs[1], out .. "/zeta", "in the invocation's order")
  H.eq(dirs[2], out .. "/alpha")
  local h = report.render({out})
  -- runs table: run, directory, config, steps, eval before, eval after, summary
  for _, b in ipairs({"zeta", "alpha"}) do
    H.ok(h:find("<code>" .. report.escape(out .. "/" .. b) .. '</code></td><td>ok</td><td class="nodata">missing</td>'
                .. '<td class="n">1</td>', 1, true), b .. ": config and eval before found")
  end
  H.ok(not h:find("<code>" .. report.escape(out) .. "</code>", 1, true), "OUT itself is no run")
  H.ok(h:find('aria-label="zeta"', 1, true) and h:find('aria-label="alpha"', 1, true), "an accuracy chart each")
  H.ok(h:find("n=1, mean 7", 1, true), "length histograms drawn")
  -- a folder of its own run files is a run even with eval folders inside
  local d2 = root .. "/run-with-subs"
  put_files(d2, {["config.json"] = '{"recipe":"rlsc"}'})
  put_files(d2 .. "/zeta", {["eval_before.settings.json"] = "{}"})
  H.eq(report.expand({d2})[1], d2, "a run stays a run")
  -- (twenty-fourth session) an ablate grid of rlsc --data runs (they write eval settings files
  -- too) was read as an eval output: grid.json's order and the grid itself were lost
  local g = root .. "/grid-of-data-runs"
  put_files(g, {["grid.json"] = '{"recipe":"recipes/rlsc.lua","runs":[{"dir":"seed=2"},{"dir":"seed=1"}]}'})
  for _, r in ipairs({"seed=1", "seed=2"}) do
    put_files(g .. "/" .. r, {["config.json"] = '{"recipe":"rlsc"}', ["eval_before.settings.json"] = "{}",
                              ["eval_before.jsonl"] = rec:format("gsm8k")})
  end
  local runs, _, grids = report.expand({g})
  H.eq(#grids, 1, "the folder is a grid"); H.eq(grids[1], g)
  H.eq(runs[1], g .. "/seed=2", "grid.json's order"); H.eq(runs[2], g .. "/seed=1")
  -- a folder of rlsc --data runs without grid.json: runs, not an eval output's benchmarks
  local f = root .. "/folder-of-data-runs"
  put_files(f .. "/a", {["config.json"] = '{"recipe":"rlsc"}', ["eval_before.settings.json"] = "{}"})
  runs = report.expand({f})
  H.eq(#runs, 1); H.eq(runs[1], f .. "/a", "found as a run inside the folder")
end)

-- Headless browser check --------------------------------------------------------------------

local function png_size(path)
  local s = slurp(path)
  if not s or #s < 24 or s:sub(1, 8) ~= "\137PNG\r\n\26\n" then return nil end
  return #s, string.unpack(">I4", s, 17), string.unpack(">I4", s, 21)
end

local function screenshot(html_path, png, logf, profile)
  local cmd = table.concat({"timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu",
    "--disable-quic --no-first-run --disable-background-networking --disable-component-update",
    "--disable-sync --hide-scrollbars --enable-logging=stderr --v=0",
    "--user-data-dir=" .. sh_quote(profile), "--screenshot=" .. sh_quote(png),
    "--window-size=1200,2000", sh_quote("file://" .. html_path), ">" .. sh_quote(logf), "2>&1"}, " ")
  return os.execute(cmd)
end


-- >>> (audit_w) each number of a summary once in "Summary metrics" (its docs/RUNDIR.md name, as
-- ablate's results do); a toy rlsc summary without eval records keeps its benchmark's name; a
-- grid's page points to ablate's results.md / results.csv
H.case("summary metrics: a number held under two names is one row, RUNDIR.md's", function()
  local d = root .. "/two-names"
  put_files(d, {["config.json"] = '{"recipe":"rlsc","name":"two"}',
                ["summary.json"] = '{"before":{"acc":0.5,"greedy_acc":0.5,"maj4":0.25,"maj@4":0.25,'
                                   .. '"pass2":0.6,"pass@2":0.6,"pass1_t05":0.3,"pass@1":0.3,"mean_length":9,'
                                   .. '"benchmark":"toy-mixed"},'
                                   .. '"after":{"acc":0.75,"greedy_acc":0.75,"maj4":0.5,"maj@4":0.5,'
                                   .. '"pass2":0.7,"pass@2":0.7,"pass1_t05":0.4,"pass@1":0.4,"mean_length":8,'
                                   .. '"benchmark":"toy-mixed"}}'})
  local h = report.render({d})
  for _, k in ipairs({"acc", "maj@4", "pass@2", "pass@1", "mean_length"}) do
    H.eq(count(h, "<td>" .. k:gsub("%p", "%%%0") .. "</td><td class=\"n\">"), 1, k .. " once")
  end
  for _, k in ipairs({"greedy_acc", "maj4", "pass2", "pass1_t05"}) do
    H.ok(not h:find("<td>" .. k .. "</td>", 1, true), k .. " is a second name")
  end
  H.ok(h:find("<td>toy-mixed</td><td>acc</td>", 1, true), "named after the summary's benchmark")
  -- (twenty-fourth session) settings and counts of a stage are no outcomes: their own table
  local d2 = root .. "/bookkeeping"
  put_files(d2, {["config.json"] = '{"recipe":"rlsc","name":"bk"}',
                 ["summary.json"] = '{"before":{"acc":0.5,"n":300,"wall_s":1e-5,"resumed":4,"generated_tokens":0,'
                                    .. '"temperature":0.6,"acc_ci95":0.05},'
                                    .. '"after":{"acc":0.75,"n":300,"wall_s":0.08,"resumed":0,"generated_tokens":128,'
                                    .. '"temperature":0.6,"acc_ci95":0.05}}'})
  local h2 = report.render({d2})
  local metrics, book = h2:match("<h2>Summary metrics</h2>(.-)<h3>Settings and bookkeeping of each stage</h3>(.-)</table>")
  H.ok(metrics and book, "two tables")
  H.ok(metrics:find("<td>acc</td>", 1, true), "acc is a metric")
  for _, k in ipairs({"n", "wall_s", "resumed", "generated_tokens", "temperature", "acc_ci95"}) do
    H.ok(not metrics:find("<td>" .. k .. "</td>", 1, true) and book:find("<td>" .. k .. "</td>", 1, true),
         k .. " is bookkeeping")
  end
end)

H.case("a grid's page points to ablate's results.md and results.csv", function()
  local h = report.render({root .. "/grid"})
  H.ok(h:find("results.md", 1, true) and h:find("results.csv", 1, true), "grid page")
  H.ok(not report.render({dir_a}):find("results.md", 1, true), "not on a lone run's page")
  local out = root .. "/grid-report.html"
  H.eq(dofile("recipes/report.lua")({out, root .. "/grid"}), 0)
  H.ok(slurp(out):find("results.md", 1, true), "recipes/report.lua's page too")
  -- (seventeenth session) toy_compare's grid (no recipe in grid.json, its table in --md) was told
  -- to run ablate --report-only
  local tc = root .. "/tc-grid"
  os.execute("mkdir -p " .. sh_quote(tc .. "/method=l2,seed=1"))
  assert(jsonio.write_json_atomic(tc .. "/grid.json", {axes = {method = {"l2"}, seed = {1}}, runs = {}}))
  local t = report.render({tc})
  H.ok(not t:find("report-only", 1, true) and t:find("its --md file", 1, true), "toy_compare's grid")
end)

if not io.open("/usr/bin/chromium", "rb") then
  H.skip("chromium render", "/usr/bin/chromium not installed")
else
  H.case("chromium renders the report without console errors and not blank", function()
    local out = root .. "/shot.html"
    assert(report.write(out, {dir_a, root .. "/grid", dir_empty, dir_bad}))
    local blank = root .. "/blank.html"
    local f = assert(io.open(blank, "wb")); f:write("<!DOCTYPE html><html><body></body></html>"); f:close()
    screenshot(out, root .. "/shot.png", root .. "/shot.log", root .. "/profile1")
    screenshot(blank, root .. "/blank.png", root .. "/blank.log", root .. "/profile2")
    local log = slurp(root .. "/shot.log") or ""
    H.ok(not log:find("Uncaught", 1, true), "uncaught error: " .. log)
    -- the page has no script, so any console message (logged as INFO:CONSOLE or ERROR:CONSOLE,
    -- whatever its level) is unexpected
    H.ok(not log:find(":CONSOLE", 1, true), "console message: " .. log)
    H.ok(not log:find("net::ERR", 1, true), "network error: " .. log)
    local size, w, h = png_size(root .. "/shot.png")
    local bsize, bw, bh = png_size(root .. "/blank.png")
    H.ok(size and bsize, "both screenshots written: " .. log)
    H.eq(w, 1200, "width"); H.eq(h, 2000, "height"); H.eq(bw, w, "blank width"); H.eq(bh, h, "blank height")
    H.ok(size > 8 * bsize, string.format("report screenshot %d bytes vs blank %d", size, bsize))
    local keep = os.getenv("CONFIT_REPORT_KEEP")
    if keep and keep ~= "" then
      os.execute("cp " .. sh_quote(out) .. " " .. sh_quote(root .. "/shot.png") .. " " .. sh_quote(keep))
    end
  end)
end

os.execute("rm -rf " .. sh_quote(root))
-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, P02)
do
local progress = require "confit.progress"

H.case("progress: a rate below 1 per second is shown as seconds per item", function()
  local t, out = 0, {}
  local stream = {write = function(_, ...) for _, s in ipairs({...}) do out[#out + 1] = s end end}
  local p = progress.new({total = 10, mode = "plain", clock = function() return t end, stream = stream,
                          label = "eval", unit = "q"})
  t = 8; p:update(2)                     -- 0.25 q/s
  local text = table.concat(out)
  H.ok(text:find("4.0 s/q", 1, true), text)
end)

-- (twenty-ninth session, mutation testing of confit.progress: cases no other test caught)
H.case("progress: durations and rates as printed, the unknown-total line, defaults, bar redraws", function()
  local fd = progress.format_duration
  H.eq(fd(59), "59s"); H.eq(fd(59.6), "1:00", "rounded to 60 s: minutes"); H.eq(fd(60), "1:00")
  H.eq(fd(125), "2:05"); H.eq(fd(3600), "1:00:00"); H.eq(fd(0/0), "?"); H.eq(fd(math.huge), "?")
  local t, out = 0, {}
  local stream = {write = function(_, ...) for _, s in ipairs({...}) do out[#out + 1] = s end end}
  local function run(opts, steps)
    out, t = {}, 0
    opts.stream, opts.clock, opts.mode = stream, function() return t end, opts.mode or "plain"
    local p = progress.new(opts)
    for _, dt in ipairs(steps) do t = t + dt; p:step() end
    return p
  end
  -- 1.5 items a second: "1.50 it/s", not seconds per item; a rate within the first second
  run({total = 2, label = "a"}, {2 / 3})
  H.eq(table.concat(out), "a  1/2 ( 50%)  1.50 it/s  ETA 1s\n")
  -- unknown total: the count, the rate, no ETA; default interval 30 s
  run({label = "gen"}, {29, 1})
  H.eq(table.concat(out), "gen  2  15.0 s/it\n")
  -- nothing done: a rate of 0
  local p = run({total = 3, label = "z"}, {})
  t = 5; p:finish()
  H.eq(table.concat(out), "z  0/3 (  0%)  0 it/s  in 5s\n")
  -- a bar redraw shows the ETA and stays on its line; finish ends it with the time taken
  p = run({total = 4, label = "b", mode = "bar", width = 4}, {1})
  H.eq(table.concat(out), "\rb  [#...]  1/4 ( 25%)  1.00 it/s  ETA 3s\27[K")
  local drawn = #out
  p:finish()
  H.eq(table.concat(out, "", drawn + 1), "\rb  [#...]  1/4 ( 25%)  1.00 it/s  in 1s\27[K\n")
  run({total = 4, label = "b", mode = "bar"}, {1})
  H.ok(table.concat(out):find("  [" .. string.rep("#", 8) .. string.rep(".", 22) .. "]  ", 1, true),
       "30 characters by default: " .. table.concat(out))
end)
end

-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, report)
do
local jsonio = require "confit.jsonio"
local report = require "confit.report"
local cli = require "confit.cli"

local q, put = sh_quote, put_tree
local root = tmpdir()

-- the interval cell the accuracy table shows for a share interval
local function ci_text(lo, hi) return ("[%.1f, %.1f]"):format(100 * lo, 100 * hi) end

H.case("eval_accuracy: a benchmark with greedy and sample-only records is 'mixed' (mutant r04)", function()
  local acc = report.eval_accuracy({
    {benchmark = "b", greedy = {correct = true}},
    {benchmark = "b", samples = {{correct = true}, {correct = false}}},
  })
  H.near(acc.b.acc, 0.75, 1e-12, "mean of 1 and 0.5")
  H.eq(acc.b.kind, "mixed", "greedy correctness and pass@1 in one benchmark")
end)

H.case("a summary with acc and pass@1 is shown by its acc (greedy), the headline (mutant r06)", function()
  local d = put(root .. "/both-metrics", {
    ["config.json"] = {recipe = "rlsc", benchmark = "toy-mixed"},
    ["summary.json"] = {before = {acc = 0.2, ["pass@1"] = 0.5, n = 10},
                        after = {acc = 0.6, ["pass@1"] = 0.7, n = 10}}})
  local h = report.render({d})
  H.ok(h:find('<td class="n">20.0</td>', 1, true), "before acc 20.0")
  H.ok(h:find('<td class="n">60.0</td>', 1, true), "after acc 60.0")
  H.ok(h:find(">+40.0<", 1, true), "change acc +40.0")
  H.ok(h:find("<td>summary acc</td>", 1, true), "source: summary acc")
end)

H.case("a summary share without an interval: Wilson of the rounded count, 0.29 x 100 = 29 (mutant r07)", function()
  -- 0.29 * 100 is 28.999999999999996 in doubles: the count is rounded, not floored
  local d = put(root .. "/wilson-round", {
    ["config.json"] = {benchmark = "b"},
    ["summary.json"] = {before = {acc = 0.29, n = 100}}})
  local h = report.render({d})
  local lo, hi = report.wilson(29, 100)
  H.ok(h:find(ci_text(lo, hi), 1, true), "Wilson(29, 100) = " .. ci_text(lo, hi))
  local lo2, hi2 = report.wilson(28, 100)
  H.ok(not h:find(ci_text(lo2, hi2), 1, true), "not Wilson(28, 100)")
end)

H.case("the eval files' interval is used only for the same number as the summary's (mutant r08)", function()
  local recs = {}
  for i = 1, 10 do recs[i] = {benchmark = "b", id = i, greedy = {correct = i <= 3}} end
  local d = put(root .. "/eval-differs", {
    ["summary.json"] = {before = {acc = 0.9, n = 10}},
    ["eval_before.jsonl"] = recs})
  local h = report.render({d})
  local lo, hi = report.wilson(9, 10)
  H.ok(h:find(ci_text(lo, hi), 1, true), "the summary's acc 0.9 with Wilson(9, 10) " .. ci_text(lo, hi))
  local elo, ehi = report.wilson(3, 10)
  H.ok(not h:find(ci_text(elo, ehi), 1, true), "not the eval files' 3/10 interval around 90%")
end)

H.case("training curves are drawn against steps.jsonl's step, not the record's index (mutant r13)", function()
  local d = put(root .. "/steps-by-10", {["steps.jsonl"] = '{"step":10,"loss":1.0}\n{"step":20,"loss":0.8}\n'
                                                         .. '{"step":30,"loss":0.5}\n'})
  local h = report.render({d})
  local loss = h:match("<svg[^>]-aria%-label=\"loss\".-</svg>")
  H.ok(loss, "a loss plot")
  H.ok(loss:find('text%-anchor="middle" fill="#444">30</text>'), "x tick at step 30")
  H.ok(not loss:find('text%-anchor="middle" fill="#444">3</text>'), "no x tick at 3 (the index)")
end)

H.case("two runs of one name are told apart by their folders (mutant r14)", function()
  local a = put(root .. "/g1/seed=1", {["steps.jsonl"] = '{"step":1,"loss":1}\n'})
  local b = put(root .. "/g2/seed=1", {["steps.jsonl"] = '{"step":1,"loss":2}\n'})
  local h = report.render({a, b})
  H.ok(h:find("seed=1 (" .. report.escape(b) .. ")", 1, true), "the second run named with its folder")
end)

H.case("the histograms count sampled completions where there are any, greedy otherwise (mutant r17)", function()
  local d = put(root .. "/greedy-and-samples", {["eval_before.jsonl"] = {
    {benchmark = "b", id = 1, greedy = {correct = true, length = 5, logprob = -1},
     samples = {{correct = true, length = 10, logprob = -2}, {correct = true, length = 11, logprob = -3},
                {correct = false, length = 12, logprob = -4}}}}})
  local h = report.render({d})
  H.ok(h:find("before (n=3, mean 11)", 1, true), "the three samples' lengths")
  H.ok(not h:find("before (n=1, mean 5)", 1, true), "not the greedy one")
end)

H.case("a summary interval that does not hold its share is not used (mutant r21)", function()
  local d = put(root .. "/bad-ci", {
    ["config.json"] = {benchmark = "b"},
    ["summary.json"] = {before = {acc = 0.9, acc_ci95 = {0.1, 0.2}, n = 10}}})
  local h = report.render({d})
  H.ok(not h:find("[10.0, 20.0]", 1, true), "the stale interval is dropped")
  local lo, hi = report.wilson(9, 10)
  H.ok(h:find(ci_text(lo, hi), 1, true), "Wilson(9, 10) instead")
end)

H.case("recipes/report.lua: a run directory that does not exist is refused, nothing written (mutant rr2)", function()
  local main = dofile("recipes/report.lua")
  local out = root .. "/nope.html"
  local ok, err = pcall(main, {out, root .. "/no-such-run"})
  H.ok(not ok, "refused")
  H.ok(cli.message(err):find("no such directory", 1, true), cli.message(err))
  H.ok(not io.open(out, "rb"), "no page written")
end)

-- (twenty-fourth session) a run given alone and inside its grid was counted twice ("report: 5 runs"
-- for 4 distinct runs)
local function grid_of(g, names)
  local runs = {}
  for i, n in ipairs(names) do
    put(g .. "/" .. n, {["steps.jsonl"] = '{"step":1,"loss":' .. i .. '}\n'})
    runs[i] = {dir = n}
  end
  put(g, {["grid.json"] = {axes = {seed = {1, 2}}, runs = runs}})
  return g
end

H.case("confit.realpath resolves links, . and ..; a missing path is nil, message, errno", function()
  local confit = require "confit"
  local d = put(root .. "/real/x", {})
  assert(os.execute("ln -s x " .. q(root .. "/real/lnk")))
  local want = confit.realpath(d)
  H.ok(want and want:sub(1, 1) == "/" and not want:find("/%.%.?/"), tostring(want))
  H.eq(confit.realpath(root .. "/real/lnk"), want, "a link")
  H.eq(confit.realpath(root .. "/real/./x/../x/"), want, ". and ..")
  local none, msg, code = confit.realpath(root .. "/real/missing")
  H.eq(none, nil); H.ok(msg:find("missing", 1, true), msg); H.eq(code, 2, "ENOENT")
end)

H.case("expand: a run reached twice counts once, and a fourth result says so once", function()
  local g = grid_of(root .. "/dupgrid", {"method=l2,seed=1", "method=l2,seed=2"})
  local other = put(root .. "/dup-other", {["steps.jsonl"] = '{"step":1,"loss":1}\n'})
  local runs, _, grids, repeats = report.expand({g .. "/method=l2,seed=1", other, g, other .. "/", g})
  local function lines(list) return table.concat(list, "\n") end
  H.eq(lines(runs), lines({g .. "/method=l2,seed=1", other, g .. "/method=l2,seed=2"}), "each run once, where it came first")
  H.eq(lines(grids), g, "the grid once")
  H.eq(lines(repeats), lines({"run " .. g .. "/method=l2,seed=1 given twice, counted once",
                              other .. " given twice, counted once", g .. " given twice, counted once"}))
  -- two spellings of one folder: a link and a "./" path
  assert(os.execute("ln -s dupgrid " .. q(root .. "/dupgrid-link")))
  runs, _, _, repeats = report.expand({root .. "/dupgrid-link/method=l2,seed=2", root .. "/./dupgrid"})
  H.eq(#runs, 2, "two runs: " .. table.concat(runs, ", "))
  H.eq(lines(repeats), ("run %s/./dupgrid/method=l2,seed=2 given twice (also as %s/dupgrid-link/method=l2,seed=2), counted once")
                       :format(root, root))
  H.eq(#select(4, report.expand({g, other})), 0, "nothing repeated, nothing said")
end)

H.case("recipes/report.lua: a run given alone and in its grid counts once, said once on stderr", function()
  local exe = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
  if arg and arg[-1] and arg[-1]:match("confit$") then exe = arg[-1] end
  local g = grid_of(root .. "/RUNS/grid", {"method=l2,seed=1", "method=l2,seed=2", "method=l1,seed=1",
                                           "method=l1,seed=2"})
  local out, err = root .. "/dup.html", root .. "/dup.err"
  local p = assert(io.popen(("%s recipes/report.lua %s %s %s 2> %s"):format(q(exe), q(out), q(g .. "/method=l2,seed=1"),
                                                                               q(g), q(err))))
  local stdout = p:read("a")
  local ok = p:close()
  local stderr = H.read(err) or ""
  H.ok(ok, "exit status 0: " .. stderr)
  H.eq(stdout, "report: 4 runs -> " .. out .. "\n")
  H.eq(stderr, "report: run " .. g .. "/method=l2,seed=1 given twice, counted once\n")
  local page = slurp(out)
  H.ok(count(page, ">method=l1,seed=2") > 0, "the runs are named on the page")
  H.eq(count(page, ">method=l2,seed=1"), count(page, ">method=l1,seed=2"), "the run is named as often as another run")
end)

os.execute("rm -rf " .. q(root))
end

-- (twenty-sixth session, mutation testing of the report: cases that fail on mutants the suite let
-- through; expected numbers worked out by hand from the formulas the comments name)
do
local jsonio = require "confit.jsonio"
local report = require "confit.report"

local q, put = sh_quote, put_tree
local root = tmpdir()

local Z = 1.959963984540054   -- the 97.5% normal quantile the report uses
local function f1(x) return ("%.1f"):format(x) end

H.case("statistics at the edges: no trials, one trial, 0/1 scores take Wilson, empty samples", function()
  H.eq(report.wilson(0, 0), nil, "no trials: no interval")
  H.eq(report.score_interval({}), nil, "no scores: nothing")
  -- one trial: k = n = 1 gives [1 / (1 + z^2), 1], k = 0 gives [0, z^2 / (1 + z^2)]
  local lo, hi = report.wilson(1, 1)
  H.near(lo, 1 / (1 + Z * Z), 1e-12, "wilson(1, 1) lo"); H.eq(hi, 1, "wilson(1, 1) hi")
  lo, hi = report.wilson(0, 1)
  H.eq(lo, 0, "wilson(0, 1) lo"); H.near(hi, Z * Z / (1 + Z * Z), 1e-12, "wilson(0, 1) hi")
  -- scores of 0 and 1 are a share: Wilson at p = 1/2, n = 4 is 1/2 -+ z / (2 sqrt(4 + z^2))
  -- (the normal approximation would give 1/2 -+ z sqrt(1/3) / 2, clipped to [0, 1])
  local m
  m, lo, hi = report.score_interval({1, 0, 1, 0})
  local h = Z / (2 * math.sqrt(4 + Z * Z))
  H.eq(m, 0.5, "mean"); H.near(lo, 0.5 - h, 1e-12, "Wilson lo"); H.near(hi, 0.5 + h, 1e-12, "Wilson hi")
  -- a record with an empty samples list and no greedy completion scores nothing
  local acc = report.eval_accuracy({{benchmark = "b", samples = {}}, {benchmark = "b", greedy = {correct = true}}})
  H.eq(acc.b.n, 1, "one scored record"); H.eq(acc.b.acc, 1, "its score")
end)

H.case("one question: an accuracy of 0 and of 1 with Wilson intervals, and the change", function()
  local d = put(root .. "/one-question", {["config.json"] = {benchmark = "b"},
    ["summary.json"] = {before = {acc = 0, n = 1}, after = {acc = 1, n = 1}}})
  local h = report.render({d})
  local z2 = Z * Z
  local row = ('<td class="n">0.0</td><td class="n">[0.0, %s]</td><td class="n">100.0</td>'
               .. '<td class="n">[%s, 100.0]</td><td class="n">+100.0</td><td class="n">1</td>')
              :format(f1(100 * z2 / (1 + z2)), f1(100 / (1 + z2)))
  H.ok(h:find(row, 1, true), "row " .. row)
  H.ok(not h:find("outside [0, 1]", 1, true), "1 is a share")
end)

H.case("the accuracy table: n of a run with only an after stage; no empty warning; no empty table", function()
  local d = put(root .. "/after-only", {["config.json"] = {benchmark = "b"},
    ["summary.json"] = {after = {acc = 0.5, n = 10}}})
  local h = report.render({d})
  H.ok(h:find('<td class="n">–</td><td class="n">10</td><td>summary acc</td>', 1, true), "n from the after stage")
  H.ok(not h:find('<p class="warn"></p>', 1, true), "no empty warning paragraph")
  H.ok(h:find("Settings and bookkeeping", 1, true), "n is bookkeeping")
  local d2 = put(root .. "/outcomes-only", {["config.json"] = {benchmark = "b"},
    ["summary.json"] = {before = {acc = 0.5}, after = {acc = 0.75}}})
  H.ok(not report.render({d2}):find("Settings and bookkeeping", 1, true), "no bookkeeping table without bookkeeping")
end)

H.case("summary metrics show four significant digits", function()
  local d = put(root .. "/digits", {["config.json"] = {benchmark = "b"},
    ["summary.json"] = {before = {["pass@16"] = 0.8125, mean_length = 612.5}, after = {}}})
  local h = report.render({d})
  H.ok(h:find('<td>pass@16</td><td class="n">0.8125</td>', 1, true), "0.8125")
  H.ok(h:find('<td>mean_length</td><td class="n">612.5</td>', 1, true), "612.5")
end)

H.case("a single-benchmark summary is named after a config's benchmarks list of one", function()
  local d = put(root .. "/bench-list", {["config.json"] = {benchmarks = {"gsm8k"}},
    ["summary.json"] = {before = {acc = 0.5, n = 2}}})
  local h = report.render({d})
  H.ok(h:find("<tr><td>gsm8k</td>", 1, true), "row gsm8k")
  H.ok(not h:find("<tr><td>all</td>", 1, true), "no row all")
end)

H.case("expand: hidden folders are no runs; a folder given thrice is said once; grid.json without runs", function()
  local g = put(root .. "/hidden-grid", {})
  put(g .. "/a", {["config.json"] = {name = "a"}})
  put(g .. "/.trash", {["config.json"] = {name = "old"}})
  local runs = report.expand({g})
  H.eq(table.concat(runs, " "), g .. "/a", "the hidden folder is left out")
  local _, _, _, repeats = report.expand({g, g, g})
  H.eq(table.concat(repeats, "\n"), g .. " given twice, counted once", "one line")
  local g2 = put(root .. "/no-runs-grid", {["grid.json"] = {axes = {seed = {1}}}})
  put(g2 .. "/seed=1", {["config.json"] = {name = "s1"}})
  local notes
  runs, notes = report.expand({g2})
  H.eq(table.concat(runs, " "), g2 .. "/seed=1", "found by its folder")
  H.eq(table.concat(notes, "\n"), g2 .. '/grid.json: no "runs" list; runs found by their folders instead')
end)

-- The plot area of a 350 x 230 chart: left 58, right 12, top 28, bottom 40 (pw 280, ph 162).
H.case("line plots: points placed with 6% padding each way; one step; two-decimal ticks; no data", function()
  local svg = report.line_plot({title = "t", series = {{name = "s", color = "#000", xs = {1, 2}, ys = {1, 2}}}})
  -- y range [1, 2] padded by 0.06 each way: [0.94, 2.06]
  local function Y(v) return f1(28 + 162 - (v - 0.94) / 1.12 * 162) end
  H.ok(svg:find(('<circle cx="58.0" cy="%s"'):format(Y(1)), 1, true), "first point at " .. Y(1) .. ": " .. svg)
  H.ok(svg:find(('<circle cx="338.0" cy="%s"'):format(Y(2)), 1, true), "second point at " .. Y(2))
  -- a single step: x from 0 to 2, ticks 0, 1, 2
  svg = report.line_plot({title = "t", integer_x = true, series = {{name = "s", color = "#000", xs = {1}, ys = {1}}}})
  local xt = {}
  for v in svg:gmatch('y="206.0" text%-anchor="middle" fill="#444">([^<]*)</text>') do xt[#xt + 1] = v end
  H.eq(table.concat(xt, " "), "0 1 2", "x ticks of one step")
  -- values 0 .. 0.05: ticks every 0.01, labelled with two decimals
  svg = report.line_plot({title = "t", series = {{name = "s", color = "#000", xs = {1, 2}, ys = {0, 0.05}}}})
  local yt = {}
  for v in svg:gmatch('text%-anchor="end" fill="#444">([^<]*)</text>') do yt[#yt + 1] = v end
  H.eq(table.concat(yt, " "), "0 0.01 0.02 0.03 0.04 0.05", "y ticks")
  -- no data: says why, escaped
  svg = report.line_plot({title = "t", no_data = "no <x>", series = {{name = "s", color = "#000", xs = {1}, ys = {0 / 0}}}})
  H.ok(svg:find(">no data (no &lt;x&gt;)</text>", 1, true), svg)
  svg = report.line_plot({title = "t", series = {}})
  H.ok(svg:find(">no data</text>", 1, true), svg)
end)

H.case("histograms: one bin per integer over a short range; real bins span the values exactly", function()
  local svg = report.histogram({title = "h", integer = true, bins = 24,
                                series = {{name = "x", color = "#000", values = {1, 2, 3}}}})
  local d = assert(svg:match('<path d="(M[^"]*Z)"'), svg)
  local heights = {}
  for y in d:gmatch("V([%d%.]+)H") do heights[#heights + 1] = y end
  H.eq(#heights, 3, "three bins: " .. d)
  H.ok(heights[1] == heights[2] and heights[2] == heights[3], "equal bars: " .. d)
  svg = report.histogram({title = "h", bins = 4, series = {{name = "x", color = "#000", values = {-4, -2}}}})
  d = assert(svg:match('<path d="(M[^"]*Z)"'), svg)
  H.ok(d:find("^M58%.0 190%.0") and d:find("H338%.0V190%.0Z$"), "from x = -4 to x = -2: " .. d)
end)

H.case("share curves end at 1: a box rate of 1 is drawn at the top of the plot", function()
  local d = put(root .. "/box", {["steps.jsonl"] = '{"step":1,"loss":1,"box_rate":0.5}\n{"step":2,"loss":1,"box_rate":1}\n'})
  local h = report.render({d})
  local box = h:match('<svg[^>]-aria%-label="box rate".-</svg>')
  H.ok(box and box:find('<circle cx="338.0" cy="28.0"', 1, true), tostring(box))
end)

H.case("configuration: with two runs the page says what the highlighted rows mean", function()
  local a = put(root .. "/cfg-a", {["config.json"] = {name = "a", lr = 1}})
  local b = put(root .. "/cfg-b", {["config.json"] = {name = "b", lr = 2}})
  H.ok(report.render({a, b}):find("Highlighted rows differ between the runs", 1, true), "two runs")
  H.ok(not report.render({a}):find("Highlighted rows differ", 1, true), "one run")
end)

H.case("recipes/report.lua: a file as RUNDIR is refused; warnings name their run; one run is 'run'", function()
  local cli = require "confit.cli"
  local main = dofile("recipes/report.lua")
  local f = put(root .. "/a-file", {["x.txt"] = "x"}) .. "/x.txt"
  local ok, err = pcall(main, {root .. "/never.html", f})
  H.ok(not ok and cli.message(err):find("run directory '" .. f .. "' is not a directory", 1, true), tostring(err))
  H.ok(not io.open(root .. "/never.html", "rb"), "no page written")
  local exe = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
  if arg and arg[-1] and arg[-1]:match("confit$") then exe = arg[-1] end
  local d = put(root .. "/config-number", {["config.json"] = "5\n"})
  local out, errf = root .. "/one.html", root .. "/one.err"
  local p = assert(io.popen(("%s recipes/report.lua %s %s 2> %s"):format(q(exe), q(out), q(d), q(errf))))
  local stdout = p:read("a")
  H.ok(p:close(), "exit status 0")
  H.eq(stdout, "report: 1 run -> " .. out .. "\n")
  H.eq(H.read(errf), "report: warning: " .. d .. ": config.json: not an object\n")
end)

H.case("accuracy: greedy before and sampled after are not compared; the problem says so", function()
  local d = put(root .. "/acc-vs-pass1", {
    ["eval_before.jsonl"] = {{benchmark = "b", id = 1, greedy = {correct = true}},
                             {benchmark = "b", id = 2, greedy = {correct = false}}},
    ["eval_after.jsonl"] = {{benchmark = "b", id = 1, samples = {{correct = true}, {correct = false}}}}})
  local h = report.render({d})
  H.ok(h:find("acc-vs-pass1, b: before is eval acc and after is eval pass@1; not compared", 1, true), "the problem")
  H.ok(not h:find("+0.0", 1, true), "no change given")
end)

H.case("line plots: a constant series gets a band of 10% (1 around 0); circles up to 40 points", function()
  local function yticks(ys)
    local xs = {}
    for i = 1, #ys do xs[i] = i end
    local svg = report.line_plot({title = "t", series = {{name = "s", color = "#000", xs = xs, ys = ys}}})
    local t = {}
    for v in svg:gmatch('text%-anchor="end" fill="#444">([^<]*)</text>') do t[#t + 1] = v end
    return table.concat(t, " "), svg
  end
  H.eq(yticks({5, 5}), "4.6 4.8 5.0 5.2 5.4", "5 +- 0.5: ticks every 0.2")
  H.eq(yticks({0, 0}), "-1.0 -0.5 0 0.5 1.0", "0 +- 1: ticks every 0.5")
  local ys = {}
  for i = 1, 40 do ys[i] = i % 3 end
  H.eq(select(2, select(2, yticks(ys)):gsub("<circle ", "")), 40, "40 points: a circle each")
  ys[41] = 1
  H.eq(select(2, select(2, yticks(ys)):gsub("<circle ", "")), 0, "41 points: the line alone")
end)

H.case("accuracy plot: the percent labels lie below the axis", function()
  local svg = report.accuracy_plot({title = "t", rows = {{name = "r", color = "#000", before = {acc = 0.5}}}})
  local axis = tonumber(svg:match('<path d="M%d+ (%d+)H'))
  local n = 0
  for y in svg:gmatch('y="(%d+)" text%-anchor="middle" fill="#444">%d+%%</text>') do
    n = n + 1; H.ok(tonumber(y) > axis, y .. " below " .. axis)
  end
  H.eq(n, 6, "0% to 100% by 20")
end)

H.case("the response-length histogram of a page bins whole tokens", function()
  local d = put(root .. "/lengths", {["eval_before.jsonl"] = {{benchmark = "b", id = 1, samples = {
    {correct = true, length = 1, logprob = -1}, {correct = false, length = 2, logprob = -2},
    {correct = true, length = 3, logprob = -3}}}}})
  local sec = report.render({d}):match("<h2>Response length</h2>(.-)<h2>")
  local path = sec and sec:match('<path d="(M[^"]*Z)"')
  H.eq(path and select(2, path:gsub("H", "")), 3, "one bin per length 1, 2, 3: " .. tostring(path))
end)

H.case("recipes/report.lua: the output file alone is refused", function()
  local cli = require "confit.cli"
  local ok, err = pcall(dofile("recipes/report.lua"), {root .. "/alone.html"})
  H.ok(not ok and getmetatable(err) == cli.UserError, tostring(err))
  H.ok(cli.message(err):find("give the output file and at least one run directory", 1, true), cli.message(err))
end)

H.case("flatten: number keys before string keys; a collision keeps the first", function()
  for _ = 1, 20 do   -- (whatever order pairs() gives)
    local out, dups = report.flatten({["1"] = {b = 2}, z = 0, [3] = 0, [1] = {b = 1}, ["0"] = 0})
    H.eq(out["1.b"], "1"); H.eq(out["1.b (2)"], "2"); H.eq(table.concat(dups, ","), "1.b")
  end
end)

os.execute("rm -rf " .. q(root))
end

H.finish()
