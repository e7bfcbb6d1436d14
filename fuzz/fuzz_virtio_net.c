/* libFuzzer target: virtio-net (devices/virtio_net.c) on a network of two
 * VMs (host/net_switch.c) with the zero-copy feature: frames of any length
 * and any source MAC (spoofed, multicast) on queue pair 0, receive buffers
 * of any shape or none, the channels' doorbells, the channel configuration,
 * ring indices written as a liar writes them in the transmit areas, writes
 * into the read-only receive areas, and the switch's timer binding,
 * draining and unbinding channels. Both VMs are driven. */
#define FUZZ_CONFIG "{\"networks\":{\"n\":{\"mtu\":1500}},\"vms\":[" \
	"{\"name\":\"a\",\"memory_mib\":4,\"nics\":[{\"network\":\"n\",\"mac\":\"02:00:00:00:00:0a\"}]}," \
	"{\"name\":\"b\",\"memory_mib\":4,\"nics\":[{\"network\":\"n\",\"mac\":\"02:00:00:00:00:0b\"}]}]}"
#define FUZZ_HAS_CUSTOM
#include "ferry/virtio_net.h"
#include "fuzz_device.h"

static const uint8_t macs[4][6] = {
	{ 2, 0, 0, 0, 0, 0x0a }, { 2, 0, 0, 0, 0, 0x0b }, { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, { 2, 0, 0, 0, 0, 0x0c },
};

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	c->features |= 1ull << VIRTIO_NET_F_MAC;
	if (!(fz_u8(f) & 0x80))
		c->features |= 1ull << VIRTIO_NET_F_FERRY_ZC;
	c->slot = fz_virtio(c, c->tv.vm[0], VIRTIO_ID_NET, fz_u8(f) != 0xff);
	if (c->slot < 0 || fz_virtio(c, c->tv.vm[1], VIRTIO_ID_NET, true) < 0)
		return -1;
	c->window = tv_pci_bar(c->vm, (unsigned)c->slot, FERRY_ZC_BAR);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned k = 0; k < 4; k++) {
			struct tv_buf b = { FZ_BUF_GPA + 0x80000 + 0x800 * k, 0x800, true };
			tv_virtio_post(&c->drv[i], VIRTIO_NET_RXQ(0), &b, 1);
		}
	return 0;
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	unsigned who = fz_u8(f) & 1;
	struct tv_virtio *d = &c->drv[who];
	struct vm *vm = d->vm;
	uint64_t window = tv_pci_bar(vm, (unsigned)d->slot, FERRY_ZC_BAR);
	uint8_t what = fz_u8(f);
	switch (what % 5) {
	case 0:
	case 1: { /* a frame: header, destination, source (maybe not ours), length */
		uint32_t len = fz_u8(f) & 1 ? fz_u16(f) % 9100 : 60 + fz_u16(f) % 1500;
		uint8_t *p = tv_ram(vm, FZ_BUF_GPA, 12 + 9100);
		memset(p, 0, 12);
		if (fz_u8(f) == 0xff)
			p[0] = fz_u8(f); /* offload flags not offered */
		memcpy(p + 12, macs[fz_u8(f) % 4], 6);
		memcpy(p + 18, fz_u8(f) & 1 ? macs[fz_u8(f) % 4] : macs[who], 6);
		for (unsigned i = 24; i < 40; i++)
			p[i] = fz_u8(f);
		struct tv_buf b[2] = { { FZ_BUF_GPA, 12, false }, { FZ_BUF_GPA + 12, len, false } };
		if (fz_u8(f) & 1)
			tv_virtio_post(d, VIRTIO_NET_TXQ(0), b, 2);
		else {
			b[0].len = 12 + len;
			tv_virtio_post(d, VIRTIO_NET_TXQ(0), b, 1);
		}
		tv_virtio_notify(d, VIRTIO_NET_TXQ(0));
		break;
	}
	case 2: { /* a receive buffer, maybe useless */
		struct tv_buf b = { fz_u8(f) & 1 ? fz_addr(c, f) : FZ_BUF_GPA + 0x80000 + (fz_u8(f) % 32) * 0x800ull,
				    fz_u8(f) & 1 ? fz_len(f) : 0x800, fz_u8(f) != 0xff };
		tv_virtio_post(d, VIRTIO_NET_RXQ(0), &b, 1);
		break;
	}
	case 3: { /* a channel's ring header or slot, as its writer may lie */
		unsigned ch = fz_u8(f) % FERRY_ZC_CHANNELS;
		uint64_t off = FERRY_ZC_TX_OFFSET(ch) + (fz_u8(f) & 1 ? fz_u8(f) % 64 & ~3u : (FERRY_ZC_SLOTS_OFFSET + fz_u16(f) % 0x8000) & ~3u);
		uint32_t *p = tv_guest_ptr(vm, window + off, 4);
		if (p)
			*p = fz_u8(f) & 1 ? fz_u32(f) : *p + fz_u8(f) % 4;
		if (fz_u8(f) & 1) /* the receive area: read-only, so it exits */
			tv_mmio_write(vm, window + FERRY_ZC_RX_OFFSET(ch) + (fz_u16(f) & 0xffc), 4, fz_u32(f));
		break;
	}
	default: /* doorbells, and a look at the channel configuration */
		tv_virtio_notify(d, FERRY_ZC_DOORBELL_QUEUE + fz_u8(f) % (FERRY_ZC_CHANNELS + 2));
		if (d->device)
			tv_mmio_read(vm, d->device + FERRY_ZC_CFG_OFFSET + fz_u8(f) % 112, fz_width(f));
		break;
	}
}
