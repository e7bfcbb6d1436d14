/* libFuzzer target: the device side of a split virtqueue. The input is the
 * guest: it supplies the descriptor table, the available ring and the queue
 * setup; the device pops and pushes until the queue is empty or broken. */
#include <stdint.h>
#include <string.h>

#include "devices/device.h"
#include "devices/virtqueue.h"
#include "vmm/log.h"
#include "vmm/memory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RAM (256 * 1024)

static struct guest_memory gm;
static uint8_t *ram;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ram) {
		char err[128];
		log_threshold = LOG_ERROR;
		gm_init(&gm, -1);
		if (gm_add_ram(&gm, "fuzz", 0, RAM, false, err, sizeof(err)) < 0)
			__builtin_trap();
		ram = gm_ptr(&gm, 0, RAM);
	}
	if (size < 16)
		return 0;
	/* Header: queue size, ring addresses (within or beyond RAM). */
	uint16_t qsize;
	uint32_t desc, avail, used;
	memcpy(&qsize, data, 2);
	memcpy(&desc, data + 4, 4);
	memcpy(&avail, data + 8, 4);
	memcpy(&used, data + 12, 4);
	memset(ram, 0, RAM);
	/* The rest of the input is the guest's memory image. */
	size_t body = size - 16 < RAM ? size - 16 : RAM;
	memcpy(ram, data + 16, body);

	struct device dev;
	memset(&dev, 0, sizeof(dev));
	struct virtqueue vq;
	vq_init(&vq, &gm, &dev, 0, 256);
	vq.size = qsize;
	vq.desc_gpa = desc % (2 * RAM);
	vq.avail_gpa = avail % (2 * RAM);
	vq.used_gpa = used % (2 * RAM);
	if (vq_enable(&vq) < 0)
		return 0;
	struct vq_chain c;
	uint8_t scratch[512];
	for (int i = 0; i < 1024 && vq_pop(&vq, &c) == 1; i++) {
		vq_chain_read(&c, 0, scratch, sizeof(scratch));
		vq_chain_write(&c, 1, scratch, sizeof(scratch));
		vq_push(&vq, c.head, (uint32_t)c.in_bytes);
		vq_should_interrupt(&vq);
	}
	return 0;
}
