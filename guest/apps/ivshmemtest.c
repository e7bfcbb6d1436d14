/* ivshmemtest: the ivshmem device's registers and doorbells between the VMs
 * of one link (ferry's static links, docs/devices/ivshmem.md; QEMU's
 * ivshmem-doorbell behaves the same).
 *
 *   app=ivshmemtest peers=N [rounds=R] [position=P] [bad=1] [timeout_ms=T]
 *   app=ivshmemtest solo=1 peers=N [delay_ms=D]
 *
 * Prints this VM's IVPosition ("ivshmemtest: position P") and fails if it
 * is not P when position= is given. Each of the N VMs then routes its MSI-X
 * vectors to itself and raises its "ready" flag in the shared memory. Once
 * every flag is up, peer 0 rings each other peer R times on vector 1 and
 * waits for it to ring back on vector 1 each time (a doorbell round trip,
 * timed); every peer rings itself once on vector 2. bad=1 then also tries
 * what the device must refuse: a doorbell to a peer id outside the link,
 * one to a vector the peer lacks, a write to the read-only IVPosition. Last,
 * every VM raises its "done" flag and waits for everyone's, so that none
 * powers off while another may still ring it, and checks that each vector
 * counted exactly the interrupts it was sent (refused doorbells raise none).
 *
 * solo=1 waits for no one: after delay_ms it rings every other peer once on
 * vector 0 and exits 0 (the host refuses doorbells to peers that are not up,
 * and counts them).
 *
 * The flags use the first page of the shared memory, which the host gives
 * zeroed: the app does not share a link with the message rings. */
#include "app.h"
#include "cmdline.h"
#include "heap.h"
#include "ivshmem.h"
#include "kernel.h"
#include "kstring.h"
#include "timer.h"
#include "x86.h"

#include <ferry/debug_exit.h>
#include <ferry/ivshmem.h>

#define MAX_PEERS   16
#define FLAG_READY  0x5944414552ull  /* "READY" */
#define FLAG_DONE   0x454e4f44ull    /* "DONE" */

struct flags {
	struct {
		uint64_t ready;
		uint8_t pad0[56];
		uint64_t done;
		uint8_t pad1[56];
	} peer[MAX_PEERS];
};

static struct flags *flags;
static uint64_t timeout_ns;

static void raise_flag(uint64_t *f, uint64_t v)
{
	__atomic_store_n(f, v, __ATOMIC_RELEASE);
}

/* Waits until every peer's flag (ready or done) holds v. */
static bool wait_all(unsigned peers, bool done, uint64_t v)
{
	uint64_t start = time_ns();
	for (unsigned p = 0; p < peers; p++) {
		uint64_t *f = done ? &flags->peer[p].done : &flags->peer[p].ready;
		while (__atomic_load_n(f, __ATOMIC_ACQUIRE) != v) {
			if (time_ns() - start >= timeout_ns) {
				kprintf("ivshmemtest: peer %u is not %s after %lu ms\n", p, done ? "done" : "ready",
					(unsigned long)(timeout_ns / 1000000));
				return false;
			}
			sleep_ms(1);
		}
	}
	return true;
}

/* Waits until `vector` has counted more than `seen` interrupts. */
static bool wait_irq(unsigned vector, uint64_t seen)
{
	uint64_t start = time_ns();
	while (ivshmem_irq_count(vector) <= seen) {
		if (time_ns() - start >= timeout_ns)
			return false;
		cpu_relax();
	}
	return true;
}

static void sort_u64(uint64_t *v, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		uint64_t x = v[i];
		unsigned j = i;
		while (j > 0 && v[j - 1] > x) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}

/* Peer 0: rounds of doorbell and reply with every other peer, timed. */
static int initiate(unsigned peers, unsigned rounds, uint64_t *rtt)
{
	for (unsigned p = 1; p < peers; p++) {
		for (unsigned r = 0; r < rounds; r++) {
			uint64_t seen = ivshmem_irq_count(1), t0 = time_ns();
			ivshmem_doorbell((uint16_t)p, 1);
			if (!wait_irq(1, seen)) {
				kprintf("ivshmemtest: peer %u did not ring back in round %u\n", p, r);
				return FERRY_EXIT_FAIL;
			}
			rtt[(p - 1) * rounds + r] = time_ns() - t0;
		}
	}
	return 0;
}

/* Other peers: ring peer 0 back after each of its doorbells. */
static int respond(unsigned rounds)
{
	for (unsigned r = 0; r < rounds; r++) {
		if (!wait_irq(1, r)) {
			kprintf("ivshmemtest: no doorbell from peer 0 in round %u\n", r);
			return FERRY_EXIT_FAIL;
		}
		ivshmem_doorbell(0, 1);
	}
	return 0;
}

/* What the device must refuse. Nothing here may raise an interrupt. */
static int misbehave(unsigned peers, int pos)
{
	ivshmem_doorbell((uint16_t)(peers + 5), 0);         /* no such peer */
	ivshmem_doorbell(pos == 0 ? 1 : 0, 0x0fff);          /* no such vector */
	ivshmem_reg_write(IVSHMEM_IV_POSITION, 0x1234);    /* read-only */
	uint32_t again = ivshmem_reg_read(IVSHMEM_IV_POSITION);
	if (again != (uint32_t)pos) {
		kprintf("ivshmemtest: IVPosition reads %u after a write, not %d\n", again, pos);
		return FERRY_EXIT_FAIL;
	}
	return 0;
}

static int solo(unsigned peers, int pos)
{
	sleep_ms(cmdline_get_u64("delay_ms", 0));
	for (unsigned p = 0; p < peers; p++)
		if ((int)p != pos)
			ivshmem_doorbell((uint16_t)p, 0);
	kprintf("ivshmemtest: rang %u peers once\n", peers - 1);
	return 0;
}

static int ivshmemtest_main(void)
{
	unsigned peers = (unsigned)cmdline_get_u64("peers", 2);
	unsigned rounds = (unsigned)cmdline_get_u64("rounds", 10);
	timeout_ns = cmdline_get_u64("timeout_ms", 30000) * 1000000ull;
	if (peers < 2 || peers > MAX_PEERS || rounds == 0 || rounds > 100000) {
		kprintf("ivshmemtest: need peers=2..%d, rounds=1..100000\n", MAX_PEERS);
		return FERRY_EXIT_BAD_ARGS;
	}
	if (ivshmem_open() < 0) {
		kprintf("ivshmemtest: no usable ivshmem device\n");
		return FERRY_EXIT_FAIL;
	}
	int pos = ivshmem_position();
	kprintf("ivshmemtest: position %d\n", pos);
	const char *want = cmdline_get("position");
	if (want && (uint64_t)pos != cmdline_get_u64("position", 0)) {
		kprintf("ivshmemtest: expected position %s\n", want);
		return FERRY_EXIT_FAIL;
	}
	if (pos < 0 || (unsigned)pos >= peers || ivshmem_size() < sizeof(struct flags)) {
		kprintf("ivshmemtest: position %d does not fit peers=%u\n", pos, peers);
		return FERRY_EXIT_FAIL;
	}
	int vectors = ivshmem_irq_init();
	if (vectors < 3) {
		kprintf("ivshmemtest: the device has %d MSI-X vectors, 3 needed\n", vectors);
		return FERRY_EXIT_FAIL;
	}
	if (cmdline_get_bool("solo", false))
		return solo(peers, pos);

	flags = (struct flags *)ivshmem_base();
	raise_flag(&flags->peer[pos].ready, FLAG_READY);
	if (!wait_all(peers, false, FLAG_READY))
		return FERRY_EXIT_FAIL;
	uint64_t *rtt = pos == 0 ? kmalloc((peers - 1) * rounds * sizeof(*rtt)) : NULL;
	if (pos == 0 && !rtt)
		return FERRY_EXIT_FAIL;
	int err = pos == 0 ? initiate(peers, rounds, rtt) : respond(rounds);
	if (err)
		return err;
	uint64_t seen = ivshmem_irq_count(2);
	ivshmem_doorbell((uint16_t)pos, 2);
	if (!wait_irq(2, seen)) {
		kprintf("ivshmemtest: a doorbell to itself raised nothing\n");
		return FERRY_EXIT_FAIL;
	}
	if (cmdline_get_bool("bad", false) && (err = misbehave(peers, pos)) != 0)
		return err;
	raise_flag(&flags->peer[pos].done, FLAG_DONE);
	if (!wait_all(peers, true, FLAG_DONE))
		return FERRY_EXIT_FAIL;

	/* Exactly what was sent: refused doorbells raised nothing. */
	uint64_t want_irqs[4] = { 0, pos == 0 ? (uint64_t)(peers - 1) * rounds : rounds, 1, 0 };
	for (unsigned v = 0; v < 4 && v < (unsigned)vectors; v++) {
		if (ivshmem_irq_count(v) != want_irqs[v]) {
			kprintf("ivshmemtest: vector %u raised %lu interrupts, expected %lu\n", v,
				(unsigned long)ivshmem_irq_count(v), (unsigned long)want_irqs[v]);
			return FERRY_EXIT_FAIL;
		}
	}
	if (pos == 0) {
		unsigned n = (peers - 1) * rounds;
		sort_u64(rtt, n);
		kprintf("ivshmemtest: result {\"peers\": %u, \"rounds\": %u, \"doorbell_rtt_ns_median\": %lu, "
			"\"doorbell_rtt_ns_p99\": %lu}\n", peers, rounds, (unsigned long)rtt[n / 2],
			(unsigned long)rtt[n * 99 / 100]);
		kfree(rtt);
	}
	kprintf("ivshmemtest: ok\n");
	return 0;
}

APP("ivshmemtest", "ivshmem registers and doorbells between the VMs of a link", ivshmemtest_main);
