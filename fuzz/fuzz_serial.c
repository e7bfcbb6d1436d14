/* libFuzzer target: the 16550 UART (devices/serial.c): every port of its
 * range and around it with every width, divisor latch, loopback, the
 * transmit interrupt, and floods of output past the log's limit. */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"console_log_max_kib\":1}]}"
#define FUZZ_HAS_CUSTOM
#define FUZZ_CUSTOM_ONLY
#include "fuzz_device.h"

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	(void)c;
	(void)f;
	return 0;
}

static void fuzz_custom(struct fz_ctx *c, struct fz *f)
{
	uint16_t port = (uint16_t)(0x3f6 + fz_u8(f) % 12);
	uint8_t what = fz_u8(f);
	unsigned w = what & 0x40 ? fz_width(f) : 1;
	if (what & 0x80) { /* a flood: a line that never ends, or many that do */
		unsigned n = fz_u8(f) * 8u;
		uint8_t ch = fz_u8(f);
		for (unsigned i = 0; i < n; i++)
			tv_pio_write(c->vm, 0x3f8, 1, (what & 1) && i % 80 == 79 ? '\n' : ch);
	} else if (what & 1) {
		tv_pio_write(c->vm, port, w, fz_u32(f));
	} else {
		tv_pio_read(c->vm, port, w);
	}
	tv_line_raises(c->vm, 4);
}
