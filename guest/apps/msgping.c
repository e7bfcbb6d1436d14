/* msgping: round-trip latency between two VMs over message queues.
 *
 *   role=ping peer=NAME count=N [warmup=N] size=BYTES post=immediate|deferred
 *             mode=adaptive|copy|remap wait=poll|irq [transport=msgq|ivshmem]
 *   role=pong [wait=poll|irq] [transport=msgq|ivshmem]
 *
 * The pinger sends a message, the ponger sends it straight back to its
 * source (the id the VMM put in the message), the pinger times the round
 * trip. One-way latency is half of it. wait=poll spins with receive
 * interrupts off (lowest latency); wait=irq halts until the interrupt.
 * warmup=N round trips go first, untimed: what is measured is then the
 * steady state, not the first use of each page the messages pass through.
 *
 * transport=ivshmem sends over the two rings in memory shared with QEMU's
 * ivshmem (include/ivshmem.h), one per direction, copying each message
 * from a private buffer into the ring; both sides poll. There is no source
 * id: the reply goes back over the other ring. mode is copy; post, peer
 * and wait mean nothing there. */
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "ivshmem.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "sort.h"
#include "timer.h"

#include <ferry/debug_exit.h>

#define PING_END 0x21444e45u  /* first word of the last message */
#define SEND_TIMEOUT_NS 10000000000ull

static bool ivs;  /* transport=ivshmem */
static unsigned long how_count[4];  /* the pinger's sends by MSGQ_HOW_* */

static uint32_t flags_from_cmdline(void)
{
	const char *mode = cmdline_get_str("mode", ivs ? "copy" : "adaptive");
	const char *post = cmdline_get_str("post", "immediate");
	uint32_t f = !strcmp(mode, "copy") ? MSG_COPY : !strcmp(mode, "remap") ? MSG_REMAP : MSG_ADAPTIVE;
	return f | (!strcmp(post, "deferred") ? MSG_DEFERRED : MSG_IMMEDIATE);
}

static const char *mode_name(uint32_t flags)
{
	uint32_t mode = flags & (MSG_COPY | MSG_REMAP);
	return mode == MSG_COPY ? "copy" : mode == MSG_REMAP ? "remap" : "adaptive";
}

/* Sends a message and waits until the transport has it: over msgq, posts
 * and reaps its own status so the send queue never fills; over ivshmem,
 * copies it into the ring. MSGQ_OK, or why not. */
static int send_msg(uint32_t dest, const void *buf, uint32_t len, uint32_t flags)
{
	if (ivs)
		return ivshmem_msg_send(buf, len, SEND_TIMEOUT_NS) == 0 ? MSGQ_OK : MSGQ_E_FULL;
	if (msgq_post(dest, buf, len, flags, 0) < 0)
		return MSGQ_E_FULL;
	struct msgq_done d;
	while (!msgq_reap(&d))
		msgq_wait_sends(2000000);
	how_count[d.how < 4 ? d.how : 0]++;
	return d.status;
}

static bool recv_msg(struct msg *m, uint64_t timeout_ns)
{
	return ivs ? ivshmem_msg_recv(m, timeout_ns) : msg_recv(m, timeout_ns);
}

/* Gives a received message's memory back at once. */
static void release_msg(struct msg *m)
{
	if (ivs) {
		ivshmem_msg_release(m);
	} else {
		msg_release(m);
		msgq_flush();
	}
}

/* A buffer to send from: in the msgq window, or private memory that
 * ivshmem copies from. */
static uint8_t *buf_alloc(uint32_t len)
{
	return ivs ? kmalloc(len) : msgq_alloc(len);
}

static void buf_free(uint8_t *buf, uint32_t len)
{
	if (ivs)
		kfree(buf);
	else
		msgq_free(buf, len);
}

/* Waits until the other side can take messages: the pinger until the
 * ponger's driver takes them, or each side until the other's ring is up. */
static int connect_peer(bool pinger, uint32_t dest, const char *peer)
{
	if (ivs) {
		unsigned side = pinger ? IVSHMEM_INITIATOR : IVSHMEM_RESPONDER;
		return ivshmem_msg_open(side, (pinger ? 30 : 60) * 1000000000ull) == 0 ? 0 : FERRY_EXIT_FAIL;
	}
	if (pinger && msgq_wait_peer(dest, MSG_COPY, 30000000000ull) != MSGQ_OK) {
		kprintf("msgping: %s is not receiving\n", peer);
		return FERRY_EXIT_FAIL;
	}
	return 0;
}

static int ping(void)
{
	const char *peer = cmdline_get_str("peer", "");
	uint32_t dest = msgq_peer(peer), flags = flags_from_cmdline();
	unsigned count = (unsigned)cmdline_get_u64("count", 1000);
	unsigned warmup = (unsigned)cmdline_get_u64("warmup", 0);
	uint32_t size = (uint32_t)cmdline_get_u64("size", 64);
	if ((!dest && !ivs) || count == 0 || size < 8 || warmup > 1000000) {
		kprintf("msgping: need peer=NAME (a peer of this VM), count >= 1, size >= 8\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	int err = connect_peer(true, dest, peer);
	if (err)
		return err;
	uint8_t *buf = buf_alloc(size);
	uint64_t *rtt = kmalloc(count * sizeof(*rtt));
	if (!buf || !rtt)
		return FERRY_EXIT_FAIL;
	struct msg m;
	unsigned total = warmup + count;
	for (unsigned i = 0; i <= total; i++) {
		memset(buf, (int)(i & 0xff), size);
		uint32_t tag = i == total ? PING_END : i;
		memcpy(buf, &tag, 4);
		uint64_t t0 = time_ns();
		int st = send_msg(dest, buf, size, flags);
		if (st != MSGQ_OK) {
			kprintf("msgping: send %u failed with status %d\n", i, st);
			return FERRY_EXIT_FAIL;
		}
		if (i == total)
			break;
		if (!recv_msg(&m, 5000000000ull)) {
			kprintf("msgping: no reply to message %u\n", i);
			return FERRY_EXIT_FAIL;
		}
		uint64_t t1 = time_ns();
		uint32_t back;
		memcpy(&back, m.data, 4);
		/* Only msgq says who sent it; over ivshmem anyone could have. */
		if (back != i || m.len != size || (!ivs && m.src != dest)) {
			kprintf("msgping: reply %u (from %u, %u bytes) does not match message %u\n", back, m.src, m.len, i);
			return FERRY_EXIT_FAIL;
		}
		release_msg(&m);
		if (i >= warmup)
			rtt[i - warmup] = t1 - t0;
	}
	if (ivs)
		ivshmem_msg_close();
	sort_u64(rtt, count);
	uint64_t med = rtt[count / 2], p99 = rtt[count * 99 / 100], min = rtt[0];
	kprintf("msgping: result {\"size\": %u, \"count\": %u, \"transport\": \"%s\", \"mode\": \"%s\", "
		"\"post\": \"%s\", \"warmup\": %u, \"copied\": %lu, \"remapped\": %lu, \"ring\": %lu, \"rtt_ns_min\": %lu, "
		"\"rtt_ns_median\": %lu, \"rtt_ns_p99\": %lu, \"one_way_ns_median\": %lu}\n",
		size, count, ivs ? "ivshmem" : "msgq", mode_name(flags),
		ivs ? "none" : (flags & MSG_IMMEDIATE) ? "immediate" : "deferred", warmup, how_count[MSGQ_HOW_COPIED],
		how_count[MSGQ_HOW_REMAPPED], how_count[MSGQ_HOW_RING], min, med, p99, med / 2);
	kfree(rtt);
	buf_free(buf, size);
	return 0;
}

static int pong(void)
{
	uint32_t flags = flags_from_cmdline();
	uint8_t *buf = NULL;
	uint32_t buf_len = 0;
	struct msg m;
	int err = connect_peer(false, 0, NULL);
	if (err)
		return err;
	for (;;) {
		if (!recv_msg(&m, 60000000000ull)) {
			kprintf("msgping: pong heard nothing for a minute\n");
			return FERRY_EXIT_FAIL;
		}
		uint32_t tag = 0;
		if (m.len >= 4)
			memcpy(&tag, m.data, 4);
		if (m.len == 1 || tag == PING_END) { /* readiness probe, or the end */
			release_msg(&m);
			if (tag != PING_END)
				continue;
			if (ivs)
				ivshmem_msg_close();
			return 0;
		}
		if (m.len > buf_len) {
			if (buf)
				buf_free(buf, buf_len);
			buf = buf_alloc(m.len);
			buf_len = m.len;
			if (!buf)
				return FERRY_EXIT_FAIL;
		}
		memcpy(buf, m.data, m.len);
		uint32_t src = m.src, len = m.len;
		release_msg(&m);
		int st = send_msg(src, buf, len, flags);
		if (st != MSGQ_OK) {
			kprintf("msgping: reply to %u failed with status %d\n", src, st);
			return FERRY_EXIT_FAIL;
		}
	}
}

static int msgping_main(void)
{
	const char *transport = cmdline_get_str("transport", "msgq");
	ivs = !strcmp(transport, "ivshmem");
	if (!ivs && strcmp(transport, "msgq")) {
		kprintf("msgping: transport=msgq or transport=ivshmem\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (ivs && (flags_from_cmdline() & (MSG_COPY | MSG_REMAP)) != MSG_COPY) {
		kprintf("msgping: ivshmem can only copy (mode=copy)\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (!ivs) {
		if (msgq_open() < 0) {
			kprintf("msgping: no msgq device\n");
			return FERRY_EXIT_FAIL;
		}
		msgq_recv_irq(strcmp(cmdline_get_str("wait", "poll"), "irq") == 0);
	}
	const char *role = cmdline_get_str("role", "");
	if (!strcmp(role, "ping"))
		return ping();
	if (!strcmp(role, "pong"))
		return pong();
	kprintf("msgping: role=ping or role=pong\n");
	return FERRY_EXIT_BAD_ARGS;
}

APP("msgping", "round-trip latency to a peer VM (role=ping|pong)", msgping_main);
