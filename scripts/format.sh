#!/bin/sh
# Formats the C sources with the root .clang-format; --check fails on any difference instead.
set -eu
cd "$(dirname "$0")/.."
files=$(find common proto policy engine demo worker supervisor client tests bench -name '*.[ch]' | sort)
if [ "${1:-}" = "--check" ]; then
	# shellcheck disable=SC2086
	if ! clang-format --dry-run --Werror $files; then
		echo "format.sh: run 'sh scripts/format.sh' to fix the formatting above" >&2
		exit 1
	fi
	echo "format.sh: formatting is clean"
else
	# shellcheck disable=SC2086
	clang-format -i $files
fi
