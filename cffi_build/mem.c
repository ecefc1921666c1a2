/* Guest memory accesses: effective address -> segment -> TLB -> host memory, with the
 * slow paths for page-crossing, self-modifying code, MMIO emulation, the APIC-access
 * page and unbacked memory. */
#include "apicv.h"

/* An access to the MMIO page during root-mode emulation of one instruction. */
static uint64_t emul_mmio_read(cpu_t *cpu, int size)
{
    struct mmio_emulation *m = cpu->emul;
    if (m->has_read_data) {
        m->has_read_data = 0;
        return m->read_data & size_mask(size);
    }
    m->result = 1; /* EMUL_NEED_READ */
    m->access_gpa = cpu->emul_hit_gpa;
    m->access_len = (uint32_t)size;
    m->access_is_write = 0;
    longjmp(cpu->exit_jmp, 1);
}

static void emul_mmio_write(cpu_t *cpu, int size, uint64_t v)
{
    struct mmio_emulation *m = cpu->emul;
    m->result = 2; /* EMUL_WRITE: completes when the instruction does */
    m->access_gpa = cpu->emul_hit_gpa;
    m->access_len = (uint32_t)size;
    m->access_is_write = 1;
    m->write_data = v & size_mask(size);
}

static uint64_t read_slow(cpu_t *cpu, uint64_t lin, int size, int user)
{
    if (((lin & 0xfff) + size) > 0x1000) {
        uint64_t v = 0;
        for (int b = 0; b < size; b++)
            v |= lin_read(cpu, lin + b, 1, user) << (b * 8);
        return v;
    }
    tlb_entry_t *e = tlb_fill(cpu, lin, ACC_READ, user);
    if (!e) {
        if (cpu->emul_hit_gpa != ~0ull)
            return cpu->emul ? emul_mmio_read(cpu, size) : apic_access_read(cpu, lin, size);
        return size_mask(size);
    }
    if (unlikely(cpu->dbg_data))
        debug_data_access(cpu, lin, size, ACC_READ);
    return load_host((uint8_t *)(uintptr_t)(lin + e->addend), size);
}

uint64_t lin_read(cpu_t *cpu, uint64_t lin, int size, int user)
{
    tlb_entry_t *e = &cpu->tlb[user][(lin >> 12) & (TLB_SIZE - 1)];
    if (likely(e->tag_read == (lin & PAGE_MASK) && (lin & 0xfff) + size <= 0x1000))
        return load_host((uint8_t *)(uintptr_t)(lin + e->addend), size);
    cpu->emul_hit_gpa = ~0ull;
    return read_slow(cpu, lin, size, user);
}

static void write_slow(cpu_t *cpu, uint64_t lin, int size, uint64_t v, int user)
{
    if (((lin & 0xfff) + size) > 0x1000) {
        int first = (int)(0x1000 - (lin & 0xfff));
        /* check both pages for writability before writing either */
        tlb_fill(cpu, lin, ACC_WRITE, user);
        tlb_fill(cpu, lin + first, ACC_WRITE, user);
        for (int b = 0; b < size; b++)
            lin_write(cpu, lin + b, 1, (v >> (b * 8)) & 0xff, user);
        return;
    }
    tlb_entry_t *e = tlb_fill(cpu, lin, ACC_WRITE, user);
    if (!e) {
        if (cpu->emul_hit_gpa == ~0ull)
            return;
        if (cpu->emul)
            emul_mmio_write(cpu, size, v);
        else
            apic_access_write(cpu, lin, size, v);
        return;
    }
    if (unlikely(cpu->dbg_data))
        debug_data_access(cpu, lin, size, ACC_WRITE);
    tlb_take_write_path(cpu, e, lin);
    store_host((uint8_t *)(uintptr_t)(lin + e->addend), size, v);
}

void lin_write(cpu_t *cpu, uint64_t lin, int size, uint64_t v, int user)
{
    tlb_entry_t *e = &cpu->tlb[user][(lin >> 12) & (TLB_SIZE - 1)];
    if (likely(e->tag_write == (lin & PAGE_MASK) && (lin & 0xfff) + size <= 0x1000)) {
        store_host((uint8_t *)(uintptr_t)(lin + e->addend), size, v);
        return;
    }
    cpu->emul_hit_gpa = ~0ull;
    write_slow(cpu, lin, size, v, user);
}

uint64_t mem_read_slow(cpu_t *cpu, int seg, uint64_t off, int size)
{
    return lin_read(cpu, seg_linear(cpu, seg, off, size, ACC_READ), size, cpu->cpl == 3);
}

void mem_write_slow(cpu_t *cpu, int seg, uint64_t off, int size, uint64_t v)
{
    lin_write(cpu, seg_linear(cpu, seg, off, size, ACC_WRITE), size, v, cpu->cpl == 3);
}

uint64_t sys_read(cpu_t *cpu, uint64_t lin, int size)
{
    return lin_read(cpu, lin, size, 0);
}

void sys_write(cpu_t *cpu, uint64_t lin, int size, uint64_t v)
{
    lin_write(cpu, lin, size, v, 0);
}

/* Host pointer to the instruction bytes at `lin` (valid to the end of its page). */
uint8_t *fetch_ptr(cpu_t *cpu, uint64_t lin, uint64_t *hpa_out)
{
    int user = cpu->cpl == 3;
    tlb_entry_t *e = &cpu->tlb[user][(lin >> 12) & (TLB_SIZE - 1)];
    if (unlikely(e->tag_exec != (lin & PAGE_MASK))) {
        cpu->emul_hit_gpa = ~0ull;
        e = tlb_fill(cpu, lin, ACC_EXEC, user);
        if (!e)
            return NULL;
    }
    if (hpa_out)
        *hpa_out = e->hpa | (lin & 0xfff);
    return (uint8_t *)(uintptr_t)(lin + e->addend);
}

uint64_t rm_read(cpu_t *cpu, const insn_t *i, int size)
{
    if (!i->has_mem)
        return reg_read(cpu, i->rm, size);
    return mem_read(cpu, i->seg, ea_of(cpu, i), size);
}

void rm_write(cpu_t *cpu, const insn_t *i, int size, uint64_t v)
{
    if (!i->has_mem)
        reg_write(cpu, i->rm, size, v);
    else
        mem_write(cpu, i->seg, ea_of(cpu, i), size, v);
}

uint64_t stack_ptr_mask(cpu_t *cpu)
{
    return size_mask(cpu->stack_size);
}

void push(cpu_t *cpu, int size, uint64_t v)
{
    uint64_t m = stack_ptr_mask(cpu);
    uint64_t sp = (cpu->gpr[R_SP] - size) & m;
    mem_write(cpu, S_SS, sp, size, v);
    cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | sp;
}

uint64_t pop(cpu_t *cpu, int size)
{
    uint64_t m = stack_ptr_mask(cpu);
    uint64_t sp = cpu->gpr[R_SP] & m;
    uint64_t v = mem_read(cpu, S_SS, sp, size);
    cpu->gpr[R_SP] = (cpu->gpr[R_SP] & ~m) | ((sp + size) & m);
    return v;
}
