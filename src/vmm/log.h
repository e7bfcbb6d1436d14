/* Logging: one line per event, "TIME LEVEL VM: what happened", where TIME
 * is UTC (ISO 8601, milliseconds) and VM is "-" for ferry itself. Lines go
 * to stderr, or to a file (ferry run --log FILE), and below a level
 * (--log-level) they are dropped. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;

void log_msg(enum log_level level, const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(vm, ...) log_msg(LOG_ERROR, vm, __VA_ARGS__)
#define log_warn(vm, ...)  log_msg(LOG_WARN, vm, __VA_ARGS__)
#define log_info(vm, ...)  log_msg(LOG_INFO, vm, __VA_ARGS__)
#define log_debug(vm, ...) log_msg(LOG_DEBUG, vm, __VA_ARGS__)

/* "error", "warn", "info", "debug" -> level; false if none of those. */
bool log_level_parse(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);
/* Sends the log to path (appended to, opened now: before the sandboxed
 * threads start). 0, or -1 with errno. */
int log_to_file(const char *path);
/* Back to stderr (closes the file). */
void log_close(void);

/* A guest can trigger the same complaint millions of times; the first few
 * are logged and the rest only counted. Returns true if this one may log. */
struct log_limit {
	atomic_uint count;
};
#define LOG_LIMIT_BURST 8
bool log_limit_ok(struct log_limit *l);

#endif
