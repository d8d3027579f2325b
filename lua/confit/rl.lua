-- confit.rl: the label-free RL losses, each a short function beside the others, chosen by name.
--
--   local batch = rl.batch(m, prompt_ids, samples, {n = 16, temperature = 0.5, extract = fn})
--   local loss, metrics = rl.loss("l2", batch, {alpha = 0.1})   -- loss temperature: the batch's 0.5
--   loss:backward()
--   local lv, metrics = rl.backward("l2", batch, {alpha = 0.1, temperature = 0.5, micro_batch = 4})
--                                   -- the same gradient, 4 sequences per forward/backward
--
-- A batch is the N = n * Q samples of one optimizer step: Q questions (prompt token lists) and
-- the n completions of each from m:generate (flat, question by question). Every method returns a
-- scalar loss tensor (differentiable in the model's parameters) and a metrics table.
--
-- RLSC in one place (method l2; l1 is l2 with alpha = 0), for the N samples of one step:
--   lp_i = sum over sample i's completion tokens (the stop token included, the prompt's not
--          scored) of log softmax(z / T)[token], z the logit row of the position BEFORE the token
--          (position t scores token t + 1); T the loss temperature: opts.temperature, else the
--          sampling temperature given to rl.batch, else an error. Differentiable.
--   w_i  = exp(lp_i) + alpha, in Lua numbers (f64) from lp_i's detached value, then a tensor of
--          lp's dtype (rl.like): a constant, no gradient through it; alpha = opts.alpha (0.1).
--   loss = -sum_i w_i * lp_i over all N samples of all Q questions: no 1/N, no mean over questions.
-- The code, in reading order:
--   rl.batch                 prompt + completion ids per sample, prompt_lens P, comp_lens L
--   rl.loss / rl.backward    check the inputs, fill in the temperature (enter, with_temperature), call
--   rl.methods.l2            made by rl.register_weighted("l2", its weight function)
--   weighted_loss            lp from rl.token_view, w from the weight function, the loss
--   rl.token_view            token_rows: one forward (m:hidden), the hidden rows at positions
--                            P-1 .. P+L-2 of each sample; head_logprob(W, tokens, T): each token's
--                            log-prob without the [Ntok, V] logits; rl.segment_sums: lp per sample
--   "l2" weight function     w_i = exp(lp_i) + alpha (checked_weights: one finite number each)
--   rl.backward              loss:backward(); with opts.micro_batch K the same sum K samples at
--                            a time (each sample's weight is its own), the gradients adding up
--
-- Inputs are checked where they come in, each mistake one line naming it ("rl.batch: prompt 2,
-- token 5: ...", "rl.loss: opts.alpha must be ..."): rl.batch its model, prompts, samples and n;
-- rl.loss, rl.backward and rl.snapshot_policy the options they read (temperature > 0, given or
-- the batch's; alpha, clip_eps, kl_coef, clip_max >= 0, finite; micro_batch an integer >= 0;
-- a built-in method takes only the options it reads, rl.reads: l1, self_sft and em_ft
-- temperature and micro_batch, l2 and ours_* alpha too, ours_clip clip_max too, the GRPO methods
-- clip_eps and kl_coef; a method of one's own may read its own, but kl_coef > 0 is refused for a
-- weighted one, which has no KL term), the
-- batch (rl.batch's, its rewards one finite number per sample) and what the method needs (GRPO:
-- n >= 2, grpo_ttrl: a batch built with extract, kl_coef > 0: batch.ref_model), all before any
-- forward; then a method's result (a scalar loss tensor, a metrics table or nil) and a weight
-- function's weights.
--
-- Conventions (../shared/docs/RLSC.md):
--  * log p(y|x) is the SUM of completion token log-probs, the stop token included, the prompt
--    masked, under log_softmax(logits / T) with T = opts.temperature (the LOSS temperature; the
--    recipe passes the sampling temperature unless told --loss-temperature), else the sampling
--    temperature the batch was built with (rl.batch's opts.temperature), else refused.
--  * Weights are computed in Lua numbers (f64) from the detached log-probs. exp underflows to 0
--    below about -103 in f32 (-87 for normal numbers) and below about -745 in f64: exp(-50) =
--    2e-22 is held by both, exp(-200) = 1e-87 only by f64 (as an f32 weight it becomes 0),
--    exp(-800) by neither. Every method logs weight_share (share of samples with p_old > 1e-6),
--    mean_logp, mean_confidence (mean p_old) and mean_length (completion tokens, the stop token
--    included when the sample stopped) so underflow is visible, and the mean token entropy at
--    the LOSS temperature T of the scored tokens (entropy; from the same forward's hidden rows
--    by head_entropy, without a graph, never holding the logits).
--  * RLSC sums over the N samples with no 1/N. With Q > 1 questions per step, every method's
--    per-question loss is SUMMED over the questions (for RLSC that is just the sum over all
--    samples). Per-question means (EM-FT's token mean, GRPO's 1/G) stay inside the question.
--
-- Methods (rl.methods[name](batch, opts) -> loss, metrics):
--   l1             RLSC L1 = -sum_i p_old(y_i) log p(y_i)
--   l2             RLSC L2 = -sum_i (p_old(y_i) + alpha) log p(y_i)       alpha = opts.alpha (0.1)
--   ours_lennorm   ours: weight exp(log p / length) + alpha (length-normalised confidence)
--   ours_softmax   ours: weight softmax_i(log p) over the question's n samples, + alpha
--   ours_clip      ours: weight min(p_old, opts.clip_max (0.5)) + alpha: caps the pull of samples the
--                  model is already sure of
--   self_sft       every weight 1: -sum_i log p(y_i) (plain self-training on own samples; RLSC.md's
--                  "all weights 1 (alpha only)": L2 with every p_old = 0, rescaled by 1 / alpha)
--   em_ft          EM-FT: mean token entropy of softmax(z / T), T the LOSS temperature, over the
--                  question's generated tokens (a direct gradient through head_entropy), summed
--                  over questions
--   grpo_ttrl      GRPO, reward 1 when the sample's extracted answer equals the group's majority
--                  answer (TTRL), else 0
--   grpo_intuitor  GRPO, reward self-certainty = mean over tokens of logsumexp(z) - mean(z) of the
--                  unscaled logits (Intuitor; computed online from the current model)
--   grpo_rent      GRPO, reward = -mean token entropy of softmax(z / T) at the LOSS temperature T (RENT)
--   grpo_prob      GRPO, reward = p_old(y) = exp(log p), f64 (sequence probability)
--   temp_only      no training (rl.trains("temp_only") is false): evaluate colder instead
-- Aliases: rlsc_l1, rlsc_l2, ttrl (= grpo_ttrl), intuitor, rent, prob.
--
-- A method of one's own (docs/TOY.md, "Your own loss"): rl.methods.NAME = function(batch, opts)
-- return loss, metrics end, with opts as above (opts.temperature: the loss temperature, always set
-- by rl.loss and rl.backward). The
-- metrics may be any subset, {} or nil: train.run fills in the standard ones it lacks with
-- rl.fill_metrics. Micro-batches (opts.micro_batch) would add up the loss of each chunk, which is
-- the one-pass loss only for a sum, so rl.backward splits such a method only when it is declared
-- a sum over questions, rl.per_question.NAME = true (then between questions only: a question's
-- samples stay in one chunk), and refuses to split it otherwise (rl.micro_batch_problem). A
-- weighted likelihood, loss = -sum_i w_i log p(y_i), is best registered with
--   rl.register_weighted(NAME, function(lpv, batch, opts) return weights end, {per_sample = true})
-- (lpv: f64 sequence log-probs of the current model; per_sample only when a sample's weight
-- depends on its own log-prob and length), which sets rl.methods[NAME] and rl.weights[NAME] so
-- that micro-batches give the one-pass gradient, and logs the standard metrics and mean_weight.
-- Pieces to build with:
--   rl.seq_logprobs(batch, T) -> lp [N] (differentiable, f32), its values (f64 list)
--   rl.token_view(batch, T)   -> {logp_tok [Ntok], seq [N], offs, ntok, H, W}: per-token log-probs
--   rl.segment_sums(x, batch) -> [N] per-sample sums of a per-token tensor
--   rl.like(values, ref)      -> a tensor of Lua numbers with ref's dtype and device (weights)
--   rl.base_metrics(batch, lpv) -> the standard metrics but entropy, from the log-prob values
--   rl.fill_metrics(met, batch, T, K) -> met with the missing standard metrics (entropy included)
--   rl.advantages(r, batch)   -> GRPO's group-normalised advantages of rewards r
-- batch fields: samples (each {tokens, text, old_logprobs?}), n, groups ({first, last} per
-- question), question_of, prompt_lens, comp_lens, texts, extracted, qtok, gsize, model,
-- temperature (the sampling temperature, when rl.batch was given it).
--
-- Several updates per sampled batch (train.run's updates_per_batch, GRPO's mu): rl.snapshot_policy
-- first records the sampling policy (old_logprobs, and a GRPO method's rewards in batch.rewards);
-- the weighted methods and em_ft ignore both, their p_old being the current model's at every update.
--
-- GRPO: advantages A_i = (r_i - mean_g r) / (std_g r + 1e-6) within each question (std with the
-- n - 1 denominator); token ratios rho_t = exp(log p_t - log p_old_t), clipped objective
-- min(rho A, clip(rho, 1 - eps, 1 + eps) A), eps = opts.clip_eps (0.2); per question loss
-- = -(1/G) sum_i (1/L_i) sum_t min(...). p_old: a sample's old_logprobs (a list of its L token
-- log-probs at the loss temperature under the policy that drew it, set by the caller) where it
-- has them, else the detached current policy; the rewards: batch.rewards where set, else
-- computed from the current model. With train.run's default of one on-policy update per batch
-- there are neither: rho = 1, the clip never binds and the gradient is A_i grad log p_t / (L_i G)
-- (clip_eps then changes nothing). With updates_per_batch > 1, rl.snapshot_policy sets both (the
-- advantages stay those of the sampling policy): from the second update on rho moves away from 1
-- and the clip binds. metrics.clip_frac is the share of tokens where it binds (rho > 1 + eps with
-- A > 0, or rho < 1 - eps with A < 0: no gradient). Optional KL to a reference model
-- (opts.kl_coef > 0 with batch.ref_model): the k3 estimator exp(d) - d - 1 >= 0,
-- d = log p_ref_t - log p_t (an unbiased estimate of KL(p || p_ref) for tokens drawn from p),
-- averaged the same way; the loss adds kl_coef times it and metrics.kl is it. KL is off by default.
local confit = require "confit"
local model = require "confit.model"

local rl = {}

rl.WEIGHT_MIN = 1e-6

local ALIASES = {rlsc_l1 = "l1", rlsc_l2 = "l2", ttrl = "grpo_ttrl", intuitor = "grpo_intuitor",
                 rent = "grpo_rent", prob = "grpo_prob"}

--- The aliases of the built-in methods: "alias = method" strings, sorted.
function rl.aliases()
  local out = {}
  for a, m in pairs(ALIASES) do out[#out + 1] = a .. " = " .. m end
  table.sort(out)
  return out
end

--- The canonical name of a method, or nil and a message listing the known ones.
function rl.resolve(name)
  name = ALIASES[name] or name
  if rl.methods[name] then return name end
  local known = {}
  for k in pairs(rl.methods) do known[#known + 1] = k end
  table.sort(known)
  return nil, ("unknown method '%s' (known: %s)"):format(tostring(name), table.concat(known, ", "))
end

--- Whether the method trains (temp_only does not).
function rl.trains(name) return (ALIASES[name] or name) ~= "temp_only" end

-- Checks ----------------------------------------------------------------------------------------

local function isfinite(x) return x == x and x ~= math.huge and x ~= -math.huge end

-- a value as a message shows it: strings quoted (on one line), tables and functions by type
local function show(v)
  if v == require("confit.jsonio").null then return "null" end   -- (a JSON null: "a userdata")
  if type(v) == "string" then return (("%q"):format(v):gsub("\\\n", "\\n")) end
  if type(v) == "number" then return require("confit.cli").show(v) end   -- (a NaN: "nan", either sign)
  if type(v) == "boolean" or v == nil then return tostring(v) end
  return "a " .. type(v)
end
rl.show = show

-- nil when the number v obeys rule ({int =, min =, above =}), else the rule in words
local function num_problem(v, rule)
  local words = (rule.int and "an integer" or "a finite number")
                .. (rule.above and (" > " .. rule.above) or rule.min and (" >= " .. rule.min) or "")
  if type(v) ~= "number" or not isfinite(v) or (rule.int and math.type(v) ~= "integer")
     or (rule.above and not (v > rule.above)) or (rule.min and v < rule.min) then
    return words
  end
  return nil
end

-- the loss options that rl.loss, rl.backward and rl.snapshot_policy read (nil: the default)
local LOSS_OPTS = {{"temperature", {above = 0}}, {"alpha", {min = 0}}, {"clip_eps", {min = 0}},
                   {"kl_coef", {min = 0}}, {"clip_max", {min = 0}}, {"micro_batch", {int = true, min = 0}}}
local LOSS_OPT_WHY = {micro_batch = " (0 = one pass)", temperature = " (the loss temperature)"}

-- the options each built-in method reads (rl.loss refuses the others, so a value given to a
-- method that ignores it is never dropped without a word); a method of one's own may read any
local GRPO_OPTS = {"temperature", "clip_eps", "kl_coef", "micro_batch"}
local ALPHA_OPTS = {"temperature", "alpha", "micro_batch"}
local PLAIN_OPTS = {"temperature", "micro_batch"}
local METHOD_OPTS = {l1 = PLAIN_OPTS, l2 = ALPHA_OPTS, ours_lennorm = ALPHA_OPTS, ours_softmax = ALPHA_OPTS,
                     ours_clip = {"temperature", "alpha", "clip_max", "micro_batch"}, self_sft = PLAIN_OPTS,
                     em_ft = PLAIN_OPTS, grpo_ttrl = GRPO_OPTS, grpo_intuitor = GRPO_OPTS, grpo_rent = GRPO_OPTS,
                     grpo_prob = GRPO_OPTS, temp_only = PLAIN_OPTS}

-- opts (a table, {} for nil), or an error naming who, the option and its range (level: as error's)
local function check_loss_opts(who, opts, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("%s: opts must be a table, got %s"):format(who, show(opts)), level) end
  for _, e in ipairs(LOSS_OPTS) do
    local v = opts[e[1]]
    local want = v ~= nil and num_problem(v, e[2])
    if want then
      error(("%s: opts.%s must be %s%s, got %s"):format(who, e[1], want, LOSS_OPT_WHY[e[1]] or "", show(v)), level)
    end
  end
  return opts
end

-- an error unless batch is one of rl.batch's (its rewards, when set, one finite number per sample;
-- its temperature, when set, rl.batch's rule: a value set after rl.batch was refused only deep
-- inside, by rl.token_view at this file's line); level: as error's
local function check_batch(who, batch, level)
  if type(batch) ~= "table" or type(batch.samples) ~= "table" or type(batch.model) ~= "table"
     or batch.ids == nil or type(batch.comp_lens) ~= "table" then
    error(("%s: batch must be a batch made by rl.batch, got %s"):format(who,
          type(batch) == "table" and "a table without its fields (samples, model, ids, ...)" or show(batch)), level)
  end
  local T = batch.temperature
  local want = T ~= nil and num_problem(T, {above = 0})
  if want then
    error(("%s: batch.temperature must be %s (the sampling temperature), got %s"):format(who, want, show(T)), level)
  end
  local r, N = batch.rewards, #batch.samples
  if r ~= nil then
    if type(r) ~= "table" or #r ~= N then
      error(("%s: batch.rewards must hold one reward per sample (%d), got %s"):format(who, N,
            type(r) == "table" and (#r .. " rewards") or show(r)), level)
    end
    for i = 1, N do
      if type(r[i]) ~= "number" or not isfinite(r[i]) then
        error(("%s: batch.rewards[%d] must be a finite number, got %s"):format(who, i, show(r[i])), level)
      end
    end
  end
end

-- The loss temperature: opts.temperature, else the sampling temperature the batch was built with
-- (rl.batch's opts.temperature); with neither, an error (RLSC.md's default is the sampling
-- temperature, which only the caller knows: never a silent 1.0). level: as error's (0 by default).
local function loss_temperature(o, batch, who, level)
  local T = o.temperature or batch.temperature
  if T == nil then
    error(("%s: no loss temperature: pass opts.temperature, or build the batch with rl.batch(m, prompts, "
           .. "samples, {temperature = T}) (RLSC.md: the sampling temperature)"):format(who or "rl"),
          level or 0)
  end
  return T
end

-- opts with its temperature set (a copy when it lacked one): what the methods are given (level: as
-- error's)
local function with_temperature(who, opts, batch, level)
  if opts.temperature ~= nil then return opts end
  local o = {temperature = loss_temperature(opts, batch, who, level + 1)}
  for k, v in pairs(opts) do o[k] = v end
  return o
end

-- id, when it is a token id of a vocabulary of V rows (V nil: unknown), else nil
local function token_id(id, V)
  local i = type(id) == "number" and math.tointeger(id)
  if not i or i < 0 or (V and i >= V) then return nil end
  return i
end

-- a list of token ids (what) as a checked copy, or an error naming it
local function checked_ids(ids, V, what)
  local out = {}
  for t = 1, #ids do
    local i = token_id(ids[t], V)
    if not i then
      error(("rl.batch: %s, token %d: %s is not a token id of this model (integers 0..%s)")
            :format(what, t, show(ids[t]), V and tostring(V - 1) or "vocab_size - 1"), 3)
    end
    out[t] = i
  end
  return out
end

-- Batches ---------------------------------------------------------------------------------------

--- Build a batch. m: the model (confit.model) the losses score with; prompts: a non-empty list,
--- one prompt per question, each a list of token ids or a string (encoded with m's tokenizer);
--- samples: m:generate's flat list (opts.n per question, question by question; each sample a
--- table with tokens, a non-empty list of token ids, and optionally text). opts.n (an integer
--- >= 1, default #samples / #prompts), opts.extract(text) -> answer or nil (for majority votes,
--- grpo_ttrl's reward, and logging), opts.answers (labels per question, used only for
--- train_acc), opts.grade(text, answer) -> bool, opts.answer_key(a) -> grouping key for votes,
--- opts.answer_equal(a, b) -> bool (votes merge keys whose answers it calls equal: "0.5", "1/2"),
--- opts.temperature (> 0: the samples' sampling temperature, kept as batch.temperature: the loss
--- temperature of rl.loss, rl.backward, rl.snapshot_policy and rl.fill_metrics when they are given
--- none; without it they must be given one). Every mistake is refused here with one line
--- "rl.batch: ..." naming the prompt or sample.
function rl.batch(m, prompts, samples, opts)
  if opts ~= nil and type(opts) ~= "table" then error("rl.batch: opts must be a table, got " .. show(opts), 2) end
  opts = opts or {}
  if type(m) ~= "table" or type(m.hidden) ~= "function" or type(m.logprobs) ~= "function"
     or type(m.prompt_ids) ~= "function" then
    error("rl.batch: m must be a model (confit.model.load(dir) or model.new(config)), got " .. show(m), 2)
  end
  if type(prompts) ~= "table" or #prompts == 0 then
    error("rl.batch: prompts must be a non-empty list (one per question: token ids or a string), got "
          .. (type(prompts) == "table" and "an empty list" or show(prompts)), 2)
  end
  if type(samples) ~= "table" or #samples == 0 then
    error("rl.batch: samples must be a non-empty list (m:generate's, n per prompt), got "
          .. (type(samples) == "table" and "an empty list" or show(samples)), 2)
  end
  if opts.n ~= nil and (math.type(opts.n) ~= "integer" or opts.n < 1) then
    error("rl.batch: opts.n must be an integer >= 1 (samples per prompt), got " .. show(opts.n), 2)
  end
  for _, k in ipairs({"extract", "grade", "answer_key", "answer_equal"}) do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then
      error(("rl.batch: opts.%s must be a function, got %s"):format(k, show(opts[k])), 2)
    end
  end
  local want = opts.temperature ~= nil and num_problem(opts.temperature, {above = 0})
  if want then
    error(("rl.batch: opts.temperature must be %s (the sampling temperature), got %s"):format(want, show(opts.temperature)), 2)
  end
  if opts.answers ~= nil and type(opts.answers) ~= "table" then
    error("rl.batch: opts.answers must be a list (one label per prompt), got " .. show(opts.answers), 2)
  end
  local n = opts.n or (#samples // #prompts)
  if n < 1 or n * #prompts ~= #samples then
    -- (without opts.n, n is #samples // #prompts: the message said "defaults to 1" until the
    -- twenty-ninth session, also where that n was 3)
    error(("rl.batch: %d samples for %d prompts is not n = %d per prompt%s"):format(#samples, #prompts, n,
          opts.n == nil and " (opts.n, the samples per prompt, not given: give m:generate's n)" or ""), 2)
  end
  local V = type(m.config) == "table" and math.tointeger(m.config.vocab_size) or nil
  local ids_of = {}
  for q, p in ipairs(m:prompt_ids(prompts, "rl.batch")) do
    if #p == 0 then
      error(("rl.batch: prompt %d is empty: a completion's first token is scored from the prompt's last one, so every prompt needs a token"):format(q), 2)
    end
    ids_of[q] = checked_ids(p, V, ("prompt %d"):format(q))
  end
  prompts = ids_of
  local b = {model = m, n = n, samples = samples, prompts = prompts, groups = {},
             prompt_lens = {}, comp_lens = {}, question_of = {}, texts = {},
             extracted = {n = #samples}, answers = opts.answers, answer_key = opts.answer_key,
             answer_equal = opts.answer_equal,
             extract = opts.extract, temperature = opts.temperature}
  local seqs = {}
  for i, s in ipairs(samples) do
    local q = (i - 1) // n + 1
    local p = prompts[q]
    if type(s) ~= "table" or type(s.tokens) ~= "table" then
      error(("rl.batch: sample %d must be a table with tokens (a list of token ids), got %s"):format(i,
            type(s) == "table" and ("tokens = " .. show(s.tokens)) or show(s)), 2)
    end
    if #s.tokens == 0 then
      error(("rl.batch: sample %d has no completion tokens (max_new_tokens = 0?)"):format(i), 2)
    end
    if s.text ~= nil and type(s.text) ~= "string" then
      error(("rl.batch: sample %d: text must be a string, got %s"):format(i, show(s.text)), 2)
    end
    local toks = checked_ids(s.tokens, V, ("sample %d"):format(i))
    local seq = table.move(p, 1, #p, 1, {})
    table.move(toks, 1, #toks, #seq + 1, seq)
    seqs[i] = seq
    b.prompt_lens[i] = #p
    b.comp_lens[i] = #toks
    b.question_of[i] = q
    b.texts[i] = s.text or ""
    if opts.extract then b.extracted[i] = opts.extract(b.texts[i]) end
  end
  for q = 1, #prompts do b.groups[q] = {(q - 1) * n + 1, q * n} end
  -- per question: its completion tokens and its sample count (micro-batches keep the batch's)
  b.qtok, b.gsize = {}, {}
  for i = 1, #samples do
    local q = b.question_of[i]
    b.qtok[q] = (b.qtok[q] or 0) + b.comp_lens[i]
    b.gsize[q] = n
  end
  b.seqs = seqs
  b.ids, b.lens = model.pad(seqs, 0)
  if opts.grade and opts.answers then
    b.correct = {}
    for i = 1, #samples do b.correct[i] = opts.grade(b.texts[i], opts.answers[b.question_of[i]]) and true or false end
  end
  return b
end

-- Scoring ---------------------------------------------------------------------------------------

-- [N] differentiable sums of completion log-probs at temperature T, and their values (f64).
local function seq_logprobs(batch, T)
  local lp = batch.model:logprobs(batch.ids, batch.prompt_lens, {temperature = T, lens = batch.lens})
  if lp:dtype() ~= "f32" then lp = lp:to_dtype("f32") end   -- f64 models (bf16 ones give f32)
  return lp, lp:detach():totable()
end

-- A tensor of Lua numbers with the device and dtype of ref (weights beside log-probs).
local function like(values, ref)
  local t = confit.tensor(values, {dtype = ref:dtype()})
  if ref:device() ~= "cpu" then t = t:to(ref:device()) end
  return t
end
-- the loss temperature T of a public piece (who), checked; level: as error's
local function check_T(who, T, level)
  local want = num_problem(T, {above = 0})
  if want then error(("%s: T (the loss temperature) must be %s, got %s"):format(who, want, show(T)), level) end
end

--- rl.like(values, ref): like, its arguments checked.
function rl.like(values, ref)
  if type(values) ~= "table" then error("rl.like: values must be a list of numbers, got " .. show(values), 2) end
  if not confit.is_tensor(ref) then
    error("rl.like: ref must be a tensor (the result takes its dtype and device), got " .. show(ref), 2)
  end
  return like(values, ref)
end

--- rl.seq_logprobs(batch, T): seq_logprobs, its arguments checked.
function rl.seq_logprobs(batch, T)
  check_batch("rl.seq_logprobs", batch, 3)
  check_T("rl.seq_logprobs", T, 3)
  return seq_logprobs(batch, T)
end

local function head_weight(m)
  local ps = m:parameters()
  return ps["lm_head.weight"] or ps["model.embed_tokens.weight"]
end

-- Token view: the hidden rows that predict the completion tokens of every sample, stacked into
-- H [Ntok, D] (the logit at position j predicts token j + 1), the targets [Ntok] and each
-- sample's offset into them.
local function token_rows(m, batch)
  local h = m:hidden(batch.ids)              -- [N, Tmax, D]
  local sh = h:shape()
  local where, targets, offs = {}, {}, {}
  local off = 0
  for i, s in ipairs(batch.samples) do
    local P, L = batch.prompt_lens[i], batch.comp_lens[i]
    -- completion tokens sit at 0-based P .. P+L-1; they are predicted by positions P-1 .. P+L-2,
    -- rows (i-1)*Tmax + P-1 .. of the flattened [N*Tmax, D] hidden states
    offs[i] = off
    for t = 1, L do
      targets[off + t] = s.tokens[t]
      where[off + t] = (i - 1) * sh[2] + P + t - 2
    end
    off = off + L
  end
  -- one gather (its backward adds every row into one zeroed [N*Tmax, D] gradient)
  local ix = confit.tensor(where, {dtype = "i64"})
  local tg = confit.tensor(targets, {dtype = "i64"})
  if h:device() ~= "cpu" then ix, tg = ix:to(h:device()), tg:to(h:device()) end
  local H = h:reshape({sh[1] * sh[2], sh[3]}):embedding(ix)
  return H, tg, offs, off
end

--- Per-token quantities of the batch under the current model (m, default batch.model): logp_tok
--- [Ntok] (differentiable, at temperature T), seq [N] (their per-sample sums), and the hidden rows
--- H [Ntok, D] and head weight W they come from (the [Ntok, V] logits are never held).
function rl.token_view(batch, T, m)
  check_batch("rl.token_view", batch, 3)
  check_T("rl.token_view", T, 3)
  if m ~= nil and (type(m) ~= "table" or type(m.hidden) ~= "function") then
    error("rl.token_view: m must be a model (default batch.model), got " .. show(m), 2)
  end
  m = m or batch.model
  local H, targets, offs, ntok = token_rows(m, batch)
  local W = head_weight(m)
  local v = {offs = offs, ntok = ntok, H = H, W = W}
  v.logp_tok = H:head_logprob(W, targets, T)
  v.seq = rl.segment_sums(v.logp_tok, batch)
  return v
end

--- The mean token entropy (nats, a Lua number) of softmax(z / T) over the completion tokens of
--- a token view (RUNDIR.md's per-step `entropy`), without a graph (head_entropy: no logits held).
function rl.view_entropy(v, T)
  if type(v) ~= "table" or math.type(v.ntok) ~= "integer" or (v.ntok > 0 and not (confit.is_tensor(v.H)
     and confit.is_tensor(v.W))) then
    error("rl.view_entropy: v must be a token view of rl.token_view, got " .. show(v), 2)
  end
  check_T("rl.view_entropy", T, 3)
  if v.ntok == 0 then return 0 end
  return confit.no_grad(function() return v.H:detach():head_entropy(v.W, T):sum():item() end) / v.ntok
end

--- [N] per-sample sums of a per-token tensor x [Ntok] (differentiable).
function rl.segment_sums(x, batch)
  check_batch("rl.segment_sums", batch, 3)
  local ntok = 0
  for _, L in ipairs(batch.comp_lens) do ntok = ntok + L end
  if not confit.is_tensor(x) or x:numel() ~= ntok or #x:shape() ~= 1 then
    error(("rl.segment_sums: x must be a per-token tensor [%d] (the batch's completion tokens), got %s"):format(ntok,
          confit.is_tensor(x) and ("a tensor of shape [" .. table.concat(x:shape(), ", ") .. "]") or show(x)), 2)
  end
  local parts, off = {}, 0
  for i = 1, #batch.samples do
    local L = batch.comp_lens[i]
    parts[i] = x:narrow(1, off + 1, L):sum()
    off = off + L
  end
  return confit.stack(parts, 1)
end

-- per-sample means of the values of a per-token tensor (Lua numbers)
local function segment_means(vals, batch)
  local out, off = {}, 0
  for i = 1, #batch.samples do
    local L, s = batch.comp_lens[i], 0
    for t = off + 1, off + L do s = s + vals[t] end
    out[i] = s / L
    off = off + L
  end
  return out
end

-- Metrics every method reports ------------------------------------------------------------------

-- the extracted answers of group g (nil holes kept: .n) and the vote's options: majority votes
-- and answer_diversity count answers alike (metrics.vote_groups)
local function group_answers(batch, g)
  local answers = {n = g[2] - g[1] + 1}
  for i = g[1], g[2] do answers[i - g[1] + 1] = batch.extracted[i] end
  return answers
end
-- The vote of group g (metrics.vote_groups), once per batch and group: grpo_ttrl's reward and
-- answer_diversity both need it. A weak table, so a batch's votes go with it; a vote is reused
-- only while the group's answers and the batch's key and equal functions are the same ones.
local VOTES = setmetatable({}, {__mode = "k"})
local function group_votes(batch, g)
  local answers = group_answers(batch, g)
  local per = VOTES[batch]
  if not per then per = {}; VOTES[batch] = per end
  local c = per[g]
  if c and c.key == batch.answer_key and c.equal == batch.answer_equal and c.answers.n == answers.n then
    local same = true
    for i = 1, answers.n do if c.answers[i] ~= answers[i] then same = false; break end end
    if same then return c.votes end
  end
  c = {key = batch.answer_key, equal = batch.answer_equal, answers = answers,
       votes = require("confit.metrics").vote_groups(answers, {key = batch.answer_key, equal = batch.answer_equal})}
  per[g] = c
  return c.votes
end

local function base_metrics(batch, lpv)
  local N = #batch.samples
  local s_lp, s_conf, s_len, n_w, n_box = 0, 0, 0, 0, 0
  for i = 1, N do
    local p = math.exp(lpv[i])            -- f64
    s_lp = s_lp + lpv[i]
    s_conf = s_conf + p
    if p > rl.WEIGHT_MIN then n_w = n_w + 1 end
    s_len = s_len + batch.comp_lens[i]
    if batch.texts[i]:find("\\boxed{", 1, true) then n_box = n_box + 1 end
  end
  local met = {n_samples = N, mean_logp = s_lp / N, mean_confidence = s_conf / N,
               weight_share = n_w / N, mean_length = s_len / N, box_rate = n_box / N}
  local distinct = 0
  for _, g in ipairs(batch.groups) do
    distinct = distinct + #group_votes(batch, g)
  end
  met.answer_diversity = distinct / N
  if batch.correct then
    local c = 0
    for i = 1, N do if batch.correct[i] then c = c + 1 end end
    met.train_acc = c / N
  end
  return met
end
function rl.base_metrics(batch, lpv)
  if type(batch) ~= "table" or type(batch.samples) ~= "table" or type(batch.comp_lens) ~= "table" then
    error("rl.base_metrics: batch must be a batch of rl.batch, got " .. show(batch), 2)
  end
  if type(lpv) ~= "table" or #lpv ~= #batch.samples then
    error(("rl.base_metrics: lpv must be a list of %d log-probs (one per sample), got %s"):format(#batch.samples,
          type(lpv) == "table" and #lpv .. " entries" or show(lpv)), 2)
  end
  return base_metrics(batch, lpv)
end

local function mean_of(xs)
  local s = 0
  for i = 1, #xs do s = s + xs[i] end
  return #xs > 0 and s / #xs or 0
end

local function max_of(xs)
  local m = #xs > 0 and xs[1] or 0
  for i = 2, #xs do if xs[i] > m then m = xs[i] end end
  return m
end

-- Weighted log-likelihood methods: loss = -sum_i w_i log p_i ------------------------------------

-- rl.weights[name] = {fn = weight_fn, per_sample = bool, name = name} for every weighted method
-- (rl.register_weighted below): weight_fn(lpv, batch, opts) -> list of f64 weights; per_sample:
-- a sample's weight depends on its own log-prob and length only (micro-batches may then split a
-- question's samples and compute the weights chunk by chunk).
rl.weights = {}

-- w, when it is a list of n numbers, each finite where its sample's log-prob lpv[i] is (a
-- diverged model's NaN reaches the loss, which rl.backward's caller reports as such); else an
-- error naming the method (and the sample)
local function checked_weights(w, n, name, lpv)
  if confit.is_tensor(w) then
    error(("rl: method %s: its weight function gave a tensor for %d samples; it must return a Lua list of "
           .. "%d numbers (t:totable())"):format(tostring(name), n, n), 0)
  end
  if type(w) ~= "table" or #w ~= n then
    error(("rl: method %s: its weight function gave %s for %d samples (a Lua list of numbers, one per sample)")
          :format(tostring(name), type(w) == "table" and (#w .. " weights") or type(w), n), 0)
  end
  for i = 1, n do
    if type(w[i]) ~= "number" or (not isfinite(w[i]) and isfinite(lpv[i])) then
      error(("rl: method %s: its weight function gave sample %d the weight %s (weights must be finite numbers)")
            :format(tostring(name), i, show(w[i])), 0)
    end
  end
  return w
end

-- The loss and metrics of a weighted method on batch, and the log-prob values, the weights and
-- the token count; w_given: weights decided outside (rl.backward's micro-batches).
local function weighted_loss(batch, o, weight_fn, w_given, name)
  local T = loss_temperature(o, batch)
  local v = rl.token_view(batch, T)
  local lp = v.seq
  local lpv = lp:detach():totable()
  local w = w_given or checked_weights(weight_fn(lpv, batch, o), #lpv, name, lpv)
  local loss = -(like(w, lp) * lp):sum()
  local met = base_metrics(batch, lpv)
  met.mean_weight, met.max_weight = mean_of(w), max_of(w)
  met.entropy = rl.view_entropy(v, T)
  return loss, met, lpv, w, v.ntok
end

-- the methods that come with confit (rl.register_weighted refuses their names and the aliases)
local BUILTIN = {}

--- Register a weighted-likelihood method: loss = -sum_i w_i log p(y_i) with the weights
--- w = weight_fn(lpv, batch, opts) (lpv: the batch's sequence log-probs at the loss temperature,
--- f64 Lua numbers from the detached values, the current model's at every call; a list of #lpv
--- numbers back), the standard metrics and mean_weight. Sets rl.methods[name] and
--- rl.weights[name] (so rl.backward splits it exactly) and returns the method. spec.per_sample =
--- true: a sample's weight depends on its own log-prob and length only, so micro-batches compute
--- the weights chunk by chunk; otherwise (the default) they come first from a forward without a
--- graph over the whole batch. A name of confit's own methods or aliases is refused; one's own
--- may be registered again.
function rl.register_weighted(name, weight_fn, spec)
  if type(name) ~= "string" or name == "" then
    error("rl.register_weighted: the name must be a non-empty string, got " .. tostring(name), 2)
  end
  if BUILTIN[name] or ALIASES[name] then
    error(("rl.register_weighted: '%s' is a built-in method or alias; choose another name"):format(name), 2)
  end
  if type(weight_fn) ~= "function" then
    error(("rl.register_weighted: weight_fn must be a function (lpv, batch, opts) -> weights, got %s")
          :format(type(weight_fn)), 2)
  end
  local fn = function(batch, o)
    local loss, met = weighted_loss(batch, o, weight_fn, nil, name)
    return loss, met
  end
  rl.methods[name] = fn
  rl.weights[name] = {fn = weight_fn, per_sample = (spec or {}).per_sample == true, name = name}
  rl.grpo_reward[name] = nil
  return fn
end

local function alpha_of(o) return o.alpha == nil and 0.1 or o.alpha end

rl.methods = {}
rl.grpo_reward = {}

rl.register_weighted("l1", function(lpv)
  local w = {}
  for i, v in ipairs(lpv) do w[i] = math.exp(v) end
  return w
end, {per_sample = true})

rl.register_weighted("l2", function(lpv, _, o)
  local a, w = alpha_of(o), {}
  for i, v in ipairs(lpv) do w[i] = math.exp(v) + a end
  return w
end, {per_sample = true})

rl.register_weighted("ours_lennorm", function(lpv, batch, o)
  local a, w = alpha_of(o), {}
  for i, v in ipairs(lpv) do w[i] = math.exp(v / batch.comp_lens[i]) + a end
  return w
end, {per_sample = true})

rl.register_weighted("ours_softmax", function(lpv, batch, o)
  local a, w = alpha_of(o), {}
  for _, g in ipairs(batch.groups) do
    local mx = -math.huge
    for i = g[1], g[2] do if lpv[i] > mx then mx = lpv[i] end end
    local z = 0
    for i = g[1], g[2] do z = z + math.exp(lpv[i] - mx) end
    for i = g[1], g[2] do w[i] = math.exp(lpv[i] - mx) / z + a end
  end
  return w
end)

rl.register_weighted("ours_clip", function(lpv, _, o)
  local a, cap, w = alpha_of(o), o.clip_max or 0.5, {}
  for i, v in ipairs(lpv) do w[i] = math.min(math.exp(v), cap) + a end
  return w
end, {per_sample = true})

rl.register_weighted("self_sft", function(lpv)
  local w = {}
  for i = 1, #lpv do w[i] = 1.0 end
  return w
end, {per_sample = true})

-- EM-FT -----------------------------------------------------------------------------------------

-- Per question: the sum of its samples' token entropies at T over its token count (batch.qtok,
-- so a micro-batch holding part of a question weighs its samples the same); summed over
-- questions. The entropies come from the hidden rows (head_entropy: the [Ntok, V] logits are
-- never held, in the forward or the backward). Also returns the log-prob values.
rl.methods.em_ft = function(batch, o)
  local T = loss_temperature(o, batch)
  local v = rl.token_view(batch, T)
  local ent = v.H:head_entropy(v.W, T)                 -- [Ntok]
  local ent_seq = rl.segment_sums(ent, batch)          -- [N]
  local coef = {}
  for i = 1, #batch.samples do coef[i] = 1 / batch.qtok[batch.question_of[i]] end
  local loss = (like(coef, ent_seq) * ent_seq):sum()
  local lpv = v.seq:detach():totable()
  local met = base_metrics(batch, lpv)
  met.entropy = mean_of(ent:detach():totable())
  return loss, met, lpv
end

-- GRPO ------------------------------------------------------------------------------------------

local function std_of(xs, first, last)
  local n = last - first + 1
  if n < 2 then return 0 end
  local m = 0
  for i = first, last do m = m + xs[i] end
  m = m / n
  local s = 0
  for i = first, last do s = s + (xs[i] - m) ^ 2 end
  return math.sqrt(s / (n - 1)), m
end

--- Group-normalised advantages (f64 list) of rewards r within each question.
function rl.advantages(r, batch)
  if type(batch) ~= "table" or type(batch.groups) ~= "table" or type(batch.samples) ~= "table" then
    error("rl.advantages: batch must be a batch made by rl.batch, got " .. show(batch), 2)
  end
  if type(r) ~= "table" or #r ~= #batch.samples then
    error(("rl.advantages: r must hold one reward per sample (%d), got %s"):format(#batch.samples,
          type(r) == "table" and (#r .. " rewards") or show(r)), 2)
  end
  for i = 1, #r do
    if type(r[i]) ~= "number" or not isfinite(r[i]) then
      error(("rl.advantages: reward %d is %s, not a finite number"):format(i, show(r[i])), 2)
    end
  end
  local adv = {}
  for _, g in ipairs(batch.groups) do
    local sd = std_of(r, g[1], g[2])
    local m = 0
    for i = g[1], g[2] do m = m + r[i] end
    m = m / (g[2] - g[1] + 1)
    for i = g[1], g[2] do adv[i] = (r[i] - m) / (sd + 1e-6) end
  end
  return adv
end

-- per-sample means of f(z) [rows] over the logits z of a token view's rows, computed without a
-- graph 1024 tokens at a time (the [Ntok, V] logits are never held)
local function chunked_token_means(batch, v, f)
  local vals = {}
  confit.no_grad(function()
    local H, Wt = v.H:detach(), v.W:transpose(1, 2)
    for off = 1, v.ntok, 1024 do
      local z = H:narrow(1, off, math.min(1024, v.ntok - off + 1)):matmul(Wt)
      if z:dtype() == "bf16" then z = z:to_dtype("f32") end
      for j, x in ipairs(f(z):totable()) do vals[off + j - 1] = x end
    end
  end)
  return segment_means(vals, batch)
end

-- Rewards: fn(batch, view, opts) -> list of f64 rewards, extra metrics. The view is computed
-- without a graph when the reward is all it is for; majority needs none (rl.reward_needs_view).
rl.rewards = {}
rl.reward_needs_view = {majority = false, self_certainty = true, neg_entropy = true, probability = true}

function rl.rewards.majority(batch)
  local r = {}
  for _, g in ipairs(batch.groups) do
    for i = g[1], g[2] do r[i] = 0.0 end
    local best = nil               -- metrics.majority's winner: the largest group, ties to the first
    for _, v in ipairs(group_votes(batch, g)) do
      if best == nil or v.count > best.count then best = v end
    end
    for _, j in ipairs(best and best.members or {}) do r[g[1] + j - 1] = 1.0 end
  end
  return r
end

function rl.rewards.self_certainty(batch, v)
  return chunked_token_means(batch, v, function(z) return z:logsumexp(-1) - z:mean(-1) end)
end

function rl.rewards.neg_entropy(batch, v, o)
  local T = loss_temperature(o, batch)
  local ent = confit.no_grad(function() return v.H:detach():head_entropy(v.W, T) end):totable()
  local m = segment_means(ent, batch)
  for i = 1, #m do m[i] = -m[i] end
  return m, {entropy = mean_of(ent)}
end

function rl.rewards.probability(batch, v)
  local lpv = v.seq:detach():totable()
  local r = {}
  for i = 1, #lpv do r[i] = math.exp(lpv[i]) end
  return r
end

-- The clipped objective (and the KL term) of batch's samples over a token view given their
-- advantages adv: per question -(1/G) sum_i (1/L_i) sum_t min(rho A, clip(rho) A), G its sample
-- count (batch.gsize: a micro-batch may hold part of a question). Returns the loss, the KL and
-- the number of tokens the clip binds on (rho > 1 + eps with A > 0, or rho < 1 - eps with A < 0:
-- the min takes the clipped term, whose gradient is 0).
local function grpo_objective(batch, o, v, adv)
  local T, eps = loss_temperature(o, batch), o.clip_eps or 0.2
  local a_tok, c_tok = {}, {}
  for i = 1, #batch.samples do
    local L, off, G = batch.comp_lens[i], v.offs[i], batch.gsize[batch.question_of[i]]
    for t = 1, L do a_tok[off + t] = adv[i]; c_tok[off + t] = 1 / (L * G) end
  end
  local A, C = like(a_tok, v.logp_tok), like(c_tok, v.logp_tok)
  -- p_old: the samples' old_logprobs where given (see the header), else the current values (rho = 1)
  local old = v.logp_tok:detach()
  local given = false
  for _, s in ipairs(batch.samples) do if s.old_logprobs then given = true; break end end
  if given then
    local vals = old:totable()
    for i, s in ipairs(batch.samples) do
      local ol, L = s.old_logprobs, batch.comp_lens[i]
      if ol then
        if #ol ~= L then
          error(("rl: sample %d has %d old_logprobs for %d tokens"):format(i, #ol, L), 3)
        end
        for t = 1, L do vals[v.offs[i] + t] = ol[t] end
      end
    end
    old = like(vals, v.logp_tok)
  end
  local ratio = (v.logp_tok - old):exp()
  local obj = confit.minimum(ratio * A, ratio:clamp(1 - eps, 1 + eps) * A)
  local loss = -(obj * C):sum()
  local nclip = 0
  if given then
    for k, r in ipairs(ratio:detach():totable()) do
      local a = a_tok[k]
      if (r > 1 + eps and a > 0) or (r < 1 - eps and a < 0) then nclip = nclip + 1 end
    end
  end
  if (o.kl_coef or 0) <= 0 then return loss, nil, nclip end
  if not batch.ref_model then error("rl: kl_coef > 0 needs batch.ref_model (the start model)", 3) end
  local ref = confit.no_grad(function() return rl.token_view(batch, T, batch.ref_model).logp_tok end)
  local d = ref - v.logp_tok
  local klv = ((d:exp() - d - 1) * C):sum()
  return loss + klv * o.kl_coef, klv:item(), nclip
end

-- GRPO with a reward of rl.rewards; rl.grpo_reward[name] names it for rl.backward
local function grpo(reward_name)
  return function(batch, o)
    local T = loss_temperature(o, batch)
    local v = rl.token_view(batch, T)
    -- the rewards of the samples' policy when rl.snapshot_policy recorded them
    local r, extra = batch.rewards, nil
    if not r then r, extra = rl.rewards[reward_name](batch, v, o) end
    local loss, kl, nclip = grpo_objective(batch, o, v, rl.advantages(r, batch))
    local met = base_metrics(batch, v.seq:detach():totable())
    met.mean_reward = mean_of(r)
    met.clip_frac = v.ntok > 0 and nclip / v.ntok or 0
    if extra then for k, x in pairs(extra) do met[k] = x end end
    if met.entropy == nil then met.entropy = rl.view_entropy(v, T) end
    met.kl = kl
    return loss, met
  end, reward_name
end

rl.methods.grpo_ttrl, rl.grpo_reward.grpo_ttrl = grpo("majority")
rl.methods.grpo_intuitor, rl.grpo_reward.grpo_intuitor = grpo("self_certainty")
rl.methods.grpo_rent, rl.grpo_reward.grpo_rent = grpo("neg_entropy")
rl.methods.grpo_prob, rl.grpo_reward.grpo_prob = grpo("probability")

-- temp_only; the built-in set --------------------------------------------------------------------

rl.methods.temp_only = function()
  error("rl: temp_only does not train; evaluate at a colder temperature instead", 2)
end

for k in pairs(rl.methods) do BUILTIN[k] = true end

--- Whether name (aliases allowed) is one of confit's own methods, not one registered by a user.
function rl.builtin(name) return BUILTIN[ALIASES[name] or name] == true end

--- Whether method name (aliases allowed) reads the loss option key (temperature, alpha, clip_eps,
--- kl_coef, clip_max, micro_batch, or one of its own): a built-in method reads its own list only
--- (rl.loss refuses the others); a method registered with rl.register_weighted has no KL term
--- (no kl_coef); any other method of one's own may read any option.
function rl.reads(name, key)
  local canon = ALIASES[name] or name
  local list = BUILTIN[canon] and METHOD_OPTS[canon]
  if list then
    for _, k in ipairs(list) do if k == key then return true end end
    return false
  end
  if key == "kl_coef" and rl.weights[canon] then return false end
  return true
end

-- rl.per_question[NAME] = true: a method of one's own declares its loss a sum over the batch's
-- questions of terms that each depend on that question's samples only (a sum over samples is one;
-- -lp:mean() over the batch, or a count of the batch's tokens in a denominator, is not). Only
-- then does rl.backward split it into micro-batches (between questions, rl.chunks).
rl.per_question = {}

--- nil, or why micro-batches of K sequences (0: one pass) would change the loss and gradient of
--- method name on a batch of N samples of Q questions: a method of one's own that is neither
--- weighted (rl.register_weighted) nor declared in rl.per_question, when the chunks would split
--- the questions (K < N and Q > 1). rl.backward and train.run refuse such a call before any forward.
function rl.micro_batch_problem(name, K, N, Q)
  local canon = ALIASES[name] or name
  if K == 0 or K >= N or Q <= 1 then return nil end
  if rl.weights[canon] or rl.grpo_reward[canon] or canon == "em_ft" or rl.per_question[canon] then return nil end
  return ("method %s is not declared a sum over questions, so micro_batch = %d (%d of the %d sequences of %d "
          .. "questions at a time) could change its loss and gradient: set rl.per_question[%q] = true when its "
          .. "loss is a sum of per-question terms, each from its own question's samples, or take the step in "
          .. "one pass (micro_batch = 0; rlsc: --micro-batch 0)"):format(canon, K, K, N, Q, canon)
end

-- The loss by name -------------------------------------------------------------------------------

-- What a method needs of its batch and options, checked before any forward: GRPO compares a
-- question's samples (n >= 2), TTRL votes on extracted answers, the KL term needs the reference.
-- level: as error's.
local function check_method_batch(who, canon, batch, opts, level)
  if not rl.trains(canon) then
    error(("%s: %s does not train; evaluate at a colder temperature instead"):format(who, canon), level)
  end
  -- a KL anchor asked of a method without a KL term (a weighted one, of one's own too) was
  -- dropped without a word
  if (opts.kl_coef or 0) > 0 and not rl.reads(canon, "kl_coef") then
    error(("%s: kl_coef = %g, but %s has no KL term (the GRPO methods have one)"):format(who, opts.kl_coef, canon), level)
  end
  if not rl.grpo_reward[canon] then return end
  -- the samples' old log-probs (the GRPO ratio's p_old), where given: one finite number per
  -- completion token, named by the batch's sample index (before any forward; a micro-batch
  -- named its own index)
  for i, smp in ipairs(batch.samples) do
    local ol = type(smp) == "table" and smp.old_logprobs
    if ol ~= nil and ol ~= false then
      local L = batch.comp_lens[i]
      if type(ol) ~= "table" or #ol ~= L then
        error(("%s: sample %d has %s old_logprobs for %d tokens"):format(who, i,
              type(ol) == "table" and tostring(#ol) or show(ol), L), level)
      end
      for t = 1, L do
        if type(ol[t]) ~= "number" or not isfinite(ol[t]) then
          error(("%s: sample %d's old_logprobs[%d] is %s, not a finite number"):format(who, i, t, show(ol[t])), level)
        end
      end
    end
  end
  if (batch.n or 0) < 2 then
    error(("%s: %s needs n >= 2 samples per question (GRPO's advantages compare a question's samples: "
           .. "with n = %s every advantage is 0 and nothing trains)"):format(who, canon, tostring(batch.n)), level)
  end
  if canon == "grpo_ttrl" and batch.rewards == nil and batch.extract == nil then
    error(("%s: grpo_ttrl rewards agreement with the majority of the extracted answers: build the batch "
           .. "with rl.batch(m, prompts, samples, {extract = fn}) (without it every reward is 0)"):format(who), level)
  end
  if (opts.kl_coef or 0) > 0 and batch.ref_model == nil then
    error(("%s: kl_coef > 0 needs batch.ref_model (the start model)"):format(who), level)
  end
end

-- an error unless a method gave a scalar loss tensor and a metrics table (or nil); the message
-- names where the method is defined (the error's position is the caller of rl.loss / rl.backward,
-- train.lua under a recipe, not the method that returned the wrong thing)
local function check_result(canon, loss, met)
  local function fail(fmt, ...)
    local info = type(rl.methods[canon]) == "function" and debug.getinfo(rl.methods[canon], "S")
    local at = info and info.what == "Lua" and (" (defined at %s:%d)"):format(info.short_src, info.linedefined) or ""
    error(("rl: method %s%s " .. fmt):format(canon, at, ...), 4)
  end
  if not confit.is_tensor(loss) then
    fail("must return a loss tensor (and a metrics table), got %s", show(loss))
  end
  if loss:numel() ~= 1 then
    fail("must return a scalar loss tensor, got one of %d elements", loss:numel())
  end
  if met ~= nil and type(met) ~= "table" then
    fail("must return a metrics table (or nil) after its loss, got %s", show(met))
  end
end

-- The entry checks of rl.loss, rl.backward and rl.snapshot_policy (who), in this order, before any
-- forward: the method (rl.resolve), opts, the batch, what the method needs of them, the loss
-- temperature. Returns the method's canonical name and opts with the temperature set; when
-- stop(canon) is true, the name and nil as soon as the batch is checked. Called by who itself:
-- every error points at the line that called who (level 3 here, 4 in the checks).
local function enter(who, name, batch, opts, stop)
  local canon, err = rl.resolve(name)
  if not canon then error(who .. ": " .. err, 3) end
  opts = check_loss_opts(who, opts, 4)
  -- a built-in method reads its METHOD_OPTS only: a misspelt option (alpah = 5) ran with the
  -- default before the twenty-third session, and one it does not use (clip_max for l2) was
  -- dropped before the twenty-fourth; a method of one's own may read options of its own
  local list = rl.builtin(canon) and METHOD_OPTS[canon]
  if list then
    for k in pairs(opts) do
      -- (kl_coef = 0: no KL term, true of every method)
      if not rl.reads(canon, k) and not (k == "kl_coef" and opts.kl_coef == 0) then
        if k == "kl_coef" then
          error(("%s: kl_coef = %s, but %s has no KL term (the GRPO methods have one)"):format(who,
                show(opts.kl_coef), canon), 3)
        end
        local general = false   -- an option of another method (clip_max for l2), or a misspelling
        for _, e in ipairs(LOSS_OPTS) do general = general or e[1] == k end
        local what = general and ("method %s does not use the option %s"):format(canon, show(k))
                             or ("unknown option %s for method %s"):format(show(k), canon)
        error(("%s: %s (its options: %s)"):format(who, what, table.concat(list, ", ")), 3)
      end
    end
  end
  check_batch(who, batch, 4)
  if stop and stop(canon) then return canon, nil end
  check_method_batch(who, canon, batch, opts, 4)
  return canon, with_temperature(who, opts, batch, 4)
end

--- The loss of a method by name (aliases allowed): loss tensor, metrics table. Refused with one
--- line before any forward: an unknown method, opts out of range (temperature > 0; alpha,
--- clip_eps, kl_coef, clip_max >= 0; finite numbers), a batch not made by rl.batch or with
--- rewards of another length or a batch.temperature not a finite number > 0, a GRPO method with n < 2, grpo_ttrl on a batch without extract,
--- kl_coef > 0 without batch.ref_model, no temperature in opts or the batch (rl.batch's
--- opts.temperature; the method is given opts with it set); and after it a method that returns no
--- loss tensor.
function rl.loss(name, batch, opts)
  local canon
  canon, opts = enter("rl.loss", name, batch, opts)
  local loss, met = rl.methods[canon](batch, opts)
  check_result(canon, loss, met)
  return loss, met
end

-- Micro-batches ---------------------------------------------------------------------------------

--- The batch of the samples idx (indices into batch, in that order), padded anew; its groups are
--- the runs of idx that share a question.
function rl.sub_batch(batch, idx)
  check_batch("rl.sub_batch", batch, 3)
  if type(idx) ~= "table" or #idx == 0 then
    error("rl.sub_batch: idx must be a non-empty list of sample indices, got " .. show(idx), 2)
  end
  for j, i in ipairs(idx) do
    if math.type(i) ~= "integer" or i < 1 or i > #batch.samples then
      error(("rl.sub_batch: idx[%d] is %s, not a sample index in 1..%d"):format(j, show(i), #batch.samples), 2)
    end
  end
  local b = {model = batch.model, n = batch.n, prompts = batch.prompts, answers = batch.answers,
             answer_key = batch.answer_key, answer_equal = batch.answer_equal, extract = batch.extract, ref_model = batch.ref_model, qtok = batch.qtok,
             temperature = batch.temperature,
             gsize = batch.gsize, samples = {}, groups = {},
             prompt_lens = {}, comp_lens = {}, question_of = {}, texts = {}, seqs = {},
             extracted = {n = #idx}, correct = batch.correct and {} or nil}
  if batch.rewards then b.rewards = {} end
  for j, i in ipairs(idx) do
    if b.rewards then b.rewards[j] = batch.rewards[i] end
    b.samples[j], b.seqs[j], b.texts[j] = batch.samples[i], batch.seqs[i], batch.texts[i]
    b.prompt_lens[j], b.comp_lens[j] = batch.prompt_lens[i], batch.comp_lens[i]
    b.extracted[j] = batch.extracted[i]
    if b.correct then b.correct[j] = batch.correct[i] end
    local q = batch.question_of[i]
    if j > 1 and b.question_of[j - 1] == q then b.groups[#b.groups][2] = j
    else b.groups[#b.groups + 1] = {j, j} end
    b.question_of[j] = q
  end
  b.ids, b.lens = model.pad(b.seqs, 0)
  return b
end

--- The micro-batches of at most K sequences (lists of sample indices). per_sample: any split is
--- exact, so the samples go longest first and each chunk pads only to its own longest; otherwise
--- a chunk holds whole questions (consecutive ones while they fit; a larger question alone).
function rl.chunks(batch, K, per_sample)
  check_batch("rl.chunks", batch, 3)
  if math.type(K) ~= "integer" or K < 1 then
    error("rl.chunks: K must be an integer >= 1 (sequences per micro-batch), got " .. show(K), 2)
  end
  local out = {}
  if per_sample then
    local order, len = {}, batch.lens
    for i = 1, #batch.samples do order[i] = i end
    table.sort(order, function(a, b)
      if len[a] ~= len[b] then return len[a] > len[b] end
      return a < b
    end)
    for s = 1, #order, K do out[#out + 1] = table.move(order, s, math.min(s + K - 1, #order), 1, {}) end
    return out
  end
  local cur = {}
  for _, g in ipairs(batch.groups) do
    if #cur > 0 and #cur + (g[2] - g[1] + 1) > K then out[#out + 1] = cur; cur = {} end
    for i = g[1], g[2] do cur[#cur + 1] = i end
  end
  if #cur > 0 then out[#out + 1] = cur end
  return out
end

-- Metrics of micro-batches -> the batch's: kl is a sum over questions, entropy and clip_frac
-- means over tokens, n_samples a count, the rest means over samples.
local function combine_metrics(parts)
  local met, n, ntok = {}, 0, 0
  for _, p in ipairs(parts) do n, ntok = n + p.n, ntok + p.ntok end
  for _, p in ipairs(parts) do
    for k, v in pairs(p.met or {}) do
      if type(v) ~= "number" then goto continue end
      local share = p.n / n
      if k == "kl" or k == "n_samples" then share = 1
      elseif k == "entropy" or k == "clip_frac" then share = p.ntok / ntok end
      met[k] = (met[k] or 0) + v * share
      ::continue::
    end
  end
  return met
end

-- The rewards (f64 list) of every sample of batch for the GRPO reward of rl.rewards named reward,
-- from forwards without a graph over the micro-batches chunks (lists of sample indices).
local function batch_rewards(batch, reward, opts, chunks)
  if rl.reward_needs_view[reward] == false then return (rl.rewards[reward](batch, nil, opts)) end
  local T, r_all = loss_temperature(opts, batch), {}
  confit.no_grad(function()
    for _, idx in ipairs(chunks) do
      local sub = rl.sub_batch(batch, idx)
      local r = rl.rewards[reward](sub, rl.token_view(sub, T), opts)
      for j, i in ipairs(idx) do r_all[i] = r[j] end
    end
  end)
  return r_all
end

-- The micro-batches of at most K samples, as lists of sample indices (any split: for per-sample
-- quantities only); K = 0 or K >= N: one list of all N, and whole = true.
local function per_sample_chunks(batch, K)
  local N = #batch.samples
  if K == nil or K <= 0 or K >= N then
    local all = {}
    for i = 1, N do all[i] = i end
    return {all}, true
  end
  return rl.chunks(batch, K, true), false
end

-- fn(sub, idx) for the micro-batches of at most K samples (per_sample_chunks), without a graph;
-- K = 0 or K >= N: once, with the batch itself and idx = 1..N
local function each_chunk_no_grad(batch, K, fn)
  local chunks, whole = per_sample_chunks(batch, K)
  confit.no_grad(function()
    for _, idx in ipairs(chunks) do fn(whole and batch or rl.sub_batch(batch, idx), idx) end
  end)
end

-- the metrics every built-in method reports (rl.fill_metrics fills the missing ones)
rl.STANDARD_METRICS = {"n_samples", "mean_logp", "mean_confidence", "weight_share", "mean_length",
                       "box_rate", "answer_diversity", "entropy"}

--- Fill in the standard metrics (rl.STANDARD_METRICS, and train_acc when the batch is graded)
--- that met lacks, as a built-in method computes them, from a forward without a graph over the
--- batch at the loss temperature T (default batch.temperature; neither: refused), K sequences at
--- a time (0 = all) under model m (default batch.model); nothing is computed when none is
--- missing. The metrics met has are kept.
--- Returns met (a new table when met is nil). train.run calls it for a method of one's own.
function rl.fill_metrics(met, batch, T, K, m)
  if met ~= nil and type(met) ~= "table" then
    error("rl.fill_metrics: met must be a metrics table (or nil), got " .. show(met), 2)
  end
  local want = T ~= nil and num_problem(T, {above = 0})
  if want then error(("rl.fill_metrics: T (the loss temperature) must be %s, got %s"):format(want, show(T)), 2) end
  want = K ~= nil and num_problem(K, {int = true, min = 0})
  if want then error(("rl.fill_metrics: K (sequences per forward, 0 = all) must be %s, got %s"):format(want, show(K)), 2) end
  check_batch("rl.fill_metrics", batch, 3)
  met, T = met or {}, T or batch.temperature
  if T == nil then
    error("rl.fill_metrics: no loss temperature: pass T, or build the batch with rl.batch(m, prompts, samples, "
          .. "{temperature = T}) (RLSC.md: the sampling temperature)", 2)
  end
  local missing = batch.correct ~= nil and met.train_acc == nil
  for _, k in ipairs(rl.STANDARD_METRICS) do missing = missing or met[k] == nil end
  if not missing then return met end
  m = m or batch.model
  local lpv, esum, ecount = {}, 0, 0
  each_chunk_no_grad(batch, K, function(sub, idx)
    local v = rl.token_view(sub, T, m)
    for j, x in ipairs(v.seq:totable()) do lpv[idx[j]] = x end
    if v.ntok > 0 then esum = esum + v.H:head_entropy(v.W, T):sum():item() end
    ecount = ecount + v.ntok
  end)
  for k, x in pairs(base_metrics(batch, lpv)) do
    if met[k] == nil then met[k] = x end
  end
  if met.entropy == nil then met.entropy = ecount > 0 and esum / ecount or 0 end
  return met
end

-- the weighted methods and em_ft: their p_old is the current model's at every update (no snapshot)
local function reads_no_snapshot(canon) return rl.weights[canon] or canon == "em_ft" end

--- Before several updates on one batch (train.run's updates_per_batch, GRPO's mu): record the
--- current model as the policy that drew the samples. Every sample gets old_logprobs (its token
--- log-probs at the loss temperature as rl.loss takes it, without a graph, opts.micro_batch
--- sequences per forward), which GRPO's ratio rho = p / p_old is taken against; a GRPO method's
--- batch gets batch.rewards (the rewards under this policy, so the advantages stay those of the
--- samples at every update). The weighted methods and em_ft read neither: their p_old (weights)
--- is the current model's at every update (RLSC.md), so for them nothing is computed. Returns
--- the batch.
function rl.snapshot_policy(name, batch, opts)
  local canon
  canon, opts = enter("rl.snapshot_policy", name, batch, opts, reads_no_snapshot)
  if not opts then return batch end
  local T, K = opts.temperature, opts.micro_batch or 0
  each_chunk_no_grad(batch, K, function(sub, idx)
    local v = rl.token_view(sub, T)
    local vals = v.logp_tok:totable()
    for j, i in ipairs(idx) do
      batch.samples[i].old_logprobs = table.move(vals, v.offs[j] + 1, v.offs[j] + sub.comp_lens[j], 1, {})
    end
  end)
  local reward = rl.grpo_reward[canon]
  if reward then
    batch.rewards = nil
    batch.rewards = batch_rewards(batch, reward, opts, (per_sample_chunks(batch, K)))
  end
  return batch
end

-- loss:backward(), or (a loss no parameter reaches) an error saying why there is no gradient
local function backward_of(canon, loss)
  if not loss.requires_grad then
    error(("rl.backward: the loss of method %s depends on no parameter that requires a gradient: mark the "
           .. "model's parameters trainable first (train.trainable(m) does it for all), and call it outside "
           .. "confit.no_grad"):format(canon), 3)
  end
  loss:backward()
end

--- The method's loss and its gradient: runs the backward and returns the loss value (a number)
--- and the metrics. opts as rl.loss, plus opts.micro_batch = K > 0: the forward and backward run
--- over micro-batches of at most K sequences (rl.chunks) whose gradients add up. Every method's
--- loss is a sum over samples of terms fixed by the whole batch (weights, advantages, token
--- counts), so this is the one-pass gradient up to float rounding, with the activations of K
--- sequences held at a time; the samples go longest first (less padding). What needs a whole
--- question comes first, from a forward without a graph: the weights of ours_softmax, the rewards
--- of GRPO (but TTRL's majority votes need no forward). A method added to rl.methods splits between
--- questions only, and only when rl.per_question declares it a sum over questions: otherwise a
--- micro_batch that would split the questions is refused before any forward (rl.micro_batch_problem).
--- A loss that is not finite is returned before its backward, with nil metrics
--- (with micro-batches the chunks before it have added their gradients: the caller must not
--- step; train.run stops the run).
function rl.backward(name, batch, opts)
  local canon
  canon, opts = enter("rl.backward", name, batch, opts)
  local K = opts.micro_batch or 0
  local split = rl.micro_batch_problem(canon, K, #batch.samples, #batch.groups)
  if split then error("rl.backward: " .. split, 2) end
  if K == 0 or K >= #batch.samples then
    local loss, met = rl.methods[canon](batch, opts)
    check_result(canon, loss, met)
    local lv = loss:item()
    if not isfinite(lv) then return lv, nil end
    backward_of(canon, loss)
    return lv, met or {}
  end
  local T, total = opts.temperature, 0
  local wt, reward = rl.weights[canon], rl.grpo_reward[canon]
  local per_sample = wt ~= nil or reward ~= nil or canon == "em_ft"
  local chunks = rl.chunks(batch, K, per_sample)
  -- first: what needs whole questions, without a graph
  local w_all, adv
  if wt and not wt.per_sample then
    local lpv = {}
    confit.no_grad(function()
      for _, idx in ipairs(chunks) do
        local _, v = seq_logprobs(rl.sub_batch(batch, idx), T)
        for j, i in ipairs(idx) do lpv[i] = v[j] end
      end
    end)
    w_all = checked_weights(wt.fn(lpv, batch, opts), #lpv, canon, lpv)
  end
  local r_all
  if reward then
    r_all = batch.rewards or batch_rewards(batch, reward, opts, chunks)
    adv = rl.advantages(r_all, batch)
  end
  -- then the chunks' losses and backward passes
  local parts, lpv_all, w_used, kl = {}, {}, {}, nil
  for _, idx in ipairs(chunks) do
    local sub = rl.sub_batch(batch, idx)
    local loss, met, lpv, ntok
    if wt then
      local w_given
      if w_all then
        w_given = {}
        for j, i in ipairs(idx) do w_given[j] = w_all[i] end
      end
      local w
      loss, met, lpv, w, ntok = weighted_loss(sub, opts, wt.fn, w_given, canon)
      for j, i in ipairs(idx) do w_used[i] = w[j] end
    elseif reward then
      local v = rl.token_view(sub, T)
      local a = {}
      for j, i in ipairs(idx) do a[j] = adv[i] end
      local k, nclip
      loss, k, nclip = grpo_objective(sub, opts, v, a)
      if k then kl = (kl or 0) + k end
      lpv, ntok = v.seq:detach():totable(), v.ntok
      met = {entropy = rl.view_entropy(v, T), clip_frac = nclip / v.ntok}
    else
      loss, met, lpv = rl.methods[canon](sub, opts)
      check_result(canon, loss, met)
      if type(lpv) ~= "table" then lpv = nil end   -- em_ft's log-prob values; a method of one's own may give none
      ntok = 0
      for _, L in ipairs(sub.comp_lens) do ntok = ntok + L end
    end
    local lv = loss:item()
    total = total + lv
    if not isfinite(lv) then return total, nil end
    backward_of(canon, loss)
    if lpv then for j, i in ipairs(idx) do lpv_all[i] = lpv[j] end end
    parts[#parts + 1] = {met = met, n = #idx, ntok = ntok}
  end
  local met = combine_metrics(parts)
  -- the metrics of the whole batch where the chunks hold parts of questions
  if per_sample then
    for k, x in pairs(base_metrics(batch, lpv_all)) do met[k] = x end
  end
  if wt then met.mean_weight, met.max_weight = mean_of(w_used), max_of(w_used) end
  if reward then
    met.mean_reward, met.kl = mean_of(r_all), kl
  end
  return total, met
end
return rl
