/* Structured event logging for moonjaild: one line per event on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mj/text.h"
#include "supervisor.h"

void
sv_log(const char *event, const char *fmt, ...)
{
	char msg[1024], ts[64];
	struct timespec now;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         now.tv_nsec / 1000000);
	if (sv.cfg.log_json) {
		mj_buf b = {0};
		mj_buf_printf(&b, "{\"ts\":\"%s\",\"event\":", ts);
		mj_buf_json_string(&b, event, strlen(event));
		mj_buf_append(&b, ",\"detail\":", 10);
		mj_buf_json_string(&b, msg, strlen(msg));
		mj_buf_append(&b, "}\n", 2);
		if (!b.failed)
			fputs(b.ptr, stderr);
		mj_buf_free(&b);
	} else {
		fprintf(stderr, "%s moonjaild: event=%s %s\n", ts, event, msg);
	}
	fflush(stderr);
}
