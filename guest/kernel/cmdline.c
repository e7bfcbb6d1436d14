/* Command line parsing; no hardware access. */
#include <ferry/debug_exit.h>
#include "cmdline.h"
#include "kernel.h"
#include "kstring.h"

#define CMDLINE_MAX_ARGS 64

static char raw[CMDLINE_MAX];
static char split[CMDLINE_MAX];
static struct {
	const char *key, *value;
} args[CMDLINE_MAX_ARGS];
static unsigned nargs;

void cmdline_parse(const char *s)
{
	char *p = split;

	strlcpy(raw, s ? s : "", sizeof(raw));
	strlcpy(split, raw, sizeof(split));
	nargs = 0;
	while (*p) {
		char *eq;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			*p++ = 0;
		if (!*p)
			break;
		if (nargs == CMDLINE_MAX_ARGS) {
			kprintf("cmdline: more than %d arguments, ignoring the rest\n", CMDLINE_MAX_ARGS);
			break;
		}
		args[nargs].key = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n')
			p++;
		if (*p)
			*p++ = 0;
		eq = strchr(args[nargs].key, '=');
		if (eq) {
			*eq = 0;
			args[nargs].value = eq + 1;
		} else {
			args[nargs].value = "";
		}
		nargs++;
	}
}

const char *cmdline_raw(void)
{
	return raw;
}

const char *cmdline_get(const char *key)
{
	for (unsigned i = nargs; i-- > 0;) {
		if (!strcmp(args[i].key, key))
			return args[i].value;
	}
	return NULL;
}

const char *cmdline_get_str(const char *key, const char *dflt)
{
	const char *v = cmdline_get(key);

	return v ? v : dflt;
}

bool parse_size(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v;
	unsigned shift = 0;

	if (!parse_u64(s, &end, &v))
		return false;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return false;
	*out = v << shift;
	return true;
}

__attribute__((noreturn)) static void bad_value(const char *key, const char *value, const char *what)
{
	kprintf("cmdline: %s=%s: expected %s\n", key, value, what);
	poweroff(FERRY_EXIT_BAD_ARGS);
}

uint64_t cmdline_get_u64(const char *key, uint64_t dflt)
{
	const char *v = cmdline_get(key);
	uint64_t n;

	if (!v)
		return dflt;
	if (!parse_size(v, &n))
		bad_value(key, v, "a number");
	return n;
}

bool cmdline_get_bool(const char *key, bool dflt)
{
	static const char *const yes[] = { "", "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };
	const char *v = cmdline_get(key);

	if (!v)
		return dflt;
	for (unsigned i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(v, yes[i]))
			return true;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(no); i++) {
		if (!strcmp(v, no[i]))
			return false;
	}
	bad_value(key, v, "a boolean");
}

const char *cmdline_vm_name(void)
{
	const char *v = cmdline_get("vm");

	return v && *v ? v : "(unnamed)";
}
