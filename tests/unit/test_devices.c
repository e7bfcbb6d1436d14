/* Devices driven as a guest drives them, in a test VM without KVM
 * (tests/testvm.h): the real vm_create(), buses, PCI bus and device code,
 * guest RAM in a memfd, interrupts recorded. Regression tests for what the
 * device fuzzers (fuzz/) found live here too. */
#include "helpers.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/summary.h"
#include "devices/cpu_reserve.h"
#include "devices/device.h"
#include "devices/virtio_balloon.h"
#include "ferry/cpu_reserve.h"
#include "ferry/msgq.h"
#include "ferry/virtio_net.h"
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

/* msgq between two test VMs: a message sent from a's send slot arrives in
 * b's receive region with a's id as its source and its bytes intact; a
 * send of a page in RAM (not a's to send) is refused with BAD_ADDR. With
 * `rings`, the devices offer MSGQ_F_RINGS and the drivers, written before
 * it, do not take it: everything works as without. */
static void msgq_pair_sends(bool rings)
{
	const char *dev = rings ? ",\"rings\":true" : "";
	char *json = xasprintf("{\"msgq\":{\"copy_threshold\":4096},\"vms\":["
	     "{\"name\":\"a\",\"memory_mib\":4,\"devices\":[{\"type\":\"msgq\",\"send_slots\":8,\"recv_slots\":8,\"peers\":[\"b\"]%s}]},"
	     "{\"name\":\"b\",\"memory_mib\":4,\"devices\":[{\"type\":\"msgq\",\"send_slots\":8,\"recv_slots\":8,\"peers\":[\"a\"]%s}]}]}",
	     dev, dev);
	make(json);
	free(json);
	struct vm *a = tv.vm[0], *b = tv.vm[1];
	struct tv_virtio da, db;
	assert_int_equal(tv_virtio_init(&da, a, VIRTIO_ID_MSGQ, 0, 0, 0x100000, 16, true), 0);
	assert_int_equal(tv_virtio_init(&db, b, VIRTIO_ID_MSGQ, 0, 0, 0x100000, 16, true), 0);
	assert_int_equal(!!(da.features & (1ull << MSGQ_F_RINGS)), rings);
	struct tv_buf rb = { 0x200000, sizeof(struct msgq_recv_hdr), true };
	tv_virtio_post(&db, MSGQ_QUEUE_RECV, &rb, 1);
	uint64_t wa = tv_pci_bar(a, (unsigned)da.slot, MSGQ_WINDOW_BAR), wb = tv_pci_bar(b, (unsigned)db.slot, MSGQ_WINDOW_BAR);
	uint8_t *payload = tv_guest_ptr(a, wa + 4096, 4096);
	assert_non_null(payload);
	for (unsigned i = 0; i < 4096; i++)
		payload[i] = (uint8_t)(i * 7 + 3);
	for (int bad = 0; bad < 2; bad++) {
		struct msgq_send_hdr *h = tv_ram(a, 0x200000, sizeof(*h));
		*h = (struct msgq_send_hdr){ .dest = 2, .flags = MSGQ_SEND_COPY | MSGQ_SEND_DOORBELL, .len = 4096, .cookie = 77 };
		struct tv_buf sb[3] = { { 0x200000, sizeof(*h), false }, { bad ? 0x300000 : wa + 4096, 4096, false },
					{ 0x200100, sizeof(struct msgq_send_status), true } };
		tv_virtio_post(&da, MSGQ_QUEUE_SEND, sb, 3);
		tv_virtio_notify(&da, MSGQ_QUEUE_SEND);
		struct msgq_send_status *st = tv_ram(a, 0x200100, sizeof(*st));
		assert_int_equal(st->cookie, 77);
		assert_int_equal(st->status, bad ? MSGQ_E_BAD_ADDR : MSGQ_OK);
		if (!bad)
			assert_int_equal(st->how, MSGQ_HOW_COPIED);
	}
	uint32_t id, len;
	assert_int_equal(tv_virtio_used(&db, MSGQ_QUEUE_RECV, &id, &len), 1);
	assert_int_equal(len, sizeof(struct msgq_recv_hdr));
	const struct msgq_recv_hdr *rh = tv_ram(b, 0x200000, sizeof(*rh));
	assert_int_equal(rh->src, 1);
	assert_int_equal(rh->len, 4096);
	const uint8_t *got = tv_guest_view(b, wb + (8ull + rh->slot) * 4096, 4096);
	assert_non_null(got);
	for (unsigned i = 0; i < 4096; i++)
		if (got[i] != (uint8_t)(i * 7 + 3))
			fail_msg("byte %u of the message is %u", i, got[i]);
	/* The receive region is read-only to b: a write exits and is refused. */
	tv_mmio_write(b, wb + (8ull + rh->slot) * 4096, 4, 0);
	assert_int_equal(got[0], 3);
	cJSON *sum = summary_vm(b, &tv.cfg.vms[1], NULL);
	assert_int_equal(json_num(sum, "counters.msgq.writes_to_received_pages"), 1);
	if (rings)
		assert_false(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(sum, "counters"), "msgq"),
							      "rings_driver")));
	cJSON_Delete(sum);
	testvm_destroy(&tv);
}

static void msgq_message_arrives_intact(void **state)
{
	(void)state;
	msgq_pair_sends(false);
}

/* The ABI only grows: a driver without MSGQ_F_RINGS on a device with rings. */
static void msgq_driver_without_rings_feature(void **state)
{
	(void)state;
	msgq_pair_sends(true);
}

/* virtio-balloon: inflated frames are punched out of the VM's memfd (those
 * beyond the target too: the target may have fallen meanwhile, and they
 * are counted); a frame outside RAM, or given twice, is refused. */
static void balloon_inflates_within_target(void **state)
{
	(void)state;
	make("{\"vms\":[{\"name\":\"a\",\"memory_mib\":8,\"devices\":[{\"type\":\"virtio-balloon\"}]}]}");
	struct vm *vm = tv.vm[0];
	struct tv_virtio d;
	assert_int_equal(tv_virtio_init(&d, vm, VIRTIO_ID_BALLOON, 0, 0, 0x100000, 16, true), 0);
	balloon_set_target(vm, 16);
	uint8_t *page = tv_ram(vm, 0x400000, 16 * 4096);
	memset(page, 0xab, 16 * 4096);
	uint32_t *pfn = tv_ram(vm, 0x200000, 4 * 20);
	for (unsigned i = 0; i < 16; i++)
		pfn[i] = 0x400 + i;
	pfn[16] = 0xfffff;   /* not RAM */
	pfn[17] = 0x500;     /* beyond the 16 pages asked: taken, counted */
	pfn[18] = 0x400;     /* given twice */
	struct tv_buf b = { 0x200000, 4 * 19, false };
	tv_virtio_post(&d, 0, &b, 1);
	tv_virtio_notify(&d, 0);
	uint32_t id, len;
	assert_int_equal(tv_virtio_used(&d, 0, &id, &len), 1);
	struct balloon_status st;
	assert_true(balloon_get_status(vm, &st));
	assert_int_equal(st.held_pages, 17);
	assert_int_equal(page[0], 0);            /* punched: reads as zero */
	assert_int_equal(page[16 * 4096 - 1], 0);
	assert_int_equal(atomic_load(&find_device(vm, "balloon")->ctr.rejected), 2);
	testvm_destroy(&tv);
}

/* virtio-net: a frame a sends to b's MAC arrives in b's receive buffer;
 * the same frame with a forged source is dropped and counted. */
static void net_frame_delivered_spoof_dropped(void **state)
{
	(void)state;
	make("{\"networks\":{\"n\":{\"zero_copy\":false}},\"vms\":["
	     "{\"name\":\"a\",\"memory_mib\":4,\"nics\":[{\"network\":\"n\",\"mac\":\"02:00:00:00:00:0a\"}]},"
	     "{\"name\":\"b\",\"memory_mib\":4,\"nics\":[{\"network\":\"n\",\"mac\":\"02:00:00:00:00:0b\"}]}]}");
	struct vm *a = tv.vm[0], *b = tv.vm[1];
	struct tv_virtio da, db;
	assert_int_equal(tv_virtio_init(&da, a, VIRTIO_ID_NET, 0, 1ull << VIRTIO_NET_F_MAC, 0x100000, 16, true), 0);
	assert_int_equal(tv_virtio_init(&db, b, VIRTIO_ID_NET, 0, 1ull << VIRTIO_NET_F_MAC, 0x100000, 16, true), 0);
	struct tv_buf rb = { 0x200000, 2048, true };
	tv_virtio_post(&db, VIRTIO_NET_RXQ(0), &rb, 1);
	tv_virtio_post(&db, VIRTIO_NET_RXQ(0), &rb, 1);
	static const uint8_t mac_a[6] = { 2, 0, 0, 0, 0, 0x0a }, mac_b[6] = { 2, 0, 0, 0, 0, 0x0b }, forged[6] = { 2, 6, 6, 6, 6, 6 };
	for (int spoof = 0; spoof < 2; spoof++) {
		uint8_t *f = tv_ram(a, 0x300000, 12 + 100);
		memset(f, 0, 12);
		memcpy(f + 12, mac_b, 6);
		memcpy(f + 18, spoof ? forged : mac_a, 6);
		for (unsigned i = 24; i < 112; i++)
			f[i] = (uint8_t)i;
		struct tv_buf tb = { 0x300000, 112, false };
		tv_virtio_post(&da, VIRTIO_NET_TXQ(0), &tb, 1);
		tv_virtio_notify(&da, VIRTIO_NET_TXQ(0));
		tv_events(&tv, 0);
	}
	uint32_t id, len;
	assert_int_equal(tv_virtio_used(&db, VIRTIO_NET_RXQ(0), &id, &len), 1);
	assert_int_equal(len, 112);
	const uint8_t *got = tv_ram(b, 0x200000, 112);
	assert_memory_equal(got + 12, mac_b, 6);
	assert_memory_equal(got + 18, mac_a, 6);
	assert_int_equal(got[111], 111);
	assert_int_equal(tv_virtio_used(&db, VIRTIO_NET_RXQ(0), &id, &len), 0); /* the forged one never came */
	testvm_destroy(&tv);
}

/* cpu-reserve: an acknowledgement of a request the host has since
 * replaced is a race, not a fault: ignored and counted apart (once it was
 * counted as a rejected request); one of a generation never asked, or with
 * a mask that disagrees with the count, is refused. */
static void cpu_reserve_stale_ack_is_not_a_rejection(void **state)
{
	(void)state;
	make("{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"vcpus\":3,\"devices\":[{\"type\":\"cpu-reserve\"}]}]}");
	struct vm *vm = tv.vm[0];
	struct tv_virtio d;
	assert_int_equal(tv_virtio_init(&d, vm, VIRTIO_ID_VCPU_RESERVE, 0, 0, 0x100000, 16, true), 0);
	struct device *dev = find_device(vm, "cpu-reserve");
	assert_non_null(dev);
#define CR(field) (d.device + offsetof(struct cpu_reserve_config, field))
	cpu_reserve_request(vm, 1);
	uint32_t first = (uint32_t)tv_mmio_read(vm, CR(generation), 4);
	cpu_reserve_request(vm, 2); /* replaces it before the driver answers */
	uint32_t second = (uint32_t)tv_mmio_read(vm, CR(generation), 4);
	assert_int_not_equal(first, second);
	/* The driver carried out the first: one vCPU parked, then its ack. */
	tv_mmio_write(vm, CR(parked), 4, 1);
	tv_mmio_write(vm, CR(parked_mask_lo), 4, 0x2);
	tv_mmio_write(vm, CR(ack_generation), 4, first);
	struct cpu_reserve_status st;
	assert_true(cpu_reserve_get_status(vm, &st));
	assert_false(st.acked);
	assert_int_equal(atomic_load(&dev->ctr.rejected), 0);
	/* A generation the host never made is refused. */
	tv_mmio_write(vm, CR(ack_generation), 4, second + 5);
	assert_int_equal(atomic_load(&dev->ctr.rejected), 1);
	/* Then the second, carried out: accepted. */
	tv_mmio_write(vm, CR(parked), 4, 2);
	tv_mmio_write(vm, CR(parked_mask_lo), 4, 0x6);
	tv_mmio_write(vm, CR(ack_generation), 4, second);
	assert_true(cpu_reserve_get_status(vm, &st));
	assert_true(st.acked);
	assert_int_equal(st.parked, 2);
	assert_int_equal(atomic_load(&dev->ctr.rejected), 1);
	cJSON *o = cJSON_CreateObject();
	dev->ops->counters_json(dev, o);
	assert_int_equal(cJSON_GetObjectItem(o, "stale_acks")->valuedouble, 1);
	cJSON_Delete(o);
#undef CR
	testvm_destroy(&tv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rng_reads_entropy),
		cmocka_unit_test(rng_refuses_wild_buffer),
		cmocka_unit_test(msgq_message_arrives_intact),
		cmocka_unit_test(msgq_driver_without_rings_feature),
		cmocka_unit_test(balloon_inflates_within_target),
		cmocka_unit_test(net_frame_delivered_spoof_dropped),
		cmocka_unit_test(cpu_reserve_stale_ack_is_not_a_rejection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
