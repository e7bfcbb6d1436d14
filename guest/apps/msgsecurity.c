/* msgsecurity: tries every way a guest could misuse its message queue; each
 * attempt must fail cleanly with the right status and deliver nothing.
 *
 *   role=attack peer=VICTIM gone=NAME denied_id=N
 *   role=victim peer=ATTACKER
 *
 * The attacker checks, in order: a send to a VM it may not send to
 * (denied_id), to an id no VM has, to a peer that has stopped (gone), of a
 * buffer outside its send region (guest RAM, and its own receive region), at
 * an address inside a slot, longer than max_msg_pages, of length 0, past the
 * end of the send region, and into a receiver that is full. Then the
 * after-send write: it writes a pattern, sends it remapped, checks its slot
 * no longer shows it, writes another pattern there, and asks the victim to
 * confirm the message it holds still has the first pattern. The victim also
 * tries to write into a received page, which must not change it. Exits
 * non-zero if anything that should fail succeeds. */
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "timer.h"

#include <ferry/debug_exit.h>

#define SEC_FILL    0x4c4c4946u  /* "FILL": victim holds messages until told */
#define SEC_RELEASE 0x454c4552u  /* "RELE": victim releases everything */
#define SEC_CHECK   0x4b434843u  /* "CHCK": victim checks the held probe */
#define SEC_PROBE   0x424f5250u  /* "PROB": the after-send message */
#define SEC_VERDICT 0x54434456u  /* "VDCT": the victim's answer */
#define SEC_DONE    0x454e4f44u  /* "DONE" */
#define PATTERN_1   0xa5
#define PATTERN_2   0x5a

static int failures;

static void expect(const char *what, int got, int want)
{
	bool ok = got == want;
	kprintf("msgsecurity: %-44s status %d, want %d: %s\n", what, got, want, ok ? "ok" : "FAILED");
	failures += !ok;
}

static int send_word(uint32_t dest, uint32_t word, uint32_t flags)
{
	uint8_t *buf = msgq_alloc(4);
	if (!buf)
		return MSGQ_E_FULL;
	memcpy(buf, &word, 4);
	int st = msg_send(dest, buf, 4, flags | MSG_IMMEDIATE);
	msgq_free(buf, 4);
	return st;
}

static uint32_t first_word(const struct msg *m)
{
	uint32_t w = 0;
	if (m->len >= 4)
		memcpy(&w, m->data, 4);
	return w;
}

static int attack(void)
{
	const struct msgq_config *cfg = msgq_config();
	uint32_t victim = msgq_peer(cmdline_get_str("peer", "")), gone = msgq_peer(cmdline_get_str("gone", ""));
	uint32_t denied = (uint32_t)cmdline_get_u64("denied_id", 0), ps = cfg->page_size;
	if (!victim || !gone || !denied) {
		kprintf("msgsecurity: need peer=VICTIM gone=NAME (both peers) and denied_id=N\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (msgq_wait_peer(victim, MSG_COPY, 30000000000ull) != MSGQ_OK) {
		kprintf("msgsecurity: victim is not receiving\n");
		return FERRY_EXIT_FAIL;
	}
	uint8_t *buf = msgq_alloc(ps);
	uint8_t *ram = kmalloc(4096);
	memset(buf, 1, 64);
	memset(ram, 1, 64);

	expect("send to a VM that is not a peer", msg_send(denied, buf, 64, MSG_IMMEDIATE), MSGQ_E_DENIED);
	expect("send to an id no VM has", msg_send(200, buf, 64, MSG_IMMEDIATE), MSGQ_E_NO_DEST);
	expect("send to id 0", msg_send(0, buf, 64, MSG_IMMEDIATE), MSGQ_E_NO_DEST);
	/* The "gone" peer powers off at once; wait until the VMM knows. */
	int st = MSGQ_OK;
	for (int i = 0; i < 500 && (st = msg_send(gone, buf, 64, MSG_IMMEDIATE)) != MSGQ_E_DEST_DOWN; i++)
		sleep_ms(10);
	expect("send to a peer that has stopped", st, MSGQ_E_DEST_DOWN);
	expect("send of a buffer in guest RAM", msg_send(victim, ram, 64, MSG_IMMEDIATE), MSGQ_E_BAD_ADDR);
	expect("send of a buffer in the receive region", msg_send(victim, msgq_recv_region(), 64, MSG_IMMEDIATE),
	       MSGQ_E_BAD_ADDR);
	expect("send from inside a slot (unaligned)", msg_send(victim, buf + 8, 64, MSG_IMMEDIATE), MSGQ_E_UNALIGNED);
	uint32_t too_long = (cfg->max_msg_pages + 1) * ps;
	if (cfg->max_msg_pages < cfg->send_slots)
		expect("send longer than max_msg_pages", msg_send(victim, msgq_send_region(), too_long, MSG_IMMEDIATE),
		       MSGQ_E_TOO_LONG);
	expect("send of length 0", msg_send(victim, buf, 0, MSG_IMMEDIATE), MSGQ_E_TOO_LONG);
	uint8_t *last = msgq_send_region() + (uint64_t)(cfg->send_slots - 1) * ps;
	expect("send past the end of the send region", msg_send(victim, last, 2 * ps, MSG_IMMEDIATE), MSGQ_E_TOO_LONG);

	/* A full receiver: the victim holds everything until told otherwise. */
	if (send_word(victim, SEC_FILL, MSG_COPY) != MSGQ_OK)
		failures++;
	st = MSGQ_OK;
	for (uint32_t i = 0; i <= cfg->send_slots + 8192 && st == MSGQ_OK; i++)
		st = msg_send(victim, buf, 64, MSG_COPY | MSG_IMMEDIATE);
	expect("send into a full receiver", st, MSGQ_E_FULL);
	/* The victim lets go once we have been quiet for a moment. */
	st = MSGQ_E_FULL;
	for (int i = 0; i < 1000 && (st = send_word(victim, SEC_RELEASE, MSG_COPY)) == MSGQ_E_FULL; i++)
		sleep_ms(5);
	expect("the receiver takes messages again", st, MSGQ_OK);

	/* After-send write: the message is the receiver's alone now. */
	memset(buf, PATTERN_1, ps);
	uint32_t probe = SEC_PROBE;
	memcpy(buf, &probe, 4);
	st = msg_send(victim, buf, ps, MSG_REMAP | MSG_IMMEDIATE);
	expect("remapped send of the probe", st, MSGQ_OK);
	unsigned still = 0;
	for (uint32_t k = 4; k < ps; k++)
		still += buf[k] == PATTERN_1;
	kprintf("msgsecurity: after sending, %u of %u probe bytes still in the sender's slot: %s\n", still, ps - 4,
		still == 0 ? "ok" : "FAILED");
	failures += still != 0;
	memset(buf, PATTERN_2, ps); /* must never reach the receiver */
	if (send_word(victim, SEC_CHECK, MSG_COPY) != MSGQ_OK)
		failures++;
	struct msg m;
	bool verdict = false;
	while (msg_recv(&m, 10000000000ull)) {
		uint32_t w = first_word(&m), ok = 0;
		if (w == SEC_VERDICT && m.len >= 8)
			memcpy(&ok, m.data + 4, 4);
		msg_release(&m);
		msgq_flush();
		if (w == SEC_VERDICT) {
			verdict = ok == 1;
			break;
		}
	}
	kprintf("msgsecurity: victim says the probe kept its contents after the sender's writes: %s\n",
		verdict ? "ok" : "FAILED");
	failures += !verdict;
	send_word(victim, SEC_DONE, MSG_COPY);
	kprintf("msgsecurity: %s\n", failures ? "FAILED" : "every misuse was refused");
	return failures ? FERRY_EXIT_FAIL : 0;
}

static int victim(void)
{
	uint32_t attacker = msgq_peer(cmdline_get_str("peer", ""));
	const struct msgq_config *cfg = msgq_config();
	/* Holding = not releasing: the slots stay taken until the attacker has
	 * been refused and gone quiet for a while. */
	struct msg *held = kmalloc(cfg->recv_slots * sizeof(*held)), probe;
	unsigned nheld = 0;
	bool holding = false, have_probe = false;
	int bad = 0;
	struct msg m;
	for (;;) {
		if (!msg_recv(&m, holding ? 200000000ull : 60000000000ull)) {
			if (!holding)
				break;
			kprintf("msgsecurity: victim held %u messages until the attacker was refused\n", nheld);
			for (unsigned i = 0; i < nheld; i++)
				msg_release(&held[i]);
			nheld = 0;
			holding = false;
			msgq_flush();
			continue;
		}
		uint32_t w = first_word(&m);
		if (w == SEC_DONE) {
			msg_release(&m);
			break;
		} else if (w == SEC_FILL) {
			holding = true;
			msg_release(&m);
		} else if (w == SEC_PROBE) {
			probe = m;
			have_probe = true;
			/* A received page is read-only: this write must not land. */
			volatile uint8_t *p = (volatile uint8_t *)m.data + 100;
			uint8_t before = *p;
			*p = (uint8_t)~before;
			bool unchanged = *p == before;
			kprintf("msgsecurity: victim's write into a received page: %s\n",
				unchanged ? "ignored, ok" : "LANDED, FAILED");
			bad += !unchanged;
		} else if (w == SEC_CHECK) {
			bool ok = have_probe && probe.len > 4;
			for (uint32_t k = 4; ok && k < probe.len; k++)
				ok = probe.data[k] == PATTERN_1;
			msg_release(&m);
			if (have_probe)
				msg_release(&probe);
			msgq_flush();
			uint8_t *buf = msgq_alloc(8);
			uint32_t v[2] = { SEC_VERDICT, ok };
			memcpy(buf, v, 8);
			if (msg_send(attacker, buf, 8, MSG_COPY | MSG_IMMEDIATE) != MSGQ_OK)
				bad++;
			msgq_free(buf, 8);
		} else if (holding && nheld < cfg->recv_slots) {
			held[nheld++] = m;
		} else {
			msg_release(&m); /* including the attacker's release order */
		}
		if (!holding)
			msgq_flush();
	}
	msgq_flush();
	kfree(held);
	return bad ? FERRY_EXIT_FAIL : 0;
}

static int msgsecurity_main(void)
{
	if (msgq_open() < 0) {
		kprintf("msgsecurity: no msgq device\n");
		return FERRY_EXIT_FAIL;
	}
	const char *role = cmdline_get_str("role", "");
	if (!strcmp(role, "attack"))
		return attack();
	if (!strcmp(role, "victim"))
		return victim();
	kprintf("msgsecurity: role=attack or role=victim\n");
	return FERRY_EXIT_BAD_ARGS;
}

APP("msgsecurity", "try every misuse of the message queue; all must fail (role=attack|victim)", msgsecurity_main);
