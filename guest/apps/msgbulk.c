/* msgbulk: streams messages of several sizes to another VM and verifies
 * every one at the receiver.
 *
 *   role=send peer=NAME sizes=64,4K,64K,2M count=N mode=adaptive|copy|remap
 *             post=immediate|deferred check=full|header
 *   role=recv [timeout_ms=N] [wait=poll|irq]
 *
 * The sender first retries a one-byte message until the receiver's driver
 * is up. The receiver spins with receive interrupts off (wait=poll, the
 * default: fastest) or halts until an interrupt (wait=irq).
 *
 * Each message starts with a header (run, sequence number, length, and a
 * checksum of the rest, which is a pattern seeded by run and sequence). With
 * check=header only the header is written and checked: that measures the
 * transport, not the guest filling and summing memory. Each run (size) ends
 * with an END message; a DONE message ends the stream. The sender prints one
 * "msgbulk: result {...}" line per size; the receiver checks that every
 * message arrived once and intact and exits non-zero otherwise. */
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "pattern.h"
#include "timer.h"
#include "x86.h"

#include <ferry/debug_exit.h>

#define BULK_DATA 0x4b4c5542u  /* "BULK" */
#define BULK_END  0x21444e45u  /* "END!" */
#define BULK_DONE 0x454e4f44u  /* "DONE" */
#define MAX_RUNS  16
#define MAX_BUFS  1024

struct bulk_hdr {
	uint32_t magic, run, seq, count;
	uint32_t len, full;
	uint64_t csum;
};

static const char *mode_name(uint32_t mode)
{
	return mode == MSG_COPY ? "copy" : mode == MSG_REMAP ? "remap" : "adaptive";
}

/* Fills one message; returns nothing, the header says it all. */
static void build(uint8_t *buf, uint32_t len, uint32_t run, uint32_t seq, uint32_t count, bool full)
{
	struct bulk_hdr h = { BULK_DATA, run, seq, count, len, full, 0 };
	if (full && len > sizeof(h)) {
		pattern_fill(buf + sizeof(h), len - sizeof(h), (uint64_t)run << 32 | seq);
		h.csum = checksum64(buf + sizeof(h), len - sizeof(h));
	}
	memcpy(buf, &h, sizeof(h) < len ? sizeof(h) : len);
}

static int parse_sizes(uint32_t *sizes)
{
	const char *s = cmdline_get_str("sizes", "64,4K,64K,2M");
	int n = 0;
	char tok[32];
	while (*s && n < MAX_RUNS) {
		unsigned k = 0;
		while (*s && *s != ',' && k + 1 < sizeof(tok))
			tok[k++] = *s++;
		tok[k] = '\0';
		if (*s == ',')
			s++;
		uint64_t v;
		if (!parse_size(tok, &v) || v < sizeof(struct bulk_hdr) || v > UINT32_MAX) {
			kprintf("msgbulk: bad size \"%s\" (at least %zu bytes)\n", tok, sizeof(struct bulk_hdr));
			return -1;
		}
		sizes[n++] = (uint32_t)v;
	}
	return n;
}

/* Control messages travel as the data does (copied in copy runs, else
 * remapped), so the counters of a remap run show no copying at all. */
static uint32_t control_mode;

/* Sends a small control message and waits for it to be taken. */
static int send_control(uint32_t dest, uint32_t magic, uint32_t run, uint32_t count)
{
	uint8_t *buf = msgq_alloc(sizeof(struct bulk_hdr));
	if (!buf)
		return MSGQ_E_FULL;
	struct bulk_hdr h = { magic, run, 0, count, sizeof(h), 0, 0 };
	memcpy(buf, &h, sizeof(h));
	int st;
	uint64_t until = time_ns() + 10000000000ull;
	while ((st = msg_send(dest, buf, sizeof(h), control_mode | MSG_IMMEDIATE)) == MSGQ_E_FULL && time_ns() < until)
		sleep_ms(1);
	msgq_free(buf, sizeof(h));
	return st;
}

static int sender(void)
{
	const char *peer = cmdline_get_str("peer", "");
	uint32_t dest = msgq_peer(peer);
	uint32_t sizes[MAX_RUNS];
	int runs = parse_sizes(sizes);
	uint32_t count = (uint32_t)cmdline_get_u64("count", 100);
	const char *mode_s = cmdline_get_str("mode", "adaptive"), *post_s = cmdline_get_str("post", "immediate");
	uint32_t mode = !strcmp(mode_s, "copy") ? MSG_COPY : !strcmp(mode_s, "remap") ? MSG_REMAP : MSG_ADAPTIVE;
	uint32_t post = !strcmp(post_s, "deferred") ? MSG_DEFERRED : MSG_IMMEDIATE;
	bool full = strcmp(cmdline_get_str("check", "full"), "header") != 0;
	if (!dest) {
		kprintf("msgbulk: \"%s\" is not a peer of this VM\n", peer);
		return FERRY_EXIT_BAD_ARGS;
	}
	if (runs <= 0 || count == 0)
		return FERRY_EXIT_BAD_ARGS;
	const struct msgq_config *cfg = msgq_config();
	int failures = 0;
	control_mode = mode == MSG_COPY ? MSG_COPY : MSG_REMAP;
	int st = msgq_wait_peer(dest, control_mode, 30000000000ull);
	if (st != MSGQ_OK) {
		kprintf("msgbulk: peer %s is not receiving (status %d)\n", peer, st);
		return FERRY_EXIT_FAIL;
	}
	for (int r = 0; r < runs; r++) {
		uint32_t len = sizes[r], pages = (len + cfg->page_size - 1) / cfg->page_size;
		if (pages > cfg->max_msg_pages) {
			kprintf("msgbulk: %u bytes is more than max_msg_pages (%u)\n", len, cfg->max_msg_pages);
			return FERRY_EXIT_BAD_ARGS;
		}
		unsigned nbufs = cfg->send_slots / pages;
		nbufs = nbufs > MAX_BUFS ? MAX_BUFS : nbufs;
		static uint8_t *buf[MAX_BUFS];
		static bool busy[MAX_BUFS];
		memset(busy, 0, sizeof(busy));
		for (unsigned k = 0; k < nbufs; k++)
			buf[k] = msgq_alloc(len);
		uint64_t retries = 0, remapped = 0, copied = 0;
		uint64_t t0 = time_ns();
		uint32_t seq = 0, done = 0;
		unsigned next = 0;
		static bool retry[MAX_BUFS];
		memset(retry, 0, sizeof(retry));
		unsigned nretry = 0;
		while (done < count) {
			/* Sends the receiver had no room for go again, after a
			 * pause that lets it return slots: re-sending at once
			 * would only be refused again. */
			if (nretry) {
				sleep_ns(100000);
				for (unsigned k = 0; k < nbufs; k++) {
					if (retry[k] && msgq_post(dest, buf[k], len, mode | post, k) == 0) {
						retry[k] = false;
						nretry--;
					}
				}
			}
			/* Start a message in a free buffer, if one is free. */
			if (seq < count && !busy[next]) {
				build(buf[next], len, (uint32_t)r, seq, count, full);
				if (msgq_post(dest, buf[next], len, mode | post, next) == 0) {
					busy[next] = true;
					next = (next + 1) % nbufs;
					seq++;
					continue;
				}
			}
			struct msgq_done d;
			bool reaped = false, was_full = false;
			while (msgq_reap(&d)) {
				reaped = true;
				if (d.status == MSGQ_OK) {
					busy[d.cookie] = false;
					done++;
					if (d.how == MSGQ_HOW_REMAPPED)
						remapped++;
					else
						copied++;
				} else if (d.status == MSGQ_E_FULL) {
					/* The receiver has not returned slots yet; the
					 * buffer is untouched, so it can go again. */
					retries++;
					was_full = true;
					retry[d.cookie] = true;
					nretry++;
				} else {
					kprintf("msgbulk: send of %u bytes failed with status %u\n", len, d.status);
					return FERRY_EXIT_FAIL;
				}
			}
			/* Nothing to do until the VMM or the receiver moves: give
			 * the CPU back rather than spin. */
			if (!was_full && !reaped && (seq == count || busy[next]))
				msgq_wait_sends(2000000);
		}
		uint64_t ns = time_ns() - t0;
		for (unsigned k = 0; k < nbufs; k++)
			msgq_free(buf[k], len);
		if (send_control(dest, BULK_END, (uint32_t)r, count) != MSGQ_OK) {
			kprintf("msgbulk: could not end run %d\n", r);
			failures++;
		}
		/* Integers only: the guest has no FPU state. */
		uint64_t bytes = (uint64_t)len * count, mbps_x10 = ns ? bytes * 10000 / ns : 0;
		uint64_t rate = ns ? (uint64_t)count * 1000000000ull / ns : 0;
		kprintf("msgbulk: result {\"size\": %u, \"count\": %u, \"mode\": \"%s\", \"post\": \"%s\", \"check\": \"%s\", "
			"\"ns\": %lu, \"mbps\": %lu.%lu, \"msgs_per_s\": %lu, \"remapped\": %lu, \"copied\": %lu, "
			"\"full_retries\": %lu}\n",
			len, count, mode_name(mode), post == MSG_IMMEDIATE ? "immediate" : "deferred", full ? "full" : "header",
			ns, mbps_x10 / 10, mbps_x10 % 10, rate, remapped, copied, retries);
	}
	if (send_control(dest, BULK_DONE, (uint32_t)runs, 0) != MSGQ_OK)
		failures++;
	return failures ? FERRY_EXIT_FAIL : 0;
}

struct run_state {
	uint32_t count, received, bad, dupes;
	uint8_t *seen;
	bool ended;
};

static int receiver(void)
{
	struct run_state runs[MAX_RUNS];
	memset(runs, 0, sizeof(runs));
	uint64_t timeout = cmdline_get_u64("timeout_ms", 60000) * 1000000ull;
	int errors = 0, nruns = -1;
	msgq_recv_irq(strcmp(cmdline_get_str("wait", "poll"), "irq") == 0);
	struct msg m;
	while (nruns < 0) {
		if (!msg_poll(&m)) {
			msgq_flush(); /* nothing pending: give slots back before waiting */
			if (!msg_recv(&m, timeout)) {
				kprintf("msgbulk: nothing received for %lu ms\n", (unsigned long)(timeout / 1000000));
				return FERRY_EXIT_FAIL;
			}
		}
		if (m.len == 1) { /* the sender's readiness probe */
			msg_release(&m);
			continue;
		}
		struct bulk_hdr h;
		memset(&h, 0, sizeof(h));
		memcpy(&h, m.data, m.len < sizeof(h) ? m.len : sizeof(h));
		struct run_state *rs = h.run < MAX_RUNS ? &runs[h.run] : NULL;
		if (h.magic == BULK_DONE) {
			nruns = (int)h.run;
		} else if (!rs || (h.magic != BULK_DATA && h.magic != BULK_END)) {
			kprintf("msgbulk: message from %u with a bad header\n", m.src);
			errors++;
		} else if (h.magic == BULK_END) {
			rs->ended = true;
			rs->count = h.count;
		} else {
			if (!rs->seen) {
				rs->count = h.count;
				rs->seen = kzalloc(h.count / 8 + 1);
			}
			bool ok = h.len == m.len && h.seq < rs->count;
			if (ok && h.full && m.len > sizeof(h))
				ok = checksum64(m.data + sizeof(h), m.len - sizeof(h)) == h.csum;
			if (!ok) {
				if (rs->bad++ < 4)
					kprintf("msgbulk: run %u message %u (%u bytes) is corrupt\n", h.run, h.seq, m.len);
			} else if (rs->seen[h.seq / 8] & (1u << (h.seq % 8))) {
				rs->dupes++;
			} else {
				rs->seen[h.seq / 8] |= (uint8_t)(1u << (h.seq % 8));
				rs->received++;
			}
		}
		msg_release(&m);
	}
	msgq_flush();
	for (int r = 0; r < nruns && r < MAX_RUNS; r++) {
		struct run_state *rs = &runs[r];
		bool ok = rs->ended && rs->received == rs->count && !rs->bad && !rs->dupes;
		kprintf("msgbulk: received run %d: %u of %u messages verified, %u corrupt, %u duplicated: %s\n", r,
			rs->received, rs->count, rs->bad, rs->dupes, ok ? "ok" : "FAILED");
		errors += !ok;
		kfree(rs->seen);
	}
	return errors ? FERRY_EXIT_FAIL : 0;
}

static int msgbulk_main(void)
{
	if (msgq_open() < 0) {
		kprintf("msgbulk: no msgq device\n");
		return FERRY_EXIT_FAIL;
	}
	const char *role = cmdline_get_str("role", "");
	if (!strcmp(role, "send"))
		return sender();
	if (!strcmp(role, "recv"))
		return receiver();
	kprintf("msgbulk: role=send or role=recv\n");
	return FERRY_EXIT_BAD_ARGS;
}

APP("msgbulk", "stream messages to a peer VM and verify them (role=send|recv)", msgbulk_main);
