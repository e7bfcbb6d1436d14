/* Small things every kernel file uses: helpers, panic and power-off. */
#ifndef GUEST_KERNEL_H
#define GUEST_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kprintf.h"

#define PAGE_SHIFT 12
#define PAGE_SIZE  UINT64_C(4096)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

#define ARRAY_SIZE(a)     (sizeof(a) / sizeof((a)[0]))
#define ALIGN_UP(x, a)    (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define ALIGN_DOWN(x, a)  ((x) & ~((__typeof__(x))(a) - 1))
#define MIN(a, b)         ((a) < (b) ? (a) : (b))
#define MAX(a, b)         ((a) > (b) ? (a) : (b))
#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))
#define READ_ONCE(x)      (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v)  (*(volatile __typeof__(x) *)&(x) = (v))

/* The kernel is identity-mapped: a physical address is its own virtual one. */
static inline void *phys_to_virt(uint64_t pa) { return (void *)(uintptr_t)pa; }
static inline uint64_t virt_to_phys(const void *va) { return (uintptr_t)va; }

/* Linker-script symbols. */
extern char _kernel_start[], _kernel_end[];

/* Prints the message, a backtrace, and powers off with FERRY_EXIT_PANIC. */
__attribute__((noreturn)) void panic(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Writes status to the debug-exit port, then halts this CPU for good. */
__attribute__((noreturn)) void poweroff(int status);
/* Prints return addresses found by walking the frame-pointer chain from rbp. */
void print_backtrace(uint64_t rbp);

#define BUG_ON(cond) do { if (cond) panic("BUG at %s:%d: %s", __FILE__, __LINE__, #cond); } while (0)

/* Informational boot messages; silenced by the command line key quiet=1. */
extern bool console_quiet;
#define pr_info(...) do { if (!console_quiet) kprintf(__VA_ARGS__); } while (0)

#endif
