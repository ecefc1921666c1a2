/* Internal state of the silicon: one machine (host-physical memory) and its processors. */
#ifndef PYHV_CORE_H
#define PYHV_CORE_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <setjmp.h>
#include <pthread.h>

#include "silicon_api.h"
#include "vmx_defs.h"
#include "fpu.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define PAGE_SIZE 4096ull
/* physical-address width (CPUID.80000008H:EAX[7:0] reports the same) */
#define MAXPHYADDR 40
#define PHYS_ADDR_RSVD (~((1ull << MAXPHYADDR) - 1))
#define PAGE_MASK (~(PAGE_SIZE - 1))

/* ---- host-physical memory ---------------------------------------------------- */

typedef struct ram_range {
    uint64_t hpa, size;
    uint8_t *host;
    /* One word per 4 KiB page: bit 0 = instructions were decoded from this page;
     * the rest counts writes to such pages, so stale decoded blocks are noticed. */
    uint32_t *page_code;
} ram_range_t;

#define MAX_RAM_RANGES 64

struct silicon {
    ram_range_t ranges[MAX_RAM_RANGES];
    int nranges;
    pthread_mutex_t lock;          /* taken only by map/unmap and code-page marking */
    cpu_t *cpus[256];
    int ncpus;
    int refs;                      /* the owner's reference and one per processor */
};
void silicon_release(silicon_t *sil);

ram_range_t *hostmem_range(silicon_t *sil, uint64_t hpa);
/* Host pointer for a host-physical address, or NULL where nothing is mapped. */
uint8_t *hostmem_ptr(silicon_t *sil, uint64_t hpa);
uint64_t hostmem_read64(silicon_t *sil, uint64_t hpa);
/* Atomic compare-exchange of a 64-bit paging-structure entry (A/D updates). */
int hostmem_cmpxchg64(silicon_t *sil, uint64_t hpa, uint64_t old, uint64_t new_value);

/* ---- registers ------------------------------------------------------------------- */

enum { R_AX, R_CX, R_DX, R_BX, R_SP, R_BP, R_SI, R_DI,
       R_R8, R_R9, R_R10, R_R11, R_R12, R_R13, R_R14, R_R15 };
/* Register operands 16..19 name AH, CH, DH, BH (legacy high-byte registers). */
#define REG_HIGH_BYTE 16
enum { S_ES, S_CS, S_SS, S_DS, S_FS, S_GS, S_LDTR, S_TR, S_NONE = 0xff };

/* Segment register with its hidden part; `ar` uses the VMCS access-rights layout:
 * type 3:0, S 4, DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16. */
typedef struct seg {
    uint16_t sel;
    uint64_t base;
    uint32_t limit;
    uint32_t ar;
} seg_t;

#define AR_TYPE(ar) ((ar) & 0xf)
#define AR_S (1u << 4)
#define AR_DPL(ar) (((ar) >> 5) & 3)
#define AR_P (1u << 7)
#define AR_L (1u << 13)
#define AR_DB (1u << 14)
#define AR_G (1u << 15)
#define AR_UNUSABLE (1u << 16)

typedef struct dtr { uint64_t base; uint32_t limit; } dtr_t;

/* RFLAGS bits */
#define F_CF 0x1
#define F_PF 0x4
#define F_AF 0x10
#define F_ZF 0x40
#define F_SF 0x80
#define F_TF 0x100
#define F_IF 0x200
#define F_DF 0x400
#define F_OF 0x800
#define F_IOPL 0x3000
#define F_NT 0x4000
#define F_RF 0x10000
#define F_VM 0x20000
#define F_AC 0x40000
#define F_VIF 0x80000
#define F_VIP 0x100000
#define F_ID 0x200000
#define F_ARITH (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)

#define CR0_PE 0x1ull
#define CR0_MP 0x2ull
#define CR0_EM 0x4ull
#define CR0_TS 0x8ull
#define CR0_ET 0x10ull
#define CR0_NE 0x20ull
#define CR0_WP 0x10000ull
#define CR0_AM 0x40000ull
#define CR0_NW 0x20000000ull
#define CR0_CD 0x40000000ull
#define CR0_PG 0x80000000ull

#define CR4_VME 0x1ull
#define CR4_PVI 0x2ull
#define CR4_TSD 0x4ull
#define CR4_DE 0x8ull
#define CR4_PSE 0x10ull
#define CR4_PAE 0x20ull
#define CR4_MCE 0x40ull
#define CR4_PGE 0x80ull
#define CR4_PCE 0x100ull
#define CR4_OSFXSR 0x200ull
#define CR4_OSXMMEXCPT 0x400ull
#define CR4_UMIP 0x800ull
#define CR4_VMXE 0x2000ull
#define CR4_FSGSBASE 0x10000ull
#define CR4_PCIDE 0x20000ull
#define CR4_OSXSAVE 0x40000ull
#define CR4_SMEP 0x100000ull
#define CR4_SMAP 0x200000ull

#define EFER_SCE 0x1ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull
#define EFER_NXE 0x800ull

/* exception vectors */
enum { EXC_DE = 0, EXC_DB = 1, EXC_NMI = 2, EXC_BP = 3, EXC_OF = 4, EXC_BR = 5, EXC_UD = 6,
       EXC_NM = 7, EXC_DF = 8, EXC_TS = 10, EXC_NP = 11, EXC_SS = 12, EXC_GP = 13,
       EXC_PF = 14, EXC_MF = 16, EXC_AC = 17, EXC_MC = 18, EXC_XM = 19 };

/* lazy flags: which operation produced the arithmetic flags */
/* LF_MUL (IMUL's two- and three-operand forms): lf_a is 1 if the product overflowed */
enum { LF_NONE, LF_ADD, LF_ADC, LF_SUB, LF_SBB, LF_LOGIC, LF_INC, LF_DEC, LF_MUL };

/* ---- decoded instructions -------------------------------------------------------- */

struct insn;
typedef void (*insn_fn)(cpu_t *cpu, const struct insn *i);

typedef struct insn {
    insn_fn fn;
    uint8_t len;
    uint8_t opsize;     /* operand size in bytes: 1, 2, 4, 8 */
    uint8_t addrsize;   /* address size in bytes: 2, 4, 8 */
    uint8_t has_mem;    /* the r/m operand is memory */
    uint8_t reg;        /* ModRM.reg register (REX.R applied, high-byte names 16..19) */
    uint8_t rm;         /* ModRM.rm register when !has_mem */
    uint8_t base;       /* memory operand: base register or 0xff; 0xfe = RIP-relative */
    uint8_t index;      /* 0xff = none */
    uint8_t scale;      /* shift count 0..3 */
    uint8_t seg;        /* effective segment of the memory operand */
    uint8_t rep;        /* 0, PFX_REP (F3) or PFX_REPNE (F2) */
    uint8_t op;         /* operation selector (ALU op, condition code, ...) */
    uint8_t lock;
    uint8_t seg_override; /* explicit segment prefix or S_NONE */
    uint8_t opcode;     /* last opcode byte (for handlers shared by several opcodes) */
    uint8_t ends_block;
    uint8_t fused;      /* a compare fused with the Jcc after it (exec_fast.c) */
    uint8_t branch_size; /* operand size of the fused Jcc */
    uint8_t guest_count; /* in a block: guest instructions up to and including this one */
    uint8_t flags_dead;  /* in a block: runs without computing the flags, which a later
                          * instruction overwrites unseen (exec_fast.c); alone it would
                          * be wrong */
    uint8_t kind;        /* in a block, how run.c's loop runs it (enum insn_kind) */
    uint16_t rip_off;    /* in a block: its distance from the block's first byte */
    int64_t disp;
    uint64_t imm;
    uint64_t imm2;
} insn_t;

/* INSN_PLAIN: a register instruction that cannot fault, branch or end the block and
 * reads neither RIP nor next_rip.  INSN_MEMORY: may fault, VM-exit or stop the block
 * (a memory access), but neither branches nor reads next_rip: it needs only RIP.
 * INSN_FULL: anything (RIP and next_rip set; a changed next_rip is a branch). */
enum insn_kind { INSN_FULL, INSN_PLAIN, INSN_MEMORY };

#define PFX_REP 1
#define PFX_REPNE 2

#define BLOCK_MAX_INSNS 64
/* A compiled block: runs the block once from `start` (its linear RIP), adds the retired
 * instructions and returns the RIP it left at (the loop of run.c's run_loop) */
typedef uint64_t (*jit_code_t)(cpu_t *cpu, uint64_t start);
typedef struct block {
    uint64_t hpa;        /* host-physical address of the first byte */
    uint32_t mode;       /* decode mode key (code size) */
    uint32_t gen;        /* page write generation when decoded */
    uint32_t *code_word; /* the page's current generation */
    struct block *next;  /* the next block of its hash chain */
    uint32_t n;          /* decoded entries (a fused pair is one) */
    uint32_t fast_only;  /* every entry runs a handler of exec_fast.c: none can change
                          * RFLAGS.IF or the interruptibility state */
    jit_code_t jit;      /* its compiled code (jit.c), or NULL while it runs interpreted */
    uint32_t runs;       /* runs so far while not compiled (cpu->jit_hot_runs) */
    insn_t insns[];      /* n of them (BLOCK_MAX_INSNS at most) */
} block_t;

/* Blocks are laid end to end in an arena and found through a hash table of chains by
 * host-physical address; when the arena is full, all are dropped at once. */
#define BLOCK_HASH_BITS 16
#define BLOCK_ARENA_SIZE (32u << 20)

/* Recently executed blocks by linear address: valid while the TLB has not been flushed
 * nor the blocks dropped since (same epoch) and the block's page has not been written.
 * An entry of a global page (its TLB entry survives MOV to CR3) follows the epoch of
 * the flushes that drop global entries. */
typedef struct jump_cache_entry {
    uint64_t lin;
    uint16_t key;        /* code size | CPL 3 << 8 */
    uint8_t global;
    uint32_t epoch;
    block_t *block;
} jump_cache_entry_t;

#define JUMP_CACHE_SIZE 4096

/* ---- TLB: guest-linear page -> host pointer, with permissions folded in ----------- */

typedef struct tlb_entry {
    uint64_t tag_read;   /* linear page address, or TLB_INVALID */
    uint64_t tag_write;
    uint64_t tag_exec;
    uintptr_t addend;    /* host pointer = linear address + addend */
    uint64_t hpa;        /* host-physical page address */
    uint64_t gpa;        /* guest-physical page address */
    uint32_t *code_word; /* the page's entry in ram_range_t.page_code */
    uint8_t global;
} tlb_entry_t;

/* Guest-physical mappings that EPT walks produced (SDM Vol. 3 29.4.1): a TLB fill's
 * guest page-table reads and its final translation skip the walk when cached.  Dropped
 * with the TLB by INVEPT and context changes (tlb_flush_all without keep_global). */
typedef struct ept_cache_entry {
    uint64_t gpa;        /* guest-physical page, or TLB_INVALID */
    uint64_t hpa;        /* host-physical page */
    uint8_t perms;       /* EPT R/W/X of the walk */
    uint8_t dirty;       /* a write needs no walk to set the dirty flag */
} ept_cache_entry_t;
#define EPT_CACHE_SIZE 256

#define TLB_BITS 10
#define TLB_SIZE (1u << TLB_BITS)
#define TLB_INVALID (~0ull)
#define SMAP_OPEN_MAX 32

/* memory access kinds */
enum { ACC_READ = 0, ACC_WRITE = 1, ACC_EXEC = 2 };

/* ---- the logical processor --------------------------------------------------------- */

enum { MODE_REAL16, MODE_PROT16, MODE_PROT32, MODE_LONG64, MODE_VM86 };

struct cpu {
    /* architectural state */
    uint64_t gpr[16];
    uint64_t rip;
    uint64_t rflags;     /* arithmetic bits valid only when lf_op == LF_NONE */
    uint32_t lf_op, lf_size;
    uint64_t lf_res, lf_a, lf_b, lf_carry_in;

    seg_t seg[8];
    dtr_t gdtr, idtr;
    uint64_t cr0, cr2, cr3, cr4, cr8, efer;
    uint64_t dr[8];
    uint64_t xcr0;
    struct fpu_state fpu;      /* x87, MMX and SSE registers (fpu.h) */
    uint64_t tsc_adjust;       /* IA32_TSC writes: the difference from the host TSC */
    uint64_t mtrr[32];         /* variable ranges, fixed ranges and the default type */
    uint64_t msr_feature_control;
    uint64_t msr_sysenter_cs, msr_sysenter_esp, msr_sysenter_eip;
    uint64_t msr_star, msr_lstar, msr_cstar, msr_sfmask, msr_kernel_gs_base;
    uint64_t msr_pat, msr_tsc_aux, msr_apic_base, msr_debugctl, msr_misc_enable;
    uint64_t pdpte[4];
    uint32_t interruptibility; /* VMCS layout: 1 = blocking by STI, 2 = by MOV SS, 8 = NMI */
    uint32_t activity;         /* VMCS activity state */
    uint64_t pending_dbg;      /* debug traps not yet delivered (VMCS pending-debug layout) */
    uint64_t pf_addr;          /* linear address of the #PF being raised (CR2 on delivery) */

    /* derived mode, recomputed when CR0/EFER/RFLAGS.VM or a segment register change */
    int cpl;
    int mode;
    int code_size;       /* default operand/address size of code: 2, 4, 8 */
    int stack_size;      /* SS.B: 2 or 4 (8 in 64-bit mode) */
    /* segments whose limit and type checks cannot fail for reads (bits 0-5) and writes
     * (bits 8-13): accesses through them go straight to the TLB */
    uint32_t seg_unchecked;
    uint64_t seg_fast_base[6];
    uint64_t lin_mask;   /* linear addresses wrap at 4 GiB outside 64-bit mode */
    uint32_t code_key;   /* code size | CPL 3 << 8: what decoded blocks depend on */

    /* next instruction pointer while an instruction executes (next_rip - rip is the
     * length of the instruction, for the VM-exit instruction-length field) */
    uint64_t next_rip;

    /* execution control: faults unwind to fault_jmp (the instruction loop), VM exits to
     * exit_jmp (the VMLAUNCH/VMRESUME that entered the guest) */
    jmp_buf fault_jmp;
    jmp_buf exit_jmp;
    volatile int kicked;
    uint64_t interrupt_requests[4];   /* vectors sent to the processor (cpu_interrupt) */
    int stop_block;      /* end the current block after this instruction */
    uint64_t retired;
    uint64_t budget;     /* instructions left before checking for events */

    /* event delivery in progress (for double faults and IDT-vectoring information), and
     * the state it started from: a delivery that faults or VM-exits changes nothing */
    int delivering;
    uint32_t delivering_info;
    uint32_t delivering_error;
    struct { seg_t cs, ss; uint64_t rsp, rip, rflags; } before_delivery;

    /* emulation of one instruction in root mode (KVM's emulator) */
    struct mmio_emulation *emul;
    /* the MMIO address an access reached: the emulation's MMIO page, or in the guest the
     * APIC-access page (apic_access.c) */
    uint64_t emul_hit_gpa;
    uint64_t lock_bit;         /* bit number of a locked BTS/BTR/BTC in progress */

    /* TLB (index 0: supervisor accesses, 1: user accesses) */
    tlb_entry_t tlb[2][TLB_SIZE];
    tlb_entry_t *tlb_cpl;      /* the half for the accesses of the CPL (mode.c keeps it) */
    /* count TLB flushes and block drops, so that cached lookups notice them: [0] all of
     * them, [1] those that drop global entries too */
    uint32_t tlb_epoch[2];
    /* supervisor entries of user pages that RFLAGS.AC allowed under SMAP (indices into
     * tlb[0], a ring): clearing AC takes their data access away again */
    uint16_t smap_open[SMAP_OPEN_MAX];
    uint32_t smap_open_count;
    jump_cache_entry_t jump_cache[JUMP_CACHE_SIZE];
    ept_cache_entry_t ept_cache[EPT_CACHE_SIZE];
    uint32_t boundary_controls; /* VM-execution controls that need checks between blocks */
    int mtf_pending;     /* an MTF VM exit is due at the next instruction boundary */
    int failed_entry_check;   /* the VM-entry rule last broken (vmx_entry_checks.h), or 0 */
    /* debug.c: the breakpoints DR7 enables (bit n: DRn) and the data breakpoints
     * (address | R/W | LEN << 2) the TLB's entries were filled under */
    uint8_t dbg_exec, dbg_data;
    uint64_t dbg_watch[4];
    uint32_t timer_polls;

    /* decoded blocks (run.c) */
    block_t **block_hash;
    uint8_t *block_arena;
    size_t block_arena_used;
    insn_t scratch_insn;
    /* compiled blocks (jit.c): host code laid end to end, dropped with the blocks */
    uint8_t *jit_arena;
    size_t jit_used;
    int jit_full;        /* no room for another block: drop all at the next build */
    uint32_t jit_hot_runs; /* a block's run that compiles it; 0: none is compiled */
    jit_stats_t jit_stats;   /* cpu_jit_stats: the counters (the sizes are filled in there) */
    struct jit_link *jit_unlinked;  /* the exit compiled code was just left by, to be linked
                                     * to the block at its target (jit.c) */

    silicon_t *sil;
    int apic_id;

    /* ---- VMX ---- */
    int vmx_on;
    int in_guest;        /* VMX non-root operation */
    uint64_t vmxon_ptr;
    uint64_t current_vmcs; /* ~0 when none */
    uint8_t *vmcs;       /* host pointer to the current VMCS region */
    vmcs_cache_t vc;     /* controls loaded at VM entry */
    uint32_t exit_reason;
    uint16_t tlb_vpid;   /* the context the TLB's entries belong to */
    uint64_t tlb_eptp;
    int tlb_tagged;
    /* APIC virtualization (apicv.c, apic_access.c): the guest interrupt status while the
     * guest runs, what is owed at the next boundary (a virtualized write to the
     * APIC-access page awaiting APIC-write emulation, offset -1 when none; the
     * TPR-threshold check after VM entry), and the APIC-access page that the TLB has
     * been purged of */
    uint8_t rvi, svi;
    int apic_write_offset, apic_write_size;
    int tpr_check_owed;
    uint64_t tlb_apic_access_page;
    /* event to inject at VM entry (VM-entry interruption-information) */
    uint32_t inject_info, inject_error, inject_len;
    pthread_mutex_t wait_lock;  /* HLT activity state sleeps here until kicked */
    pthread_cond_t wait_cond;
};

#define NO_VMCS (~0ull)

/* ---- helpers shared across the core ------------------------------------------------- */

static inline uint64_t size_mask(int size)
{
    return size >= 8 ? ~0ull : ((1ull << (size * 8)) - 1);
}

static inline uint64_t sign_extend(uint64_t v, int size)
{
    switch (size) {
    case 1: return (uint64_t)(int64_t)(int8_t)v;
    case 2: return (uint64_t)(int64_t)(int16_t)v;
    case 4: return (uint64_t)(int64_t)(int32_t)v;
    default: return v;
    }
}

static inline uint64_t reg_read(cpu_t *cpu, int r, int size)
{
    if (r >= REG_HIGH_BYTE)
        return (cpu->gpr[r - REG_HIGH_BYTE] >> 8) & 0xff;
    return cpu->gpr[r] & size_mask(size);
}

static inline void reg_write(cpu_t *cpu, int r, int size, uint64_t v)
{
    if (r >= REG_HIGH_BYTE) {
        uint64_t *g = &cpu->gpr[r - REG_HIGH_BYTE];
        *g = (*g & ~0xff00ull) | ((v & 0xff) << 8);
        return;
    }
    switch (size) {
    case 1: cpu->gpr[r] = (cpu->gpr[r] & ~0xffull) | (v & 0xff); break;
    case 2: cpu->gpr[r] = (cpu->gpr[r] & ~0xffffull) | (v & 0xffff); break;
    case 4: cpu->gpr[r] = (uint32_t)v; break;
    default: cpu->gpr[r] = v; break;
    }
}

static inline uint64_t load_host(const uint8_t *p, int size)
{
    switch (size) {
    case 1: return *p;
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

static inline void store_host(uint8_t *p, int size, uint64_t v)
{
    switch (size) {
    case 1: *p = (uint8_t)v; break;
    case 2: { uint16_t w = (uint16_t)v; memcpy(p, &w, 2); break; }
    case 4: { uint32_t w = (uint32_t)v; memcpy(p, &w, 4); break; }
    default: memcpy(p, &v, 8); break;
    }
}

/* Segmented accesses: segments that cannot fault go straight to the TLB; anything
 * else (a miss, a page crossing, a checked segment) takes the full path in mem.c.
 * Always inlined: the compiler would otherwise call them from the many handlers. */
uint64_t mem_read_slow(cpu_t *cpu, int seg, uint64_t off, int size);
void mem_write_slow(cpu_t *cpu, int seg, uint64_t off, int size, uint64_t v);

static inline __attribute__((always_inline)) uint64_t mem_read(cpu_t *cpu, int seg, uint64_t off, int size)
{
    if (likely(cpu->seg_unchecked & (1u << seg))) {
        uint64_t lin = (off + cpu->seg_fast_base[seg]) & cpu->lin_mask;
        tlb_entry_t *e = &cpu->tlb_cpl[(lin >> 12) & (TLB_SIZE - 1)];
        if (likely(e->tag_read == (lin & PAGE_MASK) && (lin & 0xfff) + size <= 0x1000))
            return load_host((uint8_t *)(uintptr_t)(lin + e->addend), size);
    }
    return mem_read_slow(cpu, seg, off, size);
}

static inline __attribute__((always_inline)) void mem_write(cpu_t *cpu, int seg, uint64_t off, int size, uint64_t v)
{
    if (likely(cpu->seg_unchecked & (0x100u << seg))) {
        uint64_t lin = (off + cpu->seg_fast_base[seg]) & cpu->lin_mask;
        tlb_entry_t *e = &cpu->tlb_cpl[(lin >> 12) & (TLB_SIZE - 1)];
        if (likely(e->tag_write == (lin & PAGE_MASK) && (lin & 0xfff) + size <= 0x1000)) {
            store_host((uint8_t *)(uintptr_t)(lin + e->addend), size, v);
            return;
        }
    }
    mem_write_slow(cpu, seg, off, size, v);
}

/* Effective address of the memory operand (masked to the address size). */
static inline __attribute__((always_inline)) uint64_t ea_of(cpu_t *cpu, const insn_t *i)
{
    uint64_t a = (uint64_t)i->disp;
    if (i->base == 0xfe)
        a += cpu->next_rip;
    else if (i->base != 0xff)
        a += cpu->gpr[i->base];
    if (i->index != 0xff)
        a += cpu->gpr[i->index] << i->scale;
    return a & (~0ull >> (64 - 8 * i->addrsize));   /* addrsize is 2, 4 or 8 */
}

/* flags.c */
uint64_t cpu_get_rflags(cpu_t *cpu);
void cpu_set_rflags(cpu_t *cpu, uint64_t v);
static inline void set_lazy(cpu_t *cpu, int op, int size, uint64_t res, uint64_t a, uint64_t b)
{
    cpu->lf_op = op; cpu->lf_size = size; cpu->lf_res = res;
    if (op != LF_LOGIC) {   /* the flags of a logic result follow from the result alone */
        cpu->lf_a = a;
        cpu->lf_b = b;
    }
}
/* Condition codes 0..15 as in Jcc/SETcc/CMOVcc; inlined so that a constant cc folds,
 * with the compare-and-branch cases answered from the lazy flags. */
static inline __attribute__((always_inline)) int cond_true(cpu_t *cpu, int cc)
{
    int r;
    if (cpu->lf_op != LF_NONE) {
        /* the common compare/test + branch pair, and ZF, SF or an addition's CF after
         * any operation, without materializing flags */
        int size = cpu->lf_size;
        uint64_t m = size_mask(size);
        uint64_t res = cpu->lf_res & m;
        if ((cc >> 1) == 2) {
            r = res == 0;
            goto out;
        }
        if ((cc >> 1) == 4) {
            r = (res >> (size * 8 - 1)) & 1;
            goto out;
        }
        if (cpu->lf_op == LF_ADD && (cc >> 1) == 1) {
            r = res < (cpu->lf_a & m);
            goto out;
        }
        if (cpu->lf_op == LF_SUB) {
            uint64_t a = cpu->lf_a & m, b = cpu->lf_b & m;
            int64_t sa = (int64_t)sign_extend(a, size), sb = (int64_t)sign_extend(b, size);
            switch (cc >> 1) {
            case 1: r = a < b; goto out;             /* B */
            case 3: r = a <= b; goto out;            /* BE */
            case 6: r = sa < sb; goto out;           /* L */
            case 7: r = sa <= sb; goto out;          /* LE */
            }
        } else if (cpu->lf_op == LF_LOGIC) {
            int64_t sr = (int64_t)sign_extend(res, size);
            switch (cc >> 1) {
            case 0: r = 0; goto out;                 /* O */
            case 1: r = 0; goto out;                 /* B */
            case 3: r = res == 0; goto out;          /* BE: CF = 0 */
            case 6: r = sr < 0; goto out;            /* L: SF != OF, OF = 0 */
            case 7: r = res == 0 || sr < 0; goto out;
            }
        }
    }
    {
        uint64_t f = cpu_get_rflags(cpu);
        switch (cc >> 1) {
        case 0: r = !!(f & F_OF); break;
        case 1: r = !!(f & F_CF); break;
        case 2: r = !!(f & F_ZF); break;
        case 3: r = !!(f & (F_CF | F_ZF)); break;
        case 4: r = !!(f & F_SF); break;
        case 5: r = !!(f & F_PF); break;
        case 6: r = !!(f & F_SF) != !!(f & F_OF); break;
        default: r = (f & F_ZF) || (!!(f & F_SF) != !!(f & F_OF)); break;
        }
    }
out:
    return (cc & 1) ? !r : r;
}

/* CF alone, without materializing the other flags (INC/DEC keep it). */
static inline uint64_t lazy_carry(cpu_t *cpu)
{
    uint64_t m = size_mask((int)cpu->lf_size);
    switch (cpu->lf_op) {
    case LF_ADD: return (cpu->lf_res & m) < (cpu->lf_a & m);
    case LF_SUB: return (cpu->lf_a & m) < (cpu->lf_b & m);
    case LF_LOGIC: return 0;
    case LF_INC: case LF_DEC: return cpu->lf_carry_in;
    case LF_MUL: return cpu->lf_a;
    default: return cpu_get_rflags(cpu) & F_CF;
    }
}

/* Set the arithmetic flags directly (shifts, multiplies, ...). */
void set_arith_flags(cpu_t *cpu, uint64_t arith);
uint64_t parity_flag(uint64_t v);

/* interrupt.c: faults unwind the current instruction and never return */
__attribute__((noreturn)) void raise_fault(cpu_t *cpu, int vector, int has_error, uint32_t error);
#define FAULT(cpu, v) raise_fault((cpu), (v), 0, 0)
#define FAULT_ERR(cpu, v, e) raise_fault((cpu), (v), 1, (e))
/* Deliver an event through the IDT (used by faults, INTn, and VM-entry injection). */
enum { EV_EXT_INT = 0, EV_NMI = 2, EV_HW_EXC = 3, EV_SW_INT = 4, EV_PRIV_SW_EXC = 5, EV_SW_EXC = 6 };
void deliver_event(cpu_t *cpu, int type, int vector, int has_error, uint32_t error, uint64_t return_rip);
__attribute__((noreturn)) void deliver_event_and_unwind(cpu_t *cpu, int type, int vector, int has_error, uint32_t error, uint64_t return_rip);
/* Undo a delivery in progress that a fault or a VM exit interrupts. */
void abort_delivery(cpu_t *cpu);

/* mode.c: call after anything that changes the mode or a segment register */
void cpu_update_mode(cpu_t *cpu);
void cpu_update_segment_cache(cpu_t *cpu);

/* segment.c */
uint64_t seg_linear(cpu_t *cpu, int seg, uint64_t off, int size, int acc);
void load_seg_prot(cpu_t *cpu, int seg, uint16_t sel);
void load_seg_real(cpu_t *cpu, int seg, uint16_t sel);
void load_seg(cpu_t *cpu, int seg, uint16_t sel);
int read_descriptor(cpu_t *cpu, uint16_t sel, uint64_t *desc_lo, uint64_t *desc_hi, uint64_t *addr);
void desc_to_seg(seg_t *s, uint16_t sel, uint64_t lo, uint64_t hi);
void mark_accessed(cpu_t *cpu, uint64_t addr, uint64_t *lo);
uint64_t check_stack_segment(cpu_t *cpu, uint16_t sel, int cpl, uint64_t *addr);
/* SS:ESP for privilege level `dpl` from the TSS, with the new SS's checks (interrupt.c). */
uint64_t tss_stack(cpu_t *cpu, int dpl, uint32_t ext, seg_t *ss_out);

/* mem.c: linear-address access (through the TLB, guest paging and EPT) */
uint64_t lin_read(cpu_t *cpu, uint64_t lin, int size, int user);
void lin_write(cpu_t *cpu, uint64_t lin, int size, uint64_t v, int user);
/* System accesses (descriptor tables, TSS, IDT) are supervisor regardless of CPL. */
uint64_t sys_read(cpu_t *cpu, uint64_t lin, int size);
void sys_write(cpu_t *cpu, uint64_t lin, int size, uint64_t v);
/* Guest-physical access used by the page walker (with EPT). */
uint8_t *fetch_ptr(cpu_t *cpu, uint64_t lin, uint64_t *hpa_out);
uint64_t rm_read(cpu_t *cpu, const insn_t *i, int size);
void rm_write(cpu_t *cpu, const insn_t *i, int size, uint64_t v);
void push(cpu_t *cpu, int size, uint64_t v);
uint64_t pop(cpu_t *cpu, int size);
uint64_t stack_ptr_mask(cpu_t *cpu);

/* paging.c: guest-linear -> guest-physical.  paging_walk reports a #PF (and sets the
 * accessed/dirty flags only if asked); paging_translate sets them and raises it. */
typedef struct walk {
    uint64_t gpa;
    uint32_t error;      /* #PF error code when the walk fails */
    int writable, user;  /* R/W and U/S accumulated over all levels */
    int global;
} walk_t;
int paging_walk(cpu_t *cpu, uint64_t lin, int acc, int user, int set_accessed, walk_t *w);
uint64_t paging_translate(cpu_t *cpu, uint64_t lin, int acc, int user, walk_t *w);

/* ept.c: guest-physical -> host-physical; a violation or misconfiguration VM-exits */
uint64_t ept_translate(cpu_t *cpu, uint64_t gpa, int acc, int gla_valid, uint64_t gla,
                       int is_final, int *writable);
int ept_walk_info(cpu_t *cpu, uint64_t eptp, uint64_t gpa, uint64_t *entries, int *levels);

/* tlb.c */
void tlb_flush_all(cpu_t *cpu, int keep_global);
void tlb_flush_page(cpu_t *cpu, uint64_t lin);
tlb_entry_t *tlb_fill(cpu_t *cpu, uint64_t lin, int acc, int user);
void tlb_take_write_path(cpu_t *cpu, tlb_entry_t *e, uint64_t lin);
void tlb_drop_code_page_writes(silicon_t *sil, uint64_t hpa_page);
void tlb_select_context(cpu_t *cpu);
void tlb_smap_closed(cpu_t *cpu);   /* RFLAGS.AC went from 1 to 0 */

/* in boundary_controls, beside the proc-based bits: what else needs boundary_events() */
#define BOUNDARY_PREEMPTION_TIMER 1u
#define BOUNDARY_DEBUG 2u              /* an MTF VM exit or debug traps are pending */
#define BOUNDARY_APIC_TRAP 8u          /* apicv_trap() is owed (apicv.h) */
#define BOUNDARY_VIRTUAL_INTR 0x10u    /* a virtual interrupt is recognized (apicv.h) */

/* debug.c: debug registers and debug exceptions (SDM Vol. 3 Chapter 18) */
#define DR6_B_MASK 0xfull
#define DR6_BD (1ull << 13)
#define DR6_BS (1ull << 14)
#define DR7_GD (1ull << 13)
#define PENDING_DBG_ENABLED_BP (1ull << 12)
uint64_t debug_register_value(int n, uint64_t v);
void debug_registers_changed(cpu_t *cpu);
int debug_watches_page(cpu_t *cpu, uint64_t page, int acc);
void debug_data_access(cpu_t *cpu, uint64_t lin, int size, int acc);
int debug_code_page(cpu_t *cpu, uint64_t lin);
void debug_code_breakpoint(cpu_t *cpu, uint64_t lin);
void debug_deliver_pending(cpu_t *cpu);
__attribute__((noreturn)) void raise_debug(cpu_t *cpu, uint64_t dr6_bits);
/* Traps for the next instruction boundary (VMCS pending-debug-exception bits), and the
 * MTF VM exit due there: boundary_events() takes them. */
static inline void pend_debug_traps(cpu_t *cpu, uint64_t bits)
{
    cpu->pending_dbg |= bits;
    cpu->boundary_controls |= BOUNDARY_DEBUG;
}

static inline void pend_mtf_exit(cpu_t *cpu)
{
    cpu->mtf_pending = 1;
    cpu->boundary_controls |= BOUNDARY_DEBUG;
}

/* REP string instructions run one iteration per step while single-stepping (TF, MTF)
 * or while data breakpoints may hit, so that the trap follows the iteration */
static inline int debug_one_iteration(const cpu_t *cpu)
{
    return (cpu->rflags & F_TF) || cpu->dbg_data || (cpu->vc.proc & CPU_MONITOR_TRAP_FLAG);
}

/* decode.c */
int decode_insn(cpu_t *cpu, uint64_t rip, insn_t *out);
void specialize_insn(insn_t *i);   /* exec_fast.c */
int fuse_compare_branch(insn_t *cmp, const insn_t *jcc);
void optimize_block(block_t *b);
/* The forms of exec_fast.c's handlers that jit.c compiles inline (FS_NONE: any other,
 * which compiled code calls) */
enum fast_shape { FS_NONE, FS_ALU_RR, FS_ALU_RI, FS_ALU_RR_NF, FS_ALU_RI_NF, FS_FUSED_RR, FS_FUSED_RI,
                  FS_MOV_RR, FS_MOV_RI, FS_LEA, FS_LOAD, FS_STORE, FS_STORE_IMM, FS_JMP, FS_JCC, FS_SHIFT_NF, FS_IMUL_NF, FS_INCDEC_NF, FS_MOVZX_RR,
                  FS_MOVSX_RR, FS_ALU_RM, FS_ALU_MR, FS_FUSED_RM, FS_FUSED_MR, FS_FUSED_MI,
                  FS_PUSH, FS_POP, FS_CALL };
typedef struct fast_form {
    insn_fn fn;
    uint8_t shape;   /* enum fast_shape */
    uint8_t alu;     /* ALU forms: 0 add, 1 or, 4 and, 5 sub, 6 xor, 7 cmp, 8 test;
                      * shifts: 4 shl, 5 shr, 7 sar; INC/DEC: 0 inc, 1 dec */
    uint8_t size;    /* operand or access size in bytes (MOVZX/MOVSX: the source's) */
    uint8_t cc;      /* fused forms and Jcc: the branch's condition */
} fast_form_t;
fast_form_t fast_form(insn_fn fn);
int decode_bytes(const uint8_t *p, int avail, int code_size, insn_t *d);

/* jit.c */
int jit_init(cpu_t *cpu);
void jit_free(cpu_t *cpu);
void jit_reset(cpu_t *cpu);
void jit_compile(cpu_t *cpu, block_t *b, uint64_t start);
void jit_link(cpu_t *cpu, block_t *to);

/* run.c */
void cpu_run_guest(cpu_t *cpu);
void code_page_written(cpu_t *cpu, uint64_t hpa);

/* vmx_exit.c: VM exit from the running guest; unwinds to the VM-entry instruction */
typedef struct exit_info {
    uint32_t reason;
    uint64_t qual;
    uint64_t gla;
    uint64_t gpa;
    uint32_t insn_info;
    uint32_t intr_info;
    uint32_t intr_error;
    int has_insn_len;
} exit_info_t;
__attribute__((noreturn)) void vm_exit(cpu_t *cpu, exit_info_t *ei);
__attribute__((noreturn)) void vm_exit_simple(cpu_t *cpu, uint32_t reason, uint64_t qual);
__attribute__((noreturn)) void vm_exit_insn(cpu_t *cpu, uint32_t reason, uint64_t qual);

/* vmcs_fields.c */
/* The VMCS region holds the revision identifier, the abort indicator and the launch
 * state, then one 8-byte slot per implemented field in vmcs_field_list.h's order. */
#define VMCS_DATA_OFFSET 16
extern const int16_t vmcs_slot_plus1[0x8000];

static inline int vmcs_field_slot(uint32_t field)
{
    return field < 0x8000 ? vmcs_slot_plus1[field] - 1 : -1;
}

/* Raw access to the current VMCS, for the processor itself (no access-rule checks). */
static inline uint64_t vmcs_get(cpu_t *cpu, uint32_t field)
{
    int slot = vmcs_field_slot(field);
    uint64_t v;
    if (slot < 0 || !cpu->vmcs)
        return 0;
    memcpy(&v, cpu->vmcs + VMCS_DATA_OFFSET + slot * 8, 8);
    return v;
}

static inline void vmcs_set(cpu_t *cpu, uint32_t field, uint64_t value)
{
    int slot = vmcs_field_slot(field);
    if (slot < 0 || !cpu->vmcs)
        return;
    switch ((field >> 13) & 3) {   /* width: 16, 64, 32 bits, natural */
    case 0: value &= 0xffffull; break;
    case 2: value &= 0xffffffffull; break;
    }
    memcpy(cpu->vmcs + VMCS_DATA_OFFSET + slot * 8, &value, 8);
}
uint32_t *vmcs_launch_state(cpu_t *cpu);

/* system instruction helpers (exec_system.c) */
void write_cr0(cpu_t *cpu, uint64_t v);
void write_cr4(cpu_t *cpu, uint64_t v);
void write_cr3(cpu_t *cpu, uint64_t v);
int msr_read(cpu_t *cpu, uint32_t idx, uint64_t *v);
int msr_write(cpu_t *cpu, uint32_t idx, uint64_t v);
int valid_pat(uint64_t v);   /* every IA32_PAT entry a memory type */
uint64_t host_tsc(void);
uint64_t tsc_ticks_to_ns(uint64_t ticks);
uint64_t guest_tsc(cpu_t *cpu);

#endif
