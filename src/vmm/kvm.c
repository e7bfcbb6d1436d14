#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define CPUID_MAX_ENTRIES 256

static const struct {
	int cap;
	const char *name;
} required_caps[] = {
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
	{ KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING" },
	{ KVM_CAP_IRQFD, "KVM_CAP_IRQFD" },
	{ KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD" },
	{ KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID" },
};

int kvm_open(struct kvm *kvm, char *err, size_t errlen)
{
	memset(kvm, 0, sizeof(*kvm));
	const char *dev = getenv("FERRY_KVM_DEV");
	if (!dev || !*dev)
		dev = "/dev/kvm";
	kvm->fd = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm->fd < 0) {
		if (errno == ENOENT)
			snprintf(err, errlen, "%s does not exist: load the kvm module or run on a host with KVM", dev);
		else
			snprintf(err, errlen, "cannot open %s: %s%s", dev, strerror(errno),
				 errno == EACCES ? " (add yourself to the kvm group or run as root)" : "");
		return -1;
	}
	int api = ioctl(kvm->fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(err, errlen, "%s: KVM API version %d, ferry needs %d", dev, api, KVM_API_VERSION);
		goto fail;
	}
	for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
		if (ioctl(kvm->fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			snprintf(err, errlen, "%s: KVM lacks %s, which ferry needs", dev, required_caps[i].name);
			goto fail;
		}
	}
	kvm->vcpu_mmap_size = ioctl(kvm->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (kvm->vcpu_mmap_size <= 0) {
		snprintf(err, errlen, "%s: KVM_GET_VCPU_MMAP_SIZE: %s", dev, strerror(errno));
		goto fail;
	}
	kvm->max_vcpus = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (kvm->max_vcpus <= 0)
		kvm->max_vcpus = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (kvm->max_vcpus <= 0)
		kvm->max_vcpus = 4;

	kvm->cpuid = calloc(1, sizeof(*kvm->cpuid) + CPUID_MAX_ENTRIES * sizeof(struct kvm_cpuid_entry2));
	if (!kvm->cpuid) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	kvm->cpuid->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm->fd, KVM_GET_SUPPORTED_CPUID, kvm->cpuid) < 0) {
		snprintf(err, errlen, "%s: KVM_GET_SUPPORTED_CPUID: %s", dev, strerror(errno));
		goto fail;
	}
	return 0;
fail:
	kvm_close(kvm);
	return -1;
}

void kvm_close(struct kvm *kvm)
{
	if (kvm->fd > 0)
		close(kvm->fd);
	free(kvm->cpuid);
	memset(kvm, 0, sizeof(*kvm));
	kvm->fd = -1;
}
