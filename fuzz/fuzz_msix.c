/* libFuzzer target: the MSI-X capability, vector table and pending-bit
 * array (devices/pci_msix.c) of a virtio device and of ivshmem: any access
 * to the table and PBA, enable and function mask in config space, vectors
 * pointed anywhere, masked, unmasked and raised (the device interrupts as
 * it completes buffers; ivshmem doorbells raise a peer's vectors). */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"devices\":[{\"type\":\"virtio-rng\"}]}," \
	"{\"name\":\"b\",\"memory_mib\":4}],\"links\":[{\"vms\":[\"a\",\"b\"],\"size_mib\":2}]}"
#define FUZZ_HAS_CUSTOM
#include "ferry/ivshmem.h"
#include "fuzz_device.h"

static int ivshmem_slot;

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	c->slot = fz_virtio(c, c->vm, VIRTIO_ID_RNG, fz_u8(f) != 0xff);
	ivshmem_slot = tv_pci_find(c->vm, IVSHMEM_PCI_VENDOR, IVSHMEM_PCI_DEVICE, 0);
	return c->slot < 0 || ivshmem_slot < 0 ? -1 : 0;
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	bool iv = fz_u8(f) & 1;
	unsigned slot = iv ? (unsigned)ivshmem_slot : (unsigned)c->slot;
	uint8_t cap = tv_pci_cap(c->vm, slot, PCI_CAP_ID_MSIX, 0);
	uint32_t table = tv_cfg_read(c->vm, slot, cap + PCI_MSIX_TABLE, 4);
	uint32_t pba = tv_cfg_read(c->vm, slot, cap + PCI_MSIX_PBA, 4);
	uint64_t tbase = tv_pci_bar(c->vm, slot, table & 7) + (table & ~7u);
	uint64_t pbase = tv_pci_bar(c->vm, slot, pba & 7) + (pba & ~7u);
	switch (fz_u8(f) % 5) {
	case 0: { /* the table, any offset and width */
		uint64_t off = fz_u16(f) % 0x800;
		unsigned w = fz_width(f);
		if (fz_u8(f) & 1)
			tv_mmio_write(c->vm, tbase + off, w, fz_u64(f));
		else
			tv_mmio_read(c->vm, tbase + off, w);
		break;
	}
	case 1: { /* the PBA */
		uint64_t off = fz_u16(f) % 0x800;
		unsigned w = fz_width(f);
		if (fz_u8(f) & 1)
			tv_mmio_write(c->vm, pbase + off, w, fz_u64(f));
		else
			tv_mmio_read(c->vm, pbase + off, w);
		break;
	}
	case 2: /* enable, function mask, and the read-only size bits */
		tv_cfg_write(c->vm, slot, cap + PCI_MSIX_CTRL, fz_u8(f) & 1 ? 2 : 1, fz_u16(f));
		break;
	case 3: { /* raise: an ivshmem doorbell from b to a, or a completed rng buffer */
		if (iv) {
			struct vm *b = c->tv.vm[1];
			int bs = tv_pci_find(b, IVSHMEM_PCI_VENDOR, IVSHMEM_PCI_DEVICE, 0);
			tv_cfg_write(b, (unsigned)bs, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
			tv_mmio_write(b, tv_pci_bar(b, (unsigned)bs, 0) + IVSHMEM_DOORBELL, 4,
				      IVSHMEM_DOORBELL_VALUE(0, fz_u8(f) % 6));
		} else {
			struct tv_buf buf = { FZ_BUF_GPA, 16, true };
			tv_virtio_post(&c->drv[0], 0, &buf, 1);
			tv_virtio_notify(&c->drv[0], 0);
		}
		break;
	}
	default: /* an entry pointed anywhere, then raised */
		tv_mmio_write(c->vm, tbase + (fz_u8(f) % 6) * 16ull, 8, fz_u64(f));
		break;
	}
}
