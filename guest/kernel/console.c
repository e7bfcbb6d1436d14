/* Kernel console on the serial port. One kprintf call writes its output
 * under a lock, so lines from different CPUs do not interleave. Output goes
 * straight from the formatter to the UART: no copy, as every instruction
 * counts when the guest is emulated. */
#include "kernel.h"
#include "serial.h"
#include "spinlock.h"

bool console_quiet;
static struct spinlock console_lock = SPINLOCK_INIT;

static void console_put(void *ctx, const char *s, size_t n)
{
	(void)ctx;
	serial_write(s, n);
}

int kvprintf(const char *fmt, va_list ap)
{
	uint64_t flags = irq_save();
	bool locked = false;
	int n;

	/* A CPU that panics while another holds the lock must still get its
	 * message out: give up waiting after a while. */
	for (long spin = 0; spin < 1000000 && !(locked = spin_trylock(&console_lock)); spin++)
		cpu_relax();
	n = kvformat(console_put, NULL, fmt, ap);
	if (locked)
		spin_unlock(&console_lock);
	irq_restore(flags);
	return n;
}

int kprintf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = kvprintf(fmt, ap);
	va_end(ap);
	return n;
}
