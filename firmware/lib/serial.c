#include "serial.h"
#include "format.h"
#include "io.h"

/*
 * Give up waiting for THRE after this many LSR reads and send anyway, so a
 * broken UART model garbles output instead of hanging the guest.
 */
#define THRE_SPIN_LIMIT 65536

void serial_init(void)
{
    /*
     * Interrupts off, 8 data bits / no parity / 1 stop bit, FIFOs on and
     * cleared, DTR + RTS.  The baud divisor is deliberately left as the
     * firmware/loader set it: programming it needs DLAB=1, and a UART model
     * that implements only THR and LSR would take the divisor byte written
     * to 0x3f8 for a character.  None of these writes touches THR.
     */
    outb(COM1_BASE + UART_IER, 0x00);
    outb(COM1_BASE + UART_LCR, 0x03);
    outb(COM1_BASE + UART_FCR, 0x07);
    outb(COM1_BASE + UART_MCR, 0x03);
}

static void serial_write_byte(uint8_t b)
{
    for (int i = 0; i < THRE_SPIN_LIMIT; i++)
        if (inb(COM1_BASE + UART_LSR) & UART_LSR_THRE)
            break;
    outb(COM1_BASE + UART_THR, b);
}

void serial_putc(char c)
{
    if (c == '\n')
        serial_write_byte('\r');
    serial_write_byte((uint8_t)c);
}

void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}

static void serial_sink(char c, void *ctx)
{
    (void)ctx;
    serial_putc(c);
}

int vprintf(const char *fmt, va_list ap)
{
    return kvformat(serial_sink, 0, fmt, ap);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}
