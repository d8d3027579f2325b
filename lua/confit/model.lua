-- confit.model: the user-facing model. Wraps the C model userdata (lua/l_model.c) with the
-- folder's tokenizer, text prompts and completions, padding helpers and saving of a complete
-- Hugging Face folder.
--
--   local m = confit.load(dir)                   -- config.json, *.safetensors, tokenizer.json
--   m:forward(ids)                               -- logits [B, T, V]; ids: i64 tensor or table
--   m:logprobs(ids, prompt_lens, {temperature = T, lens = {...}})   -- [B], differentiable
--   m:generate(prompts, {n, temperature, top_p, top_k, max_new_tokens, seed, stop, ignore_eos})
--   m:parameters()                               -- {hf_name = tensor}
--   m:set_recompute(true)                        -- activation recomputation per layer
--   m:save(dir)                                  -- config, model.safetensors, tokenizer files
--                                                   (the whole folder atomically)
local core = require "confit.core"
local cli = require "confit.cli"
local jsonio = require "confit.jsonio"

local M = {}
local Model = {}
Model.__index = Model

-- Existence without opening: io.open on a FIFO would wait for a writer forever. The C loaders
-- refuse a path that is not a regular file with a message naming it.
local file_exists = cli.exists

-- true when path is a regular file (or a symlink to one); asked without opening it
local function is_regular(path)
  return os.execute("test -f " .. cli.shell_quote(path)) == true
end

-- The results of pcall(self.core.X, self.core, ...), or its error raised at the line that called
-- the method: the C binding's argument checks (luaL_error) are the caller's mistakes, named at
-- the caller's line as the checks written in Lua are (called directly they named this file's
-- line; under pcall they carry no position). An error that has a position already (raised by
-- Lua code a read ran: an __index of the caller's table) passes through as it is. Use it as
-- `local r = core_results(pcall(...))` in the method itself, not as a tail call: the level
-- counts the method's frame.
local function core_results(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "string" and not e:find("^[^\n]-:%d+: ") then error(e, 3) end
  error(e, 0)
end

local function wrap(c, dir, tok)
  local self = setmetatable({core = c, dir = dir, tokenizer = tok}, Model)
  self.config = c:config()
  return self
end

--- The model object of a core model (confit.model_new / confit.core's model userdata): the same
--- weights, with this module's methods (generate, logprobs with opts, ...).
function M.from_core(c) return wrap(c) end

--- nil, or why tokenizer tok cannot drive a model of `rows` embedding rows (config.json's
--- vocab_size): an id of the tokenizer (added tokens included) past them. Fewer ids than rows is
--- fine (Qwen pads 151669 to 151936). M.load refuses such a folder; rlsc asks before its other
--- checks of the folder.
function M.vocab_mismatch(rows, tok)
  if tok and type(rows) == "number" and type(tok.vocab_size) == "number" and tok.vocab_size > rows then
    return ("%s has ids up to %d but the model's vocab_size is %d: the tokenizer does not belong "
            .. "to this model"):format(tok.path, tok.vocab_size - 1, rows)
  end
end

local function vocab_mismatch(c, tok) return M.vocab_mismatch(c:config().vocab_size, tok) end

--- Load a Hugging Face model folder. Returns the model, or nil and a message (also when the
--- folder's tokenizer.json has ids past the model's vocab_size).
function M.load(dir)
  if type(dir) ~= "string" or dir == "" then
    error("confit.load: expected a folder path, got " .. (dir == "" and "an empty string" or type(dir)), 2)
  end
  local c, err = core.model_load(dir)
  if not c then return nil, err end
  local tok
  if file_exists(dir .. "/tokenizer.json") then
    local terr
    tok, terr = require("confit.tokenizer").new(dir .. "/tokenizer.json")
    if not tok then c:free() return nil, terr end
    terr = vocab_mismatch(c, tok)
    if terr then tok:free(); c:free() return nil, terr end
  end
  return wrap(c, dir, tok)
end

--- A model with the given Hugging Face config table (model_type, hidden_size, ...), its
--- parameters initialised with init_random(opts.seed, opts.std). opts.tokenizer: a
--- tokenizer object or a tokenizer.json path to attach.
function M.new(config, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("model.new: opts must be a table such as {seed = 1}, got " .. type(opts), 2) end
  if type(config) ~= "table" then error("model.new: config must be a table of config.json's fields, got " .. type(config), 2) end
  -- jsonio writes every double so that it reads back the same (cjson keeps 14 digits) and
  -- refuses NaN and inf naming the field
  local text = require("confit.jsonio").encode(config, {what = "model.new: config", level = 3})
  local c = core.model_new(text)
  local tok = opts.tokenizer
  if type(tok) == "string" then
    local err
    tok, err = require("confit.tokenizer").new(tok)
    if not tok then error(err, 2) end
  end
  local bad = vocab_mismatch(c, tok)
  if bad then c:free(); error("model.new: " .. bad, 2) end
  local self = wrap(c, opts.dir, tok)
  self:init_random(opts.seed or 0, opts.std or 0.02)
  return self
end

--- Random init in the usual transformer way: norms at 1, biases at 0, weights N(0, std^2).
function Model:init_random(seed, std)
  seed = math.tointeger(seed) or error("init_random: seed must be an integer, got " .. require("confit.cli").show(seed), 2)
  if type(std) ~= "number" or not (std >= 0) or std == math.huge then
    error("init_random: std must be a finite number >= 0, got " .. require("confit.cli").show(std), 2)
  end
  local confit = require "confit"
  local params = self.core:parameters()
  for i, name in ipairs(self.core:param_names()) do
    local shape = params[name]:shape()
    local t
    if name:find("norm%.weight$") then t = confit.ones(shape)
    elseif name:find("bias$") then t = confit.zeros(shape)
    else t = confit.randn(shape, {seed = seed * 1000003 + i}) * std end
    self.core:set_param(name, t)
  end
  self.core:tie()
  return self
end

-- ids as an i64 tensor on the model's device. An empty list is refused for `what` at its caller's
-- caller (it became an i64 [0] tensor, and the message spoke of that tensor).
local function as_ids(self, ids, what)
  if type(ids) == "table" and getmetatable(ids) == nil and next(ids) == nil then
    error(what .. ": ids is an empty list: no sequences to run", 3)
  end
  -- text where ids belong (m:logprobs({"2+3=5"}, ...)) read "tensor: element [1] is a string"
  if type(ids) == "string" or (type(ids) == "table" and getmetatable(ids) == nil and type(ids[1]) == "string") then
    error(what .. ": ids are token ids (an i64 tensor or lists of integers), not text: encode it with m:encode", 3)
  end
  if type(ids) ~= "table" and not core.is_tensor(ids) then
    error(("%s: argument #1 (ids): expected an i64 tensor or a table of id lists, got %s"):format(what, type(ids)), 3)
  end
  if type(ids) == "table" then ids = require("confit").tensor(ids, {dtype = "i64"}) end
  local dev = self:device()
  if dev ~= "cpu" and ids:device() ~= dev then ids = ids:to(dev) end
  return ids
end

function Model:forward(ids)
  local out = core_results(pcall(self.core.forward, self.core, as_ids(self, ids, "forward")))
  return out
end
function Model:hidden(ids)
  local out = core_results(pcall(self.core.hidden, self.core, as_ids(self, ids, "hidden")))
  return out
end
function Model:parameters() return self.core:parameters() end
function Model:param_names() return self.core:param_names() end
-- m:set_recompute(on) -> previous: activation recomputation per layer (keep only each layer's
-- input in the forward, run the layer again in backward: same gradients, less memory).
function Model:set_recompute(on)
  local prev = core_results(pcall(self.core.set_recompute, self.core, on)) -- errors at the caller's line
  return prev
end
function Model:set_param(name, t)
  if type(name) ~= "string" then error("set_param: argument #1 (name): expected a parameter's name, got " .. type(name), 2) end
  if not core.is_tensor(t) then error("set_param: argument #2 (value): expected a tensor, got " .. type(t), 2) end
  core_results(pcall(self.core.set_param, self.core, name, t))
end

-- The row lengths of the tensors M.pad made (weak keys): m:logprobs scores such a tensor's rows
-- up to their own lengths when opts.lens is left out. The pad id is a real token (0 by
-- default), and a padded tensor given without lens had its padding scored as completion tokens.
-- Each entry is {lens = ..., pad = the pad id}. The tensor may be written in place since
-- (t:copy_, t:fill_, t:set): remembered_lens checks that every position past a row's length
-- still holds the pad id before its lengths are trusted.
local PADDED = setmetatable({}, {__mode = "k"})

-- The lengths M.pad remembers for tensor t, nil for another tensor, false when t no longer
-- looks as M.pad left it (a shape or a position past a row's length changed).
local function remembered_lens(t)
  local p = PADDED[t]
  if not p then return nil end
  local lens = p.lens
  local ok, rows = pcall(t.totable, t)
  if not ok then return nil end   -- freed: as_ids says so
  if #rows ~= #lens then return false end
  for i, row in ipairs(rows) do
    for j = lens[i] + 1, #row do
      if row[j] ~= p.pad then return false end
    end
  end
  return lens
end

-- M.pad's work; what names the function in messages ("pad", "logprobs"), raised at the caller of
-- the function that called this one (m:pad's or m:logprobs's caller).
local function pad_rows(seqs, pad_id, what)
  local SIG = "m:pad(seqs [, pad_id])"
  pad_id = pad_id or 0
  if type(seqs) ~= "table" then error(("%s: seqs must be a list of token-id lists (%s), got %s"):format(what, SIG, type(seqs)), 3) end
  if type(pad_id) ~= "number" or not math.tointeger(pad_id) then
    error(("%s: pad_id must be an integer (%s), got %s"):format(what, SIG,
          type(pad_id) == "number" and tostring(pad_id) or type(pad_id)), 3)
  end
  pad_id = math.tointeger(pad_id)
  for i, s in ipairs(seqs) do
    if type(s) ~= "table" or getmetatable(s) ~= nil then
      error(("%s: sequence %d must be a list of token ids, got %s"):format(what, i, type(s)), 3)
    end
    for j = 1, #s do
      local v = s[j]
      if type(v) ~= "number" or not math.tointeger(v) then
        error(("%s: sequence %d, token %d is %s, not an integer token id"):format(what, i, j,
              type(v) == "number" and tostring(v) or "a " .. type(v)), 3)
      end
    end
  end
  local maxlen, lens, rows = 0, {}, {}
  for i, s in ipairs(seqs) do lens[i] = #s; if #s > maxlen then maxlen = #s end end
  for i, s in ipairs(seqs) do
    local r = {}
    for t = 1, maxlen do r[t] = s[t] or pad_id end
    rows[i] = r
  end
  local confit = require("confit")
  -- no sequences: still a batch, [0, 0] (a list of no rows would make a 1-d tensor)
  local t = #rows == 0 and confit.zeros({0, 0}, {dtype = "i64"}) or confit.tensor(rows, {dtype = "i64"})
  PADDED[t] = {lens = table.move(lens, 1, #lens, 1, {}), pad = pad_id}   -- a copy: the caller may change its lens
  return t, lens
end

--- Sums of completion-token log-probs per row: [B]. ids: an i64 [B, T] tensor, or a list of
--- token-id lists (of any lengths: padded here, each row scored up to its own length);
--- opts.temperature (default 1), opts.lens (total lengths when a tensor's rows are right-padded;
--- a tensor M.pad made brings its own, refused once a position past them no longer holds the pad
--- id; any other tensor's rows are scored over all T tokens).
function Model:logprobs(ids, prompt_lens, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("logprobs: opts must be a table such as {temperature = 0.5}, got " .. type(opts), 2) end
  -- a misspelt option (len for lens) silently scored the padding
  for k in pairs(opts) do
    if k ~= "temperature" and k ~= "lens" then
      error(("logprobs: unknown option %s (options: temperature, lens)"):format(tostring(k)), 2)
    end
  end
  local lens, own = opts.lens, remembered_lens(ids)
  if own == false then
    if lens == nil then
      error("logprobs: ids was written after m:pad made it (a position past a row's length no longer holds the "
            .. "pad id), so the lengths m:pad remembers may be stale: give {lens = ...}", 2)
    end
    own = nil
  end
  -- token lists: their own lengths (a ragged list, padded by a caller without lens, scored the
  -- padding as completion tokens)
  if type(ids) == "table" and getmetatable(ids) == nil and type(ids[1]) == "table" then
    for i, row in ipairs(ids) do
      if type(row) ~= "table" or getmetatable(row) ~= nil then
        error(("logprobs: ids[%d] must be a list of token ids like ids[1], got %s"):format(i, type(row)), 2)
      end
    end
    ids, own = pad_rows(ids, 0, "logprobs")
  end
  if own then   -- the rows' own lengths: of token lists, or of a tensor M.pad made
    if lens == nil then lens = own
    elseif type(lens) == "table" then   -- a length past its row would score the padding
      for i, n in ipairs(own) do
        if math.type(lens[i]) == "integer" and lens[i] > n then
          error(("logprobs: lens[%d] = %d is longer than row %d (%d tokens)"):format(i, lens[i], i, n), 2)
        end
      end
    end
  end
  -- an empty list of sequences: no rows, no sums, as for a [0, T] tensor
  if type(ids) == "table" and getmetatable(ids) == nil and next(ids) == nil then ids = core.zeros({0, 1}, {dtype = "i64"}) end
  ids = as_ids(self, ids, "logprobs")
  if core.is_tensor(ids) and ids:dim() == 2 and ids:size(1) == 0 then   -- no rows: no sums (as m:forward gives none)
    local z = core.zeros({0})
    return self:device() ~= "cpu" and z:to(self:device()) or z
  end
  local out = core_results(pcall(self.core.logprobs, self.core, ids, prompt_lens, opts.temperature or 1.0, lens))
  return out
end

--- Right-pad token lists into an i64 [B, Tmax] tensor; returns ids, lens.
function M.pad(seqs, pad_id)
  local t, lens = pad_rows(seqs, pad_id, "pad")   -- (no tail call: its errors name our caller)
  return t, lens
end
Model.pad = function(_, seqs, pad_id) return M.pad(seqs, pad_id) end

function Model:encode(text)
  if not self.tokenizer then error("model:encode: this model has no tokenizer (no tokenizer.json in its folder)", 2) end
  return self.tokenizer:encode(text)
end

--- The token ids of each prompt: a string is encoded with the model's tokenizer, a list of ids
--- is taken as it is. Anything else, or a string for a model without a tokenizer, raises
--- "<what>: prompt i ..." at the level of whoever called the function calling this one.
function Model:prompt_ids(prompts, what)
  what = what or "prompt_ids"
  if type(prompts) ~= "table" then error(("%s: prompts must be a list, got %s"):format(what, type(prompts)), 3) end
  local ids = {}
  for i, p in ipairs(prompts) do
    if type(p) == "string" then
      if not self.tokenizer then
        error(("%s: prompt %d is a string but this model has no tokenizer (no tokenizer.json in its folder): pass token ids")
              :format(what, i), 3)
      end
      ids[i] = self.tokenizer:encode(p)
    elseif type(p) == "table" then
      ids[i] = p
    else
      local shown = type(p) == "number" and tostring(p) or type(p)
      error(("%s: prompt %d must be a list of token ids or a string, got %s"):format(what, i, shown), 3)
    end
  end
  return ids
end

-- opts with the strings in opts.stop replaced by their token ids (a copy; opts itself when there
-- are none): a string must be exactly one token of the model's tokenizer ("<|im_end|>", ";"),
-- since generation stops on a token, not on text. Errors are raised at generate's caller.
local function stop_ids(self, opts)
  local stop = opts.stop
  if type(stop) ~= "table" then return opts end
  -- a map ({a = ";"}) or a list with holes was read as 1..#stop and silently ignored
  local n = 0
  for k in pairs(stop) do
    if math.type(k) ~= "integer" or k < 1 then
      error(("generate: stop must be a list of token ids or one-token strings, got a table with the key %s")
            :format(type(k) == "string" and ("%q"):format(k) or tostring(k)), 3)
    end
    n = n + 1
  end
  for i = 1, n do
    if stop[i] == nil then
      error(("generate: stop must be a list of token ids or one-token strings, got a table with a hole at [%d]")
            :format(i), 3)
    end
  end
  local ids
  for i = 1, #stop do
    local s = stop[i]
    if type(s) == "string" then
      if not self.tokenizer then
        error(("generate: stop[%d] is the string %q, but this model has no tokenizer (no tokenizer.json in its "
               .. "folder): give token ids"):format(i, s), 3)
      end
      local t = self.tokenizer:encode(s)
      if #t ~= 1 then
        error(("generate: stop[%d] = %q is %d tokens of the model's tokenizer (%s): stop strings must be single "
               .. "tokens"):format(i, s, #t, #t == 0 and "none" or "ids " .. table.concat(t, ", ")), 3)
      end
      ids = ids or table.move(stop, 1, #stop, 1, {})
      ids[i] = t[1]
    end
  end
  if not ids then return opts end
  local copy = {}
  for k, v in pairs(opts) do copy[k] = v end
  copy.stop = ids
  return copy
end

--- Sample completions. prompts: strings (encoded with the model's tokenizer) or lists of ids.
--- Returns a flat list of samples {prompt, tokens, logprobs, logprob, finish, text} ordered
--- prompt by prompt (n per prompt). text excludes a final stop token, and ids past the
--- tokenizer's vocabulary (an embedding table padded beyond it: Qwen has 151936 rows for 151669
--- tokens) decode to nothing; tokens keeps every sampled id. opts.stop: token ids, or strings
--- that are each one token of the model's tokenizer.
function Model:generate(prompts, opts)
  if type(prompts) ~= "table" then error("generate: prompts must be a list, got " .. type(prompts), 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("generate: opts must be a table such as {n = 4}, got " .. type(opts), 2) end
  opts = stop_ids(self, opts)
  local out = core_results(pcall(self.core.generate, self.core, self:prompt_ids(prompts, "generate"), opts))
  local tok = self.tokenizer
  if tok then
    local known = {}   -- id -> whether the tokenizer has it
    for _, s in ipairs(out) do
      local toks, n = {}, #s.tokens
      if s.finish == "stop" and n > 0 then n = n - 1 end
      for i = 1, n do
        local id = s.tokens[i]
        local k = known[id]
        if k == nil then k = tok:id_to_token(id) ~= nil; known[id] = k end
        if k then toks[#toks + 1] = id end
      end
      s.text = tok:decode(toks)
    end
  end
  return out
end

--- Move the weights: m:to("cuda", "bf16") -> m. Needs the CUDA build and a usable GPU: without
--- one it returns nil, "cannot move the model to cuda: <why>" and the model stays where it was
--- (check it: `assert(m:to("cuda", "bf16"))`). Bad arguments and out of memory raise (the core's
--- to_device words its messages as m:to's: "to: argument #1 (device): ...").
function Model:to(device, dtype)
  local ok, err = core_results(pcall(self.core.to_device, self.core, device, dtype))
  if not ok then return nil, err end
  return self
end

local TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                         "vocab.json", "merges.txt"}

-- Copy src to dst atomically (a synced temporary file renamed into place).
local function copy_file(src, dst)
  if not is_regular(src) then error("save: cannot copy " .. src .. ": not a regular file", 3) end
  local ok, err = jsonio.copy_file(src, dst)
  if not ok then error("save: " .. err, 3) end
end

local SAVED_NAMES = {["config.json"] = true, ["generation_config.json"] = true, ["trainer_state.json"] = true}
for _, name in ipairs(TOKENIZER_FILES) do SAVED_NAMES[name] = true end

--- True for a file name a saved model or checkpoint folder holds: config.json,
--- generation_config.json, the tokenizer files, any *.safetensors (weights, shards,
--- optimizer.safetensors) or *.safetensors.index.json, trainer_state.json, and the temporary
--- files of atomic writes (jsonio.is_temp_name). m:save replaces an existing folder only when
--- every entry in it is one of these.
function M.is_saved_file(name)
  return SAVED_NAMES[name] == true or name:find("%.safetensors$") ~= nil
         or name:find("%.safetensors%.index%.json$") ~= nil or jsonio.is_temp_name(name) ~= nil
end

-- The keys of the JSON object in the file `from` (the folder the model was loaded from) that the
-- file `to` (just written by the core's save) lacks, added to `to`: bos_token_id, pad_token_id,
-- a generation_config.json's temperature, top_p, ... are the model's settings too, and a save over
-- the folder it came from would otherwise drop them for good. The keys the core writes keep its
-- values (they describe the weights saved); the others are appended to its text as they decode
-- (the core's text is kept as written: "rope_theta": 1000000.0 stays a float). Nothing is added
-- when `from` is gone or is not a JSON object (the file written is complete for confit).
local DESCRIBE_WEIGHTS = {dtype = true, torch_dtype = true, quantization_config = true}
local function keep_source_keys(from, to)
  if not is_regular(from) then return end
  local src = jsonio.read_json(from)
  if type(src) ~= "table" or src[1] ~= nil then return end
  local text = assert(io.open(to, "rb")):read("a")
  local have = jsonio.decode(text) or {}
  local extra = {}
  for k in pairs(src) do  -- not what describes other weights than those saved (f32, not quantized)
    if type(k) == "string" and have[k] == nil and not DESCRIBE_WEIGHTS[k] then extra[#extra + 1] = k end
  end
  if #extra == 0 then return end
  table.sort(extra)
  local parts = {}
  for _, k in ipairs(extra) do
    parts[#parts + 1] = ("\t%s:\t%s"):format(jsonio.encode(k), jsonio.encode(src[k], {what = "copying " .. from}))
  end
  local head = text:match("^(.-)%s*}%s*$")
  if not head then return end
  local ok, err = jsonio.write_text_atomic(to, head .. (head:match("{%s*$") and "\n" or ",\n") .. table.concat(parts, ",\n") .. "\n}\n")
  if not ok then error("save: " .. err, 3) end
end

--- Write the files of a saved folder (config.json, generation_config.json, model.safetensors,
--- the tokenizer files) into the existing folder dir: each file atomically, the folder as a whole
--- not. m:save and train.save_checkpoint call it inside a temporary folder. Keys of the loaded
--- folder's config.json and generation_config.json that the core does not write (bos_token_id,
--- temperature, ...) are kept (keep_source_keys); a tokenizer whose tokenizer.json is gone is an
--- error, not a folder saved without it. opts.tokenizer = false: no tokenizer files (the caller
--- writes its own: recipes/pretrain_toy.lua).
function Model:save_into(dir, opts)
  if type(dir) ~= "string" then error("save_into: dir must be a folder path, got " .. type(dir), 2) end
  if opts ~= nil and type(opts) ~= "table" then error("save_into: opts must be a table such as {tokenizer = false}, got " .. type(opts), 2) end
  local with_tok = not (opts and opts.tokenizer == false)
  self.core:save(dir)
  if self.dir then
    for _, name in ipairs({"config.json", "generation_config.json"}) do
      local from, to = self.dir .. "/" .. name, dir .. "/" .. name
      if cli.exists(to) then keep_source_keys(from, to)
      elseif is_regular(from) then copy_file(from, to) end
    end
  end
  if not with_tok then return true end
  local src, tok_json = self.dir, nil
  if self.tokenizer and type(self.tokenizer.path) == "string" then
    tok_json = self.tokenizer.path
    src = tok_json:match("^(.*)/[^/]*$") or "."
    if not is_regular(tok_json) then
      error(("save: the model's tokenizer came from %s, which is gone: the folder would be saved without "
             .. "its tokenizer (set m.tokenizer = nil to save the model alone)"):format(tok_json), 3)
    end
  end
  if src and cli.tidy_path(src) ~= cli.tidy_path(dir) then
    for _, name in ipairs(TOKENIZER_FILES) do
      local from = src .. "/" .. name
      if name == "tokenizer.json" and tok_json then from = tok_json end
      if file_exists(from) then copy_file(from, dir .. "/" .. name) end
    end
  end
  return true
end

--- Save a complete Hugging Face folder: config.json, generation_config.json,
--- model.safetensors (f32) and the tokenizer files of the folder the model came from.
--- The tokenizer files come from the folder of m.tokenizer's tokenizer.json when the model has
--- a tokenizer (so a model made by model.new with opts.tokenizer saves it too), else from the
--- folder the model was loaded from (also when that is dir itself).
--- The folder is written atomically (jsonio.write_dir_atomic): into a temporary folder beside
--- dir, every file and the folder synced, then renamed into place, so dir holds the old folder
--- or the complete new one, never a part (a full disk included), and a failed save leaves no
--- temporary folder behind. An existing dir is replaced as a whole when it holds only what a
--- save writes (M.is_saved_file: an earlier save, a checkpoint, a downloaded model's weights and
--- tokenizer); one holding anything else (notes, metrics.json, a folder given by mistake) is
--- refused with an error naming the entry, before anything is written.
function Model:save(dir)
  if type(dir) ~= "string" or dir == "" then error("save: expected a folder path, got " .. tostring(dir), 2) end
  local ok, err = jsonio.write_dir_atomic(dir, function(tmp) self:save_into(tmp) end,
                                          {replaceable = M.is_saved_file})
  if not ok then error("save: " .. err, 2) end
  return true
end

--- "cpu" or "cuda": where the weights live (one value; the core model's device() also gives the
--- dtype, which m:dtype() returns).
function Model:device()
  if self.core.device then return (self.core:device()) end
  return "cpu"
end

--- "f32" or "bf16": the type the weights are held in ("f32" on the CPU).
function Model:dtype()
  if self.core.device then
    local _, dt = self.core:device()
    return dt
  end
  return "f32"
end

--- Fill every parameter with random values directly on the GPU (norms 1, biases 0) -> m; without
--- a usable GPU nil, "cannot place the model's parameters on cuda: no usable GPU (<why>)", as m:to.
function Model:init_random_cuda(seed, std, dtype)
  local ok, err = core_results(pcall(self.core.init_random_cuda, self.core, seed, std, dtype))
  if not ok then return nil, err end
  return self
end

function Model:free() self.core:free() end
Model.__close = Model.free

function Model:__tostring() return tostring(self.core) end

-- Every method checks that it was called with ':' on a model: m.generate(prompts) took the
-- prompts for the model and failed deep inside or said something false (m.encode("x"): "this
-- model has no tokenizer"). A table whose __index leads to a model (a wrapper overriding some
-- methods: setmetatable({logprobs = f}, {__index = m})) counts as one. The method runs as a tail
-- call, so its own errors at level 2 still name its caller's line.
local function is_model(x)
  for _ = 1, 16 do
    if type(x) ~= "table" then return false end
    local mt = getmetatable(x)
    if mt == Model then return true end
    x = mt and mt.__index
  end
  return false
end
for name, f in pairs(Model) do
  if type(f) == "function" and name:sub(1, 2) ~= "__" then
    Model[name] = function(self, ...)
      if not is_model(self) then error("model:" .. name .. ": call it with ':' on a model", 2) end
      return f(self, ...)
    end
  end
end

M.Model = Model
return M
