/* A client for the control socket (api/control.c): one connection, one JSON
 * request per line, one answer per line. Used by `ferry ctl` and the
 * benchmarks. */
#ifndef FERRY_CONTROL_CLIENT_H
#define FERRY_CONTROL_CLIENT_H

struct cJSON;

/* Connects; -1 with errno on failure. */
int control_connect(const char *path);
/* Sends request (one line of JSON) and returns the parsed answer, or NULL
 * if the connection failed or the answer was not JSON. */
struct cJSON *control_call(int fd, const char *request);

#endif
