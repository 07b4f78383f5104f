#!/usr/bin/env bash
# Benchmark: virtio-net over a TAP interface under kvmkit and under QEMU (-accel kvm -M pc,
# vhost=off), same guest, alternately.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bench/net.sh [KVMKIT_BINARY] [options]        (default binary: build/kvmkit)
       bench/net.sh --self-test [options]           (QEMU on both sides: proves the benchmark itself)
       bench/net.sh --from-log FILE                 (run nothing: the tables of an earlier run)
  --runs N          runs per VMM (default 5), alternating kvmkit/QEMU (ABBA order)
  --ms N            measured window per test in the guest (default 1000; each test first runs
                    --warm-ms N of the same load, default 200)
  --sizes LIST      frame sizes in bytes, 60..1514, Ethernet header included, no FCS
                    (default 64,1514): a TX and an RX test for each
  --no-rx, --no-tx  leave out one direction
  --rx-buf N        the guest's receive buffer size (default 1536, as Linux's mergeable buffers)
  --exits N         doorbell and port-I/O exits timed for the floors (default 10000; 0: none)
  --ifname NAME     the TAP interface to create and remove (default kvmkit-bench0; it must
                    not exist yet)
  --python BINARY   the RX sender's interpreter (default python3; without one RX is skipped)
  --no-pin          let the scheduler place the threads (default: the vCPU thread alone on the
                    last CPU, the VMM's other threads and the sender on the others)
  --qemu BINARY     default qemu-system-x86_64
  --build DIR       the build directory with tests/guests/bench_net.elf (default build)
  --log FILE        keep the guests' output and the host's samples here (default BUILD/bench-net.log)
Needs root (CAP_NET_ADMIN): it creates the TAP interface, brings it up with no address and
IPv6 off (so the host sends nothing of its own into it), and removes it at exit.
The guest (tests/guests/bench_net.c) sets up the NIC in ring 0 (features as Linux takes them:
MRG_RXBUF, EVENT_IDX, the offloads; no control queue), then runs each test in 64-bit ring 3,
polling the used rings (no interrupts); time is the guest's TSC, calibrated against the PIT.
  txN: the transmit queue (256 entries) kept full of N-byte frames to a dummy MAC, EtherType
       0x88b5, one descriptor each; every completion is refilled at once. The host drops them
       (no protocol takes that EtherType).
  rxN: all 256 receive buffers kept posted; a sender on the host (Python, sendmmsg on an
       AF_PACKET socket bound to the TAP) offers N-byte frames to the guest's MAC as fast as the
       TAP takes them: when the TAP's queue (txqueuelen) is full it backs off for 0.5 ms, so it
       leaves the CPU to the VMM instead of spinning on drops. The guest counts its frames.
Threads are pinned (taskset; without it the scheduler often put the I/O thread on the
spinning vCPU's core for a whole test, halving both): the vCPU thread gets the last CPU to
itself, the VMM's other threads and the RX sender share the rest (one core on a 2-core host).
The guest prints a mark at both ends of each measured window, from ring 3; the runner samples
the TAP's counters and the VMM's threads' CPU time when it reads them:
  host kfr/s  TX: /sys/class/net/IF/statistics/rx_packets (what the tap took from the VMM),
              RX: tx_packets (what the VMM read from the tap), per second between the marks
  vcpu, io%   CPU time of the VMM's vCPU thread, and of its other threads (I/O thread, main
              loop), between the marks, as % of one core; io also as microseconds per frame
  snd%        the RX sender's CPU time, % of one core
  others      CPU time of everything else on the host (other processes, interrupts, steal),
              % of one core, the worst window of the run: other load disturbing that run
  txcheck     every frame the guest saw completed (warm-ups included) against the tap's
              rx_packets over the whole VM: "ok" when equal, else the difference
Then 'doorbell': transmit doorbell writes with nothing queued (the ioeventfd exit, KVM in both
VMMs) and 'pio': writes to the pc-testdev port 0xe0 (an exit to the VMM process), the floors.
Medians per VMM with kvmkit/QEMU ratios (frames/s and MiB/s: higher is better; us/frame,
kicks and exit costs: lower is better), then the best run of each VMM.
Exit status: 0, or 1 if a run failed (its guest did not PASS), 2 on a usage or set-up error.
USAGE
}
bench=net
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sizes=64,1514 do_tx=1 do_rx=1 rx_buf=1536 exits=10000 ifname=kvmkit-bench0 python=python3 pin=1
while [[ $# -gt 0 ]]; do
    case "$1" in
    --sizes) need "$@"; sizes=$2; shift 2 ;;
    --no-rx) do_rx=0; shift ;;
    --no-tx) do_tx=0; shift ;;
    --rx-buf) need "$@"; rx_buf=$2; shift 2 ;;
    --exits) need "$@"; exits=$2; shift 2 ;;
    --ifname) need "$@"; ifname=$2; shift 2 ;;
    --python) need "$@"; python=$2; shift 2 ;;
    --no-pin) pin=0; shift ;;
    *) bench_opt "$@"; shift "$bench_shift" ;;
    esac
done

# --- the tables, from a log ---------------------------------------------------------------
# The log: "RUN name=kvmkit-1 cmd=...", the guest's output (BENCH lines), the runner's samples
# (HOST lines at the marks and around the VM, SENDER lines), "RESULT name=... rc=N wall=S".
table() { # log kside
    tr -d '\r' < "$1" | awk -v kside="$2" "$bench_awk"'
    function addtest(t) { if (!(t in tseen)) { tseen[t] = 1; torder[++nt] = t } }
    /^HOST clk_tck=/ { kv(f); clk = f["clk_tck"]; next }
    /^BENCH net / {
        kv(f); t = f["name"]; s = (hz[cur] > 0) ? f["ticks"] / hz[cur] : 0
        addtest(t); dir[t] = f["dir"]
        if (s <= 0 || f["frames"] == 0) next
        V[cur, t, "kfps"] = f["frames"] / s / 1000; V[cur, t, "mbs"] = f["bytes"] / s / 1048576
        V[cur, t, "kpk"] = f["kicks"] / f["frames"] * 1000
        other[cur] += f["other"]; nsplit[cur] += f["split"]
        next
    }
    /^BENCH txtotal / { kv(f); txtotal[cur] = f["frames"]; next }
    /^HOST mark=/ {
        kv(f); t = f["name"]; m = f["mark"]
        for (k in f) S[cur, t, m, k] = f[k]
        if (m != "e" || !((cur, t, "s", "t") in S)) next
        dt = f["t"] - S[cur, t, "s", "t"]
        if (dt <= 0) next
        cnt = (f["dir"] == "tx") ? "rx_packets" : "tx_packets"
        n = f[cnt] - S[cur, t, "s", cnt]
        V[cur, t, "hkfps"] = n / dt / 1000
        io = (f["io_ticks"] - S[cur, t, "s", "io_ticks"]) / clk
        V[cur, t, "io"] = io / dt * 100
        V[cur, t, "vcpu"] = (f["vcpu_ticks"] - S[cur, t, "s", "vcpu_ticks"]) / clk / dt * 100
        if ("busy_ticks" in f) {
            o = f["busy_ticks"] - S[cur, t, "s", "busy_ticks"] - (f["vcpu_ticks"] - S[cur, t, "s", "vcpu_ticks"])
            o -= (f["io_ticks"] - S[cur, t, "s", "io_ticks"]) + (f["snd_ticks"] - S[cur, t, "s", "snd_ticks"])
            o = o / clk / dt * 100
            if (!(cur in others) || o > others[cur]) others[cur] = o
        }
        if (n > 0) V[cur, t, "iouf"] = io / n * 1e6
        if (f["dir"] == "rx") {
            V[cur, t, "snd"] = (f["snd_ticks"] - S[cur, t, "s", "snd_ticks"]) / clk / dt * 100
            V[cur, t, "drop"] = f["tx_dropped"] - S[cur, t, "s", "tx_dropped"]
        }
        next
    }
    /^HOST vm=start / { kv(f); vm0[cur] = f["rx_packets"]; next }
    /^HOST vm=end / { kv(f); vm1[cur] = f["rx_packets"]; next }
    function txcheck(n,   d) {
        if (!(n in txtotal) || !(n in vm0) || !(n in vm1)) return "n/a"
        d = (vm1[n] - vm0[n]) - txtotal[n]
        return d == 0 ? "ok" : sprintf("%+d", d)
    }
    END {
        # Per run, the guest: frames/s and MiB/s of each test, the exit floors.
        printf "\n%-10s %-6s %5s", "run", "status", "wall"
        for (i = 1; i <= nt; i++) printf " %8s %8s", torder[i], torder[i]
        printf " %8s %8s %7s\n", "doorbell", "pio", "txcheck"
        printf "%-10s %-6s %5s", "", "", "s"
        for (i = 1; i <= nt; i++) printf " %8s %8s", "kfr/s", "MiB/s"
        printf " %8s %8s %7s\n", "us/exit", "us/exit", ""
        for (r = 1; r <= nr; r++) {
            n = order[r]; ok = (rc[n] == 33)
            printf "%-10s %-6s %5s", n, ok ? "ok" : "rc=" rc[n], wall[n]
            for (i = 1; i <= nt; i++) printf " %8s %8s", cell(n, torder[i], "kfps", "%.1f"), cell(n, torder[i], "mbs", "%.1f")
            printf " %8s %8s %7s\n", cell(n, "kick", "exit", "%.1f"), cell(n, "pio", "exit", "%.1f"), txcheck(n)
            if (ok) collect(n)
        }
        # Per run, the host: the tap counters, the VMM threads CPU time, the RX sender.
        printf "\n%-10s", "host view"
        for (i = 1; i <= nt; i++) {
            t = torder[i]
            if (dir[t] == "rx") printf " %28s", t " (sender, drops)"
            else printf " %17s", t
        }
        printf " %7s\n%-10s", "others", ""
        for (i = 1; i <= nt; i++) {
            if (dir[torder[i]] == "rx") printf " %7s %4s %4s %4s %5s", "kfr/s", "vcpu", "io%", "snd%", "drops"
            else printf " %7s %4s %4s", "kfr/s", "vcpu", "io%"
        }
        printf " %7s\n", "% max"
        for (r = 1; r <= nr; r++) {
            n = order[r]
            printf "%-10s", n
            for (i = 1; i <= nt; i++) {
                t = torder[i]
                printf " %7s %4s %4s", cell(n, t, "hkfps", "%.1f"), cell(n, t, "vcpu", "%.0f"), cell(n, t, "io", "%.0f")
                if (dir[t] == "rx") printf " %4s %5s", cell(n, t, "snd", "%.0f"), cell(n, t, "drop", "%d")
            }
            printf " %7s\n", (n in others) ? sprintf("%.0f", others[n]) : "n/a"
        }
        nrow = 0
        for (i = 1; i <= nt; i++) {
            t = torder[i]
            row[++nrow] = t SUBSEP "kfps" SUBSEP t " kframes/s" SUBSEP "%.1f"
            row[++nrow] = t SUBSEP "mbs" SUBSEP t " MiB/s" SUBSEP "%.1f"
        }
        nbest = nrow
        for (i = 1; i <= nt; i++) {
            t = torder[i]
            row[++nrow] = t SUBSEP "hkfps" SUBSEP t " host kframes/s" SUBSEP "%.1f"
            row[++nrow] = t SUBSEP "io" SUBSEP t " VMM io CPU %" SUBSEP "%.0f"
            row[++nrow] = t SUBSEP "iouf" SUBSEP t " VMM io us/frame" SUBSEP "%.2f"
            row[++nrow] = t SUBSEP "kpk" SUBSEP t " kicks/kframe" SUBSEP "%.2f"
            if (dir[t] == "rx") row[++nrow] = t SUBSEP "snd" SUBSEP t " sender CPU %" SUBSEP "%.0f"
        }
        row[++nrow] = "kick" SUBSEP "exit" SUBSEP "doorbell exit us" SUBSEP "%.1f"
        row[++nrow] = "pio" SUBSEP "exit" SUBSEP "pio exit us" SUBSEP "%.1f"
        summary("median", nrow, 10)
        # The best run of each side: on a shared 2-core host, the one least disturbed.
        summary("best run", nbest, 10)
        for (r = 1; r <= nr; r++) {
            n = order[r]
            if (other[n] || nsplit[n])
                printf "%s: %d frames received that were not the benchmark'"'"'s; %d frames whose first buffer was used before the rest of its num_buffers\n", n, other[n], nsplit[n]
        }
        footer()
    }'
}

bench_from_log

# --- checks -------------------------------------------------------------------------------
bench_check_opts
num --rx-buf "$rx_buf"
[[ "$exits" =~ ^[0-9]+$ ]] || die "--exits wants a number, not '$exits'"
(( rx_buf >= 64 && rx_buf <= 4096 )) || die "--rx-buf wants 64..4096"
[[ "$sizes" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--sizes wants a comma-separated list of numbers, not '$sizes'"
IFS=, read -ra size_list <<< "$sizes"
declare -A size_seen=()
for s in "${size_list[@]}"; do
    (( 10#$s >= 60 && 10#$s <= 1514 )) || die "--sizes: $s is not a frame size from 60 to 1514"
    [[ -z "${size_seen[$((10#$s))]:-}" ]] || die "--sizes: $s is there twice"
    size_seen[$((10#$s))]=1
done
(( do_tx || do_rx )) || die "--no-tx and --no-rx leave nothing to measure"
[[ ${#ifname} -ge 1 && ${#ifname} -le 15 && "$ifname" =~ ^[A-Za-z0-9_.-]+$ ]] ||
    die "--ifname: '$ifname' is not an interface name (1 to 15 of A-Za-z0-9_.-)"
(( BASH_VERSINFO[0] >= 5 )) || die "needs bash 5 (EPOCHREALTIME)"

bench_check_vmms bench_net
command -v ip >/dev/null 2>&1 || die "no 'ip' command (Debian: apt-get install iproute2)"
[[ -c /dev/net/tun ]] || die "/dev/net/tun is missing (modprobe tun)"
(( EUID == 0 )) || die "needs root (CAP_NET_ADMIN) to create the TAP interface $ifname"
[[ ! -e /sys/class/net/$ifname ]] ||
    die "interface $ifname exists already (another run? remove it: ip link del $ifname, or use --ifname)"

# The RX sender: a Python 3 interpreter with ctypes (the real one, not a pyenv shim: it is
# started once per RX test and the guest waits for it).
py=""
if (( do_rx )); then
    if py=$(command -v "$python" 2>/dev/null) &&
       py=$("$py" -c 'import ctypes, socket, sys; socket.AF_PACKET; print(sys.executable)' 2>/dev/null) &&
       [[ -x "$py" ]]; then
        :
    else
        echo "bench/net: no usable '$python' (Python 3 with ctypes and AF_PACKET): the RX tests are skipped" >&2
        py="" do_rx=0
        (( do_tx )) || die "nothing left to measure without RX"
    fi
fi

# The CPUs: the vCPU thread gets the last one we may use, everything else the others.
vcpu_cpu="" io_cpus=""
if (( pin )); then
    command -v taskset >/dev/null 2>&1 || die "no taskset (Debian: util-linux); or use --no-pin"
    allowed=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status)
    cpus=()
    IFS=, read -ra ranges <<< "$allowed"
    for r in "${ranges[@]}"; do
        if [[ $r =~ ^([0-9]+)-([0-9]+)$ ]]; then
            for ((c = BASH_REMATCH[1]; c <= BASH_REMATCH[2]; c++)); do cpus+=("$c"); done
        elif [[ $r =~ ^[0-9]+$ ]]; then
            cpus+=("$r")
        fi
    done
    if (( ${#cpus[@]} < 2 )); then
        echo "bench/net: only CPU(s) '$allowed' to run on: no pinning" >&2
        pin=0
    else
        vcpu_cpu=${cpus[-1]}
        io_cpus=$(IFS=,; echo "${cpus[*]:0:${#cpus[@]}-1}")
    fi
fi

tests=""
(( do_tx )) && for s in "${size_list[@]}"; do tests+="${tests:+,}tx$((10#$s))"; done
(( do_rx )) && for s in "${size_list[@]}"; do tests+="${tests:+,}rx$((10#$s))"; done
mac=52:54:00:6b:76:01
log=${log:-$build/bench-net.log}
clk_tck=$(getconf CLK_TCK)
stats=/sys/class/net/$ifname/statistics

# --- set-up and clean-up ------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-bench-net.XXXXXX")
tap_made=0
cleanup() {
    local pid
    for f in "$tmp"/sender.pid "$tmp"/vmm.pid; do
        if [[ -s "$f" ]] && read -r pid < "$f" && [[ "$pid" =~ ^[0-9]+$ ]]; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    if (( tap_made )) && [[ -e /sys/class/net/$ifname ]]; then
        ip link del "$ifname" 2>/dev/null || echo "bench/net: warning: could not remove $ifname (ip link del $ifname)" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip tuntap add dev "$ifname" mode tap || die "could not create the TAP interface $ifname"
tap_made=1
if [[ -w /proc/sys/net/ipv6/conf/$ifname/disable_ipv6 ]]; then
    echo 1 > "/proc/sys/net/ipv6/conf/$ifname/disable_ipv6"
fi
ip link set dev "$ifname" up || die "could not bring $ifname up"
txqlen=$(cat "/sys/class/net/$ifname/tx_queue_len")

# The RX sender: frames to the guest's MAC from 02:6b:76:6d:00:01, EtherType 0x88b5 and the
# guest's magic (tests/guests/bench_net.h), 64 per sendmmsg; when the tap's queue is full
# (ENOBUFS, the frame dropped), 0.5 ms of sleep. Stops on SIGTERM and prints its counts.
cat > "$tmp/send.py" <<'PY'
import ctypes, errno, signal, socket, sys, time

ifname, dst, size = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), int(sys.argv[3])
frame = dst + bytes.fromhex('026b766d0001') + b'\x88\xb5' + b'KVMN'
frame += bytes(size - len(frame))
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
try:
    sock.setsockopt(263, 20, 1)   # SOL_PACKET, PACKET_QDISC_BYPASS: straight to the tap
except OSError:
    pass
sock.bind((ifname, 0))


class Stop(Exception):
    pass


def stop(signum, frame_):
    raise Stop


class IoVec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [('name', ctypes.c_void_p), ('namelen', ctypes.c_uint32),
                ('iov', ctypes.POINTER(IoVec)), ('iovlen', ctypes.c_size_t),
                ('control', ctypes.c_void_p), ('controllen', ctypes.c_size_t),
                ('flags', ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [('hdr', MsgHdr), ('len', ctypes.c_uint)]


BATCH = 64
libc = ctypes.CDLL(None, use_errno=True)
sendmmsg = libc.sendmmsg
sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(MMsgHdr), ctypes.c_uint, ctypes.c_int]
data = ctypes.create_string_buffer(frame, len(frame))
iov = IoVec(ctypes.cast(data, ctypes.c_void_p), len(frame))
msgs = (MMsgHdr * BATCH)()
for m in msgs:
    m.hdr.iov = ctypes.pointer(iov)
    m.hdr.iovlen = 1
fd = sock.fileno()
sent = full = 0
failure = ''
signal.signal(signal.SIGTERM, stop)
t0 = time.monotonic()
try:
    while True:
        n = sendmmsg(fd, msgs, BATCH, 0)
        if n > 0:
            sent += n
        elif ctypes.get_errno() in (errno.ENOBUFS, errno.EAGAIN):
            full += 1
            time.sleep(0.0005)
        else:
            failure = 'sendmmsg: ' + errno.errorcode.get(ctypes.get_errno(), '?')
            break
except Stop:
    pass
print('SENDER size=%d sent=%d full=%d s=%.3f%s' % (size, sent, full, time.monotonic() - t0,
      ' failed=' + failure if failure else ''), flush=True)
PY

# --- one VM -------------------------------------------------------------------------------
append="ms=$ms warm_ms=$warm_ms rx_buf=$rx_buf exits=$exits tests=$tests"
ntests=$(( $(tr -cd , <<< "$tests" | wc -c) + 1 ))
# Guest time: the tests (warm-up, window, RX: up to 5 s for the sender), calibration, the exit
# loops (pio costs ~100 us here); plus boot.
timeout_s=$(( 60 + ntests * (warm_ms + ms + 5000) / 1000 + exits / 5000 ))

vmm_cmd() { # side -> the array cmd
    bench_vmm_cmd "$1" --net "tap,ifname=$ifname,mac=$mac" -- \
        -name "bench-net,debug-threads=on" \
        -netdev "tap,id=n0,ifname=$ifname,script=no,downscript=no,vhost=off" \
        -device "virtio-net-pci,netdev=n0,disable-legacy=on,mac=$mac,romfile="
}

# CPU ticks of a VMM's vCPU threads (kvmkit: vcpuN; QEMU with debug-threads: CPU N/KVM) and
# of all its other threads.
cpu_ticks() { # pid -> vcpu io
    local vc=0 other=0 t line comm rest
    local -a f
    for t in /proc/"$1"/task/*; do
        read -r line < "$t/stat" 2>/dev/null || continue
        comm=${line#*(}; comm=${comm%)*}
        rest=${line##*) }
        read -ra f <<< "$rest"
        if [[ $comm == vcpu* || $comm == "CPU "*/KVM ]]; then
            vc=$(( vc + f[11] + f[12] ))
        else
            other=$(( other + f[11] + f[12] ))
        fi
    done
    echo "$vc $other"
}

proc_ticks() { # pid -> utime + stime, 0 if gone
    local line rest
    local -a f
    read -r line < "/proc/$1/stat" 2>/dev/null || { echo 0; return; }
    rest=${line##*) }
    read -ra f <<< "$rest"
    echo $(( f[11] + f[12] ))
}

# Pins the VMM's threads (see pin above): all of them to io_cpus, then its vCPU threads to
# vcpu_cpu. Again before every test, for threads started late.
pin_vmm() { # pid
    local t comm
    (( pin )) && [[ -n "$1" ]] || return 0
    taskset -a -p -c "$io_cpus" "$1" >/dev/null 2>&1 || return 0
    for t in /proc/"$1"/task/*; do
        read -r comm < "$t/comm" 2>/dev/null || continue
        if [[ $comm == vcpu* || $comm == "CPU "*/KVM ]]; then
            taskset -p -c "$vcpu_cpu" "${t##*/}" >/dev/null 2>&1 || true
        fi
    done
}

# Reads the VMM's output: copies it, samples the host at the guest's marks, and runs the RX
# sender from a test's "begin" to its end mark.
monitor() {
    local line name="" dir="" size="" sender="" vmm="" rxp txp txd vc io snd busy
    local -a cpu
    local -a on_io=()
    (( pin )) && on_io=(taskset -c "$io_cpus")
    stop_sender() {
        [[ -n "$sender" ]] || return 0
        kill -TERM "$sender" 2>/dev/null || true
        wait "$sender" 2>/dev/null || true
        cat "$tmp/sender.out"
        sender=""
        : > "$tmp/sender.pid"
    }
    while IFS= read -r line; do
        line=${line%$'\r'}
        printf '%s\n' "$line"
        if [[ -z "$vmm" ]]; then
            read -r vmm < "$tmp/vmm.pid" || vmm=""
            pin_vmm "$vmm"
        fi
        case $line in
        "BENCH begin "*)
            pin_vmm "$vmm"
            name=${line#*name=}; name=${name%% *}
            dir=${line#*dir=}; dir=${dir%% *}
            size=${line#*size=}; size=${size%% *}
            if [[ $dir == rx ]]; then
                "${on_io[@]}" "$py" "$tmp/send.py" "$ifname" "$mac" "$size" </dev/null >"$tmp/sender.out" 2>&1 &
                sender=$!
                echo "$sender" > "$tmp/sender.pid"
            fi
            ;;
        "BENCH mark "?)
            read -r rxp < "$stats/rx_packets"; read -r txp < "$stats/tx_packets"
            read -r txd < "$stats/tx_dropped"
            read -r vc io <<< "$(cpu_ticks "${vmm:-0}")"
            snd=0
            [[ -n "$sender" ]] && snd=$(proc_ticks "$sender")
            read -ra cpu < /proc/stat   # cpu user nice system idle iowait irq softirq steal
            busy=$(( cpu[1] + cpu[2] + cpu[3] + cpu[6] + cpu[7] + cpu[8] ))
            echo "HOST mark=${line#BENCH mark } name=$name dir=$dir t=$EPOCHREALTIME rx_packets=$rxp" \
                 "tx_packets=$txp tx_dropped=$txd vcpu_ticks=$vc io_ticks=$io snd_ticks=$snd busy_ticks=$busy"
            if [[ $line == "BENCH mark e" ]]; then stop_sender; fi
            ;;
        "BENCH net "*)
            stop_sender
            ;;
        esac
    done
    stop_sender
}

run_one() { # side name
    local -a cmd
    local rc t0 t1 rx0 rx1
    vmm_cmd "$1"
    echo "RUN name=$2 cmd=${cmd[*]}" >> "$run_log"
    echo "HOST clk_tck=$clk_tck txqueuelen=$txqlen" >> "$run_log"
    : > "$tmp/vmm.pid"
    read -r rx0 < "$stats/rx_packets"
    t0=$(date +%s.%N)
    # In the background, waited for: a signal to the script then acts at once (the EXIT trap
    # stops the VMM and the sender through their pid files and removes the tap).
    {
        set +e
        # shellcheck disable=SC2016  # $$, $0 and $@ are the inner shell's: it writes the
        # VMM's pid (its own, kept by exec) for the CPU samples, the pinning and the clean-up
        timeout -k 5 "$timeout_s" bash -c 'echo $$ > "$0"; exec "$@"' "$tmp/vmm.pid" "${cmd[@]}" \
            </dev/null 2>"$tmp/err" | monitor > "$tmp/out"
        echo "${PIPESTATUS[0]}" > "$tmp/rc"
    } &
    wait $!
    read -r rc < "$tmp/rc"
    t1=$(date +%s.%N)
    : > "$tmp/vmm.pid"
    read -r rx1 < "$stats/rx_packets"
    {
        echo "HOST vm=start rx_packets=$rx0"
        cat "$tmp/out"
        sed 's/^/stderr| /' "$tmp/err"
        echo "HOST vm=end rx_packets=$rx1"
        bench_result "$2" "$rc" "$t0" "$t1"
    } >> "$run_log"
    bench_check_rc "$2" "$rc"
}

bench_start
echo "bench/net: $runs runs each of $kside and QEMU (-accel kvm -M pc, vhost=off), ABBA order, on TAP $ifname (txqueuelen $txqlen)"
echo "bench/net: guest command line: $append"
(( do_rx )) && echo "bench/net: RX sender: $py"
if (( pin )); then
    echo "bench/net: pinned: vCPU thread on CPU $vcpu_cpu; the VMM's other threads and the sender on CPU(s) $io_cpus"
fi
bench_rounds
cat <<'NOTES'
What limits the figures: the vCPU thread spins in ring 3 on a core of its own for the whole run
(pinned), so the guest is not the limit: TX needs a kick every few thousand frames (the device
drains with doorbells off) and RX buffers are reposted at once. Everything the VMM does for the
NIC (its I/O thread or main loop: one writev or read on the tap per frame, and the host's network
stack behind it, charged to that thread) runs on the other core:
 - TX: io% near 100 means the VMM's I/O side was the bottleneck; its 'io us/frame' (CPU per
   frame) is the cost to compare, and the host kframes/s should equal the guest's.
 - RX: the sender (Python; its kernel work per frame is about the VMM's) shares that core, so
   io% + snd% near 100 and the rate is about half of what the VMM alone could take. 'drops'
   are frames the tap refused with its queue full (txqueuelen): the sender offered more than the
   VMM took, so the VMM, not the sender, set the pace. Compare 'io us/frame' for the VMMs' costs.
 - 'others' of more than ~10% means other load took CPU from that run: trust the best runs and
   'io us/frame' more than the medians then, or rerun with more --runs when the host is quiet.
NOTES
echo "Host load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_end
