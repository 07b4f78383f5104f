#!/bin/bash
# Fuzzes kvmkit-img's image parsing (tests/fuzz/qcow2_fuzz.c built with -DQCOW2_FUZZ_IMG: info,
# check, map, snapshot -l and check -r all on each input, through the same header parser as the
# driver) with libFuzzer under ASan+UBSan for a bounded time, starting from the tiny qemu-img
# images in tests/fuzz/corpus/. Prints the executions count and "1 passed, 0 failed" when
# nothing crashed, leaked, timed out or ran out of memory; else "0 passed, 1 failed", the input
# that did it and the sanitizer report.
# Usage: tests/fuzz/img_run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/qcow2_img_fuzz FILE (QCOW2_FUZZ_VERBOSE=1 prints
#   kvmkit-img's messages).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
secs=${1:-60}
[ $# -gt 0 ] && shift
out=$root/build-fuzz

# kvmkit-img's sources (but main.c) as src/img/meson.build lists them, lib/size.c and the block
# layer's; log.c is replaced by quiet stand-ins (quiet_log.c).
srcs=("$root/src/lib/size.c")
for f in $(sed -n "/kvmkit_img = executable(/,/)/ s/'\([a-z0-9_]*\.c\)'/\n\1\n/gp" \
		"$root/src/img/meson.build" | grep -x '[a-z0-9_]*\.c' | grep -vx main.c); do
	srcs+=("$root/src/img/$f")
done
for f in $(sed -n "/block_sources = files(/,/)/ s/.*'\(.*\.c\)'.*/\1/p" "$root/src/block/meson.build"); do
	srcs+=("$root/src/block/$f")
done
[ ${#srcs[@]} -gt 10 ] || fuzz_fail "no kvmkit-img sources found in src/img/meson.build"
libs=()
pkg-config --exists zlib 2>/dev/null && libs+=(-DKVMKIT_HAVE_ZLIB -lz)
pkg-config --exists libzstd 2>/dev/null && libs+=(-DKVMKIT_HAVE_ZSTD -lzstd)
fuzz_build "$out/qcow2_img_fuzz" -DQCOW2_FUZZ_IMG "$here/qcow2_fuzz.c" "$here/quiet_log.c" \
	"${srcs[@]}" -luring "${libs[@]}"
fuzz_run "$out/qcow2_img_fuzz" "$here/corpus" "$secs" "$out/img-" "$@"
