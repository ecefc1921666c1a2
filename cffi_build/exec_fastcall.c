/* Fast system calls: SYSENTER/SYSEXIT (IA32_SYSENTER_CS/ESP/EIP) and SYSCALL/SYSRET
 * (IA32_STAR/LSTAR/FMASK).  They load CS and SS with fixed flat descriptors instead of
 * reading the GDT (SDM Vol. 2 SYSENTER, SYSEXIT, SYSCALL, SYSRET), and none of them
 * VM-exits in VMX non-root operation. */
#include "exec.h"

/* A flat 4-GiB segment as these instructions load it: code is execute/read accessed
 * (type 11), stack is read/write accessed (type 3). */
static void flat_segment(cpu_t *cpu, int seg, uint16_t sel, int dpl, int code64)
{
    seg_t *s = &cpu->seg[seg];
    s->sel = sel;
    s->base = 0;
    s->limit = 0xffffffff;
    s->ar = (seg == S_CS ? 11u : 3u) | AR_S | ((uint32_t)dpl << 5) | AR_P | AR_G;
    s->ar |= code64 ? AR_L : AR_DB;
}

static int canonical(uint64_t v)
{
    return (uint64_t)(((int64_t)(v << 16)) >> 16) == v;
}

void op_sysenter(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    uint16_t cs = (uint16_t)cpu->msr_sysenter_cs;
    if (!(cpu->cr0 & CR0_PE) || (cs & ~3u) == 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    int long_mode = (cpu->efer & EFER_LMA) != 0;
    cpu->rflags &= ~(uint64_t)(F_VM | F_IF | F_RF);
    flat_segment(cpu, S_CS, cs & 0xfffc, 0, long_mode);
    flat_segment(cpu, S_SS, (uint16_t)((cs & 0xfffc) + 8), 0, 0);
    cpu_update_mode(cpu);
    cpu->gpr[R_SP] = long_mode ? cpu->msr_sysenter_esp : (uint32_t)cpu->msr_sysenter_esp;
    cpu->next_rip = long_mode ? cpu->msr_sysenter_eip : (uint32_t)cpu->msr_sysenter_eip;
}

void op_sysexit(cpu_t *cpu, const insn_t *i)
{
    uint16_t cs = (uint16_t)cpu->msr_sysenter_cs;
    if (!(cpu->cr0 & CR0_PE) || (cs & ~3u) == 0 || cpu->cpl != 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    int to64 = i->opsize == 8;
    uint64_t sp = cpu->gpr[R_CX], ip = cpu->gpr[R_DX];
    if (to64 && (!canonical(sp) || !canonical(ip)))
        FAULT_ERR(cpu, EXC_GP, 0);
    uint16_t user_cs = (uint16_t)(((cs & 0xfffc) + (to64 ? 32 : 16)) | 3);
    flat_segment(cpu, S_CS, user_cs, 3, to64);
    flat_segment(cpu, S_SS, (uint16_t)(user_cs + 8), 3, 0);
    cpu_update_mode(cpu);
    cpu->gpr[R_SP] = to64 ? sp : (uint32_t)sp;
    cpu->next_rip = to64 ? ip : (uint32_t)ip;
}

/* SYSCALL and SYSRET exist in 64-bit mode with EFER.SCE set (Intel: #UD elsewhere). */
static void require_syscall_mode(cpu_t *cpu)
{
    if (cpu->mode != MODE_LONG64 || !(cpu->efer & EFER_SCE))
        FAULT(cpu, EXC_UD);
}

void op_syscall(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    require_syscall_mode(cpu);
    uint16_t cs = (uint16_t)((cpu->msr_star >> 32) & 0xfffc);
    uint64_t flags = cpu_get_rflags(cpu);
    cpu->gpr[R_CX] = cpu->next_rip;
    cpu->gpr[R_R11] = flags;
    cpu_set_rflags(cpu, flags & ~cpu->msr_sfmask & ~(uint64_t)F_RF);
    flat_segment(cpu, S_CS, cs, 0, 1);
    flat_segment(cpu, S_SS, (uint16_t)(cs + 8), 0, 0);
    cpu_update_mode(cpu);
    cpu->next_rip = cpu->msr_lstar;
}

void op_sysret(cpu_t *cpu, const insn_t *i)
{
    require_syscall_mode(cpu);
    if (cpu->cpl != 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    int to64 = i->opsize == 8;
    uint64_t ip = cpu->gpr[R_CX];
    if (to64 && !canonical(ip))
        FAULT_ERR(cpu, EXC_GP, 0);
    uint16_t base = (uint16_t)(cpu->msr_star >> 48);
    cpu_set_rflags(cpu, (cpu->gpr[R_R11] & 0x3c7fd7ull) | 2);
    flat_segment(cpu, S_CS, (uint16_t)((base + (to64 ? 16 : 0)) | 3), 3, to64);
    /* SS keeps the RPL-3 selector STAR[63:48] + 8, whatever RPL that field has */
    flat_segment(cpu, S_SS, (uint16_t)((base + 8) | 3), 3, 0);
    cpu_update_mode(cpu);
    cpu->next_rip = to64 ? ip : (uint32_t)ip;
}
