/* System instructions: control and debug registers, descriptor tables, MSRs, the TSC,
 * HLT, interrupt flag, cache and TLB control, and the instructions that VM-exit in
 * VMX non-root operation (SDM Vol. 3 Chapter 26). */
#include <time.h>
#include <x86intrin.h>
#include "exec.h"
#include "apicv.h"
#include "vmx_caps.h"

static void require_cpl0(cpu_t *cpu)
{
    if (cpu->cpl != 0)
        FAULT_ERR(cpu, EXC_GP, 0);
}

static void require_protected(cpu_t *cpu)
{
    if (cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86)
        FAULT(cpu, EXC_UD);
}

void op_ud(cpu_t *cpu, const insn_t *i)
{
    if (i->op == 0xff)
        FAULT_ERR(cpu, EXC_GP, 0);   /* longer than 15 bytes */
    FAULT(cpu, EXC_UD);
}

void op_hlt(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    require_cpl0(cpu);
    if (cpu->vc.proc & CPU_HLT_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_HLT, 0);
    cpu->activity = 1;   /* HLT activity state until an event arrives */
    cpu->stop_block = 1;
}

static int iopl(cpu_t *cpu) { return (int)((cpu_get_rflags(cpu) >> 12) & 3); }

void op_cli(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if ((cpu->cr0 & CR0_PE) && cpu->cpl > iopl(cpu))
        FAULT_ERR(cpu, EXC_GP, 0);
    cpu->rflags &= ~(uint64_t)F_IF;
}

void op_sti(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if ((cpu->cr0 & CR0_PE) && cpu->cpl > iopl(cpu))
        FAULT_ERR(cpu, EXC_GP, 0);
    if (!(cpu->rflags & F_IF))
        cpu->interruptibility |= 1;   /* blocking by STI for one instruction */
    cpu->rflags |= F_IF;
}

void op_pushf(cpu_t *cpu, const insn_t *i)
{
    if (cpu->mode == MODE_VM86 && iopl(cpu) < 3)
        FAULT_ERR(cpu, EXC_GP, 0);
    push(cpu, i->opsize, cpu_get_rflags(cpu) & ~(uint64_t)(F_VM | F_RF));
}

void op_popf(cpu_t *cpu, const insn_t *i)
{
    if (cpu->mode == MODE_VM86 && iopl(cpu) < 3)
        FAULT_ERR(cpu, EXC_GP, 0);
    uint64_t v = pop(cpu, i->opsize);
    uint64_t cur = cpu_get_rflags(cpu);
    uint64_t changeable = F_ARITH | F_TF | F_DF | F_NT | F_AC | F_ID;
    if (cpu->cpl == 0)
        changeable |= F_IOPL;
    if (cpu->cpl <= iopl(cpu) || cpu->mode == MODE_REAL16)
        changeable |= F_IF;
    if (cpu->mode == MODE_REAL16)
        changeable |= F_IOPL;
    if (i->opsize == 2)
        changeable &= 0xffff;
    cpu_set_rflags(cpu, (cur & ~changeable) | (v & changeable));
}

/* ---- descriptor tables ---- */

static void desc_table_exit(cpu_t *cpu, const insn_t *i, int reason, int kind);

static void load_dtr(cpu_t *cpu, const insn_t *i, dtr_t *d, int kind)
{
    require_cpl0(cpu);
    desc_table_exit(cpu, i, EXIT_REASON_GDTR_IDTR, kind);
    uint64_t ea = ea_of(cpu, i);
    uint16_t limit = (uint16_t)mem_read(cpu, i->seg, ea, 2);
    uint64_t base = mem_read(cpu, i->seg, (ea + 2) & size_mask(i->addrsize),
                             cpu->mode == MODE_LONG64 ? 8 : 4);
    if (cpu->mode != MODE_LONG64 && i->opsize == 2)
        base &= 0xffffff;
    d->base = base;
    d->limit = limit;
}

static void store_dtr(cpu_t *cpu, const insn_t *i, const dtr_t *d, int kind)
{
    if ((cpu->cr4 & CR4_UMIP) && cpu->cpl > 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    desc_table_exit(cpu, i, EXIT_REASON_GDTR_IDTR, kind);
    uint64_t ea = ea_of(cpu, i);
    mem_write(cpu, i->seg, ea, 2, d->limit);
    mem_write(cpu, i->seg, (ea + 2) & size_mask(i->addrsize), cpu->mode == MODE_LONG64 ? 8 : 4,
              d->base);
}

void op_lgdt(cpu_t *cpu, const insn_t *i) { load_dtr(cpu, i, &cpu->gdtr, 2); }
void op_lidt(cpu_t *cpu, const insn_t *i) { load_dtr(cpu, i, &cpu->idtr, 3); }
void op_sgdt(cpu_t *cpu, const insn_t *i) { store_dtr(cpu, i, &cpu->gdtr, 0); }
void op_sidt(cpu_t *cpu, const insn_t *i) { store_dtr(cpu, i, &cpu->idtr, 1); }

void op_sldt(cpu_t *cpu, const insn_t *i)
{
    require_protected(cpu);
    desc_table_exit(cpu, i, EXIT_REASON_LDTR_TR, 0);
    rm_write(cpu, i, i->has_mem ? 2 : i->opsize, cpu->seg[S_LDTR].sel);
}

void op_str(cpu_t *cpu, const insn_t *i)
{
    require_protected(cpu);
    desc_table_exit(cpu, i, EXIT_REASON_LDTR_TR, 1);
    rm_write(cpu, i, i->has_mem ? 2 : i->opsize, cpu->seg[S_TR].sel);
}

void op_lldt(cpu_t *cpu, const insn_t *i)
{
    require_protected(cpu);
    require_cpl0(cpu);
    desc_table_exit(cpu, i, EXIT_REASON_LDTR_TR, 2);
    uint16_t sel = (uint16_t)rm_read(cpu, i, 2);
    if ((sel & ~3u) == 0) {
        cpu->seg[S_LDTR].sel = sel;
        cpu->seg[S_LDTR].ar = AR_UNUSABLE;
        return;
    }
    uint64_t lo, hi, addr;
    if ((sel & 4) || read_descriptor(cpu, sel, &lo, &hi, &addr) < 0)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    if (((lo >> 40) & 0x1f) != 0x2)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    if (!(lo & (1ull << 47)))
        FAULT_ERR(cpu, EXC_NP, sel & ~3u);
    desc_to_seg(&cpu->seg[S_LDTR], sel, lo, hi);
}

void op_ltr(cpu_t *cpu, const insn_t *i)
{
    require_protected(cpu);
    require_cpl0(cpu);
    desc_table_exit(cpu, i, EXIT_REASON_LDTR_TR, 3);
    uint16_t sel = (uint16_t)rm_read(cpu, i, 2);
    uint64_t lo, hi, addr;
    if ((sel & ~3u) == 0 || (sel & 4) || read_descriptor(cpu, sel, &lo, &hi, &addr) < 0)
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    uint32_t type = (uint32_t)((lo >> 40) & 0x1f);
    int long_mode = (cpu->efer & EFER_LMA) != 0;
    if (type != 0x9 && (long_mode || type != 0x1))
        FAULT_ERR(cpu, EXC_GP, sel & ~3u);
    if (!(lo & (1ull << 47)))
        FAULT_ERR(cpu, EXC_NP, sel & ~3u);
    lo |= 2ull << 40;   /* busy */
    sys_write(cpu, addr + 5, 1, (lo >> 40) & 0xff);
    desc_to_seg(&cpu->seg[S_TR], sel, lo, hi);
}

void op_lar_lsl(cpu_t *cpu, const insn_t *i)
{
    require_protected(cpu);
    uint16_t sel = (uint16_t)rm_read(cpu, i, 2);
    uint64_t lo, hi, addr;
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_ZF;
    if ((sel & ~3u) != 0 && read_descriptor(cpu, sel, &lo, &hi, &addr) == 0) {
        uint32_t acc = (uint32_t)((lo >> 40) & 0xff);
        int dpl = (acc >> 5) & 3, type = acc & 0xf;
        int conforming_code = (acc & AR_S) && (type & 0xc) == 0xc;
        int ok_type = (acc & AR_S) || type == 1 || type == 2 || type == 3 || type == 9 || type == 11 ||
                      (i->op == 0 && (type == 4 || type == 5 || type == 12));
        if (ok_type && (conforming_code || (dpl >= cpu->cpl && dpl >= (sel & 3)))) {
            seg_t s;
            desc_to_seg(&s, sel, lo, hi);
            if (i->op == 0)
                reg_write(cpu, i->reg, i->opsize, lo >> 32 & 0x00f0ff00ull);
            else
                reg_write(cpu, i->reg, i->opsize, s.limit);
            f |= F_ZF;
        }
    }
    set_arith_flags(cpu, f);
}

void op_verr_verw(cpu_t *cpu, const insn_t *i)
{
    require_protected(cpu);
    uint16_t sel = (uint16_t)rm_read(cpu, i, 2);
    uint64_t lo, hi, addr;
    uint64_t f = cpu_get_rflags(cpu) & F_ARITH & ~(uint64_t)F_ZF;
    if ((sel & ~3u) != 0 && read_descriptor(cpu, sel, &lo, &hi, &addr) == 0) {
        uint32_t acc = (uint32_t)((lo >> 40) & 0xff);
        int dpl = (acc >> 5) & 3, type = acc & 0xf;
        int conforming_code = (type & 0xc) == 0xc;
        int privilege_ok = conforming_code || (dpl >= cpu->cpl && dpl >= (sel & 3));
        int ok = (acc & AR_S) && privilege_ok &&
                 (i->op == 0 ? (!(type & 8) || (type & 2)) : (!(type & 8) && (type & 2)));
        if (ok)
            f |= F_ZF;
    }
    set_arith_flags(cpu, f);
}

/* ---- control and debug registers ---- */

static __attribute__((noreturn)) void cr_exit(cpu_t *cpu, int cr, int type, int gpr, uint64_t lmsw)
{
    vm_exit_insn(cpu, EXIT_REASON_CR_ACCESS,
                 (uint64_t)cr | ((uint64_t)type << 4) | ((uint64_t)gpr << 8) | (lmsw << 16));
}

/* The guest may not change bits the hypervisor owns to values other than the shadow. */
static int cr_write_exits(uint64_t v, uint64_t mask, uint64_t shadow)
{
    return ((v ^ shadow) & mask) != 0;
}

static uint64_t cr0_fixed1_mask(cpu_t *cpu)
{
    uint64_t f0 = CR0_FIXED0;
    if (cpu->vc.proc2 & SEC_UNRESTRICTED_GUEST)
        f0 &= ~(CR0_PE | CR0_PG);
    return f0;
}

static void load_pdptes(cpu_t *cpu, uint64_t cr3)
{
    uint64_t base = cr3 & 0xffffffe0ull;
    for (int k = 0; k < 4; k++) {
        uint64_t gpa = base + (uint64_t)k * 8;
        uint64_t hpa = gpa;
        if (cpu->vc.proc2 & SEC_ENABLE_EPT) {
            int w;
            hpa = ept_translate(cpu, gpa, ACC_READ, 0, 0, 0, &w);
        }
        uint64_t e = hostmem_read64(cpu->sil, hpa);
        /* reserved: 2:1, 8:5 and 63:MAXPHYADDR (SDM Vol. 3 Table 4-8) */
        if ((e & 1) && (e & (PHYS_ADDR_RSVD | 0x1e6ull)))
            FAULT_ERR(cpu, EXC_GP, 0);
        cpu->pdpte[k] = e;
    }
}

void write_cr0(cpu_t *cpu, uint64_t v)
{
    uint64_t old = cpu->cr0;
    if (v >> 32)
        FAULT_ERR(cpu, EXC_GP, 0);
    v |= CR0_ET;
    if (((v & CR0_PG) && !(v & CR0_PE)) || ((v & CR0_NW) && !(v & CR0_CD)))
        FAULT_ERR(cpu, EXC_GP, 0);
    if ((v & cr0_fixed1_mask(cpu)) != cr0_fixed1_mask(cpu))
        FAULT_ERR(cpu, EXC_GP, 0);   /* VMX fixed-1 bits */
    if ((v & CR0_PG) && !(old & CR0_PG) && (cpu->efer & EFER_LME)) {
        if (!(cpu->cr4 & CR4_PAE) || (cpu->seg[S_CS].ar & AR_L))
            FAULT_ERR(cpu, EXC_GP, 0);
        cpu->efer |= EFER_LMA;
    }
    if (!(v & CR0_PG) && (old & CR0_PG) && (cpu->efer & EFER_LMA)) {
        if (cpu->mode == MODE_LONG64)
            FAULT_ERR(cpu, EXC_GP, 0);
        cpu->efer &= ~EFER_LMA;
    }
    if ((v & CR0_PG) && (cpu->cr4 & CR4_PAE) && !(cpu->efer & EFER_LMA) &&
        ((v ^ old) & (CR0_PG | CR0_CD | CR0_NW)))
        load_pdptes(cpu, cpu->cr3);
    cpu->cr0 = v;
    if ((v ^ old) & (CR0_PG | CR0_WP | CR0_PE))
        tlb_flush_all(cpu, 0);
    cpu_update_mode(cpu);
    cpu->stop_block = 1;
}

void write_cr4(cpu_t *cpu, uint64_t v)
{
    uint64_t old = cpu->cr4;
    if (v & ~CR4_FIXED1)
        FAULT_ERR(cpu, EXC_GP, 0);
    if ((v & CR4_FIXED0) != CR4_FIXED0)
        FAULT_ERR(cpu, EXC_GP, 0);   /* VMX fixed-1 bits */
    if ((cpu->efer & EFER_LMA) && !(v & CR4_PAE))
        FAULT_ERR(cpu, EXC_GP, 0);
    if ((v & CR4_PCIDE) && !(old & CR4_PCIDE) && ((cpu->cr3 & 0xfff) || !(cpu->efer & EFER_LMA)))
        FAULT_ERR(cpu, EXC_GP, 0);
    if ((cpu->cr0 & CR0_PG) && (v & CR4_PAE) && !(cpu->efer & EFER_LMA) &&
        ((v ^ old) & (CR4_PAE | CR4_PGE | CR4_PSE | CR4_SMEP)))
        load_pdptes(cpu, cpu->cr3);
    cpu->cr4 = v;
    if ((v ^ old) & (CR4_PGE | CR4_PAE | CR4_PSE | CR4_SMEP | CR4_SMAP | CR4_PCIDE))
        tlb_flush_all(cpu, 0);
    cpu->stop_block = 1;
}

void write_cr3(cpu_t *cpu, uint64_t v)
{
    int no_flush = (cpu->cr4 & CR4_PCIDE) && (v >> 63);
    v &= ~(1ull << 63);
    if ((cpu->efer & EFER_LMA) && (v >> 40))
        FAULT_ERR(cpu, EXC_GP, 0);
    if ((cpu->cr0 & CR0_PG) && (cpu->cr4 & CR4_PAE) && !(cpu->efer & EFER_LMA))
        load_pdptes(cpu, v);
    cpu->cr3 = v;
    if (!no_flush)
        tlb_flush_all(cpu, 1);
    cpu->stop_block = 1;
}

static int cr3_is_target(cpu_t *cpu, uint64_t v)
{
    for (uint32_t k = 0; k < cpu->vc.cr3_target_count && k < 4; k++)
        if (cpu->vc.cr3_target[k] == v)
            return 1;
    return 0;
}

void op_mov_r_cr(cpu_t *cpu, const insn_t *i)
{
    int cr = i->reg;
    require_cpl0(cpu);
    uint64_t v;
    switch (cr) {
    case 0: v = (cpu->cr0 & ~cpu->vc.cr0_mask) | (cpu->vc.cr0_shadow & cpu->vc.cr0_mask); break;
    case 2: v = cpu->cr2; break;
    case 3:
        if (cpu->vc.proc & CPU_CR3_STORE_EXITING)
            cr_exit(cpu, 3, 1, i->rm, 0);
        v = cpu->cr3;
        break;
    case 4: v = (cpu->cr4 & ~cpu->vc.cr4_mask) | (cpu->vc.cr4_shadow & cpu->vc.cr4_mask); break;
    case 8:
        if (cpu->mode != MODE_LONG64)
            FAULT(cpu, EXC_UD);
        if (cpu->vc.proc & CPU_CR8_STORE_EXITING)
            cr_exit(cpu, 8, 1, i->rm, 0);
        v = (cpu->vc.proc & CPU_TPR_SHADOW) ? apicv_read_cr8(cpu) : cpu->cr8;
        break;
    default: FAULT(cpu, EXC_UD);
    }
    reg_write(cpu, i->rm, cpu->mode == MODE_LONG64 ? 8 : 4, v);
}

void op_mov_cr_r(cpu_t *cpu, const insn_t *i)
{
    int cr = i->reg;
    require_cpl0(cpu);
    uint64_t v = reg_read(cpu, i->rm, cpu->mode == MODE_LONG64 ? 8 : 4);
    switch (cr) {
    case 0:
        if (cr_write_exits(v, cpu->vc.cr0_mask, cpu->vc.cr0_shadow))
            cr_exit(cpu, 0, 0, i->rm, 0);
        write_cr0(cpu, (v & ~cpu->vc.cr0_mask) | (cpu->cr0 & cpu->vc.cr0_mask));
        break;
    case 2: cpu->cr2 = v; break;
    case 3:
        if ((cpu->vc.proc & CPU_CR3_LOAD_EXITING) && !cr3_is_target(cpu, v))
            cr_exit(cpu, 3, 0, i->rm, 0);
        write_cr3(cpu, v);
        break;
    case 4:
        if (cr_write_exits(v, cpu->vc.cr4_mask, cpu->vc.cr4_shadow))
            cr_exit(cpu, 4, 0, i->rm, 0);
        write_cr4(cpu, (v & ~cpu->vc.cr4_mask) | (cpu->cr4 & cpu->vc.cr4_mask));
        break;
    case 8:
        if (cpu->mode != MODE_LONG64)
            FAULT(cpu, EXC_UD);
        if (v >> 4)
            FAULT_ERR(cpu, EXC_GP, 0);
        if (cpu->vc.proc & CPU_CR8_LOAD_EXITING)
            cr_exit(cpu, 8, 0, i->rm, 0);
        if (cpu->vc.proc & CPU_TPR_SHADOW)
            apicv_write_cr8(cpu, v);
        else
            cpu->cr8 = v;
        break;
    default: FAULT(cpu, EXC_UD);
    }
}

void op_clts(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    require_cpl0(cpu);
    if ((cpu->vc.cr0_mask & CR0_TS) && (cpu->vc.cr0_shadow & CR0_TS))
        cr_exit(cpu, 0, 2, 0, 0);
    cpu->cr0 &= ~CR0_TS;
}

void op_smsw(cpu_t *cpu, const insn_t *i)
{
    if ((cpu->cr4 & CR4_UMIP) && cpu->cpl > 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    uint64_t v = (cpu->cr0 & ~cpu->vc.cr0_mask) | (cpu->vc.cr0_shadow & cpu->vc.cr0_mask);
    rm_write(cpu, i, i->has_mem ? 2 : i->opsize, v);
}

void op_lmsw(cpu_t *cpu, const insn_t *i)
{
    require_cpl0(cpu);
    uint64_t src = rm_read(cpu, i, 2) & 0xf;
    /* LMSW can set PE but never clear it */
    uint64_t v = (cpu->cr0 & ~0xeull) | src;
    uint64_t mask = cpu->vc.cr0_mask & 0xf;
    if (((src ^ cpu->vc.cr0_shadow) & mask & 0xe) || ((src & 1) && !(cpu->vc.cr0_shadow & 1) && (mask & 1)))
        cr_exit(cpu, 0, 3, 0, src);
    write_cr0(cpu, (v & ~cpu->vc.cr0_mask) | (cpu->cr0 & cpu->vc.cr0_mask));
}

void op_mov_r_dr(cpu_t *cpu, const insn_t *i)
{
    require_cpl0(cpu);
    int dr = i->reg;
    if ((dr == 4 || dr == 5) && (cpu->cr4 & CR4_DE))
        FAULT(cpu, EXC_UD);
    if (cpu->vc.proc & CPU_MOV_DR_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_DR_ACCESS, (uint64_t)dr | 16u | ((uint64_t)i->rm << 8));
    if (cpu->dr[7] & DR7_GD)
        raise_debug(cpu, DR6_BD);   /* general detect: after the VM exit in priority */
    uint64_t v = cpu->dr[dr == 4 ? 6 : dr == 5 ? 7 : dr];
    reg_write(cpu, i->rm, cpu->mode == MODE_LONG64 ? 8 : 4, v);
}

void op_mov_dr_r(cpu_t *cpu, const insn_t *i)
{
    require_cpl0(cpu);
    int dr = i->reg;
    if ((dr == 4 || dr == 5) && (cpu->cr4 & CR4_DE))
        FAULT(cpu, EXC_UD);
    if (cpu->vc.proc & CPU_MOV_DR_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_DR_ACCESS, (uint64_t)dr | ((uint64_t)i->rm << 8));
    if (cpu->dr[7] & DR7_GD)
        raise_debug(cpu, DR6_BD);
    uint64_t v = reg_read(cpu, i->rm, cpu->mode == MODE_LONG64 ? 8 : 4);
    if (dr == 4) dr = 6;
    if (dr == 5) dr = 7;
    if (dr >= 6 && (v >> 32))
        FAULT_ERR(cpu, EXC_GP, 0);
    cpu->dr[dr] = debug_register_value(dr, v);
    if (dr != 6)
        debug_registers_changed(cpu);
}

/* ---- TLB and cache control ---- */

void op_invlpg(cpu_t *cpu, const insn_t *i)
{
    require_cpl0(cpu);
    uint64_t lin = seg_linear(cpu, i->seg, ea_of(cpu, i), 1, -1);
    if (cpu->vc.proc & CPU_INVLPG_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_INVLPG, lin);
    tlb_flush_page(cpu, lin);
}

/* A ring-0 instruction with nothing architectural to do here but a VM exit when its
 * execution control is set (the privilege check comes first, SDM Vol. 3 26.1.1). */
static void ring0_exit_if(cpu_t *cpu, uint32_t controls, uint32_t control, uint32_t reason)
{
    require_cpl0(cpu);
    if (controls & control)
        vm_exit_insn(cpu, reason, 0);
}

void op_wbinvd(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    ring0_exit_if(cpu, cpu->vc.proc2, SEC_WBINVD_EXITING, EXIT_REASON_WBINVD);
}

void op_invd(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    require_cpl0(cpu);
    vm_exit_insn(cpu, EXIT_REASON_INVD, 0);
}

void op_fence(cpu_t *cpu, const insn_t *i) { (void)cpu; (void)i; __atomic_thread_fence(__ATOMIC_SEQ_CST); }

void op_clflush(cpu_t *cpu, const insn_t *i)
{
    /* nothing is cached, but the line must be addressable */
    mem_read(cpu, i->seg, ea_of(cpu, i), 1);
}

void op_wait(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if ((cpu->cr0 & (CR0_MP | CR0_TS)) == (CR0_MP | CR0_TS))
        FAULT(cpu, EXC_NM);
    if ((cpu->fpu.fx.fsw & FSW_ES) && (cpu->cr0 & CR0_NE))
        FAULT(cpu, EXC_MF);   /* a pending unmasked x87 exception */
}

/* ---- identification, MSRs and the TSC ---- */

void op_cpuid(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    vm_exit_insn(cpu, EXIT_REASON_CPUID, 0);   /* CPUID always exits in non-root operation */
}

void op_getsec(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    FAULT(cpu, EXC_UD);   /* CR4.SMXE cannot be set: SMX is not implemented */
}

/* Does the MSR bitmap make this RDMSR/WRMSR exit? */
static int msr_exits(cpu_t *cpu, uint32_t msr, int write)
{
    if (!(cpu->vc.proc & CPU_USE_MSR_BITMAPS))
        return 1;
    uint32_t base;
    if (msr <= 0x1fff)
        base = 0;
    else if (msr >= 0xc0000000u && msr <= 0xc0001fffu)
        base = 1024;
    else
        return 1;
    base += write ? 2048 : 0;
    uint32_t bit = msr & 0x1fff;
    uint8_t *p = hostmem_ptr(cpu->sil, cpu->vc.msr_bitmap + base + bit / 8);
    return !p || ((*p >> (bit & 7)) & 1);
}

void op_rdmsr(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    require_cpl0(cpu);
    uint32_t msr = (uint32_t)cpu->gpr[R_CX];
    if (msr_exits(cpu, msr, 0))
        vm_exit_insn(cpu, EXIT_REASON_MSR_READ, 0);
    uint64_t v;
    int x2apic = (cpu->vc.proc2 & SEC_VIRTUALIZE_X2APIC) && (msr >> 8) == 8;
    if (!(x2apic && apicv_rdmsr(cpu, msr, &v)) && msr_read(cpu, msr, &v) < 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    reg_write(cpu, R_AX, 4, v);
    reg_write(cpu, R_DX, 4, v >> 32);
}

void op_wrmsr(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    require_cpl0(cpu);
    uint32_t msr = (uint32_t)cpu->gpr[R_CX];
    if (msr_exits(cpu, msr, 1))
        vm_exit_insn(cpu, EXIT_REASON_MSR_WRITE, 0);
    uint64_t v = (cpu->gpr[R_AX] & 0xffffffffull) | (cpu->gpr[R_DX] << 32);
    int x2apic = (cpu->vc.proc2 & SEC_VIRTUALIZE_X2APIC) && (msr >> 8) == 8;
    if (!(x2apic && apicv_wrmsr(cpu, msr, v)) && msr_write(cpu, msr, v) < 0)
        FAULT_ERR(cpu, EXC_GP, 0);
}

uint64_t host_tsc(void)
{
    return __rdtsc();
}

/* The TSC's rate, measured once against the monotonic clock. */
uint64_t tsc_ticks_to_ns(uint64_t ticks)
{
    static double ns_per_tick;
    if (ns_per_tick == 0) {
        struct timespec a, b, pause = { 0, 5000000 };
        clock_gettime(CLOCK_MONOTONIC, &a);
        uint64_t t0 = host_tsc();
        nanosleep(&pause, NULL);
        uint64_t t1 = host_tsc();
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
        ns_per_tick = t1 > t0 ? ns / (double)(t1 - t0) : 1.0;
    }
    return (uint64_t)((double)ticks * ns_per_tick);
}

uint64_t guest_tsc(cpu_t *cpu)
{
    uint64_t t = host_tsc() + cpu->tsc_adjust;
    if (cpu->in_guest && (cpu->vc.proc & CPU_USE_TSC_OFFSETTING))   /* not in root mode */
        t += cpu->vc.tsc_offset;
    return t;
}

static void check_rdtsc(cpu_t *cpu)
{
    if ((cpu->cr4 & CR4_TSD) && cpu->cpl > 0 && (cpu->cr0 & CR0_PE))
        FAULT_ERR(cpu, EXC_GP, 0);
}

void op_rdtsc(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    check_rdtsc(cpu);
    if (cpu->vc.proc & CPU_RDTSC_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_RDTSC, 0);
    uint64_t t = guest_tsc(cpu);
    reg_write(cpu, R_AX, 4, t);
    reg_write(cpu, R_DX, 4, t >> 32);
}

void op_rdtscp(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (!(cpu->vc.proc2 & SEC_ENABLE_RDTSCP))
        FAULT(cpu, EXC_UD);
    check_rdtsc(cpu);
    if (cpu->vc.proc & CPU_RDTSC_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_RDTSCP, 0);
    uint64_t t = guest_tsc(cpu);
    reg_write(cpu, R_AX, 4, t);
    reg_write(cpu, R_DX, 4, t >> 32);
    reg_write(cpu, R_CX, 4, cpu->msr_tsc_aux);
}

void op_rdpmc(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (cpu->cpl > 0 && !(cpu->cr4 & CR4_PCE) && (cpu->cr0 & CR0_PE))
        FAULT_ERR(cpu, EXC_GP, 0);
    if (cpu->vc.proc & CPU_RDPMC_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_RDPMC, 0);
    FAULT_ERR(cpu, EXC_GP, 0);   /* no performance counters */
}

/* ---- VMX instructions and power management ---- */

/* VM-exit instruction information for VMX instructions (SDM Table 28-13). */
static uint32_t vmx_insn_info(const insn_t *i)
{
    uint32_t info = (uint32_t)(i->addrsize == 2 ? 0 : i->addrsize == 4 ? 1 : 2) << 7;
    if (!i->has_mem)
        return info | (1u << 10) | ((uint32_t)(i->rm & 15) << 3);
    info |= (uint32_t)i->scale | ((uint32_t)(i->seg & 7) << 15);
    info |= i->index == 0xff ? (1u << 22) : ((uint32_t)i->index << 18);
    info |= (i->base == 0xff || i->base == 0xfe) ? (1u << 27) : ((uint32_t)i->base << 23);
    return info | ((uint32_t)(i->reg & 15) << 28);
}

void op_vmx_insn(cpu_t *cpu, const insn_t *i)
{
    static const uint32_t reasons[] = {
        EXIT_REASON_VMPTRLD, EXIT_REASON_VMPTRST, EXIT_REASON_VMCALL, EXIT_REASON_VMLAUNCH,
        EXIT_REASON_VMRESUME, EXIT_REASON_VMOFF, EXIT_REASON_VMREAD, EXIT_REASON_VMWRITE,
        EXIT_REASON_INVEPT, EXIT_REASON_INVVPID };
    uint32_t reason = reasons[i->op];
    if (i->op == 0 && i->opcode == 0xc7 && i->rep == PFX_REP)
        reason = EXIT_REASON_VMON;
    else if (i->op == 0 && i->opcode == 0xc7 && i->opsize == 2)
        reason = EXIT_REASON_VMCLEAR;
    if (reason != EXIT_REASON_VMCALL && (cpu->mode == MODE_REAL16 || cpu->mode == MODE_VM86))
        FAULT(cpu, EXC_UD);
    exit_info_t ei = {0};
    ei.reason = reason;
    ei.has_insn_len = 1;
    if (reason != EXIT_REASON_VMCALL && reason != EXIT_REASON_VMLAUNCH &&
        reason != EXIT_REASON_VMRESUME && reason != EXIT_REASON_VMOFF) {
        ei.insn_info = vmx_insn_info(i);
        ei.qual = (uint64_t)i->disp;
    }
    vm_exit(cpu, &ei);
}

void op_pause(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (cpu->vc.proc & CPU_PAUSE_EXITING)
        vm_exit_insn(cpu, EXIT_REASON_PAUSE_INSTRUCTION, 0);
}

void op_monitor(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    ring0_exit_if(cpu, cpu->vc.proc, CPU_MONITOR_EXITING, EXIT_REASON_MONITOR_INSTRUCTION);
}

void op_mwait(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    /* without a monitored write to wait for, MWAIT returns at once */
    ring0_exit_if(cpu, cpu->vc.proc, CPU_MWAIT_EXITING, EXIT_REASON_MWAIT_INSTRUCTION);
}

void op_xgetbv(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (!(cpu->cr4 & CR4_OSXSAVE))
        FAULT(cpu, EXC_UD);
    if ((uint32_t)cpu->gpr[R_CX] != 0)
        FAULT_ERR(cpu, EXC_GP, 0);
    reg_write(cpu, R_AX, 4, cpu->xcr0);
    reg_write(cpu, R_DX, 4, cpu->xcr0 >> 32);
}

void op_xsetbv(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    vm_exit_insn(cpu, EXIT_REASON_XSETBV, 0);   /* XSETBV always exits in non-root operation */
}

/* CLAC and STAC: RFLAGS.AC opens supervisor data accesses to user pages under SMAP. */
void op_clac(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (cpu->cpl != 0)
        FAULT(cpu, EXC_UD);
    cpu->rflags &= ~(uint64_t)F_AC;
    tlb_smap_closed(cpu);
}

void op_stac(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (cpu->cpl != 0)
        FAULT(cpu, EXC_UD);
    cpu->rflags |= F_AC;
}

void op_swapgs(cpu_t *cpu, const insn_t *i)
{
    (void)i;
    if (cpu->mode != MODE_LONG64)
        FAULT(cpu, EXC_UD);
    require_cpl0(cpu);
    uint64_t t = cpu->seg[S_GS].base;
    cpu->seg[S_GS].base = cpu->msr_kernel_gs_base;
    cpu->msr_kernel_gs_base = t;
    cpu_update_segment_cache(cpu);
}

static void desc_table_exit(cpu_t *cpu, const insn_t *i, int reason, int kind)
{
    if (!(cpu->vc.proc2 & SEC_DESC_TABLE_EXITING))
        return;
    exit_info_t ei = {0};
    ei.reason = (uint32_t)reason;
    ei.has_insn_len = 1;
    ei.insn_info = vmx_insn_info(i) & ~(0xfu << 28);
    ei.insn_info |= (uint32_t)kind << 28;
    ei.qual = (uint64_t)i->disp;
    vm_exit(cpu, &ei);
}
