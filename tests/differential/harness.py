"""The differential harness: a form (one encoding of one instruction at one operand
size) makes random cases; each case runs natively and in the emulated core from the
same registers, flags and memory; registers, the flags the SDM defines for the form,
DF and the data buffer must agree."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from differential import layout, values, worker
from differential.emulated import MODE_COMPAT32, MODE_LONG64, MODE_PROT32, EmulatedCpu
from differential.encode import HIGH_BYTE, RSP, Mem, gpr_of
from differential.native import NativeCpu

CF, PF, AF, ZF, SF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x400, 0x800
ARITH = CF | PF | AF | ZF | SF | OF
M32, M64 = (1 << 32) - 1, (1 << 64) - 1
MAX_EXAMPLES = 5
# the native runner's slots after the GPRs
SLOT_RFLAGS, SLOT_SIGNAL, SLOT_FAULT_RIP, SLOT_VECTOR = 16, 17, 18, 19


_GPR = tuple(gpr_of(r) for r in range(20))   # operand register -> the GPR holding it


@dataclass
class Case:
    code: bytes
    regs: list[int]     # RAX..R15 in encoding order
    flags: int          # arithmetic flags and DF
    mem: bytes          # the data buffer at layout.DATA
    info: dict          # what the form noted while making it (for its flag and mask rules)


class State:
    """The input state of a case while a form builds it: random registers, flags and
    data, then the form's operands placed in it."""

    def __init__(self, rng: random.Random, mode: int):
        self.rng, self.mode = rng, mode
        self.nregs = 16 if mode == 64 else 8
        # random background registers; operands get their values (edge values too) from put()
        width = 64 if mode == 64 else 32
        raw = rng.getrandbits(width * self.nregs).to_bytes(width // 8 * self.nregs, "little")
        self.regs = list(memoryview(raw).cast("Q" if width == 64 else "I")) + [0] * (16 - self.nregs)
        self.flags = rng.getrandbits(12) & (ARITH | DF)
        self.mem = bytearray(rng.randbytes(layout.DATA_SIZE))
        self.pinned = set()   # registers that hold addresses
        self.used = set()
        self.info = {}
        self.last_ea = None   # the effective address of the last memory operand made

    # ---- registers ------------------------------------------------------------------

    def pick(self, exclude=(), pool=None, reuse: float = 0.1) -> int:
        """A register for an operand from `pool` (default: every GPR): usually a fresh
        one, sometimes one already used (aliasing operands).  Pools may name AH..BH."""
        banned = self.pinned.union(exclude) if exclude else self.pinned
        pool = [r for r in (pool or range(self.nregs)) if _GPR[r] not in banned]
        used = self.used
        fresh = [r for r in pool if _GPR[r] not in used]
        choice = self.rng.choice(fresh if fresh and self.rng.random() >= reuse else pool)
        used.add(_GPR[choice])
        return choice

    def put(self, reg: int, size: int, value: int | None = None) -> int:
        """Give the operand `reg` of `size` bytes a value (random if None); the
        register's other bits stay random, or become all zeros or all ones."""
        if value is None:
            value = values.operand(self.rng, size * 8)
        value &= values.mask(size * 8)
        r = gpr_of(reg)
        if size < 8 and self.rng.random() < 0.3:
            self.regs[r] = self.rng.choice((0, M64 if self.mode == 64 else M32))
        if reg in HIGH_BYTE:
            self.regs[r] = self.regs[r] & ~0xFF00 | value << 8
        else:
            self.regs[r] = self.regs[r] & ~values.mask(size * 8) | value
        return value

    def operand(self, size: int, value: int | None = None, **pick) -> int:
        reg = self.pick(**pick)
        self.put(reg, size, value)
        return reg

    def pointer(self, reg: int, address: int):
        """`reg` holds an address: pinned so no operand overwrites it."""
        self.regs[reg] = address & (M64 if self.mode == 64 else M32)
        self.pinned.add(reg)
        self.used.add(reg)

    def value(self, reg: int, size: int) -> int:
        if reg in HIGH_BYTE:
            return self.regs[gpr_of(reg)] >> 8 & 0xFF
        return self.regs[reg] & values.mask(size * 8)

    # ---- memory ---------------------------------------------------------------------

    def write(self, address: int, size: int, value: int):
        """Store into the data buffer; bytes beyond it (the read-only guard page, all
        zeros) are left out."""
        off = address - layout.DATA
        data = (value & values.mask(size * 8)).to_bytes(size, "little")
        keep = max(0, min(size, layout.DATA_SIZE - off))
        self.mem[off:off + keep] = data[:keep]

    def read(self, address: int, size: int) -> int:
        off = address - layout.DATA
        return int.from_bytes(self.mem[off:off + size], "little")   # the guard reads as zeros

    def address(self, align: int = 1, spread: int = 0x60) -> int:
        """An address around MID, aligned."""
        ea = layout.MID + self.rng.randrange(-spread, spread)
        return ea - ea % align

    def memory(self, size: int, value: int | None = None, align: int = 1, ea: int | None = None,
               exclude=()) -> Mem:
        """A memory operand in a random addressing form, with `value` (an operand value
        if None) stored at its effective address."""
        rng = self.rng
        if ea is None:
            ea = self.address(align)
        self.last_ea = ea
        self.write(ea, size, values.operand(rng, size * 8) if value is None else value)
        kinds = ["base", "base", "disp8", "disp32", "sib", "sib", "index", "absolute"]
        kinds += ["rip", "addr32"] if self.mode == 64 else []
        banned = set(exclude) | self.pinned | self.used
        free = [r for r in range(self.nregs) if r not in banned]
        kind = rng.choice(kinds) if len(free) >= 2 else "absolute"
        if kind == "rip":
            return Mem(rip=True, disp=ea)
        if kind == "absolute":
            return Mem(disp=ea, addr=8 if self.mode == 64 else 4)
        base = rng.choice(free)
        index = scale = None
        disp = {"base": 0, "disp8": rng.randrange(-128, 128), "disp32": rng.randrange(-1 << 20, 1 << 20),
                "sib": rng.randrange(-128, 128), "index": rng.randrange(-64, 64),
                "addr32": rng.randrange(-128, 128)}[kind]
        addr = 4 if kind == "addr32" or self.mode == 32 else 8
        if kind in ("sib", "index", "addr32") and rng.random() < 0.8:
            index = rng.choice([r for r in free if r != base and r != RSP] or [None])
            scale = rng.randrange(4)
        if kind == "index" and index is not None:
            base = None
        offset = 0
        if index is not None:
            ival = rng.randrange(-16, 16)
            self.pointer(index, ival if addr == 8 else (ival & M32) | self._garbage(addr))
            offset = ival << scale
        if base is not None:
            self.pointer(base, ((ea - disp - offset) & (M64 if addr == 8 else M32)) | self._garbage(addr))
        else:
            disp = ea - offset
        return Mem(base=base, index=index, scale=scale or 0, disp=disp, addr=addr)

    def _garbage(self, addr: int) -> int:
        """Upper register bits that 32-bit addressing in 64-bit mode must ignore."""
        return self.rng.getrandbits(32) << 32 if addr == 4 and self.mode == 64 else 0

    def case(self, code: bytes) -> Case:
        return Case(code, list(self.regs), self.flags, bytes(self.mem), self.info)


@dataclass
class Form:
    """One instruction form.  `make` fills a State and returns the code; `flags` are the
    arithmetic flags the SDM defines afterwards (a mask, or a function of the case when
    that depends on the operands, as for shift counts); `undefined` names register bits
    the SDM leaves undefined for a case ({register: mask})."""
    name: str
    group: str
    make: Callable[[State], bytes]
    flags: int | Callable[[Case], int]
    mode: int = 64
    count: int = 1000
    undefined: Callable[[Case], dict[int, int]] | None = None
    faults: bool = False   # cases may fault (else a fault is a bad case: reported)

    def defined_flags(self, case: Case) -> int:
        return self.flags(case) if callable(self.flags) else self.flags


@dataclass
class FormResult:
    form: Form
    cases: int = 0
    faults: int = 0       # cases that raised an exception (natively)
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)


def _describe(form: Form, k: int, case: Case, diffs: list[str]) -> str:
    regs = " ".join(f"{v:x}" for v in case.regs[:16 if form.mode == 64 else 8])
    return (f"{form.name} case {k}: code {case.code.hex(' ')} flags {case.flags:#x}\n"
            f"    regs in: {regs}\n    " + "\n    ".join(diffs))


def compare(form: Form, case: Case, native: list[int], native_mem: bytes, emulated) -> list[str]:
    """What differs between the native run (its runner slots) and the emulated one.  A
    case may fault, natively and emulated alike: then the vector, the faulting RIP and
    the state at the fault must agree."""
    eregs, eflags, emem, end = emulated
    if (end is None and not native[SLOT_SIGNAL] and native[:16] == eregs and native_mem == emem
            and not (native[SLOT_RFLAGS] ^ eflags) & (ARITH | DF)):
        return []   # the common case: everything agrees
    diffs = []
    native_end = ("fault", native[SLOT_VECTOR], native[SLOT_FAULT_RIP]) if native[SLOT_SIGNAL] else None
    if native_end != end:
        diffs.append(f"native run ended with {_end(native_end)}, emulated with {_end(end)}")
    elif native_end is not None and not form.faults:
        diffs.append(f"the case faults ({_end(native_end)}): the form's generator is wrong")
    count, width = (16, M64) if form.mode == 64 else (8, M32)
    undefined = form.undefined(case) if form.undefined else {}
    for r in range(count):
        m = width & ~undefined.get(r, 0)
        if (native[r] ^ eregs[r]) & m:
            diffs.append(f"reg {r}: native {native[r] & m:#x} emulated {eregs[r] & m:#x}")
    m = form.defined_flags(case) | DF
    if (native[SLOT_RFLAGS] ^ eflags) & m:
        diffs.append(f"flags (mask {m:#x}): native {native[SLOT_RFLAGS] & m:#x} emulated {eflags & m:#x}")
    if native_mem != emem:
        at = [k for k in range(len(native_mem)) if native_mem[k] != emem[k]]
        lo, hi = at[0], at[-1] + 1
        diffs.append(f"memory differs at DATA+{lo:#x}..{hi - 1:#x}: native "
                     f"{bytes(native_mem[lo:hi]).hex()} emulated {bytes(emem[lo:hi]).hex()}")
    return diffs


def _end(end) -> str:
    if end is None:
        return "the end of the snippet"
    if end[0] == "fault":
        return f"exception {end[1]} at {end[2]:#x}"
    return end[1]


class Differential:
    """The session's two processors and the results of every form run so far.  With
    `workers`, helper processes (each with its own native runner and guest) run part of
    every batch of forms: the cases are independent, the machine has more cores."""

    def __init__(self, workers: int = 0):
        self.native = NativeCpu()
        self.emulated = EmulatedCpu()
        self.results: dict[str, FormResult] = {}
        self.pool = None
        if workers:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            self.workers = workers

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None

    def run(self, form: Form) -> FormResult:
        if form.name in self.results:
            return self.results[form.name]
        rng = values.rng_for(form.name)
        cases = []
        for _ in range(form.count):
            state = State(rng, form.mode)
            cases.append(state.case(form.make(state)))
        nregs, nmems = self.native.run(form.mode == 32, [c.code for c in cases],
                                       [c.regs + [c.flags] for c in cases], [c.mem for c in cases])
        result = FormResult(form, cases=len(cases))
        for k, case in enumerate(cases):
            # 32-bit forms run half in legacy protected mode, half in compatibility mode
            mode = MODE_LONG64 if form.mode == 64 else (MODE_PROT32, MODE_COMPAT32)[2 * k >= len(cases)]
            # and alternately interpreted and compiled to host code (the JIT)
            compiled = k % 2 == 1
            eregs, eflags, emem, end = self.emulated.run(mode, case.code, case.regs, case.flags, case.mem,
                                                         compiled=compiled)
            diffs = compare(form, case, nregs[k], nmems[k], (eregs, eflags, emem, end))
            result.faults += bool(nregs[k][SLOT_SIGNAL])
            if diffs:
                result.mismatches += 1
                if len(result.examples) < MAX_EXAMPLES:
                    result.examples.append(_describe(form, k, case, diffs) +
                                           f"\n    (emulated in {mode}, {'compiled' if compiled else 'interpreted'})")
        self.results[form.name] = result
        return result

    def check(self, forms: list[Form]) -> list[str]:
        """Run the forms; the descriptions of their mismatches (empty when all agree)."""
        todo = [f for f in forms if f.name not in self.results]
        remote = {}
        if self.pool is not None:
            share = self.workers + 1
            remote = {f.name: self.pool.submit(worker.run_form, f.name) for f in todo[1::share]}
        for form in todo:
            if form.name not in remote:
                self.run(form)
        for form in todo:
            if form.name in remote:
                self.results[form.name] = FormResult(form, *remote[form.name].result())
        failures = []
        for form in forms:
            result = self.results[form.name]
            if result.mismatches:
                failures.append(f"{form.name}: {result.mismatches}/{result.cases} cases differ\n"
                                + "\n".join(result.examples))
        return failures

    def report(self) -> str:
        lines = [f"{'form':60} {'cases':>6} {'faults':>6} {'mismatches':>10}"]
        by_group: dict[str, list[FormResult]] = {}
        for result in self.results.values():
            by_group.setdefault(result.form.group, []).append(result)
        for group in sorted(by_group):
            for result in sorted(by_group[group], key=lambda r: r.form.name):
                lines.append(f"{result.form.name:60} {result.cases:6} {result.faults:6} {result.mismatches:10}")
        total = sum(r.cases for r in self.results.values())
        bad = sum(r.mismatches for r in self.results.values())
        lines.append(f"{len(self.results)} forms in {len(by_group)} groups, {total} cases, {bad} mismatches")
        return "\n".join(lines)


def groups(forms: list[Form]) -> list[str]:
    return sorted({f.group for f in forms})


def in_group(forms: list[Form], group: str) -> list[Form]:
    return [f for f in forms if f.group == group]
