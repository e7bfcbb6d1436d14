/* memhog: a workload whose working set grows and shrinks in phases, e.g.
 *     app=memhog phases=64M,256M,128M,384M,32M phase_ms=2000 timeout_ms=30000
 * Each phase allocates (through the kernel's page allocator, 2 MiB blocks
 * when it can) or frees until it holds the phase's size, writing a pattern
 * into every page it allocates; then it verifies every word of every page it
 * holds, prints one line (size reached, time taken, verification), and
 * waits out the rest of phase_ms. When memory is not available it waits and
 * tries again (the host may be moving memory to this VM: the balloon
 * deflates, or deflates on OOM). Exits 1 if a verification fails or a phase
 * is not reached within timeout_ms. With wait_balloon it first waits until
 * the balloon driver holds what the host asked for (tests of deflate-on-OOM
 * need the balloon full before memhog grows). */
#include <ferry/debug_exit.h>
#include "app.h"
#include "blocklist.h"
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"
#include "page_alloc.h"
#include "timer.h"
#include "virtio_balloon.h"
#include "work.h"

#define MAX_PHASES 64
#define RETRY_MS 5
#define SEED 0x6d656d686f672121ull   /* "memhog!!" */

static struct blocklist held;

/* Every word holds its own address mixed with the seed: a page that moved,
 * was zeroed by the host or was handed to someone else shows. */
static void fill(uint64_t addr, unsigned order)
{
	uint64_t *p = phys_to_virt(addr), words = (PAGE_SIZE << order) / 8;

	for (uint64_t i = 0; i < words; i++)
		p[i] = (addr + i * 8) ^ SEED;
}

struct verify {
	uint64_t pages, bad_pages, first_bad;
};

static bool verify_block(const struct page_block *b, void *arg)
{
	struct verify *v = arg;
	const uint64_t *p = phys_to_virt(b->addr);

	for (uint64_t pg = 0; pg < 1ull << b->order; pg++) {
		uint64_t diff = 0, base = b->addr + pg * PAGE_SIZE;
		const uint64_t *w = p + pg * (PAGE_SIZE / 8);

		for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
			diff |= w[i] ^ ((base + i * 8) ^ SEED);
		if (diff && !v->bad_pages++)
			v->first_bad = base;
		v->pages++;
	}
	return true;
}

/* Allocates one block of at most `pages` pages, the largest that comes. */
static void *grab(uint64_t pages, unsigned *order)
{
	unsigned o = MIN((unsigned)PAGE_ORDER_2M, (unsigned)(63 - __builtin_clzll(pages)));

	for (;; o--) {
		void *p = alloc_pages(o);
		if (p) {
			*order = o;
			return p;
		}
		if (!o)
			return NULL;
	}
}

static int parse_phases(uint64_t *size, unsigned max)
{
	const char *s = cmdline_get_str("phases", "64M,256M,128M,384M,32M");
	unsigned n = 0;

	while (*s && n < max) {
		char buf[32];
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);

		if (!len || len >= sizeof(buf))
			return -1;
		memcpy(buf, s, len);
		buf[len] = 0;
		if (!parse_size(buf, &size[n]))
			return -1;
		size[n] = ALIGN_UP(size[n], PAGE_SIZE) / PAGE_SIZE;
		n++;
		s += len;
		if (*s == ',')
			s++;
	}
	return *s ? -1 : (int)n;
}

static int memhog_main(void)
{
	static uint64_t phase[MAX_PHASES];
	uint64_t phase_ms = cmdline_get_u64("phase_ms", 2000);
	uint64_t timeout_ms = cmdline_get_u64("timeout_ms", 30000);
	int nphases = parse_phases(phase, MAX_PHASES);
	int status = FERRY_EXIT_OK;

	if (nphases <= 0) {
		kprintf("memhog: bad phases=%s (want sizes like 64M,256M)\n", cmdline_get_str("phases", ""));
		return FERRY_EXIT_BAD_ARGS;
	}
	if (cmdline_get_bool("wait_balloon", false)) {
		/* For tests: start once the host has asked for memory and the
		 * balloon holds it. */
		for (unsigned t = 0; t < 1000 && !balloon_read_target(); t++)
			sleep_ms(10);
		if (!balloon_read_target() || !balloon_wait_settled(10000000000ull))
			kprintf("memhog: the balloon did not reach a target from the host\n");
		else
			kprintf("memhog: balloon at the host's target of %u MiB\n", balloon_read_target() >> 8);
	}
	for (int i = 0; i < nphases; i++) {
		uint64_t t0 = time_ns(), waited = 0, reached_ns, want = phase[i];
		struct verify v = { 0 };
		bool timed_out = false;

		while (held.pages < want) {
			unsigned order;
			void *p = grab(want - held.pages, &order);

			if (p && blocklist_push(&held, virt_to_phys(p), order)) {
				free_pages(p, order);
				p = NULL;
			}
			if (!p) {
				if (time_ns() - t0 > timeout_ms * 1000000) {
					timed_out = true;
					break;
				}
				sleep_ms(RETRY_MS);   /* the host may be giving us memory */
				waited += RETRY_MS;
				continue;
			}
			fill(virt_to_phys(p), order);
		}
		while (held.pages > want) {
			struct page_block blk[64];
			uint64_t got;
			size_t n = blocklist_take(&held, held.pages - want, blk, ARRAY_SIZE(blk), &got);

			for (size_t k = 0; k < n; k++)
				free_pages(phys_to_virt(blk[k].addr), blk[k].order);
		}
		reached_ns = time_ns() - t0;
		blocklist_for_each(&held, verify_block, &v);
		kprintf("memhog: phase %d: %lu MiB in %lu ms%s, verified %lu MiB: %s\n", i + 1,
			held.pages >> 8, reached_ns / 1000000, waited ? " (waited for memory)" : "",
			v.pages >> 8, v.bad_pages ? "CORRUPT" : "ok");
		if (v.bad_pages) {
			kprintf("memhog: %lu pages corrupt, first at %#lx\n", v.bad_pages, v.first_bad);
			status = FERRY_EXIT_FAIL;
		}
		if (timed_out) {
			kprintf("memhog: phase %d: only %lu of %lu MiB within %lu ms\n", i + 1,
				held.pages >> 8, want >> 8, timeout_ms);
			status = FERRY_EXIT_FAIL;
		}
		if (status != FERRY_EXIT_OK)
			break;
		if (time_ns() - t0 < phase_ms * 1000000)
			sleep_ns(phase_ms * 1000000 - (time_ns() - t0));
	}
	blocklist_release(&held, true);
	kprintf("memhog: %s\n", status == FERRY_EXIT_OK ? "done" : "FAILED");
	return status;
}

APP("memhog", "working set in phases (phases=64M,256M,... phase_ms=N timeout_ms=N), verified", memhog_main);
