/* Where an interrupt returns to when it pauses ring-3 code for deferred work
 * or parking (kernel/work.c). The stack pointer points at a copy of the
 * interrupt's frame (struct irq_frame); the ud2 brings it back through the
 * #UD entry (native_entry.S), which pops it as the interrupt's exit would. */
	.text
	.globl work_preempt_entry, work_preempt_exit
work_preempt_entry:
	call work_preempted
work_preempt_exit:
	ud2
