/* libFuzzer target: the input as Lua source, evaluated by an engine under small limits. */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "mj/engine.h"

#define MEMORY_LIMIT ((size_t)4 << 20)
#define INSTRUCTION_LIMIT 200000
#define TIMEOUT_MS 200
#define OUTPUT_LIMIT ((size_t)64 << 10)

/* Host function `echo(v)`: returns its first argument, so values cross into C and back. */
static mj_err
echo(void *ud, const mj_value *args, size_t nargs, mj_value *ret, char *err, size_t errlen)
{
	size_t i;

	(void)ud;
	for (i = 0; i < nargs; i++)
		fz_check_value(&args[i]);
	if (nargs == 0) {
		snprintf(err, errlen, "echo needs an argument");
		return MJ_EINVAL;
	}
	if (mj_value_copy(ret, &args[0]) != MJ_OK) {
		snprintf(err, errlen, "out of memory");
		return MJ_ENOMEM;
	}
	return MJ_OK;
}

/* The namespace `ns` = {name = "ns", list = {1, 2.5, "x\0y", true}, nested = {deep = {}}}. */
static const mj_value *
namespace_tree(void)
{
	static mj_value tree;
	static int built;
	mj_value *list, *nested;

	if (built)
		return &tree;
	FZ_CHECK(mj_value_map(&tree, 3) == MJ_OK);
	FZ_CHECK(mj_value_string(&tree.u.m.keys[0], "name", 4) == MJ_OK);
	FZ_CHECK(mj_value_string(&tree.u.m.vals[0], "ns", 2) == MJ_OK);
	FZ_CHECK(mj_value_string(&tree.u.m.keys[1], "list", 4) == MJ_OK);
	list = &tree.u.m.vals[1];
	FZ_CHECK(mj_value_array(list, 4) == MJ_OK);
	mj_value_int(&list->u.a.items[0], 1);
	mj_value_float(&list->u.a.items[1], 2.5);
	FZ_CHECK(mj_value_string(&list->u.a.items[2], "x\0y", 3) == MJ_OK);
	mj_value_bool(&list->u.a.items[3], true);
	FZ_CHECK(mj_value_string(&tree.u.m.keys[2], "nested", 6) == MJ_OK);
	nested = &tree.u.m.vals[2];
	FZ_CHECK(mj_value_map(nested, 1) == MJ_OK);
	FZ_CHECK(mj_value_string(&nested->u.m.keys[0], "deep", 4) == MJ_OK);
	FZ_CHECK(mj_value_map(&nested->u.m.vals[0], 0) == MJ_OK);
	built = 1;
	return &tree;
}

typedef struct tally {
	size_t items;
	size_t bytes;
	uint32_t levels;
} tally;

/* Counts a returned value the way the result limits do: every value and key is an item,
 * string and opaque bytes count, each table is a level. */
static void
count(const mj_value *v, uint32_t level, tally *t)
{
	size_t i;

	t->items++;
	switch (v->type) {
	case MJ_VSTRING:
	case MJ_VOPAQUE:
		t->bytes += v->u.s.len;
		break;
	case MJ_VARRAY:
		t->levels = level + 1 > t->levels ? level + 1 : t->levels;
		for (i = 0; i < v->u.a.len; i++)
			count(&v->u.a.items[i], level + 1, t);
		break;
	case MJ_VMAP:
		t->levels = level + 1 > t->levels ? level + 1 : t->levels;
		for (i = 0; i < v->u.m.len; i++) {
			count(&v->u.m.keys[i], level + 1, t);
			count(&v->u.m.vals[i], level + 1, t);
		}
		break;
	default:
		break;
	}
}

static void
check_result(const mj_result *r, const mj_limits *l)
{
	size_t reserve = l->memory / 16 > (64u << 10) ? l->memory / 16 : (64u << 10);
	tally t = {0, 0, 0};
	size_t i;

	if (r->kind == MJ_KIND_INTERNAL || r->kind == MJ_KIND_ENGINE_LOST ||
	    r->kind == MJ_KIND_QUOTA || r->kind > MJ_KIND_INTERNAL) {
		fprintf(stderr, "fuzz: eval failed with kind %s: %s\n", mj_kind_name(r->kind),
		        r->message != NULL ? r->message : "(no message)");
		fz_fail(__FILE__, __LINE__, "a script fails only with a script error kind");
	}
	FZ_CHECK((r->kind == MJ_KIND_NONE) == (r->message == NULL));
	FZ_CHECK(r->nvalues == 0 || (r->kind == MJ_KIND_NONE && r->values != NULL));
	FZ_CHECK(r->output != NULL && r->output[r->output_len] == '\0');
	FZ_CHECK(r->output_len <= l->output && r->stats.output_bytes == r->output_len);
	FZ_CHECK(r->stats.memory_peak <= l->memory + reserve);
	FZ_CHECK(r->stats.memory_limit == l->memory &&
	         r->stats.instruction_limit == l->instructions);
	if (r->kind == MJ_KIND_NONE)
		FZ_CHECK(r->stats.instructions <= l->instructions);
	for (i = 0; i < r->nvalues; i++) {
		count(&r->values[i], 0, &t);
		fz_check_value(&r->values[i]);
	}
	FZ_CHECK(t.items <= l->result_items && t.bytes <= l->result_bytes &&
	         t.levels <= l->result_depth);
}

/* After any script the engine must still answer: a script may leave its globals filling the
 * heap, in which case the next call is killed for memory and the engine reset, and the one
 * after must work. */
static void
check_usable(mj_engine *e)
{
	static const char src[] = "return 1+1";
	mj_result r;
	int tries;

	for (tries = 0; tries < 2; tries++) {
		FZ_CHECK(mj_engine_eval(e, src, sizeof(src) - 1, "check", &r) == MJ_OK);
		if (r.kind == MJ_KIND_NONE) {
			FZ_CHECK(r.nvalues == 1 && r.values[0].type == MJ_VINT &&
			         r.values[0].u.i == 2);
			mj_result_free(&r);
			return;
		}
		fprintf(stderr, "fuzz: 'return 1+1' failed afterwards: %s: %s (reset %d)\n",
		        mj_kind_name(r.kind), r.message, (int)r.engine_reset);
		FZ_CHECK(r.kind == MJ_KIND_MEMORY && r.engine_reset);
		mj_result_free(&r);
	}
	fz_fail(__FILE__, __LINE__, "the engine answers 'return 1+1' after a reset");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const modules[] = {"json"};
	static int initialised;
	mj_engine_config cfg;
	mj_engine *e = NULL;
	mj_result r;

	if (!initialised) {
		FZ_CHECK(mj_engine_global_init() == MJ_OK);
		initialised = 1;
	}
	mj_engine_config_default(&cfg);
	cfg.limits.memory = MEMORY_LIMIT;
	cfg.limits.instructions = INSTRUCTION_LIMIT;
	cfg.limits.timeout_ms = TIMEOUT_MS;
	cfg.limits.output = OUTPUT_LIMIT;
	cfg.modules = modules;
	cfg.nmodules = 1;
	FZ_CHECK(mj_engine_new(&e, &cfg) == MJ_OK);
	FZ_CHECK(mj_engine_register_function(e, "echo", echo, NULL) == MJ_OK);
	FZ_CHECK(mj_engine_set_namespace(e, "ns", namespace_tree()) == MJ_OK);

	FZ_CHECK(mj_engine_eval(e, (const char *)data, size, "fuzz", &r) == MJ_OK);
	check_result(&r, &cfg.limits);
	mj_result_free(&r);
	check_usable(e);
	mj_engine_free(e);
	return 0;
}
