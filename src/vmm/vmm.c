#include "vmm/vmm.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "host/eventloop.h"
#include "host/msgq_switch.h"
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
	evl_destroy(vmm->evl);
	msgq_switch_destroy(vmm->msgq);
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
