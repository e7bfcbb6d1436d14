/* Kernel console on the serial port. One kprintf call writes its output
 * under a lock, so lines from different CPUs do not interleave.
 *
 * On hosts that emulate ring 0 (kvm_pvm), formatting costs a few hundred
 * microseconds per line there, and next to nothing in ring 3: so the text is
 * formatted into a buffer by native_call() and only the output, port I/O
 * that exits to the VMM anyway, runs in ring 0. Interrupt and exception
 * handlers, which cannot use native_call(), and text longer than the buffer
 * go straight from the formatter to the UART. */
#include "kernel.h"
#include "native.h"
#include "serial.h"
#include "smp.h"
#include "spinlock.h"

#define LINE_MAX 256

bool console_quiet;
static struct spinlock console_lock = SPINLOCK_INIT;

static void console_put(void *ctx, const char *s, size_t n)
{
	(void)ctx;
	serial_write(s, n);
}

struct format_job {
	char *buf;
	const char *fmt;
	va_list *ap;
};

static long format_job(void *p)
{
	struct format_job *j = p;
	va_list ap;
	int n;

	va_copy(ap, *j->ap);
	n = kvsnprintf(j->buf, LINE_MAX, j->fmt, ap);
	va_end(ap);
	return n;
}

int kvprintf(const char *fmt, va_list ap)
{
	char buf[LINE_MAX];
	va_list copy;
	struct format_job job = { buf, fmt, &copy };
	uint64_t flags;
	bool locked = false;
	int n;

	va_copy(copy, ap);
	n = !native_enabled || in_interrupt() ? -1 : (int)native_call(format_job, &job);
	va_end(copy);
	flags = irq_save();

	/* A CPU that panics while another holds the lock must still get its
	 * message out: give up waiting after a while. */
	for (long spin = 0; spin < 1000000 && !(locked = spin_trylock(&console_lock)); spin++)
		cpu_relax();
	if (n >= 0 && n < LINE_MAX)
		serial_write(buf, (size_t)n);
	else
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
