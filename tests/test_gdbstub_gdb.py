"""The real gdb, in batch mode, debugging firmware/kernels/gdbtest.c through pyhv's
gdbstub: connect, break at a function, continue, backtrace, print variables, next,
step into a call, finish, info registers, x/4xw, a hardware watchpoint, a hardware
breakpoint, writing a variable, detach; Ctrl-C while the guest runs; vCPUs as threads."""

import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gdb_remote import GdbMachine
from guests import exit_status, guest_path

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")

SOURCE = "gdbtest.c"


def run_gdb(port: int, kernel, commands: list[str], interrupt_after: float = None) -> str:
    """gdb -batch on `kernel` against the stub; SIGINT (Ctrl-C) after `interrupt_after` s."""
    args = ["gdb", "-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for command in commands:
        args += ["-ex", command]
    proc = subprocess.Popen(args + [str(kernel)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if interrupt_after is not None:
        time.sleep(interrupt_after)
        proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    return out


def lines_in_order(out: str, *patterns: str):
    """Each regular expression matches a line after the previous one's."""
    lines = out.splitlines()
    pos = 0
    for pattern in patterns:
        for k in range(pos, len(lines)):
            if re.search(pattern, lines[k]):
                pos = k + 1
                break
        else:
            raise AssertionError(f"no line matching {pattern!r} after line {pos} in:\n{out}")


@pytest.fixture
def gdbtest(firmware_dir, tmp_path):
    m = GdbMachine(guest_path("gdbtest"), tmp_path)
    yield m
    m.close()


SESSION = ["break add_squares", "continue", "backtrace", "print counter", "print greeting",
           "next", "next", "step", "backtrace", "finish",
           "info registers eip", "info registers", "x/4xw &squares",
           "watch counter", "continue", "continue",
           "set var counter = 100", "print counter", "delete",
           "hbreak square", "continue", "print x", "delete", "detach"]


def test_debugging_session(gdbtest):
    out = run_gdb(gdbtest.port, guest_path("gdbtest"), SESSION)
    lines_in_order(
        out,
        r"^_start \(\) at .*entry\.S:\d+",                               # -S: stopped at the entry
        r"^Breakpoint 1 at 0x[0-9a-f]+: file .*gdbtest\.c, line 27\.",
        r"^Breakpoint 1, add_squares \(n=8\) at .*gdbtest\.c:27",
        r"^#0  add_squares \(n=8\) at .*gdbtest\.c:27",
        r"^#1  0x[0-9a-f]+ in kmain \(\) at .*gdbtest\.c:40",
        r"^\$1 = 0$",
        r'^\$2 = "hello, gdb"$',
        r"^28\s+for \(uint32_t i = 0; i < n; i\+\+\) \{",                 # next
        r"^29\s+squares\[i\] = square\(i\);",                            # next
        r"^square \(x=0\) at .*gdbtest\.c:22",                            # step into the call
        r"^#0  square \(x=0\) at .*gdbtest\.c:22",
        r"^#1  0x[0-9a-f]+ in add_squares \(n=8\) at .*gdbtest\.c:29",
        r"^0x[0-9a-f]+ in add_squares \(n=8\) at .*gdbtest\.c:29",         # finish
        r"^Value returned is \$3 = 0",
        r"^eip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <add_squares\+\d+>",
        r"^eflags\s+0x[0-9a-f]+\s+\[ .*\]",
        r"^cs\s+0x10\s+16",
        r"^cr0\s+0x11\s+\[ PE ET \]",
        r"^0x[0-9a-f]+ <squares>:\s+0x00000000\s+0x00000000\s+0x00000000\s+0x00000000",
        r"^Hardware watchpoint 2: counter",
        r"^Old value = 0", r"^New value = 1",
        r"^Old value = 1", r"^New value = 2",
        r"^\$4 = 100$",
        r"^Hardware assisted breakpoint 3 at 0x[0-9a-f]+: file .*gdbtest\.c, line 22\.",
        r"^Breakpoint 3, square \(x=2\) at .*gdbtest\.c:22",
        r"^\$5 = 2$",
        r"^\[Inferior 1 \(Remote target\) detached\]")
    assert gdbtest.wait() == exit_status(0x42)
    assert "gdbtest: total=140 counter=106" in gdbtest.output()   # 100 + six more


def test_stepi_and_register_writes(gdbtest):
    # the breakpoint is past the 3-byte prologue; two 3-byte instructions; then the
    # result register gets a new value that the caller receives
    out = run_gdb(gdbtest.port, guest_path("gdbtest"), [
        "break square", "continue", "stepi", "stepi", "print $pc == square + 9",
        "set var $eax = 0x1234", "print/x $eax", "finish", "kill"])
    lines_in_order(out, r"^Breakpoint 1, square \(x=0\)", r"^\$1 = 1$", r"^\$2 = 0x1234$",
                   r"^Value returned is \$3 = 4660$", r"^\[Inferior 1 \(Remote target\) killed\]")
    assert gdbtest.wait() == 0          # kill ends the VM


def test_ctrl_c_interrupts_a_running_guest(firmware_dir, tmp_path):
    m = GdbMachine(guest_path("bench32"), tmp_path, cmdline="iterations=1000000000")
    try:
        out = run_gdb(m.port, guest_path("bench32"), ["continue", "print $pc", "detach"],
                      interrupt_after=2.0)
        lines_in_order(out, r"^Program received signal SIGINT, Interrupt\.",
                       r"^\$1 = \(void \(\*\)\(\)\) 0x[0-9a-f]+ <",
                       r"^\[Inferior 1 \(Remote target\) detached\]")
        time.sleep(0.2)
        assert m.machine.runstate.status == "running"           # detach lets it go on
    finally:
        m.close()


def test_vcpus_are_threads(firmware_dir, tmp_path):
    m = GdbMachine(guest_path("gdbtest"), tmp_path, cpus=2)
    try:
        out = run_gdb(m.port, guest_path("gdbtest"), ["info threads", "thread 2", "info registers eip",
                                                       "detach"])
        lines_in_order(out, r"^\* 1\s+Thread 1 \(CPU#0 \[running\]\)",
                       r"^  2\s+Thread 2 \(CPU#1 \[halted\]\)",
                       r"^\[Switching to thread 2 \(Thread 2\)\]",
                       r"^eip\s+0xfff0\s+0xfff0")                  # an AP waits at its reset state
        assert m.wait() == exit_status(0x42)
    finally:
        m.close()


def test_x86_64_guest(firmware_dir, tmp_path):
    """bench64 switches to long mode itself; its image is no 32-bit ELF, so gdb gets the
    x86-64 description (with the ELF that has its symbols)."""
    m = GdbMachine(firmware_dir / "bench64.bin", tmp_path, cmdline="iterations=1")
    try:
        out = run_gdb(m.port, firmware_dir / "obj" / "bench64.elf64", [
            "break kmain64", "continue", "print $efer", "print $cs", "stepi",
            "info registers rip", "info registers cr0", "detach"])
        lines_in_order(out, r"^Breakpoint 1, kmain64 \(magic=732803074, mbi_addr=\d+\)",
                       r"^\$1 = \[ LME LMA \]", r"^\$2 = 8$",
                       r"^rip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <kmain64\+1>",
                       r"^cr0\s+0x80000011\s+\[ PE ET PG \]")
        assert m.wait() == exit_status(0)
        assert "bench64: iterations=1" in m.output()
    finally:
        m.close()


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def after_connecting(out: str) -> list[str]:
    """The session from its first breakpoint on; the stub's process naming aside."""
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("Breakpoint 1 at"))
    return [line.replace("(process 1)", "(Remote target)") for line in lines[start:]]


@pytest.mark.qemu
def test_the_session_reads_as_under_qemu(gdbtest, qemu, tmp_path):
    """The same gdb commands against QEMU's gdbstub (qemu-system-i386, TCG) print the
    same lines (registers aside: the machines differ)."""
    commands = [c for c in SESSION if not c.startswith("info registers")]
    ours = run_gdb(gdbtest.port, guest_path("gdbtest"), commands)
    port = free_port()
    proc = subprocess.Popen([str(Path(qemu).with_name("qemu-system-i386")), "-kernel", str(guest_path("gdbtest")),
                             "-display", "none", "-serial", "null", "-monitor", "none",
                             "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                             "-S", "-gdb", f"tcp:127.0.0.1:{port}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "QEMU's gdbstub does not listen"
                time.sleep(0.1)
        theirs = run_gdb(port, guest_path("gdbtest"), commands)
        assert proc.wait(60) == exit_status(0x42)
    finally:
        proc.kill()
        proc.wait()
    assert after_connecting(ours) == after_connecting(theirs)
    assert gdbtest.wait() == exit_status(0x42)
