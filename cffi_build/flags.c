/* Lazy arithmetic flags: ALU instructions record their operands and result; the flags
 * are computed only when something reads them. */
#include "core.h"

uint64_t parity_flag(uint64_t v)
{
    return (__builtin_popcount((unsigned)(v & 0xff)) & 1) ? 0 : F_PF;
}

static uint64_t lazy_arith(const cpu_t *cpu)
{
    int size = cpu->lf_size;
    uint64_t m = size_mask(size);
    uint64_t sign = 1ull << (size * 8 - 1);
    uint64_t res = cpu->lf_res & m, a = cpu->lf_a & m, b = cpu->lf_b & m;
    uint64_t f = parity_flag(res);
    if (res == 0) f |= F_ZF;
    if (res & sign) f |= F_SF;
    switch (cpu->lf_op) {
    case LF_ADD:
    case LF_ADC:
        if (cpu->lf_op == LF_ADC && cpu->lf_carry_in)
            f |= (res <= a) ? F_CF : 0;
        else
            f |= (res < a) ? F_CF : 0;
        if (((a ^ res) & (b ^ res)) & sign) f |= F_OF;
        f |= (a ^ b ^ res) & F_AF;
        break;
    case LF_SUB:
    case LF_SBB:
        if (cpu->lf_op == LF_SBB && cpu->lf_carry_in)
            f |= (a <= b) ? F_CF : 0;
        else
            f |= (a < b) ? F_CF : 0;
        if (((a ^ b) & (a ^ res)) & sign) f |= F_OF;
        f |= (a ^ b ^ res) & F_AF;
        break;
    case LF_LOGIC:
        break;
    case LF_INC:
        f |= cpu->lf_carry_in ? F_CF : 0;
        if (res == sign) f |= F_OF;
        if ((res & 0xf) == 0) f |= F_AF;
        break;
    case LF_DEC:
        f |= cpu->lf_carry_in ? F_CF : 0;
        if (res == sign - 1) f |= F_OF;
        if ((res & 0xf) == 0xf) f |= F_AF;
        break;
    case LF_MUL:   /* as exec_alu.c's mul_flags: AF clear */
        f |= cpu->lf_a ? F_CF | F_OF : 0;
        break;
    }
    return f;
}

uint64_t cpu_get_rflags(cpu_t *cpu)
{
    if (cpu->lf_op != LF_NONE) {
        cpu->rflags = (cpu->rflags & ~(uint64_t)F_ARITH) | lazy_arith(cpu);
        cpu->lf_op = LF_NONE;
    }
    return cpu->rflags | 2;
}

void cpu_set_rflags(cpu_t *cpu, uint64_t v)
{
    uint64_t old = cpu->rflags;
    cpu->lf_op = LF_NONE;
    cpu->rflags = (v & 0x3f7fd5ull) | 2;
    if (v & (F_TF | F_RF))
        cpu->stop_block = 1;   /* the next instruction needs the single-step path */
    if (old & ~v & F_AC)
        tlb_smap_closed(cpu);
}

void set_arith_flags(cpu_t *cpu, uint64_t arith)
{
    cpu->lf_op = LF_NONE;   /* all six are replaced: the lazy ones need not be computed */
    cpu->rflags = (cpu->rflags & ~(uint64_t)F_ARITH) | (arith & F_ARITH);
}

