/* Binds the network stack to the virtio-net driver: one interface per
 * device (queue pair 0), addresses from ip=, and the halt behind net_wait. */
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"
#include "net.h"
#include "timer.h"
#include "virtio_net.h"
#include "x86.h"

#define PAIR 0

static struct netif ifaces[VNET_MAX_DEVS];
static int state;   /* 0: not yet, 1: up, -1: failed */

/* The receive queues net_wait halts on, for a condition that costs few
 * instructions: halt_until evaluates it in ring 0, interpreted on hosts
 * like ours. */
#define MAX_RXQS (VNET_MAX_DEVS * VNET_MAX_PAIRS)
static struct virtqueue *rxqs[MAX_RXQS];
static unsigned nrxqs;
static bool all_msix;

static struct vnet *dev(struct netif *ifc)
{
	return ifc->priv;
}

static void *op_tx_get(struct netif *ifc, const uint8_t *dst, uint32_t *cap)
{
	struct vnet *n = dev(ifc);
	int c = vnet_zc_channel_for(n, dst);
	bool drop = false;
	void *frame = c >= 0 ? vnet_zc_tx_get(n, (unsigned)c, cap, &drop) : NULL;

	/* Not bound (any more): pair 0. Dropped on a full channel: not on
	 * pair 0, where it would overtake the channel's frames. */
	return frame || drop ? frame : vnet_tx_get(n, PAIR, cap);
}

static void op_tx_put(struct netif *ifc, void *frame, uint32_t len)
{
	struct vnet *n = dev(ifc);
	int c = vnet_zc_tx_channel_of(n, frame);

	if (c >= 0)
		vnet_zc_tx_put(n, (unsigned)c, frame, len);
	else
		vnet_tx_put(n, PAIR, frame, len);
}

static void op_tx_cancel(struct netif *ifc, void *frame)
{
	struct vnet *n = dev(ifc);

	if (vnet_zc_tx_channel_of(n, frame) < 0)  /* a channel's slot is simply not published */
		vnet_tx_cancel(n, PAIR, frame);
}

/* A channel's frame lies in memory its sender can still write: it is
 * copied out, and its slot given back at once, before the stack looks at it. */
static void *zc_take(struct vnet *n, unsigned c, uint32_t *len)
{
	const void *shared = vnet_zc_rx_get(n, c, len);

	if (!shared)
		return NULL;
	memcpy(n->bounce, shared, *len);
	vnet_zc_rx_put(n, c);
	return n->bounce;
}

/* Frames in the order their sender sent them: the last frames of an
 * unbound channel before pair 0's frames from after the unbinding; pair 0
 * (the frames from before a binding) before the bound channels. */
static void *op_rx_get(struct netif *ifc, uint32_t *len)
{
	struct vnet *n = dev(ifc);
	void *frame = NULL;
	int left;

	while (!frame && (left = vnet_zc_leftover(n)) >= 0)
		frame = zc_take(n, (unsigned)left, len);
	if (!frame)
		frame = vnet_rx_get(n, PAIR, len);
	for (unsigned c = 0; !frame && n->zc && c < FERRY_ZC_CHANNELS; c++)
		frame = zc_take(n, c, len);
	return frame;
}

static void op_rx_put(struct netif *ifc, void *frame)
{
	struct vnet *n = dev(ifc);

	if (frame != n->bounce)
		vnet_rx_put(n, PAIR, frame);
}

static bool op_rx_pending(struct netif *ifc)
{
	struct vnet *n = dev(ifc);

	return vnet_rx_pending(n, PAIR) || vnet_zc_pending(n);
}

static void op_flush(struct netif *ifc)
{
	struct vnet *n = dev(ifc);

	vnet_tx_reclaim(n, PAIR);  /* cheap, and keeps transmit buffers free */
	vnet_flush(n, PAIR);
}

static bool op_link_up(struct netif *ifc)
{
	return vnet_link_up(dev(ifc));
}

static void op_describe(struct netif *ifc, char *buf, size_t size)
{
	struct vnet *n = dev(ifc);
	struct vnet_pair *qp = &n->pair[PAIR];
	uint64_t zc_tx = 0, zc_rx = 0, zc_waits = 0, zc_drops = 0, zc_bells = 0, zc_errors = 0;
	int len;

	for (unsigned c = 0; n->zc && c < FERRY_ZC_CHANNELS; c++) {
		zc_tx += n->zcc[c].frames_tx;
		zc_rx += n->zcc[c].frames_rx;
		zc_waits += n->zcc[c].full_waits;
		zc_drops += n->zcc[c].full_drops;
		zc_bells += n->zcc[c].doorbells;
		zc_errors += n->zcc[c].errors;
	}
	len = ksnprintf(buf, size, "tx_kicks=%lu tx_kicks_skipped=%lu rx_kicks=%lu rx_irqs=%lu tx_irqs=%lu tx_waits=%lu",
			qp->txq.notifies, qp->txq.notifies_skipped, qp->rxq.notifies, qp->rxq.interrupts,
			qp->txq.interrupts, qp->stats.tx_waits);
	if (n->zc && len > 0 && (size_t)len < size)
		ksnprintf(buf + len, size - (size_t)len,
			  " zc_tx=%lu zc_rx=%lu zc_full_waits=%lu zc_full_drops=%lu zc_doorbells=%lu zc_errors=%lu"
			  " zc_table_changes=%lu",
			  zc_tx, zc_rx, zc_waits, zc_drops, zc_bells, zc_errors, n->zc_rebinds);
}

static const struct netif_ops virtio_ops = {
	.tx_get = op_tx_get,
	.tx_put = op_tx_put,
	.tx_cancel = op_tx_cancel,
	.rx_get = op_rx_get,
	.rx_put = op_rx_put,
	.rx_pending = op_rx_pending,
	.flush = op_flush,
	.link_up = op_link_up,
	.describe = op_describe,
};

/* The index-th comma-separated word of list into buf; false if there is
 * none or it is empty. A word too long for buf comes back as "?". */
static bool list_item(const char *list, unsigned index, char *buf, size_t size)
{
	const char *comma;
	size_t len;

	for (; index; index--) {
		list = strchr(list, ',');
		if (!list)
			return false;
		list++;
	}
	comma = strchr(list, ',');
	len = comma ? (size_t)(comma - list) : strlen(list);
	if (!len)
		return false;
	if (len >= size)
		list = "?", len = 1;
	memcpy(buf, list, len);
	buf[len] = '\0';
	return true;
}

static int setup(void)
{
	const char *ips = cmdline_get_str("ip", "");
	unsigned n = vnet_count();
	char word[32], a[16];

	net_spin_ns = cmdline_get_u64("net_spin_us", net_spin_ns / 1000) * 1000;
	if (!n) {
		kprintf("net: no network device\n");
		return -1;
	}
	all_msix = true;
	for (unsigned i = 0; i < n; i++) {
		struct vnet *v = vnet_get(i);
		struct netif *ifc = &ifaces[i];

		memset(ifc, 0, sizeof(*ifc));
		ifc->ops = &virtio_ops;
		ifc->priv = v;
		strlcpy(ifc->name, v->name, sizeof(ifc->name));
		memcpy(ifc->mac, v->mac, ETH_ALEN);
		ifc->mtu = v->mtu;
		if (list_item(ips, i, word, sizeof(word)) && !ip_parse_cidr(word, &ifc->ip, &ifc->mask)) {
			kprintf("net: ip=%s: \"%s\" is not ADDRESS or ADDRESS/PREFIX\n", ips, word);
			return -1;
		}
		if (netif_add(ifc))
			break;
		for (unsigned p = 0; p < v->nr_pairs && nrxqs < MAX_RXQS; p++) {
			rxqs[nrxqs++] = &v->pair[p].rxq;
			all_msix &= v->pair[p].rxq.vector >= 0;
		}
		unsigned prefix = 0;
		while (prefix < 32 && (ifc->mask << prefix) & 0x80000000u)
			prefix++;
		pr_info("net: %s %s/%u mtu %u\n", ifc->name, ifc->ip ? ip_str(ifc->ip, a) : "(no address)", prefix,
			ifc->mtu);
	}
	return 0;
}

int net_init(void)
{
	if (!state)
		state = setup() == 0 ? 1 : -1;
	return state == 1 ? 0 : -1;
}

/* One timer bounds every wait: armed when a wait needs an earlier wake-up
 * than the one pending, left running otherwise (an early wake-up only
 * makes the caller look again). Arming and cancelling a timer per wait
 * would cost more interpreted ring-0 code than the wait itself. */
static struct timer wake_timer;
static uint64_t wake_at;
static volatile bool woke;

static void wake(void *arg)
{
	(void)arg;
	woke = true;
}

static bool rx_or_woke(void *arg)
{
	(void)arg;
	if (woke)
		return true;
	for (unsigned i = 0; i < nrxqs; i++) {
		if (READ_ONCE(rxqs[i]->used->idx) != rxqs[i]->last_used)
			return true;
	}
	for (unsigned i = 0; i < net_if_count(); i++)
		if (vnet_zc_pending(dev(net_if(i))))
			return true;
	return false;
}

/* Halts with receive interrupts on. A device without MSI-X cannot wake us:
 * poll it instead. */
bool netif_wait_hw(uint64_t timeout_ns)
{
	uint64_t now = time_ns();

	if (!all_msix) {
		while (!rx_or_woke(NULL) && time_ns() - now < timeout_ns)
			cpu_relax();
		return rx_or_woke(NULL);
	}
	woke = false;
	if (timeout_ns != TIMEOUT_NEVER && (!wake_timer.pending || wake_at > now + timeout_ns)) {
		if (wake_timer.pending)
			timer_cancel(&wake_timer);
		wake_at = now + timeout_ns;
		timer_start(&wake_timer, timeout_ns, wake, NULL);
	}
	/* Peers on channels ring us once they see we sleep; the halt's
	 * condition looks at the rings again after saying so. */
	for (unsigned i = 0; i < net_if_count(); i++) {
		vnet_rx_irq(dev(net_if(i)), PAIR, true);
		vnet_zc_sleep(dev(net_if(i)), true);
	}
	halt_until(rx_or_woke, NULL, TIMEOUT_NEVER);
	for (unsigned i = 0; i < net_if_count(); i++) {
		vnet_rx_irq(dev(net_if(i)), PAIR, false);
		vnet_zc_sleep(dev(net_if(i)), false);
	}
	woke = false;
	return rx_or_woke(NULL);
}
