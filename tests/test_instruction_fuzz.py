"""Garbage never harms the host (issue: the processor): random instruction bytes in real
mode, 32-bit protected mode with and without paging, and 64-bit mode end in an
architectural outcome (tests/instruction_fuzz.py); under AddressSanitizer and
UndefinedBehaviorSanitizer (a debug build of the core, slow) the sanitizers find nothing."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import instruction_fuzz
from kvm.constants import KVM_EXIT_INTERNAL_ERROR, KVM_INTERNAL_ERROR_DELIVERY_EV
from kvm_guest import CODE_GPA, KvmGuest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", instruction_fuzz.MODES)
def test_random_bytes_end_architecturally(mode):
    tally = instruction_fuzz.fuzz(seed=instruction_fuzz.MODES.index(mode), count=100, modes=(mode,))
    assert sum(tally.values()) == 100
    assert tally.get("HLT", 0) > 30          # most sequences fault into the IDT's handler


def test_an_exception_whose_stack_is_mmio_is_reported_as_kvm_does():
    """Found by the fuzzer: ESP = 0 wraps the #UD frame to the top of the 4 GiB, outside RAM. There is
    no instruction to emulate for that MMIO access, so KVM_RUN ends with
    KVM_INTERNAL_ERROR_DELIVERY_EV (it used to loop in the hypervisor, deaf to kicks)."""
    g = KvmGuest("mov esp, 0\n ud2\n .org 0x800\n hlt", mode="prot32")
    g.set_idt_gate(6, CODE_GPA + 0x800)
    run = g.run(watchdog=5.0)
    assert run.exit_reason == KVM_EXIT_INTERNAL_ERROR
    assert run.internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV
    vectoring, reason, _, gpa, cpu = run.internal.data
    assert vectoring & 0xFF == 6 and reason == 48 and gpa == 0xFFFFFFFC      # the first push, EFLAGS
    assert cpu == 0


def sanitizer_build(out: Path) -> Path:
    """The core built with -fsanitize=address,undefined into out/kvm, next to a copy of
    kvm/'s Python files: put `out` first on PYTHONPATH to use it."""
    shutil.copytree(REPO / "kvm", out / "kvm", ignore=shutil.ignore_patterns("_silicon*", "__pycache__"))
    env = dict(os.environ, PYHV_SANITIZE="address,undefined")
    subprocess.run([sys.executable, str(REPO / "cffi_build" / "build_silicon.py"), "--out", str(out)],
                   check=True, env=env, cwd=REPO, capture_output=True)
    return out


@pytest.mark.slow
def test_random_bytes_under_the_sanitizers(tmp_path):
    build = sanitizer_build(tmp_path / "asan")
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(build), str(REPO), str(REPO / "tests")]),
               LD_PRELOAD=libasan, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([sys.executable, str(REPO / "tests" / "instruction_fuzz.py"), "1", "300"],
                       env=env, capture_output=True, text=True, timeout=1200)
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-5000:]
    assert r.returncode == 0, r.stderr[-3000:]
    assert "HLT" in r.stdout
