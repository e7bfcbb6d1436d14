/* ferry ctl: talks to a running ferry through its control socket. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/control_client.h"
#include "cli/cli.h"

static const char ctl_help[] =
	"usage: ferry ctl --socket PATH COMMAND\n"
	"\n"
	"Sends one command to a ferry started with 'ferry run --control PATH' and\n"
	"prints its answer (JSON). Exits 0 if the command succeeded.\n"
	"\n"
	"commands:\n"
	"  status                    every VM: state, memory, balloon, cpu-reserve\n"
	"  balloon VM MIB            ask VM's balloon to hold MIB MiB (0 deflates it)\n"
	"  cpu-reserve VM COUNT      ask VM to park COUNT of its vCPUs (0 releases)\n"
	"  stop VM                   stop VM\n"
	"  pause VM, resume VM       hold VM's vCPUs outside the guest, and let them run again\n"
	"  networks                  every network: ports, zero-copy channels, TAP, counters\n"
	"  net-unbind VM             end VM's zero-copy bindings (its traffic goes back to copies)\n"
	"  raw JSON                  send a request as written (see docs/API.md)\n";

int cmd_ctl(int argc, char **argv)
{
	const char *sock = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(ctl_help, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[++i];
		else
			return usage_error("ctl", "unknown option '%s'", argv[i]);
	}
	if (!sock)
		return usage_error("ctl", "--socket PATH is required");
	if (i >= argc)
		return usage_error("ctl", "no command");
	const char *cmd = argv[i];
	int rest = argc - i - 1;
	cJSON *req = cJSON_CreateObject();
	uint64_t n;
	if (!strcmp(cmd, "status") && rest == 0) {
		cJSON_AddStringToObject(req, "cmd", "status");
	} else if (!strcmp(cmd, "balloon") && rest == 2) {
		if (!parse_size_mib(argv[i + 2], &n))
			return usage_error("ctl", "balloon: expected a size like 512 or 1G, got '%s'", argv[i + 2]);
		cJSON_AddStringToObject(req, "cmd", "balloon");
		cJSON_AddStringToObject(req, "vm", argv[i + 1]);
		cJSON_AddNumberToObject(req, "target_mib", (double)n);
	} else if (!strcmp(cmd, "cpu-reserve") && rest == 2) {
		if (!parse_uint(argv[i + 2], 0, 4096, &n))
			return usage_error("ctl", "cpu-reserve: expected a count, got '%s'", argv[i + 2]);
		cJSON_AddStringToObject(req, "cmd", "cpu-reserve");
		cJSON_AddStringToObject(req, "vm", argv[i + 1]);
		cJSON_AddNumberToObject(req, "count", (double)n);
	} else if ((!strcmp(cmd, "stop") || !strcmp(cmd, "net-unbind") || !strcmp(cmd, "pause") ||
		    !strcmp(cmd, "resume")) &&
		   rest == 1) {
		cJSON_AddStringToObject(req, "cmd", cmd);
		cJSON_AddStringToObject(req, "vm", argv[i + 1]);
	} else if (!strcmp(cmd, "networks") && rest == 0) {
		cJSON_AddStringToObject(req, "cmd", "networks");
	} else if (!strcmp(cmd, "raw") && rest == 1) {
		cJSON_Delete(req);
		req = cJSON_Parse(argv[i + 1]);
		if (!req)
			return usage_error("ctl", "raw: not valid JSON: %s", argv[i + 1]);
	} else {
		cJSON_Delete(req);
		return usage_error("ctl", "unknown command or wrong arguments: '%s'", cmd);
	}
	char *line = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);

	int fd = control_connect(sock);
	if (fd < 0) {
		fprintf(stderr, "ferry ctl: cannot connect to %s: %s\n", sock, strerror(errno));
		free(line);
		return 1;
	}
	cJSON *ans = control_call(fd, line);
	close(fd);
	free(line);
	if (!ans) {
		fprintf(stderr, "ferry ctl: no answer from %s\n", sock);
		return 1;
	}
	char *pretty = cJSON_Print(ans);
	printf("%s\n", pretty);
	free(pretty);
	bool ok = cJSON_IsTrue(cJSON_GetObjectItem(ans, "ok"));
	cJSON_Delete(ans);
	return ok ? 0 : 1;
}
