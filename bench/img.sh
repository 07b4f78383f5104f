#!/usr/bin/env bash
# Benchmark: kvmkit-img against qemu-img on the same disk images, alternately: convert raw ->
# qcow2, qcow2 -> raw, raw -> compressed qcow2 (zlib, zstd), and random 4 KiB writes into a fresh
# qcow2 image (kvmkit's block layer against qemu-io). Every output is checked with qemu-img
# compare, so the benchmark proves correctness as well.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bench/img.sh [KVMKIT_IMG_BINARY] [options]   (default binary: build/src/img/kvmkit-img)
  --runs N          runs per tool (default 3), alternating kvmkit/QEMU (ABBA order)
  --size-mib N      size of the raw source image (default 1024)
  --writes N        random 4 KiB writes per randwrite run (default 10000)
  --qemu-cache MODE qemu-img convert's -t for its output: writeback (default: flushed at the
                    end, as kvmkit-img always does) or unsafe (qemu-img's own default: never
                    flushed, so a crash soon after may lose the output)
  --dir DIR         where the images are made (default $TMPDIR or /tmp; removed at the end)
  --build DIR       the build directory with tests/qcow2/qcow2-io (default build)
  --log FILE        keep the run log here (default BUILD/bench-img.log)
  --from-log FILE   run nothing: print the table again from an earlier run's log
The source: a raw image of 1 MiB stripes in turn random (incompressible), text (compressible),
a repeated byte, written zeroes, and a hole (never written); it stays in the page cache.
Tests (each a whole process, timed by wall clock, both tools through the host page cache and,
with the default --qemu-cache, both flushing their output to disk at the end):
  raw->qcow2        convert -O qcow2 SRC (64 KiB clusters)
  qcow2->raw        convert -O raw of that qcow2 image (qemu-img's output for both tools)
  raw->qcow2 -c     convert -c -O qcow2 (zlib)
  -c zstd           convert -c -O qcow2 -o compression_type=zstd
  sparse->qcow2     convert -O qcow2 of a 256 MiB raw image holding 6 MiB of data (six 1 MiB
                    random stripes 40 MiB apart, the rest holes): the tools' fixed costs; its
                    max RSS (/usr/bin/time, when installed) is printed after the table
  randwrite wb      --writes 4 KiB writes at random 4 KiB-aligned offsets into a fresh 1 GiB
                    qcow2 image, queue depth 1, then a flush: kvmkit through its block layer
                    (build/tests/qcow2/qcow2-io randwrite, cache writeback), QEMU through
                    qemu-io -t writeback reading the same writes (same offsets, same data, made
                    from the same xorshift64 sequence) as commands on its standard input; the
                    two images must then be identical. (qemu-img bench -w writes sequentially,
                    so it would not be the same test.) Both times include the process's start
                    (a few ms for qcow2-io, tens of ms for qemu-io).
  randwrite unsafe  the same with cache unsafe (kvmkit QCOW2_IO_CACHE=unsafe, qemu-io -t
                    unsafe): no flushes at all, so the driver's own cost without the disk's.
Figures are MiB/s of the source's virtual size (convert) and IOPS (randwrite): higher is better
in every row, and kvmkit/QEMU above 1 means kvmkit is faster. Medians per tool, then the best
run of each (the least disturbed: the host's 2 cores are shared).
Exit status: 0, or 1 if a run failed or an output differs, 2 on a usage error.
USAGE
}
bench=img
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=3 size_mib=1024 writes=10000 dir=${TMPDIR:-/tmp} qemu_cache=writeback
while [[ $# -gt 0 ]]; do
    case "$1" in
    --size-mib) need "$@"; size_mib=$2; shift 2 ;;
    --writes) need "$@"; writes=$2; shift 2 ;;
    --dir) need "$@"; dir=$2; shift 2 ;;
    --qemu-cache) need "$@"; qemu_cache=$2; shift 2 ;;
    --ms|--warm-ms|--qemu|--self-test) usage >&2; die "unknown option: $1" ;;
    *) bench_opt "$@"; shift "$bench_shift" ;;
    esac
done
num --runs "$runs"; num --size-mib "$size_mib"; num --writes "$writes"
(( size_mib >= 8 )) || die "--size-mib wants 8 or more"
[[ $qemu_cache == writeback || $qemu_cache == unsafe ]] || die "--qemu-cache wants writeback or unsafe"

tests=(r2q q2r r2qc r2qz sparse rw_wb rw_unsafe)
declare -A label=([r2q]="raw->qcow2 MiB/s" [q2r]="qcow2->raw MiB/s" [r2qc]="raw->qcow2 -c MiB/s"
                  [r2qz]="-c zstd MiB/s" [sparse]="sparse->qcow2 MiB/s" [rw_wb]="randwrite wb IOPS" [rw_unsafe]="randwrite unsafe IOPS")

# The table, from a log: "RUN name=kvmkit-1", "IMG test=T seconds=S value=V", "RESULT ...".
table() { # log kside
    local rows="" t
    for t in "${tests[@]}"; do rows+="$t=${label[$t]};"; done
    awk -v kside="$2" -v rows="$rows" "$bench_awk"'
    /^IMG / { kv(f); V[cur, f["test"], "v"] = f["value"] + 0; next }
    END {
        n = split(rows, rr, ";")
        for (i = 1; i < n; i++) { e = index(rr[i], "="); t[i] = substr(rr[i], 1, e - 1); lab[i] = substr(rr[i], e + 1) }
        printf "\n%-10s %-6s", "run", "status"
        for (i = 1; i < n; i++) printf " %10s", t[i]
        printf "\n"
        for (r = 1; r <= nr; r++) {
            m = order[r]; ok = (rc[m] == 0)
            printf "%-10s %-6s", m, ok ? "ok" : "rc=" rc[m]
            for (i = 1; i < n; i++) printf " %10s", cell(m, t[i], "v", "%.0f")
            printf "\n"
            if (ok) collect(m)
        }
        for (i = 1; i < n; i++) row[i] = t[i] SUBSEP "v" SUBSEP lab[i] SUBSEP "%.0f"
        summary("median", n - 1, 10)
        summary("best run", n - 1, 10)
        print "Higher is better in every row: kvmkit/QEMU > 1 means kvmkit is faster."
        footer()
    }' "$1"
}
bench_from_log

kimg=${kvmkit:-$build/src/img/kvmkit-img}
qio=$build/tests/qcow2/qcow2-io
[[ -x "$kimg" ]] || die "not an executable: $kimg (build it: ninja -C ${build#"$repo"/})"
[[ -x "$qio" ]] || die "no $qio: build it first (ninja -C ${build#"$repo"/})"
for t in qemu-img qemu-io python3; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found (Debian: apt-get install qemu-utils python3)"
done
[[ -d "$dir" && -w "$dir" ]] || die "--dir $dir is not a writable directory"
log=${log:-$build/bench-img.log}
tmp=$(mktemp -d "$dir/kvmkit-bench-img.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
src=$tmp/src.raw

echo "bench/img: writing a ${size_mib} MiB source image in $dir..."
python3 - "$src" "$size_mib" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
text = b"".join(b"%08d kvmkit bench/img: a line of compressible text, %s\n" % (i, b"abc" * (i % 7))
                for i in range(20000))
with open(path, "wb") as f:
    for i in range(mib):
        kind = i % 5
        if kind == 0: f.write(os.urandom(1 << 20))
        elif kind == 1: f.write(text[(i * 4099) % 65536:][:1 << 20].ljust(1 << 20, b"."))
        elif kind == 2: f.write(bytes([i & 0xff | 1]) * (1 << 20))
        elif kind == 3: f.write(bytes(1 << 20))
        else: f.seek(1 << 20, 1)
    f.truncate(mib << 20)
PY
# The sparse source: 256 MiB, six 1 MiB stripes of random data, holes between them.
python3 - "$tmp/sparse.raw" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    for i in range(6):
        f.seek(i * 40 << 20)
        f.write(os.urandom(1 << 20))
    f.truncate(256 << 20)
PY
size=$((size_mib << 20))
# The random writes, the same for both tools: qcow2-io randwrite's offsets and data, as qemu-io
# commands.
python3 - 1 "$writes" "$((1 << 30))" > "$tmp/writes.qemu-io" <<'PY'
import sys
seed, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
M = (1 << 64) - 1
s = (seed * 2654435761 + 1) & M
for i in range(n):
    s ^= (s << 13) & M; s ^= s >> 7; s ^= (s << 17) & M
    print(f"write -P {i % 255 + 1} {s % (size // 4096) * 4096} 4k")
PY

# One test: "IMG test=T seconds=S value=V [rss_kib=K]" into the log; value = unit / seconds.
# The sparse test runs under /usr/bin/time (when installed) for its max RSS.
timed() { # test units command...
    local t=$1 units=$2 t0 t1 rc=0 rss=""
    shift 2
    if [[ $t == sparse && -x /usr/bin/time ]]; then
        set -- /usr/bin/time -f %M -o "$tmp/rss" "$@"
    fi
    sync
    t0=$(date +%s.%N)
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    t1=$(date +%s.%N)
    if (( rc )); then
        echo "bench/img: $t failed (exit status $rc): $(tail -n 3 "$tmp/err" | tr '\n' ' ')" >&2
        run_rc=1
        return 0
    fi
    [[ $t == sparse && -s $tmp/rss ]] && rss=" rss_kib=$(tail -n 1 "$tmp/rss")"
    awk -v t="$t" -v a="$t0" -v b="$t1" -v u="$units" -v rss="$rss" \
        'BEGIN { s = b - a; printf "IMG test=%s seconds=%.3f value=%.1f%s\n", t, s, (s > 0 ? u / s : 0), rss }' >> "$run_log"
}

# Each output against what it should hold (first round only: compare reads both whole images).
verify() { # what image reference [-f FMT -F FMT]
    local what=$1 a=$2 b=$3
    shift 3
    (( round == 1 )) || return 0
    if ! qemu-img compare "$@" "$b" "$a" >"$tmp/cmp" 2>&1; then
        echo "bench/img: $what: output differs: $(head -n 2 "$tmp/cmp" | tr '\n' ' ')" >&2
        run_rc=1
    fi
}

run_one() { # side name
    local side=$1 name=$2 o=$tmp/$1 mib=$size_mib
    run_rc=0
    echo "RUN name=$name" >> "$run_log"
    if [[ $side == kvmkit ]]; then
        timed r2q "$mib" "$kimg" convert -O qcow2 "$src" "$o.qcow2"
        timed q2r "$mib" "$kimg" convert -O raw "$tmp/qemu-ref.qcow2" "$o.raw"
        timed r2qc "$mib" "$kimg" convert -c -O qcow2 "$src" "$o.c.qcow2"
        timed r2qz "$mib" "$kimg" convert -c -O qcow2 -o compression_type=zstd "$src" "$o.z.qcow2"
        timed sparse 256 "$kimg" convert -O qcow2 "$tmp/sparse.raw" "$o.s.qcow2"
        "$qio" create "$o.rw.qcow2" qcow2 $((1 << 30))
        timed rw_wb "$writes" "$qio" randwrite "$o.rw.qcow2" qcow2 1 "$writes"
        "$qio" create "$o.ru.qcow2" qcow2 $((1 << 30))
        QCOW2_IO_CACHE=unsafe timed rw_unsafe "$writes" "$qio" randwrite "$o.ru.qcow2" qcow2 1 "$writes"
    else
        timed r2q "$mib" qemu-img convert -t "$qemu_cache" -O qcow2 "$src" "$o.qcow2"
        timed q2r "$mib" qemu-img convert -t "$qemu_cache" -O raw "$tmp/qemu-ref.qcow2" "$o.raw"
        timed r2qc "$mib" qemu-img convert -t "$qemu_cache" -c -O qcow2 "$src" "$o.c.qcow2"
        timed r2qz "$mib" qemu-img convert -t "$qemu_cache" -c -O qcow2 -o compression_type=zstd "$src" "$o.z.qcow2"
        timed sparse 256 qemu-img convert -t "$qemu_cache" -O qcow2 "$tmp/sparse.raw" "$o.s.qcow2"
        qemu-img create -q -f qcow2 "$o.rw.qcow2" 1G
        timed rw_wb "$writes" qemu_io writeback "$o.rw.qcow2"
        qemu-img create -q -f qcow2 "$o.ru.qcow2" 1G
        timed rw_unsafe "$writes" qemu_io unsafe "$o.ru.qcow2"
    fi
    verify "$side raw->qcow2" "$o.qcow2" "$src" -f raw -F qcow2
    verify "$side qcow2->raw" "$o.raw" "$src" -f raw -F raw
    verify "$side raw->qcow2 -c" "$o.c.qcow2" "$src" -f raw -F qcow2
    verify "$side -c zstd" "$o.z.qcow2" "$src" -f raw -F qcow2
    verify "$side sparse->qcow2" "$o.s.qcow2" "$tmp/sparse.raw" -f raw -F qcow2
    if (( round == 1 )); then
        for f in "$o.qcow2" "$o.c.qcow2" "$o.z.qcow2" "$o.s.qcow2" "$o.rw.qcow2"; do
            qemu-img check -q "$f" || { echo "bench/img: qemu-img check $f failed" >&2; run_rc=1; }
        done
        sizes+=" $side: qcow2 $(du -m "$o.qcow2" | cut -f1) MiB, -c $(du -m "$o.c.qcow2" | cut -f1) MiB, -c zstd $(du -m "$o.z.qcow2" | cut -f1) MiB;"
    fi
    # the other tool's random-write image of this round must be identical (same writes)
    if [[ -f $tmp/other.rw.qcow2 ]] && ! qemu-img compare -q "$tmp/other.rw.qcow2" "$o.rw.qcow2"; then
        echo "bench/img: randwrite images of kvmkit and QEMU differ" >&2
        run_rc=1
    fi
    mv "$o.rw.qcow2" "$tmp/other.rw.qcow2"
    rm -f "$o.qcow2" "$o.raw" "$o.c.qcow2" "$o.z.qcow2" "$o.s.qcow2" "$o.ru.qcow2"
    (( run_rc == 0 )) || failed_runs=$((failed_runs + 1))
    echo "RESULT name=$name rc=$run_rc wall=0" >> "$run_log"
}
qemu_io() { qemu-io -f qcow2 -t "$1" "$2" < "$tmp/writes.qemu-io"; }

# qcow2->raw reads the same qcow2 image for both tools: qemu-img's (made once, untimed).
qemu-img convert -O qcow2 "$src" "$tmp/qemu-ref.qcow2"
bench_start
# bench_rounds, with the round number for verify().
echo "bench/img: $(qemu-img --version | head -n 1); host load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "bench/img: $runs runs each of kvmkit-img and qemu-img (convert -t $qemu_cache), ABBA order, source ${size_mib} MiB, $writes random writes"
t_start=$(date +%s) sizes=""
for ((round = 1; round <= runs; round++)); do
    rm -f "$tmp/other.rw.qcow2"
    if (( round % 2 )); then run_one kvmkit "kvmkit-$round"; run_one qemu "qemu-$round"
    else run_one qemu "qemu-$round"; run_one kvmkit "kvmkit-$round"; fi
    echo "bench/img: round $round of $runs done ($(( $(date +%s) - t_start )) s)"
done
mkdir -p "$(dirname "$log")"
cp "$run_log" "$log"
table "$log" kvmkit
# The sparse case's max RSS, median per tool.
awk '/^RUN / { split($2, a, "="); side = a[2]; sub(/-[0-9]+$/, "", side) }
     /^IMG test=sparse .*rss_kib=/ { for (i = 2; i <= NF; i++) if ($i ~ /^rss_kib=/) { split($i, a, "="); v[side, ++n[side]] = a[2] } }
     function median(s,   i, j, t, m) { m = n[s]; for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[s, j] < v[s, i]) { t = v[s, i]; v[s, i] = v[s, j]; v[s, j] = t }
                                        return m % 2 ? v[s, (m + 1) / 2] : (v[s, m / 2] + v[s, m / 2 + 1]) / 2 }
     END { if (n["kvmkit"] && n["qemu"]) { k = median("kvmkit"); q = median("qemu")
           printf "sparse->qcow2 max RSS (median, /usr/bin/time): kvmkit %.1f MiB, QEMU %.1f MiB, kvmkit/QEMU %.2f (lower is better)\n", k / 1024, q / 1024, k / q } }' "$log"
echo "Output sizes (round 1):$sizes"
echo "Outputs checked: qemu-img compare with the source (round 1), qemu-img check, identical randwrite images."
bench_end
