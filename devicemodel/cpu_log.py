"""QEMU's CPU logging for ``-d int`` and ``-d cpu_reset``: the one-line interrupt record
of do_interrupt_all() followed by the register dump, the check_exception line of each
exception, and the register dump of a CPU about to reset, so that pyhv's logs read like
QEMU's (and diff against them)."""

from __future__ import annotations

import threading

from devicemodel.monitor.cpu_dump import dump_registers
from kvm import vmx

CR0_PE = 1
EXC_PF = 14
MASK64 = (1 << 64) - 1
EXCEPTIONS = (vmx.INTR_TYPE_HARD_EXCEPTION, vmx.INTR_TYPE_SOFT_EXCEPTION, vmx.INTR_TYPE_PRIV_SW_EXCEPTION)
SOFTWARE = (vmx.INTR_TYPE_SOFT_INTR, vmx.INTR_TYPE_SOFT_EXCEPTION, vmx.INTR_TYPE_PRIV_SW_EXCEPTION)


def format_cpu_reset(vcpu, index: int) -> str:
    """``-d cpu_reset``: the state of vCPU ``index`` as it is reset."""
    return f"CPU Reset (CPU {index})\n" + dump_registers(vcpu) + "\n"


def format_triple_fault(vcpu) -> str:
    return "Triple fault\n" + dump_registers(vcpu) + "\n"


class InterruptLog:
    """``-d int``: the event tracer of every vCPU (``VCPU.set_event_trace``). Each event
    a vCPU takes in protected mode is numbered (one count for the machine, as QEMU's) and
    shown as one line (vector, error code, software or not, CPL, where it happened; CR2
    for a #PF, else RAX) followed by the registers."""

    def __init__(self, write):
        self.write = write
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, event, vcpu, interrupted=None) -> None:
        s = vcpu.get_sregs()
        text = ""
        if event.type in EXCEPTIONS:
            old = interrupted.vector if interrupted is not None else 0xFFFFFFFF
            text += f"check_exception old: {old:#x} new {event.vector:#x}\n"
        if s.cr0 & CR0_PE:
            r = vcpu.get_regs()
            with self._lock:
                count, self.count = self.count, self.count + 1
            text += (f"{count:6d}: v={event.vector:02x} e={event.error_code or 0:04x} "
                     f"i={int(event.type in SOFTWARE)} cpl={s.ss.dpl} IP={s.cs.selector:04x}:{r.rip:016x} "
                     f"pc={(s.cs.base + r.rip) & MASK64:016x} SP={s.ss.selector:04x}:{r.rsp:016x}")
            text += f" CR2={s.cr2:016x}\n" if event.vector == EXC_PF and event.type == vmx.INTR_TYPE_HARD_EXCEPTION \
                else f" env->regs[R_EAX]={r.rax:016x}\n"
            text += dump_registers(vcpu, fpu=False) + "\n"
        if text:
            self.write(text)
