/* virtio-balloon driver (drivers/virtio_balloon.c; virtio 1.2 section 5.5).
 *
 * The host asks, through the device's num_pages, for a number of 4 KiB pages
 * it wants back; the driver reserves that many pages through the kernel's
 * page allocator (nothing else can then use them), tells the host their
 * frame numbers on the inflate queue and keeps them; when the request goes
 * down it tells the host on the deflate queue and frees them. It moves no
 * faster than the guest's current maximum reservation change rate (see
 * balloon_rate_* below and guest/README.md), which it also reports in its
 * statistics (tag FERRY_BALLOON_S_MAX_RATE). With DEFLATE_ON_OOM it gives
 * pages back when an allocation would fail; with REPORTING it tells the host
 * which large free blocks it may drop.
 *
 * Everything runs as deferred work (work.h) on the BSP, driven by the
 * config-change interrupt, the stats queue and a timer (or polling, on a
 * device without MSI-X), whatever app runs.
 *
 * Command line: balloon=on|off|app (app: passive, an app moves the balloon
 * through balloon_give/balloon_take), balloon_floor=SIZE, balloon_rate=SIZE
 * (cap per second), balloon_drain_ms=N, balloon_report=0|1,
 * balloon_report_ms=N, balloon_poll_ms=N (how often to look for a new target
 * and statistics requests on a device without MSI-X, such as QEMU's; 100),
 * balloon_verbose. */
#ifndef GUEST_VIRTIO_BALLOON_H
#define GUEST_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "page_alloc.h"

/* Finds and starts the driver. 0; -1 no device (or balloon=off); -2 broken. */
int virtio_balloon_init(void);
bool balloon_present(void);

struct balloon_info {
	bool present, passive, broken;
	bool stats_vq, deflate_on_oom, reporting;   /* negotiated */
	uint32_t target;          /* num_pages as last read */
	uint64_t held;            /* pages in the balloon (the app's, when passive) */
	uint64_t max_rate;        /* pages/s: current maximum reservation change rate */
	uint64_t pressure;        /* pages/s: the workload's recent allocation rate */
	uint64_t floor;           /* pages: never inflates below this much free memory */
	uint64_t inflated, deflated, oom_deflated, oom_events;  /* pages, events */
	uint64_t reported;        /* pages reported free */
	uint64_t stats_sent;      /* statistics buffers sent */
	uint64_t rounds;          /* inflate/deflate buffers batches sent */
	uint64_t config_changes;
	uint64_t list_pages;      /* pages the driver's block list uses */
};
void balloon_info(struct balloon_info *bi);

/* Re-reads num_pages and returns it (0 without a device). */
uint32_t balloon_read_target(void);

/* For the selftest: stops (true) or restarts the driver's own movements
 * and free page reporting, so that nothing takes free pages meanwhile. */
void balloon_pause(bool paused);
/* Moves the balloon now, ignoring the rate but not the host's target (no
 * inflating beyond num_pages): returns pages moved. */
uint64_t balloon_inflate_now(uint64_t pages);
uint64_t balloon_deflate_now(uint64_t pages);
/* Waits up to timeout_ns for the driver to reach num_pages; true if it has. */
bool balloon_wait_settled(uint64_t timeout_ns);
/* Waits up to timeout_ns for the device to ask for statistics again. */
bool balloon_wait_stats(uint64_t timeout_ns);

/* Passive mode (balloon=app): an app reserves the pages itself and tells the
 * host through these. give: the blocks go to the host on the inflate queue
 * (the app keeps them allocated and untouched); take: the blocks go on the
 * deflate queue (the app frees them after). Both wait for the host; 0 or -1.
 * Statistics and the maximum rate count what the app holds. */
bool balloon_passive(void);
int balloon_give(const struct page_block *blocks, size_t n);
int balloon_take(const struct page_block *blocks, size_t n);
/* Halts until num_pages changes, a config interrupt arrives or timeout_ns pass. */
void balloon_wait_config(uint64_t timeout_ns);

#endif
