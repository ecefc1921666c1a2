/*
 * Catching exceptions in the 32-bit test kernels.
 *
 * trap_init() points every IDT vector at a stub (lib/trap_entry.S) that saves the
 * registers and calls the recorder, which notes what the processor pushed (vector,
 * error code, EIP, CS, EFLAGS, and ESP/SS after a privilege change) and CR2, then
 * resumes at `trap_resume`.  A test runs the instruction under test with TRY():
 *
 *     TRY("div0", FLAGS, "divl %%ecx", : : "a"(1), "d"(0), "c"(0));
 *
 * which loads EFLAGS, marks the instruction's address (trap_site) and the address
 * after it (trap_resume), executes it, and prints one line:
 *
 *     div0: #0 err=- eip=+0 cs=0x08 fl=0x00000002
 *     int3: #3 err=- eip=+1 cs=0x08 fl=0x00000002
 *     mov ds: #13 err=0x0038 eip=+0 cs=0x08 fl=0x00000002
 *     nop: none
 *
 * "eip=+N" is the pushed EIP relative to the instruction (+0 for a fault, its length
 * for a trap); "fl" is the pushed EFLAGS without RF (QEMU never sets RF for a fault:
 * a kernel reports RF on a line of its own); a page fault adds " cr2=0x...".
 * An exception with no armed TRY is reported and ends the kernel.
 */
#ifndef PYHV_FW_TRAP_H
#define PYHV_FW_TRAP_H

#include <stdint.h>

struct trap_frame {
    uint32_t gs, fs, es, ds;
    uint32_t edi, esi, ebp, esp_at_pusha, ebx, edx, ecx, eax;
    uint32_t vector, error;
    uint32_t eip, cs, eflags;
    uint32_t esp, ss;          /* pushed only on a privilege change */
};

struct trap_record {
    uint32_t count;            /* exceptions since trap_arm() */
    uint32_t vector, error, has_error;
    uint32_t eip, cs, eflags, esp, ss;
    uint32_t cr2;
    uint32_t handler_eflags;   /* EFLAGS inside the handler (IF shows the gate type) */
    uint32_t handler_esp;      /* ESP at the handler's entry, before anything is pushed */
};

extern volatile struct trap_record trap;
extern volatile uint32_t trap_site, trap_resume;
/* Called (when set) with each recorded exception before the recorder resumes. */
extern void (*volatile trap_hook)(struct trap_frame *f);
/* The stubs, one per vector, for tests that build their own gates. */
extern void (*const trap_stubs[256])(void);

/* IDT entries for all 256 vectors: ring-0 interrupt gates to the stubs. */
void trap_init(void);
/* Interrupts: a vector with a handler runs it (with the frame) and returns to the
 * interrupted code, instead of being recorded as an exception. NULL removes it. */
void trap_set_handler(int vector, void (*handler)(struct trap_frame *f));
void trap_arm(void);
/* Print "NAME: ..." for the last TRY. */
void trap_report(const char *name);
/* Called by the stubs. */
void trap_dispatch(struct trap_frame *f);

#define TRAP_STR_(x) #x
#define TRAP_STR(x) TRAP_STR_(x)

/* Run INSN (an asm string) with EFLAGS = FL (a constant) and report what it raised.
 * The variable arguments are the asm operand lists, starting with the colon:
 *     TRY("div0", 0x2, "divl %%ecx", : : "a"(1), "d"(0), "c"(0) : "memory");  */
#define TRY(name, fl, insn, ...)                                               \
    do {                                                                       \
        trap_arm();                                                            \
        __asm__ volatile("pushl $" TRAP_STR(fl) "\n\tpopfl\n\t"              \
                         "movl $1f, trap_site\n\t"                            \
                         "movl $2f, trap_resume\n"                             \
                         "1:\n\t" insn "\n2:" __VA_ARGS__);                    \
        trap_report(name);                                                     \
    } while (0)

#endif
