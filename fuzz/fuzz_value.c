/* libFuzzer target: a wire Value converted to mj_value and back, rendered as JSON; size parsing. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mj/proto.h"
#include "mj/text.h"

/* mj_parse_u64 and mj_parse_size against strtoull: what they accept must be plain digits
 * (and a known suffix) whose value fits, and everything that fits must be accepted. */
static void
check_parse(const uint8_t *data, size_t size)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {{"", 0},     {"K", 10},   {"M", 20},  {"G", 30},
	             {"KiB", 10}, {"MiB", 20}, {"GiB", 30}};
	unsigned long long want;
	char s[48];
	size_t n, i, got;
	uint64_t u;
	mj_err err;
	int range;

	if (size >= sizeof(s))
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	n = strspn(s, "0123456789");
	errno = 0;
	want = strtoull(s, NULL, 10);
	range = errno == ERANGE;

	err = mj_parse_u64(s, &u);
	if (n > 0 && s[n] == '\0' && !range)
		FZ_CHECK(err == MJ_OK && u == want);
	else
		FZ_CHECK(err == MJ_EINVAL || err == MJ_ELIMIT);

	err = mj_parse_size(s, &got);
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(s + n, units[i].suffix) == 0)
			break;
	if (n == 0 || i == sizeof(units) / sizeof(units[0])) {
		FZ_CHECK(err == MJ_EINVAL || err == MJ_ELIMIT);
		return;
	}
	/* mj_parse_size reads at most 31 digits, so more (leading zeros) count as too large. */
	if (!range && want <= (SIZE_MAX >> units[i].shift) && n < 32)
		FZ_CHECK(err == MJ_OK && got == (size_t)want << units[i].shift);
	else
		FZ_CHECK(err == MJ_ELIMIT);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ProtobufCMessage *m = NULL;
	mj_proto_caps caps;
	char why[256] = "";
	mj_err err;

	check_parse(data, size);
	/* As a Value arrives inside a request (supervisor/src/router.c's caps). */
	mj_proto_caps_default(&caps);
	caps.memory_budget = 64u << 20;
	err = mj_proto_unpack(&moonjail__v1__value__descriptor, data, size, &caps, &m, why,
	                      sizeof(why));
	if (err != MJ_OK) {
		FZ_CHECK(err == MJ_EINVAL || err == MJ_ELIMIT);
		FZ_CHECK(why[0] != '\0');
		return 0;
	}
	fz_check_repack(m, &caps);
	fz_check_pvalue((const mj_pvalue *)m);
	mj_proto_free(m);
	return 0;
}
