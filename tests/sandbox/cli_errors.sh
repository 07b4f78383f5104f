#!/usr/bin/env bash
# kvmkit's refusals at start-up: each must be one sentence and a prompt exit status 1, never a
# hang (a kvmkit that cannot read its signals would only die by SIGKILL).
# Usage: cli_errors.sh KVMKIT FAIL_SYSCALL
set -u
kvmkit=$1 fail_syscall=$2
passed=0 failed=0

# expect NAME PATTERN COMMAND...: exit status 1 within 10 s, and PATTERN on stderr
expect() {
    local name=$1 pattern=$2 err rc
    shift 2
    err=$(timeout -s KILL 10 "$@" </dev/null 2>&1 >/dev/null)
    rc=$?
    if [[ $rc -eq 1 && "$err" == *"$pattern"* ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit status $rc, stderr: $err"
    fi
}

expect memory-not-mib "not a whole number of MiB" \
    "$kvmkit" run --kernel /nonexistent --memory 65537K
expect memory-not-mib-bytes "not a whole number of MiB" \
    "$kvmkit" run --kernel /nonexistent --memory 67108865B
expect signalfd-fails "cannot create the descriptor kvmkit reads SIGINT and SIGTERM from" \
    "$fail_syscall" signalfd4 24 "$kvmkit" run --kernel "$kvmkit" --memory 64M --serial none

echo "$passed passed, $failed failed, 0 skipped"
[[ $failed -eq 0 ]]
