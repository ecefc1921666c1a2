/* The instruction decoder: prefixes, REX, opcode maps, ModRM/SIB and immediates, into
 * an insn_t with the handler that executes it.  Decoding never faults: undefined
 * encodings decode to a handler that raises #UD when executed. */
#include "decode.h"

/* ALU block: op Eb,Gb / Ev,Gv / Gb,Eb / Gv,Ev / AL,Ib / rAX,Iz */
#define ALU(o) E(op_alu_rm_r, M | B, o), E(op_alu_rm_r, M, o), E(op_alu_r_rm, M | B, o), \
               E(op_alu_r_rm, M, o), E(op_alu_rm_imm, B | I8 | ACC, o), E(op_alu_rm_imm, IZ | ACC, o)
#define X8(e) e, e, e, e, e, e, e, e

enum { G1_EB, G1_EV, G1_EV8, G2_EB, G2_EV, G3_EB, G3_EV, G4, G5, G6, G7, G8, G9, G15, G11_EB, G11_EV, G1A, NGROUPS };

static const opdesc_t one_byte[256] = {
    /* 00 */ ALU(0), E(op_push_sreg, I64, S_ES), E(op_pop_sreg, I64 | END, S_ES),
    /* 08 */ ALU(1), E(op_push_sreg, I64, S_CS), UD,
    /* 10 */ ALU(2), E(op_push_sreg, I64, S_SS), E(op_pop_sreg, I64 | END, S_SS),
    /* 18 */ ALU(3), E(op_push_sreg, I64, S_DS), E(op_pop_sreg, I64, S_DS),
    /* 20 */ ALU(4), UD, E(op_daa, I64, 0),
    /* 28 */ ALU(5), UD, E(op_das, I64, 0),
    /* 30 */ ALU(6), UD, E(op_aaa, I64, 0),
    /* 38 */ ALU(7), UD, E(op_aas, I64, 0),
    /* 40 */ X8(E(op_inc, RB, 0)),
    /* 48 */ X8(E(op_dec, RB, 0)),
    /* 50 */ X8(E(op_push_rm, RB | D64, 0)),
    /* 58 */ X8(E(op_pop_rm, RB | D64, 0)),
    /* 60 */ E(op_pusha, I64, 0), E(op_popa, I64, 0), E(op_bound, M | MEMONLY | I64, 0),
             E(op_movsxd, M, 0),
    /* 64 */ UD, UD, UD, UD,
    /* 68 */ E(op_push_imm, IZ | D64, 0), E(op_imul_r_rm_imm, M | IZ, 0),
             E(op_push_imm, I8 | D64, 0), E(op_imul_r_rm_imm, M | I8, 0),
    /* 6c */ E(op_ins, B, 0), E(op_ins, 0, 0), E(op_outs, B, 0), E(op_outs, 0, 0),
    /* 70 */ X8(E(op_jcc, I8 | F64 | END, 0)), X8(E(op_jcc, I8 | F64 | END, 0)),
    /* 80 */ E(NULL, GRP | M | B | I8, G1_EB), E(NULL, GRP | M | IZ, G1_EV),
             E(NULL, GRP | M | B | I8 | I64, G1_EB), E(NULL, GRP | M | I8, G1_EV8),
    /* 84 */ E(op_test_rm_r, M | B, 0), E(op_test_rm_r, M, 0), E(op_xchg, M | B, 0), E(op_xchg, M, 0),
    /* 88 */ E(op_mov_rm_r, M | B, 0), E(op_mov_rm_r, M, 0), E(op_mov_r_rm, M | B, 0), E(op_mov_r_rm, M, 0),
    /* 8c */ E(op_mov_rm_sreg, M, 0), E(op_lea, M | MEMONLY, 0), E(op_mov_sreg_rm, M | END, 0),
             E(NULL, GRP | M | D64, G1A),
    /* 90 */ E(op_xchg, RB | ACC, 0), E(op_xchg, RB | ACC, 0), E(op_xchg, RB | ACC, 0), E(op_xchg, RB | ACC, 0),
             E(op_xchg, RB | ACC, 0), E(op_xchg, RB | ACC, 0), E(op_xchg, RB | ACC, 0), E(op_xchg, RB | ACC, 0),
    /* 98 */ E(op_cbw, 0, 0), E(op_cwd, 0, 0), E(op_call_far, FAR | I64 | END, 0), E(op_wait, 0, 0),
             E(op_pushf, D64, 0), E(op_popf, D64 | END, 0), E(op_sahf, 0, 0), E(op_lahf, 0, 0),
    /* a0 */ E(op_mov_moffs_load, B | MOFFS, 0), E(op_mov_moffs_load, MOFFS, 0),
             E(op_mov_moffs_store, B | MOFFS, 0), E(op_mov_moffs_store, MOFFS, 0),
    /* a4 */ E(op_movs, B, 0), E(op_movs, 0, 0), E(op_cmps, B, 0), E(op_cmps, 0, 0),
    /* a8 */ E(op_test_rm_imm, B | I8 | ACC, 0), E(op_test_rm_imm, IZ | ACC, 0),
             E(op_stos, B, 0), E(op_stos, 0, 0),
    /* ac */ E(op_lods, B, 0), E(op_lods, 0, 0), E(op_scas, B, 0), E(op_scas, 0, 0),
    /* b0 */ X8(E(op_mov_rm_imm, RB | B | I8, 0)),
    /* b8 */ X8(E(op_mov_rm_imm, RB | IV, 0)),
    /* c0 */ E(NULL, GRP | M | B | I8, G2_EB), E(NULL, GRP | M | I8, G2_EV),
             E(op_ret, I16 | F64 | END, 0), E(op_ret, F64 | END, 0),
    /* c4 */ E(op_load_far_ptr, M | MEMONLY | I64, S_ES), E(op_load_far_ptr, M | MEMONLY | I64, S_DS),
             E(NULL, GRP | M | B | I8, G11_EB), E(NULL, GRP | M | IZ, G11_EV),
    /* c8 */ E(op_enter, I16I8 | D64, 0), E(op_leave, D64, 0), E(op_retf, I16 | END, 0), E(op_retf, END, 0),
    /* cc */ E(op_int3, END, 0), E(op_int, I8 | END, 0), E(op_into, I64 | END, 0), E(op_iret, END, 0),
    /* d0 */ E(NULL, GRP | M | B, G2_EB), E(NULL, GRP | M, G2_EV),
             E(NULL, GRP | M | B, G2_EB), E(NULL, GRP | M, G2_EV),
    /* d4 */ E(op_aam, I8 | I64, 0), E(op_aad, I8 | I64, 0), UD, E(op_xlat, 0, 0),
    /* d8 */ X8(E(op_ud, M, 0)),   /* x87: decode_x87() by the ModRM byte */
    /* e0 */ E(op_loop, I8 | F64 | END, 0), E(op_loop, I8 | F64 | END, 1), E(op_loop, I8 | F64 | END, 2),
             E(op_jcxz, I8 | F64 | END, 0),
    /* e4 */ E(op_in, B | I8, 0), E(op_in, I8, 0), E(op_out, B | I8, 0), E(op_out, I8, 0),
    /* e8 */ E(op_call_rel, IZ | F64 | END, 0), E(op_jmp_rel, IZ | F64 | END, 0),
             E(op_jmp_far, FAR | I64 | END, 0), E(op_jmp_rel, I8 | F64 | END, 0),
    /* ec */ E(op_in, B, 1), E(op_in, 0, 1), E(op_out, B, 1), E(op_out, 0, 1),
    /* f0 */ UD, E(op_int1, END, 0), UD, UD, E(op_hlt, END, 0), E(op_cmc, 0, 0),
             E(NULL, GRP | M | B, G3_EB), E(NULL, GRP | M, G3_EV),
    /* f8 */ E(op_clc, 0, 0), E(op_stc, 0, 0), E(op_cli, END, 0), E(op_sti, END, 0),
             E(op_cld, 0, 0), E(op_std, 0, 0), E(NULL, GRP | M | B, G4), E(NULL, GRP | M, G5),
};

#define SHIFTS(fl) E(op_shift, fl, 0), E(op_shift, fl, 1), E(op_shift, fl, 2), E(op_shift, fl, 3), \
                   E(op_shift, fl, 4), E(op_shift, fl, 5), E(op_shift, fl, 4), E(op_shift, fl, 7)
#define G1(fl) E(op_alu_rm_imm, fl, 0), E(op_alu_rm_imm, fl, 1), E(op_alu_rm_imm, fl, 2), \
               E(op_alu_rm_imm, fl, 3), E(op_alu_rm_imm, fl, 4), E(op_alu_rm_imm, fl, 5), \
               E(op_alu_rm_imm, fl, 6), E(op_alu_rm_imm, fl, 7)

static const opdesc_t groups[NGROUPS][8] = {
    [G1_EB] = { G1(0) }, [G1_EV] = { G1(0) }, [G1_EV8] = { G1(0) },
    [G2_EB] = { SHIFTS(0) }, [G2_EV] = { SHIFTS(0) },
    [G3_EB] = { E(op_test_rm_imm, I8, 0), E(op_test_rm_imm, I8, 0), E(op_not, 0, 0), E(op_neg, 0, 0),
                E(op_mul, 0, 0), E(op_imul1, 0, 0), E(op_div, 0, 0), E(op_idiv, 0, 0) },
    [G3_EV] = { E(op_test_rm_imm, IZ, 0), E(op_test_rm_imm, IZ, 0), E(op_not, 0, 0), E(op_neg, 0, 0),
                E(op_mul, 0, 0), E(op_imul1, 0, 0), E(op_div, 0, 0), E(op_idiv, 0, 0) },
    [G4] = { E(op_inc, 0, 0), E(op_dec, 0, 0), UD, UD, UD, UD, UD, UD },
    [G5] = { E(op_inc, 0, 0), E(op_dec, 0, 0), E(op_call_rm, F64 | END, 0), E(op_call_far, MEMONLY | END, 1),
             E(op_jmp_rm, F64 | END, 0), E(op_jmp_far, MEMONLY | END, 1), E(op_push_rm, D64, 0), UD },
    [G6] = { E(op_sldt, 0, 0), E(op_str, 0, 0), E(op_lldt, END, 0), E(op_ltr, END, 0),
             E(op_verr_verw, 0, 0), E(op_verr_verw, 0, 1), UD, UD },
    [G7] = { E(op_sgdt, MEMONLY, 0), E(op_sidt, MEMONLY, 0), E(op_lgdt, MEMONLY | END, 0),
             E(op_lidt, MEMONLY | END, 0), E(op_smsw, 0, 0), UD, E(op_lmsw, END, 0),
             E(op_invlpg, MEMONLY | END, 0) },
    [G8] = { UD, UD, UD, UD, E(op_bt, I8, 0), E(op_bt, I8, 1), E(op_bt, I8, 2), E(op_bt, I8, 3) },
    [G9] = { UD, E(op_cmpxchg8b, MEMONLY, 0), UD, UD, UD, UD,
             E(op_vmx_insn, MEMONLY | END, 0), E(op_vmx_insn, MEMONLY | END, 1) },
    [G15] = { UD, UD, UD, UD, UD, E(op_fence, 0, 0), E(op_fence, 0, 0), E(op_fence, 0, 0) },  /* mod = 3 */
    [G11_EB] = { E(op_mov_rm_imm, 0, 0), UD, UD, UD, UD, UD, UD, UD },
    [G11_EV] = { E(op_mov_rm_imm, 0, 0), UD, UD, UD, UD, UD, UD, UD },
    [G1A] = { E(op_pop_rm, 0, 0), UD, UD, UD, UD, UD, UD, UD },
};

static const opdesc_t two_byte[256] = {
    [0x00] = E(NULL, GRP | M, G6), [0x01] = E(NULL, GRP | M, G7),
    [0x02] = E(op_lar_lsl, M, 0), [0x03] = E(op_lar_lsl, M, 1),
    [0x05] = E(op_syscall, END, 0), [0x06] = E(op_clts, END, 0), [0x07] = E(op_sysret, END, 0), [0x08] = E(op_invd, END, 0), [0x09] = E(op_wbinvd, END, 0),
    [0x0b] = UD, [0x0d] = E(op_nop, M, 0),
    [0x18] = E(op_nop, M, 0), [0x19] = E(op_nop, M, 0), [0x1a] = E(op_nop, M, 0), [0x1b] = E(op_nop, M, 0),
    [0x1c] = E(op_nop, M, 0), [0x1d] = E(op_nop, M, 0), [0x1e] = E(op_nop, M, 0), [0x1f] = E(op_nop, M, 0),
    [0x20] = E(op_mov_r_cr, M | F64, 0), [0x21] = E(op_mov_r_dr, M | F64, 0),
    [0x22] = E(op_mov_cr_r, M | F64 | END, 0), [0x23] = E(op_mov_dr_r, M | F64 | END, 0),
    [0x30] = E(op_wrmsr, END, 0), [0x31] = E(op_rdtsc, 0, 0), [0x32] = E(op_rdmsr, 0, 0),
    [0x33] = E(op_rdpmc, 0, 0), [0x34] = E(op_sysenter, END, 0), [0x35] = E(op_sysexit, END, 0),
    [0x37] = E(op_getsec, 0, 0),
    [0x78] = E(op_vmx_insn, M | F64 | END, 6), [0x79] = E(op_vmx_insn, M | F64 | END, 7),
#define CC16(base, e) [base + 0] = e, [base + 1] = e, [base + 2] = e, [base + 3] = e, \
    [base + 4] = e, [base + 5] = e, [base + 6] = e, [base + 7] = e, [base + 8] = e, [base + 9] = e, \
    [base + 10] = e, [base + 11] = e, [base + 12] = e, [base + 13] = e, [base + 14] = e, [base + 15] = e
    CC16(0x40, E(op_cmovcc, M, 0)),
    CC16(0x80, E(op_jcc, IZ | F64 | END, 0)),
    CC16(0x90, E(op_setcc, M | B, 0)),
    [0xa0] = E(op_push_sreg, D64, S_FS), [0xa1] = E(op_pop_sreg, D64, S_FS),
    [0xa2] = E(op_cpuid, END, 0), [0xa3] = E(op_bt, M, 0),
    [0xa4] = E(op_shld, M | I8, 0), [0xa5] = E(op_shld, M, 1),
    [0xa8] = E(op_push_sreg, D64, S_GS), [0xa9] = E(op_pop_sreg, D64, S_GS),
    [0xab] = E(op_bt, M, 1), [0xac] = E(op_shrd, M | I8, 0), [0xad] = E(op_shrd, M, 1),
    [0xae] = E(NULL, GRP | M, G15), [0xaf] = E(op_imul_r_rm, M, 0),
    [0xb0] = E(op_cmpxchg, M | B, 0), [0xb1] = E(op_cmpxchg, M, 0),
    [0xb2] = E(op_load_far_ptr, M | MEMONLY, S_SS), [0xb3] = E(op_bt, M, 2),
    [0xb4] = E(op_load_far_ptr, M | MEMONLY, S_FS), [0xb5] = E(op_load_far_ptr, M | MEMONLY, S_GS),
    [0xb6] = E(op_movzx, M | RMB, 0), [0xb7] = E(op_movzx, M | RMW, 0),
    [0xb8] = E(op_popcnt, M, 0), [0xba] = E(NULL, GRP | M, G8), [0xbb] = E(op_bt, M, 3),
    [0xbc] = E(op_bsf, M, 0), [0xbd] = E(op_bsr, M, 0),
    [0xbe] = E(op_movsx, M | RMB, 0), [0xbf] = E(op_movsx, M | RMW, 0),
    [0xc0] = E(op_xadd, M | B, 0), [0xc1] = E(op_xadd, M, 0), [0xc7] = E(NULL, GRP | M, G9),
    [0xc8] = E(op_bswap, RB, 0), [0xc9] = E(op_bswap, RB, 0), [0xca] = E(op_bswap, RB, 0),
    [0xcb] = E(op_bswap, RB, 0), [0xcc] = E(op_bswap, RB, 0), [0xcd] = E(op_bswap, RB, 0),
    [0xce] = E(op_bswap, RB, 0), [0xcf] = E(op_bswap, RB, 0),
};

/* 0F 01 with a register ModRM: the instruction is named by the whole ModRM byte. */
static opdesc_t grp7_reg(uint8_t modrm)
{
    switch (modrm) {
    case 0xc1: return (opdesc_t)E(op_vmx_insn, END, 2);  /* VMCALL */
    case 0xc2: return (opdesc_t)E(op_vmx_insn, END, 3);  /* VMLAUNCH */
    case 0xc3: return (opdesc_t)E(op_vmx_insn, END, 4);  /* VMRESUME */
    case 0xc4: return (opdesc_t)E(op_vmx_insn, END, 5);  /* VMXOFF */
    case 0xc8: return (opdesc_t)E(op_monitor, 0, 0);
    case 0xc9: return (opdesc_t)E(op_mwait, END, 0);
    case 0xca: return (opdesc_t)E(op_clac, 0, 0);
    case 0xcb: return (opdesc_t)E(op_stac, 0, 0);
    case 0xd0: return (opdesc_t)E(op_xgetbv, 0, 0);
    case 0xd1: return (opdesc_t)E(op_xsetbv, END, 0);
    case 0xf8: return (opdesc_t)E(op_swapgs, 0, 0);
    case 0xf9: return (opdesc_t)E(op_rdtscp, 0, 0);
    }
    if ((modrm & 0x38) == 0x20)
        return (opdesc_t)E(op_smsw, 0, 0);
    if ((modrm & 0x38) == 0x30)
        return (opdesc_t)E(op_lmsw, END, 0);
    return (opdesc_t)UD;
}

/* LOCK is allowed only on the read-modify-write instructions with a memory
 * destination (SDM Vol. 2 LOCK); anywhere else it makes the instruction #UD. */
static const uint8_t regs16_base[8] = { R_BX, R_BX, R_BP, R_BP, R_SI, R_DI, R_BP, R_BX };
static const uint8_t regs16_index[8] = { R_SI, R_DI, R_SI, R_DI, 0xff, 0xff, 0xff, 0xff };

static inline uint64_t fetch_imm(const uint8_t *p, int size)
{
    switch (size) {
    case 1: return p[0];
    case 2: return (uint64_t)p[0] | (uint64_t)p[1] << 8;
    case 4: return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
    default: return fetch_imm(p, 4) | fetch_imm(p + 4, 4) << 32;
    }
}

/* Decode one instruction from `p` (with `avail` bytes readable) for code of
 * `code_size` bytes.  Returns its length, or -1 if it needs more than `avail` bytes. */
int decode_bytes(const uint8_t *p, int avail, int code_size, insn_t *d)
{
    int pos = 0, opov = 0, adov = 0, rex = 0, long_mode = code_size == 8;
    uint8_t b;
    memset(d, 0, sizeof(*d));
    d->seg_override = S_NONE;
    d->base = d->index = 0xff;
#define NEED(n) do { if (pos + (n) > avail) return avail >= 15 ? -2 : -1; } while (0)
    for (;;) {
        NEED(1);
        b = p[pos];
        switch (b) {
        case 0x66: opov = 1; break;
        case 0x67: adov = 1; break;
        case 0xf2: d->rep = PFX_REPNE; break;
        case 0xf3: d->rep = PFX_REP; break;
        case 0xf0: d->lock = 1; break;
        case 0x26: d->seg_override = S_ES; break;
        case 0x2e: d->seg_override = S_CS; break;
        case 0x36: d->seg_override = S_SS; break;
        case 0x3e: d->seg_override = S_DS; break;
        case 0x64: d->seg_override = S_FS; break;
        case 0x65: d->seg_override = S_GS; break;
        default:
            if (long_mode && (b & 0xf0) == 0x40) {
                rex = b;
                pos++;
                continue;
            }
            goto prefixes_done;
        }
        pos++;
        rex = 0;   /* a REX prefix counts only right before the opcode */
    }
prefixes_done:
    pos++;
    opdesc_t od;
    int two = 0;
    int pfx = d->rep == PFX_REP ? SIMD_F3 : d->rep == PFX_REPNE ? SIMD_F2 : opov ? SIMD_66 : SIMD_NONE;
    if (b == 0x0f) {
        NEED(1);
        b = p[pos++];
        two = 1;
        if (b == 0x38) {
            NEED(1);
            uint8_t b3 = p[pos++];
            if ((b3 == 0xf0 || b3 == 0xf1) && d->rep == 0)   /* F2: CRC32 */
                od = (opdesc_t)E(op_movbe, M, (uint8_t)(b3 & 1));
            else if ((b3 == 0x80 || b3 == 0x81) && opov)
                od = (opdesc_t)E(op_vmx_insn, M | F64 | MEMONLY | END, (uint8_t)(8 + (b3 & 1)));
            else
                od = decode_simd(2, b3, pfx);
        } else if (b == 0x3a) {
            NEED(1);
            od = decode_simd(3, p[pos++], pfx);
        } else {
            od = two_byte[b];
            if (!od.fn && !(od.flags & GRP))
                od = decode_simd(1, b, pfx);
            /* mandatory-prefix forms */
            if (b == 0xb8 && d->rep != PFX_REP) od = (opdesc_t)UD;
            if (b == 0xbc && d->rep == PFX_REP) od = (opdesc_t)E(op_tzcnt, M, 0);
            if (b == 0xbd && d->rep == PFX_REP) od = (opdesc_t)E(op_lzcnt, M, 0);
        }
    } else {
        od = one_byte[b];
    }
    d->opcode = b;

    uint8_t modrm = 0;
    int mod = 3, reg = 0, rm = 0;
    if (od.flags & M) {
        NEED(1);
        modrm = p[pos++];
        mod = modrm >> 6;
        if (two && (b & 0xfc) == 0x20)
            mod = 3;   /* MOV to/from CR/DR: the operand is always a register */
        reg = (modrm >> 3) & 7;
        rm = modrm & 7;
        if (!two && (b & 0xf8) == 0xd8) {
            od = decode_x87(b, modrm);
            d->imm = modrm;   /* the x87 opcode register (FOP) records it */
        }
        if (od.flags & GRP) {
            uint32_t outer = od.flags;
            if (two && b == 0x01 && mod == 3)
                od = grp7_reg(modrm);
            else if (two && b == 0xc7 && mod != 3 && reg >= 6)
                od = groups[G9][reg];   /* VMPTRLD/VMPTRST (and VMCLEAR/VMXON by prefix) */
            else if (two && b == 0xc7 && mod == 3)
                od = (opdesc_t)UD;
            else if (two && b == 0xae && mod != 3 && reg == 7)
                od = (opdesc_t)E(op_clflush, 0, 0);
            else if (two && b == 0xae && mod != 3)
                od = decode_simd(1, 0xae, pfx);   /* FXSAVE, LDMXCSR, XSAVE, ... */
            else
                od = groups[od.op][reg];
            od.flags |= outer & ~(uint32_t)GRP;
            if ((outer & IZ) && od.fn != op_alu_rm_imm && od.fn != op_mov_rm_imm)
                od.flags &= ~(uint32_t)IZ;
            if ((outer & I8) && (outer & GRP) && od.fn == op_ud)
                od.flags &= ~(uint32_t)I8;
        }
    }
    d->op = od.op;
    d->fn = od.fn;

    /* operand and address size */
    if (od.flags & B)
        d->opsize = 1;
    else if (long_mode) {
        if (rex & 8)
            d->opsize = 8;
        else if (od.flags & F64)
            d->opsize = 8;
        else if (od.flags & D64)
            d->opsize = opov ? 2 : 8;
        else
            d->opsize = opov ? 2 : 4;
    } else {
        d->opsize = (code_size == 4) ^ opov ? 4 : 2;
    }
    if (long_mode)
        d->addrsize = adov ? 4 : 8;
    else
        d->addrsize = (code_size == 4) ^ adov ? 4 : 2;
    if (long_mode && (od.flags & I64))
        d->fn = op_ud;

    /* registers */
    int rex_r = (rex & 4) ? 8 : 0, rex_x = (rex & 2) ? 8 : 0, rex_b = (rex & 1) ? 8 : 0;
    int reg_is_byte = (od.flags & B) != 0;
    int rm_is_byte = (od.flags & (B | RMB)) != 0;
    d->reg = (uint8_t)(reg | rex_r);
    if (reg_is_byte && !rex && reg >= 4)
        d->reg = (uint8_t)(REG_HIGH_BYTE + reg - 4);
    if (od.flags & RB) {
        int r = (b & 7) | rex_b;
        d->rm = (uint8_t)r;
        if (rm_is_byte && !rex && (b & 7) >= 4)
            d->rm = (uint8_t)(REG_HIGH_BYTE + (b & 7) - 4);
        d->reg = d->rm;
    }
    if (od.flags & ACC)
        d->rm = R_AX;

    if (od.flags & M) {
        if (mod == 3) {
            d->rm = (uint8_t)(rm | rex_b);
            if (rm_is_byte && !rex && rm >= 4)
                d->rm = (uint8_t)(REG_HIGH_BYTE + rm - 4);
            if (od.flags & MEMONLY)
                d->fn = op_ud;
        } else {
            d->has_mem = 1;
            if (od.flags & REGONLY)
                d->fn = op_ud;
            int default_ss = 0;
            if (d->addrsize == 2) {
                if (mod == 0 && rm == 6) {
                    NEED(2);
                    d->disp = (int16_t)fetch_imm(p + pos, 2);
                    pos += 2;
                } else {
                    d->base = regs16_base[rm];
                    d->index = regs16_index[rm];
                    default_ss = d->base == R_BP;
                }
                if (mod == 1) { NEED(1); d->disp = (int8_t)p[pos]; pos += 1; }
                if (mod == 2) { NEED(2); d->disp = (int16_t)fetch_imm(p + pos, 2); pos += 2; }
            } else {
                if (rm == 4) {
                    NEED(1);
                    uint8_t sib = p[pos++];
                    int base = sib & 7, index = ((sib >> 3) & 7) | rex_x;
                    d->scale = sib >> 6;
                    if (index != 4)
                        d->index = (uint8_t)index;
                    if (base == 5 && mod == 0) {
                        NEED(4);
                        d->disp = (int32_t)fetch_imm(p + pos, 4);
                        pos += 4;
                    } else {
                        d->base = (uint8_t)(base | rex_b);
                        default_ss = base == R_SP || base == R_BP;
                    }
                } else if (rm == 5 && mod == 0) {
                    NEED(4);
                    d->disp = (int32_t)fetch_imm(p + pos, 4);
                    pos += 4;
                    if (long_mode)
                        d->base = 0xfe;   /* RIP-relative */
                } else {
                    d->base = (uint8_t)(rm | rex_b);
                    default_ss = rm == R_BP;
                }
                if (mod == 1) { NEED(1); d->disp = (int8_t)p[pos]; pos += 1; }
                if (mod == 2) { NEED(4); d->disp = (int32_t)fetch_imm(p + pos, 4); pos += 4; }
            }
            d->seg = d->seg_override != S_NONE ? d->seg_override : (default_ss ? S_SS : S_DS);
        }
    }
    if (!d->has_mem)
        d->seg = d->seg_override != S_NONE ? d->seg_override : S_DS;

    /* immediates */
    if (od.flags & I8) {
        NEED(1);
        d->imm = (uint64_t)(int64_t)(int8_t)p[pos];
        pos += 1;
    } else if (od.flags & I16) {
        NEED(2);
        d->imm = fetch_imm(p + pos, 2);
        pos += 2;
    } else if (od.flags & IZ) {
        int n = d->opsize == 2 ? 2 : 4;
        NEED(n);
        d->imm = fetch_imm(p + pos, n);
        d->imm = n == 2 ? (uint64_t)(int64_t)(int16_t)d->imm : (uint64_t)(int64_t)(int32_t)d->imm;
        pos += n;
    } else if (od.flags & IV) {
        NEED(d->opsize);
        d->imm = fetch_imm(p + pos, d->opsize);
        pos += d->opsize;
    } else if (od.flags & MOFFS) {
        NEED(d->addrsize);
        d->disp = (int64_t)fetch_imm(p + pos, d->addrsize);
        pos += d->addrsize;
        d->has_mem = 1;
        d->seg = d->seg_override != S_NONE ? d->seg_override : S_DS;
    } else if (od.flags & FAR) {
        int n = d->opsize == 2 ? 2 : 4;
        NEED(n + 2);
        d->imm = fetch_imm(p + pos, n);
        d->imm2 = fetch_imm(p + pos + n, 2);
        pos += n + 2;
    } else if (od.flags & I16I8) {
        NEED(3);
        d->imm = fetch_imm(p + pos, 2);
        d->imm2 = p[pos + 2];
        pos += 3;
    }
    if (pos > 15) {
        d->fn = op_ud;
        d->op = 0xff;   /* too long: #GP(0) rather than #UD */
    }
    d->len = (uint8_t)pos;
    if (d->lock || (d->fn == op_xchg && d->has_mem))
        apply_lock_prefix(d);   /* XCHG with memory is locked without the prefix */
    d->ends_block = (od.flags & END) != 0;
    if (d->fn == op_ud)
        d->ends_block = 1;
    return pos;
#undef NEED
}
