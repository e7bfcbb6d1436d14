# The VMM: build/ferry. Every .c under src/ except the CLI entry point also goes
# into a static library that the unit tests and fuzz targets link against.
FERRY_SRCS := $(sort $(wildcard src/*/*.c))
FERRY_MAIN := src/cli/main.c
FERRY_LIB_SRCS := $(filter-out $(FERRY_MAIN),$(FERRY_SRCS))
FERRY_OBJS := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(FERRY_LIB_SRCS))
FERRY_LIB := $(BUILD)/libferry.a

.PHONY: ferry
ferry: $(BUILD)/ferry

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(HOST_CC) $(HOST_CFLAGS) -c $< -o $@

$(FERRY_LIB): $(FERRY_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ferry: $(BUILD)/obj/cli/main.o $(FERRY_LIB)
	$(HOST_CC) $(HOST_CFLAGS) $^ -o $@ $(HOST_LIBS)

-include $(FERRY_OBJS:.o=.d) $(BUILD)/obj/cli/main.d
