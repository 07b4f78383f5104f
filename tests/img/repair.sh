#!/bin/bash
# kvmkit-img's repairs and metadata rewrites, judged by qemu-img (the reference): check -r all
# on images damaged on purpose (refcounts too low and too high, COPIED flags, the dirty bit),
# resize --shrink of qcow2 images, and create -o preallocation=metadata|falloc|full. After
# each, `qemu-img check` must be clean and the data unchanged (`qemu-img compare` with a copy).
# Usage: tests/img/repair.sh [path/to/kvmkit-img]  (default: build/src/img/kvmkit-img)
set -u
here=$(cd "$(dirname "$0")" && pwd)
img=${1:-$here/../../build/src/img/kvmkit-img}
. "$here/../qcow2/lib.sh"
qemu_img_tests_init "kvmkit-img repair tests" "$img"
img=$bin
KVMKIT_IMG=$img
. "$here/golden/common.sh"

# qemu-img info's JSON value for a key.
qinfo() { qemu-img info --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }
# The image passes qemu-img check and reads like the reference image.
same_and_clean() { # image reference
	qemu-img check "$1" >/dev/null 2>&1 || { qemu-img check "$1"; return 1; }
	qemu-img compare "$2" "$1"
}
# kvmkit-img check -r all exits 0, then the image is clean and unchanged in content.
repaired() { # image reference
	"$img" check -r all "$1" || return 1
	same_and_clean "$1" "$2"
}
# Exit status of a command is exactly the one given.
status_is() { # expected command...
	local want=$1
	shift
	"$@" >/dev/null 2>&1
	local got=$?
	[ "$got" = "$want" ] || { echo "exit $got, expected $want"; return 1; }
}

# --- check -r all ---
"$img" create -f qcow2 base.qcow2 64M >/dev/null
qemu-io -c 'write -P 1 0 192k' -c 'write -P 2 8M 64k' -c 'write -P 3 40M 1M' base.qcow2 >/dev/null
damaged() { # name poke-args... : a copy of base.qcow2 with one poke applied
	cp base.qcow2 "$1.qcow2"
	local name=$1
	shift
	q2poke "$name.qcow2" "$@"
}
damaged low rc 5 0
check "refcount 0 of a used cluster: check exits 2" status_is 2 "$img" check low.qcow2
check "  -r leaks does not raise it (exit 2)" status_is 2 "$img" check -r leaks low.qcow2
check "  -r all raises it, qemu-img check clean, data same" repaired low.qcow2 base.qcow2
damaged high rc 6 7
check "refcount 7 for one reference: exit 2 (a leak, and COPIED set)" status_is 2 "$img" check high.qcow2
check "  -r all lowers it" repaired high.qcow2 base.qcow2
damaged l2c l2copied 65536
check "COPIED cleared in an L2 entry: -r all" repaired l2c.qcow2 base.qcow2
damaged l1c l1copied 41943040
check "COPIED cleared in an L1 entry: -r all" repaired l1c.qcow2 base.qcow2
cp base.qcow2 many.qcow2
for c in 4 5 6 7 8 9; do q2poke many.qcow2 rc $c 0; done
q2poke many.qcow2 rc 1 3
check "many refcounts wrong (header too), -r all" repaired many.qcow2 base.qcow2
check "  kvmkit-img check agrees: clean" "$img" check many.qcow2
cp base.qcow2 y.qcow2
q2poke y.qcow2 rc 5 0
check "-r all: 'Repairing cluster 5 refcount=0 reference=1' on stderr" bash -c \
	"'$img' check -r all y.qcow2 2>&1 >/dev/null | grep -qx 'Repairing cluster 5 refcount=0 reference=1'"
cp base.qcow2 y.qcow2
q2poke y.qcow2 rc 5 0
check "  summary: 0 leaked clusters, 1 corruptions" bash -c \
	"'$img' check -r all y.qcow2 2>/dev/null | grep -A3 '^The following inconsistencies were found and repaired:' | grep -q '    1 corruptions'"

# snapshots: shared clusters have refcount 2 and no COPIED flag
cp base.qcow2 snap.qcow2
qemu-img snapshot -c s1 snap.qcow2
cp snap.qcow2 snapref.qcow2
q2poke snap.qcow2 rc 5 1
check "shared cluster with refcount 1: -r all raises it to 2" repaired snap.qcow2 snapref.qcow2
check "  the snapshot still reads back" bash -c "qemu-img snapshot -a s1 snap.qcow2 && qemu-img compare snap.qcow2 base.qcow2"

# the dirty bit with lazy refcounts
"$img" create -f qcow2 -o lazy_refcounts=on lazy.qcow2 16M >/dev/null
qemu-io -c 'write -P 4 0 256k' lazy.qcow2 >/dev/null
cp lazy.qcow2 lazyref.qcow2
q2poke lazy.qcow2 dirty
q2poke lazy.qcow2 rc 6 0
check "dirty image, stale refcount: -r all" repaired lazy.qcow2 lazyref.qcow2
check "  dirty bit cleared" test "$(q2incompat lazy.qcow2)" = 0x0
check "  qemu-img info: dirty-flag false" test "$(qinfo lazy.qcow2 dirty-flag)" = False

# compressed clusters
qemu-img convert -c -O qcow2 base.qcow2 comp.qcow2
cp comp.qcow2 compref.qcow2
check "compressed image: -r all on a clean image is a no-op" bash -c "'$img' check -r all comp.qcow2 && cmp comp.qcow2 compref.qcow2"

# random refcounts (seeded) in images with a snapshot, and with compressed clusters
qemu-img create -f qcow2 rnd.qcow2 64M >/dev/null
qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 8M 256k' rnd.qcow2 >/dev/null
qemu-img snapshot -c s1 rnd.qcow2
qemu-io -c 'write -P 3 512k 1M' -c 'write -P 4 40M 64k' rnd.qcow2 >/dev/null
qemu-img convert -c -O qcow2 rnd.qcow2 rndc.qcow2
qemu-io -c 'write -P 5 4M 64k' rndc.qcow2 >/dev/null
scramble() { # image seed: up to 6 refcounts of the first refcount block set to random values
	python3 - "$1" "$2" <<'PY'
import os, random, struct, sys
r = random.Random(int(sys.argv[2]))
f = open(sys.argv[1], "r+b")
h = f.read(104)
f.seek(struct.unpack(">Q", h[48:56])[0])
rb = struct.unpack(">Q", f.read(8))[0]
for _ in range(r.randint(1, 6)):
    f.seek(rb + r.randrange(os.path.getsize(sys.argv[1]) // 65536) * 2)
    f.write(struct.pack(">H", r.choice([0, 1, 2, 3, 7])))
PY
}
random_repairs() { # base image: 10 seeds, each scrambled copy repaired
	for seed in 1 2 3 4 5 6 7 8 9 10; do
		cp "$1" scr.qcow2
		scramble scr.qcow2 $seed
		repaired scr.qcow2 "$1" >/dev/null 2>&1 || { echo "seed $seed"; return 1; }
	done
}
check "random refcounts, image with a snapshot: -r all (10 seeds)" random_repairs rnd.qcow2
check "random refcounts, compressed image: -r all (10 seeds)" random_repairs rndc.qcow2

# a refcount table entry lost: -r all adds a refcount block at the end of the file (512-byte
# clusters: one refcount block covers 256 clusters, so 1 MiB of data spans several)
"$img" create -f qcow2 -o cluster_size=512 rb.qcow2 4M >/dev/null
qemu-io -c 'write -P 1 0 1M' rb.qcow2 >/dev/null
zero_rt_entry() { # image index
	python3 -c 'import struct,sys
f=open(sys.argv[1],"r+b"); rt=struct.unpack(">Q",f.read(56)[48:56])[0]
f.seek(rt+8*int(sys.argv[2])); f.write(bytes(8))' "$@"
}
cp rb.qcow2 rb2.qcow2
zero_rt_entry rb2.qcow2 2
check "refcount block 2 lost: exit 2" status_is 2 "$img" check rb2.qcow2
check "  -r all adds one (not covering itself)" repaired rb2.qcow2 rb.qcow2
last=$(python3 -c 'import struct,sys
f=open(sys.argv[1],"rb"); h=f.read(104); rt=struct.unpack(">Q",h[48:56])[0]; f.seek(rt)
e=struct.unpack(">64Q",f.read(512)); print(max(i for i,x in enumerate(e) if x))' rb.qcow2)
cp rb.qcow2 rb3.qcow2
zero_rt_entry rb3.qcow2 "$last"
check "the last refcount block lost: -r all adds one covering itself" repaired rb3.qcow2 rb.qcow2
cp rb.qcow2 rb4.qcow2
zero_rt_entry rb4.qcow2 2
check "  -r leaks cannot: exit 2" status_is 2 "$img" check -r leaks rb4.qcow2

# unrepairable
damaged out l1set 0 0x8000000100000000
cp out.qcow2 outref.qcow2
check "L2 table outside the file: -r all exits 2" status_is 2 "$img" check -r all out.qcow2
check "  and changes nothing" cmp out.qcow2 outref.qcow2
check "  -r leaks too" bash -c "'$img' check -r leaks out.qcow2; [ \$? = 2 ] && cmp out.qcow2 outref.qcow2"

# --- resize --shrink ---
"$img" create -f qcow2 s.qcow2 2G >/dev/null
qemu-io -c 'write -P 1 0 1M' -c 'write -P 2 600M 64k' -c 'write -P 3 1G 1M' -c 'write -P 4 1500M 64k' \
	-c 'write -P 5 2047M 1M' s.qcow2 >/dev/null
cp s.qcow2 sref.qcow2
cp s.qcow2 sorig.qcow2
check "shrink 2G -> 700M" "$img" resize --shrink s.qcow2 700M
qemu-img resize --shrink sref.qcow2 700M >/dev/null
check "  qemu-img check clean" qemu-img check s.qcow2
check "  kvmkit-img check clean" "$img" check s.qcow2
check "  same contents as qemu-img's shrink" qemu-img compare s.qcow2 sref.qcow2
check "  virtual size" test "$(qinfo s.qcow2 virtual-size)" = 734003200
check "  file size as qemu-img's" test "$(stat -c %s s.qcow2)" -le "$(stat -c %s sref.qcow2)"
check "  the kept data reads back" bash -c "qemu-io -c 'read -P 1 0 1M' -c 'read -P 2 600M 64k' s.qcow2 | grep -c '^read' | grep -qx 2"
check "grow back to 2G: the dropped range reads as zeroes" bash -c "'$img' resize s.qcow2 2G >/dev/null &&
	qemu-io -c 'read -P 0 1G 1M' -c 'read -P 0 2047M 1M' s.qcow2 | grep -c '^read' | grep -qx 2 && qemu-img check s.qcow2"
cp sorig.qcow2 s2.qcow2
check "shrink to a size inside a cluster (700M + 512)" "$img" resize --shrink s2.qcow2 734003712
check "  clean" qemu-img check s2.qcow2
"$img" create -f qcow2 -o cluster_size=512 small.qcow2 8M >/dev/null
qemu-io -c 'write -P 1 0 3M' -c 'write -P 2 6M 1M' small.qcow2 >/dev/null
cp small.qcow2 smallref.qcow2
check "shrink with 512-byte clusters 8M -> 5M" "$img" resize --shrink small.qcow2 5M
qemu-img resize --shrink smallref.qcow2 5M >/dev/null
check "  clean and the same as qemu-img's" same_and_clean small.qcow2 smallref.qcow2
check "  file cut like qemu-img's" test "$(stat -c %s small.qcow2)" = "$(stat -c %s smallref.qcow2)"
qemu-img convert -c -O qcow2 sorig.qcow2 sc.qcow2
cp sc.qcow2 scref.qcow2
check "shrink a compressed image 2G -> 1G" "$img" resize --shrink sc.qcow2 1G
qemu-img resize --shrink scref.qcow2 1G >/dev/null
check "  clean and the same as qemu-img's" same_and_clean sc.qcow2 scref.qcow2
cp sorig.qcow2 ss.qcow2
qemu-img snapshot -c s1 ss.qcow2
cp ss.qcow2 ssref.qcow2
check "shrink with a snapshot refused (exit 1, unchanged)" bash -c "'$img' resize --shrink ss.qcow2 1G; [ \$? = 1 ] && cmp ss.qcow2 ssref.qcow2"
check "shrink needs --shrink" status_is 1 "$img" resize sorig.qcow2 1G
check "grow still works after shrink tests" bash -c "'$img' resize sorig.qcow2 +1G >/dev/null && qemu-img check sorig.qcow2"

# --- create -o preallocation ---
for mode in metadata falloc full; do
	check "create qcow2 preallocation=$mode 100M" "$img" create -f qcow2 -o preallocation=$mode p_$mode.qcow2 100M
	check "  qemu-img check clean" qemu-img check p_$mode.qcow2
	check "  kvmkit-img check clean" "$img" check p_$mode.qcow2
	check "  qemu-img map: all of it allocated" bash -c "qemu-img map --output=json p_$mode.qcow2 | python3 -c '
import json,sys; m=json.load(sys.stdin); sys.exit(not all(e[\"data\"] and e[\"present\"] for e in m) or sum(e[\"length\"] for e in m) != 104857600)'"
	check "  reads as zeroes, writes and reads back" bash -c "qemu-io -c 'read -P 0 0 1M' -c 'write -P 8 50M 1M' -c 'read -P 8 50M 1M' p_$mode.qcow2 | grep -c '^read' | grep -qx 2 && qemu-img check p_$mode.qcow2"
done
check "  metadata stays sparse (< 5 MiB on disk)" test "$(stat -c %b p_metadata.qcow2)" -lt 10240
check "  falloc takes the space (>= 100 MiB on disk)" test "$(stat -c %b p_falloc.qcow2)" -ge 204800
check "  full takes the space (>= 100 MiB on disk)" test "$(stat -c %b p_full.qcow2)" -ge 204800
check "preallocation=metadata 1G with 2M clusters" bash -c "'$img' create -f qcow2 -o preallocation=metadata,cluster_size=2M p2m.qcow2 1G >/dev/null && qemu-img check p2m.qcow2"
check "preallocation=metadata 100M with 512-byte clusters (refcount table of 2 clusters)" bash -c "'$img' create -f qcow2 -o preallocation=metadata,cluster_size=512 p512.qcow2 100M >/dev/null && qemu-img check p512.qcow2"
check "preallocation=metadata 1G with 4K clusters" bash -c "'$img' create -f qcow2 -o preallocation=metadata,cluster_size=4096 p4k.qcow2 1G >/dev/null && qemu-img check p4k.qcow2"
check "raw preallocation=falloc" bash -c "'$img' create -f raw -o preallocation=falloc pf.raw 10M >/dev/null && [ \$(stat -c %b pf.raw) -ge 20480 ]"
check "raw preallocation=full" bash -c "'$img' create -f raw -o preallocation=full pz.raw 10M >/dev/null && [ \$(stat -c %b pz.raw) -ge 20480 ] && cmp pz.raw <(head -c 10M /dev/zero)"
check "raw preallocation=metadata refused" status_is 1 "$img" create -f raw -o preallocation=metadata pm.raw 1M
check "preallocation with a backing file refused" status_is 1 "$img" create -f qcow2 -o preallocation=metadata -b base.qcow2 -F qcow2 pb.qcow2
check "unknown preallocation refused, no file left" bash -c "! '$img' create -f qcow2 -o preallocation=x px.qcow2 1M 2>/dev/null && [ ! -e px.qcow2 ]"

# --- kvmkit's own block driver on shrunk and preallocated images (if built) ---
qio_bin=$(dirname "$img")/../../tests/qcow2/qcow2-io
if [ -x "$qio_bin" ]; then
	driver_writes() { # image: random writes through kvmkit's driver, checked against a raw copy
		qemu-img convert -O raw "$1" "$1.raw" && "$qio_bin" write "$1" qcow2 "$1.raw" 7 300 &&
			qemu-img check "$1" >/dev/null && qemu-img compare "$1" "$1.raw"
	}
	"$img" resize small.qcow2 12M >/dev/null
	check "kvmkit driver writes to a shrunk and regrown image" driver_writes small.qcow2
	check "kvmkit driver writes to a preallocation=metadata image" driver_writes p_metadata.qcow2
	check "kvmkit driver writes to a preallocation=full image" driver_writes p_full.qcow2
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
