/* Guest RAM to and from a snapshot's memory file: a sparse image of the RAM (all-zero pages are
 * holes) followed by a one-page trailer naming the snapshot it belongs to, so a memory file
 * left from another save is never paired with the wrong state file. Restore maps the file
 * MAP_PRIVATE instead of reading it (vmm/memory.c), so it costs nothing up front. */
#ifndef KVMKIT_MIGRATION_RAM_H
#define KVMKIT_MIGRATION_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/stream.h"

struct guest_mem;

#define RAM_PAGE_SIZE 4096u
/* The trailer page after the RAM image. */
#define RAM_TRAILER_SIZE RAM_PAGE_SIZE

/* True if the page (RAM_PAGE_SIZE bytes, 8-byte aligned) holds only zeros. */
bool ram_page_is_zero(const void *page);

/* Writes all of mem's RAM to path (created or replaced; fsynced), skipping zero pages, then
 * the trailer with snapshot_id. *written gets the bytes of non-zero pages. Returns 0 or
 * -errno. */
int ram_save_file(const struct guest_mem *mem, const char *path, uint64_t snapshot_id,
		  uint64_t *written);

/* Opens a memory file for mapping: it must hold exactly ram_size bytes of RAM and a trailer
 * with snapshot_id. Returns the fd, -EBADMSG (wrong size or trailer: another snapshot's file or
 * a damaged one) or -errno. */
int ram_open_file(const char *path, uint64_t ram_size, uint64_t snapshot_id);

/* RAM over a migration stream, for live migration's iterative copy: a "RAMP" section carries up
 * to RAM_BATCH_PAGES pages, each as a u64 page number in the RAM image (the memory file's
 * layout: regions back to back) with a u8 kind (0: all zeros, nothing follows; 1: 4096 bytes
 * follow). The sender picks the pages (all, or the dirty ones of a pass). */
#define RAM_PAGES_TAG STREAM_TAG('R', 'A', 'M', 'P')
#define RAM_PAGES_VERSION 1
#define RAM_BATCH_PAGES 256

/* Sends the pages in [first, first + count) of mem's RAM image whose bit is set in dirty (bit
 * i of dirty[i / 64] for page first + i; NULL: every page), in RAMP sections. Returns the
 * stream's error (0 or -errno); *sent gets the pages sent. */
int ram_send_pages(struct stream *s, const struct guest_mem *mem, uint64_t first, uint64_t count,
		   const uint64_t *dirty, uint64_t *sent);

/* Loads the body of a RAMP section into mem: every page number must lie inside the RAM and
 * every kind be known, or nothing more is written and -EBADMSG is returned. */
int ram_recv_pages(struct stream *s, const struct guest_mem *mem, uint32_t version);

#endif
