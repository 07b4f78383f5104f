#!/usr/bin/env bash
# Builds (once, cached by content) the GRUB hybrid image of the firmware tests: the tier B kernel and initramfs behind a serial-console GRUB menu.
# Usage: tests/nested/fw-image.sh [CACHE]   Prints FW_IMAGE='...' (eval it). Needs grub-pc-bin, xorriso, mtools.
set -euo pipefail
die() { printf 'fw-image: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${1:-${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}}
[[ -d /usr/lib/grub/i386-pc ]] || die "GRUB's BIOS modules (/usr/lib/grub/i386-pc, grub-pc-bin) are missing"
fenv=$("$here/fetch.sh" "$cache") || exit 1
eval "$fenv"
l2env=$("$here/l2-archive.sh" "$cache") || exit 1
eval "$l2env"

append="console=ttyS0 kvmkit.test=poweroff panic=-1 quiet"
grubcfg="serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set timeout=1
menuentry 'kvmkit tier B Linux' {
    linux /vmlinuz $append
    initrd /initramfs.cpio
}"
gver=$(dpkg-query -W -f='${Version}' grub-pc-bin 2>/dev/null || echo unknown)
key=$( { sha256sum "$L2_VMLINUZ" "$L2_INITRAMFS" | cut -d' ' -f1; echo "$grubcfg $gver"; } | sha256sum | cut -c1-16)
img=$NESTED_DIR/fw-grub-$key.img
if [[ ! -f "$img" ]]; then
    echo "fw-image: building the GRUB image $img" >&2
    st=$(mktemp -d)
    trap 'rm -rf "$st"' EXIT
    mkdir -p "$st/root/boot/grub"
    printf '%s\n' "$grubcfg" > "$st/root/boot/grub/grub.cfg"
    cp "$L2_VMLINUZ" "$st/root/vmlinuz"
    cp "$L2_INITRAMFS" "$st/root/initramfs.cpio"
    grub-mkrescue -o "$img.tmp.$$" "$st/root" >"$st/log" 2>&1 || { cat "$st/log" >&2; die "grub-mkrescue failed"; }
    mv "$img.tmp.$$" "$img"
    find "$NESTED_DIR" -maxdepth 1 -name 'fw-grub-*.img' ! -name "fw-grub-$key.img" -delete
fi
echo "FW_IMAGE='$img'"
