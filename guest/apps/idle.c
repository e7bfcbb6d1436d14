/* idle: keeps a VM alive without doing anything, halted between timer
 * interrupts, so benchmarks can sample the memory of a running guest. */
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "timer.h"

static int idle_main(void)
{
	const char *ms = cmdline_get("ms");

	if (!ms) {
		pr_info("idle: halting until the VM is stopped\n");
		halt_until(NULL, NULL, TIMEOUT_NEVER);
	}
	sleep_ms(cmdline_get_u64("ms", 0));
	return 0;
}

APP("idle", "halt for ms=N milliseconds (default: until stopped), then exit 0", idle_main);
