/* How many task threads libnng starts in moonjaild: nng 1.5.2 has no setting for it. */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "supervisor.h"

/* nng 1.5.2 starts its task threads, which run every aio callback, once, when the library
 * initialises: two per CPU that sysconf(_SC_NPROCESSORS_ONLN) reports, up to 16, and from
 * the same answer one thread per CPU, up to 8, that expires aio timeouts. Only nng 2 has
 * parameters for them. moonjaild's callbacks are short and all contend for one socket's
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
		void *sym = dlsym(RTLD_NEXT, "sysconf");

		/* POSIX guarantees a data pointer from dlsym converts to a function pointer. */
		memcpy(&f, &sym, sizeof(f));
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
	if ((f = next_sysconf()) == NULL) {
		errno = EINVAL; /* no C library sysconf: cannot happen with glibc */
		return -1;
	}
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
