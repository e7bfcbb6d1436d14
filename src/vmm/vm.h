/* One virtual machine: its KVM handle, memory, interrupt chip, buses,
 * devices and vCPUs, and its life from creation to power-off. */
#ifndef FERRY_VM_H
#define FERRY_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/bus.h"
#include "vmm/config.h"
#include "vmm/irq.h"
#include "vmm/memory.h"

struct kvm;
struct vmm;
struct vcpu;
struct device;
struct pci_bus;
struct serial;
struct eventloop;
struct msgq_dev;
struct balloon;
struct cpu_reserve;
struct virtio_net_dev;

#define VM_MAX_EXIT_HOOKS 4

enum vm_state { VM_CREATED, VM_RUNNING, VM_STOPPED };

/* Why a VM stopped. Only VM_EXIT_POWEROFF carries a guest status. */
enum vm_exit_reason {
	VM_EXIT_NONE,
	VM_EXIT_POWEROFF,        /* guest wrote its status to the debug-exit port */
	VM_EXIT_TIMEOUT,         /* still running when --timeout expired */
	VM_EXIT_TRIPLE_FAULT,    /* KVM_EXIT_SHUTDOWN */
	VM_EXIT_INTERNAL_ERROR,  /* KVM could not emulate an instruction, etc. */
	VM_EXIT_VMM_ERROR,       /* ferry itself failed for this VM */
	VM_EXIT_GUEST_RESET,     /* the guest asked for a reset, which ferry does not do */
	VM_EXIT_INTERRUPTED,     /* ferry got SIGINT or SIGTERM */
	VM_EXIT_CREATE_FAILED,   /* the VM could not be built */
	VM_EXIT_REMOVED,         /* removed through the control socket while it ran */
	VM_EXIT_HUNG,            /* no exit to ferry for its "watchdog_ms" */
};

/* exit_code in the summary for reasons other than a power-off; negative so
 * they never collide with a guest's 0-255 status. */
int vm_exit_code_for(enum vm_exit_reason reason, int guest_status);
const char *vm_exit_reason_name(enum vm_exit_reason reason);
/* Whether the VM ended by a fault (of the guest or of ferry), not by a
 * power-off or an operator's request. */
bool vm_exit_is_crash(enum vm_exit_reason reason);
/* Whether "restart": "on-failure" restarts a VM that ended so: a crash, a
 * hang, or a power-off with a non-zero status. */
bool vm_exit_is_failure(enum vm_exit_reason reason, int guest_status);

struct vm {
	char name[CFG_NAME_MAX];
	unsigned id;                  /* position in the run, from 0; a restart keeps it */
	unsigned restarts;            /* how many times this VM was restarted before this run of it */
	/* Set (main thread, VM stopped) before a restart tears it down: its
	 * devices keep its place among its peers (msgq: peers keep its id and
	 * see dest_down until it is back). */
	bool restarting;
	const struct vm_config *cfg;
	struct vmm *vmm;              /* the process-wide context */
	struct kvm *kvm;
	int fd;

	struct guest_memory mem;
	struct irq_chip irq;
	struct io_bus pio;
	struct io_bus mmio;
	struct pci_bus *pci;
	struct serial *console;
	struct device *devices;       /* every device, for counters and teardown */
	struct eventloop *evl;

	struct vcpu **vcpus;
	unsigned nr_vcpus;

	struct msgq_dev *msgq;        /* the message queue, if configured */
	struct balloon *balloon;      /* the balloon, if configured */
	struct cpu_reserve *cpu_reserve; /* vCPU parking, if configured */
	struct virtio_net_dev *nics_pending; /* NIC windows whose devices are not made yet */
	struct virtio_net_dev *nics[CFG_MAX_NICS];
	unsigned nr_nics;
	int ivshmem_region;           /* memory region of its link's shared memory, or -1 */
	uint64_t ivshmem_gpa;         /* where that memory is (BAR 2 of its ivshmem device) */
	/* Run on a vCPU thread after each exit to ferry: work that waits for
	 * the VM's "next natural exit" (deferred message sends). */
	struct {
		void (*fn)(void *arg);
		void *arg;
	} exit_hook[VM_MAX_EXIT_HOOKS];
	unsigned nr_exit_hooks;

	/* Life cycle; guarded by lock. */
	pthread_mutex_t lock;
	enum vm_state state;
	enum vm_exit_reason exit_reason;
	int guest_status;
	char exit_detail[512];        /* e.g. RIP and bytes of a failed instruction */
	atomic_bool stopping;

	/* Pausing: vCPU threads wait here between exits while pause_requests
	 * is non-zero (e.g. so the message switch can remap many pages while no
	 * vCPU runs, instead of kicking a running vCPU for each). */
	pthread_cond_t pause_cond;
	unsigned pause_requests;
	unsigned paused_vcpus;
	unsigned running_vcpus;       /* threads started and not yet ended */
	bool user_paused;             /* paused through the control socket (its thread only) */

	/* Device memory windows (BARs backed by memory, registered with KVM
	 * before the PCI bus exists) are placed from here up, in the 64-bit
	 * PCI window; the bus assigns other 64-bit BARs above them. */
	uint64_t next_window_gpa;

	uint64_t t_create_ns;
	atomic_ullong t_first_output_ns;  /* first console byte */
	uint64_t t_stop_ns;
};

/* Creates the VM, its memory and devices, and loads the kernel; nothing runs
 * yet. On failure writes a one-line reason and returns NULL. */
struct vm *vm_create(struct vmm *vmm, const struct vm_config *cfg, unsigned id, unsigned restarts,
		     const char *log_dir, bool console_to_terminal, char *err, size_t errlen);
/* Starts one thread per vCPU. */
int vm_start(struct vm *vm, char *err, size_t errlen);
/* Records why the VM stops (the first reason wins) and kicks every vCPU out
 * of the guest. Safe from any thread, including the VM's own vCPUs. */
void vm_stop(struct vm *vm, enum vm_exit_reason reason, int guest_status, const char *detail);
/* Waits for the vCPU threads to end (after vm_stop). */
void vm_join(struct vm *vm);
/* Joins and frees everything. */
void vm_destroy(struct vm *vm);

bool vm_is_stopped(struct vm *vm);
/* Holds every vCPU of the VM outside the guest until vm_resume(); returns
 * once they all are. Must not be called with a lock a vCPU exit might need,
 * nor from the VM's own vCPU threads. Nests. */
void vm_pause(struct vm *vm);
void vm_resume(struct vm *vm);
/* For vCPU threads: waits while the VM is paused. */
void vm_pause_point(struct vm *vm);

/* A guest-physical address for a device memory window of `size` bytes (a
 * power of two, as a BAR's size is), aligned to its size. */
uint64_t vm_window_gpa(struct vm *vm, uint64_t size);
/* Adds a hook run after every exit; only before vm_start. */
int vm_add_exit_hook(struct vm *vm, void (*fn)(void *arg), void *arg);
void vm_add_device(struct vm *vm, struct device *dev);
/* Milliseconds from creation to the first console byte, or -1 if none. */
double vm_boot_ms(struct vm *vm);

#endif
