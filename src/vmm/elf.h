/* ELF kernel image parsing: the segments to load and the PVH entry point.
 * Pure (no I/O, no guest memory), so it can be fuzzed; every offset and size
 * from the file is checked against the file's length. */
#ifndef FERRY_ELF_H
#define FERRY_ELF_H

#include <stddef.h>
#include <stdint.h>

#define ELF_MAX_SEGMENTS 16

struct elf_segment {
	uint64_t paddr;
	uint64_t file_offset;
	uint64_t file_size;
	uint64_t mem_size;   /* >= file_size; the rest is zeroed */
};

struct elf_image {
	struct elf_segment seg[ELF_MAX_SEGMENTS];
	unsigned nr_segments;
	uint32_t pvh_entry;  /* from the XEN_ELFNOTE_PHYS32_ENTRY note */
	uint64_t lowest;     /* lowest and highest physical byte loaded */
	uint64_t highest;
};

/* 0, or -1 with a reason like "no PVH entry note" in err. */
int elf_parse(const uint8_t *buf, size_t len, struct elf_image *img, char *err, size_t errlen);

#endif
