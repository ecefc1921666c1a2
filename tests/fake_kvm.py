"""A stand-in for the ``kvm`` package: the KVM API of DESIGN.md over a scripted guest.

``FakeKvm(script)`` behaves like ``kvm.Kvm()``; its vCPU's ``run()`` returns the exits
of ``script`` one by one (``Out``, ``In``, ``MmioWrite``, ``MmioRead``, ``Hlt``, ...).
After the script, or at a ``Spin`` step, the "guest" runs until ``kick()`` and the exit
is INTR, as for a guest in an endless loop. Values the device model returns for IN and
MMIO reads are recorded in ``vcpu.reads`` when the guest resumes (the next ``run()``).
"""

from __future__ import annotations

import threading
import types
from dataclasses import dataclass

from kvm.constants import (KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR,
                           KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT,
                           KVM_EXIT_MMIO, KVM_EXIT_SHUTDOWN, KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR,
                           KVM_MP_STATE_RUNNABLE)
from kvm.cpuid import supported_cpuid
from kvm.structs import MsrExit, Regs, Sregs, VcpuEvents


# --- script steps ---------------------------------------------------------------

@dataclass
class Out:
    """``out``/``outs``: one value per iteration (count = len(values))."""
    port: int
    size: int
    values: tuple


@dataclass
class In:
    port: int
    size: int
    count: int = 1


@dataclass
class MmioWrite:
    addr: int
    size: int
    value: int


@dataclass
class MmioRead:
    addr: int
    size: int


@dataclass
class Hlt:
    rflags: int = 0x2


@dataclass
class Rdmsr:
    index: int


@dataclass
class Wrmsr:
    index: int
    value: int


@dataclass
class Shutdown:
    pass


@dataclass
class FailEntry:
    reason: int


@dataclass
class InternalError:
    suberror: int


@dataclass
class Intr:
    pass


@dataclass
class Spin:
    """The guest runs on until kicked (then INTR)."""


@dataclass
class Raw:
    """An exit with this reason and no data."""
    reason: int


# --- the API --------------------------------------------------------------------

class _Io:
    def __init__(self):
        self.direction = self.size = self.port = self.count = 0
        self.data = memoryview(bytearray(0))


class _Mmio:
    def __init__(self):
        self.phys_addr = self.len = 0
        self.is_write = 0
        self.data = memoryview(bytearray(8))


class KvmRun:
    def __init__(self):
        self.exit_reason = 0
        self.io = _Io()
        self.mmio = _Mmio()
        self.fail_entry = types.SimpleNamespace(hardware_entry_failure_reason=0)
        self.internal = types.SimpleNamespace(suberror=0)
        self.msr = MsrExit()
        self.cr8 = 0
        self.request_interrupt_window = 0
        self.ready_for_interrupt_injection = 1


def _vmx_name(reason: int) -> str:
    """The VMX exit reason name exit_stats() would count a KVM exit under."""
    return {KVM_EXIT_IO: "IO_INSTRUCTION", KVM_EXIT_MMIO: "EPT_VIOLATION", KVM_EXIT_HLT: "HLT",
            KVM_EXIT_SHUTDOWN: "TRIPLE_FAULT", KVM_EXIT_INTR: "EXTERNAL_INTERRUPT"}.get(reason, "OTHER")


class FakeVcpu:
    def __init__(self, script):
        self.script = list(script)
        self.injected: list[int] = []   # vectors given to interrupt()
        self.msr_results: list[tuple] = []   # (error, data) userspace left for each MSR exit
        self.cpuid = []
        self.mp_state = KVM_MP_STATE_RUNNABLE
        self.msrs = {}
        self.kvm_run = KvmRun()
        self.regs = Regs()
        self.sregs = Sregs()
        self.reads: list[int] = []      # IN / MMIO-read results, in order
        self.runs = 0
        self._kicked = threading.Event()
        self._pending_read = None
        self._stats: dict[str, dict] = {}
        self.apic_page = memoryview(bytearray(4096))   # the virtual-APIC page, with APIC virtualization
        self.apicv = None                              # (APIC-access address, x2APIC) once enabled
        self.eoi_exit_bitmap = 0

    def get_regs(self):
        return Regs(**vars(self.regs))

    def set_regs(self, regs):
        self.regs = Regs(**vars(regs))

    def get_sregs(self):
        return Sregs(**vars(self.sregs))

    def set_sregs(self, sregs):
        self.sregs = sregs

    def kick(self):
        self._kicked.set()

    def set_cpuid2(self, entries):
        self.cpuid = list(entries)

    def set_mp_state(self, state):
        self.mp_state = state

    def get_msrs(self, indices):
        return {i: self.msrs.get(i, 0) for i in indices}

    def set_msrs(self, entries):
        self.msrs.update(entries)
        return len(entries)

    def get_vcpu_events(self):
        return VcpuEvents()

    def set_vcpu_events(self, events):
        pass

    def exit_stats(self):
        return {name: dict(entry) for name, entry in self._stats.items()}

    def interrupt(self, vector):
        self.injected.append(vector)

    def enable_apic_virtualization(self, apic_access_gpa=0xFEE00000, x2apic=False):
        self.apicv = (apic_access_gpa, x2apic)

    def set_eoi_exit_bitmap(self, bits):
        self.eoi_exit_bitmap = bits

    def post_apic_interrupt(self, vector):
        self.apic_page[0x200 + (vector >> 5) * 16 + (vector & 31) // 8] |= 1 << (vector & 7)

    def set_cpuid2(self, entries):
        self.cpuid = list(entries)

    def instructions_retired(self):
        return self.runs

    def run(self):
        self.runs += 1
        self._complete_read()
        run = self.kvm_run
        step = self.script.pop(0) if self.script else Spin()
        if isinstance(step, Spin):
            self._kicked.wait()
            step = Intr()
        self._kicked.clear()
        if isinstance(step, Out):
            self._io(KVM_EXIT_IO_OUT, step.port, step.size, len(step.values))
            run.io.data[:] = b"".join(v.to_bytes(step.size, "little") for v in step.values)
        elif isinstance(step, In):
            self._io(KVM_EXIT_IO_IN, step.port, step.size, step.count)
            self._pending_read = ("io", step.size, step.count)
        elif isinstance(step, (MmioWrite, MmioRead)):
            run.exit_reason = KVM_EXIT_MMIO
            run.mmio.phys_addr, run.mmio.len = step.addr, step.size
            run.mmio.data[:] = bytes(8)
            run.mmio.is_write = int(isinstance(step, MmioWrite))
            if isinstance(step, MmioWrite):
                run.mmio.data[:step.size] = step.value.to_bytes(step.size, "little")
            else:
                self._pending_read = ("mmio", step.size, 1)
        elif isinstance(step, Hlt):
            run.exit_reason = KVM_EXIT_HLT
            self.regs.rflags = step.rflags
        elif isinstance(step, (Rdmsr, Wrmsr)):
            run.exit_reason = KVM_EXIT_X86_RDMSR if isinstance(step, Rdmsr) else KVM_EXIT_X86_WRMSR
            run.msr.index, run.msr.error = step.index, 0
            run.msr.data = step.value if isinstance(step, Wrmsr) else 0
        elif isinstance(step, Shutdown):
            run.exit_reason = KVM_EXIT_SHUTDOWN
        elif isinstance(step, FailEntry):
            run.exit_reason = KVM_EXIT_FAIL_ENTRY
            run.fail_entry.hardware_entry_failure_reason = step.reason
        elif isinstance(step, InternalError):
            run.exit_reason = KVM_EXIT_INTERNAL_ERROR
            run.internal.suberror = step.suberror
        elif isinstance(step, Intr):
            run.exit_reason = KVM_EXIT_INTR
        elif isinstance(step, Raw):
            run.exit_reason = step.reason
        else:
            raise TypeError(f"unknown script step {step!r}")
        entry = self._stats.setdefault(_vmx_name(run.exit_reason), {"count": 0, "time_ns": 0})
        entry["count"] += 1
        entry["time_ns"] += 1000
        return run

    def _io(self, direction, port, size, count):
        io = self.kvm_run.io
        self.kvm_run.exit_reason = KVM_EXIT_IO
        io.direction, io.port, io.size, io.count = direction, port, size, count
        io.data = memoryview(bytearray(size * count))

    def _complete_read(self):
        if self.kvm_run.exit_reason in (KVM_EXIT_X86_RDMSR, KVM_EXIT_X86_WRMSR):
            self.msr_results.append((self.kvm_run.msr.error, self.kvm_run.msr.data))
            self.kvm_run.exit_reason = 0
        if self._pending_read is None:
            return
        kind, size, count = self._pending_read
        self._pending_read = None
        data = self.kvm_run.io.data if kind == "io" else self.kvm_run.mmio.data
        for i in range(count):
            self.reads.append(int.from_bytes(data[i * size:(i + 1) * size], "little"))


class FakeVm:
    def __init__(self, script):
        self.script = script
        self.memory_regions = []
        self.vcpus = []
        self.capabilities = {}
        self.msr_filter = None
        self.irqchip = None

    def check_extension(self, cap):
        return 0

    def enable_cap(self, cap, *args):
        self.capabilities[cap] = args

    def create_irqchip(self, chip):
        self.irqchip = chip

    def irq_line(self, irq, level):
        self.irqchip.set_irq(irq, level)

    def signal_msi(self, address, data):
        return self.irqchip.deliver_msi(address, data)

    def set_msr_filter(self, msr_filter):
        self.msr_filter = msr_filter

    def set_user_memory_region(self, slot, guest_phys_addr, memory_size, userspace_addr, flags=0):
        memoryview(userspace_addr)  # must be a buffer, as for the real one
        self.memory_regions.append(dict(slot=slot, guest_phys_addr=guest_phys_addr,
                                        memory_size=memory_size, userspace_addr=userspace_addr,
                                        flags=flags))

    def create_vcpu(self, index):
        vcpu = FakeVcpu(self.script)
        self.vcpus.append(vcpu)
        return vcpu


class FakeKvm:
    def __init__(self, script=()):
        self.script = list(script)
        self.vms = []

    def get_supported_cpuid(self):
        return supported_cpuid()

    def create_vm(self):
        vm = FakeVm(self.script)
        self.vms.append(vm)
        return vm

    def get_supported_cpuid(self):
        return supported_cpuid()
