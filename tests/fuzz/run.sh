#!/bin/bash
# Fuzzes kvmkit's qcow2 header and table parser (src/block/qcow2_open.c and qcow2.c through block_open) with
# libFuzzer under ASan+UBSan for a bounded time, starting from the tiny qemu-img images in
# tests/fuzz/corpus/. Prints "1 passed, 0 failed" when nothing crashed, leaked, timed out
# (-timeout, per input) or ran out of memory (-rss_limit_mb / -malloc_limit_mb) in the time;
# else "0 passed, 1 failed", the input that did it and the sanitizer report.
# Usage: tests/fuzz/run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/qcow2_fuzz FILE  (QCOW2_FUZZ_VERBOSE=1 for the
#   block layer's messages). The binary and crash inputs go to build-fuzz/ (git-ignored).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
cc=${CLANG:-clang}
if ! command -v "$cc" >/dev/null; then
	echo "clang not found (Debian: apt-get install clang)"
	echo "0 passed, 1 failed"
	exit 1
fi
out=$root/build-fuzz
mkdir -p "$out"
bin=$out/qcow2_fuzz

# The block layer's sources, as src/block/meson.build lists them; log.c is replaced by quiet
# stand-ins in the target.
srcs=()
for f in $(sed -n "/block_sources = files(/,/)/ s/.*'\(.*\.c\)'.*/\1/p" "$root/src/block/meson.build"); do
	srcs+=("$root/src/block/$f")
done
if [ ${#srcs[@]} -eq 0 ]; then
	echo "no block sources found in src/block/meson.build"
	echo "0 passed, 1 failed"
	exit 1
fi
zlib=()
pkg-config --exists zlib 2>/dev/null && zlib=(-DKVMKIT_HAVE_ZLIB -lz)
echo "building $bin"
if ! "$cc" -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$root/src" "$here/qcow2_fuzz.c" "${srcs[@]}" -o "$bin" -luring "${zlib[@]}" -lpthread; then
	echo "build of the fuzz target failed"
	echo "0 passed, 1 failed"
	exit 1
fi

# A scratch corpus (the checked-in seeds stay as they are) and scratch image files.
work=$(mktemp -d /tmp/kvmkit-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/tmp"
cp "$here"/corpus/* "$work/corpus/"
log=$work/fuzz.log
echo "fuzzing for $secs s (log: $log while it runs)"
start=$(date +%s)
TMPDIR=$work/tmp ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=512 -malloc_limit_mb=512 \
	-artifact_prefix="$out/" -print_final_stats=1 "$@" "$work/corpus" >"$log" 2>&1
rc=$?
end=$(date +%s)
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log"
echo "ran $((end - start)) s, exit status $rc; corpus grew to $(ls "$work/corpus" | wc -l) inputs"
if [ $rc -eq 0 ]; then
	echo "1 passed, 0 failed"
	exit 0
fi
echo "FINDING: the sanitizer / libFuzzer report:"
sed -n '/^==[0-9]*==\|runtime error\|ERROR: libFuzzer\|^SUMMARY/,$p' "$log" | head -150
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
echo "crash input: ${artifact:-(none written; see the report above)}"
echo "replay: $bin ${artifact:-FILE}"
echo "0 passed, 1 failed"
exit 1
