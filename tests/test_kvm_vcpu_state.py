"""vCPU state through the KVM API: KVM_GET/SET_XSAVE and XCRS, the interrupt bitmap of
KVM_GET/SET_SREGS, the smi and triple_fault parts of KVM_GET/SET_VCPU_EVENTS, the
kvm_run fields (cr8, apic_base, if_flag, ready_for_interrupt_injection,
immediate_exit), KVM_TRANSLATE's fields, and the VM's set_tss_addr and
set_identity_map_addr."""

import struct

import pytest

from kvm import Kvm, KvmError
from kvm.capabilities import (KVM_CAP_SET_IDENTITY_MAP_ADDR, KVM_CAP_SET_TSS_ADDR, KVM_CAP_X86_TRIPLE_FAULT_EVENT,
                              KVM_CAP_XCRS, KVM_CAP_XSAVE)
from kvm.constants import (KVM_EXIT_HLT, KVM_EXIT_INTR, KVM_EXIT_SET_TPR, KVM_EXIT_SHUTDOWN,
                           KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_PAYLOAD, KVM_VCPUEVENT_VALID_SHADOW,
                           KVM_VCPUEVENT_VALID_SMM, KVM_VCPUEVENT_VALID_TRIPLE_FAULT)
from kvm.structs import Xcr, Xcrs
from kvm_guest import CODE_GPA, KvmGuest

HANDLER = CODE_GPA + 0x100
CR4_OSFXSR, CR4_OSXSAVE = 1 << 9, 1 << 18


def with_cr4(g, bits):
    s = g.vcpu.get_sregs()
    s.cr4 |= bits
    g.vcpu.set_sregs(s)
    return g


# ---- KVM_GET/SET_XSAVE, KVM_GET/SET_XCRS --------------------------------------------------

def xsave_header(xsave):
    return struct.unpack_from("<QQ", xsave.region, 512)


def test_xsave_image_is_the_fxsave_region_with_both_components():
    g = KvmGuest("hlt")
    fpu = g.vcpu.get_fpu()
    fpu.xmm[3] = bytes(range(16))
    fpu.fcw = 0x27F
    g.vcpu.set_fpu(fpu)
    xs = g.vcpu.get_xsave()
    assert len(xs.region) == 4096
    assert xsave_header(xs) == (0x3, 0)                        # XSTATE_BV x87|SSE, standard format
    assert struct.unpack_from("<H", xs.region, 0)[0] == 0x27F
    assert xs.region[160 + 48:160 + 64] == bytes(range(16))    # XMM3


def test_set_xsave_loads_the_registers_the_guest_then_sees():
    g = with_cr4(KvmGuest("movd eax, xmm1\nfnstcw [0x100000]\nhlt"), CR4_OSFXSR)
    xs = g.vcpu.get_xsave()
    xs.region[160 + 16:160 + 20] = struct.pack("<I", 0xCAFEF00D)
    xs.region[0:2] = struct.pack("<H", 0x37A)
    g.vcpu.set_xsave(xs)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 0xCAFEF00D
    assert struct.unpack("<H", g.read(0x100000, 2))[0] == 0x37A


def test_components_missing_from_xstate_bv_get_their_initial_state():
    g = KvmGuest("hlt")
    fpu = g.vcpu.get_fpu()
    fpu.xmm[0], fpu.fcw = b"\xff" * 16, 0x27F
    g.vcpu.set_fpu(fpu)
    xs = g.vcpu.get_xsave()
    struct.pack_into("<Q", xs.region, 512, 0x1)                # x87 only: SSE to its init state
    g.vcpu.set_xsave(xs)
    fpu = g.vcpu.get_fpu()
    assert fpu.xmm[0] == bytes(16) and fpu.fcw == 0x27F
    struct.pack_into("<Q", xs.region, 512, 0x2)                # SSE only: x87 to FNINIT's state
    g.vcpu.set_xsave(xs)
    assert g.vcpu.get_fpu().fcw == 0x37F


@pytest.mark.parametrize("offset, value", [
    (512, 0x7),             # XSTATE_BV with AVX, which is not supported
    (520, 1 << 63),         # XCOMP_BV: the compacted format
    (528, 1),               # reserved header bytes
    (24, 1 << 20),          # a reserved MXCSR bit
])
def test_set_xsave_refuses_an_invalid_image(offset, value):
    g = KvmGuest("hlt")
    xs = g.vcpu.get_xsave()
    before = g.vcpu.get_fpu()
    struct.pack_into("<Q" if offset >= 512 else "<I", xs.region, offset, value)
    with pytest.raises(KvmError, match="EINVAL"):
        g.vcpu.set_xsave(xs)
    assert g.vcpu.get_fpu() == before


def test_xcrs_are_xcr0_as_the_guest_reads_it():
    g = with_cr4(KvmGuest("xor ecx, ecx\nxgetbv\nhlt"), CR4_OSXSAVE)
    assert Kvm().check_extension(KVM_CAP_XSAVE) == Kvm().check_extension(KVM_CAP_XCRS) == 1
    xcrs = g.vcpu.get_xcrs()
    assert (xcrs.nr_xcrs, xcrs.flags, xcrs.xcrs) == (1, 0, [Xcr(0, 1)])     # x87 after RESET
    g.vcpu.set_xcrs(Xcrs(xcrs=[Xcr(5, 0xFF), Xcr(0, 3)]))   # other XCR numbers are ignored
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 3 and g.vcpu.get_xcrs().xcrs == [Xcr(0, 3)]


@pytest.mark.parametrize("xcrs", [Xcrs(xcrs=[Xcr(0, 2)]), Xcrs(xcrs=[Xcr(0, 7)]),
                                  Xcrs(xcrs=[Xcr(0, 3)], flags=1), Xcrs(xcrs=[Xcr(1, 1)] * 17)])
def test_set_xcrs_refuses_what_xsetbv_would(xcrs):
    g = KvmGuest("hlt")
    with pytest.raises(KvmError, match="EINVAL"):
        g.vcpu.set_xcrs(xcrs)
    assert g.vcpu.get_xcrs().xcrs == [Xcr(0, 1)]


# ---- KVM_GET/SET_SREGS interrupt_bitmap -----------------------------------------------------

def interrupt_guest(body):
    g = KvmGuest(f"""
        {body}
    .org 0x100
        mov eax, [esp]
        hlt""")
    g.set_idt_gate(0x41, HANDLER)
    g.set_idt_gate(0x30, HANDLER)
    return g


def test_a_queued_interrupt_shows_in_the_interrupt_bitmap():
    g = interrupt_guest("cli\nhlt")
    assert g.vcpu.get_sregs().interrupt_bitmap == [0, 0, 0, 0]
    g.vcpu.interrupt(0x30)                      # IF is clear: it waits
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.vcpu.get_sregs().interrupt_bitmap == [1 << 0x30, 0, 0, 0]


def test_set_sregs_injects_the_lowest_interrupt_of_the_bitmap():
    g = interrupt_guest("sti\nnop\n1: jmp 1b")
    assert g.run(watchdog=0.05).exit_reason == KVM_EXIT_INTR
    s = g.vcpu.get_sregs()
    s.interrupt_bitmap = [0, 1 << (0x41 - 64), 0, 1 << 63]
    g.vcpu.set_sregs(s)
    assert g.vcpu.get_sregs().interrupt_bitmap == [0, 1 << (0x41 - 64), 0, 0]
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rip") == HANDLER + 4           # the handler ran, for vector 0x41's gate
    assert g.vcpu.get_sregs().interrupt_bitmap == [0, 0, 0, 0]


# ---- KVM_GET/SET_VCPU_EVENTS: smi, triple fault, validation ------------------------------------

def test_vcpu_events_report_no_smm():
    g = KvmGuest("hlt")
    ev = g.vcpu.get_vcpu_events()
    assert ev.flags == KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM
    assert (ev.smi.smm, ev.smi.pending, ev.smi.smm_inside_nmi, ev.smi.latched_init) == (0, 0, 0, 0)
    g.vcpu.set_vcpu_events(ev)                  # what was read can be written back


@pytest.mark.parametrize("change", [
    lambda ev: setattr(ev, "flags", ev.flags | 0x40),
    lambda ev: setattr(ev.smi, "smm", 1),
    lambda ev: setattr(ev.smi, "pending", 1),
    lambda ev: setattr(ev, "flags", ev.flags | KVM_VCPUEVENT_VALID_PAYLOAD),
    lambda ev: (setattr(ev.exception, "injected", 1), setattr(ev.exception, "nr", 2)),
    lambda ev: (setattr(ev.exception, "injected", 1), setattr(ev.exception, "nr", 32)),
    lambda ev: setattr(ev, "flags", ev.flags | KVM_VCPUEVENT_VALID_TRIPLE_FAULT),   # capability not enabled
])
def test_set_vcpu_events_refuses_what_kvm_refuses(change):
    g = KvmGuest("hlt")
    ev = g.vcpu.get_vcpu_events()
    change(ev)
    with pytest.raises(KvmError, match="EINVAL"):
        g.vcpu.set_vcpu_events(ev)


def test_a_pending_exception_without_payloads_is_ignored():
    g = KvmGuest("mov eax, 1\nhlt")
    ev = g.vcpu.get_vcpu_events()
    ev.exception.pending, ev.exception.nr = 1, 13
    g.vcpu.set_vcpu_events(ev)
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rax") == 1


def test_a_pending_triple_fault_shuts_the_vcpu_down_at_the_next_run():
    g = KvmGuest("mov eax, 1\nhlt")
    g.vm.enable_cap(KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1)
    ev = g.vcpu.get_vcpu_events()
    assert ev.flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT and ev.triple_fault.pending == 0
    ev.triple_fault.pending = 1
    g.vcpu.set_vcpu_events(ev)
    assert g.vcpu.get_vcpu_events().triple_fault.pending == 1
    assert g.run().exit_reason == KVM_EXIT_SHUTDOWN
    assert g.reg("rip") == CODE_GPA and g.reg("rax") == 0     # the guest did not run
    assert g.vcpu.get_vcpu_events().triple_fault.pending == 0
    assert g.run().exit_reason == KVM_EXIT_HLT


# ---- kvm_run fields -----------------------------------------------------------------------------

def test_kvm_run_reports_if_flag_readiness_and_apic_base():
    g = KvmGuest("cli\nout 0x80, al\nsti\nnop\nout 0x80, al\nhlt")
    run = g.run()
    assert (run.if_flag, run.ready_for_interrupt_injection, run.apic_base) == (0, 0, 0xFEE00900)
    run = g.run()
    assert (run.if_flag, run.ready_for_interrupt_injection) == (1, 1)
    g.vcpu.interrupt(0x30)                      # queued: not ready for another
    s = g.vcpu.get_sregs()
    s.apic_base = 0xFED00800
    g.vcpu.set_sregs(s)
    g.vcpu.kvm_run.immediate_exit = 1
    run = g.vcpu.run()
    assert run.exit_reason == KVM_EXIT_INTR and run.ready_for_interrupt_injection == 0
    assert run.apic_base == 0xFED00800


def test_kvm_run_cr8_goes_in_and_comes_back_out():
    g = KvmGuest("""
        mov rax, cr8
        mov ebx, 2
        mov cr8, rbx
        hlt""", mode="long64")
    g.vcpu.kvm_run.cr8 = 5
    run = g.run()
    assert run.exit_reason == KVM_EXIT_SET_TPR and run.cr8 == 2     # lowered: userspace may inject
    assert g.reg("rax") == 5
    assert g.run().exit_reason == KVM_EXIT_HLT and g.vcpu.get_sregs().cr8 == 2


def test_immediate_exit_returns_before_entering():
    g = KvmGuest("mov eax, 7\nhlt")
    g.vcpu.kvm_run.immediate_exit = 1
    assert g.vcpu.run().exit_reason == KVM_EXIT_INTR
    assert g.reg("rip") == CODE_GPA and g.reg("rax") == 0
    g.vcpu.kvm_run.immediate_exit = 0
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rax") == 7


def test_translate_fills_kvm_translation():
    g = KvmGuest("hlt", paging=True)
    g.set_pte_flags(0x5000, 1 | 4)                              # present, user, read-only
    t = g.vcpu.translate(0x5123)
    assert (t.linear_address, t.physical_address, t.valid, t.writeable, t.usermode) == (0x5123, 0x5123, 1, 0, 1)
    g.unmap(0x6000)
    assert g.vcpu.translate(0x6000).valid == 0


# ---- KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR -----------------------------------------------

def test_tss_address_is_checked_and_kept_and_real_mode_needs_none():
    kvm = Kvm()
    assert kvm.check_extension(KVM_CAP_SET_TSS_ADDR) == 1
    g = KvmGuest("mov ax, 0x1234\nhlt", mode="real16")
    g.vm.set_tss_addr(0xFFFBD000)                  # QEMU's choice; after vCPU creation too
    assert g.vm.tss_addr == 0xFFFBD000
    g.vm.set_tss_addr(0xFFFFD000)                  # the last three pages below 4 GiB
    for bad in (0xFFFFE000, 1 << 32):
        with pytest.raises(KvmError, match="EINVAL"):
            g.vm.set_tss_addr(bad)
    assert g.vm.tss_addr == 0xFFFFD000
    assert g.vm.ept.lookup(0xFFFFD000) is None     # nothing mapped: unrestricted guest
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rax") & 0xFFFF == 0x1234


def test_identity_map_address_only_before_the_vcpus():
    kvm = Kvm()
    assert kvm.check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR) == 1
    vm = kvm.create_vm()
    assert vm.identity_map_addr == 0xFFFBC000
    vm.set_identity_map_addr(0xFEFFC000)
    assert vm.identity_map_addr == 0xFEFFC000
    vm.set_identity_map_addr(0)                    # back to the default
    assert vm.identity_map_addr == 0xFFFBC000
    vm.create_vcpu(0)
    with pytest.raises(KvmError, match="EINVAL"):
        vm.set_identity_map_addr(0xFEFFC000)


def test_an_exception_injected_in_real_mode_pushes_no_error_code():
    # #GP from an MSR KVM does not know: in real mode through the IVT, without the
    # error code (VM entry would refuse one there, with unrestricted guest)
    g = KvmGuest("mov ecx, 0x12345\nrdmsr\nhlt\n.org 0x100\nmov bx, 0x77\nhlt", mode="real16")
    g.write(13 * 4, struct.pack("<HH", HANDLER, 0))
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") & 0xFFFF == 0x77
    assert g.read(0xFFFA, 6) == struct.pack("<HHH", CODE_GPA + 6, 0, 0x2)    # IP CS FLAGS only
