#!/bin/bash
# Fuzzes kvmkit's qcow2 header and table parser (src/block/qcow2_open.c, and qcow2.c, through
# block_open) with libFuzzer under ASan+UBSan for a bounded time, starting from the tiny
# qemu-img images in tests/fuzz/corpus/. Prints "1 passed, 0 failed" when nothing crashed,
# leaked, timed out (-timeout, per input) or ran out of memory (-rss_limit_mb /
# -malloc_limit_mb) in the time; else "0 passed, 1 failed", the input that did it and the
# sanitizer report.
# Usage: tests/fuzz/run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/qcow2_fuzz FILE  (QCOW2_FUZZ_VERBOSE=1 for the
#   block layer's messages). The binary and crash inputs go to build-fuzz/ (git-ignored).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
secs=${1:-60}
[ $# -gt 0 ] && shift
out=$root/build-fuzz

# The block layer's sources, as src/block/meson.build lists them; log.c is replaced by quiet
# stand-ins (quiet_log.c).
srcs=()
for f in $(sed -n "/block_sources = files(/,/)/ s/.*'\(.*\.c\)'.*/\1/p" "$root/src/block/meson.build"); do
	srcs+=("$root/src/block/$f")
done
[ ${#srcs[@]} -gt 0 ] || fuzz_fail "no block sources found in src/block/meson.build"
zlib=()
pkg-config --exists zlib 2>/dev/null && zlib=(-DKVMKIT_HAVE_ZLIB -lz)
fuzz_build "$out/qcow2_fuzz" "$here/qcow2_fuzz.c" "$here/quiet_log.c" "${srcs[@]}" -luring "${zlib[@]}"
fuzz_run "$out/qcow2_fuzz" "$here/corpus" "$secs" "$out/" "$@"
