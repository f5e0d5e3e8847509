# deploy/lib.sh: shared by deploy/check-*.sh (sourced; sets nothing else). ME names the caller.

say() { echo "$ME: $*"; }
die() {
	say "$*" >&2
	exit 2
}

# debian_root NAME INCLUDES: prints the path of a cached tarball of a Debian 12 minbase root
# with the packages INCLUDES (comma-separated, or empty), building it with debootstrap when it
# is missing. The cache, $CACHE (default /var/cache/moonjail-deploy), must be root's alone:
# what it holds is booted or imported as root.
debian_root() {
	CACHE=${CACHE:-/var/cache/moonjail-deploy}
	tgz=$CACHE/$1.tgz
	mkdir -p -m 0700 "$CACHE" || die "cannot make $CACHE"
	[ "$(stat -c %u "$CACHE")" = 0 ] && [ -z "$(find "$CACHE" -maxdepth 0 -perm /022)" ] &&
		[ ! -L "$CACHE" ] || die "$CACHE must be a directory of root's that nobody else can write"
	if [ ! -f "$tgz" ]; then
		mirror=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
		say "building a Debian 12 root (once; cached in $tgz)" >&2
		rm -rf "$CACHE/root"
		debootstrap --variant=minbase ${2:+--include=$2} bookworm "$CACHE/root" \
			"${mirror:-http://deb.debian.org/debian}" >"$CACHE/debootstrap.log" 2>&1 ||
			die "debootstrap failed (log: $CACHE/debootstrap.log)"
		tar -C "$CACHE/root" -czf "$tgz" . && rm -rf "$CACHE/root" || die "cannot save $tgz"
	fi
	echo "$tgz"
}

# help SCRIPT LAST: prints SCRIPT's header comment, lines 2 to LAST, as its --help.
help() {
	sed -n "2,$2p" "$1" | sed 's/^# \{0,1\}//'
}

# check WHAT CMD...: runs CMD and prints "ok    WHAT" or "FAIL  WHAT"; a failure sets FAILED=1.
FAILED=0
check() {
	what=$1
	shift
	if "$@"; then
		say "ok    $what"
	else
		say "FAIL  $what"
		FAILED=1
	fi
}

# log_has LOGCMD PATTERN...: up to 5 s for a line of LOGCMD's output (LOGCMD is a command
# name, run with no arguments) that matches every PATTERN.
log_has() {
	logcmd=$1
	shift
	j=0
	while [ $j -lt 50 ]; do
		m=$($logcmd)
		for p in "$@"; do
			m=$(printf '%s\n' "$m" | grep -e "$p")
		done
		[ -n "$m" ] && return 0
		sleep 0.1
		j=$((j + 1))
	done
	return 1
}
