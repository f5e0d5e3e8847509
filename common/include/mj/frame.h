/* Frames on the stream between moonjaild and a worker: a socketpair made before the fork. */
#ifndef MJ_FRAME_H
#define MJ_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "mj/common.h"

/* Each frame is a 12-byte header, the payload's length (u32, little-endian) and a tag (u64,
 * little-endian) that the answer repeats, followed by the payload: a WorkerRequest towards the
 * worker, a Response back. The stream keeps frames in order. */
#define MJ_FRAME_HEADER 12

void mj_frame_header(uint8_t out[MJ_FRAME_HEADER], uint32_t len, uint64_t tag);

/* Collects bytes read from a stream descriptor and splits them into frames. */
typedef struct mj_frame_reader {
	uint8_t *buf;
	size_t cap;      /* allocated */
	size_t have;     /* bytes in buf */
	size_t pos;      /* start of the first unconsumed byte */
	size_t max;      /* largest payload accepted */
	size_t skip;     /* payload bytes of an oversized frame still to discard */
	bool short_read; /* the last fill got less than it had room for: the descriptor was
	                    drained then */
} mj_frame_reader;

/* Prepares r for payloads of at most max bytes. MJ_ENOMEM when out of memory. */
mj_err mj_frame_reader_init(mj_frame_reader *r, size_t max);
void mj_frame_reader_fini(mj_frame_reader *r);

/* One read(2) from fd into r: the byte count, 0 at end of stream, -1 with errno set (EAGAIN on
 * a non-blocking descriptor with nothing to read; ENOMEM when the buffer cannot grow). */
ssize_t mj_frame_fill(mj_frame_reader *r, int fd);

typedef enum mj_frame_status {
	MJ_FRAME_NONE = 0, /* no whole frame yet: fill again */
	MJ_FRAME_OK,       /* a frame: *payload borrows r's buffer until the next call on r */
	MJ_FRAME_TOO_BIG,  /* a frame over the maximum: *tag and *len are set, *payload is NULL,
	                      and its payload is discarded as it arrives */
} mj_frame_status;

/* The next whole frame in r, if any. */
mj_frame_status mj_frame_next(mj_frame_reader *r, uint64_t *tag, const uint8_t **payload,
                              size_t *len);

/* Writes every byte of v[0..niov) (frames built with mj_frame_header) to a blocking
 * descriptor, retrying short writes and EINTR; v is consumed. 0, or -1 with errno set (EPIPE
 * when the peer is gone). */
int mj_frame_writev(int fd, struct iovec *v, int niov);

#endif
