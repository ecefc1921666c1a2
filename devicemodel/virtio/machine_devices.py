"""Creating the virtio devices of ``-device`` on a machine, as QEMU spells them:
``virtio-blk-device``, ``virtio-rng-device``, ``virtio-serial-device``,
``virtio-balloon-device`` and ``virtio-net-device`` on a virtio-mmio transport; ``virtio-blk-pci``,
``virtio-rng-pci``, ``virtio-serial-pci``, ``virtio-balloon-pci`` and ``virtio-net-pci`` on virtio-pci (the machine puts the PCI function in its slot); and the
``virtconsole``/``virtserialport`` ports of a virtio-serial device. Each ``create_*``
takes the machine and the property values and returns what goes in the machine's device
list.

A virtio-pci device's ``vectors`` default is QEMU's: one per queue plus one for
configuration changes for virtio-blk (whose ``num-queues`` default is the number of
vCPUs, as QEMU's), none for virtio-balloon (INTx only, as QEMU's), 3 for virtio-net
(its two queues and configuration changes), 2 for the others.
There is at most one balloon (``balloon_of(machine)``), as in QEMU."""

from __future__ import annotations

from typing import Optional

from devicemodel.chardev import NullChardev
from devicemodel.errors import ConfigError, PyhvError
from devicemodel.net.clients import parse_mac
from devicemodel.virtio.balloon import VirtioBalloon
from devicemodel.virtio.blk import VirtioBlk
from devicemodel.virtio.net import VirtioNet
from devicemodel.virtio.pci import (CLASS_COMMUNICATION_OTHER, CLASS_NETWORK_ETHERNET, CLASS_OTHERS, CLASS_STORAGE_SCSI,
                                    VirtioPci)
from devicemodel.virtio.rng import VirtioRng
from devicemodel.virtio.serial import SerialPort, VirtioSerial
from devicemodel.virtio.spec import QEMU_QUEUE_MAX_SIZE

AUTO_PORT_NR = 0xFFFFFFFF      # QEMU's VIRTIO_CONSOLE_BAD_ID: the lowest free number
VECTORS_UNSPECIFIED = 0xFFFFFFFF   # QEMU's DEV_NVECTORS_UNSPECIFIED: the device's default
AUTO_NUM_QUEUES = 0xFFFF           # QEMU's VIRTIO_BLK_AUTO_NUM_QUEUES: one per vCPU
DEFAULT_VECTORS = 2


def virtio_pci(device, props, driver: str, class_code: int, default_vectors: int = DEFAULT_VECTORS) -> VirtioPci:
    """``device`` on a virtio-pci function, with the transport's properties."""
    if props["disable-legacy"] == "off":
        raise ConfigError("disable-legacy=off is not supported: pyhv's virtio-pci devices are "
                          "modern only (VIRTIO 1.x), as with disable-legacy=on")
    if props["disable-modern"]:
        raise ConfigError("device cannot work as neither modern nor legacy mode is enabled "
                          "(pyhv's virtio-pci devices are modern only)")
    vectors = default_vectors if props["vectors"] == VECTORS_UNSPECIFIED else props["vectors"]
    return VirtioPci(device, vectors=vectors, class_code=class_code, name=driver)


def _virtio_blk(machine, props, driver: str, num_queues: int = 1) -> VirtioBlk:
    if props["drive"] is None:
        raise ConfigError("drive property not set")
    queue_size = props["queue-size"]
    if not 2 < queue_size <= QEMU_QUEUE_MAX_SIZE or queue_size & (queue_size - 1):
        raise ConfigError(f"invalid queue-size property ({queue_size}), must be a power of 2 "
                          f"between 4 and {QEMU_QUEUE_MAX_SIZE}")
    drive = machine.claim_drive(props["drive"], driver)
    return VirtioBlk(machine.guest_memory, drive, serial=props["serial"], queue_size=queue_size,
                     num_queues=num_queues)


def create_virtio_blk(machine, props):
    return machine.virtio_mmio_bus().plug(_virtio_blk(machine, props, "virtio-blk-device"), "virtio-blk-device")


def create_virtio_blk_pci(machine, props):
    num_queues = props["num-queues"]
    if num_queues == AUTO_NUM_QUEUES:
        num_queues = min(machine.config.cpus, QEMU_QUEUE_MAX_SIZE)
    if not 0 < num_queues <= QEMU_QUEUE_MAX_SIZE:
        raise ConfigError(f"num-queues property must be larger than 0 and at most {QEMU_QUEUE_MAX_SIZE}")
    device = _virtio_blk(machine, props, "virtio-blk-pci", num_queues)
    return virtio_pci(device, props, "virtio-blk-pci", CLASS_STORAGE_SCSI, default_vectors=num_queues + 1)


def balloon_of(machine) -> Optional[VirtioBalloon]:
    """The machine's balloon device, if it has one."""
    for device in machine.devices:
        if isinstance(getattr(device, "device", None), VirtioBalloon):
            return device.device
    return None


class NoBalloon(PyhvError):
    """QEMU's DeviceNotActive error of the balloon commands."""


def active_balloon(machine) -> VirtioBalloon:
    """The balloon for the monitor's commands; NoBalloon as QEMU says it."""
    balloon = balloon_of(machine)
    if balloon is None:
        raise NoBalloon("No balloon device has been activated")
    return balloon


def set_balloon_target(machine, target: int) -> None:
    """QEMU's balloon command: the guest should keep ``target`` bytes of RAM."""
    balloon = active_balloon(machine)
    if target <= 0:
        raise PyhvError("Parameter 'target' expects a size")
    with machine.bql:
        balloon.set_target(target)


def _virtio_balloon(machine, props) -> VirtioBalloon:
    if balloon_of(machine) is not None:
        raise ConfigError("Only one balloon device is supported")
    return VirtioBalloon(machine.guest_memory, machine.config.ram_size, deflate_on_oom=props["deflate-on-oom"],
                         on_actual_change=lambda actual: machine.events.emit("BALLOON_CHANGE", {"actual": actual}),
                         clock=machine.clock, stats_interval=props["guest-stats-polling-interval"])


def create_virtio_balloon(machine, props):
    return machine.virtio_mmio_bus().plug(_virtio_balloon(machine, props), "virtio-balloon-device")


def create_virtio_balloon_pci(machine, props):
    props = dict(props, vectors=0)
    return virtio_pci(_virtio_balloon(machine, props), props, "virtio-balloon-pci", CLASS_OTHERS)


def create_virtio_rng(machine, props):
    return machine.virtio_mmio_bus().plug(VirtioRng(machine.guest_memory), "virtio-rng-device")


def create_virtio_rng_pci(machine, props):
    return virtio_pci(VirtioRng(machine.guest_memory), props, "virtio-rng-pci", CLASS_OTHERS)


def _virtio_serial(machine, props) -> VirtioSerial:
    return VirtioSerial(machine.guest_memory, max_ports=props["max_ports"], emergency_write=props["emergency-write"])


def create_virtio_serial(machine, props):
    return machine.virtio_mmio_bus().plug(_virtio_serial(machine, props), "virtio-serial-device")


def create_virtio_serial_pci(machine, props):
    return virtio_pci(_virtio_serial(machine, props), props, "virtio-serial-pci", CLASS_COMMUNICATION_OTHER)


def _virtio_net(machine, props, driver: str) -> VirtioNet:
    mac = machine.net.default_mac() if props["mac"] is None else parse_mac(props["mac"])
    if mac is None:
        raise ConfigError(f"Property '{driver}.mac' doesn't take value '{props['mac']}'")
    netdev = None if props["netdev"] is None else machine.net.claim(props["netdev"], driver)
    device = VirtioNet(machine.guest_memory, mac, mergeable=props["mrg_rxbuf"])
    machine.net.add_nic(device, driver, netdev)
    return device


def create_virtio_net(machine, props):
    return machine.virtio_mmio_bus().plug(_virtio_net(machine, props, "virtio-net-device"), "virtio-net-device")


def create_virtio_net_pci(machine, props):
    device = _virtio_net(machine, props, "virtio-net-pci")
    return virtio_pci(device, props, "virtio-net-pci", CLASS_NETWORK_ETHERNET, default_vectors=3)


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
