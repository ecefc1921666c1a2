"""Coalesced port writes (KVM_REGISTER_COALESCED_MMIO with KVM_COALESCED_IO_PIO): OUTs to
a registered zone wait in the VM's ring without exiting, in order, until userspace drains
it; INs, OUTs partly outside the zone and OUTs that find the ring full exit as before."""

import pytest

from kvm.capabilities import KVM_CAP_COALESCED_PIO
from kvm.constants import KVM_EXIT_HLT, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT
from kvm.errors import KvmError
from kvm_guest import KvmGuest


def test_outs_to_a_zone_wait_in_the_ring_in_order():
    g = KvmGuest("""
        mov al, 1
        out 0x80, al
        mov ax, 0x0302
        out 0x80, ax
        mov dx, 0x81
        mov al, 4
        out dx, al
        hlt""")
    g.vm.register_coalesced_mmio(0x80, 2, pio=True)
    assert g.vm.check_extension(KVM_CAP_COALESCED_PIO) == 1
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.vm.take_coalesced() == [(0x80, 1, 1), (0x80, 2, 0x0302), (0x81, 1, 4)]
    assert g.vm.take_coalesced() == []


def test_ins_and_outs_outside_the_zone_exit_after_what_is_queued():
    g = KvmGuest("""
        mov eax, 0x11223344
        out 0x80, al
        out 0x80, eax
        in al, 0x80
        hlt""")
    g.vm.register_coalesced_mmio(0x80, 2, pio=True)
    run = g.run()
    assert (run.exit_reason, run.io.direction, run.io.size) == (KVM_EXIT_IO, KVM_EXIT_IO_OUT, 4)
    assert g.vm.take_coalesced() == [(0x80, 1, 0x44)]
    run = g.run()
    assert (run.exit_reason, run.io.direction) == (KVM_EXIT_IO, KVM_EXIT_IO_IN)
    run.io.data[:1] = b"\x00"
    assert g.run().exit_reason == KVM_EXIT_HLT


def test_a_full_ring_makes_the_next_out_exit():
    g = KvmGuest("""
        xor eax, eax
    again:
        out 0x80, al
        inc eax
        cmp eax, 200
        jne again
        hlt""")
    g.vm.register_coalesced_mmio(0x80, 1, pio=True)
    run = g.run()
    assert (run.exit_reason, run.io.port) == (KVM_EXIT_IO, 0x80)
    queued = g.vm.take_coalesced()
    assert [value for _, _, value in queued] == list(range(len(queued))) and len(queued) == 169
    assert run.io.data[0] == 169                      # the OUT that found no room
    g.vm.unregister_coalesced_mmio(0x80, 1, pio=True)
    seen = []
    while (run := g.run()).exit_reason == KVM_EXIT_IO:
        seen.append(run.io.data[0])
    assert run.exit_reason == KVM_EXIT_HLT and seen == list(range(170, 200))


def test_only_port_zones():
    g = KvmGuest("hlt")
    with pytest.raises(KvmError):
        g.vm.register_coalesced_mmio(0xFED00000, 0x1000)
    with pytest.raises(KvmError):
        g.vm.register_coalesced_mmio(0xFFFF, 2, pio=True)
