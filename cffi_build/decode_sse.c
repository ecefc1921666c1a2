/* The MMX/SSE opcodes of the 0F, 0F 38 and 0F 3A maps, selected by their mandatory
 * prefix (none, 66, F3, F2; SDM Vol. 2 Appendix A): the forms written in C here, the
 * arithmetic forms from simd_forms (exec_simd.c). */
#include "decode.h"
#include "simd_forms.h"

static opdesc_t map_0f(uint8_t b, int pfx)
{
    int none = pfx == SIMD_NONE, x66 = pfx == SIMD_66, f3 = pfx == SIMD_F3, f2 = pfx == SIMD_F2;
    int packed = none || x66;
    switch (b) {
    case 0x10: return packed ? (opdesc_t)E(op_sse_load, M, 0) : (opdesc_t)E(op_movs_load, M, f3 ? 4 : 8);
    case 0x11: return packed ? (opdesc_t)E(op_sse_store, M, 0) : (opdesc_t)E(op_movs_store, M, f3 ? 4 : 8);
    case 0x12:   /* MOVLPS / MOVHLPS, MOVLPD */
        if (none) return (opdesc_t)E(op_movlh_load, M, 0);
        if (x66) return (opdesc_t)E(op_movlh_load, M | MEMONLY, 0);
        break;
    case 0x13: if (packed) return (opdesc_t)E(op_movlh_store, M | MEMONLY, 0); break;
    case 0x16:   /* MOVHPS / MOVLHPS, MOVHPD */
        if (none) return (opdesc_t)E(op_movlh_load, M, 1);
        if (x66) return (opdesc_t)E(op_movlh_load, M | MEMONLY, 1);
        break;
    case 0x17: if (packed) return (opdesc_t)E(op_movlh_store, M | MEMONLY, 1); break;
    case 0x28: if (packed) return (opdesc_t)E(op_sse_load, M, 1); break;
    case 0x29: if (packed) return (opdesc_t)E(op_sse_store, M, 1); break;
    case 0x2b: if (packed) return (opdesc_t)E(op_sse_store, M | MEMONLY, 1); break;
    case 0x2a: case 0x2c: case 0x2d:
        if (packed) return (opdesc_t)E(op_simd_cvt_mmx, M, (uint8_t)x66);
        return (opdesc_t)E(op_simd_cvt_gpr, M, (uint8_t)f2);
    case 0x50: if (packed) return (opdesc_t)E(op_movmskp, M | REGONLY, (uint8_t)x66); break;
    case 0x6e: if (packed) return (opdesc_t)E(op_movd_load, M, (uint8_t)x66); break;
    case 0x6f:
        if (none) return (opdesc_t)E(op_movq_mmx_load, M, 0);
        if (x66 || f3) return (opdesc_t)E(op_sse_load, M, (uint8_t)x66);
        break;
    case 0x70: return (opdesc_t)E(op_pshuf, M | I8, (uint8_t)pfx);
    case 0x71: case 0x72: case 0x73:
        if (packed) return (opdesc_t)E(op_pshift_imm, M | REGONLY | I8, (uint8_t)x66);
        break;
    case 0x77: if (none) return (opdesc_t)E(op_emms, 0, 0); break;
    case 0x7e:
        if (packed) return (opdesc_t)E(op_movd_store, M, (uint8_t)x66);
        if (f3) return (opdesc_t)E(op_movq_xmm_load, M, 0);
        break;
    case 0x7f:
        if (none) return (opdesc_t)E(op_movq_mmx_store, M, 0);
        if (x66 || f3) return (opdesc_t)E(op_sse_store, M, (uint8_t)x66);
        break;
    case 0xae: if (none) return (opdesc_t)E(op_grp15_mem, M | MEMONLY, 0); break;
    case 0xc3: if (none) return (opdesc_t)E(op_movnti, M | MEMONLY, 0); break;
    case 0xc4: if (packed) return (opdesc_t)E(op_pinsrw, M | I8, (uint8_t)x66); break;
    case 0xc5: if (packed) return (opdesc_t)E(op_pextrw, M | REGONLY | I8, (uint8_t)x66); break;
    case 0xc6: if (packed) return (opdesc_t)E(op_shufp, M | I8, (uint8_t)x66); break;
    case 0xd6:
        if (x66) return (opdesc_t)E(op_movq_xmm_store, M, 0);
        if (f3) return (opdesc_t)E(op_movq2dq, M | REGONLY, 0);
        if (f2) return (opdesc_t)E(op_movdq2q, M | REGONLY, 0);
        break;
    case 0xd7: if (packed) return (opdesc_t)E(op_pmovmskb, M | REGONLY, (uint8_t)x66); break;
    case 0xe7:
        if (none) return (opdesc_t)E(op_movq_mmx_store, M | MEMONLY, 0);   /* MOVNTQ */
        if (x66) return (opdesc_t)E(op_sse_store, M | MEMONLY, 1);          /* MOVNTDQ */
        break;
    case 0xf0: if (f2) return (opdesc_t)E(op_sse_load, M | MEMONLY, 0); break;   /* LDDQU */
    case 0xf7: if (packed) return (opdesc_t)E(op_maskmov, M | REGONLY, (uint8_t)x66); break;
    }
    return (opdesc_t)UD;
}

static opdesc_t map_0f38(uint8_t b, int pfx)
{
    if (b == 0x2a && pfx == SIMD_66)
        return (opdesc_t)E(op_sse_load, M | MEMONLY, 1);   /* MOVNTDQA */
    if (b == 0xf0 && pfx == SIMD_F2)
        return (opdesc_t)E(op_crc32, M | RMB, 0);
    if (b == 0xf1 && pfx == SIMD_F2)
        return (opdesc_t)E(op_crc32, M, 1);
    return (opdesc_t)UD;
}

static opdesc_t map_0f3a(uint8_t b, int pfx)
{
    if (pfx != SIMD_66)
        return (opdesc_t)UD;
    switch (b) {
    case 0x14: case 0x15: case 0x16: case 0x17: return (opdesc_t)E(op_pextr, M | I8, b);
    case 0x20: case 0x22: return (opdesc_t)E(op_pinsr, M | I8, b);
    case 0x21: return (opdesc_t)E(op_insertps, M | I8, 0);
    }
    return (opdesc_t)UD;
}

opdesc_t decode_simd(int map, uint8_t opcode, int pfx)
{
    int fp, flags;
    int n = simd_form_lookup(map, pfx, opcode, &fp, &flags);
    if (n >= 0)
        return (opdesc_t)E(fp ? op_simd_fp : op_simd_int, M | ((flags & SF_IMM) ? I8 : 0), (uint8_t)n);
    if (map == 1)
        return map_0f(opcode, pfx);
    if (map == 2)
        return map_0f38(opcode, pfx);
    return map_0f3a(opcode, pfx);
}
