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
	if (pair) {  /* a zero-copy channel: its area of the device's BAR */
		unsigned c = pair - 1;

		*got = FERRY_ZC_AREA_SIZE;
		return bytes <= FERRY_ZC_AREA_SIZE ? n->zc_base + (tx ? FERRY_ZC_TX_OFFSET(c) : FERRY_ZC_RX_OFFSET(c))
						   : NULL;
	}
	*got = PAGE_SIZE << area_order(bytes);
	return alloc_pages_zeroed(area_order(bytes));
}

static void vnet_buf_area_free(struct vnet *n, unsigned pair, bool tx, void *area, uint64_t bytes)
{
	(void)n;
	(void)tx;
	if (area && !pair)
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
	/* A channel's buffers are its slots: one frame each, in place. */
	qp->buf_size = p ? FERRY_ZC_SLOT_SIZE : n->buf_size;
	max_bufs = p ? FERRY_ZC_SLOTS : AREA_MAX / qp->buf_size;
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

/* ferry's zero-copy window: BAR 2, ordinary cached memory (its receive half
 * is read-only to us: the device rejects writes there). */
static int map_zc(struct vnet *n)
{
	struct pci_bar *bar = &n->vd.pci->bar[FERRY_ZC_BAR];

	if (!bar->size || bar->size < FERRY_ZC_BAR_SIZE || paging_map(bar->addr, FERRY_ZC_BAR_SIZE, 0)) {
		kprintf("%s: zero-copy BAR of %lu bytes is not the %lu expected\n", n->name, (unsigned long)bar->size,
			(unsigned long)FERRY_ZC_BAR_SIZE);
		return -1;
	}
	n->zc_base = (uint8_t *)(uintptr_t)bar->addr;
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
	n->nr_pairs = n->zc ? 1 + FERRY_ZC_CHANNELS : 1;
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
	/* On a channel, completions come from the peer's returned slots, which
	 * the device collects when told: tell it even with nothing new. */
	if (qp->index && qp->txq.avail_idx == qp->txq.kicked_idx)
		vq_kick(&qp->txq);
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

/* The device's table of channels, read whole, again if it changed meanwhile. */
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
	memcpy(n->chan, zc.chan, sizeof(n->chan));
}

unsigned vnet_pair_for(struct vnet *n, const uint8_t *dst)
{
	if (!n->zc)
		return 0;
	if (n->zc_stale)
		read_channels(n);
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
		if (n->chan[c].state == FERRY_ZC_BOUND && !memcmp(n->chan[c].peer_mac, dst, 6))
			return FERRY_ZC_PAIR(c);
	return 0;
}

unsigned vnet_tx_pair_of(struct vnet *n, const void *frame)
{
	for (unsigned p = 1; p < n->nr_pairs; p++)
		if (tx_buf_of(n, &n->pair[p], (void *)frame))
			return p;
	return 0;
}

bool vnet_pair_active(struct vnet *n, unsigned p)
{
	if (!p)
		return true;
	if (n->zc_stale)
		read_channels(n);
	return p < n->nr_pairs && n->chan[p - 1].state != FERRY_ZC_UNBOUND;
}
