#!/bin/sh
# service_bench.sh: moonjail through moonjaild against a raw nng REQ/REP echo over ipc.
#
# Usage: sh bench/service_bench.sh [BUILD_DIR]        (default: build)
#
# Builds nothing. Takes moonjaild, moonjail, moonjail-bench and moonjail-worker from
# BUILD_DIR/bin, starts a private moonjaild (own runtime dir, own ipc listener, one worker per
# CPU), and runs moonjail-bench through it and moonjail-bench --echo (a raw REQ/REP echo in a
# separate process) at concurrency 1 and 50, interleaved over several rounds. Prints the
# medians and the issue's two ratios with PASS/MISS:
#   p50 latency at concurrency 1   <= 2x   the echo's
#   throughput at concurrency 50   >= 0.5x the echo's
# and, for information, the CPU time per request at concurrency 50 on each side (client plus
# moonjaild and its workers, or client plus echo server): on a machine whose CPUs are the
# limit, their ratio follows the throughput ratio, and shows which side's cost moved.
# When redis-server and redis-benchmark are installed (Debian: redis-server, redis-tools), each
# round also drives a private Redis over a unix socket with redis-benchmark, EVAL "return 1" 0
# at the same concurrencies, and the summary adds moonjail / Redis EVAL ratios: DESIGN.md's
# yardstick for throughput through the supervisor, printed without a target.
# Then stops moonjaild with SIGTERM and removes everything it made. A benchmark, not a test:
# MISS still exits 0. Exit 1 when a run reported errors, 2 when the setup failed.
#
# Knobs (environment): ROUNDS (5), REQ1 (5000), WARM1 (1000), REQ50 (30000), WARM50 (3000),
# TENANTS (4), WORKERS (number of CPUs), RUN_TIMEOUT (seconds per run, 180), REDIS (auto: the
# Redis side when both programs are found; 1: required; 0: skipped).

set -u

BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
REQ1=${REQ1:-5000}
WARM1=${WARM1:-1000}
REQ50=${REQ50:-30000}
WARM50=${WARM50:-3000}
TENANTS=${TENANTS:-4}
WORKERS=${WORKERS:-$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
RUN_TIMEOUT=${RUN_TIMEOUT:-180}

REDIS=${REDIS:-auto}

case "$BUILD" in
-h | --help)
	sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
esac

BIN=$BUILD/bin
for p in moonjaild moonjail moonjail-bench moonjail-worker; do
	if [ ! -x "$BIN/$p" ]; then
		echo "service_bench: $BIN/$p is missing; build first (see docs/benchmarks.md)" >&2
		exit 2
	fi
done
if ! command -v timeout >/dev/null 2>&1; then
	echo "service_bench: needs timeout(1) from coreutils" >&2
	exit 2
fi
case "$REDIS" in
0) ;;
auto | 1)
	if command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1 &&
		command -v redis-cli >/dev/null 2>&1; then
		REDIS=1
	elif [ "$REDIS" = 1 ]; then
		echo "service_bench: REDIS=1 needs redis-server, redis-cli and redis-benchmark" \
			"(apt-get install redis-server redis-tools)" >&2
		exit 2
	else
		REDIS=0
	fi
	;;
*)
	echo "service_bench: REDIS must be auto, 0 or 1" >&2
	exit 2
	;;
esac

DIR=$(mktemp -d /tmp/mj-service-bench.XXXXXX) || exit 2
URL=ipc://$DIR/moonjail.sock
LOG=$DIR/moonjaild.log
SV_PID=
REDIS_PID=
REDIS_SOCK=$DIR/redis.sock

# True while $1 runs (a zombie counts as gone: kill -0 alone would say yes).
alive() {
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$st" ] && [ "$st" != Z ]
}

# SIGTERM, then up to 10 s for moonjaild to drain and exit, then SIGKILL. Leftover workers
# (they should die with the supervisor) get the same treatment.
stop_service() {
	[ -n "$SV_PID" ] || return 0
	kill -TERM "$SV_PID" 2>/dev/null
	i=0
	while alive "$SV_PID" && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if alive "$SV_PID"; then
		echo "service_bench: moonjaild ignored SIGTERM for 10 s; killing it" >&2
		kill -KILL "$SV_PID" 2>/dev/null
	fi
	wait "$SV_PID" 2>/dev/null
	SV_STATUS=$?
	for wp in $(sed -n 's/.*event=worker-started .*pid=\([0-9]*\).*/\1/p' "$LOG" 2>/dev/null); do
		i=0
		while alive "$wp" && [ $i -lt 20 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if alive "$wp" && grep -q moonjail-worker "/proc/$wp/cmdline" 2>/dev/null; then
			echo "service_bench: worker $wp outlived moonjaild; killing it" >&2
			kill -KILL "$wp" 2>/dev/null
		fi
	done
	SV_PID=
}

cleanup() {
	stop_service
	if [ -n "$REDIS_PID" ]; then
		kill -TERM "$REDIS_PID" 2>/dev/null
		wait "$REDIS_PID" 2>/dev/null
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

# await NAME PID LOG CMD...: waits up to about 10 s for CMD to succeed while PID lives; exits 2
# with LOG when it does not.
await() {
	what=$1 pid=$2 log=$3
	shift 3
	i=0
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		if ! alive "$pid" || [ $i -ge 100 ]; then
			echo "service_bench: $what did not answer ping (log follows)" >&2
			cat "$log" >&2
			exit 2
		fi
		sleep 0.1
	done
}

redis_pong() {
	[ "$(timeout 5 redis-cli -s "$REDIS_SOCK" ping 2>/dev/null)" = PONG ]
}

# ---- start the service ----

"$BIN/moonjaild" --runtime-dir "$DIR/rt" --listen "$URL" --workers "$WORKERS" \
	--worker-bin "$BIN/moonjail-worker" 2>"$LOG" &
SV_PID=$!
await moonjaild "$SV_PID" "$LOG" timeout 5 "$BIN/moonjail" --url "$URL" --call-timeout-ms 1000 ping

# A private Redis: no TCP port, no persistence, its files in $DIR.
if [ "$REDIS" = 1 ]; then
	redis-server --port 0 --unixsocket "$REDIS_SOCK" --unixsocketperm 700 --save '' \
		--appendonly no --dir "$DIR" --daemonize no >"$DIR/redis.log" 2>&1 &
	REDIS_PID=$!
	await redis-server "$REDIS_PID" "$DIR/redis.log" redis_pong
fi

# ---- the rounds ----

FAILED=0

CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# CPU ticks (user + system) used so far by moonjaild and every worker it started.
service_ticks() {
	for p in $SV_PID $(sed -n 's/.*event=[a-z]*-started .*pid=\([0-9]*\).*/\1/p' "$LOG"); do
		sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null
	done | awk '{t += $12 + $13} END {print t + 0}'
}

# record NAME RC P50 THR CPU OUT: appends "P50 THR CPU" to $DIR/NAME and prints the run, or
# reports a failed run (exit RC, or no figures in its output OUT).
record() {
	if [ "$2" -ne 0 ] || [ -z "$3" ] || [ -z "$4" ]; then
		echo "service_bench: $1 run failed (exit $2): $(cat "$DIR/err") $6" >&2
		FAILED=1
		return
	fi
	echo "$3 $4 $5" >>"$DIR/$1"
	printf '  %-8s p50 %9.1f us  %9.1f req/s  cpu %6s us/req\n' "$1" "$3" "$4" "$5"
}

# run NAME C REQ WARM [--echo]: one moonjail-bench run; appends "p50 throughput cpu" to
# $DIR/NAME, cpu being the CPU time per measured request in us on both sides (client plus
# moonjaild and its workers, or client plus echo server). The service's side is counted from
# its processes' ticks around the whole run, warmup included, so it is divided by both.
run() {
	name=$1 c=$2 n=$3 w=$4
	shift 4
	if [ "${1:-}" = --echo ]; then
		set -- --echo
	else
		set -- --url "$URL"
	fi
	t0=$(service_ticks)
	out=$(timeout -k 5 "$RUN_TIMEOUT" "$BIN/moonjail-bench" "$@" --concurrency "$c" \
		--requests "$n" --warmup "$w" --tenants "$TENANTS" -e 'return 1' --json 2>"$DIR/err")
	rc=$?
	t1=$(service_ticks)
	p50=$(printf '%s\n' "$out" | sed -n 's/.*"p50":\([0-9.]*\).*/\1/p')
	thr=$(printf '%s\n' "$out" | sed -n 's/.*"throughput":\([0-9.]*\).*/\1/p')
	client=$(printf '%s\n' "$out" | sed -n 's/.*"client":\([0-9.]*\).*/\1/p')
	server=$(printf '%s\n' "$out" | sed -n 's/.*"echo_server":\([0-9.]*\).*/\1/p')
	if [ "$1" = --url ]; then
		server=$(awk -v a="$t0" -v b="$t1" -v t="$CLK_TCK" -v n=$((n + w)) \
			'BEGIN {printf "%.2f", (b - a) * 1e6 / t / n}')
	fi
	cpu=$(awk -v a="${client:-nan}" -v b="${server:-nan}" 'BEGIN {
		if (a == a + 0 && b == b + 0) printf "%.1f", a + b; else print "nan"}')
	record "$name" "$rc" "$p50" "$thr" "$cpu" "$out"
}

# run_redis NAME C REQ WARM: redis-benchmark EVAL "return 1" 0 at concurrency C, after WARM
# requests not counted; records p50 (in us) and throughput, with no CPU figure.
run_redis() {
	name=$1 c=$2 n=$3 w=$4
	if [ "$w" -gt 0 ]; then
		timeout -k 5 "$RUN_TIMEOUT" redis-benchmark -s "$REDIS_SOCK" -c "$c" -n "$w" --csv \
			EVAL "return 1" 0 >/dev/null 2>&1
	fi
	out=$(timeout -k 5 "$RUN_TIMEOUT" redis-benchmark -s "$REDIS_SOCK" -c "$c" -n "$n" --csv \
		EVAL "return 1" 0 2>"$DIR/err")
	rc=$?
	# "EVAL return 1 0","rps","avg","min","p50",... in ms
	line=$(printf '%s\n' "$out" | grep '^"EVAL' | tr -d '"')
	thr=$(printf '%s\n' "$line" | cut -d, -f2)
	p50=$(printf '%s\n' "$line" | cut -d, -f5 | awk '$1 == $1 + 0 {printf "%.1f", $1 * 1000}')
	record "$name" "$rc" "$p50" "$thr" nan "$out"
}

echo "service_bench: moonjail via moonjaild vs raw nng REQ/REP echo over ipc"
echo "  $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  workers $WORKERS, tenants $TENANTS, script 'return 1', $ROUNDS rounds"
echo "  c=1: $REQ1 requests (+$WARM1 warmup); c=50: $REQ50 requests (+$WARM50 warmup)"
if [ "$REDIS" = 1 ]; then
	echo "  and Redis EVAL ($(redis-server --version | sed 's/ sha=.*//'); redis-benchmark over a unix socket)"
else
	echo "  no Redis side: redis-server or redis-benchmark is not installed (REDIS=$REDIS)"
fi
r=1
while [ $r -le "$ROUNDS" ]; do
	echo "round $r"
	# Alternate which side goes first, so a burst of outside load lands on both.
	if [ $((r % 2)) -eq 1 ]; then
		run svc-c1 1 "$REQ1" "$WARM1"
		run echo-c1 1 "$REQ1" "$WARM1" --echo
		run echo-c50 50 "$REQ50" "$WARM50" --echo
		run svc-c50 50 "$REQ50" "$WARM50"
		if [ "$REDIS" = 1 ]; then
			run_redis redis-c1 1 "$REQ1" "$WARM1"
			run_redis redis-c50 50 "$REQ50" "$WARM50"
		fi
	else
		if [ "$REDIS" = 1 ]; then
			run_redis redis-c50 50 "$REQ50" "$WARM50"
			run_redis redis-c1 1 "$REQ1" "$WARM1"
		fi
		run echo-c1 1 "$REQ1" "$WARM1" --echo
		run svc-c1 1 "$REQ1" "$WARM1"
		run svc-c50 50 "$REQ50" "$WARM50"
		run echo-c50 50 "$REQ50" "$WARM50" --echo
	fi
	r=$((r + 1))
done

stop_service
if [ "${SV_STATUS:-0}" -ne 0 ]; then
	echo "service_bench: moonjaild exited $SV_STATUS after SIGTERM (log: see below)" >&2
	tail -n 20 "$LOG" >&2
fi

# ---- results ----

# median FILE FIELD
median() {
	[ -s "$1" ] || {
		echo nan
		return
	}
	cut -d' ' -f"$2" "$1" | sort -n | awk '{v[NR] = $1}
		END {printf "%.1f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# ratio_range FILE_A FILE_B FIELD: the lowest and highest per-round ratio A/B.
ratio_range() {
	[ -s "$1" ] && [ -s "$2" ] || {
		echo "n/a"
		return
	}
	cut -d' ' -f"$3" "$1" >"$DIR/ra"
	cut -d' ' -f"$3" "$2" >"$DIR/rb"
	paste -d' ' "$DIR/ra" "$DIR/rb" | awk '$2 > 0 {x = $1 / $2
		if (NR == 1 || x < lo) lo = x; if (NR == 1 || x > hi) hi = x}
		END {printf "%.2f-%.2f", lo, hi}'
}

S1=$(median "$DIR/svc-c1" 1)
E1=$(median "$DIR/echo-c1" 1)
S50=$(median "$DIR/svc-c50" 2)
E50=$(median "$DIR/echo-c50" 2)
ST1=$(median "$DIR/svc-c1" 2)
ET1=$(median "$DIR/echo-c1" 2)
SP50=$(median "$DIR/svc-c50" 1)
EP50=$(median "$DIR/echo-c50" 1)
R1RANGE=$(ratio_range "$DIR/svc-c1" "$DIR/echo-c1" 1)
R50RANGE=$(ratio_range "$DIR/svc-c50" "$DIR/echo-c50" 2)
SC50=$(median "$DIR/svc-c50" 3)
EC50=$(median "$DIR/echo-c50" 3)
RD1=$(median "$DIR/redis-c1" 1)
RDT1=$(median "$DIR/redis-c1" 2)
RDP50=$(median "$DIR/redis-c50" 1)
RD50=$(median "$DIR/redis-c50" 2)

echo
echo "service_bench: medians of $ROUNDS rounds"
printf '  %-28s %12s %12s %12s\n' "" moonjail echo "redis EVAL"
printf '  %-28s %12s %12s %12s\n' "c=1  p50 latency (us)" "$S1" "$E1" "$RD1"
printf '  %-28s %12s %12s %12s\n' "c=1  throughput (req/s)" "$ST1" "$ET1" "$RDT1"
printf '  %-28s %12s %12s %12s\n' "c=50 p50 latency (us)" "$SP50" "$EP50" "$RDP50"
printf '  %-28s %12s %12s %12s\n' "c=50 throughput (req/s)" "$S50" "$E50" "$RD50"
printf '  %-28s %12s %12s %12s\n' "c=50 cpu per request (us)" "$SC50" "$EC50" "-"
echo
echo "service_bench: ratios (moonjail / echo; the range is over the per-round ratios)"
echo "$S1 $E1 $S50 $E50" | awk -v r1="$R1RANGE" -v r50="$R50RANGE" '{
	if ($2 > 0 && $1 == $1 + 0) {
		x = $1 / $2
		printf "  c=1  p50 latency   %5.2fx  (target <= 2x)    %s  (rounds %s)\n", x,
			(x <= 2 ? "PASS" : "MISS"), r1
	} else
		print "  c=1  p50 latency   n/a"
	if ($4 > 0 && $3 == $3 + 0) {
		y = $3 / $4
		printf "  c=50 throughput    %5.2fx  (target >= 0.5x)  %s  (rounds %s)\n", y,
			(y >= 0.5 ? "PASS" : "MISS"), r50
	} else
		print "  c=50 throughput    n/a"
}'
echo "$SC50 $EC50" | awk '$1 > 0 && $2 > 0 && $1 == $1 + 0 && $2 == $2 + 0 {
	printf "  c=50 cpu per request, echo / moonjail: %.2fx (not a target: where the CPUs are\n", $2 / $1
	print  "       the limit, it follows the throughput ratio and shows which side moved)"
}'
if [ "$REDIS" = 1 ]; then
	R1R=$(ratio_range "$DIR/svc-c1" "$DIR/redis-c1" 1)
	R50R=$(ratio_range "$DIR/svc-c50" "$DIR/redis-c50" 2)
	echo
	echo "service_bench: against Redis EVAL (DESIGN.md's throughput yardstick; no target)"
	echo "$S1 $RD1 $S50 $RD50" | awk -v r1="$R1R" -v r50="$R50R" '{
		if ($2 > 0 && $1 == $1 + 0)
			printf "  c=1  p50 latency   %5.2fx  (rounds %s)\n", $1 / $2, r1
		if ($4 > 0 && $3 == $3 + 0)
			printf "  c=50 throughput    %5.2fx  (rounds %s)\n", $3 / $4, r50
	}'
fi
exit $FAILED
