/* virtio-msgq: this VM's message queue (see include/ferry/msgq.h and
 * docs/devices/msgq.md). The device validates what its guest asks and hands
 * sends to the message switch (host/msgq_switch.c, which also sizes the page
 * pool: msgq_setup). */
#ifndef FERRY_DEVICES_MSGQ_H
#define FERRY_DEVICES_MSGQ_H

#include <stddef.h>

struct vm;
struct device_config;

/* Phase 1, before the irqchip exists: the page window and its memory
 * slots (slot changes are slow once an irqchip exists). */
int msgq_window_create(struct vm *vm, const struct device_config *dc, char *err, size_t errlen);
/* Phase 2: the virtio device on the PCI bus. */
int msgq_create(struct vm *vm, const struct device_config *dc, char *err, size_t errlen);
/* Frees a window whose device was never created (VM creation failed). */
void msgq_abandon(struct vm *vm);

#endif
