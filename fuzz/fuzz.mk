# libFuzzer targets, one per parser or device handler, built with clang into
# build/fuzz/. The device targets (fuzz/fuzz_device.h) drive real devices in
# a test VM without KVM (tests/testvm.h).
#   make fuzz-build    builds them
#   make fuzz          runs each for FUZZ_SECONDS (default 60) on its seeds
#                      (fuzz/seeds/NAME) and a corpus kept in build/fuzz/corpus
#   make fuzz-smoke    (part of `make test`) runs each briefly: FUZZ_RUNS
#                      inputs or FUZZ_SMOKE_SECONDS, whichever comes first
# A crash leaves its input in build/fuzz/artifacts/; once fixed, that input
# goes into fuzz/seeds/NAME (or a unit test) so it is replayed every run.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 50000
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_TARGETS := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard fuzz/fuzz_*.c)))
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror -Iinclude -Isrc -Itests -D_GNU_SOURCE -pthread \
	-fsanitize=address,undefined -fno-sanitize-recover=all
# The whole VMM library and the test VM, compiled once with the fuzzing
# flags; each target links what it uses.
FUZZ_LIB_SRCS := $(filter-out src/cli/main.c,$(sort $(wildcard src/*/*.c))) tests/testvm.c
FUZZ_OBJS := $(patsubst %.c,$(BUILD)/fuzz/obj/%.o,$(FUZZ_LIB_SRCS))
FUZZ_LIB := $(BUILD)/fuzz/libferry-fuzz.a

.PHONY: fuzz fuzz-build fuzz-smoke
fuzz-build: $(FUZZ_TARGETS)

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz_device.h $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_LIB) -o $@ -lcjson -lseccomp -lncurses -lm

-include $(FUZZ_OBJS:.o=.d)

# $(1): extra libFuzzer options
define fuzz_each
	@mkdir -p $(BUILD)/fuzz/artifacts
	@for t in $(FUZZ_TARGETS); do \
		n=$$(basename $$t); mkdir -p $(BUILD)/fuzz/corpus/$$n; \
		seeds=fuzz/seeds/$$n; [ -d $$seeds ] || seeds=; \
		echo "fuzz $$n: $(2)"; \
		$$t $(1) -max_len=4096 -artifact_prefix=$(BUILD)/fuzz/artifacts/$$n- \
			$(BUILD)/fuzz/corpus/$$n $$seeds >$(BUILD)/fuzz/$$n.log 2>&1 \
			|| { tail -40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
		grep -h "^#[0-9]*.*DONE" $(BUILD)/fuzz/$$n.log | tail -1; \
	done
endef

fuzz: fuzz-build
	$(call fuzz_each,-max_total_time=$(FUZZ_SECONDS),$(FUZZ_SECONDS) s)

fuzz-smoke: fuzz-build
	$(call fuzz_each,-runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SMOKE_SECONDS),$(FUZZ_RUNS) runs or $(FUZZ_SMOKE_SECONDS) s)
