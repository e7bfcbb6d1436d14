/* virtio-net: queue pair 0 as any virtio-net device has it, frames switched
 * with one copy (host/net_switch.c); with VIRTIO_NET_F_FERRY_ZC, channels
 * 1..8 whose buffers live in BAR 2 and which ferry binds, one per
 * co-resident peer, onto memory shared with that peer: then frames move by
 * descriptors alone. The rules a driver follows on a channel are in
 * include/ferry/virtio_net.h; every one is checked here, and a channel whose
 * rules are broken is unbound (its traffic goes back to the copy path). */
#include "devices/virtio_net.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "devices/pci.h"
#include "devices/virtio.h"
#include "ferry/virtio_net.h"
#include "host/net_switch.h"
#include "vmm/clock.h"
#include "vmm/config.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define NET_QUEUE_SIZE 256
#define HDR_LEN sizeof(struct virtio_net_hdr)
#define PASS_CHAINS 256            /* transmit chains per pass (bounded work) */
#define MAX_FRAME_SEGS 64          /* a frame in more pieces than this is refused */
#define NO_HEAD 0xffffu

/* One channel as this device sees its two queues. Slots are named by their
 * address, not by ring position, so bindings can come and go. */
struct zc_chan {
	/* Transmit: the chain head of the frame in each slot, until the
	 * receiver has read it (then its completion is pushed). */
	uint16_t tx_head[FERRY_ZC_SLOTS];
	unsigned tx_inflight;
	/* Receive: buffers the driver posted, by slot (popped from the ring at
	 * once, so that any slot can be filled), and slots delivered and not
	 * yet posted again (not yet read). */
	uint16_t rx_head[FERRY_ZC_SLOTS];
	uint8_t rx_delivered[FERRY_ZC_SLOTS];
	unsigned rx_out;
	bool waiting_for_peer;     /* the next frame's slot is still the peer's */
	uint64_t last_progress_ns; /* a frame delivered or completed */
};

struct virtio_net_dev {
	struct virtio_device vd;
	unsigned index;                /* the VM's NIC number */
	const struct nic_config *nic;
	struct net_switch *sw;
	struct net_port port;
	struct ferry_net_config cfg;
	bool zc_offered;
	/* The zero-copy window (BAR 2), in ferry's address space and the
	 * guest's. Writes to its receive half exit here (read-only slot). */
	uint8_t *zc_hva;
	int zc_memfd;
	uint64_t zc_gpa;
	int region[2];
	struct device ro_guard;
	bool registered;
	struct zc_chan chan[FERRY_ZC_CHANNELS];
	struct virtio_net_dev *next_pending; /* windows made, devices not yet */
};

static struct virtio_net_dev *to_net(struct virtio_device *vd)
{
	return (struct virtio_net_dev *)vd;
}

static struct virtio_net_dev *port_dev(struct net_port *p)
{
	return p->dev;
}

static bool is_zc_queue(unsigned q)
{
	return q >= 2 && q < 2 + 2 * FERRY_ZC_CHANNELS;
}

static unsigned queue_channel(unsigned q)
{
	return q / 2 - 1;
}

static struct virtqueue *chan_txq(struct virtio_net_dev *n, unsigned c)
{
	return &n->vd.vq[VIRTIO_NET_TXQ(FERRY_ZC_PAIR(c))];
}

static struct virtqueue *chan_rxq(struct virtio_net_dev *n, unsigned c)
{
	return &n->vd.vq[VIRTIO_NET_RXQ(FERRY_ZC_PAIR(c))];
}

/* --- queue pair 0: frames through the switch --------------------------------- */

/* Copies a frame into one receive chain of pair 0. Switch lock held. */
static bool deliver(struct net_port *p, const struct iovec *iov, int iovcnt, size_t len, enum net_drop *why)
{
	struct virtio_net_dev *n = port_dev(p);
	struct virtqueue *vq = &n->vd.vq[VIRTIO_NET_RXQ(0)];
	struct vq_chain c;
	int r = vq_pop(vq, &c);
	if (r != 1) {
		if (vq->broken)
			virtio_needs_reset(&n->vd);
		*why = NET_DROP_NO_BUFFER;
		return false;
	}
	if (c.nr_out || c.in_bytes < HDR_LEN + len) {
		/* A buffer too small for a frame the MTU allows is the driver's
		 * mistake: it goes back empty, and the frame is dropped. */
		device_reject(&n->vd.dev, "receive buffer of %llu bytes for a %zu-byte frame",
			      (unsigned long long)c.in_bytes, len);
		vq_push(vq, c.head, 0);
		*why = NET_DROP_SMALL_BUFFER;
		return false;
	}
	struct virtio_net_hdr h = { .num_buffers = 1 };
	size_t off = vq_chain_write(&c, 0, &h, sizeof(h));
	for (int i = 0; i < iovcnt; i++)
		off += vq_chain_write(&c, off, iov[i].iov_base, iov[i].iov_len);
	vq_push(vq, c.head, (uint32_t)off);
	atomic_fetch_add(&n->vd.dev.ctr.bytes, len);
	virtio_queue_interrupt(&n->vd, vq);
	return true;
}

/* Checks the transmit header: ferry offers no offloads, so a driver may
 * ask for none. */
static bool header_ok(const struct virtio_net_hdr *h)
{
	return h->flags == 0 && h->gso_type == VIRTIO_NET_HDR_GSO_NONE;
}

/* The frame of a transmit chain, after its header, as iovecs. */
static int frame_iov(const struct vq_chain *c, struct iovec *iov, size_t *len)
{
	size_t skip = HDR_LEN;
	int n = 0;
	*len = 0;
	for (unsigned s = 0; s < c->nr_out; s++) {
		const struct vq_seg *seg = &c->seg[s];
		if (skip >= seg->len) {
			skip -= seg->len;
			continue;
		}
		if (n == MAX_FRAME_SEGS)
			return -1;
		iov[n].iov_base = seg->ptr + skip;
		iov[n].iov_len = seg->len - skip;
		*len += iov[n].iov_len;
		skip = 0;
		n++;
	}
	return n;
}

static void process_tx0(struct virtio_net_dev *n)
{
	struct virtqueue *vq = &n->vd.vq[VIRTIO_NET_TXQ(0)];
	struct vq_chain c;
	struct iovec iov[MAX_FRAME_SEGS];
	unsigned chains = 0;
	bool pushed = false;
	while (chains < PASS_CHAINS && vq_pop(vq, &c) == 1) {
		chains++;
		struct virtio_net_hdr h;
		size_t len;
		int nseg = frame_iov(&c, iov, &len);
		if (c.nr_in || c.out_bytes < HDR_LEN || vq_chain_read(&c, 0, &h, sizeof(h)) != sizeof(h) || nseg < 0) {
			device_reject(&n->vd.dev, "transmit chain is not [header][frame]");
			atomic_fetch_add(&n->port.ctr.dropped[NET_DROP_BAD_HEADER], 1);
		} else if (!header_ok(&h)) {
			device_reject(&n->vd.dev, "transmit header asks for offloads (flags %u, gso %u) not offered", h.flags,
				      h.gso_type);
			atomic_fetch_add(&n->port.ctr.dropped[NET_DROP_BAD_HEADER], 1);
		} else {
			net_switch_tx(&n->port, iov, nseg, len);
			atomic_fetch_add(&n->vd.dev.ctr.bytes, len);
		}
		vq_push(vq, c.head, 0);
		pushed = true;
	}
	if (vq->broken)
		virtio_needs_reset(&n->vd);
	if (pushed)
		virtio_queue_interrupt(&n->vd, vq);
	if (chains == PASS_CHAINS && vq_pending(vq))
		virtio_queue_more(&n->vd, vq);
}

/* --- channels ------------------------------------------------------------------ */

/* A channel's rules were broken: the frame is refused and the channel
 * unbound, so the pair goes back to the copy path. */
static void protocol_error(struct virtio_net_dev *n, unsigned c, const char *what)
{
	device_reject(&n->vd.dev, "channel %u: %s", c, what);
	atomic_fetch_add(&n->port.ctr.dropped[NET_DROP_ZC_PROTOCOL], 1);
	net_channel_unbind(&n->port, c);
}

/* The slot a descriptor names in channel c's area (tx or rx), or -1. */
static int slot_of(struct virtio_net_dev *n, unsigned c, bool rx, const struct vq_desc *d, bool whole)
{
	uint64_t base = n->zc_gpa + (rx ? FERRY_ZC_RX_OFFSET(c) : FERRY_ZC_TX_OFFSET(c));
	if (d->addr < base || d->addr - base >= FERRY_ZC_AREA_SIZE || (d->addr - base) % FERRY_ZC_SLOT_SIZE ||
	    d->len > FERRY_ZC_SLOT_SIZE || (whole && d->len != FERRY_ZC_SLOT_SIZE))
		return -1;
	return (int)((d->addr - base) / FERRY_ZC_SLOT_SIZE);
}

/* Receive buffers the driver posted on channel c, taken into the slot
 * table. A slot posted again after a delivery means its frame was read:
 * the peer's transmission of it completes. */
static unsigned take_rx_buffers(struct virtio_net_dev *n, unsigned c)
{
	struct virtqueue *vq = chan_rxq(n, c);
	struct zc_chan *z = &n->chan[c];
	struct vq_desc_chain dc;
	unsigned peer_chan = 0;
	struct net_port *peer = net_channel_peer(&n->port, c, &peer_chan);
	unsigned taken = 0;
	for (unsigned i = 0; i < FERRY_ZC_SLOTS && vq_pop_desc(vq, &dc) == 1; i++) {
		taken++;
		int s = dc.n == 1 && dc.desc[0].writable ? slot_of(n, c, true, &dc.desc[0], true) : -1;
		if (s < 0 || z->rx_head[s] != NO_HEAD) {
			/* Not a whole slot of this channel, or posted twice. */
			vq_push(vq, dc.head, 0);
			protocol_error(n, c, s < 0 ? "receive buffer is not a whole slot of its area" : "slot posted twice");
			continue;
		}
		z->rx_head[s] = dc.head;
		if (z->rx_delivered[s]) {
			z->rx_delivered[s] = 0;
			z->rx_out--;
			z->last_progress_ns = clock_ns();
			/* The peer's frame in that slot has been read. */
			if (peer) {
				struct virtio_net_dev *p = port_dev(peer);
				struct zc_chan *pz = &p->chan[peer_chan];
				struct virtqueue *ptx = chan_txq(p, peer_chan);
				if (pz->tx_head[s] != NO_HEAD) {
					vq_push(ptx, pz->tx_head[s], 0);
					pz->tx_head[s] = NO_HEAD;
					pz->tx_inflight--;
					pz->last_progress_ns = z->last_progress_ns;
					virtio_queue_interrupt(&p->vd, ptx);
				}
			}
		}
	}
	if (vq->broken)
		virtio_needs_reset(&n->vd);
	return taken;
}

/* A frame on an unbound channel (sent before the driver saw the unbinding):
 * forwarded from the slot with one copy, completed at once. */
static void forward_unbound(struct virtio_net_dev *n, unsigned c, const struct vq_desc *d, int s)
{
	uint8_t *slot = n->zc_hva + FERRY_ZC_TX_OFFSET(c) + (uint64_t)s * FERRY_ZC_SLOT_SIZE;
	struct virtio_net_hdr h;
	memcpy(&h, slot, sizeof(h));
	if (d->len < HDR_LEN || !header_ok(&h)) {
		atomic_fetch_add(&n->port.ctr.dropped[NET_DROP_BAD_HEADER], 1);
		return;
	}
	struct iovec iov = { slot + HDR_LEN, d->len - HDR_LEN };
	net_switch_tx(&n->port, &iov, 1, iov.iov_len);
}

/* Frames posted on channel c: to the peer by descriptor (zero copy), or
 * through the switch if the channel is unbound. */
static unsigned process_chan_tx(struct virtio_net_dev *n, unsigned c)
{
	struct virtqueue *vq = chan_txq(n, c);
	struct zc_chan *z = &n->chan[c];
	struct vq_desc_chain dc;
	unsigned peer_chan = 0, chains = 0;
	bool pushed = false, delivered = false;
	struct net_port *peer = net_channel_peer(&n->port, c, &peer_chan);
	struct virtio_net_dev *p = peer ? port_dev(peer) : NULL;
	unsigned moved = p ? take_rx_buffers(p, peer_chan) : 0; /* completions first: they free slots */
	while (chains < PASS_CHAINS && vq_pop_desc(vq, &dc) == 1) {
		chains++;
		int s = dc.n == 1 && !dc.desc[0].writable ? slot_of(n, c, false, &dc.desc[0], false) : -1;
		if (s < 0 || dc.desc[0].len < HDR_LEN || z->tx_head[s] != NO_HEAD) {
			vq_push(vq, dc.head, 0);
			pushed = true;
			protocol_error(n, c, s < 0 ? "transmit buffer is not in a slot of its area" :
					     z->tx_head[s] != NO_HEAD ? "slot reused before its completion" :
									"frame shorter than its header");
			peer = net_channel_peer(&n->port, c, &peer_chan);
			p = peer ? port_dev(peer) : NULL;
			continue;
		}
		if (!p || !peer->up || (peer->vm_stopping && atomic_load(peer->vm_stopping))) {
			forward_unbound(n, c, &dc.desc[0], s);
			vq_push(vq, dc.head, 0);
			pushed = true;
			continue;
		}
		struct zc_chan *pz = &p->chan[peer_chan];
		if (pz->rx_head[s] == NO_HEAD) {
			/* The peer has not posted this slot yet: wait for it (it
			 * is still reading the last frame there). */
			vq_unpop(vq);
			z->waiting_for_peer = true;
			break;
		}
		z->waiting_for_peer = false;
		/* Zero copy: the frame is already in the peer's receive slot. */
		struct virtqueue *prx = chan_rxq(p, peer_chan);
		vq_push(prx, pz->rx_head[s], dc.desc[0].len);
		pz->rx_head[s] = NO_HEAD;
		pz->rx_delivered[s] = 1;
		pz->rx_out++;
		z->last_progress_ns = clock_ns();
		z->tx_head[s] = dc.head;
		z->tx_inflight++;
		atomic_fetch_add(&n->port.ctr.frames_tx, 1);
		atomic_fetch_add(&n->port.ctr.frames_zero_copy, 1);
		atomic_fetch_add(&peer->ctr.frames_rx, 1);
		delivered = true;
	}
	if (vq->broken)
		virtio_needs_reset(&n->vd);
	if (pushed)
		virtio_queue_interrupt(&n->vd, vq);
	if (delivered)
		virtio_queue_interrupt(&p->vd, chan_rxq(p, peer_chan));
	if (n->port.chan[c].state == FERRY_ZC_DRAINING)
		net_channel_drained(&n->port, c);
	return moved + chains;
}

static void net_queue_notify(struct virtio_device *vd, struct virtqueue *vq);

/* --- what the switch asks of a NIC ------------------------------------------- */

static void channels_changed(struct net_port *port)
{
	struct virtio_net_dev *n = port_dev(port);
	struct ferry_zc_config *zc = &n->cfg.zc;
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
		struct net_channel *ch = &port->chan[c];
		memset(&zc->chan[c], 0, sizeof(zc->chan[c]));
		zc->chan[c].state = ch->state;
		if (ch->peer) {
			memcpy(zc->chan[c].peer_mac, ch->peer->mac, 6);
			zc->chan[c].peer_vm_id = ch->peer->vm_id;
		}
	}
	zc->generation++;
	virtio_config_changed(&n->vd);
}

static bool channel_idle(struct net_port *port, unsigned c)
{
	struct virtio_net_dev *n = port_dev(port);
	return n->chan[c].tx_inflight == 0 && n->chan[c].rx_out == 0 && !vq_pending(chan_txq(n, c));
}

/* Forgets what the channel had in flight: transmissions complete (their
 * frames were delivered or the peer is gone), delivered slots count as
 * read. Posted receive buffers stay: they are good for the next binding. */
static void channel_reset(struct net_port *port, unsigned c)
{
	struct virtio_net_dev *n = port_dev(port);
	struct zc_chan *z = &n->chan[c];
	struct virtqueue *vq = chan_txq(n, c);
	bool pushed = false;
	for (unsigned s = 0; s < FERRY_ZC_SLOTS; s++) {
		if (z->tx_head[s] != NO_HEAD) {
			vq_push(vq, z->tx_head[s], 0);
			z->tx_head[s] = NO_HEAD;
			pushed = true;
		}
		z->rx_delivered[s] = 0;
	}
	z->tx_inflight = z->rx_out = 0;
	z->waiting_for_peer = false;
	z->last_progress_ns = clock_ns();
	if (pushed)
		virtio_queue_interrupt(&n->vd, vq);
}

/* Slots the driver gave back (completing its peer's frames, and letting
 * the peer send more), then this side's frames. */
static bool channel_service(struct net_port *port, unsigned c)
{
	struct virtio_net_dev *n = port_dev(port);
	unsigned moved = 0, pc;
	if (vq_pending(chan_rxq(n, c))) {
		struct net_port *peer = net_channel_peer(port, c, &pc);
		moved += take_rx_buffers(n, c);
		if (peer)
			moved += process_chan_tx(port_dev(peer), pc);
	}
	if (vq_pending(chan_txq(n, c)))
		moved += process_chan_tx(n, c);
	return moved > 0;
}

static bool channel_stalled(struct net_port *port, unsigned c, uint64_t now, uint64_t stall_ns)
{
	struct virtio_net_dev *n = port_dev(port);
	struct zc_chan *z = &n->chan[c];
	/* Held up: every slot in flight, or the next frame waits for the
	 * peer to give its slot back. */
	bool held = z->tx_inflight >= FERRY_ZC_SLOTS || (z->waiting_for_peer && vq_pending(chan_txq(n, c)));
	return held && now - z->last_progress_ns > stall_ns;
}

static void channel_notify(struct net_port *port, unsigned c, bool kick)
{
	vq_set_no_notify(chan_txq(port_dev(port), c), !kick);
}

static const struct net_port_ops port_ops = {
	.deliver = deliver,
	.channels_changed = channels_changed,
	.channel_idle = channel_idle,
	.channel_reset = channel_reset,
	.channel_service = channel_service,
	.channel_stalled = channel_stalled,
	.channel_notify = channel_notify,
};

/* --- the virtio device ------------------------------------------------------- */

static void net_queue_notify(struct virtio_device *vd, struct virtqueue *vq)
{
	struct virtio_net_dev *n = to_net(vd);
	if (vq->index == VIRTIO_NET_TXQ(0)) {
		process_tx0(n);
	} else if (is_zc_queue(vq->index) && n->port.zc) {
		channel_service(&n->port, queue_channel(vq->index));
	}
	/* A kick of receive queue 0 needs nothing: buffers are taken as
	 * frames arrive. */
}

static void net_activate(struct virtio_device *vd)
{
	struct virtio_net_dev *n = to_net(vd);
	n->port.zc = n->zc_offered && virtio_has_feature(vd, VIRTIO_NET_F_FERRY_ZC);
	for (unsigned c = 0; n->port.zc && c < FERRY_ZC_CHANNELS; c++) {
		memset(n->chan[c].tx_head, 0xff, sizeof(n->chan[c].tx_head));
		memset(n->chan[c].rx_head, 0xff, sizeof(n->chan[c].rx_head));
		/* Slots given back are collected when a sender needs them (or by
		 * the switch's poll): a kick for them would only cost the guest. */
		vq_set_no_notify(chan_rxq(n, c), true);
	}
	net_port_set_up(&n->port, true);
}

static void net_reset(struct virtio_device *vd)
{
	struct virtio_net_dev *n = to_net(vd);
	net_port_set_up(&n->port, false); /* unbinds every channel */
	n->port.zc = false;
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
		memset(&n->chan[c], 0, sizeof(n->chan[c]));
		memset(n->chan[c].tx_head, 0xff, sizeof(n->chan[c].tx_head));
		memset(n->chan[c].rx_head, 0xff, sizeof(n->chan[c].rx_head));
	}
}

static void net_config_write(struct virtio_device *vd, uint32_t off, const void *data, uint32_t len)
{
	(void)data;
	device_reject(&vd->dev, "write of %u bytes at config offset %u (the config is read-only)", len, off);
}

static void net_counters_json_dev(struct virtio_device *vd, cJSON *o)
{
	struct virtio_net_dev *n = to_net(vd);
	char mac[18];
	const uint8_t *m = n->port.mac;
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
	cJSON_AddStringToObject(o, "mac", mac);
	cJSON_AddStringToObject(o, "network", n->sw->name);
	cJSON_AddBoolToObject(o, "zero_copy_driver", n->port.zc);
	net_counters_json(&n->port.ctr, o);
	cJSON_AddNumberToObject(o, "writes_to_receive_areas", (double)atomic_load(&n->ro_guard.ctr.rejected));
}

static void ro_guard_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_net_dev *n = opaque;
	if (is_write)
		device_reject(&n->ro_guard, "write of %u bytes to a receive area at offset 0x%llx ignored", len,
			      (unsigned long long)off);
	else
		memset(data, 0xff, len);
}

static int net_pci_setup(struct virtio_device *vd, struct pci_device *pdev, char *err, size_t errlen)
{
	struct virtio_net_dev *n = to_net(vd);
	if (!n->zc_offered)
		return 0;
	pci_set_bar(pdev, FERRY_ZC_BAR, FERRY_ZC_BAR_SIZE, true, true, NULL, NULL);
	pci_place_bar(pdev, FERRY_ZC_BAR, n->zc_gpa);
	for (int id = 0; id < 2; id++) {
		uint64_t off = id ? FERRY_ZC_RX_OFFSET(0) : FERRY_ZC_TX_OFFSET(0), len = FERRY_ZC_BAR_SIZE / 2;
		struct virtio_pci_cap64 cap = {
			.cap = { .cap_vndr = PCI_CAP_ID_VNDR, .cap_len = sizeof(cap),
				 .cfg_type = VIRTIO_PCI_CAP_SHARED_MEMORY_CFG, .bar = FERRY_ZC_BAR, .id = (uint8_t)id,
				 .offset = (uint32_t)off, .length = (uint32_t)len },
			.offset_hi = (uint32_t)(off >> 32),
			.length_hi = (uint32_t)(len >> 32),
		};
		if (!pci_add_cap(pdev, &cap, sizeof(cap))) {
			snprintf(err, errlen, "virtio-net: no room for its capabilities");
			return -1;
		}
	}
	return 0;
}

/* The guest moved or unmapped BAR 2: both memory slots follow, or neither. */
static void net_bar_mapped(struct virtio_device *vd, unsigned bar, uint64_t addr, bool mapped)
{
	struct virtio_net_dev *n = to_net(vd);
	struct guest_memory *mem = &vd->dev.vm->mem;
	if (bar != FERRY_ZC_BAR || n->region[0] < 0)
		return;
	pthread_mutex_lock(n->vd.lock);
	uint64_t old = n->zc_gpa, half = FERRY_ZC_BAR_SIZE / 2;
	bool was = mem->region[n->region[0]].present;
	if (mapped == was && (!mapped || addr == old)) {
		pthread_mutex_unlock(n->vd.lock);
		return;
	}
	if (was)
		bus_unregister(&vd->dev.vm->mmio, old + half, n);
	bool ok = gm_move_foreign(mem, (unsigned)n->region[0], addr, mapped) == 0 &&
		  gm_move_foreign(mem, (unsigned)n->region[1], addr + half, mapped) == 0;
	if (!ok) {
		if (gm_move_foreign(mem, (unsigned)n->region[0], old, was) < 0 ||
		    gm_move_foreign(mem, (unsigned)n->region[1], old + half, was) < 0)
			log_error(vd->dev.vm->name, "virtio-net: the zero-copy window could not be put back");
		device_reject(&vd->dev, "cannot move the zero-copy window to 0x%llx", (unsigned long long)addr);
		addr = old;
		mapped = was && mem->region[n->region[0]].present;
	}
	n->zc_gpa = addr;
	if (mapped && bus_register(&vd->dev.vm->mmio, addr + half, half, ro_guard_io, n, &n->ro_guard) < 0)
		device_reject(&vd->dev, "receive areas at 0x%llx overlap another device", (unsigned long long)addr);
	pthread_mutex_unlock(n->vd.lock);
}

static void free_window(struct virtio_net_dev *n)
{
	if (n->zc_hva)
		munmap(n->zc_hva, FERRY_ZC_BAR_SIZE);
	if (n->zc_memfd >= 0)
		close(n->zc_memfd);
}

static void net_destroy(struct virtio_device *vd)
{
	struct virtio_net_dev *n = to_net(vd);
	struct vm *vm = vd->dev.vm;
	pthread_mutex_lock(n->vd.lock);
	net_switch_detach(&n->port);
	pthread_mutex_unlock(n->vd.lock);
	for (unsigned i = 0; i < vm->nr_nics; i++)
		if (vm->nics[i] == n)
			vm->nics[i] = NULL;
	free_window(n);
	free(n);
}

#define NET_FEATURES ((1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_MTU) | (1ull << VIRTIO_NET_F_STATUS))

#define NET_OPS(zc)                                                                              \
	{                                                                                        \
		.type = VIRTIO_ID_NET, .num_queues = (zc) ? 2 + 2 * FERRY_ZC_CHANNELS : 2,       \
		.queue_size = NET_QUEUE_SIZE,                                                    \
		.features = NET_FEATURES | ((zc) ? 1ull << VIRTIO_NET_F_FERRY_ZC : 0),           \
		.config_size = (zc) ? sizeof(struct ferry_net_config) : sizeof(struct virtio_net_config), \
		.config_write = net_config_write, .queue_notify = net_queue_notify,              \
		.activate = net_activate, .reset = net_reset, .counters_json = net_counters_json_dev, \
		.destroy = net_destroy, .pci_setup = net_pci_setup, .bar_mapped = net_bar_mapped, \
		/* Channel queues: served on the vCPU that kicks, no hop to the  \
		 * event loop (which spinning guests would have to yield to). */ \
		.sync_notify = (zc) ? 0x3fffcu : 0,                                              \
	}

static const struct virtio_device_ops net_ops = NET_OPS(false);
static const struct virtio_device_ops net_zc_ops = NET_OPS(true);

/* Windows made by virtio_net_window_create, waiting for their devices. */
static struct virtio_net_dev *pending_of(struct vm *vm, unsigned index)
{
	for (struct virtio_net_dev *n = vm->nics_pending; n; n = n->next_pending)
		if (n->index == index)
			return n;
	return NULL;
}

int virtio_net_window_create(struct vm *vm, unsigned index, const struct nic_config *nc, char *err, size_t errlen)
{
	struct net_switch *sw = nc->net < vm->vmm->nr_nets ? vm->vmm->nets[nc->net] : NULL;
	struct virtio_net_dev *n = calloc(1, sizeof(*n));
	if (!n || !sw) {
		snprintf(err, errlen, "virtio-net: %s", n ? "its network was not set up" : "out of memory");
		free(n);
		return -1;
	}
	n->index = index;
	n->nic = nc;
	n->sw = sw;
	n->zc_memfd = -1;
	n->region[0] = n->region[1] = -1;
	n->zc_offered = sw->zero_copy;
	n->vd.dev.vm = vm;
	n->next_pending = vm->nics_pending;
	vm->nics_pending = n;
	if (!n->zc_offered)
		return 0;
	/* The window: private memory (its own memfd) until a channel is bound,
	 * then areas of the network's shared memory mapped over it. */
	char name[64];
	snprintf(name, sizeof(name), "ferry-%s-net%u", vm->name, index);
	n->zc_memfd = memfd_create(name, MFD_CLOEXEC);
	if (n->zc_memfd < 0 || ftruncate(n->zc_memfd, (off_t)FERRY_ZC_BAR_SIZE) < 0) {
		snprintf(err, errlen, "virtio-net: cannot make its zero-copy window: %s", strerror(errno));
		return -1;
	}
	void *hva = mmap(NULL, FERRY_ZC_BAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, n->zc_memfd, 0);
	if (hva == MAP_FAILED) {
		snprintf(err, errlen, "virtio-net: cannot map its zero-copy window: %s", strerror(errno));
		return -1;
	}
	n->zc_hva = hva;
	n->zc_gpa = vm_window_gpa(vm, FERRY_ZC_BAR_SIZE);
	uint64_t half = FERRY_ZC_BAR_SIZE / 2;
	n->region[0] = gm_add_foreign(&vm->mem, "net-zc-tx", n->zc_gpa, half, n->zc_hva, false, err, errlen);
	if (n->region[0] < 0)
		return -1;
	n->region[1] = gm_add_foreign(&vm->mem, "net-zc-rx", n->zc_gpa + half, half, n->zc_hva + half, true, err,
				      errlen);
	return n->region[1] < 0 ? -1 : 0;
}

unsigned virtio_net_unbind(struct vm *vm)
{
	unsigned n = 0;
	for (unsigned i = 0; i < vm->nr_nics; i++) {
		pthread_mutex_lock(vm->nics[i]->vd.lock);
		n += net_port_unbind_all(&vm->nics[i]->port);
		pthread_mutex_unlock(vm->nics[i]->vd.lock);
	}
	return n;
}

void virtio_net_abandon(struct vm *vm)
{
	while (vm->nics_pending) {
		struct virtio_net_dev *n = vm->nics_pending;
		vm->nics_pending = n->next_pending;
		if (!n->registered) {
			free_window(n);
			free(n);
		}
	}
}

int virtio_net_create(struct vm *vm, unsigned index, char *err, size_t errlen)
{
	struct virtio_net_dev *n = pending_of(vm, index);
	if (!n) {
		snprintf(err, errlen, "virtio-net: NIC %u has no window", index);
		return -1;
	}
	const struct nic_config *nc = n->nic;
	struct virtio_net_config *c = &n->cfg.std;
	memcpy(c->mac, nc->mac, 6);
	c->status = VIRTIO_NET_S_LINK_UP;
	c->max_virtqueue_pairs = 1;
	c->mtu = (uint16_t)(n->sw->mtu > 65535 ? 65535 : n->sw->mtu);
	n->cfg.zc.channels = FERRY_ZC_CHANNELS;
	n->cfg.zc.slots = FERRY_ZC_SLOTS;
	n->cfg.zc.slot_size = FERRY_ZC_SLOT_SIZE;

	struct net_port *p = &n->port;
	snprintf(p->name, sizeof(p->name), "%s", vm->name);
	p->vm_id = config_vm_id(vm->id);
	memcpy(p->mac, nc->mac, 6);
	p->ops = &port_ops;
	p->dev = n;
	p->vm_stopping = &vm->stopping;
	p->zc_hva = n->zc_hva;
	p->zc_memfd = n->zc_memfd;

	snprintf(n->ro_guard.name, sizeof(n->ro_guard.name), "net-receive-areas");
	n->ro_guard.vm = vm;
	char name[32];
	snprintf(name, sizeof(name), index ? "net%u" : "net", index);
	if (virtio_device_init(&n->vd, vm, name, n->zc_offered ? &net_zc_ops : &net_ops, &n->cfg, &n->sw->lock, err,
			       errlen) < 0)
		return -1;
	n->registered = true;
	/* The device owns it now (freed by net_destroy). */
	for (struct virtio_net_dev **pp = &vm->nics_pending; *pp; pp = &(*pp)->next_pending)
		if (*pp == n) {
			*pp = n->next_pending;
			break;
		}
	if (net_switch_attach(n->sw, p, err, errlen) < 0)
		return -1;
	vm->nics[vm->nr_nics++] = n;
	if (n->zc_offered) {
		uint64_t half = FERRY_ZC_BAR_SIZE / 2;
		if (bus_register(&vm->mmio, n->zc_gpa + half, half, ro_guard_io, n, &n->ro_guard) < 0) {
			snprintf(err, errlen, "virtio-net: receive areas overlap another device");
			return -1;
		}
	}
	return 0;
}
