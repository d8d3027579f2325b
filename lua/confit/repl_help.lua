-- confit.repl_help: one-line docs shown by the REPL's `:help name` (and `?name`).
--
-- A plain table: API name -> one line that starts with the call form. Names are spelled as
-- the user writes them: `confit.x` for module functions, `t:x` for tensor methods, `t.x` for
-- tensor fields, `m:x` for model methods. The REPL also looks names up in
-- require("confit").doc and require("confit.core").doc (written by the bindings), and tries
-- a qualified name by its last part, so `:help x:matmul` finds `t:matmul`. Keep each entry to
-- one line; the binding's own doc tables take over as they grow.
return {
  ["confit.tensor"] = "confit.tensor(data [, {dtype=, requires_grad=}]) -> tensor: a new tensor from a nested table of numbers (dtype f32 unless given: f32 f64 bf16 i32 i64)",
  ["confit.randn"] = "confit.randn(shape [, {dtype=, requires_grad=, seed=}]) -> tensor: standard normal samples (Philox; seed gives a fresh generator, else the global one)",
  ["confit.zeros"] = "confit.zeros(shape... [, opts]) -> tensor: a new tensor filled with 0",
  ["confit.ones"] = "confit.ones(shape... [, opts]) -> tensor: a new tensor filled with 1",
  ["t:totable"] = "t:totable() -> table: the values as nested Lua tables (one level per dim), copied to the CPU",
  ["t:item"] = "t:item() -> number: the value of a one-element tensor",
  ["t:shape"] = "t:shape() -> table: the sizes of the dims, {d1, d2, ...}",
  ["t:numel"] = "t:numel() -> integer: the number of elements (product of the shape)",
  ["t:backward"] = "t:backward([grad]) : reverse-mode autograd from t (a scalar unless grad is given); accumulates into .grad of leaves",
  ["t:detach"] = "t:detach() -> tensor: the same values, cut from the autograd graph (no gradient flows through)",
  ["t.grad"] = "t.grad : the accumulated gradient of a leaf tensor after backward(), or nil",
  ["t:matmul"] = "t:matmul(u) -> tensor: matrix product t @ u (batched over leading dims); inner dims must agree",
  ["t:transpose"] = "t:transpose(d1, d2) -> tensor: a view with dims d1 and d2 swapped (1-based, negative from the end)",
  ["t:sum"] = "t:sum([dim [, keepdim]]) -> tensor: sum of all elements, or along dim",
  ["t:mean"] = "t:mean([dim [, keepdim]]) -> tensor: mean of all elements, or along dim",
  ["t:exp"] = "t:exp() -> tensor: elementwise e^x",
  ["t:log"] = "t:log() -> tensor: elementwise natural logarithm",
  ["t:silu"] = "t:silu() -> tensor: elementwise x * sigmoid(x) (the Qwen2 MLP activation)",
  ["t:tanh"] = "t:tanh() -> tensor: elementwise hyperbolic tangent",
  ["t:softmax"] = "t:softmax(dim) -> tensor: softmax along dim (1-based, negative from the end), computed stably",
  ["t:log_softmax"] = "t:log_softmax(dim) -> tensor: log of softmax along dim, computed stably",
  ["t:logsumexp"] = "t:logsumexp(dim [, keepdim]) -> tensor: log(sum(exp(t))) along dim, computed stably",
  ["confit.optim.adamw"] = "confit.optim.adamw(params, {lr=, betas=, eps=, weight_decay=, state_dtype=\"f32\"|\"bf16\"}) -> optimizer: AdamW (decoupled decay; fp32 masters for bf16 params); opt:step(), opt:zero_grad(), opt:state()",
  ["confit.clock"] = "confit.clock() -> seconds: a monotonic wall clock (waits for queued GPU work first), for timing",
  ["confit.no_grad"] = "confit.no_grad(fn, ...) -> fn's results: runs fn without recording the autograd tape",
  ["confit.load"] = "confit.load(dir) -> model | nil, msg: a Qwen2/Llama model from a Hugging Face folder (config.json, *.safetensors, tokenizer.json if present)",
  ["m:forward"] = "m:forward(ids) -> logits [B, T, V]: ids an i64 [B, T] tensor or a table of equal-length id lists",
  ["m:parameters"] = "m:parameters() -> table: the trainable weight tensors (name -> tensor), e.g. for confit.optim.adamw",
  ["m:set_recompute"] = "m:set_recompute(on) -> previous: activation recomputation per layer (the training forward keeps each layer's input only; backward runs the layer again: same gradients, less memory)",
  ["m:logprobs"] = "m:logprobs(ids, prompt_lens [, {temperature=, lens=}]) -> [B]: sums of completion-token log-probs (chunked head, differentiable)",
  ["m:generate"] = "m:generate(prompts, {n=, temperature=, top_p=, top_k=, max_new_tokens=, seed=, stop=, ignore_eos=}) -> samples {tokens, text, logprob, finish}",
  ["confit.fsync"] = "confit.fsync(path) -> true | nil, msg: flush a file's or a directory's data to the disk (the atomic writers sync before renaming)",
  ["confit.load_safetensors"] = "confit.load_safetensors(path) -> table | nil, msg: name -> tensor from a .safetensors file (mmap, strictly validated)",
  ["confit.save_safetensors"] = "confit.save_safetensors(path, tensors [, metadata]) -> true: writes name -> tensor atomically (temp file, fsync, rename)",
  ["confit.tokenizer"] = "confit.tokenizer(path_to_tokenizer_json) -> tok | nil, msg: byte-level BPE; tok:encode(text), tok:decode(ids), tok:chat(messages)",
  ["confit.cuda.available"] = "confit.cuda.available() -> boolean: true when built with CUDA and a GPU is usable",
  ["confit.memory"] = "confit.memory() -> table: bytes held by tensors (CPU and GPU, in use and cached by the allocator)",
  ["confit.empty_cache"] = "confit.empty_cache() : returns cached, unused GPU blocks to the driver (after a Lua GC frees dropped tensors)",
  ["confit.profile"] = "confit.profile(fn, ...) -> rows, fn's results: runs fn with the profiler on; rows per (phase, region): calls, host and device time",
  ["confit.profiler.report"] = "confit.profiler.report(rows [, {top=}]) -> string: the profile rows as a table, largest first",
  ["confit.profiler.phase"] = "confit.profiler.phase(name) -> previous: label the regions that follow (rows are keyed by phase and name)",
  ["confit.reset_peak_memory"] = "confit.reset_peak_memory() : the peaks of confit.memory() restart from what is in use now",
  ["rl.backward"] = "rl.backward(method, batch, {alpha=, temperature=, micro_batch=K, ...}) -> loss value, metrics: the loss's gradient, K sequences per forward/backward (require \"confit.rl\")",
  ["rl.loss"] = "rl.loss(method, batch, opts) -> loss tensor, metrics: an RL method's loss by name (require \"confit.rl\"; rl.batch builds the batch)",
}
