#!/bin/bash
# Fuzzes kvmkit's snapshot state parser (stream framing, configuration section, vmstate's loader
# with the platform device loaders; tests/fuzz/snapshot_fuzz.c) with libFuzzer under ASan+UBSan for a bounded time,
# starting from the state files in tests/fuzz/snapshot_corpus/. Prints "1 passed, 0 failed"
# when nothing crashed, leaked, timed out or ran out of memory; else "0 passed, 1 failed", the
# input that did it and the sanitizer report.
# Usage: tests/fuzz/snapshot_run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/snapshot_fuzz FILE.
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
bin=$out/snapshot_fuzz
srcs=(src/migration/stream.c src/migration/config.c src/migration/vmstate.c
      src/arch/x86/vcpu_state.c src/hw/serial_8250.c src/hw/rtc_mc146818.c src/hw/i8042.c
      src/hw/acpi_pm.c src/vmm/bus.c)
echo "building $bin"
if ! "$cc" -std=gnu11 -D_GNU_SOURCE -DSTREAM_FUZZING=1 -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$root/src" "$here/snapshot_fuzz.c" "${srcs[@]/#/$root/}" -o "$bin" -lpthread; then
	echo "build of the fuzz target failed"
	echo "0 passed, 1 failed"
	exit 1
fi
work=$(mktemp -d /tmp/kvmkit-snapfuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp "$here"/snapshot_corpus/* "$work/corpus/"
log=$work/fuzz.log
echo "fuzzing for $secs s"
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=512 -malloc_limit_mb=512 \
	-artifact_prefix="$out/snapshot-" -print_final_stats=1 "$@" "$work/corpus" >"$log" 2>&1
rc=$?
grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log"
if [ $rc -eq 0 ]; then
	echo "1 passed, 0 failed"
	exit 0
fi
echo "FINDING: the sanitizer / libFuzzer report:"
sed -n '/^==[0-9]*==\|runtime error\|ERROR: libFuzzer\|^SUMMARY/,$p' "$log" | head -150
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
echo "crash input: ${artifact:-(none written; see the report above)}"
echo "0 passed, 1 failed"
exit 1
