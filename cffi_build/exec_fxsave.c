/* 0F AE with a memory operand: FXSAVE, FXRSTOR, LDMXCSR, STMXCSR, XSAVE, XRSTOR
 * (SDM Vol. 1 10.5, ch. 13), for the x87 and SSE state components. */
#include "exec.h"

/* The guest's FXSAVE image: the 64-bit layout (REX.W) or the 32-bit one, where FIP and
 * FDP are 32 bits followed by the FCS and FDS selectors. */
static void image_out(cpu_t *cpu, int wide, uint8_t *out, int *len)
{
    struct fxsave_image fx = cpu->fpu.fx;
    fx.mxcsr_mask = MXCSR_MASK_SUPPORTED;
    memcpy(out, &fx, 512);
    if (!wide) {
        uint32_t w[4] = { (uint32_t)fx.fip, cpu->fpu.fcs, (uint32_t)fx.fdp, cpu->fpu.fds };
        memcpy(out + 8, w, 16);
    }
    /* XMM8-15 exist only in 64-bit mode; the last 96 bytes are the software's */
    *len = cpu->mode == MODE_LONG64 ? 416 : 288;
}

/* Load an image (x87 part and/or SSE part); MXCSR was checked by the caller. */
static void image_in(cpu_t *cpu, int wide, const uint8_t *in, int x87, int sse)
{
    struct fxsave_image img;
    memcpy(&img, in, 512);
    struct fpu_state *f = &cpu->fpu;
    if (x87) {
        f->fx.fcw = img.fcw;
        f->fx.fsw = img.fsw;
        f->fx.ftw = img.ftw;
        f->fx.fop = img.fop & 0x7ff;
        if (wide) {
            f->fx.fip = img.fip;
            f->fx.fdp = img.fdp;
        } else {
            uint32_t w[4];
            memcpy(w, in + 8, 16);
            f->fx.fip = w[0];
            f->fcs = (uint16_t)w[1];
            f->fx.fdp = w[2];
            f->fds = (uint16_t)w[3];
        }
        for (int k = 0; k < 8; k++) {
            f->fx.st[k].mant = img.st[k].mant;
            f->fx.st[k].sexp = img.st[k].sexp;
        }
    }
    if (sse)
        memcpy(f->fx.xmm, img.xmm, (cpu->mode == MODE_LONG64 ? 16 : 8) * sizeof(xmm_t));
}

static void check_mxcsr(cpu_t *cpu, uint32_t v)
{
    if (v & ~MXCSR_MASK_SUPPORTED)
        FAULT_ERR(cpu, EXC_GP, 0);
}

static void x87_init(cpu_t *cpu)
{
    fpu_fninit(cpu);
    memset(cpu->fpu.fx.st, 0, sizeof(cpu->fpu.fx.st));
}

static void fxsave(cpu_t *cpu, const insn_t *i, uint64_t ea)
{
    uint8_t out[512];
    int len;
    sse_check_align(cpu, i->seg, ea);
    image_out(cpu, i->opsize == 8, out, &len);
    mem_write_buf(cpu, i->seg, ea, out, len);
}

static void fxrstor(cpu_t *cpu, const insn_t *i, uint64_t ea)
{
    uint8_t in[512];
    sse_check_align(cpu, i->seg, ea);
    mem_read_buf(cpu, i->seg, ea, in, 512);
    uint32_t mxcsr;
    memcpy(&mxcsr, in + 24, 4);
    check_mxcsr(cpu, mxcsr);
    image_in(cpu, i->opsize == 8, in, 1, 1);
    cpu->fpu.fx.mxcsr = mxcsr;
}

/* XSAVE: the components of XCR0 & EDX:EAX, in the standard (non-compacted) format. */
static void xsave(cpu_t *cpu, const insn_t *i, uint64_t ea)
{
    mem_check_align(cpu, i->seg, ea, 64);
    uint64_t rfbm = cpu->xcr0 & ((cpu->gpr[R_DX] << 32) | (uint32_t)cpu->gpr[R_AX]);
    uint8_t out[512];
    int len;
    image_out(cpu, i->opsize == 8, out, &len);
    uint64_t bv = mem_read(cpu, i->seg, ea + 512, 8);
    mem_check_write(cpu, i->seg, ea, 520);
    if (rfbm & XCR0_X87) {
        mem_write_buf(cpu, i->seg, ea, out, 24);
        mem_write_buf(cpu, i->seg, ea + 32, out + 32, 128);
    }
    if (rfbm & XCR0_SSE) {
        mem_write_buf(cpu, i->seg, ea + 24, out + 24, 8);    /* MXCSR, MXCSR_MASK */
        mem_write_buf(cpu, i->seg, ea + 160, out + 160, len - 160);
    }
    mem_write(cpu, i->seg, ea + 512, 8, (bv & ~rfbm) | (rfbm & XCR0_SUPPORTED));
}

static void xrstor(cpu_t *cpu, const insn_t *i, uint64_t ea)
{
    mem_check_align(cpu, i->seg, ea, 64);
    uint64_t rfbm = cpu->xcr0 & ((cpu->gpr[R_DX] << 32) | (uint32_t)cpu->gpr[R_AX]);
    uint8_t in[512 + 64];
    mem_read_buf(cpu, i->seg, ea, in, 576);
    uint64_t hdr[8];
    memcpy(hdr, in + 512, 64);
    /* the standard form: XCOMP_BV and the reserved header bytes zero, no unknown bits */
    if ((hdr[0] & ~cpu->xcr0) || hdr[1] || hdr[2] || hdr[3] || hdr[4] || hdr[5] || hdr[6] || hdr[7])
        FAULT_ERR(cpu, EXC_GP, 0);
    uint32_t mxcsr;
    memcpy(&mxcsr, in + 24, 4);
    if (rfbm & XCR0_SSE)
        check_mxcsr(cpu, mxcsr);
    uint64_t bv = hdr[0];
    if (rfbm & XCR0_X87) {
        if (bv & XCR0_X87)
            image_in(cpu, i->opsize == 8, in, 1, 0);
        else
            x87_init(cpu);
    }
    if (rfbm & XCR0_SSE) {
        if (bv & XCR0_SSE)
            image_in(cpu, i->opsize == 8, in, 0, 1);
        else
            memset(cpu->fpu.fx.xmm, 0, sizeof(cpu->fpu.fx.xmm));
        cpu->fpu.fx.mxcsr = mxcsr;
    }
}

void op_grp15_mem(cpu_t *cpu, const insn_t *i)
{
    int which = i->reg & 7;
    if (which >= 4) {   /* XSAVE family */
        if (!(cpu->cr4 & CR4_OSXSAVE) || which == 6)
            FAULT(cpu, EXC_UD);
        if (cpu->cr0 & CR0_TS)
            FAULT(cpu, EXC_NM);
    } else if (which >= 2) {
        fpu_check_sse(cpu);   /* LDMXCSR, STMXCSR */
    } else {
        if (cpu->cr0 & CR0_EM)
            FAULT(cpu, EXC_UD);
        if (cpu->cr0 & CR0_TS)
            FAULT(cpu, EXC_NM);
    }
    uint64_t ea = ea_of(cpu, i);
    switch (which) {
    case 0: fxsave(cpu, i, ea); break;
    case 1: fxrstor(cpu, i, ea); break;
    case 2: {
        uint32_t v = (uint32_t)mem_read(cpu, i->seg, ea, 4);
        check_mxcsr(cpu, v);
        cpu->fpu.fx.mxcsr = v;
        break;
    }
    case 3: mem_write(cpu, i->seg, ea, 4, cpu->fpu.fx.mxcsr); break;
    case 4: xsave(cpu, i, ea); break;
    default: xrstor(cpu, i, ea); break;
    }
}
