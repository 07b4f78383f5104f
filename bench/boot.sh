#!/usr/bin/env bash
# Benchmark: boot the same Linux L2 under kvmkit and QEMU microvm, alternately, inside one nested-host run.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bench/boot.sh KVMKIT_BINARY [options]
       bench/boot.sh --self-test [options]        (QEMU on both sides: proves the benchmark itself)
  --runs N           boots per VMM (default 3), alternating kvmkit/QEMU (ABBA order)
  --kernel K         bzimage (default) or pvh (the uncompressed vmlinux)
  --memory MB        L2 memory (default 256)     --cpus N   L2 vCPUs (default 2)
  --l2-timeout SEC   limit per boot (default 120; the VMM gets 15 s after the guest's poweroff -f)
  --append-extra STR added to the L2 command line
  --from-log FILE    no boot: print the table again from an earlier run's L1 log (build/nested-cache/bench-boot.log)
Metrics per boot, all measured inside L1 (L1's /proc/uptime, 10 ms resolution):
  to-init    VMM start to the L2-INIT-REACHED line on the VMM's serial output
  g-up       the guest's own /proc/uptime at init
  wall       VMM start to VMM exit (the guest runs poweroff -f right after its markers)
  HWM        VmHWM of the VMM process (last poll, every 0.2 s)
  HWM-used   HWM minus the guest's used memory (MemTotal-MemFree in L2 at init)         [method A]
  ovh@init   VmRSS minus the Rss of the VMM's largest mapping (its guest RAM), at init   [method B]
  exits@init KVM exits (L1 debugfs /sys/kernel/debug/kvm/exits) when L2-INIT-REACHED was read
  exits      the same, last sample before the VM went away
  and, at init, the medians of KVM's counters by reason (io, mmio, halt, irq, irq_window, request_irq,
  signal, pf_taken, insn_emulation, hypercalls; the total also counts exits no counter names: MSR, CPUID...)
Status: ok; no-exit (init reached, but the VMM did not exit after poweroff -f: killed; its init-time
metrics still count, wall and exits do not); rc=N / TIMEOUT (no init: all n/a).
Medians and kvmkit/QEMU ratios use the boots that have the metric.
USAGE
}
die() { printf 'bench/boot: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
nested=$repo/tests/nested
cache=${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}

kvmkit="" runs=3 kernel=bzimage mem=256 cpus=2 l2_timeout=120 self_test=0 extra="" from_log=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) runs=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --memory) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --l2-timeout) l2_timeout=$2; shift 2 ;;
    --self-test) self_test=1; shift ;;
    --append-extra) extra=$2; shift 2 ;;
    --from-log) from_log=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$kvmkit" ]] || die "one KVMKIT_BINARY only"; kvmkit=$1; shift ;;
    esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"
[[ "$kernel" == bzimage || "$kernel" == pvh ]] || die "--kernel wants bzimage or pvh"
if [[ -n "$from_log" ]]; then
    [[ -f "$from_log" ]] || die "no such log: $from_log"
    l1_log=$from_log parse_log=$from_log
    runs=$(tr -d '\r' < "$l1_log" | grep -c '^BOOT-RESULT name=qemu-' || true)
    kside=kvmkit
    grep -q '^BOOT-CMD name=kvmkit-[0-9]* qemu' "$l1_log" && kside="kvmkit(=QEMU, --self-test)"
elif (( ! self_test )); then
    [[ -n "$kvmkit" ]] || { usage >&2; die "KVMKIT_BINARY is required (or --self-test)"; }
    [[ -x "$kvmkit" ]] || die "not an executable: $kvmkit"
fi

if [[ -z "$from_log" ]]; then
mkdir -p "$cache"
l2env=$("$nested/l2-archive.sh" "$cache") || die "could not fetch or build the L2 guest (see above)"
eval "$l2env"
append="console=ttyS0 kvmkit.test=poweroff panic=-1 quiet${extra:+ $extra}"

payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-bench.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$nested/l1-boot.sh" "$payload/"
(( self_test )) || cp -L "$kvmkit" "$payload/kvmkit"
cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: RUNS boots per VMM, ABBA order.
. ./l1-boot.sh
case "$KERNEL" in bzimage) k=/payload/l2/vmlinuz ;; *) k=/payload/l2/vmlinux ;; esac
boot() { # SIDE NAME
    if [ "$1" = qemu ] || [ "$SELF_TEST" = 1 ]; then
        set -- "$2" qemu-system-x86_64 -M microvm,acpi=on,rtc=on -accel kvm -cpu host -m "$MEM" -smp "$CPUS" \
            -nodefaults -no-user-config -display none -serial stdio -no-reboot \
            -kernel "$k" -initrd /payload/l2/initramfs.cpio -append "$L2_APPEND"
    else
        set -- "$2" /payload/kvmkit run --kernel "$k" --initrd /payload/l2/initramfs.cpio \
            --append "$L2_APPEND" --memory "${MEM}M" --cpus "$CPUS" --serial stdio
    fi
    _n=$1; shift
    echo "BOOT-CMD name=$_n $*"
    l1_boot "$_n" "$L2_TIMEOUT" "$@"
}
i=1
while [ "$i" -le "$RUNS" ]; do
    if [ $((i % 2)) = 1 ]; then boot kvmkit "kvmkit-$i"; boot qemu "qemu-$i"
    else boot qemu "qemu-$i"; boot kvmkit "kvmkit-$i"; fi
    i=$((i + 1))
done
exit 0
RUN

l1_log=$cache/bench-boot.log
run_log=$cache/.bench-boot.$$.log   # private while running (concurrent runs share the cache)
kside=kvmkit
(( self_test )) && kside="kvmkit(=QEMU, --self-test)"
echo "bench/boot: $runs boots each of $kside and QEMU microvm; L2: cloud $kernel, ${mem} MiB, $cpus vCPUs"
echo "bench/boot: L2 cmdline: $append"
echo "bench/boot: booting the nested test host (L1 under TCG; ~$(( 10 + runs * 2 * 7 )) s)..."
t0=$(date +%s.%N)
l1_rc=0
"$nested/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" --with-qemu \
    --env "RUNS=$runs" --env "KERNEL=$kernel" --env "MEM=$mem" --env "CPUS=$cpus" \
    --env "SELF_TEST=$self_test" --env "L2_APPEND=$append" --env "L2_TIMEOUT=$l2_timeout" \
    --timeout $(( 300 + 2 * runs * l2_timeout )) --quiet --log "$run_log" || l1_rc=$?
parse_log=$run_log
t1=$(date +%s.%N)
(( l1_rc == 0 )) || echo "bench/boot: warning: the L1 run ended with status $l1_rc (log: $l1_log)"
fi

tr -d '\r' < "$parse_log" | awk -v runs="$runs" -v kside="$kside" '
function val(s,   r) { return (s == "" || s == "na") ? "n/a" : s }
function median(arr, n,   i, j, t, b) {
    if (n == 0) return "n/a"
    for (i = 1; i <= n; i++) b[i] = arr[i]
    for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j + 1] = b[j]; b[j + 1] = t }
    return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
/^L2\|/ {
    split($0, p, "|"); name = p[2]; line = substr($0, length(name) + 6)
    if (line ~ /L2-INIT-REACHED uptime=/) { sub(/.*uptime=/, "", line); split(line, q, " "); gup[name] = q[1] }
    else if (line ~ /^L2-MEMUSED-KB /) { split(line, q, " "); used[name] = q[2] }
    next
}
/^BOOT-RESULT / {
    delete f
    for (i = 2; i <= NF; i++) { e = index($i, "="); f[substr($i, 1, e - 1)] = substr($i, e + 1) }
    n = f["name"]; order[++nb] = n
    rc[n] = f["rc"]; to[n] = f["timeout"]; wall[n] = f["wall"]; tinit[n] = f["init_wall"]
    hwm[n] = f["hwm_kb"]; exi[n] = f["exits_init"]; exl[n] = f["exits_last"]
    rssi[n] = f["rss_init_kb"]; gram[n] = f["guest_ram_rss_init_kb"]; kinds[n] = f["exit_kinds_init"]
}
END {
    printf "\n%-10s %-7s %7s %6s %7s %7s %8s %8s %10s %9s\n", "run", "status", "to-init", "g-up", "wall",
        "HWM", "HWM-used", "ovh@init", "exits@init", "exits"
    printf "%-10s %-7s %7s %6s %7s %7s %8s %8s %10s %9s\n", "", "", "s", "s", "s", "MiB", "MiB", "MiB", "", ""
    for (k = 1; k <= nb; k++) {
        n = order[k]; side = (n ~ /^kvmkit/) ? "k" : "q"
        oi = (tinit[n] != "na" && tinit[n] != "" && gup[n] != "")   # init reached
        oe = (oi && rc[n] == 0 && to[n] == 0)                       # and exited cleanly
        st = oe ? "ok" : oi ? "no-exit" : (to[n] == 1 ? "TIMEOUT" : "rc=" rc[n])
        m_a = (oi && used[n] != "") ? sprintf("%.1f", (hwm[n] - used[n]) / 1024) : "n/a"
        m_b = (oi && rssi[n] != "na" && gram[n] != "na") ? sprintf("%.1f", (rssi[n] - gram[n]) / 1024) : "n/a"
        printf "%-10s %-7s %7s %6s %7s %7s %8s %8s %10s %9s\n", n, st, oi ? tinit[n] : "n/a", oi ? gup[n] : "n/a",
            oe ? wall[n] : "n/a", oi ? sprintf("%.1f", hwm[n] / 1024) : "n/a", m_a, m_b,
            oi ? val(exi[n]) : "n/a", oe ? val(exl[n]) : "n/a"
        if (oe) okc[side]++
        if (!oi) continue
        c = ++cnt[side]
        A[side, "ti", c] = tinit[n]; A[side, "gu", c] = gup[n]; A[side, "hw", c] = hwm[n] / 1024
        if (oe) { cw = ++cntw[side]; A[side, "wa", cw] = wall[n] }
        if (m_a != "n/a") { ca = ++cnta[side]; A[side, "ma", ca] = m_a }
        if (m_b != "n/a") { cb = ++cntb[side]; A[side, "mb", cb] = m_b }
        if (exi[n] != "na") { ce = ++cnte[side]; A[side, "ei", ce] = exi[n] }
        if (oe && exl[n] != "na") { cl = ++cntl[side]; A[side, "el", cl] = exl[n] }
        if (kinds[n] != "na" && kinds[n] != "") {
            nk = split(kinds[n], kv, ",")
            for (j = 1; j <= nk; j++) {
                split(kv[j], p2, "="); kname = p2[1]
                if (!(kname in kseen)) { kseen[kname] = 1; korder[++nko] = kname }
                KC[side, kname]++; K[side, kname, KC[side, kname]] = p2[2]
            }
        }
    }
    split("ti gu wa hw ma mb ei el", keys, " ")
    split("to-init(s) guest-uptime(s) wall(s) HWM(MiB) HWM-used(MiB) ovh@init(MiB) exits@init exits", labels, " ")
    split("cnt cnt cntw cnt cnta cntb cnte cntl", cn, " ")
    split("%.2f %.2f %.2f %.1f %.1f %.1f %.0f %.0f", fmt, " ")
    printf "\n%-16s %12s %12s %14s\n", "median", kside == "kvmkit" ? "kvmkit" : "kvmkit*", "QEMU", "kvmkit/QEMU"
    for (i = 1; i <= 8; i++) {
        for (s = 1; s <= 2; s++) {
            side = (s == 1) ? "k" : "q"
            nn = (cn[i] == "cnt") ? cnt[side] : (cn[i] == "cntw") ? cntw[side] : (cn[i] == "cnta") ? cnta[side] : \
                 (cn[i] == "cntb") ? cntb[side] : (cn[i] == "cnte") ? cnte[side] : cntl[side]
            delete tmp
            for (j = 1; j <= nn; j++) tmp[j] = A[side, keys[i], j]
            med[s] = median(tmp, nn + 0)
        }
        r = (med[1] != "n/a" && med[2] != "n/a" && med[2] + 0 != 0) ? sprintf("%.2f", med[1] / med[2]) : "n/a"
        printf "%-16s %12s %12s %14s\n", labels[i], med[1] == "n/a" ? "n/a" : sprintf(fmt[i], med[1]),
            med[2] == "n/a" ? "n/a" : sprintf(fmt[i], med[2]), r
    }
    if (nko > 0) {
        printf "\n%-16s %12s %12s %14s\n", "exits@init by", "kvmkit", "QEMU", "kvmkit/QEMU"
        for (i = 1; i <= nko; i++) {
            kname = korder[i]
            for (s = 1; s <= 2; s++) {
                side = (s == 1) ? "k" : "q"
                delete tmp
                for (j = 1; j <= KC[side, kname]; j++) tmp[j] = K[side, kname, j]
                med[s] = median(tmp, KC[side, kname] + 0)
            }
            r = (med[1] != "n/a" && med[2] != "n/a" && med[2] + 0 != 0) ? sprintf("%.2f", med[1] / med[2]) : "n/a"
            printf "%-16s %12s %12s %14s\n", "  " kname, med[1] == "n/a" ? "n/a" : sprintf("%.0f", med[1]),
                med[2] == "n/a" ? "n/a" : sprintf("%.0f", med[2]), r
        }
    }
    if (kside != "kvmkit") print "* --self-test: the kvmkit column is QEMU too (the ratios should be near 1)."
    printf "kvmkit: %d of %d boots reached init, %d exited cleanly; QEMU: %d of %d reached init, %d exited cleanly\n",
        cnt["k"], runs, okc["k"], cnt["q"], runs, okc["q"]
    print "Methods: times are L1 uptime deltas (TCG: compare side by side, do not trust absolutes)."
    print "  HWM-used (A) = VmHWM - (MemTotal-MemFree in L2 at init): undercounts guest pages touched then freed."
    print "  ovh@init (B) = VmRSS - Rss of the VMM largest mapping (guest RAM), sampled when L2-INIT-REACHED is read."
    print "  exits: KVM debugfs exits counter in L1 (sum over live VMs; one VM at a time here)."
}'
[[ -n "$from_log" ]] || mv -f "$run_log" "$l1_log"
[[ -n "$from_log" ]] || echo "TIME total: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (L1 log: $l1_log)"
