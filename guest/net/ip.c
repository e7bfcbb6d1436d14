/* IPv4 (RFC 791) for a host with static addresses: no fragmentation
 * (fragments are dropped and counted; we send with DF), no options sent,
 * options received skipped. */
#include "checksum.h"
#include "kernel.h"
#include "kstring.h"
#include "net_priv.h"

static bool bad_source(const struct netif *ifc, uint32_t src)
{
	return !src || src >= IP4(224, 0, 0, 0) || ip_is_broadcast(ifc, src) || src == ifc->ip;
}

void ip_input(struct netif *ifc, const struct eth_hdr *eh, const uint8_t *p, uint32_t len)
{
	const struct ipv4_hdr *ih = (const struct ipv4_hdr *)p;
	uint32_t hlen, total, src, dst;
	bool bcast;

	if (len < IPV4_HLEN)
		return net_drop(NET_DROP_IP_SHORT);
	if (ih->ver_ihl >> 4 != 4)
		return net_drop(NET_DROP_IP_VERSION);
	hlen = (ih->ver_ihl & 15u) * 4;
	if (hlen < IPV4_HLEN)
		return net_drop(NET_DROP_IP_HDR_LEN);
	total = be16(ih->total_len);
	/* The frame may be longer (Ethernet padding), never shorter. */
	if (hlen > len || total < hlen || total > len)
		return net_drop(NET_DROP_IP_SHORT);
	if (checksum_inet(p, hlen) != 0)
		return net_drop(NET_DROP_IP_CSUM);
	if (be16(ih->frag) & (IPV4_MF | IPV4_OFFSET))
		return net_drop(NET_DROP_IP_FRAGMENT);
	if (!ifc->ip)
		return net_drop(NET_DROP_NO_ADDR);
	src = be32(ih->src);
	dst = be32(ih->dst);
	if (bad_source(ifc, src))
		return net_drop(NET_DROP_IP_BAD_SRC);
	bcast = ip_is_broadcast(ifc, dst);
	if (dst != ifc->ip && !bcast)
		return net_drop(NET_DROP_IP_NOT_FOR_US);
	switch (ih->proto) {
	case IPPROTO_ICMP:
		icmp_input(ifc, eh, src, bcast, p + hlen, total - hlen);
		break;
	case IPPROTO_UDP:
		udp_input(ifc, src, dst, p + hlen, total - hlen);
		break;
	default:
		net_drop(NET_DROP_IP_PROTO);
	}
}

uint8_t *ip_tx_begin(struct netif *ifc, const uint8_t dst_mac[ETH_ALEN], uint32_t dst, uint8_t proto, uint32_t len,
		     void **frame)
{
	struct ipv4_hdr *ih;

	if (len > (uint32_t)ifc->mtu - IPV4_HLEN) {
		net_drop(NET_DROP_TX_TOO_BIG);
		return NULL;
	}
	ih = (struct ipv4_hdr *)net_tx_begin(ifc, dst_mac, ETH_P_IPV4, IPV4_HLEN + len, frame);
	if (!ih)
		return NULL;
	ih->ver_ihl = 4 << 4 | IPV4_HLEN / 4;
	ih->tos = 0;
	ih->total_len = be16((uint16_t)(IPV4_HLEN + len));
	ih->id = be16(ifc->ip_id++);
	ih->frag = be16(IPV4_DF);
	ih->ttl = IPV4_TTL;
	ih->proto = proto;
	ih->csum = 0;
	ih->src = be32(ifc->ip);
	ih->dst = be32(dst);
	return (uint8_t *)ih + IPV4_HLEN;
}

void ip_tx_end(struct netif *ifc, void *frame, uint32_t len)
{
	struct ipv4_hdr *ih = (struct ipv4_hdr *)((uint8_t *)frame + ETH_HLEN);

	ih->csum = be16(checksum_inet(ih, IPV4_HLEN));
	net_tx_end(ifc, frame, IPV4_HLEN + len);
}

uint32_t ip_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint32_t len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + len;
}
