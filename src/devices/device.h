/* What every device has: a name, counters that the run summary reports, and
 * an ops table. Devices reach guest memory only through vmm/memory.h and
 * raise interrupts only through vmm/irq.h. */
#ifndef FERRY_DEVICE_H
#define FERRY_DEVICE_H

#include <stdatomic.h>
#include <stdint.h>

#include "vmm/log.h"

struct vm;
struct device;
struct cJSON;

struct device_counters {
	atomic_ulong exits;       /* guest accesses that trapped to this device */
	atomic_ulong interrupts;  /* interrupts raised to the guest */
	atomic_ulong bytes;       /* payload bytes moved */
	atomic_ulong rejected;    /* guest requests refused (bad address, length, index) */
};

struct device_ops {
	/* Adds device-specific counters beside exits/interrupts/bytes/rejected. */
	void (*counters_json)(struct device *dev, struct cJSON *obj);
	/* Releases everything; called once, after all vCPUs have stopped. */
	void (*destroy)(struct device *dev);
};

struct device {
	char name[32];             /* unique within the VM, e.g. "virtio-rng" */
	const struct device_ops *ops;
	struct vm *vm;
	struct device_counters ctr;
	struct log_limit reject_log;
	struct device *next;       /* the VM's device list */
};

/* Counts a refused guest request and logs it, rate-limited, with the VM and
 * device name in front. */
void device_reject(struct device *dev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
