/* Debug registers and debug exceptions (SDM Vol. 3 Chapter 18): the breakpoints DR7
 * enables on DR0-DR3 (instruction, data write, data read/write), the DR6 status they
 * and single-stepping report, and the VMX side of #DB (exception-bitmap exits with the
 * DR6 bits in the exit qualification, pending debug exceptions across VM transitions).
 *
 * Data breakpoints cost nothing while none is enabled: the TLB keeps no fast read or
 * write path to a page a data breakpoint covers, so accesses to it come through the
 * slow paths of mem.c, which report them here.  Instruction breakpoints are checked
 * one instruction at a time only on the pages they are on (run.c). */
#include "core.h"

enum { DR7_RW_EXEC = 0, DR7_RW_WRITE = 1, DR7_RW_IO = 2, DR7_RW_ACCESS = 3 };

static int dr7_enabled(uint64_t dr7, int n) { return (dr7 >> (2 * n)) & 3; }
static int dr7_rw(uint64_t dr7, int n) { return (int)(dr7 >> (16 + 4 * n)) & 3; }

/* LEN: 00 = 1 byte, 01 = 2, 10 = 8, 11 = 4; the address is aligned to it */
static uint64_t dr7_len(uint64_t dr7, int n)
{
    static const uint64_t bytes[4] = { 1, 2, 8, 4 };
    return bytes[(dr7 >> (18 + 4 * n)) & 3];
}

/* What a write of `v` leaves in DRn: DR6 and DR7 keep their fixed bits. */
uint64_t debug_register_value(int n, uint64_t v)
{
    if (n == 6)
        return (v & 0x1e00full) | 0xffff0ff0ull;
    if (n == 7)
        return (v & 0xffff2bffull) | 0x400;
    return v;
}

/* DR0-DR3 or DR7 changed (MOV DR, VM entry): what needs checking from now on. */
void debug_registers_changed(cpu_t *cpu)
{
    uint64_t dr7 = cpu->dr[7];
    uint8_t exec = 0, data = 0;
    for (int n = 0; n < 4; n++) {
        if (!dr7_enabled(dr7, n))
            continue;
        int rw = dr7_rw(dr7, n);
        if (rw == DR7_RW_EXEC)
            exec |= (uint8_t)(1u << n);
        else if (rw != DR7_RW_IO)   /* I/O breakpoints are not modelled */
            data |= (uint8_t)(1u << n);
    }
    cpu->dbg_exec = exec;
    cpu->dbg_data = data;
    /* pages watched before or now lose their cached fast paths */
    for (int n = 0; n < 4; n++) {
        uint64_t watch = (data >> n) & 1 ?
            ((cpu->dr[n] & PAGE_MASK) | (uint64_t)dr7_rw(dr7, n) | (dr7_len(dr7, n) << 2)) : 0;
        if (watch == cpu->dbg_watch[n])
            continue;
        if (cpu->dbg_watch[n])
            tlb_flush_page(cpu, cpu->dbg_watch[n]);
        if (watch)
            tlb_flush_page(cpu, watch);
        cpu->dbg_watch[n] = watch;
    }
    cpu->stop_block = 1;
}

/* May the TLB cache a fast path for this kind of access to the page? */
int debug_watches_page(cpu_t *cpu, uint64_t page, int acc)
{
    for (int n = 0; n < 4; n++) {
        if (!((cpu->dbg_data >> n) & 1) || (cpu->dr[n] & PAGE_MASK) != page)
            continue;
        if (acc == ACC_WRITE || dr7_rw(cpu->dr[7], n) == DR7_RW_ACCESS)
            return 1;
    }
    return 0;
}

/* A data access of the instruction executing: a breakpoint it hits makes a #DB trap
 * pending, delivered once the instruction (or the iteration) completes. */
void debug_data_access(cpu_t *cpu, uint64_t lin, int size, int acc)
{
    uint64_t dr7 = cpu->dr[7], hits = 0;
    for (int n = 0; n < 4; n++) {
        if (!((cpu->dbg_data >> n) & 1) || (acc == ACC_READ && dr7_rw(dr7, n) != DR7_RW_ACCESS))
            continue;
        uint64_t len = dr7_len(dr7, n), start = cpu->dr[n] & ~(len - 1);
        if (lin < start + len && start < lin + (uint64_t)size)
            hits |= 1ull << n;
    }
    if (hits) {
        pend_debug_traps(cpu, hits | PENDING_DBG_ENABLED_BP);
        cpu->stop_block = 1;
    }
}

/* Is an enabled instruction breakpoint on the page of `lin`? */
int debug_code_page(cpu_t *cpu, uint64_t lin)
{
    for (int n = 0; n < 4; n++)
        if (((cpu->dbg_exec >> n) & 1) && !((cpu->dr[n] ^ lin) & PAGE_MASK))
            return 1;
    return 0;
}

/* Before an instruction at linear `lin` executes with RF = 0: a #DB fault for the
 * instruction breakpoints on its first byte. */
void debug_code_breakpoint(cpu_t *cpu, uint64_t lin)
{
    uint64_t hits = 0;
    for (int n = 0; n < 4; n++)
        if (((cpu->dbg_exec >> n) & 1) && cpu->dr[n] == lin)
            hits |= 1ull << n;
    if (hits)
        raise_debug(cpu, hits);
}

/* #DB with the DR6 bits of its causes.  An exception-bitmap VM exit reports them in the
 * exit qualification and leaves DR6 alone; otherwise DR6 takes them (B0-B3 describe
 * this exception, BD and BS stay set until software clears them) and the exception is
 * delivered.  A general-detect fault clears DR7.GD for the handler and, as any fault
 * other than an instruction breakpoint, pushes RF = 1 (SDM Vol. 3 18.3.1.1). */
__attribute__((noreturn)) void raise_debug(cpu_t *cpu, uint64_t dr6_bits)
{
    if (dr6_bits & DR6_BD)
        cpu->rflags |= F_RF;
    if (cpu->vc.exception_bitmap & (1u << EXC_DB)) {
        exit_info_t ei = {0};
        ei.reason = EXIT_REASON_EXCEPTION_NMI;
        ei.intr_info = INTR_INFO_VALID | ((uint32_t)EV_HW_EXC << 8) | EXC_DB;
        ei.qual = dr6_bits;
        vm_exit(cpu, &ei);
    }
    cpu->dr[6] = (cpu->dr[6] & ~DR6_B_MASK) | dr6_bits;
    if (dr6_bits & DR6_BD) {
        cpu->dr[7] &= ~DR7_GD;
        debug_registers_changed(cpu);
    }
    deliver_event_and_unwind(cpu, EV_HW_EXC, EXC_DB, 0, 0, cpu->rip);
}

/* At an instruction boundary outside MOV-SS blocking: the debug traps of the previous
 * instruction (or pending at VM entry).  Without BS or an enabled breakpoint there is
 * nothing valid to deliver (SDM Vol. 3 27.7.3). */
void debug_deliver_pending(cpu_t *cpu)
{
    uint64_t pending = cpu->pending_dbg;
    cpu->pending_dbg = 0;
    if (pending & (DR6_BS | PENDING_DBG_ENABLED_BP))
        raise_debug(cpu, pending & (DR6_B_MASK | DR6_BS));
}

/* Root mode's MOV DR: DR0-DR3 and DR6 are not part of any VMCS area, so the hypervisor
 * switches them itself (DR7 travels in the VMCS with the debug controls). */
uint64_t cpu_get_dr(cpu_t *cpu, int n)
{
    return (n >= 0 && n < 8) ? cpu->dr[n] : 0;
}

int cpu_set_dr(cpu_t *cpu, int n, uint64_t value)
{
    if (n < 0 || n > 7 || n == 4 || n == 5 || ((n == 6 || n == 7) && (value >> 32)))
        return -1;
    cpu->dr[n] = debug_register_value(n, value);
    return 0;
}
