/* Split virtqueues (drivers/virtqueue.c). A virtqueue is not locked: its
 * driver must not use it from two CPUs at once. Everything read from the
 * device's used ring is checked; a device that returns a descriptor it does
 * not own marks the queue broken (reported, and later calls fail) instead of
 * corrupting memory. */
#ifndef GUEST_VIRTQUEUE_H
#define GUEST_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <ferry/virtio.h>

struct virtio_dev;
struct virtqueue;
typedef void (*vq_callback_fn)(struct virtqueue *vq, void *arg);

/* One buffer of a chain; memory is identity-mapped, so any kernel pointer works. */
struct vq_seg {
	void *addr;
	uint32_t len;
};

struct vq_desc_state {
	void *token;        /* non-NULL while the chain headed here is in flight */
	uint32_t in_len;    /* device-writable bytes of that chain */
	uint16_t ndesc;
	uint16_t next;      /* private chain / free list link */
};

struct virtqueue {
	struct virtio_dev *vdev;
	uint16_t index, size;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	struct vq_desc_state *state;
	void *mem;
	unsigned mem_order;
	uintptr_t notify_addr;
	uint16_t free_head, num_free;
	uint16_t avail_idx;           /* next avail->idx to publish */
	uint16_t last_used;           /* next used->idx entry to consume */
	uint16_t kicked_idx;          /* avail_idx at the last vq_kick() */
	bool event_idx;               /* VIRTIO_F_EVENT_IDX negotiated */
	bool irq_off;                 /* vq_disable_irq() in force */
	int vector;                   /* MSI-X vector, -1: polled */
	volatile int32_t waiter_apic_id;  /* CPU halted in vq_wait(), -1: none */
	volatile uint64_t interrupts;
	uint64_t errors;
	uint64_t notifies;            /* vq_kick() that wrote the notify register */
	uint64_t notifies_skipped;    /* ... that did not: the device said it would look */
	bool broken;
	vq_callback_fn callback;      /* optional, interrupt context */
	void *callback_arg;
};

/* For transports: allocates zeroed rings for `size` entries (a power of two)
 * and the driver-private state, or frees them. vq_alloc returns 0 or -1. */
int vq_alloc(struct virtqueue *vq, uint16_t size);
void vq_free(struct virtqueue *vq);
/* For transports: the queue's interrupt handler (arg: the virtqueue). */
void vq_interrupt(void *vq);

/* Queues a chain: segs[0..n_out) device-readable, then n_in device-writable.
 * token (non-NULL) comes back from vq_get_used(). Returns 0, or -1 if the
 * queue lacks n_out + n_in free descriptors, is broken or the input is bad. */
int vq_add(struct virtqueue *vq, const struct vq_seg *segs, unsigned n_out, unsigned n_in, void *token);
/* Tells the device about added chains, unless it asked not to be told
 * (VRING_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX). */
void vq_kick(struct virtqueue *vq);
/* The token of the next completed chain and the bytes the device wrote into
 * it (*len), or NULL if none is ready. */
void *vq_get_used(struct virtqueue *vq, uint32_t *len);
bool vq_has_used(struct virtqueue *vq);
/* Halts until a chain completes (interrupt, or polling without MSI-X) and
 * returns it as vq_get_used() does; NULL after timeout_ns or if broken. */
void *vq_wait(struct virtqueue *vq, uint32_t *len, uint64_t timeout_ns);
/* Asks the device to (not) interrupt on completions: VRING_AVAIL_F_NO_INTERRUPT,
 * or with EVENT_IDX used_event (kept just behind the driver's position while
 * off, so the device never crosses it). */
void vq_enable_irq(struct virtqueue *vq);
void vq_disable_irq(struct virtqueue *vq);
unsigned vq_num_free(const struct virtqueue *vq);
/* Called from the queue's interrupt handler; fn runs there. */
void vq_set_callback(struct virtqueue *vq, vq_callback_fn fn, void *arg);

#endif
