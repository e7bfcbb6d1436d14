/* The run summary: one JSON document with, per VM, how it ended, how fast
 * it booted, and every device's counters. */
#ifndef FERRY_SUMMARY_H
#define FERRY_SUMMARY_H

#include <stdbool.h>

struct vm;
struct vm_config;
struct cJSON;

/* One VM's entry. cfg is used for VMs that could not be created (vm NULL). */
struct cJSON *summary_vm(struct vm *vm, const struct vm_config *cfg, const char *create_error);
/* Writes the run's summary document (vmm_report: {"vms": [...], "memory":
 * {...}, "cpu": {...}, "networks": [...]}) to path; -1 with errno on failure. */
int summary_write(const char *path, const struct cJSON *doc);

#endif
