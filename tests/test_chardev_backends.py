"""Character-device backends as QEMU spells them: tcp and unix servers, pty, the
mon:stdio multiplexer with its Ctrl-A escapes, -chardev with chardev:ID, mux=on and
-device isa-serial; and the monitor on a terminal (prompt_toolkit: completion, history)."""

import os
import pty
import re
import select
import socket
import subprocess
import sys
import time

import pytest

import guests
from devicemodel.chardev import parse_chardev_option, parse_socket_address
from devicemodel.errors import ConfigError
from monitor_client import DEBUG_EXIT, HmpClient, free_tcp_port, wait_for

PYHV = [sys.executable, "-m", "devicemodel"]


def steer(firmware_dir):
    return ["-kernel", str(guests.guest_path("steer", firmware_dir)), *DEBUG_EXIT]


def read_until(fd_or_file, needle: bytes, timeout: float = 30.0) -> bytes:
    data, deadline = b"", time.monotonic() + timeout
    fd = fd_or_file if isinstance(fd_or_file, int) else fd_or_file.fileno()
    while needle not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} not seen; got {data[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                raise AssertionError(f"EOF before {needle!r}; got {data[-2000:]!r}")
            data += chunk
    return data


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:4444,server,nowait", ("127.0.0.1", 4444, True, False)),
    (":5555,server=on,wait=off", ("", 5555, True, False)),
    ("localhost:1234", ("localhost", 1234, False, True)),
])
def test_tcp_addresses(text, expected):
    address = parse_socket_address("tcp", text)
    assert (address.host, address.port, address.server, address.wait) == expected


@pytest.mark.parametrize("text, message", [
    ("socket,id=x", "'host' and 'port', or 'path', is required"),
    ("socket,path=/tmp/s", "Parameter 'id' is missing"),
    ("bogus,id=x", "'bogus' is not a valid char driver name"),
    ("file,id=x,path=/tmp/f,color=red", "Invalid parameter 'color'"),
])
def test_bad_chardev_options(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_chardev_option(text)


def test_chardev_option_forms():
    assert parse_chardev_option("socket,id=m,path=/tmp/m.sock,server=on,wait=off").spec == \
        "unix:/tmp/m.sock,server=on,wait=off"
    assert parse_chardev_option("stdio,id=c,mux=on").mux
    assert parse_chardev_option("socket,id=t,host=127.0.0.1,port=4000,server=on").spec == \
        "tcp:127.0.0.1:4000,server=on"


def test_monitor_on_tcp(firmware_dir, tmp_path):
    port = free_tcp_port()
    proc = subprocess.Popen(PYHV + steer(firmware_dir) + ["-serial", "null", "-monitor",
                            f"tcp:127.0.0.1:{port},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def connect():
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                return None
            return s
        sock = wait_for(connect)
        sock.settimeout(30)
        data = b""
        while not data.endswith(b"(pyhv) "):
            data += sock.recv(4096)
        sock.sendall(b"info status\r\n")
        while data.count(b"(pyhv) ") < 2:
            data += sock.recv(4096)
        assert b"VM status: running\r\n" in data
        sock.sendall(b"quit\r\n")
        sock.close()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_serial_on_a_pty(firmware_dir):
    proc = subprocess.Popen(PYHV + steer(firmware_dir) + ["-serial", "pty", "-append", "reset=kbd boots=2"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stderr.readline()
        match = re.fullmatch(r"char device redirected to (/dev/pts/\d+) \(label serial0\)\n", line)
        assert match, line
        fd = os.open(match.group(1), os.O_RDWR | os.O_NOCTTY)
        try:
            read_until(fd, b"steer: done after 2 boots")
        finally:
            os.close(fd)
        assert proc.wait(30) == guests.exit_status(2)
    finally:
        proc.kill()
        proc.communicate()


def test_mon_stdio_switches_with_ctrl_a_c(firmware_dir):
    proc = subprocess.Popen(PYHV + steer(firmware_dir) + ["-serial", "mon:stdio"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(proc.stdout, b"steer: ready")
        proc.stdin.write(b"\x01c")
        proc.stdin.flush()
        read_until(proc.stdout, b"(pyhv) ")
        proc.stdin.write(b"info status\n")
        proc.stdin.flush()
        read_until(proc.stdout, b"VM status: running")
        proc.stdin.write(b"\x01h")
        proc.stdin.flush()
        read_until(proc.stdout, b"C-a c    switch between console and monitor")
        proc.stdin.write(b"\x01cabc\x01x")     # back to the guest (it gets "abc"), then quit
        proc.stdin.flush()
        read_until(proc.stdout, b"terminated by C-a x")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_chardev_ids_isa_serial_and_a_shared_mux(firmware_dir, tmp_path):
    serial, sock = tmp_path / "serial.txt", tmp_path / "mon.sock"
    proc = subprocess.Popen(PYHV + steer(firmware_dir) + [
        "-nodefaults", "-chardev", f"file,id=out,path={serial}", "-device", "isa-serial,chardev=out",
        "-chardev", f"socket,id=mon0,path={sock},server=on,wait=off", "-monitor", "chardev:mon0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: serial.exists() and b"steer: ready" in serial.read_bytes())
        hmp = HmpClient(str(sock))
        chardevs = hmp.cmd("info chardev")
        assert "out: filename=file" in chardevs and "mon0: filename=unix:" in chardevs
        hmp.send("quit")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("args, message", [
    (["-serial", "stdio", "-monitor", "stdio"], "-monitor stdio: cannot use stdio by multiple character devices"),
    (["-monitor", "chardev:nope"], "chardev 'nope' not found"),
    (["-chardev", "null,id=a", "-serial", "chardev:a", "-monitor", "chardev:a"],
     "chardev 'a' is already in use (use mux=on to share it)"),
    (["-monitor", "tcp:127.0.0.1:notaport,server"], "invalid tcp address '127.0.0.1:notaport'"),
    (["-qmp", "unix:/no/such/dir/q.sock,server,nowait"], "Failed to bind socket unix:/no/such/dir/q.sock"),
])
def test_chardev_configuration_errors(firmware_dir, args, message):
    r = subprocess.run(PYHV + steer(firmware_dir) + args, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_monitor_on_a_terminal_completes_and_remembers(firmware_dir, tmp_path):
    pytest.importorskip("prompt_toolkit")
    master, slave = pty.openpty()
    serial = tmp_path / "serial.txt"
    proc = subprocess.Popen(PYHV + steer(firmware_dir) + ["-serial", f"file:{serial}", "-monitor", "stdio"],
                            stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1"))
    os.close(slave)
    try:
        read_until(master, b"(pyhv)")
        os.write(master, b"info stat\t")         # Tab completes "status" ("info stat" is unknown)
        time.sleep(0.5)
        os.write(master, b"\r")
        read_until(master, b"VM status: running")
        os.write(master, b"\x1b[A")               # up: the last line again
        time.sleep(0.5)
        os.write(master, b"\r")
        read_until(master, b"VM status: running")
        os.write(master, b"quit\r")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.communicate()
        os.close(master)
