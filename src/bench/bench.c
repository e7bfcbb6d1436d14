/* ferry bench: dispatch to one benchmark target. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "cli/cli.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} targets[] = {
	{ "boot", bench_boot, "boot N VMs one after another; boot time and memory overhead, vs QEMU" },
	{ "msg", bench_msg, "message queues between two VMs: copy, remap, adaptive; throughput and latency" },
	{ "balloon", bench_balloon, "inflate and deflate 1 GiB in a 2 GiB VM; host memory release; vs QEMU" },
	{ "net", bench_net, "UDP throughput and ping between two VMs: zero copy, one copy, TAP bridge; vs QEMU" },
};

int cmd_bench(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		FILE *out = argc < 2 ? stderr : stdout;
		fprintf(out, "usage: ferry bench TARGET [OPTIONS]\n\ntargets:\n");
		for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
			fprintf(out, "  %-8s %s\n", targets[i].name, targets[i].summary);
		fprintf(out, "\n'ferry bench TARGET --help' describes a target's options.\n");
		return argc < 2 ? EXIT_USAGE : 0;
	}
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (!strcmp(argv[1], targets[i].name))
			return targets[i].fn(argc - 1, argv + 1);
	return usage_error("bench", "unknown target '%s'", argv[1]);
}
