/* virtio-net (device type 1): a NIC on one of the run's networks
 * (host/net_switch.c), with ferry's zero-copy channels as a feature a driver
 * may take (docs/devices/net.md, include/ferry/virtio_net.h). */
#ifndef FERRY_VIRTIO_NET_H_DEV
#define FERRY_VIRTIO_NET_H_DEV

#include <stddef.h>

struct vm;
struct nic_config;

/* The NIC's zero-copy window: memory registered before the irqchip, like
 * every device window. Then the device itself (with the PCI bus). */
int virtio_net_window_create(struct vm *vm, unsigned index, const struct nic_config *nc, char *err, size_t errlen);
int virtio_net_create(struct vm *vm, unsigned index, char *err, size_t errlen);
/* Frees what virtio_net_window_create made when the device was never made. */
void virtio_net_abandon(struct vm *vm);
/* Ends every zero-copy binding of the VM's NICs (frames in flight are
 * delivered first); returns how many were bound. */
unsigned virtio_net_unbind(struct vm *vm);

#endif
