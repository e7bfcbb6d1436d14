/* Processor reservation (drivers/cpu_reserve.c): ferry's virtio device type
 * 0xf8 (include/ferry/cpu_reserve.h), configuration space only. When the
 * host changes `requested`, the driver parks vCPUs (never the BSP, highest
 * APIC IDs first) or unparks them until that many are parked (smp_park:
 * they halt with interrupts enabled and run nothing, so their host threads
 * use no CPU), then writes `parked`, `parked_mask` and, last,
 * `ack_generation`. Runs as deferred work (work.h) on the config interrupt
 * (or a 100 ms poll without MSI-X). cpu_reserve=off leaves the device alone. */
#ifndef GUEST_CPU_RESERVE_H
#define GUEST_CPU_RESERVE_H

#include <stdbool.h>
#include <stdint.h>

/* 0; -1 no device (or cpu_reserve=off); -2 broken. */
int cpu_reserve_init(void);

struct cpu_reserve_info {
	bool present;
	uint32_t nr_vcpus, requested, generation, acked_generation, parked;
	uint64_t parked_mask;
	uint64_t requests, parks, unparks, late;  /* late: CPUs that took > 100 ms to park */
};
void cpu_reserve_info(struct cpu_reserve_info *ri);

#endif
