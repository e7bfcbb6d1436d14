/* crash: fails on purpose, so tests can check how failures are reported.
 *   mode=ud      an undefined instruction nobody expects: the exception
 *                handler prints the registers and powers off with status 3
 *   mode=triple  an exception with no usable IDT: the CPU triple-faults and
 *                the VMM must say so (under QEMU, -no-reboot makes it exit) */
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"

#include "ferry/debug_exit.h"

static int crash_main(void)
{
	const char *mode = cmdline_get_str("mode", "ud");
	kprintf("crash: mode=%s\n", mode);
	if (!strcmp(mode, "ud")) {
		asm volatile("ud2");
	} else if (!strcmp(mode, "triple")) {
		struct __attribute__((packed)) {
			uint16_t limit;
			uint64_t base;
		} empty = { 0, 0 };
		asm volatile("cli; lidt %0; ud2" : : "m"(empty));
	} else {
		kprintf("crash: unknown mode \"%s\" (ud, triple)\n", mode);
		return FERRY_EXIT_BAD_ARGS;
	}
	kprintf("crash: still alive after mode=%s\n", mode);
	return FERRY_EXIT_FAIL;
}

APP("crash", "fail on purpose (mode=ud|triple) to test failure reports", crash_main);
