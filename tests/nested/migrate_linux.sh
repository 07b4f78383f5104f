#!/usr/bin/env bash
# Tier B test: a stock Linux guest writing a file on its virtio disk keeps running across a
# snapshot save/restore and a live migration with its disk and its user-mode network between two
# "hosts" (network namespaces of the nested host); afterwards the file is intact, the guest
# reaches the new host's network, and its clock is sane.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/migrate_linux.sh KVMKIT_BINARY [options]
  --l2-timeout SEC   limit for each kvmkit process (default 300)
  --kvmkit-args STR  more kvmkit options for every process (e.g. "--transport mmio")
  --known-bug C=WHY  report check C as XFAIL with WHY instead of failing
The guest (kvmkit.test=writer in the L2 initramfs) appends numbered lines to a file on its
ext4 disk (made by mke2fs in L1) and prints a tick with its clocks, line count and what
http://10.0.2.2:8080/host returns through its virtio-net NIC (--net user: each host's own
busybox httpd answers with the host's name) every second. In L1:
  1. VM A runs on disk a.img; after a few ticks QMP stop + HMP "savevm DIR" + quit;
  2. kvmkit run --restore DIR resumes it (same disk); ticks and lines go on;
  3. a target kvmkit in a second network namespace (a veth pair between the two) waits with
     --incoming tcp:10.77.0.2:4444 and its own empty disk b.img; QMP migrate with blk=true
     (block migration: no shared storage) until query-migrate says completed; the source quits;
  4. on the target the ticks go on; system_powerdown: the guest stops its writer, checks that
     every line is there once and in order, unmounts, powers off; e2fsck -fn b.img is clean.
Checks: each phase's progress, each host's network reached, migration completed, the file intact, the
guest's uptime never going back and its wall clock within 60 s of L1's, exit status 0.
Prints "N passed, N failed"; exits 0 only if all pass. Needs socat, mke2fs, e2fsck, ip.
USAGE
}
die() { printf 'migrate_linux: error: %s\n' "$*" >&2; exit 2; }

. "$(dirname "${BASH_SOURCE[0]}")/tierb-args.sh"
[[ "$vmm" == kvmkit ]] || die "--vmm qemu is not supported by this test"
for t in socat mke2fs e2fsck ip; do
    command -v "$t" >/dev/null || die "$t is missing (Debian packages socat, e2fsprogs, iproute2)"
done

payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-migrate.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$here/l1-boot.sh" "$payload/"
cp -L "$kvmkit" "$payload/kvmkit"
cp -L "$(command -v socat)" "$(command -v mke2fs)" "$(command -v e2fsck)" "$(command -v ip)" "$payload/"

cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: VM A, its restore R, and the migration target B in a second namespace.
. ./l1-boot.sh
export KVMKIT_DEBUG=1
# qmp SOCK CMD...: one session: capabilities, the commands 0.3 s apart, then QMP_WAIT s.
qmp() {
    _s=$1; shift
    { echo '{"execute":"qmp_capabilities"}'
      for c in "$@"; do echo "$c"; sleep 0.3; done
      sleep "${QMP_WAIT:-1}"; } | ./socat -t 2 - UNIX-CONNECT:$_s 2>&1 | sed "s|^|QMP $_s |"
}
# ticks NAME: the tick lines a VM printed so far.
ticks() { _c=$(grep -c L2-TICK /tmp/boot-$1.log 2>/dev/null); echo "${_c:-0}"; }
# wait_ticks NAME N SEC
wait_ticks() {
    _w=0
    while [ "$(ticks $1)" -lt "$2" ] && [ $_w -lt "$3" ]; do sleep 1; _w=$((_w + 1)); done
    echo "PHASE $1 ticks=$(ticks $1)"
}
hmp() { # SOCK COMMAND-LINE
    qmp "$1" "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"$2\"}}"
}
APPEND="console=ttyS0 kvmkit.test=writer panic=-1 quiet"
machine() { # the options A and B share (B gets its own disk)
    set -- --kernel /payload/l2/vmlinuz --initrd /payload/l2/initramfs.cpio --memory 256M \
        --cpus 2 --serial stdio --net user
    echo "$@"
}
./mke2fs -q -F -t ext4 /tmp/a.img 64M || echo "MKFS-FAILED"
dd if=/dev/zero of=/tmp/b.img bs=1M count=0 seek=64 2>/dev/null

# Host B: a network namespace joined to this one by a veth pair.
./ip link add va type veth peer name vb
./ip addr add 10.77.0.1/24 dev va
./ip link set va up
unshare -n sh -c 'echo $$ > /tmp/nsb.pid; exec sleep 100000' &
while [ ! -s /tmp/nsb.pid ]; do sleep 0.1; done
nsb=$(cat /tmp/nsb.pid)
./ip link set vb netns "$nsb"
nsenter -t "$nsb" -n /payload/ip addr add 10.77.0.2/24 dev vb
nsenter -t "$nsb" -n /payload/ip link set vb up
nsenter -t "$nsb" -n /payload/ip link set lo up
ping -c 1 -W 5 10.77.0.2 >/dev/null 2>&1 && echo "NETNS-OK" || echo "NETNS-FAILED"
# Each host's web server names the host (the guest reaches it as 10.0.2.2:8080).
mkdir -p /tmp/wwwa /tmp/wwwb
echo hostA > /tmp/wwwa/host
echo hostB > /tmp/wwwb/host
httpd -p 127.0.0.1:8080 -h /tmp/wwwa
nsenter -t "$nsb" -n httpd -p 127.0.0.1:8080 -h /tmp/wwwb

# 1. VM A, then stop + savevm + quit.
l1_boot a "$L2_TIMEOUT" /payload/kvmkit run $(machine) --append "$APPEND" \
    --disk path=/tmp/a.img --control unix:/tmp/a.sock $KVMKIT_ARGS &
pa=$!
wait_ticks a 4 "$L2_TIMEOUT"
QMP_WAIT=0 qmp /tmp/a.sock '{"execute":"stop"}'
QMP_WAIT=8 hmp /tmp/a.sock "savevm /tmp/snap"
QMP_WAIT=2 qmp /tmp/a.sock '{"execute":"quit"}'
wait $pa
# 2. The restore, on the same disk.
l1_boot r "$L2_TIMEOUT" /payload/kvmkit run --restore /tmp/snap --serial stdio \
    --control unix:/tmp/r.sock &
pr=$!
wait_ticks r 4 "$L2_TIMEOUT"
# 3. Live migration with the disk to host B.
l1_boot b "$L2_TIMEOUT" nsenter -t "$nsb" -n /payload/kvmkit run $(machine) --append "$APPEND" \
    --disk path=/tmp/b.img --control unix:/tmp/b.sock --incoming tcp:10.77.0.2:4444 $KVMKIT_ARGS &
pb=$!
sleep 2
QMP_WAIT=0 qmp /tmp/r.sock '{"execute":"migrate","arguments":{"uri":"tcp:10.77.0.2:4444","blk":true}}'
n=0
while [ $n -lt 120 ]; do
    st=$(QMP_WAIT=0 qmp /tmp/r.sock '{"execute":"query-migrate"}' | grep '"status"' | tail -n1)
    case "$st" in *completed*|*failed*|*cancelled*) break ;; esac
    sleep 1; n=$((n + 1))
done
echo "MIGRATE-RESULT $st"
QMP_WAIT=2 qmp /tmp/r.sock '{"execute":"quit"}'
wait $pr
# 4. The guest goes on on B, then powers off.
wait_ticks b 4 "$L2_TIMEOUT"
QMP_WAIT=3 qmp /tmp/b.sock '{"execute":"system_powerdown"}'
wait $pb
echo "L1-DATE $(date +%s)"
./e2fsck -fn /tmp/b.img > /tmp/fsck.log 2>&1
echo "FSCK-RC $?"
sed 's/^/FSCK| /' /tmp/fsck.log
kill "$nsb" 2>/dev/null
exit 0
RUN

log=$cache/migrate_linux-$variant.log
run_log=$cache/.migrate_linux-$variant.$$.log
echo "migrate_linux: booting the nested test host (L1 under TCG)..."
l1_rc=0
"$here/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" --modules veth \
    --env "L2_TIMEOUT=$l2_timeout" --env "KVMKIT_ARGS=$kvmkit_args" \
    --timeout $(( 300 + 3 * l2_timeout )) --quiet --log "$run_log" || l1_rc=$?
clean=$(tr -d '\r' < "$run_log")
mv -f "$run_log" "$log"

. "$here/report.sh"
l2a=$(sed -n 's/^L2|a| //p' <<< "$clean") l2r=$(sed -n 's/^L2|r| //p' <<< "$clean")
l2b=$(sed -n 's/^L2|b| //p' <<< "$clean")
phase() { sed -n "s/^PHASE $1 ticks=\([0-9]*\).*/\1/p" <<< "$clean" | tail -n1; }
res() { grep "^BOOT-RESULT name=$1 " <<< "$clean" | tail -n1 || true; }
check l1-host "$l1_rc" "run-l1.sh exited $l1_rc; L1 log: $log"
check netns "$(grep -q '^NETNS-OK' <<< "$clean"; echo $?)" "the two namespaces cannot reach each other"
check a/runs "$( [[ $(phase a) -ge 4 ]]; echo $?)" "VM A printed $(phase a) ticks"
sv=$(grep '^QMP /tmp/a.sock {"return": "' <<< "$clean" | head -n1 || true)
check a/savevm "$( [[ -n "$sv" && "$sv" != *Error* ]]; echo $?)" "savevm's reply: ${sv:-none}"
check r/resumes "$( [[ $(phase r) -ge 4 ]]; echo $?)" "the restored VM printed $(phase r) ticks"
check r/no-boot "$( ! grep -q 'L2-INIT-REACHED' <<< "$l2r"; echo $?)" "the restored VM booted anew instead of resuming"
mig=$(sed -n 's/^MIGRATE-RESULT //p' <<< "$clean")
check migrate/completed "$(grep -q '"completed"' <<< "$mig"; echo $?)" "query-migrate: ${mig:-nothing}"
check b/resumes "$( [[ $(phase b) -ge 4 ]]; echo $?)" "the target printed $(phase b) ticks"
check net/a "$(grep -q '^L2-TICK .* net=hostA' <<< "$l2a"; echo $?)" "VM A never reached host A's server: $(grep '^L2-TICK' <<< "$l2a" | tail -n1)"
check net/b "$(grep -q '^L2-TICK .* net=hostB' <<< "$l2b"; echo $?)" "after the migration the guest never reached host B's server: $(grep '^L2-TICK' <<< "$l2b" | tail -n1)"
check b/no-boot "$( ! grep -q 'L2-INIT-REACHED' <<< "$l2b"; echo $?)" "the target booted anew instead of resuming"
check file/intact "$(grep -q '^L2-WRITER-OK [0-9]' <<< "$l2b"; echo $?)" "$(grep -m1 '^L2-WRITER' <<< "$l2b" || echo 'no L2-WRITER line')"
# Lines written: more after each phase than before it.
lines() { sed -n 's/^L2-TICK .* lines=\([0-9]*\).*/\1/p' <<< "$1" | tail -n1; }
la=$(lines "$l2a") lr=$(lines "$l2r") lb=$(lines "$l2b")
check file/grows "$( [[ -n "$la" && -n "$lr" && -n "$lb" && $la -lt $lr && $lr -lt $lb ]]; echo $?)" "lines at the end of A, R, B: ${la:-?} ${lr:-?} ${lb:-?}"
ups=$(sed -n 's/^L2-TICK .* up=\([0-9.]*\) .*/\1/p' <<< "$l2a"$'\n'"$l2r"$'\n'"$l2b")
check clock/uptime "$(awk 'NR > 1 && $1 < p { exit 1 } { p = $1 }' <<< "$ups"; echo $?)" "the guest's uptime went back across the phases"
rt=$(sed -n 's/^L2-TICK .* rt=\([0-9]*\) .*/\1/p' <<< "$l2b" | tail -n1)
l1d=$(sed -n 's/^L1-DATE //p' <<< "$clean")
check clock/wall "$( [[ -n "$rt" && -n "$l1d" ]] && (( l1d - rt < 60 && rt - l1d < 60 )); echo $?)" "guest wall clock ${rt:-?} vs L1 ${l1d:-?}"
check fsck "$(grep -q '^FSCK-RC 0$' <<< "$clean"; echo $?)" "$(grep -m1 '^FSCK-RC' <<< "$clean" || echo 'fsck did not run'); see FSCK| lines in $log"
rb=$(res b)
check b/exit "$( [[ -n "$rb" && $(field timeout "$rb") == 0 && $(field rc "$rb") == 0 ]]; echo $?)" "target VMM rc=$(field rc "$rb") timeout=$(field timeout "$rb")"
if [[ $failed -gt 0 ]]; then
    echo "  QMP and phase lines:"
    grep -E '^(PHASE|MIGRATE-RESULT|QMP )' <<< "$clean" | tail -n 25 | sed 's/^/  /'
    for v in a r b; do
        echo "  VM $v:"
        sed -n "s/^L2|$v| //p" <<< "$clean" | tail -n 8 | sed 's/^/    /'
    done
    report_tails "" "$clean"
fi
report_end "$clean"
