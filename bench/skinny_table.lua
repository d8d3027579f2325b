-- skinny_table.lua FILE: skinny_bench's JSON lines -> run.sh table rows (metric, value, baseline):
-- per decode GEMM the fastest skinny launch shape whose result matched cuBLAS (rel_err < 1e-2),
-- next to cuBLAS's time. Flat JSON lines read with patterns (no JSON module needed).
-- (tests/gpu/run.sh runs it; also as skinny_table.lua --file FILE)
local B = dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "common.lua")
local o = B.parse(arg, {file = {"string", nil, help = "skinny_bench's output"}}, {positional = {"file"}})
if not o.file then B.die("which file? (usage: skinny_table.lua FILE)") end
-- a folder opens on Linux and fails only when read
if require("confit.cli").is_dir(o.file) then B.die("'%s' is a folder, not skinny_bench's output", o.file) end
local f, ferr = io.open(o.file, "r")
if not f then B.die("%s", tostring(ferr)) end
local function field(line, k)
  local s = line:match('"' .. k .. '":"(.-)"')
  if s then return s end
  return line:match('"' .. k .. '":([%-%d%.e+]+)')
end

local order, best, blas, wrong = {}, {}, {}, {}
for line in f:lines() do
  if field(line, "bench") == "skinny" then
    local key = field(line, "model") .. " " .. field(line, "gemm") .. " r" .. field(line, "rows")
    if not best[key] and not blas[key] and not wrong[key] then order[#order + 1] = key end
    local us, err = tonumber(field(line, "us")), tonumber(field(line, "rel_err"))
    if field(line, "impl") == "cublas" then
      blas[key] = us
    elseif not err or err >= 1e-2 then
      wrong[key] = (wrong[key] or 0) + 1
    elseif us and us > 0 and (not best[key] or us < best[key].us) then
      best[key] = {us = us, cfg = string.format("%snt%s ksb%s minb%s%s",
        field(line, "impl") == "skinny_wide" and "wide " or "", field(line, "nt"), field(line, "ksb"),
        field(line, "minb"), field(line, "pdl") == "1" and " pdl" or "")}
    end
  elseif field(line, "bench") == "error" then
    print(string.format("skinny error\t%s\t-", (field(line, "message") or "?"):sub(1, 60)))
  end
end
for _, key in ipairs(order) do
  local b = best[key]
  print(string.format("gemm %s us\t%s%s\t%s", key,
    b and string.format("skinny %.1f (%s)", b.us, b.cfg) or "no correct skinny run",
    wrong[key] and string.format(", %d WRONG", wrong[key]) or "",
    blas[key] and string.format("cuBLAS %.1f", blas[key]) or "-"))
end
f:close()
