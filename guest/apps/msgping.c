/* msgping: round-trip latency between two VMs over message queues.
 *
 *   role=ping peer=NAME count=N size=BYTES post=immediate|deferred
 *             mode=adaptive|copy|remap wait=poll|irq
 *   role=pong [wait=poll|irq]
 *
 * The pinger sends a message, the ponger sends it straight back to its
 * source (the id the VMM put in the message), the pinger times the round
 * trip. One-way latency is half of it. wait=poll spins with receive
 * interrupts off (lowest latency); wait=irq halts until the interrupt. */
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "timer.h"

#include <ferry/debug_exit.h>

#define PING_END 0x21444e45u  /* first word of the last message */

static uint32_t flags_from_cmdline(void)
{
	const char *mode = cmdline_get_str("mode", "adaptive"), *post = cmdline_get_str("post", "immediate");
	uint32_t f = !strcmp(mode, "copy") ? MSG_COPY : !strcmp(mode, "remap") ? MSG_REMAP : MSG_ADAPTIVE;
	return f | (!strcmp(post, "deferred") ? MSG_DEFERRED : MSG_IMMEDIATE);
}

/* Sorts in place (insertion sort: counts are small). */
static void sort_u64(uint64_t *v, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		uint64_t x = v[i];
		unsigned j = i;
		while (j > 0 && v[j - 1] > x) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}

/* Posts and reaps its own status so the send queue never fills. */
static int send_and_reap(uint32_t dest, const void *buf, uint32_t len, uint32_t flags)
{
	if (msgq_post(dest, buf, len, flags, 0) < 0)
		return MSGQ_E_FULL;
	struct msgq_done d;
	while (!msgq_reap(&d))
		msgq_wait_sends(2000000);
	return d.status;
}

static int ping(void)
{
	const char *peer = cmdline_get_str("peer", "");
	uint32_t dest = msgq_peer(peer), flags = flags_from_cmdline();
	unsigned count = (unsigned)cmdline_get_u64("count", 1000);
	uint32_t size = (uint32_t)cmdline_get_u64("size", 64);
	if (!dest || count == 0 || size < 8) {
		kprintf("msgping: need peer=NAME (a peer of this VM), count >= 1, size >= 8\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (msgq_wait_peer(dest, MSG_COPY, 30000000000ull) != MSGQ_OK) {
		kprintf("msgping: %s is not receiving\n", peer);
		return FERRY_EXIT_FAIL;
	}
	uint8_t *buf = msgq_alloc(size);
	uint64_t *rtt = kmalloc(count * sizeof(*rtt));
	if (!buf || !rtt)
		return FERRY_EXIT_FAIL;
	struct msg m;
	for (unsigned i = 0; i <= count; i++) {
		memset(buf, (int)(i & 0xff), size);
		uint32_t tag = i == count ? PING_END : i;
		memcpy(buf, &tag, 4);
		uint64_t t0 = time_ns();
		int st = send_and_reap(dest, buf, size, flags);
		if (st != MSGQ_OK) {
			kprintf("msgping: send %u failed with status %d\n", i, st);
			return FERRY_EXIT_FAIL;
		}
		if (i == count)
			break;
		if (!msg_recv(&m, 5000000000ull)) {
			kprintf("msgping: no reply to message %u\n", i);
			return FERRY_EXIT_FAIL;
		}
		uint64_t t1 = time_ns();
		uint32_t back;
		memcpy(&back, m.data, 4);
		if (back != i || m.len != size || m.src != dest) {
			kprintf("msgping: reply %u (from %u, %u bytes) does not match message %u\n", back, m.src, m.len, i);
			return FERRY_EXIT_FAIL;
		}
		msg_release(&m);
		msgq_flush();
		rtt[i] = t1 - t0;
	}
	sort_u64(rtt, count);
	uint64_t med = rtt[count / 2], p99 = rtt[count * 99 / 100], min = rtt[0];
	kprintf("msgping: result {\"size\": %u, \"count\": %u, \"post\": \"%s\", \"rtt_ns_min\": %lu, "
		"\"rtt_ns_median\": %lu, \"rtt_ns_p99\": %lu, \"one_way_ns_median\": %lu}\n",
		size, count, (flags & MSG_IMMEDIATE) ? "immediate" : "deferred", min, med, p99, med / 2);
	kfree(rtt);
	return 0;
}

static int pong(void)
{
	uint32_t flags = flags_from_cmdline();
	uint8_t *buf = NULL;
	uint32_t buf_len = 0;
	struct msg m;
	for (;;) {
		if (!msg_recv(&m, 60000000000ull)) {
			kprintf("msgping: pong heard nothing for a minute\n");
			return FERRY_EXIT_FAIL;
		}
		uint32_t tag = 0;
		if (m.len >= 4)
			memcpy(&tag, m.data, 4);
		if (m.len == 1 || tag == PING_END) { /* readiness probe, or the end */
			msg_release(&m);
			msgq_flush();
			if (tag == PING_END)
				return 0;
			continue;
		}
		if (m.len > buf_len) {
			if (buf)
				msgq_free(buf, buf_len);
			buf = msgq_alloc(m.len);
			buf_len = m.len;
			if (!buf)
				return FERRY_EXIT_FAIL;
		}
		memcpy(buf, m.data, m.len);
		uint32_t src = m.src, len = m.len;
		msg_release(&m);
		msgq_flush();
		int st = send_and_reap(src, buf, len, flags);
		if (st != MSGQ_OK) {
			kprintf("msgping: reply to %u failed with status %d\n", src, st);
			return FERRY_EXIT_FAIL;
		}
	}
}

static int msgping_main(void)
{
	if (msgq_open() < 0) {
		kprintf("msgping: no msgq device\n");
		return FERRY_EXIT_FAIL;
	}
	msgq_recv_irq(strcmp(cmdline_get_str("wait", "poll"), "irq") == 0);
	const char *role = cmdline_get_str("role", "");
	if (!strcmp(role, "ping"))
		return ping();
	if (!strcmp(role, "pong"))
		return pong();
	kprintf("msgping: role=ping or role=pong\n");
	return FERRY_EXIT_BAD_ARGS;
}

APP("msgping", "round-trip latency to a peer VM (role=ping|pong)", msgping_main);
