#include "vmm/memory.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/log.h"

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

void gm_init(struct guest_memory *gm, int vm_fd)
{
	memset(gm, 0, sizeof(*gm));
	gm->vm_fd = vm_fd;
}

void gm_destroy(struct guest_memory *gm)
{
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		struct gm_region *r = &gm->region[i];
		if (r->foreign)
			continue; /* its owner unmaps it */
		munmap(r->hva, r->size);
		close(r->memfd);
	}
	gm->nr_regions = 0;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int set_slot(struct guest_memory *gm, const struct gm_region *r, uint64_t gpa, uint64_t size)
{
	if (gm->vm_fd < 0)
		return 0;
	struct kvm_userspace_memory_region kr = {
		.slot = r->slot,
		.flags = r->readonly ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)r->hva,
	};
	return ioctl(gm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr);
}

struct hugepage_counts {
	unsigned long long free, rsvd, surplus;
};

static struct hugepage_counts hugepage_counts(void)
{
	struct hugepage_counts c = { 0, 0, 0 };
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long v;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "HugePages_Free: %llu", &v) == 1)
			c.free = v;
		else if (sscanf(line, "HugePages_Rsvd: %llu", &v) == 1)
			c.rsvd = v;
		else if (sscanf(line, "HugePages_Surp: %llu", &v) == 1)
			c.surplus = v;
	}
	if (f)
		fclose(f);
	return c;
}

static bool read_sysctl(const char *path, unsigned long long *v)
{
	FILE *f = fopen(path, "r");
	bool ok = f && fscanf(f, "%llu", v) == 1;
	if (f)
		fclose(f);
	return ok;
}

static bool write_sysctl(const char *path, unsigned long long v)
{
	FILE *f = fopen(path, "w");
	bool ok = f && fprintf(f, "%llu\n", v) > 0;
	if (f)
		ok &= fclose(f) == 0;
	return ok;
}

#define OVERCOMMIT_SYSCTL "/proc/sys/vm/nr_overcommit_hugepages"

static pthread_mutex_t hugepages_lock = PTHREAD_MUTEX_INITIALIZER;
static int hugepages_lock_fd = -1;
static unsigned long long overcommit_added;

/* Other ferry processes read and raise the same sysctl and take the same
 * free pages: without a lock across reading the counts, raising the limit
 * and mapping, two could both count on one headroom, and one's restore at
 * exit could undo the other's raise. The file stays open (and the lock is
 * released, not the file closed), so a sandboxed thread that adds a VM
 * later only needs flock. */
#define HUGEPAGES_LOCK_FILE "/run/lock/ferry-hugepages.lock"

void gm_hugepages_lock(void)
{
	pthread_mutex_lock(&hugepages_lock);
	if (hugepages_lock_fd < 0) {
		hugepages_lock_fd = open(HUGEPAGES_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (hugepages_lock_fd < 0)
			hugepages_lock_fd = open("/tmp/ferry-hugepages.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (hugepages_lock_fd < 0)
			log_warn(NULL, "cannot open a huge-page lock file (%s): another ferry may race for huge pages",
				 strerror(errno));
	}
	while (hugepages_lock_fd >= 0 && flock(hugepages_lock_fd, LOCK_EX) < 0 && errno == EINTR)
		;
}

void gm_hugepages_unlock(void)
{
	if (hugepages_lock_fd >= 0)
		flock(hugepages_lock_fd, LOCK_UN);
	pthread_mutex_unlock(&hugepages_lock);
}

/* Huge pages come from the host's persistent pool when it has enough free,
 * and otherwise as surplus pages: ferry raises vm.nr_overcommit_hugepages
 * by what is missing, and the kernel allocates them when the memory is
 * mapped. Surplus pages go back to the kernel as soon as they are freed,
 * so a ferry that is killed (or a balloon that punches them out) leaves no
 * memory behind, only the raised limit. The caller's mmap is what proves
 * the host had the memory. Caller holds gm_hugepages_lock. */
bool gm_reserve_hugepages(uint64_t count, char *err, size_t errlen)
{
	struct hugepage_counts c = hugepage_counts();
	unsigned long long have = c.free > c.rsvd ? c.free - c.rsvd : 0, limit = 0;
	bool ok = have >= count;
	if (!ok && !read_sysctl(OVERCOMMIT_SYSCTL, &limit)) {
		snprintf(err, errlen, "%llu huge pages needed, %llu free, and %s cannot be read",
			 (unsigned long long)count, have, OVERCOMMIT_SYSCTL);
	} else if (!ok) {
		unsigned long long headroom = limit > c.surplus ? limit - c.surplus : 0;
		unsigned long long need = count - have;
		ok = headroom >= need;
		if (!ok && write_sysctl(OVERCOMMIT_SYSCTL, limit + (need - headroom))) {
			overcommit_added += need - headroom;
			log_info(NULL, "vm.nr_overcommit_hugepages %llu -> %llu for %llu surplus huge pages (restored at exit)",
				 limit, limit + (need - headroom), need);
			ok = true;
		} else if (!ok) {
			snprintf(err, errlen, "%llu huge pages needed, %llu free, and %s cannot be raised: %s",
				 (unsigned long long)count, have, OVERCOMMIT_SYSCTL, strerror(errno));
		}
	}
	return ok;
}

void gm_release_hugepages(void)
{
	gm_hugepages_lock();
	unsigned long long limit;
	if (overcommit_added && read_sysctl(OVERCOMMIT_SYSCTL, &limit)) {
		/* Another ferry may have raised it too: take back only ours. */
		if (write_sysctl(OVERCOMMIT_SYSCTL, limit > overcommit_added ? limit - overcommit_added : 0))
			overcommit_added = 0;
	}
	gm_hugepages_unlock();
}

static int create_memfd(const char *name, uint64_t size, bool huge)
{
	int fd = memfd_create(name, MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0));
	if (fd >= 0 && ftruncate(fd, (off_t)size) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* MAP_NORESERVE: guest RAM is allocated on first touch, and given back by
 * the balloon, so reserving it all up front would defeat overcommit. Huge
 * pages are the exception: without a reservation, a guest touching RAM the
 * host has run out of would kill ferry with SIGBUS; with it, the mmap fails
 * here instead. */
static int map_ram(struct gm_region *r, const char *name, uint64_t size)
{
	r->memfd = create_memfd(name, size, r->hugepages);
	if (r->memfd >= 0) {
		r->hva = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | (r->hugepages ? 0 : MAP_NORESERVE),
			      r->memfd, 0);
		if (r->hva != MAP_FAILED)
			return 0;
		int e = errno;
		close(r->memfd);
		errno = e;
	}
	return -1;
}

/* The next free region, cleared and named, if [gpa, gpa + size) overlaps
 * none; NULL with a reason otherwise. Not counted until the caller is done. */
static struct gm_region *new_region(struct guest_memory *gm, const char *name, uint64_t gpa, uint64_t size,
				    char *err, size_t errlen)
{
	if (gm->nr_regions == GM_MAX_REGIONS) {
		snprintf(err, errlen, "%s: too many memory regions (max %d)", name, GM_MAX_REGIONS);
		return NULL;
	}
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		if (ranges_overlap(gpa, size, gm->region[i].gpa, gm->region[i].size)) {
			snprintf(err, errlen, "%s: overlaps region %s", name, gm->region[i].name);
			return NULL;
		}
	}
	struct gm_region *r = &gm->region[gm->nr_regions];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->gpa = gpa;
	r->size = size;
	r->slot = gm->nr_regions;
	r->present = true;
	return r;
}

int gm_add_ram(struct guest_memory *gm, const char *name, uint64_t gpa,
	       uint64_t size, bool hugepages, char *err, size_t errlen)
{
	uint64_t align = hugepages ? (2ull << 20) : 4096;
	if (size == 0 || size % align || gpa % align) {
		snprintf(err, errlen, "%s: region 0x%llx+0x%llx is not %llu-byte aligned", name,
			 (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)align);
		return -1;
	}
	struct gm_region *r = new_region(gm, name, gpa, size, err, errlen);
	if (!r)
		return -1;
	char why[200] = "";
	bool mapped = false;
	if (hugepages) {
		gm_hugepages_lock();
		r->hugepages = gm_reserve_hugepages(size >> 21, why, sizeof(why));
		mapped = r->hugepages && map_ram(r, name, size) == 0;
		if (r->hugepages && !mapped)
			snprintf(why, sizeof(why), "the kernel could not allocate %llu MiB of them (%s)",
				 (unsigned long long)(size >> 20), strerror(errno));
		gm_hugepages_unlock();
	}
	if (hugepages && !mapped) {
		log_warn(NULL, "%s: using 4 KiB pages instead of 2 MiB huge pages: %s", name, why);
		r->hugepages = false;
	}
	if (!mapped && map_ram(r, name, size) < 0) {
		snprintf(err, errlen, "%s: cannot create %llu MiB of guest memory: %s", name,
			 (unsigned long long)(size >> 20), strerror(errno));
		return -1;
	}
	if (set_slot(gm, r, gpa, size) < 0) {
		snprintf(err, errlen, "%s: KVM_SET_USER_MEMORY_REGION: %s", name, strerror(errno));
		munmap(r->hva, size);
		close(r->memfd);
		return -1;
	}
	gm->nr_regions++;
	return 0;
}

int gm_add_foreign(struct guest_memory *gm, const char *name, uint64_t gpa, uint64_t size,
		   void *hva, bool readonly, char *err, size_t errlen)
{
	struct gm_region *r = new_region(gm, name, gpa, size, err, errlen);
	if (!r)
		return -1;
	r->hva = hva;
	r->memfd = -1;
	r->foreign = true;
	r->readonly = readonly;
	if (set_slot(gm, r, gpa, size) < 0) {
		snprintf(err, errlen, "%s: KVM_SET_USER_MEMORY_REGION: %s", name, strerror(errno));
		return -1;
	}
	return (int)gm->nr_regions++;
}

int gm_move_foreign(struct guest_memory *gm, unsigned index, uint64_t gpa, bool present)
{
	if (index >= gm->nr_regions || !gm->region[index].foreign)
		return -1;
	struct gm_region *r = &gm->region[index];
	if (r->present && set_slot(gm, r, r->gpa, 0) < 0) /* size 0 deletes the slot */
		return -1;
	r->present = false;
	if (!present)
		return 0;
	for (unsigned i = 0; i < gm->nr_regions; i++)
		if (i != index && ranges_overlap(gpa, r->size, gm->region[i].gpa, gm->region[i].size))
			return -1;
	if (set_slot(gm, r, gpa, r->size) < 0)
		return -1;
	r->gpa = gpa;
	r->present = true;
	return 0;
}

const struct gm_region *gm_region_of(struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->region[i];
		if (r->foreign)
			continue;
		/* Written so that no sum can overflow: gpa + len may wrap. */
		if (gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len)
			return r;
	}
	atomic_fetch_add(&gm->rejected, 1);
	return NULL;
}

void *gm_ptr(struct guest_memory *gm, uint64_t gpa, uint64_t len)
{
	const struct gm_region *r = gm_region_of(gm, gpa, len);
	return r ? r->hva + (gpa - r->gpa) : NULL;
}

int gm_read(struct guest_memory *gm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);
	if (!p)
		return -1;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(struct guest_memory *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);
	if (!p)
		return -1;
	memcpy(p, src, len);
	return 0;
}

bool gm_mappings_fit(uint64_t more, uint64_t *in_use, uint64_t *limit)
{
	unsigned long long max = 65530; /* the kernel's default, if it cannot be read */
	read_sysctl("/proc/sys/vm/max_map_count", &max);
	*limit = max;
	*in_use = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	int c;
	while (f && (c = getc(f)) != EOF)
		*in_use += c == '\n';
	if (f)
		fclose(f);
	return *in_use + more <= max;
}

uint64_t gm_total_size(const struct guest_memory *gm)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < gm->nr_regions; i++)
		if (!gm->region[i].foreign)
			total += gm->region[i].size;
	return total;
}

uint64_t gm_resident_bytes(const struct guest_memory *gm)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < gm->nr_regions; i++) {
		struct stat st;
		if (!gm->region[i].foreign && fstat(gm->region[i].memfd, &st) == 0)
			total += (uint64_t)st.st_blocks * 512;
	}
	return total;
}
