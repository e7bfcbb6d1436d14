#include "api/control_client.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_MAX (64u << 20) /* a status of many VMs is long; beyond this something is wrong */

int control_connect(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		fd = -1;
	}
	return fd;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

cJSON *control_read(int fd, double timeout_s, bool *timed_out)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	double deadline = timeout_s >= 0 ? now_s() + timeout_s : 0;
	if (timed_out)
		*timed_out = false;
	for (;;) {
		if (timeout_s >= 0) {
			double left = deadline - now_s();
			struct pollfd p = { .fd = fd, .events = POLLIN };
			int r = left > 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 0;
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				if (timed_out)
					*timed_out = r == 0;
				free(buf);
				return NULL;
			}
		}
		if (cap - len < 65536 + 1) {
			cap = cap ? cap * 2 : 65536 * 2;
			char *p = cap <= ANSWER_MAX ? realloc(buf, cap) : NULL;
			if (!p) {
				free(buf);
				return NULL;
			}
			buf = p;
		}
		/* Up to the newline, not past it: the next line is the next
		 * call's. Peek, then take what belongs to this line. */
		ssize_t r = recv(fd, buf + len, 65536, MSG_PEEK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(buf);
			return NULL;
		}
		char *nl = memchr(buf + len, '\n', (size_t)r);
		size_t take = nl ? (size_t)(nl - (buf + len)) + 1 : (size_t)r;
		ssize_t got = read(fd, buf + len, take);
		if (got <= 0) {
			free(buf);
			return NULL;
		}
		len += (size_t)got;
		if (nl && (size_t)got == take) {
			len--; /* the newline */
			break;
		}
	}
	buf[len] = '\0';
	cJSON *j = cJSON_Parse(buf);
	free(buf);
	return j;
}

cJSON *control_call(int fd, const char *request)
{
	if (dprintf(fd, "%s\n", request) < 0)
		return NULL;
	for (;;) {
		cJSON *j = control_read(fd, -1, NULL);
		if (!j || !cJSON_GetObjectItemCaseSensitive(j, "event"))
			return j;
		cJSON_Delete(j); /* an event for a subscriber, not the answer */
	}
}
