#!/bin/sh
# Runs every built test: unit tests, the same under ASan+UBSan, integration
# tests against the normal ferry and against the sanitized one. Prints one
# line per suite and exits non-zero if any failed.
set -u
BUILD=${BUILD:-build}
failed=""

suite() {
	name=$1
	shift
	log="$BUILD/test-logs/$(echo "$name" | tr ' /' '__').log"
	mkdir -p "$BUILD/test-logs"
	start=$(date +%s)
	if "$@" >"$log" 2>&1; then
		echo "ok     $name ($(( $(date +%s) - start )) s)"
	else
		echo "FAILED $name ($(( $(date +%s) - start )) s): log in $log"
		tail -n 40 "$log" | sed 's/^/    /'
		failed="$failed
  $name"
	fi
}

for t in "$BUILD"/tests/unit/test_*; do
	suite "unit $(basename "$t")" "$t"
done
for t in "$BUILD"/asan/tests/unit/test_*; do
	suite "unit+asan $(basename "$t")" "$t"
done
for t in "$BUILD"/tests/integration/test_*; do
	suite "integration $(basename "$t")" "$t"
done
# The integration tests that drive ferry, again with the sanitized VMM (the
# QEMU-only ones, test_qemu*, would only repeat themselves), under
# LeakSanitizer too: every ferry process writes its sanitizer reports to
# $BUILD/test-logs/sanitizer/NAME.PID, and a suite with any report fails,
# even where the test expected ferry to fail (bad configs, killed runs),
# whose exit status alone would hide a leak.
leak_check() {
	name=$1
	shift
	dir="$BUILD/test-logs/sanitizer"
	rm -f "$dir/$name".*
	mkdir -p "$dir"
	env FERRY_BIN="$BUILD/asan/ferry" \
		ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$dir/$name" \
		UBSAN_OPTIONS="print_stacktrace=1:log_path=$dir/$name" "$@"
	rc=$?
	for f in "$dir/$name".*; do
		[ -e "$f" ] || continue
		echo "sanitizer report from a ferry process ($f):"
		cat "$f"
		rc=1
	done
	return $rc
}
for t in "$BUILD"/tests/integration/test_*; do
	case "$t" in *test_qemu*) continue ;; esac
	suite "integration+asan+lsan $(basename "$t")" leak_check "$(basename "$t")" "$t"
done

if [ -n "$failed" ]; then
	echo "failed suites:$failed"
	exit 1
fi
echo "all test suites passed"
