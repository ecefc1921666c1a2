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
}
