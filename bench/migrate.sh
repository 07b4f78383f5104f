#!/usr/bin/env bash
# Benchmark: live migration under kvmkit and under QEMU (-accel kvm -M pc), same tier A guests,
# side by side in one run: total time and downtime (each VMM's own query-migrate) for an idle
# guest (ticker: a 10 Hz timer tick) and a memory-writing one (migrate_pattern: a byte in every
# page of 48 MiB, each pass ~80 ms, so it dirties ~600 MB/s), with kvmkit/QEMU ratios.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bench/migrate.sh [KVMKIT_BINARY] [options]     (default binary: build/kvmkit)
  --runs N          migrations per VMM and guest (default 3), alternating kvmkit/QEMU
  --uri-kind K      unix (default) or tcp (127.0.0.1)
  --qemu BINARY     default qemu-system-x86_64
  --build DIR       the build directory with tests/guests/*.elf (default build)
Both VMMs: 128 MiB, 1 vCPU, source and target on this host, downtime-limit 300 ms (QEMU's
default), max-bandwidth 10 GB/s (in effect unlimited: with QEMU's default 128 MiB/s neither VMM
can converge on migrate_pattern, and QEMU without auto-converge never completes). The migration
starts once the guest runs (ticker: tick 5; migrate_pattern: pass 3). Each run is checked: the
idle guest answers a power button press on the target, migrate_pattern finishes its 60 passes
with every page right on the target. Medians per VMM and guest; ratio = kvmkit / QEMU (lower is
better). The host has 2 cores: the guest's vCPU spins on one, source and target share the other.
Exit status: 0, 1 if a run failed, 2 on a usage error.
USAGE
}
die() { printf 'bench/migrate: error: %s\n' "$*" >&2; exit 2; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kvmkit="" runs=3 uri_kind=unix qemu=qemu-system-x86_64 build=$repo/build
while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive number"; runs=$2; shift 2 ;;
    --uri-kind) [[ $# -ge 2 && ( $2 == unix || $2 == tcp ) ]] || die "--uri-kind wants unix or tcp"; uri_kind=$2; shift 2 ;;
    --qemu) [[ $# -ge 2 ]] || die "--qemu needs a value"; qemu=$2; shift 2 ;;
    --build) [[ $# -ge 2 ]] || die "--build needs a value"; build=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$kvmkit" ]] || die "one KVMKIT_BINARY only"; kvmkit=$1; shift ;;
    esac
done
kvmkit=$(realpath "${kvmkit:-$build/kvmkit}")
[[ -x "$kvmkit" ]] || die "not an executable: $kvmkit (build it: ninja -C build)"
# ticker is built with the control tests (tests/control/meson.build)
for g in control/ticker guests/migrate_pattern; do
    [[ -f $build/tests/$g.elf ]] || die "no $build/tests/$g.elf: build it first (ninja -C build)"
done
command -v "$qemu" >/dev/null 2>&1 || die "no QEMU: '$qemu' not found (Debian: apt-get install qemu-system-x86)"
[[ -w /dev/kvm ]] || die "/dev/kvm is missing or not writable"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-migrate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

python3 - "$kvmkit" "$qemu" "$build/tests" "$tmp" "$runs" "$uri_kind" "$repo/tests/control" <<'PYEOF'
import os, re, socket, statistics, subprocess, sys, time
kvmkit, qemu, guests, tmp, runs, uri_kind, control_dir = sys.argv[1:8]
runs = int(runs)
sys.path.insert(0, control_dir)
from qmp_client import QMP, start_vmm

GUESTS = {"idle (ticker)": ("control/ticker", r"ticker: tick 5\b"),
          "writing (migrate_pattern)": ("guests/migrate_pattern", r"migrate_pattern: pass 3 ")}
serial_no = [0]

def argv(vmm, elf, name, incoming):
    out, sock = os.path.join(tmp, name + ".out"), os.path.join(tmp, name + ".qmp")
    if vmm == "kvmkit":
        a = [kvmkit, "run", "--kernel", elf, "--memory", "128M", "--cpus", "1",
             "--serial", "file:" + out, "--control", "unix:" + sock]
    else:
        a = [qemu, "-accel", "kvm", "-M", "pc", "-m", "128", "-smp", "1", "-kernel", elf,
             "-nodefaults", "-display", "none", "-no-reboot", "-serial", "file:" + out,
             "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-qmp", "unix:%s,server,nowait" % sock]
    if incoming:
        a += ["--incoming", incoming] if vmm == "kvmkit" else ["-incoming", incoming]
    return a, out, sock

def read(path):
    try:
        return open(path, errors="replace").read().replace("\r", "")
    except OSError:
        return ""

def uri():
    if uri_kind == "tcp":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
        return "tcp:127.0.0.1:%d" % p
    serial_no[0] += 1
    return "unix:" + os.path.join(tmp, "m%d.sock" % serial_no[0])

def one_run(vmm, guest_key, k):
    elf_name, ready = GUESTS[guest_key]
    elf = os.path.join(guests, elf_name + ".elf")
    u = uri()
    tag = "%s-%s-%d" % (vmm, os.path.basename(elf_name), k)
    targv, tout, tsock = argv(vmm, elf, tag + "-dst", u)
    tgt = subprocess.Popen(targv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(tmp, tag + "-dst.err"), "wb"))
    sargv, sout, ssock = argv(vmm, elf, tag + "-src", None)
    src = None
    try:
        time.sleep(0.3)
        src = start_vmm(sargv, ssock)
        q = QMP(ssock, negotiate=True)
        end = time.time() + 60
        while not re.search(ready, read(sout)) and time.time() < end:
            time.sleep(0.02)
        q.cmd("migrate-set-parameters", {"max-bandwidth": 10 * 10**9, "downtime-limit": 300})
        r = q.cmd("migrate", {"uri": u})
        if "return" not in r:
            return None, "migrate: %s" % r
        info = {}
        while time.time() < end:
            info = q.cmd("query-migrate")["return"]
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.01)
        q.cmd("quit")
        src.wait(10)
        if info.get("status") != "completed":
            return None, "status %s %s" % (info.get("status"), info.get("error-desc", ""))
        # the guest must be whole on the target
        if elf_name.endswith("ticker"):
            tq = QMP(tsock, negotiate=True)
            tq.cmd("system_powerdown")
            rc = tgt.wait(20)
            ok = rc == 33 and "power button pressed" in read(tout)
        else:
            rc = tgt.wait(60)
            ok = rc == 33 and "all 60 passes consistent" in read(tout)
        if not ok:
            return None, "the guest on the target did not pass (status %s): %s" % (
                rc, read(tout).strip().splitlines()[-1:])
        return info, None
    finally:
        for p in (src, tgt):
            if p and p.poll() is None:
                p.kill(); p.wait()

results, failed = {}, 0
print("bench/migrate: %d runs each of kvmkit and QEMU (-accel kvm -M pc) over %s:, 128 MiB, 1 vCPU" % (runs, uri_kind))
print("%-28s %-7s %4s %10s %10s %8s %10s %6s" % ("guest", "vmm", "run", "total ms", "downtime", "setup", "MB sent", "syncs"))
for guest_key in GUESTS:
    for k in range(runs):
        for vmm in (("kvmkit", "qemu") if k % 2 == 0 else ("qemu", "kvmkit")):
            info, err = one_run(vmm, guest_key, k)
            if err:
                failed += 1
                print("%-28s %-7s %4d  FAILED: %s" % (guest_key, vmm, k + 1, err))
                continue
            results.setdefault((guest_key, vmm), []).append(info)
            print("%-28s %-7s %4d %10d %10d %8d %10.1f %6d" % (guest_key, vmm, k + 1, info["total-time"],
                  info["downtime"], info.get("setup-time", 0), info["ram"]["transferred"] / 1e6,
                  info["ram"]["dirty-sync-count"]))
            sys.stdout.flush()

def med(guest_key, vmm, key):
    v = [i[key] for i in results.get((guest_key, vmm), [])]
    return statistics.median(v) if v else None

print("\nmedians (ms)                 %12s %12s %14s %12s %12s %14s" % ("kvmkit total", "QEMU total", "ratio total", "kvmkit down", "QEMU down", "ratio downtime"))
for guest_key in GUESTS:
    kt, qt = med(guest_key, "kvmkit", "total-time"), med(guest_key, "qemu", "total-time")
    kd, qd = med(guest_key, "kvmkit", "downtime"), med(guest_key, "qemu", "downtime")
    def ratio(a, b):
        return "%.2f" % (a / b) if a is not None and b else "-"
    def f(x):
        return "%d" % x if x is not None else "-"
    print("%-28s %12s %12s %14s %12s %12s %14s" % (guest_key, f(kt), f(qt), ratio(kt, qt), f(kd), f(qd), ratio(kd, qd)))
sys.exit(1 if failed else 0)
PYEOF
