"""Per-vCPU interrupt delivery (devicemodel.cpu_interrupts) over a recording vCPU: what is
injected before KVM_RUN, INIT and SIPI, the 8259 through LINT0, halts and kicks."""

import threading
import time

from devicemodel.apic_bus import ApicBus
from devicemodel.clock import VirtualClock
from devicemodel.cpu_interrupts import CpuInterrupts
from devicemodel.current_cpu import set_current_cpu
from devicemodel.devices.apic import LocalApic
from devicemodel.devices.i8259 import PicPair
from devicemodel.runstate import RunState
from kvm.constants import (KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_SIPI_RECEIVED,
                           KVM_VCPUEVENT_VALID_SIPI_VECTOR)
from kvm.structs import KvmRun, VcpuEvents


class Vcpu:
    def __init__(self):
        self.calls = []
        self.events = VcpuEvents()
        self.kicks = 0

    def interrupt(self, vector):
        self.calls.append(("interrupt", vector))

    def nmi(self):
        self.calls.append("nmi")

    def reset(self):
        self.calls.append("reset")

    def kick(self):
        self.kicks += 1

    def get_vcpu_events(self):
        return self.events

    def set_vcpu_events(self, events):
        self.events = events
        self.calls.append(("events", events.sipi_vector if events.flags & KVM_VCPUEVENT_VALID_SIPI_VECTOR else None))

    def set_mp_state(self, state):
        self.calls.append(("mp_state", state))

    def set_cpuid2(self, entries):
        pass

    def set_msrs(self, entries):
        self.calls.append(("msrs", dict(entries)))


class FakeVm:
    def enable_cap(self, cap, *args):
        pass

    def set_msr_filter(self, msr_filter):
        pass

    def create_irqchip(self, chip):
        self.irqchip = chip

    def irq_line(self, irq, level):
        self.irqchip.set_irq(irq, level)

    def signal_msi(self, address, data):
        return self.irqchip.deliver_msi(address, data)


class Machine:
    def __init__(self, cpus=2):
        self.bql = threading.RLock()
        self.bus = ApicBus()
        self.pic = PicPair(int_output=lambda level: [a.set_lint(0, level) for a in self.apics])
        self.apics = [LocalApic(i, self.bus, VirtualClock(), bsp=i == 0) for i in range(cpus)]
        for apic in self.apics:
            self.bus.add_apic(apic)
        self.cpus = [CpuInterrupts(i, apic, self.pic, self.bql) for i, apic in enumerate(self.apics)]
        self.vcpus = [Vcpu() for _ in range(cpus)]
        for cpu, vcpu in zip(self.cpus, self.vcpus):
            cpu.vcpu = vcpu
        self.apics[0].firmware_setup()
        for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00)):
            self.pic.master.write(port & 1, 1, value)

    def before_run(self, index, ready=1):
        run = KvmRun(ready_for_interrupt_injection=ready)
        self.vcpus[index].calls.clear()
        self.cpus[index].before_run(run, self.vcpus[index])
        return self.vcpus[index].calls, run.request_interrupt_window


def test_apic_interrupt_is_injected_when_ready_else_a_window_is_requested():
    m = Machine()
    m.apics[0].accept_interrupt(0x40, False)
    assert m.before_run(0, ready=0) == ([], 1)
    m.apics[0].accept_interrupt(0x50, False)
    assert m.before_run(0) == ([("interrupt", 0x50)], 0)      # 0x40 waits behind the 0x50 in service
    assert m.before_run(0) == ([], 0)
    m.apics[0].eoi()
    assert m.before_run(0) == ([("interrupt", 0x40)], 0)
    assert m.before_run(1) == ([], 0)


def test_the_8259_reaches_the_bsp_through_lint0_and_goes_first():
    m = Machine()
    m.apics[0].accept_interrupt(0x90, False)
    m.pic.set_irq(1, 1)
    assert m.cpus[0].interrupt_pending() and m.cpus[0].wakes(1)
    assert m.before_run(0) == ([("interrupt", 0x21)], 1)
    assert m.before_run(0) == ([("interrupt", 0x90)], 0)
    m.pic.set_irq(3, 1)
    assert not m.cpus[1].interrupt_pending()                   # LINT0 of the AP is masked
    m.apics[0].write_register(0x350, 0x10700)                  # masked on the BSP too
    assert not m.cpus[0].interrupt_pending()


def test_extint_message_fetches_the_vector_from_the_8259():
    m = Machine()
    m.apics[1].write_register(0xF0, 0x1FF)
    m.cpus[1].wait_for_sipi = False
    m.pic.set_irq(5, 1)
    assert not m.cpus[1].interrupt_pending()
    m.bus.deliver(dest=1, logical=False, delivery_mode=7, vector=0, level_triggered=False)
    assert m.before_run(1) == ([("interrupt", 0x25)], 0)


def test_init_and_sipi_start_an_application_processor():
    m = Machine()
    ap = m.cpus[1]
    assert ap.wait_for_sipi
    m.apics[1].accept_interrupt(0x40, False)
    assert m.before_run(1) == ([], 0)                          # waiting for SIPI: nothing is taken
    m.bus.send_ipi(m.apics[0], vector=0, delivery_mode=5, dest=1)
    m.bus.send_ipi(m.apics[0], vector=0x08, delivery_mode=6, dest=1)
    m.bus.send_ipi(m.apics[0], vector=0x09, delivery_mode=6, dest=1)   # not waiting any more: ignored
    assert m.vcpus[1].kicks == 2
    calls, window = m.before_run(1)
    assert calls == ["reset", ("events", None), ("mp_state", KVM_MP_STATE_INIT_RECEIVED),
                     ("events", 0x08), ("mp_state", KVM_MP_STATE_SIPI_RECEIVED)]
    assert m.apics[1].vectors(0x200) == [] and window == 0    # INIT reset the APIC
    assert m.before_run(1) == ([], 0)


def test_init_of_the_bsp_runs_it_and_sipi_is_ignored():
    m = Machine()
    m.bus.send_ipi(m.apics[1], vector=0, delivery_mode=5, dest=0)
    m.bus.send_ipi(m.apics[1], vector=0x10, delivery_mode=6, dest=0)
    calls, _ = m.before_run(0)
    assert calls == ["reset", ("events", None), ("mp_state", KVM_MP_STATE_RUNNABLE)]


def test_nmi_is_queued_and_wakes_a_halt_with_interrupts_off():
    m = Machine()
    assert not m.cpus[0].wakes(0)
    m.apics[0].accept_interrupt(0x40, False)
    assert not m.cpus[0].wakes(0) and m.cpus[0].wakes(1)
    m.bus.send_ipi(m.apics[1], vector=0, delivery_mode=4, dest=0)
    assert m.cpus[0].wakes(0)
    assert m.before_run(0, ready=0) == (["nmi"], 1)


def test_pokes_kick_the_vcpu_only_from_other_threads():
    m = Machine()
    kicks = m.vcpus[0].kicks
    m.apics[0].accept_interrupt(0x40, False)
    assert m.vcpus[0].kicks == kicks + 1
    set_current_cpu(0)
    try:
        m.apics[0].accept_interrupt(0x41, False)
    finally:
        set_current_cpu(None)
    assert m.vcpus[0].kicks == kicks + 1


def test_halted_vcpu_wakes_when_an_interrupt_arrives_from_another_thread():
    m = Machine()
    runstate = RunState()
    woke = threading.Event()

    def halt():
        with m.bql:
            m.cpus[0].wait_for_interrupt(runstate, 1)
        woke.set()
    thread = threading.Thread(target=halt)
    thread.start()
    time.sleep(0.1)
    assert not woke.is_set()
    with m.bql:
        m.apics[0].accept_interrupt(0x40, False)
    assert woke.wait(2)
    thread.join()


def test_cr8_and_the_tpr_are_one_register():
    m = Machine()
    m.apics[0].write_register(0x80, 0x35)
    run = KvmRun()
    m.cpus[0].before_run(run, m.vcpus[0])
    assert run.cr8 == 3
    m.cpus[0].after_run(run)
    assert m.apics[0].read32(0x80) == 0x35           # same class: the low bits stay
    m.apics[0].accept_interrupt(0x45, False)
    run.cr8 = 5                                      # the guest raised CR8
    m.cpus[0].after_run(run)
    assert m.apics[0].read32(0x80) == 0x50 and not m.cpus[0].interrupt_pending()


def test_irqchip_state_round_trip():
    from devicemodel.address_space import AddressSpace
    from devicemodel.irqchip import PcIrqchip

    def chip():
        irqchip = PcIrqchip(bql=threading.RLock(), clock=VirtualClock(), mmio=AddressSpace("memory"), cpus=2,
                            apicv=False)
        vm = FakeVm()
        vm.create_irqchip(irqchip)
        irqchip.attach(vm, [Vcpu(), Vcpu()], [])
        return irqchip
    a = chip()
    a.line.set_irq(0, 1)
    a.lapics[1].write_register(0xF0, 0x1FF)
    a.bus.send_ipi(a.lapics[0], vector=0x0A, delivery_mode=6, dest=1)
    a.bus.send_ipi(a.lapics[0], vector=0, delivery_mode=4, dest=1)
    state = a.save_state()
    b = chip()
    b.load_state(state)
    assert b.save_state() == state
    assert b.cpus[1].sipi_vector == 0x0A and not b.cpus[1].wait_for_sipi
