/* Direct rings of the msgq driver (feature MSGQ_F_RINGS; the protocol is in
 * include/ferry/msgq.h): one ring per peer this VM sends to (tx) and per
 * peer that sends to it (rx), in memory ferry set up and never touches on
 * the data path. Internal to drivers/msgq.c. Everything here is plain loads
 * and stores, natively in ring 3; the only exit is the doorbell, written
 * only for a peer that said it sleeps. */
#ifndef GUEST_MSGQ_RING_H
#define GUEST_MSGQ_RING_H

#include <stdbool.h>
#include <stdint.h>
#include <ferry/msgq.h>

#include "msgq.h"

/* Received ring messages a driver may hold unreleased, per ring. */
#define RING_HOLD 256

struct tx_ring {
	uint32_t dest;
	volatile struct msgq_ring_hdr *hdr;      /* ours */
	uint8_t *slots;
	volatile const struct msgq_ring_ack *ack; /* the receiver's */
	uint64_t nslots, max_msg;
	uint64_t prod;            /* what we published */
	uint64_t cons;            /* the receiver's index, as last loaded */
	uint32_t rung;            /* the receiver's wake token we rang for */
	uint32_t token;           /* our last wake token */
	bool broken;
	uint64_t sent, full, doorbells;
};

struct rx_ring {
	uint32_t src;
	volatile const struct msgq_ring_hdr *hdr; /* the sender's */
	const uint8_t *slots;
	volatile struct msgq_ring_ack *ack;      /* ours */
	uint64_t nslots, max_msg;
	uint64_t head;            /* the next record to read */
	uint64_t prod;            /* the sender's index, as last loaded */
	uint64_t cons;            /* what we are done with */
	uint64_t published;       /* what the sender was told (cons, lagging) */
	uint32_t rung;
	uint32_t token;
	bool broken, open;
	struct { uint64_t pos; uint32_t k; bool released; } held[RING_HOLD];
	unsigned held_first, held_n;
	uint64_t received, doorbells;
};

/* Results of ring_send(). */
#define RING_SENT    0
#define RING_FULL    1    /* no room now: retry, or wait with ring_want_room */
#define RING_CLOSED  2    /* the receiver does not read it (or it broke): use ferry */

void ring_tx_init(struct tx_ring *r, uint32_t dest, uint8_t *data, const uint8_t *ack, uint32_t ring_size);
void ring_rx_init(struct rx_ring *r, uint32_t src, const uint8_t *data, uint8_t *ack, uint32_t ring_size);
/* Receiver: starts reading (skipping whatever was published before) and
 * tells the sender so. */
void ring_rx_open(struct rx_ring *r);
/* Whether a message of len bytes can ever go on this ring. */
bool ring_fits(const struct tx_ring *r, uint32_t len);
bool ring_is_open(const struct tx_ring *r);
/* Copies a message into the ring and publishes it; rings the doorbell at
 * `doorbell` if the receiver sleeps (immediate: certainly; otherwise ferry
 * may be the one to wake it, within poll_us). Spins up to spin_ns for room. */
int ring_send(struct tx_ring *r, const void *buf, uint32_t len, uint32_t cookie, uintptr_t doorbell,
	      uint64_t spin_ns, bool immediate);
/* Sender about to sleep for room: sets a new wake token; true if there is
 * room (or the ring closed) after all, so do not sleep. */
bool ring_want_room(struct tx_ring *r, uint32_t len);
bool ring_has_room(struct tx_ring *r, uint32_t len);
void ring_room_done(struct tx_ring *r);

/* The next message, in place (m->flags has MSGQ_RECV_RING). */
bool ring_poll(struct rx_ring *r, struct msg *m);
/* Whether the sender published anything not read yet. */
bool ring_pending(const struct rx_ring *r);
/* Gives a message's slots back (in ring order: earlier ones still held
 * keep later ones from going back); rings the doorbell if the sender
 * sleeps for room. */
void ring_release(struct rx_ring *r, uint64_t pos, uintptr_t doorbell);
/* Receiver about to sleep: sets a new wake token (true: something came
 * meanwhile, do not sleep); ring_sleep_done clears it. */
bool ring_want_msgs(struct rx_ring *r);
void ring_sleep_done(struct rx_ring *r);

#endif
