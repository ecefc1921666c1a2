/*
 * longmode: IA-32e mode.  The 32-bit C code turns on 4-level paging with EFER.LME
 * and keeps running in compatibility mode (CS.L = 0), where the library's printf and
 * TRY work unchanged; 64-bit code (lm64.S) runs through long_call(), a far call to a
 * 64-bit code segment.  Checked: the mode switch itself, 64-bit arithmetic, the
 * 64-bit IDT (#UD, #GP and #SS for non-canonical addresses, #PF with a 64-bit CR2,
 * execute-disable, IST stacks, RSP alignment), exceptions in compatibility mode, and
 * SYSRET to 64-bit ring 3 with SYSCALL back.  Ends with debug_exit(0x34).
 */
#include <stdint.h>
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "lm.h"
#include "multiboot.h"
#include "serial.h"
#include "string.h"
#include "trap.h"

#define FL 0x2

#define PTE_P  0x001ull
#define PTE_W  0x002ull
#define PTE_U  0x004ull
#define PTE_PS 0x080ull
#define PTE_XD (1ull << 63)

#define MSR_EFER   0xc0000080u
#define MSR_STAR   0xc0000081u
#define MSR_LSTAR  0xc0000082u
#define MSR_FMASK  0xc0000084u
#define EFER_SCE   0x001u
#define EFER_LME   0x100u
#define EFER_NXE   0x800u

/* 64-bit TSS (SDM Figure 8-11) */
struct tss64 {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
} __attribute__((packed));

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[512] __attribute__((aligned(4096)));
static uint64_t pt[512] __attribute__((aligned(4096)));
static uint64_t idt64[256][2] __attribute__((aligned(16)));
static struct tss64 tss64 __attribute__((aligned(16)));
static uint8_t ring0_stack[4096] __attribute__((aligned(16)));
static uint8_t ist1_stack[4096] __attribute__((aligned(16)));
static uint8_t ring3_stack[4096] __attribute__((aligned(16)));

/* shared with lm64.S */
extern void (*const lm_stubs[256])(void);
void long_call(void (*fn)(void));
void lm_arith(void), lm_ud2(void), lm_push_es(void), lm_noncanonical(void);
void lm_noncanonical_stack(void), lm_pf_high(void), lm_fetch_xd(void), lm_int_ist(void);
void lm_int_misaligned(void), lm_syscall_round_trip(void), lm_sysret_noncanonical(void);
void lm_syscall_no_sce(void), syscall_entry(void);
uint64_t lm_results[17];
uint64_t lm_rip, lm_rsp, lm_cr2, lm_handler_ss, lm_handler_rsp, lm_pre_rsp, lm_kernel_rsp;
uint64_t u_cs, u_ss, u_flags, k_rcx, k_r11, k_cs, k_ss, k_flags, k_expected_rcx;
uint32_t user_stack_top;

static uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}

static void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static uint32_t read_cr(int n)
{
    uint32_t v = 0;
    switch (n) {
    case 0: __asm__ volatile("movl %%cr0, %0" : "=r"(v)); break;
    case 4: __asm__ volatile("movl %%cr4, %0" : "=r"(v)); break;
    }
    return v;
}

static void print64(const char *name, uint64_t v)
{
    printf("%s: 0x%08x%08x\n", name, (uint32_t)(v >> 32), (uint32_t)v);
}

static void set_gate(int vec, int ist, int dpl)
{
    uint32_t off = (uint32_t)lm_stubs[vec];
    idt64[vec][0] = (off & 0xffffull) | ((uint64_t)SEL_KCODE64 << 16) | ((uint64_t)ist << 32) |
                    ((uint64_t)(0x8e | dpl << 5) << 40) | ((uint64_t)(off >> 16) << 48);
    idt64[vec][1] = 0;
}

static void build_tables(void)
{
    gdt[0] = 0;
    gdt_set(SEL_KCODE >> 3, 0, 0xfffff, DA_P | DA_CODE | DA_R, DF_G | DF_DB);
    gdt_set(SEL_KDATA >> 3, 0, 0xfffff, DA_P | DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_TSS64 >> 3, (uint32_t)&tss64, sizeof(tss64) - 1, DA_P | DA_TSS32, 0);
    gdt[(SEL_TSS64 >> 3) + 1] = 0;   /* base bits 63:32 */
    gdt_set(SEL_KCODE64 >> 3, 0, 0xfffff, DA_P | DA_CODE | DA_R, DF_G | DF_L);
    gdt_set(SEL_KDATA64 >> 3, 0, 0xfffff, DA_P | DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_UCODE32 >> 3, 0, 0xfffff, DA_P | DA_DPL(3) | DA_CODE | DA_R, DF_G | DF_DB);
    gdt_set(SEL_UDATA_LM >> 3, 0, 0xfffff, DA_P | DA_DPL(3) | DA_DATA | DA_W, DF_G | DF_DB);
    gdt_set(SEL_UCODE64 >> 3, 0, 0xfffff, DA_P | DA_DPL(3) | DA_CODE | DA_R, DF_G | DF_L);
    lgdt_raw(gdt, sizeof(gdt) - 1);
    __asm__ volatile("ljmp %0, $1f\n1:\n\t"
                     "movw %w1, %%ds; movw %w1, %%es; movw %w1, %%fs; movw %w1, %%gs; movw %w1, %%ss\n\t"
                     "xorl %%eax, %%eax; lldt %%ax"
                     : : "i"(SEL_KCODE), "r"(SEL_KDATA) : "eax", "memory");

    tss64.rsp[0] = (uint32_t)(ring0_stack + sizeof(ring0_stack));
    tss64.ist[0] = (uint32_t)(ist1_stack + sizeof(ist1_stack));
    tss64.iomap_base = sizeof(tss64);
    for (int v = 0; v < 256; v++)
        set_gate(v, 0, 0);
    set_gate(VEC_IST, 1, 0);

    /* 0-1 GiB identity-mapped with 2 MiB pages, except 4-6 MiB: the 4 KiB test pages */
    pml4[0] = (uint32_t)pdpt | PTE_P | PTE_W | PTE_U;
    pdpt[0] = (uint32_t)pd | PTE_P | PTE_W | PTE_U;
    for (uint32_t k = 0; k < 512; k++)
        pd[k] = (uint64_t)k << 21 | PTE_P | PTE_W | PTE_U | PTE_PS;
    pd[2] = (uint32_t)pt | PTE_P | PTE_W | PTE_U;
    for (uint32_t k = 0; k < 512; k++)
        pt[k] = (0x400000ull + ((uint64_t)k << 12)) | PTE_P | PTE_W | PTE_U;
    pt[(SUPERVISOR_PAGE >> 12) & 511] &= ~PTE_U;
    pt[(NOT_PRESENT_PAGE >> 12) & 511] &= ~PTE_P;
    pt[(XD_PAGE >> 12) & 511] |= PTE_XD;
    *(volatile uint8_t *)XD_PAGE = 0xc3;   /* ret */
    user_stack_top = (uint32_t)(ring3_stack + sizeof(ring3_stack));
}

static void enter_long_mode(void)
{
    __asm__ volatile("movl %0, %%cr4" : : "r"(read_cr(4) | 0x20) : "memory");   /* PAE */
    __asm__ volatile("movl %0, %%cr3" : : "r"((uint32_t)pml4) : "memory");
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_LME);
    printf("before paging: efer=0x%x\n", (uint32_t)rdmsr(MSR_EFER));
    __asm__ volatile("movl %0, %%cr0" : : "r"(read_cr(0) | 0x80000000u) : "memory");
    /* IA-32e mode is active: this code runs in compatibility mode */
    struct { uint16_t limit; uint32_t base; } __attribute__((packed)) d = { sizeof(idt64) - 1, (uint32_t)idt64 };
    __asm__ volatile("lidt %0" : : "m"(d));
    __asm__ volatile("ltr %w0" : : "r"(SEL_TSS64));
    uint32_t cs;
    __asm__ volatile("movl %%cs, %0" : "=r"(cs));
    printf("long mode: efer=0x%x cr0.pg=%u cs=0x%02x\n", (uint32_t)rdmsr(MSR_EFER),
           read_cr(0) >> 31, cs);
    printf("tss busy: %u\n", (uint32_t)(gdt[SEL_TSS64 >> 3] >> 41) & 1);
}

static void compat_mode_checks(void)
{
    uint32_t eax;
    __asm__ volatile("xorl %%eax, %%eax; .byte 0x40; nop" : "=a"(eax));   /* INC EAX here */
    printf("compat: 0x40 is inc eax: eax=%u\n", eax);
    TRY("compat ud2", FL, "ud2", : :);
    printf("compat ud2: rip=0x%08x%08x\n", (uint32_t)(lm_rip >> 32), (uint32_t)lm_rip);
    TRY("compat read not present", FL, "movl (%0), %%eax", : : "r"(NOT_PRESENT_PAGE + 8) : "eax");
    TRY("compat int 0x91", FL, "int $0x91", : :);
    printf("compat int 0x91: pushed ss=0x%02x rsp=0x%08x%08x handler ss=0x%02x\n", trap.ss,
           (uint32_t)(lm_rsp >> 32), (uint32_t)lm_rsp, (uint32_t)lm_handler_ss);
    TRY("compat mov ds null then read", FL, "movw %%ax, %%fs; movl %%fs:0, %%eax", : : "a"(0));
    __asm__ volatile("movw %w0, %%fs" : : "r"(SEL_KDATA));
}

static void sixty_four_bit_checks(void)
{
    static const char *names[] = {
        "add", "mul lo", "mul hi", "div q", "div r", "idiv q", "idiv r", "sar", "rol",
        "mov r32 zero-extends", "movsxd", "bsr", "bswap", "adc carry", "lea", "rex 0x40",
        "rip-relative",
    };
    long_call(lm_arith);
    for (unsigned k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        print64(names[k], lm_results[k]);

    trap_arm(); long_call(lm_ud2); trap_report("64-bit ud2");
    trap_arm(); long_call(lm_push_es); trap_report("64-bit push es");
    trap_arm(); long_call(lm_noncanonical); trap_report("non-canonical read");
    trap_arm(); long_call(lm_noncanonical_stack); trap_report("non-canonical stack read");
    trap_arm(); long_call(lm_pf_high); trap_report("read upper-half not present");
    print64("read upper-half not present cr2", lm_cr2);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
    trap_arm(); long_call(lm_fetch_xd); trap_report("fetch xd page");
    printf("fetch xd page: rip=cr2 %u\n", lm_rip == lm_cr2);
    trap_arm(); long_call(lm_int_ist); trap_report("int ist1");
    printf("int ist1: handler rsp=ist1 top-%u pushed cs=0x%02x ss=0x%02x\n",
           (uint32_t)(tss64.ist[0] - lm_handler_rsp), trap.cs, trap.ss);
    trap_arm(); long_call(lm_int_misaligned); trap_report("int with rsp 16n-8");
    printf("int with rsp 16n-8: rsp before-handler rsp=%u\n", (uint32_t)(lm_pre_rsp - lm_handler_rsp));
}

/* QEMU 7.2's TCG does not survive SYSRET to a non-canonical RIP: it returns to ring 3
 * instead of raising #GP(0) at CPL 0.  The tests pass "skip=qemu-fatal" to QEMU only. */
static int skip_qemu_fatal;

static void syscall_checks(void)
{
    trap_arm(); long_call(lm_syscall_no_sce); trap_report("syscall without efer.sce");
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    wrmsr(MSR_STAR, (uint64_t)SEL_UCODE32 << 48 | (uint64_t)SEL_KCODE64 << 32);
    wrmsr(MSR_LSTAR, (uint32_t)syscall_entry);
    wrmsr(MSR_FMASK, 0x200);   /* IF */
    if (!skip_qemu_fatal) {
        trap_arm();
        long_call(lm_sysret_noncanonical);
        trap_report("sysret to non-canonical rip");
    }
    outb(0x21, 0xff);          /* ring 3 runs with IF = 1: no interrupt may come */
    outb(0xa1, 0xff);
    trap_arm();
    long_call(lm_syscall_round_trip);
    printf("sysret: cs=0x%02x ss=0x%02x if=%u\n", (uint32_t)u_cs, (uint32_t)u_ss,
           (uint32_t)(u_flags >> 9) & 1);
    trap_report("ring-3 read of supervisor page");
    printf("ring-3 read of supervisor page: handler rsp=rsp0-%u handler ss=0x%02x pushed ss=0x%02x\n",
           (uint32_t)(tss64.rsp[0] - lm_handler_rsp), (uint32_t)lm_handler_ss, trap.ss);
    printf("syscall: cs=0x%02x ss=0x%02x if=%u rcx=next rip %u r11.if=%u\n", (uint32_t)k_cs,
           (uint32_t)k_ss, (uint32_t)(k_flags >> 9) & 1, k_rcx == k_expected_rcx,
           (uint32_t)(k_r11 >> 9) & 1);
}

void kmain(uint32_t magic, struct multiboot_info *mbi)
{
    const char *cmdline = magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & MULTIBOOT_INFO_CMDLINE)
                          ? (const char *)mbi->cmdline : "";
    skip_qemu_fatal = strstr(cmdline, "skip=qemu-fatal") != NULL;
    serial_init();
    printf("longmode test\n");
    build_tables();
    enter_long_mode();
    compat_mode_checks();
    sixty_four_bit_checks();
    syscall_checks();
    printf("longmode test done\n");
    debug_exit(0x34);
}
