/* Local APIC, xAPIC mode. All registers are 32 bits wide at 16-byte strides
 * in the 4 KiB MMIO page (mapped uncached by the boot page tables). */
#include "interrupt.h"
#include "kernel.h"
#include "lapic.h"
#include "x86.h"

#define LAPIC_ID        0x020
#define LAPIC_VERSION   0x030
#define LAPIC_TPR       0x080
#define LAPIC_EOI       0x0b0
#define LAPIC_SVR       0x0f0
#define  SVR_ENABLE     0x100
#define LAPIC_ESR       0x280
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310
#define  ICR_INIT       0x00500
#define  ICR_STARTUP    0x00600
#define  ICR_PENDING    0x01000
#define  ICR_ASSERT     0x04000
#define  ICR_LEVEL      0x08000
#define  ICR_SELF       0x40000
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define  LVT_NMI        0x400
#define  LVT_MASKED     0x10000
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIV     0x3e0
#define  TIMER_DIV_16       0x3

#define APIC_BASE_ENABLE (1ull << 11)
#define APIC_BASE_X2APIC (1ull << 10)

static uintptr_t base;

static uint32_t lapic_read(unsigned reg) { return mmio_read32(base + reg); }
static void lapic_write(unsigned reg, uint32_t v) { mmio_write32(base + reg, v); }

uint64_t lapic_base(void)
{
	return base;
}

void lapic_init(uint64_t madt_base)
{
	uint64_t msr = rdmsr(MSR_APIC_BASE);

	base = msr & ~0xfffull & ((1ull << 52) - 1);
	if (madt_base && madt_base != base)
		kprintf("lapic: MADT says %#lx, IA32_APIC_BASE says %#lx; using the latter\n",
			madt_base, (uint64_t)base);
	lapic_init_cpu();
}

void lapic_init_cpu(void)
{
	uint64_t msr = rdmsr(MSR_APIC_BASE);

	/* Leaving x2APIC mode requires going through "disabled" first. */
	if (msr & APIC_BASE_X2APIC) {
		wrmsr(MSR_APIC_BASE, msr & ~(APIC_BASE_X2APIC | APIC_BASE_ENABLE));
		msr &= ~APIC_BASE_X2APIC;
	}
	if (!(msr & APIC_BASE_ENABLE))
		wrmsr(MSR_APIC_BASE, msr | APIC_BASE_ENABLE);

	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_SVR, SVR_ENABLE | VECTOR_SPURIOUS);
	lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
	lapic_write(LAPIC_LVT_LINT1, LVT_NMI);
	lapic_write(LAPIC_LVT_ERROR, VECTOR_APIC_ERROR);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_TIMER_DIV, TIMER_DIV_16);
	lapic_write(LAPIC_ESR, 0);
}

uint32_t lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void lapic_eoi(void)
{
	lapic_write(LAPIC_EOI, 0);
}

static void send_icr(uint32_t apic_id, uint32_t lo)
{
	uint64_t flags = irq_save();

	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, lo);
	for (int spin = 0; spin < 1000000 && (lapic_read(LAPIC_ICR_LO) & ICR_PENDING); spin++)
		cpu_relax();
	irq_restore(flags);
}

void lapic_send_ipi(uint32_t apic_id, uint8_t vector)
{
	send_icr(apic_id, ICR_ASSERT | vector);
}

void lapic_send_self_ipi(uint8_t vector)
{
	send_icr(0, ICR_SELF | ICR_ASSERT | vector);
}

void lapic_send_init(uint32_t apic_id)
{
	send_icr(apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
}

void lapic_send_sipi(uint32_t apic_id, uint8_t page)
{
	send_icr(apic_id, ICR_STARTUP | page);
}

void lapic_timer_oneshot(uint8_t vector, uint32_t count)
{
	lapic_write(LAPIC_LVT_TIMER, count ? vector : LVT_MASKED | vector);
	lapic_write(LAPIC_TIMER_INITIAL, count);
}

uint32_t lapic_timer_remaining(void)
{
	return lapic_read(LAPIC_TIMER_CURRENT);
}
