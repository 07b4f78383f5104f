/* Scatter-gather helpers (see iov.h). */
#include "lib/iov.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

size_t iov_size(const struct iovec *iov, unsigned cnt)
{
	size_t n = 0;
	for (unsigned i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

/* Copies between the iovecs (from byte `offset`) and buf, in the direction to_iov says. */
static size_t iov_copy(const struct iovec *iov, unsigned cnt, size_t offset, uint8_t *buf,
		       size_t len, bool to_iov)
{
	size_t done = 0;
	for (unsigned i = 0; i < cnt && done < len; i++) {
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - offset;
		if (n > len - done)
			n = len - done;
		uint8_t *seg = (uint8_t *)iov[i].iov_base + offset;
		if (to_iov)
			memcpy(seg, buf + done, n);
		else
			memcpy(buf + done, seg, n);
		done += n;
		offset = 0;
	}
	return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t offset, void *buf, size_t len)
{
	return iov_copy(iov, cnt, offset, buf, len, false);
}

size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t offset, const void *buf,
		    size_t len)
{
	/* iov_copy only reads buf in this direction */
	return iov_copy(iov, cnt, offset, (uint8_t *)(uintptr_t)buf, len, true);
}

int iov_slice(const struct iovec *iov, unsigned cnt, size_t offset, size_t len,
	      struct iovec *out, unsigned out_cap)
{
	unsigned n = 0;
	for (unsigned i = 0; i < cnt && len > 0; i++) {
		if (offset >= iov[i].iov_len) {
			offset -= iov[i].iov_len;
			continue;
		}
		size_t take = iov[i].iov_len - offset;
		if (take > len)
			take = len;
		if (n == out_cap)
			return -1;
		out[n].iov_base = (uint8_t *)iov[i].iov_base + offset;
		out[n].iov_len = take;
		n++;
		len -= take;
		offset = 0;
	}
	return len == 0 ? (int)n : -1;
}
