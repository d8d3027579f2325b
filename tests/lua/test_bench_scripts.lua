-- The benchmark scripts (bench/) meet the command line as the recipes do: a bad flag or value, a
-- missing --model or file is one line "<script>: ..." and exit status 1, before anything runs;
-- --help prints the documentation and exits 0; the JSON lines of the quick CPU benchmarks carry
-- the machine's fields (bench/common.lua, bench/README.md). Every command runs side by side in
-- one shell, so the file takes a few seconds (the benchmarks themselves run at their smallest).
local H = dofile("tests/lua/harness.lua")
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

local EXE = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"
local q = cli.shell_quote
local TMP = H.tmpdir()
local NONE = TMP .. "/no-such"
H.mkfifo(TMP .. "/fifo")
local has_python = os.execute("/usr/bin/python3 -c '' > /dev/null 2>&1")
local blas_h
for _, d in ipairs({"/usr/include/x86_64-linux-gnu/openblas-pthread", "/usr/include/openblas", "/usr/include"}) do
  if cli.exists(d .. "/cblas.h") then blas_h = d; break end
end

-- Each case: {name, shell command (run from the project root), want exit status, fragments of
-- the output (stdout and stderr together), optional check(res)}.
local cases = {}
local function add(name, cmd, rc, frags, check)
  cases[#cases + 1] = {name = name, cmd = cmd, rc = rc, frags = frags or {}, check = check}
end
local function lua(script, args) return ("%s bench/%s.lua %s"):format(q(EXE), script, args) end

-- Refusals: one line naming the flag, exit 1 ---------------------------------------------------
local REFUSED = {
  {"gen_bench", "--new 0", "--new must be >= 2, got 0"},
  {"gen_bench", "--batch 0", "--batch must be >= 1, got 0"},
  {"gen_bench", "--reps x", "--reps expects a number, got 'x'"},
  {"gen_bench", "--quick --bogus", "unknown flag --bogus"},
  {"gen_bench", "--new", "--new needs a value"},
  {"gen_bench", "--prompt 4090 --new 10", "4096 positions"},
  -- (--quick after --new set it to 16, which would fit; a run takes seconds, a refusal none)
  {"gen_bench", "--prompt 4080 --new 20 --quick", "--prompt 4080 + --new 20 is more than the model's 4096 positions"},
  {"gen_bench", "--membw " .. q(NONE), "--membw '" .. NONE .. "': no such file"},
  -- (a FIFO is never run: popen would block; twenty-ninth session, it said "no such file")
  {"gen_bench", "--membw " .. q(TMP .. "/fifo"), "--membw '" .. TMP .. "/fifo': not a regular file (a FIFO"},
  {"eval_bench", "--model " .. q(NONE), "--model '" .. NONE .. "': no such directory"},
  {"eval_bench", "--model recipes", "--model 'recipes' is not a model folder"},
  {"eval_bench", "--batch-size abc", "--batch-size wants whole numbers"},
  {"eval_bench", "--batch-size 8,-3", "--batch-size wants whole numbers"},
  {"eval_bench", "--batch-size 0", "--batch-size wants whole numbers in 1 .. 1000000 separated by commas, got '0'"},
  {"eval_bench", "--batch-size 8,,2", "--batch-size wants whole numbers in 1 .. 1000000 separated by commas, got '8,,2'"},
  {"eval_bench", "--questions 0", "--questions must be >= 1"},
  {"eval_bench", "--n -1", "--n must be >= 0"},
  {"eval_bench", "--max-new-tokens x", "--max-new-tokens expects a number"},
  {"eval_bench", "--model", "--model needs a value"},
  {"gpu_bench", "--only x", "--only must be one of decode, train, rlsc, all, got 'x'"},
  {"gpu_bench", "--shape 3B", "--shape must be one of 1.5B, 7B, all"},
  {"gpu_bench", "--budget -1", "--budget must be >= 0"},
  {"gpu_bench", "--micro_batch 0", "--micro_batch must be >= 1"},
  {"gpu_bench", "--new 1 --quick", "--new must be >= 2"},
  {"grade_bench", "0", "--repeats must be >= 1"},
  {"grade_bench", "x", "--repeats expects a number, got 'x'"},
  {"grade_bench", "1 2", "unexpected argument '2'"},
  {"tokenizer_bench", q(NONE), "--tokenizer '" .. NONE .. "': no such file"},
  -- (a tokenizer given: without ../shared the default one is absent, and that is a skip)
  {"tokenizer_bench", "--tokenizer examples/toy/model/tokenizer.json --data " .. q(NONE),
   "--data '" .. NONE .. "': no such file"},
  -- (a folder opened on Linux and failed when read, with a traceback)
  {"tokenizer_bench", "--tokenizer examples/toy/model/tokenizer.json --data bench", "--data 'bench' is a folder, not a file"},
  {"sample_bench", "--reps 0", "--reps must be >= 1"},
  {"swiglu_bench", "--reps -1", "--reps must be >= 1"},
  {"train_step", "--reps 0", "--reps must be >= 1"},
  {"train_step", "--profile=2", "--profile is a flag"},
  {"toy_bench", "--reps 0", "--reps must be >= 1"},
  {"toy_bench", "--n 0 --no-torch", "--n must be >= 1"},
  {"toy_bench", "--model " .. q(NONE), "--model '" .. NONE .. "': no such directory"},
  {"micro_batch", "--ks 1,-2", "--ks wants whole numbers in 0 .. 1048576 separated by commas, got '1,-2'"},
  {"micro_batch", "--ks 1,", "--ks wants whole numbers in 0 .. 1048576"},
  {"micro_batch", "--max-len 5000", "--max-len must be >= 8 and <= 4064"},
  {"micro_batch", "--method nope", "--method: unknown method 'nope'"},
  {"load_mem", "--load " .. q(NONE), "--load '" .. NONE .. "'"},
  {"load_mem", "stray", "unexpected argument 'stray'"},
  {"resume_mem", "--layers 0", "--layers must be >= 1"},
  {"resume_mem", "--check " .. q(TMP), "no checkpoint-1 there"},
  {"skinny_table", "", "which file?"},
  {"skinny_table", q(NONE), NONE},
  {"skinny_table", "bench", "'bench' is a folder, not skinny_bench's output"},
}
for _, r in ipairs(REFUSED) do
  add(("%s %s refused"):format(r[1], r[2]), lua(r[1], r[2]), 1, {r[3]}, function(res)
    H.eq(select(2, res.err:gsub("\n", "")), 1, "one line on stderr")
    H.ok(res.err:sub(1, #r[1] + 2) == r[1] .. ": ", "prefixed with the script's name")
    H.eq(res.out, "", "nothing on stdout")
  end)
end
add("run_gen_bench.sh --quick: the first argument is the build folder", "sh bench/run_gen_bench.sh --quick", 1,
    {"the first argument is the build folder, got '--quick'", "usage: bench/run_gen_bench.sh"})
add("run_gen_bench.sh on a folder without confit compiles nothing", "sh bench/run_gen_bench.sh " .. q(TMP), 1,
    {"no confit executable in", "usage: bench/run_gen_bench.sh"},
    function() H.ok(not cli.exists(TMP .. "/membw"), "membw was compiled into " .. TMP) end)
add("run_core_bench.sh --x refused", "sh bench/run_core_bench.sh --x", 1, {"usage: bench/run_core_bench.sh"})
local CDIR = TMP .. "/c"   -- the C programs built here (not in TMP: run_gen_bench.sh's case looks there)
assert(os.execute("mkdir -p " .. q(CDIR)))
add("membw: --help, then bad sizes refused", ("cc -O2 -fopenmp bench/membw.c -o %s/membw && %s/membw --help && "
                                              .. "{ %s/membw -5; echo rc=$?; %s/membw abc; echo rc=$?; }")
                                             :format(q(CDIR), q(CDIR), q(CDIR), q(CDIR)), 0,
    {"usage: membw [MiB]", "MiB must be a whole number in 1 .. 65536, got '-5'\n", "rc=1\n", "got 'abc'"})
-- core_bench links the build's libconfit: a sanitizer build's needs the sanitizers linked too
-- (else "ASan runtime does not come first" and exit 1)
local BUILD = EXE:match("^(.*)/")
local sanitized = (H.read(BUILD .. "/CMakeCache.txt") or ""):find("CONFIT_SANITIZE:BOOL=ON", 1, true)
local SAN = sanitized and "-fsanitize=address,undefined " or ""
if blas_h then
  add("core_bench: --help, then a bad benchmark or time refused",
      ("cc -O2 -fopenmp " .. SAN .. "-I core -I %s bench/core_bench.c -o %s/core_bench -L%s -lconfit -lopenblas -lm -Wl,-rpath,%s "
       .. "&& %s/core_bench --help && { %s/core_bench nope; echo rc=$?; %s/core_bench all -1; echo rc=$?; }")
      :format(q(blas_h), q(CDIR), q(BUILD), q(BUILD), q(CDIR), q(CDIR), q(CDIR)), 0,
      {"usage: core_bench", "unknown benchmark 'nope'", "min-seconds must be a number in (0, 3600], got '-1'", "rc=1\n"})
end

-- --help: the documentation, exit 0 ----------------------------------------------------------
for _, s in ipairs({"eval_bench", "gen_bench", "gpu_bench", "grade_bench", "load_mem", "micro_batch", "resume_mem",
                    "sample_bench", "skinny_table", "swiglu_bench", "tokenizer_bench", "toy_bench", "train_step"}) do
  -- the script's leading comment first (its first line, "-- " dropped), a blank line, the flags;
  -- the note on leading bare words only where the script takes them (grade_bench.lua 5 is --repeats 5)
  local first = H.read("bench/" .. s .. ".lua"):match("^%-%-%s?([^\n]*)")
  add(s .. " --help", lua(s, "--reps 3 --help"), 0, {"usage: confit bench/" .. s .. ".lua [flags]"}, function(res)
    H.eq(res.out:sub(1, #first + 1), first .. "\n", "the header first: " .. res.out:sub(1, 80))
    H.ok(res.out:find("\n\nusage: confit bench/", 1, true), "a blank line before the flags: " .. res.out)
    local words = ({grade_bench = "--repeats", skinny_table = "--file", tokenizer_bench = "--tokenizer, --data"})[s]
    if words then
      H.ok(res.out:find("(leading words without -- are, in order: " .. words .. ")", 1, true), "the positional note: " .. res.out)
    else
      H.ok(not res.out:find("leading words", 1, true), res.out)
    end
  end)
end
-- (the flags are read before torch is imported: --help needs only Python)
if has_python then
  add("torch_toy_rlsc.py --help", "/usr/bin/python3 bench/torch_toy_rlsc.py --help", 0, {"MODEL_DIR", "--threads"})
  add("torch_blocks.py --help", "/usr/bin/python3 bench/torch_blocks.py --help", 0, {"--iters", "--min-seconds"})
  -- without PyTorch (toy_bench.lua runs the first unless --no-torch): one line, no Python traceback
  if not os.execute("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") then
    for _, c in ipairs({{"torch_toy_rlsc.py", "examples/toy/model " .. q(NONE)}, {"torch_blocks.py", ""}}) do
      add(c[1] .. " without PyTorch", "/usr/bin/python3 bench/" .. c[1] .. " " .. c[2], 1,
          {"bench/" .. c[1] .. ": no PyTorch for /usr/bin/python3 (No module named 'torch')"}, function(res)
        H.ok(not res.err:find("Traceback", 1, true), res.err)
        H.eq(select(2, res.err:gsub("\n", "")), 1, "one line: " .. res.err)
      end)
    end
  end
end

-- Quick runs: every line JSON with the machine ---------------------------------------------------
local MACHINE = {"host", "cpu", "cores", "threads", "omp_wait_policy", "gomp_spincount", "load1"}
local function command_line(cmd) local p = io.popen(cmd); local s = p:read("l"); p:close(); return s end
local HOST = command_line("uname -n")
local function json_lines(res, want)
  local recs = {}
  for line in res.out:gmatch("[^\n]+") do
    local t, err = jsonio.decode(line)
    H.ok(type(t) == "table", ("not a JSON object (%s): %s"):format(tostring(err), line))
    for _, k in ipairs(MACHINE) do H.ok(t[k] ~= nil, ("no %s in %s"):format(k, line)) end
    H.ok(math.type(t.threads) == "integer" and t.threads >= 1, "threads: " .. line)
    H.ok(math.type(t.cores) == "integer" and t.cores >= 1, "cores: " .. line)
    H.eq(t.host, HOST, "host: " .. line)
    H.eq(type(t.load1), "number", "load1: " .. line)
    recs[#recs + 1] = t
  end
  H.ok(#recs >= (want or 1), "JSON lines: " .. #recs)
  return recs
end
-- (a skip, exit 77, counts as a run here: its line is checked as the others)
local SKIP_OK = "; rc=$?; [ $rc = 77 ] && rc=0; exit $rc"
local function quick(name, cmd, rc, check)
  add(name, cmd, rc, {}, function(res)
    H.ok(not res.err:find("stack traceback", 1, true), res.err)
    check(json_lines(res), res)
  end)
end
quick("swiglu_bench at one thread says threads 1", "OMP_NUM_THREADS=1 " .. lua("swiglu_bench", "--reps 1"), 0, function(recs)
  H.eq(#recs, 2, "lines")
  for _, t in ipairs(recs) do H.eq(t.threads, 1, "threads under OMP_NUM_THREADS=1") end
end)
quick("eval_bench on the toy model", lua("eval_bench", "--questions 2 --batch-size 2,3 --max-new-tokens 4"), 0, function(recs)
  H.eq(#recs, 2, "one line per batch size")
  H.eq(recs[1].model, "examples/toy/model")
  H.eq(recs[2].batch_size, 3)
end)
quick("toy_bench --no-torch: the summary records confit's threads",
      lua("toy_bench", "--no-torch --reps 1 --questions 2 --n 2"), 0, function(recs)
  H.eq(recs[#recs].impl, "summary")
  H.eq(recs[#recs].confit_threads, recs[#recs].threads)
end)
quick("grade_bench 1 (a skip line without the data)", lua("grade_bench", "1") .. SKIP_OK, 0, function(recs)
  H.ok(recs[1].bench == "grade" or recs[1].bench == "skip", recs[1].bench)
end)
quick("tokenizer_bench (a skip line without the data)", lua("tokenizer_bench", "") .. SKIP_OK, 0,
      function(recs) H.ok(recs[1].bench == "tokenizer_encode" or recs[1].bench == "skip", recs[1].bench) end)
if cli.gpu_problem() then
  quick("gpu_bench without a GPU: flags checked, then a skip line, exit 77",
        lua("gpu_bench", "--only decode --shape 1.5B --quick --new 512 --budget 60"), 77, function(recs)
    H.eq(#recs, 1)
    H.eq(recs[1].bench, "skip")
    H.eq(recs[1].card, "none")
  end)
end

-- B.emit's fields as written: in the record's order (a map's keys sorted), a field's format, opts.float
-- for floats only, NaN as null, a field of the machine's kept once with the record's value; B.int_list
-- takes its bounds inclusively (twenty-ninth session, mutation testing of bench/common.lua)
H.write(TMP .. "/emit.lua", [[
local B = dofile("bench/common.lua")
B.emit({{"bench", "x"}, {"ms", 1 / 3, "%.2f"}, {"nan", 0 / 0}, {"n", 3}, {"threads", 99}})
B.emit({{"only", 1 / 3}}, {float = "%.3g"})
B.emit({z = 1, a = "b", f = 1 / 3}, {float = "%.3g"})
B.emit({{"ks", B.int_list("0,64", "--ks", 0, 64)}})
B.int_list("0,65", "--ks", 0, 64)
]])
add("B.emit writes fields as given, B.int_list's bounds", ("%s %s"):format(q(EXE), q(TMP .. "/emit.lua")), 1,
    {"bench: --ks wants whole numbers in 0 .. 64 separated by commas, got '0,65'\n"}, function(res)
  local lines = {}
  for line in res.out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  H.eq(#lines, 4, res.out)
  for i, want in ipairs({'{"bench":"x","ms":0.33,"nan":null,"n":3,"threads":99,"host":', '{"only":0.333,"host":',
                         '{"a":"b","f":0.333,"z":1,"host":', '{"ks":[0,64],"host":'}) do
    H.eq((lines[i] or ""):sub(1, #want), want, "line " .. i)
  end
  H.eq(select(2, (lines[1] or ""):gsub('"threads":', "")), 1, "threads once: " .. tostring(lines[1]))
  json_lines({out = table.concat(lines, "\n", 2)}, 3)
end)

-- Every Lua benchmark goes through bench/common.lua (the ones too slow to run here too) --------
H.case("every bench/*.lua parses with B.parse and prints through B.emit", function()
  for _, name in ipairs(cli.list_dir("bench")) do
    if name:match("%.lua$") and name ~= "common.lua" then
      local src = H.read("bench/" .. name)
      H.ok(src:find('dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")', 1, true),
           name .. " does not load bench/common.lua")
      -- (the module is B, or common where B names a batch size: gpu_bench.lua)
      H.ok(src:find("%f[%w_]B%.parse%(arg,") or src:find("%f[%w_]common%.parse%(arg,"),
           name .. " does not parse its flags with bench/common.lua's parse")
      H.ok(not src:find("os.clock()", 1, true), name .. " times CPU time")
      -- skinny_table turns JSON lines into table rows: no measurement of its own
      if name ~= "skinny_table.lua" then
        H.ok(not src:find("%f[%w_.]print%("), name .. " prints without B.emit")
      end
    end
  end
end)

-- Run everything side by side, then check each case.
local lines = {}
for i, c in ipairs(cases) do
  local base = ("%s/case%d"):format(TMP, i)
  lines[#lines + 1] = ("( %s ) > %s 2> %s < /dev/null; echo $? > %s &"):format(c.cmd, q(base .. ".out"), q(base .. ".err"),
                                                                           q(base .. ".rc"))
end
lines[#lines + 1] = "wait"
H.write(TMP .. "/cases.sh", table.concat(lines, "\n") .. "\n")
assert(os.execute("sh " .. q(TMP .. "/cases.sh")))
for i, c in ipairs(cases) do
  local base = ("%s/case%d"):format(TMP, i)
  local res = {out = H.read(base .. ".out") or "", err = H.read(base .. ".err") or "",
               rc = tonumber((H.read(base .. ".rc") or ""):match("%d+"))}
  H.case(c.name, function()
    local text = res.out .. res.err
    local shown = ("%s -> rc %s:\n%s"):format(c.cmd, tostring(res.rc), text)
    H.eq(res.rc, c.rc, "exit status of " .. shown)
    H.ok(not text:find("stack traceback", 1, true), "a traceback: " .. shown)
    for _, f in ipairs(c.frags) do H.ok(text:find(f, 1, true), ("output lacks %q: %s"):format(f, shown)) end
    if c.check then c.check(res) end
  end)
end

os.execute("rm -rf -- " .. q(TMP))
H.finish()
