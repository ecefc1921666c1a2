"""String I/O exits (INS, OUTS and their REP forms) as KVM_EXIT_IO with `count` elements
in the data buffer.  The hypervisor moves the data between guest memory and the buffer
itself: OUTS reads guest memory before the exit, INS writes it when the next run()
completes the exit.  One exit moves the elements that lie in one guest page (an element
straddling two pages goes alone), as KVM does; a REP instruction with iterations left
is not skipped, so it executes again and exits for the next page."""

from kvm import vmx
from kvm.constants import KVM_EXIT_IO, KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT
from kvm.internal_errors import emulation_failure
from kvm.translate import (TRANSLATE_USER, TRANSLATE_WRITE, PageFault, UnbackedPagingStructure,
                           guest_cpl, inject_page_fault, translate)

RCX, RSI, RDI = 1, 6, 7
PAGE_SIZE = 4096
RFLAGS_DF = 1 << 10
EFER_LMA = 1 << 10
AR_L = 1 << 13
SEGMENT_FIELDS = [(vmx.FIELDS[f"GUEST_{s}_LIMIT"], vmx.FIELDS[f"GUEST_{s}_AR_BYTES"])
                  for s in ("ES", "CS", "SS", "DS", "FS", "GS")]
ADDRESS_SIZES = {0: 2, 1: 4, 2: 8}   # VM-exit instruction information, bits 9:7


def _in_64bit_mode(vcpu) -> bool:
    return bool(vcpu.vmread(vmx.GUEST_IA32_EFER) & EFER_LMA and vcpu.vmread(vmx.GUEST_CS_AR_BYTES) & AR_L)


def _elements_now(vcpu, gla, offset, amask, size, count, down, seg) -> int:
    """How many of `count` elements, starting at `gla` (segment offset `offset`), stay
    within gla's page, without the offset wrapping or passing the segment limit.  The
    processor has checked the first element; the rest run here without checks."""
    in_page = gla & (PAGE_SIZE - 1)
    if in_page + size > PAGE_SIZE:
        return 1
    n = in_page // size + 1 if down else (PAGE_SIZE - in_page) // size
    n = min(n, offset // size + 1 if down else (amask - offset + 1) // size)
    if not _in_64bit_mode(vcpu):
        limit_field, ar_field = SEGMENT_FIELDS[seg]
        if vcpu.vmread(ar_field) & 0xC == 0x4:
            return 1   # expand-down data segment: leave the checks to the processor
        if not down:
            n = min(n, (vcpu.vmread(limit_field) - offset + 1) // size)
    return max(1, min(n, count))


def _guest_pieces(vcpu, low: int, length: int, write: bool):
    """[(gpa, length)] for the guest-linear range [low, low + length), page by page."""
    access = (TRANSLATE_WRITE if write else 0) | (TRANSLATE_USER if guest_cpl(vcpu) == 3 else 0)
    pieces = []
    while length:
        chunk = min(length, PAGE_SIZE - (low & (PAGE_SIZE - 1)))
        pieces.append((translate(vcpu, low, access), chunk))
        low += chunk
        length -= chunk
    return pieces


def _element_order(data: bytes, size: int, down: bool) -> bytes:
    """Memory order <-> buffer order: with DF=1 the first element is the highest one."""
    if not down:
        return bytes(data)
    return b"".join(data[k:k + size] for k in range(len(data) - size, -1, -size))


def handle_string_io(vcpu, qual: int):
    size = (qual & 7) + 1
    is_in = bool(qual & 8)
    rep = bool(qual & 32)
    info = vcpu.vmread(vmx.VMX_INSTRUCTION_INFO)
    asize = ADDRESS_SIZES[(info >> 7) & 7]
    amask = (1 << (8 * asize)) - 1
    seg = 0 if is_in else (info >> 15) & 7        # INS always writes ES:[rDI]
    index_reg = RDI if is_in else RSI
    down = bool(vcpu.vmread(vmx.GUEST_RFLAGS) & RFLAGS_DF)
    gla = vcpu.vmread(vmx.GUEST_LINEAR_ADDRESS)
    count = vcpu.get_gpr(RCX) & amask if rep else 1
    offset = vcpu.get_gpr(index_reg) & amask
    n = _elements_now(vcpu, gla, offset, amask, size, count, down, seg)
    low = gla - (n - 1) * size if down else gla
    try:
        pieces = _guest_pieces(vcpu, low, n * size, write=is_in)
    except PageFault as fault:
        inject_page_fault(vcpu, fault)
        return None
    except UnbackedPagingStructure:
        return emulation_failure(vcpu)

    io = vcpu.kvm_run.io
    io.direction = KVM_EXIT_IO_IN if is_in else KVM_EXIT_IO_OUT
    io.size = size
    io.port = (qual >> 16) & 0xFFFF
    io.count = n
    io.data = memoryview(vcpu.io_page)[:n * size]
    vcpu.stats.io_ports[io.port] += 1

    def finish():
        step = -n * size if down else n * size
        _advance(vcpu, index_reg, step, asize)
        if rep:
            _advance(vcpu, RCX, -n, asize)
        if not rep or count == n:
            vcpu.advance_rip()

    if is_in:
        def complete_ins():
            data = _element_order(io.data, size, down)
            at = 0
            for gpa, length in pieces:
                if not vcpu.vm.write_guest(gpa, data[at:at + length]):
                    return emulation_failure(vcpu)   # INS into MMIO or ROM: not emulated
                at += length
            finish()
            return None
        vcpu.completion = complete_ins
    else:
        chunks = [vcpu.vm.read_guest(gpa, length) for gpa, length in pieces]
        if None in chunks:
            return emulation_failure(vcpu)   # OUTS from MMIO: not emulated
        io.data[:] = _element_order(b"".join(chunks), size, down)
        finish()
    return KVM_EXIT_IO


def _advance(vcpu, reg: int, delta: int, asize: int):
    """rSI/rDI/rCX by address size; a 32-bit update zero-extends, a 16-bit one merges."""
    amask = (1 << (8 * asize)) - 1
    old = vcpu.get_gpr(reg)
    new = (old + delta) & amask
    vcpu.set_gpr(reg, new if asize >= 4 else (old & ~amask) | new)


