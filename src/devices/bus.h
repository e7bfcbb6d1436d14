/* An address space of trapped guest accesses (port I/O or MMIO) mapped to
 * device handlers. A handler sees offsets relative to its range, so a PCI BAR
 * can move without the device noticing. */
#ifndef FERRY_BUS_H
#define FERRY_BUS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/log.h"

struct device;

/* data holds len (1..8) bytes, little-endian; for reads the handler fills it. */
typedef void (*io_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

struct bus_range {
	uint64_t base;
	uint64_t len;
	io_handler_fn fn;
	void *opaque;
	struct device *dev;   /* whose exit counter this range bumps; may be NULL */
};

struct io_bus {
	const char *name;     /* "pio" or "mmio", for messages */
	pthread_rwlock_t lock;
	struct bus_range *ranges;  /* sorted by base, non-overlapping */
	unsigned nr, cap;
	atomic_ulong unhandled;    /* accesses that hit no device */
	struct log_limit unhandled_log;
};

void bus_init(struct io_bus *bus, const char *name);
void bus_destroy(struct io_bus *bus);
/* -1 if the range is empty, wraps, or overlaps one already there. */
int bus_register(struct io_bus *bus, uint64_t base, uint64_t len, io_handler_fn fn,
		 void *opaque, struct device *dev);
/* Removes the range that starts at base and belongs to opaque. */
int bus_unregister(struct io_bus *bus, uint64_t base, void *opaque);
/* Runs the handler whose range holds all of [addr, addr + len). Returns false
 * (reads see all ones) when no device claims the access. */
bool bus_dispatch(struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif
