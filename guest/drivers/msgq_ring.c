/* Direct rings of the msgq driver: see msgq_ring.h and include/ferry/msgq.h. */
#include "kernel.h"
#include "kstring.h"
#include "msgq_ring.h"
#include "paging.h"
#include "timer.h"
#include "x86.h"

static uint64_t load_acquire(const volatile uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store_release(volatile uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static uint64_t slots_for(uint32_t len)
{
	return (sizeof(struct msgq_ring_rec) + (uint64_t)len + MSGQ_RING_SLOT - 1) / MSGQ_RING_SLOT;
}

static void doorbell_write(uintptr_t doorbell)
{
	mmio_write16(doorbell, MSGQ_QUEUE_RING_DOORBELL);
}

/* A new wake token: never 0, never the last one. */
static uint32_t next_token(uint32_t *t)
{
	if (++*t == 0)
		*t = 1;
	return *t;
}

/* The first access to a page of the ring costs a fault in the host (on this
 * kind of host a few microseconds of emulation each); take them all now
 * rather than in the first messages. Reads only: the sender's old messages
 * may still be in there. */
static void touch(const uint8_t *p, uint64_t bytes)
{
	for (uint64_t off = 0; off < bytes; off += PAGE_SIZE)
		(void)*(const volatile uint8_t *)(p + off);
}

void ring_tx_init(struct tx_ring *r, uint32_t dest, uint8_t *data, const uint8_t *ack, uint32_t ring_size)
{
	memset(r, 0, sizeof(*r));
	r->dest = dest;
	r->hdr = (volatile struct msgq_ring_hdr *)data;
	r->slots = data + MSGQ_RING_HDR;
	r->ack = (volatile const struct msgq_ring_ack *)ack;
	r->nslots = (ring_size - MSGQ_RING_HDR) / MSGQ_RING_SLOT;
	r->max_msg = r->nslots / 2 * MSGQ_RING_SLOT - sizeof(struct msgq_ring_rec);
	/* Our area survives our resets: go on from what we published. */
	r->prod = load_acquire(&r->hdr->prod);
	r->cons = r->prod;
	r->hdr->wake_tx = 0;
	touch(data, ring_size);
}

void ring_rx_init(struct rx_ring *r, uint32_t src, const uint8_t *data, uint8_t *ack, uint32_t ring_size)
{
	memset(r, 0, sizeof(*r));
	r->src = src;
	r->hdr = (volatile const struct msgq_ring_hdr *)data;
	r->slots = data + MSGQ_RING_HDR;
	r->ack = (volatile struct msgq_ring_ack *)ack;
	r->nslots = (ring_size - MSGQ_RING_HDR) / MSGQ_RING_SLOT;
	r->max_msg = r->nslots / 2 * MSGQ_RING_SLOT - sizeof(struct msgq_ring_rec);
	touch(data, ring_size);
}

static void publish(struct rx_ring *r)
{
	r->published = r->cons;
	store_release(&r->ack->cons, r->cons);
}

void ring_rx_open(struct rx_ring *r)
{
	r->prod = r->head = r->cons = load_acquire(&r->hdr->prod);
	r->held_first = r->held_n = 0;
	r->ack->wake_rx = 0;
	publish(r);
	__atomic_store_n(&r->ack->open, MSGQ_RING_OPEN, __ATOMIC_RELEASE);
	r->open = true;
}

bool ring_fits(const struct tx_ring *r, uint32_t len)
{
	return len <= r->max_msg;
}

bool ring_is_open(const struct tx_ring *r)
{
	return !r->broken && __atomic_load_n(&r->ack->open, __ATOMIC_ACQUIRE) == MSGQ_RING_OPEN;
}

static void tx_broken(struct tx_ring *r, const char *what, uint64_t value)
{
	if (!r->broken)
		kprintf("msgq: ring to vm %u: bad %s %lu from the receiver; sending through ferry from now on\n", r->dest,
			what, (unsigned long)value);
	r->broken = true;
}

/* Room for `need` slots past prod, looking at the receiver's index again if
 * the last one we saw says no. */
static bool room(struct tx_ring *r, uint64_t need)
{
	if (r->nslots - (r->prod - r->cons) >= need)
		return true;
	uint64_t cons = load_acquire(&r->ack->cons);
	if (cons > r->prod || r->prod - cons > r->nslots) {
		tx_broken(r, "consumer index", cons);
		return false;
	}
	r->cons = cons;
	return r->nslots - (r->prod - cons) >= need;
}

static struct msgq_ring_rec *rec_at(uint8_t *slots, uint64_t nslots, uint64_t i)
{
	return (struct msgq_ring_rec *)(slots + (i % nslots) * MSGQ_RING_SLOT);
}

/* Whether a record of k slots can be written at prod now. A message never
 * wraps: if it would not fit before the end of the ring, a pad record fills
 * the rest first, as soon as there is room for the pad. */
static bool ready(struct tx_ring *r, uint64_t k)
{
	uint64_t p = r->prod % r->nslots;
	if (p + k > r->nslots) {
		if (!room(r, r->nslots - p))
			return false;
		*rec_at(r->slots, r->nslots, r->prod) = (struct msgq_ring_rec){ 0, MSGQ_RING_PAD, (uint32_t)r->prod, 0 };
		r->prod += r->nslots - p;
		store_release(&r->hdr->prod, r->prod);
	}
	return room(r, k);
}

bool ring_has_room(struct tx_ring *r, uint32_t len)
{
	return ready(r, slots_for(len));
}

int ring_send(struct tx_ring *r, const void *buf, uint32_t len, uint32_t cookie, uintptr_t doorbell,
	      uint64_t spin_ns, bool immediate)
{
	if (!ring_is_open(r))
		return RING_CLOSED;
	uint64_t k = slots_for(len), start = 0;
	while (!ready(r, k)) {
		if (r->broken)
			return RING_CLOSED;
		uint64_t now = time_ns();
		if (!start)
			start = now;
		if (now - start >= spin_ns) {
			r->full++;
			return RING_FULL;
		}
		cpu_relax();
	}
	struct msgq_ring_rec *rec = rec_at(r->slots, r->nslots, r->prod);
	*rec = (struct msgq_ring_rec){ len, 0, (uint32_t)r->prod, cookie };
	memcpy(rec + 1, buf, len);
	r->prod += k;
	store_release(&r->hdr->prod, r->prod);
	r->sent++;
	/* Immediate: the receiver's token is read after publishing with a
	 * full barrier between (it stores its token, then looks at prod
	 * again), so one of us sees the other. Deferred: no barrier; a token
	 * missed that way is answered by ferry within poll_us. */
	if (immediate)
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	uint32_t token = r->ack->wake_rx;
	if (token && token != r->rung) {
		r->rung = token;
		r->doorbells++;
		doorbell_write(doorbell);
	}
	return RING_SENT;
}

bool ring_want_room(struct tx_ring *r, uint32_t len)
{
	r->hdr->wake_tx = next_token(&r->token);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !ring_is_open(r) || ring_has_room(r, len);
}

void ring_room_done(struct tx_ring *r)
{
	r->hdr->wake_tx = 0;
}

static bool rx_broken(struct rx_ring *r, const char *what, uint64_t value)
{
	if (!r->broken)
		kprintf("msgq: ring from vm %u: bad %s %lu; not reading it any more\n", r->src, what,
			(unsigned long)value);
	r->broken = true;
	/* The sender sees it closed and sends through ferry. */
	__atomic_store_n(&r->ack->open, 0, __ATOMIC_RELEASE);
	return false;
}

bool ring_pending(const struct rx_ring *r)
{
	return r->open && !r->broken && load_acquire(&r->hdr->prod) != r->head;
}

/* Gives back the slots up to the oldest record still held. The sender sees
 * them in steps of a sixteenth of the ring, or at once when we have read
 * everything we know of (it may be waiting) or it sleeps for room: each
 * store to the index costs both sides a cache miss, as each load of it by
 * a sender short of room does. */
static void advance(struct rx_ring *r, uintptr_t doorbell)
{
	uint64_t cons = r->cons;
	while (r->held_n && r->held[r->held_first].released) {
		cons = r->held[r->held_first].pos + r->held[r->held_first].k;
		r->held_first = (r->held_first + 1) % RING_HOLD;
		r->held_n--;
	}
	if (!r->held_n)
		cons = r->head; /* pads read past the last record go back too */
	if (cons == r->cons)
		return;
	r->cons = cons;
	/* A sender asleep for room is woken at once: it takes hundreds of
	 * microseconds to wake (its halt ends in interpreted ring 0), long
	 * enough for us to free much more meanwhile; waiting for more room
	 * first only left us idle once the ring was empty. No barrier before
	 * looking (one per message would cost more than the message): a token
	 * missed in the race is answered by ferry within poll_us. */
	uint32_t token = r->hdr->wake_tx;
	bool asleep = token && token != r->rung;
	if (!asleep && cons - r->published < r->nslots / 16 && r->head != r->prod)
		return;
	publish(r);
	if (asleep) {
		r->rung = token;
		r->doorbells++;
		doorbell_write(doorbell);
	}
}

bool ring_poll(struct rx_ring *r, struct msg *m)
{
	if (!r->open || r->broken || r->held_n == RING_HOLD)
		return false;
	for (;;) {
		if (r->head == r->prod) {
			uint64_t prod = load_acquire(&r->hdr->prod);
			if (prod == r->head)
				return false;
			if (prod < r->head || prod - r->cons > r->nslots)
				return rx_broken(r, "producer index", prod);
			r->prod = prod;
		}
		uint64_t p = r->head % r->nslots;
		/* One read of each field: the sender can write them any time. */
		const volatile struct msgq_ring_rec *h = (const volatile struct msgq_ring_rec *)(r->slots +
												   p * MSGQ_RING_SLOT);
		struct msgq_ring_rec rec = { h->len, h->flags, h->pos, h->cookie };
		if (rec.pos != (uint32_t)r->head)
			return rx_broken(r, "record position", rec.pos);
		bool pad = rec.flags & MSGQ_RING_PAD;
		if (!pad && (rec.len == 0 || rec.len > r->max_msg))
			return rx_broken(r, "message length", rec.len);
		uint64_t k = pad ? r->nslots - p : slots_for(rec.len);
		if (p + k > r->nslots || k > r->prod - r->head)
			return rx_broken(r, "record size", k);
		if (pad) {
			r->head += k;
			if (!r->held_n) {
				r->cons = r->head;
				publish(r);
			}
			continue;
		}
		unsigned i = (r->held_first + r->held_n) % RING_HOLD;
		r->held[i].pos = r->head;
		r->held[i].k = (uint32_t)k;
		r->held[i].released = false;
		r->held_n++;
		*m = (struct msg){ r->src, rec.len, MSGQ_RECV_RING, rec.cookie, (uint32_t)r->head, (uint32_t)k,
				   r->slots + p * MSGQ_RING_SLOT + sizeof(struct msgq_ring_rec), r };
		r->head += k;
		r->received++;
		return true;
	}
}

void ring_release(struct rx_ring *r, uint64_t pos, uintptr_t doorbell)
{
	for (unsigned n = 0; n < r->held_n; n++) {
		unsigned i = (r->held_first + n) % RING_HOLD;
		if ((uint32_t)r->held[i].pos == (uint32_t)pos && !r->held[i].released) {
			r->held[i].released = true;
			break;
		}
	}
	advance(r, doorbell);
}

bool ring_want_msgs(struct rx_ring *r)
{
	if (!r->open || r->broken)
		return false;
	r->ack->wake_rx = next_token(&r->token);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ring_pending(r);
}

void ring_sleep_done(struct rx_ring *r)
{
	if (r->open)
		r->ack->wake_rx = 0;
}
