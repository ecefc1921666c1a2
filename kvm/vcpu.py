"""A virtual CPU: one logical processor of the silicon in VMX operation with its vmcs01,
and KVM's vCPU API over it (KVM_RUN, KVM_GET/SET_REGS, KVM_GET/SET_SREGS, ...)."""

import threading
import time

from kvm import vmx
from kvm._silicon import ffi, lib
from kvm.apicv import APIC_DEFAULT_BASE, APIC_TPR, ApicVirtualization
from kvm.constants import (KVM_EXIT_FAIL_ENTRY, KVM_EXIT_INTR, KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT,
                           KVM_VCPUEVENT_VALID_SIPI_VECTOR)
from kvm.cpuid import XCR0_SUPPORTED, supported_cpuid
from kvm.errors import KvmError
from kvm.events import Events
from kvm.exits import handle_exit
from kvm.guest_debug import GuestDebug
from kvm.mp_state import MpState
from kvm.msrs import GuestMsrs
from kvm.stats import ExitStats
from kvm.structs import GPR_ORDER, DTable, Fpu, KvmRun, Regs, Segment, Sregs
from kvm.translate import kvm_translate
from kvm.tsc import tsc_khz
from kvm.xsave import get_xcrs, get_xsave, set_xcrs, set_xsave
from kvm.vmcs_setup import setup_vmcs

SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs", "ldt", "tr")
_SEG_FIELD_PREFIX = {"es": "ES", "cs": "CS", "ss": "SS", "ds": "DS", "fs": "FS", "gs": "GS",
                     "ldt": "LDTR", "tr": "TR"}
CR0_NE = 0x20
CR4_VMXE = 0x2000
EFER_LMA = 0x400
TRACED_EXCEPTIONS = 0xFFFFFFFF & ~(1 << 1)     # all but #DB


class VmxError(Exception):
    """A VMX instruction failed: the hypervisor broke the rules (a bug here)."""


class VCPU:
    def __init__(self, vm, vcpu_id: int):
        self.vm = vm
        self.id = vcpu_id
        self.vpid = vcpu_id + 1
        hostmem = vm.hostmem
        self.cpu = ffi.gc(lib.cpu_new(hostmem.silicon, vcpu_id), lib.cpu_free)
        # kvm/'s compiled half: the exits handled without returning to Python
        self.root = ffi.gc(lib.root_vcpu_new(vm.root, self.cpu, vcpu_id), lib.root_vcpu_free)
        lib.root_vcpu_set_xcr0_supported(self.root, XCR0_SUPPORTED)
        self._u64 = ffi.new("uint64_t *")
        self._gprs = ffi.new("uint64_t[16]")
        self.mmio = ffi.new("struct mmio_emulation *")
        self.kvm_run = KvmRun()
        self.io_page = bytearray(4096)
        self.stats = ExitStats(lib.root_vcpu_stats(self.root))
        self.msrs = GuestMsrs(self)
        self._cpuid = []
        self.set_cpuid2(supported_cpuid())
        self.completion = None        # finishes an IN or MMIO read on the next run()
        self._cr8 = 0                 # the guest's CR8 without APIC virtualization (cr8)
        self.system_event = None      # a KVM_SYSTEM_EVENT_* the guest asked for (kvm/hyperv.py)
        self.events = Events(self)
        self.mp_state = MpState(self)
        self.guest_debug = GuestDebug(self)
        self._kicked = threading.Event()
        self._exception = (ffi.new("uint32_t *"), ffi.new("int32_t *"))
        self._exit_hook = None
        self._reported = (ffi.new("uint32_t *"), ffi.new("uint64_t *"), ffi.new("int *"))

        self.vmxon_region = hostmem.alloc_page()
        self.vmcs01 = hostmem.alloc_page()
        revision = self.rdmsr_root(vmx.MSR_IA32_VMX_BASIC) & 0x7FFFFFFF
        for page in (self.vmxon_region, self.vmcs01):
            hostmem.write_bytes(page, revision.to_bytes(4, "little"))
        self._check(lib.vmx_vmxon(self.cpu, self.vmxon_region), "VMXON")
        self._check(lib.vmx_vmclear(self.cpu, self.vmcs01), "VMCLEAR")
        self._check(lib.vmx_vmptrld(self.cpu, self.vmcs01), "VMPTRLD")
        setup_vmcs(self)
        self.apicv = ApicVirtualization(self)
        self.reset()

    # ---- VMX instructions -------------------------------------------------------------

    def _check(self, rc: int, what: str):
        if rc == vmx.VMX_FAIL_INVALID:
            raise VmxError(f"{what}: VMfailInvalid")
        if rc == vmx.VMX_FAIL_VALID:
            lib.vmx_vmread(self.cpu, vmx.VM_INSTRUCTION_ERROR, self._u64)
            raise VmxError(f"{what}: VMfailValid({self._u64[0]})")

    def vmread(self, field: int) -> int:
        rc = lib.vmx_vmread(self.cpu, field, self._u64)
        if rc != vmx.VMX_SUCCEED:     # checked only on failure: exits read many fields
            self._check(rc, f"VMREAD {field:#x}")
        return self._u64[0]

    def vmwrite(self, field: int, value: int):
        rc = lib.vmx_vmwrite(self.cpu, field, value & ((1 << 64) - 1))
        if rc != vmx.VMX_SUCCEED:
            self._check(rc, f"VMWRITE {field:#x}")

    def rdmsr_root(self, index: int) -> int:
        # its own buffer: the monitor reads the VMX capability MSRs while the vCPU runs,
        # and the vCPU thread's VMREADs use self._u64
        value = ffi.new("uint64_t *")
        if lib.cpu_rdmsr(self.cpu, index, value) != 0:
            raise VmxError(f"RDMSR {index:#x} faulted")
        return value[0]

    # ---- registers --------------------------------------------------------------------

    def get_gpr(self, n: int) -> int:
        lib.cpu_get_gprs(self.cpu, self._gprs)
        return self._gprs[n]

    def set_gpr(self, n: int, value: int):
        self.set_gprs({n: value})

    def set_gprs(self, values: dict):
        """Write several registers (by number) in one round trip to the processor."""
        lib.cpu_get_gprs(self.cpu, self._gprs)
        for n, value in values.items():
            self._gprs[n] = value & ((1 << 64) - 1)
        lib.cpu_set_gprs(self.cpu, self._gprs)

    def get_regs(self) -> Regs:
        lib.cpu_get_gprs(self.cpu, self._gprs)
        regs = Regs(**{name: self._gprs[i] for i, name in enumerate(GPR_ORDER)})
        regs.rsp = self.vmread(vmx.GUEST_RSP)
        regs.rip = self.vmread(vmx.GUEST_RIP)
        regs.rflags = self.vmread(vmx.GUEST_RFLAGS)
        return regs

    def set_regs(self, regs: Regs):
        for i, name in enumerate(GPR_ORDER):
            self._gprs[i] = getattr(regs, name) & ((1 << 64) - 1)
        lib.cpu_set_gprs(self.cpu, self._gprs)
        self.vmwrite(vmx.GUEST_RSP, regs.rsp)
        self.vmwrite(vmx.GUEST_RIP, regs.rip)
        self.vmwrite(vmx.GUEST_RFLAGS, (regs.rflags | 2) & ~0x8028 & 0x3FFFFF)

    def _segment(self, name: str) -> Segment:
        p = _SEG_FIELD_PREFIX[name]
        return Segment.from_vmcs(self.vmread(vmx.FIELDS[f"GUEST_{p}_SELECTOR"]),
                                 self.vmread(vmx.FIELDS[f"GUEST_{p}_BASE"]),
                                 self.vmread(vmx.FIELDS[f"GUEST_{p}_LIMIT"]),
                                 self.vmread(vmx.FIELDS[f"GUEST_{p}_AR_BYTES"]))

    def _set_segment(self, name: str, seg: Segment):
        p = _SEG_FIELD_PREFIX[name]
        self.vmwrite(vmx.FIELDS[f"GUEST_{p}_SELECTOR"], seg.selector)
        self.vmwrite(vmx.FIELDS[f"GUEST_{p}_BASE"], seg.base)
        self.vmwrite(vmx.FIELDS[f"GUEST_{p}_LIMIT"], seg.limit)
        self.vmwrite(vmx.FIELDS[f"GUEST_{p}_AR_BYTES"], seg.access_rights())

    def guest_cr0(self) -> int:
        """CR0 as the guest sees it: the host-owned bits come from the read shadow."""
        mask = self.vmread(vmx.CR0_GUEST_HOST_MASK)
        return (self.vmread(vmx.GUEST_CR0) & ~mask) | (self.vmread(vmx.CR0_READ_SHADOW) & mask)

    def guest_cr4(self) -> int:
        mask = self.vmread(vmx.CR4_GUEST_HOST_MASK)
        return (self.vmread(vmx.GUEST_CR4) & ~mask) | (self.vmread(vmx.CR4_READ_SHADOW) & mask)

    def set_guest_cr0(self, value: int):
        self.vmwrite(vmx.CR0_READ_SHADOW, value)
        self.vmwrite(vmx.GUEST_CR0, value | CR0_NE)

    def set_guest_cr4(self, value: int):
        self.vmwrite(vmx.CR4_READ_SHADOW, value)
        self.vmwrite(vmx.GUEST_CR4, value | CR4_VMXE)

    def get_sregs(self) -> Sregs:
        s = Sregs(**{name: self._segment(name) for name in SEGMENTS})
        s.gdt = DTable(self.vmread(vmx.GUEST_GDTR_BASE), self.vmread(vmx.GUEST_GDTR_LIMIT))
        s.idt = DTable(self.vmread(vmx.GUEST_IDTR_BASE), self.vmread(vmx.GUEST_IDTR_LIMIT))
        s.cr0 = self.guest_cr0()
        s.cr2 = lib.cpu_get_cr2(self.cpu)
        s.cr3 = self.vmread(vmx.GUEST_CR3)
        s.cr4 = self.guest_cr4()
        s.efer = self.vmread(vmx.GUEST_IA32_EFER)
        s.cr8 = self.cr8
        s.apic_base = self.msrs.apic_base
        vector = self.events.queued_interrupt()
        if vector is not None:
            s.interrupt_bitmap[vector >> 6] |= 1 << (vector & 63)
        return s

    def set_sregs(self, s: Sregs):
        for name in SEGMENTS:
            self._set_segment(name, getattr(s, name))
        self.vmwrite(vmx.GUEST_GDTR_BASE, s.gdt.base)
        self.vmwrite(vmx.GUEST_GDTR_LIMIT, s.gdt.limit)
        self.vmwrite(vmx.GUEST_IDTR_BASE, s.idt.base)
        self.vmwrite(vmx.GUEST_IDTR_LIMIT, s.idt.limit)
        self.set_guest_cr0(s.cr0)
        lib.cpu_set_cr2(self.cpu, s.cr2)
        self.vmwrite(vmx.GUEST_CR3, s.cr3)
        self.set_guest_cr4(s.cr4)
        self.vmwrite(vmx.GUEST_IA32_EFER, s.efer)
        entry = self.vmread(vmx.VM_ENTRY_CONTROLS) & ~vmx.VM_ENTRY_IA32E_MODE
        self.vmwrite(vmx.VM_ENTRY_CONTROLS, entry | (vmx.VM_ENTRY_IA32E_MODE if s.efer & EFER_LMA else 0))
        self.cr8 = s.cr8 & 0xF
        self.msrs.apic_base = s.apic_base
        bitmap = sum(word << (64 * k) for k, word in enumerate(s.interrupt_bitmap))
        if bitmap:
            self.events.inject_interrupt((bitmap & -bitmap).bit_length() - 1)

    def get_fpu(self) -> Fpu:
        """KVM_GET_FPU, from the processor's FXSAVE image."""
        image = ffi.new("uint8_t[512]")
        lib.cpu_get_fxsave(self.cpu, image)
        fx = bytes(ffi.buffer(image))
        word = lambda offset, size: int.from_bytes(fx[offset:offset + size], "little")
        return Fpu(fpr=[fx[32 + 16 * i:48 + 16 * i] for i in range(8)], fcw=word(0, 2),
                   fsw=word(2, 2), ftwx=fx[4], last_opcode=word(6, 2), last_ip=word(8, 8),
                   last_dp=word(16, 8), xmm=[fx[160 + 16 * i:176 + 16 * i] for i in range(16)],
                   mxcsr=word(24, 4))

    def set_fpu(self, fpu: Fpu):
        """KVM_SET_FPU."""
        fx = bytearray(512)
        for offset, size, value in ((0, 2, fpu.fcw), (2, 2, fpu.fsw), (4, 1, fpu.ftwx),
                                    (6, 2, fpu.last_opcode), (8, 8, fpu.last_ip),
                                    (16, 8, fpu.last_dp), (24, 4, fpu.mxcsr)):
            fx[offset:offset + size] = value.to_bytes(size, "little")
        for i, reg in enumerate(fpu.fpr):
            fx[32 + 16 * i:32 + 16 * i + 10] = bytes(reg)[:10]
        for i, reg in enumerate(fpu.xmm):
            fx[160 + 16 * i:176 + 16 * i] = bytes(reg)[:16].ljust(16, b"\0")
        lib.cpu_set_fxsave(self.cpu, ffi.from_buffer(fx))

    def get_xsave(self):
        """KVM_GET_XSAVE: kvm.structs.Xsave, the 4 KiB XSAVE image (kvm/xsave.py)."""
        return get_xsave(self.cpu)

    def set_xsave(self, xsave):
        set_xsave(self.cpu, xsave)

    def get_xcrs(self):
        """KVM_GET_XCRS: kvm.structs.Xcrs with XCR0."""
        return get_xcrs(self.cpu)

    def set_xcrs(self, xcrs):
        set_xcrs(self.cpu, xcrs)

    def reset(self):
        """The architectural state after RESET/INIT (SDM Vol. 3 Table 10-1); EDX holds the
        processor's signature (CPUID.1:EAX), as KVM puts it there."""
        signature = next((e.eax for e in self._cpuid if e.function == 1), 0)
        regs = Regs(rdx=signature or 0x600, rip=0xFFF0, rflags=2)
        s = Sregs()
        for name in ("ds", "es", "fs", "gs", "ss"):
            setattr(s, name, Segment(base=0, limit=0xFFFF, selector=0, type=3, s=1, present=1))
        s.cs = Segment(base=0xFFFF0000, limit=0xFFFF, selector=0xF000, type=0xB, s=1, present=1)
        s.ldt = Segment(limit=0xFFFF, type=2, s=0, present=1)
        s.tr = Segment(limit=0xFFFF, type=0xB, s=0, present=1)
        s.cr0 = 0x60000010
        s.apic_base = self.msrs.apic_base
        self.set_sregs(s)
        self.set_regs(regs)
        self.vmwrite(vmx.GUEST_ACTIVITY_STATE, 0)
        self.vmwrite(vmx.GUEST_INTERRUPTIBILITY_INFO, 0)
        self.vmwrite(vmx.GUEST_INTR_STATUS, 0)
        self.vmwrite(vmx.GUEST_IA32_PAT, 0x0007040600070406)
        self.vmwrite(vmx.GUEST_DR7, 0x400)

    def translate(self, gla: int):
        """KVM_TRANSLATE: the guest's own translation of a guest-linear address."""
        return kvm_translate(self, gla)

    def get_tsc_khz(self) -> int:
        """KVM_GET_TSC_KHZ: the rate of the guest's TSC (the processor's, offset)."""
        return tsc_khz(lambda: self.rdmsr_root(0x10))

    def set_guest_tsc(self, value: int):
        """WRMSR IA32_TSC: KVM writes the TSC offset so that the guest reads `value` now."""
        self.vmwrite(vmx.TSC_OFFSET, (value - self.rdmsr_root(0x10)) & ((1 << 64) - 1))

    # ---- MSRs, CPUID, events, MP state --------------------------------------------------------

    def get_msrs(self, indices) -> dict:
        """KVM_GET_MSRS: {index: guest value} for the leading indices that exist."""
        return self.msrs.get(indices)

    def set_msrs(self, entries) -> int:
        """KVM_SET_MSRS with a dict or (index, value) pairs; returns how many were set."""
        return self.msrs.set(entries)

    def set_cpuid2(self, entries):
        """KVM_SET_CPUID2: the CPUID leaves the guest sees (kvm.cpuid.CpuidEntry list),
        handed to the CPUID exit handler in kvm/'s compiled half."""
        entries = list(entries)
        table = ffi.new("struct kvm_cpuid_entry2[]", [
            (e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx) for e in entries])
        if lib.root_vcpu_set_cpuid(self.root, table, len(entries)) != 0:
            raise KvmError("no memory for the CPUID table (KVM_SET_CPUID2: ENOMEM)")
        self._cpuid = entries

    def get_cpuid2(self):
        return list(self._cpuid)

    def get_vcpu_events(self):
        ev = self.events.get_state()
        ev.sipi_vector = self.mp_state.sipi_vector
        return ev

    def set_vcpu_events(self, ev):
        self.events.check_state(ev)
        self.events.set_state(ev)
        if ev.flags & KVM_VCPUEVENT_VALID_SIPI_VECTOR:
            self.mp_state.sipi_vector = ev.sipi_vector & 0xFF

    def get_mp_state(self) -> int:
        return self.mp_state.get()

    def set_mp_state(self, state: int):
        self.mp_state.set(state)

    # ---- APIC virtualization (kvm/apicv.py) ------------------------------------------------

    @property
    def apic_page(self) -> memoryview:
        """The virtual-APIC page (4 KiB, writable): the local APIC's registers at their
        architectural offsets, shared with the processor."""
        return self.apicv.page

    def enable_apic_virtualization(self, apic_access_gpa: int = APIC_DEFAULT_BASE, x2apic: bool = False):
        """Virtualize the guest's local APIC accesses for a userspace local APIC: TPR
        shadow, APIC-access page at apic_access_gpa (or x2APIC-mode virtualization),
        APIC-register virtualization and virtual-interrupt delivery.  Call again to switch
        between xAPIC and x2APIC mode."""
        self.apicv.enable(apic_access_gpa, x2apic)

    def set_eoi_exit_bitmap(self, bits: int):
        """The vectors (a 256-bit mask) whose EOI exits with KVM_EXIT_IOAPIC_EOI."""
        self.apicv.set_eoi_exit_bitmap(bits)

    @property
    def cr8(self) -> int:
        """The guest's CR8, userspace's local APIC TPR >> 4: under APIC virtualization
        the TPR of the virtual-APIC page, which the guest moves without exits (as KVM's
        kvm_get_cr8 reads its in-kernel APIC's)."""
        return self.apicv.read32(APIC_TPR) >> 4 if self.apicv.enabled else self._cr8

    @cr8.setter
    def cr8(self, value: int):
        if self.apicv.enabled:
            self.apicv.page[APIC_TPR] = (value & 0xF) << 4
        else:
            self._cr8 = value & 0xF

    def post_apic_interrupt(self, vector: int):
        """Request the vector: its IRR bit in the virtual-APIC page, set atomically with
        respect to a running guest, which takes it without returning to userspace."""
        self.apicv.post_interrupt(vector)

    # ---- KVM_RUN --------------------------------------------------------------------------

    def in_64bit_mode(self) -> bool:
        return bool(self.vmread(vmx.GUEST_IA32_EFER) & EFER_LMA and self.vmread(vmx.GUEST_CS_AR_BYTES) & (1 << 13))

    def advance_rip(self):
        """kvm_skip_emulated_instruction: the instruction that exited is complete; then
        come the single-step trap or debugger step it owes."""
        self.skip_instruction()
        self.guest_debug.instruction_emulated()

    def skip_instruction(self):
        """Skip the instruction that exited, ending any STI/MOV SS interrupt shadow."""
        lib.root_advance_rip(self.cpu)

    def inject_exception(self, vector: int, error_code=None):
        """Deliver an exception to the guest at the next entry (kvm_queue_exception)."""
        self.events.queue_exception(vector, error_code)

    def set_event_trace(self, tracer):
        """pyhv's event tracing: ``tracer(event, vcpu, interrupted)`` (events.Event) sees
        each interrupt and NMI as it is injected and each exception before the guest takes
        it (with the exception whose delivery it interrupted, or None), in the guest state
        from before; None turns it off.  Exceptions reach the hypervisor only while
        traced: the exception bitmap then intercepts all but #DB (whose delivery would
        also have to set DR6)."""
        self.events.tracer = tracer
        self.update_exception_bitmap()

    def update_exception_bitmap(self):
        """What the debugger and the event tracer intercept (KVM's update_exception_bitmap)."""
        traced = TRACED_EXCEPTIONS if self.events.tracer is not None else 0
        self.vmwrite(vmx.EXCEPTION_BITMAP, traced | self.guest_debug.exception_bitmap())

    def interrupt(self, vector: int):
        """KVM_INTERRUPT: an external interrupt, delivered once the guest allows interrupts.
        Like KVM, one at a time: userspace waits for ready_for_interrupt_injection."""
        if not self.events.queue_interrupt(vector):
            raise KvmError("an interrupt is already queued (KVM_INTERRUPT: ENXIO)")

    def nmi(self):
        """KVM_NMI: an NMI, delivered once the guest does not block NMIs."""
        self.events.queue_nmi()

    def set_guest_debug(self, control: int, debugreg=None):
        """KVM_SET_GUEST_DEBUG: KVM_GUESTDBG_* controls and, with USE_HW_BP, the
        debugger's DR0-DR3 and DR7 (debugreg[0..3], debugreg[7])."""
        self.guest_debug.set(control, debugreg)

    def get_debugregs(self):
        """KVM_GET_DEBUGREGS: the guest's own DR0-DR3, DR6 and DR7."""
        return self.guest_debug.get_regs()

    def set_debugregs(self, regs):
        self.guest_debug.set_regs(regs)

    def request_system_event(self, event_type: int):
        """The guest asked for a reset or reported a crash: the next entry ends KVM_RUN
        with KVM_EXIT_SYSTEM_EVENT instead (KVM's KVM_REQ_HV_RESET/HV_CRASH)."""
        self.system_event = event_type

    def _take_request(self):
        """A KVM_RUN-ending request (vcpu_enter_guest's), or None."""
        if self.events.triple_fault_pending:
            self.events.triple_fault_pending = False
            return KVM_EXIT_SHUTDOWN
        if self.system_event is not None:
            event = self.kvm_run.system_event
            event.type, event.ndata, event.data = self.system_event, 0, [0] * 16
            self.system_event = None
            return KVM_EXIT_SYSTEM_EVENT
        return None

    def kick(self):
        """Make a running (or the next) KVM_RUN return KVM_EXIT_INTR; safe from any thread."""
        self._kicked.set()
        lib.cpu_kick(self.cpu)

    def take_kick(self) -> bool:
        if not self._kicked.is_set():
            return False
        self._kicked.clear()
        return True

    def _update_run_state(self):
        run = self.kvm_run
        run.if_flag = (self.vmread(vmx.GUEST_RFLAGS) >> 9) & 1
        run.ready_for_interrupt_injection = int(self.events.interrupt_injectable_now())
        run.apic_base = self.msrs.apic_base
        run.cr8 = self.cr8

    def run(self):
        """KVM_RUN: enter the guest until an exit that userspace must handle. kvm_run.cr8
        goes in as the guest's CR8 (not under APIC virtualization: the TPR is in the
        virtual-APIC page, as with KVM's in-kernel APIC) and comes back out with it."""
        run = self.kvm_run
        result = None
        if not self.apicv.enabled:
            self.cr8 = run.cr8        # userspace's TPR, as KVM takes it without an in-kernel APIC
        if self.completion is not None:
            complete, self.completion = self.completion, None
            result = complete()
        while result is None:
            # a kick ends KVM_RUN before the next entry too, as a pending signal does in
            # KVM: a guest whose exits never reach an instruction boundary stays kickable
            if run.immediate_exit or self.take_kick():
                result = KVM_EXIT_INTR
                break
            result = self._take_request()
            if result is not None:
                break
            step = self.guest_debug.take_completed_step()
            if step is not None:
                result = step
                break
            if not self.mp_state.may_enter():
                self._kicked.wait()          # waiting for a SIPI: only a kick ends the wait
                self.take_kick()
                result = KVM_EXIT_INTR
                break
            self.events.before_entry(run.request_interrupt_window)
            if self.apicv.enabled:
                self.apicv.before_entry()
            rc = lib.root_vcpu_run(self.root)     # handles the exits that need no Python
            if rc in (lib.ROOT_RUN_HANDLED, lib.ROOT_RUN_REPORTED):
                if rc == lib.ROOT_RUN_REPORTED:
                    self._handled_in_root()
                vector, error = self._exception
                if lib.root_vcpu_take_exception(self.root, vector, error):
                    self.inject_exception(vector[0], None if error[0] < 0 else error[0])
                continue
            started = time.perf_counter_ns()
            if rc != vmx.VMX_EXITED:
                run.fail_entry.hardware_entry_failure_reason = self.vmread(vmx.VM_INSTRUCTION_ERROR) \
                    if rc == vmx.VMX_FAIL_VALID else 0
                run.fail_entry.cpu = self.id
                result = KVM_EXIT_FAIL_ENTRY
                break
            reason = self.vmread(vmx.VM_EXIT_REASON)
            run.hardware_exit_reason = reason
            if self._exit_hook is not None:   # tracing (kvm_exit): before a handler moves RIP
                self._exit_hook(self, reason, self.vmread(vmx.GUEST_RIP))
            if reason & vmx.EXIT_REASON_FAILED_VMENTRY:
                run.fail_entry.hardware_entry_failure_reason = reason
                run.fail_entry.cpu = self.id
                result = KVM_EXIT_FAIL_ENTRY
            else:
                result = handle_exit(self, reason)
            self.stats.record(reason & (0xFFFF | vmx.EXIT_REASON_FAILED_VMENTRY), time.perf_counter_ns() - started)
        run.exit_reason = result
        self._update_run_state()
        return run

    @property
    def exit_hook(self):
        """Called as exit_hook(vcpu, reason, rip) after each VM exit (the RIP it exited at),
        those that kvm/'s compiled half handles too."""
        return self._exit_hook

    @exit_hook.setter
    def exit_hook(self, hook):
        self._exit_hook = hook
        lib.root_vcpu_set_report_exits(self.root, hook is not None)

    def _handled_in_root(self):
        """An exit the compiled half handled, reported: trace it, and give a single-stepped
        instruction it completed its step."""
        reason, rip, completed = self._reported
        lib.root_vcpu_reported(self.root, reason, rip, completed)
        if self._exit_hook is not None:
            self._exit_hook(self, reason[0], rip[0])
        if completed[0]:
            self.guest_debug.instruction_emulated()

    def exit_stats(self):
        return self.stats.as_dict()

    def instructions_retired(self) -> int:
        return lib.cpu_instructions_retired(self.cpu)

    def jit_stats(self) -> dict:
        """The processor's decoded-block cache and compiler (silicon_api.h's jit_stats_t)."""
        stats = ffi.new("jit_stats_t *")
        lib.cpu_jit_stats(self.cpu, stats)
        return {name: getattr(stats, name) for name in dir(stats)}
