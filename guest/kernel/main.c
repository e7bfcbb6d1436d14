/* kernel_main: bring the machine up in dependency order, then run the app
 * named on the command line and power off with its status. */
#include <ferry/debug_exit.h>
#include "acpi.h"
#include "app.h"
#include "boot.h"
#include "cmdline.h"
#include "gdt.h"
#include "interrupt.h"
#include "ioapic.h"
#include "kernel.h"
#include "kstring.h"
#include "lapic.h"
#include "native.h"
#include "page_alloc.h"
#include "paging.h"
#include "pci.h"
#include "pic.h"
#include "serial.h"
#include "smp.h"
#include "timer.h"
#include "virtio_rng.h"
#include "virtio_balloon.h"
#include "virtio_net.h"
#include "cpu_reserve.h"
#include "x86.h"

const struct hvm_start_info *boot_info;
const struct hvm_memmap_table_entry *boot_memmap;
unsigned boot_memmap_entries;
uint64_t ap_boot_stack;

/* Xen's hvm_modlist_entry: modules (e.g. an initrd) the loader placed in RAM. */
struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

uint64_t boot_ram_bytes(void)
{
	uint64_t total = 0;

	for (unsigned i = 0; i < boot_memmap_entries; i++) {
		if (boot_memmap[i].type == HVM_MEMMAP_TYPE_RAM)
			total += boot_memmap[i].size;
	}
	return total;
}

/* Keeps the page allocator away from everything the loader handed over. */
static void reserve_boot_data(const struct hvm_start_info *si)
{
	page_alloc_reserve(virt_to_phys(si), sizeof(*si));
	page_alloc_reserve(si->memmap_paddr, si->memmap_entries * sizeof(*boot_memmap));
	if (si->cmdline_paddr)
		page_alloc_reserve(si->cmdline_paddr, strlen(phys_to_virt(si->cmdline_paddr)) + 1);
	if (si->nr_modules && si->modlist_paddr) {
		const struct hvm_modlist_entry *m = phys_to_virt(si->modlist_paddr);
		page_alloc_reserve(si->modlist_paddr, si->nr_modules * sizeof(*m));
		for (unsigned i = 0; i < si->nr_modules; i++)
			page_alloc_reserve(m[i].paddr, m[i].size);
	}
}

static void reserve_acpi_tables(void)
{
	if (acpi.rsdp)
		page_alloc_reserve(acpi.rsdp, 36);
	for (unsigned i = 0; i < acpi.ntables; i++)
		page_alloc_reserve(acpi.table[i].addr, acpi.table[i].len);
}

struct boot {
	const struct hvm_start_info *si;
	uint32_t si_pa;
	uint64_t entry_tsc;
};

/* Everything after the first console line and the minimum native_call()
 * needs. It runs in ring 3 (native.h): the parts that only compute (the IDT,
 * the command line, ACPI, the memory map and allocator, formatting) run
 * natively on hosts that emulate ring 0; privileged parts drop to ring 0 by
 * themselves, and native_resume() comes back after them. Returns the app. */
static long boot(void *arg)
{
	const struct boot *b = arg;
	const struct hvm_start_info *si = b->si;
	const struct app *app;
	const char *app_name;

	interrupts_init();
	if (si->magic != HVM_START_MAGIC)
		panic("start_info at %#x: bad magic %#x", b->si_pa, si->magic);
	if (si->version < 1 || !si->memmap_paddr || !si->memmap_entries)
		panic("start_info has no memory map");
	boot_info = si;
	boot_memmap = phys_to_virt(si->memmap_paddr);
	boot_memmap_entries = si->memmap_entries;

	cmdline_parse(si->cmdline_paddr ? phys_to_virt(si->cmdline_paddr) : NULL);
	console_quiet = cmdline_get_bool("quiet", false);
	app_name = cmdline_get("app");
	app = app_name ? app_find(app_name) : NULL;
	if (!app) {
		if (app_name)
			kprintf("unknown app '%s'\n", app_name);
		else
			kprintf("no app=NAME on the command line\n");
		app_print_list();
		poweroff(FERRY_EXIT_BAD_ARGS);
	}

	reserve_boot_data(si);
	if (acpi_init(si->rsdp_paddr) == 0)
		reserve_acpi_tables();
	paging_init();
	page_alloc_init();

	pic_disable();
	lapic_init(acpi.lapic_base);
	ioapic_init();
	native_resume();
	time_init();
	irq_enable();
	native_resume();
	smp_start_aps();

	/* Port I/O under a lock for every configuration access: in ring 3
	 * each would cost a demotion and a promotion. */
	native_demote();
	pci_init();
	native_resume();
	virtio_rng_init();
	virtio_balloon_init();
	virtio_net_init();
	cpu_reserve_init();

	pr_info("ferry-guest: vm %s, %u cpus, %lu MiB RAM, tsc %lu kHz (%s), up in %lu us\n",
		cmdline_vm_name(), smp_cpu_count(), boot_ram_bytes() / MiB, tsc_khz(), tsc_source(),
		(rdtsc() - b->entry_tsc) * 1000 / tsc_khz());
	return (long)app;
}

static long run_app(void *app)
{
	return ((const struct app *)app)->main();
}

/* Failure on purpose, for tests of ferry's "restart": "on-failure" and of
 * its watchdog, under any app: fail=exit|triple|hang fail_ms=N [fail_runs=K]
 * [fail_status=S]. N ms after the app starts, a timer interrupt powers off
 * with status S (default 1), triple-faults, or spins in ring 0 with
 * interrupts off (no exit to the VMM ever again: a hang). ferry appends
 * restarts=R to the command line of a restarted VM; the failure happens
 * only while R < K (default 1: the first run fails, the restarted one
 * lives), so a test sees the VM fail, come back and work. */
static struct timer fail_timer;

static void fail_now(void *arg)
{
	const char *how = arg;
	if (!strcmp(how, "triple")) {
		struct __attribute__((packed)) {
			uint16_t limit;
			uint64_t base;
		} empty = { 0, 0 };
		asm volatile("cli; lidt %0; ud2" : : "m"(empty));
	} else if (!strcmp(how, "hang")) {
		asm volatile("cli");
		for (;;)
			asm volatile("" ::: "memory");
	}
	poweroff((int)cmdline_get_u64("fail_status", FERRY_EXIT_FAIL));
}

static void fail_arm(void)
{
	const char *how = cmdline_get("fail");
	if (!how)
		return;
	uint64_t run = cmdline_get_u64("restarts", 0), runs = cmdline_get_u64("fail_runs", 1);
	uint64_t ms = cmdline_get_u64("fail_ms", 0);
	if (strcmp(how, "exit") && strcmp(how, "triple") && strcmp(how, "hang")) {
		kprintf("ferry-guest: unknown fail=%s (exit, triple, hang)\n", how);
		poweroff(FERRY_EXIT_BAD_ARGS);
	}
	if (run >= runs) {
		kprintf("ferry-guest: run %lu, fail_runs=%lu: not failing\n", run, runs);
		return;
	}
	kprintf("ferry-guest: failing on purpose (fail=%s) in %lu ms, run %lu of fail_runs=%lu\n", how, ms, run,
		runs);
	timer_start(&fail_timer, ms * 1000000ull, fail_now, (void *)how);
}

/* heartbeat_ms=N: a write to ferry's heartbeat port every N ms, from a
 * timer interrupt, so that ferry's watchdog ("watchdog_ms") sees a guest
 * that halts between events as alive, and one stuck with interrupts off (or
 * in a loop that starves the timer) as hung. */
static struct timer heartbeat_timer;
static uint64_t heartbeat_ns;

static void heartbeat(void *arg)
{
	(void)arg;
	outb(FERRY_HEARTBEAT_PORT, 1);
	timer_start(&heartbeat_timer, heartbeat_ns, heartbeat, NULL);
}

void kernel_main(uint32_t start_info_pa)
{
	struct boot b = { phys_to_virt(start_info_pa), start_info_pa, rdtsc() };
	const struct app *app;
	int status;

	smp_init_bsp();       /* this_cpu(): exception handling and irq_save() use it */
	serial_init();
	kprintf("ferry-guest: booting\n");
	gdt_init_cpu();
	interrupts_init_early();
	native_init_cpu();
	app = (const struct app *)native_call(boot, &b);
	irq_enable();         /* native_call() returned with IF as it began: 0 */
	fail_arm();
	heartbeat_ns = cmdline_get_u64("heartbeat_ms", 0) * 1000000ull;
	if (heartbeat_ns)
		heartbeat(NULL);

	/* Apps run in ring 3 too, unless they ask for ring 0 (modeprobe). */
	status = app->ring0 ? app->main() : (int)native_call(run_app, (void *)app);
	kprintf("ferry-guest: %s exited with status %d\n", app->name, status);
	poweroff(status);
}
