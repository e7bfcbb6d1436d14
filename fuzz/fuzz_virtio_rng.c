/* libFuzzer target: virtio-rng as a guest drives it (fuzz/fuzz_device.h):
 * chains of any shape on its queue, notifications by exit, the bounded
 * pass and its requeue through the event loop. */
#define FUZZ_CONFIG "{\"vms\":[{\"name\":\"a\",\"memory_mib\":4,\"devices\":[{\"type\":\"virtio-rng\"}]}]}"
#include "fuzz_device.h"

static int fuzz_setup(struct fz_ctx *c, struct fz *f)
{
	c->slot = fz_virtio(c, c->vm, VIRTIO_ID_RNG, fz_u8(f) != 0xff);
	return c->slot < 0 ? -1 : 0;
}
