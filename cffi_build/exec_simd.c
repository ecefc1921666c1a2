/* MMX and SSE..SSE4.2 arithmetic, logic, compare, pack/unpack and conversion forms:
 * operands are fetched here (with the alignment and availability checks), the
 * operation itself runs on the host's unit (fpu_host.c), and the MXCSR flags it
 * raises become the guest's (#XM when unmasked). */
#include "exec.h"
#include "fpu_host.h"
#include "simd_forms.h"

static simd_form_t int_forms[256], fp_forms[128];
static int n_int, n_fp;
static uint8_t index_of[2][4][4][256];   /* [fp][map][pfx][opcode] -> form + 1 */

static void add(int fp, int map, int pfx, int op, int mem, int flags)
{
    simd_form_t *f = fp ? &fp_forms[n_fp++] : &int_forms[n_int++];
    *f = (simd_form_t){ (uint8_t)map, (uint8_t)pfx, (uint8_t)op, (uint8_t)mem, (uint8_t)flags };
    index_of[fp][map][pfx][op] = (uint8_t)((fp ? n_fp : n_int));
}

static void add_range(int map, int pfx, int lo, int hi, int mem, int flags)
{
    for (int op = lo; op <= hi; op++)
        add(0, map, pfx, op, mem, flags);
}

/* Integer ops of the 0F map that exist as MMX (no prefix) and SSE2 (66) forms. */
static const uint8_t int_0f[][2] = {
    { 0x60, 0x6b }, { 0x74, 0x76 }, { 0xd1, 0xd5 }, { 0xd8, 0xdf }, { 0xe0, 0xe5 },
    { 0xe8, 0xef }, { 0xf1, 0xf6 }, { 0xf8, 0xfe },
};

__attribute__((constructor)) static void build_forms(void)
{
    const int A = SF_ALIGN;
    for (size_t k = 0; k < sizeof(int_0f) / sizeof(int_0f[0]); k++) {
        for (int op = int_0f[k][0]; op <= int_0f[k][1]; op++)
            add(0, 1, SIMD_NONE, op, op <= 0x62 ? 4 : 8, SF_MMX);   /* PUNPCKL*: m32 */
        add_range(1, SIMD_66, int_0f[k][0], int_0f[k][1], 16, A);
    }
    add_range(1, SIMD_66, 0x6c, 0x6d, 16, A);                  /* PUNPCKLQDQ PUNPCKHQDQ */
    for (int pfx = SIMD_NONE; pfx <= SIMD_66; pfx++) {
        add_range(1, pfx, 0x14, 0x15, 16, A);                  /* UNPCKLPx UNPCKHPx */
        add_range(1, pfx, 0x54, 0x57, 16, A);                  /* ANDPx ANDNPx ORPx XORPx */
    }
    add(0, 1, SIMD_F3, 0x12, 16, A);                           /* MOVSLDUP */
    add(0, 1, SIMD_F3, 0x16, 16, A);                           /* MOVSHDUP */
    add(0, 1, SIMD_F2, 0x12, 8, 0);                            /* MOVDDUP */
    /* SSSE3 */
    add_range(2, SIMD_NONE, 0x00, 0x0b, 8, SF_MMX);
    add_range(2, SIMD_NONE, 0x1c, 0x1e, 8, SF_MMX);
    add_range(2, SIMD_66, 0x00, 0x0b, 16, A);
    add_range(2, SIMD_66, 0x1c, 0x1e, 16, A);
    add(0, 3, SIMD_NONE, 0x0f, 8, SF_MMX | SF_IMM);            /* PALIGNR mm */
    add(0, 3, SIMD_66, 0x0f, 16, A | SF_IMM);
    /* SSE4.1 */
    add(0, 2, SIMD_66, 0x10, 16, A);                           /* PBLENDVB */
    add_range(2, SIMD_66, 0x14, 0x15, 16, A);                  /* BLENDVPS BLENDVPD */
    add(0, 2, SIMD_66, 0x17, 16, A | SF_FLAGS);                /* PTEST */
    static const uint8_t pmov_size[6] = { 8, 4, 2, 8, 4, 8 };
    for (int k = 0; k < 6; k++) {
        add(0, 2, SIMD_66, 0x20 + k, pmov_size[k], 0);         /* PMOVSX */
        add(0, 2, SIMD_66, 0x30 + k, pmov_size[k], 0);         /* PMOVZX */
    }
    add_range(2, SIMD_66, 0x28, 0x29, 16, A);                  /* PMULDQ PCMPEQQ */
    add(0, 2, SIMD_66, 0x2b, 16, A);                           /* PACKUSDW */
    add_range(2, SIMD_66, 0x37, 0x41, 16, A);                  /* PCMPGTQ (4.2), PMIN/MAX, PMULLD, PHMINPOSUW */
    add_range(3, SIMD_66, 0x0c, 0x0e, 16, A | SF_IMM);         /* BLENDPS BLENDPD PBLENDW */
    add(0, 3, SIMD_66, 0x42, 16, A | SF_IMM);                  /* MPSADBW */
    /* SSE4.2 string compares: no alignment requirement */
    add(0, 3, SIMD_66, 0x60, 16, SF_IMM | SF_STRM | SF_LENGTHS);
    add(0, 3, SIMD_66, 0x61, 16, SF_IMM | SF_STRI | SF_LENGTHS);
    add(0, 3, SIMD_66, 0x62, 16, SF_IMM | SF_STRM);
    add(0, 3, SIMD_66, 0x63, 16, SF_IMM | SF_STRI);

    /* floating point: [map, pfx, opcode] with the memory operand size of each prefix */
    static const uint8_t fp_0f[][5] = {   /* opcode, then sizes for none/66/F3/F2 (0: none) */
        { 0x51, 16, 16, 4, 8 }, { 0x52, 16, 0, 4, 0 }, { 0x53, 16, 0, 4, 0 },
        { 0x58, 16, 16, 4, 8 }, { 0x59, 16, 16, 4, 8 }, { 0x5a, 8, 16, 4, 8 },
        { 0x5b, 16, 16, 16, 0 }, { 0x5c, 16, 16, 4, 8 }, { 0x5d, 16, 16, 4, 8 },
        { 0x5e, 16, 16, 4, 8 }, { 0x5f, 16, 16, 4, 8 }, { 0x7c, 0, 16, 0, 16 },
        { 0x7d, 0, 16, 0, 16 }, { 0xd0, 0, 16, 0, 16 }, { 0xe6, 0, 16, 8, 16 },
        { 0xc2, 16, 16, 4, 8 }, { 0x2e, 4, 8, 0, 0 }, { 0x2f, 4, 8, 0, 0 },
    };
    for (size_t k = 0; k < sizeof(fp_0f) / sizeof(fp_0f[0]); k++)
        for (int pfx = 0; pfx < 4; pfx++) {
            int mem = fp_0f[k][1 + pfx], op = fp_0f[k][0];
            if (!mem)
                continue;
            int flags = (mem == 16 ? A : 0) | (op == 0xc2 ? SF_IMM : 0) |
                        (op == 0x2e || op == 0x2f ? SF_FLAGS : 0);
            if (op == 0x5a && pfx == SIMD_NONE)
                flags &= ~A;   /* CVTPS2PD reads m64 */
            add(1, 1, pfx, op, mem, flags);
        }
    /* SSE4.1 ROUNDPS ROUNDPD ROUNDSS ROUNDSD DPPS DPPD */
    add(1, 3, SIMD_66, 0x08, 16, A | SF_IMM);
    add(1, 3, SIMD_66, 0x09, 16, A | SF_IMM);
    add(1, 3, SIMD_66, 0x0a, 4, SF_IMM);
    add(1, 3, SIMD_66, 0x0b, 8, SF_IMM);
    add(1, 3, SIMD_66, 0x40, 16, A | SF_IMM);
    add(1, 3, SIMD_66, 0x41, 16, A | SF_IMM);
}

int simd_form_lookup(int map, int pfx, uint8_t op, int *fp, int *flags)
{
    for (int k = 0; k < 2; k++) {
        int n = index_of[k][map][pfx][op];
        if (n) {
            *fp = k;
            *flags = (k ? fp_forms : int_forms)[n - 1].flags;
            return n - 1;
        }
    }
    return -1;
}

/* The r/m source: a register, or `mem` bytes of memory (zero-extended), aligned if asked. */
static void read_src_xmm(cpu_t *cpu, const insn_t *i, const simd_form_t *f, xmm_t *out)
{
    if (!i->has_mem) {
        *out = cpu->fpu.fx.xmm[i->rm];
        return;
    }
    uint64_t ea = ea_of(cpu, i);
    if (f->flags & SF_ALIGN)
        sse_check_align(cpu, i->seg, ea);
    memset(out, 0, sizeof(*out));
    mem_read_buf(cpu, i->seg, ea, out, f->mem);
}

static void run_host(const simd_form_t *f, uint8_t imm, struct simd_regs *r)
{
    switch (f->map) {
    case 1:
        if (f->opcode == 0xc2)
            simd_host_cmp(f->pfx, imm, r);
        else if (f->flags & SF_MMX)
            mmx_host_0f(f->opcode, r);
        else
            simd_host_0f(f->pfx, f->opcode, r);
        break;
    case 2:
        if (f->flags & SF_MMX)
            mmx_host_0f38(f->opcode, r);
        else
            simd_host_0f38(f->pfx, f->opcode, r);
        break;
    default:
        simd_host_3a(f->pfx, f->opcode, imm, r);
        break;
    }
}


/* PCMPESTRx lengths: with REX.W the 64-bit registers; saturate them so that the
 * host's 32-bit form sees the same effective length. */
static uint64_t str_length(uint64_t v, int wide)
{
    int64_t s = wide ? (int64_t)v : (int64_t)(int32_t)v;
    return (uint64_t)(s < -32 ? -32 : s > 32 ? 32 : s) & 0xffffffffull;
}

void op_simd_int(cpu_t *cpu, const insn_t *i)
{
    const simd_form_t *f = &int_forms[i->op];
    struct simd_regs r;
    r.mxcsr = MXCSR_DEFAULT;
    if (f->flags & SF_MMX) {
        fpu_check_mmx(cpu);
        r.mm2 = 0;
        if (i->has_mem)
            mem_read_buf(cpu, i->seg, ea_of(cpu, i), &r.mm2, f->mem);
        mmx_enter(cpu);
        r.mm1 = mmx_read(cpu, i->reg);
        if (!i->has_mem)
            r.mm2 = mmx_read(cpu, i->rm);
        run_host(f, (uint8_t)i->imm, &r);
        mmx_write(cpu, i->reg, r.mm1);
        return;
    }
    fpu_check_sse(cpu);
    xmm_t *x = cpu->fpu.fx.xmm;
    r.x0 = x[0];
    r.x1 = x[i->reg];
    read_src_xmm(cpu, i, f, &r.x2);
    if (f->flags & SF_LENGTHS) {
        r.rax = str_length(cpu->gpr[R_AX], i->opsize == 8);
        r.rdx = str_length(cpu->gpr[R_DX], i->opsize == 8);
    }
    run_host(f, (uint8_t)i->imm, &r);
    if (f->flags & (SF_FLAGS | SF_STRI | SF_STRM))
        set_arith_flags(cpu, r.rflags & F_ARITH);
    if (f->flags & SF_STRI)
        reg_write(cpu, R_CX, 4, r.rcx);
    else if (f->flags & SF_STRM)
        x[0] = r.x0;
    else if (!(f->flags & SF_FLAGS))
        x[i->reg] = r.x1;
}

void op_simd_fp(cpu_t *cpu, const insn_t *i)
{
    const simd_form_t *f = &fp_forms[i->op];
    fpu_check_sse(cpu);
    struct simd_regs r;
    xmm_t *x = cpu->fpu.fx.xmm;
    r.x1 = x[i->reg];
    read_src_xmm(cpu, i, f, &r.x2);
    uint32_t guest = cpu->fpu.fx.mxcsr;
    struct simd_regs again = r;
    r.mxcsr = (guest & ~(uint32_t)MXCSR_FLAGS) | MXCSR_MASKS;
    if (!(guest & MXCSR_UM))
        r.mxcsr &= ~MXCSR_FTZ;   /* flush-to-zero applies only with underflow masked */
    run_host(f, (uint8_t)i->imm, &r);
    uint32_t raised = r.mxcsr & MXCSR_FLAGS;
    if (!(guest & MXCSR_UM)) {
        /* unmasked, underflow means any tiny result, exact or not; masked, the host
         * reports only inexact ones, but flushing to zero makes every one inexact */
        again.mxcsr = (guest & ~(uint32_t)MXCSR_FLAGS) | MXCSR_MASKS | MXCSR_FTZ;
        run_host(f, (uint8_t)i->imm, &again);
        raised |= again.mxcsr & FSW_UE;
    }
    sse_exceptions(cpu, raised);
    if (f->flags & SF_FLAGS)
        set_arith_flags(cpu, r.rflags & F_ARITH);
    else
        x[i->reg] = r.x1;
}

/* CVTSI2SS/SD (2A), CVTTSS2SI/CVTTSD2SI (2C), CVTSS2SI/CVTSD2SI (2D): op = 1 for F2 */
void op_simd_cvt_gpr(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    int pfx = i->op ? SIMD_F2 : SIMD_F3, w = i->opsize == 8;
    struct simd_regs r;
    xmm_t *x = cpu->fpu.fx.xmm;
    uint8_t op = i->opcode;
    if (op == 0x2a) {
        r.x1 = x[i->reg];
        r.rax = opr_read(cpu, i, opr_ea(cpu, i), w ? 8 : 4);
    } else if (i->has_mem) {
        memset(&r.x2, 0, sizeof(r.x2));
        mem_read_buf(cpu, i->seg, ea_of(cpu, i), &r.x2, pfx == SIMD_F2 ? 8 : 4);
    } else {
        r.x2 = x[i->rm];
    }
    r.mxcsr = (cpu->fpu.fx.mxcsr & ~(uint32_t)MXCSR_FLAGS) | MXCSR_MASKS;
    simd_host_cvt(pfx, w, op, &r);
    sse_exceptions(cpu, r.mxcsr);
    if (op == 0x2a)
        x[i->reg] = r.x1;
    else
        reg_write(cpu, i->reg, w ? 8 : 4, r.rax);
}

/* CVTPI2PS/PD (2A), CVTTPS2PI/CVTTPD2PI (2C), CVTPS2PI/CVTPD2PI (2D): op = 1 for 66.
 * An MMX register operand makes them MMX instructions (x87 state to MMX mode). */
void op_simd_cvt_mmx(cpu_t *cpu, const insn_t *i)
{
    fpu_check_sse(cpu);
    uint8_t op = i->opcode;
    int pd = i->op;
    struct simd_regs r;
    xmm_t *x = cpu->fpu.fx.xmm;
    if (op == 0x2a) {
        r.x1 = x[i->reg];
        if (i->has_mem) {
            r.mm2 = mem_read(cpu, i->seg, ea_of(cpu, i), 8);
        } else {
            fpu_check_mmx(cpu);
            mmx_enter(cpu);
            r.mm2 = mmx_read(cpu, i->rm);
        }
    } else {
        if (i->has_mem) {
            uint64_t ea = ea_of(cpu, i);
            memset(&r.x2, 0, sizeof(r.x2));
            if (pd)
                sse_check_align(cpu, i->seg, ea);
            mem_read_buf(cpu, i->seg, ea, &r.x2, pd ? 16 : 8);
        } else {
            r.x2 = x[i->rm];
        }
        fpu_check_mmx(cpu);
        mmx_enter(cpu);
        r.mm1 = mmx_read(cpu, i->reg);
    }
    r.mxcsr = (cpu->fpu.fx.mxcsr & ~(uint32_t)MXCSR_FLAGS) | MXCSR_MASKS;
    if (pd)
        mmx_host_cvt66(op, &r);
    else
        mmx_host_cvt(op, &r);
    sse_exceptions(cpu, r.mxcsr);
    if (op == 0x2a)
        x[i->reg] = r.x1;
    else
        mmx_write(cpu, i->reg, r.mm1);
}
