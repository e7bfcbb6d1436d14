/* Seccomp for the threads that handle what guests send: vCPU threads and
 * the event loop. Each may make only the system calls its work needs; any
 * other stops ferry with a message naming the call, before it can do harm.
 * (libseccomp; per thread, so the main thread can still open files.) */
#ifndef FERRY_SANDBOX_H
#define FERRY_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

extern bool sandbox_enabled;   /* --no-seccomp clears it */

/* Confines the calling thread; 0, or -1 with a reason. Does nothing when
 * disabled or in sanitizer builds (their runtimes make calls of their own). */
int sandbox_thread(const char *who, char *err, size_t errlen);

#endif
