-- test_safetensors_lua.lua - confit.save_safetensors / confit.load_safetensors (lua/l_io.c over
-- core/io/safetensors.c): round trips of every dtype confit keeps (f32, f64, bf16, i32, i64),
-- 0-d and empty tensors, non-contiguous inputs, metadata; the file layout checked by hand
-- (8-byte little-endian header length, JSON header with "__metadata__" {"format": "pt"},
-- tensors ordered by element size then name, packed data offsets each a multiple of the element
-- size, little-endian values); hand-written F16 files widen to f32;
-- failures come back as nil, message naming the file (and the tensor where there is one).
local H = dofile("tests/lua/harness.lua")
local confit = require "confit"
local cjson = require "cjson"

local temps = {}
local function tempfile()
  local p = os.tmpname()
  temps[#temps + 1] = p
  return p
end

local read_file, write_file = H.read, H.write

-- A safetensors file written by hand: header JSON text and raw data bytes.
local function write_st(path, header, data)
  write_file(path, string.pack("<I8", #header) .. header .. data)
end

local function same_shape(a, b, what)
  local sa, sb = a:shape(), b:shape()
  H.eq(#sa, #sb, what .. ": rank")
  for i = 1, #sa do H.eq(sa[i], sb[i], what .. ": dim " .. i) end
end

-- Element-wise equality through the flat element list (works for any dtype and rank).
local function flat(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then for _, x in ipairs(v) do walk(x) end
    else out[#out + 1] = v end
  end
  walk(t:totable())
  return out
end

local function same_values(a, b, what)
  H.eq(a:dtype(), b:dtype(), what .. ": dtype")
  same_shape(a, b, what)
  local fa, fb = flat(a), flat(b)
  H.eq(#fa, #fb, what .. ": element count")
  for i = 1, #fa do
    if fa[i] ~= fb[i] then
      error(("%s: element %d is %s, expected %s"):format(what, i, tostring(fa[i]), tostring(fb[i])), 2)
    end
  end
end

H.case("round trip of f32, f64, bf16, i32, i64, 0-d, empty and non-contiguous tensors", function()
  local t = {
    f32 = confit.tensor({{1.5, -2.25, 3e-8}, {1e30, -0.0, 7}}),
    f64 = confit.tensor({0.1, 1 / 3, -1e-300, 2 ^ 60}, {dtype = "f64"}),
    bf16 = confit.tensor({1.5, -2.25, 3.0, 1024, -0.0078125}, {dtype = "bf16"}),
    i32 = confit.tensor({{1, -2}, {2147483647, -2147483648}}, {dtype = "i32"}),
    i64 = confit.tensor({2 ^ 40, -5, math.maxinteger, math.mininteger}, {dtype = "i64"}),
    scalar = confit.tensor(3.5),
    scalar_i64 = confit.tensor(-7, {dtype = "i64"}),
    empty = confit.zeros({0, 3}),
    empty_i64 = confit.zeros({4, 0}, {dtype = "i64"}),
    transposed = confit.tensor({{1, 2, 3}, {4, 5, 6}}):transpose(1, 2),
    randn = confit.randn({7, 5, 3}, {seed = 11}),
  }
  H.ok(not t.transposed:is_contiguous(), "the transposed input is a strided view")
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  H.eq(confit.save_safetensors(p, t), true, "save returns true")
  local back, meta = confit.load_safetensors(p)
  H.ok(back, "load: " .. tostring(meta))
  local n = 0
  for _ in pairs(back) do n = n + 1 end
  H.eq(n, 11, "tensor count")
  for name, want in pairs(t) do
    H.ok(back[name], "tensor " .. name .. " is back")
    same_values(back[name], want, name)
  end
  H.eq(#back.scalar:shape(), 0, "0-d stays 0-d")
  H.eq(back.scalar:item(), 3.5, "0-d value")
  H.eq(back.empty:numel(), 0, "empty")
  H.eq(back.i64:get(3), math.maxinteger, "i64 keeps all 64 bits")
  H.eq(back.transposed:get(1, 2), 4, "transposed values are written in logical order")
  H.eq(meta.format, "pt", "default metadata format")
  -- a tensor saved twice gives the same bytes (names sorted, deterministic layout)
  local p2 = tempfile()
  confit.save_safetensors(p2, back)
  H.eq(read_file(p2), read_file(p), "re-saving the loaded tensors gives the same file")
end)

H.case("metadata round trip", function()
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  local meta = {format = "pt", seed = "1234", note = "a \"quoted\" value\nwith a newline", ["ü"] = "ÿ"}
  confit.save_safetensors(p, {w = confit.ones({2, 2})}, meta)
  local t, m = confit.load_safetensors(p)
  H.ok(t and t.w, "tensor")
  local n = 0
  for k, v in pairs(m) do n = n + 1; H.eq(v, meta[k], "metadata " .. k) end
  H.eq(n, 4, "metadata entry count")
  -- metadata without "format": the writer adds "format": "pt" (Hugging Face needs it)
  confit.save_safetensors(p, {w = confit.ones({2})}, {origin = "test"})
  t, m = confit.load_safetensors(p)
  H.eq(m.origin, "test", "user key")
  H.eq(m.format, "pt", "format added")
end)

H.case("the header by hand: little-endian length, JSON, offsets, raw values", function()
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  local a = confit.tensor({1.5, -2.0, 0.25})
  local b = confit.tensor({{7, -8}}, {dtype = "i64"})
  local c = confit.tensor({1.0, -3.0}, {dtype = "bf16"})
  confit.save_safetensors(p, {b_ids = b, a_weights = a, c_half = c}, {format = "pt", k = "v"})
  local s = read_file(p)
  local n = string.unpack("<I8", s)
  H.ok(n > 0 and 8 + n <= #s, "header length inside the file")
  H.eq((8 + n) % 8, 0, "header padded so the data starts 8-byte aligned")
  local text = s:sub(9, 8 + n)
  H.ok(text:find('"__metadata__"', 1, true), "header mentions __metadata__")
  local hdr = cjson.decode(text)
  H.eq(hdr.__metadata__.format, "pt", "format pt")
  H.eq(hdr.__metadata__.k, "v", "user metadata")
  local names = {}
  for k in pairs(hdr) do if k ~= "__metadata__" then names[#names + 1] = k end end
  table.sort(names)
  H.eq(table.concat(names, ","), "a_weights,b_ids,c_half", "tensor entries")
  H.eq(hdr.a_weights.dtype, "F32", "F32")
  H.eq(hdr.b_ids.dtype, "I64", "I64")
  H.eq(hdr.c_half.dtype, "BF16", "BF16")
  H.eq(#hdr.b_ids.shape, 2, "shape rank"); H.eq(hdr.b_ids.shape[2], 2, "shape")
  -- offsets tile the data section without gaps or overlaps
  local ranges = {}
  for _, k in ipairs(names) do ranges[#ranges + 1] = hdr[k].data_offsets end
  table.sort(ranges, function(x, y) return x[1] < y[1] end)
  local at = 0
  for _, r in ipairs(ranges) do H.eq(r[1], at, "no gap"); at = r[2] end
  H.eq(8 + n + at, #s, "the data section ends at the end of the file")
  -- the values, decoded by hand from the bytes
  local base = 8 + n + 1
  local off = hdr.a_weights.data_offsets
  H.eq(off[2] - off[1], 12, "3 x f32")
  local x1, x2, x3 = string.unpack("<fff", s, base + off[1])
  H.eq(x1, 1.5); H.eq(x2, -2.0); H.eq(x3, 0.25)
  off = hdr.b_ids.data_offsets
  local i1, i2 = string.unpack("<i8i8", s, base + off[1])
  H.eq(i1, 7); H.eq(i2, -8)
  off = hdr.c_half.data_offsets
  local h1, h2 = string.unpack("<I2I2", s, base + off[1])
  H.eq(h1, 0x3F80, "bf16 1.0"); H.eq(h2, 0xC040, "bf16 -3.0")
end)

H.case("layout: element size descending, then name, so every tensor is naturally aligned", function()
  -- by name alone, "a.bias" (3 x bf16 = 6 bytes) would put "b.weight" (f32) at data offset 6
  local t = {
    ["a.bias"] = confit.tensor({1.0, -3.0, 0.25}, {dtype = "bf16"}),
    ["b.weight"] = confit.tensor({{1.5, -2.25}, {3e-8, 1e30}}),
    ["c.ids"] = confit.tensor({7, -8, 2 ^ 40}, {dtype = "i64"}),
    ["d.count"] = confit.tensor({1, -2, 2147483647}, {dtype = "i32"}),
    ["e.odd"] = confit.tensor({0.5}, {dtype = "bf16"}),
    ["f.f64"] = confit.tensor(0.1, {dtype = "f64"}),
  }
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  confit.save_safetensors(p, t)
  local s = read_file(p)
  local n = string.unpack("<I8", s)
  H.eq((8 + n) % 8, 0, "data section 8-aligned")
  local hdr = cjson.decode(s:sub(9, 8 + n))
  local size = {F64 = 8, I64 = 8, F32 = 4, I32 = 4, BF16 = 2}
  local names = {}
  for k, v in pairs(hdr) do
    if k ~= "__metadata__" then
      names[#names + 1] = k
      local el = size[v.dtype]
      H.eq((8 + n + v.data_offsets[1]) % el, 0,
        ("%s (%s) at file offset %d is a multiple of %d"):format(k, v.dtype, 8 + n + v.data_offsets[1], el))
    end
  end
  table.sort(names, function(x, y) return hdr[x].data_offsets[1] < hdr[y].data_offsets[1] end)
  H.eq(table.concat(names, ","), "c.ids,f.f64,b.weight,d.count,a.bias,e.odd", "data order")
  local back = assert(confit.load_safetensors(p))
  for name, want in pairs(t) do same_values(back[name], want, name) end
end)

H.case("a hand-written file (as another writer would make it) loads; F16 widens to f32", function()
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  local header = cjson.encode({
    h = {dtype = "F16", shape = {3}, data_offsets = {0, 6}},
    w = {dtype = "F32", shape = {2, 1}, data_offsets = {6, 14}},
    __metadata__ = {format = "pt", who = "hand"},
  })
  write_st(p, header, string.pack("<I2I2I2", 0x3C00, 0xC000, 0x3555) .. string.pack("<ff", 0.5, -4))
  local t, m = confit.load_safetensors(p)
  H.ok(t, "load: " .. tostring(m))
  H.eq(t.h:dtype(), "f32", "F16 loads as f32")
  H.eq(t.h:get(1), 1.0); H.eq(t.h:get(2), -2.0)
  H.near(t.h:get(3), 0.333251953125, 1e-9, "f16 0x3555")
  H.eq(t.w:get(1, 1), 0.5); H.eq(t.w:get(2, 1), -4.0)
  H.eq(m.who, "hand", "metadata")
end)

H.case("failures: nil and a message naming the file (and tensor)", function()
  local t, err = confit.load_safetensors("tests/no_such_file.safetensors")
  H.eq(t, nil, "missing file")
  H.ok(type(err) == "string" and err:find("no_such_file.safetensors", 1, true), "names the file: " .. tostring(err))
  -- truncated
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  confit.save_safetensors(p, {w = confit.ones({16, 16})})
  local s = read_file(p)
  write_file(p, s:sub(1, #s - 10))
  t, err = confit.load_safetensors(p)
  H.eq(t, nil, "truncated file")
  H.ok(err and err:find(p, 1, true), "names the file: " .. tostring(err))
  -- 16 x 16 f32 = 1024 bytes of data, 10 of them cut off
  H.ok(err:find("tensor 'w': data_offsets [0, 1024] out of range of the 1014-byte data section", 1, true),
       "says which tensor runs past the end: " .. err)
  -- shorter than the length prefix
  write_file(p, "abc")
  t, err = confit.load_safetensors(p)
  H.eq(t, nil, "3-byte file")
  H.ok(err and err:find(p, 1, true), "names the file: " .. tostring(err))
  H.ok(err:find("file is 3 bytes, shorter than the 8-byte header length", 1, true), "says it is too short: " .. err)
  -- a dtype confit does not load: the message names the tensor and the dtype
  write_st(p, '{"flags":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', "ab")
  t, err = confit.load_safetensors(p)
  H.eq(t, nil, "U8 file")
  H.ok(err and err:find("flags", 1, true) and err:find("U8", 1, true), "names tensor and dtype: " .. tostring(err))
  -- a size that does not match the shape names the tensor
  write_st(p, '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', string.rep("\0", 8))
  t, err = confit.load_safetensors(p)
  H.eq(t, nil, "wrong size")
  H.ok(err and (err:find("'w'", 1, true) or err:find('"w"', 1, true)), "names the tensor: " .. tostring(err))
  -- writing into a folder that does not exist
  t, err = pcall(confit.save_safetensors, "tests/no_such_dir/x.safetensors", {w = confit.ones({1})})
  H.eq(t, false, "save into a missing folder fails")
  H.ok(tostring(err):find("no_such_dir", 1, true), "names the path: " .. tostring(err))
end)

H.case("safetensors_nonfinite: the first float tensor holding NaN or inf, in the file's order, read in place", function()
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  local a, b = confit.tensor({1, -2, 3e38}), confit.tensor({{0, 5}, {6, 7}}, {dtype = "f64"})
  local c = confit.tensor({1, 2, 3}):to("bf16")
  confit.save_safetensors(p, {a = a, b = b, c = c, n = confit.tensor({2147483647}, {dtype = "i32"})})
  H.eq(confit.safetensors_nonfinite(p), false, "all finite")
  for _, case in ipairs({{"a", 0 / 0}, {"a", math.huge}, {"b", -math.huge}, {"c", 0 / 0}}) do
    local t = {a = a:clone(), b = b:clone(), c = c:to("f32")}
    local x = t[case[1]]
    if x:dim() == 2 then x:set(2, 2, case[2]) else x:set(x:numel(), case[2]) end
    if case[1] == "c" then t.c = t.c:to("bf16") end
    confit.save_safetensors(p, t)
    H.eq(confit.safetensors_nonfinite(p), case[1], ("%s holding %s"):format(case[1], tostring(case[2])))
  end
  -- two bad tensors: the first in the file (f64 before f32 before bf16, then by name)
  confit.save_safetensors(p, {a = a * (0 / 0), b = b * (0 / 0)})
  H.eq(confit.safetensors_nonfinite(p), "b", "f64 b is first in the file")
  -- a hand-written F16 infinity (0x7c00), at the end of a 3000-element tensor
  write_st(p, '{"h":{"dtype":"F16","shape":[3000],"data_offsets":[0,6000]}}',
           string.rep("\0\60", 2999) .. "\0\124")
  H.eq(confit.safetensors_nonfinite(p), "h", "F16 inf")
  local bad, err = confit.safetensors_nonfinite("tests/no_such_file.safetensors")
  H.ok(bad == nil and err:find("no_such_file.safetensors", 1, true), tostring(err))
  H.ok(not pcall(confit.safetensors_nonfinite, {}), "a table is not a path")
end)

H.case("argument errors on save", function()
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  H.raises(function() confit.save_safetensors(p, {[1] = confit.ones({1})}) end, "names must be strings")
  H.raises(function() confit.save_safetensors(p, {w = 3}) end, "save_safetensors: tensors.w is a number, not a tensor")
  H.raises(function() confit.save_safetensors(p, {a = confit.ones({1}), b = "x"} ) end,
           "save_safetensors: tensors.b is a string, not a tensor")
  H.raises(function() confit.save_safetensors(p, {w = confit.ones({1})}, {x = 1}) end, "save_safetensors: metadata must map strings to strings")
  H.raises(function() confit.save_safetensors(p, "w") end, "bad argument #2 to 'save_safetensors' (table expected, got string)")
end)

H.case("the model writer's file is what load_safetensors reads (same reader)", function()
  local ref = assert(confit.load_safetensors("tests/fixtures/tiny_qwen2/model.safetensors"))
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  confit.save_safetensors(p, ref, {format = "pt"})
  local back = assert(confit.load_safetensors(p))
  for name, want in pairs(ref) do same_values(back[name], want, name) end
  -- the model loader accepts a folder whose weights were written from Lua
  local dir = tempfile()
  os.remove(dir)
  assert(os.execute(("mkdir -p %q"):format(dir)))
  write_file(dir .. "/config.json", read_file("tests/fixtures/tiny_qwen2/config.json"))
  write_file(dir .. "/model.safetensors", read_file(p))
  local m, err = confit.load(dir)
  H.ok(m, "model from Lua-written weights: " .. tostring(err))
  local w = m:parameters()["model.norm.weight"]
  same_values(w, ref["model.norm.weight"], "model.norm.weight")
  m:free()
  os.execute(("rm -rf %q"):format(dir))
end)

H.case("seventeenth session: what the reader refuses is not written; a tensor no tensor can hold is nil, message", function()
  local p = tempfile()
  os.remove(p)              -- (os.tmpname made it)
  -- a name that is not UTF-8 made a file load_safetensors refused; a NUL cut a name or a value short
  local ok, err = pcall(confit.save_safetensors, p, {["\xff\xfe"] = confit.zeros({2})})
  H.ok(not ok and tostring(err):find("not UTF-8 text", 1, true), tostring(err))
  H.raises(function() confit.save_safetensors(p, {["a\0b"] = confit.zeros({2})}) end, "holds a NUL byte")
  H.raises(function() confit.save_safetensors(p, {a = confit.zeros({2})}, {k = "x\0y"}) end, "metadata \"k\" holds a NUL byte")
  H.eq(io.open(p, "rb"), nil, "nothing written")
  -- [2^52, 2^52, 0] holds no bytes, so the reader takes the header; no tensor can hold the shape
  local h = '{"a":{"dtype":"F32","shape":[4503599627370496,4503599627370496,0],"data_offsets":[0,0]}}'
  local f = assert(io.open(p, "wb")); f:write(string.pack("<I8", #h) .. h); f:close()
  local t, msg = confit.load_safetensors(p)
  H.eq(t, nil); H.ok(msg and msg:find(p .. ': tensor "a"', 1, true) and msg:find("too large", 1, true), tostring(msg))
end)

for _, p in ipairs(temps) do os.remove(p) end
-- (nineteenth session, mutation testing) header checks no test reached
do
local p = os.tmpname()
local function write(path, bytes) local f = assert(io.open(path, "wb")); f:write(bytes); f:close() end
local function st(header, data) write(p, string.pack("<I8", #header) .. header .. data) end
local function refused(what, ...)
  local ok, t, err = pcall(confit.load_safetensors, p)
  local msg = ok and err or t
  H.ok((not ok) or t == nil, what .. ": refused")
  for _, s in ipairs({...}) do H.ok(tostring(msg):find(s, 1, true), what .. ": message has '" .. s .. "': " .. tostring(msg)) end
end
H.case("overlapping data_offsets, by one byte", function()
  st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[3,7]}}',
     string.rep("\0", 7))
  refused("1-byte overlap", "overlap")
end)
H.case("an overlong UTF-8 sequence in a name", function()
  st('{"a\xC1\x81":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', string.rep("\0", 4))
  refused("overlong", "UTF-8")
end)
H.case("a header length past the end of the file by less than 8 bytes", function()
  local header = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
  write(p, string.pack("<I8", #header + 4) .. header)   -- 4 bytes short, within the 8-byte prefix slack
  refused("short header", "runs past the end")
end)
H.case("a dimension above 2^53", function()
  st('{"a":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}}', string.rep("\0", 4))
  refused("huge dim", "too large")
end)
os.remove(p)
os.remove(p)
end

H.finish()
