"""APIC virtualization in the silicon (SDM Vol. 3 "APIC Virtualization and Virtual
Interrupts"), seen as a hypervisor written from the SDM sees it: the VMCS is set up by
hand and the guest entered with VMLAUNCH/VMRESUME, so every VM exit is the raw one.
Guest code runs in flat 32-bit protected mode (paging off: linear = guest-physical) or
in 64-bit mode for MOV CR8; EPT maps all of RAM and the APIC-access page at FEE00000H."""

import struct
import threading
import time

import pytest

from kvm import vmx
from kvm._silicon import lib
from kvm.vmcs_setup import set_msr_intercept
from kvm_guest import CODE_GPA, PT32_GPA, KvmGuest

APIC_GPA = 0xFEE00000
HANDLER = CODE_GPA + 0x100          # guest code puts its interrupt handler at .org 0x100
ERR_INVALID_CONTROL = 7
ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH, ACCESS_EVENT, ACCESS_GUEST_PHYSICAL = 0, 1, 2, 3, 15


class ApicGuest:
    """A guest with a virtual-APIC page and an APIC-access page, entered directly."""

    def __init__(self, source: str, mode: str = "prot32", paging: bool = False):
        self.g = KvmGuest(source, mode, paging=paging)
        self.vcpu = self.g.vcpu
        self.vm = self.g.vm
        for gpa in range(0, len(self.g.ram), 0x1000):
            self.vm.map_guest_page(gpa)
        self.page = self.vcpu.apic_page
        self.access_hpa = self.vm.hostmem.alloc_page()
        self.vm.ept.map_page(APIC_GPA, self.access_hpa)
        self.write(vmx.VIRTUAL_APIC_PAGE_ADDR, self.vcpu.apicv.page_hpa)
        self.write(vmx.APIC_ACCESS_ADDR, self.access_hpa)
        self._launched = False

    def write(self, field, value):
        self.vcpu.vmwrite(field, value)

    def read(self, field):
        return self.vcpu.vmread(field)

    def controls(self, tpr_shadow=True, access=True, regs=False, vid=False, x2apic=False):
        proc = self.read(vmx.CPU_BASED_VM_EXEC_CONTROL) & ~(
            vmx.CPU_BASED_TPR_SHADOW | vmx.CPU_BASED_CR8_LOAD_EXITING | vmx.CPU_BASED_CR8_STORE_EXITING)
        self.write(vmx.CPU_BASED_VM_EXEC_CONTROL, proc | (vmx.CPU_BASED_TPR_SHADOW if tpr_shadow else 0))
        proc2 = self.read(vmx.SECONDARY_VM_EXEC_CONTROL) & ~(
            vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES | vmx.SECONDARY_EXEC_APIC_REGISTER_VIRT |
            vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY | vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE)
        for on, bit in ((access, vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES),
                        (regs, vmx.SECONDARY_EXEC_APIC_REGISTER_VIRT),
                        (vid, vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY),
                        (x2apic, vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE)):
            proc2 |= bit if on else 0
        self.write(vmx.SECONDARY_VM_EXEC_CONTROL, proc2)

    def reg32(self, offset):
        return struct.unpack_from("<I", self.page, offset)[0]

    def set_reg32(self, offset, value):
        struct.pack_into("<I", self.page, offset, value)

    def vector_bit(self, base, vector):
        return (self.reg32(base + ((vector & 0xE0) >> 1)) >> (vector & 31)) & 1

    def enter(self) -> int:
        cpu = self.vcpu.cpu
        rc = lib.vmx_vmresume(cpu) if self._launched else lib.vmx_vmlaunch(cpu)
        if rc == vmx.VMX_EXITED and not self.read(vmx.VM_EXIT_REASON) & vmx.EXIT_REASON_FAILED_VMENTRY:
            self._launched = True
        return rc

    def run(self) -> int:
        rc = self.enter()
        assert rc == vmx.VMX_EXITED, f"VM entry failed: rc {rc}, error {self.read(vmx.VM_INSTRUCTION_ERROR)}"
        return self.read(vmx.VM_EXIT_REASON)

    def skip(self):
        """Past the instruction that exited (HLT, ...)."""
        self.write(vmx.GUEST_RIP, self.read(vmx.GUEST_RIP) + self.read(vmx.VM_EXIT_INSTRUCTION_LEN))

    def rip(self):
        return self.read(vmx.GUEST_RIP)

    def reg(self, name):
        return getattr(self.vcpu.get_regs(), name)

    def label(self, source_prefix: str) -> int:
        """Guest address just after the assembled `source_prefix` (an instruction's end)."""
        from asm import assemble
        return CODE_GPA + len(assemble(source_prefix, 64 if self.g.mode == "long64" else 32, CODE_GPA))


# ---- reads served from the virtual-APIC page -----------------------------------------------

def test_apic_register_reads_come_from_the_virtual_apic_page_without_exits():
    g = ApicGuest("""
        mov eax, dword ptr [0xFEE00020]
        mov ebx, dword ptr [0xFEE00030]
        mov ecx, dword ptr [0xFEE00080]
        movzx edx, byte ptr [0xFEE00023]
        hlt""")
    g.controls(regs=True)
    g.set_reg32(0x20, 0x05000000)
    g.set_reg32(0x30, 0x00050014)
    g.set_reg32(0x80, 0x40)
    assert g.run() == vmx.EXIT_REASON_HLT
    assert (g.reg("rax"), g.reg("rbx"), g.reg("rcx"), g.reg("rdx")) == (0x05000000, 0x50014, 0x40, 5)


def test_read_loop_of_the_apic_id_stays_in_the_guest():
    g = ApicGuest("""
        mov ecx, 300000
    1:  mov eax, dword ptr [0xFEE00020]
        add ebx, eax
        loop 1b
        hlt""")
    g.controls(regs=True)
    g.set_reg32(0x20, 1)
    started = time.process_time()
    assert g.run() == vmx.EXIT_REASON_HLT
    elapsed = time.process_time() - started
    assert g.reg("rbx") == 300000
    assert elapsed < 5, f"{elapsed:.2f} s of CPU time for 300000 virtualized reads"


# ---- APIC-access VM exits ---------------------------------------------------------------

@pytest.mark.parametrize("code, offset, kind", [
    ("mov eax, dword ptr [0xFEE00020]", 0x020, ACCESS_READ),
    ("mov dword ptr [0xFEE00020], eax", 0x020, ACCESS_WRITE),
    ("mov eax, dword ptr [0xFEE00390]", 0x390, ACCESS_READ),     # not virtualized by ARV either
    ("mov eax, dword ptr [0xFEE00082]", 0x082, ACCESS_READ),     # beyond bytes 3:0 of its slot
    ("mov dword ptr [0xFEE000A0], eax", 0x0A0, ACCESS_WRITE),     # PPR is never written
])
def test_access_that_is_not_virtualized_exits_fault_like(code, offset, kind):
    regs = offset in (0x390, 0x082, 0x0A0)
    g = ApicGuest(code + "\nhlt")
    g.controls(regs=regs)
    assert g.run() == vmx.EXIT_REASON_APIC_ACCESS
    assert g.read(vmx.EXIT_QUALIFICATION) == offset | (kind << 12)
    assert g.rip() == CODE_GPA                          # the access has not happened
    assert not g.read(vmx.IDT_VECTORING_INFO_FIELD) & vmx.INTR_INFO_VALID_MASK


def test_without_apic_register_virtualization_only_tpr_is_virtualized():
    g = ApicGuest("""
        mov eax, dword ptr [0xFEE00080]
        mov dword ptr [0xFEE00080], 0x70
        mov ebx, dword ptr [0xFEE000B0]
        hlt""")
    g.controls()
    g.set_reg32(0x80, 0x20)
    assert g.run() == vmx.EXIT_REASON_APIC_ACCESS          # EOI needs virtual-interrupt delivery
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x0B0
    assert g.reg("rax") == 0x20 and g.reg32(0x80) == 0x70


def test_without_tpr_shadow_every_access_exits():
    g = ApicGuest("mov eax, dword ptr [0xFEE00080]\nhlt")
    g.controls(tpr_shadow=False)
    assert g.run() == vmx.EXIT_REASON_APIC_ACCESS
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x080


def test_instruction_fetch_from_the_apic_access_page_exits():
    g = ApicGuest("mov eax, 0xFEE00010\njmp eax")
    g.controls(regs=True)
    assert g.run() == vmx.EXIT_REASON_APIC_ACCESS
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x010 | (ACCESS_FETCH << 12)
    assert g.rip() == 0xFEE00010


def test_access_during_event_delivery_reports_the_event():
    g = ApicGuest("int 0x30\nhlt")
    g.controls(regs=True)
    g.write(vmx.GUEST_IDTR_BASE, APIC_GPA)               # the IDT on the APIC-access page
    assert g.run() == vmx.EXIT_REASON_APIC_ACCESS
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x30 * 8 | (ACCESS_EVENT << 12)
    assert g.read(vmx.IDT_VECTORING_INFO_FIELD) == vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_SOFT_INTR | 0x30
    assert g.read(vmx.VM_EXIT_INSTRUCTION_LEN) == 2
    assert g.rip() == CODE_GPA


def test_guest_paging_structure_on_the_apic_access_page_exits_as_guest_physical():
    g = ApicGuest("nop\nhlt", paging=True)
    g.controls(regs=True)
    g.write(vmx.APIC_ACCESS_ADDR, g.vm.memslots.get(0).hpa_of(PT32_GPA))   # the page table
    assert g.run() == vmx.EXIT_REASON_APIC_ACCESS
    assert g.read(vmx.EXIT_QUALIFICATION) >> 12 == ACCESS_GUEST_PHYSICAL
    assert g.read(vmx.GUEST_PHYSICAL_ADDRESS) == PT32_GPA + (CODE_GPA >> 12) * 4


# ---- writes: APIC-write emulation and APIC-write VM exits ----------------------------------

def test_write_that_needs_emulation_exits_trap_like_with_the_offset():
    g = ApicGuest("mov dword ptr [0xFEE00380], 0x1234\nhlt")
    g.controls(regs=True, vid=True)
    assert g.run() == vmx.EXIT_REASON_APIC_WRITE
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x380
    assert g.rip() == g.label("mov dword ptr [0xFEE00380], 0x1234")
    assert g.reg32(0x380) == 0x1234


def test_each_iteration_of_a_repeated_string_write_is_its_own_operation():
    g = ApicGuest("""
        mov edi, 0xFEE00380
        mov ecx, 2
        mov eax, 0x99
        cld
        rep stosd
        hlt""")
    g.controls(regs=True, vid=True)
    assert g.run() == vmx.EXIT_REASON_APIC_WRITE        # after the first iteration
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x380
    assert g.rip() == g.label("mov edi, 0xFEE00380\nmov ecx, 2\nmov eax, 0x99\ncld")
    assert (g.reg("rcx"), g.reg("rdi")) == (1, 0xFEE00384)
    assert g.run() == vmx.EXIT_REASON_APIC_ACCESS       # 384H is no register
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x384 | (ACCESS_WRITE << 12)


def test_icr_write_that_is_not_a_self_ipi_exits_and_icr_high_is_masked():
    g = ApicGuest("""
        mov dword ptr [0xFEE00310], 0x12345678
        mov dword ptr [0xFEE00300], 0x4041
        hlt""")
    g.controls(regs=True, vid=True)
    assert g.run() == vmx.EXIT_REASON_APIC_WRITE
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x300
    assert g.reg32(0x310) == 0x12000000 and g.reg32(0x300) == 0x4041


def test_apic_write_with_tpr_virtualization_only_clears_the_high_bytes():
    g = ApicGuest("mov dword ptr [0xFEE00080], 0xABCD50\nhlt")
    g.controls()
    assert g.run() == vmx.EXIT_REASON_HLT
    assert g.reg32(0x80) == 0x50


# ---- TPR shadow and the TPR threshold ----------------------------------------------------

def test_tpr_write_below_threshold_exits_trap_like():
    g = ApicGuest("mov dword ptr [0xFEE00080], 0x10\nhlt")
    g.controls()
    g.set_reg32(0x80, 0x50)
    g.write(vmx.TPR_THRESHOLD, 2)
    assert g.run() == vmx.EXIT_REASON_TPR_BELOW_THRESHOLD
    assert g.read(vmx.EXIT_QUALIFICATION) == 0
    assert g.rip() == g.label("mov dword ptr [0xFEE00080], 0x10")


def test_mov_cr8_uses_the_tpr_shadow_and_exits_below_threshold():
    g = ApicGuest("""
        mov rax, cr8
        mov rbx, 3
        mov cr8, rbx
        hlt""", mode="long64")
    g.controls(access=False)
    g.set_reg32(0x80, 0x7F)
    g.write(vmx.TPR_THRESHOLD, 4)
    assert g.run() == vmx.EXIT_REASON_TPR_BELOW_THRESHOLD
    assert g.reg("rax") == 7
    assert g.reg32(0x80) == 0x30                   # bits 3:0 and 31:8 cleared
    assert g.rip() == g.label("mov rax, cr8\nmov rbx, 3\nmov cr8, rbx")


def test_mov_cr8_at_or_above_threshold_does_not_exit():
    g = ApicGuest("mov rbx, 4\nmov cr8, rbx\nhlt", mode="long64")
    g.controls(access=False)
    g.set_reg32(0x80, 0x90)
    g.write(vmx.TPR_THRESHOLD, 4)
    assert g.run() == vmx.EXIT_REASON_HLT
    assert g.reg32(0x80) == 0x40


def test_tpr_below_threshold_right_after_vm_entry():
    g = ApicGuest("nop\nhlt")
    g.controls()
    g.set_reg32(0x80, 0x10)
    g.write(vmx.TPR_THRESHOLD, 3)
    assert g.run() == vmx.EXIT_REASON_TPR_BELOW_THRESHOLD
    assert g.rip() == CODE_GPA


# ---- virtual-interrupt delivery and EOI virtualization -----------------------------------

HANDLER_SOURCE = """
    sti
    nop
    mov eax, 1
    hlt
.org 0x100
    mov ebx, 0x1234
    {before_eoi}
    mov dword ptr [0xFEE000B0], 0
    iretd
"""


def _vid_guest(vector=0x31, before_eoi=""):
    g = ApicGuest(HANDLER_SOURCE.format(before_eoi=before_eoi))
    g.controls(regs=True, vid=True)
    g.g.set_idt_gate(vector, HANDLER)
    g.set_reg32(0x200 + ((vector & 0xE0) >> 1), 1 << (vector & 31))   # VIRR
    g.write(vmx.GUEST_INTR_STATUS, vector)                            # RVI
    return g


def test_virtual_interrupt_is_delivered_through_the_idt_and_eoi_needs_no_exit():
    g = _vid_guest()
    assert g.run() == vmx.EXIT_REASON_HLT
    assert g.reg("rbx") == 0x1234 and g.reg("rax") == 1
    assert not g.vector_bit(0x200, 0x31) and not g.vector_bit(0x100, 0x31)
    assert g.read(vmx.GUEST_INTR_STATUS) == 0        # RVI and SVI
    assert g.reg32(0xA0) == 0                        # VPPR


def test_vm_exit_during_virtual_interrupt_delivery_reports_the_interrupt():
    g = _vid_guest(vector=0x35)
    g.vm.ept.set_leaf(0x7F000, 0)                        # the stack page: an EPT violation
    assert g.run() == vmx.EXIT_REASON_EPT_VIOLATION
    assert g.read(vmx.IDT_VECTORING_INFO_FIELD) == vmx.INTR_INFO_VALID_MASK | vmx.INTR_TYPE_EXT_INTR | 0x35
    assert g.read(vmx.GUEST_INTR_STATUS) == 0x35 << 8    # the interrupt was acknowledged
    assert g.vector_bit(0x100, 0x35) and not g.vector_bit(0x200, 0x35)


def test_in_service_state_while_the_handler_runs():
    g = _vid_guest(vector=0x52, before_eoi="hlt")
    g.set_reg32(0x80, 0x20)                          # VTPR below the vector's class
    assert g.run() == vmx.EXIT_REASON_HLT
    assert g.rip() == HANDLER + 5                    # in the handler
    assert g.read(vmx.GUEST_INTR_STATUS) == 0x52 << 8
    assert g.vector_bit(0x100, 0x52) and not g.vector_bit(0x200, 0x52)
    assert g.reg32(0xA0) == 0x50


def test_virtual_interrupt_is_held_by_the_tpr_and_by_rflags_if():
    g = _vid_guest(vector=0x31)
    g.set_reg32(0x80, 0x30)                          # same priority class: not recognized
    g.write(vmx.CPU_BASED_VM_EXEC_CONTROL,
            g.read(vmx.CPU_BASED_VM_EXEC_CONTROL) & ~vmx.CPU_BASED_HLT_EXITING)
    g.write(vmx.PIN_BASED_VM_EXEC_CONTROL, g.read(vmx.PIN_BASED_VM_EXEC_CONTROL) |
            vmx.PIN_BASED_VMX_PREEMPTION_TIMER)
    g.write(vmx.VMX_PREEMPTION_TIMER_VALUE, 20000)
    assert g.run() == vmx.EXIT_REASON_PREEMPTION_TIMER
    assert g.reg("rbx") == 0 and g.vector_bit(0x200, 0x31)


def test_lowering_the_tpr_through_the_apic_page_delivers_the_held_interrupt():
    g = ApicGuest("""
        sti
        mov dword ptr [0xFEE00080], 0
        mov eax, 1
        hlt
    .org 0x100
        mov ebx, dword ptr [0xFEE00110]
        mov dword ptr [0xFEE000B0], 0
        iretd""")
    g.controls(regs=True, vid=True)
    g.g.set_idt_gate(0x31, HANDLER)
    g.set_reg32(0x80, 0x40)                              # holds vector 0x31
    g.set_reg32(0x200 + 0x10, 1 << (0x31 - 32))
    g.write(vmx.GUEST_INTR_STATUS, 0x31)
    assert g.run() == vmx.EXIT_REASON_HLT
    assert g.reg("rbx") == 1 << (0x31 - 32)              # VISR in the handler
    assert g.reg("rax") == 1 and g.reg32(0xA0) == 0 and g.read(vmx.GUEST_INTR_STATUS) == 0


def test_eoi_exit_bitmap_makes_eoi_exit_with_the_vector():
    g = _vid_guest(vector=0x93)
    g.write(vmx.EOI_EXIT_BITMAP2, 1 << (0x93 - 128))
    assert g.run() == vmx.EXIT_REASON_EOI_INDUCED
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x93
    assert g.rip() == HANDLER + 5 + 10               # trap-like: after the EOI write
    assert not g.vector_bit(0x100, 0x93) and g.read(vmx.GUEST_INTR_STATUS) == 0


def test_nested_virtual_interrupts_eoi_returns_svi_to_the_outer_vector():
    g = _vid_guest(vector=0x41, before_eoi="hlt")
    g.set_reg32(0x200 + 0x10, 1 << (0x31 - 32))       # a lower vector waits
    assert g.run() == vmx.EXIT_REASON_HLT              # in the 0x41 handler
    assert g.read(vmx.GUEST_INTR_STATUS) == (0x41 << 8) | 0x31
    g.skip()
    g.g.set_idt_gate(0x31, HANDLER)
    assert g.run() == vmx.EXIT_REASON_HLT              # EOI, IRET: 0x31 taken in its turn
    assert g.read(vmx.GUEST_INTR_STATUS) == 0x31 << 8
    g.skip()
    assert g.run() == vmx.EXIT_REASON_HLT
    assert g.read(vmx.GUEST_INTR_STATUS) == 0 and g.reg("rax") == 1


def test_self_ipi_through_icr_is_delivered_without_exit():
    g = ApicGuest("""
        sti
        mov dword ptr [0xFEE00300], 0x40061
        mov eax, 1
        hlt
    .org 0x100
        mov ebx, 0x61
        mov dword ptr [0xFEE000B0], 0
        iretd""")
    g.controls(regs=True, vid=True)
    g.g.set_idt_gate(0x61, HANDLER)
    assert g.run() == vmx.EXIT_REASON_HLT
    assert g.reg("rbx") == 0x61 and g.reg("rax") == 1
    assert g.read(vmx.GUEST_INTR_STATUS) == 0


def test_virtual_interrupt_wakes_a_halted_guest():
    g = _vid_guest()
    g.write(vmx.CPU_BASED_VM_EXEC_CONTROL,
            g.read(vmx.CPU_BASED_VM_EXEC_CONTROL) & ~vmx.CPU_BASED_HLT_EXITING)
    g.write(vmx.GUEST_RFLAGS, 0x202)
    g.write(vmx.GUEST_ACTIVITY_STATE, 1)                # entered in the HLT state
    g.write(vmx.GUEST_RIP, g.label("sti\nnop"))        # at "mov eax, 1" after wakeup
    g.write(vmx.PIN_BASED_VM_EXEC_CONTROL, g.read(vmx.PIN_BASED_VM_EXEC_CONTROL) |
            vmx.PIN_BASED_VMX_PREEMPTION_TIMER)
    g.write(vmx.VMX_PREEMPTION_TIMER_VALUE, 200000)
    assert g.run() == vmx.EXIT_REASON_PREEMPTION_TIMER   # the guest halts again after it
    assert g.reg("rbx") == 0x1234 and g.reg("rax") == 1
    assert g.read(vmx.GUEST_ACTIVITY_STATE) == 1


# ---- posted-interrupt processing ----------------------------------------------------------

NOTIFY = 0xE9


def _posted_guest():
    g = _vid_guest(before_eoi="hlt")
    g.set_reg32(0x200 + 0x10, 0)                        # nothing in VIRR: the PIR posts it
    g.write(vmx.GUEST_INTR_STATUS, 0)
    g.desc_hpa = g.vm.hostmem.alloc_page()
    g.desc = g.vm.hostmem.page_view(g.desc_hpa)
    g.write(vmx.PIN_BASED_VM_EXEC_CONTROL,
            g.read(vmx.PIN_BASED_VM_EXEC_CONTROL) | vmx.PIN_BASED_POSTED_INTR)
    g.write(vmx.POSTED_INTR_NV, NOTIFY)
    g.write(vmx.POSTED_INTR_DESC_ADDR, g.desc_hpa)
    return g


def test_posted_interrupt_notification_moves_pir_to_virr_without_exit():
    g = _posted_guest()
    struct.pack_into("<I", g.desc, 4, 1 << (0x31 - 32))  # PIR: vector 0x31
    struct.pack_into("<I", g.desc, 0x1C, 1 << 2)         # and 0xE2, held below by its priority
    g.desc[32] = 1                                       # ON
    lib.cpu_interrupt(g.vcpu.cpu, NOTIFY)                # arrives right after VM entry
    g.set_reg32(0x80, 0xF0)                              # VTPR holds everything at first
    g.write(vmx.GUEST_RIP, CODE_GPA + 1)                 # nop, mov eax,1, hlt with IF=1
    g.write(vmx.GUEST_RFLAGS, 0x202)
    assert g.run() == vmx.EXIT_REASON_HLT                # no external-interrupt exit
    assert g.reg("rbx") == 0 and g.reg("rax") == 1
    assert bytes(g.desc[:33]) == bytes(33)               # PIR and ON cleared
    assert g.vector_bit(0x200, 0x31) and g.vector_bit(0x200, 0xE2)
    assert g.read(vmx.GUEST_INTR_STATUS) == 0xE2         # RVI: the highest posted vector


def test_posted_interrupt_is_delivered_when_the_guest_allows_it():
    g = _posted_guest()
    struct.pack_into("<I", g.desc, 4, 1 << (0x31 - 32))
    g.desc[32] = 1
    lib.cpu_interrupt(g.vcpu.cpu, NOTIFY)
    assert g.run() == vmx.EXIT_REASON_HLT                # in the handler, before its EOI
    assert g.reg("rbx") == 0x1234
    assert g.read(vmx.GUEST_INTR_STATUS) == 0x31 << 8


def test_posted_interrupt_wakes_a_halted_guest():
    g = _posted_guest()

    def post():
        g.vm.hostmem.atomic_or32(g.desc_hpa + 4, 1 << (0x31 - 32))
        g.vm.hostmem.atomic_or32(g.desc_hpa + 32, 1)
        lib.cpu_interrupt(g.vcpu.cpu, NOTIFY)
    threading.Timer(0.05, post).start()
    g.write(vmx.GUEST_RFLAGS, 0x202)
    g.write(vmx.GUEST_ACTIVITY_STATE, 1)                 # halted from VM entry on
    g.write(vmx.GUEST_RIP, g.label("sti\nnop\nmov eax, 1\nhlt"))
    assert g.run() == vmx.EXIT_REASON_HLT                # the handler's HLT, before its EOI
    assert g.reg("rbx") == 0x1234
    assert g.read(vmx.GUEST_INTR_STATUS) == 0x31 << 8


def test_other_vectors_still_exit_with_posted_interrupts_enabled():
    g = _posted_guest()
    lib.cpu_interrupt(g.vcpu.cpu, 0x77)
    assert g.run() == vmx.EXIT_REASON_EXTERNAL_INTERRUPT
    assert g.read(vmx.VM_EXIT_INTR_INFO) == vmx.INTR_INFO_VALID_MASK | 0x77


def test_notification_vector_without_posted_interrupts_is_an_external_interrupt():
    g = _vid_guest()
    lib.cpu_interrupt(g.vcpu.cpu, NOTIFY)
    assert g.run() == vmx.EXIT_REASON_EXTERNAL_INTERRUPT
    assert g.read(vmx.VM_EXIT_INTR_INFO) == vmx.INTR_INFO_VALID_MASK | NOTIFY


# ---- x2APIC-mode virtualization ---------------------------------------------------------

X2APIC_SOURCE = """
    mov ecx, 0x802
    rdmsr
    mov esi, eax
    mov edi, edx
    mov ecx, 0x808
    mov eax, 0x20
    xor edx, edx
    wrmsr
    sti
    mov ecx, 0x83F
    mov eax, 0x71
    wrmsr
    mov eax, 1
    hlt
.org 0x100
    mov ecx, 0x80A
    rdmsr
    mov ebx, eax
    mov ecx, 0x80B
    xor eax, eax
    wrmsr
    iretd
"""


def _x2apic_guest(source=X2APIC_SOURCE):
    g = ApicGuest(source)
    g.controls(access=False, regs=True, vid=True, x2apic=True)
    for msr in range(0x800, 0x900):
        set_msr_intercept(g.vcpu, msr, False, False)
    for msr in (0x808, 0x80B, 0x83F):
        set_msr_intercept(g.vcpu, msr, True, False)
    return g


def test_x2apic_msrs_are_virtualized_without_exits():
    g = _x2apic_guest()
    g.g.set_idt_gate(0x71, HANDLER)
    g.set_reg32(0x20, 7)
    g.set_reg32(0x24, 0xAB)                             # RDMSR reads 8 bytes of the page
    assert g.run() == vmx.EXIT_REASON_HLT
    assert (g.reg("rsi"), g.reg("rdi")) == (7, 0xAB)
    assert g.reg32(0x80) == 0x20
    assert g.reg("rbx") == 0x70                         # PPR while 0x71 was in service
    assert g.reg("rax") == 1 and g.read(vmx.GUEST_INTR_STATUS) == 0


def test_x2apic_write_with_reserved_bits_faults():
    g = _x2apic_guest("mov ecx, 0x808\nmov eax, 0x100\nxor edx, edx\nwrmsr\nhlt")
    g.write(vmx.EXCEPTION_BITMAP, 1 << 13)
    assert g.run() == vmx.EXIT_REASON_EXCEPTION_NMI
    assert g.read(vmx.VM_EXIT_INTR_INFO) & 0xFF == 13


def test_x2apic_self_ipi_with_an_illegal_vector_is_an_apic_write_exit():
    g = _x2apic_guest("mov ecx, 0x83F\nmov eax, 0x05\nxor edx, edx\nwrmsr\nhlt")
    assert g.run() == vmx.EXIT_REASON_APIC_WRITE
    assert g.read(vmx.EXIT_QUALIFICATION) == 0x3F0
    assert g.reg32(0x3F0) == 5
    assert g.rip() == g.label("mov ecx, 0x83F\nmov eax, 0x05\nxor edx, edx\nwrmsr")


def test_x2apic_reads_without_register_virtualization_cover_only_tpr():
    g = _x2apic_guest("mov ecx, 0x808\nrdmsr\nmov ebx, eax\nmov ecx, 0x802\nrdmsr\nhlt")
    g.controls(access=False, regs=False, vid=True, x2apic=True)
    g.set_reg32(0x80, 0x60)
    g.write(vmx.EXCEPTION_BITMAP, 1 << 13)
    assert g.run() == vmx.EXIT_REASON_EXCEPTION_NMI     # no x2APIC behind it: #GP
    assert g.read(vmx.VM_EXIT_INTR_INFO) & 0xFF == 13
    assert g.reg("rbx") == 0x60


# ---- the TLB never bypasses the APIC-access page -----------------------------------------

def test_cached_translation_does_not_bypass_a_new_apic_access_page():
    data = 0x200000
    g = ApicGuest(f"""
        mov eax, dword ptr [{data + 0x20:#x}]
        mov dword ptr [{data + 0x80:#x}], 0x11
        hlt
        mov ebx, dword ptr [{data + 0x20:#x}]
        mov dword ptr [{data + 0x80:#x}], 0x22
        hlt
        mov ecx, dword ptr [{data + 0x20:#x}]
        hlt""", paging=True)
    g.g.write(data + 0x20, struct.pack("<I", 0xAAAA))
    g.controls(regs=True, access=False)
    assert g.run() == vmx.EXIT_REASON_HLT                # the page is plain RAM, cached
    assert g.reg("rax") == 0xAAAA
    g.skip()
    g.controls(regs=True)
    g.write(vmx.APIC_ACCESS_ADDR, g.vm.memslots.get(0).hpa_of(data))
    g.set_reg32(0x20, 0x0300_0000)
    assert g.run() == vmx.EXIT_REASON_HLT                # now it is the APIC-access page
    assert g.reg("rbx") == 0x0300_0000
    assert g.reg32(0x80) == 0x22 and g.g.read(data + 0x80, 4) == struct.pack("<I", 0x11)
    g.skip()
    g.controls(regs=True, access=False)
    assert g.run() == vmx.EXIT_REASON_HLT                # and RAM again
    assert g.reg("rcx") == 0xAAAA


# ---- VM-entry checks --------------------------------------------------------------------

def _valid_apicv_guest():
    g = ApicGuest("hlt")
    g.controls(regs=True, vid=True)
    return g


def _break_virtual_apic_alignment(g):
    g.write(vmx.VIRTUAL_APIC_PAGE_ADDR, g.vcpu.apicv.page_hpa | 0x800)


def _break_virtual_apic_width(g):
    g.write(vmx.VIRTUAL_APIC_PAGE_ADDR, 1 << 40)


def _break_tpr_threshold_reserved_bits(g):
    g.controls(regs=False, vid=False)
    g.write(vmx.TPR_THRESHOLD, 0x10)


def _break_tpr_threshold_above_vtpr(g):
    g.controls(access=False)
    g.set_reg32(0x80, 0x30)
    g.write(vmx.TPR_THRESHOLD, 4)


def _break_x2apic_with_apic_accesses(g):
    g.controls(x2apic=True, regs=True, vid=True)


def _break_vid_without_external_interrupt_exiting(g):
    g.write(vmx.PIN_BASED_VM_EXEC_CONTROL,
            g.read(vmx.PIN_BASED_VM_EXEC_CONTROL) & ~vmx.PIN_BASED_EXT_INTR_MASK)


def _break_apic_access_alignment(g):
    g.write(vmx.APIC_ACCESS_ADDR, g.access_hpa | 0x10)


def _break_register_virtualization_without_tpr_shadow(g):
    g.controls(tpr_shadow=False, regs=True)


def _break_vid_without_tpr_shadow(g):
    g.controls(tpr_shadow=False, vid=True)


def _break_x2apic_without_tpr_shadow(g):
    g.controls(tpr_shadow=False, access=False, x2apic=True)


def _break_posted_without_vid(g):
    _enable_posted(g)
    g.controls(regs=True, vid=False)


def _break_posted_without_acknowledge_on_exit(g):
    _enable_posted(g)
    g.write(vmx.VM_EXIT_CONTROLS, g.read(vmx.VM_EXIT_CONTROLS) & ~vmx.VM_EXIT_ACK_INTR_ON_EXIT)


def _break_posted_notification_vector(g):
    _enable_posted(g)
    g.write(vmx.POSTED_INTR_NV, 0x1E9)


def _break_posted_descriptor_alignment(g):
    _enable_posted(g)
    g.write(vmx.POSTED_INTR_DESC_ADDR, g.access_hpa + 0x20)


def _enable_posted(g):
    g.write(vmx.PIN_BASED_VM_EXEC_CONTROL,
            g.read(vmx.PIN_BASED_VM_EXEC_CONTROL) | vmx.PIN_BASED_POSTED_INTR)
    g.write(vmx.POSTED_INTR_NV, NOTIFY)
    g.write(vmx.POSTED_INTR_DESC_ADDR, g.access_hpa + 0x40)


@pytest.mark.parametrize("breaker", [
    _break_virtual_apic_alignment, _break_virtual_apic_width, _break_tpr_threshold_reserved_bits,
    _break_tpr_threshold_above_vtpr, _break_x2apic_with_apic_accesses,
    _break_vid_without_external_interrupt_exiting, _break_apic_access_alignment,
    _break_register_virtualization_without_tpr_shadow, _break_vid_without_tpr_shadow,
    _break_x2apic_without_tpr_shadow, _break_posted_without_vid,
    _break_posted_without_acknowledge_on_exit, _break_posted_notification_vector,
    _break_posted_descriptor_alignment,
])
def test_entry_check_fails_with_invalid_control_field(breaker):
    g = _valid_apicv_guest()
    breaker(g)
    assert g.enter() == vmx.VMX_FAIL_VALID
    assert g.read(vmx.VM_INSTRUCTION_ERROR) == ERR_INVALID_CONTROL


def test_entry_checks_pass_for_valid_settings():
    g = _valid_apicv_guest()
    assert g.run() == vmx.EXIT_REASON_HLT
    g = ApicGuest("hlt")
    g.controls(access=False)
    g.set_reg32(0x80, 0x40)
    g.write(vmx.TPR_THRESHOLD, 4)                        # equal is allowed
    assert g.run() == vmx.EXIT_REASON_HLT
    g = _valid_apicv_guest()
    _enable_posted(g)
    assert g.run() == vmx.EXIT_REASON_HLT


def test_capability_msrs_advertise_apic_virtualization():
    g = ApicGuest("hlt")
    allowed = g.vcpu.rdmsr_root(vmx.MSR_IA32_VMX_TRUE_PROCBASED_CTLS) >> 32
    allowed2 = g.vcpu.rdmsr_root(vmx.MSR_IA32_VMX_PROCBASED_CTLS2) >> 32
    assert allowed & vmx.CPU_BASED_TPR_SHADOW
    assert g.vcpu.rdmsr_root(vmx.MSR_IA32_VMX_TRUE_PINBASED_CTLS) >> 32 & vmx.PIN_BASED_POSTED_INTR
    for bit in (vmx.SECONDARY_EXEC_VIRTUALIZE_APIC_ACCESSES, vmx.SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE,
                vmx.SECONDARY_EXEC_APIC_REGISTER_VIRT, vmx.SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY):
        assert allowed2 & bit
    for reason in (43, 44, 45, 56):
        assert reason in vmx.PRODUCED_EXIT_REASONS
