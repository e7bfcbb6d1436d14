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
#define CFG_MSGQ_RING_KIB 4096   /* default size of a direct ring */

struct msgq_device_config {
	char peers[CFG_MSGQ_MAX_PEERS][CFG_NAME_MAX];  /* VMs this one may send to */
	unsigned nr_peers;
	uint32_t send_slots, recv_slots, max_msg_pages; /* 0: default for the page size */
	uint32_t poll_us;                               /* deferred-send pickup interval */
	bool rings;     /* direct rings with the peers that have them too (MSGQ_F_RINGS) */
};

struct balloon_device_config {
	uint32_t stats_ms;      /* how often ferry asks the guest for statistics */
};

/* A VM's network card: a virtio-net device on one of the run's networks. */
#define CFG_MAX_NICS 4
struct nic_config {
	char network[CFG_NAME_MAX];
	unsigned net;                 /* index into ferry_config.networks */
	uint8_t mac[6];               /* given, or made from the VM's name */
};

/* A network: ferry's switch for the VMs on it, and optionally a TAP device
 * to the host's network stack. */
#define CFG_MAX_NETWORKS 16
#define CFG_IFNAME_MAX 16             /* IFNAMSIZ */
struct net_config {
	char name[CFG_NAME_MAX];
	char tap[CFG_IFNAME_MAX];     /* empty: no external port */
	char bridge[CFG_IFNAME_MAX];  /* a bridge the TAP joins, if any */
	uint32_t address;             /* the TAP's IPv4 address (host order), 0: none */
	unsigned prefix_len;
	uint32_t mtu;
	bool zero_copy;               /* offer ferry's zero-copy feature to drivers */
	bool bind_at_start;           /* bind every pair of zero-copy NICs when their drivers start (claim 8) */
	bool shm;                     /* every VM on it also shares memory with the others (a link) */
};

/* Memory shared by VMs from start-up, seen by each as an ivshmem device:
 * explicit ("links") or one per network with "shm": true. */
#define CFG_MAX_LINKS 32
#define CFG_MAX_LINK_VMS 16
struct link_config {
	unsigned vm[CFG_MAX_LINK_VMS];  /* indices into vms; a VM's position is its peer id */
	unsigned nr_vms;
	uint64_t size_mib;
	int network;                    /* the network that implies it, or -1 */
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

/* What ferry does when the VM fails (see docs/CONFIG.md "restart"). */
enum restart_policy { RESTART_NEVER, RESTART_ON_FAILURE };
#define CFG_MAX_RESTARTS_DEFAULT 5
#define CFG_MAX_RESTARTS 1000

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
	struct nic_config nics[CFG_MAX_NICS];
	unsigned nr_nics;
	enum restart_policy restart;  /* default RESTART_NEVER */
	uint64_t max_restarts;        /* restarts in the run before ferry gives up */
	uint64_t watchdog_ms;         /* 0: no watchdog; else the longest a VM may go without an exit to ferry */
};

struct ferry_config {
	struct vm_config *vms;
	unsigned nr_vms;
	struct net_config networks[CFG_MAX_NETWORKS];
	unsigned nr_networks;
	struct link_config links[CFG_MAX_LINKS];
	unsigned nr_links;
	struct {
		uint32_t copy_threshold;  /* bytes; 0: measure at start-up */
		uint32_t ring_kib;        /* size of each direct ring's data area */
		uint32_t spare_pages;     /* pool pages kept for VMs added while ferry runs */
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
/* Reads a whole file (at most 16 MiB) into a new string; NULL with a reason. */
char *config_read_file(const char *path, char *err, size_t errlen);

/* VMs to add to a running ferry: one VM object, or {"vms": [...], "links":
 * [...]} whose links couple VMs of the text. `running` describes what runs
 * now: its networks (NICs must name one of them; none may share memory,
 * "shm") and a copy of each running VM's config (names and MACs must not
 * repeat theirs; msgq peers may name them and must agree on "hugepages").
 * out gets the new VMs (and their links, by index into out->vms) with
 * running's networks, so NICs' network indices are the run's. */
int config_parse_addition(const char *text, const char *origin, const char *base_dir,
			  const struct ferry_config *running, struct ferry_config *out, char *err, size_t errlen);
void config_free(struct ferry_config *cfg);

/* The ferry-guest image built next to this ferry binary, used when a VM names
 * no kernel. */
void config_default_kernel(char *out, size_t len);

/* The MAC a NIC gets when the config names none: locally administered,
 * unicast, and the same for the same VM name and NIC index every run. */
void config_default_mac(const char *vm_name, unsigned nic, uint8_t mac[6]);
/* Parses "aa:bb:cc:dd:ee:ff"; false if malformed. */
bool config_parse_mac(const char *text, uint8_t mac[6]);

/* Checks a VM name: 1-31 characters from [A-Za-z0-9._-]. */
bool config_name_valid(const char *name);

const char *device_type_name(enum device_type type);

#endif
