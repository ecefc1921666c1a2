"""Blocks compiled to host code (cffi_build/jit.c) against the same blocks interpreted.
Each guest runs with blocks compiled never (0), at their first run (1) and at the
silicon's default (16: hot loops get compiled part way through), and must end in the
same state: registers, memory, the count of retired instructions, and what it showed
at its exits.  Then what compiled code must notice: a store into its own code, a page
fault and an MMIO access in the middle of a block, and a kick while compiled blocks
jump straight into each other.  And the perf map that names compiled blocks."""

import os
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kvm._silicon import lib
from kvm.constants import KVM_EXIT_HLT, KVM_EXIT_INTR, KVM_EXIT_MMIO
from kvm_guest import CODE_GPA, DATA_GPA, KvmGuest

THRESHOLDS = (0, 1, 16)
DATA_SIZE = 0x3000


def guest(source, threshold, mode="long64", **kw):
    g = KvmGuest(source, mode=mode, **kw)
    lib.cpu_set_jit_threshold(g.vcpu.cpu, threshold)
    g.write(DATA_GPA, bytes((k * 37 + 11) & 0xFF for k in range(DATA_SIZE)))
    return g


def final_state(g):
    r = g.vcpu.get_regs()
    names = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12",
             "r13", "r14", "r15", "rip", "rflags")
    return ({n: getattr(r, n) for n in names} if g.mode == "long64" else
            {n: getattr(r, n) for n in names if not n.startswith("r1") and not n[1:].isdigit()},
            g.read(DATA_GPA, DATA_SIZE), g.vcpu.instructions_retired())


MIXED_LOOP_64 = f"""
    mov rsi, {DATA_GPA}
    xor eax, eax
    xor ebx, ebx
    mov ecx, 600
    mov rdx, 0x9e3779b97f4a7c15
loop:
    mov r8, [rsi + rcx*8 - 8]
    add r8, rdx
    xor rax, r8
    mov [rsi + rcx*2 + 0x1000], ax
    movzx r9d, byte ptr [rsi + rcx]
    movzx r13d, word ptr [rsi + 0x20]
    add eax, r9d
    or r13, rax
    lea r10, [rax + rcx*4 + 7]
    lea r14d, [rax - 3]
    sub r10, rdx
    mov [rsi + 0x2800], r10
    mov [rsi + 0x2808], r14d
    mov [rsi + rcx + 0x2000], r9b
    cmp eax, 0x80000000
    jb below
    inc rbx
below:
    test r10, 1
    jnz odd
    add r11, 3
odd:
    and r15d, 0xff00ff
    add rax, rcx
    jc carry
    add r12, 1
carry:
    dec ecx
    jnz loop
    hlt"""

MIXED_LOOP_32 = f"""
    mov edi, {DATA_GPA}
    mov ecx, 600
    xor edx, edx
loop:
    movzx eax, word ptr [edi + ecx*2]
    imul eax, eax, 33
    shr eax, 3
    sub edx, eax
    mov [edi + ecx*4 + 0x1000], edx
    lea ebp, [edx + ecx*8 - 5]
    test ebp, 0x10
    jz skip
    xor edx, ebp
skip:
    cmp edx, 0x40000000
    jge big
    add edx, 0x1234
big:
    mov byte ptr [edi + ecx + 0x2800], dl
    dec ecx
    jnz loop
    hlt"""


@pytest.mark.parametrize("mode, source", [("long64", MIXED_LOOP_64), ("prot32", MIXED_LOOP_32)],
                         ids=["long64", "prot32"])
def test_compiled_loops_end_as_interpreted_ones_do(mode, source):
    states = {}
    for threshold in THRESHOLDS:
        g = guest(source, threshold, mode=mode)
        assert g.run().exit_reason == KVM_EXIT_HLT
        states[threshold] = final_state(g)
    regs, memory, retired = states[0]
    assert retired > 600 * 12
    for threshold in THRESHOLDS[1:]:
        assert states[threshold][0] == regs, f"registers, threshold {threshold}"
        assert states[threshold][1] == memory, f"memory, threshold {threshold}"
        assert states[threshold][2] == retired, f"retired instructions, threshold {threshold}"


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_store_into_its_own_code_is_seen_at_the_next_iteration(threshold):
    # each iteration adds the immediate, then stores the next count into it
    g = guest("""
        lea rdi, [rip + imm]
        mov ecx, 100
        xor ebx, ebx
        mov eax, 1
    loop:
        .byte 0x81, 0xc3
    imm:
        .long 0
        inc eax
        mov [rdi], eax
        dec ecx
        jnz loop
        hlt""", threshold)
    assert g.run().exit_reason == KVM_EXIT_HLT
    assert g.reg("rbx") == sum(range(2, 101))


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_a_page_fault_in_a_compiled_block_reports_the_faulting_instruction(threshold):
    g = guest(f"""
        mov rsi, {DATA_GPA}
        xor ecx, ecx
        xor ebx, ebx
    loop:
        add rbx, rcx
    load:
        mov rax, [rsi + rcx*8]
        add rbx, rax
        inc ecx
        jmp loop
    .org 0x800
        mov rax, [rsp + 8]
        mov [{DATA_GPA + 0x2ff8}], rax
        hlt""", threshold)
    g.unmap(DATA_GPA + 0x1000)
    g.set_idt_gate(14, CODE_GPA + 0x800)
    assert g.run().exit_reason == KVM_EXIT_HLT
    load = CODE_GPA + g.code.index(bytes.fromhex("488b04ce"))   # mov rax, [rsi + rcx*8]
    assert struct.unpack("<Q", g.read(DATA_GPA + 0x2ff8, 8))[0] == load
    assert g.vcpu.get_sregs().cr2 == DATA_GPA + 0x1000
    assert g.reg("rcx") == 512
    words = struct.unpack("<512Q", g.read(DATA_GPA, 0x1000))
    assert g.reg("rbx") == (sum(words) + sum(range(513))) & (2**64 - 1)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_mmio_stores_from_a_compiled_loop_exit_in_order(threshold):
    mmio = 0x3000_0000   # no memory slot there
    g = guest(f"""
        mov rdi, {mmio}
        mov ecx, 40
    loop:
        mov [rdi + 8], ecx
        dec ecx
        jnz loop
        hlt""", threshold)
    seen = []
    while (run := g.run()).exit_reason == KVM_EXIT_MMIO:
        assert run.mmio.is_write and run.mmio.phys_addr == mmio + 8 and run.mmio.len == 4
        seen.append(struct.unpack("<I", bytes(run.mmio.data[:4]))[0])
    assert run.exit_reason == KVM_EXIT_HLT
    assert seen == list(range(40, 0, -1))


def test_a_kick_stops_compiled_blocks_that_jump_into_each_other():
    g = guest("""
        xor eax, eax
        xor ebx, ebx
    a:
        add rax, 1
        jmp b
    .org 0x40
    b:
        add rbx, 1
        jmp a""", 1)
    timer = threading.Timer(0.2, g.vcpu.kick)
    timer.start()
    started = time.perf_counter()
    run = g.vcpu.run()
    timer.join()
    assert run.exit_reason == KVM_EXIT_INTR
    assert time.perf_counter() - started < 5
    rax, rbx = g.reg("rax"), g.reg("rbx")
    assert rax > 10000 and rax - rbx in (0, 1)
    # two instructions per block, and the two xors
    assert g.vcpu.instructions_retired() == 2 + 2 * (rax + rbx)
    assert g.run(watchdog=0.05).exit_reason == KVM_EXIT_INTR
    assert g.reg("rax") > rax


def test_perf_map_names_the_compiled_blocks(tmp_path):
    # PYHV_PERF_MAP=1: perf's symbol file for JIT code, read when the process starts
    script = tmp_path / "loop.py"
    script.write_text(f"""
import os, sys
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parent.parent)!r}]
from kvm_guest import KvmGuest
g = KvmGuest('''
    mov ecx, 1000
again:
    add eax, ecx
    dec ecx
    jnz again
    hlt''', mode="long64")
g.run()
print(os.getpid())
""")
    env = dict(os.environ, PYHV_PERF_MAP="1")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent, timeout=60)
    assert out.returncode == 0, out.stderr
    perf_map = Path(f"/tmp/perf-{out.stdout.split()[-1]}.map")
    try:
        lines = perf_map.read_text().splitlines()
    finally:
        perf_map.unlink()
    loop = CODE_GPA + 5   # after the 5-byte MOV
    names = [line.split(" ", 2) for line in lines]
    assert any(int(size, 16) > 0 and name.startswith(f"guest RIP {loop:#x} (vCPU 0, ")
               for _, size, name in names), lines


BYTE_COMPARES = f"""
    mov rsi, {DATA_GPA}
    xor ebx, ebx
    mov r15, 0x100000000
    mov ecx, 2000
loop:
    mov al, [rsi + rcx]
    mov dl, [rsi + rcx + 1]
    cmp al, dl
    jl less
    add rbx, 1
less:
    cmp al, 0x80
    ja above
    add rbx, 0x100
above:
    test dl, 0x41
    jp parity
    add rbx, 0x10000
parity:
    cmp byte ptr [rsi + rcx + 2], 0x10
    jg greater
    add rbx, 0x1000000
greater:
    test byte ptr [rsi + rcx + 3], 0x81
    js negative
    add rbx, r15
negative:
    dec ecx
    jnz loop
    hlt"""


def signed_byte(v):
    return v - 256 if v & 0x80 else v


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_byte_compares_fused_with_branches(threshold):
    g = guest(BYTE_COMPARES, threshold)
    assert g.run().exit_reason == KVM_EXIT_HLT
    d = g.read(DATA_GPA, DATA_SIZE)
    expected = 0
    for c in range(2000, 0, -1):
        expected += 0 if signed_byte(d[c]) < signed_byte(d[c + 1]) else 1
        expected += 0 if d[c] > 0x80 else 0x100
        expected += 0 if bin(d[c + 1] & 0x41).count("1") % 2 == 0 else 0x10000
        expected += 0 if signed_byte(d[c + 2]) > 0x10 else 0x1000000
        expected += 0 if d[c + 3] & 0x80 else 1 << 32
    assert g.reg("rbx") == expected
