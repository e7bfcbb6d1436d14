/* msgrings: a guest that misuses the direct rings (MSGQ_F_RINGS) it shares
 * with a peer, and a peer that must come through unharmed.
 *
 *   role=attack peer=VICTIM [count=N]
 *   role=victim peer=ATTACKER
 *
 * The attacker sends count messages on its ring (each must go on the ring),
 * writes into its read-only view of the victim's ack page (must not land),
 * then publishes a producer index that no ring can have. The victim's driver
 * must notice, stop reading the ring and close it, after which the attacker's
 * messages go through ferry and still arrive, with ferry's word on who sent
 * them. The attacker then rings the rings' doorbell in a loop: ferry must not
 * wake the victim for it (it polls, and never asked to be woken). The victim checks every
 * message (source, length, contents), tries to write into a ring message
 * and into its read-only view of the attacker's ring (neither may land), and
 * answers with its verdict. Both exit non-zero if anything was wrong. */
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "timer.h"

#include <ferry/debug_exit.h>

#define RNG_DATA    0x41544144u  /* "DATA" */
#define RNG_CORRUPT 0x52524f43u  /* "CORR": the ring is about to be broken */
#define RNG_DONE    0x454e4f44u  /* "DONE" */
#define RNG_VERDICT 0x54434456u  /* "VDCT" */
#define MSG_LEN     256

static int failures;

static void check(const char *what, bool ok)
{
	kprintf("msgrings: %-58s %s\n", what, ok ? "ok" : "FAILED");
	failures += !ok;
}

static void fill(uint8_t *buf, uint32_t magic, uint32_t seq)
{
	memcpy(buf, &magic, 4);
	memcpy(buf + 4, &seq, 4);
	for (unsigned k = 8; k < MSG_LEN; k++)
		buf[k] = (uint8_t)(seq * 7 + k);
}

/* Sends one message and reports how it went (MSGQ_HOW_*), or -1. */
static int send_one(uint32_t dest, uint8_t *buf, uint32_t magic, uint32_t seq)
{
	fill(buf, magic, seq);
	if (msgq_post(dest, buf, MSG_LEN, MSG_COPY | MSG_IMMEDIATE, seq) < 0)
		return -1;
	struct msgq_done d;
	uint64_t until = time_ns() + 5000000000ull;
	while (!msgq_reap(&d))
		if (time_ns() > until)
			return -1;
		else
			msgq_wait_sends(1000000);
	return d.status == MSGQ_OK ? d.how : -1;
}

static bool ring_open(uint32_t peer)
{
	bool tx = false;
	msgq_rings(peer, &tx, NULL);
	return tx;
}

static int attack(void)
{
	uint32_t victim = msgq_peer(cmdline_get_str("peer", ""));
	unsigned count = (unsigned)cmdline_get_u64("count", 100);
	uint8_t *ack = NULL, *ring = victim ? msgq_ring_to(victim, &ack) : NULL;
	if (!ring) {
		kprintf("msgrings: need peer=VICTIM, a peer with a direct ring\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	uint64_t until = time_ns() + 30000000000ull;
	while (!ring_open(victim) && time_ns() < until)
		sleep_ms(2);
	check("the victim opened its ring", ring_open(victim));
	uint8_t *buf = msgq_alloc(MSG_LEN);
	unsigned on_ring = 0;
	for (unsigned i = 0; i < count; i++)
		on_ring += send_one(victim, buf, RNG_DATA, i) == MSGQ_HOW_RING;
	kprintf("msgrings: %u of %u messages went on the ring\n", on_ring, count);
	failures += on_ring != count;

	/* The ack page is the victim's: our view of it is read-only. */
	volatile uint32_t *open = (volatile uint32_t *)(ack + offsetof(struct msgq_ring_ack, open));
	uint32_t before = *open;
	*open = 0;
	check("write into the read-only view of the victim's ack page is ignored", *open == before);

	/* Break the ring: a producer index no ring of this size can have,
	 * once the victim has read everything before it (it says so in its
	 * consumer index when it has caught up). */
	if (send_one(victim, buf, RNG_CORRUPT, count) != MSGQ_HOW_RING)
		failures++;
	volatile uint64_t *prod = (volatile uint64_t *)(ring + offsetof(struct msgq_ring_hdr, prod));
	volatile uint64_t *cons = (volatile uint64_t *)(ack + offsetof(struct msgq_ring_ack, cons));
	until = time_ns() + 30000000000ull;
	while (*cons != *prod && time_ns() < until)
		sleep_ms(1);
	check("the victim read everything sent on the ring", *cons == *prod);
	*prod = *prod + (1ull << 40);
	until = time_ns() + 10000000000ull;
	while (ring_open(victim) && time_ns() < until)
		sleep_ms(2);
	check("the victim closed the ring it found broken", !ring_open(victim));
	unsigned through_ferry = 0;
	for (unsigned i = 0; i < count; i++)
		through_ferry += send_one(victim, buf, RNG_DATA, count + 1 + i) == MSGQ_HOW_COPIED;
	kprintf("msgrings: %u of %u later messages went through ferry\n", through_ferry, count);
	failures += through_ferry != count;

	/* A doorbell rung in a loop wakes nobody who did not ask. */
	for (int i = 0; i < 200; i++)
		msgq_ring_doorbell();
	if (send_one(victim, buf, RNG_DONE, 2 * count + 1) < 0)
		failures++;
	struct msg m;
	bool verdict = false;
	if (msg_recv(&m, 10000000000ull)) {
		uint32_t w[2] = { 0, 0 };
		if (m.len >= 8)
			memcpy(w, m.data, 8);
		verdict = w[0] == RNG_VERDICT && w[1] == 1;
		msg_release(&m);
		msgq_flush();
	}
	check("the victim received everything intact, from us", verdict);
	msgq_free(buf, MSG_LEN);
	kprintf("msgrings: %s\n", failures ? "FAILED" : "every misuse was contained");
	return failures ? FERRY_EXIT_FAIL : 0;
}

static int victim(void)
{
	uint32_t attacker = msgq_peer(cmdline_get_str("peer", ""));
	uint8_t *ack = NULL, *ring = attacker ? msgq_ring_from(attacker, &ack) : NULL;
	if (!ring) {
		kprintf("msgrings: need peer=ATTACKER, a peer with a direct ring to us\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	/* Polling, never asleep: no wake-up is ever owed to us, whatever
	 * doorbells the attacker rings. */
	msgq_recv_irq(false);
	unsigned ring_msgs = 0, ferry_msgs = 0, bad = 0;
	bool tried_write = false, corrupt_seen = false, done = false;
	struct msg m;
	while (!done && msg_recv(&m, 30000000000ull)) {
		uint32_t magic = 0, seq = 0;
		if (m.len >= 8) {
			memcpy(&magic, m.data, 4);
			memcpy(&seq, m.data + 4, 4);
		}
		bool ok = m.src == attacker && m.len == MSG_LEN;
		for (unsigned k = 8; ok && k < MSG_LEN; k++)
			ok = m.data[k] == (uint8_t)(seq * 7 + k);
		if (!ok && bad++ < 4)
			kprintf("msgrings: message %u from %u (%u bytes) is not what was sent\n", seq, m.src, m.len);
		bool on_ring = m.flags & MSGQ_RECV_RING;
		ring_msgs += on_ring;
		ferry_msgs += !on_ring;
		if (on_ring && !tried_write) {
			/* In place in the attacker's ring: read-only to us. */
			volatile uint8_t *p = (volatile uint8_t *)m.data + 16;
			uint8_t before = *p;
			*p = (uint8_t)~before;
			check("write into a message read from a ring is ignored", *p == before);
			volatile uint64_t *prod = (volatile uint64_t *)(ring + offsetof(struct msgq_ring_hdr, prod));
			uint64_t pbefore = *prod;
			*prod = 0;
			check("write into the read-only view of the sender's ring is ignored", *prod == pbefore);
			tried_write = true;
		}
		corrupt_seen |= magic == RNG_CORRUPT;
		done = magic == RNG_DONE;
		msg_release(&m);
		msgq_flush();
	}
	kprintf("msgrings: received %u messages on the ring and %u through ferry, %u bad\n", ring_msgs, ferry_msgs, bad);
	bool ok = done && corrupt_seen && !bad && ferry_msgs > 1 && ring_msgs > 1;
	uint8_t *buf = msgq_alloc(8);
	uint32_t v[2] = { RNG_VERDICT, ok };
	memcpy(buf, v, 8);
	int st = msg_send(attacker, buf, 8, MSG_COPY | MSG_IMMEDIATE);
	msgq_free(buf, 8);
	check("the verdict reached the attacker", st == MSGQ_OK);
	check("everything received intact", ok);
	return failures ? FERRY_EXIT_FAIL : 0;
}

static int msgrings_main(void)
{
	if (msgq_open() < 0) {
		kprintf("msgrings: no msgq device\n");
		return FERRY_EXIT_FAIL;
	}
	const char *role = cmdline_get_str("role", "");
	if (!strcmp(role, "attack"))
		return attack();
	if (!strcmp(role, "victim"))
		return victim();
	kprintf("msgrings: role=attack or role=victim\n");
	return FERRY_EXIT_BAD_ARGS;
}

APP("msgrings", "misuse the direct rings shared with a peer; the peer must not suffer (role=attack|victim)",
    msgrings_main);
