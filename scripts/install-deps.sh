#!/bin/sh
# Installs, with apt-get, whatever ferry needs that this Debian machine lacks.
#   install-deps.sh demo   what building ferry and `make demo` need: the
#                          compiler and libraries, ncurses (ferry top), jq
#                          (the demo's account)
#   install-deps.sh bench  that, and QEMU (the reference every benchmark
#                          measures), iproute2 (bench net's bridge), gnuplot
#                          (the charts)
#   install-deps.sh        everything, for `make test` too: cmocka, clang and
#                          its sanitizer runtime (fuzzing), ping and socat (the
#                          network tests), ACPICA's iasl (the ACPI tables), tmux
#                          (ferry top in a real terminal), Prometheus's promtool
#                          (the metrics)
set -eu

DEMO="gcc make libc6-dev binutils libcjson-dev libseccomp-dev libncurses-dev jq procps"
BENCH="$DEMO qemu-system-x86 iproute2 gnuplot-nox"
ALL="$BENCH libcmocka-dev clang libclang-rt-dev iputils-ping socat acpica-tools tmux prometheus"
case "${1:-all}" in
demo) PACKAGES=$DEMO ;;
bench) PACKAGES=$BENCH ;;
all) PACKAGES=$ALL ;;
*)
	echo "usage: install-deps.sh [demo|bench|all]" >&2
	exit 2
	;;
esac

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "install-deps: need root (or sudo) to install:$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
