#!/bin/sh
# Builds ferry's Linux test guest (linux/README.md): Debian's linux-source-6.1
# with linux/patches/*.patch, `make tinyconfig` plus linux/config, ferry's
# modules (linux/modules) built out of tree against it, and an initramfs
# holding linux/init/init.c, the ferry-msg tool (linux/tools, linux/lib), all
# static, and the modules. Installs build tools with apt-get if they are
# missing.
#
# The result is cached under $FERRY_CACHE/linux/<hash> (default
# /var/cache/ferry), keyed by a hash of every input: the config, the patches,
# the init's, the tool's and the modules' sources, ferry's device headers,
# this script, the kernel source package's version and the compiler's. A
# second build with the same inputs, from any clone on this machine, only
# copies the kernel into OUT.
#
# usage: scripts/linux-guest.sh OUT_DIR
#   writes OUT_DIR/vmlinux, System.map, config, and OUT_DIR/modules/*.ko
set -eu

[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${FERRY_CACHE:-/var/cache/ferry}/linux
JOBS=${FERRY_LINUX_JOBS:-2}

PACKAGES="linux-source-6.1 gcc make libc6-dev binutils flex bison bc cpio xz-utils libelf-dev libssl-dev acpica-tools"
missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	echo "linux-guest: installing:$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi

SRC_TAR=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -n 1)
[ -n "$SRC_TAR" ] || { echo "linux-guest: no /usr/src/linux-source-6.1.tar.*" >&2; exit 1; }
SRC_VERSION=$(dpkg-query -W -f='${Version}' linux-source-6.1)
CC_VERSION=$(gcc --version | head -n 1)

# Inputs, in a fixed order, each with its name.
inputs() {
	echo "source $SRC_VERSION"
	echo "cc $CC_VERSION"
	for f in scripts/linux-guest.sh linux/config linux/init/init.c linux/patches/*.patch \
		linux/modules/Kbuild linux/modules/*.c linux/modules/compat/*.h linux/include/uapi/*.h \
		linux/lib/*.c linux/lib/*.h linux/tools/*.c include/ferry/*.h; do
		# An in-place module build (make M=) leaves *.mod.c beside the sources.
		case $f in *.mod.c) continue ;; esac
		echo "file $f"
		cat "$ROOT/$f"
	done
}
HASH=$(inputs | sha256sum | cut -c1-16)
PATCH_HASH=$(cat "$ROOT"/linux/patches/*.patch | sha256sum | cut -c1-12)
RESULT=$CACHE/$HASH

install_result() {
	mkdir -p "$OUT/modules"
	rm -f "$OUT"/modules/*.ko
	for f in vmlinux System.map config "$RESULT"/modules/*.ko; do
		f=${f#"$RESULT"/}
		rm -f "$OUT/$f"
		ln "$RESULT/$f" "$OUT/$f" 2>/dev/null || cp "$RESULT/$f" "$OUT/$f"
	done
	echo "$HASH" >"$OUT/hash"
}

if [ -f "$RESULT/vmlinux" ] && [ -d "$RESULT/modules" ]; then
	install_result
	echo "linux-guest: cached kernel $HASH ($RESULT)"
	exit 0
fi

mkdir -p "$CACHE"
# One build at a time on this machine; a second caller waits, then finds
# the result in the cache.
exec 9>"$CACHE/lock"
flock 9
if [ -f "$RESULT/vmlinux" ] && [ -d "$RESULT/modules" ]; then
	install_result
	echo "linux-guest: cached kernel $HASH ($RESULT)"
	exit 0
fi

start=$(date +%s)
# The patched source tree is kept between builds with the same source and
# patches, so a config or init change rebuilds only what it touches.
TREE=$CACHE/tree-$SRC_VERSION-$PATCH_HASH
if [ ! -f "$TREE/.ferry-ready" ]; then
	for old in "$CACHE"/tree-*; do
		[ -d "$old" ] && [ "$old" != "$TREE" ] && rm -rf "$old"
	done
	rm -rf "$TREE"
	mkdir -p "$TREE"
	echo "linux-guest: unpacking $SRC_TAR"
	tar -xf "$SRC_TAR" -C "$TREE" --strip-components=1
	for p in "$ROOT"/linux/patches/*.patch; do
		echo "linux-guest: applying $(basename "$p")"
		patch -d "$TREE" -p1 --quiet --forward <"$p"
	done
	touch "$TREE/.ferry-ready"
fi

# The init and ferry-msg: static, so the initramfs needs nothing else.
mkdir -p "$TREE/ferry"
gcc -static -Os -std=gnu11 -Wall -Wextra -Werror -Wno-format-truncation -o "$TREE/ferry/init" "$ROOT/linux/init/init.c"
gcc -static -O2 -std=gnu11 -Wall -Wextra -Werror -I"$ROOT/include" -I"$ROOT/linux/include" -I"$ROOT/linux/lib" \
	-o "$TREE/ferry/ferry-msg" "$ROOT/linux/tools/ferry-msg.c" "$ROOT/linux/lib/ferrymsg.c"
strip "$TREE/ferry/init" "$TREE/ferry/ferry-msg"
# The modules' sources, where `make M=` writes its objects: a copy, with
# ferry's headers beside it (FERRY_INCLUDE).
rm -rf "$TREE/ferry/modules" "$TREE/ferry/include"
mkdir -p "$TREE/ferry/include/uapi"
mkdir -p "$TREE/ferry/modules/compat"
# Sources only: a tree where someone built the modules in place has objects.
cp "$ROOT/linux/modules/Kbuild" "$TREE/ferry/modules/"
for c in "$ROOT"/linux/modules/*.c; do
	case $c in *.mod.c) ;; *) cp "$c" "$TREE/ferry/modules/" ;; esac
done
cp "$ROOT"/linux/modules/compat/*.h "$TREE/ferry/modules/compat/"
cp -r "$ROOT/include/ferry" "$TREE/ferry/include/ferry"
cp "$ROOT"/linux/include/uapi/*.h "$TREE/ferry/include/uapi/"
# The initramfs list; the modules' files are added once they are built.
initramfs_list() {
	cat <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /proc 0555 0 0
dir /sys 0555 0 0
dir /bin 0755 0 0
dir /lib 0755 0 0
dir /lib/modules 0755 0 0
dir /lib/modules/ferry 0755 0 0
file /init $TREE/ferry/init 0755 0 0
file /bin/ferry-msg $TREE/ferry/ferry-msg 0755 0 0
EOF
	for ko in "$@"; do
		echo "file /lib/modules/ferry/$(basename "$ko") $ko 0644 0 0"
	done
}
initramfs_list >"$TREE/ferry/initramfs.list"
{
	cat "$ROOT/linux/config"
	echo "CONFIG_INITRAMFS_SOURCE=\"$TREE/ferry/initramfs.list\""
} >"$TREE/ferry/config"

cd "$TREE"
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m -O . .config ferry/config >ferry/merge.log
make -s olddefconfig >/dev/null
# Every option linux/config asks for must have survived the dependencies.
bad=0
while read -r line; do
	case "$line" in
	CONFIG_*=*)
		grep -qxF "$line" .config || { echo "linux-guest: $line did not take: $(grep "^${line%%=*}=\|^# ${line%%=*} " .config || echo unset)" >&2; bad=1; }
		;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }
		sym=${sym%% *}
		grep -q "^$sym=" .config && { echo "linux-guest: $sym should be off: $(grep "^$sym=" .config)" >&2; bad=1; }
		;;
	esac
done <ferry/config
[ "$bad" -eq 0 ] || exit 1

echo "linux-guest: building vmlinux ($HASH) with make -j$JOBS"
# vmlinux and Module.symvers (`make modules` with no modules in the tree
# writes it), then ferry's modules against them, then vmlinux again with
# the modules in its initramfs (only the initramfs and the link are redone).
nice make -s -j"$JOBS" vmlinux modules
nice make -s -j"$JOBS" M="$TREE/ferry/modules" FERRY_INCLUDE="$TREE/ferry/include" modules
initramfs_list "$TREE"/ferry/modules/*.ko >"$TREE/ferry/initramfs.list"
nice make -s -j"$JOBS" vmlinux
rm -rf "$RESULT.tmp"
mkdir -p "$RESULT.tmp/modules"
cp vmlinux System.map "$RESULT.tmp/"
cp "$TREE"/ferry/modules/*.ko "$RESULT.tmp/modules/"
cp .config "$RESULT.tmp/config"
rm -rf "$RESULT"
mv "$RESULT.tmp" "$RESULT"
# Keep the four newest kernels (other branches may want theirs), drop older ones.
ls -1dt "$CACHE"/[0-9a-f]*[0-9a-f] 2>/dev/null | grep -E '/[0-9a-f]{16}$' | tail -n +5 | xargs -r rm -rf
install_result
echo "linux-guest: built $HASH in $(( $(date +%s) - start )) s"
