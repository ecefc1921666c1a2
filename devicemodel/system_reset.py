"""What a system reset does to the PC (QEMU's qemu_system_reset): every device goes back
to its power-on state, RAM is cleared and loaded again as at power-on (pyhv has no BIOS:
the firmware tables and the kernel), and the vCPUs get their RESET state, vCPU 0 at the
kernel's entry point and the others waiting for INIT/SIPI.

The vCPUs must be parked outside KVM_RUN while this runs."""

from __future__ import annotations

import mmap



def devices_of(*spaces) -> list:
    """The devices owning regions in the address spaces, each once, in address order."""
    seen, devices = set(), []
    for space in spaces:
        for region in space.regions:
            owner = region.owner
            if owner is not None and id(owner) not in seen:
                seen.add(id(owner))
                devices.append(owner)
    return devices


def reset_devices(devices) -> None:
    for device in devices:
        reset = getattr(device, "reset", None)
        if callable(reset):
            reset()


def clear_ram(ram: mmap.mmap) -> None:
    """Zero the guest's RAM: the kernel drops the pages of the private anonymous mapping."""
    if hasattr(ram, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        ram.madvise(mmap.MADV_DONTNEED)
    else:
        ram[:] = bytes(len(ram))


def finish_pending_io(vcpu) -> None:
    """Let KVM_RUN complete an IN or MMIO read the vCPU loop already answered, without
    entering the guest (immediate_exit), so that it cannot land in the reset state."""
    run = vcpu.kvm_run
    run.immediate_exit = 1
    try:
        vcpu.run()
    finally:
        run.immediate_exit = 0


def reset_vcpu(vcpu, boot_processor: bool) -> None:
    """The state after RESET through the KVM API, as QEMU puts it (registers, FPU, debug
    registers, no pending events); the boot processor runs, the others wait for SIPI."""
    from kvm.constants import (KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE,
                               KVM_VCPUEVENT_VALID_NMI_PENDING, KVM_VCPUEVENT_VALID_SHADOW)
    from kvm.structs import DebugRegs, Fpu, VcpuEvents
    vcpu.reset()
    vcpu.set_fpu(Fpu())
    vcpu.set_debugregs(DebugRegs())
    vcpu.set_vcpu_events(VcpuEvents(flags=KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW))
    vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE if boot_processor else KVM_MP_STATE_INIT_RECEIVED)
