#!/usr/bin/env bash
# Benchmark: virtio-blk under kvmkit and under QEMU (-accel kvm -M pc), same guest, same disk image (raw, and qcow2), alternately.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bench/blk.sh [KVMKIT_BINARY] [options]        (default binary: build/kvmkit)
       bench/blk.sh --self-test [options]           (QEMU on both sides: proves the benchmark itself)
  --runs N          runs per VMM (default 5), alternating kvmkit/QEMU (ABBA order)
  --ms N            measured time per test in the guest (default 1000; each test first runs
                    --warm-ms N untimed, default 200)
  --disk-mib N      size of the disk (default 256)
  --format F        raw, qcow2 or both (default both): the qcow2 image is made from the raw file
                    by qemu-img convert (64 KiB clusters, every cluster allocated) and both VMMs
                    run on that same image
  --dir DIR         where the disk file is made (default $TMPDIR or /tmp; removed at the end)
  --seq-kib N       sequential request size (default 64)    --seq-qd N   its queue depth (default 16)
  --rand-qd N       queue depth of the 4 KiB random tests (default 32)
  --qemu-aio MODE   io_uring (default; threads if this QEMU or kernel refuses it) or threads
  --qemu BINARY     default qemu-system-x86_64
  --build DIR       the build directory with tests/guests/bench_blk.elf (default build)
  --log FILE        keep the guests' output here (default BUILD/bench-blk.log)
  --from-log FILE   run nothing: print the table again from an earlier run's log
The guest (tests/guests/bench_blk.c) sets up the device in ring 0, then runs each test in 64-bit
ring 3: it fills the avail ring, rings the doorbell (an MMIO write), polls the used ring (no
interrupts) and refills; time is the guest's TSC, calibrated against the PIT in the same run.
Every 4 KiB block of the disk carries its number: reads are checked, writes keep the pattern.
Tests: seqread/seqwrite (--seq-kib requests, --seq-qd in flight, wrapping over the disk),
randread/randwrite (4 KiB at random 4 KiB-aligned offsets, --rand-qd in flight). Then 20000
doorbell writes with nothing queued (the notification exit: KVM ioeventfd in both VMMs) and
20000 writes to the pc-testdev port 0xe0 (an exit to the VMM process), the floors to compare with.
Both VMMs: cache=writeback (host page cache), the file filled once before the first run, and
sync before every run so that no run pays for another's dirty pages. The guest negotiates
VIRTIO_BLK_F_FLUSH as Linux does (without it QEMU turns every write into write + fdatasync)
but never flushes.
Per-run table (one row per run and format): MiB/s, IOPS, and the exit costs. Medians: per VMM, with kvmkit/QEMU ratios (for
MiB/s and IOPS higher is better, for us/req and exit costs lower is better); then the best run
of each VMM, the one least disturbed: the guest's vCPU spins on one of the host's two cores,
so the VMM's I/O work gets one core at most and any other load on the host shows as noise.
us/req is the time per completed request at that queue depth (one request's latency is about
qd times it); kicks/req counts doorbell writes (the loop's only VM exits) per request.
Exit status: 0, or 1 if a run failed (its guest did not PASS), 2 on a usage error.
USAGE
}
bench=blk
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

disk_mib=256 dir=${TMPDIR:-/tmp} seq_kib=64 seq_qd=16 rand_qd=32 qemu_aio=io_uring formats="raw qcow2"
while [[ $# -gt 0 ]]; do
    case "$1" in
    --disk-mib) need "$@"; disk_mib=$2; shift 2 ;;
    --dir) need "$@"; dir=$2; shift 2 ;;
    --seq-kib) need "$@"; seq_kib=$2; shift 2 ;;
    --seq-qd) need "$@"; seq_qd=$2; shift 2 ;;
    --rand-qd) need "$@"; rand_qd=$2; shift 2 ;;
    --qemu-aio) need "$@"; qemu_aio=$2; shift 2 ;;
    --format) need "$@"
        case "$2" in raw|qcow2) formats=$2 ;; both) formats="raw qcow2" ;; *) die "--format wants raw, qcow2 or both" ;; esac
        shift 2 ;;
    *) bench_opt "$@"; shift "$bench_shift" ;;
    esac
done
bench_check_opts
num --disk-mib "$disk_mib"; num --seq-kib "$seq_kib"; num --seq-qd "$seq_qd"; num --rand-qd "$rand_qd"
(( seq_kib % 4 == 0 && seq_kib <= 256 )) || die "--seq-kib wants a multiple of 4 up to 256"
(( seq_qd <= 32 && rand_qd <= 32 )) || die "queue depths go up to 32"
(( disk_mib >= 1 && disk_mib <= 1048576 )) || die "--disk-mib wants 1..1048576"
[[ "$qemu_aio" == io_uring || "$qemu_aio" == threads ]] || die "--qemu-aio wants io_uring or threads"

# The table, from a log: "RUN name=kvmkit-1 ...", the guest's output, "RESULT name=... rc=N". A
# qcow2 run is named kvmkit-qcow2-1 (qemu-qcow2-1); its tests are counted as seqread.qcow2 etc.
table() { # log kside
    tr -d '\r' < "$1" | awk -v kside="$2" "$bench_awk"'
    /^BENCH io / {
        kv(f); t = f["name"] (cur ~ /-qcow2-/ ? ".qcow2" : ""); s = f["ticks"] / hz[cur]
        if (s <= 0 || f["requests"] == 0) next
        V[cur, t, "mbs"] = f["bytes"] / s / 1048576; V[cur, t, "iops"] = f["requests"] / s
        V[cur, t, "us"] = s / f["requests"] * 1e6; V[cur, t, "kpr"] = f["kicks"] / f["requests"]
        if (!(t in tseen)) { tseen[t] = 1; torder[++nt] = t }
        desc[t] = f["bs"] / 1024 " KiB, qd " f["qd"]
        next
    }
    END {
        printf "\n%-16s %-6s %6s %9s %9s %9s %9s %8s %8s\n", "run", "status", "wall", "seqread", "seqwrite",
            "randread", "randwrite", "doorbell", "pio"
        printf "%-16s %-6s %6s %9s %9s %9s %9s %8s %8s\n", "", "", "s", "MiB/s", "MiB/s", "IOPS", "IOPS",
            "us/exit", "us/exit"
        for (i = 1; i <= nr; i++) {
            n = order[i]; ok = (rc[n] == 33); x = n ~ /-qcow2-/ ? ".qcow2" : ""
            printf "%-16s %-6s %6s %9s %9s %9s %9s %8s %8s\n", n, ok ? "ok" : "rc=" rc[n], wall[n],
                cell(n, "seqread" x, "mbs", "%.0f"), cell(n, "seqwrite" x, "mbs", "%.0f"),
                cell(n, "randread" x, "iops", "%.0f"), cell(n, "randwrite" x, "iops", "%.0f"),
                cell(n, "kick", "exit", "%.1f"), cell(n, "pio", "exit", "%.1f")
            if (ok) collect(n)
        }
        nrow = 0
        for (i = 1; i <= nt; i++) {
            t = torder[i]
            row[++nrow] = t SUBSEP (t ~ /^seq/ ? "mbs" : "iops") SUBSEP t " " (t ~ /^seq/ ? "MiB/s" : "IOPS") SUBSEP "%.0f"
        }
        for (i = 1; i <= nt; i++) row[++nrow] = torder[i] SUBSEP "us" SUBSEP torder[i] " us/req" SUBSEP "%.2f"
        for (i = 1; i <= nt; i++) row[++nrow] = torder[i] SUBSEP "kpr" SUBSEP torder[i] " kicks/req" SUBSEP "%.3f"
        row[++nrow] = "kick" SUBSEP "exit" SUBSEP "doorbell exit us" SUBSEP "%.1f"
        row[++nrow] = "pio" SUBSEP "exit" SUBSEP "pio exit us" SUBSEP "%.1f"
        summary("median", nrow, 12)
        # The best run of each side: on a shared 2-core host, the one least disturbed by other load.
        summary("best run", nt, 12)
        # raw and qcow2 side by side: the medians of each VMM and the ratio, per format.
        printf "\n%-10s %9s %9s %6s   %9s %9s %6s\n", "median", "raw", "", "", "qcow2", "", ""
        printf "%-10s %9s %9s %6s   %9s %9s %6s\n", "", "kvmkit", "QEMU", "ratio", "kvmkit", "QEMU", "ratio"
        nb = 0
        for (i = 1; i <= nt; i++) {
            t = torder[i]; sub(/\.qcow2$/, "", t)
            if (!(t in bseen)) { bseen[t] = 1; base[++nb] = t }
        }
        for (i = 1; i <= nb; i++) {
            t = base[i]
            k = t ~ /^seq/ ? "mbs" : "iops"
            printf "%-10s", t " "
            for (x = 0; x < 2; x++) {
                m = t (x ? ".qcow2" : "") SUBSEP k
                for (s = 1; s <= 2; s++) {
                    split("", tmp); side = s == 1 ? "k" : "q"
                    for (j = 1; j <= C[side, m]; j++) tmp[j] = A[side, m, j]
                    v[s] = median(tmp, C[side, m] + 0)
                }
                printf " %9s %9s %6s%s", v[1] == "n/a" ? "n/a" : sprintf("%.0f", v[1]),
                    v[2] == "n/a" ? "n/a" : sprintf("%.0f", v[2]),
                    v[1] != "n/a" && v[2] != "n/a" && v[2] + 0 ? sprintf("%.2f", v[1] / v[2]) : "n/a", x ? "" : "  "
            }
            printf "   (%s)\n", k == "mbs" ? "MiB/s" : "IOPS"
        }
        for (i = 1; i <= nb; i++) printf "%s%s: %s", i == 1 ? "tests: " : "; ", base[i], desc[base[i] (base[i] in desc ? "" : ".qcow2")]
        if (nb) printf "\n"
        footer()
    }'
}

bench_from_log
bench_check_vmms bench_blk
command -v perl >/dev/null 2>&1 || die "perl is needed to write the disk file"
[[ -d "$dir" && -w "$dir" ]] || die "--dir $dir is not a writable directory"
log=${log:-$build/bench-blk.log}

tmp=$(mktemp -d "$dir/kvmkit-bench-blk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
disk=$tmp/disk.raw

# The disk: every 4 KiB block starts with its number and "KVMB" (tests/guests/bench_blk.h), the
# rest a fixed text. Written for real (not sparse), so that both VMMs read from the page cache.
echo "bench/blk: writing a ${disk_mib} MiB disk file in $dir..."
perl -e 'my $pad = substr("kvmkit bench_blk disk " x 200, 0, 4088);
         for my $b (0 .. $ARGV[0] * 256 - 1) { print pack("VV", $b, 0x424d564b), $pad }' "$disk_mib" > "$disk" ||
    die "could not write $disk"

if [[ " $formats " == *" qcow2 "* ]]; then
    command -v qemu-img >/dev/null 2>&1 || die "qemu-img is needed for the qcow2 image (Debian: apt-get install qemu-utils)"
    qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$disk" "$tmp/disk.qcow2" ||
        die "qemu-img could not convert $disk to qcow2"
fi

# QEMU's io_uring needs a QEMU built with it and a kernel that lets it use io_uring.
if [[ "$qemu_aio" == io_uring ]] &&
   ! echo quit | timeout 20 "$qemu" -M none -nodefaults -display none -monitor stdio \
        -drive "file=$disk,if=none,id=d0,format=raw,cache=writeback,aio=io_uring" >/dev/null 2>"$tmp/probe.err"; then
    echo "bench/blk: QEMU refused aio=io_uring ($(head -c 200 "$tmp/probe.err" | tr '\n' ' ')); using aio=threads"
    qemu_aio=threads
fi

append="ms=$ms warm_ms=$warm_ms seq_kib=$seq_kib seq_qd=$seq_qd rand_qd=$rand_qd"
# Guest time: 4 tests of warm + measured, calibration (~0.3 s), the exit loops (~3 s); plus boot.
timeout_s=$(( 60 + 4 * (ms + warm_ms) / 1000 ))

vmm_cmd() { # side format -> the array cmd
    local img=$disk
    [[ $2 == qcow2 ]] && img=$tmp/disk.qcow2
    bench_vmm_cmd "$1" --disk "path=$img,format=$2,cache=writeback" -- \
        -drive "file=$img,if=none,id=d0,format=$2,cache=writeback,aio=$qemu_aio" \
        -device "virtio-blk-pci,disable-legacy=on,drive=d0"
}

run_fmt() { # side name (a name with "-qcow2-" runs on the qcow2 image)
    local -a cmd
    local rc=0 t0 t1 fmt=raw
    [[ $2 == *-qcow2-* ]] && fmt=qcow2
    vmm_cmd "$1" "$fmt"
    sync   # the previous run's writes: flushed now, not during this run
    echo "RUN name=$2 cmd=${cmd[*]}" >> "$run_log"
    t0=$(date +%s.%N)
    timeout -k 5 "$timeout_s" "${cmd[@]}" </dev/null >"$tmp/out" 2>"$tmp/err" || rc=$?
    t1=$(date +%s.%N)
    {
        tr -d '\r' < "$tmp/out"
        sed 's/^/stderr| /' "$tmp/err"
        bench_result "$2" "$rc" "$t0" "$t1"
    } >> "$run_log"
    bench_check_rc "$2" "$rc"
}

# What bench_rounds runs: each format in turn, kvmkit-N and qemu-N on raw, kvmkit-qcow2-N and
# qemu-qcow2-N on qcow2.
run_one() { # side name
    local f
    for f in $formats; do
        if [[ $f == raw ]]; then run_fmt "$1" "$2"; else run_fmt "$1" "${2%-*}-qcow2-${2##*-}"; fi
    done
}
bench_start
echo "bench/blk: $runs runs each of $kside and QEMU (-accel kvm -M pc, aio=$qemu_aio), ABBA order, formats: $formats"
echo "bench/blk: guest command line: $append"
bench_rounds
echo "Host load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores: vCPU and I/O thread need both; other load shows up as noise)"
bench_end
