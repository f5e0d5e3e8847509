#!/bin/sh
# check-systemd.sh: runs moonjaild from its systemd unit under a real systemd, in a throwaway
# Debian 12 container (systemd-nspawn), and checks what the unit promises.
#
# Usage: sh deploy/check-systemd.sh [BUILD_DIR]        (default: build)
#
# Needs root and the network (debootstrap fetches Debian 12 once; the root is cached as
# $CACHE/bookworm-systemd.tgz, CACHE defaulting to /var/cache/moonjail-deploy, a directory
# that must belong to root and be writable by nobody else, since what it holds is booted).
# Installs systemd-container and debootstrap when they are missing. `cmake --install` puts
# BUILD_DIR into the container with DESTDIR and prefix /usr/local. Not part of the test suite
# (it needs the network and takes a minute or two); run it after changing anything in
# deploy/.
#
# Checks, each printed as ok or FAIL:
#   - systemd-sysusers creates the workers' account from the installed sysusers.d entry;
#   - `systemctl enable --now moonjaild` starts it under the unit's confinement
#     (NoNewPrivileges=, the capability bounding set, ProtectSystem=strict, ...), and the
#     workers confine themselves: their account, chroot=yes, new namespaces;
#   - `moonjail eval` is answered, and an engine keeps its state across calls;
#   - `systemctl reload` rereads the config file;
#   - `systemctl stop` drains: a running call and one queued behind it both finish.
# Exit 0 when every check passed, 1 when one failed, 2 when the setup failed.

set -u

BUILD=${1:-build}
ME=check-systemd
. "$(dirname "$0")/lib.sh"
case "$BUILD" in
-h | --help)
	help "$0" 23
	exit 0
	;;
esac

[ "$(id -u)" = 0 ] || die "needs root"
[ -x "$BUILD/bin/moonjaild" ] && [ -x "$BUILD/bin/moonjail-worker" ] ||
	die "$BUILD/bin has no moonjaild or moonjail-worker; build first"
sh "$(dirname "$0")/../scripts/deps.sh" systemd-container debootstrap >/dev/null ||
	die "cannot install systemd-container and debootstrap"

tgz=$(debian_root bookworm-systemd \
	systemd,systemd-sysv,dbus,libnng1,liblua5.4-0,libprotobuf-c1,libinih1,libseccomp2) || exit 2

DIR=$(mktemp -d /var/tmp/moonjail-check.XXXXXX) || die "mktemp failed"
ROOT=$DIR/root
NSPAWN_PID=
# systemd-nspawn itself, and timeout(1) around it: SIGTERM to nspawn shuts the container
# down; whatever is left after 10 s is killed, and the root is removed only once both are gone.
cleanup() {
	if [ -n "$NSPAWN_PID" ]; then
		np=$(pgrep -P "$NSPAWN_PID" -x systemd-nspawn | head -n 1)
		kill -TERM ${np:-} "$NSPAWN_PID" 2>/dev/null
		i=0
		while { kill -0 "$NSPAWN_PID" 2>/dev/null || { [ -n "$np" ] && kill -0 "$np" 2>/dev/null; }; } &&
			[ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL ${np:-} "$NSPAWN_PID" 2>/dev/null
		wait "$NSPAWN_PID" 2>/dev/null
		if [ -n "$np" ] && kill -0 "$np" 2>/dev/null; then
			say "systemd-nspawn $np outlived SIGKILL; leaving $DIR in place" >&2
			return
		fi
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

mkdir "$ROOT" && tar -C "$ROOT" -xzf "$tgz" || die "cannot unpack $tgz"
DESTDIR=$ROOT cmake --install "$BUILD" --prefix /usr/local >"$DIR/install.log" 2>&1 ||
	die "cmake --install failed (log follows)$(cat "$DIR/install.log")"

# Boot it. --keep-unit and --register=no: the host need not run systemd itself.
timeout -k 15 600 systemd-nspawn --register=no --keep-unit -q -D "$ROOT" -b >"$DIR/boot.log" 2>&1 &
NSPAWN_PID=$!
INIT=
i=0
while [ $i -lt 300 ]; do
	np=$(pgrep -P "$NSPAWN_PID" -x systemd-nspawn | head -n 1)
	[ -n "$np" ] || np=$NSPAWN_PID
	INIT=$(pgrep -P "$np" -x systemd | head -n 1)
	if [ -n "$INIT" ]; then
		st=$(nsenter -t "$INIT" -a systemctl is-system-running 2>/dev/null)
		[ "$st" = running ] || [ "$st" = degraded ] && break
	fi
	sleep 0.1
	i=$((i + 1))
done
[ $i -lt 300 ] || die "the container did not boot in 30 s (log: $(tail -5 "$DIR/boot.log"))"

in_ct() { nsenter -t "$INIT" -a "$@"; }
journal() { in_ct journalctl -u moonjaild --no-pager -o cat 2>/dev/null; }
journal_has() { log_has journal "$@"; }

in_ct systemd-sysusers >/dev/null 2>&1
UID_W=$(in_ct getent passwd moonjail | cut -d: -f3)
check "systemd-sysusers made the workers' account (uid ${UID_W:-none})" [ -n "$UID_W" ]

in_ct systemctl daemon-reload
in_ct systemctl enable --now moonjaild >"$DIR/enable.log" 2>&1
check "systemctl enable --now moonjaild" in_ct systemctl is-active -q moonjaild
check "moonjaild holds kill,sys_admin under NoNewPrivileges" \
	journal_has "event=capabilities held=kill,sys_admin permitted_also=setuid,setgid,sys_chroot no_new_privs=1"
check "workers confined: uid $UID_W, chroot" journal_has "event=confined uid=$UID_W " "chroot=yes"
check "workers in new namespaces" journal_has "event=worker-started" "namespaces=pid,net,ipc,mnt,uts"

first=$(in_ct moonjail eval --tenant acme -e 'n = (n or 0) + 1 return n' 2>&1)
second=$(in_ct moonjail eval --tenant acme -e 'n = (n or 0) + 1 return n' 2>&1)
check "moonjail eval answers and the engine keeps its state ($first, $second)" \
	[ "$first,$second" = "1,2" ]

in_ct systemctl reload moonjaild >/dev/null 2>&1
check "systemctl reload rereads the config file" \
	journal_has "event=reload config=/usr/local/etc/moonjail/moonjail.conf"

slow='local t = os.clock() while os.clock() - t < 0.6 do end return "done"'
in_ct moonjail eval --tenant slow -e "$slow" >"$DIR/call1" 2>&1 &
c1=$!
sleep 0.1
in_ct moonjail eval --tenant slow -e "$slow" >"$DIR/call2" 2>&1 &
c2=$!
sleep 0.2
in_ct systemctl stop moonjaild
wait $c1 $c2
check "systemctl stop drains: running call ($(cat "$DIR/call1"))" [ "$(cat "$DIR/call1")" = '"done"' ]
check "systemctl stop drains: queued call ($(cat "$DIR/call2"))" [ "$(cat "$DIR/call2")" = '"done"' ]
check "moonjaild stopped cleanly" journal_has "event=stop clean=1"

if [ $FAILED = 0 ]; then
	say "all checks passed"
else
	say "the journal of moonjaild follows"
	journal | tail -40
fi
exit $FAILED
