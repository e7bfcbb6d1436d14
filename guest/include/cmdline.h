/* Kernel command line: "app=NAME key=value flag ...", split at spaces. A bare
 * key reads as an empty string and as boolean true. When a key appears more
 * than once the last one wins (ferry appends vm=NAME). */
#ifndef GUEST_CMDLINE_H
#define GUEST_CMDLINE_H

#include <stdbool.h>
#include <stdint.h>

#define CMDLINE_MAX 4096

/* Copies and splits s (NULL: empty command line). */
void cmdline_parse(const char *s);
/* The command line as given. */
const char *cmdline_raw(void);

/* The value of key, "" for a bare key, NULL if absent. */
const char *cmdline_get(const char *key);
const char *cmdline_get_str(const char *key, const char *dflt);
/* Decimal or 0x-hex, with an optional K, M or G suffix (powers of 1024). A
 * malformed value powers off with FERRY_EXIT_BAD_ARGS. */
uint64_t cmdline_get_u64(const char *key, uint64_t dflt);
/* 1/yes/true/on or 0/no/false/off; a bare key is true. */
bool cmdline_get_bool(const char *key, bool dflt);
/* Parses a number with a K/M/G suffix as cmdline_get_u64 does. */
bool parse_size(const char *s, uint64_t *out);

/* vm=NAME as the VMM appends it, or "(unnamed)". */
const char *cmdline_vm_name(void);

#endif
