/* The message switch without KVM: pages move between two endpoints' windows
 * (checked through ferry's own view of each window), policy and capacity
 * refusals deliver nothing, and a page only reaches another VM zeroed
 * unless it holds that VM's own data. */
#include "helpers.h"

#include <string.h>
#include <sys/mman.h>

#include "host/msgq_switch.h"
#include "vmm/log.h"

#define PS 4096u

static struct msgq_switch *sw;
static struct msgq_endpoint *a, *b, *c;
static struct msgq_recv_hdr got[8];
static unsigned nr_got;
static bool b_has_buffers;

static bool b_reserved;      /* a receive buffer is taken and not yet used */
static unsigned isolation_lost_calls;

static bool reserve(struct msgq_endpoint *ep)
{
	(void)ep;
	assert_false(b_reserved);
	b_reserved = b_has_buffers;
	return b_has_buffers;
}

static void unreserve(struct msgq_endpoint *ep)
{
	(void)ep;
	assert_true(b_reserved);
	b_reserved = false;
}

static void deliver(struct msgq_endpoint *ep, const struct msgq_recv_hdr *h)
{
	(void)ep;
	assert_true(b_reserved);
	b_reserved = false;
	got[nr_got++ % 8] = *h;
}

static void isolation_lost(struct msgq_endpoint *ep, const char *why)
{
	(void)ep;
	(void)why;
	isolation_lost_calls++;
}

static const struct msgq_endpoint_ops ops = {
	.reserve = reserve, .unreserve = unreserve, .deliver = deliver, .isolation_lost = isolation_lost,
};
static atomic_bool running;

static struct msgq_endpoint *endpoint(uint32_t id, const char *name)
{
	char err[256];
	struct msgq_endpoint *ep = msgq_endpoint_create(sw, id, name, 8, 8, 4, err, sizeof(err));
	if (!ep)
		fail_msg("%s", err);
	ep->ops = &ops;
	ep->up = true;
	ep->vm_stopping = &running;
	return ep;
}

static int setup(void **state)
{
	(void)state;
	char err[256];
	log_threshold = LOG_ERROR;
	sw = msgq_switch_create(3 * 16, 8, PS, 1024, err, sizeof(err));
	if (!sw)
		return -1;
	a = endpoint(1, "a");
	b = endpoint(2, "b");
	c = endpoint(3, "c");
	a->peers[a->nr_peers++] = 2;
	a->peers[a->nr_peers++] = 3;
	c->peers[c->nr_peers++] = 2;
	nr_got = 0;
	b_has_buffers = true;
	b_reserved = false;
	isolation_lost_calls = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	msgq_endpoint_destroy(a);
	msgq_endpoint_destroy(b);
	msgq_endpoint_destroy(c);
	msgq_switch_destroy(sw);
	return 0;
}

static uint8_t *send_slot(struct msgq_endpoint *ep, uint32_t s)
{
	return ep->hva + (uint64_t)s * PS;
}

static const uint8_t *recv_slot(struct msgq_endpoint *ep, uint32_t r)
{
	return ep->hva + (uint64_t)(ep->send_slots + r) * PS;
}

static int send(struct msgq_endpoint *from, uint32_t dest, uint32_t mode, uint32_t slot, uint32_t len, uint8_t *how)
{
	pthread_mutex_lock(&sw->lock);
	int r = msgq_switch_send(from, dest, mode, slot, len, 77, how);
	pthread_mutex_unlock(&sw->lock);
	return r;
}

static void remap_moves_the_page(void **state)
{
	(void)state;
	memset(send_slot(a, 2), 'M', 2 * PS);
	uint8_t how;
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 2, 2 * PS - 100, &how), MSGQ_OK);
	assert_int_equal(how, MSGQ_HOW_REMAPPED);
	assert_int_equal(nr_got, 1);
	assert_int_equal(got[0].src, 1);
	assert_int_equal(got[0].len, 2 * PS - 100);
	assert_int_equal(got[0].nr_pages, 2);
	assert_int_equal(got[0].cookie, 77);
	assert_true(got[0].flags & MSGQ_RECV_REMAPPED);
	/* The receiver sees the message; the sender's slot no longer does. */
	assert_int_equal(recv_slot(b, got[0].slot)[0], 'M');
	assert_int_equal(recv_slot(b, got[0].slot + 1)[PS - 1], 'M');
	assert_int_equal(send_slot(a, 2)[0], 0);
	/* And writing there afterwards does not reach the receiver. */
	memset(send_slot(a, 2), 'X', PS);
	assert_int_equal(recv_slot(b, got[0].slot)[0], 'M');
	assert_int_equal(atomic_load(&a->ctr.pages_remapped), 2);
	assert_int_equal(atomic_load(&a->ctr.bytes_copied), 0);
	assert_int_equal(atomic_load(&a->ctr.sent), 1);
	assert_int_equal(atomic_load(&b->ctr.received), 1);
}

static void small_messages_are_copied(void **state)
{
	(void)state;
	strcpy((char *)send_slot(a, 0), "small");
	uint8_t how;
	/* Adaptive, below the 1024-byte threshold of this switch. */
	assert_int_equal(send(a, 2, MSGQ_SEND_ADAPTIVE, 0, 6, &how), MSGQ_OK);
	assert_int_equal(how, MSGQ_HOW_COPIED);
	assert_string_equal((const char *)recv_slot(b, got[0].slot), "small");
	assert_string_equal((const char *)send_slot(a, 0), "small"); /* the sender keeps its copy */
	assert_int_equal(recv_slot(b, got[0].slot)[100], 0);         /* nothing else of anyone's */
	assert_int_equal(atomic_load(&a->ctr.bytes_copied), 6);
	assert_int_equal(atomic_load(&a->ctr.pages_remapped), 0);
	/* Adaptive above the threshold remaps. */
	assert_int_equal(send(a, 2, MSGQ_SEND_ADAPTIVE, 1, 2048, &how), MSGQ_OK);
	assert_int_equal(how, MSGQ_HOW_REMAPPED);
}

static void refusals_deliver_nothing(void **state)
{
	(void)state;
	uint8_t how;
	assert_int_equal(send(b, 1, 0, 0, 10, &how), MSGQ_E_DENIED);    /* b may send to nobody */
	assert_int_equal(send(a, 9, 0, 0, 10, &how), MSGQ_E_NO_DEST);   /* no VM 9 */
	assert_int_equal(send(a, 500, 0, 0, 10, &how), MSGQ_E_NO_DEST);
	assert_int_equal(send(a, 2, 0, 0, 0, &how), MSGQ_E_TOO_LONG);   /* empty */
	assert_int_equal(send(a, 2, 0, 0, 5 * PS, &how), MSGQ_E_TOO_LONG); /* > max_msg_pages */
	assert_int_equal(send(a, 2, 0, 7, 2 * PS, &how), MSGQ_E_TOO_LONG); /* runs off the send region */
	b->up = false;
	assert_int_equal(send(a, 2, 0, 0, 10, &how), MSGQ_E_DEST_DOWN);
	b->up = true;
	b_has_buffers = false;
	assert_int_equal(send(a, 2, 0, 0, 10, &how), MSGQ_E_FULL);
	assert_int_equal(nr_got, 0);
	assert_int_equal(how, MSGQ_HOW_NONE);
}

static void receive_region_fills_up(void **state)
{
	(void)state;
	uint8_t how;
	for (int i = 0; i < 2; i++)
		assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, 4 * PS, &how), MSGQ_OK);
	/* All 8 receive slots hold messages now. */
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, PS, &how), MSGQ_E_FULL);
	pthread_mutex_lock(&sw->lock);
	assert_int_equal(msgq_switch_return(b, got[0].slot, 4), 0);
	assert_int_equal(msgq_switch_return(b, got[0].slot, 4), -1); /* a double return */
	assert_int_equal(msgq_switch_return(b, 7, 2), -1);           /* beyond the region */
	assert_int_equal(msgq_switch_return(b, 0, 0), -1);
	pthread_mutex_unlock(&sw->lock);
	/* A returned slot keeps what its VM has already seen. */
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, PS, &how), MSGQ_OK);
}

/* Sends one page remapped from `from` slot 0, filled with `fill`, and has b
 * return it at once. */
static void send_and_return(struct msgq_endpoint *from, uint8_t fill)
{
	uint8_t how;
	memset(send_slot(from, 0), fill, PS);
	assert_int_equal(send(from, 2, MSGQ_SEND_REMAP, 0, PS, &how), MSGQ_OK);
	assert_int_equal(recv_slot(b, got[(nr_got - 1) % 8].slot)[0], fill);
	pthread_mutex_lock(&sw->lock);
	assert_int_equal(msgq_switch_return(b, got[(nr_got - 1) % 8].slot, 1), 0);
	pthread_mutex_unlock(&sw->lock);
}

static void stream_swaps_pages_without_zeroing(void **state)
{
	(void)state;
	/* Round after round a sends to b through all 8 slots and back to the
	 * first: from then on a's fresh slot is its own earlier message. */
	for (int round = 0; round < 16; round++) {
		send_and_return(a, (uint8_t)('A' + round));
		uint8_t seen = send_slot(a, 0)[0];
		if (round >= 8 && seen != 'A' + round - 8)
			fail_msg("round %d: a's fresh slot holds '%c', not its message of 8 rounds ago", round, seen);
		if (seen != 0 && (seen < 'A' || seen > 'A' + round))
			fail_msg("round %d: a's fresh slot shows foreign data", round);
	}
	assert_int_equal(atomic_load(&a->ctr.pages_zeroed_for_reuse), 0);
	assert_int_equal(sw->pool->zeroed, 0);
}

static void pages_change_hands_zeroed(void **state)
{
	(void)state;
	/* a's secrets fill b's receive slots; then c sends into the same slots.
	 * c must never get a page with a's data: those pages are zeroed. */
	for (int i = 0; i < 8; i++)
		send_and_return(a, 'S');
	for (int i = 0; i < 8; i++) {
		memset(send_slot(c, 0), 'C', PS);
		uint8_t how;
		assert_int_equal(send(c, 2, MSGQ_SEND_REMAP, 0, PS, &how), MSGQ_OK);
		for (unsigned k = 0; k < PS; k++)
			if (send_slot(c, 0)[k] == 'S')
				fail_msg("send %d: c's fresh slot shows a's data", i);
		pthread_mutex_lock(&sw->lock);
		msgq_switch_return(b, got[(nr_got - 1) % 8].slot, 1);
		pthread_mutex_unlock(&sw->lock);
	}
	/* Each of a's pages in b's slots went back to the pool as a's: c got
	 * pages from elsewhere, zeroed if they had been anyone else's. */
	assert_true(sw->pool->nr_free > 0);
	/* A copy into a page that holds only its sender's data keeps that
	 * sender's tag (a copy into anyone else's marks it mixed). */
	strcpy((char *)send_slot(c, 1), "copy");
	uint8_t how;
	assert_int_equal(send(c, 2, MSGQ_SEND_COPY, 1, 5, &how), MSGQ_OK);
	assert_int_equal(b->recv_tag[got[(nr_got - 1) % 8].slot], 3);
}

/* No pool page is ever in a's send slots and b's receive slots at once:
 * the bookkeeping, and what ferry's own view of the windows shows. */
static void expect_exclusive(void)
{
	for (uint32_t s = 0; s < a->send_slots; s++)
		for (uint32_t r = 0; r < b->recv_slots; r++)
			if (a->send_page[s] == b->recv_page[r])
				fail_msg("page %u is in a's send slot %u and b's receive slot %u", a->send_page[s], s, r);
	assert_false(b_reserved); /* every reserved buffer was used or given back */
}

/* A mapping that fails fails the send, with everything as it was: the
 * sender still has its message, the receiver sees nothing new, and a later
 * send goes through. bit: which mapping of the remap fails. */
static void remap_fails_at(unsigned bit, uint32_t pages)
{
	uint8_t how;
	memset(send_slot(a, 0), 'M', pages * PS);
	sw->pool->fail_maps = 1ull << bit;
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, pages * PS, &how), MSGQ_E_HOST);
	assert_int_equal(how, MSGQ_HOW_NONE);
	assert_int_equal(nr_got, 0);
	assert_int_equal(atomic_load(&a->ctr.map_failures), 1);
	assert_int_equal(atomic_load(&a->ctr.pages_remapped), 0);
	for (uint32_t p = 0; p < pages; p++) {
		assert_int_equal(send_slot(a, p)[0], 'M');
		assert_int_equal(send_slot(a, p)[PS - 1], 'M');
	}
	for (uint32_t r = 0; r < b->recv_slots; r++) {
		assert_int_equal(recv_slot(b, r)[0], 0);
		assert_false(b->recv_held[r]);
	}
	expect_exclusive();
	/* The sender still owns its slots: writes land in its window only. */
	send_slot(a, 0)[0] = 'N';
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, pages * PS, &how), MSGQ_OK);
	assert_int_equal(recv_slot(b, got[0].slot)[0], 'N');
	expect_exclusive();
	assert_int_equal(isolation_lost_calls, 0);
}

static void remap_fails_mapping_the_receiver(void **state)
{
	(void)state;
	remap_fails_at(0, 1);
}

static void remap_fails_mapping_the_sender(void **state)
{
	(void)state;
	remap_fails_at(1, 1);
}

static void remap_fails_on_a_later_page(void **state)
{
	(void)state;
	remap_fails_at(2, 2); /* page 1's receive mapping: page 0 is undone */
	sw->pool->fail_maps = 0;
}

/* When even undoing fails, the receiver could see a page the sender can
 * still write: it is stopped and receives nothing more. */
static void failed_undo_stops_the_receiver(void **state)
{
	(void)state;
	uint8_t how;
	memset(send_slot(a, 0), 'M', PS);
	sw->pool->fail_maps = 1ull << 1 | 1ull << 2; /* the sender's mapping, then the receiver's undo */
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, PS, &how), MSGQ_E_HOST);
	assert_int_equal(isolation_lost_calls, 1);
	assert_true(b->broken);
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, PS, &how), MSGQ_E_DEST_DOWN);
	assert_int_equal(nr_got, 0);
}

static void copy_fails_mapping_the_receiver(void **state)
{
	(void)state;
	uint8_t how;
	strcpy((char *)send_slot(a, 0), "copy");
	uint32_t free_before = sw->pool->nr_free;
	sw->pool->fail_maps = 1;
	assert_int_equal(send(a, 2, MSGQ_SEND_COPY, 0, 5, &how), MSGQ_E_HOST);
	assert_int_equal(nr_got, 0);
	assert_int_equal(sw->pool->nr_free, free_before); /* the page went back */
	assert_int_equal(atomic_load(&a->ctr.bytes_copied), 0);
	assert_int_equal(send(a, 2, MSGQ_SEND_COPY, 0, 5, &how), MSGQ_OK);
	assert_string_equal((const char *)recv_slot(b, got[0].slot), "copy");
	expect_exclusive();
}

/* A receiver holding every other slot: one-page messages still fit, two-page
 * ones do not, and the search stays a single pass. */
static void gaps_in_the_receive_region(void **state)
{
	(void)state;
	uint8_t how;
	for (int i = 0; i < 8; i++)
		assert_int_equal(send(a, 2, MSGQ_SEND_COPY, 0, 10, &how), MSGQ_OK);
	pthread_mutex_lock(&sw->lock);
	for (unsigned i = 0; i < 8; i++)
		if (got[i].slot % 2)
			assert_int_equal(msgq_switch_return(b, got[i].slot, 1), 0);
	pthread_mutex_unlock(&sw->lock);
	assert_int_equal(send(a, 2, MSGQ_SEND_COPY, 0, 2 * PS, &how), MSGQ_E_FULL);
	expect_exclusive();
	for (int i = 0; i < 4; i++) {
		assert_int_equal(send(a, 2, MSGQ_SEND_COPY, 0, 10, &how), MSGQ_OK);
		assert_int_equal(got[(nr_got - 1) % 8].slot % 2, 1);
	}
	assert_int_equal(send(a, 2, MSGQ_SEND_COPY, 0, 10, &how), MSGQ_E_FULL);
}

/* A device reset gives every page of the receive slots back to the pool,
 * held messages included, and the slots read as zeroes again: the driver
 * that comes after the reset sees nothing that was sent before it. */
static void reset_returns_received_pages(void **state)
{
	(void)state;
	uint8_t how;
	uint32_t free_before = sw->pool->nr_free;
	memset(send_slot(a, 0), 'R', 2 * PS);
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, 2 * PS, &how), MSGQ_OK); /* held */
	strcpy((char *)send_slot(c, 0), "copied");
	assert_int_equal(send(c, 2, MSGQ_SEND_COPY, 0, 7, &how), MSGQ_OK);          /* held */
	send_and_return(a, 'Q');                                                   /* seen, given back */
	uint32_t held = 0, mapped = 0;
	for (uint32_t r = 0; r < b->recv_slots; r++) {
		held += b->recv_held[r];
		mapped += b->recv_page[r] != POOL_NONE;
	}
	assert_int_equal(held, 3);
	assert_int_equal(mapped, 4);
	pthread_mutex_lock(&sw->lock);
	msgq_endpoint_reset(b);
	pthread_mutex_unlock(&sw->lock);
	for (uint32_t r = 0; r < b->recv_slots; r++) {
		assert_false(b->recv_held[r]);
		assert_int_equal(b->recv_page[r], POOL_NONE);
		for (unsigned k = 0; k < PS; k += 512)
			if (recv_slot(b, r)[k] != 0)
				fail_msg("receive slot %u still shows data after the reset", r);
	}
	/* Four pages left the pool (fresh ones for a's slots after its remaps,
	 * one for the copy); the reset gave b's four back. */
	assert_int_equal(sw->pool->nr_free, free_before);
	assert_int_equal(atomic_load(&b->ctr.map_failures), 0);
	/* Nothing of b's returns its held slots twice after the reset. */
	pthread_mutex_lock(&sw->lock);
	assert_int_equal(msgq_switch_return(b, got[0].slot, 2), -1);
	pthread_mutex_unlock(&sw->lock);
	/* And b receives again, into fresh pages. */
	memset(send_slot(a, 1), 'N', PS);
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 1, PS, &how), MSGQ_OK);
	assert_int_equal(recv_slot(b, got[(nr_got - 1) % 8].slot)[0], 'N');
	expect_exclusive();
}

/* If the region cannot be cleared, the pages stay mapped and accounted for:
 * a page this VM still sees is never handed to anyone. */
static void failed_reset_keeps_pages(void **state)
{
	(void)state;
	uint8_t how;
	memset(send_slot(a, 0), 'K', PS);
	assert_int_equal(send(a, 2, MSGQ_SEND_REMAP, 0, PS, &how), MSGQ_OK);
	uint32_t free_before = sw->pool->nr_free, slot = got[0].slot, page = b->recv_page[slot];
	sw->pool->fail_maps = 1;
	pthread_mutex_lock(&sw->lock);
	msgq_endpoint_reset(b);
	pthread_mutex_unlock(&sw->lock);
	assert_int_equal(atomic_load(&b->ctr.map_failures), 1);
	assert_int_equal(sw->pool->nr_free, free_before);
	assert_int_equal(b->recv_page[slot], page);
	assert_false(b->recv_held[slot]);
	expect_exclusive();
}

/* Prefilled receive slots: copies map nothing (so no mapping can fail). */
static void prefilled_slots_copy_without_mapping(void **state)
{
	(void)state;
	char err[256];
	uint8_t how;
	assert_int_equal(msgq_endpoint_prefill(b, err, sizeof(err)), 0);
	for (uint32_t r = 0; r < b->recv_slots; r++)
		assert_int_not_equal(b->recv_page[r], POOL_NONE);
	strcpy((char *)send_slot(a, 0), "prefilled");
	sw->pool->fail_maps = ~0ull;
	assert_int_equal(send(a, 2, MSGQ_SEND_COPY, 0, 10, &how), MSGQ_OK);
	sw->pool->fail_maps = 0;
	assert_string_equal((const char *)recv_slot(b, got[0].slot), "prefilled");
	assert_int_equal(atomic_load(&a->ctr.map_failures), 0);
}

/* Every receive slot of b keeps a page with a's data and the pool is nearly
 * empty: c's remap of several pages still goes through, taking those pages
 * back (zeroed for c), instead of being refused for ever. */
static void remap_takes_back_other_senders_pages(void **state)
{
	(void)state;
	char err[256];
	uint8_t how;
	assert_int_equal(msgq_endpoint_prefill(a, err, sizeof(err)), 0);
	assert_int_equal(msgq_endpoint_prefill(b, err, sizeof(err)), 0);
	assert_int_equal(msgq_endpoint_prefill(c, err, sizeof(err)), 0);
	for (int i = 0; i < 8; i++)
		send_and_return(a, 'S');
	assert_true(sw->pool->nr_free < 4);
	memset(send_slot(c, 0), 'C', 4 * PS);
	assert_int_equal(send(c, 2, MSGQ_SEND_REMAP, 0, 4 * PS, &how), MSGQ_OK);
	assert_int_equal(how, MSGQ_HOW_REMAPPED);
	const struct msgq_recv_hdr *h = &got[(nr_got - 1) % 8];
	for (uint32_t p = 0; p < 4; p++)
		assert_int_equal(recv_slot(b, h->slot + p)[PS - 1], 'C');
	for (uint32_t p = 0; p < 4; p++)
		for (unsigned k = 0; k < PS; k++)
			if (send_slot(c, p)[k] == 'S')
				fail_msg("c's fresh slot %u shows a's data", p);
	expect_exclusive();
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(remap_moves_the_page), T(small_messages_are_copied), T(refusals_deliver_nothing),
		T(receive_region_fills_up), T(stream_swaps_pages_without_zeroing), T(pages_change_hands_zeroed),
		T(remap_fails_mapping_the_receiver), T(remap_fails_mapping_the_sender), T(remap_fails_on_a_later_page),
		T(failed_undo_stops_the_receiver), T(copy_fails_mapping_the_receiver), T(gaps_in_the_receive_region),
		T(reset_returns_received_pages), T(failed_reset_keeps_pages), T(prefilled_slots_copy_without_mapping),
		T(remap_takes_back_other_senders_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
