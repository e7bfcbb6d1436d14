/* Power-off port, compatible with QEMU's isa-debug-exit (iobase=0x501,
 * iosize=1): the guest writes one byte, its status. QEMU turns status s into
 * the process exit code (s << 1) | 1; ferry reports s itself. */
#ifndef FERRY_DEBUG_EXIT_H
#define FERRY_DEBUG_EXIT_H

#define FERRY_DEBUG_EXIT_PORT 0x501
/* ferry's own, beside it: a write here does nothing but exit to the VMM,
 * which is what a VM's "watchdog_ms" counts as progress (ferry-guest's
 * heartbeat_ms=N writes it every N ms). Counted as the debug-exit device's
 * exits. */
#define FERRY_HEARTBEAT_PORT  0x502

/* Status values ferry-guest uses. */
#define FERRY_EXIT_OK         0
#define FERRY_EXIT_FAIL       1   /* an app's check failed */
#define FERRY_EXIT_BAD_ARGS   2   /* unknown app or bad command line */
#define FERRY_EXIT_PANIC      3   /* unexpected exception or kernel panic */

#endif
