/* Devices driven as a guest drives them, in a test VM without KVM
 * (tests/testvm.h): the real vm_create(), buses, PCI bus and device code,
 * guest RAM in a memfd, interrupts recorded. Regression tests for what the
 * device fuzzers (fuzz/) found live here too. */
#include "helpers.h"

#include <stdio.h>
#include <string.h>

#include "devices/device.h"
#include "ferry/pci_regs.h"
#include "ferry/virtio.h"
#include "testvm.h"
#include "vmm/log.h"

static struct testvm tv;

static void make(const char *json)
{
	char err[512];
	log_threshold = LOG_ERROR;
	if (testvm_create(&tv, json, err, sizeof(err)) < 0)
		fail_msg("test VM: %s", err);
}

static struct device *find_device(struct vm *vm, const char *name)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

/* A driver brings virtio-rng up and reads entropy; the interrupt arrives. */
static void rng_reads_entropy(void **state)
{
	(void)state;
	make("{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"devices\":[{\"type\":\"virtio-rng\"}]}]}");
	struct vm *vm = tv.vm[0];
	struct tv_virtio d;
	assert_int_equal(tv_virtio_init(&d, vm, VIRTIO_ID_RNG, 0, 0, 0x100000, 16, true), 0);
	uint8_t *buf = tv_ram(vm, 0x200000, 4096);
	assert_non_null(buf);
	memset(buf, 0, 4096);
	struct tv_buf b = { 0x200000, 4096, true };
	uint16_t head = tv_virtio_post(&d, 0, &b, 1);
	tv_interrupts(vm);
	tv_virtio_notify(&d, 0);
	tv_events(&tv, 0);
	uint32_t id, len;
	assert_int_equal(tv_virtio_used(&d, 0, &id, &len), 1);
	assert_int_equal(id, head);
	assert_int_equal(len, 4096);
	unsigned zero = 0;
	for (unsigned i = 0; i < 4096; i++)
		zero += buf[i] == 0;
	assert_true(zero < 64);
	assert_true(tv_interrupts(vm) >= 1);
	testvm_destroy(&tv);
}

/* A buffer outside RAM is refused and counted; the queue is then broken
 * and the device asks for a reset. */
static void rng_refuses_wild_buffer(void **state)
{
	(void)state;
	make("{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"devices\":[{\"type\":\"virtio-rng\"}]}]}");
	struct vm *vm = tv.vm[0];
	struct tv_virtio d;
	assert_int_equal(tv_virtio_init(&d, vm, VIRTIO_ID_RNG, 0, 0, 0x100000, 16, true), 0);
	struct tv_buf b = { 0xfffffffffffff000ull, 0x2000, true };
	tv_virtio_post(&d, 0, &b, 1);
	tv_virtio_notify(&d, 0);
	tv_events(&tv, 0);
	uint32_t id, len;
	assert_int_equal(tv_virtio_used(&d, 0, &id, &len), 0);
	assert_true(atomic_load(&find_device(vm, "virtio-rng")->ctr.rejected) >= 1);
	assert_true(tv_virtio_common_read(&d, VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	testvm_destroy(&tv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rng_reads_entropy),
		cmocka_unit_test(rng_refuses_wild_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
