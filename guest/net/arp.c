/* ARP (RFC 826) for IPv4 over Ethernet: answers requests for our address,
 * keeps a small cache per interface, resolves with retries. */
#include "kernel.h"
#include "kstring.h"
#include "net_priv.h"
#include "timer.h"

#define ARP_RETRY_NS 250000000ull      /* between requests while resolving */
#define ARP_TTL_NS   60000000000ull    /* an entry not confirmed for this long is asked for again, */
#define ARP_STALE_NS 120000000000ull   /* and no longer used after this long */

static struct arp_entry *arp_find(struct netif *ifc, uint32_t ip)
{
	for (unsigned i = 0; i < NET_ARP_ENTRIES; i++) {
		if (ifc->arp[i].ip == ip)
			return &ifc->arp[i];
	}
	return NULL;
}

static void arp_update(struct arp_entry *e, uint32_t ip, const uint8_t *mac)
{
	e->ip = ip;
	memcpy(e->mac, mac, ETH_ALEN);
	e->t_ns = time_ns();
}

/* A free entry, else the oldest. */
static void arp_insert(struct netif *ifc, uint32_t ip, const uint8_t *mac)
{
	struct arp_entry *victim = &ifc->arp[0];

	for (unsigned i = 0; i < NET_ARP_ENTRIES; i++) {
		struct arp_entry *e = &ifc->arp[i];
		if (!e->ip) {
			victim = e;
			break;
		}
		if (e->t_ns < victim->t_ns)
			victim = e;
	}
	arp_update(victim, ip, mac);
}

bool arp_lookup(struct netif *ifc, uint32_t ip, uint8_t mac[ETH_ALEN])
{
	struct arp_entry *e;

	if (ip_is_broadcast(ifc, ip)) {
		memcpy(mac, eth_broadcast, ETH_ALEN);
		return true;
	}
	e = arp_find(ifc, ip);
	if (!e || time_ns() - e->t_ns > ARP_STALE_NS)
		return false;
	memcpy(mac, e->mac, ETH_ALEN);
	return true;
}

static void send_arp(struct netif *ifc, uint16_t op, const uint8_t *dst_mac, const uint8_t *tha, uint32_t tpa)
{
	void *frame;
	struct arp_pkt *a = (struct arp_pkt *)net_tx_begin(ifc, dst_mac, ETH_P_ARP, ARP_LEN, &frame);

	if (!a)
		return;
	a->htype = be16(ARP_HTYPE_ETH);
	a->ptype = be16(ETH_P_IPV4);
	a->hlen = ETH_ALEN;
	a->plen = 4;
	a->op = be16(op);
	memcpy(a->sha, ifc->mac, ETH_ALEN);
	put_be32(a->spa, ifc->ip);
	memcpy(a->tha, tha, ETH_ALEN);
	put_be32(a->tpa, tpa);
	net_tx_end(ifc, frame, ARP_LEN);
	if (op == ARP_REQUEST)
		net_stats.arp_requests_sent++;
	else
		net_stats.arp_replies_sent++;
}

void arp_input(struct netif *ifc, const uint8_t *p, uint32_t len)
{
	const struct arp_pkt *a = (const struct arp_pkt *)p;
	uint32_t spa, tpa;
	uint16_t op;
	struct arp_entry *e;

	if (len < ARP_LEN || be16(a->htype) != ARP_HTYPE_ETH || be16(a->ptype) != ETH_P_IPV4 ||
	    a->hlen != ETH_ALEN || a->plen != 4 || (a->sha[0] & 1))
		return net_drop(NET_DROP_ARP_MALFORMED);
	op = be16(a->op);
	if (op != ARP_REQUEST && op != ARP_REPLY)
		return net_drop(NET_DROP_ARP_OP);
	if (!ifc->ip)
		return net_drop(NET_DROP_NO_ADDR);
	spa = get_be32(a->spa);
	tpa = get_be32(a->tpa);
	/* RFC 826: refresh a sender we know; learn it only if it talks to us.
	 * A probe (sender 0.0.0.0, RFC 5227) teaches nothing. */
	e = spa ? arp_find(ifc, spa) : NULL;
	if (e)
		arp_update(e, spa, a->sha);
	if (tpa != ifc->ip)
		return net_drop(NET_DROP_ARP_NOT_FOR_US);
	if (!e && spa && !ip_is_broadcast(ifc, spa))
		arp_insert(ifc, spa, a->sha);
	if (op == ARP_REQUEST)
		send_arp(ifc, ARP_REPLY, a->sha, a->sha, spa);
}

int arp_resolve(struct netif *ifc, uint32_t ip, uint8_t mac[ETH_ALEN], uint64_t timeout_ns)
{
	static const uint8_t unknown[ETH_ALEN];
	uint64_t start = time_ns(), next = start, now;
	struct arp_entry *e = arp_find(ifc, ip);

	/* Stale but usable: ask the owner directly, at most every retry
	 * interval, and carry on with what we know. */
	if (e && arp_lookup(ifc, ip, mac)) {
		if (start - e->t_ns > ARP_TTL_NS && start - e->asked_ns >= ARP_RETRY_NS) {
			e->asked_ns = start;
			send_arp(ifc, ARP_REQUEST, e->mac, unknown, ip);
		}
		return 0;
	}
	for (;;) {
		if (arp_lookup(ifc, ip, mac))
			return 0;
		now = time_ns();
		if (now - start >= timeout_ns)
			return -1;
		if (now >= next) {
			if (next != start)
				net_stats.arp_retries++;
			send_arp(ifc, ARP_REQUEST, eth_broadcast, unknown, ip);
			net_flush();
			next = now + ARP_RETRY_NS;
		}
		if (!net_poll())
			net_wait(MIN(next - now, timeout_ns - (now - start)));
	}
}
