"""The KVM API of kvm/ through VCPU.run(): string I/O, MMIO, interrupts and events,
MP state, MSRs, CPUID, capabilities and memslots, with small guests from kvm_guest.py."""

import mmap
import struct
import threading
import time

import pytest

from asm import assemble
from kvm import Kvm, KvmError, vmx
from kvm.capabilities import (KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_IRQCHIP, KVM_CAP_NR_MEMSLOTS,
                              KVM_CAP_READONLY_MEM, KVM_CAP_USER_NMI)
from kvm.constants import (KVM_EXIT_HLT, KVM_EXIT_INTR, KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT,
                           KVM_EXIT_IRQ_WINDOW_OPEN, KVM_EXIT_MMIO, KVM_MEM_LOG_DIRTY_PAGES,
                           KVM_MEM_READONLY, KVM_MP_STATE_HALTED,
                           KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_SIPI_RECEIVED,
                           KVM_VCPUEVENT_VALID_SHADOW, KVM_VCPUEVENT_VALID_SIPI_VECTOR, KVM_X86_SHADOW_INT_STI)
from kvm.dirty_log import dirty_pages
from kvm.structs import ExceptionState, VcpuEvents
from kvm_guest import CODE_GPA, DATA_GPA, USER_CODE32, USER_DATA32, KvmGuest

PF_HANDLER = 0x800     # offset of the #PF handler in the test code (.org)


def io_exits(g, fill=None, limit=100):
    """Run until HLT, collecting (direction, port, size, count, data) of the I/O exits;
    IN exits are answered with fill(k) for their k-th byte overall."""
    exits = []
    served = 0
    for _ in range(limit):
        run = g.run()
        if run.exit_reason == KVM_EXIT_HLT:
            return exits
        assert run.exit_reason == KVM_EXIT_IO, run
        io = run.io
        assert len(io.data) == io.size * io.count
        if io.direction == KVM_EXIT_IO_IN:
            io.data[:] = bytes(fill(served + k) for k in range(len(io.data)))
            served += len(io.data)
        exits.append((io.direction, io.port, io.size, io.count, bytes(io.data)))
    raise AssertionError("the guest did not halt")


# ---- string I/O -------------------------------------------------------------------------

def test_rep_outsb_is_one_exit_with_the_whole_buffer():
    g = KvmGuest("mov dx, 0x3f8\n rep outsb\n hlt")
    g.write(DATA_GPA, b"hello, world")
    g.set(rsi=DATA_GPA, rcx=12)
    assert io_exits(g) == [(KVM_EXIT_IO_OUT, 0x3F8, 1, 12, b"hello, world")]
    assert (g.reg("rsi"), g.reg("rcx")) == (DATA_GPA + 12, 0)
    assert g.reg("rip") == CODE_GPA + len(g.code)


def test_rep_outsw_splits_at_the_page_boundary():
    g = KvmGuest("mov dx, 0x80\n rep outsw\n hlt")
    data = bytes(range(16))
    g.write(DATA_GPA + 0x1000 - 6, data)
    g.set(rsi=DATA_GPA + 0x1000 - 6, rcx=8)
    assert io_exits(g) == [(KVM_EXIT_IO_OUT, 0x80, 2, 3, data[:6]), (KVM_EXIT_IO_OUT, 0x80, 2, 5, data[6:])]
    assert (g.reg("rsi"), g.reg("rcx")) == (DATA_GPA + 0x1000 + 10, 0)


def test_outsd_element_straddling_two_pages_goes_alone():
    g = KvmGuest("mov dx, 0x80\n rep outsd\n hlt")
    g.write(DATA_GPA + 0x1000 - 2, b"ABCDEFGH")
    g.set(rsi=DATA_GPA + 0x1000 - 2, rcx=2)
    assert io_exits(g) == [(KVM_EXIT_IO_OUT, 0x80, 4, 1, b"ABCD"), (KVM_EXIT_IO_OUT, 0x80, 4, 1, b"EFGH")]


def test_rep_insb_writes_guest_memory_on_the_next_run():
    g = KvmGuest("mov dx, 0x60\n rep insb\n hlt")
    g.set(rdi=DATA_GPA, rcx=5)
    run = g.run()
    assert (run.exit_reason, run.io.direction, run.io.count) == (KVM_EXIT_IO, KVM_EXIT_IO_IN, 5)
    run.io.data[:] = b"keys!"
    assert g.read(DATA_GPA, 5) == bytes(5)        # not before the exit completes
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.read(DATA_GPA, 5) == b"keys!"
    assert (g.reg("rdi"), g.reg("rcx")) == (DATA_GPA + 5, 0)


def test_rep_insd_backwards_fills_descending_addresses():
    g = KvmGuest("std\n mov dx, 0x60\n rep insd\n cld\n hlt")
    g.set(rdi=DATA_GPA + 0x10, rcx=3)
    exits = io_exits(g, fill=lambda k: k)
    assert [e[3] for e in exits] == [3]
    # element 0 (bytes 0-3 of the buffer) lands at rdi, element 1 below it, ...
    assert g.read(DATA_GPA + 0x8, 12) == bytes([8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3])
    assert g.reg("rdi") == DATA_GPA + 0x10 - 12


def test_rep_outsb_backwards_across_a_page():
    g = KvmGuest("std\n mov dx, 0x80\n rep outsb\n cld\n hlt")
    g.write(DATA_GPA + 0xFFE, b"abcd")              # 0xffe 0xfff | 0x1000 0x1001
    g.set(rsi=DATA_GPA + 0x1001, rcx=4)
    assert [e[3:] for e in io_exits(g)] == [(2, b"dc"), (2, b"ba")]
    assert g.reg("rsi") == DATA_GPA + 0xFFE - 1


def test_single_outsb_and_insw():
    g = KvmGuest("mov dx, 0x70\n outsb\n insw\n hlt")
    g.write(DATA_GPA, b"Z")
    g.set(rsi=DATA_GPA, rdi=DATA_GPA + 0x20, rcx=99)
    exits = io_exits(g, fill=lambda k: 0x41 + k)
    assert exits == [(KVM_EXIT_IO_OUT, 0x70, 1, 1, b"Z"), (KVM_EXIT_IO_IN, 0x70, 2, 1, b"AB")]
    assert g.read(DATA_GPA + 0x20, 2) == b"AB"
    assert (g.reg("rsi"), g.reg("rdi"), g.reg("rcx")) == (DATA_GPA + 1, DATA_GPA + 0x22, 99)


def test_16bit_address_size_wraps_si_and_updates_only_cx():
    # real mode: DS:SI with SI near the top of the segment; the offset wraps at 64 KiB
    g = KvmGuest("mov ax, 0x1000\n mov ds, ax\n mov dx, 0x80\n rep outsb\n hlt", mode="real16")
    g.write(0x10000 + 0xFFFE, b"xy")
    g.write(0x10000, b"z")
    g.set(rsi=0xABCD0000 + 0xFFFE, rcx=0x55550003)
    assert [e[3:] for e in io_exits(g)] == [(2, b"xy"), (1, b"z")]
    assert (g.reg("rsi"), g.reg("rcx")) == (0xABCD0001, 0x55550000)


def test_32bit_address_size_in_16bit_code():
    g = KvmGuest("mov dx, 0x80\n addr32 rep outsw\n hlt", mode="real16")
    s = g.vcpu.get_sregs()
    s.ds.limit, s.ds.g = 0xFFFFFFFF, 1          # "unreal" mode: ESI may pass 64 KiB
    g.vcpu.set_sregs(s)
    g.write(0x20000, b"0123")
    g.set(rsi=0x20000, rcx=2)
    assert io_exits(g) == [(KVM_EXIT_IO_OUT, 0x80, 2, 2, b"0123")]
    assert g.reg("rsi") == 0x20004


def test_64bit_rep_insd_and_outsw_with_segment_override():
    g = KvmGuest("mov dx, 0x90\n rep insd\n mov rcx, 2\n mov rsi, 0x10\n gs rep outsw\n hlt",
                 mode="long64")
    s = g.vcpu.get_sregs()
    s.gs.base = DATA_GPA + 0x1000     # GS keeps its base in 64-bit mode
    g.vcpu.set_sregs(s)
    g.write(DATA_GPA + 0x1010, b"gsgs")
    g.set(rdi=DATA_GPA + 0x200000, rcx=4)          # in a 2 MiB page
    exits = io_exits(g, fill=lambda k: k)
    assert exits[0][:4] == (KVM_EXIT_IO_IN, 0x90, 4, 4)
    assert g.read(DATA_GPA + 0x200000, 16) == bytes(range(16))
    assert exits[1] == (KVM_EXIT_IO_OUT, 0x90, 2, 2, b"gsgs")


def test_64bit_addr32_rep_outsb_zero_extends_esi():
    g = KvmGuest("mov dx, 0x90\n addr32 rep outsb\n hlt", mode="long64")
    g.write(DATA_GPA, b"hi")
    g.set(rsi=(0xDEAD << 32) | DATA_GPA, rcx=2)
    assert io_exits(g)[0][3:] == (2, b"hi")
    assert g.reg("rsi") == DATA_GPA + 2


def test_rep_insb_over_three_pages():
    g = KvmGuest("mov dx, 0x60\n rep insb\n hlt")
    g.set(rdi=DATA_GPA + 0x800, rcx=0x2000)
    exits = io_exits(g, fill=lambda k: k & 0xFF)
    assert [e[3] for e in exits] == [0x800, 0x1000, 0x800]
    assert g.read(DATA_GPA + 0x800, 0x2000) == bytes(k & 0xFF for k in range(0x2000))


PF_GUEST = f"""
    mov dx, 0x80
    rep outsb
    hlt
    .org {PF_HANDLER}
    pop eax                  # error code
    mov ebx, cr2
    hlt
"""


def test_string_io_on_an_unmapped_page_injects_page_fault():
    g = KvmGuest(PF_GUEST, paging=True)
    g.set_idt_gate(14, CODE_GPA + PF_HANDLER)
    g.write(DATA_GPA + 0xFFC, b"okay")
    g.unmap(DATA_GPA + 0x1000)
    g.set(rsi=DATA_GPA + 0xFFC, rcx=8)
    assert io_exits(g) == [(KVM_EXIT_IO_OUT, 0x80, 1, 4, b"okay")]
    assert (g.reg("rbx"), g.reg("rax")) == (DATA_GPA + 0x1000, 0)   # not present, read, supervisor
    assert g.reg("rcx") == 4                                         # the rest is left to redo


def test_ins_into_a_read_only_page_faults_with_the_write_error_code():
    g = KvmGuest(PF_GUEST.replace("rep outsb", "insw"), paging=True)
    g.set_idt_gate(14, CODE_GPA + PF_HANDLER)
    g.set_pte_flags(DATA_GPA, 1)                   # present, read-only (CR0.WP is set)
    g.set(rdi=DATA_GPA)
    assert io_exits(g) == []
    assert (g.reg("rbx"), g.reg("rax")) == (DATA_GPA, 3)   # present, write


# ---- KVM_TRANSLATE ---------------------------------------------------------------------

def test_translate_without_paging_is_identity():
    g = KvmGuest("hlt")
    t = g.vcpu.translate(0x12345)
    assert (t.physical_address, t.valid, t.writeable, t.usermode) == (0x12345, 1, 1, 1)


def test_translate_walks_the_guest_page_tables():
    g = KvmGuest("hlt", paging=True)
    g.write(g.pte_gpa(0x5000), struct.pack("<I", 0x7000 | 1))      # 0x5000 -> 0x7000, RO, supervisor
    t = g.vcpu.translate(0x5123)
    assert (t.physical_address, t.valid, t.writeable, t.usermode) == (0x7123, 1, 0, 0)
    assert g.read(g.pte_gpa(0x5000), 4) == struct.pack("<I", 0x7000 | 1 | 0x20)   # accessed
    g.unmap(0x6000)
    assert g.vcpu.translate(0x6000).valid == 0
    t = g.vcpu.translate(0x3000)
    assert (t.physical_address, t.writeable, t.usermode) == (0x3000, 1, 1)
    assert not g.read(g.pte_gpa(0x3000), 4)[0] & 0x40      # probing a write left D alone


def test_translate_in_64bit_mode_with_a_large_page():
    g = KvmGuest("hlt", mode="long64")
    assert g.vcpu.translate(0x3456789).physical_address == 0x3456789


# ---- MMIO ------------------------------------------------------------------------------

MMIO = 0x30000000      # no memslot: MMIO (identity-mapped by the 64-bit guest's 2 MiB pages)


def mmio_exits(g, answers=(), limit=100):
    """Run until HLT: [(phys_addr, len, is_write, data)]; reads answered from `answers`."""
    answers = list(answers)
    exits = []
    for _ in range(limit):
        run = g.run()
        if run.exit_reason == KVM_EXIT_HLT:
            return exits
        assert run.exit_reason == KVM_EXIT_MMIO, run
        m = run.mmio
        if not m.is_write:
            m.data[:m.len] = answers.pop(0).to_bytes(m.len, "little")
        exits.append((m.phys_addr, m.len, m.is_write, int.from_bytes(m.data[:m.len], "little")))
    raise AssertionError("the guest did not halt")


def test_mmio_writes_of_every_size():
    g = KvmGuest(f"""
        mov byte ptr [{MMIO}], 0x11
        mov word ptr [{MMIO + 2}], 0x2233
        mov dword ptr [{MMIO + 4}], 0x44556677
        mov rax, 0x8899aabbccddeeff
        mov [{MMIO + 8}], rax
        hlt""", mode="long64")
    assert mmio_exits(g) == [(MMIO, 1, 1, 0x11), (MMIO + 2, 2, 1, 0x2233), (MMIO + 4, 4, 1, 0x44556677),
                             (MMIO + 8, 8, 1, 0x8899AABBCCDDEEFF)]


def test_mmio_reads_of_every_size_complete_on_the_next_run():
    g = KvmGuest(f"""
        mov al, [{MMIO}]
        mov bx, [{MMIO + 2}]
        mov ecx, [{MMIO + 4}]
        mov rdx, [{MMIO + 8}]
        hlt""", mode="long64")
    g.set(rax=-1, rbx=-1, rcx=-1)
    exits = mmio_exits(g, answers=[0x12, 0x3456, 0x789ABCDE, 0x0123456789ABCDEF])
    assert [(a, n, w) for a, n, w, _ in exits] == [(MMIO, 1, 0), (MMIO + 2, 2, 0), (MMIO + 4, 4, 0), (MMIO + 8, 8, 0)]
    r = g.vcpu.get_regs()
    assert (r.rax, r.rbx, r.rcx, r.rdx) == ((1 << 64) - 0x100 + 0x12, (1 << 64) - 0x10000 + 0x3456,
                                            0x789ABCDE, 0x0123456789ABCDEF)


def test_rep_movs_from_ram_to_mmio_and_back():
    g = KvmGuest(f"""
        mov rsi, {DATA_GPA}
        mov rdi, {MMIO + 0x100}
        mov rcx, 3
        rep movsd
        mov rsi, {MMIO + 0x200}
        mov rdi, {DATA_GPA + 0x40}
        mov rcx, 2
        rep movsw
        hlt""", mode="long64")
    g.write(DATA_GPA, struct.pack("<3I", 0xA1, 0xB2, 0xC3))
    exits = mmio_exits(g, answers=[0x1111, 0x2222])
    assert exits == [(MMIO + 0x100, 4, 1, 0xA1), (MMIO + 0x104, 4, 1, 0xB2), (MMIO + 0x108, 4, 1, 0xC3),
                     (MMIO + 0x200, 2, 0, 0x1111), (MMIO + 0x202, 2, 0, 0x2222)]
    assert g.read(DATA_GPA + 0x40, 4) == struct.pack("<2H", 0x1111, 0x2222)
    assert (g.reg("rsi"), g.reg("rdi"), g.reg("rcx")) == (MMIO + 0x204, DATA_GPA + 0x44, 0)


def test_mmio_instruction_that_faults_delivers_the_exception_to_the_guest():
    # DIV by an MMIO byte that reads as 0: #DE after the read, with nothing written
    g = KvmGuest(f"""
        mov eax, 1234
        div byte ptr [{MMIO}]
        hlt
        .org {PF_HANDLER}
        mov rbx, [rsp]          # the faulting RIP
        hlt""", mode="long64")
    g.set_idt_gate(0, CODE_GPA + PF_HANDLER)
    assert mmio_exits(g, answers=[0]) == [(MMIO, 1, 0, 0)]
    assert g.reg("rbx") == CODE_GPA + 5             # the DIV, not the HLT after it
    assert g.reg("rax") == 1234


def test_movs_from_mmio_to_an_unmapped_page_injects_page_fault():
    g = KvmGuest(f"""
        mov rsi, {MMIO}
        mov rdi, {DATA_GPA}
        movsd
        hlt
        .org {PF_HANDLER}
        pop rax
        mov rbx, cr2
        hlt""", mode="long64")
    g.set_idt_gate(14, CODE_GPA + PF_HANDLER)
    g.unmap(DATA_GPA)
    assert mmio_exits(g, answers=[0x5A5A]) == [(MMIO, 4, 0, 0x5A5A)]
    assert (g.reg("rbx"), g.reg("rax")) == (DATA_GPA, 2)      # not present, write
    assert g.reg("rsi") == MMIO                               # nothing retired


# ---- KVM_RUN control: immediate_exit and kick ------------------------------------------------

def test_immediate_exit_completes_pending_io_without_entering():
    g = KvmGuest("in al, 0x60\n hlt")
    run = g.run()
    assert (run.exit_reason, run.io.direction) == (KVM_EXIT_IO, KVM_EXIT_IO_IN)
    run.io.data[:1] = b"\x42"
    run.immediate_exit = 1
    assert g.run().exit_reason == KVM_EXIT_INTR
    assert g.reg("rax") & 0xFF == 0x42                     # the IN completed
    assert g.reg("rip") == CODE_GPA + 2                    # and nothing more ran
    run.immediate_exit = 0
    assert g.run().exit_reason == KVM_EXIT_HLT


def test_kick_from_another_thread_stops_a_spinning_guest_promptly():
    g = KvmGuest("spin: jmp spin")
    kicked_at = []

    def kick():
        kicked_at.append(time.perf_counter())
        g.vcpu.kick()
    timer = threading.Timer(0.2, kick)
    timer.start()
    run = g.vcpu.run()
    returned = time.perf_counter()
    timer.join()
    assert run.exit_reason == KVM_EXIT_INTR
    assert returned - kicked_at[0] < 0.1
    assert g.vcpu.instructions_retired() > 1000            # it really was spinning
    assert g.run(watchdog=0.05).exit_reason == KVM_EXIT_INTR   # and runs on after


def test_reading_capability_msrs_from_another_thread_leaves_the_exits_intact():
    # the monitor's "info vmx" does this while the vCPU runs and reads its exit's fields
    g = KvmGuest("""
        xor eax, eax
    again:
        inc eax
        out 0x80, al
        jmp again""")
    basic = g.vcpu.rdmsr_root(vmx.MSR_IA32_VMX_BASIC)
    reads, stop = [], threading.Event()

    def read_capabilities():
        while not stop.is_set():
            reads.append(g.vcpu.rdmsr_root(vmx.MSR_IA32_VMX_BASIC))
    reader = threading.Thread(target=read_capabilities)
    reader.start()
    try:
        for k in range(1, 3001):
            run = g.run()
            assert (run.exit_reason, run.io.port, run.io.data[0]) == (KVM_EXIT_IO, 0x80, k & 0xFF)
    finally:
        stop.set()
        reader.join()
    assert len(reads) > 100 and set(reads) == {basic}


# ---- interrupts and NMIs ---------------------------------------------------------------------

HANDLERS = 0x800       # one handler per vector 0x30..0x33 at HANDLERS + 16 * (vector - 0x30)

INTR_GUEST = "\n".join([
    "{body}",
    f".org {HANDLERS}",
    *[f".org {HANDLERS + 16 * k}\n mov eax, {0x30 + k}\n mov ebx, [esp]\n hlt" for k in range(4)],
])


def intr_guest(body, **kw):
    g = KvmGuest(INTR_GUEST.format(body=body), **kw)
    for k in range(4):
        g.set_idt_gate(0x30 + k, CODE_GPA + HANDLERS + 16 * k)
    return g


def spin_until_kicked(g, seconds=0.05):
    run = g.run(watchdog=seconds)
    assert run.exit_reason == KVM_EXIT_INTR
    return run


def test_interrupt_is_injected_when_ready():
    g = intr_guest("sti\n spin: jmp spin")
    run = spin_until_kicked(g)
    assert run.if_flag == 1 and run.ready_for_interrupt_injection == 1
    g.vcpu.interrupt(0x32)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 0x32
    assert g.reg("rbx") == CODE_GPA + 1                    # interrupted in the spin loop
    assert not g.vcpu.get_regs().rflags & 0x200            # an interrupt gate clears IF


def test_request_interrupt_window_exits_when_the_guest_enables_interrupts():
    g = intr_guest("cli\n out 0x80, al\n sti\n nop\n spin: jmp spin")
    g.vcpu.kvm_run.request_interrupt_window = 1
    run = g.run()
    assert run.exit_reason == KVM_EXIT_IO and run.ready_for_interrupt_injection == 0
    run = g.run()
    assert run.exit_reason == KVM_EXIT_IRQ_WINDOW_OPEN
    assert run.ready_for_interrupt_injection == 1 and run.if_flag == 1
    assert g.reg("rip") == CODE_GPA + 5                    # STI's shadow covered the NOP
    run.request_interrupt_window = 0
    g.vcpu.interrupt(0x31)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert (g.reg("rax"), g.reg("rbx")) == (0x31, CODE_GPA + 5)


def test_interrupt_queued_while_disabled_waits_for_sti():
    g = intr_guest("cli\n out 0x80, al\n mov ecx, 7\n sti\n nop\n spin: jmp spin")
    run = g.run()
    assert run.exit_reason == KVM_EXIT_IO
    g.vcpu.interrupt(0x33)
    assert g.vcpu.get_vcpu_events().interrupt.injected == 1
    with pytest.raises(KvmError):
        g.vcpu.interrupt(0x30)                     # one at a time, as KVM_INTERRUPT
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert (g.reg("rax"), g.reg("rcx"), g.reg("rbx")) == (0x33, 7, CODE_GPA + 10)


NMI_GUEST = f"""
    cli
    spin: jmp spin
    .org {HANDLERS}
    inc ecx
    out 0x81, al
    iret
"""


def test_nmi_blocks_nmis_until_iret_then_nmi_window_delivers_the_next():
    g = KvmGuest(NMI_GUEST)
    g.set_idt_gate(2, CODE_GPA + HANDLERS)
    g.vcpu.nmi()
    g.vcpu.nmi()
    run = g.run()                                          # first NMI: injected at entry
    assert run.exit_reason == KVM_EXIT_IO and run.io.port == 0x81 and g.reg("rcx") == 1
    ev = g.vcpu.get_vcpu_events()
    assert (ev.nmi.masked, ev.nmi.pending) == (1, 1)       # the second waits for IRET
    run = g.run()
    assert run.exit_reason == KVM_EXIT_IO and g.reg("rcx") == 2
    assert g.vcpu.exit_stats()["NMI_WINDOW"]["count"] == 1
    spin_until_kicked(g)
    ev = g.vcpu.get_vcpu_events()
    assert (ev.nmi.masked, ev.nmi.pending, g.reg("rcx")) == (0, 0, 2)


def test_vcpu_events_inject_an_exception_and_report_shadow_and_nmi_mask():
    g = intr_guest("sti\n nop\n spin: jmp spin")
    g.set_idt_gate(6, CODE_GPA + HANDLERS + 16)            # #UD -> the 0x31 handler
    ev = g.vcpu.get_vcpu_events()
    assert ev.flags & KVM_VCPUEVENT_VALID_SHADOW and ev.exception.injected == 0
    ev.exception = ExceptionState(injected=1, nr=6)
    ev.nmi.masked = 1
    g.vcpu.set_vcpu_events(ev)
    got = g.vcpu.get_vcpu_events()
    assert (got.exception.injected, got.exception.nr, got.nmi.masked) == (1, 6, 1)
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rax") == 0x31
    # an STI shadow set through the events API
    g2 = intr_guest("spin: jmp spin")
    g2.set(rflags=0x202)
    ev = g2.vcpu.get_vcpu_events()
    ev.interrupt.shadow = KVM_X86_SHADOW_INT_STI
    g2.vcpu.set_vcpu_events(ev)
    assert g2.vcpu.get_vcpu_events().interrupt.shadow == KVM_X86_SHADOW_INT_STI
    spin_until_kicked(g2)
    assert g2.vcpu.get_vcpu_events().interrupt.shadow == 0


# ---- MP state ---------------------------------------------------------------------------------

def test_halted_vcpu_sleeps_until_kicked_and_an_interrupt_wakes_it():
    g = intr_guest("spin: jmp spin")
    g.set(rflags=0x202)
    g.vcpu.set_mp_state(KVM_MP_STATE_HALTED)
    assert g.vcpu.get_mp_state() == KVM_MP_STATE_HALTED
    spin_until_kicked(g)
    assert g.vcpu.get_mp_state() == KVM_MP_STATE_HALTED and g.reg("rip") == CODE_GPA
    assert g.vcpu.instructions_retired() == 0
    g.vcpu.interrupt(0x30)
    assert g.run().exit_reason == KVM_EXIT_HLT and g.reg("rax") == 0x30
    assert g.vcpu.get_mp_state() == KVM_MP_STATE_RUNNABLE


def test_init_received_waits_for_sipi_which_starts_real_mode_at_the_vector():
    g = KvmGuest("hlt")
    g.write(0x7000, assemble("mov ax, cs\n hlt", 16, 0))
    g.vcpu.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)
    spin_until_kicked(g)
    assert g.vcpu.get_mp_state() == KVM_MP_STATE_INIT_RECEIVED
    g.vcpu.reset()
    g.vcpu.set_vcpu_events(VcpuEvents(sipi_vector=7, flags=KVM_VCPUEVENT_VALID_SIPI_VECTOR))
    g.vcpu.set_mp_state(KVM_MP_STATE_SIPI_RECEIVED)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") & 0xFFFF == 0x700 and g.reg("rip") == 3
    assert g.vcpu.get_mp_state() == KVM_MP_STATE_RUNNABLE


# ---- MSRs, CPUID, capabilities ------------------------------------------------------------------

STAR, LSTAR, FS_BASE, SYSENTER_EIP, PAT, EFER, TSC = 0xC0000081, 0xC0000082, 0xC0000100, 0x176, 0x277, 0xC0000080, 0x10


def test_get_and_set_msrs_are_the_guest_values():
    g = KvmGuest(f"""
        mov ecx, {STAR}
        rdmsr
        mov r8d, eax
        mov ecx, {FS_BASE}
        rdmsr
        mov r9d, eax
        mov ecx, {PAT}
        rdmsr
        mov r10d, edx
        mov ecx, {LSTAR}
        mov eax, 0x1234
        xor edx, edx
        wrmsr
        hlt""", mode="long64")
    msrs = g.vcpu.get_msrs([EFER, PAT, LSTAR])
    assert msrs == {EFER: 0x500, PAT: 0x0007040600070406, LSTAR: 0}
    assert g.vcpu.set_msrs({STAR: 0x11223344, FS_BASE: 0x5000, SYSENTER_EIP: 0x7777, PAT: 0x0606060606060606}) == 4
    assert g.run().exit_reason == KVM_EXIT_HLT
    r = g.vcpu.get_regs()
    assert (r.r8, r.r9, r.r10) == (0x11223344, 0x5000, 0x06060606)
    assert g.vcpu.get_msrs([LSTAR, SYSENTER_EIP, FS_BASE]) == {LSTAR: 0x1234, SYSENTER_EIP: 0x7777, FS_BASE: 0x5000}
    assert g.vcpu.get_sregs().fs.base == 0x5000
    assert g.vcpu.rdmsr_root(FS_BASE) == 0                  # root mode keeps its own FS base


def test_set_msrs_stops_at_the_first_entry_the_guest_could_not_write():
    g = KvmGuest("hlt", mode="long64")
    assert g.vcpu.set_msrs([(STAR, 1), (0xDEAD, 0), (LSTAR, 2)]) == 1
    assert g.vcpu.set_msrs([(LSTAR, 1 << 60)]) == 0          # not canonical
    assert g.vcpu.set_msrs([(PAT, 0x02)]) == 0               # memory type 2 is reserved
    assert g.vcpu.get_msrs([STAR, 0xDEAD, LSTAR]) == {STAR: 1}


def test_tsc_msr_sets_the_guest_tsc_through_the_offset():
    g = KvmGuest("rdtsc\n hlt")
    assert g.vcpu.set_msrs({TSC: 1 << 50}) == 1
    assert 0 <= g.vcpu.get_msrs([TSC])[TSC] - (1 << 50) < 1 << 34
    g.run()
    guest = (g.reg("rdx") << 32) | (g.reg("rax") & 0xFFFFFFFF)
    assert 0 <= guest - (1 << 50) < 1 << 34
    assert g.vcpu.rdmsr_root(TSC) < 1 << 50                 # the processor's own TSC is untouched


def test_arch_capabilities_rule_out_speculation_flaws():
    """CPUID.7:EDX[29] and the MSR: Linux then sets up no page-table isolation."""
    g = KvmGuest("mov eax, 7\n xor ecx, ecx\n cpuid\n mov esi, edx\n mov ecx, 0x10a\n rdmsr\n hlt")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rsi") & (1 << 29)
    caps = (g.reg("rdx") << 32) | g.reg("rax")
    for bit in (0, 5, 8, 27, 62):     # RDCL_NO (Meltdown), MDS_NO, TAA_NO, RFDS_NO, ITS_NO
        assert caps >> bit & 1, bit


def test_machine_check_banks_are_there_and_clear():
    g = KvmGuest("mov eax, 1\n cpuid\n mov esi, edx\n mov ecx, 0x179\n rdmsr\n mov edi, eax\n"
                 " mov ecx, 0x400\n mov eax, -1\n mov edx, -1\n wrmsr\n xor eax, eax\n xor edx, edx\n"
                 " mov ecx, 0x401\n wrmsr\n rdmsr\n hlt")
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rsi") & (1 << 7) and g.reg("rsi") & (1 << 14)          # MCE, MCA
    assert g.reg("rdi") == 0x100 | 10                                    # MCG_CTL_P, 10 banks
    assert g.vcpu.get_msrs([0x400, 0x401]) == {0x400: (1 << 64) - 1, 0x401: 0}
    assert g.vcpu.set_msrs({0x401: 1}) == 0                              # STATUS can only be cleared
    assert g.vcpu.set_msrs({0x179: 0}) == 0                              # MCG_CAP is read-only


def test_set_cpuid2_changes_what_the_guest_sees():
    g = KvmGuest("xor eax, eax\n cpuid\n hlt")
    entries = g.kvm.get_supported_cpuid()
    leaf0 = next(e for e in entries if e.function == 0)
    assert leaf0.ebx == int.from_bytes(b"Genu", "little")
    leaf0.ebx, leaf0.edx, leaf0.ecx = (int.from_bytes(w, "little") for w in (b"pyhv", b"test", b"cpu!"))
    g.vcpu.set_cpuid2(entries)
    assert g.run().exit_reason == KVM_EXIT_HLT
    r = g.vcpu.get_regs()
    assert struct.pack("<3I", r.rbx, r.rdx, r.rcx) == b"pyhvtestcpu!"
    assert g.vcpu.get_cpuid2()[0].function == 0


def test_check_extension():
    kvm = Kvm()
    assert kvm.check_extension(KVM_CAP_IMMEDIATE_EXIT) == 1
    assert kvm.check_extension(KVM_CAP_READONLY_MEM) == 1
    assert kvm.check_extension(KVM_CAP_NR_MEMSLOTS) == 63
    assert kvm.check_extension(KVM_CAP_IRQCHIP) == 1         # VM.create_irqchip
    assert kvm.create_vm().check_extension(KVM_CAP_USER_NMI) == 1
    assert EFER in kvm.get_msr_index_list()


# ---- memslots ---------------------------------------------------------------------------------

ROM_GPA = 0x400000


def add_slot(g, slot, gpa, size, flags=0, fill=b""):
    buf = mmap.mmap(-1, size)
    buf[:len(fill)] = fill
    g.vm.set_user_memory_region(slot, gpa, size, buf, flags)
    return buf


def test_read_only_slot_reads_memory_and_turns_writes_into_mmio():
    g = KvmGuest(f"""
        mov eax, [{ROM_GPA + 4}]
        mov dword ptr [{ROM_GPA + 8}], 0x99
        add dword ptr [{ROM_GPA + 4}], 1
        hlt""")
    rom = add_slot(g, 1, ROM_GPA, 0x1000, KVM_MEM_READONLY, fill=struct.pack("<3I", 1, 0x1234, 3))
    assert mmio_exits(g) == [(ROM_GPA + 8, 4, 1, 0x99), (ROM_GPA + 4, 4, 1, 0x1235)]
    assert g.reg("rax") == 0x1234
    assert rom[:12] == struct.pack("<3I", 1, 0x1234, 3)     # the ROM did not change


def test_dirty_log_reports_and_clears_pages_written_since_the_last_call():
    g = KvmGuest(f"""
        mov eax, [{ROM_GPA + 0x3000}]
        mov byte ptr [{ROM_GPA + 0x1000}], 1
        mov byte ptr [{ROM_GPA + 0x5fff}], 1
        out 0x80, al
        mov byte ptr [{ROM_GPA + 0x5000}], 2
        mov dx, 0x60
        mov edi, {ROM_GPA + 0x7ffe}
        insw
        out 0x80, al
        hlt""")
    add_slot(g, 1, ROM_GPA, 0x10000, KVM_MEM_LOG_DIRTY_PAGES)
    assert g.run().exit_reason == KVM_EXIT_IO
    log = g.vm.get_dirty_log(1)
    assert len(log) == 8 and dirty_pages(log) == [1, 5]
    assert dirty_pages(g.vm.get_dirty_log(1)) == []           # reading the log cleared it
    run = g.run()                                             # INS, completed on the next run
    run.io.data[:] = b"ab"
    assert g.run().exit_reason == KVM_EXIT_IO
    assert dirty_pages(g.vm.get_dirty_log(1)) == [5, 7]       # rewritten after the flush, and INS
    with pytest.raises(KvmError):
        g.vm.get_dirty_log(0)                                 # slot 0 does not log


def test_deleting_or_moving_a_slot_makes_its_old_range_mmio():
    g = KvmGuest(f"""
        mov eax, [{ROM_GPA}]
        out 0x80, al
        mov ebx, [{ROM_GPA}]
        mov ecx, [{ROM_GPA + 0x100000}]
        out 0x80, al
        mov edx, [{ROM_GPA + 0x100000}]
        hlt""")
    buf = add_slot(g, 1, ROM_GPA, 0x2000, fill=b"\x11\x22\x33\x44")
    assert g.run().exit_reason == KVM_EXIT_IO and g.reg("rax") == 0x44332211
    assert g.vm.ept.lookup(ROM_GPA) is not None
    g.vm.set_user_memory_region(1, ROM_GPA + 0x100000, 0x2000, buf)      # move
    assert g.vm.ept.lookup(ROM_GPA) is None
    run = g.run()
    assert (run.exit_reason, run.mmio.phys_addr, run.mmio.is_write) == (KVM_EXIT_MMIO, ROM_GPA, 0)
    run.mmio.data[:4] = b"MMIO"
    assert g.run().exit_reason == KVM_EXIT_IO
    assert (g.reg("rbx"), g.reg("rcx")) == (int.from_bytes(b"MMIO", "little"), 0x44332211)
    g.vm.set_user_memory_region(1, ROM_GPA + 0x100000, 0, None)          # delete
    run = g.run()
    assert (run.exit_reason, run.mmio.phys_addr) == (KVM_EXIT_MMIO, ROM_GPA + 0x100000)


def vm_rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_a_4gib_vm_costs_only_the_memory_its_guest_touches():
    g = KvmGuest("""
        mov edi, 0x40000000
        mov ecx, 4096
    touch:
        mov byte ptr [edi], 1
        add edi, 4096
        dec ecx
        jnz touch
        hlt""")
    before = vm_rss_kib()
    add_slot(g, 1, 1 << 30, 4 << 30)           # 4 GiB of RAM above the first GiB
    assert g.run().exit_reason == KVM_EXIT_HLT
    grown_mib = (vm_rss_kib() - before) / 1024
    assert 15 <= grown_mib < 24, f"RSS grew by {grown_mib:.1f} MiB"


def test_interrupt_whose_delivery_exits_is_reinjected_from_the_state_before_it():
    # From CPL 3 the delivery reads the TSS, the GDT and the IDT and pushes on the kernel
    # stack: pages EPT does not map yet, so it exits several times midway (having
    # switched stacks already); each time the processor undoes it and kvm/ injects again.
    g = intr_guest("spin: jmp spin")
    g.enter_user_mode(kernel_stack=0x90000)
    g.set(rflags=0x202, rsp=0x70000)
    spin_until_kicked(g)
    g.vcpu.interrupt(0x30)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rax") == 0x30
    frame = struct.unpack("<5I", g.read(0x90000 - 20, 20))
    assert frame == (CODE_GPA, USER_CODE32, 0x202, 0x70000, USER_DATA32)   # EIP CS EFLAGS ESP SS
    assert g.reg("rsp") == 0x90000 - 20
    assert g.vcpu.exit_stats()["EPT_VIOLATION"]["count"] >= 3
