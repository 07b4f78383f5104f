#!/usr/bin/env bash
# Tier B: tier A test guests whose checks need a real KVM (the CI's /dev/kvm skips them) run in the nested host under kvmkit and QEMU.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tests/nested/guests.sh KVMKIT_BINARY GUESTS_DIR [GUEST...]
Runs tests/tier_a/run.sh inside the nested host (L1, whose KVM is real kvm-amd) for each GUEST
(default: ioapic kvmclock), once with kvmkit and once with QEMU -accel kvm as the reference.
On this machine's own /dev/kvm (kvm-pvm) the ioapic guest skips 8 of its checks (EOI at delivery,
late interrupts after sti) and kvmclock never sees the TSC-stable flag; here every check runs.
Prints PASS/FAIL per guest and VMM and "N passed, N failed"; exits 0 only if all pass.
USAGE
}
die() { printf 'guests: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}

[[ $# -ge 2 ]] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac
kvmkit=$1 guests_dir=$2
shift 2
guests=("$@")
[[ ${#guests[@]} -gt 0 ]] || guests=(ioapic kvmclock)
[[ -x "$kvmkit" ]] || die "not an executable: $kvmkit (build it: meson setup build && ninja -C build)"
for g in "${guests[@]}"; do
    [[ -f "$guests_dir/$g.elf" ]] || die "guest $guests_dir/$g.elf not built"
done

mkdir -p "$cache"
"$here/fetch.sh" "$cache" >/dev/null || die "could not fetch the nested host's kernel (see above)"
payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-guests.XXXXXX")
trap 'rm -rf "$payload"' EXIT
mkdir -p "$payload/guests" "$payload/bin"
cp -L "$kvmkit" "$payload/kvmkit"
cp "$repo/tests/tier_a/run.sh" "$payload/"
for g in "${guests[@]}"; do cp "$guests_dir/$g.elf" "$payload/guests/"; done
# L1's userland is busybox: run.sh wants bash and GNU timeout (-k); run-l1.sh copies their libraries.
cp -L "$(command -v bash)" "$(command -v timeout)" "$payload/bin/"
cat > "$payload/run-guests.sh" <<'RUN'
# Runs inside L1: each guest under kvmkit, then under QEMU -accel kvm.
export PATH=/payload/bin:$PATH
for g in $GUESTS; do
    echo "GUEST-RUN kvmkit $g"
    bash /payload/run.sh kvmkit /payload/kvmkit /payload/guests "$g"
    echo "GUEST-RUN qemu $g"
    TIER_A_QEMU_ACCEL=kvm bash /payload/run.sh qemu qemu-system-x86_64 /payload/guests "$g"
done
exit 0
RUN

run_log=$cache/.guests.$$.log
echo "guests: ${guests[*]} under kvmkit and QEMU -accel kvm in the nested host..."
l1_rc=0
"$here/run-l1.sh" --payload "$payload" --script "$payload/run-guests.sh" --with-qemu \
    --env "GUESTS=${guests[*]}" --timeout $(( 120 + 240 * ${#guests[@]} )) --quiet \
    --log "$run_log" || l1_rc=$?
clean=$(tr -d '\r' < "$run_log")
mv -f "$run_log" "$cache/guests.log"

. "$here/report.sh"
if [[ $l1_rc -ne 0 ]]; then
    fail "l1-host" "run-l1.sh exited $l1_rc; L1 log: $cache/guests.log"
    printf '%s\n' "$clean" | tail -n 20 | sed 's/^/  L1| /'
fi
for g in "${guests[@]}"; do
    for v in kvmkit qemu; do
        # run.sh's own verdict line for this guest, from the block after its GUEST-RUN marker.
        block=$(sed -n "/^GUEST-RUN $v $g\$/,/^[0-9]* passed, [0-9]* failed/p" <<< "$clean")
        line=$(grep -E "^(PASS|FAIL) $g( |\$)" <<< "$block" | head -n1 || true)
        if [[ "$line" == PASS* ]]; then
            pass "$v/$g${line#PASS "$g"}"
        else
            fail "$v/$g" "${line:-no verdict from run.sh}"
            grep -v "^GUEST-RUN" <<< "$block" | tail -n 40 | sed 's/^/  | /'
        fi
    done
done
report_end "$clean"
