/* Data movement: MOV forms, extensions, LEA, XCHG, the stack, segment registers. */
#include "exec.h"

void op_mov_rm_r(cpu_t *cpu, const insn_t *i) { rm_write(cpu, i, i->opsize, reg_read(cpu, i->reg, i->opsize)); }
void op_mov_r_rm(cpu_t *cpu, const insn_t *i) { reg_write(cpu, i->reg, i->opsize, rm_read(cpu, i, i->opsize)); }
void op_mov_rm_imm(cpu_t *cpu, const insn_t *i) { rm_write(cpu, i, i->opsize, i->imm); }

void op_mov_moffs_load(cpu_t *cpu, const insn_t *i)
{
    reg_write(cpu, R_AX, i->opsize, mem_read(cpu, i->seg, ea_of(cpu, i), i->opsize));
}

void op_mov_moffs_store(cpu_t *cpu, const insn_t *i)
{
    mem_write(cpu, i->seg, ea_of(cpu, i), i->opsize, reg_read(cpu, R_AX, i->opsize));
}

static int source_size(const insn_t *i)
{
    return i->opcode == 0xb6 || i->opcode == 0xbe ? 1 : 2;
}

void op_movzx(cpu_t *cpu, const insn_t *i)
{
    reg_write(cpu, i->reg, i->opsize, rm_read(cpu, i, source_size(i)));
}

void op_movsx(cpu_t *cpu, const insn_t *i)
{
    int s = source_size(i);
    reg_write(cpu, i->reg, i->opsize, sign_extend(rm_read(cpu, i, s), s));
}

/* 63: MOVSXD in 64-bit mode, ARPL elsewhere. */
void op_movsxd(cpu_t *cpu, const insn_t *i)
{
    if (cpu->mode == MODE_LONG64) {
        reg_write(cpu, i->reg, i->opsize, sign_extend(rm_read(cpu, i, 4), 4));
        return;
    }
    if (cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86)
        FAULT(cpu, EXC_UD);
    uint64_t ea = opr_ea(cpu, i);
    uint64_t dst = opr_read(cpu, i, ea, 2), src = reg_read(cpu, i->reg, 2);
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_ZF;
    if ((dst & 3) < (src & 3)) {
        opr_write(cpu, i, ea, 2, (dst & ~3ull) | (src & 3));
        f |= F_ZF;
    }
    set_arith_flags(cpu, f);
}

void op_lea(cpu_t *cpu, const insn_t *i)
{
    reg_write(cpu, i->reg, i->opsize, ea_of(cpu, i));
}

/* XCHG; opcode 90 without REX.B is NOP, and PAUSE with F3. */
void op_xchg(cpu_t *cpu, const insn_t *i)
{
    if (i->opcode == 0x90 && i->reg == R_AX) {
        if (i->rep == PFX_REP)
            op_pause(cpu, i);
        return;
    }
    uint64_t ea = opr_ea(cpu, i);
    uint64_t a = opr_read(cpu, i, ea, i->opsize), b = reg_read(cpu, i->reg, i->opsize);
    opr_write(cpu, i, ea, i->opsize, b);
    reg_write(cpu, i->reg, i->opsize, a);
}

void op_nop(cpu_t *cpu, const insn_t *i) { (void)cpu; (void)i; }

void op_push_rm(cpu_t *cpu, const insn_t *i) { push(cpu, i->opsize, rm_read(cpu, i, i->opsize)); }
void op_push_imm(cpu_t *cpu, const insn_t *i) { push(cpu, i->opsize, i->imm); }

/* POP r/m: the address is computed with the incremented stack pointer, and RSP is
 * committed only after the destination was written. */
void op_pop_rm(cpu_t *cpu, const insn_t *i)
{
    uint64_t m = stack_ptr_mask(cpu);
    uint64_t old = cpu->gpr[R_SP];
    uint64_t v = mem_read(cpu, S_SS, old & m, i->opsize);
    uint64_t updated = (old & ~m) | ((old + i->opsize) & m);
    if (i->has_mem) {
        cpu->gpr[R_SP] = updated;
        uint64_t ea = ea_of(cpu, i);
        cpu->gpr[R_SP] = old;
        mem_write(cpu, i->seg, ea, i->opsize, v);
        cpu->gpr[R_SP] = updated;
    } else {
        cpu->gpr[R_SP] = updated;
        reg_write(cpu, i->rm, i->opsize, v);
    }
}

/* PUSHA, POPA and ENTER move the stack pointer several times: they work on a copy that
 * is committed once nothing can fault any more, so a fault leaves RSP unchanged. */
static void stack_store(cpu_t *cpu, uint64_t *sp, int size, uint64_t v)
{
    *sp = (*sp - (uint64_t)size) & stack_ptr_mask(cpu);
    mem_write(cpu, S_SS, *sp, size, v);
}

static uint64_t stack_load(cpu_t *cpu, uint64_t *sp, int size)
{
    uint64_t v = mem_read(cpu, S_SS, *sp, size);
    *sp = (*sp + (uint64_t)size) & stack_ptr_mask(cpu);
    return v;
}

static void stack_commit(cpu_t *cpu, uint64_t sp)
{
    uint64_t m = stack_ptr_mask(cpu);
    cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | (sp & m);
}

void op_pusha(cpu_t *cpu, const insn_t *i)
{
    uint64_t sp = cpu->gpr[R_SP] & stack_ptr_mask(cpu);
    for (int r = R_AX; r <= R_DI; r++)
        stack_store(cpu, &sp, i->opsize, cpu->gpr[r]);   /* RSP: its value before */
    stack_commit(cpu, sp);
}

void op_popa(cpu_t *cpu, const insn_t *i)
{
    uint64_t sp = cpu->gpr[R_SP] & stack_ptr_mask(cpu), v[8];
    for (int r = R_DI; r >= R_AX; r--)
        v[r] = stack_load(cpu, &sp, i->opsize);
    for (int r = R_AX; r <= R_DI; r++)
        if (r != R_SP)
            reg_write(cpu, r, i->opsize, v[r]);
    stack_commit(cpu, sp);
}

void op_leave(cpu_t *cpu, const insn_t *i)
{
    uint64_t m = stack_ptr_mask(cpu);
    uint64_t bp = cpu->gpr[R_BP] & m;
    uint64_t v = mem_read(cpu, S_SS, bp, i->opsize);
    cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((bp + i->opsize) & m);
    reg_write(cpu, R_BP, i->opsize, v);
}

void op_enter(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize;
    uint64_t m = stack_ptr_mask(cpu);
    unsigned level = (unsigned)(i->imm2 & 31);
    uint64_t bp = cpu->gpr[R_BP];
    uint64_t sp = cpu->gpr[R_SP] & m;
    stack_store(cpu, &sp, size, bp);
    uint64_t frame = sp;
    for (unsigned k = 1; k < level; k++) {
        bp = (bp & ~m) | ((bp - size) & m);
        stack_store(cpu, &sp, size, mem_read(cpu, S_SS, bp & m, size));
    }
    if (level)
        stack_store(cpu, &sp, size, frame);
    sp = (sp - i->imm) & m;
    mem_read(cpu, S_SS, sp, 1);  /* the new stack top must be accessible */
    reg_write(cpu, R_BP, size, frame);
    stack_commit(cpu, sp);
}

static void load_sreg(cpu_t *cpu, int seg, uint16_t sel)
{
    load_seg(cpu, seg, sel);
    if (seg == S_SS)
        cpu->interruptibility |= 2;   /* blocking by MOV SS for one instruction */
}

void op_mov_sreg_rm(cpu_t *cpu, const insn_t *i)
{
    int seg = i->reg & 7;
    if (seg == S_CS || seg > S_GS)
        FAULT(cpu, EXC_UD);
    load_sreg(cpu, seg, (uint16_t)rm_read(cpu, i, 2));
}

void op_mov_rm_sreg(cpu_t *cpu, const insn_t *i)
{
    int seg = i->reg & 7;
    if (seg > S_GS)
        FAULT(cpu, EXC_UD);
    rm_write(cpu, i, i->has_mem ? 2 : i->opsize, cpu->seg[seg].sel);
}

void op_push_sreg(cpu_t *cpu, const insn_t *i)
{
    push(cpu, i->opsize, cpu->seg[i->op].sel);
}

void op_pop_sreg(cpu_t *cpu, const insn_t *i)
{
    uint64_t m = stack_ptr_mask(cpu);
    uint64_t sp = cpu->gpr[R_SP] & m;
    uint16_t sel = (uint16_t)mem_read(cpu, S_SS, sp, 2);
    load_sreg(cpu, i->op, sel);
    cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((sp + i->opsize) & m);
}

/* LDS/LES/LSS/LFS/LGS: i->op is the segment register. */
void op_load_far_ptr(cpu_t *cpu, const insn_t *i)
{
    uint64_t ea = ea_of(cpu, i);
    uint64_t off = mem_read(cpu, i->seg, ea, i->opsize);
    uint16_t sel = (uint16_t)mem_read(cpu, i->seg, (ea + i->opsize) & size_mask(i->addrsize), 2);
    load_sreg(cpu, i->op, sel);
    reg_write(cpu, i->reg, i->opsize, off);
}

void op_xlat(cpu_t *cpu, const insn_t *i)
{
    uint64_t ea = (cpu->gpr[R_BX] + (cpu->gpr[R_AX] & 0xff)) & size_mask(i->addrsize);
    reg_write(cpu, R_AX, 1, mem_read(cpu, i->seg, ea, 1));
}

static uint64_t byte_swap(uint64_t v, int size)
{
    switch (size) {
    case 2: return __builtin_bswap16((uint16_t)v);
    case 4: return __builtin_bswap32((uint32_t)v);
    default: return __builtin_bswap64(v);
    }
}

void op_movbe(cpu_t *cpu, const insn_t *i)
{
    if (!i->has_mem)
        FAULT(cpu, EXC_UD);
    if (i->op == 0)
        reg_write(cpu, i->reg, i->opsize, byte_swap(rm_read(cpu, i, i->opsize), i->opsize));
    else
        rm_write(cpu, i, i->opsize, byte_swap(reg_read(cpu, i->reg, i->opsize), i->opsize));
}
