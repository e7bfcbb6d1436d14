/* ivshmem: QEMU's shared memory between VMs, and the message rings over it
 * (the protocol is described in include/ivshmem.h). */
#include "ivshmem.h"

#include <ferry/ivshmem.h>

#include "interrupt.h"
#include "kernel.h"
#include "kstring.h"
#include "paging.h"
#include "pci.h"
#include "smp.h"
#include "timer.h"
#include "x86.h"

#define LARGE_PAGE   (2 * MiB)   /* the granule paging_map() maps */
#define SPIN_NS      1000000ull  /* a full ring: spin this long, */
#define BACKOFF_NS   100000ull   /* then sleep this long between looks */

static int state;                /* 0: not probed, 1: present, -1: absent */
static uint8_t *base;
static uint64_t size;
static struct pci_dev *dev;
static uintptr_t regs;           /* BAR 0, mapped; 0 if the device has none */
static int position = -1;
#define MAX_VECTORS 16
static unsigned nr_vectors;
static uint64_t irqs[MAX_VECTORS];

static int probe(void)
{
	struct pci_dev *d = pci_find(IVSHMEM_VENDOR, IVSHMEM_DEVICE, 0);
	if (!d)
		return -1;
	struct pci_bar *bar = &d->bar[IVSHMEM_SHM_BAR];
	/* paging_map() maps whole 2 MiB pages: a smaller or unaligned BAR
	 * would share one with other devices' registers, mapped cached. */
	if (bar->io || !bar->size || !bar->addr || bar->size % LARGE_PAGE || bar->addr % LARGE_PAGE) {
		kprintf("ivshmem: BAR %u (%#lx, %lu bytes) is not memory in whole 2 MiB pages\n", IVSHMEM_SHM_BAR,
			(unsigned long)bar->addr, (unsigned long)bar->size);
		return -1;
	}
	pci_enable(d);
	/* Ordinary write-back memory, not MMIO (pci_map_bar() maps uncached). */
	if (paging_map(bar->addr, bar->size, 0)) {
		kprintf("ivshmem: cannot map %lu bytes at %#lx\n", (unsigned long)bar->size, (unsigned long)bar->addr);
		return -1;
	}
	base = (uint8_t *)(uintptr_t)bar->addr;
	size = bar->size;
	dev = d;
	struct pci_bar *rb = &d->bar[IVSHMEM_REG_BAR];
	if (!rb->io && rb->size >= IVSHMEM_REG_SIZE)
		regs = pci_map_bar(d, IVSHMEM_REG_BAR);
	if (regs)
		position = (int)mmio_read32(regs + IVSHMEM_IV_POSITION);
	pr_info("ivshmem: %lu MiB of shared memory at %#lx, position %d\n", (unsigned long)(size / MiB),
		(unsigned long)bar->addr, position);
	return 0;
}

int ivshmem_open(void)
{
	if (state == 0)
		state = probe() == 0 ? 1 : -1;
	return state == 1 ? 0 : -1;
}

uint8_t *ivshmem_base(void)
{
	return state == 1 ? base : NULL;
}

uint64_t ivshmem_size(void)
{
	return state == 1 ? size : 0;
}

int ivshmem_position(void)
{
	return state == 1 ? position : -1;
}

static void vector_interrupt(void *arg)
{
	__atomic_add_fetch(&irqs[(uintptr_t)arg], 1, __ATOMIC_RELAXED);
}

int ivshmem_irq_init(void)
{
	if (ivshmem_open() < 0)
		return -1;
	if (nr_vectors)
		return (int)nr_vectors;
	int entries = pci_msix_init(dev);
	if (entries < 1)
		return -1;
	unsigned n = entries < MAX_VECTORS ? (unsigned)entries : MAX_VECTORS;
	for (unsigned i = 0; i < n; i++) {
		int vector = irq_alloc_vector(vector_interrupt, (void *)(uintptr_t)i);
		if (vector < 0 || pci_msix_route(dev, i, (uint8_t)vector, this_cpu()->apic_id) < 0) {
			kprintf("ivshmem: no interrupt vector for MSI-X entry %u\n", i);
			return -1;
		}
	}
	pci_msix_unmask_function(dev);
	nr_vectors = n;
	return (int)n;
}

uint64_t ivshmem_irq_count(unsigned vector)
{
	return vector < MAX_VECTORS ? __atomic_load_n(&irqs[vector], __ATOMIC_RELAXED) : 0;
}

int ivshmem_doorbell(uint16_t peer, uint16_t vector)
{
	if (ivshmem_open() < 0 || !regs)
		return -1;
	mmio_write32(regs + IVSHMEM_DOORBELL, IVSHMEM_DOORBELL_VALUE(peer, vector));
	return 0;
}

uint32_t ivshmem_reg_read(unsigned off)
{
	return ivshmem_open() == 0 && regs && off < IVSHMEM_REG_SIZE ? mmio_read32(regs + off) : 0xffffffffu;
}

void ivshmem_reg_write(unsigned off, uint32_t val)
{
	if (ivshmem_open() == 0 && regs && off < IVSHMEM_REG_SIZE)
		mmio_write32(regs + off, val);
}

/* The ring protocol. Fields the other VM writes are read once per use with
 * __atomic loads (it may change them at any time), and everything read from
 * it is checked before use. On x86 acquire loads and release stores are
 * plain moves; they only keep the compiler from reordering. */

static uint64_t load_acquire(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store_release(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static uint64_t slots_for(uint32_t len)
{
	return (sizeof(struct shm_msg_hdr) + (uint64_t)len + SHM_RING_SLOT - 1) / SHM_RING_SLOT;
}

static struct shm_msg_hdr *hdr_at(const struct shm_ring *r, uint64_t pos)
{
	return (struct shm_msg_hdr *)(r->slots + pos * SHM_RING_SLOT);
}

/* The first access to each page of shared memory costs a fault in the host
 * (~20 us per 4 KiB with shadow paging, in each VM): take them all at setup
 * instead of in the first pass over the ring. Writes, so that the mapping is
 * writable too; only slots no message occupies yet are written. */
static void touch(uint8_t *p, uint64_t bytes)
{
	for (uint64_t off = 0; off < bytes; off += PAGE_SIZE)
		__atomic_store_n(p + off, 0, __ATOMIC_RELAXED);
}

static bool broken(struct shm_ring *r, const char *what, uint64_t value)
{
	if (!r->broken)
		kprintf("ivshmem: ring broken at slot %lu: %s %lu\n", (unsigned long)r->head, what, (unsigned long)value);
	r->broken = true;
	return false;
}

int shm_ring_create(struct shm_ring *r, void *mem, uint64_t bytes)
{
	if (bytes < SHM_RING_CTRL + 2 * SHM_RING_SLOT)
		return -1;
	struct shm_ring_ctrl *c = mem;
	*r = (struct shm_ring){ .ctrl = c, .slots = (uint8_t *)mem + SHM_RING_CTRL,
				.nslots = (bytes - SHM_RING_CTRL) / SHM_RING_SLOT };
	store_release(&c->magic, 0);
	c->version = SHM_RING_VERSION;
	c->slot_size = SHM_RING_SLOT;
	c->nslots = r->nslots;
	c->prod = 0;
	c->cons = 0;
	touch(r->slots, r->nslots * SHM_RING_SLOT);
	store_release(&c->magic, SHM_RING_MAGIC);
	return 0;
}

int shm_ring_attach(struct shm_ring *r, void *mem, uint64_t bytes, uint64_t timeout_ns)
{
	struct shm_ring_ctrl *c = mem;
	uint64_t start = time_ns();
	while (load_acquire(&c->magic) != SHM_RING_MAGIC) {
		if (time_ns() - start >= timeout_ns)
			return -1;
		sleep_ms(1);
	}
	uint64_t n = __atomic_load_n(&c->nslots, __ATOMIC_RELAXED);
	if (c->version != SHM_RING_VERSION || c->slot_size != SHM_RING_SLOT || n < 2 ||
	    bytes < SHM_RING_CTRL || n > (bytes - SHM_RING_CTRL) / SHM_RING_SLOT) {
		kprintf("ivshmem: ring version %u, %u-byte slots, %lu slots: not what this side speaks\n", c->version,
			c->slot_size, (unsigned long)n);
		return -1;
	}
	*r = (struct shm_ring){ .ctrl = c, .slots = (uint8_t *)mem + SHM_RING_CTRL, .nslots = n };
	touch(r->slots, n * SHM_RING_SLOT); /* nothing is published yet */
	return 0;
}

uint32_t shm_ring_max_msg(const struct shm_ring *r)
{
	uint64_t max = r->nslots * SHM_RING_SLOT - sizeof(struct shm_msg_hdr);
	return max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
}

/* Waiting for the other side: spin first (it runs on another CPU and is
 * usually about to move), then sleep in short steps. */
struct backoff {
	uint64_t start, timeout;
};

static bool backoff(struct backoff *b)
{
	uint64_t waited = time_ns() - b->start;
	if (waited >= b->timeout)
		return false;
	if (waited < SPIN_NS)
		cpu_relax();
	else
		sleep_ns(BACKOFF_NS);
	return true;
}

/* Sender: waits until `need` slots past head are free. */
static bool wait_room(struct shm_ring *r, uint64_t need, struct backoff *b)
{
	bool counted = false;
	while (r->nslots - (r->head - r->seen) < need) {
		uint64_t cons = load_acquire(&r->ctrl->cons);
		if (cons > r->head || r->head - cons > r->nslots)
			return broken(r, "consumer index", cons);
		r->seen = cons;
		if (r->nslots - (r->head - cons) >= need)
			break;
		if (!counted) {
			r->full_waits++;
			counted = true;
		}
		if (!backoff(b))
			return false;
	}
	return true;
}

static void put_hdr(struct shm_ring *r, uint64_t p, uint32_t len, uint32_t flags)
{
	*hdr_at(r, p) = (struct shm_msg_hdr){ len, flags, r->head };
}

int shm_ring_send(struct shm_ring *r, const void *buf, uint32_t len, uint64_t timeout_ns)
{
	uint64_t k = slots_for(len);
	struct backoff b = { time_ns(), timeout_ns };
	if (k > r->nslots)
		return -1;
	if (r->broken)
		return -2;
	uint64_t p = r->head % r->nslots;
	if (p + k > r->nslots) {
		/* No wrapping inside a message: pad to the end of the ring. */
		uint64_t pad = r->nslots - p;
		if (!wait_room(r, pad, &b))
			return -2;
		put_hdr(r, p, 0, SHM_MSG_PAD);
		r->head += pad;
		store_release(&r->ctrl->prod, r->head);
		p = 0;
	}
	if (!wait_room(r, k, &b))
		return -2;
	put_hdr(r, p, len, 0);
	memcpy(hdr_at(r, p) + 1, buf, len);
	r->head += k;
	store_release(&r->ctrl->prod, r->head);
	return 0;
}

bool shm_ring_poll(struct shm_ring *r, struct shm_msg *m)
{
	for (;;) {
		if (r->broken)
			return false;
		if (r->head == r->seen) {
			uint64_t prod = load_acquire(&r->ctrl->prod);
			if (prod == r->head)
				return false;
			if (prod < r->head || prod - r->head > r->nslots)
				return broken(r, "producer index", prod);
			r->seen = prod;
		}
		uint64_t p = r->head % r->nslots;
		struct shm_msg_hdr *h = hdr_at(r, p);
		uint32_t len = __atomic_load_n(&h->len, __ATOMIC_RELAXED);
		uint32_t flags = __atomic_load_n(&h->flags, __ATOMIC_RELAXED);
		uint64_t pos = __atomic_load_n(&h->pos, __ATOMIC_RELAXED);
		if (pos != r->head)
			return broken(r, "record for slot", pos);
		uint64_t k = flags & SHM_MSG_PAD ? r->nslots - p : slots_for(len);
		if (p + k > r->nslots || k > r->seen - r->head)
			return broken(r, "record of slots", k);
		if (!(flags & SHM_MSG_PAD)) {
			*m = (struct shm_msg){ (const uint8_t *)(h + 1), len, r->head, k };
			return true;
		}
		r->head += k;
		store_release(&r->ctrl->cons, r->head);
	}
}

void shm_ring_release(struct shm_ring *r, const struct shm_msg *m)
{
	if (m->pos != r->head)
		return; /* not the message at the head: nothing to give back */
	r->head += m->slots;
	store_release(&r->ctrl->cons, r->head);
}

void shm_ring_close(struct shm_ring *r)
{
	if (r->ctrl)
		store_release(&r->ctrl->magic, 0);
}

/* The apps' transport: ring `side` carries what that side sends (ring 0 the
 * initiator's, ring 1 the responder's). */
static struct shm_ring tx, rx;
static struct shm_msg cur;       /* the message being read */

int ivshmem_msg_open(unsigned side, uint64_t timeout_ns)
{
	if (ivshmem_open() < 0) {
		kprintf("ivshmem: no usable ivshmem device\n");
		return -1;
	}
	uint64_t half = size / 2;
	uint8_t *ring[2] = { base, base + half };
	if (shm_ring_create(&rx, ring[!side], half) < 0) {
		kprintf("ivshmem: %lu bytes of shared memory is too small for two rings\n", (unsigned long)size);
		return -1;
	}
	if (shm_ring_attach(&tx, ring[!!side], half, timeout_ns) < 0) {
		kprintf("ivshmem: the peer did not set up its ring within %lu ms\n", (unsigned long)(timeout_ns / 1000000));
		return -1;
	}
	pr_info("ivshmem: two rings of %lu slots, messages up to %u bytes\n", (unsigned long)rx.nslots,
		shm_ring_max_msg(&tx));
	return 0;
}

uint32_t ivshmem_msg_max(void)
{
	return tx.ctrl ? shm_ring_max_msg(&tx) : 0;
}

int ivshmem_msg_send(const void *buf, uint32_t len, uint64_t timeout_ns)
{
	return tx.ctrl ? shm_ring_send(&tx, buf, len, timeout_ns) : -2;
}

bool ivshmem_msg_recv(struct msg *m, uint64_t timeout_ns)
{
	uint64_t start = time_ns();
	if (!rx.ctrl)
		return false;
	while (!shm_ring_poll(&rx, &cur)) {
		if (rx.broken || time_ns() - start >= timeout_ns)
			return false;
		cpu_relax();
	}
	*m = (struct msg){ .len = cur.len, .data = cur.data, .priv = &cur };
	return true;
}

void ivshmem_msg_release(struct msg *m)
{
	if (m->priv == &cur)
		shm_ring_release(&rx, &cur);
	m->priv = NULL;
}

uint64_t ivshmem_msg_full_waits(void)
{
	return tx.full_waits;
}

void ivshmem_msg_close(void)
{
	shm_ring_close(&rx);
}
