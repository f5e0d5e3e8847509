/* moonjail-demo: runs one script on a sandboxed engine with embedded default limits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mj/engine.h"
#include "mj/text.h"

static const char usage[] =
    "usage: moonjail-demo [options] (-e CODE | -f FILE | -)\n"
    "Runs one Lua 5.4 chunk in a sandboxed moonjail engine and prints its print() output,\n"
    "then every returned value as JSON, one per line. Stats go to stderr.\n"
    "\n"
    "options:\n"
    "  -e CODE                 the chunk's source text\n"
    "  -f FILE                 read the chunk from FILE ('-' or a lone '-' reads stdin)\n"
    "  --run                   discard returned values (run instead of eval)\n"
    "  --json-module           install the json module (require 'json')\n"
    "  --memory-limit SIZE     Lua heap cap (default 16M; suffixes K M G KiB MiB GiB)\n"
    "  --instruction-limit N   VM instructions per call (default 100000000; 0 = none)\n"
    "  --timeout-ms N          wall clock per call (default 1000; 0 = none)\n"
    "  --output-limit SIZE     print output per call (default 1M)\n"
    "  -h, --help              this text\n"
    "\n"
    "exit status: 0 success, 1 the script failed (stderr: error: <kind>: <message>),\n"
    "2 usage error.\n";

static int
die_usage(const char *msg, const char *arg)
{
	fprintf(stderr, "moonjail-demo: %s%s%s\n%s", msg, arg ? ": " : "", arg ? arg : "", usage);
	return 2;
}

static char *
read_all(FILE *f, size_t *len)
{
	mj_buf b = {0};
	char tmp[65536];
	size_t n;

	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		mj_buf_append(&b, tmp, n);
	if (ferror(f) || b.failed) {
		mj_buf_free(&b);
		return NULL;
	}
	if (b.ptr == NULL)
		mj_buf_append(&b, "", 0);
	*len = b.len;
	return b.ptr;
}

int
main(int argc, char **argv)
{
	static const char *const json_mod[] = {"json"};
	const char *code = NULL, *file = NULL;
	mj_engine_config cfg;
	mj_engine *e = NULL;
	mj_result res;
	char *src = NULL;
	size_t len = 0, i;
	uint64_t u;
	int run = 0, rc, a;
	mj_buf out = {0};
	mj_err err;

	mj_engine_config_default(&cfg);
	for (a = 1; a < argc; a++) {
		const char *o = argv[a];
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;
		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			fputs(usage, stdout);
			return 0;
		} else if (strcmp(o, "-e") == 0 && v) {
			code = v, a++;
		} else if (strcmp(o, "-f") == 0 && v) {
			file = v, a++;
		} else if (strcmp(o, "-") == 0) {
			file = "-";
		} else if (strcmp(o, "--run") == 0) {
			run = 1;
		} else if (strcmp(o, "--json-module") == 0) {
			cfg.modules = json_mod;
			cfg.nmodules = 1;
		} else if (strcmp(o, "--memory-limit") == 0 && v) {
			if (mj_parse_size(v, &cfg.limits.memory) != MJ_OK)
				return die_usage("bad size", v);
			a++;
		} else if (strcmp(o, "--output-limit") == 0 && v) {
			if (mj_parse_size(v, &cfg.limits.output) != MJ_OK)
				return die_usage("bad size", v);
			a++;
		} else if (strcmp(o, "--instruction-limit") == 0 && v) {
			if (mj_parse_u64(v, &cfg.limits.instructions) != MJ_OK)
				return die_usage("bad number", v);
			a++;
		} else if (strcmp(o, "--timeout-ms") == 0 && v) {
			if (mj_parse_u64(v, &u) != MJ_OK || u > UINT32_MAX)
				return die_usage("bad number", v);
			cfg.limits.timeout_ms = (uint32_t)u;
			a++;
		} else {
			return die_usage("unknown or incomplete option", o);
		}
	}
	if ((code == NULL) == (file == NULL))
		return die_usage("give exactly one of -e CODE, -f FILE or -", NULL);
	if (code != NULL) {
		src = strdup(code);
		len = strlen(code);
	} else {
		FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
		if (f == NULL) {
			fprintf(stderr, "moonjail-demo: %s: %s\n", file, strerror(errno));
			return 2;
		}
		src = read_all(f, &len);
		if (f != stdin)
			fclose(f);
	}
	if (src == NULL) {
		fprintf(stderr, "moonjail-demo: cannot read the source\n");
		return 2;
	}
	if ((err = mj_engine_new(&e, &cfg)) != MJ_OK) {
		const char *why = "";
		mj_limits_check(&cfg.limits, &why);
		fprintf(stderr, "moonjail-demo: cannot create the engine: %s %s\n", mj_err_str(err),
		        why);
		free(src);
		return 2;
	}
	err = run ? mj_engine_run(e, src, len, "script", &res)
	          : mj_engine_eval(e, src, len, "script", &res);
	free(src);
	if (err != MJ_OK) {
		fprintf(stderr, "moonjail-demo: %s\n", mj_err_str(err));
		mj_engine_free(e);
		return 2;
	}
	fwrite(res.output, 1, res.output_len, stdout);
	for (i = 0; i < res.nvalues; i++) {
		out.len = 0;
		mj_buf_json_value(&out, &res.values[i]);
		if (!out.failed)
			printf("%s\n", out.ptr);
	}
	mj_buf_free(&out);
	rc = 0;
	if (res.kind != MJ_KIND_NONE) {
		fprintf(stderr, "error: %s: %s\n", mj_kind_name(res.kind), res.message);
		rc = 1;
	}
	fprintf(
	    stderr,
	    "stats: instructions=%llu memory=%zu peak=%zu limit=%zu wall_us=%llu output=%zu%s\n",
	    (unsigned long long)res.stats.instructions, res.stats.memory_current,
	    res.stats.memory_peak, res.stats.memory_limit, (unsigned long long)res.stats.wall_us,
	    res.stats.output_bytes, res.engine_reset ? " (engine reset)" : "");
	mj_result_free(&res);
	mj_engine_free(e);
	return rc;
}
