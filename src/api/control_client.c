#include "api/control_client.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int control_connect(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

cJSON *control_call(int fd, const char *request)
{
	if (dprintf(fd, "%s\n", request) < 0)
		return NULL;
	char buf[1 << 16];
	size_t len = 0;
	while (len < sizeof(buf) - 1) {
		ssize_t r = read(fd, buf + len, 1); /* to the newline, not past it: answers come one per line */
		if (r <= 0)
			return NULL;
		if (buf[len] == '\n')
			break;
		len++;
	}
	buf[len] = '\0';
	return cJSON_Parse(buf);
}
