/* libFuzzer target: the ELF/PVH kernel parser on arbitrary files. */
#include <stddef.h>
#include <stdint.h>

#include "vmm/elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_image img;
	char err[256];
	if (elf_parse(data, size, &img, err, sizeof(err)) == 0) {
		/* Whatever it accepts must describe bytes inside the input. */
		for (unsigned i = 0; i < img.nr_segments; i++) {
			const struct elf_segment *s = &img.seg[i];
			if (s->file_offset > size || s->file_size > size - s->file_offset || s->file_size > s->mem_size)
				__builtin_trap();
		}
	}
	return 0;
}
