/* balloonapp: the memory reservation module as a user-level application,
 * for guests whose kernel does not run a balloon driver of its own. Boot
 * with balloon=app: the kernel's virtio-balloon driver is then passive (it
 * sets the device up, answers statistics, reports free pages, computes the
 * maximum change rate) and this app does the reserving: it reads the host's
 * request (num_pages), allocates pages through the ordinary page allocator
 * as any workload would, holds them without touching them and tells the host
 * their frame numbers through the driver (balloon_give); when the request
 * goes down it tells the host (balloon_take) and frees them. It moves no
 * faster than the rate the driver reports. Runs for ms=N (default: until
 * the VM is stopped), stepping every step_ms=N (default 10). */
#include <ferry/debug_exit.h>
#include "app.h"
#include "blocklist.h"
#include "cmdline.h"
#include "kernel.h"
#include "page_alloc.h"
#include "timer.h"
#include "virtio_balloon.h"

#define BATCH 512

static struct blocklist held;
static struct page_block batch[BATCH];

/* Reserves up to n pages and gives them to the host. */
static uint64_t reserve(uint64_t n)
{
	uint64_t done = 0;

	while (done < n) {
		uint64_t got;
		size_t nb = alloc_pages_bulk(n - done, PAGE_ORDER_2M, batch, BATCH, &got);

		if (!nb)
			break;
		for (size_t i = 0; i < nb; i++) {
			if (!blocklist_push(&held, batch[i].addr, batch[i].order))
				continue;
			for (size_t j = i; j < nb; j++) {
				free_pages(phys_to_virt(batch[j].addr), batch[j].order);
				got -= 1ull << batch[j].order;
			}
			nb = i;
			break;
		}
		if (!nb)
			break;
		if (balloon_give(batch, nb)) {
			kprintf("balloonapp: the driver refused the pages\n");
			break;
		}
		done += got;
	}
	return done;
}

/* Takes up to n pages back from the host and frees them. */
static uint64_t release(uint64_t n)
{
	uint64_t done = 0;

	while (done < n) {
		uint64_t got;
		size_t nb = blocklist_take(&held, n - done, batch, BATCH, &got);

		if (!nb)
			break;
		if (balloon_take(batch, nb)) {
			kprintf("balloonapp: the driver refused the pages\n");
			for (size_t i = 0; i < nb; i++)
				blocklist_push(&held, batch[i].addr, batch[i].order);
			break;
		}
		for (size_t i = 0; i < nb; i++)
			free_pages(phys_to_virt(batch[i].addr), batch[i].order);
		done += got;
	}
	return done;
}

static int balloonapp_main(void)
{
	uint64_t ms = cmdline_get_u64("ms", 0), step_ms = MAX(cmdline_get_u64("step_ms", 10), 1);
	uint64_t start = time_ns(), last = start, move_start = 0, move_from = 0;
	bool moving = false;

	if (!balloon_passive()) {
		kprintf("balloonapp: needs a virtio-balloon device and balloon=app on the command line\n");
		return FERRY_EXIT_FAIL;
	}
	kprintf("balloonapp: reserving memory for the host from user level%s\n",
		ms ? "" : " until the VM is stopped");
	while (!ms || time_ns() - start < ms * 1000000) {
		uint64_t now = time_ns(), target = balloon_read_target(), dt = now - last;
		struct page_alloc_stats st;
		struct balloon_info bi;

		last = now;
		if (!moving && held.pages != target) {
			moving = true;
			move_start = now;
			move_from = held.pages;
		}
		balloon_info(&bi);
		if (target > held.pages) {
			uint64_t allow = bi.max_rate * MIN(MAX(dt, step_ms * 1000000), 2 * step_ms * 1000000) / 1000000000;
			uint64_t headroom;

			page_alloc_stats(&st);
			headroom = st.free_pages > bi.floor ? st.free_pages - bi.floor : 0;
			reserve(MIN(MIN(target - held.pages, allow), headroom));
		} else if (target < held.pages) {
			release(held.pages - target);
		}
		if (moving && held.pages == target) {
			uint64_t moved = held.pages > move_from ? held.pages - move_from : move_from - held.pages;
			moving = false;
			kprintf("balloonapp: %s %lu MiB in %lu ms, holding %lu MiB for the host\n",
				held.pages > move_from ? "reserved" : "released", moved >> 8,
				(time_ns() - move_start) / 1000000, held.pages >> 8);
		}
		if (held.pages != target)
			sleep_ms(step_ms);
		else
			balloon_wait_config(ms ? MIN(1000000000ull, ms * 1000000) : 1000000000ull);
	}
	kprintf("balloonapp: done, holding %lu MiB\n", held.pages >> 8);
	return FERRY_EXIT_OK;
}

APP("balloonapp", "user-level balloon: reserve memory for the host (needs balloon=app; ms=N)", balloonapp_main);
