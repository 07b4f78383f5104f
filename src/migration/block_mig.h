/* Block migration (QMP migrate "blk": true): the content of every --disk image travels in the
 * migration stream, so a VM on a local disk moves with it; the target writes it into the
 * image given with its own --disk. Raw images only: a qcow2 image's layout is its own and
 * would need copying by format. Like RAM, disks are copied in passes: all of each disk first,
 * then the chunks the guest wrote meanwhile (virtio-blk reports completed writes), the last
 * ones with the VM paused.
 *
 * Sections: "BLKS" per disk (instance: disk index) with the disk's size, before any data;
 * "BLKD" (instance: disk index) with a u64 offset, u32 length, u8 kind (0: zeros, nothing
 * follows; 1: the bytes follow). */
#ifndef KVMKIT_MIGRATION_BLOCK_MIG_H
#define KVMKIT_MIGRATION_BLOCK_MIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/stream.h"
#include "virtio/devices.h"
#include "vmm/vm.h"

#define BLOCK_MIG_SIZE_TAG STREAM_TAG('B', 'L', 'K', 'S')
#define BLOCK_MIG_DATA_TAG STREAM_TAG('B', 'L', 'K', 'D')
#define BLOCK_MIG_CHUNK (1u << 20)

struct disk_mig {
	int fd;                 /* the image, read-only, beside the device's own handle */
	uint64_t size, nchunks;
	uint64_t *written;      /* chunks the guest wrote since the last pass (atomic bits) */
	uint64_t *pending;      /* chunks to send in this pass */
	uint64_t next;          /* where this pass goes on */
	struct virtio_blk_write_log log;
};

struct block_mig {
	struct vm *vm;
	unsigned ndisks;
	struct disk_mig disks[VM_MAX_DISKS];
	uint8_t *buf;           /* one chunk, read from a disk before it is sent */
};

/* Whether the VM's disks can be migrated by copying: 0, or -ENOTSUP with why. */
int block_mig_check(const struct vm *vm, char *why, size_t why_len);

/* Starts tracking writes and writes the BLKS sections; every chunk is pending. Returns 0 or
 * -errno with why. */
int block_mig_start(struct block_mig *b, struct vm *vm, struct stream *s, char *why,
		    size_t why_len);
/* Makes the chunks written since the last call pending; returns their bytes. */
uint64_t block_mig_sync(struct block_mig *b);
/* Sends one pending chunk; *done when none is left. Returns 0 or -errno. */
int block_mig_send_one(struct block_mig *b, struct stream *s, bool *done);
/* Stops tracking and closes the images (safe after a failed start). */
void block_mig_stop(struct block_mig *b);
/* Frees the write logs block_mig_stop keeps (a completion may still be setting a bit): when the
 * VM's migrations are over, long after the logs were removed. */
void block_mig_free(struct block_mig *b);

/* Shared storage (no block migration): only raw or read-only images can be shared, 0 or
 * -ENOTSUP with why. */
int block_mig_check_shared(const struct vm *vm, char *why, size_t why_len);
/* Shared storage: makes what the source wrote to every writable disk durable before the
 * target takes over (fdatasync of the image). Returns 0 or -errno. */
int block_mig_flush_shared(const struct vm *vm);

/* The target's side, one per incoming migration (zero-initialised): the images being written
 * and the buffer a chunk lands in. */
struct block_mig_recv {
	int fds[VM_MAX_DISKS];
	uint64_t sizes[VM_MAX_DISKS];
	bool open[VM_MAX_DISKS];
	uint8_t *buf;
};
/* Loads a BLKS or BLKD section (uri for messages) into the images of the VM's own --disk
 * options; finish makes them durable and closes them. Return 0 or -errno after printing one
 * sentence. */
int block_mig_recv(struct block_mig_recv *rx, struct vm *vm, const struct stream_section *sec,
		   struct stream *s, const char *uri);
int block_mig_recv_finish(struct block_mig_recv *rx);

#endif
