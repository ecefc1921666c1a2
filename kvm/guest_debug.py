"""Debugging a guest from userspace (KVM_SET_GUEST_DEBUG, KVM_EXIT_DEBUG) and the
guest's own debug registers (KVM_GET/SET_DEBUGREGS), done as KVM does it on VMX:

* software breakpoints: userspace writes INT3 into guest memory; with USE_SW_BP the
  exception bitmap intercepts #BP and the exit reaches userspace with the address of
  the INT3 (a #BP that is the guest's own, userspace injects back);
* hardware breakpoints and watchpoints (USE_HW_BP): the debugger's DR0-DR3 and DR7 are
  loaded into the processor and #DB is intercepted; meanwhile MOV DR exits, so the guest
  reads and writes its own debug registers, kept here, and gets them back afterwards;
* single-step (SINGLESTEP): the monitor trap flag, so that RFLAGS.TF stays the guest's;
  an instruction the hypervisor completes itself (I/O, CPUID, MMIO, ...) counts as the
  step, and BLOCKIRQ keeps interrupts from being injected while stepping.

Without guest debugging the guest's DR0-DR7, #DB and #BP are the processor's, with no
exits at all."""

from kvm import vmx
from kvm._silicon import lib
from kvm.constants import KVM_EXIT_DEBUG
from kvm.errors import KvmError
from kvm.structs import DR6_INIT, DR7_INIT, DebugRegs

KVM_GUESTDBG_ENABLE = 0x00000001
KVM_GUESTDBG_SINGLESTEP = 0x00000002
KVM_GUESTDBG_USE_SW_BP = 0x00010000
KVM_GUESTDBG_USE_HW_BP = 0x00020000
KVM_GUESTDBG_INJECT_DB = 0x00040000
KVM_GUESTDBG_INJECT_BP = 0x00080000
KVM_GUESTDBG_BLOCKIRQ = 0x00100000
KVM_GUESTDBG_VALID_MASK = (KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP |
                           KVM_GUESTDBG_USE_HW_BP | KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP |
                           KVM_GUESTDBG_BLOCKIRQ)

EXC_DB, EXC_BP, EXC_GP, EXC_UD = 1, 3, 13, 6
DR6_BD, DR6_BS = 1 << 13, 1 << 14
DR6_ACTIVE_LOW = 0xFFFF0FF0   # DR6's bits that read 1 while their condition is absent
DR7_GD = 1 << 13
RFLAGS_TF = 1 << 8
BLOCKING_STI_OR_MOV_SS = 3
EFER_LMA, CS_AR_L = 1 << 10, 1 << 13


def dr_value(n: int, value: int) -> int:
    """What DRn holds after a write: DR6 and DR7 keep their fixed bits."""
    if n == 6:
        return (value & 0x1E00F) | DR6_INIT
    if n == 7:
        return (value & 0xFFFF2BFF) | DR7_INIT
    return value


def in_64bit_mode(vcpu) -> bool:
    return bool(vcpu.vmread(vmx.GUEST_IA32_EFER) & EFER_LMA and vcpu.vmread(vmx.GUEST_CS_AR_BYTES) & CS_AR_L)


def linear_rip(vcpu) -> int:
    """kvm_get_linear_rip: CS.base + RIP outside 64-bit mode."""
    rip = vcpu.vmread(vmx.GUEST_RIP)
    if in_64bit_mode(vcpu):
        return rip
    return (vcpu.vmread(vmx.GUEST_CS_BASE) + rip) & 0xFFFFFFFF


class GuestDebug:
    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.control = 0          # vcpu->guest_debug
        self.guest_regs = None    # the guest's DebugRegs while the debugger's are loaded
        self.step_completed = False

    # ---- KVM_SET_GUEST_DEBUG ------------------------------------------------------------

    def set(self, control: int, debugreg=None):
        if control & ~KVM_GUESTDBG_VALID_MASK:
            raise KvmError(f"unsupported guest debug control {control:#x} (EINVAL)")
        debugreg = list(debugreg or [0] * 8) + [0] * 8
        vcpu = self.vcpu
        if control & (KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP):
            if vcpu.events.exception is not None:
                raise KvmError("an exception is already pending (EBUSY)")
            vcpu.events.queue_exception(EXC_DB if control & KVM_GUESTDBG_INJECT_DB else EXC_BP)
        self.control = control if control & KVM_GUESTDBG_ENABLE else 0
        if self.control & KVM_GUESTDBG_USE_HW_BP:
            if self.guest_regs is None:
                self.guest_regs = self._processor_regs()
                self._set_mov_dr_exiting(True)
            for n in range(4):
                lib.cpu_set_dr(vcpu.cpu, n, debugreg[n])
            lib.cpu_set_dr(vcpu.cpu, 6, DR6_INIT)
            vcpu.vmwrite(vmx.GUEST_DR7, dr_value(7, debugreg[7]) & ~DR7_GD)
        elif self.guest_regs is not None:
            regs, self.guest_regs = self.guest_regs, None
            self._load_processor_regs(regs)
            self._set_mov_dr_exiting(False)
        self._update_exception_bitmap()
        proc = vcpu.vmread(vmx.CPU_BASED_VM_EXEC_CONTROL) & ~vmx.CPU_BASED_MONITOR_TRAP_FLAG
        if self.control & KVM_GUESTDBG_SINGLESTEP:
            proc |= vmx.CPU_BASED_MONITOR_TRAP_FLAG
        vcpu.vmwrite(vmx.CPU_BASED_VM_EXEC_CONTROL, proc)
        self.step_completed = False

    @property
    def blocks_interrupts(self) -> bool:
        return bool(self.control & KVM_GUESTDBG_BLOCKIRQ)

    @property
    def uses_sw_breakpoints(self) -> bool:
        return bool(self.control & KVM_GUESTDBG_USE_SW_BP)

    def exception_bitmap(self) -> int:
        """The exceptions the debugger intercepts."""
        return ((1 << EXC_DB) if self.control & KVM_GUESTDBG_USE_HW_BP else 0) | \
            ((1 << EXC_BP) if self.control & KVM_GUESTDBG_USE_SW_BP else 0)

    def _update_exception_bitmap(self):
        self.vcpu.update_exception_bitmap()

    def _set_mov_dr_exiting(self, on: bool):
        proc = self.vcpu.vmread(vmx.CPU_BASED_VM_EXEC_CONTROL) & ~vmx.CPU_BASED_MOV_DR_EXITING
        self.vcpu.vmwrite(vmx.CPU_BASED_VM_EXEC_CONTROL, proc | (vmx.CPU_BASED_MOV_DR_EXITING if on else 0))

    # ---- the guest's debug registers (KVM_GET/SET_DEBUGREGS) --------------------------------

    def _processor_regs(self) -> DebugRegs:
        cpu = self.vcpu.cpu
        return DebugRegs(db=[lib.cpu_get_dr(cpu, n) for n in range(4)], dr6=lib.cpu_get_dr(cpu, 6),
                         dr7=self.vcpu.vmread(vmx.GUEST_DR7))

    def _load_processor_regs(self, regs: DebugRegs):
        for n in range(4):
            lib.cpu_set_dr(self.vcpu.cpu, n, regs.db[n])
        lib.cpu_set_dr(self.vcpu.cpu, 6, regs.dr6)
        self.vcpu.vmwrite(vmx.GUEST_DR7, regs.dr7)

    def get_regs(self) -> DebugRegs:
        if self.guest_regs is not None:
            r = self.guest_regs
            return DebugRegs(db=list(r.db), dr6=r.dr6, dr7=r.dr7)
        return self._processor_regs()

    def set_regs(self, regs: DebugRegs):
        if regs.flags or (regs.dr6 | regs.dr7) >> 32:
            raise KvmError("invalid debug registers (EINVAL)")
        clean = DebugRegs(db=[v & ((1 << 64) - 1) for v in regs.db[:4]],
                          dr6=dr_value(6, regs.dr6), dr7=dr_value(7, regs.dr7))
        if self.guest_regs is not None:
            self.guest_regs = clean
        else:
            self._load_processor_regs(clean)

    # ---- exits ---------------------------------------------------------------------------------

    def _debug_exit(self, exception: int, dr6: int = 0, dr7: int = 0):
        arch = self.vcpu.kvm_run.debug.arch
        arch.exception, arch.pc, arch.dr6, arch.dr7 = exception, linear_rip(self.vcpu), dr6, dr7
        return KVM_EXIT_DEBUG

    def handle_db(self, qual: int):
        """#DB intercepted while the debugger's breakpoints are loaded: userspace decides
        whether it is the debugger's.  As on VMX, a #DB taken in an STI or MOV-SS shadow
        with TF set leaves the single-step trap pending for the next VM entry."""
        vcpu = self.vcpu
        if vcpu.vmread(vmx.GUEST_RFLAGS) & RFLAGS_TF and \
                vcpu.vmread(vmx.GUEST_INTERRUPTIBILITY_INFO) & BLOCKING_STI_OR_MOV_SS:
            vcpu.vmwrite(vmx.GUEST_PENDING_DBG_EXCEPTIONS,
                         vcpu.vmread(vmx.GUEST_PENDING_DBG_EXCEPTIONS) | DR6_BS)
        return self._debug_exit(EXC_DB, qual | DR6_ACTIVE_LOW, vcpu.vmread(vmx.GUEST_DR7))

    def handle_bp(self):
        """INT3 with USE_SW_BP: RIP is the INT3's; its length serves a reinjection."""
        self.vcpu.events.soft_exception_len = self.vcpu.vmread(vmx.VM_EXIT_INSTRUCTION_LEN)
        return self._debug_exit(EXC_BP)

    def handle_mtf(self):
        if self.control & KVM_GUESTDBG_SINGLESTEP:
            return self._debug_exit(EXC_DB, DR6_BS | DR6_ACTIVE_LOW, self.vcpu.vmread(vmx.GUEST_DR7))
        return None

    def take_completed_step(self):
        """KVM_EXIT_DEBUG for a step the hypervisor completed itself, if one is due."""
        if not self.step_completed:
            return None
        self.step_completed = False
        return self._debug_exit(EXC_DB, DR6_BS | DR6_ACTIVE_LOW, self.vcpu.vmread(vmx.GUEST_DR7))

    def instruction_emulated(self):
        """The hypervisor completed a guest instruction (kvm_skip_emulated_instruction): a
        step for the debugger, and the guest's own single-step trap if TF is set."""
        if self.control & KVM_GUESTDBG_SINGLESTEP:
            self.step_completed = True
        if self.vcpu.vmread(vmx.GUEST_RFLAGS) & RFLAGS_TF:
            self.queue_db(DR6_BS)

    def queue_db(self, dr6_bits: int):
        """#DB for the guest with its DR6 bits (kvm_deliver_exception_payload)."""
        regs = self.get_regs()
        regs.dr6 = (regs.dr6 & ~0xF) | dr6_bits
        if dr6_bits & DR6_BD:
            regs.dr7 &= ~DR7_GD
        self.set_regs(regs)
        self.vcpu.events.queue_exception(EXC_DB)

    def handle_dr_access(self, qual: int):
        """MOV DR while the debugger's registers are loaded: the guest's own are used."""
        vcpu = self.vcpu
        if self.guest_regs is None:     # cannot happen: MOV DR exits only then
            self._set_mov_dr_exiting(False)
            return None
        n, to_gpr, gpr = qual & 7, bool(qual & 16), (qual >> 8) & 15
        regs = self.guest_regs
        if regs.dr7 & DR7_GD:
            self.queue_db(DR6_BD)
            return None
        n = {4: 6, 5: 7}.get(n, n)
        width = 64 if in_64bit_mode(vcpu) else 32
        if to_gpr:
            value = regs.db[n] if n < 4 else (regs.dr6 if n == 6 else regs.dr7)
            if gpr == 4:
                vcpu.vmwrite(vmx.GUEST_RSP, value & ((1 << width) - 1))
            else:
                vcpu.set_gpr(gpr, value & ((1 << width) - 1))
        else:
            value = (vcpu.vmread(vmx.GUEST_RSP) if gpr == 4 else vcpu.get_gpr(gpr)) & ((1 << width) - 1)
            if n >= 6 and value >> 32:
                vcpu.inject_exception(EXC_GP, 0)
                return None
            if n < 4:
                regs.db[n] = value
            elif n == 6:
                regs.dr6 = dr_value(6, value)
            else:
                regs.dr7 = dr_value(7, value)
        vcpu.advance_rip()
        return None
