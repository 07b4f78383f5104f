#!/bin/bash
# Cross-validates `kvmkit-img commit` and `kvmkit-img rebase` against qemu-img, the reference:
# guest views checked with `qemu-img compare` against raw copies taken before, both images clean
# under `qemu-img check` afterwards, the overlay empty after commit (qemu-img map), the new
# backing file in `qemu-img info` after rebase, the same content as qemu-img commit/rebase
# produce from the same inputs, and one-line errors that leave the images untouched.
# Usage: tests/img/commit.sh [path/to/kvmkit-img]  (default: build/src/img/kvmkit-img)
set -u
here=$(cd "$(dirname "$0")" && pwd)
img=${1:-$here/../../build/src/img/kvmkit-img}
. "$here/../qcow2/lib.sh"
qemu_img_tests_init "kvmkit-img commit/rebase tests" "$img"
img=$bin

q() { qemu-io "$@" >/dev/null; } # qemu-io -c ... FILE, quietly
same() { qemu-img compare "$1" "$2" >/dev/null; }
clean() { # images: qemu-img check and kvmkit-img check both clean
	for f; do
		qemu-img check "$f" >/dev/null || { qemu-img check "$f"; return 1; }
		"$img" check "$f" >/dev/null || { echo "kvmkit-img check $f failed"; return 1; }
	done
}
top_empty() { # image: qemu-img map shows nothing allocated in the image itself (depth 0)
	qemu-img map --output=json "$1" | python3 -c 'import json,sys
bad=[r for r in json.load(sys.stdin) if r["depth"] == 0 and r["present"]]
if bad: sys.exit(f"allocated in the top layer: {bad}")'
}
top_has_data() { ! top_empty "$1" >/dev/null; }
backing_is() { # image name fmt: what qemu-img info records ("" name: none)
	qemu-img info --output=json "$1" | python3 -c 'import json,sys
i=json.load(sys.stdin)
got=(i.get("backing-filename",""), i.get("backing-filename-format",""))
if got != tuple(sys.argv[1:3]): sys.exit(f"backing file {got}")' "$2" "$3"
}
one_line_error() { # command...: exit 1, nothing on stdout, exactly one line on stderr
	"$@" >stdout.txt 2>stderr.txt
	local rc=$?
	[ "$rc" = 1 ] || { echo "exit status $rc"; cat stderr.txt; return 1; }
	[ "$(wc -l < stderr.txt)" = 1 ] || { cat stderr.txt; return 1; }
	[ ! -s stdout.txt ] || { cat stdout.txt; return 1; }
}
says() { grep -qF "$1" stderr.txt || { cat stderr.txt; return 1; }; } # after one_line_error
snap() { for f; do cp "$f" "$f.before"; done; } # keep copies to prove a failure changed nothing
unchanged() { for f; do cmp -s "$f" "$f.before" || { echo "$f changed"; return 1; }; done; }
export img
export -f q same clean top_empty top_has_data backing_is one_line_error says unchanged

# An overlay o.qcow2 on a backing file of format $1 with data, zero clusters over backing data
# and untouched areas; ref.raw is its guest view, q-* are copies for qemu-img.
make_pair() { # backing-fmt overlay-cluster-size [backing-cluster-size]
	rm -f b.* o.qcow2 ref.raw q-*
	if [ "$1" = raw ]; then
		qemu-img create -f raw b.raw 4M >/dev/null
	else
		qemu-img create -f qcow2 -o cluster_size="${3:-65536}" b.qcow2 4M >/dev/null
	fi
	q -f "$1" -c 'write -P 0x11 0 3M' "b.$1"
	qemu-img create -f qcow2 -o cluster_size="$2" -b "b.$1" -F "$1" o.qcow2 >/dev/null
	q -c 'write -P 0xab 64k 128k' -c 'write -z 1M 256k' -c 'write -P 0xcd 3584k 300k' \
		-c 'write -P 0xef 2047k 3k' o.qcow2
	qemu-img convert -O raw o.qcow2 ref.raw
	cp "b.$1" "q-b.$1"
	cp o.qcow2 q-o.qcow2
	qemu-img rebase -u -b "q-b.$1" -F "$1" q-o.qcow2
}

commit_checks() { # backing-fmt label
	local b=b.$1 before
	before=$(stat -c %s o.qcow2)
	check "commit $2" bash -c "'$img' commit o.qcow2 | grep -qx 'Image committed.'"
	check "  backing file holds the guest view" same ref.raw "$b"
	check "  overlay reads the same" same ref.raw o.qcow2
	check "  overlay is empty (qemu-img map)" top_empty o.qcow2
	check "  zero clusters committed as zeroes" bash -c \
		"qemu-io -f $1 -c 'read -P 0 1M 256k' $b | grep -q '^read 262144'"
	if [ "$1" = qcow2 ]; then
		check "  check clean (both images)" clean o.qcow2 "$b"
	else
		check "  check clean (overlay)" clean o.qcow2
	fi
	qemu-img commit -q q-o.qcow2
	check "  same content as qemu-img commit" bash -c "same $b q-$b && same o.qcow2 q-o.qcow2"
	check "  overlay file shrank (freed clusters at its end cut off)" \
		test "$(stat -c %s o.qcow2)" -lt "$before"
}

# --- commit ---
make_pair qcow2 65536
commit_checks qcow2 "into a qcow2 backing file"
make_pair raw 65536
commit_checks raw "into a raw backing file"
make_pair qcow2 512
commit_checks qcow2 "512-byte overlay clusters into 64k"
make_pair qcow2 2M 512
commit_checks qcow2 "2M overlay clusters into 512-byte"

make_pair qcow2 65536
check "commit -d keeps the overlay" bash -c "'$img' commit -d o.qcow2 | grep -qx 'Image committed.'"
check "  backing file holds the guest view" same ref.raw b.qcow2
check "  overlay still holds its data" top_has_data o.qcow2
check "  check clean (both)" clean o.qcow2 b.qcow2

make_pair qcow2 65536
check "commit -q prints nothing" bash -c "[ -z \"\$('$img' commit -q o.qcow2)\" ]"
make_pair qcow2 65536
check "commit -p shows progress" bash -c "'$img' commit -p o.qcow2 | tr '\r' '\n' | grep -q '(100.00/100%)'"

# A 3-deep chain: the top is committed into the middle; the base stays as it was.
rm -f base.qcow2 mid.qcow2 top.qcow2
qemu-img create -f qcow2 base.qcow2 2M >/dev/null
q -c 'write -P 1 0 2M' base.qcow2
qemu-img create -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 >/dev/null
q -c 'write -P 2 512k 512k' mid.qcow2
qemu-img create -f qcow2 -o cluster_size=4096 -b mid.qcow2 -F qcow2 top.qcow2 >/dev/null
q -c 'write -P 3 700k 10k' -c 'write -z 900k 200k' -c 'write -P 4 1500k 4k' top.qcow2
qemu-img convert -O raw top.qcow2 ref3.raw
qemu-img convert -O raw base.qcow2 base.raw
check "commit the top of a 3-deep chain into the middle" "$img" commit -q top.qcow2
check "  middle holds the guest view" same ref3.raw mid.qcow2
check "  top reads the same and is empty" bash -c "same ref3.raw top.qcow2 && top_empty top.qcow2"
check "  base unchanged" same base.raw base.qcow2
check "  check clean (all three)" clean top.qcow2 mid.qcow2 base.qcow2

# Internal snapshots keep their clusters: the active layer is emptied, the snapshot is not.
make_pair qcow2 65536
qemu-img snapshot -c s1 o.qcow2
q -c 'write -P 0x77 0 64k' o.qcow2
qemu-img convert -O raw o.qcow2 ref.raw
check "commit an overlay with an internal snapshot" "$img" commit -q o.qcow2
check "  guest view kept, overlay empty, check clean" bash -c \
	"same ref.raw b.qcow2 && same ref.raw o.qcow2 && top_empty o.qcow2 && clean o.qcow2 b.qcow2"
check "  snapshot still reads its data" bash -c "qemu-img snapshot -a s1 o.qcow2 && \
	qemu-io -c 'read -P 0xab 64k 128k' o.qcow2 | grep -q '^read 131072'"

# Compressed clusters, a v2 (compat=0.10) overlay, a size that is not a multiple of the cluster.
rm -f b.qcow2 o.qcow2 v.qcow2
qemu-img create -f qcow2 b.qcow2 1049088 >/dev/null
q -c 'write -P 1 0 1049088' b.qcow2
qemu-img create -f qcow2 -b b.qcow2 -F qcow2 o.qcow2 >/dev/null
q -c 'write -c -P 5 0 64k' -c 'write -P 6 1048576 512' -c 'write -P 7 500k 4k' o.qcow2
qemu-img convert -O raw o.qcow2 ref.raw
check "commit compressed clusters and a partial last cluster" "$img" commit -q o.qcow2
check "  guest view kept, overlay empty, check clean" bash -c \
	"same ref.raw b.qcow2 && same ref.raw o.qcow2 && top_empty o.qcow2 && clean o.qcow2 b.qcow2"
qemu-img create -f qcow2 -o compat=0.10 -b b.qcow2 -F qcow2 v.qcow2 >/dev/null
q -c 'write -P 8 0 64k' -c 'write -z 128k 64k' -c 'write -P 9 1048576 512' v.qcow2
qemu-img convert -O raw v.qcow2 ref.raw
check "commit a v2 overlay" "$img" commit -q v.qcow2
check "  guest view kept, overlay empty, check clean" bash -c \
	"same ref.raw b.qcow2 && same ref.raw v.qcow2 && top_empty v.qcow2 && clean v.qcow2 b.qcow2"

# --- commit errors ---
qemu-img create -f qcow2 alone.qcow2 1M >/dev/null
check "commit without a backing file: qemu-img's error" bash -c \
	"one_line_error '$img' commit alone.qcow2 && says 'Image does not have a backing file'"
qemu-img create -f raw alone.raw 1M >/dev/null
check "commit of a raw image: the same error" bash -c \
	"one_line_error '$img' commit -f raw alone.raw && says 'Image does not have a backing file'"
make_pair qcow2 65536
rm b.qcow2
check "commit with a missing backing file" one_line_error "$img" commit o.qcow2
make_pair qcow2 65536
qemu-img resize -q o.qcow2 8M
snap o.qcow2 b.qcow2
check "commit of an overlay larger than its backing file refused" one_line_error "$img" commit o.qcow2
check "  nothing changed" unchanged o.qcow2 b.qcow2
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	# Root ignores file modes: run as nobody on a backing file nobody cannot write.
	mkdir -p ro && chmod 777 ro
	make_pair qcow2 65536
	mv b.qcow2 o.qcow2 ro/ && chmod 444 ro/b.qcow2 && chmod 666 ro/o.qcow2
	snap ro/o.qcow2 ro/b.qcow2
	check "commit into a read-only backing file refused" one_line_error \
		setpriv --reuid=65534 --regid=65534 --clear-groups "$img" commit ro/o.qcow2
	check "  overlay and backing file untouched" unchanged ro/o.qcow2 ro/b.qcow2
else
	echo "SKIP: 2 read-only backing file tests need root and setpriv"
	skipped=2
fi

# --- rebase ---
# o.qcow2 over b.qcow2 (3M of data) is moved onto n.raw: shorter (1M), and partly equal.
make_rebase() { # overlay-cluster-size
	make_pair qcow2 "$1"
	qemu-img create -f raw n.raw 1M >/dev/null
	q -f raw -c 'write -P 0x11 0 256k' -c 'write -P 0x22 256k 256k' n.raw
}
rebase_checks() { # label, rebase options...: run on o.qcow2 (new backing n.raw as $name)
	local label=$1
	shift
	check "rebase $label" "$img" rebase "$@" o.qcow2
	check "  guest view unchanged (qemu-img compare)" same ref.raw o.qcow2
	check "  check clean" clean o.qcow2
	qemu-img rebase "$@" q-o.qcow2 2>/dev/null
	check "  same content as qemu-img rebase" same o.qcow2 q-o.qcow2
}
for cs in 65536 512 2M; do
	make_rebase $cs
	rebase_checks "onto a shorter raw file (cluster size $cs)" -b n.raw -F raw
	check "  qemu-img info shows the new backing file" backing_is o.qcow2 n.raw raw
done

make_rebase 65536
rebase_checks "-b '' (independent image)" -b ""
check "  no backing file any more" backing_is o.qcow2 "" ""

# The top of a 3-deep chain moved onto the base: the middle's data comes into the top.
rm -f base.qcow2 mid.qcow2 top.qcow2
qemu-img create -f qcow2 base.qcow2 2M >/dev/null
q -c 'write -P 1 0 2M' base.qcow2
qemu-img create -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 >/dev/null
q -c 'write -P 2 512k 512k' mid.qcow2
qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 >/dev/null
q -c 'write -P 3 700k 10k' top.qcow2
qemu-img convert -O raw top.qcow2 ref3.raw
check "rebase the top of a 3-deep chain onto the base" "$img" rebase -b base.qcow2 -F qcow2 top.qcow2
check "  guest view unchanged, check clean" bash -c "same ref3.raw top.qcow2 && clean top.qcow2"
check "  backing file is the base" backing_is top.qcow2 base.qcow2 qcow2

make_rebase 65536
cp o.qcow2 u.qcow2
check "rebase -u changes only the header" "$img" rebase -u -b n.raw -F raw o.qcow2
check "  qemu-img info shows the new backing file" backing_is o.qcow2 n.raw raw
check "  nothing changed after the header cluster" cmp -i 65536 o.qcow2 u.qcow2
qemu-img rebase -u -b n.raw -F raw u.qcow2
check "  byte for byte what qemu-img rebase -u writes" cmp o.qcow2 u.qcow2
check "rebase -u without -b removes the backing file" bash -c \
	"'$img' rebase -u o.qcow2 && backing_is o.qcow2 '' '' && qemu-img rebase -u u.qcow2 && cmp o.qcow2 u.qcow2"

# Relative names are relative to the image's directory, not to the working directory.
rm -rf sub && mkdir sub
make_rebase 65536
mv o.qcow2 sub/ && qemu-img rebase -u -b ../b.qcow2 -F qcow2 sub/o.qcow2
check "rebase an image in another directory (relative names)" "$img" rebase -b ../n.raw -F raw sub/o.qcow2
check "  guest view unchanged, check clean" bash -c "same ref.raw sub/o.qcow2 && clean sub/o.qcow2"
check "  the name is recorded as given" backing_is sub/o.qcow2 ../n.raw raw

# --- rebase errors ---
make_rebase 65536
snap o.qcow2
check "rebase onto a missing file refused" one_line_error "$img" rebase -b nonexist.raw -F raw o.qcow2
check "  image untouched" unchanged o.qcow2
check "rebase without -F refused (as qemu-img)" bash -c \
	"one_line_error '$img' rebase -b n.raw o.qcow2 && says 'backing format must be specified'"
check "rebase without -b refused (as qemu-img)" bash -c \
	"one_line_error '$img' rebase o.qcow2 && says 'Must specify backing file (-b) or use unsafe mode (-u)'"
check "rebase of a raw image refused" one_line_error "$img" rebase -f raw -b b.qcow2 -F qcow2 n.raw
check "rebase with an unknown -F refused" one_line_error "$img" rebase -b n.raw -F vmdk o.qcow2
check "  image untouched" unchanged o.qcow2
qemu-img create -f qcow2 -o cluster_size=512 small.qcow2 1M >/dev/null
snap small.qcow2
long=$(printf 'x%.0s' $(seq 400))
check "rebase -u with a name too long for a 512-byte header cluster" bash -c \
	"one_line_error '$img' rebase -u -b $long -F raw small.qcow2 && says 'do not fit'"
check "  image untouched" unchanged small.qcow2
short=$(printf 'y%.0s' $(seq 100))
qemu-img create -f raw "$short" 1M >/dev/null
check "  a name that fits is accepted" bash -c \
	"'$img' rebase -u -b $short -F raw small.qcow2 && qemu-img check small.qcow2 >/dev/null && \
	 backing_is small.qcow2 $short raw"

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
