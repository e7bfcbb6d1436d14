/* ivshmem (drivers/ivshmem.c): memory shared between VMs, as QEMU offers it
 * with `-device ivshmem-plain,memdev=...` (PCI 1af4:1110, class 0x0500; BAR 2
 * is the shared memory, BAR 0 holds registers ivshmem-plain does not use),
 * and a message transport over it: two single-producer/single-consumer
 * rings, one per direction. This is the copy-based baseline that msgbulk
 * and msgping (transport=ivshmem) measure against ferry's msgq device: there
 * is no VMM on the data path at all, but also no isolation (each VM can
 * write everything in the shared memory, at any time), no sender identity
 * (a message's src is 0) and no policy.
 *
 * The shared memory, mapped as ordinary write-back memory:
 *
 *   0                          size/2                        size
 *   | ring 0: initiator -> responder | ring 1: responder -> initiator |
 *
 * The initiator is the side that starts the exchange (msgbulk role=send,
 * msgping role=ping); the responder the other (role=recv, role=pong).
 *
 * One ring (all fields little-endian, offsets from the ring's start):
 *
 *   0x000  magic u64, version u32, slot_size u32, nslots u64  (receiver)
 *   0x080  prod u64: slots published by the sender              (sender)
 *   0x100  cons u64: slots the receiver is done with            (receiver)
 *   0x1000 nslots slots of SHM_RING_SLOT (64) bytes
 *
 * Each field group has its own cache line (128 bytes apart, so that the
 * adjacent-line prefetcher does not pair them either), and each line has
 * one writer. prod and cons count slots from 0 and never wrap; slot i is at
 * position i % nslots.
 *
 * A message occupies ceil((16 + len) / 64) consecutive slots: a 16-byte
 * header {len u32, flags u32, pos u64} and the payload right after it. pos
 * is the message's slot index, so a reader can tell a published record from
 * stale contents. A message never wraps: when it does not fit before the
 * end of the ring, the sender first publishes a pad record (flags
 * SHM_MSG_PAD) that fills the rest of the ring, then starts at position 0.
 *
 *   sender:   wait until nslots - (prod - cons) >= k (spin, then back off:
 *             the ring is full); copy header and payload into the slots;
 *             store prod += k with release semantics (so the payload is
 *             visible before the index).
 *   receiver: load prod with acquire semantics; while cons < prod, read the
 *             record at cons in place (skipping pads), then store cons += k
 *             with release semantics (so its reads are done before the
 *             sender may overwrite the slots).
 *
 * Start-up: the receiver of each ring initializes it (clears the indices,
 * writes the geometry) and writes the magic last, with release semantics;
 * the sender waits for the magic (and checks version and geometry) before
 * touching anything else. Each side creates its receive ring before waiting
 * for its send ring, so the two never wait for each other. The host must give
 * each pair of VMs a fresh (zeroed) memory: a magic left over from an
 * earlier pair would let a sender attach before the receiver resets the
 * ring. A receiver that finishes cleanly clears its ring's magic. Both
 * sides write to every page of the slots once while setting up (the
 * receiver before the magic, the sender before its first message): a first
 * access to a page of shared memory costs a fault in the host, and the
 * rings are meant to be measured as they run, not as they are first mapped.
 *
 * The rings use no interrupts (ivshmem-plain has none) and no exits:
 * everything here is plain loads and stores, run natively in ring 3. Waiting spins,
 * then sleeps in short steps. One message at a time on the receive side: a
 * message stays in its slots until released, and must be released before
 * the next receive. Not thread-safe: one CPU uses the rings. */
#ifndef GUEST_IVSHMEM_H
#define GUEST_IVSHMEM_H

#include <stdbool.h>
#include <stdint.h>

#include "msgq.h"   /* struct msg */

#define IVSHMEM_VENDOR  0x1af4
#define IVSHMEM_DEVICE  0x1110
#define IVSHMEM_SHM_BAR 2

/* Finds the device, enables it and maps the shared memory (once; later calls
 * return the same answer). 0, or -1 if there is none or it is unusable. */
int ivshmem_open(void);
uint8_t *ivshmem_base(void);
uint64_t ivshmem_size(void);

/* The registers in BAR 0, where the device has them (ferry's links, QEMU's
 * ivshmem-doorbell; also ivshmem-plain, where IVPosition reads 0): this
 * VM's peer id, and doorbells that raise an MSI-X vector in a peer. The ring
 * transport below uses none of it. */
/* IVPosition, as read when the device was opened; -1 without registers. */
int ivshmem_position(void);
/* Routes every MSI-X vector of the device to this CPU, each to a handler
 * that counts it. The number of vectors, or -1 (no MSI-X: ivshmem-plain). */
int ivshmem_irq_init(void);
/* Interrupts vector `vector` has raised here so far. */
uint64_t ivshmem_irq_count(unsigned vector);
/* Rings `vector` of peer `peer` (Doorbell register). 0, or -1 without
 * registers; the device may drop a doorbell without telling. */
int ivshmem_doorbell(uint16_t peer, uint16_t vector);
/* Plain register access (BAR 0 offset), for tests of the device; reads
 * give all ones without registers. */
uint32_t ivshmem_reg_read(unsigned off);
void ivshmem_reg_write(unsigned off, uint32_t val);

/* The ring protocol. */
#define SHM_RING_MAGIC   0x474e495259525246ull  /* "FRRYRING" */
#define SHM_RING_VERSION 1
#define SHM_RING_SLOT    64
#define SHM_RING_CTRL    4096                   /* control block; slots follow */
#define SHM_MSG_PAD      1u                     /* flags: skip to position 0 */

struct shm_ring_ctrl {
	uint64_t magic;
	uint32_t version, slot_size;
	uint64_t nslots;
	uint8_t pad0[128 - 24];
	uint64_t prod;
	uint8_t pad1[128 - 8];
	uint64_t cons;
	uint8_t pad2[128 - 8];
};

struct shm_msg_hdr {
	uint32_t len, flags;
	uint64_t pos;
};

/* One side's private view of a ring. */
struct shm_ring {
	struct shm_ring_ctrl *ctrl;
	uint8_t *slots;
	uint64_t nslots;
	uint64_t head;        /* sender: next slot to write; receiver: next to read */
	uint64_t seen;        /* the other side's index, as last loaded */
	uint64_t full_waits;  /* sender: sends that found the ring full */
	bool broken;          /* the other side broke the protocol: stop */
};

/* Receiver: initializes the ring in [mem, mem + size) and publishes it. */
int shm_ring_create(struct shm_ring *r, void *mem, uint64_t size);
/* Sender: waits up to timeout_ns for the receiver's magic, checks the
 * geometry. 0, or -1 (no receiver in time, or a ring that does not fit). */
int shm_ring_attach(struct shm_ring *r, void *mem, uint64_t size, uint64_t timeout_ns);
/* The longest message the ring takes. */
uint32_t shm_ring_max_msg(const struct shm_ring *r);
/* Copies len bytes from buf into the next slots and publishes them, waiting
 * up to timeout_ns while the ring is full. 0; -1 too long; -2 timed out or
 * broken. */
int shm_ring_send(struct shm_ring *r, const void *buf, uint32_t len, uint64_t timeout_ns);
/* The next message, in place, without consuming it: *data, *len, and the
 * slots to consume. false if there is none (or the ring is broken). */
struct shm_msg {
	const uint8_t *data;
	uint32_t len;
	uint64_t pos, slots;
};
bool shm_ring_poll(struct shm_ring *r, struct shm_msg *m);
/* Consumes the message shm_ring_poll() returned: its slots go back. */
void shm_ring_release(struct shm_ring *r, const struct shm_msg *m);
/* Receiver, when done: clears the magic. */
void shm_ring_close(struct shm_ring *r);

/* The message transport the apps use (msgbulk, msgping transport=ivshmem),
 * shaped like msgq's (msgq.h) so they can use either: */
#define IVSHMEM_INITIATOR 0
#define IVSHMEM_RESPONDER 1
/* Opens the device, creates this side's receive ring and waits up to
 * timeout_ns for the peer's. 0, or -1 (said why on the console). */
int ivshmem_msg_open(unsigned side, uint64_t timeout_ns);
uint32_t ivshmem_msg_max(void);
/* Copies and publishes a message (see shm_ring_send). */
int ivshmem_msg_send(const void *buf, uint32_t len, uint64_t timeout_ns);
/* Spins up to timeout_ns (TIMEOUT_NEVER: for ever) for the next message.
 * m->src is 0: nobody vouches for where it came from. */
bool ivshmem_msg_recv(struct msg *m, uint64_t timeout_ns);
void ivshmem_msg_release(struct msg *m);
/* Sends that found the ring full so far. */
uint64_t ivshmem_msg_full_waits(void);
/* Clears this side's receive ring's magic. */
void ivshmem_msg_close(void);

#endif
