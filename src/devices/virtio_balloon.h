/* virtio-balloon (device type 5): inflate and deflate queues, statistics,
 * DEFLATE_ON_OOM and free page reporting. Pages the guest gives up are
 * released on the host at once with fallocate(PUNCH_HOLE) on the VM's memfd,
 * in merged ranges; pages it takes back read as zeroes. The target (memory
 * quantity request) reaches the guest through config space and a
 * config-change interrupt. */
#ifndef FERRY_VIRTIO_BALLOON_H
#define FERRY_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct device_config;

/* ferry-guest reports its maximum reservation change rate, in pages per
 * second, under this statistics tag (devices ignore tags they do not know). */
#define FERRY_BALLOON_S_MAX_RATE 0x8000

struct balloon_status {
	bool driver_ok;             /* the guest has a driver and it is running */
	uint64_t target_pages;      /* what we asked (4 KiB pages in the balloon) */
	uint64_t actual_pages;      /* what the driver says it holds */
	uint64_t held_pages;        /* what ferry has seen inflated and not deflated */
	uint64_t last_change_ns;    /* when held_pages last moved */
	bool have_stats;
	uint64_t stats_age_ns;
	uint64_t mem_free, mem_total, mem_available; /* bytes, from the guest's stats */
	uint64_t max_rate;          /* pages/s the guest says it can give up */
};

int virtio_balloon_create(struct vm *vm, const struct device_config *dc, char *err, size_t errlen);
/* Sets the balloon size the guest should reach, in 4 KiB pages. */
void balloon_set_target(struct vm *vm, uint64_t pages);
/* false if the VM has no balloon device. */
bool balloon_get_status(struct vm *vm, struct balloon_status *out);

#endif
