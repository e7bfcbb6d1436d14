/* The guest of the device fuzz targets. Each target builds real VMs in a
 * test VM without KVM (tests/testvm.h) from a config, brings its devices up
 * with a correct driver (the input's first bytes choose the features), and
 * then runs the rest of the input as a program of guest actions: register
 * and configuration-space accesses of every width at every offset, guest
 * memory writes, descriptor chains (sane, wild, looping, over-long), lies in
 * ring indices, notifications, MSI-X table writes, resets, event-loop turns
 * and VM exits, plus actions of the target's own (fuzz_custom). Every input
 * gets fresh VMs, so nothing carries over between inputs.
 *
 * A target defines FUZZ_CONFIG (JSON), fuzz_setup() (drivers to bring up)
 * and optionally fuzz_custom(), then includes this file. */
#ifndef FERRY_FUZZ_DEVICE_H
#define FERRY_FUZZ_DEVICE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "ferry/layout.h"
#include "ferry/pci_regs.h"
#include "ferry/virtio.h"
#include "testvm.h"
#include "vmm/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_RAM        (4u << 20)      /* every VM of a target has 4 MiB */
#define FZ_RING_GPA   0x100000ull     /* queue q's rings at + 0x10000 * q */
#define FZ_BUF_GPA    0x300000ull     /* buffers the actions point at */
#define FZ_BUF_SIZE   0x0f0000ull
#define FZ_QSIZE      64
#define FZ_MAX_DRV    2
#define FZ_MAX_OPS    512             /* actions per input: bounded time per input */

struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
	if (!f->n)
		return 0;
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	return (uint16_t)(fz_u8(f) | fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	return (uint32_t)fz_u16(f) | (uint32_t)fz_u16(f) << 16;
}

static inline uint64_t fz_u64(struct fz *f)
{
	return (uint64_t)fz_u32(f) | (uint64_t)fz_u32(f) << 32;
}

struct fz_ctx {
	struct testvm tv;
	struct tv_virtio drv[FZ_MAX_DRV];   /* virtio drivers fuzz_setup brought up */
	unsigned nr_drv;
	struct vm *vm;                      /* the VM most actions target */
	int slot;                           /* the PCI function they target */
	uint64_t window;                    /* a device window (BAR 2) to aim buffers at, or 0 */
	uint64_t features;
};

/* Provided by the target. */
static int fuzz_setup(struct fz_ctx *c, struct fz *f);
#ifdef FUZZ_HAS_CUSTOM
static void fuzz_custom(struct fz_ctx *c, struct fz *f);
#endif

/* A guest address for a buffer: mostly sane, sometimes anything. */
static inline uint64_t fz_addr(struct fz_ctx *c, struct fz *f)
{
	uint8_t kind = fz_u8(f);
	switch (kind % 8) {
	case 0:
	case 1:
	case 2:
		return FZ_BUF_GPA + fz_u32(f) % FZ_BUF_SIZE;
	case 3:
		return FZ_RAM - (fz_u8(f) & 0x3f);            /* straddles the end of RAM */
	case 4:
		return c->window ? c->window + (fz_u32(f) & 0xfffff000u) + (fz_u8(f) & 1 ? fz_u8(f) : 0)
				 : FZ_BUF_GPA;
	case 5:
		return FZ_RING_GPA + fz_u32(f) % 0x30000;     /* the rings themselves */
	case 6:
		return fz_u64(f);                             /* anything, overflows too */
	default:
		return (uint64_t)fz_u32(f) << 12;             /* any page */
	}
}

static inline uint32_t fz_len(struct fz *f)
{
	uint8_t kind = fz_u8(f);
	switch (kind % 4) {
	case 0:
		return fz_u8(f);
	case 1:
		return fz_u16(f);
	case 2:
		return 4096u << (fz_u8(f) % 4);
	default:
		return fz_u32(f);
	}
}

static inline unsigned fz_width(struct fz *f)
{
	static const unsigned w[] = { 1, 2, 4, 8, 1, 2, 4, 3, 5, 6, 7, 4 };
	return w[fz_u8(f) % (sizeof(w) / sizeof(w[0]))];
}

static inline struct tv_virtio *fz_drv(struct fz_ctx *c, struct fz *f)
{
	return c->nr_drv ? &c->drv[fz_u8(f) % c->nr_drv] : NULL;
}

static inline void fz_bar_access(struct fz_ctx *c, struct fz *f)
{
	unsigned bar = fz_u8(f) % 6;
	uint64_t base = tv_pci_bar(c->vm, (unsigned)c->slot, bar);
	uint64_t off = fz_u32(f) % 0x9000;        /* past the end of small BARs too */
	unsigned w = fz_width(f);
	if (fz_u8(f) & 1)
		tv_mmio_write(c->vm, base + off, w, fz_u64(f));
	else
		tv_mmio_read(c->vm, base + off, w);
}

static inline void fz_cfg_access(struct fz_ctx *c, struct fz *f, bool ecam)
{
	uint8_t s = fz_u8(f);
	unsigned slot = s & 0x80 ? s % 32u : (unsigned)c->slot;
	unsigned w = fz_width(f);
	bool write = fz_u8(f) & 1;
	uint32_t val = fz_u32(f);
	if (ecam) {
		uint64_t off = fz_u16(f) % 4096u, fn = fz_u8(f) & 0x10 ? fz_u8(f) % 8 : 0;
		uint64_t addr = FERRY_PCI_ECAM_GPA + ((uint64_t)slot << 15) + (fn << 12) + off;
		if (fz_u8(f) == 0xff)
			addr = FERRY_PCI_ECAM_GPA + fz_u32(f) % (FERRY_PCI_ECAM_SIZE + 16);
		if (write)
			tv_mmio_write(c->vm, addr, w, val);
		else
			tv_mmio_read(c->vm, addr, w);
		return;
	}
	uint32_t off = fz_u8(f);
	if (w > 4)
		w = 4;
	if (write)
		tv_cfg_write(c->vm, slot, off, w, val);
	else
		tv_cfg_read(c->vm, slot, off, w);
}

static inline void fz_mem_write(struct fz_ctx *c, struct fz *f)
{
	uint64_t gpa = fz_u32(f) % FZ_RAM;
	unsigned n = fz_u8(f) % 33;
	uint8_t *p = tv_ram(c->vm, gpa, n);
	for (unsigned i = 0; p && i < n; i++)
		p[i] = fz_u8(f);
}

static inline void fz_post(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = fz_drv(c, f);
	if (!d || !d->nr_queues)
		return;
	unsigned q = fz_u8(f) % d->nr_queues;
	struct tv_buf b[8];
	unsigned n = 1 + fz_u8(f) % 8;
	for (unsigned i = 0; i < n; i++) {
		b[i].gpa = fz_addr(c, f);
		b[i].len = fz_len(f);
		b[i].writable = fz_u8(f) & 1;
	}
	tv_virtio_post(d, q, b, n);
	if (fz_u8(f) & 1)
		tv_virtio_notify(d, q);
}

/* Writes one descriptor of the table as the guest likes: loops, NEXT past
 * the table, INDIRECT, any address. */
static inline void fz_raw_desc(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = fz_drv(c, f);
	if (!d || !d->nr_queues)
		return;
	struct tv_queue *q = &d->q[fz_u8(f) % d->nr_queues];
	if (!q->size)
		return;
	struct vring_desc *desc = tv_ram(d->vm, q->desc, VRING_DESC_BYTES(q->size));
	struct vring_desc *e = &desc[fz_u16(f) % q->size];
	e->addr = fz_addr(c, f);
	e->len = fz_len(f);
	e->flags = fz_u8(f) & 7;
	e->next = fz_u8(f) & 1 ? fz_u16(f) : (uint16_t)(fz_u16(f) % q->size);
}

/* Lies in the available ring: any index, any head. */
static inline void fz_avail(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = fz_drv(c, f);
	if (!d || !d->nr_queues)
		return;
	unsigned qi = fz_u8(f) % d->nr_queues;
	struct tv_queue *q = &d->q[qi];
	if (!q->size)
		return;
	struct vring_avail *a = tv_ram(d->vm, q->avail, VRING_AVAIL_BYTES(q->size) + 2);
	uint8_t what = fz_u8(f);
	if (what & 1)
		a->ring[fz_u16(f) % q->size] = fz_u16(f);
	if (what & 2)
		a->idx = fz_u16(f);
	if (what & 4)
		a->flags = fz_u16(f);
	if (what & 8)
		a->ring[q->size] = fz_u16(f); /* used_event */
	if (what & 16)
		tv_virtio_notify(d, qi);
}

static inline void fz_drain_used(struct fz_ctx *c)
{
	for (unsigned i = 0; i < c->nr_drv; i++) {
		uint32_t id, len;
		for (unsigned q = 0; q < c->drv[i].nr_queues; q++)
			for (int k = 0; k < 4096 && tv_virtio_used(&c->drv[i], q, &id, &len); k++)
				;
	}
}

static inline void fz_common(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = fz_drv(c, f);
	if (!d)
		return;
	uint32_t off = fz_u8(f) % 0x40;
	unsigned w = fz_width(f);
	if (fz_u8(f) & 1)
		tv_virtio_common_write(d, off, w, fz_u64(f));
	else
		tv_virtio_common_read(d, off, w);
}

static inline void fz_devcfg(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = fz_drv(c, f);
	if (!d || !d->device)
		return;
	uint32_t off = fz_u16(f) % 0x1100;
	unsigned w = fz_width(f);
	if (fz_u8(f) & 1)
		tv_mmio_write(d->vm, d->device + off, w, fz_u64(f));
	else
		tv_mmio_read(d->vm, d->device + off, w);
}

static inline void fz_msix(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = fz_drv(c, f);
	if (!d)
		return;
	uint64_t e = d->msix_table + (fz_u8(f) % 24) * 16ull + (fz_u8(f) % 4) * 4;
	uint32_t v = fz_u8(f) & 1 ? fz_u32(f) : fz_u8(f) & 1;   /* often just mask/unmask */
	tv_mmio_write(d->vm, e, 4, v);
}

static inline void fz_reinit(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = fz_drv(c, f);
	if (!d)
		return;
	uint16_t type = (uint16_t)(tv_cfg_read(d->vm, (unsigned)d->slot, PCI_DEVICE_ID, 2) - VIRTIO_PCI_DEVICE_ID_BASE);
	unsigned n = 0;
	for (int s = 0; s < d->slot; s++)
		n += tv_cfg_read(d->vm, (unsigned)s, PCI_DEVICE_ID, 2) == (uint32_t)(VIRTIO_PCI_DEVICE_ID_BASE + type);
	struct vm *vm = d->vm;
	tv_virtio_init(d, vm, type, n, fz_u64(f), d->q[0].desc ? d->q[0].desc : FZ_RING_GPA, FZ_QSIZE,
		       fz_u8(f) != 0xff);
}

static void fz_run(struct fz_ctx *c, struct fz *f)
{
	for (unsigned ops = 0; ops < FZ_MAX_OPS && f->n; ops++) {
#ifdef FUZZ_CUSTOM_ONLY
		fuzz_custom(c, f);
		continue;
#endif
		switch (fz_u8(f) % 16) {
		case 0:
			fz_bar_access(c, f);
			break;
		case 1:
			fz_cfg_access(c, f, false);
			break;
		case 2:
			fz_cfg_access(c, f, true);
			break;
		case 3:
			fz_mem_write(c, f);
			break;
		case 4:
		case 5:
			fz_post(c, f);
			break;
		case 6:
			/* Now and then long enough for the devices' timers. */
			tv_events(&c->tv, fz_u8(f) == 0xff ? 12 : 0);
			break;
		case 7:
			tv_pio_read(c->vm, 0x80, 1); /* an exit: runs the VM's exit hooks */
			break;
		case 8:
			fz_drain_used(c);
			break;
		case 9:
			fz_raw_desc(c, f);
			break;
		case 10:
			fz_avail(c, f);
			break;
		case 11:
			fz_common(c, f);
			break;
		case 12:
			fz_devcfg(c, f);
			break;
		case 13:
			fz_msix(c, f);
			break;
		case 14:
			if (fz_u8(f) < 16) /* rarely: a reset and a new driver */
				fz_reinit(c, f);
			break;
		default:
#ifdef FUZZ_HAS_CUSTOM
			fuzz_custom(c, f);
#else
			fz_bar_access(c, f);
#endif
			break;
		}
	}
	tv_events(&c->tv, 0);
	tv_interrupts(c->vm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz_ctx c;
	char err[512];
	log_threshold = LOG_ERROR; /* rejections (warnings) are the point: keep them quiet */
	memset(&c, 0, sizeof(c));
	if (testvm_create(&c.tv, FUZZ_CONFIG, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz: test VM: %s\n", err);
		abort();
	}
	c.vm = c.tv.vm[0];
	struct fz f = { data, size };
	c.features = fz_u64(&f);
	if (fuzz_setup(&c, &f) == 0)
		fz_run(&c, &f);
	testvm_destroy(&c.tv);
	return 0;
}

/* Helpers for fuzz_setup. */
static inline int fz_virtio(struct fz_ctx *c, struct vm *vm, uint16_t type, bool driver_ok)
{
	if (c->nr_drv == FZ_MAX_DRV)
		return -1;
	struct tv_virtio *d = &c->drv[c->nr_drv];
	if (tv_virtio_init(d, vm, type, 0, c->features, FZ_RING_GPA, FZ_QSIZE, driver_ok) < 0 && d->slot < 0)
		return -1;
	c->nr_drv++;
	return d->slot;
}

#endif
