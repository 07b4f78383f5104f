#!/bin/bash
# Fuzzes kvmkit's snapshot state parser (stream framing, configuration section, vmstate's loader
# with the platform device loaders; tests/fuzz/snapshot_fuzz.c) with libFuzzer under ASan+UBSan
# for a bounded time, starting from the state files in tests/fuzz/snapshot_corpus/. Prints
# "1 passed, 0 failed" when nothing crashed, leaked, timed out or ran out of memory; else
# "0 passed, 1 failed", the input that did it and the sanitizer report.
# Usage: tests/fuzz/snapshot_run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/snapshot_fuzz FILE.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
fuzz_main snapshot -DSTREAM_FUZZING=1 -- "$@"
