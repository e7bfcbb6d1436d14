#include "devices/virtio_rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "devices/virtio.h"
#include "ferry/virtio.h"

#define RNG_QUEUE_SIZE 64

struct virtio_rng {
	struct virtio_device vd;
};

/* The work one pass may do, whatever the guest posts: a chain gets at most
 * RNG_CHAIN_BYTES (the device may fill less than offered), and a pass takes
 * at most RNG_PASS_CHAINS chains before the loop serves others. */
#define RNG_CHAIN_BYTES (64u << 10)
#define RNG_PASS_CHAINS 16

static void rng_queue_notify(struct virtio_device *vd, struct virtqueue *vq)
{
	struct vq_chain chain;
	bool pushed = false;
	unsigned chains = 0;
	while (chains < RNG_PASS_CHAINS && vq_pop(vq, &chain) == 1) {
		uint32_t written = 0;
		for (unsigned s = chain.nr_out; s < chain.nr_out + chain.nr_in && written < RNG_CHAIN_BYTES; s++) {
			struct vq_seg *seg = &chain.seg[s];
			uint32_t want = seg->len < RNG_CHAIN_BYTES - written ? seg->len : RNG_CHAIN_BYTES - written;
			uint32_t done = 0;
			while (done < want) {
				ssize_t n = getrandom(seg->ptr + done, want - done, 0);
				if (n <= 0)
					break;
				done += (uint32_t)n;
			}
			written += done;
			if (done < want)
				break;
		}
		atomic_fetch_add(&vd->dev.ctr.bytes, written);
		vq_push(vq, chain.head, written);
		pushed = true;
		chains++;
	}
	if (pushed)
		virtio_queue_interrupt(vd, vq);
	if (chains == RNG_PASS_CHAINS && vq_pending(vq))
		virtio_queue_more(vd, vq);
}

static void rng_destroy(struct virtio_device *vd)
{
	free((struct virtio_rng *)vd);
}

static const struct virtio_device_ops rng_ops = {
	.type = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_size = RNG_QUEUE_SIZE,
	.queue_notify = rng_queue_notify,
	.destroy = rng_destroy,
};

int virtio_rng_create(struct vm *vm, char *err, size_t errlen)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	if (!rng) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (virtio_device_init(&rng->vd, vm, "virtio-rng", &rng_ops, NULL, NULL, err, errlen) < 0) {
		free(rng);
		return -1;
	}
	return 0;
}
