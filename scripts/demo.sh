#!/bin/sh
# make demo: eleven small VMs in one ferry for about 15 seconds, driven
# through the control socket as an operator would, then a short account of
# what they did together. Consoles, ferry's log, the events and the summary
# go under $BUILD/demo/; the terminal gets the story.
# FERRY (the binary) and DEMO_DIR let tests run it against the ASan build
# in a directory of their own.
set -eu
BUILD=${BUILD:-build}
D=${DEMO_DIR:-$BUILD/demo}
F=${FERRY:-$BUILD/ferry}
SOCK=$D/ferry.sock

rm -rf "$D"
mkdir -p "$D/logs"
t0=$(date +%s.%N)
now() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%5.1f s", b - a }'; }
say() { printf '%s\n' "$*"; }
at() { printf '  [%s] %s\n' "$(now)" "$*"; }
ctl() { "$F" ctl --socket "$SOCK" "$@"; }

say "ferry demo: 11 small VMs in one process (examples/demo.json), run for you."
say "  message queues: big-tx -> big-rx (1-2 MiB messages on 2 MiB pages), small-tx -> small-rx (64-512 bytes)"
say "  memory: grower, idle-1, idle-2 (512 MiB each) on a budget of 640 MiB: the scheduler moves memory"
vcpus=$(jq '[.vms[] | .vcpus // 1] | add' examples/demo.json)
vbudget=$(jq '.host.vcpu_budget' examples/demo.json)
say "  vCPUs: batch and interactive (2 vCPUs each) on a budget of $vbudget vCPUs for the VMs' $vcpus"
say "  network lan: web streams UDP to db, both on this host"
say "  (consoles: $D/logs/, ferry's log: $D/ferry.log, events: $D/events.jsonl)"
say ""

"$F" run examples/demo.json --control "$SOCK" --summary "$D/summary.json" --log-dir "$D/logs" \
	--log "$D/ferry.log" &
ferry=$!
trap 'kill $ferry 2>/dev/null || true; kill $events 2>/dev/null || true' EXIT INT TERM
i=0
until ctl list >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 250 ] || ! kill -0 $ferry 2>/dev/null; then
		say "ferry did not start; see $D/ferry.log:"
		tail -n 20 "$D/ferry.log" >&2
		exit 1
	fi
	sleep 0.02
done
ctl --json events --replay >"$D/events.jsonl" 2>/dev/null &
events=$!
at "11 VMs started"

# The moments worth telling, as they happen: the first cross-talk, VMs that
# end.
told_xtalk=0
told=""
narrate() {
	if [ $told_xtalk = 0 ] && grep -q '"event":"crosstalk-detected"' "$D/events.jsonl" 2>/dev/null; then
		told_xtalk=1
		at "$(jq -r 'select(.event == "crosstalk-detected") | "\(.vm) and \(.peer) talk on \(.network): cross-talk detected, a zero-copy channel bound"' "$D/events.jsonl" | head -n 1)"
	fi
	for vm in $(jq -r 'select(.event == "vm-stopped" or .event == "vm-crashed") | .vm' "$D/events.jsonl" 2>/dev/null); do
		case " $told " in *" $vm "*) continue ;; esac
		told="$told $vm"
		[ "$vm" = late ] && continue # its removal is told above
		at "$(jq -r --arg vm "$vm" 'select((.event == "vm-stopped" or .event == "vm-crashed") and .vm == $vm) |
			if .reason == "poweroff" then "\(.vm) is done (status \(.exit_code))" else "\(.vm) stopped: \(.reason)" end' \
			"$D/events.jsonl" | head -n 1)"
	done
}

# An operator's moves while the others run: a VM joins, its balloon gets
# a share of the budget, and it leaves again.
sleep 2
narrate
added=$(ctl add examples/demo-late.json 2>&1) || { say "  add failed: $added"; exit 1; }
at "$added (a 128 MiB VM joins the running ones; the memory scheduler takes it in)"
sleep 2
narrate
ctl remove late >/dev/null
at "late removed: its memory, devices and scheduler slot released"

while kill -0 $ferry 2>/dev/null; do
	narrate
	sleep 0.5
done
set +e
wait $ferry
status=$?
set -e
kill $events 2>/dev/null || true
wait $events 2>/dev/null || true
narrate
trap - EXIT INT TERM
at "all VMs done; ferry exited with status $status"
say ""

S=$D/summary.json
q() { jq -r "$@" "$S"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }

say "What happened:"
# Message queues: what moved by remapping, what was copied and why. The
# senders' own results (their consoles) give the data; ferry's counters
# also count msgbulk's start and end markers (small messages that travel
# as the data does).
results() { sed -n 's/^msgbulk: result //p' "$D/logs/$1.log" | jq -s "$2"; }
ps=$(q '.vms[] | select(.name == "big-tx") | .counters.msgq.page_size')
thr=$(q '.vms[] | select(.name == "big-tx") | .counters.msgq.copy_threshold')
big_pages=$(q '.vms[] | select(.name == "big-tx") | .counters.msgq.pages_remapped')
big_copied=$(q '.vms[] | select(.name == "big-tx") | .counters.msgq.bytes_copied')
big_n=$(results big-tx 'map(.count) | add // 0')
big_remapped=$(results big-tx 'map(.remapped) | add // 0')
big_bytes=$(results big-tx 'map(.size * .remapped) | add // 0')
small_n=$(results small-tx 'map(.count) | add // 0')
small_copied_n=$(results small-tx 'map(.copied) | add // 0')
small_copied=$(q '.vms[] | select(.name == "small-tx") | .counters.msgq.bytes_copied')
small_pages=$(q '.vms[] | select(.name == "small-tx") | .counters.msgq.pages_remapped')
verified=$(grep -h -c 'messages verified, 0 corrupt, 0 duplicated: ok' "$D/logs/big-rx.log" "$D/logs/small-rx.log" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
say "  Message queues (adaptive: remap what is worth remapping, copy the rest; threshold $(awk -v t="$thr" 'BEGIN { printf "%.0f KiB", t / 1024 }') here):"
say "    big-tx -> big-rx: $big_n messages of 1 and 2 MiB on $(mib "$ps") pages, $big_remapped of them remapped, $big_copied bytes copied"
say "      = $(mib "$big_bytes") handed over without a copy ($big_pages pages moved, msgbulk's 4 start/end markers included)"
say "    small-tx -> small-rx: $small_n messages of 64 and 512 bytes, $small_copied_n of them copied ($small_copied bytes)"
say "      (below the threshold a copy is cheaper than changing two mappings; $small_pages pages remapped: the markers)"
say "    the receivers checked every message: $verified of 4 runs verified intact"
if [ "$ps" = 4096 ]; then
	say "    (this host gave no 2 MiB pages, see $D/ferry.log: with 4 KiB pages remapping does not pay, so all were copied)"
fi

# Memory: the budget, the grower, what the idle VMs gave (while they ran).
budget=$(q '.memory.budget_mib')
peak=$(q '.memory.peak_resident_mib')
over=$(q '.memory.ticks_over_budget')
g_max=$(q '[.memory.series[] | select(.vms["idle-1"].target_mib > 0) | .vms.grower.target_mib] | max // 0')
i_min=$(q '[.memory.series[] | select(.vms["idle-1"].target_mib > 0 and .vms.grower.target_mib > 200) | .vms["idle-1"].target_mib] | min // 0')
i_peak=$(q '[.memory.series[].vms["idle-1"].resident_mib // 0] | max')
g_res=$(q '[.memory.series[].vms.grower.resident_mib // 0] | max')
say "  Memory (budget $budget MiB; the three memhog VMs alone have 1536 MiB):"
say "    idle-1 and idle-2 touched $(printf '%.0f' "$i_peak") MiB each, then went idle; grower grew to $(printf '%.0f' "$g_res") MiB resident"
say "    while all three ran, the scheduler lowered the idle VMs to $(printf '%.0f' "$i_min") MiB each and raised grower to"
say "    $(printf '%.0f' "$g_max") MiB, through their balloons (the guests gave their free pages back; ferry punched them out)"
say "    the host's peak for all VMs: $(printf '%.0f' "$peak") MiB: a guest touches memory faster than a balloon follows, so the"
say "    host held more than the budget for $(awk -v t="$over" 'BEGIN { printf "%.1f", t / 10 }') s in all, until the balloons caught up"

# vCPUs: who parked, for how long, and whether parked vCPUs ran.
b_parked=$(q '[.vms[] | select(.name == "batch") | .counters.cpu.vcpu_threads[].parked_ms] | add')
i_parked=$(q '[.vms[] | select(.name == "interactive") | .counters.cpu.vcpu_threads[].parked_ms] | add')
ran=$(q '[.vms[] | select(.name == "batch" or .name == "interactive") | .counters.cpu.vcpu_threads[].cpu_ms_while_parked] | add')
say "  vCPUs (budget $vbudget for $vcpus; interactive has twice batch's shares):"
say "    batch had a vCPU parked for $(printf '%.0f' "$b_parked") ms, interactive for $(printf '%.0f' "$i_parked") ms;"
say "    parked vCPUs used $(printf '%.1f' "$ran") ms of CPU in all (the guest really parks them)"

# Network: frames by path.
tx=$(q '.vms[] | select(.name == "web") | .counters.net.frames_tx')
zc=$(q '.vms[] | select(.name == "web") | .counters.net.frames_zero_copy')
one=$(q '.vms[] | select(.name == "web") | .counters.net.frames_one_copy')
xt=$(q '[.vms[] | select(.name == "web" or .name == "db") | .counters.net.crosstalk_detected] | add')
line=$(grep -h 'udpbulk: role=recv' "$D/logs/db.log" 2>/dev/null | head -n 1)
size=$(printf '%s' "$line" | sed -n 's/.* size=\([0-9]*\).*/\1/p')
say "  Network lan:"
say "    web sent $tx frames to db ($size-byte datagrams): $zc on the zero-copy path (shared memory, no copy by anyone),"
say "    $one copied once by ferry (before the channel was bound)"
say "    cross-talk detected $xt time(s): the switch saw two VMs of this host talk and bound a channel for them"
say "    db: $(printf '%s' "$line" | sed 's/.*\(received=[0-9]* lost=[0-9]* duplicated=[0-9]*\).*mbps=\([0-9.]*\).*/\1, \2 Mb\/s/')"

saved=$(awk -v b="$big_bytes" -v z="$zc" -v s="${size:-0}" 'BEGIN { printf "%.0f", (b + z * s) / 1048576 }')
say "  In all, $saved MiB of messages and datagrams went from VM to VM without the host copying them."
ok=$(q '[.vms[] | select(.removed != true) | select(.exit_reason == "poweroff" and .exit_code == 0)] | length')
n=$(q '[.vms[] | select(.removed != true)] | length')
say "  $ok of $n VMs powered off with status 0; late was added and removed while they ran."
say ""
say "Where to look next:"
ahead() { printf '  %-32s %s\n' "$1" "$2"; }
ahead "$S" "every counter of every VM (docs/CONFIG.md, docs/devices/)"
ahead "$D/logs/" "the guests' consoles; $D/ferry.log: ferry's own log"
ahead "build/ferry top --socket PATH" "a run, live (start one: build/ferry run examples/demo.json --control PATH)"
ahead "build/ferry ctl --help" "every command of the control socket (docs/API.md)"
ahead "make bench" "ferry beside QEMU, as charts: build/bench/index.html"
ahead "docs/ARCHITECTURE.md" "how an exit, a doorbell, a message and a frame travel"
[ "$status" = 0 ]
