#!/bin/sh
# Builds moonjail twice (strict, and strict with ASan+UBSan) and runs the whole suite in both,
# then fuzzes each libFuzzer target for a few seconds (docs/fuzzing.md).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh clang-format
sh scripts/format.sh --check
jobs=$(nproc 2>/dev/null || echo 2)
for flavour in strict asan; do
	dir="build-ci-$flavour"
	san=OFF
	[ "$flavour" = asan ] && san=ON
	cmake -S . -B "$dir" -DMJ_WERROR=ON -DMJ_SANITIZE="$san" -DMJ_TEST_HOOKS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$dir" -j "$jobs"
	(cd "$dir" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j "$jobs")
done
# A short libFuzzer run per target (clang; replays every committed crash under the sanitizers).
sh scripts/fuzz.sh 5
echo "test.sh: all suites passed"
