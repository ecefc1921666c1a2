/*
 * exceptions: every check runs one instruction that should (or should not) raise an
 * exception in 32-bit protected mode at CPL 0 and prints what the processor
 * delivered: vector, error code, the pushed EIP relative to the instruction, CS and
 * EFLAGS (lib/trap.h).  The same kernel runs under QEMU, and the two outputs must be
 * identical.  Ends with debug_exit(0x31).
 */
#include <stdint.h>
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "multiboot.h"
#include "serial.h"
#include "string.h"
#include "trap.h"

#define FL 0x2          /* EFLAGS for the checks: only the reserved bit */
#define FL_OF 0x802
#define FL_IF 0x202

/* test descriptors */
#define SEL_DATA_NP     0x30   /* data, not present */
#define SEL_CODE_XO     0x38   /* code, execute-only */
#define SEL_DATA_DPL3   0x40   /* data, DPL 3 */
#define SEL_DATA_RO     0x48   /* data, read-only, base 0x200000 limit 0xfff */
#define SEL_STACK_2M    0x50   /* data, writable, limit 2 MiB */
#define SEL_STACK_NP    0x58   /* writable data, not present */
#define SEL_EXPAND_DOWN 0x60   /* expand-down data, limit 0xfff */
#define SEL_KCODE2      0x68   /* a second flat ring-0 code segment */
#define SEL_LDT         0x70   /* an LDT descriptor (a system segment) */

/* test gates */
#define VEC_DPL3_INT   0x80
#define VEC_TRAP       0x81
#define VEC_NP         0x82
#define VEC_CALL_GATE  0x83
#define VEC_DATA_SEL   0x84
#define VEC_NULL_SEL   0x85
#define VEC_BEYOND     0xf0

static void set_descriptors(void)
{
    gdt_set(SEL_DATA_NP >> 3, 0, 0xfffff, DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_CODE_XO >> 3, 0, 0xfffff, DA_P | DA_CODE, DF_G | DF_DB);
    gdt_set(SEL_DATA_DPL3 >> 3, 0, 0xfffff, DA_P | DA_DPL(3) | DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_DATA_RO >> 3, 0x200000, 0xfff, DA_P | DA_DATA, DF_DB);
    gdt_set(SEL_STACK_2M >> 3, 0, 0x1ff, DA_P | DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_STACK_NP >> 3, 0, 0xfffff, DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_EXPAND_DOWN >> 3, 0, 0xfff, DA_P | DA_DATA | DA_W | DA_E, DF_DB);
    gdt_set(SEL_KCODE2 >> 3, 0, 0xfffff, DA_P | DA_CODE | DA_R, DF_G | DF_DB);
    gdt_set(SEL_LDT >> 3, 0, 0xff, DA_P | 0x2, 0);
}

static void set_gates(void)
{
    idt_set(VEC_DPL3_INT, trap_stubs[VEC_DPL3_INT], SEL_KCODE, GATE_INT32 | GATE_DPL(3));
    idt_set(VEC_TRAP, trap_stubs[VEC_TRAP], SEL_KCODE, GATE_TRAP32);
    idt_set(VEC_NP, trap_stubs[VEC_NP], SEL_KCODE, GATE_INT32 & ~0x80);
    idt_set(VEC_CALL_GATE, trap_stubs[VEC_CALL_GATE], SEL_KCODE, 0x8c);
    idt_set(VEC_DATA_SEL, trap_stubs[VEC_DATA_SEL], SEL_KDATA, GATE_INT32);
    idt_set(VEC_NULL_SEL, trap_stubs[VEC_NULL_SEL], 0, GATE_INT32);
}

static void reload_data_segments(void)
{
    __asm__ volatile("movw %w0, %%ds; movw %w0, %%es; movw %w0, %%fs; movw %w0, %%gs; movw %w0, %%ss"
                     : : "r"(SEL_KDATA) : "memory");
}

static void divide_errors(void)
{
    TRY("div by zero", FL, "divl %%ecx", : : "a"(1), "d"(0), "c"(0));
    TRY("idiv overflow", FL, "idivl %%ecx", : : "a"(0x80000000), "d"(0xffffffff), "c"(-1));
    TRY("div8 overflow", FL, "divb %%bl", : : "a"(0x1000), "b"(2));
    uint32_t q, r;
    TRY("div ok", FL, "divl %%ecx", : "=a"(q), "=d"(r) : "a"(100), "d"(0), "c"(7));
    printf("div ok: q=%u r=%u\n", q, r);
}

static void invalid_opcodes(void)
{
    TRY("ud2", FL, "ud2", : :);
    TRY("ud0", FL, ".byte 0x0f, 0xff, 0xc0", : :);
    TRY("lock nop", FL, ".byte 0xf0, 0x90", : :);
    TRY("lock add reg", FL, ".byte 0xf0, 0x01, 0xd8", : : : "eax");
    uint32_t v = 5;
    TRY("lock add mem", FL, "lock addl $3, %0", : "+m"(v) :);
    printf("lock add mem: %u\n", v);
    TRY("mov cs", FL, ".byte 0x8e, 0xc8", : : "a"(SEL_KCODE));
    TRY("lea reg", FL, ".byte 0x8d, 0xc0", : :);
    TRY("mov cr1", FL, ".byte 0x0f, 0x20, 0xc8", : : : "eax");
    TRY("mov dr4 de=0", FL, ".byte 0x0f, 0x21, 0xe0", : : : "eax");
    TRY("16 bytes", FL, ".fill 15, 1, 0x66\n\t.byte 0x90", : :);
    TRY("15 bytes", FL, ".fill 14, 1, 0x66\n\t.byte 0x90", : :);
}

static void software_interrupts(void)
{
    TRY("int3", FL, "int3", : :);
    TRY("int 3", FL, ".byte 0xcd, 0x03", : :);   /* gas would encode int $3 as int3 */
    TRY("into of=1", FL_OF, "into", : :);
    TRY("into of=0", FL, "into", : :);
    TRY("int 0x80 int gate", FL_IF, "int $0x80", : :);
    printf("int 0x80 int gate: handler if=%u\n", (trap.handler_eflags >> 9) & 1);
    TRY("int 0x81 trap gate", FL_IF, "int $0x81", : :);
    printf("int 0x81 trap gate: handler if=%u\n", (trap.handler_eflags >> 9) & 1);
    TRY("int not-present gate", FL, "int $0x82", : :);
    TRY("int call gate in idt", FL, "int $0x83", : :);
    TRY("int gate to data seg", FL, "int $0x84", : :);
    TRY("int gate to null sel", FL, "int $0x85", : :);
    idt_install(VEC_BEYOND * 8 - 1);
    TRY("int beyond idt limit", FL, "int $0xf0", : :);
    TRY("int below idt limit", FL, "int $0xef", : :);
    idt_install(sizeof(idt) - 1);
}

static void bound_and_arpl(void)
{
    static int32_t bounds[2] = { 10, 20 };
    TRY("bound in", FL, "boundl %%eax, %0", : : "m"(bounds), "a"(15));
    TRY("bound below", FL, "boundl %%eax, %0", : : "m"(bounds), "a"(5));
    TRY("bound above", FL, "boundl %%eax, %0", : : "m"(bounds), "a"(21));
    TRY("bound reg", FL, ".byte 0x62, 0xc0", : :);
    uint32_t a = 0x10, f;
    __asm__ volatile("push $2; popfl; arpl %w2, %w0; pushfl; popl %1"
                     : "+r"(a), "=r"(f) : "r"(0x13) : "cc");
    printf("arpl raise: ax=0x%x zf=%u\n", a, (f >> 6) & 1);
    a = 0x13;
    __asm__ volatile("push $2; popfl; arpl %w2, %w0; pushfl; popl %1"
                     : "+r"(a), "=r"(f) : "r"(0x11) : "cc");
    printf("arpl keep: ax=0x%x zf=%u\n", a, (f >> 6) & 1);
}

static void segment_loads(void)
{
    TRY("mov ds beyond gdt", FL, "movw %%ax, %%ds", : : "a"(0x1f8));
    TRY("mov ds ldt-relative", FL, "movw %%ax, %%ds", : : "a"(0x0c));
    TRY("mov ds exec-only", FL, "movw %%ax, %%ds", : : "a"(SEL_CODE_XO));
    TRY("mov ds system seg", FL, "movw %%ax, %%ds", : : "a"(SEL_LDT));
    TRY("mov ds not present", FL, "movw %%ax, %%ds", : : "a"(SEL_DATA_NP));
    /* FS: nothing compiled uses it, so it may stay null or a code segment meanwhile */
    TRY("mov fs null", FL, "movw %%ax, %%fs", : : "a"(0));
    TRY("mov fs readable code", FL, "movw %%ax, %%fs", : : "a"(SEL_KCODE));
    TRY("read through fs code", FL, "movl %%fs:0, %%eax", : : : "eax");
    TRY("write through fs code", FL, "movl %%eax, %%fs:0", : : : "eax");
    reload_data_segments();
    TRY("mov ss null", FL, "movw %%ax, %%ss", : : "a"(0));
    TRY("mov ss rpl3", FL, "movw %%ax, %%ss", : : "a"(SEL_DATA_DPL3 | 3));
    TRY("mov ss dpl3", FL, "movw %%ax, %%ss", : : "a"(SEL_DATA_DPL3));
    TRY("mov ss read-only", FL, "movw %%ax, %%ss", : : "a"(SEL_DATA_RO));
    TRY("mov ss not present", FL, "movw %%ax, %%ss", : : "a"(SEL_STACK_NP));
    TRY("mov ss code", FL, "movw %%ax, %%ss", : : "a"(SEL_KCODE));
    reload_data_segments();
}

static void segment_limits(void)
{
    uint32_t v = 0;
    __asm__ volatile("movw %w0, %%es" : : "r"(SEL_DATA_RO));
    TRY("es read-only write", FL, "movl $1, %%es:0", : :);
    TRY("es read in limit", FL, "movl %%es:0xffc, %%eax", : : : "eax");
    TRY("es read straddles", FL, "movl %%es:0xffe, %%eax", : : : "eax");
    TRY("es read past limit", FL, "movl %%es:0x1000, %%eax", : : : "eax");
    __asm__ volatile("movw %w0, %%es" : : "r"(SEL_EXPAND_DOWN));
    TRY("expand-down below limit", FL, "movl %%es:0x800, %%eax", : : : "eax");
    TRY("expand-down above limit", FL, "movl %%es:(%%ebx), %%eax", : : "b"(&v) : "eax");
    reload_data_segments();
    __asm__ volatile("movw %w0, %%ss" : : "r"(SEL_STACK_2M));
    TRY("ss in limit", FL, "movl %%ss:(%%ebx), %%eax", : : "b"(&v) : "eax");
    TRY("ss past limit", FL, "movl %%ss:0x300000, %%eax", : : : "eax");
    reload_data_segments();
    TRY("ljmp to data seg", FL, "ljmp $0x10, $2f", : :);
    TRY("ljmp to null", FL, "ljmp $0, $2f", : :);
    TRY("ljmp to exec-only", FL, "ljmp $0x38, $3f\n3:\n\tljmp $0x08, $2f", : :);
}

/* Checks that QEMU 7.2's TCG does not survive: it never completes a MOV to CR4 with a
 * reserved bit set (it loops on the instruction instead of raising #GP), and it
 * accepts CR0.PG without CR0.PE.  The tests pass "skip=qemu-fatal" to QEMU only. */
static int skip_qemu_fatal;

static void control_registers(void)
{
    uint32_t cr0, cr4;
    __asm__ volatile("movl %%cr0, %0; movl %%cr4, %1" : "=r"(cr0), "=r"(cr4));
    if (!skip_qemu_fatal) {
        TRY("cr4 bit 15", FL, "movl %%eax, %%cr4", : : "a"(cr4 | 0x8000u));
        TRY("cr4 bit 12", FL, "movl %%eax, %%cr4", : : "a"(cr4 | 0x1000u));
        TRY("cr0 pg without pe", FL, "movl %%eax, %%cr0", : : "a"((cr0 & ~1u) | 0x80000000u));
    }
    TRY("cr0 nw without cd", FL, "movl %%eax, %%cr0", : : "a"((cr0 & ~0x40000000u) | 0x20000000u));
    TRY("cr0 same", FL, "movl %%eax, %%cr0", : : "a"(cr0));
    /* device not available: WAIT with MP and TS, x87 with EM */
    TRY("wait", FL, "wait", : :);
    __asm__ volatile("movl %0, %%cr0" : : "r"(cr0 | 0xa));   /* MP TS */
    TRY("wait ts mp", FL, "wait", : :);
    TRY("fninit ts", FL, "fninit", : :);
    __asm__ volatile("clts");
    TRY("wait after clts", FL, "wait", : :);
    __asm__ volatile("movl %0, %%cr0" : : "r"((cr0 & ~2u) | 0x4));   /* EM */
    TRY("fninit em", FL, "fninit", : :);
    TRY("wait em", FL, "wait", : :);
    __asm__ volatile("movl %0, %%cr0" : : "r"(cr0));
}

static void descriptor_queries(void)
{
    uint32_t v, f;
    __asm__ volatile("push $2; popfl; larl %w2, %0; pushfl; popl %1" : "=r"(v), "=r"(f) : "r"(SEL_CODE_XO) : "cc");
    printf("lar exec-only: 0x%08x zf=%u\n", v, (f >> 6) & 1);
    __asm__ volatile("push $2; popfl; lsll %w2, %0; pushfl; popl %1" : "=r"(v), "=r"(f) : "r"(SEL_DATA_RO) : "cc");
    printf("lsl read-only: 0x%08x zf=%u\n", v, (f >> 6) & 1);
    __asm__ volatile("push $2; popfl; lsll %w2, %0; pushfl; popl %1" : "=r"(v), "=r"(f) : "r"(SEL_KDATA) : "cc");
    printf("lsl flat: 0x%08x zf=%u\n", v, (f >> 6) & 1);
    v = 0x1234;
    __asm__ volatile("push $2; popfl; lsll %w2, %0; pushfl; popl %1" : "+r"(v), "=r"(f) : "r"(0x1f8) : "cc");
    printf("lsl beyond gdt: 0x%08x zf=%u\n", v, (f >> 6) & 1);
    __asm__ volatile("push $2; popfl; verr %w1; pushfl; popl %0" : "=r"(f) : "r"(SEL_CODE_XO) : "cc");
    printf("verr exec-only: zf=%u\n", (f >> 6) & 1);
    __asm__ volatile("push $2; popfl; verr %w1; pushfl; popl %0" : "=r"(f) : "r"(SEL_KCODE) : "cc");
    printf("verr code: zf=%u\n", (f >> 6) & 1);
    __asm__ volatile("push $2; popfl; verw %w1; pushfl; popl %0" : "=r"(f) : "r"(SEL_DATA_RO) : "cc");
    printf("verw read-only: zf=%u\n", (f >> 6) & 1);
    __asm__ volatile("push $2; popfl; verw %w1; pushfl; popl %0" : "=r"(f) : "r"(SEL_KDATA) : "cc");
    printf("verw data: zf=%u\n", (f >> 6) & 1);
}

/* Loading a descriptor into a segment register sets its accessed bit in the GDT (SDM
 * Vol. 3 3.4.5.1), also for CS (far JMP, IRET, interrupt gates). */
static void accessed_bits(void)
{
    printf("accessed: kcode=%u kdata=%u exec-only=%u kcode2=%u read-only=%u not-loaded=%u\n",
           (unsigned)(gdt[SEL_KCODE >> 3] >> 40) & 1, (unsigned)(gdt[SEL_KDATA >> 3] >> 40) & 1,
           (unsigned)(gdt[SEL_CODE_XO >> 3] >> 40) & 1, (unsigned)(gdt[SEL_KCODE2 >> 3] >> 40) & 1,
           (unsigned)(gdt[SEL_DATA_RO >> 3] >> 40) & 1, (unsigned)(gdt[SEL_DATA_DPL3 >> 3] >> 40) & 1);
}

/* RF in the pushed EFLAGS: 1 for a fault, so that the handler can restart the
 * instruction; software interrupts and traps push the current RF, 0 (SDM Vol. 3
 * 18.3.1.1) */
static void resume_flag(void)
{
    uint32_t ud, bp, gp, intn;
    TRY("ud2 for rf", FL, "ud2", : :);
    ud = trap.eflags >> 16 & 1;
    TRY("mov ds for rf", FL, "movw %%ax, %%ds", : : "a"(0x1f8));
    gp = trap.eflags >> 16 & 1;
    TRY("int3 for rf", FL, "int3", : :);
    bp = trap.eflags >> 16 & 1;
    TRY("int 0x80 for rf", FL, "int $0x80", : :);
    intn = trap.eflags >> 16 & 1;
    printf("rf pushed: #UD=%u #GP=%u #BP=%u int=%u\n", ud, gp, bp, intn);
    /* IRET loads RF; it lasts one instruction, and INT n clears it before pushing */
    trap_arm();
    __asm__ volatile("movl $1f, trap_site; movl $2f, trap_resume\n\t"
                     "pushl $0x10002; pushl %%cs; pushl $1f; iretl\n"
                     "1: int $0x80\n2:" : : : "memory");
    trap_report("int right after iret with rf=1");
    printf("rf pushed by int right after iret with rf=1: %u\n", trap.eflags >> 16 & 1);
}

static void iret_checks(void)
{
    uint32_t f, cs;
    __asm__ volatile("pushl $0x00243cd7; pushl %%cs; pushl $1f; iretl\n"
                     "1: pushfl; popl %0; pushl $2; popfl" : "=r"(f) : : "cc", "memory");
    printf("iret flags: 0x%08x\n", f);
    __asm__ volatile("pushl $2; pushl %2; pushl $1f; iretl\n"
                     "1: movl %%cs, %0; pushfl; popl %1; ljmp $0x08, $2f\n2:"
                     : "=r"(cs), "=r"(f) : "i"(SEL_KCODE2) : "cc", "memory");
    printf("iret to other cs: cs=0x%02x fl=0x%08x\n", cs, f);
    __asm__ volatile("pushl $0x00000ed7; popfl; pushfl; popl %0; pushl $2; popfl" : "=r"(f) : : "cc");
    printf("popf flags: 0x%08x\n", f);
}

static void double_faults(void)
{
    /* #GP whose gate is not present: #NP while delivering #GP, two contributory
     * exceptions make a double fault */
    uint64_t gp_gate = idt[13];
    idt[13] &= ~(1ull << 47);
    TRY("gp through np gate", FL, "movw %%ax, %%ds", : : "a"(0x1f8));
    idt[13] = gp_gate;
    /* #UD is benign: the #NP for its gate is delivered as is, with EXT set */
    uint64_t ud_gate = idt[6];
    idt[6] &= ~(1ull << 47);
    TRY("ud through np gate", FL, "ud2", : :);
    idt[6] = ud_gate;
    /* #GP through a gate beyond the IDT limit: a second #GP, then #DF */
    idt_install(8 * 8 + 7);
    TRY("gp beyond idt limit", FL, "movw %%ax, %%ds", : : "a"(0x1f8));
    idt_install(sizeof(idt) - 1);
    /* #DE is contributory too */
    uint64_t de_gate = idt[0];
    idt[0] &= ~(1ull << 47);
    TRY("de through np gate", FL, "divl %%ecx", : : "a"(1), "d"(0), "c"(0));
    idt[0] = de_gate;
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    const char *cmdline = magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & MULTIBOOT_INFO_CMDLINE)
                          ? (const char *)mbi->cmdline : "";
    skip_qemu_fatal = strstr(cmdline, "skip=qemu-fatal") != NULL;
    serial_init();
    printf("exceptions test\n");
    outb(0x21, 0xff);   /* mask both PICs: IF=1 checks must see no interrupt */
    outb(0xa1, 0xff);
    set_descriptors();
    gdt_install();
    trap_init();
    set_gates();

    descriptor_queries();   /* before any load of the test descriptors sets accessed bits */
    divide_errors();
    invalid_opcodes();
    software_interrupts();
    bound_and_arpl();
    segment_loads();
    segment_limits();
    control_registers();
    resume_flag();
    iret_checks();
    double_faults();
    accessed_bits();

    printf("exceptions test done\n");
    debug_exit(0x31);
}
