#include "vmm/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_threshold = LOG_INFO;

static const char *const level_name[] = {
	[LOG_ERROR] = "error", [LOG_WARN] = "warn", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file; /* NULL: stderr */

bool log_level_parse(const char *name, enum log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_name) / sizeof(level_name[0]); i++)
		if (!strcmp(name, level_name[i]) || (i == LOG_WARN && !strcmp(name, "warning"))) {
			*out = (enum log_level)i;
			return true;
		}
	return false;
}

const char *log_level_name(enum log_level level)
{
	return level_name[level];
}

int log_to_file(const char *path)
{
	FILE *f = fopen(path, "ae");
	if (!f)
		return -1;
	setvbuf(f, NULL, _IOLBF, 0);
	pthread_mutex_lock(&file_lock);
	FILE *old = log_file;
	log_file = f;
	pthread_mutex_unlock(&file_lock);
	if (old)
		fclose(old);
	return 0;
}

void log_close(void)
{
	pthread_mutex_lock(&file_lock);
	FILE *old = log_file;
	log_file = NULL;
	pthread_mutex_unlock(&file_lock);
	if (old)
		fclose(old);
}

void log_msg(enum log_level level, const char *vm, const char *fmt, ...)
{
	if (level > log_threshold)
		return;
	char line[1024], when[40];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* UTC: local time would make glibc read /etc/localtime, which the
	 * sandboxed threads may not open. */
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	/* One fprintf per line so lines from vCPU threads do not interleave. */
	pthread_mutex_lock(&file_lock);
	fprintf(log_file ? log_file : stderr, "%s %-5s %s: %s\n", when, level_name[level], vm ? vm : "-", line);
	pthread_mutex_unlock(&file_lock);
}

bool log_limit_ok(struct log_limit *l)
{
	unsigned n = atomic_fetch_add(&l->count, 1);
	return n < LOG_LIMIT_BURST;
}
