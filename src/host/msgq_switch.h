/* The message switch: every VM's message endpoint, the policy of who may
 * send to whom, and the delivery of a message from one VM's send slots to
 * another's receive slots, by remapping pages or, for small messages, by
 * copying. Devices (devices/msgq.c) validate what their guest asked and call
 * in here; the switch changes a VM's memory only by mapping pool pages into
 * its window. One lock serializes all of it. */
#ifndef FERRY_MSGQ_SWITCH_H
#define FERRY_MSGQ_SWITCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ferry/msgq.h"
#include "host/msgq_rings.h"
#include "host/page_pool.h"

#define MSGQ_MAX_VMS MSGQ_MAX_VM_ID

struct msgq_switch;
struct msgq_endpoint;

struct msgq_counters {
	atomic_ulong sent, received, pages_remapped, bytes_copied, immediate, deferred, rejected;
	atomic_ulong rejected_by[MSGQ_E_MAX];
	atomic_ulong returned_pages, pages_zeroed_for_reuse;
	atomic_ulong map_failures;  /* host mappings that failed (the send failed, nothing moved) */
};

/* What the switch needs from the receiving device. Called with the switch
 * lock held. A delivery first reserves the receiver's buffer, so that once
 * pages have moved nothing can fail: the receiver is always told. */
struct msgq_endpoint_ops {
	/* Takes the next receive buffer the driver posted (checked to hold a
	 * header) for the next deliver(); false if there is none. */
	bool (*reserve)(struct msgq_endpoint *ep);
	/* Gives the reserved buffer back untouched (the send failed). */
	void (*unreserve)(struct msgq_endpoint *ep);
	/* Hands the header to the driver in the reserved buffer (and
	 * interrupts it). Cannot fail. */
	void (*deliver)(struct msgq_endpoint *ep, const struct msgq_recv_hdr *hdr);
	/* Takes in the slots the driver has posted back without ringing: a
	 * receiver gives slots back with plain stores, and the switch collects
	 * them when it needs room. */
	void (*reclaim)(struct msgq_endpoint *ep);
	/* A failed remap could not be undone: a page the sender still maps
	 * writable may be visible to this VM. The device must stop the VM. */
	void (*isolation_lost)(struct msgq_endpoint *ep, const char *why);
	/* Interrupts the driver on `queue`'s vector, whatever its suppression
	 * flags say: a peer woke it through a direct ring. Optional. */
	void (*wake)(struct msgq_endpoint *ep, unsigned queue);
	/* Optional: a VM this one may send to went away (it was removed);
	 * its id is out of the endpoint's peers already. */
	void (*peer_gone)(struct msgq_endpoint *ep, uint32_t id);
};

struct msgq_endpoint {
	struct msgq_switch *sw;
	uint32_t id;
	char name[MSGQ_NAME_LEN];
	const struct msgq_endpoint_ops *ops;
	void *dev;                  /* the device, for ops */
	bool up;                    /* the driver is ready (DRIVER_OK, not reset) */
	atomic_bool *vm_stopping;   /* the VM's flag: a stopped VM receives nothing */

	/* The page window: send slots (read-write), then receive slots
	 * (read-only to the guest). */
	uint8_t *hva;
	uint64_t page_size;
	uint32_t send_slots, recv_slots, max_msg_pages;
	uint32_t *send_page;        /* pool page backing each send slot */
	/* Receive slots keep the page they last held, mapped read-only, when
	 * the guest returns them: the guest has seen it already. The next
	 * delivery reuses it: a copy is written into it, and a remap gives it
	 * back to the sender if it holds only that sender's data, so a stream
	 * between two VMs moves pages with two mappings and no zeroing. */
	uint32_t *recv_page;        /* POOL_NONE: the never-written zero area */
	uint8_t *recv_tag;          /* whose data recv_page holds (POOL_CLEAN, a VM id, POOL_MIXED) */
	uint8_t *recv_held;         /* the guest holds a message in this slot */
	uint32_t recv_cursor;       /* next-fit start for receive slot allocation */
	bool broken;                /* a remap could not be undone: receives nothing more */
	/* Set before destroy when the VM is restarted: its senders keep its id
	 * and get dest_down until an endpoint with that id is back. */
	bool keep_place;
	/* Per page of a message being remapped, for undoing it (max_msg_pages). */
	struct msgq_move { uint32_t msg, old, fresh; } *moves;

	uint32_t peers[MSGQ_MAX_PEERS];  /* ids this endpoint may send to */
	unsigned nr_peers;

	/* Direct rings (host/msgq_rings.c): indices into sw->rings.ring of
	 * those this VM writes and reads, and its view of them: the read-write
	 * region (rings_rw bytes), then the read-only one (rings_ro). */
	unsigned tx_ring[MSGQ_MAX_PEERS], nr_tx_rings;
	unsigned rx_ring[MSGQ_MAX_PEERS], nr_rx_rings;
	uint8_t *rings_hva;
	uint64_t rings_rw, rings_ro;
	atomic_ulong ring_doorbells, ring_wakeups;

	struct msgq_counters ctr;
};

struct msgq_switch {
	pthread_mutex_t lock;
	struct page_pool *pool;
	uint64_t page_size;
	uint32_t copy_threshold;    /* adaptive: copy below this many bytes */
	struct msgq_endpoint *ep[MSGQ_MAX_VMS + 1];
	bool away[MSGQ_MAX_VMS + 1];   /* being restarted: sends to it get dest_down */
	struct msgq_rings rings;
};

struct vmm;
struct ferry_config;
struct msgq_device_config;

/* Slots and message size of a window, with the defaults for the page size
 * (huge: 2 MiB pages). */
void msgq_slot_geometry(const struct msgq_device_config *mc, bool huge, uint32_t *send_slots,
			uint32_t *recv_slots, uint32_t *max_msg_pages);
/* Sizes the page pool for every msgq device in the config (all windows, 2 MiB
 * pages if the VMs ask for huge pages and the host can give them, else 4 KiB
 * with a warning), checks the memory mappings the windows may need against
 * vm.max_map_count, and creates the switch as vmm->msgq. Nothing to do (0)
 * if no VM has a msgq device. */
int msgq_setup(struct vmm *vmm, const struct ferry_config *cfg, char *err, size_t errlen);

/* pages: pool capacity for all windows; zero_pages: the longest receive
 * region. copy_threshold 0 means: measure it now. */
struct msgq_switch *msgq_switch_create(uint32_t pages, uint32_t zero_pages, uint64_t page_size,
				       uint32_t copy_threshold, char *err, size_t errlen);
void msgq_switch_destroy(struct msgq_switch *sw);

/* Builds an endpoint's window (reserving address space, backing every send
 * slot with a pool page) and registers it under id. */
struct msgq_endpoint *msgq_endpoint_create(struct msgq_switch *sw, uint32_t id, const char *name,
					   uint32_t send_slots, uint32_t recv_slots, uint32_t max_msg_pages,
					   char *err, size_t errlen);
/* Unregisters and frees the endpoint; endpoints that could send to it lose
 * it from their peers and are told (ops->peer_gone). Ids are never given
 * to another endpoint in a run: pages keep their writer's id. */
void msgq_endpoint_destroy(struct msgq_endpoint *ep);
/* A VM whose endpoint was destroyed with keep_place will not come back (its
 * restart failed): its senders lose it as if it had been removed. */
void msgq_switch_forget(struct msgq_switch *sw, uint32_t id);
/* The device was reset: every page in the receive slots (held messages, and
 * slots that keep pages the old driver has seen) goes back to the pool, and
 * the receive region shows the never-written zero area again, so nothing
 * received before the reset is visible after it. Lock held. */
void msgq_endpoint_reset(struct msgq_endpoint *ep);
/* Gives every receive slot a clean page of its own, mapped read-only, so that
 * no delivery has to map one (a new mapping makes KVM stop the receiver's
 * vCPUs, and costs the receiver a fault). Before the VM runs. */
int msgq_endpoint_prefill(struct msgq_endpoint *ep, char *err, size_t errlen);
/* Calls fn for each endpoint `ep` may send to that exists and whose driver is
 * up. Lock held. */
void msgq_for_each_live_peer(struct msgq_endpoint *ep, void (*fn)(struct msgq_endpoint *peer, void *arg),
			     void *arg);

/* Memory mappings the windows of these geometries can need at most (each
 * slot can become a mapping of its own), to check against the process's
 * vm.max_map_count before anything runs. */
uint64_t msgq_window_mappings(uint32_t send_slots, uint32_t recv_slots);

/* Sends pages [first_slot, ...) of from's send region, len bytes, to VM
 * dest. Lock held. Returns MSGQ_OK or MSGQ_E_*, and how it travelled. On
 * any error nothing moved: both windows map what they mapped before. */
int msgq_switch_send(struct msgq_endpoint *from, uint32_t dest, uint32_t mode, uint32_t first_slot,
		     uint32_t len, uint32_t cookie, uint8_t *how);
/* The driver gives back receive slots [slot, slot + n). Lock held. */
int msgq_switch_return(struct msgq_endpoint *ep, uint32_t slot, uint32_t n);

#endif
