/* VMCS field storage and VMREAD/VMWRITE access rules (SDM Vol. 3 Section 25.11.2 and
 * Appendix B); the layout and the processor's raw accessors are in core.h. */
#include "core.h"

static const uint32_t field_encodings[] = {
#define VMCS_FIELD(name, encoding) encoding,
#include "vmcs_field_list.h"
#undef VMCS_FIELD
};
static const char *const field_names[] = {
#define VMCS_FIELD(name, encoding) #name,
#include "vmcs_field_list.h"
#undef VMCS_FIELD
};
#define NFIELDS ((int)(sizeof(field_encodings) / sizeof(field_encodings[0])))

_Static_assert(VMCS_DATA_OFFSET + NFIELDS * 8 <= 4096, "VMCS layout must fit a page");

/* slot + 1 by encoding (0: not implemented), built by the compiler */
enum {
#define VMCS_FIELD(name, encoding) SLOT_##name,
#include "vmcs_field_list.h"
#undef VMCS_FIELD
};
const int16_t vmcs_slot_plus1[0x8000] = {
#define VMCS_FIELD(name, encoding) [encoding] = SLOT_##name + 1,
#include "vmcs_field_list.h"
#undef VMCS_FIELD
};

int vmcs_field_count(void) { return NFIELDS; }
uint32_t vmcs_field_encoding(int i) { return (i >= 0 && i < NFIELDS) ? field_encodings[i] : 0; }
const char *vmcs_field_name(int i) { return (i >= 0 && i < NFIELDS) ? field_names[i] : ""; }

static int field_width(uint32_t field) { return (field >> 13) & 3; } /* 0:16 1:64 2:32 3:nat */
static int field_type(uint32_t field) { return (field >> 10) & 3; }  /* 1: read-only data */

static int fail_valid(cpu_t *cpu, int err)
{
    vmcs_set(cpu, VM_INSTRUCTION_ERROR, (uint64_t)err);
    return VMX_FAIL_VALID;
}

/* Resolve an encoding operand to (full field, high-half access); -1 if unsupported. */
static int resolve(uint64_t operand, uint32_t *field, int *high)
{
    if (operand >> 32)
        return -1;
    uint32_t f = (uint32_t)operand;
    *high = 0;
    if ((f & 1) && field_width(f) == 1) {
        f &= ~1u;
        *high = 1;
    }
    if (vmcs_field_slot(f) < 0)
        return -1;
    *field = f;
    return 0;
}

int vmx_vmread(cpu_t *cpu, uint64_t operand, uint64_t *value)
{
    uint32_t field;
    int high;
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    if (cpu->current_vmcs == NO_VMCS)
        return VMX_FAIL_INVALID;
    if (resolve(operand, &field, &high) < 0)
        return fail_valid(cpu, VMXERR_UNSUPPORTED_FIELD);
    uint64_t v = vmcs_get(cpu, field);
    *value = high ? (v >> 32) : v;
    return VMX_SUCCEED;
}

int vmx_vmwrite(cpu_t *cpu, uint64_t operand, uint64_t value)
{
    uint32_t field;
    int high;
    if (!cpu->vmx_on)
        return VMX_FAIL_INVALID;
    if (cpu->current_vmcs == NO_VMCS)
        return VMX_FAIL_INVALID;
    if (resolve(operand, &field, &high) < 0)
        return fail_valid(cpu, VMXERR_UNSUPPORTED_FIELD);
    if (field_type(field) == 1)
        return fail_valid(cpu, VMXERR_VMWRITE_READONLY);
    if (high) {
        uint64_t v = vmcs_get(cpu, field);
        value = (v & 0xffffffffull) | (value << 32);
    }
    vmcs_set(cpu, field, value);
    return VMX_SUCCEED;
}
