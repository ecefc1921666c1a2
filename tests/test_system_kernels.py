"""The processor's system behaviour, checked by guest kernels (firmware/kernels/
exceptions, paging, usermode, longmode, realmode) that print one line per check.

Each kernel runs under pyhv, where a set of lines the Intel SDM determines must appear,
and under QEMU's TCG, whose output must be identical line for line except for the
checks listed as QEMU deviations: there QEMU 7.2 does not follow the SDM (it has no
segment-limit checks, never pushes RF, ...), and the test pins both the SDM's answer,
which pyhv must give, and QEMU's, so that a change on either side is noticed.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

import guests

PYHV = [sys.executable, "-m", "devicemodel"]
UNEXPECTED = "unexpected exception"


@dataclass(frozen=True)
class SystemKernel:
    name: str
    exit_code: int
    # lines the SDM determines; each must appear in pyhv's output
    sdm_lines: tuple[str, ...]
    # the same for lines whose end depends on the code layout (a fetch fault's EIP)
    sdm_prefixes: tuple[str, ...] = ()
    # check name -> (the SDM's line, QEMU 7.2's line or None where QEMU skips the check)
    qemu_deviations: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # -append for QEMU only: lets a kernel skip checks that QEMU does not survive
    qemu_append: str = ""

    @property
    def banner(self) -> str:
        return f"{self.name} test"


def _gp(err, fl="0x00000002"):
    return f"#13 err={err} eip=+0 cs=0x08 fl={fl}"


EXCEPTIONS = SystemKernel(
    name="exceptions",
    exit_code=0x31,
    sdm_lines=(
        "lar exec-only: 0x00c09800 zf=1",
        "lsl read-only: 0x00000fff zf=1",
        "verr exec-only: zf=0",
        "verw read-only: zf=0",
        # faults report the faulting instruction, traps the next one
        "div by zero: #0 err=- eip=+0 cs=0x08 fl=0x00000002",
        "idiv overflow: #0 err=- eip=+0 cs=0x08 fl=0x00000002",
        "div8 overflow: #0 err=- eip=+0 cs=0x08 fl=0x00000002",
        "div ok: q=14 r=2",
        "ud2: #6 err=- eip=+0 cs=0x08 fl=0x00000002",
        "lock nop: #6 err=- eip=+0 cs=0x08 fl=0x00000002",
        "lock add reg: #6 err=- eip=+0 cs=0x08 fl=0x00000002",
        "lock add mem: 8",
        "mov cs: #6 err=- eip=+0 cs=0x08 fl=0x00000002",
        "16 bytes: " + _gp("0x0000"),
        "15 bytes: none",
        "int3: #3 err=- eip=+1 cs=0x08 fl=0x00000002",
        "int 3: #3 err=- eip=+2 cs=0x08 fl=0x00000002",
        "into of=1: #4 err=- eip=+1 cs=0x08 fl=0x00000802",
        "into of=0: none",
        "int 0x80 int gate: handler if=0",
        "int 0x81 trap gate: handler if=1",
        # IDT errors: index << 3 | IDT (2), EXT = 0 for INT n
        "int not-present gate: #11 err=0x0412 eip=+0 cs=0x08 fl=0x00000002",
        "int call gate in idt: " + _gp("0x041a"),
        "int gate to data seg: " + _gp("0x0010"),
        "int beyond idt limit: " + _gp("0x0782"),
        "bound below: #5 err=- eip=+0 cs=0x08 fl=0x00000002",
        "bound in: none",
        "arpl raise: ax=0x13 zf=1",
        "mov ds beyond gdt: " + _gp("0x01f8"),
        "mov ds not present: #11 err=0x0030 eip=+0 cs=0x08 fl=0x00000002",
        "mov ss null: " + _gp("0x0000"),
        "mov ss not present: #12 err=0x0058 eip=+0 cs=0x08 fl=0x00000002",
        "ljmp to data seg: " + _gp("0x0010"),
        "wait ts mp: #7 err=- eip=+0 cs=0x08 fl=0x00000002",
        "fninit em: #7 err=- eip=+0 cs=0x08 fl=0x00000002",
        "wait em: none",
        "iret flags: 0x00243cd7",
        "iret to other cs: cs=0x68 fl=0x00000002",
        # contributory + contributory is a double fault; benign + anything is not
        "gp through np gate: #8 err=0x0000 eip=+0 cs=0x08 fl=0x00000002",
        "gp beyond idt limit: #8 err=0x0000 eip=+0 cs=0x08 fl=0x00000002",
        "de through np gate: #8 err=0x0000 eip=+0 cs=0x08 fl=0x00000002",
    ),
    qemu_deviations={
        # QEMU's TCG checks no segment limits or types on data accesses
        "write through fs code": (_gp("0x0000"), "none"),
        "es read-only write": (_gp("0x0000"), "none"),
        "es read straddles": (_gp("0x0000"), "none"),
        "es read past limit": (_gp("0x0000"), "none"),
        "expand-down below limit": (_gp("0x0000"), "none"),
        "ss past limit": ("#12 err=0x0000 eip=+0 cs=0x08 fl=0x00000002", "none"),
        # QEMU loops on MOV to CR4 with a reserved bit and accepts CR0.PG without PE
        "cr4 bit 15": (_gp("0x0000"), None),
        "cr4 bit 12": (_gp("0x0000"), None),
        "cr0 pg without pe": (_gp("0x0000"), None),
        "cr0 nw without cd": (_gp("0x0000"), "none"),
        # faults push RF = 1; RF loaded by IRET lasts one instruction (SDM 18.3.1.1)
        "rf pushed": ("#UD=1 #GP=1 #BP=0 int=0", "#UD=0 #GP=0 #BP=0 int=0"),
        "rf pushed by int right after iret with rf=1": ("0", "1"),
        # an exception during the delivery of another one has EXT set (SDM 6.13)
        "ud through np gate": ("#11 err=0x0033 eip=+0 cs=0x08 fl=0x00000002",
                               "#11 err=0x0032 eip=+0 cs=0x08 fl=0x00000002"),
        # loading CS sets the accessed bit too (SDM 3.4.5.1)
        "accessed": ("kcode=1 kdata=1 exec-only=1 kcode2=1 read-only=1 not-loaded=0",
                     "kcode=1 kdata=1 exec-only=0 kcode2=0 read-only=1 not-loaded=0"),
    },
    qemu_append="skip=qemu-fatal",
)

def _pf(err, cr2, cs="0x08", fl="0x00000002"):
    return f"#14 err={err} eip=+0 cs={cs} fl={fl} cr2={cr2}"


PAGING = SystemKernel(
    name="paging",
    exit_code=0x32,
    sdm_lines=(
        "32-bit paging: cr0.pg=1 cr4=0x00000010",
        # accessed on every entry used, dirty only on the leaf (SDM 4.8)
        "before: pde.a=0 pte.a=0 pte.d=0",
        "after read 0x1004: pde.a=1 pte.a=1 pte.d=0",
        "after write: pde.d=0 pte.a=1 pte.d=1",
        "4 MiB page: a=1 d=1",
        "read rw: 0x1000",
        "read not present: " + _pf("0x0000", "0x00403004"),
        "write not present: " + _pf("0x0002", "0x00403008"),
        "write read-only wp=0: none",
        "write read-only wp=1: " + _pf("0x0003", "0x0040100c"),
        "read-only page after write: 7",
        "fetch not present: eip=cr2 1",
        "call code page: none",
        "user read user page: none",
        "user read supervisor page: " + _pf("0x0005", "0x00402004", "0x1b", "0x00003002"),
        "user write supervisor page: " + _pf("0x0007", "0x00402004", "0x1b", "0x00003002"),
        "user write read-only page: " + _pf("0x0007", "0x00401004", "0x1b", "0x00003002"),
        "user read not present: " + _pf("0x0004", "0x00403004", "0x1b", "0x00003002"),
        "user fetch supervisor page: eip=cr2 1; ran at cpl 3",
        # INVLPG drops a stale translation
        "remapped, before invlpg: 0x1005",
        "remapped, after invlpg: 0x1006",
        "after cr4.pge=0: global 0x1008 non-global 0x1008",
        "pf through np gate: #8 err=0x0000 eip=+0 cs=0x08 fl=0x00000002",
        "pf through np gate: cr2=0x00403030",
        "pae paging: cr0.pg=1 cr4=0x00000020 read 0x1000",
        "pae after write: pde.a=1 pte.a=1 pte.d=1",
        "pae 2 MiB page: a=1 d=1",
        "pae read not present: " + _pf("0x0000", "0x00403004"),
        "pae pdpte not present: " + _pf("0x0000", "0xc0000000"),
        "pae read xd page: none",
        "pae fetch xd page: eip=cr2 1",
        "pae call code page: none",
        "paging off: cr0.pg=0",
    ),
    sdm_prefixes=(
        # I/D only with PAE and NXE (or SMEP)
        "fetch not present: #14 err=0x0000 ",
        "fetch not present nxe: #14 err=0x0000 ",
        "user fetch supervisor page: #14 err=0x0005 ",
        "pae fetch xd page: #14 err=0x0011 ",
        "pae fetch not present nxe: #14 err=0x0010 ",
    ),
    qemu_deviations={
        # a reserved-bit fault is on a present entry: P is set with RSVD (SDM 4.7)
        "read 4 MiB page rsvd bit": (_pf("0x0009", "0x00800010"), _pf("0x0008", "0x00800010")),
        "pae read 2 MiB page rsvd bit": (_pf("0x0009", "0x00600010"), _pf("0x0008", "0x00600010")),
        "pae pte bit 45": (_pf("0x0009", "0x00408004"), _pf("0x0008", "0x00408004")),
        "pae pte bit 52": (_pf("0x0009", "0x00408004"), _pf("0x0008", "0x00408004")),
        "pae pte bit 62": (_pf("0x0009", "0x00408004"), _pf("0x0008", "0x00408004")),
        "pae pte xd with nxe=0": (_pf("0x0009", "0x00408004"), _pf("0x0008", "0x00408004")),
        # a CR3 load keeps global translations; QEMU flushes them too (the SDM allows
        # both: a TLB may drop any entry at any time)
        "after cr3 load": ("global 0x1006 non-global 0x1008", "global 0x1008 non-global 0x1008"),
        # MOV to CR3 under PAE paging loads the PDPTEs and checks them (SDM 4.4.1)
        "pae cr3 load with rsvd pdpte": (_gp("0x0000"), "none"),
    },
)

def _gp3(err, fl="0x00000002"):
    return f"#13 err={err} eip=+0 cs=0x1b fl={fl}"


USERMODE = SystemKernel(
    name="usermode",
    exit_code=0x33,
    sdm_lines=(
        "lcall ring-0 code: target cs=0x30 back cs=0x08",
        # IRET checks the new CS and SS before loading either (SS: RPL = DPL = new CPL)
        "iret to ring 3 with ring-0 ss: " + _gp("0x0010"),
        "iret to ring 3 with ring-0 cs: " + _gp("0x0008"),
        "iret to ring 3 with rpl-0 ss: " + _gp("0x0020"),
        "ring 3: cs=0x1b ss=0x23 ds=0x23 if=1 iopl=0",
        "int 0x80 from ring 3: #128 err=- eip=+2 cs=0x1b fl=0x00000202",
        # the ring-0 stack comes from the TSS; SS, ESP, EFLAGS, CS, EIP are pushed there
        "back in ring 3: cs=0x1b ss=0x23",
        "int 0x81 dpl-0 gate from ring 3: " + _gp3("0x040a", "0x00000202"),
        "int3 from ring 3: " + _gp3("0x001a", "0x00000202"),
        "cli: " + _gp3("0x0000"),
        "hlt: " + _gp3("0x0000"),
        "mov from cr0: " + _gp3("0x0000"),
        "lgdt: " + _gp3("0x0000"),
        "sgdt: none",
        "rdmsr: " + _gp3("0x0000"),
        "wrmsr: " + _gp3("0x0000"),
        "rdtsc: none",
        "sysexit at cpl 3: " + _gp3("0x0000"),
        "popf of iopl 3 and if: flags=0x00000002",
        # I/O: IOPL 0 < CPL 3, so the TSS bitmap decides, every byte of the access
        "in 0x70 iopl 0: " + _gp3("0x0000"),
        "in 0x80 allowed by bitmap: none",
        "out 0x81 denied by bitmap: " + _gp3("0x0000"),
        "outw 0x7f half allowed: none",
        "outw 0x80 straddles denied: " + _gp3("0x0000"),
        "mov ds kernel data: " + _gp3("0x0010"),
        "mov ss kernel data: " + _gp3("0x0010"),
        "lcall conforming: cs=0x3b",
        "lcall ring-0 code: " + _gp3("0x0008"),
        # SYSENTER: CS = SYSENTER_CS, SS = +8, IF cleared; SYSEXIT: CS +16, SS +24, RPL 3
        # call gates: a CALL to a more privileged level switches to the TSS's stack and
        # copies the gate's parameter count of dwords; LRET $8 releases them on both stacks
        "lcall dpl-0 gate at ring 0: target cs=0x30 back cs=0x08",
        "lcall gate to ring 0: cs=0x08 ss=0x10 esp=esp0-24",
        "lcall gate frame: cs=0x1b params=0x1111,0x2222 esp=caller's-0 ss=0x23",
        "lret $8 to ring 3: cs=0x1b ss=0x23 esp=past the parameters",
        # JMP through a gate keeps the CPL: non-conforming ring-0 code is refused (its CS)
        "ljmp gate to ring-0 code: " + _gp3("0x0008"),
        "lcall dpl-0 gate: " + _gp3("0x0048"),
        "lcall not-present gate: #11 err=0x0050 eip=+0 cs=0x1b fl=0x00000002",
        "lcall gate to data: " + _gp3("0x0010"),
        "sysenter: cs=0x08 ss=0x10 esp=top-0 if=0",
        "sysexit: cs=0x1b ss=0x23 if=0",
        "int with null ss0: #TS count=1 err=0x0000",
        "lcall gate with null ss0: #TS count=2 err=0x0000",
        "int with rpl-3 ss0: #TS count=3 err=0x0020",
        "back in ring 0: cs=0x08 ss=0x10",
    ),
    sdm_prefixes=("int 0x80 from ring 3: handler esp=esp0-20 if=0; pushed ss=0x23 esp=user top-",),
    qemu_deviations={
        # through a call gate to conforming code the CPL stays 3 and CS.RPL = CPL (SDM
        # CALL, "SAME-PRIVILEGE"); QEMU loads the segment's DPL into the RPL
        "lcall gate to conforming code": ("cs=0x3b", "cs=0x38"),
    },
)

def _lm_arith_lines():
    """The 64-bit arithmetic of lm64.S (lm_arith), computed here."""
    m = (1 << 64) - 1
    a, b = 0x123456789ABCDEF0, 0x0FEDCBA987654321
    n = 0xFEDCBA9876543210
    values = [
        ("add", a + b), ("mul lo", a * b), ("mul hi", (a * b) >> 64),
        ("div q", n // 1000003), ("div r", n % 1000003), ("idiv q", -3), ("idiv r", -1),
        ("sar", (0x8000000000000001 - (1 << 64)) >> 4),
        ("rol", ((0x8000000000000001 << 8) | (0x8000000000000001 >> 56))),
        ("mov r32 zero-extends", 0xFFFFFFFF), ("movsxd", -5), ("bsr", 40),
        ("bswap", 0x8877665544332211), ("adc carry", 2),
        ("lea", 0xFFFFFFFF00000000 + 0x12345678 * 4), ("rex 0x40", 0), ("rip-relative", 0),
    ]
    return tuple(f"{name}: 0x{value & m:016x}" for name, value in values)


LONGMODE = SystemKernel(
    name="longmode",
    exit_code=0x34,
    sdm_lines=(
        "before paging: efer=0x100",
        "long mode: efer=0x500 cr0.pg=1 cs=0x08",   # LMA set by CR0.PG, still 32-bit code
        "tss busy: 1",
        "compat: 0x40 is inc eax: eax=1",
        "compat ud2: #6 err=- eip=+0 cs=0x08 fl=0x00000002",
        "compat read not present: " + _pf("0x0000", "0x00402008"),
        "compat int 0x91: #145 err=- eip=+2 cs=0x08 fl=0x00000002",
        *_lm_arith_lines(),
        "read upper-half not present cr2: 0xffff800000001008",
        "fetch xd page: rip=cr2 1",
        # 64-bit delivery: IST stacks, RSP aligned to 16, SS:RSP always pushed
        "int ist1: handler rsp=ist1 top-40 pushed cs=0x38 ss=0x10",
        "int with rsp 16n-8: rsp before-handler rsp=48",
        # SYSRET: CS = STAR[63:48] + 16, SS = + 8; SYSCALL: CS = STAR[47:32], SS = + 8,
        # RCX = next RIP, R11 = RFLAGS, RFLAGS &= ~FMASK
        "sysret: cs=0x5b ss=0x53 if=1",
        "ring-3 read of supervisor page: handler rsp=rsp0-48 handler ss=0x00 pushed ss=0x53",
        "syscall: cs=0x38 ss=0x40 if=0 rcx=next rip 1 r11.if=1",
    ),
    sdm_prefixes=(
        "64-bit ud2: #6 err=- eip=+0 cs=0x38 ",
        "64-bit push es: #6 err=- eip=+0 cs=0x38 ",
        "non-canonical read: #13 err=0x0000 eip=+0 cs=0x38 ",
        "read upper-half not present: #14 err=0x0000 eip=+0 cs=0x38 ",
        "fetch xd page: #14 err=0x0011 ",
        "syscall without efer.sce: #6 err=- eip=+0 cs=0x38 ",
        "ring-3 read of supervisor page: #14 err=0x0005 eip=+0 cs=0x5b ",
    ),
    qemu_deviations={
        # a reference through a null segment register faults in compatibility mode too
        "compat mov ds null then read": (_gp("0x0000").replace("eip=+0", "eip=+2"), "none"),
        # a non-canonical address through SS is #SS(0) (SDM Vol. 3 6.15, Interrupt 12)
        "non-canonical stack read": ("#12 err=0x0000 eip=+0 cs=0x38 fl=0x00000002",
                                     "#13 err=0x0000 eip=+0 cs=0x38 fl=0x00000002"),
        # SYSRET checks RCX before leaving ring 0; QEMU returns to ring 3 instead
        "sysret to non-canonical rip": (_gp("0x0000").replace("0x08", "0x38"), None),
    },
    qemu_append="skip=qemu-fatal",
)

REALMODE = SystemKernel(
    name="realmode",
    exit_code=0x35,
    sdm_lines=(
        "back in protected mode: cs=0x08 cr0.pe=1",
        "real mode: cr0.pe=0 cs=0x0700 ss=0x0700",
        f"mul 0x1234*0x5678: dx:ax=0x{0x1234 * 0x5678:08x}",
        "daa 0x19+0x28: 0x47",
        # linear = selector * 16 + offset, past 1 MiB with A20 enabled
        "read 1234:0010: 0x5e65e600",
        "read ffff:fff0: 0xa20a20a2",
        # INT n pushes FLAGS, CS, IP (6 bytes, plus the handler's BP) and clears IF
        "int 0x30: pushed ip=next 1 cs=0x0700 flags.if=1; handler flags.if=0 sp=top-8",
        "div by zero: pushed ip=div 1",
        "ud2: pushed ip=ud2 1",
        "#UD count (arpl, ud2): 2",
        "stack balanced: 1",
    ),
)

KERNELS = [EXCEPTIONS, PAGING, USERMODE, LONGMODE, REALMODE]


def check_name(line: str) -> str:
    return line.split(":", 1)[0]


def kernel_lines(text: str, kernel: SystemKernel) -> list[str]:
    lines = guests.serial_lines(text, kernel.banner)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def run_pyhv(kernel: SystemKernel, firmware_dir, timeout=120, extra_args=()):
    path = guests.guest_path(kernel.name, firmware_dir)
    r = subprocess.run(PYHV + ["-m", "128M", "-kernel", str(path), "-nographic",
                               *guests.DEBUG_EXIT_ARGS, *extra_args],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


def without_deviations(lines: list[str], kernel: SystemKernel) -> list[str]:
    return [line for line in lines if check_name(line) not in kernel.qemu_deviations]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_kernel_under_pyhv_gives_the_sdm_results(kernel, firmware_dir):
    status, out, err = run_pyhv(kernel, firmware_dir)
    lines = kernel_lines(out, kernel)
    assert not [line for line in lines if UNEXPECTED in line], out
    assert status == guests.exit_status(kernel.exit_code), (out, err)
    assert lines[-1] == f"{kernel.name} test done"
    missing = [line for line in kernel.sdm_lines if line not in lines]
    missing += [p for p in kernel.sdm_prefixes if not any(line.startswith(p) for line in lines)]
    assert not missing, out
    for name, (sdm, _) in kernel.qemu_deviations.items():
        assert f"{name}: {sdm}" in lines, (name, out)


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_tracing_interrupts_changes_nothing_the_kernel_sees(kernel, firmware_dir, tmp_path):
    """-d int makes every exception pass through the hypervisor, which must deliver it
    exactly as the processor does (error codes, CR2, RF, #DF, INT n cut short)."""
    log = tmp_path / "int.log"
    plain = run_pyhv(kernel, firmware_dir)
    traced = run_pyhv(kernel, firmware_dir, extra_args=("-d", "int", "-D", str(log)))
    assert traced[:2] == plain[:2]
    if kernel.name != "realmode":      # as QEMU, only events in protected mode are logged
        assert ": v=" in log.read_text()


@pytest.mark.qemu
@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: k.name)
def test_kernel_matches_qemu(kernel, firmware_dir, qemu):
    path = guests.guest_path(kernel.name, firmware_dir)
    q = guests.run_qemu(path, append=kernel.qemu_append or None)
    p_status, p_out, err = run_pyhv(kernel, firmware_dir)
    assert p_status == q.status == guests.exit_status(kernel.exit_code), (q.output, p_out, err)
    p_lines, q_lines = kernel_lines(p_out, kernel), kernel_lines(q.output, kernel)
    assert without_deviations(p_lines, kernel) == without_deviations(q_lines, kernel)
    for name, (_, qemu_line) in kernel.qemu_deviations.items():
        got = [line for line in q_lines if check_name(line) == name]
        assert got == ([] if qemu_line is None else [f"{name}: {qemu_line}"]), name
