-- Every recipe meets command-line and input-file mistakes the same way (confit.cli): ONE line
-- "<recipe>: <what and where>" on stderr, exit status 1, no traceback; --help prints usage and
-- exits 0. Each case runs the recipe as a user does (a subprocess of the confit executable);
-- the cases run side by side in one shell so the whole file takes a few seconds. Nothing trains:
-- every failing case stops in the checks before any work (and writes only under a temp folder).
local H = dofile("tests/lua/harness.lua")
local cli = require "confit.cli"

local EXE = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
-- The output of shell command cmd (with its stderr and `echo rc=$?` when it asks for them).
local function shell(cmd)
  local p = assert(io.popen(cmd))
  local text = p:read("a")
  p:close()
  return text
end

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p " .. q(TMP)))

local read, write = H.read, H.write

-- Inputs: a folder that passes for a model (config.json only, with the toy's 128 positions: the
-- checks stop before loading),
-- JSONL files with a malformed line and without the question field, grid files, a run directory.
-- a folder TMP/name whose config.json gives ctx positions, with the toy's tokenizer.json when tok
local function model_folder(name, ctx, tok)
  local dir = TMP .. "/" .. name
  assert(os.execute("mkdir -p " .. q(dir)))
  write(dir .. "/config.json", ('{"max_position_embeddings": %d}\n'):format(ctx))
  if tok then write(dir .. "/tokenizer.json", read("examples/toy/model/tokenizer.json")) end
  return dir
end
local MODEL = model_folder("model", 128)
local BADMODEL = TMP .. "/badmodel"
assert(os.execute("mkdir -p " .. q(BADMODEL)))
write(BADMODEL .. "/config.json", '{"max_position_embeddings": 128,\n "hidden_size": }\n')
local BAD = TMP .. "/bad.jsonl"
local DANGLING = TMP .. "/dangling-link"   -- a link to nothing
os.execute("ln -s " .. TMP .. "/no-such-target " .. DANGLING)
write(BAD, '{"question": "1+1=", "answer": "2"}\n{"question": oops}\n')
local NOQ = TMP .. "/noq.jsonl"
write(NOQ, '{"problem": "1+1=", "answer": "2"}\n')
local MISSING = TMP .. "/no-such-file.jsonl"
local GOOD = TMP .. "/good.jsonl"
write(GOOD, '{"question": "1+1=", "answer": "2"}\n')
-- files named after benchmarks are read as the benchmark (its fields and reference answers)
assert(os.execute("mkdir -p " .. q(TMP .. "/bench")))
local GSM_NOREF = TMP .. "/bench/gsm8k.jsonl"        -- gsm8k's reference is the text after ####
write(GSM_NOREF, '{"question": "1+1=", "answer": "2"}\n')
local MINERVA_Q = TMP .. "/bench/minerva_math.jsonl" -- minerva_math's question field is problem
write(MINERVA_Q, '{"question": "1+1=", "solution": "\\\\boxed{2}"}\n')
-- a model folder with the toy's byte-level tokenizer (its ChatML prompt is 158 tokens > 128)
local TOKMODEL = model_folder("tokmodel", 128, true)
-- (twenty-first session) a broken tokenizer_config.json: ChatML was taken without a word
local BADTC = model_folder("badtc", 128, true)
-- (twenty-first session, a review's findings) a blank --eval-data question was a traceback after
-- config.json; an empty --data answer was taken; a prompt of exactly the context was "more than" it
local BLANKQ = TMP .. "/blankq.jsonl"
write(BLANKQ, '{"question": "   ", "answer": "10"}\n{"question": "1+2=", "answer": "3"}\n')
local EMPTYA = TMP .. "/emptya.jsonl"
write(EMPTYA, '{"question": "1+2+3+4=", "answer": ""}\n')
local CTX8 = TMP .. "/ctx8.jsonl"
write(CTX8, '{"question": "12345678", "answer": "1"}\n')
local TOK8 = model_folder("tok8", 8, true)
write(BADTC .. "/tokenizer_config.json", "{bad\n")
-- (twentieth session) contexts where a default --max-new-tokens does not fit after the prompt: 66
-- positions for the toy's 64 after a toy prompt, 3100 with the toy tokenizer for the --data 3072
-- after a 102-token question
local M66, T3100 = model_folder("m66", 66), model_folder("t3100", 3100, true)
-- (twenty-eighth session) config.json without max_position_embeddings (or with null): the loader
-- takes the model_type's default (llama 2048, qwen2 32768), and so must the context checks
-- (cli.model_context returned nil: no check, the run failed later in m:generate)
local NOCTX_LLAMA, NOCTX_QWEN = TMP .. "/noctx-llama", TMP .. "/noctx-qwen2"
assert(os.execute("mkdir -p " .. q(NOCTX_LLAMA) .. " " .. q(NOCTX_QWEN)))
write(NOCTX_LLAMA .. "/config.json", '{"model_type": "llama"}\n')
write(NOCTX_QWEN .. "/config.json", '{"model_type": "qwen2", "max_position_embeddings": null}\n')
local LONGQ = TMP .. "/longq.jsonl"
write(LONGQ, ('{"question": "%s", "answer": "2"}\n'):format(("1+"):rep(50) .. "1="))
-- (twenty-second session, a review's findings) eval wrote its records beside anything in --out
local NOTES = TMP .. "/notes-out"
assert(os.execute("mkdir -p " .. q(NOTES .. "/toy-mixed")))
write(NOTES .. "/notes.txt", "mine\n")
local DAMAGED = TMP .. "/damaged-out"     -- eval's own config.json, cut: no other run's
assert(os.execute("mkdir -p " .. q(DAMAGED .. "/toy-mixed")))
write(DAMAGED .. "/toy-mixed/config.json", '{"recipe": "eval", "na')
local ARRLINE = TMP .. "/arrline.jsonl"
write(ARRLINE, '{"question": "1+1=", "answer": "2"}\n[1, 2]\n')
local STRAYDIR = TMP .. "/straydir-out"
assert(os.execute("mkdir -p " .. q(STRAYDIR .. "/photos")))
write(STRAYDIR .. "/photos/a.jpg", "x")
local GRID_SYNTAX = TMP .. "/broken_grid.lua"
write(GRID_SYNTAX, "return {grid = {alpha = {0, 0.1}}\n")
local GRID_EMPTY = TMP .. "/empty_axis.lua"
write(GRID_EMPTY, 'return {grid = {alpha = {}}, out = "x"}\n')
local GRID_OK = TMP .. "/grid.lua"
write(GRID_OK, ('return {grid = {alpha = {0}}, out = %q}\n'):format(TMP .. "/never-ran"))
-- (audit_w) grids that rlsc's flags, methods or metric names refuse, or that give a key twice
local function grid_file(name, body)
  local path = TMP .. "/" .. name .. ".lua"
  write(path, ("return {%s, out = %q}\n"):format(body, TMP .. "/never-ran"))
  return path
end
local GRID_TYPO = grid_file("typo_axis", 'grid = {methd = {"l1", "l2"}}')
local GRID_METHOD = grid_file("bad_method", 'grid = {method = {"l2", "l3"}}')
local GRID_VALUE = grid_file("bad_value", 'base = {steps = 0}, grid = {seed = {1}}')
-- (eighteenth session) flags that parse but do not go together at one point: rlsc's declared check
local GRID_COMBO = grid_file("bad_combo", 'base = {temperature_scale = 0.3}, grid = {method = {"temp_only", "l2"}}')
-- (twenty-second session) a boolean for a string flag, a string for a switch
local GRID_BOOL = grid_file("bool_string", 'base = {method = true}, grid = {seed = {1}}')
local GRID_SWITCH = grid_file("string_switch", 'base = {quiet = "yes"}, grid = {seed = {1}}')
local GRID_SEEDKEY = grid_file("bad_seed_key", 'grid = {alpha = {0}, seed = {1}}, seed_key = "sed"')
local GRID_METRICS = grid_file("bad_metrics", 'grid = {alpha = {0}}, metrics = {"acc", "pass@l"}')
local GRID_TWICE = grid_file("twice", 'base = {eval_n = 2}, grid = {["eval-n"] = {2, 4}}')
-- (twenty-third session) a model folder that is not there failed every run, one after the other
local GRID_NOMODEL = grid_file("no_model", 'base = {model = "no/such/model"}, grid = {seed = {1, 2}}')
local GRID_RECIPE = grid_file("bad_recipe", 'grid = {seed = {1}}, recipe = {}')   -- a Lua error from io.open
local GRID_NOTMODEL = grid_file("not_model", ('base = {model = %q}, grid = {seed = {1}}'):format(TMP))
-- (twenty-fourth session, a walkthrough's findings) five questions, ten a step: each twice in a
-- batch without a word; a tokenizer past the model's vocab_size was named only after the context
local FIVEQ = TMP .. "/fiveq.jsonl"
write(FIVEQ, ('{"question": "1+1=", "answer": "2"}\n'):rep(5))
local VOCAB64 = model_folder("vocab64", 8, true)
write(VOCAB64 .. "/config.json", '{"max_position_embeddings": 8, "vocab_size": 64}\n')
local RUN = TMP .. "/run1"
assert(os.execute("mkdir -p " .. q(RUN)))
write(RUN .. "/config.json", '{"recipe": "rlsc", "name": "r1"}\n')
write(RUN .. "/steps.jsonl", '{"step": 1, "loss": 0.5}\n{"step": 2, loss}\n')
-- (twenty-eighth session, mutation testing of the recipes' command lines) a benchmark folder of an
-- earlier eval given as --out; a directory named like the report's page
local EVALBENCH = TMP .. "/evalbench"
assert(os.execute("mkdir -p " .. q(EVALBENCH)))
write(EVALBENCH .. "/config.json", '{"recipe": "eval", "name": "toy-mixed"}\n')
local GRID_RECIPEDIR = grid_file("recipe_dir", ('grid = {alpha = {0}}, recipe = %q'):format(TMP))
local PLAIN_RECIPE = TMP .. "/plain_recipe.lua"   -- a recipe that does not declare its flags
write(PLAIN_RECIPE, 'print("plain")\n')
local GRID_PLAIN = grid_file("plain", ('grid = {alpha = {0}}, recipe = %q'):format(PLAIN_RECIPE))
local HTMLDIR = TMP .. "/page.html"
assert(os.execute("mkdir -p " .. q(HTMLDIR)))
local OUT = TMP .. "/out"   -- every recipe that writes gets an --out here, never the defaults

-- {recipe, args, expected exit status, fragments the output must hold}
local R_OUT = "--out " .. q(OUT .. "/rlsc")
local P_OUT = "--out " .. q(OUT .. "/pretrain")
local C_OUT = "--out " .. q(OUT .. "/cmp") .. " --md " .. q(OUT .. "/cmp.md")
local C_TINY = C_OUT .. " --steps 1 --questions-per-step 1 --eval-questions 1 --eval-n 1 --max-new-tokens 4"
local CASES = {
  -- rlsc
  {"rlsc", "--bogus " .. R_OUT, 1, {"--bogus"}},
  {"rlsc", "--steps x " .. R_OUT, 1, {"--steps", "'x'"}},
  {"rlsc", "--steps -1 " .. R_OUT, 1, {"--steps", "-1"}},
  {"rlsc", "--n 0 " .. R_OUT, 1, {"--n", ">= 1"}},
  {"rlsc", "--top-p 2 " .. R_OUT, 1, {"--top-p", "2"}},
  {"rlsc", "--task bogus " .. R_OUT, 1, {"--task", "bogus", "mixed"}},
  {"rlsc", "--method nope " .. R_OUT, 1, {"--method", "nope"}},
  {"rlsc", "--device tpu " .. R_OUT, 1, {"--device", "tpu"}},
  -- (twenty-fifth session) the device names are confit.devices, the core's one list: no "gpu" alias anywhere
  {"rlsc", "--device gpu " .. R_OUT, 1, {"--device must be one of cpu, cuda, got 'gpu'"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --device gpu --out " .. q(TMP .. "/gpu-eval"), 1,
   {"--device must be cpu or cuda, got 'gpu'"}},
  {"rlsc", "stray " .. R_OUT, 1, {"stray"}},
  -- (an absolute path is not said to be "from the current folder": twenty-eighth session)
  {"rlsc", "--model " .. q(TMP .. "/no-model") .. " " .. R_OUT, 1, {"--model", TMP .. "/no-model"}, {"current folder"}},
  {"rlsc", "--model " .. q(BAD) .. " " .. R_OUT, 1, {"--model '" .. BAD .. "' is not a directory (a model folder is expected)"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(MISSING) .. " " .. R_OUT, 1, {"--data", MISSING}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(BAD) .. " " .. R_OUT, 1, {BAD .. ":2"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(NOQ) .. " " .. R_OUT, 1,
   {NOQ .. ":1", "--question-field"}},
  {"rlsc", "--model " .. q(BADMODEL) .. " " .. R_OUT, 1, {BADMODEL .. "/config.json:2"}},
  {"rlsc", "--model " .. q(MODEL) .. " --max-new-tokens 500 " .. R_OUT, 1, {"--max-new-tokens 500", "128"}, {"the default"}},
  {"rlsc", "--model " .. q(M66) .. " " .. R_OUT, 1,
   {"--max-new-tokens 64 (the default: give a smaller --max-new-tokens) does not fit", "toy prompt"}},
  {"rlsc", "--model " .. q(T3100) .. " --data " .. q(LONGQ) .. " --template plain " .. R_OUT, 1,
   {"--max-new-tokens 3072 (the default: give a smaller --max-new-tokens) does not fit"}},
  {"rlsc", "--model " .. q(MODEL) .. " --max-new-tokens 125 " .. R_OUT, 1, {"--max-new-tokens 125", "toy prompt"}},
  {"rlsc", "--model " .. q(NOCTX_LLAMA) .. " --max-new-tokens 2048 " .. R_OUT, 1,
   {"--max-new-tokens 2048 must be below the model's context of 2048 positions"}},
  {"rlsc", "--model " .. q(NOCTX_QWEN) .. " --max-new-tokens 32768 " .. R_OUT, 1,
   {"--max-new-tokens 32768 must be below the model's context of 32768 positions"}},
  -- --data prompts are measured before the banner and the run directory (checked at the end)
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --max-new-tokens 16 " .. R_OUT, 1,
   {"tokenizer.json"}},
  -- (seventeenth session) --template auto picks Qwen's ChatML prompt for a folder without a chat
  -- template; the toy tokenizer has no <|im_start|>: refused before anything is written
  {"rlsc", "--model " .. q(TOKMODEL) .. " --data " .. q(GOOD) .. " --max-new-tokens 16 " .. R_OUT, 1,
   {"the training template qwen25-math-cot (--template auto's choice) writes <|im_start|>", "--template plain"}},
  {"rlsc", "--model " .. q(TOKMODEL) .. " --data " .. q(GOOD) .. " --template plain --max-new-tokens 200 " .. R_OUT, 1,
   {"--max-new-tokens 200", "128"}},
  -- not given: the --data default (3072) is named as the default, not as what the user wrote
  {"rlsc", "--model " .. q(TOKMODEL) .. " --data " .. q(GOOD) .. " --template plain " .. R_OUT, 1,
   {"--max-new-tokens 3072 (the default: give a smaller --max-new-tokens)", "128"}},
  {"rlsc", "--help", 0, {"usage", "--steps", "--eval-questions N: toy: N held-out questions (default 200); --data: the first N",
                          "--eval-seed S: toy: the seed that draws the held-out questions", "--data: the seed of the evaluation's sampling (default: --seed)"}},
  -- (the audit's fixes) --eval-seed is the evaluation's seed with --data; benchmark-named files
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --eval-seed -1 " .. R_OUT, 1, {"--eval-seed must be >= 0", "-1"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GSM_NOREF) .. " " .. R_OUT, 1,
   {GSM_NOREF .. ":1", "reference of gsm8k", "--answer-field"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --eval-data " .. q(MINERVA_Q) .. " " .. R_OUT, 1,
   {"--eval-data " .. MINERVA_Q .. ":1", "question field 'problem'"}},
  -- (audit_w) evaluation flags with --no-eval are refused; eval.lua refuses an option given twice
  -- (confit.cli's recipes warn: below)
  {"rlsc", "--steps 1 --questions-per-step 1 --n 2 --no-eval --eval-n 8 " .. R_OUT, 1, {"--no-eval", "--eval-n"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --n 1 --n 2", 1, {"--n", "twice"}},
  {"eval", "--help", 0, {"--bench and --data together"}},
  -- (twenty-first session) "the aliases of confit.rl" without naming them; "default nil"
  {"rlsc", "--help", 0, {"aliases: ", "ttrl = grpo_ttrl", "rlsc_l2 = l2", "--data                   string  default none"},
   {"default nil"}},
  {"rlsc", "--model " .. q(TOKMODEL) .. " --data " .. q(GOOD) .. " --template plain --max-new-tokens 16 --eval-data "
     .. q(BLANKQ) .. " " .. R_OUT, 1, {"--eval-data", BLANKQ .. ":1", "empty question"}},
  {"eval", "--model " .. q(TOKMODEL) .. " --data " .. q(BLANKQ) .. " --template plain --out " .. q(TMP .. "/blankq-eval"), 1,
   {BLANKQ .. ":1", "empty question"}},
  {"rlsc", "--model " .. q(TOKMODEL) .. " --data " .. q(EMPTYA) .. " --template plain --max-new-tokens 16 " .. R_OUT, 1,
   {"--data " .. EMPTYA .. ":1: empty answer"}},
  {"rlsc", "--model " .. q(TOK8) .. " --data " .. q(CTX8) .. " --template plain --max-new-tokens 4 " .. R_OUT, 1,
   {"has 8 tokens, as many as the model's context of 8 positions: no room for a new token"}},
  {"rlsc", "--method temp_only --kl-coef 0.1 " .. R_OUT, 1, {"--kl-coef 0.1: --method temp_only has no KL term"}},
  -- (twenty-second session, a review's findings) the toy world ran temp_only --no-eval (nothing);
  -- --help said --out had no default
  {"rlsc", "--method temp_only --no-eval " .. R_OUT, 1, {"--method temp_only trains nothing", "drop --no-eval"}},
  {"rlsc", "--help", 0, {"--out                    string  default runs/rlsc-<UTC time>"}},
  {"eval", "--model " .. q(BADTC) .. " --data " .. q(GOOD) .. " --limit 1 --out " .. q(TMP .. "/badtc-eval"), 1,
   {"cannot choose the model's chat template", BADTC .. "/tokenizer_config.json:1:", "--template"}},
  {"rlsc", "--model " .. q(BADTC) .. " --data " .. q(GOOD) .. " " .. R_OUT, 1,
   {"--template auto: cannot choose the model's chat template", BADTC .. "/tokenizer_config.json:1:"}},
  -- (twenty-fourth session) --data takes its questions in file order: --seed does not pick them,
  -- and a step of more questions than the file holds is refused
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(FIVEQ) .. " --questions-per-step 10 " .. R_OUT, 1,
   {"--questions-per-step 10 is more than the 5 training questions of --data " .. FIVEQ, "file order"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(FIVEQ) .. " --questions-per-step 5 --max-new-tokens 500 " .. R_OUT, 1,
   {"--max-new-tokens 500"}, {"--questions-per-step"}},
  {"rlsc", "--help", 0, {"--data the questions are taken in file order", "--seed S: the training samples' seed"},
   {"seed of the training questions and samples"}},
  -- --seed has its own range; the message named --eval-seed
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --seed -1 " .. R_OUT, 1, {"--seed", ">= 0", "-1"}, {"--eval-seed"}},
  {"rlsc", "--seed -1 " .. R_OUT, 1, {"--seed", ">= 0", "-1"}},
  -- the --data evaluation's sampling settings; the toy evaluation has its own
  {"rlsc", "--eval-temperature 0.5 " .. R_OUT, 1, {"--eval-temperature applies to --data runs", "T = 0.5 and 1.0"}},
  {"rlsc", "--eval-top-p 0.9 " .. R_OUT, 1, {"--eval-top-p applies to --data runs"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --eval-temperature 0 --eval-n 4 " .. R_OUT, 1, {"--eval-temperature", "0"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --eval-top-p 1.5 --eval-n 4 " .. R_OUT, 1, {"--eval-top-p", "1.5"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --eval-temperature 0.5 " .. R_OUT, 1,
   {"--eval-temperature sets the evaluation's sampling, and --eval-n is 0 (greedy only, the --data default)"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --eval-n 4 --no-eval --eval-top-p 0.9 " .. R_OUT, 1, {"--no-eval"}},
  {"rlsc", "--help", 0, {"--eval-temperature T / --eval-top-p P", "--eval-temperature       number  default 0.6",
                          "--eval-top-p             number  default 0.95"}},
  -- --keep-checkpoints without checkpoints would do nothing
  {"rlsc", "--keep-checkpoints 2 " .. R_OUT, 1, {"--keep-checkpoints 2", "--checkpoint-every"}},
  {"rlsc", "--keep-checkpoints -1 --checkpoint-every 1 " .. R_OUT, 1, {"--keep-checkpoints", "-1"}},
  {"rlsc", "--help", 0, {"--keep-checkpoints N keeps the newest N"}},
  -- the tokenizer that is not the model's is named before the context checks
  {"rlsc", "--model " .. q(VOCAB64) .. " --data " .. q(CTX8) .. " --template plain --max-new-tokens 4 " .. R_OUT, 1,
   {"cannot load --model", "but the model's vocab_size is 64"}, {"context"}},
  -- eval
  {"eval", "--bogus", 1, {"--bogus"}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(ARRLINE) .. " --template plain --out " .. q(TMP .. "/arr-eval"), 1,
   {ARRLINE .. ":2: expected a JSON object, got an array"}},
  {"ablate", q(GRID_OK) .. " --dry-run --dry-run", 1, {"--dry-run is given twice"}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --toy-questions 5 --out " .. q(TMP .. "/tq-eval"), 1,
   {"--toy-questions applies to the toy benchmark (--bench toy)", "drop --toy-questions"}},
  {"eval", "--model " .. q(MODEL) .. " --bench gsm8k --data-dir '' --out " .. q(TMP .. "/dd-eval"), 1,
   {"--data-dir needs a folder (got an empty name)"}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --name summary.json --out " .. q(TMP .. "/ns-eval"), 1,
   {"--name 'summary.json' names the benchmark's folder inside --out, where eval keeps its own files"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --limit 1 --out " .. q(DAMAGED), 1,
   {"--out " .. DAMAGED .. ": " .. DAMAGED .. "/toy-mixed/config.json:", "remove or repair it"}, {"another run's"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --limit 1 --out " .. q(NOTES), 1,
   {"--out " .. NOTES .. " holds notes.txt and no eval run", "give another --out"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --limit 1 --out " .. q(STRAYDIR), 1,
   {"--out " .. STRAYDIR .. " holds photos and no eval run"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --limit 0", 1, {"--limit must be >= 1", "got 0"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --toy-questions 10001 --limit 2", 1, {"--toy-questions", "10001"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --name foo", 1, {"--name names the --data set"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --n x", 1, {"--n", "'x'"}},
  {"eval", "--model " .. q(TMP .. "/no-model") .. " --bench toy", 1, {TMP .. "/no-model"}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(MISSING), 1, {MISSING}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(BAD), 1, {BAD .. ":2"}},
  {"eval", "--model examples/toy/model --bench toy --out " .. q(BAD .. "/x"), 1, {BAD .. "/x"}},
  -- (twenty-fourth session) a file as --out: said as rlsc says it (it was mkdir's "File exists")
  {"eval", "--model examples/toy/model --bench toy --out " .. q(BAD), 1, {"--out '" .. BAD .. "' is a file, not a folder"}},
  {"eval", "--model examples/toy/model --bench toy --out ''", 1, {"--out needs a folder (got an empty name)"}},
  {"rlsc", "--out ''", 1, {"--out needs a folder (got an empty name)"}},
  {"eval", "--model examples/toy/model --bench toy --out " .. q(DANGLING), 1, {"is a link to no folder"}},
  {"rlsc", "--out " .. q(DANGLING), 1, {"is a link to no folder"}},
  {"rlsc", "--out /dev/null", 1, {"is a device, FIFO or socket, not a folder"}},
  {"eval", "--help", 0, {"usage"}},
  -- pretrain_toy
  {"pretrain_toy", "--bogus " .. P_OUT, 1, {"--bogus"}},
  {"pretrain_toy", "--steps -5 " .. P_OUT, 1, {"--steps", "-5"}},
  {"pretrain_toy", "--batch many " .. P_OUT, 1, {"--batch", "'many'"}},
  {"pretrain_toy", "--loss-on foo " .. P_OUT, 1, {"--loss-on", "foo"}},
  -- (seventeenth session) past the held-out pool (83,603 distinct) it searched for minutes
  {"pretrain_toy", "--eval-questions 50000 " .. P_OUT, 1, {"--eval-questions", "10000", "50000"}},
  -- a shape past the machine's memory: the model's message in one line (a traceback before)
  -- (twenty-eighth session) --out '' or / names no folder (a refusal gone missing would train briefly)
  {"pretrain_toy", "--out '' --steps 1 --batch 1 --eval-every 0 --eval-questions 1 --layers 1 --hidden 4 --heads 1 --ffn 2",
   1, {"--out must name a folder"}},
  {"pretrain_toy", "--out / --steps 1 --batch 1 --eval-every 0 --eval-questions 1 --layers 1 --hidden 4 --heads 1 --ffn 2",
   1, {"--out must name a folder"}},
  -- (twenty-eighth session) refused before --out's parent folders are made (they were left behind)
  {"pretrain_toy", "--hidden 100000 --out " .. q(TMP .. "/pt-shape/sub/model"), 1, {"parameters need", "GB in f32", "--hidden"}},
  {"pretrain_toy", "--hidden 130 --heads 4 " .. P_OUT, 1, {"--hidden", "--heads"}},
  -- (twenty-eighth session) an --std whose weights (1e300: inf in f32) or first forward (1e19)
  -- overflow: found at step 1, after --out's parent folders were made and the run's first line
  -- printed; now step 1's loss is taken before either. One line naming --std, not --lr
  {"pretrain_toy", "--std 1e300 --steps 1 --batch 1 --eval-every 0 --eval-questions 1 --layers 1 --hidden 4 --heads 1 --ffn 2 --out "
     .. q(TMP .. "/pt-std/sub/model"), 1, {"pretrain_toy: the loss is nan at step 1 (try a smaller --std)"}, {"--lr"}},
  {"pretrain_toy", "--std 1e19 --steps 1 --batch 1 --eval-every 0 --eval-questions 1 --layers 1 --hidden 4 --heads 1 --ffn 2 --out "
     .. q(TMP .. "/pt-std/sub2/model"), 1, {"at step 1 (try a smaller --std)"}, {"--lr"}},
  -- (twenty-second session, a review's findings) --batch had no bound (its draw grew until
  -- killed); samples past the machine's memory were a kernel kill or a traceback
  {"pretrain_toy", "--batch 1000000000 " .. P_OUT, 1, {"--batch", "<= 100000"}},
  {"rlsc", "--steps 1 --n 1048576 --no-eval --quiet --out " .. q(OUT .. "/rlsc_mem"), 1,
   {"rlsc: generate: out of memory: 4194304 samples (4 prompts x n 1048576)", "more than this machine's",
    "generate fewer samples"}},
  {"pretrain_toy", "--out " .. q(BAD .. "/model"), 1, {"--out", BAD .. "/model"}},
  {"pretrain_toy", "--help", 0, {"usage", "--steps"}},
  -- toy_compare
  {"toy_compare", "--bogus " .. C_OUT, 1, {"--bogus"}},
  {"toy_compare", "--seeds 1,x " .. C_OUT, 1, {"--seeds", "'x'"}},
  {"toy_compare", "--methods l2,nope " .. C_OUT, 1, {"--methods", "nope"}},
  {"toy_compare", "--steps -1 " .. C_OUT, 1, {"--steps", "-1"}},
  -- (twenty-second session, a review's findings) a typo in --md replaced a data file with the table
  {"toy_compare", "--out " .. q(OUT .. "/cmp") .. " --md " .. q(BAD), 1,
   {"--md '" .. BAD .. "' is a file toy_compare did not write", "not replaced"}},
  {"toy_compare", "--out " .. q(OUT .. "/cmp") .. " --md ''", 1, {"--md needs the Markdown file to write"}},
  {"toy_compare", "--model " .. q(TMP .. "/no-model") .. " " .. C_OUT, 1, {"--model", TMP .. "/no-model"}},
  {"toy_compare", "--model " .. q(MODEL) .. " --max-new-tokens 125 " .. C_OUT, 1, {"--max-new-tokens 125"}},
  {"toy_compare", "--help", 0, {"usage", "--seeds"}},
  {"toy_compare", "--eval-questions 20000 " .. C_OUT, 1, {"--eval-questions", "20000"}},
  -- ablate
  {"ablate", "--bogus", 1, {"--bogus"}},
  {"ablate", "", 1, {"grid file"}},
  {"ablate", q(MISSING), 1, {MISSING}},
  {"ablate", q(GRID_SYNTAX), 1, {GRID_SYNTAX .. ":2"}},
  {"ablate", q(GRID_EMPTY), 1, {GRID_EMPTY, "alpha"}},
  {"ablate", q(GRID_OK) .. " --report-only", 1, {"--report-only", TMP .. "/never-ran"}},
  {"ablate", q(GRID_OK) .. " --out " .. q(BAD), 1, {BAD}},
  {"ablate", "--help", 0, {"usage"}},
  -- (audit_w) checked against the recipe before anything runs (a dry run too); conflicting options
  {"ablate", q(GRID_TYPO) .. " --dry-run", 1, {"methd", "recipes/rlsc.lua"}},
  {"ablate", q(GRID_METHOD) .. " --dry-run", 1, {"l3", "l2"}},
  {"ablate", q(GRID_VALUE) .. " --dry-run", 1, {"--steps", "0"}},
  {"ablate", q(GRID_BOOL) .. " --dry-run", 1, {"method = true: --method takes a string value"}},
  {"ablate", q(GRID_SWITCH) .. " --dry-run", 1, {"quiet = yes: --quiet is a switch: give true (on) or false (off)"}},
  {"ablate", q(GRID_COMBO) .. " --dry-run", 1, {"method=l2", "--temperature-scale", "--method l2 trains"}},
  {"ablate", q(GRID_SEEDKEY) .. " --dry-run", 1, {"seed_key", "sed", "alpha, seed"}},
  {"ablate", q(GRID_METRICS) .. " --dry-run", 1, {"pass@l", "pass@k"}},
  {"ablate", q(GRID_TWICE) .. " --dry-run", 1, {"eval-n", "twice"}},
  {"ablate", q(GRID_NOMODEL) .. " --dry-run", 1, {"run seed=1: --model 'no/such/model': no such directory (a path from the current folder, /"}},
  {"ablate", q(GRID_NOTMODEL) .. " --dry-run", 1, {"is not a model folder (no config.json there)"}},
  {"ablate", q(GRID_RECIPE) .. " --dry-run", 1, {"recipe must be a script's path (a string), got table"}},
  {"rlsc", "--model no/such/model --steps 1", 1, {"--model 'no/such/model': no such directory (a path from the current folder, /"}},
  {"ablate", q(GRID_OK) .. " --dry-run --report-only", 1, {"--dry-run", "--report-only"}},
  {"ablate", q(GRID_OK) .. " --dry-run --out a --out b", 1, {"--out", "twice"}},
  -- (twenty-third session) --set: a quick trial of a grid file without editing it
  {"ablate", q(GRID_OK) .. " --dry-run --set steps=2 --set eval-questions=20 --set quiet=true", 0,
   {"--alpha 0 --eval-questions 20 --quiet --steps 2"}},
  {"ablate", q(GRID_TWICE) .. " --dry-run --set eval_n=3", 1, {"--set eval_n=3: eval-n is an axis"}},
  {"ablate", q(GRID_VALUE) .. " --dry-run --set steps=3", 0, {"--seed 1 --steps 3"}},
  {"ablate", q(GRID_OK) .. " --dry-run --set steps", 1, {"--set steps: give KEY=VALUE"}},
  {"ablate", q(GRID_OK) .. " --dry-run --set steps=1 --set steps=2", 1, {"steps is set twice"}},
  {"ablate", q(GRID_OK) .. " --dry-run --set", 1, {"--set needs KEY=VALUE"}},
  -- a string flag keeps its text; a number flag's value is a number
  {"ablate", q(GRID_OK) .. " --dry-run --set name=007 --set lr=1e-5", 0, {"--lr 1e-05 --name 007"}},
  {"ablate", q(GRID_OK) .. " --dry-run --set stepz=1", 1, {"stepz is not a flag of"}},
  -- report
  {"report", "", 1, {"output file", "run directory"}},
  {"report", "--bogus", 1, {"--bogus"}},
  {"report", q(TMP .. "/r.txt") .. " " .. q(RUN), 1, {".html", TMP .. "/r.txt"}},
  {"report", q(TMP .. "/r.html") .. " " .. q(TMP .. "/no-run"), 1, {TMP .. "/no-run"}},
  {"report", q(TMP .. "/no-dir/r.html") .. " " .. q(RUN), 1, {TMP .. "/no-dir"}},
  {"report", "--help", 0, {"usage"}},
  -- (twenty-eighth session, mutation testing: refusals and acceptances no case held)
  -- eval: a switch takes no value (--no-resume=false was taken as --no-resume), --top-p 1 is
  -- allowed, sampling at T = 0 and an empty batch are refused up front, --answer-field reads a
  -- file named after a benchmark as a plain file, an earlier eval's benchmark folder is no --out
  {"eval", "--model " .. q(MODEL) .. " --bench toy --no-resume=false --out " .. q(TMP .. "/nr-eval"), 1,
   {"--no-resume takes no value"}},
  {"eval", "--model " .. q(TMP .. "/no-model") .. " --bench toy --top-p 1", 1, {"no model at"}, {"--top-p"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --n 4 --temperature 0 --out " .. q(TMP .. "/t0-eval"), 1,
   {"--n 4 needs --temperature > 0"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --batch-size 0 --out " .. q(TMP .. "/bs-eval"), 1,
   {"--batch-size must be >= 1"}},
  {"eval", "--model " .. q(MODEL) .. " --data " .. q(GSM_NOREF) .. " --answer-field answer --out " .. q(TMP .. "/af-eval"), 1,
   {"has no tokenizer.json"}, {"gsm8k"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --limit 1 --out " .. q(EVALBENCH), 1,
   {EVALBENCH .. "/config.json, written by eval", "another run's folder"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --no-greedy --out " .. q(TMP .. "/ng-eval"), 1,
   {"--no-greedy needs --n > 0"}},
  {"eval", "--model " .. q(MODEL) .. " --bench toy --progress fancy --out " .. q(TMP .. "/pg-eval"), 1,
   {"--progress must be bar, plain or off"}},
  -- toy_compare: --md ending in / names a folder, even one not there yet
  {"toy_compare", "--md " .. q(TMP .. "/md-new/") .. " --out " .. q(OUT .. "/cmp")
     .. " --steps 1 --questions-per-step 1 --eval-questions 1 --eval-n 1 --max-new-tokens 4", 1,
   {"--md '" .. TMP .. "/md-new/' is a directory"}},
  -- toy_compare: a method or seed named twice (an alias too), a GRPO method with one sample, none
  -- (C_TINY: a refusal that went missing would run briefly)
  {"toy_compare", "--methods l2,rlsc_l2 " .. C_TINY, 1, {"--methods names l2 twice"}},
  {"toy_compare", "--seeds 1,2,1 " .. C_TINY, 1, {"--seeds names 1 twice"}},
  {"toy_compare", "--methods grpo_ttrl --n 1 " .. C_TINY, 1, {"--methods grpo_ttrl needs --n >= 2", "got --n 1"}},
  {"toy_compare", "--methods , " .. C_TINY, 1, {"--methods is empty"}},
  {"toy_compare", "--seeds , " .. C_TINY, 1, {"--seeds is empty"}},
  -- rlsc: --eval-data without --data (the toy world evaluates on its own questions), a toy
  -- evaluation of no samples (--eval-n 0: its pass@k and maj@k are of none); temp_only
  -- with --data samples 16 completions in its evaluations unless --eval-n is given (the --data
  -- default of 0 would leave it nothing to compare): refused later, for the missing tokenizer
  {"rlsc", "--eval-data gsm8k --steps 1 --questions-per-step 1 --n 2 --eval-questions 1 " .. R_OUT, 1,
   {"--eval-data needs --data FILE"}},
  -- exactly the toy world's 100,000 training questions are allowed ("at most 100000")
  {"rlsc", "--model " .. q(MODEL) .. " --steps 25000 --questions-per-step 4 --max-new-tokens 16 " .. R_OUT, 1,
   {"has no tokenizer.json"}, {"distinct training questions"}},
  {"rlsc", "--eval-n 0 --steps 1 --questions-per-step 1 --n 2 --eval-questions 1 " .. R_OUT, 1, {"--eval-n must be >= 1 for the toy evaluation, got 0", "--no-eval"}},
  {"rlsc", "--model " .. q(MODEL) .. " --data " .. q(GOOD) .. " --method temp_only --max-new-tokens 16 " .. R_OUT, 1,
   {"has no tokenizer.json"}, {"--eval-n"}},
  -- ablate: a second grid file was taken in place of the first; a folder as the recipe ran every
  -- point to fail; --set keeps a value's text for a string flag ("true") and for a recipe that
  -- declares no flags (0x1F is no number to it)
  {"ablate", q(GRID_OK) .. " " .. q(GRID_EMPTY) .. " --dry-run", 1, {"one grid file only"}},
  {"ablate", q(GRID_RECIPEDIR) .. " --dry-run", 1, {"recipe " .. TMP .. ": no such file"}},
  {"ablate", q(GRID_OK) .. " --dry-run --set name=true", 0, {"--alpha 0 --name true"}},
  {"ablate", q(GRID_PLAIN) .. " --dry-run --set tag=0x1F", 0, {"--alpha 0 --tag 0x1F"}},
  -- report: a one-dash option, a directory as the page; .htm is a page too
  {"report", "-o " .. q(TMP .. "/r2.html") .. " " .. q(RUN), 1, {"unknown option -o"}},
  {"report", q(HTMLDIR) .. " " .. q(RUN), 1, {"the output file '" .. HTMLDIR .. "' is a directory"}},
  {"report", q(TMP .. "/r.htm") .. " " .. q(RUN), 0, {"report: 1 run -> " .. TMP .. "/r.htm"}},
}

-- Run `confit recipes/<recipe>.lua <args>` for every {recipe, args} of runs side by side (one
-- shell script in dir); returns per run {text = stdout and stderr together, rc = exit status}.
-- `timeout` guards against a case that would start real work. 300 s, not 60: some 70 cases start
-- at once, and under `ctest -j2` on 2 cores this file failed now and then, never alone (the
-- failing case was not caught; a refusal that loads a model past the limit would show it).
local has_timeout = os.execute("command -v timeout >/dev/null 2>&1")
local function run_side_by_side(dir, runs)
  local lines = {}
  for i, r in ipairs(runs) do
    local cmd = ("%s%s recipes/%s.lua %s"):format(has_timeout and "timeout 300 " or "", q(EXE), r[1], r[2])
    lines[#lines + 1] = ("( %s > %s 2>&1; echo $? > %s ) &"):format(cmd, q(("%s/case%d.out"):format(dir, i)),
                                                                q(("%s/case%d.rc"):format(dir, i)))
  end
  lines[#lines + 1] = "wait"
  write(dir .. "/cases.sh", table.concat(lines, "\n") .. "\n")
  assert(os.execute("sh " .. q(dir .. "/cases.sh") .. " > /dev/null 2>&1"))
  local out = {}
  for i = 1, #runs do
    out[i] = {text = read(("%s/case%d.out"):format(dir, i)) or "",
              rc = tonumber((read(("%s/case%d.rc"):format(dir, i)) or ""):match("%d+"))}
  end
  return out
end

-- The run of recipe name with args gave exit status want_rc, no traceback, every fragment of
-- frags and none of absent; a refusal (rc 1) is one line "name: ...".
local function check_run(name, args, res, want_rc, frags, absent)
  local text = res.text
  local shown = ("recipes/%s.lua %s -> rc %s:\n%s"):format(name, args, tostring(res.rc), text)
  H.eq(res.rc, want_rc, "exit status of " .. shown)
  H.ok(not text:find("stack traceback", 1, true), "a traceback: " .. shown)
  for _, f in ipairs(frags or {}) do H.ok(text:find(f, 1, true), ("output lacks %q: %s"):format(f, shown)) end
  for _, f in ipairs(absent or {}) do H.ok(not text:find(f, 1, true), ("output has %q: %s"):format(f, shown)) end
  if want_rc == 1 then
    local body = text:gsub("\n$", "")
    H.ok(body ~= "" and not body:find("\n"), "not exactly one line: " .. shown)
    H.ok(body:sub(1, #name + 2) == name .. ": ", "not prefixed with '" .. name .. ": ': " .. shown)
  end
end

local t0 = require("confit").clock()
local results = run_side_by_side(TMP, CASES)
local wall = require("confit").clock() - t0
for i, c in ipairs(CASES) do
  H.case(("%s %s"):format(c[1], c[2]), function() check_run(c[1], c[2], results[i], c[3], c[4], c[5]) end)
end

H.case("report: a malformed JSONL line is a warning naming file and line; the page is written", function()
  local out = TMP .. "/ok.html"
  local cmd = ("%s recipes/report.lua %s %s 2>&1; echo rc=$?"):format(q(EXE), q(out), q(RUN))
  local pp = assert(io.popen(cmd))
  local text = pp:read("a")
  pp:close()
  H.ok(text:find("rc=0", 1, true), text)
  H.ok(text:find("report: warning: " .. RUN .. "/steps.jsonl:2:", 1, true), text)
  H.ok(not text:find("stack traceback", 1, true), text)
  H.ok(read(out) and read(out):find("steps.jsonl:2:", 1, true), "the page names the line")
end)

H.case("nothing was written outside the temp folder, and the cases ran in parallel", function()
  H.ok(not read(OUT .. "/rlsc/config.json"), "rlsc wrote a run directory")
  H.ok(not read(OUT .. "/pretrain/config.json"), "pretrain_toy wrote a model")
  H.ok(not cli.exists(TMP .. "/pt-shape"), "a refused pretrain_toy made the folders above its --out")
  H.ok(not cli.exists(TMP .. "/pt-std"), "a pretrain_toy refused for its --std made the folders above its --out")
  print(("%d recipe invocations in %.1fs"):format(#CASES, wall))
end)

-- (audit_w) a flag given twice, in either spelling, is refused: which value was meant is unknown
H.case("cli.exists: '.', '/', 'DIR/.' and an existing file are there; a missing path, one under a file, an overlong name are not", function()
  for _, p in ipairs({".", "..", "/", "lua/.", "lua/", "README.md"}) do H.ok(cli.exists(p), p) end
  for _, p in ipairs({TMP .. "/nope", TMP .. "/nope/.", "README.md/x", ("x"):rep(5000)}) do H.ok(not cli.exists(p), p) end
end)

H.case("cli.remove_tree puts the tree aside under a temporary name before rm removes it", function()
  -- (twenty-third session, a review's kill harness) an rm -rf that outlived its killed caller
  -- could remove what the next run had put at the same path
  local dir = TMP .. "/rt/keep"
  assert(os.execute("mkdir -p " .. q(dir .. "/sub")))
  write(dir .. "/sub/f.txt", "x")
  local real, seen = os.execute, nil
  os.execute = function(cmd) seen = cmd; return real(cmd) end
  local ok = pcall(cli.remove_tree, dir)
  os.execute = real
  H.ok(ok, "removed")
  H.ok(not cli.exists(dir), "gone")
  local target = seen and seen:match("^rm %-rf %-%- (.+)$")
  H.ok(target and require("confit.jsonio").is_temp_name((target:gsub("^'(.*)'$", "%1"))), "rm ran on a temporary name: " .. tostring(seen))
  H.eq(#cli.list_dir(TMP .. "/rt"), 0, "nothing left beside it")
  cli.remove_tree(TMP .. "/rt/none")   -- a missing path: nothing to do
end)

H.case("cli.parse_args: a flag given twice is refused, naming it", function()
  local spec = {eval_n = {"int", 16}, quiet = {"flag", false}}
  local e = H.raises(function() cli.parse_args({"--eval-n", "2", "--eval_n=4"}, spec, "recipes/x.lua") end)
  H.ok(e:find("--eval_n is given twice", 1, true), e)
  e = H.raises(function() cli.parse_args({"--quiet", "--quiet"}, spec, "recipes/x.lua") end)
  H.ok(e:find("--quiet is given twice", 1, true), e)
  H.eq(cli.parse_args({"--eval-n", "2", "--quiet"}, spec, "recipes/x.lua").eval_n, 2)
end)

-- The shared parser, in process.
H.case("cli.parse_args: ranges, choices, flags, user errors", function()
  local spec = {steps = {"int", 2, min = 1}, t = {"number", 0.5, above = 0, max = 2},
                mode = {"string", "a", choices = {"a", "b"}}, quiet = {"flag", false}}
  local o = cli.parse_args({"--steps=3", "--t", "2", "--mode", "b", "--quiet"}, spec, "recipes/x.lua")
  H.eq(o.steps, 3); H.eq(o.t, 2); H.eq(o.mode, "b"); H.eq(o.quiet, true); H.ok(o.given.steps)
  H.eq(cli.parse_args({"--quiet=false"}, spec, "x").quiet, false)
  local e = H.raises(function() cli.parse_args({"--steps", "0"}, spec, "recipes/x.lua") end,
                     "x: --steps must be >= 1, got 0")
  H.raises(function() cli.parse_args({"--t", "0"}, spec, "x") end, "--t must be > 0 and <= 2, got 0")
  H.raises(function() cli.parse_args({"--t", "nan"}, spec, "x") end, "--t expects a number")
  H.raises(function() cli.parse_args({"--t", "1e999"}, spec, "x") end, "--t expects a number")
  H.raises(function() cli.parse_args({"--mode", "c"}, spec, "x") end, "--mode must be one of a, b, got 'c'")
  H.raises(function() cli.parse_args({"--quiet=maybe"}, spec, "x") end, "--quiet is a flag")
  H.raises(function() cli.parse_args({"pos"}, spec, "x") end, "unexpected argument 'pos'")
  local ok, err = pcall(cli.parse_args, {"--nope"}, spec, "x")
  H.ok(not ok and cli.is_user_error(err), "a user error object")
  H.eq(tostring(err), "x: unknown flag --nope (see --help)")
  H.ok(e:find("^x: "), e)
  H.ok(cli.is_user_error("rlsc: bad", "rlsc"), "rlsc's string convention")
  H.ok(not cli.is_user_error("recipes/rlsc.lua:12: attempt to index a nil value", "rlsc"), "a bug")
  H.eq(cli.name_of("recipes/toy_compare.lua"), "toy_compare")
end)

-- cli.main: a recipe runs its main when it is the script run, and so does a wrapper script that
-- hands cli.main the main a dofile'd recipe returns (tail call or not); a file loaded by
-- dofile from a script (a test, a wrapper loading the recipe), also on a coroutine, runs nothing.
H.case("cli.main: the recipe run, a wrapper run (tail call or not); nothing when loaded", function()
  local dir = TMP .. "/clim"
  assert(os.execute("mkdir -p " .. q(dir)))
  local A = dir .. "/a.lua"
  write(A, 'local cli = require "confit.cli"\n'
        .. 'local function main(argv) print("ran a: " .. table.concat(argv, " ")) end\n'
        .. 'return cli.main("a", main)\n')
  write(dir .. "/w.lua", ('local cli = require "confit.cli"\nreturn cli.main("w", dofile(%q))\n'):format(A))
  write(dir .. "/w2.lua", ('local cli = require "confit.cli"\nlocal r = cli.main("w", dofile(%q))\nreturn r\n'):format(A))
  write(dir .. "/load.lua", ('print(type(dofile(%q)), type(dofile(%q)))\n'):format(A, dir .. "/w.lua")
        .. ('print(type(coroutine.wrap(dofile)(%q)))\n'):format(dir .. "/w.lua")
        .. ('print(type(select(2, pcall(dofile, %q))))\n'):format(dir .. "/w2.lua"))
  local function go(script)
    local text = shell(("%s %s x y 2>&1"):format(q(EXE), q(script)))
    return text
  end
  H.eq(go(A), "ran a: x y\n", "the recipe run as the script")
  H.eq(go(dir .. "/w.lua"), "ran a: x y\n", "a wrapper: return cli.main(name, dofile(recipe))")
  H.eq(go(dir .. "/w2.lua"), "ran a: x y\n", "a wrapper calling cli.main without a tail call")
  H.eq(go(dir .. "/load.lua"), "function\tfunction\nfunction\nfunction\n", "loaded: main returned, nothing run")
end)

-- >>> pretrain_toy --out, ablate grid values, integer flag ranges (added with the pretrain_toy /
-- ablate / jsonio fixes) ---------------------------------------------------------------------

-- Run one recipe command line; its output (stdout and stderr) and exit status.
local function run_recipe(recipe, args)
  local outf = TMP .. "/one.out"
  local ok, _, code = os.execute(("%s recipes/%s.lua %s > %s 2>&1"):format(q(EXE), recipe, args, q(outf)))
  return ok and 0 or code, read(outf) or ""
end

H.case("eval: a rerun of a finished output says what it resumed", function()
  -- (twenty-fourth session) it printed the table alone, as if it had evaluated again
  local out = TMP .. "/eval-rerun"
  local args = "--model examples/toy/model --bench toy --limit 2 --max-new-tokens 4 --n 0 --out " .. q(out)
  local rc, text = run_recipe("eval", args)
  H.eq(rc, 0, text)
  H.ok(not text:find("resumed", 1, true), "a fresh run resumes nothing: " .. text)
  rc, text = run_recipe("eval", args)
  H.eq(rc, 0, text)
  H.ok(text:find("eval: toy-mixed: resumed 2 of 2 problems from " .. out .. "/toy-mixed/eval_before.jsonl (kept; nothing generated)",
                 1, true), text)
end)

H.case("eval: the default --out names the model folder alike however --model spells it", function()
  -- (twenty-eighth session) --model ./model, ../model or . (a parent '.' or '..') gave
  -- runs/eval-model-qwen (and '.' runs/eval-.-qwen) for every such folder: the names come from
  -- the folder's real path where the given path does not name them. A `runs` file in each
  -- folder the cases run from stops eval at its first mkdir, naming the default --out.
  local D = TMP .. "/evalname"
  for _, m in ipairs({"toy/model", "other/model", "run/checkpoint-3", "qwen-small"}) do
    model_folder("evalname/" .. m, 128, true)
  end
  assert(os.execute("mkdir -p " .. q(D .. "/toy/x") .. " && ln -s toy/model " .. q(D .. "/mine")))
  local abs = io.popen("pwd"):read("l")
  local exe = EXE:sub(1, 1) == "/" and EXE or (abs .. "/" .. EXE)
  local cases = {   -- {folder run from (under D), --model, the model's name in the default --out}
    {"toy", "./model", "toy-model"}, {"toy", "model", "toy-model"}, {"toy", "model/", "toy-model"},
    {"toy/x", "../model", "toy-model"}, {"toy/model", ".", "toy-model"}, {"toy/x", "../../toy/model", "toy-model"},
    {"", D .. "/toy/model", "toy-model"}, {"", "toy/./model", "toy-model"},
    {"toy/x", "../../other/model", "other-model"}, {"other", "./model", "other-model"},
    {"run/checkpoint-3", ".", "run-checkpoint-3"}, {"run", "checkpoint-3", "run-checkpoint-3"},
    {"qwen-small", ".", "qwen-small"}, {"toy", "../qwen-small", "qwen-small"},
    {"", "mine", "mine"},   -- a link keeps the name it is given (not "toy-model")
  }
  local lines = {}
  for i, c in ipairs(cases) do
    local cwd = c[1] == "" and D or D .. "/" .. c[1]
    write(cwd .. "/runs", "")
    lines[i] = ("( cd %s && %s %s/recipes/eval.lua --model %s --bench toy > %s 2>&1 ) &"):format(
      q(cwd), q(exe), q(abs), q(c[2]), q(("%s/name%d.out"):format(D, i)))
  end
  lines[#lines + 1] = "wait"
  write(D .. "/cases.sh", table.concat(lines, "\n") .. "\n")
  assert(os.execute("sh " .. q(D .. "/cases.sh") .. " > /dev/null 2>&1"))
  for i, c in ipairs(cases) do
    H.eq(read(("%s/name%d.out"):format(D, i)), ("eval: --out: cannot create directory runs/eval-%s-qwen (Not a directory)\n")
         :format(c[3]), ("--model %s from %s"):format(c[2], c[1]))
  end
end)

H.case("toy_compare: an --out another toy_compare holds is refused in one line, nothing touched", function()
  -- (seventeenth session) a second toy_compare removed the first's live run folders as its own
  local confit = require "confit"
  local dir = TMP .. "/tc_locked"
  assert(os.execute("mkdir -p " .. q(dir)))
  local h = assert(confit.lock(dir .. "/.lock"))
  local me = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
  local rc, text = run_recipe("toy_compare", "--methods l2 --seeds 1 --steps 1 --eval-questions 2 --eval-n 1 --out "
                              .. q(dir) .. " --md " .. q(TMP .. "/tc_locked.md"))
  h:close()
  H.eq(rc, 1, text)
  H.ok(text:find("is in use by another confit process (PID " .. me .. ")", 1, true), text)
  H.eq(select(2, text:gsub("\n", "")), 1, "one line: " .. text)
  H.ok(not cli.exists(dir .. "/grid.json"), "nothing written")
end)

H.case("pretrain_toy: an --out holding other files is refused in one line and left alone", function()
  local dir = TMP .. "/pt_keep"
  assert(os.execute("mkdir -p " .. q(dir .. "/precious")))
  write(dir .. "/notes.txt", "keep\n")
  -- tiny settings: a recipe that did not refuse would finish in a moment (and delete the files)
  local rc, text = run_recipe("pretrain_toy", "--steps 1 --batch 1 --eval-every 0 --eval-questions 1 "
    .. "--layers 1 --hidden 4 --heads 1 --ffn 2 --out " .. q(dir .. "/"))
  H.eq(rc, 1, text)
  H.eq(text, "pretrain_toy: --out '" .. dir .. "/' holds notes.txt, which pretrain_toy does not write: "
       .. "only an empty folder or a toy model folder is replaced (give another --out)\n")
  H.eq(read(dir .. "/notes.txt"), "keep\n", "notes.txt kept")
  H.ok(cli.is_dir(dir .. "/precious"), "precious/ kept")
end)

H.case("pretrain_toy: the default --out is a new runs/ folder, not the shipped checkpoint", function()
  -- (twenty-third session, a review's finding) a short trial run replaced examples/toy/model
  local dir = TMP .. "/pt_default"
  assert(os.execute("mkdir -p " .. q(dir)))
  local abs = io.popen("pwd"):read("l")
  local exe = EXE:sub(1, 1) == "/" and EXE or (abs .. "/" .. EXE)
  local outf = TMP .. "/pt_default.out"
  -- (--quiet: where the model went is printed all the same)
  local ok = os.execute(("cd %s && %s %s/recipes/pretrain_toy.lua --quiet --steps 1 --batch 1 --eval-every 0 --eval-questions 1 "
    .. "--layers 1 --hidden 4 --heads 1 --ffn 2 > %s 2>&1"):format(q(dir), q(exe), q(abs), q(outf)))
  local text = read(outf) or ""
  H.ok(ok, text)
  local saved = text:match("saved (runs/pretrain_toy%-%d+%-%d+)")
  H.ok(saved, "saved where: " .. text)
  H.ok(saved and cli.exists(dir .. "/" .. saved .. "/model.safetensors"), "the model is in " .. tostring(saved))
  -- a folder of that name already there (a run in the same second) is left alone: the next
  -- free name takes the model (the second run replaced the first's model)
  local t0 = os.time()
  for dt = 0, 30 do
    local name = dir .. "/runs/pretrain_toy-" .. os.date("!%Y%m%d-%H%M%S", t0 + dt)
    assert(os.execute("mkdir -p " .. q(name)))
    write(name .. "/mine.txt", "keep\n")
  end
  ok = os.execute(("cd %s && %s %s/recipes/pretrain_toy.lua --quiet --steps 1 --batch 1 --eval-every 0 --eval-questions 1 "
    .. "--layers 1 --hidden 4 --heads 1 --ffn 2 > %s 2>&1"):format(q(dir), q(exe), q(abs), q(outf)))
  text = read(outf) or ""
  H.ok(ok, text)
  saved = text:match("saved (runs/pretrain_toy%-%d+%-%d+%-2)")
  H.ok(saved and cli.exists(dir .. "/" .. saved .. "/model.safetensors"), "saved beside the taken name: " .. text)
end)

H.case("rlsc: the default --out is a new folder, never one of that name holding other files", function()
  -- (twenty-eighth session) only a config.json made a name taken: a folder runs/rlsc-<time>
  -- holding the user's files (or a run in the same second that had not written its config.json
  -- yet) was written into, where --out of that folder is refused
  local dir = TMP .. "/rlsc_default"
  local abs = io.popen("pwd"):read("l")
  local exe = EXE:sub(1, 1) == "/" and EXE or (abs .. "/" .. EXE)
  local t0, names = os.time(), {}
  for dt = 0, 30 do
    names[#names + 1] = dir .. "/runs/rlsc-" .. os.date("!%Y%m%d-%H%M%S", t0 + dt)
    assert(os.execute("mkdir -p " .. q(names[#names])))
    write(names[#names] .. "/mine.txt", "keep\n")
  end
  local outf = TMP .. "/rlsc_default.out"
  local ok = os.execute(("cd %s && %s %s/recipes/rlsc.lua --no-eval --steps 1 --questions-per-step 1 --n 2 --quiet > %s 2>&1")
    :format(q(dir), q(exe), q(abs), q(outf)))
  local text = read(outf) or ""
  H.ok(ok, text)
  local name = text:match('"name":"(rlsc%-[%d%-]+)"')
  H.ok(name and name:match("%-2$") and cli.exists(dir .. "/runs/" .. name .. "/summary.json"), "the run went beside: " .. text)
  for _, n in ipairs(names) do H.eq(table.concat(cli.list_dir(n) or {}, ","), "mine.txt", n .. " left alone") end
end)

H.case("ablate: the model-folder check leaves out finished runs and --report-only", function()
  -- (twenty-third session, a review's finding) a grid whose model folder moved away after its
  -- runs finished could no longer be reported nor rerun (every run skipped)
  local mdir = TMP .. "/abl_model"
  assert(os.execute(("mkdir -p %s && cp examples/toy/model/* %s/"):format(q(mdir), q(mdir))))
  local gridf = TMP .. "/abl_moved.lua"
  write(gridf, ("return {base = {model = %q, steps = 1, n = 2, questions_per_step = 1, no_eval = true}, "
                .. "grid = {seed = {1}}, out = %q}\n"):format(mdir, TMP .. "/abl_moved"))
  local rc, text = run_recipe("ablate", q(gridf))
  H.eq(rc, 0, text)
  assert(os.execute(("mv %s %s"):format(q(mdir), q(mdir .. ".moved"))))
  rc, text = run_recipe("ablate", q(gridf) .. " --report-only")
  H.eq(rc, 0, text)
  rc, text = run_recipe("ablate", q(gridf))
  H.eq(rc, 0, text); H.ok(text:find("1 skipped", 1, true), text)
  -- a run that would start is still checked
  rc, text = run_recipe("ablate", q(gridf) .. " --dry-run --out " .. q(TMP .. "/abl_moved2"))
  H.eq(rc, 1, text); H.ok(text:find("no such directory", 1, true), text)
end)

H.case("toy_compare --quiet prints its table; every flag of rlsc, toy_compare and pretrain_toy says what it does", function()
  -- (twenty-third session, a review's findings) toy_compare --quiet printed nothing at all, and
  -- --help gave flags with a type and a default only
  local rc, text = run_recipe("toy_compare", "--quiet --methods l2 --seeds 1 --steps 1 --questions-per-step 1 --n 2 "
    .. "--eval-questions 2 --eval-n 2 --out " .. q(TMP .. "/tc_quiet") .. " --md " .. q(TMP .. "/tc_quiet.md"))
  H.eq(rc, 0, text)
  H.ok(text:find("| before (shipped model) |", 1, true) and text:find("| l2 |", 1, true), "the table: " .. text)
  H.eq(text, read(TMP .. "/tc_quiet.md") .. "\n", "the table and nothing else")
  for _, r in ipairs({"rlsc", "toy_compare", "pretrain_toy"}) do
    local hrc, help = run_recipe(r, "--help")
    H.eq(hrc, 0, help)
    local lines, flags = {}, 0
    for l in help:gmatch("[^\n]+") do lines[#lines + 1] = l end
    for i, l in ipairs(lines) do
      local flag = l:match("^  (%-%-[%w%-]+)%s+%a+%s+default ")
      if flag then
        flags = flags + 1
        H.ok(lines[i + 1] and lines[i + 1]:match("^      %S"), r .. " " .. flag .. " has no description under it")
      end
    end
    H.ok(flags >= 15, r .. ": " .. flags .. " flags listed")
  end
end)

H.case("a failure of the machine (a full disk) is one line without positions; a lost standard output is exit 1; a lock that cannot be taken says why", function()
  -- (a full disk while rlsc wrote a checkpoint ended in a traceback; eval, ablate and report
  -- exited 0 with their table lost on a full stdout; an uncreatable lock file read "in use")
  local script = TMP .. "/envfail.lua"
  write(script, 'local cli = require "confit.cli"\n'
        .. 'return cli.run("demo", function() error("/w/lua/confit/train.lua:188: safetensors.c:899: /o/ck/optimizer.safetensors: '
        .. 'write failed: No space left on device") end, {})\n')
  local text = shell(("%s %s 2>&1; echo rc=$?"):format(q(EXE), q(script)))
  H.eq(text, "demo: /o/ck/optimizer.safetensors: write failed: No space left on device\nrc=1\n")
  if cli.exists("/dev/full") then
    p = assert(io.popen(("%s recipes/eval.lua --help > /dev/full 2>%s; echo rc=$?"):format(q(EXE), q(TMP .. "/full.err"))))
    text = p:read("a")
    p:close()
    H.eq(text, "rc=1\n", "eval --help into a full stdout")
    H.ok((read(TMP .. "/full.err") or ""):find("eval: cannot write the standard output", 1, true), read(TMP .. "/full.err"))
  end
  H.eq(cli.lock_problem("OUT", "x is held by another process (PID 7)", 7), "OUT is in use by another confit process (PID 7)")
  H.eq(cli.lock_problem("OUT", "x is held by another process", nil), "OUT is in use by another confit process")
  local h, err, pid = require("confit").lock(TMP .. "/no/such/dir/.lock")
  H.ok(not h, "no lock")
  H.ok(cli.lock_problem("OUT", err, pid):find("^OUT: cannot take its lock file: .*No such file or directory"), cli.lock_problem("OUT", err, pid))
end)

H.case("pretrain_toy and ablate: an --out named 'DIR/.' is checked as DIR; ablate refuses a folder of other files", function()
  local dir = TMP .. "/dot_keep"
  assert(os.execute("mkdir -p " .. q(dir)))
  write(dir .. "/notes.txt", "keep\n")
  local rc, text = run_recipe("pretrain_toy", "--steps 1 --batch 1 --eval-every 0 --eval-questions 1 "
    .. "--layers 1 --hidden 4 --heads 1 --ffn 2 --out " .. q(dir .. "/."))
  H.eq(rc, 1, text)
  H.ok(text:find("holds notes.txt, which pretrain_toy does not write", 1, true), text)
  -- ablate wrote its grid.json and results into any --out (a finished rlsc run's folder too)
  local g = TMP .. "/dot_grid.lua"
  write(g, "return {base = {steps = 1, questions_per_step = 1, n = 2, no_eval = true}, grid = {seed = {1}}}\n")
  for _, out in ipairs({dir, dir .. "/."}) do
    rc, text = run_recipe("ablate", q(g) .. " --out " .. q(out))
    H.eq(rc, 1, text)
    H.ok(text:find("holds notes.txt, which ablate does not write", 1, true), text)
  end
  H.eq(cli.list_dir(dir)[1], "notes.txt", "only notes.txt")
  H.eq(#cli.list_dir(dir), 1, "nothing written")
end)

H.case("ablate: a value that cannot be a flag names the grid file and the axis", function()
  local g = TMP .. "/nan_grid.lua"
  write(g, ('return {grid = {alpha = {0, 0/0}}, out = %q}\n'):format(TMP .. "/never"))
  local rc, text = run_recipe("ablate", q(g) .. " --dry-run")
  H.eq(rc, 1, text)
  H.eq(text, "ablate: " .. g .. ": axis alpha: value NaN is not finite\n")
end)

H.case("cli.parse_args: integer flags take max, and refuse inf and nan", function()
  local spec = {k = {"int", 2, min = 1, max = 8}}
  H.eq(cli.parse_args({"--k", "8"}, spec, "x").k, 8)
  H.raises(function() cli.parse_args({"--k", "9"}, spec, "x") end, "x: --k must be >= 1 and <= 8, got 9")
  for _, v in ipairs({"inf", "-inf", "nan", "1e999"}) do
    H.raises(function() cli.parse_args({"--k", v}, spec, "x") end, "--k expects a number, got '" .. v .. "'")
  end
  H.raises(function() cli.parse_args({"--k", "2.5"}, spec, "x") end, "--k expects an integer")
end)
-- <<< end of the pretrain_toy / ablate / jsonio block

-- >>> eval / toy_compare inputs (added with the fix_eval fixes): a GPU that is not there, flag
-- values past the generator's limits, empty questions, a directory as --data or --md, another
-- run's folder as --out, a tokenizer that does not fit the model, resumes that cannot be trusted.
do
  local FE = TMP .. "/fix_eval"
  assert(os.execute("mkdir -p " .. q(FE)))
  local TOYM = "examples/toy/model"
  local function eval_line(args, out)
    return ("--model %s --progress off --out %s %s"):format(TOYM, q(out), args)
  end
  -- inputs
  local EMPTYQ = FE .. "/emptyq.jsonl"
  write(EMPTYQ, '{"question": "1+2=", "answer": "3"}\n\n{"question": "", "answer": "4"}\n')
  local RLSCRUN = FE .. "/rlsc-run"
  assert(os.execute("mkdir -p " .. q(RLSCRUN)))
  local RUN_SUMMARY = '{"config": {"recipe": "rlsc"}, "benchmarks": {"toy-mixed": {"before": {"acc": 0.5}}}}\n'
  write(RLSCRUN .. "/summary.json", RUN_SUMMARY)
  local MISFIT = FE .. "/misfit"                       -- 64 embedding rows, a 257-id tokenizer
  assert(os.execute("mkdir -p " .. q(MISFIT)))
  for _, f in ipairs({"config.json", "model.safetensors"}) do
    write(MISFIT .. "/" .. f, read("tests/fixtures/tiny_qwen2/" .. f))
  end
  write(MISFIT .. "/tokenizer.json", read("examples/toy/model/tokenizer.json"))
  local AFILE = FE .. "/afile"                        -- a file where --out wants a folder
  write(AFILE, "not a folder\n")
  local BADJSON = FE .. "/bad.jsonl"
  write(BADJSON, '{"question": "1+2=", "answer": "3"}\n{"question": oops}\n')
  -- (fix_eval2) a copy of the toy model in another folder, to resume another model's records
  local TOYCOPY = FE .. "/toy-copy"
  assert(os.execute("cp -R " .. q(TOYM) .. " " .. q(TOYCOPY)))
  -- finished runs to resume: one whose settings file gets corrupted, one whose data changes
  local SETTINGS_RUN, DATA_RUN, MODEL_RUN = FE .. "/resume-settings", FE .. "/resume-data", FE .. "/resume-model"
  local DATA = FE .. "/data.jsonl"
  write(DATA, '{"question": "1+2=", "answer": "3"}\n{"question": "2+2=", "answer": "4"}\n')
  local prep = {("%s recipes/eval.lua %s"):format(q(EXE), eval_line("--bench toy --limit 2 --max-new-tokens 4", SETTINGS_RUN)),
                ("%s recipes/eval.lua %s"):format(q(EXE), eval_line("--data " .. q(DATA) .. " --template plain --max-new-tokens 4", DATA_RUN)),
                -- --dtype f32 on the CPU is accepted: it is what the CPU computes in (bf16 is refused)
                ("%s recipes/eval.lua %s"):format(q(EXE), eval_line("--bench toy --limit 1 --max-new-tokens 4 --dtype f32", MODEL_RUN))}
  for _, cmd in ipairs(prep) do assert(os.execute(cmd .. " > /dev/null 2>&1"), cmd) end
  local SETTINGS = SETTINGS_RUN .. "/toy-mixed/eval_before.settings.json"
  write(SETTINGS, "{\n")
  write(DATA, '{"question": "1+2=", "answer": "3"}\n{"question": "2+2=", "answer": "5"}\n')

  local confit = require "confit"
  local gpu = confit.cuda and confit.cuda.available()
  local cases = {
    {"eval", eval_line("--bench toy --temperature 1e400 --n 2", FE .. "/o1"), {"--temperature", "1e400"}},
    {"eval", eval_line("--bench toy --n 2000000", FE .. "/o2"), {"--n", "1048576", "2000000"}},
    {"eval", eval_line("--bench toy --dtype fp16", FE .. "/o7"), {"--dtype", "fp16"}},
    -- (sixteenth session) --name is a folder inside --out; the toy split is bounded; decimals only
    {"eval", eval_line("--data " .. q(DATA) .. " --name ''", FE .. "/o9"), {"--name ''", "names the benchmark's folder"}},
    {"eval", eval_line("--data " .. q(DATA) .. " --name ../escaped", FE .. "/o9"), {"--name '../escaped'", "without '/'"}},
    {"eval", eval_line("--data " .. q(DATA) .. " --name .", FE .. "/o9"), {"--name '.'"}},
    {"eval", eval_line("--bench toy --toy-questions 1000000000", FE .. "/o9"), {"--toy-questions", "at most 10000"}},
    {"eval", eval_line("--bench toy --temperature 0x10", FE .. "/o9"), {"--temperature", "decimal", "0x10"}},
    -- a copy of gsm8k.jsonl is the benchmark gsm8k: a record without "####" has no reference
    {"eval", eval_line("--data " .. q(GSM_NOREF), FE .. "/o9"), {GSM_NOREF .. ":1: missing answer (reference of gsm8k: the text after the last '####' of field 'answer')",
                                                               "read as the benchmark gsm8k", "--answer-field"}},
    {"eval", eval_line("--data " .. q(EMPTYQ) .. " --template plain", FE .. "/o3"), {EMPTYQ .. ":3: empty question"}},
    {"eval", eval_line("--data " .. q(FE), FE .. "/o4"), {FE, "is a directory"}},
    {"eval", eval_line("--data " .. q(BADJSON) .. " --template plain", FE .. "/o8"),
     {BADJSON .. ":2: malformed JSON"}, {"bench.load"}},
    -- the --out that cannot be made is found before the model is loaded (MISFIT's load fails)
    {"eval", ("--model %s --bench toy --limit 1 --out %s"):format(q(MISFIT), q(AFILE .. "/o")),
     {AFILE .. "/o", "cannot create", "(Not a directory)"}},
    -- another model's records in --out are not resumed
    {"eval", ("--model %s --progress off --out %s --bench toy --limit 1 --max-new-tokens 4"):format(q(TOYCOPY), q(MODEL_RUN)),
     {"model: ", "examples/toy/model then, ", "/toy-copy now", "--no-resume"}},
    {"eval", eval_line("--bench toy --limit 1", RLSCRUN), {RLSCRUN .. "/summary.json", "rlsc", "another --out"}},
    {"eval", ("--model %s --bench toy --limit 1 --out %s"):format(q(MISFIT), q(FE .. "/o6")),
     {MISFIT .. "/tokenizer.json", "vocab_size is 64"}},
    {"eval", eval_line("--bench toy --limit 2 --max-new-tokens 8 --n 4", SETTINGS_RUN), {SETTINGS, "--no-resume"}},
    {"eval", eval_line("--data " .. q(DATA) .. " --template plain --max-new-tokens 4", DATA_RUN),
     {"problem 2", "answer", "--no-resume"}},
    {"toy_compare", "--md " .. q(FE) .. " --out " .. q(FE .. "/cmp") .. " --seeds 1 --methods l2 --steps 1 "
     .. "--questions-per-step 1 --n 2 --eval-questions 2 --eval-n 1 --max-new-tokens 8", {"--md", FE, "directory"}},
  }
  if not gpu then
    cases[#cases + 1] = {"eval", eval_line("--bench toy --limit 1 --device cuda", FE .. "/o-cuda"),
                         {"--device cuda: no usable GPU (", "CUDA"}}
    -- an --out holding a CPU eval: no GPU is the mistake, not the device the records name
    -- (it was "other settings (device: cpu then, cuda now) ... --no-resume", which then failed so)
    cases[#cases + 1] = {"eval", eval_line("--bench toy --limit 1 --max-new-tokens 4 --device cuda", MODEL_RUN),
                         {"--device cuda: no usable GPU ("}, {"--no-resume", "then"}}
    -- (twenty-fourth session) the reason, as confit.cuda.device_name() gives it, in the one line
    local _, why = require("confit").cuda.device_name()
    cases[#cases + 1] = {"rlsc", "--device cuda --out " .. q(FE .. "/r-cuda"), {"--device cuda: no usable GPU (" .. tostring(why) .. ")"}}
  end
  local res = run_side_by_side(FE, cases)
  for i, c in ipairs(cases) do
    H.case(("fix_eval: %s %s"):format(c[1], c[2]), function() check_run(c[1], c[2], res[i], 1, c[3], c[4]) end)
  end
  H.case("fix_eval: refused runs left the files they found alone and wrote nothing", function()
    H.eq(read(RLSCRUN .. "/summary.json"), RUN_SUMMARY, "the training run's summary.json")
    H.ok(not cli.exists(RLSCRUN .. "/toy-mixed"), "no benchmark folder in the training run")
    H.eq(read(SETTINGS), "{\n", "the unreadable settings file is not rewritten")
    H.ok(not cli.exists(FE .. "/o-cuda"), "no --out for a model that cannot reach the GPU")
    H.ok(not cli.exists(FE .. "/o6"), "no --out left for a model that cannot be loaded")
    H.eq(read(AFILE), "not a folder\n", "the file in the way")
    H.eq(cli.exists(MODEL_RUN .. "/toy-mixed/config.json")
         and require("confit.jsonio").read_json(MODEL_RUN .. "/toy-mixed/config.json").model, TOYM,
         "config.json still names the model that wrote the records")
    H.ok(not cli.exists(FE .. "/cmp/grid.json"), "toy_compare computed nothing")
  end)
  H.case("fix_eval2: eval --dtype f32 on the CPU runs and records f32, and the model", function()
    local jsonio = require "confit.jsonio"
    local cfg = jsonio.read_json(MODEL_RUN .. "/toy-mixed/config.json")
    H.eq(type(cfg) == "table" and cfg.dtype, "f32", "config.json dtype")
    local st = jsonio.read_json(MODEL_RUN .. "/toy-mixed/eval_before.settings.json")
    H.ok(type(st) == "table" and st.device == "cpu" and st.dtype == "f32"
         and tostring(st.model):find("/examples/toy/model$"), "settings: " .. tostring(st and st.model))
  end)
  -- (audit_f) one eval process per --out: a second is refused in one line; a dead writer's
  -- temporary files in OUT and its benchmark folders are removed when it runs
  H.case("eval: an --out locked by another confit process is refused in one line; stale temporary files go", function()
    local out = FE .. "/locked"
    assert(os.execute("mkdir -p " .. q(out .. "/toy-mixed")))
    local h = assert(require("confit").lock(out .. "/.lock"))
    local me = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    local function eval(args)
      local text = shell(("%s recipes/eval.lua %s 2>&1; echo rc=$?"):format(q(EXE), args))
      return text
    end
    local args = eval_line("--bench toy --limit 1 --max-new-tokens 8", out)
    local text = eval(args)
    H.eq(text, ("eval: --out %s is in use by another confit process (PID %s); wait for it or use another --out\nrc=1\n")
               :format(out, me), "one line")
    H.ok(not cli.exists(out .. "/toy-mixed/config.json"), "nothing written")
    h:close()
    write(out .. "/summary.json.tmp-999999-1-1", "{")
    write(out .. "/toy-mixed/eval_before.jsonl.tmp-999999-1-2", "{")
    text = eval(args)
    H.ok(text:find("rc=0", 1, true), text)
    H.ok(not cli.exists(out .. "/summary.json.tmp-999999-1-1"), "OUT's temporary file removed")
    H.ok(not cli.exists(out .. "/toy-mixed/eval_before.jsonl.tmp-999999-1-2"), "the benchmark folder's removed")
    H.ok(not cli.exists(out .. "/.lock"), "the lock file is removed at the end")
  end)
  -- (twenty-second session, a review's finding) a records file that is a folder got "remove that
  -- line" as its way out
  H.case("eval: records that cannot be read as a file are refused with the file's way out", function()
    local out = FE .. "/recdir"
    local args = eval_line("--bench toy --limit 2 --max-new-tokens 4", out)
    local first = shell(("%s recipes/eval.lua %s 2>&1; echo rc=$?"):format(q(EXE), args))
    H.ok(first:find("rc=0", 1, true), first)
    assert(os.execute(("rm %s && mkdir %s"):format(q(out .. "/toy-mixed/eval_before.jsonl"), q(out .. "/toy-mixed/eval_before.jsonl"))))
    local text = shell(("%s recipes/eval.lua %s 2>&1; echo rc=$?"):format(q(EXE), args))
    H.ok(text:find("eval_before.jsonl: not a regular file (give --no-resume or another --out)", 1, true), text)
    H.ok(not text:find("remove that line", 1, true), text)
  end)
  -- (twenty-second session) what eval lets stand in OUT besides its own run: another benchmark's
  -- folder of an earlier eval, an empty folder; a folder of anything else is refused (cases above)
  H.case("eval: an --out holding an earlier eval's other benchmark (and a report of it) is eval's", function()
    local out = FE .. "/shared-out"
    local data = FE .. "/two.jsonl"
    write(data, '{"question": "1+1=", "answer": "2"}\n')
    local first = shell(("%s recipes/eval.lua %s 2>&1; echo rc=$?"):format(q(EXE),
      eval_line("--data " .. q(data) .. " --template plain --max-new-tokens 4", out)))
    H.ok(first:find("rc=0", 1, true), first)
    assert(os.execute("mkdir -p " .. q(out .. "/empty")))
    write(out .. "/report.html", "<html></html>")   -- a report of the run beside it
    local second = shell(("%s recipes/eval.lua %s 2>&1; echo rc=$?"):format(q(EXE),
      eval_line("--bench toy --limit 1 --max-new-tokens 4", out)))
    H.ok(second:find("rc=0", 1, true), second)
    H.ok(cli.exists(out .. "/two/config.json") and cli.exists(out .. "/toy-mixed/config.json"), "both benchmarks")
  end)
end
-- <<< end of the eval / toy_compare inputs block

-- >>> rlsc inputs (added with the fix_rlsc fixes): every check before anything is printed or
-- written. --resume without --out, flag values past the generator's and the toy world's limits, a
-- model without tokenizer.json or with cut weights, an empty question, evaluation prompts longer
-- than the context, an --out that is a model folder, holds weights or a finished run, or cannot
-- be written; (fix_rlsc2) an --out of other files or an ablate grid's root, a resume from another
-- model's checkpoint.
do
  local FR = TMP .. "/fix_rlsc"
  assert(os.execute("mkdir -p " .. q(FR)))
  local TOYM = "examples/toy/model"
  local TINY = "--steps 1 --questions-per-step 1 --n 2 --no-eval"
  local NEW = FR .. "/new"                 -- the --out of every case that must not get that far
  -- inputs
  local FINISHED = FR .. "/finished"       -- a finished rlsc run (no checkpoint)
  assert(os.execute("mkdir -p " .. q(FINISHED)))
  write(FINISHED .. "/config.json", '{"recipe": "rlsc"}\n')
  write(FINISHED .. "/summary.json", '{"after": {"greedy_acc": 0.5}}\n')
  local WEIGHTS = FR .. "/weights"          -- a folder with weights and no config.json
  assert(os.execute("mkdir -p " .. q(WEIGHTS)))
  write(WEIGHTS .. "/model.safetensors", "weights\n")
  local CUT = FR .. "/cut"                  -- the toy model with its weights cut short
  assert(os.execute("mkdir -p " .. q(CUT)))
  for _, f in ipairs({"config.json", "tokenizer.json"}) do write(CUT .. "/" .. f, read(TOYM .. "/" .. f)) end
  write(CUT .. "/model.safetensors", read(TOYM .. "/model.safetensors"):sub(1, 5000))
  local EMPTYQ = FR .. "/emptyq.jsonl"
  write(EMPTYQ, '{"question": "1+2=", "answer": "3"}\n{"question": "", "answer": "4"}\n')
  local LONG = FR .. "/long.jsonl"          -- 200 tokens of the toy's byte-level tokenizer
  write(LONG, '{"question": "' .. ("9"):rep(200) .. '", "answer": "9"}\n')
  local TOKCFG = read(TOKMODEL .. "/config.json")
  -- (fix_rlsc2) folders that are no rlsc run: other files beside what rlsc would delete, and an
  -- ablate grid's root
  local NOTES = FR .. "/notes"
  assert(os.execute("mkdir -p " .. q(NOTES)))
  local NOTES_FILES = {["eval_before.jsonl"] = '{"id": 1}\n', ["notes.txt"] = "keep\n", ["profile.json"] = "[]\n"}
  for f, text in pairs(NOTES_FILES) do write(NOTES .. "/" .. f, text) end
  local GRIDROOT = FR .. "/grid"
  assert(os.execute("mkdir -p " .. q(GRIDROOT .. "/alpha=0")))
  write(GRIDROOT .. "/grid.json", '{"axes": {"alpha": [0]}}\n')
  write(GRIDROOT .. "/alpha=0/ablate.json", "{}\n")
  -- (fix_rlsc2) runs with a checkpoint to resume (made by hand: the checks stop before reading
  -- weights): one of another model folder, one whose checkpoint has another architecture
  -- (fix_rlsc3) and one made on the GPU in bf16: its checkpoint holds f32 masters of bf16 weights
  local function fake_run(dir, model_path, hidden, device, dtype)
    assert(os.execute("mkdir -p " .. q(dir .. "/checkpoint-1")))
    write(dir .. "/config.json", ('{"recipe": "rlsc", "model": "%s"%s}\n'):format(model_path,
          device and (', "device": "%s", "dtype": "%s"'):format(device, dtype) or ""))
    write(dir .. "/checkpoint-1/trainer_state.json", '{"step": 1, "method": "l2", "seed": 1}\n')
    write(dir .. "/checkpoint-1/config.json", (read(TOYM .. "/config.json"):gsub('"hidden_size":%s*128', '"hidden_size": ' .. hidden)))
  end
  local OTHERRUN, ARCHRUN = FR .. "/other-model-run", FR .. "/arch-run"
  fake_run(OTHERRUN, "elsewhere/model", 128)
  fake_run(ARCHRUN, TOYM, 64)
  local GPURUN = FR .. "/gpu-run"
  fake_run(GPURUN, TOYM, 128, "cuda", "bf16")
  local RUNCFG = {[OTHERRUN] = read(OTHERRUN .. "/config.json"), [ARCHRUN] = read(ARCHRUN .. "/config.json"),
                  [GPURUN] = read(GPURUN .. "/config.json")}

  local function o(dir) return " --out " .. q(dir) end
  local cases = {
    {"--resume " .. TINY, {"--resume needs --out"}},
    {"--method grpo_prob --n 1 --steps 1 --no-eval" .. o(NEW), {"--method grpo_prob needs --n >= 2"}},
    {"--n 2000000 " .. TINY .. o(NEW), {"--n", "1048576", "2000000"}},
    {"--eval-n 2000000 --steps 1 --questions-per-step 1 --n 2" .. o(NEW), {"--eval-n", "1048576"}},
    {"--steps 1000000000 --no-eval" .. o(NEW), {"--steps", "1000000", "1000000000"}},
    {"--updates-per-batch 1000000 --no-eval" .. o(NEW), {"--updates-per-batch", "1000", "1000000"}},
    {"--eval-questions 1000000000 --steps 1" .. o(NEW), {"--eval-questions", "10000"}},
    {"--steps 100000 --questions-per-step 2 --no-eval" .. o(NEW), {"200000 distinct training questions", "100000"}},
    {"--model tests/fixtures/tiny_qwen2 " .. TINY .. o(NEW), {"tests/fixtures/tiny_qwen2", "no tokenizer.json"}},
    {"--model " .. q(TOKMODEL) .. " --data " .. q(EMPTYQ) .. " --template plain --max-new-tokens 16" .. o(NEW),
     {EMPTYQ .. ":2: empty question"}},
    {"--model " .. q(TOKMODEL) .. " --data " .. q(GOOD) .. " --template plain --max-new-tokens 16 --eval-data "
     .. q(LONG) .. o(NEW), {"evaluation prompt", LONG, "200 tokens", "128 positions"}},
    -- a template whose markers the tokenizer lacks: named, with the way out
    {"--model " .. q(TOKMODEL) .. " --data " .. q(LONG) .. " --template chatml --max-new-tokens 16" .. o(NEW),
     {"the training template chatml writes <|im_start|>", "--template plain"}},
    {"--model " .. q(TOKMODEL) .. " " .. TINY .. o(TOKMODEL), {TOKMODEL, "not an rlsc run's"}},
    {TINY .. o(WEIGHTS), {WEIGHTS, "holds a model (model.safetensors)"}},
    {TINY .. " --lr 1e30" .. o(FINISHED), {FINISHED, "finished run (summary.json)"}},
    {TINY .. " --resume" .. o(FINISHED), {FINISHED, "no checkpoint to resume from"}},
    {"--model " .. q(CUT) .. " " .. TINY .. o(NEW), {"cannot load --model", CUT}},
    -- (fix_rlsc2)
    {TINY .. o(NOTES), {"--out '" .. NOTES .. "' holds eval_before.jsonl and no rlsc run (config.json)", "another --out"}},
    {TINY .. o(GRIDROOT), {"--out '" .. GRIDROOT .. "' holds alpha=0 and no rlsc run"}},
    {TINY .. " --resume" .. o(OTHERRUN), {"--out '" .. OTHERRUN .. "' is a run of --model 'elsewhere/model', not '" .. TOYM .. "'"}},
    {TINY .. " --resume" .. o(ARCHRUN), {ARCHRUN .. "/checkpoint-1 was trained from another model (hidden_size 64, the model to train 128)"}},
    {TINY .. o(ARCHRUN), {"--out '" .. ARCHRUN .. "' holds checkpoint-1 of an earlier run: resume it (--resume) or use another --out"}},
    -- (fix_rlsc3)
    {TINY .. " --resume" .. o(GPURUN), {"--out '" .. GPURUN .. "' is a run on --device cuda --dtype bf16, not --device cpu (f32)",
                                         "resume with its --device and --dtype"}},
    -- (sixteenth session) the same folders named "DIR/.": cli.exists took them for missing (a
    -- rename onto itself gives EBUSY), and every --out check was skipped
    {TINY .. " --lr 1e30" .. o(FINISHED .. "/."), {FINISHED .. "/.", "finished run (summary.json)"}},
    {"--model " .. q(TOKMODEL) .. " " .. TINY .. o(TOKMODEL .. "/."), {TOKMODEL .. "/.", "not an rlsc run's"}},
    {TINY .. o(NOTES .. "/."), {"holds eval_before.jsonl and no rlsc run (config.json)"}},
  }
  local runs = {}
  for i, c in ipairs(cases) do runs[i] = {"rlsc", c[1]} end
  local res = run_side_by_side(FR, runs)
  for i, c in ipairs(cases) do
    H.case(("fix_rlsc: rlsc %s"):format(c[1]), function() check_run("rlsc", c[1], res[i], 1, c[2]) end)
  end
  H.case("fix_rlsc: refused runs left the folders they found alone and created none", function()
    H.ok(not cli.exists(NEW), "an --out was created")
    H.eq(read(TOKMODEL .. "/config.json"), TOKCFG, "the model's config.json")
    H.eq(read(FINISHED .. "/config.json"), '{"recipe": "rlsc"}\n', "the finished run's config.json")
    H.eq(read(FINISHED .. "/summary.json"), '{"after": {"greedy_acc": 0.5}}\n', "the finished run's summary.json")
    H.ok(not cli.exists(FINISHED .. "/steps.jsonl"), "steps.jsonl in the finished run")
    H.ok(not cli.exists(WEIGHTS .. "/config.json"), "config.json beside the weights")
    for f, text in pairs(NOTES_FILES) do H.eq(read(NOTES .. "/" .. f), text, "the other folder's " .. f) end
    H.ok(not cli.exists(NOTES .. "/config.json") and not cli.exists(GRIDROOT .. "/config.json"), "config.json in a folder of other files")
    for dir, text in pairs(RUNCFG) do
      H.eq(read(dir .. "/config.json"), text, dir .. "/config.json")
      H.ok(not cli.exists(dir .. "/steps.jsonl"), dir .. "/steps.jsonl")
    end
  end)
end
-- <<< end of the rlsc inputs block

-- >>> toy_compare --out / --md / summary block (added with the fix_tc fixes): an --out holding
-- data toy_compare did not write is refused before any work and left as it was; --md that is
-- --out or toy_compare's own grid.json is refused up front; decimal --seeds only; summary.json
-- carries RUNDIR.md's acc / pass@1 / maj@K / pass@K / n; a rerun on its own grid is accepted and
-- leaves a file named <md>.tmp alone.
do
  local TC = TMP .. "/fix_tc"
  assert(os.execute("mkdir -p " .. q(TC)))
  local TINY = "--seeds 1 --methods l2 --steps 1 --questions-per-step 1 --n 2 --eval-questions 2 "
               .. "--eval-n 2 --max-new-tokens 8 --quiet"
  -- an ablate grid's run folder with the method/seed axes toy_compare uses
  local ABL = TC .. "/abl"
  local ABLRUN = ABL .. "/method=l2,seed=1"
  assert(os.execute("mkdir -p " .. q(ABLRUN)))
  write(ABLRUN .. "/ablate.json", '{"keep": 1}\n')
  write(ABLRUN .. "/checkpoint-keep.txt", "keep\n")
  -- a run folder of the right name whose config.json is not toy_compare's
  local OTHER = TC .. "/other"
  assert(os.execute("mkdir -p " .. q(OTHER .. "/method=l2,seed=1")))
  write(OTHER .. "/method=l2,seed=1/config.json", '{"recipe": "rlsc", "name": "mine"}\n')
  -- an rlsc run as --out
  local RLRUN = TC .. "/rlsc-run"
  assert(os.execute("mkdir -p " .. q(RLRUN)))
  write(RLRUN .. "/config.json", '{"recipe": "rlsc"}\n')
  write(RLRUN .. "/summary.json", '{"after": {"acc": 0.5}}\n')
  local function tc(args) return TINY .. " " .. args end
  local cases = {
    {"toy_compare", tc("--out " .. q(ABL) .. " --md " .. q(TC .. "/a.md")), 1, {ABL, "ablate.json", "another --out"}},
    {"toy_compare", tc("--out " .. q(OTHER) .. " --md " .. q(TC .. "/b.md")), 1, {OTHER, "method=l2,seed=1"}},
    {"toy_compare", tc("--out " .. q(RLRUN) .. " --md " .. q(TC .. "/c.md")), 1, {RLRUN, "config.json"}},
    {"toy_compare", tc("--out " .. q(TC .. "/same") .. " --md " .. q(TC .. "/same")), 1, {"--md", "directory"}},
    {"toy_compare", tc("--out " .. q(TC .. "/g") .. " --md " .. q(TC .. "/g/grid.json")), 1, {"--md", "grid"}},
    -- (a flag is given once: TINY's --seeds 1 replaced)
    {"toy_compare", tc("--out " .. q(TC .. "/h") .. " --md " .. q(TC .. "/h.md")):gsub("%-%-seeds 1", "--seeds 0x10"), 1, {"--seeds", "'0x10'"}},
    {"toy_compare", tc("--out " .. q(TC .. "/e") .. " --md " .. q(TC .. "/e.md")):gsub("%-%-seeds 1", "--seeds 1e0"), 1, {"--seeds", "'1e0'"}},
  }
  local res = run_side_by_side(TC, cases)
  for i, c in ipairs(cases) do
    H.case(("fix_tc: %s %s"):format(c[1], c[2]), function() check_run(c[1], c[2], res[i], c[3], c[4]) end)
  end
  H.case("fix_tc: refused toy_compare runs left what they found and computed nothing", function()
    H.eq(read(ABLRUN .. "/ablate.json"), '{"keep": 1}\n', "the ablate run's ablate.json")
    H.eq(read(ABLRUN .. "/checkpoint-keep.txt"), "keep\n", "the ablate run's checkpoint")
    H.eq(read(OTHER .. "/method=l2,seed=1/config.json"), '{"recipe": "rlsc", "name": "mine"}\n', "the other config.json")
    H.eq(read(RLRUN .. "/summary.json"), '{"after": {"acc": 0.5}}\n', "the rlsc run's summary.json")
    for _, d in ipairs({ABL, OTHER, RLRUN, TC .. "/same", TC .. "/g", TC .. "/h", TC .. "/e"}) do
      H.ok(not cli.exists(d .. "/grid.json"), d .. "/grid.json written")
    end
    H.ok(not cli.exists(TC .. "/a.md") and not cli.exists(TC .. "/same/grid.json"), "a table written")
  end)
  H.case("fix_tc: summary.json aliases, grid.json, a rerun on its own grid keeps <md>.tmp", function()
    local jsonio = require "confit.jsonio"
    -- the table inside --out (twenty-eighth session): a rerun takes it, and <md>.tmp, for its own
    local OUT = TC .. "/ok"
    local MD = OUT .. "/ok.md"
    local cmd = ("%s recipes/toy_compare.lua %s --out %s --md %s 2>&1; echo rc=$?"):format(q(EXE), TINY, q(OUT), q(MD))
    local function go()
      local pp = assert(io.popen(cmd))
      local text = pp:read("a")
      pp:close()
      return text
    end
    local text = go()
    H.ok(text:find("rc=0", 1, true), text)
    local s = jsonio.read_json(OUT .. "/method=l2,seed=1/summary.json")
    H.ok(type(s) == "table", "summary.json")
    for _, part in ipairs({"before", "after"}) do
      local t = s[part]
      H.eq(t.acc, t.greedy_acc, part .. " acc")
      H.eq(t["pass@1"], t.pass1_t05, part .. " pass@1")
      H.eq(t.n, 2, part .. " n")
      -- --eval-n 2: the toy's names and RUNDIR.md's both say 2, never 16
      H.ok(type(t.maj2) == "number" and t["maj@2"] == t.maj2, part .. " maj@2 = maj2")
      H.ok(type(t.pass2) == "number" and t["pass@2"] == t.pass2, part .. " pass@2 = pass2")
      H.eq(t.samples, 2, part .. " samples")
      for _, k in ipairs({"maj16", "pass16", "maj@16", "pass@16"}) do H.eq(t[k], nil, part .. " " .. k) end
    end
    local md = read(MD)
    H.ok(md:find("| maj@2 | pass@2 |", 1, true) and not md:find("@16", 1, true), "the table's headers: " .. md)
    local g = jsonio.read_json(OUT .. "/grid.json")
    H.eq(g.runs[1].dir, "method=l2,seed=1", "grid.json run")
    write(MD .. ".tmp", "someone's\n")
    text = go()
    H.ok(text:find("rc=0", 1, true), "rerun on its own grid: " .. text)
    H.eq(read(MD .. ".tmp"), "someone's\n", "<md>.tmp")
    H.ok(read(MD):find("| l2 |", 1, true), "the table")
    -- a run killed mid-way leaves rlsc's unlocked .lock (and, killed before config.json, only
    -- that): toy_compare takes the folder back
    write(OUT .. "/method=l2,seed=1/.lock", "12345\n")
    text = go()
    H.ok(text:find("rc=0", 1, true), "a run folder with a leftover .lock: " .. text)
    os.execute("rm -rf " .. q(OUT .. "/method=l2,seed=1") .. " && mkdir -p " .. q(OUT .. "/method=l2,seed=1"))
    write(OUT .. "/method=l2,seed=1/.lock", "12345\n")
    text = go()
    H.ok(text:find("rc=0", 1, true), "a run folder holding only a leftover .lock: " .. text)
  end)
end
-- <<< end of the toy_compare --out / --md / summary block

-- >>> rlsc's output and records without an evaluation, and for --data runs (tiny runs, seconds):
-- --no-eval records "eval": false and prints no evaluation time; a --data run names its
-- benchmark as recipes/eval.lua does (the file's base name) and prints a before/after table with
-- the change; the toy run's table and JSON name maj/pass after --eval-n.
do
  local RL = TMP .. "/rlsc_out"
  assert(os.execute("mkdir -p " .. q(RL)))
  local jsonio = require "confit.jsonio"
  local RLSC = "recipes/rlsc.lua"
  local function rlsc(args)
    local text = shell(("%s %s %s 2>&1; echo rc=$?"):format(q(EXE), RLSC, args))
    local last
    for line in text:gmatch("[^\n]+") do if not line:match("^rc=") then last = line end end
    return text, last
  end
  local TINY = "--steps 1 --questions-per-step 1 --n 2 --max-new-tokens 16"
  H.case("rlsc --no-eval: config.json records no evaluation, and no evaluation time is printed", function()
    local out = RL .. "/noeval"
    local text = rlsc(TINY .. " --no-eval --out " .. q(out))
    H.ok(text:find("rc=0", 1, true), text)
    H.eq(assert(jsonio.read_json(out .. "/config.json")).eval, false, "config.json eval")
    H.ok(not text:find("eval before", 1, true) and not text:find("eval after", 1, true), text)
    H.ok(text:find("time: training ", 1, true), text)
  end)
  H.case("rlsc toy --eval-n 4: the table and the JSON line say maj4 and pass4, with the change", function()
    local out = RL .. "/toy4"
    local text, last = rlsc(TINY .. " --eval-questions 3 --eval-n 4 --out " .. q(out))
    H.ok(text:find("rc=0", 1, true), text)
    H.ok(text:find("\nmaj4 ", 1, true) and text:find("\npass4 ", 1, true) and text:find("change", 1, true), text)
    local j = assert(jsonio.decode(last))
    H.ok(type(j.after.maj4) == "number" and type(j.after.pass2) == "number", last)
    H.eq(j.after.maj16, nil, "no maj16 from 4 samples"); H.eq(j.after.pass16, nil, "no pass16")
    H.ok(not text:find("maj16", 1, true) and not text:find("pass16", 1, true), text)
  end)
  H.case("rlsc --data FILE: the benchmark is the file's base name; a before/after table with the change", function()
    local data = RL .. "/short.jsonl"
    write(data, '{"question": "1+2=", "answer": "3"}\n{"question": "4+4-1=", "answer": "7"}\n')
    local out = RL .. "/data"
    local text, last = rlsc(TINY .. " --model examples/toy/model --template plain --eval-n 2 --data "
                            .. q(data) .. " --out " .. q(out))
    H.ok(text:find("rc=0", 1, true), text)
    local j = assert(jsonio.decode(last))
    H.eq(j.before.benchmark, "short", "named as recipes/eval.lua names the file")
    H.eq(j.config.data, data, "the path stays in config")
    H.eq(assert(jsonio.read_json(out .. "/summary.json")).after.benchmark, "short")
    H.eq(assert(jsonio.read_jsonl(out .. "/eval_before.jsonl"))[1].benchmark, "short", "the records")
    H.ok(text:find("metric%s+before%s+after%s+change\n") and text:find("\nacc ", 1, true)
         and text:find("\npass@2 ", 1, true) and text:find("\nmaj@2 ", 1, true), text)
    H.ok(not text:find("\navg@2", 1, true), "avg@2 is pass@1 again: " .. text)
  end)
  -- (audit_f) a kill while config.json is written leaves only jsonio's temporary file; an ablate
  -- grid point killed while ablate.json is written likewise: neither is foreign data
  H.case("rlsc: an --out holding only a dead writer's temporary files is accepted, the files removed", function()
    for _, c in ipairs({{"tmpcfg", {"config.json.tmp-999999-1-1"}},
                        {"tmpablate", {"ablate.json.tmp-999999-1-1", "log.txt"}}}) do
      local out = RL .. "/" .. c[1]
      assert(os.execute("mkdir -p " .. q(out)))
      for _, f in ipairs(c[2]) do write(out .. "/" .. f, "{") end
      local text = rlsc(TINY .. " --no-eval --quiet --out " .. q(out))
      H.ok(text:find("rc=0", 1, true), text)
      H.ok(not cli.exists(out .. "/" .. c[2][1]), c[2][1] .. " removed")
      H.eq(assert(jsonio.read_json(out .. "/config.json")).recipe, "rlsc", "the run's config.json")
      H.ok(not cli.exists(out .. "/.lock"), "the lock file is removed at the end")
    end
  end)
  -- (audit_f) two processes on one run directory: the second is refused in one line until the
  -- first lets go (flock locks belong to an open file description: this process's handle counts)
  H.case("rlsc: an --out locked by another confit process is refused in one line, then runs", function()
    local confit = require "confit"
    local out = RL .. "/locked"
    assert(os.execute("mkdir -p " .. q(out)))
    local h = assert(confit.lock(out .. "/.lock"))
    local me = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
    local text = rlsc(TINY .. " --no-eval --quiet --out " .. q(out))
    H.ok(text:find("rc=1", 1, true), text)
    local want = ("rlsc: --out %s is in use by another confit process (PID %s); wait for it or use another --out\n")
                 :format(out, me)
    H.eq(text:gsub("rc=%d+\n$", ""), want, "one line")
    H.ok(not cli.exists(out .. "/config.json"), "nothing written")
    h:close()
    text = rlsc(TINY .. " --no-eval --quiet --out " .. q(out))
    H.ok(text:find("rc=0", 1, true), text)
    H.ok(cli.exists(out .. "/summary.json"), "the run ran")
    -- a lock file a killed run left behind (the kernel released its lock) stops nothing
    write(out .. "/.lock", "999999\n")
    assert(os.execute("rm -f " .. q(out .. "/summary.json")))
    text = rlsc(TINY .. " --no-eval --quiet --out " .. q(out))
    H.ok(text:find("rc=0", 1, true), "a stale .lock in a run directory: " .. text)
  end)
end
-- <<< end of the rlsc output block


-- >>> (audit_w) Ctrl-C: a recipe (confit.cli) or a plain script says so in one line and exits with
-- status 130, no traceback; eval.lua's default benchmark folder, missing, names --data-dir
do
  -- start `confit script`, wait for the file `ready` it creates, send SIGINT; stderr and status
  local function interrupted(script, ready)
    local errf = TMP .. "/int.err"
    local sh = table.concat({
      "%s %s > /dev/null 2> %s & pid=$!",
      "(sleep 10; kill -KILL $pid) >/dev/null 2>&1 & wd=$!",
      "i=0; while [ ! -e %s ] && [ $i -lt 500 ]; do sleep 0.02; i=$((i+1)); done",
      "kill -INT $pid; wait $pid; st=$?; kill $wd 2>/dev/null; echo $st"}, "\n")
    local p = assert(io.popen("sh -c " .. q(sh:format(q(EXE), q(script), q(errf), q(ready)))))
    local st = tonumber(p:read("a"):match("%d+"))
    p:close()
    return read(errf) or "", st
  end
  H.case("U5: Ctrl-C of a recipe or a script: one line, exit status 130", function()
    local ready = TMP .. "/int.ready"
    local cases = {
      {"local cli = require 'confit.cli'\nreturn cli.run('demo', function() io.open(%q, 'w'):close() while true do end end)\n",
       "demo: interrupted\n"},
      {"io.open(%q, 'w'):close()\nwhile true do end\n", "confit: interrupted\n"}}
    for i, c in ipairs(cases) do
      os.remove(ready)
      local script = TMP .. "/int" .. i .. ".lua"
      write(script, c[1]:format(ready))
      local err, st = interrupted(script, ready)
      H.eq(st, 130, "status: " .. err)
      H.eq(err, c[2], "stderr")
    end
    -- a real error keeps its traceback and status 1
    local script = TMP .. "/int_err.lua"
    write(script, "local cli = require 'confit.cli'\nreturn cli.run('demo', function() local x = nil; return x.y end)\n")
    local p = assert(io.popen(("%s %s 2>&1; echo rc=$?"):format(q(EXE), q(script))))
    local text = p:read("a")
    p:close()
    H.ok(text:find("stack traceback", 1, true) and text:find("rc=1", 1, true), text)
  end)
  H.case("U2: eval.lua's default benchmark folder, missing, names --data-dir", function()
    local here = io.popen("pwd"):read("l")
    local deep = TMP .. "/a/b"
    -- the default folder is ../shared/data/benchmarks beside the project whose lua/ runs
    -- (h24: no longer from the current folder): a copy of lua/ in TMP/a has none
    assert(os.execute("mkdir -p " .. q(deep) .. " && cp -r lua " .. q(TMP .. "/a/lua")))
    local exe = EXE:sub(1, 1) == "/" and EXE or (here .. "/" .. EXE)   -- run by hand: build/confit
    local text = shell(("cd %s && CONFIT_LUA_DIR=%s %s %s --model %s --bench math500 2>&1; echo rc=$?")
                       :format(q(deep), q(TMP .. "/a/lua"), q(exe), q(here .. "/recipes/eval.lua"), q(here .. "/examples/toy/model")))
    H.ok(text:find("rc=1", 1, true) and text:find("--data-dir", 1, true), text)
    H.ok(not text:find("stack traceback", 1, true), text)
  end)
end
-- <<< end of the audit_w block

-- >>> the hD audit block: tiny temperatures refused up front; a value left out before the next
-- flag; flags with no effect in their mode; toy_compare's --eval-seed recorded; `confit -i`
-- reaches the REPL; --help into a full stdout; eval's _ spellings; the advice of a lock refusal;
-- toy_compare's --md checked before --out is made and its --questions-per-step bounded.
do
  local HD = TMP .. "/hD"
  assert(os.execute("mkdir -p " .. q(HD)))
  local SMALL = "--steps 1 --questions-per-step 1 --n 2 --eval-questions 1 --eval-n 1 --max-new-tokens 8 --quiet"
  local function o(name) return " --out " .. q(HD .. "/" .. name) end
  local function tcq(name) return SMALL .. " --methods l2 --seeds 1" .. o(name) .. " --md " .. q(HD .. "/" .. name .. ".md") end
  local function grid(name, body)
    local path = HD .. "/" .. name .. ".lua"
    write(path, ("return {%s, out = %q}\n"):format(body, HD .. "/" .. name))
    return q(path)
  end
  -- folders whose lock file cannot be made (a folder in its place: "Is a directory")
  for _, d in ipairs({"lk_rlsc", "lk_tc", "lk_eval", "lk_abl"}) do assert(os.execute("mkdir -p " .. q(HD .. "/" .. d .. "/.lock"))) end
  local AFILE = HD .. "/afile"
  write(AFILE, "x\n")
  local LOCKED = {"cannot take its lock file", "Is a directory; use another --out"}
  local cases = {
    -- 1: refused by the flag check, so also by ablate's dry run (the step failed after config.json)
    {"rlsc", SMALL .. " --temperature 1e-309" .. o("t1"), 1, {"--temperature must be >= 5.6e-309, got 1e-309"}},
    {"rlsc", SMALL .. " --loss-temperature 1e-309" .. o("t2"), 1, {"--loss-temperature must be >= 5.6e-309"}},
    {"rlsc", SMALL .. " --device cuda --temperature 1e-40" .. o("t3"), 1, {"--temperature 1e-40", "GPU losses' range"}},
    {"toy_compare", tcq("t4") .. " --temperature 1e-309", 1, {"--temperature must be >= 5.6e-309"}},
    {"ablate", grid("t5", 'base = {temperature = 1e-309}, grid = {seed = {1}}') .. " --dry-run", 1, {"run seed=1", "--temperature must be >= 5.6e-309"}},
    -- 2: a flag where a value belongs
    {"rlsc", SMALL .. " --out --quiet", 1, {"--out needs a value", "--quiet", "--out=VALUE"}},
    {"ablate", grid("v1", 'grid = {seed = {1}}') .. " --out --dry-run", 1, {"--out needs a directory", "--dry-run"}},
    {"ablate", grid("v2", 'base = {alpha = true}, grid = {seed = {1}}') .. " --dry-run", 1,
     {"alpha = true: --alpha takes a number value"}},
    {"eval", "--model --bench toy", 1, {"--model needs a value", "--bench"}},
    -- 3: flags that do nothing in the mode given
    {"rlsc", SMALL .. " --eval-mode strict" .. o("n1"), 1, {"--eval-mode applies to --data runs"}},
    {"rlsc", SMALL .. " --template chatml" .. o("n2"), 1, {"--template applies to --data runs"}},
    {"rlsc", SMALL .. " --question-field zz" .. o("n3"), 1, {"--question-field applies to --data runs"}},
    {"rlsc", SMALL .. " --answer-field zz" .. o("n4"), 1, {"--answer-field applies to --data runs"}},
    {"rlsc", SMALL .. " --temperature-scale 0.01" .. o("n5"), 1, {"--temperature-scale", "--method l2 trains"}},
    -- (twenty-fifth session) --dtype bf16 on the CPU was taken and ignored by rlsc and eval (the CPU holds f32
    -- weights; its matmul has no bf16 kernel): refused by each, and by ablate's check of a grid
    {"rlsc", SMALL .. " --dtype bf16" .. o("n6"), 1,
     {"rlsc: --dtype bf16 applies to --device cuda: the CPU holds the weights in f32 (drop --dtype, or add --device cuda)"}},
    {"rlsc", SMALL .. " --device cpu --dtype bf16" .. o("n6"), 1, {"rlsc: --dtype bf16 applies to --device cuda"}},
    {"eval", "--model examples/toy/model --bench toy --dtype bf16" .. o("n7"), 1,
     {"eval: --dtype bf16 applies to --device cuda: the CPU holds the weights in f32 (drop --dtype, or add --device cuda)"}},
    {"ablate", grid("n8", 'base = {dtype = "bf16"}, grid = {seed = {1}}') .. " --dry-run", 1,
     {"run seed=1", "--dtype bf16 applies to --device cuda"}},
    -- (nineteenth session) --kl-coef with a method without a KL term: ignored, yet recorded in
    -- config.json, and a reference model loaded for nothing
    {"rlsc", SMALL .. " --kl-coef 0.5" .. o("n7"), 1, {"--kl-coef 0.5: --method l2 has no KL term", "drop --kl-coef"}},
    {"ablate", grid("klx", 'base = {kl_coef = 0.1}, grid = {method = {"grpo_ttrl", "l1"}}') .. " --dry-run", 1,
     {"method=l1", "--kl-coef 0.1: --method l1 has no KL term"}},
    {"rlsc", "--model examples/toy/model --data " .. q(GOOD) .. " --template plain --task pure" .. o("n6"), 1,
     {"--task picks the toy world's task"}},
    -- 7: eval reads --top_p as --top-p (its range check answers), --max_new_tokens=0 likewise
    {"eval", "--model examples/toy/model --bench toy --top_p 2", 1, {"--top-p must be in (0, 1]"}},
    {"eval", "--model examples/toy/model --bench toy --max_new_tokens=0", 1, {"--max-new-tokens must be >= 1"}},
    {"eval", "--model examples/toy/model --bench toy --top_p 1 --top-p 1", 1, {"--top-p is given twice"}},
    -- 8: a lock file that cannot be made is no process to wait for
    {"rlsc", SMALL .. o("lk_rlsc"), 1, LOCKED, {"wait for it"}},
    {"toy_compare", tcq("lk_tc"), 1, LOCKED, {"wait for it"}},
    {"eval", "--model examples/toy/model --bench toy --limit 1 --max-new-tokens 4" .. o("lk_eval"), 1, LOCKED, {"wait for it"}},
    {"ablate", grid("lk_abl", 'base = {steps = 1}, grid = {seed = {1}}'), 1, LOCKED, {"wait for it"}},
    -- 9: --md that cannot be written is found before --out is made; --questions-per-step bounded
    {"toy_compare", SMALL .. " --methods l2 --seeds 1" .. o("m1") .. " --md " .. q(AFILE .. "/sub/t.md"), 1,
     {"cannot write --md", AFILE .. "' is not a folder"}},
    {"toy_compare", "--questions-per-step 100000000" .. o("m2"), 1, {"--questions-per-step must be >= 1 and <= 4096"}},
    {"toy_compare", "--steps 100 --questions-per-step 4000" .. o("m3"), 1, {"400000 distinct training questions; at most 100000"}},
  }
  local res = run_side_by_side(HD, cases)
  for i, c in ipairs(cases) do
    H.case(("hD: %s %s"):format(c[1], c[2]), function() check_run(c[1], c[2], res[i], c[3], c[4], c[5]) end)
  end
  H.case("hD: the refusals wrote nothing (no run folder, no --out of toy_compare, no './--quiet')", function()
    for _, d in ipairs({"t1", "t2", "t3", "t4", "t5", "v1", "n1", "n2", "n3", "n4", "n5", "n6", "m1", "m2", "m3"}) do
      H.ok(not cli.exists(HD .. "/" .. d), d .. " was made")
    end
    H.ok(not cli.exists("--quiet") and not cli.exists("--dry-run"), "a folder named after a flag")
    for _, d in ipairs({"lk_rlsc", "lk_tc", "lk_eval", "lk_abl"}) do
      H.eq(table.concat(cli.list_dir(HD .. "/" .. d), " "), ".lock", d .. " holds only its .lock")
    end
  end)
  H.case("hD: cli.lock_refusal advises waiting only for a lock another process holds", function()
    H.eq(cli.lock_refusal("OUT", "x is held by another process (PID 7)", 7),
         "OUT is in use by another confit process (PID 7); wait for it or use another --out")
    H.eq(cli.lock_refusal("OUT", "x: cannot open the lock file: Read-only file system", nil),
         "OUT: cannot take its lock file: x: cannot open the lock file: Read-only file system; use another --out")
    H.eq(cli.lock_refusal("P", "x is held by another process", nil, "wait", "other"), "P is in use by another confit process; wait")
    H.eq(cli.lock_refusal("P", "x: cannot lock: No lock", nil, "wait", "other"), "P: cannot take its lock file: x: cannot lock: No lock; other")
  end)
  local full = cli.exists("/dev/full") and H.case or function(name) H.skip(name, "no /dev/full") end
  full("hD: --help into a full standard output is exit 1 with one line, for every recipe", function()
    for _, r in ipairs({"rlsc", "toy_compare", "pretrain_toy", "eval", "ablate", "report"}) do
      local text = shell(("%s recipes/%s.lua --help 2>&1 >/dev/full; echo rc=$?"):format(q(EXE), r))
      H.ok(text:find("^" .. r .. ": cannot write the standard output: [^\n]*\nrc=1\n$"), r .. ": " .. text)
    end
    -- a benchmark's help (its header and flags, bench/common.lua) alike
    local text = shell(("%s bench/grade_bench.lua --help 2>&1 >/dev/full; echo rc=$?"):format(q(EXE)))
    H.ok(text:find("^grade_bench: cannot write the standard output: [^\n]*\nrc=1\n$"), "grade_bench: " .. text)
  end)
  H.case("hD: cli.repl_follows reads -i among the executable's options, not as an -e chunk's code", function()
    local saved = arg
    local function follows(t) arg = t; local r = cli.repl_follows(); arg = saved; return r end
    H.eq(follows({[-2] = "confit", [-1] = "-i", [0] = "s.lua"}), true, "confit -i s.lua")
    H.eq(follows({[-4] = "confit", [-3] = "-e", [-2] = "x=1", [-1] = "-i", [0] = "s.lua"}), true, "confit -e x=1 -i s.lua")
    H.eq(follows({[-3] = "confit", [-2] = "-e", [-1] = "-i", [0] = "s.lua"}), false, "confit -e -i s.lua: -i is code")
    H.eq(follows({[-2] = "confit", [-1] = "--", [0] = "s.lua"}), false, "confit -- s.lua")
    H.eq(follows({[-1] = "confit", [0] = "s.lua"}), false, "confit s.lua")
  end)
  H.case("hD: confit -i recipe.lua reaches the REPL after a success, a refusal and --help", function()
    local function repl(args)
      local text = shell(("echo 'print(\"in repl\")' | %s -i %s 2>&1; echo rc=$?"):format(q(EXE), args))
      return text
    end
    local text = repl("recipes/eval.lua --model examples/toy/model --bench toy --limit 1 --max-new-tokens 4 --progress off"
                      .. o("repl_eval"))
    H.ok(text:find("eval: results in", 1, true) and text:find("\nin repl\nrc=0\n$"), "eval returning 0: " .. text)
    text = repl("recipes/rlsc.lua --bogus")
    H.eq(text, "confit: rlsc: unknown flag --bogus (see --help)\nin repl\nrc=1\n", "a refusal")
    text = repl("recipes/ablate.lua --help")
    H.ok(text:find("^usage: confit recipes/ablate.lua") and text:find("\nin repl\nrc=0\n$"), "ablate --help: " .. text)
    text = repl("recipes/rlsc.lua --help")
    H.ok(text:find("^usage: confit recipes/rlsc.lua") and text:find("\nin repl\nrc=0\n$"), "rlsc --help: " .. text)
    -- without -i the refusal is its one line, and the status is the recipe's
    text = shell(("%s recipes/rlsc.lua --bogus 2>&1; echo rc=$?"):format(q(EXE)))
    H.eq(text, "rlsc: unknown flag --bogus (see --help)\nrc=1\n")
  end)
  H.case("hD: toy_compare records --eval-seed as rlsc does (eval.question_seed) and names it in the table", function()
    local jsonio = require "confit.jsonio"
    local out, md = HD .. "/seed7", HD .. "/seed7.md"
    local text = shell(("%s recipes/toy_compare.lua %s --methods l2 --seeds 1 --eval-seed 7 --out %s --md %s 2>&1; echo rc=$?")
                       :format(q(EXE), SMALL, q(out), q(md)))
    H.ok(text:find("rc=0", 1, true), text)
    local cfg = jsonio.read_json(out .. "/method=l2,seed=1/config.json")
    H.eq(type(cfg) == "table" and cfg.eval.question_seed, 7, "config.json eval.question_seed")
    local sum = jsonio.read_json(out .. "/method=l2,seed=1/summary.json")
    H.eq(type(sum) == "table" and sum.config.eval.question_seed, 7, "summary.json config.eval.question_seed")
    H.ok((read(md) or ""):find("1 held-out questions (drawn with seed 7)", 1, true), read(md))
  end)
end
-- <<< end of the hD audit block

H.case("confit -i with a script that parses its flags without cli.run: --help exits 0 as it says", function()
  -- (cli.exit raised its 'exit status 0' to no cli.run, and confit printed it and exited 1)
  local text = shell(("echo 'print(1)' | %s -i bench/micro_batch.lua --help 2>&1; echo rc=$?"):format(q(EXE)))
  H.ok(text:find("rc=0\n", 1, true) and not text:find("exit status", 1, true), text)
end)

H.case("rlsc: --micro-batch that would split a method of one's own is refused before anything is written", function()
  -- (eighteenth session) a batch-wide mean came out scaled by the number of chunks; train.run
  -- refused it only after rlsc had printed its header and written config.json
  local w = TMP .. "/mean_wrapper.lua"
  write(w, 'local rl = require "confit.rl"\n'
        .. 'rl.methods.mean_sft = function(b, o) return -rl.seq_logprobs(b, o.temperature):mean(), {} end\n'
        .. 'return require("confit.cli").main("mine", dofile("recipes/rlsc.lua"))\n')
  local out = TMP .. "/mean_out"
  local function go(extra)
    local outf = TMP .. "/mean.out"
    local ok, _, code = os.execute(("%s %s --method mean_sft --steps 1 --questions-per-step 2 --n 2 --no-eval "
                                    .. "--max-new-tokens 4 --out %s %s > %s 2>&1"):format(q(EXE), q(w), q(out), extra, q(outf)))
    return ok and 0 or code, read(outf) or ""
  end
  local rc, text = go("--micro-batch 2")
  H.eq(rc, 1, text)
  H.ok(text:find("--micro-batch 2: method mean_sft is not declared a sum over questions", 1, true), text)
  H.eq(select(2, text:gsub("\n", "")), 1, "one line: " .. text)
  H.ok(not cli.exists(out), "nothing written")
  rc, text = go("--micro-batch 0")
  H.eq(rc, 0, text)
end)

H.case("rlsc: --method-opt KEY=VALUE reaches a method of one's own and config.json; mistakes are one line", function()
  -- (twenty-fourth session) a method's own hyperparameter could not reach it through rlsc
  local w = TMP .. "/mo_wrapper.lua"
  write(w, 'local rl = require "confit.rl"\n'
        .. 'rl.register_weighted("thr", function(lpv, _, o)\n'
        .. '  assert(o.my_thresh == 3 and o.tag == "a=b" and o.on == true, "method_opts: " .. tostring(o.my_thresh))\n'
        .. '  local w = {} for i = 1, #lpv do w[i] = o.my_thresh end return w end, {per_sample = true})\n'
        .. 'return require("confit.cli").main("mine", dofile("recipes/rlsc.lua"))\n')
  local function go(out, extra)
    local outf = TMP .. "/mo.out"
    local ok, _, code = os.execute(("%s %s --steps 1 --questions-per-step 1 --n 2 --no-eval --quiet "
                                    .. "--max-new-tokens 4 --out %s %s > %s 2>&1"):format(q(EXE), q(w), q(out), extra, q(outf)))
    return ok and 0 or code, read(outf) or ""
  end
  local rc, text = go(TMP .. "/mo_ok", "--method thr --method-opt my_thresh=3 --method-opt tag=a=b --method-opt=on=true")
  H.eq(rc, 0, text)
  local cfg = require("confit.jsonio").read_json(TMP .. "/mo_ok/config.json")
  H.ok(cfg and cfg.method_opts and cfg.method_opts.my_thresh == 3 and cfg.method_opts.tag == "a=b"
       and cfg.method_opts.on == true, "config.json records method_opts")
  for _, c in ipairs({
    {"--method thr --method-opt my_thresh", "--method-opt my_thresh: give KEY=VALUE"},
    {"--method thr --method-opt my_thresh=3 --method-opt my_thresh=4", "my_thresh is given twice"},
    {"--method l2 --method-opt my_thresh=3", "--method-opt my_thresh=3: --method l2 is built in"},
    {"--method thr --method-opt alpha=3", "--method-opt alpha=3: alpha is a setting of its own (--alpha)"},
    -- (twenty-fourth session) KEY=VALUE was said to these, which are; and ' 3' became 3
    {"--method thr --method-opt é=ü", '--method-opt é=ü: the key "é" must be a plain name (letters, digits and _'},
    {"--method thr --method-opt x.y=2", '--method-opt x.y=2: the key "x.y" must be a plain name'},
    {"--method thr --method-opt 'x= 3'", "--method-opt x= 3: the value \" 3\" begins or ends with white space"},
    {"--method thr --kl-coef 0.5", "--kl-coef 0.5: --method thr has no KL term"},
  }) do
    local out = TMP .. "/mo_bad"
    rc, text = go(out, c[1])
    H.eq(rc, 1, c[1] .. ": " .. text)
    H.ok(text:find(c[2], 1, true), c[1] .. ": " .. text)
    H.eq(select(2, text:gsub("\n", "")), 1, "one line: " .. text)
    H.ok(not cli.exists(out), "nothing written")
  end
end)

H.case("rlsc and toy_compare from another folder find the shipped toy model (a --model given stays as given)", function()
  -- (twenty-seventh session) `confit /path/recipes/rlsc.lua` from elsewhere stopped at once:
  -- "--model 'examples/toy/model': no such directory (a path from the current folder, ...)"
  local here = shell("pwd"):gsub("\n$", "")
  local away = TMP .. "/elsewhere"
  assert(os.execute("mkdir -p " .. q(away)))
  local exe = EXE:sub(1, 1) == "/" and EXE or here .. "/" .. EXE   -- (ctest gives an absolute one)
  local function from_away(recipe, args)
    local outf = TMP .. "/away.out"
    local ok, _, code = os.execute(("cd %s && %s %s %s > %s 2>&1"):format(q(away), q(exe),
      q(here .. "/recipes/" .. recipe .. ".lua"), args, q(outf)))
    return ok and 0 or code, read(outf) or ""
  end
  -- (twenty-eighth session) and the toy evaluation's defaults: 200 held-out questions drawn with seed 1
  -- (--eval-seed), sampled with --seed; --name is the run's name
  local rc, text = from_away("rlsc", "--steps 1 --questions-per-step 1 --n 2 --eval-n 1 --max-new-tokens 8 --quiet "
                             .. "--seed 2 --name my-run --out run")
  H.eq(rc, 0, text)
  local cfg = assert(require("confit.jsonio").read_json(away .. "/run/config.json"))
  H.eq(cfg.model, here .. "/examples/toy/model", "the project's toy model, by its full path")
  H.eq(cfg.eval.questions, 200, "--eval-questions' toy default"); H.eq(cfg.eval.question_seed, 1, "--eval-seed's toy default")
  H.eq(cfg.eval.seed, 2, "the evaluation samples with --seed"); H.eq(cfg.name, "my-run", "--name")
  local sm = require("confit.jsonio").read_json(away .. "/run/summary.json")
  H.eq(sm and sm.after and sm.after.n, 200, "evaluated on 200 questions")
  rc, text = from_away("toy_compare", "--methods l2 --seeds 1 --steps 1 --questions-per-step 1 --n 2 --eval-questions 2 --eval-n 1 --out cmp --md cmp.md")
  H.eq(rc, 0, text)
  H.ok(text:find(here .. "/examples/toy/model", 1, true), text)
  -- (twenty-eighth session) --eval-n 1: maj@1 and no pass@1 column beside the T = .5 one (the same number)
  H.ok((read(away .. "/cmp.md") or ""):find("| pass@1 T=1 | maj@1 | direct |", 1, true), read(away .. "/cmp.md"))
  rc, text = from_away("rlsc", "--model examples/toy/model --steps 1 --out run2")
  H.eq(rc, 1, text)
  H.ok(text:find("--model 'examples/toy/model': no such directory (a path from the current folder, " .. away, 1, true), text)
end)

os.execute("rm -rf " .. q(TMP))
-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, C04, C05, C07, C08)
do
local cli = require "confit.cli"

H.case("cli.parse_args: --flag=0 / =1 are false / true, like =false / =true", function()
  local spec = {quiet = {"flag", false}, steps = {"int", 2}}
  H.eq(cli.parse_args({"--quiet=0"}, spec, "recipes/x.lua").quiet, false, "--quiet=0")
  H.eq(cli.parse_args({"--quiet=1"}, spec, "recipes/x.lua").quiet, true, "--quiet=1")
  H.eq(cli.parse_args({"--quiet=false"}, spec, "recipes/x.lua").quiet, false, "--quiet=false")
end)

H.case("cli.parse_args: -h after a flag that takes a value is a missing value, not the value", function()
  local spec = {out = {"string", "runs"}}
  H.raises(function() cli.parse_args({"--out", "-h"}, spec, "recipes/x.lua") end, "x: --out needs a value", "-h")
  H.eq(cli.parse_args({"--out=-h"}, spec, "recipes/x.lua").out, "-h", "as --out=-h it is the value")
end)

H.case("cli.check_context: prompt + new tokens must fit the context exactly (no off-by-one)", function()
  cli.check_context("x", 100, 60, 40, "prompt")          -- 60 + 40 = 100 fits
  H.raises(function() cli.check_context("x", 100, 60, 41, "prompt") end, "x: --max-new-tokens 41 does not fit", "at most 40")
  H.raises(function() cli.check_context("x", 100, 100, 1, "prompt") end, "the longest prompt has 100 tokens")
  H.raises(function() cli.check_context("x", 100, 10, 100, "prompt") end, "must be below the model's context")
end)

-- (twenty-eighth session) the context the checks use is the one the loader takes
H.case("cli.model_context: no max_position_embeddings: the loader's default for the model_type", function()
  local model = require "confit.model"
  local function folder(config)
    local dir = H.tmpdir()
    write(dir .. "/config.json", config .. "\n")
    return dir
  end
  for _, c in ipairs({{'{"model_type": "llama"}', "llama", 2048},
                      {'{"model_type": "qwen2", "max_position_embeddings": null}', "qwen2", 32768}}) do
    local m = model.new({model_type = c[2], hidden_size = 8, intermediate_size = 8, num_hidden_layers = 1,
                         num_attention_heads = 2, vocab_size = 16})
    H.eq(m.config.max_position_embeddings, c[3], c[2] .. ": the loader's default")
    H.eq(cli.model_context("x", folder(c[1])), m.config.max_position_embeddings, c[2] .. ": cli.model_context agrees")
    m:free()
  end
  H.eq(cli.model_context("x", folder('{"model_type": "llama", "max_position_embeddings": 128}')), 128,
       "a given max_position_embeddings")
  H.eq(cli.model_context("x", folder('{"model_type": "gpt2"}')), nil,
       "a model_type the loader refuses: no context (its load says why)")
end)

H.case("cli: every listed strerror is a failure of the machine (one line, no traceback)", function()
  for _, s in ipairs({"No space left on device", "Read-only file system", "Permission denied",
                      "Operation not permitted", "Input/output error", "Disk quota exceeded",
                      "Too many open files", "File too large"}) do
    H.ok(cli.is_environment_error("x.lua:1: out/summary.json: " .. s), s)
  end
  H.ok(not cli.is_environment_error("x.lua:1: attempt to index a nil value"), "a bug is no environment error")
end)
end

-- (nineteenth session, mutation testing: cases that fail on mutants the suite let through, toy_compare)
do
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local root = os.tmpname(); os.remove(root)
assert(os.execute("mkdir -p " .. q(root)))

local main = dofile("recipes/toy_compare.lua")
local TINY = {"--steps", "1", "--questions-per-step", "1", "--n", "2", "--eval-questions", "2",
              "--eval-n", "2", "--max-new-tokens", "8", "--quiet"}
local function args(extra)
  local a = {}
  for _, x in ipairs(TINY) do a[#a + 1] = x end
  for _, x in ipairs(extra) do a[#a + 1] = x end
  return a
end

H.case("two seeds: each method's row is the mean and sample SD over both seeds (mutant tc1)", function()
  local out = root .. "/two-seeds"
  local r = main(args({"--methods", "l2", "--seeds", "1,2", "--out", out, "--md", out .. ".md"}))
  H.eq(#r.after.l2, 2, "one 'after' summary per seed")
  -- the l2 row's last cell (confidence): mean ± sample SD of the two seeds' mean_confidence
  local function conf(seed)
    local sm = assert(jsonio.read_json(out .. "/method=l2,seed=" .. seed .. "/summary.json"))
    return sm.after.mean_confidence
  end
  local c1, c2 = conf(1), conf(2)
  local mean = (c1 + c2) / 2
  local sd = math.sqrt(((c1 - mean) ^ 2 + (c2 - mean) ^ 2) / (2 - 1))
  local want = ("%.3f ± %.3f |"):format(mean, sd)
  H.ok(r.markdown:match("\n| l2 |[^\n]*") and r.markdown:match("\n| l2 |[^\n]*"):sub(-#want) == want,
       want .. " ends the l2 row in\n" .. r.markdown)
end)

H.case("one seed: cells are the value alone, no spread (mutant tc4)", function()
  local out = root .. "/one-seed"
  local r = main(args({"--methods", "l2", "--seeds", "1", "--out", out, "--md", out .. ".md"}))
  H.ok(not r.markdown:find("±", 1, true), "no ± with one seed:\n" .. r.markdown)
  H.ok(not r.markdown:lower():find("nan", 1, true), "no nan:\n" .. r.markdown)
end)

H.case("temp_only's after evaluation samples colder; a trained method's at the usual temperatures (mutant tc2)", function()
  local out = root .. "/temps"
  main(args({"--methods", "temp_only,l2", "--seeds", "1", "--out", out, "--md", out .. ".md"}))
  local function sample_temps(dir)
    local recs = assert(jsonio.read_jsonl(dir .. "/eval_after.jsonl"))
    local seen = {}
    for _, rec in ipairs(recs) do for _, s in ipairs(rec.samples) do seen[s.temperature] = true end end
    return seen
  end
  local t = sample_temps(out .. "/method=temp_only,seed=1")
  H.ok(t[0.25] and not t[0.5], "temp_only: T = 0.5 x 0.5")
  local l = sample_temps(out .. "/method=l2,seed=1")
  H.ok(l[0.5] and not l[0.25], "l2: T = 0.5")
  -- (twenty-eighth session) and each run's config.json says so: temp_only's scale, none for l2
  H.eq(jsonio.read_json(out .. "/method=temp_only,seed=1/config.json").temperature_scale, 0.5, "temp_only's config.json")
  H.eq(jsonio.read_json(out .. "/method=l2,seed=1/config.json").temperature_scale, nil, "l2's config.json")
end)

H.case("an --out holding another recipe's grid.json (other axes) is refused before any work (mutant tc5)", function()
  local out = root .. "/ablate-grid"
  assert(os.execute("mkdir -p " .. q(out)))
  local gj = {axes = {alpha = {0.1, 0.2}}, runs = {}, recipe = "recipes/rlsc.lua"}
  assert(jsonio.write_json_atomic(out .. "/grid.json", gj))
  local ok, err = pcall(main, args({"--methods", "l2", "--seeds", "1", "--out", out, "--md", root .. "/ag.md"}))
  H.ok(not ok, "refused")
  H.ok(cli.message(err):find("grid.json is not one of toy_compare's", 1, true), cli.message(err))
  local g = jsonio.read_json(out .. "/grid.json")
  H.ok(g and g.axes and g.axes.alpha, "the other grid.json is left as it was")
end)

os.execute("rm -rf " .. q(root))
end

-- (twenty-sixth session, mutation testing of the input layer: cases that fail on mutants the
-- suite let through)
do
local D = H.tmpdir()

H.case("cli.tidy_path: './' parts, repeated and trailing slashes go; './' is '.'; a '.' inside a name stays", function()
  for _, c in ipairs({{"a//./b/", "a/b"}, {"./a", "a"}, {"a/.", "a"}, {"a/./", "a"}, {"runs/v2./out", "runs/v2./out"},
                      {"x./y", "x./y"}, {"..", ".."}, {"../", ".."}, {".", "."}, {"./", "."}, {"././", "."},
                      {".//", "."}, {"", "/"}, {"/", "/"}, {"/.", "/"}, {"//./", "/"}, {"/a/./b//", "/a/b"}}) do
    H.eq(cli.tidy_path(c[1]), c[2], c[1])
  end
  -- ("./" was "/": a save into "./" was refused as one over the root, and rlsc took --model ./
  -- and --model / for one folder)
  local ok, err = require("confit.jsonio").write_dir_atomic("./", function() end)
  H.ok(ok == nil and tostring(err):find("cannot replace the folder '.' as a whole", 1, true), tostring(err))
end)

H.case("--help wraps a flag's help at 96 columns, a word that fits the 96th column staying on its line", function()
  local words = {}
  for i = 1, 8 do words[i] = "w" .. i .. ("x"):rep(10) end   -- 12 characters each
  local script = D .. "/help.lua"
  write(script, ('local cli = require "confit.cli"\ncli.parse_args({"--help"}, {a = {"int", 1, help = %q}}, "x.lua")\n')
                :format(table.concat(words, " ")))
  local text = shell(("%s %s 2>&1; echo rc=$?"):format(q(EXE), q(script)))
  local lines = {}
  for line in text:gmatch("[^\n]+") do if line:find("^%s+w%d") then lines[#lines + 1] = line end end
  -- five spaces, then " word" per word: seven words make 5 + 7 * 13 = 96 columns
  H.eq(lines[1], "     " .. " " .. table.concat(words, " ", 1, 7), "the first line")
  H.eq(#(lines[1] or ""), 96, "96 columns")
  H.eq(lines[2], "      " .. words[8], "the word past column 96 on the next line")
  H.eq(#lines, 2, "two lines: " .. text)
  H.ok(text:find("rc=0\n", 1, true), text)
end)

H.case("cli.is_main_script(): true in the script being run, false in a file it loads", function()
  local probe, outer = D .. "/probe.lua", D .. "/outer.lua"
  write(probe, 'print("main", require("confit.cli").is_main_script())\n')
  write(outer, ("dofile(%q)\n"):format(probe))
  H.eq(shell(("%s %s 2>&1"):format(q(EXE), q(probe))), "main\ttrue\n", "run as the script")
  H.eq(shell(("%s %s 2>&1"):format(q(EXE), q(outer))), "main\tfalse\n", "loaded by another script")
end)

H.case("cli.run counts its runs back: cli.exit after it ends the program, even with the REPL to follow", function()
  local saved_arg, saved_exit = arg, os.exit
  arg = {[-2] = "confit", [-1] = "-i", [0] = "s.lua"}
  local r = cli.run("x", function() return "done" end, {})
  local exited
  os.exit = function(code) exited = code; error("stub exit", 0) end
  local _, err = pcall(cli.exit, 5)
  os.exit, arg = saved_exit, saved_arg
  H.eq(r, "done", "main's result")
  H.eq(exited, 5, "os.exit(5), not a raise to a run that is over: " .. tostring(err))
end)

H.case("cli.main with no arg table (Lua embedded elsewhere) returns main", function()
  local saved = arg
  arg = nil
  local f = function() end
  local ok, r = pcall(cli.main, "x", f)
  arg = saved
  H.ok(ok and r == f, "main returned: " .. tostring(r))
end)

H.case("cli.mkdir_p keeps mkdir's reason when the folder's name holds brackets; list_dir without a shell is nil", function()
  write(D .. "/afile", "x")
  local e = H.raises(function() cli.mkdir_p("x", D .. "/afile/a(b)/c", "--out") end,
                     "x: cannot create --out '" .. D .. "/afile/a(b)/c'")
  H.ok(e:find("(Not a directory)", 1, true), e)
  local real = io.popen
  io.popen = function() return nil, "no processes left" end
  local ok, names = pcall(cli.list_dir, D)
  io.popen = real
  H.ok(ok and names == nil, "nil: " .. tostring(names))
end)

os.execute("rm -rf " .. q(D))
end

H.finish()
