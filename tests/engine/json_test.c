/* Tests for the json module, built standalone against liblua with a stub budget tick. */
#include "../../engine/src/json.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <lualib.h>

static unsigned long long tick_calls, tick_steps, tick_budget;

/* Stands in for the engine: counts work and, once a test sets a budget, raises like a kill. */
void
mj__engine_tick(lua_State *L, unsigned steps)
{
	tick_calls++;
	tick_steps += steps;
	if (tick_budget != 0 && tick_steps > tick_budget)
		luaL_error(L, "tick budget exceeded");
}

/* Stands in for the engine's namespaces: none exist in these standalone states. */
int
mj__namespace_data(lua_State *L, int idx)
{
	(void)L;
	(void)idx;
	return 0;
}

static const char prelude[] =
    "function deq(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return math.type(a) == math.type(b) and a == b end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in next, a do if not deq(v, rawget(b, k)) then return false end end\n"
    "  for k in next, b do if rawget(a, k) == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function eq(got, want, what)\n"
    "  if got ~= want or math.type(got) ~= math.type(want) then\n"
    "    error(string.format('%s: got %q (%s), want %q (%s)', what or 'value',\n"
    "      tostring(got), math.type(got) or type(got),\n"
    "      tostring(want), math.type(want) or type(want)), 2)\n"
    "  end\n"
    "end\n"
    "function fails(want, f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok then error('expected error ' .. want, 2) end\n"
    "  if err ~= want then\n"
    "    error(string.format('error: got %q, want %q', tostring(err), want), 2)\n"
    "  end\n"
    "end\n"
    "function roundtrip(v, opts)\n"
    "  local s = json.encode(v, opts)\n"
    "  if not deq(json.decode(s), v) then error('round trip changed ' .. s, 2) end\n"
    "  return s\n"
    "end\n"
    "function nest(n)\n"
    "  local t = {}\n"
    "  local cur = t\n"
    "  for i = 2, n do cur[1] = {}; cur = cur[1] end\n"
    "  return t\n"
    "end\n"
    "function fuzz_check(s)\n"
    "  local ok, v = pcall(json.decode, s)\n"
    "  if not ok then\n"
    "    if type(v) ~= 'string' or v:sub(1, 13) ~= 'json.decode: ' then\n"
    "      error('bad decode error: ' .. tostring(v))\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  local ok2, out = pcall(json.encode, v, {sort_keys = true})\n"
    "  if not ok2 then\n"
    "    if out ~= 'json.encode: cannot encode NaN or infinity' then\n"
    "      error('re-encode failed: ' .. tostring(out))\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  local back = json.decode(out)\n"
    "  if not deq(v, back) then error('round trip changed ' .. out) end\n"
    "  if json.encode(back, {sort_keys = true}) ~= out then error('unstable ' .. out) end\n"
    "end\n";

static void
run_lua(lua_State *L, const char *code)
{
	if (luaL_loadbuffer(L, code, strlen(code), "=test") != LUA_OK ||
	    lua_pcall(L, 0, 0, 0) != LUA_OK)
		fail_msg("%s", lua_tostring(L, -1));
}

static void
open_json(lua_State *L)
{
	lua_pushcfunction(L, mj__json_open);
	lua_call(L, 0, 1);
	lua_setglobal(L, "json");
	run_lua(L, prelude);
}

static int
setup(void **state)
{
	lua_State *L = luaL_newstate();

	if (L == NULL)
		return -1;
	luaL_openlibs(L);
	open_json(L);
	tick_calls = tick_steps = tick_budget = 0;
	*state = L;
	return 0;
}

static int
teardown(void **state)
{
	lua_close(*state);
	tick_budget = 0;
	return 0;
}

/* Calls json.<fn>(arg) where arg is the string s, leaving the result or error on the stack. */
static int
call_json(lua_State *L, const char *fn, const char *s, size_t len)
{
	lua_getglobal(L, "json");
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	lua_pushlstring(L, s, len);
	return lua_pcall(L, 1, 1, 0);
}

static void
test_roundtrip(void **state)
{
	run_lua(
	    *state,
	    "for _, v in ipairs({true, false, 0, -5, 3.25, -0.5, '', 'h\\u{e9}\\0llo\\n',\n"
	    "    math.maxinteger, math.mininteger, 1e300, 5e-324, 2^53}) do\n"
	    "  roundtrip(v)\n"
	    "end\n"
	    "roundtrip({1, 2, 3})\n"
	    "roundtrip({a = 1, b = {c = {true, false, json.null}}, ['\\u{1F600}'] = 'x'})\n"
	    "roundtrip({{}, {{}}, {x = {}}})\n"
	    "roundtrip({a = {1, {b = 'c'}, 2.5}}, {pretty = true})\n"
	    "roundtrip({a = {1, {b = 'c'}, 2.5}}, {pretty = true, sort_keys = true})\n"
	    "eq(json.encode(nil), 'null')\n"
	    "eq(json.encode(), 'null')\n"
	    "eq(json.encode(json.null), 'null')\n"
	    "eq(json.decode('null'), json.null)\n"
	    "eq(json.decode('true'), true)\n"
	    "eq(json.decode('false'), false)\n"
	    "eq(json.decode(' \\t\\r\\n[ 1 , 2 ]\\n ')[2], 2)\n"
	    "local s = {1}\n"
	    "eq(json.encode({s, s}), '[[1],[1]]')\n"
	    /* Random bit patterns cover the float formatter far better than hand-picked values. */
	    "math.randomseed(42)\n"
	    "for i = 1, 20000 do\n"
	    "  local d = string.unpack('d', string.pack('i8', math.random(math.mininteger,\n"
	    "      math.maxinteger)))\n"
	    "  if d == d and d ~= math.huge and d ~= -math.huge then\n"
	    "    local back = json.decode(json.encode(d))\n"
	    "    eq(back, d, json.encode(d))\n"
	    "  end\n"
	    "end\n");
}

static void
test_null(void **state)
{
	run_lua(*state, "eq(type(json.null), 'userdata')\n"
	                "local t = json.decode('[1,null,3,null]')\n"
	                "eq(#t, 4)\n"
	                "eq(t[2], json.null)\n"
	                "eq(t[4], json.null)\n"
	                "eq(json.encode(t), '[1,null,3,null]')\n"
	                "local o = json.decode('{\"a\":null}')\n"
	                "eq(o.a, json.null)\n"
	                "eq(json.encode(o), '{\"a\":null}')\n"
	                "eq(json.encode({json.null}), '[null]')\n");
}

static void
test_numbers(void **state)
{
	run_lua(*state,
	        "eq(json.encode(1), '1')\n"
	        "eq(json.encode(1.0), '1.0')\n"
	        "eq(json.encode(-0.0), '-0.0')\n"
	        "eq(json.encode(100.0), '100.0')\n"
	        "eq(json.encode(0.1), '0.1')\n"
	        "eq(json.encode(1/3), '0.3333333333333333')\n"
	        "eq(json.encode(0.1 + 0.2), '0.30000000000000004')\n"
	        "eq(json.encode(123456789.125), '123456789.125')\n"
	        "eq(json.encode(1e300), '1e+300')\n"
	        "eq(json.encode(1e-7), '1e-07')\n"
	        "eq(json.encode(2^53), '9007199254740992.0')\n"
	        "eq(json.encode(2^63), '9.223372036854776e+18')\n"
	        "eq(json.encode(math.maxinteger), '9223372036854775807')\n"
	        "eq(json.encode(math.mininteger), '-9223372036854775808')\n"
	        "eq(json.decode('1'), 1)\n"
	        "eq(json.decode('1.0'), 1.0)\n"
	        "eq(json.decode('-0'), 0)\n"
	        "eq(math.type(json.decode('-0.0')), 'float')\n"
	        "eq(1 / json.decode('-0.0'), -math.huge)\n"
	        "eq(json.decode('1e2'), 100.0)\n"
	        "eq(json.decode('1E+2'), 100.0)\n"
	        "eq(json.decode('25e-1'), 2.5)\n"
	        "eq(json.decode('0.5e-0'), 0.5)\n"
	        "eq(json.decode('9223372036854775807'), math.maxinteger)\n"
	        "eq(json.decode('-9223372036854775808'), math.mininteger)\n"
	        "eq(json.decode('9223372036854775808'), 2^63)\n"
	        "eq(json.decode('-9223372036854775809'), -2^63)\n"
	        "eq(json.decode('123456789012345678901234567890'), 1.2345678901234568e29)\n"
	        "eq(json.decode('1e400'), math.huge)\n"
	        "eq(json.decode('-1e400'), -math.huge)\n"
	        "eq(json.decode('1e-400'), 0.0)\n"
	        "eq(json.decode('[1.0]')[1], 1.0)\n"
	        "local long = '0.' .. string.rep('0', 1021) .. '1'\n"
	        "eq(json.decode(long), 0.0)\n"
	        "fails('json.decode: number too long at byte 1', json.decode, long .. '0')\n"
	        "fails('json.decode: number too long at byte 2', json.decode,\n"
	        "  '[' .. string.rep('7', 100000) .. ']')\n");
}

static void
test_strings(void **state)
{
	run_lua(*state,
	        "eq(json.decode('\"\\\\u00e9\"'), '\\xc3\\xa9')\n"
	        "eq(json.decode('\"\\\\u20AC\"'), '\\xe2\\x82\\xac')\n"
	        "eq(json.decode('\"\\\\ud83d\\\\ude00\"'), '\\xf0\\x9f\\x98\\x80')\n"
	        "eq(json.decode('\"\\\\uD834\\\\uDD1E\"'), '\\xf0\\x9d\\x84\\x9e')\n"
	        "eq(json.decode('\"\\\\udbff\\\\udfff\"'), '\\xf4\\x8f\\xbf\\xbf')\n"
	        "eq(json.decode('\"a\\\\u0000b\"'), 'a\\0b')\n"
	        "eq(json.decode('\"a\\\\/b\"'), 'a/b')\n"
	        "eq(json.decode('\"\\\\\"\\\\\\\\\\\\b\\\\f\\\\n\\\\r\\\\t\"'), "
	        "'\"\\\\\\b\\f\\n\\r\\t')\n"
	        "eq(json.decode('\"x\\\\ny\\\\u0041z\"'), 'x\\nyAz')\n"
	        "eq(json.decode('\"\\xc3\\xa9\\xef\\xbf\\xbf\\xf4\\x8f\\xbf\\xbf\\x7f\"'),\n"
	        "  '\\xc3\\xa9\\xef\\xbf\\xbf\\xf4\\x8f\\xbf\\xbf\\x7f')\n"
	        "eq(json.encode('\\0\\1\\31\\127'), '\"\\\\u0000\\\\u0001\\\\u001f\\127\"')\n"
	        "eq(json.encode('\\b\\f\\n\\r\\t'), '\"\\\\b\\\\f\\\\n\\\\r\\\\t\"')\n"
	        "eq(json.encode('\"\\\\/'), '\"\\\\\"\\\\\\\\/\"')\n"
	        "eq(json.encode('\\u{e9}\\u{1F600}'), '\"\\u{e9}\\u{1F600}\"')\n"
	        "local big = string.rep('ab\"\\n\\u{e9}', 5000)\n"
	        "eq(json.decode(json.encode(big)), big)\n"
	        "local keyed = json.decode('{\"k\\\\n\":1,\"1\":2}')\n"
	        "eq(keyed['k\\n'], 1)\n"
	        "eq(keyed['1'], 2)\n"
	        "eq(keyed[1], nil)\n");
}

static void
test_tables(void **state)
{
	run_lua(*state, "eq(json.encode({}), '{}')\n"
	                "eq(json.encode(json.decode('[]')), '{}')\n"
	                "eq(json.encode({1, 2, 3}), '[1,2,3]')\n"
	                "eq(json.encode({'a', {true}}), '[\"a\",[true]]')\n"
	                "local so = {sort_keys = true}\n"
	                "eq(json.encode({[1] = 1, [3] = 3}, so), '{\"1\":1,\"3\":3}')\n"
	                "eq(json.encode({[2] = 2}), '{\"2\":2}')\n"
	                "eq(json.encode({[0] = 0}), '{\"0\":0}')\n"
	                "eq(json.encode({[-1] = 1}), '{\"-1\":1}')\n"
	                "eq(json.encode({1, x = 2}, so), '{\"1\":1,\"x\":2}')\n"
	                "eq(json.encode({[math.mininteger] = 1}), '{\"-9223372036854775808\":1}')\n"
	                "eq(json.encode({a = 1}), '{\"a\":1}')\n"
	                "local d = json.decode('{\"a\":1,\"a\":2}')\n"
	                "eq(d.a, 2)\n"
	                "local t = {}\n"
	                "for i = 1, 1000 do t[i] = i end\n"
	                "t[500] = nil\n"
	                "eq(json.encode(t):sub(1, 1), '{')\n");
}

static void
test_pretty_sort(void **state)
{
	run_lua(
	    *state,
	    "local v = {c = {d = json.null}, a = {1, 2, {}}, b = 'x'}\n"
	    "eq(json.encode(v, {pretty = true, sort_keys = true}),\n"
	    "  '{\\n'\n"
	    "  .. '  \"a\": [\\n'\n"
	    "  .. '    1,\\n'\n"
	    "  .. '    2,\\n'\n"
	    "  .. '    {}\\n'\n"
	    "  .. '  ],\\n'\n"
	    "  .. '  \"b\": \"x\",\\n'\n"
	    "  .. '  \"c\": {\\n'\n"
	    "  .. '    \"d\": null\\n'\n"
	    "  .. '  }\\n'\n"
	    "  .. '}')\n"
	    "eq(json.encode(v, {sort_keys = true}),\n"
	    "  '{\"a\":[1,2,{}],\"b\":\"x\",\"c\":{\"d\":null}}')\n"
	    "eq(json.encode({1, {2}}, {pretty = true}), '[\\n  1,\\n  [\\n    2\\n  ]\\n]')\n"
	    "eq(json.encode({}, {pretty = true}), '{}')\n"
	    "eq(json.encode(5, {pretty = true}), '5')\n"
	    "eq(json.encode({k = 1}, {pretty = true, sort_keys = false}), '{\\n  \"k\": 1\\n}')\n"
	    /* Bytewise order: uppercase before '_' before lowercase, a prefix first, UTF-8 last. */
	    "local k = {['b'] = 1, ['B'] = 2, ['_'] = 3, ['a'] = 4, ['aa'] = 5, ['a\\0b'] = 6,\n"
	    "  ['\\u{e9}'] = 7, [10] = 8, [9] = 9, ['10a'] = 10}\n"
	    "eq(json.encode(k, {sort_keys = true}),\n"
	    "  '{\"10\":8,\"10a\":10,\"9\":9,\"B\":2,\"_\":3,\"a\":4,\"a\\\\u0000b\":6,\"aa\":5,'\n"
	    "  .. '\"b\":1,\"\\u{e9}\":7}')\n"
	    "local many = {}\n"
	    "for i = 1, 2000 do many['k' .. i] = i end\n"
	    "local out = json.encode(many, {sort_keys = true})\n"
	    "local prev = ''\n"
	    "for key in out:gmatch('\"(k%d+)\"') do\n"
	    "  assert(key > prev, key)\n"
	    "  prev = key\n"
	    "end\n"
	    "eq(json.encode(many, {sort_keys = true}), out)\n"
	    "assert(deq(json.decode(out), many))\n");
}

static void
test_raw_access(void **state)
{
	run_lua(
	    *state,
	    "local function boom() error('metamethod called') end\n"
	    "local mt = {__index = boom, __newindex = boom, __pairs = boom, __len = boom,\n"
	    "  __tostring = boom, __eq = boom, __lt = boom, __le = boom, __concat = boom,\n"
	    "  __call = boom, __metatable = 'locked'}\n"
	    "eq(json.encode(setmetatable({1, 2, 3}, mt)), '[1,2,3]')\n"
	    "eq(json.encode(setmetatable({b = 1, a = {}}, mt), {sort_keys = true}),\n"
	    "  '{\"a\":{},\"b\":1}')\n"
	    "eq(json.encode({b = 1, a = 2}, setmetatable({sort_keys = true}, mt)),\n"
	    "  '{\"a\":2,\"b\":1}')\n"
	    "eq(json.encode(setmetatable({}, {__index = {1, 2}})), '{}')\n"
	    "local sm = getmetatable('')\n"
	    "local saved = sm.__index\n"
	    "sm.__index = boom\n"
	    "local ok, err = pcall(function()\n"
	    "  eq(json.encode({'x', y = 'z'}, {sort_keys = true}), '{\"1\":\"x\",\"y\":\"z\"}')\n"
	    "  eq(json.decode('[\"x\"]')[1], 'x')\n"
	    "end)\n"
	    "sm.__index = saved\n"
	    "assert(ok, err)\n");
}

static void
test_encode_errors(void **state)
{
	run_lua(
	    *state,
	    "fails('json.encode: cannot encode function', json.encode, print)\n"
	    "fails('json.encode: cannot encode function', json.encode, {f = print})\n"
	    "fails('json.encode: cannot encode function', json.encode, {1, 2, function() end})\n"
	    "fails('json.encode: cannot encode thread', json.encode, coroutine.create(print))\n"
	    "fails('json.encode: cannot encode userdata', json.encode, io.stdout)\n"
	    "local nan = 'json.encode: cannot encode NaN or infinity'\n"
	    "fails(nan, json.encode, 0/0)\n"
	    "fails(nan, json.encode, math.huge)\n"
	    "fails(nan, json.encode, {x = -math.huge})\n"
	    "local utf = 'json.encode: invalid UTF-8 in string'\n"
	    "fails(utf, json.encode, '\\xff')\n"
	    "fails(utf, json.encode, 'ok\\x80')\n"
	    "fails(utf, json.encode, '\\xc0\\xaf')\n"
	    "fails(utf, json.encode, '\\xed\\xa0\\x80')\n"
	    "fails(utf, json.encode, '\\xf4\\x90\\x80\\x80')\n"
	    "fails(utf, json.encode, '\\xe2\\x82')\n"
	    "fails(utf, json.encode, '\\xf0\\x9f\\x98')\n"
	    "fails(utf, json.encode, {['\\xfe'] = 1})\n"
	    "fails(utf, json.encode, {['\\xfe'] = 1}, {sort_keys = true})\n"
	    "local t = {}\n"
	    "t[1] = t\n"
	    "fails('json.encode: cycle detected', json.encode, t)\n"
	    "local a, b = {}, {}\n"
	    "a.b = b\n"
	    "b.list = {1, 2, a}\n"
	    "fails('json.encode: cycle detected', json.encode, a)\n"
	    "fails('json.encode: cycle detected', json.encode, a, {sort_keys = true})\n"
	    "eq(#json.encode(nest(128)), 256)\n"
	    "fails('json.encode: nesting too deep', json.encode, nest(129))\n"
	    "fails('json.encode: nesting too deep', json.encode, nest(100000))\n"
	    "local key = 'json.encode: table key must be a string or integer, got '\n"
	    "fails(key .. 'float', json.encode, {[1.5] = 1})\n"
	    "fails(key .. 'float', json.encode, {[math.huge] = 1})\n"
	    "fails(key .. 'boolean', json.encode, {[true] = 1})\n"
	    "fails(key .. 'table', json.encode, {[{}] = 1})\n"
	    "fails(key .. 'userdata', json.encode, {[json.null] = 1})\n"
	    "fails(key .. 'function', json.encode, {[print] = 1})\n"
	    "fails('json.encode: duplicate key \"1\" (integer and string)', json.encode,\n"
	    "  {1, ['1'] = 2})\n"
	    "fails('json.encode: duplicate key \"-3\" (integer and string)', json.encode,\n"
	    "  {[-3] = 1, ['-3'] = 2}, {sort_keys = true})\n"
	    "fails(\"json.encode: unknown option 'indent'\", json.encode, {}, {indent = 2})\n"
	    "fails('json.encode: option names must be strings', json.encode, {}, {true})\n"
	    "fails(\"json.encode: option 'pretty' must be a boolean\", json.encode, {},\n"
	    "  {pretty = 1})\n"
	    "local ok, err = pcall(json.encode, {}, 5)\n"
	    "assert(not ok and err:find('table expected, got number', 1, true), err)\n");
}

static void
test_decode_errors(void **state)
{
	run_lua(
	    *state,
	    "local cases = {\n"
	    "  {'', 'unexpected end of input at byte 1'},\n"
	    "  {'   ', 'unexpected end of input at byte 4'},\n"
	    "  {'[', 'unexpected end of input at byte 2'},\n"
	    "  {'{', 'unexpected end of input at byte 2'},\n"
	    "  {'{\"a\"', 'unexpected end of input at byte 5'},\n"
	    "  {'{\"a\":', 'unexpected end of input at byte 6'},\n"
	    "  {'\"abc', 'unexpected end of input at byte 5'},\n"
	    "  {'tru', 'unexpected end of input at byte 4'},\n"
	    "  {'-', 'unexpected end of input at byte 2'},\n"
	    "  {'1.', 'unexpected end of input at byte 3'},\n"
	    "  {'1e', 'unexpected end of input at byte 3'},\n"
	    "  {'1e+', 'unexpected end of input at byte 4'},\n"
	    "  {'[1,]', 'trailing comma at byte 4'},\n"
	    "  {'{\"a\":1,}', 'trailing comma at byte 8'},\n"
	    "  {'[1, ]', 'trailing comma at byte 5'},\n"
	    "  {'[1 2]', \"expected ',' or ']' at byte 4\"},\n"
	    "  {'{\"a\" 1}', \"expected ':' at byte 6\"},\n"
	    "  {'{\"a\":1 \"b\":2}', \"expected ',' or '}' at byte 8\"},\n"
	    "  {'{1:2}', 'expected string key at byte 2'},\n"
	    "  {'{,}', 'expected string key at byte 2'},\n"
	    "  {\"{'a':1}\", 'expected string key at byte 2'},\n"
	    "  {'[,1]', \"unexpected character ',' at byte 2\"},\n"
	    "  {'[1,,2]', \"unexpected character ',' at byte 4\"},\n"
	    "  {'01', 'leading zero in number at byte 2'},\n"
	    "  {'-01', 'leading zero in number at byte 3'},\n"
	    "  {'[00]', 'leading zero in number at byte 3'},\n"
	    "  {'1.e5', 'invalid number at byte 3'},\n"
	    "  {'-a', 'invalid number at byte 2'},\n"
	    "  {'1ex', 'invalid number at byte 3'},\n"
	    "  {'-Infinity', 'invalid number at byte 2'},\n"
	    "  {'.5', \"unexpected character '.' at byte 1\"},\n"
	    "  {'+1', \"unexpected character '+' at byte 1\"},\n"
	    "  {'NaN', \"unexpected character 'N' at byte 1\"},\n"
	    "  {'Infinity', \"unexpected character 'I' at byte 1\"},\n"
	    "  {'nan', 'invalid literal at byte 2'},\n"
	    "  {'trUe', 'invalid literal at byte 3'},\n"
	    "  {'[nul]', 'invalid literal at byte 5'},\n"
	    "  {'nulll', 'trailing garbage at byte 5'},\n"
	    "  {'[1]x', 'trailing garbage at byte 4'},\n"
	    "  {'[1]]', 'trailing garbage at byte 4'},\n"
	    "  {'[1] [2]', 'trailing garbage at byte 5'},\n"
	    "  {'1 2', 'trailing garbage at byte 3'},\n"
	    "  {'0x10', 'trailing garbage at byte 2'},\n"
	    "  {'[1]\\0', 'trailing garbage at byte 4'},\n"
	    "  {'// c\\n1', \"unexpected character '/' at byte 1\"},\n"
	    "  {'[1 /* c */]', \"expected ',' or ']' at byte 4\"},\n"
	    "  {'# c\\n1', \"unexpected character '#' at byte 1\"},\n"
	    "  {\"'a'\", \"unexpected character ''' at byte 1\"},\n"
	    "  {'\\0', 'unexpected byte 0x00 at byte 1'},\n"
	    "  {'\\v1', 'unexpected byte 0x0b at byte 1'},\n"
	    "  {'\\xef\\xbb\\xbf[]', 'unexpected byte 0xef at byte 1'},\n"
	    "  {'\"a\\tb\"', 'control character in string at byte 3'},\n"
	    "  {'\"a\\nb\"', 'control character in string at byte 3'},\n"
	    "  {'\"\\0\"', 'control character in string at byte 2'},\n"
	    "  {'\"\\31\"', 'control character in string at byte 2'},\n"
	    "  {'\"\\\\x\"', 'invalid escape at byte 2'},\n"
	    "  {'\"ab\\\\U0041\"', 'invalid escape at byte 4'},\n"
	    "  {\"\\\"\\\\'\\\"\", 'invalid escape at byte 2'},\n"
	    "  {'\"\\\\u12g4\"', 'invalid \\\\u escape at byte 2'},\n"
	    "  {'\"\\\\u12\"', 'invalid \\\\u escape at byte 2'},\n"
	    "  {'\"\\\\ud800\"', 'lone surrogate in \\\\u escape at byte 2'},\n"
	    "  {'\"\\\\udc00\"', 'lone surrogate in \\\\u escape at byte 2'},\n"
	    "  {'\"x\\\\uDFFF\"', 'lone surrogate in \\\\u escape at byte 3'},\n"
	    "  {'\"\\\\ud800\\\\u0041\"', 'lone surrogate in \\\\u escape at byte 2'},\n"
	    "  {'\"\\\\ud800x\"', 'lone surrogate in \\\\u escape at byte 2'},\n"
	    "  {'\"\\\\ud800\\\\n\"', 'lone surrogate in \\\\u escape at byte 2'},\n"
	    "  {'\"\\\\ud800\\\\ud800\"', 'lone surrogate in \\\\u escape at byte 2'},\n"
	    "  {'\"\\\\ud800\\\\uzzzz\"', 'invalid \\\\u escape at byte 8'},\n"
	    "  {'\"\\xff\"', 'invalid UTF-8 in string at byte 2'},\n"
	    "  {'\"\\xc0\\xaf\"', 'invalid UTF-8 in string at byte 2'},\n"
	    "  {'\"\\xed\\xa0\\x80\"', 'invalid UTF-8 in string at byte 2'},\n"
	    "  {'\"\\xf4\\x90\\x80\\x80\"', 'invalid UTF-8 in string at byte 2'},\n"
	    "  {'\"\\xc3\"', 'invalid UTF-8 in string at byte 2'},\n"
	    "  {'\"ok\\x80\"', 'invalid UTF-8 in string at byte 4'},\n"
	    "  {'{\"\\xfe\":1}', 'invalid UTF-8 in string at byte 3'},\n"
	    "  {string.rep('[', 129) .. string.rep(']', 129), 'nesting too deep at byte 129'},\n"
	    "  {string.rep('[', 100000), 'nesting too deep at byte 129'},\n"
	    "  {string.rep('{\"a\":', 129) .. '1' .. string.rep('}', 129),\n"
	    "   'nesting too deep at byte 641'},\n"
	    "  {string.rep('[{\"a\":', 100000), 'nesting too deep at byte 385'},\n"
	    "}\n"
	    "for i, c in ipairs(cases) do\n"
	    "  local ok, err = pcall(json.decode, c[1])\n"
	    "  if ok then error(('case %d %q: decoded'):format(i, c[1])) end\n"
	    "  if err ~= 'json.decode: ' .. c[2] then\n"
	    "    error(('case %d %q: got %q, want %q'):format(i, c[1], err, c[2]))\n"
	    "  end\n"
	    "end\n"
	    "assert(#cases >= 30)\n"
	    "eq(#json.decode(string.rep('[', 128) .. string.rep(']', 128)), 1)\n"
	    "local ok, err = pcall(json.decode, 123)\n"
	    "assert(not ok and err:find('string expected, got number', 1, true), err)\n"
	    "ok, err = pcall(json.decode)\n"
	    "assert(not ok and err:find('string expected, got no value', 1, true), err)\n");
}

/* Every proper prefix of a valid document must fail cleanly, at the end of the input. */
static void
test_truncation(void **state)
{
	static const char *docs[] = {
	    "{\"a\":[1,-2.5e+3,true,false,null,{\"b\":\"x\\\"\\\\\\/\\b\\f\\n\\r\\t\"}],"
	    "\"u\":\"\\u00e9\\uD83D\\uDE00 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
	    " \"n\" : [ 0 , -0.0 , 12345678901234567890 , 1E-2 ] ,\"e\":{},\"f\":[]}",
	    "[\"\\ud83d\\ude00\"]",
	    "\"\\u0041\\ud834\\udd1e\xf4\x8f\xbf\xbf\"",
	    "[[[[[[[[[[[[]]]]]]]]]]]]",
	};
	lua_State *L = *state;
	size_t d, k;

	for (d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
		size_t len = strlen(docs[d]);

		assert_int_equal(call_json(L, "decode", docs[d], len), LUA_OK);
		lua_pop(L, 1);
		for (k = 0; k < len; k++) {
			char want[80];

			snprintf(want, sizeof(want),
			         "json.decode: unexpected end of input at byte %zu", k + 1);
			assert_int_equal(call_json(L, "decode", docs[d], k), LUA_ERRRUN);
			assert_string_equal(lua_tostring(L, -1), want);
			lua_pop(L, 1);
		}
	}
}

struct capped {
	size_t used, limit;
};

static void *
capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct capped *c = ud;
	void *p;

	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		c->used -= osize;
		return NULL;
	}
	if (c->limit != 0 && nsize > osize && c->used - osize + nsize > c->limit)
		return NULL;
	if ((p = realloc(ptr, nsize)) == NULL)
		return NULL;
	c->used = c->used - osize + nsize;
	return p;
}

static lua_State *
capped_state(struct capped *c)
{
	lua_State *L;

	c->used = 0;
	c->limit = 0;
	L = lua_newstate(capped_alloc, c);
	assert_non_null(L);
	luaL_openlibs(L);
	open_json(L);
	return L;
}

static int
call_global(lua_State *L, const char *fn, const char *arg)
{
	lua_getglobal(L, "json");
	lua_getfield(L, -1, fn);
	lua_remove(L, -2);
	lua_getglobal(L, arg);
	return lua_pcall(L, 1, 1, 0);
}

static void
test_memory_limit(void **state)
{
	struct capped c;
	lua_State *L = capped_state(&c);

	(void)state;
	run_lua(L, "doc = '[' .. string.rep('1,', 200000) .. '1]'\n"
	           "local s = string.rep('x', 100000)\n"
	           "big = {}\n"
	           "for i = 1, 100 do big[i] = s end\n"
	           "collectgarbage()\n");
	assert_true(c.used < 1024 * 1024);
	c.limit = 1024 * 1024;

	assert_int_equal(call_global(L, "decode", "doc"), LUA_ERRMEM);
	lua_pop(L, 1);
	assert_int_equal(call_global(L, "encode", "big"), LUA_ERRMEM);
	lua_pop(L, 1);
	run_lua(L, "eq(json.encode(json.decode('[1,{\"a\":2}]')), '[1,{\"a\":2}]')");
	assert_true(c.used <= c.limit);

	lua_close(L);
	assert_int_equal(c.used, 0);
}

/* Raises the allowance step by step, as libuv's OOM tests do: every failure must be ERRMEM. */
static void
test_memory_sweep(void **state)
{
	static const char *const fns[] = {"decode", "encode"};
	struct capped c;
	lua_State *L = capped_state(&c);
	size_t f, base, extra;
	int status = LUA_ERRMEM;

	(void)state;
	run_lua(L, "doc = '{\"list\":[1,2.5,\"x\\\\u00e9\\\\ud83d\\\\ude00\",null,true],'\n"
	           "  .. string.rep('\"k\":{\"a\":[[],{}],\"s\":\"' .. string.rep('\\\\n', 300) "
	           ".. '\"},', 3)\n"
	           "  .. '\"z\":' .. string.rep('[', 60) .. string.rep(']', 60) .. '}'\n"
	           "val = json.decode(doc)\n"
	           "for i = 1, 300 do val['key' .. i] = {i, tostring(i)} end\n"
	           "collectgarbage()\n");
	for (f = 0; f < 2; f++) {
		const char *arg = f == 0 ? "doc" : "val";
		int failures = 0;

		lua_gc(L, LUA_GCCOLLECT);
		base = c.used;
		for (extra = 0; extra < 4 * 1024 * 1024; extra += 64) {
			c.limit = base + extra;
			status = call_global(L, fns[f], arg);
			c.limit = 0;
			if (status != LUA_OK && status != LUA_ERRMEM)
				fail_msg("%s at +%zu: %s", fns[f], extra, lua_tostring(L, -1));
			lua_pop(L, 1);
			if (status == LUA_OK)
				break;
			failures++;
			lua_gc(L, LUA_GCCOLLECT);
		}
		assert_int_equal(status, LUA_OK);
		assert_true(failures > 10);
	}
	lua_close(L);
	assert_int_equal(c.used, 0);
}

static void
test_ticks(void **state)
{
	lua_State *L = *state;
	unsigned long long bytes;

	run_lua(L, "doc = '[' .. string.rep('\"abcdefghijklmno\",', 65536) .. '1]'\n"
	           "str = '\"' .. string.rep('y', 1000000) .. '\"'\n");
	bytes = 18ull * 65536 + 2;

	tick_calls = tick_steps = 0;
	run_lua(L, "eq(#json.decode(doc), 65537)");
	assert_true(tick_steps >= bytes / 16);
	assert_true(tick_steps <= 2 * bytes / 16);
	assert_true(tick_calls >= bytes / 4096 / 2);

	tick_calls = tick_steps = 0;
	run_lua(L, "eq(#json.decode(str), 1000000)");
	assert_true(tick_steps >= 1000000 / 16);
	assert_true(tick_calls >= 1000000 / 4096);

	tick_calls = tick_steps = 0;
	run_lua(L, "out = json.encode(json.decode(doc), {sort_keys = true})");
	assert_true(tick_calls >= 2 * bytes / 4096 / 2);

	tick_calls = tick_steps = 0;
	run_lua(L, "eq(json.encode({}), '{}')");
	assert_true(tick_calls <= 1);

	tick_calls = tick_steps = 0;
	tick_budget = 1000;
	run_lua(L, "fails('tick budget exceeded', json.decode, doc)\n");
	tick_calls = tick_steps = 0;
	run_lua(L, "fails('tick budget exceeded', json.decode, str)\n");
	tick_calls = tick_steps = 0;
	run_lua(L, "local t = {} for i = 1, 100000 do t[i] = i end\n"
	           "fails('tick budget exceeded', json.encode, t)\n");
	tick_calls = tick_steps = 0;
	run_lua(L, "fails('tick budget exceeded', json.encode, string.rep('z', 1000000))\n");
	tick_budget = 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Bytes that steer mutations towards the parser's interesting branches. */
static const char fuzz_alphabet[] = "{}[]\",:\\/ \t\n0123456789eE+-.tfnulrsabu\x00\x01\x1f\x7f"
                                    "\x80\xbf\xc2\xc3\xe0\xed\xef\xf0\xf4\xff";

static void
test_fuzz(void **state)
{
	static const char *seeds[] = {
	    "{\"a\":[1,-2.5e+3,true,false,null,{\"b\":\"x\\\"\\n\\u00e9\"}],\"c\":{}}",
	    "[\"\\ud83d\\ude00\",0,-0.0,1E-2,12345678901234567890,[[[]]]]",
	    "{\"k\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"n\":null, \"d\" : { \"e\" : [ ] } }",
	    "\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\"",
	    "[1e400,-1e400,1e-400,9223372036854775807,-9223372036854775808]",
	};
	lua_State *L = *state;
	char buf[512];
	int i;

	for (i = 0; i < 20000; i++) {
		size_t len, m, muts;

		if (i % 4 == 0) {
			len = rng() % 64;
			for (m = 0; m < len; m++)
				buf[m] =
				    (char)(rng() % 2
				               ? rng()
				               : (uint64_t)
				                     fuzz_alphabet[rng() %
				                                   (sizeof(fuzz_alphabet) - 1)]);
		} else {
			const char *seed = seeds[rng() % (sizeof(seeds) / sizeof(seeds[0]))];

			len = strlen(seed);
			memcpy(buf, seed, len);
			muts = 1 + rng() % 4;
			for (m = 0; m < muts; m++) {
				size_t at = len > 0 ? rng() % len : 0;
				char c = fuzz_alphabet[rng() % (sizeof(fuzz_alphabet) - 1)];

				switch (rng() % 5) {
				case 0:
					if (len > 0)
						buf[at] = c;
					break;
				case 1:
					if (len < sizeof(buf)) {
						memmove(buf + at + 1, buf + at, len - at);
						buf[at] = c;
						len++;
					}
					break;
				case 2:
					if (len > 0) {
						memmove(buf + at, buf + at + 1, len - at - 1);
						len--;
					}
					break;
				case 3:
					len = at;
					break;
				default:
					if (len > 0)
						buf[at] = (char)rng();
					break;
				}
			}
		}
		lua_getglobal(L, "fuzz_check");
		lua_pushlstring(L, buf, len);
		if (lua_pcall(L, 1, 0, 0) != LUA_OK)
			fail_msg("iteration %d: %s", i, lua_tostring(L, -1));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tables, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pretty_sort, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_raw_access, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_encode_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_decode_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
	    cmocka_unit_test(test_memory_limit),
	    cmocka_unit_test(test_memory_sweep),
	    cmocka_unit_test_setup_teardown(test_ticks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
