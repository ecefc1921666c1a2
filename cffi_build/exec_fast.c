/* Specialized handlers for the instruction forms that dominate compiled code: ALU, MOV,
 * LEA, Jcc, INC/DEC, PUSH/POP, CALL/RET with 32- and 64-bit operands.  The decoder's
 * generic handler is replaced at block-build time when the form matches; semantics are
 * those of the generic handlers, with sizes and operations fixed at compile time. */
#include "exec.h"

/* ---- ALU: dest = dest OP src, with the lazy-flags kind of each operation ---- */

#define LF_add LF_ADD
#define LF_or LF_LOGIC
#define LF_and LF_LOGIC
#define LF_sub LF_SUB
#define LF_xor LF_LOGIC
#define LF_cmp LF_SUB
#define LF_test LF_LOGIC
#define OPR_add(a, b) ((a) + (b))
#define OPR_or(a, b) ((a) | (b))
#define OPR_and(a, b) ((a) & (b))
#define OPR_sub(a, b) ((a) - (b))
#define OPR_xor(a, b) ((a) ^ (b))
#define OPR_cmp(a, b) ((a) - (b))
#define OPR_test(a, b) ((a) & (b))
#define WRITES_add 1
#define WRITES_or 1
#define WRITES_and 1
#define WRITES_sub 1
#define WRITES_xor 1
#define WRITES_cmp 0
#define WRITES_test 0

#define ALU_FORMS(op, T, S)                                                            \
    static void op##_rr##S(cpu_t *cpu, const insn_t *i)                               \
    {                                                                                  \
        T a = (T)cpu->gpr[i->rm], b = (T)cpu->gpr[i->reg], r = (T)OPR_##op(a, b);     \
        set_lazy(cpu, LF_##op, S, r, a, b);                                            \
        if (WRITES_##op) cpu->gpr[i->rm] = r;                                          \
    }                                                                                  \
    static void op##_ri##S(cpu_t *cpu, const insn_t *i)                               \
    {                                                                                  \
        T a = (T)cpu->gpr[i->rm], b = (T)i->imm, r = (T)OPR_##op(a, b);               \
        set_lazy(cpu, LF_##op, S, r, a, b);                                            \
        if (WRITES_##op) cpu->gpr[i->rm] = r;                                          \
    }                                                                                  \
    static void op##_rm##S(cpu_t *cpu, const insn_t *i)                               \
    {                                                                                  \
        T a = (T)cpu->gpr[i->reg], b = (T)mem_read(cpu, i->seg, ea_of(cpu, i), S);    \
        T r = (T)OPR_##op(a, b);                                                       \
        set_lazy(cpu, LF_##op, S, r, a, b);                                            \
        if (WRITES_##op) cpu->gpr[i->reg] = r;                                         \
    }                                                                                  \
    static void op##_mr##S(cpu_t *cpu, const insn_t *i)                               \
    {                                                                                  \
        uint64_t ea = ea_of(cpu, i);                                                   \
        T a = (T)mem_read(cpu, i->seg, ea, S), b = (T)cpu->gpr[i->reg];                \
        T r = (T)OPR_##op(a, b);                                                       \
        if (WRITES_##op) mem_write(cpu, i->seg, ea, S, r);                             \
        set_lazy(cpu, LF_##op, S, r, a, b);                                            \
    }                                                                                  \
    static void op##_mi##S(cpu_t *cpu, const insn_t *i)                               \
    {                                                                                  \
        uint64_t ea = ea_of(cpu, i);                                                   \
        T a = (T)mem_read(cpu, i->seg, ea, S), b = (T)i->imm, r = (T)OPR_##op(a, b);  \
        if (WRITES_##op) mem_write(cpu, i->seg, ea, S, r);                             \
        set_lazy(cpu, LF_##op, S, r, a, b);                                            \
    }

/* the register forms when nothing can see their flags (dead_flags below) */
#define ALU_FORMS_NF(op, T, S)                                                         \
    static void op##_rr##S##_nf(cpu_t *cpu, const insn_t *i)                          \
    {                                                                                  \
        if (WRITES_##op) cpu->gpr[i->rm] = (T)OPR_##op((T)cpu->gpr[i->rm], (T)cpu->gpr[i->reg]); \
    }                                                                                  \
    static void op##_ri##S##_nf(cpu_t *cpu, const insn_t *i)                          \
    {                                                                                  \
        if (WRITES_##op) cpu->gpr[i->rm] = (T)OPR_##op((T)cpu->gpr[i->rm], (T)i->imm); \
    }

#define ALU_OPS(X) X(add) X(or) X(and) X(sub) X(xor) X(cmp) X(test)
#define ALU_BOTH(op) ALU_FORMS(op, uint32_t, 4) ALU_FORMS(op, uint64_t, 8) \
                     ALU_FORMS_NF(op, uint32_t, 4) ALU_FORMS_NF(op, uint64_t, 8)
ALU_OPS(ALU_BOTH)

/* byte operations on memory (registers stay generic: AH..BH need care) */
#define ALU_MEM_BYTE(op)                                                               \
    static void op##_mr1(cpu_t *cpu, const insn_t *i)                                 \
    {                                                                                  \
        uint64_t ea = ea_of(cpu, i);                                                   \
        uint8_t a = (uint8_t)mem_read(cpu, i->seg, ea, 1), b = (uint8_t)reg_read(cpu, i->reg, 1); \
        uint8_t r = (uint8_t)OPR_##op(a, b);                                           \
        if (WRITES_##op) mem_write(cpu, i->seg, ea, 1, r);                             \
        set_lazy(cpu, LF_##op, 1, r, a, b);                                            \
    }                                                                                  \
    static void op##_mi1(cpu_t *cpu, const insn_t *i)                                 \
    {                                                                                  \
        uint64_t ea = ea_of(cpu, i);                                                   \
        uint8_t a = (uint8_t)mem_read(cpu, i->seg, ea, 1), b = (uint8_t)i->imm;        \
        uint8_t r = (uint8_t)OPR_##op(a, b);                                           \
        if (WRITES_##op) mem_write(cpu, i->seg, ea, 1, r);                             \
        set_lazy(cpu, LF_##op, 1, r, a, b);                                            \
    }
ALU_OPS(ALU_MEM_BYTE)
typedef struct alu_byte_table { insn_fn mr, mi; } alu_byte_table_t;
#define ALU_BYTE_ENTRY(op) { op##_mr1, op##_mi1 }
static const alu_byte_table_t alu1[9] = {
    ALU_BYTE_ENTRY(add), ALU_BYTE_ENTRY(or), {0}, {0}, ALU_BYTE_ENTRY(and), ALU_BYTE_ENTRY(sub),
    ALU_BYTE_ENTRY(xor), ALU_BYTE_ENTRY(cmp), ALU_BYTE_ENTRY(test) };

/* byte operations on AL..R15B (not AH..BH): the rest of the register stays */
#define SET_LOW_BYTE(r) (cpu->gpr[i->rm] = (cpu->gpr[i->rm] & ~0xffull) | (uint8_t)(r))
#define ALU_REG_BYTE(op)                                                               \
    static void op##_rr1(cpu_t *cpu, const insn_t *i)                                 \
    {                                                                                  \
        uint8_t a = (uint8_t)cpu->gpr[i->rm], b = (uint8_t)cpu->gpr[i->reg];           \
        uint8_t r = (uint8_t)OPR_##op(a, b);                                           \
        set_lazy(cpu, LF_##op, 1, r, a, b);                                            \
        if (WRITES_##op) SET_LOW_BYTE(r);                                              \
    }                                                                                  \
    static void op##_ri1(cpu_t *cpu, const insn_t *i)                                 \
    {                                                                                  \
        uint8_t a = (uint8_t)cpu->gpr[i->rm], b = (uint8_t)i->imm, r = (uint8_t)OPR_##op(a, b); \
        set_lazy(cpu, LF_##op, 1, r, a, b);                                            \
        if (WRITES_##op) SET_LOW_BYTE(r);                                              \
    }                                                                                  \
    static void op##_rr1_nf(cpu_t *cpu, const insn_t *i)                              \
    { if (WRITES_##op) SET_LOW_BYTE(OPR_##op((uint8_t)cpu->gpr[i->rm], (uint8_t)cpu->gpr[i->reg])); } \
    static void op##_ri1_nf(cpu_t *cpu, const insn_t *i)                              \
    { if (WRITES_##op) SET_LOW_BYTE(OPR_##op((uint8_t)cpu->gpr[i->rm], (uint8_t)i->imm)); }
ALU_OPS(ALU_REG_BYTE)
typedef struct alu_reg_byte_table { insn_fn rr, ri; } alu_reg_byte_table_t;
#define ALU_REG_BYTE_ENTRY(op) { op##_rr1, op##_ri1 }
static const alu_reg_byte_table_t alu1r[9] = {
    ALU_REG_BYTE_ENTRY(add), ALU_REG_BYTE_ENTRY(or), {0}, {0}, ALU_REG_BYTE_ENTRY(and),
    ALU_REG_BYTE_ENTRY(sub), ALU_REG_BYTE_ENTRY(xor), ALU_REG_BYTE_ENTRY(cmp), ALU_REG_BYTE_ENTRY(test) };

/* ---- SHL/SHR/SAR of a register by a constant or CL (flags as op_shift computes them) ---- */

static inline void shift_flags(cpu_t *cpu, uint64_t r, uint64_t cf, uint64_t of, int size)
{
    uint64_t sign = 1ull << (size * 8 - 1);
    set_arith_flags(cpu, (cf ? F_CF : 0) | (of ? F_OF : 0) | parity_flag(r) |
                         (r == 0 ? F_ZF : 0) | ((r & sign) ? F_SF : 0));
}

/* a zero count changes nothing, but a 32-bit destination is still written (zero-extended) */
#define ZERO_COUNT(S) do { if ((S) == 4) cpu->gpr[i->rm] = (uint32_t)cpu->gpr[i->rm]; return; } while (0)

#define SHIFTS(T, S, MASK, form, COUNT)                                                \
    static void shl_##form##S(cpu_t *cpu, const insn_t *i)                             \
    {                                                                                  \
        unsigned c = (unsigned)(COUNT) & MASK;                                          \
        if (!c) ZERO_COUNT(S);                                                         \
        T a = (T)cpu->gpr[i->rm], r = (T)(a << c);                                     \
        uint64_t cf = (a >> (S * 8 - c)) & 1;                                          \
        cpu->gpr[i->rm] = r;                                                           \
        shift_flags(cpu, r, cf, ((r >> (S * 8 - 1)) & 1) ^ cf, S);                     \
    }                                                                                  \
    static void shr_##form##S(cpu_t *cpu, const insn_t *i)                             \
    {                                                                                  \
        unsigned c = (unsigned)(COUNT) & MASK;                                          \
        if (!c) ZERO_COUNT(S);                                                         \
        T a = (T)cpu->gpr[i->rm], r = (T)(a >> c);                                     \
        cpu->gpr[i->rm] = r;                                                           \
        shift_flags(cpu, r, (a >> (c - 1)) & 1, (a >> (S * 8 - 1)) & 1, S);            \
    }                                                                                  \
    static void sar_##form##S(cpu_t *cpu, const insn_t *i)                             \
    {                                                                                  \
        unsigned c = (unsigned)(COUNT) & MASK;                                          \
        if (!c) ZERO_COUNT(S);                                                         \
        T a = (T)cpu->gpr[i->rm];                                                      \
        T r = (T)((int64_t)sign_extend(a, S) >> c);                                    \
        cpu->gpr[i->rm] = r;                                                           \
        shift_flags(cpu, r, ((int64_t)sign_extend(a, S) >> (c - 1)) & 1, 0, S);        \
    }
SHIFTS(uint32_t, 4, 31, ri, i->imm) SHIFTS(uint64_t, 8, 63, ri, i->imm)
/* by CL: a zero count leaves the flags as they were (FLAGS_READ below) */
SHIFTS(uint32_t, 4, 31, rc, cpu->gpr[R_CX]) SHIFTS(uint64_t, 8, 63, rc, cpu->gpr[R_CX])

/* 16-bit registers by a constant of 1..15 (only then are the results those above): the
 * rest of the register stays */
#define SET_LOW_WORD(r) (cpu->gpr[i->rm] = (cpu->gpr[i->rm] & ~0xffffull) | (uint16_t)(r))
static void shl_ri2(cpu_t *cpu, const insn_t *i)
{
    unsigned c = (unsigned)i->imm;
    uint32_t a = (uint16_t)cpu->gpr[i->rm], r = (uint16_t)(a << c), cf = (a >> (16 - c)) & 1;
    SET_LOW_WORD(r);
    shift_flags(cpu, r, cf, ((r >> 15) & 1) ^ cf, 2);
}
static void shr_ri2(cpu_t *cpu, const insn_t *i)
{
    unsigned c = (unsigned)i->imm;
    uint32_t a = (uint16_t)cpu->gpr[i->rm], r = a >> c;
    SET_LOW_WORD(r);
    shift_flags(cpu, r, (a >> (c - 1)) & 1, (a >> 15) & 1, 2);
}
static void sar_ri2(cpu_t *cpu, const insn_t *i)
{
    unsigned c = (unsigned)i->imm;
    int32_t a = (int16_t)cpu->gpr[i->rm];
    uint32_t r = (uint16_t)(a >> c);
    SET_LOW_WORD(r);
    shift_flags(cpu, r, (uint64_t)(a >> (c - 1)) & 1, 0, 2);
}
static void shl_ri2_nf(cpu_t *cpu, const insn_t *i) { SET_LOW_WORD((uint32_t)cpu->gpr[i->rm] << i->imm); }
static void shr_ri2_nf(cpu_t *cpu, const insn_t *i) { SET_LOW_WORD((uint16_t)cpu->gpr[i->rm] >> i->imm); }
static void sar_ri2_nf(cpu_t *cpu, const insn_t *i) { SET_LOW_WORD((int16_t)cpu->gpr[i->rm] >> i->imm); }

/* with a count that is not zero (dead_flags only uses these then) */
#define SHIFTS_IMM_NF(T, S, MASK)                                                      \
    static void shl_ri##S##_nf(cpu_t *cpu, const insn_t *i)                           \
    { cpu->gpr[i->rm] = (T)((T)cpu->gpr[i->rm] << ((unsigned)i->imm & MASK)); }       \
    static void shr_ri##S##_nf(cpu_t *cpu, const insn_t *i)                           \
    { cpu->gpr[i->rm] = (T)((T)cpu->gpr[i->rm] >> ((unsigned)i->imm & MASK)); }       \
    static void sar_ri##S##_nf(cpu_t *cpu, const insn_t *i)                           \
    { cpu->gpr[i->rm] = (T)((int64_t)sign_extend((T)cpu->gpr[i->rm], S) >> ((unsigned)i->imm & MASK)); }
SHIFTS_IMM_NF(uint32_t, 4, 31)
SHIFTS_IMM_NF(uint64_t, 8, 63)

typedef struct alu_table { insn_fn rr, ri, rm, mr, mi; } alu_table_t;
#define ALU_ENTRY(op, S) { op##_rr##S, op##_ri##S, op##_rm##S, op##_mr##S, op##_mi##S }
/* indexed by the ALU op of the opcode (0 add .. 7 cmp; 2/3 adc/sbb stay generic), 8 = test */
static const alu_table_t alu4[9] = {
    ALU_ENTRY(add, 4), ALU_ENTRY(or, 4), {0}, {0}, ALU_ENTRY(and, 4), ALU_ENTRY(sub, 4),
    ALU_ENTRY(xor, 4), ALU_ENTRY(cmp, 4), ALU_ENTRY(test, 4) };
static const alu_table_t alu8[9] = {
    ALU_ENTRY(add, 8), ALU_ENTRY(or, 8), {0}, {0}, ALU_ENTRY(and, 8), ALU_ENTRY(sub, 8),
    ALU_ENTRY(xor, 8), ALU_ENTRY(cmp, 8), ALU_ENTRY(test, 8) };

/* ---- MOV, MOVZX, LEA ---- */

static void mov_rr4(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->rm] = (uint32_t)cpu->gpr[i->reg]; }
static void mov_rr8(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->rm] = cpu->gpr[i->reg]; }
static void mov_ri(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->rm] = i->imm & size_mask(i->opsize); }
/* loads and stores for any addressing (ea_of), and for 64-bit addressing from a base
 * register with or without an index, the forms compiled code uses most */
#define EA_ANY ea_of(cpu, i)
#define EA_B (cpu->gpr[i->base] + (uint64_t)i->disp)
#define EA_BI (cpu->gpr[i->base] + (cpu->gpr[i->index] << i->scale) + (uint64_t)i->disp)
#define MOVES(sfx, EA)                                                                 \
    static void mov_load4##sfx(cpu_t *cpu, const insn_t *i)                           \
    { cpu->gpr[i->reg] = mem_read(cpu, i->seg, EA, 4); }                              \
    static void mov_load8##sfx(cpu_t *cpu, const insn_t *i)                           \
    { cpu->gpr[i->reg] = mem_read(cpu, i->seg, EA, 8); }                              \
    static void movzx_load1##sfx(cpu_t *cpu, const insn_t *i)                         \
    { cpu->gpr[i->reg] = mem_read(cpu, i->seg, EA, 1); }                              \
    static void movzx_load2##sfx(cpu_t *cpu, const insn_t *i)                         \
    { cpu->gpr[i->reg] = mem_read(cpu, i->seg, EA, 2); }                              \
    static void mov_store1##sfx(cpu_t *cpu, const insn_t *i)                          \
    { mem_write(cpu, i->seg, EA, 1, reg_read(cpu, i->reg, 1)); }                      \
    static void mov_store2##sfx(cpu_t *cpu, const insn_t *i)                          \
    { mem_write(cpu, i->seg, EA, 2, cpu->gpr[i->reg]); }                              \
    static void mov_store4##sfx(cpu_t *cpu, const insn_t *i)                          \
    { mem_write(cpu, i->seg, EA, 4, cpu->gpr[i->reg]); }                              \
    static void mov_store8##sfx(cpu_t *cpu, const insn_t *i)                          \
    { mem_write(cpu, i->seg, EA, 8, cpu->gpr[i->reg]); }
MOVES(, EA_ANY) MOVES(_b, EA_B) MOVES(_bi, EA_BI)
#define MOVE_FORMS(name) { name, name##_b, name##_bi }
static const struct move_forms { insn_fn any, b, bi; } move_forms[] = {
    MOVE_FORMS(mov_load4), MOVE_FORMS(mov_load8), MOVE_FORMS(movzx_load1), MOVE_FORMS(movzx_load2),
    MOVE_FORMS(mov_store1), MOVE_FORMS(mov_store2), MOVE_FORMS(mov_store4), MOVE_FORMS(mov_store8),
};
static void mov_store_imm1(cpu_t *cpu, const insn_t *i) { mem_write(cpu, i->seg, ea_of(cpu, i), 1, i->imm); }
static void mov_store_imm2(cpu_t *cpu, const insn_t *i) { mem_write(cpu, i->seg, ea_of(cpu, i), 2, i->imm); }
static void mov_store_imm4(cpu_t *cpu, const insn_t *i) { mem_write(cpu, i->seg, ea_of(cpu, i), 4, i->imm); }
static void mov_store_imm8(cpu_t *cpu, const insn_t *i) { mem_write(cpu, i->seg, ea_of(cpu, i), 8, i->imm); }
static void lea(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->reg] = ea_of(cpu, i) & size_mask(i->opsize); }
/* LEA with 64-bit addressing and a base register, with or without an index */
static void lea_b4(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->reg] = (uint32_t)(cpu->gpr[i->base] + (uint64_t)i->disp); }
static void lea_b8(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->reg] = cpu->gpr[i->base] + (uint64_t)i->disp; }
static void lea_bi4(cpu_t *cpu, const insn_t *i)
{ cpu->gpr[i->reg] = (uint32_t)(cpu->gpr[i->base] + (cpu->gpr[i->index] << i->scale) + (uint64_t)i->disp); }
static void lea_bi8(cpu_t *cpu, const insn_t *i)
{ cpu->gpr[i->reg] = cpu->gpr[i->base] + (cpu->gpr[i->index] << i->scale) + (uint64_t)i->disp; }

/* ---- branches ---- */

#define JCC(cc) static void jcc##cc(cpu_t *cpu, const insn_t *i)                      \
    { if (cond_true(cpu, cc)) jump_to(cpu, cpu->next_rip + i->imm, i->opsize); }
JCC(0) JCC(1) JCC(2) JCC(3) JCC(4) JCC(5) JCC(6) JCC(7)
JCC(8) JCC(9) JCC(10) JCC(11) JCC(12) JCC(13) JCC(14) JCC(15)
static const insn_fn jcc_table[16] = { jcc0, jcc1, jcc2, jcc3, jcc4, jcc5, jcc6, jcc7,
                                       jcc8, jcc9, jcc10, jcc11, jcc12, jcc13, jcc14, jcc15 };

/* ---- compare (or SUB, AND of a register) fused with the conditional branch after it:
 * one entry for the pair, whose next_rip is the branch's.  A memory operand is read
 * first, so that a fault is the compare's with nothing changed. ---- */

#define SRC_rr(T) ((T)cpu->gpr[i->reg])
#define SRC_ri(T) ((T)i->imm)
#define BRANCH(cc) if (cond_true(cpu, cc)) jump_to(cpu, cpu->next_rip + i->imm2, i->branch_size)
#define FUSED(op, form, T, S, cc)                                                      \
    static void op##_##form##S##_j##cc(cpu_t *cpu, const insn_t *i)                   \
    {                                                                                  \
        T a = (T)cpu->gpr[i->rm], b = SRC_##form(T), r = (T)OPR_##op(a, b);           \
        set_lazy(cpu, LF_##op, S, r, a, b);                                            \
        if (WRITES_##op) cpu->gpr[i->rm] = r;                                          \
        BRANCH(cc);                                                                    \
    }
/* memory forms: mi = [mem] OP imm, rm = reg OP [mem], mr = [mem] OP reg */
#define MEM_mi(T, S) T a = (T)mem_read(cpu, i->seg, ea_of(cpu, i), S), b = (T)i->imm
#define MEM_rm(T, S) T a = (T)cpu->gpr[i->reg], b = (T)mem_read(cpu, i->seg, ea_of(cpu, i), S)
#define MEM_mr(T, S) T a = (T)mem_read(cpu, i->seg, ea_of(cpu, i), S), b = (T)cpu->gpr[i->reg]
#define FUSED_MEM(op, form, T, S, cc)                                                  \
    static void op##_##form##S##_j##cc(cpu_t *cpu, const insn_t *i)                   \
    {                                                                                  \
        MEM_##form(T, S);                                                              \
        set_lazy(cpu, LF_##op, S, (T)OPR_##op(a, b), a, b);                            \
        BRANCH(cc);                                                                    \
    }
#define CC16(F, op, form, T, S) \
    F(op, form, T, S, 0) F(op, form, T, S, 1) F(op, form, T, S, 2) F(op, form, T, S, 3) \
    F(op, form, T, S, 4) F(op, form, T, S, 5) F(op, form, T, S, 6) F(op, form, T, S, 7) \
    F(op, form, T, S, 8) F(op, form, T, S, 9) F(op, form, T, S, 10) F(op, form, T, S, 11) \
    F(op, form, T, S, 12) F(op, form, T, S, 13) F(op, form, T, S, 14) F(op, form, T, S, 15)
#define FUSED_FORMS(op) CC16(FUSED, op, rr, uint32_t, 4) CC16(FUSED, op, ri, uint32_t, 4) \
                        CC16(FUSED, op, rr, uint64_t, 8) CC16(FUSED, op, ri, uint64_t, 8)
FUSED_FORMS(cmp)
FUSED_FORMS(test)
FUSED_FORMS(sub)
FUSED_FORMS(and)
CC16(FUSED, cmp, rr, uint8_t, 1) CC16(FUSED, cmp, ri, uint8_t, 1)
CC16(FUSED, test, rr, uint8_t, 1) CC16(FUSED, test, ri, uint8_t, 1)
CC16(FUSED_MEM, cmp, mi, uint8_t, 1) CC16(FUSED_MEM, cmp, mi, uint32_t, 4) CC16(FUSED_MEM, cmp, mi, uint64_t, 8)
CC16(FUSED_MEM, cmp, rm, uint32_t, 4) CC16(FUSED_MEM, cmp, rm, uint64_t, 8)
CC16(FUSED_MEM, cmp, mr, uint32_t, 4) CC16(FUSED_MEM, cmp, mr, uint64_t, 8)
CC16(FUSED_MEM, test, mi, uint8_t, 1) CC16(FUSED_MEM, test, mi, uint32_t, 4)

#define FUSABLE(op, form, S) { op##_##form##S, { op##_##form##S##_j0, op##_##form##S##_j1,         \
    op##_##form##S##_j2, op##_##form##S##_j3, op##_##form##S##_j4, op##_##form##S##_j5,               \
    op##_##form##S##_j6, op##_##form##S##_j7, op##_##form##S##_j8, op##_##form##S##_j9,               \
    op##_##form##S##_j10, op##_##form##S##_j11, op##_##form##S##_j12, op##_##form##S##_j13,           \
    op##_##form##S##_j14, op##_##form##S##_j15 } }
#define FUSABLE_REG(op) FUSABLE(op, rr, 4), FUSABLE(op, ri, 4), FUSABLE(op, rr, 8), FUSABLE(op, ri, 8)

static const struct fusable { insn_fn alone; insn_fn with_jcc[16]; } fusable[] = {
    FUSABLE_REG(cmp), FUSABLE_REG(test), FUSABLE_REG(sub), FUSABLE_REG(and),
    FUSABLE(cmp, mi, 1), FUSABLE(cmp, mi, 4), FUSABLE(cmp, mi, 8), FUSABLE(cmp, rm, 4), FUSABLE(cmp, rm, 8),
    FUSABLE(cmp, mr, 4), FUSABLE(cmp, mr, 8), FUSABLE(test, mi, 1), FUSABLE(test, mi, 4),
    FUSABLE(cmp, rr, 1), FUSABLE(cmp, ri, 1), FUSABLE(test, rr, 1), FUSABLE(test, ri, 1),
};

/* Fuse a specialized compare with the Jcc that follows it; returns 1 if done (the Jcc
 * is then part of `cmp` and must not be kept as an entry of its own).  A RIP-relative
 * operand stays alone: the pair's next_rip is not the compare's. */
int fuse_compare_branch(insn_t *cmp, const insn_t *jcc)
{
    if (jcc->fn != jcc_table[jcc->opcode & 0xf] || cmp->fn == NULL || (cmp->has_mem && cmp->base == 0xfe))
        return 0;
    for (size_t k = 0; k < sizeof(fusable) / sizeof(fusable[0]); k++) {
        if (cmp->fn != fusable[k].alone)
            continue;
        cmp->fn = fusable[k].with_jcc[jcc->opcode & 0xf];
        cmp->imm2 = jcc->imm;
        cmp->branch_size = jcc->opsize;
        cmp->len = (uint8_t)(cmp->len + jcc->len);
        cmp->fused = 1;
        cmp->ends_block = jcc->ends_block;
        return 1;
    }
    return 0;
}

/* ---- INC/DEC of a register (CF is kept) ---- */

#define INCDEC(name, T, S, delta, lf)                                                  \
    static void name(cpu_t *cpu, const insn_t *i)                                      \
    {                                                                                  \
        uint64_t c = lazy_carry(cpu);                                                  \
        T a = (T)cpu->gpr[i->rm], r = (T)(a + (T)(delta));                             \
        cpu->gpr[i->rm] = r;                                                           \
        set_lazy(cpu, lf, S, r, a, 1);                                                 \
        cpu->lf_carry_in = c;                                                          \
    }
INCDEC(inc4, uint32_t, 4, 1, LF_INC) INCDEC(inc8, uint64_t, 8, 1, LF_INC)
INCDEC(dec4, uint32_t, 4, -1, LF_DEC) INCDEC(dec8, uint64_t, 8, -1, LF_DEC)
#define INCDEC_NF(name, T, delta) \
    static void name##_nf(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->rm] = (T)((T)cpu->gpr[i->rm] + (T)(delta)); }
INCDEC_NF(inc4, uint32_t, 1) INCDEC_NF(inc8, uint64_t, 1) INCDEC_NF(dec4, uint32_t, -1) INCDEC_NF(dec8, uint64_t, -1)

/* ---- NOT and NEG of a register (NEG's flags are those of SUB 0 - src) ---- */

#define NOTNEG(T, S)                                                                   \
    static void not_r##S(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->rm] = (T)~cpu->gpr[i->rm]; } \
    static void neg_r##S(cpu_t *cpu, const insn_t *i)                                 \
    {                                                                                  \
        T a = (T)cpu->gpr[i->rm], r = (T)(0 - a);                                      \
        set_lazy(cpu, LF_SUB, S, r, 0, a);                                             \
        cpu->gpr[i->rm] = r;                                                           \
    }
NOTNEG(uint32_t, 4) NOTNEG(uint64_t, 8)
static void neg_r4_nf(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->rm] = (uint32_t)(0 - (uint32_t)cpu->gpr[i->rm]); }
static void neg_r8_nf(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->rm] = 0 - cpu->gpr[i->rm]; }

/* ---- ADC and SBB of registers (they read CF) ---- */

#define ADC_SBB(name, T, S, OPR, lf, src)                                              \
    static void name(cpu_t *cpu, const insn_t *i)                                      \
    {                                                                                  \
        uint64_t c = lazy_carry(cpu);                                                  \
        T a = (T)cpu->gpr[i->rm], b = (T)(src), r = (T)(a OPR b OPR (T)c);             \
        cpu->gpr[i->rm] = r;                                                           \
        set_lazy(cpu, lf, S, r, a, b);                                                 \
        cpu->lf_carry_in = c;                                                          \
    }
ADC_SBB(adc_rr4, uint32_t, 4, +, LF_ADC, cpu->gpr[i->reg]) ADC_SBB(adc_rr8, uint64_t, 8, +, LF_ADC, cpu->gpr[i->reg])
ADC_SBB(adc_ri4, uint32_t, 4, +, LF_ADC, i->imm) ADC_SBB(adc_ri8, uint64_t, 8, +, LF_ADC, i->imm)
ADC_SBB(sbb_rr4, uint32_t, 4, -, LF_SBB, cpu->gpr[i->reg]) ADC_SBB(sbb_rr8, uint64_t, 8, -, LF_SBB, cpu->gpr[i->reg])
ADC_SBB(sbb_ri4, uint32_t, 4, -, LF_SBB, i->imm) ADC_SBB(sbb_ri8, uint64_t, 8, -, LF_SBB, i->imm)

/* ---- IMUL reg, reg (and reg, reg, imm): CF and OF say whether the product overflowed ---- */

#define IMUL(S, T, ST, WIDE)                                                           \
    static void imul_rr##S(cpu_t *cpu, const insn_t *i)                               \
    {                                                                                  \
        WIDE p = (WIDE)(ST)cpu->gpr[i->reg] * (ST)cpu->gpr[i->rm];                     \
        T lo = (T)p;                                                                   \
        cpu->gpr[i->reg] = lo;                                                         \
        set_lazy(cpu, LF_MUL, S, lo, p != (WIDE)(ST)lo, 0);                            \
    }                                                                                  \
    static void imul_rri##S(cpu_t *cpu, const insn_t *i)                              \
    {                                                                                  \
        WIDE p = (WIDE)(ST)cpu->gpr[i->rm] * (ST)i->imm;                               \
        T lo = (T)p;                                                                   \
        cpu->gpr[i->reg] = lo;                                                         \
        set_lazy(cpu, LF_MUL, S, lo, p != (WIDE)(ST)lo, 0);                            \
    }                                                                                  \
    static void imul_rr##S##_nf(cpu_t *cpu, const insn_t *i)                          \
    { cpu->gpr[i->reg] = (T)((T)cpu->gpr[i->reg] * (T)cpu->gpr[i->rm]); }              \
    static void imul_rri##S##_nf(cpu_t *cpu, const insn_t *i)                         \
    { cpu->gpr[i->reg] = (T)((T)cpu->gpr[i->rm] * (T)i->imm); }
IMUL(4, uint32_t, int32_t, int64_t)
IMUL(8, uint64_t, int64_t, __int128)

/* ---- MOVZX, MOVSX and MOVSXD into a 32- or 64-bit register (written whole) ---- */

static void movzx_rr1(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->reg] = (uint8_t)cpu->gpr[i->rm]; }
static void movzx_rr2(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->reg] = (uint16_t)cpu->gpr[i->rm]; }
#define MOVSX(name, T, ST, src) \
    static void name(cpu_t *cpu, const insn_t *i) { cpu->gpr[i->reg] = (T)(int64_t)(ST)(src); }
MOVSX(movsx_rr1_4, uint32_t, int8_t, cpu->gpr[i->rm]) MOVSX(movsx_rr1_8, uint64_t, int8_t, cpu->gpr[i->rm])
MOVSX(movsx_rr2_4, uint32_t, int16_t, cpu->gpr[i->rm]) MOVSX(movsx_rr2_8, uint64_t, int16_t, cpu->gpr[i->rm])
MOVSX(movsxd_rr, uint64_t, int32_t, cpu->gpr[i->rm])
MOVSX(movsxd_load, uint64_t, int32_t, mem_read(cpu, i->seg, ea_of(cpu, i), 4))

/* ---- CMOVcc and SETcc of registers (SETcc: AL..R15B): they read the flags ---- */

#define CMOV_SET(cc)                                                                   \
    static void cmov##cc##_4(cpu_t *cpu, const insn_t *i)                             \
    { cpu->gpr[i->reg] = cond_true(cpu, cc) ? (uint32_t)cpu->gpr[i->rm] : (uint32_t)cpu->gpr[i->reg]; } \
    static void cmov##cc##_8(cpu_t *cpu, const insn_t *i)                             \
    { if (cond_true(cpu, cc)) cpu->gpr[i->reg] = cpu->gpr[i->rm]; }                     \
    static void set##cc(cpu_t *cpu, const insn_t *i) { SET_LOW_BYTE(cond_true(cpu, cc)); }
CMOV_SET(0) CMOV_SET(1) CMOV_SET(2) CMOV_SET(3) CMOV_SET(4) CMOV_SET(5) CMOV_SET(6) CMOV_SET(7)
CMOV_SET(8) CMOV_SET(9) CMOV_SET(10) CMOV_SET(11) CMOV_SET(12) CMOV_SET(13) CMOV_SET(14) CMOV_SET(15)
#define CC_TABLE(prefix, suffix) { prefix##0##suffix, prefix##1##suffix, prefix##2##suffix,      \
    prefix##3##suffix, prefix##4##suffix, prefix##5##suffix, prefix##6##suffix, prefix##7##suffix, \
    prefix##8##suffix, prefix##9##suffix, prefix##10##suffix, prefix##11##suffix, prefix##12##suffix, \
    prefix##13##suffix, prefix##14##suffix, prefix##15##suffix }
static const insn_fn cmov4[16] = CC_TABLE(cmov, _4), cmov8[16] = CC_TABLE(cmov, _8), setcc[16] = CC_TABLE(set, );

/* ---- PUSH and POP of a 64-bit register (64-bit mode: the stack pointer does not wrap) ---- */

static void push_r8(cpu_t *cpu, const insn_t *i)
{
    uint64_t v = cpu->gpr[i->rm], sp = cpu->gpr[R_SP] - 8;   /* PUSH RSP pushes the old value */
    mem_write(cpu, S_SS, sp, 8, v);
    cpu->gpr[R_SP] = sp;
}

static void pop_r8(cpu_t *cpu, const insn_t *i)
{
    uint64_t sp = cpu->gpr[R_SP], v = mem_read(cpu, S_SS, sp, 8);
    cpu->gpr[R_SP] = sp + 8;
    cpu->gpr[i->rm] = v;   /* POP RSP: the value popped */
}

/* Register forms that exec_fast.c's tables did not cover (the value of `i->fn`
 * decides; a byte register must be one of AL..R15B). */
static int specialize_more(insn_t *i)
{
    int s = i->opsize, low = !i->has_mem && i->rm < REG_HIGH_BYTE;
    insn_fn fn = i->fn;
    if (s == 1) {
        if (!low || i->lock)
            return 0;
        int test = fn == op_test_rm_r || fn == op_test_rm_imm, op = test ? 8 : i->op;
        if (fn == op_setcc) {
            i->fn = setcc[i->opcode & 0xf];
            return 1;
        }
        if (!(fn == op_alu_rm_r || fn == op_alu_r_rm || fn == op_alu_rm_imm || test) || !alu1r[op].rr)
            return 0;
        if (fn == op_alu_rm_imm || fn == op_test_rm_imm) {
            i->fn = alu1r[op].ri;
            return 1;
        }
        if (i->reg >= REG_HIGH_BYTE)
            return 0;
        if (fn == op_alu_r_rm) {   /* reg OP= rm: swap so that rm names the destination */
            uint8_t r = i->reg;
            i->reg = i->rm;
            i->rm = r;
        }
        i->fn = alu1r[op].rr;
        return 1;
    }
    if (s != 4 && s != 8)
        return 0;
    int w = s == 8;
    if (fn == op_movzx || fn == op_movsx) {
        int two = i->opcode & 1;   /* B7 and BF read a word */
        if (i->has_mem) {
            if (fn == op_movzx && two)
                i->fn = movzx_load2;
            return i->fn != fn;
        }
        if (!two && !low)
            return 0;
        static const insn_fn forms[2][2][2] = {   /* [movsx][word][64-bit] */
            { { movzx_rr1, movzx_rr1 }, { movzx_rr2, movzx_rr2 } },
            { { movsx_rr1_4, movsx_rr1_8 }, { movsx_rr2_4, movsx_rr2_8 } } };
        i->fn = forms[fn == op_movsx][two][w];
        return 1;
    }
    if (fn == op_movsxd && w) {   /* a 64-bit operand: 64-bit mode */
        i->fn = i->has_mem ? movsxd_load : movsxd_rr;
        return 1;
    }
    if (i->has_mem)
        return 0;
    if (fn == op_cmovcc) {
        i->fn = (w ? cmov8 : cmov4)[i->opcode & 0xf];
    } else if (fn == op_imul_r_rm || fn == op_imul_r_rm_imm) {
        static const insn_fn forms[2][2] = { { imul_rr4, imul_rri4 }, { imul_rr8, imul_rri8 } };
        i->fn = forms[w][fn == op_imul_r_rm_imm];
    } else if ((fn == op_alu_rm_r || fn == op_alu_r_rm || fn == op_alu_rm_imm) &&
               (i->op == 2 || i->op == 3) && !i->lock) {
        static const insn_fn forms[2][2][2] = {   /* [sbb][imm][64-bit] */
            { { adc_rr4, adc_rr8 }, { adc_ri4, adc_ri8 } }, { { sbb_rr4, sbb_rr8 }, { sbb_ri4, sbb_ri8 } } };
        if (fn == op_alu_r_rm) {
            uint8_t r = i->reg;
            i->reg = i->rm;
            i->rm = r;
        }
        i->fn = forms[i->op == 3][fn == op_alu_rm_imm][w];
    } else if ((fn == op_push_rm || fn == op_pop_rm) && w) {
        i->fn = fn == op_push_rm ? push_r8 : pop_r8;
    }
    return i->fn != fn;
}

static void specialize_form(insn_t *i);

/* Replace the generic handler of `i` by a specialized one where the form allows; a load
 * or store with 64-bit addressing from a base register computes its address directly. */
void specialize_insn(insn_t *i)
{
    if (!specialize_more(i))
        specialize_form(i);
    if (!i->has_mem || i->addrsize != 8 || i->base >= 16)
        return;
    for (size_t k = 0; k < sizeof(move_forms) / sizeof(move_forms[0]); k++)
        if (i->fn == move_forms[k].any) {
            i->fn = i->index == 0xff ? move_forms[k].b : move_forms[k].bi;
            return;
        }
}

static void specialize_form(insn_t *i)
{
    int s = i->opsize;
    if (i->fn == op_shift && !i->has_mem && (s == 4 || s == 8) &&
        (i->opcode == 0xc1 || i->opcode == 0xd1) && (i->op == 4 || i->op == 5 || i->op == 7)) {
        if (i->opcode == 0xd1)
            i->imm = 1;
        static const insn_fn shifts[2][8] = {
            [0] = { [4] = shl_ri4, [5] = shr_ri4, [7] = sar_ri4 },
            [1] = { [4] = shl_ri8, [5] = shr_ri8, [7] = sar_ri8 } };
        i->fn = shifts[s == 8][i->op];
        return;
    }
    if (i->fn == op_shift && !i->has_mem && s == 2 && (i->opcode == 0xc1 || i->opcode == 0xd1) &&
        (i->op == 4 || i->op == 5 || i->op == 7)) {
        if (i->opcode == 0xd1)
            i->imm = 1;
        if ((i->imm & 31) == 0 || (i->imm & 31) >= 16)
            return;
        i->imm &= 31;
        static const insn_fn shifts[8] = { [4] = shl_ri2, [5] = shr_ri2, [7] = sar_ri2 };
        i->fn = shifts[i->op];
        return;
    }
    if (i->fn == op_shift && !i->has_mem && (s == 4 || s == 8) && i->opcode == 0xd3 &&
        (i->op == 4 || i->op == 5 || i->op == 7)) {
        static const insn_fn shifts[2][8] = {
            [0] = { [4] = shl_rc4, [5] = shr_rc4, [7] = sar_rc4 },
            [1] = { [4] = shl_rc8, [5] = shr_rc8, [7] = sar_rc8 } };
        i->fn = shifts[s == 8][i->op];
        return;
    }
    if (s == 1 && i->has_mem && !i->lock &&
        (i->fn == op_alu_rm_r || i->fn == op_alu_rm_imm || i->fn == op_test_rm_r || i->fn == op_test_rm_imm)) {
        int op = (i->fn == op_test_rm_r || i->fn == op_test_rm_imm) ? 8 : i->op;
        if (alu1[op].mr) {
            i->fn = (i->fn == op_alu_rm_imm || i->fn == op_test_rm_imm) ? alu1[op].mi : alu1[op].mr;
            return;
        }
    }
    if (i->fn == op_mov_rm_imm && i->has_mem) {
        static const insn_fn stores[9] = { [1] = mov_store_imm1, [2] = mov_store_imm2, [4] = mov_store_imm4,
                                           [8] = mov_store_imm8 };
        i->fn = stores[s];
        return;
    }
    if (s != 4 && s != 8) {
        if (i->fn == op_mov_rm_r && i->has_mem)
            i->fn = s == 1 ? mov_store1 : mov_store2;
        return;
    }
    if (i->fn == op_movzx && i->opcode == 0xb6 && i->has_mem) {
        i->fn = movzx_load1;   /* a 32- or 64-bit destination is written whole */
        return;
    }
    const alu_table_t *t = s == 4 ? alu4 : alu8;
    if (i->fn == op_alu_rm_r || i->fn == op_alu_r_rm || i->fn == op_alu_rm_imm ||
        i->fn == op_test_rm_r || i->fn == op_test_rm_imm) {
        int op = (i->fn == op_test_rm_r || i->fn == op_test_rm_imm) ? 8 : i->op;
        if (!t[op].rr || i->lock)
            return;
        if (i->fn == op_alu_rm_imm || i->fn == op_test_rm_imm) {
            i->fn = i->has_mem ? t[op].mi : t[op].ri;
        } else if (!i->has_mem) {
            if (i->fn == op_alu_r_rm) {   /* reg OP= rm: swap so that rm names the destination */
                uint8_t r = i->reg;
                i->reg = i->rm;
                i->rm = r;
            }
            i->fn = t[op].rr;
        } else {
            i->fn = i->fn == op_alu_r_rm ? t[op].rm : t[op].mr;
        }
    } else if (i->fn == op_mov_rm_r) {
        i->fn = i->has_mem ? (s == 4 ? mov_store4 : mov_store8) : (s == 4 ? mov_rr4 : mov_rr8);
    } else if (i->fn == op_mov_r_rm) {
        if (i->has_mem) {
            i->fn = s == 4 ? mov_load4 : mov_load8;
        } else {
            uint8_t r = i->reg;
            i->reg = i->rm;
            i->rm = r;
            i->fn = s == 4 ? mov_rr4 : mov_rr8;
        }
    } else if (i->fn == op_mov_rm_imm) {
        i->fn = mov_ri;
    } else if (i->fn == op_lea) {
        static const insn_fn forms[2][2] = { { lea_b4, lea_b8 }, { lea_bi4, lea_bi8 } };
        int based = i->addrsize == 8 && i->base < 16;
        i->fn = based ? forms[i->index != 0xff][s == 8] : lea;
    } else if (i->fn == op_jcc) {
        i->fn = jcc_table[i->opcode & 0xf];
        i->ends_block = 0;   /* in a block, the not-taken path goes on (run.c) */
    } else if ((i->fn == op_not || i->fn == op_neg) && !i->has_mem) {
        i->fn = i->fn == op_not ? (s == 4 ? not_r4 : not_r8) : (s == 4 ? neg_r4 : neg_r8);
    } else if ((i->fn == op_inc || i->fn == op_dec) && !i->has_mem) {
        i->fn = i->fn == op_inc ? (s == 4 ? inc4 : inc8) : (s == 4 ? dec4 : dec8);
    }
}

/* ---- dead flags: within a block, an instruction whose flags a later one overwrites
 * before anything could see them runs without computing them.  Flags are seen by an
 * instruction that reads them, at a fault or VM exit (an instruction that accesses
 * memory), when a block is left (a taken branch, its end, stop_block after a store or
 * a system instruction), so only register instructions that cannot fault take part.
 * A whole block must run for this to hold: single steps decode afresh (run.c). ---- */

enum { FLAGS_TRANSPARENT, FLAGS_WRITE_ALL, FLAGS_WRITE_SOME, FLAGS_WRITE_ALL_AND_LEAVE, FLAGS_READ };
typedef struct flag_use { insn_fn fn, without_flags; uint8_t kind; } flag_use_t;

#define FU_ALU(op, S) { op##_rr##S, op##_rr##S##_nf, FLAGS_WRITE_ALL }, { op##_ri##S, op##_ri##S##_nf, FLAGS_WRITE_ALL },
#define FU_ALU_BOTH(op) FU_ALU(op, 4) FU_ALU(op, 8)
#define FU_SHIFTS(S) { shl_ri##S, shl_ri##S##_nf, FLAGS_WRITE_ALL }, { shr_ri##S, shr_ri##S##_nf, FLAGS_WRITE_ALL }, \
                     { sar_ri##S, sar_ri##S##_nf, FLAGS_WRITE_ALL },
#define FU_ALU_BYTE(op) { op##_rr1, op##_rr1_nf, FLAGS_WRITE_ALL }, { op##_ri1, op##_ri1_nf, FLAGS_WRITE_ALL },
#define FU_CC(cc) { cmov##cc##_4, NULL, FLAGS_READ }, { cmov##cc##_8, NULL, FLAGS_READ }, \
                  { set##cc, NULL, FLAGS_READ },
static const flag_use_t flag_uses[] = {
    ALU_OPS(FU_ALU_BOTH)
    ALU_OPS(FU_ALU_BYTE)
    FU_CC(0) FU_CC(1) FU_CC(2) FU_CC(3) FU_CC(4) FU_CC(5) FU_CC(6) FU_CC(7)
    FU_CC(8) FU_CC(9) FU_CC(10) FU_CC(11) FU_CC(12) FU_CC(13) FU_CC(14) FU_CC(15)
    { shl_rc4, NULL, FLAGS_READ }, { shr_rc4, NULL, FLAGS_READ }, { sar_rc4, NULL, FLAGS_READ },
    { shl_rc8, NULL, FLAGS_READ }, { shr_rc8, NULL, FLAGS_READ }, { sar_rc8, NULL, FLAGS_READ },
    { imul_rr4, imul_rr4_nf, FLAGS_WRITE_ALL }, { imul_rr8, imul_rr8_nf, FLAGS_WRITE_ALL },
    { imul_rri4, imul_rri4_nf, FLAGS_WRITE_ALL }, { imul_rri8, imul_rri8_nf, FLAGS_WRITE_ALL },
    { adc_rr4, NULL, FLAGS_READ }, { adc_rr8, NULL, FLAGS_READ }, { adc_ri4, NULL, FLAGS_READ },
    { adc_ri8, NULL, FLAGS_READ }, { sbb_rr4, NULL, FLAGS_READ }, { sbb_rr8, NULL, FLAGS_READ },
    { sbb_ri4, NULL, FLAGS_READ }, { sbb_ri8, NULL, FLAGS_READ },
    { movzx_rr1, NULL, FLAGS_TRANSPARENT }, { movzx_rr2, NULL, FLAGS_TRANSPARENT },
    { movsx_rr1_4, NULL, FLAGS_TRANSPARENT }, { movsx_rr1_8, NULL, FLAGS_TRANSPARENT },
    { movsx_rr2_4, NULL, FLAGS_TRANSPARENT }, { movsx_rr2_8, NULL, FLAGS_TRANSPARENT },
    { movsxd_rr, NULL, FLAGS_TRANSPARENT },
    FU_SHIFTS(2) FU_SHIFTS(4) FU_SHIFTS(8)
    { neg_r4, neg_r4_nf, FLAGS_WRITE_ALL }, { neg_r8, neg_r8_nf, FLAGS_WRITE_ALL },
    { inc4, inc4_nf, FLAGS_WRITE_SOME }, { inc8, inc8_nf, FLAGS_WRITE_SOME },   /* CF stays */
    { dec4, dec4_nf, FLAGS_WRITE_SOME }, { dec8, dec8_nf, FLAGS_WRITE_SOME },
    { not_r4, NULL, FLAGS_TRANSPARENT }, { not_r8, NULL, FLAGS_TRANSPARENT },
    { mov_rr4, NULL, FLAGS_TRANSPARENT }, { mov_rr8, NULL, FLAGS_TRANSPARENT },
    { mov_ri, NULL, FLAGS_TRANSPARENT }, { lea, NULL, FLAGS_TRANSPARENT },
    { lea_b4, NULL, FLAGS_TRANSPARENT }, { lea_b8, NULL, FLAGS_TRANSPARENT },
    { lea_bi4, NULL, FLAGS_TRANSPARENT }, { lea_bi8, NULL, FLAGS_TRANSPARENT },
    { op_nop, NULL, FLAGS_TRANSPARENT },
};

static const flag_use_t *flag_use(const insn_t *in)
{
    static const flag_use_t fused_use = { NULL, NULL, FLAGS_WRITE_ALL_AND_LEAVE };
    static const flag_use_t zero_shift = { NULL, NULL, FLAGS_TRANSPARENT };
    if (in->fused)          /* a compare and a branch that reads it */
        return in->has_mem ? NULL : &fused_use;
    for (size_t k = 0; k < sizeof(flag_uses) / sizeof(flag_uses[0]); k++) {
        if (flag_uses[k].fn != in->fn)
            continue;
        int shift = in->fn == shl_ri4 || in->fn == shr_ri4 || in->fn == sar_ri4 ||
                    in->fn == shl_ri8 || in->fn == shr_ri8 || in->fn == sar_ri8;
        unsigned mask = in->opsize == 8 ? 63 : 31;
        return shift && !((unsigned)in->imm & mask) ? &zero_shift : &flag_uses[k];
    }
    return NULL;   /* reads flags, may fault or exit, or may leave the block */
}

/* The memory forms above: none branches, and none reads next_rip unless its operand is
 * RIP-relative. */
static int memory_form(insn_fn fn)
{
    static const insn_fn forms[] = {
        mov_store_imm1, mov_store_imm2, mov_store_imm4, mov_store_imm8, movsxd_load, push_r8, pop_r8,
    };
    for (size_t k = 0; k < sizeof(forms) / sizeof(forms[0]); k++)
        if (fn == forms[k])
            return 1;
    for (size_t k = 0; k < sizeof(move_forms) / sizeof(move_forms[0]); k++)
        if (fn == move_forms[k].any || fn == move_forms[k].b || fn == move_forms[k].bi)
            return 1;
    for (int op = 0; op < 9; op++) {
        if (alu1[op].mr && (fn == alu1[op].mr || fn == alu1[op].mi))
            return 1;
        for (int w = 0; w < 2; w++) {
            const alu_table_t *t = w ? &alu8[op] : &alu4[op];
            if (t->rr && (fn == t->rm || fn == t->mr || fn == t->mi))
                return 1;
        }
    }
    return 0;
}

/* Dead flags, and how run.c's loop runs each entry: the plain instructions among those
 * of the table (all are register instructions that cannot fault, except a RIP-relative
 * LEA), and the memory forms. */
void optimize_block(block_t *b)
{
    int live = 1;   /* whether the flags after instruction k can be seen */
    for (int k = (int)b->n - 1; k >= 0; k--) {
        insn_t *in = &b->insns[k];
        const flag_use_t *u = flag_use(in);
        in->kind = !in->fused && !(in->has_mem && in->base == 0xfe) && memory_form(in->fn) ? INSN_MEMORY
                                                                                               : INSN_FULL;
        if (!u) {
            live = 1;
            continue;
        }
        if (u->kind != FLAGS_WRITE_ALL_AND_LEAVE && !(in->fn == lea && in->base == 0xfe))
            in->kind = INSN_PLAIN;
        switch (u->kind) {
        case FLAGS_WRITE_ALL_AND_LEAVE:
            live = 0;
            break;
        case FLAGS_READ:
            live = 1;
            break;
        case FLAGS_WRITE_ALL:
        case FLAGS_WRITE_SOME:
            if (!live) {
                in->fn = u->without_flags;
                in->flags_dead = 1;
            }
            if (u->kind == FLAGS_WRITE_ALL)
                live = 0;
            break;
        }
    }
}

/* ---- the forms jit.c compiles inline ---- */

#define ALU_INDEX_add 0
#define ALU_INDEX_or 1
#define ALU_INDEX_and 4
#define ALU_INDEX_sub 5
#define ALU_INDEX_xor 6
#define ALU_INDEX_cmp 7
#define ALU_INDEX_test 8
#define FF_ALU(op, S) { op##_rr##S, FS_ALU_RR, ALU_INDEX_##op, S, 0 }, { op##_ri##S, FS_ALU_RI, ALU_INDEX_##op, S, 0 }, \
    { op##_rr##S##_nf, FS_ALU_RR_NF, ALU_INDEX_##op, S, 0 }, { op##_ri##S##_nf, FS_ALU_RI_NF, ALU_INDEX_##op, S, 0 },
#define FF_ALU_RM(op, S) { op##_rm##S, FS_ALU_RM, ALU_INDEX_##op, S, 0 },
#define FF_ALU_BOTH(op) FF_ALU(op, 4) FF_ALU(op, 8) FF_ALU_RM(op, 4) FF_ALU_RM(op, 8)
#define FF_FUSED(op, form, T, S, cc) { op##_##form##S##_j##cc, FS_FUSED_##form, ALU_INDEX_##op, S, cc },
#define FS_FUSED_rr FS_FUSED_RR
#define FS_FUSED_ri FS_FUSED_RI
#define FS_FUSED_rm FS_FUSED_RM
#define FS_FUSED_mr FS_FUSED_MR
#define FS_FUSED_mi FS_FUSED_MI
#define FF_FUSED_FORMS(op) CC16(FF_FUSED, op, rr, , 4) CC16(FF_FUSED, op, ri, , 4) \
                           CC16(FF_FUSED, op, rr, , 8) CC16(FF_FUSED, op, ri, , 8)
static const fast_form_t fast_forms[] = {
    ALU_OPS(FF_ALU_BOTH)
    FF_FUSED_FORMS(cmp) FF_FUSED_FORMS(test) FF_FUSED_FORMS(sub) FF_FUSED_FORMS(and)
    { cmp_mr4, FS_ALU_MR, ALU_INDEX_cmp, 4, 0 }, { cmp_mr8, FS_ALU_MR, ALU_INDEX_cmp, 8, 0 },
    { test_mr4, FS_ALU_MR, ALU_INDEX_test, 4, 0 }, { test_mr8, FS_ALU_MR, ALU_INDEX_test, 8, 0 },
    CC16(FF_FUSED, cmp, rm, , 4) CC16(FF_FUSED, cmp, rm, , 8) CC16(FF_FUSED, cmp, mr, , 4)
    CC16(FF_FUSED, cmp, mr, , 8) CC16(FF_FUSED, cmp, mi, , 4) CC16(FF_FUSED, cmp, mi, , 8)
    CC16(FF_FUSED, test, mi, , 4)
    CC16(FF_FUSED, cmp, rr, , 1) CC16(FF_FUSED, cmp, ri, , 1) CC16(FF_FUSED, test, rr, , 1)
    CC16(FF_FUSED, test, ri, , 1) CC16(FF_FUSED, cmp, mi, , 1) CC16(FF_FUSED, test, mi, , 1)
    { mov_rr4, FS_MOV_RR, 0, 4, 0 }, { mov_rr8, FS_MOV_RR, 0, 8, 0 }, { mov_ri, FS_MOV_RI, 0, 0, 0 },
    { lea, FS_LEA, 0, 0, 0 }, { lea_b4, FS_LEA, 0, 4, 0 }, { lea_b8, FS_LEA, 0, 8, 0 },
    { lea_bi4, FS_LEA, 0, 4, 0 }, { lea_bi8, FS_LEA, 0, 8, 0 },
#define FF_MOVE(name, S, shape) { name, shape, 0, S, 0 }, { name##_b, shape, 0, S, 0 }, \
                                { name##_bi, shape, 0, S, 0 },
    FF_MOVE(movzx_load1, 1, FS_LOAD) FF_MOVE(movzx_load2, 2, FS_LOAD) FF_MOVE(mov_load4, 4, FS_LOAD)
    FF_MOVE(mov_load8, 8, FS_LOAD) FF_MOVE(mov_store1, 1, FS_STORE) FF_MOVE(mov_store2, 2, FS_STORE)
    FF_MOVE(mov_store4, 4, FS_STORE) FF_MOVE(mov_store8, 8, FS_STORE)
    { mov_store_imm1, FS_STORE_IMM, 0, 1, 0 }, { mov_store_imm2, FS_STORE_IMM, 0, 2, 0 },
    { mov_store_imm4, FS_STORE_IMM, 0, 4, 0 }, { mov_store_imm8, FS_STORE_IMM, 0, 8, 0 },
    { op_jmp_rel, FS_JMP, 0, 0, 0 }, { op_call_rel, FS_CALL, 0, 8, 0 },
    { push_r8, FS_PUSH, 0, 8, 0 }, { pop_r8, FS_POP, 0, 8, 0 },
    { shl_ri4_nf, FS_SHIFT_NF, 4, 4, 0 }, { shr_ri4_nf, FS_SHIFT_NF, 5, 4, 0 }, { sar_ri4_nf, FS_SHIFT_NF, 7, 4, 0 },
    { shl_ri8_nf, FS_SHIFT_NF, 4, 8, 0 }, { shr_ri8_nf, FS_SHIFT_NF, 5, 8, 0 }, { sar_ri8_nf, FS_SHIFT_NF, 7, 8, 0 },
    { imul_rr4_nf, FS_IMUL_NF, 0, 4, 0 }, { imul_rr8_nf, FS_IMUL_NF, 0, 8, 0 },
    { inc4_nf, FS_INCDEC_NF, 0, 4, 0 }, { inc8_nf, FS_INCDEC_NF, 0, 8, 0 },
    { dec4_nf, FS_INCDEC_NF, 1, 4, 0 }, { dec8_nf, FS_INCDEC_NF, 1, 8, 0 },
    { movzx_rr1, FS_MOVZX_RR, 0, 1, 0 }, { movzx_rr2, FS_MOVZX_RR, 0, 2, 0 },
    { movsxd_rr, FS_MOVSX_RR, 0, 4, 0 },
#define FF_JCC(cc) { jcc##cc, FS_JCC, 0, 0, cc },
    FF_JCC(0) FF_JCC(1) FF_JCC(2) FF_JCC(3) FF_JCC(4) FF_JCC(5) FF_JCC(6) FF_JCC(7)
    FF_JCC(8) FF_JCC(9) FF_JCC(10) FF_JCC(11) FF_JCC(12) FF_JCC(13) FF_JCC(14) FF_JCC(15)
};

fast_form_t fast_form(insn_fn fn)
{
    for (size_t k = 0; k < sizeof(fast_forms) / sizeof(fast_forms[0]); k++)
        if (fast_forms[k].fn == fn)
            return fast_forms[k];
    return (fast_form_t){ fn, FS_NONE, 0, 0, 0 };
}
