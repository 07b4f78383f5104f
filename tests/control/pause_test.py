#!/usr/bin/env python3
"""Pause and resume through QMP on the 2-vCPU ticker guest: while stopped the guest prints no
tick, after cont its ticks go on from where they were; STOP/RESUME events and query-status
follow; the vCPU thread IDs are kvmkit's vcpuN threads; a reset while paused keeps the VM paused
and the QMP connection; -S starts in prelaunch; system_powerdown reaches the guest as an ACPI
power button press; quit while paused (with a disk, whose I/O thread is held) exits cleanly.
Prints PASS/FAIL per check and "N passed, N failed, N skipped".

usage: pause_test.py KVMKIT TICKER_ELF
"""
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp_client import QMP, sanitizer_report, start_vmm  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, "" if ok else " (%s)" % (detail,)))


def ticks(path):
    with open(path, errors="replace") as f:
        return [int(n) for n in re.findall(r"ticker: tick (\d+)", f.read())]


def count(path, text):
    with open(path, errors="replace") as f:
        return f.read().count(text)


def wait_for(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def status(q):
    return q.cmd("query-status").get("return", {}).get("status")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    if not os.access("/dev/kvm", os.W_OK):
        print("SKIP: needs a writable /dev/kvm")
        print("0 passed, 0 failed, 1 skipped")
        sys.exit(77)
    kvmkit, guest = sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="pause_test.")
    disk = os.path.join(tmp, "disk.img")   # a virtio-blk device: the I/O thread pauses too
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    for paused_start in (False, True):
        sock = os.path.join(tmp, "qmp%d.sock" % paused_start)
        serial = os.path.join(tmp, "serial%d.txt" % paused_start)
        argv = [kvmkit, "run", "--kernel", guest, "--memory", "64M", "--cpus", "2",
                "--serial", "file:" + serial, "--disk", "path=%s,readonly=on" % disk,
                "--control", "unix:" + sock]
        proc = start_vmm(argv + (["-S"] if paused_start else []), sock)
        try:
            (test_prelaunch if paused_start else test_pause_resume)(proc, sock, serial)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            report = sanitizer_report(proc)
            check("no sanitizer report from the VMM", not report, report)
    print("%d passed, %d failed, 0 skipped" % (results.count(True), results.count(False)))
    sys.exit(0 if all(results) else 1)


def test_pause_resume(proc, sock, serial):
    q = QMP(sock, negotiate=True)
    check("guest ticks", wait_for(lambda: len(ticks(serial)) >= 3, 20), ticks(serial))
    check("query-status running", status(q) == "running")

    cpus = q.cmd("query-cpus-fast").get("return", [])
    names = []
    for c in cpus:
        try:
            with open("/proc/%d/task/%d/comm" % (proc.pid, c["thread-id"])) as f:
                names.append(f.read().strip())
        except OSError:
            names.append(None)
    check("query-cpus-fast: thread-ids are kvmkit's vCPU threads", names == ["vcpu0", "vcpu1"], names)

    r = q.cmd("stop")
    ev = q.wait_event("STOP", 5)
    check("stop: STOP event", r == {"return": {}} and ev is not None, (r, ev))
    check("query-status paused", status(q) == "paused")
    time.sleep(0.3)   # a tick line being written when the vCPU parked
    before = ticks(serial)
    time.sleep(1.5)
    after = ticks(serial)
    check("no guest progress while paused", before == after, "%d -> %d ticks" % (len(before), len(after)))
    regs = q.cmd("human-monitor-command", {"command-line": "info registers -a"}).get("return", "")
    check("info registers of both vCPUs while paused", "CPU#0" in regs and "CPU#1" in regs and
          "EIP=" in regs, regs[:200])

    r = q.cmd("cont")
    ev = q.wait_event("RESUME", 5)
    check("cont: RESUME event", r == {"return": {}} and ev is not None, (r, ev))
    check("query-status running again", status(q) == "running")
    check("guest goes on after cont", wait_for(lambda: len(ticks(serial)) > len(after) + 3, 10))
    t = ticks(serial)
    check("tick numbering continues without a restart", t == list(range(len(t))), t[-5:])

    out = q.cmd("human-monitor-command", {"command-line": "stop"})
    st = q.cmd("human-monitor-command", {"command-line": "info status"}).get("return")
    check("HMP stop and info status", "return" in out and st == "VM status: paused\r\n", st)
    q.events.clear()

    r = q.cmd("system_reset")
    ev = q.wait_event("RESET", 5)
    check("system_reset: RESET event host-qmp-system-reset", ev is not None and
          ev.get("data") == {"guest": False, "reason": "host-qmp-system-reset"}, ev)
    time.sleep(1)
    check("after a reset while paused: still paused, same connection, guest not started",
          status(q) == "paused" and count(serial, "ticker: ready") == 1)
    q.cmd("human-monitor-command", {"command-line": "c"})
    check("cont after the reset boots the guest again",
          wait_for(lambda: count(serial, "ticker: ready") == 2, 20))

    r = q.cmd("system_powerdown")
    ev = q.wait_event("POWERDOWN", 5)
    check("system_powerdown: POWERDOWN event", r == {"return": {}} and ev is not None, (r, ev))
    check("the guest sees the ACPI power button",
          wait_for(lambda: count(serial, "ticker: power button pressed") == 1, 10))
    ev = q.wait_event("SHUTDOWN", 10)
    check("SHUTDOWN event from the guest", ev is not None and ev.get("data", {}).get("guest") is True, ev)
    check("kvmkit exits with the guest's PASS status", proc.wait(10) == 33, proc.returncode)


def test_prelaunch(proc, sock, serial):
    q = QMP(sock, negotiate=True)
    check("-S: query-status prelaunch", status(q) == "prelaunch")
    time.sleep(1)
    check("-S: the guest has not run", count(serial, "ticker") == 0)
    q.cmd("cont")
    check("-S: cont starts the guest", wait_for(lambda: len(ticks(serial)) >= 2, 20))
    q.cmd("stop")
    q.cmd("quit")
    check("-S: quit while paused", proc.wait(10) == 0, proc.returncode)


if __name__ == "__main__":
    main()
