# ferry: top-level build. `make` builds the VMM, the guest kernel and the tests;
# `make test` and `make demo` also install what a fresh Debian 12 machine lacks.
BUILD    ?= build
CC       ?= gcc
HOST_CC  := $(CC)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= -O2 -g
HOST_CFLAGS := -std=gnu11 $(WARN) $(CFLAGS) -Iinclude -Isrc -D_GNU_SOURCE -pthread -MMD -MP
HOST_LIBS   := -lcjson -lseccomp -lncurses -lpthread -lm

.PHONY: all clean test demo bench deps linux-guest soak
all: ferry guest tests

include guest/guest.mk
-include src/ferry.mk
-include tests/tests.mk
-include fuzz/fuzz.mk

clean:
	rm -rf $(BUILD)

deps:
	scripts/install-deps.sh

# The Linux test guest (linux/README.md): build/linux/vmlinux, built from
# Debian's linux-source-6.1 and cached under $(FERRY_CACHE) (default
# /var/cache/ferry) by a hash of its inputs. Installs its build tools.
linux-guest:
	scripts/linux-guest.sh $(BUILD)/linux

# Every `ferry bench` target beside QEMU, as JSON, PNG charts (gnuplot) and
# $(BUILD)/bench/index.html (scripts/bench.sh; BENCH_TARGETS, BENCH_MSG=...
# pass options). Takes several minutes; the net target needs root.
bench:
	@scripts/install-deps.sh bench
	@$(MAKE) -s ferry guest
	@BUILD=$(BUILD) scripts/bench.sh

# Eleven VMs in one ferry for about 15 seconds (examples/demo.json),
# driven through the control socket, then an account of what they did
# together; their consoles go to $(BUILD)/demo/logs (scripts/demo.sh).
demo:
	@scripts/install-deps.sh demo
	@$(MAKE) -s ferry guest
	@BUILD=$(BUILD) scripts/demo.sh

# 30 VMs exchanging numbered messages (two pairs UDP datagrams) under a memory budget for
# SOAK_SECONDS (default 300) while one is removed and added every few
# seconds and another crashes and is restarted; then no leaked fd, thread
# or mapping (from /proc) and no message lost or duplicated between the VMs
# that stayed up (scripts/soak.sh; SOAK_VMS, SOAK_CHURN_S). Not in `make test`.
soak:
	@$(MAKE) -s ferry guest
	@FERRY_BIN=$(BUILD)/ferry FERRY_GUEST=$(BUILD)/guest/ferry-guest.elf scripts/soak.sh
