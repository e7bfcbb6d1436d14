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

struct vmm;
struct vm;
struct control;

/* manual_memory: false when the memory scheduler owns balloon targets. */
struct control *control_create(struct vmm *vmm, struct vm **vms, unsigned nr, const char *path,
			       bool manual_memory, bool manual_cpu, char *err, size_t errlen);
void control_destroy(struct control *c);

/* Handles one request line; returns the answer (caller frees). Exposed for
 * tests and fuzzing. */
char *control_handle(struct control *c, const char *line);

#endif
