/* The run's figures in the Prometheus text exposition format (version
 * 0.0.4): host budgets and totals, and per VM its state, vCPUs, memory,
 * exits, messages, pages remapped, frames by path and doorbells, labelled
 * vm="NAME". Served by `ferry ctl metrics` and, with --metrics-addr, over
 * HTTP on loopback (docs/API.md, "metrics"). */
#ifndef FERRY_API_METRICS_H
#define FERRY_API_METRICS_H

struct vmm;

/* A new string (caller frees), or NULL if out of memory. Event loop or main
 * thread. */
char *metrics_text(struct vmm *vmm);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
