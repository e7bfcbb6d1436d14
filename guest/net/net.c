/* The stack's core: interfaces, Ethernet in and out, polling and waiting,
 * counters and address text. No hardware: drivers come in through struct
 * netif_ops. */
#include "kernel.h"
#include "kstring.h"
#include "net_priv.h"
#include "timer.h"
#include "x86.h"

#define POLL_BUDGET 32   /* frames per interface and net_poll: a flood on one starves neither the caller nor the others */

struct net_stats net_stats;
uint64_t net_spin_ns = 50000;  /* measured best of 0-5000 us on a 2-CPU host: guest/README.md */
const uint8_t eth_broadcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

static struct netif *ifs[NET_MAX_IFS];
static unsigned nifs;

static const char *const drop_names[NET_DROP_COUNT] = {
	[NET_DROP_RUNT] = "runt",
	[NET_DROP_TOO_BIG] = "too_big",
	[NET_DROP_NOT_FOR_US] = "not_for_us",
	[NET_DROP_MULTICAST] = "multicast",
	[NET_DROP_ETHERTYPE] = "ethertype",
	[NET_DROP_ARP_MALFORMED] = "arp_malformed",
	[NET_DROP_ARP_OP] = "arp_op",
	[NET_DROP_ARP_NOT_FOR_US] = "arp_not_for_us",
	[NET_DROP_NO_ADDR] = "no_addr",
	[NET_DROP_IP_SHORT] = "ip_short",
	[NET_DROP_IP_VERSION] = "ip_version",
	[NET_DROP_IP_HDR_LEN] = "ip_hdr_len",
	[NET_DROP_IP_CSUM] = "ip_csum",
	[NET_DROP_IP_FRAGMENT] = "ip_fragment",
	[NET_DROP_IP_BAD_SRC] = "ip_bad_src",
	[NET_DROP_IP_NOT_FOR_US] = "ip_not_for_us",
	[NET_DROP_IP_PROTO] = "ip_proto",
	[NET_DROP_ICMP_SHORT] = "icmp_short",
	[NET_DROP_ICMP_CSUM] = "icmp_csum",
	[NET_DROP_ICMP_TYPE] = "icmp_type",
	[NET_DROP_ICMP_BROADCAST] = "icmp_broadcast",
	[NET_DROP_ICMP_UNWANTED] = "icmp_unwanted",
	[NET_DROP_UDP_SHORT] = "udp_short",
	[NET_DROP_UDP_LEN] = "udp_len",
	[NET_DROP_UDP_CSUM] = "udp_csum",
	[NET_DROP_UDP_NO_PORT] = "udp_no_port",
	[NET_DROP_UDP_QUEUE_FULL] = "udp_queue_full",
	[NET_DROP_TX_NO_ROUTE] = "tx_no_route",
	[NET_DROP_TX_TOO_BIG] = "tx_too_big",
	[NET_DROP_TX_ARP_FAILED] = "tx_arp_failed",
	[NET_DROP_TX_NO_BUF] = "tx_no_buf",
};

const char *net_drop_name(enum net_drop why)
{
	return (unsigned)why < NET_DROP_COUNT ? drop_names[why] : "?";
}

uint64_t net_drops_total(void)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < NET_DROP_COUNT; i++)
		total += net_stats.drops[i];
	return total;
}

int netif_add(struct netif *ifc)
{
	if (nifs == NET_MAX_IFS)
		return -1;
	ifs[nifs++] = ifc;
	return 0;
}

unsigned net_if_count(void)
{
	return nifs;
}

struct netif *net_if(unsigned index)
{
	return index < nifs ? ifs[index] : NULL;
}

bool ip_is_broadcast(const struct netif *ifc, uint32_t ip)
{
	return ip == IP4_BROADCAST || (ifc->ip && ifc->mask != IP4_BROADCAST && ip == (ifc->ip | ~ifc->mask));
}

struct netif *net_route(uint32_t dst)
{
	for (unsigned i = 0; i < nifs; i++) {
		struct netif *ifc = ifs[i];
		if (ifc->ip && (dst == IP4_BROADCAST || (dst & ifc->mask) == (ifc->ip & ifc->mask)))
			return ifc;
	}
	return NULL;
}

static void eth_input(struct netif *ifc, const uint8_t *frame, uint32_t len)
{
	const struct eth_hdr *eh = (const struct eth_hdr *)frame;

	if (len < ETH_HLEN)
		return net_drop(NET_DROP_RUNT);
	if (len > ETH_HLEN + (uint32_t)ifc->mtu)
		return net_drop(NET_DROP_TOO_BIG);
	if (memcmp(eh->dst, ifc->mac, ETH_ALEN) && memcmp(eh->dst, eth_broadcast, ETH_ALEN))
		return net_drop(eh->dst[0] & 1 ? NET_DROP_MULTICAST : NET_DROP_NOT_FOR_US);
	switch (be16(eh->type)) {
	case ETH_P_ARP:
		arp_input(ifc, frame + ETH_HLEN, len - ETH_HLEN);
		break;
	case ETH_P_IPV4:
		ip_input(ifc, eh, frame + ETH_HLEN, len - ETH_HLEN);
		break;
	default:
		net_drop(NET_DROP_ETHERTYPE);
	}
}

uint8_t *net_tx_begin(struct netif *ifc, const uint8_t dst[ETH_ALEN], uint16_t type, uint32_t len, void **frame)
{
	uint32_t cap = 0;
	uint8_t *f = ifc->ops->tx_get(ifc, dst, &cap);
	struct eth_hdr *eh = (struct eth_hdr *)f;

	if (!f) {
		net_drop(NET_DROP_TX_NO_BUF);
		return NULL;
	}
	if (cap < ETH_ZLEN || len > cap - ETH_HLEN) {  /* callers check the MTU first */
		ifc->ops->tx_cancel(ifc, f);
		net_drop(NET_DROP_TX_TOO_BIG);
		return NULL;
	}
	memcpy(eh->dst, dst, ETH_ALEN);
	memcpy(eh->src, ifc->mac, ETH_ALEN);
	eh->type = be16(type);
	*frame = f;
	return f + ETH_HLEN;
}

void net_tx_end(struct netif *ifc, void *frame, uint32_t len)
{
	uint32_t flen = ETH_HLEN + len;

	if (flen < ETH_ZLEN) {
		memset((uint8_t *)frame + flen, 0, ETH_ZLEN - flen);
		flen = ETH_ZLEN;
	}
	ifc->ops->tx_put(ifc, frame, flen);
	ifc->tx_frames++;
	net_stats.tx_frames++;
}

void net_flush(void)
{
	for (unsigned i = 0; i < nifs; i++)
		ifs[i]->ops->flush(ifs[i]);
}

unsigned net_poll(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nifs; i++) {
		struct netif *ifc = ifs[i];
		uint8_t *frame;
		uint32_t len;

		for (unsigned k = 0; k < POLL_BUDGET && (frame = ifc->ops->rx_get(ifc, &len)) != NULL; k++) {
			ifc->rx_frames++;
			net_stats.rx_frames++;
			eth_input(ifc, frame, len);
			ifc->ops->rx_put(ifc, frame);
			n++;
		}
	}
	if (n)
		net_flush();  /* replies, and the buffers just returned */
	return n;
}

static bool rx_pending(void)
{
	for (unsigned i = 0; i < nifs; i++) {
		if (ifs[i]->ops->rx_pending(ifs[i]))
			return true;
	}
	return false;
}

bool net_wait(uint64_t timeout_ns)
{
	uint64_t start = time_ns(), spent = 0;

	net_flush();
	net_stats.waits++;
	/* Polling is native; a halt costs an interrupt through ring 0. */
	while (spent < timeout_ns && spent < net_spin_ns) {
		if (rx_pending())
			return true;
		cpu_relax();
		spent = time_ns() - start;
	}
	if (spent >= timeout_ns)
		return rx_pending();
	net_stats.waits_halted++;
	return netif_wait_hw(timeout_ns == TIMEOUT_NEVER ? TIMEOUT_NEVER : timeout_ns - spent);
}

/* 1 to 3 decimal digits. */
static bool parse_dec(const char **s, uint32_t *out)
{
	uint32_t v = 0;
	unsigned digits = 0;

	while (**s >= '0' && **s <= '9' && digits < 4) {
		v = v * 10 + (uint32_t)(**s - '0');
		(*s)++;
		digits++;
	}
	*out = v;
	return digits >= 1 && digits <= 3;
}

bool ip_parse(const char *s, uint32_t *ip)
{
	uint32_t v = 0, part;

	for (int i = 0; i < 4; i++) {
		if (!parse_dec(&s, &part) || part > 255)
			return false;
		v = v << 8 | part;
		if (i < 3 && *s++ != '.')
			return false;
	}
	if (*s)
		return false;
	*ip = v;
	return true;
}

bool ip_parse_cidr(const char *s, uint32_t *ip, uint32_t *mask)
{
	char addr[16];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	uint32_t prefix = 24;

	if (alen >= sizeof(addr))
		return false;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (!ip_parse(addr, ip))
		return false;
	if (slash) {
		const char *p = slash + 1;
		if (!parse_dec(&p, &prefix) || *p || prefix > 32)
			return false;
	}
	*mask = prefix ? ~0u << (32 - prefix) : 0;
	return true;
}

char *ip_str(uint32_t ip, char *buf)
{
	ksnprintf(buf, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
	return buf;
}

char *mac_str(const uint8_t mac[ETH_ALEN], char *buf)
{
	ksnprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	return buf;
}

void net_print_stats(const char *who)
{
	char line[512], drv[192];
	int n;

	n = ksnprintf(line, sizeof(line), "%s: net: rx=%lu tx=%lu arp_req=%lu arp_retries=%lu waits=%lu halted=%lu", who,
		      net_stats.rx_frames, net_stats.tx_frames, net_stats.arp_requests_sent, net_stats.arp_retries,
		      net_stats.waits, net_stats.waits_halted);
	for (unsigned i = 0; i < nifs && n < (int)sizeof(line); i++) {
		if (!ifs[i]->ops->describe)
			continue;
		ifs[i]->ops->describe(ifs[i], drv, sizeof(drv));
		n += ksnprintf(line + n, sizeof(line) - (size_t)n, " %s: %s", ifs[i]->name, drv);
	}
	if (n < (int)sizeof(line))
		n += ksnprintf(line + n, sizeof(line) - (size_t)n, " drops:");
	for (unsigned i = 0; i < NET_DROP_COUNT && n < (int)sizeof(line); i++) {
		if (net_stats.drops[i])
			n += ksnprintf(line + n, sizeof(line) - (size_t)n, " %s=%lu", drop_names[i], net_stats.drops[i]);
	}
	if (!net_drops_total() && n < (int)sizeof(line))
		ksnprintf(line + n, sizeof(line) - (size_t)n, " none");
	kprintf("%s\n", line);
}
