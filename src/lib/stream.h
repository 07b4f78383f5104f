/* The migration stream: one buffered writer/reader over an fd (file or socket) or memory, carrying
 * a magic + format version header and then length-framed, versioned, CRC32-checked sections.
 * Snapshots write it to a file; live migration writes the same stream to a socket.
 *
 * On the wire (all integers little-endian):
 *   header:  8-byte magic, u32 format version
 *   section: u32 tag (four ASCII characters), u32 instance, u32 version, u32 payload length,
 *            payload, u32 CRC32 (zlib's polynomial) of the 16 header bytes and the payload
 *   the stream ends with a section tagged "END " of length 0.
 *
 * A writer collects one section's payload in memory (stream_put_*) and sends the framed section
 * at stream_end_section. A reader loads and checks a whole section at stream_next_section, and
 * the stream_get_* calls read inside it only: reading past its end is an error, not a crash, and
 * stream_end_section fails if bytes were left unread. Errors are sticky: after the first, every
 * call does nothing and stream_error returns the first -errno (-EBADMSG: malformed input,
 * -EPROTO: a CRC mismatch, -ENODATA: the stream ended early). So device code can write a run of
 * put/get calls and check once. */
#ifndef KVMKIT_LIB_STREAM_H
#define KVMKIT_LIB_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Sections larger than this are refused on reading (a tampered length cannot make us allocate
 * gigabytes). RAM travels outside sections in snapshots; migration sends it in page batches. */
#define STREAM_MAX_SECTION (64u << 20)

#define STREAM_TAG(a, b, c, d) \
	((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define STREAM_TAG_END STREAM_TAG('E', 'N', 'D', ' ')

/* The transport under a stream: move up to len bytes, return how many (0 on reading: end of
 * stream) or -errno. Short transfers are retried by the stream. */
struct stream_ops {
	long (*read)(void *opaque, void *buf, size_t len);
	long (*write)(void *opaque, const void *buf, size_t len);
};

struct stream_section {
	uint32_t tag;
	uint32_t instance;
	uint32_t version;
	uint32_t length;
};

struct stream {
	const struct stream_ops *ops;
	void *opaque;
	int fd;                 /* for the fd transport */
	const uint8_t *mem;     /* for the memory reader */
	size_t mem_len, mem_pos;
	uint8_t *mem_out;       /* for the memory writer */
	size_t mem_out_len, mem_out_cap;
	int error;              /* sticky: the first -errno */
	bool writing;

	/* Transport buffer: writes are gathered into it, reads are served from it. */
	uint8_t *io_buf;
	size_t io_len, io_pos;

	/* The current section: the payload being built (writer) or read (reader). */
	bool in_section;
	struct stream_section section;
	uint8_t *sec_buf;
	size_t sec_cap, sec_len, sec_pos;
};

/* Opens a stream over an fd the caller owns (it is not closed). */
void stream_init_fd(struct stream *s, int fd, bool writing);
/* Opens a reader over len bytes at buf (which must outlive the stream). */
void stream_init_mem_reader(struct stream *s, const void *buf, size_t len);
/* Opens a writer that keeps everything in memory (stream_mem_data gives it back). */
void stream_init_mem_writer(struct stream *s);
const uint8_t *stream_mem_data(const struct stream *s, size_t *len);
/* Flushes a writer (stream_flush) and frees the buffers; returns the sticky error or 0. */
int stream_close(struct stream *s);

/* The first error (0 if none). stream_fail records err unless an error is already recorded. */
int stream_error(const struct stream *s);
void stream_fail(struct stream *s, int err);

/* Header: magic must be 8 bytes. The reader checks the magic (-EBADMSG) and that the version is
 * at most max_version (-EPROTONOSUPPORT); *version gets the stream's version. */
void stream_write_header(struct stream *s, const char magic[8], uint32_t version);
int stream_read_header(struct stream *s, const char magic[8], uint32_t max_version,
		       uint32_t *version);

/* Writer: begin a section, put its fields, end it (frames it and sends it on). */
void stream_begin_section(struct stream *s, uint32_t tag, uint32_t instance, uint32_t version);
void stream_put_u8(struct stream *s, uint8_t v);
void stream_put_u16(struct stream *s, uint16_t v);
void stream_put_u32(struct stream *s, uint32_t v);
void stream_put_u64(struct stream *s, uint64_t v);
void stream_put_bytes(struct stream *s, const void *p, size_t len);
/* A string as u32 length + bytes (NULL is written as length 0xffffffff). */
void stream_put_str(struct stream *s, const char *str);
int stream_end_section(struct stream *s);
/* Writes buffered bytes to the transport. */
int stream_flush(struct stream *s);

/* Reader: load and check the next section; 0 or -errno. */
int stream_next_section(struct stream *s, struct stream_section *sec);
uint8_t stream_get_u8(struct stream *s);
uint16_t stream_get_u16(struct stream *s);
uint32_t stream_get_u32(struct stream *s);
uint64_t stream_get_u64(struct stream *s);
void stream_get_bytes(struct stream *s, void *p, size_t len);
/* A string written by stream_put_str, allocated (free it); NULL for a NULL string or an error.
 * Refuses strings longer than max_len or with a NUL inside. */
char *stream_get_str(struct stream *s, size_t max_len, bool *is_null);
/* A u32 that must lie in [min, max], else the stream fails with -EBADMSG (and 0 is returned). */
uint32_t stream_get_u32_range(struct stream *s, uint32_t min, uint32_t max);
/* Passes over the rest of the current section (one this reader has no use for). */
void stream_skip_rest(struct stream *s);
/* Bytes of the current section not read yet. */
size_t stream_section_left(const struct stream *s);
/* Requires the whole section to have been read; 0 or -EBADMSG. */
int stream_end_read(struct stream *s);

/* The four characters of a tag, for messages ("CPU "). */
const char *stream_tag_name(uint32_t tag, char out[5]);

/* CRC32 with zlib's polynomial (0xedb88320 reflected), continuing from crc (start with 0). */
uint32_t stream_crc32(uint32_t crc, const void *buf, size_t len);

#endif
