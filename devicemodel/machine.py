"""The PC: RAM, port and memory address spaces, the legacy platform devices on the
interrupt controllers (the 8259 PIC pair, the I/O APIC, a local APIC per vCPU), serial
ports, ``-drive`` disk images, ``-device`` devices (virtio ones on virtio-mmio
transports), a kernel booted by its protocol, and ``-smp`` vCPUs (vCPU 0 boots; the
others wait for INIT/SIPI as application processors do). The machine type (``-machine``)
decides the rest: QEMU's ``pc`` adds the PCI chipset (i440FX, PIIX3, PIIX4 power
management), the HPET and the ACPI tables; ``microvm`` has none of them. Both have fw_cfg.

Building a ``Machine`` checks and prepares everything that can fail because of the
user's input (memory size, chardevs, disk images, devices, kernel file, log file) before
any VM exists -- the kernel last, because its command line announces the devices;
``power_on()`` then creates the VM through the ``kvm`` API, registers RAM as memslot 0
at guest-physical 0 and puts vCPU 0 at the kernel's entry point; ``run()`` runs one
thread per vCPU until the VM stops and returns the process exit status.
``pause()``/``resume()`` park and release the vCPUs (the monitor's stop and cont).

Stopping: the guest (isa-debug-exit, a halt with interrupts off, a triple fault with
-no-reboot, an ACPI power-off) or the user (Ctrl-C or SIGTERM, like QEMU's "terminating
on signal N" with exit status 0; the monitor's quit). With -no-shutdown a guest
power-off pauses the VM (run state "shutdown") instead, as in QEMU.

Resetting (QEMU's qemu_system_reset_request): the guest (a triple fault, the keyboard
controller, port 0x92, 0xcf9) or the monitor asks; the main loop parks the vCPUs, puts
devices, RAM and vCPUs back to their power-on state (devicemodel/system_reset.py) and
lets them go on. With -no-reboot a reset ends the VM instead (status 0), as in QEMU.

The monitors (``-monitor``, ``-serial mon:...``) and QMP (``-qmp``) run on their
character devices' threads; the machine's run-state changes reach QMP as events
(``machine.events``: STOP, RESUME, RESET, SHUTDOWN, POWERDOWN).
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from devicemodel.address_space import AddressSpace
from devicemodel.block.drive import Drive, DriveSpec, open_drive
from devicemodel.chardev import ChardevDefinition, open_chardev
from devicemodel.chardev_mux import MuxChardev
from devicemodel.clock import HostClock
from devicemodel.cpu_models import CpuSpec, build_cpuid
from devicemodel.devices.debugcon import Debugcon
from devicemodel.devices.uart16550 import Uart16550
from devicemodel.irqchip import PcIrqchip
from devicemodel.pc import PcPlatform
from devicemodel.errors import ConfigError, PyhvError, error_report
from devicemodel import events as ev
from devicemodel.events import EventBus
from devicemodel.firmware_tables.e820 import PcMemoryLayout
from devicemodel.firmware_tables.fw_cfg import pc_fw_cfg
from devicemodel.firmware_tables.pc import install_pc_firmware_tables
from devicemodel.guest_memory import GuestMemory
from devicemodel.loaders.elf import read_kernel_file
from devicemodel.loaders.initrd import read_initrd
from devicemodel.loaders.kernel import load_kernel
from devicemodel.log import format_exit_stats
from devicemodel.machine_types import AccelOptions, MachineOptions
from devicemodel.net.clients import NetClients
from devicemodel.net.netdev import NetdevSpec
from devicemodel.pci.device import PciDevice
from devicemodel.pci.pc_chipset import PcChipset
from devicemodel.qdev import DEVICE_TYPES, DeviceSpec
from devicemodel.runstate import PAUSED, PRELAUNCH, SHUTDOWN, RunState
from devicemodel.system_reset import (clear_ram, devices_of, finish_pending_io, reset_devices,
                                      reset_vcpu)
from devicemodel.virtio.mmio_bus import VirtioMmioBus

MiB = 1 << 20
DEFAULT_RAM_SIZE = 128 * MiB
COM_PORTS = (0x3F8, 0x2F8, 0x3E8, 0x2E8)
COM_IRQS = (4, 3, 4, 3)
KICK_INTERVAL = 0.05     # seconds between kicks while a stop is pending
STOP_GRACE = 5.0         # seconds a vCPU may take to stop before pyhv exits without it
SERIAL_INPUT_POLL = 0.001  # seconds between looks at a full receive FIFO


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
    drives: list[DriveSpec] = field(default_factory=list)
    netdevs: list[NetdevSpec] = field(default_factory=list)   # -netdev
    snapshot: bool = False           # -snapshot: drives write to temporary overlays
    no_reboot: bool = False
    no_shutdown: bool = False        # -no-shutdown: a guest shutdown pauses the VM
    log_items: frozenset[str] = frozenset()
    log_file: Optional[str] = None
    machine: MachineOptions = field(default_factory=MachineOptions)
    accel: AccelOptions = field(default_factory=AccelOptions)   # -accel kvm,...
    cpu: Optional[CpuSpec] = None    # None: the processor's own CPUID, all of it
    rtc_base: str = "utc"
    name: Optional[str] = None         # -name: the guest's name
    pidfile: Optional[str] = None      # -pidfile: for the process that runs the machine
    nographic: bool = False
    display: Optional[str] = None      # -display: only "none" (pyhv has no graphical display)
    nodefaults: bool = False           # -nodefaults: no default serial port
    chardevs: list[ChardevDefinition] = field(default_factory=list)   # -chardev
    monitors: list[str] = field(default_factory=list)   # -monitor chardev specs
    qmp: list[str] = field(default_factory=list)        # -qmp chardev specs
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
        options = config.machine
        cpus = config.cpus
        serials = config.serials if options.isa_serial else []
        self.runstate = RunState(vcpus=cpus)
        if config.start_paused:
            self.runstate.pause(PRELAUNCH)
        self.bql = threading.RLock()   # the big lock: device state is touched under it
        self.clock = HostClock(lock=self.bql)
        self.pio = AddressSpace("io", 0x10000)
        self.mmio = AddressSpace("memory", 1 << 64)
        self.ram = allocate_ram(config.ram_size)
        self.layout = PcMemoryLayout(config.ram_size)
        self.serial_specs = serials
        self.irqchip = PcIrqchip(bql=self.bql, clock=self.clock, mmio=self.mmio, cpus=config.cpus,
                                 apicv=config.accel.apicv)
        self.line = self.irqchip.line
        self.ioapic, self.lapics = self.irqchip.ioapic, self.irqchip.lapics   # for the monitor
        self.platform = PcPlatform(pio=self.pio, clock=self.clock, line=self.line, ram_size=config.ram_size,
                                   request_reset=self.request_reset, rtc_base=config.rtc_base, mmio=self.mmio,
                                   hpet=options.hpet, minimal=options.type == "microvm", rtc=options.rtc)
        self.guest_memory = GuestMemory(self.ram, self.layout, on_write=self._guest_memory_written)
        self.chipset = None
        if options.pci:
            self.chipset = PcChipset(pio=self.pio, mmio=self.mmio, clock=self.clock, set_isa_irq=self.line.set_irq,
                                     set_gsi=self.line.set_irq, deliver_msi=self.irqchip.send_msi,
                                     request_reset=self.request_reset, power_off=self.request_shutdown,
                                     suspend=self._guest_suspend, acpi=options.acpi,
                                     com_ports=COM_PORTS[:len(serials)], memory=self.guest_memory)
        self.fw_cfg = pc_fw_cfg(self.guest_memory.read, self.guest_memory.write, config.ram_size, cpus,
                                kernel=read_kernel_file(config.kernel),
                                initrd=read_initrd(config.initrd) if config.initrd else None,
                                cmdline=config.cmdline if config.cmdline else None)
        for region in self.fw_cfg.regions:
            self.pio.add_region(region)
        self.cpuid_spec = config.cpu
        self.chardevs = []
        self.inputs = []          # (chardev, receive(data)) of device front ends besides COM1
        self.serials: list[Uart16550] = []
        self.devices = []
        self.drives: dict[str, Drive] = {}
        self.net = NetClients(self.bql)     # -netdev backends and the NICs on them
        self._virtio_mmio = None
        self.log = None
        self.vm = None
        self.vcpus = []
        self.loops = []                 # the VcpuLoop of each vCPU while running
        self.vcpu_threads: list[threading.Thread] = []
        self.events = EventBus()
        self.monitors = []              # (kind, chardev): "readline" (HMP) or "control" (QMP)
        # an ACPI power button's press(), if the machine has one
        self.power_button = self.chipset.pm.pm.press_power_button if self.chipset and self.chipset.pm else None
        self.exit_tracer = None
        self._defined_chardevs: dict[str, object] = {}   # -chardev id -> backend or multiplexer
        self._taken_chardevs: set[str] = set()
        self._reset_cause: Optional[str] = None
        self._resets_done = 0
        self._reset_done = threading.Condition()
        self.gdbstub = None
        try:
            for definition in config.chardevs:
                self._define_chardev(definition)
            self._add_serials(serials)
            for drive_spec in config.drives:
                self.drives[drive_spec.id] = open_drive(drive_spec, config.snapshot)
            for netdev_spec in config.netdevs:
                self.net.open(netdev_spec)
            for spec in config.devices:
                self._add_device(spec)
            self.net.warn_unused()
            if config.debugcon is not None:
                self._add_debugcon(config.debugcon)
            if self.chipset is not None:
                self.chipset.init_firmware(self.layout.low_top)
            self._load_ram()
            if config.log_file is not None:
                self.log = _open_log(config.log_file)
            for spec in config.monitors:
                self._add_monitor(spec, "readline")
            for spec in config.qmp:
                self._add_monitor(spec, "control")
            if config.gdb is not None:
                from devicemodel.gdbstub.server import GdbServer  # needs the kvm package
                self.gdbstub = GdbServer(self, config.gdb)
        except BaseException:
            self.close()
            raise

    def _load_ram(self) -> None:
        """What RAM holds at power-on: the firmware tables and the kernel."""
        config, options = self.config, self.config.machine
        self.tables = install_pc_firmware_tables(self.ram, cpus=config.cpus, hpet=options.hpet, acpi=options.acpi,
                                                 com_ports=COM_PORTS[:len(self.serial_specs)])
        extra = self._virtio_mmio.kernel_cmdline() if self._virtio_mmio is not None else ""
        self.boot = load_kernel(config.kernel, self.ram, config.cmdline, config.initrd, self.tables.rsdp_addr,
                                linux_cmdline_extra=extra)

    # -- character devices ---------------------------------------------------------------

    def _define_chardev(self, definition: ChardevDefinition) -> None:
        if definition.id in self._defined_chardevs:
            raise ConfigError(f"-chardev: attempt to add duplicate property 'id' ('{definition.id}')")
        backend = open_chardev(definition.spec, definition.id)
        self.chardevs.append(backend)
        self._defined_chardevs[definition.id] = MuxChardev(backend, definition.id) if definition.mux else backend

    def frontend_chardev(self, spec: str, label: str, monitor_on_mux: bool = False):
        """The backend a front end (serial port, monitor, debug console) writes to:
        ``chardev:ID`` (one front end each, unless multiplexed), ``mon:SPEC`` (a new
        multiplexer that also gets a monitor), or a new backend labelled ``label``."""
        kind, _, rest = spec.partition(":")
        if kind == "chardev":
            target = self._defined_chardevs.get(rest)
            if target is None:
                raise ConfigError(f"chardev '{rest}' not found")
            if isinstance(target, MuxChardev):
                return target.port()
            if rest in self._taken_chardevs:
                raise ConfigError(f"chardev '{rest}' is already in use (use mux=on to share it)")
            self._taken_chardevs.add(rest)
            return target
        if kind == "mon":
            backend = open_chardev(rest, f"{label}-base")
            self.chardevs.append(backend)
            mux = MuxChardev(backend, label)
            port = mux.port()
            self.monitors.append(("readline", mux.port()))
            return port
        backend = open_chardev(spec, label)
        self.chardevs.append(backend)
        return backend

    def _add_monitor(self, spec: str, mode: str) -> None:
        label = f"compat_monitor{len(self.monitors)}"
        self.monitors.append((mode, self.frontend_chardev(spec, label)))

    def all_chardevs(self) -> list:
        """Every backend with its label, for ``info chardev`` and ``query-chardev``."""
        seen, out = set(), []
        for chardev in [c for c in self.chardevs] + [c for _, c in self.monitors]:
            base = getattr(chardev, "mux", None) or chardev
            if id(base) not in seen:
                seen.add(id(base))
                out.append(chardev)
        return out
    def _add_serials(self, specs: list[str]) -> None:
        if len(specs) > len(COM_PORTS):
            raise ConfigError(f"-serial {specs[len(COM_PORTS)]}: too many serial ports "
                              f"(at most {len(COM_PORTS)})")
        for index, spec in enumerate(specs):
            if spec == "none":
                continue
            chardev = self.frontend_chardev(spec, f"serial{index}")
            uart = Uart16550(chardev, iobase=COM_PORTS[index], irq=self.line.irq_setter(COM_IRQS[index]),
                             name=f"serial{index}")
            self.pio.add_region(uart.region)
            self.serials.append(uart)

    def _plug_pci(self, device: PciDevice, spec: DeviceSpec) -> None:
        """A PCI -device goes where its ``addr`` says, else into the first free slot (00:02.0
        first, as in QEMU without its default VGA and NIC); the firmware set-up gives it
        addresses afterwards."""
        if self.chipset is None:
            raise ConfigError(f"-device {spec.arg}: No 'PCI' bus found for device '{spec.driver}'")
        bus = self.chipset.bus
        devfn = spec.props.get("addr", -1)
        try:
            if devfn >= 0:
                bus.add(device, devfn >> 3, devfn & 7)
            else:
                bus.add(device, bus.free_slot())
        except ValueError as e:
            raise ConfigError(f"-device {spec.arg}: {e}") from None
        self.devices.append(device)

    def add_isa_serial(self, chardev_id: str) -> Uart16550:
        """``-device isa-serial,chardev=ID``: a UART at the next free COM port."""
        if not chardev_id:
            raise ConfigError("-device isa-serial: Property 'isa-serial.chardev' is required")
        index = len(self.serials)
        if index >= len(COM_PORTS):
            raise ConfigError(f"-device isa-serial: too many serial ports (at most {len(COM_PORTS)})")
        chardev = self.frontend_chardev(f"chardev:{chardev_id}", f"serial{index}")
        uart = Uart16550(chardev, iobase=COM_PORTS[index], irq=self.line.irq_setter(COM_IRQS[index]),
                         name=f"serial{index}")
        self.serials.append(uart)
        return uart

    def _add_debugcon(self, spec: str) -> None:
        """QEMU's -debugcon: an isa-debugcon at port 0xe9 on a character device. QEMU
        creates it after the -device devices, so it covers pc-testdev's byte port 0xe9."""
        chardev = self.frontend_chardev(spec, "debugcon")
        self.devices.append(Debugcon(chardev))
        self.pio.add_region(self.devices[-1].region, overlap=True)

    def _add_device(self, spec: DeviceSpec) -> None:
        try:
            device = DEVICE_TYPES[spec.driver].create(self, spec.props)
            if isinstance(device, PciDevice):
                self._plug_pci(device, spec)
                return
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
        """The -chardev with that id for a device's ``chardev=`` property."""
        if chardev_id not in self._defined_chardevs:
            raise ConfigError(f"Property '{driver}.chardev' can't find value '{chardev_id}'")
        return self.frontend_chardev(f"chardev:{chardev_id}", driver)

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

    def _guest_suspend(self) -> None:
        error_report("guest asked for ACPI S3 (suspend to RAM), which pyhv does not support; ignored")

    def request_reset(self, hard: bool = False, cause: str = ev.GUEST_RESET,
                      what: str = "guest requested a system reset") -> bool:
        """Ask for a system reset (QEMU's qemu_system_reset_request); any thread may, a
        vCPU thread too: the vCPUs park at once and the main loop does the reset. With
        -no-reboot the VM shuts down instead (and this returns False)."""
        if self.config.no_reboot:
            if cause in ev.GUEST_CAUSES:
                error_report(f"{what}; " + ("pausing as -no-reboot -no-shutdown ask" if self.config.no_shutdown
                                           else "exiting as -no-reboot asks"))
            self.request_shutdown(cause)
            return False
        with self._reset_done:
            if self._reset_cause is not None:
                return True
            self._reset_cause = cause
        self._hold_vcpus()
        return True

    def system_reset(self, timeout: float = STOP_GRACE) -> bool:
        """The monitor's system_reset: request a reset and wait until it is done (or
        became a shutdown); False if it did not happen in time."""
        with self._reset_done:
            target = self._resets_done + 1
        if not self.request_reset(cause=ev.HOST_QMP_SYSTEM_RESET):
            return True
        with self._reset_done:
            return self._reset_done.wait_for(
                lambda: self._resets_done >= target or self.runstate.stop_requested, timeout)

    def _hold_vcpus(self) -> None:
        self.runstate.hold()
        with self.line.bql:
            self.line.wake_all()
        self.kick_all()

    def _do_reset(self) -> None:
        """The main loop's half of a reset: the vCPUs are parked (or parking)."""
        cause = self._reset_cause
        if not self.runstate.wait_parked(STOP_GRACE):
            return                                 # retried on the main loop's next round
        with self.bql:
            for vcpu in self.vcpus:
                finish_pending_io(vcpu)
            reset_devices(devices_of(self.pio, self.mmio))
            self.irqchip.system_reset()
            if self.chipset is not None:
                self.chipset.init_firmware(self.layout.low_top)   # the firmware's PCI set-up runs again
            clear_ram(self.ram)
            try:
                self._load_ram()
            except PyhvError as e:
                error_report(f"system reset: {e}")
                self.request_exit(1)
            self.vm.guest_memory_written(0, self.layout.low_top)
            if self.layout.high_size:
                self.vm.guest_memory_written(1 << 32, self.layout.high_size)
            self.vm.flush_tlbs()
            from devicemodel.cpu_log import format_cpu_reset  # needs the kvm package
            from devicemodel.entry_state import apply_entry_state
            for index, vcpu in enumerate(self.vcpus):
                if "cpu_reset" in self.config.log_items:
                    self.write_log(format_cpu_reset(vcpu, index))
                reset_vcpu(vcpu, boot_processor=index == 0)
            apply_entry_state(self.vcpus[0], self.boot.entry)
        self.events.emit("RESET", {"guest": cause in ev.GUEST_CAUSES, "reason": cause})
        with self._reset_done:
            self._reset_cause = None
            self._resets_done += 1
            self._reset_done.notify_all()
        self.runstate.release()

    def request_shutdown(self, cause: str = ev.GUEST_SHUTDOWN) -> None:
        """The machine shuts down: the VM ends with status 0, or with -no-shutdown it
        pauses (run state "shutdown") unless the user quits or sends a signal, as QEMU's
        main loop has it."""
        self.events.emit("SHUTDOWN", {"guest": cause in ev.GUEST_CAUSES, "reason": cause})
        if self.config.no_shutdown and cause not in (ev.HOST_QMP_QUIT, ev.HOST_SIGNAL):
            if cause == ev.GUEST_SHUTDOWN:
                error_report("guest powered off; the VM stays paused as -no-shutdown asks")
            self.runstate.pause(SHUTDOWN)
            self._hold_vcpus()
            self.runstate.release()
            self.events.emit("STOP")
            return
        self.request_exit(0)

    def system_powerdown(self) -> None:
        """The monitor's system_powerdown: press the ACPI power button. PyhvError when
        the machine has none."""
        self.events.emit("POWERDOWN")
        if self.power_button is None:
            raise PyhvError("the machine has no ACPI power button (no ACPI PM device): "
                            "the guest cannot be asked to power down")
        with self.bql:
            self.power_button()

    def quit(self) -> None:
        """The monitor's quit."""
        self.events.emit("SHUTDOWN", {"guest": False, "reason": ev.HOST_QMP_QUIT})
        self.request_exit(0)

    def write_log(self, text: str) -> None:
        """Text for the -d log (the -D file, else stderr)."""
        out = self.log or sys.stderr
        out.write(text)
        out.flush()

    def set_exit_trace(self, enabled: bool) -> None:
        """Trace every VM exit into the log (``-d exits``, ``trace exits on|off``)."""
        from devicemodel.exit_trace import ExitTracer  # needs the kvm package
        if enabled and self.exit_tracer is None:
            self.exit_tracer = ExitTracer(self.log or sys.stderr)
        elif not enabled:
            self.exit_tracer = None
        for vcpu in self.vcpus:
            vcpu.exit_hook = self.exit_tracer

    def interrupt_controllers(self) -> list:
        """What ``info pic`` shows: objects with ``monitor_info() -> str``."""
        return [self.line.pic, self.ioapic]

    def local_apic(self, index: int):
        """vCPU ``index``'s local APIC for ``info lapic`` (``monitor_info()``), or None."""
        return self.lapics[index] if index < len(self.lapics) else None

    @contextlib.contextmanager
    def vcpus_held(self):
        """A context in which every vCPU is parked outside KVM_RUN (QEMU's
        pause_all_vcpus), so its state can be read and written; the run state is kept."""
        self._hold_vcpus()
        try:
            if not self.runstate.wait_parked(STOP_GRACE):
                raise PyhvError("the vCPUs did not stop in time")
            yield self
        finally:
            self.runstate.release()

    def power_on(self, kvm=None) -> None:
        """Create the VM and its vCPU, ready to enter the kernel."""
        kvm = open_kvm() if kvm is None else kvm
        from devicemodel.entry_state import apply_entry_state  # needs the kvm package
        from kvm.capabilities import KVM_CAP_COALESCED_PIO
        from kvm.constants import KVM_MP_STATE_INIT_RECEIVED

        cpuid = None if self.cpuid_spec is None else build_cpuid(self.cpuid_spec, kvm.get_supported_cpuid())
        self.vm = kvm.create_vm()
        self.vm.create_irqchip(self.irqchip)
        # RAM below the PCI hole at 0, the rest of the buffer at 4 GiB (QEMU's pc split)
        low, ram = self.layout.low_top, memoryview(self.ram)
        self.vm.set_user_memory_region(slot=0, guest_phys_addr=0, memory_size=low,
                                       userspace_addr=ram[:low], flags=0)
        if self.layout.high_size:
            self.vm.set_user_memory_region(slot=1, guest_phys_addr=1 << 32, memory_size=self.layout.high_size,
                                           userspace_addr=ram[low:], flags=0)
        self.vcpus = [self.vm.create_vcpu(index) for index in range(self.config.cpus)]
        if self.vm.check_extension(KVM_CAP_COALESCED_PIO):
            for uart in self.serials:
                uart.set_tx_coalescing(functools.partial(self._coalesce_port, uart.iobase))
        cpuid = kvm.get_supported_cpuid() if cpuid is None else cpuid
        self.irqchip.attach(self.vm, self.vcpus, cpuid)
        if "exits" in self.config.log_items:
            self.set_exit_trace(True)
        if "int" in self.config.log_items:
            from devicemodel.cpu_log import InterruptLog  # needs the kvm package
            interrupt_log = InterruptLog(self.write_log)
            for vcpu in self.vcpus:
                vcpu.set_event_trace(interrupt_log)
        apply_entry_state(self.vcpus[0], self.boot.entry)
        for ap in self.vcpus[1:]:
            ap.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)

    def _coalesce_port(self, port: int, on: bool) -> None:
        (self.vm.register_coalesced_mmio if on else self.vm.unregister_coalesced_mmio)(port, 1, pio=True)

    def run(self) -> int:
        """Run until the VM stops; the exit status (isa-debug-exit's, else 0; 1 on failures)."""
        if not self.vcpus:
            self.power_on()
        from devicemodel.vcpu_loop import VcpuLoop  # needs the kvm package

        on_debug = self.gdbstub.debug_exit if self.gdbstub is not None else None
        loops = [VcpuLoop(vcpu, self.pio, self.irqchip.memory(index), self.runstate,
                          no_reboot=self.config.no_reboot, index=index, bql=self.bql,
                          interrupts=self.irqchip.cpus[index], msrs=self.irqchip.msrs(index),
                          request_reset=self.request_reset, request_shutdown=self.request_shutdown,
                          on_debug=on_debug,
                          cpu_reset_log=self.write_log if "cpu_reset" in self.config.log_items else None)
                 for index, vcpu in enumerate(self.vcpus)]
        self.loops = loops
        if self.gdbstub is not None:
            self.gdbstub.start()
        self.started = started = time.monotonic()
        with _signals_stop(self):
            self.clock.start()
            self._start_monitors()
            self._start_inputs()
            self.vcpu_threads = threads = [loop.start() for loop in loops]
            stopped = self._wait(threads)
            self.clock.stop()
        elapsed = time.monotonic() - started
        if stopped and "exits-summary" in self.config.log_items:
            self._print_exit_stats(elapsed)
        status = self.runstate.exit_status
        return 0 if status is None else status & 0xFF

    def _start_inputs(self) -> None:
        """Bytes arriving on a serial port's backend reach its UART as fast as the guest
        empties the receive FIFO (QEMU's can_receive), so that a pasted line is not lost
        to overruns; bytes for the other front ends that read (virtio console ports)
        reach them."""
        inputs = [(uart.chardev, self._paced(uart)) for uart in self.serials]
        inputs += [(chardev, self._locked(receive)) for chardev, receive in self.inputs]
        for chardev, deliver in inputs:
            start = getattr(chardev, "start_input", None)
            if start is not None:
                start(deliver, quit=lambda: self.request_exit(0))
        self.net.start()

    def _paced(self, uart):
        def deliver(data: bytes) -> None:
            while data and not self.runstate.stop_requested:
                with self.bql:
                    room = uart.can_receive()
                    uart.receive(data[:room])
                data = data[room:]
                if data:
                    time.sleep(SERIAL_INPUT_POLL)
        return deliver

    def _locked(self, receive):
        def deliver(data: bytes) -> None:
            with self.bql:
                receive(data)
        return deliver

    def _start_monitors(self) -> None:
        from devicemodel.monitor.frontend import start_monitor  # needs the kvm package
        from devicemodel.qmp.server import QmpServer
        for mode, chardev in self.monitors:
            if mode == "control":
                QmpServer(self, chardev).start()
            else:
                start_monitor(self, chardev)

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
        (False if the VM was already paused or a vCPU did not park in time). QMP hears
        the STOP event."""
        if not self.runstate.pause(reason):
            return False
        with self.line.bql:
            self.line.wake_all()
        self.kick_all()
        parked = self.runstate.wait_parked(timeout)
        self.events.emit("STOP")
        return parked

    def resume(self) -> bool:
        """QEMU's vm_start(): let the vCPUs run; False if the VM was not paused. QMP
        hears the RESUME event."""
        if not self.runstate.resume():
            return False
        self.events.emit("RESUME")
        return True

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
                if self._reset_cause is not None and not self.runstate.stop_requested:
                    self._do_reset()
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
        self.events.emit("SHUTDOWN", {"guest": False, "reason": ev.HOST_SIGNAL})
        self.request_exit(0)

    def close(self) -> None:
        self.exit_tracer = None
        for vcpu in self.vcpus:
            vcpu.exit_hook = None
        if self.gdbstub is not None:
            self.gdbstub.close()
            self.gdbstub = None
        for chardev in self.chardevs:
            chardev.close()
        self.chardevs = []
        for drive in self.drives.values():
            drive.close()
        self.drives = {}
        self.net.close()
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
