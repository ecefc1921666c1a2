"""A virtual machine: memslots, the EPT the hypervisor builds for them, its clock, the
interrupt controller userspace attaches, and its vCPUs."""

from kvm._silicon import ffi, lib
from kvm.constants import (KVM_CLOCK_REALTIME, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MSI_VALID_DEVID,
                           KVM_MSR_EXIT_REASON_VALID_MASK)
from kvm.capabilities import (KVM_CAP_EXIT_HYPERCALL, KVM_CAP_X86_TRIPLE_FAULT_EVENT, KVM_CAP_X86_USER_SPACE_MSR,
                              KVM_EXIT_HYPERCALL_VALID_MASK, check_extension)
from kvm.coalesced import CoalescedIo
from kvm.dirty_log import take_dirty_log
from kvm.ept import Ept
from kvm.errors import KvmError
from kvm.hostmem import MAX_MEMSLOTS, HostMemoryError
from kvm.hyperv import HypervMsrs
from kvm.memslots import MemSlot, MemSlots
from kvm.msr_filter import check_msr_filter
from kvm.stats import ExitStats
from kvm.structs import ClockData
from kvm.vcpu import VCPU
from kvm.vmcs_setup import msr_bitmap

PAGE_SIZE = 4096
IDENTITY_MAP_DEFAULT = 0xFFFBC000    # KVM's VMX_EPT_IDENTITY_PAGETABLE_ADDR


class VM:
    def __init__(self, kvm):
        self.kvm = kvm
        self.hostmem = kvm.hostmem
        # kvm/'s compiled half: memslots as EPT population sees them, EPT, the clock
        self.root = ffi.gc(lib.root_vm_new(self.hostmem.pool), lib.root_vm_free)
        self.memslots = MemSlots()
        self.ept = Ept(self.hostmem, self.root)
        self.coalesced = CoalescedIo(self.root)
        self.vcpus = []
        self._apic_access_page = None
        self.user_space_msr = 0    # the KVM_MSR_EXIT_REASON_* that exit to userspace
        self.msr_filter = None     # KVM_X86_SET_MSR_FILTER's filter, or None: all allowed
        self.hypercall_exit_enabled = 0   # 1 << KVM_HC_*: hypercalls that exit to userspace
        self.triple_fault_event = False   # KVM_CAP_X86_TRIPLE_FAULT_EVENT
        self.hyperv = HypervMsrs()
        self.irqchip = None
        self.tss_addr = None
        self.identity_map_addr = IDENTITY_MAP_DEFAULT

    def enable_cap(self, cap: int, *args: int):
        """KVM_ENABLE_CAP on the VM, with args[0]:
        KVM_CAP_X86_USER_SPACE_MSR: the exit reasons (KVM_MSR_EXIT_REASON_*) whose
        RDMSR/WRMSR go to userspace instead of #GP;
        KVM_CAP_EXIT_HYPERCALL: the hypercalls (1 << KVM_HC_*) that exit with
        KVM_EXIT_HYPERCALL (KVM_HC_MAP_GPA_RANGE);
        KVM_CAP_X86_TRIPLE_FAULT_EVENT: KVM_GET/SET_VCPU_EVENTS carry a pending triple fault."""
        value = args[0] if args else 0
        if cap == KVM_CAP_X86_USER_SPACE_MSR:
            if value & ~KVM_MSR_EXIT_REASON_VALID_MASK:
                raise KvmError(f"invalid MSR exit reasons {value:#x}")
            self.user_space_msr = value
        elif cap == KVM_CAP_EXIT_HYPERCALL:
            if value & ~KVM_EXIT_HYPERCALL_VALID_MASK:
                raise KvmError(f"hypercalls {value:#x} cannot exit to userspace (EINVAL)")
            self.hypercall_exit_enabled = value
        elif cap == KVM_CAP_X86_TRIPLE_FAULT_EVENT:
            self.triple_fault_event = bool(value)
        else:
            raise KvmError(f"capability {cap} cannot be enabled on a VM")

    # ---- the interrupt controller ------------------------------------------------------

    def create_irqchip(self, chip):
        """Attach the VM's interrupt controller (KVM_CREATE_IRQCHIP's role): ``chip`` has
        set_irq(gsi, level) and deliver_msi(address, data) -> the number of local APICs
        that accepted the message.  KVM_IRQ_LINE and KVM_SIGNAL_MSI go to it.

        Unlike KVM's, the chip is userspace code (QEMU's kernel-irqchip=off), so its local
        APICs still deliver to the vCPUs through the vCPU API (KVM_INTERRUPT, KVM_NMI,
        the interrupt window, APIC virtualization), which this leaves as it is."""
        if self.irqchip is not None:
            raise KvmError("the VM already has an interrupt controller (KVM_CREATE_IRQCHIP: EEXIST)")
        if self.vcpus:
            raise KvmError("the interrupt controller comes before the vCPUs (KVM_CREATE_IRQCHIP: EINVAL)")
        self.irqchip = chip

    def irq_line(self, irq: int, level: int):
        """KVM_IRQ_LINE: set the level of interrupt line (GSI) ``irq``: ISA lines 0-15 reach
        the 8259s and the I/O APIC, 16-23 the I/O APIC (routing is the chip's)."""
        if self.irqchip is None:
            raise KvmError("no interrupt controller (KVM_IRQ_LINE: ENXIO)")
        self.irqchip.set_irq(irq, 1 if level else 0)

    def signal_msi(self, address: int, data: int, flags: int = 0, devid: int = 0) -> int:
        """KVM_SIGNAL_MSI: deliver a message-signalled interrupt; > 0 when delivered, 0 when
        no local APIC took it.  The high half of the address is ignored (no
        KVM_CAP_X2APIC_API), and so is ``devid`` (no KVM_CAP_MSI_DEVID on x86)."""
        if self.irqchip is None or flags & ~KVM_MSI_VALID_DEVID:
            raise KvmError("no interrupt controller, or invalid flags (KVM_SIGNAL_MSI: EINVAL)")
        return self.irqchip.deliver_msi(address & 0xFFFFFFFF, data & 0xFFFFFFFF)

    # ---- real mode without unrestricted guest ---------------------------------------------

    def set_tss_addr(self, addr: int):
        """KVM_SET_TSS_ADDR: three pages of guest-physical space below 4 GiB for the TSS
        that VMX without unrestricted guest needs to run real-mode code as virtual-8086
        mode.  The silicon has unrestricted guest, which runs real mode as it is, so, as
        KVM on such a processor, the address is checked and kept, and nothing is mapped."""
        if not 0 <= addr <= (1 << 32) - 3 * PAGE_SIZE:
            raise KvmError(f"TSS address {addr:#x} is not below 4 GiB (KVM_SET_TSS_ADDR: EINVAL)")
        self.tss_addr = addr

    def set_identity_map_addr(self, addr: int):
        """KVM_SET_IDENTITY_MAP_ADDR: the page for the identity-mapping page table that
        VMX without unrestricted guest needs for unpaged guest code under EPT (0: the
        default, 0xfffbc000).  With unrestricted guest the processor runs unpaged code
        under EPT itself: the address is kept and never used.  Only before the vCPUs."""
        if self.vcpus:
            raise KvmError("KVM_SET_IDENTITY_MAP_ADDR after KVM_CREATE_VCPU: EINVAL")
        self.identity_map_addr = addr or IDENTITY_MAP_DEFAULT

    def set_msr_filter(self, msr_filter):
        """KVM_X86_SET_MSR_FILTER: a kvm.structs.MsrFilter, or None to remove the filter."""
        if msr_filter is not None:
            check_msr_filter(msr_filter)
        self.msr_filter = msr_filter
        bitmap = msr_bitmap(msr_filter)
        for vcpu in self.vcpus:
            self.hostmem.write_bytes(vcpu.msr_bitmap_page, bitmap)
            if vcpu.apicv.enabled:
                vcpu.apicv.set_x2apic_intercepts()   # what APIC virtualization lets through

    def set_user_memory_region(self, slot: int, guest_phys_addr: int, memory_size: int,
                               userspace_addr=None, flags: int = 0):
        """KVM_SET_USER_MEMORY_REGION: a size of 0 deletes the slot."""
        if (guest_phys_addr | memory_size) & (PAGE_SIZE - 1):
            raise KvmError("memory region must be page aligned")
        if not 0 <= slot < MAX_MEMSLOTS:
            raise KvmError(f"memory slot {slot} out of range (0..{MAX_MEMSLOTS - 1})")
        if flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY):
            raise KvmError(f"unsupported memory region flags {flags:#x}")
        old = self.memslots.remove(slot)
        if old is not None:
            # deleting or moving a slot: its guest-physical range leaves EPT
            lib.root_vm_set_memslot(self.root, slot, 0, 0, 0, 0)
            self.flush_tlbs()
            self.hostmem.unmap_guest_buffer(old.hpa)
        if memory_size == 0:
            return
        if userspace_addr is None or len(userspace_addr) < memory_size:
            raise KvmError("memory region needs a buffer of at least memory_size bytes")
        buffer = memoryview(userspace_addr)[:memory_size]
        hpa = self.hostmem.map_guest_buffer(buffer)
        try:
            self.memslots.add(MemSlot(slot, guest_phys_addr, memory_size, buffer, flags, hpa))
        except ValueError as e:
            self.hostmem.unmap_guest_buffer(hpa)
            raise KvmError(str(e)) from None
        if lib.root_vm_set_memslot(self.root, slot, guest_phys_addr, memory_size, hpa, flags) != 0:
            self.memslots.remove(slot)
            self.hostmem.unmap_guest_buffer(hpa)
            raise KvmError("no memory for the slot's dirty bitmap")

    def register_coalesced_mmio(self, addr: int, size: int, pio: bool = False):
        """KVM_REGISTER_COALESCED_MMIO: OUTs to ports [addr, addr + size) (pio) are queued
        in the VM's ring instead of exiting (kvm/coalesced.py); userspace drains it with
        take_coalesced() before handling each exit."""
        self.coalesced.register(addr, size, pio)

    def unregister_coalesced_mmio(self, addr: int, size: int, pio: bool = False):
        """KVM_UNREGISTER_COALESCED_MMIO: the zones inside [addr, addr + size) go."""
        self.coalesced.unregister(addr, size, pio)

    def take_coalesced(self) -> list:
        """The writes queued in the coalesced ring, oldest first: (port, size, value)."""
        return self.coalesced.take()

    def get_dirty_log(self, slot: int) -> bytearray:
        """KVM_GET_DIRTY_LOG: a bitmap of the slot's pages written since the last call."""
        s = self.memslots.get(slot)
        if s is None or not s.logs_dirty_pages:
            raise KvmError(f"memory slot {slot} does not log dirty pages")
        return take_dirty_log(self, s)

    def flush_tlbs(self):
        for vcpu in self.vcpus:
            lib.vmx_invept(vcpu.cpu, 2, 0)

    def check_extension(self, cap: int) -> int:
        return check_extension(cap)

    def create_vcpu(self, vcpu_id: int) -> VCPU:
        if any(v.id == vcpu_id for v in self.vcpus):
            raise KvmError(f"vCPU {vcpu_id} already exists")
        vcpu = VCPU(self, vcpu_id)
        self.vcpus.append(vcpu)
        return vcpu

    def map_guest_page(self, gpa: int, write: bool = False) -> bool:
        """An EPT violation at gpa: map its page from its memslot (read-only for a
        read-only slot); False when the access is MMIO (not RAM, or a write to ROM)."""
        mapped = lib.root_ept_fault_in(self.root, gpa, int(write))
        if mapped < 0:
            raise HostMemoryError("hypervisor page pool exhausted")
        return bool(mapped)

    def map_apic_access_page(self, gpa: int) -> int:
        """The APIC-access page (KVM's APIC_ACCESS_PAGE_PRIVATE_MEMSLOT): one host page,
        mapped by EPT at the guest-physical APIC base, whose contents nobody uses -- the
        processors virtualize the accesses that reach it.  Returns its host-physical address."""
        if self._apic_access_page is None:
            self._apic_access_page = self.hostmem.alloc_page()
        entry = self.ept.lookup(gpa)
        if entry is None or entry & ~0xFFF & ((1 << 40) - 1) != self._apic_access_page:
            self.ept.map_page(gpa, self._apic_access_page)
            self.flush_tlbs()
        return self._apic_access_page

    def read_guest(self, gpa: int, size: int):
        """Bytes of guest RAM (within one memslot), or None where it is not RAM."""
        slot = self.memslots.find(gpa)
        if slot is None or gpa + size > slot.end:
            return None
        offset = gpa - slot.guest_phys_addr
        return bytes(slot.buffer[offset:offset + size])

    def write_guest(self, gpa: int, data) -> bool:
        """The hypervisor writes guest RAM (kvm_write_guest); False where it is not
        writable RAM."""
        slot = self.memslots.find(gpa)
        if slot is None or slot.readonly or gpa + len(data) > slot.end:
            return False
        offset = gpa - slot.guest_phys_addr
        slot.buffer[offset:offset + len(data)] = data
        self.guest_memory_written(gpa, len(data))
        return True

    def guest_memory_written(self, gpa: int, size: int):
        """Userspace (a loader, a DMA engine) wrote guest RAM behind the processors' backs:
        they forget code decoded from it, and a slot that logs dirty pages logs them."""
        slot = self.memslots.find(gpa)
        if slot is None:
            return
        size = min(size, slot.end - gpa)
        self.hostmem.invalidate_code(slot.hpa_of(gpa), size)
        if size > 0:
            lib.root_vm_mark_dirty(self.root, gpa, size)

    def get_clock(self) -> ClockData:
        """KVM_GET_CLOCK: kvmclock now (ns since the VM was created, or since what
        set_clock said), with the host's realtime and TSC at the same instant."""
        data = ffi.new("struct kvm_clock_data *")
        lib.root_vm_get_clock(self.root, data)
        return ClockData(data.clock, data.flags, data.realtime, data.host_tsc)

    def set_clock(self, clock: ClockData):
        """KVM_SET_CLOCK: kvmclock reads clock.clock now (plus the realtime that passed
        since clock.realtime, with KVM_CLOCK_REALTIME); the guests' pvclock pages are
        rewritten before their vCPUs next run."""
        if clock.flags & ~KVM_CLOCK_REALTIME:
            raise KvmError(f"unsupported KVM_SET_CLOCK flags {clock.flags:#x}")
        data = ffi.new("struct kvm_clock_data *", {"clock": clock.clock, "flags": clock.flags,
                                                   "realtime": clock.realtime})
        lib.root_vm_set_clock(self.root, data)

    def exit_stats(self):
        total = ExitStats()
        for vcpu in self.vcpus:
            vcpu.stats.merge_into(total)
        return total
