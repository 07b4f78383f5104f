#!/bin/bash
# Fuzzes kvmkit's QMP request path (src/control/qmp.c, the command table and argument checks of
# qmp_commands.c, the human monitor's line parser in monitor.c; tests/fuzz/qmp_fuzz.c) with
# libFuzzer under ASan+UBSan for a bounded time, starting from the requests the control tests
# send (tests/fuzz/qmp_corpus/). Prints "1 passed, 0 failed" when nothing crashed, leaked,
# timed out or ran out of memory; else "0 passed, 1 failed", the input that did it and the
# sanitizer report.
# Usage: tests/fuzz/qmp_run.sh [SECONDS] [extra libFuzzer flags...]   (default 60 s)
#   A crash input replays with: build-fuzz/qmp_fuzz FILE.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
fuzz_main qmp -DKVMKIT_VERSION='"fuzz"' -ljansson -- "$@"
