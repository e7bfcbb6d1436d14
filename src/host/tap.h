/* A TAP interface: a network's external port to the host's network stack
 * (ip(8), bridges, routing and firewalls are the host's business). ferry
 * creates it when it starts and the kernel removes it when ferry's file
 * descriptor closes. Frames go through it whole, without a virtio header. */
#ifndef FERRY_TAP_H
#define FERRY_TAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct tap;

/* Creates interface `name`, gives it `address`/`prefix_len` (host order;
 * 0: none) and `mtu`, and brings it up. On failure a one-line reason. */
struct tap *tap_open(const char *name, uint32_t address, unsigned prefix_len, unsigned mtu, char *err,
		     size_t errlen);
/* Makes the TAP a port of an existing Linux bridge. */
int tap_join_bridge(struct tap *t, const char *bridge, char *err, size_t errlen);
void tap_close(struct tap *t);
int tap_fd(const struct tap *t);
const char *tap_name(const struct tap *t);

/* One frame out to the host; -1 with errno if the kernel refused it. */
ssize_t tap_send(struct tap *t, const struct iovec *iov, int iovcnt);
/* One frame in, non-blocking: its length, 0 if none is waiting, -1 on
 * error (errno; e.g. the interface was deleted). */
ssize_t tap_recv(struct tap *t, void *buf, size_t len);

#endif
