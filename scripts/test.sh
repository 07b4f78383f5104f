#!/usr/bin/env bash
# Runs all of kvmkit's tests: unit and tier A (host /dev/kvm) in a normal and a sanitizer
# build, then tier B (stock Linux guests in the nested test host). Usage: scripts/test.sh [--no-nested]
set -uo pipefail
cd "$(dirname "$0")/.."

nested=1
[ "${1:-}" = "--no-nested" ] && nested=0

bash scripts/install-deps.sh || { echo "test: cannot install dependencies"; exit 1; }

passed=0
failed=0
skipped=0
failures=()
skips=()

# Adds one stage's counts, read from a log's "Ok: N ... Fail: N ... Skipped: N" (meson) or
# "N passed, N failed[, N skipped]" (our scripts) lines; the "SKIP: why" lines name what a
# skipped test needs. Exit status 77 is a skip, not a failure. A stage that ran no test at all
# failed: this script installs everything its stages need, so nothing may be skipped whole.
count() {
	local name=$1 log=$2 rc=$3 p f s line
	if grep -q '^Ok:' "$log"; then
		p=$(awk '/^Ok:/ {print $2}' "$log" | tail -1)
		f=$(awk '/^Fail:/ {print $2}' "$log" | tail -1)
		f=$((f + $(awk '/^Timeout:/ {print $2}' "$log" | tail -1)))
		s=$(awk '/^Skipped:/ {print $2}' "$log" | tail -1)
	else
		line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" | tail -1)
		p=$(sed -n 's/^\([A-Za-z]*: \)\?\([0-9]\+\) passed.*/\2/p' <<<"$line")
		f=$(sed -n 's/.* \([0-9]\+\) failed.*/\1/p' <<<"$line")
		s=$(sed -n 's/.* \([0-9]\+\) skipped$/\1/p' <<<"$line")
	fi
	p=${p:-0}
	f=${f:-0}
	s=${s:-0}
	# A stage that failed without reporting a failing test still counts as one failure.
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ "$f" -eq 0 ]; then f=1; fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		echo "== $name: ran no test"
		f=1
	fi
	if [ "$s" -gt 0 ]; then
		skips+=("$name: $s ($(grep 'SKIP' "$log" | sed 's/^ *//' | sort -u | paste -sd ';'))")
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	[ "$f" -eq 0 ] || failures+=("$name")
	echo "== $name: $p passed, $f failed, $s skipped"
}

stage() {
	local name=$1; shift
	local log
	log=$(mktemp)
	echo "== $name: $*"
	"$@" 2>&1 | tee "$log"
	count "$name" "$log" "${PIPESTATUS[0]}"
	rm -f "$log"
}

# A tier B stage. Known open problem (issue 9's notes): about once per full run a stock Linux
# guest with 2 vCPUs triple-faults (with or without virtio devices; seen so far while init's
# first lines went out on the serial port), or the nested host powers off without the payload's
# result; the cause is not found yet. Such a run (and only such a run, as report.sh's
# TIER-B-TRIPLE-FAULT line says) is run once more; the first attempt's log stays above and the
# stage is listed at the end.
intermittent=()
stage_nested() {
	local name=$1; shift
	local log rc
	log=$(mktemp)
	echo "== $name: $*"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	if [ "$rc" -ne 0 ] && grep -qE '^TIER-B-TRIPLE-FAULT|without reporting the payload' "$log"; then
		intermittent+=("$name")
		echo "== $name: INTERMITTENT: the known triple fault / lost result (above); running it once more"
		"$@" 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
	fi
	count "$name" "$log" "$rc"
	rm -f "$log"
}

build() {
	local dir=$1; shift
	{ [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@"; } && ninja -C "$dir"
}

stage "device code and VM core: no include cycle" python3 scripts/include_cycles.py
if build build; then
	stage "unit + tier A + control" meson test -C build --print-errorlogs --suite unit \
		--suite tier-a --suite control
	stage "qcow2 against qemu-img" bash tests/qcow2/run.sh build/tests/qcow2/qcow2-io
	stage "qcow2 after kill -9 (qemu-img check, flushed data)" \
		bash tests/qcow2/crash.sh build/tests/qcow2/qcow2-io
	stage "kvmkit-img against qemu-img" bash tests/img/run.sh build/src/img/kvmkit-img
	stage "kvmkit-img snapshot (internal snapshots, kill -9)" \
		bash tests/img/snapshot.sh build/src/img/kvmkit-img
	stage "kvmkit-img commit and rebase" bash tests/img/commit.sh build/src/img/kvmkit-img
	stage "kvmkit-img convert -c, zstd" bash tests/img/compress.sh build/src/img/kvmkit-img
	stage "kvmkit-img check -r, shrink, preallocation" \
		bash tests/img/repair.sh build/src/img/kvmkit-img
	stage "kvmkit-img golden outputs" bash tests/img/golden.sh
	stage "qcow2 fuzz (30 s)" bash tests/fuzz/run.sh 30
	stage "kvmkit-img image parsing fuzz (30 s)" bash tests/fuzz/img_run.sh 30
	stage "snapshots (save/restore chains, restore time, refusals, tamper)" \
		bash tests/migration/snapshot.sh build/kvmkit build/tests/guests
	stage "snapshot state fuzz (30 s)" bash tests/fuzz/snapshot_run.sh 30
	stage "QMP request fuzz (30 s)" bash tests/fuzz/qmp_run.sh 30
	stage "virtio request fuzz (30 s)" bash tests/fuzz/virtio_run.sh 30
	stage "fw_cfg DMA fuzz (30 s)" bash tests/fuzz/fw_cfg_run.sh 30
	stage "migration receive fuzz (30 s)" bash tests/fuzz/migration_run.sh 30
	stage "live migration (tier A)" bash tests/migration/migrate.sh build/kvmkit build/tests/guests
else
	failed=$((failed + 1)); failures+=("build")
fi

if build build-sanitize -Db_sanitize=address,undefined -Db_lundef=false; then
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		stage "unit + tier A + control (ASan+UBSan)" meson test -C build-sanitize \
		--print-errorlogs --suite unit --suite tier-a --suite control
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		stage "snapshots (ASan+UBSan)" bash tests/migration/snapshot.sh build-sanitize/kvmkit \
		build-sanitize/tests/guests
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
		stage "live migration (ASan+UBSan)" bash tests/migration/migrate.sh \
		build-sanitize/kvmkit build-sanitize/tests/guests
else
	failed=$((failed + 1)); failures+=("sanitizer build")
fi

if [ "$nested" -eq 1 ]; then
	stage_nested "tier B (nested host, stock Linux)" bash tests/nested/boot_linux.sh build/kvmkit
	stage_nested "tier B firmware boot: SeaBIOS -> GRUB -> Linux from virtio-blk (QEMU, then kvmkit)" \
		bash tests/nested/firmware.sh build/kvmkit
	stage_nested "tier B test guests on a real KVM (ioapic, kvmclock; kvmkit and QEMU)" \
		bash tests/nested/guests.sh build/kvmkit build/tests/guests
	stage_nested "tier B virtio-pci (root on virtio-blk, virtio-rng, virtio-console)" \
		bash tests/nested/virtio.sh build/kvmkit
	stage_nested "tier B root on a qcow2 overlay (qemu-img check, commit, compare)" \
		bash tests/nested/virtio.sh build/kvmkit --root-format qcow2
	stage_nested "tier B virtio-mmio (the same devices)" \
		bash tests/nested/virtio.sh build/kvmkit --kvmkit-args "--transport mmio"
	stage_nested "tier B virtio-net (user-mode and TAP)" bash tests/nested/virtio_net.sh build/kvmkit
	stage_nested "tier B virtio-net on virtio-mmio" \
		bash tests/nested/virtio_net.sh build/kvmkit --kvmkit-args "--transport mmio"
	stage_nested "tier B QMP: status, pause without a clock jump, reset, ACPI power button" \
		bash tests/nested/lifecycle.sh build/kvmkit
	stage_nested "tier B save/restore and live migration with the disk between two namespaces" \
		bash tests/nested/migrate_linux.sh build/kvmkit
	stage_nested "tier B real-mode instruction suite (kvmkit against QEMU)" \
		bash tests/nested/realmode.sh build/kvmkit
fi

echo
[ ${#skips[@]} -eq 0 ] || printf 'skipped in %s\n' "${skips[@]}"
[ ${#intermittent[@]} -eq 0 ] || echo "ran twice after the known intermittent failure: ${intermittent[*]}"
[ ${#failures[@]} -eq 0 ] || echo "failed stages: ${failures[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
