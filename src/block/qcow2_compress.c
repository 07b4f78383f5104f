/* Compressed qcow2 clusters with zlib or zstd (see qcow2_compress.h). Formats as QEMU writes
 * and reads them: zlib is a raw deflate stream (no zlib header) with a 4 KiB window; zstd is
 * one or more frames whose decompressed sizes add up to the cluster, followed by the padding
 * to the descriptor's last 512-byte sector, which must be ignored. */
#include "block/qcow2_compress.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef KVMKIT_HAVE_ZLIB
#include <zlib.h>
#endif
#ifdef KVMKIT_HAVE_ZSTD
#include <zstd.h>
#include <zstd_errors.h>
#endif

#define ZLIB_WINDOW_BITS (-12) /* negative: raw deflate; 12: the 4 KiB window QEMU uses */

bool qcow2_compression_supported(uint8_t type)
{
	(void)type; /* built without either library */
#ifdef KVMKIT_HAVE_ZLIB
	if (type == QCOW2_COMPRESSION_ZLIB)
		return true;
#endif
#ifdef KVMKIT_HAVE_ZSTD
	if (type == QCOW2_COMPRESSION_ZSTD)
		return true;
#endif
	return false;
}

bool qcow2_compression_parse(const char *name, uint8_t *type)
{
	/* zlib, the default, is always accepted: an image without compressed clusters needs no
	 * library, and kvmkit's own reader reports a missing one when it meets such a cluster. */
	if (!name || strcmp(name, "zlib") == 0) {
		*type = QCOW2_COMPRESSION_ZLIB;
		return true;
	}
	if (strcmp(name, "zstd") != 0)
		return false;
	*type = QCOW2_COMPRESSION_ZSTD;
	return qcow2_compression_supported(*type);
}

#ifdef KVMKIT_HAVE_ZLIB
static int zlib_decompress(void *out, size_t out_len, const void *in, size_t in_len)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, ZLIB_WINDOW_BITS) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)in_len;
	z.next_out = out;
	z.avail_out = (uInt)out_len;
	/* The input has sector padding after the stream, and a full output buffer without the
	 * end-of-stream mark is what QEMU accepts too: only a short output is an error. */
	int zr = inflate(&z, Z_FINISH);
	bool ok = (zr == Z_STREAM_END || zr == Z_BUF_ERROR || zr == Z_OK) && z.avail_out == 0;
	inflateEnd(&z);
	return ok ? 0 : -EIO;
}
#endif

#ifdef KVMKIT_HAVE_ZSTD
/* Frame after frame until the cluster is full; the last frame must end there (a frame that
 * would go on would make the cluster too large: corrupt). Stops if a call makes no progress,
 * so that truncated input cannot loop. */
static int zstd_decompress(void *out, size_t out_len, const void *in, size_t in_len)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	if (!d)
		return -ENOMEM;
	ZSTD_outBuffer o = { out, out_len, 0 };
	ZSTD_inBuffer i = { in, in_len, 0 };
	size_t zr = 1;
	int r = 0;
	while (o.pos < o.size) {
		size_t in_pos = i.pos, out_pos = o.pos;
		zr = ZSTD_decompressStream(d, &o, &i);
		if (ZSTD_isError(zr) || (i.pos == in_pos && o.pos == out_pos)) {
			r = -EIO;
			break;
		}
	}
	if (r == 0 && zr != 0)
		r = -EIO;
	ZSTD_freeDCtx(d);
	return r;
}
#endif

int qcow2_decompress(uint8_t type, void *out, size_t out_len, const void *in, size_t in_len)
{
	(void)type, (void)out, (void)out_len, (void)in, (void)in_len;
#ifdef KVMKIT_HAVE_ZLIB
	if (type == QCOW2_COMPRESSION_ZLIB)
		return zlib_decompress(out, out_len, in, in_len);
#endif
#ifdef KVMKIT_HAVE_ZSTD
	if (type == QCOW2_COMPRESSION_ZSTD)
		return zstd_decompress(out, out_len, in, in_len);
#endif
	return -ENOTSUP;
}

struct qcow2_compressor {
	uint8_t type;
#ifdef KVMKIT_HAVE_ZLIB
	z_stream z;
	bool z_ready;
#endif
#ifdef KVMKIT_HAVE_ZSTD
	ZSTD_CCtx *zc;
#endif
};

struct qcow2_compressor *qcow2_compressor_new(uint8_t type)
{
	if (!qcow2_compression_supported(type))
		return NULL;
	struct qcow2_compressor *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->type = type;
	bool ok = false;
#ifdef KVMKIT_HAVE_ZLIB
	/* Default level and memory, as QEMU compresses. */
	if (type == QCOW2_COMPRESSION_ZLIB)
		ok = c->z_ready = deflateInit2(&c->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
					       ZLIB_WINDOW_BITS, 9, Z_DEFAULT_STRATEGY) == Z_OK;
#endif
#ifdef KVMKIT_HAVE_ZSTD
	if (type == QCOW2_COMPRESSION_ZSTD)
		ok = (c->zc = ZSTD_createCCtx()) != NULL; /* default level (3), as QEMU */
#endif
	if (!ok) {
		qcow2_compressor_free(c);
		return NULL;
	}
	return c;
}

void qcow2_compressor_free(struct qcow2_compressor *c)
{
	if (!c)
		return;
#ifdef KVMKIT_HAVE_ZLIB
	if (c->z_ready)
		deflateEnd(&c->z);
#endif
#ifdef KVMKIT_HAVE_ZSTD
	ZSTD_freeCCtx(c->zc);
#endif
	free(c);
}

/* Whether the bytes are so evenly spread over all 256 values that no entropy coder can win
 * anything back (random or already-compressed data): a chi-square statistic against the
 * uniform distribution below len / 128 means under about 0.006 bits per byte to gain, less
 * than a compressed block's own overhead. Random data scores about 255 whatever len is, so
 * this only triggers for 64 KiB clusters and up, and there it saves the compressor's
 * slowest case (deflate crawls over random data) at the price of a histogram. */
static bool looks_random(const uint8_t *p, size_t len)
{
	if (len < 65536)
		return false;
	uint32_t h[256] = { 0 };
	for (size_t i = 0; i < len; i++)
		h[p[i]]++;
	double expect = (double)len / 256, chi2 = 0;
	for (int v = 0; v < 256; v++)
		chi2 += ((double)h[v] - expect) * ((double)h[v] - expect) / expect;
	return chi2 < (double)len / 128;
}

ssize_t qcow2_compress(struct qcow2_compressor *c, void *dst, size_t cap, const void *src,
		       size_t len)
{
	(void)c, (void)dst, (void)cap, (void)src, (void)len;
	if (cap < len && looks_random(src, len))
		return 0;
#ifdef KVMKIT_HAVE_ZLIB
	if (c->type == QCOW2_COMPRESSION_ZLIB) {
		if (deflateReset(&c->z) != Z_OK)
			return -EIO;
		c->z.next_in = (Bytef *)src;
		c->z.avail_in = (uInt)len;
		c->z.next_out = dst;
		c->z.avail_out = (uInt)cap;
		int zr = deflate(&c->z, Z_FINISH);
		if (zr == Z_STREAM_END)
			return (ssize_t)(cap - c->z.avail_out);
		return zr == Z_OK || zr == Z_BUF_ERROR ? 0 : -EIO; /* did not fit */
	}
#endif
#ifdef KVMKIT_HAVE_ZSTD
	if (c->type == QCOW2_COMPRESSION_ZSTD) {
		size_t n = ZSTD_compress2(c->zc, dst, cap, src, len);
		if (!ZSTD_isError(n))
			return (ssize_t)n;
		return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
	}
#endif
	return -ENOTSUP;
}
