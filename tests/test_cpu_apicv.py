"""A local APIC on APIC virtualization (devicemodel/cpu_apicv.py) over a recording vCPU:
fixed interrupts posted into the virtual-APIC page or written there while the vCPU is
out of the guest, level-triggered ones held until the EOI-exit bitmap has their vector,
the bitmap following the TMR, the 8259 still injected, INIT on the vCPU's thread."""

import threading

from devicemodel.apic_bus import ApicBus
from devicemodel.clock import VirtualClock
from devicemodel.cpu_apicv import CpuApicv
from devicemodel.cpu_interrupts import CpuInterrupts
from devicemodel.current_cpu import set_current_cpu
from devicemodel.devices.apic import LocalApic
from devicemodel.devices.i8259 import PicPair
from kvm.structs import KvmRun, VcpuEvents

IRR, ISR, TMR, TPR = 0x200, 0x100, 0x180, 0x80


class Vcpu:
    """The KVM vCPU API that APIC virtualization uses, recorded."""

    def __init__(self):
        self.calls = []
        self.apic_page = memoryview(bytearray(4096))
        self.events = VcpuEvents()

    def enable_apic_virtualization(self, apic_access_gpa, x2apic):
        self.apicv = (apic_access_gpa, x2apic)

    def set_eoi_exit_bitmap(self, bits):
        self.calls.append(("eoi_exit_bitmap", bits))

    def post_apic_interrupt(self, vector):
        self.calls.append(("post", vector))
        self.apic_page[IRR + (vector >> 5) * 16 + (vector & 31) // 8] |= 1 << (vector & 7)

    def kick(self):
        self.calls.append("kick")

    def interrupt(self, vector):
        self.calls.append(("interrupt", vector))

    def nmi(self):
        self.calls.append("nmi")

    def reset(self):
        self.calls.append("reset")

    def get_vcpu_events(self):
        return self.events

    def set_vcpu_events(self, events):
        self.events = events

    def set_mp_state(self, state):
        self.calls.append(("mp_state", state))


class Machine:
    def __init__(self, cpus=2):
        self.bql = threading.RLock()
        self.bus = ApicBus()
        self.pic = PicPair(int_output=lambda level: [a.set_lint(0, level) for a in self.apics])
        self.apics = [LocalApic(i, self.bus, VirtualClock(), bsp=i == 0) for i in range(cpus)]
        self.cpus = [CpuInterrupts(i, apic, self.pic, self.bql) for i, apic in enumerate(self.apics)]
        self.vcpus = [Vcpu() for _ in range(cpus)]
        for i, (apic, cpu, vcpu) in enumerate(zip(self.apics, self.cpus, self.vcpus)):
            self.bus.add_apic(apic)
            cpu.vcpu = vcpu
            apic.write_register(0xF0, 0x1FF)
            CpuApicv(i, apic, vcpu)
        self.cpus[1].wait_for_sipi = False
        set_current_cpu(None)         # the test's thread is no vCPU's
        for vcpu in self.vcpus:
            vcpu.calls.clear()

    def before_run(self, index):
        """The vCPU's loop before KVM_RUN, on its own thread."""
        run = KvmRun(ready_for_interrupt_injection=1)
        self.vcpus[index].calls.clear()
        set_current_cpu(index)
        try:
            self.cpus[index].before_run(run, self.vcpus[index])
        finally:
            set_current_cpu(None)
        return self.vcpus[index].calls


def test_the_register_page_is_the_virtual_apic_page():
    m = Machine()
    assert m.vcpus[1].apicv == (0xFEE00000, False)
    assert m.apics[1].page.obj is m.vcpus[1].apic_page.obj
    assert m.apics[1].apic_id() == 1 and m.apics[1].read32(0xF0) == 0x1FF


def test_an_msi_is_posted_to_the_running_vcpu_and_not_injected():
    m = Machine()
    m.bus.deliver_msi(0xFEE01000, 0x4041)             # vector 0x41 to APIC 1, edge
    assert m.vcpus[1].calls[-1] == ("post", 0x41) and m.apics[1].vectors(IRR) == [0x41]
    assert m.before_run(1) == []                       # the processor takes it: no KVM_INTERRUPT
    assert m.apics[1].vectors(IRR) == [0x41]


def test_a_vcpu_out_of_the_guest_has_its_page_written():
    m = Machine()
    set_current_cpu(1)
    m.apics[1].accept_interrupt(0x42, False)             # on its own thread
    set_current_cpu(None)
    m.cpus[0].halted = True
    m.apics[0].accept_interrupt(0x43, False)             # halted in the device model
    assert [a.vectors(IRR) for a in m.apics] == [[0x43], [0x42]]
    assert m.vcpus[0].calls == m.vcpus[1].calls == []     # neither posted nor kicked
    assert m.cpus[0].wakes(1) and not m.cpus[0].wakes(0)


def test_a_level_triggered_vector_waits_for_the_eoi_exit_bitmap():
    m = Machine()
    m.bus.deliver(dest=1, logical=False, delivery_mode=0, vector=0x51, level_triggered=True)
    assert m.vcpus[1].calls[-1] == "kick" and m.apics[1].vectors(IRR) == []
    assert m.apics[1].vectors(TMR) == [0x51]
    m.cpus[1].halted = True                                 # a halted vCPU wakes for it
    assert m.cpus[1].wakes(1)
    m.cpus[1].halted = False
    assert m.before_run(1) == [("eoi_exit_bitmap", 1 << 0x51)]
    assert m.apics[1].vectors(IRR) == [0x51]
    # in the bitmap now: posted like an edge-triggered one
    m.bus.deliver(dest=1, logical=False, delivery_mode=0, vector=0x51, level_triggered=True)
    assert m.vcpus[1].calls[-1] == ("post", 0x51)
    # an edge-triggered interrupt of the vector clears its TMR bit: out of the bitmap
    m.bus.deliver(dest=1, logical=False, delivery_mode=0, vector=0x51, level_triggered=False)
    assert m.before_run(1) == [("eoi_exit_bitmap", 0)]


def test_the_eoi_exit_of_a_level_triggered_vector_reaches_the_io_apic():
    m = Machine()
    eois = []
    m.bus.add_ioapic(type("IoApic", (), {"eoi": lambda self, vector: eois.append(vector)})())
    m.bus.deliver(dest=0, logical=False, delivery_mode=0, vector=0x61, level_triggered=True)
    m.before_run(0)
    m.apics[0].page[IRR + 0x30] = 0                        # the processor delivered it ...
    m.apics[0].page[ISR + 0x30] = 0                        # ... and the guest's EOI ended it
    m.apics[0].eoi_done(0x61)                              # KVM_EXIT_IOAPIC_EOI
    assert eois == [0x61]


def test_a_level_lint0_going_low_takes_its_request_back_on_the_vcpus_thread():
    m = Machine()
    m.apics[0].write_register(0x350, 0x8055)               # LINT0: fixed, level, vector 0x55
    m.apics[0].set_lint(0, 1)
    assert m.before_run(0) == [("eoi_exit_bitmap", 1 << 0x55)] and m.apics[0].vectors(IRR) == [0x55]
    m.apics[0].set_lint(0, 0)
    assert m.vcpus[0].calls[-1] == "kick" and m.apics[0].vectors(IRR) == [0x55]
    m.before_run(0)
    assert m.apics[0].vectors(IRR) == []
    m.apics[0].set_lint(0, 1)                              # requested again before the retraction
    m.apics[0].set_lint(0, 0)
    m.cpus[0].halted = True
    m.apics[0].set_lint(0, 1)
    m.before_run(0)
    assert m.apics[0].vectors(IRR) == [0x55]


def test_the_8259_is_still_injected():
    m = Machine()
    m.apics[0].firmware_setup()
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00)):
        m.pic.master.write(port & 1, 1, value)
    m.pic.set_irq(1, 1)
    assert m.before_run(0) == [("interrupt", 0x21)]


def test_init_resets_the_page_on_the_vcpus_thread():
    m = Machine()
    m.apics[1].write_register(TPR, 0x30)
    m.bus.send_ipi(m.apics[0], vector=0, delivery_mode=5, dest=1)    # INIT
    assert m.apics[1].read32(TPR) == 0x30                  # the processor may still be using it
    calls = m.before_run(1)
    assert "reset" in calls and m.apics[1].read32(TPR) == 0 and m.apics[1].apic_id() == 1


def test_the_virtualization_follows_the_apic_into_x2apic_mode_and_back_at_a_reset():
    from devicemodel.address_space import AddressSpace
    from devicemodel.irqchip import PcIrqchip
    from kvm import Kvm, vmx

    kvm = Kvm()
    vm = kvm.create_vm()
    vcpu = vm.create_vcpu(0)
    chip = PcIrqchip(bql=threading.RLock(), clock=VirtualClock(), mmio=AddressSpace("memory"), cpus=1)
    chip.attach(vm, [vcpu], kvm.get_supported_cpuid())
    lapic = chip.lapics[0]
    assert lapic.page.obj is vcpu.apic_page.obj and vcpu.apicv.enabled and not vcpu.apicv.x2apic
    assert chip.msrs(0).write(0x1B, lapic.apic_base | 0x400)     # the guest's WRMSR
    assert vcpu.apicv.x2apic and vcpu.vmread(vmx.SECONDARY_VM_EXEC_CONTROL) & vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE
    chip.system_reset()
    proc2 = vcpu.vmread(vmx.SECONDARY_VM_EXEC_CONTROL)
    assert not vcpu.apicv.x2apic and proc2 & vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES
    assert vcpu.get_sregs().apic_base == lapic.apic_base == 0xFEE00900
