#!/bin/bash
# Fuzzes the receiving side of live migration as a whole (src/migration/incoming.c and what it
# calls: stream framing, configuration, RAM pages, block migration's disk chunks, vmstate's
# device sections; tests/fuzz/migration_fuzz.c) with libFuzzer under ASan+UBSan for a bounded
# time, starting from streams migrate.sh sent (tests/fuzz/migration_corpus/, made by
# migration_seeds.py). Prints "1 passed, 0 failed" when nothing crashed, leaked, timed out or
# ran out of memory; else "0 passed, 1 failed", the input that did it and the sanitizer report.
# Usage: tests/fuzz/migration_run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: FUZZ_VERBOSE=1 build-fuzz/migration_fuzz FILE.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
fuzz_main migration -DSTREAM_FUZZING=1 -lz -- "$@"
