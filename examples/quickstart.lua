-- quickstart.lua - tensors, autograd, one optimizer step, then a model: sampling and log-probs.
--   build/confit examples/quickstart.lua
-- or with the stock interpreter:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lib/?.so;;" lua5.4 examples/quickstart.lua
local confit = require "confit"

local t0 = confit.clock()
-- Two leaf tensors that want gradients; `seed` gives x its own reproducible generator.
local x = confit.randn({4, 8}, {requires_grad = true, seed = 1})
local w = confit.randn({8, 3}, {requires_grad = true})

-- Every op of the op table is a method: y = sum(silu(x @ w)).
local y = x:matmul(w):silu():sum()
print("y =", y:item())

y:backward()                   -- fills w.grad and x.grad
print("w.grad:", w.grad)       -- a short summary: shape, dtype, device, a few values

local opt = confit.optim.adamw({w, x}, {lr = 1e-3, weight_decay = 0.01})
opt:step()
opt:zero_grad()
print("after one AdamW step, w[1] =", table.concat(w[1]:totable(), ", "))

-- Numbers mix with tensors on either side; dims are 1-based, negative counts from the end.
local p = (2 - x):softmax(-1)
print("rows of softmax sum to", p:sum(2):totable()[1])

-- Gradients off for evaluation, and explicit release of big temporaries.
confit.no_grad(function()
  local big <close> = confit.zeros(1000, 1000)
  print(string.format("live CPU tensor memory: %.1f MB", confit.memory().cpu_bytes / 1e6))
end)
print(string.format("after the block: %.1f MB; took %.3f s", confit.memory().cpu_bytes / 1e6,
                    confit.clock() - t0))

-- A model: any Hugging Face folder of a Qwen2 / Llama model; here the shipped toy (a tiny Qwen2
-- that does chain arithmetic, examples/toy/README.md), found from any current folder.
local m = assert(confit.load(require("confit.cli").project_root() .. "/examples/toy/model"))
local prompt = "3+4-2+5="
for _, s in ipairs(m:generate({prompt}, {n = 4, temperature = 0.5, max_new_tokens = 40, seed = 1})) do
  print(string.format("%-40s log p = %7.3f  %d tokens, %s", s.text, s.logprob, #s.tokens, s.finish))
end
-- Log-probs of given completions under the model (differentiable: RLSC's loss is built on them).
-- The toy finds the short direct answer far likelier than the worked one: the habit RLSC works on.
local ids, lens = m:pad({m:encode(prompt .. "3+4=7;7-2=5;5+5=10;\\boxed{10}"), m:encode(prompt .. "\\boxed{9}")})
local plen = #m:encode(prompt)
local lp = m:logprobs(ids, {plen, plen}, {lens = lens})
print(string.format("log p(worked answer) = %.3f, log p(wrong direct answer) = %.3f", lp[1]:item(), lp[2]:item()))
m:free()
