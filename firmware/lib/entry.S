/*
 * Multiboot v1 entry point shared by every pyhv guest kernel.
 *
 * The loader (QEMU's -kernel, GRUB, or pyhv) enters _start in 32-bit protected
 * mode with paging off, EAX = 0x2BADB002 and EBX = physical address of the
 * multiboot_info structure.  We set up our own stack and call
 *     void kmain(uint32_t magic, struct multiboot_info *mbi);
 * If kmain returns, the CPU halts with interrupts disabled.
 */

#define MB_HEADER_MAGIC     0x1BADB002
#define MB_FLAG_PAGE_ALIGN  (1 << 0)    /* modules aligned on 4 KiB boundaries */
#define MB_FLAG_MEMORY_INFO (1 << 1)    /* pass mem_lower/mem_upper and the mmap */
#define MB_HEADER_FLAGS     (MB_FLAG_PAGE_ALIGN | MB_FLAG_MEMORY_INFO)
#define MB_HEADER_CHECKSUM  (-(MB_HEADER_MAGIC + MB_HEADER_FLAGS))

#define STACK_SIZE          (16 * 1024)

        .section .multiboot, "a"
        .balign 4
multiboot_header:
        .long MB_HEADER_MAGIC
        .long MB_HEADER_FLAGS
        .long MB_HEADER_CHECKSUM

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        cld
        movl    $stack_top, %esp
        xorl    %ebp, %ebp              /* terminate frame-pointer chains */
        subl    $8, %esp                /* keep %esp 16-byte aligned at the call */
        pushl   %ebx                    /* struct multiboot_info *mbi */
        pushl   %eax                    /* uint32_t magic */
        call    kmain
        addl    $16, %esp
halt_forever:
        cli
        hlt
        jmp     halt_forever
        .size _start, . - _start

        .section .bss
        .balign 16
stack_bottom:
        .skip STACK_SIZE
stack_top:

        .section .note.GNU-stack, "", @progbits
