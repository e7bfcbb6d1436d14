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
/* Stops the thread and frees everything; handlers must be removed first. */
void evl_destroy(struct eventloop *evl);

/* Calls fn(arg, events) on the loop thread whenever fd is ready. */
struct evl_handler *evl_add(struct eventloop *evl, int fd, uint32_t events, evl_fn fn, void *arg);
/* After this returns, fn is not running and will not run again (unless
 * called from fn itself, which may remove its own handler). */
void evl_del(struct eventloop *evl, struct evl_handler *h);

/* A periodic timer (period_ns > 0) on the loop; returns NULL on failure. */
struct evl_handler *evl_add_timer(struct eventloop *evl, uint64_t period_ns, evl_fn fn, void *arg);

#endif
