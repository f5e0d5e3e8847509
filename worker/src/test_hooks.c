/* Test builds only (MJ_TEST_HOOKS): a script function that attempts one forbidden syscall, or
 * ("hang") stays in C for a minute, or forges or slows down the reply of the call it runs. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"

_Thread_local uint64_t wk_test_tag;
_Thread_local bool wk_test_trickle;

/* The byte-at-a-time writer for trickle_reply: one byte, then TRICKLE_MS of sleep, so
 * moonjaild reads the frame in as many pieces as it has bytes. */
#define TRICKLE_MS 8

int
wk_test_write_trickled(int fd, const struct iovec *iov, int n)
{
	struct timespec ts = {0, TRICKLE_MS * 1000 * 1000};
	const uint8_t *p;
	size_t j;
	ssize_t w;
	int i;

	for (i = 0; i < n; i++) {
		p = iov[i].iov_base;
		for (j = 0; j < iov[i].iov_len;) {
			if ((w = write(fd, p + j, 1)) < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			j += (size_t)w;
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

/* Each entry makes the raw syscall with harmless arguments: the filter decides on the number
 * before the kernel looks at the arguments, so a bad descriptor still proves the point. */
static long
attempt(const char *name)
{
	static char *const argv[] = {"/bin/true", NULL};

	if (strcmp(name, "openat") == 0)
		return syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
	if (strcmp(name, "execve") == 0)
		return syscall(SYS_execve, "/bin/true", argv, argv + 1);
	if (strcmp(name, "socket") == 0)
		return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
	if (strcmp(name, "connect") == 0)
		return syscall(SYS_connect, STDERR_FILENO, NULL, 0);
	if (strcmp(name, "bind") == 0)
		return syscall(SYS_bind, STDERR_FILENO, NULL, 0);
	if (strcmp(name, "ptrace") == 0)
		return syscall(SYS_ptrace, PTRACE_TRACEME, 0, NULL, NULL);
	if (strcmp(name, "fork") == 0)
		return syscall(SYS_fork);
	if (strcmp(name, "clone") == 0)
		return syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, 0);
	if (strcmp(name, "kill") == 0)
		return syscall(SYS_kill, 1, 0);
	if (strcmp(name, "mount") == 0)
		return syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL);
	if (strcmp(name, "unlink") == 0)
		return syscall(SYS_unlinkat, AT_FDCWD, "/tmp/x", 0);
	if (strcmp(name, "mmap_exec") == 0)
		return (long)(intptr_t)mmap(NULL, 4096, PROT_READ | PROT_EXEC,
		                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (strcmp(name, "forge_log") == 0) {
		/* A compromised worker posing as moonjaild in the shared log. */
		static const char forged[] =
		    "2026-01-01T00:00:00.000Z moonjaild: event=tenant-quarantined "
		    "tenant=forged\nmoonjaild: event=stop\r\n";
		return write(STDERR_FILENO, forged, sizeof(forged) - 1);
	}
	if (strcmp(name, "forge_reply") == 0 || strcmp(name, "oversized_reply") == 0) {
		/* A compromised worker answering a call nobody made, or announcing a reply
		 * over moonjaild's limit, straight onto the stream (descriptor 3). */
		uint8_t hdr[MJ_FRAME_HEADER];
		bool big = strcmp(name, "oversized_reply") == 0;

		mj_frame_header(hdr, big ? (uint32_t)((17u << 20) + 1) : 0u, 0xdeadbeefull);
		return write(3, hdr, sizeof(hdr));
	}
	if (strcmp(name, "stale_reply") == 0) {
		/* A compromised worker replaying an answer for the call slot it runs, but from
		 * the slot's previous use (the tag's generation, its high half, one lower). */
		uint8_t hdr[MJ_FRAME_HEADER];

		mj_frame_header(hdr, 0, wk_test_tag - (1ull << 32));
		return write(3, hdr, sizeof(hdr));
	}
	if (strcmp(name, "malformed_reply") == 0) {
		/* A compromised worker answering the call it runs with bytes that are no
		 * Response: field 1 as a length-delimited field longer than the message. */
		static const uint8_t junk[] = {0x0a, 0x7f, 0x01};
		uint8_t frame[MJ_FRAME_HEADER + sizeof(junk)];

		mj_frame_header(frame, (uint32_t)sizeof(junk), wk_test_tag);
		memcpy(frame + MJ_FRAME_HEADER, junk, sizeof(junk));
		return write(3, frame, sizeof(frame));
	}
	if (strcmp(name, "trickle_reply") == 0) {
		/* A slow worker: this call's reply goes out one byte at a time. */
		wk_test_trickle = true;
		return 0;
	}
	if (strcmp(name, "half_close") == 0) {
		/* A compromised worker that stops answering but stays alive: it ends its side of
		 * the stream (descriptor 3, as moonjaild passes it) and sleeps. */
		struct timespec ts = {0, 10 * 1000 * 1000};
		int i;

		shutdown(3, SHUT_WR);
		for (i = 0; i < 6000; i++)
			nanosleep(&ts, NULL);
		return 0;
	}
	if (strcmp(name, "hang") == 0) {
		/* Not a syscall: a C call that never returns to Lua (bounded at 60 s), for the
		 * supervisor's hard deadline. No hook or watchdog of the engine can end it. */
		struct timespec ts = {0, 10 * 1000 * 1000};
		int i;

		for (i = 0; i < 6000; i++)
			nanosleep(&ts, NULL);
		return 0;
	}
	errno = ENOSYS;
	return -2;
}

static mj_err
test_syscall(void *ud, const mj_value *args, size_t nargs, mj_value *ret, char *err, size_t errlen)
{
	char msg[64];
	long rc;

	(void)ud;
	if (nargs != 1 || args[0].type != MJ_VSTRING) {
		strncpy(err, "test_syscall(name)", errlen - 1);
		return MJ_EINVAL;
	}
	errno = 0;
	rc = attempt(args[0].u.s.ptr);
	if (rc == -2) {
		strncpy(err, "test_syscall: unknown syscall name", errlen - 1);
		return MJ_EINVAL;
	}
	/* Still alive: the policy let it through or refused it with an errno. */
	if (rc < 0)
		snprintf(msg, sizeof(msg), "errno %s", strerrorname_np(errno));
	else
		snprintf(msg, sizeof(msg), "returned %ld", rc);
	return mj_value_string(ret, msg, strlen(msg));
}

void
wk_test_hooks_install(mj_engine *e)
{
	mj_engine_register_function(e, "test_syscall", test_syscall, NULL);
}
