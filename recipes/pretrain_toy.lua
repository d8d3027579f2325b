-- recipes/pretrain_toy.lua: supervised next-token pretraining of the toy model from random init.
--
--   confit recipes/pretrain_toy.lua [--out DIR] [--steps 1500] [--batch 64]
--       [--lr 3e-3] [--warmup 20] [--seed 1] [--task mixed] [--eval-every 100]
--       [--eval-questions 100] [--layers 3] [--hidden 128] [--heads 2] [--ffn 336] [--std 0.08]
--
-- The model is a tiny Qwen2 (3 layers, d=128, 2 heads of 64, FFN 336, byte vocabulary of 257
-- unpadded so every sampled id decodes, tied embeddings, 128 positions: 618,624 parameters)
-- saved as a Hugging Face
-- folder with the toy's byte-level tokenizer.json.
--
-- Loss (--loss-on): "completion" (default) is the mean cross-entropy over completion tokens (the
-- EOS included, the prompt masked); "all" also predicts the prompt's tokens after the first (it
-- trained a worse model: greedy 7% vs 22% at 800 steps with --std 0.02, seed 1). Both are
-- -sum(m:logprobs(ids, prefix_lens, {temperature = 1})) / (predicted tokens in the batch).
-- Init (--std): weights N(0, std^2), norms 1, biases 0. The HF-style 0.02 learnt the copy steps
-- of the chains too slowly for this tiny model (800 steps: greedy 22%, chains right ~7% of the
-- time); 0.05 reached greedy 51% at 800 steps; 0.08 with 1500 steps is the shipped checkpoint.
-- Optimiser: AdamW (betas 0.9/0.999, weight decay 0.01), linear warmup then a cosine decay to
-- zero; gradient norm clipped at 1. Data: a fresh batch of the world's "train" split each
-- step, drawn with seed (seed * 1000003 + step): same seed, same model, bit for bit.
--
-- The run is meant to stop where the model is competent but unsure (sampled pass@1 clearly
-- below maj@16): on the mixed world, the model learns the step-by-step form reliably and the
-- direct form unreliably, and samples either. Every --eval-every steps a small held-out
-- evaluation is printed so the point can be chosen; the final model is evaluated on
-- --eval-questions held-out questions and its metrics are written beside it (metrics.json).
--
-- --out (default runs/pretrain_toy-<UTC time>; `--out examples/toy/model` remakes the shipped
-- checkpoint: until the twenty-third session that was the default, and a short trial run replaced
-- it) is checked before the training, and again after it (it may have changed meanwhile): it may
-- be missing, an empty folder, or a model folder this recipe could have written (config.json of a
-- qwen2 with the toy's 257 ids, model.safetensors, and nothing but the files listed in
-- MODEL_FILES); anything else is refused. Its missing parent folders are made only once every
-- flag has passed (the model's shape included, and --std: step 1's loss, taken first, must be
-- finite), so a refused run leaves nothing. The model folder
-- is written as m:save writes one (jsonio.write_dir_atomic): into a new sibling folder
-- <out>.tmp-PID-TIME-SERIAL, synced, then
-- swapped with the old folder in one step (renameat2 RENAME_EXCHANGE; where the file system
-- cannot, by two renames through <out>.old-PID-TIME-SERIAL), the old one then removed; no other
-- file is touched. Training is costly, so when --out is refused after it, or the renames fail,
-- the model is kept in <out>.kept-PID-TIME-SERIAL and the error names that folder.
local confit = require "confit"
local model = require "confit.model"
local toy = require "confit.toy"
local train = require "confit.train"
local toy_eval = require "confit.toy_eval"
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

-- Mistakes in the command line: one line "pretrain_toy: ..." and exit status 1 (confit.cli).
local die = cli.die_for("pretrain_toy")

local SPEC = {
  out = {"string", nil, shown = "runs/pretrain_toy-<UTC time>",
    help = "the model folder to write (examples/toy/model remakes the shipped checkpoint)"},
  steps = {"int", 1500, min = 1,
    help = "optimizer steps"},
  batch = {"int", 64, min = 1, max = 100000,
    help = "sequences per step"},   -- rlsc's bound on the toy's questions (drawn distinct)
  lr = {"number", 3e-3, min = 0,
    help = "AdamW peak learning rate"},
  warmup = {"int", 20, min = 0,
    help = "steps of linear warmup before the cosine decay"},
  weight_decay = {"number", 0.01, min = 0,
    help = "AdamW weight decay"},
  grad_clip = {"number", 1.0, above = 0,
    help = "clip the gradient's global norm to this"},
  seed = {"int", 1,
    help = "seed of the initial weights and the training data"},
  task = {"string", "mixed", choices = cli.sorted_keys(toy.presets),
    help = "the toy world's task"},
  eval_every = {"int", 100, min = 0,
    help = "print a small held-out evaluation every this many steps (0: none)"},
  eval_questions = {"int", 100, min = 1, max = 10000,
    help = "held-out questions of the final evaluation (metrics.json)"},   -- rlsc's, eval's and toy_compare's bound
  layers = {"int", 3, min = 1,
    help = "transformer layers"},
  hidden = {"int", 128, min = 2,
    help = "hidden size"},
  heads = {"int", 2, min = 1,
    help = "attention heads"},
  ffn = {"int", 336, min = 1,
    help = "feed-forward size"},
  loss_on = {"string", "completion", choices = {"all", "completion"},
    help = "which tokens the loss predicts: the completion's, or all after the first"},
  std = {"number", 0.08, min = 0,
    help = "standard deviation of the initial weights"},
  quiet = {"flag", false,
    help = "print no progress lines (where the model was saved still prints)"},
}

-- The files this recipe writes into a model folder (model:save, the tokenizer, metrics.json).
local MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", "metrics.json"}

local q, list_dir = cli.shell_quote, cli.list_dir

-- Remove dir, a folder this run made, and the files in it (best effort: on an error's way out).
local function remove_own_dir(dir)
  for _, name in ipairs(list_dir(dir) or {}) do os.remove(dir .. "/" .. name) end
  os.remove(dir)
end

-- nil when out may be written: missing, an empty folder or a toy model folder; else why not.
local function out_refused(out)
  if not cli.exists(out) then return nil end
  if not cli.is_dir(out) then return "is not a folder" end
  local names = list_dir(out)
  if not names then return "cannot be listed" end
  if #names == 0 then return nil end
  local known = {}
  for _, name in ipairs(MODEL_FILES) do known[name] = true end
  for _, name in ipairs(names) do
    if not known[name] then return ("holds %s, which pretrain_toy does not write"):format(name) end
  end
  local cfg = jsonio.read_json(out .. "/config.json")
  if type(cfg) ~= "table" or cfg.model_type ~= "qwen2" or cfg.vocab_size ~= toy.VOCAB_SIZE
     or not cli.exists(out .. "/model.safetensors") then
    return "is not a toy model folder (config.json of a qwen2 with 257 ids, model.safetensors)"
  end
  return nil
end

local function config_of(o)
  return {
    architectures = {"Qwen2ForCausalLM"},
    model_type = "qwen2",
    hidden_size = o.hidden,
    intermediate_size = o.ffn,
    num_hidden_layers = o.layers,
    num_attention_heads = o.heads,
    num_key_value_heads = o.heads,
    vocab_size = toy.VOCAB_SIZE,    -- 256 bytes + EOS; unpadded, so every id decodes
    max_position_embeddings = 128,
    rms_norm_eps = 1e-6,
    rope_theta = 10000.0,
    tie_word_embeddings = true,
    bos_token_id = toy.EOS_ID,
    eos_token_id = toy.EOS_ID,
    torch_dtype = "float32",
  }
end

-- learning rate at 1-based step s: linear warmup, then cosine to 0 at the last step
local function lr_at(o, s)
  if s <= o.warmup then return o.lr * s / o.warmup end
  local t = (s - o.warmup) / math.max(1, o.steps - o.warmup)
  return o.lr * 0.5 * (1 + math.cos(math.pi * t))
end

local NOTES = "--out is replaced only when it is empty or a toy model folder (one this recipe "
  .. "could have written); anything else is refused."

-- The toy's byte-level tokenizer, read from a temporary folder that is removed at once.
local function toy_tokenizer()
  local dir = os.tmpname()   -- a new file's name: made a folder
  os.remove(dir)
  if not os.execute("mkdir " .. q(dir) .. " 2>/dev/null") then
    error("pretrain_toy: cannot create the temporary folder " .. dir, 0)
  end
  local ok, err = toy.write_tokenizer(dir)
  local tok, terr
  if ok then tok, terr = require("confit.tokenizer").new(dir .. "/tokenizer.json") end
  remove_own_dir(dir)
  if not tok then error("pretrain_toy: " .. tostring(err or terr), 0) end
  return tok
end

local function main(argv)
  local o = cli.parse_args(argv or {}, SPEC, "recipes/pretrain_toy.lua", NOTES)
  local say = o.quiet and function() end or print
  if o.hidden % o.heads ~= 0 or (o.hidden // o.heads) % 2 ~= 0 then
    die("--hidden %d must be --heads %d times an even head size", o.hidden, o.heads)
  end
  if not o.out then
    -- a new folder: a second run in the same second takes -2, -3, ... (it replaced the first's model)
    local base = "runs/pretrain_toy-" .. os.date("!%Y%m%d-%H%M%S")
    local k = 1
    o.out = base
    while cli.exists(o.out) do k = k + 1; o.out = base .. "-" .. k end
  end
  local out = o.out:gsub("/+$", "")
  if out == "" then die("--out must name a folder") end
  local bad = out_refused(out)
  if bad then
    die("--out '%s' %s: only an empty folder or a toy model folder is replaced (give another --out)", o.out, bad)
  end
  local world = toy.world(o.task)
  -- a shape the machine cannot hold (--hidden 100000) is a mistake of the command line, said in
  -- one line; the model's own message names the size and the memory. Checked before --out's
  -- parent is made (a refusal left the folders above --out behind until the twenty-eighth session)
  local mok, m = pcall(model.new, config_of(o), {seed = o.seed, std = o.std, tokenizer = toy_tokenizer()})
  if not mok then
    local msg = type(m) == "string" and m:gsub("^[^\n]-:%d+: ", "")
    if not (msg and msg:find("^model config: ")) then error(m, 0) end   -- anything else is a bug
    die("%s (the shape of --hidden, --layers, --heads, --ffn)", msg)
  end
  local params = train.trainable(m)
  local nparams = 0
  for _, p in pairs(params) do nparams = nparams + p:numel() end
  -- The loss of step s's batch, its gradient accumulated into the parameters.
  local function step_loss(step)
    local batch = world:sample("train", o.batch, o.seed * 1000003 + step)
    local seqs, plens, ntok = {}, {}, 0
    for i, ex in ipairs(batch) do
      local ids = toy.encode(ex.prompt)
      plens[i] = #ids
      local c = toy.encode(ex.completion, true)
      ntok = ntok + #c
      for _, t in ipairs(c) do ids[#ids + 1] = t end
      seqs[i] = ids
    end
    local ids, lens = model.pad(seqs, toy.EOS_ID)
    if o.loss_on == "all" then
      -- every token after the first is predicted: prompt length 1 for the log-prob mask
      ntok = 0
      for i = 1, #seqs do ntok = ntok + #seqs[i] - 1; plens[i] = 1 end
    end
    local lp = m:logprobs(ids, plens, {temperature = 1.0, lens = lens})
    local loss = -lp:sum() / ntok
    loss:backward()
    local lv = loss:item()
    if lv ~= lv or lv == math.huge then
      -- at step 1 the update has not run yet: the initial weights (--std) made it
      die("the loss is %s at step %d (%s)", cli.show(lv), step, step == 1 and "try a smaller --std" or "try a lower --lr")
    end
    return lv
  end
  -- Step 1's loss before anything is printed or written: an --std whose weights overflow (1e300
  -- is inf in f32) or whose first forward does (1e19) is refused before --out's parent is made
  -- (it was found at step 1 of the training, the folders made; twenty-eighth session). The
  -- gradient it leaves is step 1's.
  local t_start = confit.clock()
  local loss1 = step_loss(1)
  -- fail now, not after the training: the parent must exist and take the temporary sibling
  local parent = out:match("^(.*)/") or "."
  if parent == "" then parent = "/" end
  if not (cli.make_dir(parent) and os.execute(("test -w %s && test -x %s"):format(q(parent), q(parent)))) then
    m:free()
    die("cannot create --out '%s' (a file is in the way, or no permission)", o.out)
  end
  say(("pretrain_toy: %d parameters, world %s, %d steps of %d, lr %g, seed %d")
      :format(nparams, o.task, o.steps, o.batch, o.lr, o.seed))
  local opt = confit.optim.adamw(params, {lr = o.lr, weight_decay = o.weight_decay,
                                          betas = {0.9, 0.999}, eps = 1e-8})
  local heldout = world:questions("heldout", o.eval_questions, o.seed)
  local history = {}
  for step = 1, o.steps do
    opt.lr = lr_at(o, step)
    local lv = loss1
    if step > 1 then
      opt:zero_grad()
      lv = step_loss(step)
    end
    confit.optim.clip_grad_norm(params, o.grad_clip)
    opt:step()
    if step % 20 == 0 or step == 1 then
      say(("step %4d  loss %.4f  lr %.2e  %.1fs"):format(step, lv, opt.lr, confit.clock() - t_start))
    end
    history[#history + 1] = {step = step, loss = lv, lr = opt.lr}
    if o.eval_every > 0 and step % o.eval_every == 0 and step < o.steps then
      local s = toy_eval.run(m, heldout, {seed = o.seed, n = 16, pass1_t10 = false,
                                          benchmark = "toy-" .. o.task})
      say(("  eval@%d  greedy %.3f  pass1_t05 %.3f  maj16 %.3f  direct %.3f  len %.1f")
          :format(step, s.greedy_acc, s.pass1_t05, s.maj16, s.direct_share, s.mean_length))
    end
  end
  local train_s = confit.clock() - t_start
  local summary = toy_eval.run(m, heldout, {seed = o.seed, n = 16, benchmark = "toy-" .. o.task})
  say(toy_eval.format_table({final = summary}))
  -- The model folder, written as m:save writes one; a failed write removes it. Once it is
  -- written, out is checked again (it may have changed during the training): out_refused decides
  -- then, so write_dir_atomic's own check, made before the save, lets every entry pass. A
  -- refusal or a failed rename keeps the model beside out (keep_on_failure).
  local function fill(tmp)
    m:save_into(tmp, {tokenizer = false})   -- its tokenizer's folder is gone: written here
    assert(toy.write_tokenizer(tmp))
    assert(jsonio.write_json_atomic(tmp .. "/metrics.json", {
      recipe = "pretrain_toy", options = o, parameters = nparams, train_seconds = train_s,
      eval = summary, eval_questions = #heldout, final_loss = history[#history].loss,
    }))
  end
  local function recheck()
    local why = out_refused(out)
    if why then return nil, ("--out '%s' changed during the training and now %s"):format(o.out, why) end
    return true
  end
  local ok, err = jsonio.write_dir_atomic(out, fill, {replaceable = function() return true end,
                                                       recheck = recheck, keep_on_failure = true})
  if not ok then die("%s", err) end
  -- where the model went: printed under --quiet too (the default --out is a new folder each run)
  print(("pretrain_toy: saved %s (%.1fs of training)"):format(out, train_s))
  return summary
end

-- Run as a script (arg[0] is this file: mistakes print one line and exit 1, confit.cli) or
-- loaded by a test (dofile returns main).
return cli.main("pretrain_toy", main)
