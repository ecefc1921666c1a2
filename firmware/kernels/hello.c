/*
 * hello: a test kernel that runs ordinary compiled C and prints the results,
 * one "name: value" per line, so that a wrong instruction in the CPU shows up
 * as a wrong line.  tests/guests.py (hello_expected_lines) computes the same
 * values independently in Python.  Ends with debug_exit(0x21) (status 67).
 */
#include <stdint.h>
#include "debug_exit.h"
#include "format.h"
#include "multiboot.h"
#include "serial.h"

#define NOINLINE __attribute__((noinline))

/* ---- sieve of Eratosthenes ------------------------------------------- */

#define SIEVE_LIMIT 50000
static uint8_t composite[SIEVE_LIMIT];

static NOINLINE uint32_t count_primes(void)
{
    uint32_t count = 0;
    for (uint32_t i = 2; i < SIEVE_LIMIT; i++) {
        if (composite[i])
            continue;
        count++;
        for (uint32_t j = i * i; j < SIEVE_LIMIT; j += i)
            composite[j] = 1;
    }
    return count;
}

/* ---- LCG-filled buffer and bitwise CRC-32 ---------------------------- */

#define CRC_BUF_SIZE 4096
static uint8_t crc_buf[CRC_BUF_SIZE];

static NOINLINE uint32_t fill_lcg(uint8_t *buf, uint32_t n, uint32_t seed)
{
    uint32_t state = seed;
    for (uint32_t i = 0; i < n; i++) {
        state = state * 1103515245u + 12345u;
        buf[i] = (uint8_t)(state >> 16);
    }
    return state;
}

static NOINLINE uint32_t crc32(const uint8_t *buf, uint32_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= buf[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ---- recursion ------------------------------------------------------- */

static uint32_t fib_calls;

static NOINLINE uint32_t fib(uint32_t n)
{
    fib_calls++;
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

/* ---- structs and arrays ---------------------------------------------- */

struct item {
    int32_t key;
    uint16_t weight;
    uint8_t tag;
    int32_t value;
};

#define NITEMS 64
static struct item items[NITEMS];

static NOINLINE void struct_workload(void)
{
    for (int i = 0; i < NITEMS; i++) {
        items[i].key = (i * 37 + 11) % NITEMS;
        items[i].weight = (uint16_t)(i * 3 + 1);
        items[i].tag = (uint8_t)('a' + i % 26);
        items[i].value = (i - 32) * (i + 5);
    }

    /* insertion sort by key, moving whole structs */
    for (int i = 1; i < NITEMS; i++) {
        struct item cur = items[i];
        int j = i - 1;
        while (j >= 0 && items[j].key > cur.key) {
            items[j + 1] = items[j];
            j--;
        }
        items[j + 1] = cur;
    }

    int32_t sum = 0, weighted = 0;
    uint32_t weight = 0;
    char tags[13];
    for (int j = 0; j < NITEMS; j++) {
        sum += items[j].value;
        weighted += (j + 1) * items[j].value;
        weight += items[j].weight;
        if (j < 12)
            tags[j] = (char)items[j].tag;
    }
    tags[12] = '\0';
    printf("struct: sum=%d weighted=%d weight=%u tags=%s\n",
           sum, weighted, weight, tags);
}

/* ---- formatting negative numbers -------------------------------------- */

static NOINLINE void format_negatives(void)
{
    char buf[96];
    int n = ksnprintf(buf, sizeof buf, "%d %d %d %i %5d|%-5d|%05d|%x",
                      -1, -42, (int32_t)INT32_MIN, -100000, -42, -7, -42,
                      (uint32_t)-2);
    printf("negatives: %s\n", buf);
    printf("negatives length: %d\n", n);

    int32_t total = 0;
    for (int32_t i = 1; i <= 100; i++)
        total -= i * i;
    printf("negative sum: %d\n", total);

    char small[8];
    n = ksnprintf(small, sizeof small, "%d", (int32_t)INT32_MIN);
    printf("truncated: %s (%d)\n", small, n);
}

/* ---- switch statements ------------------------------------------------ */

static NOINLINE uint32_t apply_op(uint32_t op, uint32_t x)
{
    switch (op) {
    case 0:  return x + 1;
    case 1:  return x * 3;
    case 2:  return x ^ 0x5a5a5a5au;
    case 3:  return x >> 3;
    case 4:  return x << 5;
    case 5:  return ~x;
    case 6:  return x - 0x1234u;
    case 7:  return (x << 7) | (x >> 25);
    case 8:  return x & 0xffffu;
    case 9:  return x | 0x80000001u;
    case 10: return x * x;
    case 11: return 0u - x;
    default: return x;
    }
}

struct char_classes {
    uint32_t vowels, consonants, digits, spaces, other;
};

static NOINLINE void classify_chars(const char *s, struct char_classes *c)
{
    for (; *s; s++) {
        switch (*s) {
        case 'a': case 'e': case 'i': case 'o': case 'u':
        case 'A': case 'E': case 'I': case 'O': case 'U':
            c->vowels++;
            break;
        case '0': case '1': case '2': case '3': case '4':
        case '5': case '6': case '7': case '8': case '9':
            c->digits++;
            break;
        case ' ': case '\t':
            c->spaces++;
            break;
        default:
            if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))
                c->consonants++;
            else
                c->other++;
            break;
        }
    }
}

static NOINLINE void switches(void)
{
    uint32_t acc = 1;
    for (uint32_t i = 0; i < 200; i++)
        acc = apply_op(i % 14, acc) + i;
    printf("switch: 0x%08x\n", acc);

    struct char_classes c = { 0, 0, 0, 0, 0 };
    classify_chars("The quick brown fox jumps over 13 lazy dogs in 2024!", &c);
    printf("switch chars: vowels=%u consonants=%u digits=%u spaces=%u other=%u\n",
           c.vowels, c.consonants, c.digits, c.spaces, c.other);
}

/* ---- 32-bit multiply, divide, modulo ----------------------------------- */

static NOINLINE void arithmetic(void)
{
    /* volatile so that the compiler emits real (i)mul/(i)div instructions */
    static const int32_t sa[] = { -7, 7, -7, INT32_MIN, 2147483647, -1000000 };
    static const int32_t sb[] = { 2, -2, -2, 3, -10, 7 };
    static const uint32_t ua[] = { 0xFFFFFFFFu, 0x80000000u, 123456789u, 4000000000u };
    static const uint32_t ub[] = { 7, 3, 1000, 65536 };
    volatile int32_t va, vb;
    volatile uint32_t wa, wb;

    printf("sdiv:");
    for (unsigned i = 0; i < sizeof sa / sizeof sa[0]; i++) {
        va = sa[i];
        vb = sb[i];
        printf(" %d", va / vb);
    }
    printf("\nsmod:");
    for (unsigned i = 0; i < sizeof sa / sizeof sa[0]; i++) {
        va = sa[i];
        vb = sb[i];
        printf(" %d", va % vb);
    }
    printf("\nudiv:");
    for (unsigned i = 0; i < sizeof ua / sizeof ua[0]; i++) {
        wa = ua[i];
        wb = ub[i];
        printf(" %u", wa / wb);
    }
    printf("\numod:");
    for (unsigned i = 0; i < sizeof ua / sizeof ua[0]; i++) {
        wa = ua[i];
        wb = ub[i];
        printf(" %u", wa % wb);
    }
    printf("\n");

    wa = 123456789u;
    wb = 987654321u;
    va = -12345;
    vb = 6789;
    printf("mul: 0x%08x %d\n", wa * wb, va * vb);

    uint64_t wide = (uint64_t)wa * wb;
    va = -123456789;
    vb = 987654321;
    int64_t swide = (int64_t)va * vb;
    printf("mul64: 0x%08x%08x 0x%08x%08x\n",
           (uint32_t)(wide >> 32), (uint32_t)wide,
           (uint32_t)((uint64_t)swide >> 32), (uint32_t)swide);

    uint32_t s = 0x9e3779b9u, q = 0, r = 0, sacc = 0;
    for (int32_t i = 1; i <= 1000; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t d = (s >> 20) + 1;
        q += s / d;
        r += s % d;
        int32_t sv = (int32_t)s;
        int32_t sd = (i * 7 - 3500) | 1;
        sacc += (uint32_t)(sv / sd) + (uint32_t)(sv % sd);
    }
    printf("divloop: q=0x%08x r=0x%08x s=0x%08x\n", q, r, sacc);
}

/* ---- shifts and rotates ------------------------------------------------ */

static inline uint32_t rol32(uint32_t x, uint32_t n)
{
    return (x << (n & 31)) | (x >> ((32 - n) & 31));
}

static inline uint32_t ror32(uint32_t x, uint32_t n)
{
    return (x >> (n & 31)) | (x << ((32 - n) & 31));
}

static NOINLINE void shifts(void)
{
    volatile uint32_t x = 0x87654321u;
    uint32_t acc = 0;
    for (volatile uint32_t n = 0; n < 32; n++) {
        acc ^= x << n;
        acc += x >> n;
        acc ^= (uint32_t)((int32_t)x >> n);
        acc += rol32(x, n);
        acc ^= ror32(x, n);
    }
    printf("shifts: 0x%08x\n", acc);

    volatile int32_t neg = -1000;
    volatile uint32_t y = 0x12345678u, k8 = 8, k4 = 4;
    printf("sar: %d rol: 0x%08x ror: 0x%08x\n", neg >> 3, rol32(y, k8), ror32(y, k4));
}

/* ---- multiboot information -------------------------------------------- */

static void boot_info(uint32_t magic, const struct multiboot_info *mbi)
{
    printf("magic: 0x%08x %s\n", magic,
           magic == MULTIBOOT_BOOTLOADER_MAGIC ? "ok" : "BAD");
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
        return;
    if (mbi->flags & MULTIBOOT_INFO_MEMORY) {
        printf("mem_lower: %u KiB\n", mbi->mem_lower);
        printf("mem_upper: %u KiB\n", mbi->mem_upper);
    } else {
        printf("mem_lower: (none)\nmem_upper: (none)\n");
    }
    if (mbi->flags & MULTIBOOT_INFO_CMDLINE)
        printf("cmdline: %s\n", (const char *)mbi->cmdline);
    else
        printf("cmdline: (none)\n");
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    serial_init();
    printf("pyhv hello test kernel\n");

    printf("primes below %d: %u\n", SIEVE_LIMIT, count_primes());

    uint32_t state = fill_lcg(crc_buf, CRC_BUF_SIZE, 12345u);
    printf("lcg state: 0x%08x\n", state);
    printf("crc32: 0x%08x\n", crc32(crc_buf, CRC_BUF_SIZE));

    printf("fib(20): %u\n", fib(20));
    printf("fib calls: %u\n", fib_calls);

    struct_workload();
    format_negatives();
    switches();
    arithmetic();
    shifts();
    boot_info(magic, mbi);

    printf("hello done\n");
    debug_exit(0x21);
}
