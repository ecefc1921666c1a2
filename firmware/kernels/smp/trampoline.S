/*
 * Where the application processors start: a SIPI with vector AP_VECTOR starts them in
 * real mode at AP_VECTOR << 12, where main.c copies ap_trampoline. It loads the kernel's
 * GDT (main.c fills ap_gdtr), enters protected mode and jumps to ap_entry32, which takes
 * the stack main.c prepared for this processor and calls ap_main(). The code between
 * ap_trampoline and ap_trampoline_end runs at the copy, so it addresses its own labels
 * as offsets from ap_trampoline.
 */
#include "desc.h"

#define OFF(x) ((x) - ap_trampoline)

        .section .text
        .globl ap_trampoline, ap_trampoline_end, ap_gdtr, ap_start_state
        .code16
ap_trampoline:
        cli
        movw    %cs, %ax
        movw    %ax, %ds
        movl    %edx, OFF(ap_start_state)       /* the state INIT and the SIPI left */
        movl    %cr0, %eax
        movl    %eax, OFF(ap_start_state) + 4
        movw    %cs, OFF(ap_start_state) + 8
        lgdtl   OFF(ap_gdtr)
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   $SEL_KCODE, $ap_entry32
        .balign 8
ap_gdtr:
        .word   0
        .long   0
        .balign 4
ap_start_state:                                 /* EDX, CR0, CS */
        .long   0, 0
        .word   0
ap_trampoline_end:

        .code32
ap_entry32:
        movw    $SEL_KDATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %fs
        movw    %ax, %gs
        movw    %ax, %ss
        movl    ap_stack_top, %esp
        call    ap_main
1:      cli
        hlt
        jmp     1b

        .section .note.GNU-stack, "", @progbits
