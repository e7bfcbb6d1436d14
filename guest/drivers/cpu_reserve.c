/* Processor reservation driver: see include/cpu_reserve.h and
 * include/ferry/cpu_reserve.h. */
#include <stddef.h>
#include <ferry/cpu_reserve.h>
#include "cmdline.h"
#include "cpu_reserve.h"
#include "kernel.h"
#include "kstring.h"
#include "smp.h"
#include "timer.h"
#include "virtio_pci.h"
#include "work.h"

#define MS 1000000ull
#define POLL_NS (100 * MS)       /* without a config interrupt */
#define RETRY_NS (100 * MS)      /* a CPU that did not park in time */
#define MAX_RETRIES 20           /* then acknowledge what is parked */

#define CFG(field) ((unsigned)offsetof(struct cpu_reserve_config, field))

static struct {
	struct virtio_dev dev;
	bool present, polled;
	struct work work;
	struct timer timer;
	uint32_t nr_vcpus, requested, generation, acked, parked;
	uint64_t mask;
	unsigned retries;
	uint64_t requests, parks, unparks, late;
} r;

static void timer_fired(void *unused)
{
	(void)unused;
	work_queue(&r.work);
}

/* CPU indices other than the BSP, highest APIC ID first. */
static unsigned park_order(unsigned *order)
{
	unsigned n = 0;

	for (unsigned i = 1; i < smp_cpu_count(); i++) {
		unsigned j = n++;
		while (j && smp_cpu(order[j - 1])->apic_id < smp_cpu(i)->apic_id) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	return n;
}

static void reserve_work(struct work *w)
{
	unsigned order[MAX_CPUS], n = park_order(order), want, parked = 0;
	uint32_t generation, requested;
	uint64_t mask = 0;
	bool pending = false;

	(void)w;
	generation = virtio_config_read32(&r.dev, CFG(generation));
	requested = virtio_config_read32(&r.dev, CFG(requested));
	r.nr_vcpus = virtio_config_read32(&r.dev, CFG(nr_vcpus));
	if (generation != r.generation || requested != r.requested) {
		r.requests++;
		r.retries = 0;
	}
	r.generation = generation;
	r.requested = requested;
	want = MIN(requested, n);

	/* Unpark first (the host may be giving CPUs back), then park. */
	for (unsigned k = want; k < n; k++) {
		if (smp_cpu(order[k])->parked && !smp_unpark(order[k]))
			r.unparks++;
	}
	for (unsigned k = 0; k < want; k++) {
		struct cpu *c = smp_cpu(order[k]);
		if (!c->parked) {
			int err = smp_park(order[k]);
			r.parks++;
			if (err > 0)
				r.late++;
		}
		if (smp_is_parked(order[k])) {
			parked++;
			if (c->apic_id < 64)
				mask |= 1ull << c->apic_id;
		} else {
			pending = true;  /* asked; parks at its next preemption point */
		}
	}
	r.parked = parked;
	r.mask = mask;
	virtio_config_write32(&r.dev, CFG(parked), parked);
	virtio_config_write32(&r.dev, CFG(parked_mask_lo), (uint32_t)mask);
	virtio_config_write32(&r.dev, CFG(parked_mask_hi), (uint32_t)(mask >> 32));
	if (!pending || ++r.retries > MAX_RETRIES) {
		virtio_config_write32(&r.dev, CFG(ack_generation), generation);
		r.acked = generation;
	}
	/* A newer request while we worked, a CPU still to park, or polling. */
	timer_cancel(&r.timer);
	if (virtio_config_read32(&r.dev, CFG(generation)) != generation)
		work_queue(&r.work);
	else if (pending && r.retries <= MAX_RETRIES)
		timer_start(&r.timer, RETRY_NS, timer_fired, NULL);
	else if (r.polled)
		timer_start(&r.timer, POLL_NS, timer_fired, NULL);
}

/* Interrupt context. */
static void config_changed(struct virtio_dev *vd, void *arg)
{
	(void)vd;
	(void)arg;
	work_queue(&r.work);
}

int cpu_reserve_init(void)
{
	int err;

	if (!cmdline_get_bool("cpu_reserve", true))
		return -1;
	err = virtio_pci_probe(&r.dev, VIRTIO_ID_VCPU_RESERVE, 0);
	if (err)
		return err;
	if (virtio_init(&r.dev, 0))
		return -2;
	if (r.dev.device_cfg_len < sizeof(struct cpu_reserve_config)) {
		kprintf("cpu-reserve: configuration space of %u bytes is too small\n", r.dev.device_cfg_len);
		virtio_fail(&r.dev);
		return -2;
	}
	work_init(&r.work, reserve_work);
	r.polled = r.dev.config_vector < 0;
	virtio_set_config_handler(&r.dev, config_changed, NULL);
	virtio_driver_ok(&r.dev);
	r.present = true;
	r.generation = r.acked = UINT32_MAX;
	pr_info("cpu-reserve: %u vCPUs, %s\n", virtio_config_read32(&r.dev, CFG(nr_vcpus)),
		r.polled ? "polled" : "MSI-X");
	work_queue(&r.work);
	return 0;
}

void cpu_reserve_info(struct cpu_reserve_info *ri)
{
	*ri = (struct cpu_reserve_info){
		.present = r.present, .nr_vcpus = r.nr_vcpus, .requested = r.requested,
		.generation = r.generation, .acked_generation = r.acked, .parked = r.parked,
		.parked_mask = r.mask, .requests = r.requests, .parks = r.parks,
		.unparks = r.unparks, .late = r.late,
	};
}
