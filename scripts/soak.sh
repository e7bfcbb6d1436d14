#!/bin/bash
# make soak: many small VMs exchanging numbered messages, and two pairs
# exchanging UDP datagrams over a network (zero copy), for a bounded time
# while one VM is removed and added again every few seconds through the
# control socket and another crashes and is restarted by ferry
# ("restart": "on-failure"); then checks, from /proc of the ferry process,
# that file descriptors, threads and mappings are back to where they were
# with the same VMs running, and, from the guests, that no message or
# datagram between VMs that stayed up was lost, duplicated or corrupt.
# churn and phoenix have a NIC on the same network: their switch ports (and
# any zero-copy channel to them) go and come back while the pairs' frames
# flow.
#
#   SOAK_SECONDS=N  how long the VMs exchange messages (default 300)
#   SOAK_VMS=N      VMs (default 30, at least 8): N-6 exchange messages and
#                   stay up, n0..n3 are two UDP echo pairs, "churn" is
#                   removed and added, "phoenix" crashes and is restarted
#   SOAK_CHURN_S=S  seconds between two removals of churn (default 3)
#   FERRY_BIN, FERRY_GUEST  the binaries (build/ferry, build/guest/ferry-guest.elf)
#
# Why remove + add for the churn: it is what an operator does, and it is
# the teardown and build a restart uses, so both paths are exercised; a
# removed VM's id is never reused (the message pool tags pages with it), so
# a run can add at most ~220 VMs (msgq ids end at 254): churn stops there,
# and says so. phoenix powers off with status 1 every PHOENIX_MS ms of its
# runs and ferry restarts it (same id: its peers see dest_down, then their
# messages again).
#
# Prints the figures and exits 1 on any leak or loss, 2 if it could not run.
set -u
cd "$(dirname "$0")/.."

SECONDS_RUN=${SOAK_SECONDS:-300}
NVMS=${SOAK_VMS:-30}
CHURN_S=${SOAK_CHURN_S:-3}
FERRY=$(realpath "${FERRY_BIN:-build/ferry}")
GUEST=$(realpath "${FERRY_GUEST:-build/guest/ferry-guest.elf}")
PHOENIX_MS=${SOAK_PHOENIX_MS:-10000}
MEM_MIB=24
INTERVAL_US=20000   # a message every 20 ms per VM: 30 VMs stay well inside 2 shared cores

die() { echo "soak: $*" >&2; exit 2; }
[ -x "$FERRY" ] || die "no ferry binary at $FERRY (make ferry)"
[ -r "$GUEST" ] || die "no guest at $GUEST (make guest)"
command -v jq >/dev/null || die "jq is needed (scripts/install-deps.sh)"
[ "$NVMS" -ge 8 ] || die "SOAK_VMS must be at least 8"
[ -e /dev/kvm ] || die "/dev/kvm is missing"

dir=$(mktemp -d /tmp/ferry-soak-XXXXXX)
sock=$dir/ctl.sock
nstable=$((NVMS - 6))
ms=$((SECONDS_RUN * 1000))

# --- the config -----------------------------------------------------------------
vm() { # name cmdline peers-json [extra-json]
	printf '{"name": "%s", "memory_mib": %d, "kernel": "%s", "cmdline": "%s", "memory": {"min_mib": 16},
	  "devices": [{"type": "msgq", "peers": %s}, {"type": "virtio-balloon"}]%s}' \
		"$1" "$MEM_MIB" "$GUEST" "$2" "$3" "${4:-}"
}
netvm() { # name cmdline: a VM of the UDP pairs
	printf '{"name": "%s", "memory_mib": %d, "kernel": "%s", "cmdline": "%s", "memory": {"min_mib": 16},
	  "devices": [{"type": "virtio-balloon"}], "nics": [{"network": "lan"}]}' "$1" "$MEM_MIB" "$GUEST" "$2"
}
NIC=', "nics": [{"network": "lan"}]'

peers_of() { # i: ring neighbours, phoenix, churn (lost for good once churn is first removed)
	local i=$1 n=$nstable
	printf '["s%d", "s%d", "phoenix", "churn"]' $(((i + 1) % n)) $(((i + n - 1) % n))
}
first_stable() { # up to 8 stable VMs as a JSON list
	local k out="" m=$((nstable < 8 ? nstable : 8))
	for ((k = 0; k < m; k++)); do out+="${out:+, }\"s$k\""; done
	echo "[$out]"
}
{
	echo '{"host": {"memory_budget_mib": '$((NVMS * 20))'}, "networks": {"lan": {}}, "vms": ['
	for ((i = 0; i < nstable; i++)); do
		vm "s$i" "app=msgsoak ms=$ms interval_us=$INTERVAL_US" "$(peers_of $i)"
		echo ","
	done
	# Two echo pairs: a datagram of 512 bytes at a time, each compared when
	# it comes back; the servers outlive their clients.
	for p in 0 1; do
		netvm "n$((2 * p))" "app=udpecho ip=10.0.0.$((10 + 2 * p))/24 ms=$((ms + 10000))"
		echo ","
		netvm "n$((2 * p + 1))" "app=udpecho ip=10.0.0.$((11 + 2 * p))/24 peer=10.0.0.$((10 + 2 * p)) ms=$ms size=512 timeout_ms=10000"
		echo ","
	done
	vm phoenix "app=msgsoak ms=$((ms * 4)) interval_us=$INTERVAL_US fail=exit fail_ms=$PHOENIX_MS fail_runs=1000000" \
		"$(first_stable)" ', "restart": "on-failure", "max_restarts": 1000'"$NIC"
	echo ","
	vm churn "app=msgsoak ms=$((ms * 4)) interval_us=$INTERVAL_US" "$(first_stable)" "$NIC"
	echo ']}'
} > "$dir/soak.json"
{ echo '{"vms": ['; vm churn "app=msgsoak ms=$((ms * 4)) interval_us=$INTERVAL_US" "$(first_stable)" "$NIC"; echo ']}'; } \
	> "$dir/churn.json"
jq -e . "$dir/soak.json" >/dev/null || die "made a bad config ($dir/soak.json)"

ctl() { "$FERRY" ctl --socket "$sock" "$@"; }

# --- /proc figures ----------------------------------------------------------------
nfds() { ls "/proc/$pid/fd" 2>/dev/null | wc -l; }
# ferry's own threads; the kernel's kvm-nx-lpage-recovery workers (one per
# KVM VM, made and reaped by KVM on its own schedule) are counted apart.
ntasks() { cat /proc/$pid/task/*/comm 2>/dev/null | grep -vc '^kvm-'; }
nkvmtasks() { cat /proc/$pid/task/*/comm 2>/dev/null | grep -c '^kvm-'; }
# Mappings other than message-pool pages (those are mapped slot by slot as
# traffic reaches new slots, up to a bound: counted apart).
nmaps() { grep -vc ferry-page-pool "/proc/$pid/maps" 2>/dev/null; }
npoolmaps() { grep -c ferry-page-pool "/proc/$pid/maps" 2>/dev/null; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }
# ferry's own memory (malloc, stacks: private and anonymous), apart from the
# guests' RAM and the message pool (memfds: shared memory).
anon_kib() { awk '/^RssAnon/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }
shmem_kib() { awk '/^RssShmem/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }
# Every VM of the run running (none stopped, none being restarted)?
all_running() {
	local j
	j=$(ctl --json raw '{"cmd": "list"}' 2>/dev/null) || return 1
	[ "$(jq '[.vms[] | select(.state == "running")] | length' <<<"$j")" -eq "$NVMS" ]
}
# fds, threads, maps: the smallest of 5 samples 200 ms apart with every VM
# running before and after the sample (a control client's socket, an event being pushed, a large
# allocation mapped for a moment are transient).
sample() {
	local k best_f=999999 best_t=999999 best_m=999999 f t m
	for ((k = 0; k < 5; k++)); do
		all_running || { sleep 0.2; continue; }
		f=$(nfds) t=$(ntasks) m=$(nmaps)
		all_running || { sleep 0.2; continue; } # phoenix failed meanwhile: its vCPU thread may be gone
		((f < best_f)) && best_f=$f
		((t < best_t)) && best_t=$t
		((m < best_m)) && best_m=$m
		sleep 0.2
	done
	echo "$best_f $best_t $best_m $(npoolmaps) $(nkvmtasks)"
}

# --- the run ------------------------------------------------------------------------
echo "soak: $NVMS VMs of $MEM_MIB MiB (budget $((NVMS * 20)) MiB) for $SECONDS_RUN s, churn every $CHURN_S s; in $dir"
"$FERRY" run "$dir/soak.json" --control "$sock" --summary "$dir/summary.json" --log-dir "$dir/logs" \
	--timeout $((SECONDS_RUN + 180)) > "$dir/ferry.out" 2>&1 &
pid=$!
t0=$(date +%s%N)
elapsed_ms() { echo $((($(date +%s%N) - t0) / 1000000)); }
elapsed() { local m; m=$(elapsed_ms); printf "%d.%d" $((m / 1000)) $((m % 1000 / 100)); }
for ((k = 0; k < 600; k++)); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$dir/ferry.out"; die "ferry did not start"; }
for ((k = 0; k < 300; k++)); do all_running && break; sleep 0.1; done
sleep 3
read -r fd0 task0 map0 pool0 kvm0 <<<"$(sample)"
rss0=$(rss_kib) anon0=$(anon_kib) shm0=$(shmem_kib)
snapshot() { # for looking into a failure: what the process holds
	cp "/proc/$pid/maps" "$dir/maps.$1" 2>/dev/null
	ls -l "/proc/$pid/fd" > "$dir/fds.$1" 2>/dev/null
	cat /proc/$pid/task/*/comm > "$dir/threads.$1" 2>/dev/null
}
snapshot before
echo "soak: baseline after $(elapsed) s: fds $fd0, threads $task0 (+$kvm0 KVM workers), mappings $map0 (+$pool0 message pages), RSS $((rss0 / 1024)) MiB (ferry's own $((anon0 / 1024)) MiB)"

churns=0 churn_failed=0 ids_left=$((254 - NVMS))
stop_at_ms=$(((SECONDS_RUN > 60 ? SECONDS_RUN - 20 : SECONDS_RUN - 10) * 1000))
while (($(elapsed_ms) < stop_at_ms)); do
	sleep "$CHURN_S"
	if ((ids_left <= 2)); then
		echo "soak: msgq ids used up ($churns re-adds): no more churn"
		break
	fi
	if ctl remove churn >/dev/null && ctl add "$dir/churn.json" >/dev/null; then
		churns=$((churns + 1))
		ids_left=$((ids_left - 1))
	else
		churn_failed=$((churn_failed + 1))
		echo "soak: churn $((churns + 1)) failed" >&2
		ctl add "$dir/churn.json" >/dev/null 2>&1
	fi
	rss=$(rss_kib)
	((rss > ${rss_peak:-0})) && rss_peak=$rss
done
# The same VMs as at the baseline, every one running (phoenix may be
# between two runs: wait for it).
for ((k = 0; k < 150; k++)); do all_running && break; sleep 0.1; done
read -r fd1 task1 map1 pool1 kvm1 <<<"$(sample)"
rss1=$(rss_kib) anon1=$(anon_kib) shm1=$(shmem_kib)
snapshot after
restarts=$(ctl --json status 2>/dev/null | jq '.host.restarts')
echo "soak: after $(elapsed) s: fds $fd1, threads $task1 (+$kvm1 KVM workers), mappings $map1 (+$pool1 message pages), RSS $((rss1 / 1024)) MiB (ferry's own $((anon1 / 1024)) MiB)"

# The stable VMs finish (results, then power-off); churn and phoenix would
# run on: take them out so the run ends.
for ((k = 0; k < 1200; k++)); do
	left=$(ctl --json raw '{"cmd": "list"}' 2>/dev/null | jq '[.vms[] | select(.name | test("^[sn][0-9]")) | select(.state == "running")] | length')
	[ "${left:-0}" -eq 0 ] && break
	sleep 0.5
done
hwm=$(hwm_kib)
ctl remove churn >/dev/null 2>&1
ctl remove phoenix >/dev/null 2>&1
wait "$pid"
status=$?

# --- the checks ---------------------------------------------------------------------
fail=0
bad() { echo "soak: FAIL: $*"; fail=1; }
[ -r "$dir/summary.json" ] || bad "no summary (ferry exited with $status)"
stable_ok=$(jq '[.vms[] | select(.name | startswith("s")) | select(.exit_code == 0)] | length' "$dir/summary.json" 2>/dev/null)
[ "${stable_ok:-0}" -eq "$nstable" ] || bad "$((nstable - ${stable_ok:-0})) of $nstable stable VMs did not power off with status 0"
delivered=0 received=0 lost=0 dup=0 badmsg=0 mismatch=0 down=0
for ((i = 0; i < nstable; i++)); do
	line=$(grep -a 'msgsoak: result' "$dir/logs/s$i.log" | tail -1 | sed 's/.*msgsoak: result //')
	[ -n "$line" ] || { bad "s$i printed no result"; continue; }
	delivered=$((delivered + $(jq .delivered <<<"$line")))
	received=$((received + $(jq .received <<<"$line")))
	lost=$((lost + $(jq .lost <<<"$line")))
	dup=$((dup + $(jq .dup <<<"$line")))
	badmsg=$((badmsg + $(jq .bad <<<"$line")))
	mismatch=$((mismatch + $(jq .end_mismatch <<<"$line")))
	down=$((down + $(jq .dest_down <<<"$line")))
done
# The UDP pairs: every datagram echoed intact (the client exits 0 only then).
sent=0 echoed=0 udp_lost=0 udp_corrupt=0 frames_zc=0
for c in n1 n3; do
	line=$(grep -a 'udpecho: peer=' "$dir/logs/$c.log" | tail -1)
	[ -n "$line" ] || { bad "$c printed no result"; continue; }
	v() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$line"; }
	sent=$((sent + $(v sent))) echoed=$((echoed + $(v received)))
	udp_lost=$((udp_lost + $(v lost))) udp_corrupt=$((udp_corrupt + $(v corrupt)))
done
net_ok=$(jq '[.vms[] | select(.name | test("^n[0-9]")) | select(.exit_code == 0)] | length' "$dir/summary.json" 2>/dev/null)
[ "${net_ok:-0}" -eq 4 ] || bad "$((4 - ${net_ok:-0})) of the 4 VMs of the UDP pairs did not power off with status 0"
((udp_lost == 0 && udp_corrupt == 0 && sent > 0)) || bad "datagrams: sent $sent, lost $udp_lost, corrupt $udp_corrupt"
frames_zc=$(jq '[.vms[] | select(.name | test("^n[0-9]")) | .counters.net.frames_zero_copy] | add' "$dir/summary.json" 2>/dev/null)
# Between two stable VMs every delivered message must have arrived: the
# END each sends carries its count, checked by the receiver (end_mismatch).
((lost == 0 && dup == 0 && badmsg == 0 && mismatch == 0)) ||
	bad "messages: lost $lost, duplicated $dup, corrupt $badmsg, END counts that disagree $mismatch"
((fd1 == fd0)) || bad "file descriptors: $fd0 before, $fd1 after"
((task1 == task0)) || bad "threads: $task0 before, $task1 after"
# Mappings: the same VMs map the same regions (a large allocation can be
# mapped for a moment: 4 of slack). Message-pool pages are mapped slot by
# slot as traffic reaches slots, at most 1024 + 1024 per VM (4 KiB pages).
((map1 <= map0 + 4)) || bad "mappings: $map0 before, $map1 after"
((pool1 <= NVMS * 2048)) || bad "message-pool mappings: $pool1, more than $NVMS VMs' 2048 slots"
((kvm1 <= NVMS)) || bad "KVM workers: $kvm1 for $NVMS VMs"
# Memory: ferry's own (malloc, stacks) back near where it was; the guests'
# RAM and the message pool (shared memory) grow as guests touch pages and
# messages reach new slots, up to what the VMs have: their RAM and 2048
# pool pages of 4 KiB each.
((anon1 <= anon0 + 16384)) || bad "ferry's own memory: $((anon0 / 1024)) MiB before, $((anon1 / 1024)) MiB after"
shm_bound=$((NVMS * (MEM_MIB + 8) * 1024 + 65536))
((shm1 <= shm_bound)) || bad "shared memory: $((shm1 / 1024)) MiB, more than the VMs' $((shm_bound / 1024)) MiB"
((churns > 0)) || bad "no VM was removed and added"
[ "${restarts:-0}" != null ] && ((${restarts:-0} > 0)) || bad "phoenix was never restarted"

cat <<EOF
soak: figures
  VMs                        $NVMS ($nstable exchanging messages, 4 in two UDP echo pairs, churn removed+added, phoenix restarted on failure), $MEM_MIB MiB each, budget $((NVMS * 20)) MiB
  run                        $SECONDS_RUN s of messages
  remove + add of churn      $churns (failed: $churn_failed)
  restarts of phoenix        ${restarts:-?}
  messages sent by stable VMs delivered $delivered; received by them $received (also from churn, phoenix), lost $lost, duplicated $dup, corrupt $badmsg
  sends refused dest_down/no_dest (peer away) $down
  datagrams of the UDP pairs sent $sent, echoed $echoed, lost $udp_lost, corrupt $udp_corrupt; frames zero copy ${frames_zc:-?}
  file descriptors           $fd0 -> $fd1
  threads                    $task0 -> $task1 (KVM's own workers $kvm0 -> $kvm1)
  mappings                   $map0 -> $map1 (message-pool pages $pool0 -> $pool1, bound $((NVMS * 2048)))
  RSS                        $((rss0 / 1024)) MiB -> $((rss1 / 1024)) MiB, peak $(( ${hwm:-0} / 1024)) MiB
    ferry's own (RssAnon)    $((anon0 / 1024)) MiB -> $((anon1 / 1024)) MiB
    guests + pool (RssShmem) $((shm0 / 1024)) MiB -> $((shm1 / 1024)) MiB (bound $((shm_bound / 1024)) MiB)
EOF
if ((fail)); then
	echo "soak: FAILED (logs in $dir)"
	exit 1
fi
echo "soak: passed"
rm -rf "$dir"
exit 0
