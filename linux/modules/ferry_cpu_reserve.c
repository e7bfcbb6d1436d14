// SPDX-License-Identifier: GPL-2.0
/*
 * ferry_cpu_reserve: Linux driver for ferry's processor-reservation device
 * (virtio type 0xf8, PCI 1af4:1138; docs/devices/cpu_reserve.md,
 * include/ferry/cpu_reserve.h). The host asks for a number of vCPUs to be
 * parked; the driver takes CPUs offline or back online with CPU hotplug,
 * the same operation as writing 0 or 1 to /sys/devices/system/cpu/cpuN/online
 * (remove_cpu() and add_cpu() are what that file calls), so the file shows
 * the result. An offline x86 CPU halts with interrupts off, so its vCPU
 * thread sleeps in the host. Then the driver reports what is offline and
 * acknowledges the request's generation.
 *
 * Which CPUs: never the boot CPU, the highest APIC IDs first. A CPU an
 * administrator took offline counts as parked and is never brought back by
 * the driver; CPUs the driver parked come back when the host asks for fewer.
 * The report is always what is true: if a CPU cannot go offline, fewer are
 * parked and the acknowledgement says so.
 */
#include <linux/cpu.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/virtio.h>
#include <linux/virtio_config.h>
#include <linux/workqueue.h>
#include <asm/processor.h>

#include <ferry/cpu_reserve.h>

#define CFG(field) offsetof(struct cpu_reserve_config, field)

struct reserve {
	struct virtio_device *vdev;
	struct work_struct work;
	struct workqueue_struct *wq;
	struct mutex lock;
	bool ready;                /* false once removal starts */
	DECLARE_BITMAP(ours, NR_CPUS); /* CPUs this driver took offline */
	u32 generation;            /* the last one acknowledged */
	unsigned long requests, parks, unparks, failures;
};

static u32 apic_of(unsigned int cpu)
{
	return cpu_data(cpu).apicid;
}

/* The CPU that may park next: online, not the boot CPU, highest APIC ID
 * (nr_cpu_ids if none). */
static unsigned int next_to_park(void)
{
	unsigned int cpu, best = nr_cpu_ids;

	for_each_online_cpu(cpu)
		if (cpu != 0 && apic_of(cpu) != 0 && (best == nr_cpu_ids || apic_of(cpu) > apic_of(best)))
			best = cpu;
	return best;
}

/* A CPU this driver parked that may come back first: lowest APIC ID. */
static unsigned int next_to_unpark(struct reserve *r)
{
	unsigned int cpu, best = nr_cpu_ids;

	for_each_cpu(cpu, to_cpumask(r->ours))
		if (!cpu_online(cpu) && (best == nr_cpu_ids || apic_of(cpu) < apic_of(best)))
			best = cpu;
	return best;
}

/* Parked: every present CPU but the boot CPU that is offline. */
static unsigned int parked_now(u64 *mask)
{
	unsigned int cpu, n = 0;

	*mask = 0;
	for_each_present_cpu(cpu) {
		if (cpu == 0 || cpu_online(cpu))
			continue;
		n++;
		if (apic_of(cpu) < 64)
			*mask |= 1ull << apic_of(cpu);
	}
	return n;
}

static void reserve_work(struct work_struct *w)
{
	struct reserve *r = container_of(w, struct reserve, work);
	struct virtio_device *vdev = r->vdev;
	u32 generation, requested, nr_vcpus, parked;
	unsigned int tries = 0;
	u64 mask;

	mutex_lock(&r->lock);
	if (!r->ready)
		goto out;
again:
	generation = virtio_cread32(vdev, CFG(generation));
	requested = virtio_cread32(vdev, CFG(requested));
	nr_vcpus = virtio_cread32(vdev, CFG(nr_vcpus));
	if (generation != r->generation)
		r->requests++;
	/* One CPU at a time, each step checked against what is true now:
	 * an administrator may change CPUs meanwhile. */
	while ((parked = parked_now(&mask)) != requested) {
		unsigned int cpu;
		int err;

		if (parked < requested) {
			cpu = next_to_park();
			if (cpu >= nr_cpu_ids)
				break;   /* only the boot CPU is left */
			err = remove_cpu(cpu);
			if (!err) {
				set_bit(cpu, r->ours);
				r->parks++;
			}
		} else {
			cpu = next_to_unpark(r);
			if (cpu >= nr_cpu_ids)
				break;   /* the rest were parked by someone else */
			err = add_cpu(cpu);
			if (!err) {
				clear_bit(cpu, r->ours);
				r->unparks++;
			}
		}
		if (err) {
			r->failures++;
			dev_warn_ratelimited(&vdev->dev, "cpu%u (APIC ID %u) did not go %s: %d\n", cpu, apic_of(cpu),
					     parked < requested ? "offline" : "online", err);
			break;
		}
	}
	/* The device refuses a count it cannot hold; report within it. */
	if (parked >= nr_vcpus)
		parked = nr_vcpus ? nr_vcpus - 1 : 0;
	virtio_cwrite32(vdev, CFG(parked), parked);
	virtio_cwrite32(vdev, CFG(parked_mask_lo), (u32)mask);
	virtio_cwrite32(vdev, CFG(parked_mask_hi), (u32)(mask >> 32));
	virtio_cwrite32(vdev, CFG(ack_generation), generation);
	if (generation != r->generation)
		dev_info(&vdev->dev, "request %u: %u of %u vCPUs to park, %u parked (APIC mask 0x%llx)\n", generation,
			 requested, nr_vcpus, parked, mask);
	r->generation = generation;
	/* A newer request while this one was carried out. */
	if (virtio_cread32(vdev, CFG(generation)) != generation && ++tries < 16)
		goto again;
out:
	mutex_unlock(&r->lock);
}

/* Interrupt context. */
static void reserve_config_changed(struct virtio_device *vdev)
{
	struct reserve *r = vdev->priv;

	if (r)
		queue_work(r->wq, &r->work);
}

static int reserve_probe(struct virtio_device *vdev)
{
	struct reserve *r;
	int err;

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	r->vdev = vdev;
	r->generation = U32_MAX;
	mutex_init(&r->lock);
	INIT_WORK(&r->work, reserve_work);
	/* Ordered and unbound: CPU hotplug must not run on a worker bound to
	 * the CPU going away. */
	r->wq = alloc_ordered_workqueue("ferry-cpu-reserve", 0);
	if (!r->wq) {
		kfree(r);
		return -ENOMEM;
	}
	vdev->priv = r;
	/* No queues; this sets up the configuration-change interrupt. */
	err = virtio_find_vqs(vdev, 0, NULL, NULL, NULL, NULL);
	if (err) {
		destroy_workqueue(r->wq);
		vdev->priv = NULL;
		kfree(r);
		return err;
	}
	virtio_device_ready(vdev);
	r->ready = true;
	dev_info(&vdev->dev, "%u vCPUs, %u CPUs online\n", virtio_cread32(vdev, CFG(nr_vcpus)), num_online_cpus());
	/* The state at start: acknowledge generation 0 (or whatever came). */
	queue_work(r->wq, &r->work);
	return 0;
}

/* On removal, CPUs this driver parked come back: nobody would answer for
 * them any more. */
static void reserve_remove(struct virtio_device *vdev)
{
	struct reserve *r = vdev->priv;
	unsigned int cpu;

	mutex_lock(&r->lock);
	r->ready = false;
	mutex_unlock(&r->lock);
	virtio_reset_device(vdev);
	flush_workqueue(r->wq);
	destroy_workqueue(r->wq);
	vdev->config->del_vqs(vdev);
	for_each_cpu(cpu, to_cpumask(r->ours))
		if (!cpu_online(cpu) && add_cpu(cpu))
			dev_warn(&vdev->dev, "cpu%u stays offline\n", cpu);
	dev_info(&vdev->dev, "%lu requests, %lu parks, %lu unparks, %lu failures\n", r->requests, r->parks,
		 r->unparks, r->failures);
	kfree(r);
}

static const struct virtio_device_id id_table[] = {
	{ VIRTIO_ID_VCPU_RESERVE, VIRTIO_DEV_ANY_ID },
	{ 0 },
};

static struct virtio_driver reserve_driver = {
	.driver.name = KBUILD_MODNAME,
	.driver.owner = THIS_MODULE,
	.id_table = id_table,
	.probe = reserve_probe,
	.remove = reserve_remove,
	.config_changed = reserve_config_changed,
};

module_virtio_driver(reserve_driver);
MODULE_DEVICE_TABLE(virtio, id_table);
MODULE_DESCRIPTION("ferry processor reservation: parks vCPUs by CPU hotplug at the host's request");
MODULE_LICENSE("GPL");
