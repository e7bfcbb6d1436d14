/* A network: ferry's switch for the NICs of the VMs on it, an optional TAP
 * port to the host, and the zero-copy machinery of the cross-talk claims:
 * the detector (a NIC sending to a co-resident NIC) and the dynamic memory
 * remapper (binding a channel of each onto shared memory, and back). See
 * docs/devices/net.md.
 *
 * One lock per network serializes everything on it: the NICs' virtqueues
 * (it is their virtio lock) and the switch's tables. Frames from a NIC
 * arrive as iovecs over its guest's memory and are copied once, straight
 * into the receiver's buffers (or the TAP); on a bound channel nobody
 * copies them at all. */
#ifndef FERRY_NET_SWITCH_H
#define FERRY_NET_SWITCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "ferry/virtio_net.h"
#include "vmm/log.h"

struct eventloop;
struct evl_handler;
struct net_config;
struct tap;
struct cJSON;

#define NET_MAX_PORTS 64

/* The channel rules' deadlines (docs/devices/net.md). */
#define NET_DRAIN_NS (1000 * 1000000ull)    /* a channel not drained by then is unbound anyway */
#define NET_STALL_NS (500 * 1000000ull)     /* a receiver that reads nothing this long loses its channel */
#define NET_LEFTOVER_NS (1000 * 1000000ull) /* what an unbound channel's driver has to read its last frames */

/* Why a frame was dropped. */
enum net_drop {
	NET_DROP_RUNT,           /* shorter than an Ethernet header */
	NET_DROP_OVERSIZE,       /* longer than the network's MTU allows */
	NET_DROP_SPOOFED,        /* source MAC is not the sending NIC's */
	NET_DROP_BAD_HEADER,     /* virtio-net header asks for offloads not offered */
	NET_DROP_NO_ROUTE,       /* unicast to a MAC nobody has, and no TAP */
	NET_DROP_NO_BUFFER,      /* the receiver posted no buffer (never holds the sender up) */
	NET_DROP_SMALL_BUFFER,   /* the receiver's buffer cannot hold the frame */
	NET_DROP_DOWN,           /* the receiver's driver is not running */
	NET_DROP_TAP,            /* the TAP refused it (or is gone) */
	NET_DROP_ZC_PROTOCOL,    /* a channel's descriptors broke its rules */
	NET_DROP_MAX,
};
const char *net_drop_name(enum net_drop d);

struct net_counters {
	atomic_ulong frames_tx, frames_rx;
	atomic_ulong frames_zero_copy;     /* sent on a bound channel: nobody copied them */
	atomic_ulong frames_one_copy;      /* copied once into another VM */
	atomic_ulong frames_external;      /* sent out through the TAP */
	atomic_ulong bytes_copied_by_host; /* into other VMs and into the TAP */
	atomic_ulong crosstalk_detected;   /* sends to a co-resident VM that led to a binding */
	atomic_ulong remaps;               /* channel areas mapped onto shared memory or back */
	atomic_ulong unbinds;
	atomic_ulong stalls;               /* bindings ended because the peer stopped reading */
	atomic_ulong dropped[NET_DROP_MAX];
};

struct net_port;

/* What the switch needs from a NIC. Called with the network's lock held. */
struct net_port_ops {
	/* Copies a frame (without virtio header) into a receive buffer of
	 * queue pair 0 and tells the driver; false (and *why) if dropped. */
	bool (*deliver)(struct net_port *p, const struct iovec *iov, int iovcnt, size_t len, enum net_drop *why);
	/* The channel table changed (a channel was bound, drained or unbound):
	 * update the config space the driver reads and signal it. */
	void (*channels_changed)(struct net_port *p);
	/* Can channel c be (re)mapped now: nothing of the old binding is
	 * still in flight on its queues? */
	bool (*channel_idle)(struct net_port *p, unsigned c);
	/* Channel c's binding ends (or starts): what it had in flight is
	 * forgotten (transmissions complete). */
	void (*channel_reset)(struct net_port *p, unsigned c);
	/* Periodic, for a channel that is not unbound: count its frames,
	 * finish a drained unbinding. */
	bool (*channel_service)(struct net_port *p, unsigned c);
	/* Whether channel c's sender is held up by its peer (its ring full)
	 * with no progress for stall_ns. */
	bool (*channel_stalled)(struct net_port *p, unsigned c, uint64_t now_ns, uint64_t stall_ns);
	/* The used index of receive queue 0 now: where a channel's unread
	 * frames belong among the frames of the copy path. */
	uint16_t (*rx_mark)(struct net_port *p);
};

/* A channel of a NIC, as the switch sees it. */
struct net_channel {
	uint8_t state;               /* FERRY_ZC_* */
	uint8_t epoch;               /* counts bindings, for the driver */
	uint64_t drain_since_ns;
	uint64_t unbound_ns;         /* when the last binding ended */
	struct net_port *peer;
	unsigned peer_chan;
	uint32_t area[2];            /* shared areas: [0] this port's transmit, [1] its receive */
};

struct net_port {
	struct net_switch *sw;
	unsigned index;
	char name[32];               /* the VM's name, or the TAP's */
	uint32_t vm_id;
	uint8_t mac[6];
	const struct net_port_ops *ops;
	void *dev;                   /* the NIC */
	bool up;                     /* the driver is running */
	atomic_bool *vm_stopping;    /* a stopping VM receives nothing */
	bool zc;                     /* the driver took the zero-copy feature */
	/* The NIC's zero-copy window (BAR 2) in ferry's address space, and the
	 * private memory that backs it when unbound: the window's own memfd,
	 * laid out like the window. */
	uint8_t *zc_hva;
	int zc_memfd;
	uint8_t *zc_private;         /* ferry's own view of that private memory */
	struct net_channel chan[FERRY_ZC_CHANNELS];
	struct net_counters ctr;
	struct log_limit log;
	uint32_t drops_logged;       /* causes (bit per enum net_drop) already logged; switch lock */
};

struct net_switch {
	pthread_mutex_t lock;
	char name[32];
	uint32_t mtu;
	bool zero_copy;
	bool bind_at_start;           /* claim 8: pairs bound when drivers start, not on traffic */
	struct net_port *port[NET_MAX_PORTS];
	unsigned nr_ports;
	/* The external port. */
	struct tap *tap;
	bool tap_dead;                /* it failed: frames for the outside are dropped */
	struct evl_handler *tap_handler, *timer;
	uint64_t last_stall_check_ns;
	struct eventloop *evl;
	struct net_counters tap_ctr;
	/* Shared memory for bound channels: areas of FERRY_ZC_AREA_SIZE in
	 * one memfd made at start-up (the sandboxed threads that bind cannot
	 * create files). */
	int pool_fd;
	uint32_t pool_areas;
	uint8_t *area_used;
	/* The remapper's own failures: a failed mapping leaves a channel
	 * unbound (private), never half-shared. */
	unsigned long map_failures;
	struct log_limit log;
};

/* Makes the network's switch (and its TAP, and the shared-memory pool for
 * up to max_zc_ports NICs). On failure a one-line reason. */
struct net_switch *net_switch_create(const struct net_config *cfg, unsigned max_zc_ports, struct eventloop *evl,
				     char *err, size_t errlen);
/* Makes room for more_ports more NICs (shared memory for their channels),
 * before VMs with them are added to a running ferry. Not from a sandboxed
 * thread. -1 with a reason. */
int net_switch_reserve(struct net_switch *sw, unsigned more_ports, char *err, size_t errlen);
/* Stops the TAP and frees everything; ports must be detached first. */
void net_switch_destroy(struct net_switch *sw);

/* Attaches a NIC (at VM creation, before any VM runs). */
int net_switch_attach(struct net_switch *sw, struct net_port *p, char *err, size_t errlen);
/* Detaches it: its channels are unbound first (peers told). Lock held. */
void net_switch_detach(struct net_port *p);

/* A frame sent by port `from` on queue pair 0 (or an unbound channel):
 * checked, then forwarded by destination MAC, copied once. Lock held.
 * Returns true if it was forwarded to at least one port. */
bool net_switch_tx(struct net_port *from, const struct iovec *iov, int iovcnt, size_t len);

/* The port's driver came up or went away (reset, VM stopped). Going down
 * unbinds its channels. Lock held. */
void net_port_set_up(struct net_port *p, bool up);

/* Unbinds every channel of the port (the control socket's "unbind", tests
 * of the switch-over). Lock held. Returns how many were bound. */
unsigned net_port_unbind_all(struct net_port *p);
/* Unbinds one channel at once (its rules were broken). Lock held. */
void net_channel_unbind(struct net_port *p, unsigned c);
/* A draining channel whose queues went idle: finish unbinding it. */
void net_channel_drained(struct net_port *p, unsigned c);

/* The port at the other end of port p's channel c, if bound. */
struct net_port *net_channel_peer(struct net_port *p, unsigned c, unsigned *peer_chan);

struct vmm;
struct ferry_config;
/* Makes every network of the config (vmm->nets), before any VM. */
int net_setup(struct vmm *vmm, const struct ferry_config *cfg, char *err, size_t errlen);

/* For tests: the switch's clock (clock_ns; a unit test steps it instead of
 * sleeping through the deadlines above), and its periodic tick (counting,
 * drained channels, stalls; the event loop's timer calls it every 20 ms). */
extern uint64_t (*net_switch_clock)(void);
void net_switch_tick(struct net_switch *sw);

/* Counters as JSON (adds to obj), for a port or the TAP. */
void net_counters_json(const struct net_counters *c, struct cJSON *obj);
struct cJSON *net_switch_report(struct net_switch *sw);

#endif
