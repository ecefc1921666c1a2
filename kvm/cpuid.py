"""The CPUID model: what the silicon implements and the paravirtual leaves of KVM, as
KVM_GET_SUPPORTED_CPUID reports them.  The CPUID exit is answered from the table
KVM_SET_CPUID2 sets by kvm/'s compiled half (root_cpuid.c)."""

from dataclasses import dataclass

KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1


@dataclass
class CpuidEntry:
    function: int
    index: int = 0
    flags: int = 0
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0


def _regs(text: str):
    raw = text.encode().ljust(12, b"\0")
    return [int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8)]


def _brand_leaves():
    brand = b"pyhv emulated x86-64 with VT-x".ljust(48, b"\0")
    out = []
    for k in range(3):
        chunk = brand[k * 16:(k + 1) * 16]
        words = [int.from_bytes(chunk[i:i + 4], "little") for i in range(0, 16, 4)]
        out.append(CpuidEntry(0x80000002 + k, 0, 0, *words))
    return out


# CPUID.1:EDX / ECX, 7:EBX and 80000001h feature bits the core implements
LEAF1_EDX_APIC = 1 << 9            # reflects IA32_APIC_BASE's global enable bit
LEAF1_EDX = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | \
    LEAF1_EDX_APIC | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 15) | (1 << 16) | \
    (1 << 17) | (1 << 19) | (1 << 23) | (1 << 24) | (1 << 25) | (1 << 26)
# FPU DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36 CLFSH MMX FXSR SSE SSE2
# (the local APIC is userspace's: its MSRs reach it through KVM_CAP_X86_USER_SPACE_MSR)
LEAF1_ECX_X2APIC = 1 << 21
LEAF1_ECX_TSC_DEADLINE = 1 << 24
LEAF1_ECX = (1 << 0) | (1 << 9) | (1 << 13) | (1 << 19) | (1 << 20) | LEAF1_ECX_X2APIC | \
    (1 << 22) | (1 << 23) | LEAF1_ECX_TSC_DEADLINE | (1 << 26) | (1 << 31)
# SSE3 SSSE3 CX16 SSE4.1 SSE4.2 x2APIC MOVBE POPCNT TSC-deadline XSAVE HYPERVISOR
LEAF1_ECX_OSXSAVE = 1 << 27        # reflects CR4.OSXSAVE
XCR0_SUPPORTED = 0x3               # XSAVE state components: x87, SSE
XSAVE_AREA_SIZE = 576              # legacy region and XSAVE header
LEAF7_EBX = (1 << 7) | (1 << 9) | (1 << 20)                        # SMEP ERMS SMAP
LEAF7_EDX = 1 << 29                                                # IA32_ARCH_CAPABILITIES
EXT1_ECX = (1 << 0) | (1 << 5)                                     # LAHF/SAHF LZCNT
EXT1_EDX = (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29)   # SYSCALL NX 1GB-pages RDTSCP LM
# KVM's paravirtual features (CPUID.40000001H:EAX): kvmclock through MSR_KVM_*_NEW, whose
# pvclock pages set PVCLOCK_TSC_STABLE_BIT
KVM_FEATURE_CLOCKSOURCE2 = 1 << 3
KVM_FEATURE_CLOCKSOURCE_STABLE_BIT = 1 << 24
KVM_FEATURES = KVM_FEATURE_CLOCKSOURCE2 | KVM_FEATURE_CLOCKSOURCE_STABLE_BIT


def supported_cpuid():
    vendor_b, vendor_d, vendor_c = _regs("GenuineIntel")
    kvm_b, kvm_c, kvm_d = _regs("KVMKVMKVM")
    family, model, stepping = 6, 0x2A, 7
    signature = (family << 8) | ((model & 0xF) << 4) | ((model >> 4) << 16) | stepping
    return [
        CpuidEntry(0, 0, 0, 0xD, vendor_b, vendor_c, vendor_d),
        CpuidEntry(1, 0, 0, signature, (8 << 8) | (1 << 16), LEAF1_ECX, LEAF1_EDX),
        CpuidEntry(7, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, LEAF7_EBX, 0, LEAF7_EDX),
        CpuidEntry(0xD, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, XCR0_SUPPORTED, XSAVE_AREA_SIZE,
                   XSAVE_AREA_SIZE, 0),
        CpuidEntry(0xD, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0, 0, 0, 0),
        CpuidEntry(0x40000000, 0, 0, 0x40000001, kvm_b, kvm_c, kvm_d),
        CpuidEntry(0x40000001, 0, 0, KVM_FEATURES, 0, 0, 0),
        CpuidEntry(0x80000000, 0, 0, 0x80000008, 0, 0, 0),
        CpuidEntry(0x80000001, 0, 0, 0, 0, EXT1_ECX, EXT1_EDX),
        *_brand_leaves(),
        CpuidEntry(0x80000008, 0, 0, 0x3028, 0, 0, 0),
    ]
