/* virtio-rng (entropy source): one queue; the device fills each writable
 * buffer with bytes from getrandom(). */
#ifndef FERRY_VIRTIO_RNG_H
#define FERRY_VIRTIO_RNG_H

#include <stddef.h>

struct vm;

int virtio_rng_create(struct vm *vm, char *err, size_t errlen);

#endif
