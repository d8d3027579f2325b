-- confit.train: the label-free RL loop (recipes/rlsc.lua runs it for the toy and for real
-- models), its checkpoints, and small helpers the recipes share (flag parsing and script
-- detection, now in confit.cli).
--
--   local steps = train.run({model = m, questions = qs, method = "l2", steps = 20, ...})
--
-- Per step s (1-based): take questions ((s-1)*Q + 1 .. s*Q) cyclically (labels, when present,
-- are used for logging only), build prompts (opts.prompt_of(q) -> string or token ids), sample
-- n completions each at the sampling temperature with seed opts.seed * 1000003 + s, compute the
-- method's loss (confit.rl) at the loss temperature and its gradient (rl.backward: in micro-batches
-- of opts.micro_batch sequences when > 0, same gradient), check the loss and every gradient
-- for NaN/Inf, optionally clip the gradient norm, AdamW step, and append one line to
-- OUT/steps.jsonl (docs/RUNDIR.md). A method that leaves out some of the standard metrics (a
-- method of one's own returning loss, {}) gets them from rl.fill_metrics (a forward without a
-- graph over the batch), so every record and step line has them.
--
-- opts.updates_per_batch = mu > 1 (GRPO's mu): each sampled batch gets mu optimizer steps. The
-- batch is sampled once; rl.snapshot_policy records the sampling policy (every sample's
-- old_logprobs, and a GRPO method's rewards, so its clipped ratio rho = p / p_old moves away from 1
-- and the clip binds from the second update on); then mu times: the loss is computed anew on
-- the same batch under the current model (an RLSC method's p_old is the current model's at every
-- update, RLSC.md), backward, checks, AdamW step, and one record and one log line. A record's
-- `step` is then the optimizer step (s - 1) * mu + u, and it has `batch` = s and `update` = u
-- (neither key with mu = 1); the first update's record holds the sampling (gen_s, tokens_per_s,
-- its step_s includes it), the later ones gen_s = tokens_per_s = 0. opts.steps, the questions and
-- seeds per step, opts.checkpoint_every and the checkpoints' numbers count sampled batches.
--
-- OUT (opts.out) is created when missing. A fresh run (not opts.resume) refuses an OUT holding
-- checkpoints (check_out) or a steps.jsonl with records, so an earlier run's log is never
-- overwritten; every option is checked first (M.run's comment lists the ranges).
--
-- Every opts.checkpoint_every steps, a Hugging Face folder
-- OUT/checkpoint-<s> (model.safetensors, config, tokenizer files, optimizer.safetensors with the
-- AdamW moments, trainer_state.json) is written to a temporary folder beside it
-- (OUT/checkpoint-<s>.tmp-PID-TIME-SERIAL, jsonio.write_dir_atomic, as m:save), every file and
-- the folder synced to the disk, and renamed into place, so a checkpoint folder is complete or
-- absent, a crash included; a write that fails (a full disk) removes its temporary folder and
-- raises. opts.keep_checkpoints = K > 0 keeps the newest K of them: the older ones are removed
-- after each new one is in place (M.prune_checkpoints; 0 keeps all). opts.resume continues from the latest checkpoint:
-- weights and optimizer state are loaded, steps.jsonl is cut back to that step, and the run goes on
-- with the same per-step seeds, so a resumed run equals an uninterrupted one. A resume whose
-- method, seed, sampling / loss settings or optimizer settings differ from the checkpoint's
-- (trainer_state.json), or whose model's architecture differs from the checkpoint's (its
-- config.json), is refused with one line naming the first difference, before anything is loaded.
--
-- The first step (once per run) whose weighted loss trains nothing, every sample's weight p_old
-- underflowed (weight_share 0) with no alpha to stand in (the weights are 0 as f32), is logged
-- with a one-line warning (M.underflow_warning): only weight decay moved the weights.
--
-- A non-finite loss or gradient stops the run (an error naming the step and the tensor) before the
-- optimizer step; an update that made a weight NaN or inf (a finite gradient and a huge lr) stops
-- it before a checkpoint is written and after the last step (M.bad_weight), so no checkpoint or
-- weight is ever written from a corrupt update. Logits that overflow in sampling stop it too.
local confit = require "confit"
local model = require "confit.model"
local rl = require "confit.rl"
local jsonio = require "confit.jsonio"
local cli = require "confit.cli"

local M = {}

-- Flags ----------------------------------------------------------------------------------------

-- The command line lives in confit.cli (one convention for every recipe); these names stay
-- for the scripts that use them.

--- Parse `arg`-style flags (confit.cli.parse_args): spec = {name = {type, default, min =, max =,
--- above =, choices =}}; mistakes raise one-line user errors, --help prints the flags and exits.
M.parse_args = cli.parse_args

--- True when the calling file is the script being run (arg[0]), false when it was loaded by
--- dofile/loadfile from another script (e.g. a test that calls the recipe as a function).
function M.is_main_script()
  local yes = cli.is_main_script(2)   -- not a tail call: level 2 is our caller
  return yes
end

--- Mark every parameter of m as requiring gradients; returns m:parameters(). A loaded model's
--- parameters do not require them: training by hand (m:logprobs, loss:backward(), an optimizer
--- over m:parameters()) calls this first, or backward finds nothing to differentiate.
function M.trainable(m)
  if type(m) ~= "table" or type(m.parameters) ~= "function" then
    error("train.trainable: m must be a model (confit.load(dir) or confit.model.new(config)), got " .. rl.show(m), 2)
  end
  local ps = m:parameters()
  for _, p in pairs(ps) do p:requires_grad_(true) end
  return ps
end

local sorted_keys = cli.sorted_keys

local function isfinite(x) return x == x and x ~= math.huge and x ~= -math.huge end

--- The name of the first parameter (sorted order) whose gradient is not finite, and its norm.
function M.bad_gradient(params)
  for _, name in ipairs(sorted_keys(params)) do
    local p = params[name]
    if p.grad then
      local norm = confit.optim.clip_grad_norm({p}, math.huge)
      if not isfinite(norm) then return name, norm end
    end
  end
  return nil
end

--- The name of the first parameter (sorted order) holding NaN or inf, or nil.
function M.bad_weight(params)
  for _, name in ipairs(sorted_keys(params)) do
    local v = params[name]:abs():max():item()
    if not isfinite(v) then return name end
  end
  return nil
end

-- Checkpoints ----------------------------------------------------------------------------------

-- Whether x (a table or a userdata: a model, an optimizer) has a method `name`; any other value,
-- or one whose lookup raises, has none.
local function has_method(x, name)
  if type(x) ~= "table" and type(x) ~= "userdata" then return false end
  local ok, f = pcall(function() return x[name] end)
  return ok and type(f) == "function"
end

-- The complete checkpoint folders of a run directory, latest first: a list of {dir, step}.
local function checkpoints(out)
  local list = {}
  for _, name in ipairs(cli.list_dir(out) or {}) do
    local s = name:match("^checkpoint%-(%d+)$")
    s = s and math.tointeger(tonumber(s))
    -- (a FIFO there is taken as present: safetensors_problem and read_json refuse it by name)
    local there = s and confit.path_kind(out .. "/" .. name .. "/trainer_state.json")
    if there then list[#list + 1] = {dir = out .. "/" .. name, step = s} end
  end
  table.sort(list, function(a, b) return a.step > b.step end)
  return list
end

--- The latest complete checkpoint folder of a run directory and its step, or nil.
function M.latest_checkpoint(out)
  local c = checkpoints(out)[1]
  if c then return c.dir, c.step end
  return nil
end

-- nil and the header (name -> entry), or what is wrong with the safetensors file at path: it
-- must be there, its header must parse and every tensor must end inside the file (a truncated
-- copy fails here). The values are read by optimizer_tensors_problem.
local function safetensors_problem(path)
  -- a FIFO (or a link to one, a Hugging Face cache holds links) would block the open for ever
  if cli.not_regular(path) then return path .. ": not a regular file" end
  local f, err = io.open(path, "rb")
  if not f then return tostring(err) end
  local size = f:seek("end")
  f:seek("set")
  local head = f:read(8)
  local n = head and #head == 8 and string.unpack("<i8", head)
  -- the C reader's limit: a damaged length must not be read (a 7B optimizer file is tens of GB)
  if n and n > 100000000 then
    f:close()
    return ("%s: header length %d exceeds the 100 MB limit (damaged?)"):format(path, n)
  end
  local header = n and n >= 2 and n <= size - 8 and f:read(n)
  f:close()
  local h = header and jsonio.decode(header)
  if type(h) ~= "table" then return path .. ": not a safetensors file (no readable header)" end
  for name, e in pairs(h) do
    if name ~= "__metadata__" then
      local off = type(e) == "table" and e.data_offsets
      if type(off) ~= "table" or type(off[2]) ~= "number" or off[2] > size - 8 - n then
        return ("%s: tensor %s ends past the end of the file (truncated?)"):format(path, name)
      end
    end
  end
  return nil, h
end

-- The records of a run's steps.jsonl up to step `upto` and their lines as written (a resume
-- keeps them; a missing file has none; a torn last line is dropped), or nil and a message naming
-- the file and line.
local function steps_before(path, upto)
  if not cli.exists(path) then return {}, {} end
  local old, lines_or_err = jsonio.read_jsonl(path, {partial_tail = true, lines = true})
  if not old then return nil, lines_or_err end
  local kept, kept_lines = {}, {}
  for i, r in ipairs(old) do
    if type(r) ~= "table" or type(r.step) ~= "number" then
      return nil, ("%s: record %d has no numeric \"step\""):format(path, i)
    end
    -- with several updates per batch, a record's batch is the step a checkpoint counts
    local b = type(r.batch) == "number" and r.batch or r.step
    if b <= upto then kept[#kept + 1] = r; kept_lines[#kept_lines + 1] = lines_or_err[i] end
  end
  return kept, kept_lines
end

--- Write OUT/checkpoint-<step> atomically: into a temporary folder beside it, every file synced
--- by its writer, then the folder synced and renamed into place (jsonio.write_dir_atomic, the
--- helper m:save uses). A failure removes the temporary folder and raises; an existing
--- checkpoint of that step is replaced as a whole (model.is_saved_file decides what it may hold).
--- Arguments are checked first (one line naming the wrong one, nothing written): out a path,
--- step an integer >= 0, m a model, opt an optimizer, extra nil or a table without the keys
--- save_checkpoint writes itself (step, optimizer) and that JSON can hold (no functions,
--- tensors, NaN or cycles); out a folder, or a path where one can be made.
function M.save_checkpoint(out, step, m, opt, extra)
  if type(out) ~= "string" or out == "" then
    error("train.save_checkpoint: out must be the run directory's path, got " .. rl.show(out), 2)
  end
  if type(step) ~= "number" or not math.tointeger(step) or step < 0 then
    error("train.save_checkpoint: step must be an integer >= 0, got " .. rl.show(step), 2)
  end
  if not has_method(m, "save") then
    error("train.save_checkpoint: m must be a model (it has no m:save), got " .. rl.show(m), 2)
  end
  if not has_method(opt, "state") then
    error("train.save_checkpoint: opt must be an optimizer (confit.optim.adamw(...)), got " .. rl.show(opt), 2)
  end
  if extra ~= nil and type(extra) ~= "table" then
    error("train.save_checkpoint: extra must be a table of fields for trainer_state.json, got " .. rl.show(extra), 2)
  end
  for _, k in ipairs({"step", "optimizer"}) do
    if extra and extra[k] ~= nil then
      error(("train.save_checkpoint: extra may not set \"%s\" (save_checkpoint writes it)"):format(k), 2)
    end
  end
  -- what trainer_state.json cannot hold is refused before minutes of writing the weights
  if extra ~= nil then
    local ok, err = pcall(jsonio.encode, extra, {level = 0})
    if not ok then
      if cli.is_interrupt(err) or type(err) ~= "string" then error(err, 0) end
      error("train.save_checkpoint: " .. err:gsub("^jsonio: value", "extra"):gsub("^jsonio: ", "")
            .. " (extra is written to trainer_state.json)", 2)
    end
  end
  if cli.exists(out) and not cli.is_dir(out) then
    error(("train.save_checkpoint: out '%s' is a file, not a folder"):format(out), 2)
  end
  step = math.tointeger(step)
  local final = ("%s/checkpoint-%d"):format(out, step)
  local ok, err = jsonio.write_dir_atomic(final, function(tmp)
    if m.save_into then m:save_into(tmp) else m:save(tmp) end
    local tensors, scalars = {}, {}
    for k, v in pairs(opt:state()) do
      if confit.is_tensor(v) then tensors[k] = v else scalars[k] = v end
    end
    local opath = tmp .. "/optimizer.safetensors"
    assert(confit.save_safetensors(opath, tensors))
    -- what a resume would refuse is never written: the check it makes (every value finite), on
    -- the file just written, read in place. A moment can overflow while the weights stay finite
    -- (a gradient of 1e21 is finite in f32, its square is not); write_dir_atomic removes tmp.
    local bad, berr = confit.safetensors_nonfinite(opath)
    if bad == nil then error(berr, 0) end
    if bad then
      local i = math.tointeger(tonumber(bad:match("%.(%d+)$")))
      local names = sorted_keys(m:parameters())
      cli.raise(("train: step %d: the optimizer's %s%s holds NaN or inf (a gradient too large for the state's "
                 .. "dtype: a huge --alpha? --grad-clip bounds it); stopped, and %s is not written (a resume "
                 .. "would refuse it)"):format(step, bad, i and names[i] and (" (of " .. names[i] .. ")") or "",
                                               final:match("[^/]+$")))
    end
    local st = {step = step, optimizer = scalars}
    for k, v in pairs(extra or {}) do st[k] = v end
    assert(jsonio.write_json_atomic(tmp .. "/trainer_state.json", st))
  end, {replaceable = model.is_saved_file})
  if not ok then error("train: cannot write checkpoint " .. final .. ": " .. tostring(err)) end
  return final
end

--- Remove all but the newest `keep` complete checkpoint folders of run directory out (a
--- checkpoint-<s> without trainer_state.json is not one, and stays). train.run calls it with
--- opts.keep_checkpoints after each checkpoint is written whole, so the newest, which a resume
--- continues, is never among them. Each goes through cli.remove_tree: renamed to a temporary
--- name first, so a removal cut short leaves a folder jsonio.remove_stale_temps clears, never a
--- damaged checkpoint-<s>. keep = 0 keeps all, as opts.keep_checkpoints = 0 does (it removed
--- every checkpoint when called so, before the twenty-ninth session); keep must be a whole
--- number >= 0.
function M.prune_checkpoints(out, keep)
  if math.type(keep) ~= "integer" or keep < 0 then
    error("train.prune_checkpoints: keep must be a whole number >= 0 (0 keeps all), got " .. cli.show(keep), 2)
  end
  if keep == 0 then return end
  local list = checkpoints(out)
  for i = keep + 1, #list do cli.remove_tree(list[i].dir) end
end

-- The checkpoint's weights, checked against m's parameters: every parameter must be there at its
-- shape, checked before any is written (copy_weights): a tensor missing (renamed, dropped) left
-- that parameter at the model's own value without a word until the seventeenth session.
local function read_weights(dir, m)
  local w, err = confit.load_safetensors(dir .. "/model.safetensors")
  if not w then cli.raise("train: " .. err) end
  local params = m:parameters()
  local function dims(t) return table.concat(t:shape(), " x ") end
  for _, name in ipairs(m:param_names()) do
    local t, p = w[name], params[name]
    if p and not t then
      cli.raise(("train: checkpoint %s/model.safetensors has no tensor %s: damaged, or not this model's"):format(dir, name))
    end
    if p and dims(t) ~= dims(p) then
      cli.raise(("train: checkpoint %s/model.safetensors: tensor %s is %s, the model's parameter %s")
                :format(dir, name, dims(t), dims(p)))
    end
  end
  return w
end

-- The weights read_weights checked copied into m's parameters in place (their device, dtype and
-- the GPU's fused layouts: the q/k/v and gate/up weights are views of one buffer there); the
-- checkpoint holds f32 on the CPU.
local function copy_weights(w, m)
  local params = m:parameters()
  confit.no_grad(function()
    for _, name in ipairs(m:param_names()) do
      local t, p = w[name], params[name]
      if t and p then
        if t:device() ~= p:device() then t = assert(t:to(p:device())) end
        p:copy_(t)
      end
    end
  end)
end

-- nil, or why opt is not an optimizer over m's parameters in train.trainable(m)'s order (the
-- order confit.optim.adamw takes a name -> tensor table in): the same tensors (== compares the
-- tensors under the boxes), so that the loaded moments meet the weights they were taken for.
local function optimizer_mismatch(m, opt)
  local params, mine = m:parameters(), opt:params()
  local names = sorted_keys(params)
  if #mine ~= #names then
    return ("opt has %d parameters, m has %d: make it on m's, confit.optim.adamw(train.trainable(m), ...)")
           :format(#mine, #names)
  end
  for i, name in ipairs(names) do
    if mine[i] ~= params[name] then
      return ("opt's parameter %d is not m's %s: make opt on m's parameters, confit.optim.adamw(train.trainable(m), ...)")
             :format(i, name)
    end
  end
  return nil
end

--- Load a checkpoint: its weights into m (in place of its parameters), and with opt also its
--- optimizer state into opt, which must be an optimizer over m's parameters
--- (confit.optim.adamw(train.trainable(m), ...); another model's is refused before anything is
--- loaded). Returns the trainer state. Every file is read and checked, and the optimizer state
--- loaded (opt:load_state checks kind, counts and shapes before it changes opt), before any weight
--- is written: a refusal leaves m and opt as they were. opt:load_state replaces opt's
--- hyperparameters and state_dtype with the checkpoint's (the run continues as it was saved).
function M.load_checkpoint(dir, m, opt)
  if type(dir) ~= "string" or dir == "" then
    error("train.load_checkpoint: dir must be a checkpoint folder's path, got " .. rl.show(dir), 2)
  end
  if not has_method(m, "parameters") or not has_method(m, "param_names") then
    error("train.load_checkpoint: m must be a model (confit.load(dir) or confit.model.new(config)), got " .. rl.show(m), 2)
  end
  if opt ~= nil and not (has_method(opt, "load_state") and has_method(opt, "params")) then
    error("train.load_checkpoint: opt must be nil or an optimizer over m's parameters (confit.optim.adamw("
          .. "train.trainable(m), ...)), got " .. rl.show(opt), 2)
  end
  local bad = opt ~= nil and optimizer_mismatch(m, opt)
  if bad then error("train.load_checkpoint: " .. bad, 2) end
  local st, serr = jsonio.read_json(dir .. "/trainer_state.json")
  if not st then cli.raise("train: " .. tostring(serr)) end
  local tensors
  if opt then
    local terr
    tensors, terr = confit.load_safetensors(dir .. "/optimizer.safetensors")
    if not tensors then cli.raise("train: " .. terr) end
  end
  local w = read_weights(dir, m)
  -- the optimizer state before any weight: opt:load_state checks all of it (kind, parameter
  -- count, shapes, finite values) before it changes opt, so a refusal leaves m and opt as they were
  if opt then
    local state = {}
    for k, v in pairs(type(st.optimizer) == "table" and st.optimizer or {}) do state[k] = v end
    for k, v in pairs(tensors) do state[k] = v end
    local ok, err = pcall(opt.load_state, opt, state)
    if not ok then cli.raise(("resume: checkpoint %s: %s"):format(dir, tostring(err))) end
  end
  copy_weights(w, m)
  return st
end

-- The loop -------------------------------------------------------------------------------------

-- What a resumed run must share with the checkpoint it continues (trainer_state.json): the
-- settings that decide its samples and its loss; the optimizer's own (lr, betas, eps, weight
-- decay, state dtype) are compared with the optimizer state it restores.
local RESUME_KEYS = {"alpha", "n", "temperature", "loss_temperature", "top_p", "top_k", "max_new_tokens",
                     "questions_per_step", "clip_eps", "kl_coef", "clip_max", "grad_clip", "updates_per_batch",
                     "top_p_among_top_k", "stop_ids"}
-- what a checkpoint that lacks a key (written before it existed) was made with; top_p_among_top_k:
-- with both top_k and top_p, top_p counts among the top_k ids since the eighteenth session (the
-- whole vocabulary before), so such a run is not resumed from an older checkpoint
local RESUME_WAS = {updates_per_batch = 1, top_p_among_top_k = false}
-- the loss options only some methods read (rl.reads); the other settings are compared for every method
local METHOD_KEYS = {alpha = true, clip_max = true, clip_eps = true, kl_coef = true}
--- Whether method (a canonical name) reads the setting key: alpha, clip_max, clip_eps and kl_coef
--- as rl.reads says (some built-in methods only; a method of one's own any, but a weighted one
--- has no kl_coef); every other setting, yes.
function M.method_reads(key, method)
  return not METHOD_KEYS[key] or rl.reads(method, key)
end

-- Half the smallest positive f32 (2^-150): a weight below it is 0 once the loss multiplies it
-- into the f32 log-probs.
local F32_ZERO = 2.0 ^ -150

--- The warning for a step whose weighted loss trains nothing: every sample's p_old underflowed
--- (weight_share 0) and each of the method's weights is below what f32 holds (alpha = 0 adds
--- nothing; the largest, max_weight, at most 2^-150: each weight is rounded to f32 on its own),
--- so the loss and its gradient are 0 and only weight decay moves the weights. nil for any other
--- step. method: the canonical name; met: the step's metrics; alpha: the run's.
function M.underflow_warning(step, method, met, alpha)
  local w, n = met.mean_weight, met.n_samples
  if met.weight_share ~= 0 or type(w) ~= "number" or type(n) ~= "number" then return nil end
  -- (a sum below 2^-150 missed the steps where every weight rounds to 0 but their sum does not)
  local wmax = met.max_weight
  if type(wmax) == "number" then
    if not (wmax >= 0 and wmax <= F32_ZERO) then return nil end
  elseif not (w >= 0 and w * n < F32_ZERO) then return nil end
  local what, fix
  if not rl.builtin(method) then
    what, fix = (" (method %s's weights are all 0)"):format(method), "weights that do not underflow"
  elseif rl.reads(method, "alpha") then
    what, fix = (" and alpha = %g"):format(alpha or 0), "alpha > 0"
  else
    what, fix = "", "l2 with alpha > 0"
  end
  return ("step %d: every sample's weight p_old underflowed to 0%s: this step trains nothing but weight "
          .. "decay (RLSC.md: underflow; %s or shorter completions keep a weight; said once per run)")
         :format(step, what, fix)
end

local OPT_KEYS = {lr = "lr", weight_decay = "weight_decay", beta1 = "beta1", beta2 = "beta2", eps = "eps",
                  state_dtype = "state_dtype"}
-- the config.json keys that decide the shapes of the weights a checkpoint holds: a resume from
-- another model's checkpoint is refused (compared where both configs give the key)
local ARCH_KEYS = {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads", "num_key_value_heads", "vocab_size"}

local function run_settings(o, T_loss)
  local s = {}
  for _, k in ipairs(RESUME_KEYS) do s[k] = o[k] end
  s.loss_temperature = T_loss
  s.top_p_among_top_k = o.top_k > 0 and o.top_p < 1
  -- a method of one's own's options (method_opts), compared on resume like the others
  if type(o.method_opts) == "table" and next(o.method_opts) ~= nil then
    s.method_opts = {}
    for k, v in pairs(o.method_opts) do s.method_opts[k] = v end
  end
  -- the sampling's stop ids, sorted, as one string ("" for none); nil when o.stop is (a
  -- recipe's check_out before the tokenizer that gives them is loaded: train.run compares them)
  if o.stop == nil then return s end
  local ids, seen = {}, {}
  for _, id in ipairs(o.stop or {}) do
    if not seen[id] then seen[id] = true; ids[#ids + 1] = math.tointeger(id) or id end
  end
  table.sort(ids, function(a, b) return tostring(a) < tostring(b) end)
  for i, id in ipairs(ids) do ids[i] = tostring(id) end
  s.stop_ids = table.concat(ids, ",")
  return s
end

local function int(v) return math.type(v) == "integer" or (type(v) == "number" and math.tointeger(v) ~= nil) end

-- nil, or what is wrong with the fields of a trainer_state.json (st, read from checkpoint step
-- `step`) that the comparison with this run's settings reads: the step, the method, the seed,
-- the settings, and the optimizer being an object when there
local function trainer_state_problem(st, step)
  if not (int(st.step) and st.step == step) then
    return ("step is %s, the folder's name says %d"):format(rl.show(st.step), step)
  end
  if st.method ~= nil and type(st.method) ~= "string" then return "method must be a string, got " .. rl.show(st.method) end
  if st.seed ~= nil and not int(st.seed) then return "seed must be an integer, got " .. rl.show(st.seed) end
  if st.settings ~= nil and type(st.settings) ~= "table" then
    return "settings must be an object, got " .. rl.show(st.settings)
  end
  if st.optimizer ~= nil and type(st.optimizer) ~= "table" then
    return "optimizer must be an object, got " .. rl.show(st.optimizer)
  end
  -- the settings compared with this run's are numbers (a string there read as another setting),
  -- top_p_among_top_k a boolean
  for _, k in ipairs(RESUME_KEYS) do
    local v = st.settings and st.settings[k]
    local want = k == "top_p_among_top_k" and "boolean" or k == "stop_ids" and "string" or "number"
    if v ~= nil and type(v) ~= want then return ("settings.%s must be a %s, got %s"):format(k, want, rl.show(v)) end
  end
  local mo = st.settings and st.settings.method_opts
  if mo ~= nil and type(mo) ~= "table" then return "settings.method_opts must be an object, got " .. rl.show(mo) end
  for k, v in pairs(mo or {}) do
    if type(v) ~= "number" and type(v) ~= "string" and type(v) ~= "boolean" then
      return ("settings.method_opts.%s must be a number, string or boolean, got %s"):format(tostring(k), rl.show(v))
    end
  end
  for _, k in pairs(OPT_KEYS) do
    local v = st.optimizer and st.optimizer[k]
    local want = k == "state_dtype" and "string" or "number"
    if v ~= nil and type(v) ~= want then return ("optimizer.%s must be a %s, got %s"):format(k, want, rl.show(v)) end
  end
  return nil
end

-- nil, or what is wrong with the optimizer's scalars in a trainer_state.json: its kind, nparams,
-- steps and one step counter per parameter (opt:load_state checks them again, and the tensors
-- against the parameters)
local function optimizer_state_problem(st)
  local opt = st.optimizer
  if type(opt) ~= "table" then return "optimizer must be an object, got " .. rl.show(opt) end
  if type(opt.kind) ~= "string" then return "optimizer.kind must be a string, got " .. rl.show(opt.kind) end
  if not (int(opt.nparams) and opt.nparams >= 0) then
    return "optimizer.nparams must be an integer >= 0, got " .. rl.show(opt.nparams)
  end
  if not (int(opt.steps) and opt.steps >= 0) then
    return "optimizer.steps must be an integer >= 0, got " .. rl.show(opt.steps)
  end
  -- one counter step.<i> per parameter, i = 1 .. nparams (walked as the file has them: a huge
  -- nparams costs nothing)
  local counters = 0
  for k, s in pairs(opt) do
    local i = type(k) == "string" and math.tointeger(tonumber(k:match("^step%.(%d+)$")))
    if i then
      if i < 1 or i > opt.nparams then return ("optimizer.%s: there are nparams = %d parameters"):format(k, opt.nparams) end
      if not (int(s) and s >= 0 and s <= opt.steps) then
        return ("optimizer.%s must be an integer in [0, steps = %d], got %s"):format(k, opt.steps, rl.show(s))
      end
      counters = counters + 1
    end
  end
  if counters ~= opt.nparams then
    return ("optimizer has %d step counters (step.<i>) for nparams = %d parameters"):format(counters, opt.nparams)
  end
  return nil
end

-- nil, or what is wrong with a checkpoint's optimizer tensors (opt: trainer_state.json's
-- optimizer; hm, ho: the headers of model.safetensors and optimizer.safetensors), before the
-- resume deletes what a finished run left and loads them: the optimizer's parameter i is the
-- i-th of the model's tensors in name order (confit.optim takes a name -> tensor table so), and
-- its state tensors (exp_avg.i, exp_avg_sq.i, momentum_buffer.i, master.i) have that shape; an
-- AdamW parameter it has updated has both moments (a missing one would restart at zero); and
-- every weight and state tensor is finite (one pass over the values: a NaN moment turns its
-- parameter into NaN at the first step)
local values_checked = {}   -- checkpoint folders whose values this process found finite (a recipe
                            -- checks before train.run checks again: one pass over the values)
local function optimizer_tensors_problem(dir, opt, hm, ho)
  local names = {}
  for name in pairs(hm) do if name ~= "__metadata__" then names[#names + 1] = name end end
  table.sort(names)
  if #names ~= opt.nparams then
    return ("trainer_state.json's optimizer has %d parameters, model.safetensors %d tensors"):format(opt.nparams, #names)
  end
  local function shape(e) return type(e) == "table" and type(e.shape) == "table" and table.concat(e.shape, " x ") or "?" end
  local path = dir .. "/optimizer.safetensors"
  for i, name in ipairs(names) do
    if opt.kind == "adamw" and opt["step." .. i] > 0 then
      for _, slot in ipairs({"exp_avg", "exp_avg_sq"}) do
        if not ho[slot .. "." .. i] then
          return ("%s has no %s.%d, of a parameter after %d updates (%s)"):format(path, slot, i, opt["step." .. i], name)
        end
      end
    end
    for _, slot in ipairs({"exp_avg", "exp_avg_sq", "momentum_buffer", "master"}) do
      local e = ho[slot .. "." .. i]
      if e and shape(e) ~= shape(hm[name]) then
        return ("%s: %s.%d is [%s], its parameter %s is [%s]"):format(path, slot, i, shape(e), name, shape(hm[name]))
      end
    end
  end
  if values_checked[dir] then return nil end
  -- read in place from the files' mappings: nothing is copied (a 7B checkpoint's moments would
  -- not fit in memory twice)
  for _, p in ipairs({dir .. "/model.safetensors", path}) do
    local bad, err = confit.safetensors_nonfinite(p)
    if bad == nil then return tostring(err) end
    if bad then return ("%s: %s holds NaN or inf"):format(p, bad) end
  end
  values_checked[dir] = true
  return nil
end

-- nil, or a message naming the first setting of this run that differs from the checkpoint's
local function resume_mismatch(st, o, method, T_loss)
  local function differ(a, b)
    if type(a) == "number" and type(b) == "number" then return math.abs(a - b) > 1e-12 * math.max(1, math.abs(a)) end
    return a ~= b
  end
  if st.method ~= nil and st.method ~= method then
    return ("method %s, this run %s"):format(tostring(st.method), method)
  end
  if st.seed ~= nil and differ(st.seed, o.seed) then return ("seed %s, this run %s"):format(st.seed, o.seed) end
  local mine = run_settings(o, T_loss)
  for _, k in ipairs(RESUME_KEYS) do
    local was = st.settings and st.settings[k]
    if was == nil and st.settings then was = RESUME_WAS[k] end
    -- a method of one's own may read any setting
    local used = M.method_reads(k, method)
    if used and was ~= nil and not (k == "stop_ids" and mine[k] == nil) and differ(was, mine[k]) then
      return ("%s %s, this run %s"):format(k, tostring(was), tostring(mine[k]))
    end
  end
  -- method_opts: a checkpoint without them was made without (they came in the twenty-fourth session)
  local was_mo, mine_mo = st.settings and st.settings.method_opts or {}, mine.method_opts or {}
  local mo_keys = {}
  for k in pairs(was_mo) do mo_keys[k] = true end
  for k in pairs(mine_mo) do mo_keys[k] = true end
  for _, k in ipairs(sorted_keys(mo_keys)) do
    if differ(was_mo[k], mine_mo[k]) then
      local function said(v) return v == nil and "not given" or rl.show(v) end
      return ("method_opts.%s %s, this run %s"):format(k, said(was_mo[k]), said(mine_mo[k]))
    end
  end
  for ok, sk in pairs(OPT_KEYS) do
    local was = st.optimizer and st.optimizer[sk]
    local want = ok == "state_dtype" and (o.state_dtype or "f32") or o[ok]
    if was ~= nil and want ~= nil and differ(was, want) then
      return ("%s %s, this run %s"):format(ok, tostring(was), tostring(want))
    end
  end
  return nil
end

-- nil, or a message naming the first architecture key (ARCH_KEYS) in which the model config mc
-- differs from the checkpoint's config.json ck
local function model_mismatch(ck, mc)
  for _, k in ipairs(ARCH_KEYS) do
    local a, b = ck[k], mc[k]
    if a ~= nil and b ~= nil and a ~= b then
      return ("%s %s, the model to train %s"):format(k, tostring(a), tostring(b))
    end
  end
  return nil
end

local DEFAULTS = {
  method = "l2", alpha = 0.1, n = 16, temperature = 0.5, top_p = 1.0, top_k = 0,
  max_new_tokens = 64, steps = 20, questions_per_step = 4, lr = 1e-4, weight_decay = 0.01,
  beta1 = 0.9, beta2 = 0.999, eps = 1e-8, grad_clip = 0, seed = 1, checkpoint_every = 0,
  keep_checkpoints = 0, clip_eps = 0.2, kl_coef = 0, clip_max = 0.5, micro_batch = 0, updates_per_batch = 1,
}
M.DEFAULTS = DEFAULTS

--- Whether a run with opts (train.run's, defaults filled in) may use the run directory out (the
--- recipe's --out): nil, or a message. A resumed run must have the settings of the latest
--- checkpoint and its model's architecture (ARCH_KEYS of opts.model_config, a config.json
--- table, else of opts.model.config when opts.model is a loaded model), the checkpoint's files
--- must be whole and their fields and tensors sound (trainer_state_problem,
--- optimizer_state_problem, optimizer_tensors_problem), and steps.jsonl readable; a fresh one
--- must find no checkpoint (a later resume
--- would continue an earlier run's). Recipes call it before they write anything; train.run calls
--- it too. opts.stop (the stop ids) may be left out: they are then not compared (train.run does).
function M.check_out(out, opts)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  local list = checkpoints(out)
  -- a checkpoint-<s> that is no checkpoint (no trainer_state.json: a copy cut short, notes) and
  -- that the run's save at step s would not replace: it would train up to s and then fail there
  local from = o.resume and list[1] and list[1].step or 0
  local every = int(o.checkpoint_every) and o.checkpoint_every or 0
  for _, name in ipairs(cli.list_dir(out) or {}) do
    local s = math.tointeger(tonumber(name:match("^checkpoint%-(%d+)$")))
    local path = out .. "/" .. name
    local saved = s and every > 0 and s % every == 0 and s > from and int(o.steps) and s <= o.steps
    if saved and not cli.exists(path .. "/trainer_state.json") then
      local why = jsonio.replace_problem(path, model.is_saved_file)
      if why then
        return ("%s is no checkpoint (no trainer_state.json), and the checkpoint of step %d could not replace it: "
                .. "%s"):format(path, s, why)
      end
    end
  end
  if not list[1] then return nil end
  local dir, step = list[1].dir, list[1].step
  if not o.resume then
    return ("--out '%s' holds %s of an earlier run: resume it (--resume) or use another --out")
           :format(out, dir:match("[^/]+$"))
  end
  local function damaged(why)
    return ("resume: checkpoint %s is damaged (%s)%s"):format(dir, why, list[2] and
           (("; remove it to resume from the earlier %s"):format(list[2].dir:match("[^/]+$"))) or "")
  end
  local st, st_err = jsonio.read_json(dir .. "/trainer_state.json")
  if st == nil then return damaged(tostring(st_err)) end
  if type(st) ~= "table" then return ("resume: %s has no readable trainer_state.json"):format(dir) end
  local bad = trainer_state_problem(st, step)
  if bad then return damaged("trainer_state.json: " .. bad) end
  -- a run of fewer steps than the checkpoint holds would evaluate and summarise the later model
  -- as a run of o.steps
  if int(o.steps) and step > o.steps then
    return ("resume: %s is at step %d, past --steps %d: resume with --steps %d or more, or use another --out")
           :format(dir, step, o.steps, step)
  end
  bad = resume_mismatch(st, o, rl.resolve(o.method) or o.method, o.loss_temperature or o.temperature)
  if bad then
    return ("resume: %s was made with %s; resume with the run's settings or use another --out")
           :format(dir, bad)
  end
  local mc = o.model_config
  if mc == nil and type(o.model) == "table" then mc = o.model.config end
  -- the checkpoint's architecture: every checkpoint has it (m:save_into), so one without it is
  -- damaged (resumed unchecked, it met the weights' shapes only when they were copied in)
  local ck, cerr = jsonio.read_json(dir .. "/config.json")
  if type(ck) ~= "table" then return damaged("config.json: " .. (cerr and tostring(cerr) or "not a JSON object")) end
  for _, k in ipairs(ARCH_KEYS) do
    if k ~= "model_type" and ck[k] ~= nil and not int(ck[k]) then
      return damaged(("config.json: %s must be an integer, got %s"):format(k, rl.show(ck[k])))
    end
  end
  if ck.hidden_size == nil or ck.num_hidden_layers == nil then
    return damaged("config.json: no hidden_size or num_hidden_layers")
  end
  bad = type(mc) == "table" and model_mismatch(ck, mc)
  if bad then
    return ("resume: %s was trained from another model (%s); resume with the run's --model or use another --out")
           :format(dir, bad)
  end
  bad = optimizer_state_problem(st)
  if bad then return damaged("trainer_state.json: " .. bad) end
  local headers = {}
  for _, f in ipairs({"model.safetensors", "optimizer.safetensors"}) do
    local why, h = safetensors_problem(dir .. "/" .. f)
    if why then return damaged(why) end
    headers[f] = h
  end
  bad = optimizer_tensors_problem(dir, st.optimizer, headers["model.safetensors"], headers["optimizer.safetensors"])
  if bad then return damaged(bad) end
  local kept, serr = steps_before(out .. "/steps.jsonl", step)
  if not kept then return ("resume: %s (fix or remove that line)"):format(serr) end
  if not cli.exists(out .. "/steps.jsonl") then
    return ("resume: %s/steps.jsonl is missing, yet %s is at step %d: resumed, the run would log steps %d on "
            .. "alone; put the log back, or use another --out"):format(out, dir:match("[^/]+$"), step, step + 1)
  end
  -- every batch up to the checkpoint's must have its record (train.run syncs the log before each
  -- checkpoint; a log edited, or copied without its tail, would resume with a gap in the steps)
  do
    local have = {}
    for _, r in ipairs(kept) do have[type(r.batch) == "number" and r.batch or r.step] = true end
    for b = 1, step do
      if not have[b] then
        local earlier
        for _, c in ipairs(list) do if c.step < b then earlier = c; break end end
        return ("resume: %s/steps.jsonl has no record of step %d, before %s (a write lost in a crash?): %s")
               :format(out, b, dir:match("[^/]+$"), earlier
                 and ("remove the checkpoints after step %d to resume from %s, or use another --out")
                     :format(b - 1, earlier.dir:match("[^/]+$"))
                 or "use another --out")
      end
    end
  end
  return nil
end

-- The options of train.run besides DEFAULTS' (an unknown key, a typo, is refused)
local OTHER_KEYS = {"model", "questions", "prompt_of", "extract", "grade", "answer_key", "answer_equal", "loss_temperature",
                    "stop", "out", "resume", "ref_model", "log", "on_step", "state_dtype", "model_config",
                    "method_opts"}
local KNOWN_KEYS = {}
for k in pairs(DEFAULTS) do KNOWN_KEYS[k] = true end
for _, k in ipairs(OTHER_KEYS) do KNOWN_KEYS[k] = true end

-- the numeric options and their ranges: int (an integer), min / above (>= / >), max / below
local NUMBER_RULES = {
  {"steps", int = true, min = 0}, {"questions_per_step", int = true, min = 1}, {"n", int = true, min = 1},
  {"max_new_tokens", int = true, min = 1}, {"top_k", int = true, min = 0}, {"micro_batch", int = true, min = 0},
  {"updates_per_batch", int = true, min = 1, max = 1000}, {"checkpoint_every", int = true, min = 0}, {"seed", int = true},
  {"keep_checkpoints", int = true, min = 0},
  {"temperature", above = 0}, {"loss_temperature", above = 0}, {"top_p", above = 0, max = 1},
  {"lr", min = 0}, {"weight_decay", min = 0}, {"beta1", min = 0, below = 1}, {"beta2", min = 0, below = 1},
  {"eps", min = 0}, {"alpha", min = 0}, {"clip_eps", min = 0}, {"clip_max", min = 0}, {"kl_coef", min = 0},
  {"grad_clip", min = 0},
}
local NUMBER_WHY = {steps = " (0: a run that samples nothing)", micro_batch = " (0 = the whole step at once)",
                    checkpoint_every = " (0 = none)", keep_checkpoints = " (0 = keep all)", grad_clip = " (0 = no clipping)", top_k = " (0 = off)"}

local function is_model(x)
  return type(x) == "table" and type(x.generate) == "function" and type(x.parameters) == "function"
end

--- nil, or what is wrong with method_opts, train.run's options for a method of one's own
--- (merged into the opts its loss receives) for method (a canonical name): a table of names
--- (letters, digits and _, not starting with a digit; no option of train.run's own) to numbers,
--- strings or booleans (recorded
--- with the checkpoints); a built-in method takes none (it reads train.run's own options only).
-- the names method_opts may use (rlsc's --method-opt KEY=VALUE refuses any other key too)
M.OPTION_NAME = "^[%a_][%w_]*$"

function M.method_opts_problem(mo, method)
  if mo == nil then return nil end
  if type(mo) ~= "table" then
    return "method_opts must be a table of a method's own options ({my_thresh = 3}), got " .. rl.show(mo)
  end
  for k in pairs(mo) do
    if type(k) ~= "string" or not k:match(M.OPTION_NAME) then
      return ("method_opts: a key must be an option's name (a string of letters, digits and _, not starting with a "
              .. "digit), got %s"):format(rl.show(k))
    end
  end
  for _, k in ipairs(sorted_keys(mo)) do
    local v = mo[k]
    if not (type(v) == "string" or type(v) == "boolean" or (type(v) == "number" and isfinite(v))) then
      return ("method_opts.%s must be a finite number, a string or a boolean, got %s"):format(k, rl.show(v))
    end
    if KNOWN_KEYS[k] then
      return ("method_opts.%s: %s is an option of train.run itself; give it as %s = ... beside method_opts"):format(k, k, k)
    end
    if rl.builtin(method) then
      return ("method_opts.%s: method %s is built in and reads none of its own (method_opts is for a method of "
              .. "one's own, rl.methods or rl.register_weighted)"):format(k, method)
    end
  end
  return nil
end

-- nil, or the first mistake in train.run's options o (defaults filled in) for the method
local function options_problem(o, method)
  local show = rl.show
  local unknown = {}
  for k in pairs(o) do if not KNOWN_KEYS[k] then unknown[#unknown + 1] = tostring(k) end end
  if unknown[1] then
    table.sort(unknown)
    return ("unknown option '%s' (known: %s)"):format(unknown[1], table.concat(sorted_keys(KNOWN_KEYS), ", "))
  end
  if not is_model(o.model) then
    return "model must be a loaded model (confit.model.load(dir) or model.new(config)), got " .. show(o.model)
  end
  if type(o.questions) ~= "table" or #o.questions == 0 then
    return "questions must be a non-empty list (each {prompt = string | token ids, answer = optional}), got "
           .. (type(o.questions) == "table" and "an empty list" or show(o.questions))
  end
  for _, r in ipairs(NUMBER_RULES) do
    local k, v = r[1], o[r[1]]
    if v ~= nil or k ~= "loss_temperature" then
      local ok = type(v) == "number" and isfinite(v) and (not r.int or math.type(v) == "integer")
                 and (r.min == nil or v >= r.min) and (r.above == nil or v > r.above)
                 and (r.max == nil or v <= r.max) and (r.below == nil or v < r.below)
      if not ok then
        local parts = {}
        if r.above then parts[#parts + 1] = "> " .. r.above end
        if r.min then parts[#parts + 1] = ">= " .. r.min end
        if r.max then parts[#parts + 1] = "<= " .. r.max end
        if r.below then parts[#parts + 1] = "< " .. r.below end
        return ("%s must be %s%s%s, got %s"):format(k, r.int and "an integer" or "a finite number",
               #parts > 0 and (" " .. table.concat(parts, " and ")) or "", NUMBER_WHY[k] or "", show(v))
      end
    end
  end
  for _, k in ipairs({"prompt_of", "extract", "grade", "answer_key", "answer_equal", "log", "on_step"}) do
    if o[k] ~= nil and type(o[k]) ~= "function" then return ("%s must be a function, got %s"):format(k, show(o[k])) end
  end
  if o.out ~= nil and (type(o.out) ~= "string" or o.out == "") then
    return "out must be a non-empty string (the run directory; nil writes nothing), got " .. show(o.out)
  end
  if o.resume ~= nil and type(o.resume) ~= "boolean" then return "resume must be true or false, got " .. show(o.resume) end
  if o.resume and not o.out then return "resume = true needs out (the run directory to continue)" end
  if o.keep_checkpoints > 0 and o.checkpoint_every == 0 then
    return ("keep_checkpoints = %d, but no checkpoints are written without checkpoint_every = K > 0"):format(o.keep_checkpoints)
  end
  if o.checkpoint_every > 0 and not o.out then
    return ("checkpoint_every = %d needs out (the run directory the checkpoints go to)"):format(o.checkpoint_every)
  end
  if o.state_dtype ~= nil and o.state_dtype ~= "f32" and o.state_dtype ~= "bf16" then
    return "state_dtype must be \"f32\" or \"bf16\", got " .. show(o.state_dtype)
  end
  if o.stop ~= nil and type(o.stop) ~= "table" then return "stop must be a list of token ids, got " .. show(o.stop) end
  if o.ref_model ~= nil and not is_model(o.ref_model) then
    return "ref_model must be a loaded model (the start model, for the KL term), got " .. show(o.ref_model)
  end
  if o.kl_coef > 0 and not M.method_reads("kl_coef", method) then
    return ("kl_coef = %g, but method %s has no KL term (the GRPO methods have one)"):format(o.kl_coef, method)
  end
  if o.kl_coef > 0 and o.ref_model == nil then
    return ("kl_coef = %g needs ref_model (the start model the KL term compares with)"):format(o.kl_coef)
  end
  local bad = M.method_opts_problem(o.method_opts, method)
  if bad then return bad end
  if o.model_config ~= nil and type(o.model_config) ~= "table" then
    return "model_config must be a config.json table, got " .. show(o.model_config)
  end
  if rl.grpo_reward[method] and o.n < 2 then
    return ("method %s needs n >= 2 samples per question (GRPO's advantages compare a question's samples: "
            .. "with n = %d every advantage is 0 and nothing trains)"):format(method, o.n)
  end
  local split = rl.micro_batch_problem(method, o.micro_batch, o.n * o.questions_per_step, o.questions_per_step)
  if split then return split end
  if method == "grpo_ttrl" and o.extract == nil then
    return "method grpo_ttrl rewards agreement with the majority of the extracted answers: it needs "
           .. "extract(text) -> answer (without it every reward is 0 and nothing trains)"
  end
  if o.prompt_of == nil then
    for i = 1, #o.questions do
      local q = o.questions[i]
      local p = type(q) == "table" and q.prompt
      if (type(p) ~= "string" and type(p) ~= "table") or #p == 0 then
        if type(q) ~= "table" then
          return ("question %d must be a table {prompt = string | token ids, answer = optional} (or give "
                  .. "prompt_of(q) -> prompt), got %s"):format(i, show(q))
        end
        return ("question %d: prompt must be a non-empty string or list of token ids (or give prompt_of), got %s")
               :format(i, show(q.prompt))
      end
    end
  end
  return nil
end

--- Run RL. opts: model, questions (list of {prompt = string | token ids, answer = optional}),
--- prompt_of(q) (default q.prompt), extract(text) -> answer (grpo_ttrl needs it), grade(text,
--- answer) -> bool, answer_key(a), answer_equal(a, b) (rl.batch's: votes), the DEFAULTS above (micro_batch: sequences per
--- forward/backward, 0 = all; updates_per_batch: optimizer steps per sampled batch, see the
--- header), loss_temperature (default = temperature), state_dtype ("f32" | "bf16", AdamW's
--- moments), stop (extra stop ids), out (run directory, created when missing; nil = write
--- nothing), resume, ref_model (GRPO KL), log(line) (default print), on_step(record, batch) (after
--- each optimizer step; batch: the rl.batch it was taken on), model_config (see M.check_out),
--- method_opts (a method of one's own's options, {my_thresh = 3}: merged into the opts its loss
--- receives, recorded with the checkpoints and compared on resume; M.method_opts_problem).
--- The method's loss gets the loss options it reads (rl.reads: a built-in method only its own,
--- l1 no alpha), the loss temperature and micro_batch, and method_opts.
--- Returns the list of step records (one per optimizer step).
---
--- Every option is checked before anything runs, each mistake one line "train.run: ..." naming
--- the option and its range (a user error, cli.raise): counts are integers (steps >= 0,
--- questions_per_step, n, max_new_tokens, updates_per_batch >= 1; top_k, micro_batch,
--- checkpoint_every, keep_checkpoints >= 0), the rest finite numbers (temperature, loss_temperature > 0; top_p in
--- (0, 1]; lr, weight_decay, eps, alpha, clip_eps, clip_max, kl_coef, grad_clip >= 0; betas in
--- [0, 1)); kl_coef > 0 needs a method with a KL term (the GRPO methods; a method registered with
--- rl.register_weighted has none) and ref_model; checkpoint_every > 0 and resume need out; the GRPO
--- methods need n >= 2 (their advantages compare a question's samples), grpo_ttrl needs extract,
--- a method of one's own not declared in rl.per_question runs micro_batch > 0 only where no chunk
--- would split the step's questions (rl.micro_batch_problem);
--- an unknown option (a typo) is refused. steps = 0 samples nothing and returns {} (with out, an
--- empty steps.jsonl). A fresh run (resume not set) refuses an out that holds checkpoints (see
--- M.check_out) or a steps.jsonl with records: it would overwrite an earlier run's log.
function M.run(opts)
  if type(opts) ~= "table" then cli.raise("train.run: opts must be a table of options, got " .. rl.show(opts)) end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  if o.stop == nil then o.stop = {} end   -- no stop ids is a setting a resume compares too
  local method, merr = rl.resolve(o.method)
  if not method then cli.raise("train.run: " .. merr) end
  local bad_opt = options_problem(o, method)
  if bad_opt then cli.raise("train.run: " .. bad_opt) end
  local m = o.model
  local log = o.log or print
  local T_loss = o.loss_temperature or o.temperature
  local prompt_of = o.prompt_of or function(q) return q.prompt end
  local Q = o.questions_per_step
  local U = o.updates_per_batch

  local records = {}
  if not rl.trains(method) then return records end

  local params = M.trainable(m)
  local opt = confit.optim.adamw(params, {lr = o.lr, weight_decay = o.weight_decay,
                                          betas = {o.beta1, o.beta2}, eps = o.eps, state_dtype = o.state_dtype})
  local start = 1
  local steps_path = o.out and (o.out .. "/steps.jsonl")
  if o.out then
    -- a user error (one line from a recipe): the run directory, not the program, is at odds
    local bad = M.check_out(o.out, o)
    if bad then cli.raise("train: " .. bad) end
    -- a fresh run would overwrite the log of an earlier one (check_out found no checkpoint:
    -- there is nothing to resume from; a resume without one starts over, as it says)
    if not o.resume and jsonio.has_content(steps_path) then
      cli.raise(("train.run: out '%s' holds the steps.jsonl of an earlier run (and no checkpoint to resume it from); "
                 .. "remove it or use another out"):format(o.out))
    end
    local ok, derr = cli.make_dir(o.out)
    if not ok then cli.raise(("train.run: out '%s': %s"):format(o.out, derr)) end
  end
  if o.out and o.resume then
    local dir, step = M.latest_checkpoint(o.out)
    if dir then
      M.load_checkpoint(dir, m, opt)   -- the weights (in place: params stay m's) and the moments
      start = step + 1
      local kept_lines
      records, kept_lines = steps_before(steps_path, step)
      if not records then cli.raise("train: resume: " .. kept_lines) end
      -- the kept lines as they were written (a re-encoding would turn 0.0 into 0)
      kept_lines[#kept_lines + 1] = ""
      assert(jsonio.write_text_atomic(steps_path, table.concat(kept_lines, "\n")))
      log(("resumed from %s (step %d%s)"):format(dir, step,
          U > 1 and (", %d updates per batch: optimizer step %d"):format(U, step * U) or ""))
    else
      log("resume: no checkpoint in " .. o.out .. "; starting at step 1")
    end
  end
  if o.out and start == 1 then assert(jsonio.write_jsonl_atomic(steps_path, {})) end

  -- question qi's prompt as token ids (prompt_of's string encoded), refused when it has none
  local encode = function(p, qi)
    if type(p) == "string" then
      if not m.tokenizer then
        cli.raise(("train.run: question %d's prompt is a string but the model has no tokenizer: give token ids"):format(qi))
      end
      p = m:encode(p)
    elseif type(p) ~= "table" then
      cli.raise(("train.run: question %d's prompt%s must be a string or a list of token ids, got %s")
                :format(qi, o.prompt_of and " (prompt_of)" or "", rl.show(p)))
    end
    if #p == 0 then cli.raise(("train.run: question %d's prompt is empty (no tokens)"):format(qi)) end
    return p
  end
  local warned_underflow = false

  -- the prompts (token ids) of step's Q questions, taken cyclically, and their labels (nil when
  -- unlabeled: used for logging only)
  local function step_prompts(step)
    local prompts, answers = {}, {}
    for j = 1, Q do
      local qi = ((step - 1) * Q + j - 1) % #o.questions + 1
      local q = o.questions[qi]
      prompts[j] = encode(prompt_of(q), qi)
      answers[j] = type(q) == "table" and q.answer or nil
    end
    return prompts, answers
  end

  -- o.n samples per prompt with step's seed. The sampler refuses NaN / Inf logits (a weight that
  -- is not finite, or an update that diverged): like a non-finite loss, one line naming the step.
  local function sample(step, prompts)
    local gen_ok, samples = pcall(m.generate, m, prompts, {n = o.n, temperature = o.temperature, top_p = o.top_p,
                                                           top_k = o.top_k, max_new_tokens = o.max_new_tokens,
                                                           seed = o.seed * 1000003 + step, stop = o.stop})
    if not gen_ok then
      local why = type(samples) == "string" and samples:match("non%-finite logits: (.*)$")
      if not why then error(samples, 0) end
      local ostep = (step - 1) * U + 1
      cli.raise(("train: %s: the model's logits are not finite while sampling (%s); stopped before the loss and "
                 .. "the update, so step %d is neither applied nor saved")
                :format(U > 1 and ("step %d (batch %d)"):format(ostep, step) or ("step %d"):format(step), why, ostep))
    end
    return samples
  end

  -- a metric that is not a number (a method of one's own) prints as "-"
  local function num(f, x) return type(x) == "number" and f:format(x) or "-" end

  -- One optimizer update u (1..U) on step's batch: the gradient, its checks (a non-finite loss or
  -- gradient stops the run before the update: a user error, one line from a recipe), the AdamW
  -- step, the record (appended to steps.jsonl), the log line. t_u: when the update began (the
  -- first one's includes the sampling); gen_s and ntok: the sampling's, for the first update only.
  local function update(step, u, batch, ropts, t_u, gen_s, ntok)
    local ostep = (step - 1) * U + u
    local where = U > 1 and ("step %d (batch %d, update %d of %d)"):format(ostep, step, u, U)
                  or ("step %d"):format(step)
    opt:zero_grad()
    local lv, met = rl.backward(method, batch, ropts)
    if not isfinite(lv) then
      cli.raise(("train: %s: the loss is %s (method %s); stopped before the update, so step %d is neither applied nor saved")
                :format(where, cli.show(lv), method, ostep))
    end
    -- the standard metrics (RUNDIR.md) a method of one's own left out: a forward without a
    -- graph, before the update
    rl.fill_metrics(met, batch, T_loss, o.micro_batch)
    -- the record must be writable (JSON has no NaN or inf) before the update is applied
    for _, k in ipairs(sorted_keys(met)) do
      local v = met[k]
      if type(v) == "number" and not isfinite(v) then
        cli.raise(("train: %s: the metric %s is %s (method %s); stopped before the update, so step %d is neither applied nor saved")
                  :format(where, k, cli.show(v), method, ostep))
      end
    end
    local gnorm = confit.optim.clip_grad_norm(params, (o.grad_clip or 0) > 0 and o.grad_clip or math.huge)
    if not isfinite(gnorm) then
      local name, n = M.bad_gradient(params)
      cli.raise(("train: %s: the gradient of %s is not finite (norm %s); stopped before the update, so step %d is neither applied nor saved")
                :format(where, name or "(unknown parameter)", cli.show(n or gnorm), ostep))
    end
    opt:step()
    local step_s = confit.clock() - t_u
    local rec = {step = ostep, loss = lv, lr = opt.lr, grad_norm = gnorm, step_s = step_s,
                 gen_s = gen_s, tokens_per_s = ntok and ntok / step_s or 0, time = os.time()}
    for k, v in pairs(met) do if rec[k] == nil then rec[k] = v end end
    if U > 1 then rec.batch, rec.update = step, u end
    records[#records + 1] = rec
    if steps_path then assert(jsonio.append_jsonl(steps_path, rec)) end
    log(("step %3d%s  loss %9.4f  logp %s  conf %s  p>1e-6 %s  len %s  ent %s%s%s  %.2fs")
        :format(ostep, U > 1 and ("  upd %d/%d"):format(u, U) or "", lv, num("%8.3f", met.mean_logp),
                num("%.4f", met.mean_confidence), num("%.2f", met.weight_share),
                num("%5.1f", met.mean_length), num("%.3f", met.entropy),
                type(met.train_acc) == "number" and ("  acc %.3f"):format(met.train_acc) or "",
                U > 1 and type(met.clip_frac) == "number" and ("  clip %.3f"):format(met.clip_frac) or "",
                step_s))
    if not warned_underflow then
      local warn = M.underflow_warning(ostep, method, met, o.alpha)
      if warn then log(warn); warned_underflow = true end
    end
    if o.on_step then o.on_step(rec, batch) end
  end

  -- One step s: sample the batch once, U updates on it, a checkpoint when one is due.
  local function one_step(step)
    local t0 = confit.clock()
    local prompts, answers = step_prompts(step)
    local samples = sample(step, prompts)
    local t_gen = confit.clock() - t0
    local ntok = 0
    for _, s in ipairs(samples) do ntok = ntok + #s.tokens end
    local have_labels = answers[1] ~= nil and o.grade ~= nil
    local batch = rl.batch(m, prompts, samples, {n = o.n, extract = o.extract,
                                                 answers = have_labels and answers or nil,
                                                 grade = o.grade, answer_key = o.answer_key,
                                                 answer_equal = o.answer_equal})
    batch.ref_model = o.ref_model
    -- the loss options the method reads (a built-in one refuses the others), and method_opts
    local ropts = {temperature = T_loss, micro_batch = o.micro_batch}
    for _, k in ipairs({"alpha", "clip_eps", "kl_coef", "clip_max"}) do
      if rl.reads(method, k) then ropts[k] = o[k] end
    end
    for k, v in pairs(o.method_opts or {}) do ropts[k] = v end
    -- several updates on this batch: the ratio of the later ones is taken against this policy
    if U > 1 then rl.snapshot_policy(method, batch, ropts) end
    for u = 1, U do
      local t_u = u == 1 and t0 or confit.clock()
      update(step, u, batch, ropts, t_u, u == 1 and t_gen or 0, u == 1 and ntok or nil)
    end
    local save = o.out and (o.checkpoint_every or 0) > 0 and step % o.checkpoint_every == 0
    -- an update with a finite gradient may still diverge (a huge lr): weights that are not
    -- finite are never saved, nor handed on (the last step's, to an evaluation or a save)
    if save or step == o.steps then
      local bad = M.bad_weight(params)
      if bad then
        local ostep = step * U
        cli.raise(("train: step %d: the update made %s NaN or inf (it diverged: a smaller --lr?); stopped, and "
                   .. "nothing of step %d is saved"):format(ostep, bad, ostep))
      end
    end
    if save then
      -- the log first: a checkpoint on the disk implies the records of every step up to it
      if steps_path then assert(jsonio.sync(steps_path)) end
      M.save_checkpoint(o.out, step, m, opt, {method = method, seed = o.seed, settings = run_settings(o, T_loss)})
      if o.keep_checkpoints > 0 then M.prune_checkpoints(o.out, o.keep_checkpoints) end
    end
  end

  for step = start, o.steps do one_step(step) end
  return records
end

return M
