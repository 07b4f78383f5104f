#!/usr/bin/env bash
# Benchmark: firmware boot (SeaBIOS -> GRUB -> Linux from virtio-blk) under kvmkit and QEMU -M pc, alternately, inside one nested-host run.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bench/firmware.sh KVMKIT_BINARY [--runs N]
Boots tests/nested/fw-image.sh's GRUB image as the first disk (virtio-blk) through Debian's
SeaBIOS, N times per VMM (default 3) in ABBA order, both VMMs with the same firmware file,
disk, 256 MiB and 2 vCPUs, inside one nested-host (L1) run. Metrics per boot, on L1's clock:
  to-grub   VMM start to GRUB's first line on the serial console (firmware + bootloader load)
  to-init   VMM start to the guest's L2-INIT-REACHED line
  exits     KVM exits when init was reached, and by reason (io, mmio, halt, ...)
Prints medians and kvmkit/QEMU ratios (below 1: kvmkit is faster). Absolute times under TCG are
not meaningful; the ratios are.
USAGE
}
die() { printf 'bench/firmware: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
nested=$repo/tests/nested
cache=${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}
kvmkit="" runs=3
while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) runs=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) kvmkit=$1; shift ;;
    esac
done
[[ -x "$kvmkit" ]] || { usage >&2; die "KVMKIT_BINARY is required"; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"

mkdir -p "$cache"
l2env=$("$nested/l2-archive.sh" "$cache") || die "could not build the L2 initramfs"
eval "$l2env"
img_env=$("$nested/fw-image.sh" "$cache") || die "could not build the GRUB image"
eval "$img_env"
payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-bench-fw.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$nested/l1-boot.sh" "$payload/"
cp -L "$kvmkit" "$payload/kvmkit"
cp "$FW_IMAGE" "$payload/disk.img"
cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: ABBA pairs, each boot on a fresh copy of the image.
. ./l1-boot.sh
boot() { # VMM NAME
    cp /payload/disk.img /tmp/bench.img
    echo "BENCH-START name=$2 t=$(l1_now)"
    if [ "$1" = qemu ]; then
        l1_boot "$2" 300 qemu-system-x86_64 -accel kvm -M pc -m 256 -smp 2 \
            -bios /usr/share/seabios/bios.bin -nodefaults -display none -serial stdio -no-reboot \
            -drive file=/tmp/bench.img,format=raw,if=virtio
    else
        l1_boot "$2" 300 /payload/kvmkit run --memory 256M --cpus 2 --serial stdio \
            --firmware /usr/share/seabios/bios.bin /tmp/bench.img
    fi
    grub=$(grep -m1 'GNU GRUB' "/tmp/boot-$2.log" | cut -d' ' -f1)
    echo "BENCH-GRUB name=$2 t=${grub:-na}"
}
i=0
while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    if [ $((i % 2)) = 1 ]; then boot kvmkit "kvmkit-$i"; boot qemu "qemu-$i"
    else boot qemu "qemu-$i"; boot kvmkit "kvmkit-$i"; fi
done
exit 0
RUN
log=$cache/bench-firmware.log
echo "bench/firmware: $runs boots per VMM in the nested host (each ~30-60 s)..."
"$nested/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" --with-qemu --env "RUNS=$runs" \
    --timeout $(( 120 + runs * 2 * 320 )) --quiet --log "$log" || die "the nested host failed (log: $log)"

python3 - "$log" <<'PY'
import re, statistics, sys
text = open(sys.argv[1], errors='replace').read().replace('\r', '')
start = {m[0]: float(m[1]) for m in re.findall(r'^BENCH-START name=(\S+) t=(\S+)', text, re.M)}
grub = {m[0]: m[1] for m in re.findall(r'^BENCH-GRUB name=(\S+) t=(\S+)', text, re.M)}
res = {}
for m in re.finditer(r'^BOOT-RESULT name=(\S+) (.*)$', text, re.M):
    res[m[1]] = dict(kv.split('=', 1) for kv in m[2].split())
rows = {'kvmkit': [], 'qemu': []}
for name, r in res.items():
    vmm = name.split('-')[0]
    g = grub.get(name, 'na')
    to_grub = round(float(g) - start[name], 2) if g != 'na' else None
    to_init = float(r['init_wall']) if r.get('init_wall', 'na') != 'na' else None
    exits = int(r['exits_init']) if r.get('exits_init', 'na') != 'na' else None
    kinds = dict(kv.split('=') for kv in r.get('exit_kinds_init', '').split(',') if '=' in kv)
    ok = r.get('rc') == '0' and r.get('timeout') == '0'
    rows[vmm].append((name, to_grub, to_init, exits, kinds, ok))
    print(f"{name:10} to-grub {to_grub if to_grub is not None else 'n/a':>8} to-init {to_init if to_init is not None else 'n/a':>8} "
          f"exits {exits if exits is not None else 'n/a':>8} status {'ok' if ok else 'rc=' + r.get('rc', '?')}")
def med(vmm, i):
    v = [row[i] for row in rows[vmm] if row[i] is not None]
    return statistics.median(v) if v else None
print()
print(f"{'metric':10} {'kvmkit':>10} {'QEMU':>10} {'kvmkit/QEMU':>12}")
for label, i in (('to-grub', 1), ('to-init', 2), ('exits', 3)):
    k, q = med('kvmkit', i), med('qemu', i)
    ratio = f"{k / q:.2f}" if k is not None and q else 'n/a'
    fmt = lambda v: 'n/a' if v is None else f"{v:.2f}" if i < 3 else f"{v:.0f}"
    print(f"{label:10} {fmt(k):>10} {fmt(q):>10} {ratio:>12}")
for reason in ('io', 'mmio', 'halt', 'irq', 'irq_window', 'insn_emulation', 'pf_taken'):
    k = [int(row[4][reason]) for row in rows['kvmkit'] if reason in row[4]]
    q = [int(row[4][reason]) for row in rows['qemu'] if reason in row[4]]
    if k and q:
        km, qm = statistics.median(k), statistics.median(q)
        print(f"  {reason:14} {km:>8.0f} {qm:>10.0f} {km / qm if qm else float('nan'):>12.2f}")
PY
