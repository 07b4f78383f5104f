#!/usr/bin/env python3
"""A live migration whose thread cannot start (pthread_create fails, injected by the
fail_thread.so shim): the migrate command fails with a sentence, the MIGRATION event says
"failed", query-migrate reports it with its error, and the VM runs on (a second migration, with
threads allowed again, completes). Prints PASS/FAIL per check and "N passed, N failed, N skipped".

usage: migrate_fault_test.py KVMKIT TICKER_ELF FAIL_THREAD_SO
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp_client import QMP, sanitizer_report, start_vmm  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, "" if ok else " (%s)" % (detail,)))


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    if not os.access("/dev/kvm", os.W_OK):
        print("0 passed, 0 failed, 1 skipped (/dev/kvm is missing or not writable)")
        sys.exit(77)
    kvmkit, guest, shim = sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="migrate_fault.")
    sock, flag = os.path.join(tmp, "qmp.sock"), os.path.join(tmp, "fail-threads")
    os.environ["LD_PRELOAD"] = os.path.abspath(shim)
    os.environ["KVMKIT_TEST_FAIL_THREADS"] = flag
    # an ASan build wants its runtime first; the shim only wraps pthread_create
    os.environ["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    proc = start_vmm([kvmkit, "run", "--kernel", guest, "--memory", "64M", "--serial", "none",
                      "--control", "unix:" + sock], sock)
    try:
        q = QMP(sock, negotiate=True)
        open(flag, "w").close()
        out = os.path.join(tmp, "stream")
        reply = q.cmd("migrate", {"uri": "file:" + out})
        os.unlink(flag)
        desc = reply.get("error", {}).get("desc", "")
        check("migrate fails with a sentence", "cannot start the migration thread" in desc, reply)
        ev = q.wait_event("MIGRATION", 5)
        while ev and ev["data"]["status"] != "failed":
            ev = q.wait_event("MIGRATION", 5)
        check("a MIGRATION event says failed", ev is not None, q.events)
        info = q.cmd("query-migrate").get("return", {})
        check("query-migrate reports failed with the error",
              info.get("status") == "failed" and
              "cannot start the migration thread" in info.get("error-desc", ""), info)
        check("the VM runs on", q.cmd("query-status").get("return", {}).get("status") == "running")
        reply = q.cmd("migrate", {"uri": "file:" + out})
        ev = None
        while "return" in reply:
            ev = q.wait_event("MIGRATION", 30)
            if not ev or ev["data"]["status"] in ("completed", "failed"):
                break
        check("a second migration completes", ev and ev["data"]["status"] == "completed",
              (reply, ev))
        q.cmd("quit")
        q.close()
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        report = sanitizer_report(proc)
        check("no sanitizer report from the VMM", not report, report)
    print("%d passed, %d failed, 0 skipped" % (results.count(True), results.count(False)))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
