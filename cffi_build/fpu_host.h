/* The host's x87 and SSE units as the emulated units' arithmetic (fpu_host.c). */
#ifndef PYHV_FPU_HOST_H
#define PYHV_FPU_HOST_H
#include "fpu.h"

/* Operands of one host SIMD operation (the offsets are the trampoline's). */
struct simd_regs {
    xmm_t x0, x1, x2;          /* 0, 16, 32: implicit XMM0, destination, source */
    uint64_t mm1, mm2;         /* 48, 56: MMX destination and source */
    uint64_t rax, rcx, rdx;    /* 64, 72, 80 */
    uint64_t rflags;           /* 88: out */
    uint32_t mxcsr;            /* 96: in and out */
};

void simd_host_0f(int pfx, uint8_t op, struct simd_regs *r);
void simd_host_0f38(int pfx, uint8_t op, struct simd_regs *r);
void simd_host_cmp(int pfx, uint8_t imm, struct simd_regs *r);
int simd_host_has_3a(uint8_t op);
void simd_host_3a(int pfx, uint8_t op, uint8_t imm, struct simd_regs *r);
/* CVTSI2Sx (0x2a), CVTTSx2SI (0x2c), CVTSx2SI (0x2d) with F3/F2, REX.W w */
void simd_host_cvt(int pfx, int w, uint8_t op, struct simd_regs *r);
void mmx_host_0f(uint8_t op, struct simd_regs *r);
void mmx_host_0f38(uint8_t op, struct simd_regs *r);
void mmx_host_cvt(uint8_t op, struct simd_regs *r);     /* 0F 2A/2C/2D with MMX operands */
void mmx_host_cvt66(uint8_t op, struct simd_regs *r);   /* 66 0F 2A/2C/2D */
/* Run x87 instruction `opcode` `modrm` (memory forms on `mem`) on the image; returns
 * RFLAGS with the arithmetic flags FCOMI/FUCOMI leave (FCMOVcc reads `rflags`). */
uint64_t x87_host(struct fxsave_image *img, uint8_t opcode, uint8_t modrm, void *mem,
                  uint64_t rflags);

#endif
