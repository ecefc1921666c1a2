/*
 * The 64-bit half of the longmode kernel: the 64-bit IDT's stubs and recorder, the
 * bridge from compatibility mode into 64-bit code (long_call), and the checks that
 * must run in 64-bit mode.  The kernel is a 32-bit ELF, so 64-bit code reaches data
 * only through registers loaded with absolute addresses (movl $symbol, %r10d): an
 * ELF32 object cannot hold RIP-relative or 64-bit relocations.
 */
#include "desc.h"
#include "lm.h"

/* the offsets of struct trap_record (lib/trap.h) */
#define T_COUNT 0
#define T_VECTOR 4
#define T_ERROR 8
#define T_HAS_ERROR 12
#define T_EIP 16
#define T_CS 20
#define T_EFLAGS 24
#define T_ESP 28
#define T_SS 32
#define T_CR2 36
#define T_HANDLER_EFLAGS 40
#define T_HANDLER_ESP 44

/* store REG (64-bit) into the 64-bit variable VAR */
        .macro STORE reg, var
        movl    $\var, %r10d
        movq    \reg, (%r10)
        .endm

/* the checks' TRY: EFLAGS = 2 (where CPL allows), note the instruction's address
 * and where to resume */
        .macro ARM site, resume
        pushq   $2
        popfq
        movl    $trap_site, %r10d
        movl    $\site, (%r10)
        movl    $trap_resume, %r10d
        movl    $\resume, (%r10)
        .endm

        .macro STUB vec
        .balign 16
lm_stub_\vec:
        .if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
        pushq   $(0x100 | \vec)         /* the processor pushed an error code */
        .else
        pushq   $0
        pushq   $\vec
        .endif
        jmp     lm_common
        .endm

        .macro STUB_ADDRESS vec
        .long lm_stub_\vec
        .endm

        .section .text
        .code64
        .altmacro
        .set vec, 0
        .rept 256
        STUB %vec
        .set vec, vec + 1
        .endr
        .noaltmacro

/* The stack holds: vector word (has_error << 8 | vector), error code, RIP, CS, RFLAGS,
 * RSP, SS.  Record them in `trap` (and the 64-bit values in lm_*), then resume at
 * trap_resume. */
lm_common:
        pushq   %rax
        pushq   %rcx
        pushq   %rdx
        pushq   %r10
        /* 32(%rsp): vector word, 40: error, 48: RIP, 56: CS, 64: RFLAGS, 72: RSP, 80: SS */
        movl    $trap, %ecx
        incl    T_COUNT(%rcx)
        movq    32(%rsp), %rax
        movl    %eax, %edx
        andl    $0xff, %edx
        movl    %edx, T_VECTOR(%rcx)
        shrl    $8, %eax
        movl    %eax, T_HAS_ERROR(%rcx)
        movq    40(%rsp), %rax
        movl    %eax, T_ERROR(%rcx)
        movq    48(%rsp), %rax
        movl    %eax, T_EIP(%rcx)
        STORE   %rax, lm_rip
        movq    56(%rsp), %rax
        movl    %eax, T_CS(%rcx)
        movq    64(%rsp), %rax
        movl    %eax, T_EFLAGS(%rcx)
        movq    72(%rsp), %rax
        movl    %eax, T_ESP(%rcx)
        STORE   %rax, lm_rsp
        movq    80(%rsp), %rax
        movl    %eax, T_SS(%rcx)
        pushfq
        popq    %rax
        movl    %eax, T_HANDLER_EFLAGS(%rcx)
        xorl    %eax, %eax
        movw    %ss, %ax
        STORE   %rax, lm_handler_ss
        /* RSP at the handler's entry: at the error code if the processor pushed one */
        leaq    48(%rsp), %rax
        cmpl    $0, T_HAS_ERROR(%rcx)
        je      1f
        subq    $8, %rax
1:      movl    %eax, T_HANDLER_ESP(%rcx)
        STORE   %rax, lm_handler_rsp
        cmpl    $14, %edx
        jne     2f
        movq    %cr2, %rax
        movl    %eax, T_CR2(%rcx)
        STORE   %rax, lm_cr2
2:      movl    $trap_resume, %r10d
        movl    (%r10), %eax
        testl   %eax, %eax
        jz      lm_unexpected
        movq    %rax, 48(%rsp)
        movl    $0, (%r10)
        popq    %r10
        popq    %rdx
        popq    %rcx
        popq    %rax
        addq    $16, %rsp
        iretq

/* An exception no check expected: say which, and end the kernel. */
lm_unexpected:
        movl    $unexpected_text, %esi
        movw    $0x3f8, %dx
3:      lodsb
        testb   %al, %al
        jz      4f
        outb    %al, %dx
        jmp     3b
4:      movl    32(%rsp), %ecx
        andl    $0xff, %ecx
        shll    $24, %ecx
        movl    $2, %edi
        call    hex_digits
        movb    $' ', %al
        outb    %al, %dx
        movl    40(%rsp), %ecx          /* error code */
        shll    $16, %ecx
        movl    $4, %edi
        call    hex_digits
        movb    $' ', %al
        outb    %al, %dx
        movl    48(%rsp), %ecx          /* RIP */
        movl    $8, %edi
        call    hex_digits
        movb    $'\n', %al
        outb    %al, %dx
        movb    $0x7e, %al
        outb    %al, $0xf4
5:      hlt
        jmp     5b

/* print the EDI top hex digits of ECX on port DX */
hex_digits:
        roll    $4, %ecx
        movl    %ecx, %eax
        andl    $0xf, %eax
        addb    $'0', %al
        cmpb    $'9', %al
        jbe     6f
        addb    $('a' - '0' - 10), %al
6:      outb    %al, %dx
        decl    %edi
        jnz     hex_digits
        ret

/* ---- from compatibility mode to 64-bit code and back ------------------------------- */

        .code32
        .globl long_call
        .type long_call, @function
/* void long_call(void (*fn)(void)): run the 64-bit function FN at CPL 0. */
long_call:
        pushl   %ebp
        pushl   %ebx
        pushl   %esi
        pushl   %edi
        movl    20(%esp), %eax
        lcall   $SEL_KCODE64, $thunk64
        /* SYSCALL leaves SS = SEL_KDATA64, and a return to ring 3 made the data
         * segment registers null (their DPL is below CPL 3) */
        movw    $SEL_KDATA, %cx
        movw    %cx, %ss
        movw    %cx, %ds
        movw    %cx, %es
        movw    %cx, %fs
        movw    %cx, %gs
        popl    %edi
        popl    %esi
        popl    %ebx
        popl    %ebp
        ret
        .size long_call, . - long_call

        .code64
thunk64:
        movl    %esp, %esp              /* the upper halves are undefined after */
        movl    %eax, %eax              /* compatibility mode: clear them */
        call    *%rax
        lretl                           /* 32-bit far return to compatibility mode */

/* ---- checks in 64-bit mode ----------------------------------------------------------- */

        .globl lm_arith
/* 64-bit arithmetic, results in lm_results[0..] */
lm_arith:
        movl    $lm_results, %edi
        movabsq $0x123456789abcdef0, %rax
        movabsq $0x0fedcba987654321, %rbx
        movq    %rax, %rcx
        addq    %rbx, %rcx
        movq    %rcx, 0(%rdi)           /* add */
        movq    %rax, %rdx
        mulq    %rbx                    /* rdx:rax = 128-bit product */
        movq    %rax, 8(%rdi)
        movq    %rdx, 16(%rdi)
        movabsq $0xfedcba9876543210, %rax
        xorl    %edx, %edx
        movl    $1000003, %ecx
        divq    %rcx
        movq    %rax, 24(%rdi)          /* quotient */
        movq    %rdx, 32(%rdi)          /* remainder */
        movq    $-7, %rax
        cqo
        movq    $2, %rcx
        idivq   %rcx
        movq    %rax, 40(%rdi)          /* -3 */
        movq    %rdx, 48(%rdi)          /* -1 */
        movabsq $0x8000000000000001, %rax
        movq    %rax, %rcx
        sarq    $4, %rax
        movq    %rax, 56(%rdi)
        rolq    $8, %rcx
        movq    %rcx, 64(%rdi)
        movl    $-1, %eax               /* a 32-bit write zero-extends */
        movq    %rax, 72(%rdi)
        movl    $-5, %eax
        movslq  %eax, %rax              /* MOVSXD */
        movq    %rax, 80(%rdi)
        movabsq $0x0000010000000000, %rax
        bsrq    %rax, %rcx
        movq    %rcx, 88(%rdi)
        movabsq $0x1122334455667788, %rax
        bswapq  %rax
        movq    %rax, 96(%rdi)
        movq    $-1, %rax
        movq    $1, %rcx
        addq    %rcx, %rax              /* carry out of bit 63 */
        adcq    $0, %rcx
        movq    %rcx, 104(%rdi)
        movabsq $0xffffffff00000000, %rax
        movl    $0x12345678, %r8d
        leaq    (%rax,%r8,4), %r9
        movq    %r9, 112(%rdi)
        xorl    %eax, %eax
        .byte   0x40                    /* a REX prefix in 64-bit mode, not INC EAX */
        nop
        movq    %rax, 120(%rdi)
        leaq    lm_arith_anchor(%rip), %rax
        movl    $lm_arith_anchor, %ecx
        subq    %rcx, %rax              /* RIP-relative addressing: 0 */
lm_arith_anchor:
        movq    %rax, 128(%rdi)
        ret

        .globl lm_ud2
lm_ud2:
        ARM     1f, 2f
1:      ud2
2:      ret

        .globl lm_push_es
lm_push_es:
        ARM     1f, 2f
1:      .byte   0x06                    /* PUSH ES: invalid in 64-bit mode */
2:      ret

        .globl lm_noncanonical
lm_noncanonical:
        movabsq $0x0000800000000000, %rax
        ARM     1f, 2f
1:      movq    (%rax), %rbx
2:      ret

        .globl lm_noncanonical_stack
lm_noncanonical_stack:
        pushq   %rbp
        movabsq $0x0000800000000000, %rbp
        ARM     1f, 2f
1:      movq    (%rbp), %rbx            /* an SS reference */
2:      popq    %rbp
        ret

        .globl lm_pf_high
lm_pf_high:
        movabsq $0xffff800000001008, %rax
        ARM     1f, 2f
1:      movq    (%rax), %rbx
2:      ret

        .globl lm_fetch_xd
lm_fetch_xd:
        movl    $XD_PAGE, %eax
        ARM     1f, 2f
1:      jmp     *%rax
2:      ret

        .globl lm_int_ist
lm_int_ist:
        ARM     1f, 2f
1:      int     $VEC_IST
2:      ret

        .globl lm_int_misaligned
/* RSP 8 bytes off a 16-byte boundary: the processor aligns it before pushing */
lm_int_misaligned:
        movq    %rsp, %rax
        andq    $~15, %rsp
        pushq   %rax                    /* RSP = 16n - 8 */
        movq    %rsp, %rax
        STORE   %rax, lm_pre_rsp
        ARM     1f, 2f
1:      int     $VEC_PLAIN
2:      popq    %rsp
        ret

/* ---- SYSRET to 64-bit ring 3 and SYSCALL back ---------------------------------------- */

        .globl lm_syscall_round_trip
lm_syscall_round_trip:
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, %rax
        STORE   %rax, lm_kernel_rsp
        movl    $user64, %ecx
        movl    $0x202, %r11d           /* ring 3 runs with IF = 1 */
        movl    $user_stack_top, %eax
        movl    (%rax), %esp
        sysretq

user64:                                 /* CPL 3, 64-bit */
        xorl    %eax, %eax
        movw    %cs, %ax
        STORE   %rax, u_cs
        movw    %ss, %ax
        STORE   %rax, u_ss
        pushfq
        popq    %rax
        STORE   %rax, u_flags
        ARM     1f, 2f
1:      movl    SUPERVISOR_PAGE, %eax   /* #PF from ring 3: the TSS's RSP0 stack */
2:      movl    $0x1234, %edi
        syscall
3:

        .globl syscall_entry
syscall_entry:                          /* CPL 0, still on the ring-3 stack */
        STORE   %rcx, k_rcx
        STORE   %r11, k_r11
        xorl    %eax, %eax
        movw    %cs, %ax
        STORE   %rax, k_cs
        movw    %ss, %ax
        STORE   %rax, k_ss
        pushfq
        popq    %rax
        STORE   %rax, k_flags
        movl    $3b, %eax
        STORE   %rax, k_expected_rcx
        movl    $lm_kernel_rsp, %eax
        movq    (%rax), %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        ret

        .globl lm_sysret_noncanonical
lm_sysret_noncanonical:
        movabsq $0x0000800000000000, %rcx
        movl    $0x2, %r11d
        ARM     1f, 2f
1:      sysretq
2:      ret

        .globl lm_syscall_no_sce
/* SYSCALL needs EFER.SCE */
lm_syscall_no_sce:
        ARM     1f, 2f
1:      syscall
2:      ret

        .section .rodata
unexpected_text:
        .asciz  "unexpected exception (vector error rip) "
        .balign 4
        .globl lm_stubs
lm_stubs:
        .altmacro
        .set vec, 0
        .rept 256
        STUB_ADDRESS %vec
        .set vec, vec + 1
        .endr
        .noaltmacro

        .section .note.GNU-stack, "", @progbits
