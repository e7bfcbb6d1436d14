/* The virtio-pci common configuration structure on its own, as a driver
 * (or a hostile guest) would drive it: feature negotiation and its refusal,
 * queue selection, setup and enabling, vectors, reset, and accesses the
 * structure does not have. No KVM: guest memory is a plain memfd. */
#include "helpers.h"

#include <stdio.h>
#include <string.h>

#include "devices/virtio_pci_common.h"
#include "ferry/virtio.h"
#include "vmm/log.h"
#include "vmm/memory.h"

#define RAM (1u << 20)

static struct guest_memory mem;
static struct virtio_device vd;
static struct virtio_pci_common c;
static unsigned resets, activations;

static void dev_reset(struct virtio_device *d)
{
	(void)d;
	resets++;
}

static void dev_activate(struct virtio_device *d)
{
	(void)d;
	activations++;
}

static const struct virtio_device_ops ops = {
	.type = 4,
	.num_queues = 2,
	.queue_size = 64,
	.features = 1ull << 3,
	.reset = dev_reset,
	.activate = dev_activate,
};

static int setup(void **state)
{
	(void)state;
	char err[256];
	log_threshold = LOG_ERROR;
	gm_init(&mem, -1);
	if (gm_add_ram(&mem, "ram", 0, RAM, false, err, sizeof(err)) < 0)
		return -1;
	memset(&vd, 0, sizeof(vd));
	snprintf(vd.dev.name, sizeof(vd.dev.name), "test");
	vd.vops = &ops;
	for (uint16_t q = 0; q < ops.num_queues; q++)
		vq_init(&vd.vq[q], &mem, &vd.dev, q, ops.queue_size);
	vpci_common_init(&c, &vd, 3);
	resets = activations = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gm_destroy(&mem);
	return 0;
}

static uint64_t rd(uint64_t off, uint32_t len)
{
	return vpci_common_read(&c, off, len);
}

static void wr(uint64_t off, uint64_t val, uint32_t len)
{
	vpci_common_write(&c, off, val, len);
}

static unsigned long rejected(void)
{
	return atomic_load(&vd.dev.ctr.rejected);
}

static void features_are_negotiated(void **state)
{
	(void)state;
	wr(VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_DF, 4), 1u << 3);
	wr(VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_DF, 4), 1u << (VIRTIO_F_VERSION_1 - 32));
	wr(VIRTIO_PCI_COMMON_DFSELECT, 7, 4); /* a word beyond the features reads 0 */
	assert_int_equal(rd(VIRTIO_PCI_COMMON_DF, 4), 0);
	wr(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	wr(VIRTIO_PCI_COMMON_GF, 1u << 3, 4);
	wr(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	wr(VIRTIO_PCI_COMMON_GF, 1u << (VIRTIO_F_VERSION_1 - 32), 4);
	wr(VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
	assert_true(rd(VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(vd.driver_features, (1ull << 3) | (1ull << VIRTIO_F_VERSION_1));
	/* Frozen once accepted. */
	wr(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	wr(VIRTIO_PCI_COMMON_GF, 0, 4);
	assert_int_equal(vd.driver_features, (1ull << 3) | (1ull << VIRTIO_F_VERSION_1));
	wr(VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
					     VIRTIO_STATUS_DRIVER_OK, 1);
	assert_int_equal(activations, 1);
}

/* Features the device did not offer, or no VERSION_1: FEATURES_OK does not
 * stick, which is how the driver learns the device said no. */
static void bad_features_are_refused(void **state)
{
	(void)state;
	wr(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	wr(VIRTIO_PCI_COMMON_GF, 1u << 5, 4); /* not offered */
	wr(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	wr(VIRTIO_PCI_COMMON_GF, 1u << (VIRTIO_F_VERSION_1 - 32), 4);
	unsigned long before = rejected();
	wr(VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_FEATURES_OK, 1);
	assert_false(rd(VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(rejected(), before + 1);
	wr(VIRTIO_PCI_COMMON_STATUS, 0, 1); /* reset */
	wr(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	wr(VIRTIO_PCI_COMMON_GF, 1u << 3, 4); /* offered, but legacy (no VERSION_1) */
	wr(VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_FEATURES_OK, 1);
	assert_false(rd(VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK);
}

static void queues_are_set_up_and_frozen(void **state)
{
	(void)state;
	assert_int_equal(rd(VIRTIO_PCI_COMMON_NUMQ, 2), 2);
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 5, 2); /* no such queue: size reads 0 */
	assert_int_equal(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);  /* and nothing happens */
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_Q_SIZE, 2), 64);
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 16, 2);
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 4);
	wr(VIRTIO_PCI_COMMON_Q_DESCHI, 0, 4);
	wr(VIRTIO_PCI_COMMON_Q_AVAILLO, 0x2000, 8);
	wr(VIRTIO_PCI_COMMON_Q_USEDLO, 0x3000, 4);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), 2);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	assert_true(vd.vq[1].enabled);
	assert_int_equal(vd.vq[1].size, 16);
	assert_int_equal(vd.vq[1].avail_gpa, 0x2000);
	/* A live queue's size and addresses cannot change. */
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 32, 2);
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, 0x5000, 4);
	assert_int_equal(vd.vq[1].size, 16);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0x1000);
	/* A reset takes everything back. */
	wr(VIRTIO_PCI_COMMON_STATUS, 0, 1);
	assert_int_equal(resets, 1);
	assert_false(vd.vq[1].enabled);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_Q_SELECT, 2), 0);
	assert_int_equal(vd.vq[1].msix_vector, VIRTIO_MSI_NO_VECTOR);
}

/* Rings outside guest RAM or of a bad size never go live. */
static void bad_queues_are_refused(void **state)
{
	(void)state;
	wr(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, RAM - 16, 4); /* the table runs past RAM */
	wr(VIRTIO_PCI_COMMON_Q_AVAILLO, 0x2000, 4);
	wr(VIRTIO_PCI_COMMON_Q_USEDLO, 0x3000, 4);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_false(vd.vq[0].enabled);
	assert_true(vd.status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	wr(VIRTIO_PCI_COMMON_STATUS, 0, 1);
	wr(VIRTIO_PCI_COMMON_Q_SIZE, 12, 2); /* not a power of two */
	wr(VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 4);
	wr(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	assert_false(vd.vq[0].enabled);
}

static void vectors_beyond_the_table_read_no_vector(void **state)
{
	(void)state;
	wr(VIRTIO_PCI_COMMON_MSIX, 2, 2);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_MSIX, 2), 2);
	wr(VIRTIO_PCI_COMMON_MSIX, 3, 2); /* the function has vectors 0-2 */
	assert_int_equal(rd(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	wr(VIRTIO_PCI_COMMON_Q_MSIX, 0xfff0, 2);
	assert_int_equal(rd(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
}

/* Every offset at every width: what the structure does not have is refused
 * and counted, never crashes, and reads as 0. */
static void every_offset_and_width(void **state)
{
	(void)state;
	static const uint32_t widths[] = { 1, 2, 4, 8 };
	for (uint64_t off = 0; off < 0x80; off++) {
		for (unsigned w = 0; w < 4; w++) {
			unsigned long before = rejected();
			uint64_t v = rd(off, widths[w]);
			bool known = rejected() == before;
			if (!known)
				assert_int_equal(v, 0);
			if (off != VIRTIO_PCI_COMMON_STATUS)
				wr(off, 0xffffffffffffffffull, widths[w]);
		}
	}
	assert_true(rejected() > 0);
	/* A sample of what is not there. */
	unsigned long before = rejected();
	rd(VIRTIO_PCI_COMMON_DF, 2);
	wr(VIRTIO_PCI_COMMON_STATUS, 1, 4);
	rd(0x1000, 4);
	assert_int_equal(rejected(), before + 3);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(features_are_negotiated), T(bad_features_are_refused), T(queues_are_set_up_and_frozen),
		T(bad_queues_are_refused), T(vectors_beyond_the_table_read_no_vector), T(every_offset_and_width),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
