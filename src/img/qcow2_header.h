/* Rewriting the backing file name and format recorded in a qcow2 image's header cluster
 * (for `rebase`). */
#ifndef KVMKIT_IMG_QCOW2_HEADER_H
#define KVMKIT_IMG_QCOW2_HEADER_H

/* Records backing file `name` with format `fmt` ("" or NULL name: no backing file; "" or NULL
 * fmt: no backing-format extension) in the qcow2 image at path. Every other header extension
 * is kept. The whole new header is laid out in memory, written with one pwrite into the header
 * cluster and flushed with fdatasync. Returns 0, or -errno after one error sentence (-ENOSPC
 * when the name does not fit in the header cluster). */
int img_q2_set_backing(const char *path, const char *name, const char *fmt);

#endif
