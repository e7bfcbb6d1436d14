/* Per-CPU GDT and TSS. The boot GDT (boot/pvh_entry.S) has the kernel and
 * user code and data segments in Linux's order; every CPU copies it, adds a
 * TSS descriptor for its own TSS and loads both. The TSS only provides RSP0,
 * the stack that interrupts and exceptions taken in ring 3 land on
 * (kernel/native.c points it below the frame of the native_call() running). */
#include "gdt.h"
#include "kernel.h"
#include "kstring.h"
#include "smp.h"
#include "x86.h"

extern const uint64_t gdt[];
extern const char gdt_end[];

uint64_t tss_set_rsp0(uint64_t rsp0)
{
	struct cpu *c = this_cpu();
	uint64_t old = c->tss.rsp0;

	c->tss.rsp0 = rsp0;
	return old;
}

void gdt_init_cpu(void)
{
	struct cpu *c = this_cpu();
	uint64_t base = (uintptr_t)&c->tss, limit = sizeof(c->tss) - 1;
	size_t boot_bytes = (size_t)(gdt_end - (const char *)gdt);
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = { sizeof(c->gdt) - 1, (uintptr_t)c->gdt };

	_Static_assert(GDT_TSS / 8 + 2 <= GDT_ENTRIES, "TSS descriptor fits");
	BUG_ON(boot_bytes > GDT_TSS);
	memcpy(c->gdt, gdt, boot_bytes);
	c->tss.iomap_base = sizeof(c->tss);
	/* 64-bit available TSS (type 9), present, DPL 0; base in two halves. */
	c->gdt[GDT_TSS / 8] = (limit & 0xffff) | (base & 0xffffff) << 16 | 0x89ull << 40 |
			       (limit >> 16 & 0xf) << 48 | (base >> 24 & 0xff) << 56;
	c->gdt[GDT_TSS / 8 + 1] = base >> 32;

	/* Loading GS with a selector clears the GS base, which holds this_cpu():
	 * read it first, write it back after. */
	asm volatile(
		"lgdt %[desc]\n\t"
		"mov %[ds], %%ds\n\t"
		"mov %[ds], %%es\n\t"
		"mov %[ds], %%fs\n\t"
		"mov %[ds], %%gs\n\t"
		"mov %[ss], %%ss\n\t"
		"ltr %w[tr]\n\t"
		:: [desc] "m"(desc), [ds] "r"(USER_DS), [ss] "r"(GDT_DATA), [tr] "r"(GDT_TSS)
		: "memory");
	wrmsr(MSR_GS_BASE, (uintptr_t)c);
}
