# Tests: cmocka unit tests (no KVM needed) and integration tests that boot
# VMs under ferry and QEMU. `make test` installs dependencies, builds, and
# runs both, plus the unit and integration tests again under ASan+UBSan.
TEST_CFLAGS := $(HOST_CFLAGS) -Itests
TEST_LIBS := $(HOST_LIBS) -lcmocka
TEST_HELPERS := $(BUILD)/obj/tests/helpers.o
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(sort $(wildcard tests/unit/test_*.c)))
INTEGRATION_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(sort $(wildcard tests/integration/test_*.c)))
SANITIZE_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: tests unit-tests asan test check
.SECONDARY:
tests: $(UNIT_TESTS) $(INTEGRATION_TESTS)
unit-tests: $(UNIT_TESTS)

# Unit tests of guest code that touches no hardware (e.g. guest/kernel/buddy.c).
$(BUILD)/obj/tests/unit/test_buddy.o: TEST_CFLAGS += -Iguest/include
$(BUILD)/obj/tests/unit/test_net.o: TEST_CFLAGS += -Iguest/include

# Tests that drive devices in a test VM without KVM (tests/testvm.h).
TESTVM_TESTS := $(BUILD)/tests/unit/test_devices
$(TESTVM_TESTS): $(BUILD)/obj/tests/testvm.o

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(HOST_CC) $(TEST_CFLAGS) -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_HELPERS) $(FERRY_LIB)
	@mkdir -p $(dir $@)
	$(HOST_CC) $(TEST_CFLAGS) $(filter %.o,$^) $(FERRY_LIB) -o $@ $(TEST_LIBS)

-include $(patsubst $(BUILD)/tests/%,$(BUILD)/obj/tests/%.d,$(UNIT_TESTS) $(INTEGRATION_TESTS)) $(TEST_HELPERS:.o=.d) $(BUILD)/obj/tests/testvm.d

# The VMM and the tests again, with AddressSanitizer and UBSan, in build/asan.
asan:
	$(MAKE) BUILD=$(BUILD)/asan CFLAGS="$(SANITIZE_FLAGS)" ferry tests

# Runs everything already built (see scripts/run-tests.sh); the Linux guest
# comes from the cache unless its inputs changed.
check: all asan fuzz-smoke linux-guest
	BUILD=$(BUILD) scripts/run-tests.sh

test: deps
	$(MAKE) check
