"""The vCPU thread: run the guest, serve each exit, repeat until the VM is asked to stop.

Exits, as QEMU's kvm_cpu_exec() treats them:

* IO: port I/O on the PIO address space; string I/O (count > 1) walks the data buffer;
  IN fills ``run.io.data``.  OUTs the hypervisor queued instead of exiting (coalesced
  port I/O, see Uart16550.set_tx_coalescing) are written first, at every exit.
* MMIO: on the vCPU's view of the physical address space (its local APIC's page, else
  the MMIO space), little-endian; a read fills ``run.mmio.data``.
* X86_RDMSR / X86_WRMSR: the MSRs the device model serves (the local APIC's); an MSR it
  refuses makes the guest's instruction #GP (``run.msr.error``).
* HLT: on the boot vCPU with interrupts disabled (RFLAGS.IF clear) the VM ends (status 0):
  a test kernel's way to stop. Otherwise the vCPU sleeps until something would wake the
  processor (an interrupt it can take, an NMI, INIT or SIPI), or the VM is paused or
  stopped; an application processor halted with interrupts disabled waits for NMI or INIT.

Exits are served with the big lock held (QEMU's BQL), which device timers take too;
before each run the vCPU's interrupt delivery injects what is pending or asks for a
window. While the VM is paused (monitor ``stop``, ``-S``, the gdbstub) the loop parks
before entering the guest.
* SHUTDOWN (triple fault): the machine resets (``request_reset``), as QEMU does; with
  -no-reboot the VM ends with status 0. ``-d cpu_reset`` logs the registers first.
* SYSTEM_EVENT: the guest asked for a reset (the machine resets), a shutdown (it shuts
  down, ``request_shutdown``), or reported a crash: as QEMU's default panic action, the
  crash is reported with the guest's Hyper-V crash parameters and the machine shuts down.
* FAIL_ENTRY, INTERNAL_ERROR, and exit reasons the loop does not know: an error message
  with the hardware reason or suberror and the registers; status 1.
* INTR: run() was interrupted (``vcpu.kick()``); the loop checks for a stop or pause request.
* IRQ_WINDOW_OPEN: the guest can take the interrupt it could not before; the next run
  injects it. SET_TPR: the guest lowered CR8 (the TPR), which may do the same.
* DEBUG: a breakpoint, watchpoint or single-step of the gdbstub, which decides.
* IOAPIC_EOI: under APIC virtualization, the guest's EOI of a level-triggered vector
  (devicemodel.cpu_apicv), which the I/O APICs hear of.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import traceback

from devicemodel.cpu_log import format_triple_fault
from devicemodel.current_cpu import set_current_cpu
from devicemodel.errors import error_report
from kvm.constants import (KVM_EXIT_DEBUG, KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR,
                           KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_IOAPIC_EOI, KVM_EXIT_IRQ_WINDOW_OPEN,
                           KVM_EXIT_MMIO, KVM_EXIT_SET_TPR, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT,
                           KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR,
                           KVM_MP_STATE_HALTED, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
                           KVM_SYSTEM_EVENT_SHUTDOWN, exit_reason_name)
from kvm.hyperv import HV_CRASH_PARAMS

RFLAGS_IF = 1 << 9

# The basic VMX exit reasons a failed VM entry reports (SDM Vol. 3 Appendix C).
ENTRY_FAILURE_REASONS = {33: "invalid guest state", 34: "MSR loading", 41: "machine-check event"}
INTERNAL_SUBERRORS = {1: "emulation failure", 2: "simultaneous exceptions",
                      3: "exception while delivering an event", 4: "unexpected VM exit reason"}


class VcpuLoop:
    """Serves the exits of one vCPU; ``start()`` runs it in its own thread."""

    def __init__(self, vcpu, pio, mmio, runstate, *, no_reboot: bool = False, index: int = 0,
                 bql=None, interrupts=None, request_reset=None, request_shutdown=None, msrs=None,
                 on_debug=None, cpu_reset_log=None):
        self.vcpu = vcpu
        self.pio = pio
        self.mmio = mmio
        self.runstate = runstate
        self.no_reboot = no_reboot
        self.index = index
        self.bql = bql if bql is not None else contextlib.nullcontext()
        self.interrupts = interrupts
        self.request_reset = request_reset
        self.request_shutdown = request_shutdown
        self.msrs = msrs
        self.cpu_reset_log = cpu_reset_log      # -d cpu_reset: writes the text it is given
        self._handlers = {
            KVM_EXIT_IO: self._io,
            KVM_EXIT_MMIO: self._mmio,
            KVM_EXIT_HLT: self._hlt,
            KVM_EXIT_SHUTDOWN: self._shutdown,
            KVM_EXIT_SYSTEM_EVENT: self._system_event,
            KVM_EXIT_FAIL_ENTRY: self._fail_entry,
            KVM_EXIT_INTERNAL_ERROR: self._internal_error,
            KVM_EXIT_INTR: self._intr,
            KVM_EXIT_IRQ_WINDOW_OPEN: self._intr,   # the next run injects the interrupt
            KVM_EXIT_SET_TPR: self._intr,           # CR8 lowered: the next run may inject
            KVM_EXIT_X86_RDMSR: self._rdmsr,
            KVM_EXIT_X86_WRMSR: self._wrmsr,
            KVM_EXIT_IOAPIC_EOI: self._ioapic_eoi,
        }
        if on_debug is not None:   # the gdbstub: on_debug(index, run)
            self._handlers[KVM_EXIT_DEBUG] = lambda run: on_debug(self.index, run)
        self._coalesced = getattr(getattr(vcpu, "vm", None), "coalesced", None)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name=f"vcpu{self.index}", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """Run until the VM is asked to stop. A bug in a handler ends the VM with status 1."""
        set_current_cpu(self.index)
        try:
            while not self.runstate.stop_requested:
                self.runstate.park_while_paused(self.index)
                if self.runstate.stop_requested:
                    break
                if self.interrupts is not None:
                    with self.bql:
                        self.interrupts.before_run(self.vcpu.kvm_run, self.vcpu)
                run = self.vcpu.run()
                with self.bql:
                    self._write_coalesced()
                    if self.interrupts is not None:
                        self.interrupts.after_run(run)
                    self._handlers.get(run.exit_reason, self._unknown)(run)
        except Exception as e:  # a bug in pyhv, not in the guest: report it, never hang
            error_report(f"vCPU {self.index}: internal error: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
            self.runstate.request_exit(1)

    def _write_coalesced(self) -> None:
        coalesced = self._coalesced
        if coalesced is not None and coalesced.ring.first != coalesced.ring.last:
            for port, size, value in coalesced.take():
                self.pio.write(port, size, value)

    def _end(self, status: int, message: str) -> None:
        error_report(message)
        self.runstate.request_exit(status)

    def _io(self, run) -> None:
        io = run.io
        size, port, data = io.size, io.port, io.data
        end = size * io.count
        if io.direction == KVM_EXIT_IO_OUT:
            for offset in range(0, end, size):
                self.pio.write(port, size, int.from_bytes(data[offset:offset + size], "little"))
        else:
            for offset in range(0, end, size):
                data[offset:offset + size] = self.pio.read(port, size).to_bytes(size, "little")

    def _mmio(self, run) -> None:
        mmio = run.mmio
        length = mmio.len
        if mmio.is_write:
            self.mmio.write(mmio.phys_addr, length, int.from_bytes(mmio.data[:length], "little"))
        else:
            mmio.data[:length] = self.mmio.read(mmio.phys_addr, length).to_bytes(length, "little")

    def _rdmsr(self, run) -> None:
        value = self.msrs.read(run.msr.index) if self.msrs is not None else None
        run.msr.error = int(value is None)
        run.msr.data = value or 0

    def _wrmsr(self, run) -> None:
        run.msr.error = int(self.msrs is None or not self.msrs.write(run.msr.index, run.msr.data))

    def _ioapic_eoi(self, run) -> None:
        self.interrupts.lapic.eoi_done(run.eoi.vector)    # the processor cleared its ISR bit

    def _hlt(self, run) -> None:
        if_flag = self.vcpu.get_regs().rflags & RFLAGS_IF
        if self.index == 0 and not if_flag:
            self._end(0, "guest halted with interrupts disabled")
            return
        if self.interrupts is not None:
            self.interrupts.wait_for_interrupt(self.runstate, if_flag)
            woken = self.interrupts.wakes(if_flag)
        else:  # no interrupt controller: sleep until the VM is paused or stops
            while not (self.runstate.stop_requested or self.runstate.pause_requested):
                self.runstate.wait(0.05)
            woken = False
        if self.runstate.pause_requested and not woken:
            # woken by a pause, not an interrupt: after it, the vCPU halts on in the guest
            self.vcpu.set_mp_state(KVM_MP_STATE_HALTED)

    def _shutdown(self, run) -> None:
        what = "guest triple fault (shutdown)"
        if self.cpu_reset_log is not None:
            self.cpu_reset_log(format_triple_fault(self.vcpu))
        if self.request_reset is not None:
            self.request_reset(what=what)   # the vCPUs park; the machine resets (or stops)
        elif self.no_reboot:
            self._end(0, f"{what}; exiting as -no-reboot asks")
        else:
            self._end(1, f"{what}: there is no machine to reset; exiting")

    def _system_event(self, run) -> None:
        kind = run.system_event.type
        if kind == KVM_SYSTEM_EVENT_RESET and self.request_reset is not None:
            self.request_reset(what="guest requested a reset (Hyper-V reset MSR)")
            return
        if kind == KVM_SYSTEM_EVENT_CRASH:
            params = self.vcpu.get_msrs(HV_CRASH_PARAMS)
            error_report("guest panicked; Hyper-V crash parameters: " +
                         " ".join(f"{params.get(index, 0):#x}" for index in HV_CRASH_PARAMS))
        elif kind not in (KVM_SYSTEM_EVENT_SHUTDOWN, KVM_SYSTEM_EVENT_RESET):
            self._unknown(run)
            return
        if self.request_shutdown is not None:
            self.request_shutdown()
        else:
            self._end(0, "guest asked the machine to shut down; there is no machine: exiting")

    def _fail_entry(self, run) -> None:
        reason = run.fail_entry.hardware_entry_failure_reason
        what = ENTRY_FAILURE_REASONS.get(reason & 0xFFFF, "unknown reason")
        self._end(1, f"KVM: entry failed, hardware error {reason:#x} ({what}){self._registers()}")

    def _internal_error(self, run) -> None:
        suberror = run.internal.suberror
        what = INTERNAL_SUBERRORS.get(suberror, "unknown")
        self._end(1, f"KVM internal error. Suberror: {suberror} ({what}){self._registers()}")

    def _intr(self, run) -> None:
        pass  # kicked: the loop condition looks at the stop request

    def _unknown(self, run) -> None:
        self._end(1, f"unhandled KVM exit reason {run.exit_reason} "
                     f"({exit_reason_name(run.exit_reason)}){self._registers()}")

    def _registers(self) -> str:
        """``; RIP=... RSP=... RFLAGS=...`` for error messages, or nothing if unavailable."""
        try:
            regs = self.vcpu.get_regs()
        except Exception:
            return ""
        return f"; RIP={regs.rip:#x} RSP={regs.rsp:#x} RFLAGS={regs.rflags:#x}"
