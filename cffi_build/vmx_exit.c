/* VM exits (SDM Vol. 3 Chapter 28): record the exit information, save guest state,
 * load host state, and return from the VMLAUNCH/VMRESUME that entered the guest. */
#include "apicv.h"
#include "vmx_caps.h"
#include "vmx_state.h"

/* RF and the pending debug exceptions as a VM exit saves them (SDM Vol. 3 28.3.3,
 * 28.3.4).  RF: as an exception's delivery would push it (1 for faults other than #DB),
 * 1 after EPT violations and misconfigurations outside event delivery, else as it is
 * (instructions that exit clear it when they start).  Pending debug exceptions survive
 * MTF VM exits and exits in MOV-SS blocking; the traps of an instruction that did not
 * complete are dropped. */
static void saved_debug_state(cpu_t *cpu, const exit_info_t *ei, int during_delivery)
{
    int vector = (int)(ei->intr_info & 0xff), type = (int)((ei->intr_info >> 8) & 7);
    if (ei->reason == EXIT_REASON_EXCEPTION_NMI && type == EV_HW_EXC && vector != EXC_DB &&
        vector != EXC_MC && vector != EXC_DF)
        cpu->rflags |= F_RF;
    if ((ei->reason == EXIT_REASON_EPT_VIOLATION || ei->reason == EXIT_REASON_EPT_MISCONFIG) &&
        !during_delivery)
        cpu->rflags |= F_RF;
    if (ei->reason != EXIT_REASON_MONITOR_TRAP_FLAG && !(cpu->interruptibility & 2))
        cpu->pending_dbg = 0;
}

__attribute__((noreturn)) void vm_exit(cpu_t *cpu, exit_info_t *ei)
{
    if (cpu->emul) {
        /* the root-mode emulator reached memory that EPT does not map yet (or an
         * instruction it cannot complete outside the guest) */
        int ept = ei->reason == EXIT_REASON_EPT_VIOLATION || ei->reason == EXIT_REASON_EPT_MISCONFIG;
        cpu->emul->result = ept ? 4 : 5; /* EMUL_EPT_FAULT or EMUL_UNHANDLEABLE */
        cpu->emul->access_gpa = ei->gpa;
        longjmp(cpu->exit_jmp, 1);
    }
    int during_delivery = cpu->delivering;
    cpu->exit_reason = ei->reason;
    vmcs_set(cpu, VM_EXIT_REASON, ei->reason);
    vmcs_set(cpu, EXIT_QUALIFICATION, ei->qual);
    vmcs_set(cpu, GUEST_LINEAR_ADDRESS, ei->gla);
    vmcs_set(cpu, GUEST_PHYSICAL_ADDRESS, ei->gpa);
    vmcs_set(cpu, VM_EXIT_INTR_INFO, ei->intr_info);
    vmcs_set(cpu, VM_EXIT_INTR_ERROR_CODE, ei->intr_error);
    vmcs_set(cpu, VMX_INSTRUCTION_INFO, ei->insn_info);
    /* an instruction's length is next_rip - rip; a software event injected at VM entry
     * sets next_rip from the VM-entry instruction length (SDM 28.2.4) */
    uint64_t insn_len = ei->has_insn_len ? cpu->next_rip - cpu->rip : 0;
    if (cpu->delivering) {
        /* the exit interrupted the delivery of an event: report it for re-injection,
         * with the guest state from before the delivery */
        abort_delivery(cpu);
        int type = (int)((cpu->delivering_info >> 8) & 7);
        if (type == EV_SW_INT || type == EV_PRIV_SW_EXC || type == EV_SW_EXC)
            insn_len = cpu->next_rip - cpu->rip;
        vmcs_set(cpu, IDT_VECTORING_INFO_FIELD, cpu->delivering_info);
        vmcs_set(cpu, IDT_VECTORING_ERROR_CODE, cpu->delivering_error);
        cpu->delivering = 0;
    } else {
        vmcs_set(cpu, IDT_VECTORING_INFO_FIELD, 0);
    }
    vmcs_set(cpu, VM_EXIT_INSTRUCTION_LEN, insn_len);
    saved_debug_state(cpu, ei, during_delivery);
    if ((cpu->vc.pin & PIN_PREEMPTION_TIMER) && (cpu->vc.exit_ctl & EXIT_SAVE_PREEMPTION_TIMER)) {
        uint64_t now = host_tsc();
        uint64_t left = now >= cpu->vc.preemption_deadline ? 0 :
                        (cpu->vc.preemption_deadline - now) >> PREEMPTION_TIMER_RATE;
        vmcs_set(cpu, VMX_PREEMPTION_TIMER_VALUE, left > 0xffffffffull ? 0xffffffffull : left);
    }
    /* the VM-entry interruption-information valid bit is cleared on every exit */
    vmcs_set(cpu, VM_ENTRY_INTR_INFO_FIELD,
             vmcs_get(cpu, VM_ENTRY_INTR_INFO_FIELD) & ~(uint64_t)INTR_INFO_VALID);
    save_guest_state(cpu);
    apicv_vm_exit(cpu);
    load_host_state(cpu);
    cpu->in_guest = 0;
    longjmp(cpu->exit_jmp, 1);
}

__attribute__((noreturn)) void vm_exit_simple(cpu_t *cpu, uint32_t reason, uint64_t qual)
{
    exit_info_t ei = {0};
    ei.reason = reason;
    ei.qual = qual;
    vm_exit(cpu, &ei);
}

/* Exits caused by executing an instruction report its length. */
__attribute__((noreturn)) void vm_exit_insn(cpu_t *cpu, uint32_t reason, uint64_t qual)
{
    exit_info_t ei = {0};
    ei.reason = reason;
    ei.qual = qual;
    ei.has_insn_len = 1;
    vm_exit(cpu, &ei);
}

/* The basic exit reasons this processor produces with the controls it implements
 * (the list tools/vmx_capabilities.py documents). */
static const uint8_t produced_exit_reasons[] = {
    EXIT_REASON_EXCEPTION_NMI, EXIT_REASON_EXTERNAL_INTERRUPT, EXIT_REASON_TRIPLE_FAULT,
    EXIT_REASON_INTERRUPT_WINDOW, EXIT_REASON_NMI_WINDOW, EXIT_REASON_CPUID, EXIT_REASON_HLT,
    EXIT_REASON_INVD, EXIT_REASON_INVLPG, EXIT_REASON_RDPMC, EXIT_REASON_RDTSC,
    EXIT_REASON_VMCALL, EXIT_REASON_VMCLEAR, EXIT_REASON_VMLAUNCH, EXIT_REASON_VMPTRLD,
    EXIT_REASON_VMPTRST, EXIT_REASON_VMREAD, EXIT_REASON_VMRESUME, EXIT_REASON_VMWRITE,
    EXIT_REASON_VMOFF, EXIT_REASON_VMON, EXIT_REASON_CR_ACCESS, EXIT_REASON_DR_ACCESS,
    EXIT_REASON_IO_INSTRUCTION, EXIT_REASON_MSR_READ, EXIT_REASON_MSR_WRITE,
    EXIT_REASON_INVALID_STATE, EXIT_REASON_MSR_LOAD_FAIL, EXIT_REASON_MWAIT_INSTRUCTION,
    EXIT_REASON_MONITOR_TRAP_FLAG, EXIT_REASON_MONITOR_INSTRUCTION,
    EXIT_REASON_PAUSE_INSTRUCTION, EXIT_REASON_TPR_BELOW_THRESHOLD, EXIT_REASON_APIC_ACCESS,
    EXIT_REASON_EOI_INDUCED, EXIT_REASON_GDTR_IDTR, EXIT_REASON_LDTR_TR,
    EXIT_REASON_EPT_VIOLATION, EXIT_REASON_EPT_MISCONFIG, EXIT_REASON_INVEPT,
    EXIT_REASON_RDTSCP, EXIT_REASON_PREEMPTION_TIMER, EXIT_REASON_INVVPID, EXIT_REASON_WBINVD,
    EXIT_REASON_XSETBV, EXIT_REASON_APIC_WRITE,
};

int vmx_exit_reason_produced(uint32_t reason)
{
    for (size_t k = 0; k < sizeof(produced_exit_reasons); k++)
        if (produced_exit_reasons[k] == reason)
            return 1;
    return 0;
}
