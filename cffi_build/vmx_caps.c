/* Values of the VMX capability MSRs, derived from the controls the silicon implements. */
#include "core.h"
#include "vmx_caps.h"

static uint64_t ctl(uint32_t must_be_one, uint32_t may_be_one)
{
    return (uint64_t)must_be_one | ((uint64_t)may_be_one << 32);
}

static uint64_t vmcs_enum(void)
{
    uint64_t highest = 0;
    for (int k = 0; k < vmcs_field_count(); k++) {
        uint64_t index = (vmcs_field_encoding(k) >> 1) & 0x1ff;
        if (index > highest)
            highest = index;
    }
    return highest << 1;
}

int vmx_capability_msr(uint32_t idx, uint64_t *v)
{
    switch (idx) {
    case MSR_IA32_VMX_BASIC:
        /* revision, 4 KiB region, write-back VMCS, INS/OUTS info, TRUE controls */
        *v = VMCS_REVISION_ID | (4096ull << 32) | (6ull << 50) | (1ull << 54) | (1ull << 55);
        return 0;
    case 0x481: *v = ctl(PIN_DEFAULT1, PIN_ALLOWED1); return 0;
    case 0x482: *v = ctl(PROC_DEFAULT1, PROC_ALLOWED1); return 0;
    case 0x483: *v = ctl(EXIT_DEFAULT1, EXIT_ALLOWED1); return 0;
    case 0x484: *v = ctl(ENTRY_DEFAULT1, ENTRY_ALLOWED1); return 0;
    case 0x485:
        /* timer rate, LMA saved to the IA-32e control, HLT/shutdown/wait-for-SIPI, 4 CR3 targets */
        *v = PREEMPTION_TIMER_RATE | (1ull << 5) | (7ull << 6) | (4ull << 16);
        return 0;
    case 0x486: *v = CR0_FIXED0; return 0;
    case 0x487: *v = CR0_FIXED1; return 0;
    case 0x488: *v = CR4_FIXED0; return 0;
    case 0x489: *v = CR4_FIXED1; return 0;
    case 0x48a: *v = vmcs_enum(); return 0;
    case 0x48b: *v = ctl(0, PROC2_ALLOWED1); return 0;
    case 0x48c:
        /* execute-only, 4-level walk, UC and WB, 2 MiB and 1 GiB pages, INVEPT (single and
         * all contexts), A/D flags, INVVPID (address, single, all, single keeping globals) */
        *v = 1ull | (1ull << 6) | (1ull << 8) | (1ull << 14) | (1ull << 16) | (1ull << 17) |
             (1ull << 20) | (1ull << 21) | (1ull << 25) | (1ull << 26) |
             (1ull << 32) | (1ull << 40) | (1ull << 41) | (1ull << 42) | (1ull << 43);
        return 0;
    case 0x48d: *v = ctl(PIN_DEFAULT1, PIN_ALLOWED1); return 0;
    case 0x48e: *v = ctl(PROC_TRUE_DEFAULT1, PROC_ALLOWED1); return 0;
    case 0x48f: *v = ctl(EXIT_TRUE_DEFAULT1, EXIT_ALLOWED1); return 0;
    case 0x490: *v = ctl(ENTRY_TRUE_DEFAULT1, ENTRY_ALLOWED1); return 0;
    }
    return -1;
}
