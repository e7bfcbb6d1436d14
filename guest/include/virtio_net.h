/* virtio-net driver (drivers/virtio_net.c; virtio 1.2 section 5.1).
 *
 * Every virtio-net device found at boot becomes a struct vnet ("eth0",
 * "eth1", ...). The driver negotiates VERSION_1, MAC, MTU, STATUS and
 * EVENT_IDX when offered, and runs queue pairs (a receive and a transmit
 * queue each) in struct vnet_pair, indexed by pair; today pair 0 only.
 * Buffer memory of a pair comes from one function (vnet_buf_area), so a
 * device that provides buffer memory itself can later hand out its own.
 *
 * The fast path is polling from ring 3: receive and transmit interrupts
 * are off unless a waiter turns receive interrupts on (vnet_rx_irq) before
 * it halts; completed transmissions are collected by polling; the notify
 * register (an exit) is written only when the device asks for it, and
 * only by the flush calls, so a burst of frames costs one at most.
 *
 * A pair is not locked: one CPU at a time. Frames are handed out as
 * pointers to the Ethernet frame; the 12-byte virtio_net_hdr before it is
 * the driver's.
 *
 * Command line: net_event_idx=0 (do not negotiate EVENT_IDX: the device
 * then uses the ring flags). */
#ifndef GUEST_VIRTIO_NET_H
#define GUEST_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <ferry/virtio_net.h>
#include "virtio_pci.h"
#include "virtqueue.h"

#define VNET_MAX_DEVS  4
#define VNET_MAX_PAIRS 1     /* pair 0 (MQ is not negotiated) */
#define VNET_QUEUE_MAX 256
#define VNET_HDR_LEN   ((uint32_t)sizeof(struct virtio_net_hdr))

struct vnet_pair_stats {
	uint64_t rx_frames, rx_bytes;
	uint64_t rx_errors;      /* buffers the device returned shorter than a header and an Ethernet header */
	uint64_t tx_frames, tx_bytes;
	uint64_t tx_waits;       /* tx_get found no free buffer and had to wait */
	uint64_t tx_timeouts;    /* ... and none came back within a second */
};

/* One zero-copy channel's rings, as this driver runs them. */
struct vnet_zc {
	volatile struct ferry_zc_ring *tx;       /* ours: in our transmit area */
	const volatile struct ferry_zc_ring *rx; /* the peer's: in our receive area */
	uint8_t *tx_area;
	const uint8_t *rx_area;
	uintptr_t doorbell;                      /* its notify address */
	int vector;                              /* its interrupt, -1: polled */
	uint32_t prod, cons;                     /* ours, as last stored */
	uint32_t sleeps;                         /* our wake_* values */
	uint32_t rung_rx, rung_tx;               /* the peer's sleeps we rang for */
	uint8_t epoch;                           /* of the binding these belong to */
	bool ready;                              /* pair 0's earlier frames to the peer are delivered */
	bool broken;                             /* the peer broke the ring's rules */
	bool left;                               /* unbound with frames maybe unread */
	bool congested;                          /* full after a wait: frames dropped while it stays so */
	uint16_t mark;                           /* pair 0 frames before it precede those */
	uint64_t frames_tx, frames_rx, doorbells, full_waits, full_drops, errors;
};

struct vnet_pair {
	unsigned index;
	uint32_t buf_size;            /* per buffer, header included */
	struct virtqueue rxq, txq;
	uint8_t *rx_area, *tx_area;   /* buffer memory, from vnet_buf_area() */
	uint64_t rx_area_bytes, tx_area_bytes;
	unsigned nr_rx, nr_tx;        /* buffers in each area */
	uint8_t **tx_free;            /* free transmit buffers (a stack) */
	unsigned tx_nfree;
	unsigned rx_reposted;         /* buffers given back since the last flush */
	struct vnet_pair_stats stats;
};

struct vnet {
	struct virtio_dev vd;
	unsigned index;
	char name[8];
	uint8_t mac[6];
	uint16_t mtu;
	bool has_status;              /* VIRTIO_NET_F_STATUS negotiated */
	uint16_t status;              /* as last read */
	volatile bool status_stale;   /* a config change arrived since */
	uint32_t buf_size;            /* pair 0's buffers, header included */
	unsigned nr_pairs;            /* in use */
	/* ferry's zero-copy channels (VIRTIO_NET_F_FERRY_ZC): rings in BAR 2,
	 * one per bound peer; chan[] is the device's table of which peer each
	 * is bound to, re-read after a config change. */
	bool zc;
	uint8_t *zc_base;
	volatile bool zc_stale;
	struct ferry_zc_channel chan[FERRY_ZC_CHANNELS];
	struct vnet_zc zcc[FERRY_ZC_CHANNELS];
	uint32_t zc_generation;
	uint64_t zc_rebinds;          /* channel table changes seen */
	uint8_t *bounce;              /* a channel's frame is copied here before anything reads it */
	unsigned max_pairs;           /* the device's (1 without MQ) */
	struct vnet_pair pair[VNET_MAX_PAIRS];
};

/* Sets up every virtio-net device. Returns how many work; failures are
 * reported and skipped. */
int virtio_net_init(void);
unsigned vnet_count(void);
struct vnet *vnet_get(unsigned index);
/* Link state: VIRTIO_NET_S_LINK_UP, re-read after a config change; always
 * up without VIRTIO_NET_F_STATUS. */
bool vnet_link_up(struct vnet *n);

/* Transmit. tx_get returns room for a frame of up to *cap bytes (waiting,
 * at most a second, if every buffer is in flight), or NULL; tx_put queues
 * it (len bytes, Ethernet header first) without telling the device;
 * tx_cancel gives an unused one back. */
void *vnet_tx_get(struct vnet *n, unsigned pair, uint32_t *cap);
void vnet_tx_put(struct vnet *n, unsigned pair, void *frame, uint32_t len);
void vnet_tx_cancel(struct vnet *n, unsigned pair, void *frame);
/* Collects completed transmissions; returns how many. */
unsigned vnet_tx_reclaim(struct vnet *n, unsigned pair);

/* Receive. rx_get returns the next received frame and its length, or NULL;
 * rx_put gives the buffer back to the device (queued, not yet notified). */
void *vnet_rx_get(struct vnet *n, unsigned pair, uint32_t *len);
void vnet_rx_put(struct vnet *n, unsigned pair, void *frame);
bool vnet_rx_pending(struct vnet *n, unsigned pair);
/* Receive interrupts on (before halting) or off (polling). */
void vnet_rx_irq(struct vnet *n, unsigned pair, bool on);

/* Tells the device about queued frames and returned receive buffers, if it
 * asked to be told (one MMIO store, an exit, per queue at most). */
void vnet_flush(struct vnet *n, unsigned pair);

/* Zero-copy channels. channel_for: the bound channel to dst, or -1 (the
 * channel table is re-read first if the device changed it). tx_get: room
 * for a frame in the channel's ring (waiting a little while it is full), or
 * NULL: with *drop if it stayed full (the frame is dropped), else because
 * the channel stopped being usable (send on pair 0 then); tx_put publishes
 * it; tx_channel_of: the channel whose slot a frame is in, or -1. rx_get:
 * the next frame from the peer, in memory the peer can still write (copy
 * it out), or NULL; rx_put: done with it. sleep: tell the peers this side
 * is about to halt (true) or is awake again (false); pending: frames wait. */
int vnet_zc_channel_for(struct vnet *n, const uint8_t *dst);
void *vnet_zc_tx_get(struct vnet *n, unsigned c, uint32_t *cap, bool *drop);
void vnet_zc_tx_put(struct vnet *n, unsigned c, void *frame, uint32_t len);
int vnet_zc_tx_channel_of(struct vnet *n, const void *frame);
const void *vnet_zc_rx_get(struct vnet *n, unsigned c, uint32_t *len);
void vnet_zc_rx_put(struct vnet *n, unsigned c);
void vnet_zc_sleep(struct vnet *n, bool sleeping);
bool vnet_zc_pending(struct vnet *n);
/* An unbound channel whose last frames are due before pair 0's next
 * frame, or -1. */
int vnet_zc_leftover(struct vnet *n);
/* Whether channel c may carry frames from the peer (bound, or draining). */
bool vnet_zc_active(struct vnet *n, unsigned c);

#endif
