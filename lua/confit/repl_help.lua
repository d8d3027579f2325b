-- confit.repl_help: one-line docs shown by the REPL's `:help name` (and `?name`).
--
-- A plain table: API name -> one line that starts with the call form. Names are spelled as
-- the user writes them: `confit.x` for module functions, `t:x` for tensor methods, `t.x` for
-- tensor fields, `m:x` for model methods. The REPL also looks names up in
-- require("confit").doc and require("confit.core").doc (written by the bindings), and tries
-- a qualified name by its last part, so `:help x:matmul` finds `t:matmul`. Keep each entry to
-- one line; the binding's own doc tables take over as they grow.
return {
  ["confit.tensor"] = "confit.tensor(data [, dtype]) -> tensor: a new tensor from a number or a nested table of numbers (dtype defaults to f32)",
  ["confit.randn"] = "confit.randn(shape... [, opts]) -> tensor: standard normal samples, drawn from the global seeded generator unless one is given",
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
  ["t:softmax"] = "t:softmax([dim]) -> tensor: softmax along dim (default the last), computed stably",
  ["t:log_softmax"] = "t:log_softmax([dim]) -> tensor: log of softmax along dim (default the last), computed stably",
  ["t:logsumexp"] = "t:logsumexp([dim [, keepdim]]) -> tensor: log(sum(exp(t))) along dim (default the last), computed stably",
  ["confit.optim.adamw"] = "confit.optim.adamw(params, {lr=, betas=, eps=, weight_decay=}) -> optimizer: AdamW with fp32 state; opt:step(), opt:zero_grad()",
  ["confit.clock"] = "confit.clock() -> seconds: a monotonic wall clock (waits for queued GPU work first), for timing",
  ["confit.no_grad"] = "confit.no_grad(fn, ...) -> fn's results: runs fn without recording the autograd tape",
  ["confit.load"] = "confit.load(dir [, opts]) -> model | nil, msg: a Qwen2/Llama model from a Hugging Face directory (config.json + safetensors)",
  ["m:forward"] = "m:forward(ids [, opts]) -> logits: the transformer forward pass over token ids (batch x seq)",
  ["m:parameters"] = "m:parameters() -> table: the trainable weight tensors (name -> tensor), e.g. for confit.optim.adamw",
  ["m:logprobs"] = "m:logprobs(ids, targets) -> tensor: per-token log-probabilities of targets (fused head + log-softmax + gather, chunked over vocab)",
  ["m:generate"] = "m:generate(prompt_ids, {max_new=, n=, temperature=, top_p=, seed=}) -> ids: batched sampling that shares the prompt's KV cache, stops on EOS",
  ["confit.load_safetensors"] = "confit.load_safetensors(path) -> table | nil, msg: name -> tensor from a .safetensors file (mmap, strictly validated)",
  ["confit.save_safetensors"] = "confit.save_safetensors(path, tensors [, metadata]) -> true | nil, msg: writes name -> tensor atomically",
  ["confit.tokenizer"] = "confit.tokenizer(dir_or_file) -> tok | nil, msg: byte-level BPE from tokenizer.json; tok:encode(text), tok:decode(ids)",
  ["confit.cuda.available"] = "confit.cuda.available() -> boolean: true when built with CUDA and a GPU is usable",
  ["confit.memory"] = "confit.memory() -> table: bytes held by tensors (CPU and GPU, in use and cached by the allocator)",
  ["confit.empty_cache"] = "confit.empty_cache() : returns cached, unused GPU blocks to the driver (after a Lua GC frees dropped tensors)",
}
