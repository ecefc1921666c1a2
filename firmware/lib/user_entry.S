/* user_call (see user.h): into ring 3 by IRET, and back through a DPL-3 gate. */
#include "desc.h"
#include "user.h"

#define TSS_ESP0 4      /* offsetof(struct tss32, esp0) */

        .section .text
        .globl user_call_enter
        .type user_call_enter, @function
/* void user_call_enter(void (*fn)(void), uint32_t *stack, uint32_t eflags): STACK
 * already holds FN's return address (user_return). */
user_call_enter:
        pushl   %ebp
        pushl   %ebx
        pushl   %esi
        pushl   %edi
        movl    %esp, user_kernel_esp
        movl    %esp, tss_io + TSS_ESP0
        movl    20(%esp), %eax
        movl    24(%esp), %ecx
        movl    28(%esp), %edx
        pushl   $(SEL_UDATA | 3)
        pushl   %ecx
        pushl   %edx
        pushl   $(SEL_UCODE | 3)
        pushl   %eax
        movw    $(SEL_UDATA | 3), %bx
        movw    %bx, %ds
        movw    %bx, %es
        movw    %bx, %fs
        movw    %bx, %gs
        iretl
        .size user_call_enter, . - user_call_enter

        .globl user_return
user_return:                            /* CPL 3: FN returned */
        int     $USER_RETURN_VECTOR

        .globl user_return_gate
user_return_gate:                       /* CPL 0, from the INT above */
        movw    $SEL_KDATA, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %fs
        movw    %ax, %gs
        movl    user_kernel_esp, %esp
        popl    %edi
        popl    %esi
        popl    %ebx
        popl    %ebp
        ret

        .section .bss
        .balign 4
user_kernel_esp:
        .skip 4

        .section .note.GNU-stack, "", @progbits
