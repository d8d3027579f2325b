-- confit.jsonio: JSON and JSON-lines files for run directories (docs/RUNDIR.md).
--
-- Reading uses lua-cjson; writing is our own encoder because cjson keeps only 14 significant
-- digits and does not order keys. The encoder's output is deterministic:
--  * object keys sorted (byte order); keys must be strings;
--  * integers written as integers, floats with the shortest of %.15g/%.16g/%.17g that reads
--    back to the same double (a float with an integral value keeps a ".0");
--  * NaN and +-Inf are refused with an error naming the key path (e.g. `steps[3].loss`);
--  * a table is an array when its keys are exactly 1..n; the empty table is written as [],
--    unless marked with jsonio.object(t); a sparse or mixed table is an error;
--  * strings that are not valid UTF-8 get each bad byte replaced by U+FFFD (model samples
--    decoded from byte-level tokens may end inside a character).
-- On reading, numbers with an integral value that fit in 2^53 come back as Lua integers
-- (cjson reads every number as a float), null comes back as cjson.null. A leading UTF-8 byte
-- order mark is skipped. Numbers must be JSON and finite: cjson's extensions NaN, Infinity and
-- hex, and a literal too large for a double (1e999), are malformed input.
--
-- Errors: bad values given to the encoder are programming errors and raise. Environmental
-- failures (missing file, unreadable or malformed file, failed write) return nil, message;
-- the message names the file, and for malformed input its line ("runs/a/steps.jsonl:7: ...").
local cjson = require "cjson"

local M = {}

M.null = cjson.null

local OBJECT_MT = {__name = "jsonio.object"}
local ARRAY_MT = {__name = "jsonio.array"}

-- Mark t (default a new table) to be written as an object even when empty.
function M.object(t) return setmetatable(t or {}, OBJECT_MT) end
-- Mark t (default a new table) to be written as an array.
function M.array(t) return setmetatable(t or {}, ARRAY_MT) end

-- Encoding -------------------------------------------------------------------------------------

local ESC = {['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
             ["\r"] = "\\r", ["\t"] = "\\t"}

-- s with every byte that does not start a valid UTF-8 sequence replaced by U+FFFD.
local function fix_utf8(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local clen = c < 0x80 and 1 or c >= 0xF8 and 0 or c >= 0xF0 and 4 or c >= 0xE0 and 3
                 or c >= 0xC0 and 2 or 0
    local ch = clen > 0 and s:sub(i, i + clen - 1)
    if ch and #ch == clen and utf8.len(ch) == 1 then
      out[#out + 1] = ch
      i = i + clen
    else
      out[#out + 1] = "\239\191\189"
      i = i + 1
    end
  end
  return table.concat(out)
end

M.fix_utf8 = fix_utf8

local function encode_string(s)
  if not utf8.len(s) then s = fix_utf8(s) end
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Text of a number with enough digits to read back the same double.
function M.write_number(x, path)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then
    error(string.format("jsonio: %s is %s; JSON has no NaN or Inf", path or "number",
                        tostring(x)), 2)
  end
  local s
  for _, fmt in ipairs({"%.15g", "%.16g", "%.17g"}) do
    s = string.format(fmt, x)
    if tonumber(s) == x then break end
  end
  if not s:find("[%.e]") then s = s .. ".0" end
  return s
end

local function child_path(path, key)
  if type(key) == "number" then return string.format("%s[%d]", path, key) end
  if key:match("^[%a_][%w_]*$") then return path .. "." .. key end
  return path .. "[" .. string.format("%q", key) .. "]"
end

local encode_value

local function encode_table(t, path, seen, indent, depth, out)
  if seen[t] then error("jsonio: " .. path .. " contains itself (a cycle)", 0) end
  seen[t] = true
  local mt = getmetatable(t)
  local n, nstr, nother = 0, 0, 0
  for k in pairs(t) do
    if math.type(k) == "integer" and k >= 1 then n = n + 1
    elseif type(k) == "string" then nstr = nstr + 1
    else nother = nother + 1 end
  end
  local nl, pad, pad_in, colon = "", "", "", ":"
  if indent then
    nl = "\n"
    pad = string.rep(" ", indent * depth)
    pad_in = string.rep(" ", indent * (depth + 1))
    colon = ": "
  end
  if nother > 0 or (n > 0 and nstr > 0) then
    error("jsonio: " .. path .. " mixes key types (keys must be all strings or 1..n)", 0)
  end
  local is_array = n > 0 or (nstr == 0 and mt ~= OBJECT_MT)
  if mt ~= nil and (mt == cjson.empty_array_mt or mt == cjson.array_mt or mt == ARRAY_MT) then
    if nstr > 0 then error("jsonio: " .. path .. " is marked an array but has string keys", 0) end
    is_array = true
  end
  if is_array then
    for i = 1, n do
      if t[i] == nil then error("jsonio: " .. path .. " is a sparse array (hole at " .. i .. ")", 0) end
    end
    if n == 0 then out[#out + 1] = "[]"; seen[t] = nil; return end
    out[#out + 1] = "["
    for i = 1, n do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = nl .. pad_in
      encode_value(t[i], child_path(path, i), seen, indent, depth + 1, out)
    end
    out[#out + 1] = nl .. pad .. "]"
  else
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    if #keys == 0 then out[#out + 1] = "{}"; seen[t] = nil; return end
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = nl .. pad_in .. encode_string(k) .. colon
      encode_value(t[k], child_path(path, k), seen, indent, depth + 1, out)
    end
    out[#out + 1] = nl .. pad .. "}"
  end
  seen[t] = nil
end

encode_value = function(v, path, seen, indent, depth, out)
  local ty = type(v)
  if v == nil or v == cjson.null then out[#out + 1] = "null"
  elseif ty == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif ty == "number" then
    if math.type(v) == "float" and (v ~= v or v == math.huge or v == -math.huge) then
      error(string.format("jsonio: %s is %s; JSON has no NaN or Inf", path, tostring(v)), 0)
    end
    out[#out + 1] = M.write_number(v, path)
  elseif ty == "string" then out[#out + 1] = encode_string(v)
  elseif ty == "table" then encode_table(v, path, seen, indent, depth, out)
  else error("jsonio: " .. path .. " is a " .. ty .. ", which JSON cannot hold", 0) end
end

-- JSON text of v. opts.indent = spaces per level (pretty, multi-line); default one line.
-- opts.what is added to error messages ("writing runs/a/summary.json"); opts.level, the error's
-- level (default 2: the caller of encode).
function M.encode(v, opts)
  local out = {}
  local ok, err = pcall(encode_value, v, "value", {}, opts and opts.indent, 0, out)
  if not ok then
    -- a Ctrl-C (the hook raises "interrupted" between any two instructions) or an error object
    -- goes on as it is: the recipe prints "interrupted" and exits 130, not a traceback
    if type(err) ~= "string" or require("confit.cli").is_interrupt(err) then error(err, 0) end
    if opts and opts.what then err = err .. " (" .. opts.what .. ")" end
    error(err, opts and math.tointeger(opts.level) or 2)
  end
  return table.concat(out)
end

-- Decoding -------------------------------------------------------------------------------------

-- A decoder of our own that refuses NaN, Infinity and hex numbers (the module's cjson accepts
-- them, and other users of cjson keep its settings).
local strict = cjson.new()
strict.decode_invalid_numbers(false)

local NOT_FINITE = "a number that is not finite (too large for a double)"

-- v with integral numbers made integers; nil, message when a number is not finite.
local function integerize(v)
  if type(v) == "table" then
    for k, x in pairs(v) do
      if type(x) == "number" then
        if x ~= x or x == math.huge or x == -math.huge then return nil, NOT_FINITE end
        if x == math.floor(x) and x >= -2^53 and x <= 2^53 then v[k] = math.tointeger(x) end
      elseif type(x) == "table" then
        local ok, err = integerize(x)
        if ok == nil then return nil, err end
      end
    end
  end
  return v
end

-- text without a leading UTF-8 byte order mark
local function no_bom(text)
  if text:sub(1, 3) == "\239\187\191" then return text:sub(4) end
  return text
end

local function decode_root(text)
  local ok, v = pcall(strict.decode, text)
  if not ok then
    -- cjson's own extensions were the only fault: say so (the position stays in the message)
    if pcall(cjson.decode, text) then
      v = v:gsub("^Expected value but found invalid %a+", "a number JSON does not have (NaN, Infinity or hex)")
    end
    return nil, v
  end
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil, NOT_FINITE end
    if v == math.floor(v) and math.abs(v) <= 2^53 then v = math.tointeger(v) end
  end
  return integerize(v)
end

-- Value of a JSON text, or nil, message.
function M.decode(text)
  local v, err = decode_root(no_bom(text))
  if v == nil and err then return nil, "jsonio: " .. err end
  return v
end

local function line_of(text, char)
  local line = 1
  for _ in text:sub(1, char - 1):gmatch("\n") do line = line + 1 end
  return line
end

local function read_all(path)
  -- a FIFO (or a device, or a link to one) would block the open until a writer comes: refused,
  -- as the C readers do (cli.not_regular judges a link by its target)
  if require("confit.cli").not_regular(path) then return nil, path .. ": not a regular file" end
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  if not text then return nil, path .. ": cannot read" end
  return text
end

-- Raises (at the caller of the caller) unless path is a non-empty string
local function check_path(path)
  if type(path) ~= "string" or path == "" then error("jsonio: the path must be a non-empty string, got " .. tostring(path), 3) end
end

--- nil when text (the contents of file path) is UTF-8, else "path:line: not UTF-8 text (byte N)":
--- JSON text is UTF-8, and other bytes (Latin-1, a cut character) were taken as they were and
--- written back with U+FFFD in their place. (read_json, read_jsonl and bench's readers ask it.)
function M.utf8_problem(text, path)
  local ulen, bad = utf8.len(text)
  if ulen then return nil end
  return string.format("%s:%d: not UTF-8 text (byte %d)", path, line_of(text, bad), bad)
end

-- The value in a JSON file, or nil, "path:line: message".
function M.read_json(path)
  check_path(path)
  local text, err = read_all(path)
  if not text then return nil, err end
  text = no_bom(text)
  local uerr = M.utf8_problem(text, path)
  if uerr then return nil, uerr end
  local v, derr = decode_root(text)
  if v == nil and derr then
    local char = tonumber(derr:match("at character (%d+)"))
    if not char then return nil, string.format("%s: %s", path, derr) end
    return nil, string.format("%s:%d: %s", path, line_of(text, char), derr)
  end
  return v
end

-- The list of values in a JSON-lines file (blank lines skipped; a null line is an error), or nil,
-- "path:line: message".
-- opts.partial_tail: drop a last line that has no newline and does not parse (a writer that is
-- still appending), instead of failing. opts.lines: also return the list of the records' lines
-- as they are in the file (to keep some of them verbatim: decoding turns 0.0 into 0).
-- A third result tells where things were: {linenos = each record's line number, dropped = the
-- line number of a last line dropped by partial_tail, or nil}.
function M.read_jsonl(path, opts)
  check_path(path)
  if opts ~= nil and type(opts) ~= "table" then error("jsonio.read_jsonl: opts must be a table, got " .. type(opts), 2) end
  local text, err = read_all(path)
  if not text then return nil, err end
  return M.decode_jsonl(text, path, opts)
end

--- read_jsonl over text already read from the file path (named in the messages): the one
--- reader of JSON lines (bench.load reads its JSON-lines files through it). Beside read_jsonl's
--- options, opts.nulls = true keeps a null line as the record jsonio.null (for a caller that
--- names what it expected instead). A failure's third result is {lineno = the line, decode = the
--- decoder's message when the line did not parse}, for a caller that words it its own way.
function M.decode_jsonl(text, path, opts)
  if type(text) ~= "string" then error("jsonio.decode_jsonl: text must be a string, got " .. type(text), 2) end
  check_path(path)
  if opts ~= nil and type(opts) ~= "table" then error("jsonio.decode_jsonl: opts must be a table, got " .. type(opts), 2) end
  text = no_bom(text) -- a mark starts the file, not each line
  local lines = opts and opts.lines and {} or nil
  local where = {linenos = {}}
  local out, lineno, pos = {}, 0, 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or #text + 1) - 1)
    lineno = lineno + 1
    pos = (nl or #text) + 1
    if line:find("%S") then
      if line:sub(1, 3) == "\239\187\191" then
        return nil, string.format("%s:%d: a byte order mark inside the file (only its first line may start with one)", path, lineno),
               {lineno = lineno}
      end
      local v, derr = decode_root(line)
      if v == nil then
        if not nl and opts and opts.partial_tail then where.dropped = lineno; break end
        return nil, string.format("%s:%d: %s", path, lineno, derr), {lineno = lineno, decode = derr}
      end
      if v == M.null and not (opts and opts.nulls) then
        return nil, string.format("%s:%d: a record is null", path, lineno), {lineno = lineno}
      end
      -- (checked per record: a torn last line may end inside a character)
      local ulen, bad = utf8.len(line)
      if not ulen then
        return nil, string.format("%s:%d: not UTF-8 text (byte %d of the line)", path, lineno, bad), {lineno = lineno}
      end
      out[#out + 1] = v
      where.linenos[#out] = lineno
      if lines then lines[#lines + 1] = line end
    end
  end
  return out, lines, where
end

-- Writing --------------------------------------------------------------------------------------

-- A temporary name beside path that nothing uses yet: path.tmp-PID-TIME-SERIAL. Unique per
-- process and call, so an existing file (or symlink) of a fixed name is never written through,
-- and two writers of one path never share a temporary file. (Not math.random: a user's seeded
-- random stream must not move because a file was written.)
local tmp_serial = 0
local function process_id()
  local f = io.open("/proc/self/stat", "rb")
  local line = f and f:read("l")
  local pid = line and line:match("^(%d+)")
  if f then f:close() end
  return pid or tostring({}):match("(%x+)$") or "0"
end
local PID
local function fresh_tmp_name(path, tag)
  PID = PID or process_id()
  for _ = 1, 100 do
    tmp_serial = tmp_serial + 1
    local tmp = string.format("%s.%s-%s-%d-%d", path, tag or "tmp", PID, os.time(), tmp_serial)
    -- anything there, a dangling symlink included, takes the name (cli.exists)
    if not require("confit.cli").exists(tmp) then return tmp end
  end
  return nil, path .. ": no free temporary name"
end

--- A fresh temporary name beside path (PATH.tmp-PID-TIME-SERIAL, M.is_temp_name's), or nil and
--- a message: what a writer or a remover (cli.remove_tree) puts aside under.
function M.temp_name(path) return fresh_tmp_name(path) end

-- The name a temporary file of this module's atomic writes has (NAME.tmp-PID-TIME-SERIAL, a
-- bare file name or a path): returns NAME (with the path's folder part) and the writer's PID,
-- or nil for any other name. Such a file is never data: it is a write in progress (its writer
-- alive) or one a killed writer left behind.
function M.is_temp_name(name)
  if type(name) ~= "string" then return nil end
  local base, pid = name:match("^(.+)%.tmp%-(%d+)%-%d+%-%d+$")
  if not base then return nil end
  return base, math.tointeger(tonumber(pid))
end

-- true when process pid is alive (its /proc entry exists and it is no zombie); nil when /proc
-- cannot tell. A killed process its parent has not reaped yet (a zombie: state Z, or X) writes
-- nothing more: it counted as alive before the twenty-second session, and its temporary files
-- stayed for good where the rerun came at once (ablate and its runs killed together)
local function pid_alive(pid)
  local self = io.open("/proc/self/stat", "rb")
  if not self then return nil end
  self:close()
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return false end
  local stat = f:read("a") or ""
  f:close()
  local state = stat:match("^.*%)%s+(%a)")   -- the field after the command name, which may hold ")"
  return state ~= "Z" and state ~= "X"
end

-- Remove the temporary files of atomic writes (M.is_temp_name) in folder dir (not below it)
-- whose writer is gone: its PID has no /proc entry, or it is this process (which is not
-- writing while it calls this). Those of another live process (a concurrent writer) stay, and
-- so does everything when /proc is not there to tell. A temporary folder of M.write_dir_atomic
-- (a model or checkpoint save cut short) goes with what it holds. The C writers
-- (core/io/safetensors.c: model.safetensors, config.json) use the same names. only (optional):
-- the temporaries of that one name alone (M.write_dir_atomic clears its own folder's). Returns the
-- list of names removed.
function M.remove_stale_temps(dir, only)
  local removed = {}
  local cli = require("confit.cli")
  local names = cli.list_dir(dir)
  if not names then return removed end
  PID = PID or process_id()
  for _, name in ipairs(names) do
    local base, pid = M.is_temp_name(name)
    if base and pid and (only == nil or base == only) and (tostring(pid) == PID or pid_alive(pid) == false) then
      local path = dir .. "/" .. name
      local gone = os.remove(path)
      if not gone and cli.is_dir(path) then
        gone = os.execute("rm -rf -- " .. cli.shell_quote(path) .. " 2>/dev/null") and not cli.exists(path)
      end
      if gone then removed[#removed + 1] = name end
    end
  end
  table.sort(removed)
  return removed
end

-- fsync from the C module (confit.fsync) when it is there; stock Lua without it writes unsynced
local has_core, core = pcall(require, "confit.core")
local function fsync(path)
  if has_core and type(core) == "table" and core.fsync then return core.fsync(path) end
  return true
end

-- The directory part of path ("." for a bare name).
local function dir_of(path)
  return path:match("^(.*)/[^/]*$") or "."
end

--- Sync a file written by appends (append_jsonl) to the disk. true or nil, message.
function M.sync(path)
  check_path(path)
  return fsync(path)
end

-- Write text to a fresh temporary file beside path, sync it to the disk, rename it over path
-- and sync the directory, so readers (and a restart after a crash) see the old or the new file.
function M.write_text_atomic(path, text)
  check_path(path)
  if type(text) ~= "string" then error("jsonio: writing " .. path .. ": the text must be a string, got " .. type(text), 2) end
  local tmp, terr = fresh_tmp_name(path)
  if not tmp then return nil, terr end
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  if ok then ok, werr = f:flush() end
  local cok, cerr = f:close()
  if ok and not cok then ok, werr = nil, cerr end
  if ok then ok, werr = fsync(tmp) end
  if not ok then
    -- named by the file being written (the temporary name is gone); io's messages name the
    -- temporary path already, which is cut out
    local why = tostring(werr):gsub("^" .. tmp:gsub("%p", "%%%0") .. ":%s*", "")
    os.remove(tmp)
    return nil, path .. ": " .. why
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp); return nil, rerr end
  local dok, derr = fsync(dir_of(path) == "" and "/" or dir_of(path))
  if not dok then return nil, derr end
  return true
end

-- Copy the file src to dst atomically (M.write_text_atomic). true, or nil and a message naming the
-- file that could not be read or written.
function M.copy_file(src, dst)
  check_path(src)
  check_path(dst)
  local data, err = read_all(src)
  if not data then return nil, "cannot read " .. src .. ": " .. tostring(err) end
  local ok, werr = M.write_text_atomic(dst, data)
  if not ok then return nil, "cannot write " .. dst .. ": " .. tostring(werr) end
  return true
end

-- Write a whole folder atomically: fill(tmp) writes the files into a fresh temporary folder
-- beside dir (DIR.tmp-PID-TIME-SERIAL: a M.is_temp_name, so M.remove_stale_temps clears one a
-- killed writer left), each file synced by its writer; then the folder is synced, renamed to dir
-- and dir's parent synced. Readers (and a restart after a crash) see the old folder or the
-- complete new one, never a part.
--   * fill raising (a full disk): the temporary folder is removed and the error raised again, as
--     it was; dir is untouched.
--   * dir missing, or an empty folder: the new folder is renamed onto it.
--   * dir a folder with entries: replaced only when opts.replaceable(name) is true for every
--     entry and none is a folder (nil, message naming the first other one, before anything is
--     written: a save never deletes what it did not write, say a user's notes or a folder given
--     by mistake). Then the two folders are swapped in one atomic step (confit.rename_exchange:
--     Linux's renameat2, which ext4, xfs, btrfs and tmpfs do), the parent synced, and the old
--     folder, now at DIR.tmp-..., removed (a crash before that leaves it to
--     M.remove_stale_temps). Where the swap cannot be done, dir is renamed aside to
--     DIR.old-PID-TIME-SERIAL, the new folder renamed in, the parent synced and the old folder
--     removed: a crash between those two renames leaves no dir but the old folder at DIR.old-...
--     (never removed by M.remove_stale_temps) and the new one at DIR.tmp-...; a failed second
--     rename puts the old folder back.
--   * dir a file (or a parent that cannot be made): nil, "cannot create directory ...".
--   * opts.recheck(dir), when given, runs after fill, right before dir is touched (dir may have
--     changed while fill ran): nil, message stops there, as a failed rename does.
--   * putting the new folder in place fails (recheck says no, dir cannot be set aside, the rename
--     fails): the temporary folder is removed; with opts.keep_on_failure (a folder that is costly
--     to make again, say a trained model; then the refusals above, found before fill, come after
--     it, so the folder is written anyway) it is kept instead, renamed to DIR.kept-PID-TIME-SERIAL
--     (not a temporary name, so M.remove_stale_temps leaves it; it stays at DIR.tmp-... if that
--     rename fails too), and the message ends "; the new folder is kept at <path>".
--   * opts.on_step(name), for tests: called as the folder is placed, with "exchanged" (the
--     swap), or "aside" (dir renamed aside) and "renamed" (the new folder renamed in).
-- Returns true (and fill's first result), or nil and a one-line message.
--- Why write_dir_atomic would not replace the folder dir (nil: it would, or dir is not there):
--- something not a folder is in the way, the folder cannot be listed, or it holds a folder or a
--- file that replaceable(name) does not accept (what the save does not write is never removed).
function M.replace_problem(dir, replaceable)
  local cli = require("confit.cli")
  if not cli.exists(dir) then return nil end
  if not cli.is_dir(dir) then
    local kind = require("confit").path_kind(dir)
    return "cannot create directory " .. dir .. " ("
           .. (kind == "file" and "a file is in the way" or kind == "link" and "a link to no folder is in the way"
               or kind and "something that is no folder is in the way" or "no permission to look") .. ")"
  end
  local old_names = cli.list_dir(dir)
  if not old_names then return "cannot list the folder " .. dir end
  table.sort(old_names)
  for _, name in ipairs(old_names) do
    -- a folder inside is never replaced, whatever its name ("notes.safetensors/" is no weights file)
    local sub = require("confit").path_kind(dir .. "/" .. name) == "dir"
    if sub or not (replaceable and replaceable(name)) then
      return ("%s already holds %s%s, which this save does not write: not replaced (save into a new or "
              .. "empty folder, or move it away first)"):format(dir, sub and "the folder " or "", name)
    end
  end
  return nil
end

function M.write_dir_atomic(dir, fill, opts)
  if type(dir) ~= "string" or dir == "" then error("jsonio: the folder must be a non-empty string, got " .. tostring(dir), 2) end
  if type(fill) ~= "function" then error("jsonio: write_dir_atomic needs a function to fill the folder", 2) end
  opts = opts or {}
  local cli = require("confit.cli")
  dir = cli.tidy_path(dir)   -- "a//b/./" is "a/b"
  local last = dir:match("([^/]*)$")
  if dir == "/" or last == "." or last == ".." then
    return nil, ("cannot replace the folder '%s' as a whole: name it by its own name, not '.' or '..'"):format(dir)
  end
  local parent = dir_of(dir)
  if parent == "" then parent = "/" end
  local ok, err = cli.make_dir(parent)
  if not ok then return nil, err end
  -- why dir cannot be replaced, found before fill: nothing is written then, unless the caller
  -- keeps what it writes (opts.keep_on_failure): the folder is written and kept
  local refused = M.replace_problem(dir, opts.replaceable)
  if refused and not opts.keep_on_failure then return nil, refused end
  local old_names = not refused and cli.exists(dir) and cli.list_dir(dir) or {}
  -- earlier saves of dir that a killed writer left (DIR.tmp-PID-... of a dead PID) go first: no
  -- reader of dir removed them (pretrain_toy kept one per killed save, twenty-second session)
  M.remove_stale_temps(parent, last)
  local tmp, terr = fresh_tmp_name(dir)
  if not tmp then return nil, terr end
  local mk = io.popen("mkdir -- " .. cli.shell_quote(tmp) .. " 2>&1", "r")
  local said = mk and mk:read("a") or ""
  if not (mk and mk:close()) then   -- with mkdir's reason ("...: Read-only file system")
    return nil, "cannot create the temporary folder " .. tmp .. " (" .. (said:match(":%s*([^:\n]+)%s*$") or "no permission") .. ")"
  end
  local function remove(p) os.execute("rm -rf -- " .. cli.shell_quote(p) .. " 2>/dev/null") end
  local res = table.pack(pcall(fill, tmp))
  if not res[1] then
    remove(tmp)
    error(res[2], 0)
  end
  local fok, ferr = fsync(tmp)
  if not fok then remove(tmp); return nil, ferr end
  -- the new folder is complete: a failure from here removes it, or keeps it (opts.keep_on_failure)
  local function not_placed(msg)
    if not opts.keep_on_failure then remove(tmp); return nil, msg end
    local kept = fresh_tmp_name(dir, "kept")
    if kept and os.rename(tmp, kept) then tmp = kept end
    return nil, msg .. "; the new folder is kept at " .. tmp
  end
  if refused then return not_placed(refused) end
  if opts.recheck then
    local cok, cerr = opts.recheck(dir)
    if not cok then return not_placed(tostring(cerr)) end
  end
  local step = opts.on_step or function() end
  local aside
  if #old_names > 0 and has_core and type(core) == "table" and core.rename_exchange
     and core.rename_exchange(tmp, dir) then
    aside = tmp         -- one atomic step: dir is the new folder, and the old one is at tmp
    step("exchanged")
  else
    if #old_names > 0 then
      local rok, rerr
      aside, rerr = fresh_tmp_name(dir, "old")
      -- (not "aside and os.rename(...)": an "and" keeps one value, and the message was lost)
      if aside then rok, rerr = os.rename(dir, aside) end
      if not rok then return not_placed("cannot move the old " .. dir .. " aside: " .. tostring(rerr)) end
      step("aside")
    end
    local rok, rerr = os.rename(tmp, dir)
    if not rok then
      if aside then os.rename(aside, dir) end
      return not_placed("cannot rename " .. tmp .. " to " .. dir .. ": " .. tostring(rerr))
    end
    step("renamed")
  end
  local dok, derr = fsync(parent)
  if aside then remove(aside) end
  if not dok then return nil, derr end
  return true, res[2]
end

-- Write value as pretty JSON (2-space indent, sorted keys) atomically. true or nil, message.
-- Raises for values JSON cannot hold (NaN, functions, cycles) before touching the file.
function M.write_json_atomic(path, value, opts)
  check_path(path)
  local text = M.encode(value, {indent = (opts and opts.indent) or 2, what = "writing " .. path})
  return M.write_text_atomic(path, text .. "\n")
end

--- True when the file at path holds anything but white space: a JSON-lines file with records (a
--- missing file, an empty one or blank lines hold none).
function M.has_content(path)
  local f = io.open(path, "rb")
  if not f then return false end
  while true do
    local chunk = f:read(65536)
    if not chunk then f:close(); return false end
    if chunk:find("%S") then f:close(); return true end
  end
end

-- Append one value as one line. true or nil, message.
function M.append_jsonl(path, value)
  check_path(path)
  local line = M.encode(value, {what = "appending to " .. path})
  local f, err = io.open(path, "ab")
  if not f then return nil, err end
  local ok, werr = f:write(line, "\n")
  -- a full disk shows only when the buffer goes out: at the flush (or the close)
  if ok then ok, werr = f:flush() end
  local cok, cerr = f:close()
  if ok and not cok then ok, werr = nil, cerr end
  if not ok then return nil, path .. ": " .. tostring(werr) end
  return true
end

-- Write a whole list as a JSON-lines file atomically. true or nil, message.
function M.write_jsonl_atomic(path, list)
  check_path(path)
  local n = 0
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 then error(("jsonio: writing %s: the records must be a list, got the key %s"):format(path, tostring(k)), 2) end
    if k > n then n = k end
  end
  for i = 1, n do
    if list[i] == nil then error(("jsonio: writing %s: record %d of %d is nil"):format(path, i, n), 2) end
  end
  local lines = {}
  for i, v in ipairs(list) do
    lines[i] = M.encode(v, {what = string.format("writing %s, record %d", path, i)})
  end
  lines[#lines + 1] = ""
  return M.write_text_atomic(path, table.concat(lines, "\n"))
end

return M
