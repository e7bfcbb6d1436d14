/* Time and timers (kernel/timer.c). Time comes from the TSC; wake-ups from
 * each CPU's LAPIC timer in one-shot mode, armed only while a timer is
 * pending: there is no periodic tick (each interrupt costs a VM exit). */
#ifndef GUEST_TIMER_H
#define GUEST_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define TIMEOUT_NEVER UINT64_MAX

/* BSP: measures the TSC frequency (CPUID 0x40000010, CPUID 0x15, else the
 * PIT) and the LAPIC timer rate against the TSC. */
void time_init(void);
/* Every CPU, after lapic_init_cpu(). */
void time_init_cpu(void);

uint64_t tsc_khz(void);
const char *tsc_source(void);     /* how tsc_khz() was found */
uint64_t lapic_timer_khz(void);   /* after the divider */
uint64_t time_ns(void);           /* since time_init() */

void udelay(uint64_t us);         /* spins */
void sleep_ns(uint64_t ns);       /* halts until a timer interrupt */
void sleep_ms(uint64_t ms);

/* Halts (interrupts enabled) until cond(arg) is true or timeout_ns have
 * passed; cond runs with interrupts disabled, after every wake-up. cond may
 * be NULL (then: sleep). Returns whether cond became true. */
bool halt_until(bool (*cond)(void *), void *arg, uint64_t timeout_ns);

/* One-shot timers, per CPU: fn(arg) runs in interrupt context on the CPU that
 * started the timer, once delay_ns have passed. A timer may only be cancelled
 * on the CPU that started it. */
typedef void (*timer_fn)(void *arg);
struct timer {
	struct timer *next;
	uint64_t deadline_tsc;
	timer_fn fn;
	void *arg;
	bool pending;
};
void timer_start(struct timer *t, uint64_t delay_ns, timer_fn fn, void *arg);
bool timer_cancel(struct timer *t);  /* true if it was still pending */

#endif
