#!/bin/sh
# make bench: runs every `ferry bench` target, keeps each one's JSON in
# $OUT/NAME.json (its stderr in NAME.log), draws one PNG chart per
# benchmark with gnuplot, ferry beside QEMU where both were measured, and
# writes $OUT/index.html with the charts, the figures and the machine they
# came from.
#   BENCH_TARGETS   which targets (default: boot msg balloon net)
#   BENCH_BOOT, BENCH_MSG, BENCH_BALLOON, BENCH_NET
#                   extra options for a target (e.g. BENCH_MSG="--repeat 1")
#   BENCH_DIR       where it all goes (default: $BUILD/bench)
#   FERRY           the binary (default: $BUILD/ferry)
#   BENCH_CHARTS_ONLY=1  draws what $OUT already holds, runs nothing
# A target that fails is shown as not measured, with the end of its log;
# the script then exits 1.
set -eu
BUILD=${BUILD:-build}
F=${FERRY:-$BUILD/ferry}
OUT=${BENCH_DIR:-$BUILD/bench}
TARGETS=${BENCH_TARGETS:-boot msg balloon net}

for tool in jq gnuplot; do
	command -v $tool >/dev/null 2>&1 || {
		echo "bench: $tool is missing (scripts/install-deps.sh bench)" >&2
		exit 1
	}
done
mkdir -p "$OUT/data"
# The machine's load says how far to trust the figures.
load_before=$(cut -d ' ' -f 1-3 /proc/loadavg)

# --- running ---------------------------------------------------------------

extra() {
	case $1 in
	boot) printf '%s' "${BENCH_BOOT:-}" ;;
	msg) printf '%s' "${BENCH_MSG:-}" ;;
	balloon) printf '%s' "${BENCH_BALLOON:-}" ;;
	net) printf '%s' "${BENCH_NET:-}" ;;
	*)
		echo "bench: unknown target '$1' (boot, msg, balloon, net)" >&2
		exit 2
		;;
	esac
}

failed=""
for t in $TARGETS; do
	args=$(extra "$t")
	if [ "${BENCH_CHARTS_ONLY:-0}" = 1 ]; then
		[ -f "$OUT/$t.json" ] || failed="$failed $t"
		[ -f "$OUT/$t.cmd" ] || printf '%s\n' "ferry bench $t${args:+ $args} --json" >"$OUT/$t.cmd"
		[ -f "$OUT/$t.log" ] || echo "no $t.json in $OUT" >"$OUT/$t.log"
		continue
	fi
	printf 'bench %s%s ... ' "$t" "${args:+ $args}"
	s=$(date +%s)
	rm -f "$OUT/$t.json"
	# shellcheck disable=SC2086 # the extra options are words
	if "$F" bench "$t" $args --json >"$OUT/$t.json.tmp" 2>"$OUT/$t.log" && jq -e . "$OUT/$t.json.tmp" >/dev/null 2>&1; then
		mv "$OUT/$t.json.tmp" "$OUT/$t.json"
		echo "$(($(date +%s) - s)) s"
	else
		rm -f "$OUT/$t.json.tmp"
		failed="$failed $t"
		echo "failed (see $OUT/$t.log)"
	fi
	printf '%s\n' "ferry bench $t${args:+ $args} --json" >"$OUT/$t.cmd"
done

# --- charts ----------------------------------------------------------------

# panel TITLE YLABEL SCALE SERIES ROW...: one panel of a chart: a
# clustered bar per row, one bar per series (SERIES and each ROW are
# |-separated: "ferry|QEMU", "label|key|key"); a key missing from the
# JSON (or null) leaves its bar out. SCALE: lin or log.
panels=""
panel() {
	n=$(($(printf '%s' "$panels" | wc -w) + 1))
	dat="$OUT/data/$t-$n.dat"
	printf '%s\n' "$1|$2|$3" >"$dat.meta"
	printf 'row|%s\n' "$4" | tr '|' '\t' >"$dat"
	shift 4
	for row in "$@"; do
		label=${row%%|*}
		line=$label
		rest=${row#*|}
		while [ -n "$rest" ]; do
			key=${rest%%|*}
			case $rest in *"|"*) rest=${rest#*|} ;; *) rest="" ;; esac
			v=$(jq -r --arg k "$key" '.[$k] // "-" | if type == "number" then . else "-" end' "$OUT/$t.json")
			line="$line	$v"
		done
		printf '%s\n' "$line" >>"$dat"
	done
	panels="$panels $dat"
}

# gnuplot's single-quoted strings double their quotes.
gpq() { printf '%s' "$1" | sed "s/'/''/g"; }

# draw: the panels so far, one above the other, as $OUT/$t.png.
draw() {
	# shellcheck disable=SC2086 # one word per panel's file
	set -- $panels
	gp="$OUT/data/$t.gp"
	{
		echo "set terminal pngcairo size 900,$((300 * $#)) font 'sans,10'"
		echo "set output '$OUT/$t.png'"
		printf '%s\n' 'set datafile separator "\t"'
		echo "set datafile missing '-'"
		echo "set style data histograms"
		echo "set style histogram clustered gap 1"
		echo "set style fill solid 0.85 border -1"
		echo "set boxwidth 0.9"
		echo "set grid ytics"
		echo "set key outside right top"
		echo "set multiplot layout $#,1 title '$(gpq "$title")'"
		for dat; do
			IFS='|' read -r ptitle ylabel scale <"$dat.meta"
			cols=$(head -n 1 "$dat" | awk -F '\t' '{ print NF }')
			echo "set title '$(gpq "$ptitle")'"
			echo "set ylabel '$(gpq "$ylabel")'"
			if [ "$scale" = log ]; then
				echo "set logscale y"
				echo "set yrange [*:*]"
			else
				echo "unset logscale y"
				echo "set yrange [0:*]"
			fi
			echo "plot for [i=2:$cols] '$dat' using i:xtic(1) title columnheader(i)"
		done
		echo "unset multiplot"
	} >"$gp"
	gnuplot "$gp"
	panels=""
}

for t in $TARGETS; do
	[ -f "$OUT/$t.json" ] || continue
	case $t in
	boot)
		title="ferry bench boot: $(jq -r '.runs' "$OUT/$t.json") VMs of $(jq -r '.memory_mib' "$OUT/$t.json") MiB, one after another"
		panel "Process start to first console byte (ms; QEMU $(jq -r '.qemu_machine // "not measured"' "$OUT/$t.json"))" ms lin "ferry|QEMU" \
			"median|ferry_spawn_ms_median|qemu_boot_ms_median" "p95|ferry_spawn_ms_p95|qemu_boot_ms_p95"
		panel "VM creation to first console byte (ms; ferry only: QEMU makes its VM inside its process)" ms lin "ferry" \
			"median|ferry_boot_ms_median" "p95|ferry_boot_ms_p95"
		panel "Host memory per VM beyond guest RAM (MiB)" MiB lin "ferry|QEMU" \
			"per VM|ferry_overhead_mib|qemu_overhead_mib"
		;;
	msg)
		title="ferry bench msg: message queues between two VMs"
		panel "msgq throughput by size and mode (MB/s; 2 MiB on 2 MiB pages)" MB/s log "copy|remap|adaptive" \
			"4 KiB|copy_4k_mbps|remap_4k_mbps|adaptive_4k_mbps" \
			"64 KiB|copy_64k_mbps|remap_64k_mbps|adaptive_64k_mbps" \
			"2 MiB|copy_2m_mbps|remap_2m_mbps|adaptive_2m_mbps"
		panel "Copy throughput: ferry msgq, ferry ivshmem link, QEMU ivshmem (MB/s)" MB/s log "ferry msgq|ferry ivshmem|QEMU ivshmem" \
			"4 KiB|copy_4k_mbps|ferry_ivshmem_copy_4k_mbps|qemu_copy_4k_mbps" \
			"64 KiB|copy_64k_mbps|ferry_ivshmem_copy_64k_mbps|qemu_copy_64k_mbps" \
			"2 MiB|copy_2m_mbps|ferry_ivshmem_copy_2m_mbps|qemu_copy_2m_mbps"
		panel "64 B messages per second" msgs/s log "ferry msgq|ferry ivshmem|QEMU ivshmem" \
			"copied|copy_64b_msgs|ferry_ivshmem_copy_64b_msgs|qemu_copy_64b_msgs" \
			"doorbell each|immediate_64b_msgs|ferry_ivshmem_64b_msgs|qemu_64b_msgs" \
			"deferred|deferred_64b_msgs"
		panel "One-way latency (us, half the round trip)" us log "ferry msgq|ferry ivshmem|QEMU ivshmem" \
			"64 B|latency_64b_immediate_us|ferry_ivshmem_latency_64b_us|qemu_latency_64b_us" \
			"4 KiB|latency_4k_immediate_us|ferry_ivshmem_latency_4k_us|qemu_latency_4k_us" \
			"64 KiB|latency_64k_immediate_us|ferry_ivshmem_latency_64k_us|qemu_latency_64k_us" \
			"2 MiB|latency_2m_immediate_us|ferry_ivshmem_latency_2m_us|qemu_latency_2m_us"
		;;
	balloon)
		title="ferry bench balloon: $(jq -r '.size_mib' "$OUT/$t.json") MiB in and out of a VM's balloon"
		panel "Balloon rate (GiB/s, target set to driver done)" GiB/s log "ferry|QEMU" \
			"inflate|inflate_gibps|qemu_inflate_gibps" "deflate|deflate_gibps|qemu_deflate_gibps"
		panel "Until host memory drops after inflating (ms)" ms lin "ferry|QEMU" \
			"release|host_release_ms|qemu_host_release_ms"
		;;
	net)
		title="ferry bench net: UDP and ping between two VMs on one host"
		panel "UDP throughput, 1472 B datagrams (Mb/s)" Mb/s lin "ferry|QEMU" \
			"zero copy|zc_1472_mbps" "one copy|onecopy_1472_mbps" "TAP bridge|tap_1472_mbps|qemu_tap_1472_mbps"
		panel "UDP, 64 B datagrams (packets/s)" pkt/s lin "ferry|QEMU" \
			"zero copy|zc_64_pps" "one copy|onecopy_64_pps" "TAP bridge|tap_64_pps|qemu_tap_64_pps"
		panel "Ping round trip, median (us; guests poll 50 us, then halt)" us log "ferry|QEMU" \
			"zero copy|zc_rtt_us" "one copy|onecopy_rtt_us" "TAP bridge|tap_rtt_us|qemu_tap_rtt_us"
		;;
	esac
	draw
done

# --- the page --------------------------------------------------------------

html() { sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g'; }
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
qemu=$(qemu-system-x86_64 --version 2>/dev/null | head -n 1 || true)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	echo "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>ferry benchmarks</title>"
	echo "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}pre{background:#f4f4f4;padding:8px}</style></head><body>"
	echo "<h1>ferry benchmarks</h1>"
	echo "<p>Measured $(date -u '+%Y-%m-%d %H:%M UTC') from commit $commit on this machine:</p><ul>"
	echo "<li>CPU: $(printf '%s' "$cpu" | html), $(nproc) online CPUs ($(nproc --all) in all), shared with whatever else ran</li>"
	echo "<li>memory: $mem; kernel $(uname -r | html)</li>"
	echo "<li>KVM: /dev/kvm $([ -w /dev/kvm ] && echo present || echo missing)$(grep -qw hypervisor /proc/cpuinfo && echo ', inside a virtual machine')</li>"
	echo "<li>QEMU: $(printf '%s' "${qemu:-not installed}" | html)</li>"
	echo "<li>load average (1, 5, 15 min) before: $load_before; after: $(cut -d ' ' -f 1-3 /proc/loadavg)</li></ul>"
	echo "<p>Each target's own <code>--help</code> says what it measures and how; the figures are single runs on a noisy machine, not averages over days.</p>"
	for t in $TARGETS; do
		echo "<h2>$t</h2><p><code>$(html <"$OUT/$t.cmd")</code></p>"
		if [ -f "$OUT/$t.json" ]; then
			echo "<img src=\"$t.png\" alt=\"$t chart\">"
			echo "<table><tr><th>figure</th><th>value</th></tr>"
			jq -r 'to_entries[] | "<tr><td>\(.key)</td><td>\(.value)</td></tr>"' "$OUT/$t.json"
			echo "</table><p><a href=\"$t.json\">$t.json</a></p>"
		else
			echo "<p>not measured: the run failed; the end of its log:</p><pre>$(tail -n 15 "$OUT/$t.log" | html)</pre>"
		fi
	done
	echo "</body></html>"
} >"$OUT/index.html"
echo "charts: $OUT/index.html"
if [ -n "$failed" ]; then
	echo "bench: failed:$failed" >&2
	exit 1
fi
