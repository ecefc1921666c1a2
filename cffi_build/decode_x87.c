/* The x87 escape opcodes D8-DF (SDM Vol. 2 Appendix A.4): memory forms by ModRM.reg,
 * register forms by the whole ModRM byte. */
#include "decode.h"

/* op of op_x87_mem: operand size in bytes, and what the instruction does with it */
#define XW 0x10      /* stores the operand */
#define XC 0x20      /* control instruction: FIP, FDP and FOP keep their values */
#define XN 0x40      /* non-waiting (FN...): ignores a pending exception */

#define MR(size) E(op_x87_mem, M, size)
#define MW(size) E(op_x87_mem, M, (size) | XW)

static const opdesc_t mem_forms[8][8] = {
    /* D8 */ { MR(4), MR(4), MR(4), MR(4), MR(4), MR(4), MR(4), MR(4) },
    /* D9: FLD, -, FST, FSTP, FLDENV, FLDCW, FNSTENV, FNSTCW */
    { MR(4), UD, MW(4), MW(4), E(op_fldenv, M, 0), E(op_x87_mem, M, 2 | XC),
      E(op_fnstenv, M, 0), E(op_x87_mem, M, 2 | XW | XC | XN) },
    /* DA */ { MR(4), MR(4), MR(4), MR(4), MR(4), MR(4), MR(4), MR(4) },
    /* DB: FILD, FISTTP, FIST, FISTP, -, FLD m80, -, FSTP m80 */
    { MR(4), MW(4), MW(4), MW(4), UD, MR(10), UD, MW(10) },
    /* DC */ { MR(8), MR(8), MR(8), MR(8), MR(8), MR(8), MR(8), MR(8) },
    /* DD: FLD, FISTTP, FST, FSTP, FRSTOR, -, FNSAVE, FNSTSW */
    { MR(8), MW(8), MW(8), MW(8), E(op_frstor, M, 0), UD, E(op_fnsave, M, 0),
      E(op_x87_mem, M, 2 | XW | XC | XN) },
    /* DE */ { MR(2), MR(2), MR(2), MR(2), MR(2), MR(2), MR(2), MR(2) },
    /* DF: FILD, FISTTP, FIST, FISTP, FBLD, FILD m64, FBSTP, FISTP m64 */
    { MR(2), MW(2), MW(2), MW(2), MR(10), MR(8), MW(10), MW(8) },
};

/* Register forms that exist (the documented ones and the aliases processors execute),
 * one bit per ModRM byte C0..FF. */
static const uint64_t reg_valid[8] = {
    /* D8 */ ~0ull,
    /* D9: D1-D7, E2, E3, E6, E7, EF undefined */
    ~((0xfeull << 16) | (0x0cull << 32) | (0xc0ull << 32) | (0x80ull << 40)),
    /* DA: FCMOVcc, FUCOMPP */
    0xffffffffull | (0x02ull << 40),
    /* DB: FCMOVNcc, FENI/FDISI/FNCLEX/FNINIT/FSETPM, FUCOMI, FCOMI */
    0xffffffffull | (0x1full << 32) | (0xffffull << 40),
    /* DC */ ~0ull,
    /* DD: F0-FF undefined */
    0xffffffffffffull,
    /* DE: D8 and DA-DF undefined */
    ~(0xfdull << 24),
    /* DF: FFREEP, aliases, FNSTSW AX, FUCOMIP, FCOMIP */
    0xffffffffull | (0x01ull << 32) | (0xffffull << 40),
};

opdesc_t decode_x87(uint8_t opcode, uint8_t modrm)
{
    int n = opcode & 7;
    if (modrm < 0xc0)
        return mem_forms[n][(modrm >> 3) & 7];
    if (!((reg_valid[n] >> (modrm & 63)) & 1))
        return (opdesc_t)E(op_ud, M, 0);
    if (opcode == 0xdf && modrm == 0xe0)
        return (opdesc_t)E(op_fnstsw_ax, M, 0);
    if (opcode == 0xdb && modrm >= 0xe0 && modrm <= 0xe4)
        return (opdesc_t)E(op_x87_control, M, 0);   /* FENI FDISI FNCLEX FNINIT FSETPM */
    return (opdesc_t)E(op_x87_reg, M, 0);
}
