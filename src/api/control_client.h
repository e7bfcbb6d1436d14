/* A client for the control socket (api/control.c): one connection, one JSON
 * request per line, one answer per line (and, after "events", one event per
 * line). Used by `ferry ctl`, `ferry top`, the benchmarks and the tests. */
#ifndef FERRY_CONTROL_CLIENT_H
#define FERRY_CONTROL_CLIENT_H

#include <stdbool.h>

struct cJSON;

/* Connects; -1 with errno on failure. */
int control_connect(const char *path);
/* Sends request (one line of JSON) and returns the parsed answer, or NULL
 * if the connection failed or the answer was not JSON. Lines that are
 * events (pushed to a subscriber) are skipped. */
struct cJSON *control_call(int fd, const char *request);
/* The next line, parsed; waits up to timeout_s (< 0: forever). NULL on
 * timeout (*timed_out set), end of file or a line that is not JSON. */
struct cJSON *control_read(int fd, double timeout_s, bool *timed_out);

#endif
