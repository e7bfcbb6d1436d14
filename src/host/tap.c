#include "host/tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/sockios.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

unsigned int if_nametoindex(const char *ifname); /* net/if.h clashes with linux/if.h */

struct tap {
	int fd;
	char name[IFNAMSIZ];
};

static int set_addr(int sock, const char *name, unsigned long req, uint32_t addr)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(addr);
	return ioctl(sock, req, &ifr);
}

/* Address, MTU and "up", by the same ioctls ifconfig uses: no helper
 * programs, and no netlink for what four calls do. */
static int configure(const char *name, uint32_t address, unsigned prefix_len, unsigned mtu, char *err,
		     size_t errlen)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		snprintf(err, errlen, "tap %s: socket: %s", name, strerror(errno));
		return -1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_mtu = (int)mtu;
	const char *what = NULL;
	if (ioctl(sock, SIOCSIFMTU, &ifr) < 0)
		what = "set its MTU";
	else if (address && set_addr(sock, name, SIOCSIFADDR, address) < 0)
		what = "set its address";
	else if (address && set_addr(sock, name, SIOCSIFNETMASK, prefix_len ? ~0u << (32 - prefix_len) : 0) < 0)
		what = "set its netmask";
	else if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		what = "read its flags";
	else {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
			what = "bring it up";
	}
	if (what)
		snprintf(err, errlen, "tap %s: cannot %s: %s", name, what, strerror(errno));
	close(sock);
	return what ? -1 : 0;
}

struct tap *tap_open(const char *name, uint32_t address, unsigned prefix_len, unsigned mtu, char *err,
		     size_t errlen)
{
	struct tap *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (t->fd < 0) {
		snprintf(err, errlen, "tap %s: cannot open /dev/net/tun: %s%s", name, strerror(errno),
			 errno == ENOENT ? " (is the tun module loaded?)" : "");
		free(t);
		return NULL;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	/* Not persistent: the interface goes when ferry's descriptor closes,
	 * even if ferry is killed. */
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) {
		snprintf(err, errlen, "tap %s: cannot create it: %s%s", name, strerror(errno),
			 errno == EBUSY ? " (an interface of that name is in use)" :
			 errno == EPERM ? " (ferry needs CAP_NET_ADMIN)" : "");
		close(t->fd);
		free(t);
		return NULL;
	}
	if (configure(name, address, prefix_len, mtu, err, errlen) < 0) {
		tap_close(t);
		return NULL;
	}
	return t;
}

int tap_join_bridge(struct tap *t, const char *bridge, char *err, size_t errlen)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
	ifr.ifr_ifindex = (int)if_nametoindex(t->name);
	int r = sock < 0 || !ifr.ifr_ifindex ? -1 : ioctl(sock, SIOCBRADDIF, &ifr);
	if (r < 0)
		snprintf(err, errlen, "tap %s: cannot join bridge %s: %s", t->name, bridge, strerror(errno));
	if (sock >= 0)
		close(sock);
	return r;
}

void tap_close(struct tap *t)
{
	if (!t)
		return;
	close(t->fd);
	free(t);
}

int tap_fd(const struct tap *t)
{
	return t->fd;
}

const char *tap_name(const struct tap *t)
{
	return t->name;
}

ssize_t tap_send(struct tap *t, const struct iovec *iov, int iovcnt)
{
	ssize_t n;
	do
		n = writev(t->fd, iov, iovcnt);
	while (n < 0 && errno == EINTR);
	return n;
}

ssize_t tap_recv(struct tap *t, void *buf, size_t len)
{
	ssize_t n;
	do
		n = read(t->fd, buf, len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	return n;
}
