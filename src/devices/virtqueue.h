/* The device side of a split virtqueue. Every index and descriptor the guest
 * provides is checked before use: ring addresses once, at enable, and each
 * descriptor chain as it is popped (indices in range, no loops, buffers inside
 * guest RAM, readable before writable). A malformed ring marks the queue
 * broken until the driver resets the device; it never reaches memcpy. */
#ifndef FERRY_VIRTQUEUE_H
#define FERRY_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ferry/virtio.h"

struct guest_memory;
struct device;

#define VQ_MAX_SEGS 128

struct vq_seg {
	uint8_t *ptr;   /* host pointer, valid for len bytes */
	uint32_t len;
	uint64_t gpa;
};

/* One popped chain: device-readable segments first, then device-writable. */
struct vq_chain {
	uint16_t head;
	unsigned nr_out;        /* readable segments: seg[0 .. nr_out) */
	unsigned nr_in;         /* writable segments: seg[nr_out .. nr_out + nr_in) */
	uint64_t out_bytes, in_bytes;
	struct vq_seg seg[VQ_MAX_SEGS];
};

struct virtqueue {
	struct guest_memory *mem;
	struct device *dev;     /* for counting and logging rejections */
	uint16_t index;
	uint16_t max_size;      /* what the device offers */
	uint16_t size;          /* what the driver chose */
	uint16_t msix_vector;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool enabled;
	bool broken;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uint16_t last_avail;    /* next avail slot to consume */
	uint16_t used_idx;      /* our copy of used->idx */
};

void vq_init(struct virtqueue *vq, struct guest_memory *mem, struct device *dev, uint16_t index, uint16_t max_size);
/* Back to the reset state (disabled, no addresses, default size). */
void vq_reset(struct virtqueue *vq);
/* Validates size and ring addresses and starts the queue; -1 (rejection
 * logged) if the driver's setup is unusable. */
int vq_enable(struct virtqueue *vq);

/* 1: a chain was popped; 0: the queue is empty; -1: the ring is malformed
 * (the queue is now broken). Every buffer must lie in guest RAM. */
int vq_pop(struct virtqueue *vq, struct vq_chain *chain);

/* A popped chain before translation: what the guest wrote, checked for
 * structure only (indices in range, no loops, readable before writable). */
struct vq_desc {
	uint64_t addr;
	uint32_t len;
	bool writable;
};
struct vq_desc_chain {
	uint16_t head;
	unsigned n;
	struct vq_desc desc[VQ_MAX_SEGS];
};
/* For devices whose buffers may live outside RAM (e.g. msgq's page window):
 * they translate each address themselves. Same return values as vq_pop. */
int vq_pop_desc(struct virtqueue *vq, struct vq_desc_chain *chain);
/* Puts back the chain popped last, unused, so the next pop returns it
 * again (read afresh: the guest may have changed it, and it is checked
 * again). Only right after a successful pop. */
void vq_unpop(struct virtqueue *vq);
/* Returns a chain to the driver with `written` bytes in its writable part. */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t written);
/* Asks the driver not to notify this queue (VRING_USED_F_NO_NOTIFY): the
 * device polls it, or collects its buffers when it needs them. */
void vq_set_no_notify(struct virtqueue *vq, bool no_notify);
/* After pushing: does the driver want an interrupt? */
bool vq_should_interrupt(struct virtqueue *vq);
/* Chains the driver has made available and we have not popped yet. */
uint16_t vq_pending(struct virtqueue *vq);

/* Copies from the chain's readable part, starting `offset` bytes in. Returns
 * the bytes copied (less than len if the chain is shorter). */
size_t vq_chain_read(const struct vq_chain *c, size_t offset, void *dst, size_t len);
/* Copies into the chain's writable part; returns the bytes copied. */
size_t vq_chain_write(const struct vq_chain *c, size_t offset, const void *src, size_t len);

#endif
