/* Apps: what the kernel runs once it is up, chosen with app=NAME. Each app
 * lives in its own file in guest/apps/ and registers itself with
 *     APP("name", "one-line description", function);
 * where function is int f(void) returning the power-off status (0 = success,
 * see include/ferry/debug_exit.h). The descriptors are gathered by the linker
 * between __apps_start and __apps_end. */
#ifndef GUEST_APP_H
#define GUEST_APP_H

struct app {
	const char *name;
	const char *description;
	int (*main)(void);
};

#define APP(name, description, fn)                                          \
	static const struct app app_##fn                                    \
	__attribute__((used, section(".apps." #fn), aligned(8))) = {        \
		name, description, fn                                       \
	}

const struct app *app_find(const char *name);
void app_print_list(void);

#endif
