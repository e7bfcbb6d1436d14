/* One 16-byte entry stub per vector (the IDT points at interrupt_stubs +
 * 16 * vector). Each pushes a dummy error code where the CPU does not push
 * one, then the vector number, and joins the common path, which saves the
 * general registers as a struct irq_frame and calls interrupt_dispatch(). */

	.text
	.balign 16
	.globl interrupt_stubs
interrupt_stubs:
	vec = 0
	.rept 256
	.balign 16
	/* Exceptions that push an error code: #DF #TS #NP #SS #GP #PF #AC #CP #VC #SX */
	.if !(vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	push $0
	.endif
	push $vec
	jmp interrupt_common
	vec = vec + 1
	.endr

interrupt_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi          /* 16-byte aligned here: 22 quadwords on an aligned frame */
	cld
	call interrupt_dispatch
	.globl interrupt_return
interrupt_return:                       /* also from native_entry.S, work.c */
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp           /* vector, error code */
	iretq
