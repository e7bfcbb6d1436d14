/* libFuzzer target: ivshmem (devices/ivshmem.c, host/link.c) in a link of
 * three VMs: its registers at every offset and width, doorbells to every
 * peer id and vector (itself, peers that exist, that do not, that have no
 * MSI-X on), IVPosition, BAR 2 (the link's memory) moved around. */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4},{\"name\":\"b\",\"memory_mib\":4}," \
	"{\"name\":\"c\",\"memory_mib\":4}],\"links\":[{\"vms\":[\"a\",\"b\"],\"size_mib\":2}]}"
#define FUZZ_HAS_CUSTOM
#include "ferry/ivshmem.h"
#include "fuzz_device.h"

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	c->slot = tv_pci_find(c->vm, IVSHMEM_PCI_VENDOR, IVSHMEM_PCI_DEVICE, 0);
	if (c->slot < 0)
		return -1;
	/* b's MSI-X as a driver leaves it, unless the input says otherwise. */
	struct vm *b = c->tv.vm[1];
	int bs = tv_pci_find(b, IVSHMEM_PCI_VENDOR, IVSHMEM_PCI_DEVICE, 0);
	uint8_t mode = fz_u8(f);
	if (bs >= 0 && mode & 1) {
		uint8_t cap = tv_pci_cap(b, (unsigned)bs, PCI_CAP_ID_MSIX, 0);
		tv_cfg_write(b, (unsigned)bs, cap + PCI_MSIX_CTRL, 2, PCI_MSIX_CTRL_ENABLE);
		uint64_t t = tv_pci_bar(b, (unsigned)bs, IVSHMEM_MSIX_BAR);
		for (unsigned v = 0; v < 4; v++) {
			tv_mmio_write(b, t + 16 * v, 4, 0xfee00000u);
			tv_mmio_write(b, t + 16 * v + 8, 4, 0x50 + v);
			tv_mmio_write(b, t + 16 * v + 12, 4, mode & 2 ? 1 : 0);
		}
	}
	return 0;
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	uint64_t regs = tv_pci_bar(c->vm, (unsigned)c->slot, IVSHMEM_REG_BAR);
	switch (fz_u8(f) % 3) {
	case 0: /* the doorbell, with any peer and vector */
		tv_mmio_write(c->vm, regs + IVSHMEM_DOORBELL, 4,
			      fz_u8(f) & 1 ? fz_u32(f) : IVSHMEM_DOORBELL_VALUE(fz_u8(f) % 4, fz_u8(f) % 6));
		tv_interrupts(c->tv.vm[1]);
		break;
	case 1: { /* any register, any width */
		uint64_t off = fz_u16(f) % 0x120;
		unsigned w = fz_width(f);
		if (fz_u8(f) & 1)
			tv_mmio_write(c->vm, regs + off, w, fz_u64(f));
		else
			tv_mmio_read(c->vm, regs + off, w);
		break;
	}
	default: { /* the shared memory: touched where it is now */
		uint64_t mem = tv_pci_bar(c->vm, (unsigned)c->slot, IVSHMEM_MEM_BAR);
		uint8_t *p = tv_guest_ptr(c->vm, mem + (fz_u32(f) % (2u << 20)), 1);
		if (p)
			*p = fz_u8(f);
		break;
	}
	}
}
