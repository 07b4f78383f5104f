#!/usr/bin/env python3
"""A small QMP client for the control tests (python3 standard library only).

As a library: QMP(path) connects and reads the greeting; cmd() sends a request and returns its
reply, keeping the events that arrive meanwhile in .events; shape() describes a JSON value by
its key sets and value types. start_vmm() starts kvmkit or QEMU with a QMP socket and waits for it.

As a program:  qmp_client.py SOCKET SCRIPT  runs SCRIPT (one request per line: a JSON object, or
"# comment", or "!sleep S") and prints one line per request: its execute name, then the reply's
shape as JSON; events are printed as "event NAME SHAPE".
qmp_client.py compare QEMU_OUT KVMKIT_OUT ALLOWED  compares two such outputs reply by reply and
event by event, ALLOWED being a JSON map from a reply or "event NAME" to the key paths
(dotted, e.g. "return.inserted.image") whose difference is accepted.
"""
import json
import os
import socket
import subprocess
import sys
import time


class QMP:
    def __init__(self, path, timeout=20.0, negotiate=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        # QMP_CAPTURE_DIR: what this connection sends is kept there, one file per connection
        # (the seeds of the QMP fuzz target, tests/fuzz/qmp_corpus/).
        capture = os.environ.get("QMP_CAPTURE_DIR")
        self.capture = open(os.path.join(capture, "%d-%d-%d" % (
            os.getpid(), id(self), time.monotonic_ns())), "ab") if capture else None
        self.greeting = self.recv()
        if negotiate:
            reply = self.cmd("qmp_capabilities")
            assert "return" in reply, reply

    def send_raw(self, data):
        data = data if isinstance(data, bytes) else data.encode()
        if self.capture:
            self.capture.write(data)
            self.capture.flush()
        self.sock.sendall(data)

    def recv(self):
        """The next message (reply or event), or None at EOF."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self):
        """The next reply, events before it kept in .events."""
        while True:
            msg = self.recv()
            if msg is None or "event" not in msg:
                return msg
            self.events.append(msg)

    def cmd(self, name, args=None, **extra):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        req.update(extra)
        self.send_raw(json.dumps(req) + "\n")
        return self.reply()

    def wait_event(self, name, timeout=10.0):
        deadline = time.time() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                msg = self.recv()
            except socket.timeout:
                return None
            finally:
                self.sock.settimeout(20.0)
            if msg is None:
                return None
            if "event" in msg:
                self.events.append(msg)

    def close(self):
        self.sock.close()


def shape(v):
    """Key sets and value types, recursively; a list's shape is the shape of its first item."""
    if isinstance(v, dict):
        return {k: shape(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if v is None:
        return "null"
    return "string"


def wait_for_socket(path, proc, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the VMM exited (status %d) before its QMP socket appeared" % proc.returncode)
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                s.close()
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("no QMP socket at %s after %ds" % (path, timeout))


def start_vmm(argv, sock, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL):
    """Starts a VMM whose argv listens on sock; returns the Popen once the socket answers. Its
    stderr goes to the file proc.stderr_path (see sanitizer_report)."""
    proc_err = sock + ".stderr"
    with open(proc_err, "wb") as err:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=err)
    proc.stderr_path = proc_err
    try:
        wait_for_socket(sock, proc)
    except RuntimeError:
        proc.kill()
        proc.wait()
        with open(proc_err, errors="replace") as f:
            raise RuntimeError("cannot start %s: %s" % (argv[0], f.read().strip()))
    return proc


def sanitizer_report(proc):
    """The first lines of an ASan/UBSan/LSan report in the VMM's stderr, or "" (after exit)."""
    with open(proc.stderr_path, errors="replace") as f:
        text = f.read()
    for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        if mark in text:
            i = text.index(mark)
            return text[i:i + 600]
    return ""


def run_script(sock_path, script_path):
    q = QMP(sock_path)
    print("greeting", json.dumps(shape(q.greeting), sort_keys=True))
    with open(script_path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!sleep"):
                time.sleep(float(line.split()[1]))
                continue
            req = json.loads(line)
            q.send_raw(json.dumps(req) + "\n")
            reply = q.reply()
            for ev in q.events:
                print("event", ev["event"], json.dumps(shape(ev), sort_keys=True))
            q.events.clear()
            name = req.get("execute", "?")
            if req.get("arguments", {}).get("command-line"):
                name += ":" + req["arguments"]["command-line"].replace(" ", "_")
            print(name, json.dumps(shape(reply), sort_keys=True))
            if reply is None:
                break
    # Events that follow the last reply (quit's SHUTDOWN in kvmkit's order).
    q.sock.settimeout(2.0)
    try:
        while True:
            msg = q.recv()
            if msg is None:
                break
            print("event", msg.get("event"), json.dumps(shape(msg), sort_keys=True))
    except (socket.timeout, OSError):
        pass
    q.close()


def read_transcript(path):
    """run_script's output as ([(name, shape)] of replies, {event name: shape})."""
    replies, events = [], {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 2) if line.startswith("event ") else \
                line.rstrip("\n").split(" ", 1)
            if parts[0] == "event" and len(parts) == 3:
                events[parts[1]] = json.loads(parts[2])
            elif len(parts) == 2:
                replies.append((parts[0], json.loads(parts[1])))
    return replies, events


def drop_paths(shape_value, paths):
    """The shape without the dotted key paths listed (the accepted differences)."""
    out = json.loads(json.dumps(shape_value))
    for p in paths:
        node, keys = out, p.split(".")
        for k in keys[:-1]:
            node = node[0] if isinstance(node, list) and node else node
            node = node.get(k, {}) if isinstance(node, dict) else {}
        node = node[0] if isinstance(node, list) and node else node
        if isinstance(node, dict):
            node.pop(keys[-1], None)
    return out


def compare(ref_path, got_path, allowed):
    """Compares two transcripts; allowed maps a reply or "event NAME" to key paths whose
    difference is accepted ("*" accepts the whole item's absence on one side)."""
    ref_replies, ref_events = read_transcript(ref_path)
    got_replies, got_events = read_transcript(got_path)
    passed = failed = 0
    items = [(n, s, dict(got_replies[i:i + 1]).get(n)) for i, (n, s) in enumerate(ref_replies)]
    names = set(ref_events) | set(got_events)
    items += [("event " + n, ref_events.get(n), got_events.get(n)) for n in sorted(names)]
    for name, want, got in items:
        paths = allowed.get(name, [])
        if "*" in paths and (want is None or got is None):
            ok = True
        else:
            ok = want is not None and drop_paths(want, paths) == drop_paths(got, paths)
        print("%s %s%s" % ("PASS" if ok else "FAIL", name,
                           "" if ok else "\n    qemu:   %s\n    kvmkit: %s" % (
                               json.dumps(want, sort_keys=True), json.dumps(got, sort_keys=True))))
        passed += ok
        failed += not ok
    print("%d passed, %d failed, 0 skipped" % (passed, failed))
    return failed == 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "compare":
        sys.exit(0 if compare(sys.argv[2], sys.argv[3], json.loads(sys.argv[4])) else 1)
    if len(sys.argv) != 3:
        sys.exit("usage: qmp_client.py SOCKET SCRIPT | compare QEMU_OUT KVMKIT_OUT ALLOWED_JSON")
    run_script(sys.argv[1], sys.argv[2])
