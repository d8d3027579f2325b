-- recipes/report.lua: render run directories (docs/RUNDIR.md) into one self-contained HTML file.
--   confit recipes/report.lua OUT.html RUNDIR [RUNDIR...]
-- A grid directory (grid.json plus one subdirectory per run) stands for all of its runs.
local report = require "confit.report"

local args = {...}
if #args < 2 or args[1] == "-h" or args[1] == "--help" then
  io.stderr:write("usage: confit recipes/report.lua OUT.html RUNDIR [RUNDIR...]\n")
  os.exit(#args < 2 and 2 or 0)
end
local out = args[1]
if not out:match("%.html?$") then
  io.stderr:write("report: the first argument is the output file and must end in .html (got ",
                  out, ")\n")
  os.exit(2)
end
local dirs = {}
for i = 2, #args do dirs[#dirs + 1] = args[i] end
local ok, err = report.write(out, dirs)
if not ok then
  io.stderr:write("report: cannot write ", out, ": ", tostring(err), "\n")
  os.exit(1)
end
local runs = report.expand(dirs)
print(string.format("report: %d run%s -> %s", #runs, #runs == 1 and "" or "s", out))
