/* Seccomp allow-lists, one per kind of thread (docs/SECURITY.md lists each
 * allowed call and why). Every thread of `ferry run` loads its kind's filter
 * once its set-up is done: vCPU threads and the event loop before their
 * first guest work, the control thread (signals, stopping VMs) at start,
 * and the main thread once every VM runs (with a control socket, a wider
 * list that can build added VMs: files, memory, vCPU threads, but no
 * sockets, processes or programs). Any other call stops ferry with a
 * message naming the thread, its kind and the call, before it can do harm.
 * (libseccomp; per thread. A new thread inherits its creator's filter and
 * stacks its own, so the builder's list also covers a vCPU thread's set-up
 * up to loading the vCPU list.) */
#ifndef FERRY_SANDBOX_H
#define FERRY_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

extern bool sandbox_enabled;   /* --no-seccomp clears it */

enum sandbox_kind {
	SANDBOX_VCPU,        /* KVM_RUN and the exits it handles */
	SANDBOX_EVENT_LOOP,  /* doorbells, timers, schedulers, the control socket */
	SANDBOX_CONTROL,     /* the run's control thread: signals, stopping VMs */
	SANDBOX_MAIN,        /* waits for the VMs, then reports and tears down */
	SANDBOX_BUILDER,     /* main with a control socket: also builds added VMs */
	SANDBOX_KINDS
};

const char *sandbox_kind_name(enum sandbox_kind kind);

/* Confines the calling thread to its kind's list; 0, or -1 with a reason.
 * `who` names the thread in the report of a forbidden call. Does nothing
 * when disabled or in sanitizer builds (their runtimes make calls of their
 * own, and a forbidden call would hide the sanitizer's report). */
int sandbox_thread(enum sandbox_kind kind, const char *who, char *err, size_t errlen);

/* Whether kind's list allows system call nr (for tests and the docs),
 * whatever its arguments. */
bool sandbox_allows(enum sandbox_kind kind, int nr);

/* The arguments kind's list requires of nr, in words ("flags include
 * CLONE_THREAD"), or NULL if it takes any. */
const char *sandbox_condition(enum sandbox_kind kind, int nr);

/* The exit status of a ferry stopped for a forbidden call. */
#define SANDBOX_EXIT_STATUS 70

#endif
