"""The CPUID a vCPU shows, from what KVM supports (KVM_GET_SUPPORTED_CPUID), set per vCPU
with KVM_SET_CPUID2 as QEMU does: the local APIC (leaf 1 EDX bit 9), x2APIC (ECX bit 21)
and the TSC-deadline timer (ECX bit 24) as the machine's APIC offers them, the initial
APIC ID in leaf 1 EBX bits 31:24, and the x2APIC topology leaf 0xb: each vCPU a package
of one core with one thread (QEMU's -smp N), its x2APIC ID in EDX."""

from __future__ import annotations

import dataclasses

from kvm.cpuid import KVM_CPUID_FLAG_SIGNIFCANT_INDEX, CpuidEntry

LEAF1_EDX_APIC = 1 << 9
LEAF1_ECX_X2APIC = 1 << 21
LEAF1_ECX_TSC_DEADLINE = 1 << 24
TOPOLOGY_LEAF = 0xB
LEVEL_SMT, LEVEL_CORE = 1, 2


def vcpu_cpuid(supported, apic_id: int, *, apic: bool = True, x2apic: bool = True,
               tsc_deadline: bool = True) -> list[CpuidEntry]:
    entries = []
    for entry in supported:
        entry = dataclasses.replace(entry)
        if entry.function == 1:
            entry.ebx = (entry.ebx & 0x00FFFFFF) | (apic_id << 24)
            if not apic:
                entry.edx &= ~LEAF1_EDX_APIC
            if not (apic and x2apic):
                entry.ecx &= ~LEAF1_ECX_X2APIC
            if not (apic and tsc_deadline):
                entry.ecx &= ~LEAF1_ECX_TSC_DEADLINE
        if entry.function != TOPOLOGY_LEAF:
            entries.append(entry)
    # (shift to the next level's ID, logical processors at this level, level type, x2APIC ID)
    for index, (count, level) in enumerate(((1, LEVEL_SMT), (1, LEVEL_CORE), (0, 0))):
        entries.append(CpuidEntry(TOPOLOGY_LEAF, index, KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
                                  eax=0, ebx=count, ecx=(level << 8) | index, edx=apic_id))
    return entries
