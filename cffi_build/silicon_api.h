/* The silicon's interface to root-mode software (kvm/).  Plain declarations only:
 * cffi reads this file as its cdef, so no macros or inline code here. */

typedef struct silicon silicon_t;
typedef struct cpu cpu_t;

/* The machine: host-physical memory map and its logical processors. */
silicon_t *silicon_new(void);
void silicon_free(silicon_t *sil);
int silicon_map_ram(silicon_t *sil, uint64_t hpa, void *host, uint64_t size);
int silicon_unmap_ram(silicon_t *sil, uint64_t hpa);
/* Tell the processors that something other than a processor (a DMA engine, a loader)
 * wrote host-physical memory, so decoded instructions from it are discarded. */
void silicon_invalidate_code(silicon_t *sil, uint64_t hpa, uint64_t size);
/* A locked OR into an aligned 32-bit word of host-physical memory by an agent other than
 * the processors (root-mode software setting a bit that a running guest's processor also
 * updates, such as a virtual-APIC IRR bit). */
void silicon_atomic_or32(silicon_t *sil, uint64_t hpa, uint32_t bits);

cpu_t *cpu_new(silicon_t *sil, int apic_id);
void cpu_free(cpu_t *cpu);

/* VMX instructions.  Each returns VMX_SUCCEED, VMX_FAIL_INVALID or VMX_FAIL_VALID
 * (the error number is then in the VM-instruction error field).  vmlaunch/vmresume
 * return VMX_EXITED once the guest has VM-exited and host state is loaded. */
int vmx_vmxon(cpu_t *cpu, uint64_t hpa);
int vmx_vmxoff(cpu_t *cpu);
int vmx_vmclear(cpu_t *cpu, uint64_t hpa);
int vmx_vmptrld(cpu_t *cpu, uint64_t hpa);
int vmx_vmptrst(cpu_t *cpu, uint64_t *hpa);
int vmx_vmread(cpu_t *cpu, uint64_t field, uint64_t *value);
int vmx_vmwrite(cpu_t *cpu, uint64_t field, uint64_t value);
int vmx_vmlaunch(cpu_t *cpu);
int vmx_vmresume(cpu_t *cpu);
int vmx_invept(cpu_t *cpu, uint64_t type, uint64_t eptp);
int vmx_invvpid(cpu_t *cpu, uint64_t type, uint64_t vpid, uint64_t gla);

/* Root-mode RDMSR/WRMSR (the VMX capability MSRs live here).  Return 0, or -1 for #GP. */
int cpu_rdmsr(cpu_t *cpu, uint32_t index, uint64_t *value);
int cpu_wrmsr(cpu_t *cpu, uint32_t index, uint64_t value);

/* The general-purpose registers: what KVM's entry/exit code saves and restores around
 * VMLAUNCH/VMRESUME.  RSP and RIP of the guest live in the VMCS. */
void cpu_get_gprs(cpu_t *cpu, uint64_t *gprs16);
void cpu_set_gprs(cpu_t *cpu, const uint64_t *gprs16);
/* Blocks are compiled to host code at their `runs`-th run (1: at the first; 0: never,
 * blocks are interpreted); blocks compiled already stay so until their code is written
 * or the caches are dropped.  The default is 16, or 0 with PYHV_NO_JIT=1 in the
 * environment, or where the host gives no executable memory. */
void cpu_set_jit_threshold(cpu_t *cpu, uint32_t runs);
/* The decoded-block cache and the compiler, as QEMU's "info jit" shows its translation
 * buffer: what the caches hold since they were last dropped whole, and totals. */
typedef struct jit_stats {
    uint64_t code_size, code_capacity; /* host code in the arena, and the arena's size */
    uint64_t blocks;        /* decoded blocks */
    uint64_t compiled;      /* of them, compiled to host code */
    uint64_t guest_bytes;   /* guest code of the compiled blocks */
    uint64_t guest_max;     /* the largest compiled block's guest code */
    uint64_t linked;        /* exits patched to jump straight into the next block */
    uint64_t flushes;       /* total: times the caches were full and dropped whole */
    uint64_t invalidated;   /* total: blocks decoded again after their page was written */
    uint32_t threshold;     /* the run that compiles a block (0: none is) */
} jit_stats_t;
void cpu_jit_stats(cpu_t *cpu, jit_stats_t *out);

/* Registers that VMX transitions leave alone, which KVM switches itself. */
uint64_t cpu_get_cr2(cpu_t *cpu);
void cpu_set_cr2(cpu_t *cpu, uint64_t value);
uint64_t cpu_get_xcr0(cpu_t *cpu);
void cpu_set_xcr0(cpu_t *cpu, uint64_t value);
/* MOV from/to DRn in root mode: DR0-DR3 and DR6 keep their values across VM entries
 * and exits (DR7 is switched through the VMCS).  cpu_set_dr returns -1 for #GP/#UD. */
uint64_t cpu_get_dr(cpu_t *cpu, int n);
int cpu_set_dr(cpu_t *cpu, int n, uint64_t value);

/* The x87/MMX/SSE registers as a 512-byte FXSAVE image (64-bit layout): what
 * KVM_GET/SET_FPU carries. */
void cpu_get_fxsave(cpu_t *cpu, uint8_t *image);
void cpu_set_fxsave(cpu_t *cpu, const uint8_t *image);

/* An interrupt to the physical processor from another thread: a running guest
 * takes an external-interrupt VM exit at its next instruction boundary. */
void cpu_kick(cpu_t *cpu);
/* The same with a given vector (an IPI): the posted-interrupt notification vector is
 * consumed by posted-interrupt processing in a guest that has it enabled. */
void cpu_interrupt(cpu_t *cpu, uint8_t vector);

/* Executed-instruction counter (retired guest instructions, for benchmarks). */
uint64_t cpu_instructions_retired(cpu_t *cpu);

/* KVM's instruction emulator: execute the guest instruction at guest RIP once, in root
 * mode, with the guest state of the current VMCS, routing accesses to the
 * guest-physical page of `mmio->gpa` to the MMIO buffer (see struct mmio_emulation). */
struct mmio_emulation {
    uint64_t gpa;          /* in: the guest-physical address that faulted */
    int has_read_data;     /* in: 1 when read_data answers the pending read */
    uint64_t read_data;
    int result;            /* out: one of EMUL_* */
    uint64_t access_gpa;   /* out: the MMIO access the emulation needs or made */
    uint32_t access_len;
    int access_is_write;
    uint64_t write_data;
    uint32_t fault_vector; /* out: for EMUL_FAULT, the exception to inject */
    uint32_t fault_error_code;
    int fault_has_error_code;
};
int cpu_emulate_mmio(cpu_t *cpu, struct mmio_emulation *mmio);

/* Whether VM exits with this basic exit reason can happen on this silicon. */
int vmx_exit_reason_produced(uint32_t reason);

/* The rules VM entry checks (vmx_entry_checks.h), numbered 1..count: each one's name,
 * area (CONTROLS, HOST, GUEST, MSR_LOAD), text and, for guest state, the exit
 * qualification of its failure; and, as a diagnostic (no real processor reports it),
 * the rule the last failed VMLAUNCH/VMRESUME broke (0: none). */
int vmx_entry_check_count(void);
const char *vmx_entry_check_name(int id);
const char *vmx_entry_check_area(int id);
const char *vmx_entry_check_rule(int id);
uint32_t vmx_entry_check_qualification(int id);
int vmx_failed_entry_check(cpu_t *cpu);

/* KVM's guest page walker: translate guest-linear `gla` with the guest state of the
 * current VMCS for an access of kind `access` (TRANSLATE_* flags; TRANSLATE_PROBE only
 * checks, leaving the accessed and dirty flags alone).  Returns TRANSLATE_OK with *gpa
 * set; TRANSLATE_PAGE_FAULT with *pf_error the #PF error code (nothing is delivered:
 * the hypervisor injects it); TRANSLATE_EPT_FAULT with *gpa a paging-structure address
 * that EPT does not map (map it and ask again); or -1 without a current VMCS. */
enum { TRANSLATE_WRITE = 1, TRANSLATE_EXEC = 2, TRANSLATE_USER = 4, TRANSLATE_PROBE = 8 };
enum { TRANSLATE_OK = 0, TRANSLATE_PAGE_FAULT = 1, TRANSLATE_EPT_FAULT = 2 };
int cpu_translate(cpu_t *cpu, uint64_t gla, int access, uint64_t *gpa, uint32_t *pf_error);

/* The VMCS fields this silicon implements, with the names KVM gives them. */
int vmcs_field_count(void);
uint32_t vmcs_field_encoding(int i);
const char *vmcs_field_name(int i);
