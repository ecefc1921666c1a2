/* The arithmetic of the emulated x87 and SSE units runs on the host's own units (the
 * host is x86-64, whose x87 and SSE formats are the guest's): each operation is a tiny
 * stub holding the very instruction in a register form, entered through a trampoline
 * that loads the guest's operands (and for x87 the whole FXSAVE image) into the host
 * registers, runs it with the guest's control words and all host exceptions masked,
 * and stores the results and flags back.  Rounding, precision control, denormals,
 * NaN propagation and exception flags are therefore exactly the processor's.
 *
 * Stub conventions: SIMD destination xmm1/mm1, source xmm2/mm2 (ModRM 0xCA), implicit
 * XMM0 (BLENDV, PCMPxSTRM) in xmm0; general-purpose results in RAX (ModRM reg 0) and
 * inputs from RAX (ModRM rm 0); PCMPESTRx lengths in RAX/RDX and the index in RCX. */
#include "exec.h"
#include "fpu_host.h"

__asm__(
    ".text\n"
    /* void simd_host_call(const void *stub, struct simd_regs *r) */
    ".type simd_host_call, @function\n"
    "simd_host_call:\n"
    "  push %rbx\n  sub $16, %rsp\n  stmxcsr (%rsp)\n  mov %rsi, %rbx\n"
    "  ldmxcsr 96(%rbx)\n"
    "  movdqu (%rbx), %xmm0\n  movdqu 16(%rbx), %xmm1\n  movdqu 32(%rbx), %xmm2\n"
    "  mov 64(%rbx), %rax\n  mov 72(%rbx), %rcx\n  mov 80(%rbx), %rdx\n"
    "  call *%rdi\n"
    "  pushfq\n  popq 88(%rbx)\n"
    "  movdqu %xmm0, (%rbx)\n  movdqu %xmm1, 16(%rbx)\n"
    "  mov %rax, 64(%rbx)\n  mov %rcx, 72(%rbx)\n  mov %rdx, 80(%rbx)\n"
    "  stmxcsr 96(%rbx)\n  ldmxcsr (%rsp)\n  add $16, %rsp\n  pop %rbx\n  ret\n"
    /* the same with mm1/mm2 (MMX forms and the MMX conversions) */
    ".type simd_host_call_mmx, @function\n"
    "simd_host_call_mmx:\n"
    "  push %rbx\n  sub $16, %rsp\n  stmxcsr (%rsp)\n  mov %rsi, %rbx\n"
    "  ldmxcsr 96(%rbx)\n"
    "  movdqu 16(%rbx), %xmm1\n  movdqu 32(%rbx), %xmm2\n"
    "  movq 48(%rbx), %mm1\n  movq 56(%rbx), %mm2\n  mov 64(%rbx), %rax\n"
    "  call *%rdi\n"
    "  pushfq\n  popq 88(%rbx)\n"
    "  movdqu %xmm1, 16(%rbx)\n  movq %mm1, 48(%rbx)\n  mov %rax, 64(%rbx)\n  emms\n"
    "  stmxcsr 96(%rbx)\n  ldmxcsr (%rsp)\n  add $16, %rsp\n  pop %rbx\n  ret\n"
    /* void x87_host_call(struct fxsave_image *img, void *mem, const void *stub,
     *                    uint64_t *rflags): the whole x87 state goes through the host */
    ".type x87_host_call, @function\n"
    "x87_host_call:\n"
    "  push %rbx\n  sub $16, %rsp\n  fnstcw (%rsp)\n  stmxcsr 4(%rsp)\n  mov %rcx, %rbx\n"
    "  fxrstor64 (%rdi)\n  pushq (%rbx)\n  popfq\n"
    "  call *%rdx\n"
    "  pushfq\n  popq (%rbx)\n  fxsave64 (%rdi)\n  fninit\n  fldcw (%rsp)\n  ldmxcsr 4(%rsp)\n"
    "  add $16, %rsp\n  pop %rbx\n  ret\n"

    /* [prefix] 0F op /r (xmm1, xmm2) for the four mandatory prefixes */
    ".macro PYHV_STUBS_0F pfx\n"
    "  .set pyhv_n, 0\n"
    "  .rept 256\n"
    "    .balign 8\n"
    "    .if \\pfx\n    .byte \\pfx\n    .endif\n"
    "    .byte 0x0f, pyhv_n, 0xca, 0xc3\n"
    "    .set pyhv_n, pyhv_n + 1\n"
    "  .endr\n"
    ".endm\n"
    ".macro PYHV_STUBS_0F38 pfx\n"
    "  .set pyhv_n, 0\n"
    "  .rept 256\n"
    "    .balign 8\n"
    "    .if \\pfx\n    .byte \\pfx\n    .endif\n"
    "    .byte 0x0f, 0x38, pyhv_n, 0xca, 0xc3\n"
    "    .set pyhv_n, pyhv_n + 1\n"
    "  .endr\n"
    ".endm\n"
    /* [prefix] 0F [3A] op /r ib for every immediate */
    ".macro PYHV_STUBS_IMM pfx, map, op, count\n"
    "  .set pyhv_n, 0\n"
    "  .rept \\count\n"
    "    .balign 8\n"
    "    .if \\pfx\n    .byte \\pfx\n    .endif\n"
    "    .if \\map\n    .byte 0x0f, \\map, \\op, 0xca, pyhv_n, 0xc3\n"
    "    .else\n    .byte 0x0f, \\op, 0xca, pyhv_n, 0xc3\n    .endif\n"
    "    .set pyhv_n, pyhv_n + 1\n"
    "  .endr\n"
    ".endm\n"
    ".balign 64\n"
    "simd_stubs_0f:\n"
    "  PYHV_STUBS_0F 0\n  PYHV_STUBS_0F 0x66\n  PYHV_STUBS_0F 0xf3\n  PYHV_STUBS_0F 0xf2\n"
    ".balign 8\nsimd_stubs_0f38:\n"
    "  PYHV_STUBS_0F38 0\n  PYHV_STUBS_0F38 0x66\n"
    ".balign 8\nsimd_stubs_cmp:\n"
    "  PYHV_STUBS_IMM 0, 0, 0xc2, 8\n  PYHV_STUBS_IMM 0x66, 0, 0xc2, 8\n"
    "  PYHV_STUBS_IMM 0xf3, 0, 0xc2, 8\n  PYHV_STUBS_IMM 0xf2, 0, 0xc2, 8\n"
    ".balign 8\nsimd_stubs_3a:\n"
    "  PYHV_STUBS_IMM 0, 0x3a, 0x0f, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x08, 256\n  PYHV_STUBS_IMM 0x66, 0x3a, 0x09, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x0a, 256\n  PYHV_STUBS_IMM 0x66, 0x3a, 0x0b, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x0c, 256\n  PYHV_STUBS_IMM 0x66, 0x3a, 0x0d, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x0e, 256\n  PYHV_STUBS_IMM 0x66, 0x3a, 0x0f, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x40, 256\n  PYHV_STUBS_IMM 0x66, 0x3a, 0x41, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x42, 256\n  PYHV_STUBS_IMM 0x66, 0x3a, 0x60, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x61, 256\n  PYHV_STUBS_IMM 0x66, 0x3a, 0x62, 256\n"
    "  PYHV_STUBS_IMM 0x66, 0x3a, 0x63, 256\n"
    /* conversions between XMM and general registers: F3/F2, REX.W 0/1, 2A/2C/2D */
    ".balign 8\nsimd_stubs_cvt:\n"
    "  .balign 8\n  .byte 0xf3, 0x0f, 0x2a, 0xc8, 0xc3\n"
    "  .balign 8\n  .byte 0xf3, 0x0f, 0x2c, 0xc2, 0xc3\n"
    "  .balign 8\n  .byte 0xf3, 0x0f, 0x2d, 0xc2, 0xc3\n"
    "  .balign 8\n  .byte 0xf3, 0x48, 0x0f, 0x2a, 0xc8, 0xc3\n"
    "  .balign 8\n  .byte 0xf3, 0x48, 0x0f, 0x2c, 0xc2, 0xc3\n"
    "  .balign 8\n  .byte 0xf3, 0x48, 0x0f, 0x2d, 0xc2, 0xc3\n"
    "  .balign 8\n  .byte 0xf2, 0x0f, 0x2a, 0xc8, 0xc3\n"
    "  .balign 8\n  .byte 0xf2, 0x0f, 0x2c, 0xc2, 0xc3\n"
    "  .balign 8\n  .byte 0xf2, 0x0f, 0x2d, 0xc2, 0xc3\n"
    "  .balign 8\n  .byte 0xf2, 0x48, 0x0f, 0x2a, 0xc8, 0xc3\n"
    "  .balign 8\n  .byte 0xf2, 0x48, 0x0f, 0x2c, 0xc2, 0xc3\n"
    "  .balign 8\n  .byte 0xf2, 0x48, 0x0f, 0x2d, 0xc2, 0xc3\n"
    /* x87: D8+n>>6 C0+n&63 (register forms) and D8+n>>3 /n&7 [rsi] (memory forms) */
    ".balign 64\n"
    "x87_stubs_reg:\n"
    "  .set pyhv_n, 0\n"
    "  .rept 512\n"
    "    .balign 4\n    .byte 0xd8 + (pyhv_n >> 6), 0xc0 + (pyhv_n & 63), 0xc3\n"
    "    .set pyhv_n, pyhv_n + 1\n"
    "  .endr\n"
    ".balign 4\nx87_stubs_mem:\n"
    "  .set pyhv_n, 0\n"
    "  .rept 64\n"
    "    .balign 4\n    .byte 0xd8 + (pyhv_n >> 3), ((pyhv_n & 7) << 3) | 6, 0xc3\n"
    "    .set pyhv_n, pyhv_n + 1\n"
    "  .endr\n"
    ".balign 8\n");

void simd_host_call(const void *stub, struct simd_regs *r);
void simd_host_call_mmx(const void *stub, struct simd_regs *r);
void x87_host_call(struct fxsave_image *img, void *mem, const void *stub, uint64_t *rflags);
extern const uint8_t simd_stubs_0f[4][256][8];
extern const uint8_t simd_stubs_0f38[2][256][8];
extern const uint8_t simd_stubs_cmp[4][8][8];
extern const uint8_t simd_stubs_3a[16][256][8];
extern const uint8_t simd_stubs_cvt[2][2][3][8];
extern const uint8_t x87_stubs_reg[512][4];
extern const uint8_t x87_stubs_mem[64][4];

void simd_host_0f(int pfx, uint8_t op, struct simd_regs *r)
{
    simd_host_call(simd_stubs_0f[pfx][op], r);
}

void simd_host_0f38(int pfx, uint8_t op, struct simd_regs *r)
{
    simd_host_call(simd_stubs_0f38[pfx == SIMD_66][op], r);
}

void mmx_host_0f(uint8_t op, struct simd_regs *r)
{
    simd_host_call_mmx(simd_stubs_0f[SIMD_NONE][op], r);
}

void mmx_host_0f38(uint8_t op, struct simd_regs *r)
{
    simd_host_call_mmx(simd_stubs_0f38[0][op], r);
}

void simd_host_cmp(int pfx, uint8_t imm, struct simd_regs *r)
{
    simd_host_call(simd_stubs_cmp[pfx][imm & 7], r);
}

/* rows of simd_stubs_3a after the MMX PALIGNR row */
static const uint8_t ops_3a[15] = { 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
                                    0x40, 0x41, 0x42, 0x60, 0x61, 0x62, 0x63 };

int simd_host_has_3a(uint8_t op)
{
    for (int k = 0; k < 15; k++)
        if (ops_3a[k] == op)
            return k + 1;
    return 0;
}

void simd_host_3a(int pfx, uint8_t op, uint8_t imm, struct simd_regs *r)
{
    if (pfx == SIMD_NONE) {
        simd_host_call_mmx(simd_stubs_3a[0][imm], r);   /* PALIGNR mm */
        return;
    }
    simd_host_call(simd_stubs_3a[simd_host_has_3a(op)][imm], r);
}

void simd_host_cvt(int pfx, int w, uint8_t op, struct simd_regs *r)
{
    simd_host_call(simd_stubs_cvt[pfx == SIMD_F2][w][op == 0x2a ? 0 : op == 0x2c ? 1 : 2], r);
}

void mmx_host_cvt(uint8_t op, struct simd_regs *r)
{
    simd_host_call_mmx(simd_stubs_0f[SIMD_NONE][op], r);
}

void mmx_host_cvt66(uint8_t op, struct simd_regs *r)
{
    simd_host_call_mmx(simd_stubs_0f[SIMD_66][op], r);
}

uint64_t x87_host(struct fxsave_image *img, uint8_t opcode, uint8_t modrm, void *mem,
                  uint64_t rflags)
{
    uint64_t f = rflags & F_ARITH;
    if (modrm >= 0xc0)
        x87_host_call(img, mem, x87_stubs_reg[((opcode & 7) << 6) | (modrm & 63)], &f);
    else
        x87_host_call(img, mem, x87_stubs_mem[((opcode & 7) << 3) | ((modrm >> 3) & 7)], &f);
    return f;
}
