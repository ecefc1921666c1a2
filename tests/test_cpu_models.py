"""-cpu: models and features cut from what pyhv's processor implements."""

import pytest

from devicemodel.cpu_models import CpuSpec, build_cpuid, cpu_help, parse_cpu
from devicemodel.errors import ConfigError
from kvm.cpuid import supported_cpuid


def leaf(entries, function, index=0):
    """(eax, ebx, ecx, edx) of the entry for function/index in a KVM_SET_CPUID2 table."""
    return next(((e.eax, e.ebx, e.ecx, e.edx) for e in entries
                 if e.function == function and e.index == index), (0, 0, 0, 0))


def vendor(entries):
    _, b, c, d = leaf(entries, 0)
    return b"".join(r.to_bytes(4, "little") for r in (b, d, c)).decode()


def test_max_and_host_are_the_processor():
    for model in ("max", "host"):
        assert [vars(e) for e in build_cpuid(parse_cpu(model), supported_cpuid())] == \
            [vars(e) for e in supported_cpuid()]


def test_features_are_switched_off_and_on():
    entries = build_cpuid(parse_cpu("max,-sse4.2,popcnt=off,-nx"), supported_cpuid())
    _, _, ecx, _ = leaf(entries, 1)
    assert not ecx & (1 << 20) and not ecx & (1 << 23) and ecx & (1 << 19)   # sse4.1 stays
    assert not leaf(entries, 0x80000001)[3] & (1 << 20)
    entries = build_cpuid(parse_cpu("base,+sse2,sse3=on"), supported_cpuid())
    _, _, ecx, edx = leaf(entries, 1)
    assert edx == 1 << 26 and ecx & 1 and ecx & (1 << 31)                    # sse2, pni, hypervisor


def test_base_has_no_features_but_the_hypervisor_bit():
    entries = build_cpuid(parse_cpu("base"), supported_cpuid())
    _, _, ecx, edx = leaf(entries, 1)
    assert edx == 0 and ecx == 1 << 31
    assert leaf(entries, 7)[1] == 0 and leaf(entries, 0x80000001)[2:] == (0, 0)


def test_kvm64_identity_and_filtered_features(capsys):
    entries = build_cpuid(parse_cpu("kvm64"), supported_cpuid())
    assert vendor(entries) == "GenuineIntel"
    eax = leaf(entries, 1)[0]
    assert (eax >> 8 & 0xF, eax >> 4 & 0xF, eax & 0xF) == (15, 6, 1)
    brand = b"".join(r.to_bytes(4, "little") for k in range(3) for r in leaf(entries, 0x80000002 + k))
    assert brand.rstrip(b"\0") == b"Common KVM processor"
    assert leaf(entries, 1)[3] & (1 << 26)                                    # sse2
    assert not leaf(entries, 1)[2] & (1 << 9)                                 # no ssse3 in kvm64
    assert capsys.readouterr().err == ""                                      # all of kvm64 is implemented


def test_qemu64_is_an_amd_model():
    entries = build_cpuid(parse_cpu("qemu64"), supported_cpuid())
    assert vendor(entries) == "AuthenticAMD"
    eax = leaf(entries, 1)[0]
    assert (eax >> 8 & 0xF, eax >> 20 & 0xFF, (eax >> 16 & 0xF) << 4 | eax >> 4 & 0xF) == (15, 0, 107)


def test_enforce_refuses_a_model_the_processor_cannot_give():
    with pytest.raises(ConfigError, match="does not implement the CPU feature.*svm"):
        build_cpuid(parse_cpu("qemu64,enforce"), supported_cpuid())


def test_asking_for_an_unimplemented_feature_is_an_error():
    with pytest.raises(ConfigError, match="'avx512f' is not implemented by pyhv's processor"):
        build_cpuid(parse_cpu("max,+avx512f"), supported_cpuid())
    with pytest.raises(ConfigError, match="'vmx' is not implemented"):
        build_cpuid(parse_cpu("max,vmx=on"), supported_cpuid())


def test_the_supported_table_is_not_changed():
    before = [vars(e).copy() for e in supported_cpuid()]
    supported = supported_cpuid()
    build_cpuid(CpuSpec(model="base"), supported)
    assert [vars(e) for e in supported] == before


@pytest.mark.parametrize("text, message", [
    ("pentium9", "unable to find CPU model 'pentium9'"),
    ("max,+bogus", "unknown CPU feature 'bogus'"),
    ("max,bogus=on", "CPU property 'bogus' is not supported"),
    ("max,sse2=maybe", "expects on or off"),
    ("max,+osxsave", "reflects the guest's CR4.OSXSAVE"),
    ("qemu64,vendor=AuthenticAMD", "CPU property 'vendor' is not supported"),
    ("max,enforce=sometimes", "expects on or off"),
])
def test_bad_cpu_options(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cpu(text)


def test_cpu_help_lists_models_and_flags():
    text = cpu_help()
    assert text.startswith("Available CPUs:\n")
    assert "x86 qemu64" in text and "x86 max" in text
    assert "Recognized CPUID flags:" in text and " sse4.2 " in text + " "
