/* virtio-vcpu-reserve (ferry's device type 0xf8, include/ferry/cpu_reserve.h):
 * the host asks the guest to park some of its vCPUs; the guest's driver
 * parks them and acknowledges with the set it parked. */
#ifndef FERRY_DEVICES_CPU_RESERVE_H
#define FERRY_DEVICES_CPU_RESERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct cJSON;

struct cpu_reserve_status {
	bool driver_ok;
	uint32_t requested;       /* what we asked */
	bool acked;               /* the guest has carried out the latest request */
	uint32_t parked;          /* what it says it parked */
	uint64_t parked_mask;     /* which vCPUs */
	uint64_t last_ack_ms;     /* how long the latest acknowledgement took */
};

int cpu_reserve_create(struct vm *vm, char *err, size_t errlen);
/* Asks the VM to have `count` vCPUs parked (0 releases them all). */
void cpu_reserve_request(struct vm *vm, uint32_t count);
/* false if the VM has no such device. */
bool cpu_reserve_get_status(struct vm *vm, struct cpu_reserve_status *out);

#endif
