#!/bin/sh
# Installs, with apt-get, whatever ferry needs that this Debian machine lacks:
# the compiler and libraries to build, cmocka for the tests, QEMU as the
# reference VMM that tests and benchmarks compare against, ping and socat for
# the network tests, ACPICA's iasl to check the ACPI tables ferry writes,
# ncurses for ferry top and tmux to test it in a real terminal, Prometheus's
# promtool to check the metrics ferry exposes.
set -eu

PACKAGES="gcc make libc6-dev binutils libcjson-dev libseccomp-dev libcmocka-dev clang libclang-rt-dev qemu-system-x86 iproute2 procps iputils-ping socat acpica-tools libncurses-dev tmux prometheus"

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
