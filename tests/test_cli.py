"""The pyhv command line: help, version, every kind of bad input, and runs on the fake kvm."""

import _thread
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fake_kvm import FakeKvm, Hlt, Out, Spin


import devicemodel.cli as cli  # noqa: E402
import devicemodel.machine as machine_module  # noqa: E402
from devicemodel.smp import parse_smp
from devicemodel.cli import main  # noqa: E402
from devicemodel.loaders.multiboot import MultibootInfo  # noqa: E402
from test_multiboot_loader import elf32, simple_kernel  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEBUG_EXIT = ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]


@pytest.fixture
def kernel(tmp_path):
    path = tmp_path / "kernel.elf"
    path.write_bytes(simple_kernel())
    return str(path)


@pytest.fixture
def no_vm(monkeypatch):
    """Bad input must be refused before any VM is created."""
    def refuse():
        raise AssertionError("a VM was created")
    monkeypatch.setattr(machine_module, "open_kvm", refuse)


@pytest.fixture
def fake(monkeypatch):
    """Runs get the fake kvm; set ``fake.script`` before calling main()."""
    kvm = FakeKvm()
    monkeypatch.setattr(machine_module, "open_kvm", lambda: kvm)
    return kvm


def run_main(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, out, err, text):
    assert status == 1
    assert out == ""
    assert err.startswith("pyhv: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert text in err, err


# --- help and version ---------------------------------------------------------------

@pytest.mark.parametrize("option", ["-h", "-help", "--help"])
def test_help(capsys, no_vm, option):
    status, out, err = run_main(capsys, option)
    assert status == 0 and err == ""
    assert out.startswith("usage: pyhv [options]")
    for documented in ("-kernel", "-append", "-m ", "-nographic", "-serial", "-device", "-no-reboot",
                       "-d ", "-D ", "-version"):
        assert documented in out


@pytest.mark.parametrize("option", ["-version", "--version"])
def test_version(capsys, no_vm, option):
    status, out, err = run_main(capsys, option)
    assert status == 0 and err == ""
    first, second = out.splitlines()
    assert first.startswith("pyhv version ")
    assert second.startswith("Copyright")


def test_help_stops_parsing_like_qemu(capsys, no_vm):
    status, out, _ = run_main(capsys, "-kernel", "/nonexistent", "-h")
    assert status == 0 and "usage:" in out


def test_device_help_lists_devices(capsys, no_vm):
    status, out, err = run_main(capsys, "-device", "help")
    assert status == 0 and err == ""
    assert 'name "isa-debug-exit", bus ISA' in out


def test_device_property_help(capsys, no_vm):
    status, out, _ = run_main(capsys, "-device", "isa-debug-exit,help")
    assert status == 0
    assert "isa-debug-exit options:" in out and "iobase=<uint32>" in out and "0x501" in out


def test_log_items_help(capsys, no_vm):
    status, out, _ = run_main(capsys, "-d", "help")
    assert status == 0 and out.startswith("Log items") and "exits" in out


# --- bad input: one line on stderr, status 1, no VM --------------------------------

def test_missing_kernel_file(capsys, no_vm, tmp_path):
    missing = str(tmp_path / "missing.elf")
    assert_one_line_error(*run_main(capsys, "-kernel", missing),
                          f"pyhv: could not open kernel file '{missing}': No such file or directory")


def test_kernel_is_a_directory(capsys, no_vm, tmp_path):
    assert_one_line_error(*run_main(capsys, "-kernel", str(tmp_path)), "Is a directory")


def test_kernel_not_an_elf_file(capsys, no_vm, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some text\n" * 100)
    assert_one_line_error(*run_main(capsys, "-kernel", str(path)), f"'{path}' is not an ELF file")


def test_elf_without_multiboot_header(capsys, no_vm, tmp_path):
    path = tmp_path / "plain.elf"
    path.write_bytes(elf32([(0x100000, b"\x90" * 32, 32)], entry=0x100000))
    assert_one_line_error(*run_main(capsys, "-kernel", str(path)), "has no Multiboot header")


def test_kernel_too_big_for_memory(capsys, no_vm, tmp_path):
    path = tmp_path / "big.elf"
    path.write_bytes(simple_kernel(bss=8 << 20))
    assert_one_line_error(*run_main(capsys, "-m", "8", "-kernel", str(path)), "kernel too big for memory")


@pytest.mark.parametrize("argv, text", [
    (["-foo"], "pyhv: -foo: invalid option"),
    (["--foo"], "pyhv: --foo: invalid option"),
    (["-"], "disk images are not supported"),
    (["disk.img"], "pyhv: disk.img: disk images are not supported"),
    (["-kernel"], "pyhv: -kernel: requires an argument"),
    (["-m"], "pyhv: -m: requires an argument"),
    (["-m", "0"], "pyhv: -m 0: RAM size must be greater than 0"),
    (["-m", "12X"], "pyhv: -m 12X: invalid RAM size '12X'"),
    (["-m", "-5"], "pyhv: -m -5: invalid RAM size"),
    (["-m", ""], "pyhv: -m : invalid RAM size"),
    (["-m", "2T"], "pyhv: -m 2T: RAM size is too large (at most 1 TiB)"),
    (["-m", "1025T"], "RAM size is too large"),
    (["-m", "1001K"], "pyhv: -m 1001K: RAM size must be a multiple of 4 KiB"),
    (["-m", "1.0001K"], "not a whole number of bytes"),
    (["-m", "size=64M,slots=2"], "pyhv: -m size=64M,slots=2: parameter 'slots' is not supported"),
    (["-device", "foo"], "pyhv: -device foo: 'foo' is not a valid device model name"),
    (["-device", "iobase=0xf4"], "Parameter 'driver' is missing"),
    (["-device", "isa-debug-exit,bogus=1"], "Property 'isa-debug-exit.bogus' not found"),
    (["-device", "isa-debug-exit,iobase=0xzz"], "Property 'isa-debug-exit.iobase' doesn't take value '0xzz'"),
    (["-device", "isa-debug-exit,iosize=-1"], "doesn't take value '-1'"),
    (["-serial", "vc:80x24"], "pyhv: -serial vc:80x24: 'vc' is not a valid char driver name"),
    (["-serial", "file:"], "needs a path"),
    (["-serial", "stdio", "-serial", "stdio"], "cannot use stdio by multiple character devices"),
    (["-d", "bogus"], "pyhv: -d bogus: unknown log item 'bogus'"),
    (["-nographic", "-append"], "pyhv: -append: requires an argument"),
    (["-smp", "0"], "pyhv: -smp 0: Invalid CPU topology: CPU topology parameters must be greater than zero"),
    (["-smp", "two"], "pyhv: -smp two: Parameter 'cpus' expects a number"),
    (["-smp", "2,sockets=3,maxcpus=2"], "sockets (3) * dies (1) * cores (1) * threads (1) != maxcpus (2)"),
    (["-smp", "4,maxcpus=8"], "maxcpus=8 is not supported: pyhv has no CPU hotplug"),
    (["-smp", "8,maxcpus=4"], "Invalid CPUs 8: maxcpus must be equal to or greater than smp"),
    (["-smp", "65"], "Invalid SMP CPUs 65. The max CPUs supported by machine 'pc' is 64"),
    (["-smp", "2,books=2"], "pyhv: -smp 2,books=2: Invalid parameter 'books'"),
])
def test_bad_options(capsys, no_vm, kernel, argv, text):
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, *argv), text)


@pytest.mark.parametrize("device, text", [
    ("isa-debug-exit,iobase=0x3fc", "overlaps region 'serial0' [0x3f8..0x3ff]"),
    ("isa-debug-exit,iobase=0xffff,iosize=2", "does not fit in address space 'io'"),
    ("isa-debug-exit,iosize=0", "size 0"),
])
def test_device_that_does_not_fit(capsys, no_vm, kernel, device, text):
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-device", device), f"-device {device}: ")
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-device", device), text)


def test_too_many_serial_ports(capsys, no_vm, kernel):
    argv = ["-kernel", kernel] + ["-serial", "null"] * 5
    assert_one_line_error(*run_main(capsys, *argv), "too many serial ports")


def test_unwritable_serial_file(capsys, no_vm, kernel, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "serial.log"
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-serial", f"file:{target}"),
                          "could not open")


def test_unwritable_log_file(capsys, no_vm, kernel, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "log"
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-d", "exits", "-D", str(target)),
                          "could not open log file")


def test_missing_default_guest(capsys, no_vm, monkeypatch):
    monkeypatch.setattr(cli, "DEFAULT_GUEST", ("guests", "no-such-guest.elf"))
    assert_one_line_error(*run_main(capsys), "bundled default guest")


def test_missing_hypervisor_layer_is_one_line(capsys, kernel, monkeypatch):
    monkeypatch.setitem(sys.modules, "kvm", None)  # "from kvm import Kvm" fails
    assert_one_line_error(*run_main(capsys, "-kernel", kernel), "the hypervisor layer is not available")


# --- python -m devicemodel ----------------------------------------------------------

def run_module(*argv):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "devicemodel", *argv], capture_output=True, text=True,
                          env=env, cwd=str(REPO), timeout=60)


def test_module_entry_point_rejects_unknown_option():
    result = run_module("-foo")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == "pyhv: -foo: invalid option\n"


def test_module_entry_point_missing_kernel(tmp_path):
    result = run_module("-kernel", str(tmp_path / "nope.elf"), "-m", "64")
    assert result.returncode == 1
    assert result.stderr == f"pyhv: could not open kernel file '{tmp_path / 'nope.elf'}': No such file or directory\n"


def test_module_entry_point_help():
    result = run_module("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: pyhv")


# --- whole runs on the fake kvm -----------------------------------------------------

def test_run_prints_serial_output_and_exits_with_the_debug_exit_status(capsys, fake, kernel):
    fake.script = [Out(0x3F8, 1, tuple(b"hello from the guest\n")), Out(0xF4, 4, (0x10,))]
    status, out, err = run_main(capsys, "-kernel", kernel, "-nographic", *DEBUG_EXIT)
    assert status == 0x21
    assert out == "hello from the guest\n"
    assert err == ""


def test_double_dash_options_and_size_suffixes(capsys, fake, kernel):
    fake.script = [Out(0xF4, 1, (1,))]
    status, _, _ = run_main(capsys, "--kernel", kernel, "--m", "size=64M", "--device",
                            "isa-debug-exit,iobase=0xf4,iosize=4")
    assert status == 3
    assert fake.vms[0].memory_regions[0]["memory_size"] == 64 << 20


@pytest.mark.parametrize("size, expected", [("64", 64 << 20), ("65536K", 64 << 20), ("1G", 1 << 30),
                                            ("1.5G", 3 << 29), ("size=32", 32 << 20), ("4096b", 4096)])
def test_ram_sizes(size, expected):
    assert cli.parse_ram_size(size) == expected


@pytest.mark.parametrize("text, cpus", [("4", 4), ("cpus=2", 2), ("sockets=2,cores=2", 4),
                                        ("sockets=2,cores=2,threads=2", 8), ("6,cores=3", 6),
                                        ("maxcpus=3", 3)])
def test_smp_counts(text, cpus):
    assert parse_smp(text).cpus == cpus


def test_append_reaches_the_guest_command_line(capsys, fake, kernel):
    fake.script = [Hlt()]
    status, _, err = run_main(capsys, "-kernel", kernel, "-append", "console=ttyS0 quiet")
    assert status == 0 and err == "pyhv: guest halted with interrupts disabled\n"
    regs = fake.vms[0].vcpus[0].regs
    ram = bytes(fake.vms[0].memory_regions[0]["userspace_addr"])
    info = MultibootInfo.parse(ram[regs.rbx:regs.rbx + MultibootInfo.sizeof()])
    cmdline = bytes(ram[info.cmdline:ram.find(b"\0", info.cmdline)]).decode()
    assert cmdline == f"{kernel} console=ttyS0 quiet"  # as QEMU: file name, then -append


def test_serial_to_file_and_exit_stats_to_log_file(capsys, fake, kernel, tmp_path):
    fake.script = [Out(0x3F8, 1, tuple(b"to the file")), Out(0xF4, 1, (0,))]
    serial, log = tmp_path / "serial.txt", tmp_path / "exits.log"
    status, out, err = run_main(capsys, "-kernel", kernel, "-serial", f"file:{serial}", *DEBUG_EXIT,
                                "-d", "exits-summary", "-D", str(log))
    assert status == 1 and out == "" and err == ""
    assert serial.read_bytes() == b"to the file"
    table = log.read_text()
    assert "VM exits of vCPU 0" in table and "IO_INSTRUCTION" in table and "total" in table


def test_exit_stats_on_stderr(capsys, fake, kernel):
    fake.script = [Out(0x3F8, 1, (0x41,)), Hlt()]
    status, out, err = run_main(capsys, "-kernel", kernel, "-d", "exits-summary")
    assert status == 0 and out == "A"
    assert "IO_INSTRUCTION" in err and "HLT" in err


def test_triple_fault_with_no_reboot(capsys, fake, kernel):
    from fake_kvm import Shutdown
    fake.script = [Shutdown()]
    status, _, err = run_main(capsys, "-kernel", kernel, "-no-reboot")
    assert status == 0 and "triple fault" in err


def test_serial_none_and_second_port(capsys, fake, kernel):
    fake.script = [Out(0x3F8, 1, (0x41,)), Out(0x2F8, 1, (0x42,)), Hlt()]
    status, out, _ = run_main(capsys, "-kernel", kernel, "-serial", "none", "-serial", "stdio")
    assert status == 0 and out == "B"


def test_ctrl_c_stops_the_vm_with_status_0(capsys, fake, kernel):
    fake.script = [Spin()]
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    status, _, err = run_main(capsys, "-kernel", kernel)
    timer.join()
    assert status == 0
    assert err == "pyhv: terminating on signal 2\n"


def test_default_guest_is_booted_without_kernel(capsys, fake, monkeypatch, tmp_path):
    guests = tmp_path / "pkg"
    (guests / "guests").mkdir(parents=True)
    (guests / "guests" / "default.elf").write_bytes(simple_kernel())
    monkeypatch.setattr(cli.importlib.resources, "files", lambda package: guests)
    fake.script = [Out(0xF4, 1, (2,))]
    status, _, err = run_main(capsys, *DEBUG_EXIT)
    assert status == 5, err


def test_initrd_with_a_multiboot_kernel_is_refused(capsys, fake, kernel, tmp_path):
    initrd = tmp_path / "initrd.gz"
    initrd.write_bytes(b"\x1f\x8b")
    status, _, err = run_main(capsys, "-kernel", kernel, "-initrd", str(initrd))
    assert status == 1
    assert err == "pyhv: -initrd: Multiboot modules are not supported yet\n"
    assert not fake.vms   # refused before any VM exists
