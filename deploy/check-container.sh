#!/bin/sh
# check-container.sh: builds the image from deploy/Containerfile and checks what it promises,
# in real containers.
#
# Usage: sh deploy/check-container.sh
#
# Needs root, a running Docker daemon and the network (apt inside the build). Builds from the
# working tree (.dockerignore leaves build directories out). The base image is BASE (default
# debian:12-slim); with BASE=debootstrap it is a Debian 12 minbase root made with debootstrap
# and imported, for machines that cannot reach Docker Hub (the root is cached in $CACHE,
# default /var/cache/moonjail-deploy, which must be root's alone). Not part of the test suite;
# run it after changing deploy/Containerfile or how moonjaild starts.
#
# Checks, each printed as ok or FAIL:
#   - the image builds;
#   - a container answers `moonjail eval` and an engine keeps its state; its workers confine
#     themselves (the image's moonjail account, chroot=yes);
#   - the HEALTHCHECK (`moonjail ping`) reports healthy;
#   - under --security-opt no-new-privileges the workers still drop to their account;
#   - `docker stop` drains: a running call and one queued behind it both finish, exit 0.
# Exit 0 when every check passed, 1 when one failed, 2 when the setup failed.

set -u

ME=check-container
. "$(dirname "$0")/lib.sh"
case "${1:-}" in
-h | --help)
	help "$0" 21
	exit 0
	;;
esac

[ "$(id -u)" = 0 ] || die "needs root"
command -v docker >/dev/null 2>&1 || die "needs docker"
timeout 20 docker info >/dev/null 2>&1 || die "needs a running Docker daemon"
SRC=$(cd "$(dirname "$0")/.." && pwd)
BASE=${BASE:-debian:12-slim}
TAG=moonjail-check:$$
NAME=moonjail-check-$$
IMPORTED=

cleanup() {
	for c in "$NAME" "$NAME-nnp"; do
		timeout 30 docker rm -f "$c" >/dev/null 2>&1
	done
	timeout 30 docker rmi -f "$TAG" >/dev/null 2>&1
	[ -z "$IMPORTED" ] || timeout 30 docker rmi -f "$IMPORTED" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

if [ "$BASE" = debootstrap ]; then
	sh "$SRC/scripts/deps.sh" debootstrap >/dev/null || die "cannot install debootstrap"
	tgz=$(debian_root bookworm-minbase "") || exit 2
	IMPORTED=moonjail-check-base:$$
	timeout 300 docker import "$tgz" "$IMPORTED" >/dev/null || die "docker import failed"
	BASE=$IMPORTED
fi

# Up to 10 s for `moonjail ping` to answer in container $1.
answers() {
	i=0
	until timeout 10 docker exec "$1" moonjail ping >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 50 ] || return 1
		sleep 0.2
	done
}
# Up to 5 s for a log line of container $1 matching every further pattern.
logs_main() { timeout 10 docker logs "$NAME" 2>&1; }
logs_nnp() { timeout 10 docker logs "$NAME-nnp" 2>&1; }
logged() {
	c=$1
	shift
	if [ "$c" = "$NAME" ]; then log_has logs_main "$@"; else log_has logs_nnp "$@"; fi
}
# Up to 20 s for the health check of container $1 to report healthy.
healthy() {
	j=0
	while [ $j -lt 100 ]; do
		[ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ] && return 0
		sleep 0.2
		j=$((j + 1))
	done
	return 1
}

# --network host for the build: apt must reach the mirror even where the daemon runs without a
# bridge.
if timeout 1200 docker build --network host --build-arg "BASE=$BASE" -f "$SRC/deploy/Containerfile" \
	-t "$TAG" "$SRC" >/tmp/"$NAME".build.log 2>&1; then
	say "ok    the image builds (from $BASE)"
	rm -f /tmp/"$NAME".build.log
else
	say "FAIL  the image builds (log follows)"
	tail -30 /tmp/"$NAME".build.log
	rm -f /tmp/"$NAME".build.log
	exit 1
fi
UID_W=$(timeout 30 docker run --rm --entrypoint id "$TAG" -u moonjail 2>/dev/null)

timeout 30 docker run -d --name "$NAME" --network none --health-interval 1s "$TAG" >/dev/null ||
	die "docker run failed"
check "the container answers moonjail ping" answers "$NAME"
first=$(timeout 10 docker exec "$NAME" moonjail eval --tenant acme -e 'n = (n or 0) + 1 return n' 2>&1)
second=$(timeout 10 docker exec "$NAME" moonjail eval --tenant acme -e 'n = (n or 0) + 1 return n' 2>&1)
check "moonjail eval answers and the engine keeps its state ($first, $second)" \
	[ "$first,$second" = "1,2" ]
check "workers confined: uid ${UID_W:-?}, chroot" logged "$NAME" "event=confined uid=$UID_W " "chroot=yes"
check "the health check reports healthy" healthy "$NAME"

timeout 30 docker run -d --name "$NAME-nnp" --network none --security-opt no-new-privileges \
	"$TAG" >/dev/null || die "docker run failed"
answers "$NAME-nnp"
nnp=$(timeout 10 docker exec "$NAME-nnp" moonjail eval --tenant t -e 'return 6 * 7' 2>&1)
check "under no-new-privileges: eval answers ($nnp)" [ "$nnp" = 42 ]
check "under no-new-privileges: workers drop to uid ${UID_W:-?}" \
	logged "$NAME-nnp" "event=confined uid=$UID_W " "chroot=yes"

slow='local t = os.clock() while os.clock() - t < 0.6 do end return "done"'
timeout 20 docker exec "$NAME" moonjail eval --tenant slow -e "$slow" >/tmp/"$NAME".c1 2>&1 &
c1=$!
sleep 0.1
timeout 20 docker exec "$NAME" moonjail eval --tenant slow -e "$slow" >/tmp/"$NAME".c2 2>&1 &
c2=$!
sleep 0.2
timeout 60 docker stop -t 30 "$NAME" >/dev/null
wait $c1 $c2
r1=$(cat /tmp/"$NAME".c1)
r2=$(cat /tmp/"$NAME".c2)
rm -f /tmp/"$NAME".c1 /tmp/"$NAME".c2
check "docker stop drains: running call ($r1)" [ "$r1" = '"done"' ]
check "docker stop drains: queued call ($r2)" [ "$r2" = '"done"' ]
check "moonjaild exits 0 and cleanly" logged "$NAME" "event=stop clean=1"
code=$(docker inspect -f '{{.State.ExitCode}}' "$NAME" 2>/dev/null)
check "the container's exit status is 0 ($code)" [ "$code" = 0 ]

if [ $FAILED = 0 ]; then
	say "all checks passed"
else
	say "the log of moonjaild follows"
	timeout 10 docker logs "$NAME" 2>&1 | tail -40
fi
exit $FAILED
