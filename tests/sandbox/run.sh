#!/usr/bin/env bash
# The sandbox in a running kvmkit: every thread is under a seccomp filter (and none with
# --sandbox off), the guest runs through it, and --runas switches to the user once the VM is
# built; --runas's refusals. Usage: run.sh KVMKIT GUEST_DIR
set -u
kvmkit=$1 guest=$2/migrate_pattern.elf
passed=0 failed=0 skipped=0
tmp=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null; rm -rf "$tmp"' EXIT

result() { # name why... (no why: pass)
    local name=$1
    shift
    if [[ $# -eq 0 ]]; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name: $*"
        sed 's/^/    | /' "$tmp/out" "$tmp/err" 2>/dev/null | tail -20
        failed=$((failed + 1))
    fi
}

# start ARGS...: runs the guest until its first pass line; sets pid
start() {
    : >"$tmp/out" # not the last run's lines: the background redirection may come late
    "$kvmkit" run --kernel "$guest" --memory 64M --serial stdio "$@" </dev/null >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    for ((i = 0; i < 600; i++)); do
        grep -q "migrate_pattern: pass 1 " "$tmp/out" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop: SIGTERM, which a running kvmkit turns into exit status 0
stop() {
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    pid=
}

# field FILE NAME: a /proc status field's value
field() { sed -n "s/^$2:[[:space:]]*//p" "$1"; }

if [[ ! -w /dev/kvm ]]; then
    echo "SKIP: needs /dev/kvm"
    echo "0 passed, 0 failed, 1 skipped"
    exit 77
fi

# Every thread of a running kvmkit has a filter (Seccomp: 2), the vCPU's and the I/O thread's
# included; with --sandbox off none has.
for mode in on off; do
    why=()
    if start --sandbox "$mode" --rng; then
        n=0
        for s in /proc/"$pid"/task/*/status; do
            m=$(field "$s" Seccomp)
            want=2
            [[ $mode == off ]] && want=0
            [[ $m == "$want" ]] || why+=("thread $(field "$s" Name): Seccomp $m, want $want")
            n=$((n + 1))
        done
        ((n >= 3)) || why+=("only $n threads")
        stop
        [[ $rc -eq 0 ]] || why+=("exit status $rc after SIGTERM, want 0")
    else
        why+=("the guest did not reach pass 1")
    fi
    result "sandbox-$mode" "${why[@]}"
done

# --runas: the uids and gids are the user's and no capability is left, while the guest runs.
if [[ $EUID -ne 0 ]]; then
    echo "SKIP runas: needs root"
    skipped=$((skipped + 1))
else
    why=()
    if start --runas nobody; then
        uid=$(id -u nobody) gid=$(id -g nobody)
        s=/proc/$pid/status
        [[ $(field "$s" Uid) == "$uid"$'\t'"$uid"$'\t'"$uid"$'\t'"$uid" ]] ||
            why+=("Uid $(field "$s" Uid), want $uid")
        [[ $(field "$s" Gid) == "$gid"$'\t'"$gid"$'\t'"$gid"$'\t'"$gid" ]] ||
            why+=("Gid $(field "$s" Gid), want $gid")
        groups=$(field "$s" Groups)
        [[ ${groups% } == "$gid" ]] || why+=("Groups $groups, want $gid")
        [[ $(field "$s" CapEff) == 0000000000000000 ]] || why+=("CapEff $(field "$s" CapEff)")
        stop
        [[ $rc -eq 0 ]] || why+=("exit status $rc after SIGTERM, want 0")
    else
        why+=("the guest did not reach pass 1")
    fi
    result runas "${why[@]}"

    # refusals: one sentence, status 1, before anything runs
    why=()
    err=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$kvmkit" run --kernel /dev/null \
          --runas nobody 2>&1 </dev/null)
    rc=$?
    [[ $rc -eq 1 && $err == *"needs kvmkit to be started as root"* ]] ||
        why+=("not root: status $rc, '$err'")
    err=$("$kvmkit" run --kernel /dev/null --runas no-such-user-kvmkit 2>&1 </dev/null)
    rc=$?
    [[ $rc -eq 1 && $err == *"there is no user 'no-such-user-kvmkit'"* ]] ||
        why+=("unknown user: status $rc, '$err'")
    result runas-refusals "${why[@]}"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
