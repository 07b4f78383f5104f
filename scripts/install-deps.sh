#!/usr/bin/env bash
# Installs every Debian package kvmkit needs to build and to run its tests (needs root or sudo).
set -euo pipefail

packages=(
	# build
	gcc libc6-dev meson ninja-build pkg-config
	# unit tests and the ACPI table check
	libcmocka-dev acpica-tools
	# asynchronous disk I/O; compressed qcow2 clusters (zlib, zstd); qemu-img, the reference
	# for qcow2 tests
	liburing-dev zlib1g-dev libzstd-dev qemu-utils
	# user-mode networking (--net user): libslirp, whose pkg-config file needs glib's
	libslirp-dev libglib2.0-dev
	# the QMP control socket (JSON); the seccomp sandbox (--sandbox)
	libjansson-dev libseccomp-dev
	# tier A comparison and tier B nested host (QEMU TCG as L1), its images and tools
	qemu-system-x86 busybox-static cpio lz4 xz-utils zstd binutils file e2fsprogs socat python3 clang
	iproute2
	# firmware boot: Debian's SeaBIOS; GRUB hybrid images for the tier B firmware test
	seabios grub-pc-bin grub-common xorriso mtools
	# the SMBIOS unit test reads a dump of the tables with dmidecode
	dmidecode
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
