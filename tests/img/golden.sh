#!/bin/bash
# Numbered golden tests for kvmkit-img, in the spirit of qemu-iotests: each executable
# tests/img/golden/NNN runs in a fresh scratch directory and prints what kvmkit-img (and, where
# that documents agreement, qemu-img) says; the output must match tests/img/golden/NNN.out.
# Usage: tests/img/golden.sh [--update] [path/to/kvmkit-img] [NNN...]
#   --update rewrites the .out files from the current output (review the diff before committing).
set -u
here=$(cd "$(dirname "$0")" && pwd)
update=0
if [ "${1:-}" = --update ]; then
	update=1
	shift
fi
bin=$here/../../build/src/img/kvmkit-img
if [ $# -gt 0 ] && ! [[ $1 =~ ^[0-9]{3}$ ]]; then # a binary, not a test number
	bin=$1
	shift
fi
if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
	echo "SKIP: the golden tests need qemu-img and qemu-io (Debian: apt-get install qemu-utils)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
fi
if [ ! -x "$bin" ]; then
	echo "kvmkit-img not found at $bin: build it first (ninja -C build)" >&2
	exit 1
fi
export KVMKIT_IMG=$(realpath "$bin")
export GOLDEN_LIB=$here/golden/common.sh
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
	for t in "$here"/golden/[0-9][0-9][0-9]; do
		tests+=("$(basename "$t")")
	done
fi
passed=0
failed=0
for t in "${tests[@]}"; do
	scratch=$(mktemp -d /tmp/kvmkit-golden-XXXXXX)
	# The placeholder for the scratch directory is applied here too, in case a test forgets.
	out=$(cd "$scratch" && bash "$here/golden/$t" 2>&1 | sed "s|$scratch|SCRATCH|g")
	rm -rf "$scratch"
	if [ $update = 1 ]; then
		printf '%s\n' "$out" >"$here/golden/$t.out"
		echo "updated $t"
		continue
	fi
	if d=$(diff -u "$here/golden/$t.out" <(printf '%s\n' "$out")); then
		passed=$((passed + 1))
		echo "ok $t"
	else
		failed=$((failed + 1))
		echo "FAIL $t"
		printf '%s\n' "$d" | sed 's/^/    /'
	fi
done
[ $update = 1 ] && exit 0
echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
