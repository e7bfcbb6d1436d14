/* libFuzzer target: the ACPI sleep registers (devices/acpi_pm.c) and the
 * debug-exit port beside them: any value and width at and around ports
 * 0x600-0x601 and 0x501; S5 stops the VM, other sleep states are refused. */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4}]}"
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
	uint8_t what = fz_u8(f);
	uint16_t port = what & 0x80 ? (uint16_t)(0x4fe + fz_u8(f) % 6) : (uint16_t)(0x5fe + fz_u8(f) % 6);
	unsigned w = what & 0x40 ? fz_width(f) : 1;
	if (what & 1)
		tv_pio_write(c->vm, port, w, fz_u32(f));
	else
		tv_pio_read(c->vm, port, w);
}
