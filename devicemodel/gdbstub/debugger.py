"""What the gdbstub does to the VM, apart from the protocol: guest memory through a
vCPU's page tables, breakpoints and watchpoints through KVM_SET_GUEST_DEBUG, stopping
the whole VM when a vCPU reports KVM_EXIT_DEBUG, and resuming it (QEMU's gdbstub with
kvm_arch_insert_sw/hw_breakpoint and kvm_arch_handle_debug).

* Software breakpoints (Z0) are INT3 bytes written into guest memory; reads of memory
  show the original bytes.  A #BP that is not at one of them is the guest's own and
  goes back to it.
* Hardware breakpoints (Z1) and watchpoints (Z2 write, Z3 read, Z4 access) share DR0-DR3;
  x86 has no read-only watchpoints, so Z3 watches accesses.  A watched range is split
  into aligned pieces of 1, 2, 4 or 8 bytes, one debug register each.
* Single-step steps only the vCPUs asked to (with interrupts held back, QEMU's
  SSTEP_NOIRQ); vCPUs with no action stay parked while the others run.
* A vCPU that stops the VM pauses it in the "debug" run state; the first stop since the
  VM was resumed is the one reported, the others happen again (a breakpoint) or are
  lost (a watchpoint hit at the same moment), as with QEMU."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Optional

from devicemodel.runstate import DEBUG, PAUSED
from kvm.guest_debug import (KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP,
                             KVM_GUESTDBG_USE_HW_BP, KVM_GUESTDBG_USE_SW_BP)
from kvm.translate import TRANSLATE_PROBE, PageFault, UnbackedPagingStructure, translate

Z_SW, Z_HW, Z_WRITE, Z_READ, Z_ACCESS = range(5)
WATCH_REASONS = {Z_WRITE: "watch", Z_READ: "rwatch", Z_ACCESS: "awatch"}
DR7_RW = {Z_HW: 0, Z_WRITE: 1, Z_READ: 3, Z_ACCESS: 3}
DR7_LEN = {1: 0, 2: 1, 4: 3, 8: 2}
INT3 = 0xCC
SIGINT, SIGTRAP = 2, 5
EXC_DB, EXC_BP = 1, 3
DR6_BS = 1 << 14
DR6_CAUSES = 0xE00F          # B0-B3, BD, BS, BT: DR6's active-high bits
PAGE = 4096
PARK_TIMEOUT = 5.0


@dataclass
class Stop:
    """Why the VM stopped, for the stop reply."""
    thread: int                   # vCPU index
    signal: int = SIGTRAP
    reason: str = ""              # "swbreak", "hwbreak", "watch", "rwatch", "awatch" or ""
    address: int = 0              # of the watchpoint


@dataclass
class HwSlot:
    """One debug register: a piece of a Z1-Z4 request."""
    ztype: int
    address: int                  # the request's address (what gdb knows it by)
    length: int                   # the request's length
    piece: int                    # the address this register watches
    piece_len: int


def aligned_pieces(address: int, length: int) -> list[tuple[int, int]]:
    """[address, address + length) as naturally aligned pieces of 1, 2, 4 or 8 bytes."""
    pieces = []
    while length > 0:
        size = 8
        while size > 1 and (address % size or size > length):
            size //= 2
        pieces.append((address, size))
        address += size
        length -= size
    return pieces


class Debugger:
    def __init__(self, machine):
        self.machine = machine
        self.lock = threading.Lock()
        self.sw_breakpoints: dict[int, tuple[int, int]] = {}   # address -> (gpa, original byte)
        self.slots: list[Optional[HwSlot]] = [None] * 4
        self.stepping: set[int] = set()
        self.stop: Optional[Stop] = None
        self.notify: Callable[[], None] = lambda: None    # wakes the session on a stop

    @property
    def vcpus(self):
        return self.machine.vcpus

    # ---- guest memory ----------------------------------------------------------------------

    def _gpa(self, vcpu, address: int) -> Optional[int]:
        try:
            return translate(vcpu, address, TRANSLATE_PROBE)   # no accessed/dirty flags set
        except (PageFault, UnbackedPagingStructure):
            return None

    def _pages(self, vcpu, address: int, length: int):
        """(gpa, linear, size) per page of the range, stopping at the first unmapped one."""
        while length > 0:
            size = min(length, PAGE - address % PAGE)
            gpa = self._gpa(vcpu, address)
            if gpa is None:
                return
            yield gpa, address, size
            address += size
            length -= size

    def read_memory(self, vcpu, address: int, length: int) -> bytes:
        """As much of the range as is readable RAM, from its start; the original bytes
        where software breakpoints are."""
        out = bytearray()
        for gpa, _, size in self._pages(vcpu, address, length):
            data = self.machine.vm.read_guest(gpa, size)
            if data is None:
                break
            out += data
        for bp, (_, original) in self.sw_breakpoints.items():
            if address <= bp < address + len(out):
                out[bp - address] = original
        return bytes(out)

    def write_memory(self, vcpu, address: int, data: bytes) -> bool:
        """Write guest memory, whatever the guest's page protections; a software
        breakpoint in the range stays, with the new byte as its original."""
        pieces = list(self._pages(vcpu, address, len(data)))
        if sum(size for _, _, size in pieces) < len(data):
            return False
        data = bytearray(data)
        for bp, (gpa, _) in self.sw_breakpoints.items():
            if address <= bp < address + len(data):
                self.sw_breakpoints[bp] = (gpa, data[bp - address])
                data[bp - address] = INT3
        offset = 0
        for gpa, _, size in pieces:
            if not self.machine.vm.write_guest(gpa, bytes(data[offset:offset + size])):
                return False
            offset += size
        return True

    # ---- breakpoints and watchpoints ---------------------------------------------------------

    def insert(self, ztype: int, address: int, length: int, vcpu) -> bool:
        if ztype == Z_SW:
            if address in self.sw_breakpoints:
                return True
            gpa = self._gpa(vcpu, address)
            original = self.machine.vm.read_guest(gpa, 1) if gpa is not None else None
            if original is None or not self.machine.vm.write_guest(gpa, bytes([INT3])):
                return False
            self.sw_breakpoints[address] = (gpa, original[0])
            return True
        pieces = [(address, 1)] if ztype == Z_HW else aligned_pieces(address, length)
        free = [n for n, slot in enumerate(self.slots) if slot is None]
        if ztype not in DR7_RW or not pieces or len(pieces) > len(free):
            return False
        for n, (piece, size) in zip(free, pieces):
            self.slots[n] = HwSlot(ztype, address, length, piece, size)
        return True

    def remove(self, ztype: int, address: int, length: int) -> bool:
        if ztype == Z_SW:
            entry = self.sw_breakpoints.pop(address, None)
            if entry is None:
                return False
            gpa, original = entry
            self.machine.vm.write_guest(gpa, bytes([original]))
            return True
        found = False
        for n, slot in enumerate(self.slots):
            if slot is not None and (slot.ztype, slot.address) == (ztype, address) and \
                    (ztype == Z_HW or slot.length == length):
                self.slots[n] = None
                found = True
        return found

    def remove_all(self):
        for address in list(self.sw_breakpoints):
            self.remove(Z_SW, address, 1)
        self.slots = [None] * 4

    def _debugreg(self) -> list[int]:
        regs = [0] * 8
        dr7 = 0
        for n, slot in enumerate(self.slots):
            if slot is None:
                continue
            regs[n] = slot.piece
            length = 0 if slot.ztype == Z_HW else DR7_LEN[slot.piece_len]
            dr7 |= (2 << (2 * n)) | (DR7_RW[slot.ztype] << (16 + 4 * n)) | (length << (18 + 4 * n))
        regs[7] = dr7
        return regs

    # ---- running and stopping ----------------------------------------------------------------

    def resume(self, actions: dict[int, str]):
        """Resume the stopped VM: actions[index] is "c" or "s"; vCPUs without one stay put."""
        debugreg = self._debugreg()
        base = 0
        if self.sw_breakpoints:
            base |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP
        if any(self.slots):
            base |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP
        with self.lock:
            self.stepping = {index for index, action in actions.items() if action == "s"}
            self.stop = None
        for index, vcpu in enumerate(self.vcpus):
            control = base
            if index in self.stepping:
                control |= KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ
            vcpu.set_guest_debug(control, debugreg)
        held = {index for index in range(len(self.vcpus)) if index not in actions}
        self.machine.runstate.keep_parked(held)
        self.machine.resume()

    def interrupt(self, thread: int):
        """gdb's Ctrl-C: stop the VM (QEMU pauses it in the "paused" run state) unless
        a vCPU is stopping it already."""
        with self.lock:
            if self.stop is None:
                self.stop = Stop(thread, SIGINT)
        self.machine.pause(PAUSED, timeout=0)
        self.notify()

    def take_stop(self) -> Optional[Stop]:
        """The stop to report, once every vCPU is parked; None if there is none yet."""
        with self.lock:
            stop = self.stop
        if stop is None or not self.machine.runstate.wait_parked(PARK_TIMEOUT):
            return None
        return stop

    def end(self):
        """gdb detached or went away: no breakpoints left behind, and the VM runs on.
        (gdb may go while the VM runs: the vCPUs are parked before they are changed.)"""
        self.machine.pause(PAUSED, timeout=0)
        self.machine.runstate.wait_parked(PARK_TIMEOUT)
        self.remove_all()
        with self.lock:
            self.stepping.clear()
            self.stop = None
        for vcpu in self.vcpus:
            vcpu.set_guest_debug(0)
        self.machine.runstate.keep_parked(set())
        self.machine.resume()

    # ---- KVM_EXIT_DEBUG (called on a vCPU thread) ---------------------------------------------

    def debug_exit(self, index: int, run):
        arch = run.debug.arch
        with self.lock:
            stop = self._classify(index, arch)
            if stop is not None and self.stop is None:
                self.stop = stop
        if stop is None:
            self._give_back(self.vcpus[index], arch)
            return
        self.machine.pause(DEBUG, timeout=0)
        self.notify()

    def _classify(self, index: int, arch) -> Optional[Stop]:
        if arch.exception == EXC_BP:
            return Stop(index, reason="swbreak") if arch.pc in self.sw_breakpoints else None
        hits = [self.slots[n] for n in range(4) if arch.dr6 & (1 << n) and self.slots[n] is not None]
        for slot in hits:
            if slot.ztype in WATCH_REASONS:
                return Stop(index, reason=WATCH_REASONS[slot.ztype], address=slot.address)
        if hits:
            return Stop(index, reason="hwbreak")
        if arch.dr6 & DR6_BS and index in self.stepping:
            return Stop(index)
        return None

    @staticmethod
    def _give_back(vcpu, arch):
        """The guest's own #BP or #DB (kvm_arch_handle_debug's reinjection)."""
        if arch.exception == EXC_DB:
            regs = vcpu.get_debugregs()
            regs.dr6 = (regs.dr6 & ~0xF) | (arch.dr6 & DR6_CAUSES)
            vcpu.set_debugregs(regs)
        vcpu.inject_exception(arch.exception)
