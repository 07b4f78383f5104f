#!/usr/bin/env bash
# SMBIOS through fw_cfg: SeaBIOS boots a boot sector with --uuid (QEMU: -uuid) and prints the
# machine's UUID, which it reads from the type 1 structure of the tables the VMM gave it.
#
# usage: smbios.sh kvmkit|qemu VMM_BINARY MBR_BIN
#   Checks: the VMM exits 33 (the boot sector's PASS) and SeaBIOS's log (port 0x402) has
#   "Machine UUID" with the UUID given (SMBIOS's byte order read back right).
#   Exit status: 0 passed, 1 failed, 2 usage error, 77 skipped (no /dev/kvm or no SeaBIOS).
set -u
if [[ $# -ne 3 || ( $1 != kvmkit && $1 != qemu ) ]]; then
    echo "usage: $0 kvmkit|qemu VMM_BINARY MBR_BIN" >&2
    exit 2
fi
vmm=$1 bin=$2 mbr=$3
bios=/usr/share/seabios/bios.bin
uuid=12345678-9abc-def0-0123-456789abcdef
skip() { echo "SKIP: $1"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }
[[ -r $bios ]] || skip "$bios is missing (Debian's seabios package)"
[[ $vmm == qemu || -w /dev/kvm ]] || skip "/dev/kvm is missing or not writable"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tier_a_smbios.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$mbr" "$tmp/disk.img"
truncate -s 1M "$tmp/disk.img"
if [[ $vmm == kvmkit ]]; then
    cmd=("$bin" run --memory 128M --cpus 2 --uuid "$uuid" --serial none
         --firmware-log "$tmp/fw.log" "$tmp/disk.img")
else
    cmd=("$bin" -accel "${TIER_A_QEMU_ACCEL:-tcg}" -M pc -m 128 -smp 2 -uuid "$uuid"
         -bios "$bios" -nodefaults -display none -serial none -monitor none -no-reboot
         -chardev "file,id=fwlog,path=$tmp/fw.log" -device isa-debugcon,iobase=0x402,chardev=fwlog
         -device "isa-debug-exit,iobase=0xf4,iosize=4"
         -drive "file=$tmp/disk.img,format=raw,if=none,id=d0" -device virtio-blk-pci,drive=d0)
fi
timeout -k 5 "${TIER_A_TIMEOUT:-60}" "${cmd[@]}" </dev/null >"$tmp/out" 2>"$tmp/err"
rc=$?
why=()
[[ $rc -eq 33 ]] || why+=("exit status $rc, want 33")
grep -q "^Machine UUID $uuid" "$tmp/fw.log" 2>/dev/null ||
    why+=("SeaBIOS did not print Machine UUID $uuid")
if [[ ${#why[@]} -eq 0 ]]; then
    echo "PASS smbios ($vmm: SeaBIOS read the UUID from the SMBIOS tables)"
    echo "1 passed, 0 failed"
    exit 0
fi
printf -v joined '%s; ' "${why[@]}"
echo "FAIL smbios (${joined%; })"
[[ -s $tmp/err ]] && sed 's/^/    stderr| /' "$tmp/err" | tail -n 20
[[ -s $tmp/fw.log ]] && tail -n 25 "$tmp/fw.log" | sed 's/^/    fw| /'
echo "0 passed, 1 failed"
exit 1
