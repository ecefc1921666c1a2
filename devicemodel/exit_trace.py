"""One line per VM exit (``-d exits``, the monitor's ``trace exits on``), in the spirit
of Linux's kvm_exit tracepoint: the time since tracing started, the vCPU, the VMX exit
reason, the guest RIP at the exit, and what the exit qualification says for the reason
(the port of an I/O exit, the guest-physical address of an EPT violation, ...):

    0.001234 vcpu 0 IO_INSTRUCTION rip 0x102f9a port 0x3f8 out size 1
    0.001301 vcpu 0 EPT_VIOLATION rip 0x100000 gpa 0x107000 read qual 0x181

``tools/plot_exits.py`` reads these lines back with ``parse_line``.
"""

from __future__ import annotations

import re
import threading
import time
from typing import NamedTuple, Optional

from kvm import vmx

CR_ACCESS_TYPES = ("write", "read", "clts", "lmsw")
EPT_ACCESS = ((vmx.EPT_VIOLATION_ACC_READ, "read"), (vmx.EPT_VIOLATION_ACC_WRITE, "write"),
              (vmx.EPT_VIOLATION_ACC_INSTR, "fetch"))
RCX, RAX = 1, 0


def exit_detail(vcpu, basic: int) -> str:
    """The reason-specific part of a trace line, read from the VMCS exit fields."""
    qual = vcpu.vmread(vmx.EXIT_QUALIFICATION)
    if basic == vmx.EXIT_REASON_IO_INSTRUCTION:
        text = (f"port {qual >> 16:#x} {'in' if qual & 8 else 'out'} size {(qual & 7) + 1}"
                + (" string" if qual & 16 else "") + (" rep" if qual & 32 else ""))
    elif basic in (vmx.EXIT_REASON_EPT_VIOLATION, vmx.EXIT_REASON_EPT_MISCONFIG):
        access = " ".join(name for bit, name in EPT_ACCESS if qual & bit)
        text = f"gpa {vcpu.vmread(vmx.GUEST_PHYSICAL_ADDRESS):#x}"
        if basic == vmx.EXIT_REASON_EPT_VIOLATION:
            text += f" {access or '-'} qual {qual:#x}"
    elif basic == vmx.EXIT_REASON_CR_ACCESS:
        text = f"cr{qual & 15} {CR_ACCESS_TYPES[(qual >> 4) & 3]}"
    elif basic in (vmx.EXIT_REASON_MSR_READ, vmx.EXIT_REASON_MSR_WRITE):
        text = f"msr {vcpu.get_gpr(RCX) & 0xFFFFFFFF:#x}"
    elif basic == vmx.EXIT_REASON_CPUID:
        text = f"leaf {vcpu.get_gpr(RAX) & 0xFFFFFFFF:#x}"
    elif basic in (vmx.EXIT_REASON_EXCEPTION_NMI, vmx.EXIT_REASON_EXTERNAL_INTERRUPT):
        info = vcpu.vmread(vmx.VM_EXIT_INTR_INFO)
        text = f"vector {info & 0xFF} intr_info {info:#x}"
    else:
        text = f"qual {qual:#x}"
    return text


class ExitTracer:
    """An ``exit_hook`` for kvm vCPUs writing trace lines to ``out`` (a text file)."""

    def __init__(self, out):
        self.out = out
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, vcpu, reason: int, rip: int) -> None:
        basic = reason & 0xFFFF
        line = (f"{time.monotonic() - self.started:.6f} vcpu {vcpu.id} {vmx.exit_reason_name(reason)} "
                f"rip {rip:#x} {exit_detail(vcpu, basic)}\n")
        with self._lock:
            try:
                self.out.write(line)
            except ValueError:    # the log was closed while a vCPU still ran
                pass


class TraceRecord(NamedTuple):
    time: float
    vcpu: int
    reason: str
    rip: int
    detail: str


_LINE = re.compile(r"(\d+\.\d+) vcpu (\d+) (\S+) rip (0x[0-9a-f]+) ?(.*)")


def parse_line(line: str) -> Optional[TraceRecord]:
    """A trace line read back; None for any other line (the log may hold other text)."""
    match = _LINE.fullmatch(line.strip())
    if match is None:
        return None
    t, vcpu, reason, rip, detail = match.groups()
    return TraceRecord(float(t), int(vcpu), reason, int(rip, 16), detail)
