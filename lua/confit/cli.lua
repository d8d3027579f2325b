-- confit.cli: how the recipes meet the command line. One convention for every recipe: a mistake
-- in the command line or the input files (unknown flag, bad value, value out of range, missing or
-- malformed file) prints ONE line "<recipe>: <what and where>" on stderr and exits with status 1;
-- a Ctrl-C prints "<recipe>: interrupted" and exits with status 130; any other error is a bug and
-- keeps its traceback (also exit status 1). Under `confit -i recipe.lua ...` nothing exits: a
-- failure is raised to the executable, which prints it ("confit: <recipe>: ...") and starts the
-- REPL as it promises (M.run, M.exit).
--
--   local cli = require "confit.cli"
--   local die = cli.die_for("myrecipe")                 -- die("--x must be ..., got %s", v)
--   local function main(argv)
--     local o = cli.parse_args(argv, SPEC, "recipes/myrecipe.lua")
--     ...
--   end
--   return cli.main("myrecipe", main)   -- run as a script: main(arg) under the handler;
--                                       -- loaded with dofile: returns main (or the 3rd argument)
--
-- A script of one's own that wraps a recipe (registers a method, then runs rlsc) ends
--   return cli.main("mine", dofile("recipes/rlsc.lua"))   -- runs rlsc's main as the script's
-- or calls cli.run("mine", main, argv) itself (e.g. to add flags to argv).
--
-- A user error is an error object made by cli.raise / cli.die_for (it prints as its message), or
-- (the recipes' older convention) a string raised at level 0 that starts with "<recipe>: ".
local M = {}

-- Bounds the recipes share (rlsc, toy_compare, eval) ----------------------------------------------

-- the generator's limit on samples per prompt (--n, --eval-n; lua/l_model.c)
M.MAX_SAMPLES = 1 << 20
-- the smallest temperature of a loss on the CPU: its kernels scale by 1 / T in double, which
-- overflows below ~5.56e-309 (the training step refused it after config.json was written)
M.MIN_TEMPERATURE = 5.6e-309
-- the toy world's training questions are distinct: at most this many (--steps x
-- --questions-per-step), so that drawing them stays quick
M.TOY_MAX_QUESTIONS = 100000

-- User errors -----------------------------------------------------------------------------------

local UserError = {}
UserError.__index = UserError
UserError.__tostring = function(e) return e.msg end
UserError.__name = "confit.cli.UserError"
M.UserError = UserError

--- Raise a user error whose text is msg (printed as is: one line, no traceback).
function M.raise(msg)
  error(setmetatable({msg = tostring(msg)}, UserError), 0)
end

--- Re-raise the error e of a model's generate: the sampler's refusal of NaN / inf logits (weights
--- that are not finite, or so large that the logits overflow: an update that diverged) as a user
--- error naming `what` ("evaluation"), anything else as it is.
function M.raise_generate_error(e, what)
  local why = type(e) == "string" and e:match("non%-finite logits: (.*)$")
  if not why then error(e, 0) end
  M.raise(("%s: the model's logits are not finite (%s): its weights hold NaN or inf or have grown too large "
           .. "(a diverged update? a smaller --lr)"):format(what, why))
end

--- Why the lock of folder dir was not taken, from confit.lock's message and holder PID: "is in use
--- by another confit process (PID n)", or the real reason when no process holds it (the lock file
--- cannot be created: a read-only or full folder), which read "in use" before.
function M.lock_problem(dir, msg, pid)
  if pid then return ("%s is in use by another confit process (PID %d)"):format(dir, pid) end
  if tostring(msg):find("held by another process", 1, true) then
    return ("%s is in use by another confit process"):format(dir)
  end
  return ("%s: cannot take its lock file: %s"):format(dir, tostring(msg))
end

--- The refusal of folder dir whose lock was not taken: M.lock_problem, then the advice that fits
--- the reason: `wait` (default "wait for it or use another --out") when another process holds
--- the lock, `other` (default "use another --out") when the lock file cannot be made (waiting for
--- a read-only folder helps nothing).
function M.lock_refusal(dir, msg, pid, wait, other)
  local held = pid ~= nil or tostring(msg):find("held by another process", 1, true) ~= nil
  local advice = held and (wait or "wait for it or use another --out") or (other or "use another --out")
  return M.lock_problem(dir, msg, pid) .. "; " .. advice
end

-- strerror texts of failures of the machine, not of the code: a recipe that meets one (a full
-- disk while it writes a checkpoint) says so in one line, without a traceback; so does memory
-- running out (the core's "out of memory: ..." with what was asked, Lua's own "not enough memory")
local ENVIRONMENT = {"No space left on device", "Read-only file system", "Permission denied",
                     "Operation not permitted", "Input/output error", "Disk quota exceeded",
                     "Too many open files", "File too large", "out of memory", "not enough memory"}

--- True when e is an error message naming such a failure.
function M.is_environment_error(e)
  if type(e) ~= "string" then return false end
  for _, s in ipairs(ENVIRONMENT) do if e:find(s, 1, true) then return true end end
  return false
end

--- A die(fmt, ...) for one recipe: raises the user error "<name>: <fmt formatted>".
function M.die_for(name)
  return function(fmt, ...) M.raise(name .. ": " .. string.format(fmt, ...)) end
end

--- True when e is a user error (of the recipe called name, for the string form).
function M.is_user_error(e, name)
  if getmetatable(e) == UserError then return true end
  return type(e) == "string" and name ~= nil and e:sub(1, #name + 2) == name .. ": "
end

--- v as a message shows it: a string quoted (n = "2" is no number 2), a NaN "nan" whatever its
--- sign (tostring writes 0/0 as "-nan" on x86 and -(0/0) as "nan"; the core's messages say
--- "nan" too, cf_msgnum), anything else as tostring.
function M.show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if v ~= v then return "nan" end
  return tostring(v)
end

--- The text of an error object (the message of a user error, tostring otherwise).
function M.message(e)
  if getmetatable(e) == UserError then return e.msg end
  return tostring(e)
end

-- Running a recipe ------------------------------------------------------------------------------

--- True when e is the error a Ctrl-C raises in Lua code run by the confit executable
--- (lua/main.c: "interrupted"; with a position when something raised it again).
function M.is_interrupt(e)
  return type(e) == "string" and (e == "interrupted" or e:match("^[^\n]*:%d+: interrupted$") ~= nil)
end

--- True when the confit executable enters its REPL after the script (`confit -i script ...`:
--- lua/main.c starts the REPL even when the script fails), read from the options it left at
--- arg's negative indices (the program at the lowest; an -e takes the next word as its code).
function M.repl_follows()
  if not (arg and arg[0] and arg[-1]) then return false end
  local i = -1
  while arg[i - 1] ~= nil do i = i - 1 end
  i = i + 1                                     -- past the program
  while i < 0 do
    local a = arg[i]
    if a == "-i" then return true end
    if a == "--" then return false end
    if a == "-e" then i = i + 1 end
    i = i + 1
  end
  return false
end

-- The end of a recipe with an exit status when the REPL follows (M.exit): raised up to M.run.
local Exit = {}
Exit.__tostring = function(e) return ("exit status %d"):format(e.code) end

-- how many M.run calls are running their main (only they catch M.exit's raise)
local in_run = 0

--- End the program with exit status code (os.exit), or, when the REPL follows the script
--- (M.repl_follows) and M.run runs it, end the recipe's main instead so that M.run hands the
--- status to the REPL (a script that parses its flags without M.run, a benchmark, exits).
function M.exit(code)
  if in_run > 0 and M.repl_follows() then error(setmetatable({code = code}, Exit), 0) end
  os.exit(code)
end

--- Run main(argv) as the program `name`. A user error prints its message on stderr (one line;
--- "<name>: " is added when missing) and exits 1, and so does a failure of the machine
--- (M.is_environment_error: a full disk, a read-only folder), its message without the source
--- positions; a Ctrl-C prints "<name>: interrupted" and exits 130; any other error prints its
--- message and a traceback on stderr and exits 1. A number returned by main is the exit status;
--- anything else is returned. When the REPL follows (`confit -i recipe.lua ...`), nothing exits:
--- a failure (an error, or a status other than 0) is raised to the executable, which prints it
--- after "confit: " and starts the REPL (from a pipe, its exit status is then 1).
function M.run(name, main, argv)
  in_run = in_run + 1
  local ok, res = xpcall(main, function(e)
    if getmetatable(e) == Exit or M.is_user_error(e, name) or M.is_interrupt(e) then return e end
    if M.is_environment_error(e) then
      -- "x.lua:12: y.c:899: path: write failed: No space left on device" -> from "path"
      local msg = e
      repeat local n; msg, n = msg:gsub("^[%w_%-%./]+%.%a+:%d+: ", "") until n == 0
      return setmetatable({msg = (msg:gsub("\n.*$", ""))}, UserError)
    end
    return debug.traceback(tostring(e), 2)
  end, argv or {})
  in_run = in_run - 1
  local repl = M.repl_follows()
  -- end with status code after message msg (nil: none)
  local function finish(code, msg)
    if repl then
      if code == 0 then return 0 end
      error(setmetatable({msg = msg or ("%s: exit status %d"):format(name, code)}, UserError), 0)
    end
    if msg then io.stderr:write(msg, "\n") end
    os.exit(code)
  end
  if not ok then
    io.stdout:flush()   -- what was printed comes first
    if getmetatable(res) == Exit then return finish(res.code) end
    if M.is_interrupt(res) then
      if repl then error("interrupted", 0) end
      return finish(130, name .. ": interrupted")
    elseif M.is_user_error(res, name) then
      local msg = M.message(res):gsub("\n+$", "")
      if msg:sub(1, #name + 2) ~= name .. ": " then msg = name .. ": " .. msg end
      return finish(1, msg)
    end
    return finish(1, tostring(res))
  end
  if math.type(res) == "integer" then
    return finish(M.flush_stdout(name) and res or (res ~= 0 and res or 1))
  end
  return res
end

--- Flush the standard output; false after one line "<name>: cannot write the standard output:
--- ..." on stderr when that fails (a full disk, a closed pipe: the output is lost, so the run
--- must not look like a success).
function M.flush_stdout(name)
  local ok, err = io.stdout:flush()
  -- a write that failed earlier leaves the stream in error with nothing left to flush
  local core_ok, core = pcall(require, "confit.core")
  if ok and core_ok and core.stdout_ok and not core.stdout_ok() then
    ok, err = false, "an earlier write failed (a full disk or a closed pipe?)"
  end
  if ok then return true end
  io.stderr:write(("%s: cannot write the standard output: %s\n"):format(name, tostring(err)))
  return false
end

local function norm_source(p) return (p:gsub("^@", ""):gsub("^%./", "")) end

--- True when the file defining f (a function, or a stack level as in debug.getinfo: 1 = the
--- function calling is_main_script, the default) is the script being run (arg[0]); false when
--- that file was loaded by dofile/loadfile from another script (e.g. a test calling a recipe).
function M.is_main_script(f)
  if not (arg and arg[0]) then return false end
  local info = debug.getinfo(type(f) == "function" and f or (f or 1) + 1, "S")
  if not info then return false end
  return norm_source(info.source) == norm_source(arg[0])
end

-- True when the chunk that called M.main is the script being run (arg[0]), level 1 being M.main
-- here. A chunk ending `return cli.main(...)` makes a tail call: its frame is gone, and what
-- called it is seen instead. The script is called by the host program (a C function) with no
-- Lua function below it, while a file loaded by dofile / require / loadfile from a script (a
-- test loading a recipe) has that script's Lua frame further down; so after a tail call, "no Lua
-- frame below, on the main thread, while a script runs" is the script itself.
local function called_by_script(level)
  if not (arg and arg[0] and arg[-1]) then return false end   -- no script (REPL, -e)
  local _, on_main = coroutine.running()
  if not on_main then return false end
  local me = debug.getinfo(level + 1, "t")
  if not me then return false end
  if not me.istailcall then
    local caller = debug.getinfo(level + 2, "S")
    return caller ~= nil and caller.what == "main" and norm_source(caller.source) == norm_source(arg[0])
  end
  local l = level + 2
  while true do
    local info = debug.getinfo(l, "S")
    if not info then return true end
    if info.what ~= "C" then return false end
    l = l + 1
  end
end

--- The last line of a recipe (`return cli.main("name", main)`): when the file defining main is
--- the script being run, or the chunk calling cli.main is (a wrapper script such as
--- `rl.register_weighted(...); return cli.main("mine", dofile("recipes/rlsc.lua"))`: dofile
--- returns rlsc's main, which then runs as the wrapper's), run main(arg) under M.run and return
--- its result; otherwise return `module` (default main) to whoever loaded the file.
function M.main(name, main, module)
  if M.is_main_script(main) or called_by_script(1) then return M.run(name, main, arg) end
  return module or main
end

-- The flag table, and the check of the parsed flags, of each recipe main that declared one
-- (weak keys: a main no longer used goes).
local flag_tables = setmetatable({}, {__mode = "k"})
local flag_checks = setmetatable({}, {__mode = "k"})

--- Declare the parse_args spec main parses its flags with, and optionally check(o), which raises
--- the user errors of flags that parse but do not go together (it reads no file); returns main.
--- A recipe ends `return cli.main("rlsc", cli.declare_flags(main, SPEC, check_flags))`, so that
--- whoever loads it (ablate, checking a grid before it runs anything) finds them with
--- cli.flags_of(main) and cli.check_of(main).
function M.declare_flags(main, spec, check)
  flag_tables[main] = spec
  flag_checks[main] = check
  return main
end

--- The check declared for main (cli.declare_flags), or nil.
function M.check_of(main) return flag_checks[main] end

--- The spec declared for main (cli.declare_flags), or nil.
function M.flags_of(main) return flag_tables[main] end

-- Flags -----------------------------------------------------------------------------------------

local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

local function describe_range(s)
  local parts = {}
  if s.choices then parts[#parts + 1] = "one of " .. table.concat(s.choices, ", ") end
  if s.above ~= nil then parts[#parts + 1] = "> " .. tostring(s.above) end
  if s.min ~= nil then parts[#parts + 1] = ">= " .. tostring(s.min) end
  if s.max ~= nil then parts[#parts + 1] = "<= " .. tostring(s.max) end
  return table.concat(parts, " and ")
end

-- nil when v is allowed by the spec entry s, else what is allowed
local function out_of_range(s, v)
  if s.choices then
    for _, c in ipairs(s.choices) do if c == v then return nil end end
    return describe_range(s)
  end
  if type(v) == "number" then
    if (s.above ~= nil and not (v > s.above)) or (s.min ~= nil and v < s.min)
       or (s.max ~= nil and v > s.max) then
      return describe_range(s)
    end
  end
  return nil
end

--- Print the leading comment block of the Lua file at path (a script's documentation, its
--- --help), without the comment marks; false when the file cannot be read.
function M.print_header(path)
  local f = io.open(path, "rb")
  if not f then return false end
  for line in f:lines() do
    local c = line:match("^%-%-%s?(.*)$")
    if not c then break end
    print(c)
  end
  f:close()
  return true
end

--- The program name of a recipe path: "recipes/rlsc.lua" -> "rlsc".
function M.name_of(prog)
  return (tostring(prog):match("([^/]+)%.lua$")) or tostring(prog)
end

--- Parse `arg`-style flags: spec = {name = {type, default, min =, max =, above =, choices =,
--- shown =, help =}} (shown: the default as --help words it, when it is computed:
--- "runs/rlsc-<UTC time>"; help: what the flag does, printed under it by --help)
--- with type "string", "number", "int", "flag" (no value) or "list" (a string that may be given
--- again: each one is added to a list, {} when none is given); --some-name and --some_name both
--- set some_name; --name value and --name=value both work (a value starting with "--", or "-h",
--- only as --name=value: after --name it is a flag, and the value was left out). A flag given
--- again (in either spelling) is refused: which value was meant is unknown. min/max bound numbers inclusively,
--- above exclusively; choices lists the allowed strings. --help / -h prints the flags and exits
--- 0, or 1 when the standard output cannot be written (notes, when given: lines printed after
--- the flags; M.exit: with the REPL to follow, main ends instead). Mistakes raise user errors
--- "<name>: ..." (name: the recipe's file name without .lua).
--- Returns the options table (defaults filled in, `given` = the set of names given).
function M.parse_args(argv, spec, prog, notes)
  local name = M.name_of(prog)
  local die = M.die_for(name)
  local o, given = {}, {}
  for k, s in pairs(spec) do o[k] = s[2] end
  for k, s in pairs(spec) do if s[1] == "list" then o[k] = {} end end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      local names = {}
      for k in pairs(spec) do names[#names + 1] = k end
      table.sort(names)
      print(("usage: confit %s [flags]"):format(prog))
      for _, k in ipairs(names) do
        local s = spec[k]
        local range = describe_range(s)
        -- (no default: "none", not Lua's nil, or what the spec's shown says is taken then)
        local default = s.shown or (s[2] == nil and "none" or tostring(s[2]))
        print(("  --%-22s %-7s default %s%s"):format(k:gsub("_", "-"), s[1], default,
                                                     range ~= "" and ("; " .. range) or ""))
        -- what the flag does, under it (wrapped at 96 columns)
        if s.help then
          local line = "     "
          for word in s.help:gmatch("%S+") do
            if #line + 1 + #word > 96 and line:find("%S") then print(line); line = "     " end
            line = line .. " " .. word
          end
          print(line)
        end
      end
      if notes then print(notes) end
      M.exit(M.flush_stdout(name) and 0 or 1)   -- a lost help text is no success
    end
    local flag, val = a:match("^%-%-([%w_%-]+)=(.*)$")
    if not flag then flag = a:match("^%-%-([%w_%-]+)$") end
    if not flag then die("unexpected argument '%s' (flags start with --; see --help)", a) end
    local key = flag:gsub("%-", "_")
    local s = spec[key]
    if not s then die("unknown flag --%s (see --help)", flag) end
    if given[key] and s[1] ~= "list" then die("--%s is given twice (give each flag once)", flag) end
    if s[1] == "flag" then
      o[key] = true
      if val then
        if val == "false" or val == "0" then o[key] = false
        elseif not (val == "true" or val == "1") then
          die("--%s is a flag: give it alone, or =true / =false, not '%s'", flag, val)
        end
      end
    else
      if val == nil then
        i = i + 1
        val = argv[i]
        -- a flag in its place: the value was left out (--out --quiet made a folder "--quiet")
        if val == nil or val:match("^%-%-") or val == "-h" then
          die("--%s needs a value%s", flag, val and (" (got the flag %s; a value starting with -- is given as --%s=VALUE)")
                                                      :format(val, flag) or "")
        end
      end
      if s[1] == "number" or s[1] == "int" then
        local v = tonumber(val)
        if v == nil or not finite(v) then die("--%s expects a number, got '%s'", flag, val) end
        if s[1] == "int" then
          v = math.tointeger(v)
          if v == nil then die("--%s expects an integer, got '%s'", flag, val) end
        end
        val = v
      end
      local bad = out_of_range(s, val)
      if bad then
        die("--%s must be %s, got %s", flag, bad,
            type(val) == "string" and ("'" .. val .. "'") or tostring(val))
      end
      if s[1] == "list" then table.insert(o[key], val) else o[key] = val end
    end
    given[key] = true
    i = i + 1
  end
  o.given = given
  return o
end

-- Input checks shared by the recipes ------------------------------------------------------------

--- The keys of a table, sorted (flag choices, axis names, parameter names).
function M.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

--- True when path names an existing directory entry (a file, a folder, a link, dangling or not),
--- asked with lstat (confit.path_kind). A lookup that fails for any reason but ENOENT (2),
--- ENOTDIR (20) or ENAMETOOLONG (36) counts as there (a folder we may not search could hold it:
--- never write over what may exist). (Until the seventeenth session a rename onto itself asked:
--- on a read-only file system it fails with EROFS before it looks, and every missing file of a
--- read-only model folder counted as there.)
function M.exists(path)
  local kind, _, code = require("confit").path_kind(path)
  return kind ~= nil or (code ~= 2 and code ~= 20 and code ~= 36)
end

--- A path as written, without "./" parts, repeated or trailing slashes ("a//./b/" -> "a/b"), to
--- compare two paths the user gave. The current folder written "./" is "." (it was "/", the root,
--- until the twenty-sixth session); "" (the folder part of "/name") is "/".
function M.tidy_path(p)
  local relative = p ~= "" and p:sub(1, 1) ~= "/"
  p = p:gsub("/+", "/")
  repeat local n; p, n = p:gsub("/%./", "/") until n == 0
  p = p:gsub("^%./", ""):gsub("/%.?$", "")
  if p == "" then return relative and "." or "/" end
  return p
end

--- nil when path is a regular file (or a link to one), missing, or unreadable for another reason
--- that an open will say; else why not and its kind: "not a regular file (a folder)", "dir" or
--- "not a regular file (a FIFO, socket or device)", "other". Asked without opening the path: a
--- FIFO (or a device) would block the open until a writer comes, a folder opens on Linux to fail
--- at the read. A link is judged by what it leads to (confit.path_kind is an lstat); a dangling
--- one is left to the open. Every reader by name asks it first (can_read, jsonio's readers,
--- bench.load, train's checkpoint checks).
function M.not_regular(path)
  local confit = require "confit"
  local kind = confit.path_kind(path)
  if kind == "link" then
    local real = confit.realpath(path)
    kind = real and confit.path_kind(real)
  end
  if kind == "dir" then return "not a regular file (a folder)", kind end
  if kind == "other" then return "not a regular file (a FIFO, socket or device)", kind end
  return nil
end

--- True when path can be opened for reading (a file, or a folder on Linux); false and why for a
--- FIFO, socket or device (or a link to one), which is never opened (the open would block).
function M.can_read(path)
  local why, kind = M.not_regular(path)
  if kind == "other" then return false, why end
  local f = io.open(path, "rb")
  if f then f:close(); return true end
  return false
end

--- True when path names a directory.
function M.is_dir(path)
  local f = io.open(path .. "/.", "rb")
  if f then f:close(); return true end
  return false
end

--- nil when a GPU is usable, else why not (confit.cuda.device_name's reason: no device, no
--- driver, a build without CUDA), for "--device cuda: no usable GPU (<reason>)".
function M.gpu_problem()
  local cuda = require("confit").cuda
  if cuda.available() then return nil end
  return tostring(select(2, cuda.device_name()))
end

--- What an existing path that is no folder is, for "--out PATH is ...": "a file, not a folder",
--- "a link to no folder (its target is missing or not a folder)", "a device, FIFO or socket, ..."
function M.not_a_folder(path)
  local kind = require("confit").path_kind(path)
  if kind == "link" then return "a link to no folder (its target is missing or not a folder)" end
  if kind == "other" then return "a device, FIFO or socket, not a folder" end
  return "a file, not a folder"
end

--- " (a path from the current folder, DIR)" for a relative path (a default such as
--- examples/toy/model is one: run from elsewhere, it is not found), "" for an absolute one.
function M.from_here(path)
  if path:sub(1, 1) == "/" then return "" end
  local p = io.popen("pwd 2>/dev/null")
  local here = p and p:read("l")
  if p then p:close() end
  return here and (" (a path from the current folder, %s)"):format(here) or ""
end

--- The project's root folder: this file is <root>/lua/confit/cli.lua (package.path holds
--- CONFIT_LUA_DIR, an absolute path); "." when it was found through a path relative to the root.
function M.project_root()
  local root = debug.getinfo(1, "S").source:match("^@(.*)/lua/confit/cli%.lua$")
  if root then return root ~= "" and root or "/" end
  return "."
end

--- o[key], a path the user did not give (its default, relative to the current folder) and that
--- is not there: the same path in the project these modules belong to when it is there, so that
--- a recipe run from another folder finds the shipped toy model (examples/toy/model); else o[key].
--- Sets o[key] to the path it returns.
function M.project_default(o, key)
  local path = o[key]
  if o.given[key] or type(path) ~= "string" or path:sub(1, 1) == "/" or M.exists(path) then return path end
  local there = M.tidy_path(M.project_root() .. "/" .. path)
  if M.exists(there) then o[key] = there end
  return o[key]
end

--- Check that dir is a Hugging Face model folder (has config.json); raises a user error
--- "<name>: <flag> '<dir>': ..." otherwise.
function M.check_model_dir(name, dir, flag)
  flag = flag or "--model"
  local die = M.die_for(name)
  if not M.exists(dir) then die("%s '%s': no such directory%s", flag, dir, M.from_here(dir)) end
  if not M.is_dir(dir) then die("%s '%s' is not a directory (a model folder is expected)", flag, dir) end
  if not M.exists(dir .. "/config.json") then
    die("%s '%s' is not a model folder (no config.json there)", flag, dir)
  end
end

--- The context length of model folder dir as the loader reads it: config.json's
--- max_position_embeddings, or when absent (or null) the loader's default for its model_type
--- (core/nn/qwen2.c, cf_qwen2_default_max_pos: llama 2048, qwen2 32768); nil when neither is
--- known (a value or model_type the loader refuses: its load says why). A config.json that cannot
--- be read is the user error "<name>: <flag> ...".
function M.model_context(name, dir, flag)
  local jsonio = require "confit.jsonio"
  local cfg, err = jsonio.read_json(dir .. "/config.json")
  if cfg == nil then M.die_for(name)("%s '%s': %s", flag or "--model", dir, tostring(err)) end
  if type(cfg) ~= "table" then
    M.die_for(name)("%s '%s': config.json is not a JSON object", flag or "--model", dir)
  end
  local n = cfg.max_position_embeddings
  if (n == nil or n == jsonio.null) and type(cfg.model_type) == "string" then
    return require("confit.core").model_default_context(cfg.model_type)
  end
  return math.tointeger(n)
end

--- Check that max_new new tokens after a prompt of `longest` tokens (the longest `what`) fit a
--- context of ctx positions (no check when ctx is nil); raises "<name>: ..." otherwise, with
--- `hint` (e.g. confit.evaluate.context_hint(template)) after a prompt that is too long.
--- by_default: max_new is the recipe's default, not the user's (the message says so).
function M.check_context(name, ctx, longest, max_new, what, hint, by_default)
  if not ctx then return end
  local die = M.die_for(name)
  local tail = hint and (" (" .. hint .. ")") or ""
  local shown = by_default and ("%d (the default: give a smaller --max-new-tokens)"):format(max_new)
                or tostring(max_new)
  if max_new >= ctx then
    die("--max-new-tokens %s must be below the model's context of %d positions", shown, ctx)
  end
  if longest >= ctx then
    die("the longest %s has %d tokens, %s the model's context of %d positions: no room for a new token%s",
        what or "prompt", longest, longest > ctx and "more than" or "as many as", ctx, tail)
  end
  if longest + max_new > ctx then
    die("--max-new-tokens %s does not fit: the longest %s has %d tokens and the model's context "
        .. "is %d positions (so at most %d)%s", shown, what or "prompt", longest, ctx, ctx - longest, tail)
  end
end

--- Check that path is a readable file; raises "<name>: <flag> '<path>': ..." otherwise.
function M.check_file(name, path, flag)
  local die = M.die_for(name)
  if not M.exists(path) then die("%s '%s': no such file", flag, path) end
  if M.is_dir(path) then die("%s '%s' is a directory, not a file", flag, path) end
  local f, err = io.open(path, "rb")
  if not f then die("%s '%s': %s", flag, path, tostring(err)) end
  f:close()
end

--- s as one shell word: as is when it holds only characters the shell leaves alone, else in
--- single quotes (the one quoting every shell command of confit uses).
function M.shell_quote(s)
  s = tostring(s)
  if s ~= "" and s:match("^[%w%-%./_=,@:+]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- The names in folder dir (dot files too, not . and ..), or nil when it cannot be listed.
function M.list_dir(dir)
  local p = io.popen("ls -A -- " .. M.shell_quote(dir) .. " 2>/dev/null")
  if not p then return nil end
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  if not p:close() then return nil end
  return names
end

--- Remove path and everything below it, when it exists: renamed aside first (one step, to a
--- temporary name jsonio.is_temp_name knows), then rm -rf. An rm that outlives a killed caller
--- then works on a name nobody uses again (it could remove what a next run had put at path).
function M.remove_tree(path)
  if not M.exists(path) then return end
  local tmp = require("confit.jsonio").temp_name(path)
  if tmp and os.rename(path, tmp) then path = tmp end
  os.execute("rm -rf -- " .. M.shell_quote(path))
end

--- Create directory dir (and its parents): true, or nil and a one-line message when that fails
--- or dir is a file, with mkdir's reason in brackets ("Not a directory", "Read-only file system").
function M.make_dir(dir)
  local p = io.popen("mkdir -p -- " .. M.shell_quote(dir) .. " 2>&1", "r")
  local said = p and p:read("a") or ""
  local ok = p and p:close()
  if not ok or not M.is_dir(dir) then
    -- mkdir's reason ("...: Read-only file system"), else the likely ones
    local why = said:match(":%s*([^:\n]+)%s*$") or "a file is in the way, or no permission"
    return nil, "cannot create directory " .. dir .. " (" .. why .. ")"
  end
  return true
end

--- Create directory dir (and its parents); raises "<name>: cannot create <flag> '<dir>'" when
--- that fails or dir is a file.
function M.mkdir_p(name, dir, flag)
  local ok, err = M.make_dir(dir)
  if not ok then
    M.die_for(name)("cannot create %s'%s' (%s)", flag and (flag .. " ") or "", dir,
                    err:match("%(([^()]*)%)$") or "a file is in the way, or no permission")
  end
end

return M
