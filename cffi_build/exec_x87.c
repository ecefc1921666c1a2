/* The x87 FPU instructions (SDM Vol. 1 ch. 8).  Each one runs on the host's x87 unit
 * over the guest's FXSAVE image (fpu_host.c), so results, condition codes C0-C3, the
 * stack, tags and exception flags are the processor's own; here: operand access, the
 * #NM/#MF checks, the last-instruction pointers, and the environment formats. */
#include "exec.h"
#include "fpu_host.h"

#define XW 0x10      /* op_x87_mem: stores the operand (decode_x87.c) */
#define XC 0x20      /* control instruction */
#define XN 0x40      /* non-waiting */

static uint8_t modrm_of(const insn_t *i)
{
    return (uint8_t)i->imm;   /* decode.c keeps the ModRM byte of x87 instructions there */
}

/* A non-control instruction records where it was and what it addressed. */
static void record_last(cpu_t *cpu, const insn_t *i, uint8_t modrm, uint64_t ea)
{
    struct fpu_state *f = &cpu->fpu;
    f->fx.fip = cpu->rip;
    f->fcs = cpu->seg[S_CS].sel;
    f->fx.fop = (uint16_t)(((i->opcode & 7) << 8) | modrm);
    if (i->has_mem) {
        f->fx.fdp = ea;
        f->fds = cpu->seg[i->seg].sel;
    }
}

void op_x87_reg(cpu_t *cpu, const insn_t *i)
{
    fpu_check_x87(cpu, 1);
    uint8_t modrm = modrm_of(i);
    uint64_t f = x87_host(&cpu->fpu.fx, i->opcode, modrm, NULL, cpu_get_rflags(cpu));
    if ((i->opcode == 0xdb || i->opcode == 0xdf) && modrm >= 0xe8 && modrm < 0xf8)
        set_arith_flags(cpu, f & F_ARITH);   /* FCOMI, FUCOMI and their popping forms */
    record_last(cpu, i, modrm, 0);
}

/* FENI, FDISI, FSETPM (no-ops since the 80287), FNCLEX, FNINIT: non-waiting controls */
void op_x87_control(cpu_t *cpu, const insn_t *i)
{
    fpu_check_x87(cpu, 0);
    uint8_t modrm = modrm_of(i);
    if (modrm == 0xe2)
        cpu->fpu.fx.fsw &= (uint16_t)~(FSW_ES | FSW_B | FSW_SF | MXCSR_FLAGS);
    else if (modrm == 0xe3)
        fpu_fninit(cpu);
}

void op_fnstsw_ax(cpu_t *cpu, const insn_t *i)
{
    fpu_check_x87(cpu, 0);
    reg_write(cpu, R_AX, 2, cpu->fpu.fx.fsw);
}

/* Memory forms: loads, stores, FLDCW, FNSTCW, FNSTSW m16 (op: size | XW | XC | XN). */
void op_x87_mem(cpu_t *cpu, const insn_t *i)
{
    int size = i->op & 0xf;
    fpu_check_x87(cpu, !(i->op & XN));
    uint64_t ea = ea_of(cpu, i);
    uint8_t buf[16] = { 0 };
    uint8_t modrm = modrm_of(i);
    if (i->op & XW)
        mem_check_write(cpu, i->seg, ea, size);
    else
        mem_read_buf(cpu, i->seg, ea, buf, size);
    struct fxsave_image *fx = &cpu->fpu.fx;
    uint16_t before = fx->fsw;
    x87_host(fx, i->opcode, modrm, buf, 0);
    if (i->op & XW) {
        /* an unmasked invalid, denormal, overflow or underflow exception stores nothing */
        uint16_t raised = fx->fsw & ~before & ~fx->fcw & 0x1f;
        if (!raised)
            mem_write_buf(cpu, i->seg, ea, buf, size);
    }
    if (!(i->op & XC))
        record_last(cpu, i, modrm, ea);
}

/* ---- the environment: 14 bytes (16-bit operand size) or 28 bytes (SDM Vol. 1 8.1.10) ---- */

static int env_size(const insn_t *i)
{
    return i->opsize == 2 ? 14 : 28;
}

/* The 28-byte layout from the state (the tag word from the registers' contents). */
static void env_store32(cpu_t *cpu, uint8_t *e)
{
    struct fpu_state *f = &cpu->fpu;
    uint32_t w[7] = {
        0xffff0000u | f->fx.fcw, 0xffff0000u | f->fx.fsw, 0xffff0000u | fpu_full_tag_word(&f->fx),
        (uint32_t)f->fx.fip, f->fcs | ((uint32_t)(f->fx.fop & 0x7ff) << 16),
        (uint32_t)f->fx.fdp, 0xffff0000u | f->fds,
    };
    memcpy(e, w, sizeof(w));
}

static void env_16_from_32(uint8_t *e16, const uint8_t *e32)
{
    static const uint8_t from[7] = { 0, 4, 8, 12, 16, 20, 24 };
    for (int k = 0; k < 7; k++)
        memmove(e16 + 2 * k, e32 + from[k], 2);
}

static void env_32_from_16(uint8_t *e32, const uint8_t *e16)
{
    memset(e32, 0, 28);
    static const uint8_t to[7] = { 0, 4, 8, 12, 16, 20, 24 };
    for (int k = 0; k < 7; k++)
        memcpy(e32 + to[k], e16 + 2 * k, 2);
}

/* Load the 28-byte layout: the host's FLDENV/FRSTOR do the tag and status rules. */
static void env_load32(cpu_t *cpu, uint8_t *buf, int with_regs)
{
    struct fpu_state *f = &cpu->fpu;
    x87_host(&f->fx, with_regs ? 0xdd : 0xd9, 4 << 3, buf, 0);   /* FRSTOR, FLDENV */
    uint32_t w[7];
    memcpy(w, buf, sizeof(w));
    f->fx.fip = w[3];
    f->fcs = (uint16_t)w[4];
    f->fx.fop = (uint16_t)((w[4] >> 16) & 0x7ff);
    f->fx.fdp = w[5];
    f->fds = (uint16_t)w[6];
}

void op_fnstenv(cpu_t *cpu, const insn_t *i)
{
    fpu_check_x87(cpu, 0);
    uint64_t ea = ea_of(cpu, i);
    uint8_t e32[28], e16[14];
    int n = env_size(i);
    env_store32(cpu, e32);
    env_16_from_32(e16, e32);
    mem_write_buf(cpu, i->seg, ea, n == 28 ? e32 : e16, n);
    cpu->fpu.fx.fcw |= 0x3f;   /* FNSTENV masks every exception */
}

void op_fldenv(cpu_t *cpu, const insn_t *i)
{
    fpu_check_x87(cpu, 1);
    uint64_t ea = ea_of(cpu, i);
    uint8_t buf[128], e16[14];
    if (env_size(i) == 28) {
        mem_read_buf(cpu, i->seg, ea, buf, 28);
    } else {
        mem_read_buf(cpu, i->seg, ea, e16, 14);
        env_32_from_16(buf, e16);
    }
    env_load32(cpu, buf, 0);
}

void op_fnsave(cpu_t *cpu, const insn_t *i)
{
    fpu_check_x87(cpu, 0);
    uint64_t ea = ea_of(cpu, i);
    int n = env_size(i);
    uint8_t buf[28 + 80];
    env_store32(cpu, buf);
    if (n == 14)
        env_16_from_32(buf, buf);   /* in place: each field moves down */
    const struct fxsave_image *fx = &cpu->fpu.fx;
    for (int k = 0; k < 8; k++) {
        memcpy(buf + n + 10 * k, &fx->st[k].mant, 8);
        memcpy(buf + n + 10 * k + 8, &fx->st[k].sexp, 2);
    }
    mem_write_buf(cpu, i->seg, ea, buf, n + 80);
    fpu_fninit(cpu);
}

void op_frstor(cpu_t *cpu, const insn_t *i)
{
    fpu_check_x87(cpu, 1);
    uint64_t ea = ea_of(cpu, i);
    int n = env_size(i);
    uint8_t raw[28 + 80], buf[128];
    mem_read_buf(cpu, i->seg, ea, raw, n + 80);
    if (n == 14)
        env_32_from_16(buf, raw);
    else
        memcpy(buf, raw, 28);
    memcpy(buf + 28, raw + n, 80);
    env_load32(cpu, buf, 1);
}
