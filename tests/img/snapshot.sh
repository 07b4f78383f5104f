#!/bin/bash
# kvmkit-img snapshot (-l, -c, -a, -d) and the snapshot list of `info`, cross-validated with
# qemu-img: after every step `qemu-img check` finds the image clean, applied snapshots read back
# the data saved when they were taken (qemu-img compare against a raw copy), each tool lists,
# applies and deletes the other's snapshots, -l and info's JSON match qemu-img's, bad input is
# one error line, and a kill -9 at each point of a change leaves an image that checks clean.
# Usage: tests/img/snapshot.sh [path/to/kvmkit-img]  (default: build/src/img/kvmkit-img)
set -u
here=$(cd "$(dirname "$0")" && pwd)
img=${1:-$here/../../build/src/img/kvmkit-img}
. "$here/../qcow2/lib.sh"
qemu_img_tests_init "kvmkit-img snapshot tests" "$img"
img=$bin
if ! command -v qemu-io >/dev/null; then
	echo "SKIP: the kvmkit-img snapshot tests need qemu-io (Debian: apt-get install qemu-utils)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
fi

qcheck() { # file: qemu-img check exits 0 (and kvmkit-img check agrees)
	qemu-img check "$1" || return 1
	"$img" check "$1" >/dev/null || { echo "kvmkit-img check disagrees"; return 1; }
}
write() { # file pattern offset length [-c]: qemu-io write, then qemu-img check
	qemu-io -c "write ${5:-} -P $2 $3 $4" "$1" >/dev/null && qemu-img check "$1" >/dev/null
}
save() { qemu-img convert -O raw "$1" "$2"; } # file raw: the guest-visible content now
same() { qemu-img compare -q "$1" "$2" || { echo "content differs from $2"; return 1; }; }
applied() { # tool file name raw: apply with tool, check clean, content = raw
	"$1" snapshot -a "$3" "$2" && qcheck "$2" >/dev/null && same "$2" "$4"
}
deleted() { # tool file name: delete with tool, check clean, gone from qemu-img's list
	"$1" snapshot -d "$3" "$2" && qcheck "$2" >/dev/null &&
		! qemu-img snapshot -l "$2" | awk 'NR > 2 { print $2 }' | grep -qx "$3"
}
tags() { qemu-img snapshot -l "$1" | awk 'NR > 2 { printf "%s:%s ", $1, $2 }'; }
same_list() { # file: kvmkit-img snapshot -l prints what qemu-img prints, byte for byte
	diff <("$img" snapshot -l "$1") <(qemu-img snapshot -l "$1")
}
json_snapshots() { python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("snapshots")))'; }
same_info() { # file: info's human snapshot list and JSON "snapshots" match qemu-img's
	diff <("$img" info "$1" | sed -n '/^Snapshot list:/,/^Format/p') \
		<(qemu-img info "$1" | sed -n '/^Snapshot list:/,/^Format/p') || return 1
	diff <("$img" info --output=json "$1" | json_snapshots) \
		<(qemu-img info --output=json "$1" | json_snapshots)
}
one_line_error() { # command...: exit 1, nothing on stdout, exactly one line on stderr
	"$@" >stdout.txt 2>stderr.txt
	local rc=$?
	[ "$rc" = 1 ] || { echo "exit status $rc"; cat stderr.txt; return 1; }
	[ "$(wc -l < stderr.txt)" = 1 ] || { cat stderr.txt; return 1; }
	[ ! -s stdout.txt ] || { cat stdout.txt; return 1; }
}
poke() { # file offset hex-bytes: overwrite bytes in place
	python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(bytes.fromhex(sys.argv[3]))' "$@"
}
be64_at() { python3 -c 'import sys,struct
with open(sys.argv[1], "rb") as f:
    f.seek(int(sys.argv[2])); print(struct.unpack(">Q", f.read(8))[0])' "$@"; }

# One full cycle on an image made with qemu-img -o opts: data (plain and compressed), create,
# overwrite, apply, three snapshots with the middle one deleted, then both tools' snapshots
# handled by the other.
cycle() { # label opts cluster-size
	local l=$1 o=$2 cs=$3 f=$1.qcow2
	qemu-img create -q -f qcow2 -o "$o" "$f" 16M
	write "$f" 0x11 0 1M && write "$f" 0x33 4M "$cs" -c
	save "$f" "$l-1.raw"
	check "$l: create s1" "$img" snapshot -c s1 "$f"
	check "$l:   check clean" qcheck "$f"
	check "$l:   -l as qemu-img's" same_list "$f"
	check "$l: overwrite (plain and compressed)" write "$f" 0x22 512K 4M
	save "$f" "$l-2.raw"
	check "$l: apply s1, content as saved" applied "$img" "$f" s1 "$l-1.raw"
	check "$l: create s2, s3 around new data" bash -c "'$img' snapshot -c s2 '$f' &&
		qemu-io -c 'write -P 0x44 2M 1M' '$f' >/dev/null && '$img' snapshot -c s3 '$f'"
	save "$f" "$l-3.raw"
	check "$l:   IDs 1 2 3" test "$(tags "$f")" = "1:s1 2:s2 3:s3 "
	check "$l:   check clean" qcheck "$f"
	check "$l: delete the middle one (s2)" deleted "$img" "$f" s2
	check "$l:   IDs 1 3 left" test "$(tags "$f")" = "1:s1 3:s3 "
	check "$l: apply s1 after the delete" applied "$img" "$f" s1 "$l-1.raw"
	check "$l: apply s3 by its ID" applied "$img" "$f" 3 "$l-3.raw"
	check "$l: info lists as qemu-img" same_info "$f"
	check "$l: qemu-img applies kvmkit-img's s1" applied qemu-img "$f" s1 "$l-1.raw"
	check "$l: qemu-img deletes kvmkit-img's s3" deleted qemu-img "$f" s3
	write "$f" 0x55 0 64k
	save "$f" "$l-q.raw"
	check "$l: qemu-img creates q1" qemu-img snapshot -c q1 "$f"
	check "$l:   -l as qemu-img's" same_list "$f"
	write "$f" 0x66 0 3M
	check "$l: kvmkit-img applies qemu-img's q1" applied "$img" "$f" q1 "$l-q.raw"
	check "$l: kvmkit-img deletes qemu-img's q1" deleted "$img" "$f" q1
	check "$l: kvmkit-img deletes s1, the last" deleted "$img" "$f" s1
	check "$l:   no snapshot left, data kept" bash -c "[ -z \"\$('$img' snapshot -l '$f')\" ] &&
		qemu-img compare -q '$f' '$l-q.raw'"
}
cycle c64k "cluster_size=64k" 65536
cycle c512 "cluster_size=512" 512
cycle c2m "cluster_size=2M" 2097152
cycle v2 "compat=0.10" 65536
cycle rc64 "refcount_bits=64" 65536
cycle lazy "lazy_refcounts=on" 65536

# --- disk size: a snapshot taken before a resize brings its size back ---
qemu-img create -q -f qcow2 sz.qcow2 16M
write sz.qcow2 0x11 0 1M
save sz.qcow2 sz.raw
"$img" snapshot -c small sz.qcow2
qemu-img resize -q sz.qcow2 1G
check "apply restores the snapshot's disk size" bash -c "'$img' snapshot -a small sz.qcow2 &&
	qemu-img check sz.qcow2 >/dev/null && [ \$(stat -c %s sz.raw) = 16777216 ] &&
	qemu-img compare -q sz.qcow2 sz.raw"
check "  and qemu-img's info agrees" bash -c "qemu-img info sz.qcow2 | grep -q '^virtual size: 16 MiB'"

# --- deleting a snapshot gives its clusters back to the file system, as qemu-img does ---
qemu-img create -q -f qcow2 du.qcow2 64M
write du.qcow2 0x11 0 8M
"$img" snapshot -c old du.qcow2
write du.qcow2 0x22 0 8M
du_before=$(du -k du.qcow2 | cut -f1)
check "delete punches holes where the freed clusters were" bash -c "'$img' snapshot -d old du.qcow2 &&
	qemu-img check du.qcow2 >/dev/null && [ \$(du -k du.qcow2 | cut -f1) -lt $((du_before - 6000)) ]"

# --- snapshots in an overlay: only the overlay's clusters are referenced ---
qemu-img create -q -f qcow2 base.qcow2 16M
write base.qcow2 0x11 0 2M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2
write ov.qcow2 0x22 1M 64k
save ov.qcow2 ov.raw
check "overlay: create, overwrite, apply" bash -c "'$img' snapshot -c o1 ov.qcow2 &&
	qemu-io -c 'write -P 0x33 0 2M' ov.qcow2 >/dev/null && '$img' snapshot -a o1 ov.qcow2 &&
	qemu-img check ov.qcow2 >/dev/null && qemu-img compare -q ov.qcow2 ov.raw"
check "  info shows backing file and snapshots as qemu-img" same_info ov.qcow2

check "info without snapshots still describes extended L2 images" bash -c "qemu-img create -q \
	-f qcow2 -o extended_l2=on xl2.qcow2 1M && '$img' info xl2.qcow2 | grep -q 'extended l2: true'"

# --- refused, one error line each, the image unchanged ---
qemu-img create -q -f qcow2 e.qcow2 16M
write e.qcow2 0x11 0 1M
"$img" snapshot -c s1 e.qcow2
cp e.qcow2 e0.qcow2
save e.qcow2 e.raw
qemu-img create -q -f raw r.raw 1M
check "raw: -c refused" one_line_error "$img" snapshot -c x r.raw
check "  with qemu-img's reason" grep -q "Operation not supported" stderr.txt
check "raw: -l lists nothing, as qemu-img" bash -c "[ -z \"\$('$img' snapshot -l -f raw r.raw)\" ]"
check "duplicate tag refused" one_line_error "$img" snapshot -c s1 e.qcow2
check "unknown name: -a refused" one_line_error "$img" snapshot -a nosuch e.qcow2
check "unknown name: -d refused" one_line_error "$img" snapshot -d nosuch e.qcow2
check "tag too long refused" one_line_error "$img" snapshot -c "$(printf 'x%.0s' {1..300})" e.qcow2
check "empty tag refused" one_line_error "$img" snapshot -c "" e.qcow2
check "-l with -c refused" one_line_error "$img" snapshot -l -c x e.qcow2
check "two files refused" one_line_error "$img" snapshot -l e.qcow2 e0.qcow2
check "  image unchanged by the refusals" cmp e.qcow2 e0.qcow2
qemu-img create -q -f qcow2 -o refcount_bits=1 rc1.qcow2 16M
write rc1.qcow2 0x11 0 1M
check "refcount_bits=1: -c refused (refcount overflow)" one_line_error "$img" snapshot -c x rc1.qcow2
check "  image still clean, no snapshot" bash -c "qemu-img check rc1.qcow2 >/dev/null &&
	[ -z \"\$(qemu-img snapshot -l rc1.qcow2)\" ]"
snap_off=$(be64_at e0.qcow2 64)
bad() { # name offset hex: a damaged copy of e0.qcow2 is refused by -l, -c, -a, -d and info
	cp e0.qcow2 "bad-$1.qcow2"
	poke "bad-$1.qcow2" "$2" "$3"
	check "$1: -l refused" one_line_error "$img" snapshot -l "bad-$1.qcow2"
	check "$1: -c refused" one_line_error "$img" snapshot -c y "bad-$1.qcow2"
	check "$1: -a refused" one_line_error "$img" snapshot -a s1 "bad-$1.qcow2"
	check "$1: -d refused" one_line_error "$img" snapshot -d s1 "bad-$1.qcow2"
	check "$1: info refused" one_line_error "$img" info "bad-$1.qcow2"
}
bad "huge snapshot count" 60 ffffffff
bad "snapshot table past the end" 64 0000010000000000
bad "misaligned snapshot table" 64 "$(printf '%016x' $((snap_off + 8)))"
bad "huge snapshot L1 size" $((snap_off + 8)) 7fffffff
bad "snapshot L1 past the end" $((snap_off)) 0000010000000000
bad "huge extra data size" $((snap_off + 36)) 7fffffff
cp e0.qcow2 trunc.qcow2
truncate -s $((snap_off + 20)) trunc.qcow2
check "truncated snapshot table: -l refused" one_line_error "$img" snapshot -l trunc.qcow2
check "truncated snapshot table: -c refused" one_line_error "$img" snapshot -c y trunc.qcow2
cp e0.qcow2 dirty.qcow2
poke dirty.qcow2 79 01
check "dirty image: -c refused" one_line_error "$img" snapshot -c y dirty.qcow2

# --- kill -9 at each point of a change: the old or the new image, checking clean ---
crash() { # op name point expected-tags
	cp e0.qcow2 crash.qcow2
	KVMKIT_IMG_CRASH_AT=$3 "$img" snapshot "$1" "$2" crash.qcow2 2>/dev/null
	local rc=$?
	[ "$rc" = 137 ] || { echo "not killed (exit $rc)"; return 1; }
	qemu-img check crash.qcow2 || return 1
	[ "$(tags crash.qcow2)" = "$4" ] || { echo "tags $(tags crash.qcow2)"; return 1; }
	same crash.qcow2 e.raw
}
for p in 1 2 3 4; do
	if [ $p = 4 ]; then new_c="1:s1 2:s2 "; new_d=""; else new_c="1:s1 "; new_d="1:s1 "; fi
	check "kill -9 at point $p of -c: check clean" crash -c s2 $p "$new_c"
	check "kill -9 at point $p of -d: check clean" crash -d s1 $p "$new_d"
	check "kill -9 at point $p of -a: check clean" crash -a s1 $p "1:s1 "
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
