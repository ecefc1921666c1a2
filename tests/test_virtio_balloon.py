"""virtio-balloon on virtio-pci (INTx only, as QEMU's): the target the host sets and the
configuration change interrupt, inflated pages really given back to the host (they read
as zeros), the guest's ``actual`` and the BALLOON_CHANGE report, the statistics queue,
and the monitor's balloon commands (HMP balloon / info balloon, QMP balloon /
query-balloon) on a machine with and without a balloon."""

import mmap
import struct

import pytest

import virtio_driver as vd
from devicemodel.clock import VirtualClock
from devicemodel.guest_memory import GuestMemory
from devicemodel.virtio.balloon import F_DEFLATE_ON_OOM, F_STATS_VQ, VirtioBalloon
from devicemodel.virtio.pci import CLASS_OTHERS, VirtioPci
from devicemodel.virtio.spec import F_VERSION_1, STATUS_FEATURES_OK, bit

MiB = 1 << 20
RAM = 4 * MiB
SLOT = 5


class Balloon:
    def __init__(self, **kw):
        self.ram = mmap.mmap(-1, RAM, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)   # as the machine's
        self.memory = GuestMemory(self.ram)
        self.board = vd.PciBoard()
        self.changes = []
        self.clock = VirtualClock()
        self.device = VirtioBalloon(self.memory, RAM, on_actual_change=self.changes.append, clock=self.clock, **kw)
        self.pci = self.board.plug(VirtioPci(self.device, vectors=0, class_code=CLASS_OTHERS,
                                             name="virtio-balloon-pci"), SLOT)
        self.drv = vd.PciDriver(self.board, SLOT)
        self.alloc = vd.Allocator(0x100000)

    @property
    def intx(self):
        return self.board.irqs.levels[self.drv.config(0x3C, 1)]

    def start(self, features=bit(F_VERSION_1) | bit(F_STATS_VQ)):
        assert self.drv.negotiate(features) & STATUS_FEATURES_OK
        self.queues = [vd.DriverQueue(self.memory, self.alloc, size=8) for _ in range(3)]
        for index, queue in enumerate(self.queues):
            self.drv.setup_queue(index, queue)
        self.drv.driver_ok()

    def pfn_buffer(self, pfns):
        addr = self.alloc(4 * len(pfns), 4)
        self.memory.write(addr, struct.pack(f"<{len(pfns)}I", *pfns))
        return addr, 4 * len(pfns), False


@pytest.fixture
def balloon():
    return Balloon()


def test_identity_features_and_config(balloon):
    drv = balloon.drv
    assert drv.config(0) == 0x10451AF4 and drv.config(0x0A, 2) == 0x00FF
    assert drv.config(0x34, 1) == 0x84                          # no MSI-X: INTx only, as QEMU's
    assert drv.device_features() == bit(F_VERSION_1) | bit(28) | bit(29) | bit(40) | bit(F_STATS_VQ)
    assert Balloon(deflate_on_oom=True).drv.device_features() & bit(F_DEFLATE_ON_OOM)
    assert drv.read(0x12, 2) == 3 and drv.read(0x18, 2) == 128
    assert drv.read_structure(4, 0, 4) == 0 and drv.read_structure(4, 4, 4) == 0
    assert drv.read_structure(4, 8, 4) == 0xFFFFFFFF             # the configuration is 8 bytes


def test_target_and_config_interrupt(balloon):
    balloon.device.set_target(3 * MiB)
    assert balloon.intx == 0                                     # no driver yet: nothing to tell
    balloon.start()
    balloon.device.set_target(RAM - 256 * 4096)
    assert balloon.drv.read_structure(4, 0, 4) == 256 and balloon.intx == 1
    assert balloon.drv.isr() == 2 and balloon.intx == 0
    balloon.device.set_target(8 * RAM)                           # more than there is: all of it
    assert balloon.drv.read_structure(4, 0, 4) == 0
    balloon.device.set_target(0)                                 # ignored, as by QEMU
    assert balloon.drv.read_structure(4, 0, 4) == 0


def test_inflated_pages_go_back_to_the_host(balloon):
    balloon.start()
    for pfn in (0x80, 0x81, 0x90):
        balloon.memory.write(pfn << 12, b"\xAA" * 4096)
    balloon.queues[0].add([balloon.pfn_buffer([0x80, 0x90, 0x10000000])])    # the last is not RAM
    balloon.drv.notify(0)
    assert balloon.queues[0].take_used() == [(0, 0)]
    assert balloon.memory.read(0x80 << 12, 4096) == bytes(4096)
    assert balloon.memory.read(0x90 << 12, 4096) == bytes(4096)
    assert balloon.memory.read(0x81 << 12, 4096) == b"\xAA" * 4096
    assert balloon.device.discarded == 2 and balloon.intx == 1
    balloon.queues[1].add([balloon.pfn_buffer([0x80])])
    balloon.drv.notify(1)
    assert balloon.queues[1].take_used() == [(0, 0)]


def test_actual_from_the_guest(balloon):
    balloon.start()
    balloon.drv.write_structure(4, 4, 512, 4)
    assert balloon.device.actual == 512 and balloon.device.actual_bytes == RAM - 2 * MiB
    assert balloon.changes == [RAM - 2 * MiB]
    balloon.drv.write_structure(4, 4, 512, 4)
    balloon.drv.write_structure(4, 0, 7, 4)                      # num_pages is the host's
    assert balloon.changes == [RAM - 2 * MiB] and balloon.device.num_pages == 0


def test_statistics_queue(balloon):
    device = Balloon(stats_interval=2)
    device.start()
    stats = device.alloc(20)
    device.memory.write(stats, struct.pack("<HQHQ", 4, 12345, 5, RAM))
    device.queues[2].add([(stats, 20, False)])
    device.drv.notify(2)
    assert device.device.stats == {"stat-free-memory": 12345, "stat-total-memory": RAM}
    assert device.queues[2].take_used() == []                    # kept until more are wanted
    device.clock.advance(2 * 10 ** 9)                            # the polling interval
    assert device.queues[2].take_used() == [(0, 0)] and device.intx == 1
    assert not device.device.request_stats()                     # the buffer is the guest's again


def test_monitor_commands(tmp_path):
    from devicemodel.cli import parse_command_line
    from devicemodel.machine import Machine
    from devicemodel.monitor.hmp import Monitor
    from devicemodel.qmp import commands
    from test_multiboot_loader import simple_kernel
    kernel = tmp_path / "kernel.elf"
    kernel.write_bytes(simple_kernel())

    class Session:
        def __init__(self, machine):
            self.machine = machine

    def hmp(machine, line):
        out = []
        Monitor(machine, out.append).handle_line(line)
        return "".join(out)

    machine = Machine(parse_command_line(["-kernel", str(kernel), "-m", "256"]))
    try:
        assert hmp(machine, "info balloon") == "Error: No balloon device has been activated\n"
        assert hmp(machine, "balloon 100") == "Error: No balloon device has been activated\n"
        with pytest.raises(commands.QmpError) as e:
            commands.COMMANDS["query-balloon"].handler(Session(machine), {})
        assert e.value.error_class == "DeviceNotActive"
    finally:
        machine.close()
    machine = Machine(parse_command_line(["-kernel", str(kernel), "-m", "256", "-device", "virtio-balloon-pci"]))
    try:
        balloon = machine.chipset.bus.devices[2 << 3].device
        assert hmp(machine, "info balloon") == "balloon: actual=256\n"
        assert hmp(machine, "balloon 200") == "" and balloon.num_pages == 56 * MiB // 4096
        assert hmp(machine, "balloon 1G") == "" and balloon.num_pages == 0
        assert hmp(machine, "balloon 0") == "Error: Parameter 'target' expects a size\n"
        assert hmp(machine, "balloon x").startswith("invalid size")
        commands.COMMANDS["balloon"].handler(Session(machine), {"value": 128 * MiB})
        assert balloon.num_pages == 128 * MiB // 4096
        events = []
        machine.events.subscribe(events.append)
        balloon.config_written(4, struct.pack("<I", balloon.num_pages))
        assert commands.COMMANDS["query-balloon"].handler(Session(machine), {}) == {"actual": 128 * MiB}
        assert hmp(machine, "info balloon") == "balloon: actual=128\n"
        assert [(e["event"], e["data"]) for e in events] == [("BALLOON_CHANGE", {"actual": 128 * MiB})]
    finally:
        machine.close()


def test_only_one_balloon(tmp_path, capsys):
    from devicemodel.cli import main
    from test_multiboot_loader import simple_kernel
    kernel = tmp_path / "kernel.elf"
    kernel.write_bytes(simple_kernel())
    assert main(["-kernel", str(kernel), "-device", "virtio-balloon-pci", "-device", "virtio-balloon"]) == 1
    assert "Only one balloon device is supported" in capsys.readouterr().err
