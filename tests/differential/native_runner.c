/* Runs instruction snippets on the host processor, for the differential tests.
 *
 * A fixed low region (below 4 GiB, so that 32-bit code can reach it; the layout comes
 * from layout.py) holds the snippet, a stub and the data buffer at the same linear
 * addresses the emulated guest uses, so pointers,
 * RIP-relative operands and pushed return addresses compare directly.  The trampolines
 * load all sixteen GPRs and RFLAGS from `pyhv_in` with RIP-relative moves (no register
 * is needed as a pointer), run the snippet, and store everything to `pyhv_out`.
 * 32-bit snippets run in compatibility mode: a far jump to Linux's 32-bit user code
 * segment, and a far jump back to the 64-bit one through a stub in the region. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* MAP_FIXED_NOREPLACE */
#endif
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

/* a case's registers: RAX..R15 in encoding order, RFLAGS, and after a fault the signal,
 * the faulting RIP and the exception vector */
#define PYHV_NREGS 20
enum { SLOT_RFLAGS = 16, SLOT_SIGNAL, SLOT_FAULT_RIP, SLOT_VECTOR };

#define USER32_CS 0x23
#define USER64_CS 0x33
#define USER_DS 0x2b

#define HIDDEN __attribute__((visibility("hidden")))
HIDDEN uint64_t pyhv_in[PYHV_NREGS], pyhv_out[PYHV_NREGS];
HIDDEN uint64_t pyhv_host_rsp, pyhv_entry, pyhv_saved_ds, pyhv_saved_es;
HIDDEN struct __attribute__((packed)) { uint32_t off; uint16_t sel; } pyhv_far32;

void pyhv_enter64(void);
void pyhv_enter32(void);
void pyhv_save64(void);
void pyhv_save32(void);

#define LOAD_GPRS \
    "pushq pyhv_in+128(%rip)\n popfq\n" \
    "mov pyhv_in+8(%rip), %rcx\n mov pyhv_in+16(%rip), %rdx\n mov pyhv_in+24(%rip), %rbx\n" \
    "mov pyhv_in+40(%rip), %rbp\n mov pyhv_in+48(%rip), %rsi\n mov pyhv_in+56(%rip), %rdi\n" \
    "mov pyhv_in+64(%rip), %r8\n mov pyhv_in+72(%rip), %r9\n mov pyhv_in+80(%rip), %r10\n" \
    "mov pyhv_in+88(%rip), %r11\n mov pyhv_in+96(%rip), %r12\n mov pyhv_in+104(%rip), %r13\n" \
    "mov pyhv_in+112(%rip), %r14\n mov pyhv_in+120(%rip), %r15\n" \
    "mov pyhv_in+32(%rip), %rsp\n mov pyhv_in+0(%rip), %rax\n"

#define SAVE_GPRS \
    "mov %rax, pyhv_out+0(%rip)\n mov %rcx, pyhv_out+8(%rip)\n mov %rdx, pyhv_out+16(%rip)\n" \
    "mov %rbx, pyhv_out+24(%rip)\n mov %rsp, pyhv_out+32(%rip)\n mov %rbp, pyhv_out+40(%rip)\n" \
    "mov %rsi, pyhv_out+48(%rip)\n mov %rdi, pyhv_out+56(%rip)\n mov %r8, pyhv_out+64(%rip)\n" \
    "mov %r9, pyhv_out+72(%rip)\n mov %r10, pyhv_out+80(%rip)\n mov %r11, pyhv_out+88(%rip)\n" \
    "mov %r12, pyhv_out+96(%rip)\n mov %r13, pyhv_out+104(%rip)\n mov %r14, pyhv_out+112(%rip)\n" \
    "mov %r15, pyhv_out+120(%rip)\n" \
    "mov pyhv_host_rsp(%rip), %rsp\n pushfq\n popq pyhv_out+128(%rip)\n cld\n"

#define PUSH_CALLEE_SAVED "push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
#define POP_CALLEE_SAVED "pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"

__asm__(
    ".text\n"
    ".type pyhv_enter64, @function\n"
    "pyhv_enter64:\n"
    PUSH_CALLEE_SAVED
    "mov %rsp, pyhv_host_rsp(%rip)\n"
    LOAD_GPRS
    "jmp *pyhv_entry(%rip)\n"

    ".type pyhv_save64, @function\n"
    "pyhv_save64:\n"
    SAVE_GPRS
    POP_CALLEE_SAVED
    "ret\n"

    ".type pyhv_enter32, @function\n"
    "pyhv_enter32:\n"
    PUSH_CALLEE_SAVED
    "mov %rsp, pyhv_host_rsp(%rip)\n"
    /* 64-bit processes run with null DS/ES, which compatibility mode cannot use */
    "mov %ds, %eax\n mov %rax, pyhv_saved_ds(%rip)\n"
    "mov %es, %eax\n mov %rax, pyhv_saved_es(%rip)\n"
    "mov $0x2b, %eax\n mov %eax, %ds\n mov %eax, %es\n"
    LOAD_GPRS
    "ljmpl *pyhv_far32(%rip)\n"

    ".type pyhv_save32, @function\n"
    "pyhv_save32:\n"
    SAVE_GPRS
    "mov pyhv_saved_ds(%rip), %rax\n mov %eax, %ds\n"
    "mov pyhv_saved_es(%rip), %rax\n mov %eax, %es\n"
    POP_CALLEE_SAVED
    "ret\n");

static struct {
    int mapped;
    uint64_t region, region_size, code, code_max, stub, data, data_size, guard;
} lay;

/* Map the region (below 4 GiB) at its fixed address, with the page at `guard` read-only
 * (writes to it fault): 0, or a negative errno. */
int pyhv_native_init(uint64_t region, uint64_t region_size, uint64_t code, uint64_t code_max,
                     uint64_t stub, uint64_t data, uint64_t data_size, uint64_t guard)
{
    if (lay.mapped)
        return lay.region == region ? 0 : -EBUSY;
    if (region + region_size > (1ull << 32) || code < region || code + code_max > stub ||
        stub + 16 > data || data + data_size > guard || guard + 4096 > region + region_size ||
        guard % 4096)
        return -EINVAL;
    void *p = mmap((void *)(uintptr_t)region, region_size, PROT_READ | PROT_WRITE | PROT_EXEC,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    if (p != (void *)(uintptr_t)region) {
        munmap(p, region_size);
        return -EEXIST;
    }
    lay.region = region;
    lay.region_size = region_size;
    lay.code = code;
    lay.code_max = code_max;
    lay.stub = stub;
    lay.data = data;
    lay.data_size = data_size;
    lay.guard = guard;
    if (mprotect((void *)(uintptr_t)guard, 4096, PROT_READ) != 0) {
        munmap(p, region_size);
        return -errno;
    }
    /* the 64-bit landing pad of 32-bit snippets: jmp *[rip+0]; .quad pyhv_save32 */
    uint8_t *stub_at = (uint8_t *)(uintptr_t)stub;
    uint64_t target = (uint64_t)(uintptr_t)pyhv_save32;
    memcpy(stub_at, "\xff\x25\x00\x00\x00\x00", 6);
    memcpy(stub_at + 6, &target, 8);
    lay.mapped = 1;
    return 0;
}

/* The code after a snippet that hands control back to the trampolines. */
static size_t epilogue(uint8_t *at, int mode32)
{
    if (mode32) {   /* jmp far 0x33:stub */
        uint32_t off = (uint32_t)lay.stub;
        uint16_t sel = USER64_CS;
        at[0] = 0xea;
        memcpy(at + 1, &off, 4);
        memcpy(at + 5, &sel, 2);
        return 7;
    }
    uint64_t target = (uint64_t)(uintptr_t)pyhv_save64;   /* jmp *[rip+0] */
    memcpy(at, "\xff\x25\x00\x00\x00\x00", 6);
    memcpy(at + 6, &target, 8);
    return 14;
}

/* A snippet that faults natively must not take the process with it: the fault signals
 * run a handler on an alternate stack (the snippet's RSP is arbitrary) that jumps back
 * to the case loop. */
static const int fault_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP };
#define NFAULT (sizeof(fault_signals) / sizeof(fault_signals[0]))
static sigjmp_buf fault_env;
static volatile sig_atomic_t fault_signal;
static uint8_t fault_stack[1 << 16];

/* mcontext's general registers in encoding order */
static const int greg_of[16] = { REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI,
                                 REG_RDI, REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13,
                                 REG_R14, REG_R15 };

static void on_fault(int sig, siginfo_t *info, void *context)
{
    (void)info;
    const greg_t *g = ((ucontext_t *)context)->uc_mcontext.gregs;
    for (int r = 0; r < 16; r++)
        pyhv_out[r] = (uint64_t)g[greg_of[r]];
    pyhv_out[SLOT_RFLAGS] = (uint64_t)g[REG_EFL];
    pyhv_out[SLOT_FAULT_RIP] = (uint64_t)g[REG_RIP];
    pyhv_out[SLOT_VECTOR] = (uint64_t)g[REG_TRAPNO];
    fault_signal = sig;
    siglongjmp(fault_env, 1);
}

/* Run n cases.  Case k executes code[k*code_stride .. +code_len[k]] with registers
 * regs_in[k*PYHV_NREGS ..] (RAX..R15 in encoding order, then RFLAGS) and the data buffer
 * mem_in[k*mem_len ..] at the data address; results go to regs_out (with the signal
 * slots: the state at the fault if the snippet raised one) and mem_out.  All other
 * signals are blocked meanwhile.  Returns 0, or a negative errno. */
int pyhv_native_run(int mode32, size_t n, const uint8_t *code, const uint32_t *code_len,
                    size_t code_stride, const uint64_t *regs_in, uint64_t *regs_out,
                    const uint8_t *mem_in, uint8_t *mem_out, size_t mem_len)
{
    if (!lay.mapped || mem_len > lay.data_size)
        return -EINVAL;
    for (size_t k = 0; k < n; k++)
        if (code_len[k] + 16 > lay.code_max)
            return -E2BIG;
    sigset_t blocked, old_mask;
    sigfillset(&blocked);
    for (size_t j = 0; j < NFAULT; j++)
        sigdelset(&blocked, fault_signals[j]);
    struct sigaction act = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER };
    sigemptyset(&act.sa_mask);
    struct sigaction old_act[NFAULT];
    stack_t alt = { .ss_sp = fault_stack, .ss_size = sizeof(fault_stack) }, old_alt;
    pthread_sigmask(SIG_SETMASK, &blocked, &old_mask);
    sigaltstack(&alt, &old_alt);
    for (size_t j = 0; j < NFAULT; j++)
        sigaction(fault_signals[j], &act, &old_act[j]);

    pyhv_entry = lay.code;
    pyhv_far32.off = (uint32_t)lay.code;
    pyhv_far32.sel = USER32_CS;
    for (size_t k = 0; k < n; k++) {
        size_t len = code_len[k];
        uint8_t *at = (uint8_t *)(uintptr_t)lay.code;
        memcpy(at, code + k * code_stride, len);
        epilogue(at + len, mode32);
        memcpy((void *)(uintptr_t)lay.data, mem_in + k * mem_len, mem_len);
        memcpy(pyhv_in, regs_in + k * PYHV_NREGS, sizeof(pyhv_in));
        /* only the arithmetic flags and DF come from the case (IF stays set, TF/AC clear) */
        pyhv_in[SLOT_RFLAGS] = (pyhv_in[SLOT_RFLAGS] & 0xcd5) | 0x202;
        fault_signal = 0;
        memset(pyhv_out, 0, sizeof(pyhv_out));
        if (sigsetjmp(fault_env, 0) == 0) {
            if (mode32)
                pyhv_enter32();
            else
                pyhv_enter64();
        } else if (mode32) {
                __asm__ volatile("mov %k0, %%ds\n mov %k1, %%es"
                                 :: "r"(pyhv_saved_ds), "r"(pyhv_saved_es));
        }
        pyhv_out[SLOT_SIGNAL] = (uint64_t)fault_signal;
        memcpy(regs_out + k * PYHV_NREGS, pyhv_out, sizeof(pyhv_out));
        memcpy(mem_out + k * mem_len, (void *)(uintptr_t)lay.data, mem_len);
    }

    for (size_t j = 0; j < NFAULT; j++)
        sigaction(fault_signals[j], &old_act[j], NULL);
    sigaltstack(&old_alt, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    return 0;
}
