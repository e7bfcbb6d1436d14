/* Process-wide context shared by all VMs of a run: the KVM handle, the event
 * loop thread, and a condition the runner waits on for VMs to stop. */
#ifndef FERRY_VMM_H
#define FERRY_VMM_H

#include <pthread.h>
#include <sched.h>

#include "vmm/config.h"
#include "vmm/kvm.h"

struct eventloop;
struct msgq_switch;
struct net_switch;
struct link_service;
struct ferry_config;

struct vmm {
	struct kvm kvm;
	struct eventloop *evl;
	const struct ferry_config *cfg;  /* the whole run, for devices that span VMs */
	struct msgq_switch *msgq;        /* message switch, if any VM has a msgq */
	struct net_switch *nets[CFG_MAX_NETWORKS]; /* one per network of the config */
	unsigned nr_nets;
	struct link_service *links;      /* shared-memory links, if the config has any */
	pthread_mutex_t lock;
	pthread_cond_t vm_stopped;  /* signalled whenever a VM stops */
	/* The host CPUs ferry may run on, read once at start-up: sandboxed
	 * threads cannot open /sys to ask again (sysconf would). */
	cpu_set_t host_cpus;
	unsigned nr_host_cpus;
};

int vmm_init(struct vmm *vmm, char *err, size_t errlen);
void vmm_destroy(struct vmm *vmm);
void vmm_notify_stopped(struct vmm *vmm);
/* The n-th CPU (from 0) of host_cpus, or -1 if there are not that many. */
int vmm_host_cpu(const struct vmm *vmm, unsigned n);

#endif
