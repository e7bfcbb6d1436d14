/* Message queues to other VMs (drivers/msgq.c), over ferry's virtio-msgq
 * device (include/ferry/msgq.h, docs/devices/msgq.md).
 *
 * A message is a run of pages in this VM's send region: get a buffer with
 * msgq_alloc(), write the message into it, send it. Remapped messages leave
 * the buffer holding other pages (zeroes or this VM's own older data), so
 * write a new message before sending the buffer again. Received messages
 * sit in read-only receive slots until released.
 *
 * Every function here is plain memory work plus, for immediate sends and
 * returns, one MMIO doorbell: all of it runs natively under native_call().
 * Not thread-safe: one CPU uses the queues at a time. */
#ifndef GUEST_MSGQ_H
#define GUEST_MSGQ_H

#include <stdbool.h>
#include <stdint.h>
#include <ferry/msgq.h>

/* flags for msgq_post()/msg_send(): a transfer mode, and how to post. */
#define MSG_ADAPTIVE  MSGQ_SEND_ADAPTIVE
#define MSG_COPY      MSGQ_SEND_COPY
#define MSG_REMAP     MSGQ_SEND_REMAP
#define MSG_IMMEDIATE MSGQ_SEND_DOORBELL  /* ring the doorbell: the write traps to the VMM */
#define MSG_DEFERRED  0u                  /* plain stores: picked up at an exit or poll */

/* Finds and starts the device (once; later calls return the same answer).
 * 0, or -1 if there is none or it is broken. */
int msgq_open(void);
bool msgq_present(void);
const struct msgq_config *msgq_config(void);
uint32_t msgq_self(void);
/* The id of a peer this VM may send to, by name; 0 if not a peer. */
uint32_t msgq_peer(const char *name);

/* A buffer of len bytes in the send region (whole slots), or NULL. */
void *msgq_alloc(uint32_t len);
void msgq_free(void *buf, uint32_t len);
/* The window itself, for tests that poke at its edges. */
uint8_t *msgq_send_region(void);
uint8_t *msgq_recv_region(void);

/* Posts a send without waiting. cookie comes back in its completion.
 * 0; -1 if the send queue is full (reap completions and retry). */
int msgq_post(uint32_t dest, const void *buf, uint32_t len, uint32_t flags, uint32_t cookie);
/* Rings the send doorbell (handles everything posted so far). */
void msgq_kick(void);
struct msgq_done {
	uint32_t cookie;
	uint8_t status;   /* MSGQ_OK or MSGQ_E_* */
	uint8_t how;      /* MSGQ_HOW_* */
};
/* A completed send, if any. */
bool msgq_reap(struct msgq_done *done);
/* Sends posted and not yet reaped. */
unsigned msgq_in_flight(void);
/* Halts until a send completes or timeout_ns passes (for senders that
 * cannot go on: spinning would take the CPU the VMM needs). */
void msgq_wait_sends(uint64_t timeout_ns);

/* Retries a one-byte message to dest until its driver is up and has room
 * (MSGQ_E_DEST_DOWN and MSGQ_E_FULL while it boots), up to timeout_ns,
 * moved as `mode` says (MSG_COPY, MSG_REMAP). Returns the last status. */
int msgq_wait_peer(uint32_t dest, uint32_t mode, uint64_t timeout_ns);

/* Sends and waits for the status (an immediate send has it at once; a
 * deferred one when the VMM picks it up). Returns MSGQ_OK or MSGQ_E_*;
 * MSGQ_E_FULL also when the send queue stays full. */
int msg_send(uint32_t dest, const void *buf, uint32_t len, uint32_t flags);

struct msg {
	uint32_t src;     /* sender's VM id, as the VMM reports it */
	uint32_t len;
	uint32_t flags;   /* MSGQ_RECV_REMAPPED */
	uint32_t cookie;
	uint32_t slot, nr_pages;
	const uint8_t *data;
	void *priv;
};
/* The next received message, without waiting. */
bool msg_poll(struct msg *m);
/* Waits up to timeout_ns (TIMEOUT_NEVER: for ever) for a message: spins a
 * little, then halts until the receive interrupt when interrupts are on;
 * with them off, spins. */
bool msg_recv(struct msg *m, uint64_t timeout_ns);
/* Gives the message's slots back (batched; see msgq_flush). */
void msg_release(struct msg *m);
/* Sends batched releases to the VMM now. */
void msgq_flush(void);
/* Receive interrupts on (default) or off (then receivers poll). */
void msgq_recv_irq(bool on);

struct msgq_stats {
	uint64_t posted, reaped, received, released, bad_headers;
	uint64_t ring_sent, ring_received, ring_full, ring_doorbells;  /* direct rings */
};
void msgq_stats(struct msgq_stats *out);
/* Direct rings (MSGQ_F_RINGS): how many this VM has, and whether the one
 * to `peer` and the one from it are open now. */
unsigned msgq_rings(uint32_t peer, bool *tx_open, bool *rx_open);
/* The rings themselves, for tests that misuse them: the data area of the
 * ring to `peer` (ours to write) and its ack page (read-only here); of the
 * ring from `peer` (read-only here) and its ack page (ours). NULL if none. */
uint8_t *msgq_ring_to(uint32_t peer, uint8_t **ack);
uint8_t *msgq_ring_from(uint32_t peer, uint8_t **ack);
/* Rings the rings' doorbell (what a driver does for a peer that sleeps). */
void msgq_ring_doorbell(void);

#endif
