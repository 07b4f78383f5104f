#!/usr/bin/env bash
# Demo: boot Debian's Linux kernel under kvmkit to an interactive shell (on this host, or inside the nested test host).
set -euo pipefail

# Usage: scripts/demo.sh [--nested] [--vmm qemu]
#   --nested    skip the probe and use the nested test host even if this /dev/kvm could run Linux
#   --vmm qemu  (nested only) run QEMU microvm instead of kvmkit inside the nested host: shows the pipeline
cd "$(dirname "${BASH_SOURCE[0]}")/.."
force_nested=0 vmm=kvmkit
while [[ $# -gt 0 ]]; do
    case "$1" in
    --nested) force_nested=1; shift ;;
    --vmm) vmm=$2; shift 2 ;;
    -h|--help) sed -n '4,7p' "$0"; exit 0 ;;
    *) echo "demo: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$vmm" == kvmkit || "$vmm" == qemu ]] || { echo "demo: --vmm wants kvmkit or qemu" >&2; exit 2; }
[[ -t 0 && -t 1 ]] || { echo "demo: this is interactive: run it in a terminal" >&2; exit 2; }

bash scripts/install-deps.sh
if [[ ! -f build/build.ninja ]]; then
    meson setup build
fi
ninja -C build >/dev/null

# Tier A probe: can this host's /dev/kvm run a stock kernel? (It prints "PROBE: full" if so.)
full=0
if (( ! force_nested )) && [[ "$vmm" == kvmkit && -f build/tests/guests/probe.elf && -c /dev/kvm ]]; then
    probe=$(timeout -k 1 2 build/kvmkit run --kernel build/tests/guests/probe.elf --serial stdio \
            </dev/null 2>/dev/null || true)
    grep -q 'PROBE: full' <<< "$probe" && full=1
fi

echo "demo: fetching the Debian kernel and building the guest's initramfs (cached after the first run)..."
errs=$(mktemp)
if ! envs=$(bash tests/nested/l2-archive.sh 2>"$errs" && bash tests/nested/fetch.sh 2>>"$errs"); then
    cat "$errs" >&2
    echo "demo: could not fetch the Debian kernel (Debian's package repository is needed once)" >&2
    exit 1
fi
rm -f "$errs"
eval "$envs"
append="console=ttyS0 kvmkit.test=shell quiet"

if (( full )); then
    echo "demo: booting Debian's cloud kernel ($KERNEL_ABI) under kvmkit with 2 vCPUs and 256 MiB."
    echo "demo: quit with Ctrl-A x (or type 'poweroff -f' in the guest shell)."
    exec build/kvmkit run --kernel "$L2_VMLINUZ" --initrd "$L2_INITRAMFS" --append "$append" \
        --memory 256M --cpus 2 --serial stdio
fi

if [[ "$vmm" == kvmkit ]]; then
    echo "demo: this host's /dev/kvm cannot run a stock Linux kernel (its KVM emulates ring 0 in software and" \
         "lacks instructions Linux needs), so the same demo runs inside the nested test host: a Debian kernel" \
         "under QEMU's TCG with a real kvm-amd, and kvmkit inside it."
else
    echo "demo: --vmm qemu: running QEMU microvm instead of kvmkit inside the nested test host."
fi
echo "demo: it takes about 20 s to reach the guest's shell; quit with Ctrl-A x (or type 'poweroff -f' in the" \
     "guest shell); Ctrl-] x kills the nested host if anything hangs."
payload=$(mktemp -d "${TMPDIR:-/tmp}/kvmkit-demo.XXXXXX")
trap 'rm -rf "$payload"' EXIT
qemu_opt=()
if [[ "$vmm" == kvmkit ]]; then
    cp -L build/kvmkit "$payload/kvmkit"
    cat > "$payload/run.sh" <<'RUN'
echo "L1: starting kvmkit (Debian cloud kernel, 2 vCPUs, 256 MiB); Ctrl-A x quits."
/payload/kvmkit run --kernel /payload/l2/vmlinuz --initrd /payload/l2/initramfs.cpio \
    --append "$L2_APPEND" --memory 256M --cpus 2 --serial stdio
RUN
else
    qemu_opt=(--with-qemu)
    cat > "$payload/run.sh" <<'RUN'
echo "L1: starting QEMU microvm (Debian cloud kernel, 2 vCPUs, 256 MiB); Ctrl-A x quits."
qemu-system-x86_64 -M microvm,acpi=on,rtc=on -accel kvm -cpu host -m 256 -smp 2 -nodefaults -no-user-config \
    -display none -serial mon:stdio -no-reboot -kernel /payload/l2/vmlinuz \
    -initrd /payload/l2/initramfs.cpio -append "$L2_APPEND"
RUN
fi
rc=0
bash tests/nested/run-l1.sh --interactive --payload "$payload" --archive "$L2_ARCHIVE" "${qemu_opt[@]+"${qemu_opt[@]}"}" \
    --env "L2_APPEND=$append" --log "${KVMKIT_NESTED_CACHE:-build/nested-cache}/demo-l1.log" || rc=$?
echo
echo "demo: done (the VMM inside the nested host exited with status $rc)."
exit "$rc"
