#!/usr/bin/env bash
# Snapshot tests on the host's /dev/kvm (tier A): the migrate_pattern guest saved and restored
# three times in a row in new processes (2 vCPUs, then 1, then with virtio-rng and virtio-blk on
# PCI and on virtio-mmio, then with virtio-net on user networking and a virtio-console port on
# both, then on a TAP as root), a console client across HMP savevm and a restore, a snapshot
# replaced in place while the VM runs from it, how fast a 256 MiB guest restores, clean refusals
# of conflicting options and damaged snapshots, and damage behind valid CRCs (all sections, then
# virtio-net's and virtio-console's) that must never crash kvmkit.
#
# usage: snapshot.sh KVMKIT_BINARY GUESTS_DIR [NAME_GLOB]
#   Prints "PASS name", "SKIP name (what it needs)" or "FAIL name (why)" + the captured output
#   per test, then "N passed, N failed, N skipped". Exit status 0 all passed (some may have
#   been skipped), 1 some failed, 2 usage error, 77 without /dev/kvm.
#   Environment: SNAPSHOT_RESTORE_MAX_MS (default 5): the most the restore work may take;
#   SNAPSHOT_TAMPER_ROUNDS (default 30): damaged snapshots tried by the tamper test.
set -u

if [[ $# -lt 2 ]]; then
    echo "usage: $0 KVMKIT_BINARY GUESTS_DIR [NAME_GLOB]" >&2
    exit 2
fi
bin=$1 dir=$2 filter=${3:-*}
guest=$dir/migrate_pattern.elf
max_restore_ms=${SNAPSHOT_RESTORE_MAX_MS:-5}
if [[ ! -x $bin || ! -f $guest ]]; then
    echo "snapshot.sh: $bin or $guest missing" >&2
    exit 2
fi
if [[ ! -w /dev/kvm ]]; then
    echo "SKIP: /dev/kvm is missing or not writable"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/snapshot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0 why=() skip=

# Runs kvmkit with the given arguments in the background, output in $tmp/out (\r stripped
# later) and $tmp/err; until_pass N: sends SIGTERM once the guest printed pass N or more.
# Sets rc; last_pass is the last complete pass line seen, first_pass the first.
run_vm() { # until_pass kvmkit-args...
    local until=$1 pid i n
    shift
    : >"$tmp/raw"
    timeout -k 5 120 "$bin" run --serial stdio "$@" </dev/null >"$tmp/raw" 2>"$tmp/err" &
    pid=$!
    if ((until > 0)); then
        for ((i = 0; i < 1200; i++)); do
            n=$(tr -d '\r' <"$tmp/raw" | sed -n 's/^migrate_pattern: pass \([0-9]*\) .*/\1/p' | tail -1)
            [[ -n $n ]] && ((n >= until)) && break
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -TERM "$pid" 2>/dev/null
    fi
    wait "$pid"
    rc=$?
    tr -d '\r' <"$tmp/raw" >"$tmp/out"
    first_pass=$(sed -n 's/^migrate_pattern: pass \([0-9]*\) .*/\1/p' "$tmp/out" | head -1)
    last_pass=$(sed -n 's/^migrate_pattern: pass \([0-9]*\) .*/\1/p' "$tmp/out" | tail -1)
}

report() { # name
    if [[ -n $skip ]]; then
        echo "SKIP $1 ($skip)"
        skipped=$((skipped + 1))
    elif [[ ${#why[@]} -eq 0 ]]; then
        echo "PASS $1"
        passed=$((passed + 1))
    else
        local joined
        printf -v joined '%s; ' "${why[@]}"
        echo "FAIL $1 (${joined%; })"
        failed=$((failed + 1))
        tail -20 "$tmp/out" | sed 's/^/    | /'
        [[ -s $tmp/err ]] && grep -v "unhandled" "$tmp/err" | tail -20 | sed 's/^/    stderr| /'
    fi
    why=() skip=
}

expect_saved() { # what
    [[ $rc -eq 0 ]] || why+=("$1: exit status $rc, want 0 after the save")
    grep -q "FAIL" "$tmp/out" && why+=("$1: $(grep -m1 FAIL "$tmp/out")")
    grep -q "snapshot saved to" "$tmp/err" || why+=("$1: no 'snapshot saved' line")
}

# Saves and restores three times in a row, each restore continuing from the previous one and
# saving again a few passes later; the last restore runs the guest to its end. The guest checks
# every page's byte in every pass; the runner checks the passes continue without a gap.
save_restore_chain() { # cpus [extra kvmkit args...]
    local cpus=$1 prev=0 k
    shift
    run_vm 4 --kernel "$guest" --memory 128M --cpus "$cpus" "$@" --snapshot-at-exit "$tmp/s1"
    expect_saved "first run"
    cp "$tmp/out" "$tmp/transcript"
    ((cpus == 1)) || grep -q "migrate_pattern: 2 vCPUs" "$tmp/out" || why+=("the AP did not start")
    [[ $* != *--rng* ]] || grep -q "virtio-rng.*answers every pass" "$tmp/out" ||
        why+=("no virtio-rng found")
    [[ $* != *--disk* ]] || grep -q "a virtio-blk .* every pass" "$tmp/out" ||
        why+=("no virtio-blk found")
    [[ $* != *--net* ]] || grep -q "a virtio-net .* ARP reply every pass" "$tmp/out" ||
        why+=("no virtio-net found")
    [[ $* != *--vconsole* ]] || grep -q "a virtio-console .* every pass" "$tmp/out" ||
        why+=("no virtio-console found")
    prev=$last_pass
    for k in 1 2 3; do
        if ((k < 3)); then
            run_vm $((prev + 4)) --restore "$tmp/s$k" --snapshot-at-exit "$tmp/s$((k + 1))"
            expect_saved "restore $k"
        else
            run_vm 0 --restore "$tmp/s$k"
            [[ $rc -eq 33 ]] || why+=("restore $k: exit status $rc, want 33")
            grep -q "all 60 passes consistent" "$tmp/out" || why+=("restore $k: no final check")
        fi
        grep -q "FAIL" "$tmp/out" && why+=("restore $k: $(grep -m1 FAIL "$tmp/out")")
        ((${first_pass:-0} > prev)) || why+=("restore $k: no pass after pass $prev")
        prev=${last_pass:-0}
        cat "$tmp/out" >>"$tmp/transcript"
    done
    # The runs' outputs joined must read as one run: every pass once, in order (a save may cut
    # a line; the restored guest finishes it).
    local passes
    passes=$(sed -n 's/^migrate_pattern: pass \([0-9]*\) .*/\1/p' "$tmp/transcript" | tr '\n' ' ')
    [[ $passes == "$(seq -s ' ' 1 60) " ]] || why+=("the joined output's passes are: $passes")
    return 0
}

test_chain_2cpus() { save_restore_chain 2; }
test_chain_1cpu() { save_restore_chain 1; }
# With a virtio-rng and a virtio-blk disk the guest drives (polled requests every pass: the
# queues' rings, indices and doorbells must survive, and the disk must hold the sector the pass
# before the save wrote), on PCI and on virtio-mmio.
test_chain_virtio() {
    truncate -s 1M "$tmp/disk.img"
    save_restore_chain 2 --rng --disk "path=$tmp/disk.img"
}
test_chain_virtio_mmio() {
    truncate -s 1M "$tmp/disk.img"
    save_restore_chain 1 --rng --disk "path=$tmp/disk.img" --transport mmio
}
# With a virtio-net NIC on user-mode networking (the guest ARPs for the gateway every pass: a
# fresh libslirp answers after each restore) and a second one the guest leaves alone, and a
# virtio-console port the guest set up (MULTIPORT) and writes to every pass: each restored
# console must tell the driver that no client is connected (PORT_OPEN 0), which it can only do
# if it kept the port's state, so the guest counts 1 + 3 such messages at the end.
net_console_chain() { # transport
    truncate -s 1M "$tmp/disk.img"
    save_restore_chain 2 --rng --disk "path=$tmp/disk.img" --net user --net user \
        --vconsole "$tmp/con.sock" --transport "$1"
    local msgs
    msgs=$(sed -n 's/^migrate_pattern: pass 60 .* con_open_msgs \([0-9]*\)$/\1/p' "$tmp/transcript")
    [[ $msgs == 4 ]] || why+=("the console driver heard the host end's state ${msgs:-?} times, want 4")
}
test_chain_net_console() { net_console_chain pci; }
test_chain_net_console_mmio() { net_console_chain mmio; }

# A console client stays connected while HMP savevm saves the running VM three times: it must
# read every line the guest writes to the port once and in order, and the driver hears nothing
# new (the device kept its state through each stop and restart). The last snapshot restored,
# the socket listens again: the driver hears the host end closed, then a new client connect
# (2 + 2 messages at the end), and that client reads the restored guest's lines to the end.
test_console_client() {
    python3 - "$bin" "$guest" "$tmp" <<'PY' >"$tmp/py" 2>&1
import json, re, socket, subprocess, sys, time
kvmkit, guest, tmp = sys.argv[1:4]
why = []

def start(args, name):
    out = open("%s/%s.out" % (tmp, name), "wb")
    err = open("%s/%s.err" % (tmp, name), "wb")
    return subprocess.Popen([kvmkit, "run", "--serial", "stdio"] + args,
                            stdin=subprocess.DEVNULL, stdout=out, stderr=err)

def serial(name):
    return open("%s/%s.out" % (tmp, name), "rb").read().decode(errors="replace").replace("\r", "")

def wait_for(proc, name, pattern, limit=60):
    t = time.time()
    while time.time() - t < limit and proc.poll() is None:
        m = re.findall(pattern, serial(name), re.M)
        if m:
            return m
        time.sleep(0.05)
    return None

def client(path):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    c.settimeout(0.1)
    return c

def drain(c, proc, buf):
    while True:
        try:
            d = c.recv(65536)
            if not d:
                return buf
            buf += d
        except socket.timeout:
            if proc.poll() is not None:
                return buf

def lines(buf):
    return [int(n) for n in re.findall(rb"^migrate_pattern: pass (\d\d)\.+$", buf, re.M)]

def last_pass(name):
    m = re.findall(r"^migrate_pattern: pass (\d+) .* con_open_msgs (\d+)$", serial(name), re.M)
    return (int(m[-1][0]), int(m[-1][1])) if m else (0, 0)

con = tmp + "/con.sock"
src = start(["--kernel", guest, "--memory", "128M", "--net", "user", "--vconsole", con,
             "--control", "unix:" + tmp + "/qmp"], "src")
if not wait_for(src, "src", r"a virtio-console .* every pass"):
    sys.exit("the source's guest did not set up its console port")
c = client(con)
q = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
q.connect(tmp + "/qmp")
qf = q.makefile("rw")
qf.readline()
def qmp(cmd, **args):
    qf.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
    qf.flush()
    while True:
        r = json.loads(qf.readline())
        if "return" in r or "error" in r:
            return r
qmp("qmp_capabilities")
for k in (1, 2, 3):
    at = last_pass("src")[0]
    wait_for(src, "src", r"^migrate_pattern: pass %d " % (at + 3))
    r = qmp("human-monitor-command", **{"command-line": "savevm %s/sv%d" % (tmp, k)})
    if "error" in r or "snapshot saved" not in serial("src") + open(tmp + "/src.err").read():
        why.append("savevm %d: %r" % (k, r))
got = drain(c, src, b"")
src.wait(timeout=120)
if src.returncode != 33:
    why.append("source: exit status %d, want 33" % src.returncode)
if lines(got) != list(range(1, 61)):
    why.append("the source's client read passes %s, want 1..60 once each" % lines(got))
if last_pass("src") != (60, 2):
    why.append("source: last pass and console messages %s, want (60, 2)" % (last_pass("src"),))

dst = start(["--restore", tmp + "/sv3"], "dst")
if not wait_for(dst, "dst", r"^migrate_pattern: pass \d+ "):
    why.append("the restored guest does not run")
c2 = client(con)
got2 = drain(c2, dst, b"")
dst.wait(timeout=120)
if dst.returncode != 33:
    why.append("restored: exit status %d, want 33" % dst.returncode)
seen = lines(got2)
if not seen or seen != list(range(seen[0], 61)) or seen[0] < 3:
    why.append("the restored VM's client read passes %s, want the rest up to 60" % seen)
if last_pass("dst") != (60, 4):
    why.append("restored: last pass and console messages %s, want (60, 4)" % (last_pass("dst"),))
print("; ".join(why))
sys.exit(1 if why else 0)
PY
    local r=$?
    cp "$tmp/src.out" "$tmp/out" 2>/dev/null
    cat "$tmp/src.err" "$tmp/dst.err" >"$tmp/err" 2>/dev/null
    ((r == 0)) || { why+=("$(tail -1 "$tmp/py")"); sed "s/^/    py| /" "$tmp/py" | head -12; }
}

# With --net tap (root only), in a network namespace of its own whose kernel has the gateway's
# address 10.0.2.2 on the TAP and answers the guest's ARP; after each restore the NIC sends
# RARP self-announcements from its MAC (5 over 1.25 s; a run killed sooner sends fewer), which
# a packet socket on the TAP counts.
test_chain_tap() {
    local ns=kvmkit-snapshot-$$
    if ((EUID != 0)) || ! ip netns add "$ns" 2>/dev/null; then
        skip="needs root and ip netns"
        return 0
    fi
    local real_bin cap n
    real_bin=$(realpath "$bin")
    local bin=$tmp/kvmkit-in-netns # run_vm's kvmkit, for this test
    printf '#!/bin/sh\nexec ip netns exec %s %s "$@"\n' "$ns" "$real_bin" >"$bin"
    chmod +x "$bin"
    if ip -n "$ns" tuntap add dev tap0 mode tap && ip -n "$ns" addr add 10.0.2.2/24 dev tap0 &&
       ip -n "$ns" link set tap0 up; then
        ip netns exec "$ns" python3 - "$tmp/rarp" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8035))
s.bind(("tap0", 0))
n = 0
while True:
    f = s.recv(2048)
    if f[6:12] == bytes.fromhex("525400123456") and f[20:22] == b"\x00\x03":
        n += 1
        open(sys.argv[1], "w").write(str(n))
PY
        cap=$!
        save_restore_chain 1 --net tap,ifname=tap0
        kill "$cap" 2>/dev/null
        wait "$cap" 2>/dev/null
        n=$(cat "$tmp/rarp" 2>/dev/null || echo 0)
        echo "    RARP announcements seen on the TAP over 3 restores: $n"
        ((n >= 7)) || why+=("$n RARP announcements on the TAP, want 5 after the last restore and some after each other")
    else
        why+=("cannot set up a TAP in a network namespace")
    fi
    ip netns del "$ns"
}

# A VM restored from s1 saves back into s1 while its RAM is mapped from s1/memory: the new
# files must not change the running VM's memory, and s1 must then restore to the end.
test_save_in_place() {
    run_vm 3 --kernel "$guest" --memory 128M --cpus 1 --snapshot-at-exit "$tmp/s1"
    expect_saved "first run"
    run_vm $((last_pass + 3)) --restore "$tmp/s1" --snapshot-at-exit "$tmp/s1"
    expect_saved "restore saving in place"
    grep -q FAIL "$tmp/out" && why+=("$(grep -m1 FAIL "$tmp/out")")
    run_vm 0 --restore "$tmp/s1"
    [[ $rc -eq 33 ]] || why+=("second restore: exit status $rc, want 33")
}

# From process start to the vCPUs' first KVM_RUN, read off the KVMKIT_DEBUG time stamps.
test_restore_time() {
    run_vm 2 --kernel "$guest" --memory 256M --cpus 1 --snapshot-at-exit "$tmp/s1"
    expect_saved "first run"
    local i best_load=999 best_start=999 load start
    for i in 1 2 3 4 5; do
        KVMKIT_DEBUG=1 timeout 20 "$bin" run --restore "$tmp/s1" --serial none </dev/null \
            >/dev/null 2>"$tmp/err" &
        local pid=$!
        sleep 0.5
        kill -TERM "$pid" 2>/dev/null
        wait "$pid"
        load=$(sed -n 's/.*snapshot state loaded in \([0-9.]*\) ms.*/\1/p' "$tmp/err")
        start=$(sed -n 's/.*debug: +\([0-9.]*\) s: VM built.*starting the vCPUs.*/\1/p' "$tmp/err")
        [[ -n $load && -n $start ]] || { why+=("no restore time stamps in the debug output"); return; }
        start=$(awk -v s="$start" 'BEGIN { printf "%.1f", s * 1000 }')
        best_load=$(awk -v a="$best_load" -v b="$load" 'BEGIN { print (b < a) ? b : a }')
        best_start=$(awk -v a="$best_start" -v b="$start" 'BEGIN { print (b < a) ? b : a }')
    done
    echo "    restore of a 256 MiB guest (best of 5): snapshot loading ${best_load} ms, process" \
         "start to the first KVM_RUN ${best_start} ms"
    awk -v a="$best_load" -v m="$max_restore_ms" 'BEGIN { exit !(a <= m) }' ||
        why+=("restore work ${best_load} ms, want <= ${max_restore_ms} ms")
}

# Refusals: each must be one clear line and exit status 1, never a crash.
expect_refusal() { # what pattern kvmkit-args...
    local what=$1 pattern=$2
    shift 2
    timeout 20 "$bin" run "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [[ $rc -eq 1 ]] || why+=("$what: exit status $rc, want 1")
    grep -q -- "$pattern" "$tmp/err" || why+=("$what: no message with '$pattern'")
}

test_refusals() {
    run_vm 2 --kernel "$guest" --memory 128M --cpus 1 --snapshot-at-exit "$tmp/s1"
    expect_saved "first run"
    run_vm 2 --kernel "$guest" --memory 128M --cpus 1 --snapshot-at-exit "$tmp/s2"
    expect_saved "second run"
    expect_refusal "conflicting option" "leave out --memory" --restore "$tmp/s1" --memory 256M
    expect_refusal "missing snapshot" "cannot open the snapshot state" --restore "$tmp/none"
    cp -r "$tmp/s1" "$tmp/bad"
    cp "$tmp/s2/memory" "$tmp/bad/memory"
    expect_refusal "another snapshot's memory" "does not belong to" --restore "$tmp/bad"
    cp "$tmp/s1/memory" "$tmp/bad/memory"
    truncate -s 5000 "$tmp/bad/state"
    expect_refusal "truncated state" "ends early" --restore "$tmp/bad"
    cp "$tmp/s1/state" "$tmp/bad/state"
    printf '\xff' | dd of="$tmp/bad/state" bs=1 seek=3000 conv=notrunc status=none
    expect_refusal "flipped byte" "CRC check" --restore "$tmp/bad"
    printf 'nonsense' | dd of="$tmp/bad/state" bs=1 seek=0 conv=notrunc status=none
    expect_refusal "not a snapshot" "not a kvmkit snapshot" --restore "$tmp/bad"
}

# Flips a random byte inside a random section's payload of $1 and fixes that section's CRC, so
# the damage reaches the field checks (and KVM's) behind the CRC; prints the section's tag.
damage_section() { # state-file seed [tags: only sections with one of these, e.g. "VNET VCON"]
    python3 - "$1" "$2" "${3:-}" <<'PY'
import random, struct, sys, zlib
path, seed, tags = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
data = bytearray(open(path, "rb").read())
sections, off = [], 12
while off + 16 <= len(data):
    length = struct.unpack_from("<I", data, off + 12)[0]
    if length and (not tags or data[off:off + 4].decode("ascii", "replace") in tags):
        sections.append((off, length))
    off += 16 + length + 4
rng = random.Random(seed)
off, length = rng.choice(sections)
data[off + 16 + rng.randrange(length)] ^= rng.randrange(1, 256)
struct.pack_into("<I", data, off + 16 + length, zlib.crc32(bytes(data[off:off + 16 + length])))
open(path, "wb").write(data)
print(data[off:off + 4].decode("ascii", "replace"))
PY
}

# Rewrites $1's sections: "drop TAG" removes the first TAG section, "late TAG" moves it behind
# the section after it (a device's own state after its VIRT).
move_section() { # state-file op tag
    python3 - "$@" <<'PY'
import struct, sys
path, op, tag = sys.argv[1], sys.argv[2], sys.argv[3].encode()
data = open(path, "rb").read()
head, secs, off = data[:12], [], 12
while off + 16 <= len(data):
    end = off + 16 + struct.unpack_from("<I", data, off + 12)[0] + 4
    secs.append(data[off:end])
    off = end
i = next(i for i, s in enumerate(secs) if s[:4] == tag)
sec = secs.pop(i)
if op == "late":
    secs.insert(i + 1, sec)
open(path, "wb").write(head + b"".join(secs) + data[off:])
PY
}

# Restores the damaged snapshot $tmp/bad for a second, then sends SIGTERM. Damage behind a
# valid CRC must be refused (status 1 and a sentence naming the state file), crash the guest
# (status 1, "vCPU N stopped"; or 35 and the guest's own FAIL line) or go unnoticed (the guest
# runs on and kvmkit ends cleanly on the SIGTERM: status 0, "terminating on signal 15"). A
# crash, a sanitizer report, a kvmkit that needs SIGKILL or any other outcome fails the round.
tamper_round() { # round tag
    timeout --preserve-status -k 10 1 "$bin" run --restore "$tmp/bad" --serial "file:$tmp/serial" \
        </dev/null >/dev/null 2>"$tmp/err"
    rc=$?
    outcome[$rc]=$((${outcome[$rc]:-0} + 1))
    local ok=0
    case $rc in
    0) grep -q "kvmkit: terminating on signal 15" "$tmp/err" && ok=1 ;;
    1) grep -q "^kvmkit: $tmp/bad/state\|^kvmkit: vCPU [0-9]* stopped" "$tmp/err" && ok=1 ;;
    35) grep -q "FAIL" "$tmp/serial" && ok=1 ;;
    esac
    grep -q "Sanitizer\|runtime error" "$tmp/err" && ok=0
    if ((!ok)); then
        why+=("round $1 (section '$2'): exit status $rc without its message")
        sed 's/^/    stderr| /' "$tmp/err" | head -20
    fi
}

test_tamper() {
    truncate -s 1M "$tmp/disk.img"
    run_vm 2 --kernel "$guest" --memory 128M --cpus 2 --rng --disk "path=$tmp/disk.img" \
        --snapshot-at-exit "$tmp/s1"
    expect_saved "first run"
    local i tag counts=""
    declare -A outcome=()
    cp "$tmp/disk.img" "$tmp/disk.saved" # each round starts from the disk the snapshot saw
    for ((i = 1; i <= ${SNAPSHOT_TAMPER_ROUNDS:-30}; i++)); do
        rm -rf "$tmp/bad"
        cp -r "$tmp/s1" "$tmp/bad"
        cp "$tmp/disk.saved" "$tmp/disk.img"
        tag=$(damage_section "$tmp/bad/state" "$i")
        tamper_round "$i" "$tag"
    done
    for rc in "${!outcome[@]}"; do counts+=" status $rc: ${outcome[$rc]};"; done
    echo "    tamper outcomes:${counts%;}"
}

# The sections of virtio-net and virtio-console: damaged behind a valid CRC (as test_tamper),
# missing, or after their device's VIRT; the last two must be refused in one sentence.
test_tamper_net_console() {
    run_vm 2 --kernel "$guest" --memory 128M --cpus 1 --net user --vconsole "$tmp/con.sock" \
        --snapshot-at-exit "$tmp/s1"
    expect_saved "first run"
    local i tag counts=""
    declare -A outcome=()
    for ((i = 1; i <= ${SNAPSHOT_TAMPER_ROUNDS:-30}; i++)); do
        rm -rf "$tmp/bad"
        cp -r "$tmp/s1" "$tmp/bad"
        tag=$(damage_section "$tmp/bad/state" "$i" "VNET VCON")
        tamper_round "$i" "$tag"
    done
    for rc in "${!outcome[@]}"; do counts+=" status $rc: ${outcome[$rc]};"; done
    echo "    tamper outcomes:${counts%;}"
    local op t
    for op in drop late; do
        for t in VNET VCON; do
            rm -rf "$tmp/bad"
            cp -r "$tmp/s1" "$tmp/bad"
            move_section "$tmp/bad/state" "$op" "$t"
            expect_refusal "$op $t" "the file is damaged" --restore "$tmp/bad"
        done
    done
}

for name in chain_2cpus chain_1cpu chain_virtio chain_virtio_mmio chain_net_console chain_net_console_mmio chain_tap console_client save_in_place restore_time refusals tamper tamper_net_console; do
    # shellcheck disable=SC2053  # the filter is a glob on purpose
    [[ $name == $filter ]] || continue
    rm -rf "$tmp"/s* "$tmp/bad" "$tmp/disk.img"
    : >"$tmp/out"
    : >"$tmp/err"
    "test_$name"
    report "$name"
done
echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
