#include "devices/msgq.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/pci.h"
#include "devices/virtio.h"
#include "ferry/layout.h"
#include "ferry/msgq.h"
#include "host/eventloop.h"
#include "host/msgq_switch.h"
#include "vmm/config.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define MSGQ_QUEUE_SIZE 4096  /* deferred sends pile up between pickups */
/* Work bounds, under the switch lock every msgq VM shares: a return chain
 * holds at most RETURN_CHAIN_ENTRIES entries (drivers batch 64); one pass
 * takes at most PASS_CHAINS chains of either queue, and returns that name
 * more than two windows' worth of slots; the rest waits for the next pickup
 * (the poll timer, or the VM's next exit). */
#define RETURN_CHAIN_ENTRIES 256
#define PASS_CHAINS 256

struct msgq_dev {
	struct virtio_device vd;
	struct msgq_endpoint *ep;
	struct msgq_config cfg;      /* the device config space image */
	uint64_t window_gpa;
	int region[2];               /* guest-memory regions: send, receive */
	struct evl_handler *poll;    /* picks up deferred sends */
	struct device ro_guard;      /* counts writes to received pages */
	bool registered;             /* a device of the VM: destroyed with it */
	struct vq_chain reserved;    /* the receive buffer the next delivery fills */
	bool have_reserved;
	/* Whether pausing the VMs for a pickup pays: the last pickup that
	 * delivered anything remapped pages. A pickup that delivered nothing
	 * because receivers were full says nothing; one whose sends were all
	 * refused turns pausing off, so a guest posting bad sends cannot make
	 * every pickup stop its peers. */
	bool pause_pays;
	unsigned long paused_pickups;
	/* Direct rings (MSGQ_F_RINGS), if this VM has any: BAR 4. */
	bool has_rings;
	uint64_t rings_gpa;
	int rings_region[2];         /* guest-memory regions: read-write, read-only */
	struct device rings_guard;   /* counts writes to the read-only ring views */
};

static const char *const status_name[MSGQ_E_MAX] = {
	[MSGQ_OK] = "ok", [MSGQ_E_DENIED] = "denied", [MSGQ_E_NO_DEST] = "no_dest",
	[MSGQ_E_DEST_DOWN] = "dest_down", [MSGQ_E_BAD_ADDR] = "bad_addr", [MSGQ_E_UNALIGNED] = "unaligned",
	[MSGQ_E_TOO_LONG] = "too_long", [MSGQ_E_FULL] = "full", [MSGQ_E_BAD_CHAIN] = "bad_chain",
	[MSGQ_E_HOST] = "host",
};

static struct msgq_dev *to_msgq(struct virtio_device *vd)
{
	return (struct msgq_dev *)vd;
}

static uint64_t send_region_size(const struct msgq_dev *m)
{
	return (uint64_t)m->cfg.send_slots * m->cfg.page_size;
}

/* One send chain: [out] header, [out] payload in the send region,
 * [in] status. Returns the status and fills *how. Lock held. */
static uint8_t handle_send(struct msgq_dev *m, const struct vq_desc_chain *c, bool immediate,
			   struct msgq_send_status *st)
{
	struct msgq_send_hdr h;
	if (c->n != 3 || c->desc[0].writable || c->desc[1].writable || !c->desc[2].writable ||
	    c->desc[0].len != sizeof(h) || gm_read(&m->vd.dev.vm->mem, c->desc[0].addr, &h, sizeof(h)) < 0) {
		device_reject(&m->vd.dev, "send: chain is not [header][payload][status]");
		return MSGQ_E_BAD_CHAIN;
	}
	st->cookie = h.cookie;
	/* The header was copied once: everything below uses the copy. */
	uint64_t addr = c->desc[1].addr, off = addr - m->window_gpa, ps = m->cfg.page_size;
	if (addr < m->window_gpa || off >= send_region_size(m)) {
		device_reject(&m->vd.dev, "send to %u: payload at 0x%llx is outside the send region", h.dest,
			      (unsigned long long)addr);
		return MSGQ_E_BAD_ADDR;
	}
	if (off % ps) {
		device_reject(&m->vd.dev, "send to %u: payload at 0x%llx does not start at a slot", h.dest,
			      (unsigned long long)addr);
		return MSGQ_E_UNALIGNED;
	}
	if (h.len == 0 || h.len > c->desc[1].len || c->desc[1].len > send_region_size(m) - off) {
		device_reject(&m->vd.dev, "send to %u: length %u does not fit its buffer of %u bytes", h.dest, h.len,
			      c->desc[1].len);
		return MSGQ_E_TOO_LONG;
	}
	int r = msgq_switch_send(m->ep, h.dest, h.flags, (uint32_t)(off / ps), h.len, h.cookie, &st->how);
	if (r == MSGQ_E_FULL) /* backpressure, not misbehaviour: counted by the caller, not logged */
		log_debug(m->vd.dev.vm->name, "msgq: send to %u of %u bytes: receiver full", h.dest, h.len);
	else if (r != MSGQ_OK)
		device_reject(&m->vd.dev, "send to %u of %u bytes refused: %s", h.dest, h.len, status_name[r]);
	else if (immediate && (h.flags & MSGQ_SEND_DOORBELL))
		atomic_fetch_add(&m->ep->ctr.immediate, 1);
	else
		atomic_fetch_add(&m->ep->ctr.deferred, 1);
	return (uint8_t)r;
}

/* Handles every pending send. immediate: the guest rang the doorbell and
 * waits in the exit; otherwise a pickup at another exit or by the poll
 * timer. Lock held. */
static void process_sends(struct msgq_dev *m, bool immediate)
{
	struct virtqueue *vq = &m->vd.vq[MSGQ_QUEUE_SEND];
	struct vq_desc_chain c;
	bool pushed = false;
	if (!m->ep->up)
		return;
	for (unsigned chains = 0; chains < PASS_CHAINS && vq_pop_desc(vq, &c) == 1; chains++) {
		struct msgq_send_status st = { 0 };
		st.status = handle_send(m, &c, immediate, &st);
		if (st.status != MSGQ_OK) {
			atomic_fetch_add(&m->ep->ctr.rejected, 1);
			atomic_fetch_add(&m->ep->ctr.rejected_by[st.status], 1);
		}
		/* Report in the last descriptor if it can hold a status. */
		uint32_t written = 0;
		const struct vq_desc *last = c.n ? &c.desc[c.n - 1] : NULL;
		if (last && last->writable && last->len >= sizeof(st) &&
		    gm_write(&m->vd.dev.vm->mem, last->addr, &st, sizeof(st)) == 0)
			written = sizeof(st);
		vq_push(vq, c.head, written);
		pushed = true;
	}
	if (vq->broken)
		virtio_needs_reset(&m->vd);
	if (pushed)
		virtio_queue_interrupt(&m->vd, vq);
}

/* Receive slots the driver is done with. Lock held. */
static void process_returns(struct msgq_dev *m)
{
	struct virtqueue *vq = &m->vd.vq[MSGQ_QUEUE_RETURN];
	struct vq_chain c;
	bool pushed = false;
	uint64_t budget = 2ull * m->cfg.recv_slots; /* slots named, valid or not */
	for (unsigned chains = 0; chains < PASS_CHAINS && budget && vq_pop(vq, &c) == 1; chains++) {
		struct msgq_return r;
		size_t off = 0, end = c.out_bytes < RETURN_CHAIN_ENTRIES * sizeof(r) ? c.out_bytes
							: RETURN_CHAIN_ENTRIES * sizeof(r);
		if (c.out_bytes > end)
			device_reject(&m->vd.dev, "return chain of %llu bytes; only the first %d entries are taken",
				      (unsigned long long)c.out_bytes, RETURN_CHAIN_ENTRIES);
		while (off + sizeof(r) <= end && vq_chain_read(&c, off, &r, sizeof(r)) == sizeof(r)) {
			budget -= r.nr_pages < budget ? r.nr_pages : budget;
			if (msgq_switch_return(m->ep, r.slot, r.nr_pages) < 0)
				device_reject(&m->vd.dev, "return of receive slots %u+%u, which hold no message", r.slot,
					      r.nr_pages);
			off += sizeof(r);
		}
		if (c.out_bytes % sizeof(r))
			device_reject(&m->vd.dev, "return buffer of %llu bytes is not a whole number of entries",
				      (unsigned long long)c.out_bytes);
		vq_push(vq, c.head, 0);
		pushed = true;
	}
	if (vq->broken)
		virtio_needs_reset(&m->vd);
	if (pushed)
		virtio_queue_interrupt(&m->vd, vq);
}

static void msgq_queue_notify(struct virtio_device *vd, struct virtqueue *vq)
{
	struct msgq_dev *m = to_msgq(vd);
	if (vq->index == MSGQ_QUEUE_SEND)
		process_sends(m, true);
	else if (vq->index == MSGQ_QUEUE_RETURN)
		process_returns(m);
	else if (vq->index == MSGQ_QUEUE_RING_DOORBELL)
		msgq_rings_doorbell(m->ep);
	/* A kick of the receive queue needs nothing: buffers are taken as
	 * messages arrive. */
}

/* Switch callbacks for this VM as a receiver. Switch lock (= our lock) held. */
static bool reserve(struct msgq_endpoint *ep)
{
	struct msgq_dev *m = ep->dev;
	struct virtqueue *vq = &m->vd.vq[MSGQ_QUEUE_RECV];
	for (;;) {
		int r = vq_pop(vq, &m->reserved);
		if (r != 1) {
			if (vq->broken)
				virtio_needs_reset(&m->vd);
			return false;
		}
		if (!m->reserved.nr_out && m->reserved.in_bytes >= sizeof(struct msgq_recv_hdr))
			break;
		/* Unusable: given back empty, and the next one tried (a queue
		 * holds a bounded number). */
		device_reject(&m->vd.dev, "receive buffer must be one writable area of at least %zu bytes",
			      sizeof(struct msgq_recv_hdr));
		vq_push(vq, m->reserved.head, 0);
		virtio_queue_interrupt(&m->vd, vq);
	}
	m->have_reserved = true;
	return true;
}

static void unreserve(struct msgq_endpoint *ep)
{
	struct msgq_dev *m = ep->dev;
	if (m->have_reserved)
		vq_unpop(&m->vd.vq[MSGQ_QUEUE_RECV]);
	m->have_reserved = false;
}

static void deliver(struct msgq_endpoint *ep, const struct msgq_recv_hdr *hdr)
{
	struct msgq_dev *m = ep->dev;
	struct virtqueue *vq = &m->vd.vq[MSGQ_QUEUE_RECV];
	if (!m->have_reserved)
		return;
	m->have_reserved = false;
	vq_chain_write(&m->reserved, 0, hdr, sizeof(*hdr));
	vq_push(vq, m->reserved.head, sizeof(*hdr));
	virtio_queue_interrupt(&m->vd, vq);
	/* Slots the driver gave back with plain stores: taken now, on an exit
	 * that happens anyway, so that its batch buffers come back before it
	 * runs out of them and has to ring for them. */
	if (vq_pending(&m->vd.vq[MSGQ_QUEUE_RETURN]))
		process_returns(m);
}

static void isolation_lost(struct msgq_endpoint *ep, const char *why)
{
	struct msgq_dev *m = ep->dev;
	char detail[256];
	snprintf(detail, sizeof(detail), "msgq: %s; stopping the VM so it cannot see another VM's page", why);
	vm_stop(m->vd.dev.vm, VM_EXIT_VMM_ERROR, 0, detail);
}

static void reclaim(struct msgq_endpoint *ep)
{
	process_returns(ep->dev);
}

/* A peer woke this driver through a direct ring. */
static void wake(struct msgq_endpoint *ep, unsigned queue)
{
	struct msgq_dev *m = ep->dev;
	if (m->vd.transport && (m->vd.status & VIRTIO_STATUS_DRIVER_OK) && queue < MSGQ_NUM_QUEUES)
		virtio_pci_signal_queue(m->vd.transport, &m->vd.vq[queue]);
}

/* A peer was removed from the run: it leaves the peer table the driver
 * reads, and the driver gets a configuration change. */
static void peer_gone(struct msgq_endpoint *ep, uint32_t id)
{
	struct msgq_dev *m = ep->dev;
	for (uint32_t i = 0; i < m->cfg.nr_peers; i++) {
		if (m->cfg.peers[i].vm_id != id)
			continue;
		memmove(&m->cfg.peers[i], &m->cfg.peers[i + 1], (m->cfg.nr_peers - i - 1) * sizeof(m->cfg.peers[0]));
		m->cfg.nr_peers--;
		memset(&m->cfg.peers[m->cfg.nr_peers], 0, sizeof(m->cfg.peers[0]));
		break;
	}
	if (m->registered)
		virtio_config_changed(&m->vd);
}

static const struct msgq_endpoint_ops endpoint_ops = {
	.reserve = reserve,
	.unreserve = unreserve,
	.deliver = deliver,
	.reclaim = reclaim,
	.isolation_lost = isolation_lost,
	.wake = wake,
	.peer_gone = peer_gone,
};

static void msgq_activate(struct virtio_device *vd)
{
	to_msgq(vd)->ep->up = true;
}

static void msgq_reset(struct virtio_device *vd)
{
	struct msgq_dev *m = to_msgq(vd);
	m->ep->up = false;
	m->have_reserved = false;
	msgq_endpoint_reset(m->ep);
}

/* At every exit of this VM to ferry: the "next natural exit" for deferred
 * sends. */
static void msgq_exit_hook(void *arg)
{
	struct msgq_dev *m = arg;
	pthread_mutex_lock(m->vd.lock);
	if (vq_pending(&m->vd.vq[MSGQ_QUEUE_SEND]))
		process_sends(m, false);
	pthread_mutex_unlock(m->vd.lock);
}

/* With this many deferred sends waiting, and if pausing paid last time, the
 * pickup holds the sender and its peers outside the guest while it works:
 * every remap must otherwise kick a running vCPU out of the guest and wait
 * for it (KVM's MMU notifier), which on a software-KVM host costs more than
 * the remap itself. Copies gain nothing from it. */
#define PAUSE_BATCH 2

static unsigned long refused_not_full(struct msgq_counters *c)
{
	return atomic_load(&c->rejected) - atomic_load(&c->rejected_by[MSGQ_E_FULL]);
}

/* The VMs a pickup holds outside the guest: the sender and its live peers. */
struct pause_set {
	struct vm *paused[MSGQ_MAX_PEERS + 1];
	unsigned npaused;
};

static void add_to_pause(struct msgq_endpoint *peer, void *arg)
{
	struct pause_set *set = arg;
	if (set->npaused < MSGQ_MAX_PEERS + 1)
		set->paused[set->npaused++] = ((struct msgq_dev *)peer->dev)->vd.dev.vm;
}

/* Every poll_us: deferred sends, and slots given back without a doorbell. */
static void msgq_poll(void *arg, uint32_t events)
{
	struct msgq_dev *m = arg;
	struct vm *paused[MSGQ_MAX_PEERS + 1];
	unsigned npaused = 0;
	(void)events;
	pthread_mutex_lock(m->vd.lock);
	if (vq_pending(&m->vd.vq[MSGQ_QUEUE_SEND]) >= PAUSE_BATCH && m->ep->up && m->pause_pays) {
		struct pause_set set = { .npaused = 1 };
		set.paused[0] = m->vd.dev.vm;
		msgq_for_each_live_peer(m->ep, add_to_pause, &set);
		npaused = set.npaused;
		memcpy(paused, set.paused, npaused * sizeof(paused[0]));
		m->paused_pickups++;
	}
	pthread_mutex_unlock(m->vd.lock);
	/* Not under the lock: a vCPU may need it to finish the exit it is in. */
	for (unsigned i = 0; i < npaused; i++)
		vm_pause(paused[i]);
	pthread_mutex_lock(m->vd.lock);
	if (vq_pending(&m->vd.vq[MSGQ_QUEUE_SEND])) {
		struct msgq_counters *c = &m->ep->ctr;
		unsigned long sent = atomic_load(&c->sent), remapped = atomic_load(&c->pages_remapped);
		unsigned long refused = refused_not_full(c);
		process_sends(m, false);
		if (atomic_load(&c->sent) != sent)
			m->pause_pays = atomic_load(&c->pages_remapped) != remapped;
		else if (refused_not_full(c) != refused)
			m->pause_pays = false;
	}
	if (vq_pending(&m->vd.vq[MSGQ_QUEUE_RETURN]))
		process_returns(m);
	msgq_rings_check(m->ep);
	pthread_mutex_unlock(m->vd.lock);
	for (unsigned i = 0; i < npaused; i++)
		vm_resume(paused[i]);
}

static void msgq_counters_json(struct virtio_device *vd, cJSON *o)
{
	struct msgq_dev *m = to_msgq(vd);
	struct msgq_counters *c = &m->ep->ctr;
	cJSON_AddNumberToObject(o, "vm_id", m->ep->id);
	cJSON_AddNumberToObject(o, "sent", (double)atomic_load(&c->sent));
	cJSON_AddNumberToObject(o, "received", (double)atomic_load(&c->received));
	cJSON_AddNumberToObject(o, "pages_remapped", (double)atomic_load(&c->pages_remapped));
	cJSON_AddNumberToObject(o, "bytes_copied", (double)atomic_load(&c->bytes_copied));
	cJSON_AddNumberToObject(o, "immediate", (double)atomic_load(&c->immediate));
	cJSON_AddNumberToObject(o, "deferred", (double)atomic_load(&c->deferred));
	/* "rejected" (the device's generic counter, already in the object)
	 * counts misbehaviour; this one every refused send, MSGQ_E_FULL
	 * included. A JSON object names a key once. */
	cJSON_AddNumberToObject(o, "rejected_sends", (double)atomic_load(&c->rejected));
	cJSON *by = cJSON_AddObjectToObject(o, "rejected_by");
	for (int i = 1; i < MSGQ_E_MAX; i++)
		cJSON_AddNumberToObject(by, status_name[i], (double)atomic_load(&c->rejected_by[i]));
	cJSON_AddNumberToObject(o, "returned_pages", (double)atomic_load(&c->returned_pages));
	cJSON_AddNumberToObject(o, "pages_zeroed_for_reuse", (double)atomic_load(&c->pages_zeroed_for_reuse));
	cJSON_AddNumberToObject(o, "map_failures", (double)atomic_load(&c->map_failures));
	cJSON_AddNumberToObject(o, "paused_pickups", (double)m->paused_pickups);
	cJSON_AddNumberToObject(o, "writes_to_received_pages", (double)atomic_load(&m->ro_guard.ctr.rejected));
	cJSON_AddNumberToObject(o, "copy_threshold", m->cfg.copy_threshold);
	cJSON_AddNumberToObject(o, "page_size", m->cfg.page_size);
	if (!m->has_rings)
		return;
	cJSON_AddBoolToObject(o, "rings_driver", virtio_has_feature(vd, MSGQ_F_RINGS));
	cJSON_AddNumberToObject(o, "ring_doorbells", (double)atomic_load(&m->ep->ring_doorbells));
	cJSON_AddNumberToObject(o, "ring_wakeups", (double)atomic_load(&m->ep->ring_wakeups));
	cJSON_AddNumberToObject(o, "writes_to_ring_views", (double)atomic_load(&m->rings_guard.ctr.rejected));
	/* What the drivers last wrote in each ring's indices: their own word,
	 * not counted by ferry, which sees no ring message. */
	cJSON *rings = cJSON_AddArrayToObject(o, "rings");
	for (int tx = 1; tx >= 0; tx--) {
		struct msgq_ring_state st;
		for (unsigned i = 0; msgq_ring_state(m->ep, tx, i, &st); i++) {
			cJSON *r = cJSON_CreateObject();
			cJSON_AddNumberToObject(r, tx ? "to" : "from", st.peer);
			cJSON_AddBoolToObject(r, "open", st.open);
			cJSON_AddNumberToObject(r, "prod_slots", (double)st.prod);
			cJSON_AddNumberToObject(r, "cons_slots", (double)st.cons);
			/* Wake tokens the drivers set, and the last ferry answered:
			 * where a pair that stopped moving was waiting. */
			cJSON_AddNumberToObject(r, "wake_rx", st.wake_rx);
			cJSON_AddNumberToObject(r, "wake_tx", st.wake_tx);
			cJSON_AddNumberToObject(r, "answered_rx", st.answered_rx);
			cJSON_AddNumberToObject(r, "answered_tx", st.answered_tx);
			cJSON_AddItemToArray(rings, r);
		}
	}
}

/* Guest writes to the read-only ring views (other VMs' rings, and the acks
 * of its own) exit here. */
static void rings_guard_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct msgq_dev *m = opaque;
	if (is_write)
		device_reject(&m->rings_guard, "write of %u bytes to a read-only ring view at offset 0x%llx ignored",
			      len, (unsigned long long)off);
	else
		memset(data, 0xff, len);
}

/* BAR 4: both ring regions, rounded up to a power of two. */
static uint64_t rings_bar_size(const struct msgq_dev *m)
{
	uint64_t need = m->ep->rings_rw + m->ep->rings_ro, size = 4096;
	while (size < need)
		size <<= 1;
	return size;
}

/* Guest writes to its receive region exit here (the region is a read-only
 * memory slot): received messages are immutable. */
static void ro_guard_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct msgq_dev *m = opaque;
	if (is_write)
		device_reject(&m->ro_guard, "write of %u bytes to received page at window offset 0x%llx ignored", len,
			      (unsigned long long)(send_region_size(m) + off));
	else
		memset(data, 0xff, len);
}

/* The window BAR: both regions, rounded up to a power of two. */
static uint64_t window_bar_size(const struct msgq_dev *m)
{
	uint64_t need = send_region_size(m) + (uint64_t)m->cfg.recv_slots * m->cfg.page_size, size = 1;
	while (size < need)
		size <<= 1;
	return size;
}

/* A virtio shared memory region capability. */
static bool add_shm_cap(struct pci_device *pdev, unsigned bar, unsigned id, uint64_t off, uint64_t len)
{
	struct virtio_pci_cap64 cap = {
		.cap = { .cap_vndr = PCI_CAP_ID_VNDR, .cap_len = sizeof(cap), .cfg_type = VIRTIO_PCI_CAP_SHARED_MEMORY_CFG,
			 .bar = (uint8_t)bar, .id = (uint8_t)id, .offset = (uint32_t)off, .length = (uint32_t)len },
		.offset_hi = (uint32_t)(off >> 32),
		.length_hi = (uint32_t)(len >> 32),
	};
	return pci_add_cap(pdev, &cap, sizeof(cap));
}

static int msgq_pci_setup(struct virtio_device *vd, struct pci_device *pdev, char *err, size_t errlen)
{
	struct msgq_dev *m = to_msgq(vd);
	uint64_t send = send_region_size(m), recv = (uint64_t)m->cfg.recv_slots * m->cfg.page_size;
	pci_set_bar(pdev, MSGQ_WINDOW_BAR, window_bar_size(m), true, true, NULL, NULL);
	pci_place_bar(pdev, MSGQ_WINDOW_BAR, m->window_gpa);
	/* The two regions as virtio shared memory regions 0 and 1; the rings'
	 * window as region 2 in BAR 4. */
	bool ok = add_shm_cap(pdev, MSGQ_WINDOW_BAR, 0, 0, send) && add_shm_cap(pdev, MSGQ_WINDOW_BAR, 1, send, recv);
	if (ok && m->has_rings) {
		pci_set_bar(pdev, MSGQ_RINGS_BAR, rings_bar_size(m), true, true, NULL, NULL);
		pci_place_bar(pdev, MSGQ_RINGS_BAR, m->rings_gpa);
		/* One region for both parts: PCI configuration space has no room
		 * for another capability. */
		ok = add_shm_cap(pdev, MSGQ_RINGS_BAR, MSGQ_SHM_RINGS, 0, m->ep->rings_rw + m->ep->rings_ro);
	}
	if (!ok) {
		snprintf(err, errlen, "msgq: no room for its capabilities");
		return -1;
	}
	return 0;
}

/* The guest moved or unmapped the rings' BAR: both regions move, or neither. */
static void rings_bar_mapped(struct msgq_dev *m, uint64_t addr, bool mapped)
{
	struct guest_memory *mem = &m->vd.dev.vm->mem;
	uint64_t old = m->rings_gpa, rw = m->ep->rings_rw, ro = m->ep->rings_ro;
	bool was = mem->region[m->rings_region[0]].present;
	if (mapped == was && (!mapped || addr == old))
		return;
	if (was)
		bus_unregister(&m->vd.dev.vm->mmio, old + rw, m);
	bool ok = gm_move_foreign(mem, (unsigned)m->rings_region[0], addr, mapped) == 0 &&
		  gm_move_foreign(mem, (unsigned)m->rings_region[1], addr + rw, mapped) == 0;
	if (!ok) {
		if (gm_move_foreign(mem, (unsigned)m->rings_region[0], old, was) < 0 ||
		    gm_move_foreign(mem, (unsigned)m->rings_region[1], old + rw, was) < 0)
			log_error(m->vd.dev.vm->name, "msgq: the rings' window could not be put back and is unmapped");
		device_reject(&m->vd.dev, "cannot move the rings' window to 0x%llx; it stays at 0x%llx",
			      (unsigned long long)addr, (unsigned long long)old);
		addr = old;
		mapped = was && mem->region[m->rings_region[0]].present;
	}
	m->rings_gpa = addr;
	if (mapped && bus_register(&m->vd.dev.vm->mmio, addr + rw, ro, rings_guard_io, m, &m->rings_guard) < 0)
		device_reject(&m->vd.dev, "read-only ring views at 0x%llx overlap another device",
			      (unsigned long long)(addr + rw));
}

/* The guest moved or unmapped the window BAR: move the memory slots, both
 * or neither, under the switch lock (sends read window_gpa). */
static void msgq_bar_mapped(struct virtio_device *vd, unsigned bar, uint64_t addr, bool mapped)
{
	struct msgq_dev *m = to_msgq(vd);
	struct guest_memory *mem = &m->vd.dev.vm->mem;
	if (bar == MSGQ_RINGS_BAR && m->has_rings) {
		pthread_mutex_lock(m->vd.lock);
		rings_bar_mapped(m, addr, mapped);
		pthread_mutex_unlock(m->vd.lock);
		return;
	}
	if (bar != MSGQ_WINDOW_BAR)
		return;
	pthread_mutex_lock(m->vd.lock);
	uint64_t old = m->window_gpa, send = send_region_size(m), recv = (uint64_t)m->cfg.recv_slots * m->cfg.page_size;
	bool was = mem->region[m->region[0]].present;
	if (mapped == was && (!mapped || addr == old)) {
		pthread_mutex_unlock(m->vd.lock);
		return;
	}
	if (was)
		bus_unregister(&m->vd.dev.vm->mmio, old + send, m);
	bool ok = gm_move_foreign(mem, (unsigned)m->region[0], addr, mapped) == 0 &&
		  gm_move_foreign(mem, (unsigned)m->region[1], addr + send, mapped) == 0;
	if (!ok) {
		/* Both regions back where they were: never half a window. */
		if (gm_move_foreign(mem, (unsigned)m->region[0], old, was) < 0 ||
		    gm_move_foreign(mem, (unsigned)m->region[1], old + send, was) < 0)
			log_error(m->vd.dev.vm->name, "msgq: the page window could not be put back and is unmapped");
		device_reject(&m->vd.dev, "cannot move the page window to 0x%llx; it stays at 0x%llx",
			      (unsigned long long)addr, (unsigned long long)old);
		addr = old;
		mapped = was && mem->region[m->region[0]].present;
	}
	m->window_gpa = addr;
	if (mapped && bus_register(&m->vd.dev.vm->mmio, addr + send, recv, ro_guard_io, m, &m->ro_guard) < 0)
		device_reject(&m->vd.dev, "receive region at 0x%llx overlaps another device", (unsigned long long)addr);
	pthread_mutex_unlock(m->vd.lock);
}

static void msgq_destroy(struct virtio_device *vd)
{
	struct msgq_dev *m = to_msgq(vd);
	m->vd.dev.vm->msgq = NULL; /* so msgq_abandon() finds nothing to free */
	if (m->poll)
		evl_del(m->vd.dev.vm->evl, m->poll);
	m->ep->keep_place = m->vd.dev.vm->restarting;
	msgq_endpoint_destroy(m->ep);
	free(m);
}

/* Sends, returns and ring doorbells are handled on the vCPU that rings: the
 * event loop can be starved for milliseconds when guests spin on every
 * core. Queue 3 is a doorbell, not a ring. */
#define MSGQ_OPS(rings)                                                                                   \
	{                                                                                                 \
		.type = VIRTIO_ID_MSGQ, .num_queues = MSGQ_NUM_QUEUES, .queue_size = MSGQ_QUEUE_SIZE,       \
		.features = (rings) ? 1ull << MSGQ_F_RINGS : 0, .config_size = sizeof(struct msgq_config), \
		.queue_notify = msgq_queue_notify, .activate = msgq_activate, .reset = msgq_reset,         \
		.counters_json = msgq_counters_json, .destroy = msgq_destroy,                              \
		.sync_notify = 1u << MSGQ_QUEUE_SEND | 1u << MSGQ_QUEUE_RETURN | 1u << MSGQ_QUEUE_RING_DOORBELL, \
		.doorbell_queues = 1u << MSGQ_QUEUE_RING_DOORBELL, .pci_setup = msgq_pci_setup,             \
		.bar_mapped = msgq_bar_mapped,                                                             \
	}

static const struct virtio_device_ops msgq_ops = MSGQ_OPS(false);
static const struct virtio_device_ops msgq_rings_ops = MSGQ_OPS(true);

void msgq_abandon(struct vm *vm)
{
	struct msgq_dev *m = vm->msgq;
	if (!m || m->registered)
		return;
	msgq_endpoint_destroy(m->ep);
	free(m);
	vm->msgq = NULL;
}

int msgq_window_create(struct vm *vm, const struct device_config *dc, char *err, size_t errlen)
{
	struct msgq_switch *sw = vm->vmm->msgq;
	const struct msgq_device_config *mc = &dc->msgq;
	struct msgq_dev *m = calloc(1, sizeof(*m));
	if (!m || !sw) {
		snprintf(err, errlen, "msgq: %s", m ? "no message switch" : "out of memory");
		free(m);
		return -1;
	}
	m->vd.dev.vm = vm; /* before the device exists: the window comes first */
	m->pause_pays = true;
	bool huge = sw->page_size > 4096;
	struct msgq_config *cfg = &m->cfg;
	cfg->vm_id = config_vm_id(vm->id);
	cfg->page_size = (uint32_t)sw->page_size;
	msgq_slot_geometry(mc, huge, &cfg->send_slots, &cfg->recv_slots, &cfg->max_msg_pages);
	cfg->copy_threshold = sw->copy_threshold;
	cfg->poll_us = mc->poll_us;
	m->ep = msgq_endpoint_create(sw, cfg->vm_id, vm->name, cfg->send_slots, cfg->recv_slots,
				     cfg->max_msg_pages, err, errlen);
	if (!m->ep) {
		free(m);
		return -1;
	}
	m->ep->ops = &endpoint_ops;
	m->ep->dev = m;
	m->ep->vm_stopping = &vm->stopping;
	if (msgq_endpoint_prefill(m->ep, err, errlen) < 0) {
		msgq_endpoint_destroy(m->ep);
		free(m);
		return -1;
	}

	m->window_gpa = vm_window_gpa(vm, window_bar_size(m));
	uint64_t send = send_region_size(m), recv = (uint64_t)cfg->recv_slots * cfg->page_size;
	m->region[0] = gm_add_foreign(&vm->mem, "msgq-send", m->window_gpa, send, m->ep->hva, false, err, errlen);
	m->region[1] = m->region[0] < 0 ? -1 :
		gm_add_foreign(&vm->mem, "msgq-recv", m->window_gpa + send, recv, m->ep->hva + send, true, err, errlen);
	if (m->region[1] < 0) {
		msgq_endpoint_destroy(m->ep);
		free(m);
		return -1;
	}
	/* The direct rings: what this VM writes, then what it only reads. */
	struct msgq_endpoint *ep = m->ep;
	m->has_rings = ep->nr_tx_rings + ep->nr_rx_rings > 0;
	if (m->has_rings) {
		cfg->ring_size = (uint32_t)sw->rings.ring_size;
		cfg->nr_tx_rings = ep->nr_tx_rings;
		cfg->nr_rx_rings = ep->nr_rx_rings;
		for (unsigned i = 0; i < ep->nr_tx_rings; i++)
			cfg->tx_ring_dest[i] = sw->rings.ring[ep->tx_ring[i]].dst;
		for (unsigned j = 0; j < ep->nr_rx_rings; j++)
			cfg->rx_ring_src[j] = sw->rings.ring[ep->rx_ring[j]].src;
		m->rings_gpa = vm_window_gpa(vm, rings_bar_size(m));
		m->rings_region[0] = gm_add_foreign(&vm->mem, "msgq-rings-rw", m->rings_gpa, ep->rings_rw, ep->rings_hva,
						    false, err, errlen);
		m->rings_region[1] = m->rings_region[0] < 0 ? -1 :
			gm_add_foreign(&vm->mem, "msgq-rings-ro", m->rings_gpa + ep->rings_rw, ep->rings_ro,
				       ep->rings_hva + ep->rings_rw, true, err, errlen);
		if (m->rings_region[1] < 0) {
			msgq_endpoint_destroy(m->ep);
			free(m);
			return -1;
		}
	}
	vm->msgq = m;
	return 0;
}

int msgq_create(struct vm *vm, const struct device_config *dc, char *err, size_t errlen)
{
	struct msgq_dev *m = vm->msgq;
	const struct msgq_device_config *mc = &dc->msgq;
	struct msgq_switch *sw = vm->vmm->msgq;
	/* Policy: the peers this VM may send to, by id, also shown to the guest. */
	for (unsigned p = 0; p < mc->nr_peers; p++) {
		/* Names are resolved now: a peer removed later is gone for good,
		 * and a new VM with its name is not this peer (ids are never reused). */
		unsigned id;
		if (!vmm_vm_id(vm->vmm, mc->peers[p], &id))
			continue; /* it could not be created */
		m->ep->peers[m->ep->nr_peers++] = config_vm_id(id);
		m->cfg.peers[m->cfg.nr_peers].vm_id = config_vm_id(id);
		snprintf(m->cfg.peers[m->cfg.nr_peers].name, MSGQ_NAME_LEN, "%s", mc->peers[p]);
		m->cfg.nr_peers++;
	}
	snprintf(m->ro_guard.name, sizeof(m->ro_guard.name), "msgq-received-pages");
	m->ro_guard.vm = vm;
	snprintf(m->rings_guard.name, sizeof(m->rings_guard.name), "msgq-ring-views");
	m->rings_guard.vm = vm;
	if (virtio_device_init(&m->vd, vm, "msgq", m->has_rings ? &msgq_rings_ops : &msgq_ops, &m->cfg, &sw->lock, err,
			       errlen) < 0)
		return -1;
	m->registered = true;
	uint64_t send = send_region_size(m), recv = (uint64_t)m->cfg.recv_slots * m->cfg.page_size;
	if (bus_register(&vm->mmio, m->window_gpa + send, recv, ro_guard_io, m, &m->ro_guard) < 0) {
		snprintf(err, errlen, "msgq: receive region overlaps another device");
		return -1;
	}
	if (m->has_rings && bus_register(&vm->mmio, m->rings_gpa + m->ep->rings_rw, m->ep->rings_ro, rings_guard_io, m,
					 &m->rings_guard) < 0) {
		snprintf(err, errlen, "msgq: the read-only ring views overlap another device");
		return -1;
	}
	m->poll = evl_add_timer(vm->evl, (uint64_t)m->cfg.poll_us * 1000, msgq_poll, m);
	if (!m->poll || vm_add_exit_hook(vm, msgq_exit_hook, m) < 0) {
		snprintf(err, errlen, "msgq: cannot start polling for deferred sends");
		return -1;
	}
	return 0;
}
