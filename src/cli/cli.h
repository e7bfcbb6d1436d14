/* Subcommands and the small parsing helpers they share. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdbool.h>
#include <stdint.h>

#define FERRY_VERSION "0.1.0"

/* Exit status for bad usage or bad configuration. */
#define EXIT_USAGE 2

int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_top(int argc, char **argv);

/* "64", "64M", "64MiB", "2G", "2GiB" -> MiB. false if malformed or not whole MiB. */
bool parse_size_mib(const char *s, uint64_t *mib);
/* Unsigned integer in [min, max]. */
bool parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Positive decimal seconds. */
bool parse_seconds(const char *s, double *out);

/* Prints "ferry CMD: message" to stderr and returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
