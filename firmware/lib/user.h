/*
 * Running a function at CPL 3 from a 32-bit protected-mode kernel.
 *
 * user_call(fn, stack_top, eflags) enters FN at CPL 3 through IRET (CS = SEL_UCODE | 3,
 * SS = DS = ES = FS = GS = SEL_UDATA | 3, ESP = STACK_TOP, EFLAGS as given) and
 * returns once FN returns: FN's return address is a ring-3 stub that executes
 * INT USER_RETURN_VECTOR through a DPL-3 gate, whose handler restores the kernel's
 * registers.  Interrupts and exceptions at CPL 3 switch to the stack user_call ran on
 * (tss.esp0), so the trap recorder (trap.h) works for ring-3 code too.  With paging,
 * FN, its stack and what it touches must be user pages.  Needs gdt_install().
 */
#ifndef PYHV_FW_USER_H
#define PYHV_FW_USER_H

#define USER_RETURN_VECTOR 0xfe

#ifndef __ASSEMBLER__
#include <stdint.h>

void user_call(void (*fn)(void), void *stack_top, uint32_t eflags);
#endif

#endif
