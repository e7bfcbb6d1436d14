/* rngflood: the worst a guest can ask of virtio-rng, and what another guest
 * sees meanwhile.
 *   role=flood (default): for ms=N, posts chains whose every descriptor
 *     covers a large buffer (the queue's size in descriptors, each up to
 *     64 MiB), waits for each, and counts the bytes the device filled.
 *   role=measure: after delay_ms, reads 64 bytes count=N times, interval_ms
 *     apart, and reports the latency of each read (p50, p99, max).
 * A VMM that bounds the work of one request serves the measuring VM within
 * milliseconds while the other floods; one that fills every byte asked for
 * stalls it for seconds. */
#include <ferry/debug_exit.h>
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"
#include "page_alloc.h"
#include "timer.h"
#include "virtio_rng.h"
#include "virtqueue.h"

#define MAX_SAMPLES 4096

static int flood(void)
{
	struct virtqueue *vq = virtio_rng_queue();
	uint64_t ms = cmdline_get_u64("ms", 3000), deadline = time_ns() + ms * 1000000ull, chains = 0, bytes = 0;
	struct vq_seg segs[64];
	unsigned order = 14, n;
	void *buf = NULL;

	if (!vq) {
		kprintf("rngflood: no virtio-rng device\n");
		return FERRY_EXIT_FAIL;
	}
	while (!buf && order >= 8)
		buf = alloc_pages(order--);
	if (!buf) {
		kprintf("rngflood: no memory for a buffer\n");
		return FERRY_EXIT_FAIL;
	}
	n = MIN((unsigned)vq->size, (unsigned)ARRAY_SIZE(segs));
	for (unsigned i = 0; i < n; i++)
		segs[i] = (struct vq_seg){ buf, (uint32_t)(PAGE_SIZE << (order + 1)) };
	kprintf("rngflood: chains of %u descriptors of %lu KiB each\n", n, (PAGE_SIZE << (order + 1)) >> 10);
	while (time_ns() < deadline) {
		uint32_t got = 0;

		if (vq_add(vq, segs, 0, n, buf)) {
			kprintf("rngflood: queue refused a chain\n");
			return FERRY_EXIT_FAIL;
		}
		vq_kick(vq);
		if (vq_wait(vq, &got, 120 * 1000000000ull) != buf) {
			kprintf("rngflood: the device kept a chain for 120 s\n");
			return FERRY_EXIT_FAIL;
		}
		chains++;
		bytes += got;
	}
	kprintf("rngflood: flood: %lu chains, %lu bytes filled\n", chains, bytes);
	return FERRY_EXIT_OK;
}

static uint64_t samples[MAX_SAMPLES];

static void sort(uint64_t *v, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		uint64_t x = v[i];
		unsigned j = i;

		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

static int measure(void)
{
	unsigned count = (unsigned)MIN(cmdline_get_u64("count", 200), MAX_SAMPLES);
	uint64_t interval = cmdline_get_u64("interval_ms", 10);
	uint8_t out[64];

	sleep_ms(cmdline_get_u64("delay_ms", 0));
	for (unsigned i = 0; i < count; i++) {
		uint64_t t0 = time_ns();

		if (virtio_rng_read(out, sizeof(out))) {
			kprintf("rngflood: read %u failed\n", i);
			return FERRY_EXIT_FAIL;
		}
		samples[i] = time_ns() - t0;
		sleep_ms(interval);
	}
	sort(samples, count);
	kprintf("rngflood: measure: reads=%u p50_us=%lu p99_us=%lu max_us=%lu\n", count, samples[count / 2] / 1000,
		samples[count * 99 / 100] / 1000, samples[count - 1] / 1000);
	return FERRY_EXIT_OK;
}

static int rngflood_main(void)
{
	const char *role = cmdline_get("role");

	if (!role || !strcmp(role, "flood"))
		return flood();
	if (!strcmp(role, "measure"))
		return measure();
	kprintf("rngflood: role=%s: expected flood or measure\n", role);
	return FERRY_EXIT_FAIL;
}

APP("rngflood", "worst-case virtio-rng requests (role=flood ms=N) or read latency beside them (role=measure)",
    rngflood_main);
