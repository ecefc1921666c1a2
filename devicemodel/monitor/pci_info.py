"""The PCI bus as the monitor shows it: ``info pci`` (QEMU's hmp_info_pci) and the PCI
part of ``info qtree`` (QEMU's pcibus_dev_print), with QEMU's class names."""

from __future__ import annotations

from devicemodel.pci import regs

MASK64 = (1 << 64) - 1

# QEMU's pci_class_descriptions, the entries its machines' devices use
CLASS_NAMES = {
    0x0100: "SCSI controller", 0x0101: "IDE controller", 0x0106: "SATA controller",
    0x0180: "Storage controller", 0x0200: "Ethernet controller", 0x0280: "Network controller",
    0x0300: "VGA controller", 0x0380: "Display controller", 0x0401: "Audio controller",
    0x0600: "Host bridge", 0x0601: "ISA bridge", 0x0604: "PCI bridge", 0x0680: "Bridge",
    0x0700: "Serial port", 0x0701: "Parallel port", 0x0c03: "USB controller",
}


def _functions(bus):
    return sorted(bus.devices.items())


def _bar_range(device, bar) -> tuple[int, int]:
    """The BAR's address as QEMU reports it (all-ones while unmapped) and its last byte."""
    address = bar.mapped_at if bar.mapped_at is not None else MASK64
    return address, (address + bar.size - 1) & MASK64


def pci_lines(bus) -> list[str]:
    lines = []
    for devfn, device in _functions(bus):
        class_code = device.get(regs.CLASS_DEVICE, 2)
        lines.append(f"  Bus  0, device {devfn >> 3:3d}, function {devfn & 7}:")
        lines.append(f"    {CLASS_NAMES.get(class_code, f'Class {class_code:04d}')}: PCI device "
                     f"{device.get(regs.VENDOR_ID, 2):04x}:{device.get(regs.DEVICE_ID, 2):04x}")
        lines.append(f"      PCI subsystem {device.get(regs.SUBSYSTEM_VENDOR_ID, 2):04x}:"
                     f"{device.get(regs.SUBSYSTEM_ID, 2):04x}")
        pin = device.config[regs.INTERRUPT_PIN]
        if pin:
            lines.append(f"      IRQ {device.config[regs.INTERRUPT_LINE]}, pin {chr(ord('A') + pin - 1)}")
        for bar in device.bars:
            if bar is None:
                continue
            first, last = _bar_range(device, bar)
            if bar.is_io:
                lines.append(f"      BAR{bar.index}: I/O at 0x{first:04x} [0x{last:04x}].")
            else:
                kind = f"{64 if bar.is_64 else 32} bit{' prefetchable' if bar.flags & regs.BAR_MEM_PREFETCH else ''}"
                lines.append(f"      BAR{bar.index}: {kind} memory at 0x{first:08x} [0x{last:08x}].")
        lines.append('      id ""')
    return lines


def qtree_pci_lines(bus, indent: int) -> list[str]:
    """The host bridge's bus pci.0 and the functions on it, ``indent`` spaces in."""
    pad = " " * indent
    lines = [f"{pad}bus: pci.0", f"{pad}  type PCI"]
    for devfn, device in _functions(bus):
        class_code = device.get(regs.CLASS_DEVICE, 2)
        name = CLASS_NAMES.get(class_code, f"Class {class_code:04x}")
        lines.append(f'{pad}  dev: {device.name}, id ""')
        virtio = getattr(device, "device", None)
        if getattr(device, "vectors", 0):
            lines.append(f"{pad}    vectors = {device.vectors} ({device.vectors:#x})")
        lines.append(f"{pad}    addr = {devfn >> 3:02x}.{devfn & 7}")
        lines.append(f"{pad}    class {name}, addr 00:{devfn >> 3:02x}.{devfn & 7}, pci id "
                     f"{device.get(regs.VENDOR_ID, 2):04x}:{device.get(regs.DEVICE_ID, 2):04x} (sub "
                     f"{device.get(regs.SUBSYSTEM_VENDOR_ID, 2):04x}:{device.get(regs.SUBSYSTEM_ID, 2):04x})")
        for bar in device.bars:
            if bar is not None:
                first, last = _bar_range(device, bar)
                lines.append(f"{pad}    bar {bar.index}: {'i/o' if bar.is_io else 'mem'} at 0x{first:x} [0x{last:x}]")
        if hasattr(device, "qtree_lines"):                 # the IDE function's buses and disks
            lines += device.qtree_lines(f"{pad}    ")
        if virtio is not None:
            lines += [f"{pad}    bus: virtio-bus", f"{pad}      type virtio-pci-bus",
                      f'{pad}      dev: {virtio.name}-device, id ""']
    return lines
