/* hello: the smallest useful app; integration tests grep its greeting. */
#include "app.h"
#include "boot.h"
#include "cmdline.h"
#include "kernel.h"
#include "smp.h"

static int hello_main(void)
{
	kprintf("hello from %s (%u cpus, %lu MiB RAM)\n",
		cmdline_vm_name(), smp_cpu_count(), boot_ram_bytes() / MiB);
	return 0;
}

APP("hello", "print a greeting with the VM name, CPU count and memory size", hello_main);
