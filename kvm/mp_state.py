"""KVM_GET/SET_MP_STATE: whether a vCPU runs, halts, or waits for a SIPI.

HALTED is the VMX activity state HLT: the processor sleeps in the guest until an event
is injected (an interrupt from KVM_INTERRUPT wakes it) or the vCPU is kicked.
INIT_RECEIVED waits for a SIPI outside the guest: KVM_RUN sleeps until kick() and returns
KVM_EXIT_INTR.  SIPI_RECEIVED starts the vCPU at the SIPI vector's page in real mode on
the next KVM_RUN (kvm_vcpu_deliver_sipi_vector), the vector coming from
KVM_SET_VCPU_EVENTS."""

from kvm import vmx
from kvm.constants import (KVM_MP_STATE_HALTED, KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE,
                           KVM_MP_STATE_SIPI_RECEIVED)

ACTIVITY_ACTIVE, ACTIVITY_HLT = 0, 1
STATES = (KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_HALTED, KVM_MP_STATE_SIPI_RECEIVED)


class MpState:
    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.waiting = KVM_MP_STATE_RUNNABLE   # or INIT_RECEIVED / SIPI_RECEIVED
        self.sipi_vector = 0

    def get(self) -> int:
        if self.waiting != KVM_MP_STATE_RUNNABLE:
            return self.waiting
        halted = self.vcpu.vmread(vmx.GUEST_ACTIVITY_STATE) == ACTIVITY_HLT
        return KVM_MP_STATE_HALTED if halted else KVM_MP_STATE_RUNNABLE

    def set(self, state: int):
        if state not in STATES:
            raise ValueError(f"unsupported MP state {state}")
        self.waiting = state if state in (KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_SIPI_RECEIVED) \
            else KVM_MP_STATE_RUNNABLE
        self.vcpu.vmwrite(vmx.GUEST_ACTIVITY_STATE,
                          ACTIVITY_HLT if state == KVM_MP_STATE_HALTED else ACTIVITY_ACTIVE)

    def may_enter(self) -> bool:
        """Called by KVM_RUN before entering: deliver a received SIPI; False while the
        vCPU waits for one (KVM_RUN then sleeps until kicked)."""
        if self.waiting == KVM_MP_STATE_SIPI_RECEIVED:
            v = self.vcpu
            v.vmwrite(vmx.GUEST_CS_SELECTOR, self.sipi_vector << 8)
            v.vmwrite(vmx.GUEST_CS_BASE, self.sipi_vector << 12)
            v.vmwrite(vmx.GUEST_RIP, 0)
            self.waiting = KVM_MP_STATE_RUNNABLE
        return self.waiting == KVM_MP_STATE_RUNNABLE
