"""The firmware kernels and the bundled default guest, booted by the pyhv command line
through all three layers; and the same kernel under QEMU's TCG prints the same lines."""

import pytest

import guests
from guests import run_pyhv


def test_hello_kernel_output_and_exit_status(firmware_dir):
    kernel = guests.guest_path("hello", firmware_dir)
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-append", "foo bar=baz")
    assert status == guests.exit_status(guests.HELLO_EXIT_CODE), err
    lines = guests.serial_lines(out, guests.HELLO_BANNER)
    expected = guests.hello_expected_lines()
    for line in expected:
        assert line in lines
    assert f"cmdline: {kernel} foo bar=baz" in lines
    assert "mem_lower: 639 KiB" in lines
    assert "mem_upper: 129920 KiB" in lines   # 128 MiB by default, less 1 MiB and the firmware's 128 KiB


def test_exits_kernel_and_exit_summary(firmware_dir):
    kernel = guests.guest_path("exits", firmware_dir)
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-d", "exits-summary")
    assert status == guests.exit_status(guests.EXITS_EXIT_CODE), err
    lines = guests.serial_lines(out, guests.EXITS_BANNER)
    assert lines[:5] == ["exits test", "lsr reads: 1000", "lsr thre set: 1000",
                         "port 0x80 writes: 10", "exits test done"]
    # the guest did at least 1000 LSR reads and 10 POST writes, each an I/O exit
    io_line = next(line for line in err.splitlines() if line.strip().startswith("IO_INSTRUCTION"))
    assert int(io_line.split()[1]) >= 1010


def test_bundled_default_guest():
    status, out, err = run_pyhv("-nographic", "-append", "hello world")
    assert status == 0, err
    lines = [line for line in guests.serial_lines(out, guests.DEFAULT_GREETING) if line]
    assert lines[0] == guests.DEFAULT_GREETING
    assert any(line.startswith('Command line: "') and "hello world" in line for line in lines)
    assert "Boot loader: pyhv" in lines
    assert "Memory: lower 639 KiB, upper 129920 KiB" in lines
    assert lines[-1] == guests.DEFAULT_LAST_LINE
    assert "halted with interrupts disabled" in err


@pytest.mark.qemu
def test_hello_kernel_matches_qemu(firmware_dir, qemu):
    kernel = guests.guest_path("hello", firmware_dir)
    q_status, q_out = guests.run_qemu(kernel, append="same args")[:2]
    p_status, p_out, err = run_pyhv("-m", "128M", "-kernel", str(kernel), "-nographic",
                                    *guests.DEBUG_EXIT_ARGS, "-append", "same args")
    assert p_status == q_status == guests.exit_status(guests.HELLO_EXIT_CODE), err
    assert guests.serial_lines(p_out, guests.HELLO_BANNER) == guests.serial_lines(q_out, guests.HELLO_BANNER)


@pytest.mark.qemu
def test_exits_kernel_matches_qemu(firmware_dir, qemu):
    kernel = guests.guest_path("exits", firmware_dir)
    q_status, q_out = guests.run_qemu(kernel)[:2]
    p_status, p_out, err = run_pyhv("-m", "128M", "-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS)
    assert p_status == q_status
    assert guests.serial_lines(p_out, guests.EXITS_BANNER) == guests.serial_lines(q_out, guests.EXITS_BANNER)


@pytest.mark.qemu
@pytest.mark.parametrize("kernel_name", ["bench32.elf", "bench64.bin"])
def test_benchmark_kernels_match_qemu(firmware_dir, qemu, kernel_name):
    """The benchmark's workload (32-bit with paging, 64-bit long mode) computes what QEMU does."""
    kernel = firmware_dir / kernel_name
    q_status, q_out = guests.run_qemu(kernel, append="iterations=3")[:2]
    p_status, p_out, err = run_pyhv("-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                    "-append", "iterations=3")
    assert p_status == q_status == 1, err
    result = [line for line in p_out.splitlines() if "result=" in line]
    assert len(result) == 1 and result[0] in q_out


TIMER_LINES = ["timer test", "ticks: 50 or more", "pic isr after eoi: 0x00", "pic imr: 0xfe 0xff",
               "pit channel 0 counts within divisor: yes", "pit read-back status: 0x34",
               "pit channel 2 counts down: yes", "rtc register d: 0x80", "rtc register b: 0x02",
               "rtc time is bcd: yes", "cmos base memory: 640 KiB"]


def test_timer_kernel_takes_pit_interrupts_through_the_pic(firmware_dir):
    kernel = firmware_dir / "timer.elf"
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS)
    assert status == guests.exit_status(0x12), err
    assert [line for line in guests.serial_lines(out, "timer test") if line] == TIMER_LINES


@pytest.mark.qemu
def test_timer_kernel_matches_qemu(firmware_dir, qemu):
    kernel = firmware_dir / "timer.elf"
    q_status, q_out = guests.run_qemu(kernel)[:2]
    p_status, p_out, err = run_pyhv("-m", "128M", "-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS)
    assert p_status == q_status
    assert guests.serial_lines(p_out, "timer test") == guests.serial_lines(q_out, "timer test")


def test_pc_testdev_kernel(firmware_dir):
    kernel = firmware_dir / "testdev.elf"
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS,
                                "-device", "pc-testdev")
    assert status == guests.exit_status(0x13), err
    assert guests.serial_lines(out, "testdev test")[:4] == [
        "testdev test", "ioport readback: 0x12345678", "iomem readback: 0xcafef00d",
        "debugcon readback: 0x0a"]   # port 0xe9 is pc-testdev's byte port without -debugcon


@pytest.mark.qemu
def test_pc_testdev_and_debugcon_match_qemu(firmware_dir, qemu, tmp_path):
    kernel = firmware_dir / "testdev.elf"
    q_status, q_out = guests.run_qemu(kernel, extra_args=["-device", "pc-testdev"])[:2]
    p_status, p_out, err = run_pyhv("-m", "128M", "-kernel", str(kernel), "-nographic",
                                    *guests.DEBUG_EXIT_ARGS, "-device", "pc-testdev")
    assert p_status == q_status
    assert guests.serial_lines(p_out, "testdev test") == guests.serial_lines(q_out, "testdev test")
    q_log, p_log = tmp_path / "qemu-debugcon.txt", tmp_path / "pyhv-debugcon.txt"
    guests.run_qemu(kernel, extra_args=["-debugcon", f"file:{q_log}"])
    run_pyhv("-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS, "-debugcon", f"file:{p_log}")
    assert p_log.read_text() == q_log.read_text() == "debugcon says hi\n"


# The platform kernel: PCI enumeration, the PIIX3/PIIX4 registers, the ACPI PM timer and
# SCI, fw_cfg, the HPET, the FADT, and an ACPI power-off that ends the VM with status 0.
PLATFORM_BANNER = "platform test"
QEMU_PLATFORM_ARGS = ["-M", "pc", "-cpu", "kvm64", "-nodefaults", "-serial", "stdio"]   # Intel: no AMD e820 hole


def platform_lines(out):
    return [line for line in guests.serial_lines(out, PLATFORM_BANNER) if line]


def test_platform_kernel_powers_off_through_acpi(firmware_dir):
    kernel = firmware_dir / "platform.elf"
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS)
    lines = platform_lines(out)
    assert status == 0 and err == "", (out, err)
    assert lines[-1] == "powering off"
    assert lines[1:6] == [
        "pci 00:00.0 8086:1237 class 060000 rev 02 hdr 00 cmd 0103 sts 0000 sub 1af4:1100 pin 0 line 0",
        "pci 00:01.0 8086:7000 class 060100 rev 00 hdr 80 cmd 0103 sts 0200 sub 1af4:1100 pin 0 line 0",
        "pci 00:01.1 8086:7010 class 010180 rev 00 hdr 00 cmd 0103 sts 0280 sub 1af4:1100 pin 0 line 0",
        "pci 00:01.1 bar4 size 0x10 io",
        "pci 00:01.3 8086:7113 class 068000 rev 03 hdr 00 cmd 0103 sts 0280 sub 1af4:1100 pin 1 line 9"]
    for expected in ("piix3 pirq routes: 0b0b0a0a, elcr: 00 0c",
                     "pm1 control after acpi enable: 0x0001",
                     "pm timer runs at 3.579545 MHz (3 times the PIT, within 10%): yes",
                     "sci on irq 9 when the pm timer's top bit flips: once, pm1 status 0x0001",
                     'fw_cfg signature: QEMU, id 0x00000003, dma register reads "QEMU CFG"',
                     "hpet id: 0x8086a201, period 10000000 fs", "dsdt has \\_S5: yes"):
        assert expected in lines


@pytest.mark.qemu
def test_platform_kernel_matches_qemu(firmware_dir, qemu):
    kernel = firmware_dir / "platform.elf"
    q_status, q_out = guests.run_qemu(kernel, extra_args=QEMU_PLATFORM_ARGS)[:2]
    p_status, p_out, err = run_pyhv("-m", "128M", "-kernel", str(kernel), "-nographic", *guests.DEBUG_EXIT_ARGS)
    assert p_status == q_status == 0, err
    assert platform_lines(p_out) == platform_lines(q_out)
