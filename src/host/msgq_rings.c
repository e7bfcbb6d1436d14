#include "host/msgq_rings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host/msgq_switch.h"
#include "vmm/config.h"
#include "vmm/log.h"

/* Every ring: its data area (ring_size), then its ack page. */
static uint64_t ring_stride(const struct msgq_rings *rings)
{
	return rings->ring_size + MSGQ_RING_ACK;
}

static volatile struct msgq_ring_hdr *hdr_of(struct msgq_rings *rings, const struct msgq_ring *r)
{
	return (volatile struct msgq_ring_hdr *)(rings->base + r->off);
}

static volatile struct msgq_ring_ack *ack_of(struct msgq_rings *rings, const struct msgq_ring *r)
{
	return (volatile struct msgq_ring_ack *)(rings->base + r->off + rings->ring_size);
}

static bool has_rings(const struct ferry_config *cfg, unsigned vm)
{
	const struct device_config *d = config_find_device(&cfg->vms[vm], DEV_MSGQ);
	return d && d->msgq.rings;
}

int msgq_rings_setup(struct msgq_switch *sw, const struct ferry_config *cfg, char *err, size_t errlen)
{
	struct msgq_rings *rings = &sw->rings;
	unsigned readers[MSGQ_MAX_VMS + 1] = { 0 }, nr = 0;
	rings->fd = -1;
	rings->ring_size = (uint64_t)(cfg->msgq.ring_kib ? cfg->msgq.ring_kib : CFG_MSGQ_RING_KIB) << 10;
	/* A ring for each allowed pair with rings at both ends; a VM reads at
	 * most MSGQ_MAX_PEERS (its config has room for that many sources), in
	 * config order: the pairs beyond go through ferry. */
	rings->ring = calloc((size_t)cfg->nr_vms * MSGQ_MAX_PEERS + 1, sizeof(*rings->ring));
	if (!rings->ring) {
		snprintf(err, errlen, "msgq: out of memory");
		return -1;
	}
	for (unsigned i = 0; i < cfg->nr_vms; i++) {
		const struct device_config *d = config_find_device(&cfg->vms[i], DEV_MSGQ);
		if (!has_rings(cfg, i))
			continue;
		for (unsigned p = 0; p < d->msgq.nr_peers; p++) {
			unsigned k = 0;
			while (k < cfg->nr_vms && strcmp(cfg->vms[k].name, d->msgq.peers[p]))
				k++;
			if (k == cfg->nr_vms || !has_rings(cfg, k))
				continue;
			uint32_t dst = config_vm_id(k);
			if (readers[dst] == MSGQ_MAX_PEERS) {
				log_warn(cfg->vms[i].name, "msgq: %s already reads %d rings; messages to it go through ferry",
					 cfg->vms[k].name, MSGQ_MAX_PEERS);
				continue;
			}
			readers[dst]++;
			rings->ring[nr] = (struct msgq_ring){ .src = config_vm_id(i), .dst = dst,
							      .off = nr * ring_stride(rings) };
			nr++;
		}
	}
	rings->nr = nr;
	if (!nr)
		return 0;
	rings->bytes = nr * ring_stride(rings);
	rings->fd = memfd_create("ferry-msgq-rings", MFD_CLOEXEC);
	if (rings->fd < 0 || ftruncate(rings->fd, (off_t)rings->bytes) < 0) {
		snprintf(err, errlen, "msgq: cannot make %u direct rings of %llu KiB: %s", nr,
			 (unsigned long long)(rings->ring_size >> 10), strerror(errno));
		return -1;
	}
	void *base = mmap(NULL, rings->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, rings->fd, 0);
	if (base == MAP_FAILED) {
		snprintf(err, errlen, "msgq: cannot map the direct rings: %s", strerror(errno));
		return -1;
	}
	rings->base = base;
	return 0;
}

void msgq_rings_destroy(struct msgq_rings *rings)
{
	if (rings->base)
		munmap(rings->base, rings->bytes);
	if (rings->fd >= 0)
		close(rings->fd);
	free(rings->ring);
	memset(rings, 0, sizeof(*rings));
	rings->fd = -1;
}

uint64_t msgq_rings_mappings(void)
{
	/* A data area and an ack page per ring, each way. */
	return 4ull * MSGQ_MAX_PEERS;
}

/* Maps `len` bytes of the rings' memfd at `off` over `at`. */
static int map_piece(struct msgq_rings *rings, uint8_t *at, uint64_t off, uint64_t len, int prot)
{
	void *r = mmap(at, len, prot, MAP_SHARED | MAP_FIXED | MAP_POPULATE, rings->fd, (off_t)off);
	return r == MAP_FAILED ? -1 : 0;
}

int msgq_rings_attach(struct msgq_endpoint *ep, char *err, size_t errlen)
{
	struct msgq_rings *rings = &ep->sw->rings;
	ep->nr_tx_rings = ep->nr_rx_rings = 0;
	for (unsigned i = 0; i < rings->nr; i++) {
		if (rings->ring[i].src == ep->id && ep->nr_tx_rings < MSGQ_MAX_PEERS)
			ep->tx_ring[ep->nr_tx_rings++] = i;
		if (rings->ring[i].dst == ep->id && ep->nr_rx_rings < MSGQ_MAX_PEERS)
			ep->rx_ring[ep->nr_rx_rings++] = i;
	}
	if (!ep->nr_tx_rings && !ep->nr_rx_rings)
		return 0;
	uint64_t rs = rings->ring_size;
	ep->rings_rw = ep->nr_tx_rings * rs + ep->nr_rx_rings * MSGQ_RING_ACK;
	ep->rings_ro = ep->nr_rx_rings * rs + ep->nr_tx_rings * MSGQ_RING_ACK;
	void *view = mmap(NULL, ep->rings_rw + ep->rings_ro, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	if (view == MAP_FAILED) {
		snprintf(err, errlen, "msgq %s: cannot reserve its rings' window: %s", ep->name, strerror(errno));
		return -1;
	}
	ep->rings_hva = view;
	uint8_t *rw = ep->rings_hva, *ro = ep->rings_hva + ep->rings_rw;
	bool ok = true;
	/* What this VM writes: its rings' data areas, the ack pages of the
	 * rings it reads. What it only reads: the others. */
	for (unsigned i = 0; ok && i < ep->nr_tx_rings; i++) {
		const struct msgq_ring *r = &rings->ring[ep->tx_ring[i]];
		ok = map_piece(rings, rw + i * rs, r->off, rs, PROT_READ | PROT_WRITE) == 0 &&
		     map_piece(rings, ro + ep->nr_rx_rings * rs + i * MSGQ_RING_ACK, r->off + rs, MSGQ_RING_ACK,
			       PROT_READ) == 0;
	}
	for (unsigned j = 0; ok && j < ep->nr_rx_rings; j++) {
		const struct msgq_ring *r = &rings->ring[ep->rx_ring[j]];
		ok = map_piece(rings, ro + j * rs, r->off, rs, PROT_READ) == 0 &&
		     map_piece(rings, rw + ep->nr_tx_rings * rs + j * MSGQ_RING_ACK, r->off + rs, MSGQ_RING_ACK,
			       PROT_READ | PROT_WRITE) == 0;
	}
	if (!ok) {
		snprintf(err, errlen, "msgq %s: cannot map its direct rings: %s", ep->name, strerror(errno));
		munmap(ep->rings_hva, ep->rings_rw + ep->rings_ro);
		ep->rings_hva = NULL;
		return -1;
	}
	return 0;
}

static struct msgq_endpoint *endpoint(struct msgq_switch *sw, uint32_t id)
{
	return id <= MSGQ_MAX_VMS ? sw->ep[id] : NULL;
}

static void wake(struct msgq_switch *sw, uint32_t id, unsigned queue)
{
	struct msgq_endpoint *ep = endpoint(sw, id);
	if (ep && ep->up && ep->ops && ep->ops->wake) {
		ep->ops->wake(ep, queue);
		atomic_fetch_add(&ep->ring_wakeups, 1);
	}
}

/* Wakes the sender of ring r if it waits for room with a token not yet
 * answered. */
static void answer_sender(struct msgq_switch *sw, struct msgq_ring *r)
{
	uint32_t token = hdr_of(&sw->rings, r)->wake_tx;
	if (token && token != r->answered_tx) {
		r->answered_tx = token;
		wake(sw, r->src, MSGQ_QUEUE_SEND);
	}
}

static void answer_receiver(struct msgq_switch *sw, struct msgq_ring *r)
{
	uint32_t token = ack_of(&sw->rings, r)->wake_rx;
	if (token && token != r->answered_rx) {
		r->answered_rx = token;
		wake(sw, r->dst, MSGQ_QUEUE_RECV);
	}
}

/* Closes ring r (its receiver is gone or starts over): the sender stops
 * writing it, and is woken if it waits for room. */
static void close_ring(struct msgq_switch *sw, struct msgq_ring *r)
{
	volatile struct msgq_ring_ack *ack = ack_of(&sw->rings, r);
	ack->open = 0;
	ack->wake_rx = 0;
	r->answered_rx = 0;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	answer_sender(sw, r);
}

void msgq_rings_detach(struct msgq_endpoint *ep)
{
	struct msgq_switch *sw = ep->sw;
	for (unsigned j = 0; j < ep->nr_rx_rings; j++)
		close_ring(sw, &sw->rings.ring[ep->rx_ring[j]]);
	if (ep->rings_hva)
		munmap(ep->rings_hva, ep->rings_rw + ep->rings_ro);
	ep->rings_hva = NULL;
	ep->nr_tx_rings = ep->nr_rx_rings = 0;
}

void msgq_rings_doorbell(struct msgq_endpoint *ep)
{
	struct msgq_switch *sw = ep->sw;
	atomic_fetch_add(&ep->ring_doorbells, 1);
	/* At most 2 * MSGQ_MAX_PEERS rings, an interrupt each per token the
	 * waiting side chose: a doorbell rung in a loop costs its ringer the
	 * exits and nobody else anything. */
	for (unsigned i = 0; i < ep->nr_tx_rings; i++)
		answer_receiver(sw, &sw->rings.ring[ep->tx_ring[i]]);
	for (unsigned j = 0; j < ep->nr_rx_rings; j++)
		answer_sender(sw, &sw->rings.ring[ep->rx_ring[j]]);
}

void msgq_rings_reset(struct msgq_endpoint *ep)
{
	struct msgq_switch *sw = ep->sw;
	for (unsigned j = 0; j < ep->nr_rx_rings; j++)
		close_ring(sw, &sw->rings.ring[ep->rx_ring[j]]);
	for (unsigned i = 0; i < ep->nr_tx_rings; i++)
		sw->rings.ring[ep->tx_ring[i]].answered_tx = 0;
}

/* Slots published and not consumed, as the two sides last wrote them
 * (untrusted: a bad value only makes ferry wake someone needlessly). */
static uint64_t backlog(struct msgq_rings *rings, const struct msgq_ring *r)
{
	return hdr_of(rings, r)->prod - ack_of(rings, r)->cons;
}

void msgq_rings_check(struct msgq_endpoint *ep)
{
	struct msgq_switch *sw = ep->sw;
	struct msgq_rings *rings = &sw->rings;
	uint64_t nslots = (rings->ring_size - MSGQ_RING_HDR) / MSGQ_RING_SLOT;
	for (unsigned i = 0; i < ep->nr_tx_rings; i++) {
		struct msgq_ring *r = &rings->ring[ep->tx_ring[i]];
		struct msgq_endpoint *to = endpoint(sw, r->dst);
		bool gone = !to || !to->up || to->broken || (to->vm_stopping && atomic_load(to->vm_stopping));
		if (gone && ack_of(rings, r)->open)
			close_ring(sw, r);
		/* The drivers look for each other's tokens without a barrier
		 * where one per message would cost too much: what they miss in
		 * that race is answered here. A receiver asleep on a ring with
		 * messages, a sender asleep on one with room. */
		else if (backlog(rings, r))
			answer_receiver(sw, r);
	}
	for (unsigned j = 0; j < ep->nr_rx_rings; j++) {
		struct msgq_ring *r = &rings->ring[ep->rx_ring[j]];
		if (backlog(rings, r) < nslots)
			answer_sender(sw, r);
	}
}

bool msgq_ring_state(struct msgq_endpoint *ep, bool tx, unsigned i, struct msgq_ring_state *out)
{
	struct msgq_rings *rings = &ep->sw->rings;
	if (i >= (tx ? ep->nr_tx_rings : ep->nr_rx_rings))
		return false;
	const struct msgq_ring *r = &rings->ring[tx ? ep->tx_ring[i] : ep->rx_ring[i]];
	volatile struct msgq_ring_ack *ack = ack_of(rings, r);
	*out = (struct msgq_ring_state){ .peer = tx ? r->dst : r->src, .open = ack->open == MSGQ_RING_OPEN,
					 .prod = hdr_of(rings, r)->prod, .cons = ack->cons, .wake_rx = ack->wake_rx,
					 .wake_tx = hdr_of(rings, r)->wake_tx, .answered_rx = r->answered_rx,
					 .answered_tx = r->answered_tx };
	return true;
}
