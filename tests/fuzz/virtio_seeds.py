#!/usr/bin/env python3
"""Makes virtio_fuzz seeds from a real guest's snapshot (a kvmkit --snapshot-at-exit directory of
a guest that drove its virtio devices, e.g. tests/guests/migrate_pattern with --disk --rng --net
--vconsole): for each enabled queue of each device, its layout and negotiated features from the
"VIRT" section and, from the memory file, the descriptor table, the available ring (every entry
made pending again) and the buffers and indirect tables its descriptors point to.

usage: virtio_seeds.py SNAPSHOT_DIR OUT_DIR
"""
import os
import struct
import sys

DEVICE_STATE = 27    # virtio_device_save: the fields before the queues
QUEUE_STATE = 36     # and per queue
BUF_MAX = 4096       # bytes of a buffer kept in a seed


def sections(state):
    off = 12
    while off + 16 <= len(state):
        tag, inst, _ver, length = struct.unpack_from("<4sIII", state, off)
        yield tag, inst, state[off + 16:off + 16 + length]
        off += 16 + length + 4


def device_state(payload):
    """The device model's state at the end of a VIRT payload: features and the queues."""
    for nq in range(1, 9):
        at = len(payload) - DEVICE_STATE - QUEUE_STATE * nq
        if at >= 0 and struct.unpack_from("<H", payload, at + 25)[0] == nq:
            dev_f, drv_f = struct.unpack_from("<QQ", payload, at)
            queues = []
            for q in range(nq):
                size, enabled, desc, avail, used = struct.unpack_from(
                    "<HBQQQ", payload, at + DEVICE_STATE + QUEUE_STATE * q)
                queues.append((size, enabled, desc, avail, used))
            return dev_f, drv_f, queues
    return None


def kind(dev_f, nq):
    """0 blk, 1 net, 2 console, 3 rng: by queue count, and blk's own feature bits."""
    if nq == 1:
        return 0 if dev_f & 0xffffff else 3
    return 1 if nq <= 3 else 2


def main():
    snap, out = sys.argv[1:3]
    state = open(os.path.join(snap, "state"), "rb").read()
    mem = open(os.path.join(snap, "memory"), "rb")

    def read(gpa, n):
        mem.seek(gpa)
        return mem.read(n)

    os.makedirs(out, exist_ok=True)
    for tag, inst, payload in sections(state):
        found = tag == b"VIRT" and device_state(payload)
        if not found:
            continue
        dev_f, drv_f, queues = found
        k = kind(dev_f, len(queues))
        for qi, (size, enabled, desc, avail, used) in enumerate(queues):
            if not enabled or not size:
                continue
            chunks = []
            table = read(desc, 16 * size)
            chunks.append((desc, table))
            ring = bytearray(read(avail, 4 + 2 * size + 2))
            struct.pack_into("<H", ring, 2, size)  # every entry pending for a fresh device
            chunks.append((avail, bytes(ring)))
            for i in range(size):
                addr, length, flags, _nxt = struct.unpack_from("<QIHH", table, 16 * i)
                if length and addr < (1 << 32):
                    chunks.append((addr, read(addr, min(length, BUF_MAX))))
            seed = struct.pack("<BBHQQQQ", k, qi, size, drv_f, desc, avail, used)
            for gpa, data in chunks:
                seed += struct.pack("<IH", gpa, len(data)) + data
            name = "guest-%s-q%d" % (["blk", "net", "console", "rng"][k], qi)
            open(os.path.join(out, name), "wb").write(seed)
            print("%s: %d bytes (VIRT %d, queue size %d)" % (name, len(seed), inst, size))


if __name__ == "__main__":
    main()
