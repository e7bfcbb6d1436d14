/* Direct rings on the host side, without KVM: which pairs get a ring (the
 * policy, and both ends asking for rings), each VM's view of them (what it
 * may write and what it may only read are the same memory as the peer's),
 * doorbells answered once per wake token, and rings closed when their
 * receiver resets or stops. */
#include "helpers.h"

#include <string.h>
#include <sys/mman.h>

#include "host/msgq_switch.h"
#include "vmm/config.h"
#include "vmm/log.h"

#define PS 4096u
#define RING (64u << 10)

static struct msgq_switch *sw;
static struct msgq_endpoint *ep[4];  /* vm ids 1..3 */
static unsigned woken[4][MSGQ_NUM_QUEUES];
static atomic_bool running;

static void wake(struct msgq_endpoint *e, unsigned queue)
{
	woken[e->id][queue]++;
}

static bool no_buffers(struct msgq_endpoint *e)
{
	(void)e;
	return false;
}

static void nothing(struct msgq_endpoint *e)
{
	(void)e;
}

static const struct msgq_endpoint_ops ops = { .reserve = no_buffers, .unreserve = nothing, .wake = wake };

/* a -> b with rings at both ends; b -> a too; c -> b, but c has no rings;
 * a -> c, c has none. So: two rings, a->b and b->a. */
static const char config[] =
	"{\"msgq\": {\"ring_kib\": 64}, \"vms\": ["
	"{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
	" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"b\", \"c\"], \"rings\": true}]},"
	"{\"name\": \"b\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
	" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"a\"], \"rings\": true}]},"
	"{\"name\": \"c\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
	" \"devices\": [{\"type\": \"msgq\", \"peers\": [\"b\"]}]}]}";

static struct ferry_config cfg;

static int setup(void **state)
{
	(void)state;
	char err[256];
	log_threshold = LOG_ERROR;
	memset(woken, 0, sizeof(woken));
	if (config_parse(config, "test", ".", &cfg, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	sw = msgq_switch_create(64, 8, PS, 1024, err, sizeof(err));
	if (!sw || msgq_rings_setup(sw, &cfg, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	for (uint32_t id = 1; id <= 3; id++) {
		ep[id] = msgq_endpoint_create(sw, id, cfg.vms[id - 1].name, 8, 8, 4, err, sizeof(err));
		if (!ep[id])
			fail_msg("%s", err);
		ep[id]->ops = &ops;
		ep[id]->up = true;
		ep[id]->vm_stopping = &running;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (uint32_t id = 1; id <= 3; id++)
		msgq_endpoint_destroy(ep[id]);
	msgq_switch_destroy(sw);
	config_free(&cfg);
	return 0;
}

static volatile struct msgq_ring_hdr *tx_hdr(struct msgq_endpoint *e, unsigned i)
{
	return (volatile struct msgq_ring_hdr *)(e->rings_hva + (uint64_t)i * RING);
}

/* The ack page of tx ring i, as the sender sees it (read-only part). */
static volatile struct msgq_ring_ack *tx_ack(struct msgq_endpoint *e, unsigned i)
{
	return (volatile struct msgq_ring_ack *)(e->rings_hva + e->rings_rw + (uint64_t)e->nr_rx_rings * RING +
						 (uint64_t)i * MSGQ_RING_ACK);
}

/* The receiver's own ack page of rx ring j (read-write part). */
static volatile struct msgq_ring_ack *rx_ack(struct msgq_endpoint *e, unsigned j)
{
	return (volatile struct msgq_ring_ack *)(e->rings_hva + (uint64_t)e->nr_tx_rings * RING +
						 (uint64_t)j * MSGQ_RING_ACK);
}

static const volatile uint8_t *rx_data(struct msgq_endpoint *e, unsigned j)
{
	return e->rings_hva + e->rings_rw + (uint64_t)j * RING;
}

static void rings_follow_policy(void **state)
{
	(void)state;
	assert_int_equal(sw->rings.nr, 2);
	assert_int_equal(ep[1]->nr_tx_rings, 1);
	assert_int_equal(ep[1]->nr_rx_rings, 1);
	assert_int_equal(ep[2]->nr_tx_rings, 1);
	assert_int_equal(ep[2]->nr_rx_rings, 1);
	assert_int_equal(ep[3]->nr_tx_rings, 0); /* c asked for none */
	assert_int_equal(ep[3]->nr_rx_rings, 0);
	assert_null(ep[3]->rings_hva);
	assert_int_equal(sw->rings.ring[ep[1]->tx_ring[0]].dst, 2);
	assert_int_equal(sw->rings.ring[ep[2]->rx_ring[0]].src, 1);
	assert_int_equal(ep[1]->rings_rw, RING + MSGQ_RING_ACK);
	assert_int_equal(ep[1]->rings_ro, RING + MSGQ_RING_ACK);
}

/* What a writes in its ring, b reads in its read-only part; what b writes
 * in its ack page, a reads in its own. */
static void views_share_memory(void **state)
{
	(void)state;
	volatile uint8_t *a_ring = (volatile uint8_t *)tx_hdr(ep[1], 0);
	a_ring[MSGQ_RING_HDR + 100] = 0x5a;
	assert_int_equal(rx_data(ep[2], 0)[MSGQ_RING_HDR + 100], 0x5a);
	rx_ack(ep[2], 0)->cons = 1234;
	assert_int_equal(tx_ack(ep[1], 0)->cons, 1234);
	/* Nothing of b->a's ring shows in a->b's. */
	assert_int_equal(((volatile uint8_t *)tx_hdr(ep[2], 0))[MSGQ_RING_HDR + 100], 0);
}

static void doorbell_answers_each_token_once(void **state)
{
	(void)state;
	pthread_mutex_lock(&sw->lock);
	msgq_rings_doorbell(ep[1]); /* nobody waits */
	assert_int_equal(woken[2][MSGQ_QUEUE_RECV], 0);
	rx_ack(ep[2], 0)->wake_rx = 7; /* b sleeps until a message comes */
	for (int i = 0; i < 100; i++)
		msgq_rings_doorbell(ep[1]);
	assert_int_equal(woken[2][MSGQ_QUEUE_RECV], 1);
	rx_ack(ep[2], 0)->wake_rx = 8; /* b sleeps again */
	msgq_rings_doorbell(ep[1]);
	assert_int_equal(woken[2][MSGQ_QUEUE_RECV], 2);
	/* a waits for room in its ring to b: b's doorbell wakes a. */
	tx_hdr(ep[1], 0)->wake_tx = 3;
	msgq_rings_doorbell(ep[2]);
	msgq_rings_doorbell(ep[2]);
	assert_int_equal(woken[1][MSGQ_QUEUE_SEND], 1);
	assert_int_equal(woken[3][MSGQ_QUEUE_RECV] + woken[3][MSGQ_QUEUE_SEND], 0);
	pthread_mutex_unlock(&sw->lock);
}

/* Missed tokens are answered at the polling interval: a receiver asleep on
 * a ring with messages, a sender asleep on a ring with room. */
static void check_answers_missed_tokens(void **state)
{
	(void)state;
	rx_ack(ep[2], 0)->open = MSGQ_RING_OPEN;
	pthread_mutex_lock(&sw->lock);
	rx_ack(ep[2], 0)->wake_rx = 5;
	msgq_rings_check(ep[1]); /* the ring is empty: nothing owed */
	assert_int_equal(woken[2][MSGQ_QUEUE_RECV], 0);
	tx_hdr(ep[1], 0)->prod = 2;
	msgq_rings_check(ep[1]);
	msgq_rings_check(ep[1]);
	assert_int_equal(woken[2][MSGQ_QUEUE_RECV], 1);
	tx_hdr(ep[1], 0)->wake_tx = 9;
	msgq_rings_check(ep[2]);
	assert_int_equal(woken[1][MSGQ_QUEUE_SEND], 1);
	pthread_mutex_unlock(&sw->lock);
}

/* A receiver's reset closes the rings it reads (and wakes their senders if
 * they wait for room); so does its VM stopping. */
static void reset_and_stop_close_rings(void **state)
{
	(void)state;
	rx_ack(ep[2], 0)->open = MSGQ_RING_OPEN;
	rx_ack(ep[2], 0)->cons = 40;
	tx_hdr(ep[1], 0)->prod = 40;
	tx_hdr(ep[1], 0)->wake_tx = 1;
	pthread_mutex_lock(&sw->lock);
	msgq_endpoint_reset(ep[2]);
	pthread_mutex_unlock(&sw->lock);
	assert_int_equal(tx_ack(ep[1], 0)->open, 0);
	assert_int_equal(tx_ack(ep[1], 0)->cons, 40); /* a's view stays consistent */
	assert_int_equal(woken[1][MSGQ_QUEUE_SEND], 1);
	/* Opened again, then the VM stops: the next check closes it. */
	rx_ack(ep[2], 0)->open = MSGQ_RING_OPEN;
	atomic_bool stopping = true;
	ep[2]->vm_stopping = &stopping;
	pthread_mutex_lock(&sw->lock);
	msgq_rings_check(ep[1]);
	pthread_mutex_unlock(&sw->lock);
	assert_int_equal(tx_ack(ep[1], 0)->open, 0);
	ep[2]->vm_stopping = &running;
	/* And a receiver that goes away closes its rings too. */
	rx_ack(ep[2], 0)->open = MSGQ_RING_OPEN;
	msgq_endpoint_destroy(ep[2]);
	ep[2] = NULL;
	assert_int_equal(((volatile struct msgq_ring_ack *)(sw->rings.base + sw->rings.ring[ep[1]->tx_ring[0]].off +
							     RING))->open, 0);
}

static void bad_ring_size_is_refused(void **state)
{
	(void)state;
	struct ferry_config c;
	char err[256];
	assert_int_equal(config_parse("{\"msgq\": {\"ring_kib\": 100}, \"vms\": [{\"name\": \"a\", \"memory_mib\": 64,"
				      " \"kernel\": \"/dev/null\"}]}", "t", ".", &c, err, sizeof(err)), -1);
	expect_contains(err, "\"ring_kib\" must be a power of two");
	assert_int_equal(config_parse("{\"msgq\": {\"ring_kib\": 32}, \"vms\": [{\"name\": \"a\", \"memory_mib\": 64,"
				      " \"kernel\": \"/dev/null\"}]}", "t", ".", &c, err, sizeof(err)), -1);
	assert_int_equal(config_parse("{\"vms\": [{\"name\": \"a\", \"memory_mib\": 64, \"kernel\": \"/dev/null\","
				      " \"devices\": [{\"type\": \"msgq\", \"rings\": 1}]}]}", "t", ".", &c, err,
				      sizeof(err)), -1);
	expect_contains(err, "\"rings\" must be true or false");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(rings_follow_policy), T(views_share_memory), T(doorbell_answers_each_token_once),
		T(check_answers_missed_tokens), T(reset_and_stop_close_rings), T(bad_ring_size_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
