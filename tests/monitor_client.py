"""Helpers for the monitor and QMP tests: a pyhv process with its monitor and QMP on
Unix sockets, and a line-mode HMP client.

This is a helper module, not a test file (conftest.py puts tests/ on sys.path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

PROMPT = b"(pyhv) "
DEBUG_EXIT = ["-device", "isa-debug-exit,iobase=0xf4,iosize=4"]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class PyhvProcess:
    """``python -m devicemodel`` with the serial port in a file, the HMP monitor and QMP
    on Unix sockets in ``workdir``."""

    def __init__(self, workdir: Path, kernel, *extra, append: str = "", monitor=True, qmp=True,
                 stdin=subprocess.DEVNULL):
        self.workdir = Path(workdir)
        self.serial = self.workdir / "serial.txt"
        self.monitor_path = self.workdir / "monitor.sock"
        self.qmp_path = self.workdir / "qmp.sock"
        args = [sys.executable, "-m", "devicemodel", "-kernel", str(kernel), *DEBUG_EXIT,
                "-serial", f"file:{self.serial}"]
        if append:
            args += ["-append", append]
        if monitor:
            args += ["-monitor", f"unix:{self.monitor_path},server=on,wait=off"]
        if qmp:
            args += ["-qmp", f"unix:{self.qmp_path},server,nowait"]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        paths = ([self.monitor_path] if monitor else []) + ([self.qmp_path] if qmp else [])
        wait_for(lambda: all(p.exists() for p in paths) or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.proc.communicate()[1].decode()

    def serial_text(self) -> str:
        return self.serial.read_text(errors="replace").replace("\r", "") if self.serial.exists() else ""

    def wait_serial(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        wait_for(lambda: self.serial_text().count(text) >= count, timeout)
        return self.serial_text()

    def hmp(self) -> "HmpClient":
        return HmpClient(str(self.monitor_path))

    def wait(self, timeout: float = 30.0) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError("pyhv did not exit: " + err.decode(errors="replace"))
        return self.proc.returncode, err.decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


class HmpClient:
    """The monitor over a Unix socket: ``cmd(line)`` returns the output before the next prompt."""

    def __init__(self, path: str, timeout: float = 30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.banner = self._until_prompt()

    def _until_prompt(self) -> str:
        data = b""
        while not data.endswith(PROMPT):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"monitor closed; got {data!r}")
            data += chunk
        return data[:-len(PROMPT)].decode(errors="replace").replace("\r\n", "\n")

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self._until_prompt()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def close(self) -> None:
        self.sock.close()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

