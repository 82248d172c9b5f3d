# guest/guest.mk: builds the example guests. Included by the top-level
# Makefile; paths are relative to the repository root.
#
# Defines:
#   GUEST_ELFS  every guest image, $(GUESTBIN)/NAME.elf for each
#               guest/examples/NAME.c (the top-level `guests` target builds them)
#   HOST_BINS   Linux programs for benchmark comparison:
#               $(GUESTBIN)/host/hello_host and $(GUESTBIN)/host/sha256_host
#               (two examples built with -DTENDER_HOST), and
#               $(GUESTBIN)/host/fn_echo_host and fn_echo_host_nolibc (the
#               echo function as a process, from guest/host/). They are not
#               in GUEST_ELFS; this file adds them as further prerequisites
#               of `guests`.
# Objects go to $(GUESTBIN)/obj/.

GUESTBIN ?= bin/guest

# The guest compiler: $(CC) when set, else gcc (make's built-in default "cc"
# is replaced; CC itself is left alone).
ifeq ($(origin CC),default)
GUEST_CC := gcc
else
GUEST_CC := $(CC)
endif

GUEST_DIR      := guest
GUEST_OBJDIR   := $(GUESTBIN)/obj
GUEST_HOSTDIR  := $(GUESTBIN)/host
GUEST_LDSCRIPT := $(GUEST_DIR)/tender.ld

GUEST_NAMES := $(sort $(basename $(notdir $(wildcard $(GUEST_DIR)/examples/*.c))))
GUEST_ELFS  := $(patsubst %,$(GUESTBIN)/%.elf,$(GUEST_NAMES))

GUEST_LIB_SRCS := $(sort $(wildcard $(GUEST_DIR)/lib/*.c $(GUEST_DIR)/lib/*.S))
GUEST_LIB_OBJS := $(patsubst $(GUEST_DIR)/lib/%,$(GUEST_OBJDIR)/lib/%.o,$(GUEST_LIB_SRCS))

# Only the compiler's own freestanding headers (stddef.h, stdint.h, ...) are
# visible to guests, never the host C library's.
GUEST_CC_INCLUDE := $(shell $(GUEST_CC) -print-file-name=include 2>/dev/null)

GUEST_CFLAGS := -std=gnu11 -O2 -g0 -Wall -Wextra -Werror \
	-ffreestanding -fno-builtin -nostdinc -isystem $(GUEST_CC_INCLUDE) \
	-I $(GUEST_DIR)/include \
	-fno-stack-protector -fno-stack-clash-protection -fcf-protection=none \
	-fno-pic -fno-pie -mcmodel=small \
	-fno-asynchronous-unwind-tables -fno-unwind-tables \
	-ffunction-sections -fdata-sections \
	-fno-tree-loop-distribute-patterns \
	-MMD -MP
GUEST_ASFLAGS := -nostdinc -I $(GUEST_DIR)/include -MMD -MP
GUEST_LDFLAGS := -nostdlib -static -no-pie -T $(GUEST_LDSCRIPT) \
	-Wl,-z,max-page-size=0x1000 -Wl,-z,common-page-size=0x1000 \
	-Wl,-z,noexecstack -Wl,-z,norelro -Wl,--build-id=none \
	-Wl,--gc-sections -Wl,--orphan-handling=error -Wl,--fatal-warnings
# libgcc only supplies helpers the compiler may call (e.g. 128-bit division).
GUEST_LDLIBS := -lgcc

# The Linux programs: ordinary static executables built with the host C library.
HOST_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -DTENDER_HOST -I $(GUEST_DIR)/include
# The nolibc program: no C library, no startup files, raw system calls.
HOST_NOLIBC_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror \
	-ffreestanding -fno-builtin -nostdinc -isystem $(GUEST_CC_INCLUDE) \
	-I $(GUEST_DIR)/include \
	-fno-stack-protector -fcf-protection=none -fno-pie \
	-fno-asynchronous-unwind-tables -fno-unwind-tables \
	-fno-tree-loop-distribute-patterns
HOST_NOLIBC_LDFLAGS := -nostdlib -static -no-pie -s \
	-Wl,-z,max-page-size=0x1000 -Wl,-z,noexecstack -Wl,-z,norelro \
	-Wl,--build-id=none -Wl,--gc-sections
HOST_BINS := $(GUEST_HOSTDIR)/hello_host $(GUEST_HOSTDIR)/sha256_host \
	$(GUEST_HOSTDIR)/fn_echo_host $(GUEST_HOSTDIR)/fn_echo_host_nolibc

guests: $(HOST_BINS)

$(GUESTBIN)/%.elf: $(GUEST_OBJDIR)/examples/%.c.o $(GUEST_LIB_OBJS) $(GUEST_LDSCRIPT)
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_LDFLAGS) -o $@ $< $(GUEST_LIB_OBJS) $(GUEST_LDLIBS)

$(GUEST_OBJDIR)/%.c.o: $(GUEST_DIR)/%.c $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_OBJDIR)/%.S.o: $(GUEST_DIR)/%.S $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_ASFLAGS) -c -o $@ $<

$(GUEST_HOSTDIR)/hello_host: $(GUEST_DIR)/examples/hello.c $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(HOST_CFLAGS) -static -o $@ $<

$(GUEST_HOSTDIR)/sha256_host: $(GUEST_DIR)/examples/sha256.c $(GUEST_DIR)/lib/sha256.c \
		$(GUEST_DIR)/include/sha256.h $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(HOST_CFLAGS) -static -o $@ $(GUEST_DIR)/examples/sha256.c $(GUEST_DIR)/lib/sha256.c

$(GUEST_HOSTDIR)/fn_echo_host: $(GUEST_DIR)/host/fn_echo_host.c \
		$(GUEST_DIR)/include/tender_abi.h $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(HOST_CFLAGS) -static -o $@ $<

$(GUEST_HOSTDIR)/fn_echo_host_nolibc: $(GUEST_DIR)/host/fn_echo_host_nolibc.c \
		$(GUEST_DIR)/include/tender_abi.h $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(HOST_NOLIBC_CFLAGS) $(HOST_NOLIBC_LDFLAGS) -o $@ $<

# A guest of your own, from C files anywhere (run from the repository root,
# or with make -C and absolute paths):
#   make guest SRC="path/to/NAME.c [more.c ...]" [OUT=path/to/NAME.elf]
# compiles them as the examples are, warnings not fatal, and links them with
# the runtime into OUT (default $(GUESTBIN)/NAME.elf).
GUEST_OUT = $(or $(OUT),$(GUESTBIN)/$(basename $(notdir $(firstword $(SRC)))).elf)

.PHONY: guest
guest: $(GUEST_LIB_OBJS) $(GUEST_LDSCRIPT)
	@test -n "$(SRC)" || { echo 'usage: make guest SRC="NAME.c [more.c ...]" [OUT=NAME.elf]' >&2; exit 2; }
	@mkdir -p $(dir $(GUEST_OUT))
	$(GUEST_CC) $(filter-out -Werror -MMD -MP,$(GUEST_CFLAGS)) $(GUEST_LDFLAGS) -o $(GUEST_OUT) $(SRC) $(GUEST_LIB_OBJS) $(GUEST_LDLIBS)

# Keep the objects; make would otherwise delete them as intermediates.
.SECONDARY: $(GUEST_LIB_OBJS) $(patsubst %,$(GUEST_OBJDIR)/examples/%.c.o,$(GUEST_NAMES))

-include $(wildcard $(GUEST_OBJDIR)/*/*.d)

# Solo5-ABI test guests: guest/solo5/examples/NAME.c with the runtime in
# guest/solo5/lib, linked by guest/solo5/solo5.ld into
# $(GUESTBIN)/solo5/NAME.elf (SOLO5_ELFS, built by `guests`).
SOLO5_DIR      := $(GUEST_DIR)/solo5
SOLO5_NAMES    := $(sort $(basename $(notdir $(wildcard $(SOLO5_DIR)/examples/*.c))))
SOLO5_ELFS     := $(patsubst %,$(GUESTBIN)/solo5/%.elf,$(SOLO5_NAMES))
SOLO5_LIB_SRCS := $(sort $(wildcard $(SOLO5_DIR)/lib/*.c $(SOLO5_DIR)/lib/*.S))
SOLO5_LIB_OBJS := $(patsubst $(SOLO5_DIR)/lib/%,$(GUEST_OBJDIR)/solo5/lib/%.o,$(SOLO5_LIB_SRCS))
SOLO5_CFLAGS   := $(filter-out -I $(GUEST_DIR)/include,$(GUEST_CFLAGS)) -I $(SOLO5_DIR)/include -ftls-model=local-exec -malign-data=abi
SOLO5_LDFLAGS  := $(subst $(GUEST_LDSCRIPT),$(SOLO5_DIR)/solo5.ld,$(GUEST_LDFLAGS))

guests: $(SOLO5_ELFS)

$(GUESTBIN)/solo5/%.elf: $(GUEST_OBJDIR)/solo5/examples/%.c.o $(SOLO5_LIB_OBJS) $(SOLO5_DIR)/solo5.ld
	@mkdir -p $(@D)
	$(GUEST_CC) $(SOLO5_LDFLAGS) -o $@ $< $(SOLO5_LIB_OBJS) $(GUEST_LDLIBS)

$(GUEST_OBJDIR)/solo5/%.c.o: $(SOLO5_DIR)/%.c $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(SOLO5_CFLAGS) -c -o $@ $<

$(GUEST_OBJDIR)/solo5/%.S.o: $(SOLO5_DIR)/%.S $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(GUEST_ASFLAGS) -c -o $@ $<

# The same compute loop as a Linux program, for BenchmarkSolo5Compute.
guests: $(GUEST_HOSTDIR)/compute_host

$(GUEST_HOSTDIR)/compute_host: $(SOLO5_DIR)/examples/compute.c $(GUEST_DIR)/guest.mk
	@mkdir -p $(@D)
	$(GUEST_CC) $(HOST_CFLAGS) -static -o $@ $<

.SECONDARY: $(SOLO5_LIB_OBJS) $(patsubst %,$(GUEST_OBJDIR)/solo5/examples/%.c.o,$(SOLO5_NAMES))

-include $(wildcard $(GUEST_OBJDIR)/solo5/*/*.d)
