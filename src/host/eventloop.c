#include "host/eventloop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/sandbox.h"

struct evl_handler {
	int fd;
	bool owns_fd;   /* timers: the loop made the fd, so it closes it */
	bool dead;
	evl_fn fn;
	void *arg;
	struct evl_handler *next_dead;
};

struct eventloop {
	int epfd;
	int wakefd;
	pthread_t thread;
	bool running;
	/* Held while a batch of events is dispatched, so evl_del from another
	 * thread waits for the handler to finish. Removed handlers are freed
	 * only after the batch that might still name them. */
	pthread_mutex_t lock;
	struct evl_handler *dead;
	bool stop;
};

struct eventloop *evl_create(void)
{
	struct eventloop *evl = calloc(1, sizeof(*evl));
	if (!evl)
		return NULL;
	pthread_mutex_init(&evl->lock, NULL);
	evl->epfd = epoll_create1(EPOLL_CLOEXEC);
	evl->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (evl->epfd < 0 || evl->wakefd < 0)
		goto fail;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(evl->epfd, EPOLL_CTL_ADD, evl->wakefd, &ev) < 0)
		goto fail;
	return evl;
fail:
	if (evl->epfd >= 0)
		close(evl->epfd);
	if (evl->wakefd >= 0)
		close(evl->wakefd);
	free(evl);
	return NULL;
}

/* The loop this thread is running exclusively (evl_run_exclusive), if any:
 * it holds that loop's lock already. */
static __thread struct eventloop *exclusive_on;

static void free_dead(struct eventloop *evl)
{
	while (evl->dead) {
		struct evl_handler *h = evl->dead;
		evl->dead = h->next_dead;
		if (h->owns_fd)
			close(h->fd);
		free(h);
	}
}

/* Runs one batch of ready handlers; loop lock held. */
static void dispatch(struct eventloop *evl, const struct epoll_event *events, int n)
{
	for (int i = 0; i < n; i++) {
		struct evl_handler *h = events[i].data.ptr;
		if (!h || h->dead)
			continue;
		if (h->owns_fd) { /* timer: consume the expiry count */
			uint64_t expirations;
			if (read(h->fd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
				log_error(NULL, "event loop: timer read: %s", strerror(errno));
		}
		h->fn(h->arg, events[i].events);
	}
	free_dead(evl);
}

static void *evl_thread(void *p)
{
	struct eventloop *evl = p;
	struct epoll_event events[64];
	char why[160];
	pthread_setname_np(pthread_self(), "ferry-events");
	if (sandbox_thread(SANDBOX_EVENT_LOOP, "ferry-events", why, sizeof(why)) < 0)
		log_error(NULL, "%s", why);
	for (;;) {
		int n = epoll_wait(evl->epfd, events, 64, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error(NULL, "event loop: epoll_wait: %s", strerror(errno));
			break;
		}
		pthread_mutex_lock(&evl->lock);
		if (evl->stop) {
			pthread_mutex_unlock(&evl->lock);
			break;
		}
		dispatch(evl, events, n);
		pthread_mutex_unlock(&evl->lock);
	}
	return NULL;
}

int evl_poll(struct eventloop *evl, int timeout_ms)
{
	if (evl->running)
		return -1;
	struct epoll_event events[64];
	int n = epoll_wait(evl->epfd, events, 64, timeout_ms);
	if (n <= 0)
		return n < 0 && errno != EINTR ? -1 : 0;
	pthread_mutex_lock(&evl->lock);
	exclusive_on = evl; /* handlers that evl_del themselves are on the loop */
	dispatch(evl, events, n);
	exclusive_on = NULL;
	pthread_mutex_unlock(&evl->lock);
	return n;
}

int evl_start(struct eventloop *evl)
{
	if (pthread_create(&evl->thread, NULL, evl_thread, evl) != 0)
		return -1;
	evl->running = true;
	return 0;
}

void evl_destroy(struct eventloop *evl)
{
	if (!evl)
		return;
	if (evl->running) {
		pthread_mutex_lock(&evl->lock);
		evl->stop = true;
		pthread_mutex_unlock(&evl->lock);
		uint64_t one = 1;
		if (write(evl->wakefd, &one, sizeof(one)) < 0)
			log_error(NULL, "event loop: wake: %s", strerror(errno));
		pthread_join(evl->thread, NULL);
	}
	free_dead(evl);
	close(evl->epfd);
	close(evl->wakefd);
	pthread_mutex_destroy(&evl->lock);
	free(evl);
}


static bool on_loop_thread(struct eventloop *evl)
{
	return exclusive_on == evl || (evl->running && pthread_equal(pthread_self(), evl->thread));
}

void evl_run_exclusive(struct eventloop *evl, void (*fn)(void *arg), void *arg)
{
	if (on_loop_thread(evl)) {
		fn(arg);
		return;
	}
	pthread_mutex_lock(&evl->lock);
	exclusive_on = evl;
	fn(arg);
	exclusive_on = NULL;
	pthread_mutex_unlock(&evl->lock);
}

int evl_mod(struct eventloop *evl, struct evl_handler *h, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = h };
	return epoll_ctl(evl->epfd, EPOLL_CTL_MOD, h->fd, &ev);
}

struct evl_handler *evl_add(struct eventloop *evl, int fd, uint32_t events, evl_fn fn, void *arg)
{
	struct evl_handler *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->fd = fd;
	h->fn = fn;
	h->arg = arg;
	struct epoll_event ev = { .events = events, .data.ptr = h };
	if (epoll_ctl(evl->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(h);
		return NULL;
	}
	return h;
}

void evl_del(struct eventloop *evl, struct evl_handler *h)
{
	if (!h)
		return;
	bool self = on_loop_thread(evl);
	if (!self)
		pthread_mutex_lock(&evl->lock);
	epoll_ctl(evl->epfd, EPOLL_CTL_DEL, h->fd, NULL);
	h->dead = true;
	h->next_dead = evl->dead;
	evl->dead = h;
	if (!self)
		pthread_mutex_unlock(&evl->lock);
}

static int set_period(int fd, uint64_t period_ns)
{
	struct itimerspec its = {
		.it_interval = { (time_t)(period_ns / 1000000000ull), (long)(period_ns % 1000000000ull) },
	};
	its.it_value = its.it_interval;
	return timerfd_settime(fd, 0, &its, NULL);
}

int evl_timer_set(struct evl_handler *h, uint64_t period_ns)
{
	return h && h->owns_fd ? set_period(h->fd, period_ns) : -1;
}

struct evl_handler *evl_add_timer(struct eventloop *evl, uint64_t period_ns, evl_fn fn, void *arg)
{
	if (period_ns == 0)
		return NULL;
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fd < 0)
		return NULL;
	if (set_period(fd, period_ns) < 0) {
		close(fd);
		return NULL;
	}
	struct evl_handler *h = evl_add(evl, fd, EPOLLIN, fn, arg);
	if (!h) {
		close(fd);
		return NULL;
	}
	h->owns_fd = true;
	return h;
}
