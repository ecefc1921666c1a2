"""The PC: RAM, port and memory address spaces, the legacy platform devices with the
8259 PIC pair driving the CPU's INTR line, serial ports, ``-device`` devices, a
kernel booted by its protocol, and ``-smp`` vCPUs (vCPU 0 boots; the others wait for
INIT/SIPI as application processors do).

Building a ``Machine`` checks and prepares everything that can fail because of the
user's input (memory size, kernel file, chardevs, devices, log file) before any VM
exists; ``power_on()`` then creates the VM through the ``kvm`` API, registers RAM as
memslot 0 at guest-physical 0 and puts vCPU 0 at the kernel's entry point; ``run()``
runs one thread per vCPU until the VM stops and returns the process exit status.
``pause()``/``resume()`` park and release the vCPUs (the monitor's stop and cont).

Stopping: the guest (isa-debug-exit, a halt with interrupts off, a triple fault) or the
user (Ctrl-C or SIGTERM, like QEMU's "terminating on signal N" with exit status 0).
"""

from __future__ import annotations

import mmap
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from devicemodel.address_space import AddressSpace
from devicemodel.chardev import open_chardev
from devicemodel.clock import HostClock
from devicemodel.devices.debugcon import Debugcon
from devicemodel.devices.uart16550 import Uart16550
from devicemodel.interrupt_line import InterruptLine
from devicemodel.pc import PcPlatform
from devicemodel.errors import ConfigError, PyhvError, error_report
from devicemodel.firmware_tables.e820 import PcMemoryLayout
from devicemodel.firmware_tables.pc import install_pc_firmware_tables
from devicemodel.loaders.kernel import load_kernel
from devicemodel.log import format_exit_stats
from devicemodel.qdev import DEVICE_TYPES, DeviceSpec
from devicemodel.runstate import PAUSED, PRELAUNCH, RunState

MiB = 1 << 20
DEFAULT_RAM_SIZE = 128 * MiB
COM_PORTS = (0x3F8, 0x2F8, 0x3E8, 0x2E8)
COM_IRQS = (4, 3, 4, 3)
KICK_INTERVAL = 0.05     # seconds between kicks while a stop is pending
STOP_GRACE = 5.0         # seconds a vCPU may take to stop before pyhv exits without it


@dataclass
class MachineConfig:
    kernel: str
    cmdline: str = ""
    initrd: Optional[str] = None
    debugcon: Optional[str] = None   # chardev spec of QEMU's -debugcon
    ram_size: int = DEFAULT_RAM_SIZE
    cpus: int = 1
    start_paused: bool = False       # -S
    serials: list[str] = field(default_factory=lambda: ["stdio"])  # chardev specs; "none": no port
    devices: list[DeviceSpec] = field(default_factory=list)
    no_reboot: bool = False
    log_items: frozenset[str] = frozenset()
    log_file: Optional[str] = None
    gdb: Optional[str] = None        # -gdb / -s: the gdbstub's socket


def open_kvm():
    """The hypervisor (``kvm.Kvm()``), imported only when a VM is really created."""
    try:
        from kvm import Kvm
    except ImportError as e:
        raise PyhvError(f"the hypervisor layer is not available ({e}); is pyhv built?") from None
    return Kvm()


def allocate_ram(size: int) -> mmap.mmap:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0x4000)
    try:
        return mmap.mmap(-1, size, flags=flags)
    except (OSError, OverflowError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"cannot set up guest memory 'pc.ram': {reason}") from None


class Machine:
    def __init__(self, config: MachineConfig):
        self.config = config
        self.runstate = RunState(vcpus=config.cpus)
        if config.start_paused:
            self.runstate.pause(PRELAUNCH)
        self.bql = threading.RLock()   # the big lock: device state is touched under it
        self.clock = HostClock(lock=self.bql)
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory", 1 << 64)
        self.ram = allocate_ram(config.ram_size)
        self.layout = PcMemoryLayout(config.ram_size)
        self.tables = install_pc_firmware_tables(self.ram, cpus=config.cpus, com_ports=COM_PORTS[:len(config.serials)])
        self.boot = load_kernel(config.kernel, self.ram, config.cmdline, config.initrd, self.tables.rsdp_addr)
        self.line = InterruptLine(self.bql)
        self.platform = PcPlatform(pio=self.pio, clock=self.clock, line=self.line,
                                   ram_size=config.ram_size, request_reset=self.request_reset)
        self.chardevs = []
        self.serials: list[Uart16550] = []
        self.devices = []
        self.log = None
        self.vm = None
        self.vcpus = []
        self.gdbstub = None
        try:
            self._add_serials(config.serials)
            if config.debugcon is not None:
                self._add_debugcon(config.debugcon)
            for spec in config.devices:
                self._add_device(spec)
            if config.log_file is not None:
                self.log = _open_log(config.log_file)
            if config.gdb is not None:
                from devicemodel.gdbstub.server import GdbServer  # needs the kvm package
                self.gdbstub = GdbServer(self, config.gdb)
        except BaseException:
            self.close()
            raise

    def _add_serials(self, specs: list[str]) -> None:
        if len(specs) > len(COM_PORTS):
            raise ConfigError(f"-serial {specs[len(COM_PORTS)]}: too many serial ports "
                              f"(at most {len(COM_PORTS)})")
        for index, spec in enumerate(specs):
            if spec == "none":
                continue
            chardev = open_chardev(spec)
            self.chardevs.append(chardev)
            uart = Uart16550(chardev, iobase=COM_PORTS[index], irq=self.line.irq_setter(COM_IRQS[index]),
                             name=f"serial{index}")
            self.pio.add_region(uart.region)
            self.serials.append(uart)

    def _add_debugcon(self, spec: str) -> None:
        """QEMU's -debugcon: an isa-debugcon at port 0xe9 on a character device."""
        chardev = open_chardev(spec)
        self.chardevs.append(chardev)
        self.devices.append(Debugcon(chardev))
        self.pio.add_region(self.devices[-1].region)

    def _add_device(self, spec: DeviceSpec) -> None:
        device = DEVICE_TYPES[spec.driver].create(self, spec.props)
        try:
            for region in device.regions:
                self.pio.add_region(region)
            if hasattr(device, "mmio_region"):
                self.mmio.add_region(device.mmio_region)
        except PyhvError as e:
            raise ConfigError(f"-device {spec.arg}: {e}") from None
        self.devices.append(device)

    def request_exit(self, status: int) -> None:
        """End the VM; the process exits with ``status`` (the first request wins)."""
        self.runstate.request_exit(status)

    def flush_guest_page(self, gpa: int) -> None:
        """pc-testdev's page flush: forget what the processors decoded from that page."""
        if self.vm is not None:
            self.vm.guest_memory_written(gpa & ~0xFFF, 0x1000)

    def request_reset(self, hard: bool = False) -> None:
        """The guest asked for a system reset (keyboard controller, port 0x92, 0xcf9)."""
        if self.config.no_reboot:
            error_report("guest requested a system reset; exiting as -no-reboot asks")
            self.request_exit(0)
        else:
            error_report("guest requested a system reset, which pyhv does not support yet; "
                         "exiting (use -no-reboot to make this status 0)")
            self.request_exit(1)

    def power_on(self, kvm=None) -> None:
        """Create the VM and its vCPU, ready to enter the kernel."""
        kvm = open_kvm() if kvm is None else kvm
        from devicemodel.entry_state import apply_entry_state  # needs the kvm package
        from kvm.constants import KVM_MP_STATE_INIT_RECEIVED

        self.vm = kvm.create_vm()
        # RAM below the PCI hole at 0, the rest of the buffer at 4 GiB (QEMU's pc split)
        low, ram = self.layout.low_top, memoryview(self.ram)
        self.vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory_size=low,
                                       userspace_addr=ram[:low], flags=0)
        if self.layout.high_size:
            self.vm.set_user_memory_region(slot=1, guest_phys_addr=1 << 32, memory_size=self.layout.high_size,
                                           userspace_addr=ram[low:], flags=0)
        self.vcpus = [self.vm.create_vcpu(index) for index in range(self.config.cpus)]
        self.line.vcpu = self.vcpus[0]   # the PIC's INTR reaches the boot processor
        apply_entry_state(self.vcpus[0], self.boot.entry)
        for ap in self.vcpus[1:]:
            ap.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)

    def run(self) -> int:
        """Run until the VM stops; the exit status (isa-debug-exit's, else 0; 1 on failures)."""
        if not self.vcpus:
            self.power_on()
        from devicemodel.vcpu_loop import VcpuLoop  # needs the kvm package

        on_debug = self.gdbstub.debug_exit if self.gdbstub is not None else None
        loops = [VcpuLoop(vcpu, self.pio, self.mmio, self.runstate, no_reboot=self.config.no_reboot,
                          index=index, bql=self.bql, interrupts=self.line if index == 0 else None,
                          on_debug=on_debug)
                 for index, vcpu in enumerate(self.vcpus)]
        if self.gdbstub is not None:
            self.gdbstub.start()
        started = time.monotonic()
        with _signals_stop(self):
            self.clock.start()
            self._start_serial_input()
            threads = [loop.start() for loop in loops]
            stopped = self._wait(threads)
            self.clock.stop()
        elapsed = time.monotonic() - started
        if stopped and "exits" in self.config.log_items:
            self._print_exit_stats(elapsed)
        status = self.runstate.exit_status
        return 0 if status is None else status & 0xFF

    def _start_serial_input(self) -> None:
        """Bytes typed on the first serial port's backend reach its UART."""
        if not self.serials:
            return
        uart = self.serials[0]

        def deliver(data: bytes) -> None:
            with self.bql:
                uart.receive(data)
        start = getattr(uart.chardev, "start_input", None)
        if start is not None:
            start(deliver, quit=lambda: self.request_exit(0))

    def _print_exit_stats(self, elapsed: float) -> None:
        out = self.log or sys.stderr
        for index, vcpu in enumerate(self.vcpus):
            title = (f"VM exits of vCPU {index} by reason (VM ran {elapsed:.3f} s, "
                     f"{vcpu.instructions_retired()} guest instructions):")
            print(format_exit_stats(vcpu.exit_stats(), title), file=out, flush=True)

    def kick_all(self) -> None:
        for vcpu in self.vcpus:
            vcpu.kick()

    def pause(self, reason: str = PAUSED, timeout: float = STOP_GRACE) -> bool:
        """QEMU's vm_stop(): park every vCPU outside the guest; True once they all are
        (False if the VM was already paused or a vCPU did not park in time)."""
        if not self.runstate.pause(reason):
            return False
        with self.line.bql:
            self.line.wake_all()
        self.kick_all()
        return self.runstate.wait_parked(timeout)

    def resume(self) -> bool:
        """QEMU's vm_start(): let the vCPUs run; False if the VM was not paused."""
        return self.runstate.resume()

    def _wait(self, threads: list[threading.Thread]) -> bool:
        """Wait for the vCPU threads, kicking them while a stop is pending; False if one never stopped."""
        deadline = None
        while True:
            try:
                for thread in threads:
                    thread.join(KICK_INTERVAL / len(threads))
                alive = [index for index, thread in enumerate(threads) if thread.is_alive()]
                if not alive:
                    return True
                if self.runstate.stop_requested:
                    deadline = deadline or time.monotonic() + STOP_GRACE
                    if time.monotonic() > deadline:
                        error_report(f"vCPU {alive[0]} does not stop; exiting without it")
                        return False
                    with self.line.bql:
                        self.line.wake_all()
                    self.kick_all()
            except KeyboardInterrupt:
                self.stop_on_signal(signal.SIGINT)

    def stop_on_signal(self, signum: int) -> None:
        error_report(f"terminating on signal {signum}")
        self.request_exit(0)

    def close(self) -> None:
        if self.gdbstub is not None:
            self.gdbstub.close()
            self.gdbstub = None
        for chardev in self.chardevs:
            chardev.close()
        self.chardevs = []
        if self.log is not None:
            self.log.close()
            self.log = None


def _open_log(path: str):
    try:
        return open(path, "w")
    except OSError as e:
        raise ConfigError(f"-D {path}: could not open log file: {e.strerror}") from None


class _signals_stop:
    """While running, SIGTERM stops the VM like Ctrl-C (only the main thread can set handlers)."""

    def __init__(self, machine: Machine):
        self.machine = machine
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, lambda signum, frame: self.machine.stop_on_signal(signum))
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False
