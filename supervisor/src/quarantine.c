/* Quarantine: a tenant whose calls keep killing workers moves to a worker pool of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "mj/text.h"
#include "supervisor.h"

#define QBUCKETS 256
#define QMAX_STRIKES 16
#define QVERDICTS 32 /* recent worker deaths remembered, for calls answered after the reap */
#define QSUSPECTS 256

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

/* Deaths already judged, newest overwriting oldest. */
static struct {
	uint64_t pid;
	bool blame;
} verdicts[QVERDICTS];
static unsigned nverdicts;

/* Calls lost on a worker whose death is not judged yet. */
static struct {
	char tenant[129];
	uint64_t pid;
} suspects[QSUSPECTS];
static unsigned nsuspects;

static unsigned
bucket(const char *s)
{
	return (unsigned)(mj_fnv1a(MJ_FNV1A_INIT, s) % QBUCKETS);
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
	uint64_t now = mj_now_ns();
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

/* Whether pid is a worker process moonjaild still counts as running (not yet reaped). */
static bool
pid_alive(uint64_t pid)
{
	int i;

	if (sv.spare.pid > 0 && (uint64_t)sv.spare.pid == pid)
		return true;
	for (i = 0; i < sv.nslots; i++)
		if (sv.workers[i].pid > 0 && (uint64_t)sv.workers[i].pid == pid)
			return true;
	return false;
}

void
sv_quarantine_suspect(const char *tenant, uint64_t pid)
{
	unsigned i;

	if (!enabled() || tenant == NULL || tenant[0] == '\0')
		return;
	for (i = 0; i < QVERDICTS && i < nverdicts; i++) {
		if (verdicts[i].pid == pid) {
			if (verdicts[i].blame)
				sv_quarantine_strike(tenant, pid);
			return;
		}
	}
	/* Judged so long ago that the verdict is gone: the process is no slot's any more. */
	if (!pid_alive(pid))
		return;
	/* More calls in flight than can wait for the verdict: strike, the safe side. */
	if (nsuspects == QSUSPECTS) {
		sv_quarantine_strike(tenant, pid);
		return;
	}
	snprintf(suspects[nsuspects].tenant, sizeof(suspects[0].tenant), "%s", tenant);
	suspects[nsuspects++].pid = pid;
}

void
sv_quarantine_verdict(uint64_t pid, int status)
{
	bool blame;
	unsigned i = 0;

	if (WIFSIGNALED(status)) {
		switch (WTERMSIG(status)) {
		case SIGKILL: /* ours at the hard deadline (struck already), or from outside */
		case SIGTERM:
		case SIGINT:
		case SIGHUP:
			blame = false;
			break;
		default: /* SIGSYS, SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, ... */
			blame = true;
			break;
		}
	} else {
		/* An exit, whatever its status, is the worker's own decision (a lost connection,
		 * a failed start: 1, 2, 126, 127), never a script's. */
		blame = false;
	}
	verdicts[nverdicts % QVERDICTS].pid = pid;
	verdicts[nverdicts % QVERDICTS].blame = blame;
	nverdicts++;
	while (i < nsuspects) {
		if (suspects[i].pid != pid) {
			i++;
			continue;
		}
		if (blame)
			sv_quarantine_strike(suspects[i].tenant, pid);
		suspects[i] = suspects[--nsuspects];
	}
}

bool
sv_quarantined(const char *tenant)
{
	qrec *r;

	if (nrecs == 0 || !enabled())
		return false;
	r = lookup(tenant, false, mj_now_ns());
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
