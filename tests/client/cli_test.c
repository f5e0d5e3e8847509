/* The moonjail and moonjail-bench programs, run for real against an in-test REP server. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

#include <cmocka.h>

#include "fake_server.h"
#include "mj/text.h"

#define CLI_BIN MOONJAIL_BIN
#define BENCH_BIN MOONJAIL_BENCH_BIN

#define MAX_ARGS 32
#define RUN_DEADLINE_MS 20000

extern char **environ;

typedef struct outcome {
	int status; /* exit status, or -1 when the program did not exit normally */
	mj_buf out;
	mj_buf err;
} outcome;

static fake_server srv;

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
outcome_free(outcome *o)
{
	mj_buf_free(&o->out);
	mj_buf_free(&o->err);
}

/* Runs prog with args (NULL-terminated) and stdin from `input` (NULL: empty), capturing both
 * outputs. Everything is bounded by RUN_DEADLINE_MS; a program still running then is killed. */
static void
run_prog(const char *prog, const char *const *args, const char *input, outcome *o)
{
	char *argv[MAX_ARGS + 2];
	int out_p[2], err_p[2], in_p[2];
	posix_spawn_file_actions_t fa;
	uint64_t deadline = now_ms() + RUN_DEADLINE_MS;
	size_t i, in_len = input ? strlen(input) : 0, in_off = 0;
	bool out_open = true, err_open = true;
	int wst = 0;
	pid_t pid;

	memset(o, 0, sizeof(*o));
	argv[0] = (char *)prog;
	for (i = 0; args[i] != NULL && i < MAX_ARGS; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	assert_int_equal(pipe2(out_p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(err_p, O_CLOEXEC), 0);
	assert_int_equal(pipe2(in_p, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in_p[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out_p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err_p[1], 2);
	assert_int_equal(posix_spawn(&pid, prog, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(in_p[0]);
	close(out_p[1]);
	close(err_p[1]);
	fcntl(in_p[1], F_SETFL, O_NONBLOCK);
	if (in_len == 0) {
		close(in_p[1]);
		in_p[1] = -1;
	}
	while ((out_open || err_open) && now_ms() < deadline) {
		struct pollfd pf[3] = {{out_open ? out_p[0] : -1, POLLIN, 0},
		                       {err_open ? err_p[0] : -1, POLLIN, 0},
		                       {in_p[1], POLLOUT, 0}};
		char buf[4096];
		ssize_t n;

		if (poll(pf, 3, 100) < 0 && errno != EINTR)
			break;
		if (pf[0].revents) {
			n = read(out_p[0], buf, sizeof(buf));
			if (n > 0)
				mj_buf_append(&o->out, buf, (size_t)n);
			else
				out_open = false;
		}
		if (pf[1].revents) {
			n = read(err_p[0], buf, sizeof(buf));
			if (n > 0)
				mj_buf_append(&o->err, buf, (size_t)n);
			else
				err_open = false;
		}
		if (in_p[1] >= 0 && pf[2].revents) {
			n = write(in_p[1], input + in_off, in_len - in_off);
			if (n > 0)
				in_off += (size_t)n;
			if (n < 0 || in_off == in_len) {
				close(in_p[1]);
				in_p[1] = -1;
			}
		}
	}
	if (in_p[1] >= 0)
		close(in_p[1]);
	close(out_p[0]);
	close(err_p[0]);
	while (waitpid(pid, &wst, WNOHANG) == 0) {
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &wst, 0);
			break;
		}
		usleep(10000);
	}
	mj_buf_append(&o->out, "", 1);
	mj_buf_append(&o->err, "", 1);
	o->out.len--;
	o->err.len--;
	o->status = WIFEXITED(wst) ? WEXITSTATUS(wst) : -1;
}

/* Runs `moonjail --url <server> args...`. */
static void
run_cli(const char *const *args, const char *input, outcome *o)
{
	const char *full[MAX_ARGS + 1] = {"--url", srv.url};
	size_t i;

	for (i = 0; args[i] != NULL && i + 2 < MAX_ARGS; i++)
		full[i + 2] = args[i];
	full[i + 2] = NULL;
	run_prog(CLI_BIN, full, input, o);
}

static mj_request *
last_request(void)
{
	mj_request *req = fs_last(&srv);

	assert_non_null(req);
	return req;
}

static int
group_setup(void **state)
{
	(void)state;
	unsetenv("MOONJAIL_URL");
	return fs_start(&srv);
}

static int
group_teardown(void **state)
{
	(void)state;
	fs_stop(&srv);
	return 0;
}

static int
reset_mode(void **state)
{
	(void)state;
	atomic_store(&srv.mode, FS_NORMAL);
	return 0;
}

static void
test_eval_prints_output_then_values(void **state)
{
	const char *args[] = {
	    "eval", "--tenant", "acme", "-e", "print('hi') return 1, 'x', {a=true}", NULL};
	outcome o;
	mj_request *req;

	(void)state;
	run_cli(args, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.out.ptr, "hi\n1\n\"x\"\n{\"a\":true}\n");
	assert_string_equal(o.err.ptr, "");
	outcome_free(&o);
	req = last_request();
	assert_string_equal(req->tenant, "acme");
	assert_string_equal(req->engine, "default");
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_EVAL);
	mj_proto_free(&req->base);

	{
		const char *args2[] = {"eval", "--tenant=acme",          "--engine", "e7",
		                       "-e",   "return nil, 2.5, {1,2}", NULL};
		run_cli(args2, NULL, &o);
		assert_int_equal(o.status, 0);
		assert_string_equal(o.out.ptr, "null\n2.5\n[1,2]\n");
		outcome_free(&o);
		req = last_request();
		assert_string_equal(req->engine, "e7");
		mj_proto_free(&req->base);
	}
}

static void
test_script_errors_exit_1(void **state)
{
	const char *args[] = {"eval", "--tenant", "acme", "-e", "error('boom')", NULL};
	const char *inst[] = {"run", "--tenant", "acme", "-e", "while true do end", NULL};
	const char *tb[] = {"eval", "--tenant", "acme", "--traceback", "-e", "error('boom')", NULL};
	outcome o;

	(void)state;
	run_cli(args, NULL, &o);
	assert_int_equal(o.status, 1);
	assert_string_equal(o.out.ptr, "before\n");
	assert_string_equal(o.err.ptr, "error: runtime: script:3: boom (line 3)\n");
	outcome_free(&o);

	run_cli(inst, NULL, &o);
	assert_int_equal(o.status, 1);
	assert_string_equal(o.err.ptr,
	                    "error: instructions: instruction limit exceeded (limit 100000000)\n"
	                    "moonjail: note: the engine was reset; its state is gone\n");
	outcome_free(&o);

	run_cli(tb, NULL, &o);
	assert_int_equal(o.status, 1);
	assert_string_equal(o.err.ptr, "error: runtime: script:3: boom (line 3)\n"
	                               "stack traceback:\n\t[C]: in function 'error'\n");
	outcome_free(&o);
}

static void
test_json_output(void **state)
{
	const char *ok[] = {"--json", "eval", "--tenant",
	                    "acme",   "-e",   "print('hi') return 1, 'x', {a=true}",
	                    NULL};
	const char *bad[] = {"eval", "--json", "--tenant", "acme", "-e", "error('boom')", NULL};
	outcome o;

	(void)state;
	run_cli(ok, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(
	    o.out.ptr,
	    "{\"status\":\"ok\",\"error\":null,\"values\":[1,\"x\",{\"a\":true}],\"output\":"
	    "\"hi\\n\","
	    "\"output_truncated\":false,\"stats\":{\"instructions\":42,\"instruction_limit\":"
	    "100000000,\"memory_current\":1000,\"memory_peak\":2000,\"memory_limit\":16777216,"
	    "\"wall_us\":7,\"timeout_ms\":1000,\"output_bytes\":0,\"output_limit\":1048576,"
	    "\"engines\":0},\"engine_created\":false,\"engine_reset\":false,\"quarantined\":false,"
	    "\"id\":1}\n");
	outcome_free(&o);

	run_cli(bad, NULL, &o);
	assert_int_equal(o.status, 1);
	assert_non_null(strstr(o.out.ptr, "{\"status\":\"error\",\"error\":{\"kind\":\"runtime\","
	                                  "\"message\":\"script:3: boom\",\"line\":3,"
	                                  "\"traceback\":\"stack traceback:\\n\\t[C]: in function "
	                                  "'error'\"},\"values\":[],\"output\":\"before\\n\""));
	assert_string_equal(o.err.ptr, "error: runtime: script:3: boom (line 3)\n");
	outcome_free(&o);
}

static void
test_sources_from_file_and_stdin(void **state)
{
	char path[128];
	const char *file[] = {"eval", "--tenant", "acme", "-f", path, NULL};
	const char *dash[] = {"eval", "--tenant", "acme", "-", NULL};
	const char *fdash[] = {"eval", "--tenant", "acme", "-f", "-", NULL};
	const char *missing[] = {"eval", "--tenant", "acme", "-f", "/nonexistent/x.lua", NULL};
	outcome o;
	FILE *fp;

	(void)state;
	snprintf(path, sizeof(path), "%s/script.lua", srv.dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("return 'from file'", fp);
	fclose(fp);
	run_cli(file, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.out.ptr, "\"return 'from file'\"\n");
	outcome_free(&o);
	unlink(path);

	run_cli(dash, "return 'from stdin'", &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.out.ptr, "\"return 'from stdin'\"\n");
	outcome_free(&o);

	run_cli(fdash, "x", &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.out.ptr, "\"x\"\n");
	outcome_free(&o);

	run_cli(missing, NULL, &o);
	assert_int_equal(o.status, 2);
	assert_non_null(strstr(o.err.ptr, "/nonexistent/x.lua"));
	outcome_free(&o);
}

static void
test_other_commands(void **state)
{
	const char *run[] = {"run", "--tenant", "acme", "-e", "return 5", NULL};
	const char *reset[] = {"reset", "--tenant", "acme", "--engine", "e1", NULL};
	const char *destroy[] = {"destroy", "--tenant", "acme", NULL};
	const char *stats[] = {"stats", "--tenant", "acme", NULL};
	const char *ping[] = {"ping", NULL};
	const char *create[] = {
	    "create",       "--tenant", "acme",      "--memory-limit",   "2M", "--module", "json",
	    "--timeout-ms", "500",      "--prelude", "function f() end", NULL};
	const char *setns[] = {"set-namespace",
	                       "--tenant",
	                       "acme",
	                       "Order",
	                       "{\"total\": 12.5, \"items\": [1, \"two\", null], \"ok\": true}",
	                       NULL};
	const char *unsetns[] = {"unset-namespace", "--tenant", "acme", "Order", NULL};
	mj_request *req;
	outcome o;

	(void)state;
	run_cli(run, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.out.ptr, "");
	outcome_free(&o);
	req = last_request();
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_RUN);
	mj_proto_free(&req->base);

	run_cli(reset, NULL, &o);
	assert_int_equal(o.status, 0);
	outcome_free(&o);
	req = last_request();
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_RESET);
	assert_string_equal(req->engine, "e1");
	mj_proto_free(&req->base);

	run_cli(destroy, NULL, &o);
	assert_int_equal(o.status, 0);
	outcome_free(&o);
	req = last_request();
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_DESTROY);
	mj_proto_free(&req->base);

	run_cli(stats, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_non_null(strstr(o.out.ptr, "{\"instructions\":42,"));
	assert_non_null(strstr(o.out.ptr, "\"engines\":2}\n"));
	outcome_free(&o);

	run_cli(ping, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_string_equal(o.out.ptr, "ok\n");
	outcome_free(&o);

	run_cli(create, NULL, &o);
	assert_int_equal(o.status, 0);
	outcome_free(&o);
	req = last_request();
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_CREATE);
	assert_int_equal(req->create->limits->memory->value, 2 << 20);
	assert_int_equal(req->create->limits->timeout_ms->value, 500);
	assert_null(req->create->limits->instructions);
	assert_int_equal(req->create->n_modules, 1);
	assert_string_equal(req->create->modules[0], "json");
	assert_int_equal(req->create->prelude.len, strlen("function f() end"));
	mj_proto_free(&req->base);

	run_cli(setns, NULL, &o);
	assert_int_equal(o.status, 0);
	outcome_free(&o);
	req = last_request();
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_SET_NAMESPACE);
	assert_string_equal(req->set_namespace->name, "Order");
	{
		mj_value v;
		mj_buf b = {0};
		assert_int_equal(mj_proto_to_value(req->set_namespace->value, &v, NULL, 0), MJ_OK);
		mj_buf_json_value(&b, &v);
		mj_buf_append(&b, "", 1);
		assert_string_equal(b.ptr,
		                    "{\"total\":12.5,\"items\":[1,\"two\",null],\"ok\":true}");
		mj_buf_free(&b);
		mj_value_free(&v);
	}
	mj_proto_free(&req->base);

	run_cli(unsetns, NULL, &o);
	assert_int_equal(o.status, 0);
	outcome_free(&o);
	req = last_request();
	assert_int_equal(req->op_case, MOONJAIL__V1__REQUEST__OP_UNSET_NAMESPACE);
	mj_proto_free(&req->base);
}

static void
expect_usage(const char *const *args, const char *needle)
{
	unsigned before = srv.n_requests;
	outcome o;

	run_cli(args, NULL, &o);
	if (o.status != 2 || strstr(o.err.ptr, needle) == NULL)
		fail_msg("status %d, stderr '%s' (wanted 2 and '%s')", o.status, o.err.ptr, needle);
	assert_string_equal(o.out.ptr, "");
	assert_int_equal(srv.n_requests, before);
	outcome_free(&o);
}

static void
test_usage_errors_exit_2(void **state)
{
	(void)state;
	expect_usage((const char *[]){NULL}, "no command");
	expect_usage((const char *[]){"frobnicate", NULL}, "unknown command");
	expect_usage((const char *[]){"eval", "-e", "1", NULL}, "--tenant is required");
	expect_usage((const char *[]){"eval", "--tenant", "t", NULL}, "-e CODE");
	expect_usage((const char *[]){"eval", "--tenant", "t", "-e", "1", "-f", "x", NULL},
	             "exactly one");
	expect_usage((const char *[]){"eval", "--tenant", "t", "-e", "1", "-", NULL},
	             "exactly one");
	expect_usage((const char *[]){"eval", "--tenant", "t", "--bogus", NULL}, "unknown option");
	expect_usage((const char *[]){"eval", "--tenant", NULL}, "needs a value");
	expect_usage((const char *[]){"reset", "--tenant", "t", "-e", "1", NULL}, "only for eval");
	expect_usage((const char *[]){"eval", "--tenant", "t", "-e", "1", "--module", "json", NULL},
	             "only for create");
	expect_usage((const char *[]){"create", "--tenant", "t", "--memory-limit", "lots", NULL},
	             "bad size");
	expect_usage((const char *[]){"set-namespace", "--tenant", "t", "N", "{bad", NULL},
	             "bad JSON");
	expect_usage((const char *[]){"set-namespace", "--tenant", "t", "N", "42", NULL},
	             "object or array");
	expect_usage((const char *[]){"set-namespace", "--tenant", "t", "N", NULL},
	             "NAME and JSON");
	expect_usage((const char *[]){"stats", "--tenant", "t", "extra", NULL}, "unexpected");
	expect_usage((const char *[]){"eval", "--tenant", "bad tenant", "-e", "1", NULL},
	             "bad tenant name");
}

static void
test_help(void **state)
{
	const char *args[] = {"--help", NULL};
	outcome o;

	(void)state;
	run_prog(CLI_BIN, args, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_non_null(strstr(o.out.ptr, "usage: moonjail [--url URL] [--json]"));
	assert_non_null(strstr(o.out.ptr, "MOONJAIL_URL"));
	assert_non_null(strstr(o.out.ptr, "exit status"));
	outcome_free(&o);
}

static void
test_connection_errors_exit_2(void **state)
{
	const char *refused[] = {
	    "--url", "ipc:///nonexistent-mj/x.sock", "eval", "--tenant", "t", "-e", "1", NULL};
	const char *badurl[] = {"--url", "nope://x", "ping", NULL};
	const char *viaenv[] = {"eval", "--tenant", "t", "-e", "return 'env'", NULL};
	const char *timeout[] = {
	    "--call-timeout-ms", "300", "eval", "--tenant", "t", "-e", "1", NULL};
	uint64_t t0;
	outcome o;

	(void)state;
	run_prog(CLI_BIN, refused, NULL, &o);
	assert_int_equal(o.status, 2);
	assert_non_null(
	    strstr(o.err.ptr, "moonjail: cannot connect to ipc:///nonexistent-mj/x.sock"));
	outcome_free(&o);

	run_prog(CLI_BIN, badurl, NULL, &o);
	assert_int_equal(o.status, 2);
	assert_non_null(strstr(o.err.ptr, "moonjail: "));
	outcome_free(&o);

	/* MOONJAIL_URL is the default address. */
	setenv("MOONJAIL_URL", srv.url, 1);
	run_prog(CLI_BIN, viaenv, NULL, &o);
	unsetenv("MOONJAIL_URL");
	assert_int_equal(o.status, 0);
	assert_string_equal(o.out.ptr, "\"return 'env'\"\n");
	outcome_free(&o);

	atomic_store(&srv.mode, FS_SILENT);
	t0 = now_ms();
	run_cli(timeout, NULL, &o);
	assert_int_equal(o.status, 2);
	assert_non_null(strstr(o.err.ptr, "no answer"));
	assert_true(now_ms() - t0 < 10000);
	outcome_free(&o);

	atomic_store(&srv.mode, FS_GARBAGE);
	run_cli(viaenv, NULL, &o);
	assert_int_equal(o.status, 2);
	assert_non_null(strstr(o.err.ptr, "malformed response"));
	outcome_free(&o);
}

static void
test_bench(void **state)
{
	const char *echo[] = {"--echo", "--concurrency", "4", "--requests", "200", "--warmup",
	                      "20",     "--json",        NULL};
	const char *svc[] = {"--url",    srv.url, "--concurrency", "3", "--requests", "60",
	                     "--warmup", "5",     "--tenants",     "4", NULL};
	const char *thread[] = {
	    "--echo-thread", "--concurrency", "2", "--requests", "50", "--warmup", "0", NULL};
	const char *bad[] = {"--concurrency", "0", NULL};
	outcome o;

	(void)state;
	run_prog(BENCH_BIN, echo, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_non_null(strstr(o.out.ptr, "{\"target\":\"echo\""));
	assert_non_null(strstr(o.out.ptr, "\"concurrency\":4,\"requests\":200"));
	assert_non_null(strstr(o.out.ptr, "\"p99.9\":"));
	assert_non_null(strstr(o.out.ptr, "\"ok\":200,"));
	/* CPU per request on both sides of the echo: numbers, not null. */
	assert_non_null(strstr(o.out.ptr, "\"cpu_us_per_request\":{\"client\":"));
	assert_null(strstr(o.out.ptr, "\"client\":null"));
	assert_non_null(strstr(o.out.ptr, ",\"echo_server\":"));
	outcome_free(&o);

	run_prog(BENCH_BIN, svc, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_non_null(strstr(o.out.ptr, "throughput: "));
	assert_non_null(strstr(o.out.ptr, "errors: none"));
	assert_non_null(strstr(o.out.ptr, "cpu (us/request): client "));
	assert_null(strstr(o.out.ptr, "echo server"));
	outcome_free(&o);

	run_prog(BENCH_BIN, thread, NULL, &o);
	assert_int_equal(o.status, 0);
	assert_non_null(strstr(o.out.ptr, "errors: none"));
	outcome_free(&o);

	run_prog(BENCH_BIN, bad, NULL, &o);
	assert_int_equal(o.status, 2);
	outcome_free(&o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_eval_prints_output_then_values, reset_mode),
	    cmocka_unit_test_setup(test_script_errors_exit_1, reset_mode),
	    cmocka_unit_test_setup(test_json_output, reset_mode),
	    cmocka_unit_test_setup(test_sources_from_file_and_stdin, reset_mode),
	    cmocka_unit_test_setup(test_other_commands, reset_mode),
	    cmocka_unit_test_setup(test_usage_errors_exit_2, reset_mode),
	    cmocka_unit_test_setup(test_help, reset_mode),
	    cmocka_unit_test_setup(test_connection_errors_exit_2, reset_mode),
	    cmocka_unit_test_setup(test_bench, reset_mode),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
