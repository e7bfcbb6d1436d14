/* UDP (RFC 768): sockets on ports, each with a queue of received
 * datagrams (copied out of the receive buffer, so the device gets its
 * buffer back at once). Checksums are always sent and checked when present
 * (0 means "none" in IPv4, and is counted). */
#include "checksum.h"
#include "heap.h"
#include "kernel.h"
#include "kstring.h"
#include "net_priv.h"
#include "timer.h"

#define DEFAULT_DEPTH   128
#define EPHEMERAL_FIRST 49152
#define DEFAULT_PAYLOAD 1472    /* without an interface to size slots by */

struct udp_slot {
	uint32_t src;
	uint16_t sport;
	uint16_t pad;
	uint32_t len;
	uint32_t pad2;
	uint8_t data[];
};

struct udp_sock {
	bool open;
	bool holding;          /* the slot at head was handed out by udp_recv */
	uint16_t port;
	unsigned depth;
	uint32_t slot_size, max_payload;
	uint8_t *slots;
	unsigned head, tail;   /* tail - head queued, from head */
};

static struct udp_sock socks[NET_MAX_SOCKETS];
static uint16_t next_ephemeral = EPHEMERAL_FIRST;

static struct udp_sock *sock_find(uint16_t port)
{
	for (unsigned i = 0; i < NET_MAX_SOCKETS; i++) {
		if (socks[i].open && socks[i].port == port)
			return &socks[i];
	}
	return NULL;
}

static struct udp_slot *sock_slot(struct udp_sock *s, unsigned i)
{
	return (struct udp_slot *)(s->slots + (uint64_t)(i % s->depth) * s->slot_size);
}

struct udp_sock *udp_open(uint16_t port, unsigned depth)
{
	struct udp_sock *s = NULL;
	uint32_t max = 0;

	if (!port) {
		for (unsigned tries = 0; tries < 16384 && (!port || sock_find(port)); tries++) {
			port = next_ephemeral++;
			if (!next_ephemeral)
				next_ephemeral = EPHEMERAL_FIRST;
		}
	}
	if (sock_find(port))
		return NULL;
	for (unsigned i = 0; i < NET_MAX_SOCKETS && !s; i++) {
		if (!socks[i].open)
			s = &socks[i];
	}
	if (!s)
		return NULL;
	for (unsigned i = 0; i < net_if_count(); i++)
		max = MAX(max, (uint32_t)net_if(i)->mtu - IPV4_HLEN - UDP_HLEN);
	memset(s, 0, sizeof(*s));
	/* A power of two, so the free-running indices wrap cleanly. */
	for (s->depth = 1; s->depth < (depth ? depth : DEFAULT_DEPTH) && s->depth < 65536;)
		s->depth <<= 1;
	s->max_payload = max ? max : DEFAULT_PAYLOAD;
	s->slot_size = (uint32_t)ALIGN_UP(sizeof(struct udp_slot) + s->max_payload, 64u);
	s->slots = kmalloc((uint64_t)s->depth * s->slot_size);
	if (!s->slots)
		return NULL;
	s->port = port;
	s->open = true;
	return s;
}

void udp_close(struct udp_sock *s)
{
	if (!s || !s->open)
		return;
	kfree(s->slots);
	s->open = false;
}

uint16_t udp_port(const struct udp_sock *s)
{
	return s->port;
}

void udp_input(struct netif *ifc, uint32_t src, uint32_t dst, const uint8_t *p, uint32_t len)
{
	const struct udp_hdr *h = (const struct udp_hdr *)p;
	struct udp_sock *s;
	struct udp_slot *sl;
	uint32_t ulen;

	(void)ifc;
	if (len < UDP_HLEN)
		return net_drop(NET_DROP_UDP_SHORT);
	ulen = be16(h->len);
	if (ulen < UDP_HLEN || ulen > len)
		return net_drop(NET_DROP_UDP_LEN);
	if (h->csum) {
		if (csum_fold(csum_partial(p, ulen, ip_pseudo_sum(src, dst, IPPROTO_UDP, ulen))) != 0)
			return net_drop(NET_DROP_UDP_CSUM);
	} else {
		net_stats.udp_no_csum++;
	}
	s = sock_find(be16(h->dport));
	if (!s)
		return net_drop(NET_DROP_UDP_NO_PORT);
	if (ulen - UDP_HLEN > s->max_payload)
		return net_drop(NET_DROP_TOO_BIG);
	if (s->tail - s->head == s->depth)
		return net_drop(NET_DROP_UDP_QUEUE_FULL);
	sl = sock_slot(s, s->tail++);
	sl->src = src;
	sl->sport = be16(h->sport);
	sl->len = ulen - UDP_HLEN;
	memcpy(sl->data, p + UDP_HLEN, sl->len);
	net_stats.udp_received++;
}

int udp_sendto(struct udp_sock *s, uint32_t dst, uint16_t dport, const void *data, uint32_t len, unsigned flags)
{
	struct netif *ifc = net_route(dst);
	uint8_t mac[ETH_ALEN];
	struct udp_hdr *h;
	uint16_t csum;
	void *frame;

	if (!ifc) {
		net_drop(NET_DROP_TX_NO_ROUTE);
		return -1;
	}
	if (len > (uint32_t)ifc->mtu - IPV4_HLEN - UDP_HLEN) {
		net_drop(NET_DROP_TX_TOO_BIG);
		return -1;
	}
	if (arp_resolve(ifc, dst, mac, NET_ARP_TIMEOUT_NS)) {
		net_drop(NET_DROP_TX_ARP_FAILED);
		return -1;
	}
	h = (struct udp_hdr *)ip_tx_begin(ifc, mac, dst, IPPROTO_UDP, UDP_HLEN + len, &frame);
	if (!h)
		return -1;
	h->sport = be16(s->port);
	h->dport = be16(dport);
	h->len = be16((uint16_t)(UDP_HLEN + len));
	h->csum = 0;
	memcpy(h + 1, data, len);
	csum = csum_fold(csum_partial(h, UDP_HLEN + len, ip_pseudo_sum(ifc->ip, dst, IPPROTO_UDP, UDP_HLEN + len)));
	h->csum = be16(csum ? csum : 0xffff);  /* 0 would mean "no checksum" */
	ip_tx_end(ifc, frame, UDP_HLEN + len);
	net_stats.udp_sent++;
	if (!(flags & NET_MORE))
		net_flush();
	return 0;
}

bool udp_recv(struct udp_sock *s, struct udp_dgram *d, uint64_t timeout_ns)
{
	uint64_t start = time_ns(), spent;

	if (s->holding) {
		s->head++;
		s->holding = false;
	}
	for (;;) {
		if (s->head != s->tail) {
			struct udp_slot *sl = sock_slot(s, s->head);
			d->src = sl->src;
			d->sport = sl->sport;
			d->len = sl->len;
			d->data = sl->data;
			s->holding = true;
			return true;
		}
		/* Frames for others must not keep us past the timeout. */
		bool polled = net_poll() > 0;
		if (s->head != s->tail)
			continue;
		spent = time_ns() - start;
		if (spent >= timeout_ns)
			return false;
		if (!polled)
			net_wait(timeout_ns == TIMEOUT_NEVER ? TIMEOUT_NEVER : timeout_ns - spent);
	}
}

uint32_t udp_max_payload(uint32_t dst)
{
	struct netif *ifc = net_route(dst);

	return ifc ? (uint32_t)ifc->mtu - IPV4_HLEN - UDP_HLEN : 0;
}
