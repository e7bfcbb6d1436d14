#include "vmm/vm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "devices/acpi_pm.h"
#include "devices/cpu_reserve.h"
#include "devices/debug_exit.h"
#include "devices/device.h"
#include "devices/ivshmem.h"
#include "devices/msgq.h"
#include "devices/pci.h"
#include "devices/serial.h"
#include "devices/virtio_balloon.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "ferry/layout.h"
#include "vmm/acpi.h"
#include "vmm/boot_pvh.h"
#include "vmm/clock.h"
#include "vmm/events.h"
#include "vmm/kvm.h"
#include "vmm/vcpu.h"
#include "vmm/vmm.h"

static const char *const exit_reason_names[] = {
	[VM_EXIT_NONE] = "running",
	[VM_EXIT_POWEROFF] = "poweroff",
	[VM_EXIT_TIMEOUT] = "timeout",
	[VM_EXIT_TRIPLE_FAULT] = "triple-fault",
	[VM_EXIT_INTERNAL_ERROR] = "internal-error",
	[VM_EXIT_VMM_ERROR] = "vmm-error",
	[VM_EXIT_GUEST_RESET] = "reset",
	[VM_EXIT_INTERRUPTED] = "interrupted",
	[VM_EXIT_CREATE_FAILED] = "create-failed",
	[VM_EXIT_REMOVED] = "removed",
	[VM_EXIT_HUNG] = "hung",
};

const char *vm_exit_reason_name(enum vm_exit_reason reason)
{
	return exit_reason_names[reason];
}

bool vm_exit_is_crash(enum vm_exit_reason reason)
{
	return reason == VM_EXIT_TRIPLE_FAULT || reason == VM_EXIT_INTERNAL_ERROR || reason == VM_EXIT_VMM_ERROR ||
	       reason == VM_EXIT_GUEST_RESET || reason == VM_EXIT_HUNG;
}

bool vm_exit_is_failure(enum vm_exit_reason reason, int guest_status)
{
	return vm_exit_is_crash(reason) || (reason == VM_EXIT_POWEROFF && guest_status != 0);
}

int vm_exit_code_for(enum vm_exit_reason reason, int guest_status)
{
	return reason == VM_EXIT_POWEROFF ? guest_status : -(int)reason;
}

void vm_add_device(struct vm *vm, struct device *dev)
{
	dev->vm = vm;
	dev->next = vm->devices;
	vm->devices = dev;
}

static int host_memory_mib(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
	return pages > 0 && size > 0 ? (int)((uint64_t)pages * (uint64_t)size >> 20) : -1;
}

static int add_ram(struct vm *vm, char *err, size_t errlen)
{
	uint64_t ram = vm->cfg->memory_mib << 20;
	int host_mib = host_memory_mib();
	if (host_mib > 0 && vm->cfg->memory_mib > (uint64_t)host_mib) {
		snprintf(err, errlen, "%llu MiB of guest RAM is more than the host's %d MiB",
			 (unsigned long long)vm->cfg->memory_mib, host_mib);
		return -1;
	}
	uint64_t low = ram < FERRY_MMIO_HOLE_GPA ? ram : FERRY_MMIO_HOLE_GPA;
	char name[64];
	snprintf(name, sizeof(name), "ferry-%s-ram", vm->name);
	if (gm_add_ram(&vm->mem, name, 0, low, vm->cfg->hugepages, err, errlen) < 0)
		return -1;
	if (ram > low) {
		snprintf(name, sizeof(name), "ferry-%s-ram-high", vm->name);
		if (gm_add_ram(&vm->mem, name, FERRY_HIGH_RAM_GPA, ram - low, vm->cfg->hugepages, err, errlen) < 0)
			return -1;
	}
	return 0;
}

uint64_t vm_window_gpa(struct vm *vm, uint64_t size)
{
	uint64_t gpa = (vm->next_window_gpa + size - 1) & ~(size - 1);
	vm->next_window_gpa = gpa + size;
	return gpa;
}

int vm_add_exit_hook(struct vm *vm, void (*fn)(void *arg), void *arg)
{
	if (vm->nr_exit_hooks == VM_MAX_EXIT_HOOKS)
		return -1;
	vm->exit_hook[vm->nr_exit_hooks].fn = fn;
	vm->exit_hook[vm->nr_exit_hooks].arg = arg;
	vm->nr_exit_hooks++;
	return 0;
}

/* Memory that devices bring: registered before the irqchip, like RAM. */
static int add_device_memory(struct vm *vm, char *err, size_t errlen)
{
	const struct device_config *mq = config_find_device(vm->cfg, DEV_MSGQ);
	if (mq && msgq_window_create(vm, mq, err, errlen) < 0)
		return -1;
	for (unsigned i = 0; i < vm->cfg->nr_nics; i++)
		if (virtio_net_window_create(vm, i, &vm->cfg->nics[i], err, errlen) < 0)
			return -1;
	return ivshmem_memory_create(vm, err, errlen);
}

static int add_devices(struct vm *vm, const char *log_dir, bool console, char *err, size_t errlen)
{
	char log_path[PATH_MAX];
	if (vm->cfg->console_log[0])
		snprintf(log_path, sizeof(log_path), "%s", vm->cfg->console_log);
	else
		snprintf(log_path, sizeof(log_path), "%s/%s.log", log_dir, vm->name);
	vm->console = serial_create(vm, log_path, console, err, errlen);
	if (!vm->console || debug_exit_create(vm, err, errlen) < 0 || acpi_pm_create(vm, err, errlen) < 0)
		return -1;
	vm->pci = pci_bus_create(vm, err, errlen);
	if (!vm->pci)
		return -1;
	for (unsigned i = 0; i < vm->cfg->nr_devices; i++) {
		switch (vm->cfg->devices[i].type) {
		case DEV_VIRTIO_RNG:
			if (virtio_rng_create(vm, err, errlen) < 0)
				return -1;
			break;
		case DEV_MSGQ:
			if (msgq_create(vm, &vm->cfg->devices[i], err, errlen) < 0)
				return -1;
			break;
		case DEV_BALLOON:
			if (virtio_balloon_create(vm, &vm->cfg->devices[i], err, errlen) < 0)
				return -1;
			break;
		case DEV_CPU_RESERVE:
			if (cpu_reserve_create(vm, err, errlen) < 0)
				return -1;
			break;
		}
	}
	for (unsigned i = 0; i < vm->cfg->nr_nics; i++)
		if (virtio_net_create(vm, i, err, errlen) < 0)
			return -1;
	/* A VM in a link (config "links", or an "shm" network) gets its end. */
	return ivshmem_create(vm, err, errlen);
}

static int load_kernel(struct vm *vm, char *err, size_t errlen)
{
	uint8_t *acpi = gm_ptr(&vm->mem, FERRY_ACPI_GPA, FERRY_ACPI_MAX);
	if (!acpi || acpi_build(acpi, FERRY_ACPI_MAX, FERRY_ACPI_GPA, vm->nr_vcpus) == 0) {
		snprintf(err, errlen, "cannot place the ACPI tables");
		return -1;
	}
	char cmdline[FERRY_CMDLINE_MAX];
	/* restarts=N tells a guest that it runs again after a failure. */
	int n = snprintf(cmdline, sizeof(cmdline), "%s%svm=%s", vm->cfg->cmdline, vm->cfg->cmdline[0] ? " " : "",
			 vm->name);
	if (vm->restarts && n > 0 && (size_t)n < sizeof(cmdline))
		snprintf(cmdline + n, sizeof(cmdline) - (size_t)n, " restarts=%u", vm->restarts);
	uint32_t entry;
	if (pvh_load(&vm->mem, vm->cfg->kernel, cmdline, FERRY_ACPI_GPA, &entry, err, errlen) < 0)
		return -1;
	return vcpu_set_pvh_entry(vm->vcpus[0], entry, (uint32_t)FERRY_START_INFO_GPA, err, errlen);
}

/* The VM in KVM: its fd and the two pages VT-x needs. */
static int kvm_vm_create(struct vm *vm, char *why, size_t whylen)
{
	vm->fd = ioctl(vm->kvm->fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0) {
		snprintf(why, whylen, "KVM_CREATE_VM: %s", strerror(errno));
		return -1;
	}
	/* Needed by VT-x for real mode; harmless elsewhere. Both pages are in
	 * the MMIO hole, away from RAM. */
	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)FERRY_KVM_TSS_GPA) < 0) {
		snprintf(why, whylen, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		return -1;
	}
	uint64_t idmap = FERRY_KVM_IDMAP_GPA;
	if (ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		snprintf(why, whylen, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
		return -1;
	}
	return 0;
}

struct vm *vm_create(struct vmm *vmm, const struct vm_config *cfg, unsigned id, unsigned restarts,
		     const char *log_dir, bool console_to_terminal, char *err, size_t errlen)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	char why[400];
	if (!vm) {
		snprintf(err, errlen, "%s: out of memory", cfg->name);
		return NULL;
	}
	vm->t_create_ns = clock_ns();
	snprintf(vm->name, sizeof(vm->name), "%s", cfg->name);
	vm->id = id;
	vm->restarts = restarts;
	vm->cfg = cfg;
	vm->vmm = vmm;
	vm->kvm = &vmm->kvm;
	vm->evl = vmm->evl;
	vm->fd = -1;
	vm->next_window_gpa = FERRY_PCI_MMIO64_GPA;
	vm->ivshmem_region = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	gm_init(&vm->mem, -1);

	/* A vmm without KVM (tests/testvm.h) builds the VM's memory, buses and
	 * devices for tests and fuzzers that drive device handlers directly:
	 * no vCPUs, no kernel, interrupts recorded (vmm/irq.h). */
	bool no_kvm = vm->kvm->fd < 0;
	if (!no_kvm && cfg->vcpus > (unsigned)vm->kvm->max_vcpus) {
		snprintf(why, sizeof(why), "%u vCPUs asked, KVM allows %d", cfg->vcpus, vm->kvm->max_vcpus);
		goto fail;
	}
	if (!no_kvm && kvm_vm_create(vm, why, sizeof(why)) < 0)
		goto fail;
	vm->mem.vm_fd = vm->fd;
	/* RAM before the irqchip: once an irqchip exists, KVM waits for an SRCU
	 * grace period on every memory slot change (~6 ms here, per slot). */
	if (add_ram(vm, why, sizeof(why)) < 0 || add_device_memory(vm, why, sizeof(why)) < 0 ||
	    irq_init(&vm->irq, vm->fd, why, sizeof(why)) < 0 ||
	    add_devices(vm, log_dir, console_to_terminal, why, sizeof(why)) < 0)
		goto fail;
	if (no_kvm)
		return vm;

	vm->vcpus = calloc(cfg->vcpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		snprintf(why, sizeof(why), "out of memory");
		goto fail;
	}
	vm->nr_vcpus = cfg->vcpus;
	for (unsigned i = 0; i < cfg->vcpus; i++) {
		vm->vcpus[i] = vcpu_create(vm, i, why, sizeof(why));
		if (!vm->vcpus[i])
			goto fail;
	}
	if (load_kernel(vm, why, sizeof(why)) < 0)
		goto fail;
	log_debug(vm->name, "created in %.2f ms", ns_to_ms(clock_ns() - vm->t_create_ns));
	return vm;
fail:
	snprintf(err, errlen, "%s: %s", cfg->name, why);
	vm_destroy(vm);
	return NULL;
}

int vm_start(struct vm *vm, char *err, size_t errlen)
{
	pthread_mutex_lock(&vm->lock);
	vm->state = VM_RUNNING;
	pthread_mutex_unlock(&vm->lock);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		if (vcpu_start(vm->vcpus[i]) < 0) {
			snprintf(err, errlen, "%s: cannot start vCPU thread %u", vm->name, i);
			vm_stop(vm, VM_EXIT_VMM_ERROR, 0, "cannot start a vCPU thread");
			return -1;
		}
	}
	return 0;
}

void vm_stop(struct vm *vm, enum vm_exit_reason reason, int guest_status, const char *detail)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->exit_reason != VM_EXIT_NONE) {
		pthread_mutex_unlock(&vm->lock);
		return; /* the first reason is the true one */
	}
	vm->exit_reason = reason;
	vm->guest_status = guest_status;
	vm->state = VM_STOPPED;
	vm->t_stop_ns = clock_ns();
	if (detail)
		snprintf(vm->exit_detail, sizeof(vm->exit_detail), "%s", detail);
	atomic_store(&vm->stopping, true);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(vm->vcpus[i]);
	pthread_cond_broadcast(&vm->pause_cond); /* paused vCPUs and pausers see the stop */
	pthread_mutex_unlock(&vm->lock);

	if (detail)
		log_error(vm->name, "%s", detail);
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "reason", vm_exit_reason_name(reason));
	cJSON_AddNumberToObject(f, "exit_code", vm_exit_code_for(reason, guest_status));
	if (detail)
		cJSON_AddStringToObject(f, "detail", detail);
	events_emit(vm_exit_is_crash(reason) ? "vm-crashed" : "vm-stopped", vm->name, f);
	vmm_notify_stopped(vm->vmm);
}

bool vm_is_stopped(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	bool stopped = vm->state == VM_STOPPED;
	pthread_mutex_unlock(&vm->lock);
	return stopped;
}

double vm_boot_ms(struct vm *vm)
{
	uint64_t first = atomic_load(&vm->t_first_output_ns);
	return first ? ns_to_ms(first - vm->t_create_ns) : -1.0;
}

void vm_join(struct vm *vm)
{
	atomic_store(&vm->stopping, true);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_kick(vm->vcpus[i]);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i])
			vcpu_join(vm->vcpus[i]);
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	vm_join(vm);
	/* Newest first: a device may use those created before it (PCI, irq). */
	while (vm->devices) {
		struct device *d = vm->devices;
		vm->devices = d->next;
		d->ops->destroy(d);
	}
	msgq_abandon(vm); /* windows whose devices were never created */
	virtio_net_abandon(vm);
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_destroy(vm->vcpus[i]);
	free(vm->vcpus);
	gm_destroy(&vm->mem);
	if (vm->irq.routes)
		irq_destroy(&vm->irq);
	if (vm->fd >= 0)
		close(vm->fd);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->pause_cond);
	free(vm);
}

void vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requests++;
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick(vm->vcpus[i]);
	while (vm->paused_vcpus < vm->running_vcpus && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->pause_cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_requests)
		vm->pause_requests--;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->lock);
}

void vm_pause_point(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_requests) {
		vm->paused_vcpus++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->pause_requests && !atomic_load(&vm->stopping))
			pthread_cond_wait(&vm->pause_cond, &vm->lock);
		vm->paused_vcpus--;
	}
	pthread_mutex_unlock(&vm->lock);
}
