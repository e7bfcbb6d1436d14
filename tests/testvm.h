/* A test VM: every VM of a config built by the real vm_create() with a vmm
 * that has no KVM. Guest RAM is a plain memfd behind the normal gm_* API,
 * the port-I/O and MMIO buses, PCI bus and devices are the real ones, and
 * interrupts are recorded instead of injected (vmm/irq.h). There are no
 * vCPUs: a test or fuzzer is the guest, making the accesses a vCPU exit
 * would (tv_pio_*, tv_mmio_*, tv_cfg_*) and writing guest memory directly.
 * The event loop is never started; tv_events() runs what is ready on the
 * caller's thread. Used by unit tests and by the device fuzz targets (no
 * cmocka here). */
#ifndef FERRY_TESTVM_H
#define FERRY_TESTVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define TESTVM_MAX 8

struct testvm {
	struct vmm vmm;
	struct ferry_config cfg;
	struct vm *vm[TESTVM_MAX];
	unsigned nr;
};

/* Parses the JSON config (kernels may be omitted: nothing is loaded) and
 * builds every VM; 0, or -1 with a reason. Consoles go to /dev/null unless
 * the config names a log. */
int testvm_create(struct testvm *t, const char *json, char *err, size_t errlen);
void testvm_destroy(struct testvm *t);
struct vm *testvm_vm(struct testvm *t, const char *name);
/* Runs the event-loop handlers that are ready (waiting up to timeout_ms
 * for the first); how many ran. */
int tv_events(struct testvm *t, int timeout_ms);

/* One guest access as a vCPU exit delivers it, followed by the VM's exit
 * hooks as vcpu.c runs them. len 1..8. Reads of nothing read all ones. */
uint64_t tv_pio_read(struct vm *vm, uint16_t port, uint32_t len);
void tv_pio_write(struct vm *vm, uint16_t port, uint32_t len, uint64_t val);
uint64_t tv_mmio_read(struct vm *vm, uint64_t addr, uint32_t len);
void tv_mmio_write(struct vm *vm, uint64_t addr, uint32_t len, uint64_t val);
/* Configuration space of bus 0 through mechanism #1 (0xcf8/0xcfc). */
uint32_t tv_cfg_read(struct vm *vm, unsigned slot, uint32_t off, uint32_t len);
void tv_cfg_write(struct vm *vm, unsigned slot, uint32_t off, uint32_t len, uint32_t val);
/* The slot of the n-th (from 0) function with these IDs, or -1. */
int tv_pci_find(struct vm *vm, uint16_t vendor, uint16_t device, unsigned n);
/* A memory BAR's address as the guest sees it in config space. */
uint64_t tv_pci_bar(struct vm *vm, unsigned slot, unsigned bar);
/* Offset of the first capability with this ID after `from` (0: from the
 * start), or 0. */
uint8_t tv_pci_cap(struct vm *vm, unsigned slot, uint8_t id, uint8_t from);

/* Host pointer to guest RAM [gpa, gpa + len), or NULL. */
void *tv_ram(struct vm *vm, uint64_t gpa, uint64_t len);
/* What the guest can write at [gpa, gpa + len) in any memory slot,
 * device windows included (gm_ptr refuses those), unless the slot is
 * read-only to the guest; NULL otherwise. */
void *tv_guest_ptr(struct vm *vm, uint64_t gpa, uint64_t len);
/* The same for reading: read-only slots (received messages) too. */
const void *tv_guest_view(struct vm *vm, uint64_t gpa, uint64_t len);
/* MSIs the VM's devices have raised since the last call (all vectors). */
uint64_t tv_interrupts(struct vm *vm);
/* Raises of a legacy line (e.g. the UART's IRQ 4) so far. */
uint64_t tv_line_raises(struct vm *vm, unsigned gsi);

/* A virtio-pci driver, enough to bring a device up and move buffers:
 * capabilities are found as a driver finds them. */
#define TV_MAX_QUEUES 18
struct tv_queue {
	uint16_t size;
	uint64_t desc, avail, used;  /* guest-physical */
	uint16_t avail_idx, used_seen, next_desc;
};
struct tv_virtio {
	struct vm *vm;
	int slot;
	uint64_t common, notify, isr, device;  /* guest-physical addresses */
	uint32_t notify_mult;
	uint64_t msix_table;
	uint16_t nr_queues;
	uint64_t features;           /* what the device offered */
	struct tv_queue q[TV_MAX_QUEUES];
};
struct tv_buf {
	uint64_t gpa;
	uint32_t len;
	bool writable;
};
/* Finds the n-th virtio device of this type (VIRTIO_ID_*), negotiates
 * `features` (masked by what the device offers; VERSION_1 always), gives
 * queue i vector i and the config vector nr_queues (MSI-X on, vectors
 * unmasked), and lays out every queue of qsize entries from ring_gpa up
 * (0x10000 per queue). Stops before DRIVER_OK if driver_ok is false.
 * 0, or -1 if a step failed (the device refused). */
int tv_virtio_init(struct tv_virtio *d, struct vm *vm, uint16_t type, unsigned n, uint64_t features,
		   uint64_t ring_gpa, uint16_t qsize, bool driver_ok);
/* Common configuration registers. */
uint64_t tv_virtio_common_read(struct tv_virtio *d, uint32_t off, uint32_t len);
void tv_virtio_common_write(struct tv_virtio *d, uint32_t off, uint32_t len, uint64_t val);
/* Posts one chain (descriptors taken in turn from the table) and makes it
 * available; returns its head. Does not notify. */
uint16_t tv_virtio_post(struct tv_virtio *d, unsigned q, const struct tv_buf *bufs, unsigned n);
void tv_virtio_notify(struct tv_virtio *d, unsigned q);
/* The next used element, if any: 1 (id and len filled), or 0. */
int tv_virtio_used(struct tv_virtio *d, unsigned q, uint32_t *id, uint32_t *len);

#endif
