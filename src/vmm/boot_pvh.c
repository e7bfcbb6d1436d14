#include "vmm/boot_pvh.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/layout.h"
#include "vmm/elf.h"
#include "vmm/memory.h"

unsigned pvh_memmap(uint64_t ram, struct hvm_memmap_table_entry *out, unsigned max)
{
	unsigned n = 0;
	uint64_t low = ram < FERRY_MMIO_HOLE_GPA ? ram : FERRY_MMIO_HOLE_GPA;
	if (max < 5)
		return 0;
	/* The PC's low memory: RAM, then a reserved area holding the ACPI tables. */
	out[n++] = (struct hvm_memmap_table_entry){ 0, FERRY_LOW_RESERVED_GPA, HVM_MEMMAP_TYPE_RAM, 0 };
	out[n++] = (struct hvm_memmap_table_entry){ FERRY_LOW_RESERVED_GPA, 0x100000 - FERRY_LOW_RESERVED_GPA,
						    HVM_MEMMAP_TYPE_RESERVED, 0 };
	if (low > 0x100000)
		out[n++] = (struct hvm_memmap_table_entry){ 0x100000, low - 0x100000, HVM_MEMMAP_TYPE_RAM, 0 };
	/* The ECAM window, reserved as firmware does, so the OS trusts the MCFG. */
	out[n++] = (struct hvm_memmap_table_entry){ FERRY_PCI_ECAM_GPA, FERRY_PCI_ECAM_SIZE,
						    HVM_MEMMAP_TYPE_RESERVED, 0 };
	if (ram > low)
		out[n++] = (struct hvm_memmap_table_entry){ FERRY_HIGH_RAM_GPA, ram - low, HVM_MEMMAP_TYPE_RAM, 0 };
	return n;
}

int pvh_load(struct guest_memory *mem, const char *kernel, const char *cmdline,
	     uint64_t rsdp_gpa, uint32_t *entry, char *err, size_t errlen)
{
	int fd = open(kernel, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", kernel, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		snprintf(err, errlen, "%s: not a regular, non-empty file", kernel);
		close(fd);
		return -1;
	}
	size_t len = (size_t)st.st_size;
	const uint8_t *buf = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (buf == MAP_FAILED) {
		snprintf(err, errlen, "%s: cannot map: %s", kernel, strerror(errno));
		return -1;
	}

	int ret = -1;
	struct elf_image img;
	char why[200];
	if (elf_parse(buf, len, &img, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", kernel, why);
		goto out;
	}
	for (unsigned i = 0; i < img.nr_segments; i++) {
		const struct elf_segment *s = &img.seg[i];
		uint8_t *dst = gm_ptr(mem, s->paddr, s->mem_size);
		if (!dst || s->paddr < 0x100000) {
			snprintf(err, errlen, "%s: segment at 0x%llx-0x%llx does not fit in guest RAM above 1 MiB",
				 kernel, (unsigned long long)s->paddr, (unsigned long long)(s->paddr + s->mem_size));
			goto out;
		}
		memcpy(dst, buf + s->file_offset, s->file_size);
		memset(dst + s->file_size, 0, s->mem_size - s->file_size);
	}

	size_t cmdlen = strlen(cmdline) + 1;
	if (cmdlen > FERRY_CMDLINE_MAX) {
		snprintf(err, errlen, "kernel command line is longer than %d bytes", FERRY_CMDLINE_MAX - 1);
		goto out;
	}
	struct hvm_memmap_table_entry map[PVH_MAX_MEMMAP];
	unsigned nmap = pvh_memmap(gm_total_size(mem), map, PVH_MAX_MEMMAP);
	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = FERRY_CMDLINE_GPA,
		.rsdp_paddr = rsdp_gpa,
		.memmap_paddr = FERRY_MEMMAP_GPA,
		.memmap_entries = nmap,
	};
	if (gm_write(mem, FERRY_CMDLINE_GPA, cmdline, cmdlen) < 0 ||
	    gm_write(mem, FERRY_MEMMAP_GPA, map, nmap * sizeof(map[0])) < 0 ||
	    gm_write(mem, FERRY_START_INFO_GPA, &si, sizeof(si)) < 0) {
		snprintf(err, errlen, "guest RAM too small for the boot data");
		goto out;
	}
	*entry = img.pvh_entry;
	ret = 0;
out:
	munmap((void *)buf, len);
	return ret;
}
