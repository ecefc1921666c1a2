/* The execution engine: decoded-block cache keyed by host-physical address, threaded
 * dispatch through each instruction's handler, event checks at block boundaries, and
 * root-mode emulation of single instructions for the hypervisor. */
#include <stdlib.h>
#include <time.h>
#include "exec.h"
#include "apicv.h"
#include "vmx_state.h"

cpu_t *cpu_new(silicon_t *sil, int apic_id)
{
    cpu_t *cpu = calloc(1, sizeof(*cpu));
    if (!cpu)
        return NULL;
    cpu->block_hash = calloc((size_t)1 << BLOCK_HASH_BITS, sizeof(block_t *));
    cpu->block_arena = malloc(BLOCK_ARENA_SIZE);   /* its pages are touched as it fills */
    if (!cpu->block_hash || !cpu->block_arena) {
        free(cpu->block_hash);
        free(cpu->block_arena);
        free(cpu);
        return NULL;
    }
    jit_init(cpu);
    cpu->sil = sil;
    cpu->apic_id = apic_id;
    cpu->current_vmcs = NO_VMCS;
    cpu->apic_write_offset = -1;
    cpu->tlb_apic_access_page = ~0ull;
    cpu->msr_pat = 0x0007040600070406ull;
    cpu->msr_apic_base = 0xfee00000ull | (1ull << 11) | (apic_id == 0 ? (1ull << 8) : 0);
    cpu->msr_misc_enable = 1;   /* fast strings */
    cpu->efer = EFER_LME | EFER_LMA;   /* root mode is 64-bit */
    cpu->tlb_cpl = cpu->tlb[0];
    cpu->xcr0 = 1;
    fpu_reset(cpu);
    cpu->dr[6] = 0xffff0ff0ull;
    cpu->dr[7] = 0x400;
    tlb_flush_all(cpu, 0);
    pthread_mutex_init(&cpu->wait_lock, NULL);
    pthread_cond_init(&cpu->wait_cond, NULL);
    pthread_mutex_lock(&sil->lock);
    if (sil->ncpus >= 256) {
        pthread_mutex_unlock(&sil->lock);
        jit_free(cpu);
        free(cpu->block_hash);
        free(cpu->block_arena);
        free(cpu);
        return NULL;
    }
    sil->cpus[sil->ncpus] = cpu;
    __atomic_store_n(&sil->ncpus, sil->ncpus + 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&sil->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&sil->lock);
    return cpu;
}

void cpu_free(cpu_t *cpu)
{
    if (!cpu)
        return;
    silicon_t *sil = cpu->sil;
    pthread_mutex_lock(&sil->lock);
    for (int k = 0; k < sil->ncpus; k++)
        if (sil->cpus[k] == cpu) {
            sil->cpus[k] = sil->cpus[sil->ncpus - 1];
            sil->ncpus--;
            break;
        }
    pthread_mutex_unlock(&sil->lock);
    pthread_mutex_destroy(&cpu->wait_lock);
    pthread_cond_destroy(&cpu->wait_cond);
    jit_free(cpu);
    free(cpu->block_hash);
    free(cpu->block_arena);
    free(cpu);
    silicon_release(sil);
}

void cpu_get_gprs(cpu_t *cpu, uint64_t *gprs16) { memcpy(gprs16, cpu->gpr, sizeof(cpu->gpr)); }
void cpu_set_gprs(cpu_t *cpu, const uint64_t *gprs16) { memcpy(cpu->gpr, gprs16, sizeof(cpu->gpr)); }
uint64_t cpu_instructions_retired(cpu_t *cpu) { return cpu->retired; }
uint64_t cpu_get_cr2(cpu_t *cpu) { return cpu->cr2; }
void cpu_set_cr2(cpu_t *cpu, uint64_t value) { cpu->cr2 = value; }
uint64_t cpu_get_xcr0(cpu_t *cpu) { return cpu->xcr0; }
void cpu_set_xcr0(cpu_t *cpu, uint64_t value) { cpu->xcr0 = value; }

#define HOST_KICK_VECTOR 0xf2

void cpu_interrupt(cpu_t *cpu, uint8_t vector)
{
    __atomic_fetch_or(&cpu->interrupt_requests[vector >> 6], 1ull << (vector & 63), __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&cpu->wait_lock);
    __atomic_store_n(&cpu->kicked, 1, __ATOMIC_RELEASE);
    pthread_cond_signal(&cpu->wait_cond);
    pthread_mutex_unlock(&cpu->wait_lock);
}

void cpu_kick(cpu_t *cpu)
{
    cpu_interrupt(cpu, HOST_KICK_VECTOR);
}

/* A store hit a page that instructions were decoded from: retire those blocks. */
void code_page_written(cpu_t *cpu, uint64_t hpa)
{
    silicon_invalidate_code(cpu->sil, hpa & PAGE_MASK, PAGE_SIZE);
    cpu->stop_block = 1;
}

/* Decode at linear `lin` into `out`; an instruction crossing a page boundary is
 * assembled from both pages.  Returns 1 if it may be cached in a block. */
static int decode_at(cpu_t *cpu, uint64_t lin, insn_t *out, uint64_t *hpa)
{
    uint8_t *p = fetch_ptr(cpu, lin, hpa);
    if (!p)
        FAULT(cpu, EXC_UD);   /* fetch from memory that no RAM backs */
    int avail = (int)(PAGE_SIZE - (lin & 0xfff));
    int n = decode_bytes(p, avail < 15 ? avail : 15, cpu->code_size, out);
    if (n > 0)
        return 1;
    if (n == -2 || avail >= 15) {
        out->fn = op_ud;
        out->op = 0xff;
        out->len = 15;
        return 0;
    }
    uint8_t buf[15];
    memcpy(buf, p, (size_t)avail);
    uint8_t *q = fetch_ptr(cpu, (lin + (uint64_t)avail) & (cpu->code_size == 8 ? ~0ull : 0xffffffffull), NULL);
    if (!q)
        FAULT(cpu, EXC_UD);
    memcpy(buf + avail, q, (size_t)(15 - avail));
    if (decode_bytes(buf, 15, cpu->code_size, out) < 0) {
        out->fn = op_ud;
        out->op = 0xff;
        out->len = 15;
    }
    return 0;
}

int decode_insn(cpu_t *cpu, uint64_t rip, insn_t *out)
{
    uint64_t hpa;
    return decode_at(cpu, cpu->seg[S_CS].base + rip, out, &hpa);
}

static inline uint64_t code_linear(cpu_t *cpu, uint64_t rip)
{
    return (cpu->seg_fast_base[S_CS] + rip) & cpu->lin_mask;
}

/* Room at the arena's end for a block of BLOCK_MAX_INSNS; when there is none, every
 * block is dropped, and the jump cache's entries with them (a new epoch). */
static block_t *block_space(cpu_t *cpu)
{
    if (cpu->block_arena_used + sizeof(block_t) + BLOCK_MAX_INSNS * sizeof(insn_t) > BLOCK_ARENA_SIZE ||
        cpu->jit_full) {
        memset(cpu->block_hash, 0, sizeof(block_t *) << BLOCK_HASH_BITS);
        cpu->block_arena_used = 0;
        jit_reset(cpu);
        cpu->tlb_epoch[0]++;
        cpu->tlb_epoch[1]++;
    }
    return (block_t *)(cpu->block_arena + cpu->block_arena_used);
}

static inline block_t **block_bucket(cpu_t *cpu, uint64_t hpa)
{
    return &cpu->block_hash[(hpa * 0x9e3779b97f4a7c15ull) >> (64 - BLOCK_HASH_BITS)];
}

/* Decode the block at `lin` into the arena's free space; it joins the cache only once
 * complete (decoding can leave through a fault: a page-crossing fetch from a page that
 * is not mapped). */
static block_t *build_block(cpu_t *cpu, uint64_t lin, uint64_t hpa, uint32_t *code_word)
{
    uint32_t w = __atomic_load_n(code_word, __ATOMIC_ACQUIRE);
    if (!(w & 1)) {
        __atomic_fetch_or(code_word, 1u, __ATOMIC_ACQ_REL);
        tlb_drop_code_page_writes(cpu->sil, hpa & PAGE_MASK);
        w |= 1;
    }
    block_t *b = block_space(cpu);
    b->mode = (uint32_t)cpu->code_size;
    b->code_word = code_word;
    b->n = 0;
    b->fast_only = 1;
    b->jit = NULL;
    b->runs = 0;
    uint8_t guest = 0;
    uint64_t first = lin, page_end = (lin & PAGE_MASK) + PAGE_SIZE;
    while (b->n < BLOCK_MAX_INSNS && guest < UINT8_MAX) {
        insn_t *in = &b->insns[b->n];
        uint64_t h;
        int avail = (int)(page_end - lin);
        if (avail < 15 && b->n > 0)
            break;   /* may cross the page: it starts a block of its own */
        if (!decode_at(cpu, lin, in, &h)) {
            if (b->n == 0)
                return NULL;   /* page-crossing instruction: execute it uncached */
            break;
        }
        in->rip_off = (uint16_t)(lin - first);
        insn_fn generic = in->fn;
        specialize_insn(in);
        b->fast_only &= in->fn != generic || generic == op_nop;
        lin += in->len;
        /* a NOP (function entries have two: ENDBR64 and ftrace's) gives its entry to the
         * instruction after it: only the offsets of the entries say where they are */
        int after_nop = b->n > 0 && b->insns[b->n - 1].fn == op_nop;
        if (after_nop)
            b->insns[--b->n] = *in;
        in = &b->insns[b->n];
        if (b->n > 0 && !after_nop && fuse_compare_branch(&b->insns[b->n - 1], in))
            in = &b->insns[b->n - 1];
        else
            b->n++;
        in->guest_count = ++guest;
        /* a conditional branch leaves the block only when taken: the block goes on
         * along the fall-through path */
        if (in->ends_block || lin >= page_end)
            break;
    }
    optimize_block(b);
    b->hpa = hpa;
    b->gen = w;
    cpu->block_arena_used += (sizeof(block_t) + b->n * sizeof(insn_t) + 15) & ~(size_t)15;
    /* the new block takes the place of a stale one of the same code */
    block_t **link = block_bucket(cpu, hpa);
    cpu->jit_stats.blocks++;
    for (block_t **p = link; *p; p = &(*p)->next)
        if ((*p)->hpa == hpa && (*p)->mode == b->mode) {
            *p = (*p)->next;
            cpu->jit_stats.blocks--;
            cpu->jit_stats.invalidated++;
            break;
        }
    b->next = *link;
    *link = b;
    return b;
}

static __attribute__((noinline)) block_t *lookup_block_slow(cpu_t *cpu, uint64_t lin, uint32_t key,
                                                            jump_cache_entry_t *jc)
{
    int user = cpu->cpl == 3;
    tlb_entry_t *e = &cpu->tlb[user][(lin >> 12) & (TLB_SIZE - 1)];
    if (unlikely(e->tag_exec != (lin & PAGE_MASK))) {
        cpu->emul_hit_gpa = ~0ull;
        e = tlb_fill(cpu, lin, ACC_EXEC, user);
        if (!e)
            FAULT(cpu, EXC_UD);
    }
    uint64_t hpa = e->hpa | (lin & 0xfff);
    uint32_t mode = (uint32_t)cpu->code_size;
    block_t *b = *block_bucket(cpu, hpa);
    while (b && !(b->hpa == hpa && b->mode == mode))
        b = b->next;
    if (!b || b->gen != __atomic_load_n(e->code_word, __ATOMIC_ACQUIRE))
        b = build_block(cpu, lin, hpa, e->code_word);
    if (b) {
        jc->lin = lin;
        jc->key = (uint16_t)key;
        jc->global = e->global;
        jc->epoch = cpu->tlb_epoch[e->global];
        jc->block = b;
    }
    return b;
}

static inline block_t *lookup_block(cpu_t *cpu, uint64_t rip)
{
    uint64_t lin = code_linear(cpu, rip);
    uint32_t key = cpu->code_key;
    jump_cache_entry_t *jc = &cpu->jump_cache[(lin ^ (lin >> 12)) & (JUMP_CACHE_SIZE - 1)];
    if (likely(jc->lin == lin && jc->key == key && jc->epoch == cpu->tlb_epoch[jc->global])) {
        block_t *b = jc->block;
        if (likely(b->gen == __atomic_load_n(b->code_word, __ATOMIC_ACQUIRE)))
            return b;
    }
    return lookup_block_slow(cpu, lin, key, jc);
}

static void execute_one(cpu_t *cpu, const insn_t *in)
{
    cpu->next_rip = cpu->rip + in->len;
    in->fn(cpu, in);
    cpu->rip = cpu->next_rip;
    cpu->retired++;
}

/* Execute exactly one instruction (page-crossing code, and step_checked below). */
static void step_one(cpu_t *cpu)
{
    block_t *b = lookup_block(cpu, cpu->rip);
    if (b && !b->insns[0].fused && !b->insns[0].flags_dead && b->insns[0].rip_off == 0) {
        execute_one(cpu, &b->insns[0]);
        return;
    }
    decode_insn(cpu, cpu->rip, &cpu->scratch_insn);
    execute_one(cpu, &cpu->scratch_insn);
}

/* Does the next instruction need step_checked rather than the block loop? */
static inline int needs_checked_step(cpu_t *cpu)
{
    return (cpu->interruptibility & 3) || (cpu->rflags & (F_RF | F_TF)) ||
           (cpu->vc.proc & CPU_MONITOR_TRAP_FLAG) ||
           (cpu->dbg_exec && debug_code_page(cpu, code_linear(cpu, cpu->rip)));
}

/* One instruction with the checks the block loop leaves out: an instruction breakpoint
 * (unless RF), the end of an interrupt shadow and of RF, the single-step trap when TF
 * was set as the instruction began (SDM Vol. 3 18.3.1.4), and the MTF VM exit after it. */
static void step_checked(cpu_t *cpu)
{
    if (cpu->dbg_exec && !(cpu->rflags & F_RF))
        debug_code_breakpoint(cpu, code_linear(cpu, cpu->rip));
    uint64_t tf = cpu->rflags & F_TF;
    cpu->interruptibility &= ~3u;
    cpu->rflags &= ~(uint64_t)F_RF;   /* RF lasts for one instruction (IRET may set it again) */
    step_one(cpu);
    if (tf)
        pend_debug_traps(cpu, DR6_BS);
    if (cpu->vc.proc & CPU_MONITOR_TRAP_FLAG)
        pend_mtf_exit(cpu);
}

static void inject_event(cpu_t *cpu)
{
    uint32_t info = cpu->inject_info;
    cpu->inject_info = 0;
    int type = (int)((info >> 8) & 7), vector = (int)(info & 0xff);
    uint64_t ret = cpu->rip;
    if (type == EV_SW_INT || type == EV_PRIV_SW_EXC || type == EV_SW_EXC)
        ret += cpu->inject_len;
    cpu->next_rip = ret;   /* next_rip - rip: the length an exit during delivery reports */
    cpu->activity = 0;
    if (type == EV_NMI)
        cpu->interruptibility |= 8;
    /* pending debug exceptions do not survive the injection of anything but a software
     * interrupt or exception (SDM Vol. 3 27.7.3) */
    if (type != EV_SW_INT && type != EV_SW_EXC)
        cpu->pending_dbg = 0;
    deliver_event(cpu, type, vector, (info & INTR_INFO_DELIVER_CODE) != 0, cpu->inject_error, ret);
    if (cpu->vc.proc & CPU_MONITOR_TRAP_FLAG)
        pend_mtf_exit(cpu);   /* before the handler's first instruction */
}

/* Clear the request for `vector`; was it requested? */
static int take_request(cpu_t *cpu, unsigned vector)
{
    uint64_t bit = 1ull << (vector & 63);
    return (__atomic_fetch_and(&cpu->interrupt_requests[vector >> 6], ~bit, __ATOMIC_ACQ_REL) & bit) != 0;
}

/* The highest requested vector, its request cleared; -1 when none. */
static int take_highest_request(cpu_t *cpu)
{
    for (int k = 3; k >= 0; k--) {
        uint64_t w;
        while ((w = __atomic_load_n(&cpu->interrupt_requests[k], __ATOMIC_ACQUIRE)) != 0) {
            unsigned vector = (unsigned)k * 64 + 63 - (unsigned)__builtin_clzll(w);
            if (take_request(cpu, vector))
                return (int)vector;
        }
    }
    return -1;
}

/* Interrupts to the physical processor (a kick is the host's vector): with
 * external-interrupt exiting they end the guest's run (the hypervisor's way to regain
 * control), except the posted-interrupt notification, which posted-interrupt processing
 * consumes; without it they are dropped. */
static void take_kick(cpu_t *cpu)
{
    if (!cpu->kicked)
        return;
    __atomic_store_n(&cpu->kicked, 0, __ATOMIC_RELEASE);
    if ((cpu->vc.pin & PIN_POSTED_INTERRUPTS) && take_request(cpu, cpu->vc.posted_intr_nv))
        apicv_posted_interrupt(cpu);
    int vector = take_highest_request(cpu);
    if (vector < 0)
        return;
    if (!(cpu->vc.pin & PIN_EXT_INTR_EXITING)) {
        while (take_highest_request(cpu) >= 0)
            ;
        return;
    }
    for (int k = 0; k < 4; k++)
        if (__atomic_load_n(&cpu->interrupt_requests[k], __ATOMIC_ACQUIRE))
            __atomic_store_n(&cpu->kicked, 1, __ATOMIC_RELEASE);   /* taken at the next entry */
    exit_info_t ei = {0};
    ei.reason = EXIT_REASON_EXTERNAL_INTERRUPT;
    if (cpu->vc.exit_ctl & EXIT_ACK_INTR_ON_EXIT)
        ei.intr_info = INTR_INFO_VALID | (uint32_t)vector;
    vm_exit(cpu, &ei);
}

static void preemption_timer_check(cpu_t *cpu)
{
    if ((cpu->boundary_controls & BOUNDARY_PREEMPTION_TIMER) && host_tsc() >= cpu->vc.preemption_deadline)
        vm_exit_simple(cpu, EXIT_REASON_PREEMPTION_TIMER, 0);
}

/* Sleep in the HLT activity state until kicked, or until the preemption timer fires. */
static void wait_while_halted(cpu_t *cpu)
{
    struct timespec until;
    int timed = (cpu->boundary_controls & BOUNDARY_PREEMPTION_TIMER) != 0;
    if (timed) {
        uint64_t now = host_tsc(), deadline = cpu->vc.preemption_deadline;
        uint64_t ns = deadline > now ? tsc_ticks_to_ns(deadline - now) : 0;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec += (long)(ns % 1000000000u);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&cpu->wait_lock);
    while (!cpu->kicked) {
        if (!timed)
            pthread_cond_wait(&cpu->wait_cond, &cpu->wait_lock);
        else if (pthread_cond_timedwait(&cpu->wait_cond, &cpu->wait_lock, &until) != 0)
            break;
    }
    pthread_mutex_unlock(&cpu->wait_lock);
}

/* Whether the controls in boundary_controls can act at the next boundary: a window
 * exit cannot while the guest blocks what it waits for, and the instructions that
 * unblock it (STI, POPF, IRET) end their block. */
static inline int boundary_controls_armed(const cpu_t *cpu)
{
    uint32_t bc = cpu->boundary_controls;
    if (!(cpu->rflags & F_IF))
        bc &= ~CPU_INTR_WINDOW_EXITING;
    if (cpu->interruptibility & 8)
        bc &= ~CPU_NMI_WINDOW_EXITING;
    return bc != 0;
}

/* Checks made at every block boundary, in the SDM's priority order: MTF VM exits, then
 * the debug traps of the previous instruction (held over one instruction by MOV SS),
 * then the rest (SDM Vol. 3 6.9 and 26.7). */
static void boundary_events(cpu_t *cpu)
{
    if (cpu->boundary_controls & BOUNDARY_APIC_TRAP)
        apicv_trap(cpu);
    if (cpu->boundary_controls & BOUNDARY_DEBUG) {
        if (cpu->mtf_pending) {
            cpu->mtf_pending = 0;
            vm_exit_simple(cpu, EXIT_REASON_MONITOR_TRAP_FLAG, 0);
        }
        if (cpu->pending_dbg && !(cpu->interruptibility & 2))
            debug_deliver_pending(cpu);
        if (!cpu->pending_dbg)
            cpu->boundary_controls &= ~BOUNDARY_DEBUG;
    }
    take_kick(cpu);
    while (cpu->activity == 1) {
        if ((cpu->vc.proc & CPU_INTR_WINDOW_EXITING) && (cpu->rflags & F_IF))
            vm_exit_simple(cpu, EXIT_REASON_INTERRUPT_WINDOW, 0);
        if ((cpu->boundary_controls & BOUNDARY_VIRTUAL_INTR) && (cpu->rflags & F_IF))
            break;   /* delivered below: virtual interrupts wake HLT as external ones do */
        preemption_timer_check(cpu);
        wait_while_halted(cpu);
        take_kick(cpu);   /* a kick is an external interrupt: exits, or is dropped */
    }
    if ((cpu->boundary_controls & BOUNDARY_PREEMPTION_TIMER) && (++cpu->timer_polls & 15) == 0)
        preemption_timer_check(cpu);
    int shadow = (cpu->interruptibility & 3) != 0;
    if ((cpu->vc.proc & CPU_INTR_WINDOW_EXITING) && (cpu->rflags & F_IF) && !shadow)
        vm_exit_simple(cpu, EXIT_REASON_INTERRUPT_WINDOW, 0);
    if ((cpu->vc.proc & CPU_NMI_WINDOW_EXITING) && !(cpu->interruptibility & (8 | 2)))
        vm_exit_simple(cpu, EXIT_REASON_NMI_WINDOW, 0);
    if ((cpu->boundary_controls & BOUNDARY_VIRTUAL_INTR) && (cpu->rflags & F_IF) && !shadow)
        apicv_deliver(cpu);
}

/* Run block b once from `start` (its linear RIP): the instructions retired are added,
 * and the RIP it was left at is returned.
 * RIP stays in registers from one instruction to the next: an instruction's is the
 * block's plus its offset, stored only for those that may fault or exit.  next_rip is
 * stored only for the instructions that may branch, and only compared after them, so
 * that a reload is not on the path of every instruction; a changed next_rip is a
 * control transfer and ends the block. */
static inline __attribute__((always_inline)) uint64_t interpret_block(cpu_t *cpu, const block_t *b, uint64_t start)
{
    const insn_t *in = b->insns, *end = b->insns + b->n;
    uint64_t rip;
    for (;;) {
        if (in->kind == INSN_PLAIN) {
            in->fn(cpu, in);
            if (++in < end)
                continue;
            break;
        }
        uint64_t at = start + in->rip_off;
        cpu->rip = at;
        if (in->kind == INSN_MEMORY) {
            in->fn(cpu, in);
            in++;
        } else {
            uint64_t next = at + in->len;
            cpu->next_rip = next;
            in->fn(cpu, in);
            in++;
            if (unlikely(cpu->next_rip != next)) {
                rip = cpu->next_rip;
                goto left;
            }
        }
        if (in >= end || cpu->stop_block)
            break;
    }
    rip = start + in[-1].rip_off + in[-1].len;
left:
    cpu->retired += in[-1].guest_count;
    return rip;
}

/* The instruction loop; it ends only by a VM exit or a fault unwinding through it.
 * Apart from cpu_run_guest's setjmp, so that its locals stay in registers. */
static __attribute__((noinline, noreturn)) void run_loop(cpu_t *cpu)
{
    for (;;) {
        /* whether the block must stop at its end for the boundary checks: it stays
         * false while nothing in the block can open an interrupt or NMI window */
        int armed = boundary_controls_armed(cpu);
        if (unlikely(cpu->kicked | cpu->activity | (cpu->interruptibility & 3) | armed)) {
            boundary_events(cpu);
            armed = boundary_controls_armed(cpu);
        }
        if (unlikely(needs_checked_step(cpu))) {
            step_checked(cpu);
            continue;
        }
        block_t *b = lookup_block(cpu, cpu->rip);
        if (unlikely(!b)) {
            step_one(cpu);
            continue;
        }
        /* a block that jumps back to its own start runs again without a lookup: nothing
         * that could change its translation or its code happens without stop_block */
        uint64_t start = cpu->rip, rip;
        int recheck = !b->fast_only;
        for (;;) {
            cpu->stop_block = 0;
            jit_code_t code = b->jit;
            if (!code && ++b->runs == cpu->jit_hot_runs) {
                jit_compile(cpu, b, start);
                code = b->jit;
            }
            if (code) {
                if (cpu->jit_unlinked)
                    jit_link(cpu, b);
                rip = code(cpu, start);
            } else {
                cpu->jit_unlinked = NULL;
                rip = interpret_block(cpu, b, start);
            }
            if (likely(rip == start) && !(cpu->stop_block | cpu->kicked | armed) &&
                !(recheck && boundary_controls_armed(cpu)))
                continue;
            cpu->rip = rip;
            break;
        }
    }
}

void cpu_run_guest(cpu_t *cpu)
{
    cpu->jit_unlinked = NULL;
    if (setjmp(cpu->fault_jmp)) {
        /* an exception or interrupt was delivered through the guest IDT: carry on at the
         * handler (with MTF, after an exit before its first instruction) */
        cpu->delivering = 0;
        cpu->stop_block = 0;
        if (cpu->vc.proc & CPU_MONITOR_TRAP_FLAG)
            pend_mtf_exit(cpu);
    } else if (cpu->inject_info & INTR_INFO_VALID) {
        inject_event(cpu);
    }
    run_loop(cpu);
}

/* KVM's emulator: one guest instruction in root mode, with guest state from the VMCS
 * and the MMIO page routed to `m`.  The outcome is reported in m->result. */
int cpu_emulate_mmio(cpu_t *cpu, struct mmio_emulation *m)
{
    if (!cpu->vmx_on || cpu->current_vmcs == NO_VMCS)
        return -1;
    uint64_t saved_gprs[16];
    m->result = 0;
    uint64_t host_rsp = guest_context_enter(cpu);
    memcpy(saved_gprs, cpu->gpr, sizeof(saved_gprs));
    tlb_select_context(cpu);
    cpu->emul = m;
    cpu->delivering = 0;
    cpu->rflags &= ~(uint64_t)F_RF;   /* as at the start of any instruction */
    if (setjmp(cpu->exit_jmp) == 0) {
        insn_t in;
        decode_insn(cpu, cpu->rip, &in);
        execute_one(cpu, &in);
        save_guest_state(cpu);
    } else if (m->result == 3) {
        save_guest_state(cpu);   /* the fault is the instruction's; CR2 is already set */
    } else {
        memcpy(cpu->gpr, saved_gprs, sizeof(saved_gprs));   /* retried later */
    }
    guest_context_leave(cpu, host_rsp);
    return 0;
}
