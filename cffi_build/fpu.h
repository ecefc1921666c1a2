/* The x87 FPU, MMX and SSE state of a logical processor, and the checks every
 * instruction of these units makes before it runs (SDM Vol. 1 ch. 8-12, Vol. 3 ch. 13). */
#ifndef PYHV_FPU_H
#define PYHV_FPU_H
#include <stdint.h>

typedef union xmm {
    uint8_t b[16];
    uint16_t w[8];
    uint32_t d[4];
    uint64_t q[2];
} xmm_t;

/* The state is kept as an FXSAVE image in the 64-bit layout (SDM Vol. 1 Table 10-2):
 * the arithmetic of the x87 and SSE units runs on the host's own units, which load and
 * store exactly this image (fpu_host.c). */
struct fxsave_image {
    uint16_t fcw, fsw;
    uint8_t ftw, rsvd0;        /* abridged tag word: bit n = physical register Rn is valid */
    uint16_t fop;              /* last non-control instruction's opcode (11 bits) */
    uint64_t fip, fdp;         /* its address and its memory operand's offset */
    uint32_t mxcsr, mxcsr_mask;
    struct { uint64_t mant; uint16_t sexp; uint16_t rsvd[3]; } st[8];  /* ST(0)..ST(7) */
    xmm_t xmm[16];
    uint8_t rsvd[96];
} __attribute__((aligned(16)));

struct fpu_state {
    struct fxsave_image fx;
    uint16_t fcs, fds;         /* selectors of FIP and FDP (not in the 64-bit image) */
};

#define FSW_IE 0x1
#define FSW_DE 0x2
#define FSW_ZE 0x4
#define FSW_OE 0x8
#define FSW_UE 0x10
#define FSW_PE 0x20
#define FSW_SF 0x40
#define FSW_ES 0x80
#define FSW_C0 0x100
#define FSW_C1 0x200
#define FSW_C2 0x400
#define FSW_TOP_SHIFT 11
#define FSW_C3 0x4000
#define FSW_B 0x8000

#define MXCSR_FLAGS 0x3f
#define MXCSR_MASKS 0x1f80
#define MXCSR_DEFAULT 0x1f80
#define MXCSR_UM 0x800
#define MXCSR_FTZ 0x8000
#define MXCSR_MASK_SUPPORTED 0xffffu   /* every bit of MXCSR[15:0], DAZ included */

enum { SIMD_NONE, SIMD_66, SIMD_F3, SIMD_F2 };   /* mandatory prefix of an SSE opcode */

#define XCR0_X87 1ull
#define XCR0_SSE 2ull
#define XCR0_SUPPORTED (XCR0_X87 | XCR0_SSE)
#define XSAVE_AREA_SIZE 576            /* legacy region and XSAVE header */

struct cpu;
/* fpu_state.c */
void fpu_reset(struct cpu *cpu);           /* power-up values, SDM Vol. 3 Table 10-1 */
void fpu_fninit(struct cpu *cpu);
/* Device-not-available and emulation checks, and the pending x87 exception (#MF) a
 * waiting instruction reports before it executes. */
void fpu_check_x87(struct cpu *cpu, int waiting);
void fpu_check_sse(struct cpu *cpu);
void fpu_check_mmx(struct cpu *cpu);
/* An MMX instruction, once its operands are read: TOP = 0 (so the image's slot n is
 * MMn), all tags valid. */
void mmx_enter(struct cpu *cpu);
uint64_t mmx_read(struct cpu *cpu, int n);
void mmx_write(struct cpu *cpu, int n, uint64_t v);
/* Record a SIMD floating-point exception result: sets the MXCSR flags and faults (#XM,
 * or #UD without CR4.OSXMMEXCPT) when one of them is unmasked. */
void sse_exceptions(struct cpu *cpu, uint32_t flags);
/* Memory operands of any size; writes check every page first (all or nothing). */
void mem_read_buf(struct cpu *cpu, int seg, uint64_t off, void *buf, int size);
void mem_write_buf(struct cpu *cpu, int seg, uint64_t off, const void *buf, int size);
void mem_check_write(struct cpu *cpu, int seg, uint64_t off, int size);
void mem_check_align(struct cpu *cpu, int seg, uint64_t off, unsigned align);   /* else #GP(0) */
void sse_check_align(struct cpu *cpu, int seg, uint64_t off);
uint16_t fpu_full_tag_word(const struct fxsave_image *fx);
uint8_t fpu_abridged_tags(uint16_t full);

#endif
