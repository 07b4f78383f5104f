#!/usr/bin/env bash
# Tier B test: a stock Linux guest driven through kvmkit's QMP socket in the nested host: status,
# pause/resume without a clock jump, system_reset, and system_powerdown through ACPI.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/lifecycle.sh KVMKIT_BINARY [options]
  --l2-timeout SEC   limit for the whole guest run (default 300)
  --kvmkit-args STR  more kvmkit options
  --known-bug C=WHY  report check C as XFAIL with WHY instead of failing
The guest (the L2 initramfs in kvmkit.test=lifecycle mode) prints a tick line every second with
its uptime and wall clock, and powers off when the ACPI power button's counter rises. A driver
in L1 talks QMP to kvmkit over --control unix:/tmp/qmp.sock with socat: query-status,
query-cpus-fast, human-monitor-command "info registers"; stop, 5 s paused, cont (STOP/RESUME
events; while paused no tick; the guest's clocks do not jump by the pause, as under QEMU,
whose kvmclock stops too); system_reset (RESET event, the guest boots again); system_powerdown
(POWERDOWN event, the guest sees the button and powers off, SHUTDOWN event, exit status 0).
Prints "N passed, N failed"; exits 0 only if all pass. Needs socat on this host (copied into L1).
USAGE
}
die() { printf 'lifecycle: error: %s\n' "$*" >&2; exit 2; }

. "$(dirname "${BASH_SOURCE[0]}")/tierb-args.sh"
[[ "$vmm" == kvmkit ]] || die "this test drives kvmkit's control socket: --vmm qemu is not supported"
command -v socat >/dev/null || die "socat is missing (Debian package socat)"

payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-lifecycle.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$here/l1-boot.sh" "$payload/"
cp -L "$kvmkit" "$payload/kvmkit"
cp -L "$(command -v socat)" "$payload/"

cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: the guest under kvmkit, and a QMP driver beside it.
. ./l1-boot.sh
export KVMKIT_DEBUG=1
q=/tmp/qmp.sock
log=/tmp/boot-lifecycle.log
# qmp CMD...: one session: capabilities, the commands 0.3 s apart, then QMP_WAIT s of events.
qmp() {
    { echo '{"execute":"qmp_capabilities"}'
      for c in "$@"; do echo "$c"; sleep 0.3; done
      sleep "${QMP_WAIT:-1}"; } | ./socat -t 2 - UNIX-CONNECT:$q 2>&1 | sed 's/^/QMP| /'
}
# wait_count PATTERN N SEC: until the guest's console has N lines matching PATTERN.
wait_count() {
    _w=0
    while :; do
        _c=$(grep -c "$1" $log 2>/dev/null)
        [ "${_c:-0}" -lt "$2" ] && [ $_w -lt "$3" ] || break
        sleep 1; _w=$((_w + 1))
    done
}
driver() {
    wait_count L2-TICK 2 "$L2_TIMEOUT"
    echo "STEP status"
    qmp '{"execute":"query-status"}' '{"execute":"query-cpus-fast"}' \
        '{"execute":"human-monitor-command","arguments":{"command-line":"info registers"}}'
    echo "STEP pause"
    QMP_WAIT=0 qmp '{"execute":"stop"}' '{"execute":"query-status"}'
    ticks=$(grep -c L2-TICK $log)
    sleep 5
    echo "PAUSED-TICKS $ticks $(grep -c L2-TICK $log)"
    QMP_WAIT=0 qmp '{"execute":"cont"}' '{"execute":"query-status"}'
    wait_count L2-TICK $((ticks + 3)) 60
    echo "STEP reset"
    QMP_WAIT=2 qmp '{"execute":"system_reset"}'
    wait_count L2-INIT-REACHED 2 "$L2_TIMEOUT"
    wait_count L2-TICK $((ticks + 5)) 60
    echo "STEP powerdown"
    QMP_WAIT=20 qmp '{"execute":"system_powerdown"}'
}
driver &
driver_pid=$!
set -- /payload/kvmkit run --kernel /payload/l2/vmlinuz --initrd /payload/l2/initramfs.cpio \
    --append "console=ttyS0 kvmkit.test=lifecycle panic=-1 quiet" --memory 256M --cpus 2 \
    --serial stdio --control unix:$q $KVMKIT_ARGS
echo "BOOT-CMD name=lifecycle $*"
l1_boot lifecycle "$L2_TIMEOUT" "$@"
# The driver's last session ends within its QMP_WAIT; its output (the SHUTDOWN event) must be
# out before L1 powers off.
wait $driver_pid
# Every tick with the L1 time it arrived at, for the clock check.
grep L2-TICK $log | sed 's/^/TICKLOG /'
exit 0
RUN

log=$cache/lifecycle-$variant.log
run_log=$cache/.lifecycle-$variant.$$.log
echo "lifecycle: booting the nested test host (L1 under TCG)..."
l1_rc=0
"$here/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" \
    --env "L2_TIMEOUT=$l2_timeout" --env "KVMKIT_ARGS=$kvmkit_args" \
    --timeout $(( 300 + l2_timeout )) --quiet --log "$run_log" || l1_rc=$?
clean=$(tr -d '\r' < "$run_log")
mv -f "$run_log" "$log"

. "$here/report.sh"
l2=$(sed -n 's/^L2|lifecycle| //p' <<< "$clean")
# The QMP lines of one driver step.
step() { awk -v s="STEP $1" '/^STEP / { on = ($0 == s) } on && /^QMP\| / { print }' <<< "$clean"; }
st=$(step status) pa=$(step pause) rs=$(step reset) pd=$(step powerdown)
resumed=$(grep '^QMP| ' <<< "$clean" | grep -c '"event": *"RESUME"' || true)
has() { grep -q "$2" <<< "$1"; }
res=$(grep '^BOOT-RESULT name=lifecycle ' <<< "$clean" | tail -n1 || true)
check l1-host "$l1_rc" "run-l1.sh exited $l1_rc; L1 log: $log"
check qmp/greeting "$(has "$st" '"QMP": *{'; echo $?)" "no QMP greeting: $(head -n2 <<< "$st")"
check qmp/status "$(has "$st" '"status": *"running"'; echo $?)" "query-status did not say running"
check qmp/cpus "$( [[ $(grep -o '"cpu-index"' <<< "$st" | wc -l) -eq 2 ]]; echo $?)" "query-cpus-fast did not list 2 vCPUs with thread ids"
check qmp/info-registers "$(has "$st" 'RIP='; echo $?)" "no RIP= in the info registers reply"
check pause/stop-event "$(has "$pa" '"event": *"STOP"'; echo $?)" "no STOP event"
check pause/status "$(has "$pa" '"status": *"paused"'; echo $?)" "query-status did not say paused"
read -r _ t_before t_after <<< "$(grep -m1 '^PAUSED-TICKS' <<< "$clean" || echo 'x - -')"
check pause/no-progress "$( [[ "$t_before" != - && "$t_before" == "$t_after" ]]; echo $?)" "ticks went on while paused: ${t_before} then ${t_after}"
check pause/resume-event "$( [[ $resumed -ge 1 ]]; echo $?)" "no RESUME event"
# The pause: the longest L1-time gap between two ticks in a row of one boot; the guest's clocks
# must not show it.
gap=$(awk '/^TICKLOG / { t = $2; k = $4; up = $5; rt = $6; sub(/up=/, "", up); sub(/rt=/, "", rt);
             if (n++ && k == pk + 1 && t - pt > best) { best = t - pt; gup = up - pup; grt = rt - prt }
             pt = t; pk = k; pup = up; prt = rt }
           END { printf "%.1f %.1f %d", best, gup, grt }' <<< "$clean")
read -r l1_gap up_gap rt_gap <<< "$gap"
check pause/clock "$(awk -v l="$l1_gap" -v u="$up_gap" -v r="$rt_gap" 'BEGIN { exit !(l >= 4 && u >= 0 && u < 3 && r >= 0 && r <= 3) }'; echo $?)" \
    "around the pause L1 saw ${l1_gap} s between two ticks, the guest's uptime moved ${up_gap} s and its wall clock ${rt_gap} s (want a pause of >= 4 s that the guest does not see)"
check pause/progress "$(awk -v b="$t_before" '/^TICKLOG / { n++ } END { exit !(n >= b + 3) }' <<< "$clean"; echo $?)" "fewer than 3 ticks after cont"
check reset/event "$(has "$rs" '"event": *"RESET"'; echo $?)" "no RESET event"
check reset/reboot "$( [[ $(grep -c '^L2-INIT-REACHED' <<< "$l2") -ge 2 ]]; echo $?)" "the guest did not boot again after system_reset"
check powerdown/event "$(has "$pd" '"event": *"POWERDOWN"'; echo $?)" "no POWERDOWN event"
check powerdown/guest "$(has "$l2" '^L2-PWRBTN [0-9]'; echo $?)" "the guest did not see the power button"
check powerdown/shutdown-event "$(has "$pd" '"event": *"SHUTDOWN"'; echo $?)" "no SHUTDOWN event"
rc=$(field rc "$res") to=$(field timeout "$res")
check exit "$( [[ -n "$res" && "$to" == 0 && "$rc" == 0 ]]; echo $?)" "VMM rc=${rc:-none} timeout=${to:-none}"
if [[ $failed -gt 0 ]]; then
    echo "  QMP lines:"
    grep -E '^(STEP|QMP\|)' <<< "$clean" | tail -n 30 | sed 's/^/  /'
    report_tails "$l2" "$clean"
fi
report_end "$clean"
