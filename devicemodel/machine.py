"""The PC: RAM, port and memory address spaces, the legacy platform devices with the
8259 PIC pair driving the CPU's INTR line, serial ports, ``-drive`` disk images,
``-device`` devices (virtio ones on virtio-mmio transports), a kernel, one vCPU.

Building a ``Machine`` checks and prepares everything that can fail because of the
user's input (memory size, chardevs, disk images, devices, kernel file, log file) before
any VM exists -- the kernel last, because its command line announces the devices; ``power_on()`` then creates the VM through the ``kvm`` API, registers RAM as
memslot 0 at guest-physical 0 and puts the vCPU at the kernel's entry point; ``run()``
runs the vCPU thread until the VM stops and returns the process exit status.

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
from devicemodel.block.drive import Drive, DriveSpec, open_drive
from devicemodel.chardev import ChardevSpec, open_chardev
from devicemodel.clock import HostClock
from devicemodel.devices.debugcon import Debugcon
from devicemodel.devices.uart16550 import Uart16550
from devicemodel.interrupt_line import InterruptLine
from devicemodel.pc import PcPlatform
from devicemodel.errors import ConfigError, PyhvError, error_report
from devicemodel.firmware_tables.e820 import PcMemoryLayout
from devicemodel.firmware_tables.pc import install_pc_firmware_tables
from devicemodel.guest_memory import GuestMemory
from devicemodel.loaders.kernel import load_kernel
from devicemodel.log import format_exit_stats
from devicemodel.qdev import DEVICE_TYPES, DeviceSpec
from devicemodel.runstate import RunState
from devicemodel.virtio.mmio_bus import VirtioMmioBus

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
    serials: list[str] = field(default_factory=lambda: ["stdio"])  # chardev specs; "none": no port
    devices: list[DeviceSpec] = field(default_factory=list)
    drives: list[DriveSpec] = field(default_factory=list)
    snapshot: bool = False           # -snapshot: drives write to temporary overlays
    chardevs: list[ChardevSpec] = field(default_factory=list)
    no_reboot: bool = False
    log_items: frozenset[str] = frozenset()
    log_file: Optional[str] = None


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
        self.runstate = RunState()
        self.bql = threading.RLock()   # the big lock: device state is touched under it
        self.clock = HostClock(lock=self.bql)
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory", 1 << 64)
        self.ram = allocate_ram(config.ram_size)
        self.layout = PcMemoryLayout(config.ram_size)
        self.guest_memory = GuestMemory(self.ram, self.layout, on_write=self._guest_memory_written)
        self.tables = install_pc_firmware_tables(self.ram, cpus=1, com_ports=COM_PORTS[:len(config.serials)])
        self.line = InterruptLine(self.bql)
        self.platform = PcPlatform(pio=self.pio, clock=self.clock, line=self.line,
                                   ram_size=config.ram_size, request_reset=self.request_reset)
        self.chardevs = []
        self.named_chardevs = {}
        self.inputs = []          # (chardev, receive(data)) of device front ends besides COM1
        self.serials: list[Uart16550] = []
        self.devices = []
        self.drives: dict[str, Drive] = {}
        self._virtio_mmio = None
        self.log = None
        self.vm = None
        self.vcpu = None
        try:
            for chardev_spec in config.chardevs:
                self.named_chardevs[chardev_spec.id] = self._open_chardev(chardev_spec.spec)
            self._add_serials(config.serials)
            if config.debugcon is not None:
                self._add_debugcon(config.debugcon)
            for drive_spec in config.drives:
                self.drives[drive_spec.id] = open_drive(drive_spec, config.snapshot)
            for spec in config.devices:
                self._add_device(spec)
            extra = self._virtio_mmio.kernel_cmdline() if self._virtio_mmio is not None else ""
            self.boot = load_kernel(config.kernel, self.ram, config.cmdline, config.initrd, self.tables.rsdp_addr,
                                    linux_cmdline_extra=extra)
            if config.log_file is not None:
                self.log = _open_log(config.log_file)
        except BaseException:
            self.close()
            raise

    def _open_chardev(self, spec: str):
        chardev = open_chardev(spec)
        self.chardevs.append(chardev)
        return chardev

    def _add_serials(self, specs: list[str]) -> None:
        if len(specs) > len(COM_PORTS):
            raise ConfigError(f"-serial {specs[len(COM_PORTS)]}: too many serial ports "
                              f"(at most {len(COM_PORTS)})")
        for index, spec in enumerate(specs):
            if spec == "none":
                continue
            chardev = self._open_chardev(spec)
            uart = Uart16550(chardev, iobase=COM_PORTS[index], irq=self.line.irq_setter(COM_IRQS[index]),
                             name=f"serial{index}")
            self.pio.add_region(uart.region)
            self.serials.append(uart)

    def _add_debugcon(self, spec: str) -> None:
        """QEMU's -debugcon: an isa-debugcon at port 0xe9 on a character device."""
        chardev = self._open_chardev(spec)
        self.devices.append(Debugcon(chardev))
        self.pio.add_region(self.devices[-1].region)

    def _add_device(self, spec: DeviceSpec) -> None:
        try:
            device = DEVICE_TYPES[spec.driver].create(self, spec.props)
            for region in device.regions:
                self.pio.add_region(region)
            if hasattr(device, "mmio_region"):
                self.mmio.add_region(device.mmio_region)
        except PyhvError as e:
            raise ConfigError(f"-device {spec.arg}: {e}") from None
        self.devices.append(device)

    # --- what devices get from the machine ------------------------------------------

    def claim_drive(self, drive_id: str, driver: str) -> Drive:
        """The ``-drive`` with that id, for one device only."""
        drive = self.drives.get(drive_id)
        if drive is None:
            raise ConfigError(f"Property '{driver}.drive' can't find value '{drive_id}'")
        if drive.user is not None:
            raise ConfigError(f"Property '{driver}.drive' can't take value '{drive_id}', it's in use")
        drive.user = driver
        return drive

    def chardev_by_id(self, chardev_id: str, driver: str):
        chardev = self.named_chardevs.get(chardev_id)
        if chardev is None:
            raise ConfigError(f"Property '{driver}.chardev' can't find value '{chardev_id}'")
        return chardev

    def add_input(self, chardev, receive) -> None:
        """Bytes the character device receives go to ``receive`` (called with the big lock)."""
        self.inputs.append((chardev, receive))

    def virtio_mmio_bus(self) -> VirtioMmioBus:
        """The virtio-mmio transports, created with the first device that needs one."""
        if self._virtio_mmio is None:
            self._virtio_mmio = VirtioMmioBus(self.mmio, self.line.irq_setter)
        return self._virtio_mmio

    def _guest_memory_written(self, gpa: int, size: int) -> None:
        """A device wrote guest RAM: the processors forget code decoded from it."""
        if self.vm is not None:
            self.vm.guest_memory_written(gpa, size)

    def request_exit(self, status: int) -> None:
        """End the VM; the process exits with ``status`` (the first request wins)."""
        self.runstate.request_exit(status)

    def flush_guest_page(self, gpa: int) -> None:
        """pc-testdev's page flush: forget what the processors decoded from that page."""
        self._guest_memory_written(gpa & ~0xFFF, 0x1000)

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

        self.vm = kvm.create_vm()
        # RAM below the PCI hole at 0, the rest of the buffer at 4 GiB (QEMU's pc split)
        low, ram = self.layout.low_top, memoryview(self.ram)
        self.vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory_size=low,
                                       userspace_addr=ram[:low], flags=0)
        if self.layout.high_size:
            self.vm.set_user_memory_region(slot=1, guest_phys_addr=1 << 32, memory_size=self.layout.high_size,
                                           userspace_addr=ram[low:], flags=0)
        self.vcpu = self.vm.create_vcpu(0)
        self.line.vcpu = self.vcpu
        apply_entry_state(self.vcpu, self.boot.entry)

    def run(self) -> int:
        """Run until the VM stops; the exit status (isa-debug-exit's, else 0; 1 on failures)."""
        if self.vcpu is None:
            self.power_on()
        from devicemodel.vcpu_loop import VcpuLoop  # needs the kvm package

        loop = VcpuLoop(self.vcpu, self.pio, self.mmio, self.runstate, no_reboot=self.config.no_reboot,
                        bql=self.bql, interrupts=self.line)
        started = time.monotonic()
        with _signals_stop(self):
            self.clock.start()
            self._start_inputs()
            thread = loop.start()
            stopped = self._wait(thread)
            self.clock.stop()
        elapsed = time.monotonic() - started
        if stopped and "exits" in self.config.log_items:
            title = (f"VM exits of vCPU 0 by reason (VM ran {elapsed:.3f} s, "
                     f"{self.vcpu.instructions_retired()} guest instructions):")
            print(format_exit_stats(self.vcpu.exit_stats(), title), file=self.log or sys.stderr, flush=True)
        status = self.runstate.exit_status
        return 0 if status is None else status & 0xFF

    def _start_inputs(self) -> None:
        """Bytes typed on the first serial port's backend reach its UART; bytes for the
        other front ends that read (virtio console ports) reach them."""
        inputs = list(self.inputs)
        if self.serials:
            inputs.insert(0, (self.serials[0].chardev, self.serials[0].receive))
        for chardev, receive in inputs:
            start = getattr(chardev, "start_input", None)
            if start is not None:
                start(self._locked(receive), quit=lambda: self.request_exit(0))

    def _locked(self, receive):
        def deliver(data: bytes) -> None:
            with self.bql:
                receive(data)
        return deliver

    def _wait(self, thread: threading.Thread) -> bool:
        """Wait for the vCPU thread, kicking it while a stop is pending; False if it never stopped."""
        deadline = None
        while True:
            try:
                thread.join(KICK_INTERVAL)
                if not thread.is_alive():
                    return True
                if self.runstate.stop_requested:
                    deadline = deadline or time.monotonic() + STOP_GRACE
                    if time.monotonic() > deadline:
                        error_report("vCPU 0 does not stop; exiting without it")
                        return False
                    self.vcpu.kick()
            except KeyboardInterrupt:
                self.stop_on_signal(signal.SIGINT)

    def stop_on_signal(self, signum: int) -> None:
        error_report(f"terminating on signal {signum}")
        self.request_exit(0)

    def close(self) -> None:
        for chardev in self.chardevs:
            chardev.close()
        self.chardevs = []
        for drive in self.drives.values():
            drive.close()
        self.drives = {}
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
