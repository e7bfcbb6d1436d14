#include "devices/bus.h"

#include <stdlib.h>
#include <string.h>

#include "devices/device.h"

void bus_init(struct io_bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	bus->name = name;
	pthread_rwlock_init(&bus->lock, NULL);
}

void bus_destroy(struct io_bus *bus)
{
	free(bus->ranges);
	bus->ranges = NULL;
	bus->nr = bus->cap = 0;
	pthread_rwlock_destroy(&bus->lock);
}

int bus_register(struct io_bus *bus, uint64_t base, uint64_t len, io_handler_fn fn,
		 void *opaque, struct device *dev)
{
	if (len == 0 || base + len < base)
		return -1;
	pthread_rwlock_wrlock(&bus->lock);
	unsigned pos = 0;
	while (pos < bus->nr && bus->ranges[pos].base < base)
		pos++;
	bool overlaps = (pos > 0 && bus->ranges[pos - 1].base + bus->ranges[pos - 1].len > base) ||
			(pos < bus->nr && base + len > bus->ranges[pos].base);
	if (overlaps) {
		pthread_rwlock_unlock(&bus->lock);
		return -1;
	}
	if (bus->nr == bus->cap) {
		unsigned cap = bus->cap ? bus->cap * 2 : 16;
		struct bus_range *r = realloc(bus->ranges, cap * sizeof(*r));
		if (!r) {
			pthread_rwlock_unlock(&bus->lock);
			return -1;
		}
		bus->ranges = r;
		bus->cap = cap;
	}
	memmove(&bus->ranges[pos + 1], &bus->ranges[pos], (bus->nr - pos) * sizeof(*bus->ranges));
	bus->ranges[pos] = (struct bus_range){ base, len, fn, opaque, dev };
	bus->nr++;
	pthread_rwlock_unlock(&bus->lock);
	return 0;
}

int bus_unregister(struct io_bus *bus, uint64_t base, void *opaque)
{
	int ret = -1;
	pthread_rwlock_wrlock(&bus->lock);
	for (unsigned i = 0; i < bus->nr; i++) {
		if (bus->ranges[i].base == base && bus->ranges[i].opaque == opaque) {
			memmove(&bus->ranges[i], &bus->ranges[i + 1], (bus->nr - i - 1) * sizeof(*bus->ranges));
			bus->nr--;
			ret = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&bus->lock);
	return ret;
}

static const struct bus_range *bus_find(const struct io_bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->nr;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_dispatch(struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	pthread_rwlock_rdlock(&bus->lock);
	const struct bus_range *r = bus_find(bus, addr);
	/* The access must fit in the range: a guest straddling two devices
	 * reaches neither. */
	if (r && len <= r->len - (addr - r->base)) {
		struct bus_range hit = *r;
		pthread_rwlock_unlock(&bus->lock);
		if (hit.dev)
			atomic_fetch_add(&hit.dev->ctr.exits, 1);
		hit.fn(hit.opaque, addr - hit.base, data, len, is_write);
		return true;
	}
	pthread_rwlock_unlock(&bus->lock);
	atomic_fetch_add(&bus->unhandled, 1);
	if (!is_write)
		memset(data, 0xff, len);
	return false;
}
