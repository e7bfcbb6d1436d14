#include "host/msgq_switch.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/clock.h"
#include "vmm/config.h"
#include "vmm/log.h"
#include "vmm/memory.h"
#include "vmm/vmm.h"

static uint8_t *recv_addr(struct msgq_endpoint *ep, uint32_t r);
static void count_map_failure(struct msgq_endpoint *ep, const char *what, const char *outcome);

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
		/* Each figure is the fastest of a few trials: a preempted trial
		 * (this host is shared) would otherwise flip the threshold. */
		enum { TRIALS = 5 };
		int rounds = ps >= (1u << 20) ? 2 : 16;
		uint64_t copy_best = UINT64_MAX, remap_best = UINT64_MAX;
		for (int t = 0; t < TRIALS; t++) {
			uint64_t t0 = clock_ns();
			for (int i = 0; i < rounds; i++)
				memcpy(pool_page_ptr(pool, b), pool_page_ptr(pool, a), ps);
			uint64_t t1 = clock_ns();
			for (int i = 0; i < rounds; i++) {
				pool_map(pool, scratch, i % 2 ? a : b, PROT_READ | PROT_WRITE);
				((volatile uint8_t *)scratch)[0] = 1;
				pool_map(pool, scratch, i % 2 ? b : a, PROT_READ);
				(void)((volatile uint8_t *)scratch)[0];
			}
			uint64_t t2 = clock_ns();
			copy_best = t1 - t0 < copy_best ? t1 - t0 : copy_best;
			remap_best = t2 - t1 < remap_best ? t2 - t1 : remap_best;
		}
		double copy_ns_per_byte = (double)copy_best / rounds / (double)ps;
		double remap_ns = (double)remap_best / rounds;
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
	sw->rings.fd = -1;
	/* Two spare pages for measuring, so the windows never run short. */
	sw->pool = pool_create(pages + 2, zero_pages, page_size, err, errlen);
	if (!sw->pool) {
		free(sw);
		return NULL;
	}
	sw->copy_threshold = copy_threshold ? copy_threshold : measure_threshold(sw->pool);
	return sw;
}

void msgq_switch_destroy(struct msgq_switch *sw)
{
	if (!sw)
		return;
	msgq_rings_destroy(&sw->rings);
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
	ep->send_page = malloc(send_slots * sizeof(*ep->send_page));
	ep->recv_page = malloc(recv_slots * sizeof(*ep->recv_page));
	ep->recv_tag = calloc(recv_slots, 1);
	ep->recv_held = calloc(recv_slots, 1);
	ep->moves = calloc(max_msg_pages ? max_msg_pages : 1, sizeof(*ep->moves));

	/* Reserve the window, aligned to the page size so KVM can map huge
	 * pages, then put pool pages into it. */
	uint64_t size = total * ps;
	uint8_t *raw = mmap(NULL, size + ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!ep->send_page || !ep->recv_page || !ep->recv_tag || !ep->recv_held || !ep->moves || raw == MAP_FAILED) {
		snprintf(err, errlen, "msgq %s: cannot reserve a %llu MiB window", name, (unsigned long long)(size >> 20));
		if (raw != MAP_FAILED)
			munmap(raw, size + ps);
		goto fail;
	}
	ep->hva = (uint8_t *)(((uintptr_t)raw + ps - 1) & ~(uintptr_t)(ps - 1));
	if (ep->hva > raw)
		munmap(raw, (size_t)(ep->hva - raw));
	munmap(ep->hva + size, (size_t)(raw + ps - ep->hva));

	for (uint32_t r = 0; r < recv_slots; r++)
		ep->recv_page[r] = POOL_NONE;
	for (uint32_t s = 0; s < send_slots; s++)
		ep->send_page[s] = POOL_NONE;
	for (uint32_t s = 0; s < send_slots; s++) {
		ep->send_page[s] = pool_alloc(sw->pool, (uint8_t)id);
		if (ep->send_page[s] == POOL_NONE ||
		    pool_map(sw->pool, ep->hva + s * ps, ep->send_page[s], PROT_READ | PROT_WRITE) < 0) {
			snprintf(err, errlen, "msgq %s: cannot back send slot %u: %s", name, s, strerror(errno));
			goto fail;
		}
	}
	if (pool_map_zero(sw->pool, ep->hva + send_slots * ps, 0, recv_slots) < 0) {
		snprintf(err, errlen, "msgq %s: cannot map the receive region: %s", name, strerror(errno));
		goto fail;
	}
	if (msgq_rings_attach(ep, err, errlen) < 0)
		goto fail;
	pthread_mutex_lock(&sw->lock);
	sw->ep[id] = ep;
	sw->away[id] = false; /* back from a restart */
	pthread_mutex_unlock(&sw->lock);
	return ep;
fail:
	msgq_endpoint_destroy(ep);
	return NULL;
}

/* Lock held. Its senders learn it is gone; sends to it now fail with NO_DEST. */
static void drop_from_peers(struct msgq_switch *sw, uint32_t id)
{
	sw->away[id] = false;
	for (unsigned i = 1; i <= MSGQ_MAX_VMS; i++) {
		struct msgq_endpoint *o = sw->ep[i];
		for (unsigned k = 0; o && k < o->nr_peers; k++) {
			if (o->peers[k] != id)
				continue;
			o->peers[k] = o->peers[--o->nr_peers];
			if (o->ops && o->ops->peer_gone)
				o->ops->peer_gone(o, id);
			break;
		}
	}
}

void msgq_switch_forget(struct msgq_switch *sw, uint32_t id)
{
	if (!sw || id == 0 || id > MSGQ_MAX_VMS)
		return;
	pthread_mutex_lock(&sw->lock);
	if (sw->away[id])
		drop_from_peers(sw, id);
	pthread_mutex_unlock(&sw->lock);
}

void msgq_endpoint_destroy(struct msgq_endpoint *ep)
{
	if (!ep)
		return;
	struct msgq_switch *sw = ep->sw;
	pthread_mutex_lock(&sw->lock);
	if (sw->ep[ep->id] == ep) {
		sw->ep[ep->id] = NULL;
		if (ep->keep_place)
			sw->away[ep->id] = true;
		else
			drop_from_peers(sw, ep->id);
	}
	msgq_rings_detach(ep);
	for (uint32_t s = 0; ep->send_page && s < ep->send_slots; s++)
		if (ep->send_page[s] != POOL_NONE)
			pool_free(sw->pool, ep->send_page[s], (uint8_t)ep->id);
	for (uint32_t r = 0; ep->recv_page && r < ep->recv_slots; r++)
		if (ep->recv_page[r] != POOL_NONE)
			pool_free(sw->pool, ep->recv_page[r], ep->recv_tag[r]);
	pthread_mutex_unlock(&sw->lock);
	if (ep->hva)
		munmap(ep->hva, ((uint64_t)ep->send_slots + ep->recv_slots) * ep->page_size);
	free(ep->send_page);
	free(ep->recv_page);
	free(ep->recv_tag);
	free(ep->recv_held);
	free(ep->moves);
	free(ep);
}

uint64_t msgq_window_mappings(uint32_t send_slots, uint32_t recv_slots)
{
	/* Every slot mapped on its own (neighbours merge only by chance). */
	return (uint64_t)send_slots + recv_slots;
}

/* Lock held. The guest is done with slots [slot, slot + n): they keep their
 * pages (it has seen them), ready for the next delivery. */
static void release_recv(struct msgq_endpoint *ep, uint32_t slot, uint32_t n)
{
	memset(ep->recv_held + slot, 0, n);
	atomic_fetch_add(&ep->ctr.returned_pages, n);
}

void msgq_endpoint_reset(struct msgq_endpoint *ep)
{
	struct page_pool *pool = ep->sw->pool;
	msgq_rings_reset(ep);
	memset(ep->recv_held, 0, ep->recv_slots);
	ep->recv_cursor = 0;
	/* One mapping puts the zero area over the whole receive region; only
	 * then can its pages go back, since nobody may get a page this VM still
	 * maps. If it fails, the pages stay where they are (and accounted for):
	 * stale but never shared. */
	if (pool_map_zero(pool, recv_addr(ep, 0), 0, ep->recv_slots) < 0) {
		count_map_failure(ep, "cannot clear the receive region at a reset",
				  "its pages stay mapped there, read-only");
		return;
	}
	for (uint32_t r = 0; r < ep->recv_slots; r++) {
		if (ep->recv_page[r] != POOL_NONE)
			pool_free(pool, ep->recv_page[r], ep->recv_tag[r]);
		ep->recv_page[r] = POOL_NONE;
		ep->recv_tag[r] = POOL_CLEAN;
	}
}

void msgq_for_each_live_peer(struct msgq_endpoint *ep, void (*fn)(struct msgq_endpoint *peer, void *arg), void *arg)
{
	for (unsigned i = 0; i < ep->nr_peers; i++) {
		struct msgq_endpoint *peer = ep->peers[i] <= MSGQ_MAX_VMS ? ep->sw->ep[ep->peers[i]] : NULL;
		if (peer && peer->up && !peer->broken)
			fn(peer, arg);
	}
}

int msgq_endpoint_prefill(struct msgq_endpoint *ep, char *err, size_t errlen)
{
	struct page_pool *pool = ep->sw->pool;
	pthread_mutex_lock(&ep->sw->lock);
	for (uint32_t r = 0; r < ep->recv_slots; r++) {
		if (ep->recv_page[r] != POOL_NONE)
			continue;
		uint32_t page = pool_alloc_clean(pool);
		if (page == POOL_NONE || pool_map(pool, recv_addr(ep, r), page, PROT_READ) < 0) {
			snprintf(err, errlen, "msgq %s: cannot back receive slot %u: %s", ep->name, r,
				 page == POOL_NONE ? "the page pool is empty" : strerror(errno));
			if (page != POOL_NONE)
				pool_free(pool, page, POOL_CLEAN);
			pthread_mutex_unlock(&ep->sw->lock);
			return -1;
		}
		ep->recv_page[r] = page;
		ep->recv_tag[r] = POOL_CLEAN;
	}
	pthread_mutex_unlock(&ep->sw->lock);
	return 0;
}

/* Lock held. n consecutive free receive slots, or POOL_NONE: the first run
 * at or after the cursor, else the first from the start. One pass over the
 * slots at most (a message's slots never wrap around the region), whatever
 * pattern of held slots the receiver keeps. */
static uint32_t find_recv_slots(struct msgq_endpoint *ep, uint32_t n)
{
	uint32_t R = ep->recv_slots, start = ep->recv_cursor < R ? ep->recv_cursor : 0;
	if (n == 0 || n > R)
		return POOL_NONE;
	for (int pass = 0; pass < 2; pass++) {
		uint32_t lo = pass ? 0 : start, hi = pass ? (start + n - 1 < R ? start + n - 1 : R) : R, run = 0;
		for (uint32_t s = lo; s < hi; s++) {
			run = ep->recv_held[s] ? 0 : run + 1;
			if (run == n) {
				ep->recv_cursor = (s + 1) % R;
				return s + 1 - n;
			}
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

static uint8_t *recv_addr(struct msgq_endpoint *ep, uint32_t r)
{
	return ep->hva + ((uint64_t)ep->send_slots + r) * ep->page_size;
}

/* Pool pages a delivery of slots [r, r + n) from `from` will need. */
static uint32_t pages_needed(const struct msgq_endpoint *from, const struct msgq_endpoint *to, uint32_t r, uint32_t n,
			     bool copy)
{
	uint32_t need = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t page = to->recv_page[r + i];
		uint8_t tag = to->recv_tag[r + i];
		if (page == POOL_NONE || (!copy && tag != from->id && tag != POOL_CLEAN))
			need++;
	}
	return need;
}

/* Maps the page a receive slot should show: `page`, or the never-written
 * zero area if it has none. */
static int map_recv(struct page_pool *pool, struct msgq_endpoint *to, uint32_t r, uint32_t page)
{
	return page == POOL_NONE ? pool_map_zero(pool, recv_addr(to, r), r, 1)
				 : pool_map(pool, recv_addr(to, r), page, PROT_READ);
}

static uint8_t *send_addr(struct msgq_endpoint *ep, uint32_t s)
{
	return ep->hva + (uint64_t)s * ep->page_size;
}

/* A mapping failed: counted, and the reason logged (rate-limited) since it
 * is the host's failing. */
static void count_map_failure(struct msgq_endpoint *ep, const char *what, const char *outcome)
{
	static struct log_limit limit;
	atomic_fetch_add(&ep->ctr.map_failures, 1);
	if (log_limit_ok(&limit))
		log_warn(ep->name, "msgq: %s: %s; %s", what, strerror(errno), outcome);
}

/* A send's mapping failed: it fails with nothing moved. */
static int map_failed(struct msgq_endpoint *from, const char *what)
{
	count_map_failure(from, what, "the send failed and nothing moved");
	return MSGQ_E_HOST;
}

/* Copies len bytes from the sender's slots into the receiver's slots
 * [r, r + n): into the page each slot already holds (made on first use).
 * Every mapping is made before any byte is copied, so a failed one leaves
 * the message undelivered and both windows as they were (a new page in a
 * slot the receiver does not hold reads as zeroes, as before). */
static int deliver_by_copy(struct msgq_endpoint *from, uint32_t first, struct msgq_endpoint *to, uint32_t r,
			   uint32_t n, uint32_t len)
{
	struct page_pool *pool = from->sw->pool;
	uint64_t ps = from->page_size;
	for (uint32_t i = 0; i < n; i++) {
		if (to->recv_page[r + i] != POOL_NONE)
			continue;
		uint32_t page = pool_alloc_clean(pool);
		if (pool_map(pool, recv_addr(to, r + i), page, PROT_READ) < 0) {
			pool_free(pool, page, POOL_CLEAN);
			return map_failed(from, "cannot map a receive page");
		}
		to->recv_page[r + i] = page;
		to->recv_tag[r + i] = POOL_CLEAN;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t page = to->recv_page[r + i];
		uint8_t *tag = &to->recv_tag[r + i];
		uint64_t chunk = len - i * ps < ps ? len - i * ps : ps;
		memcpy(pool_page_ptr(pool, page), send_addr(from, first + i), chunk);
		/* The rest of the page is zeroes, or this sender's old data, or
		 * data the receiver has seen from others. */
		*tag = *tag == POOL_CLEAN || *tag == from->id ? (uint8_t)from->id : POOL_MIXED;
		to->recv_held[r + i] = 1;
	}
	atomic_fetch_add(&from->ctr.bytes_copied, len);
	return MSGQ_OK;
}

/* Puts pages [0, done) of a remap back: the sender's slots show the message
 * again and the receiver's slots what they showed before. If a mapping
 * cannot be restored, the receiver may see a page the sender can still
 * write: it is stopped. */
static void undo_remap(struct msgq_endpoint *from, uint32_t first, struct msgq_endpoint *to, uint32_t r,
		       uint32_t done)
{
	struct page_pool *pool = from->sw->pool;
	bool lost = false;
	for (uint32_t i = done; i-- > 0;) {
		struct msgq_move *mv = &from->moves[i];
		/* The receiver first: a fresh page that was the receiver's old
		 * one must leave the sender only after the receiver has it back
		 * read-only, which is how it was. */
		lost |= map_recv(pool, to, r + i, mv->old) < 0;
		lost |= pool_map(pool, send_addr(from, first + i), mv->msg, PROT_READ | PROT_WRITE) < 0;
	}
	if (lost) {
		to->broken = true;
		to->ops->isolation_lost(to, "a failed page remap could not be undone");
	}
}

/* Moves the sender's pages into the receiver's slots; the sender's slots get
 * the pages those receive slots held if they hold only its own data, else
 * pages from the pool. The receiver loses its old page before the sender can
 * write to it, and the sender loses the message before the receiver is told
 * of it. A mapping that fails undoes the pages moved so far: the send fails
 * with ownership unchanged. */
static int deliver_by_remap(struct msgq_endpoint *from, uint32_t first, struct msgq_endpoint *to, uint32_t r,
			    uint32_t n)
{
	struct page_pool *pool = from->sw->pool;
	uint64_t zeroed_before = pool->zeroed;
	/* Choose every page first: the pool was checked to have them. */
	for (uint32_t i = 0; i < n; i++) {
		struct msgq_move *mv = &from->moves[i];
		uint8_t tag = to->recv_tag[r + i];
		mv->msg = from->send_page[first + i];
		mv->old = to->recv_page[r + i];
		bool swap = mv->old != POOL_NONE && (tag == from->id || tag == POOL_CLEAN);
		mv->fresh = swap ? mv->old : pool_alloc(pool, (uint8_t)from->id); /* a swap: no zeroing, no pool */
	}
	for (uint32_t i = 0; i < n; i++) {
		struct msgq_move *mv = &from->moves[i];
		if (pool_map(pool, recv_addr(to, r + i), mv->msg, PROT_READ) < 0) {
			undo_remap(from, first, to, r, i);
			goto failed;
		}
		if (pool_map(pool, send_addr(from, first + i), mv->fresh, PROT_READ | PROT_WRITE) < 0) {
			undo_remap(from, first, to, r, i + 1);
			goto failed;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		struct msgq_move *mv = &from->moves[i];
		if (mv->old != POOL_NONE && mv->fresh != mv->old)
			pool_free(pool, mv->old, to->recv_tag[r + i]);
		from->send_page[first + i] = mv->fresh;
		to->recv_page[r + i] = mv->msg;
		to->recv_tag[r + i] = (uint8_t)from->id;
		to->recv_held[r + i] = 1;
	}
	atomic_fetch_add(&from->ctr.pages_remapped, n);
	atomic_fetch_add(&from->ctr.pages_zeroed_for_reuse, pool->zeroed - zeroed_before);
	return MSGQ_OK;
failed:
	/* Fresh pages from the pool go back; the sender may have written to
	 * them while they were mapped. */
	for (uint32_t i = 0; i < n; i++)
		if (from->moves[i].fresh != from->moves[i].old)
			pool_free(pool, from->moves[i].fresh, (uint8_t)from->id);
	return map_failed(from, "cannot remap a message page");
}

/* The pool is short for a remap into receive slots [r, r + n) because they
 * keep pages with other VMs' data, which cannot become the sender's: those
 * pages go back to the pool first (the slots show the zero area meanwhile),
 * where they can be zeroed for the sender. Every slot keeping its page for
 * good would otherwise refuse such remaps for ever. */
static int evict_foreign(struct msgq_endpoint *from, struct msgq_endpoint *to, uint32_t r, uint32_t n)
{
	struct page_pool *pool = from->sw->pool;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t page = to->recv_page[r + i];
		uint8_t tag = to->recv_tag[r + i];
		if (page == POOL_NONE || tag == from->id || tag == POOL_CLEAN)
			continue;
		if (pool_map_zero(pool, recv_addr(to, r + i), r + i, 1) < 0)
			return map_failed(from, "cannot clear a receive slot");
		pool_free(pool, page, tag);
		to->recv_page[r + i] = POOL_NONE;
		to->recv_tag[r + i] = POOL_CLEAN;
	}
	return MSGQ_OK;
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
		return dest <= MSGQ_MAX_VMS && sw->away[dest] && allowed(from, dest) ? MSGQ_E_DEST_DOWN : MSGQ_E_NO_DEST;
	if (!allowed(from, dest))
		return MSGQ_E_DENIED;
	if (!to->up || to->broken || atomic_load(to->vm_stopping))
		return MSGQ_E_DEST_DOWN;
	/* The receiver's header buffer first: once pages move, the receiver
	 * is told, always. */
	if (!to->ops->reserve(to))
		return MSGQ_E_FULL;
	uint32_t r = n <= to->recv_slots ? find_recv_slots(to, n) : POOL_NONE;
	if (r == POOL_NONE && to->ops->reclaim) {
		to->ops->reclaim(to); /* slots the receiver gave back quietly */
		r = n <= to->recv_slots ? find_recv_slots(to, n) : POOL_NONE;
	}
	if (r == POOL_NONE) {
		to->ops->unreserve(to);
		return MSGQ_E_FULL;
	}

	mode &= MSGQ_SEND_MODE_MASK; /* other flag bits are the device's business */
	bool copy = mode == MSGQ_SEND_COPY || (mode == MSGQ_SEND_ADAPTIVE && len < sw->copy_threshold);
	/* Check the pool up front, so a message never moves halfway. */
	int st = MSGQ_OK;
	if (!copy && sw->pool->nr_free < pages_needed(from, to, r, n, copy))
		st = evict_foreign(from, to, r, n);
	if (st == MSGQ_OK)
		st = sw->pool->nr_free < pages_needed(from, to, r, n, copy) ? MSGQ_E_FULL
		     : copy ? deliver_by_copy(from, first_slot, to, r, n, len)
			    : deliver_by_remap(from, first_slot, to, r, n);
	if (st != MSGQ_OK) {
		to->recv_cursor = r; /* the slots stay free */
		to->ops->unreserve(to);
		return st;
	}
	struct msgq_recv_hdr h = {
		.src = from->id, .flags = copy ? 0 : MSGQ_RECV_REMAPPED, .len = len,
		.slot = r, .nr_pages = n, .cookie = cookie,
	};
	to->ops->deliver(to, &h);
	*how = copy ? MSGQ_HOW_COPIED : MSGQ_HOW_REMAPPED;
	atomic_fetch_add(&from->ctr.sent, 1);
	atomic_fetch_add(&to->ctr.received, 1);
	return MSGQ_OK;
}

int msgq_switch_return(struct msgq_endpoint *ep, uint32_t slot, uint32_t n)
{
	if (n == 0 || slot >= ep->recv_slots || n > ep->recv_slots - slot)
		return -1;
	if (memchr(ep->recv_held + slot, 0, n))
		return -1; /* not holding a message: a double return */
	release_recv(ep, slot, n);
	return 0;
}

void msgq_slot_geometry(const struct msgq_device_config *mc, bool huge, uint32_t *send, uint32_t *recv,
			uint32_t *max)
{
	*send = mc->send_slots ? mc->send_slots : huge ? 8 : 1024;
	*recv = mc->recv_slots ? mc->recv_slots : huge ? 8 : 1024;
	*max = mc->max_msg_pages ? mc->max_msg_pages : huge ? 4 : 512;
	if (*max > *send)
		*max = *send;
}

/* Mappings each VM needs besides its message window (RAM, vCPU stacks and
 * guards, the run structure, devices), and the process's own slack. */
#define MAPPINGS_PER_VM(vcpus) (16 + 4 * (uint64_t)(vcpus))
#define MAPPINGS_SLACK 1024

/* Pool pages for every VM's windows with this page size, and the longest
 * receive region (the zero area); false if no VM has a msgq device. With
 * `mappings`, also the memory mappings the run may need at most. */
static bool msgq_pool_size(const struct ferry_config *cfg, bool huge, uint64_t *pages, uint64_t *longest_recv,
			   uint64_t *mappings)
{
	bool any = false;
	uint64_t maps = MAPPINGS_SLACK;
	*pages = *longest_recv = 0;
	for (unsigned i = 0; i < cfg->nr_vms; i++) {
		const struct device_config *d = config_find_device(&cfg->vms[i], DEV_MSGQ);
		uint32_t send, recv, max;
		maps += MAPPINGS_PER_VM(cfg->vms[i].vcpus);
		if (!d)
			continue;
		any = true;
		msgq_slot_geometry(&d->msgq, huge, &send, &recv, &max);
		maps += msgq_window_mappings(send, recv) + (d->msgq.rings ? msgq_rings_mappings() : 0);
		*pages += send + recv; /* a page per send slot, and per message page in flight */
		if (recv > *longest_recv)
			*longest_recv = recv;
	}
	if (mappings)
		*mappings = maps;
	return any;
}

/* VMs added to a running ferry: their windows must fit in the pool beside
 * what the running endpoints may hold (a page per slot), its zero area and
 * the process's memory mappings. They get no direct rings: a ring is set
 * up at start-up, in both VMs' windows. */
static int msgq_reserve(struct msgq_switch *sw, const struct ferry_config *cfg, char *err, size_t errlen)
{
	uint64_t pages, longest_recv, maps, in_use, limit;
	bool huge = sw->page_size > 4096;
	if (!msgq_pool_size(cfg, huge, &pages, &longest_recv, &maps))
		return 0;
	pthread_mutex_lock(&sw->lock);
	uint64_t held = 2; /* the pool's spare pages for measuring */
	for (unsigned i = 1; i <= MSGQ_MAX_VMS; i++)
		if (sw->ep[i])
			held += (uint64_t)sw->ep[i]->send_slots + sw->ep[i]->recv_slots;
	uint64_t capacity = sw->pool->nr_pages, zero = sw->pool->zero_pages;
	pthread_mutex_unlock(&sw->lock);
	if (held + pages > capacity) {
		snprintf(err, errlen,
			 "msgq: the page pool has room for %llu more pages and these VMs' windows need %llu (start "
			 "ferry with \"msgq\": {\"spare_pages\": N} to keep room for VMs added later)",
			 (unsigned long long)(capacity > held ? capacity - held : 0), (unsigned long long)pages);
		return -1;
	}
	if (longest_recv > zero) {
		snprintf(err, errlen, "msgq: at most %llu recv_slots for a VM added now (the longest of those at start)",
			 (unsigned long long)zero);
		return -1;
	}
	if (!gm_mappings_fit(maps - MAPPINGS_SLACK, &in_use, &limit)) {
		snprintf(err, errlen, "msgq: the new windows may need %llu memory mappings, and vm.max_map_count allows "
			 "%llu (%llu in use)", (unsigned long long)maps, (unsigned long long)limit,
			 (unsigned long long)in_use);
		return -1;
	}
	return 0;
}

static int create_pool(struct vmm *vmm, const struct ferry_config *cfg, bool huge, char *err, size_t errlen);

int msgq_setup(struct vmm *vmm, const struct ferry_config *cfg, char *err, size_t errlen)
{
	if (vmm->msgq)
		return msgq_reserve(vmm->msgq, cfg, err, errlen);
	uint64_t pages, longest_recv;
	bool huge = false;
	for (unsigned i = 0; i < cfg->nr_vms; i++)
		if (config_find_device(&cfg->vms[i], DEV_MSGQ))
			huge = cfg->vms[i].hugepages; /* the config checked they all agree */
	uint64_t maps, in_use, limit, small_pages, small_recv;
	if (!msgq_pool_size(cfg, huge, &pages, &longest_recv, NULL))
		return 0;
	/* Each slot of a window can become a mapping of its own: refuse now
	 * what could exhaust the process's mappings later, when a remap that
	 * fails would have to be undone. With the 4 KiB geometry: the most
	 * slots, should huge pages fall back. */
	msgq_pool_size(cfg, false, &small_pages, &small_recv, &maps);
	if (!gm_mappings_fit(maps, &in_use, &limit)) {
		snprintf(err, errlen,
			 "msgq: the message windows may need up to %llu memory mappings, and vm.max_map_count "
			 "allows %llu (%llu in use): use fewer send_slots/recv_slots, or raise vm.max_map_count",
			 (unsigned long long)maps, (unsigned long long)limit, (unsigned long long)in_use);
		return -1;
	}
	char why[256];
	/* Two spare pages for measuring the copy threshold. Locked until the
	 * pool is mapped: another ferry must not count on the same pages. */
	gm_hugepages_lock();
	if (huge && !gm_reserve_hugepages(pages + cfg->msgq.spare_pages + 2 + longest_recv, why, sizeof(why))) {
		log_warn(NULL, "msgq: using 4 KiB pages instead of 2 MiB: %s", why);
		huge = false;
	}
	int rc = create_pool(vmm, cfg, huge, err, errlen);
	gm_hugepages_unlock();
	return rc;
}

/* The pool, and the rings' shared memory; with 4 KiB pages if the kernel
 * cannot allocate the huge ones after all. */
static int create_pool(struct vmm *vmm, const struct ferry_config *cfg, bool huge, char *err, size_t errlen)
{
	uint64_t pages, longest_recv;
	for (;;) {
		msgq_pool_size(cfg, huge, &pages, &longest_recv, NULL);
		pages += cfg->msgq.spare_pages; /* for VMs added later */
		vmm->msgq = msgq_switch_create((uint32_t)pages, (uint32_t)longest_recv, huge ? 2ull << 20 : 4096,
					       cfg->msgq.copy_threshold, err, errlen);
		if (vmm->msgq && msgq_rings_setup(vmm->msgq, cfg, err, errlen) < 0) {
			msgq_switch_destroy(vmm->msgq);
			vmm->msgq = NULL;
			return -1;
		}
		if (vmm->msgq || !huge)
			return vmm->msgq ? 0 : -1;
		/* The kernel could not allocate the huge pages after all. */
		log_warn(NULL, "msgq: using 4 KiB pages instead of 2 MiB: %s", err);
		huge = false;
	}
}
