"""The KVM API's data structures: kvm_regs, kvm_sregs (with kvm_segment, kvm_dtable),
kvm_vcpu_events, kvm_xsave, kvm_xcrs, kvm_clock_data and the shared kvm_run exit record."""

from dataclasses import dataclass, field


@dataclass
class Regs:
    rax: int = 0
    rbx: int = 0
    rcx: int = 0
    rdx: int = 0
    rsi: int = 0
    rdi: int = 0
    rsp: int = 0
    rbp: int = 0
    r8: int = 0
    r9: int = 0
    r10: int = 0
    r11: int = 0
    r12: int = 0
    r13: int = 0
    r14: int = 0
    r15: int = 0
    rip: int = 0
    rflags: int = 2


# kvm_regs field order vs. the processor's register numbering
GPR_ORDER = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


@dataclass
class Segment:
    base: int = 0
    limit: int = 0xFFFF
    selector: int = 0
    type: int = 3
    present: int = 1
    dpl: int = 0
    db: int = 0
    s: int = 1
    l: int = 0  # noqa: E741 (kvm_segment's name)
    g: int = 0
    avl: int = 0
    unusable: int = 0

    def access_rights(self) -> int:
        """The VMCS access-rights encoding of this segment."""
        if self.unusable:
            return 1 << 16
        return (self.type & 0xF) | (self.s << 4) | ((self.dpl & 3) << 5) | (self.present << 7) | \
            (self.avl << 12) | (self.l << 13) | (self.db << 14) | (self.g << 15)

    @classmethod
    def from_vmcs(cls, selector: int, base: int, limit: int, ar: int) -> "Segment":
        return cls(base=base, limit=limit, selector=selector, type=ar & 0xF, s=(ar >> 4) & 1,
                   dpl=(ar >> 5) & 3, present=(ar >> 7) & 1, avl=(ar >> 12) & 1, l=(ar >> 13) & 1,
                   db=(ar >> 14) & 1, g=(ar >> 15) & 1, unusable=(ar >> 16) & 1)


@dataclass
class DTable:
    base: int = 0
    limit: int = 0xFFFF


@dataclass
class Sregs:
    cs: Segment = field(default_factory=Segment)
    ds: Segment = field(default_factory=Segment)
    es: Segment = field(default_factory=Segment)
    fs: Segment = field(default_factory=Segment)
    gs: Segment = field(default_factory=Segment)
    ss: Segment = field(default_factory=Segment)
    tr: Segment = field(default_factory=Segment)
    ldt: Segment = field(default_factory=Segment)
    gdt: DTable = field(default_factory=DTable)
    idt: DTable = field(default_factory=DTable)
    cr0: int = 0x60000010
    cr2: int = 0
    cr3: int = 0
    cr4: int = 0
    cr8: int = 0
    efer: int = 0
    apic_base: int = 0xFEE00900
    # bit n of the 256: external interrupt n is queued for injection (KVM_INTERRUPT's,
    # or one whose delivery an exit cut short); KVM_SET_SREGS queues the lowest set bit
    interrupt_bitmap: list = field(default_factory=lambda: [0, 0, 0, 0])


@dataclass
class ExceptionState:
    injected: int = 0
    nr: int = 0
    has_error_code: int = 0
    pending: int = 0
    error_code: int = 0


@dataclass
class InterruptState:
    injected: int = 0
    nr: int = 0
    soft: int = 0
    shadow: int = 0     # KVM_X86_SHADOW_INT_*


@dataclass
class NmiState:
    injected: int = 0
    pending: int = 0
    masked: int = 0


@dataclass
class SmiState:
    """kvm_vcpu_events.smi: there is no SMM here (no KVM_CAP_X86_SMM), so all zero."""
    smm: int = 0
    pending: int = 0
    smm_inside_nmi: int = 0
    latched_init: int = 0


@dataclass
class TripleFaultState:
    """kvm_vcpu_events.triple_fault (with KVM_CAP_X86_TRIPLE_FAULT_EVENT): a triple
    fault is pending; the next KVM_RUN returns KVM_EXIT_SHUTDOWN for it."""
    pending: int = 0


@dataclass
class VcpuEvents:
    """struct kvm_vcpu_events (KVM_GET/SET_VCPU_EVENTS)."""
    exception: ExceptionState = field(default_factory=ExceptionState)
    interrupt: InterruptState = field(default_factory=InterruptState)
    nmi: NmiState = field(default_factory=NmiState)
    sipi_vector: int = 0
    flags: int = 0      # KVM_VCPUEVENT_VALID_*
    smi: SmiState = field(default_factory=SmiState)
    triple_fault: TripleFaultState = field(default_factory=TripleFaultState)
    exception_has_payload: int = 0
    exception_payload: int = 0


@dataclass
class Xsave:
    """struct kvm_xsave (KVM_GET/SET_XSAVE): the 4 KiB XSAVE image in the standard
    (non-compacted) format: the legacy FXSAVE region, the XSAVE header at 512 (XSTATE_BV,
    XCOMP_BV), then the extended components."""
    region: bytearray = field(default_factory=lambda: bytearray(4096))


@dataclass
class Xcr:
    xcr: int = 0
    value: int = 0


@dataclass
class Xcrs:
    """struct kvm_xcrs (KVM_GET/SET_XCRS): the extended control registers (XCR0)."""
    xcrs: list = field(default_factory=list)    # Xcr entries; nr_xcrs is their number
    flags: int = 0

    @property
    def nr_xcrs(self) -> int:
        return len(self.xcrs)


@dataclass
class Translation:
    """struct kvm_translation (KVM_TRANSLATE)."""
    linear_address: int = 0
    physical_address: int = 0
    valid: int = 0
    writeable: int = 0
    usermode: int = 0


@dataclass
class Fpu:
    """struct kvm_fpu (KVM_GET/SET_FPU): the x87 registers as 80-bit values in 16-byte
    slots (physical order, ST(0) first as FXSAVE stores them), the abridged tag word,
    and the SSE registers. The defaults are the state after RESET (FNINIT values)."""
    fpr: list = field(default_factory=lambda: [bytes(16)] * 8)
    fcw: int = 0x37F
    fsw: int = 0
    ftwx: int = 0
    last_opcode: int = 0
    last_ip: int = 0
    last_dp: int = 0
    xmm: list = field(default_factory=lambda: [bytes(16)] * 16)
    mxcsr: int = 0x1F80


@dataclass
class IoExit:
    direction: int = 0
    size: int = 0
    port: int = 0
    count: int = 0
    data: memoryview = None


@dataclass
class MmioExit:
    phys_addr: int = 0
    data: memoryview = None
    len: int = 0
    is_write: int = 0


@dataclass
class FailEntry:
    hardware_entry_failure_reason: int = 0
    cpu: int = 0


@dataclass
class InternalError:
    """kvm_run.internal (KVM_EXIT_INTERNAL_ERROR): ``data`` holds internal.data[0..ndata).
    For KVM_INTERNAL_ERROR_EMULATION it is laid out as kvm_run.emulation_failure: data[0]
    is ``flags``, and with KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES data[1..2]
    hold ``insn_size`` and the 15 ``insn_bytes``."""
    suberror: int = 0
    data: tuple = ()

    @property
    def ndata(self) -> int:
        return len(self.data)

    @property
    def flags(self) -> int:
        return self.data[0] if self.data else 0

    def _insn_words(self) -> bytes:
        return b"".join(w.to_bytes(8, "little") for w in self.data[1:3])

    @property
    def insn_size(self) -> int:
        return self._insn_words()[0]

    @property
    def insn_bytes(self) -> bytes:
        return self._insn_words()[1:1 + self.insn_size]


@dataclass
class SystemEvent:
    """kvm_run.system_event (KVM_EXIT_SYSTEM_EVENT): a KVM_SYSTEM_EVENT_* type and
    data[0..ndata) (KVM_CAP_SYSTEM_EVENT_DATA); the older ``flags`` is data[0]."""
    type: int = 0
    ndata: int = 0
    data: list = field(default_factory=lambda: [0] * 16)

    @property
    def flags(self) -> int:
        return self.data[0]


@dataclass
class HypercallExit:
    """kvm_run.hypercall (KVM_EXIT_HYPERCALL): the hypercall number and arguments;
    userspace puts the result in ``ret``, which the next KVM_RUN writes to RAX.
    ``flags`` has KVM_EXIT_HYPERCALL_LONG_MODE for a hypercall from 64-bit code."""
    nr: int = 0
    args: list = field(default_factory=lambda: [0] * 6)
    ret: int = 0
    flags: int = 0

    @property
    def longmode(self) -> int:
        return self.flags & 1


DR6_INIT, DR7_INIT = 0xFFFF0FF0, 0x400


@dataclass
class DebugRegs:
    """struct kvm_debugregs (KVM_GET/SET_DEBUGREGS)."""
    db: list = field(default_factory=lambda: [0, 0, 0, 0])
    dr6: int = DR6_INIT
    dr7: int = DR7_INIT
    flags: int = 0


@dataclass
class DebugExitArch:
    """struct kvm_debug_exit_arch: what KVM_EXIT_DEBUG reports on x86."""
    exception: int = 0      # 1 (#DB) or 3 (#BP)
    pad: int = 0
    pc: int = 0             # linear address of the instruction
    dr6: int = 0
    dr7: int = 0


@dataclass
class DebugExit:
    arch: DebugExitArch = field(default_factory=DebugExitArch)


@dataclass
class MsrExit:
    """kvm_run.msr (KVM_EXIT_X86_RDMSR/WRMSR): userspace fills ``data`` for a read and
    sets ``error`` to make the guest's instruction #GP instead."""
    error: int = 0
    reason: int = 0     # KVM_MSR_EXIT_REASON_*
    index: int = 0
    data: int = 0


@dataclass
class IoapicEoi:
    """kvm_run.eoi (KVM_EXIT_IOAPIC_EOI)."""
    vector: int = 0


@dataclass
class MsrFilterRange:
    """struct kvm_msr_filter_range: bit i of ``bitmap`` set lets KVM handle MSR base + i
    for the accesses in ``flags``; clear, the access is denied."""
    flags: int          # KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE
    nmsrs: int
    base: int
    bitmap: bytes


@dataclass
class MsrFilter:
    """struct kvm_msr_filter (KVM_X86_SET_MSR_FILTER)."""
    flags: int = 0      # KVM_MSR_FILTER_DEFAULT_ALLOW or _DENY
    ranges: list = field(default_factory=list)


@dataclass
class ClockData:
    """struct kvm_clock_data (KVM_GET_CLOCK / KVM_SET_CLOCK)."""
    clock: int = 0       # kvmclock, ns
    flags: int = 0       # KVM_CLOCK_*
    realtime: int = 0    # host CLOCK_REALTIME ns at the same instant
    host_tsc: int = 0    # host TSC at the same instant


@dataclass
class KvmRun:
    """struct kvm_run: the record of the last exit, and the requests for the next run."""
    request_interrupt_window: int = 0
    immediate_exit: int = 0
    exit_reason: int = 0
    ready_for_interrupt_injection: int = 0
    if_flag: int = 0
    cr8: int = 0
    apic_base: int = 0
    io: IoExit = field(default_factory=IoExit)
    mmio: MmioExit = field(default_factory=MmioExit)
    fail_entry: FailEntry = field(default_factory=FailEntry)
    internal: InternalError = field(default_factory=InternalError)
    system_event: SystemEvent = field(default_factory=SystemEvent)
    hypercall: HypercallExit = field(default_factory=HypercallExit)
    msr: MsrExit = field(default_factory=MsrExit)
    eoi: IoapicEoi = field(default_factory=IoapicEoi)
    debug: DebugExit = field(default_factory=DebugExit)
    hardware_exit_reason: int = 0
