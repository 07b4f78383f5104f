#!/usr/bin/env bash
# Tier B test: boot the Debian cloud kernel (bzImage and PVH vmlinux) under kvmkit inside the nested test host.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/boot_linux.sh KVMKIT_BINARY [--pvh-only|--bzimage-only] [options]
       tests/nested/boot_linux.sh --vmm qemu [--pvh-only|--bzimage-only] [options]
  --vmm kvmkit|qemu   the VMM that boots L2 inside L1 (default kvmkit; qemu = -M microvm, proves the pipeline)
  --l2-timeout SEC    limit per L2 boot (default 120; the VMM gets 15 s after the guest's poweroff -f)
  --verbose-guest     drop 'quiet' from the L2 command line (the kernel log then shows in failures)
  --append-extra STR  added to the L2 command line
  --known-bug C=WHY   report check C (e.g. exit) of every boot as XFAIL with WHY instead of failing
Per boot it checks: init reached, 2 CPUs, MemTotal in (200000, 262144] kB, acpi_pm among the
clocksources (kvmkit), the guest's date equals the host's, and the VMM exited with status 0 after
the guest's poweroff -f. Prints PASS/FAIL per check, timings, and "N passed, N failed"; exits 0
only if all pass.
USAGE
}
die() { printf 'boot_linux: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}

kvmkit="" vmm=kvmkit flavours="bzimage pvh" l2_timeout=120 quiet_opt=quiet extra=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --pvh-only) flavours=pvh; shift ;;
    --bzimage-only) flavours=bzimage; shift ;;
    --vmm) vmm=$2; shift 2 ;;
    --l2-timeout) l2_timeout=$2; shift 2 ;;
    --verbose-guest) quiet_opt=""; shift ;;
    --append-extra) extra=$2; shift 2 ;;
    --known-bug) known_bug_check=${2%%=*} known_bug_why=${2#*=}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$kvmkit" ]] || die "one KVMKIT_BINARY only"; kvmkit=$1; shift ;;
    esac
done
case "$vmm" in
kvmkit)
    [[ -n "$kvmkit" ]] || { usage >&2; die "KVMKIT_BINARY is required (or --vmm qemu)"; }
    [[ -x "$kvmkit" ]] || die "not an executable: $kvmkit (build it: meson setup build && ninja -C build)" ;;
qemu) ;;
*) die "--vmm wants kvmkit or qemu, got: $vmm" ;;
esac

mkdir -p "$cache"
l2env=$("$here/l2-archive.sh" "$cache") || die "could not fetch or build the L2 guest (see above)"
eval "$l2env"
append="console=ttyS0 kvmkit.test=poweroff panic=-1${quiet_opt:+ $quiet_opt}${extra:+ $extra}"

payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-bootlinux.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$here/l1-boot.sh" "$payload/"
[[ "$vmm" == kvmkit ]] && cp -L "$kvmkit" "$payload/kvmkit"
cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: one boot per flavour with the chosen VMM.
. ./l1-boot.sh
# A hung boot is stopped with SIGTERM: kvmkit then prints every vCPU's registers into the log.
[ "$VMM" = kvmkit ] && export KVMKIT_DEBUG=1
for f in $FLAVOURS; do
    case "$f" in
    bzimage) k=/payload/l2/vmlinuz ;;
    pvh) k=/payload/l2/vmlinux ;;
    esac
    if [ "$VMM" = qemu ]; then
        set -- qemu-system-x86_64 -M microvm,acpi=on,rtc=on -accel kvm -cpu host -m 256 -smp 2 \
            -nodefaults -no-user-config -display none -serial stdio -no-reboot \
            -kernel "$k" -initrd /payload/l2/initramfs.cpio -append "$L2_APPEND"
    else
        set -- /payload/kvmkit run --kernel "$k" --initrd /payload/l2/initramfs.cpio \
            --append "$L2_APPEND" --memory 256M --cpus 2 --serial stdio
    fi
    echo "BOOT-CMD name=$f $*"
    l1_boot "$f" "$L2_TIMEOUT" "$@"
done
exit 0
RUN

l1_log=$cache/boot_linux-$vmm.log
run_log=$cache/.boot_linux-$vmm.$$.log   # private while running (concurrent runs share the cache)
date_before=$(date -u +%F)
echo "boot_linux: VMM $vmm, boots: $flavours; L2 cmdline: $append"
echo "boot_linux: booting the nested test host (L1 under TCG; ~30 s)..."
qemu_opt=()
[[ "$vmm" == qemu ]] && qemu_opt=(--with-qemu)
t0=$(date +%s.%N)
l1_rc=0
"$here/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" "${qemu_opt[@]+"${qemu_opt[@]}"}" \
    --env "VMM=$vmm" --env "FLAVOURS=$flavours" --env "L2_APPEND=$append" --env "L2_TIMEOUT=$l2_timeout" \
    --timeout $(( 300 + 2 * l2_timeout )) --quiet --log "$run_log" || l1_rc=$?
clean=$(tr -d '\r' < "$run_log")
mv -f "$run_log" "$l1_log"
t1=$(date +%s.%N)
date_after=$(date -u +%F)

. "$here/report.sh"
if [[ $l1_rc -ne 0 ]]; then
    fail "l1-host" "run-l1.sh exited $l1_rc; L1 log: $l1_log"
    printf '%s\n' "$clean" | tail -n 20 | sed 's/^/  L1| /'
else
    pass "l1-host"
fi
for f in $flavours; do
    res=$(grep "^BOOT-RESULT name=$f " <<< "$clean" | tail -n1 || true)
    l2=$(sed -n "s/^L2|$f| //p" <<< "$clean")
    marker() { sed -n "s/^.*$1 *\([^ ]*\).*$/\1/p" <<< "$l2" | head -n1; }
    up=$(sed -n 's/^.*L2-INIT-REACHED uptime=\([0-9.]*\).*$/\1/p' <<< "$l2" | head -n1)
    cpus=$(marker L2-CPUS)
    mem=$(marker L2-MEMTOTAL-KB)
    gdate=$(marker L2-DATE)
    if [[ -n "$up" ]]; then pass "$f/init-reached"; else fail "$f/init-reached" "no L2-INIT-REACHED line"; fi
    if [[ "$cpus" == 2 ]]; then pass "$f/cpus"; else fail "$f/cpus" "L2-CPUS '${cpus:-missing}', want 2"; fi
    if [[ "$mem" =~ ^[0-9]+$ ]] && (( mem > 200000 && mem <= 262144 )); then
        pass "$f/memtotal"
    else
        fail "$f/memtotal" "L2-MEMTOTAL-KB '${mem:-missing}', want 200000 < kB <= 262144 for 256M"
    fi
    # The FADT's PM timer: Linux registers the acpi_pm clocksource only if it is there and ticks.
    if [[ "$vmm" == kvmkit ]]; then
        clocks=$(sed -n 's/^.*L2-CLOCKSOURCES //p' <<< "$l2" | head -n1)
        check "$f/acpi_pm" "$([[ " $clocks " == *" acpi_pm "* ]]; echo $?)" \
            "available clocksources '${clocks:-missing}', want acpi_pm among them"
    fi
    if [[ -n "$gdate" && ( "$gdate" == "$date_before" || "$gdate" == "$date_after" ) ]]; then
        pass "$f/date"
    else
        fail "$f/date" "L2-DATE '${gdate:-missing}', host $date_before"
    fi
    rc=$(field rc "$res") to=$(field timeout "$res")
    if [[ -z "$res" ]]; then
        fail "$f/exit" "no BOOT-RESULT: the payload did not finish this boot"
    elif [[ "$to" == 1 ]] && grep -q 'L2-DONE' <<< "$l2"; then
        fail "$f/exit" "the guest ran poweroff -f but the VMM was still running 15 s later (killed)"
    elif [[ "$to" == 1 ]]; then
        fail "$f/exit" "timed out after ${l2_timeout} s"
    elif [[ "$rc" != 0 ]]; then
        fail "$f/exit" "VMM exited with status $rc"
    elif ! grep -q 'L2-DONE' <<< "$l2"; then
        fail "$f/exit" "VMM exited 0 but the guest never reached poweroff -f"
    else
        pass "$f/exit"
    fi
    if [[ -n "$res" ]]; then
        killed=""
        [[ "$to" == 1 ]] && killed=" (killed)"
        echo "TIME $f: VMM start to exit$killed $(field wall "$res") s, to L2-INIT-REACHED $(field init_wall "$res") s," \
             "guest uptime at init ${up:-n/a} s (L1 clock, TCG: compare, do not trust absolutes)"
    fi
    if [[ -z "$up" || -z "$res" || "$rc" != 0 || "$to" == 1 ]]; then
        echo "  last L2 console lines of $f:"
        tail -n 25 <<< "$l2" | sed 's/^/  L2| /'
    fi
done
echo "TIME total: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s for L1 boot + all L2 boots (L1 log: $l1_log)"
report_end "$clean"
