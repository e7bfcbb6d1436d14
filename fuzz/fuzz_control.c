/* libFuzzer target: control-socket requests (one JSON line each). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct control *ctl;
	char err[128];
	if (!ctl)
		ctl = control_create(NULL, NULL, err, sizeof(err));
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';
	free(control_handle(ctl, line));
	free(line);
	return 0;
}
