/* ping: ICMP echo round trips to another host.
 *
 *   app=ping ip=ADDR/PREFIX peer=IP [count=N] [interval_ms=M] [size=BYTES]
 *            [timeout_ms=T] [wait_ms=W]
 *
 * Waits up to wait_ms (default 30000) for the peer to answer ARP (it may
 * still be booting), then sends count (10) echo requests of size (56)
 * payload bytes, interval_ms (100) apart, each answered within timeout_ms
 * (1000) or counted lost. Every reply's payload is compared with what was
 * sent. Prints one line per echo, then
 *   ping: peer=IP sent=N received=N lost=0 corrupt=0 min_us=.. p50_us=.. p99_us=.. max_us=..
 * and exits 0 only if every echo was answered intact. The stack answers
 * the peer's pings meanwhile. */
#include <ferry/debug_exit.h>
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "net.h"
#include "pattern.h"
#include "sort.h"
#include "timer.h"
#include "x86.h"

/* "12.345" microseconds from nanoseconds, for the result lines. */
#define US(ns) (unsigned long)((ns) / 1000), (unsigned long)((ns) % 1000)

static int ping_main(void)
{
	const char *peer_s = cmdline_get_str("peer", "");
	unsigned count = (unsigned)cmdline_get_u64("count", 10);
	uint64_t interval_ns = cmdline_get_u64("interval_ms", 100) * 1000000;
	uint64_t timeout_ns = cmdline_get_u64("timeout_ms", 1000) * 1000000;
	uint64_t wait_ns = cmdline_get_u64("wait_ms", 30000) * 1000000;
	uint32_t size = (uint32_t)cmdline_get_u64("size", 56), peer, received = 0, corrupt = 0;
	uint16_t id = (uint16_t)(rdtsc() >> 4);
	uint8_t mac[ETH_ALEN], *payload;
	uint64_t *rtt;
	struct netif *ifc;
	char a[16];

	if (!ip_parse(peer_s, &peer) || !count) {
		kprintf("ping: need peer=IP and count >= 1\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (net_init())
		return FERRY_EXIT_FAIL;
	ifc = net_route(peer);
	if (!ifc || size > udp_max_payload(peer)) {  /* ICMP's header is as long as UDP's */
		kprintf("ping: no route to %s, or size %u over the MTU\n", peer_s, size);
		return FERRY_EXIT_FAIL;
	}
	payload = kmalloc(size ? size : 1);
	rtt = kmalloc(count * sizeof(*rtt));
	if (!payload || !rtt)
		return FERRY_EXIT_FAIL;
	if (arp_resolve(ifc, peer, mac, wait_ns)) {
		kprintf("ping: %s did not answer ARP within %lu ms\n", peer_s, wait_ns / 1000000);
		return FERRY_EXIT_FAIL;
	}
	icmp_echo_listen(id);

	uint64_t next = time_ns();
	for (unsigned seq = 0; seq < count; seq++) {
		struct icmp_echo r;
		bool answered = false;
		uint64_t t0;

		for (uint64_t now; (now = time_ns()) < next;) {  /* answer the peer while we pace */
			if (!net_poll())
				net_wait(next - now);
		}
		next += interval_ns;
		pattern_fill(payload, size, (uint64_t)id << 16 | seq);
		t0 = time_ns();
		if (icmp_echo_request(peer, id, (uint16_t)seq, payload, size)) {
			kprintf("ping: cannot send echo %u\n", seq);
			continue;
		}
		for (uint64_t now; !answered && (now = time_ns()) - t0 < timeout_ns;) {
			if (!icmp_echo_reply(&r)) {
				if (!net_poll())
					net_wait(timeout_ns - (now - t0));
				continue;
			}
			if (r.seq != (uint16_t)seq || r.src != peer)
				continue;  /* late or stray */
			answered = true;
			if (r.len != size || memcmp(r.data, payload, MIN(size, (uint32_t)NET_ECHO_DATA))) {
				corrupt++;
				kprintf("ping: echo %u came back changed (%u bytes)\n", seq, r.len);
				continue;
			}
			rtt[received++] = r.t_ns - t0;
			kprintf("ping: %u bytes from %s: seq=%u rtt_us=%lu.%03lu\n", r.len, ip_str(peer, a), seq,
				US(r.t_ns - t0));
		}
		if (!answered)
			kprintf("ping: no reply to echo %u\n", seq);
	}
	sort_u64(rtt, received);
	kprintf("ping: peer=%s size=%u sent=%u received=%u lost=%u corrupt=%u min_us=%lu.%03lu p50_us=%lu.%03lu "
		"p99_us=%lu.%03lu max_us=%lu.%03lu\n",
		ip_str(peer, a), size, count, received, count - received - corrupt, corrupt, US(received ? rtt[0] : 0),
		US(percentile_u64(rtt, received, 50)), US(percentile_u64(rtt, received, 99)),
		US(received ? rtt[received - 1] : 0));
	net_print_stats("ping");
	kfree(rtt);
	kfree(payload);
	return received == count ? FERRY_EXIT_OK : FERRY_EXIT_FAIL;
}

APP("ping", "ICMP echo round trips to peer=IP (count=, interval_ms=, size=)", ping_main);
