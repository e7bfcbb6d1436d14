/* The guest's network stack (guest/net/ without if_virtio.c), compiled on
 * the host over a fake interface: frames go in as exact-size heap copies
 * (so ASan sees any read past a frame), what the stack transmits is kept
 * for inspection, and time only moves when the stack waits. Covers every
 * drop reason, ARP answers and retries, ICMP echo, UDP in both directions,
 * checksums against a plain reference, and truncated or random frames. */
#include "helpers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stack and what it uses from lib/, with -Iguest/include (tests.mk). */
#include "../guest/lib/checksum.c"
#include "../guest/lib/printf.c"
#include "../guest/net/net.c"
#include "../guest/net/arp.c"
#include "../guest/net/ip.c"
#include "../guest/net/icmp.c"
#include "../guest/net/udp.c"

/* --- what the stack needs from the kernel --- */

static uint64_t now_ns;

uint64_t time_ns(void)
{
	return now_ns;
}

void *kmalloc(size_t size)
{
	return malloc(size);
}

void *kzalloc(size_t size)
{
	return calloc(1, size);
}

void kfree(void *p)
{
	free(p);
}

int kprintf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

/* --- a fake interface --- */

#define MAX_FRAMES 64
#define FRAME_CAP  1514

struct frame {
	uint8_t *data;
	uint32_t len;
};

static struct frame rxq[MAX_FRAMES];
static unsigned rx_head, rx_tail;
static struct frame txlog[MAX_FRAMES];
static unsigned ntx;
static unsigned flushes;
static uint8_t txbuf[4][FRAME_CAP];
static bool txbuf_used[4];
/* Called from netif_wait_hw: lets a test answer while the stack waits. */
static void (*on_wait)(void);

static const uint8_t our_mac[ETH_ALEN] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x01 };
static const uint8_t peer_mac[ETH_ALEN] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x02 };
#define OUR_IP  IP4(10, 0, 0, 1)
#define PEER_IP IP4(10, 0, 0, 2)

static void *fake_tx_get(struct netif *ifc, const uint8_t *dst, uint32_t *cap)
{
	(void)dst;
	(void)ifc;
	for (unsigned i = 0; i < 4; i++) {
		if (!txbuf_used[i]) {
			txbuf_used[i] = true;
			*cap = FRAME_CAP;
			memset(txbuf[i], 0xa5, FRAME_CAP);  /* whatever the stack does not write shows */
			return txbuf[i];
		}
	}
	return NULL;
}

static void release_tx(void *frame)
{
	for (unsigned i = 0; i < 4; i++) {
		if (frame == txbuf[i])
			txbuf_used[i] = false;
	}
}

static void fake_tx_put(struct netif *ifc, void *frame, uint32_t len)
{
	(void)ifc;
	assert_true(len <= FRAME_CAP);
	assert_true(ntx < MAX_FRAMES);
	txlog[ntx].data = malloc(len);
	memcpy(txlog[ntx].data, frame, len);
	txlog[ntx++].len = len;
	release_tx(frame);
}

static void fake_tx_cancel(struct netif *ifc, void *frame)
{
	(void)ifc;
	release_tx(frame);
}

static uint32_t udp_frame(uint8_t *f, uint16_t sport, uint16_t dport, const void *data, uint32_t len);
static void inject(const void *data, uint32_t len);
/* An endless stream of datagrams to port 8, one every 100 us, until
 * flood_until (then the stack is not minding its timeout: fail). */
static bool flood;
static uint64_t flood_until;

static void *fake_rx_get(struct netif *ifc, uint32_t *len)
{
	(void)ifc;
	if (flood && rx_head == rx_tail) {
		uint8_t f[64];
		if (now_ns > flood_until)
			fail_msg("still receiving long after the timeout");
		now_ns += 100000;
		inject(f, udp_frame(f, 1, 8, "", 0));
	}
	if (rx_head == rx_tail)
		return NULL;
	*len = rxq[rx_head % MAX_FRAMES].len;
	return rxq[rx_head++ % MAX_FRAMES].data;
}

static void fake_rx_put(struct netif *ifc, void *frame)
{
	(void)ifc;
	free(frame);
}

static bool fake_rx_pending(struct netif *ifc)
{
	(void)ifc;
	return rx_head != rx_tail;
}

static void fake_flush(struct netif *ifc)
{
	(void)ifc;
	flushes++;
}

static bool fake_link_up(struct netif *ifc)
{
	(void)ifc;
	return true;
}

static const struct netif_ops fake_ops = {
	.tx_get = fake_tx_get,
	.tx_put = fake_tx_put,
	.tx_cancel = fake_tx_cancel,
	.rx_get = fake_rx_get,
	.rx_put = fake_rx_put,
	.rx_pending = fake_rx_pending,
	.flush = fake_flush,
	.link_up = fake_link_up,
};

static struct netif eth0;

/* Time passes only here: the stack waits 1 ms at a time. */
bool netif_wait_hw(uint64_t timeout_ns)
{
	now_ns += MIN(timeout_ns, 1000000ull);
	if (on_wait)
		on_wait();
	return rx_head != rx_tail;
}

static void inject(const void *data, uint32_t len)
{
	assert_true(rx_tail - rx_head < MAX_FRAMES);
	rxq[rx_tail % MAX_FRAMES].data = malloc(len ? len : 1);
	memcpy(rxq[rx_tail % MAX_FRAMES].data, data, len);
	rxq[rx_tail++ % MAX_FRAMES].len = len;
}

static void clear_tx(void)
{
	for (unsigned i = 0; i < ntx; i++)
		free(txlog[i].data);
	ntx = 0;
}

static int setup(void **state)
{
	(void)state;
	for (unsigned i = 0; i < NET_MAX_SOCKETS; i++)
		udp_close(&socks[i]);
	memset(&net_stats, 0, sizeof(net_stats));
	nifs = 0;
	listening = false;
	q_head = q_tail = 0;
	now_ns = 1000000000ull;
	on_wait = NULL;
	flood = false;
	rx_head = rx_tail = 0;
	flushes = 0;
	memset(txbuf_used, 0, sizeof(txbuf_used));
	memset(&eth0, 0, sizeof(eth0));
	eth0.ops = &fake_ops;
	strcpy(eth0.name, "eth0");
	memcpy(eth0.mac, our_mac, ETH_ALEN);
	eth0.mtu = 1500;
	eth0.ip = OUR_IP;
	eth0.mask = IP4(255, 255, 255, 0);
	net_spin_ns = 0;
	return netif_add(&eth0);
}

static int teardown(void **state)
{
	(void)state;
	clear_tx();
	while (rx_head != rx_tail)
		free(rxq[rx_head++ % MAX_FRAMES].data);
	return 0;
}

/* --- building frames, with a reference checksum --- */

static uint16_t ref_csum(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i < len; i += 2)
		sum += (uint32_t)p[i] << 8 | (i + 1 < len ? p[i + 1] : 0);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t eth(uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, peer_mac, 6);
	put16(f + 12, type);
	return 14;
}

/* An IPv4 packet from src to dst carrying len bytes of payload (already at
 * f + 34); returns the frame length. */
static uint32_t ipv4(uint8_t *f, uint32_t src, uint32_t dst, uint8_t proto, uint32_t len)
{
	uint8_t *ip = f + eth(f, our_mac, 0x0800);

	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(20 + len));
	put16(ip + 4, 0x1234);
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	put_be32(ip + 12, src);
	put_be32(ip + 16, dst);
	put16(ip + 10, ref_csum(ip, 20, 0));
	return 34 + len;
}

static void fix_ip_csum(uint8_t *f)
{
	put16(f + 24, 0);
	put16(f + 24, ref_csum(f + 14, (f[14] & 15u) * 4, 0));
}

static uint32_t udp_pseudo(uint32_t src, uint32_t dst, uint32_t len)
{
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 17 + len;
}

static uint32_t udp_frame(uint8_t *f, uint16_t sport, uint16_t dport, const void *data, uint32_t len)
{
	uint8_t *u = f + 34;

	put16(u, sport);
	put16(u + 2, dport);
	put16(u + 4, (uint16_t)(8 + len));
	put16(u + 6, 0);
	memcpy(u + 8, data, len);
	put16(u + 6, ref_csum(u, 8 + len, udp_pseudo(PEER_IP, OUR_IP, 8 + len)));
	return ipv4(f, PEER_IP, OUR_IP, 17, 8 + len);
}

static uint32_t echo_request(uint8_t *f, uint16_t id, uint16_t seq, uint32_t len)
{
	uint8_t *ic = f + 34;

	ic[0] = 8;
	ic[1] = 0;
	put16(ic + 2, 0);
	put16(ic + 4, id);
	put16(ic + 6, seq);
	for (uint32_t i = 0; i < len; i++)
		ic[8 + i] = (uint8_t)(i * 7 + 1);
	put16(ic + 2, ref_csum(ic, 8 + len, 0));
	return ipv4(f, PEER_IP, OUR_IP, 1, 8 + len);
}

static uint32_t arp_frame(uint8_t *f, uint16_t op, uint32_t spa, uint32_t tpa)
{
	uint8_t *a = f + eth(f, op == 1 ? (const uint8_t *)"\xff\xff\xff\xff\xff\xff" : our_mac, 0x0806);

	put16(a, 1);
	put16(a + 2, 0x0800);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, peer_mac, 6);
	put_be32(a + 14, spa);
	memset(a + 18, 0, 6);
	put_be32(a + 24, tpa);
	return 42;
}

static uint64_t total_drops(void)
{
	return net_drops_total();
}

/* Injects, polls, and checks that exactly one drop of this reason and no
 * transmission resulted. */
static void expect_drop(const uint8_t *f, uint32_t len, enum net_drop why)
{
	uint64_t before = net_stats.drops[why], all = total_drops();

	clear_tx();
	inject(f, len);
	net_poll();
	if (net_stats.drops[why] != before + 1 || total_drops() != all + 1 || ntx)
		fail_msg("expected one %s drop and nothing sent; got %s %lu->%lu, all %lu->%lu, %u sent",
			 net_drop_name(why), net_drop_name(why), (unsigned long)before,
			 (unsigned long)net_stats.drops[why], (unsigned long)all, (unsigned long)total_drops(), ntx);
}

/* --- tests --- */

static void checksum_matches_reference(void **state)
{
	uint8_t buf[301];

	(void)state;
	srand(1);
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)rand() % sizeof(buf);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rand();
		uint16_t want = ref_csum(buf, len, 0);
		assert_int_equal(checksum_inet(buf, len), want);
		/* In two pieces, split at an even offset. */
		size_t cut = len ? ((size_t)rand() % (len + 1)) & ~(size_t)1 : 0;
		assert_int_equal(csum_fold(csum_partial(buf + cut, len - cut, csum_partial(buf, cut, 0))), want);
	}
	/* A header that carries its checksum folds to 0. */
	uint8_t f[64];
	ipv4(f, PEER_IP, OUR_IP, 17, 0);
	assert_int_equal(checksum_inet(f + 14, 20), 0);
}

static void parses_addresses(void **state)
{
	uint32_t ip, mask;
	char buf[18];

	(void)state;
	assert_true(ip_parse("10.0.0.2", &ip));
	assert_int_equal(ip, IP4(10, 0, 0, 2));
	assert_true(ip_parse("255.255.255.255", &ip));
	assert_true(ip_parse_cidr("192.168.1.7/16", &ip, &mask));
	assert_int_equal(ip, IP4(192, 168, 1, 7));
	assert_int_equal(mask, IP4(255, 255, 0, 0));
	assert_true(ip_parse_cidr("10.1.2.3", &ip, &mask));
	assert_int_equal(mask, IP4(255, 255, 255, 0));
	assert_true(ip_parse_cidr("10.1.2.3/32", &ip, &mask));
	assert_int_equal(mask, 0xffffffffu);
	assert_true(ip_parse_cidr("10.1.2.3/0", &ip, &mask));
	assert_int_equal(mask, 0);
	const char *bad[] = { "", "10.0.0", "10.0.0.256", "10.0.0.1.", "1.2.3.4.5", "a.b.c.d", "10..0.1",
			      "1000.0.0.1", "10.0.0.1 ", "0x10.0.0.1", "-1.0.0.0" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (ip_parse(bad[i], &ip))
			fail_msg("accepted \"%s\"", bad[i]);
	}
	const char *bad_cidr[] = { "10.0.0.1/", "10.0.0.1/33", "10.0.0.1/2x", "10.0.0.1/-1", "/24", "10.0.0.1/1234" };
	for (size_t i = 0; i < sizeof(bad_cidr) / sizeof(bad_cidr[0]); i++) {
		if (ip_parse_cidr(bad_cidr[i], &ip, &mask))
			fail_msg("accepted \"%s\"", bad_cidr[i]);
	}
	assert_string_equal(ip_str(IP4(10, 0, 0, 254), buf), "10.0.0.254");
	assert_string_equal(mac_str(peer_mac, buf), "52:54:00:00:00:02");
}

static void arp_request_for_us_is_answered(void **state)
{
	uint8_t f[64], mac[6];

	(void)state;
	inject(f, arp_frame(f, 1, PEER_IP, OUR_IP));
	assert_int_equal(net_poll(), 1);
	assert_int_equal(ntx, 1);
	const uint8_t *r = txlog[0].data;
	assert_int_equal(txlog[0].len, 60);  /* padded to the minimum */
	assert_memory_equal(r, peer_mac, 6);
	assert_memory_equal(r + 6, our_mac, 6);
	assert_int_equal(get16(r + 12), 0x0806);
	assert_int_equal(get16(r + 20), 2);
	assert_memory_equal(r + 22, our_mac, 6);
	assert_int_equal(get32(r + 28), OUR_IP);
	assert_memory_equal(r + 32, peer_mac, 6);
	assert_int_equal(get32(r + 38), PEER_IP);
	for (unsigned i = 42; i < 60; i++)
		assert_int_equal(r[i], 0);
	assert_true(flushes > 0);
	/* The requester was learnt. */
	assert_true(arp_lookup(&eth0, PEER_IP, mac));
	assert_memory_equal(mac, peer_mac, 6);
	assert_int_equal(net_stats.arp_replies_sent, 1);
}

static void arp_malformed_and_foreign_are_dropped(void **state)
{
	uint8_t f[64], mac[6];
	uint32_t len;

	(void)state;
	len = arp_frame(f, 1, PEER_IP, IP4(10, 0, 0, 9));
	expect_drop(f, len, NET_DROP_ARP_NOT_FOR_US);
	assert_false(arp_lookup(&eth0, PEER_IP, mac));  /* not learnt from others' traffic */
	len = arp_frame(f, 1, PEER_IP, OUR_IP);
	expect_drop(f, len - 1, NET_DROP_ARP_MALFORMED);
	f[14 + 4] = 8;  /* hlen */
	expect_drop(f, len, NET_DROP_ARP_MALFORMED);
	len = arp_frame(f, 1, PEER_IP, OUR_IP);
	put16(f + 14 + 2, 0x86dd);  /* ptype */
	expect_drop(f, len, NET_DROP_ARP_MALFORMED);
	len = arp_frame(f, 3, PEER_IP, OUR_IP);
	expect_drop(f, len, NET_DROP_ARP_OP);
	len = arp_frame(f, 1, PEER_IP, OUR_IP);
	f[14 + 8] |= 1;  /* a multicast sender */
	expect_drop(f, len, NET_DROP_ARP_MALFORMED);
	eth0.ip = 0;
	len = arp_frame(f, 1, PEER_IP, OUR_IP);
	expect_drop(f, len, NET_DROP_NO_ADDR);
}

static void arp_resolve_retries_then_gives_up(void **state)
{
	uint8_t mac[6];
	uint64_t start = now_ns;

	(void)state;
	assert_int_equal(arp_resolve(&eth0, PEER_IP, mac, 1000000000ull), -1);
	assert_true(now_ns - start >= 1000000000ull);
	/* One request every 250 ms: at 0, 250, 500, 750. */
	assert_int_equal(ntx, 4);
	assert_int_equal(net_stats.arp_requests_sent, 4);
	assert_int_equal(net_stats.arp_retries, 3);
	for (unsigned i = 0; i < ntx; i++) {
		assert_memory_equal(txlog[i].data, "\xff\xff\xff\xff\xff\xff", 6);
		assert_int_equal(get16(txlog[i].data + 20), 1);
		assert_int_equal(get32(txlog[i].data + 38), PEER_IP);
	}
}

static bool answered;

static void answer_second_request(void)
{
	uint8_t f[64];

	if (ntx == 2 && !answered) {
		inject(f, arp_frame(f, 2, PEER_IP, OUR_IP));
		answered = true;
	}
}

static void arp_resolve_takes_the_reply(void **state)
{
	uint8_t mac[6];

	(void)state;
	on_wait = answer_second_request;
	assert_int_equal(arp_resolve(&eth0, PEER_IP, mac, 5000000000ull), 0);
	assert_memory_equal(mac, peer_mac, 6);
	assert_int_equal(net_stats.arp_requests_sent, 2);
	/* The broadcast address needs no ARP. */
	assert_int_equal(arp_resolve(&eth0, IP4(10, 0, 0, 255), mac, 0), 0);
	assert_memory_equal(mac, "\xff\xff\xff\xff\xff\xff", 6);
}

/* After a minute an entry is asked for again, unicast, while still used;
 * after two it is gone. */
static void arp_entry_is_refreshed_in_use(void **state)
{
	uint8_t f[64], mac[6];
	struct udp_sock *s = udp_open(0, 0);

	(void)state;
	inject(f, arp_frame(f, 1, PEER_IP, OUR_IP));
	net_poll();
	clear_tx();
	now_ns += 61000000000ull;
	assert_int_equal(udp_sendto(s, PEER_IP, 9, "x", 1, 0), 0);
	assert_int_equal(ntx, 2);
	assert_memory_equal(txlog[0].data, peer_mac, 6);  /* the request, to the known MAC */
	assert_int_equal(get16(txlog[0].data + 12), 0x0806);
	assert_int_equal(get16(txlog[0].data + 20), 1);
	assert_int_equal(get16(txlog[1].data + 12), 0x0800);  /* and the datagram, not held up */
	clear_tx();
	assert_int_equal(udp_sendto(s, PEER_IP, 9, "x", 1, 0), 0);
	assert_int_equal(ntx, 1);  /* not asked again within 250 ms */
	/* The reply confirms it. */
	inject(f, arp_frame(f, 2, PEER_IP, OUR_IP));
	net_poll();
	clear_tx();
	now_ns += 1000000000ull;
	assert_int_equal(udp_sendto(s, PEER_IP, 9, "x", 1, 0), 0);
	assert_int_equal(ntx, 1);
	/* Unanswered for two minutes: resolved from scratch, and in vain. */
	now_ns += 121000000000ull;
	assert_false(arp_lookup(&eth0, PEER_IP, mac));
	clear_tx();
	assert_int_equal(udp_sendto(s, PEER_IP, 9, "x", 1, 0), -1);
	assert_int_equal(net_stats.drops[NET_DROP_TX_ARP_FAILED], 1);
	assert_memory_equal(txlog[0].data, "\xff\xff\xff\xff\xff\xff", 6);
	udp_close(s);
}

static void echo_request_is_answered(void **state)
{
	uint8_t f[1514];
	uint32_t len = echo_request(f, 0x4242, 7, 100);

	(void)state;
	inject(f, len);
	net_poll();
	assert_int_equal(ntx, 1);
	const uint8_t *r = txlog[0].data;
	assert_int_equal(txlog[0].len, len);
	assert_memory_equal(r, peer_mac, 6);  /* to the sender's MAC: no ARP */
	assert_int_equal(ref_csum(r + 14, 20, 0), 0);
	assert_int_equal(get32(r + 26), OUR_IP);
	assert_int_equal(get32(r + 30), PEER_IP);
	assert_int_equal(r[14 + 9], 1);
	assert_int_equal(r[34], 0);  /* echo reply */
	assert_int_equal(get16(r + 38), 0x4242);
	assert_int_equal(get16(r + 40), 7);
	assert_memory_equal(r + 42, f + 42, 100);
	assert_int_equal(ref_csum(r + 34, 108, 0), 0);
	assert_int_equal(net_stats.icmp_echo_replies_sent, 1);
	assert_int_equal(total_drops(), 0);
}

static void echo_replies_reach_the_listener(void **state)
{
	uint8_t f[200];
	struct icmp_echo e;
	uint32_t len;

	(void)state;
	len = echo_request(f, 9, 3, 20);
	f[34] = 0;  /* make it a reply */
	put16(f + 36, 0);
	put16(f + 36, ref_csum(f + 34, 28, 0));
	expect_drop(f, len, NET_DROP_ICMP_UNWANTED);  /* nobody listens */
	icmp_echo_listen(9);
	inject(f, len);
	net_poll();
	assert_true(icmp_echo_reply(&e));
	assert_int_equal(e.id, 9);
	assert_int_equal(e.seq, 3);
	assert_int_equal(e.len, 20);
	assert_int_equal(e.src, PEER_IP);
	assert_int_equal(e.t_ns, now_ns);
	assert_memory_equal(e.data, f + 42, 20);
	assert_false(icmp_echo_reply(&e));
	icmp_echo_listen(10);
	expect_drop(f, len, NET_DROP_ICMP_UNWANTED);  /* another id */
}

static void icmp_drops(void **state)
{
	uint8_t f[200];
	uint32_t len;

	(void)state;
	len = echo_request(f, 1, 1, 8);
	f[40] ^= 1;  /* payload changed, checksum not */
	expect_drop(f, len, NET_DROP_ICMP_CSUM);
	len = echo_request(f, 1, 1, 8);
	f[34] = 13;  /* timestamp request */
	put16(f + 36, 0);
	put16(f + 36, ref_csum(f + 34, 16, 0));
	expect_drop(f, len, NET_DROP_ICMP_TYPE);
	/* Shorter than an ICMP header: IP total length 20 + 4. */
	len = echo_request(f, 1, 1, 0);
	put16(f + 16, 24);
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_ICMP_SHORT);
	/* An echo request to the subnet's broadcast address is not answered. */
	len = echo_request(f, 1, 1, 8);
	put_be32(f + 30, IP4(10, 0, 0, 255));
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_ICMP_BROADCAST);
}

static void ethernet_and_ip_drops(void **state)
{
	uint8_t f[1600], big[1600];
	uint32_t len;

	(void)state;
	memset(f, 0, sizeof(f));
	expect_drop(f, 13, NET_DROP_RUNT);
	len = echo_request(f, 1, 1, 8);
	memcpy(f, peer_mac, 6);
	expect_drop(f, len, NET_DROP_NOT_FOR_US);
	f[0] = 0x01;  /* multicast */
	expect_drop(f, len, NET_DROP_MULTICAST);
	len = echo_request(f, 1, 1, 8);
	put16(f + 12, 0x8100);  /* a VLAN tag */
	expect_drop(f, len, NET_DROP_ETHERTYPE);
	memset(big, 0, sizeof(big));
	eth(big, our_mac, 0x0800);
	expect_drop(big, 1515, NET_DROP_TOO_BIG);

	len = echo_request(f, 1, 1, 8);
	expect_drop(f, 14 + 19, NET_DROP_IP_SHORT);
	f[14] = 0x65;  /* version 6 */
	expect_drop(f, len, NET_DROP_IP_VERSION);
	len = echo_request(f, 1, 1, 8);
	f[14] = 0x44;  /* IHL 4 */
	expect_drop(f, len, NET_DROP_IP_HDR_LEN);
	len = echo_request(f, 1, 1, 8);
	f[14] = 0x4f;  /* IHL 15: 60 bytes of header in a 36-byte packet */
	expect_drop(f, len, NET_DROP_IP_SHORT);
	len = echo_request(f, 1, 1, 8);
	put16(f + 16, (uint16_t)(len - 14 + 1));  /* total length beyond the frame */
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_IP_SHORT);
	len = echo_request(f, 1, 1, 8);
	f[14 + 8]--;  /* TTL changed, checksum not */
	expect_drop(f, len, NET_DROP_IP_CSUM);
	len = echo_request(f, 1, 1, 8);
	put16(f + 20, 0x2000);  /* more fragments */
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_IP_FRAGMENT);
	put16(f + 20, 0x0010);  /* a later fragment */
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_IP_FRAGMENT);
	len = echo_request(f, 1, 1, 8);
	put_be32(f + 30, IP4(10, 0, 0, 3));
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_IP_NOT_FOR_US);
	const uint32_t bad_src[] = { 0, IP4(255, 255, 255, 255), IP4(10, 0, 0, 255), IP4(224, 0, 0, 1), OUR_IP };
	for (size_t i = 0; i < sizeof(bad_src) / sizeof(bad_src[0]); i++) {
		len = echo_request(f, 1, 1, 8);
		put_be32(f + 26, bad_src[i]);
		fix_ip_csum(f);
		expect_drop(f, len, NET_DROP_IP_BAD_SRC);
	}
	len = echo_request(f, 1, 1, 8);
	f[14 + 9] = 6;  /* TCP */
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_IP_PROTO);
	eth0.ip = 0;
	len = echo_request(f, 1, 1, 8);
	expect_drop(f, len, NET_DROP_NO_ADDR);
}

static void padded_and_optioned_packets_are_accepted(void **state)
{
	uint8_t f[200], g[200];
	uint32_t len = echo_request(f, 1, 1, 0);

	(void)state;
	/* Ethernet padding after the IP packet. */
	memset(f + len, 0xee, 60 - len);
	inject(f, 60);
	net_poll();
	assert_int_equal(ntx, 1);
	assert_int_equal(total_drops(), 0);
	/* Four bytes of IP options (IHL 6) are skipped. */
	clear_tx();
	len = echo_request(f, 1, 2, 8);
	memcpy(g, f, 34);
	memset(g + 34, 1, 4);  /* NOPs */
	memcpy(g + 38, f + 34, len - 34);
	g[14] = 0x46;
	put16(g + 16, (uint16_t)(len - 14 + 4));
	fix_ip_csum(g);
	inject(g, len + 4);
	net_poll();
	assert_int_equal(ntx, 1);
	assert_int_equal(get16(txlog[0].data + 40), 2);
	assert_int_equal(total_drops(), 0);
}

static void udp_delivers_and_checks(void **state)
{
	uint8_t f[1600], payload[1472];
	struct udp_sock *s = udp_open(7, 2);
	struct udp_dgram d;
	uint32_t len;

	(void)state;
	assert_non_null(s);
	assert_null(udp_open(7, 0));  /* taken */
	for (unsigned i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i ^ 0x5a);
	inject(f, udp_frame(f, 1234, 7, payload, sizeof(payload)));
	assert_true(udp_recv(s, &d, 0));
	assert_int_equal(d.src, PEER_IP);
	assert_int_equal(d.sport, 1234);
	assert_int_equal(d.len, sizeof(payload));
	assert_memory_equal(d.data, payload, sizeof(payload));
	assert_false(udp_recv(s, &d, 0));

	len = udp_frame(f, 1234, 7, payload, 100);
	f[34 + 8 + 50] ^= 0x10;
	expect_drop(f, len, NET_DROP_UDP_CSUM);
	len = udp_frame(f, 1234, 8, payload, 100);
	expect_drop(f, len, NET_DROP_UDP_NO_PORT);
	len = udp_frame(f, 1234, 7, payload, 100);
	put16(f + 34 + 4, 109);  /* beyond the IP payload */
	expect_drop(f, len, NET_DROP_UDP_LEN);
	put16(f + 34 + 4, 7);
	expect_drop(f, len, NET_DROP_UDP_LEN);
	len = udp_frame(f, 1234, 7, payload, 0);
	put16(f + 16, 20 + 4);  /* an IP payload shorter than a UDP header */
	fix_ip_csum(f);
	expect_drop(f, len, NET_DROP_UDP_SHORT);

	/* Checksum 0: none, accepted and counted. */
	len = udp_frame(f, 1234, 7, payload, 10);
	put16(f + 34 + 6, 0);
	inject(f, len);
	assert_true(udp_recv(s, &d, 0));
	assert_int_equal(d.len, 10);
	assert_int_equal(net_stats.udp_no_csum, 1);

	/* A queue of two (the slot udp_recv handed out counts until the next
	 * call): the third is dropped. */
	assert_false(udp_recv(s, &d, 0));
	for (int i = 0; i < 3; i++)
		inject(f, udp_frame(f, 1234, 7, payload, 10));
	net_poll();
	assert_int_equal(net_stats.drops[NET_DROP_UDP_QUEUE_FULL], 1);
	assert_true(udp_recv(s, &d, 0));
	assert_true(udp_recv(s, &d, 0));
	assert_false(udp_recv(s, &d, 1000000));

	/* An endless stream of frames for another port does not hold a
	 * receiver past its timeout. */
	uint64_t t0 = now_ns;
	flood = true;
	flood_until = t0 + 1000000000ull;
	assert_false(udp_recv(s, &d, 5000000));
	flood = false;
	assert_true(now_ns - t0 >= 5000000);
	udp_close(s);
}

static void udp_sendto_builds_valid_frames(void **state)
{
	uint8_t data[1472], f[64];
	struct udp_sock *s = udp_open(0, 0);

	(void)state;
	assert_non_null(s);
	assert_true(udp_port(s) >= 49152);
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 13);
	/* Learn the peer first, as its request would teach us. */
	inject(f, arp_frame(f, 1, PEER_IP, OUR_IP));
	net_poll();
	clear_tx();
	static const uint32_t lens[] = { 0, 1, 17, 18, 19, 100, 1471, 1472 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint32_t len = lens[i];
		clear_tx();
		assert_int_equal(udp_sendto(s, PEER_IP, 9, data, len, 0), 0);
		assert_int_equal(ntx, 1);
		const uint8_t *r = txlog[0].data;
		assert_int_equal(txlog[0].len, MAX(60u, 42 + len));
		assert_memory_equal(r, peer_mac, 6);
		assert_int_equal(ref_csum(r + 14, 20, 0), 0);
		assert_int_equal(get16(r + 16), 28 + len);
		assert_int_equal(get16(r + 20), 0x4000);  /* DF */
		assert_int_equal(get16(r + 34), udp_port(s));
		assert_int_equal(get16(r + 36), 9);
		assert_int_equal(get16(r + 38), 8 + len);
		assert_int_not_equal(get16(r + 40), 0);
		assert_int_equal(ref_csum(r + 34, 8 + len, udp_pseudo(OUR_IP, PEER_IP, 8 + len)), 0);
		assert_memory_equal(r + 42, data, len);
	}
	clear_tx();
	assert_int_equal(udp_sendto(s, PEER_IP, 9, data, 1473, 0), -1);
	assert_int_equal(net_stats.drops[NET_DROP_TX_TOO_BIG], 1);
	assert_int_equal(udp_sendto(s, IP4(10, 1, 0, 1), 9, data, 10, 0), -1);
	assert_int_equal(net_stats.drops[NET_DROP_TX_NO_ROUTE], 1);
	/* NET_MORE leaves telling the device to later. */
	unsigned before = flushes;
	assert_int_equal(udp_sendto(s, PEER_IP, 9, data, 10, NET_MORE), 0);
	assert_int_equal(flushes, before);
	assert_int_equal(udp_max_payload(PEER_IP), 1472);
	udp_close(s);
}

/* Every prefix of valid frames, and random bytes: no read outside the frame
 * (ASan), and each frame either handled or dropped with a reason. */
static void truncated_and_random_frames(void **state)
{
	uint8_t frames[4][1600], f[1600];
	uint32_t lens[4];
	struct udp_sock *s = udp_open(7, 4096);

	(void)state;
	lens[0] = udp_frame(frames[0], 1, 7, "hello, world", 12);
	lens[1] = echo_request(frames[1], 1, 1, 40);
	lens[2] = arp_frame(frames[2], 1, PEER_IP, OUR_IP);
	lens[3] = udp_frame(frames[3], 1, 7, "", 0);
	for (unsigned k = 0; k < 4; k++) {
		for (uint32_t len = 0; len <= lens[k]; len++) {
			uint64_t drops = total_drops(), ok = net_stats.udp_received + net_stats.icmp_echo_replies_sent +
							      net_stats.arp_replies_sent;
			clear_tx();
			inject(frames[k], len);
			net_poll();
			uint64_t handled = net_stats.udp_received + net_stats.icmp_echo_replies_sent +
					   net_stats.arp_replies_sent - ok;
			if (total_drops() - drops + handled != 1)
				fail_msg("frame %u cut at %u: %lu drops, %lu handled", k, len,
					 (unsigned long)(total_drops() - drops), (unsigned long)handled);
			if (len < lens[k] && handled)
				fail_msg("frame %u cut at %u of %u was accepted", k, len, lens[k]);
		}
	}
	srand(7);
	for (int i = 0; i < 20000; i++) {
		uint32_t len = (uint32_t)rand() % 1515;
		for (uint32_t b = 0; b < len; b++)
			f[b] = (uint8_t)rand();
		/* Often a plausible header, so deeper layers see garbage too. */
		if (len >= 34 && i % 2) {
			memcpy(f, our_mac, 6);
			put16(f + 12, i % 4 == 1 ? 0x0800 : 0x0806);
			f[14] = 0x45;
			put_be32(f + 30, OUR_IP);
			if (i % 8 == 1)
				fix_ip_csum(f);
		}
		clear_tx();
		inject(f, len);
		net_poll();
		while (udp_recv(s, &(struct udp_dgram){ 0 }, 0))
			;
	}
	udp_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(checksum_matches_reference, setup, teardown),
		cmocka_unit_test_setup_teardown(parses_addresses, setup, teardown),
		cmocka_unit_test_setup_teardown(arp_request_for_us_is_answered, setup, teardown),
		cmocka_unit_test_setup_teardown(arp_malformed_and_foreign_are_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(arp_resolve_retries_then_gives_up, setup, teardown),
		cmocka_unit_test_setup_teardown(arp_resolve_takes_the_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(arp_entry_is_refreshed_in_use, setup, teardown),
		cmocka_unit_test_setup_teardown(echo_request_is_answered, setup, teardown),
		cmocka_unit_test_setup_teardown(echo_replies_reach_the_listener, setup, teardown),
		cmocka_unit_test_setup_teardown(icmp_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(ethernet_and_ip_drops, setup, teardown),
		cmocka_unit_test_setup_teardown(padded_and_optioned_packets_are_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(udp_delivers_and_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(udp_sendto_builds_valid_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(truncated_and_random_frames, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
