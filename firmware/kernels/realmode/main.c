/*
 * realmode: from 32-bit protected mode back to real mode (CR0.PE = 0 through 16-bit
 * protected mode), 16-bit code with the interrupt vector table, and back to protected
 * mode (rm16.S).  Checked: the real-mode segment registers and address computation
 * (selector * 16, beyond 1 MiB with A20), 16-bit arithmetic, INT n and exceptions
 * through the IVT (what they push and what they clear), and ARPL's #UD outside
 * protected mode.  Ends with debug_exit(0x35).
 */
#include <stdint.h>
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "rm.h"
#include "serial.h"
#include "string.h"
#include "trap.h"

struct rm_results {
    uint32_t cr0, seg_read, high_read;
    uint16_t cs, ss, mul_lo, mul_hi, daa;
    uint16_t int_ip, int_expected_ip, int_cs, int_flags, int_handler_flags, int_handler_sp;
    uint16_t de_ip, de_expected_ip, ud_ip, ud_expected_ip, ud_count, sp_after;
} __attribute__((packed));

extern uint8_t rm_blob[], rm_blob_end[], rm_results[];
extern uint8_t rm_int_handler[], rm_de_handler[], rm_ud_handler[], rm_stack_top[];
void enter_real_mode(void);

static uint16_t rm_offset(const uint8_t *label) { return (uint16_t)(label - rm_blob); }

/* The IVT lives at address 0, which C may not dereference. */
static void set_vector(int vec, const uint8_t *handler)
{
    uint32_t entry = (uint32_t)RM_SEG << 16 | rm_offset(handler);
    __asm__ volatile("movl %0, (%1)" : : "r"(entry), "r"(vec * 4) : "memory");
}

void kmain(void)
{
    serial_init();
    printf("realmode test\n");
    outb(0x21, 0xff);   /* real mode runs STI: no interrupt may come */
    outb(0xa1, 0xff);
    gdt_set(SEL_CODE16 >> 3, RM_BASE, 0xffff, DA_P | DA_CODE | DA_R, 0);
    gdt_set(SEL_DATA16 >> 3, RM_BASE, 0xffff, DA_P | DA_DATA | DA_W, 0);
    gdt_install();
    trap_init();

    memcpy((void *)RM_BASE, rm_blob, (size_t)(rm_blob_end - rm_blob));
    set_vector(0, rm_de_handler);
    set_vector(6, rm_ud_handler);
    set_vector(VEC_RM_INT, rm_int_handler);
    *(volatile uint32_t *)SEG_MARK_ADDR = 0x5e65e600;
    *(volatile uint32_t *)HIGH_MARK_ADDR = 0xa20a20a2;

    enter_real_mode();
    idt_install(sizeof(idt) - 1);
    uint32_t cs, cr0;
    __asm__ volatile("movl %%cs, %0; movl %%cr0, %1" : "=r"(cs), "=r"(cr0));
    printf("back in protected mode: cs=0x%02x cr0.pe=%u\n", cs, cr0 & 1);

    const struct rm_results *r = (const struct rm_results *)(RM_BASE + rm_offset(rm_results));
    uint16_t top = rm_offset(rm_stack_top);
    printf("real mode: cr0.pe=%u cs=0x%04x ss=0x%04x\n", r->cr0 & 1, r->cs, r->ss);
    printf("mul 0x1234*0x5678: dx:ax=0x%04x%04x\n", r->mul_hi, r->mul_lo);
    printf("daa 0x19+0x28: 0x%02x\n", r->daa & 0xff);
    printf("read 1234:0010: 0x%08x\n", r->seg_read);
    printf("read ffff:fff0: 0x%08x\n", r->high_read);
    printf("int 0x30: pushed ip=next %u cs=0x%04x flags.if=%u; handler flags.if=%u sp=top-%u\n",
           r->int_ip == r->int_expected_ip, r->int_cs, (r->int_flags >> 9) & 1,
           (r->int_handler_flags >> 9) & 1, (uint16_t)(top - r->int_handler_sp));
    printf("div by zero: pushed ip=div %u\n", r->de_ip == r->de_expected_ip);
    printf("ud2: pushed ip=ud2 %u\n", r->ud_ip == r->ud_expected_ip);
    printf("#UD count (arpl, ud2): %u\n", r->ud_count);
    printf("stack balanced: %u\n", r->sp_after == top);

    printf("realmode test done\n");
    debug_exit(0x35);
}
