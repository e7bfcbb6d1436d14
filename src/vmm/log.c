#include "vmm/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

enum log_level log_threshold = LOG_INFO;

static const char *const level_name[] = {
	[LOG_ERROR] = "error: ", [LOG_WARN] = "warning: ", [LOG_INFO] = "", [LOG_DEBUG] = "debug: ",
};

void log_msg(enum log_level level, const char *vm, const char *fmt, ...)
{
	if (level > log_threshold)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One fprintf per line so lines from vCPU threads do not interleave. */
	if (vm)
		fprintf(stderr, "ferry: %s: %s%s\n", vm, level_name[level], line);
	else
		fprintf(stderr, "ferry: %s%s\n", level_name[level], line);
}

bool log_limit_ok(struct log_limit *l)
{
	unsigned n = atomic_fetch_add(&l->count, 1);
	return n < LOG_LIMIT_BURST;
}
