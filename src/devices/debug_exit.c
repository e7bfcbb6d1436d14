#include "devices/debug_exit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/device.h"
#include "ferry/debug_exit.h"
#include "vmm/vm.h"

static void debug_exit_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct device *dev = opaque;
	(void)off;
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	/* Like QEMU's device, only the low byte counts, whatever the width. */
	vm_stop(dev->vm, VM_EXIT_POWEROFF, data[0], NULL);
}

/* The heartbeat: the exit itself is the point (vmm.c's watchdog counts
 * exits); the bus counts it as this device's. */
static void heartbeat_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	(void)opaque;
	(void)off;
	if (!is_write)
		memset(data, 0, len);
}

static void debug_exit_destroy(struct device *dev)
{
	free(dev);
}

static const struct device_ops debug_exit_ops = {
	.destroy = debug_exit_destroy,
};

int debug_exit_create(struct vm *vm, char *err, size_t errlen)
{
	struct device *dev = calloc(1, sizeof(*dev));
	if (!dev) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(dev->name, sizeof(dev->name), "debug-exit");
	dev->ops = &debug_exit_ops;
	dev->vm = vm;
	if (bus_register(&vm->pio, FERRY_DEBUG_EXIT_PORT, 1, debug_exit_io, dev, dev) < 0) {
		snprintf(err, errlen, "debug-exit: I/O port 0x%x already taken", FERRY_DEBUG_EXIT_PORT);
		free(dev);
		return -1;
	}
	if (bus_register(&vm->pio, FERRY_HEARTBEAT_PORT, 1, heartbeat_io, dev, dev) < 0) {
		snprintf(err, errlen, "debug-exit: I/O port 0x%x already taken", FERRY_HEARTBEAT_PORT);
		bus_unregister(&vm->pio, FERRY_DEBUG_EXIT_PORT, dev);
		free(dev);
		return -1;
	}
	vm_add_device(vm, dev);
	return 0;
}
