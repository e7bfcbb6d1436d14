/* balloonbench: how fast the balloon driver's mechanism moves pages, apart
 * from its rate limit. Waits until the driver has reached the host's target
 * (its own, rate-limited inflation is timed and printed by the driver), then
 * pauses the driver and, rounds=N times (default 3), deflates the whole
 * balloon and inflates it again through the device as fast as it can,
 * printing each time. Needs a host that asks for pages (e.g. a ferry config
 * with memory.max_mib below memory_mib). */
#include <ferry/debug_exit.h>
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "timer.h"
#include "virtio_balloon.h"

static int balloonbench_main(void)
{
	uint64_t rounds = cmdline_get_u64("rounds", 3);
	struct balloon_info bi;

	if (!balloon_present() || balloon_passive()) {
		kprintf("balloonbench: needs the virtio-balloon driver (active)\n");
		return FERRY_EXIT_FAIL;
	}
	for (unsigned t = 0; t < 100 && !balloon_read_target(); t++)
		sleep_ms(100);   /* the host sets its first target after a moment */
	if (!balloon_wait_settled(30000000000ull)) {
		balloon_info(&bi);
		kprintf("balloonbench: balloon at %lu of %u pages after 30 s\n", bi.held, bi.target);
		return FERRY_EXIT_FAIL;
	}
	balloon_info(&bi);
	if (!bi.held) {
		kprintf("balloonbench: the host wants no pages\n");
		return FERRY_EXIT_FAIL;
	}
	balloon_pause(true);
	for (uint64_t r = 0; r < rounds; r++) {
		uint64_t n = bi.held, t0 = time_ns(), d = balloon_deflate_now(n), t1 = time_ns();
		uint64_t i = balloon_inflate_now(n), t2 = time_ns();

		kprintf("balloonbench: deflate %lu MiB in %lu us (%lu MiB/s), inflate %lu MiB in %lu us (%lu MiB/s)\n",
			d >> 8, (t1 - t0) / 1000, (d >> 8) * 1000000000 / MAX(t1 - t0, 1),
			i >> 8, (t2 - t1) / 1000, (i >> 8) * 1000000000 / MAX(t2 - t1, 1));
		if (d != n || i != n)
			return FERRY_EXIT_FAIL;
	}
	balloon_pause(false);
	return FERRY_EXIT_OK;
}

APP("balloonbench", "time the balloon's inflate/deflate mechanism at the host's target (rounds=N)", balloonbench_main);
