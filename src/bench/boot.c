#include "bench/bench.h"
#include "cli/cli.h"

int bench_boot(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return usage_error("bench boot", "not built yet");
}
