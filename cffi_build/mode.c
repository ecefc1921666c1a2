/* The processor's operating mode, derived from CR0, EFER, RFLAGS.VM and CS/SS. */
#include "core.h"

void cpu_update_mode(cpu_t *cpu)
{
    uint32_t cs_ar = cpu->seg[S_CS].ar, ss_ar = cpu->seg[S_SS].ar;
    if (!(cpu->cr0 & CR0_PE)) {
        cpu->mode = MODE_REAL16;
        cpu->cpl = 0;
    } else if (cpu->rflags & F_VM) {
        cpu->mode = MODE_VM86;
        cpu->cpl = 3;
    } else {
        cpu->cpl = AR_DPL(ss_ar);
        if ((cpu->efer & EFER_LMA) && (cs_ar & AR_L))
            cpu->mode = MODE_LONG64;
        else
            cpu->mode = (cs_ar & AR_DB) ? MODE_PROT32 : MODE_PROT16;
    }
    switch (cpu->mode) {
    case MODE_LONG64: cpu->code_size = 8; cpu->stack_size = 8; break;
    case MODE_PROT32: cpu->code_size = 4; cpu->stack_size = (ss_ar & AR_DB) ? 4 : 2; break;
    case MODE_PROT16: cpu->code_size = 2; cpu->stack_size = (ss_ar & AR_DB) ? 4 : 2; break;
    default:
        /* real mode honours the cached D/B bits too ("big real" descriptors) */
        cpu->code_size = (cs_ar & AR_DB) && cpu->mode == MODE_REAL16 ? 4 : 2;
        cpu->stack_size = (ss_ar & AR_DB) && cpu->mode == MODE_REAL16 ? 4 : 2;
        break;
    }
    cpu->code_key = (uint32_t)cpu->code_size | ((uint32_t)(cpu->cpl == 3) << 8);
    cpu->tlb_cpl = cpu->tlb[cpu->cpl == 3];
    cpu_update_segment_cache(cpu);
}

/* Which segments need no limit or type checks: all of them in 64-bit mode (the
 * canonical check happens on a TLB miss); elsewhere usable, expand-up segments with a
 * 4 GiB limit. */
void cpu_update_segment_cache(cpu_t *cpu)
{
    uint32_t unchecked = 0;
    int long64 = cpu->mode == MODE_LONG64;
    cpu->lin_mask = long64 ? ~0ull : 0xffffffffull;
    for (int s = S_ES; s <= S_GS; s++) {
        seg_t *g = &cpu->seg[s];
        cpu->seg_fast_base[s] = long64 && s != S_FS && s != S_GS ? 0 : g->base;
        if (long64) {
            unchecked |= 0x101u << s;
            continue;
        }
        uint32_t type = AR_TYPE(g->ar);
        int usable = !(g->ar & AR_UNUSABLE) || cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86;
        if (!usable || g->limit != 0xffffffffu)
            continue;
        int code = (type & 8) != 0;
        int readable = !code || (type & 2);
        int writable = !code && (type & 2);
        int expand_down = !code && (type & 4);
        if (expand_down)
            continue;
        if (readable || cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86)
            unchecked |= 1u << s;
        if (writable || cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86)
            unchecked |= 0x100u << s;
    }
    cpu->seg_unchecked = unchecked;
}
