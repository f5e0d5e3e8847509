/* Tenant policies from the INI config file (read with inih), and their lookup and reload. */
#include <stdbool.h>
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
	size_t z;

	if (e == NULL)
		return 0;
	if (strcmp(key, "memory_limit") == 0 && mj_parse_size(value, &z) == MJ_OK) {
		e->l.memory = z;
		e->set |= F_MEMORY;
	} else if (strcmp(key, "output_limit") == 0 && mj_parse_size(value, &z) == MJ_OK) {
		e->l.output = z;
		e->set |= F_OUTPUT;
	} else if (strcmp(key, "max_memory") == 0 && mj_parse_size(value, &z) == MJ_OK) {
		e->max_memory = z;
		e->set |= F_TOTAL;
	} else if (strcmp(key, "instruction_limit") == 0 && mj_parse_u64(value, &u) == MJ_OK) {
		e->l.instructions = u;
		e->set |= F_INSTR;
	} else if (strcmp(key, "timeout_ms") == 0 && mj_parse_u64(value, &u) == MJ_OK &&
	           u <= 3600000) {
		e->l.timeout_ms = (uint32_t)u;
		e->set |= F_TIMEOUT;
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
	mj_limits l = t->l;

	t->l = d->l;
	if (keep & F_MEMORY)
		t->l.memory = l.memory;
	if (keep & F_INSTR)
		t->l.instructions = l.instructions;
	if (keep & F_TIMEOUT)
		t->l.timeout_ms = l.timeout_ms;
	if (keep & F_OUTPUT)
		t->l.output = l.output;
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
	if (c->flag_set & F_MEMORY)
		p->defaults.l.memory = c->defaults.memory;
	if (c->flag_set & F_INSTR)
		p->defaults.l.instructions = c->defaults.instructions;
	if (c->flag_set & F_TIMEOUT)
		p->defaults.l.timeout_ms = c->defaults.timeout_ms;
	if (c->flag_set & F_OUTPUT)
		p->defaults.l.output = c->defaults.output;
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
