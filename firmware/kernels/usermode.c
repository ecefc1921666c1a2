/*
 * usermode: CPL 3 in 32-bit protected mode.  Ring-3 code entered by IRET (lib/user.c)
 * takes interrupts through DPL-3 gates onto the TSS's ring-0 stack, faults on
 * privileged instructions and on ports that neither IOPL nor the TSS I/O bitmap
 * allow, calls a conforming segment, calls ring 0 through call gates (the stack switch
 * with copied parameters, and the gate's and target's checks), and enters and leaves
 * the kernel with SYSENTER/SYSEXIT.  The ring-3 code prints through COM1, whose ports the I/O bitmap
 * allows.  Ends with debug_exit(0x33).
 */
#include <stdint.h>
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "serial.h"
#include "trap.h"
#include "user.h"

#define FL 0x2
#define FL_IF 0x202
#define POST_PORT 0x80

#define SEL_KCODE2      0x30   /* a second ring-0 code segment */
#define SEL_CONFORMING  0x38   /* DPL-0 conforming code */
#define SEL_GATE_RING0  0x40   /* 32-bit call gate, DPL 3, to ring-0 code, 2 parameters */
#define SEL_GATE_DPL0   0x48   /* 32-bit call gate, DPL 0, to the second ring-0 code segment */
#define SEL_GATE_NP     0x50   /* a DPL-3 call gate, not present */
#define SEL_GATE_DATA   0x58   /* a DPL-3 call gate naming a data segment */
#define SEL_GATE_CONF   0x60   /* a DPL-3 call gate to the conforming segment */
#define GATE_CALL32     0x0c   /* the type; present and DPL are set apart */
#define VEC_USER_GATE   0x80   /* DPL 3 */
#define VEC_KERNEL_GATE 0x81   /* DPL 0 */

#define MSR_SYSENTER_CS  0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176

static uint8_t user_stack[8192] __attribute__((aligned(16)));
static uint8_t sysenter_stack[4096] __attribute__((aligned(16)));
#define USER_TOP ((uint32_t)(user_stack + sizeof(user_stack)))
#define SYSENTER_TOP ((uint32_t)(sysenter_stack + sizeof(sysenter_stack)))

/* written by the assembly below */
volatile uint32_t se_esp, se_flags, ts_count, ts_error, far_cs;
volatile uint32_t gate_esp, gate_frame[6], caller_esp, caller_esp_after;
volatile uint16_t gate_cs, gate_ss;
volatile uint16_t se_cs, se_ss;

void sysenter_entry(void);
void ts_handler(void);
void far_target(void);
void gate_target(void);

__asm__(
    /* SYSENTER lands here at CPL 0; SYSEXIT returns to ECX:EDX, which ring 3 set */
    ".globl sysenter_entry\n"
    "sysenter_entry:\n\t"
    "movl %esp, se_esp\n\t"
    "movw %cs, se_cs\n\t"
    "movw %ss, se_ss\n\t"
    "pushfl\n\t"
    "popl se_flags\n\t"
    "sysexit\n"
    /* #TS handler in the conforming segment: it runs at the interrupted CPL 3 on the
     * ring-3 stack, so it needs no TSS stack */
    ".globl ts_handler\n"
    "ts_handler:\n\t"
    "popl ts_error\n\t"
    "incl ts_count\n\t"
    "pushl %eax\n\t"
    "movl trap_resume, %eax\n\t"
    "movl %eax, 4(%esp)\n\t"
    "popl %eax\n\t"
    "iretl\n"
    /* far-call target: note CS, return */
    ".globl far_target\n"
    "far_target:\n\t"
    "movw %cs, far_cs\n\t"
    "lretl\n"
    /* ring-0 end of the ring-3 call gate: note CS, SS, ESP and the frame (EIP, CS, the
     * two parameters, ESP, SS), return past the parameters */
    ".globl gate_target\n"
    "gate_target:\n\t"
    "movw %cs, gate_cs\n\t"
    "movw %ss, gate_ss\n\t"
    "movl %esp, gate_esp\n\t"
    "pushl %ecx\n\t"
    "pushl %esi\n\t"
    "xorl %ecx, %ecx\n"
    "1: movl 8(%esp,%ecx,4), %esi\n\t"
    "movl %esi, gate_frame(,%ecx,4)\n\t"
    "incl %ecx\n\t"
    "cmpl $6, %ecx\n\t"
    "jne 1b\n\t"
    "popl %esi\n\t"
    "popl %ecx\n\t"
    "lretl $8\n");

static void set_call_gate(int index, void (*target)(void), uint16_t sel, int dpl, int params, int present)
{
    uint32_t off = (uint32_t)target;
    gdt[index] = (off & 0xffff) | ((uint64_t)sel << 16) | ((uint64_t)(params & 0x1f) << 32) |
                 ((uint64_t)((present ? 0x80 : 0) | GATE_CALL32 | (dpl << 5)) << 40) |
                 ((uint64_t)(off >> 16) << 48);
}

static void wrmsr(uint32_t msr, uint32_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"(v), "d"(0) : "memory");
}

static uint32_t get_cs(void) { uint32_t v; __asm__ volatile("movl %%cs, %0" : "=r"(v)); return v; }
static uint32_t get_ss(void) { uint32_t v; __asm__ volatile("movl %%ss, %0" : "=r"(v)); return v; }
static uint32_t get_ds(void) { uint32_t v; __asm__ volatile("movl %%ds, %0" : "=r"(v)); return v; }
static uint32_t get_flags(void) { uint32_t v; __asm__ volatile("pushfl; popl %0" : "=r"(v)); return v; }

/* ---- ring 3 ----------------------------------------------------------------- */

static void ring3_interrupts(void)
{
    uint32_t f = get_flags();
    printf("ring 3: cs=0x%02x ss=0x%02x ds=0x%02x if=%u iopl=%u\n", get_cs(), get_ss(), get_ds(),
           (f >> 9) & 1, (f >> 12) & 3);
    TRY("int 0x80 from ring 3", FL_IF, "int $0x80", : :);
    printf("int 0x80 from ring 3: handler esp=esp0-%u if=%u; pushed ss=0x%02x esp=user top-%u\n",
           tss.esp0 - trap.handler_esp, (trap.handler_eflags >> 9) & 1, trap.ss,
           USER_TOP - trap.esp);
    printf("back in ring 3: cs=0x%02x ss=0x%02x\n", get_cs(), get_ss());
    TRY("int 0x81 dpl-0 gate from ring 3", FL, "int $0x81", : :);
    TRY("int3 from ring 3", FL, "int3", : :);
}

static void ring3_privileged(void)
{
    static uint8_t table[6];
    TRY("cli", FL_IF, "cli", : :);
    TRY("sti", FL, "sti", : :);
    TRY("hlt", FL, "hlt", : :);
    TRY("mov from cr0", FL, "movl %%cr0, %%eax", : : : "eax");
    TRY("mov to cr3", FL, "movl %%eax, %%cr3", : : "a"(0));
    TRY("mov from dr7", FL, "movl %%dr7, %%eax", : : : "eax");
    TRY("lgdt", FL, "lgdt %0", : : "m"(table));
    TRY("lidt", FL, "lidt %0", : : "m"(table));
    TRY("sgdt", FL, "sgdt %0", : "=m"(table) :);
    TRY("ltr", FL, "ltr %%ax", : : "a"(SEL_TSS));
    TRY("lldt", FL, "lldt %%ax", : : "a"(0));
    TRY("clts", FL, "clts", : :);
    TRY("invlpg", FL, "invlpg %0", : : "m"(table));
    TRY("rdmsr", FL, "rdmsr", : : "c"(MSR_SYSENTER_CS) : "eax", "edx");
    TRY("wrmsr", FL, "wrmsr", : : "c"(MSR_SYSENTER_CS), "a"(0), "d"(0));
    TRY("rdpmc", FL, "rdpmc", : : "c"(0) : "eax", "edx");
    TRY("wbinvd", FL, "wbinvd", : :);
    TRY("rdtsc", FL, "rdtsc", : : : "eax", "edx");
    TRY("sysexit at cpl 3", FL, "sysexit", : :);
    uint32_t f;
    __asm__ volatile("pushl $0x3202; popfl; pushfl; popl %0" : "=r"(f) : : "cc");
    printf("popf of iopl 3 and if: flags=0x%08x\n", f);
}

static void ring3_io(void)
{
    TRY("in 0x70 iopl 0", FL, "inb $0x70, %%al", : : : "eax");
    TRY("in 0x80 allowed by bitmap", FL, "inb $0x80, %%al", : : : "eax");
    TRY("out 0x80 allowed by bitmap", FL, "outb %%al, $0x80", : : "a"(0));
    TRY("out 0x81 denied by bitmap", FL, "outb %%al, $0x81", : : "a"(0));
    TRY("outw 0x7f half allowed", FL, "outw %%ax, %%dx", : : "a"(0), "d"(0x7f));
    TRY("outw 0x80 straddles denied", FL, "outw %%ax, %%dx", : : "a"(0), "d"(0x80));
}

static void ring3_segments(void)
{
    TRY("mov ds kernel data", FL, "movw %%ax, %%ds", : : "a"(SEL_KDATA));
    TRY("mov ds kernel data rpl3", FL, "movw %%ax, %%ds", : : "a"(SEL_KDATA | 3));
    TRY("mov ss kernel data", FL, "movw %%ax, %%ss", : : "a"(SEL_KDATA));
    TRY("mov ss user data", FL, "movw %%ax, %%ss", : : "a"(SEL_UDATA | 3));
    TRY("lcall conforming", FL, "lcall $0x38, $far_target", : :);
    printf("lcall conforming: cs=0x%02x\n", far_cs);
    TRY("lcall ring-0 code", FL, "lcall $0x08, $far_target", : :);
    TRY("ljmp ring-0 code", FL, "ljmp $0x08, $far_target", : :);
}

static void ring3_call_gates(void)
{
    uint32_t back_cs, back_ss;
    __asm__ volatile("movl %%esp, caller_esp\n\t"
                     "pushl $0x2222\n\tpushl $0x1111\n\t"
                     "lcall $" TRAP_STR(SEL_GATE_RING0) " + 3, $0\n\t"
                     "movl %%esp, caller_esp_after\n\t"      /* LRET $8 released the parameters */
                     "movl %%cs, %0\n\tmovl %%ss, %1"
                     : "=r"(back_cs), "=r"(back_ss) : : "memory");
    uint32_t esp_before = caller_esp - 8;    /* ESP at the LCALL, after the two pushes */
    printf("lcall gate to ring 0: cs=0x%02x ss=0x%02x esp=esp0-%u\n", gate_cs, gate_ss, tss.esp0 - gate_esp);
    printf("lcall gate frame: cs=0x%02x params=0x%x,0x%x esp=caller's-%u ss=0x%02x\n", gate_frame[1],
           gate_frame[2], gate_frame[3], esp_before - gate_frame[4], gate_frame[5]);
    printf("lret $8 to ring 3: cs=0x%02x ss=0x%02x esp=%s\n", back_cs, back_ss,
           caller_esp_after == caller_esp ? "past the parameters" : "wrong");
    TRY("ljmp gate to ring-0 code", FL, "ljmp $" TRAP_STR(SEL_GATE_RING0) " + 3, $0", : :);
    TRY("lcall dpl-0 gate", FL, "lcall $" TRAP_STR(SEL_GATE_DPL0) " + 3, $0", : :);
    TRY("lcall not-present gate", FL, "lcall $" TRAP_STR(SEL_GATE_NP) " + 3, $0", : :);
    TRY("lcall gate to data", FL, "lcall $" TRAP_STR(SEL_GATE_DATA) " + 3, $0", : :);
    far_cs = 0;
    __asm__ volatile("lcall $" TRAP_STR(SEL_GATE_CONF) " + 3, $0" : : : "memory");
    printf("lcall gate to conforming code: cs=0x%02x\n", far_cs);
}

static void ring3_sysenter(void)
{
    uint16_t cs, ss;
    uint32_t f;
    __asm__ volatile("movl %%esp, %%ecx\n\tmovl $1f, %%edx\n\tsysenter\n"
                     "1: movw %%cs, %0\n\tmovw %%ss, %1\n\tpushfl\n\tpopl %2"
                     : "=m"(cs), "=m"(ss), "=r"(f) : : "ecx", "edx", "memory");
    printf("sysenter: cs=0x%02x ss=0x%02x esp=top-%u if=%u\n", se_cs, se_ss,
           SYSENTER_TOP - se_esp, (se_flags >> 9) & 1);
    printf("sysexit: cs=0x%02x ss=0x%02x if=%u\n", cs, ss, (f >> 9) & 1);
}

static void ring3_invalid_tss_stack(void)
{
    TRY("int with null ss0", FL, "int $0x80", : :);
    printf("int with null ss0: #TS count=%u err=0x%04x\n", ts_count, ts_error);
    TRY("lcall gate with null ss0", FL, "lcall $" TRAP_STR(SEL_GATE_RING0) " + 3, $0", : :);
    printf("lcall gate with null ss0: #TS count=%u err=0x%04x\n", ts_count, ts_error);
    tss.ss0 = SEL_UDATA | 3;   /* not the new CPL's */
    TRY("int with rpl-3 ss0", FL, "int $0x80", : :);
    printf("int with rpl-3 ss0: #TS count=%u err=0x%04x\n", ts_count, ts_error);
    /* the way back to ring 0 needs a good stack: without paging the TSS is writable */
    tss.ss0 = SEL_KDATA;
}

/* ---- ring 0 ----------------------------------------------------------------- */

static void far_calls(void)
{
    __asm__ volatile("lcall $0x30, $far_target" : : : "memory");
    printf("lcall ring-0 code: target cs=0x%02x back cs=0x%02x\n", far_cs, get_cs());
    far_cs = 0;
    __asm__ volatile("lcall $" TRAP_STR(SEL_GATE_DPL0) ", $0" : : : "memory");
    printf("lcall dpl-0 gate at ring 0: target cs=0x%02x back cs=0x%02x\n", far_cs, get_cs());
}

/* IRET to CPL 3 from a frame built here; the checks fail before anything is loaded,
 * and the stack is restored after the fault. */
static void iret_to_ring3(const char *name, uint32_t cs, uint32_t ss)
{
    trap_arm();
    __asm__ volatile("pushl $2; popfl\n\t"
                     "movl %%esp, %%ebx\n\t"
                     "movl $1f, trap_site\n\t"
                     "movl $2f, trap_resume\n\t"
                     "pushl %1; pushl %%esp; pushl $2; pushl %0; pushl $2f\n"
                     "1: iretl\n"
                     "2: movl %%ebx, %%esp"
                     : : "r"(cs), "r"(ss) : "ebx", "memory");
    trap_report(name);
}

void kmain(void)
{
    serial_init();
    printf("usermode test\n");
    outb(0x21, 0xff);   /* mask both PICs: ring 3 runs with IF=1 */
    outb(0xa1, 0xff);
    gdt_set(SEL_KCODE2 >> 3, 0, 0xfffff, DA_P | DA_CODE | DA_R, DF_G | DF_DB);
    gdt_set(SEL_CONFORMING >> 3, 0, 0xfffff, DA_P | DA_CODE | DA_R | DA_C, DF_G | DF_DB);
    set_call_gate(SEL_GATE_RING0 >> 3, gate_target, SEL_KCODE, 3, 2, 1);
    set_call_gate(SEL_GATE_DPL0 >> 3, far_target, SEL_KCODE2, 0, 0, 1);
    set_call_gate(SEL_GATE_NP >> 3, far_target, SEL_KCODE, 3, 0, 0);
    set_call_gate(SEL_GATE_DATA >> 3, far_target, SEL_KDATA, 3, 0, 1);
    set_call_gate(SEL_GATE_CONF >> 3, far_target, SEL_CONFORMING, 3, 0, 1);
    gdt_install();
    trap_init();
    idt_set(VEC_USER_GATE, trap_stubs[VEC_USER_GATE], SEL_KCODE, GATE_INT32 | GATE_DPL(3));
    idt_set(VEC_KERNEL_GATE, trap_stubs[VEC_KERNEL_GATE], SEL_KCODE, GATE_INT32);
    for (uint16_t port = COM1_BASE; port < COM1_BASE + 8; port++)
        tss_allow_port(port, 1);
    tss_allow_port(POST_PORT, 1);
    tss_allow_port(0x7f, 1);
    printf("tss: ss0=0x%02x iomap base=0x%x limit=0x%x\n", tss.ss0, tss.iomap_base,
           (uint32_t)sizeof(tss_io) - 1);

    far_calls();
    iret_to_ring3("iret to ring 3 with ring-0 ss", SEL_UCODE | 3, SEL_KDATA);
    iret_to_ring3("iret to ring 3 with ring-0 cs", SEL_KCODE | 3, SEL_UDATA | 3);
    iret_to_ring3("iret to ring 3 with rpl-0 ss", SEL_UCODE | 3, SEL_UDATA);
    user_call(ring3_interrupts, (void *)USER_TOP, FL_IF);
    user_call(ring3_privileged, (void *)USER_TOP, FL);
    user_call(ring3_io, (void *)USER_TOP, FL);
    user_call(ring3_segments, (void *)USER_TOP, FL);
    user_call(ring3_call_gates, (void *)USER_TOP, FL);
    wrmsr(MSR_SYSENTER_CS, SEL_KCODE);
    wrmsr(MSR_SYSENTER_ESP, SYSENTER_TOP);
    wrmsr(MSR_SYSENTER_EIP, (uint32_t)sysenter_entry);
    user_call(ring3_sysenter, (void *)USER_TOP, FL_IF);

    tss.ss0 = 0;
    idt_set(10, ts_handler, SEL_CONFORMING, GATE_INT32);
    user_call(ring3_invalid_tss_stack, (void *)USER_TOP, FL);
    idt_set(10, trap_stubs[10], SEL_KCODE, GATE_INT32);
    printf("back in ring 0: cs=0x%02x ss=0x%02x\n", get_cs(), get_ss());

    printf("usermode test done\n");
    debug_exit(0x33);
}
