/* The link service without KVM: one zeroed, 2 MiB-aligned memfd per link,
 * the same memory for every peer, and doorbells routed by peer id to the
 * attached device, or refused (and counted) for an unknown peer, a peer
 * that is down, a vector it does not have, or a driver without interrupts. */
#include "helpers.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/link.h"

static struct ferry_config cfg;
static struct link_service *svc;

struct fake_dev {
	bool enabled;          /* the driver turned MSI-X on */
	unsigned rung[8];      /* doorbells received, per vector */
};
static struct fake_dev dev[3];
static atomic_bool stopping[3];

static bool fake_ring(void *opaque, uint16_t vector)
{
	struct fake_dev *d = opaque;
	if (!d->enabled)
		return false;
	d->rung[vector]++;
	return true;
}

/* links[0]: VMs 1 and 3 (explicit), 4 MiB; links[1]: VMs 0, 2, 4, 2 MiB. */
static int setup(void **state)
{
	(void)state;
	memset(&cfg, 0, sizeof(cfg));
	memset(dev, 0, sizeof(dev));
	cfg.nr_links = 2;
	cfg.links[0] = (struct link_config){ .vm = { 1, 3 }, .nr_vms = 2, .size_mib = 4, .network = -1 };
	cfg.links[1] = (struct link_config){ .vm = { 0, 2, 4 }, .nr_vms = 3, .size_mib = 2, .network = 0 };
	char err[256];
	if (link_service_create(&cfg, &svc, err, sizeof(err)) < 0) {
		print_error("%s\n", err);
		return -1;
	}
	for (int i = 0; i < 3; i++)
		atomic_store(&stopping[i], false);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	link_service_destroy(svc);
	svc = NULL;
	return 0;
}

static void no_links_no_service(void **state)
{
	(void)state;
	struct ferry_config empty = { 0 };
	struct link_service *s = (struct link_service *)1;
	char err[64];
	assert_int_equal(link_service_create(&empty, &s, err, sizeof(err)), 0);
	assert_null(s);
	unsigned peer;
	assert_null(link_find(NULL, 0, &peer));
}

static void memory_is_fresh_shared_and_aligned(void **state)
{
	(void)state;
	assert_int_equal(svc->nr, 2);
	for (unsigned i = 0; i < 2; i++) {
		struct shm_link *l = &svc->link[i];
		assert_int_equal(l->size, cfg.links[i].size_mib << 20);
		assert_int_equal((uintptr_t)l->hva % LINK_ALIGN, 0);
		struct stat st;
		assert_int_equal(fstat(l->memfd, &st), 0);
		assert_int_equal(st.st_size, (off_t)l->size);
		for (uint64_t off = 0; off < l->size; off += 4096)
			if (l->hva[off] || l->hva[off + 4095])
				fail_msg("links[%u]: byte at 0x%llx is not zero", i, (unsigned long long)off);
	}
	/* The mapping is the file: what one peer's slot maps, the other's does. */
	struct shm_link *l = &svc->link[0];
	memcpy(l->hva + l->size - 8, "ferrylnk", 8);
	char buf[8];
	assert_int_equal(pread(l->memfd, buf, 8, (off_t)l->size - 8), 8);
	assert_memory_equal(buf, "ferrylnk", 8);
	/* Links do not share memory with each other. */
	assert_int_equal(svc->link[1].hva[svc->link[1].size - 8], 0);
}

static void peers_are_positions(void **state)
{
	(void)state;
	unsigned peer = 99;
	assert_ptr_equal(link_find(svc, 1, &peer), &svc->link[0]);
	assert_int_equal(peer, 0);
	assert_ptr_equal(link_find(svc, 3, &peer), &svc->link[0]);
	assert_int_equal(peer, 1);
	assert_ptr_equal(link_find(svc, 4, &peer), &svc->link[1]);
	assert_int_equal(peer, 2);
	assert_null(link_find(svc, 5, &peer));
}

static void doorbell_reaches_the_peer(void **state)
{
	(void)state;
	struct shm_link *l = &svc->link[1];
	for (unsigned p = 0; p < 3; p++) {
		dev[p].enabled = true;
		assert_int_equal(link_attach(l, p, 4, fake_ring, &dev[p], &stopping[p]), 0);
	}
	assert_int_equal(link_attach(l, 1, 4, fake_ring, &dev[0], &stopping[0]), -1); /* taken */
	assert_int_equal(link_attach(l, 3, 4, fake_ring, &dev[0], &stopping[0]), -1); /* not in the link */
	assert_int_equal(link_ring(l, 0, 2, 3), LINK_OK);
	assert_int_equal(link_ring(l, 2, 0, 0), LINK_OK);
	assert_int_equal(link_ring(l, 1, 1, 1), LINK_OK); /* to itself, as QEMU allows */
	assert_int_equal(dev[2].rung[3], 1);
	assert_int_equal(dev[0].rung[0], 1);
	assert_int_equal(dev[1].rung[1], 1);
	assert_int_equal(atomic_load(&l->port[0].ctr.sent), 1);
	assert_int_equal(atomic_load(&l->port[2].ctr.received), 1);
	assert_int_equal(atomic_load(&l->port[1].ctr.sent), 1);
	assert_int_equal(atomic_load(&l->port[1].ctr.received), 1);
	for (unsigned p = 0; p < 3; p++)
		link_detach(l, p);
}

static void bad_doorbells_are_refused_and_counted(void **state)
{
	(void)state;
	struct shm_link *l = &svc->link[0];
	dev[0].enabled = true;
	assert_int_equal(link_attach(l, 0, 4, fake_ring, &dev[0], &stopping[0]), 0);
	/* Peer 1 has no device yet. */
	assert_false(link_peer_up(l, 1));
	assert_int_equal(link_ring(l, 0, 1, 0), LINK_PEER_DOWN);
	assert_int_equal(link_attach(l, 1, 4, fake_ring, &dev[1], &stopping[1]), 0);
	assert_true(link_peer_up(l, 1));
	/* Its driver has not turned interrupts on. */
	assert_int_equal(link_ring(l, 0, 1, 0), LINK_NOT_READY);
	dev[1].enabled = true;
	assert_int_equal(link_ring(l, 0, 2, 0), LINK_NO_PEER);
	assert_int_equal(link_ring(l, 0, 0xffff, 0), LINK_NO_PEER);
	assert_int_equal(link_ring(l, 0, 1, 4), LINK_BAD_VECTOR);
	assert_int_equal(link_ring(l, 0, 1, 0xffff), LINK_BAD_VECTOR);
	assert_int_equal(link_ring(l, 0, 1, 3), LINK_OK);
	/* A VM that stopped is down, though its device is still there. */
	atomic_store(&stopping[1], true);
	assert_false(link_peer_up(l, 1));
	assert_int_equal(link_ring(l, 0, 1, 3), LINK_PEER_DOWN);
	link_detach(l, 1);
	assert_int_equal(link_ring(l, 0, 1, 3), LINK_PEER_DOWN);
	assert_int_equal(dev[1].rung[3], 1);
	for (unsigned v = 0; v < 8; v++)
		if (v != 3)
			assert_int_equal(dev[1].rung[v], 0);

	struct link_port_counters *c = &l->port[0].ctr;
	assert_int_equal(atomic_load(&c->sent), 1);
	assert_int_equal(atomic_load(&c->rejected), 8);
	assert_int_equal(atomic_load(&c->rejected_by[LINK_PEER_DOWN]), 3);
	assert_int_equal(atomic_load(&c->rejected_by[LINK_NOT_READY]), 1);
	assert_int_equal(atomic_load(&c->rejected_by[LINK_NO_PEER]), 2);
	assert_int_equal(atomic_load(&c->rejected_by[LINK_BAD_VECTOR]), 2);
	assert_int_equal(atomic_load(&l->port[1].ctr.received), 1);
	assert_string_equal(link_ring_result_name(LINK_BAD_VECTOR), "bad_vector");
	link_detach(l, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_links_no_service),
		cmocka_unit_test_setup_teardown(memory_is_fresh_shared_and_aligned, setup, teardown),
		cmocka_unit_test_setup_teardown(peers_are_positions, setup, teardown),
		cmocka_unit_test_setup_teardown(doorbell_reaches_the_peer, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_doorbells_are_refused_and_counted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
