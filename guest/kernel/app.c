/* The app registry that APP() fills through the linker script. */
#include "app.h"
#include "kernel.h"
#include "kstring.h"

extern const struct app __apps_start[], __apps_end[];

const struct app *app_find(const char *name)
{
	for (const struct app *a = __apps_start; a < __apps_end; a++) {
		if (!strcmp(a->name, name))
			return a;
	}
	return NULL;
}

void app_print_list(void)
{
	kprintf("apps:\n");
	for (const struct app *a = __apps_start; a < __apps_end; a++)
		kprintf("  %-10s %s\n", a->name, a->description);
}
