/*
 * Polled output on the first 16550 UART (COM1, I/O port 0x3f8).
 *
 * Only two registers are required to work: THR (write 0x3f8) and LSR
 * (read 0x3fd, bit 5 = THRE, transmit holding register empty).  Every byte is
 * written only after LSR.THRE reads as 1.  '\n' is sent as "\r\n".
 */
#ifndef PYHV_FW_SERIAL_H
#define PYHV_FW_SERIAL_H

#include <stdarg.h>
#include <stdint.h>

#define COM1_BASE   0x3f8
#define UART_THR    0   /* transmit holding register (write, DLAB=0) */
#define UART_IER    1   /* interrupt enable register (DLAB=0) */
#define UART_FCR    2   /* FIFO control register (write) */
#define UART_LCR    3   /* line control register */
#define UART_MCR    4   /* modem control register */
#define UART_LSR    5   /* line status register */
#define UART_LSR_THRE 0x20

void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);     /* no newline appended */
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);

#endif
