"""Exit tracing people can look at: ``-d exits`` writes one line per VM exit into the
``-D`` log, ``-d exits-summary`` the table at the end; tools/kvm_stat.py reads the
counters over QMP and tools/plot_exits.py draws a trace."""

import subprocess
import sys

import pytest

import guests
from devicemodel.exit_trace import parse_line
from monitor_client import DEBUG_EXIT, PyhvProcess, wait_for

REPO = guests.REPO


def run_hello(firmware_dir, tmp_path, *log_args):
    kernel = guests.guest_path("exits", firmware_dir)
    r = subprocess.run([sys.executable, "-m", "devicemodel", "-kernel", str(kernel), "-nographic",
                        *DEBUG_EXIT, *log_args], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == guests.exit_status(guests.EXITS_EXIT_CODE), r.stderr
    return r


def test_d_exits_traces_every_exit_into_the_log_file(firmware_dir, tmp_path):
    log = tmp_path / "trace.log"
    run_hello(firmware_dir, tmp_path, "-d", "exits", "-D", str(log))
    records = [parse_line(line) for line in log.read_text().splitlines()]
    assert records and all(r is not None for r in records)
    io = [r for r in records if r.reason == "IO_INSTRUCTION"]
    # the guest reads LSR 1000 times and writes port 0x80 ten times: each an I/O exit
    assert sum(r.detail == "port 0x3fd in size 1" for r in io) >= 1000
    assert sum(r.detail == "port 0x80 out size 1" for r in io) == 10
    assert any(r.reason == "EPT_VIOLATION" and r.detail.startswith("gpa 0x") for r in records)
    assert all(r.vcpu == 0 and r.rip >= 0x100000 for r in records)
    times = [r.time for r in records]
    assert times == sorted(times)


def test_d_exits_summary_prints_the_table(firmware_dir, tmp_path):
    r = run_hello(firmware_dir, tmp_path, "-d", "exits-summary")
    line = next(line for line in r.stderr.splitlines() if line.strip().startswith("IO_INSTRUCTION"))
    assert int(line.split()[1]) >= 1010 and line.split()[2].endswith("%")
    assert "exit reason" in r.stderr and " vcpu 0 " not in r.stderr


def test_monitor_trace_exits_on_and_off(firmware_dir, tmp_path):
    log = tmp_path / "trace.log"
    process = PyhvProcess(tmp_path, guests.guest_path("steer", firmware_dir), "-D", str(log), qmp=False)
    try:
        process.wait_serial("steer: ready")
        hmp = process.hmp()
        assert log.read_text() == ""
        assert hmp.cmd("trace exits on") == ""
        wait_for(lambda: log.read_text().count("\n") > 100)
        assert hmp.cmd("trace exits off") == ""
        lines = log.read_text().splitlines()
        assert parse_line(lines[0]).detail == "port 0x64 in size 1"
        hmp.cmd("info status")
        settled = len(log.read_text())
        hmp.cmd("info status")
        assert len(log.read_text()) == settled
        hmp.close()
    finally:
        process.stop()


def test_kvm_stat_once_reads_the_counters_over_qmp(firmware_dir, tmp_path):
    pytest.importorskip("qemu.qmp")
    process = PyhvProcess(tmp_path, guests.guest_path("steer", firmware_dir), monitor=False)
    try:
        process.wait_serial("steer: ready")
        r = subprocess.run([sys.executable, str(REPO / "tools" / "kvm_stat.py"), str(process.qmp_path),
                            "--once", "--interval", "0.3"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["Event", "Total", "%Total", "CurAvg/s"]
        io = next(line for line in lines if line.startswith("kvm_exit(IO_INSTRUCTION)"))
        assert int(io.split()[1]) > 0 and int(io.split()[3]) > 0    # the guest polls port 0x64
        assert lines[-1].startswith("Total")
    finally:
        process.stop()


def test_plot_exits_draws_a_png(firmware_dir, tmp_path):
    pytest.importorskip("matplotlib")
    log, png = tmp_path / "trace.log", tmp_path / "exits.png"
    run_hello(firmware_dir, tmp_path, "-d", "exits", "-D", str(log))
    r = subprocess.run([sys.executable, str(REPO / "tools" / "plot_exits.py"), str(log), str(png),
                        "--bin", "0.02"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    empty = tmp_path / "empty.log"
    empty.write_text("no trace here\n")
    r = subprocess.run([sys.executable, str(REPO / "tools" / "plot_exits.py"), str(empty), str(png)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no exit trace lines" in r.stderr
