#include "host/net_switch.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "host/eventloop.h"
#include "host/tap.h"
#include "vmm/clock.h"
#include "vmm/config.h"
#include "vmm/events.h"
#include "vmm/vmm.h"

#define ETH_HLEN 14
#define TAP_BURST 64            /* frames read from the TAP per wake-up */
#define TAP_FRAME_MAX 65536
#define TICK_NS (20 * 1000000ull)   /* counting, draining and stall checks */

uint64_t (*net_switch_clock)(void) = clock_ns;

static const char *const drop_names[NET_DROP_MAX] = {
	[NET_DROP_RUNT] = "runt", [NET_DROP_OVERSIZE] = "oversize", [NET_DROP_SPOOFED] = "spoofed_source",
	[NET_DROP_BAD_HEADER] = "bad_header", [NET_DROP_NO_ROUTE] = "no_route", [NET_DROP_NO_BUFFER] = "no_buffer",
	[NET_DROP_SMALL_BUFFER] = "small_buffer", [NET_DROP_DOWN] = "receiver_down", [NET_DROP_TAP] = "tap",
	[NET_DROP_ZC_PROTOCOL] = "zc_protocol",
};

const char *net_drop_name(enum net_drop d)
{
	return d < NET_DROP_MAX ? drop_names[d] : "?";
}

/* Counted always, logged once per port and cause: a warning when the
 * guest broke a rule, a debug line when the network was just busy or a
 * peer gone (a VM that powers off first makes its peers' last frames drop). */
static void drop(struct net_port *p, struct net_counters *c, enum net_drop why)
{
	atomic_fetch_add(&c->dropped[why], 1);
	if (!p || (p->drops_logged & (1u << why)))
		return;
	p->drops_logged |= 1u << why;
	if (why == NET_DROP_DOWN || why == NET_DROP_NO_BUFFER || why == NET_DROP_NO_ROUTE || why == NET_DROP_TAP)
		log_debug(p->name, "net: frame dropped: %s (counted; not logged again)", net_drop_name(why));
	else
		log_warn(p->name, "net: frame dropped: %s (counted; not logged again)", net_drop_name(why));
}

static bool is_multicast(const uint8_t *mac)
{
	return mac[0] & 1;
}

static struct net_port *port_by_mac(struct net_switch *sw, const uint8_t *mac)
{
	for (unsigned i = 0; i < sw->nr_ports; i++)
		if (sw->port[i] && !memcmp(sw->port[i]->mac, mac, 6))
			return sw->port[i];
	return NULL;
}

static bool receiving(const struct net_port *p)
{
	return p->up && !(p->vm_stopping && atomic_load(p->vm_stopping));
}

static size_t iov_copy_out(const struct iovec *iov, int n, void *dst, size_t len)
{
	size_t done = 0;
	for (int i = 0; i < n && done < len; i++) {
		size_t k = iov[i].iov_len < len - done ? iov[i].iov_len : len - done;
		memcpy((uint8_t *)dst + done, iov[i].iov_base, k);
		done += k;
	}
	return done;
}

/* --- the remapper ---------------------------------------------------------- */

static int map_at(uint8_t *at, int fd, uint64_t off)
{
	void *r = mmap(at, FERRY_ZC_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)off);
	return r == MAP_FAILED ? -1 : 0;
}

/* Offsets of channel c's areas in a NIC's window (and its private memfd). */
static uint64_t tx_off(unsigned c)
{
	return FERRY_ZC_TX_OFFSET(c);
}

static uint64_t rx_off(unsigned c)
{
	return FERRY_ZC_RX_OFFSET(c);
}

/* Channel c of p back on its own memory. */
static int map_private(struct net_port *p, unsigned c)
{
	int a = map_at(p->zc_hva + tx_off(c), p->zc_memfd, tx_off(c));
	int b = map_at(p->zc_hva + rx_off(c), p->zc_memfd, rx_off(c));
	atomic_fetch_add(&p->ctr.remaps, 2);
	return a < 0 || b < 0 ? -1 : 0;
}

/* One area of p's window back on private memory, with the contents it has. */
static int to_private(struct net_port *p, uint64_t off)
{
	memcpy(p->zc_private + off, p->zc_hva + off, FERRY_ZC_AREA_SIZE);
	atomic_fetch_add(&p->ctr.remaps, 1);
	return map_at(p->zc_hva + off, p->zc_memfd, off);
}

/* Tells p's driver where the unread frames of its (now private) receive
 * area stand among the frames of the copy path (FERRY_ZC_MARK_VALID). */
static void mark_unread(struct net_port *p, unsigned c)
{
	struct ferry_zc_ring *r = (struct ferry_zc_ring *)(p->zc_private + rx_off(c));
	__atomic_store_n(&r->unbound_mark, FERRY_ZC_MARK_VALID | p->ops->rx_mark(p), __ATOMIC_RELEASE);
}

static uint32_t area_alloc(struct net_switch *sw)
{
	for (uint32_t i = 0; i < sw->pool_areas; i++)
		if (!sw->area_used[i]) {
			sw->area_used[i] = 1;
			return i;
		}
	return UINT32_MAX;
}

/* A freed area is punched out: the next binding, maybe of other VMs, reads
 * zeroes, never an earlier pair's frames. */
static void area_free(struct net_switch *sw, uint32_t a)
{
	if (a >= sw->pool_areas)
		return;
	if (fallocate(sw->pool_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(a * FERRY_ZC_AREA_SIZE),
		      (off_t)FERRY_ZC_AREA_SIZE) < 0) {
		/* Without a hole the data would survive: keep the area out of use. */
		log_error(sw->name, "net: cannot clear a shared area (%s); it is retired", strerror(errno));
		return;
	}
	sw->area_used[a] = 0;
}

static void set_channel(struct net_port *p, unsigned c, uint8_t state, struct net_port *peer, unsigned pc)
{
	p->chan[c].state = state;
	p->chan[c].peer = peer;
	p->chan[c].peer_chan = pc;
}

/* Ends a binding at once: both sides back on private memory, their
 * devices forget what was in flight (completing it), drivers told. */
static void unbind_now(struct net_port *p, unsigned c)
{
	struct net_switch *sw = p->sw;
	struct net_channel *ch = &p->chan[c];
	struct net_port *q = ch->peer;
	unsigned d = ch->peer_chan;
	if (ch->state == FERRY_ZC_UNBOUND || !q)
		return;
	uint32_t a0 = ch->area[0], a1 = ch->area[1];
	/* The devices count the rings' last frames while they are still mapped. */
	p->ops->channel_reset(p, c);
	q->ops->channel_reset(q, d);
	/* Each area goes back to private memory holding the shared memory's
	 * contents, so a driver reads the same rings, their unread frames
	 * included, until it learns of the unbinding. Transmit areas first:
	 * what a sender wrote before its area went private is then in the
	 * copy its receiver gets. */
	bool ok = to_private(p, tx_off(c)) == 0 && to_private(q, tx_off(d)) == 0 &&
		  to_private(p, rx_off(c)) == 0 && to_private(q, rx_off(d)) == 0;
	if (!ok) {
		/* The old mappings stay: still shared between exactly these two,
		 * which is what they had agreed to; count it and keep the areas. */
		sw->map_failures++;
		log_error(p->name, "net: cannot map channel %u back to private memory: %s", c, strerror(errno));
	} else {
		mark_unread(p, c);
		mark_unread(q, d);
	}
	set_channel(p, c, FERRY_ZC_UNBOUND, NULL, 0);
	set_channel(q, d, FERRY_ZC_UNBOUND, NULL, 0);
	p->chan[c].unbound_ns = q->chan[d].unbound_ns = net_switch_clock();
	if (ok) {
		area_free(sw, a0);
		area_free(sw, a1);
	}
	atomic_fetch_add(&p->ctr.unbinds, 1);
	atomic_fetch_add(&q->ctr.unbinds, 1);
	p->ops->channels_changed(p);
	q->ops->channels_changed(q);
	log_debug(p->name, "net: channel %u to %s unbound", c, q->name);
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "peer", q->name);
	cJSON_AddStringToObject(f, "network", sw->name);
	cJSON_AddNumberToObject(f, "channel", c);
	cJSON_AddNumberToObject(f, "peer_channel", d);
	events_emit("crosstalk-undone", p->name, f);
}

/* Unbinding is a handshake: the channel goes DRAINING, each driver closes
 * its side after its last frame, and once both rings are read the areas go
 * back to private memory (net_channel_drained, or the tick). Forced: at
 * once, whatever is in flight (the peer is gone or stuck). */
static void unbind(struct net_port *p, unsigned c, bool force)
{
	struct net_channel *ch = &p->chan[c];
	struct net_port *q = ch->peer;
	if (ch->state == FERRY_ZC_UNBOUND || !q)
		return;
	unsigned d = ch->peer_chan;
	if (force) {
		unbind_now(p, c);
		return;
	}
	if (ch->state == FERRY_ZC_BOUND) {
		ch->state = FERRY_ZC_DRAINING;
		q->chan[d].state = FERRY_ZC_DRAINING;
		ch->drain_since_ns = q->chan[d].drain_since_ns = net_switch_clock();
		p->ops->channels_changed(p);
		q->ops->channels_changed(q);
	}
}

void net_channel_unbind(struct net_port *p, unsigned c)
{
	if (c < FERRY_ZC_CHANNELS)
		unbind(p, c, true);
}

void net_channel_drained(struct net_port *p, unsigned c)
{
	struct net_channel *ch = &p->chan[c];
	if (ch->state == FERRY_ZC_DRAINING && ch->peer && p->ops->channel_idle(p, c) &&
	    ch->peer->ops->channel_idle(ch->peer, ch->peer_chan))
		unbind_now(p, c);
}

/* An unbound channel whose driver has read the frames left in it (or has
 * had NET_LEFTOVER_NS to): binding it again replaces that memory. */
static int free_channel(struct net_port *p)
{
	uint64_t now = net_switch_clock();
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
		if (p->chan[c].state == FERRY_ZC_UNBOUND &&
		    (p->ops->channel_idle(p, c) || now - p->chan[c].unbound_ns > NET_LEFTOVER_NS))
			return (int)c;
	return -1;
}

static bool bound_to(const struct net_port *p, const struct net_port *q)
{
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
		if (p->chan[c].state != FERRY_ZC_UNBOUND && p->chan[c].peer == q)
			return true;
	return false;
}

/* The dynamic memory remapper: p's channel c and q's channel d onto two
 * shared areas, one per direction (claims 1, 9, 10). All or nothing: a
 * mapping that fails puts everything back on private memory. */
static bool bind(struct net_port *p, struct net_port *q)
{
	struct net_switch *sw = p->sw;
	int c = free_channel(p), d = free_channel(q);
	if (c < 0 || d < 0)
		return false; /* no channel free: the pair stays on the one-copy path */
	uint32_t a0 = area_alloc(sw), a1 = area_alloc(sw);
	if (a0 == UINT32_MAX || a1 == UINT32_MAX) {
		area_free(sw, a0);
		area_free(sw, a1);
		return false;
	}
	/* p's transmit area is q's receive area; q's transmit area is p's. */
	bool ok = map_at(p->zc_hva + tx_off((unsigned)c), sw->pool_fd, a0 * FERRY_ZC_AREA_SIZE) == 0 &&
		  map_at(q->zc_hva + rx_off((unsigned)d), sw->pool_fd, a0 * FERRY_ZC_AREA_SIZE) == 0 &&
		  map_at(q->zc_hva + tx_off((unsigned)d), sw->pool_fd, a1 * FERRY_ZC_AREA_SIZE) == 0 &&
		  map_at(p->zc_hva + rx_off((unsigned)c), sw->pool_fd, a1 * FERRY_ZC_AREA_SIZE) == 0;
	if (!ok) {
		sw->map_failures++;
		if (log_limit_ok(&sw->log))
			log_warn(p->name, "net: cannot map a zero-copy channel to %s (%s); staying on the copy path",
				 q->name, strerror(errno));
		/* Both put back, whatever the first does; an area that may still
		 * be mapped in a window is retired, never given to another pair. */
		int rp = map_private(p, (unsigned)c), rq = map_private(q, (unsigned)d);
		if (rp < 0 || rq < 0) {
			log_error(p->name, "net: a channel's private memory could not be restored; its areas are retired");
			return false;
		}
		area_free(sw, a0);
		area_free(sw, a1);
		return false;
	}
	/* Counted per NIC whose window changed, as unbinding counts them. */
	atomic_fetch_add(&p->ctr.remaps, 2);
	atomic_fetch_add(&q->ctr.remaps, 2);
	p->ops->channel_reset(p, (unsigned)c);
	q->ops->channel_reset(q, (unsigned)d);
	set_channel(p, (unsigned)c, FERRY_ZC_BOUND, q, (unsigned)d);
	set_channel(q, (unsigned)d, FERRY_ZC_BOUND, p, (unsigned)c);
	p->chan[c].epoch++;
	q->chan[d].epoch++;
	p->chan[c].area[0] = a0;
	p->chan[c].area[1] = a1;
	q->chan[d].area[0] = a1;
	q->chan[d].area[1] = a0;
	p->ops->channels_changed(p);
	q->ops->channels_changed(q);
	log_debug(p->name, "net: cross-talk with %s: channel %d bound to its channel %d", q->name, c, d);
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "peer", q->name);
	cJSON_AddStringToObject(f, "network", sw->name);
	cJSON_AddNumberToObject(f, "channel", c);
	cJSON_AddNumberToObject(f, "peer_channel", d);
	events_emit("crosstalk-detected", p->name, f);
	return true;
}

/* The cross-talk detector (claim 7): p sends to q, both co-resident, both
 * drivers able to use a channel, not yet bound. */
static void detect(struct net_port *p, struct net_port *q)
{
	if (!p->sw->zero_copy || !p->zc || !q->zc || !receiving(p) || !receiving(q) || bound_to(p, q))
		return;
	if (bind(p, q))
		atomic_fetch_add(&p->ctr.crosstalk_detected, 1);
}

/* --- forwarding ------------------------------------------------------------ */

static void deliver(struct net_port *from, struct net_port *to, const struct iovec *iov, int n, size_t len)
{
	enum net_drop why = NET_DROP_DOWN;
	if (receiving(to) && to->ops->deliver(to, iov, n, len, &why)) {
		atomic_fetch_add(&to->ctr.frames_rx, 1);
		if (from) {
			atomic_fetch_add(&from->ctr.frames_one_copy, 1);
			atomic_fetch_add(&from->ctr.bytes_copied_by_host, len);
		} else {
			atomic_fetch_add(&to->sw->tap_ctr.frames_one_copy, 1);
			atomic_fetch_add(&to->sw->tap_ctr.bytes_copied_by_host, len);
		}
		return;
	}
	drop(to, &to->ctr, why); /* the receiver's doing: counted there */
}

/* The TAP is gone (deleted, or broken): said once; from now on frames for
 * the outside are dropped and counted without trying. Lock held; any
 * thread (the event loop stops watching it in tap_ready). */
static void tap_gone(struct net_switch *sw, const char *why)
{
	if (sw->tap_dead)
		return;
	sw->tap_dead = true;
	log_error(sw->name, "net: TAP %s failed (%s); the network has no external port now", tap_name(sw->tap), why);
}

static void to_tap(struct net_switch *sw, struct net_port *from, const struct iovec *iov, int n, size_t len)
{
	if (!sw->tap_dead && tap_send(sw->tap, iov, n) == (ssize_t)len) {
		atomic_fetch_add(&from->ctr.frames_external, 1);
		atomic_fetch_add(&from->ctr.bytes_copied_by_host, len);
		atomic_fetch_add(&sw->tap_ctr.frames_rx, 1);
		return;
	}
	atomic_fetch_add(&sw->tap_ctr.dropped[NET_DROP_TAP], 1);
	drop(from, &from->ctr, NET_DROP_TAP);
	if (sw->tap_dead)
		return;
	/* A full TAP queue (the host reads slowly) drops a frame, as a full
	 * NIC would; anything else means the interface is gone. */
	if (errno != EAGAIN && errno != ENOBUFS)
		tap_gone(sw, strerror(errno));
}

bool net_switch_tx(struct net_port *from, const struct iovec *iov, int iovcnt, size_t len)
{
	struct net_switch *sw = from->sw;
	uint8_t eth[ETH_HLEN];
	atomic_fetch_add(&from->ctr.frames_tx, 1);
	if (len < ETH_HLEN) {
		drop(from, &from->ctr, NET_DROP_RUNT);
		return false;
	}
	if (len > sw->mtu + ETH_HLEN) {
		drop(from, &from->ctr, NET_DROP_OVERSIZE);
		return false;
	}
	/* The header, copied once: the guest can rewrite its buffer meanwhile. */
	iov_copy_out(iov, iovcnt, eth, ETH_HLEN);
	if (memcmp(eth + 6, from->mac, 6)) {
		drop(from, &from->ctr, NET_DROP_SPOOFED);
		return false;
	}
	if (is_multicast(eth)) {
		for (unsigned i = 0; i < sw->nr_ports; i++)
			if (sw->port[i] && sw->port[i] != from)
				deliver(from, sw->port[i], iov, iovcnt, len);
		if (sw->tap)
			to_tap(sw, from, iov, iovcnt, len);
		return true;
	}
	struct net_port *to = port_by_mac(sw, eth);
	if (to == from) {
		drop(from, &from->ctr, NET_DROP_NO_ROUTE); /* to itself: nothing to do */
		return false;
	}
	if (to) {
		detect(from, to);
		deliver(from, to, iov, iovcnt, len);
		return true;
	}
	if (sw->tap) {
		to_tap(sw, from, iov, iovcnt, len);
		return true;
	}
	drop(from, &from->ctr, NET_DROP_NO_ROUTE);
	return false;
}

/* Frames from the host: to the NIC with the destination MAC, or all. */
static void tap_ready(void *arg, uint32_t events)
{
	struct net_switch *sw = arg;
	static uint8_t buf[TAP_FRAME_MAX]; /* the event loop is one thread */
	pthread_mutex_lock(&sw->lock);
	for (int i = 0; i < TAP_BURST && !sw->tap_dead; i++) {
		ssize_t n = tap_recv(sw->tap, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0) {
			tap_gone(sw, strerror(errno));
			break;
		}
		atomic_fetch_add(&sw->tap_ctr.frames_tx, 1);
		if ((size_t)n < ETH_HLEN || (size_t)n > sw->mtu + ETH_HLEN) {
			drop(NULL, &sw->tap_ctr, (size_t)n < ETH_HLEN ? NET_DROP_RUNT : NET_DROP_OVERSIZE);
			continue;
		}
		struct iovec iov = { buf, (size_t)n };
		if (is_multicast(buf)) {
			for (unsigned k = 0; k < sw->nr_ports; k++)
				if (sw->port[k])
					deliver(NULL, sw->port[k], &iov, 1, (size_t)n);
			continue;
		}
		struct net_port *to = port_by_mac(sw, buf);
		if (to)
			deliver(NULL, to, &iov, 1, (size_t)n);
		else
			drop(NULL, &sw->tap_ctr, NET_DROP_NO_ROUTE);
	}
	if (events & (EPOLLERR | EPOLLHUP))
		tap_gone(sw, "the interface reports an error");
	/* A dead TAP stays readable (or in error) for epoll: stop watching it,
	 * here on the event loop's own thread. */
	if (sw->tap_dead && sw->tap_handler) {
		evl_del(sw->evl, sw->tap_handler);
		sw->tap_handler = NULL;
	}
	pthread_mutex_unlock(&sw->lock);
}

static void service_all(struct net_switch *sw)
{
	for (unsigned i = 0; i < sw->nr_ports; i++) {
		struct net_port *p = sw->port[i];
		if (p && p->zc)
			for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
				if (p->chan[c].state != FERRY_ZC_UNBOUND)
					p->ops->channel_service(p, c);
	}
}

/* A peer that stops reading while its sender waits for it must not hold the
 * sender up: the channel is unbound, and the sender's frames take the copy
 * path, where a receiver without buffers only loses its own frames. A
 * receiver that reads lazily while its sender still has room is left alone. */
static void check_stalls(struct net_switch *sw, uint64_t now)
{
	for (unsigned i = 0; i < sw->nr_ports; i++) {
		struct net_port *p = sw->port[i];
		if (!p || !p->zc)
			continue;
		/* A VM that stopped reads nothing more: its bindings end now. */
		if (p->up && p->vm_stopping && atomic_load(p->vm_stopping)) {
			net_port_set_up(p, false);
			continue;
		}
		for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
			if (p->chan[c].state == FERRY_ZC_DRAINING && now - p->chan[c].drain_since_ns > NET_DRAIN_NS) {
				atomic_fetch_add(&p->ctr.stalls, 1);
				log_warn(p->name, "net: channel %u to %s did not drain; unbound", c, p->chan[c].peer->name);
				unbind(p, c, true);
				continue;
			}
			if (p->chan[c].state == FERRY_ZC_UNBOUND || !p->ops->channel_stalled(p, c, now, NET_STALL_NS))
				continue;
			atomic_fetch_add(&p->ctr.stalls, 1);
			log_warn(p->name, "net: %s stopped reading channel frames; back to the copy path",
				 p->chan[c].peer->name);
			unbind(p, c, true);
		}
	}
}

/* Every TICK_NS: channels' frames counted, drained ones unbound, stalls. */
void net_switch_tick(struct net_switch *sw)
{
	pthread_mutex_lock(&sw->lock);
	uint64_t now = net_switch_clock();
	service_all(sw);
	check_stalls(sw, now);
	pthread_mutex_unlock(&sw->lock);
}

static void tick(void *arg, uint32_t events)
{
	(void)events;
	net_switch_tick(arg);
}

/* --- ports ------------------------------------------------------------------ */

int net_switch_attach(struct net_switch *sw, struct net_port *p, char *err, size_t errlen)
{
	pthread_mutex_lock(&sw->lock);
	unsigned i = 0;
	while (i < NET_MAX_PORTS && sw->port[i])
		i++;
	if (i == NET_MAX_PORTS) {
		pthread_mutex_unlock(&sw->lock);
		snprintf(err, errlen, "network %s: more than %d NICs", sw->name, NET_MAX_PORTS);
		return -1;
	}
	p->sw = sw;
	p->index = i;
	sw->port[i] = p;
	if (i >= sw->nr_ports)
		sw->nr_ports = i + 1;
	pthread_mutex_unlock(&sw->lock);
	return 0;
}

void net_switch_detach(struct net_port *p)
{
	struct net_switch *sw = p->sw;
	if (!sw)
		return;
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
		unbind(p, c, true);
	sw->port[p->index] = NULL;
	p->sw = NULL;
}

void net_port_set_up(struct net_port *p, bool up)
{
	if (p->up == up)
		return;
	p->up = up;
	if (!up) /* the peer cannot wait for a driver that is gone */
		for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++)
			unbind(p, c, true);
	/* Detection from configuration (claim 8): NICs on one network are
	 * assumed to talk, so a driver that starts is bound to every peer
	 * already running (as channels allow) before it sends anything. */
	if (up && p->sw->bind_at_start)
		for (unsigned i = 0; i < p->sw->nr_ports; i++)
			if (p->sw->port[i] && p->sw->port[i] != p)
				detect(p, p->sw->port[i]);
}

unsigned net_port_unbind_all(struct net_port *p)
{
	unsigned n = 0;
	for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
		n += p->chan[c].state == FERRY_ZC_BOUND;
		unbind(p, c, false);
	}
	return n;
}

struct net_port *net_channel_peer(struct net_port *p, unsigned c, unsigned *peer_chan)
{
	if (c >= FERRY_ZC_CHANNELS || p->chan[c].state == FERRY_ZC_UNBOUND)
		return NULL;
	*peer_chan = p->chan[c].peer_chan;
	return p->chan[c].peer;
}

/* --- the switch -------------------------------------------------------------- */

int net_setup(struct vmm *vmm, const struct ferry_config *cfg, char *err, size_t errlen)
{
	for (unsigned n = 0; n < cfg->nr_networks; n++) {
		unsigned nics = 0;
		for (unsigned v = 0; v < cfg->nr_vms; v++)
			for (unsigned k = 0; k < cfg->vms[v].nr_nics; k++)
				nics += cfg->vms[v].nics[k].net == n;
		char why[256];
		vmm->nets[n] = net_switch_create(&cfg->networks[n], nics, vmm->evl, why, sizeof(why));
		if (!vmm->nets[n]) {
			snprintf(err, errlen, "networks.%s: %s", cfg->networks[n].name, why);
			return -1;
		}
		vmm->nr_nets = n + 1;
	}
	return 0;
}



/* Shared memory for bindings among `ports` NICs (each binding takes two
 * areas and each NIC at most one per channel, so ports * channels areas
 * always suffice), and the timer that serves bound channels. Grows only;
 * the memfd is sparse, so unused areas cost nothing. */
static int zc_reserve(struct net_switch *sw, unsigned ports, char *err, size_t errlen)
{
	if (!sw->zero_copy || ports < 2)
		return 0;
	uint32_t areas = ports * FERRY_ZC_CHANNELS;
	if (areas > sw->pool_areas) {
		if (sw->pool_fd < 0) {
			char name[64];
			snprintf(name, sizeof(name), "ferry-net-%s", sw->name);
			sw->pool_fd = memfd_create(name, MFD_CLOEXEC);
		}
		uint8_t *used = sw->pool_fd >= 0 ? calloc(areas, 1) : NULL;
		if (!used || ftruncate(sw->pool_fd, (off_t)(areas * FERRY_ZC_AREA_SIZE)) < 0) {
			snprintf(err, errlen, "network %s: cannot make its shared memory: %s", sw->name, strerror(errno));
			free(used);
			return -1;
		}
		/* The file is bigger before the table says so: areas in use keep
		 * their places, and bindings see the new ones only from here. */
		pthread_mutex_lock(&sw->lock);
		if (sw->area_used)
			memcpy(used, sw->area_used, sw->pool_areas);
		free(sw->area_used);
		sw->area_used = used;
		sw->pool_areas = areas;
		pthread_mutex_unlock(&sw->lock);
	}
	if (!sw->timer) {
		sw->timer = evl_add_timer(sw->evl, TICK_NS, tick, sw);
		if (!sw->timer) {
			snprintf(err, errlen, "network %s: cannot start its timer", sw->name);
			return -1;
		}
	}
	return 0;
}

int net_switch_reserve(struct net_switch *sw, unsigned more_ports, char *err, size_t errlen)
{
	pthread_mutex_lock(&sw->lock);
	unsigned ports = 0;
	for (unsigned i = 0; i < sw->nr_ports; i++)
		ports += sw->port[i] != NULL;
	pthread_mutex_unlock(&sw->lock);
	if (ports + more_ports > NET_MAX_PORTS) {
		snprintf(err, errlen, "network %s: more than %d NICs", sw->name, NET_MAX_PORTS);
		return -1;
	}
	return zc_reserve(sw, ports + more_ports, err, errlen);
}

struct net_switch *net_switch_create(const struct net_config *cfg, unsigned max_zc_ports, struct eventloop *evl,
				     char *err, size_t errlen)
{
	struct net_switch *sw = calloc(1, sizeof(*sw));
	if (!sw) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&sw->lock, NULL);
	snprintf(sw->name, sizeof(sw->name), "%s", cfg->name);
	sw->mtu = cfg->mtu;
	sw->zero_copy = cfg->zero_copy;
	sw->bind_at_start = cfg->bind_at_start;
	sw->evl = evl;
	sw->pool_fd = -1;
	if (zc_reserve(sw, max_zc_ports, err, errlen) < 0) {
		net_switch_destroy(sw);
		return NULL;
	}
	if (cfg->tap[0]) {
		sw->tap = tap_open(cfg->tap, cfg->address, cfg->prefix_len, cfg->mtu, err, errlen);
		if (!sw->tap || (cfg->bridge[0] && tap_join_bridge(sw->tap, cfg->bridge, err, errlen) < 0)) {
			net_switch_destroy(sw);
			return NULL;
		}
		sw->tap_handler = evl_add(evl, tap_fd(sw->tap), EPOLLIN, tap_ready, sw);
		if (!sw->tap_handler) {
			snprintf(err, errlen, "network %s: cannot watch TAP %s", cfg->name, cfg->tap);
			net_switch_destroy(sw);
			return NULL;
		}
	}
	return sw;
}

void net_switch_destroy(struct net_switch *sw)
{
	if (!sw)
		return;
	if (sw->tap_handler)
		evl_del(sw->evl, sw->tap_handler);
	if (sw->timer)
		evl_del(sw->evl, sw->timer);
	tap_close(sw->tap);
	if (sw->pool_fd >= 0)
		close(sw->pool_fd);
	free(sw->area_used);
	pthread_mutex_destroy(&sw->lock);
	free(sw);
}

void net_counters_json(const struct net_counters *c, cJSON *o)
{
	cJSON_AddNumberToObject(o, "frames_tx", (double)atomic_load(&c->frames_tx));
	cJSON_AddNumberToObject(o, "frames_rx", (double)atomic_load(&c->frames_rx));
	cJSON_AddNumberToObject(o, "frames_zero_copy", (double)atomic_load(&c->frames_zero_copy));
	cJSON_AddNumberToObject(o, "frames_one_copy", (double)atomic_load(&c->frames_one_copy));
	cJSON_AddNumberToObject(o, "frames_external", (double)atomic_load(&c->frames_external));
	cJSON_AddNumberToObject(o, "bytes_copied_by_host", (double)atomic_load(&c->bytes_copied_by_host));
	cJSON_AddNumberToObject(o, "crosstalk_detected", (double)atomic_load(&c->crosstalk_detected));
	cJSON_AddNumberToObject(o, "remaps", (double)atomic_load(&c->remaps));
	cJSON_AddNumberToObject(o, "unbinds", (double)atomic_load(&c->unbinds));
	cJSON_AddNumberToObject(o, "stalls", (double)atomic_load(&c->stalls));
	cJSON *d = cJSON_AddObjectToObject(o, "dropped");
	unsigned long total = 0;
	for (int i = 0; i < NET_DROP_MAX; i++) {
		unsigned long v = atomic_load(&c->dropped[i]);
		cJSON_AddNumberToObject(d, drop_names[i], (double)v);
		total += v;
	}
	cJSON_AddNumberToObject(d, "total", (double)total);
}

cJSON *net_switch_report(struct net_switch *sw)
{
	cJSON *o = cJSON_CreateObject();
	pthread_mutex_lock(&sw->lock);
	service_all(sw); /* channels' frames counted up to now, as the tick would */
	cJSON_AddStringToObject(o, "name", sw->name);
	cJSON_AddNumberToObject(o, "mtu", sw->mtu);
	cJSON_AddBoolToObject(o, "zero_copy", sw->zero_copy);
	cJSON_AddNumberToObject(o, "map_failures", (double)sw->map_failures);
	if (sw->tap) {
		cJSON *t = cJSON_AddObjectToObject(o, "tap");
		cJSON_AddStringToObject(t, "name", tap_name(sw->tap));
		cJSON_AddBoolToObject(t, "up", sw->tap_handler != NULL);
		net_counters_json(&sw->tap_ctr, t);
	}
	cJSON *ports = cJSON_AddArrayToObject(o, "ports");
	for (unsigned i = 0; i < sw->nr_ports; i++) {
		struct net_port *p = sw->port[i];
		if (!p)
			continue;
		cJSON *j = cJSON_CreateObject();
		char mac[18];
		snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", p->mac[0], p->mac[1], p->mac[2], p->mac[3],
			 p->mac[4], p->mac[5]);
		cJSON_AddStringToObject(j, "vm", p->name);
		cJSON_AddStringToObject(j, "mac", mac);
		cJSON_AddBoolToObject(j, "up", p->up);
		cJSON_AddBoolToObject(j, "zero_copy", p->zc);
		net_counters_json(&p->ctr, j);
		cJSON *chans = cJSON_AddArrayToObject(j, "channels");
		for (unsigned c = 0; c < FERRY_ZC_CHANNELS; c++) {
			if (p->chan[c].state == FERRY_ZC_UNBOUND)
				continue;
			cJSON *ch = cJSON_CreateObject();
			cJSON_AddNumberToObject(ch, "channel", c);
			cJSON_AddStringToObject(ch, "peer", p->chan[c].peer->name);
			cJSON_AddStringToObject(ch, "state", p->chan[c].state == FERRY_ZC_BOUND ? "bound" : "draining");
			cJSON_AddItemToArray(chans, ch);
		}
		cJSON_AddItemToArray(ports, j);
	}
	pthread_mutex_unlock(&sw->lock);
	return o;
}
