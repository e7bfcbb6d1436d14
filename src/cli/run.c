/* ferry run: build every VM of a config, run them together, report. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/control.h"
#include "api/summary.h"
#include "cli/cli.h"
#include "host/cpu_scheduler.h"
#include "host/link.h"
#include "host/mem_scheduler.h"
#include "host/msgq_switch.h"
#include "host/net_switch.h"
#include "vmm/clock.h"
#include "vmm/config.h"
#include "vmm/log.h"
#include "vmm/sandbox.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

static const char run_help[] =
	"usage: ferry run CONFIG.json [OPTIONS]\n"
	"       ferry run --kernel IMAGE [--mem SIZE] [--cpus N] [--cmdline TEXT] [OPTIONS]\n"
	"\n"
	"Runs every VM of CONFIG.json (see docs/CONFIG.md), or one VM described by\n"
	"options, until every guest has powered off. Exits 0 only if every guest\n"
	"exited with status 0.\n"
	"\n"
	"options:\n"
	"  --summary FILE     write a JSON summary: per VM exit code, boot time, counters\n"
	"  --timeout SECONDS  stop VMs still running after this long (reported as 'timeout')\n"
	"  --console          copy each VM's console to the terminal, lines prefixed [name]\n"
	"  --log-dir DIR      where console logs go, one NAME.log per VM (default: ferry-logs)\n"
	"  --control PATH     answer commands on a unix socket (see 'ferry ctl --help')\n"
	"  --no-seccomp       do not confine vCPU and event-loop threads (for debugging)\n"
	"  -v, --verbose      log more; -q, --quiet: errors only\n"
	"  -h, --help         show this text\n"
	"\n"
	"one VM without a config file:\n"
	"  --kernel IMAGE     PVH ELF kernel (e.g. build/guest/ferry-guest.elf)\n"
	"  --mem SIZE         guest RAM, e.g. 64M or 1G (default 64M)\n"
	"  --cpus N           vCPUs (default 1)\n"
	"  --cmdline TEXT     kernel command line, e.g. \"app=hello\"\n"
	"  --name NAME        VM name (default vm0)\n"
	"  --device TYPE      add a device (virtio-rng, virtio-balloon, cpu-reserve); may repeat\n";

struct run_opts {
	const char *config;
	const char *summary;
	const char *control;
	const char *log_dir;
	double timeout;
	bool console;
	struct vm_config single;
	bool single_mode;
};

/* SIGINT and SIGTERM are taken by a thread of their own, which stops the VMs
 * cleanly so the summary is still written. */
struct signal_ctx {
	sigset_t set;
	struct vm **vms;
	unsigned nr;
	pthread_t thread;
};

static void *signal_thread(void *arg)
{
	struct signal_ctx *s = arg;
	int sig;
	char why[160];
	pthread_setname_np(pthread_self(), "ferry-control");
	if (sandbox_thread(SANDBOX_CONTROL, "ferry-control", why, sizeof(why)) < 0)
		log_error(NULL, "%s", why);
	if (sigwait(&s->set, &sig) != 0)
		return NULL;
	if (sig == SIGUSR2) /* our own wake-up at the end of the run */
		return NULL;
	log_warn(NULL, "got %s; stopping all VMs", strsignal(sig));
	for (unsigned i = 0; i < s->nr; i++)
		if (s->vms[i])
			vm_stop(s->vms[i], VM_EXIT_INTERRUPTED, 0, NULL);
	return NULL;
}

static int parse_opts(int argc, char **argv, struct run_opts *o)
{
	enum { O_SUMMARY = 256, O_TIMEOUT, O_CONSOLE, O_LOGDIR, O_KERNEL, O_MEM, O_CPUS, O_CMDLINE, O_NAME, O_DEVICE,
	       O_CONTROL, O_NO_SECCOMP };
	static const struct option longopts[] = {
		{ "summary", required_argument, 0, O_SUMMARY }, { "timeout", required_argument, 0, O_TIMEOUT },
		{ "console", no_argument, 0, O_CONSOLE },       { "log-dir", required_argument, 0, O_LOGDIR },
		{ "kernel", required_argument, 0, O_KERNEL },   { "mem", required_argument, 0, O_MEM },
		{ "cpus", required_argument, 0, O_CPUS },       { "cmdline", required_argument, 0, O_CMDLINE },
		{ "name", required_argument, 0, O_NAME },       { "device", required_argument, 0, O_DEVICE },
		{ "control", required_argument, 0, O_CONTROL }, { "no-seccomp", no_argument, 0, O_NO_SECCOMP },
		{ "verbose", no_argument, 0, 'v' },             { "quiet", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },                { 0, 0, 0, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->log_dir = "ferry-logs";
	struct vm_config *v = &o->single;
	config_vm_defaults(v);
	bool vm_opts = false;
	uint64_t n;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vqh", longopts, NULL)) != -1) {
		switch (c) {
		case O_SUMMARY:
			o->summary = optarg;
			break;
		case O_TIMEOUT:
			if (!parse_seconds(optarg, &o->timeout))
				return usage_error("run", "--timeout: expected a positive number of seconds, got '%s'", optarg);
			break;
		case O_CONSOLE:
			o->console = true;
			break;
		case O_LOGDIR:
			o->log_dir = optarg;
			break;
		case O_CONTROL:
			o->control = optarg;
			break;
		case O_NO_SECCOMP:
			sandbox_enabled = false;
			break;
		case O_KERNEL:
			if (strlen(optarg) >= sizeof(v->kernel))
				return usage_error("run", "--kernel: path too long");
			strcpy(v->kernel, optarg);
			o->single_mode = true;
			break;
		case O_MEM:
			if (!parse_size_mib(optarg, &v->memory_mib) || v->memory_mib < CFG_MIN_MEMORY_MIB ||
			    v->memory_mib > CFG_MAX_MEMORY_MIB)
				return usage_error("run", "--mem: expected a size like 64M or 2G, at least %dM, got '%s'",
						   CFG_MIN_MEMORY_MIB, optarg);
			vm_opts = true;
			break;
		case O_CPUS:
			if (!parse_uint(optarg, 1, CFG_MAX_VCPUS, &n))
				return usage_error("run", "--cpus: expected 1 to %d, got '%s'", CFG_MAX_VCPUS, optarg);
			v->vcpus = (unsigned)n;
			vm_opts = true;
			break;
		case O_CMDLINE:
			if (strlen(optarg) >= sizeof(v->cmdline))
				return usage_error("run", "--cmdline: longer than %zu characters", sizeof(v->cmdline) - 1);
			strcpy(v->cmdline, optarg);
			vm_opts = true;
			break;
		case O_NAME:
			if (!config_name_valid(optarg))
				return usage_error("run", "--name: '%s' is not 1-31 characters from A-Z a-z 0-9 . _ -", optarg);
			snprintf(v->name, sizeof(v->name), "%s", optarg);
			vm_opts = true;
			break;
		case O_DEVICE: {
			enum device_type t;
			if (!strcmp(optarg, "virtio-rng"))
				t = DEV_VIRTIO_RNG;
			else if (!strcmp(optarg, "virtio-balloon"))
				t = DEV_BALLOON;
			else if (!strcmp(optarg, "cpu-reserve"))
				t = DEV_CPU_RESERVE;
			else
				return usage_error("run", "--device: unknown type '%s' (known: virtio-rng, virtio-balloon, cpu-reserve)",
						   optarg);
			if (config_find_device(v, t))
				return usage_error("run", "--device %s given twice", optarg);
			config_device_defaults(&v->devices[v->nr_devices++], t);
			vm_opts = true;
			break;
		}
		case 'v':
			log_threshold = LOG_DEBUG;
			break;
		case 'q':
			log_threshold = LOG_ERROR;
			break;
		case 'h':
			fputs(run_help, stdout);
			exit(0);
		default:
			return usage_error("run", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		o->config = argv[optind++];
	if (optind < argc)
		return usage_error("run", "unexpected argument '%s'", argv[optind]);
	if (o->config && (o->single_mode || vm_opts))
		return usage_error("run", "give either a config file or --kernel and its options, not both");
	if (!o->config && !o->single_mode)
		return usage_error("run", "no config file and no --kernel: nothing to run");
	return 0;
}

static int make_dir(const char *dir)
{
	if (mkdir(dir, 0755) == 0 || errno == EEXIST)
		return 0;
	log_error(NULL, "cannot create log directory %s: %s", dir, strerror(errno));
	return -1;
}

/* Waits until every VM has stopped; stops those still running at the deadline. */
static void wait_for_vms(struct vmm *vmm, struct vm **vms, unsigned nr, double timeout)
{
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	uint64_t ns = (uint64_t)(timeout * 1e9);
	deadline.tv_sec += (time_t)(ns / 1000000000ull);
	deadline.tv_nsec += (long)(ns % 1000000000ull);
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&vmm->lock);
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < nr; i++)
			all &= !vms[i] || vm_is_stopped(vms[i]);
		if (all)
			break;
		int r = timeout > 0 ? pthread_cond_timedwait(&vmm->vm_stopped, &vmm->lock, &deadline)
				    : pthread_cond_wait(&vmm->vm_stopped, &vmm->lock);
		if (r == ETIMEDOUT) {
			pthread_mutex_unlock(&vmm->lock);
			char detail[128];
			snprintf(detail, sizeof(detail), "still running after --timeout %.3g s; stopped", timeout);
			for (unsigned i = 0; i < nr; i++)
				if (vms[i] && !vm_is_stopped(vms[i]))
					vm_stop(vms[i], VM_EXIT_TIMEOUT, 0, detail);
			return;
		}
	}
	pthread_mutex_unlock(&vmm->lock);
}

static void report(struct vm *vm)
{
	int code = vm_exit_code_for(vm->exit_reason, vm->guest_status);
	double boot = vm_boot_ms(vm);
	char bootstr[48] = "no console output";
	if (boot >= 0)
		snprintf(bootstr, sizeof(bootstr), "first console byte at %.1f ms", boot);
	if (vm->exit_reason == VM_EXIT_POWEROFF)
		log_msg(code == 0 ? LOG_INFO : LOG_ERROR, vm->name, "powered off with status %d after %.1f ms (%s)", code,
			ns_to_ms(vm->t_stop_ns - vm->t_create_ns), bootstr);
	else
		log_error(vm->name, "stopped: %s (%s)", vm_exit_reason_name(vm->exit_reason), bootstr);
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o;
	int ret = parse_opts(argc, argv, &o);
	if (ret)
		return ret;

	struct ferry_config cfg = { 0 };
	char err[1024];
	if (o.config) {
		if (config_load_file(o.config, &cfg, err, sizeof(err)) < 0) {
			fprintf(stderr, "ferry run: %s\n", err);
			return EXIT_USAGE;
		}
	} else {
		if (access(o.single.kernel, R_OK) != 0) {
			fprintf(stderr, "ferry run: --kernel: cannot read %s: %s\n", o.single.kernel, strerror(errno));
			return EXIT_USAGE;
		}
		cfg.vms = calloc(1, sizeof(*cfg.vms));
		if (!cfg.vms)
			return 1;
		cfg.vms[0] = o.single;
		config_memory_defaults(&cfg.vms[0]);
		cfg.nr_vms = 1;
	}
	if (make_dir(o.log_dir) < 0) {
		config_free(&cfg);
		return 1;
	}

	/* Signals are handled by one thread; every other thread blocks them. */
	struct signal_ctx sig = { 0 };
	sigemptyset(&sig.set);
	sigaddset(&sig.set, SIGINT);
	sigaddset(&sig.set, SIGTERM);
	sigaddset(&sig.set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sig.set, NULL);

	struct vmm vmm;
	if (vmm_init(&vmm, err, sizeof(err)) < 0) {
		fprintf(stderr, "ferry run: %s\n", err);
		config_free(&cfg);
		return 1;
	}
	vmm.cfg = &cfg;
	if (msgq_setup(&vmm, &cfg, err, sizeof(err)) < 0 || net_setup(&vmm, &cfg, err, sizeof(err)) < 0 ||
	    link_service_create(&cfg, &vmm.links, err, sizeof(err)) < 0) {
		fprintf(stderr, "ferry run: %s\n", err);
		vmm_destroy(&vmm);
		config_free(&cfg);
		return 1;
	}
	struct vm **vms = calloc(cfg.nr_vms, sizeof(*vms));
	char **errors = calloc(cfg.nr_vms, sizeof(*errors));
	if (!vms || !errors) {
		fprintf(stderr, "ferry run: out of memory\n");
		free(vms);
		free(errors);
		vmm_destroy(&vmm);
		config_free(&cfg);
		return 1;
	}
	sig.vms = vms;
	sig.nr = cfg.nr_vms;
	if (pthread_create(&sig.thread, NULL, signal_thread, &sig) != 0) {
		fprintf(stderr, "ferry run: cannot start the signal thread\n");
		free(vms);
		free(errors);
		vmm_destroy(&vmm);
		config_free(&cfg);
		return 1;
	}

	/* A VM that cannot be built is reported; the others still run. */
	for (unsigned i = 0; i < cfg.nr_vms; i++) {
		vms[i] = vm_create(&vmm, &cfg.vms[i], i, o.log_dir, o.console, err, sizeof(err));
		if (!vms[i]) {
			log_error(NULL, "%s", err);
			errors[i] = strdup(err);
		}
	}
	for (unsigned i = 0; i < cfg.nr_vms; i++) {
		if (vms[i] && vm_start(vms[i], err, sizeof(err)) < 0)
			log_error(NULL, "%s", err);
	}
	struct mem_scheduler *sched = NULL;
	if (cfg.host.memory_budget_mib) {
		sched = mem_scheduler_create(&vmm, vms, cfg.nr_vms, cfg.host.memory_budget_mib);
		if (!sched)
			log_error(NULL, "cannot start the memory scheduler; VMs run unscheduled");
	}
	struct cpu_scheduler *csched = NULL;
	if (cfg.host.vcpu_budget) {
		csched = cpu_scheduler_create(&vmm, vms, cfg.nr_vms, (unsigned)cfg.host.vcpu_budget);
		if (!csched)
			log_error(NULL, "cannot start the CPU scheduler; vCPUs run unscheduled");
	}
	struct control *ctl = NULL;
	if (o.control) {
		ctl = control_create(&vmm, vms, cfg.nr_vms, o.control, !sched, !csched, err, sizeof(err));
		if (!ctl)
			log_error(NULL, "%s", err);
	}
	/* Everything is open and running: from here the main thread only
	 * waits, reports and tears down. */
	if (sandbox_thread(SANDBOX_MAIN, "main", err, sizeof(err)) < 0)
		log_error(NULL, "%s", err);
	wait_for_vms(&vmm, vms, cfg.nr_vms, o.timeout);
	control_destroy(ctl);
	mem_scheduler_stop(sched);
	cpu_scheduler_stop(csched);

	cJSON *entries = cJSON_CreateArray();
	bool all_ok = true;
	for (unsigned i = 0; i < cfg.nr_vms; i++) {
		if (vms[i]) {
			vm_join(vms[i]);
			report(vms[i]);
			all_ok &= vms[i]->exit_reason == VM_EXIT_POWEROFF && vms[i]->guest_status == 0;
		} else {
			all_ok = false;
		}
		cJSON_AddItemToArray(entries, summary_vm(vms[i], &cfg.vms[i], errors[i]));
	}
	cJSON *memory = sched ? mem_scheduler_report(sched) : NULL;
	cJSON *cpu = csched ? cpu_scheduler_report(csched) : NULL;
	if (o.summary && summary_write(o.summary, entries, memory, cpu) < 0) {
		log_error(NULL, "cannot write summary %s: %s", o.summary, strerror(errno));
		all_ok = false;
	}
	cJSON_Delete(entries);
	cJSON_Delete(memory);
	cJSON_Delete(cpu);
	mem_scheduler_destroy(sched);
	cpu_scheduler_destroy(csched);

	pthread_kill(sig.thread, SIGUSR2);
	pthread_join(sig.thread, NULL);
	for (unsigned i = 0; i < cfg.nr_vms; i++) {
		vm_destroy(vms[i]);
		free(errors[i]);
	}
	free(vms);
	free(errors);
	vmm_destroy(&vmm);
	config_free(&cfg);
	return all_ok ? 0 : 1;
}
