"""The ``info`` subcommands: what the machine, its devices and its vCPUs look like, in
QEMU's formats where QEMU has the command (hmp-commands-info.hx)."""

from __future__ import annotations

from devicemodel.monitor.memory import read_physical
from devicemodel.monitor.paging import PG_RW, PG_USER, leaves, paging_mode
from devicemodel.monitor.parser import MonitorError
from devicemodel.runstate import RUNNING

PAGE_FLAGS = ((1 << 63, "X"), (0x100, "G"), (0x80, "P"), (0x40, "D"), (0x20, "A"), (0x10, "C"),
              (0x8, "T"), (0x4, "U"), (0x2, "W"))


def info_version(mon, args) -> str:
    from devicemodel.cli import version_text
    return version_text().splitlines()[0].replace("pyhv version ", "") + " (pyhv)"


def info_status(mon, args) -> str:
    status = mon.machine.runstate.status
    if status == RUNNING:
        return "VM status: running"
    return "VM status: paused" + ("" if status == "paused" else f" ({status})")


def info_name(mon, args) -> str:
    return getattr(mon.machine.config, "name", None) or ""


def info_kvm(mon, args) -> str:
    return "kvm support: enabled"


def info_cpus(mon, args) -> str:
    threads = mon.machine.vcpu_threads
    lines = []
    for index in range(len(mon.machine.vcpus)):
        tid = threads[index].native_id if index < len(threads) else 0
        lines.append(f"{'*' if index == mon.cpu_index else ' '} CPU #{index}: thread_id={tid}")
    return "\n".join(lines)


def info_registers(mon, args) -> str:
    from devicemodel.monitor.cpu_dump import dump_registers
    machine = mon.machine
    if args.get("cpustate_all"):
        indices = range(len(machine.vcpus))
    elif args.get("vcpu") is not None:
        if args["vcpu"] >= len(machine.vcpus):
            raise MonitorError(f"CPU#{args['vcpu']} not available")
        indices = [args["vcpu"]]
    else:
        indices = [mon.cpu_index]
    a20 = getattr(machine.platform, "a20", 1)
    with machine.vcpus_held():
        return "\n".join(f"\nCPU#{i}\n" + dump_registers(machine.vcpus[i], a20) for i in indices)


def _address_space_lines(space, flat: bool) -> list[str]:
    name = "I/O" if space.name == "io" else space.name
    root = "io" if space.name == "io" else "system"
    end = space.size - 1
    if flat:
        lines = [f' AS "{name}", root: {root}', f" Root memory region: {root}"]
        indent = "  "
    else:
        lines = [f"address-space: {name}", f"  {0:016x}-{end:016x} (prio 0, i/o): {root}"]
        indent = "    "
    for region in space.regions:
        kind = "ram" if getattr(region, "is_ram", False) else "i/o"
        lines.append(f"{indent}{region.base:016x}-{region.end - 1:016x} (prio 0, {kind}): {region.name}")
    return lines


def _ram_lines(machine, indent: str) -> list[str]:
    layout = machine.layout
    lines = [f"{indent}{0:016x}-{layout.low_top - 1:016x} (prio 0, ram): pc.ram"]
    if layout.high_size:
        lines.append(f"{indent}{1 << 32:016x}-{(1 << 32) + layout.high_size - 1:016x} (prio 0, ram): "
                     f"pc.ram @{layout.low_top:016x}")
    return lines


def info_mtree(mon, args) -> str:
    machine = mon.machine
    if args.get("flatview"):
        io = ["FlatView #0"] + _address_space_lines(machine.pio, True)
        memory = _address_space_lines(machine.mmio, True)
        memory = ["FlatView #1"] + memory[:2] + sorted(_ram_lines(machine, "  ") + memory[2:])
        return "\n".join(io + [""] + memory)
    io = _address_space_lines(machine.pio, False)
    memory = _address_space_lines(machine.mmio, False)
    memory = memory[:2] + sorted(_ram_lines(machine, "    ") + memory[2:])
    return "\n".join(io + [""] + memory)


def info_chardev(mon, args) -> str:
    return "\n".join(f"{c.label}: filename={c.filename}" for c in mon.machine.all_chardevs())


def info_network(mon, args) -> str:
    return mon.machine.net.info()


def info_roms(mon, args) -> str:
    machine = mon.machine
    lines = []
    for index, segment in enumerate(getattr(machine.boot, "segments", ())):
        lines.append(f"addr={segment.addr:016x} size=0x{segment.memsz:06x} mem=ram "
                     f'name="{machine.config.kernel} ELF program header segment {index}"')
    tables = machine.tables
    lines.append(f'addr={tables.rsdp_addr:016x} size=0x000014 mem=ram name="etc/acpi/rsdp"')
    lines.append(f'addr={tables.mp_floating_pointer_addr:016x} size=0x000010 mem=ram name="mptable"')
    return "\n".join(lines)


def _qdev_name(device) -> str:
    return getattr(device, "qdev_type", None) or getattr(device, "name", None) or type(device).__name__.lower()


def info_qtree(mon, args) -> str:
    from devicemodel.pci.device import PciDevice
    from devicemodel.system_reset import devices_of
    machine = mon.machine
    lines = ["bus: main-system-bus", "  type System"]
    isa = [d for d in devices_of(machine.pio) if not isinstance(d, PciDevice)]
    lines += ["  dev: isa-bus-bridge, id \"\"", "    bus: isa.0", "      type ISA"]
    for device in isa:
        lines.append(f'      dev: {_qdev_name(device)}, id ""')
        ports = [r for r in machine.pio.regions if r.owner is device]
        lines.append(f"        iobase = {ports[0].base} (0x{ports[0].base:x})")
        for prop in ("irq", "iosize"):
            value = getattr(device, prop, None)
            if isinstance(value, int):
                lines.append(f"        {prop} = {value} (0x{value:x})")
        chardev = getattr(device, "chardev", None)
        if chardev is not None:
            lines.append(f'        chardev = "{chardev.label}"')
    from devicemodel.pci.device import PciDevice
    for device in devices_of(machine.mmio):
        if isinstance(device, PciDevice):
            continue                          # on the PCI bus, below
        region = next(r for r in machine.mmio.regions if r.owner is device)
        lines.append(f'  dev: {_qdev_name(device)}, id ""')
        lines.append(f"    mmio {region.base:016x}/{region.size:016x}")
    if machine.chipset is not None:
        from devicemodel.monitor.pci_info import qtree_pci_lines
        lines.append('  dev: i440FX-pcihost, id ""')
        lines += qtree_pci_lines(machine.chipset.bus, 4)
    return "\n".join(lines)


def info_balloon(mon, args) -> str:
    from devicemodel.virtio.machine_devices import active_balloon
    return f"balloon: actual={active_balloon(mon.machine).actual_bytes >> 20}"


def info_pci(mon, args) -> str:
    from devicemodel.monitor.pci_info import pci_lines
    chipset = mon.machine.chipset
    return "\n".join(pci_lines(chipset.bus)) if chipset is not None else ""


CACHE_MODE_TEXT = {"writeback": "writeback", "none": "writeback, direct", "writethrough": "writethrough",
                   "directsync": "writethrough, direct", "unsafe": "writeback, ignore flushes"}


def info_block(mon, args) -> str:
    """QEMU's layout: each drive, its image and format, its device, its cache mode."""
    machine = mon.machine
    ide = machine.chipset.ide if getattr(machine, "chipset", None) is not None else None
    places = {disk.drive.id: f"{disk.bus_name}, unit {disk.unit}" for disk in (ide.disks() if ide else [])}
    blocks = []
    for drive in machine.drives.values():
        flags = drive.image.format + (", read-only" if drive.read_only else "")
        lines = [f"{drive.id}: {drive.spec.file} ({flags})"]
        if drive.user is not None:
            place = places.get(drive.id)
            lines.append(f"    Attached to:      {drive.user}" + (f" ({place})" if place else ""))
        lines.append(f"    Cache mode:       {CACHE_MODE_TEXT[drive.spec.cache]}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def info_irq(mon, args) -> str:
    pic = mon.machine.line.pic
    lines = ["IRQ statistics for isa-i8259:"]
    lines += [f"{line:2}: {count}" for line, count in enumerate(pic.irq_count) if count]
    return "\n".join(lines)


def info_pic(mon, args) -> str:
    return "\n".join(controller.monitor_info() for controller in mon.machine.interrupt_controllers())


def info_lapic(mon, args) -> str:
    index = args.get("apic-id")
    index = mon.cpu_index if index is None else index
    apic = mon.machine.local_apic(index)
    if apic is None:
        return "local apic state not available"
    return apic.monitor_info()


def info_ioapic(mon, args) -> str:
    ioapic = getattr(mon.machine, "ioapic", None)
    if ioapic is None:
        return "ioapic state not available (the machine has no IOAPIC)"
    return ioapic.monitor_info()


def _page_table_leaves(mon):
    machine = mon.machine
    vcpu = machine.vcpus[mon.cpu_index]
    sregs = vcpu.get_sregs()
    mode = paging_mode(sregs.cr0, sregs.cr4, sregs.efer)
    if not mode.enabled:
        raise MonitorError("PG disabled")
    return mode, list(leaves(lambda gpa, size: read_physical(machine, gpa, size), sregs.cr3, mode))


def info_tlb(mon, args) -> str:
    with mon.machine.vcpus_held():
        mode, found = _page_table_leaves(mon)
    lines = []
    for leaf in found:
        flags = "".join(ch if leaf.pte & bit else "-" for bit, ch in PAGE_FLAGS)
        lines.append(f"{leaf.vaddr:016x}: {leaf.paddr:016x} {flags}")
    return "\n".join(lines)


def info_mem(mon, args) -> str:
    """Runs of virtual memory with the same protection (QEMU's mem_info)."""
    with mon.machine.vcpus_held():
        mode, found = _page_table_leaves(mon)
    lines, start, end, prot = [], None, None, 0

    def flush():
        if start is not None:
            lines.append(f"{start:016x}-{end:016x} {end - start:016x} "
                         f"{'u' if prot & PG_USER else '-'}r{'w' if prot & PG_RW else '-'}")
    for leaf in found:
        if start is not None and leaf.vaddr == end and leaf.prot == prot:
            end += leaf.size
            continue
        flush()
        start, end, prot = leaf.vaddr, leaf.vaddr + leaf.size, leaf.prot
    flush()
    return "\n".join(lines)


def info_history(mon, args) -> str:
    return "\n".join(f"{i}: '{line}'" for i, line in enumerate(mon.history))


def info_exits(mon, args) -> str:
    from devicemodel.log import format_exit_stats
    machine = mon.machine
    parts = [format_exit_stats(machine.vm.exit_stats().as_dict(),
                               f"VM exits of the VM ({len(machine.vcpus)} vCPUs):")]
    for index, vcpu in enumerate(machine.vcpus):
        parts.append(format_exit_stats(vcpu.exit_stats(),
                                       f"VM exits of vCPU {index} ({vcpu.instructions_retired()} "
                                       f"guest instructions):"))
    return "\n\n".join(parts)


def info_jit(mon, args) -> str:
    return jit_report(mon.machine)


def jit_report(machine) -> str:
    """QEMU's translation-buffer report (info jit, x-query-jit), for each vCPU's block
    cache and compiler."""
    parts = []
    with machine.vcpus_held():
        for index, vcpu in enumerate(machine.vcpus):
            s = vcpu.jit_stats()
            compiled = s["compiled"]
            threshold = f"at a block's run {s['threshold']}" if s["threshold"] else "never: interpreted"
            parts.append("\n".join([
                f"Translation buffer state of vCPU {index}:",
                f"gen code size       {s['code_size']}/{s['code_capacity']}",
                f"TB count            {compiled} compiled of {s['blocks']} decoded (compiled {threshold})",
                f"TB avg target size  {s['guest_bytes'] // compiled if compiled else 0} "
                f"max={s['guest_max']} bytes",
                f"TB avg host size    {s['code_size'] // compiled if compiled else 0} bytes "
                f"(expansion ratio: {s['code_size'] / s['guest_bytes'] if s['guest_bytes'] else 0:.1f})",
                f"direct jump count   {s['linked']}",
                "",
                "Statistics:",
                f"TB flush count      {s['flushes']}",
                f"TB invalidate count {s['invalidated']}",
                ""]))
    return "\n".join(parts)


def info_vmcs(mon, args) -> str:
    from devicemodel.monitor.vmx_info import info_vmcs as render
    with mon.machine.vcpus_held():
        return render(mon.machine.vcpus[mon.cpu_index], mon.cpu_index)


def info_ept(mon, args) -> str:
    from devicemodel.monitor.vmx_info import info_ept as render
    with mon.machine.vcpus_held():
        return render(mon.machine.vm, args["addr"])


def info_vmx(mon, args) -> str:
    from devicemodel.monitor.vmx_info import info_vmx as render
    return render(mon.machine.vcpus[mon.cpu_index])
