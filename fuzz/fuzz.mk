# libFuzzer targets, one per parser or device handler, built with clang into
# build/fuzz/. `make fuzz` builds them; FUZZ_RUNS sets how long `make
# fuzz-smoke` (part of `make test`) runs each.
FUZZ_CC ?= clang
FUZZ_RUNS ?= 50000
FUZZ_TARGETS := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard fuzz/fuzz_*.c)))
FUZZ_FLAGS := -std=gnu11 -g -O1 -Iinclude -Isrc -D_GNU_SOURCE -pthread \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
# The library sources the targets need, compiled with the fuzzing flags.
FUZZ_LIB_SRCS := src/vmm/elf.c src/vmm/config.c src/vmm/log.c src/vmm/memory.c \
	src/devices/virtqueue.c src/devices/device.c
# The control target needs the whole VMM library (it links against VM code
# it never reaches with zero VMs): built from libferry's sources.
FUZZ_CONTROL_SRCS := $(filter-out src/cli/main.c,$(sort $(wildcard src/*/*.c)))

.PHONY: fuzz fuzz-smoke
fuzz: $(FUZZ_TARGETS)

$(BUILD)/fuzz/fuzz_control: fuzz/fuzz_control.c $(FUZZ_CONTROL_SRCS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $^ -o $@ -lcjson -lseccomp -lncurses -lm

$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_LIB_SRCS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $^ -o $@ -lcjson -lm

fuzz-smoke: fuzz
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(BUILD)/fuzz/corpus/$$(basename $$t); \
		echo "fuzz $$(basename $$t): $(FUZZ_RUNS) runs"; \
		seeds=fuzz/seeds/$$(basename $$t); [ -d $$seeds ] || seeds=; \
		$$t -runs=$(FUZZ_RUNS) -max_len=4096 $(BUILD)/fuzz/corpus/$$(basename $$t) $$seeds \
			>$(BUILD)/fuzz/$$(basename $$t).log 2>&1 || { tail -30 $(BUILD)/fuzz/$$(basename $$t).log; exit 1; }; \
	done
