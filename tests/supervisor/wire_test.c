/* Raw bytes on the client sockets (ipc, and a loopback tcp listener), below nng: what a peer that
 * does not speak the SP protocol, or speaks it badly, can send. moonjaild drops such a connection
 * or answers bad-request, never crashes, and serves everyone else throughout. */
#include <stdbool.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#if defined(MOONJAILD_BIN) && defined(MOONJAIL_WORKER_BIN) && defined(MOONJAIL_BIN)

#include "supervisor/harness.h"

/* The SP-over-IPC connection header of a REQ peer and of the REP side that answers (nng's
 * ipc transport: 0, 'S', 'P', 0, the protocol number big-endian, two reserved bytes), and
 * the message header that follows: type 1, then the length as a big-endian u64. */
static const uint8_t req_hello[8] = {0, 'S', 'P', 0, 0, 0x30, 0, 0};
static const uint8_t rep_hello[8] = {0, 'S', 'P', 0, 0, 0x31, 0, 0};

/* A stream socket connected to sa, with 5 s timeouts on both directions. */
static int
connect_to(const struct sockaddr *sa, socklen_t len)
{
	struct timeval tv = {5, 0};
	int fd;

	assert_true((fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	assert_int_equal(connect(fd, sa, len), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static int
raw_connect(const svc *s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s.sock", s->dir);
	return connect_to((struct sockaddr *)&sa, sizeof(sa));
}

/* Writes what the socket takes of buf; false when the peer has gone (it may drop us first). */
static bool
send_some(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = send(fd, p, len, MSG_NOSIGNAL)) <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* Reads exactly len bytes; false on the end of the stream or a 5 s silence. */
static bool
read_full(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = recv(fd, p, len, 0)) <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Whether moonjaild closes fd within about ms (what it sent before is skipped). */
static bool
dropped_within(int fd, unsigned ms)
{
	uint8_t buf[4096];
	uint64_t t0 = now_ms();
	struct timeval tv = {0, 100000};
	ssize_t n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (now_ms() - t0 < ms) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return true;
	}
	return false;
}

static bool
dropped(int fd)
{
	return dropped_within(fd, 5000);
}

/* One SP message header announcing len bytes (type byte and length). */
static void
msg_header(uint8_t hdr[9], uint64_t len)
{
	hdr[0] = 1;
	put_be64(hdr + 1, len);
}

/* A packed Request: eval src for tenant (mj_malloc'd, the caller frees it with mj_free). */
static uint8_t *
eval_request(const char *tenant, const char *src, size_t *len)
{
	Moonjail__V1__Request req = MOONJAIL__V1__REQUEST__INIT;
	Moonjail__V1__Eval ev = MOONJAIL__V1__EVAL__INIT;
	uint8_t *buf;

	req.version = MJ_PROTO_VERSION;
	req.id = 1;
	req.tenant = (char *)tenant;
	req.op_case = MOONJAIL__V1__REQUEST__OP_EVAL;
	ev.source.data = (uint8_t *)src;
	ev.source.len = strlen(src);
	req.eval = &ev;
	assert_int_equal(mj_proto_pack(&req.base, &buf, len), MJ_OK);
	return buf;
}

static void
assert_serving(const svc *s)
{
	assert_int_equal(eval_int(s, "bystander", "return 40 + 2"), 42);
}

/* Sends one REQ message (request id, then body) on fd, whose handshake is done, and reads the
 * REP answer's body. Returns the decoded Response, or NULL when the stream fails or the answer
 * is not a well-formed reply to rid; asserts nothing. */
static mj_response *
raw_exchange_try(int fd, uint32_t rid, const void *body, size_t len)
{
	uint8_t hdr[9], id[4], *buf = NULL;
	ProtobufCMessage *m = NULL;
	uint64_t n = 0;
	bool ok;
	int i;

	id[0] = (uint8_t)(rid >> 24 | 0x80);
	id[1] = (uint8_t)(rid >> 16);
	id[2] = (uint8_t)(rid >> 8);
	id[3] = (uint8_t)rid;
	msg_header(hdr, sizeof(id) + len);
	ok = send_some(fd, hdr, sizeof(hdr)) && send_some(fd, id, sizeof(id)) &&
	     (len == 0 || send_some(fd, body, len)) && read_full(fd, hdr, sizeof(hdr)) &&
	     hdr[0] == 1;
	for (i = 1; i < 9; i++)
		n = n << 8 | hdr[i];
	ok = ok && n >= sizeof(id) && n < ((uint64_t)1 << 20) &&
	     (buf = malloc((size_t)n)) != NULL && read_full(fd, buf, (size_t)n) &&
	     memcmp(buf, id, sizeof(id)) == 0 &&
	     mj_proto_unpack(&moonjail__v1__response__descriptor, buf + sizeof(id),
	                     (size_t)n - sizeof(id), NULL, &m, NULL, 0) == MJ_OK;
	free(buf);
	return ok ? (mj_response *)m : NULL;
}

static mj_response *
raw_exchange(int fd, uint32_t rid, const void *body, size_t len)
{
	mj_response *r = raw_exchange_try(fd, rid, body, len);

	assert_non_null(r);
	return r;
}

/* raw_exchange on a connection that has sent its SP header: reads moonjaild's first. */
static mj_response *
raw_call(int fd, uint32_t rid, const void *body, size_t len)
{
	uint8_t hello[8];

	assert_true(read_full(fd, hello, sizeof(hello)));
	assert_memory_equal(hello, rep_hello, sizeof(hello));
	return raw_exchange(fd, rid, body, len);
}

/* One call by hand on a new connection, "return 42" for the bystander; whether it was answered
 * so, within about 3 s a step. Asserts nothing. */
static bool
raw_try(const svc *s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {3, 0};
	uint8_t hello[8], *req;
	mj_response *r = NULL;
	size_t len;
	bool ok = false;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s.sock", s->dir);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    send_some(fd, req_hello, sizeof(req_hello)) && read_full(fd, hello, sizeof(hello)) &&
	    memcmp(hello, rep_hello, sizeof(hello)) == 0) {
		req = eval_request("bystander", "return 42", &len);
		r = raw_exchange_try(fd, 5, req, len);
		mj_free(req);
	}
	close(fd);
	if (r != NULL) {
		ok = r->status == MOONJAIL__V1__STATUS__STATUS_OK && r->n_values == 1 &&
		     r->values[0]->kind_case == MOONJAIL__V1__VALUE__KIND_INTEGER &&
		     r->values[0]->integer == 42;
		mj_proto_free(&r->base);
	}
	return ok;
}

/* Whether a caller is served within ms, trying again after a failed call: a call that meets a
 * stalled listener fails (its connection is dropped when moonjaild restarts the listener).
 * The caller works by hand, below nng: nng 1.5.2's own client now and then leaks its pipe when
 * it closes its socket as the listener restart drops the connection, which the sanitizer
 * build's leak check reports. */
static bool
served_within(const svc *s, unsigned ms)
{
	uint64_t t0 = now_ms();

	while (now_ms() - t0 < ms) {
		if (raw_try(s))
			return true;
		sleep_ms(100);
	}
	return false;
}

/* SIGTERM stops moonjaild cleanly within 5 s. */
static void
assert_stops_promptly(svc *s, const char *when)
{
	uint64_t t0 = now_ms();

	assert_int_equal(svc_stop(s), 0);
	if (now_ms() - t0 > 5000)
		fail_msg("SIGTERM took %llu ms %s", (unsigned long long)(now_ms() - t0), when);
}

/* svc_start for a test that sets off nng issue 1518: the stalled listener's pipes are never
 * freed inside nng, even after moonjaild closes the listener, so a sanitizer build's leak
 * check is turned off for that moonjaild alone (about 10 KiB per restart, all in libnng). */
static void
svc_start_nng_leaks(svc *s, const char *const *extra)
{
	const char *was = getenv("ASAN_OPTIONS");
	char *saved = was != NULL ? strdup(was) : NULL, opts[512];

	snprintf(opts, sizeof(opts), "%s%sdetect_leaks=0", was != NULL ? was : "",
	         was != NULL && was[0] != '\0' ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	svc_start(s, extra);
	if (saved != NULL)
		setenv("ASAN_OPTIONS", saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	free(saved);
}

/* nng 1.5.2 stops a listener's accept loop when a peer hangs up during the SP handshake (nng
 * issue 1518): a bare connect and close, as a TCP health check does, or the SP header and a
 * close.
 * moonjaild's listener watch notices that no pipe arrives and restarts the listener, so new
 * callers are served again within seconds, and later ones at once. */
static void
test_hangup_in_handshake_recovers(void **state)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	int fd, i;
	svc s;

	(void)state;
	svc_start_nng_leaks(&s, extra);
	/* Whether a hang-up stops the loop depends on timing (one that lands before the
	 * accept does not); twenty in a row stopped it in every run seen here but one, under a
	 * parallel ctest, so whether a restart was needed is not asserted: only the service. */
	for (i = 0; i < 20; i++) {
		fd = raw_connect(&s);
		if (i % 2 == 1)
			send_some(fd, req_hello, sizeof(req_hello));
		close(fd);
	}
	if (!served_within(&s, 20000))
		fail_msg("not served within 20 s of twenty hang-ups in the handshake");
	assert_serving(&s);
	assert_int_equal(svc_stop(&s), 0);
}

/* Bytes that are not an SP connection at all, and SP headers for the wrong peer: each
 * connection is dropped. */
static void
test_not_sp_is_dropped(void **state)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const uint8_t zeros[8] = {0};
	static const uint8_t pub[8] = {0, 'S', 'P', 0, 0, 0x20, 0, 0};   /* PUB, not REQ */
	static const uint8_t rep[8] = {0, 'S', 'P', 0, 0, 0x31, 0, 0};   /* REP to REP */
	static const uint8_t magic[8] = {1, 'S', 'P', 0, 0, 0x30, 0, 0}; /* bad magic */
	static const struct {
		const void *buf;
		size_t len;
	} cases[] = {{http, sizeof(http) - 1},
	             {zeros, sizeof(zeros)},
	             {pub, sizeof(pub)},
	             {rep, sizeof(rep)},
	             {magic, sizeof(magic)}};
	size_t i;
	svc s;
	int fd;

	(void)state;
	svc_start(&s, extra);
	/* The control: a good REQ header and nothing more is a connection kept open. */
	fd = raw_connect(&s);
	send_some(fd, req_hello, sizeof(req_hello));
	assert_false(dropped_within(fd, 1000));
	close(fd);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd = raw_connect(&s);
		send_some(fd, cases[i].buf, cases[i].len);
		if (!dropped(fd))
			fail_msg("case %zu: the connection stayed open", i);
		close(fd);
		assert_serving(&s);
	}
	assert_int_equal(svc_stop(&s), 0);
}

/* A good REQ header followed by broken message framing: a bad type byte, a length of 2^63, a
 * length over the 16 MiB cap plus slack, and a message cut short by the peer's close. */
static void
test_bad_framing_is_dropped(void **state)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	static const struct {
		uint8_t type;
		uint64_t len; /* announced; 16 bytes follow */
		bool shut;    /* then the peer closes its side */
	} cases[] = {{7, 16, false},
	             {1, (uint64_t)1 << 63, false},
	             {1, (uint64_t)17 << 20, false},
	             {1, 100, true}};
	uint8_t hdr[9], body[16] = {0x80, 0, 0, 1};
	size_t i;
	svc s;
	int fd;

	(void)state;
	svc_start(&s, extra);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd = raw_connect(&s);
		send_some(fd, req_hello, sizeof(req_hello));
		msg_header(hdr, cases[i].len);
		hdr[0] = cases[i].type;
		send_some(fd, hdr, sizeof(hdr));
		send_some(fd, body, sizeof(body));
		if (cases[i].shut)
			shutdown(fd, SHUT_WR);
		if (!dropped(fd))
			fail_msg("case %zu: the connection stayed open", i);
		close(fd);
		assert_serving(&s);
	}
	assert_int_equal(svc_stop(&s), 0);
}

/* A well-framed SP request whose body is not a Request, and one with no body at all, written
 * by hand: each is answered bad-request on the same connection, which stays usable. */
static void
test_raw_junk_body_is_answered(void **state)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	mj_response *r;
	svc s;
	int fd;

	(void)state;
	svc_start(&s, extra);
	fd = raw_connect(&s);
	assert_true(send_some(fd, req_hello, sizeof(req_hello)));
	r = raw_call(fd, 1, junk, sizeof(junk));
	assert_int_equal(r->status, MOONJAIL__V1__STATUS__STATUS_ERROR);
	assert_int_equal(r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_BAD_REQUEST);
	mj_proto_free(&r->base);
	close(fd);
	fd = raw_connect(&s);
	assert_true(send_some(fd, req_hello, sizeof(req_hello)));
	r = raw_call(fd, 2, NULL, 0);
	assert_int_equal(r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_BAD_REQUEST);
	mj_proto_free(&r->base);
	close(fd);
	assert_serving(&s);
	assert_int_equal(svc_stop(&s), 0);
}

/* Many connections that say nothing, and clients that ask for a 4 MiB reply and never read
 * it: the other callers are served on time meanwhile, and SIGTERM still stops moonjaild
 * cleanly and promptly. */
static void
test_idle_and_unread_connections(void **state)
{
	/* The reply (4 MiB) is over the default result limit of 1 MiB. */
	static const char *const extra[] = {"--workers", "1", "--result-bytes", "8M", NULL};
	enum { NIDLE = 100, NUNREAD = 4 };
	static const char src[] = "return string.rep('u', 4 << 20)";
	int idle[NIDLE], unread[NUNREAD], i;
	uint8_t hdr[9], id[4] = {0x80, 0, 0, 9}, *buf;
	uint64_t t0;
	size_t len;
	svc s;

	(void)state;
	svc_start(&s, extra);
	for (i = 0; i < NIDLE; i++)
		idle[i] = raw_connect(&s);
	for (i = 0; i < NIDLE / 2; i++) /* half of them get as far as the SP header */
		send_some(idle[i], req_hello, sizeof(req_hello));
	buf = eval_request("hoarder", src, &len);
	for (i = 0; i < NUNREAD; i++) {
		int sz = 4096;

		unread[i] = raw_connect(&s);
		setsockopt(unread[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		msg_header(hdr, sizeof(id) + len);
		assert_true(send_some(unread[i], req_hello, sizeof(req_hello)));
		assert_true(send_some(unread[i], hdr, sizeof(hdr)));
		assert_true(send_some(unread[i], id, sizeof(id)));
		assert_true(send_some(unread[i], buf, len));
	}
	mj_free(buf);
	/* Give the hoarders' calls time to run and their replies to stall. */
	sleep_ms(300);
	for (i = 0; i < 20; i++) {
		t0 = now_ms();
		assert_serving(&s);
		if (now_ms() - t0 > 3000)
			fail_msg("call %d took %llu ms beside idle and unread connections", i,
			         (unsigned long long)(now_ms() - t0));
	}
	for (i = 0; i < NIDLE; i++)
		close(idle[i]);
	assert_serving(&s);
	/* Nor do replies nobody reads hold up a shutdown. */
	assert_stops_promptly(&s, "with unread replies");
	for (i = 0; i < NUNREAD; i++)
		close(unread[i]);
}

/* Callers that send a request and hang up before its answer, more of them than moonjaild has
 * contexts (256). Such hang-ups also stop nng 1.5.2's accept loop now and then, which the
 * listener watch restarts. Afterwards the service answers again (no context is lost) and a
 * SIGTERM drains at once. */
static void
test_abandoned_calls(void **state)
{
	static const char *const extra[] = {"--workers", "1", NULL};
	static const char src[] =
	    "local t = os.clock() while os.clock() - t < 0.005 do end return 1";
	uint8_t hdr[9], id[4] = {0x80, 0, 0, 1}, *buf;
	size_t len;
	svc s;
	int i, fd;

	(void)state;
	svc_start_nng_leaks(&s, extra);
	buf = eval_request("quitter", src, &len);
	msg_header(hdr, sizeof(id) + len);
	for (i = 0; i < 300; i++) {
		fd = raw_connect(&s);
		assert_true(send_some(fd, req_hello, sizeof(req_hello)));
		assert_true(send_some(fd, hdr, sizeof(hdr)));
		assert_true(send_some(fd, id, sizeof(id)));
		assert_true(send_some(fd, buf, len));
		close(fd);
	}
	mj_free(buf);
	assert_true(served_within(&s, 20000));
	/* Well past the last abandoned call's run: each context is free again. */
	sleep_ms(3000);
	for (i = 0; i < 3; i++)
		assert_serving(&s);
	assert_stops_promptly(&s, "after abandoned calls");
}

/* A connection that has completed the SP handshake (moonjaild's half read too), with 5 s
 * timeouts. */
static int
handshake(const svc *s)
{
	uint8_t hello[8];
	int fd = raw_connect(s);

	assert_true(send_some(fd, req_hello, sizeof(req_hello)));
	assert_true(read_full(fd, hello, sizeof(hello)));
	assert_memory_equal(hello, rep_hello, sizeof(hello));
	return fd;
}

/* On an open connection, eval "return 40 + 2" by hand: 1 when answered 42, 0 when refused at
 * the connection limit, -1 when the connection failed. Other answers fail the test. */
static int
limited_call(int fd, uint32_t rid)
{
	size_t len;
	uint8_t *buf = eval_request("bystander", "return 40 + 2", &len);
	mj_response *r = raw_exchange_try(fd, rid, buf, len);
	int got;

	mj_free(buf);
	if (r == NULL)
		return -1;
	if (r->status == MOONJAIL__V1__STATUS__STATUS_OK) {
		assert_int_equal(r->n_values, 1);
		assert_int_equal(r->values[0]->integer, 42);
		got = 1;
	} else {
		assert_int_equal(r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_INTERNAL);
		assert_non_null(strstr(r->error->message, "at its connection limit"));
		got = 0;
	}
	mj_proto_free(&r->base);
	return got;
}

/* --max-connections: a connection past the cap is let in, its calls are answered with an
 * error and do not run, and moonjaild closes it after a grace; the refusals are logged; the
 * connections within the cap are served; the listener watch (whose probe is past the cap
 * too) does not restart the listener, nor do nng callers that are refused and hang up; and a
 * slot given back admits the next caller. */
static void
test_max_connections(void **state)
{
	static const char *const extra[] = {"--workers", "1", "--max-connections", "8", NULL};
	static const char *const refused[] = {"event=connections-refused", "max_connections=8",
	                                      NULL};
	static const char *const restarted[] = {"event=listener-restarted", NULL};
	enum { CAP = 8, PAST = 5 };
	const char *cli[] = {"--url", NULL, "--call-timeout-ms", "5000", "ping", NULL};
	char out[256], err[512];
	int held[CAP], past[PAST], n = 0, tries, fd, i, got;
	uint64_t t0;
	svc s;

	(void)state;
	svc_start(&s, extra);
	cli[1] = s.url;
	assert_int_equal(
	    log_count(&s, (const char *const[]){"event=start", "max_connections=8 ", NULL}), 1);
	/* The watch's probe holds a slot for a moment each second, and the start's ping gives
	 * its slot back when nng has let go of it: a refused connection is tried again. */
	for (tries = 0; n < CAP && tries < 100; tries++) {
		fd = handshake(&s);
		if ((got = limited_call(fd, (uint32_t)tries + 1)) == 1) {
			held[n++] = fd;
			continue;
		}
		assert_int_equal(got, 0);
		close(fd);
		sleep_ms(100);
	}
	assert_int_equal(n, CAP);
	t0 = now_ms();
	for (i = 0; i < PAST; i++) {
		past[i] = handshake(&s);
		assert_int_equal(limited_call(past[i], 1000 + (uint32_t)i), 0);
	}
	/* Connections past the cap do not count against it: while they stay (each refused call
	 * starts their grace again), a slot given back admits a new caller. */
	close(held[CAP - 1]);
	for (tries = 0, got = 0; got != 1 && tries < 30; tries++) {
		for (i = 0; i < PAST; i++)
			assert_int_equal(limited_call(past[i], 1100 + (uint32_t)(tries * PAST + i)),
			                 0);
		fd = handshake(&s);
		if ((got = limited_call(fd, 1500 + (uint32_t)tries)) != 1) {
			close(fd);
			sleep_ms(50);
		}
	}
	assert_int_equal(got, 1);
	held[CAP - 1] = fd;
	/* Junk on a connection past the cap is still bad-request, not a refusal. */
	{
		static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
		mj_response *r = raw_exchange(past[0], 1900, junk, sizeof(junk));

		assert_int_equal(r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_BAD_REQUEST);
		mj_proto_free(&r->base);
	}
	/* Past the grace (a second after the last refused call), moonjaild hangs up. */
	for (i = 0; i < PAST; i++) {
		assert_true(dropped_within(past[i], 5000));
		close(past[i]);
	}
	assert_true(log_wait(&s, refused));
	/* So does a real nng client, through the CLI, which exits at once. */
	for (i = 0; i < 3; i++) {
		assert_int_equal(run_cli(&s, cli, out, sizeof(out), err, sizeof(err)), 1);
		assert_non_null(strstr(err, "at its connection limit"));
	}
	for (i = 0; i < CAP; i++)
		assert_int_equal(limited_call(held[i], 2000 + (uint32_t)i), 1);
	/* Long enough at the cap for the watch to have probed, and failed, twice. */
	while (now_ms() - t0 < 5000)
		sleep_ms(100);
	assert_int_equal(log_count(&s, restarted), 0);
	assert_int_equal(limited_call(held[0], 3000), 1);
	/* A slot given back admits the next caller once moonjaild has seen the close, which
	 * nng handles on its own threads: hence the retries. */
	close(held[0]);
	assert_true(served_within(&s, 5000));
	for (i = 1; i < CAP; i++)
		close(held[i]);
	assert_true(served_within(&s, 5000));
	assert_int_equal(svc_stop(&s), 0);
}

/* The sum of the counts in moonjaild's connections-refused lines. */
static unsigned
refusals_logged(const svc *s)
{
	char line[1024];
	const char *c;
	unsigned n = 0;
	FILE *f = fopen(s->log, "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, "event=connections-refused") != NULL &&
		    (c = strstr(line, "count=")) != NULL)
			n += (unsigned)atoi(c + 6);
	fclose(f);
	return n;
}

/* Refusals are logged once a second at most, counted, and those of the last second when
 * moonjaild stops: every one is in the log. */
static void
test_refusals_logged_at_stop(void **state)
{
	static const char *const extra[] = {"--workers", "1", "--max-connections", "1", NULL};
	unsigned expect = 0;
	int held = -1, past, tries, fd, got, i;
	svc s;

	(void)state;
	svc_start(&s, extra);
	for (tries = 0; held < 0 && tries < 100; tries++) {
		fd = handshake(&s);
		if ((got = limited_call(fd, (uint32_t)tries + 1)) == 1) {
			held = fd;
			continue;
		}
		expect += got == 0;
		close(fd);
		sleep_ms(100);
	}
	assert_true(held >= 0);
	past = handshake(&s);
	/* One refusal, logged on the next tick; two more within the second after it, which
	 * only the stop logs. */
	for (i = 0; i < 3; i++) {
		assert_int_equal(limited_call(past, 500 + (uint32_t)i), 0);
		expect++;
		if (i == 0)
			sleep_ms(300);
	}
	assert_int_equal(svc_stop(&s), 0);
	assert_int_equal(refusals_logged(&s), expect);
	close(past);
	close(held);
}

/* With a small open-file limit (64 soft, 160 hard): moonjaild raises its soft limit to the
 * hard one, lowers a --max-connections that does not fit, and keeps its reserve. A client that
 * opens twice as many connections as the limit allows gets the cap and no more; then
 * connections that never finish their handshake (nng does not cap those) take every
 * descriptor moonjaild has left; and still a dead worker is replaced, from the descriptors
 * moonjaild made ready for its next start. */
static void
test_connection_flood_leaves_room_for_workers(void **state)
{
	static const char *const wrap[] = {"prlimit", "--nofile=64:160", "--", NULL};
	static const char *const extra[] = {"--workers",         "1",    "--no-spare",
	                                    "--max-connections", "1000", NULL};
	/* 160 less the reserve: 64, 16 for connections past the cap, and 4 for each of a
	 * worker, a quarantine worker and a spare (counted even with --no-spare). */
	static const char *const fit[] = {"event=start", "max_connections=68 ", "open_files=160 ",
	                                  NULL};
	static const char *const lowered[] = {"max_connections lowered", "requested=1000",
	                                      "max_connections=68", NULL};
	static const char *const replaced[] = {"event=worker-started", "worker=0 ", NULL};
	static const char *const fork_failed[] = {"what=\"fork\"", NULL};
	enum { FLOOD = 320, HALF = 300 };
	int fds[FLOOD], half[HALF], nhalf, served = 0, i, got;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t t0;
	pid_t old;
	svc s;

	(void)state;
	svc_wrap = wrap;
	svc_start(&s, extra);
	svc_wrap = NULL;
	assert_int_equal(log_count(&s, fit), 1);
	assert_int_equal(log_count(&s, lowered), 1);
	for (i = 0; i < FLOOD; i++)
		fds[i] = handshake(&s);
	for (i = 0; i < FLOOD; i++) {
		if ((got = limited_call(fds[i], (uint32_t)i + 1)) == 1) {
			served++;
		} else {
			close(fds[i]);
			fds[i] = -1;
		}
	}
	/* The probe may hold one slot. */
	assert_in_range(served, 67, 68);
	/* Connections left in the handshake, until moonjaild cannot accept any more and they
	 * queue in the listen backlog, which then refuses the next. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/s.sock", s.dir);
	for (nhalf = 0; nhalf < HALF; nhalf++) {
		half[nhalf] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		assert_true(half[nhalf] >= 0);
		if (connect(half[nhalf], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(half[nhalf]);
			break;
		}
	}
	assert_true(nhalf < HALF);
	old = worker_pid(&s, 0);
	assert_true(old > 0);
	assert_int_equal(kill(old, SIGKILL), 0);
	for (t0 = now_ms(); log_count(&s, replaced) < 2 && now_ms() - t0 < 5000;)
		sleep_ms(20);
	assert_int_equal(log_count(&s, replaced), 2);
	assert_int_not_equal(worker_pid(&s, 0), old);
	assert_int_equal(log_count(&s, fork_failed), 0);
	/* Again: the descriptors for it are made once some come free (nng drops a connection
	 * still in its handshake after 10 s). */
	old = worker_pid(&s, 0);
	assert_int_equal(kill(old, SIGKILL), 0);
	for (t0 = now_ms(); log_count(&s, replaced) < 3 && now_ms() - t0 < 30000;)
		sleep_ms(20);
	assert_int_equal(log_count(&s, replaced), 3);
	for (i = 0; i < FLOOD && fds[i] < 0; i++)
		;
	assert_true(i < FLOOD);
	assert_int_equal(limited_call(fds[i], 9999), 1);
	for (i = 0; i < nhalf; i++)
		close(half[i]);
	for (i = 0; i < FLOOD; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	assert_true(served_within(&s, 10000));
	assert_int_equal(svc_stop(&s), 0);
}

/* The port a tcp listener with port 0 got, from moonjaild's listening event. */
static unsigned
bound_port(const svc *s)
{
	static const char key[] = "event=listening url=tcp://127.0.0.1:";
	char line[512];
	unsigned port = 0;
	const char *p;
	FILE *f = fopen(s->log, "r");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if ((p = strstr(line, key)) != NULL && strstr(line, "requested=tcp://127.0.0.1:0"))
			port = (unsigned)atoi(p + sizeof(key) - 1);
	fclose(f);
	return port;
}

static int
tcp_connect(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return connect_to((struct sockaddr *)&sa, sizeof(sa));
}

/* The same on a loopback tcp listener with port 0: the log names the port it got, nng callers
 * are served there, bytes that are not SP and a length of 2^63 (tcp frames carry only the
 * length, no type byte) are dropped, and a junk body is answered bad-request. */
static void
test_tcp_listener(void **state)
{
	static const char *const extra[] = {"--workers", "1", "--listen", "tcp://127.0.0.1:0",
	                                    NULL};
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const uint8_t junk[] = {0x80, 0, 0, 3, 0xff, 0xff, 0xff};
	uint8_t len[8], hello[8], *buf;
	ProtobufCMessage *m = NULL;
	char url[64];
	uint64_t n = 0;
	unsigned port;
	mj_response *r;
	svc s;
	int fd, i;

	(void)state;
	svc_start(&s, extra);
	assert_true((port = bound_port(&s)) > 0);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", port);
	assert_int_equal(
	    call_op(url, "tcp", NULL, MOONJAIL__V1__REQUEST__OP_EVAL, "return 6 * 7", &r, 10000),
	    0);
	assert_int_equal(r->values[0]->integer, 42);
	mj_proto_free(&r->base);
	fd = tcp_connect(port);
	send_some(fd, http, sizeof(http) - 1);
	assert_true(dropped(fd));
	close(fd);
	fd = tcp_connect(port);
	send_some(fd, req_hello, sizeof(req_hello));
	put_be64(len, (uint64_t)1 << 63);
	send_some(fd, len, sizeof(len));
	assert_true(dropped(fd));
	close(fd);
	fd = tcp_connect(port);
	assert_true(send_some(fd, req_hello, sizeof(req_hello)));
	put_be64(len, sizeof(junk));
	assert_true(send_some(fd, len, sizeof(len)));
	assert_true(send_some(fd, junk, sizeof(junk)));
	assert_true(read_full(fd, hello, sizeof(hello)));
	assert_memory_equal(hello, rep_hello, sizeof(hello));
	assert_true(read_full(fd, len, sizeof(len)));
	for (i = 0; i < 8; i++)
		n = n << 8 | len[i];
	assert_true(n > 4 && n < 4096);
	assert_non_null(buf = malloc((size_t)n));
	assert_true(read_full(fd, buf, (size_t)n));
	assert_memory_equal(buf, junk, 4); /* the request id */
	assert_int_equal(mj_proto_unpack(&moonjail__v1__response__descriptor, buf + 4,
	                                 (size_t)n - 4, NULL, &m, NULL, 0),
	                 MJ_OK);
	free(buf);
	r = (mj_response *)m;
	assert_int_equal(r->error->kind, MOONJAIL__V1__ERROR_KIND__ERROR_KIND_BAD_REQUEST);
	mj_proto_free(&r->base);
	close(fd);
	assert_serving(&s);
	assert_int_equal(svc_stop(&s), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_not_sp_is_dropped),
	    cmocka_unit_test(test_bad_framing_is_dropped),
	    cmocka_unit_test(test_raw_junk_body_is_answered),
	    cmocka_unit_test(test_idle_and_unread_connections),
	    cmocka_unit_test(test_max_connections),
	    cmocka_unit_test(test_refusals_logged_at_stop),
	    cmocka_unit_test(test_connection_flood_leaves_room_for_workers),
	    cmocka_unit_test(test_tcp_listener),
	    cmocka_unit_test(test_hangup_in_handshake_recovers),
	    cmocka_unit_test(test_abandoned_calls),
	};

	return SVC_RUN_TESTS(tests);
}

#else

int
main(void)
{
	/* Built before the service programs exist: nothing to run yet. */
	fprintf(stderr, "moonjaild or moonjail-worker is not built\n");
	return 1;
}

#endif
