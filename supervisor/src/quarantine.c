/* Quarantine: a tenant whose calls keep killing workers moves to a worker pool of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "supervisor.h"

#define QBUCKETS 256
#define QMAX_STRIKES 16

typedef struct qrec {
	struct qrec *next;
	char tenant[129];
	uint64_t strikes[QMAX_STRIKES]; /* when, oldest first */
	unsigned n;
	uint64_t last_event; /* one strike per worker death, however many calls it had */
	uint64_t until_ns;   /* quarantined until then; 0 when not */
} qrec;

static qrec *table[QBUCKETS];
static unsigned nrecs;

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned
bucket(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % QBUCKETS;
}

static bool
enabled(void)
{
	return sv.cfg.quarantine_workers > 0 && sv.cfg.quarantine_strikes > 0;
}

/* Forgets strikes older than the window. */
static void
expire(qrec *r, uint64_t now)
{
	uint64_t window = (uint64_t)sv.cfg.quarantine_window_ms * 1000000ull;
	unsigned i = 0;

	while (i < r->n && now - r->strikes[i] > window)
		i++;
	if (i > 0) {
		memmove(r->strikes, r->strikes + i, (r->n - i) * sizeof(r->strikes[0]));
		r->n -= i;
	}
}

/* Finds the tenant's record; with create, makes one. Records with nothing left to remember
 * are dropped on the way, so the table holds only tenants with recent strikes. */
static qrec *
lookup(const char *tenant, bool create, uint64_t now)
{
	qrec **pp = &table[bucket(tenant)], *r;

	while ((r = *pp) != NULL) {
		if (r->until_ns != 0 && now >= r->until_ns) {
			r->until_ns = 0;
			sv_log("tenant-released", "tenant=%s", r->tenant);
		}
		expire(r, now);
		if (strcmp(r->tenant, tenant) == 0)
			return r;
		if (r->n == 0 && r->until_ns == 0) {
			*pp = r->next;
			free(r);
			nrecs--;
			continue;
		}
		pp = &r->next;
	}
	if (!create || (r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
	r->next = table[bucket(tenant)];
	table[bucket(tenant)] = r;
	nrecs++;
	return r;
}

void
sv_quarantine_strike(const char *tenant, uint64_t event)
{
	uint64_t now = mono_ns();
	qrec *r;

	if (!enabled() || tenant == NULL || tenant[0] == '\0')
		return;
	if ((r = lookup(tenant, true, now)) == NULL || r->last_event == event)
		return;
	r->last_event = event;
	if (r->until_ns != 0)
		return; /* already quarantined: its own pool's deaths do not extend it */
	if (r->n == QMAX_STRIKES) {
		memmove(r->strikes, r->strikes + 1, (QMAX_STRIKES - 1) * sizeof(r->strikes[0]));
		r->n--;
	}
	r->strikes[r->n++] = now;
	sv_log("tenant-strike", "tenant=%s strikes=%u threshold=%u window_ms=%u", tenant, r->n,
	       sv.cfg.quarantine_strikes, sv.cfg.quarantine_window_ms);
	if (r->n >= sv.cfg.quarantine_strikes) {
		r->until_ns = now + (uint64_t)sv.cfg.quarantine_ms * 1000000ull;
		r->n = 0;
		sv_log("tenant-quarantined", "tenant=%s for_ms=%u pool_workers=%d", tenant,
		       sv.cfg.quarantine_ms, sv.cfg.quarantine_workers);
	}
}

bool
sv_quarantined(const char *tenant)
{
	qrec *r;

	if (nrecs == 0 || !enabled())
		return false;
	r = lookup(tenant, false, mono_ns());
	return r != NULL && r->until_ns != 0;
}

void
sv_quarantine_fini(void)
{
	unsigned i;

	for (i = 0; i < QBUCKETS; i++) {
		while (table[i] != NULL) {
			qrec *r = table[i];
			table[i] = r->next;
			free(r);
		}
	}
	nrecs = 0;
}
