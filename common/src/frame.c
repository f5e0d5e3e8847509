/* Framing of the moonjaild-worker stream: a length and a tag before each message. */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mj/frame.h"

#define FIRST_CAP ((size_t)64 << 10)

void
mj_frame_header(uint8_t out[MJ_FRAME_HEADER], uint32_t len, uint64_t tag)
{
	int i;

	for (i = 0; i < 4; i++)
		out[i] = (uint8_t)(len >> (8 * i));
	for (i = 0; i < 8; i++)
		out[4 + i] = (uint8_t)(tag >> (8 * i));
}

static void
parse_header(const uint8_t *in, uint32_t *len, uint64_t *tag)
{
	int i;

	*len = 0;
	*tag = 0;
	for (i = 0; i < 4; i++)
		*len |= (uint32_t)in[i] << (8 * i);
	for (i = 0; i < 8; i++)
		*tag |= (uint64_t)in[4 + i] << (8 * i);
}

mj_err
mj_frame_reader_init(mj_frame_reader *r, size_t max)
{
	if (r == NULL || max > UINT32_MAX)
		return MJ_EINVAL;
	memset(r, 0, sizeof(*r));
	if ((r->buf = mj_malloc(FIRST_CAP)) == NULL)
		return MJ_ENOMEM;
	r->cap = FIRST_CAP;
	r->max = max;
	return MJ_OK;
}

void
mj_frame_reader_fini(mj_frame_reader *r)
{
	if (r == NULL)
		return;
	mj_free(r->buf);
	memset(r, 0, sizeof(*r));
}

/* Compacts r and grows it to hold the frame that starts at pos: a peer announcing a big
 * frame costs memory only once it sends the bytes. */
static int
make_room(mj_frame_reader *r)
{
	size_t need = MJ_FRAME_HEADER, cap;
	uint32_t len;
	uint64_t tag;
	uint8_t *nb;

	if (r->pos > 0) {
		memmove(r->buf, r->buf + r->pos, r->have - r->pos);
		r->have -= r->pos;
		r->pos = 0;
	}
	if (r->skip == 0 && r->have >= MJ_FRAME_HEADER) {
		parse_header(r->buf, &len, &tag);
		if (len <= r->max)
			need = MJ_FRAME_HEADER + (size_t)len;
	}
	if (r->cap >= need && r->cap > r->have)
		return 0;
	cap = r->cap;
	while (cap < need || cap <= r->have)
		cap *= 2;
	if ((nb = mj_realloc(r->buf, cap)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	r->buf = nb;
	r->cap = cap;
	return 0;
}

ssize_t
mj_frame_fill(mj_frame_reader *r, int fd)
{
	bool room = r->cap - r->have >= 4096;
	uint32_t len;
	uint64_t tag;
	ssize_t n;

	if (r->pos == r->have) {
		r->pos = r->have = 0;
		if (r->cap > 4 * FIRST_CAP) {
			/* One big frame should not pin its buffer for the reader's life. */
			uint8_t *nb = mj_realloc(r->buf, FIRST_CAP);
			if (nb != NULL) {
				r->buf = nb;
				r->cap = FIRST_CAP;
				room = true;
			}
		}
	}
	if (room && r->skip == 0 && r->have - r->pos >= MJ_FRAME_HEADER) {
		parse_header(r->buf + r->pos, &len, &tag);
		room = len > r->max || r->pos + MJ_FRAME_HEADER + (size_t)len <= r->cap;
	}
	if (!room && make_room(r) != 0)
		return -1;
	do
		n = read(fd, r->buf + r->have, r->cap - r->have);
	while (n < 0 && errno == EINTR);
	r->short_read = n >= 0 && (size_t)n < r->cap - r->have;
	if (n > 0)
		r->have += (size_t)n;
	return n;
}

static void
discard(mj_frame_reader *r)
{
	size_t d = r->have - r->pos;

	if (d > r->skip)
		d = r->skip;
	r->pos += d;
	r->skip -= d;
}

mj_frame_status
mj_frame_next(mj_frame_reader *r, uint64_t *tag, const uint8_t **payload, size_t *len)
{
	uint32_t n;
	uint64_t t;

	if (r->skip > 0) {
		discard(r);
		if (r->skip > 0)
			return MJ_FRAME_NONE;
	}
	if (r->have - r->pos < MJ_FRAME_HEADER)
		return MJ_FRAME_NONE;
	parse_header(r->buf + r->pos, &n, &t);
	if (n > r->max) {
		r->pos += MJ_FRAME_HEADER;
		r->skip = n;
		discard(r);
		*tag = t;
		*payload = NULL;
		*len = n;
		return MJ_FRAME_TOO_BIG;
	}
	if (r->have - r->pos < MJ_FRAME_HEADER + (size_t)n)
		return MJ_FRAME_NONE;
	*tag = t;
	*payload = r->buf + r->pos + MJ_FRAME_HEADER;
	*len = n;
	r->pos += MJ_FRAME_HEADER + (size_t)n;
	return MJ_FRAME_OK;
}

int
mj_frame_writev(int fd, struct iovec *v, int niov)
{
	ssize_t n;

	while (niov > 0 && v->iov_len == 0) {
		v++;
		niov--;
	}
	while (niov > 0) {
		n = writev(fd, v, niov);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (niov > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			niov--;
		}
		if (niov > 0) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}
