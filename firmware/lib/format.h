/*
 * A minimal printf-style formatter (no libgcc needed: 32-bit arithmetic only).
 *
 * Conversions: %s %c %d %i %u %x %X %p %%.
 * Flags: '-' (left-justify), '0' (zero pad); a width (digits or '*');
 * a precision ('.N' or '.*') limits %s.  An 'l' length modifier is accepted
 * and ignored (long is 32 bits here).  %p prints 0x followed by 8 hex digits.
 */
#ifndef PYHV_FW_FORMAT_H
#define PYHV_FW_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

typedef void (*format_sink)(char c, void *ctx);

/* Format into SINK; returns the number of characters produced. */
int kvformat(format_sink sink, void *ctx, const char *fmt, va_list ap);

/* snprintf semantics: always NUL-terminates when SIZE > 0 and returns the
 * length the full output would have had. */
int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int ksnprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
