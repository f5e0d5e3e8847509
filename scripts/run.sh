#!/bin/sh
# Builds moonjail, starts moonjaild on embedded defaults, and shows it answering a request.
# The service keeps running in the background; the script prints how to use and stop it.
# With --foreground, moonjaild runs in the foreground instead (Ctrl-C drains and stops it).
set -eu
cd "$(dirname "$0")/.."
sh scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMJ_TESTS=OFF -DMJ_BENCH=OFF >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
bin=$(pwd)/build/bin
if [ "$(id -u)" -eq 0 ]; then rundir=/run/moonjail; else rundir=/tmp/moonjail-$(id -u); fi
url="ipc://$rundir/moonjail.sock"
log="$(pwd)/build/moonjaild.log"

if "$bin/moonjail" --url "$url" ping >/dev/null 2>&1; then
	echo "moonjaild is already running at $url"
else
	if [ "${1:-}" = "--foreground" ]; then
		exec "$bin/moonjaild" --runtime-dir "$rundir"
	fi
	"$bin/moonjaild" --runtime-dir "$rundir" 2>"$log" &
	pid=$!
	i=0
	until "$bin/moonjail" --url "$url" ping >/dev/null 2>&1; do
		i=$((i + 1))
		if [ "$i" -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
			echo "moonjaild did not start; its log:" >&2
			cat "$log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "moonjaild is running (pid $pid), listening on $url; log: $log"
fi
echo '$ moonjail eval --tenant demo -e ...'
"$bin/moonjail" --url "$url" eval --tenant demo -e '
local t = {}
for i = 1, 5 do t[i] = i * i end
print("squares:", table.concat(t, " "))
return t, _VERSION'
echo
echo "Try: $bin/moonjail --url $url eval --tenant demo -e 'return 6 * 7'"
echo "Stop it with: kill \$(pgrep -x moonjaild)   (SIGTERM drains in-flight requests)"
