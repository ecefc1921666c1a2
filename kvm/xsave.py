"""KVM_GET/SET_XSAVE and KVM_GET/SET_XCRS: the guest's x87/SSE state as a standard-format
XSAVE image, and XCR0 (the components XSAVE manages: x87 and SSE here, XCR0_SUPPORTED).

As Linux's fpu code reads and writes them for KVM (copy_xstate_to_uabi_buf,
copy_uabi_from_kernel_to_xstate): the image carries every supported component (XSTATE_BV
= XCR0_SUPPORTED); a component whose XSTATE_BV bit is clear is set to its initial state;
XCOMP_BV and the header's reserved bytes must be 0, XSTATE_BV a subset of the supported
components, and MXCSR free of reserved bits, else EINVAL."""

from kvm._silicon import ffi, lib
from kvm.cpuid import XCR0_SUPPORTED
from kvm.errors import KvmError
from kvm.structs import Xcr, Xcrs, Xsave

XFEATURE_FP, XFEATURE_SSE = 1 << 0, 1 << 1
XSTATE_BV, XCOMP_BV, HEADER_END = 512, 520, 576
FP_END, SSE_END = 160, 416            # x87: bytes 0-159; SSE: the XMM registers 160-415
MXCSR, MXCSR_MASK = 24, 28
FP_INIT = (0x037F).to_bytes(2, "little")   # FCW after FNINIT; everything else 0
MXCSR_MASK_DEFAULT = 0xFFBF
KVM_MAX_XCRS = 16
XCR_XFEATURE_ENABLED_MASK = 0


def _fxsave(cpu) -> bytearray:
    image = ffi.new("uint8_t[512]")
    lib.cpu_get_fxsave(cpu, image)
    return bytearray(ffi.buffer(image))


def get_xsave(cpu) -> Xsave:
    region = bytearray(4096)
    region[:512] = _fxsave(cpu)
    region[XSTATE_BV:XSTATE_BV + 8] = XCR0_SUPPORTED.to_bytes(8, "little")
    return Xsave(region)


def set_xsave(cpu, xsave: Xsave):
    src = bytes(xsave.region)
    word = lambda offset, size: int.from_bytes(src[offset:offset + size], "little")  # noqa: E731
    xstate_bv = word(XSTATE_BV, 8)
    if xstate_bv & ~XCR0_SUPPORTED or word(XCOMP_BV, 8) or any(src[XCOMP_BV + 8:HEADER_END]):
        raise KvmError("KVM_SET_XSAVE: invalid XSAVE header (EINVAL)")
    fx = _fxsave(cpu)
    mask = word(MXCSR_MASK, 4) or MXCSR_MASK_DEFAULT
    if xstate_bv & (XFEATURE_FP | XFEATURE_SSE) and word(MXCSR, 4) & ~mask:
        raise KvmError("KVM_SET_XSAVE: reserved MXCSR bits set (EINVAL)")
    if xstate_bv & XFEATURE_FP:
        fx[:FP_END] = src[:FP_END]
    else:
        kept = fx[MXCSR:MXCSR + 8]
        fx[:FP_END] = FP_INIT.ljust(FP_END, b"\0")
        fx[MXCSR:MXCSR + 8] = kept
    if xstate_bv & XFEATURE_SSE:
        fx[FP_END:SSE_END] = src[FP_END:SSE_END]
        fx[MXCSR:MXCSR + 4] = src[MXCSR:MXCSR + 4]
    else:
        fx[FP_END:SSE_END] = bytes(SSE_END - FP_END)
    lib.cpu_set_fxsave(cpu, ffi.from_buffer(fx))


def get_xcrs(cpu) -> Xcrs:
    return Xcrs(xcrs=[Xcr(XCR_XFEATURE_ENABLED_MASK, lib.cpu_get_xcr0(cpu))])


def set_xcrs(cpu, xcrs: Xcrs):
    """Only XCR0 is taken (other XCR numbers are ignored), with XSETBV's rules."""
    if xcrs.flags or xcrs.nr_xcrs > KVM_MAX_XCRS:
        raise KvmError("KVM_SET_XCRS: invalid flags or count (EINVAL)")
    for entry in xcrs.xcrs:
        if entry.xcr == XCR_XFEATURE_ENABLED_MASK:
            value = entry.value
            if not value & XFEATURE_FP or value & ~XCR0_SUPPORTED:
                raise KvmError(f"KVM_SET_XCRS: XCR0 {value:#x} is invalid (EINVAL)")
            lib.cpu_set_xcr0(cpu, value)
            return
