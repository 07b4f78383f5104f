#!/usr/bin/env python3
"""QMP protocol edge cases against kvmkit running the ticker guest: negotiation, id echo,
malformed and oversized input, argument errors, clients that vanish mid-request, flood the
server without reading, or connect fifty at once. The VMM must answer as QEMU does and never
die of a client. Prints PASS/FAIL per case and "N passed, N failed, N skipped".

usage: qmp_protocol.py KVMKIT TICKER_ELF
"""
import json
import os
import socket
import stat
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmp_client import QMP, sanitizer_report, start_vmm  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, "" if ok else " (%s)" % detail))


def err_class(reply):
    return (reply or {}).get("error", {}).get("class")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    if not os.access("/dev/kvm", os.W_OK):
        print("SKIP: needs a writable /dev/kvm")
        print("0 passed, 0 failed, 1 skipped")
        sys.exit(77)
    kvmkit, guest = sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="qmp_protocol.")
    sock = os.path.join(tmp, "qmp.sock")
    proc = start_vmm([kvmkit, "run", "--kernel", guest, "--memory", "64M", "--cpus", "2",
                      "--serial", "none", "--control", "unix:" + sock], sock)
    try:
        run_cases(sock, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        report = sanitizer_report(proc)
        check("no sanitizer report from the VMM", not report, report)
    print("%d passed, %d failed, 0 skipped" % (results.count(True), results.count(False)))
    sys.exit(0 if all(results) else 1)


def run_cases(sock, proc):
    mode = stat.S_IMODE(os.stat(sock).st_mode)
    check("socket mode 0600", mode == 0o600, oct(mode))

    q = QMP(sock)
    g = q.greeting.get("QMP", {})
    check("greeting", g.get("capabilities") == [] and
          set(g.get("version", {}).get("qemu", {})) == {"major", "minor", "micro"} and
          g["version"].get("package", "").startswith("kvmkit"), q.greeting)

    r = q.cmd("query-status", id="early")
    check("command before qmp_capabilities", err_class(r) == "CommandNotFound" and
          r.get("id") == "early", r)
    r = q.cmd("qmp_capabilities", id=7)
    check("qmp_capabilities, numeric id echoed", r == {"return": {}, "id": 7}, r)
    r = q.cmd("qmp_capabilities")
    check("second qmp_capabilities", err_class(r) == "CommandNotFound", r)
    r = q.cmd("query-status", id={"a": [1, "x"]})
    check("structured id echoed", r.get("id") == {"a": [1, "x"]} and "return" in r, r)
    r = q.cmd("no-such-command", id="u")
    check("unknown command", err_class(r) == "CommandNotFound" and r.get("id") == "u", r)

    for raw, what in [(b"{]\n", "syntax error"), (b"[1, 2]\n", "not an object"),
                      (b'{"bad": 1}\n', "unexpected member"), (b'{"execute": 1}\n',
                      "execute not a string"), (b'{"execute": "stop", "arguments": 3}\n',
                      "arguments not an object"), (b"null\n", "bare scalar"),
                      (b"{\xff\n", "0xff byte")]:
        q.send_raw(raw)
        r = q.reply()
        check("malformed input: " + what, err_class(r) == "GenericError", r)
    r = q.cmd("query-kvm")
    check("recovers after malformed input", r == {"return": {"enabled": True, "present": True}}, r)

    r = q.cmd("query-status", {"x": 1})
    check("unexpected argument", err_class(r) == "GenericError" and "'x'" in r["error"]["desc"], r)
    r = q.cmd("human-monitor-command", {})
    check("missing argument", err_class(r) == "GenericError" and "missing" in r["error"]["desc"], r)
    r = q.cmd("migrate-set-parameters", {"downtime-limit": "fast"})
    check("argument of the wrong type", err_class(r) == "GenericError", r)

    big = b'{"execute": "query-status", "id": "' + b"x" * (2 << 20) + b'"}\n'
    q.send_raw(big)
    r = q.reply()
    check("oversized request refused", err_class(r) == "GenericError" and
          "JSON parse error" in r["error"]["desc"], r)
    r = q.cmd("query-status", id="after-big")
    check("recovers after the oversized request", r.get("id") == "after-big" and "return" in r, r)

    q.send_raw(b'{"execute": "query-kvm", "id": 1}{"execute": "query-kvm", "id": 2}\n')
    r1, r2 = q.reply(), q.reply()
    check("two requests in one write", (r1.get("id"), r2.get("id")) == (1, 2), (r1, r2))
    for b in b'{"execute":\n "query-kvm", "id": "bytewise"}':
        q.send_raw(bytes([b]))
    r = q.reply()
    check("one request a byte at a time", r.get("id") == "bytewise", r)

    r = q.cmd("query-migrate")
    check("query-migrate before any migration", r == {"return": {}}, r)
    r = q.cmd("migrate", {"uri": "nowhere:4444"})
    check("migrate to a bad URI", err_class(r) == "GenericError" and
          "not a migration URI" in r["error"]["desc"], r)
    r = q.cmd("migrate", {"uri": "unix:" + sock + ".nobody-listens"})
    check("migrate to a socket nobody listens on", err_class(r) == "GenericError" and
          "cannot connect" in r["error"]["desc"], r)
    r = q.cmd("query-migrate")
    check("query-migrate after a failed migrate", r.get("return", {}).get("status") == "failed"
          and "cannot connect" in r["return"].get("error-desc", ""), r)
    r = q.cmd("migrate-set-parameters", {"downtime-limit": 123, "max-bandwidth": 4096})
    r2 = q.cmd("query-migrate-parameters")
    check("migrate-set-parameters stored", r == {"return": {}} and
          r2.get("return") == {"downtime-limit": 123, "max-bandwidth": 4096}, (r, r2))
    r = q.cmd("human-monitor-command", {"command-line": "savevm"})
    check("savevm needs a directory", "needs a directory" in r.get("return", ""), r)
    r = q.cmd("human-monitor-command", {"command-line": "loadvm snap1"})
    check("loadvm not supported", "not supported" in r.get("return", ""), r)

    # A client that leaves in the middle of a request, and one that sends garbage.
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "query-sta')
    c.close()
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.sendall(os.urandom(65536))
    c.close()
    r = q.cmd("query-status")
    check("survives clients that vanish mid-request or send garbage",
          "return" in r and proc.poll() is None, r)

    # A client that floods requests and never reads: held back, then dropped; others go on.
    c = socket.socket(socket.AF_UNIX)
    c.connect(sock)
    c.setblocking(False)
    req = b'{"execute": "qmp_capabilities"}\n' + \
        b'{"execute": "human-monitor-command", "arguments": {"command-line": "info registers -a"}}\n' * 200
    sent, deadline = 0, time.time() + 3
    while time.time() < deadline:
        try:
            sent += c.send(req)
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:
            break
    t0 = time.time()
    r = q.cmd("query-status")
    check("a flooding client that never reads does not stall the others",
          "return" in r and time.time() - t0 < 2, r)
    c.close()

    # Fifty clients at once.
    clients = []
    for _ in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        clients.append(s)
    for s in clients:
        s.sendall(b'{"execute": "qmp_capabilities"}\n{"execute": "query-status", "id": "many"}\n')
    ok = 0
    for s in clients:
        s.settimeout(10)
        data = b""
        while data.count(b"\n") < 3:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        lines = [json.loads(x) for x in data.split(b"\n") if x.strip()]
        if len(lines) >= 3 and "QMP" in lines[0] and lines[2].get("id") == "many":
            ok += 1
        s.close()
    check("fifty clients at once", ok == 50, "%d of 50 answered" % ok)

    # Events reach every negotiated client.
    q2 = QMP(sock, negotiate=True)
    q.cmd("stop")
    ev = q2.wait_event("STOP", 5)
    check("STOP event to another client", ev is not None and
          set(ev.get("timestamp", {})) == {"seconds", "microseconds"}, ev)
    q.cmd("cont")
    check("RESUME event", q2.wait_event("RESUME", 5) is not None)

    r = q.cmd("quit")
    ev = q2.wait_event("SHUTDOWN", 5)
    check("quit: SHUTDOWN host-qmp-quit", r == {"return": {}} and ev is not None and
          ev.get("data") == {"guest": False, "reason": "host-qmp-quit"}, (r, ev))
    try:
        status = proc.wait(10)
    except Exception:
        status = None
    check("quit ends kvmkit with status 0", status == 0, status)
    check("socket removed at exit", not os.path.exists(sock))


if __name__ == "__main__":
    main()
