"""The x87/SSE units' system side: availability faults (CR0.EM/TS, CR4.OSFXSR), alignment
#GP, XSAVE/XRSTOR of the x87 and SSE components, and XSETBV through the hypervisor.
Instruction results are checked against the host in tests/differential (forms x87, simd)."""

import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from differential import layout
from differential.emulated import MODE_LONG64, EmulatedCpu
from kvm import vmx
from kvm._silicon import lib
from kvm.constants import KVM_EXIT_HLT
from kvm_guest import CODE_GPA, KvmGuest

CR0_EM, CR0_TS = 0x4, 0x8
CR4_OSFXSR, CR4_OSXSAVE = 0x200, 0x40000
EXC_UD, EXC_NM, EXC_GP = 6, 7, 13


def asm(text: str) -> bytes:
    """Assemble 64-bit code with the system assembler (as --64)."""
    with tempfile.TemporaryDirectory() as d:
        src, obj, raw = Path(d, "a.s"), Path(d, "a.o"), Path(d, "a.bin")
        src.write_text(".intel_syntax noprefix\n" + text + "\n")
        subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True)
        return raw.read_bytes()


@pytest.fixture(scope="module")
def cpu():
    return EmulatedCpu()


def run(cpu, code: bytes, mem: bytes = bytes(0x400), regs=None, cr0_set=0, cr0_clear=0, cr4_set=0,
        cr4_clear=0):
    cpu.set_mode(MODE_LONG64)
    vcpu = cpu.guest.vcpu
    s = vcpu.get_sregs()
    saved = (s.cr0, s.cr4)
    s.cr0 = (s.cr0 | cr0_set) & ~cr0_clear
    s.cr4 = (s.cr4 | cr4_set) & ~cr4_clear
    vcpu.set_sregs(s)
    try:
        regs = regs or [0] * 16
        regs[4] = layout.DATA + 0x1000
        return cpu.run(MODE_LONG64, code, regs, 0, mem)
    finally:
        s.cr0, s.cr4 = saved
        vcpu.set_sregs(s)


DATA = layout.DATA


@pytest.mark.parametrize("text, cr0_set, cr4_clear, vector", [
    ("addps xmm0, xmm1", CR0_TS, 0, EXC_NM),
    ("addps xmm0, xmm1", CR0_EM, 0, EXC_UD),
    ("addps xmm0, xmm1", 0, CR4_OSFXSR, EXC_UD),
    ("paddb mm0, mm1", CR0_EM, 0, EXC_UD),
    ("paddb mm0, mm1", CR0_TS, 0, EXC_NM),
    ("fadd st, st(1)", CR0_EM, 0, EXC_NM),
    ("fadd st, st(1)", CR0_TS, 0, EXC_NM),
    ("fxsave [rsp]", CR0_TS, 0, EXC_NM),
    (f"movaps xmm0, [{DATA + 8:#x}]", 0, 0, EXC_GP),
    (f"movdqa [{DATA + 4:#x}], xmm0", 0, 0, EXC_GP),
    ("xsave [rsp]", 0, 0, EXC_UD),         # CR4.OSXSAVE clear
])
def test_availability_faults(cpu, text, cr0_set, cr4_clear, vector):
    _, _, _, end = run(cpu, asm(text), cr0_set=cr0_set, cr4_clear=cr4_clear)
    assert end == ("fault", vector, layout.CODE)


def test_fwait_with_ts_and_mp_is_nm_and_without_mp_runs(cpu):
    _, _, _, end = run(cpu, asm("fwait"), cr0_set=CR0_TS)
    assert end == ("fault", EXC_NM, layout.CODE)
    _, _, _, end = run(cpu, asm("fwait"), cr0_set=CR0_TS, cr0_clear=0x2)
    assert end is None


def test_unmasked_sse_exception_without_osxmmexcpt_is_ud(cpu):
    code = asm(f"ldmxcsr [{DATA:#x}]\nmovss xmm0, [{DATA + 4:#x}]\nxorps xmm1, xmm1\ndivss xmm0, xmm1")
    mem = struct.pack("<If", 0x1F80 & ~0x200, 1.0) + bytes(0x3F8)   # zero-divide unmasked
    _, _, _, end = run(cpu, code, mem, cr4_clear=0x400)
    assert end[:2] == ("fault", EXC_UD)
    _, _, _, end = run(cpu, code, mem)
    assert end[:2] == ("fault", 19)


def test_xsave_and_xrstor_x87_and_sse_components(cpu):
    lib.cpu_set_xcr0(cpu.cpu, 3)
    area = DATA + 0x40          # 64-byte aligned
    code = asm(f"""
        ldmxcsr [{DATA + 0x3F0:#x}]
        movdqu xmm3, [{DATA:#x}]
        fninit
        fld1
        mov eax, 3
        xor edx, edx
        xsave [{area:#x}]
        mov rbx, [{area + 512:#x}]
        pxor xmm3, xmm3
        fldz
        mov qword ptr [{area + 512:#x}], 2          # XSTATE_BV: SSE only
        xrstor [{area:#x}]
        movdqu [{DATA + 0x10:#x}], xmm3
        fnstsw [{DATA + 0x34:#x}]
        fldz
        mov qword ptr [{area + 512:#x}], 0          # both components to their initial state
        xrstor [{area:#x}]
        movdqu [{DATA + 0x20:#x}], xmm3
        fnstsw [{DATA + 0x30:#x}]
        fnstcw [{DATA + 0x32:#x}]
        """)
    pattern = bytes(range(16))
    mem = pattern + bytes(0x3F0 - 16) + struct.pack("<I", 0x1F80) + bytes(12)
    regs, _, out, end = run(cpu, code, mem, cr4_set=CR4_OSXSAVE)
    assert end is None
    saved = out[0x40:0x40 + 576]
    assert regs[3] & 3 == 3                                          # XSTATE_BV
    assert saved[160 + 48:160 + 64] == pattern                       # XMM3
    assert struct.unpack_from("<I", saved, 24)[0] == 0x1F80          # MXCSR
    assert struct.unpack_from("<QH", saved, 32) == (1 << 63, 0x3FFF)  # ST(0) = 1.0
    assert out[0x10:0x20] == pattern                                 # XMM3 restored
    assert struct.unpack_from("<H", out, 0x34)[0] == 0               # x87 initialised (BV bit 0 clear)
    assert out[0x20:0x30] == bytes(16)                               # XMM3 initialised
    assert struct.unpack_from("<HH", out, 0x30) == (0, 0x37F)        # x87 initialised


def test_xrstor_with_reserved_header_bits_is_gp(cpu):
    lib.cpu_set_xcr0(cpu.cpu, 3)
    area = DATA + 0x40
    code = asm(f"mov eax, 3\nxor edx, edx\nmov qword ptr [{area + 520:#x}], 1\nxrstor [{area:#x}]")
    _, _, _, end = run(cpu, code, cr4_set=CR4_OSXSAVE)
    assert end[:2] == ("fault", EXC_GP)


def xsetbv_guest(cr4_osxsave: bool, rax: int, rcx: int, user: bool = False):
    """A guest that executes XSETBV once; ebx: 0 if it completed, else the vector taken."""
    g = KvmGuest(f"""
        mov eax, {rax}
        xor edx, edx
        mov ecx, {rcx}
        xor ebx, ebx
        xsetbv
        hlt
    .org 0x100
        mov ebx, {EXC_UD}
        hlt
    .org 0x200
        mov ebx, {EXC_GP}
        hlt""")
    g.set_idt_gate(EXC_UD, CODE_GPA + 0x100)
    g.set_idt_gate(EXC_GP, CODE_GPA + 0x200)
    if user:
        g.enter_user_mode(kernel_stack=0x90000)
    s = g.vcpu.get_sregs()
    s.cr4 = (s.cr4 | CR4_OSXSAVE) if cr4_osxsave else (s.cr4 & ~CR4_OSXSAVE)
    g.vcpu.set_sregs(s)
    lib.cpu_set_xcr0(g.vcpu.cpu, 1)
    return g


@pytest.mark.parametrize("cr4, rax, rcx, user, taken", [
    (True, 3, 0, False, 0),
    (True, 1, 0, False, 0),
    (False, 3, 0, False, EXC_UD),
    (True, 2, 0, False, EXC_GP),       # x87 state cannot be disabled
    (True, 7, 0, False, EXC_GP),       # AVX state is not supported
    (True, 3, 1, False, EXC_GP),       # only XCR0 exists
    (True, 3, 0, True, EXC_GP),        # CPL 3
])
def test_xsetbv_exit_sets_xcr0_or_injects(cr4, rax, rcx, user, taken):
    g = xsetbv_guest(cr4, rax, rcx, user)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == taken
    assert lib.cpu_get_xcr0(g.vcpu.cpu) == (rax if not taken else 1)
    assert g.vcpu.exit_stats()["XSETBV"]["count"] == 1


def test_xsetbv_in_the_guest_exits(cpu):
    _, _, _, end = run(cpu, asm("xsetbv"), regs=[3, 0, 0] + [0] * 13, cr4_set=CR4_OSXSAVE)
    assert end[0] == "other" and "XSETBV" in end[1]
    assert vmx.EXIT_REASON_XSETBV == cpu._vmread(vmx.VM_EXIT_REASON)
