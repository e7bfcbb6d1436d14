#include "api/control.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api/metrics.h"
#include "api/stats.h"
#include "api/summary.h"
#include "devices/cpu_reserve.h"
#include "devices/virtio_balloon.h"
#include "devices/virtio_net.h"
#include "host/eventloop.h"
#include "host/link.h"
#include "host/net_switch.h"
#include "vmm/clock.h"
#include "vmm/events.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define OUT_MAX_LEN (4u << 20)               /* answers queued for a client that does not read */
#define IDLE_TIMEOUT_NS (30ull * 1000000000) /* a silent client is closed after this */
#define EVICT_IDLE_NS (1000000000ull)        /* when full, a client idle this long makes room */
#define ROUNDS 16                            /* reads and accepts per wake-up */

struct client {
	struct control *ctl;
	uint64_t serial;          /* names it for answers that come later */
	int fd;
	struct evl_handler *h;
	char buf[CONTROL_LINE_MAX];
	size_t len;
	bool discarding;          /* skipping the rest of an over-long request */
	char *out;                /* answers not yet sent */
	size_t out_len, out_cap;
	uint32_t events;          /* what it waits for now */
	uint64_t last_active_ns;
	bool pending;             /* a request runs on the main thread; later lines wait */
	bool subscribed;          /* events are pushed to it */
	bool overflow;            /* events came faster than it reads: it is dropped */
	uint64_t ev_cursor;       /* the next event it gets */
};

struct control {
	struct vmm *vmm;
	char path[108];
	char cwd[PATH_MAX];       /* where relative paths of "add" start by default */
	int fd;
	struct evl_handler *listen, *idle_timer, *events_h, *done_h;
	int done_fd;              /* readable when requests came back from the main thread */
	pthread_mutex_t done_lock;
	struct vmm_request *done;
	struct client *clients[CONTROL_MAX_CLIENTS];
	uint64_t next_serial;
	uint64_t idle_timeout_ns;
	unsigned long timed_out, evicted;
};

/* --- requests ---------------------------------------------------------------- */

/* One request being answered. */
struct req {
	struct control *c;
	struct client *cl;        /* NULL: control_handle() */
	const cJSON *json;
	const char *cmd;
	cJSON *ans;               /* the answer's fields so far */
	const char *code;         /* set: the answer is an error */
	char msg[1024];
	bool deferred;            /* answered later (the main thread works on it) */
};

static int fail(struct req *r, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct req *r, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->code = code;
	return -1;
}

static const char *json_type(const cJSON *j)
{
	return cJSON_IsString(j) ? "a string" : cJSON_IsNumber(j) ? "a number" : cJSON_IsBool(j) ? "a boolean"
	       : cJSON_IsNull(j) ? "null" : cJSON_IsArray(j) ? "an array" : "an object";
}

/* Every key must be "cmd", "id" or one of allowed. */
static int check_keys(struct req *r, const char *const *allowed)
{
	const cJSON *k;
	cJSON_ArrayForEach(k, r->json) {
		bool ok = !strcmp(k->string, "cmd") || !strcmp(k->string, "id");
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(k->string, *a);
		if (!ok)
			return fail(r, "bad_argument", "%s: unknown key \"%s\"", r->cmd, k->string);
	}
	return 0;
}

/* The VM named by "vm": in the run, or an error. */
static struct vmm_entry *arg_vm(struct req *r)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, "vm");
	if (!v) {
		fail(r, "bad_argument", "%s: missing \"vm\" (a VM's name)", r->cmd);
		return NULL;
	}
	if (!cJSON_IsString(v)) {
		fail(r, "bad_argument", "%s: \"vm\" must be a string, not %s", r->cmd, json_type(v));
		return NULL;
	}
	struct vmm_entry *e = r->c->vmm ? vmm_find(r->c->vmm, v->valuestring) : NULL;
	if (!e)
		fail(r, "no_such_vm", "no VM named \"%.64s\"", v->valuestring);
	return e;
}

/* A VM that was built (not one whose creation failed). */
static struct vm *arg_built_vm(struct req *r)
{
	struct vmm_entry *e = arg_vm(r);
	if (e && !e->vm)
		fail(r, "wrong_state", "VM \"%s\" could not be built: %s", e->name, e->error ? e->error : "?");
	return e ? e->vm : NULL;
}

static int arg_uint(struct req *r, const char *key, uint64_t min, uint64_t max, uint64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, key);
	if (!v)
		return fail(r, "bad_argument", "%s: missing \"%s\"", r->cmd, key);
	if (!cJSON_IsNumber(v))
		return fail(r, "bad_argument", "%s: \"%s\" must be a number, not %s", r->cmd, key, json_type(v));
	double d = v->valuedouble;
	if (!(d >= (double)min && d <= (double)max) || d != (double)(uint64_t)d)
		return fail(r, "bad_argument", "%s: \"%s\" must be an integer from %llu to %llu (got %g)", r->cmd, key,
			    (unsigned long long)min, (unsigned long long)max, d);
	*out = (uint64_t)d;
	return 0;
}

static const char *vm_state(struct vm *vm)
{
	if (vm_is_stopped(vm))
		return vm_exit_reason_name(vm->exit_reason);
	return vm->user_paused ? "paused" : "running";
}

/* --- commands ------------------------------------------------------------------ */

static const char *const no_keys[] = { NULL };

static int cmd_help(struct req *r);

static int cmd_list(struct req *r)
{
	if (check_keys(r, no_keys) < 0)
		return -1;
	cJSON *arr = cJSON_AddArrayToObject(r->ans, "vms");
	struct vmm *vmm = r->c->vmm;
	for (unsigned i = 0; vmm && i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (e->removed || e->building)
			continue;
		cJSON *v = cJSON_CreateObject();
		cJSON_AddStringToObject(v, "name", e->name);
		cJSON_AddNumberToObject(v, "id", e->id);
		cJSON_AddStringToObject(v, "state",
					e->vm ? vm_state(e->vm) : e->restarts && !e->gave_up ? "restarting" : "create-failed");
		cJSON_AddBoolToObject(v, "added", e->added);
		cJSON_AddItemToArray(arr, v);
	}
	return 0;
}

/* A VM's status: state, memory, balloon and cpu-reserve devices, and
 * the figures at a glance (not when brief); full counters with all. */
static cJSON *vm_status(struct vmm_entry *e, bool all, bool brief)
{
	cJSON *v = cJSON_CreateObject();
	cJSON_AddStringToObject(v, "name", e->name);
	cJSON_AddNumberToObject(v, "id", e->id);
	cJSON_AddBoolToObject(v, "added", e->added);
	if (e->restarts || e->cfg->restart == RESTART_ON_FAILURE)
		cJSON_AddNumberToObject(v, "restarts", e->restarts);
	struct vm *vm = e->vm;
	if (!vm) {
		/* Between the teardown and the build of a restart, or never built. */
		cJSON_AddStringToObject(v, "state", e->restarts && !e->gave_up ? "restarting" : "create-failed");
		cJSON_AddStringToObject(v, "detail", e->error ? e->error : "");
		return v;
	}
	bool stopped = vm_is_stopped(vm);
	cJSON_AddStringToObject(v, "state", vm_state(vm));
	if (stopped) {
		cJSON_AddNumberToObject(v, "exit_code", vm_exit_code_for(vm->exit_reason, vm->guest_status));
		if (vm->exit_detail[0])
			cJSON_AddStringToObject(v, "detail", vm->exit_detail);
	}
	cJSON_AddNumberToObject(v, "uptime_s", ns_to_ms((stopped ? vm->t_stop_ns : clock_ns()) - vm->t_create_ns) / 1000);
	cJSON_AddNumberToObject(v, "memory_mib", (double)vm->cfg->memory_mib);
	cJSON_AddNumberToObject(v, "resident_mib", (double)gm_resident_bytes(&vm->mem) / (1 << 20));
	struct balloon_status b;
	if (balloon_get_status(vm, &b)) {
		cJSON *o = cJSON_AddObjectToObject(v, "balloon");
		cJSON_AddBoolToObject(o, "driver_ok", b.driver_ok);
		cJSON_AddNumberToObject(o, "target_pages", (double)b.target_pages);
		cJSON_AddNumberToObject(o, "actual_pages", (double)b.actual_pages);
		cJSON_AddNumberToObject(o, "held_pages", (double)b.held_pages);
		if (b.have_stats) {
			cJSON_AddNumberToObject(o, "guest_free_mib", (double)b.mem_free / (1 << 20));
			cJSON_AddNumberToObject(o, "guest_total_mib", (double)b.mem_total / (1 << 20));
			cJSON_AddNumberToObject(o, "max_rate_pages_per_s", (double)b.max_rate);
		}
	}
	struct cpu_reserve_status cr;
	if (cpu_reserve_get_status(vm, &cr)) {
		cJSON *o = cJSON_AddObjectToObject(v, "cpu_reserve");
		cJSON_AddBoolToObject(o, "driver_ok", cr.driver_ok);
		cJSON_AddNumberToObject(o, "requested", cr.requested);
		cJSON_AddNumberToObject(o, "parked", cr.parked);
		cJSON_AddBoolToObject(o, "acked", cr.acked);
	}
	if (brief)
		return v;
	struct vm_stats s;
	vm_stats_collect(vm, e->added, &s);
	cJSON_AddItemToObject(v, "totals", vm_stats_json(&s));
	if (all) {
		cJSON *sum = summary_vm(vm, vm->cfg, NULL);
		cJSON *c = cJSON_DetachItemFromObjectCaseSensitive(sum, "counters");
		if (c)
			cJSON_AddItemToObject(v, "counters", c);
		cJSON_Delete(sum);
	}
	return v;
}

static int cmd_status(struct req *r)
{
	static const char *const keys[] = { "vm", "brief", NULL };
	if (check_keys(r, keys) < 0)
		return -1;
	struct vmm *vmm = r->c->vmm;
	const cJSON *b = cJSON_GetObjectItemCaseSensitive(r->json, "brief");
	if (b && !cJSON_IsBool(b))
		return fail(r, "bad_argument", "status: \"brief\" must be true or false, not %s", json_type(b));
	bool brief = cJSON_IsTrue(b);
	if (cJSON_GetObjectItemCaseSensitive(r->json, "vm")) {
		struct vmm_entry *e = arg_vm(r);
		if (!e)
			return -1;
		cJSON *arr = cJSON_AddArrayToObject(r->ans, "vms");
		cJSON_AddItemToArray(arr, vm_status(e, !brief, brief));
		return 0;
	}
	if (vmm && !brief) {
		struct host_stats h;
		host_stats_collect(vmm, &h);
		cJSON_AddItemToObject(r->ans, "host", host_stats_json(&h));
	}
	cJSON *arr = cJSON_AddArrayToObject(r->ans, "vms");
	for (unsigned i = 0; vmm && i < vmm->nr_entries; i++) {
		struct vmm_entry *e = vmm->entries[i];
		if (!e->removed && !e->building)
			cJSON_AddItemToArray(arr, vm_status(e, false, brief));
	}
	return 0;
}

static int cmd_pause_resume(struct req *r)
{
	static const char *const keys[] = { "vm", NULL };
	bool pause = !strcmp(r->cmd, "pause");
	struct vm *vm;
	if (check_keys(r, keys) < 0 || !(vm = arg_built_vm(r)))
		return -1;
	if (vm_is_stopped(vm))
		return fail(r, "wrong_state", "VM \"%s\" has stopped", vm->name);
	if (pause == vm->user_paused)
		return fail(r, "wrong_state", pause ? "VM \"%s\" is paused already" : "VM \"%s\" is not paused", vm->name);
	/* Its vCPUs wait outside the guest; devices and the network keep
	 * running (frames to it queue or drop). */
	if (pause)
		vm_pause(vm);
	else
		vm_resume(vm);
	vm->user_paused = pause;
	cJSON_AddStringToObject(r->ans, "state", pause ? "paused" : "running");
	events_emit(pause ? "vm-paused" : "vm-resumed", vm->name, NULL);
	return 0;
}

static int cmd_stop(struct req *r)
{
	static const char *const keys[] = { "vm", "all", NULL };
	if (check_keys(r, keys) < 0)
		return -1;
	const cJSON *all = cJSON_GetObjectItemCaseSensitive(r->json, "all");
	bool has_vm = cJSON_GetObjectItemCaseSensitive(r->json, "vm") != NULL;
	if (all && !cJSON_IsBool(all))
		return fail(r, "bad_argument", "stop: \"all\" must be true or false, not %s", json_type(all));
	if (cJSON_IsTrue(all) == has_vm)
		return fail(r, "bad_argument", "stop: give \"vm\" (one VM) or \"all\": true, not %s",
			    has_vm ? "both" : "neither");
	if (cJSON_IsTrue(all)) {
		unsigned n = 0;
		struct vmm *vmm = r->c->vmm;
		for (unsigned i = 0; vmm && i < vmm->nr_entries; i++) {
			struct vmm_entry *e = vmm->entries[i];
			if (!e->removed && !e->building && e->vm && !vm_is_stopped(e->vm)) {
				vm_stop(e->vm, VM_EXIT_INTERRUPTED, 0, "stopped through the control socket");
				n++;
			}
		}
		cJSON_AddNumberToObject(r->ans, "stopped", n);
		return 0;
	}
	struct vm *vm = arg_built_vm(r);
	if (!vm)
		return -1;
	if (vm_is_stopped(vm))
		return fail(r, "wrong_state", "VM \"%s\" has stopped already (%s)", vm->name,
			    vm_exit_reason_name(vm->exit_reason));
	vm_stop(vm, VM_EXIT_INTERRUPTED, 0, "stopped through the control socket");
	cJSON_AddNumberToObject(r->ans, "stopped", 1);
	return 0;
}

static int cmd_balloon(struct req *r)
{
	static const char *const keys[] = { "vm", "target_mib", NULL };
	struct vm *vm;
	struct balloon_status b;
	uint64_t mib;
	if (check_keys(r, keys) < 0 || !(vm = arg_built_vm(r)))
		return -1;
	if (r->c->vmm->memsched)
		return fail(r, "not_manual", "the memory scheduler owns balloon targets in this run (see \"budget\")");
	if (!balloon_get_status(vm, &b))
		return fail(r, "no_device", "VM \"%s\" has no balloon device", vm->name);
	if (arg_uint(r, "target_mib", 0, vm->cfg->memory_mib, &mib) < 0)
		return -1;
	if (vm_is_stopped(vm))
		return fail(r, "wrong_state", "VM \"%s\" has stopped", vm->name);
	balloon_set_target(vm, mib * 256);
	cJSON_AddNumberToObject(r->ans, "target_mib", (double)mib);
	return 0;
}

static int cmd_cpu_reserve(struct req *r)
{
	static const char *const keys[] = { "vm", "count", NULL };
	struct vm *vm;
	struct cpu_reserve_status st;
	uint64_t n;
	if (check_keys(r, keys) < 0 || !(vm = arg_built_vm(r)))
		return -1;
	if (r->c->vmm->cpusched)
		return fail(r, "not_manual", "the CPU scheduler owns vCPU parking in this run (host.vcpu_budget)");
	if (!cpu_reserve_get_status(vm, &st))
		return fail(r, "no_device", "VM \"%s\" has no cpu-reserve device", vm->name);
	if (arg_uint(r, "count", 0, vm->nr_vcpus - 1, &n) < 0)
		return -1;
	if (vm_is_stopped(vm))
		return fail(r, "wrong_state", "VM \"%s\" has stopped", vm->name);
	cpu_reserve_request(vm, (uint32_t)n);
	cJSON_AddNumberToObject(r->ans, "count", (double)n);
	return 0;
}

static int cmd_net_unbind(struct req *r)
{
	static const char *const keys[] = { "vm", NULL };
	struct vm *vm;
	if (check_keys(r, keys) < 0 || !(vm = arg_built_vm(r)))
		return -1;
	if (!vm->nr_nics)
		return fail(r, "no_device", "VM \"%s\" has no NIC", vm->name);
	cJSON_AddNumberToObject(r->ans, "unbound", virtio_net_unbind(vm));
	return 0;
}

/* The switch forwards by a static table (MACs from the config, no
 * learning): each NIC's MAC to its port; other unicast to the TAP, or
 * dropped; broadcast and multicast to every port. */
static void add_address_table(cJSON *net)
{
	cJSON *table = cJSON_AddArrayToObject(net, "address_table");
	const cJSON *p, *ports = cJSON_GetObjectItemCaseSensitive(net, "ports");
	cJSON_ArrayForEach(p, ports) {
		cJSON *row = cJSON_CreateObject();
		cJSON_AddStringToObject(row, "mac", cJSON_GetObjectItemCaseSensitive(p, "mac")->valuestring);
		cJSON_AddStringToObject(row, "port", cJSON_GetObjectItemCaseSensitive(p, "vm")->valuestring);
		cJSON_AddItemToArray(table, row);
	}
	const cJSON *tap = cJSON_GetObjectItemCaseSensitive(net, "tap");
	char other[64] = "dropped (no TAP)";
	if (tap)
		snprintf(other, sizeof(other), "TAP %s", cJSON_GetObjectItemCaseSensitive(tap, "name")->valuestring);
	cJSON_AddStringToObject(net, "unknown_unicast", other);
}

static int cmd_networks(struct req *r)
{
	if (check_keys(r, no_keys) < 0)
		return -1;
	cJSON *arr = cJSON_AddArrayToObject(r->ans, "networks");
	for (unsigned i = 0; r->c->vmm && i < r->c->vmm->nr_nets; i++) {
		cJSON *n = net_switch_report(r->c->vmm->nets[i]);
		add_address_table(n);
		cJSON_AddItemToArray(arr, n);
	}
	return 0;
}

static const char *name_of_id(struct vmm *vmm, unsigned id, bool *removed)
{
	for (unsigned i = 0; i < vmm->nr_entries; i++)
		if (vmm->entries[i]->id == id) {
			*removed = vmm->entries[i]->removed;
			return vmm->entries[i]->name;
		}
	*removed = false;
	return NULL;
}

static int cmd_links(struct req *r)
{
	if (check_keys(r, no_keys) < 0)
		return -1;
	cJSON *arr = cJSON_AddArrayToObject(r->ans, "links");
	struct vmm *vmm = r->c->vmm;
	struct link_service *svc = vmm ? vmm->links : NULL;
	for (unsigned i = 0; svc && i < svc->nr; i++) {
		struct shm_link *l = &svc->link[i];
		if (!l->used)
			continue;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "index", l->index);
		cJSON_AddNumberToObject(o, "size_mib", (double)(l->size >> 20));
		cJSON *peers = cJSON_AddArrayToObject(o, "peers");
		for (unsigned p = 0; p < l->nr_peers; p++) {
			struct link_port *port = &l->port[p];
			bool removed;
			const char *name = name_of_id(vmm, port->vm, &removed);
			cJSON *j = cJSON_CreateObject();
			cJSON_AddNumberToObject(j, "peer", p);
			if (name)
				cJSON_AddStringToObject(j, "vm", name);
			else
				cJSON_AddNullToObject(j, "vm");
			cJSON_AddBoolToObject(j, "removed", removed);
			cJSON_AddBoolToObject(j, "up", link_peer_up(l, p));
			cJSON_AddNumberToObject(j, "doorbells_sent", (double)atomic_load(&port->ctr.sent));
			cJSON_AddNumberToObject(j, "doorbells_received", (double)atomic_load(&port->ctr.received));
			cJSON_AddNumberToObject(j, "doorbells_rejected", (double)atomic_load(&port->ctr.rejected));
			cJSON_AddItemToArray(peers, j);
		}
		cJSON_AddItemToArray(arr, o);
	}
	return 0;
}

static int cmd_metrics(struct req *r)
{
	if (check_keys(r, no_keys) < 0)
		return -1;
	if (!r->c->vmm)
		return fail(r, "unavailable", "no run to measure");
	char *text = metrics_text(r->c->vmm);
	if (!text)
		return fail(r, "internal", "out of memory");
	cJSON_AddStringToObject(r->ans, "content_type", METRICS_CONTENT_TYPE);
	cJSON_AddStringToObject(r->ans, "text", text);
	free(text);
	return 0;
}

static int cmd_events(struct req *r)
{
	static const char *const keys[] = { "replay", NULL };
	if (check_keys(r, keys) < 0)
		return -1;
	const cJSON *replay = cJSON_GetObjectItemCaseSensitive(r->json, "replay");
	if (replay && !cJSON_IsBool(replay))
		return fail(r, "bad_argument", "events: \"replay\" must be true or false, not %s", json_type(replay));
	if (!r->cl)
		return fail(r, "unavailable", "events need a connection");
	if (r->cl->subscribed)
		return fail(r, "wrong_state", "this connection is subscribed already");
	unsigned subs = 0;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		subs += r->c->clients[i] && r->c->clients[i]->subscribed;
	if (subs >= CONTROL_MAX_SUBSCRIBERS)
		return fail(r, "too_many_subscribers", "%d connections are subscribed already", CONTROL_MAX_SUBSCRIBERS);
	uint64_t next = events_next_seq();
	/* The ring keeps the latest EVENTS_RING; a replay starts at the oldest. */
	r->cl->ev_cursor = cJSON_IsTrue(replay) ? (next > EVENTS_RING ? next - EVENTS_RING : 0) : next;
	r->cl->subscribed = true;
	if (cJSON_IsTrue(replay))
		events_poke(); /* what the ring holds goes out after this answer */
	cJSON_AddBoolToObject(r->ans, "subscribed", true);
	cJSON_AddNumberToObject(r->ans, "next_seq", (double)next);
	return 0;
}

/* --- commands the main thread carries out ------------------------------------- */

static void request_done(struct vmm_request *vr, void *arg)
{
	struct control *c = arg;
	pthread_mutex_lock(&c->done_lock);
	vr->next = c->done;
	c->done = vr;
	pthread_mutex_unlock(&c->done_lock);
	uint64_t one = 1;
	if (write(c->done_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn(NULL, "control: cannot signal a finished request: %s", strerror(errno));
}

static int post(struct req *r, struct vmm_request *vr)
{
	if (!r->cl || !r->c->vmm) {
		vmm_request_free(vr);
		return fail(r, "unavailable", "%s needs a connection to a running ferry", r->cmd);
	}
	vr->cookie = r->cl->serial;
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(r->json, "id");
	vr->echo = id ? cJSON_Duplicate(id, true) : NULL;
	vr->done = request_done;
	vr->arg = r->c;
	if (vmm_post(r->c->vmm, vr) < 0) {
		vmm_request_free(vr);
		return fail(r, "shutting_down", "ferry is shutting down");
	}
	r->deferred = true;
	return 0;
}

static int cmd_add(struct req *r)
{
	static const char *const keys[] = { "config", "base_dir", NULL };
	if (check_keys(r, keys) < 0)
		return -1;
	const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(r->json, "config");
	const cJSON *dir = cJSON_GetObjectItemCaseSensitive(r->json, "base_dir");
	if (!cfg)
		return fail(r, "bad_argument", "add: missing \"config\" (a VM object, or {\"vms\": [...]})");
	if (!cJSON_IsObject(cfg))
		return fail(r, "bad_argument", "add: \"config\" must be an object, not %s", json_type(cfg));
	if (dir && (!cJSON_IsString(dir) || dir->valuestring[0] != '/' || strlen(dir->valuestring) >= PATH_MAX))
		return fail(r, "bad_argument", "add: \"base_dir\" must be an absolute path");
	struct vmm_request *vr = calloc(1, sizeof(*vr));
	if (!vr || !(vr->text = cJSON_PrintUnformatted(cfg))) {
		free(vr);
		return fail(r, "internal", "out of memory");
	}
	vr->kind = VMM_REQ_ADD;
	snprintf(vr->origin, sizeof(vr->origin), "add");
	snprintf(vr->base_dir, sizeof(vr->base_dir), "%s", dir ? dir->valuestring : r->c->cwd);
	return post(r, vr);
}

static int cmd_remove(struct req *r)
{
	static const char *const keys[] = { "vm", NULL };
	struct vmm_entry *e;
	if (check_keys(r, keys) < 0 || !(e = arg_vm(r)))
		return -1;
	struct vmm_request *vr = calloc(1, sizeof(*vr));
	if (!vr)
		return fail(r, "internal", "out of memory");
	vr->kind = VMM_REQ_REMOVE;
	snprintf(vr->name, sizeof(vr->name), "%s", e->name);
	return post(r, vr);
}

static int cmd_budget(struct req *r)
{
	static const char *const keys[] = { "memory_mib", NULL };
	uint64_t mib;
	if (check_keys(r, keys) < 0 || arg_uint(r, "memory_mib", 0, (uint64_t)CFG_MAX_MEMORY_MIB * 64, &mib) < 0)
		return -1;
	struct vmm_request *vr = calloc(1, sizeof(*vr));
	if (!vr)
		return fail(r, "internal", "out of memory");
	vr->kind = VMM_REQ_BUDGET;
	vr->mib = mib;
	return post(r, vr);
}

static const struct command {
	const char *name;
	int (*fn)(struct req *r);
	const char *args;
	const char *help;
} commands[] = {
	{ "help", cmd_help, "", "these commands" },
	{ "list", cmd_list, "", "every VM: name, id, state" },
	{ "status", cmd_status, "[vm], [brief]", "host budgets and totals, and per VM its state, memory, devices and "
						  "figures (one VM: with every counter; brief: neither)" },
	{ "pause", cmd_pause_resume, "vm", "hold a VM's vCPUs outside the guest" },
	{ "resume", cmd_pause_resume, "vm", "let a paused VM run again" },
	{ "stop", cmd_stop, "vm | all: true", "stop a VM, or every VM (ferry then exits)" },
	{ "add", cmd_add, "config, [base_dir]", "add VMs from a config fragment while the others run" },
	{ "remove", cmd_remove, "vm", "take a VM out of the run and free everything it held" },
	{ "balloon", cmd_balloon, "vm, target_mib", "set a VM's balloon (MiB the guest gives back)" },
	{ "budget", cmd_budget, "memory_mib", "set the host memory budget (0: no memory scheduler)" },
	{ "cpu-reserve", cmd_cpu_reserve, "vm, count", "ask a VM to park count vCPUs (0 releases them)" },
	{ "networks", cmd_networks, "", "networks: ports, address tables, zero-copy channels, TAP, counters" },
	{ "net-unbind", cmd_net_unbind, "vm", "end a VM's zero-copy bindings (frames go back to copies)" },
	{ "links", cmd_links, "", "static shared-memory links: peers and doorbells" },
	{ "metrics", cmd_metrics, "", "every figure in Prometheus text format" },
	{ "events", cmd_events, "[replay]", "subscribe: events are pushed on this connection as JSON lines" },
};

static int cmd_help(struct req *r)
{
	if (check_keys(r, no_keys) < 0)
		return -1;
	cJSON *arr = cJSON_AddArrayToObject(r->ans, "commands");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "cmd", commands[i].name);
		cJSON_AddStringToObject(o, "args", commands[i].args);
		cJSON_AddStringToObject(o, "help", commands[i].help);
		cJSON_AddItemToArray(arr, o);
	}
	return 0;
}

static char *print_answer(cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;
	cJSON_Delete(o);
	return s;
}

static char *error_answer(const char *code, const char *msg, const cJSON *id)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddFalseToObject(o, "ok");
	cJSON_AddStringToObject(o, "code", code);
	cJSON_AddStringToObject(o, "error", msg);
	if (id)
		cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, true));
	return print_answer(o);
}

/* The answer to one line; NULL if it comes later (deferred) or out of memory
 * (*deferred says which). */
static char *handle(struct control *c, struct client *cl, const char *line, bool *deferred)
{
	*deferred = false;
	const char *end = NULL;
	cJSON *json = cJSON_ParseWithOpts(line, &end, true);
	if (!json)
		return error_answer("bad_json", "not valid JSON", NULL);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(json, "id");
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(json, "cmd");
	char *out = NULL;
	if (!cJSON_IsObject(json)) {
		out = error_answer("bad_request", "a request is a JSON object like {\"cmd\": \"status\"}", NULL);
	} else if (!cmd) {
		out = error_answer("bad_request", "missing \"cmd\" (see {\"cmd\": \"help\"})", id);
	} else if (!cJSON_IsString(cmd)) {
		char msg[64];
		snprintf(msg, sizeof(msg), "\"cmd\" must be a string, not %s", json_type(cmd));
		out = error_answer("bad_request", msg, id);
	} else {
		const struct command *k = NULL;
		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && !k; i++)
			if (!strcmp(commands[i].name, cmd->valuestring))
				k = &commands[i];
		struct req r = { .c = c, .cl = cl, .json = json, .cmd = cmd->valuestring, .ans = cJSON_CreateObject() };
		if (!k) {
			fail(&r, "unknown_command", "unknown command \"%.64s\" (see {\"cmd\": \"help\"})", cmd->valuestring);
		} else if (!r.ans) {
			fail(&r, "internal", "out of memory");
		} else {
			k->fn(&r);
		}
		if (r.code) {
			cJSON_Delete(r.ans);
			out = error_answer(r.code, r.msg, id);
		} else if (r.deferred) {
			cJSON_Delete(r.ans);
			*deferred = true;
		} else {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddTrueToObject(o, "ok");
			if (id)
				cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, true));
			while (r.ans->child) { /* "ok" (and "id") first: easier on the eye */
				cJSON *f = cJSON_DetachItemViaPointer(r.ans, r.ans->child);
				cJSON_AddItemToObject(o, f->string, f);
			}
			cJSON_Delete(r.ans);
			out = print_answer(o);
		}
	}
	cJSON_Delete(json);
	return out;
}

char *control_handle(struct control *c, const char *line)
{
	bool deferred;
	return handle(c, NULL, line, &deferred);
}

/* --- clients ------------------------------------------------------------------- */

static void drop_client(struct client *cl)
{
	struct control *c = cl->ctl;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i] == cl)
			c->clients[i] = NULL;
	evl_del(c->vmm->evl, cl->h);
	close(cl->fd);
	free(cl->out);
	free(cl);
}

/* What the client's handler waits for: requests unless one is running on
 * the main thread (hang-ups are always reported), room while answers wait. */
static bool set_events(struct client *cl)
{
	uint32_t want = (cl->pending ? 0 : EPOLLIN) | (cl->out_len ? EPOLLOUT : 0);
	if (want == cl->events)
		return true;
	if (evl_mod(cl->ctl->vmm->evl, cl->h, want) < 0) {
		drop_client(cl);
		return false;
	}
	cl->events = want;
	return true;
}

/* Sends what is queued. A client that went away is an ordinary error for
 * that client only: MSG_NOSIGNAL, so no SIGPIPE. false: the client is gone. */
static bool flush_client(struct client *cl)
{
	while (cl->out_len) {
		ssize_t n = send(cl->fd, cl->out, cl->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			drop_client(cl);
			return false;
		}
		memmove(cl->out, cl->out + n, cl->out_len - (size_t)n);
		cl->out_len -= (size_t)n;
	}
	return set_events(cl);
}

/* Appends one line to the client's output; false if it would exceed the
 * limit or memory ran out (the caller drops the client). */
static bool append_line(struct client *cl, const char *line)
{
	size_t len = strlen(line) + 1;
	if (cl->out_len + len > OUT_MAX_LEN)
		return false;
	if (cl->out_len + len > cl->out_cap) {
		size_t cap = cl->out_cap ? cl->out_cap : 4096;
		while (cap < cl->out_len + len)
			cap *= 2;
		char *p = realloc(cl->out, cap);
		if (!p)
			return false;
		cl->out = p;
		cl->out_cap = cap;
	}
	memcpy(cl->out + cl->out_len, line, len - 1);
	cl->out[cl->out_len + len - 1] = '\n';
	cl->out_len += len;
	return true;
}

/* Queues one answer line and sends. false: the client is gone. */
static bool queue_answer(struct client *cl, const char *ans)
{
	if (!append_line(cl, ans)) {
		log_warn(NULL, "control: a client that does not read its answers was disconnected");
		drop_client(cl);
		return false;
	}
	return flush_client(cl);
}

/* Answers every complete line in the input buffer, in order; stops at a
 * request that answers later. false: the client is gone. */
static bool handle_lines(struct client *cl)
{
	char *nl;
	while (!cl->pending && (nl = memchr(cl->buf, '\n', cl->len)) != NULL) {
		*nl = '\0';
		size_t used = (size_t)(nl + 1 - cl->buf);
		bool ok = true;
		if (cl->discarding) {
			cl->discarding = false; /* the end of an over-long request */
		} else {
			bool deferred;
			char *ans = handle(cl->ctl, cl, cl->buf, &deferred);
			if (deferred)
				cl->pending = true;
			else
				ok = queue_answer(cl, ans ? ans : "{\"ok\": false, \"code\": \"internal\", \"error\": \"out of memory\"}");
			free(ans);
		}
		if (!ok)
			return false;
		memmove(cl->buf, cl->buf + used, cl->len - used);
		cl->len -= used;
	}
	if (cl->pending)
		return set_events(cl);
	if (cl->len == sizeof(cl->buf)) {
		/* Over the limit: say so once, drop the rest of that line, and
		 * keep the connection. */
		cl->len = 0;
		if (!cl->discarding) {
			cl->discarding = true;
			char msg[128];
			snprintf(msg, sizeof(msg), "{\"ok\": false, \"code\": \"too_long\", \"error\": \"request longer than %d bytes\"}",
				 CONTROL_LINE_MAX - 1);
			return queue_answer(cl, msg);
		}
	}
	return true;
}

static void client_ready(void *arg, uint32_t events)
{
	struct client *cl = arg;
	cl->last_active_ns = clock_ns();
	if ((events & EPOLLOUT) && !flush_client(cl))
		return;
	if (cl->pending) {
		/* Its answer is on its way; a hang-up meanwhile ends it (the
		 * answer is then dropped). */
		if (events & (EPOLLHUP | EPOLLERR))
			drop_client(cl);
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	/* Read what is there, a bounded amount per wake-up, so one chatty
	 * client cannot hold the loop. */
	for (int rounds = 0; rounds < ROUNDS && !cl->pending; rounds++) {
		ssize_t n = read(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			drop_client(cl);
			return;
		}
		cl->len += (size_t)n;
		if (!handle_lines(cl))
			return;
	}
}

static struct client *client_by_serial(struct control *c, uint64_t serial)
{
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i] && c->clients[i]->serial == serial)
			return c->clients[i];
	return NULL;
}

/* Requests back from the main thread: each answer goes to its client, if
 * it is still there, which then goes on with its next lines. */
static void deliver_done(struct control *c)
{
	pthread_mutex_lock(&c->done_lock);
	struct vmm_request *list = c->done;
	c->done = NULL;
	pthread_mutex_unlock(&c->done_lock);
	while (list) {
		struct vmm_request *vr = list;
		list = vr->next;
		struct client *cl = client_by_serial(c, vr->cookie);
		char *ans;
		if (vr->status == 0) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddTrueToObject(o, "ok");
			if (vr->echo)
				cJSON_AddItemToObject(o, "id", cJSON_Duplicate(vr->echo, true));
			while (vr->result && vr->result->child) {
				cJSON *f = cJSON_DetachItemViaPointer(vr->result, vr->result->child);
				cJSON_AddItemToObject(o, f->string, f);
			}
			ans = print_answer(o);
		} else {
			ans = error_answer(vr->code, vr->error, vr->echo);
		}
		if (cl) {
			cl->pending = false;
			if (queue_answer(cl, ans ? ans : "{\"ok\": false, \"code\": \"internal\", \"error\": \"out of memory\"}"))
				handle_lines(cl);
		}
		free(ans);
		vmm_request_free(vr);
	}
}

static void done_ready(void *arg, uint32_t events)
{
	struct control *c = arg;
	uint64_t n;
	(void)events;
	if (read(c->done_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn(NULL, "control: %s", strerror(errno));
	deliver_done(c);
}

/* --- events ------------------------------------------------------------------- */

static void push_event(void *arg, const char *line)
{
	struct client *cl = arg;
	if (!cl->overflow && !append_line(cl, line))
		cl->overflow = true;
}

static void events_ready(void *arg, uint32_t events)
{
	struct control *c = arg;
	(void)events;
	events_ack();
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *cl = c->clients[i];
		if (!cl || !cl->subscribed)
			continue;
		uint64_t lost;
		events_read(&cl->ev_cursor, EVENTS_RING, push_event, cl, &lost);
		if (lost) {
			char line[96];
			snprintf(line, sizeof(line), "{\"event\": \"events-lost\", \"count\": %llu}", (unsigned long long)lost);
			push_event(cl, line);
		}
		if (cl->overflow) {
			log_warn(NULL, "control: an events subscriber that does not read was disconnected");
			drop_client(cl);
			continue;
		}
		flush_client(cl);
	}
}

/* --- the socket ------------------------------------------------------------------ */

/* The client that has been quiet longest, for eviction when all slots are
 * taken; NULL if none is idle (subscribers and clients waiting for an
 * answer are not idle). */
static struct client *idlest(struct control *c, uint64_t now)
{
	struct client *best = NULL;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *cl = c->clients[i];
		if (cl && !cl->subscribed && !cl->pending && now - cl->last_active_ns >= EVICT_IDLE_NS && !cl->out_len &&
		    (!best || cl->last_active_ns < best->last_active_ns))
			best = cl;
	}
	return best;
}

static void accept_one(struct control *c, int fd)
{
	uint64_t now = clock_ns();
	unsigned slot = 0;
	while (slot < CONTROL_MAX_CLIENTS && c->clients[slot])
		slot++;
	if (slot == CONTROL_MAX_CLIENTS) {
		/* Full: the longest-idle client makes room, so idle
		 * connections can never lock the others out. */
		struct client *victim = idlest(c, now);
		if (victim) {
			static const char bye[] =
				"{\"ok\": false, \"code\": \"evicted\", \"error\": \"closed: too many clients and this one was idle\"}\n";
			if (send(victim->fd, bye, sizeof(bye) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				log_debug(NULL, "control: evicted client: %s", strerror(errno));
			drop_client(victim);
			c->evicted++;
			for (slot = 0; c->clients[slot]; slot++)
				;
		}
	}
	struct client *cl = slot < CONTROL_MAX_CLIENTS ? calloc(1, sizeof(*cl)) : NULL;
	if (!cl) {
		static const char busy[] = "{\"ok\": false, \"code\": \"too_many_clients\", \"error\": \"too many clients\"}\n";
		if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug(NULL, "control: refused client: %s", strerror(errno));
		close(fd);
		return;
	}
	cl->ctl = c;
	cl->fd = fd;
	cl->serial = ++c->next_serial;
	cl->last_active_ns = now;
	cl->events = EPOLLIN;
	cl->h = evl_add(c->vmm->evl, fd, EPOLLIN, client_ready, cl);
	if (!cl->h) {
		close(fd);
		free(cl);
		return;
	}
	c->clients[slot] = cl;
}

static void accept_ready(void *arg, uint32_t events)
{
	struct control *c = arg;
	(void)events;
	/* A bounded number per wake-up; the rest wait in the backlog. */
	for (int i = 0; i < ROUNDS; i++) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warn(NULL, "control: accept: %s", strerror(errno));
			return;
		}
		accept_one(c, fd);
	}
}

/* Once a second: clients silent for the idle timeout are closed (not
 * subscribers, nor clients waiting for an answer). */
static void idle_tick(void *arg, uint32_t events)
{
	struct control *c = arg;
	(void)events;
	uint64_t now = clock_ns();
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *cl = c->clients[i];
		if (cl && !cl->subscribed && !cl->pending && now - cl->last_active_ns >= c->idle_timeout_ns) {
			c->timed_out++;
			drop_client(cl);
		}
	}
}

/* Listens at path with mode 0600: only its owner (root, as ferry runs)
 * can connect. */
static int listen_at(struct control *c, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "--control: socket path longer than %zu characters", sizeof(addr.sun_path) - 1);
		return -1;
	}
	strcpy(addr.sun_path, path);
	snprintf(c->path, sizeof(c->path), "%s", path);
	/* A leftover socket from a dead ferry is replaced; a live one is not. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0;
	if (probe >= 0)
		close(probe);
	if (live) {
		snprintf(err, errlen, "--control: %s is in use by another process", path);
		return -1;
	}
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "--control: %s exists and is not a socket", path);
		return -1;
	}
	unlink(path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		snprintf(err, errlen, "--control: socket: %s", strerror(errno));
		return -1;
	}
	/* The mode comes from the umask at bind: no moment where others could
	 * connect. The main thread is the only one making files now. */
	mode_t old = umask(0177);
	int r = bind(c->fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (r < 0 || chmod(path, 0600) < 0 || listen(c->fd, 16) < 0) {
		snprintf(err, errlen, "--control: cannot listen on %s: %s", path, strerror(errno));
		if (r == 0)
			unlink(path);
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	return 0;
}

struct control *control_create(struct vmm *vmm, const char *path, char *err, size_t errlen)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->vmm = vmm;
	c->fd = -1;
	c->done_fd = -1;
	pthread_mutex_init(&c->done_lock, NULL);
	if (!getcwd(c->cwd, sizeof(c->cwd)))
		snprintf(c->cwd, sizeof(c->cwd), "/");
	if (!path)
		return c; /* no socket: control_handle only (tests) */
	if (listen_at(c, path, err, errlen) < 0) {
		pthread_mutex_destroy(&c->done_lock);
		free(c);
		return NULL;
	}
	c->idle_timeout_ns = IDLE_TIMEOUT_NS;
	c->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->done_fd < 0) {
		snprintf(err, errlen, "--control: eventfd: %s", strerror(errno));
		control_destroy(c);
		return NULL;
	}
	c->listen = evl_add(vmm->evl, c->fd, EPOLLIN, accept_ready, c);
	c->idle_timer = evl_add_timer(vmm->evl, 1000000000ull, idle_tick, c);
	c->done_h = evl_add(vmm->evl, c->done_fd, EPOLLIN, done_ready, c);
	c->events_h = events_fd() >= 0 ? evl_add(vmm->evl, events_fd(), EPOLLIN, events_ready, c) : NULL;
	if (!c->listen || !c->idle_timer || !c->done_h || (events_fd() >= 0 && !c->events_h)) {
		snprintf(err, errlen, "--control: cannot watch %s", path);
		control_destroy(c);
		return NULL;
	}
	return c;
}

/* On the loop's side (evl_run_exclusive): no handler of ours runs while
 * the listener goes first (no client can be accepted after), answers that
 * came back are sent as far as the clients take them, then every client
 * goes. */
static void teardown(void *arg)
{
	struct control *c = arg;
	struct evl_handler **hs[] = { &c->listen, &c->idle_timer, &c->done_h, &c->events_h };
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
		if (*hs[i])
			evl_del(c->vmm->evl, *hs[i]);
		*hs[i] = NULL;
	}
	deliver_done(c);
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i])
			drop_client(c->clients[i]);
}

void control_destroy(struct control *c)
{
	if (!c)
		return;
	if (c->vmm)
		evl_run_exclusive(c->vmm->evl, teardown, c);
	deliver_done(c); /* (none left after the teardown; frees any without one) */
	if (c->fd >= 0) {
		close(c->fd);
		unlink(c->path);
	}
	if (c->done_fd >= 0)
		close(c->done_fd);
	pthread_mutex_destroy(&c->done_lock);
	free(c);
}

static void *control_start(struct vmm *vmm, const void *arg, char *err, size_t errlen)
{
	return control_create(vmm, arg, err, errlen);
}

static void control_stop(void *ctx)
{
	control_destroy(ctx);
}

struct vmm_service control_service(const char *path)
{
	struct vmm_service s = { .name = "control", .arg = path, .start = control_start, .stop = control_stop };
	return s;
}
