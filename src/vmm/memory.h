/* Guest memory: memfd-backed regions registered with KVM, and the checked
 * accessors that are the only way host code reaches guest memory. Nothing
 * hands out a host pointer without first checking that [gpa, gpa + len) lies
 * inside one region, so a guest-supplied address or length can never make
 * ferry touch memory outside the guest. */
#ifndef FERRY_MEMORY_H
#define FERRY_MEMORY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GM_MAX_REGIONS 16

struct gm_region {
	char name[32];
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;      /* host mapping of the whole region */
	int memfd;         /* backing file; pages can be punched or remapped */
	uint32_t slot;     /* KVM memory slot */
	bool hugepages;    /* backed by 2 MiB hugetlb pages */
	/* A window whose host mapping belongs to a device (the message-queue
	 * page window): a memory slot for the guest, but never reachable
	 * through gm_ptr, so no virtqueue buffer can point into it. */
	bool foreign;
	bool readonly;     /* guest writes exit to ferry as MMIO */
	bool present;      /* registered with KVM at gpa */
};

struct guest_memory {
	int vm_fd;         /* KVM VM fd, or -1 when used without KVM (tests) */
	struct gm_region region[GM_MAX_REGIONS];
	unsigned nr_regions;
	atomic_ulong rejected;  /* accesses refused by the bounds check */
};

void gm_init(struct guest_memory *gm, int vm_fd);
void gm_destroy(struct guest_memory *gm);

/* Creates a memfd of `size` bytes, maps it and registers it at `gpa`.
 * With hugepages, falls back to 4 KiB pages (and says so) if the host has
 * none. On failure writes a one-line reason to err and returns -1. */
int gm_add_ram(struct guest_memory *gm, const char *name, uint64_t gpa,
	       uint64_t size, bool hugepages, char *err, size_t errlen);

/* Registers host memory that a device manages as guest memory at gpa.
 * Returns the region's index, or -1 with a reason in err. */
int gm_add_foreign(struct guest_memory *gm, const char *name, uint64_t gpa, uint64_t size,
		   void *hva, bool readonly, char *err, size_t errlen);
/* Moves a foreign region (the guest reprogrammed a BAR), or hides it
 * (present = false) while the guest has memory decoding off. */
int gm_move_foreign(struct guest_memory *gm, unsigned index, uint64_t gpa, bool present);

/* The region holding all of [gpa, gpa + len), or NULL (counted as rejected).
 * len == 0 is allowed and needs gpa inside a region or at its end. */
const struct gm_region *gm_region_of(struct guest_memory *gm, uint64_t gpa, uint64_t len);

/* Host pointer to [gpa, gpa + len) if it lies in one region, else NULL. */
void *gm_ptr(struct guest_memory *gm, uint64_t gpa, uint64_t len);

/* Copy to or from guest memory; 0 on success, -1 (and nothing copied) if the
 * range is not wholly inside one region. */
int gm_read(struct guest_memory *gm, uint64_t gpa, void *dst, uint64_t len);
int gm_write(struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len);

/* Makes room for `count` more 2 MiB huge pages: free ones in the host's
 * pool, or else surplus ones, raising vm.nr_overcommit_hugepages (ferry
 * runs as root); false, with the reason, if it cannot. Whether the kernel
 * really has the memory shows when the caller maps it (without
 * MAP_NORESERVE). gm_release_hugepages() restores the limit at exit. */
bool gm_reserve_hugepages(uint64_t count, char *err, size_t errlen);
void gm_release_hugepages(void);
/* Held from gm_reserve_hugepages until the caller has mapped the pages:
 * serializes threads and other ferry processes (a file lock). */
void gm_hugepages_lock(void);
void gm_hugepages_unlock(void);

/* Whether `more` memory mappings fit under the kernel's per-process limit
 * (vm.max_map_count) beside those in use now; fills in both figures.
 * Devices that remap guest pages one by one check this at start-up, so a
 * mapping can never fail at run time for want of room. */
bool gm_mappings_fit(uint64_t more, uint64_t *in_use, uint64_t *limit);

/* Sum of region sizes, i.e. the guest's RAM. */
uint64_t gm_total_size(const struct guest_memory *gm);

/* Bytes of guest RAM the host has actually allocated (memfd blocks). */
uint64_t gm_resident_bytes(const struct guest_memory *gm);

#endif
