/* Opcode-table entries shared by the decoder (decode.c) and the tables of the x87 and
 * SIMD opcode maps (decode_x87.c, decode_sse.c). */
#ifndef PYHV_DECODE_H
#define PYHV_DECODE_H
#include "exec.h"

enum {
    M = 1 << 0,      /* ModRM follows */
    B = 1 << 1,      /* byte operands */
    RMB = 1 << 2,    /* only the r/m operand is a byte (MOVZX/MOVSX r, r/m8) */
    RMW = 1 << 3,    /* the r/m operand is a word (MOVZX/MOVSX r, r/m16) */
    I8 = 1 << 4,     /* imm8, sign-extended */
    I16 = 1 << 5,    /* imm16 */
    IZ = 1 << 6,     /* imm16/32 by operand size, sign-extended to 64 */
    IV = 1 << 7,     /* imm16/32/64 by operand size */
    MOFFS = 1 << 8,  /* address-size offset */
    FAR = 1 << 9,    /* ptr16:16/32 */
    D64 = 1 << 10,   /* default operand size 64 in long mode */
    F64 = 1 << 11,   /* operand size 64 in long mode, whatever the prefixes */
    I64 = 1 << 12,   /* invalid in long mode */
    END = 1 << 13,   /* ends a decoded block */
    GRP = 1 << 14,   /* ModRM.reg selects the entry in group table `op` */
    RB = 1 << 15,    /* register in the low 3 opcode bits */
    ACC = 1 << 16,   /* the r/m operand is rAX */
    I16I8 = 1 << 17, /* ENTER: imm16 then imm8 */
    MEMONLY = 1 << 18, /* the ModRM form must be a memory operand */
    REGONLY = 1 << 19, /* the ModRM form must be a register operand */
};

typedef struct opdesc {
    insn_fn fn;
    uint32_t flags;
    uint8_t op;
} opdesc_t;

#define E(f, fl, o) { f, fl, o }
#define UD { op_ud, 0, 0 }

/* SIMD opcode maps (decode_sse.c): `map` 1 = 0F, 2 = 0F 38, 3 = 0F 3A; `pfx` the
 * mandatory prefix (SIMD_NONE, SIMD_66, SIMD_F3, SIMD_F2); UD where undefined. */
opdesc_t decode_simd(int map, uint8_t opcode, int pfx);
/* x87 escape opcodes D8-DF with their ModRM byte (decode_x87.c). */
opdesc_t decode_x87(uint8_t opcode, uint8_t modrm);

#endif
