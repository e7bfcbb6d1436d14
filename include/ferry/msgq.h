/* virtio-msgq: VM-to-VM message queues that move pages by remapping.
 * The device ABI, shared by ferry (device) and ferry-guest (driver); the
 * full specification is docs/devices/msgq.md. All fields little-endian.
 *
 * The device is a virtio 1.x device over PCI with three queues and one extra
 * BAR, the page window:
 *   queue 0 "send":   driver -> device. Chain: [out] msgq_send_hdr,
 *                     [out] payload (one descriptor, inside the send region),
 *                     [in] msgq_send_status.
 *   queue 1 "recv":   device -> driver. The driver posts writable buffers of
 *                     sizeof(msgq_recv_hdr); the device fills one per message.
 *   queue 2 "return": driver -> device. Chain: [out] msgq_return, giving
 *                     received slots back once the driver is done with them.
 *   BAR 2 (64-bit, prefetchable memory): the page window, send_slots pages
 *   (read-write) followed by recv_slots pages (read-only to the guest).
 *
 * Posting a send and not notifying the queue is a "deferred" send: the
 * device picks it up at the VM's next exit or at its polling interval.
 * Notifying queue 0 is an "immediate" send: the write traps and the device
 * handles every pending send before the vCPU resumes.
 *
 * With feature MSGQ_F_RINGS (below) the device also gives the VM direct
 * rings: memory shared with one peer each, which the two drivers use for
 * copied messages without ferry on the data path. */
#ifndef FERRY_MSGQ_H
#define FERRY_MSGQ_H

#include <stdint.h>

/* Not an OASIS-assigned virtio device type: ferry's own, documented here. */
#define VIRTIO_ID_MSGQ 0xf7

#define MSGQ_QUEUE_SEND   0
#define MSGQ_QUEUE_RECV   1
#define MSGQ_QUEUE_RETURN 2
/* Not a ring: its notify address is the rings' doorbell (MSGQ_F_RINGS).
 * The device reports MSGQ_NUM_QUEUES queues; a driver without the feature
 * sets up the first three only. */
#define MSGQ_QUEUE_RING_DOORBELL 3
#define MSGQ_NUM_QUEUES   4

#define MSGQ_WINDOW_BAR 2

#define MSGQ_MAX_PEERS 16
/* VM ids run from 1 to this: the page pool tags pages with a byte per
 * writer, and 0 and 255 mean "nobody" and "several". */
#define MSGQ_MAX_VM_ID 254
#define MSGQ_NAME_LEN  32

struct msgq_peer {
	uint32_t vm_id;
	char name[MSGQ_NAME_LEN];  /* NUL-terminated */
};

/* Device configuration space (read-only to the driver). */
struct msgq_config {
	uint32_t vm_id;            /* this VM's id: what receivers see as src */
	uint32_t page_size;        /* 4096 or 2 MiB: the unit of a slot */
	uint32_t send_slots;       /* pages in the send region */
	uint32_t recv_slots;       /* pages in the receive region */
	uint32_t max_msg_pages;    /* longest message, in pages */
	uint32_t copy_threshold;   /* adaptive mode copies messages shorter than this;
	                            * MSGQ_COPY_ALWAYS: remapping never pays here */
	uint32_t poll_us;          /* how often deferred sends are picked up */
	uint32_t nr_peers;         /* entries used in peers[] */
	struct msgq_peer peers[MSGQ_MAX_PEERS]; /* VMs this VM may send to */
	/* Valid with MSGQ_F_RINGS (all zero without): the direct rings. */
	uint32_t ring_size;        /* bytes of a ring's data area (a power of two) */
	uint32_t nr_tx_rings;      /* rings this VM writes, one per receiver */
	uint32_t nr_rx_rings;      /* rings this VM reads, one per sender */
	uint32_t reserved;
	uint32_t tx_ring_dest[MSGQ_MAX_PEERS]; /* vm_id that reads tx ring i */
	uint32_t rx_ring_src[MSGQ_MAX_PEERS];  /* vm_id that writes rx ring j: its messages' source */
};

#define MSGQ_COPY_ALWAYS 0xffffffffu

/* msgq_send_hdr.flags: how to move the payload. */
#define MSGQ_SEND_ADAPTIVE 0u       /* copy below copy_threshold, else remap */
#define MSGQ_SEND_COPY     1u       /* always copy */
#define MSGQ_SEND_REMAP    2u       /* always remap */
#define MSGQ_SEND_MODE_MASK 3u
/* The driver rings the doorbell for this send (an immediate send). Sends
 * posted without it and picked up at a later doorbell still count as
 * deferred: that is how they were posted. */
#define MSGQ_SEND_DOORBELL (1u << 8)

struct msgq_send_hdr {
	uint32_t dest;             /* receiver's vm_id */
	uint32_t flags;            /* MSGQ_SEND_* */
	uint32_t len;              /* payload bytes, 1 .. max_msg_pages * page_size */
	uint32_t cookie;           /* echoed in the status, for the driver */
};

/* msgq_send_status.status */
#define MSGQ_OK            0
#define MSGQ_E_DENIED      1  /* policy does not allow sending to dest */
#define MSGQ_E_NO_DEST     2  /* no VM with that id */
#define MSGQ_E_DEST_DOWN   3  /* the receiver has stopped or has no msgq driver */
#define MSGQ_E_BAD_ADDR    4  /* payload not inside the send region */
#define MSGQ_E_UNALIGNED   5  /* payload does not start at a slot */
#define MSGQ_E_TOO_LONG    6  /* len is 0, exceeds the payload buffer or max_msg_pages */
#define MSGQ_E_FULL        7  /* receiver has no posted buffer or free slots */
#define MSGQ_E_BAD_CHAIN   8  /* the descriptor chain is malformed */
#define MSGQ_E_HOST        9  /* the host could not map the pages; nothing was sent */
#define MSGQ_E_MAX         10

/* How the payload travelled (msgq_send_status.how). */
#define MSGQ_HOW_NONE     0
#define MSGQ_HOW_COPIED   1
#define MSGQ_HOW_REMAPPED 2
/* Never written by the device: for a driver to report to its users that it
 * wrote the message into a direct ring itself. */
#define MSGQ_HOW_RING     3

struct msgq_send_status {
	uint8_t status;            /* MSGQ_OK or MSGQ_E_* */
	uint8_t how;               /* MSGQ_HOW_* */
	uint16_t reserved;
	uint32_t cookie;           /* from the header */
};

/* What the receiver gets for each message. */
#define MSGQ_RECV_REMAPPED 1u       /* flags: pages were remapped, not copied */
/* Never set by the device: for a driver to mark a message it read from a
 * direct ring (in place: its sender can write it until it is released). */
#define MSGQ_RECV_RING     2u

struct msgq_recv_hdr {
	uint32_t src;              /* sender's vm_id, added by the device */
	uint32_t flags;            /* MSGQ_RECV_* */
	uint32_t len;              /* payload bytes */
	uint32_t slot;             /* first receive slot: window offset
	                            * (send_slots + slot) * page_size */
	uint32_t nr_pages;
	uint32_t cookie;           /* the sender's cookie */
};

/* Gives received slots [slot, slot + nr_pages) back to the device. */
struct msgq_return {
	uint32_t slot;
	uint32_t nr_pages;
};

/* ---- Feature MSGQ_F_RINGS: direct rings (docs/devices/msgq.md) ----------
 * For each pair the config allows (sender lists receiver in "peers", and
 * both devices have "rings": true), ferry sets up one ring at start-up: a
 * data area of ring_size bytes that only the sender can write, and an ack
 * page of 4 KiB that only the receiver can write; each side maps the other's
 * part read-only. The drivers move copied messages through it with plain
 * loads and stores: no exit, no ferry. ferry vouches for the source (the
 * ring's writer is the only VM that can write it: rx_ring_src) and for the
 * policy (rings exist only for allowed pairs); it sees no individual
 * message, so ring messages appear in no counter and are never refused.
 *
 * BAR 4 (64-bit, prefetchable memory) holds virtio shared memory region
 * id 2, the rings' window, in two parts:
 *   read-write, from offset 0: tx ring i's data area at i * ring_size
 *         (i < nr_tx_rings), then rx ring j's ack page at
 *         nr_tx_rings * ring_size + j * 4096;
 *   read-only, from offset RW = nr_tx_rings * ring_size + nr_rx_rings * 4096:
 *         rx ring j's data area at RW + j * ring_size, then tx ring i's ack
 *         page at RW + nr_rx_rings * ring_size + i * 4096.
 * Writes to the read-only part are ignored and counted
 * (writes_to_ring_views).
 *
 * A data area starts with struct msgq_ring_hdr (its first 4 KiB); slots of
 * MSGQ_RING_SLOT bytes follow, nslots = (ring_size - 4096) / 64. Indices
 * count slots from 0 and never wrap; slot i is at position i % nslots. A
 * message takes k = ceil((16 + len) / 64) consecutive slots, at most
 * nslots / 2: a struct msgq_ring_rec, then len bytes of payload. It never
 * wraps: when it does not fit before the end, the sender first fills the
 * rest with a pad record (MSGQ_RING_PAD, len 0).
 *   sender:   ring only while ack.open == MSGQ_RING_OPEN; room while
 *             prod - ack.cons + k <= nslots; write the record at slot
 *             prod, then store prod += k (release: the record first).
 *   receiver: while hdr.prod != cons, read the record at cons (it is in
 *             place: copy what must not change under you; the sender can
 *             write it until it is consumed), then store cons += k
 *             (release: done reading first).
 * Everything read from the other side is untrusted: a receiver checks
 * prod - cons <= nslots, each record's pos == its slot index (mod 2^32),
 * len and k; a sender checks prod - cons <= nslots. A side that finds a
 * violation stops using the ring (messages go through ferry instead).
 *
 * Opening: the receiver sets cons = hdr.prod (older messages are skipped),
 * then ack.open = MSGQ_RING_OPEN. ferry clears the ack page when the
 * receiver's device is reset or its VM stops; the sender's data area is
 * its own and survives the sender's resets (a sender resumes at hdr.prod).
 *
 * Waiting: a side about to sleep stores a new non-zero token (never the
 * previous one) in its wake field (ack.wake_rx: waiting for messages;
 * hdr.wake_tx: waiting for room), looks again, then sleeps, and clears it
 * when awake. The other side, after publishing (consuming), writes the
 * doorbell (queue MSGQ_QUEUE_RING_DOORBELL's notify address) if it sees a
 * token it has not rung for. ferry then interrupts, once per token, every peer of the ringing
 * VM that waits: receivers on their recv queue's MSI-X vector, senders on
 * their send queue's (whatever the queues' interrupt suppression flags
 * say). ferry also answers, every poll_us, the tokens of receivers whose
 * ring holds messages and of senders whose ring has room: a
 * side may therefore look for the other's token without a full barrier
 * after publishing (a "deferred" send; a wake-up it misses comes from
 * ferry within poll_us), or with one (an "immediate" send: at once). */
#define MSGQ_F_RINGS       0        /* device feature bit */
#define MSGQ_RINGS_BAR     4
#define MSGQ_SHM_RINGS     2        /* shared memory region id */
#define MSGQ_RING_HDR      4096u    /* the data area's header; slots follow */
#define MSGQ_RING_ACK      4096u    /* bytes of an ack page */
#define MSGQ_RING_SLOT     64u
#define MSGQ_RING_PAD      1u       /* record flags: skip to position 0 */
#define MSGQ_RING_OPEN     0x4e45504fu /* "OPEN" */

/* Written by the sender only. Fields 128 bytes apart: each its own cache
 * line pair, so that the reader's polling of prod never shares a line with
 * anything else. */
struct msgq_ring_hdr {
	uint64_t prod;             /* slots published */
	uint8_t pad0[120];
	uint32_t wake_tx;          /* non-zero: the sender sleeps until there is room */
	uint8_t pad1[124];
};

/* Written by the receiver only. */
struct msgq_ring_ack {
	uint64_t cons;             /* slots consumed */
	uint8_t pad0[120];
	uint32_t wake_rx;          /* non-zero: the receiver sleeps until a message comes */
	uint8_t pad1[124];
	uint32_t open;             /* MSGQ_RING_OPEN: the receiver reads this ring */
	uint8_t pad2[124];
};

/* At the start of each message in a ring. */
struct msgq_ring_rec {
	uint32_t len;              /* payload bytes (0 for a pad) */
	uint32_t flags;            /* MSGQ_RING_PAD */
	uint32_t pos;              /* this record's slot index, mod 2^32 */
	uint32_t cookie;           /* the sender's cookie */
};

#endif
