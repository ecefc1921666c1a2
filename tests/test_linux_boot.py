"""Debian's Linux kernel boots to the busybox shell of tools/debian_linux.py's initramfs,
by the bzImage boot protocol and by its PVH entry, with nothing but the serial console on
the command line: the shell runs what is typed, ``reboot -f`` (with -no-reboot) and
``poweroff -f`` (ACPI S5) end pyhv, and the exit statistics show the exits a PC guest
makes and no internal errors. With -smp 2 the kernel brings up the second CPU through
the local APICs (in x2APIC mode) and uses both, with the local APICs on the processor's
APIC virtualization and without it: with it the EOIs and the APIC register reads do not
exit."""

import os
import re
import selectors
import subprocess
import sys
import time

import pytest

import debian

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 900      # seconds to the ready marker (the bzImage decompresses itself first)
COMMAND_TIMEOUT = 120
PROMPT = "/ # "


class Console:
    """pyhv with its serial console on a pipe: read until some text, type lines."""

    def __init__(self, kernel, initrd, *extra):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devicemodel", "-m", "256M", "-kernel", str(kernel), "-initrd", str(initrd),
             "-append", "console=ttyS0", "-nographic", "-no-reboot", "-d", "exits-summary", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.output = ""

    def read_until(self, text: str, timeout: float) -> str:
        """Everything printed up to and including `text` (which is consumed)."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{self.output[-3000:]}"
            if self.selector.select(1.0):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"pyhv ended before {text!r}:\n{self.output[-3000:]}"
                self.output += chunk.decode("utf-8", "replace").replace("\r", "")
        done, self.output = self.output.split(text, 1)
        return done + text

    def run(self, command: str) -> str:
        """Type a command at the prompt; its output (without the echo and next prompt)."""
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        self.read_until(command + "\n", COMMAND_TIMEOUT)
        return self.read_until(PROMPT, COMMAND_TIMEOUT)[:-len(PROMPT)]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def linux():
    return debian.debian_linux()


@pytest.mark.parametrize("protocol", ["bzImage", "PVH"])
def test_boot_to_the_shell_type_commands_and_reboot(linux, protocol):
    kernel = linux.kernel if protocol == "bzImage" else linux.vmlinux
    console = Console(kernel, linux.initrd)
    try:
        boot_log = console.read_until(debian.tool.READY_MARKER, BOOT_TIMEOUT)
        console.read_until(PROMPT, COMMAND_TIMEOUT)
        assert "Kernel panic" not in boot_log and "Oops" not in boot_log
        assert "tsc: Detected" in boot_log              # the TSC rate, from kvmclock

        assert console.run("uname -sr").strip() == f"Linux {linux.kernel_release}"
        assert console.run("uname -a").split()[:3] == ["Linux", "(none)", linux.kernel_release]
        assert {"cpuinfo", "interrupts", "meminfo", "1"} <= set(console.run("ls /proc").split())
        assert "Run /init as init process" in console.run("dmesg | tail -20")
        assert "pyhv emulated x86-64" in console.run("cat /proc/cpuinfo")
        assert console.run("echo abc | sha256sum").split()[0] == \
            "edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb"
        assert console.run("seq 1 2000 | sort -rn | head -1").strip() == "2000"
        assert re.search(r"^\s*0:\s+[1-9]\d*\s.*timer$", console.run("cat /proc/interrupts"), re.M)
        dmesg = console.run("dmesg")
        assert not re.search(r"BUG:|Oops|WARNING:|soft lockup|Call Trace", dmesg), dmesg

        console.proc.stdin.write(b"reboot -f\n")
        console.proc.stdin.flush()
        assert console.proc.wait(COMMAND_TIMEOUT) == 0
        stats = console.proc.stderr.read().decode()
        assert "guest requested a system reset" in stats
        for reason in ("IO_INSTRUCTION", "EPT_VIOLATION", "EXTERNAL_INTERRUPT", "HLT"):
            assert re.search(rf"^\s+{reason}\s+\d+", stats, re.M), stats
        assert "INTERNAL" not in stats and "UNKNOWN" not in stats, stats
    finally:
        console.close()


@pytest.mark.parametrize("apicv", ["on", "off"])
def test_two_vcpus_come_online_and_both_run(linux, apicv, tmp_path):
    trace = tmp_path / "exits.log"
    console = Console(linux.vmlinux, linux.initrd, "-smp", "2", "-accel", f"kvm,apicv={apicv}",
                      "-d", "exits", "-D", str(trace))
    try:
        boot_log = console.read_until(debian.tool.READY_MARKER, BOOT_TIMEOUT)
        console.read_until(PROMPT, COMMAND_TIMEOUT)
        assert "smp: Brought up 1 node, 2 CPUs" in boot_log, boot_log[-3000:]
        assert "x2apic enabled" in boot_log
        assert console.run("nproc").strip() == "2"
        assert console.run("grep -c ^processor /proc/cpuinfo").strip() == "2"
        # both CPUs take local APIC timer interrupts
        timer = re.search(r"^\s*LOC:\s+(\d+)\s+(\d+)", console.run("cat /proc/interrupts"), re.M)
        assert timer and int(timer.group(1)) > 0 and int(timer.group(2)) > 0
        dmesg = console.run("dmesg")
        assert not re.search(r"BUG:|Oops|WARNING:|soft lockup|Call Trace", dmesg), dmesg
        console.proc.stdin.write(b"poweroff -f\n")
        console.proc.stdin.flush()
        assert console.proc.wait(COMMAND_TIMEOUT) == 0
        assert "reboot: Power down" in console.read_until("Power down", COMMAND_TIMEOUT)
        exits = trace.read_text()
        eois = len(re.findall(r" MSR_WRITE rip 0x[0-9a-f]+ msr 0x80b$", exits, re.M))
        register_reads = re.findall(r" MSR_READ rip 0x[0-9a-f]+ msr (0x8[0-3][0-9a-f])$", exits, re.M)
        if apicv == "on":
            assert eois == 0 and set(register_reads) <= {"0x839"}, (eois, register_reads)
        else:      # an exit for each interrupt's EOI, each timer's at least
            assert eois >= int(timer.group(1)) + int(timer.group(2)) and register_reads
    finally:
        console.close()
