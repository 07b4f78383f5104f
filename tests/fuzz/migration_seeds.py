#!/usr/bin/env python3
"""Makes migration_fuzz seeds from real migration streams (tests/migration/migrate.sh run with
MIGRATE_CAPTURE_DIR set keeps its file: streams): each stream cut to a seed's size, its sections
as the source sent them but only the two smallest RAM sections and two disk chunks of 4 KiB
(their length and CRC fixed); and a second seed without the sections only KVM can load (vCPUs,
interrupt controllers, PIT, clock) or the fuzz VM lacks (PCI), so the device sections after them
are reached. The first byte picks the fuzz VM: 1 with a disk and an rng, 0 without devices.

usage: migration_seeds.py CAPTURE_DIR OUT_DIR
"""
import os
import struct
import sys
import zlib

CHUNK = 4096
KVM_ONLY = {b"CPU ", b"IRQC", b"PIT ", b"CLCK", b"PCI "}


def sections(f):
    while True:
        head = f.read(16)
        if len(head) < 16:
            return
        tag, _inst, _ver, length = struct.unpack("<4sIII", head)
        payload = f.read(length)
        f.read(4)
        yield tag, head, payload


def section(head, payload):
    head = head[:12] + struct.pack("<I", len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def main():
    src, out = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        with open(os.path.join(src, name), "rb") as f:
            header = f.read(12)
            secs, ram, chunks = [], [], 0
            for tag, head, payload in sections(f):
                if tag == b"RAMP":
                    ram.append((len(payload), len(secs), section(head, payload)))
                    secs.append(None)  # placeholder: the smallest two are kept in place
                    continue
                if tag == b"BLKD":
                    chunks += 1
                    if chunks > 2:
                        continue
                    off, _len, kind = struct.unpack_from("<QIB", payload)
                    payload = struct.pack("<QIB", off, CHUNK, kind) + (
                        payload[13:13 + CHUNK] if kind == 1 else b"")
                secs.append((tag, section(head, payload)))
        keep = {i for _n, i, _s in sorted(ram)[:2]}
        ram_at = {i: s for _n, i, s in ram}
        full = [s if s else (b"RAMP", ram_at[i]) for i, s in enumerate(secs)
                if s or i in keep]
        vm = b"\x01" if any(t == b"BLKS" for t, _ in full) else b"\x00"
        for suffix, picked in (("", full), ("-devices", [s for s in full if s[0] not in KVM_ONLY])):
            seed = vm + header + b"".join(s for _t, s in picked)
            path = os.path.join(out, "migrate-" + name + suffix)
            open(path, "wb").write(seed)
            print("%s: %d bytes, sections %s" % (path, len(seed), " ".join(
                t.decode().strip() for t, _ in picked)))


if __name__ == "__main__":
    main()
