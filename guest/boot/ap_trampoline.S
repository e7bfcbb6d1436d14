/* Real-mode start of an application processor. smp.c copies the bytes between
 * ap_trampoline_start and ap_trampoline_end to a page below 1 MiB and sends
 * that page's number as the SIPI vector; the AP starts at CS = page << 8, IP 0.
 * Everything here is addressed relative to CS, so the copy runs anywhere; the
 * absolute addresses it contains (gdt, ap_start32) lie in the kernel below
 * 4 GiB. It loads the kernel's GDT, enables protection and jumps to
 * ap_start32 in boot/pvh_entry.S, which continues as the BSP did. */
#include "x86.h"

	.section .rodata, "a"
	.code16
	.globl ap_trampoline_start, ap_trampoline_end
ap_trampoline_start:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdt_desc - ap_trampoline_start
	mov %cr0, %eax
	or $CR0_PE, %eax
	mov %eax, %cr0
	ljmpl *(tramp_far32 - ap_trampoline_start)

	.balign 8
tramp_gdt_desc:
	.word 31                        /* gdt limit: four descriptors */
	.long gdt
tramp_far32:
	.long ap_start32
	.word GDT_CODE32
ap_trampoline_end:
