#include "vmm/vcpu.h"

#include <errno.h>
#include <sched.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/kvm.h"
#include "vmm/log.h"
#include "vmm/sandbox.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define KICK_SIGNAL SIGUSR1

/* CPUID leaf where ferry tells the guest its TSC and LAPIC timer frequencies
 * (kHz), as VMware and several VMMs do; ferry-guest reads it to skip
 * calibrating against the PIT. */
#define CPUID_TIMING_LEAF 0x40000010u
#define LAPIC_BUS_KHZ     1000000u   /* KVM's emulated APIC bus runs at 1 GHz */

static void kick_handler(int sig)
{
	(void)sig;
}

void vcpu_signals_init(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigemptyset(&sa.sa_mask);
	/* KVM_RUN returns EINTR either way; the profiler's ticks must not
	 * break a device's read or write on the vCPU thread. */
	if (getenv("FERRY_PROFILE"))
		sa.sa_flags = SA_RESTART;
	sigaction(KICK_SIGNAL, &sa, NULL);
}

/* A debugging aid, off unless FERRY_PROFILE=PATH is set: each vCPU thread
 * kicks itself out of KVM_RUN every millisecond and records the guest's RIP;
 * when the VM is destroyed the samples go to PATH.<vm>.vcpu<N> as "count rip"
 * lines, most frequent first. Map them with System.map or
 * `addr2line -f -e vmlinux` (linux/README.md). FERRY_PROFILE_MS=N keeps only
 * the first N samples (about the first N ms of guest time). */
#define PROFILE_MAX_SAMPLES (1u << 21)

static void profile_start(struct vcpu *vcpu)
{
	if (!getenv("FERRY_PROFILE"))
		return;
	/* FERRY_PROFILE_MS=N: only the first N ms (one sample each). */
	const char *ms = getenv("FERRY_PROFILE_MS");
	vcpu->max_samples = ms && atol(ms) > 0 && (unsigned long)atol(ms) < PROFILE_MAX_SAMPLES ? (size_t)atol(ms)
											: PROFILE_MAX_SAMPLES;
	vcpu->samples = malloc(PROFILE_MAX_SAMPLES * sizeof(*vcpu->samples));
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = KICK_SIGNAL };
	sev._sigev_un._tid = gettid();
	struct itimerspec its = { { 0, 1000000 }, { 0, 1000000 } };
	if (!vcpu->samples || timer_create(CLOCK_MONOTONIC, &sev, &vcpu->profile_timer) < 0) {
		free(vcpu->samples);
		vcpu->samples = NULL;
		return;
	}
	if (timer_settime(vcpu->profile_timer, 0, &its, NULL) < 0) {
		timer_delete(vcpu->profile_timer);
		free(vcpu->samples);
		vcpu->samples = NULL;
		return;
	}
	vcpu->profiling = true;
}

static void profile_sample(struct vcpu *vcpu)
{
	struct kvm_regs regs;
	if (vcpu->profiling && vcpu->nr_samples < vcpu->max_samples && ioctl(vcpu->fd, KVM_GET_REGS, &regs) == 0)
		vcpu->samples[vcpu->nr_samples++] = regs.rip;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct rip_count {
	uint64_t rip, count;
};

static int by_count(const void *a, const void *b)
{
	const struct rip_count *x = a, *y = b;
	return x->count < y->count ? 1 : x->count > y->count ? -1 : cmp_u64(&x->rip, &y->rip);
}

static void profile_write(struct vcpu *vcpu)
{
	if (vcpu->profiling)
		timer_delete(vcpu->profile_timer);
	const char *base = getenv("FERRY_PROFILE");
	if (!vcpu->samples || !base || vcpu->nr_samples == 0) {
		free(vcpu->samples);
		return;
	}
	qsort(vcpu->samples, vcpu->nr_samples, sizeof(uint64_t), cmp_u64);
	/* Counted in place: the distinct RIPs fit where the samples were. */
	struct rip_count *c = calloc(vcpu->nr_samples, sizeof(*c));
	size_t n = 0;
	for (size_t i = 0; c && i < vcpu->nr_samples; i++) {
		if (n && c[n - 1].rip == vcpu->samples[i])
			c[n - 1].count++;
		else
			c[n++] = (struct rip_count){ vcpu->samples[i], 1 };
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s.%s.vcpu%u", base, vcpu->vm->name, vcpu->index);
	FILE *f = c ? fopen(path, "w") : NULL;
	if (f) {
		qsort(c, n, sizeof(*c), by_count);
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%llu 0x%llx\n", (unsigned long long)c[i].count, (unsigned long long)c[i].rip);
		if (fclose(f) == 0)
			log_info(vcpu->vm->name, "vcpu %u: %zu RIP samples in %s", vcpu->index, vcpu->nr_samples, path);
	}
	free(c);
	free(vcpu->samples);
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == index)
			return &c->entries[i];
	return NULL;
}

static int vcpu_setup_cpuid(struct vcpu *vcpu, char *err, size_t errlen)
{
	struct kvm *kvm = vcpu->vm->kvm;
	size_t size = sizeof(struct kvm_cpuid2) + (kvm->cpuid->nent + 1) * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = malloc(size);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(c, kvm->cpuid, sizeof(struct kvm_cpuid2) + kvm->cpuid->nent * sizeof(struct kvm_cpuid_entry2));
	unsigned apic_id = vcpu->index, n = vcpu->vm->nr_vcpus;

	struct kvm_cpuid_entry2 *e = cpuid_find(c, 1, 0);
	if (e) {
		e->ebx = (e->ebx & 0x0000ffffu) | (apic_id << 24) | ((n & 0xffu) << 16);
		e->ecx |= 1u << 31; /* running under a hypervisor */
		if (n > 1)
			e->edx |= 1u << 28;
	}
	/* x2APIC topology: one thread per core, all cores in one package. */
	unsigned core_bits = 0;
	while ((1u << core_bits) < n)
		core_bits++;
	for (uint32_t sub = 0; (e = cpuid_find(c, 0xb, sub)) != NULL; sub++) {
		e->edx = apic_id;
		if (sub == 0) {
			e->eax = 0;
			e->ebx = 1;
			e->ecx = (1u << 8) | sub;
		} else if (sub == 1) {
			e->eax = core_bits;
			e->ebx = n;
			e->ecx = (2u << 8) | sub;
		} else {
			e->eax = e->ebx = 0;
			e->ecx = sub;
		}
	}

	int tsc_khz = ioctl(vcpu->fd, KVM_GET_TSC_KHZ, 0);
	struct kvm_cpuid_entry2 *hv = cpuid_find(c, 0x40000000, 0);
	if (hv && tsc_khz > 0 && !cpuid_find(c, CPUID_TIMING_LEAF, 0)) {
		if (hv->eax < CPUID_TIMING_LEAF)
			hv->eax = CPUID_TIMING_LEAF;
		c->entries[c->nent++] = (struct kvm_cpuid_entry2){
			.function = CPUID_TIMING_LEAF, .eax = (uint32_t)tsc_khz, .ebx = LAPIC_BUS_KHZ,
		};
	}

	int ret = ioctl(vcpu->fd, KVM_SET_CPUID2, c);
	if (ret < 0)
		snprintf(err, errlen, "vcpu %u: KVM_SET_CPUID2: %s", vcpu->index, strerror(errno));
	free(c);
	return ret;
}

struct vcpu *vcpu_create(struct vm *vm, unsigned index, char *err, size_t errlen)
{
	struct vcpu *vcpu = calloc(1, sizeof(*vcpu));
	if (!vcpu) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	vcpu->vm = vm;
	vcpu->index = index;
	vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (vcpu->fd < 0) {
		snprintf(err, errlen, "vcpu %u: KVM_CREATE_VCPU: %s", index, strerror(errno));
		free(vcpu);
		return NULL;
	}
	vcpu->run = mmap(NULL, (size_t)vm->kvm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		snprintf(err, errlen, "vcpu %u: mmap of kvm_run: %s", index, strerror(errno));
		close(vcpu->fd);
		free(vcpu);
		return NULL;
	}
	if (vcpu_setup_cpuid(vcpu, err, errlen) < 0) {
		vcpu_destroy(vcpu);
		return NULL;
	}
	return vcpu;
}

int vcpu_set_pvh_entry(struct vcpu *vcpu, uint32_t entry, uint32_t start_info, char *err, size_t errlen)
{
	struct kvm_sregs s;
	if (ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
		snprintf(err, errlen, "KVM_GET_SREGS: %s", strerror(errno));
		return -1;
	}
	/* PVH: flat 32-bit code and data segments, protected mode, no paging. */
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 0xb,
		.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
	};
	struct kvm_segment data = code;
	data.type = 0x3;
	data.selector = 0x18;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = 0x20, .type = 0xb, .present = 1 };
	s.cr0 = 0x11; /* PE | ET */
	s.cr3 = 0;
	s.cr4 = 0;
	s.efer = 0;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &s) < 0) {
		snprintf(err, errlen, "KVM_SET_SREGS: %s", strerror(errno));
		return -1;
	}
	struct kvm_regs r = { .rip = entry, .rbx = start_info, .rflags = 0x2 };
	if (ioctl(vcpu->fd, KVM_SET_REGS, &r) < 0) {
		snprintf(err, errlen, "KVM_SET_REGS: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* "RIP 0x... bytes: 0f 01 ..." for reports of exits ferry cannot handle. */
static void describe_rip(struct vcpu *vcpu, const uint8_t *kvm_bytes, unsigned kvm_len, char *out, size_t len)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(vcpu->fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu->fd, KVM_GET_SREGS, &s) < 0) {
		snprintf(out, len, "registers unavailable: %s", strerror(errno));
		return;
	}
	uint8_t bytes[16];
	unsigned n = 0;
	if (kvm_len) {
		n = kvm_len > sizeof(bytes) ? sizeof(bytes) : kvm_len;
		memcpy(bytes, kvm_bytes, n);
	} else {
		struct kvm_translation t = { .linear_address = s.cs.base + r.rip };
		if (ioctl(vcpu->fd, KVM_TRANSLATE, &t) == 0 && t.valid &&
		    gm_read(&vcpu->vm->mem, t.physical_address, bytes, 15) == 0)
			n = 15;
	}
	int off = snprintf(out, len, "RIP 0x%llx (CS base 0x%llx, CR0 0x%llx, EFER 0x%llx), instruction bytes:",
			   (unsigned long long)r.rip, (unsigned long long)s.cs.base,
			   (unsigned long long)s.cr0, (unsigned long long)s.efer);
	for (unsigned i = 0; i < n && off > 0 && (size_t)off < len; i++)
		off += snprintf(out + off, len - (size_t)off, " %02x", bytes[i]);
	if (n == 0 && off > 0 && (size_t)off < len)
		snprintf(out + off, len - (size_t)off, " (unreadable)");
}

static void handle_io(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	atomic_fetch_add(&vcpu->ctr.io_exits, 1);
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (!bus_dispatch(&vcpu->vm->pio, run->io.port, data, run->io.size, is_write) &&
		    log_limit_ok(&vcpu->vm->pio.unhandled_log))
			log_warn(vcpu->vm->name, "vcpu %u: %s of %u bytes at unhandled I/O port 0x%x ignored",
				 vcpu->index, is_write ? "write" : "read", run->io.size, run->io.port);
	}
}

static void handle_mmio(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	atomic_fetch_add(&vcpu->ctr.mmio_exits, 1);
	uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
	if (!bus_dispatch(&vcpu->vm->mmio, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write) &&
	    log_limit_ok(&vcpu->vm->mmio.unhandled_log))
		log_warn(vcpu->vm->name, "vcpu %u: %s of %u bytes at unhandled MMIO address 0x%llx ignored",
			 vcpu->index, run->mmio.is_write ? "write" : "read", len,
			 (unsigned long long)run->mmio.phys_addr);
}

/* Returns false when the VM must stop. */
static bool handle_exit(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct kvm_run *run = vcpu->run;
	char detail[512], where[200];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(vcpu);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(vcpu);
		return true;
	case KVM_EXIT_IRQ_WINDOW_OPEN:
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		describe_rip(vcpu, NULL, 0, where, sizeof(where));
		snprintf(detail, sizeof(detail), "vcpu %u: triple fault (KVM_EXIT_SHUTDOWN) at %s", vcpu->index, where);
		vm_stop(vm, VM_EXIT_TRIPLE_FAULT, 0, detail);
		return false;
	case KVM_EXIT_INTERNAL_ERROR: {
		const uint8_t *bytes = NULL;
		unsigned nbytes = 0;
		if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
		    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
			bytes = run->emulation_failure.insn_bytes;
			nbytes = run->emulation_failure.insn_size;
		}
		describe_rip(vcpu, bytes, nbytes, where, sizeof(where));
		snprintf(detail, sizeof(detail), "vcpu %u: KVM internal error (suberror %u%s) at %s", vcpu->index,
			 run->internal.suberror,
			 run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ? ": instruction emulation failed" : "",
			 where);
		vm_stop(vm, VM_EXIT_INTERNAL_ERROR, 0, detail);
		return false;
	}
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(detail, sizeof(detail), "vcpu %u: KVM could not enter the guest (hardware reason 0x%llx)",
			 vcpu->index, (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vm_stop(vm, VM_EXIT_INTERNAL_ERROR, 0, detail);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			snprintf(detail, sizeof(detail), "vcpu %u: guest requested a reset", vcpu->index);
			vm_stop(vm, VM_EXIT_GUEST_RESET, 0, detail);
		} else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
			vm_stop(vm, VM_EXIT_POWEROFF, 0, NULL);
		} else {
			snprintf(detail, sizeof(detail), "vcpu %u: system event %u", vcpu->index, run->system_event.type);
			vm_stop(vm, VM_EXIT_INTERNAL_ERROR, 0, detail);
		}
		return false;
	default:
		describe_rip(vcpu, NULL, 0, where, sizeof(where));
		snprintf(detail, sizeof(detail), "vcpu %u: unexpected KVM exit reason %u at %s", vcpu->index,
			 run->exit_reason, where);
		vm_stop(vm, VM_EXIT_INTERNAL_ERROR, 0, detail);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	char tname[64];
	snprintf(tname, sizeof(tname), "vcpu%u/%s", vcpu->index, vm->name);
	tname[15] = '\0'; /* the kernel keeps 15 characters */
	pthread_setname_np(pthread_self(), tname);
	if (pthread_getcpuclockid(pthread_self(), &vcpu->cpu_clock) == 0)
		atomic_store(&vcpu->clock_ready, true);
	char why[160];
	profile_start(vcpu); /* before the sandbox: it allows no timer_create */
	if (sandbox_thread(SANDBOX_VCPU, tname, why, sizeof(why)) < 0)
		vm_stop(vm, VM_EXIT_VMM_ERROR, 0, why);

	pthread_mutex_lock(&vm->lock);
	vm->running_vcpus++;
	pthread_mutex_unlock(&vm->lock);
	while (!atomic_load(&vm->stopping)) {
		if (__atomic_load_n(&vm->pause_requests, __ATOMIC_RELAXED))
			vm_pause_point(vm);
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				vcpu->run->immediate_exit = 0;
				profile_sample(vcpu);
				continue;
			}
			char detail[512];
			snprintf(detail, sizeof(detail), "vcpu %u: KVM_RUN: %s%s", vcpu->index, strerror(errno),
				 errno == EFAULT ? " (guest memory could not be provided by the host)" : "");
			vm_stop(vm, VM_EXIT_VMM_ERROR, 0, detail);
			break;
		}
		atomic_fetch_add(&vcpu->ctr.exits, 1);
		if (!handle_exit(vcpu))
			break;
		for (unsigned h = 0; h < vm->nr_exit_hooks; h++)
			vm->exit_hook[h].fn(vm->exit_hook[h].arg);
	}
	struct timespec ts;
	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
		vcpu->cpu_time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	atomic_store(&vcpu->clock_ready, false); /* the clock dies with the thread */
	pthread_mutex_lock(&vm->lock);
	vm->running_vcpus--;
	pthread_cond_broadcast(&vm->pause_cond); /* a pauser need not wait for it */
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

uint64_t vcpu_cpu_time_ns(struct vcpu *vcpu)
{
	struct timespec ts;
	if (atomic_load(&vcpu->clock_ready) && clock_gettime(vcpu->cpu_clock, &ts) == 0)
		return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return vcpu->cpu_time_ns;
}

int vcpu_pin(struct vcpu *vcpu, int cpu)
{
	if (!vcpu->started)
		return -1;
	/* Unpinned means every CPU ferry was given, as found at start-up. */
	cpu_set_t set = vcpu->vm->vmm->host_cpus;
	if (cpu >= 0) {
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
	}
	return pthread_setaffinity_np(vcpu->thread, sizeof(set), &set) == 0 ? 0 : -1;
}

int vcpu_start(struct vcpu *vcpu)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024); /* exit handling is shallow */
	int ret = pthread_create(&vcpu->thread, &attr, vcpu_thread, vcpu);
	pthread_attr_destroy(&attr);
	if (ret != 0)
		return -1;
	vcpu->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *vcpu)
{
	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (vcpu->started && !pthread_equal(pthread_self(), vcpu->thread))
		pthread_kill(vcpu->thread, KICK_SIGNAL);
}

void vcpu_join(struct vcpu *vcpu)
{
	if (vcpu->started) {
		pthread_join(vcpu->thread, NULL);
		vcpu->started = false;
	}
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (!vcpu)
		return;
	vcpu_join(vcpu);
	profile_write(vcpu);
	munmap(vcpu->run, (size_t)vcpu->vm->kvm->vcpu_mmap_size);
	close(vcpu->fd);
	free(vcpu);
}
