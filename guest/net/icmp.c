/* ICMP echo (RFC 792): requests to our address are answered at once;
 * replies for the id a pinger listens on are queued for it. */
#include "checksum.h"
#include "kernel.h"
#include "kstring.h"
#include "net_priv.h"
#include "timer.h"

static uint16_t listen_id;
static bool listening;
static struct icmp_echo queue[NET_ECHO_QUEUE];
static unsigned q_head, q_tail;   /* q_tail - q_head entries, from q_head */

void icmp_echo_listen(uint16_t id)
{
	listen_id = id;
	listening = true;
	q_head = q_tail = 0;
}

bool icmp_echo_reply(struct icmp_echo *out)
{
	if (q_head == q_tail)
		return false;
	*out = queue[q_head++ % NET_ECHO_QUEUE];
	return true;
}

/* Sends type/code with this header's id and seq and the payload. The reply
 * goes to the MAC the request came from: no ARP needed to answer. */
static int send_echo(struct netif *ifc, const uint8_t *dst_mac, uint32_t dst, uint8_t type, uint16_t id, uint16_t seq,
		     const void *data, uint32_t len)
{
	void *frame;
	struct icmp_hdr *h = (struct icmp_hdr *)ip_tx_begin(ifc, dst_mac, dst, IPPROTO_ICMP, ICMP_HLEN + len, &frame);

	if (!h)
		return -1;
	h->type = type;
	h->code = 0;
	h->csum = 0;
	h->id = be16(id);
	h->seq = be16(seq);
	memcpy(h + 1, data, len);
	h->csum = be16(checksum_inet(h, ICMP_HLEN + len));
	ip_tx_end(ifc, frame, ICMP_HLEN + len);
	return 0;
}

void icmp_input(struct netif *ifc, const struct eth_hdr *eh, uint32_t src, bool bcast, const uint8_t *p, uint32_t len)
{
	const struct icmp_hdr *h = (const struct icmp_hdr *)p;
	struct icmp_echo *e;

	if (len < ICMP_HLEN)
		return net_drop(NET_DROP_ICMP_SHORT);
	if (checksum_inet(p, len) != 0)
		return net_drop(NET_DROP_ICMP_CSUM);
	if (h->code != 0 || (h->type != ICMP_ECHO_REQUEST && h->type != ICMP_ECHO_REPLY))
		return net_drop(NET_DROP_ICMP_TYPE);
	if (h->type == ICMP_ECHO_REQUEST) {
		if (bcast)
			return net_drop(NET_DROP_ICMP_BROADCAST);
		if (send_echo(ifc, eh->src, src, ICMP_ECHO_REPLY, be16(h->id), be16(h->seq), p + ICMP_HLEN,
			      len - ICMP_HLEN) == 0)
			net_stats.icmp_echo_replies_sent++;
		return;
	}
	if (!listening || be16(h->id) != listen_id || q_tail - q_head == NET_ECHO_QUEUE)
		return net_drop(NET_DROP_ICMP_UNWANTED);
	e = &queue[q_tail++ % NET_ECHO_QUEUE];
	e->src = src;
	e->id = be16(h->id);
	e->seq = be16(h->seq);
	e->len = len - ICMP_HLEN;
	e->t_ns = time_ns();
	memcpy(e->data, p + ICMP_HLEN, MIN(e->len, (uint32_t)NET_ECHO_DATA));
	net_stats.icmp_echo_replies_received++;
}

int icmp_echo_request(uint32_t dst, uint16_t id, uint16_t seq, const void *data, uint32_t len)
{
	struct netif *ifc = net_route(dst);
	uint8_t mac[ETH_ALEN];

	if (!ifc) {
		net_drop(NET_DROP_TX_NO_ROUTE);
		return -1;
	}
	if (arp_resolve(ifc, dst, mac, NET_ARP_TIMEOUT_NS)) {
		net_drop(NET_DROP_TX_ARP_FAILED);
		return -1;
	}
	if (send_echo(ifc, mac, dst, ICMP_ECHO_REQUEST, id, seq, data, len))
		return -1;
	net_stats.icmp_echo_requests_sent++;
	net_flush();
	return 0;
}
