-- recipes/report.lua: render run directories (docs/RUNDIR.md) into one self-contained HTML file.
--   confit recipes/report.lua OUT.html RUNDIR [RUNDIR...]
-- A grid directory (grid.json plus one subdirectory per run) stands for all of its runs (the page
-- points to its results.md / results.csv, ablate's mean ± SD over seeds), and an
-- eval.lua output (OUT/summary.json, OUT/<bench>/) for its benchmark folders.
-- A RUNDIR that does not exist, a wrong argument or an unwritable OUT.html print one line
-- "report: ..." and exit 1 (confit.cli). A file of a run that is missing or malformed does not
-- stop the report: the page says which file and line, and so does a warning on stderr. A run
-- reached twice (given alone and inside its grid, or a folder named twice, compared by real path)
-- counts once, and stderr says so once.
--
-- Called from Lua (tests): local main = dofile("recipes/report.lua"); main({"out.html", dir})
local report = require "confit.report"
local cli = require "confit.cli"

local die = cli.die_for("report")

local USAGE = "usage: confit recipes/report.lua OUT.html RUNDIR [RUNDIR...] (a RUNDIR may be an ablate grid or an eval.lua --out folder)"

local function main(argv)
  local args = {}
  for i = 1, #argv do
    local a = argv[i]
    if a == "-h" or a == "--help" then print(USAGE); return 0 end
    if a:match("^%-") then die("unknown option %s (%s)", a, USAGE) end
    args[#args + 1] = a
  end
  if #args < 2 then die("give the output file and at least one run directory (%s)", USAGE) end
  local out = args[1]
  if not out:match("%.html?$") then
    die("the first argument is the output file and must end in .html (got '%s')", out)
  end
  if cli.is_dir(out) then die("the output file '%s' is a directory", out) end
  local parent = out:match("^(.*)/[^/]*$")
  if parent and parent ~= "" and not cli.is_dir(parent) then
    die("cannot write %s: no directory '%s'", out, parent)
  end
  local dirs = {}
  for i = 2, #args do
    local d = args[i]
    if not cli.exists(d) then die("run directory '%s': no such directory", d) end
    if not cli.is_dir(d) then die("run directory '%s' is not a directory", d) end
    dirs[#dirs + 1] = d
  end
  local runs = {}
  local expanded, grid_notes, grids, repeats = report.expand(dirs)
  for _, note in ipairs(grid_notes) do
    io.stderr:write("report: warning: ", report.terminal_safe(note), "\n")
  end
  for _, line in ipairs(repeats) do io.stderr:write("report: ", report.terminal_safe(line), "\n") end
  for _, d in ipairs(expanded) do
    local r = report.load_run(d)
    for _, note in ipairs(r.notes) do
      if note:sub(1, #d) ~= d then note = d .. ": " .. note end
      io.stderr:write("report: warning: ", report.terminal_safe(note), "\n")
    end
    runs[#runs + 1] = r
  end
  local ok, err = report.write(out, runs, {notes = grid_notes, grids = grids})
  if not ok then die("cannot write %s: %s", out, tostring(err)) end
  print(string.format("report: %d run%s -> %s", #runs, #runs == 1 and "" or "s", out))
  return 0
end

return cli.main("report", main)
