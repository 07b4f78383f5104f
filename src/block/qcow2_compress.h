/* Compressed qcow2 clusters: one cluster at a time, zlib (raw deflate, 4 KiB window, as QEMU
 * writes it) or zstd (one frame per cluster). The qcow2 driver decompresses on reads;
 * kvmkit-img convert -c compresses. Also the fields of a new qcow2 header, which depend on the
 * compression type and are shared by block_create and convert's streaming writer. */
#ifndef KVMKIT_BLOCK_QCOW2_COMPRESS_H
#define KVMKIT_BLOCK_QCOW2_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Header byte 104, the compression type (any but zlib also sets incompatible bit 3). */
#define QCOW2_COMPRESSION_ZLIB 0u
#define QCOW2_COMPRESSION_ZSTD 1u

/* "zlib" or "zstd" (NULL = zlib) into *type; false if unknown, or zstd not built in. */
bool qcow2_compression_parse(const char *name, uint8_t *type);
/* Whether this build can compress and decompress the type. */
bool qcow2_compression_supported(uint8_t type);

/* Inflates a compressed cluster: exactly out_len bytes from in. in may go on past the
 * compressed data (the descriptor gives whole 512-byte sectors). 0, -ENOTSUP (type not built
 * in) or -EIO (corrupt data). */
int qcow2_decompress(uint8_t type, void *out, size_t out_len, const void *in, size_t in_len);

/* A compressor keeps its library state between clusters (setting it up costs more than
 * compressing a small cluster). One per thread. */
struct qcow2_compressor;
struct qcow2_compressor *qcow2_compressor_new(uint8_t type); /* NULL: no memory or type */
void qcow2_compressor_free(struct qcow2_compressor *c);
/* Compresses len bytes of src into dst; the compressed length, or 0 if it does not fit in cap
 * bytes (the caller then stores the cluster uncompressed), or -errno. */
ssize_t qcow2_compress(struct qcow2_compressor *c, void *dst, size_t cap, const void *src,
		       size_t len);

#endif
