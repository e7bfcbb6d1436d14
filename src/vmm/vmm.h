/* The VMM: one object that owns a run's VMs and everything they share (the
 * KVM handle, the event loop, the message switch, the networks, the static
 * links, the memory and CPU schedulers, the services a caller attaches such
 * as the control socket), and their lifetimes. The CLI, the control socket
 * and the tests all drive it through this interface:
 *
 *   vmm_init      KVM, signals, the event loop
 *   vmm_start     the config's services and VMs, then the attached services
 *   vmm_add       more VMs while the others run (main thread)
 *   vmm_remove    one VM out of the run: its memory, devices, message
 *                 endpoint, link end and switch ports released, its peers
 *                 told (main thread)
 *   vmm_run       the main thread's loop: requests (add, remove, budget)
 *                 and restarts of failed VMs ("restart": "on-failure":
 *                 the same teardown as a removal, then the same build as
 *                 an addition, keeping the VM's id so its peers find it
 *                 again) until every VM has stopped or the deadline passes
 *   vmm_stop_all  any thread
 *   vmm_destroy   everything started, newest first; safe after any failure
 *
 * Threads: building a VM opens files and makes threads, which the sandboxed
 * threads (vCPUs, event loop) may not, so requests that build or free VMs
 * run on the thread that called vmm_run; the control socket posts them with
 * vmm_post and answers when they are done. The list of VMs changes only on
 * that thread, inside evl_run_exclusive() and under vmm->lock: event-loop
 * handlers read it freely, other threads under the lock. */
#ifndef FERRY_VMM_H
#define FERRY_VMM_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/config.h"
#include "vmm/kvm.h"

struct eventloop;
struct evl_handler;
struct msgq_switch;
struct net_switch;
struct link_service;
struct mem_scheduler;
struct cpu_scheduler;
struct vm;
struct cJSON;
struct vmm;

/* A VM of the run, from the moment it is named in a config until the end. */
struct vmm_entry {
	unsigned id;                  /* unique in the run, never reused (msgq ids, link ports) */
	char name[CFG_NAME_MAX];
	struct vm_config *cfg;        /* owned; vm->cfg points here; NULL once removed */
	struct vm *vm;                /* NULL if it could not be built, or once removed */
	char *error;                  /* why it could not be built */
	struct cJSON *final;          /* its summary entry, taken when it was removed */
	bool removed;
	bool building;                /* being built: not in the run yet, but its name and id are taken */
	bool added;                   /* added while ferry ran (not from the start config) */
	uint64_t t_removed_ns;
	/* events: the balloon target (pages) last seen reached */
	uint64_t balloon_reached;
	/* "restart": "on-failure" (main thread; read by reports under the lock) */
	unsigned restarts;            /* done so far */
	unsigned quick_failures;      /* failed runs in a row shorter than 10 s (the backoff) */
	uint64_t restart_at_ns;       /* a restart is due then (0: none pending) */
	bool gave_up;                 /* failed with max_restarts used up, or could not be rebuilt */
	char last_failure[64];        /* how its last failed run ended */
	/* watchdog (event loop): the VM's exits when last seen changing, and when */
	const struct vm *wd_vm;
	uint64_t wd_progress, wd_progress_ns;
};

/* Something that lives as long as the run: started after the config's VMs,
 * stopped before any VM is torn down. */
struct vmm_service {
	const char *name;
	const void *arg;
	void *(*start)(struct vmm *vmm, const void *arg, char *err, size_t errlen);
	void (*stop)(void *ctx);
};
#define VMM_MAX_SERVICES 4

struct vmm_options {
	const char *log_dir;          /* console logs (NAME.log) */
	bool console;                 /* copy consoles to the terminal */
	double timeout_s;             /* 0: none; VMs still running then are stopped */
	struct vmm_service services[VMM_MAX_SERVICES];
	unsigned nr_services;
	/* The summary entry of a VM (vm NULL: it could not be built, cfg and
	 * error say what it was); kept for VMs that are removed. */
	struct cJSON *(*report_vm)(struct vm *vm, const struct vm_config *cfg, const char *error);
};

/* A request for the main thread (vmm_run). */
enum vmm_request_kind { VMM_REQ_ADD, VMM_REQ_REMOVE, VMM_REQ_BUDGET };
struct vmm_request {
	enum vmm_request_kind kind;
	char *text;                   /* add: the config text (owned; freed with the request) */
	char origin[64];              /* add: names the text in error messages */
	char base_dir[PATH_MAX];      /* add: relative paths in it start here */
	char name[CFG_NAME_MAX];      /* remove: the VM */
	uint64_t mib;                 /* budget: MiB (0: no memory scheduler) */
	/* Filled in by vmm_run. */
	int status;                   /* 0: done */
	char code[32];                /* on failure, a machine-readable reason */
	char error[1024];
	struct cJSON *result;         /* on success, what to answer (owned) */
	/* Called on the main thread once done; takes the request over. */
	void (*done)(struct vmm_request *r, void *arg);
	void *arg;
	uint64_t cookie;              /* the poster's own: e.g. which client asked */
	struct cJSON *echo;           /* the poster's own, freed with the request */
	struct vmm_request *next;
};
void vmm_request_free(struct vmm_request *r);

struct vmm {
	struct kvm kvm;
	struct eventloop *evl;
	struct vmm_options opts;
	char log_dir[PATH_MAX];

	/* Services the VMs share, made as the VMs that need them arrive. */
	struct msgq_switch *msgq;
	bool msgq_huge;                  /* what the msgq VMs' configs ask ("hugepages") */
	struct net_switch *nets[CFG_MAX_NETWORKS];
	struct net_config networks[CFG_MAX_NETWORKS]; /* the run's networks (fixed at start) */
	unsigned nr_nets;
	struct link_service *links;
	struct mem_scheduler *memsched;  /* NULL: balloon targets are set by hand */
	struct cpu_scheduler *cpusched;  /* NULL: parking is asked by hand */
	uint64_t vcpu_budget;

	/* Every VM of the run, in the order they came (see the locking above). */
	struct vmm_entry **entries;
	unsigned nr_entries, cap_entries;
	unsigned next_id;
	unsigned long vms_added, vms_removed;
	unsigned long restarts;          /* VMs restarted after a failure, in the run */
	bool no_restarts;                /* the run is being stopped: failures are final */

	pthread_mutex_t lock;
	pthread_cond_t vm_stopped;   /* signalled when a VM stops or a request arrives */
	struct vmm_request *requests, **requests_tail;
	bool accepting;              /* vmm_run takes requests */
	bool closing;                /* the run ends: no more requests */

	void *svc_ctx[VMM_MAX_SERVICES];
	unsigned nr_svc_started;
	struct evl_handler *watch;   /* balloon targets reached, for events */
	uint64_t t_start_ns, deadline_ns;
	bool started;

	/* SIGINT/SIGTERM: one thread waits for them and stops every VM. */
	sigset_t signals;
	pthread_t signal_thread;
	bool signal_thread_started;
	bool evl_started;

	/* The host CPUs ferry may run on, read once at start-up: sandboxed
	 * threads cannot open /sys to ask again (sysconf would). */
	cpu_set_t host_cpus;
	unsigned nr_host_cpus;
};

int vmm_init(struct vmm *vmm, char *err, size_t errlen);
/* Starts everything the config asks for; takes cfg's contents (the VMs'
 * configs are copied, cfg may be freed after). A VM that cannot be built is
 * reported (its entry's error) and the others run. -1 with a reason if a
 * shared service cannot start; vmm_destroy then frees what did. */
int vmm_start(struct vmm *vmm, const struct ferry_config *cfg, const struct vmm_options *opts, char *err,
	      size_t errlen);
/* Parses a config text of VMs to add, checked against the VMs and networks
 * of the run (config_parse_addition). Main thread. */
int vmm_parse_addition(struct vmm *vmm, const char *text, const char *origin, const char *base_dir,
		       struct ferry_config *out, char *err, size_t errlen);
/* Adds the VMs of `add` (vmm_parse_addition) and starts them; all or
 * none. Main thread. On failure a reason, and a code in `code` (32 bytes). */
int vmm_add(struct vmm *vmm, const struct ferry_config *add, char *code, char *err, size_t errlen);
/* Takes a VM out of the run (stopping it first if it runs). Main thread.
 * The VM's summary entry stays in the run's summary. */
int vmm_remove(struct vmm *vmm, const char *name, char *code, char *err, size_t errlen);
/* Sets the host memory budget (starting or stopping the memory scheduler;
 * 0 stops it). Main thread. */
int vmm_set_budget(struct vmm *vmm, uint64_t mib, char *code, char *err, size_t errlen);
/* The main thread's loop: serves requests until every VM has stopped (VMs
 * still running at the deadline are stopped as timed out). */
void vmm_run(struct vmm *vmm);
/* Queues a request for vmm_run; -1 if the run is ending (or not running). */
int vmm_post(struct vmm *vmm, struct vmm_request *r);
/* Stops every VM (reason: interrupted). Any thread. */
void vmm_stop_all(struct vmm *vmm, const char *why);
/* The summary entries of every VM, in order ({"vms": [...]}'s array), and
 * whether every VM still in the run powered off with status 0. Main thread,
 * after vmm_run. */
struct cJSON *vmm_report(struct vmm *vmm, bool *all_ok);
/* Stops the services, the VMs and everything shared; safe at any point
 * after vmm_init (and after a failed vmm_init). */
void vmm_destroy(struct vmm *vmm);

void vmm_notify_stopped(struct vmm *vmm);
/* The n-th CPU (from 0) of host_cpus, or -1 if there are not that many. */
int vmm_host_cpu(const struct vmm *vmm, unsigned n);

/* The id of the VM called `name` among those of the run not removed (and
 * those being built with it); false if there is none. */
bool vmm_vm_id(struct vmm *vmm, const char *name, unsigned *id);
/* The entry of a VM in the run (not removed) by name, or NULL. Event loop
 * or main thread (or with vmm->lock held). */
struct vmm_entry *vmm_find(struct vmm *vmm, const char *name);

#endif
