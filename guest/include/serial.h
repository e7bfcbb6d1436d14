/* 16550 UART on COM1, polled (drivers/serial.c). */
#ifndef GUEST_SERIAL_H
#define GUEST_SERIAL_H

#include <stddef.h>

void serial_init(void);
void serial_write(const char *s, size_t n);

#endif
