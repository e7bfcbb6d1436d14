/* Per-CPU GDT and TSS (kernel/gdt.c): the segments ring 3 needs and the
 * stack that interrupts taken in ring 3 switch to. */
#ifndef GUEST_GDT_H
#define GUEST_GDT_H

#include <stdint.h>

/* Gives this CPU its own copy of the boot GDT plus a TSS, loads both, and
 * reloads the segment registers (DS/ES/FS/GS get the ring-3 data selector, so
 * an IRETQ to ring 3 leaves them, and the GS base, alone). */
void gdt_init_cpu(void);
/* Sets this CPU's TSS.RSP0: where the CPU puts the frame of an interrupt or
 * exception taken in ring 3. Returns the previous value. */
uint64_t tss_set_rsp0(uint64_t rsp0);

#endif
