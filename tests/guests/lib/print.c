/* printf-lite over COM1: enough formatting for test output, no 64-bit division helpers needed. */
#include "guest.h"

static void put(char c)
{
    if (c == '\n')
        serial_putc('\r');   /* readable on a raw terminal too; the runner strips \r */
    serial_putc(c);
}

/* 64-by-32 division step with divl: the high part is divided first, so edx < base and the
 * instruction cannot overflow. Avoids libgcc's __udivdi3, which -nostdlib does not provide. */
static uint32_t divmod64(uint64_t *v, uint32_t base)
{
    uint32_t hi = (uint32_t)(*v >> 32), lo = (uint32_t)*v, qhi = hi / base, r = hi % base, qlo;
    __asm__("divl %4" : "=a"(qlo), "=d"(r) : "a"(lo), "d"(r), "rm"(base));
    *v = ((uint64_t)qhi << 32) | qlo;
    return r;
}

static void put_num(uint64_t v, uint32_t base, int width, char pad, bool neg)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = "0123456789abcdef"[divmod64(&v, base)];
    } while (v);
    if (neg)
        buf[n++] = '-';
    while (width-- > n)
        put(pad);
    while (n)
        put(buf[--n]);
}

void kvprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(*fmt);
            continue;
        }
        char pad = ' ';
        int width = 0, longs = 0;
        if (*++fmt == '0')
            pad = '0', fmt++;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l')
            longs++, fmt++;
        switch (*fmt) {
        case 'c': put((char)va_arg(ap, int)); break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            int len = (int)strlen(s);
            while (width-- > len)
                put(' ');
            while (*s)
                put(*s++);
            break;
        }
        case 'd': {
            int64_t v = longs >= 2 ? va_arg(ap, int64_t) : va_arg(ap, int32_t);
            put_num(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, width, pad, v < 0);
            break;
        }
        case 'u':
        case 'x': {
            uint64_t v = longs >= 2 ? va_arg(ap, uint64_t) : va_arg(ap, uint32_t);
            put_num(v, *fmt == 'u' ? 10 : 16, width, pad, false);
            break;
        }
        case 'p': put('0'); put('x'); put_num((uintptr_t)va_arg(ap, void *), 16, 8, '0', false); break;
        case '%': put('%'); break;
        case '\0': return;
        default: put('%'); put(*fmt); break;
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}
