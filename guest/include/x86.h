/* x86-64 control registers, MSRs, page table bits and wrappers for the
 * privileged and I/O instructions the kernel uses. Usable from assembly. */
#ifndef GUEST_X86_H
#define GUEST_X86_H

#define CR0_PE   (1u << 0)
#define CR0_PG   (1u << 31)
#define CR4_PAE  (1u << 5)

#define MSR_APIC_BASE  0x1b
#define MSR_EFER       0xc0000080
#define MSR_STAR       0xc0000081
#define MSR_LSTAR      0xc0000082
#define MSR_FMASK      0xc0000084
#define MSR_GS_BASE    0xc0000101
#define EFER_SCE       (1u << 0)
#define EFER_LME       (1u << 8)

#define RFLAGS_IF      (1u << 9)
#define RFLAGS_IOPL3   (3u << 12)

/* GDT selectors, in the order Linux uses (and the order SYSCALL/SYSRET need:
 * kernel data right after kernel code; 32-bit user code, user data, 64-bit
 * user code). boot/pvh_entry.S builds the boot GDT; kernel/gdt.c gives each
 * CPU a copy with its TSS at GDT_TSS. */
#define GDT_CODE32      0x08
#define GDT_CODE64      0x10
#define GDT_DATA        0x18
#define GDT_USER_CODE32 0x20
#define GDT_USER_DATA   0x28
#define GDT_USER_CODE64 0x30
#define GDT_TSS         0x40  /* 16 bytes */
#define USER_CS (GDT_USER_CODE64 | 3)
#define USER_DS (GDT_USER_DATA | 3)

/* Page table entry bits. */
#define PTE_P    (1ull << 0)
#define PTE_W    (1ull << 1)
#define PTE_U    (1ull << 2)
#define PTE_PWT  (1ull << 3)
#define PTE_PCD  (1ull << 4)
#define PTE_PS   (1ull << 7)

#ifndef __ASSEMBLY__
#include <stdbool.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { asm volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { asm volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { asm volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return (uint64_t)hi << 32 | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	asm volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	asm volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline uint64_t read_cr2(void) { uint64_t v; asm volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline uint64_t read_cr3(void) { uint64_t v; asm volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void write_cr3(uint64_t v) { asm volatile("mov %0, %%cr3" :: "r"(v) : "memory"); }

static inline void cpu_relax(void) { asm volatile("pause" ::: "memory"); }
static inline void irq_disable(void) { asm volatile("cli" ::: "memory"); }
static inline void irq_enable(void) { asm volatile("sti" ::: "memory"); }
/* sti's one-instruction shadow makes "enable and halt" atomic: an interrupt that
 * is already pending wakes the hlt instead of being taken before it. */
static inline void irq_enable_and_halt(void) { asm volatile("sti; hlt" ::: "memory"); }

/* While this CPU runs code under native_call() (kernel/native.c), that code
 * may be in ring 3, where pushf does not show the real IF on kvm_pvm, and
 * irq_restore() must take it back to the ring irq_save() was called in: the
 * native_* versions do both. The test is one load of struct cpu's
 * native_depth. irq_save() marks flags saved in ring 3 with a bit that
 * RFLAGS never has. */
#define CPU_NATIVE_DEPTH 24                 /* offsetof(struct cpu, native_depth) */
#define IRQ_FLAGS_RING3 (1ull << 63)
uint64_t native_irq_save(void);
void native_irq_restore(uint64_t flags);
bool native_irqs_enabled(void);

static inline bool in_native_call(void)
{
	uint8_t depth;

	asm volatile("movb %%gs:%c1, %0" : "=r"(depth) : "i"(CPU_NATIVE_DEPTH));
	return depth;
}

static inline uint64_t irq_save(void)
{
	uint64_t flags;

	if (__builtin_expect(in_native_call(), 0))
		return native_irq_save();
	asm volatile("pushfq; pop %0; cli" : "=r"(flags) :: "memory");
	return flags;
}
static inline void irq_restore(uint64_t flags)
{
	if (flags & (RFLAGS_IF | IRQ_FLAGS_RING3)) {
		if (__builtin_expect(in_native_call(), 0))
			native_irq_restore(flags);
		else if (flags & RFLAGS_IF)
			irq_enable();
	}
}
static inline bool irqs_enabled(void)
{
	uint64_t flags;

	if (__builtin_expect(in_native_call(), 0))
		return native_irqs_enabled();
	asm volatile("pushfq; pop %0" : "=r"(flags));
	return flags & RFLAGS_IF;
}

/* Full barrier without SSE2's mfence: a locked no-op on the stack. */
static inline void mb(void) { asm volatile("lock addl $0, (%%rsp)" ::: "memory", "cc"); }
static inline void barrier(void) { asm volatile("" ::: "memory"); }

static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t mmio_read16(uintptr_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

#endif /* __ASSEMBLY__ */
#endif
