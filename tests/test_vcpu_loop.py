"""The vCPU loop and the machine around it, on the scripted fake kvm (tests/fake_kvm.py)."""

import threading
import time


from fake_kvm import (FailEntry, FakeKvm, Hlt, In, InternalError, Intr, MmioRead, MmioWrite, Out,
                      Raw, Shutdown, Spin)


from devicemodel.address_space import AddressSpace, Region  # noqa: E402
from devicemodel.devices.debug_exit import DebugExit  # noqa: E402
from devicemodel.devices.uart16550 import Uart16550  # noqa: E402
from devicemodel.machine import Machine, MachineConfig  # noqa: E402
from devicemodel.qdev import parse_device  # noqa: E402
from devicemodel.runstate import RunState  # noqa: E402
from devicemodel.vcpu_loop import VcpuLoop  # noqa: E402

COM1 = 0x3F8


class Capture:
    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += data

    def close(self):
        pass


class Board:
    """A UART at COM1, isa-debug-exit at 0xf4, a scratch MMIO register at 0xfed00000."""

    def __init__(self, script, no_reboot=False):
        self.runstate = RunState()
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory")
        self.serial = Capture()
        self.uart = Uart16550(self.serial, iobase=COM1)
        self.pio.add_region(self.uart.region)
        self.pio.add_region(DebugExit(self.runstate.request_exit, iobase=0xF4, iosize=4).region)
        self.mmio_writes = []
        self.mmio.add_region(Region(0xFED00000, 0x1000, "scratch", read=lambda o, s: 0x1122334455667788,
                                    write=lambda o, s, v: self.mmio_writes.append((o, s, v)),
                                    sizes=(1, 2, 4, 8)))
        self.vcpu = FakeKvm(script).create_vm().create_vcpu(0)
        self.loop = VcpuLoop(self.vcpu, self.pio, self.mmio, self.runstate, no_reboot=no_reboot)

    def run(self, timeout=5):
        thread = self.loop.start()
        thread.join(timeout)
        assert not thread.is_alive(), "the vCPU loop did not stop"
        return self.runstate.exit_status


def test_out_and_string_out_reach_the_uart():
    board = Board([Out(COM1, 1, (ord("h"),)), Out(COM1, 1, tuple(b"ello\n")), Out(0xF4, 4, (0x10,))])
    assert board.run() == 0x21
    assert bytes(board.serial.data) == b"hello\n"


def test_in_and_string_in_fill_the_data_buffer():
    board = Board([In(COM1 + 5, 1), Out(COM1 + 7, 1, (0x5A,)), In(COM1 + 7, 1, count=3),
                   In(0x80, 2), In(0x80, 4), Out(0xF4, 1, (0,))])
    assert board.run() == 1
    assert board.vcpu.reads == [0x60, 0x5A, 0x5A, 0x5A, 0xFFFF, 0xFFFFFFFF]
    assert board.pio.unassigned_reads == 2


def test_mmio_write_and_read_little_endian():
    board = Board([MmioWrite(0xFED00010, 4, 0xDEADBEEF), MmioRead(0xFED00000, 8), MmioRead(0xFED00000, 2),
                   MmioRead(0xC0000000, 4), MmioWrite(0xC0000000, 8, 1), Out(0xF4, 1, (3,))])
    assert board.run() == 7
    assert board.mmio_writes == [(0x10, 4, 0xDEADBEEF)]
    assert board.vcpu.reads == [0x1122334455667788, 0x7788, 0xFFFFFFFF]
    assert (board.mmio.unassigned_reads, board.mmio.unassigned_writes) == (1, 1)


def test_debug_exit_stops_before_the_next_exit():
    board = Board([Out(0xF4, 4, (1,)), Out(COM1, 1, (ord("x"),))])
    assert board.run() == 3
    assert board.serial.data == b""
    assert board.vcpu.runs == 1


def test_debug_exit_in_the_middle_of_string_out_keeps_the_first_status():
    board = Board([Out(0xF4, 1, (1, 2, 3))])
    assert board.run() == 3


def test_hlt_with_interrupts_disabled_ends_the_vm(capsys):
    board = Board([Out(COM1, 1, (ord("."),)), Hlt(rflags=0x2)])
    assert board.run() == 0
    assert capsys.readouterr().err == "pyhv: guest halted with interrupts disabled\n"


def test_hlt_with_interrupts_enabled_sleeps_until_the_vm_is_stopped():
    board = Board([Hlt(rflags=0x202), Out(COM1, 1, (ord("!"),))])
    thread = board.loop.start()
    time.sleep(0.2)
    assert thread.is_alive()
    board.runstate.request_exit(0)
    thread.join(5)
    assert not thread.is_alive()
    assert board.serial.data == b""


def test_triple_fault_with_no_reboot(capsys):
    board = Board([Shutdown()], no_reboot=True)
    assert board.run() == 0
    err = capsys.readouterr().err
    assert err.startswith("pyhv: guest triple fault") and "-no-reboot" in err and err.count("\n") == 1


def test_triple_fault_without_no_reboot_is_reported_as_unsupported_reset(capsys):
    board = Board([Shutdown()])
    assert board.run() == 1
    err = capsys.readouterr().err
    assert "triple fault" in err and "reset" in err and err.count("\n") == 1


def test_failed_entry_shows_the_hardware_reason(capsys):
    board = Board([FailEntry(0x80000021)])
    board.vcpu.regs.rip = 0x100123
    assert board.run() == 1
    err = capsys.readouterr().err
    assert err.startswith("pyhv: KVM: entry failed, hardware error 0x80000021 (invalid guest state)")
    assert "RIP=0x100123" in err and err.count("\n") == 1


def test_internal_error_shows_the_suberror(capsys):
    board = Board([InternalError(1)])
    assert board.run() == 1
    assert "pyhv: KVM internal error. Suberror: 1 (emulation failure)" in capsys.readouterr().err


def test_unknown_exit_reason(capsys):
    board = Board([Raw(99)])
    assert board.run() == 1
    assert "unhandled KVM exit reason 99" in capsys.readouterr().err


def test_intr_without_stop_request_just_continues():
    board = Board([Intr(), Intr(), Out(0xF4, 1, (4,))])
    assert board.run() == 9


def test_kick_stops_a_spinning_guest():
    board = Board([Out(COM1, 1, (ord("a"),)), Spin()])
    thread = board.loop.start()
    time.sleep(0.1)
    board.runstate.request_exit(0)
    board.vcpu.kick()
    thread.join(5)
    assert not thread.is_alive()
    assert board.runstate.exit_status == 0


def test_a_bug_in_a_device_ends_the_vm_with_status_1(capsys):
    board = Board([Out(0x70, 1, (1,))])

    def broken(offset, size, value):
        raise RuntimeError("device bug")

    board.pio.add_region(Region(0x70, 2, "cmos", write=broken))
    assert board.run() == 1
    err = capsys.readouterr().err
    assert "pyhv: vCPU 0: internal error: RuntimeError: device bug" in err


# --- the machine around the loop -------------------------------------------------

def make_machine(kernel, script, **kw):
    config = MachineConfig(kernel=kernel, cmdline="quiet", ram_size=32 << 20, serials=["null"],
                           devices=[parse_device("isa-debug-exit,iobase=0xf4,iosize=4")], **kw)
    machine = Machine(config)
    fake = FakeKvm(script)
    machine.power_on(fake)
    return machine, fake


def test_power_on_registers_ram_and_sets_the_multiboot_entry_state(kernel):
    machine, fake = make_machine(kernel, [])
    vm = fake.vms[0]
    (slot,) = vm.memory_regions
    assert slot["slot"] == 0 and slot["guest_phys_addr"] == 0 and slot["flags"] == 0
    assert slot["memory_size"] == 32 << 20 and slot["userspace_addr"].obj is machine.ram
    vcpu = vm.vcpus[0]
    regs, sregs = vcpu.regs, vcpu.sregs
    assert (regs.rip, regs.rax, regs.rbx, regs.rflags) == (0x10000C, 0x2BADB002, 0x9000, 0x2)
    assert sregs.cr0 == 0x11 and sregs.cr4 == 0 and sregs.efer == 0
    cs = sregs.cs
    assert (cs.selector, cs.type, cs.base, cs.limit, cs.present, cs.dpl, cs.db, cs.s, cs.l, cs.g) == (
        0x10, 0xB, 0, 0xFFFFFFFF, 1, 0, 1, 1, 0, 1)
    for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
        assert (seg.selector, seg.type, seg.limit, seg.present, seg.db, seg.s, seg.g) == (
            0x18, 0x3, 0xFFFFFFFF, 1, 1, 1, 1)
    assert (sregs.tr.type, sregs.tr.s, sregs.tr.present, sregs.tr.limit) == (0xB, 0, 1, 0x67)
    assert sregs.ldt.unusable == 1
    assert machine.ram[0x100000:0x100004] == b"\x02\xb0\xad\x1b"
    machine.close()


def test_machine_runs_to_the_debug_exit_status(kernel, capsys):
    script = [Out(COM1, 1, tuple(b"hi\n")), Out(0xF4, 4, (0x21,))]
    machine, _ = make_machine(kernel, script, log_items=frozenset({"exits-summary"}))
    machine.serials[0].chardev = Capture()
    assert machine.run() == 0x43
    assert bytes(machine.serials[0].chardev.data) == b"hi\n"
    err = capsys.readouterr().err
    assert "VM exits of vCPU 0" in err and "IO_INSTRUCTION" in err and "total" in err
    machine.close()


def test_machine_exit_stats_go_to_the_log_file(kernel, tmp_path, capsys):
    log = tmp_path / "pyhv.log"
    machine, _ = make_machine(kernel, [Hlt()], log_items=frozenset({"exits-summary"}), log_file=str(log))
    assert machine.run() == 0
    machine.close()
    assert "HLT" in log.read_text()
    assert "VM exits" not in capsys.readouterr().err


def test_machine_stop_kicks_a_spinning_guest(kernel, capsys):
    machine, _ = make_machine(kernel, [Spin()])
    timer = threading.Timer(0.2, machine.stop_on_signal, args=(2,))
    timer.start()
    assert machine.run() == 0
    assert capsys.readouterr().err == "pyhv: terminating on signal 2\n"
    machine.close()


def test_status_is_taken_modulo_256_like_a_process_exit_status(kernel):
    machine, _ = make_machine(kernel, [Out(0xF4, 4, (0x80,))])
    assert machine.run() == (0x101 & 0xFF)
    machine.close()


class TypedInput(Capture):
    """A chardev whose input the test types: deliver() is the machine's."""

    def start_input(self, deliver, quit=None):
        self.deliver = deliver


def test_serial_input_waits_for_room_in_the_receive_fifo(kernel):
    machine, _ = make_machine(kernel, [])
    uart = machine.serials[0]
    uart.chardev = TypedInput()
    machine._start_inputs()
    line = b"cat /proc/interrupts\n" * 3          # more than a 16-byte FIFO holds
    uart.write(2, 1, 0x01)                       # FIFO on
    typing = threading.Thread(target=uart.chardev.deliver, args=(line,))
    typing.start()
    received = bytearray()
    deadline = time.monotonic() + 5
    while len(received) < len(line) and time.monotonic() < deadline:
        with machine.bql:
            lsr = uart.read(5, 1)
            assert not lsr & 0x02, "overrun"
            if lsr & 0x01:
                received.append(uart.read(0, 1))
    typing.join(5)
    assert bytes(received) == line
    machine.close()
