/* VMXON, VMXOFF, VMCLEAR, VMPTRLD, VMPTRST, INVEPT, INVVPID for root-mode software,
 * with the SDM's VMsucceed / VMfailInvalid / VMfailValid outcomes (Chapter 31). */
#include "core.h"
#include "vmx_caps.h"

#define LAUNCH_STATE_OFFSET 8
#define PHYS_LIMIT (1ull << 40)

static int vmfail(cpu_t *cpu, int err)
{
    if (cpu->current_vmcs == NO_VMCS)
        return VMX_FAIL_INVALID;
    vmcs_set(cpu, VM_INSTRUCTION_ERROR, (uint64_t)err);
    return VMX_FAIL_VALID;
}

static int bad_region_address(uint64_t hpa)
{
    return (hpa & (PAGE_SIZE - 1)) || hpa >= PHYS_LIMIT;
}

static uint32_t region_revision(cpu_t *cpu, uint64_t hpa)
{
    uint8_t *p = hostmem_ptr(cpu->sil, hpa);
    uint32_t rev = 0xffffffffu;
    if (p)
        memcpy(&rev, p, 4);
    return rev;
}

uint32_t *vmcs_launch_state(cpu_t *cpu)
{
    return (uint32_t *)(cpu->vmcs + LAUNCH_STATE_OFFSET);
}

int vmx_vmxon(cpu_t *cpu, uint64_t hpa)
{
    if (cpu->vmx_on)
        return vmfail(cpu, VMXERR_VMXON_IN_ROOT);
    if (bad_region_address(hpa) || !hostmem_ptr(cpu->sil, hpa) ||
        (region_revision(cpu, hpa) & 0x7fffffffu) != VMCS_REVISION_ID)
        return VMX_FAIL_INVALID;
    cpu->vmx_on = 1;
    cpu->vmxon_ptr = hpa;
    cpu->current_vmcs = NO_VMCS;
    cpu->vmcs = NULL;
    return VMX_SUCCEED;
}

int vmx_vmxoff(cpu_t *cpu)
{
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    cpu->vmx_on = 0;
    cpu->current_vmcs = NO_VMCS;
    cpu->vmcs = NULL;
    return VMX_SUCCEED;
}

int vmx_vmclear(cpu_t *cpu, uint64_t hpa)
{
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    if (bad_region_address(hpa))
        return vmfail(cpu, VMXERR_VMCLEAR_INVALID_ADDR);
    if (hpa == cpu->vmxon_ptr)
        return vmfail(cpu, VMXERR_VMCLEAR_VMXON_PTR);
    uint8_t *p = hostmem_ptr(cpu->sil, hpa);
    if (p) {
        uint32_t clear = 0;
        memcpy(p + LAUNCH_STATE_OFFSET, &clear, 4);
    }
    if (hpa == cpu->current_vmcs) {
        cpu->current_vmcs = NO_VMCS;
        cpu->vmcs = NULL;
    }
    return VMX_SUCCEED;
}

int vmx_vmptrld(cpu_t *cpu, uint64_t hpa)
{
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    if (bad_region_address(hpa) || !hostmem_ptr(cpu->sil, hpa))
        return vmfail(cpu, VMXERR_VMPTRLD_INVALID_ADDR);
    if (hpa == cpu->vmxon_ptr)
        return vmfail(cpu, VMXERR_VMPTRLD_VMXON_PTR);
    if ((region_revision(cpu, hpa) & 0x7fffffffu) != VMCS_REVISION_ID)
        return vmfail(cpu, VMXERR_VMPTRLD_BAD_REVISION);
    cpu->current_vmcs = hpa;
    cpu->vmcs = hostmem_ptr(cpu->sil, hpa);
    return VMX_SUCCEED;
}

int vmx_vmptrst(cpu_t *cpu, uint64_t *hpa)
{
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    *hpa = cpu->current_vmcs;
    return VMX_SUCCEED;
}

/* The TLB holds translations of one (VPID, EPTP) context at a time. */
int vmx_invept(cpu_t *cpu, uint64_t type, uint64_t eptp)
{
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    if (type != 1 && type != 2)
        return vmfail(cpu, VMXERR_INVALID_INVEPT_OPERAND);
    if (type == 2 || (eptp & PAGE_MASK) == (cpu->tlb_eptp & PAGE_MASK))
        tlb_flush_all(cpu, 0);
    return VMX_SUCCEED;
}

int vmx_invvpid(cpu_t *cpu, uint64_t type, uint64_t vpid, uint64_t gla)
{
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    if (type > 3 || (type != 2 && (vpid & 0xffff) == 0) || (vpid >> 16))
        return vmfail(cpu, VMXERR_INVALID_INVEPT_OPERAND);
    if (type == 0 && (uint64_t)(((int64_t)(gla << 16)) >> 16) != gla)
        return vmfail(cpu, VMXERR_INVALID_INVEPT_OPERAND);
    if (type == 2 || vpid == cpu->tlb_vpid) {
        if (type == 0)
            tlb_flush_page(cpu, gla);
        else
            tlb_flush_all(cpu, type == 3);
    }
    return VMX_SUCCEED;
}
