/* Runs a fuzz target over files without libFuzzer: every file of each directory argument (in
 * name order) and every file argument. Builds with any compiler; the corpus replays in ctest. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int
run_file(const char *path)
{
	unsigned char *buf;
	struct stat st;
	size_t n;
	FILE *f;

	if ((f = fopen(path, "rb")) == NULL || fstat(fileno(f), &st) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		if (f != NULL)
			fclose(f);
		return -1;
	}
	/* Exactly the file's size, so the sanitizers see a read past the end. */
	n = (size_t)st.st_size;
	if ((buf = malloc(n ? n : 1)) == NULL || fread(buf, 1, n, f) != n) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir; returns how many, or -1. */
static long
run_dir(const char *dir)
{
	char **names = NULL, **grown, path[4096];
	size_t n = 0, cap = 0, i;
	struct dirent *d;
	struct stat st;
	long ran = 0;
	DIR *dp;

	if ((dp = opendir(dir)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((d = readdir(dp)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((grown = realloc(names, cap * sizeof(*names))) == NULL)
				goto fail;
			names = grown;
		}
		if ((names[n] = strdup(d->d_name)) == NULL)
			goto fail;
		n++;
	}
	closedir(dp);
	dp = NULL;
	if (n > 0)
		qsort(names, n, sizeof(*names), by_name);
	for (i = 0; i < n; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path) ||
		    stat(path, &st) != 0)
			goto fail;
		if (!S_ISREG(st.st_mode))
			continue;
		if (run_file(path) != 0)
			goto fail;
		ran++;
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ran;

fail:
	fprintf(stderr, "replay: %s: cannot list or read it\n", dir);
	if (dp != NULL)
		closedir(dp);
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return -1;
}

int
main(int argc, char **argv)
{
	struct stat st;
	long total = 0, ran;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) == 0 ? 1 : -1;
		if (ran < 0)
			return 1;
		total += ran;
	}
	/* An empty corpus would pass without testing anything. */
	if (total == 0) {
		fprintf(stderr, "replay: no input files\n");
		return 1;
	}
	printf("replay: %ld inputs, no invariant broken\n", total);
	return 0;
}
