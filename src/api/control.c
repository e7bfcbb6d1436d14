#include "api/control.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "devices/cpu_reserve.h"
#include "devices/virtio_balloon.h"
#include "devices/virtio_net.h"
#include "host/net_switch.h"
#include "host/eventloop.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define MAX_CLIENTS 32
#define LINE_MAX_LEN 4096
#define OUT_MAX_LEN (4u << 20)               /* answers queued for a client that does not read */
#define IDLE_TIMEOUT_NS (30ull * 1000000000) /* a silent client is closed after this */
#define EVICT_IDLE_NS (1000000000ull)        /* when full, a client idle this long makes room */

struct client {
	struct control *ctl;
	int fd;
	struct evl_handler *h;
	char buf[LINE_MAX_LEN];
	size_t len;
	bool discarding;         /* skipping the rest of an over-long request */
	char *out;               /* answers not yet sent */
	size_t out_len, out_cap;
	bool want_out;           /* waiting for EPOLLOUT */
	uint64_t last_active_ns;
};

struct control {
	struct vmm *vmm;
	struct vm **vms;
	unsigned nr;
	bool manual_memory, manual_cpu;
	char path[108];
	int fd;
	struct evl_handler *listen, *idle_timer;
	struct client *clients[MAX_CLIENTS];
	uint64_t idle_timeout_ns;
	unsigned long timed_out, evicted;
};

static char *answer_error(const char *fmt, const char *arg)
{
	char msg[256];
	snprintf(msg, sizeof(msg), fmt, arg);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddFalseToObject(o, "ok");
	cJSON_AddStringToObject(o, "error", msg);
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static char *answer_ok(cJSON *o)
{
	if (!o)
		o = cJSON_CreateObject();
	cJSON_AddTrueToObject(o, "ok");
	char *s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static struct vm *find_vm(struct control *c, const char *name)
{
	for (unsigned i = 0; i < c->nr; i++)
		if (c->vms[i] && !strcmp(c->vms[i]->name, name))
			return c->vms[i];
	return NULL;
}

static cJSON *vm_status(struct vm *vm)
{
	cJSON *v = cJSON_CreateObject();
	cJSON_AddStringToObject(v, "name", vm->name);
	bool stopped = vm_is_stopped(vm);
	cJSON_AddStringToObject(v, "state", stopped	       ? vm_exit_reason_name(vm->exit_reason)
					    : vm->user_paused ? "paused"
							      : "running");
	if (stopped)
		cJSON_AddNumberToObject(v, "exit_code", vm_exit_code_for(vm->exit_reason, vm->guest_status));
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
	struct cpu_reserve_status r;
	if (cpu_reserve_get_status(vm, &r)) {
		cJSON *o = cJSON_AddObjectToObject(v, "cpu_reserve");
		cJSON_AddBoolToObject(o, "driver_ok", r.driver_ok);
		cJSON_AddNumberToObject(o, "requested", r.requested);
		cJSON_AddNumberToObject(o, "parked", r.parked);
		cJSON_AddBoolToObject(o, "acked", r.acked);
	}
	return v;
}

static bool get_number(const cJSON *req, const char *key, double min, double max, double *out)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(req, key);
	if (!cJSON_IsNumber(n) || !(n->valuedouble >= min && n->valuedouble <= max) ||
	    n->valuedouble != (double)(long long)n->valuedouble)
		return false;
	*out = n->valuedouble;
	return true;
}

char *control_handle(struct control *c, const char *line)
{
	cJSON *req = cJSON_Parse(line);
	char *ans = NULL;
	const cJSON *cmd = req ? cJSON_GetObjectItemCaseSensitive(req, "cmd") : NULL;
	const cJSON *name = req ? cJSON_GetObjectItemCaseSensitive(req, "vm") : NULL;
	struct vm *vm = cJSON_IsString(name) ? find_vm(c, name->valuestring) : NULL;
	double n;
	if (!req || !cJSON_IsObject(req)) {
		ans = answer_error("%s", "not a JSON object");
	} else if (!cJSON_IsString(cmd)) {
		ans = answer_error("%s", "missing \"cmd\" (status, balloon, cpu-reserve, stop, pause, resume, networks, net-unbind)");
	} else if (!strcmp(cmd->valuestring, "status")) {
		cJSON *o = cJSON_CreateObject();
		cJSON *arr = cJSON_AddArrayToObject(o, "vms");
		for (unsigned i = 0; i < c->nr; i++)
			if (c->vms[i])
				cJSON_AddItemToArray(arr, vm_status(c->vms[i]));
		ans = answer_ok(o);
	} else if (!strcmp(cmd->valuestring, "networks")) {
		cJSON *o = cJSON_CreateObject();
		cJSON *arr = cJSON_AddArrayToObject(o, "networks");
		/* No vmm: a control without a run (the fuzz target) has no networks. */
		for (unsigned i = 0; c->vmm && i < c->vmm->nr_nets; i++)
			cJSON_AddItemToArray(arr, net_switch_report(c->vmm->nets[i]));
		ans = answer_ok(o);
	} else if (strcmp(cmd->valuestring, "balloon") && strcmp(cmd->valuestring, "cpu-reserve") &&
		   strcmp(cmd->valuestring, "stop") && strcmp(cmd->valuestring, "net-unbind") &&
		   strcmp(cmd->valuestring, "pause") && strcmp(cmd->valuestring, "resume")) {
		ans = answer_error("unknown cmd \"%s\" (status, balloon, cpu-reserve, stop, pause, resume, networks, net-unbind)",
				   cmd->valuestring);
	} else if (!vm) {
		ans = answer_error("no VM named \"%s\"", cJSON_IsString(name) ? name->valuestring : "(missing \"vm\")");
	} else if (!strcmp(cmd->valuestring, "net-unbind")) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "unbound", virtio_net_unbind(vm));
		ans = answer_ok(o);
	} else if (!strcmp(cmd->valuestring, "pause") || !strcmp(cmd->valuestring, "resume")) {
		bool pause = !strcmp(cmd->valuestring, "pause");
		if (vm_is_stopped(vm))
			ans = answer_error("VM \"%s\" has stopped", vm->name);
		else if (pause == vm->user_paused)
			ans = answer_error(pause ? "VM \"%s\" is paused already" : "VM \"%s\" is not paused", vm->name);
		else {
			/* Its vCPUs wait outside the guest; devices and the
			 * network keep running (frames to it queue or drop). */
			if (pause)
				vm_pause(vm);
			else
				vm_resume(vm);
			vm->user_paused = pause;
			ans = answer_ok(NULL);
		}
	} else if (!strcmp(cmd->valuestring, "stop")) {
		vm_stop(vm, VM_EXIT_INTERRUPTED, 0, "stopped through the control socket");
		ans = answer_ok(NULL);
	} else if (!strcmp(cmd->valuestring, "balloon")) {
		struct balloon_status b;
		if (!c->manual_memory)
			ans = answer_error("%s", "the memory scheduler owns balloon targets in this run");
		else if (!balloon_get_status(vm, &b))
			ans = answer_error("VM \"%s\" has no balloon device", vm->name);
		else if (!get_number(req, "target_mib", 0, (double)vm->cfg->memory_mib, &n))
			ans = answer_error("\"target_mib\" must be an integer from 0 to the VM's memory (%s)", "MiB");
		else {
			balloon_set_target(vm, (uint64_t)n * 256);
			ans = answer_ok(NULL);
		}
	} else {
		struct cpu_reserve_status r;
		if (!c->manual_cpu)
			ans = answer_error("%s", "the CPU scheduler owns vCPU parking in this run");
		else if (!cpu_reserve_get_status(vm, &r))
			ans = answer_error("VM \"%s\" has no cpu-reserve device", vm->name);
		else if (!get_number(req, "count", 0, vm->nr_vcpus ? vm->nr_vcpus - 1 : 0, &n))
			ans = answer_error("\"count\" must be an integer from 0 to the VM's vCPUs minus one%s", "");
		else {
			cpu_reserve_request(vm, (uint32_t)n);
			ans = answer_ok(NULL);
		}
	}
	cJSON_Delete(req);
	return ans;
}

static void drop_client(struct client *cl)
{
	struct control *c = cl->ctl;
	for (unsigned i = 0; i < MAX_CLIENTS; i++)
		if (c->clients[i] == cl)
			c->clients[i] = NULL;
	evl_del(c->vmm->evl, cl->h);
	close(cl->fd);
	free(cl->out);
	free(cl);
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
	/* Wait for room only while something is queued. */
	bool want_out = cl->out_len > 0;
	if (want_out != cl->want_out) {
		if (evl_mod(cl->ctl->vmm->evl, cl->h, EPOLLIN | (want_out ? EPOLLOUT : 0)) < 0) {
			drop_client(cl);
			return false;
		}
		cl->want_out = want_out;
	}
	return true;
}

/* Queues one answer line. false: the client is gone (it does not read its
 * answers and the queue is full, or it hung up). */
static bool queue_answer(struct client *cl, const char *ans)
{
	size_t len = strlen(ans) + 1;
	if (cl->out_len + len > OUT_MAX_LEN) {
		log_warn(NULL, "control: a client that does not read its answers was disconnected");
		drop_client(cl);
		return false;
	}
	if (cl->out_len + len > cl->out_cap) {
		size_t cap = cl->out_cap ? cl->out_cap : 4096;
		while (cap < cl->out_len + len)
			cap *= 2;
		char *p = realloc(cl->out, cap);
		if (!p) {
			drop_client(cl);
			return false;
		}
		cl->out = p;
		cl->out_cap = cap;
	}
	memcpy(cl->out + cl->out_len, ans, len - 1);
	cl->out[cl->out_len + len - 1] = '\n';
	cl->out_len += len;
	return flush_client(cl);
}

/* Answers every complete line in the input buffer. false: the client is gone. */
static bool handle_lines(struct client *cl)
{
	char *nl;
	while ((nl = memchr(cl->buf, '\n', cl->len)) != NULL) {
		*nl = '\0';
		size_t used = (size_t)(nl + 1 - cl->buf);
		bool ok = true;
		if (cl->discarding) {
			cl->discarding = false; /* the end of an over-long request */
		} else {
			char *ans = control_handle(cl->ctl, cl->buf);
			ok = ans ? queue_answer(cl, ans) : queue_answer(cl, "{\"ok\": false, \"error\": \"out of memory\"}");
			free(ans);
		}
		if (!ok)
			return false;
		memmove(cl->buf, cl->buf + used, cl->len - used);
		cl->len -= used;
	}
	if (cl->len == sizeof(cl->buf)) {
		/* Over the limit: say so once, drop the rest of that line, and
		 * keep the connection. */
		cl->len = 0;
		if (!cl->discarding) {
			cl->discarding = true;
			char msg[96];
			snprintf(msg, sizeof(msg), "{\"ok\": false, \"error\": \"request longer than %d bytes\"}",
				 LINE_MAX_LEN - 1);
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
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	/* Read what is there, a bounded amount per wake-up, so one chatty
	 * client cannot hold the loop. */
	for (int rounds = 0; rounds < 16; rounds++) {
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

/* The client that has been quiet longest, for eviction when all slots are
 * taken; NULL if none is idle. */
static struct client *idlest(struct control *c, uint64_t now)
{
	struct client *best = NULL;
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		struct client *cl = c->clients[i];
		if (cl && now - cl->last_active_ns >= EVICT_IDLE_NS && !cl->out_len &&
		    (!best || cl->last_active_ns < best->last_active_ns))
			best = cl;
	}
	return best;
}

static void accept_one(struct control *c, int fd)
{
	uint64_t now = clock_ns();
	unsigned slot = 0;
	while (slot < MAX_CLIENTS && c->clients[slot])
		slot++;
	if (slot == MAX_CLIENTS) {
		/* Full: the longest-idle client makes room, so idle
		 * connections can never lock the others out. */
		struct client *victim = idlest(c, now);
		if (victim) {
			static const char bye[] = "{\"ok\": false, \"error\": \"closed: too many clients and this one was idle\"}\n";
			if (send(victim->fd, bye, sizeof(bye) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				log_debug(NULL, "control: evicted client: %s", strerror(errno));
			drop_client(victim);
			c->evicted++;
			for (slot = 0; c->clients[slot]; slot++)
				;
		}
	}
	struct client *cl = slot < MAX_CLIENTS ? calloc(1, sizeof(*cl)) : NULL;
	if (!cl) {
		static const char busy[] = "{\"ok\": false, \"error\": \"too many clients\"}\n";
		if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			log_debug(NULL, "control: refused client: %s", strerror(errno));
		close(fd);
		return;
	}
	cl->ctl = c;
	cl->fd = fd;
	cl->last_active_ns = now;
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
	for (int i = 0; i < 16; i++) {
		int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warn(NULL, "control: accept: %s", strerror(errno));
			return;
		}
		accept_one(c, fd);
	}
}

/* Once a second: clients silent for the idle timeout are closed. */
static void idle_tick(void *arg, uint32_t events)
{
	struct control *c = arg;
	(void)events;
	uint64_t now = clock_ns();
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		struct client *cl = c->clients[i];
		if (cl && now - cl->last_active_ns >= c->idle_timeout_ns) {
			c->timed_out++;
			drop_client(cl);
		}
	}
}

struct control *control_create(struct vmm *vmm, struct vm **vms, unsigned nr, const char *path,
			       bool manual_memory, bool manual_cpu, char *err, size_t errlen)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->vmm = vmm;
	c->vms = vms;
	c->nr = nr;
	c->manual_memory = manual_memory;
	c->manual_cpu = manual_cpu;
	c->fd = -1;
	if (!path)
		return c; /* no socket: control_handle only (tests) */
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "--control: socket path longer than %zu characters", sizeof(addr.sun_path) - 1);
		free(c);
		return NULL;
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
		free(c);
		return NULL;
	}
	unlink(path);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(c->fd, 8) < 0) {
		snprintf(err, errlen, "--control: cannot listen on %s: %s", path, strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		free(c);
		return NULL;
	}
	c->idle_timeout_ns = IDLE_TIMEOUT_NS;
	c->listen = evl_add(vmm->evl, c->fd, EPOLLIN, accept_ready, c);
	c->idle_timer = evl_add_timer(vmm->evl, 1000000000ull, idle_tick, c);
	if (!c->listen || !c->idle_timer) {
		snprintf(err, errlen, "--control: cannot watch %s", path);
		control_destroy(c);
		return NULL;
	}
	return c;
}

/* On the loop's side (evl_run_exclusive): no handler of ours runs while
 * the listener goes first (no client can be accepted after), then every
 * client. */
static void teardown(void *arg)
{
	struct control *c = arg;
	if (c->listen)
		evl_del(c->vmm->evl, c->listen);
	if (c->idle_timer)
		evl_del(c->vmm->evl, c->idle_timer);
	c->listen = c->idle_timer = NULL;
	for (unsigned i = 0; i < MAX_CLIENTS; i++)
		if (c->clients[i])
			drop_client(c->clients[i]);
}

void control_destroy(struct control *c)
{
	if (!c)
		return;
	evl_run_exclusive(c->vmm->evl, teardown, c);
	if (c->fd >= 0) {
		close(c->fd);
		unlink(c->path);
	}
	free(c);
}
