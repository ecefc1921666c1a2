"""Event tracing (VCPU.set_event_trace, behind -d int): every exception goes through the
hypervisor, which shows it to the tracer and delivers it as the processor would have:
the guest must see no difference (error codes, CR2, RF in the frame, #DF and triple
faults, INT n cut short by a fault)."""

from kvm import vmx
from kvm.constants import KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN
from kvm_guest import CODE_GPA, DATA_GPA, IDT_GPA, STACK_TOP, KvmGuest

HANDLER = 0x200
EXC_DE, EXC_UD, EXC_DF, EXC_NP, EXC_GP, EXC_PF = 0, 6, 8, 11, 13, 14
UNMAPPED = 0x40000000           # beyond the guest's page tables (first 1 GiB)
RFLAGS_RF = 1 << 16


class Tracer:
    def __init__(self):
        self.events = []

    def __call__(self, event, vcpu, interrupted):
        self.events.append((event.type, event.vector, event.error_code,
                            None if interrupted is None else interrupted.vector))


def guest(body: str, vectors=(), traced=True):
    """`body` then HLT in long mode; `vectors` go to a handler that saves CR2 in RBX and
    the frame's RIP and RFLAGS (past any error code) in RSI and RDI, then halts."""
    g = KvmGuest(f"{body}\n hlt\n .org {HANDLER}\n mov rbx, cr2\n mov rsi, [rsp + r8]\n"
                 f" mov rdi, [rsp + r8 + 16]\n hlt", mode="long64")
    for vector in vectors:
        g.set_idt_gate(vector, CODE_GPA + HANDLER)
    tracer = Tracer()
    if traced:
        g.vcpu.set_event_trace(tracer)
    return g, tracer


def test_a_traced_page_fault_reaches_the_guest_unchanged():
    for traced in (False, True):
        g, tracer = guest(f"mov rax, [{UNMAPPED}]", vectors=[EXC_PF], traced=traced)
        g.set(r8=8)
        assert g.run().exit_reason == KVM_EXIT_HLT
        assert (g.reg("rbx"), g.reg("rsi")) == (UNMAPPED, CODE_GPA)
        assert g.reg("rdi") & RFLAGS_RF                   # a fault: RF = 1 in the frame
        assert g.read(STACK_TOP - 48, 8) == (0).to_bytes(8, "little")   # error code: not present, read
        assert tracer.events == ([(vmx.INTR_TYPE_HARD_EXCEPTION, EXC_PF, 0, None)] if traced else [])


def test_int_n_through_a_not_present_gate_faults_once():
    g, tracer = guest("int 0x82", vectors=[EXC_NP])
    g.set_idt_gate(0x82, CODE_GPA)
    g.write(IDT_GPA + 0x82 * 16 + 5, b"\x0e")                       # an interrupt gate, not present
    g.set(r8=8)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rsi") == CODE_GPA                                   # at the INT, which is not redone
    assert tracer.events == [(vmx.INTR_TYPE_HARD_EXCEPTION, EXC_NP, 0x82 * 8 + 2, None)]   # IDT index | IDT


def test_faults_while_delivering_become_a_double_fault():
    g, tracer = guest("ud2", vectors=[EXC_DF])
    g.set_idt_gate(EXC_UD, CODE_GPA)
    g.write(IDT_GPA + EXC_UD * 16 + 5, b"\x0e")                      # #UD -> #NP -> #DF
    g.set(r8=8)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rsi") == CODE_GPA
    assert g.read(STACK_TOP - 48, 8) == bytes(8)                      # #DF's error code
    assert [e[1] for e in tracer.events] == [EXC_UD, EXC_NP, EXC_DF]


def test_no_idt_is_a_triple_fault_traced_or_not():
    for traced in (False, True):
        g, tracer = guest("ud2", traced=traced)
        s = g.vcpu.get_sregs()
        s.idt.limit = 0
        g.vcpu.set_sregs(s)
        assert g.run().exit_reason == KVM_EXIT_SHUTDOWN
        assert g.reg("rip") == CODE_GPA
        if traced:
            assert [e[1] for e in tracer.events][:2] == [EXC_UD, EXC_GP]


def test_an_injected_interrupt_is_traced():
    g, tracer = guest("sti\n nop\n nop", vectors=[0x30])
    g.set(r8=0)
    g.vcpu.interrupt(0x30)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert tracer.events == [(vmx.INTR_TYPE_EXT_INTR, 0x30, None, None)]
