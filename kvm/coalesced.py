"""Coalesced port writes (KVM_REGISTER_COALESCED_MMIO with KVM_COALESCED_IO_PIO): an OUT
to a registered zone of ports does not exit to userspace; kvm/'s compiled half puts it
in the VM's ring (struct kvm_coalesced_mmio_ring, root_coalesced.c) and resumes the
guest.  Userspace must drain the ring before it handles any exit, so that the device
sees the writes in order and before whatever the guest does next that it can observe
(KVM's and QEMU's contract).  MMIO zones are refused: MMIO writes always exit here."""

from kvm._silicon import ffi, lib
from kvm.errors import KvmError


class CoalescedIo:
    def __init__(self, root):
        self._root = root
        self.ring = lib.root_vm_coalesced_ring(root)

    @staticmethod
    def _zone(addr: int, size: int, pio: bool):
        return ffi.new("struct kvm_coalesced_mmio_zone *", {"addr": addr, "size": size, "pio": int(pio)})

    def register(self, addr: int, size: int, pio: bool):
        if not pio:
            raise KvmError("coalesced MMIO is not supported (KVM_CAP_COALESCED_MMIO): only port zones")
        if lib.root_vm_register_coalesced(self._root, self._zone(addr, size, pio)) != 0:
            raise KvmError(f"cannot coalesce ports {addr:#x}+{size}: out of range or no room left (ENOBUFS)")

    def unregister(self, addr: int, size: int, pio: bool):
        lib.root_vm_unregister_coalesced(self._root, self._zone(addr, size, pio))

    def take(self) -> list:
        """The queued writes, oldest first, as (port, size, value); the ring is then empty."""
        ring = self.ring
        first, last = ring.first, ring.last
        writes = []
        while first != last:
            e = ring.coalesced_mmio[first]
            writes.append((e.phys_addr, e.len, int.from_bytes(bytes(e.data)[:e.len], "little")))
            first = (first + 1) % lib.KVM_COALESCED_MMIO_MAX
        ring.first = first
        return writes
