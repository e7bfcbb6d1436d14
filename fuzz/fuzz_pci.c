/* libFuzzer target: PCI configuration space through mechanism #1 and ECAM
 * (devices/pci.c, pci_ecam.c): every register of every slot, BAR sizing,
 * BARs moved anywhere (onto RAM, onto each other, onto ECAM, the LAPIC, the
 * top of the address space), memory decoding switched on and off, and the
 * devices behind the BARs still answering afterwards. */
#define FUZZ_CONFIG "{\"networks\":{\"n\":{\"shm\":true}},\"vms\":[{\"name\":\"a\",\"memory_mib\":4," \
	"\"devices\":[{\"type\":\"virtio-rng\"},{\"type\":\"msgq\",\"send_slots\":4,\"recv_slots\":4}]," \
	"\"nics\":[{\"network\":\"n\"}]},{\"name\":\"b\",\"memory_mib\":4,\"nics\":[{\"network\":\"n\"}]}]," \
	"\"msgq\":{\"copy_threshold\":4096}}"
#define FUZZ_HAS_CUSTOM
#include "fuzz_device.h"

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	c->slot = (int)(fz_u8(f) % 8);
	return 0;
}

static uint64_t interesting_addr(struct fz_ctx *c, struct fz *f)
{
	switch (fz_u8(f) % 8) {
	case 0:
		return fz_u32(f) % FZ_RAM & ~0xfffull;                 /* onto RAM */
	case 1:
		return tv_pci_bar(c->vm, fz_u8(f) % 8, fz_u8(f) % 6); /* onto another BAR */
	case 2:
		return FERRY_PCI_ECAM_GPA;
	case 3:
		return 0xfee00000ull;
	case 4:
		return ~0ull << (fz_u8(f) % 64);                        /* the top */
	case 5:
		return 0;
	default:
		return fz_u64(f);
	}
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	unsigned slot = fz_u8(f) % 8, bar = fz_u8(f) % 6;
	uint32_t reg = PCI_BAR0 + 4 * bar;
	switch (fz_u8(f) % 4) {
	case 0: /* sizing, as firmware and Linux do it */
		tv_cfg_write(c->vm, slot, PCI_COMMAND, 2, 0);
		tv_cfg_write(c->vm, slot, reg, 4, 0xffffffffu);
		tv_cfg_read(c->vm, slot, reg, 4);
		tv_cfg_write(c->vm, slot, reg + 4, 4, 0xffffffffu);
		tv_cfg_read(c->vm, slot, reg + 4, 4);
		if (fz_u8(f) & 1)
			tv_cfg_write(c->vm, slot, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
		break;
	case 1: { /* move it */
		uint64_t a = interesting_addr(c, f);
		tv_cfg_write(c->vm, slot, reg, 4, (uint32_t)a);
		tv_cfg_write(c->vm, slot, reg + 4, 4, (uint32_t)(a >> 32));
		tv_cfg_write(c->vm, slot, PCI_COMMAND, 2, fz_u8(f) & 1 ? PCI_COMMAND_MEMORY : 0);
		break;
	}
	case 2: /* touch what is there now */
		for (unsigned b = 0; b < 6; b++) {
			uint64_t a = tv_pci_bar(c->vm, slot, b) + (fz_u16(f) & 0xffc);
			tv_mmio_read(c->vm, a, 4);
			tv_mmio_write(c->vm, a, 4, fz_u32(f));
		}
		break;
	default: /* a sweep of one function's registers, every width */
		for (uint32_t off = 0; off < 256; off++)
			for (unsigned w = 1; w <= 4; w++)
				if (fz_u8(f) & 1)
					tv_cfg_write(c->vm, slot, off, w, fz_u32(f));
				else
					tv_cfg_read(c->vm, slot, off, w);
		break;
	}
}
