#include "host/msgq_switch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/clock.h"
#include "vmm/log.h"

/* Adaptive transfer: a copy costs time per byte (into a page the receiver
 * already has mapped), a remap costs time per page (two mappings change).
 * Time both on this host's pool: messages shorter than the crossover are
 * copied. If remapping a whole page loses to copying it, remapping never
 * pays and the threshold says "copy everything". The guest's own page
 * faults after a remap are not in this measurement. */
static uint32_t measure_threshold(struct page_pool *pool)
{
	uint64_t ps = pool->page_size;
	uint32_t a = pool_alloc_clean(pool), b = pool_alloc_clean(pool);
	void *scratch = mmap(NULL, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint32_t threshold = MSGQ_COPY_ALWAYS;
	if (a != POOL_NONE && b != POOL_NONE && scratch != MAP_FAILED) {
		memset(pool_page_ptr(pool, a), 1, ps);
		memset(pool_page_ptr(pool, b), 2, ps);
		enum { ROUNDS = 16 };
		uint64_t t0 = clock_ns();
		for (int i = 0; i < ROUNDS; i++)
			memcpy(pool_page_ptr(pool, b), pool_page_ptr(pool, a), ps);
		uint64_t t1 = clock_ns();
		for (int i = 0; i < ROUNDS; i++) {
			pool_map(pool, scratch, i % 2 ? a : b, PROT_READ | PROT_WRITE);
			((volatile uint8_t *)scratch)[0] = 1;
			pool_map(pool, scratch, i % 2 ? b : a, PROT_READ);
			(void)((volatile uint8_t *)scratch)[0];
		}
		uint64_t t2 = clock_ns();
		double copy_ns_per_byte = (double)(t1 - t0) / ROUNDS / (double)ps;
		double remap_ns = (double)(t2 - t1) / ROUNDS;
		double crossover = remap_ns / copy_ns_per_byte;
		if (crossover < (double)ps)
			threshold = crossover < 256 ? 256 : (uint32_t)crossover;
		log_debug(NULL, "msgq: copy %.3f ns/KiB, remap %.0f ns per %llu-byte page: %s %u bytes",
			  copy_ns_per_byte * 1024, remap_ns, (unsigned long long)ps,
			  threshold == MSGQ_COPY_ALWAYS ? "copy always, crossover" : "copy below",
			  threshold == MSGQ_COPY_ALWAYS ? (uint32_t)crossover : threshold);
	}
	if (scratch != MAP_FAILED)
		munmap(scratch, ps);
	if (a != POOL_NONE)
		pool_free(pool, a, POOL_CLEAN);
	if (b != POOL_NONE)
		pool_free(pool, b, POOL_CLEAN);
	return threshold;
}

struct msgq_switch *msgq_switch_create(uint32_t pages, uint32_t zero_pages, uint64_t page_size,
				       uint32_t copy_threshold, char *err, size_t errlen)
{
	struct msgq_switch *sw = calloc(1, sizeof(*sw));
	if (!sw) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&sw->lock, NULL);
	sw->page_size = page_size;
	/* Two spare pages for measuring, so the windows never run short. */
	sw->pool = pool_create(pages + 2, zero_pages, page_size, err, errlen);
	if (!sw->pool) {
		free(sw);
		return NULL;
	}
	sw->threshold_measured = copy_threshold == 0;
	sw->copy_threshold = copy_threshold ? copy_threshold : measure_threshold(sw->pool);
	return sw;
}

void msgq_switch_destroy(struct msgq_switch *sw)
{
	if (!sw)
		return;
	pool_destroy(sw->pool);
	pthread_mutex_destroy(&sw->lock);
	free(sw);
}

struct msgq_endpoint *msgq_endpoint_create(struct msgq_switch *sw, uint32_t id, const char *name,
					   uint32_t send_slots, uint32_t recv_slots, uint32_t max_msg_pages,
					   char *err, size_t errlen)
{
	if (id == 0 || id > MSGQ_MAX_VMS || sw->ep[id]) {
		snprintf(err, errlen, "msgq: bad or duplicate VM id %u", id);
		return NULL;
	}
	struct msgq_endpoint *ep = calloc(1, sizeof(*ep));
	uint64_t ps = sw->page_size, total = (uint64_t)send_slots + recv_slots;
	if (!ep) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ep->sw = sw;
	ep->id = id;
	snprintf(ep->name, sizeof(ep->name), "%s", name);
	ep->page_size = ps;
	ep->send_slots = send_slots;
	ep->recv_slots = recv_slots;
	ep->max_msg_pages = max_msg_pages;
	ep->slot_page = malloc(total * sizeof(*ep->slot_page));
	ep->resident = malloc(recv_slots * sizeof(*ep->resident));
	ep->recv_state = calloc(recv_slots, 1);
	ep->recv_writer = calloc(recv_slots, 1);

	/* Reserve the window, aligned to the page size so KVM can map huge
	 * pages, then put pool pages into it. */
	uint64_t size = total * ps;
	uint8_t *raw = mmap(NULL, size + ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!ep->slot_page || !ep->resident || !ep->recv_state || !ep->recv_writer || raw == MAP_FAILED) {
		snprintf(err, errlen, "msgq %s: cannot reserve a %llu MiB window", name, (unsigned long long)(size >> 20));
		goto fail;
	}
	ep->hva = (uint8_t *)(((uintptr_t)raw + ps - 1) & ~(uintptr_t)(ps - 1));
	if (ep->hva > raw)
		munmap(raw, (size_t)(ep->hva - raw));
	munmap(ep->hva + size, (size_t)(raw + ps - ep->hva));

	for (uint32_t s = 0; s < send_slots; s++) {
		ep->slot_page[s] = pool_alloc(sw->pool, (uint8_t)id);
		if (ep->slot_page[s] == POOL_NONE ||
		    pool_map(sw->pool, ep->hva + s * ps, ep->slot_page[s], PROT_READ | PROT_WRITE) < 0) {
			snprintf(err, errlen, "msgq %s: cannot back send slot %u: %s", name, s, strerror(errno));
			goto fail;
		}
	}
	for (uint32_t r = 0; r < recv_slots; r++) {
		ep->slot_page[send_slots + r] = POOL_NONE;
		ep->resident[r] = POOL_NONE;
	}
	if (pool_map_zero(sw->pool, ep->hva + send_slots * ps, 0, recv_slots) < 0) {
		snprintf(err, errlen, "msgq %s: cannot map the receive region: %s", name, strerror(errno));
		goto fail;
	}
	pthread_mutex_lock(&sw->lock);
	sw->ep[id] = ep;
	pthread_mutex_unlock(&sw->lock);
	return ep;
fail:
	msgq_endpoint_destroy(ep);
	return NULL;
}

void msgq_endpoint_destroy(struct msgq_endpoint *ep)
{
	if (!ep)
		return;
	struct msgq_switch *sw = ep->sw;
	pthread_mutex_lock(&sw->lock);
	if (sw->ep[ep->id] == ep)
		sw->ep[ep->id] = NULL;
	if (ep->slot_page && ep->hva && ep->resident) {
		msgq_endpoint_reset(ep);
		for (uint32_t s = 0; s < ep->send_slots; s++)
			if (ep->slot_page[s] != POOL_NONE)
				pool_free(sw->pool, ep->slot_page[s], (uint8_t)ep->id);
		/* Copies from several senders reached these. */
		for (uint32_t r = 0; r < ep->recv_slots; r++)
			if (ep->resident[r] != POOL_NONE)
				pool_free_mixed(sw->pool, ep->resident[r]);
	}
	pthread_mutex_unlock(&sw->lock);
	if (ep->hva)
		munmap(ep->hva, ((uint64_t)ep->send_slots + ep->recv_slots) * ep->page_size);
	free(ep->slot_page);
	free(ep->resident);
	free(ep->recv_state);
	free(ep->recv_writer);
	free(ep);
}

/* Lock held. Frees receive slots [slot, slot + n) (known to be in use). A
 * copied message stays where it is (only this VM ever saw it); a remapped
 * one goes back to the pool and the slot to its resident page, or to the
 * zero area. */
static void release_recv(struct msgq_endpoint *ep, uint32_t slot, uint32_t n)
{
	struct page_pool *pool = ep->sw->pool;
	uint64_t ps = ep->page_size;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = slot + i, *page = &ep->slot_page[ep->send_slots + r];
		if (ep->recv_state[r] == RECV_REMAPPED) {
			pool_free(pool, *page, ep->recv_writer[r]);
			uint8_t *at = ep->hva + (ep->send_slots + r) * ps;
			if (ep->resident[r] != POOL_NONE)
				pool_map(pool, at, ep->resident[r], PROT_READ);
			else
				pool_map_zero(pool, at, r, 1);
			*page = ep->resident[r];
		}
		ep->recv_state[r] = RECV_FREE;
	}
	atomic_fetch_add(&ep->ctr.returned_pages, n);
}

void msgq_endpoint_reset(struct msgq_endpoint *ep)
{
	for (uint32_t r = 0; r < ep->recv_slots; r++)
		if (ep->recv_state[r] != RECV_FREE)
			release_recv(ep, r, 1);
	ep->recv_cursor = 0;
}

/* Lock held. n consecutive free receive slots, or POOL_NONE. */
static uint32_t find_recv_slots(struct msgq_endpoint *ep, uint32_t n)
{
	uint32_t R = ep->recv_slots;
	for (uint32_t tried = 0; tried < R; tried++) {
		uint32_t start = (ep->recv_cursor + tried) % R;
		if (start + n > R)
			continue;
		uint32_t k = 0;
		while (k < n && ep->recv_state[start + k] == RECV_FREE)
			k++;
		if (k == n) {
			ep->recv_cursor = (start + n) % R;
			return start;
		}
	}
	return POOL_NONE;
}

static bool allowed(const struct msgq_endpoint *from, uint32_t dest)
{
	for (unsigned i = 0; i < from->nr_peers; i++)
		if (from->peers[i] == dest)
			return true;
	return false;
}

/* Copies len bytes from the sender's slots into the receiver's slots
 * [r, r + n), into each slot's resident page (made on first use). */
static int deliver_by_copy(struct msgq_endpoint *from, uint32_t first, struct msgq_endpoint *to, uint32_t r,
			   uint32_t n, uint32_t len)
{
	struct page_pool *pool = from->sw->pool;
	uint64_t ps = from->page_size;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t *res = &to->resident[r + i];
		if (*res == POOL_NONE) {
			*res = pool_alloc_clean(pool);
			if (*res == POOL_NONE || pool_map(pool, to->hva + (to->send_slots + r + i) * ps, *res, PROT_READ) < 0)
				return -1; /* slots before i keep their new resident pages; nothing is delivered */
			to->slot_page[to->send_slots + r + i] = *res;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t chunk = len - i * ps < ps ? len - i * ps : ps;
		memcpy(pool_page_ptr(pool, to->resident[r + i]), from->hva + (first + i) * ps, chunk);
		to->recv_state[r + i] = RECV_COPIED;
	}
	atomic_fetch_add(&from->ctr.bytes_copied, len);
	return 0;
}

/* Moves the sender's pages into the receiver's slots and backs the sender's
 * slots with other pages. The sender's mapping goes first: once a message
 * is visible to the receiver, the sender can no longer change it. */
static int deliver_by_remap(struct msgq_endpoint *from, uint32_t first, struct msgq_endpoint *to, uint32_t r,
			    uint32_t n)
{
	struct page_pool *pool = from->sw->pool;
	uint64_t ps = from->page_size;
	uint64_t zeroed_before = pool->zeroed;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t fresh = pool_alloc(pool, (uint8_t)from->id);
		if (fresh == POOL_NONE) {
			if (i)
				release_recv(to, r, i);
			return -1;
		}
		uint32_t msg = from->slot_page[first + i];
		pool_map(pool, from->hva + (first + i) * ps, fresh, PROT_READ | PROT_WRITE);
		from->slot_page[first + i] = fresh;
		pool_map(pool, to->hva + (to->send_slots + r + i) * ps, msg, PROT_READ);
		to->slot_page[to->send_slots + r + i] = msg;
		to->recv_writer[r + i] = (uint8_t)from->id;
		to->recv_state[r + i] = RECV_REMAPPED;
	}
	atomic_fetch_add(&from->ctr.pages_remapped, n);
	atomic_fetch_add(&from->ctr.pages_zeroed_for_reuse, pool->zeroed - zeroed_before);
	return 0;
}

int msgq_switch_send(struct msgq_endpoint *from, uint32_t dest, uint32_t mode, uint32_t first_slot,
		     uint32_t len, uint32_t cookie, uint8_t *how)
{
	struct msgq_switch *sw = from->sw;
	*how = MSGQ_HOW_NONE;
	uint64_t ps = from->page_size;
	uint32_t n = (uint32_t)((len + ps - 1) / ps);
	if (len == 0 || n > from->max_msg_pages || first_slot + (uint64_t)n > from->send_slots)
		return MSGQ_E_TOO_LONG;
	struct msgq_endpoint *to = dest <= MSGQ_MAX_VMS ? sw->ep[dest] : NULL;
	if (!to)
		return MSGQ_E_NO_DEST;
	if (!allowed(from, dest))
		return MSGQ_E_DENIED;
	if (!to->up || atomic_load(to->vm_stopping))
		return MSGQ_E_DEST_DOWN;
	if (!to->ops->can_deliver(to))
		return MSGQ_E_FULL;
	uint32_t r = n <= to->recv_slots ? find_recv_slots(to, n) : POOL_NONE;
	/* Check the pool up front, so a message never moves halfway. */
	if (r == POOL_NONE || sw->pool->nr_free < n)
		return MSGQ_E_FULL;

	mode &= MSGQ_SEND_MODE_MASK;
	bool copy = mode == MSGQ_SEND_COPY || (mode == MSGQ_SEND_ADAPTIVE && len < sw->copy_threshold);
	if ((copy ? deliver_by_copy(from, first_slot, to, r, n, len) : deliver_by_remap(from, first_slot, to, r, n)) < 0)
		return MSGQ_E_FULL;

	struct msgq_recv_hdr h = {
		.src = from->id, .flags = copy ? 0 : MSGQ_RECV_REMAPPED, .len = len,
		.slot = r, .nr_pages = n, .cookie = cookie,
	};
	if (!to->ops->deliver(to, &h)) {
		/* can_deliver said yes, so only a broken queue gets here. The
		 * pages stay with the receiver's free slots. */
		release_recv(to, r, n);
		return MSGQ_E_DEST_DOWN;
	}
	*how = copy ? MSGQ_HOW_COPIED : MSGQ_HOW_REMAPPED;
	atomic_fetch_add(&from->ctr.sent, 1);
	atomic_fetch_add(&to->ctr.received, 1);
	return MSGQ_OK;
}

int msgq_switch_return(struct msgq_endpoint *ep, uint32_t slot, uint32_t n)
{
	if (n == 0 || slot >= ep->recv_slots || n > ep->recv_slots - slot)
		return -1;
	for (uint32_t i = 0; i < n; i++)
		if (ep->recv_state[slot + i] == RECV_FREE)
			return -1; /* not holding a message: a double return */
	release_recv(ep, slot, n);
	return 0;
}
