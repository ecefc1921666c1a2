"""-netdev: option checking with QEMU's messages, the socket backend's stream framing
against a Python peer (both directions, a peer hanging up, a broken stream), UDP, the
tap backend's TUNSETIFF, NICs joined to backends on a machine, and the monitor's
``info network`` and ``set_link``."""

import socket
import struct
import threading
import time

import pytest

from devicemodel.cli import parse_command_line
from devicemodel.machine import Machine
from devicemodel.monitor.hmp import Monitor
from devicemodel.net import tap
from devicemodel.net.netdev import NET_BUFSIZE
from devicemodel.net.socket import DatagramNetdev, FrameReader, FramingError, StreamNetdev, frame_record
from devicemodel.net.netdev import HostPort
from test_cli import assert_one_line_error, run_main


class Receiver:
    """A NIC's side of the backend: collects frames; ``hold`` makes deliver wait."""

    def __init__(self):
        self.frames = []
        self.arrived = threading.Condition()
        self.writable_calls = 0

    def deliver(self, frame):
        with self.arrived:
            self.frames.append(frame)
            self.arrived.notify_all()

    def writable(self):
        self.writable_calls += 1

    def wait_for(self, count, timeout=10):
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.frames) >= count, timeout), self.frames
        return self.frames


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_record(conn):
    header = conn.recv(4, socket.MSG_WAITALL)
    length = struct.unpack(">I", header)[0]
    return conn.recv(length, socket.MSG_WAITALL)


# --- the command line ---------------------------------------------------------------

@pytest.mark.parametrize("argv, text", [
    (["-netdev", "socket,id=n0"], "-netdev socket,id=n0: exactly one of listen=, connect=, mcast= or udp= is required"),
    (["-netdev", "socket,id=n0,listen=:1,connect=h:2"], "exactly one of listen=, connect=, mcast= or udp="),
    (["-netdev", "socket,connect=127.0.0.1:1"], "Parameter 'id' is missing"),
    (["-netdev", "id=n0"], "Parameter 'type' is missing"),
    (["-netdev", "foo,id=n0"], "Parameter 'type' does not accept value 'foo'"),
    (["-netdev", "user,id=u0"], "user-mode networking (QEMU's SLIRP) is not supported by pyhv"),
    (["-netdev", "bridge,id=b0"], "netdev type 'bridge' is not supported by pyhv"),
    (["-netdev", "socket,id=0n,listen=:5555"], "Parameter 'id' expects an identifier"),
    (["-netdev", "socket,id=n0,listen=x"], "host address 'x' doesn't contain ':' separating host from port"),
    (["-netdev", "socket,id=n0,listen=:abc"], "port number 'abc' is invalid"),
    (["-netdev", "socket,id=n0,udp=127.0.0.1:5000"], "localaddr= is mandatory with udp="),
    (["-netdev", "socket,id=n0,listen=:5555,localaddr=1.2.3.4:5"], "localaddr= is only valid with mcast= or udp="),
    (["-netdev", "socket,id=n0,mcast=230.0.0.1:1234"], "mcast= is not supported by pyhv"),
    (["-netdev", "socket,id=n0,fd=3"], "fd= is not supported by pyhv"),
    (["-netdev", "socket,id=n0,listen=:1,bogus=1"], "Invalid parameter 'bogus'"),
    (["-netdev", "tap,id=t0,foo=1"], "Invalid parameter 'foo'"),
    (["-netdev", "tap,id=t0,fd=3"], "Parameter 'fd' is not supported by pyhv's tap netdev"),
    (["-netdev", "tap,id=t0,script=/etc/qemu-ifup"], "pyhv runs no network scripts"),
    (["-netdev", "socket,id=n0,listen=:1", "-netdev", "socket,id=n0,listen=:2"],
     "-netdev socket,id=n0,listen=:2: Duplicate ID 'n0' for netdev"),
    (["-device", "virtio-net-device,netdev=n9"], "Property 'virtio-net-device.netdev' can't find value 'n9'"),
    (["-device", "virtio-net-device,mac=52:54:00:00:00:1"],
     "-device virtio-net-device,mac=52:54:00:00:00:1: Property 'virtio-net-device.mac' doesn't take value"),
    (["-netdev", "socket,id=n0,listen=1.2.3.4:5555"],
     "-netdev socket,id=n0,listen=1.2.3.4:5555: can't bind ip=1.2.3.4 to socket: Cannot assign requested address"),
    (["-netdev", "socket,id=n0,listen=nohost.invalid:5555"], "can't resolve host address 'nohost.invalid'"),
])
def test_bad_netdev_options(capsys, no_vm, kernel, argv, text):
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, *argv), text)


def test_connect_to_nobody_is_an_error(capsys, no_vm, kernel):
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-netdev", f"socket,id=n0,connect=127.0.0.1:{free_port()}"),
                          "can't connect socket: Connection refused")


def test_a_netdev_for_two_nics_is_an_error(capsys, no_vm, kernel):
    assert_one_line_error(*run_main(capsys, "-kernel", kernel, "-netdev", f"socket,id=n0,listen=127.0.0.1:{free_port()}",
                                    "-device", "virtio-net-device,netdev=n0", "-device", "virtio-net-device,netdev=n0"),
                          "Property 'virtio-net-device.netdev' can't take value 'n0', it's in use")


# --- the stream framing -------------------------------------------------------------

def test_frame_reader_joins_and_splits_records():
    reader = FrameReader()
    stream = frame_record(b"abc") + frame_record(b"") + frame_record(bytes(range(200)))
    got = []
    for i in range(0, len(stream), 7):
        got += list(reader.feed(stream[i:i + 7]))
    assert got == [b"abc", bytes(range(200))]       # the empty frame is skipped
    assert list(reader.feed(b"\x00\x00")) == [] and list(reader.feed(b"\x00\x02hi")) == [b"hi"]


def test_frame_reader_refuses_a_frame_larger_than_qemus_buffer():
    assert list(FrameReader().feed(frame_record(bytes(NET_BUFSIZE)))) == [bytes(NET_BUFSIZE)]
    frames = FrameReader().feed(frame_record(b"good") + struct.pack(">I", NET_BUFSIZE + 1))
    assert next(frames) == b"good"                  # the frames before the break still count
    with pytest.raises(FramingError, match=f"{NET_BUFSIZE + 1} bytes"):
        next(frames)


def test_listen_backend_with_a_python_peer():
    port = free_port()
    netdev = StreamNetdev("n0", HostPort("127.0.0.1", port), listen=True)
    receiver = Receiver()
    try:
        netdev.start(receiver)
        assert netdev.info() == ""
        netdev.send(b"dropped: nobody is connected")
        peer = socket.create_connection(("127.0.0.1", port))
        peer.sendall(frame_record(b"first") + frame_record(b"second")[:5])
        peer.sendall(frame_record(b"second")[5:])
        assert receiver.wait_for(2) == [b"first", b"second"]
        assert netdev.info() == f"socket: connection from 127.0.0.1:{peer.getsockname()[1]}"
        netdev.send(b"to the peer")
        assert read_record(peer) == b"to the peer"
        peer.close()                                     # hangs up: the backend listens again
        deadline = time.monotonic() + 10
        while netdev.info() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert netdev.info() == ""
        second = socket.create_connection(("127.0.0.1", port))
        second.sendall(frame_record(b"third"))
        assert receiver.wait_for(3)[2] == b"third"
        second.close()
    finally:
        netdev.close()


def test_connect_backend_and_a_broken_stream(capsys):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    netdev = StreamNetdev("n1", HostPort("127.0.0.1", port), listen=False)
    receiver = Receiver()
    try:
        conn, _ = listener.accept()
        netdev.start(receiver)
        assert netdev.info() == f"socket: connect to 127.0.0.1:{port}"
        netdev.send(b"hello")
        assert read_record(conn) == b"hello"
        conn.sendall(frame_record(b"ok") + struct.pack(">I", NET_BUFSIZE + 1))
        assert receiver.wait_for(1) == [b"ok"]
        assert conn.recv(1) == b""                       # pyhv hung up
        assert "netdev n1: the peer sent a frame of 69633 bytes, more than 69632; hanging up" in capsys.readouterr().err
        assert netdev.info() == ""
        netdev.send(b"dropped")                          # a client stays disconnected
    finally:
        netdev.close()
        listener.close()


def test_a_stalled_peer_stops_the_nic_and_writable_resumes_it():
    listener = socket.create_server(("127.0.0.1", 0))
    netdev = StreamNetdev("n2", HostPort("127.0.0.1", listener.getsockname()[1]), listen=False)
    receiver = Receiver()
    try:
        conn, _ = listener.accept()
        netdev.start(receiver)
        big = bytes(60000)
        sent = 0
        deadline = time.monotonic() + 20
        while netdev.can_send():                         # the peer reads nothing: the queue fills
            netdev.send(big)
            sent += 1
            assert time.monotonic() < deadline
        assert not netdev.can_send() and receiver.writable_calls == 0
        for _ in range(sent):
            assert read_record(conn) == big
        deadline = time.monotonic() + 10
        while receiver.writable_calls == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver.writable_calls == 1 and netdev.can_send()
    finally:
        netdev.close()
        listener.close()


def test_frames_queued_when_the_backend_closes_still_go_out():
    # the guest's last frames, sent just before it ends the VM, reach the peer
    listener = socket.create_server(("127.0.0.1", 0))
    netdev = StreamNetdev("n3", HostPort("127.0.0.1", listener.getsockname()[1]), listen=False)
    try:
        conn, _ = listener.accept()
        netdev.start(Receiver())
        frames = [bytes([k]) * 1500 for k in range(40)]
        for frame in frames:
            netdev.send(frame)
        netdev.close()
        assert [read_record(conn) for _ in frames] == frames
        assert conn.recv(1) == b""
    finally:
        netdev.close()
        listener.close()


def test_udp_backend():
    port, peer = free_port(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    netdev = DatagramNetdev("u0", HostPort("127.0.0.1", peer.getsockname()[1]), HostPort("127.0.0.1", port))
    receiver = Receiver()
    try:
        netdev.start(receiver)
        assert netdev.info() == f"socket: udp=127.0.0.1:{peer.getsockname()[1]}"
        netdev.send(b"datagram out")
        assert peer.recv(100) == b"datagram out"
        peer.sendto(b"datagram in", ("127.0.0.1", port))
        assert receiver.wait_for(1) == [b"datagram in"]
    finally:
        netdev.close()
        peer.close()


# --- tap ------------------------------------------------------------------------------

def test_tunsetiff_error_is_reported_as_qemu_does():
    """An interface name the kernel refuses: TUNSETIFF fails with EINVAL (needs access to
    /dev/net/tun; an unprivileged user gets 'Operation not permitted' instead)."""
    with pytest.raises(Exception) as error:
        tap.open_tap("bad/name")
    assert str(error.value) in ("could not configure /dev/net/tun (bad/name): Invalid argument",
                                "could not configure /dev/net/tun (bad/name): Operation not permitted",
                                "could not open /dev/net/tun: No such file or directory",
                                "could not open /dev/net/tun: Permission denied")


def test_missing_tun_device(monkeypatch):
    monkeypatch.setattr(tap, "TUN_PATH", "/nonexistent/tun")
    with pytest.raises(Exception, match="could not open /nonexistent/tun: No such file or directory"):
        tap.open_tap("tap0")


# --- NICs on a machine, and the monitor -----------------------------------------------

@pytest.fixture
def machine(kernel, capsys):
    ports = [free_port() for _ in range(3)]
    config = parse_command_line([
        "-kernel", kernel, "-M", "microvm", "-serial", "null",
        "-netdev", f"socket,id=n0,listen=127.0.0.1:{ports[0]}", "-device", "virtio-net-device,netdev=n0",
        "-netdev", f"socket,id=spare,listen=127.0.0.1:{ports[1]}",
        "-netdev", f"socket,id=n1,udp=127.0.0.1:{ports[2]},localaddr=127.0.0.1:{ports[2]}",
        "-device", "virtio-net-device,netdev=n1,mac=52:54:00:aa:bb:cc",
        "-device", "virtio-net-device"])
    built = Machine(config)
    built.ports = ports
    yield built
    built.close()


def test_nics_get_qemus_names_and_default_macs_and_info_network(machine, capsys):
    assert "pyhv: warning: netdev spare has no peer" in capsys.readouterr().err
    out = []
    monitor = Monitor(machine, out.append)
    monitor.handle_line("info network")
    p = machine.ports
    assert out == [f"spare: index=0,type=socket,\n"
                   f"virtio-net-device.0: index=0,type=nic,model=virtio-net-device,macaddr=52:54:00:12:34:56\n"
                   f" \\ n0: index=0,type=socket,\n"
                   f"virtio-net-device.1: index=0,type=nic,model=virtio-net-device,macaddr=52:54:00:aa:bb:cc\n"
                   f" \\ n1: index=0,type=socket,socket: udp=127.0.0.1:{p[2]}\n"
                   f"virtio-net-device.2: index=0,type=nic,model=virtio-net-device,macaddr=52:54:00:12:34:57\n"]


def test_set_link_by_netdev_or_nic_name(machine):
    out = []
    monitor = Monitor(machine, out.append)
    nics = [nic.device for nic in machine.net.nics]
    monitor.handle_line("set_link n0 off")
    assert [nic.link_up for nic in nics] == [False, True, True]
    monitor.handle_line("set_link virtio-net-device.2 off")
    assert [nic.link_up for nic in nics] == [False, True, False]
    monitor.handle_line("set_link n0 on")
    assert nics[0].link_up and out == []
    monitor.handle_line("set_link n9 off")
    monitor.handle_line("set_link n0 maybe")
    assert out == ["Error: Device 'n9' not found\n",
                   "Expected 'on' or 'off'\nTry \"help set_link\" for more information\n"]
    out.clear()
    monitor.handle_line("help set_link")
    assert out == ["set_link name on|off -- change the link status of a network adapter\n"]


def test_nics_sit_on_virtio_mmio_transports(machine):
    transports = [d for d in machine.devices if hasattr(d, "device")]
    assert [nic.device for nic in machine.net.nics] == [t.device for t in transports]
    assert [t.base for t in transports] == [0xFEB00E00, 0xFEB00C00, 0xFEB00A00]


def test_qmp_set_link(machine):
    from devicemodel.qmp.commands import COMMANDS, QmpError, check_arguments

    class Session:
        pass

    session = Session()
    session.machine = machine
    command = COMMANDS["set_link"]
    check_arguments(command, {"name": "n1", "up": False})
    assert command.handler(session, {"name": "n1", "up": False}) == {}
    assert [nic.device.link_up for nic in machine.net.nics] == [True, False, True]
    with pytest.raises(QmpError) as error:
        command.handler(session, {"name": "n9", "up": True})
    assert (str(error.value), error.value.error_class) == ("Device 'n9' not found", "DeviceNotFound")
