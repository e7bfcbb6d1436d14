/* Per-CPU data and application processors. APs are started one at a time with
 * INIT-SIPI-SIPI into the real-mode trampoline (boot/ap_trampoline.S), which
 * brings them to long mode on the BSP's page tables and into ap_main(). An
 * idle AP halts until smp_call() hands it a function through its mailbox. */
#include <ferry/layout.h>
#include "acpi.h"
#include "boot.h"
#include "gdt.h"
#include "interrupt.h"
#include "kernel.h"
#include "kstring.h"
#include "lapic.h"
#include "native.h"
#include "page_alloc.h"
#include "smp.h"
#include "timer.h"
#include "work.h"
#include "x86.h"

#define AP_STACK_ORDER 2  /* 16 KiB */

static struct cpu cpus[MAX_CPUS];
static unsigned ncpus = 1;
static struct cpu *volatile ap_boot_cpu;

static void set_this_cpu(struct cpu *c)
{
	c->self = c;
	wrmsr(MSR_GS_BASE, (uintptr_t)c);
}

void smp_init_bsp(void)
{
	cpus[0].index = 0;
	cpus[0].fault.vector = -1;
	cpus[0].online = true;
	set_this_cpu(&cpus[0]);
}

unsigned smp_cpu_count(void)
{
	return ncpus;
}

struct cpu *smp_cpu(unsigned index)
{
	return index < ncpus ? &cpus[index] : NULL;
}

static void wake_interrupt(void *unused)
{
	(void)unused;  /* waking the halted CPU was the point */
}

static bool has_work(void *cpu)
{
	struct cpu *c = cpu;

	return c->call_fn && !c->parked;
}

/* An AP's life after start-up, under native_call(): the functions smp_call()
 * hands it run in ring 3, natively on hosts that emulate ring 0; halting
 * drops to ring 0 and comes back. A parked AP halts inside halt_until(),
 * at its preemption point (work.h). */
static long ap_loop(void *cpu)
{
	struct cpu *c = cpu;

	for (;;) {
		void (*fn)(void *);

		halt_until(has_work, c, TIMEOUT_NEVER);
		fn = c->call_fn;
		fn(c->call_arg);
		c->call_fn = NULL;
		WRITE_ONCE(c->call_done, true);
		lapic_send_ipi(c->caller_apic_id, VECTOR_WAKE);
	}
	return 0;
}

void ap_main(void)
{
	struct cpu *c = ap_boot_cpu;

	set_this_cpu(c);
	gdt_init_cpu();
	interrupts_init_cpu();
	native_init_cpu();
	lapic_init_cpu();
	time_init_cpu();
	WRITE_ONCE(c->online, true);
	lapic_send_ipi(cpus[0].apic_id, VECTOR_WAKE);  /* the BSP waits in start_ap() */
	irq_enable();
	native_call(ap_loop, c);
}

/* A page below 1 MiB for the trampoline: RAM, clear of ferry's boot data at
 * 0x6000-0x7fff and of whatever the loader passed us. */
static uint64_t trampoline_page(void)
{
	uint64_t cmdline_len = boot_info->cmdline_paddr ?
		strlen(phys_to_virt(boot_info->cmdline_paddr)) + 1 : 0;
	struct { uint64_t addr, len; } busy[] = {
		{ FERRY_START_INFO_GPA, FERRY_CMDLINE_GPA + PAGE_SIZE - FERRY_START_INFO_GPA },
		{ virt_to_phys(boot_info), sizeof(*boot_info) },
		{ boot_info->memmap_paddr, boot_memmap_entries * sizeof(*boot_memmap) },
		{ boot_info->cmdline_paddr, cmdline_len },
		{ acpi.rsdp, 36 },
	};

	for (uint64_t page = 0x9e000; page >= 0x1000; page -= PAGE_SIZE) {
		bool ok = false;
		for (unsigned i = 0; i < boot_memmap_entries; i++) {
			const struct hvm_memmap_table_entry *e = &boot_memmap[i];
			if (e->type == HVM_MEMMAP_TYPE_RAM && e->addr <= page &&
			    e->addr + e->size >= page + PAGE_SIZE)
				ok = true;
		}
		for (unsigned i = 0; i < ARRAY_SIZE(busy); i++) {
			if (busy[i].len && busy[i].addr < page + PAGE_SIZE && page < busy[i].addr + busy[i].len)
				ok = false;
		}
		if (ok)
			return page;
	}
	return 0;
}

static bool online(void *cpu)
{
	return READ_ONCE(((struct cpu *)cpu)->online);
}

static bool start_ap(struct cpu *c, uint64_t page)
{
	ap_boot_cpu = c;
	ap_boot_stack = (uintptr_t)c->stack + (PAGE_SIZE << AP_STACK_ORDER);
	mb();
	/* Intel SDM 8.4.4.1: INIT, then SIPI, and a second SIPI if the first one
	 * was not taken. Virtual CPUs need none of the legacy 10 ms delay. */
	lapic_send_init(c->apic_id);
	udelay(100);
	for (int attempt = 0; attempt < 2; attempt++) {
		lapic_send_sipi(c->apic_id, (uint8_t)(page >> PAGE_SHIFT));
		if (halt_until(online, c, attempt ? 500000000 : 20000000))
			return true;
	}
	/* Put it back to waiting for SIPI so it cannot wake up on a stale stack. */
	lapic_send_init(c->apic_id);
	return false;
}

unsigned smp_start_aps(void)
{
	uint32_t bsp_id = lapic_id();
	uint64_t page;
	unsigned started = 0;

	cpus[0].apic_id = bsp_id;
	irq_register(VECTOR_WAKE, wake_interrupt, NULL);
	if (acpi.ncpus <= 1)
		return 0;
	page = trampoline_page();
	if (!page) {
		kprintf("smp: no low page for the AP trampoline, running on one CPU\n");
		return 0;
	}
	memcpy(phys_to_virt(page), ap_trampoline_start, ap_trampoline_end - ap_trampoline_start);

	for (unsigned i = 0; i < acpi.ncpus && ncpus < MAX_CPUS; i++) {
		struct cpu *c = &cpus[ncpus];

		if (acpi.cpu_apic_id[i] == bsp_id)
			continue;
		c->index = ncpus;
		c->apic_id = acpi.cpu_apic_id[i];
		c->fault.vector = -1;
		c->stack = alloc_pages(AP_STACK_ORDER);
		if (!c->stack)
			panic("smp: no memory for AP stacks");
		if (!start_ap(c, page)) {
			kprintf("smp: CPU with APIC ID %u did not start\n", c->apic_id);
			free_pages(c->stack, AP_STACK_ORDER);
			memset(c, 0, sizeof(*c));
			continue;
		}
		ncpus++;
		started++;
	}
	return started;
}

static bool call_done(void *cpu)
{
	return READ_ONCE(((struct cpu *)cpu)->call_done);
}

/* Fills the mailbox; call_lock held. */
static void post_call(struct cpu *c, void (*fn)(void *), void *arg, bool async)
{
	c->call_done = false;
	c->call_async = async;
	c->caller_apic_id = this_cpu()->apic_id;
	c->call_arg = arg;
	mb();
	c->call_fn = fn;
	lapic_send_ipi(c->apic_id, VECTOR_WAKE);
}

int smp_call(unsigned index, void (*fn)(void *), void *arg)
{
	struct cpu *c = smp_cpu(index);

	if (!c)
		return -1;
	if (c == this_cpu()) {
		fn(arg);
		return 0;
	}
	spin_lock(&c->call_lock);
	if (c->parked || c->call_fn) {  /* parked, or busy with an asynchronous call */
		spin_unlock(&c->call_lock);
		return -1;
	}
	post_call(c, fn, arg, false);
	halt_until(call_done, c, TIMEOUT_NEVER);
	spin_unlock(&c->call_lock);
	return 0;
}

int smp_call_async(unsigned index, void (*fn)(void *), void *arg)
{
	struct cpu *c = smp_cpu(index);

	if (!c || c == this_cpu() || !c->online)
		return -1;
	spin_lock(&c->call_lock);
	if (c->call_fn) {
		spin_unlock(&c->call_lock);
		return -1;
	}
	post_call(c, fn, arg, true);
	spin_unlock(&c->call_lock);
	return 0;
}

bool smp_call_done(unsigned index)
{
	struct cpu *c = smp_cpu(index);

	return !c || READ_ONCE(c->call_done);
}

void smp_call_wait(unsigned index)
{
	struct cpu *c = smp_cpu(index);

	if (c)
		halt_until(call_done, c, TIMEOUT_NEVER);
}

/* Parking: the parked flag asks; the CPU halts at its next preemption point
 * (work.c calls smp_park_here()) and says so with park_acked. Neither side
 * takes call_lock, which smp_call() holds for as long as its function runs. */

#define PARK_WAIT_NS   100000000ull  /* smp_park() waits this long for the CPU */
#define PARK_RETRY_NS    1000000ull  /* ... interrupting it again this often */

static bool park_acked(void *cpu)
{
	return READ_ONCE(((struct cpu *)cpu)->park_acked);
}

static bool park_released(void *cpu)
{
	return !READ_ONCE(((struct cpu *)cpu)->parked);
}

static bool unpark_done(void *cpu)
{
	return !READ_ONCE(((struct cpu *)cpu)->park_acked);
}

static struct cpu *parkable(unsigned index)
{
	struct cpu *c = smp_cpu(index);

	return c && index && c != this_cpu() && c->online ? c : NULL;
}

void smp_park_here(struct cpu *c)
{
	uint64_t t0 = time_ns();

	WRITE_ONCE(c->park_since_ns, t0 ? t0 : 1);
	WRITE_ONCE(c->park_acked, true);
	lapic_send_ipi(c->park_waiter_apic_id, VECTOR_WAKE);
	halt_until(park_released, c, TIMEOUT_NEVER);
	c->parked_ns += time_ns() - t0;
	WRITE_ONCE(c->park_since_ns, 0);
	WRITE_ONCE(c->park_acked, false);
	lapic_send_ipi(c->park_waiter_apic_id, VECTOR_WAKE);
}

int smp_park(unsigned index)
{
	struct cpu *c = parkable(index);
	uint64_t start = time_ns();

	if (!c)
		return -1;
	c->park_waiter_apic_id = this_cpu()->apic_id;
	mb();
	WRITE_ONCE(c->parked, true);
	if (READ_ONCE(c->park_acked))
		return 0;
	do {
		WRITE_ONCE(c->resched, 1);
		lapic_send_ipi(c->apic_id, VECTOR_WAKE);
		if (halt_until(park_acked, c, PARK_RETRY_NS))
			return 0;
	} while (time_ns() - start < PARK_WAIT_NS);
	return 1;
}

int smp_unpark(unsigned index)
{
	struct cpu *c = parkable(index);

	if (!c)
		return -1;
	c->park_waiter_apic_id = this_cpu()->apic_id;
	mb();
	WRITE_ONCE(c->parked, false);
	if (!READ_ONCE(c->park_acked))
		return 0;
	do
		lapic_send_ipi(c->apic_id, VECTOR_WAKE);
	while (!halt_until(unpark_done, c, PARK_RETRY_NS));
	return 0;
}

bool smp_is_parked(unsigned index)
{
	struct cpu *c = smp_cpu(index);

	return c && READ_ONCE(c->park_acked);
}

uint64_t smp_parked_ns(unsigned index)
{
	struct cpu *c = smp_cpu(index);
	uint64_t since, total;

	if (!c)
		return 0;
	do {
		since = READ_ONCE(c->park_since_ns);
		total = READ_ONCE(c->parked_ns);
	} while (since != READ_ONCE(c->park_since_ns));
	return total + (since ? time_ns() - since : 0);
}
