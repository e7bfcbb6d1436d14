/* The run configuration: a JSON file (or the equivalent CLI options) parsed
 * into plain structs. Everything is validated here, before any VM exists, and
 * every error names the file and the JSON path of the offending value. */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_NAME_MAX      32
#define CFG_CMDLINE_MAX   3072   /* leaves room for what ferry appends */
#define CFG_MAX_VMS       256
#define CFG_MAX_DEVICES   16
#define CFG_MAX_VCPUS     64
#define CFG_MIN_MEMORY_MIB 2
#define CFG_MAX_MEMORY_MIB (1024 * 1024)

enum device_type {
	DEV_VIRTIO_RNG,
	DEV_MSGQ,
	DEV_BALLOON,
	DEV_CPU_RESERVE,
};

#define CFG_MSGQ_MAX_PEERS 16

struct msgq_device_config {
	char peers[CFG_MSGQ_MAX_PEERS][CFG_NAME_MAX];  /* VMs this one may send to */
	unsigned nr_peers;
	uint32_t send_slots, recv_slots, max_msg_pages; /* 0: default for the page size */
	uint32_t poll_us;                               /* deferred-send pickup interval */
};

struct balloon_device_config {
	uint32_t stats_ms;      /* how often ferry asks the guest for statistics */
};

struct device_config {
	enum device_type type;
	struct msgq_device_config msgq;
	struct balloon_device_config balloon;
};

/* How the memory scheduler treats a VM (see host/mem_scheduler.c). */
struct memory_policy {
	uint64_t min_mib;       /* never ask the VM to go below this */
	uint64_t max_mib;       /* never give it more (<= memory_mib) */
	uint64_t shares;        /* its weight when memory is divided */
};

struct vm_config {
	char name[CFG_NAME_MAX];
	uint64_t memory_mib;
	unsigned vcpus;
	char kernel[PATH_MAX];
	char cmdline[CFG_CMDLINE_MAX];
	bool hugepages;
	char console_log[PATH_MAX];   /* empty: <log dir>/<name>.log */
	uint64_t console_log_max_kib; /* the log stops growing here (a guest can print forever) */
	struct memory_policy memory;
	uint64_t cpu_shares;          /* weight when the host's vCPU budget is divided */
	struct device_config devices[CFG_MAX_DEVICES];
	unsigned nr_devices;
};

struct ferry_config {
	struct vm_config *vms;
	unsigned nr_vms;
	struct {
		uint32_t copy_threshold;  /* bytes; 0: measure at start-up */
	} msgq;
	struct {
		uint64_t memory_budget_mib;  /* 0: no memory scheduler */
		uint64_t vcpu_budget;        /* vCPUs that may run at once; 0: no CPU scheduler */
	} host;
};

#define CFG_CONSOLE_LOG_MAX_KIB 16384

/* Defaults, the same for a config file and for `ferry run --kernel`: a VM
 * ("vm0", 64 MiB, 1 vCPU, ...), the memory policy for its memory_mib, a
 * device of a type. */
void config_vm_defaults(struct vm_config *vm);
void config_memory_defaults(struct vm_config *vm);
void config_device_defaults(struct device_config *d, enum device_type type);

/* The VM's id as other VMs see it (message sources and destinations). */
static inline uint32_t config_vm_id(unsigned index)
{
	return index + 1;
}

/* A VM's msgq device, or NULL. */
const struct device_config *config_find_device(const struct vm_config *vm, enum device_type type);

/* Parses JSON text. `origin` names the source in messages (a file name);
 * relative paths in it are taken relative to `base_dir`. */
int config_parse(const char *text, const char *origin, const char *base_dir,
		 struct ferry_config *out, char *err, size_t errlen);
int config_load_file(const char *path, struct ferry_config *out, char *err, size_t errlen);
void config_free(struct ferry_config *cfg);

/* The ferry-guest image built next to this ferry binary, used when a VM names
 * no kernel. */
void config_default_kernel(char *out, size_t len);

/* Checks a VM name: 1-31 characters from [A-Za-z0-9._-]. */
bool config_name_valid(const char *name);

const char *device_type_name(enum device_type type);

#endif
