/* Running kernel code in ring 3, at native speed on software KVM hosts
 * (kernel/native.c, kernel/native_entry.S; the measurements behind it are in
 * guest/README.md, "Running at native speed on software KVM hosts", and come
 * from apps/modeprobe.c).
 *
 * On kvm_pvm hosts every instruction the guest executes in ring 0 is
 * emulated (about a microsecond each, in every context), while ring 3 runs
 * natively, thousands of times faster. native_call() runs a kernel function
 * in ring 3 on the current CPU: same address space (every mapping has U=1),
 * same stack frames and per-CPU data (this_cpu() works), the caller's
 * interrupt state; interrupts are handled by the kernel as usual (they land
 * on the kernel stack through TSS.RSP0 and return to ring 3).
 *
 * Any kernel function may be called from native code:
 *   - A privileged instruction in ring 3 (cli, sti, hlt, in/out, mov to or
 *     from a control register, rdmsr, wrmsr, lgdt, invlpg...) raises #GP;
 *     the kernel resumes the code at that instruction in ring 0, where it
 *     executes normally ("demotion", ~10 emulated instructions).
 *   - irq_restore() returns the code to the ring irq_save() was called in
 *     ("promotion", ~40): a spin_lock_irqsave() section entered in ring 3
 *     runs in ring 0 and comes back to ring 3 at its unlock.
 *   - native_resume() promotes explicitly, after other privileged work;
 *     native_demote() demotes explicitly, before a stretch of it.
 * So, on kvm_pvm:
 *   - native, no transition: computation, memcpy/memset, lib/ (formatting,
 *     strings, checksums), rdtsc, time_ns(), udelay(), this_cpu(), plain
 *     spin_lock/spin_unlock, alloc_pages/free_pages and all of page_alloc.h,
 *     kmalloc/kfree, and MMIO to device BARs and the LAPIC (each access an
 *     exit, as from ring 0; e.g. a virtio notify);
 *   - one demotion and promotion (the work inside emulated): kprintf (the
 *     formatting stays native), timer_start/timer_cancel, halt_until,
 *     sleep_ns/sleep_ms (the way for native code to wait for an interrupt or
 *     a condition: it halts in ring 0 and comes back), lapic_send_ipi, PCI
 *     configuration accesses, anything else built on irq_save/irq_restore;
 *   - demoted until native_resume(): privileged instructions outside such a
 *     section (irq_enable/irq_disable, inb/outb, serial_write, rdmsr...).
 *     Ring 3 runs with IOPL 0, so port I/O demotes on every host (kvm_pvm
 *     does not honour IOPL 3 anyway).
 * Ring 3 shows itself: CS reads 0x33, and on kvm_pvm pushf reads IF=1
 * whatever it is (irq_save() and irqs_enabled() know the real IF).
 * Use native_active() to ask which ring the code is in.
 *
 * Ring 3 is for speed, not protection: every mapping has U=1 (so CR4.SMEP
 * and SMAP must stay off), and native code is trusted kernel code.
 */
#ifndef GUEST_NATIVE_H
#define GUEST_NATIVE_H

#include <stdbool.h>
#include <stdint.h>

#define NATIVE_STACK_SIZE (16 * 1024)   /* per CPU, for code run by native_call() */

/* Per CPU, after gdt_init_cpu() and, on APs, the page allocator: the native
 * stack. native_call() runs fn directly until the BSP has done this. */
void native_init_cpu(void);
extern bool native_enabled;

/* Runs fn(arg) in ring 3 on this CPU, on its native stack, with interrupts
 * enabled or disabled as they are now, and returns its result (~90 us on
 * kvm_pvm, most of it in emulated ring 0). Returns with the caller's RFLAGS.
 * Called from code already under native_call(), it runs fn in ring 3 and
 * returns in the ring it was called in. From an interrupt handler, or before
 * native_init_cpu(), it calls fn directly in ring 0. */
long native_call(long (*fn)(void *arg), void *arg);

/* Code running under native_call() that is in ring 0 goes (back) to ring 3
 * here, keeping its interrupt state; returns true if the caller now runs in
 * ring 3. Does nothing (false) outside native_call() and in interrupt
 * handlers. */
bool native_resume(void);

/* Code running under native_call() continues in ring 0 from here: before a
 * stretch of privileged work, where going back and forth would cost more
 * than staying. Harmless in ring 0. */
void native_demote(void);

/* True if the caller is running in ring 3. */
bool native_active(void);

/* Counters for this CPU. */
struct native_stats {
	uint64_t calls;       /* native_call()s that entered ring 3 */
	uint64_t fallbacks;   /* ... that ran fn directly in ring 0 */
	uint64_t demotions;   /* privileged instructions in ring 3 */
	uint64_t promotions;  /* irq_restore() and native_resume() back to ring 3 */
};
void native_stats(struct native_stats *st);

#endif
