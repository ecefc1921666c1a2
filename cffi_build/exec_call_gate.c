/* Far JMP and CALL through a call gate (SDM Vol. 2 CALL and JMP, Vol. 3 5.8): the gate's
 * checks, the target code segment's, and for a CALL to a more privileged level the stack
 * switch through the TSS with the copy of the gate's parameters.  Everything that can
 * fault is checked or written before CS, SS, RSP and RIP change. */
#include "exec.h"

#define GATE_CALL16 0x4
#define GATE_CALL32 0xc      /* a 64-bit call gate in IA-32e mode */
#define DESC_S (1ull << 44)
#define DESC_P (1ull << 47)
#define DESC_L (1ull << 53)
#define DESC_D (1ull << 54)

static int canonical(uint64_t a) { return (uint64_t)(((int64_t)(a << 16)) >> 16) == a; }

/* Do `len` bytes end just below `top` within the segment's limit (expand-down too)? */
static int stack_has_room(const seg_t *ss, uint64_t top, uint64_t len)
{
    uint64_t upper = (ss->ar & AR_DB) ? 0xffffffffull : 0xffffull;
    uint64_t low = (top - len) & upper;
    if (low + len - 1 > upper)
        return 0;
    if (AR_TYPE(ss->ar) & 4)              /* expand-down: offsets above the limit */
        return low > ss->limit;
    return low + len - 1 <= ss->limit;
}

/* The descriptor table's limit for a selector (GDT or LDT). */
static uint32_t table_limit(cpu_t *cpu, uint16_t sel)
{
    return (sel & 4) ? cpu->seg[S_LDTR].limit : cpu->gdtr.limit;
}

/* A CALL to a more privileged non-conforming segment in legacy protected mode: SS:ESP
 * for `cpl` from the TSS; the old SS and ESP, `params` parameters copied from the old
 * stack, the old CS and EIP go on the new stack in `gsize`-byte slots. */
static void call_inner_legacy(cpu_t *cpu, int cpl, int gsize, int params, uint16_t cs, uint64_t clo,
                              uint64_t caddr, uint64_t target)
{
    seg_t ss;
    uint64_t top = tss_stack(cpu, cpl, 0, &ss);
    uint64_t mask = (ss.ar & AR_DB) ? 0xffffffffull : 0xffffull;
    uint64_t len = (uint64_t)(4 + params) * (uint64_t)gsize;
    if (!stack_has_room(&ss, top, len))
        FAULT_ERR(cpu, EXC_SS, ss.sel & ~3u);
    uint64_t slots[4 + 31];
    uint64_t old_mask = stack_ptr_mask(cpu), old_sp = cpu->gpr[R_SP] & old_mask;
    slots[0] = cpu->next_rip;
    slots[1] = cpu->seg[S_CS].sel;
    for (int p = 0; p < params; p++)
        slots[2 + p] = mem_read(cpu, S_SS, (old_sp + (uint64_t)p * (uint64_t)gsize) & old_mask, gsize);
    slots[2 + params] = cpu->gpr[R_SP] & size_mask(gsize);
    slots[3 + params] = cpu->seg[S_SS].sel;
    uint64_t low = (top - len) & mask;
    for (int k = 0; k < 4 + params; k++)
        sys_write(cpu, (uint32_t)(ss.base + ((low + (uint64_t)k * (uint64_t)gsize) & mask)), gsize, slots[k]);
    cpu->seg[S_SS] = ss;
    set_code_segment(cpu, cs, cpl, clo, caddr);
    cpu->gpr[R_SP] = (top & ~mask) | low;
    cpu->next_rip = target;
}

/* The same in IA-32e mode: RSP for `cpl` from the 64-bit TSS, SS becomes a null selector
 * with RPL = `cpl`, and four 8-byte slots are pushed (no parameters). */
static void call_inner_long(cpu_t *cpu, int cpl, uint16_t cs, uint64_t clo, uint64_t caddr, uint64_t target)
{
    seg_t *tr = &cpu->seg[S_TR];
    uint32_t off = 4 + (uint32_t)cpl * 8;
    if (off + 7 > tr->limit)
        FAULT_ERR(cpu, EXC_TS, tr->sel & ~3u);
    uint64_t top = sys_read(cpu, tr->base + off, 8);
    if (!canonical(top - 32) || !canonical(top - 1))
        FAULT_ERR(cpu, EXC_SS, 0);
    uint64_t slots[4] = { cpu->next_rip, cpu->seg[S_CS].sel, cpu->gpr[R_SP], cpu->seg[S_SS].sel };
    for (int k = 0; k < 4; k++)
        sys_write(cpu, top - 32 + (uint64_t)k * 8, 8, slots[k]);
    cpu->seg[S_SS].sel = (uint16_t)cpl;
    cpu->seg[S_SS].base = 0;
    cpu->seg[S_SS].limit = 0;
    cpu->seg[S_SS].ar = AR_UNUSABLE | ((uint32_t)cpl << 5);
    set_code_segment(cpu, cs, cpl, clo, caddr);
    cpu->gpr[R_SP] = top - 32;
    cpu->next_rip = target;
}

/* A CALL through the gate at the same privilege level: CS and EIP in `gsize` bytes on the
 * current stack. */
static void call_same_level(cpu_t *cpu, int gsize, uint16_t cs, uint64_t clo, uint64_t caddr, uint64_t target)
{
    uint64_t mask = stack_ptr_mask(cpu), sp = cpu->gpr[R_SP];
    uint64_t at_cs = (sp - (uint64_t)gsize) & mask, at_ip = (sp - 2 * (uint64_t)gsize) & mask;
    mem_write(cpu, S_SS, at_cs, gsize, cpu->seg[S_CS].sel);
    mem_write(cpu, S_SS, at_ip, gsize, cpu->next_rip);
    set_code_segment(cpu, cs, cpu->cpl, clo, caddr);
    cpu->gpr[R_SP] = (sp & ~mask) | at_ip;
    cpu->next_rip = target;
}

void far_through_gate(cpu_t *cpu, uint16_t sel, int is_call)
{
    int long_mode = (cpu->efer & EFER_LMA) != 0;
    uint32_t gate_err = sel & ~3u;
    uint64_t lo, hi, addr;
    if (read_descriptor(cpu, sel, &lo, &hi, &addr) < 0)
        FAULT_ERR(cpu, EXC_GP, gate_err);
    int type = (int)((lo >> 40) & 0xf), gdpl = (int)((lo >> 45) & 3);
    int gsize = long_mode ? (type == GATE_CALL32 ? 8 : 0) : (type == GATE_CALL16 ? 2 : type == GATE_CALL32 ? 4 : 0);
    if (!gsize || gdpl < cpu->cpl || gdpl < (sel & 3))
        FAULT_ERR(cpu, EXC_GP, gate_err);   /* task gates and TSSs: task switches are not modelled */
    if (!(lo & DESC_P))
        FAULT_ERR(cpu, EXC_NP, gate_err);
    if (long_mode && ((sel & ~7u) + 15 > table_limit(cpu, sel) || ((hi >> 40) & 0x1f) != 0))
        FAULT_ERR(cpu, EXC_GP, gate_err);   /* the upper half must be there, of type 0 */
    uint16_t cs = (uint16_t)(lo >> 16);
    uint64_t target = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ull);
    if (gsize == 2)
        target &= 0xffff;
    if (long_mode)
        target |= (hi & 0xffffffffull) << 32;
    int params = long_mode ? 0 : (int)((lo >> 32) & 0x1f);

    uint64_t clo, chi, caddr;
    if ((cs & ~3u) == 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    if (read_descriptor(cpu, cs, &clo, &chi, &caddr) < 0)
        FAULT_ERR(cpu, EXC_GP, cs & ~3u);
    uint32_t cacc = (uint32_t)((clo >> 40) & 0xff);
    int cdpl = (int)AR_DPL(cacc), conforming = (cacc & 4) != 0;
    if (!(clo & DESC_S) || !(cacc & 8) || cdpl > cpu->cpl)
        FAULT_ERR(cpu, EXC_GP, cs & ~3u);
    if (!is_call && !conforming && cdpl != cpu->cpl)
        FAULT_ERR(cpu, EXC_GP, cs & ~3u);
    if (long_mode && (!(clo & DESC_L) || (clo & DESC_D)))
        FAULT_ERR(cpu, EXC_GP, cs & ~3u);   /* a 64-bit gate leads to 64-bit code */
    if (!(clo & DESC_P))
        FAULT_ERR(cpu, EXC_NP, cs & ~3u);
    if (long_mode) {
        if (!canonical(target))
            FAULT_ERR(cpu, EXC_GP, 0);
    } else {
        uint32_t raw = (uint32_t)((clo & 0xffff) | ((clo >> 32) & 0xf0000));
        uint64_t limit = (clo & (1ull << 55)) ? ((uint64_t)raw << 12) | 0xfff : raw;
        if (target > limit)
            FAULT_ERR(cpu, EXC_GP, 0);
    }
    int new_cpl = conforming || !is_call ? cpu->cpl : cdpl;
    if (!is_call) {
        set_code_segment(cpu, cs, cpu->cpl, clo, caddr);
        cpu->next_rip = target;
    } else if (new_cpl < cpu->cpl) {
        if (long_mode)
            call_inner_long(cpu, new_cpl, cs, clo, caddr, target);
        else
            call_inner_legacy(cpu, new_cpl, gsize, params, cs, clo, caddr, target);
    } else {
        call_same_level(cpu, gsize, cs, clo, caddr, target);
    }
}

int is_system_descriptor(cpu_t *cpu, uint16_t sel)
{
    uint64_t lo, hi, addr;
    return (sel & ~3u) != 0 && read_descriptor(cpu, sel, &lo, &hi, &addr) == 0 && !(lo & DESC_S);
}
