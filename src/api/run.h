/* A whole run, put together: the VMM, the services the options ask for
 * (control socket, metrics endpoint) and the summary. `ferry run` parses
 * its options into this and calls it. */
#ifndef FERRY_API_RUN_H
#define FERRY_API_RUN_H

#include <stdbool.h>

struct ferry_config;

struct run_options {
	const char *log_dir;        /* console logs */
	bool console;               /* consoles to the terminal too */
	double timeout_s;           /* 0: none */
	const char *summary_path;   /* NULL: no summary file */
	const char *control_path;   /* NULL: no control socket */
	const char *metrics_addr;   /* NULL: no metrics endpoint; else "127.0.0.1:PORT" */
};

/* Runs every VM of cfg until all have stopped. Returns the process's exit
 * status: 0 if every VM still in the run powered off with status 0. */
int api_run(const struct ferry_config *cfg, const struct run_options *o);

#endif
