#include "devices/cpu_reserve.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio.h"
#include "ferry/cpu_reserve.h"
#include "vmm/clock.h"
#include "vmm/vm.h"

struct cpu_reserve {
	struct virtio_device vd;
	struct cpu_reserve_config cfg;
	uint64_t requested_ns;      /* when the latest request went out */
	uint64_t ack_ns;            /* how long its acknowledgement took */
	uint64_t requests, acks;
	uint64_t stale_acks;        /* of a request already superseded */
};

static struct cpu_reserve *to_cr(struct virtio_device *vd)
{
	return (struct cpu_reserve *)vd;
}

/* The driver reports what it parked: parked, the mask, and last the
 * generation it has carried out. Each value is checked before it counts. */
static void cr_config_write(struct virtio_device *vd, uint32_t off, const void *data, uint32_t len)
{
	struct cpu_reserve *c = to_cr(vd);
	uint32_t v;
	if (len != 4 || off % 4 || off < offsetof(struct cpu_reserve_config, parked) ||
	    off > offsetof(struct cpu_reserve_config, ack_generation)) {
		device_reject(&vd->dev, "write of %u bytes at config offset %u (driver fields are 32-bit)", len, off);
		return;
	}
	memcpy(&v, data, 4);
	uint64_t vcpus_mask = c->cfg.nr_vcpus >= 64 ? ~0ull : (1ull << c->cfg.nr_vcpus) - 1;
	switch (off) {
	case offsetof(struct cpu_reserve_config, parked):
		if (v >= c->cfg.nr_vcpus) {
			device_reject(&vd->dev, "parked = %u of %u vCPUs (vCPU 0 never parks)", v, c->cfg.nr_vcpus);
			return;
		}
		c->cfg.parked = v;
		return;
	case offsetof(struct cpu_reserve_config, parked_mask_lo):
	case offsetof(struct cpu_reserve_config, parked_mask_hi): {
		uint64_t mask = (uint64_t)c->cfg.parked_mask_hi << 32 | c->cfg.parked_mask_lo;
		uint64_t part = off == offsetof(struct cpu_reserve_config, parked_mask_lo) ? v : (uint64_t)v << 32;
		uint64_t keep = off == offsetof(struct cpu_reserve_config, parked_mask_lo) ? mask >> 32 << 32 : mask & 0xffffffffull;
		mask = keep | part;
		if ((mask & ~vcpus_mask) || (mask & 1)) {
			device_reject(&vd->dev, "parked mask 0x%llx names vCPU 0 or vCPUs the VM lacks",
				      (unsigned long long)mask);
			return;
		}
		c->cfg.parked_mask_lo = (uint32_t)mask;
		c->cfg.parked_mask_hi = (uint32_t)(mask >> 32);
		return;
	}
	case offsetof(struct cpu_reserve_config, ack_generation): {
		uint64_t mask = (uint64_t)c->cfg.parked_mask_hi << 32 | c->cfg.parked_mask_lo;
		/* An earlier request carried out while the host made a newer one:
		 * a race, not a fault. The config-change interrupt of the newer
		 * one makes the driver act again. */
		if (v != c->cfg.generation && c->cfg.generation - v < 1u << 31) {
			c->stale_acks++;
			return;
		}
		if (v != c->cfg.generation || (uint32_t)__builtin_popcountll(mask) != c->cfg.parked) {
			device_reject(&vd->dev, "acknowledgement of generation %u (current %u) with %u parked and mask 0x%llx",
				      v, c->cfg.generation, c->cfg.parked, (unsigned long long)mask);
			return;
		}
		c->cfg.ack_generation = v;
		if (c->requested_ns) { /* generation 0, acknowledged at boot, was never asked */
			c->ack_ns = clock_ns() - c->requested_ns;
			c->acks++;
		}
		return;
	}
	default:
		device_reject(&vd->dev, "write to reserved config offset %u", off);
	}
}

static void cr_reset(struct virtio_device *vd)
{
	struct cpu_reserve *c = to_cr(vd);
	c->cfg.parked = c->cfg.parked_mask_lo = c->cfg.parked_mask_hi = 0;
	c->cfg.ack_generation = 0;
}

static void cr_counters_json(struct virtio_device *vd, cJSON *o)
{
	struct cpu_reserve *c = to_cr(vd);
	cJSON_AddNumberToObject(o, "requested", c->cfg.requested);
	cJSON_AddNumberToObject(o, "parked", c->cfg.parked);
	cJSON_AddNumberToObject(o, "requests", (double)c->requests);
	cJSON_AddNumberToObject(o, "acknowledged", (double)c->acks);
	cJSON_AddNumberToObject(o, "stale_acks", (double)c->stale_acks);
	cJSON_AddNumberToObject(o, "last_ack_ms", ns_to_ms(c->ack_ns));
}

static void cr_destroy(struct virtio_device *vd)
{
	free(to_cr(vd));
}

static const struct virtio_device_ops cr_ops = {
	.type = VIRTIO_ID_VCPU_RESERVE,
	.num_queues = 0,
	.config_size = sizeof(struct cpu_reserve_config),
	.config_write = cr_config_write,
	.reset = cr_reset,
	.counters_json = cr_counters_json,
	.destroy = cr_destroy,
};

int cpu_reserve_create(struct vm *vm, char *err, size_t errlen)
{
	struct cpu_reserve *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->cfg.nr_vcpus = vm->nr_vcpus ? vm->nr_vcpus : vm->cfg->vcpus;
	if (virtio_device_init(&c->vd, vm, "cpu-reserve", &cr_ops, &c->cfg, NULL, err, errlen) < 0) {
		free(c);
		return -1;
	}
	vm->cpu_reserve = c;
	return 0;
}

void cpu_reserve_request(struct vm *vm, uint32_t count)
{
	struct cpu_reserve *c = vm->cpu_reserve;
	if (!c)
		return;
	if (count >= c->cfg.nr_vcpus)
		count = c->cfg.nr_vcpus ? c->cfg.nr_vcpus - 1 : 0;
	pthread_mutex_lock(c->vd.lock);
	if (c->cfg.requested != count) {
		c->cfg.requested = count;
		c->cfg.generation++;
		c->requested_ns = clock_ns();
		c->requests++;
		virtio_config_changed(&c->vd);
	}
	pthread_mutex_unlock(c->vd.lock);
}

bool cpu_reserve_get_status(struct vm *vm, struct cpu_reserve_status *s)
{
	struct cpu_reserve *c = vm->cpu_reserve;
	if (!c)
		return false;
	pthread_mutex_lock(c->vd.lock);
	s->driver_ok = c->vd.status & VIRTIO_STATUS_DRIVER_OK;
	s->requested = c->cfg.requested;
	s->acked = c->cfg.ack_generation == c->cfg.generation;
	s->parked = c->cfg.parked;
	s->parked_mask = (uint64_t)c->cfg.parked_mask_hi << 32 | c->cfg.parked_mask_lo;
	s->last_ack_ms = (uint64_t)ns_to_ms(c->ack_ns);
	pthread_mutex_unlock(c->vd.lock);
	return true;
}
