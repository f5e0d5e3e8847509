#!/bin/sh
# soak.sh: a long run through moonjaild, with the supervisor's and workers' memory sampled.
#
# Usage: sh bench/soak.sh [BUILD_DIR]        (default: build)
#
# Starts a private moonjaild from BUILD_DIR/bin with a small per-worker Lua budget, then sends
# REQUESTS eval requests in CHUNKS chunks with moonjail-bench, spread over TENANTS tenants (one
# engine each, keeping a counter), so the workers must evict engines (LRU) all along. After
# each chunk it prints the resident memory (VmRSS) of moonjaild and of every worker. At the end
# it checks:
#   - every request succeeded;
#   - moonjaild's RSS grew by at most SUPERVISOR_SLACK_KB over the first sample;
#   - no worker's RSS exceeded twice its Lua budget plus WORKER_BASE_KB.
# Not part of the test suite: it takes minutes. Exit 0 when the checks pass, 1 when one fails,
# 2 when the setup failed.
#
# Knobs (environment): REQUESTS (1000000), CHUNKS (10), TENANTS (5000), CONCURRENCY (16),
# WORKER_MEMORY (32M, the per-worker Lua budget), WORKERS (2), SUPERVISOR_SLACK_KB (16384),
# WORKER_BASE_KB (65536).

set -u

BUILD=${1:-build}
REQUESTS=${REQUESTS:-1000000}
CHUNKS=${CHUNKS:-10}
TENANTS=${TENANTS:-5000}
CONCURRENCY=${CONCURRENCY:-16}
WORKER_MEMORY=${WORKER_MEMORY:-32M}
WORKERS=${WORKERS:-2}
SUPERVISOR_SLACK_KB=${SUPERVISOR_SLACK_KB:-16384}
WORKER_BASE_KB=${WORKER_BASE_KB:-65536}

case "$BUILD" in
-h | --help)
	sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
esac

BIN=$BUILD/bin
for p in moonjaild moonjail-bench moonjail-worker; do
	if [ ! -x "$BIN/$p" ]; then
		echo "soak: $BIN/$p is missing; build first (cmake --build $BUILD)" >&2
		exit 2
	fi
done

budget_kb=$(case "$WORKER_MEMORY" in
	*K) echo "${WORKER_MEMORY%K}" ;;
	*M) echo $((${WORKER_MEMORY%M} * 1024)) ;;
	*G) echo $((${WORKER_MEMORY%G} * 1024 * 1024)) ;;
	*) echo $((WORKER_MEMORY / 1024)) ;;
	esac)
dir=$(mktemp -d /tmp/moonjail-soak.XXXXXX)
url="ipc://$dir/rt/moonjail.sock"
"$BIN/moonjaild" --runtime-dir "$dir/rt" --workers "$WORKERS" --worker-memory "$WORKER_MEMORY" \
	--listen "$url" >"$dir/moonjaild.log" 2>&1 &
sv=$!
cleanup() {
	kill -TERM "$sv" 2>/dev/null
	wait "$sv" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
i=0
while [ ! -S "$dir/rt/moonjail.sock" ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ ! -S "$dir/rt/moonjail.sock" ]; then
	echo "soak: moonjaild did not start; its log:" >&2
	cat "$dir/moonjaild.log" >&2
	exit 2
fi

rss_kb() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

per_chunk=$((REQUESTS / CHUNKS))
first_sv=0
max_worker=0
failed=0
printf '%-6s %-10s %-12s %s\n' chunk requests moonjaild_kb "workers_kb (pid=rss)"
c=1
while [ $c -le "$CHUNKS" ]; do
	if ! "$BIN/moonjail-bench" --url "$url" --requests "$per_chunk" --warmup 0 \
		--concurrency "$CONCURRENCY" --tenants "$TENANTS" \
		-e 'n = (n or 0) + 1 s = string.rep("x", 512) return n' >"$dir/bench.out" 2>&1; then
		echo "soak: chunk $c had failed requests:" >&2
		cat "$dir/bench.out" >&2
		failed=1
	fi
	svk=$(rss_kb "$sv")
	[ "$first_sv" -eq 0 ] && first_sv=$svk
	workers=""
	for w in $(pgrep -P "$sv" -x moonjail-worker); do
		k=$(rss_kb "$w")
		workers="$workers $w=$k"
		[ "$k" -gt "$max_worker" ] && max_worker=$k
	done
	printf '%-6s %-10s %-12s %s\n' "$c" $((c * per_chunk)) "$svk" "$workers"
	c=$((c + 1))
done

limit_worker=$((budget_kb * 2 + WORKER_BASE_KB))
echo "moonjaild: first ${first_sv} KiB, last ${svk} KiB (allowed growth ${SUPERVISOR_SLACK_KB} KiB)"
echo "workers: largest ${max_worker} KiB (allowed ${limit_worker} KiB: twice the budget plus base)"
echo "evictions: $(grep -c 'event=evict' "$dir/moonjaild.log" 2>/dev/null || echo 0) logged"
[ "$svk" -le $((first_sv + SUPERVISOR_SLACK_KB)) ] || {
	echo "soak: FAIL: moonjaild grew" >&2
	failed=1
}
[ "$max_worker" -le "$limit_worker" ] || {
	echo "soak: FAIL: a worker outgrew its budget" >&2
	failed=1
}
[ $failed -eq 0 ] && echo "soak: PASS"
exit $failed
