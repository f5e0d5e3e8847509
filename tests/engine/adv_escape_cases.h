/* The escape corpus: scripts trying to leave the sandbox. Shared by engine and service tests. */
#ifndef MJ_ADV_ESCAPE_CASES_H
#define MJ_ADV_ESCAPE_CASES_H

#include "adv_util.h"

/* The whole reachable environment, by allowlist: anything else in _G or a library is a leak. */
#define ALLOWLIST_SCRIPT                                                                           \
	"local function set(s) local t = {} for w in s:gmatch('%S+') do t[w] = true end return t " \
	"end "                                                                                     \
	"local allowed = { "                                                                       \
	"  ADV_SENTINEL = true, _G = true, _VERSION = true, assert = true, collectgarbage = "      \
	"true, error = true, "                                                                     \
	"  getmetatable = true, ipairs = true, load = true, next = true, pairs = true, "           \
	"  pcall = true, print = true, rawequal = true, rawget = true, rawlen = true, "            \
	"  rawset = true, require = true, select = true, setmetatable = true, tonumber = true, "   \
	"  tostring = true, type = true, xpcall = true, "                                          \
	"  string = set('byte char format len lower pack packsize rep reverse sub unpack upper "   \
	"               find match gmatch gsub'), "                                                \
	"  table = set('concat insert move pack remove sort unpack'), "                            \
	"  math = set('abs ceil cos deg exp floor fmod huge log max maxinteger min mininteger "    \
	"             modf pi rad random randomseed sin sqrt tan tointeger type ult acos asin "    \
	"             atan'), "                                                                    \
	"  utf8 = set('char charpattern codepoint codes len offset'), "                            \
	"  coroutine = set('create isyieldable running status yield resume wrap close'), "         \
	"  os = set('clock date difftime time'), "                                                 \
	"} "                                                                                       \
	"for k, v in pairs(_G) do "                                                                \
	"  local a = allowed[k] assert(a, 'unexpected global ' .. tostring(k)) "                   \
	"  if type(a) == 'table' then for k2 in pairs(v) do "                                      \
	"    assert(a[k2], 'unexpected ' .. k .. '.' .. tostring(k2)) end end "                    \
	"end "                                                                                     \
	"local smt = getmetatable('') "                                                            \
	"for k in pairs(smt) do assert(set('__index __add __sub __mul __mod __pow __div __idiv "   \
	"  __unm')[k], 'string metatable has ' .. k) end "                                         \
	"assert(smt.__index == string) "                                                           \
	"return 'ok'"

/* A Lua 5.4 chunk header and the start of a function, as string.dump writes it. */
#define BYTECODE                                                                                   \
	"\x1bLuaT\x00\x19\x93\r\n\x1a\n\x04\x08\x08xV\x00\x00\x00\x00\x00\x00\x00\x00\x00"         \
	"\x00\x00(w@\x01\x80\x80\x80\x00\x01\x02\x85Q\x00\x00\x00"
#define NUL_AFTER_CODE "return 1\0garbage"
#define NUL_AT_START "\0return 1"
#define RAW_NUL_IN_STRING "return 'a\0b'"
#define LEN(s) (sizeof(s) - 1)

static const adv_case adv_escape_cases[] = {
    /* ---- hidden libraries and functions ---- */
    {.name = "allowlist_only", .src = ALLOWLIST_SCRIPT, .kind = MJ_KIND_NONE, .values = "\"ok\""},
    {.name = "no_io", .src = "return io", .kind = MJ_KIND_NONE, .values = "nil"},
    {.name = "os_dangerous_functions_absent",
     .src = "local n = 0 for _, k in ipairs{'execute', 'getenv', 'exit', 'remove', 'rename', "
            "'tmpname', 'setlocale'} do assert(os[k] == nil, k) n = n + 1 end return n",
     .kind = MJ_KIND_NONE,
     .values = "7"},
    {.name = "os_execute_call",
     .src = "os.execute('id')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "execute"},
    {.name = "os_exit_call", .src = "os.exit(1)", .kind = MJ_KIND_RUNTIME},
    {.name = "os_allowed_functions_work",
     .src = "return type(os.time()), type(os.clock()), os.date('!%Y', 0), os.difftime(2, 1)",
     .kind = MJ_KIND_NONE,
     .values = "\"number\", \"number\", \"1970\", 1f"},
    {.name = "os_date_bad_conversion", .src = "return os.date('%Ez%')", .kind = MJ_KIND_RUNTIME},
    {.name = "no_package",
     .src = "return package, debug, dofile, loadfile, warn",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil, nil, nil"},
    {.name = "require_os",
     .src = "return require('os')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "require_io",
     .src = "return require('io')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "require_debug", .src = "return require('debug')", .kind = MJ_KIND_RUNTIME},
    {.name = "require_path",
     .src = "return require('../../../../etc/passwd')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "require_not_installed_json",
     .src = "return require('json')",
     .kind = MJ_KIND_RUNTIME,
     .needle = "not found"},
    {.name = "string_dump_absent",
     .src = "return string.dump, ('').dump, getmetatable('').__index.dump",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil"},
    {.name = "string_dump_call", .src = "return string.dump(print)", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_stop", .src = "collectgarbage('stop')", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_default_collect", .src = "collectgarbage()", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_step", .src = "collectgarbage('step', 1e9)", .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_generational",
     .src = "collectgarbage('generational')",
     .kind = MJ_KIND_RUNTIME},
    {.name = "collectgarbage_count_allowed",
     .src = "return collectgarbage('count') > 0",
     .kind = MJ_KIND_NONE,
     .values = "true"},
    {.name = "format_bad_conversion",
     .src = "return string.format('%n', 1)",
     .kind = MJ_KIND_RUNTIME},

    /* ---- finalizers ---- */
    {.name = "setmetatable_with_gc",
     .src = "setmetatable({}, {__gc = function() end})",
     .kind = MJ_KIND_RUNTIME,
     .needle = "__gc"},
    {.name = "setmetatable_with_false_gc",
     .src = "setmetatable({}, {__gc = false})",
     .kind = MJ_KIND_RUNTIME,
     .needle = "__gc"},
    {.name = "gc_inherited_through_index_never_runs",
     .src = "ran = false for i = 1, 1000 do setmetatable({}, setmetatable({}, {__index = "
            "{__gc = function() ran = true end}})) end "
            "local junk = {} for i = 1, 200000 do junk[i % 100 + 1] = {i} end return ran",
     .kind = MJ_KIND_NONE,
     .values = "false"},

    /* ---- _ENV and load tricks ---- */
    {.name = "env_is_the_sandbox",
     .src = "return _ENV == _G, _G._G == _G, getmetatable(_G) == nil",
     .kind = MJ_KIND_NONE,
     .values = "true, true, true"},
    {.name = "local_env_hides_nothing",
     .src = "local function f() local _ENV = setmetatable({}, {__index = _G}) "
            "return io, os.execute, debug end return f()",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil"},
    {.name = "load_with_custom_env",
     .src = "local f = load('return io, os and os.getenv, package', 'x', 't', "
            "setmetatable({}, {__index = _G})) return f()",
     .kind = MJ_KIND_NONE,
     .values = "nil, nil, nil"},
    {.name = "load_source_limit",
     .src = "local f, err = load(string.rep(' ', 1048577)) return f, err",
     .kind = MJ_KIND_NONE,
     .values = "nil, \"chunk too large (limit 1048576 bytes)\""},
    {.name = "load_reader_source_limit",
     .src = "local piece = string.rep(' ', 65536) "
            "local f, err = load(function() return piece end) return f == nil, type(err)",
     .kind = MJ_KIND_NONE,
     .values = "true, \"string\""},
    {.name = "close_running_main_thread",
     .src = "return pcall(coroutine.close, coroutine.running())",
     .kind = MJ_KIND_NONE,
     .values = "false, \"cannot close a running coroutine\""},
    {.name = "resume_running_main_thread",
     .src = "return coroutine.resume(coroutine.running())",
     .kind = MJ_KIND_NONE,
     .values = "false, \"cannot resume non-suspended coroutine\""},

    /* ---- bytecode ---- */
    {.name = "eval_bytecode_header", .src = BYTECODE, .len = LEN(BYTECODE), .kind = MJ_KIND_SYNTAX},
    {.name = "eval_bytecode_signature_only", .src = "\x1bLua", .kind = MJ_KIND_SYNTAX},
    {.name = "load_binary_string",
     .src = "local f, err = load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n\\4\\8\\8junk') "
            "return f, err:find('binary') ~= nil",
     .kind = MJ_KIND_NONE,
     .values = "nil, true"},
    {.name = "load_binary_reader",
     .src = "local parts, i = {'\\27Lu', 'aT\\0junk'}, 0 "
            "local f, err = load(function() i = i + 1 return parts[i] end) "
            "return f, err:find('binary') ~= nil",
     .kind = MJ_KIND_NONE,
     .values = "nil, true"},
    {.name = "load_mode_b",
     .src = "local ok, f = pcall(load, 'return 1', 'x', 'b') return type(f) == 'function'",
     .kind = MJ_KIND_NONE,
     .values = "false"},
    {.name = "load_mode_b_binary",
     .src = "local ok, f = pcall(load, '\\27LuaT\\0junk', 'x', 'b') "
            "return type(f) == 'function'",
     .kind = MJ_KIND_NONE,
     .values = "false"},

    /* ---- NUL bytes ---- */
    {.name = "nul_after_code",
     .src = NUL_AFTER_CODE,
     .len = LEN(NUL_AFTER_CODE),
     .kind = MJ_KIND_SYNTAX},
    {.name = "nul_at_start", .src = NUL_AT_START, .len = LEN(NUL_AT_START), .kind = MJ_KIND_SYNTAX},
    {.name = "nul_escape_in_string",
     .src = "local s = 'a\\0b' return #s, s:byte(2), s",
     .kind = MJ_KIND_NONE,
     .values = "3, 0, \"a\\0b\""},
    {.name = "raw_nul_inside_string_literal",
     .src = RAW_NUL_IN_STRING,
     .len = LEN(RAW_NUL_IN_STRING),
     .kind = MJ_KIND_NONE,
     .values = "\"a\\0b\""},
    {.name = "load_nul_after_code",
     .src = "local f, err = load('return 1\\0garbage') return f, type(err)",
     .kind = MJ_KIND_NONE,
     .values = "nil, \"string\""},
};

/* The limits of every escape case that names none. */
static inline mj_limits
adv_escape_table_limits(void)
{
	return adv_limits(4u << 20, 10000000, 1000);
}

#endif
