/* The SCI entry (IRQ 9 on the slave PIC): count it, mask the PM timer's enable so the
 * level-triggered request goes away, EOI both PICs. */
        .text
        .globl sci_entry
sci_entry:
        pushl   %eax
        pushl   %edx
        incl    sci_count
        movw    $0x602, %dx             /* PM1a_EN: TMR_EN off */
        xorl    %eax, %eax
        outw    %ax, %dx
        movb    $0x20, %al
        outb    %al, $0xa0
        outb    %al, $0x20
        popl    %edx
        popl    %eax
        iret

        .section .note.GNU-stack, "", @progbits
