# Shared parts of the VMM benchmarks bench/blk.sh and bench/net.sh (sourced): options, checks, the ABBA runs, the tables' awk.
# The caller sets bench (its name: blk, net) and defines usage and table before using these.
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # the variables set here are the caller's, and it sets some used here

die() { printf 'bench/%s: error: %s\n' "$bench" "$*" >&2; exit 2; }
need() { [[ $# -ge 2 ]] || die "$1 needs a value"; }
num() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 wants a positive number, not '$2'"; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kvmkit="" runs=5 ms=1000 warm_ms=200 qemu=qemu-system-x86_64 build=$repo/build log="" from_log="" self_test=0

# The options both benchmarks take (and the unknown ones, and KVMKIT_BINARY): bench_opt "$@"
# handles the first word(s) and sets bench_shift to how many it took.
bench_opt() {
    bench_shift=2
    case "$1" in
    --runs) need "$@"; runs=$2 ;;
    --ms) need "$@"; ms=$2 ;;
    --warm-ms) need "$@"; warm_ms=$2 ;;
    --qemu) need "$@"; qemu=$2 ;;
    --build) need "$@"; build=$2 ;;
    --log) need "$@"; log=$2 ;;
    --from-log) need "$@"; from_log=$2 ;;
    --self-test) self_test=1; bench_shift=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$kvmkit" ]] || die "one KVMKIT_BINARY only"; kvmkit=$1; bench_shift=1 ;;
    esac
}

bench_check_opts() {
    num --runs "$runs"; num --ms "$ms"
    [[ "$warm_ms" =~ ^[0-9]+$ ]] || die "--warm-ms wants a number, not '$warm_ms'"
}

# kside: the name of the kvmkit column's VMM (QEMU too with --self-test).
bench_kside() {
    kside=kvmkit
    (( self_test )) && kside="kvmkit(=QEMU, --self-test)"
    return 0
}

# --from-log FILE: the tables of an earlier run, and exit.
bench_from_log() {
    [[ -n "$from_log" ]] || return 0
    [[ -f "$from_log" ]] || die "no such log: $from_log"
    kside=kvmkit
    grep -q '^RUN name=kvmkit-[0-9]* cmd=[^ ]*qemu' "$from_log" && kside="kvmkit(=QEMU, --self-test)"
    table "$from_log" "$kside"
    exit 0
}

# The guest BUILD/tests/guests/NAME.elf, the VMMs and /dev/kvm: sets guest and kvmkit.
bench_check_vmms() { # guest-name
    guest=$build/tests/guests/$1.elf
    [[ -f "$guest" ]] || die "no $guest: build it first (ninja -C ${build#"$repo"/})"
    if (( ! self_test )); then
        kvmkit=${kvmkit:-$build/kvmkit}
        [[ -x "$kvmkit" ]] || die "not an executable: $kvmkit (build it: ninja -C ${build#"$repo"/})"
    fi
    command -v "$qemu" >/dev/null 2>&1 || die "no QEMU: '$qemu' not found (Debian: apt-get install qemu-system-x86)"
    [[ -w /dev/kvm ]] || die "/dev/kvm is missing or not writable"
}

# The array cmd for one run of the guest with the command line $append: kvmkit (unless
# --self-test) with KVMKIT_ARGS, else QEMU (-accel kvm -M pc, the exit devices) with QEMU_ARGS.
bench_vmm_cmd() { # side KVMKIT_ARGS... -- QEMU_ARGS...
    local side=$1
    local -a kargs=()
    shift
    while [[ $# -gt 0 && $1 != -- ]]; do kargs+=("$1"); shift; done
    shift
    if [[ $side == kvmkit ]] && (( ! self_test )); then
        cmd=("$kvmkit" run --kernel "$guest" --memory 256M "${kargs[@]}"
             --testdev --serial stdio --append "$append")
    else
        cmd=("$qemu" -accel kvm -M pc -m 256 -kernel "$guest" -append "$append"
             -nodefaults -no-user-config -display none -serial stdio -monitor none -no-reboot
             -device "isa-debug-exit,iobase=0xf4,iosize=4" -device pc-testdev "$@")
    fi
}

# The log's last line of a run; and a warning with the end of its output ($tmp/out, $tmp/err)
# unless the guest passed (exit status 33), counted in failed_runs.
bench_result() { # name rc t0 t1
    echo "RESULT name=$1 rc=$2 wall=$(awk -v a="$3" -v b="$4" 'BEGIN { printf "%.1f", b - a }')"
}
bench_check_rc() { # name rc
    (( $2 == 33 )) && return 0
    failed_runs=$((failed_runs + 1))
    local why="exit status $2"
    (( $2 == 124 || $2 == 137 )) && why="timed out after ${timeout_s}s"
    echo "bench/$bench: warning: $1: $why, want 33 (the guest's PASS); its output:" >&2
    tail -n 20 "$tmp/out" "$tmp/err" | sed 's/^/    | /' >&2
}

# Before the runs: kside, and an empty run log in $tmp.
bench_start() {
    bench_kside
    run_log=$tmp/run.log failed_runs=0
    : > "$run_log"
}

# The runs: $runs rounds of run_one (side name) for kvmkit and QEMU in ABBA order, into the
# log; then the tables. Sets t_start.
bench_rounds() {
    local i
    echo "bench/$bench: $("$qemu" --version | head -n 1); host load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    t_start=$(date +%s)
    for ((i = 1; i <= runs; i++)); do
        if (( i % 2 )); then
            run_one kvmkit "kvmkit-$i"; run_one qemu "qemu-$i"
        else
            run_one qemu "qemu-$i"; run_one kvmkit "kvmkit-$i"
        fi
        echo "bench/$bench: round $i of $runs done ($(( $(date +%s) - t_start )) s)"
    done
    mkdir -p "$(dirname "$log")"
    cp "$run_log" "$log"
    table "$log" "$kside"
}

bench_end() {
    echo "TIME total: $(( $(date +%s) - t_start )) s (log: $log)"
    if (( failed_runs )); then
        echo "bench/$bench: $failed_runs run(s) failed (see the warnings above and $log)" >&2
        exit 1
    fi
}

# The tables' awk, before each benchmark's own rules. The log: "RUN name=kvmkit-1 cmd=...", the
# guest's output (BENCH lines), "RESULT name=... rc=N wall=S". Values go to V[run, test, key];
# collect(run) adds an ok run's to its side (A, C); row[] lists "test SUBSEP key SUBSEP label
# SUBSEP format" for summary(), which prints the medians or the best runs with the ratios.
# shellcheck disable=SC2016  # awk's $i
bench_awk='
    function median(arr, n,   i, j, t, b) {
        if (n == 0) return "n/a"
        for (i = 1; i <= n; i++) b[i] = arr[i]
        for (i = 2; i <= n; i++) { t = b[i]; for (j = i - 1; j >= 1 && b[j] > t; j--) b[j + 1] = b[j]; b[j + 1] = t }
        return (n % 2) ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
    }
    function kv(f,   i, e) {
        delete f
        for (i = 1; i <= NF; i++) { e = index($i, "="); if (e) f[substr($i, 1, e - 1)] = substr($i, e + 1) }
    }
    function cell(n, t, k, fmt) { return ((n, t, k) in V) ? sprintf(fmt, V[n, t, k]) : "n/a" }
    function collect(n,   side, key, p, m, c) {
        side = (n ~ /^kvmkit/) ? "k" : "q"; good[side]++
        for (key in V) {
            split(key, p, SUBSEP)
            if (p[1] != n) continue
            m = p[2] SUBSEP p[3]; c = ++C[side, m]; A[side, m, c] = V[key]; mseen[m] = 1
        }
    }
    # The rows 1..nrow of row[]: title "median" or "best run" (the highest value: the run least
    # disturbed by other load), w the width of the two VMM columns.
    function summary(title, nrow, w,   fmt, r, p, m, s, side, j, v, tmp, ratio) {
        fmt = "%-26s %" w "s %" w "s %12s\n"
        printf "\n" fmt, title, kside == "kvmkit" ? "kvmkit" : "kvmkit*", "QEMU", "kvmkit/QEMU"
        for (r = 1; r <= nrow; r++) {
            split(row[r], p, SUBSEP); m = p[1] SUBSEP p[2]
            if (!(m in mseen)) continue
            for (s = 1; s <= 2; s++) {
                side = (s == 1) ? "k" : "q"
                if (title == "median") {
                    split("", tmp)
                    for (j = 1; j <= C[side, m]; j++) tmp[j] = A[side, m, j]
                    v[s] = median(tmp, C[side, m] + 0)
                } else {
                    v[s] = "n/a"
                    for (j = 1; j <= C[side, m]; j++) if (v[s] == "n/a" || A[side, m, j] > v[s]) v[s] = A[side, m, j]
                }
            }
            ratio = (v[1] != "n/a" && v[2] != "n/a" && v[2] + 0 != 0) ? sprintf("%.2f", v[1] / v[2]) : "n/a"
            printf fmt, p[3], v[1] == "n/a" ? "n/a" : sprintf(p[4], v[1]),
                v[2] == "n/a" ? "n/a" : sprintf(p[4], v[2]), ratio
        }
    }
    function footer() {
        if (kside != "kvmkit") print "* --self-test: the kvmkit column is QEMU too (the ratios should be near 1)."
        printf "kvmkit: %d of %d runs ok; QEMU: %d of %d runs ok\n", good["k"], nr / 2, good["q"], nr / 2
    }
    # clk: net.sh logs its CLK_TCK in a HOST line after RUN.
    /^RUN / { kv(f); cur = f["name"]; order[++nr] = cur; hz[cur] = ""; clk = 100; next }
    /^BENCH calibrate / { kv(f); hz[cur] = f["tsc_hz"]; next }
    /^BENCH (kick|pio) / { kv(f); if (hz[cur] > 0) V[cur, $2, "exit"] = f["ticks"] / hz[cur] / f["n"] * 1e6; next }
    /^RESULT / { kv(f); rc[f["name"]] = f["rc"]; wall[f["name"]] = f["wall"]; next }
'
