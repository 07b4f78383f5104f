# Options and set-up shared by the tier B device tests (virtio.sh, virtio_net.sh); sourced by
# bash after the script defines usage() and die(). Sets here/repo/cache, kvmkit, vmm, l2_timeout,
# kvmkit_args, root_format (--root-format, for scripts with a root disk), known_bug_check/why,
# variant (a file-name tag for the options that change the run, so each variant keeps its own
# log), and the fetch.sh and l2-archive.sh variables.
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KVMKIT_NESTED_CACHE:-$repo/build/nested-cache}

kvmkit="" vmm=kvmkit l2_timeout=300 kvmkit_args="" root_format=raw
while [[ $# -gt 0 ]]; do
    case "$1" in
    --vmm) vmm=$2; shift 2 ;;
    --l2-timeout) l2_timeout=$2; shift 2 ;;
    --kvmkit-args) kvmkit_args=$2; shift 2 ;;
    --root-format) root_format=$2; shift 2 ;;
    --known-bug) known_bug_check=${2%%=*} known_bug_why=${2#*=}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) [[ -z "$kvmkit" ]] || die "one KVMKIT_BINARY only"; kvmkit=$1; shift ;;
    esac
done
case "$root_format" in raw|qcow2) ;; *) die "--root-format wants raw or qcow2, got: $root_format" ;; esac
case "$vmm" in
kvmkit) [[ -x "$kvmkit" ]] || die "not an executable: ${kvmkit:-(none)} (build it: ninja -C build)" ;;
qemu) ;;
*) die "--vmm wants kvmkit or qemu, got: $vmm" ;;
esac

variant=$vmm
[[ "$root_format" == raw ]] || variant+=-$root_format
[[ -z "$kvmkit_args" ]] || variant+=-$(tr -cs 'A-Za-z0-9' '-' <<< "$kvmkit_args" | sed 's/^-*//; s/-*$//')

mkdir -p "$cache"
l2env=$("$here/l2-archive.sh" "$cache") || die "could not fetch or build the L2 guest (see above)"
eval "$l2env"
fenv=$("$here/fetch.sh" "$cache") || die "could not fetch the kernels"
eval "$fenv"
