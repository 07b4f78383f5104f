#!/bin/bash
# Cross-validates kvmkit-img against qemu-img, the reference: images it creates pass
# `qemu-img check` and `qemu-img info` agrees on them; its `info --output=json` has qemu-img's
# keys and values; convert keeps data and holes; compare's exit codes; one-line errors and no
# partial output on failure.
# Usage: tests/img/run.sh [path/to/kvmkit-img]  (default: build/src/img/kvmkit-img)
set -u
here=$(cd "$(dirname "$0")" && pwd)
img=${1:-$here/../../build/src/img/kvmkit-img}
. "$here/../qcow2/lib.sh"
qemu_img_tests_init "kvmkit-img tests" "$img"
img=$bin

# qemu-img info's JSON value for a key ("" if absent).
qinfo() { qemu-img info --output=json "$1" | json_get "$2"; }
json_get() { # key: from the JSON on stdin; nested keys as a.b.c
	python3 -c 'import json,sys
v=json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v=v.get(k) if isinstance(v,dict) else None
print("" if v is None else json.dumps(v))' "$1"
}

# --- create ---
created_ok() { # file fmt size cluster
	qemu-img check "$1" >/dev/null 2>&1 || [ "$2" = raw ] || { echo "check failed"; return 1; }
	[ "$(qinfo "$1" format)" = "\"$2\"" ] || { echo "format $(qinfo "$1" format)"; return 1; }
	[ "$(qinfo "$1" virtual-size)" = "$3" ] || { echo "size $(qinfo "$1" virtual-size)"; return 1; }
	[ -z "$4" ] || [ "$(qinfo "$1" cluster-size)" = "$4" ] ||
		{ echo "cluster $(qinfo "$1" cluster-size)"; return 1; }
}
check "create qcow2 1G" bash -c "'$img' create -f qcow2 a.qcow2 1G | grep -q \"^Formatting 'a.qcow2', fmt=qcow2 .*size=1073741824\""
check "  qemu-img agrees" created_ok a.qcow2 qcow2 1073741824 65536
check "create raw 100M" "$img" create -f raw r.raw 100M
check "  qemu-img agrees" created_ok r.raw raw 104857600 ""
check "create qcow2 cluster_size=4096,lazy_refcounts=on" "$img" create -f qcow2 \
	-o cluster_size=4096,lazy_refcounts=on,preallocation=off c.qcow2 10M
check "  qemu-img agrees" created_ok c.qcow2 qcow2 10485760 4096
check "  lazy refcounts on" test "$(qinfo c.qcow2 format-specific.data.lazy-refcounts)" = true
check "create with backing, size from backing" "$img" create -f qcow2 -b a.qcow2 -F qcow2 o.qcow2
check "  qemu-img agrees" created_ok o.qcow2 qcow2 1073741824 65536
check "  backing file" test "$(qinfo o.qcow2 backing-filename)" = '"a.qcow2"'
check "  create line like qemu-img's" bash -c "diff <('$img' create -f qcow2 -b a.qcow2 -F qcow2 o2.qcow2) \
	<(qemu-img create -f qcow2 -b a.qcow2 -F qcow2 o3.qcow2 | sed s/o3.qcow2/o2.qcow2/)"

# --- info ---
info_same() { # image: every key qemu-img prints, with the same value (actual-size aside)
	python3 - "$img" "$1" <<'PY'
import json, subprocess, sys
k = json.loads(subprocess.check_output([sys.argv[1], "info", "--output=json", sys.argv[2]]))
q = json.loads(subprocess.check_output(["qemu-img", "info", "--output=json", sys.argv[2]]))
def flat(d, p=""):
    out = {}
    for key, v in d.items():
        out.update(flat(v, p + key + ".") if isinstance(v, dict) else {p + key: v})
    return out
k, q = flat(k), flat(q)
bad = [f"{key}: kvmkit-img {k.get(key)!r}, qemu-img {q[key]!r}" for key in q
       if key not in ("actual-size",) and k.get(key) != q[key]]
bad += [f"{key}: only kvmkit-img has it" for key in k if key not in q]
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}
check "info json = qemu-img's (qcow2)" info_same a.qcow2
check "info json = qemu-img's (raw)" info_same r.raw
check "info json = qemu-img's (backing)" info_same o.qcow2
check "info json = qemu-img's (lazy, 4K clusters)" info_same c.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 64M
check "info json = qemu-img's (compat 0.10)" info_same v2.qcow2
check "info human = qemu-img's" bash -c "diff <('$img' info o.qcow2 | grep -v '^disk size') \
	<(qemu-img info o.qcow2 | grep -v '^disk size')"

# --- convert ---
# 3 MiB of data, a hole, a small data island, a hole to 8 MiB.
head -c $((3 << 20)) /dev/urandom > src.raw
truncate -s $((8 << 20)) src.raw
dd if=/dev/urandom of=src.raw bs=4k seek=1500 count=3 conv=notrunc status=none
check "convert raw -> qcow2 (-p)" "$img" convert -p -f raw -O qcow2 src.raw mid.qcow2
check "  qemu-img check clean" qemu-img check mid.qcow2
check "  qemu-img compare equal" qemu-img compare src.raw mid.qcow2
check "  holes left unallocated" bash -c "[ \$(stat -c %s mid.qcow2) -lt $((5 << 20)) ]"
check "convert qcow2 -> raw" "$img" convert -O raw mid.qcow2 out.raw
check "  qemu-img compare equal" qemu-img compare -f raw -F raw src.raw out.raw
check "  byte-identical" cmp src.raw out.raw
check "  raw output is sparse (du < size)" bash -c "[ \$(du -k out.raw | cut -f1) -lt 8192 ]"
check "convert qcow2 -> qcow2 (cluster_size=4096)" "$img" convert -O qcow2 \
	-o cluster_size=4096 mid.qcow2 small.qcow2
check "  qemu-img check clean and compare equal" bash -c \
	"qemu-img check small.qcow2 && qemu-img compare src.raw small.qcow2"
check "convert of a backed image reads through" bash -c "qemu-img create -q -f qcow2 -b mid.qcow2 \
	-F qcow2 top.qcow2 && '$img' convert -O raw top.qcow2 top.raw && cmp src.raw top.raw"
check "  with zero, data and unallocated clusters over a raw base (extents)" bash -c \
	"qemu-img create -q -f qcow2 -b src.raw -F raw zt.qcow2 &&
	 qemu-io -c 'write -z 0 192k' -c 'write -P 0x5a 1M 100k' -c 'write -z 2M 64k' zt.qcow2 >/dev/null &&
	 qemu-img convert -O raw zt.qcow2 zt-want.raw && '$img' convert -O raw zt.qcow2 zt.raw &&
	 cmp zt-want.raw zt.raw && '$img' convert -O qcow2 zt.qcow2 zt2.qcow2 &&
	 qemu-img compare -q zt2.qcow2 zt-want.raw"

# --- compare ---
cp src.raw diff.raw
printf 'x' | dd of=diff.raw bs=1 seek=5000000 conv=notrunc status=none
expect_rc() { # rc command...
	local want=$1
	shift
	"$@"
	local rc=$?
	[ "$rc" = "$want" ] || { echo "exit status $rc, expected $want"; return 1; }
}
check "compare identical: exit 0" bash -c "'$img' compare src.raw mid.qcow2 | grep -qx 'Images are identical.'"
check "compare different: exit 1" expect_rc 1 "$img" compare src.raw diff.raw
check "  same message as qemu-img" bash -c "diff <('$img' compare src.raw diff.raw) \
	<(qemu-img compare src.raw diff.raw)"
check "compare qcow2 vs different raw: exit 1" expect_rc 1 "$img" compare -f qcow2 -F raw \
	mid.qcow2 diff.raw
cp src.raw long.raw && truncate -s $((9 << 20)) long.raw
check "compare with a zero tail: exit 0" expect_rc 0 "$img" compare src.raw long.raw
printf 'y' | dd of=long.raw bs=1 seek=$((8 << 20 | 4097)) conv=notrunc status=none
check "compare with a non-zero tail: exit 1, as qemu-img" bash -c "diff <('$img' compare src.raw \
	long.raw; echo \$?) <(qemu-img compare src.raw long.raw; echo \$?)"
check "compare missing file: exit 2" expect_rc 2 "$img" compare src.raw nonexist.raw

# --- errors: exit 1, one line on stderr ---
one_line_error() { # command...: exit 1, nothing on stdout, exactly one line on stderr
	"$@" >stdout.txt 2>stderr.txt
	local rc=$?
	[ "$rc" = 1 ] || { echo "exit status $rc"; return 1; }
	[ "$(wc -l < stderr.txt)" = 1 ] || { cat stderr.txt; return 1; }
	[ ! -s stdout.txt ] || { cat stdout.txt; return 1; }
}
check "info missing file" one_line_error "$img" info nonexist.qcow2
check "info unknown format" one_line_error "$img" info -f vmdk a.qcow2
check "create bad size" one_line_error "$img" create -f qcow2 bad.qcow2 12Q
check "create unknown format" one_line_error "$img" create -f vdi bad.img 1M
check "create unknown -o option" one_line_error "$img" create -f qcow2 -o bogus=1 bad.qcow2 1M
check "create without size" one_line_error "$img" create -f qcow2 bad.qcow2
check "create bad cluster size" one_line_error "$img" create -f qcow2 -o cluster_size=3000 bad.qcow2 1M
check "convert missing source" one_line_error "$img" convert nonexist.raw bad.raw
check "unknown command" one_line_error "$img" frobnicate
check "  no file left behind" bash -c "! ls bad* >/dev/null 2>&1"

# A source that fails half-way: an L2 entry of a qcow2 image with a misaligned data cluster.
cp mid.qcow2 broken.qcow2
hex() { od -An -tx1 -j"$2" -N8 "$1" | tr -d ' \n'; }
l1=$((16#$(hex broken.qcow2 40)))
l2=$(( (16#$(hex broken.qcow2 $l1)) & 0x00fffffffffffe00 ))
# (a data cluster at offset 512: misaligned, so reads of it fail with EIO)
printf '\x80\x00\x00\x00\x00\x00\x02\x00' | dd of=broken.qcow2 bs=1 seek=$((l2 + 40 * 8)) \
	conv=notrunc status=none
check "convert of a broken source fails" expect_rc 1 "$img" convert -O raw broken.qcow2 partial.raw
check "  and leaves no partial output" bash -c "! ls partial.raw* >/dev/null 2>&1"
cp src.raw keep.raw
check "convert failure keeps an existing destination" bash -c "! '$img' convert -O raw \
	broken.qcow2 keep.raw 2>/dev/null && cmp src.raw keep.raw && ! ls keep.raw.* 2>/dev/null"

# --- check ---
# An image with data, a zero cluster, a compressed cluster and snapshots, made by qemu-io.
qemu-img create -q -f qcow2 q.qcow2 4M
qemu-io -c 'write -P 1 0 128k' -c 'write -z 1M 64k' -c 'write -c -P 3 2M 64k' q.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4096 snap.qcow2 64M
qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 8M 64k' snap.qcow2 >/dev/null
qemu-img snapshot -c s1 snap.qcow2
qemu-io -c 'write -P 5 0 8k' snap.qcow2 >/dev/null
same_check() { # image [options]: same output (stdout and stderr) and exit status as qemu-img
	local f=$1
	shift
	diff <("$img" check "$@" "$f" 2>&1; echo "exit $?") <(qemu-img check "$@" "$f" 2>&1; echo "exit $?")
}
same_check_json() { # image: the same JSON keys and values
	diff <("$img" check --output=json "$1" 2>/dev/null | python3 -c 'import json,sys; print(sorted(json.load(sys.stdin).items()))') \
		<(qemu-img check --output=json "$1" 2>/dev/null | python3 -c 'import json,sys; print(sorted(json.load(sys.stdin).items()))')
}
check "check clean kvmkit image: exit 0" expect_rc 0 "$img" check a.qcow2
check "check clean converted image = qemu-img's" same_check mid.qcow2
check "check qemu-io image (zero, compressed) = qemu-img's" same_check q.qcow2
check "  json = qemu-img's" same_check_json q.qcow2
check "check image with snapshots = qemu-img's" same_check snap.qcow2
check "check raw: exit 63 like qemu-img" bash -c "diff <('$img' check r.raw 2>&1; echo \$?) \
	<(qemu-img check r.raw 2>&1 | sed s/^qemu-img/kvmkit-img/; echo \${PIPESTATUS[0]})"
# Leak: an L2 entry cleared, its data cluster keeps refcount 1.
cp q.qcow2 leak.qcow2
l1=$((16#$(hex leak.qcow2 40)))
l2=$(( (16#$(hex leak.qcow2 $l1)) & 0x00fffffffffffe00 ))
printf '\0\0\0\0\0\0\0\0' | dd of=leak.qcow2 bs=1 seek=$((l2 + 8)) conv=notrunc status=none
check "check leaked cluster: exit 3" expect_rc 3 "$img" check leak.qcow2
check "  same report as qemu-img" same_check leak.qcow2
check "  json = qemu-img's" same_check_json leak.qcow2
cp leak.qcow2 leak2.qcow2
check "check -r leaks = qemu-img's" bash -c "diff <('$img' check -r leaks leak.qcow2 2>&1; echo \$?) \
	<(qemu-img check -r leaks leak2.qcow2 2>&1; echo \$?)"
check "  then both report clean" bash -c "'$img' check leak.qcow2 && qemu-img check leak.qcow2"
check "  data unchanged" qemu-img compare leak.qcow2 leak2.qcow2
# Corruption: an L2 entry pointing at a cluster whose refcount is 0.
cp q.qcow2 bad.qcow2
end=$(( ($(stat -c %s bad.qcow2) + 65535) / 65536 * 65536 ))
truncate -s $((end + 65536)) bad.qcow2
python3 -c 'import struct,sys
f=open("bad.qcow2","r+b"); f.seek(int(sys.argv[1])); f.write(struct.pack(">Q",(1<<63)|int(sys.argv[2])))' \
	$((l2 + 8)) $end
check "check corrupted image: exit 2" expect_rc 2 "$img" check bad.qcow2
check "  same report as qemu-img" same_check bad.qcow2
check "check -r all repairs it" bash -c "'$img' check -r all bad.qcow2 && qemu-img check bad.qcow2"
rm -f bad.qcow2
printf 'garbage' > bad.qcow2
printf 'QFI\xfb' | dd of=bad.qcow2 conv=notrunc status=none
check "check truncated header: one-line error" one_line_error "$img" check -f qcow2 bad.qcow2
rm -f bad.qcow2

# --- map ---
qemu-img create -q -f qcow2 mbase.qcow2 2M
qemu-io -c 'write -P 1 0 64k' -c 'write -P 1 512k 64k' mbase.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mbase.qcow2 -F qcow2 mtop.qcow2 4M
qemu-io -c 'write -P 2 64k 64k' -c 'write -z 512k 64k' -c 'write -z 0 64k' mtop.qcow2 >/dev/null
qemu-img create -q -f raw mraw.raw 1M
qemu-io -f raw -c 'write -P 1 64k 4k' mraw.raw >/dev/null
qemu-img create -q -f qcow2 -b mraw.raw -F raw mtop2.qcow2 2M
same_map() { # image: json and human output and exit status equal to qemu-img's
	diff <("$img" map --output=json "$1" 2>&1; echo "exit $?") \
		<(qemu-img map --output=json "$1" 2>&1; echo "exit $?") || return 1
	diff <("$img" map "$1" 2>/dev/null; echo "exit $?") <(qemu-img map "$1" 2>/dev/null; echo "exit $?")
}
for f in a.qcow2 mid.qcow2 q.qcow2 snap.qcow2 mtop.qcow2 mtop2.qcow2 mraw.raw src.raw small.qcow2; do
	check "map $f = qemu-img's" same_map $f
done
check "map missing file: one-line error" one_line_error "$img" map nonexist.qcow2

# --- resize ---
"$img" create -f qcow2 grow.qcow2 1M >/dev/null
qemu-io -c 'write -P 7 0 128k' grow.qcow2 >/dev/null
check "resize qcow2 1M -> 10G (L1 grows)" bash -c "'$img' resize grow.qcow2 10G | grep -qx 'Image resized.'"
check "  qemu-img info shows the size" test "$(qinfo grow.qcow2 virtual-size)" = 10737418240
check "  check clean (both)" bash -c "'$img' check grow.qcow2 && qemu-img check grow.qcow2"
check "  data kept, new area writable" bash -c "qemu-io -c 'read -P 7 0 128k' -c 'write -P 9 9G 64k' \
	-c 'read -P 9 9G 64k' grow.qcow2 | grep -q '^read 65536' && qemu-img check grow.qcow2"
check "resize qcow2 +1G (L1 large enough)" "$img" resize grow.qcow2 +1G
check "  size and check" bash -c "[ \$(qemu-img info --output=json grow.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"virtual-size\"])') = 11811160064 ] && qemu-img check grow.qcow2"
"$img" create -f qcow2 -o cluster_size=512 grow512.qcow2 1M >/dev/null
check "resize qcow2 512-byte clusters +100M" "$img" resize grow512.qcow2 +100M
check "  check clean (both)" bash -c "'$img' check grow512.qcow2 && qemu-img check grow512.qcow2"
check "resize qcow2 --shrink to 1M" bash -c "cp grow.qcow2 shrunk.qcow2 &&
	'$img' resize --shrink shrunk.qcow2 1M && qemu-img check shrunk.qcow2 &&
	qemu-io -c 'read -P 7 0 128k' shrunk.qcow2 | grep -q '^read 131072'"
check "resize qcow2 shrink without --shrink refused" one_line_error "$img" resize grow.qcow2 -- -1G
check "resize qcow2 with snapshots" bash -c "cp snap.qcow2 snapgrow.qcow2 && '$img' resize snapgrow.qcow2 +1G \
	&& qemu-img check snapgrow.qcow2 && '$img' check snapgrow.qcow2"
head -c 1M /dev/urandom > rs.raw
check "resize raw +1M" "$img" resize -f raw rs.raw +1M
check "  size" test "$(stat -c %s rs.raw)" = $((2 << 20))
check "resize raw shrink needs --shrink" one_line_error "$img" resize rs.raw 512K
check "resize raw --shrink -1536K" "$img" resize --shrink rs.raw -1536K
check "  size" test "$(stat -c %s rs.raw)" = $((512 << 10))
check "resize to a negative size refused" one_line_error "$img" resize --shrink rs.raw -1G

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
