#include "host/link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *const result_name[LINK_RING_MAX] = {
	[LINK_OK] = "ok",
	[LINK_NO_PEER] = "no_peer",
	[LINK_PEER_DOWN] = "peer_down",
	[LINK_BAD_VECTOR] = "bad_vector",
	[LINK_NOT_READY] = "not_ready",
};

const char *link_ring_result_name(enum link_ring_result r)
{
	return (unsigned)r < LINK_RING_MAX ? result_name[r] : "?";
}

/* Maps the memfd at a 2 MiB-aligned address: KVM can then back guest 2 MiB
 * pages with host ones wherever the kernel gives them (THP on shmem). */
static uint8_t *map_aligned(int fd, uint64_t size)
{
	size_t span = (size_t)(size + LINK_ALIGN);
	uint8_t *res = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		return NULL;
	uint8_t *at = (uint8_t *)(((uintptr_t)res + LINK_ALIGN - 1) & ~(uintptr_t)(LINK_ALIGN - 1));
	uint8_t *p = mmap(at, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		munmap(res, span);
		errno = e;
		return NULL;
	}
	/* The reservation around it goes back; failing to unmap only wastes
	 * address space, never memory. */
	if (at > res)
		munmap(res, (size_t)(at - res));
	if (res + span > at + size)
		munmap(at + size, (size_t)(res + span - (at + size)));
	return p;
}

static int link_init(struct shm_link *l, unsigned index, const struct link_config *lc, char *err, size_t errlen)
{
	char name[32];
	memset(l, 0, sizeof(*l));
	l->used = true;
	l->index = index;
	l->size = lc->size_mib << 20;
	l->memfd = -1;
	pthread_mutex_init(&l->lock, NULL);
	l->nr_peers = lc->nr_vms;
	for (unsigned p = 0; p < lc->nr_vms; p++)
		l->port[p].vm = lc->vm[p];
	snprintf(name, sizeof(name), "ferry-link%u", index);
	/* A fresh file reads as zeros: each link starts with no stale ring
	 * (guest/include/ivshmem.h asks for that). */
	l->memfd = memfd_create(name, MFD_CLOEXEC);
	if (l->memfd < 0) {
		snprintf(err, errlen, "links[%u]: memfd_create: %s", index, strerror(errno));
		return -1;
	}
	if (ftruncate(l->memfd, (off_t)l->size) < 0) {
		snprintf(err, errlen, "links[%u]: cannot size the shared memory to %llu MiB: %s", index,
			 (unsigned long long)lc->size_mib, strerror(errno));
		return -1;
	}
	l->hva = map_aligned(l->memfd, l->size);
	if (!l->hva) {
		snprintf(err, errlen, "links[%u]: cannot map %llu MiB of shared memory: %s", index,
			 (unsigned long long)lc->size_mib, strerror(errno));
		return -1;
	}
	return 0;
}

static void link_fini(struct shm_link *l)
{
	if (!l->used)
		return;
	if (l->hva)
		munmap(l->hva, (size_t)l->size);
	if (l->memfd >= 0)
		close(l->memfd);
	pthread_mutex_destroy(&l->lock);
	memset(l, 0, sizeof(*l));
	l->memfd = -1;
}

static struct link_service *service_new(void)
{
	struct link_service *svc = calloc(1, sizeof(*svc));
	struct shm_link *links = calloc(LINK_MAX, sizeof(*links));
	if (!svc || !links) {
		free(svc);
		free(links);
		return NULL;
	}
	svc->link = links;
	return svc;
}

int link_service_create(const struct ferry_config *cfg, struct link_service **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!cfg->nr_links)
		return 0;
	struct link_service *svc = service_new();
	if (!svc || cfg->nr_links > LINK_MAX) {
		link_service_destroy(svc);
		snprintf(err, errlen, "links: %s", svc ? "too many" : "out of memory");
		return -1;
	}
	for (unsigned i = 0; i < cfg->nr_links; i++) {
		svc->nr++;
		if (link_init(&svc->link[i], i, &cfg->links[i], err, errlen) < 0) {
			link_service_destroy(svc);
			return -1;
		}
	}
	*out = svc;
	return 0;
}

int link_service_add(struct link_service **svcp, const struct link_config *lc, struct shm_link **out, char *err,
		     size_t errlen)
{
	if (!*svcp && !(*svcp = service_new())) {
		snprintf(err, errlen, "links: out of memory");
		return -1;
	}
	struct link_service *svc = *svcp;
	unsigned i = 0;
	while (i < svc->nr && svc->link[i].used)
		i++;
	if (i == LINK_MAX) {
		snprintf(err, errlen, "links: %d links exist already", LINK_MAX);
		return -1;
	}
	if (link_init(&svc->link[i], i, lc, err, errlen) < 0) {
		link_fini(&svc->link[i]);
		return -1;
	}
	if (i == svc->nr)
		svc->nr++;
	*out = &svc->link[i];
	return 0;
}

void link_service_remove(struct link_service *svc, struct shm_link *l)
{
	if (svc && l && !link_attached(l))
		link_fini(l);
}

bool link_attached(struct shm_link *l)
{
	bool any = false;
	pthread_mutex_lock(&l->lock);
	for (unsigned p = 0; p < l->nr_peers; p++)
		any |= l->port[p].attached;
	pthread_mutex_unlock(&l->lock);
	return any;
}

void link_service_destroy(struct link_service *svc)
{
	if (!svc)
		return;
	for (unsigned i = 0; i < svc->nr; i++)
		link_fini(&svc->link[i]);
	free(svc->link);
	free(svc);
}

struct shm_link *link_find(struct link_service *svc, unsigned vm, unsigned *peer)
{
	for (unsigned i = 0; svc && i < svc->nr; i++)
		for (unsigned p = 0; svc->link[i].used && p < svc->link[i].nr_peers; p++)
			if (svc->link[i].port[p].vm == vm) {
				*peer = p;
				return &svc->link[i];
			}
	return NULL;
}

int link_attach(struct shm_link *l, unsigned peer, unsigned nr_vectors, link_ring_fn ring, void *dev,
		const atomic_bool *stopping)
{
	if (peer >= l->nr_peers)
		return -1;
	pthread_mutex_lock(&l->lock);
	struct link_port *p = &l->port[peer];
	bool taken = p->attached;
	if (!taken) {
		p->ring = ring;
		p->dev = dev;
		p->nr_vectors = nr_vectors;
		p->stopping = stopping;
		p->attached = true;
	}
	pthread_mutex_unlock(&l->lock);
	return taken ? -1 : 0;
}

void link_detach(struct shm_link *l, unsigned peer)
{
	if (peer >= l->nr_peers)
		return;
	pthread_mutex_lock(&l->lock);
	struct link_port *p = &l->port[peer];
	p->attached = false;
	p->ring = NULL;
	p->dev = NULL;
	p->stopping = NULL;
	pthread_mutex_unlock(&l->lock);
}

/* Lock held. */
static bool up(const struct link_port *p)
{
	return p->attached && !(p->stopping && atomic_load(p->stopping));
}

bool link_peer_up(struct shm_link *l, unsigned peer)
{
	if (peer >= l->nr_peers)
		return false;
	pthread_mutex_lock(&l->lock);
	bool on = up(&l->port[peer]);
	pthread_mutex_unlock(&l->lock);
	return on;
}

enum link_ring_result link_ring(struct shm_link *l, unsigned from, uint32_t dest, uint32_t vector)
{
	enum link_ring_result r;
	/* The lock keeps the destination's device from going away while it is
	 * rung (link_detach waits for it). */
	pthread_mutex_lock(&l->lock);
	struct link_port *d = dest < l->nr_peers ? &l->port[dest] : NULL;
	if (!d)
		r = LINK_NO_PEER;
	else if (!up(d))
		r = LINK_PEER_DOWN;
	else if (vector >= d->nr_vectors)
		r = LINK_BAD_VECTOR;
	else if (!d->ring(d->dev, (uint16_t)vector))
		r = LINK_NOT_READY;
	else
		r = LINK_OK;
	pthread_mutex_unlock(&l->lock);
	if (from < l->nr_peers) {
		struct link_port_counters *c = &l->port[from].ctr;
		if (r == LINK_OK) {
			atomic_fetch_add(&c->sent, 1);
			atomic_fetch_add(&d->ctr.received, 1);
		} else {
			atomic_fetch_add(&c->rejected, 1);
			atomic_fetch_add(&c->rejected_by[r], 1);
		}
	}
	return r;
}
