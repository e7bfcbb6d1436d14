/* Inside the network stack: wire formats and the calls between its layers.
 * Wire structures are packed and read through these helpers, so nothing
 * depends on a frame's alignment; multi-byte fields are big-endian. */
#ifndef GUEST_NET_PRIV_H
#define GUEST_NET_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include "net.h"

#define ETH_HLEN       14
#define ETH_ZLEN       60        /* shortest frame on the wire (without FCS) */
#define ETH_P_IPV4     0x0800
#define ETH_P_ARP      0x0806
#define IPV4_HLEN      20
#define IPV4_DF        0x4000
#define IPV4_MF        0x2000
#define IPV4_OFFSET    0x1fff
#define IPV4_TTL       64
#define IPPROTO_ICMP   1
#define IPPROTO_UDP    17
#define ICMP_HLEN      8
#define ICMP_ECHO_REPLY   0
#define ICMP_ECHO_REQUEST 8
#define UDP_HLEN       8
#define ARP_LEN        28
#define ARP_HTYPE_ETH  1
#define ARP_REQUEST    1
#define ARP_REPLY      2

struct eth_hdr {
	uint8_t dst[ETH_ALEN], src[ETH_ALEN];
	uint16_t type;
} __attribute__((packed));

struct arp_pkt {
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t op;
	uint8_t sha[ETH_ALEN], spa[4], tha[ETH_ALEN], tpa[4];
} __attribute__((packed));

struct ipv4_hdr {
	uint8_t ver_ihl, tos;
	uint16_t total_len, id, frag;
	uint8_t ttl, proto;
	uint16_t csum;
	uint32_t src, dst;
} __attribute__((packed));

struct icmp_hdr {
	uint8_t type, code;
	uint16_t csum, id, seq;
} __attribute__((packed));

struct udp_hdr {
	uint16_t sport, dport, len, csum;
} __attribute__((packed));

_Static_assert(sizeof(struct eth_hdr) == ETH_HLEN, "eth_hdr");
_Static_assert(sizeof(struct arp_pkt) == ARP_LEN, "arp_pkt");
_Static_assert(sizeof(struct ipv4_hdr) == IPV4_HLEN, "ipv4_hdr");
_Static_assert(sizeof(struct icmp_hdr) == ICMP_HLEN, "icmp_hdr");
_Static_assert(sizeof(struct udp_hdr) == UDP_HLEN, "udp_hdr");

static inline uint16_t be16(uint16_t v) { return __builtin_bswap16(v); }
static inline uint32_t be32(uint32_t v) { return __builtin_bswap32(v); }
static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void net_drop(enum net_drop why)
{
	net_stats.drops[why]++;
}

extern const uint8_t eth_broadcast[ETH_ALEN];
bool ip_is_broadcast(const struct netif *ifc, uint32_t ip);

/* Transmit: room for an Ethernet payload of len bytes to dst, headers
 * written; NULL (counted) if there is no buffer. net_tx_end queues the
 * frame (padded to ETH_ZLEN). */
uint8_t *net_tx_begin(struct netif *ifc, const uint8_t dst[ETH_ALEN], uint16_t type, uint32_t len, void **frame);
void net_tx_end(struct netif *ifc, void *frame, uint32_t len);

/* IPv4: the same one layer up; ip_tx_end fills in the IP checksum. */
uint8_t *ip_tx_begin(struct netif *ifc, const uint8_t dst_mac[ETH_ALEN], uint32_t dst, uint8_t proto, uint32_t len,
		     void **frame);
void ip_tx_end(struct netif *ifc, void *frame, uint32_t len);
/* The pseudo-header's part of a UDP checksum. */
uint32_t ip_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint32_t len);

/* Receive, one layer each: the payload after the lower layer's header. */
void arp_input(struct netif *ifc, const uint8_t *p, uint32_t len);
void ip_input(struct netif *ifc, const struct eth_hdr *eh, const uint8_t *p, uint32_t len);
void icmp_input(struct netif *ifc, const struct eth_hdr *eh, uint32_t src, bool bcast, const uint8_t *p, uint32_t len);
void udp_input(struct netif *ifc, uint32_t src, uint32_t dst, const uint8_t *p, uint32_t len);

#endif
