#!/usr/bin/env bash
# Boot the nested test host (L1: Debian kernel + kvm-amd under QEMU TCG) and run a payload script inside it.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/run-l1.sh --payload DIR [options]
  --payload DIR     files copied into L1 at /payload (dynamically linked ELF executables in it get
                    their shared libraries, found with ldd, copied to the same paths in L1)
  --script FILE     script L1's init runs with sh, cwd /payload (default: DIR/run.sh)
  --env K=V         exported to the payload script (repeatable)
  --archive CPIO    a prebuilt newc archive appended to L1's initramfs (repeatable; e.g. l2-archive.sh's)
  --with-qemu       also put the host's qemu-system-x86_64 (+ libs, /usr/share/qemu, /usr/share/seabios)
                    into L1 at its usual path
  --modules "A B"   extra modules of the generic kernel to insmod after the kvm ones, in this order
  --smp N           L1 vCPUs (default 2)       --memory MB   L1 memory (default 2048)
  --timeout SEC     overall limit (default 900; 0 = none; interactive default: none)
  --log FILE        keep L1's console log here (default: CACHE/last-l1.log)
  --quiet           do not copy L1's console to stdout (the log still has it)
  --interactive     the console is your terminal; the payload gets it as controlling tty.
                    QEMU's own escape key is moved to Ctrl-] (Ctrl-] x kills L1), so Ctrl-A reaches L1.
Exit status: the payload's (from L1's "L1-PAYLOAD-EXIT <status>" line); 124 on timeout; 125 if L1
ended without that line; 2 on usage errors.
Cache: $KVMKIT_NESTED_CACHE or build/nested-cache (see fetch.sh); L1 base and QEMU archives are kept there.
USAGE
}
log() { printf 'run-l1: %s\n' "$*" >&2; }
die() { printf 'run-l1: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}

payload="" script="" with_qemu=0 extra_mods="" smp=2 mem=2048 timeout_s="" logf="" quiet=0 interactive=0
envs=() extra_archives=()
while [[ $# -gt 0 ]]; do
    case "$1" in
    --payload) payload=$2; shift 2 ;;
    --script) script=$2; shift 2 ;;
    --env) envs+=("$2"); shift 2 ;;
    --archive) extra_archives+=("$2"); shift 2 ;;
    --with-qemu) with_qemu=1; shift ;;
    --modules) extra_mods=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --memory) mem=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --log) logf=$2; shift 2 ;;
    --quiet) quiet=1; shift ;;
    --interactive) interactive=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -n "$payload" && -d "$payload" ]] || { usage >&2; die "--payload DIR is required"; }
script=${script:-$payload/run.sh}
[[ -f "$script" ]] || die "payload script not found: $script"
if [[ -z "$timeout_s" ]]; then
    if (( interactive )); then timeout_s=0; else timeout_s=900; fi
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (Debian package qemu-system-x86)"
command -v cpio >/dev/null || die "cpio is missing (Debian package cpio)"

mkdir -p "$cache"
fenv=$("$here/fetch.sh" "$cache") || die "could not fetch the kernels (see above)"
eval "$fenv"
logf=${logf:-$cache/last-l1.log}

# --- helpers ------------------------------------------------------------------------------------
mkcpio() { # DIR OUT: uncompressed newc (L1 unpacks it fastest; TCG makes decompression costly)
    ( cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) > "$2.tmp.$$"
    mv "$2.tmp.$$" "$2"
}
is_dyn_elf() { # FILE: an ELF with a program interpreter
    [[ -f "$1" && "$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' ')" == "7f454c46" ]] &&
        readelf -lW "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}
copy_libs() { # STAGE FILE...: the shared libraries (and loader) of each file, at the same paths
    local stage=$1 f lib
    shift
    for f in "$@"; do
        is_dyn_elf "$f" || continue
        while read -r lib; do
            [[ -n "$lib" && -e "$lib" ]] || continue
            mkdir -p "$stage/$(dirname "$lib")"
            [[ -e "$stage/$lib" ]] || cp -L "$lib" "$stage/$lib"
        done < <(ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }')
    done
}

# --- 1. L1 base archive: busybox, kvm modules, init (cached by kernel version + this script) ----
mods=()
for m in $L1_KVM_MODULES; do mods+=("$m"); done
# tun is always there: tests that put a VM on a TAP need it, and one base archive for every test
# keeps runs from rebuilding (and deleting) each other's cached base.
for name in tun $extra_mods; do
    p=$(find "$L1_MODULES_DIR" \( -name "$name.ko" -o -name "${name//_/-}.ko" -o -name "${name//-/_}.ko" \) | head -n1)
    [[ -n "$p" ]] || die "module $name.ko not found in $L1_MODULES_DIR"
    mods+=("$p")
done
init_text=$(cat <<'INIT'
#!/bin/busybox sh
# L1 init: load kvm, run the payload script, report its status, power off.
/bin/busybox --install -s
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root TERM=${TERM:-linux}
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug
ip link set lo up
read -r up _ < /proc/uptime
echo "L1-INIT-REACHED uptime=$up"
mode=batch rows="" cols=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    kvmkit.l1=*) mode=${arg#kvmkit.l1=} ;;
    kvmkit.rows=*) rows=${arg#kvmkit.rows=} ;;
    kvmkit.cols=*) cols=${arg#kvmkit.cols=} ;;
    esac
done
while read -r m; do
    [ -n "$m" ] || continue
    insmod "/lib/modules/l1/$m" || echo "L1-ERROR insmod $m failed"
done < /lib/modules/l1/order
i=0
while [ ! -c /dev/kvm ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done
if [ -c /dev/kvm ]; then
    echo "L1-KVM-READY"
    rc=0
    [ -f /payload/.l1-env ] && . /payload/.l1-env
    cd /payload
    if [ "$mode" = interactive ]; then
        dmesg -n 1
        [ -n "$rows" ] && stty rows "$rows" cols "$cols" 2>/dev/null
        setsid cttyhack sh /payload/.l1-run.sh || rc=$?
    else
        sh /payload/.l1-run.sh </dev/null || rc=$?
    fi
else
    echo "L1-ERROR /dev/kvm did not appear (kvm-amd not loaded?)"
    dmesg | tail -20
    rc=99
fi
cd /
echo "L1-PAYLOAD-EXIT $rc"
sync
poweroff -f
sleep 10
INIT
)
base_key=$( { printf '%s\n' "$init_text" "${mods[@]}"; sha256sum "$BUSYBOX"; } | sha256sum | cut -c1-16)
base_cpio=$NESTED_DIR/l1-base-$base_key.cpio
if [[ ! -f "$base_cpio" ]]; then
    log "building L1 base archive $base_cpio"
    st=$(mktemp -d)
    mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc,payload,lib/modules/l1}
    cp "$BUSYBOX" "$st/bin/busybox"
    mknod -m 600 "$st/dev/console" c 5 1 2>/dev/null || true
    mknod -m 666 "$st/dev/null" c 1 3 2>/dev/null || true
    echo 'root:x:0:0:root:/root:/bin/sh' > "$st/etc/passwd"
    printf '%s\n' "$init_text" > "$st/init"
    chmod 755 "$st/init"
    : > "$st/lib/modules/l1/order"
    for m in "${mods[@]}"; do
        cp "$m" "$st/lib/modules/l1/"
        basename "$m" >> "$st/lib/modules/l1/order"
    done
    mkcpio "$st" "$base_cpio"
    rm -rf "$st"
    find "$NESTED_DIR" -maxdepth 1 -name 'l1-base-*.cpio' ! -name "l1-base-$base_key.cpio" -delete
fi

# --- 2. QEMU archive (cached by QEMU's package version) ---------------------------------------
archives=("$base_cpio")
if (( with_qemu )); then
    qemu_bin=$(command -v qemu-system-x86_64)
    qver=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || "$qemu_bin" --version | head -n1)
    qver=${qver//[^A-Za-z0-9._-]/_}
    qemu_cpio=$cache/qemu-$qver.cpio
    if [[ ! -f "$qemu_cpio" ]]; then
        log "building QEMU archive $qemu_cpio"
        st=$(mktemp -d)
        mkdir -p "$st/usr/bin" "$st/usr/share"
        cp -L "$qemu_bin" "$st/usr/bin/qemu-system-x86_64"
        copy_libs "$st" "$qemu_bin"
        cp -a /usr/share/qemu "$st/usr/share/"
        [[ -d /usr/share/seabios ]] && cp -a /usr/share/seabios "$st/usr/share/"
        mkcpio "$st" "$qemu_cpio"
        rm -rf "$st"
        find "$cache" -maxdepth 1 -name 'qemu-*.cpio' ! -name "qemu-$qver.cpio" -delete
    fi
    archives+=("$qemu_cpio")
fi

# --- 3. Payload archive (rebuilt every run) ---------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-l1.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
st=$work/payload-stage
mkdir -p "$st/payload"
cp -a "$payload/." "$st/payload/"
cp "$script" "$st/payload/.l1-run.sh"
: > "$st/payload/.l1-env"
for kv in "${envs[@]+"${envs[@]}"}"; do
    [[ "$kv" == *=* ]] || die "--env wants K=V, got: $kv"
    v=${kv#*=}
    printf "export %s='%s'\n" "${kv%%=*}" "${v//\'/\'\\\'\'}" >> "$st/payload/.l1-env"   # sh single quotes
done
mapfile -t exes < <(find "$st/payload" -type f -perm -u+x)
copy_libs "$st" "${exes[@]+"${exes[@]}"}"
mkcpio "$st" "$work/payload.cpio"
for a in "${extra_archives[@]+"${extra_archives[@]}"}"; do
    [[ -f "$a" ]] || die "archive not found: $a"
    archives+=("$a")
done
archives+=("$work/payload.cpio")
cat "${archives[@]}" > "$work/initrd.cpio"

# --- 4. Boot L1 ---------------------------------------------------------------------------------
append="console=ttyS0 panic=-1 quiet"
# -display none + -serial mon:stdio is -nographic without SeaBIOS's serial console (its escape codes
# clear the terminal and turn off line wrap).
qargs=(-accel tcg -cpu max -m "$mem" -smp "$smp" -display none -serial mon:stdio -no-reboot -nic none
       -kernel "$L1_VMLINUZ" -initrd "$work/initrd.cpio")
tmo=()
if (( timeout_s > 0 )); then
    if (( interactive )); then tmo=(timeout --foreground -k 10 "$timeout_s"); else tmo=(timeout -k 10 "$timeout_s"); fi
fi
: > "$logf"
start=$(date +%s.%N)
status=0
if (( interactive )); then
    [[ -t 0 ]] || die "--interactive needs a terminal on stdin"
    read -r rows cols < <(stty size 2>/dev/null || echo "24 80")
    append+=" kvmkit.l1=interactive kvmkit.rows=$rows kvmkit.cols=$cols"
    "${tmo[@]}" qemu-system-x86_64 "${qargs[@]}" -echr 0x1d -append "$append" | tee "$logf" || status=$?
    stty sane 2>/dev/null || true
else
    if (( quiet )); then
        "${tmo[@]}" qemu-system-x86_64 "${qargs[@]}" -append "$append" </dev/null >"$logf" 2>&1 || status=$?
    else
        "${tmo[@]}" qemu-system-x86_64 "${qargs[@]}" -append "$append" </dev/null 2>&1 | tee "$logf" || status=$?
    fi
fi
end=$(date +%s.%N)
log "L1 ran $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s (log: $logf)"
if [[ $status -eq 124 || $status -eq 137 ]]; then
    log "timeout: L1 did not finish within ${timeout_s} s"
    exit 124
fi
rc=$(tr -d '\r' < "$logf" | sed -n 's/^L1-PAYLOAD-EXIT \([0-9]*\)$/\1/p' | tail -n1)
if [[ -z "$rc" ]]; then
    log "L1 ended (qemu status $status) without reporting the payload's status; see $logf"
    exit 125
fi
exit "$rc"
