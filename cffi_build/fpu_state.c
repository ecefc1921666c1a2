/* The x87/MMX/SSE state: reset and FNINIT values, the availability checks of CR0 and
 * CR4 (SDM Vol. 3 Table 2-2, 13.1), pending x87 exceptions, and tag words. */
#include "exec.h"

void fpu_check_x87(cpu_t *cpu, int waiting)
{
    if (cpu->cr0 & (CR0_EM | CR0_TS))
        FAULT(cpu, EXC_NM);
    /* with CR0.NE clear the error would go out on FERR# (IRQ 13), which is not wired */
    if (waiting && (cpu->fpu.fx.fsw & FSW_ES) && (cpu->cr0 & CR0_NE))
        FAULT(cpu, EXC_MF);
}

void fpu_check_sse(cpu_t *cpu)
{
    if ((cpu->cr0 & CR0_EM) || !(cpu->cr4 & CR4_OSFXSR))
        FAULT(cpu, EXC_UD);
    if (cpu->cr0 & CR0_TS)
        FAULT(cpu, EXC_NM);
}

void fpu_check_mmx(cpu_t *cpu)
{
    if (cpu->cr0 & CR0_EM)
        FAULT(cpu, EXC_UD);
    if (cpu->cr0 & CR0_TS)
        FAULT(cpu, EXC_NM);
    if ((cpu->fpu.fx.fsw & FSW_ES) && (cpu->cr0 & CR0_NE))
        FAULT(cpu, EXC_MF);
}

/* TOP = 0 with every physical register keeping its contents: the image holds the
 * registers in stack order, so it rotates. */
static void top_to_zero(struct fxsave_image *fx)
{
    int top = (fx->fsw >> FSW_TOP_SHIFT) & 7;
    if (top) {
        __typeof__(fx->st[0]) phys[8];
        for (int k = 0; k < 8; k++)
            phys[(k + top) & 7] = fx->st[k];
        memcpy(fx->st, phys, sizeof(phys));
        fx->fsw &= ~(7u << FSW_TOP_SHIFT);
    }
}

void mmx_enter(cpu_t *cpu)
{
    /* MMX mode: ST(i) is Ri, so the image's slot i is MMi; all tags valid */
    top_to_zero(&cpu->fpu.fx);
    cpu->fpu.fx.ftw = 0xff;
}

void fpu_fninit(cpu_t *cpu)
{
    struct fxsave_image *fx = &cpu->fpu.fx;
    top_to_zero(fx);   /* the registers keep their contents */
    fx->fcw = 0x37f;
    fx->fsw = 0;
    fx->ftw = 0;
    fx->fop = 0;
    fx->fip = fx->fdp = 0;
    cpu->fpu.fcs = cpu->fpu.fds = 0;
}

void fpu_reset(cpu_t *cpu)
{
    memset(&cpu->fpu, 0, sizeof(cpu->fpu));
    fpu_fninit(cpu);
    cpu->fpu.fx.fcw = 0x40;
    cpu->fpu.fx.mxcsr = MXCSR_DEFAULT;
    cpu->fpu.fx.mxcsr_mask = MXCSR_MASK_SUPPORTED;
}

void cpu_get_fxsave(cpu_t *cpu, uint8_t *image)
{
    memcpy(image, &cpu->fpu.fx, sizeof(cpu->fpu.fx));
}

void cpu_set_fxsave(cpu_t *cpu, const uint8_t *image)
{
    memcpy(&cpu->fpu.fx, image, sizeof(cpu->fpu.fx));
    cpu->fpu.fx.mxcsr &= MXCSR_MASK_SUPPORTED;
    cpu->fpu.fx.mxcsr_mask = MXCSR_MASK_SUPPORTED;
}

void sse_exceptions(cpu_t *cpu, uint32_t flags)
{
    uint32_t *mxcsr = &cpu->fpu.fx.mxcsr;
    flags &= MXCSR_FLAGS;
    uint32_t unmasked = flags & ~(*mxcsr >> 7);
    if (unmasked & (FSW_IE | FSW_DE | FSW_ZE))
        flags &= FSW_IE | FSW_DE | FSW_ZE;   /* pre-computation faults stop the operation */
    *mxcsr |= flags;
    if (unmasked)
        FAULT(cpu, (cpu->cr4 & CR4_OSXMMEXCPT) ? EXC_XM : EXC_UD);
}

/* Full tag of a valid register from its contents: 0 valid, 1 zero, 2 special. */
static uint16_t tag_of(uint64_t mant, uint16_t sexp)
{
    uint16_t exp = sexp & 0x7fff;
    if (exp == 0x7fff)
        return 2;
    if (exp == 0)
        return mant ? 2 : 1;
    return (mant >> 63) ? 0 : 2;   /* unnormals are special */
}

uint16_t fpu_full_tag_word(const struct fxsave_image *fx)
{
    int top = (fx->fsw >> FSW_TOP_SHIFT) & 7;
    uint16_t tw = 0;
    for (int phys = 0; phys < 8; phys++) {
        uint16_t t = 3;
        if ((fx->ftw >> phys) & 1) {
            int st = (phys - top) & 7;
            t = tag_of(fx->st[st].mant, fx->st[st].sexp);
        }
        tw |= (uint16_t)(t << (2 * phys));
    }
    return tw;
}

uint8_t fpu_abridged_tags(uint16_t full)
{
    uint8_t ftw = 0;
    for (int phys = 0; phys < 8; phys++)
        if (((full >> (2 * phys)) & 3) != 3)
            ftw |= (uint8_t)(1u << phys);
    return ftw;
}

/* ---- operands wider than a register ---- */

void mem_read_buf(cpu_t *cpu, int seg, uint64_t off, void *buf, int size)
{
    uint8_t *p = buf;
    for (int k = 0; k < size;) {
        int left = size - k;
        int n = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        uint64_t v = mem_read(cpu, seg, off + (uint64_t)k, n);
        memcpy(p + k, &v, (size_t)n);
        k += n;
    }
}

void mem_check_write(cpu_t *cpu, int seg, uint64_t off, int size)
{
    uint64_t lin = seg_linear(cpu, seg, off, size, ACC_WRITE);
    int user = cpu->cpl == 3;
    tlb_fill(cpu, lin, ACC_WRITE, user);
    uint64_t last = (lin + (uint64_t)size - 1) & cpu->lin_mask;
    if ((last ^ lin) & PAGE_MASK)
        tlb_fill(cpu, last, ACC_WRITE, user);
}

void mem_write_buf(cpu_t *cpu, int seg, uint64_t off, const void *buf, int size)
{
    const uint8_t *p = buf;
    if (size > 8)
        mem_check_write(cpu, seg, off, size);   /* all or nothing */
    for (int k = 0; k < size;) {
        int left = size - k;
        int n = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        uint64_t v = 0;
        memcpy(&v, p + k, (size_t)n);
        mem_write(cpu, seg, off + (uint64_t)k, n, v);
        k += n;
    }
}

void mem_check_align(cpu_t *cpu, int seg, uint64_t off, unsigned align)
{
    uint64_t base = (cpu->mode == MODE_LONG64 && seg != S_FS && seg != S_GS) ? 0 : cpu->seg[seg].base;
    if ((base + off) & (align - 1))
        FAULT_ERR(cpu, EXC_GP, 0);
}

void sse_check_align(cpu_t *cpu, int seg, uint64_t off)
{
    mem_check_align(cpu, seg, off, 16);
}

uint64_t mmx_read(cpu_t *cpu, int n)
{
    return cpu->fpu.fx.st[n & 7].mant;
}

void mmx_write(cpu_t *cpu, int n, uint64_t v)
{
    cpu->fpu.fx.st[n & 7].mant = v;
    cpu->fpu.fx.st[n & 7].sexp = 0xffff;   /* an MMX write sets bits 79:64 */
}
