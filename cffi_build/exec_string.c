/* String instructions with REP/REPE/REPNE: MOVS, CMPS, STOS, LODS, SCAS.  Registers
 * advance after every iteration, so a fault or exit mid-way resumes correctly. */
#include "exec.h"

static inline uint64_t amask(const insn_t *i) { return size_mask(i->addrsize); }

static inline void advance(cpu_t *cpu, int r, const insn_t *i, int64_t delta)
{
    uint64_t m = amask(i);
    uint64_t v = (cpu->gpr[r] + (uint64_t)delta) & m;
    cpu->gpr[r] = i->addrsize == 4 ? v : ((cpu->gpr[r] & ~m) | v);
}

static inline int64_t step(cpu_t *cpu, const insn_t *i)
{
    return (cpu->rflags & F_DF) ? -(int64_t)i->opsize : (int64_t)i->opsize;
}

/* Iterations to run now: all of them, or one while emulating an MMIO access (the
 * instruction is then restarted for the rest).  An iteration that wrote the APIC-access
 * page is an operation of its own: its APIC-write emulation comes before the next. */
static inline int rep_done(cpu_t *cpu, const insn_t *i, uint64_t *budget)
{
    if (!i->rep)
        return *budget == 0;
    if ((cpu->gpr[R_CX] & amask(i)) == 0)
        return 1;
    if (*budget == 0 || cpu->apic_write_offset >= 0) {
        /* resume the remaining iterations later (the block ends here); an event taken
         * in between pushes RF = 1, so that an instruction breakpoint does not hit the
         * restart (SDM Vol. 3 18.3.1.1) */
        cpu->next_rip = cpu->rip;
        cpu->stop_block = 1;
        if (!cpu->emul)
            cpu->rflags |= F_RF;
        return 1;
    }
    return 0;
}

static inline void rep_count(cpu_t *cpu, const insn_t *i)
{
    if (i->rep)
        advance(cpu, R_CX, i, -1);
}

static uint64_t initial_budget(cpu_t *cpu, const insn_t *i)
{
    if (!i->rep || cpu->emul || debug_one_iteration(cpu))
        return 1;
    return 1ull << 20;   /* bound one pass so kicks and timers are noticed */
}

void op_movs(cpu_t *cpu, const insn_t *i)
{
    uint64_t budget = initial_budget(cpu, i);
    int64_t d = step(cpu, i);
    while (!rep_done(cpu, i, &budget)) {
        uint64_t v = mem_read(cpu, i->seg, cpu->gpr[R_SI] & amask(i), i->opsize);
        mem_write(cpu, S_ES, cpu->gpr[R_DI] & amask(i), i->opsize, v);
        advance(cpu, R_SI, i, d);
        advance(cpu, R_DI, i, d);
        rep_count(cpu, i);
        budget--;
    }
}

void op_stos(cpu_t *cpu, const insn_t *i)
{
    uint64_t budget = initial_budget(cpu, i);
    int64_t d = step(cpu, i);
    uint64_t v = reg_read(cpu, R_AX, i->opsize);
    while (!rep_done(cpu, i, &budget)) {
        mem_write(cpu, S_ES, cpu->gpr[R_DI] & amask(i), i->opsize, v);
        advance(cpu, R_DI, i, d);
        rep_count(cpu, i);
        budget--;
    }
}

void op_lods(cpu_t *cpu, const insn_t *i)
{
    uint64_t budget = initial_budget(cpu, i);
    int64_t d = step(cpu, i);
    while (!rep_done(cpu, i, &budget)) {
        reg_write(cpu, R_AX, i->opsize, mem_read(cpu, i->seg, cpu->gpr[R_SI] & amask(i), i->opsize));
        advance(cpu, R_SI, i, d);
        rep_count(cpu, i);
        budget--;
    }
}

/* REPE continues while equal (ZF=1), REPNE while not equal. */
static int compare_stops(cpu_t *cpu, const insn_t *i, uint64_t a, uint64_t b)
{
    uint64_t m = size_mask(i->opsize);
    set_lazy(cpu, LF_SUB, i->opsize, (a - b) & m, a & m, b & m);
    if (!i->rep)
        return 0;
    int equal = (a & m) == (b & m);
    return i->rep == PFX_REP ? !equal : equal;
}

void op_cmps(cpu_t *cpu, const insn_t *i)
{
    uint64_t budget = initial_budget(cpu, i);
    int64_t d = step(cpu, i);
    while (!rep_done(cpu, i, &budget)) {
        uint64_t a = mem_read(cpu, i->seg, cpu->gpr[R_SI] & amask(i), i->opsize);
        uint64_t b = mem_read(cpu, S_ES, cpu->gpr[R_DI] & amask(i), i->opsize);
        advance(cpu, R_SI, i, d);
        advance(cpu, R_DI, i, d);
        rep_count(cpu, i);
        budget--;
        if (compare_stops(cpu, i, a, b))
            break;
    }
}

void op_scas(cpu_t *cpu, const insn_t *i)
{
    uint64_t budget = initial_budget(cpu, i);
    int64_t d = step(cpu, i);
    uint64_t a = reg_read(cpu, R_AX, i->opsize);
    while (!rep_done(cpu, i, &budget)) {
        uint64_t b = mem_read(cpu, S_ES, cpu->gpr[R_DI] & amask(i), i->opsize);
        advance(cpu, R_DI, i, d);
        rep_count(cpu, i);
        budget--;
        if (compare_stops(cpu, i, a, b))
            break;
    }
}
