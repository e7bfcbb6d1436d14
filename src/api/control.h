/* The control socket: `ferry run --control PATH` answers one JSON object
 * per line on a unix stream socket (docs/API.md):
 *   {"cmd": "status"}
 *   {"cmd": "balloon", "vm": NAME, "target_mib": N}   balloon size, MiB
 *   {"cmd": "cpu-reserve", "vm": NAME, "count": K}    vCPUs to park
 *   {"cmd": "stop", "vm": NAME}
 * Every answer is one line: {"ok": true, ...} or {"ok": false, "error": ...}. */
#ifndef FERRY_CONTROL_H
#define FERRY_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/vmm.h"

struct vmm;
struct vm;
struct control;

/* path NULL: no socket, control_handle only (tests, fuzzing; vmm may be
 * NULL too). */
struct control *control_create(struct vmm *vmm, const char *path, char *err, size_t errlen);
void control_destroy(struct control *c);

struct vmm_service;
/* The control socket as a service of the run (vmm_options.services). */
struct vmm_service control_service(const char *path);

/* Handles one request line; returns the answer (caller frees). Exposed for
 * tests and fuzzing. */
char *control_handle(struct control *c, const char *line);

#endif
