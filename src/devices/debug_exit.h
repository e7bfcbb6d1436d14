/* The power-off port, compatible with QEMU's isa-debug-exit at 0x501: the
 * byte a guest writes there is its exit status. */
#ifndef FERRY_DEVICES_DEBUG_EXIT_H
#define FERRY_DEVICES_DEBUG_EXIT_H

#include <stddef.h>

struct vm;

int debug_exit_create(struct vm *vm, char *err, size_t errlen);

#endif
