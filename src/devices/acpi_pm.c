#include "devices/acpi_pm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "ferry/layout.h"
#include "vmm/vm.h"

/* Sleep control register (ACPI 6.x, 4.8.3.7): SLP_TYP in bits 4:2, SLP_EN
 * in bit 5. Sleep status: WAK_STS in bit 7, write 1 to clear. */
#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK  0x7
#define SLP_EN        0x20

enum acpi_sleep_request acpi_sleep_decode(uint8_t v)
{
	if (!(v & SLP_EN))
		return ACPI_SLEEP_NONE;
	return ((v >> SLP_TYP_SHIFT) & SLP_TYP_MASK) == FERRY_ACPI_S5_TYPE ? ACPI_SLEEP_S5
									    : ACPI_SLEEP_UNSUPPORTED;
}

static void acpi_pm_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct device *dev = opaque;
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		device_reject(dev, "%u-byte access at offset %llu (byte registers)", len, (unsigned long long)off);
		return;
	}
	if (!is_write) {
		data[0] = 0; /* control reads back 0; status: never woken */
		return;
	}
	if (off != 0)
		return; /* status: clearing WAK_STS needs nothing */
	switch (acpi_sleep_decode(data[0])) {
	case ACPI_SLEEP_S5:
		vm_stop(dev->vm, VM_EXIT_POWEROFF, 0, NULL);
		break;
	case ACPI_SLEEP_UNSUPPORTED:
		device_reject(dev, "sleep state with SLP_TYP %u: only S5 (%u) is supported",
			      (data[0] >> SLP_TYP_SHIFT) & SLP_TYP_MASK, FERRY_ACPI_S5_TYPE);
		break;
	case ACPI_SLEEP_NONE:
		break;
	}
}

static void acpi_pm_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops acpi_pm_ops = {
	.destroy = acpi_pm_destroy,
};

int acpi_pm_create(struct vm *vm, char *err, size_t errlen)
{
	_Static_assert(FERRY_ACPI_SLEEP_STS_PORT == FERRY_ACPI_SLEEP_CTL_PORT + 1, "one range of two ports");
	struct device *dev = calloc(1, sizeof(*dev));
	if (!dev) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(dev->name, sizeof(dev->name), "acpi-pm");
	dev->ops = &acpi_pm_ops;
	dev->vm = vm;
	if (bus_register(&vm->pio, FERRY_ACPI_SLEEP_CTL_PORT, 2, acpi_pm_io, dev, dev) < 0) {
		snprintf(err, errlen, "acpi-pm: I/O ports 0x%x-0x%x already taken", FERRY_ACPI_SLEEP_CTL_PORT,
			 FERRY_ACPI_SLEEP_STS_PORT);
		free(dev);
		return -1;
	}
	vm_add_device(vm, dev);
	return 0;
}
