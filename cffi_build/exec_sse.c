/* MMX and SSE data movement, shuffles, inserts/extracts, shifts by immediate and the
 * other forms whose result is plain bit movement (SDM Vol. 1 ch. 9-12). */
#include "exec.h"

#define XMM(n) (cpu->fpu.fx.xmm[(n)])

/* The r/m operand as 16 bytes: a register, or memory (16-byte aligned when asked). */
static void src128(cpu_t *cpu, const insn_t *i, int align, xmm_t *out)
{
    if (!i->has_mem) {
        *out = XMM(i->rm);
        return;
    }
    uint64_t ea = ea_of(cpu, i);
    if (align)
        sse_check_align(cpu, i->seg, ea);
    mem_read_buf(cpu, i->seg, ea, out, 16);
}

/* The r/m operand of an MMX form as 64 bits. */
static uint64_t src64_mmx(cpu_t *cpu, const insn_t *i)
{
    return i->has_mem ? mem_read(cpu, i->seg, ea_of(cpu, i), 8) : mmx_read(cpu, i->rm);
}

static int gpr_size(const insn_t *i)
{
    return i->opsize == 8 ? 8 : 4;
}

/* MOVUPS MOVUPD MOVDQU LDDQU (op 0), MOVAPS MOVAPD MOVDQA MOVNTDQA (op 1) */
void op_sse_load(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    xmm_t v;
    src128(cpu, i, i->op, &v);
    XMM(i->reg) = v;
}

/* stores of the same, and MOVNTPS MOVNTPD MOVNTDQ */
void op_sse_store(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    if (!i->has_mem) {
        XMM(i->rm) = XMM(i->reg);
        return;
    }
    uint64_t ea = ea_of(cpu, i);
    if (i->op)
        sse_check_align(cpu, i->seg, ea);
    mem_write_buf(cpu, i->seg, ea, &XMM(i->reg), 16);
}

/* MOVSS (op 4), MOVSD (op 8): a register source merges, memory zero-extends */
void op_movs_load(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    if (i->has_mem) {
        xmm_t v = { 0 };
        mem_read_buf(cpu, i->seg, ea_of(cpu, i), &v, i->op);
        XMM(i->reg) = v;
    } else {
        memcpy(&XMM(i->reg), &XMM(i->rm), i->op);
    }
}

void op_movs_store(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    if (i->has_mem)
        mem_write_buf(cpu, i->seg, ea_of(cpu, i), &XMM(i->reg), i->op);
    else
        memcpy(&XMM(i->rm), &XMM(i->reg), i->op);
}

/* MOVLPS/MOVLPD (op 0) and MOVHPS/MOVHPD (op 1) from memory; between registers
 * MOVHLPS (op 0) and MOVLHPS (op 1) */
void op_movlh_load(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    if (i->has_mem)
        XMM(i->reg).q[i->op] = mem_read(cpu, i->seg, ea_of(cpu, i), 8);
    else
        XMM(i->reg).q[i->op] = XMM(i->rm).q[!i->op];
}

void op_movlh_store(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    mem_write(cpu, i->seg, ea_of(cpu, i), 8, XMM(i->reg).q[i->op]);
}

/* MOVMSKPS (op 0), MOVMSKPD (op 1) */
void op_movmskp(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    const xmm_t *s = &XMM(i->rm);
    uint64_t m = i->op ? (s->q[0] >> 63) | (s->q[1] >> 63) << 1
                       : (s->d[0] >> 31) | (s->d[1] >> 31) << 1 | (s->d[2] >> 31) << 2 | (s->d[3] >> 31) << 3;
    reg_write(cpu, i->reg, gpr_size(i), m);
}

/* MOVD/MOVQ mm/xmm, r/m32/64 (op 1: XMM, zero-extended) */
void op_movd_load(cpu_t *cpu, const insn_t *i)
{
    int size = gpr_size(i);
    if (i->op) {
        fpu_check_sse(cpu);
        uint64_t v = opr_read(cpu, i, opr_ea(cpu, i), size);
        XMM(i->reg) = (xmm_t){ .q = { v, 0 } };
    } else {
        fpu_check_mmx(cpu);
        uint64_t v = opr_read(cpu, i, opr_ea(cpu, i), size);
        mmx_enter(cpu);
        mmx_write(cpu, i->reg, v);
    }
}

void op_movd_store(cpu_t *cpu, const insn_t *i)
{
    int size = gpr_size(i);
    uint64_t v;
    if (i->op) {
        fpu_check_sse(cpu);
        v = XMM(i->reg).q[0];
    } else {
        fpu_check_mmx(cpu);
        v = mmx_read(cpu, i->reg);
        if (i->has_mem)
            mem_check_write(cpu, i->seg, ea_of(cpu, i), size);
        mmx_enter(cpu);
    }
    opr_write(cpu, i, opr_ea(cpu, i), size, v);
}

/* MOVQ mm, mm/m64 */
void op_movq_mmx_load(cpu_t *cpu, const insn_t *i)
{
    fpu_check_mmx(cpu);
    uint64_t v = src64_mmx(cpu, i);
    mmx_enter(cpu);
    mmx_write(cpu, i->reg, v);
}

/* MOVQ mm/m64, mm and MOVNTQ */
void op_movq_mmx_store(cpu_t *cpu, const insn_t *i)
{
    fpu_check_mmx(cpu);
    uint64_t v = mmx_read(cpu, i->reg);
    if (i->has_mem) {
        uint64_t ea = ea_of(cpu, i);
        mem_check_write(cpu, i->seg, ea, 8);
        mmx_enter(cpu);
        mem_write(cpu, i->seg, ea, 8, v);
    } else {
        mmx_enter(cpu);
        mmx_write(cpu, i->rm, v);
    }
}

/* MOVQ xmm, xmm/m64 (F3 0F 7E) */
void op_movq_xmm_load(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    uint64_t v = i->has_mem ? mem_read(cpu, i->seg, ea_of(cpu, i), 8) : XMM(i->rm).q[0];
    XMM(i->reg) = (xmm_t){ .q = { v, 0 } };
}

/* MOVQ xmm/m64, xmm (66 0F D6) */
void op_movq_xmm_store(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    uint64_t v = XMM(i->reg).q[0];
    if (i->has_mem)
        mem_write(cpu, i->seg, ea_of(cpu, i), 8, v);
    else
        XMM(i->rm) = (xmm_t){ .q = { v, 0 } };
}

void op_movq2dq(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    fpu_check_mmx(cpu);
    mmx_enter(cpu);
    XMM(i->reg) = (xmm_t){ .q = { mmx_read(cpu, i->rm), 0 } };
}

void op_movdq2q(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    fpu_check_mmx(cpu);
    mmx_enter(cpu);
    mmx_write(cpu, i->reg, XMM(i->rm).q[0]);
}

/* PMOVMSKB r, mm (op 0) / xmm (op 1) */
void op_pmovmskb(cpu_t *cpu, const insn_t *i)
{
    uint8_t b[16];
    int n;
    if (i->op) {
        fpu_check_sse(cpu);
        memcpy(b, &XMM(i->rm), 16);
        n = 16;
    } else {
        fpu_check_mmx(cpu);
        mmx_enter(cpu);
        uint64_t v = mmx_read(cpu, i->rm);
        memcpy(b, &v, 8);
        n = 8;
    }
    uint64_t m = 0;
    for (int k = 0; k < n; k++)
        m |= (uint64_t)(b[k] >> 7) << k;
    reg_write(cpu, i->reg, gpr_size(i), m);
}

/* MOVNTI m32/m64, r (a general-register store: no SSE state involved) */
void op_movnti(cpu_t *cpu, const insn_t *i)
{
    int size = gpr_size(i);
    mem_write(cpu, i->seg, ea_of(cpu, i), size, reg_read(cpu, i->reg, size));
}

/* MASKMOVQ (op 0), MASKMOVDQU (op 1): the bytes whose mask byte has bit 7 set go to
 * DS:rDI (a segment prefix applies) */
void op_maskmov(cpu_t *cpu, const insn_t *i)
{
    uint8_t data[16], mask[16];
    int n;
    if (i->op) {
        fpu_check_sse(cpu);
        memcpy(data, &XMM(i->reg), 16);
        memcpy(mask, &XMM(i->rm), 16);
        n = 16;
    } else {
        fpu_check_mmx(cpu);
        uint64_t d = mmx_read(cpu, i->reg), m = mmx_read(cpu, i->rm);
        memcpy(data, &d, 8);
        memcpy(mask, &m, 8);
        n = 8;
    }
    uint64_t at = cpu->gpr[R_DI] & size_mask(i->addrsize);
    int any = 0;
    for (int k = 0; k < n; k++)
        any |= mask[k] & 0x80;
    if (any)
        mem_check_write(cpu, i->seg, at, n);
    if (!i->op)
        mmx_enter(cpu);
    for (int k = 0; k < n; k++)
        if (mask[k] & 0x80)
            mem_write(cpu, i->seg, (at + (uint64_t)k) & size_mask(i->addrsize), 1, data[k]);
}

/* PSHUFW (op SIMD_NONE), PSHUFD (66), PSHUFHW (F3), PSHUFLW (F2) */
void op_pshuf(cpu_t *cpu, const insn_t *i)
{
    uint8_t imm = (uint8_t)i->imm;
    if (i->op == SIMD_NONE) {
        fpu_check_mmx(cpu);
        uint64_t s = src64_mmx(cpu, i), r = 0;
        mmx_enter(cpu);
        for (int k = 0; k < 4; k++)
            r |= ((s >> (16 * ((imm >> (2 * k)) & 3))) & 0xffff) << (16 * k);
        mmx_write(cpu, i->reg, r);
        return;
    }
    fpu_check_sse(cpu);
    xmm_t s, r;
    src128(cpu, i, 1, &s);
    r = s;
    if (i->op == SIMD_66) {
        for (int k = 0; k < 4; k++)
            r.d[k] = s.d[(imm >> (2 * k)) & 3];
    } else {
        int base = i->op == SIMD_F3 ? 4 : 0;
        for (int k = 0; k < 4; k++)
            r.w[base + k] = s.w[base + ((imm >> (2 * k)) & 3)];
    }
    XMM(i->reg) = r;
}

/* SHUFPS (op 0), SHUFPD (op 1) */
void op_shufp(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    uint8_t imm = (uint8_t)i->imm;
    xmm_t s, d = XMM(i->reg), r;
    src128(cpu, i, 1, &s);
    if (i->op) {
        r.q[0] = d.q[imm & 1];
        r.q[1] = s.q[(imm >> 1) & 1];
    } else {
        r.d[0] = d.d[imm & 3];
        r.d[1] = d.d[(imm >> 2) & 3];
        r.d[2] = s.d[(imm >> 4) & 3];
        r.d[3] = s.d[(imm >> 6) & 3];
    }
    XMM(i->reg) = r;
}

/* One lane shifted by `count`: kind 2 logical right, 4 arithmetic right, 6 left. */
static uint64_t shift_lane(uint64_t v, int bits, int kind, unsigned count)
{
    uint64_t m = bits == 64 ? ~0ull : (1ull << bits) - 1;
    if (kind == 4) {
        int64_t s = (int64_t)(v << (64 - bits)) >> (64 - bits);
        return (uint64_t)(s >> (count >= (unsigned)bits ? (unsigned)bits - 1 : count)) & m;
    }
    if (count >= (unsigned)bits)
        return 0;
    return (kind == 2 ? v >> count : v << count) & m;
}

static void shift_lanes(uint8_t *p, int n, int bits, int kind, unsigned count)
{
    int bytes = bits / 8;
    for (int k = 0; k < n; k += bytes) {
        uint64_t v = 0;
        memcpy(&v, p + k, (size_t)bytes);
        v = shift_lane(v, bits, kind, count);
        memcpy(p + k, &v, (size_t)bytes);
    }
}

/* 0F 71/72/73 groups: PSRLW/PSRAW/PSLLW, ...D, PSRLQ/PSLLQ, PSRLDQ/PSLLDQ (66 only) by imm8 */
void op_pshift_imm(cpu_t *cpu, const insn_t *i)
{
    int kind = i->reg & 7, bits = 16 << (i->opcode - 0x71);
    unsigned count = (uint8_t)i->imm;
    int valid = kind == 2 || kind == 6 || (kind == 4 && bits < 64) ||
                (bits == 64 && (kind == 3 || kind == 7) && i->op);
    if (!valid)
        FAULT(cpu, EXC_UD);
    if (!i->op) {
        fpu_check_mmx(cpu);
        mmx_enter(cpu);
        uint64_t v = mmx_read(cpu, i->rm);
        shift_lanes((uint8_t *)&v, 8, bits, kind, count);
        mmx_write(cpu, i->rm, v);
        return;
    }
    fpu_check_sse(cpu);
    xmm_t *x = &XMM(i->rm);
    if (kind == 3 || kind == 7) {   /* whole-register byte shifts */
        xmm_t r = { 0 };
        unsigned n = count > 16 ? 16 : count;
        if (kind == 3)
            memcpy(r.b, x->b + n, 16 - n);
        else
            memcpy(r.b + n, x->b, 16 - n);
        *x = r;
        return;
    }
    shift_lanes(x->b, 16, bits, kind, count);
}

/* PINSRW mm (op 0) / xmm (op 1), r32/m16, imm8 */
void op_pinsrw(cpu_t *cpu, const insn_t *i)
{
    uint8_t imm = (uint8_t)i->imm;
    if (i->op) {
        fpu_check_sse(cpu);
        XMM(i->reg).w[imm & 7] = (uint16_t)opr_read(cpu, i, opr_ea(cpu, i), 2);
        return;
    }
    fpu_check_mmx(cpu);
    uint64_t w = opr_read(cpu, i, opr_ea(cpu, i), 2);
    mmx_enter(cpu);
    int sh = 16 * (imm & 3);
    mmx_write(cpu, i->reg, (mmx_read(cpu, i->reg) & ~(0xffffull << sh)) | (w << sh));
}

/* PEXTRW r, mm (op 0) / xmm (op 1), imm8 */
void op_pextrw(cpu_t *cpu, const insn_t *i)
{
    uint8_t imm = (uint8_t)i->imm;
    uint64_t v;
    if (i->op) {
        fpu_check_sse(cpu);
        v = XMM(i->rm).w[imm & 7];
    } else {
        fpu_check_mmx(cpu);
        mmx_enter(cpu);
        v = (mmx_read(cpu, i->rm) >> (16 * (imm & 3))) & 0xffff;
    }
    reg_write(cpu, i->reg, gpr_size(i), v);
}

void op_emms(cpu_t *cpu, const insn_t *i)
{
    fpu_check_mmx(cpu);
    cpu->fpu.fx.ftw = 0;
}

/* SSE4.1 PEXTRB (op 14h), PEXTRW (15h), PEXTRD/PEXTRQ (16h), EXTRACTPS (17h) to r/m */
void op_pextr(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    uint8_t imm = (uint8_t)i->imm;
    const xmm_t *s = &XMM(i->reg);
    uint64_t v;
    int size;
    switch (i->op) {
    case 0x14: v = s->b[imm & 15]; size = 1; break;
    case 0x15: v = s->w[imm & 7]; size = 2; break;
    case 0x16:
        if (i->opsize == 8) { v = s->q[imm & 1]; size = 8; }
        else { v = s->d[imm & 3]; size = 4; }
        break;
    default: v = s->d[imm & 3]; size = 4; break;
    }
    if (i->has_mem)
        mem_write(cpu, i->seg, ea_of(cpu, i), size, v);
    else
        reg_write(cpu, i->rm, size == 8 ? 8 : 4, v);   /* zero-extended */
}

/* SSE4.1 PINSRB (op 20h), PINSRD/PINSRQ (22h) */
void op_pinsr(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    uint8_t imm = (uint8_t)i->imm;
    xmm_t *d = &XMM(i->reg);
    if (i->op == 0x20)
        d->b[imm & 15] = (uint8_t)opr_read(cpu, i, opr_ea(cpu, i), 1);
    else if (i->opsize == 8)
        d->q[imm & 1] = opr_read(cpu, i, opr_ea(cpu, i), 8);
    else
        d->d[imm & 3] = (uint32_t)opr_read(cpu, i, opr_ea(cpu, i), 4);
}

void op_insertps(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    uint8_t imm = (uint8_t)i->imm;
    uint32_t v = i->has_mem ? (uint32_t)mem_read(cpu, i->seg, ea_of(cpu, i), 4)
                            : XMM(i->rm).d[(imm >> 6) & 3];
    xmm_t *d = &XMM(i->reg);
    d->d[(imm >> 4) & 3] = v;
    for (int k = 0; k < 4; k++)
        if (imm & (1 << k))
            d->d[k] = 0;
}

/* SSE4.2 CRC32 r32/r64, r/m8 (op 0) or r/m16/32/64 (op 1): CRC-32C, reflected */
void op_crc32(cpu_t *cpu, const insn_t *i)
{
    int size = i->op ? i->opsize : 1;
    uint64_t v = opr_read(cpu, i, opr_ea(cpu, i), size);
    uint32_t crc = (uint32_t)cpu->gpr[i->reg];
    for (int k = 0; k < size; k++) {
        crc ^= (uint8_t)(v >> (8 * k));
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
    }
    reg_write(cpu, i->reg, 8, crc);
}
