/* PVH entry: the loader starts us in 32-bit protected mode, paging off, with
 * EBX = physical address of struct hvm_start_info. We load our own GDT and
 * prebuilt page tables identity-mapping the first 4 GiB with 2 MiB pages,
 * switch to long mode and call kernel_main(start_info). C code (kernel/paging.c) later maps
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

	/* The page tables are initialized data (below): until paging is on,
	 * this host's KVM emulates every instruction, so a loop filling 2048
	 * entries here would cost milliseconds. */
	ENABLE_LONG_MODE
	ljmp $GDT_CODE64, $pvh_start64

	.code64
pvh_start64:
	LOAD_DATA_SEGMENTS
	/* No .bss clearing: an ELF loader zero-fills each segment beyond its
	 * file size (ferry's and QEMU's both do), and clearing 68 KiB here would
	 * cost ~3 ms of emulated stores on this host. */
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
	.globl gdt, gdt_end, gdt_desc
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff        /* GDT_CODE32: flat 32-bit code */
	.quad 0x00af9a000000ffff        /* GDT_CODE64: 64-bit code */
	.quad 0x00cf92000000ffff        /* GDT_DATA: flat data */
	/* Ring 3 (kernel/native.c). The APs' trampoline loads only the four
	 * entries above; kernel/gdt.c copies all of them into per-CPU GDTs. */
	.quad 0x00cffa000000ffff        /* GDT_USER_CODE32: for SYSRET's layout only */
	.quad 0x00cff2000000ffff        /* GDT_USER_DATA */
	.quad 0x00affa000000ffff        /* GDT_USER_CODE64 */
gdt_end:
	/* Read as 6 bytes by lgdt in 32-bit mode and as 10 bytes in 64-bit mode. */
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	/* Identity map of the low 4 GiB with 2 MiB pages; [3 GiB, 4 GiB) holds
	 * MMIO and is uncached. Every entry has U set, so code that the kernel
	 * runs in ring 3 for speed (kernel/native.c) reaches all of it. kernel/paging.c refines this with the memory map
	 * and maps more (RAM above 4 GiB, 64-bit BARs) into the same tables. */
	.section .pagetables, "aw", @progbits
	.balign 4096
	.globl boot_pml4
boot_pml4:
	.quad boot_pdpt + PTE_P + PTE_W + PTE_U
	.fill 511, 8, 0
boot_pdpt:
	.quad boot_pd + PTE_P + PTE_W + PTE_U
	.quad boot_pd + 0x1000 + PTE_P + PTE_W + PTE_U
	.quad boot_pd + 0x2000 + PTE_P + PTE_W + PTE_U
	.quad boot_pd + 0x3000 + PTE_P + PTE_W + PTE_U
	.fill 508, 8, 0
boot_pd:
	.set pde, 0
	.rept 2048
	.if pde < 1536
	.quad (pde << 21) + PTE_P + PTE_W + PTE_U + PTE_PS
	.else
	.quad (pde << 21) + PTE_P + PTE_W + PTE_U + PTE_PS + PTE_PCD + PTE_PWT
	.endif
	.set pde, pde + 1
	.endr

	.bss
	.balign 16
bsp_stack:	.skip BOOT_STACK_SIZE
