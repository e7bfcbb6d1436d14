/* Static shared-memory links (config "links", and networks with "shm":
 * true): one memfd per link, created zeroed at start-up and mapped into
 * every VM of the link as its ivshmem device's BAR 2
 * (docs/devices/ivshmem.md), and the doorbells between those devices. A
 * VM's peer id is its position in the link. The service knows which peers
 * are attached and up, and routes a doorbell from one device to another
 * through the destination's ring function; it never touches the shared
 * memory itself. */
#ifndef FERRY_LINK_H
#define FERRY_LINK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/config.h"

#define LINK_ALIGN (2ull << 20)   /* shared memory is 2 MiB-aligned, in ferry and in the guest */

/* What a doorbell came to. Everything but LINK_OK is refused. */
enum link_ring_result {
	LINK_OK,
	LINK_NO_PEER,      /* no such peer id in the link */
	LINK_PEER_DOWN,    /* no device attached, or its VM has stopped */
	LINK_BAD_VECTOR,   /* the destination has no such vector */
	LINK_NOT_READY,    /* the destination's driver has not enabled interrupts */
	LINK_RING_MAX,
};

const char *link_ring_result_name(enum link_ring_result r);

/* Raises `vector` in the destination's VM; false if the device cannot
 * (its driver has not enabled MSI-X). Called with the link lock held. */
typedef bool (*link_ring_fn)(void *dev, uint16_t vector);

struct link_port_counters {
	atomic_ulong sent;                       /* doorbells this peer rang that were delivered */
	atomic_ulong received;                   /* doorbells delivered to this peer */
	atomic_ulong rejected;                   /* doorbells this peer rang that were refused */
	atomic_ulong rejected_by[LINK_RING_MAX];
};

struct link_port {
	unsigned vm;                  /* the VM's id (vm->id; its index in the config for links made at start) */
	bool attached;                /* a device is there (under the link lock) */
	link_ring_fn ring;
	void *dev;
	unsigned nr_vectors;
	const atomic_bool *stopping;  /* the VM's flag: a stopped VM is down */
	struct link_port_counters ctr;
};

struct shm_link {
	bool used;                    /* the slot holds a link */
	unsigned index;               /* its slot: links[index] in reports */
	uint64_t size;                /* bytes */
	int memfd;
	uint8_t *hva;                 /* ferry's mapping, shared by the link's VMs' memory slots */
	pthread_mutex_t lock;         /* the ports' attachment */
	unsigned nr_peers;
	struct link_port port[CFG_MAX_LINK_VMS];
};

#define LINK_MAX 64                /* links at once: the config's and those added later */

struct link_service {
	struct shm_link *link;        /* LINK_MAX slots, [0, nr) ever used; a link never moves */
	unsigned nr;
};

/* Creates every link of the config (NULL *out if there are none). Must run
 * before the VMs start: it creates files, which the sandboxed threads may
 * not. -1 with a reason in err. */
int link_service_create(const struct ferry_config *cfg, struct link_service **out, char *err, size_t errlen);
/* After every VM (and so every device) is gone. */
void link_service_destroy(struct link_service *svc);

/* A link for VMs added while ferry runs: lc->vm[] holds their ids. Makes
 * the service if *svc is NULL. Not from a sandboxed thread (it creates a
 * file). -1 with a reason. */
int link_service_add(struct link_service **svc, const struct link_config *lc, struct shm_link **out, char *err,
		     size_t errlen);
/* Frees a link no device is attached to any more (its VMs are gone): its
 * memory goes back to the host. */
void link_service_remove(struct link_service *svc, struct shm_link *l);
/* Whether any device is attached to the link. */
bool link_attached(struct shm_link *l);

/* The link VM `vm` (its index in the config) is in, and its peer id; NULL
 * if it is in none (or svc is NULL). */
struct shm_link *link_find(struct link_service *svc, unsigned vm, unsigned *peer);

/* A device takes its place in the link: doorbells to `peer` now reach it
 * through ring(dev, vector) while *stopping is false. -1 if the place is
 * taken or the peer id is not in the link. */
int link_attach(struct shm_link *l, unsigned peer, unsigned nr_vectors, link_ring_fn ring, void *dev,
		const atomic_bool *stopping);
/* Leaves it; once this returns, ring is never called for dev again. */
void link_detach(struct shm_link *l, unsigned peer);

/* A doorbell from peer `from` (the ringing device) to peer `dest`, vector
 * `vector`, both as the guest wrote them; counted on both ports. */
enum link_ring_result link_ring(struct shm_link *l, unsigned from, uint32_t dest, uint32_t vector);
/* Whether a doorbell to `peer` would be taken (attached, not stopped). */
bool link_peer_up(struct shm_link *l, unsigned peer);

#endif
