/* PVH entry: the loader starts us in 32-bit protected mode, paging off, with
 * EBX = physical address of struct hvm_start_info. We load our own GDT,
 * identity-map the first 4 GiB with 2 MiB pages, switch to long mode, clear
 * .bss and call kernel_main(start_info). C code (kernel/paging.c) later maps
 * RAM above 4 GiB into the same tables. APs join at ap_start32 (see
 * ap_trampoline.S). */
#include "x86.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18  /* include/ferry/pvh.h, which is C-only */
#define BOOT_STACK_SIZE 16384

	.section .note.Xen, "a"
	.balign 4
	.long 4                         /* namesz: "Xen\0" */
	.long 8                         /* descsz: a .quad, as Linux does in ELF64 */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
	.quad pvh_start32
	.balign 4

/* Paging on, PAE, EFER.LME: afterwards the CPU runs in compatibility mode until
 * a far jump to a 64-bit code segment. Needs no stack. */
.macro ENABLE_LONG_MODE
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $boot_pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG | CR0_PE), %eax
	mov %eax, %cr0
.endm

.macro LOAD_DATA_SEGMENTS
	mov $GDT_DATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
.endm

	.section .text.boot, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cli
	cld
	mov %ebx, %esi                  /* start_info survives in esi */
	lgdt gdt_desc
	ljmp $GDT_CODE32, $1f
1:	LOAD_DATA_SEGMENTS

	/* PML4 and PDPT are contiguous; zero both. */
	mov $boot_pml4, %edi
	xor %eax, %eax
	mov $(2 * 4096 / 4), %ecx
	rep stosl
	movl $(boot_pdpt + PTE_P + PTE_W), boot_pml4
	mov $boot_pd, %eax
	or $(PTE_P | PTE_W), %eax
	xor %ecx, %ecx
2:	mov %eax, boot_pdpt(, %ecx, 8)
	add $4096, %eax
	inc %ecx
	cmp $4, %ecx
	jb 2b

	/* 2048 2 MiB pages; [3 GiB, 4 GiB) holds MMIO, so it is mapped uncached.
	 * kernel/paging.c refines this with the memory map. */
	xor %ecx, %ecx
3:	mov %ecx, %eax
	shl $21, %eax
	or $(PTE_P | PTE_W | PTE_PS), %eax
	cmp $1536, %ecx
	jb 4f
	or $(PTE_PCD | PTE_PWT), %eax
4:	mov %eax, boot_pd(, %ecx, 8)
	movl $0, boot_pd + 4(, %ecx, 8)
	inc %ecx
	cmp $2048, %ecx
	jb 3b

	ENABLE_LONG_MODE
	ljmp $GDT_CODE64, $pvh_start64

	.code64
pvh_start64:
	LOAD_DATA_SEGMENTS
	/* Quadwords: emulated, each rep iteration costs as much for 8 bytes as for 1. */
	mov $__bss_start, %edi
	mov $__bss_end, %ecx
	sub %edi, %ecx
	shr $3, %ecx
	xor %eax, %eax
	rep stosq
	mov $(bsp_stack + BOOT_STACK_SIZE), %esp
	xor %ebp, %ebp
	mov %esi, %edi                  /* kernel_main(start_info) */
	call kernel_main
5:	cli
	hlt
	jmp 5b

/* APs arrive here from the real-mode trampoline, in 32-bit protected mode with
 * our GDT loaded. smp.c has put the AP's stack top in ap_boot_stack. */
	.code32
	.globl ap_start32
ap_start32:
	LOAD_DATA_SEGMENTS
	ENABLE_LONG_MODE
	ljmp $GDT_CODE64, $ap_start64

	.code64
ap_start64:
	LOAD_DATA_SEGMENTS
	mov ap_boot_stack(%rip), %rsp
	xor %ebp, %ebp
	call ap_main
6:	cli
	hlt
	jmp 6b

	.data
	.balign 16
	.globl gdt, gdt_desc
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff        /* GDT_CODE32: flat 32-bit code */
	.quad 0x00cf92000000ffff        /* GDT_DATA: flat data */
	.quad 0x00af9a000000ffff        /* GDT_CODE64: 64-bit code */
gdt_end:
	/* Read as 6 bytes by lgdt in 32-bit mode and as 10 bytes in 64-bit mode. */
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	.section .pagetables, "aw", @nobits
	.balign 4096
	.globl boot_pml4
boot_pml4:	.skip 4096
boot_pdpt:	.skip 4096
boot_pd:	.skip 4 * 4096

	.bss
	.balign 16
bsp_stack:	.skip BOOT_STACK_SIZE
