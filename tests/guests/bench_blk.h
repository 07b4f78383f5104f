/* bench_blk: the job that ring 0 (bench_blk.c, 32-bit) hands to the ring-3 hot loop
 * (bench_blk_user.c, 64-bit) and the results it gets back. Both compilations include this
 * file: fixed-width fields only, 64-bit ones at offsets that are multiples of 8 (the i386 ABI
 * aligns them to 4 only), checked below. */
#ifndef BENCH_BLK_H
#define BENCH_BLK_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_QSIZE   128          /* virtqueue entries: 3 descriptors per request */
#define BENCH_MAX_QD  32
#define BENCH_MAX_REQ (256 * 1024) /* request size limit (bytes) */
/* The disk the runner makes: every 4 KiB block starts with its block number and BENCH_MAGIC
 * (little endian). Writes keep that pattern, reads check it. */
#define BENCH_BLOCK   4096
#define BENCH_MAGIC   0x424d564bu  /* "KVMB" */

enum bench_op {
    BENCH_OP_CALIBRATE,   /* TSC ticks per second against PIT channel 2 -> tsc_hz */
    BENCH_OP_IO,          /* the block I/O loop */
    BENCH_OP_KICK,        /* count doorbell writes with nothing new in the ring */
    BENCH_OP_PIO,         /* count writes to the pc-testdev port 0xe0 (a userspace exit) */
};

struct bench_job {
    /* Set by ring 0. Addresses are guest-physical = virtual (identity map). */
    uint32_t op;
    uint32_t desc, avail, used;   /* split virtqueue of BENCH_QSIZE entries */
    uint32_t doorbell;            /* MMIO address of the queue's notify register */
    uint32_t hdrs;                /* BENCH_MAX_QD request headers, 16 bytes each */
    uint32_t status;              /* BENCH_MAX_QD status bytes */
    uint32_t data;                /* BENCH_MAX_QD buffers of req_bytes */
    uint32_t write;               /* 0 read (VIRTIO_BLK_T_IN), 1 write (VIRTIO_BLK_T_OUT) */
    uint32_t random;              /* 0 sequential, 1 uniformly random aligned offsets */
    uint32_t req_bytes;           /* a multiple of BENCH_BLOCK, at most BENCH_MAX_REQ */
    uint32_t qd;                  /* requests in flight, at most BENCH_MAX_QD */
    uint32_t disk_blocks;         /* disk size in BENCH_BLOCK units */
    uint32_t count;               /* KICK, PIO: how many */
    uint32_t duration_ms;         /* IO: stop submitting after this */
    uint32_t pad0;
    /* Carried from one job to the next (ring 3 updates them). */
    uint64_t tsc_hz;              /* CALIBRATE sets it; IO uses it */
    uint32_t avail_idx, used_idx; /* the driver's ring positions */
    uint32_t next_block;          /* sequential position */
    uint32_t rng;                 /* xorshift32 state, nonzero */
    /* Results. */
    uint64_t ticks;               /* IO: first submission to last completion; KICK, PIO: all */
    uint64_t requests;            /* completed */
    uint64_t kicks;               /* doorbell writes (each one a VM exit) */
    uint64_t errors;              /* status byte not VIRTIO_BLK_S_OK */
    uint64_t bad_data;            /* 4 KiB blocks read without their number and magic */
    uint32_t first_bad_block, first_bad_word;
    uint32_t stalled;             /* IO: no completion for a second; the loop gave up */
    uint32_t pad1;
};

#define BENCH_JOB_SIZE 144
_Static_assert(sizeof(struct bench_job) == BENCH_JOB_SIZE, "struct bench_job differs between -m32 and -m64");
_Static_assert(offsetof(struct bench_job, tsc_hz) % 8 == 0 && offsetof(struct bench_job, ticks) % 8 == 0,
               "64-bit fields of struct bench_job must be 8-byte aligned in both ABIs");

/* virtio-blk request header (virtio 1.x 5.2.6) and the split ring's descriptor. */
struct bench_blk_hdr {
    uint32_t type, reserved;
    uint64_t sector;
} __attribute__((packed));

struct bench_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
} __attribute__((packed));

#define BENCH_DESC_NEXT  1
#define BENCH_DESC_WRITE 2

#endif
