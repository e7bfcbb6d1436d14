/* ferry ctl: talks to a running ferry through its control socket. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/control_client.h"
#include "cli/cli.h"
#include "vmm/config.h"

static const char ctl_help[] =
	"usage: ferry ctl [--socket PATH] [--json] COMMAND [ARGS]\n"
	"\n"
	"Sends one command to a ferry started with 'ferry run --control PATH' and\n"
	"prints its answer as text, or as the JSON ferry sent with --json (see\n"
	"docs/API.md). Exits 0 if the command succeeded, 1 if ferry refused it (the\n"
	"error's code and message are printed), 2 for bad usage. The socket defaults\n"
	"to $FERRY_SOCKET.\n"
	"\n"
	"commands:\n"
	"  list                      every VM: name, id, state\n"
	"  status [VM]               host budgets and totals, and every VM's state, vCPUs,\n"
	"                            memory, messages, frames; one VM: every counter\n"
	"  pause VM, resume VM       hold VM's vCPUs outside the guest, and let them run again\n"
	"  stop VM | stop --all      stop one VM, or all (ferry then exits)\n"
	"  add FILE.json             add the VMs of FILE (a VM object, or {\"vms\": [...],\n"
	"                            \"links\": [...]}) while the others run\n"
	"  remove VM                 take VM out of the run: its memory, devices, message\n"
	"                            endpoint, link end and network ports are released\n"
	"  balloon VM MIB            ask VM's balloon to hold MIB MiB (0 deflates it)\n"
	"  budget MIB                set the host memory budget (0 or off: no memory scheduler)\n"
	"  cpu-reserve VM COUNT      ask VM to park COUNT of its vCPUs (0 releases)\n"
	"  networks                  every network: ports, address table, zero-copy channels, TAP\n"
	"  net-unbind VM             end VM's zero-copy bindings (its traffic goes back to copies)\n"
	"  links                     static shared-memory links: peers, doorbells\n"
	"  metrics                   every figure in Prometheus text format\n"
	"  events [--replay] [--count N] [--timeout SECONDS]\n"
	"                            print events as they happen (VM started, stopped, crashed,\n"
	"                            restarted, given up on,\n"
	"                            added, removed; balloon target reached; cross-talk detected\n"
	"                            and undone); --replay first prints those ferry still keeps\n"
	"  help                      the commands as ferry lists them\n"
	"  raw JSON                  send a request as written\n";

/* --- text output ------------------------------------------------------------- */

static double num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static const cJSON *obj(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

static void print_list(const cJSON *ans)
{
	const cJSON *v;
	printf("%-20s %4s  %-14s %s\n", "NAME", "ID", "STATE", "");
	cJSON_ArrayForEach(v, obj(ans, "vms"))
		printf("%-20s %4.0f  %-14s %s\n", str(v, "name"), num(v, "id"), str(v, "state"),
		       cJSON_IsTrue(obj(v, "added")) ? "added" : "");
}

static void print_host(const cJSON *h)
{
	if (!h)
		return;
	printf("host: %.0f VMs (%.0f running, %.0f added, %.0f removed), up %.1f s\n", num(h, "vms"),
	       num(h, "vms_running"), num(h, "vms_added"), num(h, "vms_removed"), num(h, "uptime_s"));
	printf("memory: %.0f MiB configured, %.0f MiB target, %.1f MiB resident; budget ", num(h, "memory_mib"),
	       num(h, "target_mib"), num(h, "resident_mib"));
	if (cJSON_IsNumber(obj(h, "memory_budget_mib")))
		printf("%.0f MiB\n", num(h, "memory_budget_mib"));
	else
		printf("none\n");
	printf("vCPUs: %.0f running VMs' vCPUs, %.0f parked, on %.0f host CPUs; budget ", num(h, "vcpus"),
	       num(h, "vcpus_parked"), num(h, "host_cpus"));
	if (cJSON_IsNumber(obj(h, "vcpu_budget")))
		printf("%.0f\n", num(h, "vcpu_budget"));
	else
		printf("none\n");
}

/* Every number and string under o, one "a.b.c = value" line each. */
static void flatten(const cJSON *o, const char *prefix)
{
	const cJSON *v;
	int i = 0;
	cJSON_ArrayForEach(v, o) {
		char key[256];
		if (cJSON_IsArray(o))
			snprintf(key, sizeof(key), "%s[%d]", prefix, i++);
		else
			snprintf(key, sizeof(key), "%s%s%s", prefix, prefix[0] ? "." : "", v->string);
		if (cJSON_IsObject(v) || cJSON_IsArray(v))
			flatten(v, key);
		else if (cJSON_IsNumber(v))
			printf("  %-50s %.15g\n", key, v->valuedouble);
		else if (cJSON_IsString(v))
			printf("  %-50s %s\n", key, v->valuestring);
		else if (cJSON_IsBool(v))
			printf("  %-50s %s\n", key, cJSON_IsTrue(v) ? "true" : "false");
		else
			printf("  %-50s null\n", key);
	}
}

static void print_status(const cJSON *ans, bool one)
{
	print_host(obj(ans, "host"));
	const cJSON *v;
	if (one) {
		cJSON_ArrayForEach(v, obj(ans, "vms")) {
			printf("%s (id %.0f): %s\n", str(v, "name"), num(v, "id"), str(v, "state"));
			flatten(v, "");
		}
		return;
	}
	printf("%-16s %-12s %6s %8s %8s %9s %10s %10s %10s %10s\n", "NAME", "STATE", "VCPUS", "MEM", "TARGET",
	       "RESIDENT", "EXITS", "MSGS", "REMAPPED", "FRAMES");
	cJSON_ArrayForEach(v, obj(ans, "vms")) {
		const cJSON *t = obj(v, "totals"), *m = obj(t, "msgq"), *n = obj(t, "net");
		char vcpus[16];
		snprintf(vcpus, sizeof(vcpus), "%.0f/%.0f", num(t, "vcpus") - num(t, "vcpus_parked"), num(t, "vcpus"));
		printf("%-16s %-12s %6s %7.0fM %7.0fM %8.1fM %10.0f %10.0f %10.0f %10.0f\n", str(v, "name"),
		       str(v, "state"), vcpus, num(v, "memory_mib"), num(t, "target_mib"), num(v, "resident_mib"),
		       num(t, "exits"), num(m, "sent") + num(m, "received"), num(m, "pages_remapped"),
		       num(n, "frames_tx"));
	}
}

static void print_networks(const cJSON *ans)
{
	const cJSON *n, *p, *c, *a;
	cJSON_ArrayForEach(n, obj(ans, "networks")) {
		printf("network %s: MTU %.0f, zero copy %s, unknown unicast: %s\n", str(n, "name"), num(n, "mtu"),
		       cJSON_IsTrue(obj(n, "zero_copy")) ? "offered" : "off", str(n, "unknown_unicast"));
		printf("  %-16s %-18s %-4s %-9s %10s %10s %10s %10s %9s\n", "PORT", "MAC", "UP", "ZC DRIVER", "TX", "RX",
		       "ZERO COPY", "ONE COPY", "DROPPED");
		cJSON_ArrayForEach(p, obj(n, "ports")) {
			printf("  %-16s %-18s %-4s %-9s %10.0f %10.0f %10.0f %10.0f %9.0f\n", str(p, "vm"), str(p, "mac"),
			       cJSON_IsTrue(obj(p, "up")) ? "yes" : "no", cJSON_IsTrue(obj(p, "zero_copy")) ? "yes" : "no",
			       num(p, "frames_tx"), num(p, "frames_rx"), num(p, "frames_zero_copy"),
			       num(p, "frames_one_copy"), num(obj(p, "dropped"), "total"));
			cJSON_ArrayForEach(c, obj(p, "channels"))
				printf("    channel %.0f: %s with %s\n", num(c, "channel"), str(c, "state"), str(c, "peer"));
		}
		const cJSON *tap = obj(n, "tap");
		if (tap)
			printf("  TAP %s: %s, %.0f frames in, %.0f out\n", str(tap, "name"),
			       cJSON_IsTrue(obj(tap, "up")) ? "up" : "down", num(tap, "frames_tx"), num(tap, "frames_rx"));
		printf("  address table:\n");
		cJSON_ArrayForEach(a, obj(n, "address_table"))
			printf("    %-18s -> %s\n", str(a, "mac"), str(a, "port"));
	}
	if (!cJSON_GetArraySize(obj(ans, "networks")))
		printf("no networks\n");
}

static void print_links(const cJSON *ans)
{
	const cJSON *l, *p;
	cJSON_ArrayForEach(l, obj(ans, "links")) {
		printf("link %.0f: %.0f MiB\n", num(l, "index"), num(l, "size_mib"));
		cJSON_ArrayForEach(p, obj(l, "peers"))
			printf("  peer %.0f: %-16s %-8s doorbells sent %.0f, received %.0f, rejected %.0f\n", num(p, "peer"),
			       cJSON_IsString(obj(p, "vm")) ? str(p, "vm") : "-",
			       cJSON_IsTrue(obj(p, "removed")) ? "removed" : cJSON_IsTrue(obj(p, "up")) ? "up" : "down",
			       num(p, "doorbells_sent"), num(p, "doorbells_received"), num(p, "doorbells_rejected"));
	}
	if (!cJSON_GetArraySize(obj(ans, "links")))
		printf("no links\n");
}

static void print_event(const cJSON *e)
{
	const char *t = str(e, "time");
	printf("%s %-22s %s", strlen(t) > 11 ? t + 11 : t, str(e, "event"), str(e, "vm"));
	const cJSON *f;
	cJSON_ArrayForEach(f, e) {
		if (!strcmp(f->string, "event") || !strcmp(f->string, "time") || !strcmp(f->string, "vm"))
			continue;
		if (cJSON_IsString(f))
			printf(" %s=%s", f->string, f->valuestring);
		else if (cJSON_IsNumber(f))
			printf(" %s=%.15g", f->string, f->valuedouble);
		else if (cJSON_IsBool(f))
			printf(" %s=%s", f->string, cJSON_IsTrue(f) ? "true" : "false");
	}
	printf("\n");
}

static void print_answer(const char *cmd, const cJSON *req, const cJSON *ans)
{
	if (!strcmp(cmd, "list")) {
		print_list(ans);
	} else if (!strcmp(cmd, "status")) {
		print_status(ans, obj(req, "vm") != NULL);
	} else if (!strcmp(cmd, "networks")) {
		print_networks(ans);
	} else if (!strcmp(cmd, "links")) {
		print_links(ans);
	} else if (!strcmp(cmd, "metrics")) {
		fputs(str(ans, "text"), stdout);
	} else if (!strcmp(cmd, "help")) {
		const cJSON *c;
		cJSON_ArrayForEach(c, obj(ans, "commands"))
			printf("  %-12s %-22s %s\n", str(c, "cmd"), str(c, "args"), str(c, "help"));
	} else if (!strcmp(cmd, "add")) {
		const cJSON *n;
		printf("added:");
		cJSON_ArrayForEach(n, obj(ans, "added"))
			printf(" %s", n->valuestring);
		printf("\n");
	} else if (!strcmp(cmd, "remove")) {
		const cJSON *s = obj(ans, "summary");
		printf("removed %s (%s, exit code %.0f)\n", str(ans, "removed"), str(s, "exit_reason"), num(s, "exit_code"));
	} else if (!strcmp(cmd, "budget")) {
		if (num(ans, "budget_mib"))
			printf("memory budget: %.0f MiB\n", num(ans, "budget_mib"));
		else
			printf("memory budget: none (balloon targets are set by hand)\n");
	} else if (!strcmp(cmd, "stop")) {
		printf("stopped %.0f VM%s\n", num(ans, "stopped"), num(ans, "stopped") == 1 ? "" : "s");
	} else if (!strcmp(cmd, "net-unbind")) {
		printf("%.0f channel%s unbound\n", num(ans, "unbound"), num(ans, "unbound") == 1 ? "" : "s");
	} else if (!strcmp(cmd, "balloon")) {
		printf("%s: balloon target %.0f MiB\n", str(req, "vm"), num(ans, "target_mib"));
	} else if (!strcmp(cmd, "cpu-reserve")) {
		printf("%s: %.0f vCPU%s to park\n", str(req, "vm"), num(ans, "count"), num(ans, "count") == 1 ? "" : "s");
	} else if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) {
		printf("%s: %s\n", str(req, "vm"), str(ans, "state"));
	} else {
		char *s = cJSON_Print(ans);
		printf("%s\n", s ? s : "");
		free(s);
	}
}

/* --- requests ------------------------------------------------------------------ */

/* The add request: the file's JSON as "config", its directory as the
 * base for the relative paths in it. */
static cJSON *add_request(const char *file)
{
	char err[512];
	char *text = config_read_file(file, err, sizeof(err));
	if (!text) {
		fprintf(stderr, "ferry ctl: add: %s\n", err);
		return NULL;
	}
	cJSON *cfg = cJSON_Parse(text);
	free(text);
	if (!cfg) {
		fprintf(stderr, "ferry ctl: add: %s is not valid JSON\n", file);
		return NULL;
	}
	char real[PATH_MAX];
	if (!realpath(file, real)) {
		fprintf(stderr, "ferry ctl: add: %s: %s\n", file, strerror(errno));
		cJSON_Delete(cfg);
		return NULL;
	}
	cJSON *req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", "add");
	cJSON_AddItemToObject(req, "config", cfg);
	cJSON_AddStringToObject(req, "base_dir", dirname(real));
	return req;
}

/* Prints events as they come; 0 after count events or the timeout. */
static int follow_events(int fd, bool json, long count, double timeout)
{
	for (long seen = 0; count <= 0 || seen < count;) {
		bool timed_out;
		cJSON *e = control_read(fd, timeout > 0 ? timeout : -1, &timed_out);
		if (!e) {
			if (timed_out)
				return 0;
			fprintf(stderr, "ferry ctl: events: the connection ended\n");
			return 1;
		}
		if (json) {
			char *s = cJSON_PrintUnformatted(e);
			printf("%s\n", s ? s : "");
			free(s);
		} else {
			print_event(e);
		}
		fflush(stdout);
		cJSON_Delete(e);
		seen++;
	}
	return 0;
}

int cmd_ctl(int argc, char **argv)
{
	const char *sock = getenv("FERRY_SOCKET");
	bool json = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(ctl_help, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--socket") && i + 1 < argc)
			sock = argv[++i];
		else if (!strcmp(argv[i], "--json"))
			json = true;
		else
			return usage_error("ctl", "unknown option '%s'", argv[i]);
	}
	if (!sock || !sock[0])
		return usage_error("ctl", "--socket PATH is required (or FERRY_SOCKET)");
	if (i >= argc)
		return usage_error("ctl", "no command (see 'ferry ctl --help')");
	const char *cmd = argv[i];
	char **args = argv + i + 1;
	int rest = argc - i - 1;
	cJSON *req = NULL;
	uint64_t n;
	long ev_count = 0;
	double ev_timeout = 0;
	bool replay = false;
	if ((!strcmp(cmd, "list") || !strcmp(cmd, "networks") || !strcmp(cmd, "links") || !strcmp(cmd, "metrics") ||
	     !strcmp(cmd, "help")) &&
	    rest == 0) {
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", cmd);
	} else if (!strcmp(cmd, "status") && rest <= 1) {
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", cmd);
		if (rest)
			cJSON_AddStringToObject(req, "vm", args[0]);
	} else if ((!strcmp(cmd, "pause") || !strcmp(cmd, "resume") || !strcmp(cmd, "remove") ||
		    !strcmp(cmd, "net-unbind") || !strcmp(cmd, "stop")) &&
		   rest == 1) {
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", cmd);
		if (!strcmp(cmd, "stop") && !strcmp(args[0], "--all"))
			cJSON_AddTrueToObject(req, "all");
		else
			cJSON_AddStringToObject(req, "vm", args[0]);
	} else if (!strcmp(cmd, "add") && rest == 1) {
		req = add_request(args[0]);
		if (!req)
			return 1;
	} else if (!strcmp(cmd, "balloon") && rest == 2) {
		if (!parse_size_mib(args[1], &n))
			return usage_error("ctl", "balloon: expected a size like 512 or 1G, got '%s'", args[1]);
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", "balloon");
		cJSON_AddStringToObject(req, "vm", args[0]);
		cJSON_AddNumberToObject(req, "target_mib", (double)n);
	} else if (!strcmp(cmd, "budget") && rest == 1) {
		if (!strcmp(args[0], "off"))
			n = 0;
		else if (!parse_size_mib(args[0], &n))
			return usage_error("ctl", "budget: expected a size like 700 or 2G, or off, got '%s'", args[0]);
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", "budget");
		cJSON_AddNumberToObject(req, "memory_mib", (double)n);
	} else if (!strcmp(cmd, "cpu-reserve") && rest == 2) {
		if (!parse_uint(args[1], 0, 4096, &n))
			return usage_error("ctl", "cpu-reserve: expected a count, got '%s'", args[1]);
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", "cpu-reserve");
		cJSON_AddStringToObject(req, "vm", args[0]);
		cJSON_AddNumberToObject(req, "count", (double)n);
	} else if (!strcmp(cmd, "events")) {
		for (int k = 0; k < rest; k++) {
			if (!strcmp(args[k], "--replay")) {
				replay = true;
			} else if (!strcmp(args[k], "--count") && k + 1 < rest) {
				if (!parse_uint(args[++k], 1, 1000000000, &n))
					return usage_error("ctl", "events --count: expected a positive number, got '%s'", args[k]);
				ev_count = (long)n;
			} else if (!strcmp(args[k], "--timeout") && k + 1 < rest) {
				if (!parse_seconds(args[++k], &ev_timeout))
					return usage_error("ctl", "events --timeout: expected seconds, got '%s'", args[k]);
			} else {
				return usage_error("ctl", "events: unknown argument '%s'", args[k]);
			}
		}
		req = cJSON_CreateObject();
		cJSON_AddStringToObject(req, "cmd", "events");
		if (replay)
			cJSON_AddTrueToObject(req, "replay");
	} else if (!strcmp(cmd, "raw") && rest == 1) {
		req = cJSON_Parse(args[0]);
		if (!req)
			return usage_error("ctl", "raw: not valid JSON: %s", args[0]);
	} else {
		return usage_error("ctl", "unknown command or wrong arguments: '%s' (see 'ferry ctl --help')", cmd);
	}
	char *line = cJSON_PrintUnformatted(req);
	int fd = line ? control_connect(sock) : -1;
	if (fd < 0) {
		fprintf(stderr, "ferry ctl: cannot connect to %s: %s\n", sock, strerror(errno));
		free(line);
		cJSON_Delete(req);
		return 1;
	}
	cJSON *ans = control_call(fd, line);
	free(line);
	if (!ans) {
		fprintf(stderr, "ferry ctl: no answer from %s\n", sock);
		close(fd);
		cJSON_Delete(req);
		return 1;
	}
	bool ok = cJSON_IsTrue(cJSON_GetObjectItem(ans, "ok"));
	int ret = ok ? 0 : 1;
	if (json) {
		char *pretty = cJSON_Print(ans);
		printf("%s\n", pretty ? pretty : "");
		free(pretty);
	} else if (!ok) {
		fprintf(stderr, "ferry ctl: %s: %s (%s)\n", cmd, str(ans, "error"), str(ans, "code"));
	} else if (strcmp(cmd, "events")) {
		print_answer(cJSON_IsString(obj(req, "cmd")) ? obj(req, "cmd")->valuestring : cmd, req, ans);
	}
	fflush(stdout);
	if (ok && !strcmp(cmd, "events"))
		ret = follow_events(fd, json, ev_count, ev_timeout);
	close(fd);
	cJSON_Delete(ans);
	cJSON_Delete(req);
	return ret;
}
