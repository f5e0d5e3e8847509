#!/bin/sh
# Installs the Debian 12 packages moonjail needs to build (plus any named as arguments), when
# any is missing.
set -eu
PKGS="gcc libc6-dev make cmake pkg-config liblua5.4-dev libseccomp-dev libnng-dev
libprotobuf-c-dev protobuf-c-compiler libcmocka-dev libinih-dev $*"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing$missing" >&2
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages and not root; run: apt-get install$missing" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
