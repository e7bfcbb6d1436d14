/* The Prometheus metrics (api/metrics.c) over HTTP on loopback: `ferry run
 * --metrics-addr 127.0.0.1:PORT` answers GET /metrics, on the event loop,
 * for a Prometheus server to scrape. Port 0 takes a free one (logged). */
#ifndef FERRY_API_METRICS_HTTP_H
#define FERRY_API_METRICS_HTTP_H

#include <stddef.h>

#include "vmm/vmm.h"

struct sockaddr_in;
struct metrics_http;

/* "127.0.0.1:PORT" (any 127.x.y.z, or localhost); -1 with a reason for
 * anything else, non-loopback addresses included. */
int metrics_http_parse_addr(const char *text, struct sockaddr_in *out, char *err, size_t errlen);

struct metrics_http *metrics_http_create(struct vmm *vmm, const char *addr, char *err, size_t errlen);
/* "http://127.0.0.1:PORT/metrics" */
const char *metrics_http_url(const struct metrics_http *s);
void metrics_http_destroy(struct metrics_http *s);

/* As a service of the run (vmm_options.services). */
struct vmm_service metrics_http_service(const char *addr);

#endif
