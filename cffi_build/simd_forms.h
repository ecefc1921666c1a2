/* The SIMD forms executed on the host's unit (exec_simd.c), found by the decoder
 * (decode_sse.c) from their opcode map, mandatory prefix and opcode. */
#ifndef PYHV_SIMD_FORMS_H
#define PYHV_SIMD_FORMS_H
#include <stdint.h>

typedef struct simd_form {
    uint8_t map, pfx, opcode;
    uint8_t mem;               /* memory operand size in bytes */
    uint8_t flags;
} simd_form_t;

enum {
    SF_ALIGN = 1,      /* a memory operand must be 16-byte aligned */
    SF_MMX = 2,        /* MMX registers */
    SF_FLAGS = 4,      /* the result is RFLAGS (COMISS, PTEST) */
    SF_IMM = 8,        /* imm8 follows */
    SF_STRI = 16,      /* PCMPxSTRI: index to ECX, and RFLAGS */
    SF_STRM = 32,      /* PCMPxSTRM: mask to XMM0, and RFLAGS */
    SF_LENGTHS = 64,   /* PCMPESTRx: string lengths in rAX and rDX */
};

/* The form's index for op_simd_fp (*fp = 1) or op_simd_int (*fp = 0), or -1. */
int simd_form_lookup(int map, int pfx, uint8_t op, int *fp, int *flags);

#endif
