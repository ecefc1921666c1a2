"""Helpers shared by the loader tests: walk the loader's page tables and GDT in RAM, and
run a loaded test kernel on pyhv's processor until its first port write."""

import struct

from devicemodel.loaders.x86_boot import SegmentDescriptor

DEBUG_PORT = 0xF4


def translate(mem, cr3, linear):
    """The physical address of ``linear`` through 4-level page tables at ``cr3`` (None if unmapped)."""
    table = cr3
    for level, shift in enumerate((39, 30, 21, 12)):
        entry = struct.unpack_from("<Q", mem, table + ((linear >> shift) & 0x1FF) * 8)[0]
        if not entry & 1:
            return None
        if level in (1, 2) and entry & 0x80:                  # 1 GiB or 2 MiB page
            mask = (1 << shift) - 1
            return (entry & 0x000FFFFFFFFFF000 & ~mask) | (linear & mask)
        table = entry & 0x000FFFFFFFFFF000
    return table | (linear & 0xFFF)


def gdt_descriptors(mem, gdt):
    base, limit = gdt
    return [SegmentDescriptor.parse(bytes(mem[base + i:base + i + 8])) for i in range(0, limit + 1, 8)]


def run_until_port_write(ram, entry, max_exits=50):
    """Put a vCPU of a real pyhv VM over ``ram`` into ``entry`` and run it to its first OUT:
    (port, value). The VM exits for EPT faults are handled by kvm/ itself."""
    from kvm import Kvm
    from kvm.constants import KVM_EXIT_IO
    from devicemodel.entry_state import apply_entry_state

    vm = Kvm().create_vm()
    vm.set_user_memory_region(0, 0, len(ram), ram)
    vcpu = vm.create_vcpu(0)
    apply_entry_state(vcpu, entry)
    for _ in range(max_exits):
        run = vcpu.run()
        if run.exit_reason == KVM_EXIT_IO:
            return run.io.port, int.from_bytes(bytes(run.io.data[:run.io.size]), "little")
    raise AssertionError(f"no port write; last exit {run.exit_reason}, regs {vcpu.get_regs()}")
