/* idle: keeps a VM alive without doing anything, halted between timer
 * interrupts, so benchmarks can sample the memory of a running guest. */
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "timer.h"

static int idle_main(void)
{
	const char *ms = cmdline_get("ms");

	/* Benchmarks wait for this line before sampling the VM's memory. */
	if (!ms) {
		pr_info("idle: halting until the VM is stopped\n");
		halt_until(NULL, NULL, TIMEOUT_NEVER);
	}
	uint64_t n = cmdline_get_u64("ms", 0);
	pr_info("idle: waiting %lu ms\n", n);
	sleep_ms(n);
	return 0;
}

APP("idle", "halt for ms=N milliseconds (default: until stopped), then exit 0", idle_main);
