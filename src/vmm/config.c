#include "vmm/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry/msgq.h"

/* Parsing state: where we are, for messages. */
struct ctx {
	const char *origin;
	const char *base_dir;
	char *err;
	size_t errlen;
};

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s: %s: %s", c->origin, path, msg);
	return -1;
}

static const char *json_type_name(const cJSON *j)
{
	if (cJSON_IsObject(j)) return "an object";
	if (cJSON_IsArray(j)) return "an array";
	if (cJSON_IsString(j)) return "a string";
	if (cJSON_IsNumber(j)) return "a number";
	if (cJSON_IsBool(j)) return "a boolean";
	if (cJSON_IsNull(j)) return "null";
	return "invalid";
}

/* Every key of obj must be in allowed (NULL-terminated). */
static int check_keys(struct ctx *c, const cJSON *obj, const char *path, const char *const *allowed)
{
	const cJSON *item;
	cJSON_ArrayForEach(item, obj) {
		bool known = false;
		for (const char *const *k = allowed; *k; k++)
			known |= strcmp(item->string, *k) == 0;
		if (!known) {
			char keys[256] = "";
			for (const char *const *k = allowed; *k; k++)
				snprintf(keys + strlen(keys), sizeof(keys) - strlen(keys), "%s%s",
					 k == allowed ? "" : ", ", *k);
			return fail(c, path, "unknown key \"%s\" (allowed: %s)", item->string, keys);
		}
		/* cJSON keeps duplicates; a second "memory_mib" would silently lose. */
		for (const cJSON *o = obj->child; o != item; o = o->next)
			if (strcmp(o->string, item->string) == 0)
				return fail(c, path, "key \"%s\" appears twice", item->string);
	}
	return 0;
}

static int get_uint(struct ctx *c, const cJSON *obj, const char *key, const char *path,
		    uint64_t min, uint64_t max, bool required, uint64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v) {
		if (required)
			return fail(c, path, "missing required key \"%s\"", key);
		return 0;
	}
	if (!cJSON_IsNumber(v))
		return fail(c, path, "\"%s\" must be a non-negative integer, not %s", key, json_type_name(v));
	/* Range first: converting a negative or huge double to uint64_t is undefined. */
	double d = v->valuedouble;
	if (!(d >= 0 && d < 18446744073709551616.0) || d != (double)(uint64_t)d)
		return fail(c, path, "\"%s\" must be a non-negative integer (got %g)", key, d);
	if ((uint64_t)d < min || (uint64_t)d > max)
		return fail(c, path, "\"%s\" must be between %llu and %llu (got %llu)", key,
			    (unsigned long long)min, (unsigned long long)max, (unsigned long long)d);
	*out = (uint64_t)d;
	return 0;
}

static int get_string(struct ctx *c, const cJSON *obj, const char *key, const char *path,
		      bool required, char *out, size_t outlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v) {
		if (required)
			return fail(c, path, "missing required key \"%s\"", key);
		return 0;
	}
	if (!cJSON_IsString(v))
		return fail(c, path, "\"%s\" must be a string, not %s", key, json_type_name(v));
	if (strlen(v->valuestring) >= outlen)
		return fail(c, path, "\"%s\" is too long (max %zu characters)", key, outlen - 1);
	strcpy(out, v->valuestring);
	return 0;
}

static int get_bool(struct ctx *c, const cJSON *obj, const char *key, const char *path, bool *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return fail(c, path, "\"%s\" must be true or false, not %s", key, json_type_name(v));
	*out = cJSON_IsTrue(v);
	return 0;
}

static int resolve_path(struct ctx *c, const char *path, const char *key, char *p, size_t len)
{
	if (p[0] == '/' || p[0] == '\0')
		return 0;
	char joined[PATH_MAX];
	if ((size_t)snprintf(joined, sizeof(joined), "%s/%s", c->base_dir, p) >= sizeof(joined) ||
	    strlen(joined) >= len)
		return fail(c, path, "\"%s\": path too long", key);
	strcpy(p, joined);
	return 0;
}

bool config_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= CFG_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
		if (!ok)
			return false;
	}
	return true;
}

static const char *const device_type_names[] = {
	[DEV_VIRTIO_RNG] = "virtio-rng",
	[DEV_MSGQ] = "msgq",
	[DEV_BALLOON] = "virtio-balloon",
	[DEV_CPU_RESERVE] = "cpu-reserve",
};

const char *device_type_name(enum device_type type)
{
	return device_type_names[type];
}

void config_vm_defaults(struct vm_config *vm)
{
	memset(vm, 0, sizeof(*vm));
	snprintf(vm->name, sizeof(vm->name), "vm0");
	vm->memory_mib = 64;
	vm->vcpus = 1;
	vm->cpu_shares = 1000;
	vm->console_log_max_kib = CFG_CONSOLE_LOG_MAX_KIB;
	vm->max_restarts = CFG_MAX_RESTARTS_DEFAULT;
	config_memory_defaults(vm);
}

void config_memory_defaults(struct vm_config *vm)
{
	vm->memory.min_mib = vm->memory_mib < 32 ? vm->memory_mib : 32;
	vm->memory.max_mib = vm->memory_mib;
	vm->memory.shares = 1000;
}

void config_device_defaults(struct device_config *d, enum device_type type)
{
	memset(d, 0, sizeof(*d));
	d->type = type;
	d->balloon.stats_ms = 250;
	d->msgq.poll_us = 1000;
}

static int parse_msgq(struct ctx *c, const cJSON *j, const char *path, struct msgq_device_config *m)
{
	static const char *const keys[] = { "type", "peers", "send_slots", "recv_slots", "max_msg_pages",
					    "poll_us", "rings", NULL };
	if (check_keys(c, j, path, keys) < 0 || get_bool(c, j, "rings", path, &m->rings) < 0)
		return -1;
	uint64_t send = 0, recv = 0, max = 0, poll = m->poll_us;
	if (get_uint(c, j, "send_slots", path, 1, 65536, false, &send) < 0 ||
	    get_uint(c, j, "recv_slots", path, 1, 65536, false, &recv) < 0 ||
	    get_uint(c, j, "max_msg_pages", path, 1, 65536, false, &max) < 0 ||
	    get_uint(c, j, "poll_us", path, 10, 10000000, false, &poll) < 0)
		return -1;
	m->send_slots = (uint32_t)send;
	m->recv_slots = (uint32_t)recv;
	m->max_msg_pages = (uint32_t)max;
	m->poll_us = (uint32_t)poll;
	const cJSON *peers = cJSON_GetObjectItemCaseSensitive(j, "peers");
	if (peers) {
		if (!cJSON_IsArray(peers))
			return fail(c, path, "\"peers\" must be an array of VM names, not %s", json_type_name(peers));
		if (cJSON_GetArraySize(peers) > CFG_MSGQ_MAX_PEERS)
			return fail(c, path, "\"peers\": at most %d", CFG_MSGQ_MAX_PEERS);
		const cJSON *p;
		cJSON_ArrayForEach(p, peers) {
			if (!cJSON_IsString(p) || !config_name_valid(p->valuestring))
				return fail(c, path, "\"peers\" must hold VM names");
			strcpy(m->peers[m->nr_peers++], p->valuestring);
		}
	}
	return 0;
}

static int parse_device(struct ctx *c, const cJSON *j, const char *path, struct device_config *d)
{
	if (!cJSON_IsObject(j))
		return fail(c, path, "a device must be an object like {\"type\": \"virtio-rng\"}, not %s",
			    json_type_name(j));
	char type[32];
	if (get_string(c, j, "type", path, true, type, sizeof(type)) < 0)
		return -1;
	if (!strcmp(type, "virtio-rng")) {
		config_device_defaults(d, DEV_VIRTIO_RNG);
		static const char *const keys[] = { "type", NULL };
		return check_keys(c, j, path, keys);
	}
	if (!strcmp(type, "msgq")) {
		config_device_defaults(d, DEV_MSGQ);
		return parse_msgq(c, j, path, &d->msgq);
	}
	if (!strcmp(type, "virtio-balloon")) {
		static const char *const keys[] = { "type", "stats_ms", NULL };
		config_device_defaults(d, DEV_BALLOON);
		uint64_t ms = d->balloon.stats_ms;
		if (check_keys(c, j, path, keys) < 0 || get_uint(c, j, "stats_ms", path, 10, 60000, false, &ms) < 0)
			return -1;
		d->balloon.stats_ms = (uint32_t)ms;
		return 0;
	}
	if (!strcmp(type, "cpu-reserve")) {
		static const char *const keys[] = { "type", NULL };
		config_device_defaults(d, DEV_CPU_RESERVE);
		return check_keys(c, j, path, keys);
	}
	return fail(c, path, "unknown device type \"%s\" (known: virtio-rng, msgq, virtio-balloon, cpu-reserve)", type);
}

static int parse_memory_policy(struct ctx *c, const cJSON *vmj, const char *vmpath, struct vm_config *vm)
{
	struct memory_policy *m = &vm->memory;
	config_memory_defaults(vm);
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(vmj, "memory");
	if (!j)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "%s.memory", vmpath);
	static const char *const keys[] = { "min_mib", "max_mib", "shares", NULL };
	if (!cJSON_IsObject(j))
		return fail(c, path, "must be an object like {\"min_mib\": 64, \"max_mib\": 512, \"shares\": 1000}, not %s",
			    json_type_name(j));
	if (check_keys(c, j, path, keys) < 0 ||
	    get_uint(c, j, "max_mib", path, 1, vm->memory_mib, false, &m->max_mib) < 0 ||
	    get_uint(c, j, "min_mib", path, 0, m->max_mib, false, &m->min_mib) < 0 ||
	    get_uint(c, j, "shares", path, 1, 1000000, false, &m->shares) < 0)
		return -1;
	if (!cJSON_GetObjectItemCaseSensitive(j, "min_mib") && m->min_mib > m->max_mib)
		m->min_mib = m->max_mib;
	return 0;
}

static bool is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

bool config_parse_mac(const char *text, uint8_t mac[6])
{
	if (strlen(text) != 17)
		return false;
	for (int i = 0; i < 6; i++) {
		const char *p = text + 3 * i;
		if (!is_hex(p[0]) || !is_hex(p[1]) || (i < 5 && p[2] != ':'))
			return false;
		unsigned v;
		if (sscanf(p, "%2x", &v) != 1)
			return false;
		mac[i] = (uint8_t)v;
	}
	return true;
}

void config_default_mac(const char *vm_name, unsigned nic, uint8_t mac[6])
{
	/* FNV-1a of the name and the NIC's index: stable across runs. */
	uint32_t h = 2166136261u;
	for (const char *p = vm_name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ nic) * 16777619u;
	mac[0] = 0x02; /* locally administered, unicast */
	mac[1] = 0xfe;
	for (int i = 0; i < 4; i++)
		mac[2 + i] = (uint8_t)(h >> (8 * i));
}

static int parse_nics(struct ctx *c, const cJSON *vmj, const char *vmpath, struct vm_config *vm)
{
	const cJSON *nics = cJSON_GetObjectItemCaseSensitive(vmj, "nics");
	char path[128];
	if (!nics)
		return 0;
	snprintf(path, sizeof(path), "%s.nics", vmpath);
	if (!cJSON_IsArray(nics))
		return fail(c, path, "must be an array like [{\"network\": \"lan0\"}], not %s", json_type_name(nics));
	int n = cJSON_GetArraySize(nics);
	if (n > CFG_MAX_NICS)
		return fail(c, path, "too many NICs (%d, max %d)", n, CFG_MAX_NICS);
	for (int i = 0; i < n; i++) {
		static const char *const keys[] = { "network", "mac", NULL };
		const cJSON *j = cJSON_GetArrayItem(nics, i);
		struct nic_config *nic = &vm->nics[i];
		char mac[32] = "";
		snprintf(path, sizeof(path), "%s.nics[%d]", vmpath, i);
		if (!cJSON_IsObject(j))
			return fail(c, path, "must be an object like {\"network\": \"lan0\"}, not %s", json_type_name(j));
		if (check_keys(c, j, path, keys) < 0 ||
		    get_string(c, j, "network", path, true, nic->network, sizeof(nic->network)) < 0 ||
		    get_string(c, j, "mac", path, false, mac, sizeof(mac)) < 0)
			return -1;
		if (!mac[0])
			config_default_mac(vm->name, (unsigned)i, nic->mac);
		else if (!config_parse_mac(mac, nic->mac))
			return fail(c, path, "\"mac\": \"%s\" is not a MAC address like 02:00:00:00:00:01", mac);
		else if (nic->mac[0] & 1)
			return fail(c, path, "\"mac\": %s is a multicast address; a NIC needs a unicast one", mac);
		vm->nr_nics++;
	}
	return 0;
}

/* "10.0.0.1/24" */
static bool parse_cidr(const char *text, uint32_t *addr, unsigned *prefix)
{
	unsigned a, b, c, d, p;
	char tail;
	if (sscanf(text, "%u.%u.%u.%u/%u%c", &a, &b, &c, &d, &p, &tail) != 5 || a > 255 || b > 255 || c > 255 ||
	    d > 255 || p < 1 || p > 30)
		return false;
	*addr = a << 24 | b << 16 | c << 8 | d;
	*prefix = p;
	return true;
}

static bool ifname_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n >= CFG_IFNAME_MAX)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return false;
	return true;
}

static int parse_networks(struct ctx *c, const cJSON *root, struct ferry_config *cfg)
{
	const cJSON *nets = cJSON_GetObjectItemCaseSensitive(root, "networks");
	if (!nets)
		return 0;
	if (!cJSON_IsObject(nets))
		return fail(c, "networks", "must be an object like {\"lan0\": {}}, not %s", json_type_name(nets));
	const cJSON *j;
	cJSON_ArrayForEach(j, nets) {
		static const char *const keys[] = { "tap", "address", "bridge", "mtu", "zero_copy", "bind", "shm", NULL };
		char path[64], addr[32] = "", bind[16] = "on_traffic";
		snprintf(path, sizeof(path), "networks.%.40s", j->string);
		if (cfg->nr_networks == CFG_MAX_NETWORKS)
			return fail(c, "networks", "too many networks (max %d)", CFG_MAX_NETWORKS);
		struct net_config *n = &cfg->networks[cfg->nr_networks];
		memset(n, 0, sizeof(*n));
		if (!config_name_valid(j->string))
			return fail(c, path, "a network's name must be 1-%d characters from A-Z a-z 0-9 . _ -",
				    CFG_NAME_MAX - 1);
		snprintf(n->name, sizeof(n->name), "%s", j->string);
		if (!cJSON_IsObject(j))
			return fail(c, path, "must be an object like {\"tap\": \"ferry0\"}, not %s", json_type_name(j));
		uint64_t mtu = 1500;
		n->zero_copy = true;
		if (check_keys(c, j, path, keys) < 0 || get_string(c, j, "tap", path, false, n->tap, sizeof(n->tap)) < 0 ||
		    get_string(c, j, "address", path, false, addr, sizeof(addr)) < 0 ||
		    get_string(c, j, "bridge", path, false, n->bridge, sizeof(n->bridge)) < 0 ||
		    get_uint(c, j, "mtu", path, 68, 65535, false, &mtu) < 0 ||
		    get_bool(c, j, "zero_copy", path, &n->zero_copy) < 0 || get_bool(c, j, "shm", path, &n->shm) < 0 ||
		    get_string(c, j, "bind", path, false, bind, sizeof(bind)) < 0)
			return -1;
		n->mtu = (uint32_t)mtu;
		if (strcmp(bind, "on_traffic") && strcmp(bind, "at_start"))
			return fail(c, path, "\"bind\": \"%s\" must be \"on_traffic\" (cross-talk detected from frames) or "
				    "\"at_start\" (every pair of the network assumed to talk)", bind);
		n->bind_at_start = !strcmp(bind, "at_start");
		if (n->tap[0] && !ifname_valid(n->tap))
			return fail(c, path, "\"tap\": \"%s\" is not an interface name (1-%d of A-Z a-z 0-9 - _ .)", n->tap,
				    CFG_IFNAME_MAX - 1);
		if (addr[0] && !parse_cidr(addr, &n->address, &n->prefix_len))
			return fail(c, path, "\"address\": \"%s\" is not an IPv4 address with a prefix, like 10.0.0.1/24",
				    addr);
		if (addr[0] && !n->tap[0])
			return fail(c, path, "\"address\" is the host's side of a TAP port: it needs \"tap\"");
		if (n->bridge[0] && (!n->tap[0] || addr[0] || !ifname_valid(n->bridge)))
			return fail(c, path, "\"bridge\": \"%s\" must be an interface name, with \"tap\" and without \"address\"",
				    n->bridge);
		for (unsigned k = 0; k < cfg->nr_networks; k++)
			if (n->tap[0] && !strcmp(cfg->networks[k].tap, n->tap))
				return fail(c, path, "\"tap\": %s is already networks.%s's", n->tap, cfg->networks[k].name);
		cfg->nr_networks++;
	}
	return 0;
}

/* Every NIC of vms[first...] names a network of the file, and no two NICs
 * share a MAC. Paths count from `first` (an addition's own numbering). */
static int check_nics(struct ctx *c, struct ferry_config *cfg, unsigned first)
{
	for (unsigned i = first; i < cfg->nr_vms; i++) {
		struct vm_config *vm = &cfg->vms[i];
		for (unsigned k = 0; k < vm->nr_nics; k++) {
			struct nic_config *nic = &vm->nics[k];
			char path[96];
			snprintf(path, sizeof(path), "vms[%u].nics[%u]", i - first, k);
			unsigned n = 0;
			while (n < cfg->nr_networks && strcmp(cfg->networks[n].name, nic->network))
				n++;
			if (n == cfg->nr_networks)
				return fail(c, path, "network \"%s\" is not in \"networks\"", nic->network);
			nic->net = n;
			for (unsigned j = 0; j <= i; j++)
				for (unsigned m = 0; m < cfg->vms[j].nr_nics && (j < i || m < k); m++)
					if (!memcmp(cfg->vms[j].nics[m].mac, nic->mac, 6)) {
						char owner[64];
						if (j >= first)
							snprintf(owner, sizeof(owner), "vms[%u].nics[%u]", j - first, m);
						else /* a running VM's */
							snprintf(owner, sizeof(owner), "%s.nics[%u]", cfg->vms[j].name, m);
						return fail(c, path, "MAC %02x:%02x:%02x:%02x:%02x:%02x is already %s's",
							    nic->mac[0], nic->mac[1], nic->mac[2], nic->mac[3], nic->mac[4],
							    nic->mac[5], owner);
					}
		}
	}
	return 0;
}

static int vm_index(const struct ferry_config *cfg, const char *name)
{
	for (unsigned i = 0; i < cfg->nr_vms; i++)
		if (!strcmp(cfg->vms[i].name, name))
			return (int)i;
	return -1;
}

static bool link_size_valid(uint64_t mib)
{
	return mib >= 2 && mib <= 1024 && !(mib & (mib - 1));
}

/* Explicit links, then one per network with "shm": true (its VMs, in
 * order). A VM is in a link at most once. */
static int parse_links(struct ctx *c, const cJSON *root, struct ferry_config *cfg)
{
	const cJSON *links = cJSON_GetObjectItemCaseSensitive(root, "links");
	if (links && !cJSON_IsArray(links))
		return fail(c, "links", "must be an array like [{\"vms\": [\"a\", \"b\"], \"size_mib\": 16}], not %s",
			    json_type_name(links));
	const cJSON *j;
	int i = 0;
	cJSON_ArrayForEach(j, links) {
		static const char *const keys[] = { "vms", "size_mib", NULL };
		char path[32];
		snprintf(path, sizeof(path), "links[%d]", i++);
		if (cfg->nr_links == CFG_MAX_LINKS)
			return fail(c, "links", "too many links (max %d)", CFG_MAX_LINKS);
		struct link_config *l = &cfg->links[cfg->nr_links];
		memset(l, 0, sizeof(*l));
		l->network = -1;
		l->size_mib = 16;
		if (!cJSON_IsObject(j))
			return fail(c, path, "must be an object, not %s", json_type_name(j));
		if (check_keys(c, j, path, keys) < 0 || get_uint(c, j, "size_mib", path, 2, 1024, false, &l->size_mib) < 0)
			return -1;
		if (!link_size_valid(l->size_mib))
			return fail(c, path, "\"size_mib\" must be a power of two (a PCI BAR), got %llu",
				    (unsigned long long)l->size_mib);
		const cJSON *vms = cJSON_GetObjectItemCaseSensitive(j, "vms"), *v;
		if (!cJSON_IsArray(vms) || cJSON_GetArraySize(vms) != 2)
			return fail(c, path, "\"vms\" must name the two VMs it couples, like [\"a\", \"b\"]");
		cJSON_ArrayForEach(v, vms) {
			int k = cJSON_IsString(v) ? vm_index(cfg, v->valuestring) : -1;
			if (k < 0)
				return fail(c, path, "\"vms\": %s is not a VM in this file",
					    cJSON_IsString(v) ? v->valuestring : "(not a string)");
			if (l->nr_vms && l->vm[0] == (unsigned)k)
				return fail(c, path, "\"vms\": a VM cannot be coupled to itself");
			l->vm[l->nr_vms++] = (unsigned)k;
		}
		cfg->nr_links++;
	}
	for (unsigned n = 0; n < cfg->nr_networks; n++) {
		if (!cfg->networks[n].shm)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "networks.%s.shm", cfg->networks[n].name);
		if (cfg->nr_links == CFG_MAX_LINKS)
			return fail(c, path, "too many links (max %d)", CFG_MAX_LINKS);
		struct link_config *l = &cfg->links[cfg->nr_links];
		memset(l, 0, sizeof(*l));
		l->network = (int)n;
		l->size_mib = 16;
		for (unsigned v = 0; v < cfg->nr_vms; v++) {
			bool on = false;
			for (unsigned k = 0; k < cfg->vms[v].nr_nics; k++)
				on |= cfg->vms[v].nics[k].net == n;
			if (!on)
				continue;
			if (l->nr_vms == CFG_MAX_LINK_VMS)
				return fail(c, path, "more than %d VMs would share the network's memory", CFG_MAX_LINK_VMS);
			l->vm[l->nr_vms++] = v;
		}
		if (l->nr_vms >= 2)
			cfg->nr_links++;
	}
	/* One ivshmem device per VM: a VM in two links would need two. */
	for (unsigned a = 0; a < cfg->nr_links; a++)
		for (unsigned b = 0; b < a; b++)
			for (unsigned x = 0; x < cfg->links[a].nr_vms; x++)
				for (unsigned y = 0; y < cfg->links[b].nr_vms; y++)
					if (cfg->links[a].vm[x] == cfg->links[b].vm[y]) {
						char path[32];
						snprintf(path, sizeof(path), "links[%u]", a);
						return fail(c, path, "VM \"%s\" is already coupled by links[%u] (one link per VM)",
							    cfg->vms[cfg->links[a].vm[x]].name, b);
					}
	return 0;
}

static int parse_vm(struct ctx *c, const cJSON *j, const char *path, struct vm_config *vm)
{
	static const char *const keys[] = { "name", "memory_mib", "vcpus", "kernel", "cmdline", "hugepages",
					    "console_log", "console_log_max_kib", "devices", "nics", "memory",
					    "cpu_shares", "restart", "max_restarts", "watchdog_ms", NULL };
	if (!cJSON_IsObject(j))
		return fail(c, path, "must be an object, not %s", json_type_name(j));
	if (check_keys(c, j, path, keys) < 0)
		return -1;

	config_vm_defaults(vm);
	uint64_t vcpus = vm->vcpus;
	if (get_string(c, j, "name", path, true, vm->name, sizeof(vm->name)) < 0 ||
	    get_uint(c, j, "memory_mib", path, CFG_MIN_MEMORY_MIB, CFG_MAX_MEMORY_MIB, true, &vm->memory_mib) < 0 ||
	    get_uint(c, j, "vcpus", path, 1, CFG_MAX_VCPUS, false, &vcpus) < 0 ||
	    get_string(c, j, "kernel", path, false, vm->kernel, sizeof(vm->kernel)) < 0 ||
	    get_string(c, j, "cmdline", path, false, vm->cmdline, sizeof(vm->cmdline)) < 0 ||
	    get_bool(c, j, "hugepages", path, &vm->hugepages) < 0 ||
	    get_string(c, j, "console_log", path, false, vm->console_log, sizeof(vm->console_log)) < 0 ||
	    get_uint(c, j, "console_log_max_kib", path, 1, 1ull << 30, false, &vm->console_log_max_kib) < 0)
		return -1;
	vm->vcpus = (unsigned)vcpus;
	if (get_uint(c, j, "cpu_shares", path, 1, 1000000, false, &vm->cpu_shares) < 0)
		return -1;
	char restart[16] = "never";
	if (get_string(c, j, "restart", path, false, restart, sizeof(restart)) < 0)
		return -1;
	if (!strcmp(restart, "on-failure"))
		vm->restart = RESTART_ON_FAILURE;
	else if (strcmp(restart, "never"))
		return fail(c, path, "\"restart\" must be \"never\" or \"on-failure\" (got \"%s\")", restart);
	/* A watchdog below 100 ms would fire on a guest the host merely
	 * descheduled for a moment (2 cores shared by every VM). */
	if (get_uint(c, j, "max_restarts", path, 1, CFG_MAX_RESTARTS, false, &vm->max_restarts) < 0 ||
	    get_uint(c, j, "watchdog_ms", path, 100, 3600000, false, &vm->watchdog_ms) < 0)
		return -1;
	if (!config_name_valid(vm->name))
		return fail(c, path, "\"name\" must be 1-%d characters from A-Z a-z 0-9 . _ - (got \"%s\")",
			    CFG_NAME_MAX - 1, vm->name);
	if (vm->hugepages && vm->memory_mib % 2)
		return fail(c, path, "\"memory_mib\" must be a multiple of 2 with \"hugepages\" (got %llu)",
			    (unsigned long long)vm->memory_mib);

	if (parse_memory_policy(c, j, path, vm) < 0)
		return -1;

	if (vm->kernel[0] == '\0')
		config_default_kernel(vm->kernel, sizeof(vm->kernel));
	else if (resolve_path(c, path, "kernel", vm->kernel, sizeof(vm->kernel)) < 0)
		return -1;
	if (access(vm->kernel, R_OK) != 0)
		return fail(c, path, "\"kernel\": cannot read %s: %s", vm->kernel, strerror(errno));
	if (resolve_path(c, path, "console_log", vm->console_log, sizeof(vm->console_log)) < 0)
		return -1;

	const cJSON *devs = cJSON_GetObjectItemCaseSensitive(j, "devices");
	if (devs) {
		char dpath[128];
		snprintf(dpath, sizeof(dpath), "%s.devices", path);
		if (!cJSON_IsArray(devs))
			return fail(c, dpath, "must be an array, not %s", json_type_name(devs));
		int n = cJSON_GetArraySize(devs);
		if (n > CFG_MAX_DEVICES)
			return fail(c, dpath, "too many devices (%d, max %d)", n, CFG_MAX_DEVICES);
		for (int i = 0; i < n; i++) {
			snprintf(dpath, sizeof(dpath), "%s.devices[%d]", path, i);
			struct device_config *d = &vm->devices[vm->nr_devices];
			if (parse_device(c, cJSON_GetArrayItem(devs, i), dpath, d) < 0)
				return -1;
			for (unsigned k = 0; k < vm->nr_devices; k++)
				if (vm->devices[k].type == d->type)
					return fail(c, dpath, "a second %s device; each VM has at most one",
						    device_type_name(d->type));
			vm->nr_devices++;
		}
	}
	return parse_nics(c, j, path, vm);
}

const struct device_config *config_find_device(const struct vm_config *vm, enum device_type type)
{
	for (unsigned i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i].type == type)
			return &vm->devices[i];
	return NULL;
}

/* Message queues span VMs: peers must exist and have a msgq device, and all
 * windows share one page pool, so one page size. Checks vms[first...];
 * with ids, also that their msgq ids (their positions) are in range. */
static int check_msgq_links(struct ctx *c, const struct ferry_config *cfg, unsigned first, bool ids)
{
	int agree = -1; /* a msgq VM the others must agree with on page size */
	for (unsigned i = 0; i < cfg->nr_vms && agree < 0; i++)
		if (config_find_device(&cfg->vms[i], DEV_MSGQ))
			agree = (int)i;
	for (unsigned i = first; i < cfg->nr_vms; i++) {
		const struct device_config *d = config_find_device(&cfg->vms[i], DEV_MSGQ);
		if (!d)
			continue;
		char path[64];
		snprintf(path, sizeof(path), "vms[%u].devices (msgq)", i - first);
		if (ids && config_vm_id(i) > MSGQ_MAX_VM_ID)
			return fail(c, path, "only the first %d VMs can have a msgq device", MSGQ_MAX_VM_ID);
		if (cfg->vms[i].hugepages != cfg->vms[agree].hugepages)
			return fail(c, path, "all VMs with msgq devices must agree on \"hugepages\" (%s does not)",
				    cfg->vms[agree].name);
		for (unsigned p = 0; p < d->msgq.nr_peers; p++) {
			const char *peer = d->msgq.peers[p];
			unsigned k = 0;
			while (k < cfg->nr_vms && strcmp(cfg->vms[k].name, peer))
				k++;
			if (k == cfg->nr_vms)
				return fail(c, path, "peer \"%s\" is not a VM in this %s", peer, first ? "run" : "file");
			if (k == i)
				return fail(c, path, "a VM cannot list itself as a peer");
			if (!config_find_device(&cfg->vms[k], DEV_MSGQ))
				return fail(c, path, "peer \"%s\" has no msgq device", peer);
		}
	}
	return 0;
}

static int parse_host(struct ctx *c, const cJSON *root, struct ferry_config *cfg)
{
	const cJSON *h = cJSON_GetObjectItemCaseSensitive(root, "host");
	if (!h)
		return 0;
	static const char *const keys[] = { "memory_budget_mib", "vcpu_budget", NULL };
	if (!cJSON_IsObject(h))
		return fail(c, "host", "must be an object, not %s", json_type_name(h));
	if (check_keys(c, h, "host", keys) < 0 ||
	    get_uint(c, h, "memory_budget_mib", "host", 1, CFG_MAX_MEMORY_MIB * 64, false, &cfg->host.memory_budget_mib) < 0 ||
	    get_uint(c, h, "vcpu_budget", "host", 1, 4096, false, &cfg->host.vcpu_budget) < 0)
		return -1;
	if (cfg->host.vcpu_budget && cfg->host.vcpu_budget < cfg->nr_vms)
		return fail(c, "host.vcpu_budget", "must be at least one vCPU per VM (%u VMs, budget %llu)", cfg->nr_vms,
			    (unsigned long long)cfg->host.vcpu_budget);
	uint64_t mins = 0;
	for (unsigned i = 0; i < cfg->nr_vms; i++)
		mins += cfg->vms[i].memory.min_mib;
	if (cfg->host.memory_budget_mib && mins > cfg->host.memory_budget_mib)
		return fail(c, "host.memory_budget_mib",
			    "the VMs' min_mib add up to %llu MiB, %llu MiB more than the budget of %llu MiB",
			    (unsigned long long)mins, (unsigned long long)(mins - cfg->host.memory_budget_mib),
			    (unsigned long long)cfg->host.memory_budget_mib);
	return 0;
}

/* Turns cJSON's error pointer into "line L, column C". */
static void error_position(const char *text, const char *at, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (const char *p = text; p < at && *p; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

int config_parse(const char *text, const char *origin, const char *base_dir,
		 struct ferry_config *out, char *err, size_t errlen)
{
	struct ctx c = { origin, base_dir, err, errlen };
	memset(out, 0, sizeof(*out));
	out->msgq.ring_kib = CFG_MSGQ_RING_KIB;
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithOpts(text, &end, true);
	if (!root) {
		int line, col;
		error_position(text, end ? end : text, &line, &col);
		snprintf(err, errlen, "%s: line %d, column %d: invalid JSON", origin, line, col);
		return -1;
	}
	int ret = -1;
	static const char *const keys[] = { "vms", "msgq", "host", "networks", "links", NULL };
	if (!cJSON_IsObject(root)) {
		fail(&c, "(top level)", "must be an object, not %s", json_type_name(root));
		goto out;
	}
	if (check_keys(&c, root, "(top level)", keys) < 0)
		goto out;
	const cJSON *vms = cJSON_GetObjectItemCaseSensitive(root, "vms");
	if (!vms) {
		fail(&c, "(top level)", "missing required key \"vms\"");
		goto out;
	}
	if (!cJSON_IsArray(vms) || cJSON_GetArraySize(vms) == 0) {
		fail(&c, "vms", "must be a non-empty array of VM objects");
		goto out;
	}
	int n = cJSON_GetArraySize(vms);
	if (n > CFG_MAX_VMS) {
		fail(&c, "vms", "too many VMs (%d, max %d)", n, CFG_MAX_VMS);
		goto out;
	}
	out->vms = calloc((size_t)n, sizeof(*out->vms));
	if (!out->vms) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char path[32];
		snprintf(path, sizeof(path), "vms[%d]", i);
		if (parse_vm(&c, cJSON_GetArrayItem(vms, i), path, &out->vms[i]) < 0)
			goto out;
		for (int k = 0; k < i; k++) {
			if (strcmp(out->vms[k].name, out->vms[i].name) == 0) {
				fail(&c, path, "name \"%s\" is already used by vms[%d]", out->vms[i].name, k);
				goto out;
			}
		}
		out->nr_vms++;
	}
	const cJSON *mq = cJSON_GetObjectItemCaseSensitive(root, "msgq");
	if (mq) {
		static const char *const mq_keys[] = { "copy_threshold", "ring_kib", "spare_pages", NULL };
		uint64_t t = 0, kib = out->msgq.ring_kib, spare = 0;
		if (!cJSON_IsObject(mq)) {
			fail(&c, "msgq", "must be an object, not %s", json_type_name(mq));
			goto out;
		}
		if (check_keys(&c, mq, "msgq", mq_keys) < 0 ||
		    get_uint(&c, mq, "copy_threshold", "msgq", 0, 1u << 30, false, &t) < 0 ||
		    get_uint(&c, mq, "ring_kib", "msgq", 64, 65536, false, &kib) < 0 ||
		    get_uint(&c, mq, "spare_pages", "msgq", 0, 1u << 20, false, &spare) < 0)
			goto out;
		if (kib & (kib - 1)) {
			fail(&c, "msgq", "\"ring_kib\" must be a power of two (got %llu)", (unsigned long long)kib);
			goto out;
		}
		out->msgq.copy_threshold = (uint32_t)t;
		out->msgq.ring_kib = (uint32_t)kib;
		out->msgq.spare_pages = (uint32_t)spare;
	}
	if (check_msgq_links(&c, out, 0, true) < 0 || parse_host(&c, root, out) < 0 ||
	    parse_networks(&c, root, out) < 0 || check_nics(&c, out, 0) < 0 || parse_links(&c, root, out) < 0)
		goto out;
	ret = 0;
out:
	cJSON_Delete(root);
	if (ret < 0)
		config_free(out);
	return ret;
}

char *config_read_file(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	char *text = NULL;
	size_t size = 0, cap = 0;
	for (;;) {
		if (size + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 16384;
			if (cap > (16u << 20)) {
				snprintf(err, errlen, "%s: file is larger than 16 MiB", path);
				goto fail;
			}
			char *t = realloc(text, cap);
			if (!t) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			text = t;
		}
		size_t n = fread(text + size, 1, 4096, f);
		size += n;
		if (n < 4096)
			break;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(f);
	text[size] = '\0';
	if (strlen(text) != size) {
		snprintf(err, errlen, "%s: file contains a NUL byte", path);
		free(text);
		return NULL;
	}
	return text;
fail:
	fclose(f);
	free(text);
	return NULL;
}

int config_load_file(const char *path, struct ferry_config *out, char *err, size_t errlen)
{
	char *text = config_read_file(path, err, errlen);
	if (!text)
		return -1;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	int ret = config_parse(text, path, dirname(dir), out, err, errlen);
	free(text);
	return ret;
}

int config_parse_addition(const char *text, const char *origin, const char *base_dir,
			  const struct ferry_config *running, struct ferry_config *out, char *err, size_t errlen)
{
	struct ctx c = { origin, base_dir, err, errlen };
	struct ferry_config all;
	memset(out, 0, sizeof(*out));
	memset(&all, 0, sizeof(all));
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithOpts(text, &end, true), *wrap = NULL;
	if (!root) {
		int line, col;
		error_position(text, end ? end : text, &line, &col);
		snprintf(err, errlen, "%s: line %d, column %d: invalid JSON", origin, line, col);
		return -1;
	}
	int ret = -1;
	const cJSON *vms;
	if (!cJSON_IsObject(root)) {
		fail(&c, "(top level)", "must be a VM object or {\"vms\": [...]}, not %s", json_type_name(root));
		goto out;
	}
	if (cJSON_GetObjectItemCaseSensitive(root, "name")) {
		/* One VM object: as if it were {"vms": [it]}. */
		wrap = cJSON_CreateArray();
		if (!wrap || !cJSON_AddItemReferenceToArray(wrap, root)) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		vms = wrap;
	} else {
		static const char *const keys[] = { "vms", "links", NULL };
		if (check_keys(&c, root, "(top level)", keys) < 0)
			goto out;
		vms = cJSON_GetObjectItemCaseSensitive(root, "vms");
		if (!cJSON_IsArray(vms) || cJSON_GetArraySize(vms) == 0) {
			fail(&c, "vms", "must be a non-empty array of VM objects");
			goto out;
		}
	}
	int n = cJSON_GetArraySize(vms);
	if (n > CFG_MAX_VMS || running->nr_vms + (unsigned)n > CFG_MAX_VMS) {
		fail(&c, "vms", "too many VMs (%u running, %d more; max %d)", running->nr_vms, n, CFG_MAX_VMS);
		goto out;
	}
	/* The running VMs first, then the new ones: the checks see both. */
	all.vms = calloc(running->nr_vms + (size_t)n, sizeof(*all.vms));
	if (!all.vms) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (running->nr_vms)
		memcpy(all.vms, running->vms, running->nr_vms * sizeof(*all.vms));
	all.nr_vms = running->nr_vms;
	memcpy(all.networks, running->networks, sizeof(all.networks));
	all.nr_networks = running->nr_networks;
	unsigned first = running->nr_vms;
	for (int i = 0; i < n; i++) {
		char path[32];
		snprintf(path, sizeof(path), "vms[%d]", i);
		struct vm_config *vm = &all.vms[first + (unsigned)i];
		if (parse_vm(&c, cJSON_GetArrayItem(vms, i), path, vm) < 0)
			goto out;
		for (unsigned k = 0; k < first + (unsigned)i; k++)
			if (!strcmp(all.vms[k].name, vm->name)) {
				if (k < first)
					fail(&c, path, "a VM named \"%s\" is running already", vm->name);
				else
					fail(&c, path, "name \"%s\" is already used by vms[%u]", vm->name, k - first);
				goto out;
			}
		all.nr_vms++;
	}
	if (check_msgq_links(&c, &all, first, false) < 0 || check_nics(&c, &all, first) < 0)
		goto out;
	for (unsigned i = first; i < all.nr_vms; i++)
		for (unsigned k = 0; k < all.vms[i].nr_nics; k++)
			if (all.networks[all.vms[i].nics[k].net].shm) {
				char path[64];
				snprintf(path, sizeof(path), "vms[%u].nics[%u]", i - first, k);
				fail(&c, path, "network \"%s\" shares memory among its VMs (\"shm\"), which is fixed when "
					       "ferry starts: no VM can join it later", all.vms[i].nics[k].network);
				goto out;
			}
	/* Links couple VMs of the addition only: a running VM has its one
	 * ivshmem device already, or none it could get now. */
	out->vms = calloc((size_t)n, sizeof(*out->vms));
	if (!out->vms) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	memcpy(out->vms, all.vms + first, (size_t)n * sizeof(*out->vms));
	out->nr_vms = (unsigned)n;
	memcpy(out->networks, all.networks, sizeof(out->networks));
	out->nr_networks = all.nr_networks;
	for (unsigned k = 0; k < out->nr_networks; k++)
		out->networks[k].shm = false; /* their links exist already */
	if (!wrap && parse_links(&c, root, out) < 0)
		goto out;
	ret = 0;
out:
	free(all.vms);
	cJSON_Delete(wrap);
	cJSON_Delete(root);
	if (ret < 0)
		config_free(out);
	return ret;
}

void config_free(struct ferry_config *cfg)
{
	free(cfg->vms);
	cfg->vms = NULL;
	cfg->nr_vms = 0;
}

void config_default_kernel(char *out, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		snprintf(out, len, "guest/ferry-guest.elf");
		return;
	}
	exe[n] = '\0';
	snprintf(out, len, "%s/guest/ferry-guest.elf", dirname(exe));
}
