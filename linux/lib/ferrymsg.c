/* libferrymsg: see ferrymsg.h. */
#define _GNU_SOURCE
#include "ferrymsg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int fm_open(struct fm *q, const char *path)
{
	memset(q, 0, sizeof(*q));
	q->fd = open(path ? path : "/dev/ferry-msgq0", O_RDWR | O_CLOEXEC);
	if (q->fd < 0)
		return -errno;
	int err = 0;
	if (ioctl(q->fd, FERRY_MSGQ_IOC_INFO, &q->info) < 0) {
		err = -errno;
		goto fail;
	}
	size_t send = (size_t)q->info.send_slots * q->info.page_size, recv = (size_t)q->info.recv_slots * q->info.page_size;
	void *s = mmap(NULL, send, PROT_READ | PROT_WRITE, MAP_SHARED, q->fd, (off_t)q->info.send_offset);
	void *r = s == MAP_FAILED ? MAP_FAILED : mmap(NULL, recv, PROT_READ, MAP_SHARED, q->fd, (off_t)q->info.recv_offset);
	q->slot_used = calloc(q->info.send_slots, 1);
	if (s == MAP_FAILED || r == MAP_FAILED || !q->slot_used) {
		err = s == MAP_FAILED || r == MAP_FAILED ? -errno : -ENOMEM;
		if (s != MAP_FAILED)
			munmap(s, send);
		if (r != MAP_FAILED)
			munmap(r, recv);
		free(q->slot_used);
		goto fail;
	}
	q->send = s;
	q->recv = r;
	return 0;
fail:
	close(q->fd);
	q->fd = -1;
	return err;
}

void fm_close(struct fm *q)
{
	if (q->fd < 0)
		return;
	munmap(q->send, (size_t)q->info.send_slots * q->info.page_size);
	munmap((void *)q->recv, (size_t)q->info.recv_slots * q->info.page_size);
	free(q->slot_used);
	close(q->fd);
	q->fd = -1;
}

uint32_t fm_peer(const struct fm *q, const char *name)
{
	for (unsigned i = 0; i < q->info.nr_peers && i < FERRY_MSGQ_MAX_PEERS; i++)
		if (!strcmp(q->info.peers[i].name, name))
			return q->info.peers[i].vm_id;
	char *end;
	unsigned long id = strtoul(name, &end, 10);
	return *name && !*end && id <= UINT32_MAX ? (uint32_t)id : 0;
}

const char *fm_peer_name(const struct fm *q, uint32_t id)
{
	for (unsigned i = 0; i < q->info.nr_peers && i < FERRY_MSGQ_MAX_PEERS; i++)
		if (q->info.peers[i].vm_id == id)
			return q->info.peers[i].name;
	return NULL;
}

int fm_alloc(struct fm *q, uint32_t len, uint32_t *slot)
{
	uint32_t n = fm_slots_for(q, len ? len : 1), S = q->info.send_slots;
	if (n > S)
		return -ENOSPC;
	for (uint32_t s = 0; s + n <= S; s++) {
		uint32_t k = 0;
		while (k < n && !q->slot_used[s + k])
			k++;
		if (k == n) {
			memset(q->slot_used + s, 1, n);
			*slot = s;
			return 0;
		}
		s += k;
	}
	return -ENOSPC;
}

void fm_free(struct fm *q, uint32_t slot, uint32_t len)
{
	uint32_t n = fm_slots_for(q, len ? len : 1);
	if (slot < q->info.send_slots && n <= q->info.send_slots - slot)
		memset(q->slot_used + slot, 0, n);
}

int fm_send(struct fm *q, struct ferry_msgq_send *s, unsigned n, unsigned flags, int timeout_ms)
{
	struct ferry_msgq_send_batch b = { .sends = (uintptr_t)s, .count = n, .flags = flags, .timeout_ms = timeout_ms };
	if (ioctl(q->fd, FERRY_MSGQ_IOC_SEND, &b) < 0)
		return -errno;
	return (int)b.count;
}

int fm_send1(struct fm *q, uint32_t dest, uint32_t slot, uint32_t len, uint32_t mode, bool immediate)
{
	struct ferry_msgq_send s = { .dest = dest, .slot = slot, .len = len, .mode = mode };
	/* Deferred: the device takes it within poll_us; 10 s means it is gone. */
	int r = fm_send(q, &s, 1, FERRY_MSGQ_WAIT | (immediate ? FERRY_MSGQ_IMMEDIATE : 0), 10000);
	return r < 0 ? r : s.status;
}

int fm_reap(struct fm *q, struct ferry_msgq_done *d, unsigned max, int timeout_ms)
{
	struct ferry_msgq_reap r = { .dones = (uintptr_t)d, .max = max, .timeout_ms = timeout_ms };
	if (ioctl(q->fd, FERRY_MSGQ_IOC_REAP, &r) < 0)
		return -errno;
	return (int)r.count;
}

int fm_recv(struct fm *q, struct ferry_msgq_msg *m, unsigned max, int timeout_ms,
	    const struct ferry_msgq_return *ret, unsigned nret, unsigned flags)
{
	struct ferry_msgq_recv r = {
		.returns = (uintptr_t)ret, .nr_returns = nret, .flags = flags,
		.msgs = (uintptr_t)m, .max = max, .timeout_ms = timeout_ms,
	};
	if (ioctl(q->fd, FERRY_MSGQ_IOC_RECV, &r) < 0)
		return -errno;
	return (int)r.count;
}

int fm_stats(struct fm *q, struct ferry_msgq_stats *st)
{
	return ioctl(q->fd, FERRY_MSGQ_IOC_STATS, st) < 0 ? -errno : 0;
}

const char *fm_status_name(int status)
{
	static const char *const names[MSGQ_E_MAX] = {
		[MSGQ_OK] = "ok", [MSGQ_E_DENIED] = "denied", [MSGQ_E_NO_DEST] = "no_dest",
		[MSGQ_E_DEST_DOWN] = "dest_down", [MSGQ_E_BAD_ADDR] = "bad_addr", [MSGQ_E_UNALIGNED] = "unaligned",
		[MSGQ_E_TOO_LONG] = "too_long", [MSGQ_E_FULL] = "full", [MSGQ_E_BAD_CHAIN] = "bad_chain",
		[MSGQ_E_HOST] = "host",
	};
	if (status == FERRY_MSGQ_PENDING)
		return "pending";
	return status >= 0 && status < MSGQ_E_MAX ? names[status] : "?";
}
