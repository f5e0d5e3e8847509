/* Declarations shared between the engine's source files; never installed. */
#ifndef MJ_ENGINE_INTERNAL_H
#define MJ_ENGINE_INTERNAL_H

#include <lua.h>

/* Charges `steps` units of work done inside a C function (pattern matching, JSON, table moves)
 * against the running call's instruction budget, and checks the call's deadline and kill flag.
 * When a limit is hit it raises the call's kill error with lua_error and does not return, so the
 * caller must hold no malloc'd memory (use Lua-managed buffers only). Cheap: call it every few
 * hundred to few thousand steps. Outside an engine call it does nothing. */
void mj__engine_tick(lua_State *L, unsigned steps);

/* If the value at idx is a namespace proxy, pushes its data table and returns 1; otherwise
 * pushes nothing and returns 0. Never allocates or raises; needs two free stack slots. */
int mj__namespace_data(lua_State *L, int idx);

/* Whether p is the json.null sentinel (a light userdata). */
int mj__json_is_null(const void *p);

/* lua_CFunction that pushes the json module table (json.encode, json.decode, json.null). */
int mj__json_open(lua_State *L);

/* Replaces find, match, gmatch and gsub in the table at stack index idx with implementations
 * that call mj__engine_tick while they work, so a backtracking pattern ends at the deadline. */
void mj__strlib_install(lua_State *L, int idx);

#endif
