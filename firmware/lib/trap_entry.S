/*
 * One stub per IDT vector (see trap.h).  Each makes the frame uniform by pushing a
 * zero where the processor pushes no error code, pushes its vector, saves the
 * registers and calls trap_dispatch(frame); IRET then resumes wherever the
 * recorder left frame->eip.
 */
#include "desc.h"

        .altmacro

        .macro STUB vec
        .balign 8
trap_stub_\vec:
        .if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
        .else
        pushl   $0
        .endif
        pushl   $\vec
        jmp     trap_common
        .endm

        .macro STUB_ADDRESS vec
        .long trap_stub_\vec
        .endm

        .section .text
        .set vec, 0
        .rept 256
        STUB %vec
        .set vec, vec + 1
        .endr

trap_common:
        pushal
        pushl   %ds
        pushl   %es
        pushl   %fs
        pushl   %gs
        movw    $SEL_KDATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        pushl   %esp                    /* struct trap_frame * */
        call    trap_dispatch
        addl    $4, %esp
        popl    %gs
        popl    %fs
        popl    %es
        popl    %ds
        popal
        addl    $8, %esp                /* vector and error code */
        iretl

        .section .rodata
        .balign 4
        .globl trap_stubs
trap_stubs:
        .set vec, 0
        .rept 256
        STUB_ADDRESS %vec
        .set vec, vec + 1
        .endr

        .section .note.GNU-stack, "", @progbits
