/* virtio-net: queue pair 0 as any virtio-net device has it, frames switched
 * with one copy (host/net_switch.c). With VIRTIO_NET_F_FERRY_ZC, BAR 2 holds
 * eight zero-copy channels, each a transmit and a receive area that the
 * switch maps onto memory shared with one co-resident peer: the two drivers
 * then move frames by plain stores into rings there
 * (include/ferry/virtio_net.h), and this device only relays their doorbells
 * as interrupts, counts frames, and tells the switch when a channel drained
 * or its peer stopped reading. Guest indices are read, never trusted: a
 * liar skews its own counts, nothing else. */
#include "devices/virtio_net.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
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

/* What this device keeps of a bound channel: the rings are the guests'
 * (include/ferry/virtio_net.h); ferry only reads their indices, to count
 * frames, to see a drained channel, and to see a peer that stopped reading. */
struct zc_chan {
	uint32_t counted;          /* frames of ours already counted as sent */
	uint32_t peer_cons;        /* the peer's consumer index when last seen */
	uint64_t last_progress_ns; /* when it last moved */
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
	uint8_t *zc_hva, *zc_private;
	int zc_memfd;
	uint64_t zc_gpa;
	int region[2];
	struct device ro_guard;
	bool registered;
	struct zc_chan chan[FERRY_ZC_CHANNELS];
	atomic_ulong doorbells, doorbells_unbound;
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

/* Channel c's doorbell: the notify address of queue FERRY_ZC_DOORBELL_QUEUE + c. */
static bool is_doorbell(unsigned q)
{
	return q >= FERRY_ZC_DOORBELL_QUEUE && q < FERRY_ZC_DOORBELL_QUEUE + FERRY_ZC_CHANNELS;
}

/* The ring headers of channel c: ours (in our transmit area) and the
 * peer's (in our receive area). Guest memory: read once, never trusted. */
static volatile struct ferry_zc_ring *my_ring(struct virtio_net_dev *n, unsigned c)
{
	return (volatile struct ferry_zc_ring *)(n->zc_hva + FERRY_ZC_TX_OFFSET(c));
}

static volatile struct ferry_zc_ring *peer_ring(struct virtio_net_dev *n, unsigned c)
{
	return (volatile struct ferry_zc_ring *)(n->zc_hva + FERRY_ZC_RX_OFFSET(c));
}

static uint32_t load32(volatile uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
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

/* Frames this side published since last counted: they crossed without a
 * copy. The index is the guest's: a liar only skews its own count (and
 * cannot make it go back). */
static void account(struct virtio_net_dev *n, unsigned c)
{
	struct zc_chan *z = &n->chan[c];
	uint32_t prod = load32(&my_ring(n, c)->prod), delta = prod - z->counted;
	if (delta < 1u << 31) {
		atomic_fetch_add(&n->port.ctr.frames_zero_copy, delta);
		atomic_fetch_add(&n->port.ctr.frames_tx, delta);
		z->counted = prod;
	}
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
		zc->chan[c].epoch = ch->epoch;
		if (ch->peer) {
			memcpy(zc->chan[c].peer_mac, ch->peer->mac, 6);
			zc->chan[c].peer_vm_id = ch->peer->vm_id;
		}
	}
	zc->generation++;
	virtio_config_changed(&n->vd);
}

/* Bound: this side has said it publishes nothing more, and the peer has
 * read everything it published. Unbound: the driver has read the frames
 * left in its (private) receive area. */
static bool channel_idle(struct net_port *port, unsigned c)
{
	struct virtio_net_dev *n = port_dev(port);
	if (port->chan[c].state == FERRY_ZC_UNBOUND)
		return load32(&peer_ring(n, c)->prod) == load32(&my_ring(n, c)->cons);
	return load32(&my_ring(n, c)->closed) && load32(&my_ring(n, c)->prod) == load32(&peer_ring(n, c)->cons);
}

static uint16_t rx_mark(struct net_port *port)
{
	return port_dev(port)->vd.vq[VIRTIO_NET_RXQ(0)].used_idx;
}

/* A binding starts or ends: its frames so far are counted, and the next
 * binding's rings (fresh shared memory) start from zero. */
static void channel_reset(struct net_port *port, unsigned c)
{
	struct virtio_net_dev *n = port_dev(port);
	if (port->chan[c].state != FERRY_ZC_UNBOUND)
		account(n, c);
	memset(&n->chan[c], 0, sizeof(n->chan[c]));
	n->chan[c].last_progress_ns = clock_ns();
}

/* Periodic: count frames, and finish unbinding a drained channel. */
static bool channel_service(struct net_port *port, unsigned c)
{
	struct virtio_net_dev *n = port_dev(port);
	if (port->chan[c].state == FERRY_ZC_UNBOUND)
		return false;
	account(n, c);
	if (port->chan[c].state == FERRY_ZC_DRAINING)
		net_channel_drained(port, c);
	return false;
}

/* Held up: our ring is full, and the peer has consumed nothing for stall_ns. */
static bool channel_stalled(struct net_port *port, unsigned c, uint64_t now, uint64_t stall_ns)
{
	struct virtio_net_dev *n = port_dev(port);
	struct zc_chan *z = &n->chan[c];
	uint32_t cons = load32(&peer_ring(n, c)->cons), prod = load32(&my_ring(n, c)->prod);
	if (cons != z->peer_cons) {
		z->peer_cons = cons;
		z->last_progress_ns = now;
	}
	bool stalled = prod - cons >= FERRY_ZC_RING_SLOTS && now - z->last_progress_ns > stall_ns;
	if (stalled) {
		volatile struct ferry_zc_ring *m = my_ring(n, c), *p = peer_ring(n, c);
		log_debug(port->name, "net: channel %u: ours prod %u cons %u wake %u/%u closed %u; peer's prod %u cons %u "
			  "wake %u/%u closed %u", c, load32(&m->prod), load32(&m->cons), load32(&m->wake_rx),
			  load32(&m->wake_tx), load32(&m->closed), load32(&p->prod), load32(&p->cons), load32(&p->wake_rx),
			  load32(&p->wake_tx), load32(&p->closed));
	}
	return stalled;
}

/* A doorbell on channel c: the peer sleeps waiting for what we just
 * published (or for room we just made): its interrupt. */
static void ring_peer(struct virtio_net_dev *n, unsigned c)
{
	unsigned pc;
	struct net_port *peer = net_channel_peer(&n->port, c, &pc);
	if (!peer) {
		atomic_fetch_add(&n->doorbells_unbound, 1); /* a race with unbinding, or a confused driver */
		return;
	}
	struct virtio_net_dev *p = port_dev(peer);
	atomic_fetch_add(&n->doorbells, 1);
	if (p->vd.transport && peer->up)
		virtio_pci_signal_queue(p->vd.transport, &p->vd.vq[FERRY_ZC_DOORBELL_QUEUE + pc]);
}

static const struct net_port_ops port_ops = {
	.deliver = deliver,
	.channels_changed = channels_changed,
	.channel_idle = channel_idle,
	.channel_reset = channel_reset,
	.channel_service = channel_service,
	.channel_stalled = channel_stalled,
	.rx_mark = rx_mark,
};

/* --- the virtio device ------------------------------------------------------- */

static void net_queue_notify(struct virtio_device *vd, struct virtqueue *vq)
{
	struct virtio_net_dev *n = to_net(vd);
	if (vq->index == VIRTIO_NET_TXQ(0))
		process_tx0(n);
	else if (is_doorbell(vq->index) && n->port.zc)
		ring_peer(n, vq->index - FERRY_ZC_DOORBELL_QUEUE);
	/* A kick of receive queue 0 needs nothing: buffers are taken as
	 * frames arrive. */
}

static void net_activate(struct virtio_device *vd)
{
	struct virtio_net_dev *n = to_net(vd);
	n->port.zc = n->zc_offered && virtio_has_feature(vd, VIRTIO_NET_F_FERRY_ZC);
	memset(n->chan, 0, sizeof(n->chan));
	net_port_set_up(&n->port, true);
}

static void net_reset(struct virtio_device *vd)
{
	struct virtio_net_dev *n = to_net(vd);
	net_port_set_up(&n->port, false); /* unbinds every channel */
	n->port.zc = false;
	memset(n->chan, 0, sizeof(n->chan));
	/* The next driver starts from zeroed rings, with nothing left unread. */
	if (n->zc_memfd >= 0 &&
	    fallocate(n->zc_memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)FERRY_ZC_BAR_SIZE) < 0)
		device_reject(&vd->dev, "cannot clear the zero-copy window: %s", strerror(errno));
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
	/* Frames on a channel are counted by the tick; a VM that powers off
	 * between two ticks would report fewer than it sent. Lock held. */
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
		if (n->port.zc && n->port.chan[c].state != FERRY_ZC_UNBOUND)
			account(n, c);
	net_counters_json(&n->port.ctr, o);
	cJSON_AddNumberToObject(o, "writes_to_receive_areas", (double)atomic_load(&n->ro_guard.ctr.rejected));
	cJSON_AddNumberToObject(o, "doorbells", (double)atomic_load(&n->doorbells));
	cJSON_AddNumberToObject(o, "doorbells_unbound", (double)atomic_load(&n->doorbells_unbound));
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
	if (n->zc_private)
		munmap(n->zc_private, FERRY_ZC_BAR_SIZE);
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
		.type = VIRTIO_ID_NET, .num_queues = (zc) ? 2 + FERRY_ZC_CHANNELS : 2,           \
		.queue_size = NET_QUEUE_SIZE,                                                    \
		.features = NET_FEATURES | ((zc) ? 1ull << VIRTIO_NET_F_FERRY_ZC : 0),           \
		.config_size = (zc) ? sizeof(struct ferry_net_config) : sizeof(struct virtio_net_config), \
		.config_write = net_config_write, .queue_notify = net_queue_notify,              \
		.activate = net_activate, .reset = net_reset, .counters_json = net_counters_json_dev, \
		.destroy = net_destroy, .pci_setup = net_pci_setup, .bar_mapped = net_bar_mapped, \
		/* Doorbells: not rings, and served on the vCPU that rings them \
		 * (no hop to an event loop that spinning guests delay). */      \
		.sync_notify = (zc) ? 0x3fcu : 0, .doorbell_queues = (zc) ? 0x3fcu : 0,          \
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
	/* A second view of the private memory, which the window shows only
	 * while no channel is bound over it. */
	hva = mmap(NULL, FERRY_ZC_BAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, n->zc_memfd, 0);
	if (hva == MAP_FAILED) {
		snprintf(err, errlen, "virtio-net: cannot map its zero-copy memory: %s", strerror(errno));
		return -1;
	}
	n->zc_private = hva;
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
	n->cfg.zc.slots = FERRY_ZC_RING_SLOTS;
	n->cfg.zc.slot_size = FERRY_ZC_SLOT_SIZE;

	struct net_port *p = &n->port;
	snprintf(p->name, sizeof(p->name), "%s", vm->name);
	p->vm_id = config_vm_id(vm->id);
	memcpy(p->mac, nc->mac, 6);
	p->ops = &port_ops;
	p->dev = n;
	p->vm_stopping = &vm->stopping;
	p->zc_hva = n->zc_hva;
	p->zc_private = n->zc_private;
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
