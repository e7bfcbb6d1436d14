/* The /dev/kvm handle shared by all VMs of one ferry process. ferry asks KVM
 * what it can do; it never looks for vmx/svm in /proc/cpuinfo (KVM here may be
 * a software backend and still work). */
#ifndef FERRY_KVM_H
#define FERRY_KVM_H

#include <stddef.h>
#include <stdint.h>

struct kvm_cpuid2;

struct kvm {
	int fd;
	int vcpu_mmap_size;
	int max_vcpus;
	struct kvm_cpuid2 *cpuid;   /* KVM_GET_SUPPORTED_CPUID */
};

/* Opens /dev/kvm (or $FERRY_KVM_DEV) and checks the API version and every
 * capability ferry relies on; on failure writes a one-line reason. */
int kvm_open(struct kvm *kvm, char *err, size_t errlen);
void kvm_close(struct kvm *kvm);

#endif
