/* Integer arithmetic and logic: ALU ops, inc/dec, multiply/divide, shifts and rotates,
 * bit tests and scans, BCD adjust, exchange-and-compare, condition codes. */
#include "exec.h"

/* ALU operation `op` (the group 1 numbering): its result, and with alu_flags() the
 * flags it leaves.  Instructions that store the result record the flags after the
 * store, so that a store that faults leaves the flags as they were. */
static uint64_t alu_result(cpu_t *cpu, int op, int size, uint64_t a, uint64_t b)
{
    uint64_t r;
    switch (op) {
    case 0: r = a + b; break;
    case 1: r = a | b; break;
    case 2: r = a + b + lazy_carry(cpu); break;
    case 3: r = a - b - lazy_carry(cpu); break;
    case 4: r = a & b; break;
    case 6: r = a ^ b; break;
    default: r = a - b; break; /* SUB, CMP */
    }
    return r & size_mask(size);
}

static void alu_flags(cpu_t *cpu, int op, int size, uint64_t a, uint64_t b, uint64_t r)
{
    static const uint8_t lazy_op[8] = { LF_ADD, LF_LOGIC, LF_ADC, LF_SBB, LF_LOGIC, LF_SUB, LF_LOGIC, LF_SUB };
    uint64_t m = size_mask(size);
    uint64_t c = (op == 2 || op == 3) ? lazy_carry(cpu) : 0;
    set_lazy(cpu, lazy_op[op], size, r, a & m, b & m);
    cpu->lf_carry_in = c;
}

/* An ALU operation whose result nothing stores (CMP, TEST) or only a register holds
 * (also the computation of the locked forms in exec_atomic.c). */
uint64_t alu(cpu_t *cpu, int op, int size, uint64_t a, uint64_t b)
{
    uint64_t r = alu_result(cpu, op, size, a & size_mask(size), b & size_mask(size));
    alu_flags(cpu, op, size, a, b, r);
    return r;
}

/* op r/m, src: store the result (not for CMP), then record the flags. */
static void alu_to_rm(cpu_t *cpu, const insn_t *i, uint64_t src)
{
    int size = i->opsize;
    uint64_t m = size_mask(size);
    uint64_t ea = opr_ea(cpu, i);
    uint64_t dst = opr_read(cpu, i, ea, size) & m;
    uint64_t r = alu_result(cpu, i->op, size, dst, src & m);
    if (i->op != 7)
        opr_write(cpu, i, ea, size, r);
    alu_flags(cpu, i->op, size, dst, src, r);
}

void op_alu_rm_r(cpu_t *cpu, const insn_t *i)
{
    alu_to_rm(cpu, i, reg_read(cpu, i->reg, i->opsize));
}

void op_alu_r_rm(cpu_t *cpu, const insn_t *i)
{
    uint64_t r = alu(cpu, i->op, i->opsize, reg_read(cpu, i->reg, i->opsize), rm_read(cpu, i, i->opsize));
    if (i->op != 7)
        reg_write(cpu, i->reg, i->opsize, r);
}

void op_alu_rm_imm(cpu_t *cpu, const insn_t *i)
{
    alu_to_rm(cpu, i, i->imm);
}

void op_test_rm_r(cpu_t *cpu, const insn_t *i)
{
    alu(cpu, 4, i->opsize, rm_read(cpu, i, i->opsize), reg_read(cpu, i->reg, i->opsize));
}

void op_test_rm_imm(cpu_t *cpu, const insn_t *i)
{
    alu(cpu, 4, i->opsize, rm_read(cpu, i, i->opsize), i->imm);
}

static void inc_dec(cpu_t *cpu, const insn_t *i, int delta, int lf)
{
    uint64_t ea = opr_ea(cpu, i);
    uint64_t a = opr_read(cpu, i, ea, i->opsize);
    uint64_t c = lazy_carry(cpu);
    uint64_t r = (a + (uint64_t)(int64_t)delta) & size_mask(i->opsize);
    opr_write(cpu, i, ea, i->opsize, r);
    set_lazy(cpu, lf, i->opsize, r, a, 1);
    cpu->lf_carry_in = c;
}

void op_inc(cpu_t *cpu, const insn_t *i) { inc_dec(cpu, i, 1, LF_INC); }
void op_dec(cpu_t *cpu, const insn_t *i) { inc_dec(cpu, i, -1, LF_DEC); }

void op_not(cpu_t *cpu, const insn_t *i)
{
    uint64_t ea = opr_ea(cpu, i);
    opr_write(cpu, i, ea, i->opsize, ~opr_read(cpu, i, ea, i->opsize));
}

void op_neg(cpu_t *cpu, const insn_t *i)
{
    uint64_t ea = opr_ea(cpu, i);
    uint64_t a = opr_read(cpu, i, ea, i->opsize) & size_mask(i->opsize);
    uint64_t r = alu_result(cpu, 5, i->opsize, 0, a);
    opr_write(cpu, i, ea, i->opsize, r);
    alu_flags(cpu, 5, i->opsize, 0, a, r);
}

/* Flags after MUL/IMUL: CF = OF = the high half is significant; SF/ZF/PF follow the
 * low half (architecturally undefined; this is what current Intel cores do). */
static void mul_flags(cpu_t *cpu, int overflow, uint64_t low, int size)
{
    uint64_t f = parity_flag(low);
    if ((low & size_mask(size)) == 0) f |= F_ZF;
    if (low & (1ull << (size * 8 - 1))) f |= F_SF;
    if (overflow) f |= F_CF | F_OF;
    set_arith_flags(cpu, f);
}

static void write_acc_pair(cpu_t *cpu, int size, uint64_t lo, uint64_t hi)
{
    if (size == 1) {
        reg_write(cpu, R_AX, 2, (lo & 0xff) | ((hi & 0xff) << 8));
    } else {
        reg_write(cpu, R_AX, size, lo);
        reg_write(cpu, R_DX, size, hi);
    }
}

void op_mul(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t b = rm_read(cpu, i, size), a = reg_read(cpu, R_AX, size);
    unsigned __int128 p = (unsigned __int128)a * b;
    uint64_t lo = (uint64_t)p & size_mask(size);
    uint64_t hi = size == 8 ? (uint64_t)(p >> 64) : ((uint64_t)p >> (size * 8)) & size_mask(size);
    write_acc_pair(cpu, size, lo, hi);
    mul_flags(cpu, hi != 0, lo, size);
}

void op_imul1(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    int64_t b = (int64_t)sign_extend(rm_read(cpu, i, size), size);
    int64_t a = (int64_t)sign_extend(reg_read(cpu, R_AX, size), size);
    __int128 p = (__int128)a * b;
    uint64_t lo = (uint64_t)p & size_mask(size);
    uint64_t hi = size == 8 ? (uint64_t)(p >> 64) : ((uint64_t)(p >> (size * 8))) & size_mask(size);
    int overflow = p != (__int128)(int64_t)sign_extend(lo, size);
    write_acc_pair(cpu, size, lo, hi);
    mul_flags(cpu, overflow, lo, size);
}

static void imul_into_reg(cpu_t *cpu, const insn_t *i, uint64_t x, uint64_t y)
{
    int size = i->opsize;
    __int128 p = (__int128)(int64_t)sign_extend(x, size) * (int64_t)sign_extend(y, size);
    uint64_t lo = (uint64_t)p & size_mask(size);
    reg_write(cpu, i->reg, size, lo);
    mul_flags(cpu, p != (__int128)(int64_t)sign_extend(lo, size), lo, size);
}

void op_imul_r_rm(cpu_t *cpu, const insn_t *i)
{
    imul_into_reg(cpu, i, reg_read(cpu, i->reg, i->opsize), rm_read(cpu, i, i->opsize));
}

void op_imul_r_rm_imm(cpu_t *cpu, const insn_t *i)
{
    imul_into_reg(cpu, i, rm_read(cpu, i, i->opsize), i->imm);
}

static unsigned __int128 dividend(cpu_t *cpu, int size)
{
    if (size == 1)
        return reg_read(cpu, R_AX, 2);
    return ((unsigned __int128)reg_read(cpu, R_DX, size) << (size * 8)) | reg_read(cpu, R_AX, size);
}

void op_div(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t d = rm_read(cpu, i, size);
    if (d == 0)
        FAULT(cpu, EXC_DE);
    unsigned __int128 n = dividend(cpu, size);
    unsigned __int128 q = n / d;
    if (q > size_mask(size))
        FAULT(cpu, EXC_DE);
    write_acc_pair(cpu, size, (uint64_t)q, (uint64_t)(n % d));
}

void op_idiv(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    int64_t d = (int64_t)sign_extend(rm_read(cpu, i, size), size);
    if (d == 0)
        FAULT(cpu, EXC_DE);
    unsigned __int128 raw = dividend(cpu, size);
    __int128 n;
    if (size == 8)
        n = (__int128)raw;
    else
        n = (__int128)(int64_t)sign_extend((uint64_t)raw, size * 2);
    if (size == 8 && raw == ((unsigned __int128)1 << 127) && d == -1)
        FAULT(cpu, EXC_DE);
    __int128 q = n / d, r = n % d;
    __int128 lim = (__int128)1 << (size * 8 - 1);
    if (q >= lim || q < -lim)
        FAULT(cpu, EXC_DE);
    write_acc_pair(cpu, size, (uint64_t)q & size_mask(size), (uint64_t)r & size_mask(size));
}

/* A zero count leaves the destination's value alone, but a 32-bit register destination
 * is still written: its upper half is cleared, as by any 32-bit result. */
static void zero_count_result(cpu_t *cpu, const insn_t *i)
{
    if (i->opsize == 4 && !i->has_mem)
        reg_write(cpu, i->rm, 4, reg_read(cpu, i->rm, 4));
}

/* Shifts and rotates (group 2): i->op is the ModRM.reg operation. */
void op_shift(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize, bits = size * 8;
    uint64_t count;
    if (i->opcode == 0xc0 || i->opcode == 0xc1)
        count = i->imm;
    else if (i->opcode == 0xd0 || i->opcode == 0xd1)
        count = 1;
    else
        count = cpu->gpr[R_CX];
    count &= size == 8 ? 0x3f : 0x1f;
    uint64_t ea = opr_ea(cpu, i);
    uint64_t m = size_mask(size), sign = 1ull << (bits - 1);
    uint64_t a = opr_read(cpu, i, ea, size) & m;
    if (count == 0) {
        zero_count_result(cpu, i);
        return;
    }
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH;
    uint64_t r, cf;
    switch (i->op) {
    case 0: { /* ROL */
        unsigned c = (unsigned)(count % bits);
        r = c ? ((a << c) | (a >> (bits - c))) & m : a;
        cf = r & 1;
        f = (f & ~(uint64_t)(F_CF | F_OF)) | (cf ? F_CF : 0) | ((!!(r & sign) ^ cf) ? F_OF : 0);
        break;
    }
    case 1: { /* ROR */
        unsigned c = (unsigned)(count % bits);
        r = c ? ((a >> c) | (a << (bits - c))) & m : a;
        cf = !!(r & sign);
        f = (f & ~(uint64_t)(F_CF | F_OF)) | (cf ? F_CF : 0) |
            ((!!(r & sign) ^ !!(r & (sign >> 1))) ? F_OF : 0);
        break;
    }
    case 2: { /* RCL */
        unsigned c = (unsigned)(count % (bits + 1));
        r = a;
        cf = !!(f & F_CF);
        for (unsigned k = 0; k < c; k++) {
            uint64_t out = !!(r & sign);
            r = ((r << 1) | cf) & m;
            cf = out;
        }
        f = (f & ~(uint64_t)(F_CF | F_OF)) | (cf ? F_CF : 0) | ((!!(r & sign) ^ cf) ? F_OF : 0);
        break;
    }
    case 3: { /* RCR */
        unsigned c = (unsigned)(count % (bits + 1));
        r = a;
        cf = !!(f & F_CF);
        uint64_t of = (!!(a & sign) ^ cf) ? F_OF : 0;
        for (unsigned k = 0; k < c; k++) {
            uint64_t out = r & 1;
            r = (r >> 1) | (cf ? sign : 0);
            cf = out;
        }
        f = (f & ~(uint64_t)(F_CF | F_OF)) | (cf ? F_CF : 0) | of;
        break;
    }
    default: { /* SHL, SHR, SAR */
        if (i->op == 4) {
            r = count >= 64 ? 0 : (a << count) & m;
            cf = count <= (uint64_t)bits ? (a >> (bits - count)) & 1 : 0;
            f = (cf ? F_CF : 0) | ((!!(r & sign) ^ cf) ? F_OF : 0);
        } else if (i->op == 5) {
            r = count >= 64 ? 0 : a >> count;
            cf = count <= (uint64_t)bits ? (a >> (count - 1)) & 1 : 0;
            f = (cf ? F_CF : 0) | ((a & sign) ? F_OF : 0);
        } else {
            int64_t sa = (int64_t)sign_extend(a, size);
            unsigned shift = count >= (uint64_t)bits ? (unsigned)bits - 1 : (unsigned)count;
            unsigned last = count > (uint64_t)bits ? (unsigned)bits - 1 : (unsigned)count - 1;
            r = (uint64_t)(sa >> shift) & m;
            cf = (uint64_t)(sa >> last) & 1;
            f = cf ? F_CF : 0;
        }
        f |= parity_flag(r) | (r == 0 ? F_ZF : 0) | ((r & sign) ? F_SF : 0);
        break;
    }
    }
    opr_write(cpu, i, ea, size, r);
    set_arith_flags(cpu, f);
}

static void double_shift(cpu_t *cpu, const insn_t *i, int left)
{
    int size = i->opsize, bits = size * 8;
    uint64_t count = (i->op ? cpu->gpr[R_CX] : i->imm) & (size == 8 ? 0x3f : 0x1f);
    uint64_t ea = opr_ea(cpu, i);
    uint64_t m = size_mask(size), sign = 1ull << (bits - 1);
    uint64_t a = opr_read(cpu, i, ea, size) & m, b = reg_read(cpu, i->reg, size) & m;
    if (count == 0) {
        zero_count_result(cpu, i);
        return;
    }
    uint64_t r, cf;
    if (size == 2 && count > 16) {
        /* undefined by the SDM; shift through the 48-bit value a:b:a as Intel cores do */
        uint64_t cat = left ? (a << 32) | (b << 16) | a : a | (b << 16) | (a << 32);
        r = left ? ((cat << count) >> 32) & m : (cat >> count) & m;
        cf = left ? (cat >> (48 - count)) & 1 : (cat >> (count - 1)) & 1;
    } else if (left) {
        r = ((a << count) | (b >> (bits - count))) & m;
        cf = (a >> (bits - count)) & 1;
    } else {
        r = ((a >> count) | (b << (bits - count))) & m;
        cf = (a >> (count - 1)) & 1;
    }
    uint64_t f = (cf ? F_CF : 0) | parity_flag(r) | (r == 0 ? F_ZF : 0) | ((r & sign) ? F_SF : 0) |
                 (((r ^ a) & sign) ? F_OF : 0);
    opr_write(cpu, i, ea, size, r);
    set_arith_flags(cpu, f);
}

void op_shld(cpu_t *cpu, const insn_t *i) { double_shift(cpu, i, 1); }
void op_shrd(cpu_t *cpu, const insn_t *i) { double_shift(cpu, i, 0); }

/* BT, BTS, BTR, BTC (i->op 0..3); a register bit offset reaches beyond a memory operand. */
void op_bt(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize, bits = size * 8;
    uint64_t ea = opr_ea(cpu, i);
    uint64_t bit;
    if (i->opcode == 0xba) {
        bit = i->imm & (uint64_t)(bits - 1);
    } else {
        int64_t off = (int64_t)sign_extend(reg_read(cpu, i->reg, size), size);
        if (i->has_mem) {
            int64_t unit = off >> (size == 2 ? 4 : size == 4 ? 5 : 6);
            ea = (ea + (uint64_t)(unit * size)) & size_mask(i->addrsize);
        }
        bit = (uint64_t)off & (uint64_t)(bits - 1);
    }
    uint64_t v = opr_read(cpu, i, ea, size);
    uint64_t cf = (v >> bit) & 1;
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_CF;
    if (i->op) {
        if (i->op == 1) v |= 1ull << bit;
        else if (i->op == 2) v &= ~(1ull << bit);
        else v ^= 1ull << bit;
        opr_write(cpu, i, ea, size, v);
    }
    set_arith_flags(cpu, f | (cf ? F_CF : 0));
}

static void scan_flags(cpu_t *cpu, uint64_t f)
{
    set_arith_flags(cpu, f);
}

void op_bsf(cpu_t *cpu, const insn_t *i)
{
    uint64_t v = rm_read(cpu, i, i->opsize);
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_ZF;
    if (v == 0) {
        scan_flags(cpu, f | F_ZF);
        return;  /* destination unchanged */
    }
    reg_write(cpu, i->reg, i->opsize, (uint64_t)__builtin_ctzll(v));
    scan_flags(cpu, f);
}

void op_bsr(cpu_t *cpu, const insn_t *i)
{
    uint64_t v = rm_read(cpu, i, i->opsize);
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_ZF;
    if (v == 0) {
        scan_flags(cpu, f | F_ZF);
        return;
    }
    reg_write(cpu, i->reg, i->opsize, (uint64_t)(63 - __builtin_clzll(v)));
    scan_flags(cpu, f);
}

void op_tzcnt(cpu_t *cpu, const insn_t *i)
{
    int bits = i->opsize * 8;
    uint64_t v = rm_read(cpu, i, i->opsize);
    uint64_t r = v ? (uint64_t)__builtin_ctzll(v) : (uint64_t)bits;
    reg_write(cpu, i->reg, i->opsize, r);
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)(F_CF | F_ZF);
    scan_flags(cpu, f | (v == 0 ? F_CF : 0) | (r == 0 ? F_ZF : 0));
}

void op_lzcnt(cpu_t *cpu, const insn_t *i)
{
    int bits = i->opsize * 8;
    uint64_t v = rm_read(cpu, i, i->opsize);
    uint64_t r = v ? (uint64_t)(__builtin_clzll(v) - (64 - bits)) : (uint64_t)bits;
    reg_write(cpu, i->reg, i->opsize, r);
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)(F_CF | F_ZF);
    scan_flags(cpu, f | (v == 0 ? F_CF : 0) | (r == 0 ? F_ZF : 0));
}

void op_popcnt(cpu_t *cpu, const insn_t *i)
{
    uint64_t v = rm_read(cpu, i, i->opsize);
    reg_write(cpu, i->reg, i->opsize, (uint64_t)__builtin_popcountll(v));
    scan_flags(cpu, v == 0 ? F_ZF : 0);
}

void op_cbw(cpu_t *cpu, const insn_t *i)
{
    int half = i->opsize / 2;
    reg_write(cpu, R_AX, i->opsize, sign_extend(reg_read(cpu, R_AX, half), half));
}

void op_cwd(cpu_t *cpu, const insn_t *i)
{
    uint64_t a = reg_read(cpu, R_AX, i->opsize);
    reg_write(cpu, R_DX, i->opsize, (a >> (i->opsize * 8 - 1)) & 1 ? ~0ull : 0);
}

static void set_al_flags(cpu_t *cpu, uint64_t extra, uint8_t al)
{
    set_arith_flags(cpu, extra | parity_flag(al) | (al == 0 ? F_ZF : 0) | ((al & 0x80) ? F_SF : 0));
}

void op_daa(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    uint64_t f = cpu_get_rflags(cpu);
    uint8_t al = (uint8_t)cpu->gpr[R_AX], old_al = al;
    uint64_t out = 0;
    if ((al & 0xf) > 9 || (f & F_AF)) {
        al = (uint8_t)(al + 6);
        out |= F_AF;
    }
    if (old_al > 0x99 || (f & F_CF)) {
        al = (uint8_t)(al + 0x60);
        out |= F_CF;
    }
    reg_write(cpu, R_AX, 1, al);
    set_al_flags(cpu, out, al);
}

void op_das(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    uint64_t f = cpu_get_rflags(cpu);
    uint8_t al = (uint8_t)cpu->gpr[R_AX], old_al = al;
    uint64_t out = 0;
    if ((al & 0xf) > 9 || (f & F_AF)) {
        out |= ((f & F_CF) || al < 6) ? F_CF : 0;
        al = (uint8_t)(al - 6);
        out |= F_AF;
    }
    if (old_al > 0x99 || (f & F_CF)) {
        al = (uint8_t)(al - 0x60);
        out |= F_CF;
    }
    reg_write(cpu, R_AX, 1, al);
    set_al_flags(cpu, out, al);
}

static void ascii_adjust(cpu_t *cpu, int sub)
{
    uint64_t f = cpu_get_rflags(cpu);
    uint16_t ax = (uint16_t)cpu->gpr[R_AX];
    uint64_t out = 0;
    if ((ax & 0xf) > 9 || (f & F_AF)) {
        ax = sub ? (uint16_t)(ax - 6) : (uint16_t)(ax + 0x106);
        if (sub)
            ax = (uint16_t)((ax & 0xff) | ((uint16_t)(((ax >> 8) - 1) & 0xff) << 8));
        out = F_AF | F_CF;
    }
    ax &= 0xff0f;
    reg_write(cpu, R_AX, 2, ax);
    set_al_flags(cpu, out, (uint8_t)ax);
}

void op_aaa(cpu_t *cpu, const insn_t *i) { (void)i; ascii_adjust(cpu, 0); }
void op_aas(cpu_t *cpu, const insn_t *i) { (void)i; ascii_adjust(cpu, 1); }

void op_aam(cpu_t *cpu, const insn_t *i)
{
    uint8_t base = (uint8_t)i->imm, al = (uint8_t)cpu->gpr[R_AX];
    if (base == 0)
        FAULT(cpu, EXC_DE);
    uint8_t r = al % base;
    reg_write(cpu, R_AX, 2, ((uint64_t)(al / base) << 8) | r);
    set_al_flags(cpu, 0, r);
}

void op_aad(cpu_t *cpu, const insn_t *i)
{
    uint8_t base = (uint8_t)i->imm;
    uint16_t ax = (uint16_t)cpu->gpr[R_AX];
    uint8_t al = (uint8_t)((ax & 0xff) + ((ax >> 8) * base));
    reg_write(cpu, R_AX, 2, al);
    set_al_flags(cpu, 0, al);
}

/* XADD: TEMP <- SRC + DEST; SRC <- DEST; DEST <- TEMP (one register as both keeps the
 * sum).  A memory destination is stored first, so that a fault changes nothing. */
void op_xadd(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t ea = opr_ea(cpu, i);
    uint64_t dst = opr_read(cpu, i, ea, size), src = reg_read(cpu, i->reg, size);
    uint64_t sum = alu_result(cpu, 0, size, dst, src);
    if (i->has_mem)
        opr_write(cpu, i, ea, size, sum);
    reg_write(cpu, i->reg, size, dst);
    if (!i->has_mem)
        reg_write(cpu, i->rm, size, sum);
    alu_flags(cpu, 0, size, dst, src, sum);
}

void op_cmpxchg(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t ea = opr_ea(cpu, i);
    uint64_t dst = opr_read(cpu, i, ea, size), acc = reg_read(cpu, R_AX, size);
    int equal = acc == dst;
    if (equal)
        opr_write(cpu, i, ea, size, reg_read(cpu, i->reg, size));
    else if (i->has_mem)
        opr_write(cpu, i, ea, size, dst);  /* the locked cycle always writes */
    if (!equal)
        reg_write(cpu, R_AX, size, dst);
    alu(cpu, 7, size, acc, dst);
}

void op_cmpxchg8b(cpu_t *cpu, const insn_t *i)
{
    uint64_t ea = ea_of(cpu, i);
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_ZF;
    if (i->opsize == 8) {
        if (ea & 15)
            FAULT_ERR(cpu, EXC_GP, 0);
        uint64_t lo = mem_read(cpu, i->seg, ea, 8), hi = mem_read(cpu, i->seg, ea + 8, 8);
        if (lo == cpu->gpr[R_AX] && hi == cpu->gpr[R_DX]) {
            mem_write(cpu, i->seg, ea, 8, cpu->gpr[R_BX]);
            mem_write(cpu, i->seg, ea + 8, 8, cpu->gpr[R_CX]);
            f |= F_ZF;
        } else {
            mem_write(cpu, i->seg, ea, 8, lo);
            cpu->gpr[R_AX] = lo;
            cpu->gpr[R_DX] = hi;
        }
    } else {
        uint64_t v = mem_read(cpu, i->seg, ea, 8);
        uint64_t cmp = (cpu->gpr[R_AX] & 0xffffffffull) | (cpu->gpr[R_DX] << 32);
        if (v == cmp) {
            mem_write(cpu, i->seg, ea, 8, (cpu->gpr[R_BX] & 0xffffffffull) | (cpu->gpr[R_CX] << 32));
            f |= F_ZF;
        } else {
            mem_write(cpu, i->seg, ea, 8, v);
            reg_write(cpu, R_AX, 4, v);
            reg_write(cpu, R_DX, 4, v >> 32);
        }
    }
    set_arith_flags(cpu, f);
}

void op_bswap(cpu_t *cpu, const insn_t *i)
{
    if (i->opsize == 8)
        cpu->gpr[i->rm] = __builtin_bswap64(cpu->gpr[i->rm]);
    else if (i->opsize == 4)
        reg_write(cpu, i->rm, 4, __builtin_bswap32((uint32_t)cpu->gpr[i->rm]));
    else
        reg_write(cpu, i->rm, 2, 0);  /* undefined by the SDM; what Intel cores produce */
}

void op_setcc(cpu_t *cpu, const insn_t *i)
{
    rm_write(cpu, i, 1, (uint64_t)cond_true(cpu, i->opcode & 0xf));
}

void op_cmovcc(cpu_t *cpu, const insn_t *i)
{
    uint64_t v = rm_read(cpu, i, i->opsize);
    if (cond_true(cpu, i->opcode & 0xf))
        reg_write(cpu, i->reg, i->opsize, v);
    else if (i->opsize == 4)
        reg_write(cpu, i->reg, 4, reg_read(cpu, i->reg, 4)); /* 32-bit forms always zero-extend */
}

static void flag_op(cpu_t *cpu, uint64_t clear, uint64_t set, uint64_t toggle)
{
    uint64_t f = cpu_get_rflags(cpu);
    cpu->rflags = ((f & ~clear) | set) ^ toggle;
}

void op_cmc(cpu_t *cpu, const insn_t *i) { (void)i; flag_op(cpu, 0, 0, F_CF); }
void op_clc(cpu_t *cpu, const insn_t *i) { (void)i; flag_op(cpu, F_CF, 0, 0); }
void op_stc(cpu_t *cpu, const insn_t *i) { (void)i; flag_op(cpu, 0, F_CF, 0); }
void op_cld(cpu_t *cpu, const insn_t *i) { (void)i; flag_op(cpu, F_DF, 0, 0); }
void op_std(cpu_t *cpu, const insn_t *i) { (void)i; flag_op(cpu, 0, F_DF, 0); }

void op_sahf(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    uint64_t ah = (cpu->gpr[R_AX] >> 8) & 0xff;
    uint64_t mask = F_SF | F_ZF | F_AF | F_PF | F_CF;
    flag_op(cpu, mask, ah & mask, 0);
}

void op_lahf(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    reg_write(cpu, REG_HIGH_BYTE + 0, 1, (cpu_get_rflags(cpu) & 0xd5) | 2);
}
