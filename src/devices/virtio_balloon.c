#include "devices/virtio_balloon.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio.h"
#include "ferry/virtio.h"
#include "host/eventloop.h"
#include "vmm/boot_pvh.h"
#include "vmm/clock.h"
#include "vmm/config.h"
#include "vmm/vm.h"

#define BALLOON_QUEUE_SIZE 256
#define PAGE 4096ull
#define Q_INFLATE 0
#define Q_DEFLATE 1
#define Q_STATS 2
#define Q_REPORTING 3
#define AUDIT_EVERY 4  /* stats periods between audits of ballooned pages */
/* Bounds on the work of one guest request and of one pass over a queue:
 * drivers send 256 frames a buffer (Linux and ferry-guest); a chain may
 * name up to CHAIN_FRAMES, and a pass takes PASS_CHAINS chains before the
 * event loop serves the other VMs. */
#define CHAIN_FRAMES 4096
#define PASS_CHAINS 64
#define MAX_STATS 64

struct balloon {
	struct virtio_device vd;
	struct virtio_balloon_config cfg;
	/* The guest's RAM as its memory map describes it: only these pages may
	 * be ballooned or reported. */
	struct hvm_memmap_table_entry ram[PVH_MAX_MEMMAP];
	unsigned nr_ram;
	uint8_t *in_balloon;        /* bitmap, one bit per 4 KiB page frame */
	uint64_t nr_frames;
	uint64_t held;              /* pages inflated and not deflated */
	uint64_t last_change_ns;

	bool holding_stats;         /* the driver's stats buffer, kept to ask again */
	uint16_t stats_head;
	bool have_stats;
	uint64_t stats[VIRTIO_BALLOON_S_NR];
	uint64_t max_rate;
	uint64_t stats_ns;
	struct evl_handler *timer;
	unsigned ticks;

	uint64_t inflated, deflated, freed_bytes, reported_bytes, touched_pages, punch_errors;
	uint64_t over_target;       /* pages inflated beyond the target (it fell meanwhile) */
};

static struct balloon *to_balloon(struct virtio_device *vd)
{
	return (struct balloon *)vd;
}

static bool is_ram(const struct balloon *b, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < b->nr_ram; i++)
		if (gpa >= b->ram[i].addr && len <= b->ram[i].size && gpa - b->ram[i].addr <= b->ram[i].size - len)
			return true;
	return false;
}

static bool test_bit(const uint8_t *bm, uint64_t n)
{
	return bm[n / 8] & (1u << (n % 8));
}

static void set_bit(uint8_t *bm, uint64_t n, bool on)
{
	if (on)
		bm[n / 8] |= (uint8_t)(1u << (n % 8));
	else
		bm[n / 8] &= (uint8_t)~(1u << (n % 8));
}

/* Consecutive frames are released with one fallocate. */
struct punch {
	const struct gm_region *r;
	uint64_t off, len;          /* within r's memfd */
};

static void punch_flush(struct balloon *b, struct punch *p)
{
	if (!p->len)
		return;
	uint64_t off = p->off, len = p->len;
	if (p->r->hugepages) {
		/* hugetlbfs frees whole 2 MiB pages only. */
		uint64_t start = (off + (2ull << 20) - 1) & ~((2ull << 20) - 1), end = (off + len) & ~((2ull << 20) - 1);
		off = start;
		len = end > start ? end - start : 0;
	}
	if (len && fallocate(p->r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		b->freed_bytes += len;
	else if (len)
		b->punch_errors++;
	p->len = 0;
}

static void punch_add(struct balloon *b, struct punch *p, uint64_t gpa, uint64_t len)
{
	const struct gm_region *r = gm_region_of(&b->vd.dev.vm->mem, gpa, len);
	if (!r)
		return;
	uint64_t off = gpa - r->gpa;
	if (p->len && p->r == r && p->off + p->len == off) {
		p->len += len;
		return;
	}
	punch_flush(b, p);
	p->r = r;
	p->off = off;
	p->len = len;
}

/* Inflate (give == true) or deflate one chain of 32-bit page frame numbers. */
static void balloon_frames(struct balloon *b, struct vq_chain *c, bool give)
{
	struct punch p = { 0 };
	uint32_t pfns[256];
	uint64_t done = 0, limit = c->out_bytes < CHAIN_FRAMES * 4ull ? c->out_bytes : CHAIN_FRAMES * 4ull;
	if (c->out_bytes > limit)
		device_reject(&b->vd.dev, "frame list of %llu bytes; only the first %d frames are taken",
			      (unsigned long long)c->out_bytes, CHAIN_FRAMES);
	while (done < limit) {
		size_t want = limit - done < sizeof(pfns) ? limit - done : sizeof(pfns);
		size_t got = vq_chain_read(c, done, pfns, want);
		done += got;
		for (size_t i = 0; i < got / 4; i++) {
			uint64_t pfn = pfns[i], gpa = pfn << VIRTIO_BALLOON_PFN_SHIFT;
			if (pfn >= b->nr_frames || !is_ram(b, gpa, PAGE)) {
				device_reject(&b->vd.dev, "%s of frame 0x%llx, which is not guest RAM", give ? "inflate" : "deflate",
					      (unsigned long long)pfn);
				continue;
			}
			bool in = test_bit(b->in_balloon, pfn);
			if (give && in) {
				device_reject(&b->vd.dev, "frame 0x%llx given twice", (unsigned long long)pfn);
			} else if (!give && !in) {
				device_reject(&b->vd.dev, "deflate of frame 0x%llx, which is not in the balloon",
					      (unsigned long long)pfn);
			} else if (give) {
				/* Beyond the target: the target fell while the driver
				 * was inflating (or the guest gives more than asked).
				 * Taken all the same: the page is the guest's to give,
				 * the bitmap bounds what it can give, and refusing it
				 * would leave the driver counting a page the host never
				 * got back. The driver deflates once it reads the target. */
				if (b->held >= b->cfg.num_pages)
					b->over_target++;
				set_bit(b->in_balloon, pfn, true);
				b->held++;
				b->inflated++;
				punch_add(b, &p, gpa, PAGE);
			} else {
				/* Already a hole: the guest's next touch gets a zeroed page. */
				set_bit(b->in_balloon, pfn, false);
				b->held--;
				b->deflated++;
			}
		}
		if (got < want)
			break;
	}
	if (c->out_bytes % 4)
		device_reject(&b->vd.dev, "frame list of %llu bytes is not whole frames", (unsigned long long)c->out_bytes);
	punch_flush(b, &p);
	b->last_change_ns = clock_ns();
}

/* Free page reporting: the guest keeps the pages, the host drops their
 * contents; they read as zeroes when next touched. */
static void balloon_report(struct balloon *b, struct vq_chain *c)
{
	struct punch p = { 0 };
	for (unsigned s = 0; s < c->nr_out + c->nr_in; s++) {
		uint64_t gpa = c->seg[s].gpa, len = c->seg[s].len;
		if (gpa % PAGE || len % PAGE || !is_ram(b, gpa, len)) {
			device_reject(&b->vd.dev, "reported range 0x%llx+0x%llx is not whole pages of RAM",
				      (unsigned long long)gpa, (unsigned long long)len);
			continue;
		}
		punch_add(b, &p, gpa, len);
		b->reported_bytes += len;
	}
	punch_flush(b, &p);
}

static void balloon_stats(struct balloon *b, struct virtqueue *vq, struct vq_chain *c)
{
	if (b->holding_stats) /* a second buffer: give the first back */
		vq_push(vq, b->stats_head, 0);
	uint64_t end = c->out_bytes < MAX_STATS * sizeof(struct virtio_balloon_stat) ? c->out_bytes
			: MAX_STATS * sizeof(struct virtio_balloon_stat);
	for (uint64_t off = 0; off + sizeof(struct virtio_balloon_stat) <= end; off += sizeof(struct virtio_balloon_stat)) {
		struct virtio_balloon_stat st;
		vq_chain_read(c, off, &st, sizeof(st));
		if (st.tag < VIRTIO_BALLOON_S_NR)
			b->stats[st.tag] = st.val;
		else if (st.tag == FERRY_BALLOON_S_MAX_RATE)
			b->max_rate = st.val;
	}
	b->have_stats = true;
	b->stats_ns = clock_ns();
	b->holding_stats = true;
	b->stats_head = c->head;
}

static void balloon_queue_notify(struct virtio_device *vd, struct virtqueue *vq)
{
	struct balloon *b = to_balloon(vd);
	struct vq_chain c;
	bool pushed = false;
	unsigned chains = 0;
	while (chains++ < PASS_CHAINS && vq_pop(vq, &c) == 1) {
		switch (vq->index) {
		case Q_INFLATE:
		case Q_DEFLATE:
			balloon_frames(b, &c, vq->index == Q_INFLATE);
			break;
		case Q_STATS:
			balloon_stats(b, vq, &c);
			continue; /* kept until we want fresh statistics */
		case Q_REPORTING:
			balloon_report(b, &c);
			break;
		}
		vq_push(vq, c.head, 0);
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(vd, vq);
	if (chains > PASS_CHAINS && vq_pending(vq))
		virtio_queue_more(vd, vq);
}

/* A guest that writes to pages it gave away takes host memory back behind
 * the scheduler's back: find such pages, count them, release them again. */
static void balloon_audit(struct balloon *b)
{
	uint64_t pfn = 0;
	while (pfn < b->nr_frames) {
		if (!test_bit(b->in_balloon, pfn)) {
			pfn++;
			continue;
		}
		uint64_t end = pfn;
		while (end < b->nr_frames && test_bit(b->in_balloon, end))
			end++;
		uint64_t gpa = pfn << 12, len = (end - pfn) << 12;
		const struct gm_region *r = gm_region_of(&b->vd.dev.vm->mem, gpa, len);
		if (r && !r->hugepages) {
			off_t from = (off_t)(gpa - r->gpa), to = from + (off_t)len;
			off_t data = lseek(r->memfd, from, SEEK_DATA);
			while (data >= 0 && data < to) {
				off_t hole = lseek(r->memfd, data, SEEK_HOLE);
				if (hole < 0 || hole > to)
					hole = to;
				uint64_t n = (uint64_t)(hole - data) / PAGE;
				b->touched_pages += n;
				device_reject(&b->vd.dev, "guest wrote to %llu pages it gave to the balloon; released again",
					      (unsigned long long)n);
				fallocate(r->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, data, hole - data);
				data = lseek(r->memfd, hole, SEEK_DATA);
			}
		}
		pfn = end;
	}
}

static void balloon_tick(void *arg, uint32_t events)
{
	struct balloon *b = arg;
	(void)events;
	pthread_mutex_lock(b->vd.lock);
	if (b->holding_stats) { /* handing the buffer back asks for new numbers */
		struct virtqueue *vq = &b->vd.vq[Q_STATS];
		b->holding_stats = false;
		vq_push(vq, b->stats_head, 0);
		virtio_queue_interrupt(&b->vd, vq);
	}
	if (++b->ticks % AUDIT_EVERY == 0)
		balloon_audit(b);
	pthread_mutex_unlock(b->vd.lock);
}

static void balloon_config_write(struct virtio_device *vd, uint32_t off, const void *data, uint32_t len)
{
	struct balloon *b = to_balloon(vd);
	if (off == offsetof(struct virtio_balloon_config, actual) && len == 4)
		memcpy(&b->cfg.actual, data, 4);
	else
		device_reject(&b->vd.dev, "write of %u bytes at config offset %u (only 'actual' is writable)", len, off);
}

static void balloon_reset(struct virtio_device *vd)
{
	struct balloon *b = to_balloon(vd);
	/* A reset driver forgets its balloon: the pages are the guest's again
	 * (and read as zeroes). */
	memset(b->in_balloon, 0, (b->nr_frames + 7) / 8);
	b->held = 0;
	b->cfg.actual = 0;
	b->holding_stats = false;
	b->have_stats = false;
}

static void balloon_counters_json(struct virtio_device *vd, cJSON *o)
{
	struct balloon *b = to_balloon(vd);
	cJSON_AddNumberToObject(o, "target_pages", b->cfg.num_pages);
	cJSON_AddNumberToObject(o, "actual_pages", b->cfg.actual);
	cJSON_AddNumberToObject(o, "held_pages", (double)b->held);
	cJSON_AddNumberToObject(o, "inflated", (double)b->inflated);
	cJSON_AddNumberToObject(o, "inflated_over_target", (double)b->over_target);
	cJSON_AddNumberToObject(o, "deflated", (double)b->deflated);
	cJSON_AddNumberToObject(o, "host_freed_bytes", (double)b->freed_bytes);
	cJSON_AddNumberToObject(o, "reported_bytes", (double)b->reported_bytes);
	cJSON_AddNumberToObject(o, "touched_after_inflate", (double)b->touched_pages);
	cJSON_AddNumberToObject(o, "punch_errors", (double)b->punch_errors);
	if (b->have_stats) {
		cJSON *s = cJSON_AddObjectToObject(o, "guest_stats");
		cJSON_AddNumberToObject(s, "free_mib", (double)b->stats[VIRTIO_BALLOON_S_MEMFREE] / (1 << 20));
		cJSON_AddNumberToObject(s, "total_mib", (double)b->stats[VIRTIO_BALLOON_S_MEMTOT] / (1 << 20));
		cJSON_AddNumberToObject(s, "available_mib", (double)b->stats[VIRTIO_BALLOON_S_AVAIL] / (1 << 20));
		cJSON_AddNumberToObject(s, "major_faults", (double)b->stats[VIRTIO_BALLOON_S_MAJFLT]);
		cJSON_AddNumberToObject(s, "minor_faults", (double)b->stats[VIRTIO_BALLOON_S_MINFLT]);
		cJSON_AddNumberToObject(s, "max_rate_pages_per_s", (double)b->max_rate);
	}
}

static void balloon_destroy(struct virtio_device *vd)
{
	struct balloon *b = to_balloon(vd);
	if (b->timer)
		evl_del(b->vd.dev.vm->evl, b->timer);
	free(b->in_balloon);
	free(b);
}

static const struct virtio_device_ops balloon_ops = {
	.type = VIRTIO_ID_BALLOON,
	.num_queues = 4,
	.queue_size = BALLOON_QUEUE_SIZE,
	.features = (1ull << VIRTIO_BALLOON_F_STATS_VQ) | (1ull << VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
		    (1ull << VIRTIO_BALLOON_F_REPORTING),
	.config_size = sizeof(struct virtio_balloon_config),
	.config_write = balloon_config_write,
	.queue_notify = balloon_queue_notify,
	.reset = balloon_reset,
	.counters_json = balloon_counters_json,
	.destroy = balloon_destroy,
};

int virtio_balloon_create(struct vm *vm, const struct device_config *dc, char *err, size_t errlen)
{
	struct balloon *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uint64_t top = 0;
	b->nr_ram = 0;
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	unsigned n = pvh_memmap(gm_total_size(&vm->mem), map, PVH_MAX_MEMMAP);
	for (unsigned i = 0; i < n; i++) {
		if (map[i].type != HVM_MEMMAP_TYPE_RAM || map[i].addr < 0x100000)
			continue; /* the first MiB holds boot data and is never ballooned */
		b->ram[b->nr_ram++] = map[i];
		if (map[i].addr + map[i].size > top)
			top = map[i].addr + map[i].size;
	}
	b->nr_frames = top / PAGE;
	b->in_balloon = calloc((b->nr_frames + 7) / 8, 1);
	if (!b->in_balloon) {
		snprintf(err, errlen, "out of memory");
		free(b);
		return -1;
	}
	if (virtio_device_init(&b->vd, vm, "balloon", &balloon_ops, &b->cfg, NULL, err, errlen) < 0) {
		free(b->in_balloon);
		free(b);
		return -1;
	}
	vm->balloon = b;
	b->timer = evl_add_timer(vm->evl, (uint64_t)dc->balloon.stats_ms * 1000000ull, balloon_tick, b);
	if (!b->timer) {
		snprintf(err, errlen, "balloon: cannot start its timer");
		return -1;
	}
	return 0;
}

void balloon_set_target(struct vm *vm, uint64_t pages)
{
	struct balloon *b = vm->balloon;
	if (!b)
		return;
	if (pages > b->nr_frames)
		pages = b->nr_frames;
	pthread_mutex_lock(b->vd.lock);
	if (b->cfg.num_pages != (uint32_t)pages) {
		b->cfg.num_pages = (uint32_t)pages;
		virtio_config_changed(&b->vd);
	}
	pthread_mutex_unlock(b->vd.lock);
}

bool balloon_get_status(struct vm *vm, struct balloon_status *s)
{
	struct balloon *b = vm->balloon;
	if (!b)
		return false;
	pthread_mutex_lock(b->vd.lock);
	memset(s, 0, sizeof(*s));
	s->driver_ok = b->vd.status & VIRTIO_STATUS_DRIVER_OK;
	s->target_pages = b->cfg.num_pages;
	s->actual_pages = b->cfg.actual;
	s->held_pages = b->held;
	s->last_change_ns = b->last_change_ns;
	s->have_stats = b->have_stats;
	s->stats_age_ns = b->have_stats ? clock_ns() - b->stats_ns : 0;
	s->mem_free = b->stats[VIRTIO_BALLOON_S_MEMFREE];
	s->mem_total = b->stats[VIRTIO_BALLOON_S_MEMTOT];
	s->mem_available = b->stats[VIRTIO_BALLOON_S_AVAIL];
	s->max_rate = b->max_rate;
	pthread_mutex_unlock(b->vd.lock);
	return true;
}
