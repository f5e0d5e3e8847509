/* The process-wide replaceable allocator, so tests can inject allocation failures. */
#include <stdlib.h>
#include <string.h>

#include "mj/common.h"

static mj_allocator current;
static int replaced;

void
mj_set_allocator(const mj_allocator *a)
{
	if (a == NULL) {
		replaced = 0;
		memset(&current, 0, sizeof(current));
		return;
	}
	current = *a;
	replaced = 1;
}

void *
mj_malloc(size_t size)
{
	if (replaced)
		return current.malloc_fn(current.ud, size);
	return malloc(size);
}

void *
mj_calloc(size_t n, size_t size)
{
	void *p;

	if (size != 0 && n > (size_t)-1 / size)
		return NULL;
	if (!replaced)
		return calloc(n, size);
	if ((p = current.malloc_fn(current.ud, n * size)) != NULL)
		memset(p, 0, n * size);
	return p;
}

void *
mj_realloc(void *ptr, size_t size)
{
	if (replaced)
		return current.realloc_fn(current.ud, ptr, size);
	return realloc(ptr, size);
}

void
mj_free(void *ptr)
{
	if (ptr == NULL)
		return;
	if (replaced)
		current.free_fn(current.ud, ptr);
	else
		free(ptr);
}

char *
mj_strndup(const char *s, size_t len)
{
	char *p;

	if (len == (size_t)-1 || (p = mj_malloc(len + 1)) == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}
