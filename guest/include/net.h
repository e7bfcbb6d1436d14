/* A small IPv4 network stack (guest/net/): Ethernet, ARP, IPv4 without
 * fragmentation, ICMP echo and UDP, over the network interfaces a driver
 * registers (struct netif). It is polled: nothing happens unless the app
 * calls into it (net_poll, or any call that waits: udp_recv, arp_resolve,
 * net_wait), and everything runs in the caller's context, in ring 3. It
 * answers ARP requests and pings whenever it is polled.
 *
 * Addresses are IPv4 in host byte order (10.0.0.2 is 0x0a000002). Every
 * field read from the wire is checked before use; what is dropped is
 * counted by reason (net_stats.drops).
 *
 * The stack proper (net.c, arp.c, ip.c, icmp.c, udp.c) touches no hardware
 * and is unit-tested on the host; if_virtio.c binds it to the virtio-net
 * driver:
 *     net_init()  reads ip=ADDR/PREFIX[,ADDR/PREFIX...] (one per NIC, in PCI
 *                 order; prefix default 24) and net_spin_us=N (how long a
 *                 waiter polls before it halts for an interrupt; default 50).
 */
#ifndef GUEST_NET_H
#define GUEST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_MAX_IFS      4
#define NET_ARP_ENTRIES  16
#define NET_MAX_SOCKETS  8
#define ETH_ALEN         6

#define IP4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (uint32_t)(d))
#define IP4_BROADCAST   0xffffffffu

/* Why a frame was dropped (net_drop_name() names them). */
enum net_drop {
	NET_DROP_RUNT,             /* shorter than an Ethernet header */
	NET_DROP_TOO_BIG,          /* longer than the MTU allows */
	NET_DROP_NOT_FOR_US,       /* unicast to another MAC */
	NET_DROP_MULTICAST,        /* multicast (not broadcast) */
	NET_DROP_ETHERTYPE,        /* neither IPv4 nor ARP (VLAN tags included) */
	NET_DROP_ARP_MALFORMED,    /* short, not Ethernet/IPv4, or a multicast sender */
	NET_DROP_ARP_OP,           /* neither request nor reply */
	NET_DROP_ARP_NOT_FOR_US,   /* about another host's address */
	NET_DROP_NO_ADDR,          /* the interface has no IPv4 address */
	NET_DROP_IP_SHORT,         /* shorter than its header or its total length */
	NET_DROP_IP_VERSION,
	NET_DROP_IP_HDR_LEN,       /* IHL below 5 */
	NET_DROP_IP_CSUM,
	NET_DROP_IP_FRAGMENT,      /* MF set or a fragment offset: no reassembly */
	NET_DROP_IP_BAD_SRC,       /* source 0, broadcast or multicast */
	NET_DROP_IP_NOT_FOR_US,
	NET_DROP_IP_PROTO,         /* neither ICMP nor UDP */
	NET_DROP_ICMP_SHORT,
	NET_DROP_ICMP_CSUM,
	NET_DROP_ICMP_TYPE,        /* neither echo request nor echo reply */
	NET_DROP_ICMP_BROADCAST,   /* echo request to a broadcast address */
	NET_DROP_ICMP_UNWANTED,    /* echo reply nobody waits for, or the queue is full */
	NET_DROP_UDP_SHORT,
	NET_DROP_UDP_LEN,          /* length field below 8 or beyond the packet */
	NET_DROP_UDP_CSUM,
	NET_DROP_UDP_NO_PORT,      /* no socket on the destination port */
	NET_DROP_UDP_QUEUE_FULL,   /* the socket's queue is full */
	NET_DROP_TX_NO_ROUTE,      /* send: no interface on the destination's subnet */
	NET_DROP_TX_TOO_BIG,       /* send: over the MTU (no fragmentation) */
	NET_DROP_TX_ARP_FAILED,    /* send: the destination did not answer ARP */
	NET_DROP_TX_NO_BUF,        /* send: no transmit buffer came free */
	NET_DROP_COUNT
};

struct net_stats {
	uint64_t rx_frames, tx_frames;
	uint64_t arp_requests_sent, arp_replies_sent, arp_retries;
	uint64_t icmp_echo_requests_sent, icmp_echo_replies_sent, icmp_echo_replies_received;
	uint64_t udp_received, udp_sent, udp_no_csum;   /* no_csum: accepted with checksum 0 (allowed in IPv4) */
	uint64_t waits, waits_halted;                     /* net_wait calls, and those that halted */
	uint64_t drops[NET_DROP_COUNT];
};
extern struct net_stats net_stats;
const char *net_drop_name(enum net_drop why);
uint64_t net_drops_total(void);

/* A network interface, as a driver registers it. */
struct netif;
struct netif_ops {
	/* Room for a frame to dst of up to *cap bytes (may wait), or NULL;
	 * the destination picks the queue (a zero-copy channel to that peer,
	 * if the device bound one). */
	void *(*tx_get)(struct netif *ifc, const uint8_t *dst, uint32_t *cap);
	/* Queues a frame from tx_get; the device learns of it at flush. */
	void (*tx_put)(struct netif *ifc, void *frame, uint32_t len);
	void (*tx_cancel)(struct netif *ifc, void *frame);
	/* The next received frame, or NULL; rx_put gives it back. */
	void *(*rx_get)(struct netif *ifc, uint32_t *len);
	void (*rx_put)(struct netif *ifc, void *frame);
	bool (*rx_pending)(struct netif *ifc);
	/* Tells the device about queued frames and returned buffers. */
	void (*flush)(struct netif *ifc);
	bool (*link_up)(struct netif *ifc);
	/* Driver counters for reports, as "key=value ..." (may be NULL). */
	void (*describe)(struct netif *ifc, char *buf, size_t size);
};

struct arp_entry {
	uint32_t ip;                /* 0: free */
	uint8_t mac[ETH_ALEN];
	uint64_t t_ns;              /* learnt or confirmed */
	uint64_t asked_ns;          /* last refresh request sent */
};

struct netif {
	const struct netif_ops *ops;
	void *priv;
	char name[8];
	uint8_t mac[ETH_ALEN];
	uint16_t mtu;
	uint32_t ip, mask;          /* ip 0: no address */
	uint16_t ip_id;             /* next IPv4 identification */
	struct arp_entry arp[NET_ARP_ENTRIES];
	uint64_t rx_frames, tx_frames;
};

/* Registers an interface (the caller keeps it). -1 if there are too many. */
int netif_add(struct netif *ifc);
unsigned net_if_count(void);
struct netif *net_if(unsigned index);
/* The interface whose subnet holds dst (the first with an address, for the
 * limited broadcast), or NULL. */
struct netif *net_route(uint32_t dst);

/* Binds the stack to the NICs and reads ip=: 0, or -1 without a NIC or on a
 * malformed ip= (reason printed). Calls after the first return its result. */
int net_init(void);

/* Handles up to 32 received frames on each interface, then tells the
 * devices about replies and returned buffers. Returns frames handled. */
unsigned net_poll(void);
/* Tells the devices about queued frames (udp_sendto with NET_MORE). */
void net_flush(void);
/* Flushes, then waits until a frame may have arrived or timeout_ns passed:
 * polls for net_spin_ns, then halts with receive interrupts on. Returns
 * whether a frame is pending. */
bool net_wait(uint64_t timeout_ns);
extern uint64_t net_spin_ns;
/* The driver side of net_wait's halt (if_virtio.c; a test supplies its own). */
bool netif_wait_hw(uint64_t timeout_ns);

/* ARP: dst's MAC from the cache, or by asking (a request every 250 ms,
 * polling meanwhile) until timeout_ns. 0, or -1. An entry not confirmed for
 * a minute is still used for another minute while a request asks for it
 * again, so a flow never stalls on a refresh. */
int arp_resolve(struct netif *ifc, uint32_t ip, uint8_t mac[ETH_ALEN], uint64_t timeout_ns);
bool arp_lookup(struct netif *ifc, uint32_t ip, uint8_t mac[ETH_ALEN]);
#define NET_ARP_TIMEOUT_NS 1000000000ull    /* what a send waits for ARP */

/* ICMP echo. Replies whose id was announced with icmp_echo_listen are
 * queued (NET_ECHO_QUEUE deep) with the time the stack saw them. */
#define NET_ECHO_QUEUE 16
#define NET_ECHO_DATA  64
struct icmp_echo {
	uint32_t src;
	uint16_t id, seq;
	uint32_t len;               /* payload bytes after the 8-byte header */
	uint64_t t_ns;              /* time_ns() when handled */
	uint8_t data[NET_ECHO_DATA]; /* the payload's first bytes */
};
void icmp_echo_listen(uint16_t id);
int icmp_echo_request(uint32_t dst, uint16_t id, uint16_t seq, const void *data, uint32_t len);
bool icmp_echo_reply(struct icmp_echo *out);

/* UDP sockets. */
#define NET_MORE 1u   /* udp_sendto: more follow; the device is told later (net_flush) */
struct udp_dgram {
	uint32_t src;
	uint16_t sport;
	uint32_t len;
	const uint8_t *data;        /* valid until the next udp_recv or udp_close on the socket */
};
struct udp_sock;
/* Opens a socket on port (0: an ephemeral port) with room for `depth`
 * queued datagrams (0: 128; rounded up to a power of two), the one
 * udp_recv last returned included. NULL if the port is taken, all 8
 * sockets are open, or there is no memory. */
struct udp_sock *udp_open(uint16_t port, unsigned depth);
void udp_close(struct udp_sock *s);
uint16_t udp_port(const struct udp_sock *s);
/* 0, or -1 (counted in net_stats.drops: no route, too big, ARP, buffers). */
int udp_sendto(struct udp_sock *s, uint32_t dst, uint16_t dport, const void *data, uint32_t len, unsigned flags);
/* The next datagram, waiting up to timeout_ns (TIMEOUT_NEVER: forever). */
bool udp_recv(struct udp_sock *s, struct udp_dgram *d, uint64_t timeout_ns);
/* The largest payload udp_sendto takes towards dst (0: no route). */
uint32_t udp_max_payload(uint32_t dst);

/* Addresses. "10.0.0.2" and "10.0.0.2/24" (prefix default 24). */
bool ip_parse(const char *s, uint32_t *ip);
bool ip_parse_cidr(const char *s, uint32_t *ip, uint32_t *mask);
/* "10.0.0.2" into buf (16 bytes); returns buf. */
char *ip_str(uint32_t ip, char *buf);
/* "52:54:00:12:34:56" into buf (18 bytes); returns buf. */
char *mac_str(const uint8_t mac[ETH_ALEN], char *buf);

/* Prints "<who>: net: rx=... tx=... <driver counters> drops: reason=n ..." */
void net_print_stats(const char *who);

#endif
