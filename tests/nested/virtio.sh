#!/usr/bin/env bash
# Tier B test: the Debian cloud kernel's own virtio drivers against kvmkit's virtio-pci devices, in the nested host.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/virtio.sh KVMKIT_BINARY [options]
       tests/nested/virtio.sh --vmm qemu [options]   (QEMU -M microvm with PCIe: proves the test)
  --l2-timeout SEC   limit for the guest's two boots together (default 300)
  --kvmkit-args STR  more kvmkit options (e.g. "--transport mmio")
  --root-format qcow2  put the root on a qcow2 overlay (made by kvmkit-img in L1) over the raw
                     base; afterwards qemu-img check must be clean and kvmkit-img commit folds the
                     overlay into the base, which e2fsck then checks
  --known-bug C=WHY  report check C as XFAIL with WHY instead of failing
The guest boots with its root file system on a virtio-blk disk (ext4 made with mkfs.ext4 -d in
L1), a virtio-rng device and a virtio-console port named org.kvmkit.test.0 on the unix socket
/tmp/vcon.sock in L1 (kvmkit: --vconsole /tmp/vcon.sock,name=org.kvmkit.test.0; QEMU:
virtio-serial-pci + virtserialport on a server socket chardev). First boot: writes 64 MiB of
random data and its SHA-256 to the root, syncs, remounts read-only and reboots (kvmkit restarts
the guest in the same process). Second boot: reads the data back and checks the sum, reads
/dev/hwrng, finds the port by its name in sysfs, writes a line to it and reads one back (a socat
client in L1 answers), powers off. Then L1 runs e2fsck -fn on the image. Checks: root on
/dev/vda, disk serial, write, reboot, read-back, a second read-only disk (/dev/vdb: read-only
to the kernel, its data reads back, a write fails), hwrng, VMM exit status 0, fsck clean, console
port guest-to-host and host-to-guest. Needs socat on this host (copied into L1).
Prints "N passed, N failed"; exits 0 only if all pass.
USAGE
}
die() { printf 'virtio: error: %s\n' "$*" >&2; exit 2; }

. "$(dirname "${BASH_SOURCE[0]}")/tierb-args.sh"
for t in mke2fs e2fsck; do
    command -v "$t" >/dev/null || die "$t is missing (Debian package e2fsprogs)"
done
command -v socat >/dev/null || die "socat is missing (Debian package socat)"

payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-virtio.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$here/l1-boot.sh" "$payload/"
[[ "$vmm" == kvmkit ]] && cp -L "$kvmkit" "$payload/kvmkit"
cp -L "$(command -v mke2fs)" "$(command -v e2fsck)" "$(command -v socat)" "$payload/"
if [[ "$root_format" == qcow2 ]]; then
    command -v qemu-img >/dev/null || die "qemu-img is missing (Debian package qemu-utils)"
    cp -L "$(command -v qemu-img)" "$payload/"
    kvmkit_img=$(dirname "$kvmkit")/src/img/kvmkit-img
    [[ -x "$kvmkit_img" ]] || die "kvmkit-img is missing next to $kvmkit (build it: ninja -C build)"
    cp -L "$kvmkit_img" "$payload/"
fi

# The guest's root file system: busybox and the test, which runs as its init.
root=$payload/rootfs
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,mnt}
cp "$BUSYBOX" "$root/bin/busybox"
cat > "$root/sbin/kvmkit-test" <<'TEST'
#!/bin/busybox sh
# Runs as init on the virtio-blk root: boot 1 writes and reboots, boot 2 reads back and powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
# The virtio-console port: found by its name (no udev for /dev/virtio-ports/NAME), one line
# written (the write waits until the host end is open: a client is connected) and one read.
vcon() {
    dev= n=0
    while [ -z "$dev" ] && [ $n -lt 100 ]; do
        for f in /sys/class/virtio-ports/*/name; do
            [ "$(cat "$f" 2>/dev/null)" = org.kvmkit.test.0 ] && { dev=${f%/name}; dev=${dev##*/}; }
        done
        [ -n "$dev" ] || { sleep 0.1; n=$((n + 1)); }
    done
    echo "L2-VCON-PORT ${dev:-none}"
    [ -n "$dev" ] || return
    timeout 60 sh -c 'exec 3<>"/dev/$1" && echo vcon-guest-hello >&3 && read -r l <&3 &&
        echo "L2-VCON-READ $l"' sh "$dev"
    echo "L2-VCON-RC $?"
}
echo "L2-ROOT $(awk '$2 == "/" { print $1, $3 }' /proc/mounts)"
echo "L2-BLK-SERIAL $(cat /sys/block/vda/serial 2>/dev/null)"
mount -o remount,rw /
if [ -f /data.sha256 ]; then
    sum=$(sha256sum /data | cut -d' ' -f1)
    if [ "$sum" = "$(cat /data.sha256)" ]; then echo "L2-BLK-READBACK ok"; else echo "L2-BLK-READBACK bad $sum"; fi
    echo "L2-HWRNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
    echo "L2-HWRNG-BYTES $(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c)"
    # The second disk is read-only: the kernel knows it, its data reads back, writes fail.
    ro=$(cat /sys/block/vdb/ro 2>/dev/null)
    text=$(dd if=/dev/vdb bs=512 count=1 2>/dev/null | head -c 18)
    if dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null; then w=accepted; else w=refused; fi
    echo "L2-RO-DISK ro=$ro serial=$(cat /sys/block/vdb/serial 2>/dev/null) text=$text write=$w"
    vcon
    mount -o remount,ro /
    echo "L2-DONE"
    poweroff -f
else
    dd if=/dev/urandom of=/data bs=1M count=64 2>/dev/null
    sha256sum /data | cut -d' ' -f1 > /data.sha256
    sync
    echo "L2-BLK-WROTE $(cat /data.sha256)"
    mount -o remount,ro /
    echo "L2-REBOOTING"
    reboot -f
fi
sleep 5
echo "L2-POWEROFF-FAILED"
TEST
chmod 755 "$root/sbin/kvmkit-test"

cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: make the disk, boot the guest twice (reboot inside one VMM run), fsck.
. ./l1-boot.sh
[ "$VMM" = kvmkit ] && export KVMKIT_DEBUG=1
img=/tmp/root.img
dd if=/dev/zero of=$img bs=1M count=0 seek=160 2>/dev/null
./mke2fs -q -F -t ext4 -d /payload/rootfs $img || echo "MKFS-FAILED"
disk=$img fmt=raw
if [ "$ROOT_FORMAT" = qcow2 ]; then
    disk=/tmp/root.qcow2 fmt=qcow2
    ./kvmkit-img create -q -f qcow2 -b $img -F raw $disk || echo "QCOW2-CREATE-FAILED"
fi
ro=/tmp/ro.img
printf 'kvmkit-readonly-ok' > $ro
dd if=/dev/zero of=$ro bs=1 count=0 seek=1048576 2>/dev/null
append="console=ttyS0 kvmkit.test=virtio-root panic=-1 quiet"
if [ "$VMM" = qemu ]; then
    set -- qemu-system-x86_64 -M microvm,acpi=on,rtc=on,pcie=on -accel kvm -cpu host -m 256 -smp 2 \
        -nodefaults -no-user-config -display none -serial stdio \
        -drive file=$disk,if=none,id=root,format=$fmt -device virtio-blk-pci,drive=root,serial=kvmkit-root \
        -drive file=$ro,if=none,id=ro,format=raw,readonly=on \
        -device virtio-blk-pci,drive=ro,serial=kvmkit-ro \
        -device virtio-rng-pci \
        -chardev socket,id=vcon,path=/tmp/vcon.sock,server=on,wait=off \
        -device virtio-serial-pci -device virtserialport,chardev=vcon,name=org.kvmkit.test.0 \
        -kernel /payload/l2/vmlinuz -initrd /payload/l2/initramfs.cpio -append "$append"
else
    set -- /payload/kvmkit run --kernel /payload/l2/vmlinuz --initrd /payload/l2/initramfs.cpio \
        --append "$append" --memory 256M --cpus 2 --serial stdio \
        --disk path=$disk,format=$fmt,serial=kvmkit-root --disk path=$ro,readonly=on,serial=kvmkit-ro \
        --rng --vconsole /tmp/vcon.sock,name=org.kvmkit.test.0 \
        $KVMKIT_ARGS
fi
# The console port's client: sends its line, keeps the guest's. kvmkit makes the socket anew at
# each boot (the VM is rebuilt at a reset) and the first boot leaves the port alone, so it
# reconnects until a line came back.
vcon_client() {
    n=0
    while [ ! -s /tmp/vcon.got ] && [ $n -lt "$L2_TIMEOUT" ]; do
        [ -S /tmp/vcon.sock ] && ./socat UNIX-CONNECT:/tmp/vcon.sock \
            SYSTEM:'echo vcon-host-hello; read -r l && echo "$l" > /tmp/vcon.got' 2>/dev/null
        [ -s /tmp/vcon.got ] || sleep 1
        n=$((n + 1))
    done
}
rm -f /tmp/vcon.got
vcon_client &
vcon_pid=$!
echo "BOOT-CMD name=virtio $*"
l1_boot virtio "$L2_TIMEOUT" "$@"
kill $vcon_pid 2>/dev/null
echo "VCON-HOST-GOT $(cat /tmp/vcon.got 2>/dev/null)"
if [ "$ROOT_FORMAT" = qcow2 ]; then
    ./qemu-img check $disk > /tmp/qcheck.log 2>&1
    echo "QCOW2-CHECK-RC $?"
    sed 's/^/QCHECK| /' /tmp/qcheck.log
    # The guest's view before the commit; afterwards the base alone must read the same.
    ./qemu-img convert -f qcow2 -O raw $disk /tmp/view.raw
    ./kvmkit-img commit -q $disk
    echo "QCOW2-COMMIT-RC $?"
    ./qemu-img compare -q -f raw -F raw $img /tmp/view.raw && ./qemu-img check -q $disk
    echo "QCOW2-COMPARE-RC $?"
    rm -f /tmp/view.raw
fi
./e2fsck -fn $img > /tmp/fsck.log 2>&1
echo "FSCK-RC $?"
sed 's/^/FSCK| /' /tmp/fsck.log
exit 0
RUN

log=$cache/virtio-$variant.log
run_log=$cache/.virtio-$variant.$$.log
echo "virtio: VMM $vmm; booting the nested test host (L1 under TCG)..."
qemu_opt=()
[[ "$vmm" == qemu ]] && qemu_opt=(--with-qemu)
l1_rc=0
"$here/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" "${qemu_opt[@]+"${qemu_opt[@]}"}" \
    --env "VMM=$vmm" --env "L2_TIMEOUT=$l2_timeout" --env "KVMKIT_ARGS=$kvmkit_args" --env "ROOT_FORMAT=$root_format" \
    --timeout $(( 300 + l2_timeout )) --quiet --log "$run_log" || l1_rc=$?
clean=$(tr -d '\r' < "$run_log")
mv -f "$run_log" "$log"

. "$here/report.sh"
l2=$(sed -n 's/^L2|virtio| //p' <<< "$clean")
res=$(grep '^BOOT-RESULT name=virtio ' <<< "$clean" | tail -n1 || true)
has() { grep -q "$1" <<< "$l2"; }
check l1-host "$l1_rc" "run-l1.sh exited $l1_rc; L1 log: $log"
check blk/root "$(has '^L2-ROOT /dev/vda ext4'; echo $?)" "root is not /dev/vda ext4: $(grep -m1 '^L2-ROOT' <<< "$l2" || echo 'no L2-ROOT line')"
check blk/serial "$(has '^L2-BLK-SERIAL kvmkit-root$'; echo $?)" "$(grep -m1 '^L2-BLK-SERIAL' <<< "$l2" || echo 'no serial line')"
check blk/write "$(has '^L2-BLK-WROTE [0-9a-f]\{64\}'; echo $?)" "no L2-BLK-WROTE line"
check blk/reboot "$( [[ $(grep -c '^L2-ROOT /dev/vda' <<< "$l2") -ge 2 ]]; echo $?)" "the guest did not come back after reboot -f"
check blk/readback "$(has '^L2-BLK-READBACK ok'; echo $?)" "$(grep -m1 '^L2-BLK-READBACK' <<< "$l2" || echo 'no read-back line')"
check rng/current "$(has '^L2-HWRNG-CURRENT virtio_rng'; echo $?)" "$(grep -m1 '^L2-HWRNG-CURRENT' <<< "$l2" || echo 'no hwrng line')"
check rng/read "$(has '^L2-HWRNG-BYTES 64$'; echo $?)" "$(grep -m1 '^L2-HWRNG-BYTES' <<< "$l2" || echo 'no hwrng read')"
check blk/readonly "$(has '^L2-RO-DISK ro=1 serial=kvmkit-ro text=kvmkit-readonly-ok write=refused$'; echo $?)" "$(grep -m1 '^L2-RO-DISK' <<< "$l2" || echo 'no read-only disk line')"
rc=$(field rc "$res") to=$(field timeout "$res")
check exit "$( [[ -n "$res" && "$to" == 0 && "$rc" == 0 ]]; echo $?)" "VMM rc=${rc:-none} timeout=${to:-none}"
if [[ "$root_format" == qcow2 ]]; then
    check qcow2/check "$(grep -q '^QCOW2-CHECK-RC 0$' <<< "$clean"; echo $?)" "$(grep -m1 '^QCOW2-CHECK-RC' <<< "$clean" || echo 'not run'); see QCHECK| lines in $log"
    check qcow2/commit "$(grep -q '^QCOW2-COMMIT-RC 0$' <<< "$clean"; echo $?)" "$(grep -m1 '^QCOW2-COMMIT-RC' <<< "$clean" || echo 'not run')"
    check qcow2/compare "$(grep -q '^QCOW2-COMPARE-RC 0$' <<< "$clean"; echo $?)" "the committed base differs from the guest's view, or the emptied overlay fails qemu-img check: $(grep -m1 '^QCOW2-COMPARE-RC' <<< "$clean" || echo 'not run')"
fi
check fsck "$(grep -q '^FSCK-RC 0$' <<< "$clean"; echo $?)" "$(grep -m1 '^FSCK-RC' <<< "$clean" || echo 'fsck did not run'); see FSCK| lines in $log"
vcon_why="$(grep -m1 '^L2-VCON-PORT' <<< "$l2" || echo 'no L2-VCON-PORT line'), $(grep -m1 '^L2-VCON-RC' <<< "$l2" || echo 'no L2-VCON-RC line')"
check vcon/guest-to-host "$(grep -q '^VCON-HOST-GOT vcon-guest-hello$' <<< "$clean"; echo $?)" "$(grep -m1 '^VCON-HOST-GOT' <<< "$clean" || echo 'no VCON-HOST-GOT line'); $vcon_why"
check vcon/host-to-guest "$(has '^L2-VCON-READ vcon-host-hello$'; echo $?)" "$(grep -m1 '^L2-VCON-READ' <<< "$l2" || echo 'no L2-VCON-READ line'); $vcon_why"
if [[ $failed -gt 0 ]]; then
    report_tails "$l2" "$clean"
fi
echo "TIME virtio: VMM start to exit $(field wall "$res") s (two boots, 64 MiB written and read back)"
report_end "$clean"
