#include "api/run.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/control.h"
#include "api/metrics_http.h"
#include "api/summary.h"
#include "vmm/log.h"
#include "vmm/sandbox.h"
#include "vmm/vmm.h"

int api_run(const struct ferry_config *cfg, const struct run_options *o)
{
	struct vmm vmm;
	char err[1024];
	if (vmm_init(&vmm, err, sizeof(err)) < 0) {
		fprintf(stderr, "ferry run: %s\n", err);
		vmm_destroy(&vmm);
		return 1;
	}
	struct vmm_options vo = {
		.log_dir = o->log_dir, .console = o->console, .timeout_s = o->timeout_s, .report_vm = summary_vm,
	};
	if (o->control_path)
		vo.services[vo.nr_services++] = control_service(o->control_path);
	if (o->metrics_addr)
		vo.services[vo.nr_services++] = metrics_http_service(o->metrics_addr);
	if (vmm_start(&vmm, cfg, &vo, err, sizeof(err)) < 0) {
		fprintf(stderr, "ferry run: %s\n", err);
		vmm_destroy(&vmm);
		return 1;
	}
	/* Everything is open and running: from here the main thread only
	 * waits, reports and tears down; with a control socket it also builds
	 * the VMs `add` asks for (files, memory, threads), a wider list, and
	 * so it does if a VM may be restarted after a failure. */
	bool builds = o->control_path != NULL;
	for (unsigned i = 0; i < cfg->nr_vms; i++)
		builds |= cfg->vms[i].restart == RESTART_ON_FAILURE;
	if (sandbox_thread(builds ? SANDBOX_BUILDER : SANDBOX_MAIN, "main", err, sizeof(err)) < 0)
		log_error(NULL, "%s", err);
	vmm_run(&vmm);
	bool all_ok;
	cJSON *doc = vmm_report(&vmm, &all_ok);
	if (o->summary_path && (!doc || summary_write(o->summary_path, doc) < 0)) {
		log_error(NULL, "cannot write summary %s: %s", o->summary_path, strerror(errno));
		all_ok = false;
	}
	cJSON_Delete(doc);
	vmm_destroy(&vmm);
	return all_ok ? 0 : 1;
}
