/* Scatter-gather helpers: copying between iovec arrays and flat buffers, and taking a byte
 * range of an iovec array without copying (virtio requests are parsed this way). */
#ifndef KVMKIT_LIB_IOV_H
#define KVMKIT_LIB_IOV_H

#include <stddef.h>
#include <sys/uio.h>

/* Total bytes of iov[0..cnt). */
size_t iov_size(const struct iovec *iov, unsigned cnt);

/* Copies up to len bytes starting at byte `offset` of the iovecs into buf; returns the count. */
size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t offset, void *buf, size_t len);
/* Copies up to len bytes of buf into the iovecs starting at byte `offset`; returns the count. */
size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t offset, const void *buf,
		    size_t len);

/* Fills out[] with the part of iov[0..cnt) from byte `offset`, `len` bytes long (pointers into
 * the same buffers). Returns the number of entries written (at most out_cap), or -1 when the
 * range does not fit in the iovecs or in out_cap entries. */
int iov_slice(const struct iovec *iov, unsigned cnt, size_t offset, size_t len,
	      struct iovec *out, unsigned out_cap);

#endif
