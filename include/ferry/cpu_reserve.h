/* virtio-vcpu-reserve: the host asks a VM to park some of its vCPUs (they
 * halt and take no work), and the guest says when it has. ferry's own device
 * type; the spec is docs/devices/cpu_reserve.md. All fields little-endian.
 *
 * No queues: everything is in the device configuration space. The device
 * raises a configuration-change interrupt when `requested` changes; the
 * driver parks or unparks vCPUs (never vCPU 0) until `requested` are parked,
 * then writes `parked`, `parked_mask` and, last, `ack_generation` =
 * `generation`. */
#ifndef FERRY_CPU_RESERVE_H
#define FERRY_CPU_RESERVE_H

#include <stdint.h>

#define VIRTIO_ID_VCPU_RESERVE 0xf8

struct cpu_reserve_config {
	uint32_t nr_vcpus;        /* read-only: the VM's vCPUs */
	uint32_t requested;       /* read-only: how many the host wants parked */
	uint32_t generation;      /* read-only: bumped with every new request */
	uint32_t parked;          /* driver: how many are parked now */
	uint32_t parked_mask_lo;  /* driver: which (bit n = vCPU with APIC ID n) */
	uint32_t parked_mask_hi;
	uint32_t ack_generation;  /* driver: the generation it has carried out */
	uint32_t reserved;
};

#endif
