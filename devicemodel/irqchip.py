"""The PC's interrupt controllers, in userspace as QEMU's with kernel-irqchip=off: the 8259
pair and the I/O APIC on the interrupt lines (devicemodel.interrupt_line), a local APIC
per vCPU on the APIC bus, and, once the VM exists (``attach``), each vCPU's delivery of
what they raise through the KVM API (devicemodel.cpu_interrupts), the local APICs on the
processor's APIC virtualization unless ``apicv`` is off (devicemodel.cpu_apicv). It is the
VM's interrupt controller (``vm.create_irqchip``): KVM_IRQ_LINE reaches ``set_irq`` and
KVM_SIGNAL_MSI ``deliver_msi``; devices raise their lines through ``vm.irq_line`` and send
their messages through ``vm.signal_msi`` (``send_msi``). The boot processor's
APIC starts as SeaBIOS leaves it (software-enabled, LINT0 in ExtINT mode: the 8259
reaches it), the others as after power-up; application processors wait for INIT and SIPI.
"""

from __future__ import annotations

from devicemodel.apic_bus import ApicBus
from devicemodel.cpu_memory import CpuMemory
from devicemodel.devices.apic import BASE_BSP, BASE_ENABLE, DEFAULT_BASE, MSR_APIC_BASE, LocalApic
from devicemodel.devices.ioapic import IoApic
from devicemodel.interrupt_line import InterruptLine


class PcIrqchip:
    def __init__(self, *, bql, clock, mmio, cpus: int, x2apic: bool = True, tsc_deadline: bool = True,
                 apicv: bool = True):
        self.bql = bql
        self.x2apic, self.tsc_deadline, self.apicv = x2apic, tsc_deadline, apicv
        self.bus = ApicBus()
        self.ioapic = IoApic(self.bus)
        self.bus.add_ioapic(self.ioapic)
        mmio.add_region(self.ioapic.region)
        self.mmio = mmio
        self.lapics = [LocalApic(index, self.bus, clock, bsp=index == 0, x2apic=x2apic, tsc_deadline=tsc_deadline)
                       for index in range(cpus)]
        for lapic in self.lapics:
            self.bus.add_apic(lapic)
        self.line = InterruptLine(bql, self.ioapic, self.lapics)
        self.lapics[0].firmware_setup()
        self.vcpus = []
        self.cpus = []
        self.signal_msi = None

    def set_irq(self, gsi: int, level: int) -> None:
        """KVM_IRQ_LINE's way in."""
        self.line.gsi_handler(gsi, level)

    def deliver_msi(self, address: int, data: int) -> int:
        """KVM_SIGNAL_MSI's way in: how many local APICs took the message."""
        return self.bus.deliver_msi(address, data)

    def send_msi(self, address: int, data: int) -> None:
        """A device's message (PCI MSI, MSI-X): KVM_SIGNAL_MSI once the VM exists."""
        if self.signal_msi is not None:
            self.signal_msi(address, data)
        else:
            self.bus.deliver_msi(address, data)

    def attach(self, vm, vcpus, supported_cpuid) -> None:
        """Connect the VM's vCPUs: their CPUID, the APIC MSRs' exits to userspace, the TSC,
        each one's interrupt delivery and APIC virtualization."""
        from devicemodel.cpu_apicv import CpuApicv            # these need the kvm package
        from devicemodel.cpu_interrupts import CpuInterrupts
        from devicemodel.cpu_msrs import install_msr_filter
        from devicemodel.cpuid import vcpu_cpuid
        from devicemodel.devices.apic_timer import VcpuTsc

        install_msr_filter(vm)
        self.line.irq_line = vm.irq_line
        self.signal_msi = vm.signal_msi
        self.vcpus = list(vcpus)
        self.cpus = [CpuInterrupts(index, lapic, self.line.pic, self.bql) for index, lapic in enumerate(self.lapics)]
        self.line.cpus = self.cpus
        for index, vcpu in enumerate(self.vcpus):
            vcpu.set_cpuid2(vcpu_cpuid(supported_cpuid, index, x2apic=self.x2apic, tsc_deadline=self.tsc_deadline))
            self.lapics[index].timer.tsc = VcpuTsc(vcpu)
            self.cpus[index].vcpu = vcpu
            if self.apicv:
                CpuApicv(index, self.lapics[index], vcpu)

    def system_reset(self) -> None:
        """A machine reset: each local APIC back at its power-up base and registers, the
        boot processor's then set up as the firmware leaves it (the I/O APIC and the 8259s
        are reset with the other devices)."""
        for lapic in self.lapics:
            lapic.apic_base = DEFAULT_BASE | BASE_ENABLE | (BASE_BSP if lapic is self.lapics[0] else 0)
            lapic.reset()
        self.lapics[0].firmware_setup()
        self._apic_base_to_kvm()

    def _apic_base_to_kvm(self) -> None:
        """KVM's copy of each IA32_APIC_BASE (CPUID's APIC bit, the APIC virtualization's
        mode) after the model changed it without a WRMSR."""
        for vcpu, lapic in zip(self.vcpus, self.lapics):
            vcpu.set_msrs({MSR_APIC_BASE: lapic.apic_base})

    def memory(self, index: int) -> CpuMemory:
        """The physical address space as vCPU ``index`` sees it."""
        return CpuMemory(self.mmio, self.lapics[index])

    def msrs(self, index: int):
        """The MSRs the device model serves for vCPU ``index`` (once attached)."""
        from devicemodel.cpu_msrs import CpuMsrs
        return CpuMsrs(self.lapics[index], self.vcpus[index])

    def save_state(self) -> dict:
        """The I/O APIC, the local APICs and what each vCPU has pending (the 8259s are
        the platform's)."""
        return {"ioapic": self.ioapic.save_state(), "lapics": [lapic.save_state() for lapic in self.lapics],
                "cpus": [cpu.save_state() for cpu in self.cpus]}

    def load_state(self, state: dict) -> None:
        self.ioapic.load_state(state["ioapic"])
        for lapic, saved in zip(self.lapics, state["lapics"]):
            lapic.load_state(saved)
        self._apic_base_to_kvm()
        for cpu, saved in zip(self.cpus, state["cpus"]):
            cpu.load_state(saved)
