"""The harness notices what it must: a result that differs in a register, a defined
flag, memory or the way the run ended is reported, one that differs only in an
undefined flag or register bit is not."""

from differential import values
from differential.forms import BY_NAME
from differential.emulated import MODE_LONG64
from differential.harness import AF, CF, SLOT_FAULT_RIP, SLOT_SIGNAL, SLOT_VECTOR, State, compare


def _runs(differential, name: str, count: int = 20):
    form = BY_NAME[name]
    rng = values.rng_for("harness self-test")
    cases = []
    for _ in range(count):
        state = State(rng, form.mode)
        cases.append(state.case(form.make(state)))
    native, memories = differential.native.run(False, [c.code for c in cases],
                                               [c.regs + [c.flags] for c in cases], [c.mem for c in cases])
    for case, n, m in zip(cases, native, memories):
        yield form, case, n, m, differential.emulated.run(MODE_LONG64, case.code, case.regs, case.flags, case.mem)


def test_agreeing_runs_compare_equal(differential):
    for form, case, native, memory, emulated in _runs(differential, "ADD r/m32,r (01) mem"):
        assert compare(form, case, native, memory, emulated) == []


def test_each_kind_of_difference_is_reported(differential):
    for form, case, native, memory, (regs, rflags, mem, end) in _runs(differential, "AND r/m64,r (21) mem"):
        wrong_reg = list(regs)
        wrong_reg[3] ^= 1 << 40
        assert compare(form, case, native, memory, (wrong_reg, rflags, mem, end))
        assert compare(form, case, native, memory, (regs, rflags ^ CF, mem, end))
        assert compare(form, case, native, memory, (regs, rflags ^ 0x400, mem, end))   # DF
        wrong_mem = bytearray(mem)
        wrong_mem[7] ^= 0x80
        assert compare(form, case, native, memory, (regs, rflags, bytes(wrong_mem), end))
        assert compare(form, case, native, memory, (regs, rflags, mem, ("fault", 13, 0x5A000000)))
        # AND leaves AF undefined: a different AF is no mismatch
        assert compare(form, case, native, memory, (regs, rflags ^ AF, mem, end)) == []


def test_a_fault_must_match_in_vector_and_address(differential):
    for form, case, native, memory, emulated in _runs(differential, "DIV r/m32 #DE (f7 /6) reg"):
        assert native[SLOT_SIGNAL] and native[SLOT_VECTOR] == 0
        regs, rflags, mem, end = emulated
        assert compare(form, case, native, memory, emulated) == []
        assert compare(form, case, native, memory, (regs, rflags, mem, ("fault", 6, end[2])))
        assert compare(form, case, native, memory, (regs, rflags, mem, ("fault", 0, native[SLOT_FAULT_RIP] + 1)))
        assert compare(form, case, native, memory, (regs, rflags, mem, None))
