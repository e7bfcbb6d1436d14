/* udpecho: a UDP echo server, and a client that checks it.
 *
 *   server: app=udpecho ip=ADDR/PREFIX [port=P] [count=N] [ms=M] [idle_ms=I]
 *   client: app=udpecho ip=ADDR/PREFIX peer=IP [port=P] [count=N | ms=M] [size=BYTES]
 *           [timeout_ms=T] [wait_ms=W]
 *
 * The server sends every datagram on port (default 7) back to where it came
 * from, until it has echoed count datagrams, ms milliseconds have passed,
 * or (idle_ms) no datagram or ping has come for it for that long since
 * the first (other traffic, say a host's IPv6 chatter on a TAP, does not
 * count); without any of these it runs forever. It answers pings meanwhile,
 * so it also serves as the peer of app=ping. Ends with
 *   udpecho: echoed=N bytes=B
 *
 * The client sends count (10) datagrams of size (64) bytes one at a time,
 * or as many as fit in ms milliseconds (a soak), each a pattern seeded by
 * its number, waits up to timeout_ms (1000) for each echo and compares it
 * byte for byte (percentiles over the first 65536 echoes). Ends with
 *   udpecho: peer=IP sent=N received=N lost=0 corrupt=0 p50_us=.. p99_us=..
 * and exits 0 only if every echo came back intact. */
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

#define US(ns) (unsigned long)((ns) / 1000), (unsigned long)((ns) % 1000)

static int server(struct udp_sock *s)
{
	uint64_t count = cmdline_get_u64("count", 0);
	uint64_t ms = cmdline_get_u64("ms", 0), idle_ms = cmdline_get_u64("idle_ms", 0);
	uint64_t start = time_ns(), last_rx = 0, seen = 0;
	uint64_t echoed = 0, bytes = 0, failed = 0;
	struct udp_dgram d;

	kprintf("udpecho: serving port %u\n", udp_port(s));
	while (!count || echoed < count) {
		uint64_t now = time_ns(), wait = TIMEOUT_NEVER;

		if (net_stats.udp_received + net_stats.icmp_echo_replies_sent != seen) {
			seen = net_stats.udp_received + net_stats.icmp_echo_replies_sent;
			last_rx = now;
		}
		if (ms) {
			if (now - start >= ms * 1000000)
				break;
			wait = ms * 1000000 - (now - start);
		}
		if (idle_ms && last_rx) {
			if (now - last_rx >= idle_ms * 1000000)
				break;
			wait = MIN(wait, idle_ms * 1000000 - (now - last_rx));
		}
		/* Pings are answered inside udp_recv without ending its wait:
		 * look at the counts again every 100 ms. */
		if (idle_ms)
			wait = MIN(wait, 100000000ull);
		if (!udp_recv(s, &d, wait))
			continue;
		if (udp_sendto(s, d.src, d.sport, d.data, d.len, 0))
			failed++;
		echoed++;
		bytes += d.len;
	}
	kprintf("udpecho: echoed=%lu bytes=%lu send_failures=%lu\n", echoed, bytes, failed);
	net_print_stats("udpecho");
	return failed ? FERRY_EXIT_FAIL : FERRY_EXIT_OK;
}

static int client(struct udp_sock *s, uint32_t peer, uint16_t port)
{
	uint64_t run_ns = cmdline_get_u64("ms", 0) * 1000000;
	unsigned count = (unsigned)cmdline_get_u64("count", run_ns ? 0xffffffffu : 10);
	unsigned samples = MIN(count, 65536u);
	uint32_t size = (uint32_t)cmdline_get_u64("size", 64);
	uint64_t timeout_ns = cmdline_get_u64("timeout_ms", 1000) * 1000000;
	uint64_t wait_ns = cmdline_get_u64("wait_ms", 30000) * 1000000;
	unsigned received = 0, corrupt = 0;
	struct netif *ifc = net_route(peer);
	uint8_t mac[ETH_ALEN], *buf;
	uint64_t *rtt;
	char a[16];

	if (!ifc || size < 4 || size > udp_max_payload(peer) || !count) {
		kprintf("udpecho: no route to the peer, or size not in 4..%u, or count 0\n", udp_max_payload(peer));
		return FERRY_EXIT_BAD_ARGS;
	}
	buf = kmalloc(size);
	rtt = kmalloc(samples * sizeof(*rtt));
	if (!buf || !rtt)
		return FERRY_EXIT_FAIL;
	if (arp_resolve(ifc, peer, mac, wait_ns)) {
		kprintf("udpecho: %s did not answer ARP\n", ip_str(peer, a));
		return FERRY_EXIT_FAIL;
	}
	uint64_t start = time_ns();
	unsigned sent = 0;
	for (unsigned i = 0; i < count && (!run_ns || time_ns() - start < run_ns); i++) {
		struct udp_dgram d;
		uint64_t t0 = time_ns(), now;

		sent++;
		bool answered = false;

		pattern_fill(buf, size, i);
		memcpy(buf, &i, 4);
		if (udp_sendto(s, peer, port, buf, size, 0)) {
			kprintf("udpecho: cannot send datagram %u\n", i);
			continue;
		}
		while (!answered && (now = time_ns()) - t0 < timeout_ns) {
			uint32_t tag;
			if (!udp_recv(s, &d, timeout_ns - (now - t0)))
				break;
			if (d.src != peer || d.sport != port || d.len < 4)
				continue;
			memcpy(&tag, d.data, 4);
			if (tag != i)
				continue;  /* a late echo of an earlier one */
			answered = true;
			if (d.len != size || memcmp(d.data, buf, size)) {
				corrupt++;
				kprintf("udpecho: echo %u came back changed (%u bytes)\n", i, d.len);
			} else {
				if (received < samples)
					rtt[received] = time_ns() - t0;
				received++;
			}
		}
		if (!answered)
			kprintf("udpecho: no echo of datagram %u\n", i);
	}
	unsigned n = MIN(received, samples);
	sort_u64(rtt, n);
	kprintf("udpecho: peer=%s size=%u sent=%u received=%u lost=%u corrupt=%u p50_us=%lu.%03lu p99_us=%lu.%03lu\n",
		ip_str(peer, a), size, sent, received, sent - received - corrupt, corrupt,
		US(percentile_u64(rtt, n, 50)), US(percentile_u64(rtt, n, 99)));
	net_print_stats("udpecho");
	kfree(rtt);
	kfree(buf);
	return received == sent ? FERRY_EXIT_OK : FERRY_EXIT_FAIL;
}

static int udpecho_main(void)
{
	uint16_t port = (uint16_t)cmdline_get_u64("port", 7);
	const char *peer_s = cmdline_get("peer");
	uint32_t peer = 0;
	struct udp_sock *s;
	int ret;

	if (peer_s && !ip_parse(peer_s, &peer)) {
		kprintf("udpecho: peer=%s is not an IPv4 address\n", peer_s);
		return FERRY_EXIT_BAD_ARGS;
	}
	if (!port) {
		kprintf("udpecho: port must not be 0\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (net_init())
		return FERRY_EXIT_FAIL;
	s = udp_open(peer_s ? 0 : port, 0);
	if (!s)
		return FERRY_EXIT_FAIL;
	ret = peer_s ? client(s, peer, port) : server(s);
	udp_close(s);
	return ret;
}

APP("udpecho", "UDP echo server on port=P (count=, ms=, idle_ms=); with peer=IP a checking client", udpecho_main);
