"""-d int and -d cpu_reset (devicemodel/cpu_log.py): QEMU's interrupt lines and register
dumps, for real guests on the real hypervisor, and the same records as QEMU's log for
the exceptions test kernel."""

import re

import pytest

import guests
from devicemodel.address_space import AddressSpace
from devicemodel.cpu_log import InterruptLog
from devicemodel.runstate import RunState
from devicemodel.vcpu_loop import VcpuLoop
from kvm_guest import CODE_GPA, KvmGuest

UNMAPPED = 0x40000000
RECORD = re.compile(r"^ *\d+: (v=.*)$", re.M)


def test_interrupt_log_shows_a_page_fault_like_qemu():
    g = KvmGuest(f"mov rax, [{UNMAPPED}]\n hlt\n .org 0x100\n hlt", mode="long64")
    g.set_idt_gate(14, CODE_GPA + 0x100)
    out = []
    g.vcpu.set_event_trace(InterruptLog(out.append))
    g.run()
    text = "".join(out).splitlines()
    assert text[0] == "check_exception old: 0xffffffff new 0xe"
    assert text[1] == (f"     0: v=0e e=0000 i=0 cpl=0 IP=0008:{CODE_GPA:016x} pc={CODE_GPA:016x} "
                       f"SP=0018:0000000000080000 CR2={UNMAPPED:016x}")
    assert text[2].startswith("RAX=")
    assert not any(line.startswith("FCW=") for line in text)      # -d int has no FPU lines


def test_triple_fault_logs_the_cpu_state_with_cpu_reset():
    g = KvmGuest("ud2", mode="long64")
    s = g.vcpu.get_sregs()
    s.idt.limit = 0
    g.vcpu.set_sregs(s)
    out, runstate = [], RunState()
    loop = VcpuLoop(g.vcpu, AddressSpace("io", 0x10000), AddressSpace("memory"), runstate, no_reboot=True,
                    cpu_reset_log=out.append)
    thread = loop.start()
    thread.join(10)
    assert runstate.exit_status == 0
    text = "".join(out).splitlines()
    assert text[0] == "Triple fault"
    assert text[5].startswith(f"RIP={CODE_GPA:016x} RFL=")       # at the UD2


def test_system_reset_logs_each_cpu_with_cpu_reset(firmware_dir, tmp_path):
    """The steer kernel triple-faults once; the machine resets and it boots again: the
    log has the triple fault, then each CPU's state as it is reset."""
    log = tmp_path / "reset.log"
    status, out, _ = guests.run_pyhv("-kernel", guests.guest_path("steer", firmware_dir), "-nographic",
                                     *guests.DEBUG_EXIT_ARGS, "-smp", "2", "-append", "reset=triple boots=2",
                                     "-d", "cpu_reset", "-D", log, timeout=60)
    assert status == guests.exit_status(2), out
    text = log.read_text()
    assert text.count("Triple fault\n") == 1
    assert text.index("Triple fault") < text.index("CPU Reset (CPU 0)\n") < text.index("CPU Reset (CPU 1)\n")
    dump = text.split("CPU Reset (CPU 1)\n")[1].splitlines()
    assert dump[0].startswith("EAX=") or dump[0].startswith("RAX=")
    assert any(line.startswith("FCW=") for line in dump)           # the reset dump has the FPU


def pc(record: str) -> int:
    return int(record.split(" pc=")[1].split()[0], 16)


def is_subsequence(short: list, long: list) -> bool:
    rest = iter(long)
    return all(any(item == other for other in rest) for item in short)


@pytest.mark.qemu
def test_exception_records_match_qemu(firmware_dir, tmp_path, qemu):
    """The exceptions the exceptions kernel takes, in order, with the same vector, error
    code, CPL, IP, SP and RAX as in QEMU's -d int log. The logs differ only where the two
    differ for a reason: QEMU's TCG skips the segment type and limit checks of data
    accesses (pyhv faults as the SDM says, so it has more hardware-exception records), and
    INT n does not exit under VMX (pyhv has no INT n records: QEMU's i=1 lines with
    vectors above 31, and INT 3 spelled CD 03)."""
    pyhv_log, qemu_log = tmp_path / "pyhv.log", tmp_path / "qemu.log"
    guests.run_pyhv("-kernel", firmware_dir / "exceptions.elf", *guests.DEBUG_EXIT_ARGS,
                    "-d", "int", "-D", pyhv_log, timeout=120)
    # QEMU stops making progress at the kernel's jump to an execute-only segment
    guests.run_qemu(firmware_dir / "exceptions.elf", until="ljmp to exec-only", timeout=60,
                    extra_args=["-d", "int", "-D", str(qemu_log)])
    ours, theirs = RECORD.findall(pyhv_log.read_text()), RECORD.findall(qemu_log.read_text())
    ours_hw, theirs_hw = ([r for r in log if " i=0 " in r] for log in (ours, theirs))
    assert len(theirs_hw) > 30
    assert ours_hw[:24] == theirs_hw[:24]            # up to the first check QEMU skips
    # after it, RAX can differ (a check's result feeds the next); the rest must not
    assert is_subsequence([r.split(" env->")[0] for r in theirs_hw], [r.split(" env->")[0] for r in ours_hw])
    reached = max(pc(r) for r in theirs)            # QEMU's log ends where it stopped
    ours_sw = [r for r in ours if " i=1 " in r and pc(r) <= reached]
    assert ours_sw and is_subsequence(ours_sw, [r for r in theirs if " i=1 " in r])
