"""Creating the virtio devices of ``-device`` on a machine, as QEMU spells them:
``virtio-blk-device``, ``virtio-rng-device``, ``virtio-serial-device`` and
``virtio-net-device`` on a virtio-mmio transport, and the ``virtconsole``/``virtserialport`` ports of a
virtio-serial device. Each ``create_*`` takes the machine and the property values and
returns what goes in the machine's device list."""

from __future__ import annotations

from devicemodel.chardev import NullChardev
from devicemodel.errors import ConfigError
from devicemodel.net.clients import parse_mac
from devicemodel.virtio.blk import VirtioBlk
from devicemodel.virtio.net import VirtioNet
from devicemodel.virtio.rng import VirtioRng
from devicemodel.virtio.serial import SerialPort, VirtioSerial
from devicemodel.virtio.spec import QEMU_QUEUE_MAX_SIZE

AUTO_PORT_NR = 0xFFFFFFFF      # QEMU's VIRTIO_CONSOLE_BAD_ID: the lowest free number


def create_virtio_blk(machine, props):
    if props["drive"] is None:
        raise ConfigError("drive property not set")
    queue_size = props["queue-size"]
    if not 2 < queue_size <= QEMU_QUEUE_MAX_SIZE or queue_size & (queue_size - 1):
        raise ConfigError(f"invalid queue-size property ({queue_size}), must be a power of 2 "
                          f"between 4 and {QEMU_QUEUE_MAX_SIZE}")
    drive = machine.claim_drive(props["drive"], "virtio-blk-device")
    device = VirtioBlk(machine.guest_memory, drive, serial=props["serial"], queue_size=queue_size)
    return machine.virtio_mmio_bus().plug(device, "virtio-blk-device")


def create_virtio_rng(machine, props):
    return machine.virtio_mmio_bus().plug(VirtioRng(machine.guest_memory), "virtio-rng-device")


def create_virtio_serial(machine, props):
    device = VirtioSerial(machine.guest_memory, max_ports=props["max_ports"],
                          emergency_write=props["emergency-write"])
    return machine.virtio_mmio_bus().plug(device, "virtio-serial-device")


def create_virtio_net(machine, props):
    driver = "virtio-net-device"
    mac = machine.net.default_mac() if props["mac"] is None else parse_mac(props["mac"])
    if mac is None:
        raise ConfigError(f"Property '{driver}.mac' doesn't take value '{props['mac']}'")
    netdev = None if props["netdev"] is None else machine.net.claim(props["netdev"], driver)
    device = VirtioNet(machine.guest_memory, mac, mergeable=props["mrg_rxbuf"])
    transport = machine.virtio_mmio_bus().plug(device, driver)
    machine.net.add_nic(device, driver, netdev)
    return transport


def _create_port(machine, props, driver: str, is_console: bool):
    buses = [d.device for d in machine.devices if isinstance(getattr(d, "device", None), VirtioSerial)]
    if not buses:
        raise ConfigError(f"No 'virtio-serial-bus' bus found for device '{driver}'")
    chardev = NullChardev() if props["chardev"] is None else machine.chardev_by_id(props["chardev"], driver)
    port = SerialPort(chardev, name=props["name"], is_console=is_console)
    buses[-1].add_port(port, None if props["nr"] == AUTO_PORT_NR else props["nr"])
    machine.add_input(chardev, port.receive)
    return port


def create_virtconsole(machine, props):
    return _create_port(machine, props, "virtconsole", is_console=True)


def create_virtserialport(machine, props):
    return _create_port(machine, props, "virtserialport", is_console=False)
