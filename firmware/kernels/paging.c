/*
 * paging: 32-bit paging with 4 KiB and 4 MiB pages, then PAE paging, checked one
 * access at a time: #PF error codes and CR2, accessed and dirty bits the processor
 * sets in the paging structures, CR0.WP, user-mode accesses, execute-disable,
 * reserved bits, INVLPG against a stale TLB entry and global pages across a CR3 load.
 * The first 4 MiB stay identity-mapped (the kernel, its stack and tables); the test
 * pages live at 4 MiB and map frames of this kernel's own .bss, each holding a marker
 * 0x1000 + its index in its first word.  Ends with debug_exit(0x32).
 */
#include <stdint.h>
#include "debug_exit.h"
#include "desc.h"
#include "io.h"
#include "serial.h"
#include "trap.h"
#include "user.h"

#define FL 0x2
#define FL_USER 0x3002          /* IOPL 3: ring-3 checks may print */

#define PTE_P   0x001u
#define PTE_W   0x002u
#define PTE_U   0x004u
#define PTE_A   0x020u
#define PTE_D   0x040u
#define PTE_PS  0x080u
#define PTE_G   0x100u
#define PTE_XD  (1ull << 63)

#define CR0_WP  0x10000u
#define CR0_PG  0x80000000u
#define CR4_PSE 0x10u
#define CR4_PAE 0x20u
#define CR4_PGE 0x80u
#define MSR_EFER 0xc0000080u
#define EFER_NXE 0x800u

#define TEST_BASE 0x400000u
#define PAGE(n) (TEST_BASE + (n) * 0x1000u)
/* test pages */
enum { P_RW, P_RO, P_SUPER, P_NP, P_AD, P_STALE, P_GLOBAL, P_NONGLOBAL, P_RSVD, P_XD, P_CODE };

#define NFRAMES 12
static uint8_t frames[NFRAMES][4096] __attribute__((aligned(4096)));
/* volatile: the processor writes accessed and dirty bits behind the compiler's back */
static volatile uint32_t pd32[1024] __attribute__((aligned(4096)));
static volatile uint32_t pt32[1024] __attribute__((aligned(4096)));
static volatile uint64_t pdpt[4] __attribute__((aligned(32)));
static volatile uint64_t pd_pae[512] __attribute__((aligned(4096)));
static volatile uint64_t pt_pae[512] __attribute__((aligned(4096)));
static uint8_t user_stack[4096] __attribute__((aligned(16)));

static uint32_t frame(int n) { return (uint32_t)frames[n]; }

static uint32_t read_cr0(void) { uint32_t v; __asm__ volatile("movl %%cr0, %0" : "=r"(v)); return v; }
static uint32_t read_cr4(void) { uint32_t v; __asm__ volatile("movl %%cr4, %0" : "=r"(v)); return v; }
static void write_cr0(uint32_t v) { __asm__ volatile("movl %0, %%cr0" : : "r"(v) : "memory"); }
static void write_cr3(uint32_t v) { __asm__ volatile("movl %0, %%cr3" : : "r"(v) : "memory"); }
static void write_cr4(uint32_t v) { __asm__ volatile("movl %0, %%cr4" : : "r"(v) : "memory"); }
static void invlpg(uint32_t lin) { __asm__ volatile("invlpg (%0)" : : "r"(lin) : "memory"); }
static uint32_t peek(uint32_t lin) { return *(volatile uint32_t *)lin; }

static void set_efer_nxe(int on)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(MSR_EFER));
    lo = on ? lo | EFER_NXE : lo & ~EFER_NXE;
    __asm__ volatile("wrmsr" : : "a"(lo), "d"(hi), "c"(MSR_EFER) : "memory");
}

/* ---- 32-bit paging ---------------------------------------------------- */

static void setup_32bit(void)
{
    for (int n = 0; n < NFRAMES; n++)
        *(uint32_t *)frames[n] = 0x1000u + n;
    frames[P_CODE][4] = 0xc3;   /* ret, at offset 4 */
    pd32[0] = 0 | PTE_P | PTE_W | PTE_U | PTE_PS;          /* 0-4 MiB, one 4 MiB page */
    pd32[1] = (uint32_t)pt32 | PTE_P | PTE_W | PTE_U;      /* the test pages */
    pd32[2] = 0x800000u | (1u << 21) | PTE_P | PTE_W | PTE_PS;   /* bit 21 is reserved */
    pt32[P_RW] = frame(P_RW) | PTE_P | PTE_W | PTE_U;
    pt32[P_RO] = frame(P_RO) | PTE_P | PTE_U;
    pt32[P_SUPER] = frame(P_SUPER) | PTE_P | PTE_W;
    pt32[P_NP] = frame(P_NP) | PTE_W | PTE_U;
    pt32[P_AD] = frame(P_AD) | PTE_P | PTE_W | PTE_U;
    pt32[P_STALE] = frame(P_STALE) | PTE_P | PTE_W | PTE_U;
    pt32[P_CODE] = frame(P_CODE) | PTE_P | PTE_W | PTE_U;
    write_cr3((uint32_t)pd32);
    write_cr4(read_cr4() | CR4_PSE);
    write_cr0(read_cr0() | CR0_PG);
    printf("32-bit paging: cr0.pg=%u cr4=0x%08x\n", read_cr0() >> 31, read_cr4());
}

static void ad_bits_32(void)
{
    printf("before: pde.a=%u pte.a=%u pte.d=%u\n", (pd32[1] >> 5) & 1, (pt32[P_AD] >> 5) & 1,
           (pt32[P_AD] >> 6) & 1);
    uint32_t v = peek(PAGE(P_AD));
    printf("after read 0x%x: pde.a=%u pte.a=%u pte.d=%u\n", v, (pd32[1] >> 5) & 1,
           (pt32[P_AD] >> 5) & 1, (pt32[P_AD] >> 6) & 1);
    *(volatile uint32_t *)(PAGE(P_AD) + 8) = 1;
    printf("after write: pde.d=%u pte.a=%u pte.d=%u\n", (pd32[1] >> 6) & 1,
           (pt32[P_AD] >> 5) & 1, (pt32[P_AD] >> 6) & 1);
    printf("4 MiB page: a=%u d=%u\n", (pd32[0] >> 5) & 1, (pd32[0] >> 6) & 1);
}

static void supervisor_faults_32(void)
{
    uint32_t v = 0;
    TRY("read rw", FL, "movl (%1), %0", : "=r"(v) : "r"(PAGE(P_RW)));
    printf("read rw: 0x%x\n", v);
    TRY("read not present", FL, "movl (%0), %%eax", : : "r"(PAGE(P_NP) + 4) : "eax");
    TRY("write not present", FL, "movl %%eax, (%0)", : : "r"(PAGE(P_NP) + 8) : "eax");
    TRY("write read-only wp=0", FL, "movl $7, (%0)", : : "r"(PAGE(P_RO) + 12));
    printf("read-only page after write: %u\n", peek(PAGE(P_RO) + 12));
    write_cr0(read_cr0() | CR0_WP);
    TRY("write read-only wp=1", FL, "movl $8, (%0)", : : "r"(PAGE(P_RO) + 12));
    printf("read-only page after write: %u\n", peek(PAGE(P_RO) + 12));
    TRY("read 4 MiB page rsvd bit", FL, "movl (%0), %%eax", : : "r"(0x800010u) : "eax");
    TRY("fetch not present", FL, "jmp *%0", : : "r"(PAGE(P_NP) + 0x20));
    printf("fetch not present: eip=cr2 %u\n", trap.eip == trap.cr2);
    TRY("call code page", FL, "call *%0", : : "r"(PAGE(P_CODE) + 4));
    /* no execute-disable bit in 32-bit paging: NXE alone sets no I/D flag */
    set_efer_nxe(1);
    TRY("fetch not present nxe", FL, "jmp *%0", : : "r"(PAGE(P_NP) + 0x20));
    set_efer_nxe(0);
}

static uint32_t user_result[4];

static void user_accesses(void)
{
    TRY("user read user page", FL_USER, "movl (%0), %%eax", : : "r"(PAGE(P_RW)) : "eax");
    TRY("user read supervisor page", FL_USER, "movl (%0), %%eax", : : "r"(PAGE(P_SUPER) + 4) : "eax");
    TRY("user write supervisor page", FL_USER, "movl %%eax, (%0)", : : "r"(PAGE(P_SUPER) + 4) : "eax");
    TRY("user write read-only page", FL_USER, "movl %%eax, (%0)", : : "r"(PAGE(P_RO) + 4) : "eax");
    TRY("user read not present", FL_USER, "movl (%0), %%eax", : : "r"(PAGE(P_NP) + 4) : "eax");
    TRY("user fetch supervisor page", FL_USER, "jmp *%0", : : "r"(PAGE(P_SUPER) + 4));
    user_result[0] = trap.eip == trap.cr2;
    __asm__ volatile("movl %%cs, %0" : "=r"(user_result[1]));
}

static void user_faults_32(void)
{
    frames[P_SUPER][4] = 0xc3;
    user_call(user_accesses, user_stack + sizeof(user_stack), FL_USER);
    printf("user fetch supervisor page: eip=cr2 %u; ran at cpl %u\n", user_result[0],
           user_result[1] & 3);
}

static void tlb_32(void)
{
    printf("mapped: 0x%x\n", peek(PAGE(P_STALE)));
    pt32[P_STALE] = frame(P_STALE + 1) | PTE_P | PTE_W | PTE_U;
    printf("remapped, before invlpg: 0x%x\n", peek(PAGE(P_STALE)));
    invlpg(PAGE(P_STALE));
    printf("remapped, after invlpg: 0x%x\n", peek(PAGE(P_STALE)));

    write_cr4(read_cr4() | CR4_PGE);
    pt32[P_GLOBAL] = frame(P_GLOBAL) | PTE_P | PTE_W | PTE_U | PTE_G;
    pt32[P_NONGLOBAL] = frame(P_GLOBAL) | PTE_P | PTE_W | PTE_U;
    invlpg(PAGE(P_GLOBAL));
    invlpg(PAGE(P_NONGLOBAL));
    printf("global 0x%x non-global 0x%x\n", peek(PAGE(P_GLOBAL)), peek(PAGE(P_NONGLOBAL)));
    pt32[P_GLOBAL] = frame(P_GLOBAL + 2) | PTE_P | PTE_W | PTE_U | PTE_G;
    pt32[P_NONGLOBAL] = frame(P_GLOBAL + 2) | PTE_P | PTE_W | PTE_U;
    write_cr3((uint32_t)pd32);
    printf("after cr3 load: global 0x%x non-global 0x%x\n", peek(PAGE(P_GLOBAL)),
           peek(PAGE(P_NONGLOBAL)));
    write_cr4(read_cr4() & ~CR4_PGE);
    printf("after cr4.pge=0: global 0x%x non-global 0x%x\n", peek(PAGE(P_GLOBAL)),
           peek(PAGE(P_NONGLOBAL)));
}

static void double_fault_32(void)
{
    uint64_t pf_gate = idt[14];
    idt[14] &= ~(1ull << 47);
    TRY("pf through np gate", FL, "movl (%0), %%eax", : : "r"(PAGE(P_NP) + 0x30) : "eax");
    uint32_t cr2;
    __asm__ volatile("movl %%cr2, %0" : "=r"(cr2));
    printf("pf through np gate: cr2=0x%08x\n", cr2);
    idt[14] = pf_gate;
}

/* ---- PAE paging --------------------------------------------------------- */

static void setup_pae(void)
{
    write_cr0(read_cr0() & ~(CR0_PG | CR0_WP));
    pd_pae[0] = 0x000000u | PTE_P | PTE_W | PTE_U | PTE_PS;     /* 0-2 MiB */
    pd_pae[1] = 0x200000u | PTE_P | PTE_W | PTE_U | PTE_PS;     /* 2-4 MiB */
    pd_pae[2] = (uint32_t)pt_pae | PTE_P | PTE_W | PTE_U;        /* the test pages */
    pd_pae[3] = 0x600000u | (1u << 13) | PTE_P | PTE_W | PTE_PS; /* bit 13 is reserved */
    pdpt[0] = (uint32_t)pd_pae | PTE_P;
    pt_pae[P_RW] = frame(P_RW) | PTE_P | PTE_W | PTE_U;
    pt_pae[P_AD] = frame(P_AD) | PTE_P | PTE_W | PTE_U;
    pt_pae[P_RSVD] = frame(P_RSVD) | PTE_P | PTE_W | PTE_U;
    pt_pae[P_XD] = frame(P_CODE) | PTE_P | PTE_W | PTE_U | PTE_XD;
    pt_pae[P_CODE] = frame(P_CODE) | PTE_P | PTE_W | PTE_U;
    write_cr4((read_cr4() & ~CR4_PSE) | CR4_PAE);
    write_cr3((uint32_t)pdpt);
    write_cr0(read_cr0() | CR0_PG);
    printf("pae paging: cr0.pg=%u cr4=0x%08x read 0x%x\n", read_cr0() >> 31, read_cr4(),
           peek(PAGE(P_RW)));
}

static void pae_checks(void)
{
    printf("pae before: pde.a=%u pte.a=%u pte.d=%u\n", (uint32_t)(pd_pae[2] >> 5) & 1,
           (uint32_t)(pt_pae[P_AD] >> 5) & 1, (uint32_t)(pt_pae[P_AD] >> 6) & 1);
    *(volatile uint32_t *)(PAGE(P_AD) + 8) = 2;
    printf("pae after write: pde.a=%u pte.a=%u pte.d=%u\n", (uint32_t)(pd_pae[2] >> 5) & 1,
           (uint32_t)(pt_pae[P_AD] >> 5) & 1, (uint32_t)(pt_pae[P_AD] >> 6) & 1);
    printf("pae 2 MiB page: a=%u d=%u\n", (uint32_t)(pd_pae[0] >> 5) & 1,
           (uint32_t)(pd_pae[0] >> 6) & 1);

    TRY("pae read not present", FL, "movl (%0), %%eax", : : "r"(PAGE(P_NP) + 4) : "eax");
    TRY("pae read 2 MiB page rsvd bit", FL, "movl (%0), %%eax", : : "r"(0x600010u) : "eax");
    static const struct { const char *name; uint64_t bit; } rsvd[] = {
        { "pae pte bit 45", 1ull << 45 }, { "pae pte bit 52", 1ull << 52 },
        { "pae pte bit 62", 1ull << 62 }, { "pae pte xd with nxe=0", 1ull << 63 },
    };
    for (unsigned k = 0; k < sizeof(rsvd) / sizeof(rsvd[0]); k++) {
        pt_pae[P_RSVD] = frame(P_RSVD) | PTE_P | PTE_W | PTE_U | rsvd[k].bit;
        invlpg(PAGE(P_RSVD));
        TRY(rsvd[k].name, FL, "movl (%0), %%eax", : : "r"(PAGE(P_RSVD) + 4) : "eax");
    }
    TRY("pae pdpte not present", FL, "movl (%0), %%eax", : : "r"(0xc0000000u) : "eax");

    set_efer_nxe(1);
    TRY("pae read xd page", FL, "movl (%0), %%eax", : : "r"(PAGE(P_XD) + 4) : "eax");
    TRY("pae fetch xd page", FL, "jmp *%0", : : "r"(PAGE(P_XD) + 4));
    printf("pae fetch xd page: eip=cr2 %u\n", trap.eip == trap.cr2);
    TRY("pae fetch not present nxe", FL, "jmp *%0", : : "r"(PAGE(P_NP) + 0x20));
    TRY("pae call code page", FL, "call *%0", : : "r"(PAGE(P_CODE) + 4));
    set_efer_nxe(0);

    /* MOV to CR3 loads the four PDPTEs and checks their reserved bits */
    pdpt[3] = (uint32_t)pd_pae | PTE_P | (1u << 5);
    TRY("pae cr3 load with rsvd pdpte", FL, "movl %0, %%cr3", : : "r"((uint32_t)pdpt));
    pdpt[3] = 0;
    write_cr3((uint32_t)pdpt);
    write_cr0(read_cr0() & ~CR0_PG);
    printf("paging off: cr0.pg=%u\n", read_cr0() >> 31);
}

void kmain(void)
{
    serial_init();
    printf("paging test\n");
    gdt_install();
    trap_init();

    setup_32bit();
    ad_bits_32();
    supervisor_faults_32();
    user_faults_32();
    tlb_32();
    double_fault_32();
    setup_pae();
    pae_checks();

    printf("paging test done\n");
    debug_exit(0x32);
}
