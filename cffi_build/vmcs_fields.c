/* VMCS field storage and VMREAD/VMWRITE access rules (SDM Vol. 3 Section 25.11.2 and
 * Appendix B).  The region holds the revision identifier, the abort indicator and the
 * launch state, then one 8-byte slot per implemented field in list order. */
#include "core.h"

#define VMCS_DATA_OFFSET 16

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

static int16_t slot_of[0x8000];
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;

static void build_slots(void)
{
    for (int e = 0; e < 0x8000; e++)
        slot_of[e] = -1;
    for (int i = 0; i < NFIELDS; i++)
        slot_of[field_encodings[i]] = (int16_t)i;
}

int vmcs_field_slot(uint32_t field)
{
    pthread_once(&slots_once, build_slots);
    if (field >= 0x8000)
        return -1;
    return slot_of[field];
}

int vmcs_field_count(void) { return NFIELDS; }
uint32_t vmcs_field_encoding(int i) { return (i >= 0 && i < NFIELDS) ? field_encodings[i] : 0; }
const char *vmcs_field_name(int i) { return (i >= 0 && i < NFIELDS) ? field_names[i] : ""; }

static int field_width(uint32_t field) { return (field >> 13) & 3; } /* 0:16 1:64 2:32 3:nat */
static int field_type(uint32_t field) { return (field >> 10) & 3; }  /* 1: read-only data */

static uint64_t width_mask(uint32_t field)
{
    switch (field_width(field)) {
    case 0: return 0xffffull;
    case 2: return 0xffffffffull;
    default: return ~0ull;
    }
}

/* Raw access to the current VMCS, for the processor itself (no access-rule checks). */
uint64_t vmcs_get(cpu_t *cpu, uint32_t field)
{
    int slot = vmcs_field_slot(field);
    uint64_t v;
    if (slot < 0 || !cpu->vmcs)
        return 0;
    memcpy(&v, cpu->vmcs + VMCS_DATA_OFFSET + slot * 8, 8);
    return v;
}

void vmcs_set(cpu_t *cpu, uint32_t field, uint64_t value)
{
    int slot = vmcs_field_slot(field);
    if (slot < 0 || !cpu->vmcs)
        return;
    value &= width_mask(field);
    memcpy(cpu->vmcs + VMCS_DATA_OFFSET + slot * 8, &value, 8);
}

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
