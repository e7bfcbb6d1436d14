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
 * handles every pending send before the vCPU resumes. */
#ifndef FERRY_MSGQ_H
#define FERRY_MSGQ_H

#include <stdint.h>

/* Not an OASIS-assigned virtio device type: ferry's own, documented here. */
#define VIRTIO_ID_MSGQ 0xf7

#define MSGQ_QUEUE_SEND   0
#define MSGQ_QUEUE_RECV   1
#define MSGQ_QUEUE_RETURN 2
#define MSGQ_NUM_QUEUES   3

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

struct msgq_send_status {
	uint8_t status;            /* MSGQ_OK or MSGQ_E_* */
	uint8_t how;               /* MSGQ_HOW_* */
	uint16_t reserved;
	uint32_t cookie;           /* from the header */
};

/* What the receiver gets for each message. */
#define MSGQ_RECV_REMAPPED 1u       /* flags: pages were remapped, not copied */

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

#endif
