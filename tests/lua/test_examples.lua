-- The examples the README points to run as written: examples/quickstart.lua (tensors, autograd,
-- an optimizer step, then the shipped toy model: sampling and log-probs) exits 0 and prints
-- what it says it prints; examples/grids/alpha.lua is a grid ablate accepts (--dry-run).
local H = dofile("tests/lua/harness.lua")

local EXE = (os.getenv("CONFIT_BUILD_DIR") or "build") .. "/confit"

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
end

H.case("quickstart runs and reaches the model part", function()
  local out, code = run(EXE .. " examples/quickstart.lua")
  H.eq(code, 0, "exit status; output:\n" .. out)
  H.ok(out:find("rows of softmax sum to", 1, true), "tensor part missing:\n" .. out)
  local samples = 0
  for line in out:gmatch("[^\n]+") do
    if line:match("log p = %s*%-?[%d.]+%s+%d+ tokens, %a+") then samples = samples + 1 end
  end
  H.eq(samples, 4, "four samples of the toy model:\n" .. out)
  local good, bad = out:match("log p%(worked answer%) = (%-?[%d.]+), log p%(wrong direct answer%) = (%-?[%d.]+)")
  H.ok(good and bad and tonumber(good) < 0 and tonumber(bad) < 0, "log-prob line:\n" .. out)
end)

-- (twenty-eighth session) run from another folder, it stopped at the model with a traceback
-- ("examples/toy/model/config.json: cannot open"): the recipes found the toy from anywhere
H.case("quickstart finds the toy model from another current folder", function()
  local q = require("confit.cli").shell_quote
  local root = assert(io.popen("pwd")):read("l")
  local exe = EXE:sub(1, 1) == "/" and EXE or root .. "/" .. EXE
  local out, code = run("cd / && " .. q(exe) .. " " .. q(root .. "/examples/quickstart.lua"))
  H.eq(code, 0, "exit status; output:\n" .. out)
  H.ok(out:find("log p(worked answer)", 1, true), "the model part ran:\n" .. out)
end)

H.case("the shipped grid passes ablate's checks", function()
  local tmp = os.tmpname()
  os.remove(tmp)
  local out, code = run(EXE .. " recipes/ablate.lua examples/grids/alpha.lua --dry-run --out " .. tmp)
  os.execute("rm -rf '" .. tmp .. "'")
  H.eq(code, 0, "exit status; output:\n" .. out)
end)

H.finish()
