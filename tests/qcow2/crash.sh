#!/bin/bash
# Crash consistency of kvmkit's qcow2 writes: `qcow2-io crashwrite` writes at random until it is
# killed with SIGKILL at a random moment; then `qemu-img check` must report a clean image or leaks
# only (exit 0 or 3, never corruption), and every write flushed before the kill must read back
# (through qemu-img) with its pattern. The same image is reused across rounds, so kvmkit also
# reopens and keeps writing to images it left behind after a crash.
# Usage: tests/qcow2/crash.sh [path/to/qcow2-io]  (default: build/tests/qcow2/qcow2-io)
set -u
here=$(cd "$(dirname "$0")" && pwd)
io=${1:-$here/../../build/tests/qcow2/qcow2-io}
if ! command -v qemu-img >/dev/null; then
	echo "SKIP: the qcow2 crash test needs qemu-img (Debian: apt-get install qemu-utils)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
fi
if [ ! -x "$io" ]; then
	echo "qcow2-io not found at $io: build it first (ninja -C build)" >&2
	exit 1
fi
io=$(realpath "$io") # the tests run in a scratch directory
work=$(mktemp -d /tmp/kvmkit-qcow2-crash-XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
passed=0
failed=0
rounds=${CRASH_ROUNDS:-10} # per configuration

# verify IMAGE BASE LOG...: BASE is the raw contents before the first round (a file, or "zero").
# Replays the logs: writes before an "F" line are durable and must read back; writes after the
# last "F" of a round (the kill came before their flush) leave their bytes unknown until a later
# durable write covers them.
cat > verify.py <<'PY'
import sys
img, base, logs = sys.argv[1], sys.argv[2], sys.argv[3:]
got = open(img, 'rb').read()
size = len(got)
exp = bytearray(size) if base == 'zero' else bytearray(open(base, 'rb').read())
unknown = bytearray(size)  # 1: last written by a write that may or may not have landed
p0 = bytes((k * 7 + (k >> 9)) & 255 for k in range(3 << 16))  # qcow2-io's pattern, PAT 0
tables = [bytes((b + pat) & 255 for b in range(256)) for pat in range(256)]
def pattern(pat, n):
    return bytes(n) if pat == 0 else p0[:n].translate(tables[pat])
durable = 0
for log in logs:
    pend = []
    for line in open(log):
        f = line.split()
        if f and f[0] == 'P' and len(f) == 4:
            pend.append((int(f[1]), int(f[2]), int(f[3])))
        elif f and f[0] == 'F':
            for off, n, pat in pend:
                exp[off:off + n] = pattern(pat, n)
                unknown[off:off + n] = bytes(n)
            durable += len(pend)
            pend = []
    for off, n, pat in pend:
        unknown[off:off + n] = b'\x01' * n
bad = []
C = 65536
for c in range(0, size, C):
    if got[c:c + C] == exp[c:c + C]:
        continue
    for b in range(c, min(c + C, size)):
        if got[b] != exp[b] and not unknown[b]:
            bad.append(b)
            break
    if len(bad) >= 5:
        break
if bad:
    print('%d durable writes; mismatch (got/expected) at: %s' % (durable, ', '.join(
        '%d (0x%x): %02x/%02x' % (b, b, got[b], exp[b]) for b in bad)))
    sys.exit(1)
print('%d durable writes read back, %d bytes unknown' % (durable, unknown.count(1)))
PY

round() { # name, image, base, cluster size, seed
	local name=$1 img=$2 base=$3 cs=$4 seed=$5 log
	log=$(printf '%s.log.%03d' "$img" "$seed")
	: > "$log"
	QCOW2_IO_CLUSTER=$cs "$io" crashwrite "$img" qcow2 "$log" "$seed" 2> crashwrite.err &
	local pid=$!
	sleep "$(awk -v s="$seed" 'BEGIN { srand(s); printf "%.2f", 0.05 + rand() * 0.95 }')"
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		failed=$((failed + 1))
		echo "FAIL $name: crashwrite exited early ($?)"
		sed 's/^/     /' crashwrite.err | tail -5
		return
	fi
	kill -9 "$pid"
	wait "$pid" 2>/dev/null
	local out rc
	out=$(qemu-img check "$img" 2>&1)
	rc=$?
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
		failed=$((failed + 1))
		echo "FAIL $name: qemu-img check exit $rc"
		printf '%s\n' "$out" | sed 's/^/     /' | tail -15
		return
	fi
	local leaks=""
	[ "$rc" -eq 3 ] && leaks=" (leaks only)"
	if ! qemu-img convert -f qcow2 -O raw "$img" dump.raw 2> convert.err; then
		failed=$((failed + 1))
		echo "FAIL $name: qemu-img convert failed"
		sed 's/^/     /' convert.err | tail -5
		return
	fi
	# shellcheck disable=SC2046 # the logs of all rounds so far, in order
	if out=$(python3 verify.py dump.raw "$base" $(ls "$img".log.* | sort) 2>&1); then
		passed=$((passed + 1))
		echo "ok   $name: check exit $rc$leaks, $out"
	else
		failed=$((failed + 1))
		echo "FAIL $name: check exit $rc$leaks, data"
		printf '%s\n' "$out" | sed 's/^/     /' | tail -5
	fi
}

# 1. 4 KiB clusters over a raw backing file with random contents.
head -c $((64 << 20)) /dev/urandom > base.raw
qemu-img create -q -f qcow2 -o cluster_size=4096 -b base.raw -F raw a.qcow2 64M
for i in $(seq 1 "$rounds"); do
	round "4K clusters, raw backing, round $i" a.qcow2 base.raw 4096 "$i"
done
# 2. 64 KiB clusters, no backing file, made by kvmkit itself.
"$io" create b.qcow2 qcow2 $((64 << 20)) 65536
for i in $(seq 1 "$rounds"); do
	round "64K clusters, no backing, round $i" b.qcow2 zero 65536 $((100 + i))
done

echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
