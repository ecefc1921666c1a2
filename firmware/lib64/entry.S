/*
 * Entry of the 64-bit guest kernels.  They are flat binaries with a Multiboot header
 * that uses the address fields ("a.out kludge"), so QEMU's and pyhv's Multiboot
 * loaders both accept them.  The loader enters _start in 32-bit protected mode; this
 * code identity-maps the first 1 GiB with 2 MiB pages, enables PAE and long mode,
 * and calls
 *     void kmain64(uint32_t magic, uint32_t mbi);
 * in 64-bit mode.  If it returns, the CPU halts.
 */

#define MB_HEADER_MAGIC     0x1BADB002
#define MB_FLAG_MEMORY_INFO (1 << 1)
#define MB_FLAG_ADDRESSES   (1 << 16)
#define MB_HEADER_FLAGS     (MB_FLAG_MEMORY_INFO | MB_FLAG_ADDRESSES)
#define STACK_SIZE          (16 * 1024)
#define EFER_MSR            0xC0000080
#define EFER_LME            (1 << 8)
#define CR4_PAE             (1 << 5)
#define CR0_PG_PE           0x80000001
#define PAGE_PRESENT_RW     0x3
#define PAGE_LARGE          0x80

        .section .multiboot, "a"
        .balign 4
multiboot_header:
        .long MB_HEADER_MAGIC
        .long MB_HEADER_FLAGS
        .long -(MB_HEADER_MAGIC + MB_HEADER_FLAGS)
        .long multiboot_header      /* header_addr */
        .long __load_start          /* load_addr */
        .long __load_end            /* load_end_addr */
        .long __bss_end             /* bss_end_addr */
        .long _start                /* entry_addr */

        .section .text
        .code32
        .globl _start
_start:
        cli
        cld
        movl    %eax, %edi              /* kmain64's arguments (SysV: rdi, rsi) */
        movl    %ebx, %esi
        movl    $pdpt + PAGE_PRESENT_RW, pml4
        movl    $pd + PAGE_PRESENT_RW, pdpt
        xorl    %ecx, %ecx
1:      movl    %ecx, %eax
        shll    $21, %eax
        orl     $(PAGE_PRESENT_RW | PAGE_LARGE), %eax
        movl    %eax, pd(, %ecx, 8)
        incl    %ecx
        cmpl    $512, %ecx
        jne     1b
        movl    $pml4, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $CR4_PAE, %eax
        movl    %eax, %cr4
        movl    $EFER_MSR, %ecx
        rdmsr
        orl     $EFER_LME, %eax
        wrmsr
        movl    %cr0, %eax
        orl     $CR0_PG_PE, %eax
        movl    %eax, %cr0
        lgdt    gdt_pointer
        ljmp    $0x08, $long_mode

        .code64
long_mode:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    %ax, %fs
        movw    %ax, %gs
        movq    $stack_top, %rsp
        movl    %edi, %edi              /* upper halves are undefined after the switch */
        movl    %esi, %esi
        call    kmain64
halt_forever:
        cli
        hlt
        jmp     halt_forever

        .section .rodata
        .balign 8
gdt:
        .quad   0
        .quad   0x00af9a000000ffff      /* 0x08: 64-bit code */
        .quad   0x00cf92000000ffff      /* 0x10: data */
gdt_end:
gdt_pointer:
        .word   gdt_end - gdt - 1
        .long   gdt

        .section .bss
        .balign 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4096
        .balign 16
        .skip STACK_SIZE
stack_top:

        .section .note.GNU-stack, "", @progbits
