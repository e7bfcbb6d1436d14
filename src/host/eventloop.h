/* One epoll thread that runs device work off the vCPU threads: doorbells
 * (ioeventfds), timers, sockets. Handlers must not block. */
#ifndef FERRY_EVENTLOOP_H
#define FERRY_EVENTLOOP_H

#include <stdint.h>

struct eventloop;
struct evl_handler;

typedef void (*evl_fn)(void *arg, uint32_t events);

struct eventloop *evl_create(void);
int evl_start(struct eventloop *evl);
/* For a loop that was never started (tests/testvm.h): waits up to
 * timeout_ms for ready handlers and runs one batch of them on the calling
 * thread. How many were ready, or -1. */
int evl_poll(struct eventloop *evl, int timeout_ms);
/* Stops the thread and frees everything; handlers must be removed first. */
void evl_destroy(struct eventloop *evl);

/* Calls fn(arg, events) on the loop thread whenever fd is ready. */
struct evl_handler *evl_add(struct eventloop *evl, int fd, uint32_t events, evl_fn fn, void *arg);
/* After this returns, fn is not running and will not run again (unless
 * called from fn itself, which may remove its own handler). */
void evl_del(struct eventloop *evl, struct evl_handler *h);

/* Changes the events a handler waits for (e.g. EPOLLOUT while output is
 * queued). 0 or -1. */
int evl_mod(struct eventloop *evl, struct evl_handler *h, uint32_t events);

/* Runs fn(arg) while no handler runs: on the loop thread if called from
 * there, else under the loop's lock. Handlers fn removes with evl_del are
 * freed only after any batch that may still name them, so teardown of
 * objects the loop serves (a socket and its clients) is safe from any
 * thread when done in here. */
void evl_run_exclusive(struct eventloop *evl, void (*fn)(void *arg), void *arg);

/* Changes a timer's period (0 stops it; it starts again when set). */
int evl_timer_set(struct evl_handler *h, uint64_t period_ns);
/* A periodic timer (period_ns > 0) on the loop; returns NULL on failure. */
struct evl_handler *evl_add_timer(struct eventloop *evl, uint64_t period_ns, evl_fn fn, void *arg);

#endif
