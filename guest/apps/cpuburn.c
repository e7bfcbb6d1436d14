/* cpuburn: keeps every online vCPU busy with a compute loop for ms=N
 * (default 2000), natively in ring 3 (each AP through smp_call_async, the
 * BSP itself), then reports per vCPU the iterations done and the time it
 * spent parked. A vCPU that the processor reservation driver (or anyone)
 * parks stops at its next interrupt and resumes where it was when
 * unparked; one parked at the start begins when unparked. */
#include <ferry/debug_exit.h>
#include "app.h"
#include "cmdline.h"
#include "kernel.h"
#include "smp.h"
#include "timer.h"
#include "work.h"

#define CHUNK 4096   /* iterations between clock reads */

struct slot {
	uint64_t deadline_ns;
	volatile uint64_t iterations;
	volatile uint64_t started_ns, ended_ns;
	uint64_t parked_before;
	bool launched;
	uint64_t sink;
};

static struct slot slots[MAX_CPUS];

static void burn(void *arg)
{
	struct slot *s = arg;
	uint64_t x = (uintptr_t)s | 1;

	s->started_ns = time_ns();
	while (time_ns() < s->deadline_ns) {
		for (unsigned i = 0; i < CHUNK; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			x ^= x >> 29;
		}
		s->iterations += CHUNK;
	}
	s->sink = x;
	s->ended_ns = time_ns();
}

static bool all_done(void *unused)
{
	(void)unused;
	for (unsigned i = 1; i < smp_cpu_count(); i++) {
		if (slots[i].launched && !smp_call_done(i))
			return false;
	}
	return true;
}

static int cpuburn_main(void)
{
	uint64_t ms = cmdline_get_u64("ms", 2000), start = time_ns(), deadline = start + ms * 1000000;
	unsigned n = smp_cpu_count();
	uint64_t total = 0;
	bool finished;

	kprintf("cpuburn: %u vCPUs for %lu ms\n", n, ms);
	for (unsigned i = 0; i < n; i++) {
		slots[i] = (struct slot){ .deadline_ns = deadline, .parked_before = smp_parked_ns(i) };
		slots[i].launched = i == 0 || smp_call_async(i, burn, &slots[i]) == 0;
		if (!slots[i].launched)
			kprintf("cpuburn: cpu %u is busy, not used\n", i);
	}
	burn(&slots[0]);
	/* A vCPU still parked at the end has not finished: do not wait for it
	 * for more than a moment (it returns at once when unparked). */
	finished = halt_until(all_done, NULL, 1000000000ull);
	for (unsigned i = 0; i < n; i++) {
		struct slot *s = &slots[i];
		uint64_t parked = smp_parked_ns(i) - s->parked_before;
		uint64_t ran = s->ended_ns > s->started_ns ? s->ended_ns - s->started_ns : 0;

		total += s->iterations;
		kprintf("cpuburn: cpu %u (apic %u): %lu iterations (%lu M/s while running), parked %lu ms%s\n",
			i, smp_cpu(i)->apic_id, s->iterations,
			ran > parked ? s->iterations / 1000 / ((ran - parked) / 1000000 ? (ran - parked) / 1000000 : 1) : 0,
			parked / 1000000, !s->launched ? " (not used)" : s->ended_ns ? "" : " (still parked)");
	}
	kprintf("cpuburn: %lu iterations in %lu ms%s\n", total, (time_ns() - start) / 1000000,
		finished ? "" : ", some vCPUs still parked");
	return FERRY_EXIT_OK;
}

APP("cpuburn", "keep every vCPU busy for ms=N, report work and parked time per vCPU", cpuburn_main);
