/* How many task threads libnng starts in moonjaild: nng 1.5.2 has no setting for it. */
#include <dlfcn.h>
#include <stdatomic.h>
#include <unistd.h>

#include "supervisor.h"

/* nng 1.5.2 starts its task threads, which run every aio callback, once, when the library
 * initialises: two per CPU that sysconf(_SC_NPROCESSORS_ONLN) reports, up to 16. Only nng 2
 * has a parameter for it. moonjaild's callbacks are short and all contend for one socket's
 * locks, so on a 2-core machine two threads serve more requests per CPU second than four
 * (docs/benchmarks.md). This executable therefore defines sysconf: the dynamic linker binds
 * libnng's call to it, an executable's definitions coming first in symbol lookup. It answers
 * that one question with the configured CPU count while sv_nng_threads_begin is in effect,
 * and passes everything else to the C library's sysconf, which the C library itself calls
 * directly. */
static atomic_long answer; /* 0: pass through */

typedef long (*sysconf_fn)(int);

static sysconf_fn
next_sysconf(void)
{
	static _Atomic(sysconf_fn) fn;
	sysconf_fn f = atomic_load(&fn);

	if (f == NULL) {
		/* POSIX lets a function pointer be read from dlsym's result this way. */
		*(void **)&f = dlsym(RTLD_NEXT, "sysconf");
		atomic_store(&fn, f);
	}
	return f;
}

long
sysconf(int name)
{
	long n = atomic_load(&answer);
	sysconf_fn f;

	if (name == _SC_NPROCESSORS_ONLN && n > 0)
		return n;
	if ((f = next_sysconf()) == NULL)
		return -1; /* no C library sysconf: cannot happen with glibc */
	return f(name);
}

void
sv_nng_threads_begin(int threads)
{
	atomic_store(&answer, threads < 2 ? 1L : (long)(threads + 1) / 2);
}

void
sv_nng_threads_end(void)
{
	atomic_store(&answer, 0L);
}
