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
    assert out.startswith("Misc devices:\n")
    assert 'name "isa-debug-exit", bus ISA' in out


def test_device_property_help(capsys, no_vm):
    status, out, _ = run_main(capsys, "-device", "isa-debug-exit,help")
    assert status == 0
    assert out.splitlines() == ["isa-debug-exit options:",          # QEMU's words
                                "  iobase=<uint32>        -  (default: 1281)",
                                "  iosize=<uint32>        -  (default: 2)"]
    status, out, _ = run_main(capsys, "-device", "pc-testdev,help")
    assert status == 0 and out == "There are no options for pc-testdev.\n"


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


@pytest.mark.parametrize("accel, apicv", [([], (0xFEE00000, False)), (["-accel", "kvm,apicv=off"], None)])
def test_accel_apicv_puts_the_local_apics_on_apic_virtualization_or_not(capsys, fake, kernel, accel, apicv):
    fake.script = [Out(0xF4, 1, (1,))]
    status, _, _ = run_main(capsys, "-kernel", kernel, *DEBUG_EXIT, *accel)
    assert status == 3 and fake.vms[0].vcpus[0].apicv == apicv


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


# --- machine, processor, RTC, display and process options -----------------------------------

@pytest.mark.parametrize("argv, text", [
    (["-M", "q35"], "pyhv: -M q35: unsupported machine type 'q35' (use -machine help for a list)"),
    (["-machine", "pc,foo=on"], "machine property 'foo' is not supported by pyhv's pc machine"),
    (["-machine", "pc,hpet=2"], "Parameter 'hpet' expects on or off, not '2'"),
    (["-machine", "microvm,acpi=on"], "acpi=on is not supported by pyhv's microvm machine"),
    (["-M", "microvm", "-no-hpet"], "-no-hpet: machine property 'hpet' is not supported by pyhv's microvm"),
    (["-machine"], "-machine: requires an argument"),
    (["-cpu", "486"], "pyhv: -cpu 486: unable to find CPU model '486'"),
    (["-cpu", "max,+warp-drive"], "unknown CPU feature 'warp-drive'"),
    (["-cpu", "max,model-id=x"], "CPU property 'model-id' is not supported"),
    (["-cpu", "max,sse2=yes-please"], "expects on or off"),
    (["-rtc", "base=2020-13-45"], "pyhv: -rtc base=2020-13-45: invalid datetime format"),
    (["-rtc", "base=tomorrow"], "invalid datetime format 'tomorrow'"),
    (["-rtc", "clock=host"], "clock=host is not supported"),
    (["-rtc", "clock=wall"], "invalid option value 'wall'"),
    (["-rtc", "driftfix=slew"], "driftfix=slew is not supported"),
    (["-rtc", "driftfix=sometimes"], "invalid option value 'sometimes'"),
    (["-rtc", "start=now"], "Invalid parameter 'start'"),
    (["-name", "guest=vm1,process=qemu-vm1"], "parameter 'process' is not supported"),
    (["-name", "debug-threads=on"], "parameter 'debug-threads' is not supported"),
    (["-name", ""], "the guest name is empty"),
    (["-pidfile", ""], "PID file name is empty"),
    (["-display", "gtk"], "display 'gtk' is not supported: pyhv has no graphical display"),
    (["-display", "sdl,gl=on"], "display 'sdl' is not supported"),
    (["-display", "none,gl=on"], "Parameter 'type' does not accept value 'none,gl=on'"),
    (["-display", "fancy"], "does not accept value 'fancy'"),
    (["-nographic", "-display", "none"], "-nographic cannot be used with -display"),
    (["-fda", "disk.img"], "pyhv: -fda: this QEMU option is not supported by pyhv"),
    (["-enable-kvm"], "pyhv: -enable-kvm: this QEMU option is not supported by pyhv"),
    (["-accel", "tcg"], "pyhv: -accel tcg: accelerator 'tcg' is not supported: pyhv's only accelerator is kvm"),
    (["-vnc", ":0"], "-vnc: this QEMU option is not supported"),
    (["-nic", "user"], "-nic: this QEMU option is not supported"),
    (["--blockdev", "x"], "--blockdev: this QEMU option is not supported"),
])
def test_bad_platform_options(capsys, no_vm, kernel, argv, text):
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, *argv), text)


def test_unimplemented_cpu_feature_is_refused_before_the_vm_exists(capsys, fake, kernel):
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-cpu", "max,+avx512f"),
                          "CPU feature 'avx512f' is not implemented by pyhv's processor")
    assert not fake.vms


@pytest.mark.parametrize("option, first_line", [("-machine help", "Supported machines are:"),
                                                ("-M pc,help", "pc-machine options:"),
                                                ("-cpu help", "Available CPUs:")])
def test_platform_help(capsys, no_vm, option, first_line):
    status, out, err = run_main(capsys, *option.split())
    assert status == 0 and err == "" and out.splitlines()[0] == first_line


def test_cpu_model_reaches_the_vcpu(capsys, fake, kernel):
    fake.script = [Out(0xF4, 1, (0,))]
    status, _, err = run_main(capsys, "-kernel", kernel, *DEBUG_EXIT, "-cpu", "base,+sse2")
    assert status == 1, err
    (leaf1,) = [e for e in fake.vms[0].vcpus[0].cpuid if e.function == 1]
    assert leaf1.edx == 1 << 26


def test_guest_power_off_ends_with_status_0(capsys, fake, kernel):
    fake.script = [Out(0x604, 2, (0x2000,)), Out(0xF4, 1, (7,))]        # PM1a_CNT: SLP_TYP 0, SLP_EN
    status, _, err = run_main(capsys, "-kernel", kernel, *DEBUG_EXIT)
    assert status == 0 and err == ""


def test_no_shutdown_keeps_the_process_after_a_power_off(capsys, fake, kernel):
    fake.script = [Out(0x604, 2, (0x2000,)), Out(0xF4, 1, (7,))]
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    status, _, err = run_main(capsys, "-kernel", kernel, *DEBUG_EXIT, "-no-shutdown")
    timer.join()
    assert status == 0
    assert err == ("pyhv: guest powered off; the VM stays paused as -no-shutdown asks\n"
                   "pyhv: terminating on signal 2\n")
    assert fake.vms[0].vcpus[0].runs == 1                     # the isa-debug-exit write never ran


def test_no_reboot_reset_with_no_shutdown_stops(capsys, fake, kernel):
    fake.script = [Out(0xCF9, 1, (0x06,))]
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    status, _, err = run_main(capsys, "-kernel", kernel, "-no-reboot", "-no-shutdown")
    timer.join()
    assert status == 0 and "pausing as -no-reboot -no-shutdown ask" in err


def test_display_none_and_nodefaults_have_no_serial_output(capsys, fake, kernel):
    for options in (["-display", "none"], ["-nodefaults"], ["-nographic", "-nodefaults"]):
        fake.script = [Out(0x3F8, 1, tuple(b"hidden")), Out(0xF4, 1, (0,))]
        status, out, _ = run_main(capsys, "-kernel", kernel, *DEBUG_EXIT, *options)
        assert (status, out) == (1, ""), options
    fake.script = [Out(0x3F8, 1, tuple(b"shown")), Out(0xF4, 1, (0,))]
    status, out, _ = run_main(capsys, "-kernel", kernel, *DEBUG_EXIT, "-display", "none", "-serial", "stdio")
    assert out == "shown"


def test_pidfile_holds_the_pid_while_running_and_goes_away(capsys, fake, kernel, tmp_path):
    pidfile = tmp_path / "pyhv.pid"
    seen = []
    fake.script = [Spin()]

    def look():
        seen.append(pidfile.read_text())
        _thread.interrupt_main()
    timer = threading.Timer(0.3, look)
    timer.start()
    status, _, _ = run_main(capsys, "-kernel", kernel, "-pidfile", str(pidfile), "-name", "guest=vm1")
    timer.join()
    assert status == 0 and seen == [f"{os.getpid()}\n"] and not pidfile.exists()


def test_unwritable_pidfile(capsys, fake, kernel, tmp_path):
    target = tmp_path / "no" / "dir" / "pyhv.pid"
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-pidfile", str(target)),
                          f"cannot create PID file: Could not create '{target}': No such file or directory")


def test_locked_pidfile_is_refused(capsys, fake, kernel, tmp_path):
    pidfile = tmp_path / "pyhv.pid"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(pidfile)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(30)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-pidfile", str(pidfile)),
                              "Cannot lock pid file")
    finally:
        holder.kill()
        holder.wait()


def test_rtc_base_date_reaches_the_rtc(capsys, fake, kernel):
    from fake_kvm import In
    fake.script = [Out(0x70, 1, (0x09,)), In(0x71, 1), Out(0x70, 1, (0x32,)), In(0x71, 1), Out(0xF4, 1, (0,))]
    status, _, _ = run_main(capsys, "-kernel", kernel, *DEBUG_EXIT, "-rtc", "base=2006-06-17T16:01:21")
    assert status == 1
    assert fake.vms[0].vcpus[0].reads == [0x06, 0x20]           # BCD year 06, century 20
