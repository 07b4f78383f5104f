#!/usr/bin/env bash
# Firmware boot: Debian's SeaBIOS boots a boot sector from the first disk (virtio-blk), under kvmkit and, as the reference, QEMU; SMBIOS's UUID reaches it.
#
# usage: firmware.sh kvmkit|qemu VMM_BINARY MBR_BIN
#   MBR_BIN: the build's tests/guests/mbr.bin (prints a line on COM1, exits through port 0xf4).
#   Checks: the VMM exits 33 (the boot sector's PASS), the boot sector's line is on the serial
#   console, and SeaBIOS's own log (port 0x402) shows its banner, the disk it booted and the
#   --uuid given (SeaBIOS reads it from SMBIOS type 1: the byte order read back right).
#   Exit status: 0 passed, 1 failed, 2 usage error, 77 skipped (no /dev/kvm or no SeaBIOS).
set -u
if [[ $# -ne 3 || ( $1 != kvmkit && $1 != qemu ) ]]; then
    echo "usage: $0 kvmkit|qemu VMM_BINARY MBR_BIN" >&2
    exit 2
fi
vmm=$1 bin=$2 mbr=$3
bios=/usr/share/seabios/bios.bin
uuid=12345678-9abc-def0-0123-456789abcdef
timeout_s=${TIER_A_TIMEOUT:-60}
if [[ ! -r $bios ]]; then
    echo "SKIP: $bios is missing (Debian's seabios package)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi
if [[ $vmm == kvmkit && ! -w /dev/kvm ]]; then
    echo "SKIP: /dev/kvm is missing or not writable"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tier_a_fw.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$mbr" "$tmp/disk.img"
truncate -s 1M "$tmp/disk.img"
if [[ $vmm == kvmkit ]]; then
    # order=dc: the (absent) CD-ROM first, so the disk is booted as the fallback QEMU's -boot
    # order gives SeaBIOS.
    cmd=("$bin" run --memory 128M --cpus 2 --uuid "$uuid" --serial stdio --boot order=dc
         --firmware-log "$tmp/fw.log" "$tmp/disk.img")
else
    cmd=("$bin" -accel "${TIER_A_QEMU_ACCEL:-tcg}" -M pc -m 128 -smp 2 -uuid "$uuid" -bios "$bios"
         -boot order=dc -nodefaults
         -display none -serial stdio -monitor none -no-reboot
         -chardev "file,id=fwlog,path=$tmp/fw.log" -device isa-debugcon,iobase=0x402,chardev=fwlog
         -device "isa-debug-exit,iobase=0xf4,iosize=4"
         -drive "file=$tmp/disk.img,format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0)
fi
timeout -k 5 "$timeout_s" "${cmd[@]}" </dev/null >"$tmp/out" 2>"$tmp/err"
rc=$?
why=()
[[ $rc -eq 33 ]] || why+=("exit status $rc, want 33")
grep -q "MBR: booted by the BIOS" "$tmp/out" || why+=("no boot-sector line on the serial console")
grep -q "^SeaBIOS (version" "$tmp/fw.log" 2>/dev/null || why+=("no SeaBIOS banner in the firmware log")
grep -q "^Booting from Hard Disk" "$tmp/fw.log" 2>/dev/null || why+=("SeaBIOS did not boot the hard disk")
grep -q "^Machine UUID $uuid" "$tmp/fw.log" 2>/dev/null || why+=("SeaBIOS did not print Machine UUID $uuid")
if [[ ${#why[@]} -eq 0 ]]; then
    echo "PASS firmware ($vmm: SeaBIOS booted the disk's boot sector and read the UUID from SMBIOS)"
    echo "1 passed, 0 failed"
    exit 0
fi
printf -v joined '%s; ' "${why[@]}"
echo "FAIL firmware (${joined%; })"
sed 's/^/    | /' "$tmp/out"
[[ -s $tmp/err ]] && sed 's/^/    stderr| /' "$tmp/err" | tail -n 20
[[ -s $tmp/fw.log ]] && tail -n 25 "$tmp/fw.log" | sed 's/^/    fw| /'
echo "0 passed, 1 failed"
exit 1
