/* virtio-rng (device type 4): entropy from the host (drivers/virtio_rng.c). */
#ifndef GUEST_VIRTIO_RNG_H
#define GUEST_VIRTIO_RNG_H

#include <stdbool.h>
#include <stddef.h>

struct virtqueue;

/* Sets up the first virtio-rng device, if any. Returns 0; -1 if there is
 * none; -2 if it failed to initialise. */
int virtio_rng_init(void);
bool virtio_rng_present(void);
/* Fills buf with len bytes of entropy. Returns 0, or -1 if the device is
 * absent, broken or does not answer within a second. */
int virtio_rng_read(void *buf, size_t len);
/* The request queue, for statistics (interrupt count). */
struct virtqueue *virtio_rng_queue(void);

#endif
