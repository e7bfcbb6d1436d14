/* Direct rings (feature MSGQ_F_RINGS, include/ferry/msgq.h): for each pair
 * of VMs the config allows (the sender lists the receiver as a peer and both
 * devices have "rings": true), memory that only the sender can write and the
 * receiver reads, plus an ack page the other way. The two drivers move
 * copied messages through it by themselves; ferry sets the rings up, maps
 * them into both windows, turns a doorbell into interrupts for the peers that
 * asked to be woken, and closes a ring whose receiver resets or stops. It
 * never reads a message. All calls with the switch lock held, except setup
 * and attach (before the VMs run). */
#ifndef FERRY_MSGQ_RINGS_H
#define FERRY_MSGQ_RINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msgq_switch;
struct msgq_endpoint;
struct ferry_config;

struct msgq_ring {
	uint32_t src, dst;          /* vm ids: the writer, the reader */
	uint64_t off;               /* the data area in the rings' memfd; its ack page follows */
	uint32_t answered_rx;       /* the receiver's last wake token ferry answered */
	uint32_t answered_tx;       /* the sender's */
};

struct msgq_rings {
	int fd;                     /* every ring's memory; -1: no rings */
	uint8_t *base;              /* ferry's own view of all of it */
	uint64_t ring_size;         /* bytes of a data area */
	uint64_t bytes;
	struct msgq_ring *ring;
	unsigned nr;
};

/* The rings the config asks for, their memory and ferry's view of it.
 * 0 (also when there are none), or -1 with a reason. */
int msgq_rings_setup(struct msgq_switch *sw, const struct ferry_config *cfg, char *err, size_t errlen);
void msgq_rings_destroy(struct msgq_rings *rings);
/* Memory mappings a VM's view of its rings can take at most. */
uint64_t msgq_rings_mappings(void);

/* Finds ep's rings and maps its view (ep->rings_hva: the read-write region,
 * then the read-only one). No rings: nothing to do. */
int msgq_rings_attach(struct msgq_endpoint *ep, char *err, size_t errlen);
/* Closes the rings ep reads (their senders are woken to see it) and unmaps
 * its view. */
void msgq_rings_detach(struct msgq_endpoint *ep);

/* ep's driver rang the rings' doorbell: wake every peer that waits on one of
 * ep's rings with a token ferry has not answered yet. */
void msgq_rings_doorbell(struct msgq_endpoint *ep);
/* ep's device was reset: the rings it reads close (their senders stop using
 * them until the next driver opens them), wake tokens are forgotten. */
void msgq_rings_reset(struct msgq_endpoint *ep);
/* Periodic (poll_us): closes the rings ep writes whose receivers are gone,
 * stopped or broken (waking ep if it waits for room in one), and answers
 * the wake tokens the drivers may have missed: a receiver asleep on a ring
 * with messages, a sender asleep on a ring with room. */
void msgq_rings_check(struct msgq_endpoint *ep);

/* What a ring's two sides last wrote (untrusted: for counters only). */
struct msgq_ring_state {
	uint32_t peer;              /* the other side's vm id */
	bool open;
	uint64_t prod, cons;
	uint32_t wake_rx, wake_tx;     /* tokens the two sides have set */
	uint32_t answered_rx, answered_tx;  /* the last ferry answered */
};
bool msgq_ring_state(struct msgq_endpoint *ep, bool tx, unsigned i, struct msgq_ring_state *out);

#endif
