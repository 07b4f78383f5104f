/* The migration stream: buffered transport over an fd or memory, the header, and CRC-checked,
 * length-framed sections whose fields are read with bounds checks (format in stream.h). */
#include "lib/stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/le.h"

#ifdef KVMKIT_HAVE_ZLIB
#include <zlib.h>
#endif

#define STREAM_IO_BUF (256u << 10)
#ifndef STREAM_FUZZING
#define STREAM_FUZZING 0
#endif
#define SECTION_HEADER_SIZE 16

#ifdef KVMKIT_HAVE_ZLIB
/* zlib's crc32 (the same polynomial and conventions) is several times faster than the table
 * loop below: live migration checks every page on both sides, and the loop bounded its
 * bandwidth, and so its downtime, at ~150 MB/s. */
uint32_t stream_crc32(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
		crc = (uint32_t)crc32(crc, p, n);
		p += n;
		len -= n;
	}
	return crc;
}
#else
uint32_t stream_crc32(uint32_t crc, const void *buf, size_t len)
{
	static uint32_t table[256];
	static int ready;
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		/* Idempotent: two threads racing here compute the same table. */
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	const uint8_t *p = buf;
	crc = ~crc;
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}
#endif

/* ---- transports ---- */

static long fd_read(void *opaque, void *buf, size_t len)
{
	struct stream *s = opaque;
	for (;;) {
		ssize_t n = read(s->fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

static long fd_write(void *opaque, const void *buf, size_t len)
{
	struct stream *s = opaque;
	for (;;) {
		ssize_t n = write(s->fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

static const struct stream_ops fd_ops = { fd_read, fd_write };

static long mem_read(void *opaque, void *buf, size_t len)
{
	struct stream *s = opaque;
	size_t n = s->mem_len - s->mem_pos;
	if (n > len)
		n = len;
	memcpy(buf, s->mem + s->mem_pos, n);
	s->mem_pos += n;
	return (long)n;
}

static long mem_write(void *opaque, const void *buf, size_t len)
{
	struct stream *s = opaque;
	if (len > s->mem_out_cap - s->mem_out_len) {
		size_t cap = s->mem_out_cap ? s->mem_out_cap : 4096;
		while (cap - s->mem_out_len < len)
			cap *= 2;
		uint8_t *p = realloc(s->mem_out, cap);
		if (!p)
			return -ENOMEM;
		s->mem_out = p;
		s->mem_out_cap = cap;
	}
	memcpy(s->mem_out + s->mem_out_len, buf, len);
	s->mem_out_len += len;
	return (long)len;
}

static const struct stream_ops mem_ops = { mem_read, mem_write };

static void stream_init(struct stream *s, const struct stream_ops *ops, bool writing)
{
	memset(s, 0, sizeof(*s));
	s->ops = ops;
	s->opaque = s;
	s->fd = -1;
	s->writing = writing;
	s->io_buf = malloc(STREAM_IO_BUF);
	if (!s->io_buf)
		s->error = -ENOMEM;
}

void stream_init_fd(struct stream *s, int fd, bool writing)
{
	stream_init(s, &fd_ops, writing);
	s->fd = fd;
}

void stream_init_mem_reader(struct stream *s, const void *buf, size_t len)
{
	stream_init(s, &mem_ops, false);
	s->mem = buf;
	s->mem_len = len;
}

void stream_init_mem_writer(struct stream *s)
{
	stream_init(s, &mem_ops, true);
}

const uint8_t *stream_mem_data(const struct stream *s, size_t *len)
{
	*len = s->mem_out_len;
	return s->mem_out;
}

int stream_error(const struct stream *s)
{
	return s->error;
}

void stream_fail(struct stream *s, int err)
{
	if (!s->error)
		s->error = err;
}

int stream_flush(struct stream *s)
{
	if (!s->writing)
		return s->error;
	size_t done = 0;
	while (!s->error && done < s->io_len) {
		long n = s->ops->write(s->opaque, s->io_buf + done, s->io_len - done);
		if (n <= 0)
			stream_fail(s, n < 0 ? (int)n : -EIO);
		else
			done += (size_t)n;
	}
	s->io_len = 0;
	return s->error;
}

int stream_close(struct stream *s)
{
	stream_flush(s);
	free(s->io_buf);
	free(s->sec_buf);
	free(s->mem_out);
	s->io_buf = s->sec_buf = s->mem_out = NULL;
	return s->error;
}

static void stream_write_raw(struct stream *s, const void *p, size_t len)
{
	const uint8_t *src = p;
	while (!s->error && len) {
		if (s->io_len == STREAM_IO_BUF && stream_flush(s) < 0)
			return;
		size_t n = STREAM_IO_BUF - s->io_len;
		if (n > len)
			n = len;
		memcpy(s->io_buf + s->io_len, src, n);
		s->io_len += n;
		src += n;
		len -= n;
	}
}

/* Reads exactly len bytes; -ENODATA if the stream ends first. */
static int stream_read_raw(struct stream *s, void *p, size_t len)
{
	uint8_t *dst = p;
	while (!s->error && len) {
		if (s->io_pos == s->io_len) {
			long n = s->ops->read(s->opaque, s->io_buf, STREAM_IO_BUF);
			if (n <= 0) {
				stream_fail(s, n < 0 ? (int)n : -ENODATA);
				break;
			}
			s->io_len = (size_t)n;
			s->io_pos = 0;
		}
		size_t n = s->io_len - s->io_pos;
		if (n > len)
			n = len;
		memcpy(dst, s->io_buf + s->io_pos, n);
		s->io_pos += n;
		dst += n;
		len -= n;
	}
	return s->error;
}

/* ---- header ---- */

void stream_write_header(struct stream *s, const char magic[8], uint32_t version)
{
	uint8_t h[12];
	memcpy(h, magic, 8);
	le_put(h + 8, 4, version);
	stream_write_raw(s, h, sizeof(h));
}

int stream_read_header(struct stream *s, const char magic[8], uint32_t max_version,
		       uint32_t *version)
{
	uint8_t h[12];
	if (stream_read_raw(s, h, sizeof(h)) < 0)
		return s->error;
	if (memcmp(h, magic, 8) != 0) {
		stream_fail(s, -EBADMSG);
		return s->error;
	}
	*version = (uint32_t)le_get(h + 8, 4);
	if (*version == 0 || *version > max_version)
		stream_fail(s, -EPROTONOSUPPORT);
	return s->error;
}

/* ---- writing sections ---- */

static void section_reserve(struct stream *s, size_t len)
{
	if (s->error)
		return;
	if (!s->in_section || !s->writing) {
		stream_fail(s, -EINVAL);
		return;
	}
	if (len > STREAM_MAX_SECTION - s->sec_len) {
		stream_fail(s, -EFBIG);
		return;
	}
	if (s->sec_len + len <= s->sec_cap)
		return;
	size_t cap = s->sec_cap ? s->sec_cap : 4096;
	while (cap < s->sec_len + len)
		cap *= 2;
	uint8_t *p = realloc(s->sec_buf, cap);
	if (!p) {
		stream_fail(s, -ENOMEM);
		return;
	}
	s->sec_buf = p;
	s->sec_cap = cap;
}

void stream_begin_section(struct stream *s, uint32_t tag, uint32_t instance, uint32_t version)
{
	if (s->error)
		return;
	if (s->in_section) {
		stream_fail(s, -EINVAL);
		return;
	}
	s->in_section = true;
	s->section = (struct stream_section){ tag, instance, version, 0 };
	s->sec_len = 0;
}

void stream_put_bytes(struct stream *s, const void *p, size_t len)
{
	section_reserve(s, len);
	if (s->error)
		return;
	if (len)
		memcpy(s->sec_buf + s->sec_len, p, len);
	s->sec_len += len;
}

static void stream_put_le(struct stream *s, uint64_t v, unsigned n)
{
	uint8_t b[8];
	le_put(b, n, v);
	stream_put_bytes(s, b, n);
}

void stream_put_u8(struct stream *s, uint8_t v) { stream_put_le(s, v, 1); }
void stream_put_u16(struct stream *s, uint16_t v) { stream_put_le(s, v, 2); }
void stream_put_u32(struct stream *s, uint32_t v) { stream_put_le(s, v, 4); }
void stream_put_u64(struct stream *s, uint64_t v) { stream_put_le(s, v, 8); }

void stream_put_str(struct stream *s, const char *str)
{
	if (!str) {
		stream_put_u32(s, UINT32_MAX);
		return;
	}
	size_t len = strlen(str);
	if (len >= UINT32_MAX) {
		stream_fail(s, -EINVAL);
		return;
	}
	stream_put_u32(s, (uint32_t)len);
	stream_put_bytes(s, str, len);
}

static void section_header_bytes(const struct stream_section *sec, uint8_t h[SECTION_HEADER_SIZE])
{
	le_put(h, 4, sec->tag);
	le_put(h + 4, 4, sec->instance);
	le_put(h + 8, 4, sec->version);
	le_put(h + 12, 4, sec->length);
}

int stream_end_section(struct stream *s)
{
	if (!s->error && (!s->in_section || !s->writing))
		stream_fail(s, -EINVAL);
	s->in_section = false;
	if (s->error)
		return s->error;
	s->section.length = (uint32_t)s->sec_len;
	uint8_t h[SECTION_HEADER_SIZE], c[4];
	section_header_bytes(&s->section, h);
	uint32_t crc = stream_crc32(stream_crc32(0, h, sizeof(h)), s->sec_buf, s->sec_len);
	le_put(c, 4, crc);
	stream_write_raw(s, h, sizeof(h));
	stream_write_raw(s, s->sec_buf, s->sec_len);
	stream_write_raw(s, c, sizeof(c));
	return s->error;
}

/* ---- reading sections ---- */

int stream_next_section(struct stream *s, struct stream_section *sec)
{
	if (!s->error && s->writing)
		stream_fail(s, -EINVAL);
	uint8_t h[SECTION_HEADER_SIZE], c[4];
	if (stream_read_raw(s, h, sizeof(h)) < 0)
		return s->error;
	struct stream_section hdr = {
		.tag = (uint32_t)le_get(h, 4),
		.instance = (uint32_t)le_get(h + 4, 4),
		.version = (uint32_t)le_get(h + 8, 4),
		.length = (uint32_t)le_get(h + 12, 4),
	};
	if (hdr.length > STREAM_MAX_SECTION) {
		stream_fail(s, -EBADMSG);
		return s->error;
	}
	if (hdr.length > s->sec_cap) {
		uint8_t *p = realloc(s->sec_buf, hdr.length);
		if (!p) {
			stream_fail(s, -ENOMEM);
			return s->error;
		}
		s->sec_buf = p;
		s->sec_cap = hdr.length;
	}
	if (stream_read_raw(s, s->sec_buf, hdr.length) < 0 || stream_read_raw(s, c, 4) < 0)
		return s->error;
	uint32_t crc = stream_crc32(stream_crc32(0, h, sizeof(h)), s->sec_buf, hdr.length);
	/* Fuzzing builds accept any CRC so that inputs reach the field checks behind it. */
	if (crc != (uint32_t)le_get(c, 4) && !STREAM_FUZZING) {
		stream_fail(s, -EPROTO);
		return s->error;
	}
	s->section = hdr;
	s->sec_len = hdr.length;
	s->sec_pos = 0;
	s->in_section = true;
	*sec = hdr;
	return 0;
}

void stream_get_bytes(struct stream *s, void *p, size_t len)
{
	if (!s->error && (!s->in_section || s->writing))
		stream_fail(s, -EINVAL);
	if (!s->error && len > s->sec_len - s->sec_pos)
		stream_fail(s, -EBADMSG);
	if (s->error) {
		memset(p, 0, len); /* callers see zeros, never stale or uninitialised bytes */
		return;
	}
	memcpy(p, s->sec_buf + s->sec_pos, len);
	s->sec_pos += len;
}

static uint64_t stream_get_le(struct stream *s, unsigned n)
{
	uint8_t b[8];
	stream_get_bytes(s, b, n);
	return le_get(b, n);
}

uint8_t stream_get_u8(struct stream *s) { return (uint8_t)stream_get_le(s, 1); }
uint16_t stream_get_u16(struct stream *s) { return (uint16_t)stream_get_le(s, 2); }
uint32_t stream_get_u32(struct stream *s) { return (uint32_t)stream_get_le(s, 4); }
uint64_t stream_get_u64(struct stream *s) { return stream_get_le(s, 8); }

uint32_t stream_get_u32_range(struct stream *s, uint32_t min, uint32_t max)
{
	uint32_t v = stream_get_u32(s);
	if (!s->error && (v < min || v > max))
		stream_fail(s, -EBADMSG);
	return s->error ? 0 : v;
}

char *stream_get_str(struct stream *s, size_t max_len, bool *is_null)
{
	uint32_t len = stream_get_u32(s);
	*is_null = !s->error && len == UINT32_MAX;
	if (s->error || *is_null)
		return NULL;
	if (len > max_len || len > stream_section_left(s)) {
		stream_fail(s, -EBADMSG);
		return NULL;
	}
	char *str = malloc((size_t)len + 1);
	if (!str) {
		stream_fail(s, -ENOMEM);
		return NULL;
	}
	stream_get_bytes(s, str, len);
	str[len] = '\0';
	if (s->error || strlen(str) != len) {
		stream_fail(s, -EBADMSG);
		free(str);
		return NULL;
	}
	return str;
}

void stream_skip_rest(struct stream *s)
{
	if (s->in_section && !s->writing)
		s->sec_pos = s->sec_len;
}

size_t stream_section_left(const struct stream *s)
{
	return s->in_section && !s->writing ? s->sec_len - s->sec_pos : 0;
}

int stream_end_read(struct stream *s)
{
	if (!s->error && s->sec_pos != s->sec_len)
		stream_fail(s, -EBADMSG);
	s->in_section = false;
	return s->error;
}

const char *stream_tag_name(uint32_t tag, char out[5])
{
	for (int i = 0; i < 4; i++) {
		char c = (char)(tag >> (8 * i));
		out[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
	}
	out[4] = '\0';
	return out;
}
