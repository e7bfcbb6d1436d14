/* TSC-based time and per-CPU one-shot timers on the LAPIC timer. Conversions
 * use 32.32 fixed-point factors and 64x64->128-bit multiplies. */
#include "interrupt.h"
#include "kernel.h"
#include "lapic.h"
#include "smp.h"
#include "timer.h"
#include "work.h"
#include "x86.h"

#define PIT_HZ          1193182ull
#define PIT_DATA(ch)    (0x40 + (ch))
#define PIT_CMD         0x43
#define PORT_B          0x61   /* bit 0: channel 2 gate, bit 1: speaker */
#define CALIBRATE_PIT_MS 10
#define CALIBRATE_LAPIC_US 1000

static uint64_t khz;
static const char *source = "none";
static uint64_t tsc_base;
static uint64_t ns_per_tsc;      /* 32.32 */
static uint64_t tsc_per_ns;      /* 32.32 */
static uint64_t lapic_per_tsc;   /* 32.32 */
static uint64_t lapic_khz;

static uint64_t mul_shift32(uint64_t a, uint64_t b)
{
	return (uint64_t)(((unsigned __int128)a * b) >> 32);
}

static uint64_t khz_from_hypervisor(void)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	if (!(r[2] & (1u << 31)))
		return 0;                 /* no hypervisor present */
	cpuid(0x40000000, 0, r);
	if (r[0] < 0x40000010)
		return 0;
	cpuid(0x40000010, 0, r);
	return r[0];                      /* TSC frequency in kHz */
}

static uint64_t khz_from_cpuid15(void)
{
	uint32_t r[4];

	cpuid(0, 0, r);
	if (r[0] < 0x15)
		return 0;
	cpuid(0x15, 0, r);                /* TSC = crystal (ecx Hz) * ebx / eax */
	if (!r[0] || !r[1] || !r[2])
		return 0;
	return (uint64_t)r[2] * r[1] / r[0] / 1000;
}

static uint16_t pit_read_count(unsigned ch)
{
	uint8_t lo, hi;

	outb(PIT_CMD, (uint8_t)(ch << 6));  /* counter latch command */
	lo = inb(PIT_DATA(ch));
	hi = inb(PIT_DATA(ch));
	return (uint16_t)(hi << 8 | lo);
}

/* Counts TSC ticks while a PIT channel counts down 10 ms in mode 0. Channel 2
 * is meant for this, its gate being bit 0 of port 0x61; a machine without
 * port 0x61 (it reads 0xff, e.g. QEMU's microvm) leaves channel 2 gated off,
 * so channel 0 is used there: its IRQ is masked anyway. */
static uint64_t khz_from_pit(void)
{
	uint8_t port_b = inb(PORT_B);
	unsigned ch = port_b == 0xff ? 0 : 2;
	uint16_t first, now;
	uint64_t t0, t1;
	long spin = 0;

	if (ch == 2)
		outb(PORT_B, (port_b & ~0x02) | 0x01);  /* gate on, speaker off */
	outb(PIT_CMD, (uint8_t)(ch << 6 | 0x30));     /* lo/hi byte, mode 0, binary */
	outb(PIT_DATA(ch), 0xff);
	outb(PIT_DATA(ch), 0xff);
	first = pit_read_count(ch);
	t0 = rdtsc();
	do {
		now = pit_read_count(ch);
		t1 = rdtsc();
		if (++spin > 10000000)
			return 0;  /* not counting */
	} while ((uint16_t)(first - now) < PIT_HZ * CALIBRATE_PIT_MS / 1000);
	return (t1 - t0) * PIT_HZ / (uint16_t)(first - now) / 1000;
}

static void calibrate_lapic(void)
{
	uint64_t t0, t1, t2, t3, ticks;
	uint32_t remaining;

	t0 = rdtsc();
	lapic_timer_oneshot(VECTOR_TIMER, UINT32_MAX);
	t1 = rdtsc();
	while (rdtsc() - t1 < khz * CALIBRATE_LAPIC_US / 1000)
		cpu_relax();
	t2 = rdtsc();
	remaining = lapic_timer_remaining();
	t3 = rdtsc();
	lapic_timer_oneshot(VECTOR_TIMER, 0);
	/* Each MMIO access is an exit: measure between the midpoints. */
	ticks = (t2 + t3) / 2 - (t0 + t1) / 2;
	lapic_per_tsc = ((uint64_t)(UINT32_MAX - remaining) << 32) / ticks;
	lapic_khz = mul_shift32(khz, lapic_per_tsc);
}

uint64_t tsc_khz(void) { return khz; }
const char *tsc_source(void) { return source; }
uint64_t lapic_timer_khz(void) { return lapic_khz; }

uint64_t time_ns(void)
{
	return mul_shift32(rdtsc() - tsc_base, ns_per_tsc);
}

static uint64_t ns_to_tsc(uint64_t ns)
{
	/* Split so the product cannot overflow for long delays. */
	return mul_shift32(ns % 1000000000, tsc_per_ns) + ns / 1000000000 * khz * 1000;
}

void udelay(uint64_t us)
{
	uint64_t start = rdtsc(), ticks = ns_to_tsc(us * 1000);

	while (rdtsc() - start < ticks)
		cpu_relax();
}

/* Arms this CPU's LAPIC timer for its earliest timer, or stops it. */
static void rearm(struct cpu *cpu)
{
	uint64_t now, count;

	if (!cpu->timers) {
		lapic_timer_oneshot(VECTOR_TIMER, 0);
		return;
	}
	now = rdtsc();
	count = cpu->timers->deadline_tsc > now ?
		mul_shift32(cpu->timers->deadline_tsc - now, lapic_per_tsc) : 0;
	/* Too far out for 32 bits: fire early; timer_interrupt() re-arms. */
	lapic_timer_oneshot(VECTOR_TIMER, (uint32_t)MAX(1, MIN(count, UINT32_MAX)));
}

static void timer_interrupt(void *unused)
{
	struct cpu *cpu = this_cpu();
	uint64_t now = rdtsc();

	(void)unused;
	while (cpu->timers && cpu->timers->deadline_tsc <= now) {
		struct timer *t = cpu->timers;
		cpu->timers = t->next;
		t->pending = false;
		t->fn(t->arg);
		now = rdtsc();
	}
	rearm(cpu);
}

void timer_start(struct timer *t, uint64_t delay_ns, timer_fn fn, void *arg)
{
	uint64_t flags = irq_save();
	struct cpu *cpu = this_cpu();
	struct timer **p = &cpu->timers;

	t->deadline_tsc = rdtsc() + ns_to_tsc(delay_ns);
	t->fn = fn;
	t->arg = arg;
	t->pending = true;
	while (*p && (*p)->deadline_tsc <= t->deadline_tsc)
		p = &(*p)->next;
	t->next = *p;
	*p = t;
	if (cpu->timers == t)
		rearm(cpu);
	irq_restore(flags);
}

bool timer_cancel(struct timer *t)
{
	uint64_t flags = irq_save();
	struct cpu *cpu = this_cpu();
	bool was_pending = t->pending;

	if (was_pending) {
		struct timer **p = &cpu->timers;
		while (*p && *p != t)
			p = &(*p)->next;
		if (*p)
			*p = t->next;
		t->pending = false;
		if (p == &cpu->timers)
			rearm(cpu);
	}
	irq_restore(flags);
	return was_pending;
}

static void set_flag(void *flag)
{
	*(volatile bool *)flag = true;
}

bool halt_until(bool (*cond)(void *), void *arg, uint64_t timeout_ns)
{
	uint64_t flags = irq_save();
	volatile bool expired = false;
	struct timer t;
	bool met;

	if (timeout_ns != TIMEOUT_NEVER)
		timer_start(&t, timeout_ns, set_flag, (void *)&expired);
	for (;;) {
		if (cond && cond(arg)) {
			met = true;
			break;
		}
		if (expired) {
			met = false;
			break;
		}
		if (work_idle_wanted()) {  /* deferred work or parking (work.h) */
			work_idle_run();
			continue;
		}
		irq_enable_and_halt();
		irq_disable();
	}
	if (timeout_ns != TIMEOUT_NEVER)
		timer_cancel(&t);
	irq_restore(flags);
	return met;
}

void sleep_ns(uint64_t ns)
{
	halt_until(NULL, NULL, ns);
}

void sleep_ms(uint64_t ms)
{
	sleep_ns(ms * 1000000);
}

void time_init_cpu(void)
{
	lapic_timer_oneshot(VECTOR_TIMER, 0);
}

void time_init(void)
{
	uint64_t flags = irq_save();

	if ((khz = khz_from_hypervisor()))
		source = "cpuid 0x40000010";
	else if ((khz = khz_from_cpuid15()))
		source = "cpuid 0x15";
	else if ((khz = khz_from_pit()))
		source = "pit";
	else
		panic("timer: cannot determine the TSC frequency");
	tsc_base = rdtsc();
	ns_per_tsc = (1000000ull << 32) / khz;
	tsc_per_ns = (khz << 32) / 1000000;
	irq_register(VECTOR_TIMER, timer_interrupt, NULL);
	calibrate_lapic();
	irq_restore(flags);
}
