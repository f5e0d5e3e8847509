#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for a while over a copy of its corpus:
# scripts/fuzz.sh [seconds per target, default 10] [build dir, default build-fuzz]. Exits
# non-zero when any target finds a crash, and says how to keep it as a regression test.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-10}
dir=${2:-build-fuzz}
targets="request value load"
case $secs in
'' | *[!0-9]*)
	echo "usage: sh scripts/fuzz.sh [seconds] [build-dir]" >&2
	exit 2
	;;
esac
# libFuzzer's runtime is in libclang-rt-dev, which clang only recommends.
sh scripts/deps.sh clang libclang-rt-dev
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DMJ_FUZZ=ON -DMJ_TESTS=OFF -DMJ_BENCH=OFF \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$dir" -j "$jobs" --target fuzz_request fuzz_value fuzz_load

# The fuzzers add inputs to their corpus directory: give them a copy, never fuzz/corpus.
work=$(mktemp -d "${TMPDIR:-/tmp}/moonjail-fuzz.XXXXXX")
failed=""
for t in $targets; do
	mkdir "$work/$t"
	cp fuzz/corpus/"$t"/* "$work/$t"/
	dict=""
	[ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
	echo "fuzz.sh: fuzz_$t for ${secs}s" >&2
	# shellcheck disable=SC2086
	if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$dir/bin/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$work/$t-" $dict "$work/$t" \
		>"$work/$t.log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
		rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log")
		echo "fuzz.sh: fuzz_$t: ${runs:-?} runs, ${rate:-?}/s, no crash" >&2
	else
		failed="$failed $t"
		echo "fuzz.sh: fuzz_$t FOUND A CRASH; the end of its log ($work/$t.log):" >&2
		tail -n 60 "$work/$t.log" >&2
		for a in "$work/$t"-*; do
			[ -f "$a" ] || continue
			known=""
			for c in fuzz/corpus/"$t"/*; do
				cmp -s "$a" "$c" && known=$c
			done
			if [ -n "$known" ]; then
				echo "fuzz.sh: the committed regression input $known still fails" >&2
				continue
			fi
			echo "fuzz.sh: crash input $a; keep it as a regression test with:" >&2
			echo "  cp '$a' fuzz/corpus/$t/crash-SHORT-NAME" >&2
			echo "  (then ctest -R fuzz_replay_$t replays it in every build; see docs/fuzzing.md)" >&2
		done
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz.sh: crashes in:$failed (inputs and logs kept in $work)" >&2
	exit 1
fi
rm -rf "$work"
echo "fuzz.sh: no crashes"
