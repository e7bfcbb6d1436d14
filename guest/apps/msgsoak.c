/* msgsoak: every VM sends numbered messages to each of its msgq peers and
 * checks what it receives, for long runs in which peers go and come back
 * (ferry's "restart": "on-failure", `ferry ctl remove`/`add`, make soak).
 *
 *   ms=N [interval_us=U] [size=B] [drain_ms=D] [expect_down=0|1] [stop_after_down=N]
 *
 * For ms milliseconds, every interval_us (default 2000) the next peer in
 * turn gets a message of size bytes (default 64): a header with this run's
 * incarnation (a random number: a restarted VM is a new sender), the
 * sequence number of the message to that peer, and a checksum of a pattern
 * seeded by both. The number goes up only when the send succeeded: a
 * delivered message must arrive exactly once. dest_down (the peer stopped,
 * or is being restarted) and full are counted, not numbered.
 *
 * The receiver keeps, per source, its incarnation and the next number it
 * expects: a gap is a lost message, a number seen before a duplicate. A
 * source's first message from a new incarnation starts its count (this VM
 * may have come up later than it). At the end each VM sends every peer an
 * END with the count delivered to it, drains for drain_ms (default 1500),
 * and prints one line per peer and per source:
 *   msgsoak: to NAME id N: delivered D dest_down X full F after_down A end ok|no
 *   msgsoak: from ID inc I: received R lost L dup U bad B end C|none
 * then "msgsoak: result {...}" with the totals. It exits 1 if anything was
 * lost, duplicated or corrupt, or an END's count disagrees with what arrived
 * from that incarnation; with expect_down=1 also unless some peer took
 * messages, was then down, and took messages again (after_down counts
 * those later deliveries). stop_after_down=N ends the sending early, once
 * N messages were delivered after such a return. */
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "timer.h"
#include "x86.h"

#include <ferry/debug_exit.h>

#define SOAK_MAGIC 0x4b414f53u  /* "SOAK" */
#define SOAK_END   0x444e4553u  /* "SEND": the last message, count in seq */
#define MAX_SRC 64

struct soak_hdr {
	uint32_t magic;
	uint32_t len;
	uint64_t inc;
	uint64_t seq;
	uint64_t sum;   /* of the pattern after the header */
};

struct to_peer {
	uint32_t id;
	uint64_t seq, down, full, other, after_down;
	bool was_down, end_sent;
};

struct from_src {
	uint32_t id;
	uint64_t inc, next, received, lost, dup, bad, end;
	bool have_end;
};

static struct to_peer to[MSGQ_MAX_PEERS];
static struct from_src from[MAX_SRC];
static unsigned nr_to, nr_from;
static uint64_t my_inc;

static uint64_t pattern_word(uint64_t inc, uint64_t seq, uint64_t i)
{
	uint64_t x = inc ^ (seq * 0x9e3779b97f4a7c15ull) ^ (i * 0xbf58476d1ce4e5b9ull);
	x ^= x >> 31;
	return x * 0x94d049bb133111ebull;
}

static void fill(uint8_t *buf, uint32_t len, uint32_t magic, uint64_t seq)
{
	struct soak_hdr *h = (struct soak_hdr *)buf;
	uint64_t *w = (uint64_t *)(buf + sizeof(*h)), sum = 0;
	for (uint64_t i = 0; i < (len - sizeof(*h)) / 8; i++) {
		w[i] = pattern_word(my_inc, seq, i);
		sum += w[i];
	}
	h->magic = magic;
	h->len = len;
	h->inc = my_inc;
	h->seq = seq;
	h->sum = sum;
}

static struct from_src *source(uint32_t id)
{
	for (unsigned i = 0; i < nr_from; i++)
		if (from[i].id == id)
			return &from[i];
	if (nr_from == MAX_SRC)
		return NULL;
	memset(&from[nr_from], 0, sizeof(from[0]));
	from[nr_from].id = id;
	return &from[nr_from++];
}

static void check(const struct msg *m)
{
	struct from_src *s = source(m->src);
	if (!s)
		return;
	const struct soak_hdr *h = (const struct soak_hdr *)m->data;
	if (m->len < sizeof(*h) || h->len != m->len || (h->magic != SOAK_MAGIC && h->magic != SOAK_END)) {
		s->bad++;
		return;
	}
	if (h->inc != s->inc) {
		/* A new sender (or the first we hear of it): its count starts here. */
		s->inc = h->inc;
		s->next = h->magic == SOAK_END ? 0 : h->seq;
		s->received = 0;
		s->have_end = false;
	}
	if (h->magic == SOAK_END) {
		s->have_end = true;
		s->end = h->seq;
		return;
	}
	const uint64_t *w = (const uint64_t *)(m->data + sizeof(*h));
	uint64_t sum = 0;
	for (uint64_t i = 0; i < (m->len - sizeof(*h)) / 8; i++)
		sum += w[i];
	if (sum != h->sum) {
		s->bad++;
		return;
	}
	if (h->seq == s->next) {
		s->next++;
		s->received++;
	} else if (h->seq > s->next) {
		s->lost += h->seq - s->next;
		s->next = h->seq + 1;
		s->received++;
	} else {
		s->dup++;
	}
}

static void drain(uint64_t timeout_ns)
{
	struct msg m;
	while (msg_poll(&m) || (timeout_ns && msg_recv(&m, timeout_ns))) {
		check(&m);
		msg_release(&m);
		timeout_ns = 0;
	}
	msgq_flush();
}

static int send_one(struct to_peer *p, uint8_t *buf, uint32_t len, uint32_t magic)
{
	fill(buf, len, magic, p->seq);
	int st = msg_send(p->id, buf, len, MSG_ADAPTIVE | MSG_IMMEDIATE);
	if (st == MSGQ_OK) {
		if (p->was_down)
			p->after_down++;
		if (magic == SOAK_MAGIC)
			p->seq++;
	} else if (st == MSGQ_E_DEST_DOWN || st == MSGQ_E_NO_DEST) {
		p->down++;
		p->was_down |= p->seq > 0; /* down after it was up: it went away */
	} else if (st == MSGQ_E_FULL) {
		p->full++;
	} else {
		p->other++;
	}
	return st;
}

static uint64_t after_down_total(void)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < nr_to; i++)
		n += to[i].after_down;
	return n;
}

static int msgsoak_main(void)
{
	uint64_t ms = cmdline_get_u64("ms", 5000), interval_ns = cmdline_get_u64("interval_us", 2000) * 1000;
	uint64_t drain_ns = cmdline_get_u64("drain_ms", 1500) * 1000000ull;
	uint32_t len = (uint32_t)cmdline_get_u64("size", 64);
	bool expect_down = cmdline_get_bool("expect_down", false);
	uint64_t stop_after_down = cmdline_get_u64("stop_after_down", 0);
	if (len < sizeof(struct soak_hdr) || len > 65536 || msgq_open() < 0) {
		kprintf("msgsoak: needs a msgq device and 32 <= size <= 65536\n");
		return FERRY_EXIT_BAD_ARGS;
	}
	len &= ~7u;
	const struct msgq_config *cfg = msgq_config();
	for (unsigned i = 0; i < cfg->nr_peers && nr_to < MSGQ_MAX_PEERS; i++)
		to[nr_to++].id = cfg->peers[i].vm_id;
	uint8_t *buf = msgq_alloc(len);
	if (!buf)
		return FERRY_EXIT_FAIL;
	my_inc = rdtsc() * 0x9e3779b97f4a7c15ull ^ ((uint64_t)msgq_self() << 56);
	kprintf("msgsoak: %u peers, a %u-byte message every %lu us for %lu ms\n", nr_to, len, interval_ns / 1000,
		ms);
	uint64_t end = time_ns() + ms * 1000000ull;
	unsigned next = 0;
	while (time_ns() < end && !(stop_after_down && after_down_total() >= stop_after_down)) {
		if (nr_to)
			send_one(&to[next++ % nr_to], buf, len, SOAK_MAGIC);
		drain(interval_ns);
	}
	/* END to every peer: retried while its queue is full, given up once it
	 * is down (a peer that is away has nothing to compare). */
	for (unsigned i = 0; i < nr_to; i++) {
		uint64_t until = time_ns() + 2000000000ull;
		int st;
		while ((st = send_one(&to[i], buf, len, SOAK_END)) == MSGQ_E_FULL && time_ns() < until)
			drain(1000000);
		to[i].end_sent = st == MSGQ_OK;
	}
	uint64_t drain_end = time_ns() + drain_ns;
	while (time_ns() < drain_end)
		drain(drain_end - time_ns());

	uint64_t delivered = 0, down = 0, after_down = 0, received = 0, lost = 0, dup = 0, bad = 0, mismatch = 0;
	for (unsigned i = 0; i < nr_to; i++) {
		struct to_peer *p = &to[i];
		const char *name = "?";
		for (unsigned k = 0; k < cfg->nr_peers; k++)
			if (cfg->peers[k].vm_id == p->id)
				name = cfg->peers[k].name;
		kprintf("msgsoak: to %s id %u: delivered %lu dest_down %lu full %lu after_down %lu end %s\n", name,
			p->id, p->seq, p->down, p->full, p->after_down, p->end_sent ? "ok" : "no");
		delivered += p->seq;
		down += p->down;
		after_down += p->after_down;
	}
	for (unsigned i = 0; i < nr_from; i++) {
		struct from_src *s = &from[i];
		/* Every message of this incarnation from its first one seen on. */
		bool ok = !s->have_end || s->next == s->end;
		mismatch += !ok;
		kprintf("msgsoak: from %u inc %lx: received %lu lost %lu dup %lu bad %lu end ", s->id, s->inc,
			s->received, s->lost, s->dup, s->bad);
		if (s->have_end)
			kprintf("%lu%s\n", s->end, ok ? "" : " MISMATCH");
		else
			kprintf("none\n");
		received += s->received;
		lost += s->lost;
		dup += s->dup;
		bad += s->bad;
	}
	kprintf("msgsoak: result {\"delivered\": %lu, \"received\": %lu, \"lost\": %lu, \"dup\": %lu, \"bad\": %lu, "
		"\"end_mismatch\": %lu, \"dest_down\": %lu, \"after_down\": %lu}\n",
		delivered, received, lost, dup, bad, mismatch, down, after_down);
	if (lost || dup || bad || mismatch)
		return FERRY_EXIT_FAIL;
	if (expect_down && !after_down) {
		kprintf("msgsoak: expected a peer to go down and come back; none did\n");
		return FERRY_EXIT_FAIL;
	}
	return FERRY_EXIT_OK;
}

APP("msgsoak", "numbered messages to every msgq peer, checked for loss and duplicates (restarts, soak)",
    msgsoak_main);
