# Shared by the qemu-img cross-validation scripts (tests/qcow2/run.sh, crash.sh, tests/img/run.sh):
# qemu_img_tests_init WHAT BINARY -> skips (exit 77, "1 skipped") without qemu-img, checks
# BINARY, sets $bin to its absolute path, and cds into a scratch directory removed at exit;
# check NAME CMD... counts (passed, failed; a script adds its own skips to skipped).
qemu_img_tests_init() {
	local what=$1
	bin=$2
	if ! command -v qemu-img >/dev/null; then
		echo "SKIP: $what: needs qemu-img (Debian: apt-get install qemu-utils)"
		echo "0 passed, 0 failed, 1 skipped"
		exit 77
	fi
	if [ ! -x "$bin" ]; then
		echo "$(basename "$bin") not found at $bin: build it first (ninja -C build)" >&2
		exit 1
	fi
	bin=$(realpath "$bin") # the tests run in a scratch directory
	work=$(mktemp -d /tmp/kvmkit-qemu-img-tests-XXXXXX)
	trap 'rm -rf "$work"' EXIT
	cd "$work" || exit 1
	passed=0
	failed=0
	skipped=0
}

check() { # name, command...
	local name=$1
	shift
	if out=$("$@" 2>&1); then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
		printf '%s\n' "$out" | sed 's/^/     /' | tail -8
	fi
}
