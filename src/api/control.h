/* The control socket: `ferry run --control PATH` answers one JSON object
 * per line on a unix stream socket (mode 0600), every command of
 * docs/API.md: help, list, status, pause, resume, stop, add, remove,
 * balloon, budget, cpu-reserve, networks, net-unbind, links, metrics and
 * events (a subscription: events are pushed as JSON lines).
 *
 * Every answer is one line: {"ok": true, ...} or {"ok": false, "code": C,
 * "error": MESSAGE}; a request's "id", if any, comes back in its answer.
 * Errors are answers, never disconnects. Commands that build or free VMs
 * (add, remove, budget) run on the VMM's main thread; their answer comes
 * when they are done, and the client's next requests wait for it. */
#ifndef FERRY_CONTROL_H
#define FERRY_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/vmm.h"

struct control;

#define CONTROL_LINE_MAX 16384      /* a request line, newline included */
#define CONTROL_MAX_CLIENTS 32
#define CONTROL_MAX_SUBSCRIBERS 8

/* path NULL: no socket, control_handle only (tests, fuzzing; vmm may be
 * NULL too: a run with no VM). */
struct control *control_create(struct vmm *vmm, const char *path, char *err, size_t errlen);
void control_destroy(struct control *c);

/* Handles one request line as a client without a connection would see it
 * (no events, no commands that answer later); returns the answer (caller
 * frees). For tests and fuzzing. */
char *control_handle(struct control *c, const char *line);

/* The control socket as a service of the run (vmm_options.services). */
struct vmm_service control_service(const char *path);

#endif
