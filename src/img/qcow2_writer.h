/* Streaming qcow2 writer for `kvmkit-img convert -O qcow2`: builds a fresh image in one pass
 * (see qcow2_writer.c). */
#ifndef KVMKIT_IMG_QCOW2_WRITER_H
#define KVMKIT_IMG_QCOW2_WRITER_H

#include <stdbool.h>
#include <stdint.h>

struct qcow2_writer_options {
	const char *path;     /* for messages */
	int fd;               /* an empty file, open for writing; the caller closes it */
	uint64_t size;        /* guest bytes */
	uint32_t cluster_size;
	bool compress;        /* -c: compress each data cluster (when that shrinks it) */
	uint8_t compression;  /* QCOW2_COMPRESSION_*: the header's type, and -c's codec */
	bool lazy_refcounts;
};

struct qcow2_writer;

/* Prints one sentence and returns -errno on failure. */
int qcow2_writer_new(const struct qcow2_writer_options *o, struct qcow2_writer **out);
/* Guest bytes [off, off + len): off and len whole clusters (zero-pad the image's last one),
 * offsets increasing from call to call. All-zero clusters stay unallocated. */
int qcow2_writer_put(struct qcow2_writer *w, uint64_t off, const uint8_t *buf, uint64_t len);
/* Writes the tables and the header, then fdatasync. */
int qcow2_writer_finish(struct qcow2_writer *w);
void qcow2_writer_free(struct qcow2_writer *w);

#endif
