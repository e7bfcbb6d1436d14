/* ferry run: build every VM of a config, run them together, report. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/metrics_http.h"
#include "api/run.h"
#include "cli/cli.h"
#include "vmm/config.h"
#include "vmm/log.h"
#include "vmm/sandbox.h"

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
	"  --control PATH     answer commands on a unix socket (see 'ferry ctl --help', docs/API.md)\n"
	"  --metrics-addr 127.0.0.1:PORT\n"
	"                     serve Prometheus metrics at http://127.0.0.1:PORT/metrics (loopback\n"
	"                     only; port 0 takes a free one, logged)\n"
	"  --log FILE         log there instead of stderr (one line per event: time, level, VM)\n"
	"  --log-level LEVEL  error, warn, info (default) or debug\n"
	"  --no-seccomp       do not confine vCPU and event-loop threads (for debugging)\n"
	"  -v, --verbose      --log-level debug; -q, --quiet: --log-level error\n"
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
	struct run_options run;
	cJSON *vm;           /* one VM from options, as a config file would give it */
	bool single_mode, vm_opts;
};

static int parse_opts(int argc, char **argv, struct run_opts *o)
{
	enum { O_SUMMARY = 256, O_TIMEOUT, O_CONSOLE, O_LOGDIR, O_KERNEL, O_MEM, O_CPUS, O_CMDLINE, O_NAME, O_DEVICE,
	       O_CONTROL, O_NO_SECCOMP, O_LOG, O_LOG_LEVEL, O_METRICS };
	static const struct option longopts[] = {
		{ "summary", required_argument, 0, O_SUMMARY }, { "timeout", required_argument, 0, O_TIMEOUT },
		{ "console", no_argument, 0, O_CONSOLE },       { "log-dir", required_argument, 0, O_LOGDIR },
		{ "kernel", required_argument, 0, O_KERNEL },   { "mem", required_argument, 0, O_MEM },
		{ "cpus", required_argument, 0, O_CPUS },       { "cmdline", required_argument, 0, O_CMDLINE },
		{ "name", required_argument, 0, O_NAME },       { "device", required_argument, 0, O_DEVICE },
		{ "control", required_argument, 0, O_CONTROL }, { "no-seccomp", no_argument, 0, O_NO_SECCOMP },
		{ "log", required_argument, 0, O_LOG },         { "log-level", required_argument, 0, O_LOG_LEVEL },
		{ "metrics-addr", required_argument, 0, O_METRICS },
		{ "verbose", no_argument, 0, 'v' },             { "quiet", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },                { 0, 0, 0, 0 },
	};
	memset(o, 0, sizeof(*o));
	o->run.log_dir = "ferry-logs";
	o->vm = cJSON_CreateObject();
	cJSON *devices = cJSON_CreateArray();
	if (!o->vm || !devices) {
		cJSON_Delete(devices);
		return usage_error("run", "out of memory");
	}
	cJSON_AddItemToObject(o->vm, "devices", devices);
	uint64_t n;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vqh", longopts, NULL)) != -1) {
		switch (c) {
		case O_SUMMARY:
			o->run.summary_path = optarg;
			break;
		case O_TIMEOUT:
			if (!parse_seconds(optarg, &o->run.timeout_s))
				return usage_error("run", "--timeout: expected a positive number of seconds, got '%s'", optarg);
			break;
		case O_CONSOLE:
			o->run.console = true;
			break;
		case O_LOGDIR:
			o->run.log_dir = optarg;
			break;
		case O_CONTROL:
			o->run.control_path = optarg;
			break;
		case O_METRICS: {
			struct sockaddr_in sa;
			char why[256];
			if (metrics_http_parse_addr(optarg, &sa, why, sizeof(why)) < 0)
				return usage_error("run", "%s", why);
			o->run.metrics_addr = optarg;
			break;
		}
		case O_NO_SECCOMP:
			sandbox_enabled = false;
			break;
		case O_LOG:
			if (log_to_file(optarg) < 0)
				return usage_error("run", "--log: cannot open %s: %s", optarg, strerror(errno));
			break;
		case O_LOG_LEVEL:
			if (!log_level_parse(optarg, &log_threshold))
				return usage_error("run", "--log-level: expected error, warn, info or debug, got '%s'", optarg);
			break;
		case O_KERNEL:
			if (access(optarg, R_OK) != 0)
				return usage_error("run", "--kernel: cannot read %s: %s", optarg, strerror(errno));
			cJSON_AddStringToObject(o->vm, "kernel", optarg);
			o->single_mode = true;
			break;
		case O_MEM:
			if (!parse_size_mib(optarg, &n) || n < CFG_MIN_MEMORY_MIB || n > CFG_MAX_MEMORY_MIB)
				return usage_error("run", "--mem: expected a size like 64M or 2G, at least %dM, got '%s'",
						   CFG_MIN_MEMORY_MIB, optarg);
			cJSON_AddNumberToObject(o->vm, "memory_mib", (double)n);
			o->vm_opts = true;
			break;
		case O_CPUS:
			if (!parse_uint(optarg, 1, CFG_MAX_VCPUS, &n))
				return usage_error("run", "--cpus: expected 1 to %d, got '%s'", CFG_MAX_VCPUS, optarg);
			cJSON_AddNumberToObject(o->vm, "vcpus", (double)n);
			o->vm_opts = true;
			break;
		case O_CMDLINE:
			if (strlen(optarg) >= CFG_CMDLINE_MAX)
				return usage_error("run", "--cmdline: longer than %d characters", CFG_CMDLINE_MAX - 1);
			cJSON_AddStringToObject(o->vm, "cmdline", optarg);
			o->vm_opts = true;
			break;
		case O_NAME:
			if (!config_name_valid(optarg))
				return usage_error("run", "--name: '%s' is not 1-31 characters from A-Z a-z 0-9 . _ -", optarg);
			cJSON_AddStringToObject(o->vm, "name", optarg);
			o->vm_opts = true;
			break;
		case O_DEVICE: {
			if (strcmp(optarg, "virtio-rng") && strcmp(optarg, "virtio-balloon") && strcmp(optarg, "cpu-reserve"))
				return usage_error("run", "--device: unknown type '%s' (known: virtio-rng, virtio-balloon, cpu-reserve)",
						   optarg);
			const cJSON *d;
			cJSON_ArrayForEach(d, devices)
				if (!strcmp(cJSON_GetObjectItem(d, "type")->valuestring, optarg))
					return usage_error("run", "--device %s given twice", optarg);
			cJSON *dev = cJSON_CreateObject();
			cJSON_AddStringToObject(dev, "type", optarg);
			cJSON_AddItemToArray(devices, dev);
			o->vm_opts = true;
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
	if (o->config && (o->single_mode || o->vm_opts))
		return usage_error("run", "give either a config file or --kernel and its options, not both");
	if (!o->config && !o->single_mode)
		return usage_error("run", "no config file and no --kernel: nothing to run");
	return 0;
}

/* The VM of --kernel and its options, through the config parser: one VM,
 * with every default and check a config file's VM gets. */
static int single_vm_config(struct run_opts *o, struct ferry_config *cfg, char *err, size_t errlen)
{
	if (!cJSON_GetObjectItem(o->vm, "name"))
		cJSON_AddStringToObject(o->vm, "name", "vm0");
	if (!cJSON_GetObjectItem(o->vm, "memory_mib"))
		cJSON_AddNumberToObject(o->vm, "memory_mib", 64);
	cJSON *root = cJSON_CreateObject(), *vms = cJSON_AddArrayToObject(root, "vms");
	cJSON_AddItemToArray(vms, o->vm);
	o->vm = NULL;
	char *text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!text) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int r = config_parse(text, "options", ".", cfg, err, errlen);
	free(text);
	return r;
}

int cmd_run(int argc, char **argv)
{
	struct run_opts o;
	int ret = parse_opts(argc, argv, &o);
	if (ret) {
		cJSON_Delete(o.vm);
		return ret;
	}
	struct ferry_config cfg = { 0 };
	char err[1024];
	if (o.config ? config_load_file(o.config, &cfg, err, sizeof(err)) : single_vm_config(&o, &cfg, err, sizeof(err))) {
		fprintf(stderr, "ferry run: %s\n", err);
		cJSON_Delete(o.vm);
		return EXIT_USAGE;
	}
	cJSON_Delete(o.vm);
	ret = api_run(&cfg, &o.run);
	config_free(&cfg);
	log_close();
	return ret;
}
