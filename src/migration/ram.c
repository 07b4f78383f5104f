/* Guest RAM to and from a snapshot's memory file (runs of non-zero pages are written with one
 * pwrite each, zero pages are left as holes, a trailer page ties the file to its state), and
 * RAM pages over a migration stream. */
#include "migration/ram.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/le.h"
#include "lib/stream.h"
#include "vmm/memory.h"

#define RAM_TRAILER_MAGIC "KVMKITRM"
#define RAM_WRITE_MAX (8u << 20) /* one pwrite at most: bounded latency, and progress */

bool ram_page_is_zero(const void *page)
{
	const uint64_t *w = page;
	/* Most non-zero pages differ early; OR-ing blocks keeps the loop branch-light. */
	for (size_t i = 0; i < RAM_PAGE_SIZE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	return true;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static void ram_trailer(uint8_t t[RAM_TRAILER_SIZE], uint64_t ram_size, uint64_t id)
{
	memset(t, 0, RAM_TRAILER_SIZE);
	memcpy(t, RAM_TRAILER_MAGIC, 8);
	le_put(t + 8, 8, ram_size);
	le_put(t + 16, 8, id);
}

int ram_save_file(const struct guest_mem *mem, const char *path, uint64_t snapshot_id,
		  uint64_t *written)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* The image is the host mapping as it is: regions back to back in one reservation. */
	const uint8_t *ram = mem->mapping;
	uint64_t size = mem->mapping_size;
	int r = 0;
	*written = 0;
	for (uint64_t off = 0; off < size && r == 0;) {
		if (ram_page_is_zero(ram + off)) {
			off += RAM_PAGE_SIZE;
			continue;
		}
		uint64_t end = off + RAM_PAGE_SIZE;
		while (end < size && end - off < RAM_WRITE_MAX && !ram_page_is_zero(ram + end))
			end += RAM_PAGE_SIZE;
		r = pwrite_all(fd, ram + off, (size_t)(end - off), (off_t)off);
		*written += end - off;
		off = end;
	}
	uint8_t trailer[RAM_TRAILER_SIZE];
	ram_trailer(trailer, size, snapshot_id);
	if (r == 0)
		r = pwrite_all(fd, trailer, sizeof(trailer), (off_t)size);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

int ram_open_file(const char *path, uint64_t ram_size, uint64_t snapshot_id)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	uint8_t got[RAM_TRAILER_SIZE], want[RAM_TRAILER_SIZE];
	int r = 0;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != ram_size + RAM_TRAILER_SIZE)
		r = -EBADMSG;
	else if (pread(fd, got, sizeof(got), (off_t)ram_size) != (ssize_t)sizeof(got))
		r = -EBADMSG;
	ram_trailer(want, ram_size, snapshot_id);
	if (r == 0 && memcmp(got, want, sizeof(got)) != 0)
		r = -EBADMSG;
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

#define RAM_PAGE_ZERO 0
#define RAM_PAGE_DATA 1

int ram_send_pages(struct stream *s, const struct guest_mem *mem, uint64_t first, uint64_t count,
		   const uint64_t *dirty, uint64_t *sent)
{
	uint64_t npages = mem->mapping_size / RAM_PAGE_SIZE, in_batch = 0;
	*sent = 0;
	if (first > npages || count > npages - first) {
		stream_fail(s, -EINVAL);
		return stream_error(s);
	}
	for (uint64_t i = 0; i < count && !stream_error(s); i++) {
		if (dirty && !(dirty[i / 64] & (1ULL << (i % 64))))
			continue;
		if (in_batch == 0)
			stream_begin_section(s, RAM_PAGES_TAG, 0, RAM_PAGES_VERSION);
		const uint8_t *page = mem->mapping + (first + i) * RAM_PAGE_SIZE;
		stream_put_u64(s, first + i);
		if (ram_page_is_zero(page)) {
			stream_put_u8(s, RAM_PAGE_ZERO);
		} else {
			stream_put_u8(s, RAM_PAGE_DATA);
			stream_put_bytes(s, page, RAM_PAGE_SIZE);
		}
		(*sent)++;
		if (++in_batch == RAM_BATCH_PAGES) {
			stream_end_section(s);
			in_batch = 0;
		}
	}
	if (in_batch)
		stream_end_section(s);
	return stream_error(s);
}

int ram_recv_pages(struct stream *s, const struct guest_mem *mem, uint32_t version)
{
	uint64_t npages = mem->mapping_size / RAM_PAGE_SIZE;
	if (version != RAM_PAGES_VERSION)
		stream_fail(s, -EBADMSG);
	for (unsigned n = 0; stream_section_left(s) && !stream_error(s); n++) {
		uint64_t page = stream_get_u64(s);
		uint8_t kind = stream_get_u8(s);
		if (n == RAM_BATCH_PAGES || page >= npages || kind > RAM_PAGE_DATA ||
		    (kind == RAM_PAGE_DATA && stream_section_left(s) < RAM_PAGE_SIZE))
			stream_fail(s, -EBADMSG);
		if (stream_error(s))
			break;
		uint8_t *dst = mem->mapping + page * RAM_PAGE_SIZE;
		if (kind == RAM_PAGE_DATA)
			stream_get_bytes(s, dst, RAM_PAGE_SIZE);
		else if (!ram_page_is_zero(dst))
			memset(dst, 0, RAM_PAGE_SIZE); /* untouched pages stay unallocated */
	}
	return stream_end_read(s);
}
