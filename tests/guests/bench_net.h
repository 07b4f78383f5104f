/* bench_net: the job that ring 0 (bench_net.c, 32-bit) hands to the ring-3 hot loops
 * (bench_net_user.c, 64-bit) and the results it gets back. Both compilations include this
 * file: fixed-width fields only, 64-bit ones at offsets that are multiples of 8 (the i386 ABI
 * aligns them to 4 only), checked below. */
#ifndef BENCH_NET_H
#define BENCH_NET_H

#include <stddef.h>
#include <stdint.h>

#define NET_QSIZE      256      /* entries of both queues (kvmkit's and QEMU's default) */
#define NET_HDR_LEN    12       /* struct virtio_net_hdr_v1 (num_buffers included) */
#define NET_TX_BUF     2048     /* one transmit slot: header + frame */
#define NET_RX_BUF_MAX 4096     /* largest receive buffer (rx_buf=) */
#define NET_MIN_FRAME  60       /* Ethernet minimum without FCS */
#define NET_MAX_FRAME  1514     /* Ethernet maximum without FCS */
/* The benchmark's frames, both ways: an IEEE "local experimental" EtherType that no host
 * protocol handles, and a magic after it. */
#define NET_ETHERTYPE  0x88b5
#define NET_MAGIC      0x4e4d564bu   /* "KVMN" in memory order */

enum net_op {
    NET_OP_CALIBRATE,   /* TSC ticks per second against PIT channel 2 -> tsc_hz */
    NET_OP_TX,          /* keep the transmit queue full of frame_len-byte frames */
    NET_OP_RX,          /* keep the receive queue full of buffers, count what arrives */
    NET_OP_KICK,        /* count doorbell writes to the transmit queue with nothing new */
    NET_OP_PIO,         /* count writes to the pc-testdev port 0xe0 (a userspace exit) */
};

/* One queue as ring 3 drives it. Addresses are guest-physical = virtual (identity map). */
struct net_queue {
    uint32_t desc, avail, used;   /* split virtqueue of NET_QSIZE entries */
    uint32_t doorbell;            /* MMIO address of the queue's notify register */
    uint32_t bufs;                /* NET_QSIZE buffers, buf_len bytes apart */
    uint32_t buf_len;
    /* Carried from one job to the next (ring 3 updates them). */
    uint32_t avail_idx, used_idx; /* the driver's ring positions */
    uint32_t kick_idx;            /* avail_idx when the driver last decided about a kick */
    uint32_t primed;              /* RX: the buffers were posted once (they stay posted) */
};

struct net_job {
    uint32_t op;
    uint32_t event_idx;           /* VIRTIO_RING_F_EVENT_IDX was negotiated */
    uint32_t mrg_rxbuf;           /* VIRTIO_NET_F_MRG_RXBUF was negotiated */
    uint32_t frame_len;           /* TX: bytes of each frame after the header */
    uint8_t mac[8];               /* the device's MAC (6 bytes), the source of TX frames */
    uint32_t warm_ms;             /* TX, RX: untimed steady state before the measurement */
    uint32_t duration_ms;         /* TX, RX: the measured window */
    uint32_t wait_ms;             /* RX: how long to wait for the host's first frame */
    uint32_t count;               /* KICK, PIO: how many */
    struct net_queue rx, tx;
    uint64_t tsc_hz;              /* CALIBRATE sets it; TX and RX use it */
    /* Results. TX, RX: of the measured window only (the first frame completed after its
     * start to the last one; TX drains what is in flight at its end). */
    uint64_t ticks;               /* TX, RX: the window; KICK, PIO: all */
    uint64_t frames;              /* TX: sent (used by the device); RX: ours received */
    uint64_t bytes;               /* Ethernet bytes of those frames (no header, no FCS) */
    uint64_t kicks;               /* doorbell writes (each one a VM exit) */
    uint64_t other;               /* RX: frames that were not the benchmark's */
    uint64_t split;               /* RX: a frame's first buffer was in the used ring before
                                   * the rest of its num_buffers were */
    uint64_t total;               /* TX: all frames sent by all TX jobs (host cross-check) */
    uint64_t wait_ticks;          /* RX: job start to the first frame */
    uint32_t bad;                 /* RX: used entries with a length or num_buffers that
                                   * makes no sense; TX: used ids out of range */
    uint32_t stalled;             /* 1: no progress for a second, the loop gave up;
                                   * 2 (RX): no frame came within wait_ms */
};

#define NET_JOB_SIZE 200
_Static_assert(sizeof(struct net_job) == NET_JOB_SIZE, "struct net_job differs between -m32 and -m64");
_Static_assert(offsetof(struct net_job, tsc_hz) % 8 == 0 && offsetof(struct net_job, ticks) % 8 == 0,
               "64-bit fields of struct net_job must be 8-byte aligned in both ABIs");

/* The split ring's descriptor. */
struct net_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
} __attribute__((packed));

#define NET_DESC_WRITE 2

#endif
