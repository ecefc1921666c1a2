"""pyhv's own windows onto the virtualization hardware, in the monitor's style:

* ``info vmcs``: every field of the current vCPU's VMCS by its SDM name and encoding,
  grouped as Appendix B groups them, decoded where a number means something (controls by
  bit name, the exit reason by name, segment access rights, interruption information,
  CR0/CR4/EFER bits, the EPT pointer);
* ``info ept GPA``: the EPT walk of one guest-physical address, level by level;
* ``info vmx``: the VMX capabilities the silicon reports in its capability MSRs.
"""

from __future__ import annotations

from kvm import vmx

FIELD_TYPES = ("control", "VM-exit information", "guest-state", "host-state")
FIELD_WIDTHS = ("16-bit", "64-bit", "32-bit", "natural-width")
CR0_BITS = {0: "PE", 1: "MP", 2: "EM", 3: "TS", 4: "ET", 5: "NE", 16: "WP", 18: "AM",
            29: "NW", 30: "CD", 31: "PG"}
CR4_BITS = {0: "VME", 1: "PVI", 2: "TSD", 3: "DE", 4: "PSE", 5: "PAE", 6: "MCE", 7: "PGE",
            8: "PCE", 9: "OSFXSR", 10: "OSXMMEXCPT", 11: "UMIP", 13: "VMXE", 14: "SMXE",
            16: "FSGSBASE", 17: "PCIDE", 18: "OSXSAVE", 20: "SMEP", 21: "SMAP", 22: "PKE"}
EFER_BITS = {0: "SCE", 8: "LME", 10: "LMA", 11: "NXE"}
INTR_TYPES = ("external interrupt", "reserved", "NMI", "hardware exception",
              "software interrupt", "privileged software exception", "software exception",
              "other event")
ACTIVITY_STATES = ("active", "HLT", "shutdown", "wait-for-SIPI")
INTERRUPTIBILITY_BITS = {0: "blocking by STI", 1: "blocking by MOV SS", 2: "blocking by SMI",
                         3: "blocking by NMI"}
EPT_MEMORY_TYPES = {0: "UC", 1: "WC", 4: "WT", 5: "WP", 6: "WB"}
EPT_LEVEL_NAMES = {4: "PML4E", 3: "PDPTE", 2: "PDE", 1: "PTE"}
CONTROL_FIELDS = {field: prefix for _, _, field, prefix in vmx.CONTROLS}


def field_group(encoding: int) -> tuple[int, int]:
    """(type, width) of a VMCS field from its encoding (SDM Table 25-20 / B)."""
    return (encoding >> 10) & 3, (encoding >> 13) & 3


def bit_list(value: int, names: dict) -> str:
    parts = [names.get(bit, f"bit{bit}") for bit in range(64) if value >> bit & 1]
    return " ".join(parts) if parts else "-"


def access_rights(ar: int) -> str:
    """A VMCS segment access-rights field, decoded (SDM Table 25-2)."""
    if ar & (1 << 16):
        return "unusable"
    kind = ("code" if ar & 8 else "data") if ar & 0x10 else "system"
    parts = [f"type={ar & 15:#x} {kind}", f"DPL={(ar >> 5) & 3}", "P" if ar & 0x80 else "not-present"]
    parts += [name for bit, name in ((12, "AVL"), (13, "L"), (14, "D/B"), (15, "G")) if ar >> bit & 1]
    return " ".join(parts)


def interruption_info(info: int) -> str:
    if not info & (1 << 31):
        return "invalid"
    text = f"valid {INTR_TYPES[(info >> 8) & 7]} vector {info & 0xFF}"
    if info & (1 << 11):
        text += " +error code"
    if info & (1 << 12):
        text += " NMI-unblocking-IRET"
    return text


def eptp_text(eptp: int) -> str:
    return (f"root {eptp & ~0xFFF & ((1 << 52) - 1):#x}, memory type "
            f"{EPT_MEMORY_TYPES.get(eptp & 7, eptp & 7)}, {((eptp >> 3) & 7) + 1}-level walk"
            + (", accessed/dirty flags" if eptp & (1 << 6) else ""))


def decode_field(name: str, value: int) -> str:
    """What a field's value means, or "" where the number speaks for itself."""
    if name in CONTROL_FIELDS:
        return bit_list(value, vmx.control_bit_names(CONTROL_FIELDS[name]))
    if name == "VM_EXIT_REASON":
        return vmx.exit_reason_name(value)
    if name.endswith("_AR_BYTES"):
        return access_rights(value)
    if name in ("VM_EXIT_INTR_INFO", "VM_ENTRY_INTR_INFO_FIELD", "IDT_VECTORING_INFO_FIELD"):
        return interruption_info(value)
    if name in ("GUEST_CR0", "HOST_CR0", "CR0_READ_SHADOW", "CR0_GUEST_HOST_MASK"):
        return bit_list(value, CR0_BITS)
    if name in ("GUEST_CR4", "HOST_CR4", "CR4_READ_SHADOW", "CR4_GUEST_HOST_MASK"):
        return bit_list(value, CR4_BITS)
    if name in ("GUEST_IA32_EFER", "HOST_IA32_EFER"):
        return bit_list(value, EFER_BITS)
    if name == "GUEST_ACTIVITY_STATE":
        return ACTIVITY_STATES[value] if value < 4 else "reserved"
    if name == "GUEST_INTERRUPTIBILITY_INFO":
        return bit_list(value, INTERRUPTIBILITY_BITS)
    if name == "EPT_POINTER":
        return eptp_text(value)
    if name == "EXCEPTION_BITMAP":
        return "vectors " + (",".join(str(v) for v in range(32) if value >> v & 1) or "none")
    if name == "VM_INSTRUCTION_ERROR" and value:
        return f"error {value}"
    return ""


def info_vmcs(vcpu, index: int) -> str:
    """Every field of the vCPU's current VMCS, in groups."""
    fields = sorted(vmx.FIELDS.items(), key=lambda item: (field_group(item[1]), item[1]))
    lines = [f"VMCS of vCPU {index} (vmcs01 at host-physical {vcpu.vmcs01:#x}, "
             f"{len(fields)} fields)"]
    width = max(len(name) for name, _ in fields)
    group = None
    for name, encoding in fields:
        if field_group(encoding) != group:
            group = field_group(encoding)
            lines.append(f"{FIELD_WIDTHS[group[1]]} {FIELD_TYPES[group[0]]} fields:")
        try:
            value = vcpu.vmread(encoding)
        except Exception as e:     # a field this VMCS cannot read: say so, go on
            lines.append(f"  {name:<{width}} ({encoding:#06x}) unreadable: {e}")
            continue
        digits = {0: 4, 1: 16, 2: 8, 3: 16}[group[1]]
        meaning = decode_field(name, value)
        lines.append(f"  {name:<{width}} ({encoding:#06x}) = {value:0{digits}x}"
                     + (f"  {meaning}" if meaning else ""))
    return "\n".join(lines)


def _ept_permissions(entry: int) -> str:
    return "".join(ch if entry >> bit & 1 else "-" for bit, ch in ((0, "r"), (1, "w"), (2, "x")))


def info_ept(vm, gpa: int) -> str:
    """The walk the processor makes for ``gpa`` through the VM's EPT."""
    ept = vm.ept
    lines = [f"EPT walk of guest-physical {gpa:#x} (EPTP {ept.eptp:#x}: {eptp_text(ept.eptp)})"]
    walk = ept.walk(gpa)
    for level, entry in walk:
        index = (gpa >> (12 + 9 * (level - 1))) & 0x1FF
        line = f"  {EPT_LEVEL_NAMES[level]:<5} [{index:3}] {entry:016x} {_ept_permissions(entry)}"
        if entry & 7:
            leaf = level == 1 or entry & vmx.VMX_EPT_LARGE
            address = entry & ((1 << 52) - 1) & ~0xFFF
            flags = [name for bit, name in ((8, "accessed"), (9, "dirty")) if entry >> bit & 1]
            if leaf:
                line += (f" memtype {EPT_MEMORY_TYPES.get((entry >> 3) & 7, '?')}"
                         f"{' ' + ' '.join(flags) if flags else ''} -> page at host-physical {address:#x}")
            else:
                line += f" -> table at host-physical {address:#x}"
        else:
            line += " not present"
        lines.append(line)
    level, entry = walk[-1]
    if entry & 7 and (level == 1 or entry & vmx.VMX_EPT_LARGE):
        span = 1 << (12 + 9 * (level - 1))
        hpa = (entry & ((1 << 52) - 1) & ~(span - 1)) | (gpa & (span - 1))
        lines.append(f"guest-physical {gpa:#x} -> host-physical {hpa:#x} ({_ept_permissions(entry)})")
    else:
        slot = vm.memslots.find(gpa)
        lines.append(f"guest-physical {gpa:#x} is not mapped: "
                     + ("guest RAM (memslot %d), mapped on its first access (EPT violation)" % slot.slot
                        if slot is not None else "not RAM (an access is an EPT violation that exits as MMIO)"))
    return "\n".join(lines)


def info_vmx(vcpu) -> str:
    """The capability MSRs: VMCS revision, each control's allowed settings, EPT/VPID."""
    basic = vcpu.rdmsr_root(vmx.MSR_IA32_VMX_BASIC)
    lines = [f"IA32_VMX_BASIC {basic:#018x}: VMCS revision {basic & 0x7FFFFFFF}, "
             f"region size {(basic >> 32) & 0x1FFF} bytes"]
    for title, msr, _, prefix in vmx.CONTROLS:
        cap = vcpu.rdmsr_root(msr)
        must, may = cap & 0xFFFFFFFF, cap >> 32
        names = vmx.control_bit_names(prefix)
        lines.append(f"{title} (MSR {msr:#x}): allowed-1 {may:#010x}, fixed-1 {must:#010x}")
        for bit in range(32):
            if may >> bit & 1:
                setting = "fixed to 1" if must >> bit & 1 else "0 or 1"
                lines.append(f"  {bit:2} {names.get(bit, '(reserved, default 1)'):<40} {setting}")
    ept = vcpu.rdmsr_root(vmx.MSR_IA32_VMX_EPT_VPID_CAP)
    lines.append(f"IA32_VMX_EPT_VPID_CAP (MSR 0x48c): {ept:#018x}")
    lines.append("VM-exit reasons the silicon produces: "
                 + ", ".join(f"{code} {vmx.EXIT_REASONS[code]}" for code in sorted(vmx.PRODUCED_EXIT_REASONS)))
    return "\n".join(lines)
