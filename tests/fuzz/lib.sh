# Shared by the libFuzzer scripts (run.sh: qcow2, snapshot_run.sh: snapshot state, qmp_run.sh:
# QMP requests), sourced by
# bash after they set here/root: building a target under ASan+UBSan and running it for a
# bounded time from a scratch copy of its seed corpus, with the verdict line the test runner
# counts ("1 passed, 0 failed", or "0 passed, 1 failed" with the report and the input).

# fuzz_fail WHY: the verdict for a fuzz run that could not even start.
fuzz_fail() {
	echo "$1"
	echo "0 passed, 1 failed"
	exit 1
}

# fuzz_main NAME [BUILD-ARGS...] -- [SECONDS] [libFuzzer flags...]: builds target NAME from its
# sources in tests/fuzz/meson.build (build-fuzz/NAME_fuzz) and fuzzes it from NAME_corpus/ for
# SECONDS (default 60); crash inputs go to build-fuzz/NAME-*. Exits with the verdict.
fuzz_main() {
	local name=$1 args=() srcs secs
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	secs=${1:-60}
	[ $# -gt 0 ] && shift
	mapfile -t srcs < <(fuzz_sources "$name")
	[ ${#srcs[@]} -gt 0 ] || fuzz_fail "no sources for '$name' in tests/fuzz/meson.build"
	fuzz_build "$root/build-fuzz/${name}_fuzz" "${srcs[@]}" "${args[@]}"
	fuzz_run "$root/build-fuzz/${name}_fuzz" "$here/${name}_corpus" "$secs" \
		"$root/build-fuzz/$name-" "$@"
}

# fuzz_sources NAME: the target's sources as tests/fuzz/meson.build lists them (which builds
# the same target around replay.c for the unit suite), one path a line.
fuzz_sources() {
	sed -n "/^  '$1' : files(/,/)/p" "$here/meson.build" | grep -o "'[^']*\.c'" | tr -d "'" |
		sed "s|^|$here/|"
}

# fuzz_build BIN SOURCE... [-- LINK-ARGS...]: compiles the target with clang (CLANG overrides).
fuzz_build() {
	local bin=$1 cc=${CLANG:-clang}
	shift
	command -v "$cc" >/dev/null || fuzz_fail "clang not found (Debian: apt-get install clang)"
	mkdir -p "$(dirname "$bin")"
	echo "building $bin"
	"$cc" -std=gnu11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-I"$root/src" "$@" -o "$bin" -lpthread || fuzz_fail "build of the fuzz target failed"
}

# fuzz_run BIN SEEDS_DIR SECONDS ARTIFACT_PREFIX [libFuzzer flags...]: fuzzes from a scratch
# copy of the seeds (they stay as checked in), with per-input time and memory limits; exits
# with the verdict.
fuzz_run() {
	local bin=$1 seeds=$2 secs=$3 prefix=$4 work log rc start
	shift 4
	work=$(mktemp -d /tmp/kvmkit-fuzz-XXXXXX)
	trap 'rm -rf "$work"' EXIT
	mkdir "$work/corpus" "$work/tmp"
	cp "$seeds"/* "$work/corpus/"
	log=$work/fuzz.log
	echo "fuzzing for $secs s (log: $log while it runs)"
	start=$(date +%s)
	TMPDIR=$work/tmp ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=512 -malloc_limit_mb=512 \
		-artifact_prefix="$prefix" -print_final_stats=1 "$@" "$work/corpus" >"$log" 2>&1
	rc=$?
	grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log"
	echo "ran $(($(date +%s) - start)) s, exit status $rc; corpus grew to" \
		"$(ls "$work/corpus" | wc -l) inputs"
	if [ $rc -eq 0 ]; then
		echo "1 passed, 0 failed"
		exit 0
	fi
	echo "FINDING: the sanitizer / libFuzzer report:"
	sed -n '/^==[0-9]*==\|runtime error\|ERROR: libFuzzer\|^SUMMARY/,$p' "$log" | head -150
	local artifact
	artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
	echo "crash input: ${artifact:-(none written; see the report above)}"
	echo "replay: $bin ${artifact:-FILE}"
	echo "0 passed, 1 failed"
	exit 1
}
