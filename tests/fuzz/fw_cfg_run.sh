#!/bin/bash
# Fuzzes fw_cfg's guest side (src/firmware/fw_cfg.c: ports, DMA descriptors, saved state;
# tests/fuzz/fw_cfg_fuzz.c checks each transfer against the spec's model) with libFuzzer
# under ASan+UBSan for a bounded time, starting from tests/fuzz/fw_cfg_corpus/ (SeaBIOS's and
# OVMF's access patterns and hostile descriptors). Prints "1 passed, 0 failed" when nothing
# crashed, leaked, timed out or ran out of memory; else "0 passed, 1 failed", the input that
# did it and the sanitizer report.
# Usage: tests/fuzz/fw_cfg_run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/fw_cfg_fuzz FILE.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
fuzz_main fw_cfg -I"$root/tests/unit" -- "$@"
