/* Shared by the C and assembly halves of the longmode kernel. */
#ifndef PYHV_FW_LM_H
#define PYHV_FW_LM_H

/* GDT: 0x08 32-bit ring-0 code and 0x10 ring-0 data as in lib/desc.h, then */
#define SEL_TSS64      0x28     /* 16 bytes: two slots */
#define SEL_KCODE64    0x38     /* STAR[47:32]: SYSCALL's CS, */
#define SEL_KDATA64    0x40     /*   and SS = CS + 8 */
#define SEL_UCODE32    0x48     /* STAR[63:48]: SYSRET's 32-bit CS, */
#define SEL_UDATA_LM      0x50     /*   SS = base + 8, */
#define SEL_UCODE64    0x58     /*   64-bit CS = base + 16 */

#define VEC_IST   0x90          /* interrupt gate on IST1 */
#define VEC_PLAIN 0x91          /* interrupt gate without IST */

/* 4 KiB test pages at 4 MiB (identity-mapped physical frames) */
#define USER_PAGE       0x400000
#define SUPERVISOR_PAGE 0x401000
#define NOT_PRESENT_PAGE 0x402000
#define XD_PAGE         0x403000

#endif
