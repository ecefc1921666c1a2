/* Control transfer: near and far jumps, calls and returns, conditional branches and
 * loops, software interrupts and IRET. */
#include "exec.h"

void op_jmp_rel(cpu_t *cpu, const insn_t *i) { jump_to(cpu, cpu->next_rip + i->imm, i->opsize); }

void op_jcc(cpu_t *cpu, const insn_t *i)
{
    if (cond_true(cpu, i->opcode & 0xf))
        jump_to(cpu, cpu->next_rip + i->imm, i->opsize);
}

void op_call_rel(cpu_t *cpu, const insn_t *i)
{
    push(cpu, i->opsize, cpu->next_rip);
    jump_to(cpu, cpu->next_rip + i->imm, i->opsize);
}

void op_ret(cpu_t *cpu, const insn_t *i)
{
    uint64_t target = pop(cpu, i->opsize);
    if (i->opcode == 0xc2) {
        uint64_t m = stack_ptr_mask(cpu);
        cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((cpu->gpr[R_SP] + (i->imm & 0xffff)) & m);
    }
    jump_to(cpu, target, i->opsize);
}

void op_jmp_rm(cpu_t *cpu, const insn_t *i) { jump_to(cpu, rm_read(cpu, i, i->opsize), i->opsize); }

void op_call_rm(cpu_t *cpu, const insn_t *i)
{
    uint64_t target = rm_read(cpu, i, i->opsize);
    push(cpu, i->opsize, cpu->next_rip);
    jump_to(cpu, target, i->opsize);
}

/* The checks of a code segment for a far JMP/CALL (is_return = 0) or RET/IRET
 * (is_return = 1) in protected mode; nothing changes until set_code_segment(). */
static uint64_t check_code_segment(cpu_t *cpu, uint16_t sel, int is_return, uint64_t *addr)
{
    uint64_t lo, hi;
    if ((sel & ~3u) == 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    if (read_descriptor(cpu, sel, &lo, &hi, addr) < 0)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    uint32_t acc = (uint32_t)((lo >> 40) & 0xff);
    int dpl = (acc >> 5) & 3, rpl = sel & 3;
    if (!(acc & AR_S) || !(acc & 8))
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    if (acc & 4) {
        if (dpl > (is_return ? rpl : cpu->cpl))
            FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    } else if (is_return ? dpl != rpl : (rpl > cpu->cpl || dpl != cpu->cpl)) {
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    }
    if (!(acc & AR_P))
        FAULT_ERR(cpu, EXC_NP, sel & ~3u);
    if ((cpu->efer & EFER_LMA) && (lo & (1ull << 53)) && (lo & (1ull << 54)))
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);   /* L and D both set */
    return lo;
}

/* Load CS with a checked descriptor; it runs at `cpl`. */
void set_code_segment(cpu_t *cpu, uint16_t sel, int cpl, uint64_t lo, uint64_t addr)
{
    mark_accessed(cpu, addr, &lo);
    desc_to_seg(&cpu->seg[S_CS], (uint16_t)((sel & ~3u) | (uint32_t)cpl), lo, 0);
    cpu_update_mode(cpu);
}

static void load_code_segment(cpu_t *cpu, uint16_t sel, int is_return)
{
    uint64_t addr, lo = check_code_segment(cpu, sel, is_return, &addr);
    set_code_segment(cpu, sel, is_return ? sel & 3 : cpu->cpl, lo, addr);
}

/* A far RET or IRET to an outer privilege level (SDM Vol. 2 RET, IRET): check the new
 * CS and SS before loading either. */
static void return_to_outer_level(cpu_t *cpu, uint16_t cs, uint16_t ss)
{
    int cpl = cs & 3;
    uint64_t cs_addr, cs_lo = check_code_segment(cpu, cs, 1, &cs_addr);
    int long_mode = (cpu->efer & EFER_LMA) != 0;
    int to_64bit = long_mode && (cs_lo & (1ull << 53));
    if (to_64bit && (ss & ~3u) == 0 && cpl != 3) {
        /* 64-bit mode allows a null SS below CPL 3 */
        set_code_segment(cpu, cs, cpl, cs_lo, cs_addr);
        cpu->seg[S_SS].sel = ss;
        cpu->seg[S_SS].base = 0;
        cpu->seg[S_SS].limit = 0;
        cpu->seg[S_SS].ar = AR_UNUSABLE | ((uint32_t)cpl << 5);
    } else {
        uint64_t ss_addr, ss_lo = check_stack_segment(cpu, ss, cpl, &ss_addr);
        set_code_segment(cpu, cs, cpl, cs_lo, cs_addr);
        mark_accessed(cpu, ss_addr, &ss_lo);
        desc_to_seg(&cpu->seg[S_SS], ss, ss_lo, 0);
    }
    cpu_update_mode(cpu);
    /* data segments the outer level may not use become null */
    for (int s = S_ES; s <= S_GS; s++) {
        if (s == S_CS || s == S_SS)
            continue;
        seg_t *d = &cpu->seg[s];
        int data_or_nonconforming = !(AR_TYPE(d->ar) & 8) || !(AR_TYPE(d->ar) & 4);
        if (!(d->ar & AR_UNUSABLE) && data_or_nonconforming && (int)AR_DPL(d->ar) < cpu->cpl) {
            d->sel = 0;
            d->ar |= AR_UNUSABLE;
        }
    }
    cpu_update_segment_cache(cpu);
}

/* A far JMP or CALL whose selector names a system descriptor (exec_call_gate.c). */
static int through_gate(cpu_t *cpu, uint16_t sel)
{
    return cpu->mode != MODE_REAL16 && cpu->mode != MODE_VM86 && is_system_descriptor(cpu, sel);
}

static void far_transfer(cpu_t *cpu, uint16_t sel, uint64_t offset, int opsize)
{
    if (cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86) {
        load_seg_real(cpu, S_CS, sel);
        cpu_update_mode(cpu);
    } else {
        load_code_segment(cpu, sel, 0);
    }
    cpu->next_rip = opsize == 8 ? offset : offset & size_mask(opsize);
}

static void far_operand(cpu_t *cpu, const insn_t *i, uint16_t *sel, uint64_t *off)
{
    if (i->op == 0) {             /* ptr16:16/32 immediate */
        *off = i->imm;
        *sel = (uint16_t)i->imm2;
    } else {                      /* m16:16/32/64 */
        uint64_t ea = ea_of(cpu, i);
        *off = mem_read(cpu, i->seg, ea, i->opsize);
        *sel = (uint16_t)mem_read(cpu, i->seg, (ea + i->opsize) & size_mask(i->addrsize), 2);
    }
}

void op_jmp_far(cpu_t *cpu, const insn_t *i)
{
    uint16_t sel;
    uint64_t off;
    far_operand(cpu, i, &sel, &off);
    if (through_gate(cpu, sel))
        far_through_gate(cpu, sel, 0);
    else
        far_transfer(cpu, sel, off, i->opsize);
}

void op_call_far(cpu_t *cpu, const insn_t *i)
{
    uint16_t sel;
    uint64_t off;
    far_operand(cpu, i, &sel, &off);
    if (through_gate(cpu, sel)) {
        far_through_gate(cpu, sel, 1);
        return;
    }
    uint16_t old_cs = cpu->seg[S_CS].sel;
    uint64_t old_sp = cpu->gpr[R_SP];
    /* push first with the old CS cached, so a stack fault leaves CS untouched */
    push(cpu, i->opsize, old_cs);
    push(cpu, i->opsize, cpu->next_rip);
    uint64_t sp_after = cpu->gpr[R_SP];
    cpu->gpr[R_SP] = old_sp;
    far_transfer(cpu, sel, off, i->opsize);
    cpu->gpr[R_SP] = sp_after;
}

void op_retf(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t m = stack_ptr_mask(cpu);
    uint64_t sp = cpu->gpr[R_SP] & m;
    uint64_t ip = mem_read(cpu, S_SS, sp, size);
    uint16_t sel = (uint16_t)mem_read(cpu, S_SS, (sp + size) & m, size);
    uint64_t release = i->opcode == 0xca ? (i->imm & 0xffff) : 0;
    if (cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86) {
        far_transfer(cpu, sel, ip, size);
        cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((sp + 2 * size + release) & m);
        return;
    }
    int rpl = sel & 3;
    if (rpl < cpu->cpl)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    if (rpl == cpu->cpl) {
        load_code_segment(cpu, sel, 1);
        cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((sp + 2 * size + release) & m);
    } else {
        /* return to an outer privilege level: SS:rSP follow on the stack */
        uint64_t new_sp = mem_read(cpu, S_SS, (sp + 2 * size + release) & m, size);
        uint16_t new_ss = (uint16_t)mem_read(cpu, S_SS, (sp + 3 * size + release) & m, size);
        return_to_outer_level(cpu, sel, new_ss);
        cpu->gpr[R_SP] = new_sp + release;
    }
    cpu->next_rip = size == 8 ? ip : ip & size_mask(size);
}

static void iret_flags(cpu_t *cpu, uint64_t v, int size, int old_cpl)
{
    uint64_t cur = cpu_get_rflags(cpu);
    uint64_t changeable = F_ARITH | F_TF | F_DF | F_NT | F_RF | F_AC | F_ID;
    if (size == 2)
        changeable &= 0xffff;
    int iopl = (int)((cur >> 12) & 3);
    if (old_cpl <= iopl)
        changeable |= F_IF;
    if (old_cpl == 0)
        changeable |= F_IOPL | (size == 2 ? 0 : (F_VIF | F_VIP));
    cpu_set_rflags(cpu, (cur & ~changeable) | (v & changeable));
}

void op_iret(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t m = stack_ptr_mask(cpu);
    uint64_t sp = cpu->gpr[R_SP] & m;
    if (cpu->mode == MODE_REAL16) {
        uint64_t ip = mem_read(cpu, S_SS, sp, size);
        uint16_t cs = (uint16_t)mem_read(cpu, S_SS, (sp + size) & m, size);
        uint64_t fl = mem_read(cpu, S_SS, (sp + 2 * size) & m, size);
        cpu->interruptibility &= ~8u;   /* IRET ends NMI blocking */
        load_seg_real(cpu, S_CS, cs);
        cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((sp + 3 * size) & m);
        uint64_t cur = cpu_get_rflags(cpu);
        uint64_t keep = size == 2 ? ~0xffffull : (F_VM | F_VIF | F_VIP);
        cpu_set_rflags(cpu, (cur & keep) | (fl & ~keep));
        cpu_update_mode(cpu);
        cpu->next_rip = ip & size_mask(size);
        return;
    }
    if (cpu->mode == MODE_VM86)
        FAULT_ERR(cpu, EXC_GP, 0);   /* VME/IOPL-sensitive IRET is not modelled */
    if (cpu_get_rflags(cpu) & F_NT)
        FAULT_ERR(cpu, EXC_GP, 0);   /* task return: task switching is not modelled */
    uint64_t ip = mem_read(cpu, S_SS, sp, size);
    uint16_t cs = (uint16_t)mem_read(cpu, S_SS, (sp + size) & m, size);
    uint64_t fl = mem_read(cpu, S_SS, (sp + 2 * size) & m, size);
    cpu->interruptibility &= ~8u;   /* IRET ends NMI blocking once its frame is read */
    int old_cpl = cpu->cpl;
    int rpl = cs & 3;
    if (rpl < old_cpl)
        FAULT_ERR(cpu, EXC_GP, cs & ~3u);
    int long_mode = (cpu->efer & EFER_LMA) != 0;
    if (rpl == old_cpl && !(long_mode && cpu->mode == MODE_LONG64)) {
        load_code_segment(cpu, cs, 1);
        cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((sp + 3 * size) & m);
        iret_flags(cpu, fl, size, old_cpl);
    } else {
        /* 64-bit mode always pops SS:RSP; elsewhere only on a privilege change */
        uint64_t new_sp = mem_read(cpu, S_SS, (sp + 3 * size) & m, size);
        uint16_t new_ss = (uint16_t)mem_read(cpu, S_SS, (sp + 4 * size) & m, size);
        return_to_outer_level(cpu, cs, new_ss);
        iret_flags(cpu, fl, size, old_cpl);
        cpu_update_mode(cpu);
        cpu->gpr[R_SP] = size == 8 || cpu->stack_size == 8 ? new_sp :
                         (cpu->stack_size == 4 ? (uint32_t)new_sp :
                          (cpu->gpr[R_SP] & ~0xffffull) | (new_sp & 0xffff));
    }
    cpu_update_mode(cpu);
    cpu->next_rip = size == 8 ? ip : ip & size_mask(size);
}

void op_int(cpu_t *cpu, const insn_t *i)
{
    deliver_event_and_unwind(cpu, EV_SW_INT, (int)(i->imm & 0xff), 0, 0, cpu->next_rip);
}

/* INT3 and INTO are software exceptions, INT1 (ICEBP) a privileged software exception:
 * the exception bitmap applies to them, and the exit reports the instruction's length. */
static void software_exception(cpu_t *cpu, int type, int vector)
{
    if ((cpu->vc.exception_bitmap >> vector) & 1) {
        exit_info_t ei = {0};
        ei.reason = EXIT_REASON_EXCEPTION_NMI;
        ei.intr_info = INTR_INFO_VALID | ((uint32_t)type << 8) | (uint32_t)vector;
        ei.has_insn_len = 1;
        vm_exit(cpu, &ei);
    }
    deliver_event_and_unwind(cpu, type, vector, 0, 0, cpu->next_rip);
}

void op_int3(cpu_t *cpu, const insn_t *i) { (void)i; software_exception(cpu, EV_SW_EXC, EXC_BP); }

void op_into(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (cpu_get_rflags(cpu) & F_OF)
        software_exception(cpu, EV_SW_EXC, EXC_OF);
}

/* BOUND r, m: #BR (a fault) unless lower <= index <= upper, all signed. */
void op_bound(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t ea = ea_of(cpu, i);
    int64_t index = (int64_t)sign_extend(reg_read(cpu, i->reg, size), size);
    int64_t lower = (int64_t)sign_extend(mem_read(cpu, i->seg, ea, size), size);
    int64_t upper = (int64_t)sign_extend(mem_read(cpu, i->seg, (ea + size) & size_mask(i->addrsize),
                                                  size), size);
    if (index < lower || index > upper)
        FAULT(cpu, EXC_BR);
}

/* INT1 raises #DB without setting any DR6 bit. */
void op_int1(cpu_t *cpu, const insn_t *i) { (void)i; software_exception(cpu, EV_PRIV_SW_EXC, EXC_DB); }

/* LOOPNE (op 0), LOOPE (op 1), LOOP (op 2): the counter is CX/ECX/RCX by address size. */
void op_loop(cpu_t *cpu, const insn_t *i)
{
    uint64_t m = size_mask(i->addrsize);
    uint64_t c = (cpu->gpr[R_CX] - 1) & m;
    cpu->gpr[R_CX] = (cpu->gpr[R_CX] & ~m) | c;
    if (i->addrsize == 4)
        cpu->gpr[R_CX] = c;
    int take = c != 0;
    if (i->op == 0) take = take && !cond_true(cpu, 4);
    if (i->op == 1) take = take && cond_true(cpu, 4);
    if (take)
        jump_to(cpu, cpu->next_rip + i->imm, i->opsize);
}

void op_jcxz(cpu_t *cpu, const insn_t *i)
{
    if ((cpu->gpr[R_CX] & size_mask(i->addrsize)) == 0)
        jump_to(cpu, cpu->next_rip + i->imm, i->opsize);
}
