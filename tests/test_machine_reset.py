"""Machine reset: the guest's ways (keyboard controller, port 0x92, 0xcf9, triple fault)
and the monitor's system_reset put devices, RAM and vCPUs back to power-on and the kernel
boots again; -no-reboot exits instead; -no-shutdown pauses. The steer kernel counts its
boots in CMOS, which a reset keeps, and behaves the same under QEMU."""

import asyncio
import subprocess
import sys

import pytest

import guests
from monitor_client import DEBUG_EXIT, PyhvProcess

METHODS = ["kbd", "port92", "cf9", "triple"]


def expected_lines(method: str, boots: int) -> list[str]:
    lines = []
    for boot in range(1, boots + 1):
        lines.append(f"steer: boot {boot} magic 0x57ee4a61")
        lines.append(f"steer: resetting by {method}" if boot < boots else f"steer: done after {boots} boots")
    return lines


def run_pyhv(*args, timeout=120):
    r = subprocess.run([sys.executable, "-m", "devicemodel", *args], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout.replace("\r", ""), r.stderr


@pytest.mark.parametrize("method", METHODS)
def test_guest_requested_reset_boots_the_kernel_again(firmware_dir, method):
    kernel = guests.guest_path("steer", firmware_dir)
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *DEBUG_EXIT,
                                "-append", f"reset={method} boots=3")
    assert status == guests.exit_status(3), err
    assert guests.serial_lines(out, "steer: boot 1").__getitem__(slice(0, 6)) == expected_lines(method, 3)
    assert err == ""


@pytest.mark.parametrize("method", ["kbd", "triple"])
def test_no_reboot_exits_on_the_first_reset(firmware_dir, method):
    kernel = guests.guest_path("steer", firmware_dir)
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *DEBUG_EXIT, "-no-reboot",
                                "-append", f"reset={method} boots=3")
    assert status == 0
    assert "steer: boot 2" not in out and f"steer: resetting by {method}" in out
    assert "exiting as -no-reboot asks" in err


@pytest.mark.qemu
@pytest.mark.parametrize("method", ["kbd", "triple"])
def test_reset_matches_qemu(firmware_dir, qemu, method):
    kernel = guests.guest_path("steer", firmware_dir)
    q = subprocess.run([qemu, "-accel", "tcg", "-nographic", "-m", "128M", *DEBUG_EXIT, "-kernel",
                        str(kernel), "-append", f"reset={method} boots=3"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    q_out = q.stdout.decode(errors="replace").replace("\r", "")
    # the firmware's own output (dots of its progress) may precede a line on the console
    q_lines = [line[line.index("steer:"):] for line in q_out.split("\n") if "steer:" in line]
    status, out, err = run_pyhv("-kernel", str(kernel), "-nographic", *DEBUG_EXIT,
                                "-append", f"reset={method} boots=3")
    p_lines = [line for line in out.split("\n") if line.startswith("steer:")]
    assert status == q.returncode == guests.exit_status(3)
    assert p_lines == q_lines == expected_lines(method, 3)


def test_monitor_system_reset_and_a_paused_reset(firmware_dir, tmp_path):
    process = PyhvProcess(tmp_path, guests.guest_path("steer", firmware_dir), qmp=False)
    try:
        process.wait_serial("steer: ready")
        hmp = process.hmp()
        assert hmp.cmd("system_reset") == ""
        process.wait_serial("steer: boot 2")
        process.wait_serial("steer: ready", count=2)
        # reset while paused: the VM stays paused, then boots again on cont
        assert hmp.cmd("stop") == ""
        assert hmp.cmd("system_reset") == ""
        assert hmp.cmd("info status") == "VM status: paused\n"
        assert "steer: boot 3" not in process.serial_text()
        regs = hmp.cmd("info registers")
        assert "EAX=2badb002" in regs and "CR0=00000011" in regs   # at the Multiboot entry again
        assert hmp.cmd("cont") == ""
        process.wait_serial("steer: boot 3")
        hmp.close()
    finally:
        process.stop()


def test_no_shutdown_pauses_where_no_reboot_would_exit(firmware_dir, tmp_path):
    """QEMU's -no-reboot -no-shutdown: a reset becomes a shutdown, which pauses the VM in
    the "shutdown" state; cont needs a reset first, and a reset is again a shutdown."""
    qmp = pytest.importorskip("qemu.qmp")
    process = PyhvProcess(tmp_path, guests.guest_path("steer", firmware_dir), "-no-reboot",
                          "-no-shutdown", append="reset=triple boots=3", monitor=False)
    try:
        process.wait_serial("steer: resetting by triple")

        async def body():
            client = qmp.QMPClient("test")
            await client.connect(str(process.qmp_path))
            try:
                for _ in range(100):
                    status = await client.execute("query-status")
                    if status["status"] == "shutdown":
                        break
                    await asyncio.sleep(0.05)
                assert status == {"status": "shutdown", "running": False, "singlestep": False}
                try:
                    await client.execute("cont")
                    raise AssertionError("cont in the shutdown state must fail")
                except qmp.ExecuteError as e:
                    assert e.error.error.desc == "Resetting the Virtual Machine is required"
                with client.listener() as listener:
                    await client.execute("system_reset")
                    event = await asyncio.wait_for(listener.get(), 10)
                assert event["event"] == "SHUTDOWN" and event["data"]["reason"] == "host-qmp-system-reset"
                assert (await client.execute("query-status"))["status"] == "shutdown"
                await client.execute("quit")
            finally:
                try:
                    await client.disconnect()
                except EOFError:       # pyhv hung up first: it has quit
                    pass
        asyncio.run(body())
        status, err = process.wait()
        assert status == 0 and "pausing as -no-reboot -no-shutdown ask" in err
        assert "steer: boot 2" not in process.serial_text()
    finally:
        process.stop()
