/*
 * The CPU-bound workload of tools/bench_mips.py, shared by the 32-bit and the 64-bit
 * benchmark kernels: a sieve of Eratosthenes and a bitwise CRC-32, repeated.
 * Ordinary compiled integer code: loads, stores, compares, branches, shifts, xors.
 */
#ifndef PYHV_FW_BENCH_WORKLOAD_H
#define PYHV_FW_BENCH_WORKLOAD_H

#include <stdint.h>

#define BENCH_SIEVE_LIMIT 65536
#define BENCH_CRC_BYTES 4096

static uint8_t bench_composite[BENCH_SIEVE_LIMIT];
static uint8_t bench_data[BENCH_CRC_BYTES];

static unsigned bench_sieve(void)
{
    unsigned count = 0;
    for (unsigned i = 0; i < BENCH_SIEVE_LIMIT; i++)
        bench_composite[i] = 0;
    for (unsigned i = 2; i < BENCH_SIEVE_LIMIT; i++) {
        if (bench_composite[i])
            continue;
        count++;
        for (unsigned j = i + i; j < BENCH_SIEVE_LIMIT; j += i)
            bench_composite[j] = 1;
    }
    return count;
}

static uint32_t bench_crc32(const uint8_t *p, unsigned n, uint32_t crc)
{
    crc = ~crc;
    for (unsigned i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1));
    }
    return ~crc;
}

/* Run `iterations` rounds; the result depends on every round so none can be skipped. */
static uint32_t bench_workload(unsigned iterations)
{
    uint32_t x = 1, acc = 0;
    for (unsigned i = 0; i < BENCH_CRC_BYTES; i++) {
        x = x * 1103515245u + 12345u;
        bench_data[i] = (uint8_t)(x >> 16);
    }
    for (unsigned r = 0; r < iterations; r++) {
        acc = acc * 31 + bench_sieve();
        bench_data[r % BENCH_CRC_BYTES] ^= (uint8_t)acc;
        acc ^= bench_crc32(bench_data, BENCH_CRC_BYTES, acc);
    }
    return acc;
}

/* "iterations=N" from a Multiboot command line, or `fallback`. */
static unsigned bench_iterations(const char *cmdline, unsigned fallback)
{
    static const char key[] = "iterations=";
    for (const char *p = cmdline; p && *p; p++) {
        unsigned k = 0;
        while (key[k] && p[k] == key[k])
            k++;
        if (key[k])
            continue;
        unsigned n = 0;
        for (p += k; *p >= '0' && *p <= '9'; p++)
            n = n * 10 + (unsigned)(*p - '0');
        return n;
    }
    return fallback;
}

#endif
