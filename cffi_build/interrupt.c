/* Exceptions and interrupts: the exception-bitmap VM exit, double and triple faults,
 * and delivery through the IVT (real mode) or the IDT (protected and long mode). */
#include "core.h"

static int exception_class(int v)
{
    if (v == EXC_PF) return 2;                                        /* page fault */
    if (v == EXC_DE || (v >= EXC_TS && v <= EXC_GP)) return 1;        /* contributory */
    return 0;                                                         /* benign */
}

static int pushes_error_code(int v)
{
    return v == EXC_DF || (v >= EXC_TS && v <= EXC_PF) || v == EXC_AC;
}

/* Exceptions reported on the instruction that caused them (#DB is a fault only for
 * instruction breakpoints, which are not modelled; #DF and #MC are aborts). */
static int is_fault_class(int v)
{
    return v == EXC_DE || v == EXC_BR || v == EXC_UD || v == EXC_NM ||
           (v >= EXC_TS && v <= EXC_PF) || v == EXC_MF || v == EXC_AC || v == EXC_XM;
}

/* Does the exception bitmap turn this exception into a VM exit? */
static int exception_exits(cpu_t *cpu, int vector, uint32_t error)
{
    int bit = (cpu->vc.exception_bitmap >> vector) & 1;
    if (vector == EXC_PF && (error & cpu->vc.pf_mask) != cpu->vc.pf_match)
        bit = !bit;
    return bit;
}

__attribute__((noreturn)) void raise_fault(cpu_t *cpu, int vector, int has_error, uint32_t error)
{
    if (cpu->emul) {
        /* root-mode emulation: report the fault, the hypervisor injects it */
        cpu->emul->result = 3; /* EMUL_FAULT */
        cpu->emul->fault_vector = (uint32_t)vector;
        cpu->emul->fault_has_error_code = has_error;
        cpu->emul->fault_error_code = error;
        if (vector == EXC_PF)
            cpu->cr2 = cpu->pf_addr;
        longjmp(cpu->exit_jmp, 1);
    }
    if (cpu->delivering) {
        abort_delivery(cpu);
        uint32_t first = cpu->delivering_info & 0xff;
        int first_type = (cpu->delivering_info >> 8) & 7;
        /* a triple fault, or a double fault that replaces the event, is no VM exit
         * "during event delivery": the IDT-vectoring information stays invalid
         * (SDM Vol. 3 "Information for VM Exits During Event Delivery") */
        if (first_type == EV_HW_EXC && first == EXC_DF) {
            cpu->delivering = 0;
            vm_exit_simple(cpu, EXIT_REASON_TRIPLE_FAULT, 0);
        }
        int c1 = first_type == EV_HW_EXC ? exception_class((int)first) : 0;
        int c2 = exception_class(vector);
        if ((c1 == 1 && c2 == 1) || (c1 == 2 && c2 != 0)) {
            cpu->delivering = 0;
            vector = EXC_DF;
            has_error = 1;
            error = 0;
        }
    }
    if (exception_exits(cpu, vector, error)) {
        exit_info_t ei = {0};
        ei.reason = EXIT_REASON_EXCEPTION_NMI;
        ei.intr_info = INTR_INFO_VALID | ((uint32_t)EV_HW_EXC << 8) | (uint32_t)vector |
                       (has_error ? INTR_INFO_DELIVER_CODE : 0);
        ei.intr_error = error;
        if (vector == EXC_PF)
            ei.qual = cpu->pf_addr;
        vm_exit(cpu, &ei);
    }
    if (vector == EXC_PF)
        cpu->cr2 = cpu->pf_addr;
    /* the handler may restart a faulting instruction without an instruction breakpoint
     * firing again: fault-class exceptions push RF = 1 (SDM Vol. 3 18.3.1.1) */
    if (is_fault_class(vector))
        cpu->rflags |= F_RF;
    deliver_event_and_unwind(cpu, EV_HW_EXC, vector, has_error, error, cpu->rip);
}

static void deliver_real(cpu_t *cpu, int vector, uint64_t return_rip)
{
    if ((uint32_t)vector * 4 + 3 > cpu->idtr.limit)
        FAULT_ERR(cpu, EXC_GP, (uint32_t)vector * 8 + 2);
    uint32_t ent = (uint32_t)sys_read(cpu, cpu->idtr.base + (uint64_t)vector * 4, 4);
    push(cpu, 2, cpu_get_rflags(cpu));
    push(cpu, 2, cpu->seg[S_CS].sel);
    push(cpu, 2, return_rip);
    cpu->rflags &= ~(uint64_t)(F_IF | F_TF | F_AC | F_RF);
    load_seg_real(cpu, S_CS, (uint16_t)(ent >> 16));
    cpu->rip = ent & 0xffff;
}

/* Stack for a privilege change from the TSS, with the checks of the new SS (SDM
 * Vol. 3 6.12.1 and the INT n pseudocode): the SS descriptor is loaded into `ss_out`. */
uint64_t tss_stack(cpu_t *cpu, int dpl, uint32_t ext, seg_t *ss_out)
{
    seg_t *tr = &cpu->seg[S_TR];
    uint64_t sp;
    uint16_t ss;
    if (AR_TYPE(tr->ar) & 8) {          /* 32-bit TSS */
        uint32_t off = 4 + (uint32_t)dpl * 8;
        if (off + 5 > tr->limit)
            FAULT_ERR(cpu, EXC_TS, (tr->sel & ~3u) + ext);
        sp = sys_read(cpu, tr->base + off, 4);
        ss = (uint16_t)sys_read(cpu, tr->base + off + 4, 2);
    } else {                            /* 16-bit TSS */
        uint32_t off = 2 + (uint32_t)dpl * 4;
        if (off + 3 > tr->limit)
            FAULT_ERR(cpu, EXC_TS, (tr->sel & ~3u) + ext);
        sp = sys_read(cpu, tr->base + off, 2);
        ss = (uint16_t)sys_read(cpu, tr->base + off + 2, 2);
    }
    uint64_t lo, hi, addr;
    if ((ss & ~3u) == 0)
        FAULT_ERR(cpu, EXC_TS, ext);
    if (read_descriptor(cpu, ss, &lo, &hi, &addr) < 0)
        FAULT_ERR(cpu, EXC_TS, (ss & ~3u) + ext);
    uint32_t acc = (uint32_t)((lo >> 40) & 0xff);
    int writable_data = (acc & AR_S) && !(acc & 8) && (acc & 2);
    if ((ss & 3) != dpl || (int)AR_DPL(acc) != dpl || !writable_data)
        FAULT_ERR(cpu, EXC_TS, (ss & ~3u) + ext);
    if (!(acc & AR_P))
        FAULT_ERR(cpu, EXC_SS, (ss & ~3u) + ext);
    mark_accessed(cpu, addr, &lo);
    desc_to_seg(ss_out, ss, lo, 0);
    return sp;
}

static void deliver_protected(cpu_t *cpu, int type, int vector, int has_error, uint32_t error,
                              uint64_t return_rip)
{
    int ext = type != EV_SW_INT && type != EV_SW_EXC && type != EV_PRIV_SW_EXC;
    int long_mode = (cpu->efer & EFER_LMA) != 0;
    int gsize = long_mode ? 16 : 8;
    uint32_t idt_err = (uint32_t)vector * 8 + 2 + (uint32_t)ext;
    if ((uint32_t)vector * gsize + gsize - 1 > cpu->idtr.limit)
        FAULT_ERR(cpu, EXC_GP, idt_err);
    uint64_t lo = sys_read(cpu, cpu->idtr.base + (uint64_t)vector * gsize, 8);
    uint64_t hi = long_mode ? sys_read(cpu, cpu->idtr.base + (uint64_t)vector * gsize + 8, 8) : 0;
    int gtype = (int)((lo >> 40) & 0xf), gdpl = (int)((lo >> 45) & 3);
    int valid = long_mode ? (gtype == 0xe || gtype == 0xf)
                          : (gtype == 0x6 || gtype == 0x7 || gtype == 0xe || gtype == 0xf);
    if (!valid)
        FAULT_ERR(cpu, EXC_GP, idt_err);
    if ((type == EV_SW_INT || type == EV_SW_EXC) && gdpl < cpu->cpl)
        FAULT_ERR(cpu, EXC_GP, idt_err);
    if (!(lo & (1ull << 47)))
        FAULT_ERR(cpu, EXC_NP, idt_err);
    int gate32 = (gtype & 8) != 0;
    int trap = gtype & 1;
    uint16_t sel = (uint16_t)(lo >> 16);
    uint64_t target = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ull) | (long_mode ? (hi << 32) : 0);
    int ist = long_mode ? (int)((lo >> 32) & 7) : 0;

    uint64_t clo, chi, caddr;
    if ((sel & ~3u) == 0)
        FAULT_ERR(cpu, EXC_GP, (uint32_t)ext);
    if (read_descriptor(cpu, sel, &clo, &chi, &caddr) < 0)
        FAULT_ERR(cpu, EXC_GP, (sel & ~3u) + (uint32_t)ext);
    uint32_t cacc = (uint32_t)((clo >> 40) & 0xff);
    int cdpl = (cacc >> 5) & 3;
    if (!(cacc & AR_S) || !(cacc & 8) || cdpl > cpu->cpl)
        FAULT_ERR(cpu, EXC_GP, (sel & ~3u) + (uint32_t)ext);
    if (!(cacc & AR_P))
        FAULT_ERR(cpu, EXC_NP, (sel & ~3u) + (uint32_t)ext);
    int conforming = (cacc & 4) != 0;
    int new_cpl = conforming ? cpu->cpl : cdpl;
    mark_accessed(cpu, caddr, &clo);

    uint64_t old_flags = cpu_get_rflags(cpu);
    seg_t old_ss = cpu->seg[S_SS];
    uint64_t old_sp = cpu->gpr[R_SP];
    seg_t old_cs = cpu->seg[S_CS];
    int old_cpl = cpu->cpl;

    if (long_mode) {
        uint64_t sp;
        if (ist) {
            sp = sys_read(cpu, cpu->seg[S_TR].base + 0x24 + (uint64_t)(ist - 1) * 8, 8);
        } else if (new_cpl < old_cpl) {
            sp = sys_read(cpu, cpu->seg[S_TR].base + 4 + (uint64_t)new_cpl * 8, 8);
        } else {
            sp = old_sp;
        }
        if (new_cpl < old_cpl) {
            cpu->seg[S_SS].sel = (uint16_t)new_cpl;
            cpu->seg[S_SS].base = 0;
            cpu->seg[S_SS].limit = 0;
            cpu->seg[S_SS].ar = AR_UNUSABLE | ((uint32_t)new_cpl << 5);
        }
        sp &= ~0xfull;
        desc_to_seg(&cpu->seg[S_CS], (uint16_t)((sel & ~3u) | (uint32_t)new_cpl), clo, 0);
        cpu->cpl = new_cpl;
        cpu_update_mode(cpu);
        cpu->gpr[R_SP] = sp;
        push(cpu, 8, old_ss.sel);
        push(cpu, 8, old_sp);
        push(cpu, 8, old_flags);
        push(cpu, 8, old_cs.sel);
        push(cpu, 8, return_rip);
        if (has_error)
            push(cpu, 8, error);
    } else {
        int sz = gate32 ? 4 : 2;
        if (new_cpl < old_cpl) {
            uint64_t nsp = tss_stack(cpu, new_cpl, (uint32_t)ext, &cpu->seg[S_SS]);
            desc_to_seg(&cpu->seg[S_CS], (uint16_t)((sel & ~3u) | (uint32_t)new_cpl), clo, 0);
            cpu->cpl = new_cpl;
            cpu_update_mode(cpu);
            cpu->gpr[R_SP] = nsp;
            push(cpu, sz, old_ss.sel);
            push(cpu, sz, old_sp);
        } else {
            desc_to_seg(&cpu->seg[S_CS], (uint16_t)((sel & ~3u) | (uint32_t)new_cpl), clo, 0);
            cpu_update_mode(cpu);
        }
        push(cpu, sz, old_flags);
        push(cpu, sz, old_cs.sel);
        push(cpu, sz, return_rip);
        if (has_error)
            push(cpu, sz, error);
        if (!gate32)
            target &= 0xffff;
    }
    cpu->rflags &= ~(uint64_t)(F_TF | F_NT | F_RF | F_VM);
    if (!trap)
        cpu->rflags &= ~(uint64_t)F_IF;
    cpu->rip = target;
    cpu_update_mode(cpu);
}

void deliver_event(cpu_t *cpu, int type, int vector, int has_error, uint32_t error, uint64_t return_rip)
{
    if (type == EV_HW_EXC && !pushes_error_code(vector))
        has_error = 0;
    int saved = cpu->delivering;
    uint32_t saved_info = cpu->delivering_info, saved_err = cpu->delivering_error;
    cpu->delivering = 1;
    cpu->before_delivery.cs = cpu->seg[S_CS];
    cpu->before_delivery.ss = cpu->seg[S_SS];
    cpu->before_delivery.rsp = cpu->gpr[R_SP];
    cpu->before_delivery.rip = cpu->rip;
    cpu->before_delivery.rflags = cpu_get_rflags(cpu);
    cpu->delivering_info = INTR_INFO_VALID | ((uint32_t)type << 8) | (uint32_t)vector |
                           (has_error ? INTR_INFO_DELIVER_CODE : 0);
    cpu->delivering_error = error;
    if (cpu->mode == MODE_REAL16)
        deliver_real(cpu, vector, return_rip);
    else
        deliver_protected(cpu, type, vector, has_error, error, return_rip);
    cpu->delivering = saved;
    cpu->delivering_info = saved_info;
    cpu->delivering_error = saved_err;
    cpu->interruptibility &= ~3u;
}

void abort_delivery(cpu_t *cpu)
{
    cpu->seg[S_CS] = cpu->before_delivery.cs;
    cpu->seg[S_SS] = cpu->before_delivery.ss;
    cpu->gpr[R_SP] = cpu->before_delivery.rsp;
    cpu->rip = cpu->before_delivery.rip;
    cpu_set_rflags(cpu, cpu->before_delivery.rflags);
    cpu_update_mode(cpu);
}

__attribute__((noreturn)) void deliver_event_and_unwind(cpu_t *cpu, int type, int vector,
        int has_error, uint32_t error, uint64_t return_rip)
{
    deliver_event(cpu, type, vector, has_error, error, return_rip);
    longjmp(cpu->fault_jmp, 1);
}
