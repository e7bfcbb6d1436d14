/* Power-off through the debug-exit port, and panic. */
#include <ferry/debug_exit.h>
#include "kernel.h"
#include "x86.h"

__attribute__((noreturn)) void poweroff(int status)
{
	irq_disable();
	outb(FERRY_DEBUG_EXIT_PORT, (uint8_t)status);
	/* Only reached if no debug-exit device listens on the port. */
	for (;;)
		asm volatile("hlt");
}

void print_backtrace(uint64_t rbp)
{
	kprintf("backtrace:");
	/* Frames live on kernel stacks, which grow down: each saved rbp must be
	 * above the previous one. Stop at anything implausible. */
	for (int depth = 0; depth < 16 && rbp && !(rbp & 7) && rbp < (1ull << 47); depth++) {
		const uint64_t *frame = (const uint64_t *)rbp;
		if (!frame[1])
			break;
		kprintf(" %lx", frame[1]);
		if (frame[0] <= rbp)
			break;
		rbp = frame[0];
	}
	kprintf("\n");
}

__attribute__((noreturn)) void panic(const char *fmt, ...)
{
	static volatile uint32_t panicking;
	va_list ap;

	irq_disable();
	/* A panic while panicking (a fault in the backtrace, another CPU) must not
	 * recurse or interleave: just leave. */
	if (__atomic_exchange_n(&panicking, 1, __ATOMIC_SEQ_CST))
		poweroff(FERRY_EXIT_PANIC);
	kprintf("PANIC: ");
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	kprintf("\n");
	print_backtrace((uint64_t)__builtin_frame_address(0));
	poweroff(FERRY_EXIT_PANIC);
}
