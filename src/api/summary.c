#include "api/summary.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/cpu_reserve.h"
#include "devices/device.h"
#include "vmm/clock.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

static cJSON *device_counters(struct device *dev)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "exits", (double)atomic_load(&dev->ctr.exits));
	cJSON_AddNumberToObject(o, "interrupts", (double)atomic_load(&dev->ctr.interrupts));
	cJSON_AddNumberToObject(o, "bytes", (double)atomic_load(&dev->ctr.bytes));
	cJSON_AddNumberToObject(o, "rejected", (double)atomic_load(&dev->ctr.rejected));
	if (dev->ops->counters_json)
		dev->ops->counters_json(dev, o);
	return o;
}

cJSON *summary_vm(struct vm *vm, const struct vm_config *cfg, const char *create_error)
{
	if (vm)
		cfg = vm->cfg;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", cfg->name);
	if (!vm) {
		cJSON_AddNumberToObject(o, "exit_code", vm_exit_code_for(VM_EXIT_CREATE_FAILED, 0));
		cJSON_AddStringToObject(o, "exit_reason", vm_exit_reason_name(VM_EXIT_CREATE_FAILED));
		cJSON_AddStringToObject(o, "detail", create_error ? create_error : "");
		cJSON_AddNullToObject(o, "boot_ms");
		return o;
	}
	cJSON_AddNumberToObject(o, "exit_code", vm_exit_code_for(vm->exit_reason, vm->guest_status));
	cJSON_AddStringToObject(o, "exit_reason", vm_exit_reason_name(vm->exit_reason));
	if (vm->exit_detail[0])
		cJSON_AddStringToObject(o, "detail", vm->exit_detail);
	double boot = vm_boot_ms(vm);
	if (boot >= 0)
		cJSON_AddNumberToObject(o, "boot_ms", boot);
	else
		cJSON_AddNullToObject(o, "boot_ms");
	if (vm->t_stop_ns)
		cJSON_AddNumberToObject(o, "run_ms", ns_to_ms(vm->t_stop_ns - vm->t_create_ns));

	cJSON *mem = cJSON_AddObjectToObject(o, "memory");
	cJSON_AddNumberToObject(mem, "size_mib", (double)vm->cfg->memory_mib);
	cJSON_AddNumberToObject(mem, "resident_mib", (double)gm_resident_bytes(&vm->mem) / (1 << 20));

	cJSON *counters = cJSON_AddObjectToObject(o, "counters");
	cJSON *vcpus = cJSON_AddArrayToObject(counters, "vcpus");
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		cJSON *c = cJSON_CreateObject();
		cJSON_AddNumberToObject(c, "index", i);
		cJSON_AddNumberToObject(c, "exits", (double)atomic_load(&v->ctr.exits));
		cJSON_AddNumberToObject(c, "io_exits", (double)atomic_load(&v->ctr.io_exits));
		cJSON_AddNumberToObject(c, "mmio_exits", (double)atomic_load(&v->ctr.mmio_exits));
		cJSON_AddNumberToObject(c, "cpu_ms", ns_to_ms(vcpu_cpu_time_ns(v)));
		cJSON_AddItemToArray(vcpus, c);
	}
	/* Processor reservation: what is parked, and what each vCPU thread used. */
	cJSON *cpu = cJSON_AddObjectToObject(counters, "cpu");
	struct cpu_reserve_status cr;
	cJSON_AddNumberToObject(cpu, "reserved_vcpus", cpu_reserve_get_status(vm, &cr) ? cr.parked : 0);
	cJSON *threads = cJSON_AddArrayToObject(cpu, "vcpu_threads");
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		cJSON *t = cJSON_CreateObject();
		cJSON_AddNumberToObject(t, "index", i);
		cJSON_AddNumberToObject(t, "cpu_ms", ns_to_ms(vcpu_cpu_time_ns(v)));
		cJSON_AddNumberToObject(t, "parked_ms", ns_to_ms(atomic_load(&v->parked_ns)));
		cJSON_AddNumberToObject(t, "cpu_ms_while_parked", ns_to_ms(atomic_load(&v->cpu_ns_while_parked)));
		cJSON_AddItemToArray(threads, t);
	}
	cJSON *unhandled = cJSON_AddObjectToObject(counters, "unhandled");
	cJSON_AddNumberToObject(unhandled, "pio", (double)atomic_load(&vm->pio.unhandled));
	cJSON_AddNumberToObject(unhandled, "mmio", (double)atomic_load(&vm->mmio.unhandled));
	cJSON_AddNumberToObject(counters, "guest_memory_rejected", (double)atomic_load(&vm->mem.rejected));
	/* Devices are kept newest first; report them in creation order. */
	struct device *list[64];
	unsigned n = 0;
	for (struct device *d = vm->devices; d && n < 64; d = d->next)
		list[n++] = d;
	while (n--)
		cJSON_AddItemToObject(counters, list[n]->name, device_counters(list[n]));
	return o;
}

int summary_write(const char *path, const cJSON *doc)
{
	char *text = cJSON_Print(doc);
	if (!text)
		return -1;
	FILE *f = fopen(path, "w");
	int ret = -1;
	if (f) {
		ret = fputs(text, f) >= 0 && fputc('\n', f) != EOF ? 0 : -1;
		if (fclose(f) != 0)
			ret = -1;
	}
	free(text);
	return ret;
}
