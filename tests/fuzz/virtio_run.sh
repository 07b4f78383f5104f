#!/bin/bash
# Fuzzes the guest-facing request parsers of virtio-blk, virtio-net, virtio-console and
# virtio-rng (src/virtio/: the device model, split rings and the devices; tests/fuzz/
# virtio_fuzz.c) with libFuzzer under ASan+UBSan for a bounded time, starting from rings and
# buffers a real guest built (tests/fuzz/virtio_corpus/, made by virtio_seeds.py). Prints
# "1 passed, 0 failed" when nothing crashed, leaked, timed out or ran out of memory; else
# "0 passed, 1 failed", the input that did it and the sanitizer report.
# Usage: tests/fuzz/virtio_run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/virtio_fuzz FILE.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
fuzz_main virtio -I"$root/tests/unit" -lz -- "$@"
