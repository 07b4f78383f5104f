#!/usr/bin/env bash
# Runs the same QMP command script against kvmkit and against QEMU (TCG, the same ticker guest,
# the same read-only disk) and compares the SHAPES of the replies and events: key sets and value
# types, recursively. Values (versions, thread IDs, paths) may differ; shapes must not, except
# for the differences accepted below, each with its reason.
# Prints PASS/FAIL per reply and event, then "N passed, N failed, N skipped".
#
# usage: qmp_shape.sh KVMKIT TICKER_ELF [QEMU_BINARY]
set -u

if [[ $# -lt 2 ]]; then
    echo "usage: $0 KVMKIT TICKER_ELF [QEMU_BINARY]" >&2
    exit 2
fi
kvmkit=$1 guest=$2 qemu=${3:-qemu-system-x86_64}
here=$(cd "$(dirname "$0")" && pwd)
client=$here/qmp_client.py
if [[ ! -w /dev/kvm ]]; then
    echo "SKIP: needs a writable /dev/kvm"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi
if ! command -v "$qemu" >/dev/null; then
    echo "SKIP: needs $qemu (Debian: apt-get install qemu-system-x86)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qmp_shape.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
[[ -n ${QMP_SHAPE_KEEP:-} ]] && trap - EXIT && echo "transcripts in $tmp"

truncate -s 1M "$tmp/disk.img"
cat >"$tmp/script" <<'SCRIPT'
{"execute": "qmp_capabilities"}
{"execute": "query-version"}
{"execute": "query-status"}
{"execute": "query-kvm"}
{"execute": "query-cpus-fast"}
{"execute": "query-block"}
{"execute": "query-commands"}
{"execute": "query-migrate"}
{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 300, "max-bandwidth": 134217728}}
{"execute": "migrate_cancel"}
{"execute": "stop", "id": 1}
{"execute": "query-status", "id": "paused"}
{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}
{"execute": "human-monitor-command", "arguments": {"command-line": "info cpus"}}
{"execute": "human-monitor-command", "arguments": {"command-line": "info registers"}}
{"execute": "cont", "id": {"nested": [1]}}
{"execute": "no-such-command"}
{"execute": "query-status", "arguments": {"x": 1}}
{"execute": "human-monitor-command"}
{"execute": "system_reset"}
!sleep 0.5
{"execute": "quit"}
SCRIPT

# Starts a VMM in the background, waits for its socket and runs the script: $tmp/LABEL.out.
run_vmm() { # label command...
    local label=$1 sock=$tmp/$1.sock i
    shift
    "$@" 2>"$tmp/$label.err" >/dev/null </dev/null &
    pids+=($!)
    for ((i = 0; i < 200; i++)); do
        [[ -S $sock ]] && break
        sleep 0.1
    done
    if [[ ! -S $sock ]]; then
        echo "FAIL $label: no QMP socket"
        sed 's/^/    /' "$tmp/$label.err"
        exit 1
    fi
    python3 "$client" "$sock" "$tmp/script" >"$tmp/$label.out"
}

run_vmm kvmkit "$kvmkit" run --kernel "$guest" --memory 64M --cpus 2 --serial none \
    --disk "path=$tmp/disk.img,readonly=on" --control "unix:$tmp/kvmkit.sock"
# -drive if=virtio names the disk virtio0, as kvmkit names its --disk devices.
run_vmm qemu "$qemu" -accel tcg -M pc -m 64 -smp 2 -kernel "$guest" -nodefaults -display none \
    -serial none -monitor none -drive "file=$tmp/disk.img,if=virtio,format=raw,readonly=on" \
    -qmp "unix:$tmp/qemu.sock,server=on,wait=off"

# Accepted differences (key paths that may differ, "*": present on one side only), and why:
#  greeting: QEMU offers the "oob" capability; kvmkit offers none (capabilities: []).
allowed='{"greeting": ["QMP.capabilities"]}'
python3 "$client" compare "$tmp/qemu.out" "$tmp/kvmkit.out" "$allowed"
