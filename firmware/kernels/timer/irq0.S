/* The IRQ 0 entry: count the tick, send a non-specific EOI to the master PIC. */
        .text
        .globl irq0_entry
irq0_entry:
        pushl   %eax
        incl    timer_ticks
        movb    $0x20, %al
        outb    %al, $0x20
        popl    %eax
        iret

        .section .note.GNU-stack, "", @progbits
