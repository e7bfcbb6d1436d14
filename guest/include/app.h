/* Apps: what the kernel runs once it is up, chosen with app=NAME. Each app
 * lives in its own file in guest/apps/ and registers itself with
 *     APP("name", "one-line description", function);
 * where function is int f(void) returning the power-off status (0 = success,
 * see include/ferry/debug_exit.h). Apps run under native_call() (native.h):
 * in ring 3, at native speed on hosts that emulate ring 0. The descriptors
 * are gathered by the linker between __apps_start and __apps_end. */
#ifndef GUEST_APP_H
#define GUEST_APP_H

#include <stdbool.h>

struct app {
	const char *name;
	const char *description;
	int (*main)(void);
	bool ring0;   /* run in ring 0, not under native_call() (native.h) */
};

#define APP_DEFINE(name, description, fn, ring0)                            \
	static const struct app app_##fn                                    \
	__attribute__((used, section(".apps." #fn), aligned(8))) = {        \
		name, description, fn, ring0                                \
	}
#define APP(name, description, fn) APP_DEFINE(name, description, fn, false)
/* For apps that must start in ring 0, such as one measuring it. */
#define APP_RING0(name, description, fn) APP_DEFINE(name, description, fn, true)

const struct app *app_find(const char *name);
void app_print_list(void);

#endif
