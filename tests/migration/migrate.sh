#!/usr/bin/env bash
# Live migration tests on the host's /dev/kvm (tier A): the migrate_pattern guest (which checks
# every page it wrote, every pass) moved between kvmkit processes over unix:, tcp:, exec: and
# file:; with a virtio-rng and a virtio-blk disk on shared storage; with virtio-net and a
# virtio-console port; with block migration to a target with its own empty disk; through the
# human monitor (migrate -d, info migrate, then savevm DIR and --restore DIR); onward along a
# chain of three processes; cancelled mid-way (the source runs on) and retried; and refused
# cleanly by a target started with a different --memory or given a cut, damaged or foreign
# stream. The guest must finish with its check passed on the last target; no process may print
# a sanitizer report (run it with a build-sanitize binary too).
#
# usage: migrate.sh KVMKIT_BINARY GUESTS_DIR [NAME_GLOB]
#   Prints "PASS name" or "FAIL name (why)" per test, then "N passed, N failed, N skipped".
#   Exit status 0 all passed, 1 some failed, 2 usage error, 77 without /dev/kvm.
set -u

if [[ $# -lt 2 ]]; then
    echo "usage: $0 KVMKIT_BINARY GUESTS_DIR [NAME_GLOB]" >&2
    exit 2
fi
bin=$(realpath "$1") dir=$2 filter=${3:-*}
guest=$(realpath "$dir/migrate_pattern.elf" 2>/dev/null)
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -x $bin || ! -f $guest ]]; then
    echo "migrate.sh: $1 or $dir/migrate_pattern.elf missing" >&2
    exit 2
fi
if [[ ! -w /dev/kvm ]]; then
    echo "SKIP: /dev/kvm is missing or not writable"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/migrate.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

python3 - "$bin" "$guest" "$tmp" "$filter" "$here/../control" <<'PYEOF'
import fnmatch, os, re, shutil, socket, subprocess, sys, time, traceback
bin_, guest, tmp, pattern, control_dir = sys.argv[1:6]
sys.path.insert(0, control_dir)
from qmp_client import QMP, start_vmm

MACHINE = ["--kernel", guest, "--memory", "128M", "--cpus", "1"]
n = [0]
started = []  # every VM of the current test, for the sanitizer check after it

class VM:
    """One kvmkit process: serial to a file, QMP on a socket, stderr kept."""
    def __init__(self, extra, incoming=None, qmp=True, machine=MACHINE):
        n[0] += 1
        self.name = "vm%d" % n[0]
        self.out = os.path.join(tmp, self.name + ".out")
        self.sock = os.path.join(tmp, self.name + ".qmp")
        argv = [bin_, "run"] + machine + extra + ["--serial", "file:" + self.out]
        if qmp:
            argv += ["--control", "unix:" + self.sock]
        if incoming:
            argv += ["--incoming", incoming]
        self.err = os.path.join(tmp, self.name + ".err")
        self.q = None
        started.append(self)
        if qmp and not incoming:
            self.proc = start_vmm(argv, self.sock)
            self.err = self.proc.stderr_path
            self.q = QMP(self.sock, negotiate=True)
        else:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stderr=open(self.err, "wb"))

    def connect(self):
        if not self.q:
            self.q = QMP(self.sock, negotiate=True)
        return self.q

    def serial(self):
        try:
            return open(self.out, errors="replace").read().replace("\r", "")
        except OSError:
            return ""

    def last_pass(self):
        # a line may be cut where the output ends: only complete pass numbers count
        p = re.findall(r"^migrate_pattern: pass (\d+) ", self.serial(), re.M)
        return int(p[-1]) if p else 0

    def first_pass(self):
        p = re.findall(r"^migrate_pattern: pass (\d+) ", self.serial(), re.M)
        return int(p[0]) if p else 0

    def stderr(self):
        try:
            return open(self.err, errors="replace").read()
        except OSError:
            return ""

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "timeout"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

def wait_pass(vm, k, timeout=30):
    end = time.time() + timeout
    while time.time() < end and vm.last_pass() < k and vm.proc.poll() is None:
        time.sleep(0.05)
    return vm.last_pass() >= k

def migrate(src, uri, why, bandwidth=10**10, downtime=1000, final=("completed", "failed", "cancelled"),
            blk=False):
    q = src.connect()
    q.cmd("migrate-set-parameters", {"max-bandwidth": bandwidth, "downtime-limit": downtime})
    r = q.cmd("migrate", {"uri": uri, "blk": True} if blk else {"uri": uri})
    if "return" not in r:
        why.append("migrate: %s" % r)
        return {}
    info = {}
    end = time.time() + 30
    while time.time() < end:
        info = q.cmd("query-migrate")["return"]
        if info.get("status") in final:
            break
        time.sleep(0.05)
    return info

def expect_finished(vm, why, what):
    rc = vm.wait()
    out = vm.serial()
    if rc != 33:
        why.append("%s: exit status %s, want 33 (%s)" % (what, rc, vm.stderr().strip()[-300:]))
    if "all 60 passes consistent" not in out:
        why.append("%s: no final check" % what)
    if "FAIL" in out:
        why.append("%s: %s" % (what, [l for l in out.splitlines() if "FAIL" in l][0]))

# The keys of a completed migration's query-migrate in QEMU 7.2 (-accel kvm, read off a real
# migration between two QEMUs): kvmkit's reply must have the same shape.
QEMU_COMPLETED_KEYS = {"status", "setup-time", "downtime", "total-time", "ram"}
QEMU_RAM_KEYS = {"total", "postcopy-requests", "dirty-sync-count", "multifd-bytes",
                 "pages-per-second", "downtime-bytes", "page-size", "remaining", "postcopy-bytes",
                 "mbps", "transferred", "dirty-sync-missed-zero-copy", "precopy-bytes",
                 "duplicate", "dirty-pages-rate", "skipped", "normal-bytes", "normal"}

QEMU_ACTIVE_KEYS = {"status", "setup-time", "expected-downtime", "total-time", "ram"}

def expect_completed(src, info, why, what):
    if info.get("status") != "completed":
        why.append("%s: status %s (%s)" % (what, info.get("status"), info.get("error-desc", "")))
        return
    st = src.q.cmd("query-status")["return"]["status"]
    if st != "postmigrate":
        why.append("%s: source run state %s, want postmigrate" % (what, st))
    ev = [e["data"]["status"] for e in src.q.events if e["event"] == "MIGRATION"]
    if ev[:2] != ["setup", "active"] or ev[-1] != "completed":
        why.append("%s: MIGRATION events %s" % (what, ev))
    if set(info) != QEMU_COMPLETED_KEYS or set(info.get("ram", {})) != QEMU_RAM_KEYS:
        why.append("%s: query-migrate's keys differ from QEMU's: %s, ram %s" % (
            what, sorted(set(info) ^ QEMU_COMPLETED_KEYS),
            sorted(set(info.get("ram", {})) ^ QEMU_RAM_KEYS)))
    ram = info.get("ram", {})
    if ram.get("remaining") != 0 or ram.get("transferred", 0) < ram.get("normal-bytes", 0):
        why.append("%s: ram remaining %s, transferred %s < normal-bytes %s" % (
            what, ram.get("remaining"), ram.get("transferred"), ram.get("normal-bytes")))

def quit_source(src):
    try:
        src.q.cmd("quit")
    except OSError:
        pass
    src.wait(10)

def one_hop(uri_out, uri_in=None, extra=(), target_first=True, target_extra=None,
            machine=MACHINE, blk=False):
    """Source -> target; the guest ends on the target. uri_in: the target's, if different;
    target_extra: the target's device options, if they must differ (their own sockets)."""
    why = []
    extra = list(extra)
    tgt_extra = list(target_extra) if target_extra is not None else extra
    tgt = VM(tgt_extra, incoming=uri_in or uri_out, machine=machine) if target_first else None
    if target_first:
        time.sleep(0.3)
    src = VM(extra, machine=machine)
    try:
        wait_pass(src, 3)
        info = migrate(src, uri_out, why, blk=blk)
        expect_completed(src, info, why, "migration")
        if not target_first:
            tgt = VM(tgt_extra, incoming=uri_in or uri_out, machine=machine)
        quit_source(src)
        expect_finished(tgt, why, "target")
        # A target that started the guest afresh would finish too: it must go on from pass 3.
        if tgt.first_pass() <= 3:
            why.append("the target's guest began at pass %d, not after the source's" %
                       tgt.first_pass())
        if tgt.last_pass() > 0 and src.last_pass() >= tgt.last_pass() + 1:
            why.append("the source ran on after the migration (pass %d)" % src.last_pass())
    finally:
        src.kill()
        if tgt:
            tgt.kill()
    return why

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def test_unix():
    return one_hop("unix:" + os.path.join(tmp, "m.sock"))

def test_tcp():
    return one_hop("tcp:127.0.0.1:%d" % free_port())

def test_exec():
    f = os.path.join(tmp, "stream.exec")
    return one_hop("exec:cat > " + f, "exec:cat " + f, target_first=False)

def keep_stream(path, name):
    """With MIGRATE_CAPTURE_DIR set, a stream is kept there (tests/fuzz/migration_seeds.py
    makes the migration fuzz target's seeds of them)."""
    if os.environ.get("MIGRATE_CAPTURE_DIR") and os.path.exists(path):
        shutil.copy(path, os.path.join(os.environ["MIGRATE_CAPTURE_DIR"], name))

def test_file():
    f = os.path.join(tmp, "stream.file")
    why = one_hop("file:" + f, target_first=False)
    keep_stream(f, "file")
    return why

# Block migration through a file: the stream holds the disk's chunks beside the rng's and the
# disk's device state; the target's own empty disk must end up with the guest's data.
def test_file_block():
    src_disk, dst_disk = os.path.join(tmp, "fsrc.img"), os.path.join(tmp, "fdst.img")
    for path in (src_disk, dst_disk):
        with open(path, "wb") as f:
            f.truncate(1 << 20)
    f = os.path.join(tmp, "stream.blk")
    why = one_hop("file:" + f, target_first=False, blk=True,
                  extra=["--rng", "--disk", "path=" + src_disk],
                  target_extra=["--rng", "--disk", "path=" + dst_disk])
    keep_stream(f, "file-block")
    with open(dst_disk, "rb") as d:
        d.seek(512)
        if int.from_bytes(d.read(4), "little") != 60:
            why.append("the target's disk does not hold pass 60")
    return why

# Devices on shared storage: the rng's and the disk's rings and buffers are written by device
# emulation, which only the device write log sees; the disk file is the same on both sides.
def test_virtio_shared_disk():
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    return one_hop("unix:" + os.path.join(tmp, "v.sock"), extra=["--rng", "--disk", "path=" + disk])

# Two vCPUs: the AP dirties its own range with interrupts off; both must park for the last pass.
def test_two_vcpus():
    machine = list(MACHINE)
    machine[machine.index("--cpus") + 1] = "2"
    return one_hop("unix:" + os.path.join(tmp, "smp.sock"), machine=machine)

# virtio-net (user networking: the guest ARPs every pass) and a virtio-console port the guest
# writes a line to every pass: their state moves, each side with its own console socket.
def test_net_console():
    base = ["--rng", "--net", "user"]
    return one_hop("unix:" + os.path.join(tmp, "nc.sock"),
                   extra=base + ["--vconsole", os.path.join(tmp, "con1.sock")],
                   target_extra=base + ["--vconsole", os.path.join(tmp, "con2.sock")])

# Block migration: the target has its own, empty disk file; the guest checks every pass that
# sector 1 holds the previous pass's number, so the disk's content must have come along.
def test_block_migration():
    why = []
    src_disk, dst_disk = os.path.join(tmp, "src.img"), os.path.join(tmp, "dst.img")
    for path in (src_disk, dst_disk):
        with open(path, "wb") as f:
            f.truncate(4 << 20)
    sock = "unix:" + os.path.join(tmp, "b.sock")
    tgt = VM(["--rng", "--disk", "path=" + dst_disk], incoming=sock)
    time.sleep(0.3)
    src = VM(["--rng", "--disk", "path=" + src_disk])
    try:
        wait_pass(src, 3)
        expect_completed(src, migrate(src, sock, why, blk=True), why, "migration")
        at = src.last_pass()
        quit_source(src)
        expect_finished(tgt, why, "target")
        with open(src_disk, "rb") as f:
            f.seek(512)
            held = int.from_bytes(f.read(4), "little")
        if held > at + 1 or held < at - 1:
            why.append("the source's disk holds pass %d, its guest was at %d" % (held, at))
        with open(dst_disk, "rb") as f:
            f.seek(512)
            if int.from_bytes(f.read(4), "little") != 60:
                why.append("the target's disk does not hold pass 60")
    finally:
        src.kill()
        tgt.kill()
    return why

# The human monitor's side: migrate -d and info migrate, then savevm DIR on the target, which
# kvmkit run --restore DIR resumes to the guest's end.
def test_hmp_migrate_and_savevm():
    why = []
    sock = "unix:" + os.path.join(tmp, "h.sock")
    snap = os.path.join(tmp, "hmp-snap")
    tgt = VM([], incoming=sock)
    time.sleep(0.3)
    src = VM([])
    vms = [src, tgt]
    try:
        wait_pass(src, 3)
        q = src.q
        q.cmd("migrate-set-parameters", {"max-bandwidth": 10**10, "downtime-limit": 1000})
        hmp = lambda vm, line: vm.q.cmd("human-monitor-command", {"command-line": line})["return"]
        out = hmp(src, "migrate -d " + sock)
        if out:
            why.append("migrate -d said %r" % out)
        for _ in range(200):
            out = hmp(src, "info migrate")
            if "Migration status: completed" in out or "failed" in out:
                break
            time.sleep(0.05)
        if "Migration status: completed" not in out or "downtime:" not in out:
            why.append("info migrate: %r" % out)
        quit_source(src)
        tq = tgt.connect()
        wait_pass(tgt, tgt.last_pass() + 2)
        out = hmp(tgt, "savevm " + snap)
        if out or not os.path.exists(os.path.join(snap, "state")):
            why.append("savevm: %r" % out)
        if tq.cmd("query-status")["return"]["status"] != "running":
            why.append("the VM is not running after savevm")
        tq.cmd("quit")
        tgt.wait(10)
        restored = VM([], machine=["--restore", snap], qmp=False)
        vms.append(restored)
        expect_finished(restored, why, "the restored savevm")
    finally:
        for v in vms:
            v.kill()
    return why

# A stream cut short, damaged in transit or not a stream at all: the target refuses it in one
# sentence with exit status 1 (and no sanitizer report).
def test_damaged_stream_refused():
    why = []
    good = os.path.join(tmp, "good.stream")
    src = VM([])
    try:
        wait_pass(src, 2)
        expect_completed(src, migrate(src, "file:" + good, why), why, "migration to a file")
        quit_source(src)
    finally:
        src.kill()
    data = open(good, "rb").read()
    cases = {
        "cut": (data[:len(data) // 2], "ended early"),
        "flipped": (data[:len(data) // 3] + bytes([data[len(data) // 3] ^ 0x40]) +
                    data[len(data) // 3 + 1:], "damaged in transit"),
        "garbage": (b"this is not a migration stream at all" * 10, "not a kvmkit migration stream"),
    }
    for name, (content, want) in cases.items():
        path = os.path.join(tmp, name + ".stream")
        with open(path, "wb") as f:
            f.write(content)
        tgt = VM([], incoming="file:" + path, qmp=False)
        rc = tgt.wait(30)
        err = [l for l in tgt.stderr().splitlines() if l.startswith("kvmkit:")]
        if rc != 1 or len(err) != 1 or want not in err[0]:
            why.append("%s: exit status %s, said %s" % (name, rc, err))
    return why

def test_chain_of_three():
    why = []
    a = VM([])
    b = VM([], incoming="unix:" + os.path.join(tmp, "ab.sock"))
    vms = [a, b]
    try:
        wait_pass(a, 3)
        expect_completed(a, migrate(a, "unix:" + os.path.join(tmp, "ab.sock"), why), why, "A to B")
        quit_source(a)
        c = VM([], incoming="unix:" + os.path.join(tmp, "bc.sock"))
        vms.append(c)
        time.sleep(0.3)
        b.connect()
        wait_pass(b, b.last_pass() + 3)
        if b.last_pass() <= a.last_pass():
            why.append("B did not run on (pass %d)" % b.last_pass())
        expect_completed(b, migrate(b, "unix:" + os.path.join(tmp, "bc.sock"), why), why, "B to C")
        quit_source(b)
        expect_finished(c, why, "C")
    finally:
        for v in vms:
            v.kill()
    return why

def test_cancel_then_retry():
    why = []
    s1, s2 = os.path.join(tmp, "c1.sock"), os.path.join(tmp, "c2.sock")
    t1 = VM([], incoming="unix:" + s1)
    time.sleep(0.3)
    src = VM([])
    vms = [t1, src]
    try:
        wait_pass(src, 2)
        q = src.q
        q.cmd("migrate-set-parameters", {"max-bandwidth": 4 << 20})   # 4 MiB/s: seconds
        q.cmd("migrate", {"uri": "unix:" + s1})
        time.sleep(0.5)
        active = q.cmd("query-migrate")["return"]
        if active.get("status") != "active":
            why.append("status %s before the cancel, want active" % active.get("status"))
        elif set(active) != QEMU_ACTIVE_KEYS or set(active["ram"]) != QEMU_RAM_KEYS:
            why.append("an active query-migrate's keys differ from QEMU's: %s" % sorted(active))
        q.cmd("migrate_cancel")
        info = {}
        for _ in range(100):
            info = q.cmd("query-migrate")["return"]
            if info.get("status") == "cancelled":
                break
            time.sleep(0.05)
        if info.get("status") != "cancelled":
            why.append("status %s after the cancel" % info.get("status"))
        if q.cmd("query-status")["return"]["status"] != "running":
            why.append("the source is not running after the cancel")
        if t1.wait(10) != 1:
            why.append("the first target did not exit 1 on the cut stream")
        before = src.last_pass()
        if not wait_pass(src, before + 2, 10):
            why.append("the source's guest did not go on after the cancel")
        t2 = VM([], incoming="unix:" + s2)
        vms.append(t2)
        time.sleep(0.3)
        q.events.clear()
        expect_completed(src, migrate(src, "unix:" + s2, why), why, "retry")
        quit_source(src)
        expect_finished(t2, why, "target of the retry")
    finally:
        for v in vms:
            v.kill()
    return why

def test_memory_mismatch_refused():
    why = []
    sock = "unix:" + os.path.join(tmp, "mm.sock")
    other = list(MACHINE)
    other[other.index("--memory") + 1] = "256M"
    tgt = VM([], incoming=sock, machine=other)
    time.sleep(0.3)
    src = VM([])
    try:
        wait_pass(src, 2)
        info = migrate(src, sock, why)
        rc = tgt.wait(10)
        err = tgt.stderr()
        if rc != 1:
            why.append("target exit status %s, want 1" % rc)
        if "128 MiB of RAM but this one 256 MiB" not in err:
            why.append("target said: %s" % err.strip()[-300:])
        if err.count("kvmkit:") > 2:
            why.append("more than one sentence: %s" % err.strip())
        if info.get("status") != "failed":
            why.append("source status %s, want failed" % info.get("status"))
        if src.q.cmd("query-status")["return"]["status"] != "running":
            why.append("the source is not running after the refusal")
        src.q.cmd("quit")
    finally:
        src.kill()
        tgt.kill()
    return why

tests = [(k[5:], v) for k, v in list(globals().items()) if k.startswith("test_")]
passed = failed = 0
for name, fn in tests:
    if not fnmatch.fnmatch(name, pattern):
        continue
    del started[:]
    try:
        why = fn()
    except Exception as e:  # a broken test is a failed one, with the reason (trace on stderr)
        traceback.print_exc()
        why = ["%s: %s" % (type(e).__name__, e)]
    for vm in started:  # a sanitizer build's reports (ASan, LSan, UBSan), from any process
        vm.kill()
        err = vm.stderr()
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if mark in err:
                why.append("%s: %s" % (vm.name, err[err.index(mark):][:400]))
    if why:
        print("FAIL %s (%s)" % (name, "; ".join(why)))
        failed += 1
    else:
        print("PASS %s" % name)
        passed += 1
    sys.stdout.flush()
print("%d passed, %d failed, 0 skipped" % (passed, failed))
sys.exit(1 if failed else 0)
PYEOF
# Not exec: the EXIT trap must still run to remove $tmp.
exit $?
