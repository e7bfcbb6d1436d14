/* libFuzzer target: cpu-reserve (devices/cpu_reserve.c): the driver's
 * acknowledgements in config space (parked count, mask, generation) at any
 * offset and width, against the host's requests changing under it. */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"vcpus\":4,\"devices\":[{\"type\":\"cpu-reserve\"}]}]}"
#define FUZZ_HAS_CUSTOM
#include "devices/cpu_reserve.h"
#include "ferry/cpu_reserve.h"
#include "fuzz_device.h"

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	c->slot = fz_virtio(c, c->vm, VIRTIO_ID_VCPU_RESERVE, fz_u8(f) != 0xff);
	return c->slot < 0 ? -1 : 0;
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = &c->drv[0];
	struct cpu_reserve_status st;
	switch (fz_u8(f) % 3) {
	case 0:
		cpu_reserve_request(c->vm, fz_u8(f) % 6);
		break;
	case 1: { /* an honest acknowledgement of what is asked, or a lie */
		uint32_t gen = (uint32_t)tv_mmio_read(c->vm, d->device + offsetof(struct cpu_reserve_config, generation), 4);
		uint32_t req = (uint32_t)tv_mmio_read(c->vm, d->device + offsetof(struct cpu_reserve_config, requested), 4);
		uint64_t mask = fz_u8(f) & 1 || req >= 63 ? fz_u64(f) : ((1ull << req) - 1) << 1;
		tv_mmio_write(c->vm, d->device + offsetof(struct cpu_reserve_config, parked), 4, fz_u8(f) & 1 ? fz_u32(f) : req);
		tv_mmio_write(c->vm, d->device + offsetof(struct cpu_reserve_config, parked_mask_lo), 4, (uint32_t)mask);
		tv_mmio_write(c->vm, d->device + offsetof(struct cpu_reserve_config, parked_mask_hi), 4, (uint32_t)(mask >> 32));
		tv_mmio_write(c->vm, d->device + offsetof(struct cpu_reserve_config, ack_generation), 4,
			      fz_u8(f) & 1 ? fz_u32(f) : gen);
		break;
	}
	default:
		cpu_reserve_get_status(c->vm, &st);
		break;
	}
}
