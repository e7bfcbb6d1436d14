/* ferry: a virtual machine monitor for many small VMs on one KVM host. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} commands[] = {
	{ "run", cmd_run, "run VMs from a JSON config, or one VM from options" },
	{ "bench", cmd_bench, "measure boot time, message passing, ballooning" },
	{ "ctl", cmd_ctl, "send a command to a running ferry (ferry run --control)" },
	{ "top", cmd_top, "watch a running ferry live: VMs, memory, vCPUs, messages, frames" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: ferry COMMAND [OPTIONS]\n\n"
		     "ferry runs several small VMs in one process on Linux KVM.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "  %-8s %s\n  %-8s %s\n\n", "help", "show this text", "version", "print the version");
	fprintf(out, "'ferry COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
	/* A reader that went away (a control client, a closed terminal pipe)
	 * is an error for that write, never the end of every VM. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("ferry %s\n", FERRY_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(cmd, commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "ferry: unknown command '%s' (see 'ferry --help')\n", cmd);
	return EXIT_USAGE;
}
