#!/usr/bin/env bash
# Tier B firmware boot: Debian's SeaBIOS boots a GRUB image (grub-mkrescue) from a virtio-blk disk, GRUB the Debian kernel, under QEMU (the reference) and kvmkit.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/firmware.sh KVMKIT_BINARY
Builds (once, cached) a hybrid image with grub-mkrescue holding the tier B kernel and initramfs
and a GRUB menu on the serial console, then boots it in the nested host as the first disk
(virtio-blk) through Debian's SeaBIOS: first under QEMU -M pc (the reference: the image must
boot there), then under kvmkit (`kvmkit run IMAGE`). Per VMM it checks: GRUB's menu on the
serial console, the kernel reaching init, and poweroff -f ending the VMM with status 0 (ACPI
from the tables the firmware placed); for kvmkit also SeaBIOS's banner in --firmware-log.
Prints PASS/FAIL per check and "N passed, N failed"; exits 0 only if all pass.
USAGE
}
die() { printf 'firmware: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}
case "${1:-}" in -h|--help) usage; exit 0 ;; "") usage >&2; exit 2 ;; esac
kvmkit=$1
[[ -x "$kvmkit" ]] || die "not an executable: $kvmkit"
for tool in grub-mkrescue xorriso mformat; do
    if ! command -v "$tool" >/dev/null; then
        echo "SKIP: $tool is missing (bash scripts/install-deps.sh installs grub-pc-bin, xorriso, mtools)"
        echo "0 passed, 0 failed, 1 skipped"
        exit 77
    fi
done

mkdir -p "$cache"
l2env=$("$here/l2-archive.sh" "$cache") || die "could not build the L2 initramfs (see above)"
eval "$l2env"

img_env=$("$here/fw-image.sh" "$cache") || die "could not build the GRUB image (see above)"
eval "$img_env"

payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-fw.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$here/l1-boot.sh" "$payload/"
cp -L "$kvmkit" "$payload/kvmkit"
cp "$FW_IMAGE" "$payload/disk.img"
cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: the image under QEMU, then under kvmkit, each on a copy (both may write).
. ./l1-boot.sh
export KVMKIT_DEBUG=1
cp /payload/disk.img /tmp/qemu.img
l1_boot qemu "$L2_TIMEOUT" qemu-system-x86_64 -accel kvm -M pc -m 256 -smp 2 \
    -bios /usr/share/seabios/bios.bin -nodefaults -display none -serial stdio -no-reboot \
    -drive file=/tmp/qemu.img,format=raw,if=virtio
cp /payload/disk.img /tmp/kvmkit.img
l1_boot kvmkit "$L2_TIMEOUT" /payload/kvmkit run --memory 256M --cpus 2 --serial stdio \
    --firmware-log /tmp/fw-kvmkit.log /tmp/kvmkit.img
echo "FW-LOG-BEGIN"
head -n 5 /tmp/fw-kvmkit.log 2>/dev/null
echo "..."
tail -n 40 /tmp/fw-kvmkit.log 2>/dev/null
echo "FW-LOG-END"
exit 0
RUN

run_log=$cache/.firmware.$$.log
echo "firmware: SeaBIOS -> GRUB -> Linux under QEMU and kvmkit in the nested host..."
l1_rc=0
"$here/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" --with-qemu \
    --env "L2_TIMEOUT=240" --timeout 900 --quiet --log "$run_log" || l1_rc=$?
clean=$(tr -d '\r' < "$run_log")
mv -f "$run_log" "$cache/firmware.log"

. "$here/report.sh"
if [[ $l1_rc -ne 0 ]]; then
    fail "l1-host" "run-l1.sh exited $l1_rc; L1 log: $cache/firmware.log"
    printf '%s\n' "$clean" | tail -n 20 | sed 's/^/  L1| /'
fi
for v in qemu kvmkit; do
    l2=$(sed -n "s/^L2|$v| //p" <<< "$clean")
    res=$(grep "^BOOT-RESULT name=$v " <<< "$clean" | tail -n1 || true)
    check "$v/grub-menu" "$(grep -q 'kvmkit tier B Linux' <<< "$l2"; echo $?)" "no GRUB menu entry on the serial console"
    check "$v/init-reached" "$(grep -q 'L2-INIT-REACHED' <<< "$l2"; echo $?)" "the kernel GRUB started never reached init"
    rc=$(field rc "$res") to=$(field timeout "$res")
    check "$v/poweroff" "$([[ -n "$res" && "$to" == 0 && "$rc" == 0 ]] && grep -q L2-DONE <<< "$l2"; echo $?)" \
        "poweroff -f did not end the VMM with status 0 (rc=${rc:-none} timeout=${to:-none})"
    [[ -n "$res" ]] && echo "TIME $v: VMM start to exit $(field wall "$res") s, to L2-INIT-REACHED $(field init_wall "$res") s"
    if ! grep -q 'L2-DONE' <<< "$l2"; then
        echo "  last console lines of $v:"
        tail -n 25 <<< "$l2" | sed 's/^/  L2| /'
    fi
done
fwlog=$(sed -n '/^FW-LOG-BEGIN$/,/^FW-LOG-END$/p' <<< "$clean")
check "kvmkit/seabios-log" "$(grep -q '^SeaBIOS (version' <<< "$fwlog"; echo $?)" "no SeaBIOS banner in --firmware-log"
if (( failed )); then
    echo "  the end of SeaBIOS's log under kvmkit:"
    tail -n 25 <<< "$fwlog" | sed 's/^/  fw| /'
fi
report_end "$clean"
