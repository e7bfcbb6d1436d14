/* Moving kernel code between ring 0 and ring 3 (kernel/native.c). Ring 3
 * shares everything with ring 0: address space (all mappings have U=1),
 * stack, GS base (%gs:0 is this CPU's struct cpu in both rings; no SWAPGS).
 *
 * On kvm_pvm hosts ring 0 is emulated, so everything here that runs in ring 0
 * is kept to a few instructions: each costs about a microsecond. */
#include "x86.h"

/* Offsets in struct cpu, checked in native.c. */
#define CPU_NATIVE_KERNEL_RSP 8
#define CPU_NATIVE_DEMOTIONS  16

	.text
/* long native_enter(void *rip, void *rsp, long a0, long a1, void *rsp0,
 *                   uint64_t rflags)
 * Saves RFLAGS and the callee-saved registers, points TSS.RSP0 (*rsp0) just
 * below them and IRETQs to rip in ring 3 with rdi = a0, rsi = a1 and the
 * given RFLAGS (native.c: IF as the caller's, IOPL 0). Returns at
 * native_return when ring 3 (or ring 0, if the function was demoted)
 * executes the ud2 at native_user_exit. */
	.globl native_enter
native_enter:
	push %rbp
	mov %rsp, %rbp
	pushfq
	push %rbx
	push %r12
	push %r13
	push %r14
	push %r15
	push %gs:CPU_NATIVE_KERNEL_RSP
	sub $8, %rsp
	mov %rsp, %gs:CPU_NATIVE_KERNEL_RSP   /* 16-byte aligned here */
	mov %rsp, (%r8)
	push $USER_DS
	push %rsi
	push %r9
	push $USER_CS
	push %rdi
	mov %rdx, %rdi
	mov %rcx, %rsi
	xor %ebp, %ebp                        /* ends backtraces in ring 3 */
	iretq

/* Ring 0, on native_enter()'s stack, rax = the function's result. */
native_return:
	add $8, %rsp
	pop %gs:CPU_NATIVE_KERNEL_RSP
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbx
	popfq                                 /* the caller's IF */
	pop %rbp
	ret

/* Where native_enter() lands: rdi = fn, rsi = arg. */
	.globl native_user_entry, native_user_exit
native_user_entry:
	mov %rdi, %rax
	mov %rsi, %rdi
	call *%rax
native_user_exit:
	ud2                                   /* rax = the result */

/* #UD. The ud2 at native_user_exit (from either ring) ends a native_call():
 * drop the exception frame and return to native_enter()'s caller. The ud2
 * at work_preempt_exit ends work that paused interrupted code (work.c): its
 * stack pointer points at the interrupt frame to return with. Anything else
 * goes to the ordinary handler. */
	.globl native_ud_entry
native_ud_entry:
	cmpq $native_user_exit, (%rsp)        /* RIP; #UD pushes no error code */
	jne 2f
	mov %gs:CPU_NATIVE_KERNEL_RSP, %rsp
	jmp native_return
2:	cmpq $work_preempt_exit, (%rsp)
	jne 1f
	mov 24(%rsp), %rsp                    /* RSP at the ud2: the saved frame */
	jmp interrupt_return
1:	jmp interrupt_stubs + 16 * 6

/* #GP. With error code 0 from ring 3 it is a privileged instruction (or a
 * non-canonical address): demote the interrupted code to ring 0 and let it
 * execute the instruction again there, same RIP, RSP and flags. What really
 * is an error faults again in ring 0 and is reported by the ordinary path. */
	.globl native_gp_entry
native_gp_entry:
	testb $3, 16(%rsp)                    /* CS: error code, RIP, CS, RFLAGS, RSP, SS */
	jz 1f
	cmpq $0, (%rsp)
	jne 1f
	movq $GDT_CODE64, 16(%rsp)
	movq $GDT_DATA, 40(%rsp)
	incq %gs:CPU_NATIVE_DEMOTIONS
	add $8, %rsp
	iretq
1:	jmp interrupt_stubs + 16 * 13

/* void native_promote(uint64_t rflags): returns to the caller in ring 3,
 * same RSP, with these RFLAGS. The caller checks that this is allowed. */
	.globl native_promote
native_promote:
	pop %rcx
	mov %rsp, %rax
	push $USER_DS
	push %rax
	push %rdi
	push $USER_CS
	push %rcx
	iretq
