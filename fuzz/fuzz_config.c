/* libFuzzer target: the JSON config parser on arbitrary text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/config.h"
#include "vmm/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct ferry_config cfg;
	char err[1024];
	if (config_parse(text, "fuzz.json", "/", &cfg, err, sizeof(err)) == 0)
		config_free(&cfg);
	free(text);
	return 0;
}
