#include "vmm/vmm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "devices/msgq.h"
#include "devices/virtio_balloon.h"
#include "host/cpu_scheduler.h"
#include "host/eventloop.h"
#include "host/link.h"
#include "host/mem_scheduler.h"
#include "host/msgq_switch.h"
#include "host/net_switch.h"
#include "ferry/msgq.h"
#include "vmm/clock.h"
#include "vmm/events.h"
#include "vmm/log.h"
#include "vmm/memory.h"
#include "vmm/sandbox.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define WATCH_NS (200 * 1000000ull)   /* how often balloon targets are checked for events */
#define WAKE_SIGNAL SIGUSR2           /* ends the signal thread */

static void set_code(char *code, const char *what)
{
	snprintf(code, 32, "%s", what);
}

/* --- signals ------------------------------------------------------------- */

static void *signal_thread(void *arg)
{
	struct vmm *vmm = arg;
	char why[160];
	pthread_setname_np(pthread_self(), "ferry-control");
	if (sandbox_thread(SANDBOX_CONTROL, "ferry-control", why, sizeof(why)) < 0)
		log_error(NULL, "%s", why);
	for (;;) {
		int sig;
		if (sigwait(&vmm->signals, &sig) != 0 || sig == WAKE_SIGNAL)
			return NULL;
		log_warn(NULL, "got %s; stopping all VMs", strsignal(sig));
		vmm_stop_all(vmm, NULL);
	}
}

int vmm_init(struct vmm *vmm, char *err, size_t errlen)
{
	memset(vmm, 0, sizeof(*vmm));
	pthread_mutex_init(&vmm->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* timeouts immune to clock changes */
	pthread_cond_init(&vmm->vm_stopped, &attr);
	pthread_condattr_destroy(&attr);
	vmm->requests_tail = &vmm->requests;
	vmm->kvm.fd = -1;
	vcpu_signals_init();
	/* One malloc arena for every thread: a thread's own arena, when it
	 * shrinks, makes glibc read /proc/sys/vm/overcommit_memory, which the
	 * sandboxed threads may not open (seen as an event-loop thread killed
	 * by its seccomp filter after freeing many control clients). */
	mallopt(M_ARENA_MAX, 1);
	/* SIGINT and SIGTERM go to one thread of their own, which stops the
	 * VMs cleanly so the summary is still written; every thread made from
	 * here on has them blocked. */
	sigemptyset(&vmm->signals);
	sigaddset(&vmm->signals, SIGINT);
	sigaddset(&vmm->signals, SIGTERM);
	sigaddset(&vmm->signals, WAKE_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &vmm->signals, NULL);
	if (sched_getaffinity(0, sizeof(vmm->host_cpus), &vmm->host_cpus) < 0) {
		snprintf(err, errlen, "sched_getaffinity: %s", strerror(errno));
		return -1;
	}
	vmm->nr_host_cpus = (unsigned)CPU_COUNT(&vmm->host_cpus);
	if (kvm_open(&vmm->kvm, err, errlen) < 0) {
		vmm->kvm.fd = -1;
		return -1;
	}
	if (events_init() < 0) {
		snprintf(err, errlen, "cannot make the event queue: %s", strerror(errno));
		return -1;
	}
	vmm->evl = evl_create();
	if (!vmm->evl || evl_start(vmm->evl) < 0) {
		snprintf(err, errlen, "cannot start the event loop thread");
		return -1;
	}
	vmm->evl_started = true;
	if (pthread_create(&vmm->signal_thread, NULL, signal_thread, vmm) != 0) {
		snprintf(err, errlen, "cannot start the signal thread");
		return -1;
	}
	vmm->signal_thread_started = true;
	return 0;
}

/* --- the list of VMs --------------------------------------------------------- */

static struct vmm_entry *entry_new(struct vmm *vmm, const struct vm_config *cfg)
{
	struct vmm_entry *e = calloc(1, sizeof(*e));
	if (!e || !(e->cfg = malloc(sizeof(*e->cfg)))) {
		free(e);
		return NULL;
	}
	*e->cfg = *cfg;
	e->id = vmm->next_id;
	snprintf(e->name, sizeof(e->name), "%s", cfg->name);
	return e;
}

static void entry_free(struct vmm_entry *e)
{
	if (!e)
		return;
	free(e->cfg);
	free(e->error);
	cJSON_Delete(e->final);
	free(e);
}

/* Entries are added and taken out only by the main thread, with no
 * event-loop handler running and the lock held. */
struct list_change {
	struct vmm *vmm;
	struct vmm_entry **add;
	unsigned nr_add;
	int result;
};

static void list_append(void *arg)
{
	struct list_change *c = arg;
	struct vmm *vmm = c->vmm;
	pthread_mutex_lock(&vmm->lock);
	c->result = -1;
	if (vmm->nr_entries + c->nr_add > vmm->cap_entries) {
		unsigned cap = vmm->cap_entries ? vmm->cap_entries : 16;
		while (cap < vmm->nr_entries + c->nr_add)
			cap *= 2;
		struct vmm_entry **p = realloc(vmm->entries, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&vmm->lock);
			return;
		}
		vmm->entries = p;
		vmm->cap_entries = cap;
	}
	for (unsigned i = 0; i < c->nr_add; i++)
		vmm->entries[vmm->nr_entries++] = c->add[i];
	c->result = 0;
	pthread_mutex_unlock(&vmm->lock);
}

/* Takes the last nr_add entries out again (a failed addition). */
static void list_truncate(void *arg)
{
	struct list_change *c = arg;
	pthread_mutex_lock(&c->vmm->lock);
	c->vmm->nr_entries -= c->nr_add;
	pthread_mutex_unlock(&c->vmm->lock);
}

static bool live(const struct vmm_entry *e)
{
	return !e->removed && !e->building;
}

struct vmm_entry *vmm_find(struct vmm *vmm, const char *name)
{
	for (unsigned i = 0; i < vmm->nr_entries; i++)
		if (live(vmm->entries[i]) && !strcmp(vmm->entries[i]->name, name))
			return vmm->entries[i];
	return NULL;
}

bool vmm_vm_id(struct vmm *vmm, const char *name, unsigned *id)
{
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (!e->removed && !strcmp(e->name, name) && (e->vm || e->building)) {
			*id = e->id;
			return true;
		}
	}
	return false;
}

/* --- building VMs -------------------------------------------------------------- */

static void log_outcome(struct vm *vm)
{
	int code = vm_exit_code_for(vm->exit_reason, vm->guest_status);
	double boot = vm_boot_ms(vm);
	char bootstr[48] = "no console output";
	if (boot >= 0)
		snprintf(bootstr, sizeof(bootstr), "first console byte at %.1f ms", boot);
	if (vm->exit_reason == VM_EXIT_POWEROFF)
		log_msg(code == 0 ? LOG_INFO : LOG_ERROR, vm->name, "powered off with status %d after %.1f ms (%s)", code,
			ns_to_ms(vm->t_stop_ns - vm->t_create_ns), bootstr);
	else if (vm->exit_reason == VM_EXIT_REMOVED)
		log_info(vm->name, "removed after %.1f ms (%s)", ns_to_ms(vm->t_stop_ns - vm->t_create_ns), bootstr);
	else
		log_error(vm->name, "stopped: %s (%s)", vm_exit_reason_name(vm->exit_reason), bootstr);
}

/* The VMs of a batch join the schedulers; with the event loop excluded, so
 * a tick never sees half of a batch. */
struct batch {
	struct vmm *vmm;
	struct vmm_entry **e;
	unsigned n;
	int result;
	char *err;
	size_t errlen;
};

static void batch_publish(void *arg)
{
	struct batch *b = arg;
	struct vmm *vmm = b->vmm;
	pthread_mutex_lock(&vmm->lock);
	for (unsigned i = 0; i < b->n; i++)
		b->e[i]->building = false;
	pthread_mutex_unlock(&vmm->lock);
	for (unsigned i = 0; i < b->n; i++) {
		struct vm *vm = b->e[i]->vm;
		if (!vm)
			continue;
		if (vmm->memsched && mem_scheduler_add(vmm->memsched, vm) < 0)
			log_error(vm->name, "the memory scheduler is full (64 VMs in a run); this VM is not scheduled");
		if (vmm->cpusched && cpu_scheduler_add(vmm->cpusched, vm) < 0)
			log_error(vm->name, "the CPU scheduler is full (64 VMs at once); this VM is not scheduled");
	}
}

static void destroy_batch(void *arg)
{
	struct batch *b = arg;
	for (unsigned i = 0; i < b->n; i++) {
		vm_destroy(b->e[i]->vm);
		b->e[i]->vm = NULL;
	}
}

/* Builds and starts the VMs of a batch. all_or_none: if one cannot be
 * built, none is kept (an addition); otherwise the others still run and
 * the failure is the entry's error (the start config). */
static int build(struct vmm *vmm, const struct vm_config *cfgs, unsigned n, bool added, bool all_or_none,
		 char *err, size_t errlen)
{
	struct vmm_entry **e = calloc(n ? n : 1, sizeof(*e));
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	unsigned first_id = vmm->next_id;
	for (unsigned i = 0; i < n; i++) {
		e[i] = entry_new(vmm, &cfgs[i]);
		if (!e[i]) {
			for (unsigned k = 0; k < i; k++)
				entry_free(e[k]);
			free(e);
			vmm->next_id = first_id;
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		e[i]->building = true;
		e[i]->added = added;
		vmm->next_id++;
	}
	/* Listed (as being built) first: a msgq device resolves its peers by
	 * name among the VMs of the run, these ones included. */
	struct list_change lc = { vmm, e, n, 0 };
	evl_run_exclusive(vmm->evl, list_append, &lc);
	if (lc.result < 0) {
		for (unsigned i = 0; i < n; i++)
			entry_free(e[i]);
		free(e);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char why[1024];
	int ret = 0;
	for (unsigned i = 0; i < n; i++) {
		e[i]->vm = vm_create(vmm, e[i]->cfg, e[i]->id, 0, vmm->log_dir, vmm->opts.console, why, sizeof(why));
		if (e[i]->vm)
			continue;
		if (all_or_none) {
			snprintf(err, errlen, "%s", why);
			ret = -1;
			break;
		}
		log_error(NULL, "%s", why);
		e[i]->error = strdup(why);
	}
	struct batch b = { vmm, e, n, 0, err, errlen };
	if (ret < 0) {
		/* Newest first, all with the event loop excluded: devices take
		 * their handlers off it. */
		evl_run_exclusive(vmm->evl, destroy_batch, &b);
		evl_run_exclusive(vmm->evl, list_truncate, &lc);
		for (unsigned i = 0; i < n; i++)
			entry_free(e[i]);
		free(e);
		return -1;
	}
	evl_run_exclusive(vmm->evl, batch_publish, &b);
	for (unsigned i = 0; i < n; i++) {
		struct vm *vm = e[i]->vm;
		if (!vm)
			continue;
		if (vm_start(vm, why, sizeof(why)) < 0) {
			log_error(NULL, "%s", why);
			continue;
		}
		cJSON *f = cJSON_CreateObject();
		cJSON_AddNumberToObject(f, "id", e[i]->id);
		cJSON_AddNumberToObject(f, "memory_mib", (double)e[i]->cfg->memory_mib);
		cJSON_AddNumberToObject(f, "vcpus", e[i]->cfg->vcpus);
		cJSON_AddBoolToObject(f, "added", added);
		events_emit("vm-started", vm->name, f);
	}
	if (added)
		vmm->vms_added += n;
	free(e);
	return 0;
}

/* --- balloon events -------------------------------------------------------------- */

/* On the event loop. A VM hangs if none of its vCPUs has exited to ferry
 * (port or MMIO access, console byte, halt with no interrupt pending...) for
 * its watchdog_ms. A vCPU the guest parked (cpu-reserve) or an operator's
 * pause count as progress: the guest is not stuck, it was told to wait. */
static void watchdog_check(struct vmm_entry *e, uint64_t now)
{
	struct vm *vm = e->vm;
	if (vm_is_stopped(vm))
		return;
	uint64_t progress = 0;
	for (unsigned k = 0; k < vm->nr_vcpus; k++)
		progress += atomic_load(&vm->vcpus[k]->ctr.exits) + atomic_load(&vm->vcpus[k]->parked_ns);
	pthread_mutex_lock(&vm->lock);
	bool paused = vm->pause_requests; /* also while an operator holds it paused */
	pthread_mutex_unlock(&vm->lock);
	if (e->wd_vm != vm || progress != e->wd_progress || paused) {
		e->wd_vm = vm;
		e->wd_progress = progress;
		e->wd_progress_ns = now;
		return;
	}
	if (now - e->wd_progress_ns < e->cfg->watchdog_ms * 1000000ull)
		return;
	char detail[128];
	snprintf(detail, sizeof(detail), "watchdog: no exit to ferry for %.0f ms (watchdog_ms %llu)",
		 ns_to_ms(now - e->wd_progress_ns), (unsigned long long)e->cfg->watchdog_ms);
	vm_stop(vm, VM_EXIT_HUNG, 0, detail);
}

/* On the event loop: a balloon that reached the target it was given. */
static void watch_tick(void *arg, uint32_t events)
{
	struct vmm *vmm = arg;
	(void)events;
	uint64_t now = clock_ns();
	for (unsigned i = 0; i < vmm->nr_entries; i++)
		if (live(vmm->entries[i]) && vmm->entries[i]->vm && vmm->entries[i]->cfg->watchdog_ms)
			watchdog_check(vmm->entries[i], now);
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		struct balloon_status b;
		/* A balloon starts empty: the first target worth telling is the
		 * first one above 0 that the guest reaches. */
		if (!live(e) || !e->vm || vm_is_stopped(e->vm) || !balloon_get_status(e->vm, &b) || !b.driver_ok)
			continue;
		if (b.target_pages == e->balloon_reached || b.actual_pages != b.target_pages)
			continue;
		e->balloon_reached = b.target_pages;
		cJSON *f = cJSON_CreateObject();
		cJSON_AddNumberToObject(f, "balloon_mib", (double)b.target_pages / 256);
		cJSON_AddNumberToObject(f, "memory_mib",
					(double)e->cfg->memory_mib - (double)b.target_pages / 256);
		events_emit("balloon-target-reached", e->name, f);
	}
}

/* --- start ------------------------------------------------------------------------- */

static int make_dir(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0755) == 0 || errno == EEXIST)
		return 0;
	snprintf(err, errlen, "cannot create log directory %s: %s", dir, strerror(errno));
	return -1;
}

int vmm_start(struct vmm *vmm, const struct ferry_config *cfg, const struct vmm_options *opts, char *err,
	      size_t errlen)
{
	vmm->opts = *opts;
	snprintf(vmm->log_dir, sizeof(vmm->log_dir), "%s", opts->log_dir ? opts->log_dir : "ferry-logs");
	vmm->t_start_ns = clock_ns();
	if (opts->timeout_s > 0)
		vmm->deadline_ns = vmm->t_start_ns + (uint64_t)(opts->timeout_s * 1e9);
	if (make_dir(vmm->log_dir, err, errlen) < 0)
		return -1;
	memcpy(vmm->networks, cfg->networks, sizeof(vmm->networks));
	for (unsigned i = 0; i < cfg->nr_vms; i++)
		if (config_find_device(&cfg->vms[i], DEV_MSGQ))
			vmm->msgq_huge = cfg->vms[i].hugepages; /* the config checked they agree */
	if (msgq_setup(vmm, cfg, err, errlen) < 0 || net_setup(vmm, cfg, err, errlen) < 0 ||
	    link_service_create(cfg, &vmm->links, err, errlen) < 0)
		return -1;
	if (cfg->host.memory_budget_mib) {
		vmm->memsched = mem_scheduler_create(vmm, cfg->host.memory_budget_mib);
		if (!vmm->memsched) {
			snprintf(err, errlen, "cannot start the memory scheduler");
			return -1;
		}
	}
	vmm->vcpu_budget = cfg->host.vcpu_budget;
	if (cfg->host.vcpu_budget) {
		vmm->cpusched = cpu_scheduler_create(vmm, (unsigned)cfg->host.vcpu_budget);
		if (!vmm->cpusched) {
			snprintf(err, errlen, "cannot start the CPU scheduler");
			return -1;
		}
	}
	if (build(vmm, cfg->vms, cfg->nr_vms, false, false, err, errlen) < 0)
		return -1;
	vmm->watch = evl_add_timer(vmm->evl, WATCH_NS, watch_tick, vmm);
	if (!vmm->watch) {
		snprintf(err, errlen, "cannot start the balloon watch timer");
		return -1;
	}
	for (unsigned i = 0; i < opts->nr_services; i++) {
		const struct vmm_service *s = &opts->services[i];
		char why[512];
		vmm->svc_ctx[i] = s->start(vmm, s->arg, why, sizeof(why));
		if (!vmm->svc_ctx[i]) {
			snprintf(err, errlen, "%s", why);
			return -1;
		}
		vmm->nr_svc_started = i + 1;
	}
	pthread_mutex_lock(&vmm->lock);
	vmm->started = true;
	vmm->accepting = true;
	pthread_mutex_unlock(&vmm->lock);
	return 0;
}

/* --- add ------------------------------------------------------------------------------ */

/* The configs of the VMs in the run (not removed), for checking additions. */
static int running_config(struct vmm *vmm, struct ferry_config *out)
{
	memset(out, 0, sizeof(*out));
	out->vms = calloc(vmm->nr_entries ? vmm->nr_entries : 1, sizeof(*out->vms));
	if (!out->vms)
		return -1;
	for (unsigned i = 0; i < vmm->nr_entries; i++)
		if (live(vmm->entries[i]))
			out->vms[out->nr_vms++] = *vmm->entries[i]->cfg;
	memcpy(out->networks, vmm->networks, sizeof(out->networks));
	out->nr_networks = vmm->nr_nets;
	return 0;
}

int vmm_parse_addition(struct vmm *vmm, const char *text, const char *origin, const char *base_dir,
		       struct ferry_config *out, char *err, size_t errlen)
{
	struct ferry_config running;
	if (running_config(vmm, &running) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int r = config_parse_addition(text, origin, base_dir, &running, out, err, errlen);
	config_free(&running);
	return r;
}

/* What the schedulers and the message switch can take, checked before
 * anything is built. */
static int check_room(struct vmm *vmm, const struct ferry_config *add, char *code, char *err, size_t errlen)
{
	unsigned live_vms = 0;
	uint64_t mins = 0;
	bool live_msgq = false;
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (!live(e))
			continue;
		live_vms++;
		mins += e->cfg->memory.min_mib;
		live_msgq |= e->vm && config_find_device(e->cfg, DEV_MSGQ);
	}
	for (unsigned i = 0; i < add->nr_vms; i++) {
		mins += add->vms[i].memory.min_mib;
		const struct vm_config *v = &add->vms[i];
		if (!config_find_device(v, DEV_MSGQ))
			continue;
		if (config_vm_id(vmm->next_id + i) > MSGQ_MAX_VM_ID) {
			set_code(code, "limit");
			snprintf(err, errlen, "%s: msgq ids are used up (%d in a run, never reused)", v->name,
				 MSGQ_MAX_VM_ID);
			return -1;
		}
		if (vmm->msgq && !live_msgq && v->hugepages != vmm->msgq_huge) {
			set_code(code, "config");
			snprintf(err, errlen, "%s: the message switch runs with \"hugepages\": %s; this VM must agree", v->name,
				 vmm->msgq_huge ? "true" : "false");
			return -1;
		}
	}
	if (vmm->memsched) {
		uint64_t budget = mem_scheduler_budget(vmm->memsched);
		if (mins > budget) {
			set_code(code, "no_room");
			snprintf(err, errlen, "the VMs' min_mib would add up to %llu MiB, more than the memory budget of %llu MiB",
				 (unsigned long long)mins, (unsigned long long)budget);
			return -1;
		}
		for (unsigned i = 0; i < add->nr_vms; i++) {
			if (mem_scheduler_full(vmm->memsched, add->vms[i].name)) {
				set_code(code, "limit");
				snprintf(err, errlen, "the memory scheduler has scheduled 64 VM names in this run, its most");
				return -1;
			}
		}
	}
	if (vmm->cpusched && live_vms + add->nr_vms > vmm->vcpu_budget) {
		set_code(code, "no_room");
		snprintf(err, errlen, "%u VMs would run on a vCPU budget of %llu (one vCPU per VM at least)",
			 live_vms + add->nr_vms, (unsigned long long)vmm->vcpu_budget);
		return -1;
	}
	return 0;
}

int vmm_add(struct vmm *vmm, const struct ferry_config *add, char *code, char *err, size_t errlen)
{
	set_code(code, "config");
	if (check_room(vmm, add, code, err, errlen) < 0)
		return -1;
	if (msgq_setup(vmm, add, err, errlen) < 0) {
		set_code(code, "no_room");
		return -1;
	}
	for (unsigned i = 0; i < add->nr_vms; i++)
		if (config_find_device(&add->vms[i], DEV_MSGQ) && !vmm->msgq_huge)
			vmm->msgq_huge = add->vms[i].hugepages;
	for (unsigned n = 0; n < vmm->nr_nets; n++) {
		unsigned nics = 0;
		for (unsigned i = 0; i < add->nr_vms; i++)
			for (unsigned k = 0; k < add->vms[i].nr_nics; k++)
				nics += add->vms[i].nics[k].net == n;
		if (nics && net_switch_reserve(vmm->nets[n], nics, err, errlen) < 0) {
			set_code(code, "no_room");
			return -1;
		}
	}
	/* Links among the new VMs: their ports are the ids the VMs will get. */
	struct shm_link *made[CFG_MAX_LINKS];
	unsigned nr_made = 0;
	int ret = 0;
	for (unsigned i = 0; i < add->nr_links && ret == 0; i++) {
		struct link_config lc = add->links[i];
		for (unsigned p = 0; p < lc.nr_vms; p++)
			lc.vm[p] = vmm->next_id + add->links[i].vm[p];
		if (link_service_add(&vmm->links, &lc, &made[nr_made], err, errlen) < 0) {
			set_code(code, "host");
			ret = -1;
		} else {
			nr_made++;
		}
	}
	if (ret == 0 && build(vmm, add->vms, add->nr_vms, true, true, err, errlen) < 0) {
		set_code(code, "create_failed");
		ret = -1;
	}
	if (ret < 0)
		for (unsigned i = 0; i < nr_made; i++)
			link_service_remove(vmm->links, made[i]);
	return ret;
}

/* --- remove ------------------------------------------------------------------------ */

struct removal {
	struct vmm *vmm;
	struct vmm_entry *e;
};

/* With no event-loop handler running: out of the list and the schedulers,
 * then the VM and its devices (a device's teardown takes its handlers off
 * the loop, and a message switch's poll that paused peers is not midway). */
static void remove_excl(void *arg)
{
	struct removal *r = arg;
	struct vmm *vmm = r->vmm;
	struct vm *vm = r->e->vm;
	pthread_mutex_lock(&vmm->lock);
	r->e->removed = true;
	r->e->vm = NULL;
	/* Counted as it leaves the list: a status between the two would show
	 * a VM neither listed nor removed. */
	vmm->vms_removed++;
	pthread_mutex_unlock(&vmm->lock);
	if (vm) {
		if (vmm->memsched)
			mem_scheduler_remove(vmm->memsched, vm);
		if (vmm->cpusched)
			cpu_scheduler_remove(vmm->cpusched, vm);
		vm_destroy(vm);
	}
}

int vmm_remove(struct vmm *vmm, const char *name, char *code, char *err, size_t errlen)
{
	struct vmm_entry *e = vmm_find(vmm, name);
	if (!e) {
		set_code(code, "no_such_vm");
		snprintf(err, errlen, "no VM named \"%s\"", name);
		return -1;
	}
	struct vm *vm = e->vm;
	unsigned peer;
	struct shm_link *link = link_find(vmm->links, e->id, &peer);
	if (vm) {
		if (!vm_is_stopped(vm))
			vm_stop(vm, VM_EXIT_REMOVED, 0, NULL);
		vm_join(vm);
		log_outcome(vm);
	}
	if (vmm->opts.report_vm)
		e->final = vmm->opts.report_vm(vm, e->cfg, e->error);
	struct removal r = { vmm, e };
	evl_run_exclusive(vmm->evl, remove_excl, &r);
	/* Its link's memory goes once no VM of the link is left. */
	if (link)
		link_service_remove(vmm->links, link);
	e->t_removed_ns = clock_ns();
	free(e->cfg);
	e->cfg = NULL;
	cJSON *f = cJSON_CreateObject();
	cJSON_AddNumberToObject(f, "id", e->id);
	events_emit("vm-removed", e->name, f);
	vmm_notify_stopped(vmm); /* the run may be over now */
	return 0;
}

/* --- budget ---------------------------------------------------------------------------- */

struct budget_change {
	struct vmm *vmm;
	struct mem_scheduler *s;
};

static void budget_attach(void *arg)
{
	struct budget_change *c = arg;
	struct vmm *vmm = c->vmm;
	for (unsigned i = 0; i < vmm->nr_entries; i++)
		if (live(vmm->entries[i]) && vmm->entries[i]->vm && mem_scheduler_add(c->s, vmm->entries[i]->vm) < 0)
			log_error(vmm->entries[i]->name, "the memory scheduler is full; this VM is not scheduled");
	vmm->memsched = c->s;
}

static void budget_detach(void *arg)
{
	struct budget_change *c = arg;
	c->s = c->vmm->memsched;
	c->vmm->memsched = NULL;
	mem_scheduler_stop(c->s);
}

int vmm_set_budget(struct vmm *vmm, uint64_t mib, char *code, char *err, size_t errlen)
{
	uint64_t mins = 0;
	for (unsigned i = 0; i < vmm->nr_entries; i++)
		if (live(vmm->entries[i]))
			mins += vmm->entries[i]->cfg->memory.min_mib;
	if (mib && mins > mib) {
		set_code(code, "no_room");
		snprintf(err, errlen, "the VMs' min_mib add up to %llu MiB, more than %llu MiB", (unsigned long long)mins,
			 (unsigned long long)mib);
		return -1;
	}
	struct budget_change c = { vmm, NULL };
	if (mib && vmm->memsched) {
		mem_scheduler_set_budget(vmm->memsched, mib);
	} else if (mib) {
		/* Made here, not on the event loop: its timer is a new file. */
		c.s = mem_scheduler_create(vmm, mib);
		if (!c.s) {
			set_code(code, "host");
			snprintf(err, errlen, "cannot start the memory scheduler");
			return -1;
		}
		evl_run_exclusive(vmm->evl, budget_attach, &c);
	} else if (vmm->memsched) {
		/* Balloon targets stay where the scheduler left them; they are
		 * the operator's to set from now on. */
		evl_run_exclusive(vmm->evl, budget_detach, &c);
		mem_scheduler_destroy(c.s);
	}
	cJSON *f = cJSON_CreateObject();
	cJSON_AddNumberToObject(f, "budget_mib", (double)mib);
	events_emit("budget-changed", NULL, f);
	return 0;
}

/* --- requests and the main loop ----------------------------------------------------------- */

void vmm_request_free(struct vmm_request *r)
{
	if (!r)
		return;
	free(r->text);
	cJSON_Delete(r->result);
	cJSON_Delete(r->echo);
	free(r);
}

int vmm_post(struct vmm *vmm, struct vmm_request *r)
{
	pthread_mutex_lock(&vmm->lock);
	bool ok = vmm->accepting && !vmm->closing;
	if (ok) {
		r->next = NULL;
		*vmm->requests_tail = r;
		vmm->requests_tail = &r->next;
		pthread_cond_broadcast(&vmm->vm_stopped);
	}
	pthread_mutex_unlock(&vmm->lock);
	return ok ? 0 : -1;
}

static void execute(struct vmm *vmm, struct vmm_request *r)
{
	r->status = -1;
	set_code(r->code, "internal");
	switch (r->kind) {
	case VMM_REQ_ADD: {
		struct ferry_config add;
		if (vmm_parse_addition(vmm, r->text, r->origin, r->base_dir, &add, r->error, sizeof(r->error)) < 0) {
			set_code(r->code, "config");
			return;
		}
		if (vmm_add(vmm, &add, r->code, r->error, sizeof(r->error)) == 0) {
			r->status = 0;
			r->result = cJSON_CreateObject();
			cJSON *names = cJSON_AddArrayToObject(r->result, "added");
			for (unsigned i = 0; i < add.nr_vms; i++)
				cJSON_AddItemToArray(names, cJSON_CreateString(add.vms[i].name));
		}
		config_free(&add);
		return;
	}
	case VMM_REQ_REMOVE: {
		struct vmm_entry *e = vmm_find(vmm, r->name);
		if (vmm_remove(vmm, r->name, r->code, r->error, sizeof(r->error)) == 0) {
			r->status = 0;
			r->result = cJSON_CreateObject();
			cJSON_AddStringToObject(r->result, "removed", r->name);
			if (e && e->final)
				cJSON_AddItemToObject(r->result, "summary", cJSON_Duplicate(e->final, true));
		}
		return;
	}
	case VMM_REQ_BUDGET:
		if (vmm_set_budget(vmm, r->mib, r->code, r->error, sizeof(r->error)) == 0) {
			r->status = 0;
			r->result = cJSON_CreateObject();
			cJSON_AddNumberToObject(r->result, "budget_mib", (double)r->mib);
		}
		return;
	}
}

/* Lock held. Every VM still in the run has stopped (or none is left), and
 * none waits for a restart. */
static bool all_stopped(struct vmm *vmm)
{
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (live(e) && e->vm && (!vm_is_stopped(e->vm) || e->restart_at_ns))
			return false;
	}
	return true;
}

/* --- restarts ------------------------------------------------------------------------------ */

/* The wait before a restart after n quick failures in a row: 100 ms,
 * doubling, at most 10 s; so a guest that fails at once costs ferry a VM
 * build every few seconds at most, and max_restarts ends it. A run that
 * lasted RESTART_STABLE_NS or more starts the count again. */
#define RESTART_STABLE_NS (10 * 1000000000ull)
static uint64_t restart_backoff_ns(unsigned n)
{
	uint64_t ms = 100ull << (n < 7 ? n : 7);
	return (ms < 10000 ? ms : 10000) * 1000000ull;
}

/* Lock held. Schedules a restart for each VM that has just failed and may
 * be restarted (or gives up on it); returns the earliest restart due, 0 if
 * none. */
static uint64_t schedule_restarts(struct vmm *vmm)
{
	uint64_t next = 0;
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (!live(e) || !e->vm || e->gave_up || e->cfg->restart != RESTART_ON_FAILURE)
			continue;
		if (e->restart_at_ns && vmm->no_restarts) {
			e->restart_at_ns = 0; /* the run is stopping: its failure is final */
			log_warn(e->name, "not restarted: ferry is stopping");
			continue;
		}
		if (!e->restart_at_ns) {
			struct vm *vm = e->vm;
			pthread_mutex_lock(&vm->lock);
			bool failed = vm->state == VM_STOPPED && vm_exit_is_failure(vm->exit_reason, vm->guest_status);
			enum vm_exit_reason why = vm->exit_reason;
			int status = vm->guest_status;
			pthread_mutex_unlock(&vm->lock);
			if (!failed || vmm->no_restarts)
				continue;
			if (why == VM_EXIT_POWEROFF)
				snprintf(e->last_failure, sizeof(e->last_failure), "poweroff with status %d", status);
			else
				snprintf(e->last_failure, sizeof(e->last_failure), "%s", vm_exit_reason_name(why));
			if (e->restarts >= e->cfg->max_restarts) {
				e->gave_up = true;
				log_error(e->name, "failed (%s) after %u restarts, its max_restarts; not restarted again",
					  e->last_failure, e->restarts);
				cJSON *f = cJSON_CreateObject();
				cJSON_AddStringToObject(f, "reason", e->last_failure);
				cJSON_AddNumberToObject(f, "restarts", e->restarts);
				events_emit("vm-restart-given-up", e->name, f);
				continue;
			}
			if (vm->t_stop_ns - vm->t_create_ns >= RESTART_STABLE_NS)
				e->quick_failures = 0;
			uint64_t wait = restart_backoff_ns(e->quick_failures++);
			e->restart_at_ns = clock_ns() + wait;
			log_warn(e->name, "failed (%s); restart %u of at most %llu in %.0f ms", e->last_failure,
				 e->restarts + 1, (unsigned long long)e->cfg->max_restarts, ns_to_ms(wait));
		}
		if (!next || e->restart_at_ns < next)
			next = e->restart_at_ns;
	}
	return next;
}

struct restart {
	struct vmm *vmm;
	struct vmm_entry *e;
	struct vm *vm;
};

/* With no event-loop handler running, as a removal: out of the schedulers,
 * then the VM and its devices, keeping its place among its peers. */
static void restart_teardown(void *arg)
{
	struct restart *r = arg;
	struct vmm *vmm = r->vmm;
	struct vm *vm = r->e->vm;
	pthread_mutex_lock(&vmm->lock);
	r->e->vm = NULL;
	pthread_mutex_unlock(&vmm->lock);
	if (vmm->memsched)
		mem_scheduler_remove(vmm->memsched, vm);
	if (vmm->cpusched)
		cpu_scheduler_remove(vmm->cpusched, vm);
	vm->restarting = true;
	vm_destroy(vm);
}

static void restart_publish(void *arg)
{
	struct restart *r = arg;
	struct vmm *vmm = r->vmm;
	pthread_mutex_lock(&vmm->lock);
	r->e->vm = r->vm;
	r->e->wd_vm = NULL; /* the watchdog starts afresh (the new VM may sit where the old one was) */
	pthread_mutex_unlock(&vmm->lock);
	if (vmm->memsched && mem_scheduler_add(vmm->memsched, r->vm) < 0)
		log_error(r->vm->name, "the memory scheduler is full (64 VMs in a run); this VM is not scheduled");
	if (vmm->cpusched && cpu_scheduler_add(vmm->cpusched, r->vm) < 0)
		log_error(r->vm->name, "the CPU scheduler is full (64 VMs at once); this VM is not scheduled");
}

/* Main thread, lock not held: the failed VM goes as in a removal and comes
 * back as in an addition, with its config, id and name. */
static void restart_entry(struct vmm *vmm, struct vmm_entry *e)
{
	struct vm *old = e->vm;
	vm_join(old);
	log_outcome(old);
	struct restart r = { vmm, e, NULL };
	evl_run_exclusive(vmm->evl, restart_teardown, &r);
	e->restart_at_ns = 0;
	e->restarts++;
	char why[1024];
	r.vm = vm_create(vmm, e->cfg, e->id, e->restarts, vmm->log_dir, vmm->opts.console, why, sizeof(why));
	if (!r.vm) {
		/* Reported as a VM that could not be built; its peers lose it. */
		log_error(e->name, "cannot be restarted: %s", why);
		free(e->error);
		e->error = strdup(why);
		e->gave_up = true;
		msgq_switch_forget(vmm->msgq, config_vm_id(e->id));
		cJSON *f = cJSON_CreateObject();
		cJSON_AddStringToObject(f, "reason", e->last_failure);
		cJSON_AddStringToObject(f, "error", why);
		cJSON_AddNumberToObject(f, "restarts", e->restarts);
		events_emit("vm-restart-given-up", e->name, f);
		vmm_notify_stopped(vmm);
		return;
	}
	evl_run_exclusive(vmm->evl, restart_publish, &r);
	pthread_mutex_lock(&vmm->lock);
	vmm->restarts++;
	pthread_mutex_unlock(&vmm->lock);
	if (vm_start(r.vm, why, sizeof(why)) < 0) {
		log_error(NULL, "%s", why);
		return;
	}
	log_info(e->name, "restarted after %s (restart %u of at most %llu)", e->last_failure, e->restarts,
		 (unsigned long long)e->cfg->max_restarts);
	cJSON *f = cJSON_CreateObject();
	cJSON_AddNumberToObject(f, "id", e->id);
	cJSON_AddStringToObject(f, "reason", e->last_failure);
	cJSON_AddNumberToObject(f, "restarts", e->restarts);
	events_emit("vm-restarted", e->name, f);
}

/* Lock held; restarts every VM whose restart is due (dropping the lock for
 * each). True if it did any. */
static bool run_due_restarts(struct vmm *vmm)
{
	uint64_t now = clock_ns();
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (!live(e) || !e->vm || !e->restart_at_ns || e->restart_at_ns > now)
			continue;
		pthread_mutex_unlock(&vmm->lock);
		restart_entry(vmm, e);
		pthread_mutex_lock(&vmm->lock);
		return true; /* the list may have moved: look again */
	}
	return false;
}

static void stop_timed_out(void *arg)
{
	struct vmm *vmm = arg;
	char detail[128];
	snprintf(detail, sizeof(detail), "still running after --timeout %.3g s; stopped", vmm->opts.timeout_s);
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (live(e) && e->vm && !vm_is_stopped(e->vm))
			vm_stop(e->vm, VM_EXIT_TIMEOUT, 0, detail);
	}
}

static void stop_services(struct vmm *vmm)
{
	while (vmm->nr_svc_started) {
		unsigned i = --vmm->nr_svc_started;
		vmm->opts.services[i].stop(vmm->svc_ctx[i]);
		vmm->svc_ctx[i] = NULL;
	}
}

void vmm_run(struct vmm *vmm)
{
	pthread_mutex_lock(&vmm->lock);
	for (;;) {
		while (vmm->requests) {
			struct vmm_request *r = vmm->requests;
			vmm->requests = r->next;
			if (!vmm->requests)
				vmm->requests_tail = &vmm->requests;
			pthread_mutex_unlock(&vmm->lock);
			execute(vmm, r);
			if (r->done)
				r->done(r, r->arg);
			else
				vmm_request_free(r);
			pthread_mutex_lock(&vmm->lock);
		}
		uint64_t restart_ns = schedule_restarts(vmm);
		if (restart_ns && run_due_restarts(vmm))
			continue;
		if (all_stopped(vmm))
			break;
		uint64_t ns = vmm->deadline_ns;
		if (restart_ns && (!ns || restart_ns < ns))
			ns = restart_ns;
		if (ns) {
			struct timespec at = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
			if (pthread_cond_timedwait(&vmm->vm_stopped, &vmm->lock, &at) == ETIMEDOUT && vmm->deadline_ns &&
			    clock_ns() >= vmm->deadline_ns) {
				vmm->deadline_ns = 0;
				vmm->no_restarts = true;
				pthread_mutex_unlock(&vmm->lock);
				evl_run_exclusive(vmm->evl, stop_timed_out, vmm);
				pthread_mutex_lock(&vmm->lock);
			}
		} else {
			pthread_cond_wait(&vmm->vm_stopped, &vmm->lock);
		}
	}
	/* No request can arrive from here on: the run is over. */
	vmm->closing = true;
	vmm->accepting = false;
	pthread_mutex_unlock(&vmm->lock);
	stop_services(vmm);
	if (vmm->memsched)
		mem_scheduler_stop(vmm->memsched);
	if (vmm->cpusched)
		cpu_scheduler_stop(vmm->cpusched);
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (live(e) && e->vm) {
			vm_join(e->vm);
			log_outcome(e->vm);
		}
	}
}

static void stop_all(void *arg)
{
	struct vmm *vmm = arg;
	pthread_mutex_lock(&vmm->lock);
	vmm->no_restarts = true;
	pthread_mutex_unlock(&vmm->lock);
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (live(e) && e->vm)
			vm_stop(e->vm, VM_EXIT_INTERRUPTED, 0, NULL);
	}
}

void vmm_stop_all(struct vmm *vmm, const char *why)
{
	if (why)
		log_warn(NULL, "%s; stopping all VMs", why);
	/* Exclusive: the list cannot change under us (see vmm.h). */
	if (vmm->evl)
		evl_run_exclusive(vmm->evl, stop_all, vmm);
}

cJSON *vmm_report(struct vmm *vmm, bool *all_ok)
{
	cJSON *doc = cJSON_CreateObject(), *vms = cJSON_AddArrayToObject(doc, "vms");
	bool ok = true;
	for (unsigned i = 0; i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		cJSON *entry = NULL;
		if (e->removed) {
			/* Out of the run by an operator's choice: reported, not judged. */
			entry = e->final ? cJSON_Duplicate(e->final, true) : NULL;
		} else {
			if (vmm->opts.report_vm)
				entry = vmm->opts.report_vm(e->vm, e->cfg, e->error);
			ok &= e->vm && e->vm->exit_reason == VM_EXIT_POWEROFF && e->vm->guest_status == 0;
		}
		if (entry) {
			if (e->added)
				cJSON_AddBoolToObject(entry, "added", true);
			if (e->restarts || (e->cfg && e->cfg->restart == RESTART_ON_FAILURE))
				cJSON_AddNumberToObject(entry, "restarts", e->restarts);
			if (e->restarts || e->gave_up)
				cJSON_AddStringToObject(entry, "last_failure", e->last_failure);
			if (e->gave_up)
				cJSON_AddBoolToObject(entry, "restart_given_up", true);
			if (e->removed)
				cJSON_AddBoolToObject(entry, "removed", true);
			cJSON_AddItemToArray(vms, entry);
		}
	}
	cJSON_AddNumberToObject(doc, "restarts", (double)vmm->restarts);
	if (vmm->memsched)
		cJSON_AddItemToObject(doc, "memory", mem_scheduler_report(vmm->memsched));
	if (vmm->cpusched)
		cJSON_AddItemToObject(doc, "cpu", cpu_scheduler_report(vmm->cpusched));
	/* Each network as `ferry ctl networks` shows it: its TAP's counters
	 * (frames to and from the outside) are nowhere else. */
	if (vmm->nr_nets) {
		cJSON *nets = cJSON_AddArrayToObject(doc, "networks");
		for (unsigned i = 0; i < vmm->nr_nets; i++)
			cJSON_AddItemToArray(nets, net_switch_report(vmm->nets[i]));
	}
	if (all_ok)
		*all_ok = ok;
	return doc;
}

void vmm_destroy(struct vmm *vmm)
{
	pthread_mutex_lock(&vmm->lock);
	vmm->closing = true;
	vmm->accepting = false;
	struct vmm_request *pending = vmm->requests;
	vmm->requests = NULL;
	vmm->requests_tail = &vmm->requests;
	pthread_mutex_unlock(&vmm->lock);
	/* First: a signal handled from here on would find the loop gone. */
	if (vmm->signal_thread_started) {
		pthread_kill(vmm->signal_thread, WAKE_SIGNAL);
		pthread_join(vmm->signal_thread, NULL);
		vmm->signal_thread_started = false;
	}
	while (pending) {
		struct vmm_request *r = pending;
		pending = r->next;
		r->status = -1;
		set_code(r->code, "shutting_down");
		snprintf(r->error, sizeof(r->error), "ferry is shutting down");
		if (r->done)
			r->done(r, r->arg);
		else
			vmm_request_free(r);
	}
	/* Services first (nothing reaches the VMs through them after), then
	 * the timers that read the VM list, then the VMs, newest first. */
	stop_services(vmm);
	if (vmm->evl && vmm->watch)
		evl_del(vmm->evl, vmm->watch);
	vmm->watch = NULL;
	if (vmm->memsched)
		mem_scheduler_stop(vmm->memsched);
	if (vmm->cpusched)
		cpu_scheduler_stop(vmm->cpusched);
	if (vmm->evl)
		vmm_stop_all(vmm, NULL);
	for (unsigned i = vmm->nr_entries; i-- > 0;) {
		struct vmm_entry *e = vmm->entries[i];
		vm_destroy(e->vm);
		e->vm = NULL;
		entry_free(e);
	}
	free(vmm->entries);
	vmm->entries = NULL;
	vmm->nr_entries = 0;
	mem_scheduler_destroy(vmm->memsched);
	cpu_scheduler_destroy(vmm->cpusched);
	vmm->memsched = NULL;
	vmm->cpusched = NULL;
	/* Shared services take their handlers off the loop, then it ends. */
	for (unsigned i = 0; i < vmm->nr_nets; i++)
		net_switch_destroy(vmm->nets[i]);
	vmm->nr_nets = 0;
	evl_destroy(vmm->evl);
	vmm->evl = NULL;
	msgq_switch_destroy(vmm->msgq);
	vmm->msgq = NULL;
	link_service_destroy(vmm->links);
	vmm->links = NULL;
	gm_release_hugepages();
	events_shutdown();
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
