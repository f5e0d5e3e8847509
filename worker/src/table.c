/* The engine table: slots per (tenant, engine), tenant figures, quotas and LRU eviction. */
#include <stdio.h>
#include <string.h>

#include "mj/text.h"
#include "worker.h"

static uint32_t
slot_hash(const char *tenant, const char *name)
{
	/* The separator keeps ("ab", "c") and ("a", "bc") apart; neither name can hold a '/'. */
	return (uint32_t)(mj_fnv1a(mj_fnv1a(mj_fnv1a(MJ_FNV1A_INIT, tenant), "/"), name) %
	                  WK_SLOT_BUCKETS);
}

static uint32_t
tenant_hash(const char *name)
{
	return (uint32_t)(mj_fnv1a(MJ_FNV1A_INIT, name) % WK_TENANT_BUCKETS);
}

mj_err
wk_table_init(wk_worker *w)
{
	if ((w->slots = mj_calloc(WK_SLOT_BUCKETS, sizeof(*w->slots))) == NULL)
		return MJ_ENOMEM;
	if ((w->tenants = mj_calloc(WK_TENANT_BUCKETS, sizeof(*w->tenants))) == NULL) {
		mj_free(w->slots);
		w->slots = NULL;
		return MJ_ENOMEM;
	}
	return MJ_OK;
}

void
wk_table_fini(wk_worker *w)
{
	size_t i;
	wk_slot *s, *next;
	wk_tenant *t, *tnext;

	if (w->slots != NULL) {
		for (i = 0; i < WK_SLOT_BUCKETS; i++) {
			for (s = w->slots[i]; s != NULL; s = next) {
				next = s->hnext;
				mj_engine_free(s->engine);
				mj_free(s);
			}
		}
	}
	if (w->tenants != NULL) {
		for (i = 0; i < WK_TENANT_BUCKETS; i++) {
			for (t = w->tenants[i]; t != NULL; t = tnext) {
				tnext = t->next;
				mj_free(t);
			}
		}
	}
	mj_free(w->slots);
	mj_free(w->tenants);
	w->slots = NULL;
	w->tenants = NULL;
}

static wk_tenant *
tenant_get(wk_worker *w, const char *name)
{
	uint32_t h = tenant_hash(name);
	wk_tenant *t;

	for (t = w->tenants[h]; t != NULL; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	if ((t = mj_calloc(1, sizeof(*t))) == NULL)
		return NULL;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->next = w->tenants[h];
	w->tenants[h] = t;
	return t;
}

static void
tenant_put(wk_worker *w, wk_tenant *t)
{
	uint32_t h;
	wk_tenant **pp;

	if (--t->slots > 0)
		return;
	h = tenant_hash(t->name);
	for (pp = &w->tenants[h]; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	mj_free(t);
}

wk_slot *
wk_table_get(wk_worker *w, const char *tenant, const char *name)
{
	uint32_t h = slot_hash(tenant, name);
	wk_slot *s;
	wk_tenant *t;

	for (s = w->slots[h]; s != NULL; s = s->hnext)
		if (strcmp(s->name, name) == 0 && strcmp(s->tenant->name, tenant) == 0)
			return s;
	if ((s = mj_calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if ((t = tenant_get(w, tenant)) == NULL) {
		mj_free(s);
		return NULL;
	}
	t->slots++;
	s->tenant = t;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->hnext = w->slots[h];
	w->slots[h] = s;
	return s;
}

static void
slot_unlink(wk_worker *w, wk_slot *s)
{
	wk_slot **pp;

	for (pp = &w->slots[slot_hash(s->tenant->name, s->name)]; *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	}
}

void
wk_table_release(wk_worker *w, wk_slot *s)
{
	if (s->alive || s->running || s->ready || s->head != NULL)
		return;
	slot_unlink(w, s);
	tenant_put(w, s->tenant);
	mj_free(s);
}

static void
lru_remove(wk_worker *w, wk_slot *s)
{
	if (s->lru_prev != NULL)
		s->lru_prev->lru_next = s->lru_next;
	else
		w->lru_head = s->lru_next;
	if (s->lru_next != NULL)
		s->lru_next->lru_prev = s->lru_prev;
	else
		w->lru_tail = s->lru_prev;
	s->lru_prev = s->lru_next = NULL;
}

static void
lru_append(wk_worker *w, wk_slot *s)
{
	s->lru_next = NULL;
	s->lru_prev = w->lru_tail;
	if (w->lru_tail != NULL)
		w->lru_tail->lru_next = s;
	else
		w->lru_head = s;
	w->lru_tail = s;
}

mj_err
wk_table_reserve(wk_worker *w, wk_slot *s, const mj_tenant_policy *p, char *why, size_t whylen)
{
	wk_tenant *t = s->tenant;

	if (s->alive)
		return MJ_OK;
	if (t->engines >= p->max_engines) {
		snprintf(why, whylen, "tenant %s already has %u engines (its quota is %u)", t->name,
		         t->engines, p->max_engines);
		return MJ_ELIMIT;
	}
	if (t->memory >= p->max_memory) {
		snprintf(why, whylen,
		         "tenant %s's engines hold %zu bytes, at or over its memory quota of %zu",
		         t->name, t->memory, p->max_memory);
		return MJ_ELIMIT;
	}
	s->alive = true;
	s->memory = 0;
	t->engines++;
	w->nengines++;
	lru_append(w, s);
	return MJ_OK;
}

mj_err
wk_table_check_memory(wk_worker *w, const wk_slot *s, const mj_tenant_policy *p, char *why,
                      size_t whylen)
{
	const wk_tenant *t = s->tenant;

	(void)w;
	if (t->memory <= p->max_memory)
		return MJ_OK;
	snprintf(why, whylen,
	         "tenant %s's engines hold %zu bytes, over its memory quota of %zu: destroy or "
	         "reset one",
	         t->name, t->memory, p->max_memory);
	return MJ_ELIMIT;
}

void
wk_table_update(wk_worker *w, wk_slot *s, size_t memory)
{
	if (!s->alive)
		return;
	s->tenant->memory = s->tenant->memory - s->memory + memory;
	w->memory = w->memory - s->memory + memory;
	s->memory = memory;
	lru_remove(w, s);
	lru_append(w, s);
}

void
wk_table_drop(wk_worker *w, wk_slot *s)
{
	if (!s->alive)
		return;
	s->tenant->memory -= s->memory;
	s->tenant->engines--;
	w->memory -= s->memory;
	w->nengines--;
	s->memory = 0;
	s->alive = false;
	lru_remove(w, s);
}

wk_slot *
wk_table_evict(wk_worker *w)
{
	wk_slot *s, *next, *victims = NULL;

	for (s = w->lru_head; s != NULL && w->memory > w->budget; s = next) {
		next = s->lru_next;
		/* A slot with work queued or running is never evicted: its requests expect it. */
		if (s->running || s->ready || s->head != NULL || s->engine == NULL)
			continue;
		wk_log("event=evict tenant=%s engine=%s memory=%zu worker_memory=%zu budget=%zu",
		       s->tenant->name, s->name, s->memory, w->memory, w->budget);
		wk_table_drop(w, s);
		slot_unlink(w, s);
		tenant_put(w, s->tenant);
		s->tenant = NULL;
		s->ready_next = victims;
		victims = s;
	}
	return victims;
}

void
wk_table_free_evicted(wk_slot *list)
{
	wk_slot *next;

	for (; list != NULL; list = next) {
		next = list->ready_next;
		mj_engine_free(list->engine);
		mj_free(list);
	}
}
