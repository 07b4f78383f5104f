#!/usr/bin/env bash
# Tier B test: the Debian cloud kernel's virtio_net driver against kvmkit's virtio-net, user-mode (libslirp) and TAP, in the nested host.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/virtio_net.sh KVMKIT_BINARY [options]
       tests/nested/virtio_net.sh --vmm qemu [options]   (QEMU -M microvm with PCIe: proves the test)
  --l2-timeout SEC   limit for the guest's run (default 300)
  --kvmkit-args STR  more kvmkit options (e.g. "--transport mmio")
  --known-bug C=WHY  report check C as XFAIL with WHY instead of failing
The guest boots with its root on a virtio-blk disk (ext4 made with mkfs.ext4 -d in L1) and two
virtio-net NICs: --net user,hostfwd=tcp::2222-:80 and --net tap,ifname=tap0 (tap0 made in L1 with
tunctl, 192.168.100.1/24). L1 serves a random file with busybox httpd on port 8080.
User mode: the guest gets its address by DHCP (udhcpc), fetches the file from 10.0.2.2:8080 and
checks its SHA-256; L1 fetches a file the guest serves (busybox httpd) through the hostfwd port.
TAP: the guest takes 192.168.100.2, pings L1 and L1 pings it; the same two transfers over the TAP
(with checksum and TSO offloads if negotiated). Prints "N passed, N failed"; exits 0 only if all pass.
USAGE
}
die() { printf 'virtio_net: error: %s\n' "$*" >&2; exit 2; }

. "$(dirname "${BASH_SOURCE[0]}")/tierb-args.sh"
command -v mke2fs >/dev/null || die "mke2fs is missing (Debian package e2fsprogs)"


payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-net.XXXXXX")
trap 'rm -rf "$payload"' EXIT
cp "$here/l1-boot.sh" "$payload/"
[[ "$vmm" == kvmkit ]] && cp -L "$kvmkit" "$payload/kvmkit"
cp -L "$(command -v mke2fs)" "$payload/"

# The guest's root file system: busybox, a DHCP client script and the test, which runs as init.
root=$payload/rootfs
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,www}
cp "$BUSYBOX" "$root/bin/busybox"
cat > "$root/etc/udhcpc.sh" <<'DHCP'
#!/bin/busybox sh
# udhcpc's hook: configure $interface with the lease (address, prefix, default route).
case "$1" in
deconfig)
    ip link set "$interface" up
    ip -4 addr flush dev "$interface" ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    echo "$ip/${mask:-24} router=${router%% *} dns=$dns" > "/tmp/lease.$interface" ;;
esac
exit 0
DHCP
chmod 755 "$root/etc/udhcpc.sh"
cat > "$root/sbin/kvmkit-test" <<'TEST'
#!/bin/busybox sh
# Runs as init on the virtio-blk root: user-mode and TAP networking checks, then powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /www
exec 0</dev/console 1>/dev/console 2>&1
# The NICs by MAC (the user-mode one first on the command line, then the TAP one).
nic() { for n in /sys/class/net/*; do [ "$(cat $n/address)" = "$1" ] && { basename $n; return; }; done; }
u=$(nic 52:54:00:12:34:56) t=$(nic 52:54:00:12:34:57)
echo "L2-NET-IFACES user=$u tap=$t"
echo "L2-NET-FEATURES user=$(cat /sys/class/net/$u/device/features 2>/dev/null) tap=$(cat /sys/class/net/$t/device/features 2>/dev/null)"
ip link set lo up
sum() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
# 1. user mode: DHCP, then a file from L1 through slirp's host address
udhcpc -i "$u" -s /etc/udhcpc.sh -q -n -t 5 -T 2 >/tmp/udhcpc.log 2>&1
echo "L2-DHCP-LEASE $(cat /tmp/lease.$u 2>/dev/null)"
echo "L2-DHCP-ADDR $(ip -4 addr show dev $u | awk '$1 == "inet" { print $2 }')"
if wget -q -O /tmp/user.blob http://10.0.2.2:8080/blob && wget -q -O /tmp/blob.sha256 http://10.0.2.2:8080/blob.sha256 &&
    [ "$(sum /tmp/user.blob)" = "$(cat /tmp/blob.sha256)" ]; then
    echo "L2-USER-FETCH ok"
else
    echo "L2-USER-FETCH bad $(sum /tmp/user.blob) $(wc -c < /tmp/user.blob 2>/dev/null)"
fi
# 2. TAP: a static address, ping L1, the same file over the TAP
ip addr add 192.168.100.2/24 dev "$t"
ip link set "$t" up
if ping -c 3 -W 10 192.168.100.1 > /tmp/ping.log 2>&1; then echo "L2-TAP-PING ok"; else echo "L2-TAP-PING fail"; sed 's/^/L2-PING| /' /tmp/ping.log; fi
if wget -q -O /tmp/tap.blob http://192.168.100.1:8080/blob && [ "$(sum /tmp/tap.blob)" = "$(cat /tmp/blob.sha256)" ]; then
    echo "L2-TAP-FETCH ok"
else
    echo "L2-TAP-FETCH bad $(sum /tmp/tap.blob) $(wc -c < /tmp/tap.blob 2>/dev/null)"
fi
# 3. a file for L1 to fetch (through hostfwd and over the TAP)
dd if=/dev/urandom of=/www/blob bs=64k count=32 2>/dev/null
echo "L2-SERVE-SHA $(sum /www/blob)"
httpd -p 80 -h /www
echo "L2-NET-READY"
# L1 says it is done by putting l1-done on its web server.
n=0
while [ $n -lt 240 ] && ! wget -q -O /dev/null http://10.0.2.2:8080/l1-done 2>/dev/null; do sleep 1; n=$((n + 1)); done
echo "L2-L1-DONE-SEEN $n"
echo "L2-DONE"
poweroff -f
sleep 5
echo "L2-POWEROFF-FAILED"
TEST
chmod 755 "$root/sbin/kvmkit-test"

cat > "$payload/run.sh" <<'RUN'
# Runs inside L1: web server, tap0, the disk; boots the guest while checking it from L1's side.
. ./l1-boot.sh
[ "$VMM" = kvmkit ] && export KVMKIT_DEBUG=1
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/blob bs=64k count=32 2>/dev/null
sha256sum /tmp/www/blob | cut -d' ' -f1 > /tmp/www/blob.sha256
echo "L1-SERVE-SHA $(cat /tmp/www/blob.sha256)"
httpd -p 8080 -h /tmp/www || echo "L1-HTTPD-FAILED"
if tunctl -t tap0 >/dev/null && ip addr add 192.168.100.1/24 dev tap0 && ip link set tap0 up; then
    echo "L1-TAP0 ok"
else
    echo "L1-TAP0 failed"
fi
img=/tmp/root.img
dd if=/dev/zero of=$img bs=1M count=0 seek=64 2>/dev/null
./mke2fs -q -F -t ext4 -d /payload/rootfs $img || echo "MKFS-FAILED"
append="console=ttyS0 kvmkit.test=virtio-root panic=-1 quiet"
if [ "$VMM" = qemu ]; then
    set -- qemu-system-x86_64 -M microvm,acpi=on,rtc=on,pcie=on -accel kvm -cpu host -m 256 -smp 2 \
        -nodefaults -no-user-config -display none -serial stdio \
        -drive file=$img,if=none,id=root,format=raw -device virtio-blk-pci,drive=root \
        -netdev user,id=n0,hostfwd=tcp::2222-:80 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile= \
        -netdev tap,id=n1,ifname=tap0,script=no,downscript=no,vhost=off \
        -device virtio-net-pci,netdev=n1,mac=52:54:00:12:34:57,romfile= \
        -kernel /payload/l2/vmlinuz -initrd /payload/l2/initramfs.cpio -append "$append"
else
    set -- /payload/kvmkit run --kernel /payload/l2/vmlinuz --initrd /payload/l2/initramfs.cpio \
        --append "$append" --memory 256M --cpus 2 --serial stdio --disk path=$img \
        --net user,hostfwd=tcp::2222-:80,mac=52:54:00:12:34:56 \
        --net tap,ifname=tap0,mac=52:54:00:12:34:57 $KVMKIT_ARGS
fi
# L1's side, once the guest says it serves: through hostfwd, then over the TAP.
(
    n=0
    while ! grep -q L2-NET-READY /tmp/boot-net.log 2>/dev/null; do
        sleep 1; n=$((n + 1))
        [ $n -lt "$L2_TIMEOUT" ] || exit 0
    done
    wget -q -O /tmp/hostfwd.blob http://127.0.0.1:2222/blob || echo "L1-HOSTFWD-WGET-FAILED"
    echo "L1-HOSTFWD-SHA $(sha256sum /tmp/hostfwd.blob 2>/dev/null | cut -d' ' -f1)"
    if ping -c 3 -W 10 192.168.100.2 > /tmp/l1-ping.log 2>&1; then echo "L1-TAP-PING ok"; else echo "L1-TAP-PING fail"; sed 's/^/L1-PING| /' /tmp/l1-ping.log; fi
    wget -q -O /tmp/tap.blob http://192.168.100.2/blob || echo "L1-TAP-WGET-FAILED"
    echo "L1-TAP-FETCH-SHA $(sha256sum /tmp/tap.blob 2>/dev/null | cut -d' ' -f1)"
    touch /tmp/www/l1-done
) &
checker=$!
echo "BOOT-CMD name=net $*"
l1_boot net "$L2_TIMEOUT" "$@"
kill $checker 2>/dev/null
wait $checker 2>/dev/null
exit 0
RUN

log=$cache/virtio_net-$variant.log
run_log=$cache/.virtio_net-$variant.$$.log
echo "virtio_net: VMM $vmm; booting the nested test host (L1 under TCG)..."
qemu_opt=()
[[ "$vmm" == qemu ]] && qemu_opt=(--with-qemu)
l1_rc=0
"$here/run-l1.sh" --payload "$payload" --archive "$L2_ARCHIVE" "${qemu_opt[@]+"${qemu_opt[@]}"}" \
    --env "VMM=$vmm" --env "L2_TIMEOUT=$l2_timeout" --env "KVMKIT_ARGS=$kvmkit_args" \
    --timeout $(( 300 + l2_timeout )) --quiet --log "$run_log" || l1_rc=$?
clean=$(tr -d '\r' < "$run_log")
mv -f "$run_log" "$log"

. "$here/report.sh"
l2=$(sed -n 's/^L2|net| //p' <<< "$clean")
res=$(grep '^BOOT-RESULT name=net ' <<< "$clean" | tail -n1 || true)
has() { grep -q "$1" <<< "$l2"; }
line() { grep -m1 "^$1" <<< "$2" || echo "no $1 line"; }
# features: the guest's negotiated bits as a string of 0/1, bit 0 first
bit() { local f=$1; [[ ${f:$2:1} == 1 ]]; }
feat=$(sed -n 's/^L2-NET-FEATURES //p' <<< "$l2" | head -n1)
ufeat=$(sed -n 's/.*user=\([01]*\).*/\1/p' <<< "$feat") tfeat=$(sed -n 's/.*tap=\([01]*\).*/\1/p' <<< "$feat")
l1_sha=$(sed -n 's/^L1-SERVE-SHA //p' <<< "$clean" | head -n1)
l2_sha=$(sed -n 's/^L2-SERVE-SHA //p' <<< "$l2" | head -n1)
check l1-host "$l1_rc" "run-l1.sh exited $l1_rc; L1 log: $log"
check l1/setup "$(grep -q '^L1-TAP0 ok' <<< "$clean" && ! grep -q -e '^L1-HTTPD-FAILED' -e '^MKFS-FAILED' <<< "$clean"; echo $?)" \
    "$(grep -m1 -e '^L1-TAP0' -e '^L1-HTTPD' -e '^MKFS' <<< "$clean" || echo 'L1 set-up did not run')"
check nics "$(has '^L2-NET-IFACES user=[a-z0-9]\+ tap=[a-z0-9]\+$'; echo $?)" "$(line L2-NET-IFACES "$l2")"
# user mode: MRG_RXBUF (15) on, no offloads (CSUM 0, GUEST_CSUM 1) toward slirp
check user/features "$( [[ -n "$ufeat" ]] && bit "$ufeat" 15 && ! bit "$ufeat" 0 && ! bit "$ufeat" 1; echo $?)" "user NIC features '${ufeat:-none}'"
check user/dhcp "$(has '^L2-DHCP-ADDR 10\.0\.2\.15/24$'; echo $?)" "$(line L2-DHCP-ADDR "$l2"); $(line L2-DHCP-LEASE "$l2")"
check user/fetch "$(has '^L2-USER-FETCH ok'; echo $?)" "$(line L2-USER-FETCH "$l2")"
hf=$(sed -n 's/^L1-HOSTFWD-SHA //p' <<< "$clean" | head -n1)
check user/hostfwd "$( [[ -n "$l2_sha" && "$hf" == "$l2_sha" ]]; echo $?)" "L1 got '${hf:-nothing}' through hostfwd, the guest served '${l2_sha:-nothing}'"
# TAP: MRG_RXBUF on; checksum and TSO offloads are negotiated with the tun's vnet header
check tap/features "$( [[ -n "$tfeat" ]] && bit "$tfeat" 15 && bit "$tfeat" 0 && bit "$tfeat" 1 && bit "$tfeat" 7 && bit "$tfeat" 11; echo $?)" \
    "tap NIC features '${tfeat:-none}' (want CSUM, GUEST_CSUM, GUEST_TSO4, HOST_TSO4, MRG_RXBUF)"
check tap/ping-l1 "$(has '^L2-TAP-PING ok'; echo $?)" "$(line L2-TAP-PING "$l2")"
check tap/ping-guest "$(grep -q '^L1-TAP-PING ok' <<< "$clean"; echo $?)" "$(line L1-TAP-PING "$clean")"
check tap/fetch "$(has '^L2-TAP-FETCH ok'; echo $?)" "$(line L2-TAP-FETCH "$l2")"
tf=$(sed -n 's/^L1-TAP-FETCH-SHA //p' <<< "$clean" | head -n1)
check tap/serve "$( [[ -n "$l2_sha" && "$tf" == "$l2_sha" ]]; echo $?)" "L1 got '${tf:-nothing}' over the TAP, the guest served '${l2_sha:-nothing}'"
rc=$(field rc "$res") to=$(field timeout "$res")
check exit "$( [[ -n "$res" && "$to" == 0 && "$rc" == 0 ]]; echo $?)" "VMM rc=${rc:-none} timeout=${to:-none}"
if [[ $failed -gt 0 ]]; then
    echo "  L1 file: ${l1_sha:-none}"
    report_tails "$l2" "$clean"
fi
echo "TIME virtio_net: VMM start to exit $(field wall "$res") s"
report_end "$clean"
