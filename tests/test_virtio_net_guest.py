"""The virtio-net test kernel (firmware/kernels/virtio_net.c) drives the device over
virtio-mmio from inside the guest, with -netdev socket to a Python peer in the test
(pyhv connecting to the peer, and the peer connecting to pyhv): the guest's broadcast
frame reaches the peer in QEMU's stream framing, the peer's 300-byte frame -- sent
before the guest has any receive buffers, so it waits -- reaches the guest merged over
three buffers, and the guest's answer comes back. Under QEMU's microvm the same kernel
and peer give the same output and the same frames."""

import socket
import struct
import subprocess

import pytest

import guests
import monitor_client

EXIT_CODE = 0x15
GUEST_MAC = bytes.fromhex("525400123456")
PEER_MAC = bytes.fromhex("020000000001")
ETHERTYPE = b"\x88\xb5"

EXPECTED = [
    "virtio-net test",
    "virtio-net at transport 7 (0xfeb00e00), version 2",
    "offers VERSION_1: yes, MAC: yes, STATUS: yes, MRG_RXBUF: yes",
    "features accepted: yes",
    "mac 52:54:00:12:34:56, link up",
    "status: 0x0f",
    "sent 60 bytes, used length 0",
    "received 312 bytes in 3 buffers (num_buffers 3)",
    "header flags 0 gso_type 0",
    "to 52:54:00:12:34:56 from 02:00:00:00:00:01 type 0x88b5",
    'says "from the peer"',
    "frame bytes: match",
    "used-buffer interrupt: yes",
    "sent 60 bytes, used length 0",
    "virtio-net test done",
]


def peer_frame() -> bytes:
    frame = bytearray((i * 7 + 1) & 0xFF for i in range(300))
    frame[0:14] = GUEST_MAC + PEER_MAC + ETHERTYPE
    frame[14:40] = b"from the peer".ljust(26, b"\0")
    return bytes(frame)


def read_record(conn) -> bytes:
    length = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))[0]
    return conn.recv(length, socket.MSG_WAITALL)


def talk(conn, early: bool) -> list[bytes]:
    """The peer's side: send the frame (at once, or after the guest's hello) and take
    the guest's two frames."""
    conn.settimeout(120)
    frames = [] if early else [read_record(conn)]
    conn.sendall(struct.pack(">I", 300) + peer_frame())
    while len(frames) < 2:
        frames.append(read_record(conn))
    return frames


def check_frames(frames):
    hello, answer = frames
    text = b"hello from the pyhv virtio-net test kernel"
    assert hello == b"\xff" * 6 + GUEST_MAC + ETHERTYPE + text + bytes(60 - 14 - len(text))
    text = b"received 312 bytes in 3 buffers"
    assert answer == PEER_MAC + GUEST_MAC + ETHERTYPE + text + bytes(60 - 14 - len(text))


def guest_lines(out: str) -> list[str]:
    return [line for line in guests.serial_lines(out, "virtio-net test") if line]


def run_connecting(command, early: bool):
    """Run ``command`` (pyhv or QEMU) with the guest's NIC connecting to the test's peer."""
    server = socket.create_server(("127.0.0.1", 0))
    proc = subprocess.Popen(command + ["-netdev", f"socket,id=n0,connect=127.0.0.1:{server.getsockname()[1]}",
                                       "-device", "virtio-net-device,netdev=n0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        server.settimeout(60)
        conn, _ = server.accept()
        with conn:
            frames = talk(conn, early)
        out, err = proc.communicate(timeout=120)
    except (OSError, struct.error, subprocess.TimeoutExpired):
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{command[0]} and the peer did not finish:\n{out.decode()}\n{err.decode()}")
    finally:
        server.close()
    return proc.returncode, out.decode().replace("\r", ""), err.decode(), frames


@pytest.fixture(scope="module")
def kernel(firmware_dir):
    return str(firmware_dir / "virtio_net.elf")


def pyhv(kernel):
    return guests.PYHV + ["-kernel", kernel, "-nographic", "-M", "microvm", *guests.DEBUG_EXIT_ARGS]


def test_pyhv_connects_and_the_early_frame_waits_for_the_guest(kernel):
    status, out, err, frames = run_connecting(pyhv(kernel), early=True)
    assert status == guests.exit_status(EXIT_CODE), err
    assert guest_lines(out) == EXPECTED
    check_frames(frames)


def test_the_peer_connects_to_pyhv(kernel, tmp_path):
    """-netdev socket,listen=: the VM starts paused (-S) so that the guest's first frame
    is not sent before anyone is connected; info network shows the connection."""
    port = monitor_client.free_tcp_port()
    vm = monitor_client.PyhvProcess(tmp_path, kernel, "-S", "-M", "microvm",
                                    "-netdev", f"socket,id=n0,listen=127.0.0.1:{port}",
                                    "-device", "virtio-net-device,netdev=n0,mac=52:54:00:12:34:56")
    try:
        hmp = vm.hmp()
        assert hmp.cmd("info network") == ("virtio-net-device.0: index=0,type=nic,model=virtio-net-device,"
                                           "macaddr=52:54:00:12:34:56\n \\ n0: index=0,type=socket,\n")
        with socket.create_connection(("127.0.0.1", port)) as conn:
            info = monitor_client.wait_for(lambda: "connection from" in (text := hmp.cmd("info network")) and text)
            assert info.endswith(f" \\ n0: index=0,type=socket,socket: connection from "
                                 f"127.0.0.1:{conn.getsockname()[1]}\n")
            hmp.send("cont")
            frames = talk(conn, early=False)
        status, err = vm.wait(120)
        assert status == guests.exit_status(EXIT_CODE), err
        assert [line for line in guests.serial_lines(vm.serial_text(), "virtio-net test") if line] == EXPECTED
        check_frames(frames)
    finally:
        vm.stop()


@pytest.mark.qemu
def test_matches_qemu_microvm(kernel, qemu):
    command = [qemu, "-accel", "tcg", "-nographic", "-no-reboot", "-m", "128M", "-M", "microvm,acpi=off",
               "-global", "virtio-mmio.force-legacy=false", *guests.DEBUG_EXIT_ARGS, "-kernel", kernel]
    # the peer waits for the guest's hello: QEMU 7.2 here often stalls for good when a frame
    # arrives before its guest's driver is up (it reads that frame, then nothing more)
    q_status, q_out, q_err, q_frames = run_connecting(command, early=False)
    p_status, p_out, p_err, p_frames = run_connecting(pyhv(kernel), early=False)
    assert q_status == p_status == guests.exit_status(EXIT_CODE), q_err + p_err
    assert guest_lines(q_out) == guest_lines(p_out) == EXPECTED
    assert q_frames == p_frames
