/* Shared by the C and assembly halves of the realmode kernel. */
#ifndef PYHV_FW_RM_H
#define PYHV_FW_RM_H

#define RM_BASE    0x7000       /* where the real-mode code is copied */
#define RM_SEG     0x0700       /* its real-mode segment */
#define SEL_CODE16 0x30         /* 16-bit protected-mode code, base RM_BASE, 64 KiB */
#define SEL_DATA16 0x38         /* 16-bit data, base RM_BASE, 64 KiB */
#define VEC_RM_INT 0x30         /* the INT n real mode calls */
#define HIGH_MARK_ADDR 0x10ffe0 /* FFFF:FFF0, above 1 MiB */
#define SEG_MARK_ADDR  0x12350  /* 1234:0010 */

#endif
