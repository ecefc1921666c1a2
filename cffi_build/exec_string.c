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

/* Fast strings: the iterations of a forward REP MOVS/STOS that stay on the current page
 * of an operand, if the TLB lets them reach it without the slow path (so no MMIO, no
 * decoded code, no data breakpoint, no segment check): how many, at most `budget`, and
 * the host pointer.  0 leaves the next iteration to the ordinary path, which fills the
 * TLB or faults. */
static uint64_t host_run(cpu_t *cpu, const insn_t *i, int seg, int reg, int acc, uint64_t budget,
                         uint8_t **p)
{
    uint64_t off = cpu->gpr[reg] & amask(i);
    if (!(cpu->seg_unchecked & (acc == ACC_WRITE ? 0x100u << seg : 1u << seg)))
        return 0;
    uint64_t lin = (off + cpu->seg_fast_base[seg]) & cpu->lin_mask;
    tlb_entry_t *e = &cpu->tlb_cpl[(lin >> 12) & (TLB_SIZE - 1)];
    if ((acc == ACC_WRITE ? e->tag_write : e->tag_read) != (lin & PAGE_MASK))
        return 0;
    uint64_t room = PAGE_SIZE - (lin & 0xfff);
    if (i->addrsize != 8 && room > amask(i) - off + 1)
        room = amask(i) - off + 1;   /* the offset wraps first */
    uint64_t n = room / i->opsize, count = cpu->gpr[R_CX] & amask(i);
    *p = (uint8_t *)(uintptr_t)(lin + e->addend);
    return n < count ? (n < budget ? n : budget) : (count < budget ? count : budget);
}

/* n iterations done at once: the registers as if one by one */
static void advance_run(cpu_t *cpu, const insn_t *i, int reg, uint64_t n)
{
    advance(cpu, reg, i, (int64_t)(n * i->opsize));
    advance(cpu, R_CX, i, -(int64_t)n);
}

void op_movs(cpu_t *cpu, const insn_t *i)
{
    uint64_t budget = initial_budget(cpu, i);
    int64_t d = step(cpu, i);
    while (!rep_done(cpu, i, &budget)) {
        uint8_t *dst, *src;
        uint64_t n = i->rep && d > 0 ? host_run(cpu, i, S_ES, R_DI, ACC_WRITE, budget, &dst) : 0;
        if (n > 1)
            n = host_run(cpu, i, i->seg, R_SI, ACC_READ, n, &src);
        if (n > 1) {
            size_t bytes = n * i->opsize;
            if (dst <= src || dst >= src + bytes) {
                memmove(dst, src, bytes);   /* as one by one: nothing read was written before */
            } else {
                for (size_t k = 0; k < bytes; k += i->opsize) {   /* a source the copy overtakes */
                    uint64_t v;
                    memcpy(&v, src + k, i->opsize);
                    memcpy(dst + k, &v, i->opsize);
                }
            }
            advance(cpu, R_SI, i, (int64_t)bytes);
            advance_run(cpu, i, R_DI, n);
            budget -= n;
            continue;
        }
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
        uint8_t *dst;
        uint64_t n = i->rep && d > 0 ? host_run(cpu, i, S_ES, R_DI, ACC_WRITE, budget, &dst) : 0;
        if (n > 1) {
            if (i->opsize == 1) {
                memset(dst, (int)v, n);
            } else {
                for (uint64_t k = 0; k < n; k++)
                    memcpy(dst + k * i->opsize, &v, i->opsize);   /* little-endian host */
            }
            advance_run(cpu, i, R_DI, n);
            budget -= n;
            continue;
        }
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
