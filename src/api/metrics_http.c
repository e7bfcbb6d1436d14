#include "api/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/metrics.h"
#include "host/eventloop.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/vmm.h"

#define MAX_CONNS 16
#define REQUEST_MAX 8192
#define CONN_TIMEOUT_NS (5ull * 1000000000) /* a scrape that takes longer is dropped */

struct conn {
	struct metrics_http *srv;
	int fd;
	struct evl_handler *h;
	char req[REQUEST_MAX];
	size_t len;
	char *out;               /* the response, then what is left of it */
	size_t out_len, out_off;
	uint64_t t0;
};

struct metrics_http {
	struct vmm *vmm;
	int fd;
	struct evl_handler *listen, *timer;
	struct conn *conns[MAX_CONNS];
	char where[64];
	unsigned long scrapes;
};

int metrics_http_parse_addr(const char *text, struct sockaddr_in *out, char *err, size_t errlen)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	if (!colon || colon == text || (size_t)(colon - text) >= sizeof(host)) {
		snprintf(err, errlen, "--metrics-addr: expected 127.0.0.1:PORT, got '%s'", text);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - text), text);
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535) {
		snprintf(err, errlen, "--metrics-addr: '%s' is not a port (0-65535)", colon + 1);
		return -1;
	}
	memset(out, 0, sizeof(*out));
	out->sin_family = AF_INET;
	out->sin_port = htons((uint16_t)port);
	if (!strcmp(host, "localhost"))
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &out->sin_addr) != 1) {
		snprintf(err, errlen, "--metrics-addr: '%s' is not an IPv4 address", host);
		return -1;
	}
	/* Loopback only: the figures name VMs and their traffic, and there is
	 * no authentication. A Prometheus server elsewhere reaches them through
	 * whatever the operator puts in front. */
	if ((ntohl(out->sin_addr.s_addr) >> 24) != 127) {
		snprintf(err, errlen, "--metrics-addr: %s is not a loopback address (127.0.0.0/8); metrics are served on "
			 "loopback only", host);
		return -1;
	}
	return 0;
}

static void drop(struct conn *c)
{
	struct metrics_http *s = c->srv;
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (s->conns[i] == c)
			s->conns[i] = NULL;
	evl_del(s->vmm->evl, c->h);
	close(c->fd);
	free(c->out);
	free(c);
}

static void respond(struct conn *c, const char *status, const char *type, const char *body)
{
	size_t blen = strlen(body);
	size_t cap = blen + 256;
	c->out = malloc(cap);
	if (!c->out) {
		drop(c);
		return;
	}
	int n = snprintf(c->out, cap,
			 "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
			 type, blen);
	memcpy(c->out + n, body, blen);
	c->out_len = (size_t)n + blen;
	c->out_off = 0;
	if (evl_mod(c->srv->vmm->evl, c->h, EPOLLOUT) < 0)
		drop(c);
}

/* A whole request head is in: only GET /metrics (or /) is served. */
static void answer(struct conn *c)
{
	char method[16], path[256];
	c->req[c->len] = '\0';
	if (sscanf(c->req, "%15s %255s HTTP/1.", method, path) != 2) {
		respond(c, "400 Bad Request", "text/plain", "bad request\n");
		return;
	}
	if (strcmp(method, "GET")) {
		respond(c, "405 Method Not Allowed", "text/plain", "only GET\n");
		return;
	}
	if (strcmp(path, "/metrics") && strcmp(path, "/")) {
		respond(c, "404 Not Found", "text/plain", "the metrics are at /metrics\n");
		return;
	}
	char *text = metrics_text(c->srv->vmm);
	if (!text) {
		respond(c, "500 Internal Server Error", "text/plain", "out of memory\n");
		return;
	}
	c->srv->scrapes++;
	respond(c, "200 OK", METRICS_CONTENT_TYPE, text);
	free(text);
}

static void conn_ready(void *arg, uint32_t events)
{
	struct conn *c = arg;
	if (c->out) {
		while (c->out_off < c->out_len) {
			ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (n <= 0)
				break;
			c->out_off += (size_t)n;
		}
		drop(c); /* sent, or the client left */
		return;
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	ssize_t n = read(c->fd, c->req + c->len, sizeof(c->req) - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
		answer(c);
	else if (c->len == sizeof(c->req) - 1)
		respond(c, "431 Request Header Fields Too Large", "text/plain", "request too long\n");
}

static void accept_ready(void *arg, uint32_t events)
{
	struct metrics_http *s = arg;
	(void)events;
	for (int k = 0; k < MAX_CONNS; k++) {
		int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warn(NULL, "metrics: accept: %s", strerror(errno));
			return;
		}
		unsigned i = 0;
		while (i < MAX_CONNS && s->conns[i])
			i++;
		struct conn *c = i < MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
		if (!c) {
			close(fd); /* busy: the scraper tries again */
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->t0 = clock_ns();
		c->h = evl_add(s->vmm->evl, fd, EPOLLIN, conn_ready, c);
		if (!c->h) {
			close(fd);
			free(c);
			continue;
		}
		s->conns[i] = c;
	}
}

static void tick(void *arg, uint32_t events)
{
	struct metrics_http *s = arg;
	(void)events;
	uint64_t now = clock_ns();
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (s->conns[i] && now - s->conns[i]->t0 > CONN_TIMEOUT_NS)
			drop(s->conns[i]);
}

struct metrics_http *metrics_http_create(struct vmm *vmm, const char *addr, char *err, size_t errlen)
{
	struct sockaddr_in sa;
	if (metrics_http_parse_addr(addr, &sa, err, errlen) < 0)
		return NULL;
	struct metrics_http *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->vmm = vmm;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;
	socklen_t len = sizeof(sa);
	if (s->fd < 0 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s->fd, 16) < 0 ||
	    getsockname(s->fd, (struct sockaddr *)&sa, &len) < 0) {
		snprintf(err, errlen, "--metrics-addr: cannot listen on %s: %s", addr, strerror(errno));
		metrics_http_destroy(s);
		return NULL;
	}
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
	snprintf(s->where, sizeof(s->where), "http://%s:%u/metrics", ip, ntohs(sa.sin_port));
	s->listen = evl_add(vmm->evl, s->fd, EPOLLIN, accept_ready, s);
	s->timer = evl_add_timer(vmm->evl, 1000000000ull, tick, s);
	if (!s->listen || !s->timer) {
		snprintf(err, errlen, "--metrics-addr: cannot watch the socket");
		metrics_http_destroy(s);
		return NULL;
	}
	log_info(NULL, "metrics: serving Prometheus metrics at %s", s->where);
	return s;
}

const char *metrics_http_url(const struct metrics_http *s)
{
	return s->where;
}

static void teardown(void *arg)
{
	struct metrics_http *s = arg;
	if (s->listen)
		evl_del(s->vmm->evl, s->listen);
	if (s->timer)
		evl_del(s->vmm->evl, s->timer);
	s->listen = s->timer = NULL;
	for (unsigned i = 0; i < MAX_CONNS; i++)
		if (s->conns[i])
			drop(s->conns[i]);
}

void metrics_http_destroy(struct metrics_http *s)
{
	if (!s)
		return;
	evl_run_exclusive(s->vmm->evl, teardown, s);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static void *start(struct vmm *vmm, const void *arg, char *err, size_t errlen)
{
	return metrics_http_create(vmm, arg, err, errlen);
}

static void stop(void *ctx)
{
	metrics_http_destroy(ctx);
}

struct vmm_service metrics_http_service(const char *addr)
{
	struct vmm_service s = { .name = "metrics", .arg = addr, .start = start, .stop = stop };
	return s;
}
