/* libFuzzer target: virtio-balloon (devices/virtio_balloon.c): inflate and
 * deflate lists naming any frame (RAM, outside RAM, twice, beyond the
 * target), statistics buffers, free page reporting ranges of any size and
 * alignment, the target set by the host, 'actual' written by the guest, the
 * statistics timer and the audit of pages written after inflating. */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"devices\":[{\"type\":\"virtio-balloon\",\"stats_ms\":10}]}]}"
#define FUZZ_HAS_CUSTOM
#include "devices/virtio_balloon.h"
#include "fuzz_device.h"

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	c->features |= 1ull << VIRTIO_BALLOON_F_STATS_VQ | 1ull << VIRTIO_BALLOON_F_REPORTING;
	c->slot = fz_virtio(c, c->vm, VIRTIO_ID_BALLOON, fz_u8(f) != 0xff);
	balloon_set_target(c->vm, fz_u16(f) % 2048);
	return c->slot < 0 ? -1 : 0;
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	struct tv_virtio *d = &c->drv[0];
	uint8_t what = fz_u8(f);
	switch (what % 5) {
	case 0:
	case 1: { /* inflate or deflate: a list of frame numbers */
		unsigned n = fz_u8(f) % 64 + 1;
		uint32_t *pfn = tv_ram(c->vm, FZ_BUF_GPA, 4 * n);
		uint32_t base = fz_u8(f) & 1 ? fz_u32(f) : fz_u16(f) % 1100;
		for (unsigned i = 0; i < n; i++)
			pfn[i] = fz_u8(f) & 1 ? fz_u32(f) : base + (fz_u8(f) & 1 ? 0 : i);
		struct tv_buf b = { FZ_BUF_GPA, 4 * n + (fz_u8(f) == 0xff ? 1 : 0), false };
		tv_virtio_post(d, what % 2, &b, 1);
		tv_virtio_notify(d, what % 2);
		break;
	}
	case 2: { /* statistics: tags known and unknown */
		uint8_t *s = tv_ram(c->vm, FZ_BUF_GPA + 0x10000, 10 * 16);
		for (unsigned i = 0; i < 160; i++)
			s[i] = fz_u8(f);
		struct tv_buf b = { FZ_BUF_GPA + 0x10000, fz_u8(f) % 161, false };
		tv_virtio_post(d, 2, &b, 1);
		tv_virtio_notify(d, 2);
		break;
	}
	case 3: { /* free page reporting: ranges the guest may or may not own */
		struct tv_buf b[4];
		unsigned n = fz_u8(f) % 4 + 1;
		for (unsigned i = 0; i < n; i++) {
			b[i].gpa = fz_u8(f) & 1 ? (uint64_t)(fz_u16(f) % 1100) << 12 : fz_addr(c, f);
			b[i].len = fz_u8(f) & 1 ? (uint32_t)(fz_u8(f) % 64) << 12 : fz_len(f);
			b[i].writable = fz_u8(f) & 1;
		}
		tv_virtio_post(d, 3, b, n);
		tv_virtio_notify(d, 3);
		break;
	}
	default: /* the host changes its mind; the guest writes ballooned pages */
		balloon_set_target(c->vm, fz_u16(f) % 2048);
		if (fz_u8(f) & 1) {
			uint8_t *p = tv_ram(c->vm, (uint64_t)(fz_u16(f) % 1024) << 12, 1);
			if (p)
				*p = 1;
		}
		break;
	}
}
