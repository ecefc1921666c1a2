/* Hot blocks compiled to host x86-64 code.  A compiled block does what run.c's loop
 * does with the block's entries, with the loop's decisions made once at compile time:
 * each entry either calls its handler (with RIP and next_rip stored as its kind needs,
 * and the same checks after it), or, for the commonest forms of exec_fast.c, is
 * compiled inline with its operands as constants: register ALU operations with their
 * lazy flags, compares fused with their branch (the host's own flags decide it), JMP
 * and Jcc, MOV, LEA, flagless shifts, IMUL, INC/DEC and extensions, and loads, stores
 * and ALU reads of memory through the TLB's fast path (anything else in the access calls
 * mem_read_slow/mem_write_slow, which may fault or VM-exit as the handler would).  An
 * exit to a known RIP in the same page jumps straight into the compiled block there.
 *
 * Registers in compiled code: RBX = cpu, R12 = the block's linear start.  Faults and VM
 * exits longjmp out of it as they do out of handlers.  The code lives in a per-processor
 * arena that is dropped with the decoded blocks (run.c's block_space). */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include "exec.h"

#define JIT_ARENA_SIZE (64u << 20)
/* the run of a block that compiles it: code that runs a few times (start-up,
 * initialization) is not worth compiling */
#define JIT_HOT_RUNS 16
/* more than the most code one entry or a block's end compiles to (a compare of memory
 * fused with its branch: the access with its slow path, a linked exit, a stop check,
 * about 550 bytes) */
#define JIT_ENTRY_MAX 1024

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

/* An exit that may jump straight into the block at its target, once that is compiled:
 * the rel32 jump to patch (its end), the block it leaves, and the target's host-physical
 * address.  Kept in the arena after the exit's code. */
struct jit_link {
    uint8_t *jump_end;
    const block_t *from;
    uint64_t target_hpa;
};
/* the prologue's length: a linked jump enters after it, RBX and R12 already set */
#define JIT_PROLOGUE 11

typedef struct emitter {
    uint8_t *p;
} emitter_t;

static void byte(emitter_t *e, uint8_t b) { *e->p++ = b; }
static void dword(emitter_t *e, uint32_t v) { memcpy(e->p, &v, 4); e->p += 4; }
static void qword(emitter_t *e, uint64_t v) { memcpy(e->p, &v, 8); e->p += 8; }

static int fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* REX for a 64-bit operand (w) and the high registers in ModRM.reg and ModRM.rm */
static void rex(emitter_t *e, int w, int reg, int rm)
{
    uint8_t r = (uint8_t)(0x40 | (w << 3) | ((reg >> 3) & 1) << 2 | ((rm >> 3) & 1));
    if (r != 0x40)
        byte(e, r);
}

/* ModRM (and SIB) for [base + disp] */
static void modrm_mem(emitter_t *e, int reg, int base, int32_t disp)
{
    int b = base & 7, mod = disp == 0 && b != RBP ? 0 : disp >= -128 && disp <= 127 ? 1 : 2;
    byte(e, (uint8_t)(mod << 6 | (reg & 7) << 3 | b));
    if (b == RSP)
        byte(e, 0x24);
    if (mod == 1)
        byte(e, (uint8_t)disp);
    else if (mod == 2)
        dword(e, (uint32_t)disp);
}

/* opcode (one or two bytes, `prefix` 0x66 when nonzero) with a memory operand */
static void op_mem(emitter_t *e, int prefix, int w, unsigned opcode, int reg, int base, int32_t disp)
{
    if (prefix)
        byte(e, (uint8_t)prefix);
    rex(e, w, reg, base);
    if (opcode > 0xff)
        byte(e, (uint8_t)(opcode >> 8));
    byte(e, (uint8_t)opcode);
    modrm_mem(e, reg, base, disp);
}

/* opcode with a register operand in ModRM.rm */
static void op_reg(emitter_t *e, int w, unsigned opcode, int reg, int rm)
{
    rex(e, w, reg, rm);
    if (opcode > 0xff)
        byte(e, (uint8_t)(opcode >> 8));
    byte(e, (uint8_t)opcode);
    byte(e, (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7)));
}

#define CPU_FIELD(f) ((int32_t)offsetof(cpu_t, f))
#define GPR(r) (CPU_FIELD(gpr) + 8 * (int32_t)(r))

static void load_gpr(emitter_t *e, int w, int host, int guest) { op_mem(e, 0, w, 0x8b, host, RBX, GPR(guest)); }
static void store_gpr(emitter_t *e, int host, int guest) { op_mem(e, 0, 1, 0x89, host, RBX, GPR(guest)); }

static void mov_imm(emitter_t *e, int reg, uint64_t v)
{
    if (v <= UINT32_MAX) {            /* mov r32, imm32 (zero-extends) */
        rex(e, 0, 0, reg);
        byte(e, (uint8_t)(0xb8 + (reg & 7)));
        dword(e, (uint32_t)v);
    } else if (fits_i32((int64_t)v)) { /* mov r/m64, imm32 (sign-extends) */
        op_reg(e, 1, 0xc7, 0, reg);
        dword(e, (uint32_t)v);
    } else {
        rex(e, 1, 0, reg);
        byte(e, (uint8_t)(0xb8 + (reg & 7)));
        qword(e, v);
    }
}

/* mov reg, imm64 with the immediate to be filled in; returns where it goes */
static uint8_t *mov_imm64(emitter_t *e, int reg)
{
    rex(e, 1, 0, reg);
    byte(e, (uint8_t)(0xb8 + (reg & 7)));
    uint8_t *at = e->p;
    qword(e, 0);
    return at;
}

static void store_imm32(emitter_t *e, int32_t field, uint32_t v)
{
    op_mem(e, 0, 0, 0xc7, 0, RBX, field);
    dword(e, v);
}

/* RAX = R12 + k (a RIP of the block) */
static void block_rip(emitter_t *e, int reg, int32_t k)
{
    op_mem(e, 0, 1, 0x8d, reg, R12, k);
}

static void call_abs(emitter_t *e, const void *fn)
{
    mov_imm(e, RAX, (uint64_t)(uintptr_t)fn);
    byte(e, 0xff);
    byte(e, 0xd0);
}

/* a forward jump (rel32) to patch once its target is known */
static uint8_t *jump_forward(emitter_t *e, int cc)
{
    if (cc < 0) {
        byte(e, 0xe9);
    } else {
        byte(e, 0x0f);
        byte(e, (uint8_t)(0x80 + cc));
    }
    dword(e, 0);
    return e->p;
}

static void land(emitter_t *e, uint8_t *after_jump)
{
    int32_t rel = (int32_t)(e->p - after_jump);
    memcpy(after_jump - 4, &rel, 4);
}

static void add_retired(emitter_t *e, uint8_t count)
{
    op_mem(e, 0, 1, 0x81, 0, RBX, CPU_FIELD(retired));   /* add qword [retired], count */
    dword(e, count);
}

static void epilogue(emitter_t *e)
{
    byte(e, 0x41); byte(e, 0x5d);   /* pop r13 */
    byte(e, 0x41); byte(e, 0x5c);   /* pop r12 */
    byte(e, 0x5b);                  /* pop rbx */
    byte(e, 0xc3);
}

/* Leave the block: RAX holds the RIP, `count` guest instructions retired. */
static void leave_block(emitter_t *e, uint8_t count)
{
    add_retired(e, count);
    epilogue(e);
}

/* An exit to a RIP the block knows, start + k (wrapped to `size` bytes), may go on
 * straight into the compiled block there, by a jump that jit_link patches in once that
 * block is compiled.  Only within the page of the block's start: a block at the same
 * page offset of another linear page is the same code (the page's physical address is
 * what both were found by), so the jump holds for every linear address the block runs
 * at, while the page is unwritten (its generation word is checked) and nothing waits
 * for a block boundary (run_loop's checks, taken together: anything pending returns). */
static void static_exit(emitter_t *e, const block_t *b, int64_t k, uint8_t count, int size)
{
    block_rip(e, RAX, (int32_t)k);
    if (size == 4)
        op_reg(e, 0, 0x89, RAX, RAX);            /* mov eax, eax */
    else if (size == 2)
        op_reg(e, 0, 0x0fb7, RAX, RAX);          /* movzx eax, ax */
    add_retired(e, count);
    int64_t in_page = (int64_t)(b->hpa & 0xfff) + k;
    if (in_page < 0 || in_page >= (int64_t)PAGE_SIZE) {
        epilogue(e);
        return;
    }
    uint8_t *wrapped = NULL;   /* a 16- or 32-bit RIP that wrapped is no longer start + k */
    if (size != 8) {
        block_rip(e, RCX, (int32_t)k);
        op_reg(e, 1, 0x39, RCX, RAX);                                /* cmp rax, rcx */
        wrapped = jump_forward(e, 5);
    }
    /* the boundary controls that can act (run.c's boundary_controls_armed): a window
     * exit cannot while the guest blocks what it waits for */
    op_mem(e, 0, 0, 0x8b, RCX, RBX, CPU_FIELD(boundary_controls));
    op_mem(e, 0, 0, 0xf7, 0, RBX, CPU_FIELD(rflags));                /* test dword, IF */
    dword(e, F_IF);
    uint8_t *interruptible = jump_forward(e, 5);
    op_reg(e, 0, 0x81, 4, RCX);                                      /* and ecx, ~window */
    dword(e, ~CPU_INTR_WINDOW_EXITING);
    land(e, interruptible);
    op_mem(e, 0, 0, 0xf7, 0, RBX, CPU_FIELD(interruptibility));      /* test dword, NMI */
    dword(e, 8);
    uint8_t *nmi_open = jump_forward(e, 4);
    op_reg(e, 0, 0x81, 4, RCX);
    dword(e, ~CPU_NMI_WINDOW_EXITING);
    land(e, nmi_open);
    op_mem(e, 0, 0, 0x0b, RCX, RBX, CPU_FIELD(kicked));              /* or ecx, [..] */
    op_mem(e, 0, 0, 0x0b, RCX, RBX, CPU_FIELD(activity));
    op_mem(e, 0, 0, 0x0b, RCX, RBX, CPU_FIELD(stop_block));
    op_mem(e, 0, 0, 0x8b, RDX, RBX, CPU_FIELD(interruptibility));
    op_reg(e, 0, 0x81, 4, RDX);                                      /* and edx, 3 */
    dword(e, 3);
    op_reg(e, 0, 0x09, RDX, RCX);                                    /* or ecx, edx */
    op_mem(e, 0, 0, 0x0fb6, RDX, RBX, CPU_FIELD(dbg_exec));          /* movzx edx, byte */
    op_reg(e, 0, 0x09, RDX, RCX);
    uint8_t *pending = jump_forward(e, 5);                           /* jnz */
    op_mem(e, 0, 0, 0xf7, 0, RBX, CPU_FIELD(rflags));                /* test dword, RF | TF */
    dword(e, F_RF | F_TF);
    uint8_t *stepping = jump_forward(e, 5);
    mov_imm(e, RCX, (uint64_t)(uintptr_t)b->code_word);
    op_mem(e, 0, 0, 0x81, 7, RCX, 0);                                /* cmp dword [rcx], gen */
    dword(e, b->gen);
    uint8_t *written = jump_forward(e, 5);
    op_reg(e, 1, 0x89, RAX, R12);                                    /* mov r12, rax */
    uint8_t *link = jump_forward(e, -1);      /* to the next instruction until linked */
    uint8_t *record_ref = mov_imm64(e, RCX);   /* the record, below */
    op_mem(e, 0, 1, 0x89, RCX, RBX, CPU_FIELD(jit_unlinked));
    land(e, pending);
    land(e, stepping);
    land(e, written);
    if (wrapped)
        land(e, wrapped);
    epilogue(e);
    while ((uintptr_t)e->p & 7)
        byte(e, 0xcc);                        /* int3: never reached, aligns the record */
    struct jit_link record = { link, b, (b->hpa & PAGE_MASK) + (uint64_t)in_page };
    uint64_t at = (uint64_t)(uintptr_t)e->p;
    memcpy(record_ref, &at, 8);
    memcpy(e->p, &record, sizeof(record));
    e->p += sizeof(record);
}

/* Leave at the instruction after `in` if the handler asked to stop the block. */
static void leave_if_stopped(emitter_t *e, const insn_t *in)
{
    op_mem(e, 0, 0, 0x83, 7, RBX, CPU_FIELD(stop_block));   /* cmp dword [stop_block], 0 */
    byte(e, 0);
    uint8_t *go_on = jump_forward(e, 4);   /* je */
    block_rip(e, RAX, in->rip_off + in->len);
    leave_block(e, in->guest_count);
    land(e, go_on);
}

/* RIP of the instruction, for a fault or VM exit in it */
static void store_rip(emitter_t *e, const insn_t *in)
{
    block_rip(e, RAX, in->rip_off);
    op_mem(e, 0, 1, 0x89, RAX, RBX, CPU_FIELD(rip));
}

/* An entry that calls its handler, as run.c's loop would run it. */
static void call_handler(emitter_t *e, const insn_t *in, int last)
{
    if (in->kind != INSN_PLAIN)
        store_rip(e, in);
    if (in->kind == INSN_FULL) {
        block_rip(e, RAX, in->rip_off + in->len);
        op_mem(e, 0, 1, 0x89, RAX, RBX, CPU_FIELD(next_rip));
    }
    op_reg(e, 1, 0x89, RBX, RDI);           /* mov rdi, rbx */
    mov_imm(e, RSI, (uint64_t)(uintptr_t)in);
    call_abs(e, (const void *)in->fn);
    if (in->kind == INSN_FULL) {
        /* a changed next_rip is a control transfer: leave there */
        block_rip(e, RCX, in->rip_off + in->len);
        op_mem(e, 0, 1, 0x8b, RAX, RBX, CPU_FIELD(next_rip));
        op_reg(e, 1, 0x39, RCX, RAX);        /* cmp rax, rcx */
        uint8_t *same = jump_forward(e, 4);
        leave_block(e, in->guest_count);
        land(e, same);
    }
    if (in->kind != INSN_PLAIN && !last)
        leave_if_stopped(e, in);
}

/* the host opcode (r/m, reg form) of an ALU operation; CMP computes as SUB and TEST as
 * AND, whose results the lazy flags keep */
static unsigned alu_opcode(int alu)
{
    static const uint8_t opcodes[9] = { 0x01, 0x09, 0, 0, 0x21, 0x29, 0x31, 0x29, 0x21 };
    return opcodes[alu];
}

static int alu_writes(int alu) { return alu != 7 && alu != 8; }

static int alu_lazy_op(int alu)
{
    switch (alu) {
    case 0: return LF_ADD;
    case 5: case 7: return LF_SUB;
    default: return LF_LOGIC;
    }
}

/* a OP b with the lazy flags (unless `nf`): a in RAX, b in RCX, the result in RDX and
 * written to register `dest` if the operation writes; the host's flags are those of
 * the operation */
static void alu_core(emitter_t *e, fast_form_t f, int nf, int dest)
{
    int w = f.size == 8;
    op_reg(e, w, 0x89, RAX, RDX);                /* mov rdx, rax */
    /* OP rdx, rcx; of bytes (compares only: the operands are zero-extended, and so is
     * the result), OP dl, cl: the flags are the byte operation's */
    op_reg(e, w, alu_opcode(f.alu) - (f.size == 1), RCX, RDX);
    if (!nf) {
        int lazy = alu_lazy_op(f.alu);
        store_imm32(e, CPU_FIELD(lf_op), (uint32_t)lazy);
        store_imm32(e, CPU_FIELD(lf_size), f.size);
        op_mem(e, 0, 1, 0x89, RDX, RBX, CPU_FIELD(lf_res));
        if (lazy != LF_LOGIC) {
            op_mem(e, 0, 1, 0x89, RAX, RBX, CPU_FIELD(lf_a));
            op_mem(e, 0, 1, 0x89, RCX, RBX, CPU_FIELD(lf_b));
        }
    }
    if (alu_writes(f.alu))
        store_gpr(e, RDX, dest);
}

/* the immediate operand as the handler reads it, (T)i->imm */
static void load_imm(emitter_t *e, int reg, const insn_t *in, int size)
{
    mov_imm(e, reg, in->imm & size_mask(size));
}

/* a register operand of `size` bytes, zero-extended (bytes: AL..R15B) */
static void load_operand(emitter_t *e, int host, int guest, int size)
{
    if (size == 1)
        op_mem(e, 0, 0, 0x0fb6, host, RBX, GPR(guest));   /* movzx r32, byte [gpr] */
    else
        load_gpr(e, size == 8, host, guest);
}

/* register dest OP= register or immediate */
static void alu_inline(emitter_t *e, const insn_t *in, fast_form_t f, int from_imm, int nf)
{
    if (nf && !alu_writes(f.alu))
        return;
    load_operand(e, RAX, in->rm, f.size);
    if (from_imm)
        load_imm(e, RCX, in, f.size);
    else
        load_operand(e, RCX, in->reg, f.size);
    alu_core(e, f, nf, in->rm);
}

/* Taken, the block is left at the branch's target. */
static void branch_inline(emitter_t *e, const block_t *b, const insn_t *in, int cc)
{
    uint8_t *not_taken = jump_forward(e, cc ^ 1);
    static_exit(e, b, in->rip_off + in->len + (int64_t)in->imm2, in->guest_count, in->branch_size);
    land(e, not_taken);
}

/* a compare fused with its branch */
static void fused_inline(emitter_t *e, const block_t *b, const insn_t *in, fast_form_t f)
{
    alu_inline(e, in, f, f.shape == FS_FUSED_RI, 0);
    branch_inline(e, b, in, f.cc);
}

/* JMP rel: always leaves */
static void jmp_inline(emitter_t *e, const block_t *b, const insn_t *in)
{
    static_exit(e, b, in->rip_off + in->len + (int64_t)in->imm, in->guest_count, in->opsize);
}

static int condition(cpu_t *cpu, int cc) { return cond_true(cpu, cc); }

/* Jcc on the lazy flags: taken, it leaves */
static void jcc_inline(emitter_t *e, const block_t *b, const insn_t *in, fast_form_t f)
{
    op_reg(e, 1, 0x89, RBX, RDI);                /* mov rdi, rbx */
    mov_imm(e, RSI, f.cc);
    call_abs(e, (const void *)condition);
    op_reg(e, 0, 0x85, RAX, RAX);                /* test eax, eax */
    uint8_t *not_taken = jump_forward(e, 4);     /* jz */
    static_exit(e, b, in->rip_off + in->len + (int64_t)in->imm, in->guest_count, in->opsize);
    land(e, not_taken);
}

/* RDX = the effective address (core.h's ea_of): base or the next RIP, plus index <<
 * scale, plus disp, wrapped to the address size */
static void effective_address(emitter_t *e, const insn_t *in)
{
    if (in->base == 0xfe)
        block_rip(e, RDX, in->rip_off + in->len);
    else if (in->base != 0xff)
        load_gpr(e, 1, RDX, in->base);
    else
        mov_imm(e, RDX, 0);
    if (in->index != 0xff) {
        load_gpr(e, 1, RCX, in->index);
        if (in->scale) {
            op_reg(e, 1, 0xc1, 4, RCX);          /* shl rcx, scale */
            byte(e, in->scale);
        }
        op_reg(e, 1, 0x01, RCX, RDX);            /* add rdx, rcx */
    }
    if (in->disp) {
        if (fits_i32(in->disp)) {
            op_reg(e, 1, 0x81, 0, RDX);          /* add rdx, imm32 */
            dword(e, (uint32_t)in->disp);
        } else {
            mov_imm(e, RCX, (uint64_t)in->disp);
            op_reg(e, 1, 0x01, RCX, RDX);
        }
    }
    if (in->addrsize == 4)
        op_reg(e, 0, 0x89, RDX, RDX);            /* mov edx, edx */
    else if (in->addrsize == 2)
        op_reg(e, 0, 0x0fb7, RDX, RDX);          /* movzx edx, dx */
}

static void lea_inline(emitter_t *e, const insn_t *in)
{
    effective_address(e, in);
    if (in->opsize == 4)
        op_reg(e, 0, 0x89, RDX, RDX);            /* mov edx, edx */
    store_gpr(e, RDX, in->reg);
}

/* A load or store of mem_read/mem_write's fast path (core.h): the offset in RDX, a
 * store's value in R8.  Returns the jumps to its slow path. */
static void tlb_fast_path(emitter_t *e, int seg, int size, int write, uint8_t *slow[3])
{
    uint32_t seg_bit = (write ? 0x100u : 1u) << seg;
    op_mem(e, 0, 0, 0xf7, 0, RBX, CPU_FIELD(seg_unchecked));   /* test dword [..], bit */
    dword(e, seg_bit);
    slow[0] = jump_forward(e, 4);                                /* je slow */
    op_reg(e, 1, 0x89, RDX, RAX);                                /* mov rax, rdx */
    op_mem(e, 0, 1, 0x03, RAX, RBX, CPU_FIELD(seg_fast_base) + 8 * seg);
    op_mem(e, 0, 1, 0x23, RAX, RBX, CPU_FIELD(lin_mask));
    op_reg(e, 0, 0x89, RAX, RCX);                                /* mov ecx, eax */
    op_reg(e, 0, 0xc1, 5, RCX);                                  /* shr ecx, 12 */
    byte(e, 12);
    op_reg(e, 0, 0x81, 4, RCX);                                  /* and ecx, TLB_SIZE - 1 */
    dword(e, TLB_SIZE - 1);
    op_reg(e, 0, 0x69, RCX, RCX);                                /* imul ecx, ecx, sizeof */
    dword(e, (uint32_t)sizeof(tlb_entry_t));
    op_mem(e, 0, 1, 0x03, RCX, RBX, CPU_FIELD(tlb_cpl));         /* add rcx, [tlb_cpl] */
    op_reg(e, 1, 0x89, RAX, RSI);                                /* mov rsi, rax */
    op_reg(e, 1, 0x81, 4, RSI);                                  /* and rsi, PAGE_MASK */
    dword(e, (uint32_t)PAGE_MASK);
    op_mem(e, 0, 1, 0x3b, RSI, RCX, write ? (int32_t)offsetof(tlb_entry_t, tag_write)
                                          : (int32_t)offsetof(tlb_entry_t, tag_read));
    slow[1] = jump_forward(e, 5);                                /* jne slow */
    slow[2] = NULL;
    if (size > 1) {                                              /* within the page */
        op_reg(e, 0, 0x89, RAX, RSI);                            /* mov esi, eax */
        op_reg(e, 0, 0x81, 4, RSI);                              /* and esi, 0xfff */
        dword(e, 0xfff);
        op_reg(e, 0, 0x81, 7, RSI);                              /* cmp esi, 0x1000 - size */
        dword(e, (uint32_t)(0x1000 - size));
        slow[2] = jump_forward(e, 7);                            /* ja slow */
    }
    op_mem(e, 0, 1, 0x03, RAX, RCX, (int32_t)offsetof(tlb_entry_t, addend));
}

/* A load (its value in RAX, zero-extended) or a store (of R8) of `size` bytes at offset
 * RDX of segment `seg` */
static void access_at_rdx(emitter_t *e, int seg, int size, int write)
{
    uint8_t *slow[3];
    tlb_fast_path(e, seg, size, write, slow);
    if (write) {
        static const unsigned store_ops[9] = { [1] = 0x88, [2] = 0x89, [4] = 0x89, [8] = 0x89 };
        op_mem(e, size == 2 ? 0x66 : 0, size == 8, store_ops[size], R8, RAX, 0);
    } else {
        static const unsigned load_ops[9] = { [1] = 0x0fb6, [2] = 0x0fb7, [4] = 0x8b, [8] = 0x8b };
        op_mem(e, 0, size == 8, load_ops[size], RAX, RAX, 0);
    }
    uint8_t *done = jump_forward(e, -1);
    for (int k = 0; k < 3; k++)
        if (slow[k])
            land(e, slow[k]);
    op_reg(e, 1, 0x89, RBX, RDI);                                /* mov rdi, rbx */
    mov_imm(e, RSI, (uint64_t)seg);
    mov_imm(e, RCX, (uint64_t)size);
    call_abs(e, write ? (const void *)mem_write_slow : (const void *)mem_read_slow);
    land(e, done);
}

/* A load (its value in RAX) or a store (of register in->reg, or of the immediate) of
 * `size` bytes at the memory operand */
static void memory_access(emitter_t *e, const insn_t *in, int size, int write, int from_imm)
{
    store_rip(e, in);
    effective_address(e, in);
    if (write && from_imm)
        mov_imm(e, R8, in->imm);
    else if (write)
        load_gpr(e, 1, R8, in->reg);
    access_at_rdx(e, in->seg, size, write);
}

/* PUSH of a register, or of CALL's return address (`value_reg` < 0), and POP of a
 * register, in 64-bit mode (mem.c's push and pop: the stack pointer does not wrap) */
static void push_inline(emitter_t *e, const insn_t *in, int value_reg)
{
    store_rip(e, in);
    load_gpr(e, 1, RDX, R_SP);
    op_reg(e, 1, 0x81, 5, RDX);                                  /* sub rdx, 8 */
    dword(e, 8);
    if (value_reg >= 0)
        load_gpr(e, 1, R8, value_reg);   /* PUSH RSP pushes the old value */
    else
        block_rip(e, R8, in->rip_off + in->len);
    access_at_rdx(e, S_SS, 8, 1);
    op_mem(e, 0, 1, 0x81, 5, RBX, GPR(R_SP));                    /* sub qword [rsp], 8 */
    dword(e, 8);
}

static void pop_inline(emitter_t *e, const insn_t *in)
{
    store_rip(e, in);
    load_gpr(e, 1, RDX, R_SP);
    access_at_rdx(e, S_SS, 8, 0);
    op_mem(e, 0, 1, 0x81, 0, RBX, GPR(R_SP));                    /* add qword [rsp], 8 */
    dword(e, 8);
    store_gpr(e, RAX, in->rm);           /* POP RSP: the value popped */
}

static void memory_inline(emitter_t *e, const insn_t *in, fast_form_t f, int last)
{
    int write = f.shape != FS_LOAD;
    memory_access(e, in, f.size, write, f.shape == FS_STORE_IMM);
    if (!write)
        store_gpr(e, RAX, in->reg);
    if (!last)
        leave_if_stopped(e, in);   /* the slow path's access may have asked for it */
}

/* ALU operations with a memory operand that only read it (rm: reg OP= [mem]; mr and
 * mi: [mem] compared with reg or imm), alone or fused with their branch */
static void alu_memory_inline(emitter_t *e, const block_t *b, const insn_t *in, fast_form_t f, int last)
{
    memory_access(e, in, f.size, 0, 0);
    switch (f.shape) {
    case FS_ALU_RM: case FS_FUSED_RM:
        op_reg(e, 1, 0x89, RAX, RCX);            /* b = [mem] */
        load_operand(e, RAX, in->reg, f.size);
        break;
    case FS_ALU_MR: case FS_FUSED_MR:
        load_operand(e, RCX, in->reg, f.size);
        break;
    default:                                     /* FS_FUSED_MI */
        load_imm(e, RCX, in, f.size);
        break;
    }
    alu_core(e, f, 0, in->reg);
    if (f.shape == FS_FUSED_RM || f.shape == FS_FUSED_MR || f.shape == FS_FUSED_MI)
        branch_inline(e, b, in, f.cc);   /* taken, it leaves whether or not stopped */
    if (!last)
        leave_if_stopped(e, in);
}

/* register forms without flags: shift by a constant, IMUL, INC/DEC, MOVZX, MOVSXD */
static void register_inline(emitter_t *e, const insn_t *in, fast_form_t f)
{
    int w = f.size == 8;
    switch (f.shape) {
    case FS_SHIFT_NF:
        load_gpr(e, w, RAX, in->rm);
        op_reg(e, w, 0xc1, f.alu, RAX);                          /* shl/shr/sar rax, imm8 */
        byte(e, (uint8_t)(in->imm & (w ? 63 : 31)));
        store_gpr(e, RAX, in->rm);
        break;
    case FS_IMUL_NF:
        load_gpr(e, w, RAX, in->reg);
        op_mem(e, 0, w, 0x0faf, RAX, RBX, GPR(in->rm));          /* imul rax, [rm] */
        store_gpr(e, RAX, in->reg);
        break;
    case FS_INCDEC_NF:
        load_gpr(e, w, RAX, in->rm);
        op_reg(e, w, 0xff, f.alu, RAX);                          /* inc/dec rax */
        store_gpr(e, RAX, in->rm);
        break;
    case FS_MOVZX_RR:
        op_mem(e, 0, 0, f.size == 1 ? 0x0fb6 : 0x0fb7, RAX, RBX, GPR(in->rm));
        store_gpr(e, RAX, in->reg);
        break;
    case FS_MOVSX_RR:
        op_mem(e, 0, 1, 0x63, RAX, RBX, GPR(in->rm));            /* movsxd rax, dword [rm] */
        store_gpr(e, RAX, in->reg);
        break;
    }
}

static void compile_entry(emitter_t *e, const block_t *b, const insn_t *in, int last)
{
    fast_form_t f = fast_form(in->fn);
    switch (f.shape) {
    case FS_ALU_RR: case FS_ALU_RI: case FS_ALU_RR_NF: case FS_ALU_RI_NF:
        alu_inline(e, in, f, f.shape == FS_ALU_RI || f.shape == FS_ALU_RI_NF,
                   f.shape == FS_ALU_RR_NF || f.shape == FS_ALU_RI_NF);
        return;
    case FS_FUSED_RR: case FS_FUSED_RI:
        fused_inline(e, b, in, f);
        return;
    case FS_JMP:
        jmp_inline(e, b, in);
        return;
    case FS_JCC:
        jcc_inline(e, b, in, f);
        return;
    case FS_SHIFT_NF: case FS_IMUL_NF: case FS_INCDEC_NF: case FS_MOVZX_RR: case FS_MOVSX_RR:
        register_inline(e, in, f);
        return;
    case FS_PUSH: case FS_POP:
        if (f.shape == FS_PUSH)
            push_inline(e, in, in->rm);
        else
            pop_inline(e, in);
        if (!last)
            leave_if_stopped(e, in);
        return;
    case FS_CALL:
        if (b->mode != 8 || in->opsize != 8)
            break;
        push_inline(e, in, -1);
        static_exit(e, b, in->rip_off + in->len + (int64_t)in->imm, in->guest_count, 8);
        return;
    case FS_MOV_RR:
        load_gpr(e, f.size == 8, RAX, in->reg);
        store_gpr(e, RAX, in->rm);
        return;
    case FS_MOV_RI:
        mov_imm(e, RAX, in->imm & size_mask(in->opsize));
        store_gpr(e, RAX, in->rm);
        return;
    case FS_LEA:
        lea_inline(e, in);
        return;
    case FS_STORE:
        if (in->reg >= REG_HIGH_BYTE)
            break;   /* AH..BH: the handler's reg_read */
        /* fall through */
    case FS_LOAD: case FS_STORE_IMM:
        memory_inline(e, in, f, last);
        return;
    case FS_ALU_RM: case FS_ALU_MR: case FS_FUSED_RM: case FS_FUSED_MR: case FS_FUSED_MI:
        alu_memory_inline(e, b, in, f, last);
        return;
    }
    call_handler(e, in, last);
}

/* PYHV_PERF_MAP=1: each compiled block is named in /tmp/perf-PID.map, the symbol file
 * perf reads for JIT code, so that `perf top -p PID` shows which guest code is hot */
static FILE *perf_map;
static pthread_once_t perf_map_once = PTHREAD_ONCE_INIT;

static void open_perf_map(void)
{
    const char *on = getenv("PYHV_PERF_MAP");
    if (on && *on && strcmp(on, "0")) {
        char path[64];
        snprintf(path, sizeof(path), "/tmp/perf-%d.map", (int)getpid());
        perf_map = fopen(path, "a");
    }
}

int jit_init(cpu_t *cpu)
{
    pthread_once(&perf_map_once, open_perf_map);
    void *p = mmap(NULL, JIT_ARENA_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    /* without executable memory (a hardened host) every block stays interpreted;
     * PYHV_NO_JIT=1 asks for that, to compare */
    cpu->jit_arena = p == MAP_FAILED ? NULL : p;
    cpu->jit_used = 0;
    cpu->jit_full = 0;
    const char *off = getenv("PYHV_NO_JIT");
    cpu_set_jit_threshold(cpu, off && *off && strcmp(off, "0") ? 0 : JIT_HOT_RUNS);
    return cpu->jit_arena != NULL;
}

void cpu_set_jit_threshold(cpu_t *cpu, uint32_t runs)
{
    cpu->jit_hot_runs = cpu->jit_arena ? runs : 0;
}

void jit_free(cpu_t *cpu)
{
    if (cpu->jit_arena)
        munmap(cpu->jit_arena, JIT_ARENA_SIZE);
    cpu->jit_arena = NULL;
}

/* The blocks are dropped whole (run.c's block_space), their code with them. */
void jit_reset(cpu_t *cpu)
{
    jit_stats_t *st = &cpu->jit_stats;
    if (st->blocks)
        st->flushes++;
    st->blocks = st->compiled = st->guest_bytes = st->guest_max = st->linked = 0;
    cpu->jit_used = 0;
    cpu->jit_full = 0;
    cpu->jit_unlinked = NULL;
}

void cpu_jit_stats(cpu_t *cpu, jit_stats_t *out)
{
    *out = cpu->jit_stats;
    out->code_size = cpu->jit_used;
    out->code_capacity = cpu->jit_arena ? JIT_ARENA_SIZE : 0;
    out->threshold = cpu->jit_hot_runs;
}

/* The exit compiled code just left by leads to `to`: jump there directly from now on
 * (the same page and mode, compiled, of the same page generation). */
void jit_link(cpu_t *cpu, block_t *to)
{
    struct jit_link *l = cpu->jit_unlinked;
    cpu->jit_unlinked = NULL;
    if (!to->jit || to->hpa != l->target_hpa || to->mode != l->from->mode || to->gen != l->from->gen)
        return;
    int32_t rel = (int32_t)((uint8_t *)(uintptr_t)to->jit + JIT_PROLOGUE - l->jump_end);
    memcpy(l->jump_end - 4, &rel, 4);
    cpu->jit_stats.linked++;
}

void jit_compile(cpu_t *cpu, block_t *b, uint64_t start)
{
    if (!cpu->jit_arena || cpu->jit_full)
        return;
    /* room for the prologue and one more entry, checked before each entry */
    const uint8_t *limit = cpu->jit_arena + JIT_ARENA_SIZE - JIT_ENTRY_MAX;
    emitter_t e = { cpu->jit_arena + cpu->jit_used };
    uint8_t *code = e.p;
    byte(&e, 0x53);                      /* push rbx */
    byte(&e, 0x41); byte(&e, 0x54);      /* push r12 */
    byte(&e, 0x41); byte(&e, 0x55);      /* push r13: the stack stays 16-byte aligned */
    op_reg(&e, 1, 0x89, RDI, RBX);       /* mov rbx, rdi */
    op_reg(&e, 1, 0x89, RSI, R12);       /* mov r12, rsi */

    for (uint32_t k = 0; k <= b->n; k++) {
        if (e.p > limit) {
            cpu->jit_full = 1;   /* the blocks are dropped at the next build: it stays interpreted */
            return;
        }
        if (k < b->n)
            compile_entry(&e, b, &b->insns[k], k + 1 == b->n);
    }
    const insn_t *end = &b->insns[b->n - 1];
    static_exit(&e, b, end->rip_off + end->len, end->guest_count, 8);
    cpu->jit_used = ((size_t)(e.p - cpu->jit_arena) + 15) & ~(size_t)15;
    uint64_t guest = end->rip_off + end->len;
    cpu->jit_stats.compiled++;
    cpu->jit_stats.guest_bytes += guest;
    if (guest > cpu->jit_stats.guest_max)
        cpu->jit_stats.guest_max = guest;
    if (perf_map) {
        fprintf(perf_map, "%lx %lx guest RIP %#llx (vCPU %d, %llu bytes at host-physical %#llx)\n",
                (unsigned long)(uintptr_t)code, (unsigned long)(e.p - code), (unsigned long long)start,
                cpu->apic_id, (unsigned long long)guest, (unsigned long long)b->hpa);
        fflush(perf_map);
    }
    __atomic_store_n(&b->jit, (jit_code_t)(uintptr_t)code, __ATOMIC_RELEASE);
}
