#include "vmm/events.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"

static struct {
	pthread_mutex_t lock;
	bool ready;
	int fd;
	char *line[EVENTS_RING];
	uint64_t next;            /* sequence number of the next event */
} ev = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

int events_init(void)
{
	pthread_mutex_lock(&ev.lock);
	if (!ev.ready) {
		ev.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ev.ready = ev.fd >= 0;
	}
	bool ok = ev.ready;
	pthread_mutex_unlock(&ev.lock);
	return ok ? 0 : -1;
}

void events_shutdown(void)
{
	pthread_mutex_lock(&ev.lock);
	for (unsigned i = 0; i < EVENTS_RING; i++) {
		free(ev.line[i]);
		ev.line[i] = NULL;
	}
	if (ev.fd >= 0)
		close(ev.fd);
	ev.fd = -1;
	ev.ready = false;
	pthread_mutex_unlock(&ev.lock);
}

/* A one-line, readable form for the log: type, VM, then the fields. */
static void log_event(const char *type, const char *vm, const cJSON *fields)
{
	char text[512];
	size_t n = 0;
	const cJSON *f;
	text[0] = '\0';
	cJSON_ArrayForEach(f, fields) {
		int k = 0;
		if (cJSON_IsString(f))
			k = snprintf(text + n, sizeof(text) - n, " %s=%s", f->string, f->valuestring);
		else if (cJSON_IsNumber(f))
			k = snprintf(text + n, sizeof(text) - n, " %s=%g", f->string, f->valuedouble);
		else if (cJSON_IsBool(f))
			k = snprintf(text + n, sizeof(text) - n, " %s=%s", f->string, cJSON_IsTrue(f) ? "true" : "false");
		if (k < 0 || (size_t)k >= sizeof(text) - n)
			break; /* truncated: the rest is in the event itself */
		n += (size_t)k;
	}
	bool frequent = !strncmp(type, "balloon-", 8);
	log_msg(frequent ? LOG_DEBUG : LOG_INFO, vm, "event %s%s", type, text);
}

void events_emit(const char *type, const char *vm, cJSON *fields)
{
	if (!fields)
		fields = cJSON_CreateObject();
	if (!fields)
		return;
	log_event(type, vm, fields);
	pthread_mutex_lock(&ev.lock);
	bool ready = ev.ready;
	pthread_mutex_unlock(&ev.lock);
	if (!ready) {
		cJSON_Delete(fields);
		return;
	}
	/* The event's own keys first, then its fields. */
	cJSON *o = cJSON_CreateObject();
	struct timespec ts;
	struct tm tm;
	char when[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm); /* UTC: localtime would read /etc/localtime, which sandboxed threads cannot */
	size_t k = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + k, sizeof(when) - k, ".%03ldZ", ts.tv_nsec / 1000000);
	cJSON_AddStringToObject(o, "event", type);
	cJSON_AddStringToObject(o, "time", when);
	if (vm)
		cJSON_AddStringToObject(o, "vm", vm);
	while (fields->child) {
		cJSON *f = cJSON_DetachItemViaPointer(fields, fields->child);
		cJSON_AddItemToObject(o, f->string, f);
	}
	cJSON_Delete(fields);
	char *line = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!line)
		return;
	pthread_mutex_lock(&ev.lock);
	if (ev.ready) {
		unsigned slot = (unsigned)(ev.next % EVENTS_RING);
		free(ev.line[slot]);
		ev.line[slot] = line;
		ev.next++;
		line = NULL;
		uint64_t one = 1;
		if (write(ev.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_debug(NULL, "events: cannot signal: %s", strerror(errno));
	}
	pthread_mutex_unlock(&ev.lock);
	free(line);
}

int events_fd(void)
{
	return ev.fd;
}

void events_ack(void)
{
	uint64_t n;
	if (ev.fd >= 0 && read(ev.fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_debug(NULL, "events: cannot read the eventfd: %s", strerror(errno));
}

void events_poke(void)
{
	uint64_t one = 1;
	if (ev.fd >= 0 && write(ev.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug(NULL, "events: cannot signal: %s", strerror(errno));
}

uint64_t events_next_seq(void)
{
	pthread_mutex_lock(&ev.lock);
	uint64_t n = ev.next;
	pthread_mutex_unlock(&ev.lock);
	return n;
}

uint64_t events_total(void)
{
	return events_next_seq();
}

unsigned events_read(uint64_t *cursor, unsigned max, void (*fn)(void *arg, const char *line), void *arg,
		     uint64_t *lost)
{
	unsigned n = 0;
	*lost = 0;
	pthread_mutex_lock(&ev.lock);
	uint64_t oldest = ev.next > EVENTS_RING ? ev.next - EVENTS_RING : 0;
	if (*cursor < oldest) {
		*lost = oldest - *cursor;
		*cursor = oldest;
	}
	if (*cursor > ev.next)
		*cursor = ev.next;
	while (*cursor < ev.next && n < max) {
		const char *line = ev.line[*cursor % EVENTS_RING];
		if (line)
			fn(arg, line);
		(*cursor)++;
		n++;
	}
	pthread_mutex_unlock(&ev.lock);
	return n;
}
