"""The VM's interrupt controller: VM.create_irqchip, KVM_IRQ_LINE (irq_line) and
KVM_SIGNAL_MSI (signal_msi), alone and with the device model's PC irqchip."""

import threading

import pytest

from devicemodel.address_space import AddressSpace
from devicemodel.clock import VirtualClock
from devicemodel.devices.apic import IRR
from devicemodel.irqchip import PcIrqchip
from kvm import Kvm, KvmError
from kvm.capabilities import KVM_CAP_IRQCHIP, KVM_CAP_SIGNAL_MSI
from kvm.constants import KVM_MSI_VALID_DEVID
from kvm.cpuid import supported_cpuid


class RecordingChip:
    def __init__(self, accepted=1):
        self.lines, self.msis, self.accepted = [], [], accepted

    def set_irq(self, gsi, level):
        self.lines.append((gsi, level))

    def deliver_msi(self, address, data):
        self.msis.append((address, data))
        return self.accepted


def test_without_an_interrupt_controller_the_calls_fail_as_in_kvm():
    vm = Kvm().create_vm()
    with pytest.raises(KvmError, match="ENXIO"):
        vm.irq_line(4, 1)
    with pytest.raises(KvmError, match="EINVAL"):
        vm.signal_msi(0xFEE00000, 0x30)


def test_irq_line_sets_levels_on_the_chip():
    vm = Kvm().create_vm()
    chip = RecordingChip()
    vm.create_irqchip(chip)
    vm.irq_line(4, 1)
    vm.irq_line(4, 0)
    vm.irq_line(20, 5)                       # any nonzero level is "high"
    assert chip.lines == [(4, 1), (4, 0), (20, 1)]


def test_signal_msi_passes_the_message_and_the_chip_s_answer():
    vm = Kvm().create_vm()
    chip = RecordingChip(accepted=0)
    vm.create_irqchip(chip)
    assert vm.signal_msi(0x1_FEE01000, 0x4031) == 0        # no APIC took it
    assert vm.signal_msi(0xFEE00000, 0x31, flags=KVM_MSI_VALID_DEVID, devid=0x18) == 0
    assert chip.msis == [(0xFEE01000, 0x4031), (0xFEE00000, 0x31)]   # address_hi ignored
    with pytest.raises(KvmError, match="EINVAL"):
        vm.signal_msi(0xFEE00000, 0x31, flags=2)
    assert len(chip.msis) == 2


def test_one_interrupt_controller_created_before_the_vcpus():
    vm = Kvm().create_vm()
    vm.create_irqchip(RecordingChip())
    with pytest.raises(KvmError, match="EEXIST"):
        vm.create_irqchip(RecordingChip())
    late = Kvm().create_vm()
    late.create_vcpu(0)
    with pytest.raises(KvmError, match="EINVAL"):
        late.create_irqchip(RecordingChip())


def test_capabilities_report_the_irqchip_and_msi_injection():
    kvm = Kvm()
    assert kvm.check_extension(KVM_CAP_IRQCHIP) == 1
    assert kvm.create_vm().check_extension(KVM_CAP_SIGNAL_MSI) == 1


@pytest.fixture
def pc():
    """A VM with the device model's PC interrupt controllers, as Machine.power_on builds it."""
    vm = Kvm().create_vm()
    chip = PcIrqchip(bql=threading.RLock(), clock=VirtualClock(), mmio=AddressSpace("memory", 1 << 64), cpus=2)
    vm.create_irqchip(chip)
    vcpus = [vm.create_vcpu(i) for i in range(2)]
    chip.attach(vm, vcpus, supported_cpuid())
    return vm, chip


def test_device_interrupt_lines_go_through_kvm_irq_line(pc):
    vm, chip = pc
    seen = []
    chip.line.irq_line = lambda irq, level: (seen.append((irq, level)), vm.irq_line(irq, level))
    chip.line.irq_setter(4)(1)                # COM1's line, as the UART drives it
    assert seen == [(4, 1)]
    assert chip.line.pic.master.irr & (1 << 4)      # the 8259 saw it
    vm.irq_line(4, 0)
    vm.irq_line(12, 1)
    assert chip.line.pic.slave.irr & (1 << 4)       # IRQ 12: the slave's input 4


def test_device_messages_go_through_kvm_signal_msi(pc):
    vm, chip = pc
    seen = []
    chip.signal_msi = lambda address, data: (seen.append((address, data)), vm.signal_msi(address, data))
    chip.send_msi(0xFEE00000, 0x0047)           # as a PCI function's MSI capability writes it
    assert seen == [(0xFEE00000, 0x0047)]
    assert chip.lapics[0].read32(IRR + 0x20) & (1 << 7)


def test_signal_msi_reaches_the_local_apic_it_names(pc):
    vm, chip = pc
    assert vm.signal_msi(0xFEE00000, 0x0045) == 1                  # physical, APIC 0, vector 0x45
    assert chip.lapics[0].read32(IRR + 0x20) & (1 << 5)
    assert not chip.lapics[1].read32(IRR + 0x20) & (1 << 5)
    assert vm.signal_msi(0xFEE07000, 0x0046) == 0                  # no APIC 7: nobody took it
