/* chatter: prints lines=N (default 100) numbered console lines and exits 0;
 * for tests of the console (line handling, the log's size cap) and as a
 * guest that floods its console. */
#include <ferry/debug_exit.h>
#include "app.h"
#include "cmdline.h"
#include "kernel.h"

static int chatter_main(void)
{
	uint64_t lines = cmdline_get_u64("lines", 100);

	for (uint64_t i = 0; i < lines; i++)
		kprintf("chatter: line %lu of %lu, padded to make the console work a little harder\n", i + 1, lines);
	return FERRY_EXIT_OK;
}

APP("chatter", "print lines=N numbered console lines (console tests, console floods)", chatter_main);
