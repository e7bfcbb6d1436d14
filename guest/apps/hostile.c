/* hostile: a guest that attacks every device it finds, for tests that run
 * it beside well-behaved VMs (tests/integration/test_hostile.c). Nothing it
 * does may crash or stall ferry or reach another VM; each attack is counted
 * here and, by ferry, as a rejection in the run summary.
 *
 *   app=hostile [phases=LIST] [ms=N] [victim_mac=MAC] [release=NAME]
 *               [flood_kib=N]
 *
 * Phases, in this order (LIST picks some, comma-separated; default all):
 *   net       frames with spoofed source MACs, over the MTU, to victim_mac
 *             (binding a zero-copy channel), then lies in that channel's
 *             ring indices and writes into its read-only receive area; its
 *             own receive buffers are never given back. Then, if release
 *             names a msgq peer, it sends that peer msgping's end message:
 *             the victim (app=msgping role=pong) stays up exactly as long
 *             as the attack needs it. First, so the victim's wait is short.
 *   console   floods the console (flood_kib KiB, lines and one endless line)
 *   msgq      sends of pages it does not own: RAM, its receive region, off
 *             slot boundaries, too long, to itself, to ids nobody has
 *   balloon   inflates frames outside RAM, twice, beyond the target;
 *             deflates frames never given; reports ranges it does not own
 *   chains    on every virtio queue it can set up: wild and overflowing
 *             addresses and lengths, descriptor loops, chains longer than
 *             the device allows, next indices past the table, indirect
 *             tables, available indices that lie
 *   refetch   a second vCPU rewrites a posted descriptor while the first
 *             notifies (double fetch)
 *   storm     doorbell storms (ioeventfd and trapping ones) and interrupt
 *             storms (one-byte entropy requests, ivshmem doorbells)
 *   msix      MSI-X entries pointed away from the LAPIC, masks flipped while
 *             interrupts are raised, PBA writes, vectors the device lacks
 *   regs      every width at every register offset of every virtio BAR
 *             and of ivshmem's registers
 *   bars      BARs moved onto RAM, onto other devices, onto ECAM and the
 *             LAPIC, past the address width; device windows moved onto RAM
 *   pci       every width at every configuration offset of every function
 *             (then restored), ECAM's extended space, misaligned ECAM
 *   worst     (only when named) for ms milliseconds, the longest chains each
 *             device accepts, as fast as they complete: msgq returns of 256
 *             entries naming slots it does not hold (under the lock every
 *             msgq VM shares), 4096-frame balloon lists, virtio-rng chains
 *             of 64 x 64 MiB, 128-segment transmit chains
 * Each phase prints "hostile: PHASE: N attacks" and the app exits 0 once
 * all ran; whatever ferry refused shows in its summary. */
#include <ferry/debug_exit.h>
#include <ferry/ivshmem.h>
#include <ferry/layout.h>
#include <ferry/msgq.h>
#include <ferry/pci_regs.h>
#include <ferry/virtio.h>
#include <ferry/virtio_net.h>
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "ivshmem.h"
#include "kernel.h"
#include "kstring.h"
#include "msgq.h"
#include "page_alloc.h"
#include "pci.h"
#include "smp.h"
#include "timer.h"
#include "virtio_balloon.h"
#include "virtio_net.h"
#include "virtio_pci.h"
#include "x86.h"

#define VIRTIO_ID_CPU_RESERVE 0xf8
#define RING_SIZE 256
#define STATUS_NEEDS_RESET VIRTIO_STATUS_DEVICE_NEEDS_RESET

static uint64_t attacks;     /* per phase */
static uint64_t phase_ms;

static bool want(const char *phase)
{
	const char *list = cmdline_get("phases");
	if (!list)
		return strcmp(phase, "worst") != 0;
	size_t n = strlen(phase);
	for (const char *p = list; *p;) {
		if (!strncmp(p, phase, n) && (p[n] == ',' || p[n] == '\0'))
			return true;
		while (*p && *p != ',')
			p++;
		if (*p == ',')
			p++;
	}
	return false;
}

static void done(const char *phase)
{
	kprintf("hostile: %s: %lu attacks\n", phase, attacks);
	attacks = 0;
}

/* --- a raw virtio driver: no interrupts, rings it controls byte by byte ---- */

struct raw {
	struct virtio_dev vd;
	bool ok;
	uint16_t q, size;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	uintptr_t notify;
	uint16_t avail_idx, used_seen;
	uint8_t *buf;               /* 64 KiB of buffers */
};

static void common8(struct raw *r, unsigned off, uint8_t v) { mmio_write8(r->vd.common + off, v); }
static void common16(struct raw *r, unsigned off, uint16_t v) { mmio_write16(r->vd.common + off, v); }
static void common32(struct raw *r, unsigned off, uint32_t v) { mmio_write32(r->vd.common + off, v); }
static uint8_t status(struct raw *r) { return mmio_read8(r->vd.common + VIRTIO_PCI_COMMON_STATUS); }

/* Resets the device and sets queue q up (size RING_SIZE or the device's),
 * polled. The rings and buffers are allocated once. */
static bool raw_setup(struct raw *r, uint16_t q, uint64_t features)
{
	if (!r->desc) {
		r->desc = alloc_pages_zeroed(4); /* 64 KiB: any ring of up to 256 entries */
		r->buf = alloc_pages_zeroed(4);
		if (!r->desc || !r->buf)
			return false;
	}
	common8(r, VIRTIO_PCI_COMMON_STATUS, 0);
	for (int i = 0; i < 1000 && status(r); i++)
		cpu_relax();
	common8(r, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	uint64_t f = features | 1ull << VIRTIO_F_VERSION_1;
	common32(r, VIRTIO_PCI_COMMON_GFSELECT, 0);
	common32(r, VIRTIO_PCI_COMMON_GF, (uint32_t)f);
	common32(r, VIRTIO_PCI_COMMON_GFSELECT, 1);
	common32(r, VIRTIO_PCI_COMMON_GF, (uint32_t)(f >> 32));
	common8(r, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	common16(r, VIRTIO_PCI_COMMON_Q_SELECT, q);
	uint16_t size = mmio_read16(r->vd.common + VIRTIO_PCI_COMMON_Q_SIZE);
	if (!size)
		return false;
	if (size > RING_SIZE)
		size = RING_SIZE;
	r->q = q;
	r->size = size;
	memset(r->desc, 0, 64 << 10);
	r->avail = (struct vring_avail *)((uint8_t *)r->desc + VRING_DESC_BYTES(size));
	r->used = (struct vring_used *)((uint8_t *)r->desc + 0x8000);
	r->avail_idx = r->used_seen = 0;
	uint64_t notify_off = (uint64_t)mmio_read16(r->vd.common + VIRTIO_PCI_COMMON_Q_NOFF) * r->vd.notify_off_multiplier;
	r->notify = r->vd.notify + notify_off;
	common16(r, VIRTIO_PCI_COMMON_Q_SIZE, size);
	common32(r, VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t)virt_to_phys(r->desc));
	common32(r, VIRTIO_PCI_COMMON_Q_DESCHI, 0);
	common32(r, VIRTIO_PCI_COMMON_Q_AVAILLO, (uint32_t)virt_to_phys(r->avail));
	common32(r, VIRTIO_PCI_COMMON_Q_AVAILHI, 0);
	common32(r, VIRTIO_PCI_COMMON_Q_USEDLO, (uint32_t)virt_to_phys(r->used));
	common32(r, VIRTIO_PCI_COMMON_Q_USEDHI, 0);
	common16(r, VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	common16(r, VIRTIO_PCI_COMMON_Q_ENABLE, 1);
	common8(r, VIRTIO_PCI_COMMON_STATUS,
		VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	r->ok = !(status(r) & STATUS_NEEDS_RESET);
	return r->ok;
}

static bool raw_open(struct raw *r, uint16_t type, uint16_t q)
{
	memset(r, 0, sizeof(*r));
	if (virtio_pci_probe(&r->vd, type, 0) != 0)
		return false;
	return raw_setup(r, q, 0);
}

/* Publishes head as the next available chain and rings the doorbell. */
static void raw_kick(struct raw *r, uint16_t head)
{
	r->avail->ring[r->avail_idx % r->size] = head;
	__atomic_store_n(&r->avail->idx, ++r->avail_idx, __ATOMIC_RELEASE);
	mmio_write16(r->notify, r->q);
}

/* Waits a little for the device to use something or to give up on the
 * queue; true if it needs a reset (it refused the ring). */
static bool raw_refused(struct raw *r)
{
	uint64_t until = time_ns() + 20000000ull;
	while (time_ns() < until) {
		if (status(r) & STATUS_NEEDS_RESET)
			return true;
		if (__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE) != r->used_seen) {
			r->used_seen = r->used->idx;
			return false;
		}
		cpu_relax();
	}
	return false;
}

static void set_desc(struct raw *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	r->desc[i].addr = addr;
	r->desc[i].len = len;
	r->desc[i].flags = flags;
	r->desc[i].next = next;
}

/* One malformed ring after another; the device must refuse each (and be
 * reset before the next). `wflag`: VRING_DESC_F_WRITE for devices that
 * write their buffers, 0 for those that read them. */
static void chain_attacks(struct raw *r, const char *name, uint16_t wflag)
{
	uint64_t ram_top = 0xc0000000ull, buf = virt_to_phys(r->buf);
	unsigned refused = 0, tried = 0;
	for (unsigned kind = 0; kind < 10; kind++) {
		if (!r->ok && !raw_setup(r, r->q, 0))
			break;
		memset(r->desc, 0, VRING_DESC_BYTES(r->size));
		switch (kind) {
		case 0: /* an address that wraps */
			set_desc(r, 0, 0xfffffffffffff000ull, 0x2000, wflag, 0);
			break;
		case 1: /* a length that runs off RAM */
			set_desc(r, 0, buf, 0xffffffffu, wflag, 0);
			break;
		case 2: /* past the top of low RAM, into the MMIO hole */
			set_desc(r, 0, ram_top - 0x800, 0x1000, wflag, 0);
			break;
		case 3: /* a loop of two */
			set_desc(r, 0, buf, 64, wflag | VRING_DESC_F_NEXT, 1);
			set_desc(r, 1, buf + 64, 64, wflag | VRING_DESC_F_NEXT, 0);
			break;
		case 4: /* a descriptor that is its own next */
			set_desc(r, 0, buf, 64, wflag | VRING_DESC_F_NEXT, 0);
			break;
		case 5: /* every descriptor of the table in one chain */
			for (unsigned i = 0; i < r->size; i++)
				set_desc(r, i, buf + (i % 16) * 4096, 4096, wflag | (i + 1 < r->size ? VRING_DESC_F_NEXT : 0),
					 (uint16_t)(i + 1));
			break;
		case 6: /* next past the end of the table */
			set_desc(r, 0, buf, 64, wflag | VRING_DESC_F_NEXT, (uint16_t)(r->size + 7));
			break;
		case 7: /* an indirect table (not offered) pointing at itself */
			set_desc(r, 0, virt_to_phys(r->desc), 16 * 4, VRING_DESC_F_INDIRECT, 0);
			break;
		case 8: /* readable after writable */
			set_desc(r, 0, buf, 64, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
			set_desc(r, 1, buf + 64, 64, 0, 0);
			break;
		default: /* a head index past the table, and an available index that lies */
			r->avail->ring[r->avail_idx % r->size] = (uint16_t)(r->size + 3);
			__atomic_store_n(&r->avail->idx, (uint16_t)(r->avail_idx + 0x8000), __ATOMIC_RELEASE);
			mmio_write16(r->notify, r->q);
			tried++;
			refused += raw_refused(r);
			r->ok = false;
			continue;
		}
		raw_kick(r, 0);
		tried++;
		if (raw_refused(r)) {
			refused++;
			r->ok = false;
		}
	}
	attacks += tried;
	kprintf("hostile: chains: %s: %u malformed rings, %u refused with a reset\n", name, tried, refused);
	r->ok = false;
}

/* --- phases ---------------------------------------------------------------- */

static void phase_console(void)
{
	uint64_t kib = cmdline_get_u64("flood_kib", 256), bytes = 0;
	char line[128];
	memset(line, 'x', sizeof(line) - 2);
	line[sizeof(line) - 2] = '\n';
	line[sizeof(line) - 1] = 0;
	while (bytes < kib * 1024) {
		kprintf("%s", line);
		bytes += sizeof(line) - 1;
	}
	/* One line that never ends (ferry cuts lines it buffers). */
	for (unsigned i = 0; i < 4096; i++)
		kprintf("y");
	kprintf("\n");
	attacks = bytes + 4096;
	done("console");
}

static void phase_msgq(void)
{
	if (msgq_open() < 0) {
		kprintf("hostile: msgq: no device\n");
		return;
	}
	const struct msgq_config *cfg = msgq_config();
	uint32_t peer = cfg->nr_peers ? cfg->peers[0].vm_id : 1, self = msgq_self();
	uint8_t *ram = kmalloc(8192), *slot = msgq_alloc(cfg->page_size);
	if (!ram || !slot)
		return;
	memset(ram, 0x77, 8192);
	struct {
		uint32_t dest;
		const void *buf;
		uint32_t len;
	} bad[] = {
		{ peer, ram, 64 },                                   /* a page of guest RAM: not its to send */
		{ peer, (const void *)0x100000, 4096 },              /* its own kernel */
		{ peer, msgq_recv_region(), 64 },                    /* a page it received */
		{ peer, slot + 100, 64 },                            /* inside a slot */
		{ peer, slot, 0 },                                   /* nothing */
		{ peer, slot, 0xffffffffu },                         /* everything */
		{ peer, msgq_send_region() + (uint64_t)(cfg->send_slots - 1) * cfg->page_size, 4 * cfg->page_size },
		{ self, slot, 64 },                                  /* itself */
		{ 0, slot, 64 },
		{ 250, slot, 64 },
		{ 0xffffffffu, slot, 64 },
	};
	unsigned refused = 0;
	for (unsigned round = 0; round < 20; round++)
		for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
			int st = msg_send(bad[i].dest, bad[i].buf, bad[i].len, MSG_COPY | (round % 2 ? MSG_IMMEDIATE : 0));
			refused += st != MSGQ_OK;
			attacks++;
		}
	kprintf("hostile: msgq: %u of %lu sends refused\n", refused, attacks);
	done("msgq");
}

static void phase_balloon(void)
{
	struct raw r;
	if (!balloon_present()) {
		kprintf("hostile: balloon: no device\n");
		return;
	}
	balloon_pause(true); /* the kernel's driver: out of the way */
	if (!raw_open(&r, VIRTIO_ID_BALLOON, 0)) {
		kprintf("hostile: balloon: cannot set the device up\n");
		return;
	}
	uint32_t *pfn = (uint32_t *)r.buf;
	struct page_alloc_stats st;
	page_alloc_stats(&st);
	uint64_t ram_pages = st.total_pages; /* about the RAM's size: beyond it is not RAM */
	for (unsigned round = 0; round < 8; round++) {
		unsigned n = 0;
		pfn[n++] = 0xffffffffu;                          /* nowhere */
		pfn[n++] = (uint32_t)(0xc0000000ull >> 12);      /* the MMIO hole */
		pfn[n++] = (uint32_t)(0xfee00000ull >> 12);      /* the LAPIC */
		pfn[n++] = (uint32_t)(ram_pages + 0x10000);      /* past RAM */
		pfn[n++] = (uint32_t)(FERRY_PCI_MMIO64_GPA >> 12); /* a device window (truncated) */
		for (unsigned i = 0; i < 32; i++)
			pfn[n++] = 0x400 + i % 4;                    /* the same frames again and again */
		for (unsigned i = 0; i < 64; i++)
			pfn[n++] = (uint32_t)(0x800 + i);            /* more than the target asks */
		for (unsigned q = 0; q < 2; q++) {               /* inflate, then deflate the same */
			if (!raw_setup(&r, (uint16_t)q, 0))
				continue;
			set_desc(&r, 0, virt_to_phys(pfn), 4 * n + 1, 0, 0); /* and not whole frames */
			raw_kick(&r, 0);
			raw_refused(&r);
			attacks += n;
		}
		/* Free page reporting: ranges it does not own or that are not pages. */
		if (raw_setup(&r, 3, 1ull << VIRTIO_BALLOON_F_REPORTING)) {
			set_desc(&r, 0, 0xc0000000ull, 1u << 21, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
			set_desc(&r, 1, 0x1234, 4096, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
			set_desc(&r, 2, (ram_pages + 0x10000) << 12, 0x10000, VRING_DESC_F_WRITE, 0);
			raw_kick(&r, 0);
			raw_refused(&r);
			attacks += 3;
		}
		/* Statistics with tags nobody knows. */
		if (raw_setup(&r, 2, 1ull << VIRTIO_BALLOON_F_STATS_VQ)) {
			memset(r.buf + 8192, 0xee, 4096);
			set_desc(&r, 0, virt_to_phys(r.buf + 8192), 4096, 0, 0);
			raw_kick(&r, 0);
			attacks++;
		}
	}
	common8(&r, VIRTIO_PCI_COMMON_STATUS, 0);
	done("balloon");
}

static const uint8_t spoofed[][6] = {
	{ 0x02, 0x66, 0x66, 0x66, 0x66, 0x66 },
	{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },  /* broadcast as a source */
	{ 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 },  /* multicast as a source */
	{ 0, 0, 0, 0, 0, 0 },
};

static bool parse_mac(const char *s, uint8_t mac[6])
{
	for (int i = 0; i < 6; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++, s++) {
			char c = *s;
			unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) :
				     c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 16;
			if (d > 15)
				return false;
			v = v << 4 | d;
		}
		mac[i] = (uint8_t)v;
		if (i < 5 && *s++ != ':')
			return false;
	}
	return true;
}

static bool send_frame(struct vnet *n, const uint8_t *dst, const uint8_t *src, uint32_t len)
{
	uint32_t cap;
	uint8_t *f = vnet_tx_get(n, 0, &cap);
	if (!f)
		return false;
	if (len > cap)
		len = cap;
	memset(f, 0x42, len);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88;  /* a local experimental EtherType */
	f[13] = 0xb5;
	vnet_tx_put(n, 0, f, len);
	return true;
}

/* msgping's end message: its first word (guest/apps/msgping.c). */
#define PING_END 0x21444e45u

/* The victim's NIC must be up while the channel is bound and lied on; a
 * pong that waits for this message keeps it up exactly that long. */
static void release_victim(void)
{
	const char *name = cmdline_get("release");
	if (!name)
		return;
	uint32_t id = msgq_open() == 0 ? msgq_peer(name) : 0;
	uint8_t *slot = id ? msgq_alloc(4) : NULL;
	if (!slot) {
		kprintf("hostile: net: release=%s is not a msgq peer\n", name);
		return;
	}
	uint32_t end = PING_END;
	memcpy(slot, &end, sizeof(end));
	int st = msgq_wait_peer(id, MSG_COPY, 60000000000ull);
	if (st == MSGQ_OK)
		st = msg_send(id, slot, sizeof(end), MSG_COPY | MSG_IMMEDIATE);
	msgq_free(slot, 4);
	kprintf("hostile: net: released %s (status %d)\n", name, st);
}

static void phase_net(void)
{
	struct vnet *n = vnet_get(0);
	uint8_t victim[6];
	if (!n) {
		kprintf("hostile: net: no NIC\n");
		return;
	}
	bool have_victim = parse_mac(cmdline_get_str("victim_mac", ""), victim);
	const uint8_t *dst = have_victim ? victim : spoofed[1];
	/* Spoofed sources, and frames over the MTU (the buffers hold more). */
	for (unsigned i = 0; i < 200; i++) {
		attacks += send_frame(n, dst, spoofed[i % ARRAY_SIZE(spoofed)], 100);
		if (have_victim)
			attacks += send_frame(n, dst, victim, 100);  /* the victim's own address */
		attacks += send_frame(n, dst, n->mac, n->mtu + 14 + 1 + i % 300);
		vnet_flush(n, 0);
		vnet_tx_reclaim(n, 0);
	}
	/* Traffic to the victim under our own name: ferry binds a zero-copy
	 * channel between us if both drivers took the feature. */
	unsigned channel = FERRY_ZC_CHANNELS;
	for (unsigned i = 0; i < 3000 && have_victim && n->zc && channel == FERRY_ZC_CHANNELS; i++) {
		send_frame(n, victim, n->mac, 60);
		vnet_flush(n, 0);
		vnet_tx_reclaim(n, 0);
		sleep_ms(5);
		int c = vnet_zc_channel_for(n, victim);
		if (c >= 0)
			channel = (unsigned)c;
	}
	if (channel < FERRY_ZC_CHANNELS) {
		struct vnet_zc *z = &n->zcc[channel];
		/* Lies: the producer index jumps ahead and back, the consumer index
		 * claims frames never sent, lengths in the slots are absurd. */
		for (unsigned i = 0; i < 64; i++) {
			*(volatile uint32_t *)FERRY_ZC_SLOT(z->tx_area, i) = 0xffffffffu - i;
			__atomic_store_n(&z->tx->prod, z->prod + 1000 * (i + 1), __ATOMIC_RELEASE);
			__atomic_store_n(&z->tx->cons, 0x80000000u + i, __ATOMIC_RELEASE);
			__atomic_store_n(&z->tx->wake_tx, i + 1, __ATOMIC_RELEASE);
			mmio_write16(z->doorbell, (uint16_t)(FERRY_ZC_DOORBELL_QUEUE + channel));
			attacks += 4;
		}
		/* The receive area is read-only: these writes exit and are refused. */
		for (unsigned i = 0; i < 64; i++) {
			*(volatile uint32_t *)(z->rx_area + i * 64) = 0xdeadbeef;
			attacks++;
		}
		kprintf("hostile: net: lied on zero-copy channel %u\n", channel);
	} else if (have_victim) {
		kprintf("hostile: net: no zero-copy channel was bound\n");
	}
	/* Receive buffers: this NIC never gives back what it is sent. */
	kprintf("hostile: net: leaving its receive buffers to fill\n");
	release_victim();
	done("net");
}

static void phase_chains(void)
{
	static const struct {
		uint16_t type, q, wflag;
		const char *name;
	} targets[] = {
		{ VIRTIO_ID_RNG, 0, VRING_DESC_F_WRITE, "virtio-rng" },
		{ VIRTIO_ID_BALLOON, 0, 0, "virtio-balloon inflate" },
		{ VIRTIO_ID_BALLOON, 3, VRING_DESC_F_WRITE, "virtio-balloon reporting" },
		{ VIRTIO_ID_MSGQ, MSGQ_QUEUE_SEND, 0, "msgq send" },
		{ VIRTIO_ID_MSGQ, MSGQ_QUEUE_RETURN, 0, "msgq return" },
		{ VIRTIO_ID_NET, 1, 0, "virtio-net transmit" },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(targets); i++) {
		struct raw r;
		memset(&r, 0, sizeof(r));
		if (virtio_pci_probe(&r.vd, targets[i].type, 0) != 0)
			continue;
		if (!raw_setup(&r, targets[i].q, targets[i].type == VIRTIO_ID_BALLOON ? 1ull << VIRTIO_BALLOON_F_REPORTING : 0))
			continue;
		chain_attacks(&r, targets[i].name, targets[i].wflag);
		common8(&r, VIRTIO_PCI_COMMON_STATUS, 0);
	}
	done("chains");
}

/* Double fetch: CPU 1 keeps rewriting descriptor 0 between a good buffer
 * and a wild one while CPU 0 posts it again and again. */
struct refetch {
	struct raw *r;
	volatile bool stop;
	uint64_t flips;
};

static void refetch_flipper(void *arg)
{
	struct refetch *x = arg;
	uint64_t good = virt_to_phys(x->r->buf);
	while (!x->stop) {
		volatile struct vring_desc *d = x->r->desc;
		d->addr = good;
		d->len = 64;
		d->addr = 0xfffffffffffff000ull;
		d->len = 0xffffffffu;
		d->flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT;
		d->next = 0;
		d->flags = VRING_DESC_F_WRITE;
		x->flips++;
	}
}

static void phase_refetch(void)
{
	struct raw r;
	if (smp_cpu_count() < 2) {
		kprintf("hostile: refetch: needs a second vCPU\n");
		return;
	}
	if (!raw_open(&r, VIRTIO_ID_RNG, 0)) {
		kprintf("hostile: refetch: no virtio-rng\n");
		return;
	}
	struct refetch x = { .r = &r };
	if (smp_call_async(1, refetch_flipper, &x) != 0) {
		kprintf("hostile: refetch: CPU 1 is busy\n");
		return;
	}
	uint64_t until = time_ns() + phase_ms * 1000000ull;
	unsigned resets = 0, posted = 0;
	while (time_ns() < until) {
		if (!r.ok || (status(&r) & STATUS_NEEDS_RESET)) {
			resets++;
			x.stop = true; /* the flipper writes the table raw_setup clears */
			smp_call_wait(1);
			raw_setup(&r, 0, 0);
			x.stop = false;
			if (smp_call_async(1, refetch_flipper, &x) != 0)
				break;
		}
		raw_kick(&r, 0);
		posted++;
	}
	x.stop = true;
	smp_call_wait(1);
	attacks += posted;
	kprintf("hostile: refetch: %u posts, %lu rewrites, %u resets\n", posted, x.flips, resets);
	common8(&r, VIRTIO_PCI_COMMON_STATUS, 0);
	done("refetch");
}

static void phase_storm(void)
{
	struct raw r;
	uint64_t until;
	if (raw_open(&r, VIRTIO_ID_RNG, 0)) {
		/* Doorbells that reach ferry by ioeventfd, with nothing posted. */
		until = time_ns() + phase_ms * 1000000ull / 3;
		while (time_ns() < until) {
			for (int i = 0; i < 256; i++)
				mmio_write16(r.notify, 0);
			attacks += 256;
		}
		/* Interrupts: one-byte requests, as fast as they complete. */
		struct virtio_dev vd;
		struct virtqueue vq;
		if (virtio_pci_probe(&vd, VIRTIO_ID_RNG, 0) == 0 && virtio_init(&vd, 0) == 0 &&
		    virtio_setup_queue(&vd, &vq, 0, 64) == 0) {
			virtio_driver_ok(&vd);
			uint8_t *b = kmalloc(64);
			until = time_ns() + phase_ms * 1000000ull / 3;
			while (time_ns() < until) {
				struct vq_seg s = { b, 1 };
				uint32_t len;
				for (int k = 0; k < 32; k++)
					if (vq_add(&vq, &s, 0, 1, b + k % 64) == 0)
						attacks++;
				vq_kick(&vq);
				while (vq_get_used(&vq, &len))
					;
			}
			virtio_reset(&vd);
		}
	}
	/* Doorbells that trap: msgq's send and return queues, nothing posted. */
	struct raw m;
	if (raw_open(&m, VIRTIO_ID_MSGQ, MSGQ_QUEUE_SEND)) {
		until = time_ns() + phase_ms * 1000000ull / 3;
		while (time_ns() < until) {
			mmio_write16(m.notify, MSGQ_QUEUE_SEND);
			mmio_write16(m.notify + 2 * m.vd.notify_off_multiplier, MSGQ_QUEUE_RETURN);
			mmio_write16(m.notify + 40 * m.vd.notify_off_multiplier, 40); /* a queue that does not exist */
			attacks += 3;
		}
		common8(&m, VIRTIO_PCI_COMMON_STATUS, 0);
	}
	/* ivshmem doorbells: to itself, to every peer id, every vector. */
	if (ivshmem_open() == 0) {
		until = time_ns() + phase_ms * 1000000ull / 3;
		while (time_ns() < until) {
			for (uint16_t p = 0; p < 20; p++)
				for (uint16_t v = 0; v < 6; v++) {
					ivshmem_doorbell(p, v);
					attacks++;
				}
		}
	}
	done("storm");
}

/* The MSI-X table of a device (its first entries), mapped. */
static volatile uint32_t *msix_table(struct pci_dev *d)
{
	uint8_t cap = pci_find_cap(d, PCI_CAP_ID_MSIX, 0);
	if (!cap)
		return NULL;
	uint32_t t = pci_read32(d, cap + PCI_MSIX_TABLE);
	uintptr_t base = pci_map_bar(d, t & 7);
	return base ? (volatile uint32_t *)(base + (t & ~7u)) : NULL;
}

static void phase_msix(void)
{
	struct virtio_dev vd;
	struct virtqueue vq;
	if (virtio_pci_probe(&vd, VIRTIO_ID_RNG, 0) != 0 || virtio_init(&vd, 0) != 0 ||
	    virtio_setup_queue(&vd, &vq, 0, 64) != 0) {
		kprintf("hostile: msix: no virtio-rng\n");
		return;
	}
	virtio_driver_ok(&vd);
	struct pci_dev *d = vd.pci;
	volatile uint32_t *t = msix_table(d);
	uint8_t cap = pci_find_cap(d, PCI_CAP_ID_MSIX, 0);
	uint8_t *b = kmalloc(64);
	if (!t || !cap)
		return;
	static const uint32_t addrs[] = { 0xdead0000u, 0, 0xfec00000u, 0xfffff000u };
	for (unsigned round = 0; round < 64; round++) {
		/* Entry 1 (the queue's) pointed away from the LAPIC, then raised. */
		t[4 + 0] = addrs[round % ARRAY_SIZE(addrs)];
		t[4 + 1] = round % 2 ? 0xffffffffu : 0;
		t[4 + 2] = 0xffffffffu;
		t[4 + 3] = round % 3 == 0;          /* masked now and then: pending bits */
		struct vq_seg s = { b, 8 };
		uint32_t len;
		if (vq_add(&vq, &s, 0, 1, b) == 0)
			vq_kick(&vq);
		for (int k = 0; k < 1000 && !vq_get_used(&vq, &len); k++)
			cpu_relax();
		/* Entries and PBA beyond the table; writes to the PBA; widths
		 * the table does not take. */
		t[64 * 4] = 1;
		*(volatile uint8_t *)&t[4] = 0xff;
		*(volatile uint16_t *)&t[4 + 2] = 0xffff;
		*(volatile uint64_t *)&t[0] = ~0ull;
		volatile uint32_t *pba = (volatile uint32_t *)((uintptr_t)t + 0x1000);
		pba[0] = 0xffffffffu;
		(void)pba[1];
		/* Function mask and enable flipped, the size bits written. */
		pci_write16(d, cap + PCI_MSIX_CTRL, (uint16_t)(round % 2 ? 0xffff : 0x3fff));
		pci_write16(d, cap + PCI_MSIX_CTRL, PCI_MSIX_CTRL_ENABLE | (round % 4 == 1 ? PCI_MSIX_CTRL_MASKALL : 0));
		/* Vectors the device does not have. */
		mmio_write16(vd.common + VIRTIO_PCI_COMMON_MSIX, (uint16_t)(0xfff0 + round % 16));
		mmio_write16(vd.common + VIRTIO_PCI_COMMON_Q_SELECT, 0);
		mmio_write16(vd.common + VIRTIO_PCI_COMMON_Q_MSIX, (uint16_t)(100 + round));
		attacks += 10;
	}
	virtio_reset(&vd);
	done("msix");
}

static void sweep(uintptr_t base, uint64_t from, uint64_t to, uint64_t step)
{
	static const uint64_t values[] = { 0, ~0ull, 0x5a5a5a5a5a5a5a5aull };
	for (uint64_t off = from; off < to; off += step) {
		uintptr_t a = base + off;
		(void)mmio_read8(a);
		(void)mmio_read16(a);
		(void)mmio_read32(a);
		(void)*(volatile uint64_t *)a;
		uint64_t v = values[(off / step) % ARRAY_SIZE(values)];
		mmio_write8(a, (uint8_t)v);
		mmio_write16(a, (uint16_t)v);
		mmio_write32(a, (uint32_t)v);
		*(volatile uint64_t *)a = v;
		attacks += 8;
	}
}

static void phase_regs(void)
{
	static const uint16_t types[] = { VIRTIO_ID_RNG, VIRTIO_ID_BALLOON, VIRTIO_ID_MSGQ, VIRTIO_ID_NET,
					  VIRTIO_ID_CPU_RESERVE };
	for (unsigned i = 0; i < ARRAY_SIZE(types); i++) {
		struct virtio_dev vd;
		if (virtio_pci_probe(&vd, types[i], 0) != 0)
			continue;
		uintptr_t bar = vd.common; /* common config is at the start of BAR 0 */
		sweep(bar, 0, 0x48, 1);               /* common configuration */
		sweep(bar, 0x1000, 0x1008, 1);        /* ISR */
		sweep(bar, 0x2000, 0x2000 + 0x120, 1); /* device configuration and past it */
		sweep(bar, 0x3000, 0x3000 + 0x50, 1); /* notify */
		sweep(bar, 0x4000, 0x4000 + 0x150, 1); /* MSI-X table */
		sweep(bar, 0x5000, 0x5000 + 0x10, 1);  /* PBA */
		sweep(bar, 0, 0x8000, 0x80);          /* the rest, sparsely */
		virtio_reset(&vd);
	}
	struct pci_dev *iv = pci_find(IVSHMEM_PCI_VENDOR, IVSHMEM_PCI_DEVICE, 0);
	uintptr_t regs = iv ? pci_map_bar(iv, IVSHMEM_REG_BAR) : 0;
	if (regs)
		sweep(regs, 0, IVSHMEM_REG_SIZE, 1);
	done("regs");
}

static uint64_t bar_get(struct pci_dev *d, unsigned bar)
{
	uint64_t lo = pci_read32(d, PCI_BAR0 + 4 * bar);
	return (lo & ~0xfull) | ((lo & PCI_BAR_MEM_64) ? (uint64_t)pci_read32(d, PCI_BAR0 + 4 * bar + 4) << 32 : 0);
}

static void bar_set(struct pci_dev *d, unsigned bar, uint64_t addr)
{
	uint32_t lo = pci_read32(d, PCI_BAR0 + 4 * bar);
	pci_write32(d, PCI_BAR0 + 4 * bar, (uint32_t)addr);
	if (lo & PCI_BAR_MEM_64)
		pci_write32(d, PCI_BAR0 + 4 * bar + 4, (uint32_t)(addr >> 32));
}

static void phase_bars(void)
{
	struct pci_dev *victim = NULL, *other = NULL;
	for (unsigned i = 0; i < pci_count(); i++) {
		struct pci_dev *d = pci_get(i);
		if (d->vendor != PCI_VENDOR_ID_REDHAT_QUMRANET)
			continue;
		if (!victim)
			victim = d;
		else if (!other)
			other = d;
	}
	if (!victim) {
		kprintf("hostile: bars: no device\n");
		return;
	}
	uint64_t targets[] = {
		0x1000000,                               /* RAM */
		0x0,                                     /* address zero */
		other ? bar_get(other, 0) : 0x2000000,   /* another device */
		FERRY_PCI_ECAM_GPA,                      /* ECAM */
		0xfee00000ull,                           /* the LAPIC */
		0xfffffffffffff000ull,                   /* the top (a 32-bit BAR truncates it) */
	};
	uint16_t cmd = pci_read16(victim, PCI_COMMAND);
	for (unsigned b = 0; b < 6; b++) {
		uint64_t was = bar_get(victim, b);
		if (!was)
			continue;
		for (unsigned i = 0; i < ARRAY_SIZE(targets); i++) {
			pci_write16(victim, PCI_COMMAND, 0);
			bar_set(victim, b, targets[i]);
			pci_write16(victim, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
			if (targets[i] && targets[i] < 0x100000000ull && targets[i] != 0xfee00000ull) {
				/* Whatever answers there now: RAM, the other device, ECAM. */
				(void)mmio_read32((uintptr_t)targets[i]);
			}
			attacks++;
		}
		pci_write16(victim, PCI_COMMAND, 0);
		bar_set(victim, b, was);
		pci_write16(victim, PCI_COMMAND, cmd);
	}
	/* Device windows (memory slots: msgq's pages, ivshmem's link memory,
	 * the NIC's zero-copy areas) moved onto RAM and onto each other. */
	uint64_t windows[8];
	struct pci_dev *wdev[8];
	unsigned nw = 0;
	for (unsigned i = 0; i < pci_count() && nw < 8; i++) {
		struct pci_dev *d = pci_get(i);
		if (d->bar[2].size && d->bar[2].mem64) {
			wdev[nw] = d;
			windows[nw++] = bar_get(d, 2);
		}
	}
	for (unsigned i = 0; i < nw; i++) {
		struct pci_dev *d = wdev[i];
		uint16_t c = pci_read16(d, PCI_COMMAND);
		uint64_t onto[] = { 0x1000000, windows[(i + 1) % nw], 0 };
		for (unsigned k = 0; k < ARRAY_SIZE(onto); k++) {
			pci_write16(d, PCI_COMMAND, 0);
			bar_set(d, 2, onto[k]);
			pci_write16(d, PCI_COMMAND, PCI_COMMAND_MEMORY);
			attacks++;
		}
		pci_write16(d, PCI_COMMAND, 0);
		bar_set(d, 2, windows[i]);
		pci_write16(d, PCI_COMMAND, c);
	}
	done("bars");
}

static void phase_pci(void)
{
	uint8_t saved[256];
	for (unsigned i = 0; i < pci_count(); i++) {
		struct pci_dev *d = pci_get(i);
		for (unsigned off = 0; off < 256; off += 4)
			memcpy(saved + off, &(uint32_t){ pci_read32(d, off) }, 4);
		for (unsigned off = 0; off < 256; off++) {
			(void)pci_read8(d, off);
			if (off % 2 == 0)
				(void)pci_read16(d, off);
			pci_write8(d, off, 0xff);
			if (off % 2 == 0)
				pci_write16(d, off, 0xffff);
			if (off % 4 == 0)
				pci_write32(d, off, 0xffffffffu);
			attacks += 5;
		}
		/* Restored, BARs first with decoding off. */
		pci_write16(d, PCI_COMMAND, 0);
		for (unsigned off = PCI_BAR0; off < PCI_BAR0 + 24; off += 4)
			pci_write32(d, off, *(uint32_t *)(saved + off));
		for (unsigned off = 0x40; off < 256; off += 4)
			pci_write32(d, off, *(uint32_t *)(saved + off));
		pci_write16(d, PCI_COMMAND, *(uint16_t *)(saved + PCI_COMMAND));
		/* ECAM: the extended space, every width, and accesses it refuses. */
		{ /* below 4 GiB: identity-mapped uncached since boot */
			uintptr_t e = (uintptr_t)FERRY_PCI_ECAM_GPA + ((uintptr_t)d->dev << 15);
			for (unsigned off = 256; off < 4096; off += 124) {
				(void)mmio_read32(e + (off & ~3u));
				mmio_write32(e + (off & ~3u), 0xffffffffu);
				(void)mmio_read16(e + off + 1);                 /* misaligned */
				(void)*(volatile uint64_t *)(e + (off & ~7u));  /* too wide */
				attacks += 4;
			}
		}
	}
	done("pci");
}

/* Posts the same worst legal chain again as soon as the device is done
 * with it (or has refused it), for the phase's time. */
static unsigned worst_loop(struct raw *r, unsigned nseg, uint64_t until)
{
	unsigned chains = 0;
	while (time_ns() < until) {
		raw_kick(r, 0);
		uint64_t give_up = time_ns() + 1000000000ull;
		while (__atomic_load_n(&r->used->idx, __ATOMIC_ACQUIRE) == r->used_seen && time_ns() < give_up &&
		       !(status(r) & STATUS_NEEDS_RESET))
			cpu_relax();
		r->used_seen = r->used->idx;
		if (status(r) & STATUS_NEEDS_RESET)
			return chains;
		chains++;
	}
	(void)nseg;
	return chains;
}

static void phase_worst(void)
{
	uint64_t until = time_ns() + phase_ms * 1000000ull;
	struct raw r;
	unsigned n = 0;
	/* msgq returns: 256 entries, each naming slots it never received. */
	if (raw_open(&r, VIRTIO_ID_MSGQ, MSGQ_QUEUE_RETURN)) {
		struct msgq_return *ret = (struct msgq_return *)r.buf;
		for (unsigned i = 0; i < 256; i++)
			ret[i] = (struct msgq_return){ .slot = i * 7, .nr_pages = 1 + i % 3 };
		set_desc(&r, 0, virt_to_phys(ret), 256 * sizeof(*ret), 0, 0);
		n = worst_loop(&r, 1, until);
		kprintf("hostile: worst: %u msgq return chains of 256 bad entries\n", n);
		attacks += n * 256ull;
		common8(&r, VIRTIO_PCI_COMMON_STATUS, 0);
	}
	until = time_ns() + phase_ms * 1000000ull;
	/* Balloon: 4096 frames at a time (its limit per chain), all refused. */
	if (raw_open(&r, VIRTIO_ID_BALLOON, 1)) {
		uint32_t *pfn = (uint32_t *)r.buf;
		for (unsigned i = 0; i < 4096; i++)
			pfn[i] = 0x100 + i;        /* deflates of frames it never gave */
		set_desc(&r, 0, virt_to_phys(pfn), 4096 * 4, 0, 0);
		n = worst_loop(&r, 1, until);
		kprintf("hostile: worst: %u balloon deflate lists of 4096 frames\n", n);
		attacks += n * 4096ull;
		common8(&r, VIRTIO_PCI_COMMON_STATUS, 0);
	}
	until = time_ns() + phase_ms * 1000000ull;
	/* virtio-rng: every descriptor of the ring, 64 MiB each. */
	void *big = alloc_pages(14);
	if (big && raw_open(&r, VIRTIO_ID_RNG, 0)) {
		for (unsigned i = 0; i < r.size; i++)
			set_desc(&r, i, virt_to_phys(big), 64u << 20 > (PAGE_SIZE << 14) ? (uint32_t)(PAGE_SIZE << 14) : 64u << 20,
				 VRING_DESC_F_WRITE | (i + 1 < r.size ? VRING_DESC_F_NEXT : 0), (uint16_t)(i + 1));
		n = worst_loop(&r, r.size, until);
		kprintf("hostile: worst: %u entropy chains of %u large buffers\n", n, r.size);
		attacks += n;
		common8(&r, VIRTIO_PCI_COMMON_STATUS, 0);
	}
	until = time_ns() + phase_ms * 1000000ull;
	/* virtio-net: 128-segment frames of junk to nobody. */
	if (raw_open(&r, VIRTIO_ID_NET, 1)) {
		memset(r.buf, 0, 12);
		for (unsigned i = 0; i < 128; i++)
			set_desc(&r, i, virt_to_phys(r.buf) + (i ? 12 + i * 12 : 0), 12,
				 i + 1 < 128 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
		n = worst_loop(&r, 128, until);
		kprintf("hostile: worst: %u transmit chains of 128 segments\n", n);
		attacks += n;
		common8(&r, VIRTIO_PCI_COMMON_STATUS, 0);
	}
	done("worst");
}

static int hostile_main(void)
{
	phase_ms = cmdline_get_u64("ms", 1000);
	kprintf("hostile: starting on %u vCPUs\n", smp_cpu_count());
	if (want("net"))
		phase_net();
	if (want("console"))
		phase_console();
	if (want("msgq"))
		phase_msgq();
	if (want("balloon"))
		phase_balloon();
	if (want("chains"))
		phase_chains();
	if (want("refetch"))
		phase_refetch();
	if (want("storm"))
		phase_storm();
	if (want("msix"))
		phase_msix();
	if (want("regs"))
		phase_regs();
	if (want("bars"))
		phase_bars();
	if (want("pci"))
		phase_pci();
	if (want("worst"))
		phase_worst();
	kprintf("hostile: finished\n");
	return FERRY_EXIT_OK;
}

APP("hostile", "attacks every device it finds (phases=..., see guest/apps/hostile.c)", hostile_main);
