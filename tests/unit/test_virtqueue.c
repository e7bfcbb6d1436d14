/* Split virtqueue, device side: well-formed chains come out whole; every
 * malformed ring the guest could write is refused and breaks the queue. */
#include "helpers.h"

#include <string.h>

#include "devices/device.h"
#include "devices/virtqueue.h"
#include "vmm/log.h"
#include "vmm/memory.h"

#define QSIZE 8
#define DESC  0x1000
#define AVAIL 0x2000
#define USED  0x3000
#define BUF   0x10000

static struct guest_memory gm;
static struct device dev;
static struct virtqueue vq;
static struct vring_desc *desc;
static struct vring_avail *avail;
static struct vring_used *used;

static int setup(void **state)
{
	(void)state;
	char err[256];
	log_threshold = LOG_ERROR; /* rejections are expected here */
	gm_init(&gm, -1);
	if (gm_add_ram(&gm, "ram", 0, 1 << 20, false, err, sizeof(err)) < 0)
		return -1;
	memset(gm_ptr(&gm, 0, 1 << 20), 0, 1 << 20);
	memset(&dev, 0, sizeof(dev));
	strcpy(dev.name, "test");
	vq_init(&vq, &gm, &dev, 0, QSIZE);
	vq.desc_gpa = DESC;
	vq.avail_gpa = AVAIL;
	vq.used_gpa = USED;
	if (vq_enable(&vq) < 0)
		return -1;
	desc = gm_ptr(&gm, DESC, VRING_DESC_BYTES(QSIZE));
	avail = gm_ptr(&gm, AVAIL, VRING_AVAIL_BYTES(QSIZE));
	used = gm_ptr(&gm, USED, VRING_USED_BYTES(QSIZE));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gm_destroy(&gm);
	return 0;
}

static void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc[i] = (struct vring_desc){ addr, len, flags, next };
}

static void make_available(uint16_t head)
{
	avail->ring[avail->idx % QSIZE] = head;
	avail->idx++;
}

static void expect_broken(void)
{
	struct vq_chain c;
	unsigned long before = atomic_load(&dev.ctr.rejected);
	assert_int_equal(vq_pop(&vq, &c), -1);
	assert_true(vq.broken);
	assert_int_equal(atomic_load(&dev.ctr.rejected), before + 1);
	assert_int_equal(vq_pop(&vq, &c), 0); /* a broken queue yields nothing more */
}

static void pop_and_push(void **state)
{
	(void)state;
	strcpy(gm_ptr(&gm, BUF, 6), "hello");
	set_desc(0, BUF, 6, VRING_DESC_F_NEXT, 1);
	set_desc(1, BUF + 0x100, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2);
	set_desc(2, BUF + 0x200, 16, VRING_DESC_F_WRITE, 0);
	make_available(0);

	struct vq_chain c;
	assert_int_equal(vq_pending(&vq), 1);
	assert_int_equal(vq_pop(&vq, &c), 1);
	assert_int_equal(c.head, 0);
	assert_int_equal(c.nr_out, 1);
	assert_int_equal(c.nr_in, 2);
	assert_int_equal(c.out_bytes, 6);
	assert_int_equal(c.in_bytes, 32);
	char got[8] = { 0 };
	assert_int_equal(vq_chain_read(&c, 0, got, sizeof(got)), 6);
	assert_string_equal(got, "hello");
	/* A write spanning both writable buffers. */
	char pattern[24];
	memset(pattern, 'z', sizeof(pattern));
	assert_int_equal(vq_chain_write(&c, 4, pattern, sizeof(pattern)), 24);
	assert_int_equal(((char *)gm_ptr(&gm, BUF + 0x100, 16))[4], 'z');
	assert_int_equal(((char *)gm_ptr(&gm, BUF + 0x200, 16))[11], 'z');
	assert_int_equal(vq_chain_write(&c, 30, pattern, sizeof(pattern)), 2); /* clipped at the end */

	vq_push(&vq, c.head, 28);
	assert_int_equal(used->idx, 1);
	assert_int_equal(used->ring[0].id, 0);
	assert_int_equal(used->ring[0].len, 28);
	assert_int_equal(vq_pop(&vq, &c), 0);
	assert_true(vq_should_interrupt(&vq));
	avail->flags = VRING_AVAIL_F_NO_INTERRUPT;
	assert_false(vq_should_interrupt(&vq));
}

static void head_out_of_range(void **state)
{
	(void)state;
	make_available(QSIZE);
	expect_broken();
}

static void next_out_of_range(void **state)
{
	(void)state;
	set_desc(0, BUF, 8, VRING_DESC_F_NEXT, 200);
	make_available(0);
	expect_broken();
}

static void chain_loop(void **state)
{
	(void)state;
	set_desc(0, BUF, 8, VRING_DESC_F_NEXT, 1);
	set_desc(1, BUF, 8, VRING_DESC_F_NEXT, 0);
	make_available(0);
	expect_broken();
}

static void buffer_outside_ram(void **state)
{
	(void)state;
	set_desc(0, (1 << 20) - 4, 8, 0, 0);
	make_available(0);
	expect_broken();
}

static void buffer_length_wraps(void **state)
{
	(void)state;
	set_desc(0, UINT64_MAX - 2, 8, 0, 0);
	make_available(0);
	expect_broken();
}

static void readable_after_writable(void **state)
{
	(void)state;
	set_desc(0, BUF, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	set_desc(1, BUF, 8, 0, 0);
	make_available(0);
	expect_broken();
}

static void indirect_not_offered(void **state)
{
	(void)state;
	set_desc(0, BUF, 16, VRING_DESC_F_INDIRECT, 0);
	make_available(0);
	expect_broken();
}

static void too_many_available(void **state)
{
	(void)state;
	avail->idx = QSIZE + 1; /* claims more than the ring holds */
	expect_broken();
}

static void enable_checks_rings(void **state)
{
	(void)state;
	struct virtqueue q;
	vq_init(&q, &gm, &dev, 1, QSIZE);
	q.desc_gpa = DESC + 8; /* misaligned */
	q.avail_gpa = AVAIL;
	q.used_gpa = USED;
	assert_int_equal(vq_enable(&q), -1);
	q.desc_gpa = (1 << 20) - 64; /* runs off the end of RAM */
	assert_int_equal(vq_enable(&q), -1);
	q.desc_gpa = DESC;
	q.size = 6; /* not a power of two */
	assert_int_equal(vq_enable(&q), -1);
	q.size = QSIZE * 2; /* above the device's maximum */
	assert_int_equal(vq_enable(&q), -1);
	q.size = QSIZE;
	assert_int_equal(vq_enable(&q), 0);
	assert_true(q.enabled);
}

static void reset_clears(void **state)
{
	(void)state;
	make_available(QSIZE);
	expect_broken();
	vq_reset(&vq);
	assert_false(vq.broken);
	assert_false(vq.enabled);
	struct vq_chain c;
	assert_int_equal(vq_pop(&vq, &c), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(pop_and_push),       T(head_out_of_range),     T(next_out_of_range),   T(chain_loop),
		T(buffer_outside_ram), T(buffer_length_wraps),   T(readable_after_writable),
		T(indirect_not_offered), T(too_many_available),  T(enable_checks_rings), T(reset_clears),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
