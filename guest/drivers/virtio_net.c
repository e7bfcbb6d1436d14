/* virtio-net: receive and transmit queue pairs over the virtio core
 * (virtio 1.2 section 5.1). Each buffer is one descriptor holding the
 * 12-byte header and the frame (VERSION_1 implies any layout); receive
 * buffers are big enough for a whole frame, so MRG_RXBUF is not needed. */
#include "cmdline.h"
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "page_alloc.h"
#include "paging.h"
#include "smp.h"
#include "timer.h"
#include "virtio_net.h"
#include "x86.h"

#define ETH_HLEN_VLAN 18                  /* Ethernet header with one VLAN tag */
#define AREA_MAX      (1 * MiB)           /* buffer memory per queue, at most */
#define MIN_BUFS      8
#define TX_SPIN_NS    50000ull            /* a full transmit queue: spin this long, then halt */
#define TX_TIMEOUT_NS 1000000000ull
#define ZC_FULL_WAIT_NS 10000000ull        /* a full channel: wait this long, then drop */
/* Longer than ferry gives a draining channel: ferry ends the wait first,
 * and the frames left are read before pair 0's later ones. */
#define DRAIN_WAIT_NS 2000000000ull
#define PAIR0         0                   /* the queue pair every device has */


/* One slot per device probed, never reused: a device that failed to set
 * up may still have interrupt vectors pointing at its slot. */
static struct vnet devs[VNET_MAX_DEVS];
static struct vnet *working[VNET_MAX_DEVS];
static unsigned ndevs;

static unsigned area_order(uint64_t bytes)
{
	unsigned order = 0;

	while ((PAGE_SIZE << order) < bytes)
		order++;
	return order;
}

/* Every byte of buffer memory a pair uses comes from here (and goes back
 * through vnet_buf_area_free). Today: zeroed pages of guest RAM, touched
 * once now so the first frames do not pay the host's page faults. A device
 * that provides buffer memory (a shared-memory BAR) would carve it out of
 * that instead. */
static void *vnet_buf_area(struct vnet *n, unsigned pair, bool tx, uint64_t bytes, uint64_t *got)
{
	(void)n;
	(void)pair;
	(void)tx;
	*got = PAGE_SIZE << area_order(bytes);
	return alloc_pages_zeroed(area_order(bytes));
}

static void vnet_buf_area_free(struct vnet *n, unsigned pair, bool tx, void *area, uint64_t bytes)
{
	(void)n;
	(void)pair;
	(void)tx;
	if (area)
		free_pages(area, area_order(bytes));
}

static void post_rx(struct vnet *n, struct vnet_pair *qp, uint8_t *buf)
{
	(void)n;
	struct vq_seg seg = { buf, qp->buf_size };

	/* Cannot fail: there are no more receive buffers than descriptors. */
	if (vq_add(&qp->rxq, &seg, 0, 1, buf) == 0)
		qp->rx_reposted++;
}

static int pair_setup(struct vnet *n, unsigned p)
{
	struct vnet_pair *qp = &n->pair[p];
	uint64_t max_bufs;

	qp->index = p;
	qp->buf_size = n->buf_size;
	max_bufs = AREA_MAX / qp->buf_size;
	if (virtio_setup_queue(&n->vd, &qp->rxq, VIRTIO_NET_RXQ(p), VNET_QUEUE_MAX) ||
	    virtio_setup_queue(&n->vd, &qp->txq, VIRTIO_NET_TXQ(p), VNET_QUEUE_MAX))
		return -1;
	qp->nr_rx = (unsigned)MIN((uint64_t)qp->rxq.size, MAX(max_bufs, (uint64_t)MIN_BUFS));
	qp->nr_tx = (unsigned)MIN((uint64_t)qp->txq.size, MAX(max_bufs, (uint64_t)MIN_BUFS));
	qp->rx_area = vnet_buf_area(n, p, false, (uint64_t)qp->nr_rx * qp->buf_size, &qp->rx_area_bytes);
	qp->tx_area = vnet_buf_area(n, p, true, (uint64_t)qp->nr_tx * qp->buf_size, &qp->tx_area_bytes);
	qp->tx_free = kmalloc(qp->nr_tx * sizeof(*qp->tx_free));
	if (!qp->rx_area || !qp->tx_area || !qp->tx_free) {
		kprintf("%s: out of memory for buffers\n", n->name);
		return -1;
	}
	for (unsigned i = 0; i < qp->nr_tx; i++)
		qp->tx_free[i] = qp->tx_area + (uint64_t)(qp->nr_tx - 1 - i) * qp->buf_size;
	qp->tx_nfree = qp->nr_tx;
	/* Polled: a waiter turns receive interrupts on while it halts. */
	vq_disable_irq(&qp->rxq);
	vq_disable_irq(&qp->txq);
	return 0;
}

static void pair_free(struct vnet *n, unsigned p)
{
	struct vnet_pair *qp = &n->pair[p];

	vnet_buf_area_free(n, p, false, qp->rx_area, qp->rx_area_bytes);
	vnet_buf_area_free(n, p, true, qp->tx_area, qp->tx_area_bytes);
	kfree(qp->tx_free);
	vq_free(&qp->rxq);
	vq_free(&qp->txq);
}

static void config_changed(struct virtio_dev *vd, void *arg)
{
	struct vnet *n = arg;

	(void)vd;
	n->status_stale = true;
	n->zc_stale = true;
}

/* Without VIRTIO_NET_F_MAC: a locally administered unicast address. */
static void make_mac(struct vnet *n)
{
	uint64_t x = rdtsc() * 0x9e3779b97f4a7c15ull ^ n->index;

	for (unsigned i = 0; i < 6; i++)
		n->mac[i] = (uint8_t)(x >> (8 * i));
	n->mac[0] = (uint8_t)((n->mac[0] & 0xfe) | 0x02);
}

/* A channel's interrupt: the peer rang because this side sleeps. Halting
 * CPUs wake on any interrupt; nothing else to do. */
static void zc_interrupt(void *arg)
{
	struct vnet_zc *z = arg;

	z->doorbells++;
}

/* ferry's zero-copy window: BAR 2, ordinary cached memory (its receive half
 * is read-only to us: the device rejects writes there), and a doorbell per
 * channel. */
static int map_zc(struct vnet *n)
{
	struct pci_bar *bar = &n->vd.pci->bar[FERRY_ZC_BAR];

	if (!bar->size || bar->size < FERRY_ZC_BAR_SIZE || paging_map(bar->addr, FERRY_ZC_BAR_SIZE, 0)) {
		kprintf("%s: zero-copy BAR of %lu bytes is not the %lu expected\n", n->name, (unsigned long)bar->size,
			(unsigned long)FERRY_ZC_BAR_SIZE);
		return -1;
	}
	n->zc_base = (uint8_t *)(uintptr_t)bar->addr;
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
		struct vnet_zc *z = &n->zcc[c];

		z->tx_area = n->zc_base + FERRY_ZC_TX_OFFSET(c);
		z->rx_area = n->zc_base + FERRY_ZC_RX_OFFSET(c);
		z->tx = (volatile struct ferry_zc_ring *)z->tx_area;
		z->rx = (const volatile struct ferry_zc_ring *)z->rx_area;
		z->vector = virtio_setup_doorbell(&n->vd, FERRY_ZC_DOORBELL_QUEUE + c, zc_interrupt, z, &z->doorbell);
		if (z->vector == -2) {
			kprintf("%s: no doorbell for zero-copy channel %u\n", n->name, c);
			return -1;
		}
	}
	n->bounce = alloc_pages(0);
	return n->bounce ? 0 : -1;
}

static int setup(struct vnet *n, bool event_idx, bool zc)
{
	struct virtio_dev *vd = &n->vd;
	uint64_t wanted = 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_MTU | 1ull << VIRTIO_NET_F_STATUS;
	unsigned p;

	if (event_idx)
		wanted |= 1ull << VIRTIO_F_EVENT_IDX;
	if (zc)
		wanted |= 1ull << VIRTIO_NET_F_FERRY_ZC;
	if (virtio_init(vd, wanted))
		return -1;
	n->zc = virtio_has_feature(vd, VIRTIO_NET_F_FERRY_ZC);
	if (n->zc && map_zc(n)) {
		virtio_fail(vd);
		return -1;
	}
	if (virtio_has_feature(vd, VIRTIO_NET_F_MAC))
		virtio_config_read(vd, VIRTIO_NET_CFG_MAC, n->mac, sizeof(n->mac));
	else
		make_mac(n);
	n->mtu = 1500;
	if (virtio_has_feature(vd, VIRTIO_NET_F_MTU)) {
		uint16_t mtu = virtio_config_read16(vd, VIRTIO_NET_CFG_MTU);
		if (mtu < 68) {
			kprintf("%s: device MTU %u is below IPv4's 68\n", n->name, mtu);
			virtio_fail(vd);
			return -1;
		}
		n->mtu = mtu;
	}
	n->has_status = virtio_has_feature(vd, VIRTIO_NET_F_STATUS);
	if (n->has_status)
		n->status = virtio_config_read16(vd, VIRTIO_NET_CFG_STATUS);
	virtio_set_config_handler(vd, config_changed, n);
	/* A whole frame per buffer (spec 5.1.6.3.1: at least 1526 bytes, or
	 * room for the MTU). */
	n->buf_size = (uint32_t)ALIGN_UP(MAX(VNET_HDR_LEN + ETH_HLEN_VLAN + n->mtu, (uint32_t)VIRTIO_NET_MIN_RX_BUF), 64u);
	n->max_pairs = 1;  /* MQ is not negotiated */
	n->nr_pairs = 1;
	n->zc_stale = n->zc;
	for (p = 0; p < n->nr_pairs && !pair_setup(n, p); p++)
		;
	if (p < n->nr_pairs) {
		virtio_reset(vd);  /* the device must not touch memory we free */
		for (unsigned q = 0; q <= p; q++)
			pair_free(n, q);
		return -1;
	}
	virtio_driver_ok(vd);
	for (p = 0; p < n->nr_pairs; p++) {
		struct vnet_pair *qp = &n->pair[p];
		for (unsigned i = 0; i < qp->nr_rx; i++)
			post_rx(n, qp, qp->rx_area + (uint64_t)i * qp->buf_size);
		vnet_flush(n, p);
	}
	return 0;
}

int virtio_net_init(void)
{
	bool event_idx = cmdline_get_bool("net_event_idx", true), zc = cmdline_get_bool("net_zc", true);

	for (unsigned nth = 0; nth < VNET_MAX_DEVS; nth++) {
		struct vnet *n = &devs[nth];
		int err;

		memset(n, 0, sizeof(*n));
		n->index = ndevs;
		ksnprintf(n->name, sizeof(n->name), "eth%u", ndevs);
		err = virtio_pci_probe(&n->vd, VIRTIO_ID_NET, nth);
		if (err == -1)
			break;
		if (err || setup(n, event_idx, zc))
			continue;
		struct vnet_pair *qp = &n->pair[0];
		pr_info("virtio-net: %s %02x:%02x:%02x:%02x:%02x:%02x mtu %u link %s, %u queue pair%s, %u+%u buffers "
			"of %u bytes, %s%s%s\n",
			n->name, n->mac[0], n->mac[1], n->mac[2], n->mac[3], n->mac[4], n->mac[5], n->mtu,
			vnet_link_up(n) ? "up" : "down", n->nr_pairs, n->nr_pairs == 1 ? "" : "s", qp->nr_rx, qp->nr_tx,
			n->buf_size, qp->rxq.vector >= 0 ? "MSI-X" : "polled",
			virtio_has_feature(&n->vd, VIRTIO_F_EVENT_IDX) ? ", event idx" : "",
			n->zc ? ", zero-copy channels" : "");
		working[ndevs++] = n;
	}
	return (int)ndevs;
}

unsigned vnet_count(void)
{
	return ndevs;
}

struct vnet *vnet_get(unsigned index)
{
	return index < ndevs ? working[index] : NULL;
}

bool vnet_link_up(struct vnet *n)
{
	if (!n->has_status)
		return true;
	/* Without a config interrupt nothing tells us: read it every time. */
	if (n->status_stale || !n->vd.msix) {
		n->status_stale = false;
		n->status = virtio_config_read16(&n->vd, VIRTIO_NET_CFG_STATUS);
	}
	return n->status & VIRTIO_NET_S_LINK_UP;
}

static bool used_or_broken(void *arg)
{
	struct virtqueue *vq = arg;

	return vq->broken || vq_has_used(vq);
}

/* Halts until vq has a completion (its interrupt on meanwhile), or spins
 * without MSI-X. Returns whether one came within timeout_ns. */
static bool halt_for_used(struct virtqueue *vq, uint64_t timeout_ns)
{
	bool got;

	if (vq->vector < 0) {
		uint64_t start = time_ns();
		while (!used_or_broken(vq) && time_ns() - start < timeout_ns)
			cpu_relax();
		return vq_has_used(vq);
	}
	WRITE_ONCE(vq->waiter_apic_id, (int32_t)this_cpu()->apic_id);
	vq_enable_irq(vq);
	got = halt_until(used_or_broken, vq, timeout_ns);
	vq_disable_irq(vq);
	WRITE_ONCE(vq->waiter_apic_id, -1);
	return got;
}

unsigned vnet_tx_reclaim(struct vnet *n, unsigned pair)
{
	struct vnet_pair *qp = &n->pair[pair];
	unsigned got = 0;
	uint8_t *buf;

	while ((buf = vq_get_used(&qp->txq, NULL)) != NULL) {
		qp->tx_free[qp->tx_nfree++] = buf;
		got++;
	}
	return got;
}

/* Every buffer is with the device: tell it (it may not know of the last
 * ones), spin briefly (the device is usually about to finish), then halt
 * for the transmit interrupt. */
static void wait_tx(struct vnet *n, struct vnet_pair *qp)
{
	uint64_t start = time_ns(), now;

	qp->stats.tx_waits++;
	vnet_flush(n, qp->index);
	while ((now = time_ns()) - start < TX_TIMEOUT_NS && !qp->txq.broken) {
		if (vnet_tx_reclaim(n, qp->index))
			return;
		if (now - start < TX_SPIN_NS)
			cpu_relax();
		else
			halt_for_used(&qp->txq, TX_TIMEOUT_NS - (now - start));
	}
	qp->stats.tx_timeouts++;
}

void *vnet_tx_get(struct vnet *n, unsigned pair, uint32_t *cap)
{
	struct vnet_pair *qp = &n->pair[pair];

	if (!qp->tx_nfree && !vnet_tx_reclaim(n, pair))
		wait_tx(n, qp);
	if (!qp->tx_nfree)
		return NULL;
	*cap = qp->buf_size - VNET_HDR_LEN;
	return qp->tx_free[--qp->tx_nfree] + VNET_HDR_LEN;
}

/* The buffer a frame pointer handed out by vnet_tx_get belongs to, or NULL. */
static uint8_t *tx_buf_of(struct vnet *n, struct vnet_pair *qp, void *frame)
{
	uint8_t *buf = (uint8_t *)frame - VNET_HDR_LEN;
	uint64_t off = (uint64_t)(buf - qp->tx_area);

	(void)n;
	if (buf < qp->tx_area || off >= (uint64_t)qp->nr_tx * qp->buf_size || off % qp->buf_size)
		return NULL;
	return buf;
}

void vnet_tx_cancel(struct vnet *n, unsigned pair, void *frame)
{
	struct vnet_pair *qp = &n->pair[pair];
	uint8_t *buf = tx_buf_of(n, qp, frame);

	BUG_ON(!buf || qp->tx_nfree >= qp->nr_tx);
	qp->tx_free[qp->tx_nfree++] = buf;
}

void vnet_tx_put(struct vnet *n, unsigned pair, void *frame, uint32_t len)
{
	struct vnet_pair *qp = &n->pair[pair];
	uint8_t *buf = tx_buf_of(n, qp, frame);
	struct vq_seg seg = { buf, VNET_HDR_LEN + len };

	BUG_ON(!buf || len > qp->buf_size - VNET_HDR_LEN);
	/* No offloads: flags 0, GSO_NONE; num_buffers is unused on transmit. */
	memset(buf, 0, VNET_HDR_LEN);
	if (vq_add(&qp->txq, &seg, 1, 0, buf)) {
		qp->tx_free[qp->tx_nfree++] = buf;  /* broken queue: dropped */
		return;
	}
	qp->stats.tx_frames++;
	qp->stats.tx_bytes += len;
}

void *vnet_rx_get(struct vnet *n, unsigned pair, uint32_t *len)
{
	struct vnet_pair *qp = &n->pair[pair];
	uint32_t got;
	uint8_t *buf;

	while ((buf = vq_get_used(&qp->rxq, &got)) != NULL) {
		if (got < VNET_HDR_LEN + 14) {
			qp->stats.rx_errors++;
			post_rx(n, qp, buf);
			continue;
		}
		/* num_buffers is 1 without MRG_RXBUF, and the length is what
		 * the device wrote (the virtqueue layer caps it at the buffer). */
		*len = got - VNET_HDR_LEN;
		qp->stats.rx_frames++;
		qp->stats.rx_bytes += *len;
		return buf + VNET_HDR_LEN;
	}
	return NULL;
}

void vnet_rx_put(struct vnet *n, unsigned pair, void *frame)
{
	struct vnet_pair *qp = &n->pair[pair];
	uint8_t *buf = (uint8_t *)frame - VNET_HDR_LEN;
	uint64_t off = (uint64_t)(buf - qp->rx_area);

	BUG_ON(buf < qp->rx_area || off >= (uint64_t)qp->nr_rx * qp->buf_size || off % qp->buf_size);
	post_rx(n, qp, buf);
}

bool vnet_rx_pending(struct vnet *n, unsigned pair)
{
	return vq_has_used(&n->pair[pair].rxq);
}

void vnet_rx_irq(struct vnet *n, unsigned pair, bool on)
{
	struct virtqueue *vq = &n->pair[pair].rxq;

	if (on) {
		WRITE_ONCE(vq->waiter_apic_id, (int32_t)this_cpu()->apic_id);
		vq_enable_irq(vq);
	} else {
		vq_disable_irq(vq);
		WRITE_ONCE(vq->waiter_apic_id, -1);
	}
}

void vnet_flush(struct vnet *n, unsigned pair)
{
	struct vnet_pair *qp = &n->pair[pair];

	if (qp->rx_reposted) {
		vq_kick(&qp->rxq);
		qp->rx_reposted = 0;
	}
	if (qp->txq.avail_idx != qp->txq.kicked_idx)
		vq_kick(&qp->txq);
}

/* The device's table of channels, read whole, again if it changed
 * meanwhile. A channel bound anew starts its rings from zero (its memory is
 * fresh); one that lost its binding is not touched again. */
static void read_channels(struct vnet *n)
{
	struct ferry_zc_config zc;

	for (int tries = 0; tries < 4; tries++) {
		n->zc_stale = false;
		virtio_config_read(&n->vd, FERRY_ZC_CFG_OFFSET, &zc, sizeof(zc));
		if (virtio_config_read32(&n->vd, FERRY_ZC_CFG_OFFSET + 12) == zc.generation)
			break;
	}
	if (zc.generation != n->zc_generation)
		n->zc_rebinds++;
	n->zc_generation = zc.generation;
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
		struct vnet_zc *z = &n->zcc[c];

		bool fresh = zc.chan[c].epoch != z->epoch;

		if (fresh) {
			z->epoch = zc.chan[c].epoch;
			z->prod = z->cons = 0;
			z->broken = false;
			z->ready = false;
			z->left = false;
		}
		/* Unbound (maybe bound and unbound since we last looked): the
		 * receive area is ours again, its unread frames still in it, and
		 * ferry's mark says where they stand among pair 0's (no mark: the
		 * mapping stayed, nothing to read). */
		if (zc.chan[c].state == FERRY_ZC_UNBOUND && (fresh || n->chan[c].state != FERRY_ZC_UNBOUND) && !z->broken) {
			uint32_t mark = __atomic_load_n(&z->rx->unbound_mark, __ATOMIC_ACQUIRE);

			z->left = (mark & FERRY_ZC_MARK_VALID) != 0;
			z->mark = (uint16_t)mark;
		}
		/* Draining: nothing more goes out on it (this runs between two
		 * sends, never within one), which ferry waits to hear. */
		if (zc.chan[c].state == FERRY_ZC_DRAINING)
			__atomic_store_n(&z->tx->closed, 1u, __ATOMIC_RELEASE);
	}
	memcpy(n->chan, zc.chan, sizeof(n->chan));
}

static void refresh(struct vnet *n)
{
	if (n->zc_stale)
		read_channels(n);
}

/* Frames to a peer keep their order across a switch of path: the first
 * frame on a new channel waits until pair 0 has delivered the earlier ones,
 * and the first frame on pair 0 after a channel drains waits until the peer
 * has read the channel's last frames (a second at most, both). */
static bool tx0_idle(struct vnet *n)
{
	struct vnet_pair *qp = &n->pair[PAIR0];

	vnet_tx_reclaim(n, PAIR0);
	return qp->tx_nfree == qp->nr_tx;
}

int vnet_zc_channel_for(struct vnet *n, const uint8_t *dst)
{
	if (!n->zc)
		return -1;
	refresh(n);
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
		struct vnet_zc *z = &n->zcc[c];
		uint64_t start;

		if (memcmp(n->chan[c].peer_mac, dst, 6) || z->broken)
			continue;
		if (n->chan[c].state == FERRY_ZC_DRAINING) {
			uint8_t epoch = z->epoch;

			for (start = time_ns(); READ_ONCE(z->rx->cons) != z->prod && time_ns() - start < DRAIN_WAIT_NS;) {
				cpu_relax();
				refresh(n);  /* the binding may end (or another start) meanwhile */
				if (n->chan[c].state != FERRY_ZC_DRAINING || z->epoch != epoch)
					break;
			}
			continue;
		}
		if (n->chan[c].state != FERRY_ZC_BOUND)
			continue;
		if (!z->ready) {
			vnet_flush(n, PAIR0);
			for (start = time_ns(); !tx0_idle(n) && time_ns() - start < TX_TIMEOUT_NS;)
				cpu_relax();
			z->ready = true;
		}
		return (int)c;
	}
	return -1;
}

bool vnet_zc_active(struct vnet *n, unsigned c)
{
	if (n->zc)
		refresh(n);
	return n->zc && c < FERRY_ZC_CHANNELS && n->chan[c].state != FERRY_ZC_UNBOUND && !n->zcc[c].broken;
}

/* Rings the channel's doorbell if the peer sleeps (`flag`, its wake_rx or
 * wake_tx) and we have not rung for this sleep yet: ferry interrupts it. */
static void ring_if_asleep(struct vnet_zc *z, unsigned c, uint32_t flag, uint32_t *rung)
{
	if (!flag || flag == *rung)
		return;
	*rung = flag;
	mmio_write16(z->doorbell, (uint16_t)(FERRY_ZC_DOORBELL_QUEUE + c));
	z->doorbells++;
}

/* A value for our wake flags, new for each sleep. */
static uint32_t sleep_token(struct vnet_zc *z)
{
	if (!++z->sleeps)
		z->sleeps = 1;
	return z->sleeps;
}

static bool zc_room_or_change(void *arg)
{
	struct vnet *n = arg;

	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
		if (vnet_zc_active(n, c) && n->zcc[c].prod - READ_ONCE(n->zcc[c].rx->cons) < FERRY_ZC_RING_SLOTS)
			return true;
	return n->zc_stale;
}

void *vnet_zc_tx_get(struct vnet *n, unsigned c, uint32_t *cap, bool *drop)
{
	struct vnet_zc *z = &n->zcc[c];
	uint64_t start = time_ns(), waited;

	*drop = false;
	for (;;) {
		refresh(n);
		if (n->chan[c].state != FERRY_ZC_BOUND || z->broken)
			return NULL;
		if (z->prod - __atomic_load_n(&z->rx->cons, __ATOMIC_ACQUIRE) < FERRY_ZC_RING_SLOTS)
			break;
		/* Full: the peer is behind. Spin a little, then sleep until it
		 * makes room (it rings us), ZC_FULL_WAIT_NS at most; then drop,
		 * as a NIC with a full queue does, and drop at once while it
		 * stays full: a peer that stopped reading must not stop us
		 * (nor, through us, our reading of its frames). */
		waited = time_ns() - start;
		if (z->congested || waited > ZC_FULL_WAIT_NS) {
			z->congested = true;
			z->full_drops++;
			*drop = true;
			return NULL;
		}
		z->full_waits++;
		if (waited < TX_SPIN_NS) {
			cpu_relax();
			continue;
		}
		WRITE_ONCE(z->tx->wake_tx, sleep_token(z));
		mb();
		if (z->prod - READ_ONCE(z->rx->cons) >= FERRY_ZC_RING_SLOTS && z->vector >= 0)
			halt_until(zc_room_or_change, n, ZC_FULL_WAIT_NS - waited);
		WRITE_ONCE(z->tx->wake_tx, 0);
	}
	z->congested = false;
	*cap = FERRY_ZC_FRAME_MAX;
	return FERRY_ZC_SLOT(z->tx_area, z->prod) + 8;
}

int vnet_zc_tx_channel_of(struct vnet *n, const void *frame)
{
	const uint8_t *f = frame;

	if (!n->zc || f < n->zc_base || f >= n->zc_base + FERRY_ZC_RX_OFFSET(0))
		return -1;
	return (int)((uint64_t)(f - n->zc_base) / FERRY_ZC_AREA_SIZE);
}

void vnet_zc_tx_put(struct vnet *n, unsigned c, void *frame, uint32_t len)
{
	struct vnet_zc *z = &n->zcc[c];
	uint8_t *slot = (uint8_t *)frame - 8;

	BUG_ON(slot != FERRY_ZC_SLOT(z->tx_area, z->prod) || len > FERRY_ZC_FRAME_MAX);
	*(volatile uint32_t *)slot = len;
	z->prod++;
	__atomic_store_n(&z->tx->prod, z->prod, __ATOMIC_RELEASE);
	z->frames_tx++;
	mb();  /* the store before reading whether the peer sleeps */
	ring_if_asleep(z, c, READ_ONCE(z->rx->wake_rx), &z->rung_rx);
}

/* Frames can be read from channel c: bound, or unbound with some left. */
static bool zc_readable(struct vnet *n, unsigned c)
{
	return vnet_zc_active(n, c) || (c < FERRY_ZC_CHANNELS && n->zcc[c].left);
}

const void *vnet_zc_rx_get(struct vnet *n, unsigned c, uint32_t *len)
{
	struct vnet_zc *z = &n->zcc[c];

	while (zc_readable(n, c)) {
		uint32_t prod = __atomic_load_n(&z->rx->prod, __ATOMIC_ACQUIRE);
		const uint8_t *slot;
		uint32_t l;

		if (prod == z->cons) {
			z->left = false;  /* an unbound channel read to its end */
			return NULL;
		}
		if (prod - z->cons > FERRY_ZC_RING_SLOTS) {
			/* Not a ring's index: unless the binding just changed
			 * (read the table again), stop reading it. */
			n->zc_stale = true;
			if (!zc_readable(n, c) || prod == z->cons || prod - z->cons <= FERRY_ZC_RING_SLOTS)
				continue;
			if (!z->errors)
				kprintf("%s: channel %u: peer's index %u is %u ahead of ours; channel left\n", n->name, c, prod,
					prod - z->cons);
			z->errors++;
			z->broken = true;
			z->left = false;
			return NULL;
		}
		slot = FERRY_ZC_SLOT(z->rx_area, z->cons);
		l = READ_ONCE(*(const volatile uint32_t *)slot);
		if (l >= 14 && l <= FERRY_ZC_FRAME_MAX) {
			*len = l;
			return slot + 8;
		}
		if (!z->errors)
			kprintf("%s: channel %u: frame of %u bytes skipped\n", n->name, c, l);
		z->errors++;  /* a frame no Ethernet frame could be: skipped */
		vnet_zc_rx_put(n, c);
	}
	return NULL;
}

void vnet_zc_rx_put(struct vnet *n, unsigned c)
{
	struct vnet_zc *z = &n->zcc[c];

	z->cons++;
	__atomic_store_n(&z->tx->cons, z->cons, __ATOMIC_RELEASE);
	z->frames_rx++;
	mb();
	if (n->chan[c].state != FERRY_ZC_UNBOUND)  /* an unbound sender waits for no one */
		ring_if_asleep(z, c, READ_ONCE(z->rx->wake_tx), &z->rung_tx);
}

void vnet_zc_sleep(struct vnet *n, bool sleeping)
{
	for (unsigned c = 0; n->zc && c < FERRY_ZC_CHANNELS; c++)
		if (vnet_zc_active(n, c))
			WRITE_ONCE(n->zcc[c].tx->wake_rx, sleeping ? sleep_token(&n->zcc[c]) : 0u);
	mb();
}

bool vnet_zc_pending(struct vnet *n)
{
	/* A changed table is news in itself: the caller must look again, and
	 * tell a newly bound peer that it sleeps, before it halts. (Reading the
	 * table here instead would let it halt unseen by that peer.) */
	if (!n->zc || n->zc_stale)
		return n->zc;
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
		if (zc_readable(n, c) && READ_ONCE(n->zcc[c].rx->prod) != n->zcc[c].cons)
			return true;
	return false;
}

int vnet_zc_leftover(struct vnet *n)
{
	struct vnet_pair *qp = &n->pair[PAIR0];

	for (unsigned c = 0; n->zc && c < FERRY_ZC_CHANNELS; c++) {
		struct vnet_zc *z = &n->zcc[c];

		/* Pair 0's frames from before the unbinding go first. */
		if (z->left && (int16_t)(z->mark - qp->rxq.last_used) <= 0)
			return (int)c;
	}
	return -1;
}
