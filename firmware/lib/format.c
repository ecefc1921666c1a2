#include <stdint.h>
#include "format.h"

struct out {
    format_sink sink;
    void *ctx;
    int count;
};

static void emit(struct out *o, char c)
{
    o->sink(c, o->ctx);
    o->count++;
}

static void pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        emit(o, c);
}

/* Emit PREFIX (sign or "0x") and the DIGITS (length LEN) within WIDTH. */
static void emit_number(struct out *o, const char *prefix, const char *digits,
                        int len, int width, int left, int zero)
{
    int plen = 0;
    while (prefix[plen])
        plen++;
    int padding = width - plen - len;

    if (!left && !zero)
        pad(o, ' ', padding);
    for (int i = 0; i < plen; i++)
        emit(o, prefix[i]);
    if (!left && zero)
        pad(o, '0', padding);
    for (int i = 0; i < len; i++)
        emit(o, digits[i]);
    if (left)
        pad(o, ' ', padding);
}

/* Convert V to digits in BASE (10 or 16) into BUF (most significant first). */
static int to_digits(char *buf, uint32_t v, unsigned base, int upper)
{
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = set[v % base];
        v /= base;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

int kvformat(format_sink sink, void *ctx, const char *fmt, va_list ap)
{
    struct out o = { sink, ctx, 0 };

    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            emit(&o, *p);
            continue;
        }
        const char *start = p++;

        int left = 0, zero = 0;
        for (;; p++) {
            if (*p == '-')
                left = 1;
            else if (*p == '0')
                zero = 1;
            else
                break;
        }

        int width = 0;
        if (*p == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            p++;
        } else {
            while (*p >= '0' && *p <= '9')
                width = width * 10 + (*p++ - '0');
        }

        int precision = -1;
        if (*p == '.') {
            p++;
            precision = 0;
            if (*p == '*') {
                precision = va_arg(ap, int);
                p++;
            } else {
                while (*p >= '0' && *p <= '9')
                    precision = precision * 10 + (*p++ - '0');
            }
        }

        while (*p == 'l')
            p++;

        char digits[12];
        int len;
        switch (*p) {
        case 'd':
        case 'i': {
            int32_t v = va_arg(ap, int32_t);
            /* 0u - v is well defined for INT32_MIN too. */
            uint32_t mag = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
            len = to_digits(digits, mag, 10, 0);
            emit_number(&o, v < 0 ? "-" : "", digits, len, width, left, zero);
            break;
        }
        case 'u':
            len = to_digits(digits, va_arg(ap, uint32_t), 10, 0);
            emit_number(&o, "", digits, len, width, left, zero);
            break;
        case 'x':
        case 'X':
            len = to_digits(digits, va_arg(ap, uint32_t), 16, *p == 'X');
            emit_number(&o, "", digits, len, width, left, zero);
            break;
        case 'p': {
            uint32_t v = (uint32_t)(uintptr_t)va_arg(ap, void *);
            for (int i = 0; i < 8; i++)
                digits[i] = "0123456789abcdef"[(v >> (28 - 4 * i)) & 0xf];
            emit_number(&o, "0x", digits, 8, width, left, 0);
            break;
        }
        case 'c':
            if (!left)
                pad(&o, ' ', width - 1);
            emit(&o, (char)va_arg(ap, int));
            if (left)
                pad(&o, ' ', width - 1);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int n = 0;
            while (s[n] && (precision < 0 || n < precision))
                n++;
            if (!left)
                pad(&o, ' ', width - n);
            for (int i = 0; i < n; i++)
                emit(&o, s[i]);
            if (left)
                pad(&o, ' ', width - n);
            break;
        }
        case '%':
            emit(&o, '%');
            break;
        default:
            /* Unknown conversion: print it literally. */
            for (const char *q = start; q <= p && *q; q++)
                emit(&o, *q);
            if (!*p)
                return o.count;
            break;
        }
    }
    return o.count;
}

struct buffer {
    char *buf;
    size_t size;
    size_t pos;
};

static void buffer_sink(char c, void *ctx)
{
    struct buffer *b = ctx;
    if (b->pos + 1 < b->size)
        b->buf[b->pos] = c;
    b->pos++;
}

int kvsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct buffer b = { buf, size, 0 };
    int n = kvformat(buffer_sink, &b, fmt, ap);
    if (size > 0)
        buf[b.pos < size ? b.pos : size - 1] = '\0';
    return n;
}

int ksnprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = kvsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
