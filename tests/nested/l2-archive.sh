#!/usr/bin/env bash
# Print the path of a cached cpio holding the L2 guest (kernels + initramfs) under /payload/l2/ in L1.
set -euo pipefail

# Usage: tests/nested/l2-archive.sh [CACHE_DIR]
# The archive (uncompressed newc, appended to L1's initramfs by run-l1.sh --archive) contains
#   /payload/l2/vmlinuz         Debian cloud bzImage
#   /payload/l2/vmlinux         the same kernel as an uncompressed ELF with the PVH note
#   /payload/l2/initramfs.cpio  tests/nested/l2-initramfs.sh's busybox initramfs
# and is rebuilt only when the kernel version, busybox or l2-initramfs.sh change.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${1:-${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}}
fenv=$("$here/fetch.sh" "$cache") || exit 1
eval "$fenv"

key=$( { sha256sum "$here/l2-initramfs.sh" "$BUSYBOX" | cut -d' ' -f1; echo "$NESTED_KEY"; } | sha256sum | cut -c1-16)
out=$NESTED_DIR/l2-$key.cpio
if [[ ! -f "$out" ]]; then
    echo "l2-archive: building $out" >&2
    st=$(mktemp -d)
    trap 'rm -rf "$st"' EXIT
    mkdir -p "$st/payload/l2"
    cp "$L2_VMLINUZ" "$st/payload/l2/vmlinuz"
    cp "$L2_VMLINUX_PVH" "$st/payload/l2/vmlinux"
    "$here/l2-initramfs.sh" "$st/payload/l2/initramfs.cpio" "$BUSYBOX" "$L2_MODULES_DIR" >/dev/null
    cp "$st/payload/l2/initramfs.cpio" "$NESTED_DIR/l2-initramfs-$key.cpio"
    ( cd "$st" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) > "$out.tmp.$$"
    mv "$out.tmp.$$" "$out"
    # Older builds of the L2 archive (another l2-initramfs.sh) only take space.
    find "$NESTED_DIR" -maxdepth 1 \( -name 'l2-*.cpio' -o -name 'l2-initramfs-*.cpio' \) \
        ! -name "l2-$key.cpio" ! -name "l2-initramfs-$key.cpio" -delete
fi
echo "L2_ARCHIVE='$out'"
echo "L2_INITRAMFS='$NESTED_DIR/l2-initramfs-$key.cpio'"
