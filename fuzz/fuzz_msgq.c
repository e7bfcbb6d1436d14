/* libFuzzer target: msgq (devices/msgq.c, host/msgq_switch.c) between two
 * VMs that may send to each other: sends of any header and payload (pages
 * it does not own, outside the window, unaligned, too long, to itself, to
 * VMs that do not exist), immediate and deferred (posted without a
 * doorbell, picked up at the next exit or by the poll timer), receive
 * buffers of any shape, returns of slots it holds and does not hold, and
 * resets with messages in flight. Both VMs are driven. With direct rings
 * (MSGQ_F_RINGS, when the input's features take it): any value anywhere in
 * the rings' window (its own parts and the read-only views of the peer's),
 * and the rings' doorbell. */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"devices\":[{\"type\":\"msgq\",\"send_slots\":8," \
	"\"recv_slots\":8,\"poll_us\":10,\"peers\":[\"b\"],\"rings\":true}]},{\"name\":\"b\",\"memory_mib\":4,\"devices\":" \
	"[{\"type\":\"msgq\",\"send_slots\":8,\"recv_slots\":8,\"peers\":[\"a\"],\"rings\":true}]}]," \
	"\"msgq\":{\"copy_threshold\":4096,\"ring_kib\":64}}"
#define FUZZ_HAS_CUSTOM
#include "ferry/msgq.h"
#include "fuzz_device.h"

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	uint8_t ok = fz_u8(f);
	c->slot = fz_virtio(c, c->tv.vm[0], VIRTIO_ID_MSGQ, ok != 0xff);
	if (c->slot < 0 || fz_virtio(c, c->tv.vm[1], VIRTIO_ID_MSGQ, ok != 0xfe) < 0)
		return -1;
	c->window = tv_pci_bar(c->vm, (unsigned)c->slot, MSGQ_WINDOW_BAR);
	/* Receive buffers, as a driver posts them at start. */
	for (unsigned i = 0; i < 2; i++)
		for (unsigned k = 0; k < 8; k++) {
			struct tv_buf b = { FZ_BUF_GPA + 0x80000 + 0x100 * k, sizeof(struct msgq_recv_hdr), true };
			tv_virtio_post(&c->drv[i], MSGQ_QUEUE_RECV, &b, 1);
		}
	return 0;
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	unsigned who = fz_u8(f) & 1;
	struct tv_virtio *d = &c->drv[who];
	struct vm *vm = d->vm;
	uint64_t window = tv_pci_bar(vm, (unsigned)d->slot, MSGQ_WINDOW_BAR);
	uint8_t what = fz_u8(f);
	switch (what % 4) {
	case 0:
	case 1: { /* a send: [header][payload][status] or something like it */
		struct msgq_send_hdr *h = tv_ram(vm, FZ_BUF_GPA, sizeof(*h));
		h->dest = fz_u8(f) % 4;
		h->flags = fz_u8(f) % 4 | (what & 0x10 ? MSGQ_SEND_DOORBELL : 0);
		h->len = fz_u8(f) & 1 ? fz_u32(f) : 1 + fz_u16(f) % (3 * 4096);
		h->cookie = fz_u32(f);
		unsigned slot = fz_u8(f) % 10;
		uint8_t *payload = tv_guest_ptr(vm, window + 4096ull * slot, 16);
		if (payload)
			memset(payload, fz_u8(f), 16);
		struct tv_buf b[4] = {
			{ FZ_BUF_GPA, sizeof(*h), false },
			{ fz_u8(f) & 1 ? fz_addr(c, f) : window + 4096ull * slot, fz_u8(f) & 1 ? fz_len(f) : h->len, false },
			{ FZ_BUF_GPA + 0x100, sizeof(struct msgq_send_status), true },
			{ FZ_BUF_GPA + 0x200, 8, true },
		};
		unsigned n = fz_u8(f) % 8 ? 3 : 1 + fz_u8(f) % 4;
		tv_virtio_post(d, MSGQ_QUEUE_SEND, b, n);
		if (what & 0x10)
			tv_virtio_notify(d, MSGQ_QUEUE_SEND);
		break;
	}
	case 2: { /* returns: slots it got, and others */
		unsigned n = fz_u8(f) % 6 + 1;
		struct msgq_return *r = tv_ram(vm, FZ_BUF_GPA + 0x1000, n * sizeof(*r));
		for (unsigned i = 0; i < n; i++) {
			r[i].slot = fz_u8(f) & 1 ? fz_u32(f) : fz_u8(f) % 10;
			r[i].nr_pages = fz_u8(f) & 1 ? fz_u32(f) : fz_u8(f) % 4;
		}
		struct tv_buf b = { FZ_BUF_GPA + 0x1000, (uint32_t)(n * sizeof(*r)) + (fz_u8(f) == 0xff ? 3 : 0),
				    fz_u8(f) == 0xfe };
		tv_virtio_post(d, MSGQ_QUEUE_RETURN, &b, 1);
		if (what & 0x10)
			tv_virtio_notify(d, MSGQ_QUEUE_RETURN);
		break;
	}
	default: { /* receive buffers of any shape; the received pages written */
		struct tv_buf b = { fz_u8(f) & 1 ? fz_addr(c, f) : FZ_BUF_GPA + 0x80000 + (fz_u8(f) % 64) * 0x100ull,
				    fz_u8(f) & 1 ? fz_len(f) : sizeof(struct msgq_recv_hdr), !(fz_u8(f) == 0xff) };
		tv_virtio_post(d, MSGQ_QUEUE_RECV, &b, 1);
		if (fz_u8(f) & 1)
			tv_mmio_write(vm, window + 8 * 4096ull + (fz_u16(f) % (8 * 4096)), fz_width(f), fz_u64(f));
		if (what & 0x40) { /* the rings: indices, tokens, records, views */
			uint64_t rings = tv_pci_bar(vm, (unsigned)d->slot, MSGQ_RINGS_BAR);
			uint64_t at = rings + (fz_u32(f) % (2 * (64 * 1024 + MSGQ_RING_ACK))) / 8 * 8;
			uint64_t v = fz_u8(f) & 1 ? MSGQ_RING_OPEN : fz_u64(f);
			uint64_t *p = rings ? tv_guest_ptr(vm, at, 8) : NULL;
			if (p)
				*p = v;
			else if (rings)
				tv_mmio_write(vm, at, fz_width(f), v);
			if (fz_u8(f) & 1)
				tv_virtio_notify(d, MSGQ_QUEUE_RING_DOORBELL);
		}
		break;
	}
	}
}
