/* Tenant policies from the INI config file (read with inih), and their lookup and reload. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "mj/proto.h"
#include "mj/text.h"
#include "supervisor.h"

typedef struct entry {
	char name[129]; /* "" for [defaults] */
	unsigned set;
	mj_limits l;
	uint32_t max_engines;
	size_t max_memory;
	uint8_t wire[SV_POLICY_WIRE_MAX]; /* its TenantPolicy, packed once for every call */
	size_t wire_len;
} entry;

struct sv_policies {
	entry defaults;
	entry *tenants;
	size_t n;
};

typedef struct parse {
	sv_policies *p;
	char why[200];
} parse;

/* The per-engine limits a policy sets: the key in the config file, the flag on the command
 * line, and the bounds the service takes (mj_limits_check adds its own). */
typedef struct limit_key {
	const char *key, *flag;
	unsigned bit;
	bool size; /* takes the K M G KiB MiB GiB suffixes */
	uint64_t lo, hi;
	const char *want; /* the bounds, in words */
	size_t off, width;
} limit_key;

#define LIMIT_KEY(key, flag, bit, size, lo, hi, want, field)                                       \
	{                                                                                          \
		key, flag, bit, size, lo, hi, want, offsetof(mj_limits, field),                    \
		    sizeof(((mj_limits *)0)->field)                                                \
	}

static const limit_key limit_keys[] = {
    LIMIT_KEY("memory_limit", "--memory-limit", F_MEMORY, true, 0, UINT64_MAX, "a size", memory),
    LIMIT_KEY("instruction_limit", "--instruction-limit", F_INSTR, false, 0, UINT64_MAX, "a number",
              instructions),
    LIMIT_KEY("timeout_ms", "--timeout-ms", F_TIMEOUT, false, 0, 3600000, "0-3600000", timeout_ms),
    LIMIT_KEY("output_limit", "--output-limit", F_OUTPUT, true, 1, UINT64_MAX,
              "a size of at least 1", output),
    LIMIT_KEY("source_limit", "--source-limit", F_SOURCE, true, 1, UINT64_MAX,
              "a size of at least 1", source),
    LIMIT_KEY("result_bytes", "--result-bytes", F_RBYTES, true, 1, UINT64_MAX,
              "a size of at least 1", result_bytes),
    LIMIT_KEY("result_depth", "--result-depth", F_RDEPTH, false, 1, SV_MAX_RESULT_DEPTH,
              "1-" SV_XSTR(SV_MAX_RESULT_DEPTH), result_depth),
    LIMIT_KEY("result_items", "--result-items", F_RITEMS, false, 1, UINT64_MAX,
              "a number of at least 1", result_items),
};

#define NKEYS (sizeof(limit_keys) / sizeof(limit_keys[0]))

/* limit_get and limit_put move 4 or 8 bytes. */
_Static_assert(sizeof(size_t) == 4 || sizeof(size_t) == 8, "size_t is 4 or 8 bytes");
_Static_assert(sizeof(((mj_limits *)0)->timeout_ms) == 4 &&
                   sizeof(((mj_limits *)0)->result_depth) == 4 &&
                   sizeof(((mj_limits *)0)->instructions) == 8,
               "mj_limits fields are 4 or 8 bytes");

static uint64_t
limit_get(const mj_limits *l, const limit_key *k)
{
	const char *p = (const char *)l + k->off;
	uint32_t v32;
	uint64_t v64;

	if (k->width == sizeof(v32)) {
		memcpy(&v32, p, sizeof(v32));
		return v32;
	}
	memcpy(&v64, p, sizeof(v64));
	return v64;
}

static void
limit_put(mj_limits *l, const limit_key *k, uint64_t v)
{
	char *p = (char *)l + k->off;
	uint32_t v32 = (uint32_t)v;

	if (k->width == sizeof(v32))
		memcpy(p, &v32, sizeof(v32));
	else
		memcpy(p, &v, sizeof(v));
}

/* Parses value for k into *l; false when it is not a good one. */
static bool
limit_parse(const limit_key *k, const char *value, mj_limits *l)
{
	uint64_t u;
	size_t z;

	if (k->size) {
		if (mj_parse_size(value, &z) != MJ_OK)
			return false;
		u = z;
	} else if (mj_parse_u64(value, &u) != MJ_OK) {
		return false;
	}
	if (u < k->lo || u > k->hi || (k->width == sizeof(uint32_t) && u > UINT32_MAX))
		return false;
	limit_put(l, k, u);
	return true;
}

int
sv_limit_flag(const char *flag, const char *value, mj_limits *l, unsigned *set, const char **why)
{
	size_t i;

	for (i = 0; i < NKEYS; i++) {
		if (strcmp(flag, limit_keys[i].flag) != 0)
			continue;
		if (!limit_parse(&limit_keys[i], value, l)) {
			*why = limit_keys[i].want;
			return -1;
		}
		*set |= limit_keys[i].bit;
		return 1;
	}
	return 0;
}

static sv_policies *current;
/* Every call reads the policies and only a reload writes them: readers do not wait for each
 * other. */
static pthread_rwlock_t current_lock = PTHREAD_RWLOCK_INITIALIZER;

static entry *
section(parse *ps, const char *name)
{
	sv_policies *p = ps->p;
	entry *t;
	size_t i;

	if (strcmp(name, "defaults") == 0)
		return &p->defaults;
	if (strncmp(name, "tenant:", 7) != 0 || !sv_tenant_name_ok(name + 7)) {
		snprintf(ps->why, sizeof(ps->why),
		         "unknown section [%.60s] (want [defaults] or [tenant:NAME])", name);
		return NULL;
	}
	for (i = 0; i < p->n; i++)
		if (strcmp(p->tenants[i].name, name + 7) == 0)
			return &p->tenants[i];
	if ((t = realloc(p->tenants, (p->n + 1) * sizeof(*t))) == NULL) {
		snprintf(ps->why, sizeof(ps->why), "out of memory");
		return NULL;
	}
	p->tenants = t;
	t = &p->tenants[p->n++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name + 7);
	return t;
}

static int
handler(void *user, const char *sec, const char *key, const char *value)
{
	parse *ps = user;
	entry *e = section(ps, sec);
	uint64_t u;
	size_t z, i;

	if (e == NULL)
		return 0;
	for (i = 0; i < NKEYS; i++) {
		if (strcmp(key, limit_keys[i].key) != 0)
			continue;
		if (!limit_parse(&limit_keys[i], value, &e->l)) {
			snprintf(ps->why, sizeof(ps->why),
			         "bad value '%.40s' for %s in [%.60s] (want %s)", value, key, sec,
			         limit_keys[i].want);
			return 0;
		}
		e->set |= limit_keys[i].bit;
		return 1;
	}
	if (strcmp(key, "max_memory") == 0 && mj_parse_size(value, &z) == MJ_OK) {
		e->max_memory = z;
		e->set |= F_TOTAL;
	} else if (strcmp(key, "max_engines") == 0 && mj_parse_u64(value, &u) == MJ_OK && u >= 1 &&
	           u <= 1000000) {
		e->max_engines = (uint32_t)u;
		e->set |= F_ENGINES;
	} else {
		snprintf(ps->why, sizeof(ps->why), "bad key or value '%.40s = %.40s' in [%.60s]",
		         key, value, sec);
		return 0;
	}
	return 1;
}

static void
inherit(entry *t, const entry *d)
{
	unsigned keep = t->set;
	size_t i;

	for (i = 0; i < NKEYS; i++)
		if (!(keep & limit_keys[i].bit))
			limit_put(&t->l, &limit_keys[i], limit_get(&d->l, &limit_keys[i]));
	if (!(keep & F_ENGINES))
		t->max_engines = d->max_engines;
	if (!(keep & F_TOTAL))
		t->max_memory = d->max_memory;
}

void
sv_policies_free(sv_policies *p)
{
	if (p != NULL) {
		free(p->tenants);
		free(p);
	}
}

/* The TenantPolicy every call of e's tenants carries to the worker: engines created on first
 * use get defaults, Create is capped by e's limits. */
static bool
pack(entry *e, const mj_limits *defaults)
{
	Moonjail__Internal__V1__TenantPolicy pol = MOONJAIL__INTERNAL__V1__TENANT_POLICY__INIT;
	Moonjail__V1__Limits *d = NULL, *m = NULL;
	bool ok = false;

	if (mj_proto_limits_from(defaults, &d) != MJ_OK || mj_proto_limits_from(&e->l, &m) != MJ_OK)
		goto out;
	pol.defaults = d;
	pol.max = m;
	pol.max_engines = e->max_engines;
	pol.max_memory = e->max_memory;
	if ((e->wire_len = protobuf_c_message_get_packed_size(&pol.base)) > sizeof(e->wire))
		goto out;
	protobuf_c_message_pack(&pol.base, e->wire);
	ok = true;
out:
	if (d != NULL)
		mj_proto_free(&d->base);
	if (m != NULL)
		mj_proto_free(&m->base);
	return ok;
}

sv_policies *
sv_policies_load(const char *path, char *why, size_t whylen)
{
	const sv_config *c = &sv.cfg;
	const char *bad = NULL;
	sv_policies *p;
	parse ps;
	size_t i;
	int rv;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	p->defaults.l = c->defaults;
	p->defaults.max_engines = 64;
	p->defaults.max_memory = c->defaults.memory * 64;
	ps.p = p;
	ps.why[0] = '\0';
	if (path != NULL && (rv = ini_parse(path, handler, &ps)) != 0) {
		if (rv == -1)
			snprintf(why, whylen, "%s: cannot open", path);
		else
			snprintf(why, whylen, "%s line %d: %s", path, rv,
			         ps.why[0] ? ps.why : "syntax error");
		sv_policies_free(p);
		return NULL;
	}
	/* Flags given on the command line win over the file's [defaults]. */
	for (i = 0; i < NKEYS; i++)
		if (c->flag_set & limit_keys[i].bit)
			limit_put(&p->defaults.l, &limit_keys[i],
			          limit_get(&c->defaults, &limit_keys[i]));
	if (!(p->defaults.set & F_TOTAL))
		p->defaults.max_memory = p->defaults.l.memory * 64;
	if (mj_limits_check(&p->defaults.l, &bad) != MJ_OK) {
		snprintf(why, whylen, "%s: [defaults]: %s", path ? path : "flags", bad);
		sv_policies_free(p);
		return NULL;
	}
	for (i = 0; i < p->n; i++) {
		inherit(&p->tenants[i], &p->defaults);
		if (mj_limits_check(&p->tenants[i].l, &bad) != MJ_OK) {
			snprintf(why, whylen, "%s: [tenant:%s]: %s", path, p->tenants[i].name, bad);
			sv_policies_free(p);
			return NULL;
		}
	}
	for (i = 0; i <= p->n; i++) {
		if (!pack(i < p->n ? &p->tenants[i] : &p->defaults, &p->defaults.l)) {
			snprintf(why, whylen, "out of memory");
			sv_policies_free(p);
			return NULL;
		}
	}
	return p;
}

void
sv_policies_install(sv_policies *p)
{
	sv_policies *old;

	pthread_rwlock_wrlock(&current_lock);
	old = current;
	current = p;
	pthread_rwlock_unlock(&current_lock);
	sv_policies_free(old);
}

size_t
sv_policies_count(const sv_policies *p)
{
	return p != NULL ? p->n : 0;
}

void
sv_policies_defaults(mj_limits *out)
{
	pthread_rwlock_rdlock(&current_lock);
	*out = current->defaults.l;
	pthread_rwlock_unlock(&current_lock);
}

size_t
sv_policy_for(const char *tenant, mj_tenant_policy *out, uint8_t wire[SV_POLICY_WIRE_MAX])
{
	const entry *e;
	size_t i, len;

	pthread_rwlock_rdlock(&current_lock);
	e = &current->defaults;
	for (i = 0; i < current->n; i++) {
		if (strcmp(current->tenants[i].name, tenant) == 0) {
			e = &current->tenants[i];
			break;
		}
	}
	out->max = e->l;
	out->max_engines = e->max_engines;
	out->max_memory = e->max_memory;
	len = e->wire_len;
	memcpy(wire, e->wire, len);
	pthread_rwlock_unlock(&current_lock);
	return len;
}
