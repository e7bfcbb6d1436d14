#include "vmm/vmm.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "host/eventloop.h"
#include "host/link.h"
#include "host/msgq_switch.h"
#include "host/net_switch.h"
#include "vmm/memory.h"
#include "vmm/vcpu.h"

int vmm_init(struct vmm *vmm, char *err, size_t errlen)
{
	memset(vmm, 0, sizeof(*vmm));
	pthread_mutex_init(&vmm->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* timeouts immune to clock changes */
	pthread_cond_init(&vmm->vm_stopped, &attr);
	pthread_condattr_destroy(&attr);
	vcpu_signals_init();
	/* One malloc arena for every thread: a thread's own arena, when it
	 * shrinks, makes glibc read /proc/sys/vm/overcommit_memory, which the
	 * sandboxed threads may not open (seen as an event-loop thread killed
	 * by its seccomp filter after freeing many control clients). */
	mallopt(M_ARENA_MAX, 1);
	if (sched_getaffinity(0, sizeof(vmm->host_cpus), &vmm->host_cpus) < 0) {
		snprintf(err, errlen, "sched_getaffinity: %s", strerror(errno));
		return -1;
	}
	vmm->nr_host_cpus = (unsigned)CPU_COUNT(&vmm->host_cpus);
	if (kvm_open(&vmm->kvm, err, errlen) < 0)
		return -1;
	vmm->evl = evl_create();
	if (!vmm->evl || evl_start(vmm->evl) < 0) {
		snprintf(err, errlen, "cannot start the event loop thread");
		kvm_close(&vmm->kvm);
		return -1;
	}
	return 0;
}

void vmm_destroy(struct vmm *vmm)
{
	/* Services first: they take their handlers off the event loop. */
	for (unsigned i = 0; i < vmm->nr_nets; i++)
		net_switch_destroy(vmm->nets[i]);
	evl_destroy(vmm->evl);
	msgq_switch_destroy(vmm->msgq);
	link_service_destroy(vmm->links);
	gm_release_hugepages();
	kvm_close(&vmm->kvm);
	pthread_cond_destroy(&vmm->vm_stopped);
	pthread_mutex_destroy(&vmm->lock);
}

void vmm_notify_stopped(struct vmm *vmm)
{
	pthread_mutex_lock(&vmm->lock);
	pthread_cond_broadcast(&vmm->vm_stopped);
	pthread_mutex_unlock(&vmm->lock);
}

int vmm_host_cpu(const struct vmm *vmm, unsigned n)
{
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &vmm->host_cpus) && n-- == 0)
			return cpu;
	return -1;
}
