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
secs=${1:-60}
[ $# -gt 0 ] && shift
out=$root/build-fuzz
srcs=(src/migration/stream.c src/migration/config.c src/migration/vmstate.c
      src/arch/x86/vcpu_state.c src/hw/serial_8250.c src/hw/rtc_mc146818.c src/hw/i8042.c
      src/hw/acpi_pm.c src/vmm/bus.c src/vmm/device.c)
fuzz_build "$out/snapshot_fuzz" -DSTREAM_FUZZING=1 "$here/snapshot_fuzz.c" "${srcs[@]/#/$root/}"
fuzz_run "$out/snapshot_fuzz" "$here/snapshot_corpus" "$secs" "$out/snapshot-" "$@"
