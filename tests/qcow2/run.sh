#!/bin/bash
# Cross-validates kvmkit's qcow2 driver against qemu-img, the reference implementation: images
# qemu-img makes read correctly through kvmkit (cluster sizes 512..2M, backing files, compressed,
# v2, internal snapshots), and images kvmkit writes (refcounts of every width) pass
# `qemu-img check` and compare equal to a raw reference.
# Usage: tests/qcow2/run.sh [path/to/qcow2-io]  (default: build/tests/qcow2/qcow2-io)
set -u
here=$(cd "$(dirname "$0")" && pwd)
io=${1:-$here/../../build/tests/qcow2/qcow2-io}
. "$here/lib.sh"
qemu_img_tests_init "qcow2 cross-validation" "$io"
io=$bin

# A reference with data, holes and zeroes: 5 MiB of random-ish content with gaps.
head -c $((5 << 20)) /dev/urandom > base.raw
dd if=/dev/zero of=base.raw bs=64K seek=10 count=20 conv=notrunc status=none
truncate -s $((6 << 20)) base.raw

reads_like() { # image, reference raw
	"$io" dump "$1" qcow2 dump.raw && cmp "$2" dump.raw
}

# qemu-img writes, kvmkit reads.
for cs in 512 4096 65536 2097152; do
	check "read: qemu-img image, cluster size $cs" \
		bash -c "qemu-img convert -f raw -O qcow2 -o cluster_size=$cs base.raw r$cs.qcow2 &&
			 $(printf %q "$io") dump r$cs.qcow2 qcow2 dump.raw && cmp base.raw dump.raw"
done
check "read: v2 image (compat=0.10)" bash -c \
	"qemu-img convert -f raw -O qcow2 -o compat=0.10 base.raw v2.qcow2 &&
	 $(printf %q "$io") dump v2.qcow2 qcow2 dump.raw && cmp base.raw dump.raw"
check "read: compressed image (convert -c)" bash -c \
	"qemu-img convert -c -f raw -O qcow2 base.raw comp.qcow2 &&
	 $(printf %q "$io") dump comp.qcow2 qcow2 dump.raw && cmp base.raw dump.raw"
check "read: overlay on a raw backing file" bash -c \
	"qemu-img create -q -f qcow2 -b base.raw -F raw ov.qcow2 &&
	 $(printf %q "$io") dump ov.qcow2 qcow2 dump.raw && cmp base.raw dump.raw"
check "read: overlay on a qcow2 backing file" bash -c \
	"qemu-img create -q -f qcow2 -b r65536.qcow2 -F qcow2 ov2.qcow2 &&
	 qemu-img convert -O raw ov2.qcow2 want.raw &&
	 $(printf %q "$io") dump ov2.qcow2 qcow2 dump.raw && cmp want.raw dump.raw"

# kvmkit writes, qemu-img checks and compares.
writes() { # name, image, reference raw, seed
	check "write: $1" bash -c "$(printf %q "$io") write $2 qcow2 $3 $4 80 &&
		qemu-img check -q $2 && qemu-img compare -q $2 $3"
}
for cs in 512 4096 65536 2097152; do
	qemu-img create -q -f qcow2 -o cluster_size=$cs q$cs.qcow2 6M
	truncate -s 0 ref$cs.raw && truncate -s 6M ref$cs.raw
	writes "qemu-img-made image, cluster size $cs" q$cs.qcow2 ref$cs.raw $cs
done
for rb in 1 2 4 8 64; do
	qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=$rb rb$rb.qcow2 6M
	truncate -s 0 refrb$rb.raw && truncate -s 6M refrb$rb.raw
	writes "refcount_bits=$rb" rb$rb.qcow2 refrb$rb.raw $((rb + 40))
done
qemu-img create -q -f qcow2 -o cluster_size=512 grow.qcow2 64M
truncate -s 64M refg.raw
check "write: refcount table growth (512-byte clusters, 30 MiB written)" bash -c \
	"$(printf %q "$io") write grow.qcow2 qcow2 refg.raw 11 250 &&
	 qemu-img check -q grow.qcow2 && qemu-img compare -q grow.qcow2 refg.raw"
qemu-img create -q -f qcow2 -b base.raw -F raw ovn.qcow2 && cp base.raw refn.raw
check "write: cache=none overlay" bash -c "export QCOW2_IO_CACHE=none &&
	 $(printf %q "$io") write ovn.qcow2 qcow2 refn.raw 12 40 &&
	 $(printf %q "$io") dump ovn.qcow2 qcow2 dump.raw && cmp refn.raw dump.raw &&
	 qemu-img check -q ovn.qcow2 && qemu-img compare -q ovn.qcow2 refn.raw"
cp comp.qcow2 compw.qcow2 && cp base.raw refc.raw
writes "over compressed clusters" compw.qcow2 refc.raw 3
cp v2.qcow2 v2w.qcow2 && cp base.raw refv2.raw
writes "v2 image" v2w.qcow2 refv2.raw 4
qemu-img create -q -f qcow2 -b base.raw -F raw ovw.qcow2 && cp base.raw refo.raw
writes "overlay on a raw backing file" ovw.qcow2 refo.raw 5
for cs in 512 65536 2097152; do
	check "create: kvmkit image, cluster size $cs, passes qemu-img check" bash -c \
		"$(printf %q "$io") create k$cs.qcow2 qcow2 $((6 << 20)) $cs &&
		 qemu-img check -q k$cs.qcow2 && qemu-img info k$cs.qcow2 | grep -q 'virtual size: 6 MiB'"
	truncate -s 0 kref$cs.raw && truncate -s 6M kref$cs.raw
	writes "kvmkit-made image, cluster size $cs" k$cs.qcow2 kref$cs.raw $((cs + 1))
done
check "create: kvmkit overlay, qemu-img reads it" bash -c \
	"$(printf %q "$io") create kov.qcow2 qcow2 0 65536 base.raw &&
	 qemu-img check -q kov.qcow2 && qemu-img compare -q kov.qcow2 base.raw &&
	 cp base.raw refk.raw && $(printf %q "$io") write kov.qcow2 qcow2 refk.raw 9 60 &&
	 qemu-img check -q kov.qcow2 && qemu-img compare -q kov.qcow2 refk.raw"

# Internal snapshots (made by qemu-img): writes copy shared L2 tables and data clusters, so
# the snapshot keeps its contents and the refcounts stay exact.
qemu-img convert -q -f raw -O qcow2 base.raw snap.qcow2 && qemu-img snapshot -c s1 snap.qcow2
cp base.raw refs.raw
writes "image with an internal snapshot" snap.qcow2 refs.raw 6
check "  the snapshot still holds the old contents" bash -c \
	"qemu-img snapshot -a s1 snap.qcow2 && qemu-img check -q snap.qcow2 &&
	 qemu-img compare -q snap.qcow2 base.raw"
check "  a second round after applying it" bash -c \
	"cp base.raw refs2.raw && $(printf %q "$io") write snap.qcow2 qcow2 refs2.raw 7 40 &&
	 qemu-img check -q snap.qcow2 && qemu-img compare -q snap.qcow2 refs2.raw &&
	 qemu-img snapshot -d s1 snap.qcow2 && qemu-img check -q snap.qcow2 &&
	 qemu-img compare -q snap.qcow2 refs2.raw"

# Corrupt metadata found while writing: the write fails and the image gets the corrupt bit,
# as QEMU does; it then opens read-only only.
qemu-img convert -q -f raw -O qcow2 base.raw bad.qcow2
python3 - bad.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(40); l1 = struct.unpack(">Q", f.read(8))[0]
    f.seek(l1); e = struct.unpack(">Q", f.read(8))[0]
    f.seek(l1); f.write(struct.pack(">Q", e | 0x200))  # L2 table offset no longer aligned
PY
truncate -s 6M refbad.raw
check "corrupt L2 offset: the write fails, the image is marked corrupt" bash -c \
	"! $(printf %q "$io") write bad.qcow2 qcow2 refbad.raw 8 5 2>err.txt &&
	 grep -q 'is corrupt: L2 table offset' err.txt &&
	 qemu-img info --output=json bad.qcow2 | grep -q '\"corrupt\": true' &&
	 ! $(printf %q "$io") write bad.qcow2 qcow2 refbad.raw 8 1 2>/dev/null"

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
