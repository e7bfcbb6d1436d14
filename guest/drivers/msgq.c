/* virtio-msgq driver: message queues to other VMs (include/msgq.h). The send
 * queue carries [header][payload in the send region][status] chains; the
 * receive queue holds header buffers the device fills; the return queue
 * gives receive slots back in batches. With MSGQ_F_RINGS, copied messages go
 * through direct rings with the peers that have them (msgq_ring.c), without
 * ferry. */
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "msgq_ring.h"
#include "paging.h"
#include "pci.h"
#include "timer.h"
#include "virtio_pci.h"
#include "virtqueue.h"
#include "x86.h"

#define SENDQ_MAX    4096  /* 3 descriptors a send: ~1365 in flight */
#define RECVQ_MAX    1024
#define RETQ_MAX     64
#define RETURN_BATCH 64      /* slot runs per return buffer */
#define NR_BATCHES   16

struct send_ctx {
	struct msgq_send_hdr hdr;
	struct msgq_send_status st;
	struct send_ctx *next_free;
};

struct return_batch {
	struct msgq_return e[RETURN_BATCH];
	unsigned n;
	bool in_flight;
};

static int state;                  /* 0: not probed, 1: present, -1: absent */
static struct virtio_dev dev;
static struct virtqueue sendq, recvq, retq;
static struct msgq_config cfg;
static uint8_t *window;
static uint64_t send_bytes;
static struct send_ctx *ctxs, *free_ctx;
static unsigned in_flight;
static struct msgq_recv_hdr *rx;
static struct return_batch *batches;
static unsigned cur_batch;
static uint8_t *slot_used;         /* send-region allocator, one byte per slot */
static struct msgq_stats stats;

/* Direct rings (MSGQ_F_RINGS). */
#define RING_SPIN_NS 1000000ull    /* a full ring: spin this long before saying so (as the ivshmem rings do) */
#define RING_DONE_MAX 4096          /* ring sends completed and not yet reaped */
static struct tx_ring *tx_rings;
static struct rx_ring *rx_rings;
static unsigned nr_tx_rings, nr_rx_rings, rx_next;
static uintptr_t ring_doorbell;
static uint32_t ring_done[RING_DONE_MAX];  /* cookies */
static unsigned ring_done_first, ring_done_n;
static struct tx_ring *waiting_ring;       /* the last ring found full, and for what */
static uint32_t waiting_len;
/* A message from the receive queue kept back while ring messages sent
 * before it are returned first. */
static struct msg stashed;
static bool have_stashed;

static void post_rx(struct msgq_recv_hdr *h)
{
	struct vq_seg seg = { h, sizeof(*h) };
	if (vq_add(&recvq, &seg, 0, 1, h))
		stats.bad_headers++; /* cannot happen: we re-post what we took */
}

static void doorbell_vector(void *arg)
{
	(void)arg; /* never raised: ferry answers ring doorbells on queues 0 and 1 */
}

/* BAR 4: this VM's tx rings and the ack pages of its rx rings (read-write),
 * then its rx rings and the acks of its tx rings (read-only). */
static int setup_rings(void)
{
	if (!virtio_has_feature(&dev, MSGQ_F_RINGS) || (!cfg.nr_tx_rings && !cfg.nr_rx_rings))
		return 0;
	uint64_t rs = cfg.ring_size, ack = MSGQ_RING_ACK;
	if (rs < 2 * MSGQ_RING_HDR || (rs & (rs - 1)) || cfg.nr_tx_rings > MSGQ_MAX_PEERS ||
	    cfg.nr_rx_rings > MSGQ_MAX_PEERS) {
		kprintf("msgq: bad ring geometry (%u tx, %u rx rings of %u bytes)\n", cfg.nr_tx_rings, cfg.nr_rx_rings,
			cfg.ring_size);
		return -1;
	}
	uint64_t rw = cfg.nr_tx_rings * rs + cfg.nr_rx_rings * ack, ro = cfg.nr_rx_rings * rs + cfg.nr_tx_rings * ack;
	struct pci_bar *bar = &dev.pci->bar[MSGQ_RINGS_BAR];
	if (!bar->size || bar->size < rw + ro || paging_map(bar->addr, rw + ro, 0)) {
		kprintf("msgq: rings BAR of %lu bytes cannot hold %lu\n", (unsigned long)bar->size,
			(unsigned long)(rw + ro));
		return -1;
	}
	int v = virtio_setup_doorbell(&dev, MSGQ_QUEUE_RING_DOORBELL, doorbell_vector, NULL, &ring_doorbell);
	if (v == -2)
		return -1;
	uint8_t *base = (uint8_t *)(uintptr_t)bar->addr, *rov = base + rw;
	tx_rings = kzalloc((cfg.nr_tx_rings + 1) * sizeof(*tx_rings));
	rx_rings = kzalloc((cfg.nr_rx_rings + 1) * sizeof(*rx_rings));
	if (!tx_rings || !rx_rings)
		return -1;
	for (unsigned i = 0; i < cfg.nr_tx_rings; i++)
		ring_tx_init(&tx_rings[i], cfg.tx_ring_dest[i], base + i * rs, rov + cfg.nr_rx_rings * rs + i * ack,
			     cfg.ring_size);
	for (unsigned j = 0; j < cfg.nr_rx_rings; j++)
		ring_rx_init(&rx_rings[j], cfg.rx_ring_src[j], rov + j * rs, base + cfg.nr_tx_rings * rs + j * ack,
			     cfg.ring_size);
	nr_tx_rings = cfg.nr_tx_rings;
	nr_rx_rings = cfg.nr_rx_rings;
	return 0;
}

static int probe(void)
{
	int err = virtio_pci_probe(&dev, VIRTIO_ID_MSGQ, 0);
	if (err)
		return -1;
	if (virtio_init(&dev, 1ull << MSGQ_F_RINGS))
		return -1;
	/* The ring fields exist only with the feature: an older device's
	 * config ends before them. */
	virtio_config_read(&dev, 0, &cfg,
			   virtio_has_feature(&dev, MSGQ_F_RINGS) ? sizeof(cfg) : offsetof(struct msgq_config, ring_size));
	if (cfg.page_size != 4096 && cfg.page_size != (2u << 20)) {
		kprintf("msgq: page size %u is neither 4 KiB nor 2 MiB\n", cfg.page_size);
		virtio_fail(&dev);
		return -1;
	}
	if (cfg.nr_peers > MSGQ_MAX_PEERS)
		cfg.nr_peers = MSGQ_MAX_PEERS;
	for (unsigned i = 0; i < cfg.nr_peers; i++)
		cfg.peers[i].name[MSGQ_NAME_LEN - 1] = '\0';

	/* The window: BAR 2, ordinary cached memory (not MMIO). */
	struct pci_bar *bar = &dev.pci->bar[MSGQ_WINDOW_BAR];
	send_bytes = (uint64_t)cfg.send_slots * cfg.page_size;
	uint64_t need = send_bytes + (uint64_t)cfg.recv_slots * cfg.page_size;
	if (!bar->size || bar->size < need || paging_map(bar->addr, need, 0)) {
		kprintf("msgq: window BAR of %lu bytes cannot hold %lu\n", (unsigned long)bar->size, (unsigned long)need);
		virtio_fail(&dev);
		return -1;
	}
	window = (uint8_t *)(uintptr_t)bar->addr;

	if (virtio_setup_queue(&dev, &sendq, MSGQ_QUEUE_SEND, SENDQ_MAX) ||
	    virtio_setup_queue(&dev, &recvq, MSGQ_QUEUE_RECV, RECVQ_MAX) ||
	    virtio_setup_queue(&dev, &retq, MSGQ_QUEUE_RETURN, RETQ_MAX))
		return -1;
	if (setup_rings() < 0) {
		virtio_fail(&dev);
		return -1;
	}
	ctxs = kzalloc(sendq.size * sizeof(*ctxs));
	rx = kzalloc(recvq.size * sizeof(*rx));
	batches = kzalloc(NR_BATCHES * sizeof(*batches));
	slot_used = kzalloc(cfg.send_slots);
	if (!ctxs || !rx || !batches || !slot_used)
		return -1;
	for (unsigned i = 0; i < sendq.size; i++) {
		ctxs[i].next_free = free_ctx;
		free_ctx = &ctxs[i];
	}
	/* Completions of sends are reaped by polling; only receives interrupt. */
	vq_disable_irq(&sendq);
	vq_disable_irq(&retq);
	virtio_driver_ok(&dev);
	/* Rings are read only once the device is up (ferry closes the rings
	 * of a receiver that is not), and before any receive buffer is posted:
	 * a sender that finds us taking messages through ferry finds our rings
	 * open too. */
	for (unsigned j = 0; j < nr_rx_rings; j++)
		ring_rx_open(&rx_rings[j]);
	for (unsigned i = 0; i < recvq.size; i++)
		post_rx(&rx[i]);
	pr_info("msgq: vm %u, %u+%u slots of %u KiB, %u peers, copy below %u bytes, %u+%u rings of %u KiB\n",
		cfg.vm_id, cfg.send_slots, cfg.recv_slots, cfg.page_size / 1024, cfg.nr_peers, cfg.copy_threshold,
		nr_tx_rings, nr_rx_rings, nr_tx_rings + nr_rx_rings ? cfg.ring_size / 1024 : 0);
	return 0;
}

int msgq_open(void)
{
	if (state == 0)
		state = probe() == 0 ? 1 : -1;
	return state == 1 ? 0 : -1;
}

bool msgq_present(void)
{
	return state == 1;
}

const struct msgq_config *msgq_config(void)
{
	return state == 1 ? &cfg : NULL;
}

uint32_t msgq_self(void)
{
	return state == 1 ? cfg.vm_id : 0;
}

uint32_t msgq_peer(const char *name)
{
	for (unsigned i = 0; state == 1 && i < cfg.nr_peers; i++)
		if (!strcmp(cfg.peers[i].name, name))
			return cfg.peers[i].vm_id;
	return 0;
}

uint8_t *msgq_send_region(void)
{
	return window;
}

uint8_t *msgq_recv_region(void)
{
	return window ? window + send_bytes : NULL;
}

static uint32_t slots_for(uint32_t len)
{
	return (uint32_t)((len + (uint64_t)cfg.page_size - 1) / cfg.page_size);
}

void *msgq_alloc(uint32_t len)
{
	uint32_t n = slots_for(len);
	if (state != 1 || n == 0 || n > cfg.send_slots)
		return NULL;
	for (uint32_t s = 0; s + n <= cfg.send_slots; s++) {
		uint32_t k = 0;
		while (k < n && !slot_used[s + k])
			k++;
		if (k == n) {
			memset(slot_used + s, 1, n);
			return window + (uint64_t)s * cfg.page_size;
		}
		s += k;
	}
	return NULL;
}

void msgq_free(void *buf, uint32_t len)
{
	uint8_t *p = buf;
	if (state != 1 || p < window || p >= window + send_bytes)
		return;
	uint32_t s = (uint32_t)((uint64_t)(p - window) / cfg.page_size), n = slots_for(len);
	if (s + n <= cfg.send_slots)
		memset(slot_used + s, 0, n);
}

static struct tx_ring *ring_to(uint32_t dest)
{
	for (unsigned i = 0; i < nr_tx_rings; i++)
		if (tx_rings[i].dest == dest)
			return &tx_rings[i];
	return NULL;
}

/* Copied messages take the ring: copy mode, or adaptive below the
 * threshold (remapping a page is what ferry is for). */
static bool ring_eligible(uint32_t flags, uint32_t len)
{
	uint32_t mode = flags & MSGQ_SEND_MODE_MASK;
	return len && (mode == MSG_COPY || (mode == MSG_ADAPTIVE && len < cfg.copy_threshold));
}

/* 1: sent on a ring; 0: not for a ring (go through ferry); -1: the ring
 * is full. */
static int post_on_ring(uint32_t dest, const void *buf, uint32_t len, uint32_t flags, uint32_t cookie)
{
	struct tx_ring *r = nr_tx_rings && ring_eligible(flags, len) ? ring_to(dest) : NULL;
	if (!r || !ring_fits(r, len) || !ring_is_open(r))
		return 0;
	if (ring_done_n == RING_DONE_MAX)
		return -1; /* reap first */
	int st = ring_send(r, buf, len, cookie, ring_doorbell, RING_SPIN_NS, flags & MSG_IMMEDIATE);
	if (st == RING_CLOSED)
		return 0;
	if (st == RING_FULL) {
		waiting_ring = r;
		waiting_len = len;
		return -1;
	}
	ring_done[(ring_done_first + ring_done_n++) % RING_DONE_MAX] = cookie;
	in_flight++;
	stats.posted++;
	stats.ring_sent++;
	return 1;
}

int msgq_post(uint32_t dest, const void *buf, uint32_t len, uint32_t flags, uint32_t cookie)
{
	struct send_ctx *c = free_ctx;
	if (state != 1)
		return -1;
	int on_ring = post_on_ring(dest, buf, len, flags, cookie);
	if (on_ring)
		return on_ring > 0 ? 0 : -1;
	if (!c || vq_num_free(&sendq) < 3)
		return -1;
	c->hdr = (struct msgq_send_hdr){ dest, flags, len, cookie };
	c->st = (struct msgq_send_status){ .status = 0xff, .cookie = cookie };
	struct vq_seg segs[3] = { { &c->hdr, sizeof(c->hdr) }, { (void *)buf, len ? len : 1 }, { &c->st, sizeof(c->st) } };
	if (vq_add(&sendq, segs, 2, 1, c))
		return -1;
	free_ctx = c->next_free;
	in_flight++;
	stats.posted++;
	if (flags & MSG_IMMEDIATE)
		vq_kick(&sendq);
	return 0;
}

void msgq_kick(void)
{
	if (state == 1)
		vq_kick(&sendq);
}

bool msgq_reap(struct msgq_done *done)
{
	uint32_t len = 0;
	if (ring_done_n) {
		*done = (struct msgq_done){ ring_done[ring_done_first], MSGQ_OK, MSGQ_HOW_RING };
		ring_done_first = (ring_done_first + 1) % RING_DONE_MAX;
		ring_done_n--;
		in_flight--;
		stats.reaped++;
		return true;
	}
	struct send_ctx *c = state == 1 ? vq_get_used(&sendq, &len) : NULL;
	if (!c)
		return false;
	done->cookie = c->hdr.cookie;
	/* A device that did not write a status could not parse the chain. */
	done->status = len >= sizeof(c->st) ? c->st.status : MSGQ_E_BAD_CHAIN;
	done->how = len >= sizeof(c->st) ? c->st.how : MSGQ_HOW_NONE;
	c->next_free = free_ctx;
	free_ctx = c;
	in_flight--;
	stats.reaped++;
	return true;
}

unsigned msgq_in_flight(void)
{
	return in_flight;
}

/* Halt conditions run in ring 0, which this kind of host interprets, and
 * one that read a ring (a read-only memory slot) there was seen to leave
 * the vCPU halted for good, deaf even to its timer: they look only at RAM
 * and at interrupt counters. Rings are looked at in ring 3, before halting
 * (with a wake token set) and after waking; the peer's doorbell, or ferry
 * at its polling interval, raises the interrupt that ends the halt. */
static uint64_t send_irqs_seen, recv_irqs_seen;

static bool sendq_has_used(void *arg)
{
	(void)arg;
	return vq_has_used(&sendq) || sendq.interrupts != send_irqs_seen;
}

void msgq_wait_sends(uint64_t timeout_ns)
{
	if (state != 1 || ring_done_n || vq_has_used(&sendq))
		return;
	send_irqs_seen = sendq.interrupts;
	/* Waiting for room in a ring: the receiver rings when it has made
	 * some, if it sees our token. */
	if (waiting_ring && ring_want_room(waiting_ring, waiting_len)) {
		ring_room_done(waiting_ring);
		waiting_ring = NULL;
		return;
	}
	vq_enable_irq(&sendq);
	halt_until(sendq_has_used, NULL, timeout_ns);
	vq_disable_irq(&sendq);
	if (waiting_ring)
		ring_room_done(waiting_ring);
	waiting_ring = NULL;
}

int msg_send(uint32_t dest, const void *buf, uint32_t len, uint32_t flags)
{
	static uint32_t next_cookie = 1;
	uint32_t cookie = next_cookie++;
	struct msgq_done d;
	if (msgq_post(dest, buf, len, flags, cookie) < 0)
		return MSGQ_E_FULL;
	/* Immediate: the status is already there. Deferred: the VMM takes it
	 * within poll_us; the timeout only guards against a dead device. */
	for (;;) {
		while (msgq_reap(&d))
			if (d.cookie == cookie)
				return d.status;
		send_irqs_seen = sendq.interrupts;
		vq_enable_irq(&sendq);
		bool got = halt_until(sendq_has_used, NULL, 1000000000ull);
		vq_disable_irq(&sendq);
		if (!got)
			return MSGQ_E_DEST_DOWN;
	}
}

int msgq_wait_peer(uint32_t dest, uint32_t mode, uint64_t timeout_ns)
{
	/* A one-byte copy; receivers see it as a message of length 1. */
	uint8_t *buf = msgq_alloc(1);
	int st = MSGQ_E_FULL;
	if (!buf)
		return st;
	buf[0] = 0;
	uint64_t until = time_ns() + timeout_ns;
	while ((st = msg_send(dest, buf, 1, mode | MSG_IMMEDIATE)) == MSGQ_E_DEST_DOWN || st == MSGQ_E_FULL) {
		if (time_ns() >= until)
			break;
		sleep_ms(2);
	}
	msgq_free(buf, 1);
	return st;
}

/* A header the device wrote must describe slots inside the receive region. */
static bool valid_rx(const struct msgq_recv_hdr *h, uint32_t len)
{
	return len >= sizeof(*h) && h->nr_pages && h->slot < cfg.recv_slots &&
	       h->nr_pages <= cfg.recv_slots - h->slot && h->len &&
	       h->len <= (uint64_t)h->nr_pages * cfg.page_size;
}

/* The next message from a ring, taking them in turn. */
static bool poll_rings(struct msg *m)
{
	for (unsigned n = 0; n < nr_rx_rings; n++) {
		struct rx_ring *r = &rx_rings[(rx_next + n) % nr_rx_rings];
		if (ring_poll(r, m)) {
			rx_next = (rx_next + n + 1) % nr_rx_rings;
			stats.received++;
			stats.ring_received++;
			return true;
		}
	}
	return false;
}

static bool poll_queue(struct msg *m)
{
	uint32_t len;
	struct msgq_recv_hdr *h;
	while (state == 1 && (h = vq_get_used(&recvq, &len)) != NULL) {
		if (!valid_rx(h, len)) {
			stats.bad_headers++;
			kprintf("msgq: device gave a bad receive header (slot %u, %u pages, %u bytes)\n", h->slot,
				h->nr_pages, h->len);
			post_rx(h);
			continue;
		}
		*m = (struct msg){ h->src, h->len, h->flags & MSGQ_RECV_REMAPPED, h->cookie, h->slot, h->nr_pages,
				   window + send_bytes + (uint64_t)h->slot * cfg.page_size, h };
		stats.received++;
		return true;
	}
	return false;
}

bool msg_poll(struct msg *m)
{
	if (state != 1)
		return false;
	if (!nr_rx_rings)
		return poll_queue(m);
	/* A message through ferry is returned after the ring messages that
	 * were published before it was delivered: its sender's ring messages
	 * sent before it come first. */
	if (!have_stashed)
		have_stashed = poll_queue(&stashed);
	if (poll_rings(m))
		return true;
	if (!have_stashed)
		return false;
	*m = stashed;
	have_stashed = false;
	return true;
}


static bool recvq_has_used(void *arg)
{
	(void)arg;
	return have_stashed || vq_has_used(&recvq) || recvq.interrupts != recv_irqs_seen;
}

/* Before halting: every ring's sender is asked to ring (true: something
 * came meanwhile). */
static bool rings_want_msgs(void)
{
	bool any = false;
	for (unsigned j = 0; j < nr_rx_rings; j++)
		any |= ring_want_msgs(&rx_rings[j]);
	return any;
}

static void rings_sleep_done(void)
{
	for (unsigned j = 0; j < nr_rx_rings; j++)
		ring_sleep_done(&rx_rings[j]);
}

/* Before halting, a receiver spins this long: a halt and the interrupt that
 * ends it cost far more than a short native spin on this kind of host. */
#define RECV_SPIN_NS 50000ull

bool msg_recv(struct msg *m, uint64_t timeout_ns)
{
	uint64_t start = time_ns();
	uint64_t deadline = timeout_ns == TIMEOUT_NEVER ? TIMEOUT_NEVER : start + timeout_ns;
	for (;;) {
		if (msg_poll(m))
			return true;
		uint64_t now = time_ns();
		if (state != 1 || now >= deadline)
			return false;
		bool irq = recvq.vector >= 0 && !(recvq.avail->flags & VRING_AVAIL_F_NO_INTERRUPT);
		if (irq && now - start > RECV_SPIN_NS) {
			recv_irqs_seen = recvq.interrupts;
			if (!rings_want_msgs())
				halt_until(recvq_has_used, NULL, deadline == TIMEOUT_NEVER ? TIMEOUT_NEVER : deadline - now);
			rings_sleep_done();
		} else {
			cpu_relax();
		}
	}
}

static void reap_returns(void)
{
	struct return_batch *b;
	while ((b = vq_get_used(&retq, NULL)) != NULL) {
		b->in_flight = false;
		b->n = 0;
	}
}

static bool retq_has_used(void *arg)
{
	(void)arg;
	return vq_has_used(&retq);
}

/* Hands the current batch of returned slots to the device with plain
 * stores: the VMM collects them when it delivers to this VM, when a sender
 * needs room, or at its poll interval. If no other batch buffer is free,
 * the current one keeps collecting instead (posting it would leave nowhere
 * for the next releases); only a full batch with nowhere to go makes the
 * driver ring (an exit) to have the others taken at once. */
void msgq_flush(void)
{
	struct return_batch *b;
	if (state != 1 || !(b = &batches[cur_batch])->n)
		return;
	reap_returns();
	for (;;) {
		for (unsigned k = 1; k < NR_BATCHES; k++) {
			unsigned i = (cur_batch + k) % NR_BATCHES;
			if (batches[i].in_flight)
				continue;
			struct vq_seg seg = { b->e, b->n * (uint32_t)sizeof(b->e[0]) };
			while (vq_add(&retq, &seg, 1, 0, b)) {
				vq_kick(&retq);
				reap_returns();
			}
			b->in_flight = true;
			cur_batch = i;
			return;
		}
		if (b->n < RETURN_BATCH)
			return;
		vq_kick(&retq);
		if (!vq_has_used(&retq))
			halt_until(retq_has_used, NULL, 1000000ull);
		reap_returns();
	}
}

void msg_release(struct msg *m)
{
	if (state != 1 || !m->priv)
		return;
	if (m->flags & MSGQ_RECV_RING) {
		ring_release(m->priv, m->slot, ring_doorbell);
		m->priv = NULL;
		stats.released++;
		return;
	}
	struct return_batch *b = &batches[cur_batch];
	b->e[b->n++] = (struct msgq_return){ m->slot, m->nr_pages };
	post_rx(m->priv);
	m->priv = NULL;
	stats.released++;
	if (b->n == RETURN_BATCH)
		msgq_flush();
}

void msgq_recv_irq(bool on)
{
	if (state != 1)
		return;
	if (on)
		vq_enable_irq(&recvq);
	else
		vq_disable_irq(&recvq);
}

void msgq_stats(struct msgq_stats *out)
{
	*out = stats;
	for (unsigned i = 0; i < nr_tx_rings; i++) {
		out->ring_full += tx_rings[i].full;
		out->ring_doorbells += tx_rings[i].doorbells;
	}
	for (unsigned j = 0; j < nr_rx_rings; j++)
		out->ring_doorbells += rx_rings[j].doorbells;
}

unsigned msgq_rings(uint32_t peer, bool *tx_open, bool *rx_open)
{
	struct tx_ring *t = state == 1 ? ring_to(peer) : NULL;
	bool from = false;
	for (unsigned j = 0; state == 1 && j < nr_rx_rings; j++)
		from |= rx_rings[j].src == peer && rx_rings[j].open && !rx_rings[j].broken;
	if (tx_open)
		*tx_open = t && ring_is_open(t);
	if (rx_open)
		*rx_open = from;
	return nr_tx_rings + nr_rx_rings;
}

uint8_t *msgq_ring_to(uint32_t peer, uint8_t **ack)
{
	struct tx_ring *t = state == 1 ? ring_to(peer) : NULL;
	if (ack)
		*ack = t ? (uint8_t *)(uintptr_t)t->ack : NULL;
	return t ? (uint8_t *)(uintptr_t)t->hdr : NULL;
}

uint8_t *msgq_ring_from(uint32_t peer, uint8_t **ack)
{
	for (unsigned j = 0; state == 1 && j < nr_rx_rings; j++)
		if (rx_rings[j].src == peer) {
			if (ack)
				*ack = (uint8_t *)(uintptr_t)rx_rings[j].ack;
			return (uint8_t *)(uintptr_t)rx_rings[j].hdr;
		}
	if (ack)
		*ack = NULL;
	return NULL;
}

void msgq_ring_doorbell(void)
{
	if (ring_doorbell)
		mmio_write16(ring_doorbell, MSGQ_QUEUE_RING_DOORBELL);
}
