/* libFuzzer target: the virtio-pci transport of every virtio device ferry
 * has (rng, balloon, msgq, cpu-reserve, net): the common configuration and
 * the device configuration at every offset with every width, the ISR, the
 * notify region, the PCI configuration window (VIRTIO_PCI_CAP_PCI_CFG),
 * feature negotiation and reset in any order, driver or not. */
#define FUZZ_CONFIG "{\"networks\":{\"n\":{}},\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"vcpus\":2," \
	"\"devices\":[{\"type\":\"virtio-rng\"},{\"type\":\"virtio-balloon\"},{\"type\":\"cpu-reserve\"}," \
	"{\"type\":\"msgq\",\"send_slots\":4,\"recv_slots\":4,\"peers\":[\"b\"]}],\"nics\":[{\"network\":\"n\"}]},{\"name\":\"b\",\"memory_mib\":2,\"devices\":[{\"type\":\"msgq\",\"send_slots\":4,\"recv_slots\":4}]}]," \
	"\"msgq\":{\"copy_threshold\":4096}}"
#define FUZZ_HAS_CUSTOM
#include "ferry/msgq.h"
#include "fuzz_device.h"

static const uint16_t types[] = { VIRTIO_ID_RNG, VIRTIO_ID_BALLOON, 0xf8 /* cpu-reserve */, VIRTIO_ID_MSGQ,
				  VIRTIO_ID_NET };

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	uint8_t pick = fz_u8(f);
	uint16_t type = types[pick % 5];
	/* Half the inputs start with no driver at all: the registers as the
	 * device comes out of reset. */
	if (pick & 0x80) {
		c->slot = tv_pci_find(c->vm, PCI_VENDOR_ID_REDHAT_QUMRANET, (uint16_t)(VIRTIO_PCI_DEVICE_ID_BASE + type), 0);
		return c->slot < 0 ? -1 : 0;
	}
	c->slot = fz_virtio(c, c->vm, type, pick & 0x40);
	return c->slot < 0 ? -1 : 0;
}

/* Every offset of the common and device configuration with every width,
 * the value from the input: what a hostile driver's sweep does. */
static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	uint64_t bar = tv_pci_bar(c->vm, (unsigned)c->slot, 0);
	uint8_t what = fz_u8(f);
	uint64_t val = fz_u64(f);
	uint32_t region = (what & 3) * 0x1000u;    /* common, ISR, device, notify */
	uint32_t span = (what & 4) ? 0x1000 : 0x48;
	for (uint32_t off = 0; off < span; off++)
		for (unsigned w = 1; w <= 8; w++) {
			if (what & 8)
				tv_mmio_write(c->vm, bar + region + off, w, val);
			else
				tv_mmio_read(c->vm, bar + region + off, w);
		}
	/* The PCI configuration window: bar, offset, length, then data. */
	uint8_t cap = 0;
	while ((cap = tv_pci_cap(c->vm, (unsigned)c->slot, PCI_CAP_ID_VNDR, cap)) != 0)
		if (tv_cfg_read(c->vm, (unsigned)c->slot, cap + 3u, 1) == VIRTIO_PCI_CAP_PCI_CFG)
			break;
	if (cap) {
		tv_cfg_write(c->vm, (unsigned)c->slot, cap + 4u, 1, fz_u8(f) % 8);
		tv_cfg_write(c->vm, (unsigned)c->slot, cap + 8u, 4, fz_u32(f));
		tv_cfg_write(c->vm, (unsigned)c->slot, cap + 12u, 4, fz_u32(f));
		if (what & 16)
			tv_cfg_write(c->vm, (unsigned)c->slot, cap + 16u, fz_width(f) % 5 ? 4 : 1, fz_u32(f));
		else
			tv_cfg_read(c->vm, (unsigned)c->slot, cap + 16u, 4);
	}
}
