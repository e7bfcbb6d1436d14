/* selftest: exercises the kernel's subsystems, one named check each. Prints
 * "selftest: <check> ok", "... FAILED: <why>" or "... skipped: <why>", then a
 * summary, and exits 0 only if nothing failed. */
#include <ferry/debug_exit.h>
#include "acpi.h"
#include "app.h"
#include "checksum.h"
#include "cmdline.h"
#include "heap.h"
#include "interrupt.h"
#include "kernel.h"
#include "kstring.h"
#include "lapic.h"
#include "native.h"
#include "page_alloc.h"
#include "pci.h"
#include "smp.h"
#include "spinlock.h"
#include "timer.h"
#include "virtio_balloon.h"
#include "virtio_net.h"
#include "net.h"
#include "virtio_rng.h"
#include "work.h"
#include "virtqueue.h"

enum result { PASS, FAIL, SKIP };
static char why[160];

static enum result PRINTF_LIKE(1, 2) failed(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kvsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return FAIL;
}

static enum result skipped(const char *reason)
{
	strlcpy(why, reason, sizeof(why));
	return SKIP;
}

static enum result check_lib(void)
{
	static const uint8_t ip_header[] = {  /* RFC 1071-style example header */
		0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
		0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
	};
	char buf[96];
	uint64_t v;

	ksnprintf(buf, sizeof(buf), "%d|%5u|%-4x|%04X|%s|%c|%%|%lld|%zu|%#x|%.3s|%p",
		  -42, 7u, 0xabu, 0xbeefu, "str", 'c', -1234567890123ll, (size_t)99, 255, "abcdef",
		  (void *)0x1000);
	if (strcmp(buf, "-42|    7|ab  |BEEF|str|c|%|-1234567890123|99|0xff|abc|0x1000"))
		return failed("ksnprintf gave \"%s\"", buf);
	if (ksnprintf(buf, 4, "%s", "truncated") != 9 || strcmp(buf, "tru"))
		return failed("ksnprintf truncation");
	if (ksnprintf(buf, sizeof(buf), "%02x:%04X|%-3d|%5s", 1, 0xd, 7, "ab") != 17)
		return failed("ksnprintf returned the wrong length for \"%s\"", buf);
	if (checksum_inet(ip_header, sizeof(ip_header)) != 0xb861)
		return failed("checksum_inet gave %#x", checksum_inet(ip_header, sizeof(ip_header)));
	if (!parse_size("64K", &v) || v != 65536 || !parse_size("0x10M", &v) || v != 16 * MiB ||
	    parse_size("12Q", &v) || parse_size("", &v))
		return failed("parse_size");
	return PASS;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static enum result page_alloc_counted(void);

/* The free-page count must move exactly by what the check allocates, so
 * nothing else may take pages meanwhile: the balloon driver, reserving
 * pages for the host in the background, is held still for the check. */
static enum result check_page_alloc(void)
{
	enum result r;

	balloon_pause(true);
	r = page_alloc_counted();
	balloon_pause(false);
	return r;
}

static enum result page_alloc_counted(void)
{
	enum { ORDERS = 10, PER_ORDER = 2, N = ORDERS * PER_ORDER };
	static struct page_block blocks[N], bulk[64];
	struct page_alloc_stats before, after;
	uint64_t got;
	size_t nbulk;

	page_alloc_stats(&before);
	if (!before.total_pages || before.free_pages > before.total_pages)
		return failed("stats: %lu free of %lu", before.free_pages, before.total_pages);

	for (unsigned i = 0; i < N; i++) {
		unsigned order = i / PER_ORDER;
		uint64_t *p = alloc_pages(order);
		uint64_t size = PAGE_SIZE << order;

		if (!p)
			return failed("alloc_pages(%u) failed", order);
		blocks[i].addr = virt_to_phys(p);
		blocks[i].order = order;
		if (blocks[i].addr & (size - 1))
			return failed("order %u block at %#lx is not aligned", order, blocks[i].addr);
		for (unsigned j = 0; j < i; j++) {
			if (overlaps(blocks[i].addr, size, blocks[j].addr, PAGE_SIZE << blocks[j].order))
				return failed("blocks %#lx and %#lx overlap", blocks[i].addr, blocks[j].addr);
		}
		/* A word per page, so every page is touched without writing megabytes. */
		for (uint64_t off = 0; off < size; off += PAGE_SIZE)
			p[off / 8] = blocks[i].addr + off;
	}
	for (unsigned i = 0; i < N; i++) {
		const uint64_t *p = phys_to_virt(blocks[i].addr);
		for (uint64_t off = 0; off < (PAGE_SIZE << blocks[i].order); off += PAGE_SIZE) {
			if (p[off / 8] != blocks[i].addr + off)
				return failed("pattern lost at %#lx", blocks[i].addr + off);
		}
	}
	page_alloc_stats(&after);
	if (before.free_pages - after.free_pages != PER_ORDER * ((1ull << ORDERS) - 1))
		return failed("free count off: %lu -> %lu", before.free_pages, after.free_pages);
	/* Free in an order that makes the allocator coalesce out of sequence. */
	for (unsigned i = 0; i < N; i += 2)
		free_pages(phys_to_virt(blocks[i].addr), blocks[i].order);
	for (unsigned i = 1; i < N; i += 2)
		free_pages(phys_to_virt(blocks[i].addr), blocks[i].order);

	nbulk = alloc_pages_bulk(1000, PAGE_ORDER_2M, bulk, ARRAY_SIZE(bulk), &got);
	if (got != 1000)
		return failed("alloc_pages_bulk gave %lu of 1000 pages", got);
	for (size_t i = 0; i < nbulk; i++) {
		if (bulk[i].order > PAGE_ORDER_2M || (i && bulk[i].order > bulk[i - 1].order))
			return failed("alloc_pages_bulk block %zu has order %u", i, bulk[i].order);
	}
	if (bulk[0].order != 9 || bulk[0].addr & (2 * MiB - 1))
		return failed("alloc_pages_bulk did not start with an aligned 2 MiB block");
	for (size_t i = 0; i < nbulk; i++)
		free_pages(phys_to_virt(bulk[i].addr), bulk[i].order);

	page_alloc_stats(&after);
	if (after.free_pages != before.free_pages ||
	    memcmp(after.free_blocks, before.free_blocks, sizeof(after.free_blocks)))
		return failed("not restored after freeing: %lu free pages, was %lu",
			      after.free_pages, before.free_pages);
	return PASS;
}

static enum result check_heap(void)
{
	static const size_t sizes[] = { 1, 8, 16, 17, 100, 500, 2032, 2033, 4096, 20000 };
	uint8_t *p[ARRAY_SIZE(sizes)];
	struct heap_stats before, after;

	heap_stats(&before);
	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		p[i] = kmalloc(sizes[i]);
		if (!p[i])
			return failed("kmalloc(%zu) failed", sizes[i]);
		if ((uintptr_t)p[i] & 15)
			return failed("kmalloc(%zu) = %p is not 16-byte aligned", sizes[i], (void *)p[i]);
		memset(p[i], (int)i + 1, sizes[i]);
	}
	/* Objects are filled whole, so an overlap shows at one of their ends. */
	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i++) {
		if (p[i][0] != i + 1 || p[i][sizes[i] - 1] != i + 1)
			return failed("object %u (size %zu) was overwritten", i, sizes[i]);
	}
	for (unsigned i = 0; i < ARRAY_SIZE(sizes); i += 2)
		kfree(p[i]);
	for (unsigned i = 1; i < ARRAY_SIZE(sizes); i += 2)
		kfree(p[i]);
	p[0] = kzalloc(300);
	for (unsigned b = 0; p[0] && b < 300; b++) {
		if (p[0][b])
			return failed("kzalloc memory not zeroed");
	}
	kfree(p[0]);
	heap_stats(&after);
	if (after.allocations != before.allocations || after.bytes_in_use != before.bytes_in_use)
		return failed("stats not restored: %zu allocations, %zu bytes",
			      after.allocations, after.bytes_in_use);
	return PASS;
}

static enum result check_exceptions(void)
{
	const struct fault_record *f = fault_last();
	volatile uint64_t *unmapped = (volatile uint64_t *)0x00007ffffffff000ull;
	uint32_t lo = 1, hi = 0, zero = 0;
	uint64_t value = 0;

	fault_clear();
	asm volatile("1: ud2\n2:\n" EXTABLE(1b, 2b));
	if (f->vector != 6)
		return failed("ud2: expected vector 6, got %d", f->vector);

	fault_clear();
	asm volatile("1: divl %2\n2:\n" EXTABLE(1b, 2b) : "+a"(lo), "+d"(hi) : "r"(zero));
	if (f->vector != 0)
		return failed("divide by zero: expected vector 0, got %d", f->vector);

	fault_clear();
	asm volatile("1: mov (%1), %0\n2:\n" EXTABLE(1b, 2b) : "+r"(value) : "r"(unmapped));
	if (f->vector != 14 || f->cr2 != (uintptr_t)unmapped)
		return failed("unmapped read: expected #PF at %p, got vector %d cr2 %#lx",
			      (void *)unmapped, f->vector, f->cr2);
	fault_clear();
	return PASS;
}

static void count_irq(void *counter)
{
	(*(volatile unsigned *)counter)++;
}

static bool counter_nonzero(void *counter)
{
	return *(volatile unsigned *)counter != 0;
}

static enum result check_interrupts(void)
{
	volatile unsigned hits = 0;
	int vector = irq_alloc_vector(count_irq, (void *)&hits);
	bool delivered;

	if (vector < 0)
		return failed("no free vector");
	lapic_send_self_ipi((uint8_t)vector);
	delivered = halt_until(counter_nonzero, (void *)&hits, 100000000);
	irq_unregister((unsigned)vector);
	if (!delivered)
		return failed("self-IPI on vector %#x not delivered within 100 ms", vector);
	if (hits != 1)
		return failed("handler ran %u times", hits);
	return PASS;
}

static void set_flag(void *flag)
{
	*(volatile bool *)flag = true;
}

static bool flag_set(void *flag)
{
	return *(volatile bool *)flag;
}

static enum result check_timer(void)
{
	volatile bool fired = false;
	struct timer t;
	uint64_t start, elapsed, irqs = irq_count(VECTOR_TIMER);

	if (!tsc_khz() || !lapic_timer_khz())
		return failed("not calibrated: tsc %lu kHz, lapic %lu kHz", tsc_khz(), lapic_timer_khz());
	timer_start(&t, 1000000, set_flag, (void *)&fired);
	if (!halt_until(flag_set, (void *)&fired, 100000000))
		return failed("1 ms one-shot timer did not fire within 100 ms");
	if (irq_count(VECTOR_TIMER) == irqs)
		return failed("timer fired without a LAPIC timer interrupt");

	/* Early is wrong; late is the host's scheduling (a vCPU of a loaded
	 * host may wait long for a CPU), unless so late that the timer was
	 * programmed wrong (100x). */
	start = time_ns();
	sleep_ms(20);
	elapsed = time_ns() - start;
	if (elapsed < 10000000 || elapsed > 2000000000)
		return failed("sleep_ms(20) took %lu us", elapsed / 1000);
	return PASS;
}

static enum result check_acpi(void)
{
	if (!acpi.rsdp)
		return failed("no RSDP");
	if (!acpi.have_madt)
		return failed("no MADT");
	if (acpi.ncpus < 1)
		return failed("MADT lists no enabled CPU");
	if (acpi.nioapics < 1)
		return failed("MADT lists no I/O APIC");
	return PASS;
}

static enum result check_pci(void)
{
	struct pci_dev *d = pci_get(0);

	if (!pci_count())
		return skipped("no PCI bus");
	if (d->bus || d->dev || d->fn || d->class >> 8 != 0x0600)
		return failed("00:00.0 is not a host bridge (class %06x)", d->class);
	return PASS;
}

static void whoami(void *slot)
{
	*(volatile uint32_t *)slot = this_cpu()->index << 16 | this_cpu()->apic_id;
}

static enum result check_smp(void)
{
	unsigned n = smp_cpu_count();
	volatile uint32_t slot;

	if (acpi.ncpus > n)
		return failed("%u CPUs in the MADT, %u started", acpi.ncpus, n);
	if (n == 1)
		return skipped("one CPU");
	for (unsigned i = 1; i < n; i++) {
		slot = UINT32_MAX;
		if (smp_call(i, whoami, (void *)&slot))
			return failed("smp_call to CPU %u failed", i);
		if (slot != (i << 16 | smp_cpu(i)->apic_id))
			return failed("CPU %u: function ran as %#x", i, slot);
	}
	if (smp_park(1) || smp_call(1, whoami, (void *)&slot) != -1)
		return failed("a parked CPU accepted work");
	if (smp_unpark(1) || smp_call(1, whoami, (void *)&slot))
		return failed("an unparked CPU refused work");
	return PASS;
}

static bool interrupted_since(void *count)
{
	struct virtqueue *vq = virtio_rng_queue();

	return vq->interrupts != *(uint64_t *)count;
}

/* Whether name is one of the comma-separated words of require=. */
static bool required(const char *name)
{
	const char *p = cmdline_get_str("require", "");
	size_t len = strlen(name);

	for (; *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p)) {
		if (!strncmp(p, name, len) && (p[len] == ',' || !p[len]))
			return true;
	}
	return false;
}

static enum result check_virtio(void)
{
	static uint64_t a[512], b[512];
	struct virtqueue *vq = virtio_rng_queue();
	uint64_t irqs;
	bool all_equal = true;

	if (!vq) {
		if (required("virtio-rng"))
			return failed("virtio-rng required but not present");
		return skipped("no virtio device");
	}
	if (vq->vector < 0)
		return failed("virtio-rng has no MSI-X vector");
	irqs = vq->interrupts;
	if (virtio_rng_read(a, sizeof(a)) || virtio_rng_read(b, sizeof(b)))
		return failed("virtio_rng_read failed");
	/* The used ring can be seen before the interrupt lands: give it time. */
	if (!halt_until(interrupted_since, (void *)&irqs, 100000000))
		return failed("completions arrived without an MSI-X interrupt");
	for (unsigned i = 0; i < ARRAY_SIZE(a); i++)
		all_equal &= a[i] == 0x0101010101010101ull * (uint8_t)a[0];
	if (all_equal)
		return failed("4 KiB of 0x%02x", (uint8_t)a[0]);
	for (unsigned i = 0; i < ARRAY_SIZE(a) && a[i] == b[i]; i++) {
		if (i == ARRAY_SIZE(a) - 1)
			return failed("two reads returned the same bytes");
	}
	return PASS;
}

/* --- balloon: the virtio-balloon driver (virtio_balloon.h) --- */

/* Free pages, plus the balloon and the driver's list: constant while only
 * the balloon moves. */
static uint64_t accounted_pages(struct page_alloc_stats *st)
{
	struct balloon_info bi;

	page_alloc_stats(st);
	balloon_info(&bi);
	return st->free_pages + bi.held + bi.list_pages;
}

static enum result check_balloon(void)
{
	enum { PAGES = 256 };
	struct page_alloc_stats before, mid, after;
	struct balloon_info bi;
	uint64_t acc0, acc, held0, n;
	bool settled, stats;

	if (!balloon_present()) {
		if (required("virtio-balloon"))
			return failed("virtio-balloon required but not present");
		return skipped("no virtio-balloon device");
	}
	balloon_info(&bi);
	if (bi.broken)
		return failed("driver stopped (see the console)");
	if (bi.passive)
		return skipped("passive (balloon=app)");
	/* Whatever the host asked for, the driver gets there on its own. */
	settled = balloon_wait_settled(5000000000ull);
	balloon_pause(true);
	balloon_info(&bi);
	held0 = bi.held;
	acc0 = accounted_pages(&before);
	if (!settled)
		kprintf("selftest: balloon: not at the host's %u pages after 5 s (holds %lu, floor %lu)\n",
			bi.target, bi.held, bi.floor);
	/* Deflate a little and inflate it again, through the device: only
	 * possible if the host wants pages (it may refuse more than it asked). */
	n = MIN(held0, (uint64_t)PAGES);
	if (n) {
		if (balloon_deflate_now(n) != n)
			return failed("deflating %lu pages failed", n);
		acc = accounted_pages(&mid);
		if (acc != acc0 || mid.free_pages < before.free_pages + n - 1)
			return failed("after deflating %lu pages: %lu free (was %lu), %lu accounted (was %lu)",
				      n, mid.free_pages, before.free_pages, acc, acc0);
		if (balloon_inflate_now(n) != n)
			return failed("inflating %lu pages back failed", n);
	}
	acc = accounted_pages(&after);
	balloon_info(&bi);
	if (acc != acc0 || bi.held != held0 || after.free_pages + 1 < before.free_pages ||
	    after.free_pages > before.free_pages + 1)
		return failed("counts did not come back: %lu free (was %lu), balloon %lu (was %lu)",
			      after.free_pages, before.free_pages, bi.held, held0);
	balloon_pause(false);
	/* ferry asks for statistics every 250 ms by default; QEMU only when
	 * polling is enabled (guest-stats-polling-interval). */
	stats = bi.stats_vq && balloon_wait_stats(1000000000ull);
	balloon_info(&bi);
	kprintf("selftest: balloon: %s%lu pages moved through the device, %lu held, target %u, "
		"max rate %lu MiB/s, %lu MiB reported free, stats %s\n",
		n ? "" : "no target from the host: ", 2 * n, bi.held, bi.target, bi.max_rate >> 8,
		bi.reported >> 8, stats ? "asked and sent" : bi.stats_vq ? "not asked for" : "not negotiated");
	return PASS;
}

/* --- smp_park: parking a CPU stops its work, unparking resumes it --- */

static volatile uint64_t park_counter;
static volatile bool park_stop;

static void park_spin(void *unused)
{
	(void)unused;
	while (!park_stop)
		park_counter++;
}

static bool park_counter_moved(uint64_t from, uint64_t timeout_ms)
{
	for (uint64_t t = 0; t < timeout_ms && park_counter == from; t++)
		sleep_ms(1);
	return park_counter != from;
}

/* --- net: the virtio-net driver (virtio_net.h); prints one line per NIC --- */
static enum result check_net(void)
{
	char mac[18];

	if (!vnet_count()) {
		if (required("virtio-net"))
			return failed("virtio-net required but not present");
		return skipped("no virtio-net device");
	}
	for (unsigned i = 0; i < vnet_count(); i++) {
		struct vnet *n = vnet_get(i);
		struct vnet_pair *qp = &n->pair[0];

		kprintf("selftest: net: %s %s mtu %u link %s, %u queue pair%s, %u+%u buffers, %s\n", n->name,
			mac_str(n->mac, mac), n->mtu, vnet_link_up(n) ? "up" : "down", n->nr_pairs,
			n->nr_pairs == 1 ? "" : "s", qp->nr_rx, qp->nr_tx, qp->rxq.vector >= 0 ? "MSI-X" : "polled");
		if (n->mac[0] & 1)
			return failed("%s has a multicast MAC address", n->name);
		if (qp->rxq.vector < 0 || qp->txq.vector < 0)
			return failed("%s has no MSI-X vectors for its queues", n->name);
		if (qp->rxq.broken || qp->txq.broken)
			return failed("%s: a queue stopped (see the console)", n->name);
		/* Every receive buffer is with the device until a frame is taken. */
		if (vq_num_free(&qp->rxq) != qp->rxq.size - qp->nr_rx)
			return failed("%s: %u receive buffers posted, expected %u", n->name,
				      qp->rxq.size - vq_num_free(&qp->rxq), qp->nr_rx);
	}
	return PASS;
}

static enum result check_smp_park(void)
{
	unsigned n = smp_cpu_count(), cpu = n - 1;
	uint64_t c1, c2, parked_ns;
	struct work_stats ws;
	int err;

	if (n == 1)
		return skipped("one CPU");
	if (smp_park(0) != -1)
		return failed("the BSP accepted to park");
	park_stop = false;
	park_counter = 0;
	if (smp_call_async(cpu, park_spin, NULL))
		return failed("smp_call_async to CPU %u failed", cpu);
	if (!park_counter_moved(0, 5000))
		return failed("CPU %u did not start counting", cpu);
	/* It runs a loop in ring 3 that never halts nor locks: parking must
	 * interrupt it there. */
	err = smp_park(cpu);
	for (unsigned t = 0; t < 5000 && !smp_is_parked(cpu); t++)
		sleep_ms(1);
	if (!smp_is_parked(cpu))
		return failed("CPU %u did not park (smp_park returned %d)", cpu, err);
	c1 = park_counter;
	sleep_ms(20);
	c2 = park_counter;
	if (c1 != c2)
		return failed("a parked CPU kept counting (%lu -> %lu)", c1, c2);
	if (smp_call(cpu, whoami, (void *)&c1) != -1)
		return failed("a parked CPU accepted a call");
	parked_ns = smp_parked_ns(cpu);
	if (!parked_ns)
		return failed("no parked time counted");
	if (smp_unpark(cpu))
		return failed("smp_unpark failed");
	if (!park_counter_moved(c2, 5000))
		return failed("CPU %u did not resume counting after unparking", cpu);
	park_stop = true;
	for (unsigned t = 0; t < 5000 && !smp_call_done(cpu); t++)
		sleep_ms(1);
	if (!smp_call_done(cpu))
		return failed("the call did not return after unparking");
	work_stats(&ws);
	kprintf("selftest: smp_park: CPU %u parked for %lu us in a busy loop; %lu work runs, "
		"%lu preemptions\n", cpu, parked_ns / 1000, ws.runs, ws.preemptions);
	return PASS;
}

/* --- native: native_call(), demotion and promotion (native.h) --- */

struct native_probe {
	bool ring3, irqs;               /* as fn saw them */
	volatile bool ticked;
	struct timer timer;
};

static long native_probe(void *p)
{
	struct native_probe *np = p;

	np->ring3 = native_active();
	np->irqs = irqs_enabled();
	return 0x5eed;
}

static long demote(void *unused)
{
	(void)unused;
	native_demote();
	return native_active();
}

static long loop(void *n)
{
	uint64_t x = 1;

	for (uint64_t i = 0; i < (uintptr_t)n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		asm volatile("" : "+r"(x));
	}
	return (long)x;
}

static void native_tick(void *p)
{
	struct native_probe *np = p;

	/* An interrupt handler: native_call() must run fn here, in ring 0. */
	np->ring3 = native_call(native_probe, np) == 0x5eed && np->ring3;
	np->ticked = true;
}

static enum result check_native(void)
{
	enum { LOOP = 300 };
	struct native_probe np = { 0 };
	struct native_stats before, after;
	struct spinlock lock = SPINLOCK_INIT;
	uint64_t flags, t0, t3, t_ring3, t_ring0, deadline;

	/* The app runs under native_call(): this is ring 3. */
	native_stats(&before);
	if (native_call(native_probe, &np) != 0x5eed)
		return failed("native_call returned the wrong value");
	if (!np.ring3 || !np.irqs)
		return failed("fn ran in ring %d with interrupts %s", np.ring3 ? 3 : 0,
			      np.irqs ? "on" : "off");

	/* native_call() returns in the ring it was called in, whatever fn did. */
	if (native_call(demote, NULL) || !native_active())
		return failed("native_call of a demoting fn did not return to ring 3");

	/* A privileged instruction demotes; native_resume() promotes. */
	native_demote();
	if (native_active() || !irqs_enabled())
		return failed("still in ring 3 after a privileged instruction");
	if (!native_resume() || !native_active())
		return failed("native_resume did not return to ring 3");

	/* irq_save/irq_restore come back to the ring they started in. */
	flags = spin_lock_irqsave(&lock);
	if (native_active() || irqs_enabled())
		return failed("spin_lock_irqsave left interrupts on or stayed in ring 3");
	np = (struct native_probe){ 0 };
	native_call(native_probe, &np);   /* from ring 0, interrupts off */
	if (!np.ring3 || np.irqs || native_active())
		return failed("with interrupts off, fn ran in ring %d with interrupts %s",
			      np.ring3 ? 3 : 0, np.irqs ? "on" : "off");
	spin_unlock_irqrestore(&lock, flags);
	if (!native_active() || !irqs_enabled())
		return failed("spin_unlock_irqrestore did not return to ring 3");

	/* An interrupt taken in ring 3 is handled (where native_call() falls
	 * back to ring 0) and the code carries on in ring 3. */
	np = (struct native_probe){ 0 };
	timer_start(&np.timer, 200000, native_tick, &np);
	deadline = rdtsc() + tsc_khz() * 1000;
	while (!np.ticked && rdtsc() < deadline)
		cpu_relax();
	if (!np.ticked)
		return failed("timer interrupt in ring 3 not handled within 1 s");
	if (np.ring3)
		return failed("native_call from an interrupt handler entered ring 3");
	if (!native_active())
		return failed("not back in ring 3 after an interrupt");
	native_stats(&after);
	if (after.demotions == before.demotions || after.promotions == before.promotions)
		return failed("no demotion or promotion counted");

	/* Speed, for information only: hosts with VT-x run both rings natively. */
	t0 = rdtsc();
	loop((void *)LOOP);
	t3 = rdtsc();
	t_ring3 = MAX(t3 - t0, 1);
	native_demote();
	t0 = rdtsc();
	loop((void *)LOOP);
	t_ring0 = rdtsc() - t0;
	native_resume();
	kprintf("selftest: native: %u-iteration loop: %lu ns in ring 3, %lu ns in ring 0 (%lux)\n",
		LOOP, t_ring3 * 1000000 / tsc_khz(), t_ring0 * 1000000 / tsc_khz(), t_ring0 / t_ring3);
	return PASS;
}

static const struct {
	const char *name;
	enum result (*fn)(void);
} checks[] = {
	{ "lib", check_lib },
	{ "page_alloc", check_page_alloc },
	{ "heap", check_heap },
	{ "exceptions", check_exceptions },
	{ "interrupts", check_interrupts },
	{ "timer", check_timer },
	{ "acpi", check_acpi },
	{ "pci", check_pci },
	{ "smp", check_smp },
	{ "virtio", check_virtio },
	{ "native", check_native },
	{ "smp_park", check_smp_park },
	{ "balloon", check_balloon },
	{ "net", check_net },
};

static int selftest_main(void)
{
	unsigned passed = 0, nfailed = 0;
	uint64_t start = time_ns();

	/* With balloon_wait_target, wait for the host to ask for pages (a
	 * memory scheduler sets its first target a moment after boot), so the
	 * driver is busy reserving them while the checks run: every check must
	 * hold with a balloon moving underneath it. */
	for (unsigned t = 0; t < 1000 && !balloon_read_target() && cmdline_get_bool("balloon_wait_target", false); t++)
		sleep_ms(10);

	for (unsigned i = 0; i < ARRAY_SIZE(checks); i++) {
		why[0] = 0;
		switch (checks[i].fn()) {
		case PASS:
			passed++;
			kprintf("selftest: %s ok\n", checks[i].name);
			break;
		case SKIP:
			passed++;
			kprintf("selftest: %s skipped: %s\n", checks[i].name, why);
			break;
		case FAIL:
			nfailed++;
			kprintf("selftest: %s FAILED: %s\n", checks[i].name, why);
			break;
		}
	}
	kprintf("selftest: %u passed, %u failed (%lu ms)\n", passed, nfailed,
		(time_ns() - start) / 1000000);
	return nfailed ? FERRY_EXIT_FAIL : FERRY_EXIT_OK;
}

APP("selftest", "run the kernel's self-checks (require=virtio-rng,virtio-balloon,virtio-net: fail without them)",
	selftest_main);
