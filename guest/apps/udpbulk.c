/* udpbulk: UDP throughput between two hosts, every datagram verified.
 *
 *   app=udpbulk role=send ip=ADDR/PREFIX peer=IP [port=P] [size=BYTES] [count=N]
 *               [window=W] [window_bytes=B] [max_loss=L] [wait_ms=T]
 *   app=udpbulk role=recv ip=ADDR/PREFIX [port=P] [wait_ms=T] [stall_at=N stall_ms=T]
 *
 * Each datagram (size bytes of UDP payload, default 1472; at least the
 * 32-byte header) carries a session id, its sequence number, the count and
 * a checksum of the rest of the payload, a pattern seeded by session and
 * sequence. The receiver checks every one: wrong checksum or length
 * (corrupt), seen before (duplicated), below the highest seen so far
 * (reordered); what never came is lost.
 *
 * Pacing: a UDP sender can always outrun its receiver, and a datagram the
 * path has no room for is lost, not late. So the sender keeps at most
 * window (default 64) datagrams, and at most window_bytes (default 96K) of
 * payload, beyond the receiver's last acknowledgement (one every quarter
 * window: the highest sequence seen and the count received). That fits the
 * receiver's receive buffers (256 under QEMU, fewer with a large MTU) and
 * what the path can hold while the receiving side is not scheduled (QEMU's
 * dgram link: a 208 KiB socket buffer), so a correct path loses nothing and
 * lost=0 is required (max_loss raises the limit; window=0 sends unpaced,
 * to see what the path drops).
 *
 * Start and end: the sender probes until the receiver answers (wait_ms,
 * default 60000, for the other VM to boot), sends its datagrams, then
 * repeats END until the receiver's verdict (RESULT) arrives. Both print
 *   udpbulk: role=... size=S count=N sent=N received=N lost=0 duplicated=0
 *            reordered=0 corrupt=0 mbps=M pps=P elapsed_ms=E
 * (mbps and pps of payload, over the receiver's first to last datagram)
 * and exit 0 only if the verdict is good.
 *
 * stall_at: the receiver stops reading for stall_ms (default 1500) after
 * its N-th datagram, as a VM that is not scheduled would (to see what a
 * path does with a receiver that falls behind). */
#include <ferry/debug_exit.h>
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "net.h"
#include "pattern.h"
#include "timer.h"
#include "x86.h"

#define BULK_MAGIC  0x4b4c4255u   /* "UBLK" */
#define T_DATA      1
#define T_ACK       2
#define T_END       3
#define T_RESULT    4
#define T_PROBE     5
#define STALL_NS    20000000ul   /* no acknowledgement this long: probe */
#define GIVE_UP_NS  10000000000ul
#define LINGER_NS   1000000000ul /* the receiver answers repeated ENDs this long */

struct bulk_hdr {
	uint32_t magic;
	uint32_t type;
	uint32_t session;
	uint32_t seq;      /* DATA: its number; ACK: highest seen + 1; PROBE: the window */
	uint32_t count;    /* DATA, END: datagrams in the run; ACK: received so far */
	uint32_t size;
	uint64_t csum;     /* DATA: checksum64 of the payload after this header */
};

struct verdict {
	uint64_t received, lost, duplicated, reordered, corrupt;
	uint64_t bytes, elapsed_ns;
};

struct bulk_msg {
	struct bulk_hdr h;
	struct verdict v;  /* RESULT only */
};

static struct udp_sock *sock;

static void print_result(const char *role, uint32_t size, uint64_t count, uint64_t sent, const struct verdict *v)
{
	uint64_t ns = v->elapsed_ns ? v->elapsed_ns : 1;
	uint64_t centi_mbps = v->bytes * 8 * 100000 / ns;  /* Mb/s x 100 */

	kprintf("udpbulk: role=%s size=%u count=%lu sent=%lu received=%lu lost=%lu duplicated=%lu reordered=%lu "
		"corrupt=%lu mbps=%lu.%02lu pps=%lu elapsed_ms=%lu\n",
		role, size, count, sent, v->received, v->lost, v->duplicated, v->reordered, v->corrupt,
		centi_mbps / 100, centi_mbps % 100, v->received * 1000000000ul / ns, v->elapsed_ns / 1000000);
	net_print_stats("udpbulk");
}

static bool good(const struct verdict *v, uint64_t max_loss)
{
	return v->lost <= max_loss && !v->duplicated && !v->reordered && !v->corrupt;
}

static int send_ctl(uint32_t dst, uint16_t port, uint32_t type, uint32_t session, uint32_t seq, uint32_t count,
		    const struct verdict *v)
{
	struct bulk_msg m = { { BULK_MAGIC, type, session, seq, count, 0, 0 }, { 0 } };

	if (v)
		m.v = *v;
	return udp_sendto(sock, dst, port, &m, v ? sizeof(m) : sizeof(m.h), 0);
}

/* A control message of this session from the peer, or false after timeout_ns. */
static bool recv_ctl(uint32_t session, struct bulk_msg *m, uint64_t timeout_ns)
{
	struct udp_dgram d;
	uint64_t start = time_ns(), now;

	while ((now = time_ns()) - start <= timeout_ns) {
		if (!udp_recv(sock, &d, timeout_ns - (now - start)))
			return false;
		if (d.len < sizeof(m->h))
			continue;
		memcpy(m, d.data, MIN(d.len, (uint32_t)sizeof(*m)));
		if (m->h.magic != BULK_MAGIC || m->h.session != session ||
		    (m->h.type == T_RESULT && d.len < sizeof(*m)))
			continue;
		return true;
	}
	return false;
}

static int sender(uint32_t peer, uint16_t port)
{
	uint32_t size = (uint32_t)cmdline_get_u64("size", 1472);
	uint64_t count = cmdline_get_u64("count", 10000);
	uint64_t window = cmdline_get_u64("window", 64);
	uint64_t window_bytes = cmdline_get_u64("window_bytes", 96 * 1024);
	uint64_t max_loss = cmdline_get_u64("max_loss", 0), send_failures = 0;
	uint64_t wait_ns = cmdline_get_u64("wait_ms", 60000) * 1000000;
	uint32_t session = (uint32_t)(rdtsc() * 0x9e3779b97f4a7c15ull >> 32) | 1;
	uint64_t sent = 0, acked = 0, last_progress, start;
	struct bulk_msg m;
	uint8_t *buf;

	if (size < sizeof(struct bulk_hdr) || size > udp_max_payload(peer) || !count || count > UINT32_MAX) {
		kprintf("udpbulk: size must be %u..%u (route to the peer), count 1..2^32-1\n",
			(unsigned)sizeof(struct bulk_hdr), udp_max_payload(peer));
		return FERRY_EXIT_BAD_ARGS;
	}
	buf = kmalloc(size);
	if (!buf)
		return FERRY_EXIT_FAIL;
	if (window)
		window = MAX(MIN(window, window_bytes / size), 1ul);

	/* Until the receiver is there (ARP included: udp_sendto resolves). */
	start = time_ns();
	for (;;) {
		if (time_ns() - start > wait_ns) {
			kprintf("udpbulk: the receiver did not answer within %lu ms\n", wait_ns / 1000000);
			return FERRY_EXIT_FAIL;
		}
		send_ctl(peer, port, T_PROBE, session, (uint32_t)window, (uint32_t)count, NULL);
		if (recv_ctl(session, &m, 100000000ull) && m.h.type == T_ACK)
			break;
	}

	start = last_progress = time_ns();
	while (sent < count) {
		/* Take every acknowledgement that is in; wait for one if the
		 * window is full. */
		bool full = window && sent - acked >= window;
		while (recv_ctl(session, &m, full ? STALL_NS : 0)) {
			if (m.h.type == T_ACK && m.h.seq > acked) {
				acked = m.h.seq;
				last_progress = time_ns();
			}
			full = window && sent - acked >= window;
			if (!full)
				break;
		}
		if (full) {
			if (time_ns() - last_progress > GIVE_UP_NS) {
				kprintf("udpbulk: no acknowledgement for %lu s at %lu of %lu sent\n", GIVE_UP_NS / 1000000000,
					sent, count);
				return FERRY_EXIT_FAIL;
			}
			send_ctl(peer, port, T_PROBE, session, (uint32_t)window, (uint32_t)count, NULL);
			continue;
		}
		/* A burst up to the window, told to the device once. */
		uint64_t burst = window ? MIN(window - (sent - acked), count - sent) : MIN(32, count - sent);
		for (uint64_t k = 0; k < burst; k++, sent++) {
			struct bulk_hdr h = { BULK_MAGIC, T_DATA, session, (uint32_t)sent, (uint32_t)count, size, 0 };
			pattern_fill(buf + sizeof(h), size - sizeof(h), (uint64_t)session << 32 | sent);
			h.csum = checksum64(buf + sizeof(h), size - sizeof(h));
			memcpy(buf, &h, sizeof(h));
			/* A datagram the stack dropped (a full queue) is one the
			 * receiver counts lost: fatal only past max_loss. */
			if (udp_sendto(sock, peer, port, buf, size, NET_MORE) && ++send_failures > max_loss) {
				kprintf("udpbulk: send %lu failed\n", sent);
				return FERRY_EXIT_FAIL;
			}
		}
		net_flush();
	}

	/* The verdict. */
	start = time_ns();
	for (;;) {
		if (time_ns() - start > GIVE_UP_NS) {
			kprintf("udpbulk: no verdict from the receiver\n");
			return FERRY_EXIT_FAIL;
		}
		send_ctl(peer, port, T_END, session, 0, (uint32_t)sent, NULL);
		if (recv_ctl(session, &m, STALL_NS) && m.h.type == T_RESULT)
			break;
	}
	kfree(buf);
	if (send_failures)
		kprintf("udpbulk: %lu datagrams dropped on sending (full queues)\n", send_failures);
	print_result("send", size, count, sent, &m.v);
	return good(&m.v, max_loss) ? FERRY_EXIT_OK : FERRY_EXIT_FAIL;
}

/* Bit per sequence number: duplicates and losses. */
static bool test_and_set(uint8_t *seen, uint32_t seq)
{
	bool was = seen[seq / 8] >> (seq % 8) & 1;

	seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
	return was;
}

static int receiver(void)
{
	uint64_t wait_ns = cmdline_get_u64("wait_ms", 60000) * 1000000;
	uint64_t stall_at = cmdline_get_u64("stall_at", 0), stall_ns = cmdline_get_u64("stall_ms", 1500) * 1000000;
	struct verdict v = { 0 };
	uint32_t session = 0, count = 0, size = 0, src = 0, ack_every = 16, since_ack = 0;
	uint64_t next = 0, first_ns = 0, last_ns = 0, last_rx, ended = 0, sent = 0;
	uint16_t sport = 0;
	uint8_t *seen = NULL;
	struct udp_dgram d;

	last_rx = time_ns();
	for (;;) {
		uint64_t now = time_ns();
		uint64_t limit = session ? (ended ? LINGER_NS : GIVE_UP_NS) : wait_ns;
		struct bulk_hdr h;

		if (now - (ended ? ended : last_rx) > limit)
			break;
		if (!udp_recv(sock, &d, limit - (now - (ended ? ended : last_rx))))
			continue;
		if (d.len < sizeof(h))
			continue;
		memcpy(&h, d.data, sizeof(h));
		if (h.magic != BULK_MAGIC || (session && h.session != session))
			continue;
		if (!session) {  /* the first of a run fixes it */
			if (h.type != T_PROBE && h.type != T_DATA)
				continue;
			session = h.session;
			count = h.count;
			src = d.src;
			sport = d.sport;
			seen = kzalloc(count / 8 + 1);
			if (!seen)
				return FERRY_EXIT_FAIL;
		}
		last_rx = time_ns();
		switch (h.type) {
		case T_PROBE:
			/* Acknowledge a quarter of the sender's window at a time. */
			ack_every = h.seq ? MAX(h.seq / 4, 1u) : 16;
			send_ctl(src, sport, T_ACK, session, (uint32_t)next, (uint32_t)v.received, NULL);
			break;
		case T_DATA:
			if (!size) {
				size = h.size;
				first_ns = last_rx;
			}
			last_ns = last_rx;
			if (h.seq >= count || d.len != h.size || h.size < sizeof(h) ||
			    checksum64(d.data + sizeof(h), d.len - sizeof(h)) != h.csum) {
				v.corrupt++;
			} else if (test_and_set(seen, h.seq)) {
				v.duplicated++;
			} else {
				if (h.seq < next)
					v.reordered++;
				else
					next = (uint64_t)h.seq + 1;
				v.received++;
				v.bytes += d.len;
				if (v.received == stall_at)
					sleep_ns(stall_ns);
			}
			/* Every datagram counts towards the next acknowledgement,
			 * bad ones too: the sender's window must keep moving. */
			if (++since_ack >= ack_every) {
				send_ctl(src, sport, T_ACK, session, (uint32_t)next, (uint32_t)v.received, NULL);
				since_ack = 0;
			}
			break;
		case T_END:
			sent = h.count;
			v.lost = sent > v.received ? sent - v.received : 0;
			v.elapsed_ns = last_ns - first_ns;
			ended = time_ns();
			send_ctl(src, sport, T_RESULT, session, (uint32_t)next, (uint32_t)v.received, &v);
			break;
		}
	}
	kfree(seen);
	if (!session) {
		kprintf("udpbulk: nothing arrived within %lu ms\n", wait_ns / 1000000);
		return FERRY_EXIT_FAIL;
	}
	if (!ended) {
		kprintf("udpbulk: the sender went quiet before its END\n");
		v.lost = count - v.received;
		v.elapsed_ns = last_ns - first_ns;
	}
	print_result("recv", size, count, ended ? sent : count, &v);
	return ended && good(&v, cmdline_get_u64("max_loss", 0)) ? FERRY_EXIT_OK : FERRY_EXIT_FAIL;
}

static int udpbulk_main(void)
{
	const char *role = cmdline_get_str("role", "");
	uint16_t port = (uint16_t)cmdline_get_u64("port", 5001);
	bool send = !strcmp(role, "send");
	uint32_t peer = 0;
	int ret;

	if ((!send && strcmp(role, "recv")) || !port || (send && !ip_parse(cmdline_get_str("peer", ""), &peer))) {
		kprintf("udpbulk: role=send peer=IP or role=recv, port 1..65535\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (net_init())
		return FERRY_EXIT_FAIL;
	sock = udp_open(send ? 0 : port, 256);
	if (!sock)
		return FERRY_EXIT_FAIL;
	ret = send ? sender(peer, port) : receiver();
	udp_close(sock);
	return ret;
}

APP("udpbulk", "UDP throughput, every datagram verified (role=send peer=IP size= count= | role=recv)", udpbulk_main);
