/* virtio-balloon driver (virtio 1.2, section 5.5): see include/virtio_balloon.h.
 *
 * Queues: 0 inflate, 1 deflate, 2 stats, then free page reporting (3, or 4
 * when the device also offers FREE_PAGE_HINT, whose queue comes first; QEMU
 * and ferry number them so). Page frame numbers go to the device in arrays
 * of 256 (one 1 KiB buffer each), as many buffers at once as the queue has
 * descriptors; the driver waits for the device to take them all before it
 * frees (deflate) or forgets them.
 *
 * All the work happens in balloon_work(), deferred work (work.h) that the
 * config-change interrupt, the stats queue's interrupt and a timer queue:
 * it runs in ring 3 on the BSP, natively on hosts that emulate ring 0, so
 * allocating hundreds of thousands of pages and filling their frame numbers
 * costs microseconds per megabyte. The deflate-on-OOM handler runs in the
 * allocating context instead, on any CPU. One lock (b.lock) covers the
 * queues and the block list; it is taken before the allocator's and never
 * while holding the heap's (the driver does not use kmalloc after init).
 *
 * Maximum reservation change rate (update_rate()): the guest can give up
 * memory as fast as it can without its workload running out, so
 *     rate = (free - floor) / drain_time - pressure,
 * capped at balloon_rate and divided by 2 for every recent allocation
 * failure or deflate-on-OOM (recovering one halving per 500 ms without
 * any), where pressure is the workload's recent net allocation rate (an
 * average over about a second of the growth of memory in use outside the
 * balloon) and free - floor the memory above the floor the driver never
 * inflates below. Inflation moves at most rate * step time per step (10 ms);
 * deflation, which only gives the guest memory, is not limited. */
#include <ferry/virtio.h>
#include "blocklist.h"
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"
#include "page_alloc.h"
#include "smp.h"
#include "spinlock.h"
#include "timer.h"
#include "virtio_balloon.h"
#include "virtio_pci.h"
#include "virtqueue.h"
#include "work.h"
#include "x86.h"

#define FERRY_BALLOON_S_MAX_RATE 0x8000   /* as src/devices/virtio_balloon.h */

#define Q_INFLATE   0
#define Q_DEFLATE   1
#define Q_STATS     2
#define QUEUE_MAX   256
#define PFNS_PER_BUF 256
#define MAX_BUFS    256
#define ROUND_BLOCKS 1024               /* blocks moved per batch */
#define REPORT_BLOCKS 32                /* blocks per reporting buffer */
#define REPORT_ROUNDS 16                /* buffers per reporting pass */
#define NSTATS      8
#define OOM_PAGES   512                 /* deflate-on-OOM gives back at least 2 MiB */

#define MS          1000000ull
#define STEP_NS     (10 * MS)           /* between inflate steps */
#define IDLE_STEP_NS (100 * MS)         /* ... when at the floor */
#define VQ_TIMEOUT_NS (10000 * MS)
#define TROUBLE_RECOVERY_NS (500 * MS)
#define MAX_SLOW_SHIFT 6
#define LOG_MIN_PAGES 4096              /* movements worth a console line: 16 MiB */

#define CFG_NUM_PAGES 0
#define CFG_ACTUAL    4

static struct {
	struct virtio_dev dev;
	struct virtqueue vq_inflate, vq_deflate, vq_stats, vq_report;
	bool present, passive, broken, paused, verbose;
	bool stats_vq, deflate_on_oom, reporting;
	struct spinlock lock;
	volatile int owner;               /* CPU index holding lock, -1 */
	struct blocklist held;            /* the balloon (active mode) */
	uint64_t app_held;                /* passive mode: what the app gave */
	uint32_t target, actual_written;
	struct work work;
	struct timer timer;
	uint32_t (*pfns)[PFNS_PER_BUF];
	unsigned nbufs;
	struct page_block *round;         /* ROUND_BLOCKS entries */
	struct page_block report_blocks[REPORT_BLOCKS];
	struct virtio_balloon_stat stats[NSTATS];
	volatile uint64_t config_seq, stats_requests;

	/* Rate: pages and pages per second. */
	uint64_t floor, rate_cap, drain_ms;
	uint64_t last_step_ns, last_sample_ns, last_trouble_ns;
	uint64_t prev_used, prev_failures, prev_oom_events;
	uint64_t pressure, max_rate;
	unsigned slow_shift;

	bool report_on;
	uint64_t report_period_ns, next_report_ns;
	uint64_t poll_ns;                 /* without MSI-X: how often to look */

	bool moving;
	uint64_t move_start_ns, move_from;

	uint64_t inflated, deflated, oom_deflated, oom_events, reported, stats_sent, rounds;
} b = { .owner = -1 };

static uint64_t held_pages(void)
{
	return b.passive ? b.app_held : b.held.pages;
}

static void lock(void)
{
	spin_lock(&b.lock);
	b.owner = (int)this_cpu()->index;
}

static void unlock(void)
{
	b.owner = -1;
	spin_unlock(&b.lock);
}

static uint32_t read_target(void)
{
	if (!b.present || b.broken)
		return b.target;
	b.target = virtio_config_read32(&b.dev, CFG_NUM_PAGES);
	return b.target;
}

static void write_actual(void)
{
	uint32_t held = (uint32_t)held_pages();

	if (b.broken || held == b.actual_written)
		return;
	virtio_config_write32(&b.dev, CFG_ACTUAL, held);
	b.actual_written = held;
}

static void broken(const char *what)
{
	if (!b.broken)
		kprintf("virtio-balloon: %s; driver stopped, %lu pages stay reserved\n", what, held_pages());
	b.broken = true;
}

/* --- moving frames ------------------------------------------------------ */

static int flush_frames(struct virtqueue *vq, unsigned added)
{
	vq_kick(vq);
	for (unsigned i = 0; i < added; i++) {
		/* Collect what is there natively; halt (a ring change each
		 * time) only when nothing is. */
		if (!vq_get_used(vq, NULL) && !vq_wait(vq, NULL, VQ_TIMEOUT_NS)) {
			broken(vq->broken ? "queue broken" : "device does not return frame buffers");
			return -1;
		}
	}
	b.rounds++;
	return 0;
}

/* Sends the 4 KiB frame numbers of blocks[0..n) on vq, in as many buffers
 * at once as fit, and waits until the device has taken all of them. */
static int send_frames(struct virtqueue *vq, const struct page_block *blocks, size_t n)
{
	unsigned limit = MIN(b.nbufs, (unsigned)vq->size), buf = 0, k = 0;

	if (b.broken)
		return -1;
	for (size_t i = 0; i < n; i++) {
		uint64_t pfn = blocks[i].addr >> PAGE_SHIFT, end = pfn + (1ull << blocks[i].order);

		for (; pfn < end; pfn++) {
			b.pfns[buf][k++] = (uint32_t)pfn;
			if (k < PFNS_PER_BUF)
				continue;
			struct vq_seg seg = { b.pfns[buf], PFNS_PER_BUF * 4 };
			if (vq_add(vq, &seg, 1, 0, b.pfns[buf])) {
				broken("cannot queue a frame buffer");
				return -1;
			}
			k = 0;
			if (++buf == limit) {
				if (flush_frames(vq, buf))
					return -1;
				buf = 0;
			}
		}
	}
	if (k) {
		struct vq_seg seg = { b.pfns[buf], k * 4 };
		if (vq_add(vq, &seg, 1, 0, b.pfns[buf])) {
			broken("cannot queue a frame buffer");
			return -1;
		}
		buf++;
	}
	return buf ? flush_frames(vq, buf) : 0;
}

static uint64_t round_pages(const struct virtqueue *vq)
{
	return (uint64_t)MIN(b.nbufs, (unsigned)vq->size) * PFNS_PER_BUF;
}

/* Lock held. Reserves up to n pages, largest blocks first, and gives them to
 * the host, never more than num_pages in all. Returns the pages inflated. */
static uint64_t inflate(uint64_t n)
{
	uint64_t done = 0;

	while (done < n && !b.broken) {
		uint64_t target = read_target(), held = b.held.pages, want, got;
		size_t nb;

		if (target <= held)
			break;
		want = MIN(MIN(n - done, round_pages(&b.vq_inflate)), target - held);
		nb = alloc_pages_bulk(want, PAGE_ORDER_2M, b.round, ROUND_BLOCKS, &got);
		if (!nb)
			break;
		for (size_t i = 0; i < nb; i++) {
			if (!blocklist_push(&b.held, b.round[i].addr, b.round[i].order))
				continue;
			for (size_t j = i; j < nb; j++) {   /* no page for the list */
				free_pages(phys_to_virt(b.round[j].addr), b.round[j].order);
				got -= 1ull << b.round[j].order;
			}
			nb = i;
			break;
		}
		if (!nb || send_frames(&b.vq_inflate, b.round, nb))
			break;
		done += got;
		b.inflated += got;
	}
	return done;
}

/* Lock held. Tells the host about up to n pages of the balloon, then frees
 * them. Returns the pages deflated. */
static uint64_t deflate(uint64_t n)
{
	uint64_t done = 0;

	while (done < n && !b.broken) {
		uint64_t got;
		size_t nb = blocklist_take(&b.held, MIN(n - done, round_pages(&b.vq_deflate)), b.round,
					   ROUND_BLOCKS, &got);

		if (!nb)
			break;
		if (send_frames(&b.vq_deflate, b.round, nb)) {
			/* The host may still count them: keep them reserved. */
			for (size_t i = 0; i < nb; i++)
				blocklist_push(&b.held, b.round[i].addr, b.round[i].order);
			break;
		}
		for (size_t i = 0; i < nb; i++)
			free_pages(phys_to_virt(b.round[i].addr), b.round[i].order);
		done += got;
		b.deflated += got;
	}
	return done;
}

/* --- rate ----------------------------------------------------------------- */

static void update_rate(uint64_t now)
{
	struct page_alloc_stats st;
	uint64_t held = held_pages(), used, headroom, rate, dt = now - b.last_sample_ns;

	page_alloc_stats(&st);
	used = st.total_pages - st.free_pages > held ? st.total_pages - st.free_pages - held : 0;
	if (!b.last_sample_ns) {
		b.prev_used = used;
		b.last_sample_ns = now;
		b.prev_failures = st.failures;
	} else if (dt >= MS) {
		/* Growth of memory in use outside the balloon, averaged over ~1 s. */
		uint64_t inst = used > b.prev_used ? (used - b.prev_used) * 1000000ull / (dt / 1000) : 0;
		uint64_t w = MIN(dt / MS, 1000ull);

		b.pressure = (b.pressure * (1000 - w) + inst * w) / 1000;
		b.prev_used = used;
		b.last_sample_ns = now;
	}
	/* Allocations failing, or deflating on OOM: slow down, then recover. */
	if (st.failures != b.prev_failures || b.oom_events != b.prev_oom_events) {
		b.slow_shift = MIN(b.slow_shift + 1, MAX_SLOW_SHIFT);
		b.last_trouble_ns = now;
	} else if (b.slow_shift && now - b.last_trouble_ns > TROUBLE_RECOVERY_NS) {
		b.slow_shift--;
		b.last_trouble_ns = now;
	}
	b.prev_failures = st.failures;
	b.prev_oom_events = b.oom_events;

	headroom = st.free_pages > b.floor ? st.free_pages - b.floor : 0;
	rate = headroom * 1000 / b.drain_ms;
	rate = rate > b.pressure ? rate - b.pressure : 0;
	b.max_rate = MIN(rate, b.rate_cap) >> b.slow_shift;
}

/* --- statistics ----------------------------------------------------------- */

static void set_stat(unsigned i, uint16_t tag, uint64_t val)
{
	b.stats[i].tag = tag;
	b.stats[i].val = val;
}

static void send_stats(void)
{
	struct page_alloc_stats st;
	uint64_t held = held_pages();
	struct vq_seg seg = { b.stats, sizeof(b.stats) };

	page_alloc_stats(&st);
	set_stat(0, VIRTIO_BALLOON_S_SWAP_IN, 0);
	set_stat(1, VIRTIO_BALLOON_S_SWAP_OUT, 0);
	set_stat(2, VIRTIO_BALLOON_S_MAJFLT, st.failures);      /* allocations that failed */
	set_stat(3, VIRTIO_BALLOON_S_MINFLT, st.allocations);   /* blocks allocated */
	set_stat(4, VIRTIO_BALLOON_S_MEMFREE, st.free_pages * PAGE_SIZE);
	/* Memory the guest can use: the balloon is not part of it. */
	set_stat(5, VIRTIO_BALLOON_S_MEMTOT, (st.total_pages > held ? st.total_pages - held : 0) * PAGE_SIZE);
	set_stat(6, VIRTIO_BALLOON_S_AVAIL, st.free_pages * PAGE_SIZE);
	set_stat(7, FERRY_BALLOON_S_MAX_RATE, b.max_rate);
	if (vq_add(&b.vq_stats, &seg, 1, 0, b.stats)) {
		broken("cannot queue the statistics buffer");
		return;
	}
	vq_kick(&b.vq_stats);
	b.stats_sent++;
}

/* The device hands the stats buffer back when it wants new numbers. */
static void service_stats(uint64_t now)
{
	if (!b.stats_vq || b.broken || !vq_get_used(&b.vq_stats, NULL))
		return;
	update_rate(now);
	send_stats();
	WRITE_ONCE(b.stats_requests, b.stats_requests + 1);
}

/* --- free page reporting -------------------------------------------------- */

static void report_free(void)
{
	struct page_alloc_stats st;
	uint64_t budget;

	page_alloc_stats(&st);
	/* Take at most half the free memory above the floor at a time, so
	 * that other CPUs still find memory while the host is told. */
	budget = st.free_pages > b.floor ? (st.free_pages - b.floor) / 2 : 0;
	for (unsigned r = 0; r < REPORT_ROUNDS && !b.broken; r++) {
		struct vq_seg segs[REPORT_BLOCKS];
		size_t n = page_report_take(PAGE_ORDER_2M, budget, b.report_blocks,
					    MIN((size_t)REPORT_BLOCKS, (size_t)b.vq_report.size));
		uint64_t pages = 0;

		if (!n)
			break;
		for (size_t i = 0; i < n; i++) {
			segs[i].addr = phys_to_virt(b.report_blocks[i].addr);
			segs[i].len = (uint32_t)(PAGE_SIZE << b.report_blocks[i].order);
			pages += 1ull << b.report_blocks[i].order;
		}
		if (vq_add(&b.vq_report, segs, 0, (unsigned)n, b.report_blocks)) {
			page_report_done(b.report_blocks, n);
			broken("cannot queue a reporting buffer");
			return;
		}
		vq_kick(&b.vq_report);
		if (!vq_wait(&b.vq_report, NULL, VQ_TIMEOUT_NS)) {
			/* Still the device's (and device-writable): never reuse. */
			broken("device does not return reported pages");
			return;
		}
		page_report_done(b.report_blocks, n);
		b.reported += pages;
	}
}

/* --- the work ------------------------------------------------------------- */

/* Called before and after each step: a movement starts when the balloon
 * is not at num_pages, and is logged when it gets there. */
static void log_movement(uint64_t now)
{
	uint64_t held = held_pages(), moved, ms;

	if (b.paused) {   /* the selftest or balloonbench moves it by hand */
		b.moving = false;
		return;
	}
	if (!b.moving && held != b.target) {
		b.moving = true;
		b.move_start_ns = now;
		b.move_from = held;
	} else if (b.moving && held == b.target) {
		b.moving = false;
		moved = held > b.move_from ? held - b.move_from : b.move_from - held;
		ms = (now - b.move_start_ns) / MS;
		if (moved >= LOG_MIN_PAGES || b.verbose)
			pr_info("virtio-balloon: %s %lu MiB in %lu ms (%lu MiB/s), balloon %lu MiB\n",
				held > b.move_from ? "inflated" : "deflated", moved >> 8, ms,
				(moved >> 8) * 1000 / MAX(ms, 1), held >> 8);
	}
}

/* Lock held: one step toward num_pages. Returns true if it could not move
 * although it should (at the floor). */
static bool step(uint64_t now)
{
	uint32_t target = read_target();
	uint64_t held = b.held.pages;
	bool stuck = false;

	log_movement(now);

	if (target > held) {
		struct page_alloc_stats st;
		uint64_t dt = MIN(MAX(now - b.last_step_ns, STEP_NS), 2 * STEP_NS);
		uint64_t allow = b.max_rate * (dt / 1000) / 1000000, headroom, n;

		page_alloc_stats(&st);
		headroom = st.free_pages > b.floor ? st.free_pages - b.floor : 0;
		n = MIN(MIN((uint64_t)target - held, allow), headroom);
		stuck = !n || !inflate(n);
	} else if (target < held) {
		deflate(held - target);
	}
	b.last_step_ns = now;
	write_actual();
	return stuck;
}

static void timer_fired(void *unused)
{
	(void)unused;
	work_queue(&b.work);
}

static void balloon_work(struct work *w)
{
	uint64_t now = time_ns(), delay = TIMEOUT_NEVER;
	bool stuck = false;

	(void)w;
	if (!spin_trylock(&b.lock)) {
		/* The OOM handler has it on another CPU: come back soon. */
		timer_cancel(&b.timer);
		timer_start(&b.timer, STEP_NS, timer_fired, NULL);
		return;
	}
	b.owner = (int)this_cpu()->index;
	if (b.broken) {
		unlock();
		return;
	}
	service_stats(now);
	update_rate(now);
	if (!b.passive && !b.paused)
		stuck = step(now);
	else
		read_target();
	/* Paused means nothing takes free pages behind the caller's back:
	 * reporting borrows them too. */
	if (b.report_on && !b.paused && now >= b.next_report_ns) {
		report_free();
		b.next_report_ns = time_ns() + b.report_period_ns;
	}
	log_movement(time_ns());

	if (!b.passive && !b.paused && b.held.pages != b.target)
		delay = stuck ? IDLE_STEP_NS : STEP_NS;
	if (b.report_on && !b.paused)
		delay = MIN(delay, b.next_report_ns > now ? b.next_report_ns - now : MS);
	if (b.poll_ns)   /* no interrupts (QEMU's balloon has no MSI-X): poll */
		delay = MIN(delay, b.poll_ns);
	timer_cancel(&b.timer);
	if (delay != TIMEOUT_NEVER && !b.broken)
		timer_start(&b.timer, delay, timer_fired, NULL);
	unlock();
}

/* Interrupt context. */
static void config_changed(struct virtio_dev *vd, void *arg)
{
	(void)vd;
	(void)arg;
	b.config_seq++;
	work_queue(&b.work);
}

static void stats_returned(struct virtqueue *vq, void *arg)
{
	(void)vq;
	(void)arg;
	work_queue(&b.work);
}

/* --- deflate on OOM --------------------------------------------------------- */

static bool balloon_oom(unsigned order)
{
	uint64_t n;

	if (!b.present || b.passive || b.broken || !b.deflate_on_oom || !READ_ONCE(b.held.pages))
		return false;
	/* The driver's own allocations (its block list) must not recurse, and
	 * waiting for the host needs interrupts. */
	if (READ_ONCE(b.owner) == (int)this_cpu()->index || !irqs_enabled() || in_interrupt())
		return false;
	lock();
	/* Memory may have come back while we waited for the lock (blocks
	 * taken for free page reporting are given back under it). */
	if (order <= PAGE_MAX_ORDER) {
		struct page_alloc_stats st;
		page_alloc_stats(&st);
		for (unsigned o = order; o <= PAGE_MAX_ORDER; o++) {
			if (st.free_blocks[o]) {
				unlock();
				return true;
			}
		}
	}
	n = deflate(MAX(1ull << order, (uint64_t)OOM_PAGES));
	if (n) {
		b.oom_deflated += n;
		b.oom_events++;
		write_actual();
	}
	unlock();
	if (n)
		work_queue(&b.work);   /* re-plan: the rate drops */
	return n != 0;
}

/* --- set-up and the API --------------------------------------------------- */

static uint64_t pages_of(uint64_t bytes)
{
	return bytes >> PAGE_SHIFT;
}

static void *alloc_bytes(uint64_t bytes)
{
	unsigned order = 0;

	while ((PAGE_SIZE << order) < bytes)
		order++;
	return alloc_pages(order);
}

int virtio_balloon_init(void)
{
	const char *mode = cmdline_get_str("balloon", "on");
	struct page_alloc_stats st;
	unsigned report_q;
	int err;

	if (!strcmp(mode, "off") || !strcmp(mode, "0"))
		return -1;
	err = virtio_pci_probe(&b.dev, VIRTIO_ID_BALLOON, 0);
	if (err)
		return err;
	b.passive = !strcmp(mode, "app");
	b.verbose = cmdline_get_bool("balloon_verbose", false);
	if (virtio_init(&b.dev, 1ull << VIRTIO_BALLOON_F_STATS_VQ | 1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM |
			1ull << VIRTIO_BALLOON_F_REPORTING))
		return -2;
	b.stats_vq = virtio_has_feature(&b.dev, VIRTIO_BALLOON_F_STATS_VQ);
	b.deflate_on_oom = virtio_has_feature(&b.dev, VIRTIO_BALLOON_F_DEFLATE_ON_OOM);
	b.reporting = virtio_has_feature(&b.dev, VIRTIO_BALLOON_F_REPORTING);
	report_q = Q_STATS + !!(b.dev.device_features & 1ull << VIRTIO_BALLOON_F_STATS_VQ) +
		   !!(b.dev.device_features & 1ull << VIRTIO_BALLOON_F_FREE_PAGE_HINT);
	if (virtio_setup_queue(&b.dev, &b.vq_inflate, Q_INFLATE, QUEUE_MAX) ||
	    virtio_setup_queue(&b.dev, &b.vq_deflate, Q_DEFLATE, QUEUE_MAX) ||
	    (b.stats_vq && virtio_setup_queue(&b.dev, &b.vq_stats, Q_STATS, 2)) ||
	    (b.reporting && virtio_setup_queue(&b.dev, &b.vq_report, report_q, QUEUE_MAX)))
		return -2;

	b.nbufs = MIN((unsigned)MAX_BUFS, (unsigned)MAX(b.vq_inflate.size, b.vq_deflate.size));
	b.pfns = alloc_bytes((uint64_t)b.nbufs * PFNS_PER_BUF * 4);
	b.round = alloc_bytes(ROUND_BLOCKS * sizeof(struct page_block));
	if (!b.pfns || !b.round || (b.reporting && page_report_init())) {
		kprintf("virtio-balloon: out of memory\n");
		virtio_fail(&b.dev);
		return -2;
	}

	page_alloc_stats(&st);
	b.floor = pages_of(cmdline_get_u64("balloon_floor", MAX(16 * MiB, st.total_pages * PAGE_SIZE / 32)));
	b.rate_cap = pages_of(cmdline_get_u64("balloon_rate", 8 * GiB));
	b.drain_ms = MAX(cmdline_get_u64("balloon_drain_ms", 250), 1);
	b.report_on = b.reporting && cmdline_get_bool("balloon_report", true);
	b.report_period_ns = MAX(cmdline_get_u64("balloon_report_ms", 2000), 10) * MS;
	b.next_report_ns = time_ns() + b.report_period_ns;
	if (!b.dev.msix)
		b.poll_ns = MAX(cmdline_get_u64("balloon_poll_ms", 100), 1) * MS;

	work_init(&b.work, balloon_work);
	virtio_set_config_handler(&b.dev, config_changed, NULL);
	if (b.stats_vq)
		vq_set_callback(&b.vq_stats, stats_returned, NULL);
	virtio_driver_ok(&b.dev);
	b.present = true;
	update_rate(time_ns());
	if (b.stats_vq)
		send_stats();   /* the first buffer; the device returns it to ask again */
	if (!b.passive && b.deflate_on_oom)
		page_alloc_set_oom_handler(balloon_oom);
	pr_info("virtio-balloon: %s, queues %u/%u%s%s, %s%s%s, floor %lu MiB, rate cap %lu MiB/s\n",
		b.passive ? "passive (balloon=app)" : "active", b.vq_inflate.size, b.vq_deflate.size,
		b.stats_vq ? ", stats" : "", b.reporting ? ", reporting" : "",
		b.vq_inflate.vector >= 0 ? "MSI-X" : "polled (no MSI-X)",
		b.deflate_on_oom ? ", deflate-on-oom" : "", b.report_on ? ", reports free pages" : "",
		b.floor >> 8, b.rate_cap >> 8);
	work_queue(&b.work);
	return 0;
}

bool balloon_present(void)
{
	return b.present;
}

bool balloon_passive(void)
{
	return b.present && b.passive;
}

void balloon_info(struct balloon_info *bi)
{
	*bi = (struct balloon_info){
		.present = b.present, .passive = b.passive, .broken = b.broken,
		.stats_vq = b.stats_vq, .deflate_on_oom = b.deflate_on_oom, .reporting = b.reporting,
		.target = b.target, .held = held_pages(), .max_rate = b.max_rate, .pressure = b.pressure,
		.floor = b.floor, .inflated = b.inflated, .deflated = b.deflated,
		.oom_deflated = b.oom_deflated, .oom_events = b.oom_events, .reported = b.reported,
		.stats_sent = b.stats_sent, .rounds = b.rounds, .config_changes = b.config_seq,
		.list_pages = b.held.chunks,
	};
}

uint32_t balloon_read_target(void)
{
	uint32_t t;

	if (!b.present)
		return 0;
	lock();
	t = read_target();
	update_rate(time_ns());
	unlock();
	return t;
}

void balloon_pause(bool paused)
{
	if (!b.present)
		return;
	lock();
	b.paused = paused;
	unlock();
	if (!paused)
		work_queue(&b.work);
}

uint64_t balloon_inflate_now(uint64_t pages)
{
	uint64_t n;

	if (!b.present || b.passive)
		return 0;
	lock();
	n = inflate(pages);
	write_actual();
	unlock();
	return n;
}

uint64_t balloon_deflate_now(uint64_t pages)
{
	uint64_t n;

	if (!b.present || b.passive)
		return 0;
	lock();
	n = deflate(pages);
	write_actual();
	unlock();
	return n;
}

static bool settled(void *unused)
{
	(void)unused;
	return b.broken || (!b.moving && b.held.pages == b.target && !b.work.queued);
}

bool balloon_wait_settled(uint64_t timeout_ns)
{
	if (!b.present || b.passive)
		return false;
	work_queue(&b.work);
	return halt_until(settled, NULL, timeout_ns) && !b.broken;
}

static bool stats_asked(void *start)
{
	return READ_ONCE(b.stats_requests) != *(uint64_t *)start;
}

bool balloon_wait_stats(uint64_t timeout_ns)
{
	uint64_t start = READ_ONCE(b.stats_requests);

	return b.present && b.stats_vq && halt_until(stats_asked, &start, timeout_ns);
}

/* Passive mode: the app reserved (give) or released (take) these blocks
 * itself; the driver only tells the host. */
static int app_frames(const struct page_block *blocks, size_t n, bool give)
{
	uint64_t pages = 0;
	int err;

	if (!b.present || !b.passive)
		return -1;
	for (size_t i = 0; i < n; i++)
		pages += 1ull << blocks[i].order;
	lock();
	err = send_frames(give ? &b.vq_inflate : &b.vq_deflate, blocks, n);
	if (!err && give) {
		b.app_held += pages;
		b.inflated += pages;
	} else if (!err) {
		b.app_held -= MIN(pages, b.app_held);
		b.deflated += pages;
	}
	if (!err)
		write_actual();
	unlock();
	return err;
}

int balloon_give(const struct page_block *blocks, size_t n)
{
	return app_frames(blocks, n, true);
}

int balloon_take(const struct page_block *blocks, size_t n)
{
	return app_frames(blocks, n, false);
}

static bool config_seq_moved(void *start)
{
	return READ_ONCE(b.config_seq) != *(uint64_t *)start;
}

void balloon_wait_config(uint64_t timeout_ns)
{
	uint64_t start = READ_ONCE(b.config_seq);

	if (b.present)
		halt_until(config_seq_moved, &start, timeout_ns);
}
