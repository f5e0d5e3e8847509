/* moonjail: the command-line client of the moonjail service. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_parse.h"
#include "mj/client.h"
#include "mj/text.h"

#define EXIT_SCRIPT 1
#define EXIT_USAGE 2
/* Sources and namespace values read from files or stdin are capped, so a mistaken
 * `-f /dev/zero` ends with a message rather than an exhausted host. */
#define MAX_INPUT (256u << 20)
#define MAX_MODULES 64

static const char usage_text[] =
    "usage: moonjail [--url URL] [--json] COMMAND --tenant T [--engine E] [ARGS]\n"
    "\n"
    "commands:\n"
    "  eval     (-e CODE | -f FILE | -)  run Lua source; print its output, then every\n"
    "                                    returned value as JSON, one per line\n"
    "  run      (-e CODE | -f FILE | -)  run Lua source; print its output only\n"
    "  reset                             give the engine a fresh state (namespaces kept)\n"
    "  destroy                           delete the engine\n"
    "  stats                             print the engine's figures as one JSON object\n"
    "  create [LIMITS] [--module NAME]... [--prelude CODE | --prelude-file FILE]\n"
    "                                    create the engine with explicit limits and modules\n"
    "  set-namespace NAME JSON           install a read-only global table NAME holding the\n"
    "                                    JSON object or array (JSON may be - for stdin)\n"
    "  unset-namespace NAME              remove it\n"
    "  ping                              check that the service answers (--tenant optional)\n"
    "\n"
    "options:\n"
    "  --url URL               service address (default: $MOONJAIL_URL, else\n"
    "                          " MJ_CLIENT_DEFAULT_URL ")\n"
    "  --json                  print the whole response as one JSON object\n"
    "  --tenant T              tenant name: 1-128 characters of [A-Za-z0-9._-]\n"
    "  --engine E              engine name (default: default)\n"
    "  -e CODE                 the source text\n"
    "  -f FILE                 read the source from FILE (- for stdin)\n"
    "  -                       read the source from stdin\n"
    "  --traceback             print the traceback of a script error on stderr\n"
    "  --stats                 print the call's stats on stderr\n"
    "  --call-timeout-ms N     how long to wait for an answer (default 30000)\n"
    "  -h, --help              this text\n"
    "\n"
    "create's limits (absent ones take the tenant's defaults; sizes take K M G KiB MiB GiB):\n"
    "  --memory-limit SIZE  --instruction-limit N  --timeout-ms N  --output-limit SIZE\n"
    "  --source-limit SIZE  --result-bytes SIZE  --result-depth N  --result-items N\n"
    "\n"
    "exit status:\n"
    "  0  success\n"
    "  1  the script (or the service) reported an error; stderr's first line is\n"
    "     error: <kind>: <message>[ (line N)]\n"
    "  2  usage error, connection error, timeout or malformed response\n";

typedef enum command {
	CMD_NONE,
	CMD_EVAL,
	CMD_RUN,
	CMD_RESET,
	CMD_DESTROY,
	CMD_STATS,
	CMD_CREATE,
	CMD_SET_NS,
	CMD_UNSET_NS,
	CMD_PING,
} command;

static const struct {
	const char *name;
	command cmd;
} commands[] = {
    {"eval", CMD_EVAL},
    {"run", CMD_RUN},
    {"reset", CMD_RESET},
    {"destroy", CMD_DESTROY},
    {"stats", CMD_STATS},
    {"create", CMD_CREATE},
    {"set-namespace", CMD_SET_NS},
    {"unset-namespace", CMD_UNSET_NS},
    {"ping", CMD_PING},
};

typedef struct args {
	const char *url;
	bool json;
	bool traceback;
	bool stats;
	uint32_t call_timeout_ms;
	command cmd;
	const char *tenant;
	const char *engine;
	const char *code;
	const char *file; /* "-" for stdin */
	const char *positional[2];
	size_t n_positional;
	mj_client_create_options create;
	const char *modules[MAX_MODULES];
	const char *prelude;
	const char *prelude_file;
} args;

static int
usage_error(const char *what, const char *arg)
{
	if (arg != NULL)
		fprintf(stderr, "moonjail: %s: %s\n", what, arg);
	else
		fprintf(stderr, "moonjail: %s\n", what);
	fprintf(stderr, "Try 'moonjail --help'.\n");
	return EXIT_USAGE;
}

static char *
read_all(FILE *f, size_t *len)
{
	mj_buf b = {0};
	char chunk[65536];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		mj_buf_append(&b, chunk, n);
		if (b.len > MAX_INPUT) {
			errno = EFBIG;
			goto fail;
		}
	}
	if (ferror(f) || b.failed)
		goto fail;
	mj_buf_append(&b, "", 1); /* a NUL, so an empty input is a valid string */
	if (b.failed)
		goto fail;
	*len = b.len - 1;
	return b.ptr;

fail:
	mj_buf_free(&b);
	return NULL;
}

/* Reads a whole file, or stdin for "-". Returns NULL with a message printed on failure. */
static char *
read_input(const char *path, size_t *len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char *s;

	if (f == NULL) {
		fprintf(stderr, "moonjail: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	errno = 0;
	s = read_all(f, len);
	if (s == NULL)
		fprintf(stderr, "moonjail: %s: %s\n", strcmp(path, "-") == 0 ? "stdin" : path,
		        errno == EFBIG ? "larger than 256 MiB"
		                       : (errno ? strerror(errno) : "read error"));
	if (f != stdin)
		fclose(f);
	return s;
}

static bool
parse_size_arg(const char *v, uint64_t *out)
{
	size_t n;

	if (mj_parse_size(v, &n) != MJ_OK)
		return false;
	*out = n;
	return true;
}

/* create's limit flags; returns true and sets *bit when o is one of them. */
static int
limit_option(args *a, const char *o, const char *v, bool *matched)
{
	static const struct {
		const char *name;
		unsigned bit;
		bool size;
	} flags[] = {
	    {"--memory-limit", MJ_CLIENT_LIMIT_MEMORY, true},
	    {"--instruction-limit", MJ_CLIENT_LIMIT_INSTRUCTIONS, false},
	    {"--timeout-ms", MJ_CLIENT_LIMIT_TIMEOUT, false},
	    {"--output-limit", MJ_CLIENT_LIMIT_OUTPUT, true},
	    {"--source-limit", MJ_CLIENT_LIMIT_SOURCE, true},
	    {"--result-bytes", MJ_CLIENT_LIMIT_RESULT_BYTES, true},
	    {"--result-depth", MJ_CLIENT_LIMIT_RESULT_DEPTH, false},
	    {"--result-items", MJ_CLIENT_LIMIT_RESULT_ITEMS, false},
	};
	mj_limits *l = &a->create.limits;
	uint64_t u;
	size_t i;

	*matched = false;
	for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		if (strcmp(o, flags[i].name) != 0)
			continue;
		*matched = true;
		if (v == NULL)
			return usage_error("option needs a value", o);
		if (!(flags[i].size ? parse_size_arg(v, &u) : mj_parse_u64(v, &u) == MJ_OK))
			return usage_error(flags[i].size ? "bad size" : "bad number", v);
		if ((flags[i].bit == MJ_CLIENT_LIMIT_TIMEOUT ||
		     flags[i].bit == MJ_CLIENT_LIMIT_RESULT_DEPTH) &&
		    u > UINT32_MAX)
			return usage_error("number too large", v);
		switch (flags[i].bit) {
		case MJ_CLIENT_LIMIT_MEMORY:
			l->memory = (size_t)u;
			break;
		case MJ_CLIENT_LIMIT_INSTRUCTIONS:
			l->instructions = u;
			break;
		case MJ_CLIENT_LIMIT_TIMEOUT:
			l->timeout_ms = (uint32_t)u;
			break;
		case MJ_CLIENT_LIMIT_OUTPUT:
			l->output = (size_t)u;
			break;
		case MJ_CLIENT_LIMIT_SOURCE:
			l->source = (size_t)u;
			break;
		case MJ_CLIENT_LIMIT_RESULT_BYTES:
			l->result_bytes = (size_t)u;
			break;
		case MJ_CLIENT_LIMIT_RESULT_DEPTH:
			l->result_depth = (uint32_t)u;
			break;
		default:
			l->result_items = (size_t)u;
			break;
		}
		a->create.set |= flags[i].bit;
		return 0;
	}
	return 0;
}

/* Options may come before or after the command; "--opt=value" and "--opt value" both work. */
static int
parse_args(int argc, char **argv, args *a)
{
	bool options_done = false;
	char name[64];
	int i, rc;

	for (i = 1; i < argc; i++) {
		const char *o = argv[i], *v = NULL, *eq;
		bool has_inline = false, matched;

		if (options_done || o[0] != '-' || strcmp(o, "-") == 0) {
			if (a->cmd == CMD_NONE) {
				size_t k;
				for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
					if (strcmp(o, commands[k].name) == 0)
						a->cmd = commands[k].cmd;
				if (a->cmd == CMD_NONE)
					return usage_error("unknown command", o);
				continue;
			}
			if (strcmp(o, "-") == 0 && (a->cmd == CMD_EVAL || a->cmd == CMD_RUN)) {
				if (a->code != NULL || a->file != NULL)
					return usage_error(
					    "give exactly one of -e CODE, -f FILE or -", NULL);
				a->file = "-";
				continue;
			}
			if (a->n_positional >= 2)
				return usage_error("unexpected argument", o);
			a->positional[a->n_positional++] = o;
			continue;
		}
		if (strcmp(o, "--") == 0) {
			options_done = true;
			continue;
		}
		if (strncmp(o, "--", 2) == 0 && (eq = strchr(o, '=')) != NULL) {
			size_t n = (size_t)(eq - o);
			if (n >= sizeof(name))
				return usage_error("unknown option", o);
			memcpy(name, o, n);
			name[n] = '\0';
			o = name;
			v = eq + 1;
			has_inline = true;
		} else if (i + 1 < argc) {
			v = argv[i + 1];
		}
#define TAKE_VALUE()                                                                               \
	do {                                                                                       \
		if (v == NULL)                                                                     \
			return usage_error("option needs a value", o);                             \
		if (!has_inline)                                                                   \
			i++;                                                                       \
	} while (0)
		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			fputs(usage_text, stdout);
			exit(0);
		} else if (strcmp(o, "--json") == 0) {
			a->json = true;
		} else if (strcmp(o, "--traceback") == 0) {
			a->traceback = true;
		} else if (strcmp(o, "--stats") == 0) {
			a->stats = true;
		} else if (strcmp(o, "--url") == 0) {
			TAKE_VALUE();
			a->url = v;
		} else if (strcmp(o, "--tenant") == 0) {
			TAKE_VALUE();
			a->tenant = v;
		} else if (strcmp(o, "--engine") == 0) {
			TAKE_VALUE();
			a->engine = v;
		} else if (strcmp(o, "-e") == 0) {
			TAKE_VALUE();
			if (a->code != NULL || a->file != NULL)
				return usage_error("give exactly one of -e CODE, -f FILE or -",
				                   NULL);
			a->code = v;
		} else if (strcmp(o, "-f") == 0) {
			TAKE_VALUE();
			if (a->code != NULL || a->file != NULL)
				return usage_error("give exactly one of -e CODE, -f FILE or -",
				                   NULL);
			a->file = v;
		} else if (strcmp(o, "--call-timeout-ms") == 0) {
			uint64_t u;
			TAKE_VALUE();
			if (mj_parse_u64(v, &u) != MJ_OK || u == 0 || u > UINT32_MAX)
				return usage_error("bad number", v);
			a->call_timeout_ms = (uint32_t)u;
		} else if (strcmp(o, "--module") == 0) {
			TAKE_VALUE();
			if (a->create.n_modules >= MAX_MODULES)
				return usage_error("too many modules", v);
			a->modules[a->create.n_modules++] = v;
		} else if (strcmp(o, "--prelude") == 0) {
			TAKE_VALUE();
			a->prelude = v;
		} else if (strcmp(o, "--prelude-file") == 0) {
			TAKE_VALUE();
			a->prelude_file = v;
		} else {
			if ((rc = limit_option(a, o, v, &matched)) != 0)
				return rc;
			if (!matched)
				return usage_error("unknown option", o);
			if (!has_inline)
				i++;
		}
#undef TAKE_VALUE
	}
	return 0;
}

/* Checks that the options fit the command. */
static int
check_args(const args *a)
{
	bool source = a->cmd == CMD_EVAL || a->cmd == CMD_RUN;
	size_t want_pos = a->cmd == CMD_SET_NS ? 2 : a->cmd == CMD_UNSET_NS ? 1 : 0;

	if (a->cmd == CMD_NONE)
		return usage_error("no command given", NULL);
	if (a->tenant == NULL && a->cmd != CMD_PING)
		return usage_error("--tenant is required", NULL);
	if (source && a->code == NULL && a->file == NULL)
		return usage_error("give exactly one of -e CODE, -f FILE or -", NULL);
	if (!source && (a->code != NULL || a->file != NULL))
		return usage_error("-e, -f and - are only for eval and run", NULL);
	if (a->n_positional != want_pos)
		return usage_error(want_pos == 2   ? "set-namespace needs NAME and JSON"
		                   : want_pos == 1 ? "unset-namespace needs NAME"
		                                   : "unexpected argument",
		                   a->n_positional > want_pos ? a->positional[want_pos] : NULL);
	if (a->cmd != CMD_CREATE &&
	    (a->create.set != 0 || a->create.n_modules > 0 || a->prelude || a->prelude_file))
		return usage_error("limits, --module and --prelude are only for create", NULL);
	if (a->prelude != NULL && a->prelude_file != NULL)
		return usage_error("give at most one of --prelude and --prelude-file", NULL);
	return 0;
}

static void
json_kv_u64(mj_buf *b, const char *k, uint64_t v, bool comma)
{
	mj_buf_printf(b, "%s\"%s\":%" PRIu64, comma ? "," : "", k, v);
}

static void
json_stats(mj_buf *b, const mj_client_result *r)
{
	const mj_client_statistics *s = &r->stats;

	if (!r->has_stats) {
		mj_buf_printf(b, "null");
		return;
	}
	mj_buf_printf(b, "{");
	json_kv_u64(b, "instructions", s->instructions, false);
	json_kv_u64(b, "instruction_limit", s->instruction_limit, true);
	json_kv_u64(b, "memory_current", s->memory_current, true);
	json_kv_u64(b, "memory_peak", s->memory_peak, true);
	json_kv_u64(b, "memory_limit", s->memory_limit, true);
	json_kv_u64(b, "wall_us", s->wall_us, true);
	json_kv_u64(b, "timeout_ms", s->timeout_ms, true);
	json_kv_u64(b, "output_bytes", s->output_bytes, true);
	json_kv_u64(b, "output_limit", s->output_limit, true);
	json_kv_u64(b, "engines", s->engines, true);
	mj_buf_printf(b, "}");
}

static void
json_response(mj_buf *b, const mj_client_result *r)
{
	size_t i;

	mj_buf_printf(b, "{\"status\":\"%s\",\"error\":", r->kind == MJ_KIND_NONE ? "ok" : "error");
	if (r->kind == MJ_KIND_NONE) {
		mj_buf_printf(b, "null");
	} else {
		mj_buf_printf(b, "{\"kind\":");
		mj_buf_json_string(b, mj_kind_name(r->kind), strlen(mj_kind_name(r->kind)));
		mj_buf_printf(b, ",\"message\":");
		mj_buf_json_string(b, r->message, strlen(r->message));
		if (r->line > 0)
			mj_buf_printf(b, ",\"line\":%" PRIu32, r->line);
		else
			mj_buf_printf(b, ",\"line\":null");
		mj_buf_printf(b, ",\"traceback\":");
		if (r->traceback[0] != '\0')
			mj_buf_json_string(b, r->traceback, strlen(r->traceback));
		else
			mj_buf_printf(b, "null");
		mj_buf_printf(b, "}");
	}
	mj_buf_printf(b, ",\"values\":[");
	for (i = 0; i < r->n_values; i++) {
		if (i > 0)
			mj_buf_printf(b, ",");
		mj_buf_json_value(b, &r->values[i]);
	}
	mj_buf_printf(b, "],\"output\":");
	mj_buf_json_string(b, r->output, r->output_len);
	mj_buf_printf(
	    b, ",\"output_truncated\":%s,\"stats\":", r->output_truncated ? "true" : "false");
	json_stats(b, r);
	mj_buf_printf(
	    b, ",\"engine_created\":%s,\"engine_reset\":%s,\"quarantined\":%s,\"id\":%" PRIu64 "}",
	    r->engine_created ? "true" : "false", r->engine_reset ? "true" : "false",
	    r->quarantined ? "true" : "false", r->id);
}

/* Prints the result; returns the exit status. */
static int
report(const args *a, const mj_client_result *r)
{
	mj_buf b = {0};
	size_t i;
	int rc = r->kind == MJ_KIND_NONE ? 0 : EXIT_SCRIPT;

	if (a->json) {
		json_response(&b, r);
		mj_buf_printf(&b, "\n");
	} else {
		mj_buf_append(&b, r->output, r->output_len);
		if (r->kind == MJ_KIND_NONE) {
			for (i = 0; i < r->n_values; i++) {
				mj_buf_json_value(&b, &r->values[i]);
				mj_buf_printf(&b, "\n");
			}
			if (a->cmd == CMD_STATS) {
				json_stats(&b, r);
				mj_buf_printf(&b, "\n");
			} else if (a->cmd == CMD_PING) {
				mj_buf_printf(&b, "ok\n");
			}
		}
	}
	if (b.failed) {
		fprintf(stderr, "moonjail: out of memory\n");
		mj_buf_free(&b);
		return EXIT_USAGE;
	}
	fwrite(b.ptr, 1, b.len, stdout);
	mj_buf_free(&b);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "moonjail: cannot write the output: %s\n", strerror(errno));
		return EXIT_USAGE;
	}
	if (r->kind != MJ_KIND_NONE) {
		fprintf(stderr, "error: %s: %s", mj_kind_name(r->kind), r->message);
		if (r->line > 0)
			fprintf(stderr, " (line %" PRIu32 ")", r->line);
		fprintf(stderr, "\n");
		if (a->traceback && r->traceback[0] != '\0')
			fprintf(stderr, "%s\n", r->traceback);
	}
	if (!a->json && r->output_truncated)
		fprintf(stderr, "moonjail: note: the output was truncated at the output limit\n");
	if (!a->json && r->engine_reset)
		fprintf(stderr, "moonjail: note: the engine was reset; its state is gone\n");
	if (!a->json && r->quarantined)
		fprintf(stderr,
		        "moonjail: note: this tenant is quarantined (its calls killed workers "
		        "repeatedly); it runs on a separate worker pool for now\n");
	if (a->stats && r->has_stats)
		fprintf(stderr,
		        "stats: instructions=%" PRIu64 " memory=%" PRIu64 " peak=%" PRIu64
		        " limit=%" PRIu64 " wall_us=%" PRIu64 " output=%" PRIu64 "%s\n",
		        r->stats.instructions, r->stats.memory_current, r->stats.memory_peak,
		        r->stats.memory_limit, r->stats.wall_us, r->stats.output_bytes,
		        r->engine_created ? " (engine created)" : "");
	return rc;
}

static int
run_command(mj_client *c, args *a, mj_client_result **res)
{
	char *input = NULL, why[160] = "";
	size_t len = 0;
	mj_value v = {0};
	mj_err err;

	switch (a->cmd) {
	case CMD_EVAL:
	case CMD_RUN:
		if (a->code != NULL) {
			len = strlen(a->code);
		} else if ((input = read_input(a->file, &len)) == NULL) {
			return EXIT_USAGE;
		}
		err = (a->cmd == CMD_EVAL ? mj_client_eval : mj_client_run)(
		    c, a->tenant, a->engine, input != NULL ? input : a->code, len, res);
		break;
	case CMD_RESET:
		err = mj_client_reset(c, a->tenant, a->engine, res);
		break;
	case CMD_DESTROY:
		err = mj_client_destroy(c, a->tenant, a->engine, res);
		break;
	case CMD_STATS:
		err = mj_client_stats(c, a->tenant, a->engine, res);
		break;
	case CMD_PING:
		err = mj_client_ping(c, a->tenant, res);
		break;
	case CMD_CREATE:
		a->create.modules = a->modules;
		if (a->prelude != NULL) {
			a->create.prelude = a->prelude;
			a->create.prelude_len = strlen(a->prelude);
		} else if (a->prelude_file != NULL) {
			if ((input = read_input(a->prelude_file, &len)) == NULL)
				return EXIT_USAGE;
			a->create.prelude = input;
			a->create.prelude_len = len;
		}
		err = mj_client_create(c, a->tenant, a->engine, &a->create, res);
		break;
	case CMD_SET_NS:
		if (strcmp(a->positional[1], "-") == 0) {
			if ((input = read_input("-", &len)) == NULL)
				return EXIT_USAGE;
		}
		err = mj__cli_json_parse(input != NULL ? input : a->positional[1],
		                         input != NULL ? len : strlen(a->positional[1]), &v, why,
		                         sizeof(why));
		if (err != MJ_OK) {
			mj_free(input);
			return usage_error("bad JSON value", why[0] ? why : mj_err_str(err));
		}
		if (v.type != MJ_VMAP && v.type != MJ_VARRAY) {
			mj_value_free(&v);
			mj_free(input);
			return usage_error("a namespace value must be a JSON object or array",
			                   NULL);
		}
		err = mj_client_set_namespace(c, a->tenant, a->engine, a->positional[0], &v, res);
		mj_value_free(&v);
		break;
	case CMD_UNSET_NS:
		err = mj_client_unset_namespace(c, a->tenant, a->engine, a->positional[0], res);
		break;
	default:
		err = MJ_EINVAL;
		break;
	}
	mj_free(input);
	if (err != MJ_OK) {
		fprintf(stderr, "moonjail: %s\n", mj_client_errmsg(c));
		return EXIT_USAGE;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	mj_client_options opts = {0};
	mj_client_result *res = NULL;
	mj_client *c;
	args a = {0};
	const char *env;
	int rc;

	if ((rc = parse_args(argc, argv, &a)) != 0 || (rc = check_args(&a)) != 0)
		return rc;
	if (a.url == NULL)
		a.url = (env = getenv("MOONJAIL_URL")) != NULL && env[0] != '\0'
		            ? env
		            : MJ_CLIENT_DEFAULT_URL;
	opts.recv_timeout_ms = a.call_timeout_ms;
	if (mj_client_open(&c, a.url, &opts) != MJ_OK) {
		fprintf(stderr, "moonjail: %s\n", mj_client_errmsg(NULL));
		return EXIT_USAGE;
	}
	if ((rc = run_command(c, &a, &res)) < 0) {
		rc = report(&a, res);
		mj_client_result_free(res);
	}
	mj_client_close(c);
	return rc;
}
