/* The network switch (src/host/net_switch.c) without KVM. Fake NICs record
 * the frames they are given and keep a zero-copy window made as
 * devices/virtio_net.c makes it (a memfd of FERRY_ZC_BAR_SIZE mapped twice:
 * the window, and ferry's view of its private memory); the tests play both
 * drivers through the rings of include/ferry/virtio_net.h. The switch's event
 * loop never runs here: the tests call its tick and step its clock. Covered:
 * forwarding and every drop, the cross-talk detector and the remapper (the
 * memory really is shared, and private again afterwards), unbinding by
 * handshake and forced, the leftover rule, stalls, the report; and, as root
 * in a network namespace of the test's own, the TAP port (src/host/tap.c)
 * both ways through the host's stack. */
#include "helpers.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ferry/virtio_net.h"
#include "host/eventloop.h"
#include "host/net_switch.h"
#include "host/tap.h"
#include "vmm/clock.h"
#include "vmm/config.h"
#include "vmm/log.h"

#define MAX_RX 32
#define ETHERTYPE_TEST 0x88b5 /* IEEE local experimental: nobody else's frames */

/* --- fake NICs ----------------------------------------------------------------- */

struct fake {
	struct net_port port;
	atomic_bool stopping;
	/* Frames delivered on queue pair 0 (the first MAX_RX). */
	unsigned nr_rx, deliver_calls;
	size_t rx_len[MAX_RX];
	uint8_t rx[MAX_RX][2048];
	enum net_drop refuse;  /* NET_DROP_MAX: take frames; else refuse them for this reason */
	uint16_t used_idx;     /* receive queue 0's used index (what rx_mark reports) */
	/* The channel table as the driver reads it (rebuilt by channels_changed,
	 * as virtio_net.c does). */
	struct ferry_zc_channel table[FERRY_ZC_CHANNELS];
	unsigned generation;
	unsigned resets[FERRY_ZC_CHANNELS];
	/* What virtio_net.c keeps per channel to see a stall. */
	uint32_t peer_cons[FERRY_ZC_CHANNELS];
	uint64_t last_progress_ns[FERRY_ZC_CHANNELS];
	/* The device's own pointer to its window (virtio_net.c keeps one too):
	 * the rings are read through it, not through the port's. */
	uint8_t *window;
};

static struct fake F[10];
static struct fake *const a = &F[0], *const b = &F[1], *const c = &F[2], *const d = &F[3];
static unsigned nr_fakes;
static struct net_switch *sw;
static struct eventloop *evl;
static struct net_config cfg;

static uint64_t now_ns;
static uint64_t test_clock(void)
{
	return now_ns;
}

static struct fake *of(struct net_port *p)
{
	return (struct fake *)p; /* port is the first member */
}

static uint32_t ld(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Channel c's ring headers: this side's (its transmit area) and the peer's
 * (its receive area), through the window as the guest sees it. */
static struct ferry_zc_ring *tx_ring(struct fake *f, unsigned ch)
{
	return (struct ferry_zc_ring *)(f->window + FERRY_ZC_TX_OFFSET(ch));
}

static struct ferry_zc_ring *rx_ring(struct fake *f, unsigned ch)
{
	return (struct ferry_zc_ring *)(f->window + FERRY_ZC_RX_OFFSET(ch));
}

static bool fake_deliver(struct net_port *p, const struct iovec *iov, int iovcnt, size_t len, enum net_drop *why)
{
	struct fake *f = of(p);
	f->deliver_calls++;
	if (f->refuse != NET_DROP_MAX) {
		*why = f->refuse;
		return false;
	}
	/* No cmocka asserts here: with a TAP this runs on the event loop's
	 * thread. A frame that does not fit is recorded as longer than it is
	 * (rx_len), which the tests' comparisons catch. */
	if (f->nr_rx < MAX_RX) {
		size_t off = 0;
		for (int i = 0; i < iovcnt; i++) {
			size_t k = iov[i].iov_len < sizeof(f->rx[0]) - off ? iov[i].iov_len : sizeof(f->rx[0]) - off;
			memcpy(f->rx[f->nr_rx] + off, iov[i].iov_base, k);
			off += iov[i].iov_len;
		}
		f->rx_len[f->nr_rx] = off == len ? len : (size_t)-1;
	}
	f->nr_rx++;
	f->used_idx++;
	return true;
}

static void fake_channels_changed(struct net_port *p)
{
	struct fake *f = of(p);
	for (unsigned ch = 0; ch < FERRY_ZC_CHANNELS; ch++) {
		struct net_channel *n = &p->chan[ch];
		memset(&f->table[ch], 0, sizeof(f->table[ch]));
		f->table[ch].state = n->state;
		f->table[ch].epoch = n->epoch;
		if (n->peer) {
			memcpy(f->table[ch].peer_mac, n->peer->mac, 6);
			f->table[ch].peer_vm_id = n->peer->vm_id;
		}
	}
	f->generation++;
}

/* The rules of virtio_net.c: bound, this side closed and its frames read;
 * unbound, the frames left in its receive area read. */
static bool fake_channel_idle(struct net_port *p, unsigned ch)
{
	struct fake *f = of(p);
	if (p->chan[ch].state == FERRY_ZC_UNBOUND)
		return ld(&rx_ring(f, ch)->prod) == ld(&tx_ring(f, ch)->cons);
	return ld(&tx_ring(f, ch)->closed) && ld(&tx_ring(f, ch)->prod) == ld(&rx_ring(f, ch)->cons);
}

static void fake_channel_reset(struct net_port *p, unsigned ch)
{
	struct fake *f = of(p);
	f->resets[ch]++;
	f->peer_cons[ch] = 0;
	f->last_progress_ns[ch] = net_switch_clock();
}

static bool fake_channel_service(struct net_port *p, unsigned ch)
{
	if (p->chan[ch].state == FERRY_ZC_DRAINING)
		net_channel_drained(p, ch);
	return false;
}

static bool fake_channel_stalled(struct net_port *p, unsigned ch, uint64_t now, uint64_t stall_ns)
{
	struct fake *f = of(p);
	uint32_t cons = ld(&rx_ring(f, ch)->cons), prod = ld(&tx_ring(f, ch)->prod);
	if (cons != f->peer_cons[ch]) {
		f->peer_cons[ch] = cons;
		f->last_progress_ns[ch] = now;
	}
	return prod - cons >= FERRY_ZC_RING_SLOTS && now - f->last_progress_ns[ch] > stall_ns;
}

static uint16_t fake_rx_mark(struct net_port *p)
{
	return of(p)->used_idx;
}

static const struct net_port_ops fake_ops = {
	.deliver = fake_deliver,
	.channels_changed = fake_channels_changed,
	.channel_idle = fake_channel_idle,
	.channel_reset = fake_channel_reset,
	.channel_service = fake_channel_service,
	.channel_stalled = fake_channel_stalled,
	.rx_mark = fake_rx_mark,
};

/* A NIC named `name` with MAC 02:00:00:00:00:<vm_id>; a zero-copy window
 * when the network offers the feature (as virtio_net.c), zc if its driver
 * took it. Attached, its driver not running yet. */
static void make_fake(struct fake *f, const char *name, uint32_t vm_id, bool zc)
{
	memset(f, 0, sizeof(*f));
	struct net_port *p = &f->port;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->vm_id = vm_id;
	memcpy(p->mac, (uint8_t[]){ 0x02, 0, 0, 0, 0, (uint8_t)vm_id }, 6);
	p->ops = &fake_ops;
	p->dev = f;
	p->vm_stopping = &f->stopping;
	p->zc_memfd = -1;
	f->refuse = NET_DROP_MAX;
	if (cfg.zero_copy) {
		p->zc_memfd = memfd_create(name, MFD_CLOEXEC);
		assert_true(p->zc_memfd >= 0);
		assert_int_equal(ftruncate(p->zc_memfd, (off_t)FERRY_ZC_BAR_SIZE), 0);
		void *w = mmap(NULL, FERRY_ZC_BAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->zc_memfd, 0);
		void *v = mmap(NULL, FERRY_ZC_BAR_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->zc_memfd, 0);
		assert_true(w != MAP_FAILED && v != MAP_FAILED);
		p->zc_hva = f->window = w;
		p->zc_private = v;
	}
	p->zc = zc;
	char err[256];
	if (net_switch_attach(sw, p, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	nr_fakes++;
}

static void set_up(struct fake *f, bool up)
{
	pthread_mutex_lock(&sw->lock);
	net_port_set_up(&f->port, up);
	pthread_mutex_unlock(&sw->lock);
}

/* The control socket's net-unbind. (Never assert under the switch's lock:
 * a failed assertion would leave it held for the teardown.) */
static unsigned unbind_all(struct fake *f)
{
	pthread_mutex_lock(&sw->lock);
	unsigned n = net_port_unbind_all(&f->port);
	pthread_mutex_unlock(&sw->lock);
	return n;
}

/* A network of `ports` NICs a, b, c, ... (VM ids 1, 2, ...), their drivers
 * with the feature if zc, all running unless bind_at_start (then the test
 * starts them in its own order). With a TAP, the event loop runs (it reads
 * the TAP); without, it never does. */
static int make_network_tap(bool zero_copy, bool bind_at_start, unsigned ports, bool zc, const char *tap)
{
	log_threshold = LOG_ERROR;
	now_ns = 1000ull * 1000000000ull;
	net_switch_clock = test_clock;
	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.name, sizeof(cfg.name), "lan0");
	cfg.mtu = 1500;
	cfg.zero_copy = zero_copy;
	cfg.bind_at_start = bind_at_start;
	if (tap) {
		snprintf(cfg.tap, sizeof(cfg.tap), "%s", tap);
		cfg.address = 0x0a580001; /* 10.88.0.1/24 */
		cfg.prefix_len = 24;
	}
	evl = evl_create();
	if (!evl || (tap && evl_start(evl) < 0))
		return -1;
	char err[256];
	sw = net_switch_create(&cfg, ports, evl, err, sizeof(err));
	if (!sw) {
		print_error("%s\n", err);
		return -1;
	}
	nr_fakes = 0;
	static const char *const names[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j" };
	for (unsigned i = 0; i < ports; i++)
		make_fake(&F[i], names[i], i + 1, zc);
	if (!bind_at_start)
		for (unsigned i = 0; i < ports; i++)
			set_up(&F[i], true);
	return 0;
}

static int make_network(bool zero_copy, bool bind_at_start, unsigned ports, bool zc)
{
	return make_network_tap(zero_copy, bind_at_start, ports, zc, NULL);
}

static int zc3(void **state)
{
	(void)state;
	return make_network(true, false, 3, true);
}

static int zc10(void **state)
{
	(void)state;
	return make_network(true, false, 10, true);
}

static int plain3(void **state)
{
	(void)state;
	return make_network(false, false, 3, false);
}

static int at_start4(void **state)
{
	(void)state;
	return make_network(true, true, 4, true);
}

static int teardown(void **state)
{
	(void)state;
	if (!sw) { /* a TAP test skipped */
		evl_destroy(evl);
		evl = NULL;
		return 0;
	}
	for (unsigned i = 0; i < nr_fakes; i++) {
		struct net_port *p = &F[i].port;
		pthread_mutex_lock(&sw->lock);
		net_switch_detach(p);
		pthread_mutex_unlock(&sw->lock);
		if (p->zc_hva) {
			munmap(p->zc_hva, FERRY_ZC_BAR_SIZE);
			munmap(p->zc_private, FERRY_ZC_BAR_SIZE);
			close(p->zc_memfd);
		}
	}
	nr_fakes = 0;
	net_switch_destroy(sw);
	sw = NULL;
	evl_destroy(evl);
	evl = NULL;
	net_switch_clock = clock_ns;
	return 0;
}

/* --- frames ---------------------------------------------------------------------- */

static const uint8_t BCAST[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t MCAST[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
static const uint8_t NOBODY[6] = { 0x02, 0, 0, 0, 0, 0x99 };

/* A frame of len bytes (len >= 12): destination, source, then our
 * ethertype and a pattern that differs per seed. */
static size_t frame(uint8_t *buf, const uint8_t *dst, const uint8_t *src, size_t len, uint8_t seed)
{
	memcpy(buf, dst, 6);
	memcpy(buf + 6, src, 6);
	for (size_t i = 12; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7);
	if (len >= 14) {
		buf[12] = ETHERTYPE_TEST >> 8;
		buf[13] = ETHERTYPE_TEST & 0xff;
	}
	return len;
}

static bool tx_iov(struct fake *from, const struct iovec *iov, int n, size_t len)
{
	pthread_mutex_lock(&sw->lock);
	bool r = net_switch_tx(&from->port, iov, n, len);
	pthread_mutex_unlock(&sw->lock);
	return r;
}

static bool tx(struct fake *from, const uint8_t *buf, size_t len)
{
	struct iovec iov = { (void *)buf, len };
	return tx_iov(from, &iov, 1, len);
}

/* A unicast frame from one fake to another. */
static bool send_to(struct fake *from, struct fake *to, uint8_t seed)
{
	uint8_t buf[100];
	return tx(from, buf, frame(buf, to->port.mac, from->port.mac, sizeof(buf), seed));
}

/* Frame i that f received is buf[0..n). */
static void assert_got(struct fake *f, unsigned i, const uint8_t *buf, size_t n)
{
	assert_true(i < f->nr_rx);
	assert_int_equal(f->rx_len[i], n);
	assert_memory_equal(f->rx[i], buf, n);
}

static unsigned long ctr(struct fake *f, atomic_ulong *field)
{
	(void)f;
	return atomic_load(field);
}
#define C(f, field) ctr(f, &(f)->port.ctr.field)
#define DROPS(f, why) ctr(f, &(f)->port.ctr.dropped[why])

static unsigned long drops_total(struct fake *f)
{
	unsigned long t = 0;
	for (int i = 0; i < NET_DROP_MAX; i++)
		t += DROPS(f, i);
	return t;
}

/* --- forwarding ------------------------------------------------------------------ */

static void unicast_reaches_its_owner_only(void **state)
{
	(void)state;
	uint8_t buf[100];
	size_t n = frame(buf, b->port.mac, a->port.mac, sizeof(buf), 1);
	assert_true(tx(a, buf, n));
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(b->rx_len[0], n);
	assert_got(b, 0, buf, n);
	assert_int_equal(a->nr_rx + c->nr_rx, 0);
	assert_int_equal(C(a, frames_tx), 1);
	assert_int_equal(C(a, frames_one_copy), 1);
	assert_int_equal(C(a, bytes_copied_by_host), n);
	assert_int_equal(C(b, frames_rx), 1);
	assert_int_equal(C(b, frames_tx) + C(c, frames_rx) + C(a, frames_rx), 0);

	/* The header split over several iovecs (as a chain of small
	 * descriptors): the addresses are still read right. */
	n = frame(buf, c->port.mac, a->port.mac, sizeof(buf), 2);
	struct iovec iov[4] = { { buf, 3 }, { buf + 3, 4 }, { buf + 7, 6 }, { buf + 13, n - 13 } };
	assert_true(tx_iov(a, iov, 4, n));
	assert_int_equal(c->nr_rx, 1);
	assert_got(c, 0, buf, n);
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(C(a, frames_one_copy), 2);
	assert_int_equal(drops_total(a) + drops_total(b) + drops_total(c), 0);
}

static void broadcast_and_multicast_flood_to_the_others(void **state)
{
	(void)state;
	uint8_t buf[64];
	size_t n = frame(buf, BCAST, a->port.mac, sizeof(buf), 3);
	assert_true(tx(a, buf, n));
	assert_int_equal(a->nr_rx, 0); /* never back to the sender */
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(c->nr_rx, 1);
	assert_got(b, 0, buf, n);
	assert_got(c, 0, buf, n);
	assert_int_equal(C(a, frames_one_copy), 2);
	assert_int_equal(C(a, bytes_copied_by_host), 2 * n);

	n = frame(buf, MCAST, b->port.mac, sizeof(buf), 4);
	assert_true(tx(b, buf, n));
	assert_int_equal(a->nr_rx, 1);
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(c->nr_rx, 2);
	assert_got(a, 0, buf, n);
	assert_int_equal(C(b, frames_one_copy), 2);

	/* A receiver that is down loses its copy; the others still get theirs. */
	set_up(c, false);
	n = frame(buf, BCAST, a->port.mac, sizeof(buf), 5);
	assert_true(tx(a, buf, n));
	assert_int_equal(b->nr_rx, 2);
	assert_int_equal(c->nr_rx, 2);
	assert_int_equal(DROPS(c, NET_DROP_DOWN), 1);
	assert_int_equal(C(a, frames_one_copy), 3);
	assert_int_equal(drops_total(a) + drops_total(b), 0);
}

static void frame_to_itself_is_dropped(void **state)
{
	(void)state;
	uint8_t buf[64];
	assert_false(tx(a, buf, frame(buf, a->port.mac, a->port.mac, sizeof(buf), 6)));
	assert_int_equal(a->deliver_calls + b->deliver_calls + c->deliver_calls, 0);
	assert_int_equal(DROPS(a, NET_DROP_NO_ROUTE), 1);
	assert_int_equal(drops_total(a), 1);
	assert_int_equal(C(a, frames_tx), 1);
	assert_int_equal(C(a, frames_one_copy), 0);
}

static void unknown_unicast_without_tap_has_no_route(void **state)
{
	(void)state;
	uint8_t buf[64];
	assert_false(tx(b, buf, frame(buf, NOBODY, b->port.mac, sizeof(buf), 7)));
	assert_int_equal(a->deliver_calls + b->deliver_calls + c->deliver_calls, 0);
	assert_int_equal(DROPS(b, NET_DROP_NO_ROUTE), 1);
	assert_int_equal(drops_total(b), 1);
	assert_int_equal(drops_total(a) + drops_total(c), 0);
}

static void runts_and_oversize_frames_are_dropped(void **state)
{
	(void)state;
	static uint8_t buf[2000];
	/* 13 bytes: no whole Ethernet header. */
	assert_false(tx(a, buf, frame(buf, b->port.mac, a->port.mac, 13, 8)));
	assert_int_equal(DROPS(a, NET_DROP_RUNT), 1);
	assert_int_equal(b->deliver_calls, 0);
	/* 14 bytes, a header alone, is a frame. */
	assert_true(tx(a, buf, frame(buf, b->port.mac, a->port.mac, 14, 8)));
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(b->rx_len[0], 14);
	/* MTU 1500: 1514 bytes pass, 1515 do not. */
	assert_true(tx(a, buf, frame(buf, b->port.mac, a->port.mac, 1514, 9)));
	assert_int_equal(b->nr_rx, 2);
	assert_int_equal(b->rx_len[1], 1514);
	assert_got(b, 1, buf, 1514);
	assert_false(tx(a, buf, frame(buf, b->port.mac, a->port.mac, 1515, 9)));
	assert_int_equal(DROPS(a, NET_DROP_OVERSIZE), 1);
	assert_int_equal(b->nr_rx, 2);
	assert_int_equal(drops_total(a), 2);
	assert_int_equal(drops_total(b), 0);
	assert_int_equal(C(a, frames_tx), 4);
	assert_int_equal(C(a, frames_one_copy), 2);
}

static void spoofed_source_is_dropped(void **state)
{
	(void)state;
	uint8_t buf[64];
	/* Another VM's address, then one nobody has, unicast and broadcast. */
	assert_false(tx(a, buf, frame(buf, c->port.mac, b->port.mac, sizeof(buf), 10)));
	assert_false(tx(a, buf, frame(buf, c->port.mac, NOBODY, sizeof(buf), 10)));
	assert_false(tx(a, buf, frame(buf, BCAST, b->port.mac, sizeof(buf), 10)));
	assert_int_equal(DROPS(a, NET_DROP_SPOOFED), 3);
	assert_int_equal(drops_total(a), 3);
	assert_int_equal(a->deliver_calls + b->deliver_calls + c->deliver_calls, 0);
	assert_int_equal(drops_total(b) + drops_total(c), 0);
}

static void receiver_without_buffers_loses_its_own_frames(void **state)
{
	(void)state;
	b->refuse = NET_DROP_NO_BUFFER;
	assert_true(send_to(a, b, 11)); /* switched to b; b dropped it */
	assert_int_equal(b->deliver_calls, 1);
	assert_int_equal(b->nr_rx, 0);
	assert_int_equal(DROPS(b, NET_DROP_NO_BUFFER), 1);
	assert_int_equal(drops_total(a), 0); /* not the sender's doing */
	assert_int_equal(C(a, frames_one_copy), 0);
	assert_int_equal(C(a, bytes_copied_by_host), 0);
	assert_int_equal(C(b, frames_rx), 0);

	/* The reason is the receiver's to give. */
	b->refuse = NET_DROP_SMALL_BUFFER;
	assert_true(send_to(a, b, 12));
	assert_int_equal(DROPS(b, NET_DROP_SMALL_BUFFER), 1);

	/* A broadcast still reaches the others. */
	b->refuse = NET_DROP_NO_BUFFER;
	uint8_t buf[64];
	assert_true(tx(a, buf, frame(buf, BCAST, a->port.mac, sizeof(buf), 13)));
	assert_int_equal(c->nr_rx, 1);
	assert_int_equal(DROPS(b, NET_DROP_NO_BUFFER), 2);
	assert_int_equal(C(a, frames_one_copy), 1);

	/* Buffers again: frames again. */
	b->refuse = NET_DROP_MAX;
	assert_true(send_to(a, b, 14));
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(drops_total(b), 3);
	assert_int_equal(drops_total(a) + drops_total(c), 0);
}

static void receiver_down_or_stopping_gets_nothing(void **state)
{
	(void)state;
	set_up(b, false);
	assert_true(send_to(a, b, 15));
	assert_int_equal(b->deliver_calls, 0); /* the device is not even asked */
	assert_int_equal(DROPS(b, NET_DROP_DOWN), 1);
	/* A VM that is stopping receives nothing, though its driver is up. */
	atomic_store(&c->stopping, true);
	assert_true(send_to(a, c, 16));
	assert_int_equal(c->deliver_calls, 0);
	assert_int_equal(DROPS(c, NET_DROP_DOWN), 1);
	assert_int_equal(drops_total(a), 0);
	assert_int_equal(C(a, frames_one_copy), 0);
	set_up(b, true);
	assert_true(send_to(a, b, 17));
	assert_int_equal(b->nr_rx, 1);
}

/* --- the driver's side of a channel (include/ferry/virtio_net.h) ----------------- */

/* Publishes a frame on channel ch: slot, then prod + 1 (release). */
static void zc_publish(struct fake *f, unsigned ch, const uint8_t *fr, uint32_t len)
{
	struct ferry_zc_ring *r = tx_ring(f, ch);
	uint32_t prod = ld(&r->prod);
	uint8_t *slot = FERRY_ZC_SLOT(r, prod);
	memcpy(slot, &len, 4);
	memcpy(slot + 8, fr, len);
	__atomic_store_n(&r->prod, prod + 1, __ATOMIC_RELEASE);
}

/* Reads the next frame of channel ch's receive area into out; its length,
 * or 0 if there is none. */
static uint32_t zc_consume(struct fake *f, unsigned ch, uint8_t *out)
{
	struct ferry_zc_ring *mine = tx_ring(f, ch), *peer = rx_ring(f, ch);
	uint32_t cons = ld(&mine->cons);
	if (ld(&peer->prod) == cons)
		return 0;
	const uint8_t *slot = FERRY_ZC_SLOT(peer, cons);
	uint32_t len;
	memcpy(&len, slot, 4);
	assert_true(len <= FERRY_ZC_FRAME_MAX);
	memcpy(out, slot + 8, len);
	__atomic_store_n(&mine->cons, cons + 1, __ATOMIC_RELEASE);
	return len;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Channel ch of f bound to channel pc of peer, in the switch and in the
 * table its driver reads. */
static void assert_bound(struct fake *f, unsigned ch, struct fake *peer, unsigned pc, uint8_t state)
{
	assert_int_equal(f->port.chan[ch].state, state);
	unsigned got_pc = 99;
	assert_ptr_equal(net_channel_peer(&f->port, ch, &got_pc), &peer->port);
	assert_int_equal(got_pc, pc);
	assert_int_equal(f->table[ch].state, state);
	assert_memory_equal(f->table[ch].peer_mac, peer->port.mac, 6);
	assert_int_equal(f->table[ch].peer_vm_id, peer->port.vm_id);
	assert_int_equal(f->table[ch].epoch, f->port.chan[ch].epoch);
}

static void assert_unbound(struct fake *f, unsigned ch)
{
	unsigned pc;
	assert_int_equal(f->port.chan[ch].state, FERRY_ZC_UNBOUND);
	assert_null(net_channel_peer(&f->port, ch, &pc));
	assert_int_equal(f->table[ch].state, FERRY_ZC_UNBOUND);
	assert_true(all_zero(f->table[ch].peer_mac, 6));
}

static unsigned bound_channels(struct fake *f)
{
	unsigned n = 0;
	for (unsigned ch = 0; ch < FERRY_ZC_CHANNELS; ch++)
		n += f->port.chan[ch].state != FERRY_ZC_UNBOUND;
	return n;
}

static double num(const cJSON *o, const char *k1, const char *k2);

/* --- detection and binding ------------------------------------------------------- */

static void unicast_between_zero_copy_nics_binds_a_channel(void **state)
{
	(void)state;
	uint8_t buf[100];
	size_t n = frame(buf, b->port.mac, a->port.mac, sizeof(buf), 20);
	assert_true(tx(a, buf, n));
	/* Bound: a's channel 0 to b's channel 0, both drivers told once. */
	assert_int_equal(C(a, crosstalk_detected), 1);
	assert_int_equal(C(b, crosstalk_detected), 0);
	/* Each NIC's two areas went onto shared memory. */
	assert_int_equal(C(a, remaps), 2);
	assert_int_equal(C(b, remaps), 2);
	assert_int_equal(a->generation, 1);
	assert_int_equal(b->generation, 1);
	assert_int_equal(a->resets[0], 1);
	assert_int_equal(b->resets[0], 1);
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	assert_bound(b, 0, a, 0, FERRY_ZC_BOUND);
	assert_int_equal(a->table[0].epoch, 1);
	assert_int_equal(bound_channels(a), 1);
	assert_int_equal(bound_channels(b), 1);
	assert_int_equal(bound_channels(c), 0);
	assert_int_equal(c->generation, 0);
	unsigned pc;
	assert_null(net_channel_peer(&a->port, 1, &pc));
	assert_null(net_channel_peer(&a->port, FERRY_ZC_CHANNELS, &pc));
	/* The frame that revealed the pair still went by copy. */
	assert_int_equal(b->nr_rx, 1);
	assert_got(b, 0, buf, n);
	assert_int_equal(C(a, frames_one_copy), 1);

	/* Later frames on queue pair 0, either way, bind nothing more (and
	 * still arrive). */
	assert_true(send_to(a, b, 21));
	assert_true(send_to(b, a, 22));
	assert_int_equal(b->nr_rx, 2);
	assert_int_equal(a->nr_rx, 1);
	assert_int_equal(C(a, crosstalk_detected) + C(b, crosstalk_detected), 1);
	assert_int_equal(C(a, remaps) + C(b, remaps), 4);
	assert_int_equal(a->generation + b->generation, 2);
	assert_int_equal(bound_channels(a) + bound_channels(b), 2);

	/* Another pair gets the next channel of the NIC already bound. */
	assert_true(send_to(c, a, 23));
	assert_int_equal(C(c, crosstalk_detected), 1);
	assert_bound(c, 0, a, 1, FERRY_ZC_BOUND);
	assert_bound(a, 1, c, 0, FERRY_ZC_BOUND);
	assert_int_equal(a->generation, 2);
	assert_int_equal(drops_total(a) + drops_total(b) + drops_total(c), 0);
}

static void bound_areas_are_shared_memory(void **state)
{
	(void)state;
	assert_true(send_to(a, b, 24));
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	/* Bytes a writes at its transmit area appear at b's receive area, and
	 * the other way round, over the whole area. */
	uint8_t *a_tx = a->port.zc_hva + FERRY_ZC_TX_OFFSET(0), *b_rx = b->port.zc_hva + FERRY_ZC_RX_OFFSET(0);
	uint8_t *b_tx = b->port.zc_hva + FERRY_ZC_TX_OFFSET(0), *a_rx = a->port.zc_hva + FERRY_ZC_RX_OFFSET(0);
	const uint64_t offs[] = { 100, FERRY_ZC_SLOTS_OFFSET, FERRY_ZC_AREA_SIZE / 2 + 3, FERRY_ZC_AREA_SIZE - 1 };
	for (unsigned i = 0; i < 4; i++) {
		a_tx[offs[i]] = (uint8_t)(0xa0 + i);
		b_tx[offs[i]] = (uint8_t)(0xb0 + i);
		assert_int_equal(b_rx[offs[i]], 0xa0 + i);
		assert_int_equal(a_rx[offs[i]], 0xb0 + i);
		/* Neither NIC's private memory saw it. */
		assert_int_equal(a->port.zc_private[FERRY_ZC_TX_OFFSET(0) + offs[i]], 0);
		assert_int_equal(b->port.zc_private[FERRY_ZC_RX_OFFSET(0) + offs[i]], 0);
	}
	a_tx[100] = 0;
	b_tx[100] = 0;
	/* Other channels, and other NICs, stay private. */
	a->port.zc_hva[FERRY_ZC_TX_OFFSET(1) + 100] = 0x11;
	assert_int_equal(b->port.zc_hva[FERRY_ZC_RX_OFFSET(1) + 100], 0);
	assert_int_equal(a->port.zc_private[FERRY_ZC_TX_OFFSET(1) + 100], 0x11);
	assert_true(all_zero(c->port.zc_hva + FERRY_ZC_RX_OFFSET(0), 4096));

	/* The rings, as two drivers use them: no frame passes through ferry. */
	uint8_t fr[3][600], got[FERRY_ZC_FRAME_MAX];
	for (unsigned i = 0; i < 3; i++)
		zc_publish(a, 0, fr[i], (uint32_t)frame(fr[i], b->port.mac, a->port.mac, sizeof(fr[i]), (uint8_t)(30 + i)));
	zc_publish(b, 0, fr[0], 77);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(zc_consume(b, 0, got), sizeof(fr[i]));
		assert_memory_equal(got, fr[i], sizeof(fr[i]));
	}
	assert_int_equal(zc_consume(b, 0, got), 0);
	assert_int_equal(zc_consume(a, 0, got), 77);
	assert_memory_equal(got, fr[0], 77);
	/* Each side sees the other's consumer index. */
	assert_int_equal(ld(&rx_ring(a, 0)->cons), 3);
	assert_int_equal(ld(&rx_ring(b, 0)->cons), 1);
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(C(a, frames_one_copy), 1);
}

static void broadcast_and_non_zero_copy_peers_bind_nothing(void **state)
{
	(void)state;
	uint8_t buf[64];
	assert_true(tx(a, buf, frame(buf, BCAST, a->port.mac, sizeof(buf), 40)));
	assert_true(tx(a, buf, frame(buf, MCAST, a->port.mac, sizeof(buf), 41)));
	assert_int_equal(bound_channels(a) + bound_channels(b) + bound_channels(c), 0);
	/* c's driver did not take the feature: the pair stays on the copy
	 * path, whichever way the frame goes. */
	c->port.zc = false;
	assert_true(send_to(a, c, 42));
	assert_true(send_to(c, a, 43));
	/* A receiver whose driver is down is not bound either. */
	set_up(b, false);
	assert_true(send_to(a, b, 44));
	assert_int_equal(bound_channels(a) + bound_channels(b) + bound_channels(c), 0);
	assert_int_equal(C(a, crosstalk_detected) + C(b, crosstalk_detected) + C(c, crosstalk_detected), 0);
	assert_int_equal(C(a, remaps) + C(b, remaps) + C(c, remaps), 0);
	assert_int_equal(a->generation + b->generation + c->generation, 0);
	assert_int_equal(c->nr_rx, 3);
	assert_int_equal(a->nr_rx, 1);
	assert_int_equal(DROPS(b, NET_DROP_DOWN), 1);
}

static void network_without_zero_copy_binds_nothing(void **state)
{
	(void)state;
	/* Drivers that would take the feature, on a network that does not
	 * offer it (no windows, no pool). */
	a->port.zc = b->port.zc = true;
	assert_int_equal(sw->pool_fd, -1);
	assert_true(send_to(a, b, 45));
	assert_true(send_to(b, a, 46));
	assert_int_equal(bound_channels(a) + bound_channels(b), 0);
	assert_int_equal(C(a, crosstalk_detected) + C(a, remaps) + C(b, remaps), 0);
	assert_int_equal(a->nr_rx + b->nr_rx, 2);
	/* The tick has nothing to do either. */
	net_switch_tick(sw);
	assert_int_equal(a->generation + b->generation, 0);
}

static void bind_at_start_binds_when_drivers_start(void **state)
{
	(void)state;
	/* d's driver does not take the feature. */
	d->port.zc = false;
	set_up(a, true); /* nobody else runs yet */
	assert_int_equal(bound_channels(a), 0);
	set_up(b, true); /* b is bound to a before it sends anything */
	assert_int_equal(C(b, crosstalk_detected), 1);
	assert_bound(b, 0, a, 0, FERRY_ZC_BOUND);
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	set_up(d, true);
	assert_int_equal(bound_channels(d), 0);
	set_up(c, true); /* to every running peer that can */
	assert_int_equal(C(c, crosstalk_detected), 2);
	assert_bound(c, 0, a, 1, FERRY_ZC_BOUND);
	assert_bound(c, 1, b, 1, FERRY_ZC_BOUND);
	assert_int_equal(bound_channels(a), 2);
	assert_int_equal(bound_channels(b), 2);
	assert_int_equal(bound_channels(c), 2);
	assert_int_equal(C(a, remaps) + C(b, remaps) + C(c, remaps), 12);
	/* Traffic adds nothing. */
	assert_true(send_to(a, b, 47));
	assert_true(send_to(c, b, 48));
	assert_int_equal(bound_channels(a) + bound_channels(b) + bound_channels(c), 6);
	assert_int_equal(C(a, crosstalk_detected), 0);
	/* A driver that restarts is unbound, then bound again. */
	set_up(b, false);
	assert_int_equal(bound_channels(b), 0);
	assert_unbound(a, 0);
	assert_unbound(c, 1);
	set_up(b, true);
	assert_int_equal(C(b, crosstalk_detected), 3);
	assert_bound(b, 0, a, 0, FERRY_ZC_BOUND);
	assert_bound(b, 1, c, 1, FERRY_ZC_BOUND);
	assert_int_equal(a->port.chan[0].epoch, 2);
}

static void a_nic_with_every_channel_bound_stays_on_the_copy_path(void **state)
{
	(void)state;
	/* a sends to eight peers: its eight channels. */
	for (unsigned i = 1; i <= FERRY_ZC_CHANNELS; i++) {
		assert_true(send_to(a, &F[i], (uint8_t)i));
		assert_bound(a, i - 1, &F[i], 0, FERRY_ZC_BOUND);
	}
	assert_int_equal(C(a, crosstalk_detected), FERRY_ZC_CHANNELS);
	/* The ninth pair stays on the copy path: nothing bound, the frame
	 * delivered, none of the ninth's channels used. */
	struct fake *j = &F[9];
	assert_true(send_to(a, j, 50));
	assert_true(send_to(j, a, 51));
	assert_int_equal(C(a, crosstalk_detected), FERRY_ZC_CHANNELS);
	assert_int_equal(C(j, crosstalk_detected), 0);
	assert_int_equal(bound_channels(j), 0);
	assert_int_equal(j->generation, 0);
	assert_int_equal(j->nr_rx, 1);
	assert_int_equal(a->nr_rx, 1);
	/* A channel freed (its peer's driver went away) serves the ninth. */
	set_up(&F[3], false);
	assert_unbound(a, 2);
	assert_true(send_to(j, a, 52));
	assert_int_equal(C(j, crosstalk_detected), 1);
	assert_bound(a, 2, j, 0, FERRY_ZC_BOUND);
	assert_int_equal(bound_channels(a), FERRY_ZC_CHANNELS);
}

/* A mapping that fails (here: b's window made unmappable for a moment, a
 * misaligned address) binds nothing: the driver is not told, the frame goes
 * by copy, a's area that was already mapped is private again, and areas
 * whose window could not be put back are retired, never handed to another
 * pair. */
static void a_failed_mapping_binds_nothing(void **state)
{
	(void)state;
	uint8_t *b_hva = b->port.zc_hva;
	b->port.zc_hva = b_hva + 1;
	assert_true(send_to(a, b, 56));
	b->port.zc_hva = b_hva;
	assert_int_equal(sw->map_failures, 1);
	assert_int_equal(bound_channels(a) + bound_channels(b), 0);
	assert_int_equal(C(a, crosstalk_detected), 0);
	assert_int_equal(a->generation + b->generation, 0);
	assert_int_equal(a->resets[0] + b->resets[0], 0);
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(C(a, frames_one_copy), 1);
	/* a's transmit area (mapped onto the pool before b's failed) is its
	 * own memory again; so is b's window. */
	a->port.zc_hva[FERRY_ZC_TX_OFFSET(0) + 8] = 0x77;
	assert_int_equal(a->port.zc_private[FERRY_ZC_TX_OFFSET(0) + 8], 0x77);
	b->port.zc_hva[FERRY_ZC_RX_OFFSET(0) + 8] = 0x78;
	assert_int_equal(b->port.zc_private[FERRY_ZC_RX_OFFSET(0) + 8], 0x78);
	uint8_t byte;
	assert_int_equal(pread(sw->pool_fd, &byte, 1, 8), 1);
	assert_int_equal(byte, 0);
	/* b's could not be put back: both areas are out of use for good. */
	assert_int_equal(sw->area_used[0], 1);
	assert_int_equal(sw->area_used[1], 1);
	cJSON *r = net_switch_report(sw);
	assert_int_equal(num(r, "map_failures", NULL), 1);
	cJSON_Delete(r);
	/* The next frame binds, on other areas. */
	a->port.zc_hva[FERRY_ZC_TX_OFFSET(0) + 8] = 0;
	b->port.zc_hva[FERRY_ZC_RX_OFFSET(0) + 8] = 0;
	assert_true(send_to(a, b, 57));
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	assert_int_equal(a->port.chan[0].area[0], 2);
	assert_int_equal(a->port.chan[0].area[1], 3);
	assert_int_equal(C(a, crosstalk_detected), 1);
}

/* --- unbinding ---------------------------------------------------------------------- */

static uint8_t ring_frames[4][300];

/* Binds a and b (a's channel 0, b's channel 0) and puts traffic in flight:
 * a publishes 3 frames, b reads the first; b publishes 1, a reads none. */
static void bind_ab_with_traffic(void)
{
	assert_true(send_to(a, b, 60));
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	for (unsigned i = 0; i < 4; i++)
		frame(ring_frames[i], i < 3 ? b->port.mac : a->port.mac, i < 3 ? a->port.mac : b->port.mac,
		      sizeof(ring_frames[i]), (uint8_t)(61 + i));
	for (unsigned i = 0; i < 3; i++)
		zc_publish(a, 0, ring_frames[i], sizeof(ring_frames[i]));
	zc_publish(b, 0, ring_frames[3], sizeof(ring_frames[3]));
	uint8_t got[FERRY_ZC_FRAME_MAX];
	assert_int_equal(zc_consume(b, 0, got), sizeof(ring_frames[0]));
	/* The devices' receive queues have moved on (where the marks point). */
	a->used_idx = 7;
	b->used_idx = 300;
}

/* The pool's area `i` reads zeroes (punched out). */
static void assert_pool_area_clear(uint32_t i)
{
	static uint8_t buf[FERRY_ZC_AREA_SIZE];
	assert_int_equal(pread(sw->pool_fd, buf, sizeof(buf), (off_t)(i * FERRY_ZC_AREA_SIZE)), sizeof(buf));
	assert_true(all_zero(buf, sizeof(buf)));
	assert_int_equal(sw->area_used[i], 0);
}

/* After an unbinding of a's channel 0 and b's channel 0 with the traffic of
 * bind_ab_with_traffic: each area is private again and holds what the
 * shared one held; each receive area carries its mark. */
static void assert_unbound_with_contents(uint32_t area_ab, uint32_t area_ba)
{
	assert_unbound(a, 0);
	assert_unbound(b, 0);
	assert_int_equal(C(a, unbinds), 1);
	assert_int_equal(C(b, unbinds), 1);
	/* Bound: 2 each; back: 2 each. */
	assert_int_equal(C(a, remaps), 4);
	assert_int_equal(C(b, remaps), 4);
	/* a's transmit area (now its own) and b's receive area (now its own)
	 * both hold a's three frames; b read one. */
	assert_int_equal(ld(&tx_ring(a, 0)->prod), 3);
	assert_int_equal(ld(&rx_ring(b, 0)->prod), 3);
	assert_int_equal(ld(&tx_ring(b, 0)->cons), 1);
	assert_int_equal(ld(&rx_ring(a, 0)->cons), 1);
	assert_int_equal(ld(&tx_ring(b, 0)->prod), 1);
	assert_int_equal(ld(&rx_ring(a, 0)->prod), 1);
	/* The marks: where each receiver's unread frames stand among queue
	 * pair 0's. */
	assert_int_equal(ld(&rx_ring(b, 0)->unbound_mark), FERRY_ZC_MARK_VALID | 300);
	assert_int_equal(ld(&rx_ring(a, 0)->unbound_mark), FERRY_ZC_MARK_VALID | 7);
	/* The windows show private memory again: the private view and the
	 * window are one memory, and the peer no longer sees a write. */
	for (unsigned k = 0; k < 2; k++) {
		struct fake *f = k ? b : a;
		assert_memory_equal(f->port.zc_hva + FERRY_ZC_TX_OFFSET(0), f->port.zc_private + FERRY_ZC_TX_OFFSET(0),
				    FERRY_ZC_AREA_SIZE);
		assert_memory_equal(f->port.zc_hva + FERRY_ZC_RX_OFFSET(0), f->port.zc_private + FERRY_ZC_RX_OFFSET(0),
				    FERRY_ZC_AREA_SIZE);
	}
	a->port.zc_hva[FERRY_ZC_TX_OFFSET(0) + 40] = 0x5a;
	assert_int_equal(a->port.zc_private[FERRY_ZC_TX_OFFSET(0) + 40], 0x5a);
	assert_int_equal(b->port.zc_hva[FERRY_ZC_RX_OFFSET(0) + 40], 0);
	a->port.zc_hva[FERRY_ZC_TX_OFFSET(0) + 40] = 0;
	/* The unread frames are there to read, in order, from private memory. */
	uint8_t got[FERRY_ZC_FRAME_MAX];
	struct ferry_zc_ring *r = rx_ring(b, 0);
	for (uint32_t i = 1; i < 3; i++) {
		uint32_t len;
		memcpy(&len, FERRY_ZC_SLOT(r, i), 4);
		assert_int_equal(len, sizeof(ring_frames[i]));
		assert_memory_equal(FERRY_ZC_SLOT(r, i) + 8, ring_frames[i], len);
	}
	memcpy(got, FERRY_ZC_SLOT(rx_ring(a, 0), 0) + 8, sizeof(ring_frames[3]));
	assert_memory_equal(got, ring_frames[3], sizeof(ring_frames[3]));
	/* The shared areas went back to the pool, punched out. */
	assert_pool_area_clear(area_ab);
	assert_pool_area_clear(area_ba);
}

static void unbinding_by_handshake(void **state)
{
	(void)state;
	bind_ab_with_traffic();
	uint32_t area_ab = a->port.chan[0].area[0], area_ba = a->port.chan[0].area[1];
	assert_int_equal(b->port.chan[0].area[1], area_ab);
	assert_int_equal(b->port.chan[0].area[0], area_ba);
	now_ns += 12345;
	assert_int_equal(unbind_all(a), 1);
	/* Draining: both told, nothing unmapped yet. */
	assert_bound(a, 0, b, 0, FERRY_ZC_DRAINING);
	assert_bound(b, 0, a, 0, FERRY_ZC_DRAINING);
	assert_int_equal(a->generation, 2);
	assert_int_equal(b->generation, 2);
	assert_int_equal(a->port.chan[0].drain_since_ns, now_ns);
	assert_int_equal(C(a, remaps) + C(b, remaps), 4);
	assert_int_equal(C(a, unbinds) + C(b, unbinds), 0);
	/* Asking again changes nothing: it is draining already. */
	assert_int_equal(unbind_all(a), 0);
	assert_int_equal(unbind_all(b), 0);
	assert_int_equal(a->generation + b->generation, 4);

	/* Not drained until both closed and both rings are read. */
	uint8_t got[FERRY_ZC_FRAME_MAX];
	struct {
		const char *what;
		struct fake *side;
	} steps[] = { { "nobody closed", NULL }, { "a closed", a }, { "b closed, a's frames unread", b } };
	for (unsigned s = 0; s < 3; s++) {
		if (steps[s].side)
			__atomic_store_n(&tx_ring(steps[s].side, 0)->closed, 1, __ATOMIC_RELEASE);
		pthread_mutex_lock(&sw->lock);
		net_channel_drained(&a->port, 0);
		net_channel_drained(&b->port, 0);
		pthread_mutex_unlock(&sw->lock);
		if (a->port.chan[0].state != FERRY_ZC_DRAINING)
			fail_msg("unbound too early: %s", steps[s].what);
	}
	/* b reads a's last two frames; b's frame to a is still unread. */
	assert_int_equal(zc_consume(b, 0, got), sizeof(ring_frames[1]));
	assert_int_equal(zc_consume(b, 0, got), sizeof(ring_frames[2]));
	pthread_mutex_lock(&sw->lock);
	net_channel_drained(&a->port, 0);
	pthread_mutex_unlock(&sw->lock);
	assert_int_equal(a->port.chan[0].state, FERRY_ZC_DRAINING);
	/* a reads it: drained, and unbound (from either side). */
	assert_int_equal(zc_consume(a, 0, got), sizeof(ring_frames[3]));
	assert_memory_equal(got, ring_frames[3], sizeof(ring_frames[3]));
	pthread_mutex_lock(&sw->lock);
	net_channel_drained(&b->port, 0);
	pthread_mutex_unlock(&sw->lock);
	assert_unbound(a, 0);
	assert_unbound(b, 0);
	assert_int_equal(a->generation, 3);
	assert_int_equal(b->generation, 3);
	assert_int_equal(a->resets[0], 2);
	assert_int_equal(b->resets[0], 2);
	assert_int_equal(a->port.chan[0].unbound_ns, now_ns);
	assert_int_equal(C(a, stalls) + C(b, stalls), 0);
	assert_int_equal(C(a, unbinds), 1);
	assert_int_equal(C(b, unbinds), 1);
	assert_int_equal(C(a, remaps), 4);
	assert_int_equal(C(b, remaps), 4);
	assert_int_equal(ld(&rx_ring(b, 0)->prod), 3);
	assert_int_equal(ld(&tx_ring(a, 0)->closed), 1);
	assert_int_equal(ld(&rx_ring(b, 0)->closed), 1);
	assert_int_equal(ld(&rx_ring(b, 0)->unbound_mark), FERRY_ZC_MARK_VALID | 300);
	assert_int_equal(ld(&rx_ring(a, 0)->unbound_mark), FERRY_ZC_MARK_VALID | 7);
	assert_pool_area_clear(area_ab);
	assert_pool_area_clear(area_ba);

	/* Everything was read: the next frame binds channel 0 again, on the
	 * same (reused) areas, and both drivers find zeroed rings. */
	assert_true(send_to(b, a, 65));
	assert_bound(b, 0, a, 0, FERRY_ZC_BOUND);
	assert_int_equal(a->port.chan[0].epoch, 2);
	assert_int_equal(b->port.chan[0].area[0], area_ab);
	assert_int_equal(b->port.chan[0].area[1], area_ba);
	for (unsigned k = 0; k < 2; k++) {
		struct fake *f = k ? b : a;
		assert_true(all_zero(f->port.zc_hva + FERRY_ZC_TX_OFFSET(0), FERRY_ZC_AREA_SIZE));
		assert_true(all_zero(f->port.zc_hva + FERRY_ZC_RX_OFFSET(0), FERRY_ZC_AREA_SIZE));
	}
}

static void the_tick_finishes_a_drained_unbinding(void **state)
{
	(void)state;
	bind_ab_with_traffic();
	assert_int_equal(unbind_all(b), 1);
	net_switch_tick(sw);
	assert_int_equal(a->port.chan[0].state, FERRY_ZC_DRAINING);
	uint8_t got[FERRY_ZC_FRAME_MAX];
	while (zc_consume(b, 0, got))
		;
	while (zc_consume(a, 0, got))
		;
	tx_ring(a, 0)->closed = 1;
	net_switch_tick(sw);
	assert_int_equal(a->port.chan[0].state, FERRY_ZC_DRAINING);
	tx_ring(b, 0)->closed = 1;
	net_switch_tick(sw);
	assert_unbound(a, 0);
	assert_unbound(b, 0);
	assert_int_equal(C(a, unbinds), 1);
	assert_int_equal(C(b, unbinds), 1);
	assert_int_equal(C(a, stalls) + C(b, stalls), 0);
}

static void a_channel_that_does_not_drain_is_unbound_after_a_second(void **state)
{
	(void)state;
	bind_ab_with_traffic();
	uint32_t area_ab = a->port.chan[0].area[0], area_ba = a->port.chan[0].area[1];
	assert_int_equal(unbind_all(a), 1);
	uint64_t t0 = now_ns;
	now_ns = t0 + NET_DRAIN_NS;
	net_switch_tick(sw);
	assert_int_equal(a->port.chan[0].state, FERRY_ZC_DRAINING);
	now_ns = t0 + NET_DRAIN_NS + 1;
	net_switch_tick(sw);
	assert_int_equal(C(a, stalls), 1); /* counted once, on the first NIC the tick looks at */
	assert_int_equal(C(b, stalls), 0);
	assert_unbound_with_contents(area_ab, area_ba);
}

static void forced_unbinding_keeps_the_frames(void **state)
{
	(void)state;
	bind_ab_with_traffic();
	uint32_t area_ab = a->port.chan[0].area[0], area_ba = a->port.chan[0].area[1];
	/* b's driver goes away: no handshake. */
	set_up(b, false);
	assert_int_equal(a->generation, 2);
	assert_int_equal(b->generation, 2);
	assert_unbound_with_contents(area_ab, area_ba);
	assert_int_equal(C(a, stalls) + C(b, stalls), 0);
	/* A channel unbound for its rules' sake, the same way. */
	set_up(b, true);
	uint8_t got[FERRY_ZC_FRAME_MAX];
	while (zc_consume(b, 0, got))
		;
	while (zc_consume(a, 0, got))
		;
	assert_true(send_to(a, b, 66));
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	zc_publish(a, 0, ring_frames[0], sizeof(ring_frames[0]));
	pthread_mutex_lock(&sw->lock);
	net_channel_unbind(&b->port, 0);
	net_channel_unbind(&b->port, FERRY_ZC_CHANNELS); /* out of range: ignored */
	pthread_mutex_unlock(&sw->lock);
	assert_unbound(a, 0);
	assert_unbound(b, 0);
	assert_int_equal(ld(&rx_ring(b, 0)->prod), 1);
	assert_int_equal(zc_consume(b, 0, got), sizeof(ring_frames[0]));
	assert_memory_equal(got, ring_frames[0], sizeof(ring_frames[0]));
	assert_int_equal(C(a, unbinds), 2);
	assert_int_equal(C(b, unbinds), 2);
}

static void leftovers_keep_a_channel_until_read(void **state)
{
	(void)state;
	bind_ab_with_traffic();
	set_up(b, false);
	set_up(b, true);
	/* a has 1 unread frame on its channel 0, b has 2 on its channel 0:
	 * neither is bound again; the next binding takes channel 1. */
	assert_true(send_to(a, b, 67));
	assert_bound(a, 1, b, 1, FERRY_ZC_BOUND);
	assert_unbound(a, 0);
	assert_unbound(b, 0);
	assert_int_equal(ld(&rx_ring(b, 0)->prod), 3); /* untouched */
	/* That binding ends; a reads its leftover, b does not. */
	set_up(a, false);
	set_up(a, true);
	uint8_t got[FERRY_ZC_FRAME_MAX];
	assert_int_equal(zc_consume(a, 0, got), sizeof(ring_frames[3]));
	assert_int_equal(zc_consume(a, 0, got), 0);
	assert_true(send_to(b, a, 68));
	assert_bound(a, 0, b, 1, FERRY_ZC_BOUND);
	assert_unbound(b, 0);
	set_up(a, false);
	set_up(a, true);
	/* b reads its two: its channel 0 is free again. */
	assert_int_equal(zc_consume(b, 0, got), sizeof(ring_frames[1]));
	assert_memory_equal(got, ring_frames[1], sizeof(ring_frames[1]));
	assert_int_equal(zc_consume(b, 0, got), sizeof(ring_frames[2]));
	assert_int_equal(zc_consume(b, 0, got), 0);
	assert_true(send_to(a, b, 69));
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	assert_true(all_zero(b->port.zc_hva + FERRY_ZC_RX_OFFSET(0), FERRY_ZC_AREA_SIZE));
	assert_int_equal(C(a, crosstalk_detected) + C(b, crosstalk_detected), 4);
}

static void leftovers_expire_after_a_second(void **state)
{
	(void)state;
	bind_ab_with_traffic();
	uint8_t got[FERRY_ZC_FRAME_MAX];
	assert_int_equal(zc_consume(a, 0, got), sizeof(ring_frames[3]));
	uint64_t t0 = now_ns;
	set_up(b, false);
	assert_int_equal(b->port.chan[0].unbound_ns, t0);
	set_up(b, true);
	/* At exactly LEFTOVER_NS b's unread frames still hold its channel 0. */
	now_ns = t0 + NET_LEFTOVER_NS;
	assert_true(send_to(a, b, 70));
	assert_bound(a, 0, b, 1, FERRY_ZC_BOUND);
	set_up(a, false);
	set_up(a, true);
	/* A nanosecond later they do not: channel 0 is taken, and its driver
	 * sees a fresh, zeroed ring where the leftovers were. */
	now_ns = t0 + NET_LEFTOVER_NS + 1;
	assert_true(send_to(a, b, 71));
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	assert_true(all_zero(b->port.zc_hva + FERRY_ZC_RX_OFFSET(0), FERRY_ZC_AREA_SIZE));
	assert_true(all_zero(b->port.zc_hva + FERRY_ZC_TX_OFFSET(0), FERRY_ZC_AREA_SIZE));
	assert_int_equal(b->port.chan[0].epoch, 2);
	assert_int_equal(b->table[0].epoch, 2);
}

/* --- stalls ------------------------------------------------------------------------- */

static void fill_ring(struct fake *f, unsigned ch, unsigned frames)
{
	uint8_t fr[64];
	frame(fr, b->port.mac, a->port.mac, sizeof(fr), 80);
	for (unsigned i = 0; i < frames; i++)
		zc_publish(f, ch, fr, sizeof(fr));
}

static void a_full_ring_with_no_progress_is_unbound(void **state)
{
	(void)state;
	uint64_t t0 = now_ns;
	assert_true(send_to(a, b, 81));
	assert_bound(a, 0, b, 0, FERRY_ZC_BOUND);
	fill_ring(a, 0, FERRY_ZC_RING_SLOTS);
	net_switch_tick(sw);
	now_ns = t0 + NET_STALL_NS;
	net_switch_tick(sw);
	assert_int_equal(a->port.chan[0].state, FERRY_ZC_BOUND);
	now_ns = t0 + NET_STALL_NS + 1;
	net_switch_tick(sw);
	assert_unbound(a, 0);
	assert_unbound(b, 0);
	assert_int_equal(C(a, stalls), 1); /* the sender's binding ended for its peer's sake */
	assert_int_equal(C(b, stalls), 0);
	assert_int_equal(C(a, unbinds), 1);
	assert_int_equal(C(b, unbinds), 1);
	/* b's unread frames stay in its receive area, marked. */
	assert_int_equal(ld(&rx_ring(b, 0)->prod), FERRY_ZC_RING_SLOTS);
	assert_true(ld(&rx_ring(b, 0)->unbound_mark) & FERRY_ZC_MARK_VALID);
}

static void a_slow_or_lazy_reader_keeps_its_channel(void **state)
{
	(void)state;
	uint64_t t0 = now_ns;
	assert_true(send_to(a, b, 82));
	/* Full, but the reader makes progress now and then. */
	fill_ring(a, 0, FERRY_ZC_RING_SLOTS);
	uint8_t got[FERRY_ZC_FRAME_MAX];
	for (unsigned round = 1; round <= 4; round++) {
		now_ns = t0 + round * NET_STALL_NS;
		assert_int_equal(zc_consume(b, 0, got), 64);
		fill_ring(a, 0, 1);
		net_switch_tick(sw);
		assert_int_equal(a->port.chan[0].state, FERRY_ZC_BOUND);
	}
	/* Not full: a reader may take its time. */
	assert_int_equal(zc_consume(b, 0, got), 64);
	now_ns += 100 * NET_STALL_NS;
	net_switch_tick(sw);
	assert_int_equal(a->port.chan[0].state, FERRY_ZC_BOUND);
	/* Full again, and no progress: now it ends. */
	fill_ring(a, 0, 1);
	now_ns += NET_STALL_NS + 1;
	net_switch_tick(sw);
	assert_unbound(a, 0);
	assert_int_equal(C(a, stalls), 1);
}

static void a_stopping_vm_loses_its_channels_at_the_tick(void **state)
{
	(void)state;
	assert_true(send_to(a, b, 83));
	assert_true(send_to(c, b, 84));
	assert_int_equal(bound_channels(b), 2);
	atomic_store(&b->stopping, true);
	net_switch_tick(sw);
	assert_false(b->port.up);
	assert_int_equal(bound_channels(a) + bound_channels(b) + bound_channels(c), 0);
	assert_int_equal(C(b, unbinds), 2);
	assert_int_equal(C(a, stalls) + C(b, stalls) + C(c, stalls), 0);
}

static void detaching_a_nic_unbinds_it(void **state)
{
	(void)state;
	assert_true(send_to(a, b, 85));
	pthread_mutex_lock(&sw->lock);
	net_switch_detach(&b->port);
	pthread_mutex_unlock(&sw->lock);
	assert_unbound(a, 0);
	assert_null(b->port.sw);
	/* b's MAC is nobody's now. */
	assert_false(send_to(a, b, 86));
	assert_int_equal(DROPS(a, NET_DROP_NO_ROUTE), 1);
}

/* --- the report --------------------------------------------------------------------- */

static const cJSON *port_json(const cJSON *r, const char *vm)
{
	const cJSON *p;
	cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(r, "ports")) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "vm");
		if (cJSON_IsString(n) && !strcmp(n->valuestring, vm))
			return p;
	}
	fail_msg("no port %s in the report", vm);
	return NULL;
}

static double num(const cJSON *o, const char *k1, const char *k2)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k1);
	if (k2)
		v = cJSON_GetObjectItemCaseSensitive(v, k2);
	if (!cJSON_IsNumber(v))
		fail_msg("no number %s%s%s in the report", k1, k2 ? "." : "", k2 ? k2 : "");
	return v->valuedouble;
}

static void the_report_has_ports_channels_and_drops(void **state)
{
	(void)state;
	assert_true(send_to(a, b, 90));
	assert_true(send_to(b, a, 91));
	uint8_t buf[20];
	assert_false(tx(a, buf, frame(buf, b->port.mac, a->port.mac, 10, 92)));
	c->refuse = NET_DROP_NO_BUFFER;
	assert_true(send_to(a, c, 93));
	unbind_all(c);
	set_up(c, false);
	c->port.zc = false;

	cJSON *r = net_switch_report(sw);
	char *text = cJSON_Print(r);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(r, "name")->valuestring, "lan0");
	assert_int_equal(num(r, "mtu", NULL), 1500);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "zero_copy")));
	assert_int_equal(num(r, "map_failures", NULL), 0);
	assert_null(cJSON_GetObjectItemCaseSensitive(r, "tap"));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "ports")), 3);

	const cJSON *pa = port_json(r, "a"), *pb = port_json(r, "b"), *pc = port_json(r, "c");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(pa, "mac")->valuestring, "02:00:00:00:00:01");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pa, "up")));
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pa, "zero_copy")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pc, "up")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(pc, "zero_copy")));
	/* a: channel 0 to b, bound. c's binding to a ended when c went down. */
	const cJSON *chans = cJSON_GetObjectItemCaseSensitive(pa, "channels");
	assert_int_equal(cJSON_GetArraySize(chans), 1);
	const cJSON *ch = cJSON_GetArrayItem(chans, 0);
	assert_int_equal(num(ch, "channel", NULL), 0);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ch, "peer")->valuestring, "b");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ch, "state")->valuestring, "bound");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(pc, "channels")), 0);
	/* Each NIC's counters, drops by reason. */
	assert_int_equal(num(pa, "frames_tx", NULL), 3);
	assert_int_equal(num(pa, "frames_one_copy", NULL), 1);
	assert_int_equal(num(pa, "crosstalk_detected", NULL), 2);
	assert_int_equal(num(pa, "unbinds", NULL), 1);
	assert_int_equal(num(pa, "dropped", "runt"), 1);
	assert_int_equal(num(pa, "dropped", "total"), 1);
	assert_int_equal(num(pb, "frames_rx", NULL), 1);
	assert_int_equal(num(pb, "dropped", "total"), 0);
	assert_int_equal(num(pc, "dropped", "no_buffer"), 1);
	assert_int_equal(num(pc, "dropped", "total"), 1);
	for (int i = 0; i < NET_DROP_MAX; i++)
		num(pa, "dropped", net_drop_name(i));
	cJSON_Delete(r);
	free(text);

	/* Draining shows as such. */
	unbind_all(a);
	r = net_switch_report(sw);
	ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(port_json(r, "b"), "channels"), 0);
	assert_non_null(ch);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ch, "peer")->valuestring, "a");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(ch, "state")->valuestring, "draining");
	cJSON_Delete(r);
	assert_string_equal(net_drop_name(NET_DROP_SPOOFED), "spoofed_source");
	assert_string_equal(net_drop_name(NET_DROP_MAX), "?");
}

/* --- the TAP port (root, in a network namespace of this process's own) ----------- */

#define TAP_NAME "fnt0"

/* Moves this process (its one thread: the event loop starts later) into a
 * new network namespace, once: the TAPs and bridges made here exist only
 * there and go with the process. IPv6 is off there, so the kernel sends
 * nothing of its own through the TAP and every frame counted is a test's. */
static bool in_own_netns(void)
{
	static int done = -1;
	if (done >= 0)
		return done;
	done = 0;
	if (geteuid() != 0)
		return false;
	if (unshare(CLONE_NEWNET) < 0) {
		print_error("unshare(CLONE_NEWNET): %s\n", strerror(errno));
		return false;
	}
	const char *const knobs[] = { "/proc/sys/net/ipv6/conf/default/disable_ipv6",
				      "/proc/sys/net/ipv6/conf/all/disable_ipv6" };
	for (unsigned i = 0; i < 2; i++) {
		int fd = open(knobs[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			continue; /* no IPv6 at all */
		if (fd < 0 || write(fd, "1", 1) != 1) {
			print_error("%s: %s\n", knobs[i], strerror(errno));
			if (fd >= 0)
				close(fd);
			return false;
		}
		close(fd);
	}
	done = 1;
	return true;
}

/* Three NICs without the feature and a TAP, 10.88.0.1/24, MTU 1500. Without
 * root the tests skip (TAPs and namespaces need it); as root, a TAP that
 * cannot be made fails the setup. */
static int tap3(void **state)
{
	(void)state;
	sw = NULL;
	if (!in_own_netns())
		return geteuid() == 0 ? -1 : 0;
	return make_network_tap(false, false, 3, false, TAP_NAME);
}

static void need_tap(void)
{
	if (!sw)
		skip(); /* not root: no namespace, no TAP */
}

#define WAIT_FOR(cond)                                                              \
	do {                                                                        \
		bool ok_ = false;                                                   \
		for (int i_ = 0; i_ < 10000 && !ok_; i_++) {                        \
			pthread_mutex_lock(&sw->lock);                              \
			ok_ = (cond);                                               \
			pthread_mutex_unlock(&sw->lock);                            \
			if (!ok_)                                                   \
				usleep(1000);                                       \
		}                                                                   \
		if (!ok_)                                                           \
			fail_msg("timed out (10 s) waiting for %s", #cond);         \
	} while (0)

static unsigned long tapc(atomic_ulong *field)
{
	return atomic_load(field);
}
#define TAPC(field) tapc(&sw->tap_ctr.field)

static int ifreq_ioctl(unsigned long req, struct ifreq *ifr, const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	snprintf(ifr->ifr_name, sizeof(ifr->ifr_name), "%s", name);
	int r = ioctl(s, req, ifr);
	int e = errno;
	close(s);
	errno = e;
	return r;
}

static void tap_mac(uint8_t *mac)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	assert_int_equal(ifreq_ioctl(SIOCGIFHWADDR, &ifr, TAP_NAME), 0);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
}

/* A packet socket on the TAP's host side: what it sends leaves through the
 * interface (ferry reads it from the TAP); what ferry writes to the TAP
 * arrives on it. */
static int host_socket(void)
{
	int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	assert_true(s >= 0);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = (int)if_nametoindex(TAP_NAME) };
	assert_true(sll.sll_ifindex > 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return s;
}

static void host_send(int s, const uint8_t *buf, size_t len)
{
	if (send(s, buf, len, 0) != (ssize_t)len)
		fail_msg("sending %zu bytes into the TAP: %s", len, strerror(errno));
}

/* The next frame the host received from the TAP (its own sends skipped);
 * its length, *type the packet type (PACKET_HOST, _BROADCAST, ...). */
static size_t host_recv(int s, uint8_t *buf, size_t size, int *type)
{
	for (;;) {
		struct pollfd pfd = { .fd = s, .events = POLLIN };
		if (poll(&pfd, 1, 10000) != 1)
			fail_msg("no frame from the TAP within 10 s");
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(s, buf, size, 0, (struct sockaddr *)&from, &fl);
		assert_true(n >= 0);
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		*type = from.sll_pkttype;
		return (size_t)n;
	}
}

static void tap_is_made_configured_and_reported(void **state)
{
	(void)state;
	need_tap();
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	assert_int_equal(ifreq_ioctl(SIOCGIFFLAGS, &ifr, TAP_NAME), 0);
	assert_true(ifr.ifr_flags & IFF_UP);
	assert_int_equal(ifreq_ioctl(SIOCGIFMTU, &ifr, TAP_NAME), 0);
	assert_int_equal(ifr.ifr_mtu, 1500);
	assert_int_equal(ifreq_ioctl(SIOCGIFADDR, &ifr, TAP_NAME), 0);
	assert_int_equal(ntohl(((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr), 0x0a580001);
	assert_int_equal(ifreq_ioctl(SIOCGIFNETMASK, &ifr, TAP_NAME), 0);
	assert_int_equal(ntohl(((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr.s_addr), 0xffffff00);
	assert_string_equal(tap_name(sw->tap), TAP_NAME);
	assert_true(fcntl(tap_fd(sw->tap), F_GETFL) & O_NONBLOCK);
	/* Nothing waiting: 0, not an error. */
	uint8_t buf[64];
	assert_int_equal(tap_recv(sw->tap, buf, sizeof(buf)), 0);

	cJSON *r = net_switch_report(sw);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, "tap");
	assert_non_null(t);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring, TAP_NAME);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "up")));
	assert_int_equal(num(t, "frames_tx", NULL), 0);
	assert_int_equal(num(t, "dropped", "total"), 0);
	cJSON_Delete(r);
}

static void frames_from_the_host_go_by_mac(void **state)
{
	(void)state;
	need_tap();
	set_up(c, false);
	int s = host_socket();
	uint8_t host[6];
	tap_mac(host);
	static uint8_t f[6][1600];
	size_t n[6];
	n[0] = frame(f[0], a->port.mac, host, 100, 1);  /* to a */
	n[1] = frame(f[1], BCAST, host, 60, 2);         /* to a and b (c is down) */
	n[2] = frame(f[2], NOBODY, host, 60, 3);        /* nobody's: dropped */
	n[3] = frame(f[3], a->port.mac, host, 1515, 4); /* over the network's MTU: dropped */
	n[4] = frame(f[4], MCAST, host, 80, 5);         /* to a and b */
	n[5] = frame(f[5], b->port.mac, host, 1514, 6); /* the largest that passes */
	/* The host's side may send more than the network takes. */
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_mtu = 1600;
	assert_int_equal(ifreq_ioctl(SIOCSIFMTU, &ifr, TAP_NAME), 0);
	for (unsigned i = 0; i < 6; i++)
		host_send(s, f[i], n[i]);
	WAIT_FOR(TAPC(frames_tx) == 6);
	assert_int_equal(a->nr_rx, 3);
	assert_got(a, 0, f[0], n[0]);
	assert_got(a, 1, f[1], n[1]);
	assert_got(a, 2, f[4], n[4]);
	assert_int_equal(b->nr_rx, 3);
	assert_got(b, 0, f[1], n[1]);
	assert_got(b, 1, f[4], n[4]);
	assert_got(b, 2, f[5], n[5]);
	assert_int_equal(c->deliver_calls, 0);
	assert_int_equal(DROPS(c, NET_DROP_DOWN), 2);
	assert_int_equal(TAPC(frames_one_copy), 6);
	assert_int_equal(TAPC(bytes_copied_by_host), n[0] + 2 * n[1] + 2 * n[4] + n[5]);
	assert_int_equal(TAPC(dropped[NET_DROP_NO_ROUTE]), 1);
	assert_int_equal(TAPC(dropped[NET_DROP_OVERSIZE]), 1);
	assert_int_equal(TAPC(frames_rx), 0);
	assert_int_equal(C(a, frames_rx), 3);
	assert_int_equal(C(a, frames_tx) + C(a, frames_one_copy) + drops_total(a) + drops_total(b), 0);
	close(s);
}

static void frames_to_the_host_leave_through_the_tap(void **state)
{
	(void)state;
	need_tap();
	int s = host_socket();
	uint8_t host[6], buf[2048];
	tap_mac(host);
	int type;
	/* To the host's MAC, and to a MAC nobody on the network has: both out
	 * through the TAP, unchanged. */
	uint8_t f1[200], f2[90], f3[70];
	size_t n1 = frame(f1, host, a->port.mac, sizeof(f1), 7), n2 = frame(f2, NOBODY, a->port.mac, sizeof(f2), 8);
	assert_true(tx(a, f1, n1));
	assert_int_equal(host_recv(s, buf, sizeof(buf), &type), n1);
	assert_memory_equal(buf, f1, n1);
	assert_int_equal(type, PACKET_HOST);
	assert_true(tx(a, f2, n2));
	assert_int_equal(host_recv(s, buf, sizeof(buf), &type), n2);
	assert_memory_equal(buf, f2, n2);
	assert_int_equal(type, PACKET_OTHERHOST);
	assert_int_equal(C(a, frames_external), 2);
	assert_int_equal(C(a, bytes_copied_by_host), n1 + n2);
	assert_int_equal(C(a, frames_one_copy), 0);
	/* A broadcast: the other NICs and the host. */
	size_t n3 = frame(f3, BCAST, b->port.mac, sizeof(f3), 9);
	assert_true(tx(b, f3, n3));
	assert_int_equal(host_recv(s, buf, sizeof(buf), &type), n3);
	assert_memory_equal(buf, f3, n3);
	assert_int_equal(type, PACKET_BROADCAST);
	assert_got(a, 0, f3, n3);
	assert_got(c, 0, f3, n3);
	assert_int_equal(C(b, frames_external), 1);
	assert_int_equal(C(b, frames_one_copy), 2);
	assert_int_equal(C(b, bytes_copied_by_host), 3 * n3);
	assert_int_equal(TAPC(frames_rx), 3);
	assert_int_equal(TAPC(dropped[NET_DROP_TAP]), 0);
	/* The host sent nothing back. */
	assert_int_equal(TAPC(frames_tx), 0);
	close(s);
}

/* An ARP request from a NIC, answered by the host's stack through the TAP:
 * both directions and the TAP's address, end to end. */
static void the_host_answers_arp(void **state)
{
	(void)state;
	need_tap();
	uint8_t req[42], host[6];
	tap_mac(host);
	memcpy(req, BCAST, 6);
	memcpy(req + 6, a->port.mac, 6);
	static const uint8_t arp[] = { 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1 }; /* Ethernet/IPv4, request */
	static const uint8_t reply[] = { 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2 };
	static const uint8_t ip_a[] = { 10, 88, 0, 2 }, ip_host[] = { 10, 88, 0, 1 };
	memcpy(req + 12, arp, sizeof(arp));
	memcpy(req + 22, a->port.mac, 6);
	memcpy(req + 28, ip_a, 4); /* sender */
	memset(req + 32, 0, 6);
	memcpy(req + 38, ip_host, 4); /* who has the TAP's address */
	assert_true(tx(a, req, sizeof(req)));
	WAIT_FOR(a->nr_rx == 1);
	assert_true(a->rx_len[0] >= 42);
	const uint8_t *r = a->rx[0];
	assert_memory_equal(r, a->port.mac, 6);
	assert_memory_equal(r + 6, host, 6);
	assert_memory_equal(r + 12, reply, sizeof(reply));
	assert_memory_equal(r + 22, host, 6);
	assert_memory_equal(r + 28, ip_host, 4);
	assert_memory_equal(r + 32, a->port.mac, 6);
	assert_memory_equal(r + 38, ip_a, 4);
	/* The request also reached the other NICs; the reply only a. */
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(c->nr_rx, 1);
	assert_int_equal(TAPC(frames_tx), 1);
	assert_int_equal(TAPC(frames_rx), 1);
}

static void a_tap_that_cannot_be_made_or_bridged(void **state)
{
	(void)state;
	need_tap();
	char err[256];
	/* Its name is taken (by this network's TAP). */
	assert_null(tap_open(TAP_NAME, 0, 0, 1500, err, sizeof(err)));
	expect_contains(err, "tap " TAP_NAME ": cannot create it");
	expect_contains(err, "in use");
	/* A bridge that does not exist: the network is not made, and its TAP
	 * is gone with it. */
	struct net_config bad = cfg;
	snprintf(bad.name, sizeof(bad.name), "lan1");
	snprintf(bad.tap, sizeof(bad.tap), "fnt1");
	snprintf(bad.bridge, sizeof(bad.bridge), "nobr0");
	bad.address = 0;
	assert_null(net_switch_create(&bad, 0, evl, err, sizeof(err)));
	expect_contains(err, "tap fnt1: cannot join bridge nobr0");
	assert_int_equal(if_nametoindex("fnt1"), 0);
	/* One that exists: the TAP joins it. */
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	assert_int_equal(ioctl(s, SIOCBRADDBR, "fbr0"), 0);
	snprintf(bad.bridge, sizeof(bad.bridge), "fbr0");
	struct net_switch *ok = net_switch_create(&bad, 0, evl, err, sizeof(err));
	if (!ok)
		fail_msg("%s", err);
	char *argv[] = { "ip", "-o", "link", "show", "fnt1", NULL };
	struct cmd_result r = run_cmd(argv, 10);
	assert_int_equal(r.status, 0);
	expect_contains(r.out, "master fbr0");
	cmd_result_free(&r);
	net_switch_destroy(ok);
	assert_int_equal(if_nametoindex("fnt1"), 0);
	assert_int_equal(ioctl(s, SIOCBRDELBR, "fbr0"), 0);
	close(s);
}

static void a_tap_that_fails_at_run_time(void **state)
{
	(void)state;
	need_tap();
	/* The interface is deleted under ferry: reported once, no longer
	 * watched, and the network carries on without an external port. */
	char *argv[] = { "ip", "link", "del", TAP_NAME, NULL };
	struct cmd_result r = run_cmd(argv, 10);
	if (r.status != 0)
		fail_msg("ip link del %s: %s", TAP_NAME, r.err);
	cmd_result_free(&r);
	WAIT_FOR(sw->tap_handler == NULL && sw->tap_dead);
	assert_int_equal(TAPC(dropped[NET_DROP_TAP]), 0); /* no frame was lost by that */
	/* Frames for the outside are dropped and counted, on the TAP and on
	 * the sender; the NICs still reach each other. */
	uint8_t buf[64];
	assert_true(tx(a, buf, frame(buf, NOBODY, a->port.mac, sizeof(buf), 10)));
	assert_true(tx(a, buf, frame(buf, BCAST, a->port.mac, sizeof(buf), 11)));
	assert_int_equal(TAPC(dropped[NET_DROP_TAP]), 2);
	assert_int_equal(DROPS(a, NET_DROP_TAP), 2);
	assert_int_equal(C(a, frames_external), 0);
	assert_int_equal(b->nr_rx, 1);
	assert_int_equal(c->nr_rx, 1);
	assert_true(send_to(a, b, 12));
	assert_int_equal(b->nr_rx, 2);
	cJSON *rep = net_switch_report(sw);
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(rep, "tap");
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "up")));
	assert_int_equal(num(t, "dropped", "tap"), 2);
	assert_int_equal(num(port_json(rep, "a"), "dropped", "tap"), 2);
	cJSON_Delete(rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(unicast_reaches_its_owner_only, plain3, teardown),
		cmocka_unit_test_setup_teardown(broadcast_and_multicast_flood_to_the_others, plain3, teardown),
		cmocka_unit_test_setup_teardown(frame_to_itself_is_dropped, plain3, teardown),
		cmocka_unit_test_setup_teardown(unknown_unicast_without_tap_has_no_route, plain3, teardown),
		cmocka_unit_test_setup_teardown(runts_and_oversize_frames_are_dropped, plain3, teardown),
		cmocka_unit_test_setup_teardown(spoofed_source_is_dropped, plain3, teardown),
		cmocka_unit_test_setup_teardown(receiver_without_buffers_loses_its_own_frames, plain3, teardown),
		cmocka_unit_test_setup_teardown(receiver_down_or_stopping_gets_nothing, plain3, teardown),
		cmocka_unit_test_setup_teardown(unicast_between_zero_copy_nics_binds_a_channel, zc3, teardown),
		cmocka_unit_test_setup_teardown(bound_areas_are_shared_memory, zc3, teardown),
		cmocka_unit_test_setup_teardown(broadcast_and_non_zero_copy_peers_bind_nothing, zc3, teardown),
		cmocka_unit_test_setup_teardown(network_without_zero_copy_binds_nothing, plain3, teardown),
		cmocka_unit_test_setup_teardown(bind_at_start_binds_when_drivers_start, at_start4, teardown),
		cmocka_unit_test_setup_teardown(a_nic_with_every_channel_bound_stays_on_the_copy_path, zc10, teardown),
		cmocka_unit_test_setup_teardown(a_failed_mapping_binds_nothing, zc3, teardown),
		cmocka_unit_test_setup_teardown(unbinding_by_handshake, zc3, teardown),
		cmocka_unit_test_setup_teardown(the_tick_finishes_a_drained_unbinding, zc3, teardown),
		cmocka_unit_test_setup_teardown(a_channel_that_does_not_drain_is_unbound_after_a_second, zc3, teardown),
		cmocka_unit_test_setup_teardown(forced_unbinding_keeps_the_frames, zc3, teardown),
		cmocka_unit_test_setup_teardown(leftovers_keep_a_channel_until_read, zc3, teardown),
		cmocka_unit_test_setup_teardown(leftovers_expire_after_a_second, zc3, teardown),
		cmocka_unit_test_setup_teardown(a_full_ring_with_no_progress_is_unbound, zc3, teardown),
		cmocka_unit_test_setup_teardown(a_slow_or_lazy_reader_keeps_its_channel, zc3, teardown),
		cmocka_unit_test_setup_teardown(a_stopping_vm_loses_its_channels_at_the_tick, zc3, teardown),
		cmocka_unit_test_setup_teardown(detaching_a_nic_unbinds_it, zc3, teardown),
		cmocka_unit_test_setup_teardown(the_report_has_ports_channels_and_drops, zc3, teardown),
		cmocka_unit_test_setup_teardown(tap_is_made_configured_and_reported, tap3, teardown),
		cmocka_unit_test_setup_teardown(frames_from_the_host_go_by_mac, tap3, teardown),
		cmocka_unit_test_setup_teardown(frames_to_the_host_leave_through_the_tap, tap3, teardown),
		cmocka_unit_test_setup_teardown(the_host_answers_arp, tap3, teardown),
		cmocka_unit_test_setup_teardown(a_tap_that_cannot_be_made_or_bridged, tap3, teardown),
		cmocka_unit_test_setup_teardown(a_tap_that_fails_at_run_time, tap3, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
