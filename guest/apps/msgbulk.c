/* msgbulk: streams messages of several sizes to another VM and verifies
 * every one at the receiver.
 *
 * A run sends `count` messages, or with ms=N as many as it can in N ms (at
 * most `count`): runs of one length then compare transports of very
 * different speeds without one taking for ever or another ending before the
 * measurement means anything.
 *
 *   role=send peer=NAME sizes=64,4K,64K,2M count=N [ms=N] mode=adaptive|copy|remap
 *             post=immediate|deferred check=full|header [transport=msgq|ivshmem]
 *   role=recv [timeout_ms=N] [wait=poll|irq] [transport=msgq|ivshmem]
 *
 * transport=msgq (the default) uses ferry's msgq device. The sender first
 * retries a one-byte message until the receiver's driver is up. The
 * receiver spins with receive interrupts off (wait=poll, the default:
 * fastest) or halts until an interrupt (wait=irq).
 *
 * transport=ivshmem uses a ring in memory shared with QEMU's ivshmem
 * (include/ivshmem.h): the sender builds each message in a private buffer
 * and copies it into the ring, the receiver polls the ring and reads the
 * message in place. No VMM, no remapping, no sender id: mode is copy, post
 * and peer mean nothing. It is the baseline msgq is compared with.
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
#include "ivshmem.h"
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
#define IVSHMEM_SEND_TIMEOUT_NS 10000000000ull  /* a receiver that takes nothing for this long is gone */

struct bulk_hdr {
	uint32_t magic, run, seq, count;
	uint32_t len, full;
	uint64_t csum;
};

static bool ivs;  /* transport=ivshmem */

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
static bool send_control(uint32_t dest, uint32_t magic, uint32_t run, uint32_t count)
{
	struct bulk_hdr h = { magic, run, 0, count, sizeof(h), 0, 0 };
	if (ivs)
		return ivshmem_msg_send(&h, sizeof(h), IVSHMEM_SEND_TIMEOUT_NS) == 0;
	uint8_t *buf = msgq_alloc(sizeof(struct bulk_hdr));
	if (!buf)
		return false;
	memcpy(buf, &h, sizeof(h));
	int st;
	uint64_t until = time_ns() + 10000000000ull;
	while ((st = msg_send(dest, buf, sizeof(h), control_mode | MSG_IMMEDIATE)) == MSGQ_E_FULL && time_ns() < until)
		sleep_ms(1);
	msgq_free(buf, sizeof(h));
	return st == MSGQ_OK;
}

/* What one run (one message size) measured. */
struct run_result {
	uint64_t ns, remapped, copied, ring, retries;
	uint32_t count;    /* messages sent */
};

/* One run over msgq: as many messages in flight as the send region holds.
 * Free buffers are reused last-freed first, so that a transport that gives
 * them back at once (a direct ring) keeps building in the same warm ones. */
static int send_run_msgq(uint32_t dest, uint32_t len, uint32_t r, uint32_t count, uint64_t ms, uint32_t flags,
			 bool full, struct run_result *res)
{
	const struct msgq_config *cfg = msgq_config();
	uint32_t pages = (len + cfg->page_size - 1) / cfg->page_size;
	if (pages > cfg->max_msg_pages) {
		kprintf("msgbulk: %u bytes is more than max_msg_pages (%u)\n", len, cfg->max_msg_pages);
		return FERRY_EXIT_BAD_ARGS;
	}
	unsigned nbufs = cfg->send_slots / pages;
	nbufs = nbufs > MAX_BUFS ? MAX_BUFS : nbufs;
	static uint8_t *buf[MAX_BUFS];
	static unsigned free_buf[MAX_BUFS];
	static bool retry[MAX_BUFS];
	unsigned nfree = 0, nretry = 0;
	for (unsigned k = nbufs; k-- > 0;) {
		buf[k] = msgq_alloc(len);
		free_buf[nfree++] = k;
	}
	memset(retry, 0, sizeof(retry));
	uint64_t t0 = time_ns(), deadline = ms ? t0 + ms * 1000000ull : 0;
	uint32_t seq = 0, done = 0, limit = count;
	bool built = false;
	while (done < limit) {
		if (deadline && seq < limit && !built && time_ns() >= deadline)
			limit = seq; /* time is up: wait for what is in flight */
		/* Sends the receiver had no room for go again, after a
		 * pause that lets it return slots: re-sending at once
		 * would only be refused again. */
		if (nretry) {
			sleep_ns(100000);
			for (unsigned k = 0; k < nbufs; k++) {
				if (retry[k] && msgq_post(dest, buf[k], len, flags, k) == 0) {
					retry[k] = false;
					nretry--;
				}
			}
		}
		/* Start a message in a free buffer, if one is free (built once,
		 * however often the post has to be tried). */
		bool posted = false, post_failed = false;
		if (seq < limit && nfree) {
			unsigned k = free_buf[nfree - 1];
			if (!built)
				build(buf[k], len, r, seq, count, full);
			built = true;
			if (msgq_post(dest, buf[k], len, flags, k) == 0) {
				nfree--;
				built = false;
				seq++;
				posted = true;
			} else {
				post_failed = true; /* the send queue, or a direct ring, is full */
			}
		}
		struct msgq_done d;
		bool reaped = false, was_full = false;
		while (msgq_reap(&d)) {
			reaped = true;
			if (d.cookie >= nbufs) {
				kprintf("msgbulk: completion for buffer %u of %u\n", d.cookie, nbufs);
				return FERRY_EXIT_FAIL;
			}
			if (d.status == MSGQ_OK) {
				free_buf[nfree++] = d.cookie;
				done++;
				if (d.how == MSGQ_HOW_REMAPPED)
					res->remapped++;
				else if (d.how == MSGQ_HOW_RING)
					res->ring++;
				else
					res->copied++;
			} else if (d.status == MSGQ_E_FULL) {
				/* The receiver has not returned slots yet; the
				 * buffer is untouched, so it can go again. */
				res->retries++;
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
		if (!posted && !was_full && !reaped && (seq == limit || !nfree || post_failed))
			msgq_wait_sends(2000000);
	}
	res->ns = time_ns() - t0;
	res->count = limit;
	for (unsigned k = 0; k < nbufs; k++)
		msgq_free(buf[k], len);
	return 0;
}

/* One run over the ivshmem ring: each message is built in a private buffer
 * and copied into the ring, as a copying transport must. */
static int send_run_ivshmem(uint32_t len, uint32_t r, uint32_t count, uint64_t ms, bool full, struct run_result *res)
{
	if (len > ivshmem_msg_max()) {
		kprintf("msgbulk: %u bytes is more than the ring takes (%u)\n", len, ivshmem_msg_max());
		return FERRY_EXIT_BAD_ARGS;
	}
	uint8_t *buf = kmalloc(len);
	if (!buf)
		return FERRY_EXIT_FAIL;
	uint64_t waits = ivshmem_msg_full_waits(), t0 = time_ns(), deadline = ms ? t0 + ms * 1000000ull : 0;
	int err = 0;
	uint32_t seq = 0;
	for (; seq < count && !err && (!deadline || time_ns() < deadline); seq++) {
		build(buf, len, r, seq, count, full);
		if (ivshmem_msg_send(buf, len, IVSHMEM_SEND_TIMEOUT_NS) != 0) {
			kprintf("msgbulk: the receiver stopped taking messages (run %u, message %u)\n", r, seq);
			err = FERRY_EXIT_FAIL;
		}
	}
	res->ns = time_ns() - t0;
	res->count = seq;
	res->copied = seq;
	res->retries = ivshmem_msg_full_waits() - waits;
	kfree(buf);
	return err;
}

/* What the msgq driver counted: how much took the direct rings, and how
 * often they were full or rang. */
static void print_driver_stats(void)
{
	struct msgq_stats st;
	if (ivs || !msgq_present())
		return;
	msgq_stats(&st);
	kprintf("msgbulk: driver: posted %lu, received %lu, ring sends %lu, ring receives %lu, ring full %lu, "
		"ring doorbells %lu\n", st.posted, st.received, st.ring_sent, st.ring_received, st.ring_full,
		st.ring_doorbells);
}

/* Finds the peer and waits until its driver takes messages. */
static int connect_msgq(uint32_t mode, uint32_t *dest)
{
	const char *peer = cmdline_get_str("peer", "");
	*dest = msgq_peer(peer);
	if (!*dest) {
		kprintf("msgbulk: \"%s\" is not a peer of this VM\n", peer);
		return FERRY_EXIT_BAD_ARGS;
	}
	control_mode = mode == MSG_COPY ? MSG_COPY : MSG_REMAP;
	int st = msgq_wait_peer(*dest, control_mode, 30000000000ull);
	if (st != MSGQ_OK) {
		kprintf("msgbulk: peer %s is not receiving (status %d)\n", peer, st);
		return FERRY_EXIT_FAIL;
	}
	return 0;
}

static int sender(void)
{
	uint32_t sizes[MAX_RUNS];
	int runs = parse_sizes(sizes);
	uint32_t count = (uint32_t)cmdline_get_u64("count", 100);
	uint64_t ms = cmdline_get_u64("ms", 0);
	const char *mode_s = cmdline_get_str("mode", ivs ? "copy" : "adaptive");
	const char *post_s = cmdline_get_str("post", "immediate");
	uint32_t mode = !strcmp(mode_s, "copy") ? MSG_COPY : !strcmp(mode_s, "remap") ? MSG_REMAP : MSG_ADAPTIVE;
	uint32_t post = !strcmp(post_s, "deferred") ? MSG_DEFERRED : MSG_IMMEDIATE;
	bool full = strcmp(cmdline_get_str("check", "full"), "header") != 0;
	if (runs <= 0 || count == 0)
		return FERRY_EXIT_BAD_ARGS;
	if (ivs && mode != MSG_COPY) {
		kprintf("msgbulk: ivshmem can only copy (mode=copy)\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	uint32_t dest = 0;
	int err = ivs ? (ivshmem_msg_open(IVSHMEM_INITIATOR, 30000000000ull) ? FERRY_EXIT_FAIL : 0)
		      : connect_msgq(mode, &dest);
	if (err)
		return err;
	int failures = 0;
	for (int r = 0; r < runs; r++) {
		uint32_t len = sizes[r];
		struct run_result res = { 0, 0, 0, 0, 0, 0 };
		err = ivs ? send_run_ivshmem(len, (uint32_t)r, count, ms, full, &res)
			  : send_run_msgq(dest, len, (uint32_t)r, count, ms, mode | post, full, &res);
		if (err)
			return err;
		if (!send_control(dest, BULK_END, (uint32_t)r, res.count)) {
			kprintf("msgbulk: could not end run %d\n", r);
			failures++;
		}
		/* Integers only: the guest has no FPU state. */
		uint64_t ns = res.ns, bytes = (uint64_t)len * res.count, mbps_x10 = ns ? bytes * 10000 / ns : 0;
		uint64_t rate = ns ? (uint64_t)res.count * 1000000000ull / ns : 0;
		kprintf("msgbulk: result {\"size\": %u, \"count\": %u, \"transport\": \"%s\", \"mode\": \"%s\", "
			"\"post\": \"%s\", \"check\": \"%s\", \"ns\": %lu, \"mbps\": %lu.%lu, \"msgs_per_s\": %lu, "
			"\"remapped\": %lu, \"copied\": %lu, \"ring\": %lu, \"full_retries\": %lu}\n",
			len, res.count, ivs ? "ivshmem" : "msgq", mode_name(mode),
			ivs ? "none" : post == MSG_IMMEDIATE ? "immediate" : "deferred", full ? "full" : "header", ns,
			mbps_x10 / 10, mbps_x10 % 10, rate, res.remapped, res.copied, res.ring, res.retries);
	}
	if (!send_control(dest, BULK_DONE, (uint32_t)runs, 0))
		failures++;
	if (ivs)
		ivshmem_msg_close();
	print_driver_stats();
	return failures ? FERRY_EXIT_FAIL : 0;
}

struct run_state {
	uint32_t count, max, received, bad, dupes;
	uint8_t *seen;
	bool ended;
};

/* The receiver's next message, from either transport. */
static bool next_msg(struct msg *m, uint64_t timeout)
{
	if (ivs)
		return ivshmem_msg_recv(m, timeout);
	if (msg_poll(m))
		return true;
	msgq_flush(); /* nothing pending: give slots back before waiting */
	return msg_recv(m, timeout);
}

static void release_msg(struct msg *m)
{
	if (ivs)
		ivshmem_msg_release(m);
	else
		msg_release(m);
}

static int receiver(void)
{
	struct run_state runs[MAX_RUNS];
	memset(runs, 0, sizeof(runs));
	uint64_t timeout = cmdline_get_u64("timeout_ms", 60000) * 1000000ull;
	int errors = 0, nruns = -1;
	if (ivs && ivshmem_msg_open(IVSHMEM_RESPONDER, timeout) < 0)
		return FERRY_EXIT_FAIL;
	if (!ivs)
		msgq_recv_irq(strcmp(cmdline_get_str("wait", "poll"), "irq") == 0);
	struct msg m;
	while (nruns < 0) {
		if (!next_msg(&m, timeout)) {
			kprintf("msgbulk: nothing received for %lu ms\n", (unsigned long)(timeout / 1000000));
			return FERRY_EXIT_FAIL;
		}
		if (m.len == 1) { /* the sender's readiness probe (msgq) */
			release_msg(&m);
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
				/* Data carry the most the run may send; END
				 * says how many it did (a timed run). */
				if (!rs->ended)
					rs->count = h.count;
				rs->seen = kzalloc(h.count / 8 + 1);
				rs->max = h.count;
			}
			bool ok = rs->seen && h.len == m.len && h.seq < rs->count && h.seq < rs->max;
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
		release_msg(&m);
	}
	if (ivs)
		ivshmem_msg_close();
	else
		msgq_flush();
	for (int r = 0; r < nruns && r < MAX_RUNS; r++) {
		struct run_state *rs = &runs[r];
		bool ok = rs->ended && rs->received == rs->count && !rs->bad && !rs->dupes;
		kprintf("msgbulk: received run %d: %u of %u messages verified, %u corrupt, %u duplicated: %s\n", r,
			rs->received, rs->count, rs->bad, rs->dupes, ok ? "ok" : "FAILED");
		errors += !ok;
		kfree(rs->seen);
	}
	print_driver_stats();
	return errors ? FERRY_EXIT_FAIL : 0;
}

static int msgbulk_main(void)
{
	const char *transport = cmdline_get_str("transport", "msgq");
	ivs = !strcmp(transport, "ivshmem");
	if (!ivs && strcmp(transport, "msgq")) {
		kprintf("msgbulk: transport=msgq or transport=ivshmem\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	if (!ivs && msgq_open() < 0) {
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
