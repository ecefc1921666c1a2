/* LOCK-prefixed read-modify-write instructions, performed with host atomics on the
 * guest memory they address, so that they are atomic across the processors' threads
 * (SDM Vol. 3 9.1.2).  A LOCK prefix on anything else is #UD. */
#include "exec.h"

static pthread_mutex_t split_lock = PTHREAD_MUTEX_INITIALIZER;

/* Host pointer to the operand for an atomic access, or NULL when the operand is not
 * plain RAM within one naturally aligned unit (a "split lock": serialized instead). */
static void *atomic_target(cpu_t *cpu, const insn_t *i, uint64_t ea, int size)
{
    uint64_t lin = seg_linear(cpu, i->seg, ea, size, ACC_WRITE);
    if (lin & (uint64_t)(size - 1))
        return NULL;
    int user = cpu->cpl == 3;
    tlb_entry_t *e = &cpu->tlb[user][(lin >> 12) & (TLB_SIZE - 1)];
    if (e->tag_write != (lin & PAGE_MASK)) {
        cpu->emul_hit_gpa = ~0ull;
        e = tlb_fill(cpu, lin, ACC_WRITE, user);
        if (!e)
            return NULL;
        if (unlikely(cpu->dbg_data))
            debug_data_access(cpu, lin, size, ACC_WRITE);
        tlb_take_write_path(cpu, e, lin);
    }
    return (void *)(uintptr_t)(lin + e->addend);
}

static uint64_t atomic_load(void *p, int size)
{
    switch (size) {
    case 1: return __atomic_load_n((uint8_t *)p, __ATOMIC_SEQ_CST);
    case 2: return __atomic_load_n((uint16_t *)p, __ATOMIC_SEQ_CST);
    case 4: return __atomic_load_n((uint32_t *)p, __ATOMIC_SEQ_CST);
    default: return __atomic_load_n((uint64_t *)p, __ATOMIC_SEQ_CST);
    }
}

static int atomic_cas(void *p, int size, uint64_t expected, uint64_t desired)
{
    switch (size) {
    case 1: { uint8_t e = (uint8_t)expected; return __atomic_compare_exchange_n((uint8_t *)p, &e, (uint8_t)desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }
    case 2: { uint16_t e = (uint16_t)expected; return __atomic_compare_exchange_n((uint16_t *)p, &e, (uint16_t)desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }
    case 4: { uint32_t e = (uint32_t)expected; return __atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }
    default: { uint64_t e = expected; return __atomic_compare_exchange_n((uint64_t *)p, &e, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }
    }
}

/* Check that the whole operand can be written (raising #PF or a VM exit now), so that
 * nothing faults while the split lock is held. */
static void probe_write(cpu_t *cpu, const insn_t *i, uint64_t ea, int size)
{
    uint64_t lin = seg_linear(cpu, i->seg, ea, size, ACC_WRITE);
    int user = cpu->cpl == 3;
    tlb_fill(cpu, lin, ACC_WRITE, user);
    if (((lin + (uint64_t)size - 1) ^ lin) & PAGE_MASK)
        tlb_fill(cpu, lin + (uint64_t)size - 1, ACC_WRITE, user);
}

/* Run `compute(old) -> new` atomically on the operand; returns the old value.
 * `compute` may set flags and registers: it runs again if another processor won. */
typedef uint64_t (*rmw_fn)(cpu_t *cpu, const insn_t *i, uint64_t old, int *store);

static uint64_t locked_rmw(cpu_t *cpu, const insn_t *i, int size, rmw_fn compute)
{
    uint64_t ea = ea_of(cpu, i);
    mem_read(cpu, i->seg, ea, size);          /* faults first, as a read would */
    void *p = atomic_target(cpu, i, ea, size);
    if (!p) {
        probe_write(cpu, i, ea, size);
        pthread_mutex_lock(&split_lock);
        uint64_t old = mem_read(cpu, i->seg, ea, size);
        int store = 1;
        uint64_t v = compute(cpu, i, old, &store);
        mem_write(cpu, i->seg, ea, size, store ? v : old);
        pthread_mutex_unlock(&split_lock);
        return old;
    }
    for (;;) {
        uint64_t old = atomic_load(p, size);
        int store = 1;
        uint64_t v = compute(cpu, i, old, &store);
        if (!store || atomic_cas(p, size, old, v))
            return old;
    }
}

static uint64_t alu_compute(cpu_t *cpu, const insn_t *i, uint64_t old, int *store)
{
    (void)store;
    uint64_t src = i->fn == op_locked_alu && i->opcode >= 0x80 && i->opcode <= 0x83 ? i->imm
                                                                                    : reg_read(cpu, i->reg, i->opsize);
    return alu(cpu, i->op, i->opsize, old, src);
}

void op_locked_alu(cpu_t *cpu, const insn_t *i)
{
    if (i->op == 7)
        FAULT(cpu, EXC_UD);   /* CMP does not write: not lockable */
    locked_rmw(cpu, i, i->opsize, alu_compute);
}

/* INC, DEC, NOT, NEG: i->op is UNARY_* (set by apply_lock_prefix) */
enum { UNARY_INC, UNARY_DEC, UNARY_NOT, UNARY_NEG };

static uint64_t unary_compute(cpu_t *cpu, const insn_t *i, uint64_t old, int *store)
{
    (void)store;
    int size = i->opsize;
    uint64_t m = size_mask(size);
    if (i->op == UNARY_NOT)
        return ~old & m;
    if (i->op == UNARY_NEG)
        return alu(cpu, 5, size, 0, old);
    uint64_t c = lazy_carry(cpu);
    uint64_t r = (old + (i->op == UNARY_INC ? 1 : m)) & m;
    set_lazy(cpu, i->op == UNARY_INC ? LF_INC : LF_DEC, size, r, old, 1);
    cpu->lf_carry_in = c;
    return r;
}

void op_locked_unary(cpu_t *cpu, const insn_t *i)
{
    locked_rmw(cpu, i, i->opsize, unary_compute);
}

static uint64_t xchg_compute(cpu_t *cpu, const insn_t *i, uint64_t old, int *store)
{
    (void)old; (void)store;
    return reg_read(cpu, i->reg, i->opsize);
}

void op_locked_xchg(cpu_t *cpu, const insn_t *i)
{
    uint64_t old = locked_rmw(cpu, i, i->opsize, xchg_compute);
    reg_write(cpu, i->reg, i->opsize, old);
}

static uint64_t xadd_compute(cpu_t *cpu, const insn_t *i, uint64_t old, int *store)
{
    (void)store;
    return alu(cpu, 0, i->opsize, old, reg_read(cpu, i->reg, i->opsize));
}

void op_locked_xadd(cpu_t *cpu, const insn_t *i)
{
    uint64_t old = locked_rmw(cpu, i, i->opsize, xadd_compute);
    reg_write(cpu, i->reg, i->opsize, old);
}

static uint64_t cmpxchg_compute(cpu_t *cpu, const insn_t *i, uint64_t old, int *store)
{
    uint64_t acc = reg_read(cpu, R_AX, i->opsize);
    alu(cpu, 7, i->opsize, acc, old);
    if ((acc & size_mask(i->opsize)) == old)
        return reg_read(cpu, i->reg, i->opsize);
    *store = 0;   /* the locked cycle rewrites the value it read: nothing changes */
    return old;
}

void op_locked_cmpxchg(cpu_t *cpu, const insn_t *i)
{
    uint64_t acc = reg_read(cpu, R_AX, i->opsize);
    uint64_t old = locked_rmw(cpu, i, i->opsize, cmpxchg_compute);
    if ((acc & size_mask(i->opsize)) != old)
        reg_write(cpu, R_AX, i->opsize, old);
}

void op_locked_cmpxchg8b(cpu_t *cpu, const insn_t *i)
{
    uint64_t ea = ea_of(cpu, i);
    int wide = i->opsize == 8;    /* CMPXCHG16B with REX.W */
    int size = wide ? 16 : 8;
    if (wide && (ea & 15))
        FAULT_ERR(cpu, EXC_GP, 0);
    mem_read(cpu, i->seg, ea, 8);
    void *p = atomic_target(cpu, i, ea, 8);
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_ZF;
    if (!p || (wide && (((uintptr_t)p) & 15)) || ((ea & 0xfff) + (uint64_t)size > 0x1000)) {
        probe_write(cpu, i, ea, size);
        pthread_mutex_lock(&split_lock);
        op_cmpxchg8b(cpu, i);
        pthread_mutex_unlock(&split_lock);
        return;
    }
    if (wide) {
        unsigned __int128 expected = ((unsigned __int128)cpu->gpr[R_DX] << 64) | cpu->gpr[R_AX];
        unsigned __int128 desired = ((unsigned __int128)cpu->gpr[R_CX] << 64) | cpu->gpr[R_BX];
        unsigned __int128 seen = __sync_val_compare_and_swap((unsigned __int128 *)p, expected, desired);
        if (seen == expected) {
            f |= F_ZF;
        } else {
            cpu->gpr[R_AX] = (uint64_t)seen;
            cpu->gpr[R_DX] = (uint64_t)(seen >> 64);
        }
    } else {
        uint64_t expected = (cpu->gpr[R_AX] & 0xffffffffull) | (cpu->gpr[R_DX] << 32);
        uint64_t desired = (cpu->gpr[R_BX] & 0xffffffffull) | (cpu->gpr[R_CX] << 32);
        uint64_t seen = expected;
        if (__atomic_compare_exchange_n((uint64_t *)p, &seen, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            f |= F_ZF;
        } else {
            reg_write(cpu, R_AX, 4, seen);
            reg_write(cpu, R_DX, 4, seen >> 32);
        }
    }
    set_arith_flags(cpu, f);
}

/* BTS, BTR, BTC (i->op 1..3) on memory; the bit offset may reach beyond the operand. */
static uint64_t bt_compute(cpu_t *cpu, const insn_t *i, uint64_t old, int *store)
{
    (void)store;
    uint64_t bit = cpu->lock_bit;
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_CF;
    set_arith_flags(cpu, f | (((old >> bit) & 1) ? F_CF : 0));
    if (i->op == 1) return old | (1ull << bit);
    if (i->op == 2) return old & ~(1ull << bit);
    return old ^ (1ull << bit);
}

void op_locked_bt(cpu_t *cpu, const insn_t *i)
{
    int size = i->opsize, bits = size * 8;
    insn_t at = *i;
    if (i->opcode == 0xba) {
        cpu->lock_bit = i->imm & (uint64_t)(bits - 1);
    } else {
        int64_t off = (int64_t)sign_extend(reg_read(cpu, i->reg, size), size);
        int64_t unit = off >> (size == 2 ? 4 : size == 4 ? 5 : 6);
        at.disp = i->disp + unit * size;   /* the addressed unit holds the bit */
        cpu->lock_bit = (uint64_t)off & (uint64_t)(bits - 1);
    }
    locked_rmw(cpu, &at, size, bt_compute);
}

/* Which instructions may carry LOCK (SDM Vol. 2 "LOCK"): only these with a memory
 * destination; anything else raises #UD. */
void apply_lock_prefix(insn_t *i)
{
    insn_fn f = i->fn;
    insn_fn locked = NULL;
    if (f == op_alu_rm_r || (f == op_alu_rm_imm && i->opcode >= 0x80 && i->opcode <= 0x83))
        locked = op_locked_alu;
    else if (f == op_inc || f == op_dec || f == op_not || f == op_neg) {
        locked = op_locked_unary;
        i->op = f == op_inc ? UNARY_INC : f == op_dec ? UNARY_DEC : f == op_not ? UNARY_NOT : UNARY_NEG;
    }
    else if (f == op_xchg)
        locked = op_locked_xchg;
    else if (f == op_xadd)
        locked = op_locked_xadd;
    else if (f == op_cmpxchg)
        locked = op_locked_cmpxchg;
    else if (f == op_cmpxchg8b)
        locked = op_locked_cmpxchg8b;
    else if (f == op_bt && i->op != 0)
        locked = op_locked_bt;
    i->fn = (locked && i->has_mem) ? locked : op_ud;
}
