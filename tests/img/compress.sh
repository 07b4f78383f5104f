#!/bin/bash
# Cross-validates compressed qcow2 and convert's streaming qcow2 writer against qemu-img: kvmkit-img
# convert -c (zlib, zstd) and plain convert (cluster sizes 512, 64k, 2M) make images that
# `qemu-img check` finds clean and `qemu-img compare` finds equal to the source; kvmkit reads
# qemu-img's zlib and zstd images; incompressible data, empty images, -p, failures leave no
# output; create -o compression_type=zstd.
# Usage: tests/img/compress.sh [path/to/kvmkit-img]  (default: build/src/img/kvmkit-img; the
# block-layer checks use tests/qcow2/qcow2-io of the same build directory)
set -u
here=$(cd "$(dirname "$0")" && pwd)
img=${1:-$here/../../build/src/img/kvmkit-img}
. "$here/../qcow2/lib.sh"
qemu_img_tests_init "kvmkit-img compression tests" "$img"
img=$bin
qio=$(dirname "$img")/../../tests/qcow2/qcow2-io
[ -x "$qio" ] || { echo "$qio not found: build it first (ninja -C build)" >&2; exit 1; }

# A source with every kind of cluster: random (incompressible), text (compressible), a
# repeated byte, written zeroes, and a hole; its size is not a multiple of 64 KiB.
head -c 3M /dev/urandom > src.raw
yes "kvmkit compressible text, line after line" | head -c 5M >> src.raw
head -c 2M /dev/zero | tr '\0' 'x' >> src.raw
head -c 1M /dev/zero >> src.raw
truncate -s 20M src.raw
head -c 1M /dev/urandom >> src.raw
head -c 12345 /dev/urandom >> src.raw

# check clean, same guest data as the source, and a compressed cluster count wanted: "some"
# (more than 0), "none", or "" (do not look).
good() { # image compressed
	local out
	out=$(qemu-img check "$1" 2>&1) || { echo "$out"; return 1; }
	qemu-img compare -f raw -F qcow2 src.raw "$1" >/dev/null || { echo "compare: differ"; return 1; }
	case "$2" in
	some) echo "$out" | grep -q ' 0.00% compressed' && { echo "no compressed clusters"; return 1; } ;;
	none) echo "$out" | grep -q ' 0.00% compressed' || { echo "compressed clusters"; return 1; } ;;
	esac
	return 0
}
# kvmkit reads image back to raw equal to the source (qemu-img rounds sizes up to 512).
reads_back() { # image
	"$img" convert -O raw "$1" back.raw && cmp -n "$(stat -c %s src.raw)" src.raw back.raw
}
qinfo() { qemu-img info --output=json "$1" | python3 -c 'import json,sys
print(json.load(sys.stdin)["format-specific"]["data"].get("compression-type", ""))'; }
have_zstd() { # kvmkit-img built with zstd?
	"$img" create -f qcow2 -o compression_type=zstd probe.qcow2 1M >/dev/null 2>&1
}

# --- kvmkit-img convert -c ---
check "convert -c (zlib)" "$img" convert -c -O qcow2 src.raw z.qcow2
check "  check clean, equal, compressed" good z.qcow2 some
check "  compression type zlib" test "$(qinfo z.qcow2)" = zlib
check "  kvmkit reads it back" reads_back z.qcow2
if have_zstd; then
	check "convert -c -o compression_type=zstd" "$img" convert -c -O qcow2 \
		-o compression_type=zstd src.raw zs.qcow2
	check "  check clean, equal, compressed" good zs.qcow2 some
	check "  compression type zstd" test "$(qinfo zs.qcow2)" = zstd
	check "  kvmkit reads it back" reads_back zs.qcow2
	check "convert -c zstd, 512-byte clusters" bash -c "'$img' convert -c -O qcow2 \
		-o compression_type=zstd,cluster_size=512 src.raw zs512.qcow2 && qemu-img check zs512.qcow2"
	check "  equal" good zs512.qcow2 some
	check "create -o compression_type=zstd" "$img" create -f qcow2 -o compression_type=zstd c.qcow2 1G
	check "  qemu-img info: zstd, check clean" bash -c "[ \"\$(qemu-img info c.qcow2 | \
		grep 'compression type')\" = '    compression type: zstd' ] && qemu-img check c.qcow2"
else
	echo "SKIP: 8 zstd tests need kvmkit-img built with libzstd (Debian: libzstd-dev)"
	skipped=$((skipped + 8))
fi
check "convert -c 2M clusters" "$img" convert -c -O qcow2 -o cluster_size=2M src.raw z2m.qcow2
check "  check clean, equal" good z2m.qcow2 some
check "convert -c 512-byte clusters" "$img" convert -c -O qcow2 -o cluster_size=512 src.raw z512.qcow2
check "  check clean, equal" good z512.qcow2 some

# --- qemu-img's compressed images, read by kvmkit ---
check "qemu-img convert -c (zlib) read by kvmkit" bash -c "qemu-img convert -c -O qcow2 src.raw qz.qcow2 \
	&& '$img' convert -O raw qz.qcow2 back.raw && cmp -n $(stat -c %s src.raw) src.raw back.raw"
if have_zstd; then
	check "qemu-img convert -c zstd read by kvmkit" bash -c "qemu-img convert -c -O qcow2 \
		-o compression_type=zstd src.raw qs.qcow2 && '$img' convert -O raw qs.qcow2 back.raw \
		&& cmp -n $(stat -c %s src.raw) src.raw back.raw"
	check "  the same through qcow2-io dump (the block layer)" bash -c "'$qio' dump qs.qcow2 \
		qcow2 dump.raw && cmp -n $(stat -c %s src.raw) src.raw dump.raw"
	check "qemu-img zstd, 4k clusters, read by kvmkit" bash -c "qemu-img convert -c -O qcow2 \
		-o compression_type=zstd,cluster_size=4k src.raw qs4.qcow2 \
		&& '$img' convert -O qcow2 qs4.qcow2 re.qcow2 && qemu-img compare qs4.qcow2 re.qcow2"
else
	echo "SKIP: 3 zstd tests need kvmkit-img built with libzstd (Debian: libzstd-dev)"
	skipped=$((skipped + 3))
fi

# --- plain convert to qcow2 (the streaming writer) ---
for cs in 512 64k 2M; do
	check "convert -O qcow2 cluster_size=$cs" "$img" convert -O qcow2 -o cluster_size=$cs src.raw p$cs.qcow2
	check "  check clean, equal, none compressed" good p$cs.qcow2 none
done
check "convert qcow2 -> qcow2 -c (a qcow2 source)" "$img" convert -c -O qcow2 p64k.qcow2 pc.qcow2
check "  check clean, equal" good pc.qcow2 some
check "  kvmkit-img check clean too" "$img" check pc.qcow2
check "convert sparse: zero clusters unallocated" bash -c "qemu-img map --output=json p64k.qcow2 | \
	python3 -c 'import json,sys; m=json.load(sys.stdin); \
	z=[e for e in m if e[\"start\"]<=11*2**20 and e[\"start\"]+e[\"length\"]>=19*2**20]; \
	sys.exit(0 if z and not z[0][\"data\"] else 1)'"
check "converted image is writable by qemu-io" bash -c "cp z.qcow2 w.qcow2 && qemu-io -f qcow2 \
	-c 'write -P 7 100k 200k' -c 'write -P 8 20M 64k' w.qcow2 >/dev/null && qemu-img check w.qcow2"
check "converted image is writable by kvmkit" bash -c "cp z.qcow2 w2.qcow2 && cp src.raw ref.raw \
	&& '$qio' write w2.qcow2 qcow2 ref.raw 7 40 && qemu-img check w2.qcow2 \
	&& qemu-img compare -f raw -F qcow2 ref.raw w2.qcow2"

# Compressed and uncompressed clusters in turn (4 KiB clusters, odd counts of each): the
# compressed ones are packed around the others, some spanning two host clusters.
python3 - <<'PY'
import os
text = b"".join(b"line %d of alternating text\n" % i for i in range(400))
with open("alt.raw", "wb") as f:
    for i in range(600):
        f.write(os.urandom(4096) if i % 3 == 0 else text[i % 97:][:4096])
PY
check "alternating clusters: convert -c" bash -c "'$img' convert -c -O qcow2 -o cluster_size=4k alt.raw alt.qcow2 \
	&& qemu-img check alt.qcow2 && qemu-img compare -f raw alt.raw alt.qcow2"
check "  no larger than qemu-img's" bash -c "qemu-img convert -c -O qcow2 -o cluster_size=4k alt.raw qalt.qcow2 \
	&& [ \$(stat -c %s alt.qcow2) -le \$(stat -c %s qalt.qcow2) ]"

# --- incompressible and empty ---
head -c 4M /dev/urandom > rnd.raw
check "incompressible data: stored uncompressed" bash -c "'$img' convert -c -O qcow2 rnd.raw rnd.qcow2 \
	&& qemu-img check rnd.qcow2 | grep -q ' 0.00% compressed' && qemu-img compare -f raw rnd.raw rnd.qcow2"
truncate -s 1G empty.raw
check "empty image: convert -c" "$img" convert -c -O qcow2 empty.raw e.qcow2
check "  check clean, equal, nothing allocated" bash -c "qemu-img check e.qcow2 && qemu-img compare -f raw \
	empty.raw e.qcow2 && [ \$(stat -c %s e.qcow2) -lt 1048576 ] \
	&& ! qemu-img map --output=json e.qcow2 | grep -q '\"data\": true'"
check "empty image: convert -O raw keeps it a hole" bash -c "'$img' convert -O raw e.qcow2 e.raw \
	&& [ \$(stat -c %s e.raw) = 1073741824 ] && [ \$(stat -c %b e.raw) = 0 ]"

# --- -p, errors ---
check "-p prints progress to 100%" bash -c "'$img' convert -p -c -O qcow2 src.raw pp.qcow2 | tr '\r' '\n' \
	| grep -q '(100.00/100%)' && qemu-img compare -f raw src.raw pp.qcow2"
no_output() { # dst command...: fails with an error message and leaves neither dst nor a temp file
	local dst=$1 err rc=0
	shift
	err=$("$@" 2>&1 >/dev/null) && rc=0 || rc=$?
	[ "$rc" -ne 0 ] || { echo "succeeded"; return 1; }
	[ -n "$err" ] || { echo "no error message"; return 1; }
	[ ! -e "$dst" ] || { echo "$dst left behind"; return 1; }
	! ls "$dst".kvmkit-img-* >/dev/null 2>&1 || { echo "temporary file left behind"; return 1; }
}
chmod 000 src.raw
if ! cat src.raw >/dev/null 2>&1; then
	check "unreadable source: no output" no_output nr.qcow2 "$img" convert -c -O qcow2 src.raw nr.qcow2
fi
chmod 644 src.raw
check "missing source: no output" no_output ms.qcow2 "$img" convert -c -O qcow2 nonexist.raw ms.qcow2
check "bad output directory: no output" no_output nodir/o.qcow2 "$img" convert -O qcow2 src.raw nodir/o.qcow2
# A read error half-way (a compressed cluster whose data is garbled): no partial output.
cp z.qcow2 bad.qcow2
python3 - bad.qcow2 <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(112)
f.seek(struct.unpack(">Q", h[40:48])[0])
l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 8 * 60)  # guest cluster 60: text, compressed
e = struct.unpack(">Q", f.read(8))[0]
assert e >> 62 == 1, "cluster 60 is not compressed"
f.seek(e & ((1 << (62 - 8)) - 1))
f.write(b"\xff" * 64)
PY
check "corrupt compressed source: no output" no_output co.qcow2 "$img" convert -O qcow2 bad.qcow2 co.qcow2
check "-c with raw output refused" no_output cr.raw "$img" convert -c -O raw src.raw cr.raw
check "unknown compression type refused" no_output ct.qcow2 "$img" convert -c -O qcow2 \
	-o compression_type=lz4 src.raw ct.qcow2

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
