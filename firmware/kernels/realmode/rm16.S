/*
 * The real-mode half of the realmode kernel.  enter_real_mode() goes from 32-bit
 * protected mode through 16-bit protected mode to real mode (SDM Vol. 3 9.9.2), runs
 * the checks below with the real-mode IVT, and returns to protected mode.  The code
 * between rm_blob and rm_blob_end runs at RM_BASE (main.c copies it there), so it
 * addresses its own labels as offsets from rm_blob.
 */
#include "desc.h"
#include "rm.h"

#define OFF(x) ((x) - rm_blob)

        .section .text
        .code32
        .globl enter_real_mode
        .type enter_real_mode, @function
enter_real_mode:
        pushl   %ebp
        pushl   %ebx
        pushl   %esi
        pushl   %edi
        movl    %esp, saved_esp
        ljmp    $SEL_CODE16, $OFF(rm_pm16)
pm_return:                              /* protected mode again, CS = SEL_KCODE */
        movw    $SEL_KDATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %fs
        movw    %ax, %gs
        movw    %ax, %ss
        movl    saved_esp, %esp
        popl    %edi
        popl    %esi
        popl    %ebx
        popl    %ebp
        ret
        .size enter_real_mode, . - enter_real_mode

        .globl rm_blob, rm_blob_end, rm_results, rm_stack_top
rm_blob:
        .code16
rm_pm16:                                /* 16-bit protected mode */
        movw    $SEL_DATA16, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %fs
        movw    %ax, %gs
        movw    %ax, %ss
        movl    %cr0, %eax
        andl    $~1, %eax
        movl    %eax, %cr0
        ljmp    $RM_SEG, $OFF(rm_real)
rm_real:                                /* real mode */
        movw    $RM_SEG, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    $OFF(rm_stack_top), %sp
        lidt    OFF(rm_ivt)
        movw    %cs, OFF(r_cs)
        movw    %ss, OFF(r_ss)
        movl    %cr0, %eax
        movl    %eax, OFF(r_cr0)

        /* 16-bit arithmetic */
        movw    $0x1234, %ax
        movw    $0x5678, %bx
        mulw    %bx
        movw    %ax, OFF(r_mul_lo)
        movw    %dx, OFF(r_mul_hi)
        movb    $0x19, %al
        addb    $0x28, %al
        daa
        movb    %al, OFF(r_daa)

        /* segment arithmetic: base = selector * 16, and past 1 MiB with A20 on */
        pushw   %ds
        movw    $0x1234, %ax
        movw    %ax, %ds
        movl    0x10, %eax
        popw    %ds
        movl    %eax, OFF(r_seg_read)
        pushw   %ds
        movw    $0xffff, %ax
        movw    %ax, %ds
        movl    0xfff0, %eax
        popw    %ds
        movl    %eax, OFF(r_high_read)

        /* INT n through the IVT: FLAGS, CS, IP pushed; IF and TF cleared */
        sti
rm_int_site:
        int     $VEC_RM_INT
rm_int_next:
        cli
        movw    $OFF(rm_int_next), OFF(r_int_expected_ip)
        /* exceptions: the handlers skip the 2-byte faulting instruction */
        movb    $0, %bl
rm_de_site:
        divb    %bl
        movw    $OFF(rm_de_site), OFF(r_de_expected_ip)
        arpl    %dx, %ax                /* #UD outside protected mode */
rm_ud_site:
        ud2
        movw    $OFF(rm_ud_site), OFF(r_ud_expected_ip)
        movw    %sp, OFF(r_sp_after)

        /* back to protected mode; GDTR still holds the kernel's GDT */
        movl    %cr0, %eax
        orl     $1, %eax
        movl    %eax, %cr0
        ljmpl   $SEL_KCODE, $pm_return

rm_int_handler:
        pushw   %bp
        movw    %sp, %bp
        movw    2(%bp), %ax
        movw    %ax, OFF(r_int_ip)
        movw    4(%bp), %ax
        movw    %ax, OFF(r_int_cs)
        movw    6(%bp), %ax
        movw    %ax, OFF(r_int_flags)
        pushfw
        popw    %ax
        movw    %ax, OFF(r_int_handler_flags)
        movw    %sp, %ax
        movw    %ax, OFF(r_int_handler_sp)
        popw    %bp
        iret

        .globl rm_de_handler, rm_ud_handler, rm_int_handler
rm_de_handler:
        pushw   %bp
        movw    %sp, %bp
        movw    2(%bp), %ax
        movw    %ax, OFF(r_de_ip)
        addw    $2, 2(%bp)
        popw    %bp
        iret

rm_ud_handler:
        pushw   %bp
        movw    %sp, %bp
        movw    2(%bp), %ax
        movw    %ax, OFF(r_ud_ip)
        incw    OFF(r_ud_count)
        addw    $2, 2(%bp)
        popw    %bp
        iret

        .balign 4
rm_ivt:
        .word   0x3ff                   /* the IVT: 256 four-byte vectors at 0 */
        .long   0
        .balign 4
rm_results:                             /* read by main.c, in this order */
r_cr0:                  .long 0
r_seg_read:             .long 0
r_high_read:            .long 0
r_cs:                   .word 0
r_ss:                   .word 0
r_mul_lo:               .word 0
r_mul_hi:               .word 0
r_daa:                  .word 0
r_int_ip:               .word 0
r_int_expected_ip:      .word 0
r_int_cs:               .word 0
r_int_flags:            .word 0
r_int_handler_flags:    .word 0
r_int_handler_sp:       .word 0
r_de_ip:                .word 0
r_de_expected_ip:       .word 0
r_ud_ip:                .word 0
r_ud_expected_ip:       .word 0
r_ud_count:             .word 0
r_sp_after:             .word 0
        .balign 16
        .skip   512
rm_stack_top:
rm_blob_end:

        .section .bss
        .balign 4
saved_esp:
        .skip 4

        .section .note.GNU-stack, "", @progbits
