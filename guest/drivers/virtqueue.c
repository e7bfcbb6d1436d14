/* Split virtqueue, driver side (virtio 1.2, section 2.7). The driver keeps
 * its own copy of every chain's layout (struct vq_desc_state), so it never
 * follows links or lengths from memory the device can write; the used ring's
 * ids and lengths are checked against that copy. */
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "lapic.h"
#include "page_alloc.h"
#include "smp.h"
#include "timer.h"
#include "virtqueue.h"
#include "x86.h"

#define NO_DESC 0xffff

static size_t used_offset(uint16_t size)
{
	return ALIGN_UP(VRING_DESC_BYTES(size) + VRING_AVAIL_BYTES(size), 64);
}

int vq_alloc(struct virtqueue *vq, uint16_t size)
{
	size_t bytes = used_offset(size) + VRING_USED_BYTES(size);
	unsigned order = 0;

	if (!size || (size & (size - 1)) || size > VIRTQ_MAX_SIZE)
		return -1;
	while ((PAGE_SIZE << order) < bytes)
		order++;
	vq->mem = alloc_pages_zeroed(order);
	vq->state = kzalloc(size * sizeof(*vq->state));
	if (!vq->mem || !vq->state) {
		if (vq->mem)
			free_pages(vq->mem, order);
		kfree(vq->state);
		return -1;
	}
	vq->mem_order = order;
	vq->size = size;
	vq->desc = vq->mem;
	vq->avail = (struct vring_avail *)((char *)vq->mem + VRING_DESC_BYTES(size));
	vq->used = (struct vring_used *)((char *)vq->mem + used_offset(size));
	for (uint16_t i = 0; i < size; i++)
		vq->state[i].next = i + 1 < size ? i + 1 : NO_DESC;
	vq->free_head = 0;
	vq->num_free = size;
	vq->avail_idx = vq->last_used = vq->kicked_idx = 0;
	vq->event_idx = vq->irq_off = false;
	vq->vector = -1;
	vq->waiter_apic_id = -1;
	vq->broken = false;
	return 0;
}

void vq_free(struct virtqueue *vq)
{
	if (vq->mem)
		free_pages(vq->mem, vq->mem_order);
	kfree(vq->state);
	vq->mem = NULL;
	vq->state = NULL;
}

static void vq_error(struct virtqueue *vq, const char *what, unsigned value)
{
	vq->errors++;
	if (!vq->broken)
		kprintf("virtqueue %u: device error: %s (%u); queue stopped\n", vq->index, what, value);
	vq->broken = true;
}

int vq_add(struct virtqueue *vq, const struct vq_seg *segs, unsigned n_out, unsigned n_in, void *token)
{
	unsigned n = n_out + n_in;
	uint16_t head = vq->free_head, i = head;
	uint32_t in_len = 0;

	if (vq->broken || !token || !n || n > vq->num_free)
		return -1;
	for (unsigned s = 0; s < n; s++) {
		struct vring_desc *d = &vq->desc[i];
		d->addr = virt_to_phys(segs[s].addr);
		d->len = segs[s].len;
		d->flags = (s >= n_out ? VRING_DESC_F_WRITE : 0) | (s + 1 < n ? VRING_DESC_F_NEXT : 0);
		d->next = s + 1 < n ? vq->state[i].next : 0;
		if (s >= n_out)
			in_len += segs[s].len;
		i = vq->state[i].next;
	}
	vq->free_head = i;
	vq->num_free -= n;
	vq->state[head].token = token;
	vq->state[head].ndesc = (uint16_t)n;
	vq->state[head].in_len = in_len;

	vq->avail->ring[vq->avail_idx & (vq->size - 1)] = head;
	barrier();  /* x86 keeps stores in order; the compiler must too */
	vq->avail_idx++;
	WRITE_ONCE(vq->avail->idx, vq->avail_idx);
	return 0;
}

/* The le16 after each ring (EVENT_IDX). */
static volatile uint16_t *used_event(struct virtqueue *vq)
{
	return &vq->avail->ring[vq->size];
}

static volatile uint16_t *avail_event(struct virtqueue *vq)
{
	return (volatile uint16_t *)&vq->used->ring[vq->size];
}

void vq_kick(struct virtqueue *vq)
{
	uint16_t old = vq->kicked_idx, now = vq->avail_idx;
	bool notify;

	mb();  /* publish avail->idx before reading what the device wants */
	if (vq->event_idx)
		notify = vring_need_event(*avail_event(vq), now, old);
	else
		notify = !(READ_ONCE(vq->used->flags) & VRING_USED_F_NO_NOTIFY);
	vq->kicked_idx = now;
	if (notify) {
		mmio_write16(vq->notify_addr, vq->index);
		vq->notifies++;
	} else if (now != old) {
		vq->notifies_skipped++;
	}
}

bool vq_has_used(struct virtqueue *vq)
{
	return !vq->broken && READ_ONCE(vq->used->idx) != vq->last_used;
}

void *vq_get_used(struct virtqueue *vq, uint32_t *len)
{
	uint16_t used_idx = READ_ONCE(vq->used->idx);
	struct vring_used_elem e;
	struct vq_desc_state *st;
	uint16_t tail;
	void *token;

	if (vq->broken || used_idx == vq->last_used)
		return NULL;
	if ((uint16_t)(used_idx - vq->last_used) > vq->size) {
		vq_error(vq, "used index ran ahead of the ring", used_idx);
		return NULL;
	}
	barrier();  /* read the entry only after seeing the index */
	e = vq->used->ring[vq->last_used & (vq->size - 1)];
	if (e.id >= vq->size || !vq->state[e.id].token) {
		vq_error(vq, "used id is not a chain in flight", e.id);
		return NULL;
	}
	st = &vq->state[e.id];
	if (e.len > st->in_len) {
		vq->errors++;
		kprintf("virtqueue %u: device wrote %u bytes into %u\n", vq->index, e.len, st->in_len);
		e.len = st->in_len;
	}
	vq->last_used++;
	if (vq->event_idx)  /* interrupts on: for the next entry; off: never */
		*used_event(vq) = (uint16_t)(vq->last_used - vq->irq_off);

	token = st->token;
	tail = (uint16_t)e.id;
	for (unsigned k = 1; k < st->ndesc; k++)
		tail = vq->state[tail].next;
	vq->state[tail].next = vq->free_head;
	vq->free_head = (uint16_t)e.id;
	vq->num_free += st->ndesc;
	st->token = NULL;
	st->ndesc = 0;
	if (len)
		*len = e.len;
	return token;
}

static bool used_or_broken(void *vq)
{
	struct virtqueue *q = vq;

	return q->broken || READ_ONCE(q->used->idx) != q->last_used;
}

void *vq_wait(struct virtqueue *vq, uint32_t *len, uint64_t timeout_ns)
{
	if (vq->vector >= 0) {
		/* The interrupt may be routed to another CPU: it wakes us by IPI. */
		WRITE_ONCE(vq->waiter_apic_id, (int32_t)this_cpu()->apic_id);
		halt_until(used_or_broken, vq, timeout_ns);
		WRITE_ONCE(vq->waiter_apic_id, -1);
	} else {
		uint64_t start = time_ns();
		while (!used_or_broken(vq) && (timeout_ns == TIMEOUT_NEVER || time_ns() - start < timeout_ns))
			cpu_relax();
	}
	return vq_get_used(vq, len);
}

void vq_enable_irq(struct virtqueue *vq)
{
	vq->irq_off = false;
	if (vq->event_idx)
		*used_event(vq) = vq->last_used;  /* the next completion interrupts */
	else
		WRITE_ONCE(vq->avail->flags, vq->avail->flags & ~VRING_AVAIL_F_NO_INTERRUPT);
	mb();  /* before the caller looks at the used index one last time */
}

void vq_disable_irq(struct virtqueue *vq)
{
	vq->irq_off = true;
	if (vq->event_idx)
		*used_event(vq) = (uint16_t)(vq->last_used - 1);  /* crossed only after 65536 more */
	else
		WRITE_ONCE(vq->avail->flags, vq->avail->flags | VRING_AVAIL_F_NO_INTERRUPT);
}

unsigned vq_num_free(const struct virtqueue *vq)
{
	return vq->num_free;
}

void vq_set_callback(struct virtqueue *vq, vq_callback_fn fn, void *arg)
{
	uint64_t flags = irq_save();

	vq->callback_arg = arg;
	vq->callback = fn;
	irq_restore(flags);
}

void vq_interrupt(void *arg)
{
	struct virtqueue *vq = arg;
	int32_t waiter = READ_ONCE(vq->waiter_apic_id);

	vq->interrupts++;
	if (vq->callback)
		vq->callback(vq, vq->callback_arg);
	if (waiter >= 0 && (uint32_t)waiter != this_cpu()->apic_id)
		lapic_send_ipi((uint32_t)waiter, VECTOR_WAKE);
}
