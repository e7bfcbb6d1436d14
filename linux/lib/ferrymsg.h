/* libferrymsg: ferry's message queues from Linux user space, through the
 * ferry_msgq module's /dev/ferry-msgqN (linux/include/uapi/ferry_msgq.h).
 *
 *   struct fm q;
 *   fm_open(&q, NULL);                         // /dev/ferry-msgq0, mapped
 *   uint32_t slot; fm_alloc(&q, len, &slot);   // consecutive free send slots
 *   memcpy(fm_slot(&q, slot), data, len);      // write the message in place
 *   int st = fm_send1(&q, fm_peer(&q, "rx"), slot, len, MSGQ_SEND_REMAP, true);
 *   fm_free(&q, slot, len);                    // MSGQ_OK: the slots hold other pages now
 *
 *   struct ferry_msgq_msg m;
 *   fm_recv(&q, &m, 1, -1, NULL, 0, 0);        // wait for one message
 *   use(fm_msg_data(&q, &m), m.len, m.src);    // read-only, in place
 *   struct ferry_msgq_return r = { m.slot, m.nr_pages };
 *   fm_recv(&q, NULL, 0, 0, &r, 1, 0);         // give it back
 *
 * Send slots are this process's to manage (fm_alloc/fm_free keep a map);
 * the driver only checks that a send starts inside the send region. The
 * device checks the rest and answers with its status (MSGQ_E_*). Functions
 * return counts or 0, or -errno. */
#ifndef FERRYMSG_H
#define FERRYMSG_H

#include <stdbool.h>
#include <stdint.h>

#include <ferry/msgq.h>
#include "uapi/ferry_msgq.h"

struct fm {
	int fd;
	struct ferry_msgq_info info;
	uint8_t *send;      /* the send region, read-write */
	const uint8_t *recv;/* the receive region, read-only */
	uint8_t *slot_used; /* fm_alloc's map: one byte per send slot */
};

int fm_open(struct fm *q, const char *path);
void fm_close(struct fm *q);

/* A peer's VM id by name (or a decimal id), 0 if it is none of this VM's
 * peers; and a peer's name by id (NULL if unknown). */
uint32_t fm_peer(const struct fm *q, const char *name);
const char *fm_peer_name(const struct fm *q, uint32_t id);

static inline uint8_t *fm_slot(struct fm *q, uint32_t slot)
{
	return q->send + (uint64_t)slot * q->info.page_size;
}
static inline uint32_t fm_slots_for(const struct fm *q, uint64_t len)
{
	return (uint32_t)((len + q->info.page_size - 1) / q->info.page_size);
}

/* Send slots for len bytes (at least one slot); -ENOSPC if no run is free. */
int fm_alloc(struct fm *q, uint32_t len, uint32_t *slot);
void fm_free(struct fm *q, uint32_t slot, uint32_t len);

/* Posts n sends (FERRY_MSGQ_IMMEDIATE, FERRY_MSGQ_WAIT); returns how many
 * were posted, with statuses filled in if WAIT. */
int fm_send(struct fm *q, struct ferry_msgq_send *s, unsigned n, unsigned flags, int timeout_ms);
/* One send, waited for: its status (MSGQ_OK or MSGQ_E_*), or -errno. */
int fm_send1(struct fm *q, uint32_t dest, uint32_t slot, uint32_t len, uint32_t mode, bool immediate);
/* Finished sends posted without WAIT. */
int fm_reap(struct fm *q, struct ferry_msgq_done *d, unsigned max, int timeout_ms);
/* Gives back nret messages, then receives up to max (waiting up to
 * timeout_ms for the first, -1 forever); returns how many arrived. */
int fm_recv(struct fm *q, struct ferry_msgq_msg *m, unsigned max, int timeout_ms,
	    const struct ferry_msgq_return *ret, unsigned nret, unsigned flags);
static inline const uint8_t *fm_msg_data(const struct fm *q, const struct ferry_msgq_msg *m)
{
	return q->recv + m->offset;
}
int fm_stats(struct fm *q, struct ferry_msgq_stats *st);

const char *fm_status_name(int status);

#endif
