#include "vmm/elf.h"

#include <elf.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ferry/pvh.h"

/* Note payloads are padded to 4 bytes in both ELF classes. */
#define NOTE_ALIGN(x) (((x) + 3u) & ~(uint64_t)3u)

static bool in_file(size_t len, uint64_t off, uint64_t size)
{
	return off <= len && size <= len - off;
}

/* Looks for the Xen PHYS32_ENTRY note in [off, off + size). 1 if found. */
static int find_pvh_note(const uint8_t *buf, uint64_t off, uint64_t size, uint32_t *entry)
{
	uint64_t end = off + size;
	while (end - off >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh; /* same layout as Elf32_Nhdr */
		memcpy(&nh, buf + off, sizeof(nh));
		uint64_t name_off = off + sizeof(nh);
		uint64_t desc_off = name_off + NOTE_ALIGN(nh.n_namesz);
		uint64_t next = desc_off + NOTE_ALIGN(nh.n_descsz);
		if (desc_off > end || next > end || next <= off)
			return 0;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
		    memcmp(buf + name_off, "Xen", 4) == 0) {
			if (nh.n_descsz == 4) {
				memcpy(entry, buf + desc_off, 4);
				return 1;
			}
			if (nh.n_descsz == 8) {
				uint64_t e;
				memcpy(&e, buf + desc_off, 8);
				if (e > UINT32_MAX)
					return -1;
				*entry = (uint32_t)e;
				return 1;
			}
			return -1;
		}
		off = next;
	}
	return 0;
}

int elf_parse(const uint8_t *buf, size_t len, struct elf_image *img, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	if (len < EI_NIDENT || memcmp(buf, ELFMAG, SELFMAG) != 0) {
		snprintf(err, errlen, "not an ELF file");
		return -1;
	}
	bool is64 = buf[EI_CLASS] == ELFCLASS64;
	if (!is64 && buf[EI_CLASS] != ELFCLASS32) {
		snprintf(err, errlen, "unknown ELF class %u", buf[EI_CLASS]);
		return -1;
	}
	if (buf[EI_DATA] != ELFDATA2LSB) {
		snprintf(err, errlen, "not a little-endian ELF file");
		return -1;
	}

	/* The fields we need sit at different offsets in the two classes. */
	uint64_t phoff;
	unsigned phnum, phentsize, machine, want_phentsize;
	if (len < (is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr))) {
		snprintf(err, errlen, "truncated ELF header");
		return -1;
	}
	if (is64) {
		Elf64_Ehdr eh;
		memcpy(&eh, buf, sizeof(eh));
		phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize, machine = eh.e_machine;
		want_phentsize = sizeof(Elf64_Phdr);
	} else {
		Elf32_Ehdr eh;
		memcpy(&eh, buf, sizeof(eh));
		phoff = eh.e_phoff, phnum = eh.e_phnum, phentsize = eh.e_phentsize, machine = eh.e_machine;
		want_phentsize = sizeof(Elf32_Phdr);
	}
	if (phentsize != want_phentsize && phnum) {
		snprintf(err, errlen, "unexpected program header size %u", phentsize);
		return -1;
	}
	if (machine != EM_X86_64 && machine != EM_386) {
		snprintf(err, errlen, "not an x86 ELF file (machine %u)", machine);
		return -1;
	}
	if (phnum == 0 || !in_file(len, phoff, (uint64_t)phnum * phentsize)) {
		snprintf(err, errlen, "program headers missing or outside the file");
		return -1;
	}

	bool have_entry = false;
	img->lowest = UINT64_MAX;
	for (unsigned i = 0; i < phnum; i++) {
		uint64_t type, offset, paddr, filesz, memsz;
		const uint8_t *p = buf + phoff + (uint64_t)i * phentsize;
		if (is64) {
			Elf64_Phdr ph;
			memcpy(&ph, p, sizeof(ph));
			type = ph.p_type, offset = ph.p_offset, paddr = ph.p_paddr;
			filesz = ph.p_filesz, memsz = ph.p_memsz;
		} else {
			Elf32_Phdr ph;
			memcpy(&ph, p, sizeof(ph));
			type = ph.p_type, offset = ph.p_offset, paddr = ph.p_paddr;
			filesz = ph.p_filesz, memsz = ph.p_memsz;
		}
		if (type == PT_NOTE) {
			if (!in_file(len, offset, filesz)) {
				snprintf(err, errlen, "note segment %u lies outside the file", i);
				return -1;
			}
			int found = find_pvh_note(buf, offset, filesz, &img->pvh_entry);
			if (found < 0) {
				snprintf(err, errlen, "malformed PVH entry note");
				return -1;
			}
			have_entry |= found == 1;
		} else if (type == PT_LOAD && memsz > 0) {
			if (!in_file(len, offset, filesz)) {
				snprintf(err, errlen, "segment %u lies outside the file", i);
				return -1;
			}
			if (filesz > memsz || paddr + memsz < paddr) {
				snprintf(err, errlen, "segment %u has inconsistent sizes", i);
				return -1;
			}
			if (img->nr_segments == ELF_MAX_SEGMENTS) {
				snprintf(err, errlen, "more than %d loadable segments", ELF_MAX_SEGMENTS);
				return -1;
			}
			img->seg[img->nr_segments++] = (struct elf_segment){ paddr, offset, filesz, memsz };
			if (paddr < img->lowest)
				img->lowest = paddr;
			if (paddr + memsz - 1 > img->highest)
				img->highest = paddr + memsz - 1;
		}
	}
	if (img->nr_segments == 0) {
		snprintf(err, errlen, "no loadable segments");
		return -1;
	}
	if (!have_entry) {
		snprintf(err, errlen, "no PVH entry note (ELF note \"Xen\" type %d, XEN_ELFNOTE_PHYS32_ENTRY); "
			 "ferry boots kernels by the PVH protocol", XEN_ELFNOTE_PHYS32_ENTRY);
		return -1;
	}
	return 0;
}
