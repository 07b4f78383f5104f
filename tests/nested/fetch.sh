#!/usr/bin/env bash
# Fetch (once, cached by version) the Debian kernels + busybox for the nested test host and cut a PVH vmlinux.
set -euo pipefail

# Usage: tests/nested/fetch.sh [CACHE_DIR]
# Prints shell assignments (KEY='value') on stdout, suitable for: eval "$(tests/nested/fetch.sh DIR)".
# The same lines are kept in CACHE_DIR/<version>/nested.env. Progress goes to stderr.
# Offline rerun: if apt's lists are missing or unreadable, the newest cached version is used.

log() { printf 'fetch: %s\n' "$*" >&2; }
die() { printf 'fetch: error: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${1:-${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# One fetch at a time per cache (concurrent test runs share it).
exec 9>"$cache/.fetch.lock"
flock 9

for tool in dpkg-deb readelf lz4 dd od; do
    command -v "$tool" >/dev/null || die "'$tool' is missing (Debian packages: dpkg, binutils, lz4, coreutils)"
done

# --- 1. Which kernel ABI is current? (apt-cache reads local lists only: no network) --------------
# The dependency of a meta package, e.g. linux-image-amd64 -> linux-image-6.1.0-56-amd64.
meta_dep() {
    apt-cache depends "$1" 2>/dev/null |
        sed -n "s/^ *Depends: \(linux-image-[0-9][^ ]*-$2\)\$/\1/p" | head -n1
}
resolve() {
    abi_g=$(meta_dep linux-image-amd64 amd64 || true)
    abi_c=$(meta_dep linux-image-cloud-amd64 cloud-amd64 || true)
    abi_g=${abi_g#linux-image-}; abi_g=${abi_g%-amd64}
    abi_c=${abi_c#linux-image-}; abi_c=${abi_c%-cloud-amd64}
}
resolve
# apt's lists may be missing on a fresh machine: refresh them once (root only) if nothing is cached.
if [[ -z "$abi_g" || "$abi_g" != "$abi_c" ]] && ! ls "$cache"/*/nested.env >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    log "apt-cache cannot resolve linux-image-amd64: running apt-get update"
    apt-get update -q >&2 || true
    resolve
fi

key=""
if [[ -n "$abi_g" && "$abi_g" == "$abi_c" ]]; then
    abi=$abi_g
    read -r kver kver_c bbver < <(apt-cache policy "linux-image-$abi-amd64" "linux-image-$abi-cloud-amd64" \
        busybox-static 2>/dev/null | sed -n 's/^ *Candidate: *//p' | tr '\n' ' '; echo)
    [[ -n "$kver" && "$kver" != "(none)" && "$kver" == "$kver_c" ]] ||
        die "linux-image-$abi-amd64 ($kver) and -cloud-amd64 ($kver_c) differ or are unavailable"
    [[ -n "$bbver" && "$bbver" != "(none)" ]] || die "busybox-static has no candidate version"
    key="${abi}_${kver}_bb${bbver}"
    key=${key//[^A-Za-z0-9._-]/_}
else
    log "apt-cache does not name one kernel ABI for both linux-image-amd64 and linux-image-cloud-amd64"
    log "(generic='$abi_g' cloud='$abi_c'); falling back to the newest cached version"
    last=$(ls -1td "$cache"/*/nested.env 2>/dev/null | head -n1 || true)
    [[ -n "$last" ]] || die "nothing cached in $cache and apt-cache cannot resolve the kernel (run: apt-get update)"
    cat "$last"
    exit 0
fi

dir=$cache/$key
env_file=$dir/nested.env
if [[ -f "$dir/.complete" && -f "$env_file" ]]; then
    log "cached: $dir"
    cat "$env_file"
    exit 0
fi

# --- 2. Download + extract --------------------------------------------------------------------
log "kernel ABI $abi, package version $kver, busybox-static $bbver -> $dir"
rm -rf "$dir"
mkdir -p "$dir/debs"
pkgs=("linux-image-$abi-amd64=$kver" "linux-image-$abi-cloud-amd64=$kver" "busybox-static=$bbver")
sandbox=()
[[ $(id -u) == 0 ]] && sandbox=(-o APT::Sandbox::User=root)   # root: no "_apt cannot access" warning
( cd "$dir/debs" && apt-get -q "${sandbox[@]+"${sandbox[@]}"}" download "${pkgs[@]}" ) >&2 ||
    die "apt-get download failed for: ${pkgs[*]} (is Debian's repository reachable? try: apt-get update)"

extract() { # deb-glob dest
    local deb
    deb=$(ls -1 "$dir"/debs/$1 | head -n1)
    [[ -f "$deb" ]] || die "downloaded package $1 not found"
    mkdir -p "$2"
    dpkg-deb -x "$deb" "$2"
}
extract "linux-image-$abi-amd64_*.deb" "$dir/generic"
extract "linux-image-$abi-cloud-amd64_*.deb" "$dir/cloud"
extract "busybox-static_*.deb" "$dir/busybox"

kname_g="$abi-amd64"; kname_c="$abi-cloud-amd64"
vmlinuz_g=$dir/generic/boot/vmlinuz-$kname_g
vmlinuz_c=$dir/cloud/boot/vmlinuz-$kname_c
moddir_g=$dir/generic/lib/modules/$kname_g
moddir_c=$dir/cloud/lib/modules/$kname_c
busybox=$dir/busybox/bin/busybox
for f in "$vmlinuz_g" "$vmlinuz_c" "$busybox"; do [[ -f "$f" ]] || die "missing after extraction: $f"; done

# Decompress any .ko.xz / .ko.zst (busybox insmod loads plain .ko only).
find "$dir/generic/lib/modules" "$dir/cloud/lib/modules" -name '*.ko.xz' -print0 | xargs -0r xz -d
find "$dir/generic/lib/modules" "$dir/cloud/lib/modules" -name '*.ko.zst' -print0 | xargs -0r zstd -q -d --rm

# The kvm modules L1 needs, in load order.
kvm_mods=""
for m in irqbypass kvm ccp kvm-amd; do
    p=$(find "$moddir_g" -name "$m.ko" | head -n1)
    [[ -n "$p" ]] || die "module $m.ko not found in $moddir_g"
    kvm_mods+="${kvm_mods:+ }$p"
done

# --- 3. Cut the uncompressed PVH vmlinux out of the cloud bzImage -------------------------------
# Setup header: setup_sects at 0x1f1 (0 means 4), payload_offset at 0x248, payload_length at 0x24c,
# the payload offset counts from the start of the protected-mode code at (setup_sects+1)*512.
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
u8()  { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
hdr=$(dd if="$vmlinuz_c" bs=1 skip=$((0x202)) count=4 2>/dev/null)
[[ "$hdr" == "HdrS" ]] || die "$vmlinuz_c is not a bzImage (no HdrS signature)"
setup_sects=$(u8 "$vmlinuz_c" $((0x1f1))); (( setup_sects == 0 )) && setup_sects=4
poff=$(u32 "$vmlinuz_c" $((0x248)))
plen=$(u32 "$vmlinuz_c" $((0x24c)))
start=$(( (setup_sects + 1) * 512 + poff ))
magic=$(od -An -tx1 -j "$start" -N4 "$vmlinuz_c" | tr -d ' ')
[[ "$magic" == "02214c18" ]] || die "payload of $vmlinuz_c is not LZ4 legacy (magic $magic); this script handles LZ4 only"
vmlinux_c=$dir/cloud/vmlinux-$kname_c
dd if="$vmlinuz_c" of="$dir/payload.lz4" iflag=skip_bytes,count_bytes skip="$start" count="$plen" bs=1M status=none
# The kernel appends the 4-byte uncompressed size after the LZ4 stream; lz4 stops at it (exit status ignored,
# the result is checked below).
lz4 -d -c "$dir/payload.lz4" > "$vmlinux_c" 2>"$dir/lz4.log" || true
rm -f "$dir/payload.lz4"
[[ -s "$dir/lz4.log" ]] || rm -f "$dir/lz4.log"
want=$(u32 "$vmlinuz_c" $((start + plen - 4)))
have=$(stat -c %s "$vmlinux_c")
[[ "$have" == "$want" ]] || die "vmlinux is $have bytes, the bzImage says $want (see $dir/lz4.log)"
[[ "$(od -An -tx1 -N4 "$vmlinux_c" | tr -d ' ')" == "7f454c46" ]] || die "$vmlinux_c is not an ELF file"
# XEN_ELFNOTE_PHYS32_ENTRY = 18 (0x12) in a note named "Xen".
pvh_entry=$(readelf -n "$vmlinux_c" 2>/dev/null | awk '
    $1 == "Xen" && /\(0x00000012\)|PHYS32_ENTRY/ { found = 1; next }
    found && /description data:/ { sub(/.*description data: */, ""); print; exit }
    found { exit }')
[[ -n "$pvh_entry" ]] ||
    die "$vmlinux_c has no Xen PHYS32_ENTRY (type 18) note: it cannot be booted with PVH"
log "PVH vmlinux: $vmlinux_c (PHYS32_ENTRY note: ${pvh_entry:-present})"

# --- 4. Env file ------------------------------------------------------------------------------
q() { printf "%s='%s'\n" "$1" "$2"; }
{
    q NESTED_KEY "$key"
    q NESTED_DIR "$dir"
    q KERNEL_ABI "$abi"
    q KERNEL_VERSION "$kver"
    q L1_VMLINUZ "$vmlinuz_g"
    q L1_MODULES_DIR "$moddir_g"
    q L1_KVM_MODULES "$kvm_mods"
    q L2_VMLINUZ "$vmlinuz_c"
    q L2_VMLINUX_PVH "$vmlinux_c"
    q L2_MODULES_DIR "$moddir_c"
    q BUSYBOX "$busybox"
} > "$env_file"
rm -rf "$dir/debs"
touch "$dir/.complete"
# Older versions (each ~0.5 GiB) are no longer current: drop them.
for old in "$cache"/*/nested.env; do
    old=$(dirname "$old")
    if [[ "$old" != "$dir" ]]; then log "removing the older cached version $old"; rm -rf "$old"; fi
done
cat "$env_file"
