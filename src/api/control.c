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
#include "host/eventloop.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"

#define MAX_CLIENTS 16
#define LINE_MAX_LEN 4096

struct client {
	struct control *ctl;
	int fd;
	struct evl_handler *h;
	char buf[LINE_MAX_LEN];
	size_t len;
};

struct control {
	struct vmm *vmm;
	struct vm **vms;
	unsigned nr;
	bool manual_memory, manual_cpu;
	char path[108];
	int fd;
	struct evl_handler *listen;
	struct client *clients[MAX_CLIENTS];
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
	cJSON_AddStringToObject(v, "state", stopped ? vm_exit_reason_name(vm->exit_reason) : "running");
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
		ans = answer_error("%s", "missing \"cmd\" (status, balloon, cpu-reserve, stop)");
	} else if (!strcmp(cmd->valuestring, "status")) {
		cJSON *o = cJSON_CreateObject();
		cJSON *arr = cJSON_AddArrayToObject(o, "vms");
		for (unsigned i = 0; i < c->nr; i++)
			if (c->vms[i])
				cJSON_AddItemToArray(arr, vm_status(c->vms[i]));
		ans = answer_ok(o);
	} else if (strcmp(cmd->valuestring, "balloon") && strcmp(cmd->valuestring, "cpu-reserve") &&
		   strcmp(cmd->valuestring, "stop")) {
		ans = answer_error("unknown cmd \"%s\" (status, balloon, cpu-reserve, stop)", cmd->valuestring);
	} else if (!vm) {
		ans = answer_error("no VM named \"%s\"", cJSON_IsString(name) ? name->valuestring : "(missing \"vm\")");
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
	free(cl);
}

static void client_ready(void *arg, uint32_t events)
{
	struct client *cl = arg;
	ssize_t n = read(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - 1 - cl->len);
	if (n <= 0 || (events & (EPOLLHUP | EPOLLERR))) {
		drop_client(cl);
		return;
	}
	cl->len += (size_t)n;
	cl->buf[cl->len] = '\0';
	char *nl;
	while ((nl = strchr(cl->buf, '\n')) != NULL) {
		*nl = '\0';
		char *ans = control_handle(cl->ctl, cl->buf);
		bool ok = ans && dprintf(cl->fd, "%s\n", ans) > 0;
		free(ans);
		size_t used = (size_t)(nl + 1 - cl->buf);
		memmove(cl->buf, nl + 1, cl->len - used + 1);
		cl->len -= used;
		if (!ok) {
			drop_client(cl);
			return;
		}
	}
	if (cl->len == sizeof(cl->buf) - 1) {
		dprintf(cl->fd, "{\"ok\": false, \"error\": \"request longer than %d bytes\"}\n", LINE_MAX_LEN - 1);
		drop_client(cl);
	}
}

static void accept_ready(void *arg, uint32_t events)
{
	struct control *c = arg;
	(void)events;
	int fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	unsigned slot = 0;
	while (slot < MAX_CLIENTS && c->clients[slot])
		slot++;
	struct client *cl = slot < MAX_CLIENTS ? calloc(1, sizeof(*cl)) : NULL;
	if (!cl) {
		dprintf(fd, "{\"ok\": false, \"error\": \"too many clients\"}\n");
		close(fd);
		return;
	}
	cl->ctl = c;
	cl->fd = fd;
	cl->h = evl_add(c->vmm->evl, fd, EPOLLIN, client_ready, cl);
	if (!cl->h) {
		close(fd);
		free(cl);
		return;
	}
	c->clients[slot] = cl;
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
	c->listen = evl_add(vmm->evl, c->fd, EPOLLIN, accept_ready, c);
	return c;
}

void control_destroy(struct control *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < MAX_CLIENTS; i++)
		if (c->clients[i])
			drop_client(c->clients[i]);
	if (c->listen)
		evl_del(c->vmm->evl, c->listen);
	if (c->fd >= 0) {
		close(c->fd);
		unlink(c->path);
	}
	free(c);
}
