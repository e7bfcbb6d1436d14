# ferry-guest: the freestanding guest kernel. Included by the top-level Makefile,
# which defines BUILD, CC and WARN.
GUEST_ELF := $(BUILD)/guest/ferry-guest.elf

GUEST_SRCS := $(wildcard guest/boot/*.S guest/kernel/*.S) \
              $(wildcard guest/kernel/*.c guest/drivers/*.c guest/net/*.c guest/lib/*.c guest/apps/*.c)
GUEST_OBJS := $(patsubst guest/%,$(BUILD)/guest/%.o,$(GUEST_SRCS))

# Identity-mapped kernel linked at 1 MiB, so the small code model suffices. No SSE
# (the host's KVM cannot run xsave, and it saves us from FPU state), no red zone
# (interrupts push onto the current stack).
GUEST_CFLAGS := -std=gnu11 $(WARN) -O2 -g -ffreestanding -fno-pic -fno-pie \
	-mcmodel=small -mno-red-zone -mgeneral-regs-only -fno-stack-protector \
	-fno-omit-frame-pointer -fno-asynchronous-unwind-tables \
	-fno-tree-loop-distribute-patterns -fno-common \
	-Iinclude -Iguest/include -MMD -MP
GUEST_ASFLAGS := -Iinclude -Iguest/include -MMD -MP -D__ASSEMBLY__
GUEST_LDFLAGS := -nostdlib -no-pie -static -Wl,--build-id=none \
	-Wl,-z,max-page-size=4096 -Wl,-z,noexecstack -Wl,-T,guest/ferry-guest.ld

.PHONY: guest
guest: $(GUEST_ELF)

$(GUEST_ELF): $(GUEST_OBJS) guest/ferry-guest.ld
	$(CC) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJS)

$(BUILD)/guest/%.c.o: guest/%.c
	@mkdir -p $(@D)
	$(CC) $(GUEST_CFLAGS) -c -o $@ $<

$(BUILD)/guest/%.S.o: guest/%.S
	@mkdir -p $(@D)
	$(CC) $(GUEST_ASFLAGS) -c -o $@ $<

-include $(GUEST_OBJS:.o=.d)
