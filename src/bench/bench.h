/* Benchmark targets of `ferry bench`, and what they share: running child
 * processes, reading their memory use, and order statistics. */
#ifndef FERRY_BENCH_H
#define FERRY_BENCH_H

#include <stddef.h>

int bench_boot(int argc, char **argv);

#endif
