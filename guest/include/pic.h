/* Legacy 8259 PICs (kernel/pic.c). */
#ifndef GUEST_PIC_H
#define GUEST_PIC_H

/* Remaps both PICs to VECTOR_PIC_BASE (so a stray interrupt cannot look like an
 * exception) and masks every line: interrupts come through the APICs. */
void pic_disable(void);

#endif
