/* Instruction handlers, one family per exec_*.c file, referenced by the decoder's
 * opcode tables. */
#ifndef PYHV_EXEC_H
#define PYHV_EXEC_H
#include "core.h"

#define H(name) void name(cpu_t *cpu, const insn_t *i)

/* exec_alu.c */
H(op_alu_rm_r); H(op_alu_r_rm); H(op_alu_rm_imm); H(op_test_rm_r); H(op_test_rm_imm);
H(op_inc); H(op_dec); H(op_not); H(op_neg); H(op_mul); H(op_imul1); H(op_div); H(op_idiv);
H(op_imul_r_rm); H(op_imul_r_rm_imm); H(op_shift); H(op_shld); H(op_shrd);
H(op_bt); H(op_bsf); H(op_bsr); H(op_tzcnt); H(op_lzcnt); H(op_popcnt);
H(op_cbw); H(op_cwd); H(op_daa); H(op_das); H(op_aaa); H(op_aas); H(op_aam); H(op_aad);
H(op_xadd); H(op_cmpxchg); H(op_cmpxchg8b); H(op_bswap); H(op_setcc); H(op_cmovcc);
H(op_cmc); H(op_clc); H(op_stc); H(op_cld); H(op_std); H(op_sahf); H(op_lahf);

/* exec_move.c */
H(op_mov_rm_r); H(op_mov_r_rm); H(op_mov_rm_imm); H(op_mov_moffs_load); H(op_mov_moffs_store);
H(op_movzx); H(op_movsx); H(op_movsxd); H(op_lea); H(op_xchg); H(op_nop);
H(op_push_rm); H(op_push_imm); H(op_pop_rm); H(op_pusha); H(op_popa); H(op_leave); H(op_enter);
H(op_mov_sreg_rm); H(op_mov_rm_sreg); H(op_push_sreg); H(op_pop_sreg); H(op_load_far_ptr);
H(op_xlat); H(op_movbe);

/* exec_control.c */
H(op_jmp_rel); H(op_jcc); H(op_call_rel); H(op_ret); H(op_jmp_rm); H(op_call_rm);
H(op_jmp_far); H(op_call_far); H(op_retf); H(op_iret); H(op_int); H(op_int3); H(op_into);
H(op_int1); H(op_loop); H(op_jcxz); H(op_bound);

/* The control-transfer helpers that exec_control.c and exec_call_gate.c share. */
void set_code_segment(cpu_t *cpu, uint16_t sel, int cpl, uint64_t lo, uint64_t addr);
int is_system_descriptor(cpu_t *cpu, uint16_t sel);
void far_through_gate(cpu_t *cpu, uint16_t sel, int is_call);

/* exec_fastcall.c */
H(op_sysenter); H(op_sysexit); H(op_syscall); H(op_sysret);

/* exec_string.c */
H(op_movs); H(op_cmps); H(op_stos); H(op_lods); H(op_scas);

/* exec_io.c */
H(op_in); H(op_out); H(op_ins); H(op_outs);

/* exec_system.c */
H(op_ud); H(op_hlt); H(op_cli); H(op_sti); H(op_pushf); H(op_popf);
H(op_lgdt); H(op_lidt); H(op_sgdt); H(op_sidt); H(op_lldt); H(op_ltr); H(op_sldt); H(op_str);
H(op_mov_r_cr); H(op_mov_cr_r); H(op_mov_r_dr); H(op_mov_dr_r); H(op_clts); H(op_lmsw); H(op_smsw);
H(op_invlpg); H(op_cpuid); H(op_rdmsr); H(op_wrmsr); H(op_rdtsc); H(op_rdtscp); H(op_rdpmc);
H(op_wbinvd); H(op_invd); H(op_vmx_insn); H(op_pause); H(op_mwait); H(op_monitor);
H(op_xgetbv); H(op_xsetbv); H(op_clac); H(op_stac); H(op_swapgs); H(op_getsec); H(op_fence); H(op_clflush);
H(op_wait); H(op_lar_lsl); H(op_verr_verw);

/* exec_x87.c */
H(op_x87_reg); H(op_x87_mem); H(op_x87_control); H(op_fnstsw_ax); H(op_fldenv); H(op_fnstenv);
H(op_frstor); H(op_fnsave);

/* exec_sse.c: data movement, shuffles and the MMX/SSE forms done in C */
H(op_sse_load); H(op_sse_store); H(op_movs_load); H(op_movs_store); H(op_movlh_load);
H(op_movlh_store); H(op_movmskp); H(op_movd_load); H(op_movd_store); H(op_movq_mmx_load);
H(op_movq_mmx_store); H(op_movq_xmm_load); H(op_movq_xmm_store); H(op_movq2dq); H(op_movdq2q);
H(op_pmovmskb); H(op_movnti); H(op_maskmov); H(op_pshuf); H(op_shufp); H(op_pshift_imm);
H(op_pinsrw); H(op_pextrw); H(op_emms); H(op_pextr); H(op_pinsr); H(op_insertps); H(op_crc32);

/* exec_simd.c: arithmetic forms run on the host's SIMD unit */
H(op_simd_int); H(op_simd_fp); H(op_simd_cvt_gpr); H(op_simd_cvt_mmx);

/* exec_fxsave.c */
H(op_grp15_mem);

/* exec_atomic.c: LOCK-prefixed forms, atomic across processors */
H(op_locked_alu); H(op_locked_unary); H(op_locked_xchg); H(op_locked_xadd);
H(op_locked_cmpxchg); H(op_locked_cmpxchg8b); H(op_locked_bt);
void apply_lock_prefix(insn_t *i);

#undef H

/* exec_alu.c: one ALU operation (0 add .. 7 cmp) with its lazy flags */
uint64_t alu(cpu_t *cpu, int op, int size, uint64_t a, uint64_t b);

/* operand helpers: the r/m operand with its effective address computed once */
static inline uint64_t opr_read(cpu_t *cpu, const insn_t *i, uint64_t ea, int size)
{
    return i->has_mem ? mem_read(cpu, i->seg, ea, size) : reg_read(cpu, i->rm, size);
}

static inline void opr_write(cpu_t *cpu, const insn_t *i, uint64_t ea, int size, uint64_t v)
{
    if (i->has_mem)
        mem_write(cpu, i->seg, ea, size, v);
    else
        reg_write(cpu, i->rm, size, v);
}

static inline uint64_t opr_ea(cpu_t *cpu, const insn_t *i)
{
    return i->has_mem ? ea_of(cpu, i) : 0;
}

/* Branch target: the new IP wraps at the operand size outside 64-bit mode. */
static inline void jump_to(cpu_t *cpu, uint64_t target, int opsize)
{
    cpu->next_rip = target & (~0ull >> (64 - 8 * opsize));   /* opsize is 2, 4 or 8 */
}

#endif
