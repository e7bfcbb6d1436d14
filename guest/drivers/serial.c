/* COM1 16550 UART, output only and polled: each byte waits for the transmit
 * holding register to empty. Every port access is a VM exit (~9 us on the
 * host this project targets), so init is kept to the registers that matter. */
#include <stdint.h>
#include "serial.h"
#include "x86.h"

#define COM1 0x3f8
#define UART_THR 0  /* transmit holding register (DLAB = 0) */
#define UART_DLL 0  /* divisor latch, low byte (DLAB = 1) */
#define UART_IER 1  /* interrupt enable (DLAB = 0) */
#define UART_DLM 1  /* divisor latch, high byte (DLAB = 1) */
#define UART_FCR 2
#define UART_LCR 3
#define UART_LSR 5
#define  LCR_8N1  0x03
#define  LCR_DLAB 0x80
#define  FCR_ENABLE_CLEAR 0x07
#define  LSR_THRE 0x20

void serial_init(void)
{
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, LCR_DLAB);
	outb(COM1 + UART_DLL, 1);          /* 115200 baud */
	outb(COM1 + UART_DLM, 0);
	outb(COM1 + UART_LCR, LCR_8N1);
	outb(COM1 + UART_FCR, FCR_ENABLE_CLEAR);
}

void serial_write(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		/* Bounded, so a UART that never reports THRE cannot hang us. */
		for (int spin = 0; spin < 100000 && !(inb(COM1 + UART_LSR) & LSR_THRE); spin++)
			cpu_relax();
		outb(COM1 + UART_THR, (uint8_t)s[i]);
	}
}
