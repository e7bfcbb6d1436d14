/* COM1: a 16550 UART, output only. Each VM's console goes to its log file
 * and, if asked, to the terminal with the VM's name in front of each line. */
#ifndef FERRY_SERIAL_H
#define FERRY_SERIAL_H

#include <stdbool.h>
#include <stdio.h>

struct vm;

#define SERIAL_COM1_PORT 0x3f8
#define SERIAL_COM1_IRQ  4

struct serial *serial_create(struct vm *vm, const char *log_path, bool to_terminal,
			     char *err, size_t errlen);

#endif
