#include "trap.h"
#include "debug_exit.h"
#include "desc.h"
#include "serial.h"

#define EFLAGS_RF 0x10000

/* debug_exit code of a kernel that took an exception no TRY expected */
#define UNEXPECTED_EXCEPTION_EXIT 0x7e

volatile struct trap_record trap;
volatile uint32_t trap_site, trap_resume;
void (*volatile trap_hook)(struct trap_frame *f);
static void (*volatile handlers[256])(struct trap_frame *f);

static int pushes_error_code(uint32_t v)
{
    return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 || v == 29 || v == 30;
}

void trap_init(void)
{
    for (int v = 0; v < 256; v++)
        idt_set(v, trap_stubs[v], SEL_KCODE, GATE_INT32);
    idt_install(sizeof(idt) - 1);
}

void trap_set_handler(int vector, void (*handler)(struct trap_frame *f))
{
    handlers[vector] = handler;
}

void trap_arm(void)
{
    trap.count = 0;
    trap_site = trap_resume = 0;
}

void trap_dispatch(struct trap_frame *f)
{
    if (handlers[f->vector]) {
        handlers[f->vector](f);
        return;
    }
    uint32_t flags, cs;
    __asm__ volatile("pushfl; popl %0; movl %%cs, %1" : "=r"(flags), "=r"(cs));
    trap.count++;
    trap.vector = f->vector;
    trap.has_error = pushes_error_code(f->vector);
    trap.error = f->error;
    trap.eip = f->eip;
    trap.cs = f->cs;
    trap.eflags = f->eflags;
    trap.handler_eflags = flags;
    trap.handler_esp = (uint32_t)(trap.has_error ? &f->error : &f->eip);
    /* ESP and SS were pushed only if the handler runs at a higher privilege */
    int stack_switch = (f->cs & 3) != (cs & 3);
    trap.esp = stack_switch ? f->esp : 0;
    trap.ss = stack_switch ? f->ss : 0;
    if ((cs & 3) == 0 && f->vector == 14)
        __asm__ volatile("movl %%cr2, %0" : "=r"(trap.cr2));
    if (trap_hook)
        trap_hook(f);
    if (!trap_resume) {
        printf("unexpected exception #%u err=0x%x eip=0x%08x cs=0x%x\n", f->vector, f->error,
               f->eip, f->cs);
        debug_exit(UNEXPECTED_EXCEPTION_EXIT);
    }
    f->eip = trap_resume;
    trap_resume = 0;
}

void trap_report(const char *name)
{
    if (trap.count == 0) {
        printf("%s: none\n", name);
        return;
    }
    printf("%s: #%u", name, trap.vector);
    if (trap.has_error)
        printf(" err=0x%04x", trap.error);
    else
        printf(" err=-");
    if (trap.eip >= trap_site)
        printf(" eip=+%u", trap.eip - trap_site);
    else
        printf(" eip=-%u", trap_site - trap.eip);
    printf(" cs=0x%02x fl=0x%08x", trap.cs, trap.eflags & ~EFLAGS_RF);
    if (trap.vector == 14)
        printf(" cr2=0x%08x", trap.cr2);
    if (trap.count > 1)
        printf(" count=%u", trap.count);
    printf("\n");
}
