#!/usr/bin/env bash
# Build the busybox initramfs for the L2 test guest: prints L2-* marker lines, then powers off or gives a shell.
set -euo pipefail

# Usage: tests/nested/l2-initramfs.sh OUT [BUSYBOX [MODULES_DIR]]
#   OUT ending in .gz gives a gzip-compressed cpio (newc), anything else an uncompressed one.
#   BUSYBOX defaults to $BUSYBOX, else the busybox-static that tests/nested/fetch.sh provides.
#   MODULES_DIR (default $L2_MODULES_DIR): the L2 kernel's /lib/modules/VERSION; its virtio
#   drivers go into the archive and are loaded at boot (the Debian cloud kernel builds them as
#   modules).
# The guest's behaviour after the markers follows its kernel command line:
#   kvmkit.test=poweroff (default)  poweroff -f       (needs ACPI power-off in the VMM)
#   kvmkit.test=reboot              reboot -f         (with reboot=k: i8042 reset; for VMMs without ACPI)
#   kvmkit.test=shell               interactive shell on the console, poweroff -f when it exits
#   kvmkit.test=halt                stop without powering off (for tests that watch the VMM)
#   kvmkit.test=lifecycle           print "L2-TICK n up=UPTIME rt=EPOCH" every second (so a
#                                   test sees whether the guest's clocks jump across a pause),
#                                   and power off when the ACPI power button is pressed (the
#                                   kernel's ff_pwr_btn counter rises: what acpid would do)
#   kvmkit.test=writer              mount /dev/vda (ext4) on /mnt and append "line N" to /mnt/log
#                                   5 times a second (sync every 10), print "L2-TICK n up=UPTIME
#                                   rt=EPOCH lines=N net=X" every second (X: what
#                                   http://10.0.2.2:8080/host says through eth0 with 10.0.2.15, the
#                                   user-mode network's host, or none); at the ACPI power button stop
#                                   the writer, check every line is there once and in order
#                                   ("L2-WRITER-OK N" or "L2-WRITER-BAD why"), unmount, power off
#   kvmkit.test=virtio-root         mount /dev/vda (ext4) and switch_root to it, running its
#                                   /sbin/kvmkit-test (tests/nested/virtio.sh builds that disk)
#   kvmkit.hold=SECONDS             wait that long after the markers first (lets a test sample the VMM)
# Marker lines (each alone on a line, on the console):
#   L2-INIT-REACHED uptime=<s>  L2-CPUS <n>  L2-MEMTOTAL-KB <kB>  L2-MEMUSED-KB <kB>  L2-DATE <YYYY-MM-DD>
#   L2-KERNEL <uname -r>  L2-MODE <mode>  and last L2-DONE

die() { printf 'l2-initramfs: error: %s\n' "$*" >&2; exit 1; }
[[ $# -ge 1 ]] || die "usage: $0 OUT [BUSYBOX]"
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
busybox=${2:-${BUSYBOX:-}}
modules=${3:-${L2_MODULES_DIR:-}}
if [[ -z "$busybox" || -z "$modules" ]]; then
    fenv=$("$here/fetch.sh") || exit 1
    eval "$fenv"
    busybox=${busybox:-$BUSYBOX}
    modules=${modules:-$L2_MODULES_DIR}
fi
[[ -x "$busybox" ]] || die "busybox not executable: $busybox"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    ! command -v file >/dev/null || die "$busybox is not statically linked (use busybox-static)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc}
cp "$busybox" "$stage/bin/busybox"
# /dev/console must exist in the archive or init starts without stdin/stdout (root can mknod; the init
# below also reopens the console after mounting devtmpfs, for archives built without it).
mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true
mknod -m 666 "$stage/dev/null" c 1 3 2>/dev/null || true
# The virtio drivers, in load order (each after the modules it needs).
virtio_modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_mmio
virtio_blk virtio-rng virtio_console failover net_failover virtio_net"
mkdir -p "$stage/lib/modules"
for m in $virtio_modules; do
    f=$(find "$modules/kernel" -name "$m.ko" -print -quit)
    [[ -n "$f" ]] || die "module $m.ko not found under $modules"
    cp "$f" "$stage/lib/modules/"
done
echo "$virtio_modules" | tr '\n' ' ' > "$stage/lib/modules/order"
# The ACPI button driver (a module in Debian's kernels): it enables the fixed power button.
f=$(find "$modules/kernel" -name button.ko -print -quit)
[[ -n "$f" ]] || die "module button.ko not found under $modules"
cp "$f" "$stage/lib/modules/"
echo 'root:x:0:0:root:/root:/bin/sh' > "$stage/etc/passwd"

cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
# L2 test guest init: report what the guest sees, then power off or hand the console to a shell.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=${TERM:-linux}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
# Only the modes that use devices load the virtio drivers: boot-time figures stay comparable.
load_virtio() { for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" 2>/dev/null; done; }
read -r up _ < /proc/uptime
echo "L2-INIT-REACHED uptime=$up"
echo "L2-CPUS $(nproc)"
total=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
free=$(awk '/^MemFree:/ { print $2 }' /proc/meminfo)
echo "L2-MEMTOTAL-KB $total"
echo "L2-MEMUSED-KB $((total - free))"
echo "L2-DATE $(date -u +%F)"
echo "L2-KERNEL $(uname -r)"
echo "L2-CLOCKSOURCES $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource)"
mode=poweroff hold=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    kvmkit.test=*) mode=${arg#kvmkit.test=} ;;
    kvmkit.hold=*) hold=${arg#kvmkit.hold=} ;;
    esac
done
echo "L2-MODE $mode"
[ "$hold" != 0 ] && sleep "$hold"
case "$mode" in
virtio-root)
    load_virtio
    mkdir -p /newroot
    n=0
    while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    if mount -t ext4 /dev/vda /newroot; then
        umount /proc /sys /dev 2>/dev/null
        exec switch_root /newroot /sbin/kvmkit-test
    fi
    echo "L2-VIRTIO-ROOT-FAILED"
    ls /sys/bus/pci/devices /sys/bus/virtio/devices 2>&1
    echo "L2-DONE"
    poweroff -f ;;
shell)
    load_virtio
    hostname l2
    echo "L2 guest shell (busybox). 'exit' or 'poweroff -f' ends the guest."
    export PS1='l2:\w# '
    setsid cttyhack sh -l
    echo "L2-DONE"
    poweroff -f ;;
writer)
    load_virtio
    insmod /lib/modules/button.ko
    n=0
    while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    mkdir -p /mnt
    mount -t ext4 /dev/vda /mnt || echo "L2-WRITER-BAD mount failed"
    net= n=0
    while [ ! -e /sys/class/net/eth0 ] && [ -e /sys/bus/virtio/drivers/virtio_net ] && [ $n -lt 50 ]; do
        sleep 0.1; n=$((n + 1))
    done
    if [ -e /sys/class/net/eth0 ]; then
        ip link set lo up
        ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up &&
            ip route add default via 10.0.2.2 && net=1
        echo "L2-NET eth0 ${net:-setup-failed}"
    fi
    touch /mnt/log
    (i=$(wc -l < /mnt/log)
     while [ ! -f /tmp/stop ]; do
         echo "line $i" >> /mnt/log
         i=$((i + 1))
         [ $((i % 10)) = 0 ] && sync
         sleep 0.2
     done
     sync
     touch /tmp/stopped) &
    btn=/sys/firmware/acpi/interrupts/ff_pwr_btn
    read -r b0 _ < $btn
    n=0
    while :; do
        read -r b _ < $btn
        [ "$b" != "$b0" ] && break
        read -r up _ < /proc/uptime
        nv=
        # (busybox 1.35 wget crashes with -T: timeout bounds it)
        [ -n "$net" ] && nv=$(timeout 5 wget -q -O - http://10.0.2.2:8080/host 2>/dev/null)
        echo "L2-TICK $n up=$up rt=$(date +%s) lines=$(wc -l < /mnt/log) net=${nv:-none}"
        n=$((n + 1))
        sleep 1
    done
    touch /tmp/stop
    while [ ! -f /tmp/stopped ]; do sleep 0.1; done
    bad=$(awk '$0 != "line " NR - 1 { print "line " NR ": " $0; exit }' /mnt/log)
    if [ -z "$bad" ]; then echo "L2-WRITER-OK $(wc -l < /mnt/log)"; else echo "L2-WRITER-BAD $bad"; fi
    umount /mnt
    echo "L2-DONE"
    poweroff -f ;;
lifecycle)
    insmod /lib/modules/button.ko
    btn=/sys/firmware/acpi/interrupts/ff_pwr_btn
    read -r b0 _ < $btn
    echo "L2-PWRBTN-COUNTER ${b0:-missing} sci: $(grep -i acpi /proc/interrupts | tr -s ' ')"
    n=0
    while :; do
        read -r up _ < /proc/uptime
        read -r b _ < $btn
        echo "L2-TICK $n up=$up rt=$(date +%s) btn=$b"
        if [ "$b" != "$b0" ]; then
            echo "L2-PWRBTN $b"
            echo "L2-DONE"
            poweroff -f
        fi
        n=$((n + 1))
        sleep 1
    done ;;
reboot)
    echo "L2-DONE"
    reboot -f ;;
halt)
    echo "L2-DONE"
    halt -f ;;
*)
    echo "L2-DONE"
    poweroff -f ;;
esac
sleep 5
echo "L2-POWEROFF-FAILED"
while :; do sleep 3600; done
INIT
chmod 755 "$stage/init"

tmp="$out.tmp.$$"
( cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet ) > "$tmp"
case "$out" in *.gz) gzip -9n < "$tmp" > "$tmp.gz" && mv "$tmp.gz" "$tmp" ;; esac
mv "$tmp" "$out"
echo "$out"
