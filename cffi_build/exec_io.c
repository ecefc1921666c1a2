/* Port I/O: IN, OUT, INS, OUTS.  The processor has no devices of its own: in VMX
 * non-root operation the I/O bitmaps (or unconditional I/O exiting) decide which
 * accesses exit to the hypervisor (SDM 26.1.3, exit qualification in Table 28-5). */
#include "exec.h"

static int io_size(const insn_t *i) { return i->opsize > 4 ? 4 : i->opsize; }

/* Protected-mode I/O permission: CPL <= IOPL, or the TSS I/O bitmap allows it. */
static void check_io_permission(cpu_t *cpu, uint32_t port, int size)
{
    if (!(cpu->cr0 & CR0_PE))
        return;
    int iopl = (int)((cpu_get_rflags(cpu) >> 12) & 3);
    if (cpu->mode != MODE_VM86 && cpu->cpl <= iopl)
        return;
    seg_t *tr = &cpu->seg[S_TR];
    if (!(AR_TYPE(tr->ar) & 8) || tr->limit < 0x67)
        FAULT_ERR(cpu, EXC_GP, 0);
    uint32_t base = (uint32_t)sys_read(cpu, tr->base + 0x66, 2);
    uint32_t byte = base + port / 8;
    if (byte + 1 > tr->limit)
        FAULT_ERR(cpu, EXC_GP, 0);
    uint32_t bits = (uint32_t)sys_read(cpu, tr->base + byte, 2);
    if ((bits >> (port & 7)) & ((1u << size) - 1))
        FAULT_ERR(cpu, EXC_GP, 0);
}

static int io_exits(cpu_t *cpu, uint32_t port, int size)
{
    if (cpu->vc.proc & CPU_USE_IO_BITMAPS) {
        for (int k = 0; k < size; k++) {
            uint32_t p = port + (uint32_t)k;
            if (p > 0xffff)
                return 1;
            uint64_t bitmap = p < 0x8000 ? cpu->vc.io_bitmap_a : cpu->vc.io_bitmap_b;
            uint8_t *bm = hostmem_ptr(cpu->sil, bitmap + ((p & 0x7fff) >> 3));
            if (!bm || ((*bm >> (p & 7)) & 1))
                return 1;
        }
        return 0;
    }
    return (cpu->vc.proc & CPU_UNCOND_IO_EXITING) != 0;
}

static __attribute__((noreturn)) void io_exit(cpu_t *cpu, const insn_t *i, uint32_t port, int size,
                                              int in, int string, uint64_t gla)
{
    exit_info_t ei = {0};
    ei.reason = EXIT_REASON_IO_INSTRUCTION;
    ei.qual = (uint64_t)(size - 1) | (in ? 8u : 0) | (string ? 16u : 0) |
              (string && i->rep ? 32u : 0) | ((i->opcode & 8) ? 0 : 64u) | ((uint64_t)port << 16);
    ei.has_insn_len = 1;
    if (string) {
        ei.gla = gla;
        ei.insn_info = (uint32_t)(i->addrsize == 2 ? 0 : i->addrsize == 4 ? 1 : 2) << 7;
        if (!in)
            ei.insn_info |= (uint32_t)(i->seg & 7) << 15;
    }
    vm_exit(cpu, &ei);
}

static uint32_t port_of(cpu_t *cpu, const insn_t *i)
{
    return (i->opcode & 8) ? (uint32_t)(cpu->gpr[R_DX] & 0xffff) : (uint32_t)(i->imm & 0xff);
}

void op_in(cpu_t *cpu, const insn_t *i)
{
    uint32_t port = port_of(cpu, i);
    int size = io_size(i);
    check_io_permission(cpu, port, size);
    if (io_exits(cpu, port, size))
        io_exit(cpu, i, port, size, 1, 0, 0);
    reg_write(cpu, R_AX, size, ~0ull);   /* nothing answers on the bus */
}

void op_out(cpu_t *cpu, const insn_t *i)
{
    uint32_t port = port_of(cpu, i);
    int size = io_size(i);
    check_io_permission(cpu, port, size);
    if (io_exits(cpu, port, size))
        io_exit(cpu, i, port, size, 0, 0, 0);
}

static void string_io(cpu_t *cpu, const insn_t *i, int in)
{
    uint32_t port = (uint32_t)(cpu->gpr[R_DX] & 0xffff);
    int size = io_size(i);
    uint64_t am = size_mask(i->addrsize);
    check_io_permission(cpu, port, size);
    if (i->rep && (cpu->gpr[R_CX] & am) == 0)
        return;
    int seg = in ? S_ES : i->seg;
    uint64_t off = (in ? cpu->gpr[R_DI] : cpu->gpr[R_SI]) & am;
    if (io_exits(cpu, port, size))
        io_exit(cpu, i, port, size, in, 1, seg_linear(cpu, seg, off, size, in ? ACC_WRITE : ACC_READ));
    /* without an exit there is no device: INS stores all-ones, OUTS reads and drops */
    int64_t d = (cpu->rflags & F_DF) ? -(int64_t)size : size;
    uint64_t count = i->rep ? (cpu->gpr[R_CX] & am) : 1;
    for (; count; count--) {
        off = (in ? cpu->gpr[R_DI] : cpu->gpr[R_SI]) & am;
        if (in)
            mem_write(cpu, S_ES, off, size, ~0ull);
        else
            mem_read(cpu, seg, off, size);
        int r = in ? R_DI : R_SI;
        cpu->gpr[r] = (cpu->gpr[r] & ~am) | ((cpu->gpr[r] + (uint64_t)d) & am);
        if (i->rep)
            cpu->gpr[R_CX] = (cpu->gpr[R_CX] & ~am) | ((cpu->gpr[R_CX] - 1) & am);
    }
}

void op_ins(cpu_t *cpu, const insn_t *i) { string_io(cpu, i, 1); }
void op_outs(cpu_t *cpu, const insn_t *i) { string_io(cpu, i, 0); }
