"""``-cpu MODEL[,+feature|-feature|feature=on|off,...]``: the CPUID the guest sees, after
QEMU's x86 CPU models, cut from what pyhv's processor implements.

The processor (``kvm.get_supported_cpuid()``, like KVM_GET_SUPPORTED_CPUID) decides
what can exist: a model keeps only the features the silicon has (as QEMU under KVM
filters a model, with a warning per missing feature, or an error with ``enforce``),
and asking explicitly for a feature the silicon does not implement is an error.
Feature names are QEMU's (``-cpu help`` lists them).

Models: ``max`` and ``host`` (everything the processor implements: what pyhv shows
when no -cpu is given), ``base`` (no features), ``qemu64`` (QEMU's TCG default, an
AMD-vendor model), ``kvm64`` (QEMU's "Common KVM processor"). Every model also has
the hypervisor bit, as QEMU gives it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

from devicemodel.errors import ConfigError, error_report
from devicemodel.qemu_opts import parse_opts

# (leaf, subleaf, register) -> {name: bit}
_EDX1, _ECX1, _EBX7, _ECX7, _EDX7 = (1, 0, "edx"), (1, 0, "ecx"), (7, 0, "ebx"), (7, 0, "ecx"), (7, 0, "edx")
_EDX81, _ECX81 = (0x80000001, 0, "edx"), (0x80000001, 0, "ecx")
FEATURE_WORDS = {
    _EDX1: dict(fpu=0, vme=1, de=2, pse=3, tsc=4, msr=5, pae=6, mce=7, cx8=8, apic=9, sep=11, mtrr=12,
                pge=13, mca=14, cmov=15, pat=16, pse36=17, pn=18, clflush=19, ds=21, acpi=22, mmx=23,
                fxsr=24, sse=25, sse2=26, ss=27, ht=28, tm=29, ia64=30, pbe=31),
    _ECX1: {"pni": 0, "pclmulqdq": 1, "dtes64": 2, "monitor": 3, "ds-cpl": 4, "vmx": 5, "smx": 6,
            "est": 7, "tm2": 8, "ssse3": 9, "cid": 10, "fma": 12, "cx16": 13, "xtpr": 14, "pdcm": 15,
            "pcid": 17, "dca": 18, "sse4.1": 19, "sse4.2": 20, "x2apic": 21, "movbe": 22, "popcnt": 23,
            "tsc-deadline": 24, "aes": 25, "xsave": 26, "avx": 28, "f16c": 29, "rdrand": 30,
            "hypervisor": 31},
    _EBX7: {"fsgsbase": 0, "tsc-adjust": 1, "bmi1": 3, "hle": 4, "avx2": 5, "smep": 7, "bmi2": 8,
            "erms": 9, "invpcid": 10, "rtm": 11, "mpx": 14, "avx512f": 16, "avx512dq": 17, "rdseed": 18,
            "adx": 19, "smap": 20, "clflushopt": 23, "clwb": 24, "sha-ni": 29},
    _ECX7: {"umip": 2, "pku": 3, "waitpkg": 5, "gfni": 8, "vaes": 9, "la57": 16, "rdpid": 22},
    _EDX7: {"fsrm": 4, "md-clear": 10, "serialize": 14, "spec-ctrl": 26, "ssbd": 31},
    _EDX81: {"syscall": 11, "nx": 20, "mmxext": 22, "fxsr-opt": 25, "pdpe1gb": 26, "rdtscp": 27,
             "lm": 29, "3dnowext": 30, "3dnow": 31},
    _ECX81: {"lahf-lm": 0, "cmp-legacy": 1, "svm": 2, "extapic": 3, "cr8legacy": 4, "abm": 5,
             "sse4a": 6, "misalignsse": 7, "3dnowprefetch": 8, "osvw": 9, "xop": 11, "fma4": 16,
             "tbm": 21, "topoext": 22},
}
FEATURES = {name: (word, bit) for word, bits in FEATURE_WORDS.items() for name, bit in bits.items()}
ALIASES = {"sse3": "pni", "sse4_1": "sse4.1", "sse4-1": "sse4.1", "sse4_2": "sse4.2", "sse4-2": "sse4.2",
           "lahf_lm": "lahf-lm", "tsc_deadline": "tsc-deadline", "tsc_adjust": "tsc-adjust",
           "i64": "lm", "xd": "nx", "ffxsr": "fxsr-opt", "pclmuldq": "pclmulqdq"}
# Reflections of processor state, not features a model can choose.
DYNAMIC = {"osxsave": "it reflects the guest's CR4.OSXSAVE", "ospke": "it reflects the guest's CR4.PKE"}

_QEMU64 = ("fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 "
           "pni cx16 syscall nx lm lahf-lm svm")
_KVM64 = "fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 " \
         "pni cx16 syscall nx lm"


@dataclass(frozen=True)
class CpuModel:
    name: str
    description: str
    features: Optional[frozenset]        # None: all the processor has
    vendor: Optional[str] = None         # None: the processor's own identity (vendor, signature, brand)
    family: int = 0
    model: int = 0
    stepping: int = 0
    model_id: str = ""
    xlevel: int = 0x80000008


CPU_MODELS = {m.name: m for m in (
    CpuModel("base", "base CPU model type with no features enabled", frozenset()),
    CpuModel("host", "processor with all supported host features (pyhv's processor)", None),
    CpuModel("kvm64", "Common KVM processor", frozenset(_KVM64.split()), vendor="GenuineIntel",
             family=15, model=6, stepping=1, model_id="Common KVM processor"),
    CpuModel("max", "Enables all features supported by the accelerator in the current host", None),
    CpuModel("qemu64", "QEMU Virtual CPU version 2.5+", frozenset(_QEMU64.split()), vendor="AuthenticAMD",
             family=15, model=107, stepping=1, model_id="QEMU Virtual CPU version 2.5+", xlevel=0x8000000A),
)}


@dataclass(frozen=True)
class CpuSpec:
    """A parsed ``-cpu``: the model and the explicit feature changes, in order."""

    model: str = "max"
    changes: tuple = ()                  # (feature name, enabled)
    enforce: bool = False


def _feature_name(text: str) -> str:
    name = ALIASES.get(text, text)
    if name in DYNAMIC:
        raise ConfigError(f"CPU feature '{text}' cannot be chosen: {DYNAMIC[name]}")
    if name not in FEATURES:
        raise ConfigError(f"unknown CPU feature '{text}' (use -cpu help for a list)")
    return name


def parse_cpu(text: str) -> Union[CpuSpec, str]:
    """``-cpu`` argument -> CpuSpec, or the help text to print."""
    if text == "help":
        return cpu_help()
    model, *rest = text.split(",")
    if model not in CPU_MODELS:
        raise ConfigError(f"unable to find CPU model '{model}' (use -cpu help for a list)")
    spec = CpuSpec(model=model)
    changes = []
    for element in rest:
        if element[:1] in "+-" and element[1:] and "=" not in element:
            changes.append((_feature_name(element[1:]), element[0] == "+"))
            continue
        for key, value in parse_opts(element):
            if key in ("enforce", "check"):
                if value not in ("on", "off"):
                    raise ConfigError(f"Parameter '{key}' expects on or off")
                if key == "enforce":
                    spec = dataclasses.replace(spec, enforce=value == "on")
                continue
            if key in FEATURES or key in ALIASES or key in DYNAMIC:
                if value not in ("on", "off", "true", "false"):
                    raise ConfigError(f"CPU feature '{key}' expects on or off, not '{value}'")
                changes.append((_feature_name(key), value in ("on", "true")))
            else:
                raise ConfigError(f"CPU property '{key}' is not supported (pyhv has models and features: "
                                  f"-cpu help)")
    return dataclasses.replace(spec, changes=tuple(changes))


def cpu_help() -> str:
    lines = ["Available CPUs:"]
    for model in CPU_MODELS.values():
        lines.append(f"x86 {model.name:<22} {model.description}")
    lines += ["", "Recognized CPUID flags:"]
    line = " "
    for name in sorted(FEATURES):
        if len(line) + len(name) + 1 > 76:
            lines.append(line)
            line = " "
        line += " " + name
    lines.append(line)
    return "\n".join(lines)


def _regs(text: str) -> list[int]:
    raw = text.encode().ljust(12, b"\0")
    return [int.from_bytes(raw[i:i + 4], "little") for i in (0, 4, 8)]


def build_cpuid(spec: CpuSpec, supported: list) -> list:
    """The CPUID entries for ``spec``, from the processor's ``supported`` entries
    (``kvm.cpuid.CpuidEntry`` objects; copies are returned)."""
    model = CPU_MODELS[spec.model]
    entries = [dataclasses.replace(e) for e in supported]
    by_key = {(e.function, e.index): e for e in entries}

    def has(name: str) -> bool:
        (leaf, sub, reg), bit = FEATURES[name]
        entry = by_key.get((leaf, sub))
        return entry is not None and bool(getattr(entry, reg) >> bit & 1)

    silicon = {name for name in FEATURES if has(name)}
    wanted = set(silicon) if model.features is None else set(model.features) | {"hypervisor"}
    missing = sorted(wanted - silicon)
    if missing:
        message = (f"pyhv's processor does not implement the CPU feature(s) {', '.join(missing)} "
                   f"of model '{model.name}'")
        if spec.enforce:
            raise ConfigError(message)
        error_report(f"warning: {message}; the guest will not see them")
        wanted -= set(missing)
    for name, enable in spec.changes:
        if enable and name not in silicon:
            raise ConfigError(f"CPU feature '{name}' is not implemented by pyhv's processor "
                              f"(it implements: {' '.join(sorted(silicon))})")
        (wanted.add if enable else wanted.discard)(name)
    for (leaf, sub, reg), bits in FEATURE_WORDS.items():
        entry = by_key.get((leaf, sub))
        if entry is None:
            continue
        mask = sum(1 << bit for name, bit in bits.items())
        value = sum(1 << bit for name, bit in bits.items() if name in wanted)
        setattr(entry, reg, (getattr(entry, reg) & ~mask) | value)
    if model.vendor is not None:
        _set_identity(model, by_key)
    return entries


def _set_identity(model: CpuModel, by_key: dict) -> None:
    """The model's vendor, signature, extended level and brand string."""
    vendor_b, vendor_d, vendor_c = _regs(model.vendor)
    leaf0 = by_key[(0, 0)]
    leaf0.ebx, leaf0.ecx, leaf0.edx = vendor_b, vendor_c, vendor_d
    family, ext_family = min(model.family, 15), max(model.family - 15, 0)
    by_key[(1, 0)].eax = (ext_family << 20) | ((model.model >> 4) << 16) | (family << 8) \
        | ((model.model & 0xF) << 4) | model.stepping
    ext = by_key.get((0x80000000, 0))
    if ext is not None:
        ext.eax = min(ext.eax, model.xlevel)
    brand = model.model_id.encode().ljust(48, b"\0")
    for k in range(3):
        entry = by_key.get((0x80000002 + k, 0))
        if entry is not None:
            chunk = brand[16 * k:16 * (k + 1)]
            entry.eax, entry.ebx, entry.ecx, entry.edx = (int.from_bytes(chunk[i:i + 4], "little")
                                                          for i in range(0, 16, 4))
