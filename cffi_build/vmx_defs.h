/* VMX architectural constants: VMCS field encodings (SDM Vol. 3 Appendix B), exit reasons
 * (Appendix C), control bits and VM-instruction error numbers (Section 31.4). */
#ifndef PYHV_VMX_DEFS_H
#define PYHV_VMX_DEFS_H

#include <stdint.h>

enum {
    VMX_SUCCEED = 0, VMX_FAIL_INVALID = 1, VMX_FAIL_VALID = 2, VMX_EXITED = 3,
};

/* VM-instruction error numbers */
enum {
    VMXERR_VMCLEAR_INVALID_ADDR = 2, VMXERR_VMCLEAR_VMXON_PTR = 3,
    VMXERR_VMLAUNCH_NONCLEAR = 4, VMXERR_VMRESUME_NONLAUNCHED = 5,
    VMXERR_ENTRY_INVALID_CONTROL = 7, VMXERR_ENTRY_INVALID_HOST = 8,
    VMXERR_VMPTRLD_INVALID_ADDR = 9, VMXERR_VMPTRLD_VMXON_PTR = 10,
    VMXERR_VMPTRLD_BAD_REVISION = 11, VMXERR_UNSUPPORTED_FIELD = 12,
    VMXERR_VMWRITE_READONLY = 13, VMXERR_VMXON_IN_ROOT = 15,
    VMXERR_ENTRY_MOV_SS_BLOCKING = 26, VMXERR_INVALID_INVEPT_OPERAND = 28,
};

/* VMCS field encodings */
enum {
#define VMCS_FIELD(name, encoding) name = encoding,
#include "vmcs_field_list.h"
#undef VMCS_FIELD
};

/* Basic exit reasons */
enum {
    EXIT_REASON_EXCEPTION_NMI = 0, EXIT_REASON_EXTERNAL_INTERRUPT = 1,
    EXIT_REASON_TRIPLE_FAULT = 2, EXIT_REASON_INIT_SIGNAL = 3, EXIT_REASON_SIPI = 4,
    EXIT_REASON_INTERRUPT_WINDOW = 7, EXIT_REASON_NMI_WINDOW = 8,
    EXIT_REASON_TASK_SWITCH = 9, EXIT_REASON_CPUID = 10, EXIT_REASON_GETSEC = 11,
    EXIT_REASON_HLT = 12, EXIT_REASON_INVD = 13, EXIT_REASON_INVLPG = 14,
    EXIT_REASON_RDPMC = 15, EXIT_REASON_RDTSC = 16, EXIT_REASON_RSM = 17,
    EXIT_REASON_VMCALL = 18, EXIT_REASON_VMCLEAR = 19, EXIT_REASON_VMLAUNCH = 20,
    EXIT_REASON_VMPTRLD = 21, EXIT_REASON_VMPTRST = 22, EXIT_REASON_VMREAD = 23,
    EXIT_REASON_VMRESUME = 24, EXIT_REASON_VMWRITE = 25, EXIT_REASON_VMOFF = 26,
    EXIT_REASON_VMON = 27, EXIT_REASON_CR_ACCESS = 28, EXIT_REASON_DR_ACCESS = 29,
    EXIT_REASON_IO_INSTRUCTION = 30, EXIT_REASON_MSR_READ = 31, EXIT_REASON_MSR_WRITE = 32,
    EXIT_REASON_INVALID_STATE = 33, EXIT_REASON_MSR_LOAD_FAIL = 34,
    EXIT_REASON_MWAIT_INSTRUCTION = 36, EXIT_REASON_MONITOR_TRAP_FLAG = 37,
    EXIT_REASON_MONITOR_INSTRUCTION = 39, EXIT_REASON_PAUSE_INSTRUCTION = 40,
    EXIT_REASON_MCE_DURING_VMENTRY = 41, EXIT_REASON_TPR_BELOW_THRESHOLD = 43,
    EXIT_REASON_APIC_ACCESS = 44, EXIT_REASON_EOI_INDUCED = 45,
    EXIT_REASON_GDTR_IDTR = 46, EXIT_REASON_LDTR_TR = 47,
    EXIT_REASON_EPT_VIOLATION = 48, EXIT_REASON_EPT_MISCONFIG = 49,
    EXIT_REASON_INVEPT = 50, EXIT_REASON_RDTSCP = 51, EXIT_REASON_PREEMPTION_TIMER = 52,
    EXIT_REASON_INVVPID = 53, EXIT_REASON_WBINVD = 54, EXIT_REASON_XSETBV = 55,
    EXIT_REASON_APIC_WRITE = 56, EXIT_REASON_RDRAND = 57, EXIT_REASON_INVPCID = 58,
    EXIT_REASON_RDSEED = 61, EXIT_REASON_XSAVES = 63, EXIT_REASON_XRSTORS = 64,
};
#define EXIT_REASON_FAILED_VMENTRY 0x80000000u

/* Pin-based controls */
#define PIN_EXT_INTR_EXITING (1u << 0)
#define PIN_NMI_EXITING (1u << 3)
#define PIN_VIRTUAL_NMIS (1u << 5)
#define PIN_PREEMPTION_TIMER (1u << 6)
#define PIN_POSTED_INTERRUPTS (1u << 7)

/* Primary processor-based controls */
#define CPU_INTR_WINDOW_EXITING (1u << 2)
#define CPU_USE_TSC_OFFSETTING (1u << 3)
#define CPU_HLT_EXITING (1u << 7)
#define CPU_INVLPG_EXITING (1u << 9)
#define CPU_MWAIT_EXITING (1u << 10)
#define CPU_RDPMC_EXITING (1u << 11)
#define CPU_RDTSC_EXITING (1u << 12)
#define CPU_CR3_LOAD_EXITING (1u << 15)
#define CPU_CR3_STORE_EXITING (1u << 16)
#define CPU_CR8_LOAD_EXITING (1u << 19)
#define CPU_CR8_STORE_EXITING (1u << 20)
#define CPU_TPR_SHADOW (1u << 21)
#define CPU_NMI_WINDOW_EXITING (1u << 22)
#define CPU_MOV_DR_EXITING (1u << 23)
#define CPU_UNCOND_IO_EXITING (1u << 24)
#define CPU_USE_IO_BITMAPS (1u << 25)
#define CPU_MONITOR_TRAP_FLAG (1u << 27)
#define CPU_USE_MSR_BITMAPS (1u << 28)
#define CPU_MONITOR_EXITING (1u << 29)
#define CPU_PAUSE_EXITING (1u << 30)
#define CPU_ACTIVATE_SECONDARY (1u << 31)

/* Secondary processor-based controls */
#define SEC_VIRTUALIZE_APIC_ACCESSES (1u << 0)
#define SEC_ENABLE_EPT (1u << 1)
#define SEC_DESC_TABLE_EXITING (1u << 2)
#define SEC_ENABLE_RDTSCP (1u << 3)
#define SEC_VIRTUALIZE_X2APIC (1u << 4)
#define SEC_ENABLE_VPID (1u << 5)
#define SEC_WBINVD_EXITING (1u << 6)
#define SEC_UNRESTRICTED_GUEST (1u << 7)
#define SEC_APIC_REGISTER_VIRT (1u << 8)
#define SEC_VIRTUAL_INTR_DELIVERY (1u << 9)
#define SEC_PAUSE_LOOP_EXITING (1u << 10)
#define SEC_RDRAND_EXITING (1u << 11)
#define SEC_ENABLE_INVPCID (1u << 12)
#define SEC_RDSEED_EXITING (1u << 16)
#define SEC_ENABLE_XSAVES (1u << 20)
#define SEC_TSC_SCALING (1u << 25)

/* VM-exit controls */
#define EXIT_SAVE_DEBUG_CONTROLS (1u << 2)
#define EXIT_HOST_ADDR_SPACE_SIZE (1u << 9)
#define EXIT_LOAD_PERF_GLOBAL_CTRL (1u << 12)
#define EXIT_ACK_INTR_ON_EXIT (1u << 15)
#define EXIT_SAVE_IA32_PAT (1u << 18)
#define EXIT_LOAD_IA32_PAT (1u << 19)
#define EXIT_SAVE_IA32_EFER (1u << 20)
#define EXIT_LOAD_IA32_EFER (1u << 21)
#define EXIT_SAVE_PREEMPTION_TIMER (1u << 22)

/* VM-entry controls */
#define ENTRY_LOAD_DEBUG_CONTROLS (1u << 2)
#define ENTRY_IA32E_MODE (1u << 9)
#define ENTRY_SMM (1u << 10)
#define ENTRY_DEACT_DUAL_MONITOR (1u << 11)
#define ENTRY_LOAD_PERF_GLOBAL_CTRL (1u << 13)
#define ENTRY_LOAD_IA32_PAT (1u << 14)
#define ENTRY_LOAD_IA32_EFER (1u << 15)

/* Interruption-information fields */
#define INTR_INFO_VALID (1u << 31)
#define INTR_INFO_DELIVER_CODE (1u << 11)
#define INTR_INFO_NMI_UNBLOCK_IRET (1u << 12)

/* EPT */
#define EPT_READ 1ull
#define EPT_WRITE 2ull
#define EPT_EXEC 4ull
#define EPT_LARGE (1ull << 7)
#define EPT_ACCESSED (1ull << 8)
#define EPT_DIRTY (1ull << 9)
#define EPTP_AD_ENABLE (1ull << 6)

/* Controls and VMCS-derived values the processor keeps while the guest runs. */
typedef struct vmcs_cache {
    uint32_t pin, proc, proc2, exit_ctl, entry_ctl;
    uint32_t exception_bitmap, pf_mask, pf_match;
    uint64_t io_bitmap_a, io_bitmap_b, msr_bitmap;
    uint64_t eptp;
    uint16_t vpid;
    uint64_t cr0_mask, cr4_mask, cr0_shadow, cr4_shadow;
    uint64_t cr3_target[4];
    uint32_t cr3_target_count;
    uint64_t tsc_offset;
    uint32_t preemption_timer;
    uint64_t preemption_deadline;  /* host TSC at which the timer fires */
    uint64_t virtual_apic_addr, apic_access_addr;
    uint8_t *virtual_apic;         /* host pointer to the virtual-APIC page */
    uint32_t tpr_threshold;
    uint64_t eoi_exit_bitmap[4];
    uint16_t posted_intr_nv;
    uint64_t posted_intr_desc;
} vmcs_cache_t;

#endif
