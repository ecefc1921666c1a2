"""EPT violations: populate EPT from the memslots, or treat the access as MMIO and
emulate the faulting instruction with the core's own decoder and executor."""

from kvm import vmx
from kvm._silicon import lib
from kvm.constants import KVM_EXIT_MMIO
from kvm.internal_errors import delivery_event_error, emulation_failure

EMUL_DONE, EMUL_NEED_READ, EMUL_WRITE, EMUL_FAULT, EMUL_EPT_FAULT, EMUL_UNHANDLEABLE = range(6)


def handle_ept_violation(vcpu):
    """Guest RAM reaches here only when the exit interrupted an event's delivery (kvm/'s
    compiled half maps the others itself)."""
    gpa = vcpu.vmread(vmx.GUEST_PHYSICAL_ADDRESS)
    qual = vcpu.vmread(vmx.EXIT_QUALIFICATION)
    if vcpu.vm.map_guest_page(gpa, write=bool(qual & vmx.EPT_VIOLATION_ACC_WRITE)):
        return None
    vectoring = vcpu.vmread(vmx.IDT_VECTORING_INFO_FIELD)
    if vectoring & vmx.INTR_INFO_VALID_MASK:
        return delivery_event_error(vcpu, vectoring, mmio=True)
    vcpu.mmio.gpa = gpa
    vcpu.mmio.has_read_data = 0
    return emulate_mmio(vcpu)


def emulate_mmio(vcpu):
    """Run the emulator until the instruction completes or needs userspace."""
    m = vcpu.mmio
    run = vcpu.kvm_run
    for _ in range(64):
        lib.cpu_emulate_mmio(vcpu.cpu, m)
        result = m.result
        if result == EMUL_DONE:
            vcpu.guest_debug.instruction_emulated()
            return None
        if result == EMUL_EPT_FAULT:
            if not vcpu.vm.map_guest_page(m.access_gpa):
                break
            continue
        if result == EMUL_FAULT:
            vcpu.inject_exception(m.fault_vector, m.fault_error_code if m.fault_has_error_code else None)
            return None
        if result == EMUL_NEED_READ:
            rom = vcpu.vm.read_guest(m.access_gpa, m.access_len)
            if rom is not None:
                # a read-only slot: only its writes are MMIO, reads come from memory
                m.has_read_data = 1
                m.read_data = int.from_bytes(rom, "little")
                continue
        if result in (EMUL_NEED_READ, EMUL_WRITE):
            mmio = run.mmio
            mmio.phys_addr = m.access_gpa
            mmio.len = m.access_len
            mmio.is_write = int(result == EMUL_WRITE)
            mmio.data = memoryview(vcpu.io_page)[:8]
            if result == EMUL_WRITE:
                mmio.data[:8] = m.write_data.to_bytes(8, "little")
            else:
                mmio.data[:8] = bytes(8)

                def complete_read():
                    m.has_read_data = 1
                    m.read_data = int.from_bytes(mmio.data[:mmio.len], "little")
                    return emulate_mmio(vcpu)
                vcpu.completion = complete_read
            return KVM_EXIT_MMIO
        break
    return emulation_failure(vcpu)
