-- quickstart.lua - tensors, autograd and one optimizer step in a dozen lines.
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
