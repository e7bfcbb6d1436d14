#include "devices/virtqueue.h"

#include <string.h>

#include "devices/device.h"
#include "vmm/memory.h"

void vq_init(struct virtqueue *vq, struct guest_memory *mem, struct device *dev, uint16_t index, uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->dev = dev;
	vq->index = index;
	vq->max_size = max_size;
	vq_reset(vq);
}

void vq_reset(struct virtqueue *vq)
{
	vq->size = vq->max_size;
	vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->enabled = false;
	vq->broken = false;
	vq->desc = NULL;
	vq->avail = NULL;
	vq->used = NULL;
	vq->last_avail = 0;
	vq->used_idx = 0;
}

static int reject(struct virtqueue *vq, const char *what)
{
	device_reject(vq->dev, "queue %u: %s", vq->index, what);
	return -1;
}

int vq_enable(struct virtqueue *vq)
{
	uint16_t n = vq->size;
	if (n == 0 || n > vq->max_size || (n & (n - 1)))
		return reject(vq, "size is not a power of two within the device's maximum");
	if (vq->desc_gpa % 16 || vq->avail_gpa % 2 || vq->used_gpa % 4)
		return reject(vq, "ring address is misaligned");
	/* Whole rings, including the event-index words, must be in guest RAM. */
	vq->desc = gm_ptr(vq->mem, vq->desc_gpa, VRING_DESC_BYTES(n));
	vq->avail = gm_ptr(vq->mem, vq->avail_gpa, VRING_AVAIL_BYTES(n));
	vq->used = gm_ptr(vq->mem, vq->used_gpa, VRING_USED_BYTES(n));
	if (!vq->desc || !vq->avail || !vq->used) {
		vq->desc = NULL;
		vq->avail = NULL;
		vq->used = NULL;
		return reject(vq, "ring lies outside guest RAM");
	}
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->broken = false;
	vq->enabled = true;
	return 0;
}

static int broken(struct virtqueue *vq, const char *what)
{
	vq->broken = true;
	return reject(vq, what);
}

uint16_t vq_pending(struct virtqueue *vq)
{
	if (!vq->enabled || vq->broken)
		return 0;
	uint16_t avail_idx = __atomic_load_n(&vq->avail->idx, __ATOMIC_ACQUIRE);
	return (uint16_t)(avail_idx - vq->last_avail);
}

/* One descriptor, copied out of guest memory once: later checks and uses
 * see the same values even if the guest rewrites the table meanwhile. */
static struct vring_desc read_desc(struct virtqueue *vq, uint16_t i)
{
	const volatile struct vring_desc *d = &vq->desc[i];
	return (struct vring_desc){ d->addr, d->len, d->flags, d->next };
}

int vq_pop_desc(struct virtqueue *vq, struct vq_desc_chain *c)
{
	uint16_t pending = vq_pending(vq);
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return broken(vq, "driver claims more available buffers than the queue holds");

	uint16_t head = __atomic_load_n(&vq->avail->ring[vq->last_avail % vq->size], __ATOMIC_RELAXED);
	if (head >= vq->size)
		return broken(vq, "available ring names a descriptor beyond the queue");
	vq->last_avail++;

	c->head = head;
	c->n = 0;
	bool seen_writable = false;
	uint16_t i = head;
	for (unsigned hops = 0;; hops++) {
		if (hops == vq->size)
			return broken(vq, "descriptor chain loops");
		struct vring_desc d = read_desc(vq, i);
		if (d.flags & VRING_DESC_F_INDIRECT)
			return broken(vq, "indirect descriptor, which the device did not offer");
		bool writable = d.flags & VRING_DESC_F_WRITE;
		if (!writable && seen_writable)
			return broken(vq, "readable descriptor after a writable one");
		seen_writable |= writable;
		if (d.len) {
			if (c->n == VQ_MAX_SEGS)
				return broken(vq, "descriptor chain has too many segments");
			c->desc[c->n++] = (struct vq_desc){ d.addr, d.len, writable };
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			break;
		if (d.next >= vq->size)
			return broken(vq, "descriptor chain points beyond the queue");
		i = d.next;
	}
	return 1;
}

int vq_pop(struct virtqueue *vq, struct vq_chain *c)
{
	struct vq_desc_chain dc;
	int r = vq_pop_desc(vq, &dc);
	if (r <= 0)
		return r;
	memset(c, 0, offsetof(struct vq_chain, seg));
	c->head = dc.head;
	for (unsigned k = 0; k < dc.n; k++) {
		const struct vq_desc *d = &dc.desc[k];
		void *p = gm_ptr(vq->mem, d->addr, d->len);
		if (!p)
			return broken(vq, "buffer lies outside guest RAM");
		c->seg[k] = (struct vq_seg){ p, d->len, d->addr };
		if (d->writable) {
			c->nr_in++;
			c->in_bytes += d->len;
		} else {
			c->nr_out++;
			c->out_bytes += d->len;
		}
	}
	return 1;
}

void vq_unpop(struct virtqueue *vq)
{
	if (vq->enabled && !vq->broken)
		vq->last_avail--;
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t written)
{
	if (!vq->enabled)
		return;
	volatile struct vring_used_elem *e = &vq->used->ring[vq->used_idx % vq->size];
	e->id = head;
	e->len = written;
	vq->used_idx++;
	__atomic_store_n(&vq->used->idx, vq->used_idx, __ATOMIC_RELEASE);
}

void vq_set_no_notify(struct virtqueue *vq, bool no_notify)
{
	if (!vq->enabled)
		return;
	__atomic_store_n(&vq->used->flags, no_notify ? VRING_USED_F_NO_NOTIFY : 0, __ATOMIC_RELEASE);
	/* The driver reads the flag after publishing its index: order our
	 * store before any read of the avail index that follows. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool vq_should_interrupt(struct virtqueue *vq)
{
	if (!vq->enabled)
		return false;
	/* Order our used->idx store before reading the driver's flag, or an
	 * interrupt the driver just asked for could be missed. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(__atomic_load_n(&vq->avail->flags, __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT);
}

/* Copies between buf and the chain's segments [first, first + n), starting
 * `offset` bytes into them. */
static size_t chain_copy(const struct vq_chain *c, unsigned first, unsigned n, size_t offset, uint8_t *buf,
			 size_t len, bool to_chain)
{
	size_t done = 0;
	for (unsigned s = first; s < first + n && done < len; s++) {
		const struct vq_seg *seg = &c->seg[s];
		if (offset >= seg->len) {
			offset -= seg->len;
			continue;
		}
		size_t k = seg->len - offset;
		if (k > len - done)
			k = len - done;
		if (to_chain)
			memcpy(seg->ptr + offset, buf + done, k);
		else
			memcpy(buf + done, seg->ptr + offset, k);
		done += k;
		offset = 0;
	}
	return done;
}

size_t vq_chain_read(const struct vq_chain *c, size_t offset, void *dst, size_t len)
{
	return chain_copy(c, 0, c->nr_out, offset, dst, len, false);
}

size_t vq_chain_write(const struct vq_chain *c, size_t offset, const void *src, size_t len)
{
	return chain_copy(c, c->nr_out, c->nr_in, offset, (uint8_t *)src, len, true);
}
